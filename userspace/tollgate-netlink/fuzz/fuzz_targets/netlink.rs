//! Kernel rtnetlink datagrams (replies and notifications) through every parser: never a panic,
//! and news only from well-formed announcements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_netlink::{
    Changes, Notifications, attrs, error_code, messages, parse_neigh, parse_route,
};

fuzz_target!(|data: &[u8]| {
    let mut n = Notifications::new(&[1, 2, 3]);
    let mut c = Changes::default();
    n.fold(data, &mut c);
    // Each reported neighbour needs a message of its own (16-byte header at least).
    assert!(c.neighbours.len() <= data.len() / 16);
    for m in messages(data).flatten() {
        let _ = parse_neigh(m.payload);
        let _ = parse_route(m.payload);
        let _ = error_code(m.payload);
        for (_, d) in attrs(m.payload) {
            assert!(d.len() <= m.payload.len());
        }
    }
});
