//! `--mischief`: each kind does what it says to the named recipient's next
//! message only. (Off by default: see `api.rs`.)

mod common;

use common::*;

fn order(a: std::net::SocketAddr, user: &str, kind: &str) {
    let r = post_form(a, "/mischief", &format!("userid={user}&kind={kind}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ok"], true);
}

#[test]
fn page_and_bad_orders() {
    let (relay, _d) = start(|c| c.mischief = true);
    let a = relay.addr();
    let r = get(a, "/mischief");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<form") && r.body.contains("reorder"));
    let r = get(a, "/mischief?userid=bob&kind=explode");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("drop, corrupt")
    );
    assert_eq!(get(a, "/mischief?kind=drop").status, 400);
    // GET with parameters works like the form.
    let r = get(a, "/mischief?userid=bob&kind=drop");
    assert_eq!(r.json()["pending"], 1);
}

#[test]
fn drop_acknowledges_but_never_delivers() {
    let (relay, _d) = start(|c| c.mischief = true);
    let a = relay.addr();
    order(a, "bob", "drop");
    let lost = send(a, "alice", "bob", "LOST");
    let kept = send(a, "alice", "bob", "KEPT");
    assert!(kept > lost);
    assert_eq!(contents(a, "bob", 0), ["KEPT"]);
}

#[test]
fn corrupt_changes_one_character() {
    let (relay, _d) = start(|c| c.mischief = true);
    let a = relay.addr();
    order(a, "bob", "corrupt");
    send(a, "alice", "carol", "QUJDREVGR0g"); // other users untouched
    send(a, "alice", "bob", "QUJDREVGR0g");
    send(a, "alice", "bob", "QUJDREVGR0g");
    let got = contents(a, "bob", 0);
    assert_eq!(got.len(), 2);
    assert_ne!(got[0], "QUJDREVGR0g");
    let diff = got[0]
        .chars()
        .zip("QUJDREVGR0g".chars())
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!((got[0].len(), diff), (11, 1));
    assert_eq!(got[1], "QUJDREVGR0g");
    assert_eq!(contents(a, "carol", 0), ["QUJDREVGR0g"]);
}

#[test]
fn replay_stores_twice_under_two_refs() {
    let (relay, _d) = start(|c| c.mischief = true);
    let a = relay.addr();
    order(a, "bob", "replay");
    send(a, "alice", "bob", "ONCE");
    let r = get(a, "/getmessages?recipient_uid=bob&start_ref=0").json();
    assert_eq!(r["count"], 2);
    assert_eq!(r["messages"][0]["contents"], "ONCE");
    assert_eq!(r["messages"][1]["contents"], "ONCE");
    assert!(r["messages"][0]["ref"].as_u64() < r["messages"][1]["ref"].as_u64());
}

#[test]
fn reorder_swaps_a_pair() {
    let (relay, _d) = start(|c| c.mischief = true);
    let a = relay.addr();
    order(a, "bob", "reorder");
    send(a, "alice", "bob", "FIRST");
    assert!(contents(a, "bob", 0).is_empty(), "held back");
    send(a, "alice", "bob", "SECOND");
    assert_eq!(contents(a, "bob", 0), ["SECOND", "FIRST"]);
    send(a, "alice", "bob", "THIRD");
    assert_eq!(contents(a, "bob", 0), ["SECOND", "FIRST", "THIRD"]);
}
