//! The core's operator views ([`tollgate_b2bua::inspect`]) as the JSON the control socket
//! answers and `tollgate ctl --json` prints. Field names are the contract with scripts: add,
//! never rename.

use serde_json::{Value, json};
use tollgate_b2bua::inspect::{CallDetail, CallSummary, FlowView, LegView, TrunkView};

/// One call, as listed by `calls`.
pub fn summary(c: &CallSummary) -> Value {
    json!({
        "id": c.id,
        "direction": c.direction.as_str(),
        "trunk": c.trunk,
        "calling": c.calling,
        "called": c.called,
        "age_s": c.age.as_secs_f64(),
        "talking_s": c.talking.map(|t| t.as_secs_f64()),
        "phase": c.phase.as_str(),
        "flows": c.flows,
    })
}

fn leg(l: &LegView) -> Value {
    json!({
        "side": l.side.as_str(),
        "call_id": l.call_id,
        "local_tag": l.local_tag,
        "remote_tag": l.remote_tag,
        "remote_target": l.remote_target,
        "local_cseq": l.local_cseq,
        "remote_cseq": l.remote_cseq,
        "route_set": l.route_set,
        "peer": l.peer,
        "session_interval_s": l.session.map(|s| s.0),
        "refresher": l.session.map(|s| s.1),
        "sdp_sent": l.sdp_sent,
    })
}

fn flow(f: &FlowView) -> Value {
    json!({
        "id": f.id,
        "ext": { "relay": f.ext_local.to_string(), "peer": f.ext_remote.map(|a| a.to_string()) },
        "int": { "relay": f.int_local.to_string(), "peer": f.int_remote.map(|a| a.to_string()) },
        "ext_to_int": f.ext_to_int,
        "int_to_ext": f.int_to_ext,
    })
}

/// One call in full, as `call ID` answers it.
pub fn detail(d: &CallDetail) -> Value {
    let mut v = summary(&d.summary);
    v["calling_sent"] = d.calling_sent.clone().into();
    v["called_sent"] = d.called_sent.clone().into();
    v["legs"] = d.legs.iter().map(leg).collect::<Vec<_>>().into();
    v["media_flows"] = d.flows.iter().map(flow).collect::<Vec<_>>().into();
    v
}

/// One trunk, as `trunks` lists it.
pub fn trunk(t: &TrunkView) -> Value {
    json!({
        "name": t.name,
        "address": t.addr.to_string(),
        "state": if t.disabled { "disabled" } else if !t.options_up { "down" } else { "up" },
        "options_up": t.options_up,
        "disabled": t.disabled,
        "marked_down_s": t.down_for.map(|d| d.as_secs_f64()),
        "calls": t.calls,
        "cps": (t.cps * 100.0).round() / 100.0,
        "max_cps": t.max_cps,
        "max_calls": t.max_calls,
    })
}
