//! SRTP and SRTCP for Tollgate's media relay: RFC 3711 (AES-CM + HMAC-SHA1), RFC 6188
//! (AES-256-CM) and RFC 7714 (AES-GCM), in place on packet buffers.
//!
//! * [`profile`]: the protection profiles (crypto suites) and their key, salt and tag sizes.
//! * [`sdes`]: SDES key material as carried in SDP `a=crypto` lines (RFC 4568 `inline:`).
//! * [`context`]: [`Context`], one direction of one session: key schedule, stream table,
//!   `protect_rtp`/`unprotect_rtp`/`protect_rtcp`/`unprotect_rtcp`.
//! * [`batch`]: a batch API ([`process_batch`], [`Job`]) for a burst of packets from many
//!   flows, HMAC-SHA1 shared across their contexts; measured by the SRTP benchmark, meant for
//!   the relay's workers per burst.
//! * [`error`]: [`Error`] and its counter-index [`ErrorKind`].
//! * `crypto` (private): AES-CM keystream, the key derivation PRF, HMAC-SHA1 with
//!   precomputed ipad/opad state (one packet, or many under per-packet keys), AES-GCM.
//! * `sha1x` (private): SHA-1 compressions of many messages at once (SHA-NI lanes, AVX-512).
//! * `replay` (private): ROC/index estimation and the replay window.
//!
//! # Using it
//!
//! ```
//! use tollgate_srtp::{Config, Context, KeyMaterial, Profile};
//! let km = KeyMaterial::from_sdes(
//!     Profile::Aes128CmHmacSha1_80,
//!     "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
//! ).unwrap();
//! let mut tx = Context::new(&km, Config::default()).unwrap();
//! let mut rx = Context::new(&km, Config::default()).unwrap();
//! let mut buf = [0u8; 1500];
//! let rtp = [0x80, 0, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let n = tx.protect_rtp(&mut buf, rtp.len()).unwrap();
//! assert_eq!(n, rtp.len() + 10);
//! let n = rx.unprotect_rtp(&mut buf, n).unwrap();
//! assert_eq!(&buf[..n], &rtp);
//! ```
//!
//! # Guarantees
//!
//! * No heap allocation, lock or syscall in any protect/unprotect or batch call: the stream
//!   table and replay windows are allocated by [`Context::new`]. A new SSRC beyond
//!   [`Config::max_streams`] is refused with [`ErrorKind::TooManyStreams`].
//! * Input never panics the process; every refusal is an [`Error`] whose [`Error::kind`]
//!   indexes a counter array of [`ErrorKind::COUNT`] entries.
//! * Unprotect verifies the tag before decrypting: a refused packet leaves the buffer (and
//!   the stream state) as it was.
//! * Accept/reject decisions and output bytes match libsrtp 2.5 (differential tests), with
//!   these behaviours of libsrtp reproduced: the first SRTCP index sent is 1; the `_32`
//!   profiles use an 80-bit SRTCP tag; the 12-byte GCM salt is zero-padded for key
//!   derivation; while a stream's highest index is at most 2^15 its ROC is taken as 0;
//!   protecting a sequence number twice is refused as a replay; AES-CM SRTCP without the E
//!   flag is refused.
//! * MKI is not supported: key material with an MKI is refused by [`Context::new`] with
//!   [`ErrorKind::UnsupportedMki`]. An SDES lifetime is enforced per context
//!   ([`ErrorKind::KeyExhausted`] once that many packets were processed).
//!
//! # Batch API
//!
//! [`process_batch`] takes a [`ContextSet`] (a slice or `Vec` of contexts, or the caller's flow
//! table implementing the trait) and a slice of [`Job`]s, each naming its context, an [`Op`],
//! the buffer and length; each job's `result` is set to what the single-packet call returns.
//! The HMAC-SHA1 tags of up to 16 packets, of any contexts, are computed together (AVX-512
//! multi-buffer SHA-1 where the CPU has it, else four SHA-NI lanes); see [`batch`].

pub mod batch;
pub mod context;
mod crypto;
pub mod error;
pub mod profile;
mod replay;
pub mod sdes;
mod sha1x;
#[cfg(test)]
mod vectors;

pub use batch::{ContextSet, Job, Op, process_batch};
pub use context::{Config, Context, MAX_REPLAY_WINDOW, MAX_STREAMS, prefetch_bytes};
pub use error::{Error, ErrorKind};
pub use profile::Profile;
pub use sdes::{KeyMaterial, SdesError};
