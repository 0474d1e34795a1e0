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
/// The gateway's TLS name (TLS trunks; Tollgate verifies the gateway by its IP address).
pub const GATEWAY_NAME: &str = "gw.pstn.example";
/// SIP over TLS port on the gateway side (TLS trunks).
const TLS_PORT: u16 = 5061;

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
    /// The gateway trunk speaks SIP over TLS (mutual: the gateway presents a certificate)
    /// instead of plain TCP.
    pub gateway_tls: bool,
    /// The gateway trunk's admission limits: calls a second (with an equal burst) and
    /// concurrent calls (0: none). The lab's default is far above what its load generators
    /// offer (the call benchmark runs thousands of calls a second); admission tests lower it.
    pub trunk_cps: u32,
    /// See `trunk_cps`.
    pub trunk_max_calls: usize,
}

/// The lab's admission limits: above anything the lab's load generators offer.
const LAB_CPS: u32 = 20_000;

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
            gateway_tls: false,
            trunk_cps: LAB_CPS,
            trunk_max_calls: 0,
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
            gateway_tls: false,
            trunk_cps: LAB_CPS,
            trunk_max_calls: 0,
        }
    }

    /// The same lab with a SIP/TLS gateway trunk.
    pub fn with_gateway_tls(mut self) -> LabAddrs {
        self.gateway_tls = true;
        self
    }

    /// The same lab with the gateway trunk limited to `cps` new calls a second (burst `cps`)
    /// and `max_calls` concurrent calls (0: no per-trunk limit).
    pub fn with_trunk_limits(mut self, cps: u32, max_calls: usize) -> LabAddrs {
        self.trunk_cps = cps;
        self.trunk_max_calls = max_calls;
        self
    }

    /// The gateway side's SIP port (both ends).
    fn gw_port(&self) -> u16 {
        if self.gateway_tls { TLS_PORT } else { 5060 }
    }

    /// The parties' view of this lab.
    pub fn topology(&self, pki: &LabPki) -> Topology {
        Topology {
            gw_sip: SocketAddr::new(self.gw, self.gw_port()),
            gw_tls: self.gateway_tls,
            int_sip: SocketAddr::new(self.int, 5061),
            tollgate_ext: SocketAddr::new(self.relay_ext, self.gw_port()),
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
            (&[TOLLGATE_NAME], &[self.relay_int, self.relay_ext]),
            (&[PROXY_NAME], &[self.int]),
            (&[GATEWAY_NAME], &[self.gw]),
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
        // One interface for both sides (loopback): there is no gateway NIC to filter, and no
        // XDP program can sit on both sides of it.
        let boundary = if self.ext_if == self.int_if {
            "boundary = \"off\"\n"
        } else {
            ""
        };
        let (tls_listen, trunk_transport) = if self.gateway_tls {
            (
                format!("tls_listen = \"{}:{TLS_PORT}\"\n", self.relay_ext),
                "transport = \"tls\"\n",
            )
        } else {
            (String::new(), "")
        };
        format!(
            r#"# Generated for the lab: gateway side {ext}, internal side {int}.
[ext]
interface = "{ext_if}"
sip_listen = "{ext}:5060"
{tls_listen}media_address = "{ext}"
{boundary}
[int]
interface = "{int_if}"
sip_listen = "{int}:5061"
media_address = "{int}"
next_hop = "{peer}:5061"
next_hop_host = "{proxy}"
next_hop_max_cps = {lab_cps}

[tls]
cert = "{cert}"
key = "{key}"
ca = "{ca}"

[[trunk]]
name = "gw1"
address = "{gw}"
port = {gw_port}
{trunk_transport}inbound = [{{ match = '^0(\d+)$', replace = '+44$1' }}]
outbound = [{{ match = '^\+44(\d+)$', replace = '0$1' }}]
options_interval_s = 5
max_cps = {trunk_cps}
max_calls = {trunk_max_calls}
out_max_cps = {lab_cps}

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
max_cps = {lab_cps}

[ops]
cdr_path = "{cdr}"
control_socket = "{ctl}"
{metrics}"#,
            ext_if = self.ext_if,
            int_if = self.int_if,
            ext = self.relay_ext,
            int = self.relay_int,
            peer = self.int,
            gw = self.gw,
            gw_port = self.gw_port(),
            proxy = PROXY_NAME,
            trunk_cps = self.trunk_cps,
            trunk_max_calls = self.trunk_max_calls,
            lab_cps = LAB_CPS,
            cert = pki.tollgate.cert.display(),
            key = pki.tollgate.key.display(),
            ca = pki.ca.display(),
            cdr = cdr.display(),
            ctl = cdr.with_file_name("control.sock").display(),
        )
    }
}
