//! A lab PKI: one CA and leaf certificates for Tollgate, the internal endpoint and the gateway,
//! each usable as TLS server and client (mutual TLS on the internal side, and on the gateway
//! side for TLS trunks).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed.
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// PEM files of one identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// The lab PKI on disk.
#[derive(Debug, Clone)]
pub struct LabPki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// Tollgate's identity.
    pub tollgate: Identity,
    /// The internal endpoint's identity.
    pub internal: Identity,
    /// The gateway's identity (TLS trunks).
    pub gateway: Identity,
    /// A certificate from another CA: a client the internal listener must refuse.
    pub rogue: Identity,
}

fn write(p: &Path, s: &str) -> Result<(), CertError> {
    std::fs::write(p, s).map_err(|e| CertError::Io(p.to_owned(), e))
}

fn leaf(
    names: &[&str],
    ips: &[IpAddr],
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(String, String), CertError> {
    let mut p = CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    for ip in ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("lab"));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, ca, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca(name: &str) -> Result<(rcgen::Certificate, KeyPair), CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok((cert, key))
}

impl LabPki {
    /// Creates a CA and the leaf certificates in `dir`: Tollgate's, the internal endpoint's and
    /// the gateway's, each for its (names, IPs).
    pub fn create(
        dir: &Path,
        (tollgate_names, tollgate_ips): (&[&str], &[IpAddr]),
        (internal_names, internal_ips): (&[&str], &[IpAddr]),
        (gateway_names, gateway_ips): (&[&str], &[IpAddr]),
    ) -> Result<LabPki, CertError> {
        std::fs::create_dir_all(dir).map_err(|e| CertError::Io(dir.to_owned(), e))?;
        let (ca_cert, ca_key) = ca("Tollgate Lab CA")?;
        let ca_path = dir.join("ca.pem");
        write(&ca_path, &ca_cert.pem())?;
        let ident =
            |stem: &str, names: &[&str], ips: &[IpAddr], ca: &rcgen::Certificate, key: &KeyPair| {
                let (c, k) = leaf(names, ips, ca, key)?;
                let id = Identity {
                    cert: dir.join(format!("{stem}.pem")),
                    key: dir.join(format!("{stem}-key.pem")),
                };
                write(&id.cert, &c)?;
                write(&id.key, &k)?;
                Ok::<_, CertError>(id)
            };
        let tollgate = ident("tollgate", tollgate_names, tollgate_ips, &ca_cert, &ca_key)?;
        let internal = ident("internal", internal_names, internal_ips, &ca_cert, &ca_key)?;
        let gateway = ident("gateway", gateway_names, gateway_ips, &ca_cert, &ca_key)?;
        let (rogue_ca, rogue_key) = ca("Not The Lab CA")?;
        let rogue = ident("rogue", internal_names, internal_ips, &rogue_ca, &rogue_key)?;
        Ok(LabPki {
            ca: ca_path,
            tollgate,
            internal,
            gateway,
            rogue,
        })
    }
}
