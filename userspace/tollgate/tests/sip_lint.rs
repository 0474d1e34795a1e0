//! `tollgate sip lint` end to end: the built binary on torture messages, files and stdin.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn torture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tollgate-sip/tests/torture")
        .join(name)
}

fn lint(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("sip")
        .arg("lint")
        .args(args)
        .output()
        .expect("tollgate binary runs");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
    )
}

#[test]
fn valid_request_summary() {
    let p = torture("rfc4475/wsinv.dat");
    let (code, out) = lint(&[p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("SIP request: INVITE sip:vivekg@chair-dnrc.example.com;unknownparam\n"),
        "{out}"
    );
    assert!(
        out.contains("  Via[2]: SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239\n"),
        "{out}"
    );
    assert!(
        out.contains("  Call-ID: wsinv.ndaksdj@192.0.2.1\n"),
        "{out}"
    );
    assert!(out.contains("  body: 150 bytes\n"), "{out}");
    assert!(
        out.contains("passed through untyped: NewFangledHeader, UnknownHeaderWithUnusualValue"),
        "{out}"
    );
}

#[test]
fn rejected_request_shows_response() {
    let (code, out) = lint(&[torture("rfc4475/badvers.dat").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "rejected: SIP version SIP/7.0 not supported\nresponse: SIP/2.0 505 Version Not Supported\n"
    );
    let (code, out) = lint(&[
        torture("rfc4475/badinv01.dat").to_str().unwrap(),
        "--full-response",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("rejected: malformed Via header: empty element in comma-separated list\nresponse: SIP/2.0 400 Bad Request (malformed Via header: empty element in comma-separated list)\n"),
        "{out}"
    );
    assert!(
        out.contains("\r\nCall-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n"),
        "{out}"
    );
    assert!(
        out.contains("To: sip:j.user@example.com;tag=lint\r\n"),
        "{out}"
    );
}

#[test]
fn policy_rejection_and_dropped_response() {
    let (code, out) = lint(&[torture("rfc4475/bext01.dat").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("rejected: unsupported extension(s): nothingSupportsThis, nothingSupportsThisEither\nresponse: SIP/2.0 420 Bad Extension\n"), "{out}");
    let (code, _) = lint(&[
        torture("rfc4475/bext01.dat").to_str().unwrap(),
        "--parse-only",
    ]);
    assert_eq!(code, 0);
    let (code, out) = lint(&[torture("rfc4475/bigcode.dat").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("response: none (silently dropped"), "{out}");
}

#[test]
fn stdin_and_stream_rules() {
    let msg = "OPTIONS sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:a@192.0.2.9>;tag=1\r\nTo: <sip:gw@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
    for (args, want_code) in [(vec!["-"], 0), (vec!["--stream"], 1)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["sip", "lint"])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(msg.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(want_code), "{args:?}: {text}");
        if want_code == 1 {
            assert!(
                text.starts_with("rejected: Content-Length missing"),
                "{text}"
            );
        } else {
            assert!(
                text.starts_with("SIP request: OPTIONS sip:gw@192.0.2.1\n"),
                "{text}"
            );
        }
    }
}

/// A bad start line is answered when Via/From/To/Call-ID/CSeq are there, and the lint says
/// "none" exactly when the daemon sends nothing.
#[test]
fn bad_start_line_reports_the_wire_response() {
    for (file, status) in [
        ("rfc4475/lwsstart.dat", "400"),
        ("rfc4475/trws.dat", "400"),
        ("rfc4475/ltgtruri.dat", "400"),
        ("rfc4475/escruri.dat", "400"),
        ("rfc4475/lwsruri.dat", "400"),
        ("rfc4475/badvers.dat", "505"),
    ] {
        let (code, out) = lint(&[torture(file).to_str().unwrap(), "--full-response"]);
        assert_eq!(code, 1, "{file}: {out}");
        assert!(
            out.contains(&format!("\nresponse: SIP/2.0 {status} ")),
            "{file}: {out}"
        );
        assert!(out.contains("\r\nCall-ID: "), "{file}: {out}");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["sip", "lint", "--stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("response: none (a 505 is called for, but the request's Via/From/To/Call-ID/CSeq could not be located)"),
        "{text}"
    );
}

#[test]
fn unreadable_file() {
    let (code, out) = lint(&["/nonexistent/message.sip"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
}
