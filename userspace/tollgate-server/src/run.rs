//! Assembling and running the daemon: TLS, data plane, media thread, listeners, metrics, CDRs,
//! the driver, and signal handling.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tollgate_dataplane::{DataPath, Dataplane, DataplaneConfig, XdpSettings};

use crate::cdr::CdrWriter;
use crate::config::{Config, ConfigError, DatapathKind};
use crate::driver::{Control, Driver, OpsInfo, Summary, cdr_json};
use crate::metrics::Metrics;
use crate::tls::{TlsError, TlsMaterial};
use crate::transport::{self, NetSide, NetTransport, StreamLimits, TransportCtx};

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

fn os_random(buf: &mut [u8]) {
    // The OS CSPRNG cannot fail on Linux once booted; if it ever did, refusing to run with
    // predictable keys is the only safe answer.
    if let Err(e) = getrandom::fill(buf) {
        tracing::error!(error = %e, "OS random source failed");
        std::process::abort();
    }
}

/// The data plane settings from the configuration.
pub fn dataplane_config(cfg: &Config) -> DataplaneConfig {
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
    d
}

/// Starts every part of the server on the current tokio runtime.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    start_from(cfg, None).await
}

/// [`start`], for a configuration read from `path` (the control socket's `reload` re-reads it).
pub async fn start_from(cfg: Config, path: Option<PathBuf>) -> Result<Running, ServerError> {
    let metrics = Arc::new(Metrics::new());
    let tls = TlsMaterial::load(&cfg.tls)?;
    let core_cfg = crate::convert::b2bua_config(&cfg)?;

    let dp = Dataplane::start(dataplane_config(&cfg))?;
    if let Some([e, i]) = dp.stats().attach {
        tracing::info!(ext = %e, int = %i, "media data path: XDP");
    } else {
        tracing::info!("media data path: sockets");
    }
    let (inactive_tx, inactive_rx) = mpsc::unbounded_channel();
    let timeout = (cfg.media.inactivity_timeout_s > 0)
        .then(|| Duration::from_secs(cfg.media.inactivity_timeout_s));
    let (media, media_thread) = crate::media::spawn(dp, Arc::clone(&metrics), timeout, inactive_tx)
        .map_err(|source| ServerError::Io {
            what: "media thread",
            source,
        })?;

    let (net_tx, net_rx) = mpsc::channel(8192);
    let ctx = TransportCtx::new(
        net_tx,
        cfg.trunks.iter().map(|t| t.address).collect::<HashSet<_>>(),
        tls,
        Arc::clone(&metrics),
        cfg.sip.max_message_bytes,
        cfg.sip.max_connections_per_source,
        Duration::from_secs(cfg.sip.connection_idle_timeout_s),
        Duration::from_secs(cfg.sip.connect_timeout_s),
        [cfg.ext.sip_listen.ip(), cfg.int.sip_listen.ip()],
    );
    let ctx = Arc::new(ctx.with_stream_limits(StreamLimits {
        message_deadline: Duration::from_secs(cfg.sip.message_deadline_s),
        max_faults: cfg.sip.max_stream_faults,
        write_queue_bytes: cfg.sip.write_queue_bytes,
    }));

    let mut tasks = Vec::new();
    let listen = |addr: SocketAddr, side: NetSide, t: NetTransport, what: &'static str| async move {
        transport::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, what, source })
            .map(|l| (l, side, t))
    };
    let mut listeners = vec![
        listen(
            cfg.ext.sip_listen,
            NetSide::Ext,
            NetTransport::Tcp,
            "gateway SIP/TCP",
        )
        .await?,
    ];
    if let Some(a) = cfg.ext.tls_listen {
        listeners.push(listen(a, NetSide::Ext, NetTransport::Tls, "gateway SIP/TLS").await?);
    }
    listeners.push(
        listen(
            cfg.int.sip_listen,
            NetSide::Int,
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
    if let Some(addr) = cfg.ops.metrics_listen {
        let m = Arc::clone(&metrics);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, m).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
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
    let epoch = driver.epoch();
    let cdr_task = tokio::spawn(async move {
        while let Some((cdr, stats)) = cdr_rx.recv().await {
            let media = stats.await.unwrap_or_default();
            writer.write(&cdr_json(&cdr, &media, epoch));
        }
    });
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    if !cfg.ops.control_socket.as_os_str().is_empty() {
        let l = crate::control::bind(&cfg.ops.control_socket)?;
        tracing::info!(path = %cfg.ops.control_socket.display(), "control socket");
        tasks.push(tokio::spawn(crate::control::serve(l, control_tx.clone())));
    }
    let driver = driver.with_ops(OpsInfo {
        config_path: path,
        drain_timeout: Duration::from_secs(cfg.sip.drain_timeout_s),
        datapath: match cfg.media.datapath {
            DatapathKind::Xdp => "xdp",
            DatapathKind::Socket => "socket",
        },
    });
    let driver = tokio::spawn(driver.run(net_rx, inactive_rx, control_rx));
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
/// second SIGTERM/SIGINT stops at once.
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
        let running = start_from(cfg, Some(path.clone())).await?;
        let ctl = running.control.clone();
        tokio::spawn(signals(path, ctl, drain));
        let summary = running.wait().await;
        tracing::info!(calls_left = summary.calls_left, "stopped");
        Ok(summary)
    })
}

async fn signals(path: PathBuf, ctl: mpsc::UnboundedSender<Control>, drain: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
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
