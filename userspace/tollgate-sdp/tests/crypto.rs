//! `a=crypto` acceptance (RFC 4568): each refusal with its exact text, and suite selection.

use tollgate_sdp::{Crypto, CryptoPolicy, CryptoRefusal, FecOrder, SessionParam};
use tollgate_srtp::{KeyMaterial, Profile};

const KEY30: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
const KEY46: &str = "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLQ==";
const KEY28: &str = "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==";

fn line(s: &str) -> Crypto {
    Crypto::parse(s).expect("test line")
}

fn refusal(policy: &CryptoPolicy, s: &str) -> String {
    policy
        .accept(&line(s))
        .expect_err("the line must be refused")
        .to_string()
}

#[test]
fn accepts_plain_lines_of_every_enabled_suite() {
    let p = CryptoPolicy::default();
    for (suite, key) in [
        ("AES_CM_128_HMAC_SHA1_80", KEY30),
        ("AES_CM_128_HMAC_SHA1_32", KEY30),
        ("AEAD_AES_128_GCM", KEY28),
        ("AES_256_CM_HMAC_SHA1_80", KEY46),
        ("AES_256_CM_HMAC_SHA1_32", KEY46),
    ] {
        let km = p.accept(&line(&format!("7 {suite} {key}"))).unwrap();
        assert_eq!(km.profile().sdes_name(), suite);
        assert_eq!(km.to_sdes(), key);
    }
    // A long lifetime, KDR=0, FEC_ORDER, WSH and optional extensions are fine.
    let km = p
        .accept(&line(&format!(
            "1 AES_CM_128_HMAC_SHA1_80 {KEY30}|2^31 KDR=0 FEC_ORDER=FEC_SRTP WSH=128 -X-FOO=1"
        )))
        .unwrap();
    assert_eq!(km.lifetime, Some(1 << 31));
}

#[test]
fn refusals_say_why() {
    let p = CryptoPolicy::default();
    let cases = [
        (
            "1 F8_128_HMAC_SHA1_80 inline:x",
            "unknown crypto suite F8_128_HMAC_SHA1_80",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:x|1:4;inline:y|2:4",
            "2 master keys on one line (MKI-indexed keys) are not supported",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 uri:https://x",
            "key method must be inline:, found \"uri:https://x\"",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "key||salt is not valid base64",
        ),
        (
            &format!("1 AES_256_CM_HMAC_SHA1_80 {KEY30}"),
            "key||salt is 30 bytes, AES_256_CM_HMAC_SHA1_80 needs 46",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30}|1:4"),
            "MKI is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30}|2^20"),
            "key lifetime 1048576 packets is below the minimum 2147483648; re-keying on lifetime is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} KDR=24"),
            "session parameter KDR=24 is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} KDR=25"),
            "KDR=25 is not a number in 0..=24",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} UNENCRYPTED_SRTP"),
            "session parameter UNENCRYPTED_SRTP is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} UNENCRYPTED_SRTCP"),
            "session parameter UNENCRYPTED_SRTCP is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} UNAUTHENTICATED_SRTP"),
            "session parameter UNAUTHENTICATED_SRTP is not supported",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} FEC_KEY={KEY30}"),
            &format!("session parameter FEC_KEY={KEY30} is not supported"),
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} FEC_ORDER=FEC_FIRST"),
            "FEC_ORDER=FEC_FIRST is neither FEC_SRTP nor SRTP_FEC",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} WSH=32"),
            "WSH=32 is not a number of at least 64",
        ),
        (
            &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY30} X-MANDATORY"),
            "session parameter X-MANDATORY is not supported",
        ),
    ];
    for (l, want) in cases {
        assert_eq!(refusal(&p, l), want, "{l}");
    }
    let only80 = CryptoPolicy {
        suites: vec![Profile::Aes128CmHmacSha1_80],
        ..CryptoPolicy::default()
    };
    assert_eq!(
        refusal(&only80, &format!("1 AES_CM_128_HMAC_SHA1_32 {KEY30}")),
        "crypto suite AES_CM_128_HMAC_SHA1_32 is not enabled"
    );
    let mki_ok = CryptoPolicy {
        accept_mki: true,
        min_key_lifetime: 1 << 20,
        ..CryptoPolicy::default()
    };
    let km = mki_ok
        .accept(&line(&format!(
            "1 AES_CM_128_HMAC_SHA1_80 {KEY30}|2^20|1:4"
        )))
        .unwrap();
    assert_eq!(km.mki, Some((1, 4)));
}

#[test]
fn session_params_are_typed() {
    let c = line(&format!(
        "3 AES_CM_128_HMAC_SHA1_80 {KEY30} KDR=3 UNENCRYPTED_SRTP UNENCRYPTED_SRTCP UNAUTHENTICATED_SRTP FEC_ORDER=SRTP_FEC FEC_KEY={KEY30} WSH=64 -opt X"
    ));
    assert_eq!(
        c.typed_session_params().unwrap(),
        vec![
            SessionParam::Kdr(3),
            SessionParam::UnencryptedSrtp,
            SessionParam::UnencryptedSrtcp,
            SessionParam::UnauthenticatedSrtp,
            SessionParam::FecOrder(FecOrder::SrtpFec),
            SessionParam::FecKey(KEY30.to_owned()),
            SessionParam::Wsh(64),
            SessionParam::Extension {
                optional: true,
                text: "-opt".into()
            },
            SessionParam::Extension {
                optional: false,
                text: "X".into()
            },
        ]
    );
    let bad = line(&format!("3 AES_CM_128_HMAC_SHA1_80 {KEY30} KDR=x"));
    assert_eq!(
        bad.typed_session_params().unwrap_err().to_string(),
        "bad a=crypto: KDR=x is not a number in 0..=24"
    );
}

#[test]
fn selection_prefers_80_then_32_then_the_rest() {
    let p = CryptoPolicy::default();
    let lines = [
        line(&format!("1 AEAD_AES_128_GCM {KEY28}")),
        line(&format!("2 AES_CM_128_HMAC_SHA1_32 {KEY30}")),
        line(&format!("3 AES_CM_128_HMAC_SHA1_80 {KEY30}|1:4")),
        line(&format!("4 AES_CM_128_HMAC_SHA1_80 {KEY30}")),
        line(&format!("5 AES_CM_128_HMAC_SHA1_80 {KEY30}")),
    ];
    let (c, km) = p.select(&lines).unwrap();
    // Tag 3 has an MKI; tag 4 is the first acceptable _80.
    assert_eq!(c.tag, 4);
    assert_eq!(
        km,
        KeyMaterial::from_sdes(Profile::Aes128CmHmacSha1_80, KEY30).unwrap()
    );
    let (c, _) = p.select(&lines[..2]).unwrap();
    assert_eq!(c.tag, 2);
    let (c, _) = p.select(&lines[..1]).unwrap();
    assert_eq!(c.tag, 1);
    let refused = p
        .select(&[
            line("1 F8_128_HMAC_SHA1_80 inline:x"),
            line(&format!("2 AES_CM_128_HMAC_SHA1_80 {KEY30}|1:4")),
        ])
        .unwrap_err();
    assert_eq!(
        refused,
        vec![
            (1, CryptoRefusal::UnknownSuite("F8_128_HMAC_SHA1_80".into())),
            (2, CryptoRefusal::Mki),
        ]
    );
}

#[test]
fn new_line_formats_the_key() {
    let km = KeyMaterial::from_sdes(Profile::Aes128CmHmacSha1_32, KEY30).unwrap();
    assert_eq!(
        Crypto::new(2, &km).to_string(),
        "2 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    );
}
