//! `tollgate sip …`: operator tools for SIP.
//!
//! `tollgate sip lint [FILE]` reads one SIP message from FILE (or stdin when FILE is absent or
//! `-`), parses it exactly as the daemon would, and prints either a summary of what was
//! understood or the rejection and the response Tollgate would send. The response shown is
//! built by the same function the daemon sends from (`ParseError::error_response`), with the
//! daemon's Require policy (`tollgate_b2bua::supported_tags`); `--stream` frames the input
//! with the daemon's `Framer`. Checks that depend on a configuration (unknown trunk 403,
//! loops 482, an OPTIONS to Tollgate's own address) are not made. Exit status: 0 valid,
//! 1 rejected (or dropped), 2 when the input cannot be read.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use tollgate_sip::{
    Frame, Framer, HeaderName, Message, ParseError, ParseOptions, StartLine, UaPolicy,
    check_request, check_response,
};

/// SIP subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SipCommand {
    /// Parse one SIP message and print a summary, or why it is rejected and the response that
    /// would be sent.
    Lint(LintArgs),
}

/// Arguments of `tollgate sip lint`.
#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// File holding one SIP message; stdin when absent or `-`.
    pub file: Option<PathBuf>,
    /// Apply stream (TCP/TLS) framing rules: Content-Length is required.
    #[arg(long)]
    pub stream: bool,
    /// Only parse; skip Tollgate's acceptance checks (416, 420, 483, 415, 406, extra Via).
    #[arg(long)]
    pub parse_only: bool,
    /// Print the whole response that would be sent, not just its status line.
    #[arg(long)]
    pub full_response: bool,
}

/// Runs a SIP subcommand.
pub fn run(cmd: SipCommand) -> ExitCode {
    match cmd {
        SipCommand::Lint(args) => lint(&args),
    }
}

fn read_input(file: Option<&PathBuf>) -> std::io::Result<Vec<u8>> {
    match file {
        Some(p) if p.as_os_str() != "-" => std::fs::read(p),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

fn lint(args: &LintArgs) -> ExitCode {
    let input = match read_input(args.file.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            let what = args
                .file
                .as_ref()
                .map_or_else(|| "stdin".to_owned(), |p| p.display().to_string());
            eprintln!("tollgate sip lint: cannot read {what}: {e}");
            return ExitCode::from(2);
        }
    };
    let parsed = if args.stream {
        // Exactly as a connection's reader does: the daemon's framer.
        let mut framer = Framer::default();
        framer.push(&input);
        match framer.next_frame() {
            Some(Ok(Frame::Message(m))) => Ok(m),
            Some(Ok(Frame::Ping)) => {
                println!("keepalive (CRLF CRLF): answered with CRLF");
                return ExitCode::SUCCESS;
            }
            Some(Err(e)) => {
                let code = rejected(&e.error, args.full_response);
                if e.fatal {
                    println!("connection: closed (the stream cannot be resynchronised)");
                }
                return code;
            }
            None => {
                println!(
                    "incomplete: no complete message; the daemon waits for the rest and closes the connection, without an answer, at sip.message_deadline_s"
                );
                return ExitCode::from(1);
            }
        }
    } else {
        Message::parse_with(&input, ParseOptions::datagram())
    };
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => return rejected(&e, args.full_response),
    };
    if !args.parse_only {
        let checked = if msg.is_request() {
            // The daemon's policy (tollgate-b2bua), with reliable provisionals not passed
            // through (the default) and no own address known.
            let policy = UaPolicy {
                supported: tollgate_b2bua::supported_tags(false),
                ..UaPolicy::default()
            };
            check_request(&msg, &policy)
        } else {
            check_response(&msg)
        };
        if let Err(e) = checked {
            summary(&msg);
            return rejected(&e, args.full_response);
        }
    }
    summary(&msg);
    ExitCode::SUCCESS
}

/// Reports a rejection and what goes on the wire: the response comes from
/// [`ParseError::error_response`], the very function the daemon sends from, so a status is
/// printed only when a response can actually be addressed.
fn rejected(e: &ParseError, full: bool) -> ExitCode {
    println!("rejected: {}", e.fault());
    match (e.error_response("lint"), e.response()) {
        (Some(r), _) => {
            let code = r.status().unwrap_or(0);
            println!("response: SIP/2.0 {code} {}", r.reason().unwrap_or(""));
            if full {
                println!();
                print!("{}", String::from_utf8_lossy(&r.encode()));
            }
        }
        (None, Some((code, _))) => println!(
            "response: none (a {code} is called for, but the request's Via/From/To/Call-ID/CSeq could not be located)"
        ),
        (None, None) => {
            println!("response: none (silently dropped; faulty responses are never answered)")
        }
    }
    ExitCode::from(1)
}

fn summary(m: &Message) {
    match &m.start {
        StartLine::Request { method, uri } => {
            println!("SIP request: {method} {uri}");
        }
        StartLine::Response { code, reason } => {
            let cseq = m.cseq().map(ToString::to_string).unwrap_or_default();
            println!("SIP response: {code} {reason} (to {cseq})");
        }
    }
    let vias: Vec<String> = m.headers.vias().map(ToString::to_string).collect();
    for (i, v) in vias.iter().enumerate() {
        println!("  Via[{i}]: {v}");
    }
    let show = |label: &str, name: &HeaderName| {
        for h in m.headers.get_all(name) {
            println!("  {label}: {}", h.value());
        }
    };
    show("From", &HeaderName::From);
    show("To", &HeaderName::To);
    show("Call-ID", &HeaderName::CallId);
    show("CSeq", &HeaderName::CSeq);
    show("Max-Forwards", &HeaderName::MaxForwards);
    show("Contact", &HeaderName::Contact);
    show("Route", &HeaderName::Route);
    show("Record-Route", &HeaderName::RecordRoute);
    show("Supported", &HeaderName::Supported);
    show("Require", &HeaderName::Require);
    show("Session-Expires", &HeaderName::SessionExpires);
    show("P-Asserted-Identity", &HeaderName::PAssertedIdentity);
    show("Content-Type", &HeaderName::ContentType);
    println!("  body: {} bytes", m.body.len());
    let unknown: Vec<&str> = m
        .headers
        .iter()
        .filter(|h| matches!(h.name(), HeaderName::Other(_)))
        .map(|h| h.name().as_str())
        .collect();
    println!(
        "  headers: {} lines{}",
        m.headers.len(),
        if unknown.is_empty() {
            String::new()
        } else {
            format!(
                " ({} passed through untyped: {})",
                unknown.len(),
                unknown.join(", ")
            )
        }
    );
}
