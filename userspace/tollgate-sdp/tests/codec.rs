//! SDP codec: round trips, typed access and every parse error, with exact texts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tollgate_sdp::{
    Attribute, Bandwidth, Connection, Direction, Fmtp, Line, MediaType, ParseErrorKind, Proto,
    Rtcp, Rtpmap, Sdp, Timing,
};

/// A typical PSTN gateway offer (PCMU, PCMA, telephone-event 101, ptime 20).
const GATEWAY_OFFER: &str = "v=0\r\n\
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

/// Every line type RFC 8866 defines, an unknown line type and unknown attributes.
const EVERY_LINE: &str = "v=0\r\n\
o=jdoe 2890844526 2890842807 IN IP4 198.51.100.5\r\n\
s=SDP Seminar\r\n\
i=A Seminar on the session description protocol\r\n\
u=http://www.example.com/seminars/sdp.pdf\r\n\
e=j.doe@example.com (Jane Doe)\r\n\
p=+1 617 555-6011\r\n\
c=IN IP4 233.252.0.1/127\r\n\
b=CT:128\r\n\
t=2873397496 2873404696\r\n\
r=7d 1h 0 25h\r\n\
z=2882844526 -1h 2898848070 0\r\n\
k=prompt\r\n\
a=recvonly\r\n\
a=x-vendor:opaque value with  two spaces\r\n\
y=unknown line type\r\n\
m=audio 49170/2 RTP/AVP 0\r\n\
i=voice\r\n\
b=AS:64\r\n\
k=clear:secret\r\n\
a=x-flag\r\n\
m=video 51372 RTP/AVPF 99\r\n\
c=IN IP6 2001:db8::7\r\n\
b=TIAS:512000\r\n\
a=rtpmap:99 h263-1998/90000\r\n\
a=rtcp-fb:99 nack\r\n";

#[test]
fn gateway_offer_round_trips_and_reads() {
    let sdp = Sdp::parse(GATEWAY_OFFER.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), GATEWAY_OFFER);
    assert_eq!(sdp.to_bytes(), GATEWAY_OFFER.as_bytes());

    assert_eq!(sdp.origin.username, "CiscoSystemsSIP-GW-UserAgent");
    assert_eq!(sdp.origin.session_id, "6442");
    assert_eq!(sdp.origin.session_version, "9273");
    assert_eq!(sdp.origin.version_u64(), Some(9273));
    assert_eq!(sdp.session_name, "SIP Call");
    assert_eq!(
        sdp.connection().and_then(Connection::ip),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
    );
    let m = &sdp.media[0];
    assert_eq!(m.media_type, MediaType::Audio);
    assert_eq!(m.port, 17310);
    assert_eq!(m.port_count, None);
    assert_eq!(m.proto, Proto::RtpAvp);
    assert_eq!(m.formats, ["0", "8", "101"]);
    assert_eq!(
        m.rtpmaps().unwrap(),
        vec![
            Rtpmap {
                payload_type: 0,
                encoding: "PCMU".into(),
                clock_rate: 8000,
                params: None
            },
            Rtpmap {
                payload_type: 8,
                encoding: "PCMA".into(),
                clock_rate: 8000,
                params: None
            },
            Rtpmap {
                payload_type: 101,
                encoding: "telephone-event".into(),
                clock_rate: 8000,
                params: None
            },
        ]
    );
    let fmtp = m.fmtp("101").unwrap().unwrap();
    assert_eq!(fmtp.params, "0-15");
    assert_eq!(fmtp.pairs().collect::<Vec<_>>(), [("0-15", None)]);
    assert_eq!(m.fmtp("0").unwrap(), None);
    assert_eq!(m.ptime().unwrap(), Some(20));
    assert_eq!(m.maxptime().unwrap(), None);
    assert_eq!(m.rtcp().unwrap(), None);
    assert!(!m.rtcp_mux());
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert_eq!(sdp.media_direction(0), Direction::SendRecv);
    assert!(m.crypto().unwrap().is_empty());
}

#[test]
fn every_line_type_round_trips() {
    let sdp = Sdp::parse(EVERY_LINE.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), EVERY_LINE);
    let kinds: String = sdp.lines.iter().map(Line::kind).collect();
    assert_eq!(kinds, "iuepcbtrzkaay");
    assert_eq!(
        sdp.lines[4],
        Line::Connection(Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "233.252.0.1/127".into()
        })
    );
    // A multicast address with a TTL is not a unicast IP.
    assert_eq!(sdp.connection().unwrap().ip(), None);
    assert_eq!(
        sdp.lines[5],
        Line::Bandwidth(Bandwidth {
            bw_type: "CT".into(),
            value: 128
        })
    );
    assert_eq!(
        sdp.lines[6],
        Line::Timing(Timing {
            start: 2873397496,
            stop: 2873404696
        })
    );
    assert_eq!(
        sdp.lines[11],
        Line::Attribute(Attribute::new("x-vendor", "opaque value with  two spaces"))
    );
    assert_eq!(
        sdp.lines[12],
        Line::Other {
            kind: 'y',
            value: "unknown line type".into()
        }
    );
    assert_eq!(sdp.direction(), Some(Direction::RecvOnly));
    // Media 0 inherits the session's direction; media 1 too.
    assert_eq!(sdp.media_direction(0), Direction::RecvOnly);
    assert_eq!(sdp.media[0].port_count, Some(2));
    assert_eq!(
        sdp.media[0].attribute("x-flag"),
        Some(&Attribute::flag("x-flag"))
    );
    assert_eq!(sdp.media[1].proto, Proto::RtpAvpf);
    assert_eq!(
        sdp.media_connection(1).and_then(Connection::ip),
        Some(IpAddr::V6("2001:db8::7".parse::<Ipv6Addr>().unwrap()))
    );
    assert_eq!(
        sdp.media_connection(0).map(|c| c.address.as_str()),
        Some("233.252.0.1/127")
    );
}

#[test]
fn bare_lf_is_accepted_and_written_as_crlf() {
    let lf = GATEWAY_OFFER.replace("\r\n", "\n");
    let sdp = Sdp::parse(lf.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), GATEWAY_OFFER);
    // Mixed line ends, no final line end, and trailing empty lines are accepted too.
    let mixed =
        "v=0\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\nc=IN IP4 192.0.2.1\r\nt=0 0\nm=audio 5004 RTP/AVP 0";
    let sdp: Sdp = mixed.parse().unwrap();
    assert_eq!(
        sdp.to_string(),
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    );
    let trailing = format!("{GATEWAY_OFFER}\r\n\r\n");
    assert_eq!(
        Sdp::parse(trailing.as_bytes()).unwrap().to_string(),
        GATEWAY_OFFER
    );
}

#[test]
fn internal_savp_offer_reads_crypto_rtcp_and_mux() {
    let text = "v=0\r\n\
o=- 3800000001 3800000001 IN IP6 2001:db8:1::20\r\n\
s=-\r\n\
c=IN IP6 2001:db8:1::20\r\n\
t=0 0\r\n\
m=audio 40000 RTP/SAVP 0 101\r\n\
a=rtcp:40001 IN IP6 2001:db8:1::21\r\n\
a=rtcp-mux\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4 KDR=1 UNENCRYPTED_SRTCP\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n\
a=inactive\r\n";
    let sdp = Sdp::parse(text.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), text);
    let m = &sdp.media[0];
    assert_eq!(m.proto, Proto::RtpSavp);
    assert!(m.rtcp_mux());
    assert_eq!(
        m.rtcp().unwrap(),
        Some(Rtcp {
            port: 40001,
            connection: Some(Connection::new("2001:db8:1::21".parse().unwrap()))
        })
    );
    assert_eq!(m.direction(), Some(Direction::Inactive));
    let c = m.crypto().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].tag, 1);
    assert_eq!(c[0].suite, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(
        c[0].key_params,
        ["inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"]
    );
    assert_eq!(c[0].session_params, ["KDR=1", "UNENCRYPTED_SRTCP"]);
    assert_eq!(
        c[0].to_string(),
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4 KDR=1 UNENCRYPTED_SRTCP"
    );
    assert_eq!(c[1].tag, 2);
    assert_eq!(
        c[1].profile(),
        Some(tollgate_srtp::Profile::Aes128CmHmacSha1_32)
    );
}

#[test]
fn origin_version_increments_in_decimal() {
    let mut o = Sdp::parse(GATEWAY_OFFER.as_bytes()).unwrap().origin;
    for (from, to) in [
        ("0", "1"),
        ("9", "10"),
        ("199", "200"),
        ("0099", "0100"),
        ("18446744073709551615", "18446744073709551616"),
    ] {
        o.session_version = from.into();
        o.increment_version();
        assert_eq!(o.session_version, to);
    }
    assert_eq!(o.version_u64(), None);
    o.session_version = "x9".into();
    o.increment_version();
    assert_eq!(o.session_version, "1");
    let o = tollgate_sdp::Origin::new("tollgate", 7, 1, "2001:db8::1".parse().unwrap());
    assert_eq!(o.to_string(), "tollgate 7 1 IN IP6 2001:db8::1");
}

#[test]
fn typed_attributes_format_canonically() {
    let r = Rtpmap::parse("111 opus/48000/2").unwrap();
    assert_eq!(r.params.as_deref(), Some("2"));
    assert_eq!(r.to_string(), "111 opus/48000/2");
    let f = Fmtp::parse("18 annexb=no; x=1").unwrap();
    assert_eq!(
        f.pairs().collect::<Vec<_>>(),
        [("annexb", Some("no")), ("x", Some("1"))]
    );
    assert_eq!(f.to_string(), "18 annexb=no; x=1");
    assert_eq!(Rtcp::parse("53020").unwrap().to_string(), "53020");
    assert_eq!(
        Rtcp::parse("53020 IN IP4 126.16.64.4").unwrap().to_string(),
        "53020 IN IP4 126.16.64.4"
    );
    for d in ["sendrecv", "sendonly", "recvonly", "inactive"] {
        assert_eq!(Direction::from_attribute_name(d).unwrap().as_str(), d);
    }
    assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
    assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
    assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    assert!(Connection::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).is_unspecified());
    assert!(Connection::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).is_unspecified());
}

fn err(text: &str) -> String {
    Sdp::parse(text.as_bytes())
        .expect_err("the body must be refused")
        .to_string()
}

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";

#[test]
fn parse_errors_name_line_and_fault() {
    let cases: &[(String, &str)] = &[
        (String::new(), "SDP line 0: the SDP body is empty"),
        ("\r\n\r\n".into(), "SDP line 0: the SDP body is empty"),
        (
            "v=0\r\n\r\no=- 1 1 IN IP4 192.0.2.1\r\n".into(),
            "SDP line 2: empty line inside the SDP body",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\rs=-\r\n".into(),
            "SDP line 2: line contains a NUL or a stray CR",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\0\r\n".into(),
            "SDP line 2: line contains a NUL or a stray CR",
        ),
        (
            "o=- 1 1 IN IP4 1.2.3.4\r\n".into(),
            "SDP line 1: the first line must be v=0, found \"o=- 1 1 IN IP4 1.2.3.4\"",
        ),
        ("v=1\r\n".into(), "SDP line 1: unsupported SDP version v=1"),
        (
            "v=0\r\n".into(),
            "SDP line 1: the body ends before the mandatory v=, o=, s= lines",
        ),
        (
            "v=0\r\ns=-\r\n".into(),
            "SDP line 2: o= must follow v=, found \"s=-\"",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=0 0\r\n".into(),
            "SDP line 3: s= must follow o=, found \"t=0 0\"",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4\r\n".into(),
            "SDP line 2: bad o= line: expected 6 space-separated fields, found 5",
        ),
        (
            "v=0\r\no=- 1  1 IN IP4\r\n".into(),
            "SDP line 2: bad o= line: empty field (double space?)",
        ),
        (
            "v=0\r\no=- 1x 1 IN IP4 1.2.3.4\r\n".into(),
            "SDP line 2: bad o= line: session id \"1x\" is not a decimal number",
        ),
        (
            "v=0\r\no=- 1 v2 IN IP4 1.2.3.4\r\n".into(),
            "SDP line 2: bad o= line: session version \"v2\" is not a decimal number",
        ),
        (
            format!("{HEAD}t=0 0\r\nv=0\r\n"),
            "SDP line 5: v= may appear only once per session",
        ),
        (
            format!("{HEAD}t=0 0\r\no=x\r\n"),
            "SDP line 5: o= may appear only once per session",
        ),
        (
            format!("{HEAD}c=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.5\r\n"),
            "SDP line 5: c= may appear only once per session",
        ),
        (
            format!("{HEAD}t=0 0\r\nxx\r\n"),
            "SDP line 5: line is not <type letter>=<value>: \"xx\"",
        ),
        (
            format!("{HEAD}t=0 0\r\nA=1\r\n"),
            "SDP line 5: line is not <type letter>=<value>: \"A=1\"",
        ),
        (
            format!("{HEAD}t=0 0\r\n=1\r\n"),
            "SDP line 5: line is not <type letter>=<value>: \"=1\"",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 0 RTP/AVP 0\r\nt=0 0\r\n"),
            "SDP line 6: t= is not allowed inside a media description",
        ),
        (
            format!("{HEAD}c=IN IP4 1.2.3.4\r\n"),
            "SDP line 4: the session has no t= line",
        ),
        (
            format!("{HEAD}c=IN IP4\r\n"),
            "SDP line 4: bad c= line: expected <nettype> <addrtype> <address>, found 2 fields",
        ),
        (
            format!("{HEAD}c=IN IP4 1.2.3\r\n"),
            "SDP line 4: bad c= line: \"1.2.3\" is not an IPv4 address or host name",
        ),
        (
            format!("{HEAD}c=IN IP4 host_name\r\n"),
            "SDP line 4: bad c= line: \"host_name\" is not an IPv4 address or host name",
        ),
        (
            format!("{HEAD}c=IN IP6 2001:db8::x\r\n"),
            "SDP line 4: bad c= line: \"2001:db8::x\" is not an IPv6 address or host name",
        ),
        (
            format!("{HEAD}c=IN IP4 233.252.0.1/\r\n"),
            "SDP line 4: bad c= line: bad multicast suffix in \"233.252.0.1/\"",
        ),
        (
            format!("{HEAD}c=IN  1.2.3.4\r\n"),
            "SDP line 4: bad c= line: empty field (double space?)",
        ),
        (
            format!("{HEAD}b=AS\r\n"),
            "SDP line 4: bad b= line: expected <bwtype>:<bandwidth>, found \"AS\"",
        ),
        (
            format!("{HEAD}b=AS:64k\r\n"),
            "SDP line 4: bad b= line: bandwidth \"64k\" is not a decimal number",
        ),
        (
            format!("{HEAD}b=A S:64\r\n"),
            "SDP line 4: bad b= line: bad bandwidth type \"A S\"",
        ),
        (
            format!("{HEAD}t=0\r\n"),
            "SDP line 4: bad t= line: expected <start> <stop>, found \"0\"",
        ),
        (
            format!("{HEAD}t=0 now\r\n"),
            "SDP line 4: bad t= line: time \"now\" is not a decimal number",
        ),
        (
            format!("{HEAD}t=0 0\r\na=:x\r\n"),
            "SDP line 5: bad a= line: empty attribute name",
        ),
        (
            format!("{HEAD}t=0 0\r\na=bad name\r\n"),
            "SDP line 5: bad a= line: bad attribute name \"bad name\"",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio\r\n"),
            "SDP line 5: bad m= line: missing port",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 5004\r\n"),
            "SDP line 5: bad m= line: missing protocol",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 70000 RTP/AVP 0\r\n"),
            "SDP line 5: bad m= line: port 70000 is above 65535",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio -1 RTP/AVP 0\r\n"),
            "SDP line 5: bad m= line: port \"-1\" is not a decimal number",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 5004/0 RTP/AVP 0\r\n"),
            "SDP line 5: bad m= line: port count 0",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP\r\n"),
            "SDP line 5: bad m= line: no media formats",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 0  8\r\n"),
            "SDP line 5: bad m= line: empty format (double space?)",
        ),
        (
            format!("{HEAD}t=0 0\r\nm= 5004 RTP/AVP 0\r\n"),
            "SDP line 5: bad m= line: bad media type \"\"",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 5004 RTP(AVP) 0\r\n"),
            "SDP line 5: bad m= line: bad protocol \"RTP(AVP)\"",
        ),
        (
            format!("{HEAD}t=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\n"),
            "SDP line 0: m= line 1 has no c= line and the session has none",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for {text:?}");
    }
    let mut bad_utf8 = HEAD.as_bytes().to_vec();
    bad_utf8.extend_from_slice(b"t=0 0\r\ni=\xff\xfe\r\n");
    let e = Sdp::parse(&bad_utf8).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::InvalidUtf8);
    assert_eq!(e.line, 5);
    assert_eq!(e.status_code(), 400);
}

#[test]
fn rejected_stream_without_formats_or_connection_is_accepted() {
    let text = format!("{HEAD}t=0 0\r\nm=video 0 RTP/AVP\r\n");
    let sdp = Sdp::parse(text.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), text);
}

#[test]
fn attribute_errors_name_attribute_and_fault() {
    let text = format!(
        "{HEAD}c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n\
a=rtpmap:x PCMU/8000\r\na=fmtp:0\r\na=ptime:2.5\r\na=maxptime\r\na=rtcp:port\r\na=crypto:1\r\n"
    );
    let sdp = Sdp::parse(text.as_bytes()).unwrap();
    let m = &sdp.media[0];
    let s = |e: tollgate_sdp::AttrError| e.to_string();
    assert_eq!(
        s(m.rtpmaps().unwrap_err()),
        "bad a=rtpmap: payload type \"x\" is not a number in 0..=127"
    );
    assert_eq!(
        s(m.fmtp("0").unwrap_err()),
        "bad a=fmtp: expected <format> <parameters>, found \"0\""
    );
    assert_eq!(
        s(m.ptime().unwrap_err()),
        "bad a=ptime: \"2.5\" is not a whole positive number of milliseconds"
    );
    assert_eq!(
        s(m.maxptime().unwrap_err()),
        "bad a=maxptime: value missing"
    );
    assert_eq!(s(m.rtcp().unwrap_err()), "bad a=rtcp: bad port \"port\"");
    assert_eq!(
        s(m.crypto().unwrap_err()),
        "bad a=crypto: tag 1: no crypto suite"
    );

    for (value, want) in [
        (
            "128 X/8000",
            "bad a=rtpmap: payload type \"128\" is not a number in 0..=127",
        ),
        ("0 PCMU", "bad a=rtpmap: PCMU has no clock rate"),
        ("0 PCMU/fast", "bad a=rtpmap: bad clock rate \"fast\""),
        (
            "0",
            "bad a=rtpmap: expected <payload type> <encoding>, found \"0\"",
        ),
        ("0 /8000", "bad a=rtpmap: bad encoding name \"\""),
    ] {
        assert_eq!(s(Rtpmap::parse(value).unwrap_err()), want);
    }
    assert_eq!(
        s(Rtcp::parse("5 IN IP4").unwrap_err()),
        "bad a=rtcp: expected <nettype> <addrtype> <address>, found 2 fields"
    );
    for (value, want) in [
        (
            "x AES_CM_128_HMAC_SHA1_80 inline:a",
            "bad a=crypto: tag \"x\" is not 1 to 9 digits",
        ),
        (
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:a",
            "bad a=crypto: tag \"1234567890\" is not 1 to 9 digits",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80",
            "bad a=crypto: tag 1: no key parameters",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline",
            "bad a=crypto: tag 1: bad key parameter \"inline\"",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:a;",
            "bad a=crypto: tag 1: bad key parameter \"\"",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:a  KDR=1",
            "bad a=crypto: tag 1: empty session parameter (double space?)",
        ),
        (
            "1 AES(CM) inline:a",
            "bad a=crypto: tag 1: bad crypto suite \"AES(CM)\"",
        ),
    ] {
        assert_eq!(
            s(tollgate_sdp::Crypto::parse(value).unwrap_err()),
            want,
            "{value}"
        );
    }
}
