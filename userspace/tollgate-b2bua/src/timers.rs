//! [`Timers`]: the core's timers — [`TimerId`] allocation, what each armed timer is for
//! ([`TimerPurpose`]), and the one timer that stands for the transaction layer's next deadline.
//!
//! Every [`Output::SetTimer`] and [`Output::CancelTimer`] the core emits comes from here, and
//! an id fires at most once: [`Timers::fire`] forgets it. This module must not act on a timer:
//! what a fired timer does is decided by `B2bua::on_timer` and the call logic.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tollgate_sip::TxId;

use crate::types::{CallId, Output, Side, TimerId};

/// What a timer is for.
#[derive(Debug, Clone)]
pub(crate) enum TimerPurpose {
    /// The transaction layer's next deadline.
    Tx,
    /// Ringing too long.
    NoAnswer(CallId),
    /// A leg's session refresh or expiry.
    Session(CallId, Side),
    /// Bound on an abandoned INVITE client transaction.
    OrphanGuard(TxId),
    /// Bound on a relayed re-INVITE or our refresh re-INVITE that got a provisional and no
    /// final response (RFC 3261 Timer C).
    InviteGuard(CallId, TxId),
    /// A trunk's OPTIONS keepalive.
    Keepalive(String),
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// The armed timers.
#[derive(Debug)]
pub(crate) struct Timers {
    next: u64,
    armed: FxHashMap<TimerId, TimerPurpose>,
    /// The timer standing for the transaction layer's next deadline, and that deadline.
    tx: Option<(TimerId, Instant)>,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            next: 1,
            armed: FxHashMap::default(),
            tx: None,
        }
    }
}

impl Timers {
    /// Arms a timer for `purpose` at `at`.
    pub(crate) fn set(
        &mut self,
        purpose: TimerPurpose,
        at: Instant,
        out: &mut Vec<Output>,
    ) -> TimerId {
        let id = TimerId(self.next);
        self.next += 1;
        self.armed.insert(id, purpose);
        out.push(Output::SetTimer { id, at });
        id
    }

    /// Cancels a timer if it is still armed.
    pub(crate) fn cancel(&mut self, id: TimerId, out: &mut Vec<Output>) {
        if self.armed.remove(&id).is_some() {
            out.push(Output::CancelTimer(id));
        }
    }

    /// A timer fired: its purpose, if it was still armed (it no longer is).
    pub(crate) fn fire(&mut self, id: TimerId) -> Option<TimerPurpose> {
        let purpose = self.armed.remove(&id)?;
        if matches!(purpose, TimerPurpose::Tx) {
            self.tx = None;
        }
        Some(purpose)
    }

    /// Timers armed.
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Keeps the transaction-layer timer on the layer's next deadline (`next`).
    pub(crate) fn rearm_tx(&mut self, next: Option<Instant>, out: &mut Vec<Output>) {
        match (next, self.tx) {
            (Some(at), Some((_, cur))) if at == cur => {}
            (Some(at), cur) => {
                if let Some((id, _)) = cur {
                    self.cancel(id, out);
                }
                let id = self.set(TimerPurpose::Tx, at, out);
                self.tx = Some((id, at));
            }
            (None, Some((id, _))) => {
                self.cancel(id, out);
                self.tx = None;
            }
            (None, None) => {}
        }
    }
}
