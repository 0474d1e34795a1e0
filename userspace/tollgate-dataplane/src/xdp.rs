//! Loading, attaching and programming the XDP steering and boundary program (`ebpf/tollgate-xdp`).
//!
//! One [`XdpProgram`] per NIC: each has its own maps, so the flow table, the socket map and the
//! boundary policy of the gateway side and of the internal side are independent. The policy is
//! written before the program is attached ([`XdpProgram::attach_with`]), so there is no moment
//! when the NIC is attached but open. Dropping it detaches the program.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::Ebpf;
use aya::maps::Array;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use tollgate_common::{
    BOUNDARY_MAP, BoundaryPolicy, COUNTERS_MAP, FLOWS_MAP, FlowEntry, FlowKey, XSKS_MAP, counter,
};

/// The XDP object built by build.rs (empty when bpf-linker was missing at build time).
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate-xdp"));

const PROGRAM: &str = "tollgate_xdp";

/// Whether this build carries the XDP object (bpf-linker was present at build time).
pub fn object_built() -> bool {
    !XDP_OBJECT.is_empty()
}

/// Names of the counter slots, in slot order (for metrics and reports).
pub const COUNTER_NAMES: [&str; counter::COUNT as usize] = [
    "rx",
    "udp4",
    "udp6",
    "pass",
    "drop_malformed",
    "drop_source",
    "redirect",
    "drop_no_socket",
    "learned",
    "drop_fragment",
    "boundary_other_side",
    "boundary_port",
    "boundary_proto",
    "boundary_not_ours",
];

/// Why the XDP program could not be loaded, attached or programmed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The binary was built without bpf-linker, so it carries no XDP object.
    #[error(
        "this build has no XDP program (bpf-linker was missing at build time; run `cargo xtask setup` and rebuild)"
    )]
    NotBuilt,
    /// The kernel refused the object or a map.
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// The object lacks something this code expects (build mismatch).
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// Program verification or attach failed.
    #[error("XDP program on {iface}: {source}")]
    Program {
        /// Interface name (empty before attach).
        iface: String,
        /// Why.
        source: aya::programs::ProgramError,
    },
    /// Reading or writing a map failed.
    #[error("XDP map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Why.
        source: aya::maps::MapError,
    },
    /// A raw bpf() call failed.
    #[error("bpf({0}) failed: {1}")]
    Syscall(&'static str, io::Error),
}

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Run by the driver (native XDP).
    Native,
    /// Run by the generic network stack (skb mode): works everywhere, slower.
    Skb,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// Which attach modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Native, and skb mode if the driver refuses.
    #[default]
    NativeThenSkb,
    /// Native only.
    Native,
    /// Skb only.
    Skb,
}

/// The per-CPU counters of one program, summed over CPUs, indexed by `tollgate_common::counter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters(pub [u64; counter::COUNT as usize]);

impl XdpCounters {
    /// The value of one slot.
    pub fn get(&self, slot: u32) -> u64 {
        self.0.get(slot as usize).copied().unwrap_or(0)
    }

    /// `(name, value)` pairs in slot order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTER_NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

/// The flow map key for a local socket address.
pub fn flow_key(local: SocketAddr) -> FlowKey {
    FlowKey {
        addr: addr16(local.ip()),
        port_be: local.port().to_be(),
        _pad: [0; 2],
    }
}

/// An address as the 16 bytes the XDP program compares (IPv4 mapped into IPv6).
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The XDP program loaded into the kernel, and attached to at most one interface.
#[derive(Debug)]
pub struct XdpProgram {
    ebpf: Ebpf,
    attached: Option<(String, AttachMode)>,
}

impl XdpProgram {
    /// Loads (and verifies) the program without attaching it.
    pub fn load() -> Result<Self, XdpError> {
        if XDP_OBJECT.is_empty() {
            return Err(XdpError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(XDP_OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::Missing("program tollgate_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program {
                iface: String::new(),
                source,
            })?;
        prog.load().map_err(|source| XdpError::Program {
            iface: String::new(),
            source,
        })?;
        Ok(XdpProgram {
            ebpf,
            attached: None,
        })
    }

    /// Loads the program and attaches it to `iface` (in the calling thread's network namespace).
    pub fn attach(iface: &str, request: ModeRequest) -> Result<Self, XdpError> {
        XdpProgram::attach_with(iface, request, None)
    }

    /// Loads the program, writes the boundary `policy` (if any) and then attaches it to `iface`.
    pub fn attach_with(
        iface: &str,
        request: ModeRequest,
        policy: Option<&BoundaryPolicy>,
    ) -> Result<Self, XdpError> {
        let mut p = XdpProgram::load()?;
        if let Some(policy) = policy {
            p.set_boundary(policy)?;
        }
        let prog_err = |source| XdpError::Program {
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut Xdp = p
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::Missing("program tollgate_xdp"))?
            .try_into()
            .map_err(prog_err)?;
        let mode = match request {
            ModeRequest::Native => {
                prog.attach(iface, XdpMode::Driver).map_err(prog_err)?;
                AttachMode::Native
            }
            ModeRequest::Skb => {
                prog.attach(iface, XdpMode::Skb).map_err(prog_err)?;
                AttachMode::Skb
            }
            ModeRequest::NativeThenSkb => match prog.attach(iface, XdpMode::Driver) {
                Ok(_) => AttachMode::Native,
                Err(_) => {
                    prog.attach(iface, XdpMode::Skb).map_err(prog_err)?;
                    AttachMode::Skb
                }
            },
        };
        p.attached = Some((iface.to_owned(), mode));
        Ok(p)
    }

    /// The interface the program is attached to, if any.
    pub fn iface(&self) -> Option<&str> {
        self.attached.as_ref().map(|(i, _)| i.as_str())
    }

    /// The mode the program is attached in, if attached.
    pub fn mode(&self) -> Option<AttachMode> {
        self.attached.as_ref().map(|(_, m)| *m)
    }

    /// Reads the counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or(XdpError::Missing("map COUNTERS"))?;
        let err = |source| XdpError::Map {
            map: "COUNTERS",
            source,
        };
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(err)?;
        let mut out = XdpCounters::default();
        for (slot, v) in out.0.iter_mut().enumerate() {
            *v = arr.get(&(slot as u32), 0).map_err(err)?.iter().sum();
        }
        Ok(out)
    }

    /// Writes the boundary policy (the program reads it for every frame that is not a flow hit).
    pub fn set_boundary(&mut self, policy: &BoundaryPolicy) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(BOUNDARY_MAP)
            .ok_or(XdpError::Missing("map BOUNDARY"))?;
        let err = |source| XdpError::Map {
            map: "BOUNDARY",
            source,
        };
        let mut arr: Array<_, BoundaryPolicy> = Array::try_from(map).map_err(err)?;
        arr.set(0, *policy, 0).map_err(err)
    }

    /// Reads the boundary policy back.
    pub fn boundary(&self) -> Result<BoundaryPolicy, XdpError> {
        let map = self
            .ebpf
            .map(BOUNDARY_MAP)
            .ok_or(XdpError::Missing("map BOUNDARY"))?;
        let err = |source| XdpError::Map {
            map: "BOUNDARY",
            source,
        };
        let arr: Array<_, BoundaryPolicy> = Array::try_from(map).map_err(err)?;
        arr.get(&0, 0).map_err(err)
    }

    fn flows(&mut self) -> Result<BpfHashMap<&mut MapData, FlowKey, FlowEntry>, XdpError> {
        let map = self
            .ebpf
            .map_mut(FLOWS_MAP)
            .ok_or(XdpError::Missing("map FLOWS"))?;
        BpfHashMap::try_from(map).map_err(|source| XdpError::Map {
            map: "FLOWS",
            source,
        })
    }

    /// Installs or replaces the steering entry for a relay port.
    pub fn insert_flow(&mut self, key: FlowKey, entry: FlowEntry) -> Result<(), XdpError> {
        self.flows()?
            .insert(key, entry, 0)
            .map_err(|source| XdpError::Map {
                map: "FLOWS",
                source,
            })
    }

    /// Removes the steering entry of a relay port (absent is not an error).
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<(), XdpError> {
        match self.flows()?.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(XdpError::Map {
                map: "FLOWS",
                source,
            }),
        }
    }

    /// Reads a steering entry (latched remote, source-mismatch drops).
    pub fn flow(&mut self, key: &FlowKey) -> Result<Option<FlowEntry>, XdpError> {
        match self.flows()?.get(key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(XdpError::Map {
                map: "FLOWS",
                source,
            }),
        }
    }

    /// Number of steering entries.
    pub fn flow_count(&mut self) -> Result<usize, XdpError> {
        Ok(self.flows()?.keys().filter(Result::is_ok).count())
    }

    /// Points rx queue `queue` at an AF_XDP socket.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(XSKS_MAP)
            .ok_or(XdpError::Missing("map XSKS"))?;
        let err = |source| XdpError::Map {
            map: "XSKS",
            source,
        };
        let mut xsks = XskMap::try_from(map).map_err(err)?;
        xsks.set(queue, fd, 0).map_err(err)
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN and returns its verdict
    /// (`XDP_*`). Used by the tests of the steering decisions; counters and maps are live.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, XdpError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .ok_or(XdpError::Missing("program tollgate_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program {
                iface: String::new(),
                source,
            })?;
        let fd = prog
            .fd()
            .map_err(|source| XdpError::Program {
                iface: String::new(),
                source,
            })?
            .as_fd()
            .as_raw_fd();
        let mut out = vec![0u8; frame.len() + 256];
        // union bpf_attr, the `test` member (include/uapi/linux/bpf.h).
        let mut attr = [0u64; 16];
        attr[0] = u64::from(fd as u32); // prog_fd, retval (out)
        attr[1] = u64::from(frame.len() as u32) | (u64::from(out.len() as u32) << 32);
        attr[2] = frame.as_ptr() as u64; // data_in
        attr[3] = out.as_mut_ptr() as u64; // data_out
        attr[4] = 1; // repeat = 1, duration (out)
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        // SAFETY: attr is a valid bpf_attr prefix; the buffers outlive the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, attr.as_mut_ptr(), 80usize) };
        if rc != 0 {
            return Err(XdpError::Syscall(
                "BPF_PROG_TEST_RUN",
                io::Error::last_os_error(),
            ));
        }
        Ok((attr[0] >> 32) as u32)
    }
}
