//! The one API the control plane uses: start the data plane, install, update and remove media
//! flows, read their counters and events, stop.
//!
//! On the XDP path every flow goes into both NICs' eBPF flow maps and into every worker's table
//! (RSS decides which queue, hence which worker, sees a given 5-tuple; each worker keeps its own
//! crypto state, and a stable 5-tuple always lands on the same one). On the socket path each
//! flow is owned by one worker, which holds its bound UDP sockets.
//!
//! On both paths the same XDP program can enforce the boundary between the NICs
//! ([`crate::boundary`]): on the socket path it is attached with no flows, so it only filters.
//! Socket-path relay sockets are bound to their side's NIC (SO_BINDTODEVICE) when
//! [`DataplaneConfig::devices`] names them.
//!
//! Every `Dataplane` call acts in the network namespace of the thread that started it: start and
//! drive it from the same thread (the daemon runs entirely in the relay's namespace).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tollgate_common::{FLOW_F_LEARN, FLOW_F_REMOTE_UNKNOWN, FlowEntry};
use tollgate_relay::frame::Mac;
use tollgate_relay::{
    DropReason, FlowCounters, FlowCrypto, FlowEvent, MediaFlowSpec, Side, SideSnapshot,
};

use crate::afxdp::{BindMode, RingSizes, Umem, XskSocket};
use crate::boundary::{Boundary, PolicyError, SidePolicy};
use crate::neigh::{NextHop, Resolver, Watcher};
use crate::sys::{self, Waker, monotonic_ns};
use crate::worker::{Control, EventQueue, WorkerCtx, WorkerStats, pin};
use crate::xdp::{AttachMode, ModeRequest, XdpCounters, XdpError, XdpProgram, addr16, flow_key};
use crate::xsk_worker::XskPair;

/// Which data path relays the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPath {
    /// XDP steering + AF_XDP workers on two NICs.
    Xdp(XdpSettings),
    /// UDP sockets (recvmmsg/sendmmsg), anywhere.
    Socket,
}

/// Which worker runs on the XDP path's AF_XDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpWorker {
    /// The relay ([`crate::xsk_worker`]).
    #[default]
    Relay,
    /// The null worker of the benchmarks' floor path ([`crate::floor_worker`]): the same rings
    /// and loop, headers rewritten, no SRTP and no flow state. Never for production.
    Floor,
}

/// Settings of the XDP path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSettings {
    /// Gateway-side interface.
    pub ext_iface: String,
    /// Internal-side interface.
    pub int_iface: String,
    /// Native or skb attach.
    pub attach: ModeRequest,
    /// AF_XDP bind mode.
    pub bind: BindMode,
    /// UMEM frames per worker (power of two).
    pub frames: u32,
    /// Ring sizes.
    pub rings: RingSizes,
    /// Set the NICs' receive queues to the worker count if they differ (else fail).
    pub set_channels: bool,
    /// VLAN tag on the gateway side, if any.
    pub ext_vlan: Option<u16>,
    /// VLAN tag on the internal side, if any.
    pub int_vlan: Option<u16>,
}

impl XdpSettings {
    /// Defaults for two interfaces.
    pub fn new(ext_iface: &str, int_iface: &str) -> XdpSettings {
        XdpSettings {
            ext_iface: ext_iface.to_owned(),
            int_iface: int_iface.to_owned(),
            attach: ModeRequest::NativeThenSkb,
            bind: BindMode::Auto,
            // Both sides' fill rings stocked to the ring depth (2 x 8192 frames of 2 KiB:
            // 32 MiB per worker).
            frames: 2 * crate::afxdp::RING_DEPTH,
            rings: RingSizes::default(),
            set_channels: true,
            ext_vlan: None,
            int_vlan: None,
        }
    }
}

/// Data plane configuration.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The path.
    pub path: DataPath,
    /// Worker threads (on the XDP path: one per NIC queue).
    pub workers: usize,
    /// CPUs to pin workers to, in order (empty: no pinning).
    pub cpus: Vec<usize>,
    /// SRTP context settings.
    pub srtp: tollgate_srtp::Config,
    /// XDP path: workers poll their rings without ever sleeping (for dedicated cores; lowest
    /// and steadiest latency, 100% CPU). Off: they spin while traffic is dense and sleep when it
    /// is not.
    pub busy_poll: bool,
    /// XDP path, when not busy polling: the longest a worker lets received frames wait so that
    /// one wakeup serves several of them (interrupt moderation; 0: wake for every frame). The
    /// window adapts to the rate (about 16 frame gaps, so dense traffic gets short windows) up
    /// to this bound, and is used only while a window holds several frames.
    pub coalesce_us: u32,
    /// Capacity of the event queue.
    pub event_capacity: usize,
    /// Socket path: the interfaces `[ext, int]` that hold each side's media address; relay
    /// sockets are bound to them (SO_BINDTODEVICE). `None`: no device binding (tests,
    /// benchmarks).
    pub devices: Option<[String; 2]>,
    /// The boundary policy of each NIC (`None`: off, every non-flow frame goes to the kernel).
    pub boundary: Option<Boundary>,
    /// XDP path: the worker that serves the AF_XDP sockets (benchmarks only change it).
    pub xdp_worker: XdpWorker,
}

/// Default [`DataplaneConfig::coalesce_us`]: at most 500 µs of added latency, 2.5% of a 20 ms
/// packet interval and far below a jitter buffer's granularity. A wakeup costs the worker as
/// much CPU as relaying 10-15 frames, so the bound decides CPU per packet at moderate rates:
/// on the lab VM at 25k packets/s, 200 µs cost about 9.6 µs of CPU per packet and 500 µs about
/// 6.1 µs (`cargo xtask bench dataplane`). Operators who want less latency lower it.
pub const DEFAULT_COALESCE_US: u32 = 500;

impl DataplaneConfig {
    /// A configuration with defaults for `path` and `workers`.
    pub fn new(path: DataPath, workers: usize) -> DataplaneConfig {
        DataplaneConfig {
            path,
            workers,
            cpus: Vec::new(),
            srtp: tollgate_srtp::Config::default(),
            busy_poll: false,
            coalesce_us: DEFAULT_COALESCE_US,
            event_capacity: 65536,
            devices: None,
            boundary: None,
            xdp_worker: XdpWorker::Relay,
        }
    }
}

/// Why the data plane refused something.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// XDP program problem.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// AF_XDP socket problem.
    #[error(transparent)]
    Xsk(#[from] crate::afxdp::XskError),
    /// The boundary policy does not fit the program.
    #[error(transparent)]
    Boundary(#[from] PolicyError),
    /// The NIC's queue count does not match the workers and could not be changed.
    #[error(
        "{iface} has {queues} receive queue(s) but {workers} worker(s) were configured; set the NIC's channels to {workers} (ethtool -L {iface} combined {workers}) or change media.workers: {detail}"
    )]
    Channels {
        /// Interface.
        iface: String,
        /// Its queues.
        queues: u32,
        /// Configured workers.
        workers: usize,
        /// Why changing failed.
        detail: String,
    },
    /// An OS call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The flow is invalid.
    #[error("flow {id}: {why}")]
    BadFlow {
        /// Flow id.
        id: u64,
        /// What is wrong.
        why: String,
    },
    /// No such flow.
    #[error("no flow {0}")]
    NoSuchFlow(u64),
    /// A worker thread is gone.
    #[error("worker {0} has stopped")]
    WorkerGone(usize),
    /// A worker did not acknowledge its commands in time ([`Dataplane::sync`]).
    #[error("worker {worker} did not apply its commands within {timeout:?}")]
    SyncTimeout {
        /// The worker.
        worker: usize,
        /// How long [`Dataplane::sync`] waited.
        timeout: Duration,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Io { what, source }
}

struct Worker {
    tx: crossbeam_channel::Sender<Control>,
    /// Messages sent to it: [`WorkerStats::acked`] reaches this once it has applied them all.
    sent: u64,
    waker: Arc<Waker>,
    stats: Arc<WorkerStats>,
    thread: Option<JoinHandle<()>>,
}

struct Nic {
    prog: XdpProgram,
    iface: String,
    mac: Mac,
    vlan: Option<u16>,
}

struct Installed {
    spec: MediaFlowSpec,
    counters: Vec<Arc<FlowCounters>>,
    /// Socket path: the owning worker and the ports it has sockets for.
    owner: Option<usize>,
    bound: HashSet<SocketAddr>,
    /// XDP path: next hop per side (`None` = unresolved).
    next_hop: [Option<Mac>; 2],
}

/// Summary of the data plane's own counters.
#[derive(Debug, Clone, Default)]
pub struct DataplaneStats {
    /// XDP counters per NIC (`[ext, int]`): XDP path, or socket path with the boundary filter.
    pub xdp: Option<[XdpCounters; 2]>,
    /// Attach mode per NIC (wherever the program is attached).
    pub attach: Option<[AttachMode; 2]>,
    /// Per worker: (rx, tx, dropped, busy ns, cpu ns, loops).
    pub workers: Vec<WorkerSnapshot>,
    /// Flows installed.
    pub flows: usize,
    /// Flows with a side whose next hop is unresolved (XDP path).
    pub unresolved: usize,
}

/// One worker's statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerSnapshot {
    /// Packets received.
    pub rx: u64,
    /// Packets sent.
    pub tx: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Frames that did not parse.
    pub malformed: u64,
    /// Packets for unknown ports.
    pub no_flow: u64,
    /// Packets dropped, by [`DropReason`] index (they sum to `dropped`; `malformed` and
    /// `no_flow` are two of them).
    pub drops: [u64; DropReason::COUNT],
    /// Wall ns spent busy.
    pub busy_ns: u64,
    /// Thread CPU ns.
    pub cpu_ns: u64,
    /// Loop iterations.
    pub loops: u64,
    /// Events lost.
    pub events_lost: u64,
    /// Flows in this worker's table (control messages applied so far).
    pub flows: u64,
}

/// The running data plane.
pub struct Dataplane {
    cfg: DataplaneConfig,
    workers: Vec<Worker>,
    nics: Option<[Nic; 2]>,
    /// Socket path: the boundary programs on `[ext, int]` (filter only, no flows).
    guards: Option<[XdpProgram; 2]>,
    flows: HashMap<u64, Installed>,
    ports: HashMap<SocketAddr, u64>,
    events: Arc<EventQueue>,
    stop: Arc<AtomicBool>,
    resolver: Option<Resolver>,
    watcher: Option<Watcher>,
    neigh_cache: HashMap<IpAddr, (Option<Mac>, u64)>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("path", &self.cfg.path)
            .field("workers", &self.workers.len())
            .field("flows", &self.flows.len())
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Starts the data plane: on the XDP path, attaches the program to both NICs, checks the
    /// queue count, creates the AF_XDP sockets and registers them; then starts the workers.
    pub fn start(cfg: DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        if cfg.workers == 0 {
            return Err(DataplaneError::BadFlow {
                id: 0,
                why: "workers must be at least 1".into(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(EventQueue::new(cfg.event_capacity.max(16)));
        let mut dp = Dataplane {
            cfg: cfg.clone(),
            workers: Vec::new(),
            nics: None,
            guards: None,
            flows: HashMap::new(),
            ports: HashMap::new(),
            events,
            stop,
            resolver: None,
            watcher: None,
            neigh_cache: HashMap::new(),
        };
        match &cfg.path {
            DataPath::Socket => {
                if let Some(b) = &cfg.boundary {
                    let [ext, int] = &b.interfaces;
                    let e = attach_nic(ext, b.attach, Some(&b.sides[0]))?;
                    let i = attach_nic(int, b.attach, Some(&b.sides[1]))?;
                    tracing::info!(
                        ext = %ext, ext_mode = %e.mode().map_or("?".into(), |m| m.to_string()),
                        int = %int, int_mode = %i.mode().map_or("?".into(), |m| m.to_string()),
                        "XDP boundary filter attached (socket data path)"
                    );
                    dp.guards = Some([e, i]);
                }
                for i in 0..cfg.workers {
                    let (ctx, w) = dp.worker_ctx(i)?;
                    let cpu = cfg.cpus.get(i).copied();
                    let thread = std::thread::Builder::new()
                        .name(format!("tg-sock-{i}"))
                        .spawn(move || {
                            pin(cpu);
                            crate::socket_worker::run(ctx)
                        })
                        .map_err(io_err("spawn worker"))?;
                    dp.workers.push(Worker {
                        thread: Some(thread),
                        ..w
                    });
                }
            }
            DataPath::Xdp(x) => dp.start_xdp(x)?,
        }
        Ok(dp)
    }

    fn worker_ctx(&self, index: usize) -> Result<(WorkerCtx, Worker), DataplaneError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let waker = Arc::new(Waker::new().map_err(io_err("eventfd"))?);
        let stats = Arc::new(WorkerStats::default());
        let ctx = WorkerCtx {
            index,
            rx,
            waker: Arc::clone(&waker),
            events: Arc::clone(&self.events),
            stats: Arc::clone(&stats),
            stop: Arc::clone(&self.stop),
            srtp: self.cfg.srtp,
            busy_poll: self.cfg.busy_poll,
            coalesce_ns: u64::from(self.cfg.coalesce_us) * 1_000,
        };
        Ok((
            ctx,
            Worker {
                tx,
                sent: 0,
                waker,
                stats,
                thread: None,
            },
        ))
    }

    fn start_xdp(&mut self, x: &XdpSettings) -> Result<(), DataplaneError> {
        let workers = self.cfg.workers;
        for iface in [&x.ext_iface, &x.int_iface] {
            let ch =
                sys::channels(iface).map_err(io_err(format!("reading channels of {iface}")))?;
            if ch.rx_queues() as usize != workers {
                let fail = |detail: String| DataplaneError::Channels {
                    iface: iface.clone(),
                    queues: ch.rx_queues(),
                    workers,
                    detail,
                };
                if !x.set_channels {
                    return Err(fail("media.set_channels is off".into()));
                }
                sys::set_rx_queues(iface, workers as u32).map_err(|e| fail(e.to_string()))?;
                let now = sys::channels(iface).map_err(io_err("reading channels"))?;
                if now.rx_queues() as usize != workers {
                    return Err(fail(format!("driver left {} queues", now.rx_queues())));
                }
                tracing::info!(iface = %iface, queues = workers, "set NIC receive queues to the worker count");
            }
        }
        let policy = |i: usize| self.cfg.boundary.as_ref().map(|b| &b.sides[i]);
        let mut ext = attach_nic(&x.ext_iface, x.attach, policy(0))?;
        let mut int = attach_nic(&x.int_iface, x.attach, policy(1))?;
        tracing::info!(
            ext = %x.ext_iface, ext_mode = %ext.mode().map_or("?".into(), |m| m.to_string()),
            int = %x.int_iface, int_mode = %int.mode().map_or("?".into(), |m| m.to_string()),
            "XDP program attached"
        );
        for i in 0..workers {
            let umem = Umem::new(x.frames, 2048)?;
            let es = XskSocket::bind_owner(&umem, &x.ext_iface, i as u32, x.rings, x.bind)?;
            let is = XskSocket::bind_shared(&es, &x.int_iface, i as u32, x.rings, x.bind)?;
            ext.register_socket(i as u32, es.raw_fd())?;
            int.register_socket(i as u32, is.raw_fd())?;
            tracing::info!(
                worker = i,
                zero_copy = es.zero_copy && is.zero_copy,
                "AF_XDP sockets bound"
            );
            let (ctx, w) = self.worker_ctx(i)?;
            let cpu = self.cfg.cpus.get(i).copied();
            let pair = XskPair {
                umem,
                ext: es,
                int: is,
            };
            let kind = self.cfg.xdp_worker;
            let thread = std::thread::Builder::new()
                .name(format!("tg-xsk-{i}"))
                .spawn(move || {
                    pin(cpu);
                    match kind {
                        XdpWorker::Relay => crate::xsk_worker::run(ctx, pair),
                        XdpWorker::Floor => crate::floor_worker::run(ctx, pair),
                    }
                })
                .map_err(io_err("spawn worker"))?;
            self.workers.push(Worker {
                thread: Some(thread),
                ..w
            });
        }
        let ext_mac =
            sys::mac_of(&x.ext_iface).map_err(io_err(format!("MAC of {}", x.ext_iface)))?;
        let int_mac =
            sys::mac_of(&x.int_iface).map_err(io_err(format!("MAC of {}", x.int_iface)))?;
        self.nics = Some([
            Nic {
                prog: ext,
                iface: x.ext_iface.clone(),
                mac: ext_mac,
                vlan: x.ext_vlan,
            },
            Nic {
                prog: int,
                iface: x.int_iface.clone(),
                mac: int_mac,
                vlan: x.int_vlan,
            },
        ]);
        self.resolver = Some(Resolver::new().map_err(io_err("netlink socket"))?);
        let ifindexes = [
            crate::afxdp::ifindex(&x.ext_iface)?,
            crate::afxdp::ifindex(&x.int_iface)?,
        ];
        self.watcher = Some(Watcher::new(&ifindexes).map_err(io_err("netlink subscription"))?);
        Ok(())
    }

    /// The configured path.
    pub fn path(&self) -> &DataPath {
        &self.cfg.path
    }

    /// Installs a flow, or updates an installed flow with the same id (re-INVITE: new remote
    /// addresses, re-keying). Keys are validated and local ports checked before any worker sees
    /// the flow.
    pub fn install(&mut self, mut spec: MediaFlowSpec) -> Result<(), DataplaneError> {
        let id = spec.id;
        let bad = |why: String| DataplaneError::BadFlow { id, why };
        // The SRTP contexts (key schedule, resume positions) are built here, on the control
        // thread, one set per worker that gets the flow: a worker only links them in. Building
        // them is also the check of the keys, before any worker sees the flow.
        let targets = match &self.cfg.path {
            DataPath::Xdp(_) => self.workers.len(),
            DataPath::Socket => 1,
        };
        let prev_spec = self.flows.get(&id).map(|p| &p.spec);
        let crypto = (0..targets)
            .map(|_| FlowCrypto::build(&spec, prev_spec, self.cfg.srtp))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        for (_, a) in spec.local_ports() {
            if let Some(&owner) = self.ports.get(&a)
                && owner != id
            {
                return Err(bad(format!("local port {a} is used by flow {owner}")));
            }
        }
        let prev = self.flows.remove(&id);
        // Remove ports the update no longer uses.
        if let Some(p) = &prev {
            let keep: HashSet<SocketAddr> = spec.local_ports().map(|(_, a)| a).collect();
            for (side, a) in p.spec.local_ports() {
                if !keep.contains(&a) {
                    self.ports.remove(&a);
                    if let Some(n) = self.nics.as_mut() {
                        n[side.index()].prog.remove_flow(&flow_key(a))?;
                    }
                }
            }
        }
        let mut next_hop = [None, None];
        if let Some(nics) = &self.nics {
            for side in [Side::Ext, Side::Int] {
                let nic = &nics[side.index()];
                let leg = match side {
                    Side::Ext => &mut spec.ext,
                    Side::Int => &mut spec.int,
                };
                leg.nic_mac = nic.mac;
                leg.vlan = nic.vlan;
                if leg.next_hop_mac.is_none()
                    && let Some(remote) = leg.remote_rtp
                {
                    leg.next_hop_mac = self
                        .resolver
                        .as_mut()
                        .and_then(|r| cached_resolve(r, &mut self.neigh_cache, remote.ip()));
                }
                next_hop[side.index()] = leg.next_hop_mac;
            }
        }
        let result = match &self.cfg.path {
            DataPath::Xdp(_) => self.install_xdp(&spec, crypto, prev.as_ref()),
            DataPath::Socket => self.install_socket(&spec, crypto, prev.as_ref()),
        };
        let (owner, bound, counters) = match result {
            Ok(v) => v,
            Err(e) => {
                if let Some(p) = prev {
                    self.flows.insert(id, p);
                }
                return Err(e);
            }
        };
        for (_, a) in spec.local_ports() {
            self.ports.insert(a, id);
        }
        self.flows.insert(
            id,
            Installed {
                spec,
                counters,
                owner,
                bound,
                next_hop,
            },
        );
        Ok(())
    }

    #[allow(clippy::type_complexity)] // reason: a private triple returned to one caller.
    fn install_xdp(
        &mut self,
        spec: &MediaFlowSpec,
        crypto: Vec<FlowCrypto>,
        prev: Option<&Installed>,
    ) -> Result<(Option<usize>, HashSet<SocketAddr>, Vec<Arc<FlowCounters>>), DataplaneError> {
        let now = monotonic_ns();
        let nics = self
            .nics
            .as_mut()
            .ok_or(DataplaneError::NoSuchFlow(spec.id))?;
        for side in [Side::Ext, Side::Int] {
            let leg = spec.leg(side);
            let nic = &mut nics[side.index()];
            let ports = [(leg.local_rtp, leg.remote_rtp)]
                .into_iter()
                .chain(leg.local_rtcp.map(|l| (l, leg.remote_rtcp_addr())));
            for (local, remote) in ports {
                let mut e = FlowEntry {
                    flow_id: spec.id as u32,
                    ..FlowEntry::default()
                };
                match remote {
                    Some(r) => {
                        e.remote_addr = addr16(r.ip());
                        e.remote_port_be = r.port().to_be();
                    }
                    None => e.flags |= FLOW_F_REMOTE_UNKNOWN,
                }
                if leg.learn_window_ns > 0 {
                    e.flags |= FLOW_F_LEARN;
                    e.learn_until_ns = now.saturating_add(leg.learn_window_ns);
                }
                // An update keeps what the program latched if the SDP addresses did not change.
                if let Some(p) = prev {
                    let pl = p.spec.leg(side);
                    if pl.remote_rtp == leg.remote_rtp
                        && pl.remote_rtcp == leg.remote_rtcp
                        && let Some(old) = nic.prog.flow(&flow_key(local))?
                    {
                        e = FlowEntry {
                            flow_id: e.flow_id,
                            ..old
                        };
                    }
                }
                nic.prog.insert_flow(flow_key(local), e)?;
            }
        }
        let counters = match prev {
            Some(p) => p.counters.clone(),
            None => self
                .workers
                .iter()
                .map(|_| Arc::new(FlowCounters::default()))
                .collect(),
        };
        for (i, crypto) in crypto.into_iter().enumerate() {
            let msg = Control::Install {
                spec: Box::new(spec.clone()),
                crypto,
                counters: Arc::clone(&counters[i]),
                sockets: Vec::new(),
            };
            self.send(i, msg)?;
        }
        Ok((None, HashSet::new(), counters))
    }

    #[allow(clippy::type_complexity)] // reason: a private triple returned to one caller.
    fn install_socket(
        &mut self,
        spec: &MediaFlowSpec,
        crypto: Vec<FlowCrypto>,
        prev: Option<&Installed>,
    ) -> Result<(Option<usize>, HashSet<SocketAddr>, Vec<Arc<FlowCounters>>), DataplaneError> {
        let owner = prev
            .and_then(|p| p.owner)
            .unwrap_or((spec.id as usize) % self.workers.len());
        let mut bound = prev.map(|p| p.bound.clone()).unwrap_or_default();
        let mut sockets = Vec::new();
        for (side, a) in spec.local_ports() {
            if !bound.contains(&a) {
                let device = self.cfg.devices.as_ref().map(|d| d[side.index()].as_str());
                let fd = crate::socket_worker::bind_udp(a, device)
                    .map_err(io_err(format!("bind {a}")))?;
                sockets.push((a, fd));
                bound.insert(a);
            }
        }
        let counters = match prev {
            Some(p) => p.counters.clone(),
            None => vec![Arc::new(FlowCounters::default())],
        };
        let crypto = crypto.into_iter().next().ok_or(DataplaneError::BadFlow {
            id: spec.id,
            why: "no SRTP state built".into(),
        })?;
        let msg = Control::Install {
            spec: Box::new(spec.clone()),
            crypto,
            counters: Arc::clone(&counters[0]),
            sockets,
        };
        self.send(owner, msg)?;
        Ok((Some(owner), bound, counters))
    }

    /// Removes a flow: its eBPF entries, its worker state, its sockets.
    pub fn remove(&mut self, id: u64) -> Result<(), DataplaneError> {
        let f = self
            .flows
            .remove(&id)
            .ok_or(DataplaneError::NoSuchFlow(id))?;
        for (side, a) in f.spec.local_ports() {
            self.ports.remove(&a);
            if let Some(n) = self.nics.as_mut() {
                n[side.index()].prog.remove_flow(&flow_key(a))?;
            }
        }
        let targets: Vec<usize> = match f.owner {
            Some(o) => vec![o],
            None => (0..self.workers.len()).collect(),
        };
        for i in targets {
            self.send(i, Control::Remove(id))?;
        }
        Ok(())
    }

    /// Sends `msg` to worker `i` and wakes it; counts it for [`Dataplane::sync`].
    fn send(&mut self, i: usize, msg: Control) -> Result<(), DataplaneError> {
        let w = self
            .workers
            .get_mut(i)
            .ok_or(DataplaneError::WorkerGone(i))?;
        w.tx.send(msg).map_err(|_| DataplaneError::WorkerGone(i))?;
        w.sent += 1;
        w.waker.wake();
        Ok(())
    }

    /// Waits until every worker has applied every command sent to it so far (installs, updates,
    /// removals, next hops) and has finished the packets it was relaying when `sync` was
    /// called, so their counters are written. Costs the workers nothing per packet: each
    /// acknowledges at the point where it already drains its control channel.
    pub fn sync(&mut self, timeout: Duration) -> Result<(), DataplaneError> {
        for i in 0..self.workers.len() {
            self.send(i, Control::Barrier)?;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = Duration::from_micros(20);
        for (i, w) in self.workers.iter().enumerate() {
            while w.stats.acked.load(Ordering::Acquire) < w.sent {
                if w.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                    return Err(DataplaneError::WorkerGone(i));
                }
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Err(DataplaneError::SyncTimeout { worker: i, timeout });
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Whether a flow is installed.
    pub fn contains(&self, id: u64) -> bool {
        self.flows.contains_key(&id)
    }

    /// Number of installed flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The spec a flow was installed with.
    pub fn spec(&self, id: u64) -> Option<&MediaFlowSpec> {
        self.flows.get(&id).map(|f| &f.spec)
    }

    /// A flow's counters, summed over workers: `[arrived on ext, arrived on int]`, plus the
    /// XDP program's source-mismatch drops per side (XDP path; included in `drops[Source]`).
    pub fn counters(&mut self, id: u64) -> Option<[SideSnapshot; 2]> {
        let f = self.flows.get(&id)?;
        let mut out = [SideSnapshot::default(); 2];
        for c in &f.counters {
            for (o, s) in out.iter_mut().zip(c.sides.iter()) {
                o.merge(&s.snapshot());
            }
        }
        let ports: Vec<(Side, SocketAddr)> = f.spec.local_ports().collect();
        if let Some(nics) = self.nics.as_mut() {
            for (side, a) in ports {
                if let Ok(Some(e)) = nics[side.index()].prog.flow(&flow_key(a)) {
                    out[side.index()].drops[DropReason::Source as usize] += e.src_mismatch;
                }
            }
        }
        Some(out)
    }

    /// Takes the queued flow events (first packet, learned source).
    pub fn drain_events(&self, out: &mut Vec<FlowEvent>) {
        while let Some(e) = self.events.pop() {
            out.push(e);
        }
    }

    /// Takes up the neighbour and route changes the kernel announced since the last call (one
    /// non-blocking read when there were none). When a neighbour on either NIC got a usable or
    /// different MAC, or a route changed, next hops are resolved again at once
    /// ([`Dataplane::refresh_next_hops`]). Returns whether they were.
    pub fn watch_next_hops(&mut self) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        let changes = w.drain();
        if !changes.any() || self.flows.is_empty() {
            return false;
        }
        self.refresh_next_hops();
        true
    }

    /// Periodic upkeep for the control plane to call about once a second: re-resolves next
    /// hops (the neighbour table may have changed) and pushes changes to the workers. Returns
    /// the number of flow sides whose next hop is still unresolved.
    pub fn refresh_next_hops(&mut self) -> usize {
        let Some(resolver) = self.resolver.as_mut() else {
            return 0;
        };
        self.neigh_cache.clear();
        let mut unresolved = 0;
        let mut updates = Vec::new();
        for (id, f) in self.flows.iter_mut() {
            for side in [Side::Ext, Side::Int] {
                let Some(remote) = f.spec.leg(side).remote_rtp else {
                    continue;
                };
                let mac = cached_resolve(resolver, &mut self.neigh_cache, remote.ip());
                if mac.is_none() {
                    unresolved += 1;
                }
                if mac != f.next_hop[side.index()] && mac.is_some() {
                    f.next_hop[side.index()] = mac;
                    updates.push((*id, side, mac));
                }
            }
        }
        for (flow, side, mac) in updates {
            for i in 0..self.workers.len() {
                let _ = self.send(i, Control::NextHop { flow, side, mac });
            }
        }
        unresolved
    }

    /// Data plane statistics.
    pub fn stats(&self) -> DataplaneStats {
        let workers = self
            .workers
            .iter()
            .map(|w| {
                let s = &w.stats;
                let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let mut drops = [0; DropReason::COUNT];
                for (d, c) in drops.iter_mut().zip(s.drops.iter()) {
                    *d = l(c);
                }
                WorkerSnapshot {
                    rx: l(&s.rx),
                    tx: l(&s.tx),
                    dropped: l(&s.dropped),
                    malformed: drops[DropReason::Malformed as usize],
                    no_flow: drops[DropReason::NoFlow as usize],
                    drops,
                    busy_ns: l(&s.busy_ns),
                    cpu_ns: l(&s.cpu_ns),
                    loops: l(&s.loops),
                    events_lost: l(&s.events_lost),
                    flows: l(&s.flows),
                }
            })
            .collect();
        let progs = match (&self.nics, &self.guards) {
            (Some([e, i]), _) => Some([&e.prog, &i.prog]),
            (None, Some([e, i])) => Some([e, i]),
            (None, None) => None,
        };
        let (xdp, attach) = match progs {
            Some([e, i]) => (
                match (e.counters(), i.counters()) {
                    (Ok(a), Ok(b)) => Some([a, b]),
                    _ => None,
                },
                match (e.mode(), i.mode()) {
                    (Some(a), Some(b)) => Some([a, b]),
                    _ => None,
                },
            ),
            None => (None, None),
        };
        let unresolved = self
            .flows
            .values()
            .filter(|f| {
                self.nics.is_some()
                    && [Side::Ext, Side::Int].iter().any(|s| {
                        f.spec.leg(*s).remote_rtp.is_some() && f.next_hop[s.index()].is_none()
                    })
            })
            .count();
        DataplaneStats {
            xdp,
            attach,
            workers,
            flows: self.flows.len(),
            unresolved,
        }
    }

    /// Interface names (`[ext, int]`) on the XDP path.
    pub fn interfaces(&self) -> Option<[&str; 2]> {
        self.nics
            .as_ref()
            .map(|[e, i]| [e.iface.as_str(), i.iface.as_str()])
    }

    /// Stops the workers and detaches the XDP programs.
    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // Dropping the programs detaches them.
        self.nics = None;
        self.guards = None;
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// Loads the program, writes `policy` (if any) for `iface`, then attaches it.
fn attach_nic(
    iface: &str,
    request: ModeRequest,
    policy: Option<&SidePolicy>,
) -> Result<XdpProgram, DataplaneError> {
    let abi = match policy {
        Some(p) => {
            let index = sys::ifindex(iface).map_err(io_err(format!("interface {iface}")))?;
            Some(p.to_abi(index)?)
        }
        None => None,
    };
    Ok(XdpProgram::attach_with(iface, request, abi.as_ref())?)
}

/// Resolves with a per-refresh cache (many flows share few next hops), retrying a pending
/// resolution briefly so a flow installed right after ARP starts usually gets its MAC.
fn cached_resolve(
    r: &mut Resolver,
    cache: &mut HashMap<IpAddr, (Option<Mac>, u64)>,
    ip: IpAddr,
) -> Option<Mac> {
    if let Some((m, _)) = cache.get(&ip) {
        return *m;
    }
    let mut mac = None;
    for attempt in 0..3 {
        match r.resolve(ip) {
            Ok(NextHop::Resolved { mac: m, .. }) => {
                mac = Some(m);
                break;
            }
            Ok(NextHop::Pending { .. }) => {
                if attempt < 2 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Err(e) => {
                tracing::warn!(%ip, error = %e, "next hop lookup failed");
                break;
            }
        }
    }
    cache.insert(ip, (mac, monotonic_ns()));
    mac
}
