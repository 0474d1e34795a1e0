//! Loading, attaching and observing the XDP steering program (`ebpf/tollgate-xdp`).
//!
//! One [`XdpProgram`] per NIC: each has its own maps, so the flow table and the XSKMAP of the
//! gateway side and of the internal side are independent. Dropping it detaches the program.

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use tollgate_common::counter;

/// The XDP object built by build.rs (empty when bpf-linker was missing at build time).
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate-xdp"));

const PROGRAM: &str = "tollgate_xdp";

/// Why the XDP program could not be loaded, attached or read.
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
        /// Interface name.
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

/// The per-CPU counters of one attached program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Frames seen.
    pub rx: u64,
    /// IPv4 UDP frames.
    pub udp4: u64,
    /// IPv6 UDP frames.
    pub udp6: u64,
    /// Frames passed to the kernel.
    pub pass: u64,
    /// Truncated frames dropped.
    pub drop_malformed: u64,
}

/// The XDP program loaded and attached to one interface; detached when dropped.
#[derive(Debug)]
pub struct XdpProgram {
    ebpf: Ebpf,
    iface: String,
    mode: AttachMode,
}

impl XdpProgram {
    /// Loads the program and attaches it to `iface` (in the calling thread's network namespace).
    pub fn attach(iface: &str, request: ModeRequest) -> Result<Self, XdpError> {
        if XDP_OBJECT.is_empty() {
            return Err(XdpError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(XDP_OBJECT)?;
        let prog_err = |source| XdpError::Program {
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::Missing("program tollgate_xdp"))?
            .try_into()
            .map_err(prog_err)?;
        prog.load().map_err(prog_err)?;
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
        Ok(XdpProgram {
            ebpf,
            iface: iface.to_owned(),
            mode,
        })
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The mode the program is attached in.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Reads the counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self
            .ebpf
            .map("COUNTERS")
            .ok_or(XdpError::Missing("map COUNTERS"))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                map: "COUNTERS",
                source,
            })?;
        let get = |slot: u32| -> Result<u64, XdpError> {
            let values = arr.get(&slot, 0).map_err(|source| XdpError::Map {
                map: "COUNTERS",
                source,
            })?;
            Ok(values.iter().sum())
        };
        Ok(XdpCounters {
            rx: get(counter::RX)?,
            udp4: get(counter::UDP4)?,
            udp6: get(counter::UDP6)?,
            pass: get(counter::PASS)?,
            drop_malformed: get(counter::DROP_MALFORMED)?,
        })
    }
}
