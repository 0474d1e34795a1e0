//! [`CallTable`]: the calls in progress and every per-call index — by dialog (`side|Call-ID|our
//! tag`) and by transaction — plus call id allocation.
//!
//! The indexes change only through this table's methods, so that they always agree with the
//! calls: [`CallTable::insert`] files a call under both legs' dialogs, [`CallTable::remove`]
//! drops its dialogs and every transaction registered for it, [`CallTable::register_tx`] and
//! [`CallTable::unregister_tx`] keep a call's own transaction list and the index in step.
//!
//! It must not send anything, arm timers or touch the transaction layer: it is bookkeeping
//! only; what a call *does* lives in `setup`, `indialog` and `b2bua`.

use rustc_hash::FxHashMap;
use tollgate_sip::TxId;

use crate::call::{Call, TxRole};
use crate::types::{CallId, Side};

/// The key of one leg's dialog in the index: `side|Call-ID|our tag`.
pub(crate) fn dialog_key(side: Side, call_id: &str, tag: &str) -> String {
    let mut k = String::with_capacity(call_id.len() + tag.len() + 6);
    k.push_str(side.as_str());
    k.push('|');
    k.push_str(call_id);
    k.push('|');
    k.push_str(tag);
    k
}

/// The calls in progress and their indexes.
#[derive(Debug)]
pub(crate) struct CallTable {
    /// Boxed: a `Call` is some 3.4 KB, and growing a table of them inline moves every call's
    /// state at once (tens of ms at 10k calls).
    calls: FxHashMap<CallId, Box<Call>>,
    /// `side|Call-ID|our tag` -> call.
    by_dialog: FxHashMap<String, CallId>,
    by_tx: FxHashMap<TxId, (CallId, TxRole)>,
    /// The next call id to hand out.
    next: u64,
}

impl Default for CallTable {
    fn default() -> CallTable {
        CallTable {
            calls: FxHashMap::default(),
            by_dialog: FxHashMap::default(),
            by_tx: FxHashMap::default(),
            next: 1,
        }
    }
}

impl CallTable {
    /// A fresh call id.
    pub(crate) fn alloc_id(&mut self) -> CallId {
        let id = self.next;
        self.next += 1;
        id
    }

    /// Files `call` under `id` and both its legs' dialogs; a restored id also moves the id
    /// counter past it.
    pub(crate) fn insert(&mut self, id: CallId, call: Call) {
        for leg in &call.legs {
            self.by_dialog
                .insert(dialog_key(leg.side, &leg.call_id, &leg.local_tag), id);
        }
        self.next = self.next.max(id.saturating_add(1));
        self.calls.insert(id, Box::new(call));
    }

    /// Takes a call out with its dialogs and every transaction registered for it.
    pub(crate) fn remove(&mut self, id: CallId) -> Option<Box<Call>> {
        let mut call = self.calls.remove(&id)?;
        for tx in std::mem::take(&mut call.txs) {
            self.by_tx.remove(&tx);
        }
        for leg in &call.legs {
            self.by_dialog
                .remove(&dialog_key(leg.side, &leg.call_id, &leg.local_tag));
        }
        Some(call)
    }

    pub(crate) fn get(&self, id: &CallId) -> Option<&Call> {
        self.calls.get(id).map(|c| &**c)
    }

    pub(crate) fn get_mut(&mut self, id: &CallId) -> Option<&mut Call> {
        self.calls.get_mut(id).map(|c| &mut **c)
    }

    pub(crate) fn contains_key(&self, id: &CallId) -> bool {
        self.calls.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&CallId, &Call)> {
        self.calls.iter().map(|(id, c)| (id, &**c))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().map(|c| &**c)
    }

    /// The call holding dialog `key` (see [`dialog_key`]).
    pub(crate) fn by_dialog(&self, key: &str) -> Option<CallId> {
        self.by_dialog.get(key).copied()
    }

    /// Registers a transaction for a call (the call's own list included, when it exists).
    pub(crate) fn register_tx(&mut self, call: CallId, tx: TxId, role: TxRole) {
        self.by_tx.insert(tx, (call, role));
        if let Some(c) = self.calls.get_mut(&call) {
            c.txs.push(tx);
        }
    }

    /// The call and role of a transaction.
    pub(crate) fn tx(&self, tx: TxId) -> Option<(CallId, TxRole)> {
        self.by_tx.get(&tx).copied()
    }

    /// Forgets a finished transaction; returns its call and role.
    pub(crate) fn unregister_tx(&mut self, tx: TxId) -> Option<(CallId, TxRole)> {
        let (call, role) = self.by_tx.remove(&tx)?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.txs.retain(|t| *t != tx);
        }
        Some((call, role))
    }
}
