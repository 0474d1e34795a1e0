//! From the SDP rewrite's [`MediaPlan`] to data-plane flows, and relay port bookkeeping.

use std::net::{IpAddr, SocketAddr};

use tollgate_common::spec::{LegSpec, MediaFlowSpec, TransformSpec};
use tollgate_sdp::{ActiveStream, MediaPlan, PeerMedia, PortRequest, RelayPorts, StreamPlan};

use crate::call::FlowSlot;
use crate::ports::PortPool;
use crate::types::{CallId, Output};

/// Both NICs' pools.
#[derive(Debug)]
pub(crate) struct Pools {
    pub(crate) ext: PortPool,
    pub(crate) int: PortPool,
    pub(crate) ext_ip: IpAddr,
    pub(crate) int_ip: IpAddr,
}

impl Pools {
    /// One RTP port on each NIC for a new stream; `None` (nothing held) if either is empty.
    pub(crate) fn alloc(&mut self, _req: &PortRequest) -> Option<RelayPorts> {
        let e = self.ext.alloc()?;
        let Some(i) = self.int.alloc() else {
            self.ext.release(e);
            return None;
        };
        Some(RelayPorts {
            gateway: SocketAddr::new(self.ext_ip, e),
            internal: SocketAddr::new(self.int_ip, i),
        })
    }

    /// Returns a stream's ports.
    pub(crate) fn release(&mut self, r: &RelayPorts) {
        self.ext.release(r.gateway.port());
        self.int.release(r.internal.port());
    }
}

fn leg(local: SocketAddr, mux: bool, peer: &PeerMedia, learn_window_ns: u64) -> LegSpec {
    LegSpec {
        local_rtp: local,
        local_rtcp: if mux {
            None
        } else {
            local
                .port()
                .checked_add(1)
                .map(|p| SocketAddr::new(local.ip(), p))
        },
        remote_rtp: peer.rtp,
        remote_rtcp: peer.rtcp,
        learn_window_ns,
        nic_mac: [0; 6],
        vlan: None,
        next_hop_mac: None,
    }
}

/// The flow for one active stream: ext leg toward the gateway (plain RTP), int leg toward the
/// internal peer (SRTP): packets from the gateway are protected with Tollgate's key, packets
/// from the internal side unprotected with the key the internal peer sends with.
pub(crate) fn flow_spec(id: u64, a: &ActiveStream, learn_window_ns: u64) -> MediaFlowSpec {
    let (ext_to_int, int_to_ext) = match &a.srtp {
        Some(k) => (
            TransformSpec::Protect(k.tollgate_send.clone()),
            TransformSpec::Unprotect(k.internal_send.clone()),
        ),
        None => (TransformSpec::Forward, TransformSpec::Forward),
    };
    MediaFlowSpec {
        id,
        ext: leg(a.relay.gateway, a.rtcp_mux, &a.gateway, learn_window_ns),
        int: leg(a.relay.internal, a.rtcp_mux, &a.internal, 0),
        ext_to_int,
        int_to_ext,
        resume: [None, None],
    }
}

/// Brings the installed flows of `call` in line with `plan`: installs new or changed streams
/// (same id: an update), removes streams no longer active.
pub(crate) fn sync_flows(
    call: CallId,
    flows: &mut Vec<FlowSlot>,
    flow_ids: &mut Vec<u64>,
    plan: &MediaPlan,
    learn_window_ns: u64,
    next_flow: &mut u64,
    out: &mut Vec<Output>,
) {
    for (index, stream) in plan.streams.iter().enumerate() {
        let pos = flows.iter().position(|f| f.index == index);
        match (stream, pos) {
            (StreamPlan::Active(a), Some(p)) => {
                let Some(slot) = flows.get_mut(p) else {
                    continue;
                };
                let spec = flow_spec(slot.spec.id, a, learn_window_ns);
                // A new key starts its SRTP stream afresh.
                if spec.ext_to_int != slot.spec.ext_to_int {
                    slot.srtp[0] = None;
                }
                if spec.int_to_ext != slot.spec.int_to_ext {
                    slot.srtp[1] = None;
                }
                if spec != slot.spec {
                    slot.spec = spec.clone();
                    out.push(Output::InstallMedia { call, spec });
                }
            }
            (StreamPlan::Active(a), None) => {
                let id = *next_flow;
                *next_flow = next_flow.wrapping_add(1);
                let spec = flow_spec(id, a, learn_window_ns);
                flow_ids.push(id);
                flows.push(FlowSlot {
                    index,
                    spec: spec.clone(),
                    srtp: [None, None],
                });
                out.push(Output::InstallMedia { call, spec });
            }
            (StreamPlan::Rejected { .. }, Some(p)) => {
                let slot = flows.remove(p);
                out.push(Output::RemoveMedia {
                    call,
                    flow: slot.spec.id,
                });
            }
            (StreamPlan::Rejected { .. }, None) => {}
        }
    }
}
