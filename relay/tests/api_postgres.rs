//! The API tests of api.rs (cases/api.rs), each against a relay keeping
//! its messages in a real PostgreSQL server of its own (`--database`).

mod common;

use std::time::Duration;

use common::*;

/// Shadows `common::start`: the same relay, on PostgreSQL. The server is
/// stopped when the returned guard drops (after the relay: tuple fields
/// drop in order).
fn start(tweak: impl FnOnce(&mut otc_relay::Config)) -> (otc_relay::Relay, pg::PgServer) {
    let server = pg::PgServer::start();
    (start_pg(&server, tweak), server)
}

include!("cases/api.rs");
