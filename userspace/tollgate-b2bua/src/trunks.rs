//! [`Trunks`]: each configured trunk's state — up or down by its OPTIONS keepalive, disabled by
//! an operator — and the keepalive itself: its timer, the OPTIONS in flight, the result.
//!
//! The state changes only through [`Trunks`]' methods and the keepalive methods of [`B2bua`]
//! in this file. It must not decide about calls: admission limits live in `admission`, routing
//! and failover in `setup`; they only ask [`Trunks::takes_calls`] / [`Trunks::is_disabled`].

use rustc_hash::FxHashMap;
use tollgate_sip::{Host, Message, Method, NameAddr, SipUri, TxId, Uri};

use crate::b2bua::B2bua;
use crate::config::Config;
use crate::effects::Effects;
use crate::own_headers;
use crate::timers::{TimerPurpose, Timers, later};
use crate::types::{CallEvent, Output, Side, Target, TimerId};

/// A trunk's keepalive state.
#[derive(Debug, Clone)]
struct TrunkState {
    up: bool,
    /// Taken out of service by an operator: no new calls either way; keepalives go on.
    disabled: bool,
    timer: Option<TimerId>,
    in_flight: Option<TxId>,
}

impl TrunkState {
    fn new() -> TrunkState {
        TrunkState {
            up: true,
            disabled: false,
            timer: None,
            in_flight: None,
        }
    }
}

/// The trunks' states and their keepalive transactions.
#[derive(Debug, Default)]
pub(crate) struct Trunks {
    state: FxHashMap<String, TrunkState>,
    /// OPTIONS keepalive transaction -> trunk name.
    keepalive_tx: FxHashMap<TxId, String>,
}

impl Trunks {
    /// Every trunk of `cfg`, up and enabled.
    pub(crate) fn new(cfg: &Config) -> Trunks {
        Trunks {
            state: cfg
                .trunks
                .iter()
                .map(|t| (t.name.clone(), TrunkState::new()))
                .collect(),
            keepalive_tx: FxHashMap::default(),
        }
    }

    /// The keepalive says the trunk is up (unknown trunks and trunks without keepalive are).
    pub(crate) fn is_up(&self, name: &str) -> bool {
        self.state.get(name).is_none_or(|s| s.up)
    }

    /// An operator took the trunk out of service.
    pub(crate) fn is_disabled(&self, name: &str) -> bool {
        self.state.get(name).is_some_and(|s| s.disabled)
    }

    /// The trunk takes calls: its keepalive says it is up and no operator disabled it.
    pub(crate) fn takes_calls(&self, name: &str) -> bool {
        self.state.get(name).is_none_or(|s| s.up && !s.disabled)
    }

    /// Disables or enables a trunk; false if there is no such trunk.
    pub(crate) fn set_enabled(&mut self, name: &str, enabled: bool) -> bool {
        match self.state.get_mut(name) {
            Some(s) => {
                s.disabled = !enabled;
                true
            }
            None => false,
        }
    }

    /// The trunks of a new configuration: kept ones keep their state, new ones start up,
    /// removed ones lose their keepalive timer.
    pub(crate) fn reload(&mut self, cfg: &Config, timers: &mut Timers, out: &mut Vec<Output>) {
        let mut states = FxHashMap::default();
        for t in &cfg.trunks {
            let s = self.state.remove(&t.name).unwrap_or_else(TrunkState::new);
            states.insert(t.name.clone(), s);
        }
        // Keepalive timers of removed trunks: cancel.
        for (_, s) in std::mem::take(&mut self.state) {
            if let Some(t) = s.timer {
                timers.cancel(t, out);
            }
        }
        self.state = states;
    }

    /// Keepalive result: `up` for a 2xx; down for a timeout, transport error or 5xx/6xx;
    /// other answers (`alive` but not 2xx) leave the state as it is.
    fn set_up(&mut self, name: &str, up: bool, alive: bool, out: &mut Vec<Output>) {
        if !up && alive {
            return;
        }
        if let Some(s) = self.state.get_mut(name)
            && s.up != up
        {
            s.up = up;
            out.push(Output::Event(CallEvent::TrunkStatus {
                trunk: name.to_owned(),
                up,
            }));
        }
    }

    /// A response on a client transaction: true if it was a keepalive's (and is handled).
    pub(crate) fn keepalive_response(
        &mut self,
        tx: TxId,
        msg: &Message,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(name) = self.keepalive_tx.get(&tx).cloned() else {
            return false;
        };
        if let Some(code) = msg.status()
            && code >= 200
        {
            self.set_up(&name, (200..300).contains(&code), code < 500, out);
        }
        true
    }

    /// A client transaction failed: true if it was a keepalive (its trunk is now down).
    pub(crate) fn keepalive_failed(&mut self, tx: TxId, out: &mut Vec<Output>) -> bool {
        let Some(name) = self.keepalive_tx.get(&tx).cloned() else {
            return false;
        };
        self.set_up(&name, false, false, out);
        true
    }

    /// A transaction ended: true if it was a keepalive (now forgotten).
    pub(crate) fn keepalive_terminated(&mut self, tx: TxId) -> bool {
        let Some(name) = self.keepalive_tx.remove(&tx) else {
            return false;
        };
        if let Some(s) = self.state.get_mut(&name) {
            s.in_flight = None;
        }
        true
    }

    fn set_timer(&mut self, name: &str, id: TimerId) {
        if let Some(s) = self.state.get_mut(name) {
            s.timer = Some(id);
        }
    }
}

impl B2bua {
    /// Arms the keepalive of every trunk that has one and whose timer is not armed: due now.
    pub(crate) fn arm_keepalives(&mut self, fx: &mut Effects<'_>) {
        let names: Vec<String> = self
            .cfg
            .trunks
            .iter()
            .filter(|t| !t.keepalive.is_zero())
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            let armed = self
                .trunks
                .state
                .get(&name)
                .is_some_and(|s| s.timer.is_some());
            if !armed {
                let due = fx.now;
                let id = self
                    .timers
                    .set(TimerPurpose::Keepalive(name.clone()), due, fx.out);
                self.trunks.set_timer(&name, id);
            }
        }
    }

    /// A trunk's keepalive is due: an OPTIONS unless the last one is still going, and the next
    /// due one interval later.
    pub(crate) fn on_keepalive_timer(&mut self, name: &str, fx: &mut Effects<'_>) {
        let Some(trunk) = self.cfg.trunks.iter().find(|t| t.name == name).cloned() else {
            return;
        };
        let Some(state) = self.trunks.state.get_mut(name) else {
            return;
        };
        state.timer = None;
        if trunk.keepalive.is_zero() {
            return;
        }
        let busy = state
            .in_flight
            .is_some_and(|tx| self.layer.state(tx).is_some());
        if !busy {
            let via = self.via(Side::Ext, trunk.transport);
            let host = Host::ip(trunk.addr.ip());
            let ruri = Uri::Sip(SipUri::new(None, host.clone(), Some(trunk.addr.port())));
            let ext = self.cfg.ext.sip_addr;
            let tag = self.new_tag();
            let from = NameAddr::new(Uri::Sip(SipUri::new(
                Some("tollgate"),
                Host::ip(ext.ip()),
                Some(ext.port()),
            )))
            .with_param("tag", Some(&tag));
            let call_id = self.new_call_id();
            let mut req = Message::new_request(tollgate_sip::NewRequest::new(
                Method::Options,
                ruri.clone(),
                via,
                from,
                NameAddr::new(ruri),
                &call_id,
                1,
            ));
            own_headers::accept_sdp(&mut req);
            let target = Target::Addr {
                addr: trunk.addr,
                transport: trunk.transport,
            };
            if let Some(tx) = self.send_request(Side::Ext, target, req, fx.now) {
                self.trunks.keepalive_tx.insert(tx, name.to_owned());
                if let Some(s) = self.trunks.state.get_mut(name) {
                    s.in_flight = Some(tx);
                }
            }
        }
        let id = self.timers.set(
            TimerPurpose::Keepalive(name.to_owned()),
            later(fx.now, trunk.keepalive),
            fx.out,
        );
        self.trunks.set_timer(name, id);
    }
}
