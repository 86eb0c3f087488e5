//! The original relay API over real HTTP: JSON shapes byte for byte, form
//! and JSON sends, refs, long-poll, errors.

mod common;

use std::time::Duration;

use common::*;

include!("cases/api.rs");

/// Dropping a relay closes its connections and waits for them, so that a
/// relay started again at once on the same directory is the log's only
/// writer and has everything.
#[test]
fn drop_closes_connections_and_a_restart_has_everything() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let cfg = otc_relay::Config::new("127.0.0.1:0", dir.path());
    let relay = otc_relay::Relay::start(cfg).expect("relay starts");
    let a = relay.addr();
    send(a, "alice", "bob", "ONE");
    let mut idle = std::net::TcpStream::connect(a).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut poll = std::net::TcpStream::connect(a).expect("connect");
    poll.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    poll.write_all(b"GET /getmessages?recipient_uid=bob&start_ref=2&wait=30 HTTP/1.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(relay);
    // Both connections end (an empty reply, or the poll's, then EOF)
    // rather than wait out the 20 s read timeouts.
    for (name, s) in [("idle", &mut idle), ("long poll", &mut poll)] {
        let mut all = Vec::new();
        let end = s.read_to_end(&mut all);
        assert!(
            !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "the {name} connection was not closed: {end:?}"
        );
    }
    let mut cfg = otc_relay::Config::new(a.to_string(), dir.path());
    cfg.rate = 1000.0;
    let relay = otc_relay::Relay::start(cfg).expect("restart on the same address");
    assert_eq!(contents(relay.addr(), "bob", 0), ["ONE"]);
    assert_eq!(send(relay.addr(), "alice", "bob", "TWO"), 2);
}

/// A resend (same sender, recipient and contents as a message still kept)
/// gets the first send's ref and is stored once: a client unsure whether
/// its send arrived cannot make the recipient's device see a replay. The
/// reply's shape is the original's; a restart keeps the rule.
#[test]
fn a_resend_gets_the_ref_it_already_has() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = otc_relay::Config::new("127.0.0.1:0", dir.path());
    cfg.rate = 10_000.0;
    cfg.burst = 10_000.0;
    let relay = otc_relay::Relay::start(cfg.clone()).expect("relay starts");
    let a = relay.addr();
    assert_eq!(send(a, "alice", "bob", "PKG1"), 1);
    let again = post_form(
        a,
        "/send",
        "sender_uid=alice&recipient_uid=bob&contents=PKG1",
    );
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, r#"{"received":true,"echo_tail":"PKG1","ref":1}"#)
    );
    // Another sender, another recipient, other contents: new messages.
    assert_eq!(send(a, "carol", "bob", "PKG1"), 2);
    assert_eq!(send(a, "alice", "dave", "PKG1"), 3);
    assert_eq!(send(a, "alice", "bob", "PKG2"), 4);
    // Many resends at once, racing the first send: one message, one ref.
    let refs: Vec<u64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| sc.spawn(move || send(a, "alice", "bob", "RACE")))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a sender"))
            .collect()
    });
    assert!(refs.iter().all(|r| *r == refs[0]), "{refs:?}");
    assert_eq!(contents(a, "bob", 0), ["PKG1", "PKG1", "PKG2", "RACE"]);
    drop(relay);
    let relay = otc_relay::Relay::start(cfg).expect("relay starts again");
    let a = relay.addr();
    assert_eq!(send(a, "alice", "bob", "PKG2"), 4, "known after a restart");
    assert_eq!(send(a, "alice", "bob", "PKG3"), refs[0] + 1);
    assert_eq!(
        contents(a, "bob", 0),
        ["PKG1", "PKG1", "PKG2", "RACE", "PKG3"]
    );
}

/// Issue 15, defect 7: `--listen nonsense` said "invalid socket address
/// (is another program using that port?)". It says what is wrong and
/// what to give instead; a port in use says so.
#[test]
fn a_bad_listen_address_is_said_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let run = |listen: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_otc-relay"))
            .args(["--listen", listen, "--data"])
            .arg(dir.path())
            .output()
            .expect("run otc-relay");
        assert!(!o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let err = run("nonsense");
    assert!(
        err.contains(r#"--listen "nonsense" is not an address to listen on: give HOST:PORT"#),
        "{err}"
    );
    assert!(!err.contains("another program"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = run(&taken.local_addr().unwrap().to_string());
    assert!(err.contains("another program is using that port"), "{err}");
}

/// Issue 20 (load): a commit wakes only the long polls of the mailboxes
/// it stored into. Every poll woken looks into the store again, and with
/// 16 mailboxes each commit's few messages used to send all 16 pollers
/// to the database, most of them to find nothing and park again. Counted
/// by the parks: carol's poll parks once and stays parked through a
/// message to bob, then answers her own.
#[test]
fn a_message_wakes_only_its_recipients_long_polls() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    let poll = |who: &'static str| {
        std::thread::spawn(move || {
            request_with(
                a,
                "GET",
                &format!("/getmessages?recipient_uid={who}&start_ref=0&wait=20"),
                None,
                b"",
                Duration::from_secs(30),
            )
        })
    };
    let carol = poll("carol");
    until_parked(&relay, 1);
    let bob = poll("bob");
    until_parked(&relay, 2);
    assert_eq!(send(a, "alice", "bob", "FOR-BOB"), 1);
    let r = bob.join().expect("bob's poll");
    assert_eq!(r.json()["messages"][0]["contents"], "FOR-BOB", "{}", r.body);
    assert_eq!(send(a, "alice", "carol", "FOR-CAROL"), 2);
    let r = carol.join().expect("carol's poll");
    assert_eq!(
        r.json()["messages"][0]["contents"],
        "FOR-CAROL",
        "{}",
        r.body
    );
    assert_eq!(
        relay.long_polls_parked(),
        2,
        "a message to bob woke carol's poll, which looked and parked again"
    );
}
