//! SRTP and SRTCP for Tollgate's media relay.
//!
//! * [`profile`]: the protection profiles (crypto suites) and their key, salt and tag sizes.
//! * [`sdes`]: SDES key material as carried in SDP `a=crypto` lines (RFC 4568 `inline:`).

pub mod profile;
pub mod sdes;

pub use profile::Profile;
pub use sdes::{KeyMaterial, SdesError};
