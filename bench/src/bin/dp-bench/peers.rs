//! The peers of a trial: the relay under test (Tollgate's relay-bench on the XDP, socket or
//! floor path, or rtpengine driven over ng) and the sink (verifying SRTP, or plain RTP for the
//! floor).

use super::*;

/// The relay under test.
pub(crate) enum Relay {
    Tollgate {
        child: Child,
        stdin: ChildStdin,
        lines: mpsc::Receiver<String>,
    },
    Rtpengine {
        child: Child,
    },
}

impl Relay {
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Relay::Tollgate { child, .. } | Relay::Rtpengine { child } => child.id(),
        }
    }

    pub(crate) fn stats(&mut self) -> Option<Value> {
        let Relay::Tollgate { stdin, lines, .. } = self else {
            return None;
        };
        writeln!(stdin, "stats").ok()?;
        stdin.flush().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(l) = lines.recv_timeout(Duration::from_millis(200))
                && let Some(j) = l.strip_prefix("STATS ")
            {
                return serde_json::from_str(j).ok();
            }
        }
        None
    }

    /// Stops the relay: asks politely, then kills it by PID.
    pub(crate) fn stop(self) {
        let mut child = match self {
            Relay::Tollgate {
                child, mut stdin, ..
            } => {
                let _ = writeln!(stdin, "quit");
                drop(stdin);
                child
            }
            Relay::Rtpengine { child } => {
                // SAFETY: signalling the PID of our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                child
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub(crate) fn start_tollgate(
    lab: &Lab,
    bin: &Path,
    path: &str,
    flows: usize,
    cpu: usize,
    coalesce_us: u32,
    workers: usize,
) -> anyhow::Result<(Relay, Value)> {
    let l = lab.spec();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.relay_ns,
            "chrt",
            "-f",
            RELAY_RT_PRIO,
            "taskset",
            "-c",
        ])
        .arg(cpu.to_string())
        .arg(bin)
        .args(["--path", path, "--flows", &flows.to_string()])
        .args(["--workers", &workers.to_string()])
        .args([
            "--cpu",
            &cpu.to_string(),
            "--ext-if",
            &l.ext_if,
            "--int-if",
            &l.int_if,
            "--coalesce-us",
            &coalesce_us.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdin = child.stdin.take().context("relay stdin")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut relay = Relay::Tollgate {
        child,
        stdin,
        lines: rx,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let Relay::Tollgate { lines, child, .. } = &mut relay else {
            unreachable!()
        };
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => {
                if let Some(j) = l.strip_prefix("READY ") {
                    let v: Value = serde_json::from_str(j)?;
                    return Ok((relay, v));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    bail!("relay-bench exited before READY: {st}");
                }
                if Instant::now() > deadline {
                    relay.stop();
                    bail!("relay-bench not READY in 600 s");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                relay.stop();
                bail!("relay-bench closed its output before READY");
            }
        }
    }
}

/// Starts rtpengine in the relay namespace and sets up one call per flow over ng; returns the
/// relay, the generator's flows (to rtpengine's gateway-side ports) and the sink's keys
/// (rtpengine's own SDES keys toward the internal side).
pub(crate) fn start_rtpengine(
    lab: &Lab,
    plan: &Plan,
    cpu: usize,
    log: &Path,
) -> anyhow::Result<(Relay, Vec<GenFlow>, Vec<KeyMaterial>, Value)> {
    let l = lab.spec().clone();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.relay_ns,
            "chrt",
            "-f",
            RELAY_RT_PRIO,
            "taskset",
            "-c",
        ])
        .arg(cpu.to_string())
        .args([
            "rtpengine",
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
            "--interface=ext/10.201.1.1",
            "--interface=int/10.201.2.1",
            &format!("--listen-ng=127.0.0.1:{NG_PORT}"),
            "--num-threads=1",
            "--port-min=20000",
            "--port-max=60000",
            "--timeout=3600",
            "--silent-timeout=3600",
            "--delete-delay=0",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting rtpengine (cargo xtask setup --bench installs rtpengine-daemon)")?;
    let relay = Relay::Rtpengine { child };
    let setup = (|| -> anyhow::Result<(Vec<GenFlow>, Vec<KeyMaterial>, f64)> {
        let flows = plan.all();
        let t0 = Instant::now();
        let r = in_netns(&l.relay_ns, move || -> anyhow::Result<_> {
            let server: SocketAddr = format!("127.0.0.1:{NG_PORT}").parse()?;
            let mut ng = NgClient::connect(server)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while ng.ping().is_err() {
                if Instant::now() > deadline {
                    bail!("rtpengine does not answer ng pings");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let t0 = Instant::now();
            let mut gen_flows = Vec::new();
            let mut keys = Vec::new();
            for f in &flows {
                let call = format!("tgbench-{}", f.index);
                let offer = dict(vec![
                    ("command", Bencode::s("offer")),
                    ("call-id", Bencode::s(&call)),
                    ("from-tag", Bencode::s("gw")),
                    (
                        "sdp",
                        Bencode::s(&ng::sdp_avp(&f.gw.ip().to_string(), f.gw.port(), "gw")),
                    ),
                    ("direction", Bencode::strs(&["ext", "int"])),
                    ("transport-protocol", Bencode::s("RTP/SAVP")),
                    ("ICE", Bencode::s("remove")),
                    ("replace", Bencode::strs(&["origin", "session-connection"])),
                ]);
                let o = ng.call(&offer)?;
                let osdp = ng::parse_sdp(&o.get_str("sdp").context("offer: no sdp")?)
                    .context("offer: unreadable sdp")?;
                let (tag, _, key) = osdp
                    .crypto
                    .iter()
                    .find(|(_, s, _)| s == SUITE.sdes_name())
                    .cloned()
                    .context("rtpengine offered no AES_CM_128_HMAC_SHA1_80")?;
                let km = KeyMaterial::from_sdes(SUITE, &key)
                    .map_err(|e| anyhow::anyhow!("rtpengine key: {e}"))?;
                let ours = Plan::key(f.index, 1).to_sdes();
                let answer = dict(vec![
                    ("command", Bencode::s("answer")),
                    ("call-id", Bencode::s(&call)),
                    ("from-tag", Bencode::s("gw")),
                    ("to-tag", Bencode::s("int")),
                    (
                        "sdp",
                        Bencode::s(&ng::sdp_savp(
                            &f.sink.ip().to_string(),
                            f.sink.port(),
                            "int",
                            tag,
                            SUITE.sdes_name(),
                            &ours,
                        )),
                    ),
                    ("direction", Bencode::strs(&["ext", "int"])),
                    ("replace", Bencode::strs(&["origin", "session-connection"])),
                ]);
                let a = ng.call(&answer)?;
                let asdp = ng::parse_sdp(&a.get_str("sdp").context("answer: no sdp")?)
                    .context("answer: unreadable sdp")?;
                let dst = SocketAddrV4::new(asdp.ip.parse()?, asdp.port);
                gen_flows.push(GenFlow {
                    src: f.gw,
                    dst,
                    ssrc: f.ssrc,
                });
                keys.push(km);
            }
            Ok((gen_flows, keys, t0.elapsed().as_secs_f64()))
        })??;
        let _ = t0;
        Ok(r)
    })();
    match setup {
        Ok((g, k, secs)) => {
            let ready = json!({"pid": relay.pid(), "flows": g.len(), "setup_secs": secs});
            Ok((relay, g, k, ready))
        }
        Err(e) => {
            relay.stop();
            Err(e)
        }
    }
}

/// A sink thread in `int` for one path.
pub(crate) struct SinkRun {
    pub(crate) shared: Arc<SinkShared>,
    pub(crate) handle: Option<JoinHandle<Result<anyhow::Result<()>, tollgate_netlab::LabError>>>,
}

impl SinkRun {
    pub(crate) fn start(
        lab: &Lab,
        plan: &Plan,
        keys: Vec<KeyMaterial>,
        cpu: usize,
        decrypt: bool,
    ) -> anyhow::Result<SinkRun> {
        let shared = SinkShared::new(decrypt);
        let ready = Arc::new(AtomicBool::new(false));
        let (s2, r2, bind) = (Arc::clone(&shared), Arc::clone(&ready), plan.sink);
        let handle = spawn_in_netns(&lab.spec().int_ns, move || {
            pin(cpu, SINK_RT_PRIO);
            sink::run(bind, &keys, SSRC_BASE, &s2, &r2)
        })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.load(Ordering::SeqCst) {
            if handle.is_finished() {
                let r = handle.join();
                bail!("sink stopped: {r:?}");
            }
            if Instant::now() > deadline {
                bail!("sink not ready in 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SinkRun {
            shared,
            handle: Some(handle),
        })
    }

    pub(crate) fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SinkRun {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn relay_bin(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cli.relay_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    Ok(me.with_file_name("relay-bench"))
}

pub(crate) fn tollgate_flows(plan: &Plan) -> (Vec<GenFlow>, Vec<KeyMaterial>) {
    plan.all()
        .iter()
        .map(|f| {
            (
                GenFlow {
                    src: f.gw,
                    dst: f.ext_local,
                    ssrc: f.ssrc,
                },
                Plan::key(f.index, 0),
            )
        })
        .unzip()
}
