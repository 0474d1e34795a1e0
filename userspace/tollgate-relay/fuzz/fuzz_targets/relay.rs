//! Frames off the wire through the relay core: the Ethernet/IP/UDP parser, then the flow
//! table (source check, RTP/RTCP classification, SRTP unprotect and protect, egress header).
//! Nothing may panic, and an egress header must always fit in front of the payload it was
//! computed for.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tollgate_relay::frame::{self, EgressHeader};
use tollgate_relay::{Arrival, FlowCounters, LegSpec, MediaFlowSpec, MediaFlowTable, TransformSpec};
use tollgate_srtp::{KeyMaterial, Profile};

fn leg(local: &str, rtcp: Option<&str>, remote: &str, learn: u64) -> LegSpec {
    LegSpec {
        local_rtp: local.parse().expect("literal"),
        local_rtcp: rtcp.map(|r| r.parse().expect("literal")),
        remote_rtp: Some(remote.parse().expect("literal")),
        remote_rtcp: None,
        learn_window_ns: learn,
        nic_mac: [2, 0, 0, 0, 0, 1],
        vlan: None,
        next_hop_mac: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let profile = Profile::ALL[usize::from(sel) % Profile::ALL.len()];
    let key = KeyMaterial::generate(profile, |b| b.fill(7));
    let mut t = MediaFlowTable::default();
    let spec = MediaFlowSpec {
        id: 1,
        ext: leg("10.0.1.1:30000", Some("10.0.1.1:30001"), "10.0.1.2:4000", u64::from(sel & 1) * 1000),
        int: leg("10.0.2.1:30000", None, "10.0.2.2:5000", 0),
        ext_to_int: TransformSpec::Protect(key.clone()),
        int_to_ext: TransformSpec::Unprotect(key),
        resume: [None, None],
    };
    if t.install(&spec, Arc::new(FlowCounters::default()), 0).is_err() {
        return;
    }
    let mut buf = rest.to_vec();
    buf.resize(rest.len() + 64, 0);
    let Ok(f) = frame::parse(rest) else {
        // Not a frame: run the payload path alone on the raw bytes.
        for local in ["10.0.1.1:30000", "10.0.1.1:30001", "10.0.2.1:30000"] {
            let arrival = Arrival { src: "10.0.2.2:5000".parse().expect("literal"), src_mac: None, now_ns: 5, src_checked: sel & 2 != 0 };
            let _ = t.relay(local.parse().expect("literal"), arrival, &mut buf, rest.len());
        }
        return;
    };
    let start = f.payload_off;
    let Some(payload) = buf.get_mut(start..) else { return };
    let arrival = Arrival { src: f.src, src_mac: Some(f.src_mac), now_ns: 5, src_checked: sel & 2 != 0 };
    if let Ok(r) = t.relay(f.dst, arrival, payload, f.payload_len) {
        let h: EgressHeader = r.header;
        let mut out = vec![0u8; h.len() + r.len];
        let (hd, pl) = out.split_at_mut(h.len());
        pl.copy_from_slice(&buf[start..start + r.len]);
        assert!(h.write(hd, pl, f.tos).is_some(), "egress header must fit");
        t.sent(&r, 5);
    }
});
