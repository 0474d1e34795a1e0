//! A burst of payloads through the split relay step (`relay_front` per packet, one
//! `process_batch` across flows, `relay_back` per packet) against the same payloads relayed
//! one by one on a twin table: every outcome, every byte sent and every counter must match.
//! The input is a list of packets, each `[selector, len, bytes...]`; the selector picks the
//! flow, the side, the port (RTP or RTCP) and whether the source is the expected one.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tollgate_relay::{
    Arrival, FlowCounters, LegSpec, MediaFlowSpec, MediaFlowTable, Side, TransformSpec,
};
use tollgate_srtp::{Job, KeyMaterial, Profile};

const FLOWS: u16 = 4;

fn sa(s: String) -> SocketAddr {
    s.parse().expect("literal")
}

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

/// Flow `f` protects gateway RTP toward the internal side and unprotects the other way, each
/// with its own key and a profile of its own; the last flow forwards without SRTP.
fn table() -> (MediaFlowTable, Vec<Arc<FlowCounters>>) {
    let mut t = MediaFlowTable::default();
    let mut counters = Vec::new();
    for f in 0..FLOWS {
        let p = 30000 + 2 * f;
        let key = |dir: u8| {
            let profile = Profile::ALL[usize::from(f) % Profile::ALL.len()];
            KeyMaterial::generate(profile, |b| b.fill(f as u8 * 2 + dir))
        };
        let (a, b) = if f == FLOWS - 1 {
            (TransformSpec::Forward, TransformSpec::Forward)
        } else {
            (TransformSpec::Protect(key(0)), TransformSpec::Unprotect(key(1)))
        };
        let spec = MediaFlowSpec {
            id: u64::from(f),
            ext: leg(
                sa(format!("10.0.1.1:{p}")),
                sa(format!("10.0.1.1:{}", p + 1)),
                sa(format!("10.0.1.2:{}", 4000 + 2 * f)),
            ),
            int: leg(
                sa(format!("10.0.2.1:{p}")),
                sa(format!("10.0.2.1:{}", p + 1)),
                sa(format!("10.0.2.2:{}", 5000 + 2 * f)),
            ),
            ext_to_int: a,
            int_to_ext: b,
            resume: [None, None],
        };
        let c = Arc::new(FlowCounters::default());
        if t.install(&spec, Arc::clone(&c), 0).is_err() {
            continue;
        }
        counters.push(c);
    }
    (t, counters)
}

struct Pkt {
    local: SocketAddr,
    src: SocketAddr,
    buf: Vec<u8>,
    len: usize,
}

fn packets(mut data: &[u8]) -> Vec<Pkt> {
    let mut out = Vec::new();
    while let [sel, len, rest @ ..] = data {
        let n = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(n);
        data = tail;
        let f = u16::from(*sel) % FLOWS;
        let side = if sel & 0x10 == 0 { Side::Ext } else { Side::Int };
        let rtcp = u16::from(sel & 0x20 != 0);
        let (net, peer) = match side {
            Side::Ext => (1, 4000),
            Side::Int => (2, 5000),
        };
        let src_port = if sel & 0x40 == 0 { peer + 2 * f + rtcp } else { 9 };
        let mut buf = bytes.to_vec();
        buf.resize(n + 64, 0);
        out.push(Pkt {
            local: sa(format!("10.0.{net}.1:{}", 30000 + 2 * f + rtcp)),
            src: sa(format!("10.0.{net}.2:{src_port}")),
            buf,
            len: n,
        });
        if out.len() == 64 {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (mut one, c1) = table();
    let (mut many, c2) = table();
    let arrival = |src| Arrival { src, src_mac: None, now_ns: 5, src_checked: false };
    // One by one.
    let mut single = Vec::new();
    for mut p in packets(data) {
        let r = one.relay(p.local, arrival(p.src), &mut p.buf, p.len);
        if let Ok(r) = &r {
            one.sent(r, 5);
        }
        single.push(r.map(|r| (r.header.dst, p.buf.get(..r.len).map(<[u8]>::to_vec))));
    }
    // As one burst.
    let mut pkts = packets(data);
    let fronts: Vec<_> = pkts
        .iter()
        .map(|p| match many.route(p.local) {
            Some(route) => many.relay_front(&route, arrival(p.src), &p.buf, p.len),
            None => Err(tollgate_relay::DropReason::NoFlow),
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
            many.sent(&r, 5);
            Ok((r.header.dst, p.buf.get(..r.len).map(<[u8]>::to_vec)))
        })
        .collect();
    assert_eq!(single, batched, "a burst must relay exactly as its packets one by one");
    for (a, b) in c1.iter().zip(&c2) {
        for s in 0..2 {
            assert_eq!(a.sides[s].snapshot(), b.sides[s].snapshot(), "counters");
        }
    }
});
