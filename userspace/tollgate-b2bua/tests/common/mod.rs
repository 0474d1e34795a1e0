//! Test harness: a simulated clock and timer queue around [`B2bua`], peers that speak SIP text,
//! and bookkeeping that checks every flow install is matched by a removal and that each CDR
//! follows its call's removals.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tollgate_b2bua::{
    B2bua, CallEvent, CallId, Cdr, Config, ConnId, ExtConfig, Input, IntConfig, Output, Rewrite,
    Route, Side, Target, TimerId, Transport, Trunk,
};
use tollgate_common::spec::MediaFlowSpec;
use tollgate_sip::{HeaderName, Message, StartLine};

pub const GW1: &str = "192.0.2.10:5060";
pub const GW2: &str = "192.0.2.20:5060";
pub const PROXY: &str = "203.0.113.10:5061";
pub const EXT_SIP: &str = "198.51.100.1:5060";
pub const INT_SIP: &str = "203.0.113.1:5061";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// xorshift64* (deterministic test randomness).
pub fn rng(seed: u64) -> tollgate_b2bua::Rng {
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
            sip_addr: addr(EXT_SIP),
            media_ip: "198.51.100.1".parse().unwrap(),
            transport: Transport::Tcp,
        },
        IntConfig {
            sip_addr: addr(INT_SIP),
            media_ip: "203.0.113.1".parse().unwrap(),
            next_hop: addr(PROXY),
            next_hop_host: "proxy.corp.example".into(),
            next_hop_max_cps: None,
            alternates: Vec::new(),
        },
    );
    let mut gw1 = Trunk::new("gw1", addr(GW1), Transport::Tcp);
    gw1.inbound = vec![
        Rewrite::new(r"^00(\d+)$", "+$1").unwrap(),
        Rewrite::new(r"^0(\d+)$", "+44$1").unwrap(),
    ];
    gw1.outbound = vec![Rewrite::new(r"^\+44(\d+)$", "0$1").unwrap()];
    let mut gw2 = Trunk::new("gw2", addr(GW2), Transport::Tcp);
    gw2.outbound = vec![Rewrite::new(r"^\+(\d+)$", "00$1").unwrap()];
    cfg.trunks = vec![gw1, gw2];
    cfg.routes = vec![Route::new(r"^\+44", &["gw1", "gw2"]).unwrap()];
    cfg.media.ext_ports = 20000..=20009;
    cfg.media.int_ports = 30000..=30009;
    cfg.sip.no_answer_timeout = Duration::from_secs(180);
    cfg.validate().unwrap();
    cfg
}

pub struct H {
    pub b: B2bua,
    pub now: Instant,
    pub t0: Instant,
    pub timers: BTreeMap<TimerId, Instant>,
    pub installed: HashMap<u64, (CallId, MediaFlowSpec)>,
    pub installs: usize,
    pub removes: usize,
    pub cdrs: Vec<Cdr>,
    pub events: Vec<CallEvent>,
    /// The call-state store as the core's StoreCall/ForgetCall left it.
    pub store: BTreeMap<CallId, Vec<u8>>,
    /// StoreCall outputs seen.
    pub stores: usize,
}

impl H {
    pub fn new(cfg: Config) -> H {
        let now = Instant::now();
        let mut h = H {
            b: B2bua::new(cfg, rng(7)),
            now,
            t0: now,
            timers: BTreeMap::new(),
            installed: HashMap::new(),
            installs: 0,
            removes: 0,
            cdrs: Vec::new(),
            events: Vec::new(),
            store: BTreeMap::new(),
            stores: 0,
        };
        let mut out = Vec::new();
        h.b.start(now, &mut out);
        h.track(&out);
        h
    }

    pub fn track(&mut self, out: &[Output]) {
        for o in out {
            match o {
                Output::SetTimer { id, at } => {
                    assert!(self.timers.insert(*id, *at).is_none(), "timer id reused");
                }
                Output::CancelTimer(id) => {
                    self.timers.remove(id);
                }
                Output::InstallMedia { call, spec } => {
                    if let Some((c, _)) = self.installed.get(&spec.id) {
                        assert_eq!(c, call, "flow id moved to another call");
                    } else {
                        self.installs += 1;
                    }
                    self.installed.insert(spec.id, (*call, spec.clone()));
                }
                Output::RemoveMedia { call, flow } => {
                    let (c, _) = self
                        .installed
                        .remove(flow)
                        .expect("RemoveMedia for a flow never installed");
                    assert_eq!(c, *call);
                    self.removes += 1;
                }
                Output::Cdr(cdr) => {
                    assert!(
                        !self.installed.values().any(|(c, _)| *c == cdr.call),
                        "CDR before all RemoveMedia of call {}",
                        cdr.call
                    );
                    assert!(
                        !self.cdrs.iter().any(|c| c.call == cdr.call),
                        "second CDR for call {}",
                        cdr.call
                    );
                    self.cdrs.push(cdr.clone());
                }
                Output::Event(e) => self.events.push(e.clone()),
                Output::StoreCall { call, record } => {
                    self.store.insert(*call, record.clone());
                    self.stores += 1;
                }
                Output::ForgetCall { call } => {
                    assert!(
                        self.store.remove(call).is_some(),
                        "ForgetCall for call {call}, never stored"
                    );
                }
                Output::Send { .. } => {}
            }
        }
    }

    pub fn input(&mut self, i: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.b.handle(i, self.now, &mut out);
        self.track(&out);
        out
    }

    pub fn msg(&mut self, side: Side, conn: u64, peer: &str, text: &str) -> Vec<Output> {
        let msg = Message::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"));
        self.input(Input::Message {
            side,
            conn: ConnId(conn),
            peer: addr(peer),
            msg,
        })
    }

    /// From gateway 1 (its connection 1).
    pub fn gw(&mut self, text: &str) -> Vec<Output> {
        self.msg(Side::Ext, 1, "192.0.2.10:41000", text)
    }

    /// From the internal proxy (its connection 100).
    pub fn int(&mut self, text: &str) -> Vec<Output> {
        self.msg(Side::Int, 100, "203.0.113.10:45000", text)
    }

    /// Moves the clock by `d`, firing due timers in order.
    pub fn advance(&mut self, d: Duration) -> Vec<Output> {
        let end = self.now + d;
        let mut all = Vec::new();
        loop {
            let next = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= end)
                .min_by_key(|(id, at)| (**at, **id))
                .map(|(id, at)| (*id, *at));
            let Some((id, at)) = next else { break };
            self.timers.remove(&id);
            if at > self.now {
                self.now = at;
            }
            let out = self.input(Input::Timer(id));
            all.extend(out);
        }
        self.now = end;
        all
    }
}

pub fn sends(out: &[Output]) -> Vec<(Side, Target, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { side, target, msg } => Some((*side, *target, msg.clone())),
            _ => None,
        })
        .collect()
}

pub fn sent(out: &[Output], side: Side) -> Vec<Message> {
    sends(out)
        .into_iter()
        .filter(|(s, _, _)| *s == side)
        .map(|(_, _, m)| m)
        .collect()
}

/// The start lines of everything sent, as `ext: SIP/2.0 100 Trying` etc.
pub fn lines(out: &[Output]) -> Vec<String> {
    sends(out)
        .iter()
        .map(|(s, _, m)| format!("{s}: {}", line(m)))
        .collect()
}

pub fn line(m: &Message) -> String {
    match &m.start {
        StartLine::Request { method, uri } => format!("{method} {uri}"),
        StartLine::Response { code, reason } => format!("{code} {reason}"),
    }
}

pub fn hdr(m: &Message, name: &str) -> Option<String> {
    m.headers
        .get(&HeaderName::parse(name))
        .map(|h| h.value().to_owned())
}

pub fn body(m: &Message) -> String {
    String::from_utf8(m.body.clone()).unwrap()
}

pub fn find<'a>(msgs: &'a [Message], start: &str) -> &'a Message {
    msgs.iter()
        .find(|m| line(m).starts_with(start))
        .unwrap_or_else(|| {
            panic!(
                "no message starting {start:?} in {:?}",
                msgs.iter().map(line).collect::<Vec<_>>()
            )
        })
}

pub fn sdp(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

pub fn gw_offer() -> String {
    sdp(&[
        "v=0",
        "o=gw 1000 1 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ])
}

pub fn gw_answer(dir: &str) -> String {
    sdp(&[
        "v=0",
        "o=gw 1000 2 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        dir,
    ])
}

pub const KEY1: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
pub const KEY2: &str = "inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj";

pub fn int_answer(dir: &str) -> String {
    sdp(&[
        "v=0",
        "o=int 2000 1 IN IP4 203.0.113.20",
        "s=-",
        "c=IN IP4 203.0.113.20",
        "t=0 0",
        "m=audio 50000 RTP/SAVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY1}"),
        dir,
    ])
}

pub fn int_offer(dir: &str, c: &str) -> String {
    sdp(&[
        "v=0",
        "o=int 2000 1 IN IP4 203.0.113.20",
        "s=-",
        &format!("c=IN IP4 {c}"),
        "t=0 0",
        "m=audio 50000 RTP/SAVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY1}"),
        &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 {KEY2}"),
        dir,
    ])
}

/// A SIP peer's side of one dialog, to write its requests as text.
#[derive(Debug, Clone)]
pub struct Ua {
    /// `SIP/2.0/TCP host:port`
    pub via: String,
    pub call_id: String,
    /// The peer's own From (with tag) in its requests.
    pub me: String,
    /// Our address with our tag.
    pub them: String,
    /// Request-URI for in-dialog requests (our Contact).
    pub target: String,
    pub contact: String,
    pub cseq: u32,
    pub branch: u32,
}

impl Ua {
    pub fn request(&mut self, method: &str, extra: &str, body: Option<&str>) -> String {
        if method != "ACK" && method != "CANCEL" {
            self.cseq += 1;
        }
        self.branch += 1;
        let (ct, b) = match body {
            Some(b) => ("Content-Type: application/sdp\r\n", b),
            None => ("", ""),
        };
        format!(
            "{method} {} SIP/2.0\r\nVia: {};branch=z9hG4bKua{}{}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nContact: {}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{b}",
            self.target,
            self.via,
            self.branch,
            self.cseq,
            self.me,
            self.them,
            self.call_id,
            self.cseq,
            self.contact,
            b.len()
        )
    }

    /// The peer that received `req` (we sent it) and answered with To tag `tag`: its view of
    /// the dialog.
    pub fn from_received(req: &Message, tag: &str, via: &str, contact: &str) -> Ua {
        let mut to = hdr(req, "To").unwrap();
        if !to.contains("tag=") {
            to.push_str(";tag=");
            to.push_str(tag);
        }
        let target = req
            .headers
            .contacts()
            .next()
            .map(|c| c.uri.to_string())
            .unwrap();
        Ua {
            via: via.into(),
            call_id: req.call_id().unwrap().into(),
            me: to,
            them: hdr(req, "From").unwrap(),
            target,
            contact: contact.into(),
            cseq: 100,
            branch: 0,
        }
    }
}

/// A response (as text) to a request we received from Tollgate.
pub fn reply(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    contact: Option<&str>,
    extra: &str,
    body: Option<&str>,
) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers.get_all(&HeaderName::Via) {
        s.push_str(&format!("Via: {}\r\n", v.value()));
    }
    s.push_str(&format!("From: {}\r\n", hdr(req, "From").unwrap()));
    let mut to = hdr(req, "To").unwrap();
    if let Some(t) = to_tag
        && !to.contains("tag=")
    {
        to.push_str(";tag=");
        to.push_str(t);
    }
    s.push_str(&format!("To: {to}\r\n"));
    s.push_str(&format!("Call-ID: {}\r\n", req.call_id().unwrap()));
    s.push_str(&format!("CSeq: {}\r\n", hdr(req, "CSeq").unwrap()));
    if let Some(c) = contact {
        s.push_str(&format!("Contact: {c}\r\n"));
    }
    s.push_str(extra);
    match body {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

/// The gateway's initial INVITE (calling 01632960001 -> called 02079460000).
pub fn gw_invite(call_id: &str, extra: &str, body: Option<&str>) -> String {
    let (ct, b) = match body {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "INVITE sip:02079460000@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:01632960001@192.0.2.10>;tag=gw{call_id}\r\nTo: <sip:02079460000@198.51.100.1>\r\nCall-ID: {call_id}@192.0.2.10\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@192.0.2.10:5060;transport=tcp>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{b}",
        b.len()
    )
}

/// The internal proxy's initial INVITE for an outbound call to `number`.
pub fn int_invite(call_id: &str, number: &str, extra: &str, body: Option<&str>) -> String {
    let (ct, b) = match body {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "INVITE sip:{number}@203.0.113.1:5061;user=phone SIP/2.0\r\nVia: SIP/2.0/TLS 203.0.113.10:5061;branch=z9hG4bK{call_id}\r\nMax-Forwards: 69\r\nFrom: \"Bob\" <sip:+442079460000@corp.example>;tag=int{call_id}\r\nTo: <sip:{number}@corp.example>\r\nCall-ID: {call_id}@corp.example\r\nCSeq: 10 INVITE\r\nContact: <sip:bob@203.0.113.20:5061;transport=tls>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{b}",
        b.len()
    )
}

/// The gateway's view of its dialog after our 2xx (`resp`) to its INVITE `call_id`.
pub fn gw_ua(resp: &Message, call_id: &str) -> Ua {
    let target = resp
        .headers
        .contacts()
        .next()
        .map(|c| c.uri.to_string())
        .unwrap();
    Ua {
        via: "SIP/2.0/TCP 192.0.2.10:5060".into(),
        call_id: format!("{call_id}@192.0.2.10"),
        me: hdr(resp, "From").unwrap(),
        them: hdr(resp, "To").unwrap(),
        target,
        contact: "<sip:gw@192.0.2.10:5060;transport=tcp>".into(),
        cseq: 1,
        branch: 0,
    }
}

/// The internal proxy's view of its dialog after our 2xx (`resp`) to its INVITE.
pub fn int_ua_from_resp(resp: &Message, call_id: &str) -> Ua {
    let target = resp
        .headers
        .contacts()
        .next()
        .map(|c| c.uri.to_string())
        .unwrap();
    Ua {
        via: "SIP/2.0/TLS 203.0.113.10:5061".into(),
        call_id: format!("{call_id}@corp.example"),
        me: hdr(resp, "From").unwrap(),
        them: hdr(resp, "To").unwrap(),
        target,
        contact: "<sip:bob@203.0.113.20:5061;transport=tls>".into(),
        cseq: 10,
        branch: 0,
    }
}

pub fn ev_refused(h: &H) -> Vec<(String, u16)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Refused { reason, status, .. } => {
                Some((reason.as_str().to_owned(), *status))
            }
            _ => None,
        })
        .collect()
}

/// Everything released: no call, no port, no flow, no transaction or timer left (after the
/// transaction timers ran out).
pub fn assert_clean(h: &mut H) {
    h.advance(Duration::from_secs(200));
    assert_eq!(h.b.active_calls(), 0, "calls left");
    for (trunk, _) in h.b.trunk_status() {
        assert_eq!(
            h.b.trunk_calls(&trunk),
            0,
            "calls still counted against {trunk}"
        );
    }
    assert_eq!(h.b.allocated_ports(), (0, 0), "ports left");
    assert!(
        h.installed.is_empty(),
        "flows left: {:?}",
        h.installed.keys()
    );
    assert_eq!(h.b.transactions(), 0, "transactions left");
    assert_eq!(h.installs, h.removes);
    assert_eq!(h.b.armed_timers(), 0, "timers left");
    assert!(h.timers.is_empty(), "driver-side timers left");
}
