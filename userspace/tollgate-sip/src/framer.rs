//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! Push received bytes with [`Framer::push`]; pull events with [`Framer::next_frame`] until it
//! returns `None` (more bytes needed). Rules:
//!
//! * CRLFs before a start line are ignored (§18.3). A double CRLF there is an RFC 5626 keepalive
//!   ping, reported as [`Frame::Ping`] so the driver can answer with a single CRLF (pong).
//! * Lines before the start line that are not a plausible start line are leading garbage: they are
//!   discarded and counted ([`Framer::garbage_bytes`]).
//! * Content-Length is required. A message whose header section is malformed but whose
//!   Content-Length can still be read is consumed and reported as a non-fatal
//!   [`FrameError`] (answer it, keep the connection). Without a usable Content-Length the stream
//!   cannot be resynchronised: the error is fatal and the driver should close the connection.
//! * A message larger than the cap (64 KiB by default) is fatal: answer 513 (Message Too Large)
//!   when the header section so far holds Via, From, To, Call-ID and CSeq, then close.
//! * The framer keeps no clock: [`Framer::is_partial`] tells the transport whether a message is
//!   under way, so that it can bound how long one may take.

use crate::error::{Fault, Origin, ParseError};
use crate::message::{Message, ParseOptions, find_head_end, origin_of, parse_head, salvage_echo};

/// One framing event.
#[derive(Debug, Clone, PartialEq, Eq)]
// A frame is moved once from the framer to the caller; boxing the common case would cost an
// allocation per message to save bytes on the rare Ping.
#[allow(clippy::large_enum_variant)]
pub enum Frame {
    /// A complete, valid message.
    Message(Message),
    /// An RFC 5626 keepalive ping (CRLF CRLF): answer with CRLF.
    Ping,
}

/// A framing or parse failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}{}", if *.fatal { " (connection must be closed)" } else { "" })]
pub struct FrameError {
    /// What was wrong (and the response to send, if any).
    pub error: ParseError,
    /// The stream cannot continue; close the connection after answering.
    pub fatal: bool,
}

/// Pull-based framer for one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_size: usize,
    scanned: usize,
    garbage: u64,
    garbage_lines: u64,
    dead: bool,
    pending: Option<Pending>,
}

/// A header section already parsed while its body is still arriving.
#[derive(Debug)]
enum Pending {
    Message {
        head: Box<crate::message::Head>,
        body_start: usize,
        total: usize,
    },
    Skip {
        error: ParseError,
        total: usize,
    },
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(crate::message::DEFAULT_MAX_SIZE)
    }
}

fn looks_like_start_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Trailing whitespace is a parse error (RFC 4475 trws), not a reason to skip the message.
    let line = line.trim_ascii_end();
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return true;
    }
    // Request-Line: ends with " SIP/x.y".
    line.iter()
        .rposition(|&b| b == b' ')
        .and_then(|sp| line.get(sp + 1..))
        .is_some_and(|v| {
            v.len() >= 4 && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        })
}

/// Reads Content-Length from a raw header section without parsing anything else. `None` when
/// absent, ambiguous or invalid.
fn raw_content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    let mut found: Option<usize> = None;
    for line in text.split('\n').skip(1) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let v = crate::scan::parse_digits(value.trim_matches([' ', '\t']))?;
            let v = usize::try_from(v).ok()?;
            if found.is_some_and(|f| f != v) {
                return None;
            }
            found = Some(v);
        }
    }
    found
}

impl Framer {
    /// A framer with a message size cap.
    pub fn new(max_size: usize) -> Self {
        Framer {
            buf: Vec::with_capacity(4096),
            max_size,
            scanned: 0,
            garbage: 0,
            garbage_lines: 0,
            dead: false,
            pending: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !self.dead {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Leading-garbage bytes discarded so far.
    pub fn garbage_bytes(&self) -> u64 {
        self.garbage
    }

    /// Leading-garbage lines discarded so far (each is one stream fault for the transport).
    pub fn garbage_lines(&self) -> u64 {
        self.garbage_lines
    }

    /// True while bytes of an unfinished message are buffered (a started header section, a
    /// body still arriving, or a line not yet ended). The start of a keepalive (`CR`, `CRLF`,
    /// `CRLF CR`: peers send single-CRLF keepalives too) is no message. The transport bounds
    /// how long a partial message may last (`sip.message_deadline_s`); the framer keeps no time.
    pub fn is_partial(&self) -> bool {
        !self.dead && !matches!(self.buf.as_slice(), [] | b"\r" | b"\r\n" | b"\r\n\r")
    }

    /// True after a fatal error: the connection should be closed; further input is ignored.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
        self.scanned = 0;
    }

    fn fatal(&mut self, error: ParseError) -> Option<Result<Frame, FrameError>> {
        self.dead = true;
        self.buf.clear();
        self.scanned = 0;
        Some(Err(FrameError { error, fatal: true }))
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.dead {
            return None;
        }
        if let Some(p) = self.pending.take() {
            return self.finish(p);
        }
        loop {
            // Leading CRLFs: keepalives.
            match self.buf.as_slice() {
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.consume(4);
                    return Some(Ok(Frame::Ping));
                }
                [b'\r', b'\n'] | [b'\r'] | [b'\r', b'\n', b'\r'] => return None,
                [b'\r', b'\n', ..] => {
                    self.consume(2);
                    continue;
                }
                [b'\n', ..] => {
                    self.consume(1);
                    continue;
                }
                [] => return None,
                _ => {}
            }
            // Leading garbage: drop whole lines that cannot start a message.
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > self.max_size {
                    return self.fatal(ParseError::new(
                        Fault::TooLarge {
                            size: self.buf.len(),
                            limit: self.max_size,
                        },
                        Origin::Unknown,
                    ));
                }
                return None;
            };
            if !self.buf.get(..nl).is_some_and(looks_like_start_line) {
                self.garbage += (nl + 1) as u64;
                self.garbage_lines += 1;
                self.consume(nl + 1);
                continue;
            }
            break;
        }
        let from = self.scanned.saturating_sub(3);
        let Some((head_end, body_start)) = find_head_end(&self.buf, from) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_size {
                // The header section so far may already say where an answer goes (513).
                let lines = self
                    .buf
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .and_then(|nl| self.buf.get(..nl))
                    .unwrap_or(&[]);
                let origin = origin_of(lines);
                let err = ParseError::new(
                    Fault::TooLarge {
                        size: self.buf.len(),
                        limit: self.max_size,
                    },
                    origin,
                )
                .with_echo(salvage_echo(lines, origin));
                return self.fatal(err);
            }
            return None;
        };
        let head = self.buf.get(..head_end).unwrap_or(&[]);
        let pending = match parse_head(head) {
            Ok(parsed) => {
                let Some(cl) = parsed.headers.content_length() else {
                    let err = ParseError::new(Fault::NoContentLength, parsed.origin)
                        .with_echo(parsed.echo());
                    return self.fatal(err);
                };
                let total = body_start.saturating_add(cl as usize);
                if total > self.max_size {
                    let err = ParseError::new(
                        Fault::TooLarge {
                            size: total,
                            limit: self.max_size,
                        },
                        parsed.origin,
                    )
                    .with_echo(parsed.echo());
                    return self.fatal(err);
                }
                Pending::Message {
                    head: Box::new(parsed),
                    body_start,
                    total,
                }
            }
            Err(error) => match raw_content_length(head) {
                Some(cl) if body_start.saturating_add(cl) <= self.max_size => Pending::Skip {
                    error,
                    total: body_start + cl,
                },
                _ => return self.fatal(error),
            },
        };
        self.finish(pending)
    }

    /// Completes a parsed header section once its body is buffered.
    fn finish(&mut self, p: Pending) -> Option<Result<Frame, FrameError>> {
        match p {
            Pending::Message {
                head,
                body_start,
                total,
            } => {
                let Some(body) = self.buf.get(body_start..total) else {
                    self.pending = Some(Pending::Message {
                        head,
                        body_start,
                        total,
                    });
                    return None;
                };
                let body = body.to_vec();
                let head = *head;
                self.consume(total);
                Some(Ok(Frame::Message(Message {
                    start: head.start,
                    headers: head.headers,
                    body,
                })))
            }
            Pending::Skip { error, total } => {
                if self.buf.len() < total {
                    self.pending = Some(Pending::Skip { error, total });
                    return None;
                }
                self.consume(total);
                Some(Err(FrameError {
                    error,
                    fatal: false,
                }))
            }
        }
    }

    /// Parses one complete message from a stream buffer (Content-Length required).
    pub fn parse_one(buf: &[u8]) -> Result<Message, ParseError> {
        Message::parse_with(buf, ParseOptions::stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPT: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc";

    fn drain(f: &mut Framer) -> Vec<Result<Frame, FrameError>> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn byte_by_byte_with_keepalives_and_garbage() {
        let mut input = Vec::new();
        input.extend_from_slice(b"\r\n\r\n");
        input.extend_from_slice(b"garbage line\r\n");
        input.extend_from_slice(OPT.as_bytes());
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(OPT.as_bytes());
        let mut f = Framer::default();
        let mut out = Vec::new();
        for b in &input {
            f.push(std::slice::from_ref(b));
            out.extend(drain(&mut f));
        }
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], Ok(Frame::Ping));
        assert!(matches!(&out[1], Ok(Frame::Message(m)) if m.body == b"abc"));
        assert!(matches!(&out[2], Ok(Frame::Message(_))));
        assert_eq!(f.garbage_bytes(), 14);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn recoverable_and_fatal_errors() {
        let bad = OPT.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS");
        let mut f = Framer::default();
        f.push(bad.as_bytes());
        f.push(OPT.as_bytes());
        let out = drain(&mut f);
        assert!(matches!(&out[0], Err(FrameError { fatal: false, .. })));
        assert!(matches!(&out[1], Ok(Frame::Message(_))));

        let no_cl = OPT.replace("Content-Length: 3\r\n", "");
        let mut f = Framer::default();
        f.push(no_cl.as_bytes());
        let out = drain(&mut f);
        assert!(matches!(&out[0], Err(FrameError { fatal: true, .. })));
        assert!(f.is_dead());

        let mut f = Framer::new(100);
        f.push(
            OPT.replace("Content-Length: 3", "Content-Length: 500")
                .as_bytes(),
        );
        let out = drain(&mut f);
        let Err(e) = &out[0] else { panic!() };
        assert!(e.fatal);
        assert_eq!(e.error.response().unwrap().0, 513);

        let mut f = Framer::new(64);
        f.push(&[b'A'; 100]);
        assert!(matches!(
            f.next_frame(),
            Some(Err(FrameError { fatal: true, .. }))
        ));
    }

    #[test]
    fn oversize_gets_513_when_addressable() {
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\nCSeq: 1 INVITE\r\n";
        // Header section never ends: the cap is hit while a huge header is arriving.
        let mut f = Framer::new(1024);
        f.push(head.as_bytes());
        f.push(b"X-Pad: ");
        assert!(f.next_frame().is_none());
        assert!(f.is_partial());
        f.push(&[b'a'; 2000]);
        let e = f.next_frame().unwrap().unwrap_err();
        assert!(e.fatal);
        assert!(matches!(e.error.fault(), Fault::TooLarge { .. }));
        let resp = e.error.error_response("t").unwrap();
        assert_eq!(resp.status(), Some(513));
        assert_eq!(resp.reason(), Some("Message Too Large"));
        assert!(f.is_dead() && !f.is_partial());
        // Content-Length beyond the cap: 513 as well.
        let mut f = Framer::new(1024);
        f.push(format!("{head}Content-Length: 5000\r\n\r\n").as_bytes());
        let e = f.next_frame().unwrap().unwrap_err();
        assert_eq!(
            e.error.error_response("t").and_then(|r| r.status()),
            Some(513)
        );
        // Only a Via so far: the fault is known but nothing can be addressed; just close.
        let mut f = Framer::new(1024);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nX-Pad: ");
        f.push(&[b'a'; 2000]);
        let e = f.next_frame().unwrap().unwrap_err();
        assert!(e.fatal && e.error.error_response("t").is_none());
    }

    #[test]
    fn partial_and_garbage_lines_are_reported() {
        let mut f = Framer::default();
        assert!(!f.is_partial());
        let (first, rest) = OPT.split_at(40);
        f.push(b"junk\r\nmore junk\r\n");
        f.push(first.as_bytes());
        assert!(f.next_frame().is_none());
        assert_eq!(f.garbage_lines(), 2);
        assert!(f.is_partial(), "a started message is pending");
        f.push(rest.as_bytes());
        assert!(matches!(f.next_frame(), Some(Ok(Frame::Message(_)))));
        assert!(f.next_frame().is_none());
        assert!(!f.is_partial(), "nothing left over");
        // A keepalive in progress is not a message in progress; a start line is.
        for (bytes, partial) in [
            (&b"\r"[..], false),
            (b"\r\n", false),
            (b"\r\n\r", false),
            (b"\r\nO", true),
            (b"\r\r", true),
        ] {
            let mut f = Framer::default();
            f.push(bytes);
            assert!(f.next_frame().is_none());
            assert_eq!(f.is_partial(), partial, "{bytes:?}");
        }
    }
}
