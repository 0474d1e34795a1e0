//! Which side of Tollgate something is on: the one name both planes use, from the SIP leg to
//! the NIC a packet arrives on.

use core::fmt;

/// Which side of Tollgate: the gateway (untrusted) NIC or the internal (trusted) one.
///
/// Stored call records name the sides "Gateway" and "Internal" (serde, feature `spec`), as
/// records written before the sides had one name did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "spec", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum Side {
    /// Gateways: SIP/TCP (TLS optional), plain RTP (RTP/AVP); the untrusted NIC.
    #[cfg_attr(feature = "spec", serde(rename = "Gateway"))]
    Ext = 0,
    /// The internal network: SIP/TLS (mutual), SRTP (RTP/SAVP with `a=crypto`); the trusted NIC.
    #[cfg_attr(feature = "spec", serde(rename = "Internal"))]
    Int = 1,
}

impl Side {
    /// The other side.
    pub const fn other(self) -> Side {
        match self {
            Side::Ext => Side::Int,
            Side::Int => Side::Ext,
        }
    }

    /// 0 for Ext, 1 for Int.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// "gateway" or "internal": the leg's role, in words for messages.
    pub const fn role(self) -> &'static str {
        match self {
            Side::Ext => "gateway",
            Side::Int => "internal",
        }
    }

    /// "ext" or "int" (metric labels, logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Ext => "ext",
            Side::Int => "int",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
