//! `tollgate ctl`: the operator's view of a running daemon over its control socket (see
//! `tollgate_server::control`): list and inspect calls, end one, take trunks in and out of
//! service, drain, reload, status. Every command takes `--json` for scripts; without it the
//! answer is printed as a table.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

/// `tollgate ctl`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The daemon's control socket (`ops.control_socket`).
    #[arg(long, global = true, default_value = tollgate_server::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub cmd: CtlCommand,
}

/// The control commands.
#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// Every call in progress: id, trunk, direction, parties, age, data path, media each way.
    Calls,
    /// One call: both legs' dialogs, the SDP (keys redacted), SRTP suites, media counters.
    Call {
        /// Call id (from `calls`).
        id: u64,
    },
    /// End a call: BYE on both legs, the reason in the Reason header and the CDR.
    Hangup {
        /// Call id.
        id: u64,
        /// Why (goes into the CDR).
        #[arg(long, default_value = "ended by operator")]
        reason: String,
    },
    /// Every trunk: state, OPTIONS status, calls, calls per second.
    Trunks,
    /// Take a trunk out of service (no new calls either way) or put it back.
    Trunk {
        /// Trunk name.
        name: String,
        /// `disable` or `enable`.
        action: TrunkAction,
    },
    /// Stop taking calls; exit when the last call ends (as SIGTERM).
    Drain,
    /// Hand the calls over to the next process (upgrade, as SIGUSR2): write every call to the
    /// call-state store and exit at once without BYE; the next `tollgate run` carries them on.
    Handover,
    /// Re-read the configuration file (as SIGHUP).
    Reload,
    /// Version, uptime, calls, ports, data path.
    Status,
    /// Write the decoded SIP of both sides (the internal side's after TLS) to a pcap file for
    /// some seconds: every call, or one call's two legs. Open it in Wireshark (Decode As:
    /// tcp.port 5061 as SIP) or sngrep.
    Capture {
        /// The pcap file to write (replaced when the capture ends).
        #[arg(long)]
        pcap: PathBuf,
        /// Only this call's two legs (its gateway-side and internal Call-IDs).
        #[arg(long)]
        call: Option<u64>,
        /// How long to capture.
        #[arg(long, default_value_t = tollgate_server::control::DEFAULT_CAPTURE_S)]
        seconds: u64,
    },
}

/// `trunk NAME disable|enable`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrunkAction {
    /// No new calls from or to it.
    Disable,
    /// Back in service.
    Enable,
}

fn request(cmd: &CtlCommand) -> Value {
    match cmd {
        CtlCommand::Calls => json!({ "cmd": "calls" }),
        CtlCommand::Call { id } => json!({ "cmd": "call", "id": id }),
        CtlCommand::Hangup { id, reason } => json!({ "cmd": "hangup", "id": id, "reason": reason }),
        CtlCommand::Trunks => json!({ "cmd": "trunks" }),
        CtlCommand::Trunk { name, action } => json!({
            "cmd": "trunk",
            "name": name,
            "enable": *action == TrunkAction::Enable,
        }),
        CtlCommand::Drain => json!({ "cmd": "drain" }),
        CtlCommand::Handover => json!({ "cmd": "handover" }),
        CtlCommand::Reload => json!({ "cmd": "reload" }),
        CtlCommand::Status => json!({ "cmd": "status" }),
        CtlCommand::Capture { call, seconds, .. } => {
            json!({ "cmd": "capture", "call": call, "seconds": seconds })
        }
    }
}

/// Sends one request and reads the one-line answer.
fn ask(socket: &std::path::Path, req: &Value) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Runs `tollgate ctl`.
pub fn run(a: Args) -> ExitCode {
    if let CtlCommand::Capture { pcap, .. } = &a.cmd {
        return super::capture::run(&a.socket, &request(&a.cmd), pcap, a.json);
    }
    let answer = match ask(&a.socket, &request(&a.cmd)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "tollgate ctl: cannot reach the daemon at {}: {e} (is it running? see ops.control_socket, or --socket)",
                a.socket.display()
            );
            return ExitCode::from(2);
        }
    };
    if a.json {
        println!("{answer:#}");
    } else if answer["ok"] == true {
        print!("{}", render(&a.cmd, &answer));
    }
    if answer["ok"] == true {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "tollgate ctl: {}",
            answer["error"]
                .as_str()
                .unwrap_or("the daemon refused the request")
        );
        ExitCode::FAILURE
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn secs(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}s"))
}

/// Packets and losses one way, from a call's `media` object.
fn way(m: &Value, dir: &str) -> String {
    let d = &m[dir];
    if d.is_null() {
        return "-".to_owned();
    }
    format!(
        "{} pkts, {} lost, {} dropped",
        s(&d["packets"]),
        s(&d["lost"]),
        s(&d["dropped"])
    )
}

/// The human rendering of an answer.
pub fn render(cmd: &CtlCommand, v: &Value) -> String {
    let mut o = String::new();
    match cmd {
        CtlCommand::Calls => {
            let calls = v["calls"].as_array().cloned().unwrap_or_default();
            o.push_str(&format!(
                "{:>6}  {:<8}  {:<10}  {:<16}  {:<16}  {:>7}  {:<9}  {:<6}  {:<36}  {:<36}\n",
                "id", "dir", "trunk", "calling", "called", "age", "phase", "path", "gateway->internal", "internal->gateway"
            ));
            for c in &calls {
                o.push_str(&format!(
                    "{:>6}  {:<8}  {:<10}  {:<16}  {:<16}  {:>7}  {:<9}  {:<6}  {:<36}  {:<36}\n",
                    s(&c["id"]),
                    s(&c["direction"]),
                    s(&c["trunk"]),
                    s(&c["calling"]),
                    s(&c["called"]),
                    secs(&c["age_s"]),
                    s(&c["phase"]),
                    s(&c["datapath"]),
                    way(&c["media"], "ext_to_int"),
                    way(&c["media"], "int_to_ext"),
                ));
            }
            o.push_str(&format!("{} call(s)\n", calls.len()));
        }
        CtlCommand::Call { .. } => {
            let c = &v["call"];
            o.push_str(&format!(
                "call {}  {}  trunk {}  {}  age {}  talking {}\n",
                s(&c["id"]),
                s(&c["direction"]),
                s(&c["trunk"]),
                s(&c["phase"]),
                secs(&c["age_s"]),
                secs(&c["talking_s"])
            ));
            o.push_str(&format!(
                "  calling {} -> {}   called {} -> {}\n",
                s(&c["calling"]),
                s(&c["calling_sent"]),
                s(&c["called"]),
                s(&c["called_sent"])
            ));
            for l in c["legs"].as_array().cloned().unwrap_or_default() {
                o.push_str(&format!(
                    "  leg {}: Call-ID {}  tags {} / {}  CSeq {} / {}  target {}  via {}  session {} ({})\n",
                    s(&l["side"]),
                    s(&l["call_id"]),
                    s(&l["local_tag"]),
                    s(&l["remote_tag"]),
                    s(&l["local_cseq"]),
                    s(&l["remote_cseq"]),
                    s(&l["remote_target"]),
                    s(&l["peer"]),
                    s(&l["session_interval_s"]),
                    s(&l["refresher"]),
                ));
                if let Some(sdp) = l["sdp_sent"].as_str() {
                    for line in sdp.lines() {
                        o.push_str(&format!("      {line}\n"));
                    }
                }
            }
            for f in c["media_flows"].as_array().cloned().unwrap_or_default() {
                o.push_str(&format!(
                    "  flow {}: gateway {} <-> relay {} | relay {} <-> internal {}\n      gateway->internal: {}   internal->gateway: {}\n",
                    s(&f["id"]),
                    s(&f["ext"]["peer"]),
                    s(&f["ext"]["relay"]),
                    s(&f["int"]["relay"]),
                    s(&f["int"]["peer"]),
                    s(&f["ext_to_int"]),
                    s(&f["int_to_ext"]),
                ));
            }
            o.push_str(&format!(
                "  media: gateway->internal {}; internal->gateway {}\n",
                way(&c["media"], "ext_to_int"),
                way(&c["media"], "int_to_ext")
            ));
        }
        CtlCommand::Trunks => {
            o.push_str(&format!(
                "{:<12}  {:<22}  {:<9}  {:>6}  {:>7}  {:>8}  {:>9}  {}\n",
                "trunk", "address", "state", "calls", "cps", "max_cps", "max_calls", "marked down"
            ));
            for t in v["trunks"].as_array().cloned().unwrap_or_default() {
                o.push_str(&format!(
                    "{:<12}  {:<22}  {:<9}  {:>6}  {:>7}  {:>8}  {:>9}  {}\n",
                    s(&t["name"]),
                    s(&t["address"]),
                    s(&t["state"]),
                    s(&t["calls"]),
                    s(&t["cps"]),
                    s(&t["max_cps"]),
                    s(&t["max_calls"]),
                    t["marked_down_s"]
                        .as_f64()
                        .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}s more")),
                ));
            }
        }
        CtlCommand::Hangup { id, .. } => o.push_str(&format!("call {id}: BYE sent on both legs\n")),
        CtlCommand::Trunk { name, action } => o.push_str(&format!(
            "trunk {name}: {}\n",
            match action {
                TrunkAction::Disable => "out of service (calls in progress go on)",
                TrunkAction::Enable => "in service",
            }
        )),
        CtlCommand::Drain => o.push_str(&format!(
            "draining: new calls get 503; exit when the last call ends (at most {}s)\n",
            s(&v["deadline_s"])
        )),
        CtlCommand::Handover => o.push_str(&format!(
            "handing over {} calls to the next process through the {} store; exiting\n",
            s(&v["calls"]),
            s(&v["store"])
        )),
        CtlCommand::Reload => o.push_str(&format!("reloaded {}\n", s(&v["reloaded"]))),
        CtlCommand::Status => o.push_str(&(format!(
            "tollgate {}  up {}  {}\ncalls {}  transactions {}  relay ports ext {} int {}  data path {}  trunks up {}/{}\n",
            s(&v["version"]),
            secs(&v["uptime_s"]),
            if v["draining"] == true { "DRAINING" } else { "serving" },
            s(&v["calls"]),
            s(&v["transactions"]),
            s(&v["ports"]["ext"]),
            s(&v["ports"]["int"]),
            s(&v["datapath"]),
            s(&v["trunks_up"]),
            s(&v["trunks"]),
        ) + &match v["state"].as_object() {
            None => "call state: not stored (a restart ends every call)\n".to_owned(),
            Some(st) => format!(
                "call state: {} {}  stored {}  unprotected {}  write errors {}  resyncs {}\n",
                s(&st["backend"]),
                if st["up"] == true { "up" } else { "DOWN" },
                s(&st["stored_calls"]),
                s(&st["unprotected_calls"]),
                s(&st["write_errors"]),
                s(&st["resyncs"]),
            ),
        })),
        CtlCommand::Capture { pcap, .. } => o.push_str(&format!(
            "{} SIP message(s) written to {} ({} lost: the reader fell behind)\n",
            s(&v["messages"]),
            pcap.display(),
            s(&v["dropped"]),
        )),
    }
    o
}
