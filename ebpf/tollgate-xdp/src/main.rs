//! XDP steering program, attached to each NIC of the relay.
//!
//! For every frame: parse Ethernet (one optional 802.1Q/802.1ad tag), IPv4 or IPv6 and UDP;
//! look up `(destination address, destination port)` in `FLOWS`.
//! * miss: `XDP_PASS` — SIP, ARP, ICMP and everything else go to the kernel;
//! * hit, source matches the flow's remote (or is learned once inside the learning window):
//!   redirect to the AF_XDP socket of this rx queue in `XSKS`;
//! * hit, wrong source: drop and count (RTP Bleed / injection defence).
//!
//! Per-CPU counters in `COUNTERS` (slots in `tollgate_common::counter`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::bpf_ktime_get_ns,
        macros::{map, xdp},
        maps::{HashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use tollgate_common::{
        FLOW_F_LEARN, FLOW_F_REMOTE_UNKNOWN, FlowEntry, FlowKey, MAX_FLOWS, MAX_QUEUES, counter,
    };

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    #[map(name = "FLOWS")]
    static FLOWS: HashMap<FlowKey, FlowEntry> = HashMap::with_max_entries(MAX_FLOWS, 0);

    #[map(name = "XSKS")]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    const ETH_HLEN: usize = 14;
    const VLAN_HLEN: usize = 4;
    const ETH_P_IPV4: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86DD;
    const ETH_P_8021Q: u16 = 0x8100;
    const ETH_P_8021AD: u16 = 0x88A8;
    const IPPROTO_UDP: u8 = 17;

    #[inline(always)]
    fn bump(slot: u32) {
        if let Some(c) = COUNTERS.get_ptr_mut(slot) {
            // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
            unsafe { *c += 1 };
        }
    }

    /// Pointer to `len` bytes at `off`, or `None` if the frame is shorter.
    #[inline(always)]
    fn at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
        let start = ctx.data();
        if start + off + len > ctx.data_end() {
            return None;
        }
        Some((start + off) as *const u8)
    }

    #[inline(always)]
    fn be16(p: *const u8) -> u16 {
        // SAFETY: callers bounds-checked two bytes at `p` through `at`.
        unsafe { u16::from_be_bytes([*p, *p.add(1)]) }
    }

    /// Reads a u16 as stored (network byte order kept).
    #[inline(always)]
    fn raw16(p: *const u8) -> u16 {
        // SAFETY: callers bounds-checked two bytes at `p` through `at`.
        unsafe { u16::from_ne_bytes([*p, *p.add(1)]) }
    }

    /// 16-byte equality without a `bcmp` call (BPF has no libc).
    #[inline(always)]
    fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
        let (a0, a1) = split16(a);
        let (b0, b1) = split16(b);
        a0 == b0 && a1 == b1
    }

    #[inline(always)]
    fn split16(a: &[u8; 16]) -> (u64, u64) {
        let p = a.as_ptr().cast::<u64>();
        // SAFETY: 16 readable bytes; unaligned reads.
        unsafe { (p.read_unaligned(), p.add(1).read_unaligned()) }
    }

    /// 16-byte copy without a `memcpy` call.
    #[inline(always)]
    fn copy16(dst: &mut [u8; 16], src: &[u8; 16]) {
        let (s0, s1) = split16(src);
        let p = dst.as_mut_ptr().cast::<u64>();
        // SAFETY: 16 writable bytes; unaligned writes.
        unsafe {
            p.write_unaligned(s0);
            p.add(1).write_unaligned(s1);
        }
    }

    /// What the parser found: the lookup key and the packet's source.
    struct Parsed {
        key: FlowKey,
        src: [u8; 16],
        src_port_be: u16,
    }

    enum Class {
        NotUdp,
        Malformed,
        /// A first IPv4 fragment (we look at its ports, then drop it if it is ours).
        Fragment(Parsed),
        Udp(Parsed),
    }

    #[xdp]
    pub fn tollgate_xdp(ctx: XdpContext) -> u32 {
        bump(counter::RX);
        let parsed = match classify(&ctx) {
            Class::Udp(p) => p,
            Class::NotUdp => return pass(),
            Class::Malformed => {
                bump(counter::DROP_MALFORMED);
                return xdp_action::XDP_DROP;
            }
            Class::Fragment(p) => {
                if FLOWS.get_ptr(&p.key).is_some() {
                    bump(counter::DROP_FRAGMENT);
                    return xdp_action::XDP_DROP;
                }
                return pass();
            }
        };
        let Some(entry) = FLOWS.get_ptr_mut(&parsed.key) else {
            return pass();
        };
        // SAFETY: map value pointer from the kernel, valid for the program's run.
        let e = unsafe { &mut *entry };
        let same = eq16(&e.remote_addr, &parsed.src) && e.remote_port_be == parsed.src_port_be;
        if !same {
            let learning = e.flags & FLOW_F_LEARN != 0
                // SAFETY: helper with no arguments.
                && unsafe { bpf_ktime_get_ns() } < e.learn_until_ns;
            if !learning {
                // Not atomic (the bpfel target has no atomic RMW in core): concurrent CPUs may
                // lose an increment. RSS keeps one source on one queue, and the per-CPU
                // DROP_SOURCE counter is exact.
                e.src_mismatch = e.src_mismatch.wrapping_add(1);
                bump(counter::DROP_SOURCE);
                return xdp_action::XDP_DROP;
            }
            // Learn once: the first packet inside the window fixes the source for good.
            copy16(&mut e.remote_addr, &parsed.src);
            e.remote_port_be = parsed.src_port_be;
            e.flags &= !(FLOW_F_LEARN | FLOW_F_REMOTE_UNKNOWN);
            bump(counter::LEARNED);
        }
        let queue = ctx.rx_queue_index();
        // Default action XDP_DROP if no socket is bound for this queue.
        match XSKS.redirect(queue, u64::from(xdp_action::XDP_DROP)) {
            Ok(action) if action == xdp_action::XDP_REDIRECT => {
                bump(counter::REDIRECT);
                action
            }
            _ => {
                bump(counter::DROP_NO_SOCKET);
                xdp_action::XDP_DROP
            }
        }
    }

    #[inline(always)]
    fn pass() -> u32 {
        bump(counter::PASS);
        xdp_action::XDP_PASS
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Class {
        let Some(eth) = at(ctx, 0, ETH_HLEN) else {
            return Class::Malformed;
        };
        // SAFETY: 14 bytes checked.
        let mut proto = be16(unsafe { eth.add(12) });
        let mut l3 = ETH_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let Some(tag) = at(ctx, ETH_HLEN, VLAN_HLEN) else {
                return Class::Malformed;
            };
            // SAFETY: 4 bytes checked.
            proto = be16(unsafe { tag.add(2) });
            l3 += VLAN_HLEN;
        }
        let mut key = FlowKey::default();
        let mut src = [0u8; 16];
        let l4;
        let mut first_fragment = false;
        match proto {
            ETH_P_IPV4 => {
                let Some(ip) = at(ctx, l3, 20) else {
                    return Class::Malformed;
                };
                // SAFETY: 20 bytes checked.
                let (vihl, p, frag) = unsafe { (*ip, *ip.add(9), be16(ip.add(6))) };
                let ihl = usize::from(vihl & 0x0f) * 4;
                if ihl < 20 || vihl >> 4 != 4 {
                    return Class::Malformed;
                }
                if p != IPPROTO_UDP {
                    return Class::NotUdp;
                }
                if frag & 0x1fff != 0 {
                    // A later fragment has no UDP header: the kernel reassembles or drops it.
                    return Class::NotUdp;
                }
                first_fragment = frag & 0x2000 != 0;
                key.addr[10] = 0xff;
                key.addr[11] = 0xff;
                src[10] = 0xff;
                src[11] = 0xff;
                // SAFETY: bytes 12..20 of the 20 checked.
                unsafe {
                    for i in 0..4 {
                        src[12 + i] = *ip.add(12 + i);
                        key.addr[12 + i] = *ip.add(16 + i);
                    }
                }
                bump(counter::UDP4);
                l4 = l3 + ihl;
            }
            ETH_P_IPV6 => {
                let Some(ip) = at(ctx, l3, 40) else {
                    return Class::Malformed;
                };
                // SAFETY: 40 bytes checked.
                if unsafe { *ip.add(6) } != IPPROTO_UDP {
                    return Class::NotUdp;
                }
                // SAFETY: bytes 8..40 of the 40 checked.
                unsafe {
                    for i in 0..16 {
                        src[i] = *ip.add(8 + i);
                        key.addr[i] = *ip.add(24 + i);
                    }
                }
                bump(counter::UDP6);
                l4 = l3 + 40;
            }
            _ => return Class::NotUdp,
        }
        let Some(udp) = at(ctx, l4, 8) else {
            return Class::Malformed;
        };
        // SAFETY: 8 bytes checked.
        let (sport, dport) = unsafe { (raw16(udp), raw16(udp.add(2))) };
        key.port_be = dport;
        let parsed = Parsed {
            key,
            src,
            src_port_be: sport,
        };
        if first_fragment {
            Class::Fragment(parsed)
        } else {
            Class::Udp(parsed)
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("tollgate-xdp is an eBPF program: it is built for bpfel-unknown-none by aya-build");
}
