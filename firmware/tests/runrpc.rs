//! Issue #10, item 4: the device answers the original One Time Chat
//! client's `POST /runrpc`, through the same prompt, limits and audit as
//! `/v1` (real HTTP on 127.0.0.1, the real UI tapped by a script, a fake
//! clock). The last test is a stand-in for the original client, written
//! here from the report's API (form-encoded `/send`, `/getmessages`,
//! `/getnextref` to the relay; `/runrpc` to the device), talking through a
//! real `otc-relay` between two devices.

mod common;

use common::device::*;
use otc_device::audit::{self, Event};
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{Cursor, PackageResponse};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const SIZE: u64 = 16 * 1024;

/// The original's call body.
fn call(method: &str, args: Value) -> Value {
    json!({"method": method, "args": args, "kwargs": {}})
}

/// `/runrpc` answers 200 with a JSON object; return it.
fn reply(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "/runrpc answers 200: {}", r.body);
    r.json()
}

/// The `return` value of a call that ran.
fn returned(r: &Resp) -> Value {
    let v = reply(r);
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only \"return\": {}", r.body);
    obj.get("return")
        .unwrap_or_else(|| panic!("no \"return\": {}", r.body))
        .clone()
}

/// The text of a call error `{"error": TEXT}`.
fn call_error(r: &Resp) -> String {
    let v = reply(r);
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only \"error\": {}", r.body);
    let e = obj["error"].as_str().expect("error is text").to_string();
    assert!(!e.trim().is_empty());
    e
}

/// A failed `package`/`unpackage`: `{"success": false, "error": TEXT, ..}`.
fn failed(v: &Value) -> String {
    assert_eq!(v["success"], json!(false), "{v}");
    assert!(
        v.get("package").is_none() && v.get("message").is_none(),
        "{v}"
    );
    v["error"].as_str().expect("error text").to_string()
}

/// Keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

fn rpc_package(dev: &Dev, src: &str, dst: &str, message: &str, button: &str) -> Value {
    let (r, shown) = dev.answered(
        routes::RUNRPC,
        call("package", json!([src, dst, message])),
        "confirm-seal",
        button,
    );
    assert!(
        shown.has_text(dst),
        "the prompt names the contact: {shown:#?}"
    );
    returned(&r)
}

fn rpc_unpackage(dev: &Dev, src: &str, dst: &str, package: &str, button: &str) -> Value {
    let (r, shown) = dev.answered(
        routes::RUNRPC,
        call("unpackage", json!([src, dst, package])),
        "confirm-open",
        button,
    );
    assert!(
        shown.has_text(src),
        "the prompt names the contact: {shown:#?}"
    );
    returned(&r)
}

/// A call that must not show a prompt (the frozen clock would keep it up).
fn rpc_now(dev: &Dev, body: &Value) -> Resp {
    dev.post(routes::RUNRPC, body)
}

fn two(pads: &[PadSpec]) -> (Dirs, Dev, Dev) {
    let d = dirs(pads);
    let alice = Dev::start(&d.alice, "alice", limits());
    let bob = Dev::start(&d.bob, "bob", limits());
    (d, alice, bob)
}

#[test]
fn each_method_approved_in_the_original_shapes() {
    let (_d, alice, bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let before = alice.contact("bob");

    let v = rpc_package(
        &alice,
        "alice",
        "bob",
        "hello from the original client",
        "approve",
    );
    assert_eq!(keys(&v), ["package", "success"], "{v}");
    assert_eq!(v["success"], json!(true));
    let package = v["package"].as_str().unwrap().to_string();
    let cost = Format::V3.pad_cost("hello from the original client".len()) as u64;
    assert_eq!(alice.contact("bob").send_left, before.send_left - cost);

    let v = rpc_unpackage(&bob, "alice", "bob", &package, "approve");
    assert_eq!(
        v,
        json!({"success": true, "message": "hello from the original client",
               "skip_detected": false, "reuse_detected": false})
    );

    // The read position: null until saved, then the number, shared with
    // /v1/cursor under the relay's host:port.
    let get = call("get_next_ref", json!(["bob", "http://relay.example:5000"]));
    assert_eq!(returned(&rpc_now(&bob, &get)), Value::Null);
    let save = call(
        "save_next_ref",
        json!(["bob", "http://relay.example:5000/", 42]),
    );
    assert_eq!(returned(&rpc_now(&bob, &save)), Value::Null);
    assert_eq!(returned(&rpc_now(&bob, &get)), json!(42));
    let c: Cursor = bob.get(&routes::cursor_path("relay.example:5000")).ok();
    assert_eq!(c.cursor, 42);
    // And the other way: a /v1 PUT is what get_next_ref reads.
    let put = otc_rpc_client::Client::new(bob.addr)
        .set_cursor("relay.example:5000", 7)
        .expect("PUT /v1/cursor");
    assert_eq!(put, 7);
    assert_eq!(returned(&rpc_now(&bob, &get)), json!(7));
    // kwargs work as the original's Python would bind them.
    let by_name = json!({"method": "get_next_ref", "args": [],
                         "kwargs": {"server_address": "relay.example:5000", "uid": "bob"}});
    assert_eq!(returned(&rpc_now(&bob, &by_name)), json!(7));
    // A restart keeps it (the same file as /v1's cursors).
    let bob = bob.restart();
    assert_eq!(returned(&rpc_now(&bob, &get)), json!(7));
}

#[test]
fn rejected_calls_spend_nothing() {
    let (_d, alice, bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let a0 = alice.contact("bob");
    let v = rpc_package(&alice, "alice", "bob", "no", "reject");
    assert_eq!(keys(&v), ["error", "success"], "{v}");
    assert!(failed(&v).contains("rejected"), "{v}");
    assert_eq!(alice.contact("bob"), a0);

    let v = rpc_package(&alice, "alice", "bob", "yes", "approve");
    let package = v["package"].as_str().unwrap().to_string();
    let b0 = bob.contact("alice");
    let v = rpc_unpackage(&bob, "alice", "bob", &package, "reject");
    assert_eq!(
        keys(&v),
        ["error", "reuse_detected", "skip_detected", "success"],
        "{v}"
    );
    assert!(failed(&v).contains("rejected"), "{v}");
    assert_eq!(
        (&v["skip_detected"], &v["reuse_detected"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(bob.contact("alice"), b0, "a rejected open spends nothing");
    // It still opens afterwards.
    let v = rpc_unpackage(&bob, "alice", "bob", &package, "approve");
    assert_eq!(v["message"], json!("yes"));
}

#[test]
fn a_call_while_a_prompt_is_up_is_busy() {
    let (_d, alice, _bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let a0 = alice.contact("bob");
    let first = alice.spawn(
        "POST",
        routes::RUNRPC,
        call("package", json!(["alice", "bob", "first"])),
    );
    let shown = alice.wait_prompt("confirm-seal");
    let v = returned(&rpc_now(
        &alice,
        &call("package", json!(["alice", "bob", "second"])),
    ));
    assert!(failed(&v).contains("another request"), "{v}");
    // /v1 and /runrpc share the one screen.
    alice
        .post(routes::PACKAGE, &json!({"to": "bob", "message": "third"}))
        .expect_error(409, "busy");
    assert_eq!(alice.contact("bob"), a0);
    assert_eq!(alice.screen().texts, shown.texts, "the first prompt stays");
    alice.tap("approve");
    let v = returned(&first.join().unwrap());
    assert_eq!(v["success"], json!(true), "{v}");
    alice.wait_no_prompt();
}

#[test]
fn calls_that_cannot_run_are_call_errors() {
    let (_d, alice, _bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let a0 = alice.contact("bob");
    for (body, says) in [
        (call("whoami", json!([])), "no such rpc method"),
        (call("teapot", json!([])), "no such rpc method"),
        (
            call("package", json!(["alice", "bob"])),
            "missing the argument message",
        ),
        (
            call("package", json!(["alice", "bob", "m", "x"])),
            "takes 3 arguments",
        ),
        (
            call("package", json!(["alice", "bob", 5])),
            "message must be a string",
        ),
        (
            json!({"method": "package", "args": ["alice", "bob", "m"], "kwargs": {"x": 1}}),
            "no argument x",
        ),
        (json!({"method": "package", "argz": []}), "not an rpc call"),
        (json!(["package", ["alice", "bob", "m"]]), "not an rpc call"),
        (
            call("save_next_ref", json!(["alice", "r", -3])),
            "whole number",
        ),
        (
            call("get_next_ref", json!(["mallory", "r"])),
            "must be \"alice\"",
        ),
        (
            call("get_next_ref", json!(["alice", "http://r/x"])),
            "names no relay",
        ),
    ] {
        let e = call_error(&rpc_now(&alice, &body));
        assert!(e.contains(says), "{body}: {e}");
    }
    let e = call_error(&alice.post_bytes(routes::RUNRPC, b"{not json"));
    assert!(e.contains("not an rpc call"), "{e}");
    // A uid that is not the owner where the original puts the owner.
    let v = returned(&rpc_now(
        &alice,
        &call("package", json!(["mallory", "bob", "m"])),
    ));
    assert!(failed(&v).contains("belongs to \"alice\""), "{v}");
    let v = returned(&rpc_now(
        &alice,
        &call(
            "unpackage",
            json!(["bob", "mallory", b64::encode(&[2u8; 40])]),
        ),
    ));
    assert!(failed(&v).contains("dst_uid must be \"alice\""), "{v}");
    // An unknown contact and a package that does not open: no prompt.
    let v = returned(&rpc_now(
        &alice,
        &call("package", json!(["alice", "carol", "m"])),
    ));
    assert!(failed(&v).contains("no pad for contact"), "{v}");
    let v = returned(&rpc_now(
        &alice,
        &call("unpackage", json!(["bob", "alice", "!!"])),
    ));
    assert!(failed(&v).contains("base64"), "{v}");
    assert_eq!(alice.contact("bob"), a0, "nothing was spent");
    // The front layer is the same as /v1's: its refusals keep /v1's shape.
    alice
        .get(routes::RUNRPC)
        .expect_error(405, "method_not_allowed");
    let body = serde_json::to_vec(&call("get_next_ref", json!(["alice", "r"]))).unwrap();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        routes::RUNRPC,
        body.len()
    );
    raw(alice.addr, head.as_bytes(), &body).expect_error(415, "unsupported_media_type");
    head = head.replace("Host: 127.0.0.1", "Host: localhost:9051");
    head = head.replace("text/plain", "application/json");
    raw(alice.addr, head.as_bytes(), &body).expect_error(421, "bad_host");
}

#[test]
fn a_stopping_device_refuses_calls_in_the_originals_shape() {
    let (_d, alice, _bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    // A prompt up when the stop begins is withdrawn: its call fails.
    let first = alice.spawn(
        "POST",
        routes::RUNRPC,
        call("package", json!(["alice", "bob", "first"])),
    );
    alice.wait_prompt("confirm-seal");
    let a0 = alice.contact("bob");
    alice.running().service().expect("unlocked").begin_stop();
    let v = returned(&first.join().unwrap());
    assert!(failed(&v).contains("stopping"), "{v}");
    // A new call is refused before anything else.
    let e = call_error(&rpc_now(
        &alice,
        &call("get_next_ref", json!(["alice", "r"])),
    ));
    assert!(e.contains("stopping"), "{e}");
    alice
        .post(routes::PACKAGE, &json!({"to": "bob", "message": "x"}))
        .expect_error(503, "cancelled");
    assert_eq!(
        alice.running().service().expect("unlocked").store().list()[0].send_left,
        a0.send_left,
        "nothing was spent"
    );
}

/// What a replay's `error` says (the `/v1` message of `replayed`).
const REPLAYED: &str =
    "this package's pad range was opened before: a replay; refused, nothing was used";

#[test]
fn replay_and_skip_flags() {
    let (d, alice, bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let mut sent = Vec::new();
    for m in ["message 1", "message 2", "message 3"] {
        let v = rpc_package(&bob, "bob", "alice", m, "approve");
        sent.push(v["package"].as_str().unwrap().to_string());
    }
    let v = rpc_unpackage(&alice, "bob", "alice", &sent[0], "approve");
    assert_eq!(
        (&v["message"], &v["skip_detected"]),
        (&json!("message 1"), &json!(false))
    );
    // A replay: refused without a prompt, reuse_detected, nothing spent.
    let before = alice.contact("bob");
    let v = returned(&rpc_now(
        &alice,
        &call("unpackage", json!(["bob", "alice", sent[0]])),
    ));
    assert_eq!(failed(&v), REPLAYED);
    assert_eq!(
        (&v["skip_detected"], &v["reuse_detected"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(alice.contact("bob"), before);
    alice.wait_audit("replay");
    // Message 3 before 2: skip_detected; then 2 opens without a flag.
    let v = rpc_unpackage(&alice, "bob", "alice", &sent[2], "approve");
    assert_eq!(
        v,
        json!({"success": true, "message": "message 3", "skip_detected": true, "reuse_detected": false})
    );
    let v = rpc_unpackage(&alice, "bob", "alice", &sent[1], "approve");
    assert_eq!(
        (&v["skip_detected"], &v["reuse_detected"]),
        (&json!(false), &json!(false))
    );
    // A forgery: refused, counted, not a replay.
    let mut forged = b64::decode(&sent[2]).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let v = returned(&rpc_now(
        &alice,
        &call("unpackage", json!(["bob", "alice", b64::encode(&forged)])),
    ));
    assert_eq!(failed(&v), REPLAYED);
    assert_eq!(
        v["reuse_detected"],
        json!(true),
        "its range was opened: a replay"
    );
    alice.stop();
    bob.stop();
    let kinds = audit_kinds(&d.alice);
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "started")
        .collect();
    assert_eq!(
        tail,
        [
            "started", "approved", "opened", "replay", "approved", "skipped", "opened", "approved",
            "opened", "replay", "stop",
        ]
    );
}

/// The events of a directory's audit log from `started` on, without times.
fn events(dir: &Path) -> Vec<Event> {
    audit::check(dir)
        .expect("audit log")
        .entries
        .into_iter()
        .map(|e| e.event)
        .skip_while(|e| !matches!(e, Event::Started { .. }))
        .collect()
}

/// One session, through `/v1` or through `/runrpc`: a rejected seal, three
/// approved ones, a refused open, the third opened first (skip), a replay,
/// a locked-out contact, an unknown contact.
fn session(alice: &Dev, bob: &Dev, original: bool) {
    let seal = |dev: &Dev, me: &str, to: &str, m: &str, button: &str| -> Option<String> {
        if original {
            let v = rpc_package(dev, me, to, m, button);
            v["package"].as_str().map(str::to_string)
        } else {
            let (r, _) = dev.answered(
                routes::PACKAGE,
                json!({"to": to, "message": m}),
                "confirm-seal",
                button,
            );
            (r.status == 200).then(|| r.ok::<PackageResponse>().package)
        }
    };
    let open = |dev: &Dev, me: &str, from: &str, p: &str, button: &str| {
        if original {
            rpc_unpackage(dev, from, me, p, button);
        } else {
            dev.answered(
                routes::UNPACKAGE,
                json!({"from": from, "package": p}),
                "confirm-open",
                button,
            );
        }
    };
    let no_prompt = |dev: &Dev, me: &str, from: &str, p: &str| {
        if original {
            rpc_now(dev, &call("unpackage", json!([from, me, p])));
        } else {
            dev.post(routes::UNPACKAGE, &json!({"from": from, "package": p}));
        }
    };
    assert_eq!(seal(bob, "bob", "alice", "not this", "reject"), None);
    let p: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|m| seal(bob, "bob", "alice", m, "approve").expect("sealed"))
        .collect();
    open(alice, "alice", "bob", &p[0], "reject");
    open(alice, "alice", "bob", &p[2], "approve");
    open(alice, "alice", "bob", &p[0], "approve");
    no_prompt(alice, "alice", "bob", &p[0]);
    // Forgeries at the next slot, as many as the lockout limit: refused
    // before any prompt, and they lock nothing out.
    let mut forged = b64::decode(&p[1]).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    for _ in 0..limits().lockout_failures {
        no_prompt(alice, "alice", "bob", &b64::encode(&forged));
    }
    open(alice, "alice", "bob", &p[1], "approve");
    if original {
        rpc_now(alice, &call("package", json!(["alice", "carol", "x"])));
    } else {
        alice.post(routes::PACKAGE, &json!({"to": "carol", "message": "x"}));
    }
}

#[test]
fn audit_entries_equal_the_v1_ones() {
    let pads = [pad("bob", "alice", Format::V3, SIZE)];
    let mut logs = Vec::new();
    for original in [false, true] {
        let (d, alice, bob) = two(&pads);
        session(&alice, &bob, original);
        alice.stop();
        bob.stop();
        logs.push((events(&d.alice), events(&d.bob)));
    }
    let kinds = |e: &[Event]| -> Vec<String> { e.iter().map(kind).collect() };
    assert_eq!(
        kinds(&logs[1].0),
        kinds(&logs[0].0),
        "alice: /runrpc audits what /v1 audits"
    );
    assert_eq!(logs[1], logs[0], "every field of every event is the same");
    assert!(
        kinds(&logs[0].0).iter().any(|k| k == "integrity_failure")
            && !kinds(&logs[0].0).iter().any(|k| k == "locked_out")
            && kinds(&logs[0].0).iter().any(|k| k == "skipped")
            && kinds(&logs[0].0).iter().any(|k| k == "replay")
            && kinds(&logs[0].1).iter().any(|k| k == "rejected"),
        "the session covers forgeries (no lockout), skip, replay and reject: {:?}",
        kinds(&logs[0].0)
    );
}

// ------------------------------------------- a stand-in original client ---

/// One HTTP/1.1 request as python-requests makes it (`Connection: close`,
/// `Host` from the URL), the whole reply read to the end.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    ctype: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if let Some(ct) = ctype {
        head.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("{method} {target}: reading the reply: {e}"));
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{method} {target}: no head in {:?}",
                String::from_utf8_lossy(&all)
            )
        });
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut body = all[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .expect("chunk size is hex");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 4 + size..];
        }
        body = out;
    }
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {target}: reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

/// `application/x-www-form-urlencoded`, as python-requests encodes `data=`.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The original client's behaviour, command for command: `send NAME TEXT`
/// and Enter (fetch), with its read position on the device.
struct Original {
    relay: SocketAddr,
    device: SocketAddr,
    user: String,
    nextref: u64,
}

impl Original {
    fn server_address(&self) -> String {
        format!("http://{}", self.relay)
    }

    /// The device RPC: raises (panics) where the original's RpcClient would.
    fn rpc(&self, method: &str, args: Value) -> Value {
        let body = serde_json::to_vec(&call(method, args)).unwrap();
        let (status, v) = http(
            self.device,
            "POST",
            routes::RUNRPC,
            Some("application/json"),
            &body,
        );
        assert_eq!(
            status, 200,
            "RpcException: Rpc server returned code {status}: {v}"
        );
        assert!(v.get("error").is_none(), "RpcException: {v}");
        v["return"].clone()
    }

    /// Start: check the relay, then the next ref as the original works it
    /// out (the smaller of the relay's and the device's, or whichever is
    /// there).
    fn start(relay: SocketAddr, device: SocketAddr, user: &str) -> Original {
        let mut c = Original {
            relay,
            device,
            user: user.to_string(),
            nextref: 0,
        };
        let (status, v) = http(relay, "GET", "/check", None, b"");
        assert_eq!((status, v), (200, json!({"status": "ok"})));
        let (status, v) = http(
            relay,
            "GET",
            &format!("/getnextref?recipient_uid={user}"),
            None,
            b"",
        );
        assert_eq!(status, 200, "{v}");
        let server = v["nextref"].as_u64();
        let device = c
            .rpc("get_next_ref", json!([user, c.server_address()]))
            .as_u64();
        c.nextref = match (server, device) {
            (None, None) => 0,
            (Some(s), None) => s,
            (None, Some(d)) => d,
            (Some(s), Some(d)) => s.min(d),
        };
        c
    }

    /// `send NAME TEXT`: package on the device, then the form POST.
    fn send(&self, to: &str, text: &str) -> Result<u64, String> {
        let r = self.rpc("package", json!([self.user, to, text]));
        if r["success"] != json!(true) {
            return Err(r["error"].as_str().unwrap_or("?").to_string());
        }
        let body = form(&[
            ("recipient_uid", to),
            ("sender_uid", &self.user),
            ("contents", r["package"].as_str().expect("package")),
        ]);
        let (status, v) = http(
            self.relay,
            "POST",
            "/send",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        );
        assert_eq!((status, &v["received"]), (200, &json!(true)), "{v}");
        Ok(v["ref"].as_u64().expect("ref"))
    }

    /// Enter: every message from the read position on, each unpackaged on
    /// the device; the position is saved on the device after each.
    /// Returns what the original prints, one line per message.
    fn fetch(&mut self, mut each: impl FnMut()) -> Vec<String> {
        let (status, v) = http(
            self.relay,
            "GET",
            &format!(
                "/getmessages?recipient_uid={}&start_ref={}",
                self.user, self.nextref
            ),
            None,
            b"",
        );
        assert_eq!(status, 200, "{v}");
        let mut out = Vec::new();
        for m in v["messages"].as_array().expect("messages") {
            self.nextref = m["ref"].as_u64().expect("ref") + 1;
            let saved = self.rpc(
                "save_next_ref",
                json!([self.user, self.server_address(), self.nextref]),
            );
            assert_eq!(saved, Value::Null);
            let from = m["sender_uid"].as_str().expect("sender_uid");
            let contents = m["contents"].as_str().expect("contents");
            each();
            let r = self.rpc("unpackage", json!([from, self.user, contents]));
            if r["skip_detected"] == json!(true) {
                out.push("WARNING: skip".to_string());
            }
            if r["reuse_detected"] == json!(true) {
                out.push("WARNING: reuse".to_string());
            }
            if r["success"] == json!(true) {
                out.push(format!(
                    "{from}: {}",
                    r["message"].as_str().expect("message")
                ));
            } else {
                out.push(format!(
                    "Failed to decode message from '{from}' ({})",
                    r["error"]
                ));
            }
        }
        out
    }
}

/// Run `f` (which asks the device for `prompts` approvals) on another
/// thread, approving each prompt on `dev`'s screen.
fn approving<T: Send>(dev: &Dev, screen: &str, prompts: usize, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(f);
        // Prompts are told apart by their id: the next may follow the last
        // before the screen has shown anything in between.
        let mut last = None;
        for i in 0..prompts {
            let t = dev.wait_screen(&format!("prompt {} of {prompts} ({screen})", i + 1), |t| {
                t.screen == screen
                    && t.prompt.is_some()
                    && t.prompt != last
                    && t.button("approve").is_some()
            });
            last = t.prompt;
            dev.tap("approve");
        }
        dev.wait_screen("the last prompt to leave the screen", |t| t.prompt != last);
        h.join().expect("the client thread")
    })
}

#[test]
fn the_original_client_talks_through_otc_relay() {
    let (d, alice_dev, bob_dev) = two(&[pad("bob", "alice", Format::V1, SIZE)]);
    let relay_dir = d.root.path().join("relay");
    let mut cfg = otc_relay::Config::new("127.0.0.1:0", &relay_dir);
    cfg.mischief = true;
    let relay = otc_relay::Relay::start(cfg).expect("start otc-relay");
    let r = relay.addr();

    let alice = Original::start(r, alice_dev.addr, "alice");
    let mut bob = Original::start(r, bob_dev.addr, "bob");
    // Nothing saved on the devices yet: both start at the relay's next ref.
    let (_, v) = http(r, "GET", "/getnextref?recipient_uid=bob", None, b"");
    assert_eq!(Some(bob.nextref), v["nextref"].as_u64());
    assert_eq!(alice.nextref, bob.nextref, "an empty relay");

    // alice -> bob, text with characters form encoding must carry.
    let text = "hi bob & co: 100% = ✓ +1";
    approving(&alice_dev, "confirm-seal", 1, || alice.send("bob", text)).expect("sent");
    let shown = approving(&bob_dev, "confirm-open", 1, || bob.fetch(|| {}));
    assert_eq!(shown, [format!("alice: {text}")]);
    // Nothing new: Enter again shows nothing and asks the device nothing.
    assert!(bob.fetch(|| panic!("no message to open")).is_empty());

    // bob -> alice, and alice's position is on her device.
    approving(&bob_dev, "confirm-seal", 1, || {
        bob.send("alice", "hello alice")
    })
    .expect("sent");
    let mut alice = alice;
    let shown = approving(&alice_dev, "confirm-open", 1, || alice.fetch(|| {}));
    assert_eq!(shown, ["bob: hello alice"]);
    let saved = alice.nextref;
    let again = Original::start(r, alice_dev.addr, "alice");
    assert_eq!(
        again.nextref, saved,
        "a restarted client resumes where it was"
    );

    // The relay drops alice's next message to bob: bob is warned.
    let (status, _) = http(
        r,
        "POST",
        "/mischief",
        Some("application/x-www-form-urlencoded"),
        form(&[("userid", "bob"), ("kind", "drop")]).as_bytes(),
    );
    assert_eq!(status, 200);
    approving(&alice_dev, "confirm-seal", 2, || {
        alice.send("bob", "lost").expect("sent");
        alice.send("bob", "after the loss").expect("sent");
    });
    let shown = approving(&bob_dev, "confirm-open", 1, || bob.fetch(|| {}));
    assert_eq!(shown, ["WARNING: skip", "alice: after the loss"]);

    // A client that forgot its position re-reads everything: the device
    // refuses each old package as a replay, without a prompt.
    let mut forgetful = Original {
        nextref: 0,
        ..Original::start(r, bob_dev.addr, "bob")
    };
    let shown = forgetful.fetch(|| {});
    assert_eq!(
        shown,
        [
            "WARNING: reuse",
            "Failed to decode message from 'alice' (\"this package's pad range was opened before: a replay; refused, nothing was used\")",
            "WARNING: reuse",
            "Failed to decode message from 'alice' (\"this package's pad range was opened before: a replay; refused, nothing was used\")",
        ]
    );
    alice_dev.stop();
    bob_dev.stop();
    let kinds = audit_kinds(&d.bob);
    assert_eq!(
        kinds.iter().filter(|k| *k == "replay").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "skipped"), "{kinds:?}");
}

/// Hostile bodies the review tried (a laptop or a page in its browser):
/// deep nesting, a web page's Origin, a uid in another case or with an
/// invisible character, a relay name in another case, an absurd ref. Each
/// is refused or kept within bounds, and no prompt is shown.
#[test]
fn hostile_calls_are_refused_without_a_prompt() {
    let (_d, alice, _bob) = two(&[pad("bob", "alice", Format::V3, SIZE)]);
    let a0 = alice.contact("bob");
    let deep = format!(
        r#"{{"method":"package","args":["alice","bob",{}"m"{}],"kwargs":{{}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(
        call_error(&alice.post_bytes(routes::RUNRPC, deep.as_bytes())).contains("not an rpc call")
    );
    for (src, dst) in [
        ("Alice", "bob"),
        ("alice\u{200b}", "bob"),
        ("alice", "alice"),
        ("bob", "alice"),
    ] {
        let v = returned(&rpc_now(&alice, &call("package", json!([src, dst, "m"]))));
        failed(&v);
    }
    let body = serde_json::to_vec(&call("package", json!(["alice", "bob", "m"]))).unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        routes::RUNRPC,
        body.len()
    );
    raw(alice.addr, head.as_bytes(), &body).expect_error(403, "forbidden_origin");
    let max = u64::MAX;
    returned(&rpc_now(
        &alice,
        &call("save_next_ref", json!(["alice", "http://R:1", max])),
    ));
    assert_eq!(
        returned(&rpc_now(
            &alice,
            &call("get_next_ref", json!(["alice", "http://R:1"]))
        )),
        json!(max)
    );
    assert_eq!(
        returned(&rpc_now(
            &alice,
            &call("get_next_ref", json!(["alice", "http://r:1"]))
        )),
        json!(max),
        "host names are case-insensitive: one relay written two ways has one read position"
    );
    assert_eq!(alice.contact("bob"), a0, "nothing was spent");
    assert!(
        !events(&alice.dir)
            .iter()
            .any(|e| matches!(e, Event::Approved { .. })),
        "no prompt was approved"
    );
}
