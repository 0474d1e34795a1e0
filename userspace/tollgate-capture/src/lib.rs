//! SIP capture formats, sans-IO: what Tollgate's tap turns a SIP message into.
//!
//! * [`hep`]: HEP v3 (the Homer Encapsulation Protocol), encode and decode. Tollgate sends
//!   one HEP packet per SIP message to the configured collector; the decoder serves the test
//!   collector and the fuzz target.
//! * [`frame`]: Ethernet + IPv4/IPv6 + TCP frames synthesised around a SIP message, with
//!   per-direction sequence numbers, so that a pcap of decoded (after TLS) SIP opens in
//!   Wireshark and sngrep as SIP over TCP. Payloads over [`frame::MAX_SEGMENT`] bytes are
//!   split into several segments.
//!
//! Both are pure functions over bytes: no sockets, no clocks, and no panic on any input.

pub mod frame;
pub mod hep;
