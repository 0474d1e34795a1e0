//! Hostile SIP clients for the admission tests and the hostile soak benchmark: an INVITE flood
//! that behaves like a busy gateway (it ACKs every final response and hangs up every call that
//! is answered), half-sent messages
//! (slowloris), garbage, oversize messages, a peer that never reads, and requests with bad
//! start lines.
//!
//! Every function is async and sends from a given local address to one target: run them on a
//! tokio runtime inside the namespace the traffic must come from. Each one reports what the
//! server did with its connections (closed them, or left them open), so a caller can check
//! that nothing hostile holds a connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tollgate_sip::{Frame, Framer, HeaderName, Message};

/// What a flooding gateway saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FloodReport {
    /// INVITEs sent.
    pub sent: u64,
    /// Final responses received.
    pub finals: u64,
    /// Of which 503 (not admitted).
    pub s503: u64,
    /// Of which 486 (a busy callee).
    pub s486: u64,
    /// Of which 2xx (answered: the flood ACKs and hangs up at once).
    pub s2xx: u64,
    /// Of which anything else.
    pub other: u64,
    /// Final responses carrying Retry-After.
    pub retry_after: u64,
}

/// Opens a TCP connection from `from` (any port) to `to`.
pub async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(from, 0))?;
    tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// An INVITE with a G.711 offer from the gateway at `from`, call number `i`.
pub fn invite(i: usize, to: SocketAddr, from: IpAddr) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=gw {i} 1 IN IP4 {from}\r\ns=-\r\nc=IN IP4 {from}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        20000 + 2 * (i % 1000)
    );
    format!(
        "INVITE sip:0207946{i:05}@{to} SIP/2.0\r\nVia: SIP/2.0/TCP {from}:5060;branch=z9hG4bKflood{i}\r\nMax-Forwards: 70\r\nFrom: <sip:01632960001@{from}>;tag=f{i}\r\nTo: <sip:0207946{i:05}@{to}>\r\nCall-ID: flood-{i}@{from}\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@{from}:5060;transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// An OPTIONS from `from`, number `i`.
pub fn options(i: usize, to: SocketAddr, from: IpAddr) -> Vec<u8> {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/TCP {from}:5060;branch=z9hG4bKopt{i}\r\nMax-Forwards: 70\r\nFrom: <sip:gw@{from}>;tag=o{i}\r\nTo: <sip:{to}>\r\nCall-ID: opt-{i}@{from}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// For a 2xx to our INVITE: its ACK and a BYE at once (new branches, sent to the Contact of
/// the 2xx, in the dialog of its To tag), so an answered flood call does not linger.
pub fn ack_and_bye(resp: &Message, from: IpAddr) -> Option<Vec<u8>> {
    let h = |n: HeaderName| resp.headers.get_value(&n);
    let target = resp.headers.contacts().next()?.uri.to_string();
    let call_id = resp.call_id()?;
    let seq = resp.cseq()?.seq;
    let mut out = Vec::new();
    for (method, cseq) in [("ACK", seq), ("BYE", seq + 1)] {
        out.extend(
            format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/TCP {from}:5060;branch=z9hG4bK{}{call_id}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
                method.to_ascii_lowercase(),
                h(HeaderName::From)?,
                h(HeaderName::To)?,
            )
            .into_bytes(),
        );
    }
    Some(out)
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch, To with its tag.
pub fn ack_for(resp: &Message, to: SocketAddr) -> Option<Vec<u8>> {
    let h = |n: HeaderName| resp.headers.get_value(&n);
    let cseq = resp.cseq()?.seq;
    let to_user = resp.to()?.uri.as_sip()?.user.clone().unwrap_or_default();
    Some(
        format!(
            "ACK sip:{to_user}@{to} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            h(HeaderName::Via)?,
            h(HeaderName::From)?,
            h(HeaderName::To)?,
            resp.call_id()?
        )
        .into_bytes(),
    )
}

/// Sends `count` INVITEs (numbered from `first`) evenly over `over` on one connection, ACKs
/// every final response, and waits up to `settle` after the last INVITE for the finals still
/// due.
pub async fn flood(
    from: IpAddr,
    to: SocketAddr,
    first: usize,
    count: usize,
    over: Duration,
    settle: Duration,
) -> std::io::Result<FloodReport> {
    let s = connect(from, to).await?;
    let (mut rd, mut wr) = tokio::io::split(s);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let report = Arc::new(Mutex::new(FloodReport::default()));
    let lock = |r: &Arc<Mutex<FloodReport>>| -> FloodReport {
        *r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let r2 = Arc::clone(&report);
    let reader = tokio::spawn(async move {
        let mut framer = Framer::default();
        let mut buf = vec![0u8; 64 * 1024];
        // A 2xx is retransmitted until our ACK arrives: count and answer each call once.
        let mut done = std::collections::HashSet::new();
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            while let Some(f) = framer.next_frame() {
                let Ok(Frame::Message(m)) = f else { continue };
                let Some(code) = m.status().filter(|c| *c >= 200) else {
                    continue;
                };
                if m.cseq().is_none_or(|c| c.method.as_str() != "INVITE") {
                    continue; // the answer to our BYE
                }
                if !done.insert(m.call_id().unwrap_or_default().to_owned()) {
                    continue;
                }
                let mut r = r2.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                r.finals += 1;
                match code {
                    200..=299 => r.s2xx += 1,
                    503 => r.s503 += 1,
                    486 => r.s486 += 1,
                    _ => r.other += 1,
                }
                if m.headers.get_value(&HeaderName::RetryAfter).is_some() {
                    r.retry_after += 1;
                }
                let reply = if code < 300 {
                    ack_and_bye(&m, from)
                } else {
                    ack_for(&m, to)
                };
                if let Some(bytes) = reply {
                    let _ = ack_tx.send(bytes);
                }
            }
        }
    });
    let t0 = tokio::time::Instant::now();
    let gap = over.as_secs_f64() / count.max(1) as f64;
    let mut i = 0;
    while i < count {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 * gap)).await;
        let mut batch = Vec::new();
        while i < count && t0.elapsed().as_secs_f64() >= i as f64 * gap {
            batch.extend(invite(first + i, to, from));
            i += 1;
        }
        while let Ok(a) = ack_rx.try_recv() {
            batch.extend(a);
        }
        wr.write_all(&batch).await?;
    }
    report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .sent = count as u64;
    let deadline = tokio::time::Instant::now() + settle;
    while lock(&report).finals < count as u64 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(a)) = tokio::time::timeout(Duration::from_millis(100), ack_rx.recv()).await {
            wr.write_all(&a).await?;
        }
    }
    while let Ok(a) = ack_rx.try_recv() {
        wr.write_all(&a).await?;
    }
    wr.flush().await?;
    // The last ACKs reach the server before the connection goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    Ok(lock(&report))
}

/// How a hostile connection ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Connections the server accepted.
    pub opened: u64,
    /// Of which the server closed (EOF or reset) before the client gave up.
    pub closed_by_server: u64,
    /// Final responses received on them.
    pub responses: u64,
}

impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, o: Held) {
        self.opened += o.opened;
        self.closed_by_server += o.closed_by_server;
        self.responses += o.responses;
    }
}

/// Writes `data` (in `chunks` pieces, `pause` apart), then reads until the server closes the
/// connection or `hold` has passed; `read` false never reads (a peer that stops reading), so
/// only a reset or a failed write shows the close.
async fn hold_connection(
    from: IpAddr,
    to: SocketAddr,
    data: Vec<u8>,
    chunks: usize,
    pause: Duration,
    hold: Duration,
    read: bool,
) -> Held {
    let Ok(s) = connect(from, to).await else {
        return Held::default();
    };
    let mut h = Held {
        opened: 1,
        ..Held::default()
    };
    let (mut rd, mut wr) = tokio::io::split(s);
    let deadline = tokio::time::Instant::now() + hold;
    let size = data.len().div_ceil(chunks.max(1)).max(1);
    let mut closed = false;
    let writer = async {
        for c in data.chunks(size) {
            if wr.write_all(c).await.is_err() {
                return true;
            }
            tokio::time::sleep(pause).await;
        }
        false
    };
    if !read {
        closed = tokio::time::timeout_at(deadline, writer)
            .await
            .unwrap_or(false);
        if !closed {
            // A peer that never reads: probe the connection until the deadline.
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if wr.write_all(b"\r\n").await.is_err() {
                    closed = true;
                    break;
                }
            }
        }
        h.closed_by_server = u64::from(closed);
        return h;
    }
    let reader = async {
        let mut framer = Framer::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut responses = 0;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return responses,
                Ok(n) => {
                    framer.push(&buf[..n]);
                    while let Some(f) = framer.next_frame() {
                        if let Ok(Frame::Message(m)) = f
                            && m.status().is_some_and(|c| c >= 200)
                        {
                            responses += 1;
                        }
                    }
                }
            }
        }
    };
    let both = async {
        let (_, r) = tokio::join!(writer, reader);
        r
    };
    if let Ok(r) = tokio::time::timeout_at(deadline, both).await {
        closed = true;
        h.responses = r;
    }
    h.closed_by_server = u64::from(closed);
    h
}

/// `n` connections that each send half of an INVITE and nothing more (slowloris), held for
/// at most `hold`.
pub async fn slowloris(from: IpAddr, to: SocketAddr, n: usize, hold: Duration) -> Held {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut m = invite(90_000 + i, to, from);
        m.truncate(m.len() / 2);
        tasks.push(tokio::spawn(hold_connection(
            from,
            to,
            m,
            1,
            Duration::ZERO,
            hold,
            true,
        )));
    }
    join_all(tasks).await
}

/// `n` connections that send random bytes (no CRLF structure), a KiB every 50 ms, until the
/// server closes them or `hold` passes.
pub async fn garbage(from: IpAddr, to: SocketAddr, n: usize, hold: Duration) -> Held {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
        let bytes: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Printable, no CR or LF: a line that never ends.
                b'!' + (x % 90) as u8
            })
            .collect();
        tasks.push(tokio::spawn(hold_connection(
            from,
            to,
            bytes,
            64,
            Duration::from_millis(50),
            hold,
            true,
        )));
    }
    join_all(tasks).await
}

/// `n` connections that each send one INVITE of `size` bytes (a body past any sane limit).
pub async fn oversize(from: IpAddr, to: SocketAddr, n: usize, size: usize, hold: Duration) -> Held {
    let mut tasks = Vec::new();
    for i in 0..n {
        let body = "a=x-pad:".to_owned() + &"p".repeat(size) + "\r\n";
        let msg = format!(
            "INVITE sip:02079460000@{to} SIP/2.0\r\nVia: SIP/2.0/TCP {from}:5060;branch=z9hG4bKbig{i}\r\nMax-Forwards: 70\r\nFrom: <sip:01632960001@{from}>;tag=b{i}\r\nTo: <sip:02079460000@{to}>\r\nCall-ID: big-{i}@{from}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tasks.push(tokio::spawn(hold_connection(
            from,
            to,
            msg.into_bytes(),
            16,
            Duration::ZERO,
            hold,
            true,
        )));
    }
    join_all(tasks).await
}

/// `n` connections that each send `messages` OPTIONS and never read the answers.
pub async fn never_reads(
    from: IpAddr,
    to: SocketAddr,
    n: usize,
    messages: usize,
    hold: Duration,
) -> Held {
    let mut tasks = Vec::new();
    for c in 0..n {
        let mut data = Vec::new();
        for i in 0..messages {
            data.extend(options(c * messages + i, to, from));
        }
        tasks.push(tokio::spawn(hold_connection(
            from,
            to,
            data,
            messages.div_ceil(50),
            Duration::from_millis(5),
            hold,
            false,
        )));
    }
    join_all(tasks).await
}

/// Requests whose start line is broken but whose headers can be answered (RFC 4475 §3.1.2
/// style), one connection each; the server should answer each and keep or close the
/// connection as it sees fit.
pub async fn bad_start_lines(from: IpAddr, to: SocketAddr, hold: Duration) -> Held {
    let lines = [
        "INVITE sip:02079460000@{to} SIP/7.0",
        "INVITE <sip:02079460000@{to}> SIP/2.0",
        "INVITE  sip:02079460000@{to}  SIP/2.0",
        "INVITE sip:02079460000@{to} SIP/2.0 ",
        " INVITE sip:02079460000@{to} SIP/2.0",
    ];
    let mut tasks = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let start = l.replace("{to}", &to.to_string());
        let msg = format!(
            "{start}\r\nVia: SIP/2.0/TCP {from}:5060;branch=z9hG4bKbad{i}\r\nMax-Forwards: 70\r\nFrom: <sip:01632960001@{from}>;tag=x{i}\r\nTo: <sip:02079460000@{to}>\r\nCall-ID: bad-{i}@{from}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = connect(from, to).await else {
                return Held::default();
            };
            let mut h = Held {
                opened: 1,
                ..Held::default()
            };
            if s.write_all(msg.as_bytes()).await.is_err() {
                return h;
            }
            let mut framer = Framer::default();
            let mut buf = vec![0u8; 8192];
            let got = tokio::time::timeout(hold, async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => {
                            framer.push(&buf[..n]);
                            while let Some(f) = framer.next_frame() {
                                if let Ok(Frame::Message(m)) = f
                                    && m.status().is_some_and(|c| c >= 400)
                                {
                                    return true;
                                }
                            }
                        }
                    }
                }
            })
            .await;
            h.responses = u64::from(got == Ok(true));
            h
        }));
    }
    join_all(tasks).await
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Held>>) -> Held {
    let mut h = Held::default();
    for t in tasks {
        if let Ok(x) = t.await {
            h += x;
        }
    }
    h
}
