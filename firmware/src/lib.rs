//! otc-device: the One Time Chat pad device.
//!
//! This crate is the appliance: it keeps one-time pads and spends them only
//! on its owner's approval.
//!
//! * [`pad`]: the crash-safe pad store, the crate otc-pad (re-exported
//!   under this name, so `otc_device::pad::...` paths name it).
//! * [`confirm`]: the confirmation broker (one prompt at a time).
//! * [`rpc`]: the HTTP/JSON endpoint for the chat client; [`front`]: the
//!   layer every connection passes first (limits, deadlines, Host, Origin,
//!   Content-Type); [`net`]: where it listens (the Ethernet interface only).
//! * [`audit`]: the append-only, hash-chained audit log.
//! * [`device`]: `otc-device run`, wiring all of it to the screen;
//!   [`presenter`]: what the screen shows of the device's state;
//!   [`board`]: what it runs on (which screen to open; the status LED,
//!   push buttons and backlight; the board's model).
//! * [`config`]: `DIR/otc.toml`; [`cli`]: the command line; [`units`]:
//!   byte counts for people.
//! * [`lock`]: the locked state: what the endpoint answers while locked,
//!   the delay after wrong passphrases.
//! * [`platform`]: the clocks, the RNG and the link state, with test twins.

pub mod audit;
pub mod board;
pub mod clear_settings;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod conversation;
pub mod device;
pub mod error;
pub mod first_boot;
pub mod front;
pub mod lock;
pub mod net;
pub mod pairing_flow;
pub mod platform;
pub mod presenter;
pub mod read_here;
pub mod rpc;
pub mod settings_flow;
pub mod stick;
pub mod stick_mount;
pub mod test_trace;
pub mod units;
pub mod watchdog;

pub use otc_pad as pad;

pub use error::{Error, Result};
pub use pad::PadStore;
