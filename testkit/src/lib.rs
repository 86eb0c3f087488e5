//! The One Time Chat test kit: what the tests and benches of more than one
//! crate need, written once.
//!
//! - [`device`] (feature `device`, on by default): real pad devices
//!   in-process with a simulated owner's thumb, and [`mesh`] for a group's
//!   shared pads. Its items are re-exported at the top.
//! - [`original`]: a stand-in for the original One Time Chat relay.
//! - [`bench`]: what the benches share: the figures of a run of timed
//!   requests, and the bare tiny_http echo server they are measured against.
//! - [`tmpfs`]: a small tmpfs mounted for one test (a real full disk).
//!
//! The relay's tests and benches take the kit without `device`, so they do
//! not build the firmware.

pub mod bench;
#[cfg(feature = "device")]
pub mod device;
pub mod original;
pub mod tmpfs;

#[cfg(feature = "device")]
pub use device::*;
