//! From the validated file configuration to the B2BUA core's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use tollgate_b2bua as core;

use crate::config::{Config, ConfigError, TransportKind, rate_limit};

fn transport(t: TransportKind) -> core::Transport {
    match t {
        TransportKind::Tcp => core::Transport::Tcp,
        TransportKind::Tls => core::Transport::Tls,
    }
}

fn rule_err(key: String) -> impl FnOnce(core::ConfigError) -> ConfigError {
    move |e| ConfigError::Invalid {
        key,
        problem: e.to_string(),
    }
}

/// Builds the core configuration (the file was validated; this cannot fail on a valid file,
/// but reports the key if the core's own checks refuse something).
pub fn b2bua_config(c: &Config) -> Result<core::Config, ConfigError> {
    let mut b = core::Config::new(
        core::ExtConfig {
            sip_addr: c.ext.sip_listen,
            media_ip: c.ext.media_address,
            transport: core::Transport::Tcp,
        },
        core::IntConfig {
            sip_addr: c.int.sip_listen,
            media_ip: c.int.media_address,
            next_hop: c.int.next_hop,
            next_hop_host: c.int.next_hop_host.clone(),
            next_hop_max_cps: rate_limit(c.int.next_hop_max_cps, c.int.next_hop_cps_burst),
            alternates: c
                .int
                .alternate_next_hops
                .iter()
                .map(|h| (h.address, h.host.clone()))
                .collect(),
        },
    );
    for (i, t) in c.trunks.iter().enumerate() {
        let mut tr = core::Trunk::new(
            &t.name,
            SocketAddr::new(t.address, t.port),
            transport(t.transport),
        );
        for (j, r) in t.inbound.iter().enumerate() {
            tr.inbound.push(
                core::Rewrite::new(&r.pattern, &r.replace)
                    .map_err(rule_err(format!("trunk[{i}].inbound[{j}]")))?,
            );
        }
        for (j, r) in t.outbound.iter().enumerate() {
            tr.outbound.push(
                core::Rewrite::new(&r.pattern, &r.replace)
                    .map_err(rule_err(format!("trunk[{i}].outbound[{j}]")))?,
            );
        }
        tr.keepalive = Duration::from_secs(t.options_interval_s);
        tr.nat_learn = Duration::from_millis(t.nat_learn_ms);
        tr.max_cps = rate_limit(t.max_cps, t.cps_burst);
        tr.max_calls = t.max_calls;
        tr.out_max_cps = rate_limit(t.out_max_cps, None);
        b.trunks.push(tr);
    }
    for (i, r) in c.routes.iter().enumerate() {
        let names: Vec<&str> = r.trunks.iter().map(String::as_str).collect();
        b.routes
            .push(core::Route::new(&r.pattern, &names).map_err(rule_err(format!("route[{i}]")))?);
    }
    b.media.ext_ports = c.media.ext_ports[0]..=c.media.ext_ports[1];
    b.media.int_ports = c.media.int_ports[0]..=c.media.int_ports[1];
    b.media.srtp_suites = c.suites();
    b.media.inactivity_timeout = Duration::from_secs(c.media.inactivity_timeout_s);
    b.sip.session_expires = u32::try_from(c.sip.session_expires_s).unwrap_or(u32::MAX);
    b.sip.min_se = u32::try_from(c.sip.min_se_s).unwrap_or(u32::MAX);
    b.sip.max_calls = c.sip.max_calls;
    b.sip.max_cps = rate_limit(c.sip.max_cps, c.sip.cps_burst);
    b.sip.next_hop_backoff = Duration::from_secs(c.sip.next_hop_backoff_s);
    b.sip.pass_headers = c.sip.pass_headers.clone();
    b.validate().map_err(|e| ConfigError::Invalid {
        key: "(b2bua)".into(),
        problem: e.to_string(),
    })?;
    Ok(b)
}
