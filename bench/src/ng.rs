//! A client of rtpengine's ng control protocol: bencoded dictionaries over UDP, each message
//! prefixed with a cookie that the reply echoes. Enough for `ping`, `offer`, `answer` and
//! `delete`, plus the SDP the benchmark hands it and reads back.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    /// Integer.
    Int(i64),
    /// Byte string.
    Bytes(Vec<u8>),
    /// List.
    List(Vec<Bencode>),
    /// Dictionary (keys sorted, as bencode requires).
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    /// A string value.
    pub fn s(v: &str) -> Bencode {
        Bencode::Bytes(v.as_bytes().to_vec())
    }

    /// A list of strings.
    pub fn strs(v: &[&str]) -> Bencode {
        Bencode::List(v.iter().map(|x| Bencode::s(x)).collect())
    }

    /// Encodes into `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the front of `b`; returns it and the bytes left.
    pub fn decode(b: &[u8]) -> Option<(Bencode, &[u8])> {
        match *b.first()? {
            b'i' => {
                let end = b.iter().position(|&c| c == b'e')?;
                let v = std::str::from_utf8(b.get(1..end)?).ok()?.parse().ok()?;
                Some((Bencode::Int(v), b.get(end + 1..)?))
            }
            b'l' => {
                let mut rest = b.get(1..)?;
                let mut l = Vec::new();
                while *rest.first()? != b'e' {
                    let (v, r) = Bencode::decode(rest)?;
                    l.push(v);
                    rest = r;
                }
                Some((Bencode::List(l), rest.get(1..)?))
            }
            b'd' => {
                let mut rest = b.get(1..)?;
                let mut d = BTreeMap::new();
                while *rest.first()? != b'e' {
                    let (k, r) = Bencode::decode(rest)?;
                    let Bencode::Bytes(k) = k else { return None };
                    let (v, r) = Bencode::decode(r)?;
                    d.insert(k, v);
                    rest = r;
                }
                Some((Bencode::Dict(d), rest.get(1..)?))
            }
            b'0'..=b'9' => {
                let colon = b.iter().position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(b.get(..colon)?).ok()?.parse().ok()?;
                let s = b.get(colon + 1..colon + 1 + n)?;
                Some((Bencode::Bytes(s.to_vec()), b.get(colon + 1 + n..)?))
            }
            _ => None,
        }
    }

    /// A dictionary's string value.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self {
            Bencode::Dict(d) => match d.get(key.as_bytes())? {
                Bencode::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Builds a dictionary from pairs.
pub fn dict(pairs: Vec<(&str, Bencode)>) -> Bencode {
    Bencode::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// An ng client on a UDP socket.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    cookie: u64,
}

impl NgClient {
    /// Connects to rtpengine's ng port.
    pub fn connect(server: SocketAddr) -> anyhow::Result<NgClient> {
        let sock = UdpSocket::bind("127.0.0.1:0").context("ng client socket")?;
        sock.connect(server)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(NgClient { sock, cookie: 0 })
    }

    /// Sends a command and returns the reply dictionary (fails on `result: error`).
    pub fn call(&mut self, msg: &Bencode) -> anyhow::Result<Bencode> {
        self.cookie += 1;
        let cookie = format!("tgb{}_{}", std::process::id(), self.cookie);
        let mut out = format!("{cookie} ").into_bytes();
        msg.encode(&mut out);
        self.sock.send(&out)?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self
                .sock
                .recv(&mut buf)
                .context("no reply from rtpengine")?;
            let r = &buf[..n];
            let Some(sp) = r.iter().position(|&c| c == b' ') else {
                bail!("malformed ng reply")
            };
            if &r[..sp] != cookie.as_bytes() {
                continue; // a late reply to an earlier request
            }
            let (v, _) = Bencode::decode(&r[sp + 1..]).context("undecodable ng reply")?;
            match v.get_str("result").as_deref() {
                Some("ok") | Some("pong") => return Ok(v),
                other => bail!(
                    "rtpengine said {other:?}: {}",
                    v.get_str("error-reason").unwrap_or_default()
                ),
            }
        }
    }

    /// `ping`.
    pub fn ping(&mut self) -> anyhow::Result<()> {
        self.call(&dict(vec![("command", Bencode::s("ping"))]))
            .map(|_| ())
    }
}

/// SDP for a plain G.711 (PCMU) audio stream at `ip:port`.
pub fn sdp_avp(ip: &str, port: u16, origin: &str) -> String {
    format!(
        "v=0\r\no={origin} 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// SDP for an SRTP (SDES) G.711 stream at `ip:port` with one crypto line.
pub fn sdp_savp(ip: &str, port: u16, origin: &str, tag: u32, suite: &str, key: &str) -> String {
    format!(
        "v=0\r\no={origin} 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n\
         a=crypto:{tag} {suite} {key}\r\na=sendrecv\r\n"
    )
}

/// What the benchmark reads from rtpengine's SDP: the media address and port, and the
/// crypto lines `(tag, suite, key parameter)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMedia {
    /// Connection address.
    pub ip: String,
    /// Audio port.
    pub port: u16,
    /// `a=crypto` lines.
    pub crypto: Vec<(u32, String, String)>,
}

/// Parses the first audio stream of an SDP.
pub fn parse_sdp(sdp: &str) -> Option<SdpMedia> {
    let mut ip = None;
    let mut port = None;
    let mut crypto = Vec::new();
    for l in sdp.lines().map(str::trim) {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = Some(c.split_whitespace().next()?.to_owned());
        } else if let Some(m) = l.strip_prefix("m=audio ") {
            port = m.split_whitespace().next()?.parse().ok();
        } else if let Some(c) = l.strip_prefix("a=crypto:") {
            let mut f = c.split_whitespace();
            let tag = f.next()?.parse().ok()?;
            let suite = f.next()?.to_owned();
            let key = f.next()?.to_owned();
            crypto.push((tag, suite, key));
        }
    }
    Some(SdpMedia {
        ip: ip?,
        port: port?,
        crypto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip() {
        let v = dict(vec![
            ("command", Bencode::s("offer")),
            ("direction", Bencode::strs(&["ext", "int"])),
            ("n", Bencode::Int(-42)),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer9:directionl3:ext3:inte1:ni-42ee".to_vec()
        );
        let (back, rest) = Bencode::decode(&out).expect("decodes");
        assert!(rest.is_empty());
        assert_eq!(back, v);
        assert_eq!(back.get_str("command").as_deref(), Some("offer"));
        for bad in [&b"d3:abc"[..], b"l", b"i12", b"5:ab", b"x"] {
            assert!(Bencode::decode(bad).is_none());
        }
    }

    #[test]
    fn reads_sdp() {
        let s = "v=0\r\nc=IN IP4 10.201.2.1\r\nm=audio 30010 RTP/SAVP 0\r\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:BBBB\r\n";
        let m = parse_sdp(s).expect("parses");
        assert_eq!(m.ip, "10.201.2.1");
        assert_eq!(m.port, 30010);
        assert_eq!(
            m.crypto[1],
            (2, "AES_CM_128_HMAC_SHA1_32".into(), "inline:BBBB".into())
        );
        assert!(parse_sdp(&sdp_avp("10.201.1.2", 10000, "gw")).is_some());
    }
}
