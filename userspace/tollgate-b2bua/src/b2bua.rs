//! [`B2bua`]: the call state machine the driver calls with [`Input`]s.

use std::time::Instant;

use crate::config::Config;
use crate::types::{Input, Output};

/// The B2BUA core. One instance serves every call of a Tollgate process.
pub struct B2bua {
    cfg: Config,
    rng: Box<dyn FnMut(&mut [u8]) + Send>,
}

impl std::fmt::Debug for B2bua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("B2bua").finish_non_exhaustive()
    }
}

impl B2bua {
    /// A core for `cfg`; `rng` is a CSPRNG (keys, tags, Call-IDs, branches).
    pub fn new(cfg: Config, rng: Box<dyn FnMut(&mut [u8]) + Send>) -> B2bua {
        B2bua { cfg, rng }
    }

    /// Arms the initial timers (OPTIONS keepalives).
    pub fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        let _ = (now, out, &self.cfg, &mut self.rng);
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        let _ = (input, now, out);
    }

    /// Calls alive.
    pub fn active_calls(&self) -> usize {
        0
    }

    /// Relay ports in use: (ext, int) RTP ports (each with its RTCP port).
    pub fn allocated_ports(&self) -> (usize, usize) {
        (0, 0)
    }

    /// Draining and no call left.
    pub fn is_drained(&self) -> bool {
        false
    }

    /// Each trunk's name and whether it is up.
    pub fn trunk_status(&self) -> Vec<(String, bool)> {
        Vec::new()
    }
}
