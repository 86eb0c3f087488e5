//! Each limit is a clear 4xx JSON error, and the relay keeps serving.

mod common;

use std::time::Duration;

use common::*;

fn is_error(r: &Reply, status: u16, words: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["error"], status);
    let m = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(m.contains(words), "{m:?} should say {words:?}");
}

#[test]
fn message_size() {
    let (relay, _d) = start(|c| c.max_message = 100);
    let a = relay.addr();
    send(a, "alice", "bob", &"A".repeat(100));
    let big = format!(
        "sender_uid=alice&recipient_uid=bob&contents={}",
        "A".repeat(101)
    );
    is_error(&post_form(a, "/send", &big), 413, "message too large");
    // A body far over the limit is refused from its Content-Length.
    let huge = "A".repeat(1 << 20);
    is_error(&post_form(a, "/send", &huge), 413, "too large");
    assert_eq!(contents(a, "bob", 0).len(), 1);
}

#[test]
fn mailbox_size() {
    let (relay, _d) = start(|c| c.max_mailbox = 3);
    let a = relay.addr();
    for c in ["AAAA", "BBBB", "CCCC"] {
        send(a, "alice", "bob", c);
    }
    let r = post_form(
        a,
        "/send",
        "sender_uid=alice&recipient_uid=bob&contents=DDDD",
    );
    is_error(&r, 429, "mailbox full");
    // A resend of a kept message is not a new one: the ref it has.
    assert_eq!(send(a, "alice", "bob", "BBBB"), 2);
    // Others' mailboxes are not affected.
    send(a, "alice", "carol", "AAAA");
}

#[test]
fn request_rate_per_address() {
    let (relay, _d) = start(|c| {
        c.rate = 0.001;
        c.burst = 3.0;
    });
    let a = relay.addr();
    for _ in 0..3 {
        assert_eq!(get(a, "/check").status, 200);
    }
    is_error(&get(a, "/check"), 429, "too many requests");
}

/// One connection slot, held by a long poll: a newcomer is still served
/// (issue 23, part 5). The long poll is answered early, empty, to make
/// room, never left to hold the relay; 503 for connections busy otherwise
/// is in `connections.rs`.
#[test]
fn connections() {
    let (relay, _d) = start(|c| c.max_connections = 1);
    let a = relay.addr();
    let poll = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = request_with(
            a,
            "GET",
            "/getmessages?recipient_uid=bob&start_ref=1&wait=30",
            None,
            b"",
            Duration::from_secs(40),
        );
        (r, t.elapsed())
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while relay.long_polls_parked() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the long poll parks within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        get(a, "/check").status,
        200,
        "served while a long poll held the one slot"
    );
    let (r, took) = poll.join().expect("poll");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["count"], 0);
    assert!(
        took < Duration::from_secs(25),
        "the long poll (wait=30) was answered early to make room, not held: {took:?}"
    );
}
