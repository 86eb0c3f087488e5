//! Issue #4, "Prove": the bad-input table. Every malformed request to the
//! running device over real HTTP gets its stable code and consumes nothing:
//! pad left to send and to receive, the contacts' records and the pad
//! files on disk are unchanged, and no prompt is shown where none should be
//! (the fake clock is frozen, so a request that put up a prompt would hang
//! until the client's read timeout; the audit log shows no prompt either).

mod common;

use common::device::*;
use otc_device::rpc::Limits;
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{ContactInfo, PackageResponse};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

const SIZE: u64 = 16 * 1024;

/// Everything "consumes nothing" means on one device.
#[derive(Debug, PartialEq)]
struct Snapshot {
    contacts: Vec<ContactInfo>,
    metas: Vec<otc_device::pad::ContactMeta>,
    pad_files: BTreeMap<PathBuf, Vec<u8>>,
    cursors: Option<Vec<u8>>,
}

fn snapshot(dev: &Dev) -> Snapshot {
    let service = dev.running().service().expect("unlocked");
    let store = service.store();
    let pads = dev.dir.join("pads");
    let mut pad_files = BTreeMap::new();
    for e in std::fs::read_dir(&pads).unwrap().flatten() {
        pad_files.insert(e.path(), std::fs::read(e.path()).unwrap());
    }
    Snapshot {
        contacts: dev.contacts(),
        metas: store
            .contacts()
            .iter()
            .map(|c| store.meta(c).unwrap())
            .collect(),
        pad_files,
        cursors: std::fs::read(dev.dir.join("cursors.json")).ok(),
    }
}

/// What a row sends.
enum Body {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
    /// `Transfer-Encoding: chunked`, no Content-Length.
    Chunked(Vec<u8>),
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
}

fn send(dev: &Dev, c: &Case) -> Resp {
    match &c.body {
        Body::Json(v) => {
            let b = serde_json::to_vec(v).unwrap();
            request(dev.addr, c.method, c.path, Some(&b))
        }
        Body::Bytes(b) => request(dev.addr, c.method, c.path, Some(b)),
        Body::Chunked(b) => {
            let head = format!(
                "{} {} HTTP/1.1\r\nHost: device\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                c.method, c.path
            );
            let mut body = Vec::new();
            for chunk in b.chunks(4096) {
                body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                body.extend_from_slice(chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            raw(dev.addr, head.as_bytes(), &body)
        }
    }
}

/// A v2 package head with `index`, then `n` bytes.
fn v2_at(index: u64, n: usize) -> String {
    let mut p = vec![2u8];
    p.extend_from_slice(&index.to_le_bytes()[..6]);
    p.extend(std::iter::repeat_n(0x5a, n));
    b64::encode(&p)
}

#[test]
fn bad_input_gets_its_code_and_consumes_nothing() {
    let d = dirs(&[
        pad("bob", "alice", Format::V3, SIZE),
        pad("bob-v1", "alice-v1", Format::V1, SIZE),
    ]);
    // Failed opens would lock Bob out after 5, and rate-limit him after
    // 10 a minute; this table wants to see each row's own code.
    let no_lockout = Limits {
        lockout_failures: 1000,
        refused_per_minute: 1000,
        ..limits()
    };
    let alice = Dev::start(&d.alice, "Alice", no_lockout.clone());
    let bob = Dev::start(&d.bob, "Bob", limits());
    // Genuine packages from Bob, one per format.
    let (r, _) = bob.seal("alice", "genuine v2");
    let v2 = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    let (r, _) = bob.seal("alice-v1", "genuine v1");
    let v1 = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    bob.stop();
    alice.get("/v1/cursor/relay1").ok::<serde_json::Value>();
    request(
        alice.addr,
        "PUT",
        "/v1/cursor/relay1",
        Some(br#"{"cursor":7}"#),
    )
    .ok::<serde_json::Value>();

    let max_msg = no_lockout.max_message_bytes;
    let max_body = no_lockout.max_body_bytes;
    let big_json = {
        let mut v = br#"{"to":"bob","message":""#.to_vec();
        v.extend(std::iter::repeat_n(b'a', max_body));
        v.extend_from_slice(br#""}"#);
        v
    };
    let pkg = |p: &[u8]| b64::encode(p);
    let open = |from: &str, package: String| json!({"from": from, "package": package});
    use Body::*;
    let seal = routes::PACKAGE;
    let unpack = routes::UNPACKAGE;
    let cases = vec![
        // ---- seal: the request itself
        Case {
            what: "not JSON",
            method: "POST",
            path: seal,
            body: Bytes(b"hello".to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "malformed JSON",
            method: "POST",
            path: seal,
            body: Bytes(br#"{"to":"bob","message":"hi""#.to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "empty body",
            method: "POST",
            path: seal,
            body: Bytes(Vec::new()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "JSON null",
            method: "POST",
            path: seal,
            body: Json(json!(null)),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "JSON array",
            method: "POST",
            path: seal,
            body: Json(json!(["bob", "hi"])),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "invalid UTF-8",
            method: "POST",
            path: seal,
            body: Bytes(b"{\"to\":\"bob\",\"message\":\"\xff\"}".to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "to is a number",
            method: "POST",
            path: seal,
            body: Json(json!({"to": 5, "message": "hi"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "to is null",
            method: "POST",
            path: seal,
            body: Json(json!({"to": null, "message": "hi"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message is a number",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": 5})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message is a list",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": ["hi"]})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message_b64 is a bool",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": true})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "unknown field",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": "hi", "note": "x"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "misspelt field",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "mesage": "hi"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "duplicate field",
            method: "POST",
            path: seal,
            body: Bytes(br#"{"to":"bob","to":"bob-v1","message":"hi"}"#.to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "missing to",
            method: "POST",
            path: seal,
            body: Json(json!({"message": "hi"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "neither message field",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "both message fields",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": "hi", "message_b64": "aGk="})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message_b64 not base64",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": "!!!!"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message_b64 unpadded",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": "aGk"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message_b64 url-safe",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": "__8="})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "message_b64 with spaces",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": "aG k="})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "contact name with a path",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "../bob", "message": "hi"})),
            status: 404,
            code: "unknown_contact",
        },
        Case {
            what: "empty contact name",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "", "message": "hi"})),
            status: 404,
            code: "unknown_contact",
        },
        // ---- seal: sizes
        Case {
            what: "message over the limit",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": "m".repeat(max_msg + 1)})),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "binary message over the limit",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message_b64": b64::encode(&vec![0u8; max_msg + 1])})),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "message bigger than the pad left",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob", "message": "m".repeat(SIZE as usize / 2 - 31)})),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "v1 message bigger than the pad left",
            method: "POST",
            path: seal,
            body: Json(json!({"to": "bob-v1", "message": "m".repeat(SIZE as usize / 4)})),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "body over the limit (Content-Length)",
            method: "POST",
            path: seal,
            body: Bytes(big_json.clone()),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "body over the limit (chunked)",
            method: "POST",
            path: seal,
            body: Chunked(big_json.clone()),
            status: 413,
            code: "too_large",
        },
        // ---- open: the request itself
        Case {
            what: "open: malformed JSON",
            method: "POST",
            path: unpack,
            body: Bytes(br#"{"from":"bob","package":"#.to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: package is a number",
            method: "POST",
            path: unpack,
            body: Json(json!({"from": "bob", "package": 5})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: package is a byte list",
            method: "POST",
            path: unpack,
            body: Json(json!({"from": "bob", "package": v2.clone()})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: unknown field",
            method: "POST",
            path: unpack,
            body: Json(json!({"from": "bob", "package": pkg(&v2), "index": 0})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: missing package",
            method: "POST",
            path: unpack,
            body: Json(json!({"from": "bob"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: missing from",
            method: "POST",
            path: unpack,
            body: Json(json!({"package": pkg(&v2)})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: package not base64",
            method: "POST",
            path: unpack,
            body: Json(open("bob", "%%%".into())),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: package base64 with a newline",
            method: "POST",
            path: unpack,
            body: Json(open("bob", {
                let mut s = pkg(&v2);
                s.insert(8, '\n');
                s
            })),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "open: unknown contact",
            method: "POST",
            path: unpack,
            body: Json(open("carol", pkg(&v2))),
            status: 404,
            code: "unknown_contact",
        },
        Case {
            what: "open: body over the limit (Content-Length)",
            method: "POST",
            path: unpack,
            body: Bytes(big_json.clone()),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "open: body over the limit (chunked)",
            method: "POST",
            path: unpack,
            body: Chunked(big_json.clone()),
            status: 413,
            code: "too_large",
        },
        // ---- open: the package
        Case {
            what: "empty package",
            method: "POST",
            path: unpack,
            body: Json(open("bob", String::new())),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "package cut to its head",
            method: "POST",
            path: unpack,
            body: Json(open("bob", pkg(&v2[..7]))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "package one byte short of a tag",
            method: "POST",
            path: unpack,
            body: Json(open("bob", pkg(&v2[..22]))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "package with a byte added",
            method: "POST",
            path: unpack,
            body: Json(open("bob", pkg(&[&v2[..], &[0]].concat()))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "package bigger than the sender's region",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at(SIZE / 2, SIZE as usize))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "index in the receiver's own region",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at(0, 40))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "index just below the sender's region",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at(SIZE / 2 - 1, 40))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "index past the end of the pad",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at(SIZE, 40))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "index running off the end of the pad",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at(SIZE - 10, 40))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "largest index",
            method: "POST",
            path: unpack,
            body: Json(open("bob", v2_at((1 << 48) - 1, 40))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "v1 package to a v2 contact",
            method: "POST",
            path: unpack,
            body: Json(open("bob", pkg(&v1))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "v2 package to a v1 contact",
            method: "POST",
            path: unpack,
            body: Json(open("bob-v1", pkg(&v2))),
            status: 400,
            code: "bad_package",
        },
        Case {
            what: "v1 package cut short",
            method: "POST",
            path: unpack,
            body: Json(open("bob-v1", pkg(&v1[..37]))),
            status: 400,
            code: "bad_package",
        },
        // ---- cursors
        Case {
            what: "cursor: not JSON",
            method: "PUT",
            path: "/v1/cursor/relay1",
            body: Bytes(b"7".to_vec()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: negative",
            method: "PUT",
            path: "/v1/cursor/relay1",
            body: Json(json!({"cursor": -1})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: a string",
            method: "PUT",
            path: "/v1/cursor/relay1",
            body: Json(json!({"cursor": "8"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: unknown field",
            method: "PUT",
            path: "/v1/cursor/relay1",
            body: Json(json!({"cursor": 8, "relay": "x"})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: body over the limit",
            method: "PUT",
            path: "/v1/cursor/relay1",
            body: Bytes(big_json.clone()),
            status: 413,
            code: "too_large",
        },
        Case {
            what: "cursor: relay name with a slash",
            method: "PUT",
            path: "/v1/cursor/a/b",
            body: Json(json!({"cursor": 8})),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: relay name too long",
            method: "GET",
            path: Box::leak(format!("/v1/cursor/{}", "r".repeat(129)).into_boxed_str()),
            body: Bytes(Vec::new()),
            status: 400,
            code: "bad_request",
        },
        Case {
            what: "cursor: empty relay name",
            method: "PUT",
            path: "/v1/cursor/",
            body: Json(json!({"cursor": 8})),
            status: 400,
            code: "bad_request",
        },
    ];

    let before = snapshot(&alice);
    let audit_before = alice.audit_kinds();
    let mut failures = Vec::new();
    for c in &cases {
        eprintln!("case: {}", c.what);
        let r = send(&alice, c);
        let code = r.error_code();
        if (r.status, code.as_str()) != (c.status, c.code) {
            failures.push(format!(
                "{}: expected {} {}, got {} {}",
                c.what, c.status, c.code, r.status, r.body
            ));
        }
        // Opening failures say nothing more than that.
        if c.code == "bad_package" {
            assert_eq!(
                r.json()["error"]["message"],
                "the package could not be opened",
                "{}",
                c.what
            );
        }
        assert_eq!(snapshot(&alice), before, "{} consumed something", c.what);
        assert_eq!(alice.screen().screen, "home", "{}: no prompt", c.what);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // No prompt was shown, and every failed open is on record.
    let kinds = alice.audit_kinds();
    let new: Vec<&str> = kinds[audit_before.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    for k in [
        "approved",
        "rejected",
        "timed_out",
        "cancelled",
        "sealed",
        "opened",
    ] {
        assert!(!new.contains(&k), "{k} in {new:?}");
    }
    // A well-formed package whose tag does not verify is a forgery
    // (refused before any prompt, and an alert).
    assert!(
        new.iter()
            .all(|k| *k == "limit_hit" || *k == "integrity_failure"),
        "{new:?}"
    );
    assert!(new.contains(&"limit_hit"));

    // After all that, both genuine packages still open.
    let (r, _) = alice.open("bob", &pkg(&v2));
    assert_eq!(
        r.ok::<otc_proto::rpc::UnpackageResponse>()
            .message
            .as_deref(),
        Some("genuine v2")
    );
    let (r, _) = alice.open("bob-v1", &pkg(&v1));
    assert_eq!(
        r.ok::<otc_proto::rpc::UnpackageResponse>()
            .message
            .as_deref(),
        Some("genuine v1")
    );
}

/// Issue #7, "A hostile web page": a page in the laptop's browser can send
/// cross-site `text/plain` POSTs, and with DNS rebinding read replies. None
/// of it reaches the handler or the screen: each is refused with its own
/// code, no prompt appears, nothing is consumed and nothing is audited. A
/// plain client (curl, or a port forward to `127.0.0.1:PORT`) works.
#[test]
fn a_hostile_web_page_is_refused_before_the_screen() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let before = snapshot(&alice);
    let audit_before = alice.audit_kinds();
    let seal = serde_json::to_vec(&json!({"to": "bob", "message": "attack"})).unwrap();
    let a = alice.addr;
    let post = |headers: &str| {
        format!(
            "POST /v1/package HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            seal.len()
        )
    };
    let get =
        |headers: &str| format!("GET /v1/contacts HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "cross-site text/plain POST",
            post(&format!("Host: {a}\r\nContent-Type: text/plain\r\n")),
            415,
            "unsupported_media_type",
        ),
        (
            "form-encoded POST",
            post(&format!(
                "Host: {a}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            )),
            415,
            "unsupported_media_type",
        ),
        (
            "POST without Content-Type",
            post(&format!("Host: {a}\r\n")),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain POST from a page on the device's own address",
            post(&format!(
                "Host: {a}\r\nOrigin: http://{a}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            )),
            415,
            "unsupported_media_type",
        ),
        (
            "DNS rebinding: GET /v1/contacts with Host evil.com",
            get("Host: evil.com\r\n"),
            421,
            "bad_host",
        ),
        (
            "DNS rebinding: JSON POST with Host evil.com and its own Origin",
            post(
                "Host: evil.com:9051\r\nOrigin: http://evil.com:9051\r\nContent-Type: application/json\r\n",
            ),
            421,
            "bad_host",
        ),
        ("no Host", get(""), 421, "bad_host"),
        (
            "a foreign Origin",
            post(&format!(
                "Host: {a}\r\nOrigin: http://evil.com\r\nContent-Type: application/json\r\n"
            )),
            403,
            "forbidden_origin",
        ),
        (
            "a foreign Origin reading contacts",
            get(&format!("Host: {a}\r\nOrigin: http://evil.com\r\n")),
            403,
            "forbidden_origin",
        ),
        (
            "another port on the same machine",
            get(&format!("Host: {a}\r\nOrigin: http://127.0.0.1:1\r\n")),
            403,
            "forbidden_origin",
        ),
        (
            "Origin null (sandboxed page, file://)",
            post(&format!(
                "Host: {a}\r\nOrigin: null\r\nContent-Type: application/json\r\n"
            )),
            403,
            "forbidden_origin",
        ),
    ];
    for (what, head, status, code) in &cases {
        let body: &[u8] = if head.starts_with("POST") { &seal } else { b"" };
        let r = raw(a, head.as_bytes(), body);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (*status, *code),
            "{what}: {}",
            r.body
        );
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{what}");
        assert_eq!(alice.screen().screen, "home", "{what}: no prompt");
    }
    assert_eq!(
        snapshot(&alice),
        before,
        "a hostile page consumed something"
    );
    assert_eq!(
        alice.audit_kinds(),
        audit_before,
        "nothing reached the device"
    );

    // A plain client is served: an IP literal Host (a port forward to
    // 127.0.0.1:PORT says just that), with or without the device's own
    // Origin, JSON with a charset.
    let r = raw(a, get(&format!("Host: {a}\r\n")).as_bytes(), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = raw(
        a,
        get(&format!("Host: {a}\r\nOrigin: http://{a}\r\n")).as_bytes(),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = raw(a, get("Host: [::1]:2222\r\n").as_bytes(), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let curl = post("Host: 127.0.0.1:2222\r\nContent-Type: application/json; charset=utf-8\r\n");
    let seal2 = seal.clone();
    let h = std::thread::spawn(move || raw(a, curl.as_bytes(), &seal2));
    alice.wait_prompt("confirm-seal");
    alice.tap("approve");
    h.join().unwrap().ok::<PackageResponse>();
    alice.wait_no_prompt();
}
