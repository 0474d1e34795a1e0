//! The service lease against a real Valkey (or Redis): one holder at a time, renewals keep it,
//! a dead holder's lease expires to a standby, and a holder that lost it learns who has it.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::{Duration, Instant};

use tollgate_state::testing::ValkeyServer;
use tollgate_state::{Lease, LeaseState};

#[test]
fn one_holder_at_a_time_and_expiry_hands_over() {
    let v = ValkeyServer::start().expect("valkey-server or redis-server");
    let ttl = Duration::from_millis(300);
    let mut a = Lease::new(&v.url(), "svc1", "n1", ttl).unwrap();
    let mut b = Lease::new(&v.url(), "svc1", "n2", ttl).unwrap();
    let mut other = Lease::new(&v.url(), "svc2", "n2", ttl).unwrap();
    assert_eq!(a.acquire().unwrap(), LeaseState::Held);
    assert_eq!(b.acquire().unwrap(), LeaseState::HeldBy("n1".into()));
    assert_eq!(
        other.acquire().unwrap(),
        LeaseState::Held,
        "another service"
    );
    // Renewals keep it well past the TTL.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(900) {
        assert_eq!(a.renew().unwrap(), LeaseState::Held);
        assert_eq!(b.acquire().unwrap(), LeaseState::HeldBy("n1".into()));
        std::thread::sleep(Duration::from_millis(80));
    }
    // n1 dies (stops renewing): n2 gets it once the TTL ran out, not before.
    let died = Instant::now();
    let mut got = None;
    while died.elapsed() < Duration::from_secs(3) {
        if b.acquire().unwrap() == LeaseState::Held {
            got = Some(died.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = got.expect("the standby takes the lease");
    assert!(got >= Duration::from_millis(150), "too early: {got:?}");
    // n1 comes back: it is told who holds the lease, and does not take it.
    assert_eq!(a.renew().unwrap(), LeaseState::HeldBy("n2".into()));
    // A clean release hands it over at once.
    b.release().unwrap();
    assert_eq!(a.acquire().unwrap(), LeaseState::Held);
    // Releasing a lease one does not hold changes nothing.
    b.release().unwrap();
    assert_eq!(b.acquire().unwrap(), LeaseState::HeldBy("n1".into()));
}

#[test]
fn an_unreachable_store_is_an_error_not_a_lease() {
    let mut v = ValkeyServer::start().expect("valkey-server or redis-server");
    let mut a = Lease::new(&v.url(), "svc1", "n1", Duration::from_millis(300)).unwrap();
    assert_eq!(a.acquire().unwrap(), LeaseState::Held);
    v.kill();
    assert!(a.renew().is_err());
    v.restart().unwrap();
    // A restarted (empty) server: the lease is free again and the holder takes it back.
    assert_eq!(a.renew().unwrap(), LeaseState::Held);
    assert!(Lease::new(&v.url(), "bad id", "n1", Duration::from_secs(1)).is_err());
    assert!(Lease::new(&v.url(), "svc1", "n1", Duration::from_millis(5)).is_err());
}
