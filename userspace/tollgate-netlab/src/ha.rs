//! The failover lab: relay nodes on two switched segments, keepalived moving the service
//! addresses between them, and Valkey holding the call state.
//!
//! ```text
//!                 [sw] br-ext                          [sw] br-int
//!  [gw] 10.201.1.2 ──┤                                     ├── 10.201.2.2 [int]
//!                    ├── ext0 10.201.1.11 [n1] 10.201.2.11 int0 ──┤
//!                    ├── ext0 10.201.1.12 [n2] 10.201.2.12 int0 ──┤
//!                    ├── ext0 10.201.1.1k [nk] 10.201.2.1k int0 ──┤
//!                                                          ├── 10.201.2.50 [vk] valkey :6379
//! ```
//!
//! A *service* is a pair of virtual addresses (svc1: 10.201.1.1 outside, 10.201.2.1 inside;
//! svc2: 10.201.1.3 / 10.201.2.3) that keepalived moves between nodes; the gateway and the
//! internal endpoint keep today's addresses, so `LabAddrs`/`Parties` work unchanged with the
//! service addresses as the relay addresses ([`HaSpec::lab_spec`]).
//!
//! [`HaSpec::up_guarded`] returns an [`HaLab`] that, when dropped (also during a panic unwind),
//! kills by PID every process it started (Valkey, keepalived) and deletes every namespace.
//! Failure injection: [`HaLab::cut_links`] / [`HaLab::restore_links`] take a node's two switch
//! ports down and up (the node sees NO-CARRIER), [`HaLab::block_vrrp_into`] drops VRRP
//! (IP protocol 112) on the switch port towards a node (a tc filter in the switch namespace),
//! [`HaLab::kill_keepalived`] is a `kill -9` of a node's keepalived (parent and VRRP child).
//!
//! keepalived runs VRRPv3 on int0 only, `nopreempt` (a node that comes back never takes the
//! addresses back), advertisements every 100 ms by default (takeover measured at 0.3–0.4 s
//! after a `kill -9`), three gratuitous ARPs per address at once on becoming master, and three
//! more whenever a master hears a lower-priority master (a partition healing, or VRRP blocked
//! into the standby): the gateway's and the internal endpoint's ARP entries return to it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{LabError, LabSpec, Subnet, ip, namespaces, run};

/// Valkey's address in the lab (on the internal segment).
pub const VALKEY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 50);
/// Valkey's TCP port.
pub const VALKEY_PORT: u16 = 6379;

/// One service: the two virtual addresses keepalived moves as one VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name (the VRRP instance's name, and the `[state] node_id` of the Tollgates that
    /// carry it).
    pub name: String,
    /// VRRP virtual router id (unique per service on the segment).
    pub vrid: u8,
    /// The gateway-side address (`ext.sip_listen`'s IP).
    pub ext: Ipv4Addr,
    /// The internal address (`int.sip_listen`'s IP).
    pub int: Ipv4Addr,
}

impl Service {
    /// `svc1` (10.201.1.1 / 10.201.2.1, the addresses of the single-relay lab), `svc2`
    /// (10.201.1.3 / 10.201.2.3), `svcN` (10.201.1.(2N-1) / 10.201.2.(2N-1)); N in 1..=4.
    pub fn numbered(n: u8) -> Service {
        assert!((1..=4).contains(&n), "services 1..=4");
        let host = 2 * n - 1;
        Service {
            name: format!("svc{n}"),
            vrid: 50 + n,
            ext: Ipv4Addr::new(10, 201, 1, host),
            int: Ipv4Addr::new(10, 201, 2, host),
        }
    }
}

/// Names and addresses of one failover lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSpec {
    /// Prefix of every namespace name.
    pub prefix: String,
    /// Number of relay nodes (`n1` … `nN`).
    pub nodes: usize,
}

impl HaSpec {
    /// A lab with names unique to this process and call, for tests that run concurrently.
    pub fn unique(tag: &str, nodes: usize) -> HaSpec {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        HaSpec {
            prefix: format!("tgh{}{tag}{n}", std::process::id()),
            nodes,
        }
    }

    /// The switch namespace (both bridges).
    pub fn sw_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }
    /// The gateway's namespace.
    pub fn gw_ns(&self) -> String {
        format!("{}-gw", self.prefix)
    }
    /// The internal endpoint's namespace.
    pub fn int_ns(&self) -> String {
        format!("{}-int", self.prefix)
    }
    /// Valkey's namespace.
    pub fn valkey_ns(&self) -> String {
        format!("{}-vk", self.prefix)
    }
    /// Node `k`'s namespace (k from 1).
    pub fn node_ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }
    /// Node `k`'s own addresses (outside, inside): 10.201.1.(10+k), 10.201.2.(10+k).
    pub fn node_addrs(&self, k: usize) -> (Ipv4Addr, Ipv4Addr) {
        let h = u8::try_from(10 + k).unwrap_or(u8::MAX);
        (Ipv4Addr::new(10, 201, 1, h), Ipv4Addr::new(10, 201, 2, h))
    }
    /// The switch-side ports of node `k` (towards its ext0, towards its int0).
    fn node_ports(k: usize) -> (String, String) {
        (format!("n{k}e"), format!("n{k}i"))
    }

    /// Every namespace, switch first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.sw_ns(), self.gw_ns(), self.int_ns(), self.valkey_ns()];
        v.extend((1..=self.nodes).map(|k| self.node_ns(k)));
        v
    }

    /// The single-relay lab's view of this lab, with node `k` as the relay and `svc`'s
    /// addresses as the relay addresses: `LabAddrs::from_lab` on it gives the parties and a
    /// Tollgate configuration for that service on that node (interfaces ext0/int0).
    pub fn lab_spec(&self, k: usize, svc: &Service) -> LabSpec {
        let mut s = LabSpec::named(&self.gw_ns(), &self.node_ns(k), &self.int_ns());
        s.ext_net = Subnet {
            relay: svc.ext,
            peer: Ipv4Addr::new(10, 201, 1, 2),
            prefix: 24,
        };
        s.int_net = Subnet {
            relay: svc.int,
            peer: Ipv4Addr::new(10, 201, 2, 2),
            prefix: 24,
        };
        s
    }

    /// `redis://10.201.2.50:6379/`.
    pub fn valkey_url(&self) -> String {
        format!("redis://{VALKEY_ADDR}:{VALKEY_PORT}/")
    }

    /// Removes whatever exists of this lab (namespaces only; processes are the guard's).
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let existing = namespaces()?;
        let mut removed = Vec::new();
        for ns in self.namespaces() {
            if existing.contains(&ns) {
                ip(&["netns", "del", &ns])?;
                removed.push(ns);
            }
        }
        Ok(removed)
    }

    /// Builds the lab (replacing a leftover of the same name) and starts Valkey in it; the
    /// returned guard tears everything down when dropped.
    pub fn up_guarded(self) -> Result<HaLab, LabError> {
        self.down()?;
        let dir = std::env::temp_dir().join(&self.prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            source,
        })?;
        let lab = HaLab {
            spec: self,
            dir,
            valkey: Mutex::new(None),
            keepalived: Mutex::new(HashMap::new()),
        };
        lab.build()?;
        lab.start_valkey()?;
        Ok(lab)
    }
}

/// A veth pair from `ns/ifname` (with `cidr`) to the switch's `bridge` (port `port`).
fn plug(
    sw: &str,
    bridge: &str,
    port: &str,
    ns: &str,
    ifname: &str,
    cidr: &str,
) -> Result<(), LabError> {
    ip(&[
        "link",
        "add",
        ifname,
        "netns",
        ns,
        "numtxqueues",
        "4",
        "numrxqueues",
        "4",
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        sw,
        "numtxqueues",
        "4",
        "numrxqueues",
        "4",
    ])?;
    ip(&["-n", sw, "link", "set", port, "master", bridge])?;
    ip(&["-n", sw, "link", "set", port, "up"])?;
    ip(&["-n", ns, "addr", "add", cidr, "dev", ifname])?;
    ip(&["-n", ns, "link", "set", ifname, "up"])?;
    // Real UDP checksums in every frame, as from a physical NIC (see `LabSpec::up`).
    for (n, i) in [(ns, ifname), (sw, port)] {
        run("ip", &["netns", "exec", n, "ethtool", "-K", i, "tx", "off"])?;
    }
    Ok(())
}

/// A running keepalived (parent and VRRP child), started by [`HaLab::start_keepalived`].
#[derive(Debug)]
struct KeepalivedProc {
    child: Child,
    vrrp_pid_file: PathBuf,
}

impl KeepalivedProc {
    /// `kill -9` of the VRRP child and the parent, without letting either release the
    /// addresses: the parent is stopped first (so it neither respawns the child nor, by dying,
    /// sends it the SIGTERM of its parent-death signal), then the child is killed, then the
    /// parent.
    fn kill9(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let parent = self.child.id() as i32;
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(parent, libc::SIGSTOP) };
        if let Some(vrrp) = std::fs::read_to_string(&self.vrrp_pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 1 && *p != parent)
        {
            // SAFETY: the VRRP child our keepalived wrote into its pid file.
            unsafe { libc::kill(vrrp, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a node's keepalived is configured.
#[derive(Debug, Clone)]
pub struct KeepalivedConfig {
    /// The services this node can carry (one `vrrp_instance` each).
    pub services: Vec<Service>,
    /// This node's VRRP priority (the same for every instance).
    pub priority: u8,
    /// Advertisement interval (VRRPv3: centiseconds; keepalived takes 0.01–40.95 s).
    pub advert: Duration,
    /// Unicast VRRP to these peers (their int0 addresses) instead of multicast.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// A master that hears a lower-priority master sends gratuitous ARP again
    /// (`garp_lower_prio_delay 0`, `garp_lower_prio_repeat 3`): after a VRRP partition, the
    /// peers' ARP entries that the second master's gratuitous ARP moved come back to the first
    /// (which holds the lease). keepalived 2.2.7 did the same with this off (measured), so
    /// this only makes it explicit.
    pub reassert_on_lower_prio: bool,
}

impl KeepalivedConfig {
    /// Multicast VRRPv3 every 100 ms for `services` at `priority`.
    pub fn new(services: &[Service], priority: u8) -> KeepalivedConfig {
        KeepalivedConfig {
            services: services.to_vec(),
            priority,
            advert: Duration::from_millis(100),
            unicast_peers: Vec::new(),
            reassert_on_lower_prio: true,
        }
    }

    /// keepalived.conf for node `node` whose int0 address is `own_int`.
    pub fn render(&self, node: &str, own_int: Ipv4Addr) -> String {
        let advert = format!("{:.2}", self.advert.as_secs_f64());
        let mut s = format!(
            "# Tollgate failover lab, node {node}: VRRP on the internal side only (the gateway\n\
             # NIC's XDP boundary filter drops VRRP); the gateway side's address moves with it.\n\
             global_defs {{\n\
             \x20   router_id {node}\n\
             \x20   vrrp_version 3\n\
             \x20   vrrp_garp_master_delay 0\n\
             \x20   vrrp_garp_master_repeat 3\n\
             \x20   vrrp_garp_interval 0.001\n\
             \x20   vrrp_skip_check_adv_addr\n\
             \x20   vrrp_rt_priority 10\n\
             \x20   max_auto_priority -1\n\
             }}\n"
        );
        for svc in &self.services {
            s.push_str(&format!(
                "vrrp_instance {name} {{\n\
                 \x20   state BACKUP\n\
                 \x20   nopreempt\n\
                 \x20   interface int0\n\
                 \x20   virtual_router_id {vrid}\n\
                 \x20   priority {prio}\n\
                 \x20   advert_int {advert}\n\
                 \x20   garp_master_delay 0\n\
                 \x20   garp_master_repeat 3\n\
                 \x20   garp_master_refresh 0\n",
                name = svc.name,
                vrid = svc.vrid,
                prio = self.priority,
            ));
            if self.reassert_on_lower_prio {
                s.push_str("    garp_lower_prio_delay 0\n    garp_lower_prio_repeat 3\n");
            }
            if !self.unicast_peers.is_empty() {
                s.push_str(&format!(
                    "    unicast_src_ip {own_int}\n    unicast_peer {{\n"
                ));
                for p in self.unicast_peers.iter().filter(|p| **p != own_int) {
                    s.push_str(&format!("        {p}\n"));
                }
                s.push_str("    }\n");
            }
            s.push_str(&format!(
                "    virtual_ipaddress {{\n        {}/24 dev int0\n        {}/24 dev ext0\n    }}\n}}\n",
                svc.int, svc.ext
            ));
        }
        s
    }
}

/// A running failover lab; tears itself down when dropped.
#[derive(Debug)]
pub struct HaLab {
    spec: HaSpec,
    dir: PathBuf,
    valkey: Mutex<Option<Child>>,
    keepalived: Mutex<HashMap<usize, KeepalivedProc>>,
}

impl std::ops::Deref for HaLab {
    type Target = HaSpec;
    fn deref(&self) -> &HaSpec {
        &self.spec
    }
}

impl HaLab {
    /// The lab's names and addresses.
    pub fn spec(&self) -> &HaSpec {
        &self.spec
    }

    /// The lab's scratch directory (keepalived configs, pid files and logs; Valkey's dir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn build(&self) -> Result<(), LabError> {
        let s = &self.spec;
        for ns in s.namespaces() {
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let sw = s.sw_ns();
        for br in ["br-ext", "br-int"] {
            ip(&[
                "-n",
                &sw,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ])?;
            ip(&["-n", &sw, "link", "set", br, "up"])?;
        }
        plug(&sw, "br-ext", "gw", &s.gw_ns(), "veth-gw", "10.201.1.2/24")?;
        plug(
            &sw,
            "br-int",
            "int",
            &s.int_ns(),
            "veth-int",
            "10.201.2.2/24",
        )?;
        plug(
            &sw,
            "br-int",
            "vk",
            &s.valkey_ns(),
            "veth-vk",
            &format!("{VALKEY_ADDR}/24"),
        )?;
        for k in 1..=s.nodes {
            let (pe, pi) = HaSpec::node_ports(k);
            let (e, i) = s.node_addrs(k);
            let ns = s.node_ns(k);
            plug(&sw, "br-ext", &pe, &ns, "ext0", &format!("{e}/24"))?;
            plug(&sw, "br-int", &pi, &ns, "int0", &format!("{i}/24"))?;
        }
        Ok(())
    }

    fn start_valkey(&self) -> Result<(), LabError> {
        let bin = ["valkey-server", "redis-server"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or("redis-server");
        let log = self.dir.join("valkey.log");
        let child = spawn_logged(
            &[
                "ip",
                "netns",
                "exec",
                &self.spec.valkey_ns(),
                bin,
                "--bind",
                &VALKEY_ADDR.to_string(),
                "--port",
                &VALKEY_PORT.to_string(),
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                &self.dir.display().to_string(),
            ],
            &log,
        )?;
        *lock(&self.valkey) = Some(child);
        let addr = SocketAddr::from((VALKEY_ADDR, VALKEY_PORT));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let up = crate::in_netns(&self.spec.valkey_ns(), move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::Command {
            cmd: format!("{bin} in {}", self.spec.valkey_ns()),
            status: "not listening after 10 s".into(),
            stderr: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// Starts keepalived in node `k` (replacing one the lab started there before) with
    /// `cfg`; its config, pid files and console log are in [`HaLab::dir`].
    pub fn start_keepalived(&self, k: usize, cfg: &KeepalivedConfig) -> Result<u32, LabError> {
        self.kill_keepalived(k);
        let node = format!("n{k}");
        let conf = self.dir.join(format!("keepalived-{node}.conf"));
        let pid = self.dir.join(format!("keepalived-{node}.pid"));
        let vrrp_pid = self.dir.join(format!("keepalived-{node}.vrrp.pid"));
        let (_, own_int) = self.spec.node_addrs(k);
        std::fs::write(&conf, cfg.render(&node, own_int)).map_err(|source| LabError::Spawn {
            cmd: format!("write {}", conf.display()),
            source,
        })?;
        let ns = self.spec.node_ns(k);
        let child = spawn_logged(
            &[
                "ip",
                "netns",
                "exec",
                &ns,
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
                "--vrrp",
                &format!("--pid={}", pid.display()),
                &format!("--vrrp_pid={}", vrrp_pid.display()),
                &format!("--use-file={}", conf.display()),
            ],
            &self.keepalived_log_path(k),
        )?;
        let id = child.id();
        lock(&self.keepalived).insert(
            k,
            KeepalivedProc {
                child,
                vrrp_pid_file: vrrp_pid,
            },
        );
        Ok(id)
    }

    /// Where node `k`'s keepalived logs.
    pub fn keepalived_log_path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("keepalived-n{k}.log"))
    }

    /// What node `k`'s keepalived logged so far.
    pub fn keepalived_log(&self, k: usize) -> String {
        std::fs::read_to_string(self.keepalived_log_path(k)).unwrap_or_default()
    }

    /// `kill -9` of node `k`'s keepalived (parent and VRRP child): the addresses stay where
    /// they are, no priority-0 advertisement is sent (a node death).
    pub fn kill_keepalived(&self, k: usize) {
        if let Some(mut p) = lock(&self.keepalived).remove(&k) {
            p.kill9();
        }
    }

    /// Whether node `k`'s keepalived is running.
    pub fn keepalived_running(&self, k: usize) -> bool {
        lock(&self.keepalived)
            .get_mut(&k)
            .is_some_and(|p| p.child.try_wait().ok().flatten().is_none())
    }

    /// Whether node `k` holds address `addr` (on any interface).
    pub fn has_addr(&self, k: usize, addr: Ipv4Addr) -> bool {
        ip(&["-n", &self.spec.node_ns(k), "-o", "-4", "addr", "show"]).is_ok_and(|out| {
            out.split_whitespace()
                .any(|w| w.split('/').next() == Some(&addr.to_string()))
        })
    }

    /// The MAC address of node `k`'s interface `ifname`.
    pub fn node_mac(&self, k: usize, ifname: &str) -> Option<String> {
        let out = ip(&[
            "-n",
            &self.spec.node_ns(k),
            "-o",
            "link",
            "show",
            "dev",
            ifname,
        ])
        .ok()?;
        let mut w = out.split_whitespace();
        w.find(|t| *t == "link/ether")?;
        w.next().map(str::to_owned)
    }

    /// The MAC address namespace `ns`'s neighbour table has for `addr` (None: no entry, or
    /// an incomplete/failed one).
    pub fn neighbour(&self, ns: &str, addr: Ipv4Addr) -> Option<String> {
        let out = ip(&["-n", ns, "neigh", "show", &addr.to_string()]).ok()?;
        let mut w = out.split_whitespace();
        w.find(|t| *t == "lladdr")?;
        w.next().map(str::to_owned)
    }

    /// The node whose MACs the gateway and the internal endpoint use for `svc`'s addresses,
    /// if both point at the same node.
    pub fn steered_to(&self, svc: &Service) -> Option<usize> {
        let gw = self.neighbour(&self.spec.gw_ns(), svc.ext)?;
        let int = self.neighbour(&self.spec.int_ns(), svc.int)?;
        (1..=self.spec.nodes).find(|k| {
            self.node_mac(*k, "ext0").as_deref() == Some(gw.as_str())
                && self.node_mac(*k, "int0").as_deref() == Some(int.as_str())
        })
    }

    /// Whether node `k` holds both of `svc`'s addresses.
    pub fn holds(&self, k: usize, svc: &Service) -> bool {
        self.has_addr(k, svc.ext) && self.has_addr(k, svc.int)
    }

    /// The nodes that hold both of `svc`'s addresses now.
    pub fn holders(&self, svc: &Service) -> Vec<usize> {
        (1..=self.spec.nodes)
            .filter(|k| self.holds(*k, svc))
            .collect()
    }

    /// Waits until `f` holds (polled every 10 ms); how long it took, or None after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&HaLab) -> bool,
    ) -> Option<Duration> {
        let t = Instant::now();
        loop {
            if f(self) {
                return Some(t.elapsed());
            }
            if t.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes `svc`'s addresses from node `k` (what a reboot does to the addresses a killed
    /// keepalived left behind: keepalived restarted in BACKUP does not remove them).
    pub fn flush_service_addrs(&self, k: usize, svc: &Service) -> Result<(), LabError> {
        let ns = self.spec.node_ns(k);
        for (addr, dev) in [(svc.ext, "ext0"), (svc.int, "int0")] {
            if self.has_addr(k, addr) {
                ip(&["-n", &ns, "addr", "del", &format!("{addr}/24"), "dev", dev])?;
            }
        }
        Ok(())
    }

    /// Takes node `k`'s two switch ports down: its ext0 and int0 lose carrier, nothing gets
    /// in or out (a cable pull, or a dead host's silent NICs).
    pub fn cut_links(&self, k: usize) -> Result<(), LabError> {
        let (pe, pi) = HaSpec::node_ports(k);
        for p in [pe, pi] {
            ip(&["-n", &self.spec.sw_ns(), "link", "set", &p, "down"])?;
        }
        Ok(())
    }

    /// Brings node `k`'s switch ports back up.
    pub fn restore_links(&self, k: usize) -> Result<(), LabError> {
        let (pe, pi) = HaSpec::node_ports(k);
        for p in [pe, pi] {
            ip(&["-n", &self.spec.sw_ns(), "link", "set", &p, "up"])?;
        }
        Ok(())
    }

    /// Drops VRRP (IP protocol 112) on its way into node `k`: an nftables rule in the switch
    /// namespace's bridge forward hook, for frames leaving through the port towards the node's
    /// int0. Everything else still flows.
    pub fn block_vrrp_into(&self, k: usize) -> Result<(), LabError> {
        let (_, pi) = HaSpec::node_ports(k);
        let table = format!("vrrp_n{k}");
        let rules = format!(
            "table bridge {table} {{\n\
             \x20   chain vrrp_in {{\n\
             \x20       type filter hook forward priority 0; policy accept;\n\
             \x20       oifname \"{pi}\" ip protocol 112 counter drop\n\
             \x20   }}\n\
             }}\n"
        );
        let file = self.dir.join(format!("{table}.nft"));
        std::fs::write(&file, rules).map_err(|source| LabError::Spawn {
            cmd: format!("write {}", file.display()),
            source,
        })?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.spec.sw_ns(),
                "nft",
                "-f",
                &file.display().to_string(),
            ],
        )?;
        Ok(())
    }

    /// Removes the rule of [`HaLab::block_vrrp_into`].
    pub fn unblock_vrrp_into(&self, k: usize) -> Result<(), LabError> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.spec.sw_ns(),
                "nft",
                "delete",
                "table",
                "bridge",
                &format!("vrrp_n{k}"),
            ],
        )?;
        Ok(())
    }

    /// Runs `valkey-cli`/`redis-cli` against the lab's Valkey (from its namespace) with `args`.
    pub fn valkey_cli(&self, args: &[&str]) -> Result<String, LabError> {
        let cli = if Command::new("valkey-cli").arg("--version").output().is_ok() {
            "valkey-cli"
        } else {
            "redis-cli"
        };
        let host = VALKEY_ADDR.to_string();
        let port = VALKEY_PORT.to_string();
        let mut argv = vec![
            "netns",
            "exec",
            &self.spec.valkey_ns(),
            cli,
            "-h",
            &host,
            "-p",
            &port,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        run("ip", &refs)
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        let mut ka = std::mem::take(&mut *lock(&self.keepalived));
        for (_, p) in ka.iter_mut() {
            p.kill9();
        }
        if let Some(mut v) = lock(&self.valkey).take() {
            let _ = v.kill();
            let _ = v.wait();
        }
        if let Err(e) = self.spec.down() {
            eprintln!("warning: could not remove HA lab {}: {e}", self.spec.prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts `argv` with stdout and stderr into `log`.
fn spawn_logged(argv: &[&str], log: &Path) -> Result<Child, LabError> {
    let cmd = argv.join(" ");
    let spawn_err = |source| LabError::Spawn {
        cmd: cmd.clone(),
        source,
    };
    let out = std::fs::File::create(log).map_err(spawn_err)?;
    let err = out.try_clone().map_err(spawn_err)?;
    let (prog, args) = argv.split_first().ok_or_else(|| LabError::Spawn {
        cmd: cmd.clone(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(spawn_err)
}
