//! The core's configuration: plain data, already validated by the daemon (which reads TOML).
//! Regular expressions are compiled here by [`Rewrite::new`] / [`Route::new`] so that a bad
//! pattern is reported when the configuration is built, never during a call.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use regex::Regex;
use tollgate_srtp::Profile;

use crate::error::ConfigError;
use crate::types::Transport;

/// Everything the core needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway side.
    pub ext: ExtConfig,
    /// The internal side.
    pub int: IntConfig,
    /// Gateways.
    pub trunks: Vec<Trunk>,
    /// Outbound routes, matched in order on the E.164 Request-URI user.
    pub routes: Vec<Route>,
    /// Media relay settings.
    pub media: MediaConfig,
    /// SIP behaviour.
    pub sip: SipConfig,
}

/// The gateway side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtConfig {
    /// Our SIP address on the gateway side (Via, Contact).
    pub sip_addr: SocketAddr,
    /// Our media (relay) IP on the gateway NIC.
    pub media_ip: IpAddr,
    /// Default transport toward gateways: the daemon applies it to trunks whose own transport
    /// is not configured; the core itself always uses each [`Trunk::transport`].
    pub transport: Transport,
}

/// The internal side (always TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntConfig {
    /// Our SIP address on the internal side (Via, Contact).
    pub sip_addr: SocketAddr,
    /// Our media (relay) IP on the internal NIC.
    pub media_ip: IpAddr,
    /// The internal next hop (proxy) every inbound call goes to.
    pub next_hop: SocketAddr,
    /// The next hop's host name, used in the Request-URI and To: `sip:<E.164>@<host>`.
    pub next_hop_host: String,
    /// Most new calls a second we send the next hop (None: no cap); each alternate has the
    /// same cap.
    pub next_hop_max_cps: Option<RateLimit>,
    /// Other internal next hops (address, host name), tried in order when the next hop is
    /// marked down or capped, or fails a call (503, no answer, connect failure).
    pub alternates: Vec<(SocketAddr, String)>,
}

impl IntConfig {
    /// Every internal next hop in order of preference: the next hop, then the alternates.
    pub fn next_hops(&self) -> impl Iterator<Item = (SocketAddr, &str)> {
        std::iter::once((self.next_hop, self.next_hop_host.as_str()))
            .chain(self.alternates.iter().map(|(a, h)| (*a, h.as_str())))
    }

    /// The host name of internal next hop `addr` (TLS name and Request-URI host).
    pub fn host_of(&self, addr: SocketAddr) -> Option<&str> {
        self.next_hops().find(|(a, _)| *a == addr).map(|(_, h)| h)
    }
}

/// A rate limit on new calls: a token bucket of `per_second` tokens a second holding at most
/// `burst` (at least 1). `per_second = 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained calls per second.
    pub per_second: u32,
    /// Calls that may arrive at once after a quiet spell.
    pub burst: u32,
}

/// One regex rewrite rule for a number (`^0(\d+)$` -> `+44$1`).
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The pattern (use `^...$` to anchor).
    pub pattern: Regex,
    /// The replacement, with `$1`/`${name}` group references (regex crate syntax).
    pub replacement: String,
}

impl Rewrite {
    /// Compiles a rule.
    pub fn new(pattern: &str, replacement: &str) -> Result<Rewrite, ConfigError> {
        Ok(Rewrite {
            pattern: Regex::new(pattern).map_err(|e| ConfigError::Pattern {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })?,
            replacement: replacement.to_owned(),
        })
    }
}

/// Applies the first rule whose pattern matches `number`; unchanged if none does.
pub fn normalize(rules: &[Rewrite], number: &str) -> String {
    for r in rules {
        if r.pattern.is_match(number) {
            return r
                .pattern
                .replace(number, r.replacement.as_str())
                .into_owned();
        }
    }
    number.to_owned()
}

/// A gateway.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Name (CDRs, routes, metrics).
    pub name: String,
    /// Its SIP address: requests from this IP are accepted as this trunk; calls and
    /// keepalives go to this address.
    pub addr: SocketAddr,
    /// Transport toward it.
    pub transport: Transport,
    /// Inbound rules (to E.164), applied to the Request-URI user and the From user.
    pub inbound: Vec<Rewrite>,
    /// Outbound rules (E.164 to what the gateway wants), applied the same way.
    pub outbound: Vec<Rewrite>,
    /// OPTIONS keepalive interval; zero disables keepalives (the trunk is then always up).
    pub keepalive: Duration,
    /// NAT learning window for the gateway's media source (zero: off).
    pub nat_learn: Duration,
    /// Most new calls a second this trunk may send us (None: no limit).
    pub max_cps: Option<RateLimit>,
    /// Most concurrent calls through this trunk, both directions (0: only the global limit).
    pub max_calls: usize,
    /// Most new calls a second we send this trunk (None: no cap).
    pub out_max_cps: Option<RateLimit>,
}

impl Trunk {
    /// A trunk with no rules, no keepalive and no NAT learning.
    pub fn new(name: &str, addr: SocketAddr, transport: Transport) -> Trunk {
        Trunk {
            name: name.to_owned(),
            addr,
            transport,
            inbound: Vec::new(),
            outbound: Vec::new(),
            keepalive: Duration::ZERO,
            nat_learn: Duration::ZERO,
            max_cps: None,
            max_calls: 0,
            out_max_cps: None,
        }
    }
}

/// An outbound route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Pattern on the E.164 Request-URI user.
    pub pattern: Regex,
    /// Trunk names in failover order.
    pub trunks: Vec<String>,
}

impl Route {
    /// Compiles a route.
    pub fn new(pattern: &str, trunks: &[&str]) -> Result<Route, ConfigError> {
        Ok(Route {
            pattern: Regex::new(pattern).map_err(|e| ConfigError::Pattern {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })?,
            trunks: trunks.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

/// Media relay settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Relay ports on the ext NIC: RTP on even ports, RTCP on RTP + 1 (both in the range).
    pub ext_ports: RangeInclusive<u16>,
    /// Relay ports on the int NIC.
    pub int_ports: RangeInclusive<u16>,
    /// SRTP suites offered to the internal side, in order (tags 1, 2, ...).
    pub srtp_suites: Vec<Profile>,
    /// No media for this long ends the call (enforced by the driver, which sends
    /// [`crate::Input::MediaInactive`]).
    pub inactivity_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            ext_ports: 20000..=29999,
            int_ports: 30000..=39999,
            srtp_suites: vec![Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32],
            inactivity_timeout: Duration::from_secs(60),
        }
    }
}

/// SIP behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// RFC 4028 session interval we ask for, seconds (0: no session timers).
    pub session_expires: u32,
    /// RFC 4028 Min-SE we accept, seconds (at least 90).
    pub min_se: u32,
    /// Concurrent call limit (new INVITEs beyond it get 503).
    pub max_calls: usize,
    /// Pass reliable provisional responses (100rel, PRACK) end to end when both sides
    /// support them; otherwise Tollgate PRACKs them itself and relays them unreliably.
    pub prack_passthrough: bool,
    /// Ringing longer than this is cancelled (408 to the caller). Zero is treated as the
    /// default of 180 s: every call needs an upper bound before answer.
    pub no_answer_timeout: Duration,
    /// Retry-After (seconds) on 503 while draining or overloaded.
    pub retry_after: u32,
    /// Most new calls a second overall (None: no limit).
    pub max_cps: Option<RateLimit>,
    /// How long a next hop that answered 503 (without Retry-After) or did not answer stays
    /// marked down; doubled for each failure in a row, up to 300 s.
    pub next_hop_backoff: Duration,
    /// RFC 3261 T1 for the transaction timers (64·T1 = timeouts B, F, H).
    pub t1: Duration,
    /// Header names that cross the B2BUA both ways besides the built-in allowlist (see the
    /// `headers` module), e.g. a carrier's `X-` header.
    pub pass_headers: Vec<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            session_expires: 1800,
            min_se: 90,
            max_calls: 10_000,
            prack_passthrough: true,
            no_answer_timeout: Duration::from_secs(180),
            retry_after: 30,
            max_cps: None,
            next_hop_backoff: Duration::from_secs(5),
            t1: Duration::from_millis(500),
            pass_headers: Vec::new(),
        }
    }
}

impl SipConfig {
    pub(crate) fn no_answer(&self) -> Duration {
        if self.no_answer_timeout.is_zero() {
            Duration::from_secs(180)
        } else {
            self.no_answer_timeout
        }
    }
}

impl Config {
    /// A configuration with the given sides, no trunks or routes and default media and SIP
    /// settings.
    pub fn new(ext: ExtConfig, int: IntConfig) -> Config {
        Config {
            ext,
            int,
            trunks: Vec::new(),
            routes: Vec::new(),
            media: MediaConfig::default(),
            sip: SipConfig::default(),
        }
    }

    /// Checks what the core relies on: unique trunk names, routes naming known trunks,
    /// non-empty even-capable port ranges, at least one SRTP suite, Min-SE >= 90 and
    /// Session-Expires >= Min-SE (when on).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, t) in self.trunks.iter().enumerate() {
            if self.trunks.iter().take(i).any(|o| o.name == t.name) {
                return Err(ConfigError::DuplicateTrunk(t.name.clone()));
            }
        }
        for r in &self.routes {
            for n in &r.trunks {
                if !self.trunks.iter().any(|t| &t.name == n) {
                    return Err(ConfigError::UnknownTrunk(n.clone()));
                }
            }
        }
        for (side, range) in [
            ("ext", &self.media.ext_ports),
            ("int", &self.media.int_ports),
        ] {
            if crate::ports::pair_count(range) == 0 {
                return Err(ConfigError::PortRange(side));
            }
        }
        if self.media.srtp_suites.is_empty() {
            return Err(ConfigError::NoSuites);
        }
        if self.sip.min_se < 90 {
            return Err(ConfigError::MinSe(self.sip.min_se));
        }
        if self.sip.session_expires != 0 && self.sip.session_expires < self.sip.min_se {
            return Err(ConfigError::SessionExpires {
                session_expires: self.sip.session_expires,
                min_se: self.sip.min_se,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_first_match_wins() {
        let rules = vec![
            Rewrite::new(r"^00(\d+)$", "+$1").unwrap(),
            Rewrite::new(r"^0(\d+)$", "+44$1").unwrap(),
        ];
        assert_eq!(normalize(&rules, "02079460000"), "+442079460000");
        assert_eq!(normalize(&rules, "0033123"), "+33123");
        assert_eq!(normalize(&rules, "+15551234"), "+15551234");
        assert!(Rewrite::new("(", "x").is_err());
    }
}
