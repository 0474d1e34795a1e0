//! The offer/answer rewrite, driven through both legs with exact SDP texts.
//!
//! The random source counts 1, 2, 3, ...: the first 16 bytes are the two legs' `o=` session
//! ids (gateway leg 18155964947595714, internal leg 162836310623749060), the next 30 the first
//! key (`ERIT...`), the next 30 the second (`LzAx...`).

mod common;

use common::{Allocator, counter_rng, ports, sdp};
use tollgate_sdp::{
    ActiveStream, Direction, MediaSession, MediaType, NegotiationError, PeerMedia, RejectReason,
    RewriteConfig, Side, SrtpKeys, StreamPlan, StreamPolicy,
};
use tollgate_srtp::{KeyMaterial, Profile};

const P80: Profile = Profile::Aes128CmHmacSha1_80;
const P32: Profile = Profile::Aes128CmHmacSha1_32;
/// Tollgate's first and second generated keys.
const TG_KEY1: &str = "inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u";
const TG_KEY2: &str = "inline:LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktM";
/// Keys of the internal peer.
const PEER_KEY1: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
const PEER_KEY2: &str = "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";

fn km(p: Profile, s: &str) -> KeyMaterial {
    KeyMaterial::from_sdes(p, s).expect("test key")
}

fn sock(s: &str) -> Option<std::net::SocketAddr> {
    Some(s.parse().expect("test address"))
}

/// A typical PSTN gateway offer (PCMU, PCMA, telephone-event 101, ptime 20).
const GW_OFFER: &str = "v=0\r\n\
o=CiscoSystemsSIP-GW-UserAgent 6442 9273 IN IP4 192.0.2.10\r\n\
s=SIP Call\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 17310 RTP/AVP 0 8 101\r\n\
c=IN IP4 192.0.2.10\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const INT_OFFER_1: &str = "v=0\r\n\
o=tollgate 162836310623749060 1 IN IP4 10.0.0.1\r\n\
s=SIP Call\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/SAVP 0 8 101\r\n\
c=IN IP4 10.0.0.1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktM\r\n";

/// The internal side's answer to [`INT_OFFER_1`]: PCMU and telephone-event, tag 1.
const INT_ANSWER: &str = "v=0\r\n\
o=- 3800000001 3800000001 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
m=audio 52000 RTP/SAVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
a=sendrecv\r\n";

const GW_ANSWER_1: &str = "v=0\r\n\
o=tollgate 18155964947595714 1 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

type Rng = Box<dyn FnMut(&mut [u8])>;

struct Call {
    cfg: RewriteConfig,
    rng: Rng,
    ports: Allocator,
    session: MediaSession,
}

impl Call {
    fn new(cfg: RewriteConfig) -> Self {
        let mut rng: Rng = Box::new(counter_rng());
        let session = MediaSession::new(&mut rng);
        Call {
            cfg,
            rng,
            ports: Allocator::default(),
            session,
        }
    }

    fn offer(
        &mut self,
        from: Side,
        text: &str,
    ) -> Result<tollgate_sdp::OfferOutcome, NegotiationError> {
        self.session.process_offer(
            &self.cfg,
            from,
            &sdp(text),
            &mut self.ports.alloc(),
            &mut self.rng,
        )
    }

    fn answer(
        &mut self,
        from: Side,
        text: &str,
    ) -> Result<tollgate_sdp::AnswerOutcome, NegotiationError> {
        self.session.process_answer(&self.cfg, from, &sdp(text))
    }

    /// The basic inbound call: gateway offer, internal answer.
    fn inbound() -> Self {
        let mut call = Call::new(RewriteConfig::default());
        call.offer(Side::Ext, GW_OFFER).expect("offer");
        call.answer(Side::Int, INT_ANSWER).expect("answer");
        call.session.finish_offer();
        call
    }
}

fn active(plan: &StreamPlan) -> &ActiveStream {
    match plan {
        StreamPlan::Active(a) => a,
        StreamPlan::Rejected { reason, .. } => panic!("stream rejected: {reason}"),
    }
}

#[test]
fn inbound_gateway_offer_becomes_savp_offer_and_answer_comes_back_avp() {
    let mut call = Call::new(RewriteConfig::default());
    let out = call.offer(Side::Ext, GW_OFFER).unwrap();
    assert_eq!(out.sdp.to_string(), INT_OFFER_1);
    assert!(out.rejected.is_empty());
    assert!(out.released.is_empty());
    assert_eq!(call.ports.requests.len(), 1);
    assert_eq!(call.ports.requests[0].offerer, Side::Ext);
    assert_eq!(call.ports.requests[0].media_type, MediaType::Audio);
    assert_eq!(
        call.ports.requests[0].offerer_address,
        Some("192.0.2.10".parse().unwrap())
    );
    assert_eq!(call.session.pending_offerer(), Some(Side::Ext));
    assert_eq!(call.session.held_ports(), vec![ports(0)]);

    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(ans.sdp.to_string(), GW_ANSWER_1);
    assert!(ans.released.is_empty());
    assert_eq!(ans.plan.streams.len(), 1);
    assert_eq!(
        ans.plan.streams[0],
        StreamPlan::Active(ActiveStream {
            media_type: MediaType::Audio,
            relay: ports(0),
            rtcp_mux: false,
            gateway: PeerMedia {
                rtp: sock("192.0.2.10:17310"),
                rtcp: sock("192.0.2.10:17311"),
                direction: Direction::SendRecv,
            },
            internal: PeerMedia {
                rtp: sock("10.1.1.50:52000"),
                rtcp: sock("10.1.1.50:52001"),
                direction: Direction::SendRecv,
            },
            gateway_to_internal: true,
            internal_to_gateway: true,
            srtp: Some(SrtpKeys {
                profile: P80,
                tag: 1,
                tollgate_send: km(P80, TG_KEY1),
                internal_send: km(P80, PEER_KEY1),
            }),
        })
    );
    assert_eq!(ans.plan, call.session.plan());
    assert_eq!(call.session.last_sent(Side::Ext), Some(&ans.sdp));

    // The 200 repeats the answer of an unreliable 183: same text, same o= version.
    let again = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(again.sdp.to_string(), GW_ANSWER_1);
    assert_eq!(call.session.finish_offer(), vec![]);
    assert_eq!(call.session.pending_offerer(), None);
    assert_eq!(call.session.close(), vec![ports(0)]);
}

/// An internal (enterprise to PSTN) offer with two crypto lines, the _32 one first.
const INT_OFFER_SAVP: &str = "v=0\r\n\
o=- 3800000001 3800000001 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
m=audio 52000 RTP/SAVP 0 8 101\r\n\
a=rtcp:52001\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31\r\n";

const GW_OFFER_FROM_INT: &str = "v=0\r\n\
o=tollgate 18155964947595714 1 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 8 101\r\n\
a=rtcp:20001\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n";

const GW_ANSWER_TO_TG: &str = "v=0\r\n\
o=CiscoSystemsSIP-GW-UserAgent 1 1 IN IP4 192.0.2.10\r\n\
s=SIP Call\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 17310 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n";

const INT_ANSWER_FROM_TG: &str = "v=0\r\n\
o=tollgate 162836310623749060 1 IN IP4 10.0.0.1\r\n\
s=SIP Call\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/SAVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u\r\n";

fn outbound() -> Call {
    let mut call = Call::new(RewriteConfig::default());
    let out = call.offer(Side::Int, INT_OFFER_SAVP).expect("offer");
    assert_eq!(out.sdp.to_string(), GW_OFFER_FROM_INT);
    let ans = call.answer(Side::Ext, GW_ANSWER_TO_TG).expect("answer");
    assert_eq!(ans.sdp.to_string(), INT_ANSWER_FROM_TG);
    call.session.finish_offer();
    call
}

#[test]
fn outbound_savp_offer_picks_80_and_answer_echoes_the_tag_with_tollgates_key() {
    let call = outbound();
    let plan = call.session.plan();
    let a = active(&plan.streams[0]);
    assert_eq!(a.relay, ports(0));
    assert!(!a.rtcp_mux);
    assert_eq!(
        a.internal,
        PeerMedia {
            rtp: sock("10.1.1.50:52000"),
            rtcp: sock("10.1.1.50:52001"),
            direction: Direction::SendRecv,
        }
    );
    assert_eq!(
        a.gateway,
        PeerMedia {
            rtp: sock("192.0.2.10:17310"),
            rtcp: sock("192.0.2.10:17311"),
            direction: Direction::SendRecv,
        }
    );
    assert!(a.gateway_to_internal && a.internal_to_gateway);
    let k = a.srtp.as_ref().unwrap();
    assert_eq!(k.profile, P80);
    assert_eq!(k.tag, 2);
    assert_eq!(k.tollgate_send, km(P80, TG_KEY1));
    assert_eq!(k.internal_send, km(P80, &format!("{PEER_KEY1}|2^31")));
    assert_eq!(call.ports.requests[0].offerer, Side::Int);
}

#[test]
fn internal_offer_without_acceptable_crypto_is_488_with_the_reasons() {
    let mut call = Call::new(RewriteConfig::default());
    let text = INT_OFFER_SAVP
        .replace("AES_CM_128_HMAC_SHA1_32", "F8_128_HMAC_SHA1_80")
        .replace("|2^31", "|2^31|1:4");
    let e = call.offer(Side::Int, &text).unwrap_err();
    assert_eq!(e.status_code(), 488);
    assert_eq!(
        e.to_string(),
        "no acceptable media stream: m= line 0: no acceptable a=crypto \
(tag 1: unknown crypto suite F8_128_HMAC_SHA1_80; tag 2: MKI is not supported)"
    );
    assert!(
        call.ports.requests.is_empty(),
        "no port allocated for a refused offer"
    );
    assert_eq!(call.session.pending_offerer(), None);

    let no_crypto: String = INT_OFFER_SAVP
        .lines()
        .filter(|l| !l.starts_with("a=crypto"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert_eq!(
        call.offer(Side::Int, &no_crypto).unwrap_err().to_string(),
        "no acceptable media stream: m= line 0: RTP/SAVP without a=crypto"
    );
    let bad_crypto = INT_OFFER_SAVP.replace("a=crypto:1 ", "a=crypto:x ");
    assert_eq!(
        call.offer(Side::Int, &bad_crypto).unwrap_err().to_string(),
        "no acceptable media stream: m= line 0: bad a=crypto: tag \"x\" is not 1 to 9 digits"
    );
    let short = INT_OFFER_SAVP.replace("|2^31", "|2^20").replace(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        "",
    );
    assert_eq!(
        call.offer(Side::Int, &short).unwrap_err().to_string(),
        "no acceptable media stream: m= line 0: no acceptable a=crypto (tag 2: key lifetime \
1048576 packets is below the minimum 2147483648; re-keying on lifetime is not supported)"
    );
    let unencrypted = INT_OFFER_SAVP
        .replace("|2^31", "|2^31 UNENCRYPTED_SRTP")
        .replace(
            "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
            "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj KDR=4",
        );
    assert_eq!(
        call.offer(Side::Int, &unencrypted).unwrap_err().to_string(),
        "no acceptable media stream: m= line 0: no acceptable a=crypto (tag 1: session parameter \
KDR=4 is not supported; tag 2: session parameter UNENCRYPTED_SRTP is not supported)"
    );
}

#[test]
fn wrong_transport_on_either_side_is_488() {
    let mut call = Call::new(RewriteConfig::default());
    let cases = [
        (
            Side::Ext,
            GW_OFFER.replace("RTP/AVP", "RTP/SAVP"),
            "no acceptable media stream: m= line 0: the gateway side carries plain RTP (RTP/AVP), not RTP/SAVP",
        ),
        (
            Side::Int,
            INT_OFFER_SAVP.replace("RTP/SAVP", "RTP/AVP"),
            "no acceptable media stream: m= line 0: the internal side must use SRTP (RTP/SAVP), not RTP/AVP",
        ),
        (
            Side::Int,
            INT_OFFER_SAVP.replace("RTP/SAVP", "UDP/TLS/RTP/SAVP"),
            "no acceptable media stream: m= line 0: DTLS-SRTP is not supported; SDES a=crypto over RTP/SAVP is required",
        ),
        (
            Side::Ext,
            GW_OFFER.replace("RTP/AVP", "TCP/MSRP"),
            "no acceptable media stream: m= line 0: transport TCP/MSRP is not supported",
        ),
        (
            Side::Ext,
            GW_OFFER
                .replace("c=IN IP4 192.0.2.10\r\nt=", "t=")
                .replace("c=IN IP4 192.0.2.10", "c=IN IP4 media.example.com"),
            "no acceptable media stream: m= line 0: connection address media.example.com is not an IP address",
        ),
        (
            Side::Ext,
            GW_OFFER.replace("a=ptime:20", "a=rtcp:x"),
            "no acceptable media stream: m= line 0: bad a=rtcp: bad port \"x\"",
        ),
    ];
    for (side, text, want) in cases {
        let e = call.offer(side, &text).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert_eq!(e.status_code(), 488);
    }
    assert!(call.ports.requests.is_empty());
}

#[test]
fn hold_and_resume_keep_session_id_and_keys_and_bump_the_version() {
    let mut call = Call::inbound();

    // a=sendonly hold from the gateway.
    let hold = GW_OFFER
        .replace(" 9273 ", " 9274 ")
        .replace("a=sendrecv", "a=sendonly");
    let out = call.offer(Side::Ext, &hold).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        INT_OFFER_1
            .replace(" 1 IN IP4 10.0.0.1", " 2 IN IP4 10.0.0.1")
            .replace("a=sendrecv", "a=sendonly")
    );
    assert_eq!(
        call.ports.requests.len(),
        1,
        "the stream keeps its relay ports"
    );
    let ans = call
        .answer(Side::Int, &INT_ANSWER.replace("a=sendrecv", "a=recvonly"))
        .unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        GW_ANSWER_1
            .replace(" 1 IN IP4 203.0.113.1", " 2 IN IP4 203.0.113.1")
            .replace("a=sendrecv", "a=recvonly")
    );
    let a = active(&ans.plan.streams[0]);
    assert_eq!(a.gateway.direction, Direction::SendOnly);
    assert_eq!(a.internal.direction, Direction::RecvOnly);
    assert!(a.gateway_to_internal);
    assert!(!a.internal_to_gateway);
    assert_eq!(a.srtp.as_ref().unwrap().tollgate_send, km(P80, TG_KEY1));
    call.session.finish_offer();

    // RFC 2543 hold: c=0.0.0.0, kept as such toward the internal side.
    let old_hold = GW_OFFER
        .replace(" 9273 ", " 9275 ")
        .replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
    let out = call.offer(Side::Ext, &old_hold).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        INT_OFFER_1
            .replace(" 1 IN IP4 10.0.0.1", " 3 IN IP4 10.0.0.1")
            .replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0")
    );
    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        GW_ANSWER_1.replace(" 1 IN IP4 203.0.113.1", " 3 IN IP4 203.0.113.1")
    );
    let a = active(&ans.plan.streams[0]);
    assert_eq!(
        a.gateway,
        PeerMedia {
            rtp: None,
            rtcp: None,
            direction: Direction::SendRecv
        }
    );
    assert!(a.gateway_to_internal);
    assert!(!a.internal_to_gateway, "nowhere to send to a held gateway");
    call.session.finish_offer();

    // Resume: the same body as the first offer, with the next version. Toward the gateway the
    // answer is the same as the one sent with version 3, so it keeps version 3 (RFC 3264 §8).
    let resume = GW_OFFER.replace(" 9273 ", " 9276 ");
    let out = call.offer(Side::Ext, &resume).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        INT_OFFER_1.replace(" 1 IN IP4 10.0.0.1", " 4 IN IP4 10.0.0.1")
    );
    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        GW_ANSWER_1.replace(" 1 IN IP4 203.0.113.1", " 3 IN IP4 203.0.113.1")
    );
    let a = active(&ans.plan.streams[0]);
    assert!(a.gateway_to_internal && a.internal_to_gateway);
    assert_eq!(call.ports.requests.len(), 1);
    assert_eq!(call.session.close(), vec![ports(0)]);
}

#[test]
fn internal_rekey_and_suite_change() {
    let mut call = outbound();
    // Same suite, new key from the internal peer: Tollgate keeps its key, the SDP it sends
    // does not change (same version), the plan carries the peer's new key.
    let rekey = INT_OFFER_SAVP
        .replace(" 3800000001 3800000001 ", " 3800000001 3800000002 ")
        .replace(
            "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
        );
    let out = call.offer(Side::Int, &rekey).unwrap();
    assert_eq!(out.sdp.to_string(), GW_OFFER_FROM_INT);
    let ans = call.answer(Side::Ext, GW_ANSWER_TO_TG).unwrap();
    assert_eq!(ans.sdp.to_string(), INT_ANSWER_FROM_TG);
    let k = active(&ans.plan.streams[0]).srtp.clone().unwrap();
    assert_eq!(k.tollgate_send, km(P80, TG_KEY1));
    assert_eq!(
        k.internal_send,
        km(P80, "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd")
    );
    call.session.finish_offer();

    // Suite change to _32: Tollgate answers with a fresh _32 key and a new version.
    let only32 = "v=0\r\n\
o=- 3800000001 3800000003 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
m=audio 52000 RTP/SAVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n";
    let out = call.offer(Side::Int, only32).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        "v=0\r\n\
o=tollgate 18155964947595714 2 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n"
    );
    let ans = call.answer(Side::Ext, GW_ANSWER_TO_TG).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        INT_ANSWER_FROM_TG
            .replace(" 1 IN IP4 10.0.0.1", " 2 IN IP4 10.0.0.1")
            .replace(
                "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u",
                "a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktM"
            )
    );
    let k = active(&ans.plan.streams[0]).srtp.clone().unwrap();
    assert_eq!(k.profile, P32);
    assert_eq!(k.tag, 5);
    assert_eq!(k.tollgate_send, km(P32, TG_KEY2));
    assert_eq!(k.internal_send, km(P32, PEER_KEY2));
}

#[test]
fn gateway_reoffer_after_outbound_call_offers_the_negotiated_key_again() {
    // The internal side chose _80 with Tollgate's key ERIT...; a gateway re-offer makes
    // Tollgate the offerer on the internal leg: the _80 line reuses that key, _32 gets a fresh
    // one, and the internal leg keeps its o= session id with the next version.
    let mut call = outbound();
    let reoffer = GW_ANSWER_TO_TG
        .replace(" 1 1 IN", " 1 2 IN")
        .replace("a=ptime:20", "a=ptime:20\r\na=sendonly");
    let out = call.offer(Side::Ext, &reoffer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        "v=0\r\n\
o=tollgate 162836310623749060 2 IN IP4 10.0.0.1\r\n\
s=SIP Call\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/SAVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendonly\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktM\r\n"
    );
}

#[test]
fn rtcp_mux_is_kept_when_both_sides_multiplex() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = GW_OFFER.replace("a=ptime:20", "a=ptime:20\r\na=rtcp:17311\r\na=rtcp-mux");
    let out = call.offer(Side::Ext, &offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        INT_OFFER_1.replace("a=ptime:20", "a=ptime:20\r\na=rtcp:30001\r\na=rtcp-mux")
    );
    let answer = INT_ANSWER.replace("a=ptime:20", "a=ptime:20\r\na=rtcp:52000\r\na=rtcp-mux");
    let ans = call.answer(Side::Int, &answer).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        GW_ANSWER_1.replace("a=ptime:20", "a=ptime:20\r\na=rtcp:20000\r\na=rtcp-mux")
    );
    let a = active(&ans.plan.streams[0]);
    assert!(a.rtcp_mux);
    assert_eq!(a.gateway.rtcp, None);
    assert_eq!(a.internal.rtcp, None);

    // Offered but not answered: separate RTCP, at the offerer's a=rtcp.
    let mut call = Call::new(RewriteConfig::default());
    let offer = GW_OFFER.replace(
        "a=ptime:20",
        "a=ptime:20\r\na=rtcp:17401 IN IP4 192.0.2.11\r\na=rtcp-mux",
    );
    call.offer(Side::Ext, &offer).unwrap();
    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    let a = active(&ans.plan.streams[0]);
    assert!(!a.rtcp_mux);
    assert_eq!(a.gateway.rtcp, sock("192.0.2.11:17401"));
    assert_eq!(a.internal.rtcp, sock("10.1.1.50:52001"));
}

#[test]
fn ipv6_gateway_gets_an_ipv6_relay_address() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = GW_OFFER.replace("IN IP4 192.0.2.10", "IN IP6 2001:db8:5::10");
    let out = call.offer(Side::Ext, &offer).unwrap();
    assert_eq!(out.sdp.to_string(), INT_OFFER_1);
    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        GW_ANSWER_1.replace("IN IP4 203.0.113.1", "IN IP6 2001:db8:ffff::1")
    );
    let a = active(&ans.plan.streams[0]);
    assert_eq!(a.gateway.rtp, sock("[2001:db8:5::10]:17310"));
    assert_eq!(a.relay.gateway, "[2001:db8:ffff::1]:20000".parse().unwrap());
}

#[test]
fn rejected_and_non_audio_streams_stay_rejected_with_port_0() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = format!(
        "{GW_OFFER}m=video 17320 RTP/AVP 34\r\na=rtpmap:34 H263/90000\r\nm=audio 0 RTP/AVP 0\r\n"
    );
    let out = call.offer(Side::Ext, &offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        format!("{INT_OFFER_1}m=video 0 RTP/SAVP 34\r\nm=audio 0 RTP/SAVP 0\r\n")
    );
    assert_eq!(
        out.rejected,
        vec![
            (1, RejectReason::MediaTypeNotRelayed(MediaType::Video)),
            (2, RejectReason::DisabledByOfferer),
        ]
    );
    assert_eq!(
        out.rejected[0].1.to_string(),
        "video streams are not relayed"
    );
    assert_eq!(call.ports.requests.len(), 1);
    let answer = format!("{INT_ANSWER}m=video 0 RTP/SAVP 34\r\nm=audio 0 RTP/SAVP 0\r\n");
    let ans = call.answer(Side::Int, &answer).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        format!("{GW_ANSWER_1}m=video 0 RTP/AVP 34\r\nm=audio 0 RTP/AVP 0\r\n")
    );
    assert_eq!(
        ans.plan.streams[1],
        StreamPlan::Rejected {
            media_type: MediaType::Video,
            reason: RejectReason::MediaTypeNotRelayed(MediaType::Video)
        }
    );
    assert_eq!(
        ans.plan.streams[2],
        StreamPlan::Rejected {
            media_type: MediaType::Audio,
            reason: RejectReason::DisabledByOfferer
        }
    );

    // With video relayed, it gets its own ports and SRTP.
    let mut call = Call::new(RewriteConfig {
        video: StreamPolicy::Relay,
        ..RewriteConfig::default()
    });
    let out = call.offer(Side::Ext, &offer).unwrap();
    assert!(
        out.sdp.to_string().contains(
            "m=video 30002 RTP/SAVP 34\r\n\
a=rtpmap:34 H263/90000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:TU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlq\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:a2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4SFhoeI\r\n\
m=audio 0 RTP/SAVP 0\r\n"
        ),
        "{}",
        out.sdp
    );
    assert_eq!(call.ports.requests.len(), 2);

    // The answerer rejecting the relayed video frees its ports once the offer is finished.
    let answer = format!("{INT_ANSWER}m=video 0 RTP/SAVP 34\r\nm=audio 0 RTP/SAVP 0\r\n");
    let ans = call.answer(Side::Int, &answer).unwrap();
    assert_eq!(
        ans.plan.streams[1],
        StreamPlan::Rejected {
            media_type: MediaType::Video,
            reason: RejectReason::RejectedByAnswerer
        }
    );
    assert!(ans.released.is_empty(), "held until the offer is finished");
    assert_eq!(call.session.finish_offer(), vec![ports(1)]);
    assert_eq!(call.session.close(), vec![ports(0)]);
}

const T38_REOFFER: &str = "v=0\r\n\
o=CiscoSystemsSIP-GW-UserAgent 6442 9274 IN IP4 192.0.2.10\r\n\
s=SIP Call\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=image 17312 udptl t38\r\n\
c=IN IP4 192.0.2.10\r\n\
a=T38FaxVersion:0\r\n\
a=T38MaxBitRate:14400\r\n\
a=T38FaxRateManagement:transferredTCF\r\n\
a=T38FaxMaxDatagram:160\r\n\
a=T38FaxUdpEC:t38UDPRedundancy\r\n";

#[test]
fn t38_reoffer_is_refused_by_default_and_relayed_when_enabled() {
    let mut call = Call::inbound();
    let before = call.session.plan();
    let e = call.offer(Side::Ext, T38_REOFFER).unwrap_err();
    assert_eq!(e.status_code(), 488);
    assert_eq!(
        e.to_string(),
        "no acceptable media stream: m= line 0: image streams are not relayed"
    );
    assert_eq!(
        call.session.plan(),
        before,
        "a refused re-offer changes nothing"
    );

    let mut call = Call::inbound();
    call.cfg.image = StreamPolicy::Relay;
    let out = call.offer(Side::Ext, T38_REOFFER).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        T38_REOFFER
            .replace(
                "o=CiscoSystemsSIP-GW-UserAgent 6442 9274 IN IP4 192.0.2.10",
                "o=tollgate 162836310623749060 2 IN IP4 10.0.0.1"
            )
            .replace("192.0.2.10", "10.0.0.1")
            .replace("m=image 17312", "m=image 30000")
    );
    let answer = "v=0\r\n\
o=- 3800000001 3800000002 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
m=image 52004 udptl t38\r\n\
a=T38FaxVersion:0\r\n\
a=T38MaxBitRate:14400\r\n\
a=T38FaxRateManagement:transferredTCF\r\n";
    let ans = call.answer(Side::Int, answer).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        "v=0\r\n\
o=tollgate 18155964947595714 2 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=image 20000 udptl t38\r\n\
a=T38FaxVersion:0\r\n\
a=T38MaxBitRate:14400\r\n\
a=T38FaxRateManagement:transferredTCF\r\n"
    );
    let a = active(&ans.plan.streams[0]);
    assert_eq!(a.media_type, MediaType::Image);
    assert_eq!(a.relay, ports(0), "the slot keeps its relay ports");
    assert_eq!(a.srtp, None);
    assert_eq!(a.gateway.rtp, sock("192.0.2.10:17312"));
    assert_eq!(a.internal.rtp, sock("10.1.1.50:52004"));
    assert_eq!(call.ports.requests.len(), 1);
}

#[test]
fn t38_added_beside_a_disabled_audio_stream_moves_to_new_ports() {
    let mut call = Call::inbound();
    call.cfg.image = StreamPolicy::Relay;
    let reoffer = GW_OFFER
        .replace(" 9273 ", " 9274 ")
        .replace("m=audio 17310", "m=audio 0")
        + "m=image 17312 udptl t38\r\na=T38FaxVersion:0\r\n";
    let out = call.offer(Side::Ext, &reoffer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        "v=0\r\n\
o=tollgate 162836310623749060 2 IN IP4 10.0.0.1\r\n\
s=SIP Call\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
m=audio 0 RTP/SAVP 0 8 101\r\n\
m=image 30002 udptl t38\r\n\
a=T38FaxVersion:0\r\n"
    );
    assert_eq!(out.rejected, vec![(0, RejectReason::DisabledByOfferer)]);
    let answer = "v=0\r\n\
o=- 3800000001 3800000002 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
m=audio 0 RTP/SAVP 0\r\n\
m=image 52004 udptl t38\r\n\
a=T38FaxVersion:0\r\n";
    let ans = call.answer(Side::Int, answer).unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        "v=0\r\n\
o=tollgate 18155964947595714 2 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=image 20002 udptl t38\r\n\
a=T38FaxVersion:0\r\n"
    );
    assert_eq!(
        ans.released,
        vec![ports(0)],
        "the audio stream's ports are freed"
    );
    assert_eq!(call.session.finish_offer(), vec![]);
    assert_eq!(call.session.close(), vec![ports(1)]);
}

#[test]
fn answer_faults_are_488_and_leave_the_offer_pending() {
    let mut call = Call::new(RewriteConfig::default());
    assert_eq!(
        call.answer(Side::Int, INT_ANSWER).unwrap_err(),
        NegotiationError::NoOfferPending
    );
    call.offer(Side::Ext, GW_OFFER).unwrap();
    let tag1 = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let cases = [
        (
            INT_ANSWER.replace("a=crypto:1 ", "a=crypto:3 "),
            "answer m= line 0: a=crypto tag 3 was not offered",
        ),
        (
            INT_ANSWER.replace("_80", "_32"),
            "answer m= line 0: a=crypto tag 1 answers AES_CM_128_HMAC_SHA1_32, the offer had AES_CM_128_HMAC_SHA1_80",
        ),
        (
            INT_ANSWER.replace(&format!("{tag1}\r\n"), ""),
            "answer m= line 0: 0 a=crypto lines; an answer carries exactly one",
        ),
        (
            INT_ANSWER.replace(tag1, &format!("{tag1}\r\n{}", tag1.replace(":1 ", ":2 "))),
            "answer m= line 0: 2 a=crypto lines; an answer carries exactly one",
        ),
        (
            INT_ANSWER.replace("mcjkpPywjNWhcYD0mXXtxaVBR", "mcjkpPywjNWhcYD0mXXtxaVBR|1:4"),
            "answer m= line 0: MKI is not supported",
        ),
        (
            INT_ANSWER.replace("a=crypto:1 AES", "a=crypto:1  AES"),
            "answer m= line 0: bad a=crypto: tag 1: bad crypto suite \"\"",
        ),
        (
            INT_ANSWER.replace("RTP/SAVP", "RTP/AVP"),
            "answer m= line 0: protocol RTP/AVP does not match the offered RTP/SAVP",
        ),
        (
            INT_ANSWER.replace("c=IN IP4 10.1.1.50", "c=IN IP4 media.example.com"),
            "answer m= line 0: connection address media.example.com is not an IP address",
        ),
        (
            format!("{INT_ANSWER}m=video 0 RTP/SAVP 34\r\n"),
            "the answer has 2 m= lines, the offer had 1",
        ),
    ];
    for (text, want) in cases {
        let e = call.answer(Side::Int, &text).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert_eq!(e.status_code(), 488);
    }
    let e = call.answer(Side::Ext, GW_OFFER).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the answer comes from the gateway leg, which made the offer"
    );
    assert_eq!(e.status_code(), 500);
    assert_eq!(call.session.pending_offerer(), Some(Side::Ext));
    // The right answer still works.
    let ans = call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(ans.sdp.to_string(), GW_ANSWER_1);
}

#[test]
fn relay_ports_are_released_exactly_once() {
    let mut call = Call::new(RewriteConfig::default());
    call.offer(Side::Ext, GW_OFFER).unwrap();
    assert_eq!(call.session.offer_failed(), vec![ports(0)]);
    assert!(call.session.held_ports().is_empty());

    // A second attempt allocates anew; after the answer the stream owns the ports.
    call.offer(Side::Ext, GW_OFFER).unwrap();
    call.answer(Side::Int, INT_ANSWER).unwrap();
    assert_eq!(call.session.finish_offer(), vec![]);
    // A failed re-offer keeps the negotiated stream's ports.
    call.offer(Side::Ext, &GW_OFFER.replace("a=sendrecv", "a=inactive"))
        .unwrap();
    assert_eq!(call.session.offer_failed(), vec![]);
    assert_eq!(call.session.held_ports(), vec![ports(1)]);
    assert_eq!(call.session.close(), vec![ports(1)]);

    // An allocator with no ports: 488 naming the cause.
    let mut call = Call::new(RewriteConfig::default());
    call.ports.exhausted = true;
    let e = call.offer(Side::Ext, GW_OFFER).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no acceptable media stream: m= line 0: no relay port available"
    );
}

#[test]
fn reoffer_cannot_remove_m_lines() {
    let mut call = Call::new(RewriteConfig::default());
    let two = format!("{GW_OFFER}m=audio 0 RTP/AVP 0\r\n");
    call.offer(Side::Ext, &two).unwrap();
    call.answer(Side::Int, &format!("{INT_ANSWER}m=audio 0 RTP/SAVP 0\r\n"))
        .unwrap();
    let e = call.offer(Side::Ext, GW_OFFER).unwrap_err();
    assert_eq!(
        e,
        NegotiationError::StreamsRemoved {
            previous: 2,
            now: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "the offer has 1 m= lines, the session has 2; m= lines cannot be removed"
    );
}

#[test]
fn end_to_end_transport_attributes_are_not_forwarded() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = "v=0\r\n\
o=- 3800000001 3800000001 IN IP4 10.1.1.50\r\n\
s=-\r\n\
c=IN IP4 10.1.1.50\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=x-keep:session\r\n\
m=audio 52000 RTP/SAVP 0\r\n\
i=main audio\r\n\
k=clear:old\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:0123456789012345678901\r\n\
a=candidate:1 1 UDP 2130706431 10.1.1.50 52000 typ host\r\n\
a=fingerprint:sha-256 00:11\r\n\
a=setup:actpass\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
a=x-keep:media\r\n";
    let out = call.offer(Side::Int, offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        "v=0\r\n\
o=tollgate 18155964947595714 1 IN IP4 203.0.113.1\r\n\
s=-\r\n\
c=IN IP4 203.0.113.1\r\n\
t=0 0\r\n\
a=x-keep:session\r\n\
m=audio 20000 RTP/AVP 0\r\n\
i=main audio\r\n\
a=x-keep:media\r\n"
    );
}

#[test]
fn media_level_connection_only_is_rewritten_per_stream() {
    // No session-level c=: every stream gets its own, a rejected one the first relay address.
    let mut call = Call::new(RewriteConfig::default());
    let offer = "v=0\r\n\
o=- 1 1 IN IP4 192.0.2.10\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 17310 RTP/AVP 0\r\n\
i=first\r\n\
c=IN IP4 192.0.2.10\r\n\
m=text 17330 RTP/AVP 98\r\n\
c=IN IP4 192.0.2.10\r\n";
    let out = call.offer(Side::Ext, offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        "v=0\r\n\
o=tollgate 162836310623749060 1 IN IP4 10.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 30000 RTP/SAVP 0\r\n\
i=first\r\n\
c=IN IP4 10.0.0.1\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0u\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:LzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktM\r\n\
m=text 0 RTP/SAVP 98\r\n\
c=IN IP4 10.0.0.1\r\n"
    );
}

#[test]
fn offer_suites_are_configurable() {
    let mut call = Call::new(RewriteConfig {
        offer_suites: vec![P80, Profile::AeadAes128Gcm, Profile::Aes256CmHmacSha1_80],
        ..RewriteConfig::default()
    });
    let out = call.offer(Side::Ext, GW_OFFER).unwrap();
    let crypto: Vec<String> = out.sdp.media[0]
        .crypto()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.tag, c.suite))
        .collect();
    assert_eq!(
        crypto,
        [
            "1 AES_CM_128_HMAC_SHA1_80",
            "2 AEAD_AES_128_GCM",
            "3 AES_256_CM_HMAC_SHA1_80"
        ]
    );
    // The internal side picks GCM.
    let gcm = out.sdp.media[0].crypto().unwrap()[1].clone();
    let ans = call
        .answer(
            Side::Int,
            &INT_ANSWER.replace(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                "a=crypto:2 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==",
            ),
        )
        .unwrap();
    let k = active(&ans.plan.streams[0]).srtp.clone().unwrap();
    assert_eq!(k.profile, Profile::AeadAes128Gcm);
    assert_eq!(k.tollgate_send.to_sdes(), gcm.key_params[0]);
}

#[test]
fn initial_offer_on_hold_still_gets_tollgates_address_in_o_line() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = GW_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
    let out = call.offer(Side::Ext, &offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        INT_OFFER_1.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0")
    );
    assert_eq!(call.ports.requests[0].offerer_address, None);
}

#[test]
fn a_rejected_stream_is_answered_with_the_offerers_own_protocol() {
    let mut call = Call::new(RewriteConfig::default());
    let offer = format!("{INT_OFFER_SAVP}m=audio 52002 RTP/AVP 0\r\n");
    let out = call.offer(Side::Int, &offer).unwrap();
    assert_eq!(
        out.sdp.to_string(),
        format!("{GW_OFFER_FROM_INT}m=audio 0 RTP/AVP 0\r\n")
    );
    assert_eq!(out.rejected, vec![(1, RejectReason::PlainRtpFromInternal)]);
    let ans = call
        .answer(
            Side::Ext,
            &format!("{GW_ANSWER_TO_TG}m=audio 0 RTP/AVP 0\r\n"),
        )
        .unwrap();
    assert_eq!(
        ans.sdp.to_string(),
        format!("{INT_ANSWER_FROM_TG}m=audio 0 RTP/AVP 0\r\n")
    );
}

#[test]
fn config_validation_names_the_setting() {
    assert_eq!(RewriteConfig::default().validate(), Ok(()));
    let with = |f: &dyn Fn(&mut RewriteConfig)| {
        let mut c = RewriteConfig::default();
        f(&mut c);
        c.validate().expect_err("invalid config")
    };
    assert_eq!(
        with(&|c| c.offer_suites.clear()),
        "offer_suites: at least one SRTP suite must be offered"
    );
    assert_eq!(
        with(&|c| c.offer_suites.push(P80)),
        "offer_suites: AES_CM_128_HMAC_SHA1_80 is listed twice"
    );
    assert_eq!(
        with(&|c| c.crypto.suites = vec![P80]),
        "offer_suites: AES_CM_128_HMAC_SHA1_32 is offered but not in the accepted suites"
    );
    assert_eq!(
        with(&|c| c.origin_username = "tolL gate".into()),
        "origin_username: \"tolL gate\" must be a non-empty word without spaces"
    );
}
