//! The per-packet media relay core, shared by the AF_XDP and the socket data paths.
//!
//! No I/O here: the data plane hands in frames (or UDP payloads) and `now`, and gets back the
//! bytes to send and where. Both data paths run exactly this code, so they give byte-identical
//! payloads for the same input.
//!
//! * [`flow`]: what the control plane installs (a media stream with two legs) and the
//!   counters it reads back.
//! * [`table`]: a worker's flow table and the per-packet relay decision.
//! * [`transform`]: each direction's transform and SRTP state, built off the worker
//!   ([`FlowCrypto`]).
//! * [`frame`]: parse Ethernet/VLAN/IPv4/IPv6/UDP, write egress headers, checksums.

pub mod flow;
pub mod frame;
pub mod table;
pub mod transform;

pub use flow::{
    DropReason, FlowCounters, LegSpec, MediaFlowSpec, Side, SideSnapshot, SrtpResume, TransformSpec,
};
pub use table::{Arrival, FlowEvent, Fronted, InstallError, MediaFlowTable, Relayed, Route};
pub use transform::FlowCrypto;
