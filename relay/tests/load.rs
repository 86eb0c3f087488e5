//! Load across a SIGKILL: 16 senders, 16 long-polling receivers, the real
//! binary killed half way and restarted on the same port and data
//! directory. Asserts that no acknowledged message is lost, none is
//! delivered twice, refs per mailbox strictly increase and refs after the
//! restart are above those before (see `common/load.rs`). Timing is never
//! asserted: `cargo bench -p otc-relay --bench load` prints the figures.
//! The same run twice: SQLite (`--data`) and PostgreSQL (`--database`, a
//! real server of the test's own, `common/pg.rs`).

#[path = "common/load.rs"]
mod load;
#[path = "common/pg.rs"]
mod pg;

use std::time::Duration;

#[test]
fn nothing_acknowledged_is_lost_or_doubled_across_a_sigkill() {
    across_a_sigkill(Vec::new());
}

#[test]
fn on_postgres_nothing_acknowledged_is_lost_or_doubled_across_a_sigkill() {
    let server = pg::PgServer::start();
    across_a_sigkill(vec!["--database".into(), server.url()]);
}

fn across_a_sigkill(extra: Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let plan = load::Plan {
        senders: 16,
        mailboxes: 16,
        half: Duration::from_millis(2500),
        contents_len: 64,
        extra,
    };
    let out = load::run(env!("CARGO_BIN_EXE_otc-relay"), dir.path(), &plan);
    out.check();
    let (rate, p50, p99) = out.figures();
    eprintln!(
        "{} acknowledged ({} unknown at the kill), {rate:.0} msg/s, p50 {p50:?}, p99 {p99:?}, run {:?}",
        out.acks.len(),
        out.unknown.len(),
        out.total
    );
}
