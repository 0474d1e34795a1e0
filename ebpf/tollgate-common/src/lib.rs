//! The binary interface between the XDP steering program and userspace.
//!
//! Every type here is `#[repr(C)]`, has explicit padding fields and no `bool`, so that the
//! layout seen by the eBPF verifier, by the kernel's map code and by userspace is the same
//! byte for byte. Changing a type here changes the ABI: bump [`ABI_VERSION`].
#![no_std]

/// Bumped whenever a type in this crate changes layout.
pub const ABI_VERSION: u32 = 1;

/// Slots of the per-CPU counter array `COUNTERS` kept by the XDP program.
pub mod counter {
    /// Every frame the program saw.
    pub const RX: u32 = 0;
    /// IPv4 UDP frames.
    pub const UDP4: u32 = 1;
    /// IPv6 UDP frames.
    pub const UDP6: u32 = 2;
    /// Frames handed to the kernel stack (XDP_PASS).
    pub const PASS: u32 = 3;
    /// Frames too short for the headers they claim.
    pub const DROP_MALFORMED: u32 = 4;
    /// Number of slots.
    pub const COUNT: u32 = 5;
}
