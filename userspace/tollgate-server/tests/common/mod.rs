//! Running Tollgate in-process inside the lab's relay namespace, with the lab PKI.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test helpers; not every test uses each one"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_netlab::LabSpec;
use tollgate_server::config::Config;
use tollgate_server::driver::{Control, Summary};
use tollgate_server::metrics::Metrics;
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::scenario::{Direction, Parties, Plan, Report};

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tg-e2e-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lab's addresses as the simulated parties and the config generator see them.
pub fn addrs(lab: &LabSpec) -> LabAddrs {
    LabAddrs::from_lab(lab)
}

/// Tollgate running in a thread inside the relay namespace.
pub struct Server {
    pub metrics: Arc<Metrics>,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    thread: std::thread::JoinHandle<Result<Summary, tollgate_netlab::LabError>>,
}

impl Server {
    pub fn start(ns: &str, cfg: Config) -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = tollgate_netlab::spawn_in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                match tollgate_server::start(cfg).await {
                    Ok(r) => {
                        tx.send(Ok((Arc::clone(&r.metrics), r.control.clone())))
                            .unwrap();
                        r.wait().await
                    }
                    Err(e) => {
                        tx.send(Err(e.to_string())).unwrap();
                        Summary::default()
                    }
                }
            })
        })
        .unwrap();
        let (metrics, control) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|e| panic!("tollgate start: {e}"));
        Server {
            metrics,
            control,
            thread,
        }
    }

    /// Drains (SIGTERM semantics) and returns what was left.
    pub fn drain(self) -> Summary {
        self.control
            .send(Control::Drain {
                deadline: Duration::from_secs(10),
            })
            .unwrap();
        self.thread.join().unwrap().unwrap()
    }

    pub fn control(&self, c: Control) {
        self.control.send(c).unwrap();
    }

    /// The sum of a metric's series whose labels contain every one of `labels`
    /// (`key="value"`).
    pub fn metric_with(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self.metrics.render();
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.metric_with(name, &[])
    }
}

/// One inbound call with audio, run on a thread of its own while a test does something else
/// to Tollgate: join it for the call's outcome.
pub fn one_call_in_background(
    parties: &Arc<Parties>,
    talk: Duration,
) -> std::thread::JoinHandle<Result<Report, String>> {
    let p = Arc::clone(parties);
    std::thread::spawn(move || {
        p.run(&Plan {
            direction: Direction::Inbound,
            calls: 1,
            concurrency: 1,
            talk,
            ring: Duration::ZERO,
            media: true,
            first_index: 0,
            rate: None,
        })
    })
}
