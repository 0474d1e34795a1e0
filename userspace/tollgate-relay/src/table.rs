//! A worker's flow table and the per-packet relay step.
//!
//! Each worker owns one [`MediaFlowTable`]; nothing in it is shared except the counters, which the
//! worker writes and the control plane reads. [`MediaFlowTable::relay`] is the whole per-packet
//! decision: port lookup, source check or latching, RTP/RTCP classification, SRTP transform in
//! place, and the egress addresses. It allocates nothing, takes no lock and makes no syscall.
//!
//! A worker relaying a burst splits that step in two around the SRTP transform:
//! [`MediaFlowTable::relay_front`] per packet, then the burst's SRTP jobs in one
//! [`tollgate_srtp::process_batch`] call against the table (it implements
//! [`tollgate_srtp::ContextSet`]), then [`MediaFlowTable::relay_back`] per packet; the result
//! is the same as relaying the packets one by one (tested in `burst_tests`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustc_hash::FxHashMap;
use tollgate_srtp::{Config as SrtpConfig, Context, ContextSet, Op};

use crate::flow::{DropReason, FlowCounters, LegSpec, MediaFlowSpec, RtpStats, Side, srtp_pos};
use crate::frame::{EgressHeader, Mac};
use crate::transform::{FlowCrypto, Transform};

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
    /// Statistics of the RTP arriving on this leg.
    rtp: RtpStats,
    /// `ssrc << 32 | seq >> 15` of the last RTP packet transformed from this leg
    /// ([`NO_MARK`] before the first): when it changes (new SSRC, or SEQ crossing a half of
    /// its space, so at least at every wrap) the SRTP position is looked up and published.
    srtp_mark: u64,
}

/// [`LegState::srtp_mark`] before any packet (no real mark reaches it).
const NO_MARK: u64 = u64::MAX;

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
            rtp: RtpStats::default(),
            srtp_mark: NO_MARK,
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
    /// A transform was missing from a new flow (a bug: it is built when missing).
    #[error("a transform was not built")]
    NotBuilt,
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

/// What to send after a successful [`MediaFlowTable::relay`].
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

/// A packet after [`MediaFlowTable::relay_front`]: checked and addressed, its SRTP transform
/// still to run.
#[derive(Debug, Clone, Copy)]
pub struct Fronted {
    /// What to send if the transform succeeds (`len` is still the input length).
    relayed: Relayed,
    /// The transform: the table's context id (see [`ContextSet`]) and the operation.
    srtp: Option<(usize, Op)>,
}

impl Fronted {
    /// The SRTP job this packet needs, as a context id of this table and an operation, for
    /// a [`tollgate_srtp::Job`]; `None` when the flow forwards it unchanged.
    #[inline]
    pub fn srtp_job(&self) -> Option<(usize, Op)> {
        self.srtp
    }

    /// The packet's length as received (the SRTP job's input length).
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.relayed.len
    }

    /// The learning or first-packet event the packet raised (reported even if it is dropped
    /// later).
    #[inline]
    pub fn event(&self) -> Option<FlowEvent> {
        self.relayed.event
    }
}

/// The [`ContextSet`] id of the SRTP context for packets arriving on `side` of the flow in
/// `slot`.
#[inline]
fn context_id(slot: u32, side: Side) -> usize {
    (slot as usize) << 1 | side.index()
}

/// The table hands out its flows' SRTP contexts by [`Fronted::srtp_job`] id, so a burst's jobs
/// run through [`tollgate_srtp::process_batch`] against the live contexts.
impl ContextSet for MediaFlowTable {
    #[inline]
    fn context(&mut self, id: usize) -> Option<&mut Context> {
        let side = if id & 1 == 0 { Side::Ext } else { Side::Int };
        match self.flows.get_mut(id >> 1)? {
            Some(f) => match &mut f.xform[side.index()] {
                Transform::Protect(c) | Transform::Unprotect(c) => Some(&mut **c),
                Transform::Forward => None,
            },
            None => None,
        }
    }
}

/// Where and when a packet arrived, as the worker read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The packet's source address.
    pub src: SocketAddr,
    /// The frame's source MAC (XDP path; `None` on the socket path). When a source is learned
    /// on a leg whose next hop is unresolved, replies go back to that MAC until the control
    /// plane resolves the neighbour (symmetric L2 path, true for direct peers and the usual
    /// router).
    pub src_mac: Option<Mac>,
    /// Monotonic nanoseconds when it was received.
    pub now_ns: u64,
    /// The XDP program already enforced the source (it is latched here if it differs);
    /// otherwise (socket path) the check and learning happen here.
    pub src_checked: bool,
}

/// A worker's flows, keyed by local relay port.
#[derive(Debug, Default)]
pub struct MediaFlowTable {
    ports: FxHashMap<PortKey, PortRef>,
    flows: Vec<Option<FlowState>>,
    free: Vec<u32>,
    by_id: FxHashMap<u64, u32>,
    srtp: SrtpConfig,
    /// Bumped by every install and remove: a [`Route`] taken before is looked up again.
    epoch: u64,
}

/// Where packets to one local address go, as found by [`MediaFlowTable::route`]: a burst looks each
/// packet's port up once, prefetches with it and relays with it. A route taken before the
/// table last changed (install or remove) is looked up again, so it is never stale.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    key: PortKey,
    at: PortRef,
    epoch: u64,
}

/// RFC 5761 §4: on a multiplexed port, payload types 64..=95 (with the marker bit: 192..=223)
/// are RTCP.
#[inline]
fn is_rtcp_pt(second_byte: u8) -> bool {
    (192..=223).contains(&second_byte)
}

impl MediaFlowTable {
    /// An empty table; SRTP contexts get `srtp` (replay window, SSRCs per context).
    pub fn new(srtp: SrtpConfig) -> MediaFlowTable {
        MediaFlowTable {
            srtp,
            ..MediaFlowTable::default()
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
    ///
    /// Builds the SRTP contexts here (the key schedule); a worker gets them built by the
    /// control thread instead ([`FlowCrypto::build`], [`MediaFlowTable::install_with`]).
    pub fn install(
        &mut self,
        spec: &MediaFlowSpec,
        counters: Arc<FlowCounters>,
        now_ns: u64,
    ) -> Result<(), InstallError> {
        self.check(spec)?;
        let crypto = FlowCrypto::build(spec, self.spec(spec.id), self.srtp)?;
        self.install_with(spec.clone(), crypto, counters, now_ns)
    }

    /// The spec flow `id` is installed with.
    pub fn spec(&self, id: u64) -> Option<&MediaFlowSpec> {
        let slot = *self.by_id.get(&id)?;
        self.flows.get(slot as usize)?.as_ref().map(|f| &f.spec)
    }

    /// Refuses a spec whose legs mix address families or whose ports another flow holds.
    fn check(&self, spec: &MediaFlowSpec) -> Result<(), InstallError> {
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
        Ok(())
    }

    /// [`MediaFlowTable::install`] with the transforms already built ([`FlowCrypto::build`] for
    /// `spec`, on the control thread): links them in and runs no key schedule, unless `crypto`
    /// was built against another previous spec than the one this table holds (a direction it
    /// did not build and this table cannot keep is then built here, as `install` would).
    pub fn install_with(
        &mut self,
        spec: MediaFlowSpec,
        mut crypto: FlowCrypto,
        counters: Arc<FlowCounters>,
        now_ns: u64,
    ) -> Result<(), InstallError> {
        self.check(&spec)?;
        // The direction(s) this table has to build itself: none when `crypto` was built
        // against the spec it holds. Done before the old state is touched, so a failure leaves
        // the installed flow as it was.
        let old_spec = self.spec(spec.id);
        for side in [Side::Ext, Side::Int] {
            let i = side.index();
            let keep = old_spec.is_some_and(|o| o.transform(side) == spec.transform(side));
            if keep {
                crypto.xform[i] = None;
            } else if crypto.xform[i].is_none() {
                crypto.xform[i] = Some(Transform::new(
                    spec.transform(side),
                    spec.resume[i],
                    self.srtp,
                )?);
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        let old = self.by_id.get(&spec.id).copied().and_then(|slot| {
            self.unindex(slot);
            self.flows[slot as usize].take().map(|f| (slot, f))
        });
        let (slot, state) = match old {
            Some((slot, mut f)) => {
                for side in [Side::Ext, Side::Int] {
                    let i = side.index();
                    if let Some(x) = crypto.xform[i].take() {
                        f.xform[i] = x;
                        f.xform[i].publish_resume(spec.resume[i], &counters.sides[i]);
                    }
                    let (ol, nl) = (f.spec.leg(side), spec.leg(side));
                    let keep_learned = ol.remote_rtp == nl.remote_rtp
                        && ol.remote_rtcp == nl.remote_rtcp
                        && ol.local_rtp == nl.local_rtp
                        && ol.local_rtcp == nl.local_rtcp;
                    let mut leg = LegState::new(nl, now_ns);
                    leg.rtp = f.legs[i].rtp;
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
                f.spec = spec;
                f.counters = counters;
                (slot, f)
            }
            None => {
                let [ext, int] = crypto.xform;
                let (Some(ext), Some(int)) = (ext, int) else {
                    // Unreachable: both were filled in above for a new flow.
                    return Err(InstallError::NotBuilt);
                };
                let state = FlowState {
                    legs: [
                        LegState::new(&spec.ext, now_ns),
                        LegState::new(&spec.int, now_ns),
                    ],
                    xform: [ext, int],
                    counters,
                    spec,
                };
                for (i, x) in state.xform.iter().enumerate() {
                    x.publish_resume(state.spec.resume[i], &state.counters.sides[i]);
                }
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
        let id = state.spec.id;
        self.flows[slot as usize] = Some(state);
        self.by_id.insert(id, slot);
        self.index(slot);
        Ok(())
    }

    fn index(&mut self, slot: u32) {
        let Some(Some(f)) = self.flows.get(slot as usize) else {
            return;
        };
        for side in [Side::Ext, Side::Int] {
            let l = f.spec.leg(side);
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
        if let Some(Some(f)) = self.flows.get(slot as usize) {
            for (_, a) in f.spec.local_ports() {
                self.ports.remove(&PortKey::of(a));
            }
        }
    }

    /// Removes a flow; returns whether it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.by_id.remove(&id) else {
            return false;
        };
        self.epoch = self.epoch.wrapping_add(1);
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

    /// Looks up where packets to `local` go, for [`MediaFlowTable::prefetch`] and
    /// [`MediaFlowTable::relay_routed`]; `None` when no flow has the port.
    #[inline]
    pub fn route(&self, local: SocketAddr) -> Option<Route> {
        let key = PortKey::of(local);
        let at = *self.ports.get(&key)?;
        Some(Route {
            key,
            at,
            epoch: self.epoch,
        })
    }

    /// The route's port reference, looked up again if the table changed since it was taken.
    #[inline]
    fn current(&self, r: &Route) -> Option<PortRef> {
        if r.epoch == self.epoch {
            Some(r.at)
        } else {
            self.ports.get(&r.key).copied()
        }
    }

    /// Hints the CPU to load the state [`MediaFlowTable::relay_routed`] will touch for a packet on
    /// `route`: the flow's legs and counters and the SRTP context of that side. A worker with
    /// more flows than fit in cache calls it for every packet of a burst before relaying the
    /// burst, so the misses of the burst's packets overlap.
    #[inline]
    pub fn prefetch(&self, route: &Route) {
        let Some(pr) = self.current(route) else {
            return;
        };
        let Some(Some(f)) = self.flows.get(pr.slot as usize) else {
            return;
        };
        for leg in &f.legs {
            prefetch_obj(leg);
        }
        prefetch_obj(&*f.counters);
        if let Transform::Protect(c) | Transform::Unprotect(c) = &f.xform[pr.side.index()] {
            c.prefetch();
        }
    }

    /// Relays one packet that arrived at `local` from `src`: `buf[..len]` is the UDP payload and
    /// `buf[len..]` the tailroom for the SRTP tag. On success the transformed payload is in
    /// `buf[..Relayed::len]`; the caller sends it and then calls [`MediaFlowTable::sent`] or
    /// [`MediaFlowTable::dropped`]. On failure the drop is already counted.
    ///
    /// `arrival` says where from and when (see [`Arrival`]).
    #[inline]
    pub fn relay(
        &mut self,
        local: SocketAddr,
        arrival: Arrival,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Relayed, DropReason> {
        let Some(route) = self.route(local) else {
            return Err(DropReason::NoFlow);
        };
        self.relay_routed(&route, arrival, buf, len)
    }

    /// [`MediaFlowTable::relay`] for a packet whose port was already looked up with
    /// [`MediaFlowTable::route`] (one hash lookup per packet instead of two): the two halves
    /// of [`MediaFlowTable::relay_front`] and [`MediaFlowTable::relay_back`] with this packet's
    /// SRTP transform alone in between.
    #[inline]
    pub fn relay_routed(
        &mut self,
        route: &Route,
        arrival: Arrival,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Relayed, DropReason> {
        let front = self.relay_front(route, arrival, buf, len)?;
        let outcome = front
            .srtp
            .map(|(id, op)| match ContextSet::context(self, id) {
                Some(c) => c.apply(op, buf, len),
                None => Err(tollgate_srtp::Error::NoContext(id)),
            });
        self.relay_back(&front, outcome, buf)
    }

    /// The first half of relaying one packet, everything before its SRTP transform: flow,
    /// RTP/RTCP classification, source check or latching, receive statistics, egress
    /// addresses. A worker runs it for every packet of a burst, in arrival order, then the
    /// burst's SRTP jobs together ([`Fronted::srtp_job`], through [`tollgate_srtp::process_batch`]
    /// over this table, which interleaves the packets' crypto across flows), then
    /// [`MediaFlowTable::relay_back`] for each. The table must not change in between (the
    /// worker applies control messages between bursts). On failure the drop is already counted.
    ///
    /// Within one burst every packet of a flow that has relayed nothing yet raises a
    /// first-packet event (the count of relayed packets moves in `sent`, after the burst).
    #[inline]
    pub fn relay_front(
        &mut self,
        route: &Route,
        arrival: Arrival,
        buf: &[u8],
        len: usize,
    ) -> Result<Fronted, DropReason> {
        let Arrival {
            src,
            src_mac,
            now_ns,
            src_checked,
        } = arrival;
        let Some(pr) = self.current(route) else {
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
            if !rtcp {
                leg.rtp.packet(buf, now_ns, ctr);
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
        let op = match (&f.xform[pr.side.index()], rtcp) {
            (Transform::Forward, _) => None,
            (Transform::Protect(_), false) => Some(Op::ProtectRtp),
            (Transform::Protect(_), true) => Some(Op::ProtectRtcp),
            (Transform::Unprotect(_), false) => Some(Op::UnprotectRtp),
            (Transform::Unprotect(_), true) => Some(Op::UnprotectRtcp),
        };
        Ok(Fronted {
            relayed: Relayed {
                len,
                header,
                l2_resolved: out.next_hop_mac.is_some(),
                rtcp,
                event,
                slot: pr.slot,
                side: pr.side,
            },
            srtp: op.map(|op| (context_id(pr.slot, pr.side), op)),
        })
    }

    /// The second half of relaying a packet after its SRTP transform: `outcome` is the
    /// transform's result (`None` for a flow that forwards without SRTP) and `buf` the packet
    /// as it now stands. Publishes the stream's SRTP position for a restart and returns what
    /// to send; an SRTP refusal is counted as the flow's drop.
    #[inline]
    pub fn relay_back(
        &mut self,
        front: &Fronted,
        outcome: Option<Result<usize, tollgate_srtp::Error>>,
        buf: &[u8],
    ) -> Result<Relayed, DropReason> {
        let r = front.relayed;
        let Some(Some(f)) = self.flows.get_mut(r.slot as usize) else {
            return Err(DropReason::NoFlow);
        };
        let ctr = &f.counters.sides[r.side.index()];
        let len = match outcome {
            None => r.len,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                let reason = DropReason::from_srtp(e.kind());
                ctr.dropped(reason);
                return Err(reason);
            }
        };
        // Publish the SRTP position for a restart: a compare per RTP packet, a stream lookup
        // only when the SSRC or the half of the SEQ space changes, and per protected RTCP.
        let xform = &f.xform[r.side.index()];
        if let (Transform::Protect(c) | Transform::Unprotect(c), Some(h)) = (xform, buf.get(..12)) {
            if !r.rtcp {
                let ssrc = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                let mark = u64::from(ssrc) << 32 | u64::from(h[2] >> 7);
                let leg = &mut f.legs[r.side.index()];
                if mark != leg.srtp_mark {
                    leg.srtp_mark = mark;
                    if let Some((roc, _)) = c.rtp_index(ssrc) {
                        let pos = srtp_pos(ssrc, roc);
                        if ctr.srtp_pos.load(Ordering::Relaxed) != pos {
                            ctr.srtp_pos.store(pos, Ordering::Relaxed);
                        }
                    }
                }
            } else if let Transform::Protect(c) = xform {
                let ssrc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                if let Some(i) = c.srtcp_tx_index(ssrc) {
                    ctr.srtcp_tx.store(u64::from(i), Ordering::Relaxed);
                }
            }
        }
        Ok(Relayed { len, ..r })
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

/// A socket-path arrival (no MAC), for the tests.
#[cfg(test)]
fn arrival(src: SocketAddr, now_ns: u64, src_checked: bool) -> Arrival {
    Arrival {
        src,
        src_mac: None,
        now_ns,
        src_checked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{LegSpec, TransformSpec};
    use tollgate_srtp::{KeyMaterial, Profile};

    pub(super) fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn leg(local: &str, rtcp: Option<&str>, remote: Option<&str>, learn: u64) -> LegSpec {
        LegSpec {
            local_rtp: sa(local),
            local_rtcp: rtcp.map(sa),
            remote_rtp: remote.map(sa),
            remote_rtcp: None,
            learn_window_ns: learn,
            nic_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            next_hop_mac: Some([2, 0, 0, 0, 0, 9]),
        }
    }

    fn key(b: u8) -> KeyMaterial {
        KeyMaterial::generate(Profile::Aes128CmHmacSha1_80, |k| k.fill(b))
    }

    pub(super) fn spec(id: u64, xform: (TransformSpec, TransformSpec)) -> MediaFlowSpec {
        MediaFlowSpec {
            id,
            ext: leg(
                "10.0.1.1:30000",
                Some("10.0.1.1:30001"),
                Some("10.0.1.2:4000"),
                0,
            ),
            int: leg("10.0.2.1:30000", None, Some("10.0.2.2:5000"), 0),
            ext_to_int: xform.0,
            int_to_ext: xform.1,
            resume: [None, None],
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x11];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn rtcp() -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6, 0, 0, 0x11, 0x11];
        p.extend_from_slice(&[0; 20]);
        p
    }

    fn relay(
        t: &mut MediaFlowTable,
        local: &str,
        src: &str,
        pkt: &[u8],
        now: u64,
        checked: bool,
    ) -> Result<(Relayed, Vec<u8>), DropReason> {
        let mut buf = pkt.to_vec();
        buf.resize(pkt.len() + 32, 0);
        let r = t.relay(
            sa(local),
            arrival(sa(src), now, checked),
            &mut buf,
            pkt.len(),
        )?;
        t.sent(&r, now);
        buf.truncate(r.len);
        Ok((r, buf))
    }

    #[test]
    fn forwards_rtp_and_rtcp_to_the_right_ports() {
        let mut t = MediaFlowTable::default();
        let c = Arc::new(FlowCounters::default());
        t.install(
            &spec(1, (TransformSpec::Forward, TransformSpec::Forward)),
            Arc::clone(&c),
            0,
        )
        .unwrap();
        assert_eq!(t.port_count(), 3);
        // ext RTP -> int (mux): from the int RTP port to the peer's RTP address.
        let (r, out) = relay(&mut t, "10.0.1.1:30000", "10.0.1.2:4000", &rtp(1), 5, false).unwrap();
        assert_eq!(
            (r.header.src, r.header.dst),
            (sa("10.0.2.1:30000"), sa("10.0.2.2:5000"))
        );
        assert_eq!(out, rtp(1));
        assert_eq!(
            r.event.map(|e| e.learned),
            Some(false),
            "first packet reported"
        );
        // ext RTCP (separate port, from RTP port + 1) -> int mux port.
        let (r, _) = relay(&mut t, "10.0.1.1:30001", "10.0.1.2:4001", &rtcp(), 6, false).unwrap();
        assert!(r.rtcp);
        assert_eq!(
            (r.header.src, r.header.dst),
            (sa("10.0.2.1:30000"), sa("10.0.2.2:5000"))
        );
        // int mux port, RTCP by payload type -> ext RTCP port to gateway RTP port + 1.
        let (r, _) = relay(&mut t, "10.0.2.1:30000", "10.0.2.2:5000", &rtcp(), 7, false).unwrap();
        assert_eq!(
            (r.header.src, r.header.dst),
            (sa("10.0.1.1:30001"), sa("10.0.1.2:4001"))
        );
        let s = c.sides[0].snapshot();
        assert_eq!((s.packets, s.rtcp, s.last_seen_ns), (2, 1, 6));
    }

    #[test]
    fn source_check_learning_and_no_remote() {
        let mut t = MediaFlowTable::default();
        let c = Arc::new(FlowCounters::default());
        let mut s = spec(2, (TransformSpec::Forward, TransformSpec::Forward));
        s.ext.remote_rtp = None;
        s.ext.learn_window_ns = 1000;
        t.install(&s, Arc::clone(&c), 100).unwrap();
        // int -> ext before the gateway's address is known: nowhere to send.
        assert_eq!(
            relay(
                &mut t,
                "10.0.2.1:30000",
                "10.0.2.2:5000",
                &rtp(1),
                150,
                false
            )
            .unwrap_err(),
            DropReason::NoRemote
        );
        // A wrong source on int (no learning there) is refused.
        assert_eq!(
            relay(
                &mut t,
                "10.0.2.1:30000",
                "10.0.2.9:5000",
                &rtp(1),
                150,
                false
            )
            .unwrap_err(),
            DropReason::Source
        );
        // The gateway's first packet inside the window is learned...
        let (r, _) = relay(
            &mut t,
            "10.0.1.1:30000",
            "192.0.2.7:7000",
            &rtp(1),
            200,
            false,
        )
        .unwrap();
        assert_eq!(
            r.event.map(|e| (e.learned, e.source)),
            Some((true, sa("192.0.2.7:7000")))
        );
        assert_eq!(
            t.remotes(2, Side::Ext).unwrap().0,
            Some(sa("192.0.2.7:7000"))
        );
        // ...and now int -> ext goes there.
        let (r, _) = relay(
            &mut t,
            "10.0.2.1:30000",
            "10.0.2.2:5000",
            &rtp(2),
            210,
            false,
        )
        .unwrap();
        assert_eq!(r.header.dst, sa("192.0.2.7:7000"));
        // Learning happens once: another source is refused.
        assert_eq!(
            relay(
                &mut t,
                "10.0.1.1:30000",
                "192.0.2.8:7000",
                &rtp(2),
                220,
                false
            )
            .unwrap_err(),
            DropReason::Source
        );
        // On the XDP path the program already checked: a new source is latched.
        relay(
            &mut t,
            "10.0.1.1:30000",
            "192.0.2.8:7000",
            &rtp(3),
            230,
            true,
        )
        .unwrap();
        let snap = c.sides[1].snapshot();
        assert_eq!(
            (
                snap.drop(DropReason::NoRemote),
                snap.drop(DropReason::Source)
            ),
            (1, 1)
        );
        assert_eq!(c.sides[0].snapshot().drop(DropReason::Source), 1);
    }

    #[test]
    fn srtp_round_trip_and_refusals_counted() {
        let (k1, k2) = (key(1), key(2));
        let mut a = MediaFlowTable::default();
        let ca = Arc::new(FlowCounters::default());
        a.install(
            &spec(
                3,
                (
                    TransformSpec::Protect(k1.clone()),
                    TransformSpec::Unprotect(k2.clone()),
                ),
            ),
            Arc::clone(&ca),
            0,
        )
        .unwrap();
        // A mirror table plays the internal peer: unprotects with k1, protects with k2.
        let mut b = MediaFlowTable::default();
        b.install(
            &spec(
                3,
                (TransformSpec::Unprotect(k1), TransformSpec::Protect(k2)),
            ),
            Arc::new(FlowCounters::default()),
            0,
        )
        .unwrap();
        let (_, srtp) =
            relay(&mut a, "10.0.1.1:30000", "10.0.1.2:4000", &rtp(9), 1, false).unwrap();
        assert_eq!(srtp.len(), rtp(9).len() + 10);
        let (_, plain) = relay(&mut b, "10.0.1.1:30000", "10.0.1.2:4000", &srtp, 1, false).unwrap();
        assert_eq!(plain, rtp(9));
        // The reverse: b protects, a unprotects; a replay and a flipped bit are refused.
        let (_, s2) = relay(&mut b, "10.0.2.1:30000", "10.0.2.2:5000", &rtp(4), 1, false).unwrap();
        let (_, p2) = relay(&mut a, "10.0.2.1:30000", "10.0.2.2:5000", &s2, 2, false).unwrap();
        assert_eq!(p2, rtp(4));
        assert_eq!(
            relay(&mut a, "10.0.2.1:30000", "10.0.2.2:5000", &s2, 3, false).unwrap_err(),
            DropReason::Replayed
        );
        let (_, mut s3) =
            relay(&mut b, "10.0.2.1:30000", "10.0.2.2:5000", &rtp(5), 1, false).unwrap();
        s3[30] ^= 4;
        assert_eq!(
            relay(&mut a, "10.0.2.1:30000", "10.0.2.2:5000", &s3, 4, false).unwrap_err(),
            DropReason::AuthFailed
        );
        let snap = ca.sides[1].snapshot();
        assert_eq!(
            (
                snap.packets,
                snap.drop(DropReason::Replayed),
                snap.drop(DropReason::AuthFailed)
            ),
            (1, 1, 1)
        );
        // Garbage is refused without panicking.
        for junk in [&[][..], &[0x80], &[0x00; 40][..], &[0x80; 5][..]] {
            assert!(relay(&mut a, "10.0.2.1:30000", "10.0.2.2:5000", junk, 5, false).is_err());
        }
    }

    #[test]
    fn update_keeps_crypto_state_and_remove_frees_ports() {
        let k = key(7);
        let mut t = MediaFlowTable::default();
        let c = Arc::new(FlowCounters::default());
        let s = spec(
            4,
            (TransformSpec::Protect(k.clone()), TransformSpec::Forward),
        );
        t.install(&s, Arc::clone(&c), 0).unwrap();
        let (_, first) =
            relay(&mut t, "10.0.1.1:30000", "10.0.1.2:4000", &rtp(1), 1, false).unwrap();
        // Re-INVITE: the internal peer moved; the key did not change.
        let mut s2 = s.clone();
        s2.int.remote_rtp = Some(sa("10.0.2.3:6000"));
        t.install(&s2, Arc::clone(&c), 2).unwrap();
        // Same context (state kept, not re-keyed): protecting the same index again is refused
        // as a replay, exactly as libsrtp refuses it.
        assert_eq!(
            relay(&mut t, "10.0.1.1:30000", "10.0.1.2:4000", &rtp(1), 3, false).unwrap_err(),
            DropReason::Replayed
        );
        let (r, second) =
            relay(&mut t, "10.0.1.1:30000", "10.0.1.2:4000", &rtp(2), 3, false).unwrap();
        assert_eq!(r.header.dst, sa("10.0.2.3:6000"));
        assert_eq!(second.len(), first.len());
        // Another flow may not take its ports.
        let clash = spec(5, (TransformSpec::Forward, TransformSpec::Forward));
        assert!(matches!(
            t.install(&clash, Arc::new(FlowCounters::default()), 4),
            Err(InstallError::PortInUse(..))
        ));
        assert!(t.remove(4));
        assert_eq!((t.len(), t.port_count()), (0, 0));
        t.install(&clash, Arc::new(FlowCounters::default()), 5)
            .unwrap();
        assert_eq!(
            relay(&mut t, "10.0.9.9:1", "10.0.1.2:4000", &rtp(1), 6, false).unwrap_err(),
            DropReason::NoFlow
        );
    }

    #[test]
    fn routes_follow_the_table_across_changes() {
        let mut t = MediaFlowTable::default();
        let fwd = (TransformSpec::Forward, TransformSpec::Forward);
        let c1 = Arc::new(FlowCounters::default());
        t.install(&spec(1, fwd.clone()), Arc::clone(&c1), 0)
            .unwrap();
        assert!(t.route(sa("10.0.9.9:1")).is_none());
        let go = |t: &mut MediaFlowTable, r: &Route| {
            let mut buf = rtp(1);
            let len = buf.len();
            buf.resize(len + 32, 0);
            t.relay_routed(r, arrival(sa("10.0.1.2:4000"), 1, false), &mut buf, len)
        };
        let r = t.route(sa("10.0.1.1:30000")).unwrap();
        t.prefetch(&r);
        assert_eq!(
            go(&mut t, &r).unwrap().header.dst,
            sa("10.0.2.2:5000"),
            "same result as relay()"
        );
        // The flow goes away and another takes its slot with other ports: the old route must
        // not reach the new flow.
        assert!(t.remove(1));
        let mut other = spec(2, fwd.clone());
        other.ext.local_rtp = sa("10.0.1.1:40000");
        other.ext.local_rtcp = None;
        t.install(&other, Arc::new(FlowCounters::default()), 2)
            .unwrap();
        t.prefetch(&r);
        assert_eq!(go(&mut t, &r).unwrap_err(), DropReason::NoFlow);
        // The same ports come back under a new flow: the old route finds it again.
        assert!(t.remove(2));
        t.install(&spec(3, fwd), Arc::clone(&c1), 3).unwrap();
        assert_eq!(go(&mut t, &r).unwrap().header.dst, sa("10.0.2.2:5000"));
    }
}

#[cfg(test)]
mod resume_tests {
    use super::tests::{sa, spec};
    use super::*;
    use crate::flow::{SideSnapshot, SrtpResume, TransformSpec};
    use tollgate_srtp::{Context, ErrorKind, KeyMaterial, Profile};

    fn key(b: u8) -> KeyMaterial {
        KeyMaterial::generate(Profile::Aes128CmHmacSha1_80, |k| k.fill(b))
    }

    fn rtp_from(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn rtcp_from(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    /// Relays one packet arriving at `local` and returns what leaves.
    fn go(
        t: &mut MediaFlowTable,
        local: &str,
        src: &str,
        pkt: &[u8],
    ) -> Result<Vec<u8>, DropReason> {
        let mut buf = pkt.to_vec();
        buf.resize(pkt.len() + 32, 0);
        let r = t.relay(sa(local), arrival(sa(src), 1, false), &mut buf, pkt.len())?;
        t.sent(&r, 1);
        buf.truncate(r.len);
        Ok(buf)
    }

    const EXT_RTP: (&str, &str) = ("10.0.1.1:30000", "10.0.1.2:4000");
    const EXT_RTCP: (&str, &str) = ("10.0.1.1:30001", "10.0.1.2:4001");

    #[test]
    fn install_with_resume_protects_at_the_stored_roc() {
        const S: u32 = 0x1111;
        let k = key(3);
        let at = SrtpResume {
            ssrc: S,
            roc: 3,
            srtcp_index: 40,
        };
        let mut s = spec(
            10,
            (TransformSpec::Protect(k.clone()), TransformSpec::Forward),
        );
        // Side 1 is Forward: its resume is ignored.
        s.resume = [Some(at), Some(at)];
        let mut t = MediaFlowTable::default();
        let c = Arc::new(FlowCounters::default());
        t.install(&s, Arc::clone(&c), 0).unwrap();
        // Published at install, so a second restart before any packet still finds it.
        assert_eq!(c.sides[0].snapshot().srtp_resume(), Some(at));
        assert_eq!(c.sides[1].snapshot().srtp_resume(), None);
        // The first packet (SEQ >= 2^15) is protected at ROC 3: a receiver resumed there takes
        // it, a fresh one does not.
        let out = go(&mut t, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 60_000)).unwrap();
        let mut fresh = Context::new(&k, SrtpConfig::default()).unwrap();
        let mut b = out.clone();
        assert_eq!(
            fresh.unprotect_rtp(&mut b, out.len()).map_err(|e| e.kind()),
            Err(ErrorKind::AuthFailed)
        );
        let mut rx = Context::new(&k, SrtpConfig::default()).unwrap();
        rx.resume(S, 3, 0).unwrap();
        let mut b = out.clone();
        let n = rx.unprotect_rtp(&mut b, out.len()).unwrap();
        assert_eq!(&b[..n], &rtp_from(S, 60_000)[..]);
        assert_eq!(rx.rtp_index(S), Some((3, 60_000)));
        // SRTCP continues at 41, and the counters say so.
        let out = go(&mut t, EXT_RTCP.0, EXT_RTCP.1, &rtcp_from(S)).unwrap();
        let n = out.len();
        assert_eq!(&out[n - 14..n - 10], &[0x80, 0, 0, 41]);
        let mut b = out.clone();
        rx.unprotect_rtcp(&mut b, n).unwrap();
        let snap = c.sides[0].snapshot();
        assert_eq!(
            (snap.srtp_ssrc, snap.srtp_roc, snap.srtcp_tx),
            (Some(S), 3, 41)
        );
        // A re-key builds a new context: the new resume applies to it.
        let k2 = key(4);
        let mut s2 = s.clone();
        s2.ext_to_int = TransformSpec::Protect(k2.clone());
        s2.resume[0] = Some(SrtpResume {
            ssrc: S,
            roc: 9,
            srtcp_index: 0,
        });
        t.install(&s2, Arc::clone(&c), 2).unwrap();
        let out = go(&mut t, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 7)).unwrap();
        let mut rx2 = Context::new(&k2, SrtpConfig::default()).unwrap();
        rx2.resume(S, 9, 0).unwrap();
        let mut b = out.clone();
        assert!(rx2.unprotect_rtp(&mut b, out.len()).is_ok());
        let snap = c.sides[0].snapshot();
        assert_eq!((snap.srtp_ssrc, snap.srtp_roc), (Some(S), 9));
        // An update that keeps the key keeps the context: a resume there changes nothing.
        let mut s3 = s2.clone();
        s3.resume[0] = Some(SrtpResume::default());
        t.install(&s3, Arc::clone(&c), 3).unwrap();
        let out = go(&mut t, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 8)).unwrap();
        let mut b = out.clone();
        assert!(rx2.unprotect_rtp(&mut b, out.len()).is_ok());
    }

    #[test]
    fn contexts_built_off_the_table_relay_as_install_does() {
        const S: u32 = 0x4444;
        let at = SrtpResume {
            ssrc: S,
            roc: 2,
            srtcp_index: 9,
        };
        let mut s = spec(
            12,
            (
                TransformSpec::Protect(key(6)),
                TransformSpec::Unprotect(key(7)),
            ),
        );
        s.resume = [Some(at), None];
        let cfg = SrtpConfig::default();
        // One table builds its own contexts; the other gets them built elsewhere.
        let (mut a, mut b) = (MediaFlowTable::default(), MediaFlowTable::default());
        let (ca, cb) = (
            Arc::new(FlowCounters::default()),
            Arc::new(FlowCounters::default()),
        );
        a.install(&s, Arc::clone(&ca), 0).unwrap();
        let crypto = FlowCrypto::build(&s, None, cfg).unwrap();
        assert!(crypto.built(Side::Ext) && crypto.built(Side::Int));
        b.install_with(s.clone(), crypto, Arc::clone(&cb), 0)
            .unwrap();
        assert_eq!(
            cb.sides[0].snapshot().srtp_resume(),
            Some(at),
            "resume published"
        );
        let out_a = go(&mut a, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 60_000)).unwrap();
        let out_b = go(&mut b, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 60_000)).unwrap();
        assert_eq!(out_a, out_b, "same bytes, resumed at the same ROC");
        // An update that re-keys one direction builds only that one; the other keeps its
        // state (protecting the same packet again is a replay).
        let mut s2 = s.clone();
        s2.int_to_ext = TransformSpec::Unprotect(key(8));
        let crypto = FlowCrypto::build(&s2, b.spec(12), cfg).unwrap();
        assert!(!crypto.built(Side::Ext) && crypto.built(Side::Int));
        b.install_with(s2.clone(), crypto, Arc::clone(&cb), 1)
            .unwrap();
        assert_eq!(
            go(&mut b, EXT_RTP.0, EXT_RTP.1, &rtp_from(S, 60_000)).unwrap_err(),
            DropReason::Replayed
        );
        // Built against another previous spec than the table holds (the table missed an
        // update): the direction it lacks is built in place, the result is the same.
        let mut c = MediaFlowTable::default();
        let cc = Arc::new(FlowCounters::default());
        c.install(&s, Arc::clone(&cc), 0).unwrap();
        let crypto = FlowCrypto::build(&s2, Some(&s2), cfg).unwrap();
        assert!(!crypto.built(Side::Ext) && !crypto.built(Side::Int));
        c.install_with(s2.clone(), crypto, Arc::clone(&cc), 1)
            .unwrap();
        let mut fresh = MediaFlowTable::default();
        fresh
            .install(&s2, Arc::new(FlowCounters::default()), 0)
            .unwrap();
        let mut tx = Context::new(&key(8), cfg).unwrap();
        let mut p = rtp_from(0x77, 5);
        let n = p.len();
        p.resize(n + 32, 0);
        let n = tx.protect_rtp(&mut p, n).unwrap();
        p.truncate(n);
        const INT_RTP: (&str, &str) = ("10.0.2.1:30000", "10.0.2.2:5000");
        assert_eq!(
            go(&mut c, INT_RTP.0, INT_RTP.1, &p).unwrap(),
            go(&mut fresh, INT_RTP.0, INT_RTP.1, &p).unwrap(),
            "the new key is in use"
        );
        // A resume the context refuses fails the build, before any table is touched.
        let mut bad = s.clone();
        bad.resume[0] = Some(SrtpResume {
            srtcp_index: 1 << 31,
            ..at
        });
        assert!(FlowCrypto::build(&bad, None, cfg).is_err());
    }

    #[test]
    fn counters_publish_the_roc_after_a_wrap_and_the_ssrc() {
        let k = key(5);
        // `a` protects what arrives on ext; its mirror `b` unprotects it.
        let mut a = MediaFlowTable::default();
        let ca = Arc::new(FlowCounters::default());
        let fwd = TransformSpec::Forward;
        a.install(
            &spec(11, (TransformSpec::Protect(k.clone()), fwd.clone())),
            Arc::clone(&ca),
            0,
        )
        .unwrap();
        let mut b = MediaFlowTable::default();
        let cb = Arc::new(FlowCounters::default());
        b.install(
            &spec(11, (TransformSpec::Unprotect(k), fwd)),
            Arc::clone(&cb),
            0,
        )
        .unwrap();
        let pos = |c: &FlowCounters| {
            let s = c.sides[0].snapshot();
            (s.srtp_ssrc, s.srtp_roc)
        };
        assert_eq!(pos(&ca), (None, 0));
        let mut seq = 65_000u16;
        for i in 0..70_000u32 {
            let srtp = go(&mut a, EXT_RTP.0, EXT_RTP.1, &rtp_from(0x1111, seq)).unwrap();
            go(&mut b, EXT_RTP.0, EXT_RTP.1, &srtp).unwrap();
            if i == 0 || i == 535 {
                // Before the wrap (seq 65535 is packet 535).
                assert_eq!(pos(&ca), (Some(0x1111), 0), "packet {i}");
                assert_eq!(pos(&cb), (Some(0x1111), 0), "packet {i}");
            }
            if i == 536 {
                assert_eq!(pos(&ca), (Some(0x1111), 1), "wrap at packet {i}");
                assert_eq!(pos(&cb), (Some(0x1111), 1), "wrap at packet {i}");
            }
            seq = seq.wrapping_add(1);
        }
        // 70,000 packets from 65000: two wraps.
        assert_eq!(pos(&ca), (Some(0x1111), 2));
        assert_eq!(pos(&cb), (Some(0x1111), 2));
        // What the control plane stores resumes exactly where the stream stands.
        let snap = ca.sides[0].snapshot();
        assert_eq!(
            snap.srtp_resume(),
            Some(SrtpResume {
                ssrc: 0x1111,
                roc: 2,
                srtcp_index: 0
            })
        );
        // A new SSRC is published with its own ROC.
        let srtp = go(&mut a, EXT_RTP.0, EXT_RTP.1, &rtp_from(0x2222, 5)).unwrap();
        go(&mut b, EXT_RTP.0, EXT_RTP.1, &srtp).unwrap();
        assert_eq!(pos(&ca), (Some(0x2222), 0));
        assert_eq!(pos(&cb), (Some(0x2222), 0));
        // A forged packet is refused and publishes nothing.
        let mut forged = go(&mut a, EXT_RTP.0, EXT_RTP.1, &rtp_from(0x3333, 1)).unwrap();
        forged[40] ^= 1;
        assert_eq!(
            go(&mut b, EXT_RTP.0, EXT_RTP.1, &forged).unwrap_err(),
            DropReason::AuthFailed
        );
        assert_eq!(pos(&cb), (Some(0x2222), 0));
    }

    #[test]
    fn merge_keeps_the_latest_position() {
        let mut x = SideSnapshot {
            last_seen_ns: 10,
            srtp_ssrc: Some(1),
            srtp_roc: 4,
            srtcp_tx: 9,
            ..SideSnapshot::default()
        };
        let older = SideSnapshot {
            last_seen_ns: 5,
            srtp_ssrc: Some(2),
            srtp_roc: 1,
            srtcp_tx: 20,
            ..SideSnapshot::default()
        };
        x.merge(&older);
        assert_eq!((x.srtp_ssrc, x.srtp_roc, x.srtcp_tx), (Some(1), 4, 20));
        x.merge(&SideSnapshot::default());
        assert_eq!((x.srtp_ssrc, x.srtp_roc), (Some(1), 4));
        let mut none = SideSnapshot::default();
        none.merge(&older);
        assert_eq!(none.srtp_resume().map(|r| r.ssrc), Some(2));
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;
    use crate::flow::{LegSpec, TransformSpec};

    #[test]
    fn loss_and_jitter() {
        let leg = |l: &str, r: &str| LegSpec {
            local_rtp: l.parse().unwrap(),
            local_rtcp: None,
            remote_rtp: Some(r.parse().unwrap()),
            remote_rtcp: None,
            learn_window_ns: 0,
            nic_mac: [0; 6],
            vlan: None,
            next_hop_mac: None,
        };
        let spec = MediaFlowSpec {
            id: 1,
            ext: leg("10.0.1.1:1000", "10.0.1.2:2000"),
            int: leg("10.0.2.1:1000", "10.0.2.2:2000"),
            ext_to_int: TransformSpec::Forward,
            int_to_ext: TransformSpec::Forward,
            resume: [None, None],
        };
        let mut t = MediaFlowTable::default();
        let c = Arc::new(FlowCounters::default());
        t.install(&spec, Arc::clone(&c), 0).unwrap();
        let local: SocketAddr = "10.0.1.1:1000".parse().unwrap();
        let src: SocketAddr = "10.0.1.2:2000".parse().unwrap();
        // 100 packets every 20 ms, seq 65500.. across the wrap, 3 lost, perfectly paced.
        let mut sent = 0;
        for i in 0u64..100 {
            if [10, 50, 51].contains(&i) {
                continue;
            }
            let seq = 65500u16.wrapping_add(i as u16);
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&((i * 160) as u32).to_be_bytes());
            p.extend_from_slice(&[0; 160]);
            let n = p.len();
            p.resize(n + 16, 0);
            let r = t
                .relay(
                    local,
                    arrival(src, 1_000_000_000 + i * 20_000_000, false),
                    &mut p,
                    n,
                )
                .unwrap();
            t.sent(&r, 0);
            sent += 1;
        }
        let s = c.sides[0].snapshot();
        assert_eq!(s.packets, sent);
        assert_eq!(s.lost, 3);
        assert_eq!(s.jitter_ts, 0, "perfect pacing: no jitter");
    }
}

/// Prefetches the cache lines of `*v` (a hint: no effect on results).
#[inline(always)]
fn prefetch_obj<T>(v: &T) {
    tollgate_srtp::prefetch_bytes((v as *const T).cast(), std::mem::size_of::<T>());
}

#[cfg(test)]
mod burst_tests {
    //! A burst through `relay_front`, one `process_batch` across flows and `relay_back` gives
    //! exactly what relaying its packets one by one gives: bytes, refusals and counters.
    use super::tests::sa;
    use super::*;
    use crate::flow::{LegSpec, SideSnapshot, TransformSpec};
    use tollgate_srtp::{Context, Job, KeyMaterial, Profile};

    const FLOWS: u16 = 6;

    fn leg(local: SocketAddr, rtcp: SocketAddr, remote: SocketAddr) -> LegSpec {
        LegSpec {
            local_rtp: local,
            local_rtcp: Some(rtcp),
            remote_rtp: Some(remote),
            remote_rtcp: None,
            learn_window_ns: 0,
            nic_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            next_hop_mac: Some([2, 0, 0, 0, 0, 9]),
        }
    }

    fn key(flow: u16, dir: u8) -> KeyMaterial {
        let p = if flow % 3 == 2 {
            Profile::Aes128CmHmacSha1_32
        } else {
            Profile::Aes128CmHmacSha1_80
        };
        KeyMaterial::generate(p, |k| k.fill(flow as u8 * 2 + dir))
    }

    /// Flow `f`: gateway side plain RTP at 10.0.1.1:(30000+2f), internal side SRTP at
    /// 10.0.2.1:(30000+2f); flow 5 forwards both ways.
    fn table() -> MediaFlowTable {
        let mut t = MediaFlowTable::new(tollgate_srtp::Config::default());
        for f in 0..FLOWS {
            let p = 30000 + 2 * f;
            let xform = if f == 5 {
                (TransformSpec::Forward, TransformSpec::Forward)
            } else {
                (
                    TransformSpec::Protect(key(f, 0)),
                    TransformSpec::Unprotect(key(f, 1)),
                )
            };
            let spec = MediaFlowSpec {
                id: u64::from(f),
                ext: leg(
                    sa(&format!("10.0.1.1:{p}")),
                    sa(&format!("10.0.1.1:{}", p + 1)),
                    sa(&format!("10.0.1.2:{}", 4000 + 2 * f)),
                ),
                int: leg(
                    sa(&format!("10.0.2.1:{p}")),
                    sa(&format!("10.0.2.1:{}", p + 1)),
                    sa(&format!("10.0.2.2:{}", 5000 + 2 * f)),
                ),
                ext_to_int: xform.0,
                int_to_ext: xform.1,
                resume: [None, None],
            };
            t.install(&spec, Arc::new(FlowCounters::default()), u64::from(f))
                .unwrap();
        }
        t
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[(seq as u8) ^ 0x5a; 160]);
        p
    }

    fn rtcp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[7; 20]);
        p
    }

    /// One packet of a burst: where it arrives, from where, and its bytes.
    struct Pkt {
        local: SocketAddr,
        src: SocketAddr,
        buf: Vec<u8>,
        len: usize,
    }

    fn pkt(local: SocketAddr, src: SocketAddr, bytes: Vec<u8>) -> Pkt {
        let len = bytes.len();
        let mut buf = bytes;
        buf.resize(len + 64, 0);
        Pkt {
            local,
            src,
            buf,
            len,
        }
    }

    /// A mixed burst: gateway RTP and RTCP for every flow (out of flow order, a duplicate, a
    /// wrong source) and the internal side's SRTP/SRTCP made by each flow's peer (`peers`),
    /// one of them tampered with and one replayed.
    fn burst(round: u16, peers: &mut [Context]) -> Vec<Pkt> {
        let mut out = Vec::new();
        for k in 0..FLOWS * 2 {
            let f = (k * 5 + round) % FLOWS;
            let p = 30000 + 2 * f;
            let seq = round * 4 + k / FLOWS;
            let ssrc = 0x1000 + u32::from(f);
            let gw = sa(&format!("10.0.1.2:{}", 4000 + 2 * f));
            out.push(pkt(sa(&format!("10.0.1.1:{p}")), gw, rtp(ssrc, seq)));
            // The internal peer's SRTP toward the relay.
            let int = sa(&format!("10.0.2.2:{}", 5000 + 2 * f));
            let mut b = rtp(0x2000 + u32::from(f), seq);
            let n = b.len();
            b.resize(n + 64, 0);
            let len = match peers.get_mut(usize::from(f)) {
                Some(c) if f != 5 => c.protect_rtp(&mut b, n).unwrap(),
                _ => n,
            };
            b.truncate(len);
            if k == 3
                && let Some(x) = b.get_mut(20)
            {
                *x ^= 1;
            }
            out.push(pkt(sa(&format!("10.0.2.1:{p}")), int, b.clone()));
            if k == 4 {
                out.push(pkt(sa(&format!("10.0.2.1:{p}")), int, b));
            }
        }
        out.push(pkt(sa("10.0.1.1:30001"), sa("10.0.1.2:4001"), rtcp(0x1000)));
        out.push(pkt(
            sa("10.0.1.1:30002"),
            sa("10.0.1.2:9999"),
            rtp(0x1001, round * 4),
        ));
        let mut srtcp = rtcp(0x2001);
        let n = srtcp.len();
        srtcp.resize(n + 64, 0);
        let len = peers[1].protect_rtcp(&mut srtcp, n).unwrap();
        srtcp.truncate(len);
        out.push(pkt(sa("10.0.2.1:30003"), sa("10.0.2.2:5003"), srtcp));
        out
    }

    fn peers() -> Vec<Context> {
        (0..FLOWS)
            .map(|f| Context::new(&key(f, 1), tollgate_srtp::Config::default()).unwrap())
            .collect()
    }

    fn snapshot(t: &MediaFlowTable) -> Vec<SideSnapshot> {
        (0..u64::from(FLOWS))
            .flat_map(|id| {
                let slot = t.by_id[&id];
                let f = t.flows[slot as usize].as_ref().unwrap();
                [
                    f.counters.sides[0].snapshot(),
                    f.counters.sides[1].snapshot(),
                ]
            })
            .collect()
    }

    #[test]
    fn a_burst_relays_as_its_packets_one_by_one() {
        let (mut one, mut many) = (table(), table());
        let (mut peers_a, mut peers_b) = (peers(), peers());
        for round in 0..5u16 {
            let now = 1_000 + u64::from(round);
            // One by one.
            let mut single = Vec::new();
            for mut p in burst(round, &mut peers_a) {
                let r = one.relay(p.local, arrival(p.src, now, false), &mut p.buf, p.len);
                if let Ok(r) = &r {
                    one.sent(r, now);
                }
                single.push(r.map(|r| (r.header.dst, p.buf[..r.len].to_vec())));
            }
            // As a burst.
            let mut pkts = burst(round, &mut peers_b);
            let fronts: Vec<_> = pkts
                .iter()
                .map(|p| {
                    let route = many.route(p.local).ok_or(DropReason::NoFlow)?;
                    many.relay_front(&route, arrival(p.src, now, false), &p.buf, p.len)
                })
                .collect();
            let mut outcome = vec![None; pkts.len()];
            let mut jobs = Vec::new();
            let mut job_of = Vec::new();
            for (i, (p, f)) in pkts.iter_mut().zip(&fronts).enumerate() {
                if let Ok(fr) = f
                    && let Some((id, op)) = fr.srtp_job()
                {
                    job_of.push(i);
                    jobs.push(Job::new(id, op, &mut p.buf, fr.payload_len()));
                }
            }
            tollgate_srtp::process_batch(&mut many, &mut jobs);
            for (j, i) in jobs.iter().zip(job_of) {
                outcome[i] = Some(j.result);
            }
            drop(jobs);
            let batched: Vec<_> = pkts
                .iter()
                .zip(&fronts)
                .zip(outcome)
                .map(|((p, f), o)| {
                    let r = many.relay_back(f.as_ref().map_err(|e| *e)?, o, &p.buf)?;
                    many.sent(&r, now);
                    Ok((r.header.dst, p.buf[..r.len].to_vec()))
                })
                .collect();
            assert_eq!(single, batched, "round {round}");
            assert_eq!(snapshot(&one), snapshot(&many), "round {round}");
        }
        // The burst exercised refusals as well as relays.
        let s = snapshot(&one);
        let drops: u64 = s.iter().flat_map(|x| x.drops).sum();
        assert!(drops >= 10, "{s:?}");
    }
}
