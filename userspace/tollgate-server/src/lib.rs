//! The Tollgate daemon: everything between the configuration file and the protocol cores.
//!
//! * [`config`]: the TOML file and its validation.
//! * [`tls`]: rustls configurations (mTLS listener, client) from PEM files.
//! * [`transport`]: listeners per side, outbound connections, framing, limits.
//! * [`media`]: the thread that owns the data plane, per-call media totals, inactivity.
//! * [`metrics`]: Prometheus metrics and the `/metrics` endpoint.
//! * [`cdr`]: one JSON line per call.

pub mod cdr;
pub mod config;
pub mod media;
pub mod metrics;
pub mod tls;
pub mod transport;
