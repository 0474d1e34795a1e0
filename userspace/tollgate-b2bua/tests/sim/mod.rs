//! A simulated world around one [`B2bua`] for the no-leak property test and the fuzz target:
//! gateways and the internal proxy answer whatever Tollgate sent with arbitrary responses and
//! send their own in-dialog requests, connections close, timers fire, garbage arrives. Each
//! step is decoded from 4 bytes ([`Sim::step`]), so proptest and libFuzzer drive the same code.
//!
//! Invariants checked on every output: a flow is removed only if installed (and by its
//! call), a CDR comes after all removals of its call, one CDR per call. [`Sim::finish`] fires
//! every timer until none is left and then requires: no call, no port, no flow, no
//! transaction, no timer, and a CDR for every call that started.

#![allow(dead_code, reason = "shared by the property test and the fuzz target")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tollgate_b2bua::{
    B2bua, CallEvent, CallId, Config, ConnId, ExtConfig, Input, IntConfig, Output, Rewrite, Route,
    Side, Target, TimerId, Transport, Trunk,
};
use tollgate_sip::{HeaderName, Message};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Deterministic randomness for the core.
fn rng(seed: u64) -> tollgate_b2bua::Rng {
    let mut x = seed | 1;
    Box::new(move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    })
}

pub fn config() -> Config {
    let mut cfg = Config::new(
        ExtConfig {
            sip_addr: addr("198.51.100.1:5060"),
            media_ip: "198.51.100.1".parse().expect("ip"),
            transport: Transport::Tcp,
        },
        IntConfig {
            sip_addr: addr("203.0.113.1:5061"),
            media_ip: "203.0.113.1".parse().expect("ip"),
            next_hop: addr("203.0.113.10:5061"),
            next_hop_host: "proxy.corp.example".into(),
            next_hop_max_cps: None,
            alternates: Vec::new(),
        },
    );
    let mut gw1 = Trunk::new("gw1", addr("192.0.2.10:5060"), Transport::Tcp);
    gw1.inbound = vec![Rewrite::new(r"^0(\d+)$", "+44$1").expect("rule")];
    gw1.outbound = vec![Rewrite::new(r"^\+44(\d+)$", "0$1").expect("rule")];
    gw1.nat_learn = Duration::from_millis(500);
    let gw2 = Trunk::new("gw2", addr("192.0.2.20:5060"), Transport::Tcp);
    cfg.trunks = vec![gw1, gw2];
    cfg.routes = vec![Route::new(r"^\+44", &["gw1", "gw2"]).expect("route")];
    // Few ports, so exhaustion happens too.
    cfg.media.ext_ports = 20000..=20007;
    cfg.media.int_ports = 30000..=30007;
    cfg.sip.session_expires = 120;
    cfg.sip.min_se = 90;
    cfg.sip.max_calls = 6;
    cfg.sip.no_answer_timeout = Duration::from_secs(60);
    cfg
}

const GW_OFFER: &str = "v=0\r\no=gw 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
const GW_HOLD: &str = "v=0\r\no=gw 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0 101\r\na=sendonly\r\n";
const GW_BAD: &str = "v=0\r\no=gw 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0\r\n";
const INT_SDP: &str = "v=0\r\no=int 2 1 IN IP4 203.0.113.20\r\ns=-\r\nc=IN IP4 203.0.113.20\r\nt=0 0\r\nm=audio 50000 RTP/SAVP 0 101\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\na=sendrecv\r\n";
const INT_SDP_32: &str = "v=0\r\no=int 2 2 IN IP4 203.0.113.21\r\ns=-\r\nc=IN IP4 203.0.113.21\r\nt=0 0\r\nm=audio 50002 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\na=recvonly\r\n";
const INT_BAD: &str = "v=0\r\no=int 2 1 IN IP4 203.0.113.20\r\ns=-\r\nc=IN IP4 203.0.113.20\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n";

/// `TOLLGATE_SIM_TRACE=1` prints every input and output (to debug a failing sequence).
fn trace() -> bool {
    std::env::var_os("TOLLGATE_SIM_TRACE").is_some()
}

/// A peer connection: side, conn id, peer address.
#[derive(Debug, Clone, Copy)]
struct PeerConn {
    side: Side,
    conn: u64,
    peer: &'static str,
}

const CONNS: [PeerConn; 5] = [
    PeerConn {
        side: Side::Ext,
        conn: 1,
        peer: "192.0.2.10:41000",
    },
    PeerConn {
        side: Side::Ext,
        conn: 2,
        peer: "192.0.2.20:42000",
    },
    PeerConn {
        side: Side::Ext,
        conn: 3,
        peer: "192.0.2.99:43000",
    },
    PeerConn {
        side: Side::Int,
        conn: 100,
        peer: "203.0.113.10:45000",
    },
    PeerConn {
        side: Side::Int,
        conn: 101,
        peer: "203.0.113.10:45001",
    },
];

fn conn_for(side: Side, target: Target) -> PeerConn {
    let pick = |c: u64| CONNS.iter().copied().find(|p| p.conn == c);
    match target {
        Target::Conn(ConnId(c)) => pick(c),
        Target::Addr { addr, .. } => match addr.port() {
            5061 => pick(100),
            _ if addr.ip().to_string() == "192.0.2.20" => pick(2),
            _ => pick(1),
        },
    }
    .filter(|p| p.side == side)
    .unwrap_or(if side == Side::Ext {
        CONNS[0]
    } else {
        CONNS[3]
    })
}

/// A peer's view of a dialog.
#[derive(Debug, Clone)]
struct PeerDialog {
    pc: PeerConn,
    call_id: String,
    me: String,
    them: String,
    target: String,
    cseq: u32,
    /// An initial INVITE from the peer (for CANCEL).
    invite: Option<String>,
}

pub struct Sim {
    pub b: B2bua,
    now: Instant,
    timers: BTreeMap<TimerId, Instant>,
    installed: HashMap<u64, CallId>,
    pub installs: usize,
    pub removes: usize,
    cdrs: HashSet<CallId>,
    started: Vec<CallId>,
    /// Requests Tollgate sent (peers answer them).
    sent_reqs: Vec<(Side, Target, Message)>,
    /// Dialogs peers can send requests on.
    dialogs: Vec<PeerDialog>,
    /// Peer messages sent (for retransmission).
    peer_sent: Vec<(PeerConn, String)>,
    next: u32,
    /// Inputs handed to the core.
    pub inputs: usize,
    /// Calls answered.
    pub answered: usize,
    /// CDR causes seen.
    pub causes: BTreeMap<&'static str, usize>,
    /// The call-state store as StoreCall/ForgetCall left it (with [`Sim::with_store`]).
    pub store: BTreeMap<CallId, Vec<u8>>,
    /// The configuration in force (after reloads).
    pub cfg: Config,
}

fn hdr(m: &Message, name: &str) -> String {
    m.headers
        .get(&HeaderName::parse(name))
        .map(|h| h.value().to_owned())
        .unwrap_or_default()
}

fn push_bounded<T>(v: &mut Vec<T>, x: T, cap: usize) {
    if v.len() >= cap {
        v.remove(0);
    }
    v.push(x);
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, config())
    }

    /// A simulation whose core starts with `cfg` (a restarted process with the configuration
    /// in force before the restart).
    pub fn with_config(seed: u64, cfg: Config) -> Sim {
        let now = Instant::now();
        let mut s = Sim {
            cfg: cfg.clone(),
            b: B2bua::new(cfg, rng(seed)),
            now,
            timers: BTreeMap::new(),
            installed: HashMap::new(),
            installs: 0,
            removes: 0,
            cdrs: HashSet::new(),
            started: Vec::new(),
            sent_reqs: Vec::new(),
            dialogs: Vec::new(),
            peer_sent: Vec::new(),
            next: 0,
            inputs: 0,
            answered: 0,
            causes: BTreeMap::new(),
            store: BTreeMap::new(),
        };
        let mut out = Vec::new();
        s.b.start(now, &mut out);
        s.track(out);
        s
    }

    fn track(&mut self, out: Vec<Output>) {
        for o in out {
            if trace() {
                match &o {
                    Output::Send { side, target, msg } => eprintln!(
                        "  <- Send {side:?} {target:?}\n{}",
                        String::from_utf8_lossy(&msg.encode())
                    ),
                    o => eprintln!("  <- {o:?}"),
                }
            }
            match o {
                Output::SetTimer { id, at } => {
                    assert!(self.timers.insert(id, at).is_none(), "timer id reused");
                }
                Output::CancelTimer(id) => {
                    self.timers.remove(&id);
                }
                Output::InstallMedia { call, spec } => {
                    match self.installed.insert(spec.id, call) {
                        Some(c) => assert_eq!(c, call, "flow moved between calls"),
                        None => self.installs += 1,
                    }
                    assert!(!self.cdrs.contains(&call), "install after the CDR");
                }
                Output::RemoveMedia { call, flow } => {
                    let c = self.installed.remove(&flow);
                    assert_eq!(
                        c,
                        Some(call),
                        "RemoveMedia of a flow not installed by the call"
                    );
                    self.removes += 1;
                }
                Output::Cdr(cdr) => {
                    assert!(
                        !self.installed.values().any(|c| *c == cdr.call),
                        "CDR before all RemoveMedia"
                    );
                    assert!(self.cdrs.insert(cdr.call), "two CDRs for one call");
                    *self.causes.entry(cdr.cause.as_str()).or_default() += 1;
                }
                Output::Event(CallEvent::Started { call, .. }) => self.started.push(call),
                Output::Event(CallEvent::Answered { .. }) => self.answered += 1,
                Output::Event(CallEvent::Restored { call }) => self.started.push(call),
                Output::StoreCall { call, record } => {
                    self.store.insert(call, record);
                }
                Output::ForgetCall { call } => {
                    assert!(
                        self.store.remove(&call).is_some(),
                        "ForgetCall of a call never stored"
                    );
                }
                Output::Event(_) => {}
                Output::Send { side, target, msg } => self.observe(side, target, msg),
            }
        }
    }

    /// Learns dialogs from what Tollgate sends.
    fn observe(&mut self, side: Side, target: Target, msg: Message) {
        if msg.is_request() {
            push_bounded(&mut self.sent_reqs, (side, target, msg), 24);
            return;
        }
        let (Some(code), Some(tag)) = (msg.status(), msg.to().and_then(|t| t.tag())) else {
            return;
        };
        let is_invite = msg
            .cseq()
            .is_some_and(|c| c.method == tollgate_sip::Method::Invite);
        if !(101..300).contains(&code) || !is_invite {
            return;
        }
        let _ = tag;
        let Some(target_uri) = msg.headers.contacts().next().map(|c| c.uri.to_string()) else {
            return;
        };
        let pc = conn_for(side, target);
        let call_id = msg.call_id().unwrap_or("").to_owned();
        if self
            .dialogs
            .iter()
            .any(|d| d.call_id == call_id && d.them == hdr(&msg, "To"))
        {
            return;
        }
        push_bounded(
            &mut self.dialogs,
            PeerDialog {
                pc,
                call_id,
                me: hdr(&msg, "From"),
                them: hdr(&msg, "To"),
                target: target_uri,
                cseq: 1000,
                invite: None,
            },
            16,
        );
    }

    fn input(&mut self, i: Input) {
        if trace() {
            match &i {
                Input::Message {
                    side, conn, msg, ..
                } => eprintln!(
                    "-> Message {side:?} {conn:?}\n{}",
                    String::from_utf8_lossy(&msg.encode())
                ),
                i => eprintln!("-> {i:?}"),
            }
        }
        let mut out = Vec::new();
        self.b.handle(i, self.now, &mut out);
        self.inputs += 1;
        self.track(out);
    }

    fn send(&mut self, pc: PeerConn, text: String) {
        let Ok(msg) = Message::parse(text.as_bytes()) else {
            return;
        };
        push_bounded(&mut self.peer_sent, (pc, text), 16);
        self.input(Input::Message {
            side: pc.side,
            conn: ConnId(pc.conn),
            peer: addr(pc.peer),
            msg,
        });
    }

    fn fire_next(&mut self, until: Option<Instant>) -> bool {
        let next = self
            .timers
            .iter()
            .min_by_key(|(id, at)| (**at, **id))
            .map(|(id, at)| (*id, *at));
        let Some((id, at)) = next else { return false };
        if until.is_some_and(|u| at > u) {
            return false;
        }
        self.timers.remove(&id);
        if at > self.now {
            self.now = at;
        }
        self.input(Input::Timer(id));
        true
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.fire_next(Some(end)) {}
        self.now = end;
    }

    fn new_invite(&mut self, pc: PeerConn, ruri_user: &str, extra: &str, body: Option<&str>) {
        self.next += 1;
        let n = self.next;
        let (host, via) = match pc.side {
            Side::Ext => ("198.51.100.1:5060", "SIP/2.0/TCP 192.0.2.10:5060"),
            Side::Int => ("203.0.113.1:5061", "SIP/2.0/TLS 203.0.113.10:5061"),
        };
        let (ct, b) = body.map_or(("", ""), |b| ("Content-Type: application/sdp\r\n", b));
        let text = format!(
            "INVITE sip:{ruri_user}@{host} SIP/2.0\r\nVia: {via};branch=z9hG4bKsim{n}\r\nMax-Forwards: 70\r\nFrom: <sip:01632960001@peer.example>;tag=p{n}\r\nTo: <sip:{ruri_user}@{host}>\r\nCall-ID: sim{n}@peer\r\nCSeq: 1 INVITE\r\nContact: <sip:peer{n}@{}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{b}",
            pc.peer,
            b.len()
        );
        push_bounded(
            &mut self.dialogs,
            PeerDialog {
                pc,
                call_id: format!("sim{n}@peer"),
                me: format!("<sip:01632960001@peer.example>;tag=p{n}"),
                them: format!("<sip:{ruri_user}@{host}>"),
                target: format!("sip:{ruri_user}@{host}"),
                cseq: 1,
                invite: Some(text.clone()),
            },
            16,
        );
        self.send(pc, text);
    }

    fn peer_sdp(side: Side, sel: u8) -> &'static str {
        match (side, sel % 4) {
            (Side::Ext, 0 | 1) => GW_OFFER,
            (Side::Ext, 2) => GW_HOLD,
            (Side::Ext, _) => GW_BAD,
            (Side::Int, 0 | 1) => INT_SDP,
            (Side::Int, 2) => INT_SDP_32,
            (Side::Int, _) => INT_BAD,
        }
    }

    fn respond(&mut self, idx: u8, code_sel: u8, sel: u8) {
        if self.sent_reqs.is_empty() {
            return;
        }
        // Small indexes pick recent requests.
        let i = self.sent_reqs.len() - 1 - usize::from(idx) % self.sent_reqs.len();
        let (side, target, req) = self.sent_reqs[i].clone();
        if req.method() == Some(&tollgate_sip::Method::Ack) {
            return;
        }
        const CODES: [u16; 16] = [
            100, 180, 183, 183, 200, 200, 486, 503, 408, 487, 491, 481, 422, 302, 407, 500,
        ];
        let code = CODES[usize::from(code_sel) % CODES.len()];
        let pc = conn_for(side, target);
        let mut s = format!("SIP/2.0 {code} Whatever\r\n");
        for v in req.headers.get_all(&HeaderName::Via) {
            s.push_str(&format!("Via: {}\r\n", v.value()));
        }
        s.push_str(&format!("From: {}\r\n", hdr(&req, "From")));
        let mut to = hdr(&req, "To");
        if code > 100 && !to.contains("tag=") {
            to.push_str(&format!(";tag=r{}", sel % 2));
        }
        s.push_str(&format!(
            "To: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            req.call_id().unwrap_or(""),
            hdr(&req, "CSeq")
        ));
        s.push_str(&format!("Contact: <sip:peer@{}>\r\n", pc.peer));
        if code == 183 && sel & 4 != 0 {
            s.push_str(&format!(
                "Require: 100rel\r\nRSeq: {}\r\n",
                1 + u32::from(sel)
            ));
        }
        if code == 422 {
            s.push_str("Min-SE: 150\r\n");
        }
        if code == 200 && sel & 8 != 0 {
            s.push_str("Session-Expires: 120;refresher=uas\r\n");
        }
        let with_body = matches!(code, 183 | 200) && sel & 16 == 0;
        if with_body {
            let b = Self::peer_sdp(side, sel >> 5);
            s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            s.push_str("Content-Length: 0\r\n\r\n");
        }
        // A peer that got an INVITE and answered with a tag now has a dialog.
        if (101..300).contains(&code)
            && req.method() == Some(&tollgate_sip::Method::Invite)
            && let Some(target_uri) = req.headers.contacts().next().map(|c| c.uri.to_string())
        {
            let d = PeerDialog {
                pc,
                call_id: req.call_id().unwrap_or("").to_owned(),
                me: to.clone(),
                them: hdr(&req, "From"),
                target: target_uri,
                cseq: 500,
                invite: None,
            };
            if !self
                .dialogs
                .iter()
                .any(|x| x.call_id == d.call_id && x.me == d.me)
            {
                push_bounded(&mut self.dialogs, d, 16);
            }
        }
        self.send(pc, s);
    }

    fn dialog_request(&mut self, idx: u8, method_sel: u8, sel: u8) {
        if self.dialogs.is_empty() {
            return;
        }
        let i = self.dialogs.len() - 1 - usize::from(idx) % self.dialogs.len();
        const METHODS: [&str; 12] = [
            "ACK", "BYE", "INVITE", "INVITE", "UPDATE", "UPDATE", "INFO", "OPTIONS", "PRACK",
            "CANCEL", "MESSAGE", "REFER",
        ];
        let method = METHODS[usize::from(method_sel) % METHODS.len()];
        let d = &mut self.dialogs[i];
        if method == "CANCEL" {
            // CANCEL of the peer's initial INVITE (same branch, no To tag).
            let Some(inv) = d.invite.clone() else { return };
            let pc = d.pc;
            let Ok(m) = Message::parse(inv.as_bytes()) else {
                return;
            };
            let text = format!(
                "CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
                m.request_uri().map(ToString::to_string).unwrap_or_default(),
                hdr(&m, "Via"),
                hdr(&m, "From"),
                hdr(&m, "To"),
                m.call_id().unwrap_or("")
            );
            self.send(pc, text);
            return;
        }
        if !d.them.contains("tag=") {
            return;
        }
        if method != "ACK" {
            d.cseq += 1;
        }
        let seq = if method == "ACK" { 1 } else { d.cseq };
        let pc = d.pc;
        let via = match pc.side {
            Side::Ext => "SIP/2.0/TCP 192.0.2.10:5060",
            Side::Int => "SIP/2.0/TLS 203.0.113.10:5061",
        };
        let mut extra = String::new();
        if method == "PRACK" {
            extra.push_str(&format!("RAck: {} 1 INVITE\r\n", 1 + (sel % 3)));
        }
        if matches!(method, "INVITE" | "UPDATE") && sel & 1 != 0 {
            extra.push_str("Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n");
        }
        let body = match method {
            "INVITE" | "UPDATE" if method_sel.is_multiple_of(2) => {
                Some(Self::peer_sdp(pc.side, sel >> 2))
            }
            "ACK" if sel & 2 != 0 => Some(Self::peer_sdp(pc.side, 0)),
            // An answer to an offer in a reliable provisional (RFC 3262 §5).
            "PRACK" if sel & 8 != 0 => Some(Self::peer_sdp(pc.side, sel >> 4)),
            _ => None,
        };
        let (ct, b) = body.map_or(("", ""), |b| ("Content-Type: application/sdp\r\n", b));
        self.next += 1;
        let text = format!(
            "{method} {} SIP/2.0\r\nVia: {via};branch=z9hG4bKd{}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContact: <sip:peer@{}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{b}",
            d.target,
            self.next,
            d.me,
            d.them,
            d.call_id,
            pc.peer,
            b.len()
        );
        self.send(pc, text);
    }

    /// One step, decoded from 4 bytes.
    pub fn step(&mut self, op: [u8; 4]) {
        let [kind, a, b, c] = op;
        match kind % 16 {
            0 | 1 => {
                // Gateway INVITE (trunk gw1, gw2 or an unknown source).
                let pc = CONNS[usize::from(b) % 3];
                let extra = match a % 6 {
                    1 => "Supported: 100rel\r\n",
                    2 => "Session-Expires: 60\r\n",
                    3 => "Supported: timer\r\nSession-Expires: 100;refresher=uas\r\n",
                    4 => "Require: 100rel\r\n",
                    _ => "",
                };
                let body = match c % 4 {
                    0 | 1 => Some(GW_OFFER),
                    2 => None,
                    _ => Some(GW_BAD),
                };
                let user = if a & 0x80 != 0 {
                    "00331234"
                } else {
                    "02079460000"
                };
                self.new_invite(pc, user, extra, body);
            }
            2 => {
                // Outbound INVITE from the proxy.
                let pc = CONNS[3 + usize::from(b) % 2];
                let user = match a % 3 {
                    0 | 1 => "+442079460001",
                    _ => "+15550001",
                };
                let body = match c % 4 {
                    0 | 1 => Some(INT_SDP),
                    2 => None,
                    _ => Some(INT_BAD),
                };
                let extra = if c & 4 != 0 {
                    "Supported: 100rel, timer\r\n"
                } else {
                    ""
                };
                self.new_invite(pc, user, extra, body);
            }
            3..=5 => self.respond(a, b, c),
            6 | 7 => self.dialog_request(a, b, c),
            8 => self.advance(Duration::from_millis(
                u64::from(a) * 1000 + u64::from(b) * 4,
            )),
            9 => {
                self.fire_next(None);
            }
            10 => {
                let pc = CONNS[usize::from(a) % CONNS.len()];
                self.input(Input::ConnClosed {
                    side: pc.side,
                    conn: ConnId(pc.conn),
                });
            }
            11 => {
                let (side, a) = match a % 3 {
                    0 => (Side::Ext, "192.0.2.10:5060"),
                    1 => (Side::Ext, "192.0.2.20:5060"),
                    _ => (Side::Int, "203.0.113.10:5061"),
                };
                self.input(Input::ConnectFailed {
                    side,
                    addr: addr(a),
                });
            }
            12 => {
                let call = if self.started.is_empty() || b & 1 != 0 {
                    u64::from(a)
                } else {
                    self.started[usize::from(a) % self.started.len()]
                };
                self.input(Input::MediaInactive { call });
            }
            13 => {
                if a % 4 == 0 {
                    self.input(Input::Drain);
                } else {
                    let mut cfg = config();
                    if a % 4 == 2 {
                        cfg.media.ext_ports = 20004..=20013;
                        cfg.trunks.truncate(1);
                        cfg.routes = vec![Route::new(r"^\+", &["gw1"]).expect("route")];
                    }
                    self.cfg = cfg.clone();
                    self.input(Input::Reload(Box::new(cfg)));
                }
            }
            14 => {
                // Retransmission of something a peer sent.
                if !self.peer_sent.is_empty() {
                    let (pc, t) = self.peer_sent[usize::from(a) % self.peer_sent.len()].clone();
                    self.send(pc, t);
                }
            }
            _ => {
                // Garbage: a mutated copy of a peer message, as parse error or as a message.
                if self.peer_sent.is_empty() {
                    return;
                }
                let (pc, t) = self.peer_sent[usize::from(a) % self.peer_sent.len()].clone();
                let mut bytes = t.into_bytes();
                if !bytes.is_empty() {
                    let i = (usize::from(b) * 7 + usize::from(c)) % bytes.len();
                    bytes[i] = c;
                    let j = usize::from(b) % bytes.len();
                    bytes.truncate(bytes.len() - j / 4);
                }
                match Message::parse(&bytes) {
                    Ok(msg) => self.input(Input::Message {
                        side: pc.side,
                        conn: ConnId(pc.conn),
                        peer: addr(pc.peer),
                        msg,
                    }),
                    Err(error) => self.input(Input::Invalid {
                        side: pc.side,
                        conn: ConnId(pc.conn),
                        peer: addr(pc.peer),
                        error,
                    }),
                }
            }
        }
    }

    /// The core emits its stable calls for the call-state store (kept in [`Sim::store`]).
    pub fn with_store(mut self) -> Sim {
        self.b.enable_store(true);
        self
    }

    /// Takes over `records` as a restarted process would (store on), then ends every restored
    /// call by hand (peers are simulated only for calls they set up), so that [`Sim::finish`]
    /// checks the restored calls leave nothing behind.
    pub fn restore_and_hang_up(
        &mut self,
        records: &[(String, Vec<u8>)],
    ) -> tollgate_b2bua::record::RestoreReport {
        self.b.enable_store(true);
        for (k, v) in records {
            if let Ok(id) = k.parse::<CallId>() {
                self.store.insert(id, v.clone());
            }
        }
        let mut out = Vec::new();
        let report = self.b.restore(records, self.now, &mut out);
        self.inputs += 1;
        self.track(out);
        for id in report.restored.clone() {
            self.input(Input::Hangup {
                call: id,
                reason: "simulation over".into(),
            });
        }
        // Records nobody could read stay in a real store until the driver deletes them.
        for (k, _) in &report.unreadable {
            if let Ok(id) = k.parse::<CallId>() {
                self.store.remove(&id);
            }
        }
        report
    }

    /// Fires every timer (peers now silent) and checks that nothing leaked.
    pub fn finish(&mut self) -> Result<(), String> {
        let mut rounds = 0;
        while !self.timers.is_empty() {
            rounds += 1;
            if rounds > 100_000 {
                return Err(format!("timers never stop: {}", self.timers.len()));
            }
            self.fire_next(None);
        }
        let mut errs = Vec::new();
        if self.b.active_calls() != 0 {
            errs.push(format!("{} calls left", self.b.active_calls()));
        }
        for (trunk, _) in self.b.trunk_status() {
            if self.b.trunk_calls(&trunk) != 0 {
                errs.push(format!(
                    "{} calls still counted against {trunk}",
                    self.b.trunk_calls(&trunk)
                ));
            }
        }
        if self.b.allocated_ports() != (0, 0) {
            errs.push(format!("ports left {:?}", self.b.allocated_ports()));
        }
        if !self.installed.is_empty() || self.installs != self.removes {
            errs.push(format!(
                "flows left {} (installs {} removes {})",
                self.installed.len(),
                self.installs,
                self.removes
            ));
        }
        if self.b.transactions() != 0 {
            errs.push(format!("{} transactions left", self.b.transactions()));
        }
        if self.b.armed_timers() != 0 {
            errs.push(format!("{} core timers left", self.b.armed_timers()));
        }
        let missing: Vec<_> = self
            .started
            .iter()
            .filter(|c| !self.cdrs.contains(c))
            .collect();
        if !missing.is_empty() {
            errs.push(format!("calls without CDR: {missing:?}"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Calls that started (for statistics).
    pub fn started(&self) -> usize {
        self.started.len()
    }
}
