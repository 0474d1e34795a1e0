//! XDP program attached to each NIC of the relay.
//!
//! Parses Ethernet (with one optional VLAN tag), IPv4/IPv6 and UDP and keeps per-CPU counters.
//! Every frame is passed on to the kernel stack.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::PerCpuArray,
        programs::XdpContext,
    };
    use tollgate_common::counter;

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    const ETH_HLEN: usize = 14;
    const VLAN_HLEN: usize = 4;
    const ETH_P_IPV4: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86DD;
    const ETH_P_8021Q: u16 = 0x8100;
    const ETH_P_8021AD: u16 = 0x88A8;
    const IPPROTO_UDP: u8 = 17;
    /// Out of range of `COUNTERS`: `bump` ignores it.
    const NO_PROTO_COUNTER: u32 = counter::COUNT;

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

    #[xdp]
    pub fn tollgate_xdp(ctx: XdpContext) -> u32 {
        bump(counter::RX);
        match classify(&ctx) {
            Some(slot) => bump(slot),
            None => {
                bump(counter::DROP_MALFORMED);
                return xdp_action::XDP_DROP;
            }
        }
        bump(counter::PASS);
        xdp_action::XDP_PASS
    }

    /// Which protocol counter the frame belongs to ([`NO_PROTO_COUNTER`] for none); `None` for a truncated frame.
    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Option<u32> {
        let Some(eth) = at(ctx, 0, ETH_HLEN) else {
            return None;
        };
        // SAFETY: 14 bytes checked.
        let mut proto = be16(unsafe { eth.add(12) });
        let mut l3 = ETH_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let tag = at(ctx, ETH_HLEN, VLAN_HLEN)?;
            // SAFETY: 4 bytes checked.
            proto = be16(unsafe { tag.add(2) });
            l3 += VLAN_HLEN;
        }
        match proto {
            ETH_P_IPV4 => {
                let ip = at(ctx, l3, 20)?;
                // SAFETY: 20 bytes checked.
                let (vihl, p) = unsafe { (*ip, *ip.add(9)) };
                let ihl = usize::from(vihl & 0x0f) * 4;
                if ihl < 20 {
                    return None;
                }
                if p == IPPROTO_UDP {
                    at(ctx, l3 + ihl, 8)?;
                    return Some(counter::UDP4);
                }
                Some(NO_PROTO_COUNTER)
            }
            ETH_P_IPV6 => {
                let ip = at(ctx, l3, 40)?;
                // SAFETY: 40 bytes checked.
                if unsafe { *ip.add(6) } == IPPROTO_UDP {
                    at(ctx, l3 + 40, 8)?;
                    return Some(counter::UDP6);
                }
                Some(NO_PROTO_COUNTER)
            }
            _ => Some(NO_PROTO_COUNTER),
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
