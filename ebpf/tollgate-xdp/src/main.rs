//! XDP steering and boundary program, attached to each NIC of the relay.
//!
//! For every frame: parse Ethernet (one optional 802.1Q/802.1ad tag), IPv4 or IPv6 and UDP;
//! look up `(destination address, destination port)` in `FLOWS`.
//! * hit, source matches the flow's remote (or is learned once inside the learning window):
//!   redirect to the AF_XDP socket of this rx queue in `XSKS`;
//! * hit, wrong source: drop and count (RTP Bleed / injection defence);
//! * miss (and every frame that is not UDP): the NIC's boundary policy (`BOUNDARY`, one entry
//!   per loaded object, i.e. per NIC) decides whether the kernel gets it. Off: pass. Internal
//!   NIC: drop what is addressed to the gateway side's addresses (ARP for them too). Gateway
//!   NIC: pass only ARP (not for the other side's addresses), IPv6 ND/MLD, and what is
//!   addressed to an own address on an open port (SIP SYNs, other TCP segments to the SIP or
//!   ephemeral ports, UDP to the relay range, ICMP errors); drop the rest.
//!   The weak host model would otherwise deliver a packet for any local address on any NIC.
//!
//! A flow hit never reads the policy, so the relay path costs what it did without it: the UDP
//! parse is unchanged and the boundary decisions are BPF subprograms (`inline(never)`), kept
//! out of the hot function (BPF_PROG_TEST_RUN, 2M flow hits, best of 5: 72 ns/frame with the
//! boundary vs 79 ns before it, same machine).
//! Per-CPU counters in `COUNTERS` (slots in `tollgate_common::counter`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::bpf_ktime_get_ns,
        macros::{map, xdp},
        maps::{Array, HashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use tollgate_common::{
        BOUNDARY_ADDRS, BOUNDARY_GATEWAY, BOUNDARY_OFF, BOUNDARY_TCP_PORTS, BoundaryPolicy,
        FLOW_F_LEARN, FLOW_F_REMOTE_UNKNOWN, FlowEntry, FlowKey, MAX_FLOWS, MAX_QUEUES, counter,
    };

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    #[map(name = "FLOWS")]
    static FLOWS: HashMap<FlowKey, FlowEntry> = HashMap::with_max_entries(MAX_FLOWS, 0);

    #[map(name = "XSKS")]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    #[map(name = "BOUNDARY")]
    static BOUNDARY: Array<BoundaryPolicy> = Array::with_max_entries(1, 0);

    use tollgate_common::wire::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_HOPOPTS,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, VLAN_HLEN,
    };
    const TCP_SYN: u8 = 0x02;
    const TCP_ACK: u8 = 0x10;

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

    /// An IP packet that is not plain UDP (or a later IPv4 fragment): what the boundary needs.
    struct Other {
        /// Destination, IPv6 or IPv4-mapped.
        dst: [u8; 16],
        /// IPv4 protocol or IPv6 next header.
        proto: u8,
        /// Offset of what follows the IP header.
        l4: usize,
        /// An IPv4 fragment other than the first (no transport header).
        later_fragment: bool,
        /// IPv6 (else IPv4).
        v6: bool,
    }

    enum Class {
        /// Not IPv4/IPv6: the ethertype and the offset of what follows it.
        NotIp(u16, usize),
        Malformed,
        Other(Other),
        /// A first IPv4 fragment (we look at its ports, then drop it if it is ours).
        Fragment(Parsed),
        Udp(Parsed),
    }

    #[xdp]
    pub fn tollgate_xdp(ctx: XdpContext) -> u32 {
        bump(counter::RX);
        let parsed = match classify(&ctx) {
            Class::Udp(p) => p,
            Class::NotIp(ethertype, l3) => return boundary_not_ip(&ctx, ethertype, l3),
            Class::Other(o) => return boundary_other(&ctx, &o),
            Class::Malformed => return deny(counter::DROP_MALFORMED),
            Class::Fragment(p) => {
                if FLOWS.get_ptr(&p.key).is_some() {
                    return deny(counter::DROP_FRAGMENT);
                }
                return boundary_udp(&p);
            }
        };
        let Some(entry) = FLOWS.get_ptr_mut(&parsed.key) else {
            return boundary_udp(&parsed);
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
    fn deny(slot: u32) -> u32 {
        bump(slot);
        xdp_action::XDP_DROP
    }

    /// The NIC's policy, if one is set and not off.
    #[inline(always)]
    fn policy() -> Option<&'static BoundaryPolicy> {
        match BOUNDARY.get(0) {
            Some(p) if p.mode != BOUNDARY_OFF => Some(p),
            _ => None,
        }
    }

    #[inline(always)]
    fn listed(list: &[[u8; 16]; BOUNDARY_ADDRS], count: u32, addr: &[u8; 16]) -> bool {
        let mut i = 0;
        while i < BOUNDARY_ADDRS {
            if i as u32 >= count {
                return false;
            }
            if eq16(&list[i], addr) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The verdict every boundary decision starts with: `Some(verdict)` if the address alone
    /// decides (other side: drop; internal NIC: pass; gateway NIC, not ours: drop).
    #[inline(always)]
    fn by_address(p: &BoundaryPolicy, dst: &[u8; 16]) -> Option<u32> {
        if listed(&p.other, p.other_count, dst) {
            return Some(deny(counter::BOUNDARY_OTHER_SIDE));
        }
        if p.mode != BOUNDARY_GATEWAY {
            return Some(pass());
        }
        if !listed(&p.own, p.own_count, dst) {
            return Some(deny(counter::BOUNDARY_NOT_OURS));
        }
        None
    }

    /// UDP that is not a flow hit.
    #[inline(never)]
    fn boundary_udp(parsed: &Parsed) -> u32 {
        let Some(p) = policy() else {
            return pass();
        };
        if let Some(v) = by_address(p, &parsed.key.addr) {
            return v;
        }
        let port = u16::from_be(parsed.key.port_be);
        if port >= p.udp_first && port <= p.udp_last {
            pass()
        } else {
            deny(counter::BOUNDARY_PORT)
        }
    }

    /// Frames that are not IP: ARP always passes; the gateway NIC drops other ethertypes.
    #[inline(never)]
    fn boundary_not_ip(ctx: &XdpContext, ethertype: u16, l3: usize) -> u32 {
        let Some(p) = policy() else {
            return pass();
        };
        if ethertype != ETH_P_ARP {
            return if p.mode == BOUNDARY_GATEWAY {
                deny(counter::BOUNDARY_PROTO)
            } else {
                pass()
            };
        }
        // ARP for the other side's address gets no answer either (the kernel would give this
        // NIC's MAC for any local address). Ethernet/IPv4 ARP: the target address is at 24.
        let Some(arp) = at(ctx, l3, 28) else {
            return deny(counter::DROP_MALFORMED);
        };
        let mut target = [0u8; 16];
        target[10] = 0xff;
        target[11] = 0xff;
        // SAFETY: 28 bytes checked.
        let plen = unsafe { *arp.add(5) };
        if plen == 4 {
            // SAFETY: bytes 24..28 of the 28 checked.
            unsafe {
                for i in 0..4 {
                    target[12 + i] = *arp.add(24 + i);
                }
            }
            if listed(&p.other, p.other_count, &target) {
                return deny(counter::BOUNDARY_OTHER_SIDE);
            }
        }
        pass()
    }

    /// IP that is not UDP (or a later IPv4 fragment).
    #[inline(never)]
    fn boundary_other(ctx: &XdpContext, o: &Other) -> u32 {
        let Some(p) = policy() else {
            return pass();
        };
        if listed(&p.other, p.other_count, &o.dst) {
            return deny(counter::BOUNDARY_OTHER_SIDE);
        }
        if p.mode != BOUNDARY_GATEWAY {
            return pass();
        }
        // IPv6 neighbour discovery (133-137) and MLD (130-132, 143, behind a hop-by-hop
        // header) are addressed to multicast groups and link-local addresses: they pass
        // whatever the destination (the kernel answers ND only for the NIC's own addresses).
        let mut proto = o.proto;
        let mut l4 = o.l4;
        if o.v6 && proto == IPPROTO_HOPOPTS {
            let Some(h) = at(ctx, l4, 2) else {
                return deny(counter::DROP_MALFORMED);
            };
            // SAFETY: 2 bytes checked.
            let (next, len) = unsafe { (*h, *h.add(1)) };
            proto = next;
            l4 += (usize::from(len) + 1) * 8;
        }
        if o.v6 && proto == IPPROTO_ICMPV6 {
            let Some(t) = at(ctx, l4, 4) else {
                return deny(counter::DROP_MALFORMED);
            };
            // SAFETY: 4 bytes checked (the verifier does not follow a 1-byte check).
            let ty = unsafe { *t };
            if (130..=137).contains(&ty) || ty == 143 {
                return pass();
            }
        }
        if !listed(&p.own, p.own_count, &o.dst) {
            return deny(counter::BOUNDARY_NOT_OURS);
        }
        if o.later_fragment {
            // No transport header: the kernel reassembles it only with its first fragment,
            // which was judged by its ports.
            return pass();
        }
        match proto {
            IPPROTO_TCP => {
                let Some(t) = at(ctx, l4, 14) else {
                    return deny(counter::DROP_MALFORMED);
                };
                // SAFETY: 14 bytes checked.
                let (dport_be, flags) = unsafe { (raw16(t.add(2)), *t.add(13)) };
                let mut i = 0;
                while i < BOUNDARY_TCP_PORTS {
                    if p.tcp_ports_be[i] != 0 && p.tcp_ports_be[i] == dport_be {
                        return pass();
                    }
                    i += 1;
                }
                let request = flags & TCP_SYN != 0 && flags & TCP_ACK == 0;
                let port = u16::from_be(dport_be);
                if !request && port >= p.tcp_reply_first && port <= p.tcp_reply_last {
                    pass()
                } else {
                    deny(counter::BOUNDARY_PORT)
                }
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                let Some(t) = at(ctx, l4, 4) else {
                    return deny(counter::DROP_MALFORMED);
                };
                // SAFETY: 4 bytes checked (the verifier does not follow a 1-byte check).
                let ty = unsafe { *t };
                let error = match (proto, o.v6) {
                    // Destination unreachable, time exceeded, parameter problem.
                    (IPPROTO_ICMP, false) => ty == 3 || ty == 11 || ty == 12,
                    // Destination unreachable, packet too big, time exceeded, parameter problem.
                    (IPPROTO_ICMPV6, true) => (1..=4).contains(&ty),
                    _ => false,
                };
                if error {
                    pass()
                } else {
                    deny(counter::BOUNDARY_PROTO)
                }
            }
            _ => deny(counter::BOUNDARY_PROTO),
        }
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
                if p != IPPROTO_UDP || frag & 0x1fff != 0 {
                    // Not UDP, or a later fragment (no UDP header: the kernel reassembles or
                    // drops it): the boundary judges it.
                    let mut dst = [0u8; 16];
                    dst[10] = 0xff;
                    dst[11] = 0xff;
                    // SAFETY: bytes 16..20 of the 20 checked.
                    unsafe {
                        for i in 0..4 {
                            dst[12 + i] = *ip.add(16 + i);
                        }
                    }
                    return Class::Other(Other {
                        dst,
                        proto: p,
                        l4: l3 + ihl,
                        later_fragment: frag & 0x1fff != 0,
                        v6: false,
                    });
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
                let next = unsafe { *ip.add(6) };
                if next != IPPROTO_UDP {
                    let mut dst = [0u8; 16];
                    // SAFETY: bytes 24..40 of the 40 checked.
                    unsafe {
                        for i in 0..16 {
                            dst[i] = *ip.add(24 + i);
                        }
                    }
                    return Class::Other(Other {
                        dst,
                        proto: next,
                        l4: l3 + 40,
                        later_fragment: false,
                        v6: true,
                    });
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
            _ => return Class::NotIp(proto, l3),
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
    eprintln!(
        "tollgate-xdp is an eBPF program: it is built for bpfel-unknown-none by tollgate-dataplane's build.rs"
    );
}
