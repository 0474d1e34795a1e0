//! A minimal binding to libsrtp 2.x for tests and benchmarks only: the oracle of
//! tollgate-srtp's differential tests and the baseline of its benchmark.
//!
//! The library is loaded at run time with `dlopen(RTLD_LOCAL)`, so one process can hold two
//! builds side by side (Debian's NSS-based `libsrtp2.so.1` and an OpenSSL build) without
//! their identical symbol names clashing, and nothing links against libsrtp at build time.
//! libsrtp is BSD-licensed; none of its source is part of this repository.

use std::ffi::{CStr, CString, c_int, c_uint, c_ulong, c_void};
use std::sync::{Arc, Mutex};

/// Why libsrtp could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `dlopen` failed.
    #[error("cannot load {path}: {why}")]
    Load {
        /// Library path or soname.
        path: String,
        /// `dlerror()` text.
        why: String,
    },
    /// A symbol is missing.
    #[error("{path} lacks symbol {sym}")]
    Symbol {
        /// Library path.
        path: String,
        /// Symbol name.
        sym: &'static str,
    },
    /// A libsrtp call failed.
    #[error("{call} failed with srtp_err_status {status}")]
    Status {
        /// The function.
        call: &'static str,
        /// `srtp_err_status_t` value.
        status: i32,
    },
    /// The suite name is unknown.
    #[error("unknown suite {0}")]
    Suite(String),
}

/// Debian's soname for libsrtp2 (NSS crypto backend).
pub const DEBIAN_SONAME: &str = "libsrtp2.so.1";

/// libsrtp error codes the tests look at.
pub mod status {
    /// `srtp_err_status_ok`.
    pub const OK: i32 = 0;
    /// `srtp_err_status_auth_fail`.
    pub const AUTH_FAIL: i32 = 7;
    /// `srtp_err_status_replay_fail`.
    pub const REPLAY_FAIL: i32 = 9;
    /// `srtp_err_status_replay_old`.
    pub const REPLAY_OLD: i32 = 10;
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CryptoPolicy {
    cipher_type: u32,
    cipher_key_len: c_int,
    auth_type: u32,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SsrcSel {
    kind: c_int,
    value: c_uint,
}

#[repr(C)]
#[derive(Debug)]
struct Policy {
    ssrc: SsrcSel,
    rtp: CryptoPolicy,
    rtcp: CryptoPolicy,
    key: *mut u8,
    keys: *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut Policy,
}

const SSRC_ANY_INBOUND: c_int = 2;
const SSRC_ANY_OUTBOUND: c_int = 3;
const SEC_SERV_AUTH: c_int = 2;

type PolicySetter = unsafe extern "C" fn(*mut CryptoPolicy);
type Transform = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int) -> c_int;

/// A loaded libsrtp.
#[derive(Debug)]
pub struct Lib {
    path: String,
    handle: *mut c_void,
    create: unsafe extern "C" fn(*mut *mut c_void, *const Policy) -> c_int,
    dealloc: unsafe extern "C" fn(*mut c_void) -> c_int,
    protect: Transform,
    unprotect: Transform,
    protect_rtcp: Transform,
    unprotect_rtcp: Transform,
    rtp_default: PolicySetter,
    rtcp_default: PolicySetter,
    cm128_32: PolicySetter,
    cm256_80: PolicySetter,
    cm256_32: PolicySetter,
    gcm128: PolicySetter,
    gcm256: PolicySetter,
}

// SAFETY: libsrtp's functions are reentrant per srtp_t; the handle is only used to look
// symbols up and is never closed while a Session holds an Arc<Lib>.
unsafe impl Send for Lib {}
// SAFETY: as above; the table is immutable after loading.
unsafe impl Sync for Lib {}

fn sym<T: Copy>(handle: *mut c_void, path: &str, name: &'static str) -> Result<T, Error> {
    let c = CString::new(name).map_err(|_| Error::Symbol {
        path: path.into(),
        sym: name,
    })?;
    // SAFETY: handle is a live dlopen handle; c is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        return Err(Error::Symbol {
            path: path.into(),
            sym: name,
        });
    }
    assert_eq!(size_of::<T>(), size_of::<*mut c_void>());
    // SAFETY: T is a function pointer type of the symbol's C signature (checked by name).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Lib {
    /// Loads libsrtp from a path or soname and calls `srtp_init`, once per path per process
    /// (a second `srtp_init` re-runs the self-tests, which fail with the NSS backend).
    pub fn open(path: &str) -> Result<Arc<Lib>, Error> {
        static LOADED: Mutex<Vec<Arc<Lib>>> = Mutex::new(Vec::new());
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = loaded.iter().find(|l| l.path == path) {
            return Ok(l.clone());
        }
        let l = Lib::load(path)?;
        loaded.push(l.clone());
        Ok(l)
    }

    fn load(path: &str) -> Result<Arc<Lib>, Error> {
        let c = CString::new(path).map_err(|_| Error::Load {
            path: path.into(),
            why: "NUL in path".into(),
        })?;
        // SAFETY: c is NUL-terminated; RTLD_LOCAL keeps this copy's symbols private.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a C string or NULL.
            let e = unsafe { libc::dlerror() };
            let why = if e.is_null() {
                "unknown".into()
            } else {
                // SAFETY: non-null dlerror result is a valid C string.
                unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
            };
            return Err(Error::Load {
                path: path.into(),
                why,
            });
        }
        let init: unsafe extern "C" fn() -> c_int = sym(handle, path, "srtp_init")?;
        let lib = Lib {
            path: path.into(),
            handle,
            create: sym(handle, path, "srtp_create")?,
            dealloc: sym(handle, path, "srtp_dealloc")?,
            protect: sym(handle, path, "srtp_protect")?,
            unprotect: sym(handle, path, "srtp_unprotect")?,
            protect_rtcp: sym(handle, path, "srtp_protect_rtcp")?,
            unprotect_rtcp: sym(handle, path, "srtp_unprotect_rtcp")?,
            rtp_default: sym(handle, path, "srtp_crypto_policy_set_rtp_default")?,
            rtcp_default: sym(handle, path, "srtp_crypto_policy_set_rtcp_default")?,
            cm128_32: sym(
                handle,
                path,
                "srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32",
            )?,
            cm256_80: sym(
                handle,
                path,
                "srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80",
            )?,
            cm256_32: sym(
                handle,
                path,
                "srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32",
            )?,
            gcm128: sym(handle, path, "srtp_crypto_policy_set_aes_gcm_128_16_auth")?,
            gcm256: sym(handle, path, "srtp_crypto_policy_set_aes_gcm_256_16_auth")?,
        };
        // SAFETY: srtp_init takes no arguments.
        let st = unsafe { init() };
        if st != 0 {
            return Err(Error::Status {
                call: "srtp_init",
                status: st,
            });
        }
        Ok(Arc::new(lib))
    }

    /// Debian's libsrtp2 (`libsrtp2.so.1`).
    pub fn debian() -> Result<Arc<Lib>, Error> {
        Lib::open(DEBIAN_SONAME)
    }

    /// The path or soname it was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn setters(&self, suite: &str) -> Result<(PolicySetter, PolicySetter), Error> {
        Ok(match suite {
            "AES_CM_128_HMAC_SHA1_80" => (self.rtp_default, self.rtcp_default),
            "AES_CM_128_HMAC_SHA1_32" => (self.cm128_32, self.rtcp_default),
            "AES_256_CM_HMAC_SHA1_80" => (self.cm256_80, self.cm256_80),
            "AES_256_CM_HMAC_SHA1_32" => (self.cm256_32, self.cm256_80),
            "AEAD_AES_128_GCM" => (self.gcm128, self.gcm128),
            "AEAD_AES_256_GCM" => (self.gcm256, self.gcm256),
            other => return Err(Error::Suite(other.into())),
        })
    }
}

/// Which way a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `ssrc_any_outbound`: protect.
    Outbound,
    /// `ssrc_any_inbound`: unprotect.
    Inbound,
}

/// Session options beyond suite and key.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Replay window (`window_size`; 0 means libsrtp's default, 128).
    pub window: u64,
    /// SRTCP with authentication only (E flag clear).
    pub rtcp_auth_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: 128,
            rtcp_auth_only: false,
        }
    }
}

/// One `srtp_t` with a single wildcard-SSRC policy.
#[derive(Debug)]
pub struct Session {
    lib: Arc<Lib>,
    ctx: *mut c_void,
}

/// Worst-case bytes libsrtp appends (tag 16 + SRTCP word 4; no MKI).
pub const MAX_TRAILER: usize = 20;

impl Session {
    /// Creates a session for an SDES suite name with `key || salt`.
    pub fn new(
        lib: &Arc<Lib>,
        suite: &str,
        key_salt: &[u8],
        dir: Direction,
        opts: Options,
    ) -> Result<Session, Error> {
        let (rtp_set, rtcp_set) = lib.setters(suite)?;
        let mut rtp = CryptoPolicy::default();
        let mut rtcp = CryptoPolicy::default();
        // SAFETY: the setters fill a srtp_crypto_policy_t, which CryptoPolicy mirrors.
        unsafe {
            rtp_set(&mut rtp);
            rtcp_set(&mut rtcp);
        }
        if opts.rtcp_auth_only {
            rtcp.sec_serv = SEC_SERV_AUTH;
        }
        // libsrtp reads key_len + salt_len bytes; pad generously.
        let mut key = [0u8; 64];
        let n = key_salt.len().min(64);
        key[..n].copy_from_slice(&key_salt[..n]);
        let policy = Policy {
            ssrc: SsrcSel {
                kind: match dir {
                    Direction::Outbound => SSRC_ANY_OUTBOUND,
                    Direction::Inbound => SSRC_ANY_INBOUND,
                },
                value: 0,
            },
            rtp,
            rtcp,
            key: key.as_mut_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: opts.window as c_ulong,
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        let mut ctx = std::ptr::null_mut();
        // SAFETY: policy mirrors srtp_policy_t of libsrtp 2.x and outlives the call (libsrtp
        // copies the key).
        let st = unsafe { (lib.create)(&mut ctx, &policy) };
        if st != 0 {
            return Err(Error::Status {
                call: "srtp_create",
                status: st,
            });
        }
        Ok(Session {
            lib: lib.clone(),
            ctx,
        })
    }

    fn run(&mut self, f: Transform, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        // libsrtp appends up to MAX_TRAILER bytes and trusts the caller for room.
        if buf.len() < len + MAX_TRAILER || len > c_int::MAX as usize {
            return Err(-1);
        }
        let mut l = len as c_int;
        // SAFETY: ctx is live; buf has len + MAX_TRAILER writable bytes.
        let st = unsafe { f(self.ctx, buf.as_mut_ptr().cast(), &mut l) };
        if st == 0 { Ok(l as usize) } else { Err(st) }
    }

    /// `srtp_protect`; the buffer needs [`MAX_TRAILER`] bytes of tailroom.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.run(self.lib.protect, buf, len)
    }

    /// `srtp_unprotect`.
    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.run(self.lib.unprotect, buf, len)
    }

    /// `srtp_protect_rtcp`.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.run(self.lib.protect_rtcp, buf, len)
    }

    /// `srtp_unprotect_rtcp`.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.run(self.lib.unprotect_rtcp, buf, len)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx came from srtp_create and is freed once.
        unsafe {
            (self.lib.dealloc)(self.ctx);
        }
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        // Keep the library mapped: libsrtp keeps global state (crypto kernel) that may
        // be referenced by late destructors; unloading buys nothing in tests.
        let _ = self.handle;
    }
}
