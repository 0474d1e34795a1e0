//! Shared fixtures of the rewrite tests: a deterministic random source and a port allocator.

#![allow(dead_code)]

use std::net::SocketAddr;

use tollgate_sdp::{PortRequest, RelayPorts, Sdp};

/// A deterministic "random" source: 1, 2, 3, ... (wrapping).
pub fn counter_rng() -> impl FnMut(&mut [u8]) {
    let mut n: u8 = 0;
    move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_add(1);
            *b = n;
        }
    }
}

/// A port allocator: gateway side 203.0.113.1:20000, 20002, ...; internal side
/// 10.0.0.1:30000, 30002, ... (IPv6 on the gateway side when the offerer is IPv6 there).
#[derive(Debug, Default)]
pub struct Allocator {
    pub next: u16,
    pub requests: Vec<PortRequest>,
    pub exhausted: bool,
}

impl Allocator {
    pub fn alloc(&mut self) -> impl FnMut(&PortRequest) -> Option<RelayPorts> + '_ {
        move |req| {
            self.requests.push(req.clone());
            if self.exhausted {
                return None;
            }
            let k = self.next;
            self.next += 1;
            let gw_ip = match req.offerer_address {
                Some(std::net::IpAddr::V6(_)) if req.offerer == tollgate_sdp::Side::Ext => {
                    "[2001:db8:ffff::1]"
                }
                _ => "203.0.113.1",
            };
            Some(RelayPorts {
                gateway: format!("{gw_ip}:{}", 20000 + 2 * k)
                    .parse::<SocketAddr>()
                    .expect("test address"),
                internal: format!("10.0.0.1:{}", 30000 + 2 * k)
                    .parse()
                    .expect("test address"),
            })
        }
    }
}

pub fn sdp(text: &str) -> Sdp {
    Sdp::parse(text.as_bytes()).expect("test SDP")
}

/// The relay ports the allocator handed out as the `k`-th allocation.
pub fn ports(k: u16) -> RelayPorts {
    RelayPorts {
        gateway: format!("203.0.113.1:{}", 20000 + 2 * k)
            .parse()
            .expect("test address"),
        internal: format!("10.0.0.1:{}", 30000 + 2 * k)
            .parse()
            .expect("test address"),
    }
}
