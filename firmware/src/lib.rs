//! otc-device: the One Time Chat pad device.
//!
//! This crate is the appliance: it keeps one-time pads and spends them only
//! on its owner's approval. So far it holds the crash-safe pad store
//! ([`pad`]) and the `otc-device` command line ([`cli`]); the RPC endpoint,
//! confirmation broker and audit log follow in later issues.

pub mod cli;
pub mod error;
pub mod pad;

pub use error::{Error, Result};
pub use pad::PadStore;
