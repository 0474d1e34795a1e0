//! The floor worker: a null AF_XDP relay for benchmarks ([`crate::XdpWorker::Floor`]).
//!
//! It runs on exactly what the real worker ([`crate::xsk_worker`]) runs on: the same XDP
//! program steering the same flows to it, the same UMEM and rings ([`crate::afxdp`]), the same
//! batch size, TX kick, completion reaping, fill and idle policy ([`crate::idle`]). Per frame it
//! does only what any relay must: parse the headers, write the egress side's
//! Ethernet/IP/UDP header in front of the unchanged payload (UDP checksum included, as the real
//! worker writes it) and queue the frame on the other NIC. No SRTP, no flow table, no
//! counters per flow, no source checks: the egress header of each relay port is precomputed
//! when the control plane installs a flow and found by indexing an array with the received
//! frame's side and UDP destination port.
//!
//! What the real worker costs above this one is what its relay work (flow lookup, SRTP,
//! per-flow state) costs; what this one costs is the floor that AF_XDP in this environment
//! (copy mode on veth: the kernel's copies, the TX kick and the XDP program) sets for any
//! relay. Not for production: it relays packets of a port to the egress peer without any of
//! the checks the relay makes, and keys ports without their address (one relay address per
//! side; with several, the last flow installed on a port number wins).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tollgate_relay::frame::{self, EgressHeader, Mac};
use tollgate_relay::{DropReason, MediaFlowSpec, Side};

use crate::worker::{Control, WorkerCtx, add};
use crate::xsk_worker::{BurstHandler, Tally, XskPair};

use crate::xsk_worker::BATCH;
/// Relay ports per side: the whole UDP port space.
const PORTS: usize = 1 << 16;

/// The precomputed egress headers: for each receiving side, by UDP destination port.
struct Egress {
    /// `[side][port]`: the egress header for frames received on that side and port, or `None`
    /// (no flow, or its egress peer or next hop is unknown).
    by_port: [Box<[Option<EgressHeader>]>; 2],
    /// Installed flows and their next hops (`[ext, int]`), to rebuild their entries.
    flows: HashMap<u64, (MediaFlowSpec, [Option<Mac>; 2])>,
}

impl Egress {
    fn new() -> Egress {
        Egress {
            by_port: [
                vec![None; PORTS].into_boxed_slice(),
                vec![None; PORTS].into_boxed_slice(),
            ],
            flows: HashMap::new(),
        }
    }

    /// The entries a flow occupies: (receiving side, local port, egress header if complete).
    fn entries(
        spec: &MediaFlowSpec,
        hops: [Option<Mac>; 2],
    ) -> Vec<(Side, u16, Option<EgressHeader>)> {
        let mut v = Vec::with_capacity(4);
        for side in [Side::Ext, Side::Int] {
            let (leg, out) = (spec.leg(side), spec.leg(side.other()));
            let mac = hops[side.other().index()];
            let head = |from: SocketAddr, to: Option<SocketAddr>| -> Option<EgressHeader> {
                Some(EgressHeader {
                    src_mac: out.nic_mac,
                    dst_mac: mac?,
                    vlan: out.vlan,
                    src: from,
                    dst: to?,
                })
            };
            v.push((
                side,
                leg.local_rtp.port(),
                head(out.local_rtp, out.remote_rtp),
            ));
            if let Some(rtcp) = leg.local_rtcp {
                v.push((
                    side,
                    rtcp.port(),
                    head(
                        out.local_rtcp.unwrap_or(out.local_rtp),
                        out.remote_rtcp_addr(),
                    ),
                ));
            }
        }
        v
    }

    fn set(&mut self, id: u64, on: bool) {
        let Some((spec, hops)) = self.flows.get(&id) else {
            return;
        };
        for (side, port, head) in Egress::entries(spec, *hops) {
            self.by_port[side.index()][usize::from(port)] = if on { head } else { None };
        }
    }

    /// Applies a control message.
    fn apply(&mut self, msg: Control) {
        match msg {
            Control::Install { spec, .. } => {
                let id = spec.id;
                self.set(id, false);
                let hops = [spec.ext.next_hop_mac, spec.int.next_hop_mac];
                self.flows.insert(id, (*spec, hops));
                self.set(id, true);
            }
            Control::Remove(id) => {
                self.set(id, false);
                self.flows.remove(&id);
            }
            Control::NextHop { flow, side, mac } => {
                if let Some((_, hops)) = self.flows.get_mut(&flow) {
                    hops[side.index()] = mac;
                    self.set(flow, true);
                }
            }
            Control::Barrier => {}
        }
    }
}

/// Runs the floor worker until `ctx.stop` is set: the loop of [`crate::xsk_worker::run`]
/// (the same code: [`crate::xsk_worker::run_with`]) with [`forward_batch`] in place of the relay.
pub fn run(ctx: WorkerCtx, io: XskPair) {
    crate::xsk_worker::run_with(ctx, io, Egress::new());
}

impl BurstHandler for Egress {
    fn apply(&mut self, ctx: &WorkerCtx, msg: Control, _now: u64) {
        add(&ctx.stats.control, 1);
        Egress::apply(self, msg);
        ctx.stats
            .flows
            .store(self.flows.len() as u64, Ordering::Relaxed);
    }

    #[inline]
    fn burst(
        &mut self,
        ctx: &WorkerCtx,
        io: &mut XskPair,
        from: Side,
        free: &mut Vec<u64>,
        frame_size: u64,
        _now: u64,
    ) -> u32 {
        forward_batch(ctx, self, io, from, free, frame_size)
    }
}

/// Forwards up to one batch that arrived on the `from` side's socket out of the other side's;
/// returns the number of frames received.
#[inline]
fn forward_batch(
    ctx: &WorkerCtx,
    egress: &Egress,
    io: &mut XskPair,
    from: Side,
    free: &mut Vec<u64>,
    frame_size: u64,
) -> u32 {
    let umem = &mut io.umem;
    let (rx, tx) = match from {
        Side::Ext => (&mut io.ext, &mut io.int),
        Side::Int => (&mut io.int, &mut io.ext),
    };
    let n = rx.rx_available().min(BATCH);
    if n == 0 {
        return 0;
    }
    let table = &egress.by_port[from.index()];
    let mut tx_room = tx.tx_free();
    let mut tally = Tally::default();
    for i in 0..n {
        let (addr, len) = rx.rx_desc(i);
        let base = addr - addr % frame_size;
        match forward_frame(table, umem, addr, len as usize) {
            Ok((off, out_len)) if tx_room > 0 => {
                tx.tx_push(base + off as u64, out_len as u32);
                tx_room -= 1;
                tally.sent += 1;
            }
            Ok(_) => tally.drop(ctx, free, base, DropReason::TxFull),
            Err(reason) => tally.drop(ctx, free, base, reason),
        }
    }
    tally.publish(ctx, rx, n);
    n
}

/// Rewrites one received frame's headers in place for its egress side. Returns the offset
/// (within the frame's chunk) and length of the frame to transmit.
#[inline]
fn forward_frame(
    table: &[Option<EgressHeader>],
    umem: &mut crate::afxdp::Umem,
    addr: u64,
    len: usize,
) -> Result<(usize, usize), DropReason> {
    let (chunk, off) = umem.frame_mut(addr).ok_or(DropReason::Malformed)?;
    let parsed = chunk
        .get(off..off + len)
        .map_or(Err(DropReason::Malformed), |f| {
            frame::parse(f).map_err(|_| DropReason::Malformed)
        })?;
    let Some(head) = table
        .get(usize::from(parsed.dst.port()))
        .and_then(Option::as_ref)
    else {
        return Err(DropReason::NoFlow);
    };
    let payload_at = off + parsed.payload_off;
    let hlen = head.len();
    if payload_at < hlen {
        return Err(DropReason::NoRoom);
    }
    let (front, rest) = chunk.split_at_mut(payload_at);
    let payload = rest.get(..parsed.payload_len).ok_or(DropReason::NoRoom)?;
    let start = payload_at - hlen;
    head.write(&mut front[start..], payload, parsed.tos)
        .ok_or(DropReason::NoRoom)?;
    Ok((start, hlen + parsed.payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_relay::{LegSpec, TransformSpec};

    fn leg(local: &str, remote: &str, mac: u8) -> LegSpec {
        LegSpec {
            local_rtp: local.parse().unwrap(),
            local_rtcp: None,
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            learn_window_ns: 0,
            nic_mac: [mac; 6],
            vlan: None,
            next_hop_mac: None,
        }
    }

    #[test]
    fn egress_headers_follow_installs_next_hops_and_removes() {
        let mut e = Egress::new();
        let spec = MediaFlowSpec {
            id: 7,
            ext: leg("10.0.1.1:4000", "10.0.1.2:6000", 1),
            int: leg("10.0.2.1:4000", "10.0.2.2:7000", 2),
            ext_to_int: TransformSpec::Forward,
            int_to_ext: TransformSpec::Forward,
            resume: [None, None],
        };
        let crypto = tollgate_relay::FlowCrypto::build(&spec, None, Default::default()).unwrap();
        e.apply(Control::Install {
            spec: Box::new(spec),
            crypto,
            counters: Default::default(),
            sockets: Vec::new(),
        });
        // No next hop yet: the port is known, the header is not.
        assert!(e.by_port[0][4000].is_none());
        e.apply(Control::NextHop {
            flow: 7,
            side: Side::Int,
            mac: Some([9; 6]),
        });
        let h = e.by_port[Side::Ext.index()][4000].unwrap();
        assert_eq!(h.src, "10.0.2.1:4000".parse().unwrap());
        assert_eq!(h.dst, "10.0.2.2:7000".parse().unwrap());
        assert_eq!((h.src_mac, h.dst_mac), ([2; 6], [9; 6]));
        assert!(e.by_port[Side::Int.index()][4000].is_none());
        e.apply(Control::Remove(7));
        assert!(e.by_port[Side::Ext.index()][4000].is_none());
        assert!(e.flows.is_empty());
    }
}
