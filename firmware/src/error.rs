//! The one error type of otc-device.
//!
//! Every variant has a stable machine code ([`Error::code`]) that the
//! command line prints (`error[bad_tag]: ...`) and tests match on, and a
//! message that tells a person what to do next. Errors never carry pad
//! bytes, keys or plaintext.
//!
//! The pad store's errors are the pad crate's ([`otc_pad::Error`]; the
//! split is described there): this type wraps them as [`Error::Pad`]
//! (transparent: same message), and [`Error::code`] and the RPC mapping
//! pass a wrapped error on to the pad crate's, so its codes are the same
//! whether a caller holds the store's error or this one. The variants
//! here are the appliance's own: `otc.toml`, the owner, the network, the
//! audit log, the screen, build features and I/O on its own files.
//!
//! The RPC endpoint does not hand these codes to clients: it sends the
//! coarser [`ErrorCode`] of otc-proto, through the one mapping
//! `impl From<&Error> for ErrorCode` below (for the store's errors, the
//! pad crate's, which says why each is what it is). Every reason a
//! package fails to open (`bad_tag`, `out_of_region`, ...) is
//! `bad_package` there, so an untrusted client learns nothing about why,
//! except a replay, which is `replayed`; anything else that is not the
//! client's to fix is `internal`, as every variant of this file is.

use otc_proto::rpc::ErrorCode;
use std::path::PathBuf;
use thiserror::Error;

/// Result with the crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pad device.
#[derive(Debug, Error)]
pub enum Error {
    /// Anything the pad store refused or failed at: its own code, message
    /// and RPC mapping, passed through.
    #[error(transparent)]
    Pad(#[from] otc_pad::Error),

    // ---- the running device --------------------------------------------
    /// `otc.toml` could not be understood.
    #[error("{path}: {reason}; fix the file or remove the key to use the default")]
    Config { path: PathBuf, reason: String },

    /// `init` was run on a device that already has an owner.
    #[error("this device already belongs to {0:?}; the owner is set once")]
    OwnerAlreadySet(String),

    /// The device has no owner yet.
    #[error("this device has no owner yet; run `otc-device --data DIR init --owner NAME` first")]
    NoOwner,

    /// The RPC endpoint cannot listen where asked.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),

    /// The audit log could not be written or read.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),

    /// The screen could not be started.
    #[error("screen: {0}")]
    Ui(#[from] otc_ui::UiError),

    /// A feature this build does not have.
    #[error("{0}")]
    NotInThisBuild(String),

    // ---- plumbing -------------------------------------------------------
    /// An I/O error on one of the appliance's own files, with what we were
    /// doing (the store's are [`otc_pad::Error::Io`], same code).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable, machine-readable code for the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Pad(e) => e.code(),
            Error::Io { .. } => "io",
            Error::Config { .. } => "config",
            Error::OwnerAlreadySet(_) => "owner_already_set",
            Error::NoOwner => "no_owner",
            Error::Net(_) => "net",
            Error::Audit(_) => "audit",
            Error::Ui(_) => "ui",
            Error::NotInThisBuild(_) => "not_in_this_build",
        }
    }

    /// Wrap an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The one mapping from the device's errors to the RPC's stable codes.
impl From<&Error> for ErrorCode {
    fn from(e: &Error) -> ErrorCode {
        match e {
            Error::Pad(e) => ErrorCode::from(e),
            Error::Io { .. }
            | Error::Config { .. }
            | Error::OwnerAlreadySet(_)
            | Error::NoOwner
            | Error::Net(_)
            | Error::Audit(_)
            | Error::Ui(_)
            | Error::NotInThisBuild(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wrapping a store error changes neither its code, nor its message,
    /// nor what an RPC client is told.
    #[test]
    fn a_wrapped_store_error_keeps_its_codes_and_message() {
        let store_errors = [
            otc_pad::Error::VerifyFailed {},
            otc_pad::Error::Replay { index: 3 },
            otc_pad::Error::UnknownContact("x".into()),
            otc_pad::Error::PadDamaged {
                contact: "x".into(),
                reason: "short".into(),
            },
            otc_pad::Error::io("reading", std::io::Error::other("disk")),
        ];
        let expected = [
            ("bad_tag", ErrorCode::BadPackage),
            ("replay", ErrorCode::Replayed),
            ("unknown_contact", ErrorCode::UnknownContact),
            ("pad_damaged", ErrorCode::DamagedPad),
            ("io", ErrorCode::Internal),
        ];
        for (pad, (code, rpc)) in store_errors.into_iter().zip(expected) {
            let message = pad.to_string();
            let device = Error::from(pad);
            assert_eq!(device.code(), code, "{device}");
            assert_eq!(ErrorCode::from(&device), rpc, "{device}");
            assert_eq!(device.to_string(), message);
        }
    }

    #[test]
    fn the_appliance_errors_are_internal_over_rpc() {
        let own = [
            Error::NoOwner,
            Error::OwnerAlreadySet("alice".into()),
            Error::NotInThisBuild("no".into()),
            Error::io("reading", std::io::Error::other("disk")),
        ];
        for e in &own {
            assert_eq!(ErrorCode::from(e), ErrorCode::Internal, "{e}");
        }
        assert_eq!(Error::NoOwner.code(), "no_owner");
        assert_eq!(Error::io("x", std::io::Error::other("y")).code(), "io");
    }
}
