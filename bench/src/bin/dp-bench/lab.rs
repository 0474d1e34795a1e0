//! The benchmark's lab: the three namespaces with static neighbours, RPS steering to the
//! sink's core, and CPU pinning at real-time priority.

use super::*;

/// The lab with the benchmark's extras (static neighbours, RPS to the sink's core).
pub(crate) struct Lab {
    pub(crate) guard: LabGuard,
    pub(crate) ext_mac: [u8; 6],
    pub(crate) gw_mac: [u8; 6],
    pub(crate) int_mac: [u8; 6],
    pub(crate) peer_mac: [u8; 6],
}

pub(crate) fn mac_of(ns: &str, ifname: &str) -> anyhow::Result<[u8; 6]> {
    let out = run_cmd("ip", &["-n", ns, "-o", "link", "show", "dev", ifname])?;
    let word = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no link/ether")?;
    let mut m = [0u8; 6];
    for (i, p) in word.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16)?;
    }
    Ok(m)
}

pub(crate) fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn cpu_mask(cpu: usize) -> String {
    format!("{:x}", 1u64 << cpu)
}

/// RPS steering of a device that is undone when dropped.
pub(crate) struct Rps {
    pub(crate) ns: String,
    pub(crate) dev: String,
}

impl Rps {
    pub(crate) fn steer(ns: &str, dev: &str, cpu: usize) -> anyhow::Result<Rps> {
        set_rps(ns, dev, Some(cpu))?;
        Ok(Rps {
            ns: ns.to_owned(),
            dev: dev.to_owned(),
        })
    }
}

impl Drop for Rps {
    fn drop(&mut self) {
        if let Err(e) = set_rps(&self.ns, &self.dev, None) {
            eprintln!("undoing RPS on {}: {e:#}", self.dev);
        }
    }
}

/// Steers `dev`'s receive processing (RPS, every rx queue) to `cpu`, or back to the receiving
/// CPU.
pub(crate) fn set_rps(ns: &str, dev: &str, cpu: Option<usize>) -> anyhow::Result<()> {
    run_cmd(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!(
                "for q in /sys/class/net/{dev}/queues/rx-*; do echo {} > $q/rps_cpus; done",
                cpu.map_or_else(|| "0".to_owned(), cpu_mask)
            ),
        ],
    )?;
    Ok(())
}

impl Lab {
    pub(crate) fn up(plan: &Plan, load_cpu: usize) -> anyhow::Result<Lab> {
        let guard = LabSpec::with_prefix("tgb").up_guarded()?;
        // One queue on every veth end (the relay runs one worker): native XDP on veth needs the
        // receiving end to have at least as many rx queues as its peer has tx queues.
        guard.set_channels(1)?;
        let l = guard.spec().clone();
        let [ext_extra, int_extra] = plan.extra_ips();
        for ip in ext_extra {
            run_cmd(
                "ip",
                &[
                    "-n",
                    &l.relay_ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    &l.ext_if,
                ],
            )?;
        }
        for ip in int_extra {
            run_cmd(
                "ip",
                &[
                    "-n",
                    &l.relay_ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    &l.int_if,
                ],
            )?;
        }
        let lab = Lab {
            ext_mac: mac_of(&l.relay_ns, &l.ext_if)?,
            int_mac: mac_of(&l.relay_ns, &l.int_if)?,
            gw_mac: mac_of(&l.gw_ns, &l.gw_if)?,
            peer_mac: mac_of(&l.int_ns, &l.int_peer_if)?,
            guard,
        };
        // Permanent neighbours: no ARP during trials.
        let nb = |ns: &str, ip: &str, mac: &[u8; 6], dev: &str| {
            run_cmd(
                "ip",
                &[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &fmt_mac(mac),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )
        };
        nb(&l.relay_ns, "10.201.1.2", &lab.gw_mac, &l.ext_if)?;
        nb(&l.relay_ns, "10.201.2.2", &lab.peer_mac, &l.int_if)?;
        for ip in &plan.ext_ips {
            nb(&l.gw_ns, &ip.to_string(), &lab.ext_mac, &l.gw_if)?;
        }
        for ip in &plan.int_ips {
            nb(&l.int_ns, &ip.to_string(), &lab.int_mac, &l.int_peer_if)?;
        }
        // veth delivers a frame to its peer on the sending CPU; RPS moves the sink's receive
        // processing to the load core so the relay's core is not charged with it.
        set_rps(&l.int_ns, &l.int_peer_if, Some(load_cpu))?;
        // The baseline (kernel forwarding) needs forwarding in relay and a route back in int.
        run_cmd(
            "ip",
            &[
                "netns",
                "exec",
                &l.relay_ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        run_cmd(
            "ip",
            &[
                "-n",
                &l.int_ns,
                "route",
                "add",
                "10.201.1.0/24",
                "via",
                "10.201.2.1",
            ],
        )?;
        Ok(lab)
    }

    pub(crate) fn spec(&self) -> &LabSpec {
        self.guard.spec()
    }

    /// Sets every veth end to `queues` queues (a relay with N AF_XDP workers needs N), then
    /// steers the sink's receive processing on every queue to the load core again (the queues
    /// come back without RPS).
    pub(crate) fn set_queues(&self, queues: usize, load_cpu: usize) -> anyhow::Result<()> {
        self.guard
            .set_channels(u32::try_from(queues).unwrap_or(1))
            .context("setting the lab's veth queues")?;
        let l = self.spec();
        set_rps(&l.int_ns, &l.int_peer_if, Some(load_cpu))
    }
}

pub(crate) fn pin(cpu: usize, rt_prio: i32) {
    // SAFETY: zeroed cpu_set_t filled by CPU_SET; 0 = this thread; valid sched_param.
    unsafe {
        let p = libc::sched_param {
            sched_priority: rt_prio,
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &p);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}
