//! The durable outbox, with real parts (testkit devices, the real relay,
//! relays written here that hang up or never answer, the real `otc`
//! binary): a message sealed on the device but not taken by the relay is
//! kept in the outbox file and delivered by the next start of `otc`, even
//! after a kill -9; a package delivered twice (a crash between the relay's
//! acknowledgement and the removal from the outbox) is stored by the
//! relay once (it answers the resend with the ref it gave), so the
//! receiver reads it once, with no warning.

mod common;

use common::{Hostile, World, assert_exit, reply_json, stderr, stdout};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the world's real relay (same data dir) on `addr`, where a test
/// relay listened before; retried for at most 10 s while the port is freed.
fn relay_at(w: &mut World, addr: SocketAddr) {
    w.relay.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cfg = otc_relay::Config::new(addr.to_string(), w.relay.dir.path());
        cfg.rate = 10_000.0;
        cfg.burst = 10_000.0;
        match otc_relay::Relay::start(cfg) {
            Ok(r) => {
                w.relay.relay = Some(r);
                w.relay.at = addr;
                return;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the relay could not listen on {addr} within 10 s: {e:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The entries in `owner`'s outbox file (none when it does not exist).
fn outbox_lines(w: &World, owner: &str) -> Vec<String> {
    match std::fs::read_to_string(w.outbox(owner)) {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read the outbox: {e}"),
    }
}

fn with(flags: &[String], more: &[&str]) -> Vec<String> {
    let mut v = flags.to_vec();
    v.extend(more.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_send_the_relay_did_not_take_is_delivered_by_the_next_send() {
    let mut w = World::new(&["alice", "bob"], false);
    // Up for /check, then hangs up on every /send without a reply.
    let flaky = Hostile::start(Arc::new(|head: &str, s: &mut TcpStream| {
        if head.starts_with("GET /check") {
            reply_json(s, r#"{"status":"ok"}"#);
        }
    }));
    let addr = flaky.addr;
    let flags = w.flags_with_relay("alice", &flaky.url());
    let args = with(&flags, &["send", "bob", "first"]);
    let o = common::otc(
        &strs(&args),
        Duration::from_secs(60),
        "a send the relay drops",
    );
    assert_exit(&o, 4);
    assert!(!stdout(&o).contains("sent to"), "{}", stdout(&o));
    assert!(stderr(&o).contains("kept in the outbox"), "{}", stderr(&o));
    let lines = outbox_lines(&w, "alice");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(r#""to":"bob""#), "{lines:?}");
    // `otc outbox` lists it.
    let args = with(&flags, &["outbox"]);
    let o = common::otc(&strs(&args), Duration::from_secs(60), "otc outbox");
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("to bob"), "{}", stdout(&o));
    // The real relay on the same address: the next send (a new process)
    // delivers the waiting message first, then its own.
    drop(flaky);
    relay_at(&mut w, addr);
    let o = w.otc("alice", &["send", "bob", "second"], "the next send");
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("1 sealed message(s) were waiting; sent"),
        "{}",
        stderr(&o)
    );
    assert_eq!(outbox_lines(&w, "alice"), Vec::<String>::new());
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: first\nalice: second\n");
    assert!(!stderr(&o).contains("WARNING"), "{}", stderr(&o));
}

#[test]
fn killed_while_the_relay_holds_the_send_the_next_start_delivers_it() {
    let mut w = World::new(&["alice", "bob"], false);
    // Up for /check; takes the /send connection and never answers.
    let stall = Hostile::start(Arc::new(|head: &str, s: &mut TcpStream| {
        if head.starts_with("GET /check") {
            reply_json(s, r#"{"status":"ok"}"#);
        } else {
            std::thread::sleep(Duration::from_secs(30));
        }
    }));
    let addr = stall.addr;
    let flags = w.flags_with_relay("alice", &stall.url());
    let args = with(
        &flags,
        &["--relay-timeout", "120", "send", "bob", "stalled"],
    );
    let mut child = common::command(&strs(&args)).spawn().expect("start otc");
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox_lines(&w, "alice").is_empty() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("otc output");
            panic!(
                "no outbox entry within 30 s of the send; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // kill -9 while it waits for the relay.
    child.kill().expect("kill -9 otc");
    let out = child.wait_with_output().expect("the killed otc");
    assert_eq!(out.status.code(), None, "killed by a signal");
    let lines = outbox_lines(&w, "alice");
    assert_eq!(lines.len(), 1, "{lines:?}");
    drop(stall);
    relay_at(&mut w, addr);
    // The next start is a recv: it sends what was waiting first.
    let o = w.otc("alice", &["recv"], "alice's next start");
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("1 sealed message(s) were waiting; sent"),
        "{}",
        stderr(&o)
    );
    assert_eq!(outbox_lines(&w, "alice"), Vec::<String>::new());
    let o = w.otc("bob", &["recv"], "bob's recv");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "alice: stalled\n");
}

#[test]
fn a_package_delivered_twice_is_stored_once_and_read_once() {
    let w = World::new(&["alice", "bob"], false);
    // A crash between the relay's acknowledgement and the removal from the
    // outbox: the relay has the package, and the outbox still holds it.
    let sealed = w
        .dev("alice")
        .client()
        .package(&otc_proto::rpc::PackageRequest {
            to: "bob".into(),
            message: Some("twice".into()),
            message_b64: None,
        })
        .expect("seal");
    let first_ref = w.next_ref();
    let relay = otc_rpc_client::relay::RelayClient::from_addr(w.relay.addr());
    relay
        .send("alice", "bob", &sealed.package)
        .expect("the first delivery");
    let entry = serde_json::json!({
        "user": "alice",
        "relay": relay.cursor_name(),
        "to": "bob",
        "package": sealed.package,
        "sealed_at": 1,
    });
    std::fs::write(w.outbox("alice"), format!("{entry}\n")).expect("write the outbox");
    // The next start (interactive, stdin closed) sends it again.
    let o = w.otc("alice", &[], "alice's interactive start");
    assert_exit(&o, 0);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("1 sealed message(s) were waiting; sent"),
        "{all}"
    );
    assert_eq!(outbox_lines(&w, "alice"), Vec::<String>::new());
    assert_eq!(
        w.next_ref(),
        first_ref + 1,
        "the relay has it once (the resend got the same ref)"
    );
    let before = w.contact("bob", "alice");
    let o = w.otc("bob", &["recv", "--json"], "bob's recv");
    assert_exit(&o, 0);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    assert_eq!(lines[0]["text"], "twice");
    assert!(!stderr(&o).contains("WARNING"), "{}", stderr(&o));
    let after = w.contact("bob", "alice");
    assert_eq!(
        before.receive_left - after.receive_left,
        before.format.pad_cost("twice".len()) as u64,
        "one message's pad spent"
    );
    assert_eq!(w.cursor("bob"), first_ref + 1, "past it");
}
