//! A worker's flow table and the per-packet relay step.
//!
//! Each worker owns one [`FlowTable`]; nothing in it is shared except the counters, which the
//! worker writes and the control plane reads. [`FlowTable::relay`] is the whole per-packet
//! decision: port lookup, source check or latching, RTP/RTCP classification, SRTP transform in
//! place, and the egress addresses. It allocates nothing, takes no lock and makes no syscall.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tollgate_srtp::{Config as SrtpConfig, Context};

use crate::flow::{DropReason, FlowCounters, LegSpec, MediaFlowSpec, Side, TransformSpec};
use crate::frame::{EgressHeader, Mac};

/// Compact hash key for a local socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PortKey {
    addr: u128,
    port: u16,
}

impl PortKey {
    #[inline]
    fn of(a: SocketAddr) -> PortKey {
        let addr = match a.ip() {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        PortKey {
            addr,
            port: a.port(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortKind {
    Rtp,
    Rtcp,
    Mux,
}

#[derive(Debug, Clone, Copy)]
struct PortRef {
    slot: u32,
    side: Side,
    kind: PortKind,
}

#[derive(Debug)]
enum Transform {
    Forward,
    Protect(Box<Context>),
    Unprotect(Box<Context>),
}

impl Transform {
    fn new(spec: &TransformSpec, cfg: SrtpConfig) -> Result<Transform, InstallError> {
        Ok(match spec {
            TransformSpec::Forward => Transform::Forward,
            TransformSpec::Protect(k) => Transform::Protect(Box::new(Context::new(k, cfg)?)),
            TransformSpec::Unprotect(k) => Transform::Unprotect(Box::new(Context::new(k, cfg)?)),
        })
    }

    #[inline]
    fn apply(&mut self, buf: &mut [u8], len: usize, rtcp: bool) -> Result<usize, DropReason> {
        let r = match (self, rtcp) {
            (Transform::Forward, _) => return Ok(len),
            (Transform::Protect(c), false) => c.protect_rtp(buf, len),
            (Transform::Protect(c), true) => c.protect_rtcp(buf, len),
            (Transform::Unprotect(c), false) => c.unprotect_rtp(buf, len),
            (Transform::Unprotect(c), true) => c.unprotect_rtcp(buf, len),
        };
        r.map_err(|e| DropReason::from_srtp(e.kind()))
    }
}

/// A leg's live state: addresses as configured, then as learned.
#[derive(Debug, Clone)]
struct LegState {
    local_rtp: SocketAddr,
    local_rtcp: SocketAddr,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    learn_until_ns: u64,
    learned_rtp: bool,
    learned_rtcp: bool,
    mux: bool,
    nic_mac: Mac,
    vlan: Option<u16>,
    next_hop_mac: Option<Mac>,
}

impl LegState {
    fn new(l: &LegSpec, now_ns: u64) -> LegState {
        LegState {
            local_rtp: l.local_rtp,
            local_rtcp: l.local_rtcp.unwrap_or(l.local_rtp),
            remote_rtp: l.remote_rtp,
            remote_rtcp: l.remote_rtcp_addr(),
            learn_until_ns: if l.learn_window_ns == 0 {
                0
            } else {
                now_ns.saturating_add(l.learn_window_ns)
            },
            learned_rtp: false,
            learned_rtcp: false,
            mux: l.mux(),
            nic_mac: l.nic_mac,
            vlan: l.vlan,
            next_hop_mac: l.next_hop_mac,
        }
    }
}

#[derive(Debug)]
struct FlowState {
    spec: MediaFlowSpec,
    legs: [LegState; 2],
    xform: [Transform; 2],
    counters: Arc<FlowCounters>,
}

/// Why a flow could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The SRTP context could not be created from the key material.
    #[error("SRTP context: {0}")]
    Srtp(#[from] tollgate_srtp::Error),
    /// A local port is already used by another flow.
    #[error("local port {0} is already used by flow {1}")]
    PortInUse(SocketAddr, u64),
    /// The flow's addresses mix IPv4 and IPv6 on one leg.
    #[error("leg {0} mixes address families")]
    MixedFamilies(&'static str),
}

/// A learning or first-packet event for the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEvent {
    /// Flow id.
    pub flow_id: u64,
    /// Side the packet arrived on.
    pub side: Side,
    /// Its source.
    pub source: SocketAddr,
    /// Whether the source was learned (latched), or this is only the first packet.
    pub learned: bool,
}

/// What to send after a successful [`FlowTable::relay`].
#[derive(Debug, Clone, Copy)]
pub struct Relayed {
    /// Payload length after the transform (it stays at the same offset).
    pub len: usize,
    /// Egress addressing (MACs are meaningful on the XDP path only).
    pub header: EgressHeader,
    /// Whether the next hop's MAC is known (`header.dst_mac` is zero otherwise).
    pub l2_resolved: bool,
    /// RTCP rather than RTP.
    pub rtcp: bool,
    /// Learning or first-packet event, if any.
    pub event: Option<FlowEvent>,
    slot: u32,
    side: Side,
}

/// A worker's flows, keyed by local relay port.
#[derive(Debug, Default)]
pub struct FlowTable {
    ports: FxHashMap<PortKey, PortRef>,
    flows: Vec<Option<FlowState>>,
    free: Vec<u32>,
    by_id: FxHashMap<u64, u32>,
    srtp: SrtpConfig,
}

/// RFC 5761 §4: on a multiplexed port, payload types 64..=95 (with the marker bit: 192..=223)
/// are RTCP.
#[inline]
fn is_rtcp_pt(second_byte: u8) -> bool {
    (192..=223).contains(&second_byte)
}

impl FlowTable {
    /// An empty table; SRTP contexts get `srtp` (replay window, SSRCs per context).
    pub fn new(srtp: SrtpConfig) -> FlowTable {
        FlowTable {
            srtp,
            ..FlowTable::default()
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Number of local ports indexed.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// Installs a flow, or updates the flow with the same id: crypto state is kept for a
    /// direction whose key is unchanged, learned addresses are kept for a leg whose SDP
    /// addresses are unchanged. `counters` is where this table counts the flow's packets.
    pub fn install(
        &mut self,
        spec: &MediaFlowSpec,
        counters: Arc<FlowCounters>,
        now_ns: u64,
    ) -> Result<(), InstallError> {
        for (name, l) in [("ext", &spec.ext), ("int", &spec.int)] {
            let v4 = l.local_rtp.is_ipv4();
            let mixed = l.local_rtcp.is_some_and(|a| a.is_ipv4() != v4)
                || l.remote_rtp.is_some_and(|a| a.is_ipv4() != v4)
                || l.remote_rtcp.is_some_and(|a| a.is_ipv4() != v4);
            if mixed {
                return Err(InstallError::MixedFamilies(name));
            }
        }
        for (_, a) in spec.local_ports() {
            if let Some(r) = self.ports.get(&PortKey::of(a)) {
                let owner = self.flows[r.slot as usize]
                    .as_ref()
                    .map_or(0, |f| f.spec.id);
                if owner != spec.id {
                    return Err(InstallError::PortInUse(a, owner));
                }
            }
        }
        let old = self.by_id.get(&spec.id).copied().and_then(|slot| {
            self.unindex(slot);
            self.flows[slot as usize].take().map(|f| (slot, f))
        });
        let (slot, state) = match old {
            Some((slot, mut f)) => {
                for side in [Side::Ext, Side::Int] {
                    let i = side.index();
                    if spec.transform(side) != f.spec.transform(side) {
                        f.xform[i] = Transform::new(spec.transform(side), self.srtp)?;
                    }
                    let (ol, nl) = (f.spec.leg(side), spec.leg(side));
                    let keep_learned = ol.remote_rtp == nl.remote_rtp
                        && ol.remote_rtcp == nl.remote_rtcp
                        && ol.local_rtp == nl.local_rtp
                        && ol.local_rtcp == nl.local_rtcp;
                    let mut leg = LegState::new(nl, now_ns);
                    if keep_learned {
                        let prev = &f.legs[i];
                        leg.remote_rtp = prev.remote_rtp;
                        leg.remote_rtcp = prev.remote_rtcp;
                        leg.learned_rtp = prev.learned_rtp;
                        leg.learned_rtcp = prev.learned_rtcp;
                        leg.learn_until_ns = prev.learn_until_ns;
                        if nl.next_hop_mac.is_none() {
                            leg.next_hop_mac = prev.next_hop_mac;
                        }
                    }
                    f.legs[i] = leg;
                }
                f.spec = spec.clone();
                f.counters = counters;
                (slot, f)
            }
            None => {
                let state = FlowState {
                    spec: spec.clone(),
                    legs: [
                        LegState::new(&spec.ext, now_ns),
                        LegState::new(&spec.int, now_ns),
                    ],
                    xform: [
                        Transform::new(&spec.ext_to_int, self.srtp)?,
                        Transform::new(&spec.int_to_ext, self.srtp)?,
                    ],
                    counters,
                };
                let slot = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.flows.push(None);
                        (self.flows.len() - 1) as u32
                    }
                };
                (slot, state)
            }
        };
        self.flows[slot as usize] = Some(state);
        self.by_id.insert(spec.id, slot);
        self.index(slot, spec);
        Ok(())
    }

    fn index(&mut self, slot: u32, spec: &MediaFlowSpec) {
        for side in [Side::Ext, Side::Int] {
            let l = spec.leg(side);
            match l.local_rtcp {
                None => {
                    self.ports.insert(
                        PortKey::of(l.local_rtp),
                        PortRef {
                            slot,
                            side,
                            kind: PortKind::Mux,
                        },
                    );
                }
                Some(rtcp) => {
                    self.ports.insert(
                        PortKey::of(l.local_rtp),
                        PortRef {
                            slot,
                            side,
                            kind: PortKind::Rtp,
                        },
                    );
                    self.ports.insert(
                        PortKey::of(rtcp),
                        PortRef {
                            slot,
                            side,
                            kind: PortKind::Rtcp,
                        },
                    );
                }
            }
        }
    }

    fn unindex(&mut self, slot: u32) {
        if let Some(f) = self.flows[slot as usize].as_ref() {
            let keys: Vec<PortKey> = f.spec.local_ports().map(|(_, a)| PortKey::of(a)).collect();
            for k in keys {
                self.ports.remove(&k);
            }
        }
    }

    /// Removes a flow; returns whether it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.by_id.remove(&id) else {
            return false;
        };
        self.unindex(slot);
        self.flows[slot as usize] = None;
        self.free.push(slot);
        true
    }

    /// Sets the next hop's MAC toward the peer on `side` of flow `id`.
    pub fn set_next_hop(&mut self, id: u64, side: Side, mac: Option<Mac>) -> bool {
        let Some(&slot) = self.by_id.get(&id) else {
            return false;
        };
        match self.flows[slot as usize].as_mut() {
            Some(f) => {
                f.legs[side.index()].next_hop_mac = mac;
                true
            }
            None => false,
        }
    }

    /// The peer addresses currently used for `side` of flow `id` (after learning).
    pub fn remotes(&self, id: u64, side: Side) -> Option<(Option<SocketAddr>, Option<SocketAddr>)> {
        let slot = *self.by_id.get(&id)?;
        let f = self.flows[slot as usize].as_ref()?;
        let l = &f.legs[side.index()];
        Some((l.remote_rtp, l.remote_rtcp))
    }

    /// Relays one packet that arrived at `local` from `src`: `buf[..len]` is the UDP payload and
    /// `buf[len..]` the tailroom for the SRTP tag. On success the transformed payload is in
    /// `buf[..Relayed::len]`; the caller sends it and then calls [`FlowTable::sent`] or
    /// [`FlowTable::dropped`]. On failure the drop is already counted.
    ///
    /// `src_checked`: the XDP program already enforced the source (it is latched here if it
    /// differs); otherwise (socket path) the check and learning happen here.
    /// `src_mac`: the frame's source MAC (XDP path). When a source is learned on a leg whose
    /// next hop is unresolved, replies go back to that MAC until the control plane resolves
    /// the neighbour (symmetric L2 path, true for direct peers and the usual router).
    #[allow(clippy::too_many_arguments)] // reason: the per-packet inputs, kept as plain values.
    #[inline]
    pub fn relay(
        &mut self,
        local: SocketAddr,
        src: SocketAddr,
        src_mac: Option<Mac>,
        buf: &mut [u8],
        len: usize,
        now_ns: u64,
        src_checked: bool,
    ) -> Result<Relayed, DropReason> {
        let Some(&pr) = self.ports.get(&PortKey::of(local)) else {
            return Err(DropReason::NoFlow);
        };
        let Some(Some(f)) = self.flows.get_mut(pr.slot as usize) else {
            return Err(DropReason::NoFlow);
        };
        let ctr = &f.counters.sides[pr.side.index()];
        let fail = |r: DropReason| {
            ctr.dropped(r);
            Err(r)
        };
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return fail(DropReason::NotRtp);
        };
        let rtcp = match pr.kind {
            PortKind::Rtp => false,
            PortKind::Rtcp => true,
            PortKind::Mux => is_rtcp_pt(b1),
        };
        if b0 >> 6 != 2 || len < if rtcp { 8 } else { 12 } || len > buf.len() {
            return fail(DropReason::NotRtp);
        }

        // Source check / latching on the ingress leg.
        let mut event = None;
        let first = ctr.packets.load(std::sync::atomic::Ordering::Relaxed) == 0;
        {
            let leg = &mut f.legs[pr.side.index()];
            let (expected, learned) = if rtcp {
                (&mut leg.remote_rtcp, &mut leg.learned_rtcp)
            } else {
                (&mut leg.remote_rtp, &mut leg.learned_rtp)
            };
            if *expected != Some(src) {
                let may_learn = src_checked || (!*learned && now_ns < leg.learn_until_ns);
                if !may_learn {
                    return fail(DropReason::Source);
                }
                *expected = Some(src);
                *learned = true;
                if leg.mux {
                    // One port for both: RTP and RTCP come from the same place.
                    leg.remote_rtp = Some(src);
                    leg.remote_rtcp = Some(src);
                }
                event = Some(FlowEvent {
                    flow_id: f.spec.id,
                    side: pr.side,
                    source: src,
                    learned: true,
                });
            } else if first {
                event = Some(FlowEvent {
                    flow_id: f.spec.id,
                    side: pr.side,
                    source: src,
                    learned: false,
                });
            }
            if leg.next_hop_mac.is_none() {
                leg.next_hop_mac = src_mac;
            }
        }

        let out = &f.legs[pr.side.other().index()];
        let (from, to) = if rtcp {
            (out.local_rtcp, out.remote_rtcp)
        } else {
            (out.local_rtp, out.remote_rtp)
        };
        let Some(to) = to else {
            return fail(DropReason::NoRemote);
        };
        let header = EgressHeader {
            src_mac: out.nic_mac,
            dst_mac: out.next_hop_mac.unwrap_or([0; 6]),
            vlan: out.vlan,
            src: from,
            dst: to,
        };
        let l2_resolved = out.next_hop_mac.is_some();
        let new_len = match f.xform[pr.side.index()].apply(buf, len, rtcp) {
            Ok(n) => n,
            Err(r) => return fail(r),
        };
        Ok(Relayed {
            len: new_len,
            header,
            l2_resolved,
            rtcp,
            event,
            slot: pr.slot,
            side: pr.side,
        })
    }

    /// Counts a relayed packet as sent.
    #[inline]
    pub fn sent(&self, r: &Relayed, now_ns: u64) {
        if let Some(Some(f)) = self.flows.get(r.slot as usize) {
            f.counters.sides[r.side.index()].relayed(r.len, r.rtcp, now_ns);
        }
    }

    /// Counts a relayed packet as dropped after all (no next hop, TX ring full).
    #[inline]
    pub fn dropped(&self, r: &Relayed, reason: DropReason) {
        if let Some(Some(f)) = self.flows.get(r.slot as usize) {
            f.counters.sides[r.side.index()].dropped(reason);
        }
    }
}
