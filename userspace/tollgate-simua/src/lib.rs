//! A simulated PSTN gateway and a simulated internal endpoint, for the demo, the end-to-end
//! tests and the call benchmarks.
//!
//! * [`certs`]: a lab CA and certificates (rcgen), written as PEM files.
//! * [`failover`]: Tollgate nodes in the HA lab (standby, keepalived pair) and one failover
//!   round with its figures, for the failover tests and `cargo xtask demo --failover`.
//! * [`hostile`]: hostile SIP clients: an INVITE flood, slowloris, garbage, oversize, a peer
//!   that never reads, bad start lines.
//! * [`tone`]: the 440 Hz G.711 test tone; every frame is a function of its sequence number, so
//!   a receiver can check each packet arrived intact.
//! * [`media`]: one call's RTP or SRTP stream: paced sender, verifying receiver, report.
//! * [`labconf`]: the Tollgate configuration and topology of a lab (namespaces or loopback).
//! * [`process`]: Tollgate as a child process: start, observe (/proc, /metrics), drain.
//! * [`scenario`]: call plans between the two simulated parties, with per-call outcomes.
//! * [`ua`]: a SIP user agent over TCP or TLS that places calls, answers them, and hangs up.
//!
//! This is test equipment, not a product SIP stack: it speaks just enough SIP (reliable
//! transports, one dialog per call, no forking) to drive Tollgate from both sides, and it
//! reports everything it saw.

pub mod certs;
pub mod daemon_log;
pub mod failover;
pub mod hostile;
pub mod labconf;
pub mod media;
pub mod process;
pub mod scenario;
pub mod tone;
pub mod ua;

pub use media::{MediaConfig, MediaReport};
pub use ua::{Call, Endpoint, EndpointConfig, UaError};
