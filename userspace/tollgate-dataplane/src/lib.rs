//! Tollgate's media data plane.
//!
//! * [`dataplane`]: the control plane's one API: start, install/update/remove flows, counters,
//!   events, next-hop upkeep, shutdown.
//! * [`xdp`]: loads the XDP steering program onto a NIC and programs its maps.
//! * [`boundary`]: what each NIC passes to the kernel (the per-NIC policy of the XDP program).
//! * [`afxdp`]: AF_XDP sockets and rings with a UMEM shared across both NICs.
//! * [`xsk_worker`]: the per-core AF_XDP relay loop.
//! * [`floor_worker`]: a null AF_XDP worker (same rings and loop, headers only) for the
//!   benchmarks' floor path.
//! * [`idle`]: when an AF_XDP worker spins, naps or sleeps (sans-IO, tested with fake time).
//! * [`socket_worker`]: the same relay over UDP sockets (recvmmsg/sendmmsg).
//! * [`worker`]: control messages, events and statistics shared by both kinds of worker.
//! * [`neigh`]: next-hop MAC resolution over rtnetlink.
//! * [`sys`]: clocks, eventfd, interface MAC and channel ioctls.
//! * `alloc` (feature `huge-pages`): jemalloc on transparent huge pages for the binaries.

pub mod afxdp;
#[cfg(feature = "huge-pages")]
pub mod alloc;
pub mod boundary;
pub mod dataplane;
pub mod floor_worker;
pub mod idle;
pub mod neigh;
pub mod socket_worker;
pub mod sys;
pub mod worker;
pub mod xdp;
pub mod xsk_worker;

pub use boundary::{Boundary, BoundaryMode, SidePolicy};
pub use dataplane::{
    DEFAULT_COALESCE_US, DataPath, Dataplane, DataplaneConfig, DataplaneError, DataplaneStats,
    XdpSettings, XdpWorker,
};
