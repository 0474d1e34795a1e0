//! [`Effects`]: what one [`B2bua::handle`](crate::B2bua::handle) call works with besides the
//! core's state — the time it was called with and the [`Output`]s it appends — passed as one
//! context instead of two trailing parameters; and [`Origin`], who sent the request being
//! answered.
//!
//! It owns nothing beyond the call: it must not hold core or call state, nor outlive the
//! input it serves.

use std::net::SocketAddr;
use std::time::Instant;

use tollgate_sip::TxId;

use crate::types::{CallEvent, Output, Side};

/// The time of the current input and the outputs it produces.
#[derive(Debug)]
pub(crate) struct Effects<'a> {
    pub(crate) now: Instant,
    pub(crate) out: &'a mut Vec<Output>,
}

impl<'a> Effects<'a> {
    pub(crate) fn new(now: Instant, out: &'a mut Vec<Output>) -> Effects<'a> {
        Effects { now, out }
    }

    /// Emits an event.
    pub(crate) fn event(&mut self, e: CallEvent) {
        self.out.push(Output::Event(e));
    }
}

/// Where a received request came from: its server transaction, side and peer (for refusals).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) tx: TxId,
    pub(crate) side: Side,
    pub(crate) peer: SocketAddr,
}
