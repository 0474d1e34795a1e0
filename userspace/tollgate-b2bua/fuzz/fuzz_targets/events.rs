//! Fuzz target: event sequences for the B2BUA core. The first 8 bytes seed the core's random
//! source, every following 4 bytes are one step of the simulated world shared with the no-leak
//! property test (`tests/sim/mod.rs`): peers' INVITEs and in-dialog requests, arbitrary
//! responses, retransmissions, mutated messages and parse errors, timers, closed connections,
//! connect failures, media inactivity, drain and reload. After the sequence every timer fires;
//! a panic, a broken output invariant or any leaked call, port, flow, transaction or timer is
//! a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/sim/mod.rs"]
mod sim;

fuzz_target!(|data: &[u8]| {
    let (seed, ops) = data.split_at(data.len().min(8));
    let mut s = [0u8; 8];
    s[..seed.len()].copy_from_slice(seed);
    let mut sim = sim::Sim::new(u64::from_le_bytes(s));
    for op in ops.chunks_exact(4).take(512) {
        sim.step([op[0], op[1], op[2], op[3]]);
    }
    if let Err(e) = sim.finish() {
        panic!("leak after {} inputs: {e}", sim.inputs);
    }
});
