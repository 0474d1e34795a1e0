//! The Tollgate daemon: everything between the configuration file and the protocol cores.
//!
//! * [`config`]: the TOML file and its validation.
//! * [`tls`]: rustls configurations (mTLS listener, client) from PEM files.
//! * [`transport`]: listeners per side, outbound connections, framing, limits.
//! * [`media`]: the thread that owns the data plane, per-call media totals, inactivity.
//! * [`metrics`]: Prometheus metrics and the `/metrics` endpoint.
//! * [`cdr`]: one JSON line per call.
//! * [`convert`]: file configuration to the B2BUA core's configuration.
//! * [`driver`]: the task that owns the B2BUA core and carries out its outputs.
//! * [`capture`]: the SIP tap: HEP v3 export and `tollgate ctl capture` taps.
//! * [`control`]: the operator's control socket (`tollgate ctl`).
//! * [`ops_json`]: the core's operator views as JSON (calls, legs, flows, trunks).
//! * [`state`]: the call-state store: `[state]`, loading stored calls, the store writer.
//! * [`ha`]: failover: the standby that waits for the service addresses and lease, fencing.
//! * [`run`]: assembling the server, signals.

pub mod capture;
pub mod cdr;
pub mod config;
pub mod control;
pub mod convert;
pub mod driver;
pub mod ha;
pub mod media;
pub mod metrics;
pub mod ops_json;
pub mod run;
pub mod state;
pub mod tls;
pub mod transport;

pub use run::{Running, ServerError, run, start, start_from};
