//! Fuzz target: parse + offer/answer rewrite. Drives a call through a sequence of offers and
//! answers taken from the input and checks that the rewrite never panics, that every SDP
//! Tollgate emits parses, that plans only use allocated relay ports, and that relay ports are
//! never leaked or released twice.
//!
//! Input: two control bytes, then up to six SDP bodies separated by NUL bytes (a NUL never
//! occurs in a valid body).
//! * byte 0: bit 0 = the first offer comes from the internal side, bit 1 = relay video,
//!   bit 2 = relay T.38, bit 3 = the allocator refuses every third request.
//! * byte 1: bits 0..=4 = step 1..=5 is an answer (else an offer), bit 5 = re-offers come from
//!   the other side, bit 6 = finish the offer after each answer, bit 7 = drop a refused offer.

#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use tollgate_sdp::{MediaSession, PortRequest, RelayPorts, RewriteConfig, Sdp, Side, StreamPolicy};

fn release(ports: Vec<RelayPorts>, allocated: &[RelayPorts], released: &mut Vec<RelayPorts>) {
    for p in ports {
        assert!(
            allocated.contains(&p),
            "released ports that were never allocated"
        );
        assert!(!released.contains(&p), "ports released twice");
        released.push(p);
    }
}

fuzz_target!(|data: &[u8]| {
    let [cfg_bits, steps_bits, rest @ ..] = data else {
        return;
    };
    let (cfg_bits, steps_bits) = (*cfg_bits, *steps_bits);
    let policy = |on: bool| {
        if on {
            StreamPolicy::Relay
        } else {
            StreamPolicy::Reject
        }
    };
    let cfg = RewriteConfig {
        video: policy(cfg_bits & 2 != 0),
        image: policy(cfg_bits & 4 != 0),
        ..RewriteConfig::default()
    };
    let flaky = cfg_bits & 8 != 0;
    let first = if cfg_bits & 1 != 0 {
        Side::Int
    } else {
        Side::Ext
    };

    let mut n: u8 = 0;
    let mut rng = |b: &mut [u8]| {
        for x in b {
            n = n.wrapping_add(1);
            *x = n;
        }
    };
    let mut session = MediaSession::new(&mut rng);
    let mut allocated: Vec<RelayPorts> = Vec::new();
    let mut released: Vec<RelayPorts> = Vec::new();
    let mut requests: u32 = 0;
    let mut offerer = first;

    for (step, body) in rest.split(|&b| b == 0).take(6).enumerate() {
        let Ok(sdp) = Sdp::parse(body) else {
            continue;
        };
        let is_answer = step > 0 && (steps_bits >> (step - 1)) & 1 == 1;
        if is_answer {
            if let Ok(out) = session.process_answer(&cfg, offerer.other(), &sdp) {
                Sdp::parse(out.sdp.to_string().as_bytes()).expect("Tollgate's answer must parse");
                release(out.released, &allocated, &mut released);
                for (_, a) in out.plan.active() {
                    assert!(allocated.contains(&a.relay), "plan uses unallocated ports");
                }
                assert_eq!(out.plan, session.plan());
                if steps_bits & 0x40 != 0 {
                    release(session.finish_offer(), &allocated, &mut released);
                }
            }
            continue;
        }
        offerer = if step > 0 && steps_bits & 0x20 != 0 {
            first.other()
        } else {
            first
        };
        let mut alloc = |_: &PortRequest| {
            requests += 1;
            if flaky && requests % 3 == 0 {
                return None;
            }
            let k = u16::try_from(allocated.len()).unwrap_or(u16::MAX);
            let p = RelayPorts {
                gateway: SocketAddr::from(([203, 0, 113, 1], k)),
                internal: SocketAddr::from(([10, 0, 0, 1], k)),
            };
            allocated.push(p);
            Some(p)
        };
        match session.process_offer(&cfg, offerer, &sdp, &mut alloc, &mut rng) {
            Ok(out) => {
                Sdp::parse(out.sdp.to_string().as_bytes()).expect("Tollgate's offer must parse");
                assert_eq!(out.sdp.media.len(), sdp.media.len());
                release(out.released, &allocated, &mut released);
            }
            Err(_) => {
                if steps_bits & 0x80 != 0 {
                    release(session.offer_failed(), &allocated, &mut released);
                }
            }
        }
    }
    // Every allocated port pair is released by now or handed back at close: no leak.
    release(session.close(), &allocated, &mut released);
    for p in &allocated {
        assert!(released.contains(p), "leaked relay ports");
    }
});
