//! Assembling and running the daemon: TLS, data plane, media thread, listeners, metrics, CDRs,
//! the driver, and signal handling.
//!
//! The boundary between the NICs is set up here: the data plane gets each NIC's XDP policy
//! (`ext.boundary`), and every listener, outbound connection and relay socket is bound to the
//! interface that holds its address (the side's NIC, or a VLAN interface on it); the metrics
//! listener too, and that interface must not be a gateway-side one. All of it is read at
//! start: a SIGHUP reload does not change it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tollgate_dataplane::boundary::{self, Boundary, BoundaryMode, SidePolicy};
use tollgate_dataplane::{DataPath, Dataplane, DataplaneConfig, XdpSettings};

use crate::cdr::CdrWriter;
use crate::config::{BoundaryKind, Config, ConfigError, DatapathKind};
use crate::driver::{Control, Driver, OpsInfo, Summary};
use crate::metrics::Metrics;
use crate::tls::{TlsError, TlsMaterial};
use crate::transport::{self, ConnLimits, NetTransport, Side, StreamLimits, TransportCtx};

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Data plane.
    #[error("data plane: {0}")]
    Dataplane(#[from] tollgate_dataplane::DataplaneError),
    /// The boundary filter could not be set up.
    #[error(
        "ext.boundary = \"xdp\": {0} (the XDP program needs root or CAP_NET_ADMIN+CAP_BPF; ext.boundary = \"off\" runs without the packet filter)"
    )]
    Boundary(String),
    /// A configured address cannot be used on this host (the key names it).
    #[error("configuration: {key}: {problem}")]
    Host {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// OS error.
        source: std::io::Error,
    },
    /// The control socket.
    #[error("ops.control_socket: {0}")]
    Control(#[from] crate::control::ControlError),
    /// The call-state store could not be opened or read.
    #[error("state ({backend}): {source}")]
    State {
        /// The configured backend.
        backend: &'static str,
        /// Why.
        source: tollgate_state::StoreError,
    },
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// OS error.
        source: std::io::Error,
    },
}

/// A running server (for embedding and tests).
#[derive(Debug)]
pub struct Running {
    /// Send [`Control`] requests.
    pub control: mpsc::UnboundedSender<Control>,
    /// Metrics (also served on the configured endpoint).
    pub metrics: Arc<Metrics>,
    driver: tokio::task::JoinHandle<Summary>,
    media: Option<std::thread::JoinHandle<()>>,
    media_handle: crate::media::MediaHandle,
    cdr_task: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for the driver to exit (after a drain or a stop), then stops the media thread.
    pub async fn wait(mut self) -> Summary {
        let summary = (&mut self.driver).await.unwrap_or_default();
        for t in &self.tasks {
            t.abort();
        }
        // Let the CDR writer finish the records already queued.
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.cdr_task).await;
        self.media_handle.send(crate::media::MediaCmd::Shutdown);
        if let Some(m) = self.media.take() {
            let _ = tokio::task::spawn_blocking(move || m.join()).await;
        }
        summary
    }
}

/// Milliseconds since this process was created (from /proc; 0 if unreadable): the restart
/// timeline's first segment, exec and runtime set-up before [`start_from`].
pub fn process_age_ms() -> f64 {
    let age = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let start_ticks: f64 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(19)?
            .parse()
            .ok()?;
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(((uptime - start_ticks / hz.max(1.0)) * 1000.0).max(0.0))
    };
    age().unwrap_or(0.0)
}

fn os_random(buf: &mut [u8]) {
    // The OS CSPRNG cannot fail on Linux once booted; if it ever did, refusing to run with
    // predictable keys is the only safe answer.
    if let Err(e) = getrandom::fill(buf) {
        tracing::error!(error = %e, "OS random source failed");
        std::process::abort();
    }
}

/// Each NIC's boundary policy `[ext, int]` from the configuration; `tcp_reply` is the
/// ephemeral port range outbound connections leave from ([`boundary::ephemeral_ports`]).
pub fn boundary_policies(cfg: &Config, tcp_reply: [u16; 2]) -> [SidePolicy; 2] {
    let ext = cfg.ext_addresses();
    let int = cfg.int_addresses();
    let mut ext_other = int.clone();
    // The metrics address is never reachable through the gateway NIC, wherever it lives.
    ext_other.extend(cfg.ops.metrics_listen.map(|a| a.ip()));
    let mut ext_ports = vec![cfg.ext.sip_listen.port()];
    ext_ports.extend(cfg.ext.tls_listen.map(|a| a.port()));
    [
        SidePolicy {
            mode: BoundaryMode::Gateway,
            own: ext.clone(),
            other: ext_other,
            tcp_ports: ext_ports,
            udp_ports: cfg.media.ext_ports,
            tcp_reply_ports: tcp_reply,
        },
        SidePolicy {
            mode: BoundaryMode::Internal,
            own: int,
            other: ext,
            tcp_ports: vec![cfg.int.sip_listen.port()],
            udp_ports: cfg.media.int_ports,
            tcp_reply_ports: tcp_reply,
        },
    ]
}

/// The data plane settings from the configuration. With `ext.boundary = "xdp"` this reads the
/// ephemeral port range of the calling thread's network namespace.
pub fn dataplane_config(cfg: &Config) -> Result<DataplaneConfig, ServerError> {
    let path = match cfg.media.datapath {
        DatapathKind::Socket => DataPath::Socket,
        DatapathKind::Xdp => {
            let mut x = XdpSettings::new(&cfg.ext.interface, &cfg.int.interface);
            x.set_channels = cfg.media.set_channels;
            x.ext_vlan = cfg.ext.vlan;
            x.int_vlan = cfg.int.vlan;
            DataPath::Xdp(x)
        }
    };
    let mut d = DataplaneConfig::new(path, cfg.media.workers);
    d.cpus = cfg.media.cpus.clone();
    d.srtp.replay_window = cfg.media.replay_window;
    d.busy_poll = cfg.media.busy_poll;
    d.coalesce_us = cfg.media.coalesce_us;
    d.devices = Some([
        side_device(
            "ext.media_address",
            cfg.ext.media_address,
            &cfg.ext.interface,
        )?,
        side_device(
            "int.media_address",
            cfg.int.media_address,
            &cfg.int.interface,
        )?,
    ]);
    if cfg.ext.boundary == BoundaryKind::Xdp {
        let eph = boundary::ephemeral_ports().map_err(|e| ServerError::Boundary(e.to_string()))?;
        d.boundary = Some(Boundary {
            sides: boundary_policies(cfg, eph),
            interfaces: [cfg.ext.interface.clone(), cfg.int.interface.clone()],
            attach: tollgate_dataplane::xdp::ModeRequest::NativeThenSkb,
        });
    }
    Ok(d)
}

/// The interface that holds local address `ip` (configured under `key`); `None` if no
/// interface lists it (an address under a `local` route).
fn device_of(key: &'static str, ip: std::net::IpAddr) -> Result<Option<String>, ServerError> {
    tollgate_dataplane::sys::device_of(ip)
        .map(|d| d.map(|(device, _)| device))
        .map_err(|e| ServerError::Host {
            key,
            problem: format!("listing the interfaces' addresses: {e}"),
        })
}

/// The interface a socket on one side's address `ip` (configured under `key`) is bound to, so
/// that it takes packets only from it: the interface that holds the address (the side's NIC,
/// or a VLAN interface on it), else the side's configured `interface`.
pub fn side_device(
    key: &'static str,
    ip: std::net::IpAddr,
    interface: &str,
) -> Result<String, ServerError> {
    Ok(device_of(key, ip)?.unwrap_or_else(|| interface.to_owned()))
}

/// The interfaces of the gateway side: `ext.interface` and those holding its addresses.
pub fn ext_devices(cfg: &Config) -> Result<Vec<String>, ServerError> {
    let mut v = vec![cfg.ext.interface.clone()];
    for ip in cfg.ext_addresses() {
        let d = side_device("ext.media_address", ip, &cfg.ext.interface)?;
        if !v.contains(&d) {
            v.push(d);
        }
    }
    Ok(v)
}

/// Binds the metrics listener to `addr` and to the interface that holds it. Refused: an
/// address no interface holds, and one on a gateway-side interface (`ext_devices`) unless it
/// is a loopback address, which the kernel never accepts from a NIC.
pub async fn bind_metrics(
    addr: SocketAddr,
    ext_devices: &[String],
) -> Result<tokio::net::TcpListener, ServerError> {
    let key = "ops.metrics_listen";
    let device = device_of(key, addr.ip())?.ok_or_else(|| ServerError::Host {
        key,
        problem: format!("no interface of this host has the address {}", addr.ip()),
    })?;
    if ext_devices.contains(&device) && !addr.ip().is_loopback() {
        return Err(ServerError::Host {
            key,
            problem: format!(
                "{} is on {device}, a gateway-side interface; metrics are never served there",
                addr.ip()
            ),
        });
    }
    crate::metrics::bind(addr, &device)
        .await
        .map_err(|source| ServerError::Listen {
            addr,
            what: "metrics",
            source,
        })
}

/// The HEP exporter, if `ops.hep_collector` is set: a UDP socket on the internal SIP address,
/// bound to the interface that holds it, which must not be a gateway-side one (unless it is a
/// loopback address, which the kernel never sends out of a NIC).
pub fn hep_sender(cfg: &Config) -> Result<Option<crate::capture::HepSender>, ServerError> {
    let Some(collector) = cfg.ops.hep_collector else {
        return Ok(None);
    };
    let key = "ops.hep_collector";
    let local = cfg.int.sip_listen.ip();
    let device = side_device("int.sip_listen", local, &cfg.int.interface)?;
    if ext_devices(cfg)?.contains(&device) && !local.is_loopback() {
        return Err(ServerError::Host {
            key,
            problem: format!(
                "HEP is sent from {local} on {device}, a gateway-side interface; clear-text internal signalling never leaves through the gateway NIC"
            ),
        });
    }
    let hep = crate::capture::HepSender::open(
        crate::capture::HepConfig {
            collector,
            agent_id: cfg
                .ops
                .hep_agent_id
                .unwrap_or(crate::config::DEFAULT_HEP_AGENT_ID),
            password: cfg.ops.hep_password.clone(),
        },
        local,
        &device,
    )
    .map_err(|e| ServerError::Host {
        key,
        problem: format!("HEP socket on {local} (interface {device}): {e}"),
    })?;
    tracing::info!(%collector, from = %hep.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()), device, "HEP capture export");
    Ok(Some(hep))
}

/// Starts every part of the server on the current tokio runtime.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    start_from(cfg, None).await
}

/// [`start`], for a configuration read from `path` (the control socket's `reload` re-reads it).
pub async fn start_from(cfg: Config, config_path: Option<PathBuf>) -> Result<Running, ServerError> {
    let started = std::time::Instant::now();
    let metrics = Arc::new(Metrics::new());
    // The stored calls are read before anything binds: a store that cannot be read stops the
    // start (calls would be lost silently otherwise). A failed start drops the data plane,
    // which detaches what it attached.
    let state_cfg = cfg.state.clone();
    // Read while the data plane starts (both take tens of ms; neither needs the other).
    let loading = tokio::task::spawn_blocking(move || crate::state::open(&state_cfg));
    let tls = TlsMaterial::load(&cfg.tls)?;
    let core_cfg = crate::convert::b2bua_config(&cfg)?;

    // The metrics listener is checked before anything is attached or spawned.
    let metrics_listener = match cfg.ops.metrics_listen {
        Some(addr) => Some(bind_metrics(addr, &ext_devices(&cfg)?).await?),
        None => None,
    };
    let hep = hep_sender(&cfg)?;
    let dp_cfg = dataplane_config(&cfg)?;
    let socket_path = matches!(dp_cfg.path, DataPath::Socket);
    let dp = match Dataplane::start(dp_cfg) {
        Ok(dp) => dp,
        // On the socket path the only XDP program is the boundary filter.
        Err(tollgate_dataplane::DataplaneError::Xdp(e)) if socket_path => {
            return Err(ServerError::Boundary(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let loaded = loading
        .await
        .map_err(|e| ServerError::Io {
            what: "reading the call-state store",
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| ServerError::State {
            backend: match cfg.state.backend {
                crate::state::StateBackend::File => "file",
                _ => "valkey",
            },
            source,
        })?;
    if let Some(l) = &loaded {
        tracing::info!(
            backend = l.store.backend(),
            calls = l.records.len(),
            load_ms = l.load_time.as_secs_f64() * 1000.0,
            "call-state store read"
        );
    }
    let path = if socket_path { "sockets" } else { "XDP" };
    match dp.stats().attach {
        Some([e, i]) => {
            tracing::info!(ext = %e, int = %i, path, "media data path; XDP boundary filter on")
        }
        None => tracing::warn!(
            path,
            "media data path; no boundary filter (ext.boundary = \"off\")"
        ),
    }
    let (inactive_tx, inactive_rx) = mpsc::unbounded_channel();
    let timeout = (cfg.media.inactivity_timeout_s > 0)
        .then(|| Duration::from_secs(cfg.media.inactivity_timeout_s));
    let (positions_tx, positions_rx) = mpsc::unbounded_channel();
    let (media, media_thread) =
        crate::media::spawn(dp, Arc::clone(&metrics), timeout, inactive_tx, positions_tx).map_err(
            |source| ServerError::Io {
                what: "media thread",
                source,
            },
        )?;

    let (net_tx, net_rx) = mpsc::channel(8192);
    let ctx = Arc::new(
        TransportCtx::new(
            net_tx,
            cfg.trunks.iter().map(|t| t.address).collect::<HashSet<_>>(),
            tls,
            Arc::clone(&metrics),
            ConnLimits {
                max_message: cfg.sip.max_message_bytes,
                max_per_source: cfg.sip.max_connections_per_source,
                idle: Duration::from_secs(cfg.sip.connection_idle_timeout_s),
                connect_timeout: Duration::from_secs(cfg.sip.connect_timeout_s),
            },
            [cfg.ext.sip_listen.ip(), cfg.int.sip_listen.ip()],
        )
        .with_stream_limits(StreamLimits {
            message_deadline: Duration::from_secs(cfg.sip.message_deadline_s),
            max_faults: cfg.sip.max_stream_faults,
            write_queue_bytes: cfg.sip.write_queue_bytes,
        })
        .with_devices([
            side_device(
                "ext.sip_listen",
                cfg.ext.sip_listen.ip(),
                &cfg.ext.interface,
            )?,
            side_device(
                "int.sip_listen",
                cfg.int.sip_listen.ip(),
                &cfg.int.interface,
            )?,
        ]),
    );

    let mut tasks = Vec::new();
    let (ext_if, int_if) = (cfg.ext.interface.clone(), cfg.int.interface.clone());
    let listen = |addr: SocketAddr, side: Side, t: NetTransport, what: &'static str| {
        let (key, interface) = match (side, t) {
            (Side::Ext, NetTransport::Tcp) => ("ext.sip_listen", ext_if.clone()),
            (Side::Ext, NetTransport::Tls) => ("ext.tls_listen", ext_if.clone()),
            (Side::Int, _) => ("int.sip_listen", int_if.clone()),
        };
        async move {
            let device = side_device(key, addr.ip(), &interface)?;
            transport::bind(addr, Some(&device))
                .await
                .map_err(|source| ServerError::Listen { addr, what, source })
                .map(|l| (l, side, t))
        }
    };
    let mut listeners = vec![
        listen(
            cfg.ext.sip_listen,
            Side::Ext,
            NetTransport::Tcp,
            "gateway SIP/TCP",
        )
        .await?,
    ];
    if let Some(a) = cfg.ext.tls_listen {
        listeners.push(listen(a, Side::Ext, NetTransport::Tls, "gateway SIP/TLS").await?);
    }
    listeners.push(
        listen(
            cfg.int.sip_listen,
            Side::Int,
            NetTransport::Tls,
            "internal SIP/mTLS",
        )
        .await?,
    );
    for (l, side, t) in listeners {
        tracing::info!(addr = %l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()), side = side.as_str(), transport = ?t, "listening");
        tasks.push(tokio::spawn(transport::accept_loop(
            l,
            side,
            t,
            Arc::clone(&ctx),
        )));
    }
    if let Some(listener) = metrics_listener {
        let m = Arc::clone(&metrics);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, m).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }

    let mut writer =
        CdrWriter::open(cfg.ops.cdr_path.as_deref()).map_err(|source| ServerError::Io {
            what: "opening the CDR file",
            source,
        })?;
    let (cdr_tx, mut cdr_rx) =
        mpsc::unbounded_channel::<(Box<tollgate_b2bua::Cdr>, tokio::sync::oneshot::Receiver<_>)>();

    let core = tollgate_b2bua::B2bua::new(core_cfg, Box::new(os_random));
    let driver = Driver::new(
        core,
        Arc::clone(&ctx),
        media.clone(),
        Arc::clone(&metrics),
        cdr_tx,
        cfg.int.next_hop_host.clone(),
    );
    let mut capture = crate::capture::Capture::new(
        [cfg.ext.sip_listen, cfg.int.sip_listen],
        Arc::clone(&metrics),
    );
    if let Some(h) = hep {
        capture = capture.with_hep(h);
    }
    let mut driver = driver.with_capture(capture);
    if let Some(l) = loaded {
        driver = driver.with_state(l.store, l.records);
    }
    let epoch = driver.epoch();
    let cdr_task = tokio::spawn(async move {
        while let Some((cdr, stats)) = cdr_rx.recv().await {
            let media = stats.await.unwrap_or_default();
            writer.write(&crate::cdr::to_json(&cdr, &media, epoch));
        }
    });
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    if !cfg.ops.control_socket.as_os_str().is_empty() {
        let l = crate::control::bind(&cfg.ops.control_socket)?;
        tracing::info!(path = %cfg.ops.control_socket.display(), "control socket");
        tasks.push(tokio::spawn(crate::control::serve(l, control_tx.clone())));
    }
    let driver = driver.with_ops(OpsInfo {
        config_path,
        drain_timeout: Duration::from_secs(cfg.sip.drain_timeout_s),
        datapath: match cfg.media.datapath {
            DatapathKind::Xdp => "xdp",
            DatapathKind::Socket => "socket",
        },
    });
    tracing::info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        since_exec_ms = process_age_ms(),
        "started: data plane attached, listeners bound"
    );
    let driver = tokio::spawn(driver.run(net_rx, inactive_rx, positions_rx, control_rx));
    Ok(Running {
        control: control_tx,
        metrics,
        driver,
        media: Some(media_thread),
        media_handle: media,
        cdr_task,
        tasks,
    })
}

/// Runs the daemon from a configuration file until SIGTERM/SIGINT (drain) completes.
/// SIGHUP reloads the file (trunks, routes, limits, certificates) without dropping calls; a
/// second SIGTERM/SIGINT stops at once. SIGUSR2 hands the calls over to the next process
/// (upgrade): the state is flushed to the call-state store and the process exits without BYE.
pub fn run(path: &Path, threads: usize) -> Result<Summary, ServerError> {
    let cfg = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("tg-ctl")
        .enable_all()
        .build()
        .map_err(|source| ServerError::Io {
            what: "tokio runtime",
            source,
        })?;
    let path: PathBuf = path.to_owned();
    rt.block_on(async move {
        let drain = Duration::from_secs(cfg.sip.drain_timeout_s);
        let lease = if cfg.ha.mode == crate::ha::HaMode::Standby {
            let l =
                crate::ha::wait_for_service(&cfg)
                    .await
                    .map_err(|source| ServerError::State {
                        backend: "valkey",
                        source,
                    })?;
            Some((cfg.clone(), l))
        } else {
            None
        };
        let running = start_from(cfg, Some(path.clone())).await?;
        if let Some((cfg, l)) = lease {
            tokio::spawn(crate::ha::hold(cfg, l));
        }
        let ctl = running.control.clone();
        tokio::spawn(signals(path, ctl, drain));
        let summary = running.wait().await;
        tracing::info!(calls_left = summary.calls_left, "stopped");
        Ok(summary)
    })
}

async fn signals(path: PathBuf, ctl: mpsc::UnboundedSender<Control>, drain: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2: handing the calls over to the next process");
                let _ = ctl.send(Control::Handover);
                return;
            }
            _ = hup.recv() => {
                match Config::load(&path) {
                    Ok(c) => { let _ = ctl.send(Control::Reload(Box::new(c))); }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: configuration refused, keeping the running one"),
                }
                continue;
            }
        }
        if stopping {
            let _ = ctl.send(Control::Stop);
            return;
        }
        stopping = true;
        tracing::info!(
            deadline_s = drain.as_secs(),
            "SIGTERM: draining (send again to stop at once)"
        );
        let _ = ctl.send(Control::Drain { deadline: drain });
    }
}
