//! Tollgate's media data plane.
//!
//! * [`xdp`]: loads the XDP steering program onto a NIC (native mode, falling back to skb mode),
//!   reads its counters and detaches it on drop.
pub mod xdp;
