//! Valkey backend against a real server (valkey-server or redis-server, started privately on
//! a Unix socket by [`ValkeyServer`]; the tests fail if neither is installed).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tollgate_state::testing::ValkeyServer;
use tollgate_state::{Backend, CallStore, StoreConfig, StoreError, ValkeyStore};

const LONG: Duration = Duration::from_secs(60);

fn server() -> ValkeyServer {
    ValkeyServer::start().unwrap_or_else(|e| panic!("cannot start a private valkey server: {e}"))
}

fn raw(server: &ValkeyServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn as_map(v: Vec<(String, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
    v.into_iter().collect()
}

fn put(k: &str, v: &[u8]) -> (String, Vec<u8>) {
    (k.to_owned(), v.to_vec())
}

fn index(conn: &mut redis::Connection, node: &str) -> BTreeSet<String> {
    redis::cmd("SMEMBERS")
        .arg(format!("tollgate:{node}:calls"))
        .query(conn)
        .unwrap()
}

/// Polls `f` every 10 ms until it holds or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn key_layout_and_namespacing() {
    let srv = server();
    let mut a = ValkeyStore::connect(&srv.url(), "node-a", LONG).unwrap();
    let mut b = ValkeyStore::connect(&srv.url(), "node-b", LONG).unwrap();
    assert_eq!(a.backend(), "valkey");
    a.ping().unwrap();
    a.apply(&[put("1", b"a-one"), put("2", b"a-two")], &[])
        .unwrap();
    b.apply(&[put("1", b"b-one")], &[]).unwrap();

    let la = as_map(a.load().unwrap());
    assert_eq!(la, as_map(vec![put("1", b"a-one"), put("2", b"a-two")]));
    assert_eq!(as_map(b.load().unwrap()), as_map(vec![put("1", b"b-one")]));
    // Take-over: a reads b's calls, and b reads a's.
    assert_eq!(
        as_map(a.load_node("node-b").unwrap()),
        as_map(vec![put("1", b"b-one")])
    );
    assert_eq!(as_map(b.load_node("node-a").unwrap()), la);
    assert!(a.load_node("nobody").unwrap().is_empty());
    assert!(matches!(
        a.load_node("bad id").unwrap_err(),
        StoreError::InvalidKey { .. }
    ));

    let mut c = raw(&srv);
    let v: Vec<u8> = redis::cmd("GET")
        .arg("tollgate:node-a:call:2")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, b"a-two");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tollgate:node-a:call:2")
        .query(&mut c)
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tollgate:node-a:calls")
        .query(&mut c)
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    assert_eq!(
        index(&mut c, "node-a"),
        ["1".to_owned(), "2".to_owned()].into()
    );

    // Deletes remove the record and the index member; other nodes are untouched.
    a.apply(&[put("3", b"a-three")], &["1".to_owned()]).unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("tollgate:node-a:call:1")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0);
    assert_eq!(
        index(&mut c, "node-a"),
        ["2".to_owned(), "3".to_owned()].into()
    );
    assert_eq!(b.load().unwrap().len(), 1);

    // Binary values round-trip.
    let bin: Vec<u8> = (0..=255u8).collect();
    a.apply(&[("bin".to_owned(), bin.clone())], &[]).unwrap();
    assert_eq!(as_map(a.load().unwrap())["bin"], bin);
}

#[test]
fn ttl_expires_without_refresh_and_refresh_keeps_records() {
    let srv = server();
    let ttl = Duration::from_millis(400);
    let mut lazy = ValkeyStore::connect(&srv.url(), "lazy", ttl).unwrap();
    let mut busy = ValkeyStore::connect(&srv.url(), "busy", ttl).unwrap();
    lazy.apply(&[put("1", b"x"), put("2", b"y")], &[]).unwrap();
    busy.apply(&[put("1", b"x"), put("2", b"y")], &[]).unwrap();

    // Refresh `busy` every 100 ms for three TTLs; `lazy` is left alone.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        busy.refresh().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lazy.load().unwrap().is_empty(),
        "records without refresh must expire"
    );
    let mut c = raw(&srv);
    assert!(index(&mut c, "lazy").is_empty(), "the index expires too");
    assert_eq!(busy.load().unwrap().len(), 2, "refreshed records must stay");
    assert_eq!(index(&mut c, "busy").len(), 2);

    // Once refreshes stop, they go too.
    assert!(eventually(Duration::from_secs(5), || busy
        .load()
        .unwrap()
        .is_empty()));
}

#[test]
fn index_members_of_vanished_records_are_cleaned() {
    let srv = server();
    let mut s = ValkeyStore::connect(&srv.url(), "n", LONG).unwrap();
    s.apply(&[put("1", b"a"), put("2", b"b"), put("3", b"c")], &[])
        .unwrap();
    let mut c = raw(&srv);
    // Simulate expiry of single records (their own TTL ran out, the index's did not).
    redis::cmd("DEL")
        .arg("tollgate:n:call:2")
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(
        as_map(s.load().unwrap()).keys().collect::<Vec<_>>(),
        ["1", "3"]
    );
    assert_eq!(index(&mut c, "n"), ["1".to_owned(), "3".to_owned()].into());

    redis::cmd("DEL")
        .arg("tollgate:n:call:3")
        .query::<()>(&mut c)
        .unwrap();
    // A member that is not a valid call key (written by something else) is dropped and counted.
    redis::cmd("SADD")
        .arg("tollgate:n:calls")
        .arg("bad key")
        .query::<()>(&mut c)
        .unwrap();
    s.refresh().unwrap();
    assert_eq!(index(&mut c, "n"), ["1".to_owned()].into());
    assert_eq!(s.skipped(), 1);
    assert_eq!(s.load().unwrap(), vec![put("1", b"a")]);
}

#[test]
fn server_restart_is_an_error_then_reconnects() {
    let mut srv = server();
    let cfg = StoreConfig {
        backend: Backend::Valkey { url: srv.url() },
        node_id: "n".into(),
        ttl: LONG,
    };
    let mut s = tollgate_state::open(&cfg).unwrap();
    s.apply(&[put("1", b"a")], &[]).unwrap();
    srv.kill();
    assert!(srv.pid().is_none());
    let err = s.apply(&[put("2", b"b")], &[]).unwrap_err();
    assert!(matches!(err, StoreError::Valkey { .. }), "{err}");
    assert!(s.ping().is_err());
    assert!(s.load().is_err());
    srv.restart().unwrap();
    s.ping().unwrap();
    assert!(
        s.load().unwrap().is_empty(),
        "the restarted server is empty"
    );
    s.apply(&[put("2", b"b")], &[]).unwrap();
    assert_eq!(s.load().unwrap(), vec![put("2", b"b")]);
}

#[test]
fn bad_configuration_is_refused() {
    let srv = server();
    assert!(matches!(
        ValkeyStore::connect(&srv.url(), "", LONG).unwrap_err(),
        StoreError::InvalidKey { .. }
    ));
    assert!(matches!(
        ValkeyStore::connect(&srv.url(), "n", Duration::ZERO).unwrap_err(),
        StoreError::Config(_)
    ));
    assert!(ValkeyStore::connect("nonsense://x", "n", LONG).is_err());
    let dead = format!("unix://{}.missing", srv.socket().display());
    assert!(matches!(
        ValkeyStore::connect(&dead, "n", LONG).unwrap_err(),
        StoreError::Valkey { .. }
    ));
    let mut s = ValkeyStore::connect(&srv.url(), "n", LONG).unwrap();
    assert!(matches!(
        s.apply(&[put("a\nb", b"x")], &[]).unwrap_err(),
        StoreError::InvalidKey { .. }
    ));
}

#[test]
fn helper_kills_its_server_on_drop() {
    let srv = server();
    let pid = srv.pid().unwrap();
    let dir = srv.socket().parent().unwrap().to_path_buf();
    assert!(srv.binary().file_name().is_some());
    drop(srv);
    // The child was reaped by kill(); its PID no longer names our server, and the dir is gone.
    assert!(!dir.exists());
    let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.contains("s.sock"))
        .unwrap_or(false);
    assert!(!alive);
}
