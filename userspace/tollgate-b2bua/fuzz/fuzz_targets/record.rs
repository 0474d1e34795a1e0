//! Fuzz target: a stored call record, as a restarted process reads it from the call-state
//! store (a file or Valkey that anyone with access could have altered). Decoding and restoring
//! it never panics; whatever is restored ends cleanly (BYE, CDR, record deleted) and leaves no
//! call, port, flow, transaction or timer behind.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/sim/mod.rs"]
mod sim;

fuzz_target!(|data: &[u8]| {
    let _ = tollgate_b2bua::record::decode(data);
    let mut s = sim::Sim::new(1);
    let report = s.restore_and_hang_up(&[("1".to_owned(), data.to_vec())]);
    assert!(report.restored.len() + report.ended.len() + report.unreadable.len() == 1);
    if let Err(e) = s.finish() {
        panic!("leak after restoring a record: {e}");
    }
});
