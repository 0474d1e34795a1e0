//! AF_XDP sockets, rings and a UMEM shared by the two NICs a worker serves.
//!
//! Written directly on libc rather than with a crate because the relay needs *shared UMEM*
//! across devices: a frame received on the gateway NIC's socket is transmitted, without any
//! copy in userspace, on the internal NIC's socket (and back). The kernel allows one UMEM to
//! be shared by sockets on different devices and queues as long as each (device, queue) pair
//! has its own fill and completion rings, which is what [`XskSocket::bind_shared`] sets up.
//!
//! Ring protocol (Documentation/networking/af_xdp.rst): single producer, single consumer,
//! free-running u32 indices; the producer publishes with a release store, the consumer reads
//! with an acquire load. Nothing here allocates, locks or logs per packet.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Headroom the kernel leaves before each received frame (XDP_PACKET_HEADROOM): room for the
/// egress header to grow in place.
pub const XDP_PACKET_HEADROOM: u64 = 256;

/// Errors setting up AF_XDP.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A syscall failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Zero-copy was required but the driver refused (veth only does copy mode).
    #[error("bind to {iface} queue {queue} failed: {source}")]
    Bind {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// The OS error.
        source: io::Error,
    },
    /// Bad geometry (sizes must be powers of two, frames 2048 or 4096).
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
}

fn sys(call: &'static str) -> XskError {
    XskError::Sys {
        call,
        source: io::Error::last_os_error(),
    }
}

/// An anonymous memory mapping, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; synchronisation is by the ring protocol.
unsafe impl Send for Mmap {}

impl Mmap {
    fn anon(len: usize) -> Result<Self, XskError> {
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("mmap(umem)"));
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).ok_or_else(|| sys("mmap(umem)"))?,
            len,
        })
    }

    fn ring(fd: RawFd, len: usize, pgoff: u64) -> Result<Self, XskError> {
        // SAFETY: maps the kernel ring at `pgoff` of an AF_XDP socket; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("mmap(ring)"));
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).ok_or_else(|| sys("mmap(ring)"))?,
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The frame memory shared by a worker's sockets.
#[derive(Debug)]
pub struct Umem {
    area: Mmap,
    frame_size: u32,
    frames: u32,
    /// One bit per frame, set while [`Umem::frames_mut`] hands the frame out (all clear between
    /// calls): what keeps two views of one frame from existing at once.
    lent: Vec<u64>,
}

impl Umem {
    /// Maps `frames` frames of `frame_size` bytes (2048 or 4096).
    pub fn new(frames: u32, frame_size: u32) -> Result<Self, XskError> {
        if frame_size != 2048 && frame_size != 4096 {
            return Err(XskError::Config("frame size must be 2048 or 4096"));
        }
        if frames == 0 || !frames.is_power_of_two() {
            return Err(XskError::Config("frame count must be a power of two"));
        }
        let area = Mmap::anon(frames as usize * frame_size as usize)?;
        Ok(Umem {
            area,
            frame_size,
            frames,
            lent: vec![0; (frames as usize).div_ceil(64)],
        })
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Start address (UMEM offset) of every frame.
    pub fn frame_addrs(&self) -> impl Iterator<Item = u64> + '_ {
        (0..u64::from(self.frames)).map(|i| i * u64::from(self.frame_size))
    }

    /// The whole frame containing UMEM offset `addr`, and `addr`'s offset inside it.
    /// `None` if `addr` is outside the UMEM.
    #[inline]
    pub fn frame(&self, addr: u64) -> Option<(&[u8], usize)> {
        let (base, off) = self.locate(addr)?;
        // SAFETY: base..base+frame_size is inside the mapping (`locate`); the worker holds the
        // frame's descriptor and reads it only while no mutable view of it exists (`&self`).
        let s = unsafe {
            std::slice::from_raw_parts(self.area.ptr.as_ptr().add(base), self.frame_size as usize)
        };
        Some((s, off))
    }

    /// The frame holding `addr`, writable, and the offset of `addr` within it.
    pub fn frame_mut(&mut self, addr: u64) -> Option<(&mut [u8], usize)> {
        let (base, off) = self.locate(addr)?;
        // SAFETY: base..base+frame_size is inside the mapping (`locate`); the ring protocol
        // gives this worker exclusive ownership of the frame while it holds its descriptor.
        let s = unsafe {
            std::slice::from_raw_parts_mut(
                self.area.ptr.as_ptr().add(base),
                self.frame_size as usize,
            )
        };
        Some((s, off))
    }

    /// Writable views of several frames at once: `each(k, view)` for the `k`-th address of
    /// `addrs`, with the frame holding it and the address's offset in the frame, or `None` for
    /// an address outside the UMEM or in a frame this call already handed out (the rings never
    /// give one frame twice, so that would be a kernel bug: refused, never aliased). The views
    /// live as long as the borrow of the UMEM. No allocation.
    pub fn frames_mut<'a>(
        &'a mut self,
        addrs: &[u64],
        mut each: impl FnMut(usize, Option<(&'a mut [u8], usize)>),
    ) {
        let base_ptr = self.area.ptr.as_ptr();
        let frame_size = self.frame_size as usize;
        for (k, &addr) in addrs.iter().enumerate() {
            let view = self.locate(addr).and_then(|(base, off)| {
                let idx = base / frame_size;
                let (word, bit) = (idx / 64, 1u64 << (idx % 64));
                let w = self.lent.get_mut(word)?;
                if *w & bit != 0 {
                    return None;
                }
                *w |= bit;
                // SAFETY: base..base+frame_size is inside the mapping (`locate`); the `lent`
                // bit guarantees no other view of this frame handed out by this call, and the
                // `&'a mut self` borrow keeps every other accessor out while the views live.
                let s = unsafe { std::slice::from_raw_parts_mut(base_ptr.add(base), frame_size) };
                Some((s, off))
            });
            each(k, view);
        }
        // The views stay valid through the borrow; the marks only guard within this call.
        for &addr in addrs {
            if let Some((base, _)) = self.locate(addr) {
                let idx = base / frame_size;
                if let Some(w) = self.lent.get_mut(idx / 64) {
                    *w &= !(1u64 << (idx % 64));
                }
            }
        }
    }

    /// The start of the frame holding UMEM offset `addr` and `addr`'s offset in it, if `addr`
    /// is inside the UMEM.
    #[inline]
    fn locate(&self, addr: u64) -> Option<(usize, usize)> {
        let fs = u64::from(self.frame_size);
        let base = addr - addr % fs;
        if base >= u64::from(self.frames) * fs {
            return None;
        }
        Some((base as usize, (addr - base) as usize))
    }
}

/// One mapped ring: producer/consumer indices, flags and the descriptor array.
#[derive(Debug)]
struct Ring<T: Copy> {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Local copy of the other side's index.
    cached_other: u32,
    /// Local copy of our own index (published on `submit`/`release`).
    cached_own: u32,
}

// SAFETY: the ring is only used by the worker that owns its socket.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> Result<Self, XskError> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::ring(fd, len, pgoff)?;
        let base = map.ptr.as_ptr();
        // SAFETY: the offsets come from the kernel (XDP_MMAP_OFFSETS) and lie in the mapping.
        unsafe {
            Ok(Ring {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                descs: base.add(off.desc as usize).cast(),
                _map: map,
                mask: size - 1,
                size,
                cached_other: 0,
                cached_own: 0,
            })
        }
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping.
        unsafe { &*self.producer }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the live mapping.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Free slots for the producer.
    fn free(&mut self) -> u32 {
        self.cached_other = self.cons().load(Ordering::Acquire);
        self.size - self.cached_own.wrapping_sub(self.cached_other)
    }

    /// Writes one entry; the caller checked `free()`.
    #[inline]
    fn push(&mut self, v: T) {
        // SAFETY: index masked into the ring.
        unsafe {
            self.descs
                .add((self.cached_own & self.mask) as usize)
                .write(v)
        };
        self.cached_own = self.cached_own.wrapping_add(1);
    }

    /// Publishes pushed entries to the kernel.
    #[inline]
    fn submit(&mut self) {
        self.prod().store(self.cached_own, Ordering::Release);
    }

    /// Entries published but not yet consumed by the kernel.
    fn outstanding(&self) -> u32 {
        self.cached_own
            .wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    // ---- consumer side (rx, completion) ----

    /// Entries available to read.
    #[inline]
    fn available(&mut self) -> u32 {
        self.cached_other = self.prod().load(Ordering::Acquire);
        self.cached_other.wrapping_sub(self.cached_own)
    }

    /// Reads entry `i` of those available.
    #[inline]
    fn peek(&self, i: u32) -> T {
        // SAFETY: index masked into the ring; i < available().
        unsafe {
            self.descs
                .add((self.cached_own.wrapping_add(i) & self.mask) as usize)
                .read()
        }
    }

    /// Gives `n` read entries back to the kernel.
    #[inline]
    fn release(&mut self, n: u32) {
        self.cached_own = self.cached_own.wrapping_add(n);
        self.cons().store(self.cached_own, Ordering::Release);
    }
}

/// Ring sizes (powers of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSizes {
    /// RX and TX descriptor rings.
    pub rx_tx: u32,
    /// Fill and completion rings.
    pub fill_comp: u32,
}

/// The default ring depth. A worker that stops running for a while (preempted, or its vCPU
/// stolen by the hypervisor) finds what arrived meanwhile in its RX ring, in frames it had
/// posted to the fill ring; whatever does not fit is dropped by the kernel. 8192 frames ride out
/// a 27 ms stall at 300k packets/s per worker (measured: with 2048, 15 ms stalls on the relay's
/// core capped the XDP path at 130k packets/s while the socket path, whose per-socket buffers
/// hold far more, kept 280k). The socket path gets that depth for free; here it costs UMEM.
pub const RING_DEPTH: u32 = 8192;

impl Default for RingSizes {
    fn default() -> Self {
        RingSizes {
            rx_tx: RING_DEPTH,
            fill_comp: RING_DEPTH,
        }
    }
}

/// Bind mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Let the kernel pick (zero-copy if the driver supports it, else copy).
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy only.
    ZeroCopy,
}

/// Socket statistics from the kernel (XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// RX ring was full.
    pub rx_ring_full: u64,
    /// Fill ring was empty.
    pub rx_fill_ring_empty_descs: u64,
    /// TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// One AF_XDP socket bound to one (interface, queue), with its four rings.
#[derive(Debug)]
pub struct XskSocket {
    fd: OwnedFd,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    /// Interface and queue, for diagnostics.
    pub iface: String,
    /// Queue id.
    pub queue: u32,
    /// Whether the bind ended in zero-copy mode.
    pub zero_copy: bool,
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T, what: &'static str) -> Result<(), XskError> {
    // SAFETY: v points to a T of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(sys(what));
    }
    Ok(())
}

pub(crate) fn ifindex(iface: &str) -> Result<u32, XskError> {
    let c =
        std::ffi::CString::new(iface).map_err(|_| XskError::Config("interface name has NUL"))?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(sys("if_nametoindex"));
    }
    Ok(i)
}

impl XskSocket {
    /// Creates the socket that owns (registers) `umem`, bound to `iface`/`queue`.
    pub fn bind_owner(
        umem: &Umem,
        iface: &str,
        queue: u32,
        sizes: RingSizes,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let fd = new_socket()?;
        let reg = libc::xdp_umem_reg {
            addr: umem.area.ptr.as_ptr() as u64,
            len: umem.area.len as u64,
            chunk_size: umem.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(
            fd.as_raw_fd(),
            libc::XDP_UMEM_REG,
            &reg,
            "setsockopt(XDP_UMEM_REG)",
        )?;
        Self::finish(fd, iface, queue, sizes, mode, None)
    }

    /// Creates a socket on `iface`/`queue` that shares the UMEM registered by `owner`
    /// (XDP_SHARED_UMEM), with its own fill and completion rings.
    pub fn bind_shared(
        owner: &XskSocket,
        iface: &str,
        queue: u32,
        sizes: RingSizes,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let fd = new_socket()?;
        Self::finish(fd, iface, queue, sizes, mode, Some(owner.fd.as_raw_fd()))
    }

    fn finish(
        fd: OwnedFd,
        iface: &str,
        queue: u32,
        sizes: RingSizes,
        mode: BindMode,
        shared: Option<RawFd>,
    ) -> Result<Self, XskError> {
        if !sizes.rx_tx.is_power_of_two() || !sizes.fill_comp.is_power_of_two() {
            return Err(XskError::Config("ring sizes must be powers of two"));
        }
        let raw = fd.as_raw_fd();
        setsockopt(
            raw,
            libc::XDP_UMEM_FILL_RING,
            &sizes.fill_comp,
            "setsockopt(FILL_RING)",
        )?;
        setsockopt(
            raw,
            libc::XDP_UMEM_COMPLETION_RING,
            &sizes.fill_comp,
            "setsockopt(COMP_RING)",
        )?;
        setsockopt(raw, libc::XDP_RX_RING, &sizes.rx_tx, "setsockopt(RX_RING)")?;
        setsockopt(raw, libc::XDP_TX_RING, &sizes.rx_tx, "setsockopt(TX_RING)")?;
        // SAFETY: zeroed POD struct.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: off/len are valid out-pointers.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(sys("getsockopt(XDP_MMAP_OFFSETS)"));
        }
        let rx = Ring::map(raw, &off.rx, sizes.rx_tx, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, &off.tx, sizes.rx_tx, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = Ring::map(
            raw,
            &off.fr,
            sizes.fill_comp,
            libc::XDP_UMEM_PGOFF_FILL_RING,
        )?;
        let comp = Ring::map(
            raw,
            &off.cr,
            sizes.fill_comp,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )?;

        let mut flags = libc::XDP_USE_NEED_WAKEUP;
        match mode {
            BindMode::Auto => {}
            BindMode::Copy => flags |= libc::XDP_COPY,
            BindMode::ZeroCopy => flags |= libc::XDP_ZEROCOPY,
        }
        if shared.is_some() {
            // A socket sharing a UMEM inherits copy/zero-copy and need_wakeup from the owner;
            // the kernel refuses those flags here (EINVAL).
            flags = libc::XDP_SHARED_UMEM;
        }
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex(iface)?,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared.map_or(0, |f| f as u32),
        };
        // SAFETY: sa is a valid sockaddr_xdp.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(XskError::Bind {
                iface: iface.to_owned(),
                queue,
                source: io::Error::last_os_error(),
            });
        }
        let mut opts = libc::xdp_options { flags: 0 };
        let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: valid out-pointers.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut opts as *mut libc::xdp_options).cast(),
                &mut len,
            )
        };
        let zero_copy = rc == 0 && opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        Ok(XskSocket {
            fd,
            rx,
            tx,
            fill,
            comp,
            iface: iface.to_owned(),
            queue,
            zero_copy,
        })
    }

    /// The socket's file descriptor (for the XSKMAP and poll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Puts frames on the fill ring, as many as fit; returns how many were taken from `frames`
    /// (taken from its end).
    pub fn fill(&mut self, frames: &mut Vec<u64>) -> usize {
        let n = (self.fill.free() as usize).min(frames.len());
        for _ in 0..n {
            if let Some(a) = frames.pop() {
                self.fill.push(a);
            }
        }
        if n > 0 {
            self.fill.submit();
        }
        n
    }

    /// Whether the kernel asked to be woken to process the fill ring (copy/zero-copy rx).
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// Number of received descriptors ready.
    #[inline]
    pub fn rx_available(&mut self) -> u32 {
        self.rx.available()
    }

    /// The `i`-th ready descriptor as (UMEM address, length).
    #[inline]
    pub fn rx_desc(&self, i: u32) -> (u64, u32) {
        let d = self.rx.peek(i);
        (d.addr, d.len)
    }

    /// Releases `n` consumed rx descriptors.
    #[inline]
    pub fn rx_release(&mut self, n: u32) {
        self.rx.release(n);
    }

    /// Free TX slots.
    #[inline]
    pub fn tx_free(&mut self) -> u32 {
        self.tx.free()
    }

    /// Queues a frame for transmission (caller checked `tx_free`); call `tx_submit` after a batch.
    #[inline]
    pub fn tx_push(&mut self, addr: u64, len: u32) {
        self.tx.push(libc::xdp_desc {
            addr,
            len,
            options: 0,
        });
    }

    /// Publishes queued TX descriptors and, if the kernel needs it, kicks it with `sendto`.
    /// In copy mode the kernel sends at most a few dozen frames per kick, so this kicks until the
    /// ring is drained or the kernel says EAGAIN/ENOBUFS (retried on the next call).
    pub fn tx_submit(&mut self) {
        self.tx.submit();
        let mut kicks = 0;
        while self.tx.outstanding() > 0 && (!self.zero_copy || self.tx.needs_wakeup()) {
            // SAFETY: plain sendto with no data on our socket.
            let rc = unsafe {
                libc::sendto(
                    self.raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            kicks += 1;
            if rc < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                if e != Some(libc::EAGAIN) && e != Some(libc::EBUSY) && e != Some(libc::ENOBUFS) {
                    break;
                }
            }
            if self.zero_copy || kicks >= 64 {
                break;
            }
        }
    }

    /// TX descriptors published and not yet consumed.
    pub fn tx_outstanding(&self) -> u32 {
        self.tx.outstanding()
    }

    /// Moves completed TX frames to `free`; returns how many.
    pub fn reap_completions(&mut self, free: &mut Vec<u64>) -> u32 {
        let n = self.comp.available();
        for i in 0..n {
            free.push(self.comp.peek(i));
        }
        if n > 0 {
            self.comp.release(n);
        }
        n
    }

    /// Wakes the kernel's rx processing (when `fill_needs_wakeup`).
    pub fn wake_rx(&self) {
        // SAFETY: zero-length non-blocking recvfrom on our socket.
        unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Kernel statistics for this socket.
    pub fn stats(&self) -> Result<XskStats, XskError> {
        // SAFETY: zeroed POD struct.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: valid out-pointers.
        let rc = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut s as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(sys("getsockopt(XDP_STATISTICS)"));
        }
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

fn new_socket() -> Result<OwnedFd, XskError> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys("socket(AF_XDP)"));
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
