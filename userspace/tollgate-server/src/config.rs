//! The configuration file (TOML) and its validation.
//!
//! [`Config::load`] parses and validates; every error names the key and the problem
//! (`trunk[1].inbound[0].match: invalid regex ...`). The validated [`Config`] is what the daemon
//! runs with and what `tollgate check-config` prints.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tollgate_srtp::Profile;

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// TOML syntax or type error (the message carries the line and key).
    #[error("{0}")]
    Syntax(String),
    /// A key has an invalid value.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// SIP transport of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS.
    Tls,
}

/// Which media data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatapathKind {
    /// XDP + AF_XDP (needs root/CAP_NET_ADMIN+CAP_BPF and an XDP-capable NIC).
    Xdp,
    /// UDP sockets.
    #[default]
    Socket,
}

/// How the boundary between the NICs is enforced where packets arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BoundaryKind {
    /// The XDP program on both NICs (on either data path): the gateway NIC passes to the
    /// kernel only its own address on the SIP and relay ports (plus ARP, ND, ICMP errors); the
    /// internal NIC drops what is addressed to the gateway side.
    #[default]
    Xdp,
    /// No packet filter (sockets are still bound to their NIC). For loopback labs and hosts
    /// without XDP; from the gateway NIC the internal address then answers with RSTs and ICMP
    /// errors (never a service: every socket is bound to its own NIC).
    Off,
}

/// The gateway (untrusted) side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtSide {
    /// NIC name: the XDP program is attached to it. Listeners, outbound connections and relay
    /// sockets of this side are bound (SO_BINDTODEVICE) to the interface that holds their
    /// address: this NIC, or a VLAN interface on it.
    pub interface: String,
    /// SIP over TCP listening address of this NIC.
    pub sip_listen: SocketAddr,
    /// Optional SIP over TLS listening address (for TLS trunks).
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// Our media address on this NIC.
    pub media_address: IpAddr,
    /// VLAN tag of this side, if tagged.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The boundary filter ("xdp" or "off").
    #[serde(default)]
    pub boundary: BoundaryKind,
}

/// The internal (trusted) side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntSide {
    /// NIC name: the XDP program is attached to it. Listeners, outbound connections and relay
    /// sockets of this side are bound (SO_BINDTODEVICE) to the interface that holds their
    /// address: this NIC, or a VLAN interface on it.
    pub interface: String,
    /// SIP over mutual TLS listening address of this NIC.
    pub sip_listen: SocketAddr,
    /// Our media address on this NIC.
    pub media_address: IpAddr,
    /// The internal next hop (proxy) that gets calls from the PSTN.
    pub next_hop: SocketAddr,
    /// Its host name: TLS server name and Request-URI host.
    pub next_hop_host: String,
    /// Most new calls a second sent to the next hop (0: no cap). Calls over it get 503.
    #[serde(default = "default_next_hop_cps")]
    pub next_hop_max_cps: u32,
    /// Calls the next hop may get at once after a quiet spell (default: `next_hop_max_cps`).
    #[serde(default)]
    pub next_hop_cps_burst: Option<u32>,
    /// Other internal proxies, tried in order when the next hop is marked down (503, no
    /// answer) or capped, or fails a call; each has the same cap.
    #[serde(default)]
    pub alternate_next_hops: Vec<NextHop>,
    /// VLAN tag of this side, if tagged.
    #[serde(default)]
    pub vlan: Option<u16>,
}

/// An internal next hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextHop {
    /// Its SIP/TLS address.
    pub address: SocketAddr,
    /// Its host name: TLS server name and Request-URI host.
    pub host: String,
}

/// Certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Our certificate chain (PEM), presented on both the listener and outbound connections.
    pub cert: PathBuf,
    /// Our private key (PEM).
    pub key: PathBuf,
    /// CA (PEM) that signs internal clients and the next hop.
    pub ca: PathBuf,
}

/// One number rewrite rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Regular expression on the number.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Replacement (`$1`, `${name}`).
    pub replace: String,
}

/// A PSTN gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// Unique name.
    pub name: String,
    /// Gateway address: calls are accepted only from it, and sent to it.
    pub address: IpAddr,
    /// Gateway SIP port.
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// Transport toward the gateway.
    #[serde(default)]
    pub transport: TransportKind,
    /// Rules applied to numbers from this gateway (to E.164), first match wins.
    #[serde(default)]
    pub inbound: Vec<Rule>,
    /// Rules applied to numbers sent to this gateway, first match wins.
    #[serde(default)]
    pub outbound: Vec<Rule>,
    /// OPTIONS keepalive interval in seconds (0: off).
    #[serde(default = "default_options_interval")]
    pub options_interval_s: u64,
    /// Media source learning window for NATed gateways, in ms (0: off).
    #[serde(default)]
    pub nat_learn_ms: u64,
    /// Most new calls a second this gateway may send us (0: no limit); more get 503 with
    /// Retry-After before anything is allocated.
    #[serde(default = "default_trunk_cps")]
    pub max_cps: u32,
    /// Calls the gateway may send at once after a quiet spell (default: `max_cps`).
    #[serde(default)]
    pub cps_burst: Option<u32>,
    /// Most concurrent calls through this trunk, both directions (0: only `sip.max_calls`).
    #[serde(default)]
    pub max_calls: usize,
    /// Most new calls a second we send this gateway (0: no cap); a route skips it when over.
    #[serde(default = "default_trunk_cps")]
    pub out_max_cps: u32,
}

fn default_sip_port() -> u16 {
    5060
}
fn default_trunk_cps() -> u32 {
    30
}
fn default_next_hop_cps() -> u32 {
    100
}
fn default_global_cps() -> u32 {
    200
}
fn default_backoff() -> u64 {
    5
}
fn default_options_interval() -> u64 {
    30
}

/// A route for calls to the PSTN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Regular expression on the E.164 number.
    pub pattern: String,
    /// Trunks to try in order.
    pub trunks: Vec<String>,
}

/// Media settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Data path.
    #[serde(default)]
    pub datapath: DatapathKind,
    /// Worker threads (XDP: one per NIC queue).
    #[serde(default = "one")]
    pub workers: usize,
    /// CPUs to pin workers to.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// Set the NICs' queue count to `workers` if it differs (XDP).
    #[serde(default = "yes")]
    pub set_channels: bool,
    /// Workers poll without ever sleeping: for dedicated cores, lowest latency, 100% CPU.
    #[serde(default)]
    pub busy_poll: bool,
    /// Workers (XDP and socket), when not busy polling: the longest received packets may wait
    /// so that one wakeup serves several (interrupt moderation, µs; 0: wake per frame; at most 1000).
    #[serde(default = "default_coalesce_us")]
    pub coalesce_us: u32,
    /// Relay port range on the gateway side `[first, last]`.
    pub ext_ports: [u16; 2],
    /// Relay port range on the internal side `[first, last]`.
    pub int_ports: [u16; 2],
    /// SRTP suites offered to the internal side, in order.
    #[serde(default = "default_suites")]
    pub suites: Vec<String>,
    /// End calls whose media stopped for this long (seconds, 0: off).
    #[serde(default = "default_inactivity")]
    pub inactivity_timeout_s: u64,
    /// SRTP replay window (packets, at least 128).
    #[serde(default = "default_replay")]
    pub replay_window: usize,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_suites() -> Vec<String> {
    vec![
        "AES_CM_128_HMAC_SHA1_80".into(),
        "AES_CM_128_HMAC_SHA1_32".into(),
    ]
}
fn default_coalesce_us() -> u32 {
    tollgate_dataplane::DEFAULT_COALESCE_US
}

fn default_inactivity() -> u64 {
    30
}
fn default_replay() -> usize {
    128
}

/// SIP settings and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// Session-Expires we ask for (RFC 4028), seconds.
    #[serde(default = "default_se")]
    pub session_expires_s: u64,
    /// Smallest Session-Expires we accept, seconds.
    #[serde(default = "default_min_se")]
    pub min_se_s: u64,
    /// Most concurrent calls; more get 503.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Most new calls a second overall, all trunks and the internal side (0: no limit).
    #[serde(default = "default_global_cps")]
    pub max_cps: u32,
    /// New calls that may arrive at once after a quiet spell (default: `max_cps`).
    #[serde(default)]
    pub cps_burst: Option<u32>,
    /// A next hop that answers 503 without Retry-After, or does not answer, is skipped for
    /// this long (seconds), doubled for each failure in a row up to 300 s.
    #[serde(default = "default_backoff")]
    pub next_hop_backoff_s: u64,
    /// Largest SIP message accepted on a stream.
    #[serde(default = "default_max_msg")]
    pub max_message_bytes: usize,
    /// Most simultaneous connections from one source address.
    #[serde(default = "default_conn_per_source")]
    pub max_connections_per_source: usize,
    /// Close connections idle this long, seconds.
    #[serde(default = "default_idle")]
    pub connection_idle_timeout_s: u64,
    /// Give up connecting after this long, seconds.
    #[serde(default = "default_connect")]
    pub connect_timeout_s: u64,
    /// How long SIGTERM waits for calls to end, seconds.
    #[serde(default = "default_drain")]
    pub drain_timeout_s: u64,
    /// Header names that cross between the legs both ways, besides the built-in allowlist
    /// (Subject, Reason, Privacy, Diversion, ...; P-Asserted-Identity only outward), e.g. a
    /// carrier's `X-` header. Every other header stays on its leg.
    #[serde(default)]
    pub pass_headers: Vec<String>,
    /// A message must be complete this long after its first byte arrives, seconds; then the
    /// connection is closed (a half-sent message must not hold a connection). 1..=300.
    #[serde(default = "default_message_deadline")]
    pub message_deadline_s: u64,
    /// Unparseable lines or unanswerable messages in a row that close a connection. 1..=1000.
    #[serde(default = "default_stream_faults")]
    pub max_stream_faults: u32,
    /// Bytes one connection's write queue may hold; a peer that stops reading and fills it
    /// is disconnected. max_message_bytes..=64 MiB.
    #[serde(default = "default_write_queue")]
    pub write_queue_bytes: usize,
}

fn default_se() -> u64 {
    1800
}
fn default_min_se() -> u64 {
    90
}
fn default_max_calls() -> usize {
    10_000
}
fn default_max_msg() -> usize {
    65_536
}
fn default_conn_per_source() -> usize {
    64
}
fn default_idle() -> u64 {
    600
}
fn default_connect() -> u64 {
    5
}
fn default_drain() -> u64 {
    60
}
fn default_message_deadline() -> u64 {
    10
}
fn default_stream_faults() -> u32 {
    4
}
fn default_write_queue() -> usize {
    1 << 20
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            session_expires_s: default_se(),
            min_se_s: default_min_se(),
            max_calls: default_max_calls(),
            max_cps: default_global_cps(),
            cps_burst: None,
            next_hop_backoff_s: default_backoff(),
            max_message_bytes: default_max_msg(),
            max_connections_per_source: default_conn_per_source(),
            connection_idle_timeout_s: default_idle(),
            connect_timeout_s: default_connect(),
            drain_timeout_s: default_drain(),
            pass_headers: Vec::new(),
            message_deadline_s: default_message_deadline(),
            max_stream_faults: default_stream_faults(),
            write_queue_bytes: default_write_queue(),
        }
    }
}

/// Operations: metrics, CDRs, logs, the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Prometheus endpoint address: never a wildcard nor a gateway-side address; at start it is
    /// bound to the interface that holds the address, which must not be the gateway NIC.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// CDR file (JSON lines), appended to.
    #[serde(default)]
    pub cdr_path: Option<PathBuf>,
    /// Log format: "text" or "json".
    #[serde(default)]
    pub log_format: Option<String>,
    /// The operator's control socket (`tollgate ctl`): a Unix socket, mode 0660 in a 0750
    /// directory, never a network address. Empty: no control socket.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// HEP v3 collector (Homer) that gets a copy of every SIP message, both sides, the
    /// internal side's in clear text. Sent from the internal SIP address over the internal
    /// NIC only: never a gateway-side address, same IP family as `int.sip_listen`.
    #[serde(default)]
    pub hep_collector: Option<SocketAddr>,
    /// HEP capture agent id (chunk 12); default 2001. Needs `hep_collector`.
    #[serde(default)]
    pub hep_agent_id: Option<u32>,
    /// HEP authentication key (chunk 14, the collector's password). Needs `hep_collector`.
    #[serde(default)]
    pub hep_password: Option<String>,
}

/// The HEP agent id when `ops.hep_agent_id` is not set.
pub const DEFAULT_HEP_AGENT_ID: u32 = 2001;

fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::control::DEFAULT_SOCKET)
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            metrics_listen: None,
            cdr_path: None,
            log_format: None,
            control_socket: default_control_socket(),
            hep_collector: None,
            hep_agent_id: None,
            hep_password: None,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Gateway side.
    pub ext: ExtSide,
    /// Internal side.
    pub int: IntSide,
    /// Certificates.
    pub tls: TlsFiles,
    /// Gateways.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    /// Routes to the PSTN.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Media.
    pub media: Media,
    /// SIP.
    #[serde(default)]
    pub sip: Sip,
    /// Operations.
    #[serde(default)]
    pub ops: Ops,
    /// The call-state store (calls survive a restart).
    #[serde(default)]
    pub state: crate::state::StateConfig,
    /// Failover (standby nodes, fencing).
    #[serde(default)]
    pub ha: crate::ha::HaConfig,
}

fn check_specific(key: &str, a: SocketAddr) -> Result<(), ConfigError> {
    if a.ip().is_unspecified() {
        return Err(invalid(
            key,
            format!("{a} is a wildcard address; bind this NIC's own address"),
        ));
    }
    if a.port() == 0 {
        return Err(invalid(key, "port 0 is not allowed"));
    }
    Ok(())
}

/// The highest rate limit accepted (calls per second).
pub const MAX_CPS: u32 = 100_000;

/// `<prefix>.max_cps` / `<prefix>.cps_burst` (the internal next hop's keys are
/// `next_hop_max_cps` / `next_hop_cps_burst`).
fn check_rate(prefix: &str, cps: u32, burst: Option<u32>) -> Result<(), ConfigError> {
    let (rate_key, burst_key) = if prefix == "int.next_hop" {
        (format!("{prefix}_max_cps"), format!("{prefix}_cps_burst"))
    } else {
        (format!("{prefix}.max_cps"), format!("{prefix}.cps_burst"))
    };
    if cps > MAX_CPS {
        return Err(invalid(rate_key, format!("must be 0..={MAX_CPS}")));
    }
    if let Some(b) = burst {
        if cps == 0 {
            return Err(invalid(
                burst_key,
                format!("has no effect without {rate_key}"),
            ));
        }
        if b == 0 || b > MAX_CPS {
            return Err(invalid(burst_key, format!("must be 1..={MAX_CPS}")));
        }
    }
    Ok(())
}

/// A validated rate as the core's token bucket (None: no limit).
pub fn rate_limit(cps: u32, burst: Option<u32>) -> Option<tollgate_b2bua::RateLimit> {
    (cps > 0).then(|| tollgate_b2bua::RateLimit {
        per_second: cps,
        burst: burst.unwrap_or(cps).max(1),
    })
}

fn check_range(key: &str, r: [u16; 2]) -> Result<(), ConfigError> {
    let [a, b] = r;
    if a < 1024 || a >= b || a % 2 != 0 {
        return Err(invalid(
            key,
            format!("[{a}, {b}] must be an even first port >= 1024 below the last"),
        ));
    }
    if b - a < 3 {
        return Err(invalid(key, "range holds fewer than two RTP/RTCP pairs"));
    }
    Ok(())
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base)
    }

    /// Parses and validates configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        for p in [&mut c.tls.cert, &mut c.tls.key, &mut c.tls.ca] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = c.ops.cdr_path.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
        if !c.ops.control_socket.as_os_str().is_empty() && c.ops.control_socket.is_relative() {
            c.ops.control_socket = base.join(&c.ops.control_socket);
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks everything that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.state.validate()?;
        self.ha.validate(self.state.backend)?;
        self.validate_sides()?;
        self.validate_tls_files()?;
        self.validate_trunks_and_routes()?;
        self.validate_media()?;
        self.validate_sip()?;
        self.validate_ops()?;
        Ok(())
    }

    /// The two sides: specific listen, media and next-hop addresses on separate NICs, next-hop rates and names.
    fn validate_sides(&self) -> Result<(), ConfigError> {
        check_specific("ext.sip_listen", self.ext.sip_listen)?;
        if let Some(t) = self.ext.tls_listen {
            check_specific("ext.tls_listen", t)?;
        }
        check_specific("int.sip_listen", self.int.sip_listen)?;
        check_specific("int.next_hop", self.int.next_hop)?;
        if self.ext.media_address.is_unspecified() {
            return Err(invalid(
                "ext.media_address",
                "must be this NIC's own address",
            ));
        }
        if self.int.media_address.is_unspecified() {
            return Err(invalid(
                "int.media_address",
                "must be this NIC's own address",
            ));
        }
        if self.ext.sip_listen.ip() == self.int.sip_listen.ip() {
            return Err(invalid(
                "int.sip_listen",
                "must be on a different address than ext.sip_listen: trusted and untrusted traffic stay on separate NICs",
            ));
        }
        check_rate(
            "int.next_hop",
            self.int.next_hop_max_cps,
            self.int.next_hop_cps_burst,
        )?;
        if self.int.next_hop_host.trim().is_empty() {
            return Err(invalid("int.next_hop_host", "must name the internal proxy"));
        }
        for (i, h) in self.int.alternate_next_hops.iter().enumerate() {
            let k = format!("int.alternate_next_hops[{i}]");
            check_specific(&format!("{k}.address"), h.address)?;
            if h.host.trim().is_empty() {
                return Err(invalid(format!("{k}.host"), "must name the proxy"));
            }
            let earlier = std::iter::once(self.int.next_hop).chain(
                self.int
                    .alternate_next_hops
                    .iter()
                    .take(i)
                    .map(|x| x.address),
            );
            if earlier.clone().any(|a| a == h.address) {
                return Err(invalid(
                    format!("{k}.address"),
                    format!("{} is already a next hop", h.address),
                ));
            }
        }
        Ok(())
    }

    /// The TLS certificate, key and CA are readable files.
    fn validate_tls_files(&self) -> Result<(), ConfigError> {
        for (k, p) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.ca", &self.tls.ca),
        ] {
            if !p.is_file() {
                return Err(invalid(
                    k,
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        Ok(())
    }

    /// Trunks (unique names, addresses, rates) and the routes that name them.
    fn validate_trunks_and_routes(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let k = format!("trunk[{i}]");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(invalid(
                    format!("{k}.name"),
                    format!("{:?} is empty or not unique", t.name),
                ));
            }
            if t.address.is_unspecified() {
                return Err(invalid(
                    format!("{k}.address"),
                    "must be the gateway's address",
                ));
            }
            for (dir, rules) in [("inbound", &t.inbound), ("outbound", &t.outbound)] {
                for (j, r) in rules.iter().enumerate() {
                    regex::Regex::new(&r.pattern).map_err(|e| {
                        invalid(
                            format!("{k}.{dir}[{j}].match"),
                            format!("invalid regex: {e}"),
                        )
                    })?;
                }
            }
            check_rate(&k, t.max_cps, t.cps_burst)?;
            if t.out_max_cps > MAX_CPS {
                return Err(invalid(
                    format!("{k}.out_max_cps"),
                    format!("must be 0..={MAX_CPS}"),
                ));
            }
            if t.transport == TransportKind::Tls && self.ext.tls_listen.is_none() {
                return Err(invalid(
                    format!("{k}.transport"),
                    "tls trunks need ext.tls_listen",
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let k = format!("route[{i}]");
            regex::Regex::new(&r.pattern)
                .map_err(|e| invalid(format!("{k}.pattern"), format!("invalid regex: {e}")))?;
            if r.trunks.is_empty() {
                return Err(invalid(
                    format!("{k}.trunks"),
                    "must list at least one trunk",
                ));
            }
            for (j, t) in r.trunks.iter().enumerate() {
                if !names.contains(t.as_str()) {
                    return Err(invalid(
                        format!("{k}.trunks[{j}]"),
                        format!("no trunk named {t:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[media]`: workers, port ranges, SRTP suites, replay window, moderation.
    fn validate_media(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        if m.workers == 0 || m.workers > 64 {
            return Err(invalid("media.workers", "must be 1..=64"));
        }
        check_range("media.ext_ports", m.ext_ports)?;
        check_range("media.int_ports", m.int_ports)?;
        if m.suites.is_empty() {
            return Err(invalid("media.suites", "must list at least one SRTP suite"));
        }
        for (i, s) in m.suites.iter().enumerate() {
            if Profile::from_sdes_name(s).is_none() {
                return Err(invalid(
                    format!("media.suites[{i}]"),
                    format!(
                        "unknown suite {s:?} (known: {})",
                        Profile::ALL.map(Profile::sdes_name).join(", ")
                    ),
                ));
            }
        }
        if !(128..=32768).contains(&m.replay_window) {
            return Err(invalid("media.replay_window", "must be 128..=32768"));
        }
        if m.coalesce_us > 1000 {
            return Err(invalid(
                "media.coalesce_us",
                "must be 0..=1000 (µs of added latency at most)",
            ));
        }
        Ok(())
    }

    /// `[sip]`: session timers, rates, message and stream limits, passed headers.
    fn validate_sip(&self) -> Result<(), ConfigError> {
        let s = &self.sip;
        if s.min_se_s < 90 || s.session_expires_s < s.min_se_s {
            return Err(invalid(
                "sip.session_expires_s",
                "must be >= sip.min_se_s >= 90 (RFC 4028)",
            ));
        }
        check_rate("sip", s.max_cps, s.cps_burst)?;
        if !(1..=300).contains(&s.next_hop_backoff_s) {
            return Err(invalid("sip.next_hop_backoff_s", "must be 1..=300 seconds"));
        }
        if !(1024..=1 << 20).contains(&s.max_message_bytes) {
            return Err(invalid("sip.max_message_bytes", "must be 1 KiB..=1 MiB"));
        }
        if !(1..=300).contains(&s.message_deadline_s) {
            return Err(invalid("sip.message_deadline_s", "must be 1..=300 seconds"));
        }
        if !(1..=1000).contains(&s.max_stream_faults) {
            return Err(invalid("sip.max_stream_faults", "must be 1..=1000"));
        }
        if !(s.max_message_bytes..=64 << 20).contains(&s.write_queue_bytes) {
            return Err(invalid(
                "sip.write_queue_bytes",
                "must be sip.max_message_bytes..=64 MiB (a queue holds at least one message)",
            ));
        }
        for (i, h) in s.pass_headers.iter().enumerate() {
            let token = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !token {
                return Err(invalid(
                    format!("sip.pass_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                ));
            }
            let name = tollgate_sip::HeaderName::parse(h);
            if name.is_leg_specific()
                || matches!(
                    name,
                    tollgate_sip::HeaderName::Supported
                        | tollgate_sip::HeaderName::Require
                        | tollgate_sip::HeaderName::Unsupported
                        | tollgate_sip::HeaderName::ContentType
                        | tollgate_sip::HeaderName::ContentEncoding
                        | tollgate_sip::HeaderName::SessionExpires
                        | tollgate_sip::HeaderName::MinSe
                        | tollgate_sip::HeaderName::Allow
                        | tollgate_sip::HeaderName::PAssertedIdentity
                )
            {
                return Err(invalid(
                    format!("sip.pass_headers[{i}]"),
                    format!("{h} is built per leg or policed by Tollgate and cannot be passed"),
                ));
            }
        }
        Ok(())
    }

    /// `[ops]` and the NICs: metrics never on the gateway NIC, HEP, interfaces, log format.
    fn validate_ops(&self) -> Result<(), ConfigError> {
        if let Some(a) = self.ops.metrics_listen {
            check_specific("ops.metrics_listen", a)?;
            if self.ext_addresses().contains(&a.ip()) {
                return Err(invalid(
                    "ops.metrics_listen",
                    format!(
                        "{} is a gateway-side address; metrics are never served to the gateway NIC",
                        a.ip()
                    ),
                ));
            }
        }
        self.validate_hep()?;
        if self.ext.interface.trim().is_empty() {
            return Err(invalid("ext.interface", "must name the gateway-side NIC"));
        }
        if self.int.interface.trim().is_empty() {
            return Err(invalid("int.interface", "must name the internal NIC"));
        }
        if self.ext.interface == self.int.interface {
            if self.ext.boundary == BoundaryKind::Xdp {
                return Err(invalid(
                    "ext.boundary",
                    format!(
                        "\"xdp\" needs two NICs, but ext.interface and int.interface are both {:?}; set ext.boundary = \"off\" for a single-interface (loopback) lab",
                        self.ext.interface
                    ),
                ));
            }
            if self.media.datapath == DatapathKind::Xdp {
                return Err(invalid(
                    "int.interface",
                    "the XDP data path needs two NICs: must differ from ext.interface",
                ));
            }
        }
        let ext = self.ext_addresses();
        for (key, a) in [
            ("int.sip_listen", self.int.sip_listen.ip()),
            ("int.media_address", self.int.media_address),
        ] {
            if ext.contains(&a) {
                return Err(invalid(
                    key,
                    format!("{a} is also a gateway-side address: each side has its own"),
                ));
            }
        }
        if let Some(f) = &self.ops.log_format
            && f != "text"
            && f != "json"
        {
            return Err(invalid("ops.log_format", "must be \"text\" or \"json\""));
        }
        Ok(())
    }

    fn validate_hep(&self) -> Result<(), ConfigError> {
        let o = &self.ops;
        let Some(a) = o.hep_collector else {
            if o.hep_agent_id.is_some() {
                return Err(invalid("ops.hep_agent_id", "set without ops.hep_collector"));
            }
            if o.hep_password.is_some() {
                return Err(invalid("ops.hep_password", "set without ops.hep_collector"));
            }
            return Ok(());
        };
        check_specific("ops.hep_collector", a)?;
        if self.ext_addresses().contains(&a.ip()) {
            return Err(invalid(
                "ops.hep_collector",
                format!(
                    "{} is a gateway-side address; clear-text internal signalling never goes to the gateway side",
                    a.ip()
                ),
            ));
        }
        if let Some(t) = self.trunks.iter().find(|t| t.address == a.ip()) {
            return Err(invalid(
                "ops.hep_collector",
                format!(
                    "{} is trunk {}'s gateway; clear-text internal signalling never goes to the gateway side",
                    a.ip(),
                    t.name
                ),
            ));
        }
        if a.is_ipv4() != self.int.sip_listen.is_ipv4() {
            return Err(invalid(
                "ops.hep_collector",
                format!(
                    "{a} is not of the IP family of int.sip_listen ({}), the address HEP is sent from",
                    self.int.sip_listen.ip()
                ),
            ));
        }
        if let Some(p) = &o.hep_password
            && (p.is_empty() || p.len() > 256 || p.chars().any(char::is_control))
        {
            return Err(invalid(
                "ops.hep_password",
                "must be 1..=256 bytes without control characters",
            ));
        }
        Ok(())
    }

    /// The suites as profiles (validated).
    pub fn suites(&self) -> Vec<Profile> {
        self.media
            .suites
            .iter()
            .filter_map(|s| Profile::from_sdes_name(s))
            .collect()
    }

    /// The effective configuration as TOML (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }

    /// Tollgate's own addresses on the gateway side (listeners and media).
    pub fn ext_addresses(&self) -> Vec<IpAddr> {
        let mut v = vec![self.ext.sip_listen.ip(), self.ext.media_address];
        v.extend(self.ext.tls_listen.map(|a| a.ip()));
        v.dedup();
        v
    }

    /// Tollgate's own addresses on the internal side (listener and media).
    pub fn int_addresses(&self) -> Vec<IpAddr> {
        let mut v = vec![self.int.sip_listen.ip(), self.int.media_address];
        v.dedup();
        v
    }

    /// The trunk whose gateway address is `ip`.
    pub fn trunk_for(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.address == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> (tempdir::Dir, String) {
        let d = tempdir::Dir::new();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(d.0.join(f), "x").unwrap();
        }
        let text = r#"
[ext]
interface = "ext0"
sip_listen = "10.201.1.1:5060"
media_address = "10.201.1.1"

[int]
interface = "int0"
sip_listen = "10.201.2.1:5061"
media_address = "10.201.2.1"
next_hop = "10.201.2.2:5061"
next_hop_host = "proxy.int.example"

[tls]
cert = "cert.pem"
key = "key.pem"
ca = "ca.pem"

[[trunk]]
name = "gw1"
address = "10.201.1.2"
inbound = [{ match = "^0(\\d+)$", replace = "+44$1" }]

[[route]]
pattern = "^\\+44"
trunks = ["gw1"]

[media]
ext_ports = [30000, 30999]
int_ports = [40000, 40999]
"#
        .to_owned();
        (d, text)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("tg-cfg-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn err(text: &str, d: &tempdir::Dir) -> String {
        Config::parse(text, &d.0).unwrap_err().to_string()
    }

    #[test]
    fn valid_config_and_defaults() {
        let (d, t) = base();
        let c = Config::parse(&t, &d.0).unwrap();
        assert_eq!(c.media.datapath, DatapathKind::Socket);
        assert_eq!(
            c.ext.boundary,
            BoundaryKind::Xdp,
            "the boundary is on by default"
        );
        let lo = t.replace("\"int0\"", "\"ext0\"").replace(
            "media_address = \"10.201.1.1\"",
            "media_address = \"10.201.1.1\"\nboundary = \"off\"",
        );
        assert_eq!(
            Config::parse(&lo, &d.0).unwrap().ext.boundary,
            BoundaryKind::Off
        );
        assert_eq!(
            c.suites(),
            vec![Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32]
        );
        assert_eq!(c.trunks[0].port, 5060);
        assert!(c.tls.cert.is_absolute() || c.tls.cert.starts_with(&d.0));
        let printed = c.to_toml();
        assert!(printed.contains("session_expires_s = 1800"));
        assert_eq!(
            Config::parse(&printed, &d.0).unwrap(),
            c,
            "printed config round-trips"
        );
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let (d, _) = base();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/tollgate.toml");
        let text = std::fs::read_to_string(path).unwrap();
        for f in ["tollgate.pem", "tollgate-key.pem", "corp-ca.pem"] {
            std::fs::write(d.0.join(f), "x").unwrap();
        }
        let text = text.replace("/etc/tollgate/tls/", &format!("{}/", d.0.display()));
        let c = Config::parse(&text, &d.0).unwrap();
        assert_eq!(c.trunks.len(), 2);
        assert_eq!(c.media.datapath, DatapathKind::Xdp);
        crate::convert::b2bua_config(&c).unwrap();
    }

    #[test]
    fn admission_limits_are_validated_and_carried_to_the_core() {
        let (d, t) = base();
        let c = Config::parse(&t, &d.0).unwrap();
        assert_eq!(c.trunks[0].max_cps, 30, "carrier-safe default");
        assert_eq!(c.sip.max_cps, 200);
        assert_eq!(c.int.next_hop_max_cps, 100);
        let core = crate::convert::b2bua_config(&c).unwrap();
        assert_eq!(
            core.trunks[0].max_cps,
            Some(tollgate_b2bua::RateLimit {
                per_second: 30,
                burst: 30
            })
        );
        let with = |extra: &str| t.replace("[[trunk]]\n", &format!("[[trunk]]\n{extra}\n"));
        let c = Config::parse(&with("max_cps = 0\nmax_calls = 50"), &d.0).unwrap();
        let core = crate::convert::b2bua_config(&c).unwrap();
        assert_eq!(core.trunks[0].max_cps, None, "0 turns the limit off");
        assert_eq!(core.trunks[0].max_calls, 50);
        for (extra, msg) in [
            ("max_cps = 200000", "trunk[0].max_cps: must be 0..=100000"),
            ("cps_burst = 0", "trunk[0].cps_burst: must be 1..=100000"),
            (
                "max_cps = 0\ncps_burst = 5",
                "trunk[0].cps_burst: has no effect without trunk[0].max_cps",
            ),
            (
                "out_max_cps = 100001",
                "trunk[0].out_max_cps: must be 0..=100000",
            ),
        ] {
            let e = err(&with(extra), &d);
            assert!(e.starts_with(msg), "{extra:?}: {e}");
        }
        let alt = |v: &str| {
            t.replace(
                "next_hop_host",
                &format!("alternate_next_hops = {v}\nnext_hop_host"),
            )
        };
        let c = Config::parse(
            &alt(r#"[{ address = "10.201.2.3:5061", host = "proxy2" }]"#),
            &d.0,
        )
        .unwrap();
        let core = crate::convert::b2bua_config(&c).unwrap();
        assert_eq!(
            core.int.host_of("10.201.2.3:5061".parse().unwrap()),
            Some("proxy2")
        );
        let e = err(&alt(r#"[{ address = "10.201.2.2:5061", host = "p" }]"#), &d);
        assert!(
            e.starts_with(
                "int.alternate_next_hops[0].address: 10.201.2.2:5061 is already a next hop"
            ),
            "{e}"
        );
        let e = err(&alt(r#"[{ address = "10.201.2.3:5061", host = " " }]"#), &d);
        assert!(e.starts_with("int.alternate_next_hops[0].host"), "{e}");
        let e = err(&format!("{t}\n[sip]\nnext_hop_backoff_s = 0\n"), &d);
        assert!(e.starts_with("sip.next_hop_backoff_s"), "{e}");
        let e = err(
            &t.replace("next_hop_host", "next_hop_cps_burst = 0\nnext_hop_host"),
            &d,
        );
        assert!(e.starts_with("int.next_hop_cps_burst: must be 1..="), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let (d, t) = base();
        let cases = [
            (
                t.replace("10.201.1.1:5060", "0.0.0.0:5060"),
                "ext.sip_listen: 0.0.0.0:5060 is a wildcard",
            ),
            (
                t.replace("10.201.2.1:5061", "10.201.1.1:5061"),
                "int.sip_listen: must be on a different address",
            ),
            (
                t.replace("^0(\\\\d+)$", "^0(\\\\d+$"),
                "trunk[0].inbound[0].match: invalid regex",
            ),
            (
                t.replace("trunks = [\"gw1\"]", "trunks = [\"gw9\"]"),
                "route[0].trunks[0]: no trunk named \"gw9\"",
            ),
            (
                t.replace("[30000, 30999]", "[30001, 30999]"),
                "media.ext_ports",
            ),
            (t.replace("cert.pem", "missing.pem"), "tls.cert:"),
            (
                t.replace("[media]", "[media]\nsuites = [\"NULL\"]"),
                "media.suites[0]: unknown suite",
            ),
            (
                t.replace("[media]", "[media]\ncoalesce_us = 5000"),
                "media.coalesce_us: must be 0..=1000",
            ),
            (
                t.replace("[media]", "[media]\nbogus = 1"),
                "unknown field `bogus`",
            ),
            (
                format!("{t}\n[sip]\npass_headers = [\"X-Ok\", \"Bad Name\"]\n"),
                "sip.pass_headers[1]: \"Bad Name\" is not a header name",
            ),
            (
                format!("{t}\n[sip]\npass_headers = [\"p-asserted-identity\"]\n"),
                "sip.pass_headers[0]: p-asserted-identity is built per leg or policed",
            ),
            (
                format!("{t}\n[sip]\npass_headers = [\"Via\"]\n"),
                "sip.pass_headers[0]: Via is built per leg",
            ),
            (
                format!("{t}\n[sip]\nmessage_deadline_s = 0\n"),
                "sip.message_deadline_s: must be 1..=300",
            ),
            (
                format!("{t}\n[sip]\nmax_stream_faults = 0\n"),
                "sip.max_stream_faults: must be 1..=1000",
            ),
            (
                format!("{t}\n[sip]\nwrite_queue_bytes = 1000\n"),
                "sip.write_queue_bytes: must be sip.max_message_bytes..=64 MiB",
            ),
            (
                format!("{t}\n[ops]\nmetrics_listen = \"10.201.1.1:9100\"\n"),
                "ops.metrics_listen: 10.201.1.1 is a gateway-side address",
            ),
            (
                format!("{t}\n[ops]\nmetrics_listen = \"0.0.0.0:9100\"\n"),
                "ops.metrics_listen: 0.0.0.0:9100 is a wildcard",
            ),
            (
                format!("{t}\n[ops]\nmetrics_listen = \"[::]:9100\"\n"),
                "ops.metrics_listen: [::]:9100 is a wildcard",
            ),
            (
                format!("{t}\n[ops]\nhep_collector = \"10.201.1.1:9060\"\n"),
                "ops.hep_collector: 10.201.1.1 is a gateway-side address",
            ),
            (
                format!("{t}\n[ops]\nhep_collector = \"10.201.1.2:9060\"\n"),
                "ops.hep_collector: 10.201.1.2 is trunk",
            ),
            (
                format!("{t}\n[ops]\nhep_collector = \"0.0.0.0:9060\"\n"),
                "ops.hep_collector: 0.0.0.0:9060 is a wildcard",
            ),
            (
                format!("{t}\n[ops]\nhep_collector = \"[2001:db8::1]:9060\"\n"),
                "ops.hep_collector: [2001:db8::1]:9060 is not of the IP family of int.sip_listen",
            ),
            (
                format!("{t}\n[ops]\nhep_password = \"x\"\n"),
                "ops.hep_password: set without ops.hep_collector",
            ),
            (
                format!("{t}\n[ops]\nhep_agent_id = 1\n"),
                "ops.hep_agent_id: set without ops.hep_collector",
            ),
            (
                format!("{t}\n[ops]\nhep_collector = \"10.20.0.30:9060\"\nhep_password = \"\"\n"),
                "ops.hep_password: must be 1..=256 bytes",
            ),
            (
                t.replace("\"int0\"", "\"ext0\""),
                "ext.boundary: \"xdp\" needs two NICs",
            ),
            (
                t.replace("\"int0\"", "\"ext0\"")
                    .replace(
                        "media_address = \"10.201.1.1\"",
                        "media_address = \"10.201.1.1\"\nboundary = \"off\"",
                    )
                    .replace("[media]", "[media]\ndatapath = \"xdp\""),
                "int.interface: the XDP data path needs two NICs",
            ),
            (
                t.replace(
                    "media_address = \"10.201.2.1\"",
                    "media_address = \"10.201.1.1\"",
                ),
                "int.media_address: 10.201.1.1 is also a gateway-side address",
            ),
            (
                t.replace(
                    "media_address = \"10.201.1.1\"",
                    "media_address = \"10.201.1.1\"\nboundary = \"nft\"",
                ),
                "unknown variant `nft`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text, &d);
            assert!(e.contains(want), "expected {want:?} in {e:?}");
        }
    }
}
