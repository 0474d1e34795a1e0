//! What happens to a flow's packets in each direction, with its SRTP state, and how that state
//! is built ahead of time.
//!
//! Building an SRTP context runs the key schedule (AES key expansion, HMAC pads): far more work
//! than relaying a packet. [`FlowCrypto::build`] does it on the control thread, where a flow is
//! installed, and the worker only links the ready-built contexts into its table
//! ([`crate::MediaFlowTable::install_with`]), so a burst of new calls never stalls the packets of the
//! calls already up.

use std::sync::atomic::Ordering;

use tollgate_srtp::{Config as SrtpConfig, Context};

use crate::flow::{MediaFlowSpec, Side, SideCounters, SrtpResume, TransformSpec, srtp_pos};
use crate::table::InstallError;

/// One direction's transform with its live SRTP state.
#[derive(Debug)]
pub(crate) enum Transform {
    Forward,
    Protect(Box<Context>),
    Unprotect(Box<Context>),
}

impl Transform {
    /// Builds the transform; an SRTP context starts its `resume` stream where it stood.
    pub(crate) fn new(
        spec: &TransformSpec,
        resume: Option<SrtpResume>,
        cfg: SrtpConfig,
    ) -> Result<Transform, InstallError> {
        let ctx = |k| -> Result<Box<Context>, InstallError> {
            let mut c = Box::new(Context::new(k, cfg)?);
            if let Some(r) = resume {
                c.resume(r.ssrc, r.roc, r.srtcp_index)?;
            }
            Ok(c)
        };
        Ok(match spec {
            TransformSpec::Forward => Transform::Forward,
            TransformSpec::Protect(k) => Transform::Protect(ctx(k)?),
            TransformSpec::Unprotect(k) => Transform::Unprotect(ctx(k)?),
        })
    }

    pub(crate) fn context(&self) -> Option<&Context> {
        match self {
            Transform::Forward => None,
            Transform::Protect(c) | Transform::Unprotect(c) => Some(c),
        }
    }

    /// Publishes a freshly built context's resumed position (before any packet flows, so a
    /// second restart still finds it).
    pub(crate) fn publish_resume(&self, resume: Option<SrtpResume>, c: &SideCounters) {
        if let (Some(r), Some(_)) = (resume, self.context()) {
            c.srtp_pos.store(srtp_pos(r.ssrc, r.roc), Ordering::Relaxed);
            c.srtcp_tx
                .store(u64::from(r.srtcp_index), Ordering::Relaxed);
        }
    }
}

/// The transforms of one flow for one worker, built (SRTP key schedule done, the spec's
/// [`MediaFlowSpec::resume`] applied) by [`FlowCrypto::build`] on the control thread, to be
/// handed to [`crate::MediaFlowTable::install_with`] with the same spec. Each worker needs its own:
/// SRTP state is per worker.
#[derive(Debug)]
pub struct FlowCrypto {
    /// By arrival side (`[ext, int]`): the built transform, or `None` where the flow's previous
    /// transform is kept (an update that does not change that direction's key).
    pub(crate) xform: [Option<Transform>; 2],
}

impl FlowCrypto {
    /// Builds the transforms of `spec`, with its resume positions applied. `prev`: the spec the
    /// flow is installed with now, for an update; a direction whose transform it shares is not
    /// built (the table keeps that direction's live state, exactly as
    /// [`crate::MediaFlowTable::install`] does).
    pub fn build(
        spec: &MediaFlowSpec,
        prev: Option<&MediaFlowSpec>,
        cfg: SrtpConfig,
    ) -> Result<FlowCrypto, InstallError> {
        let side = |s: Side| -> Result<Option<Transform>, InstallError> {
            if prev.is_some_and(|p| p.transform(s) == spec.transform(s)) {
                return Ok(None);
            }
            Transform::new(spec.transform(s), spec.resume[s.index()], cfg).map(Some)
        };
        Ok(FlowCrypto {
            xform: [side(Side::Ext)?, side(Side::Int)?],
        })
    }

    /// Whether the transform for packets arriving on `side` was built (not kept from before).
    pub fn built(&self, side: Side) -> bool {
        self.xform[side.index()].is_some()
    }
}
