//! The Tollgate configuration for a lab (namespaces or loopback addresses), shared by the demo,
//! the end-to-end tests and the call benchmarks.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::certs::LabPki;
use crate::scenario::Topology;

/// Tollgate's TLS name on the internal side.
pub const TOLLGATE_NAME: &str = "tollgate.int.example";
/// The internal proxy's TLS name.
pub const PROXY_NAME: &str = "proxy.int.example";

/// Addresses of one lab.
#[derive(Debug, Clone)]
pub struct LabAddrs {
    /// Tollgate's gateway-side address.
    pub relay_ext: IpAddr,
    /// Tollgate's internal address.
    pub relay_int: IpAddr,
    /// The gateway's address.
    pub gw: IpAddr,
    /// The internal endpoint's address.
    pub int: IpAddr,
    /// Interface names (XDP path).
    pub ext_if: String,
    /// See `ext_if`.
    pub int_if: String,
    /// Namespaces of the gateway and internal endpoint, if any.
    pub gw_ns: Option<String>,
    /// See `gw_ns`.
    pub int_ns: Option<String>,
}

impl LabAddrs {
    /// The addresses, interfaces and namespaces of a namespace lab.
    pub fn from_lab(lab: &tollgate_netlab::LabSpec) -> LabAddrs {
        LabAddrs {
            relay_ext: lab.ext_net.relay.into(),
            relay_int: lab.int_net.relay.into(),
            gw: lab.ext_net.peer.into(),
            int: lab.int_net.peer.into(),
            ext_if: lab.ext_if.clone(),
            int_if: lab.int_if.clone(),
            gw_ns: Some(lab.gw_ns.clone()),
            int_ns: Some(lab.int_ns.clone()),
        }
    }

    /// Loopback addresses (no root needed): 127.0.1.1/127.0.1.2 outside, 127.0.2.1/127.0.2.2
    /// inside.
    pub fn loopback() -> LabAddrs {
        LabAddrs {
            relay_ext: [127, 0, 1, 1].into(),
            relay_int: [127, 0, 2, 1].into(),
            gw: [127, 0, 1, 2].into(),
            int: [127, 0, 2, 2].into(),
            ext_if: "lo".into(),
            int_if: "lo".into(),
            gw_ns: None,
            int_ns: None,
        }
    }

    /// The parties' view of this lab.
    pub fn topology(&self, pki: &LabPki) -> Topology {
        Topology {
            gw_sip: SocketAddr::new(self.gw, 5060),
            int_sip: SocketAddr::new(self.int, 5061),
            tollgate_ext: SocketAddr::new(self.relay_ext, 5060),
            tollgate_int: SocketAddr::new(self.relay_int, 5061),
            tollgate_name: TOLLGATE_NAME.into(),
            gw_ns: self.gw_ns.clone(),
            int_ns: self.int_ns.clone(),
            pki: pki.clone(),
        }
    }

    /// Creates the lab PKI in `dir`.
    pub fn pki(&self, dir: &Path) -> Result<LabPki, crate::certs::CertError> {
        LabPki::create(
            dir,
            &[TOLLGATE_NAME],
            &[self.relay_int],
            &[PROXY_NAME],
            &[self.int],
        )
    }

    /// Tollgate's configuration file for this lab.
    pub fn tollgate_config(
        &self,
        pki: &LabPki,
        datapath: &str,
        workers: usize,
        cdr: &Path,
        metrics: Option<SocketAddr>,
    ) -> String {
        let metrics = metrics
            .map(|m| format!("metrics_listen = \"{m}\"\n"))
            .unwrap_or_default();
        format!(
            r#"# Generated for the lab: gateway side {ext}, internal side {int}.
[ext]
interface = "{ext_if}"
sip_listen = "{ext}:5060"
media_address = "{ext}"

[int]
interface = "{int_if}"
sip_listen = "{int}:5061"
media_address = "{int}"
next_hop = "{peer}:5061"
next_hop_host = "{proxy}"

[tls]
cert = "{cert}"
key = "{key}"
ca = "{ca}"

[[trunk]]
name = "gw1"
address = "{gw}"
port = 5060
inbound = [{{ match = '^0(\d+)$', replace = '+44$1' }}]
outbound = [{{ match = '^\+44(\d+)$', replace = '0$1' }}]
options_interval_s = 5

[[route]]
pattern = '^\+44'
trunks = ["gw1"]

[media]
datapath = "{datapath}"
workers = {workers}
ext_ports = [30000, 31999]
int_ports = [32000, 33999]
inactivity_timeout_s = 20

[sip]
max_calls = 20000

[ops]
cdr_path = "{cdr}"
{metrics}"#,
            ext_if = self.ext_if,
            int_if = self.int_if,
            ext = self.relay_ext,
            int = self.relay_int,
            peer = self.int,
            gw = self.gw,
            proxy = PROXY_NAME,
            cert = pki.tollgate.cert.display(),
            key = pki.tollgate.key.display(),
            ca = pki.ca.display(),
            cdr = cdr.display(),
        )
    }
}
