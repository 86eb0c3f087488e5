//! otc-client: One Time Chat's chat client, as a library with the terminal
//! as a thin layer (so that tests drive the same code).
//!
//! - [`chat`]: the engine (send, fetch and open, the read position, the
//!   outbox, the warnings log); no terminal.
//! - [`outbox`]: sealed packages the relay has not taken, kept in a file.
//! - [`config`]: settings from flags, environment and the config file.
//! - [`commands`]: the interactive command line, parsed.
//! - [`style`]: lines, colour, escaping of untrusted text.
//! - [`cli`]: the `otc` command line and the one-shot subcommands.
//! - [`interactive`]: the prompt and the background long poll.
//! - [`lineedit`]: our small line editor (why not rustyline: see there).
//!
//! Depends on otc-proto and otc-rpc-client only (plus small crates).

pub mod chat;
pub mod cli;
pub mod commands;
pub mod config;
pub mod interactive;
pub mod lineedit;
pub mod outbox;
pub mod style;
