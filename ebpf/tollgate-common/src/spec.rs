//! What the control plane asks the data plane to relay (feature `spec`): one media stream (one
//! SDP m-line) between a gateway-side leg and an internal-side leg, with the transform in each
//! direction and where each SRTP stream continues after a restart. The B2BUA writes these;
//! the relay (`tollgate-relay`) and the data plane carry them out.

use std::net::SocketAddr;

use tollgate_srtp::KeyMaterial;

use crate::Side;
use crate::wire::Mac;

/// What happens to packets arriving on one side before they leave on the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformSpec {
    /// Relay unchanged (RTP to RTP, or SRTP passed through end to end).
    Forward,
    /// SRTP/SRTCP-protect with this key (plain RTP in, SRTP out).
    Protect(KeyMaterial),
    /// SRTP/SRTCP-unprotect with this key (SRTP in, plain RTP out).
    Unprotect(KeyMaterial),
}

/// One leg (one side) of a media stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSpec {
    /// The relay's RTP address and port on this side.
    pub local_rtp: SocketAddr,
    /// The relay's RTCP address and port; `None` for rtcp-mux (RTCP on `local_rtp`).
    pub local_rtcp: Option<SocketAddr>,
    /// The peer's RTP address (from SDP), if known.
    pub remote_rtp: Option<SocketAddr>,
    /// The peer's RTCP address; `None` means `remote_rtp` if mux, else RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// The peer may send from another address than SDP said (NAT): the first source seen within
    /// this many nanoseconds of installation is learned, once. 0 disables learning.
    pub learn_window_ns: u64,
    /// Our MAC on this side's NIC (XDP path; ignored by the socket path).
    pub nic_mac: Mac,
    /// VLAN of this side's NIC, if tagged.
    pub vlan: Option<u16>,
    /// The next hop's MAC toward `remote_rtp`, if resolved (XDP path).
    pub next_hop_mac: Option<Mac>,
}

impl LegSpec {
    /// Whether RTCP is multiplexed on the RTP port.
    pub fn mux(&self) -> bool {
        self.local_rtcp.is_none()
    }

    /// The peer's RTCP address, derived as RFC 3605/5761 say when not explicit.
    pub fn remote_rtcp_addr(&self) -> Option<SocketAddr> {
        if let Some(a) = self.remote_rtcp {
            return Some(a);
        }
        let rtp = self.remote_rtp?;
        if self.mux() {
            return Some(rtp);
        }
        let mut a = rtp;
        a.set_port(rtp.port().checked_add(1)?);
        Some(a)
    }
}

/// Where an SRTP stream continues after a restart (RFC 3711 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SrtpResume {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Its rollover counter: the first RTP packet after the restart gets index
    /// `roc << 16 | seq`.
    pub roc: u32,
    /// The last SRTCP index sent for it (protecting); the next one sent is this + 1.
    pub srtcp_index: u32,
}

/// One media stream: both legs and the transform in each direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFlowSpec {
    /// Control-plane identifier, unique among installed flows.
    pub id: u64,
    /// Gateway-side leg.
    pub ext: LegSpec,
    /// Internal-side leg.
    pub int: LegSpec,
    /// Applied to packets from the gateway, before they go to the internal side.
    pub ext_to_int: TransformSpec,
    /// Applied to packets from the internal side, before they go to the gateway.
    pub int_to_ext: TransformSpec,
    /// Where the SRTP stream of packets arriving on each side (`[ext, int]`, as
    /// [`MediaFlowSpec::transform`]) continues after a restart. Applied whenever that side's
    /// SRTP context is built (a new flow, or a changed key: `tollgate_relay::FlowCrypto::build` on the
    /// control thread, or `tollgate_relay::MediaFlowTable::install`); ignored for
    /// [`TransformSpec::Forward`] and for a context kept as is. A position the context refuses
    /// (SRTCP index of 2^31 or more) fails the install.
    pub resume: [Option<SrtpResume>; 2],
}

impl MediaFlowSpec {
    /// The leg on `side`.
    pub fn leg(&self, side: Side) -> &LegSpec {
        match side {
            Side::Ext => &self.ext,
            Side::Int => &self.int,
        }
    }

    /// The transform for packets arriving on `side`.
    pub fn transform(&self, side: Side) -> &TransformSpec {
        match side {
            Side::Ext => &self.ext_to_int,
            Side::Int => &self.int_to_ext,
        }
    }

    /// Every local (relay) port this flow occupies, with its side.
    pub fn local_ports(&self) -> impl Iterator<Item = (Side, SocketAddr)> + '_ {
        [Side::Ext, Side::Int].into_iter().flat_map(move |s| {
            let l = self.leg(s);
            std::iter::once((s, l.local_rtp)).chain(l.local_rtcp.map(|a| (s, a)))
        })
    }
}
