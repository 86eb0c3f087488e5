//! The test kit's promises, checked through real devices and real HTTP:
//! a mesh's pads work between every pair, the thumb approves and rejects
//! through the real buttons, a prompt left alone times out, and a stopped
//! device starts again on its directory with its pads where they were.

use otc_proto::Format;
use otc_proto::rpc::{ErrorCode, PackageRequest, UnpackageRequest};
use otc_testkit::{Options, TestDevice, Thumb, mesh};
use std::time::Duration;

fn seal(dev: &TestDevice, to: &str, text: &str) -> Result<String, otc_rpc_client::ClientError> {
    dev.client()
        .package(&PackageRequest {
            to: to.into(),
            message: Some(text.into()),
            message_b64: None,
        })
        .map(|r| r.package)
}

fn open(dev: &TestDevice, from: &str, package: &str) -> String {
    dev.client()
        .unpackage(&UnpackageRequest {
            from: from.into(),
            package: package.into(),
        })
        .unwrap_or_else(|e| panic!("{} opens from {from}: {e}", dev.owner))
        .message
        .expect("a text message")
}

#[test]
fn every_pair_of_a_mesh_can_talk_and_the_thumb_approves() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = mesh(
        root.path(),
        &["alice", "bob", "carol"],
        64 << 10,
        Format::V3,
    );
    let devs: Vec<TestDevice> = ["alice", "bob", "carol"]
        .iter()
        .map(|o| TestDevice::start(&dirs[*o], o))
        .collect();
    for a in &devs {
        for b in &devs {
            if a.owner == b.owner {
                continue;
            }
            let text = format!("{} to {}", a.owner, b.owner);
            let package = seal(a, &b.owner, &text).expect("approved seal");
            assert_eq!(open(b, &a.owner, &package), text);
        }
    }
    // Six seals and six opens, each one prompt tapped by its owner.
    for d in &devs {
        assert_eq!(d.prompts_answered(), 4, "{}'s prompts", d.owner);
    }
}

#[test]
fn the_thumb_rejects_and_a_prompt_left_alone_times_out() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = mesh(root.path(), &["alice", "bob"], 64 << 10, Format::V3);
    let alice = TestDevice::start_with(
        &dirs["alice"],
        "alice",
        Options {
            prompt_timeout: Duration::from_millis(500),
            thumb: Thumb::Reject,
            ..Options::default()
        },
    );
    let before = alice.client().contacts().expect("contacts")[0].send_left;
    let e = seal(&alice, "bob", "no").expect_err("a rejected seal");
    assert_eq!(e.code(), Some(ErrorCode::Rejected), "{e}");
    alice.set_thumb(Thumb::Leave);
    let e = seal(&alice, "bob", "nobody taps").expect_err("a seal nobody answers");
    assert_eq!(e.code(), Some(ErrorCode::Timeout), "{e}");
    assert_eq!(
        alice.prompts_answered(),
        1,
        "only the rejected prompt was tapped"
    );
    let after = alice.client().contacts().expect("contacts")[0].send_left;
    assert_eq!(before, after, "a rejected or timed-out seal spends no pad");
}

#[test]
fn a_stopped_device_starts_again_where_it_was() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = mesh(root.path(), &["alice", "bob"], 64 << 10, Format::V1);
    let alice = TestDevice::start(&dirs["alice"], "alice");
    let bob = TestDevice::start(&dirs["bob"], "bob");
    let first = seal(&alice, "bob", "one").expect("seal");
    let left = alice.client().contacts().expect("contacts")[0].send_left;
    alice.stop();
    let alice = TestDevice::start(&dirs["alice"], "alice");
    assert_eq!(
        alice.client().contacts().expect("contacts")[0].send_left,
        left,
        "the restart continues where the last message ended"
    );
    let second = seal(&alice, "bob", "two").expect("seal after restart");
    assert_eq!(open(&bob, "alice", &first), "one");
    assert_eq!(open(&bob, "alice", &second), "two");
}

/// The thumb approves by itself, so nothing that ships may link the kit:
/// no crate of the workspace has it outside `[dev-dependencies]`.
#[test]
fn no_shipped_crate_depends_on_the_testkit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace manifest");
    let members: Vec<String> = workspace
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line")
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    assert!(members.len() >= 6, "members parsed: {members:?}");
    let mut checked = 0;
    for m in members.iter().filter(|m| *m != "testkit") {
        let manifest = std::fs::read_to_string(root.join(m).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{m}/Cargo.toml: {e}"));
        let mut section = String::new();
        for line in manifest.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                section = t.to_string();
            } else if t.starts_with("otc-testkit") {
                assert_eq!(
                    section, "[dev-dependencies]",
                    "{m}/Cargo.toml names otc-testkit under {section}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, members.len() - 1);
}

/// The stand-in original relay answers in the original's shapes: one
/// global ref (so a recipient's refs have gaps), form-encoded sends,
/// `complete` false when `maxcount` cuts the list, 4xx errors as
/// `{"error": STATUS, "message": TEXT}`.
#[test]
fn the_stand_in_original_relay_speaks_the_original_api() {
    use otc_rpc_client::Client;
    let relay = otc_testkit::original::Relay::start();
    let c = Client::new(relay.addr);
    let get = |path: &str| {
        let r = c.send("GET", path, None).expect("GET");
        (r.status, String::from_utf8(r.body).expect("utf-8"))
    };
    let send = |body: &str| {
        let r = c
            .send("POST", "/send", Some(body.as_bytes()))
            .expect("POST /send");
        (r.status, String::from_utf8(r.body).expect("utf-8"))
    };
    assert_eq!(get("/check"), (200, r#"{"status": "ok"}"#.into()));
    assert_eq!(
        send("sender_uid=alice&recipient_uid=bob&contents=hello+w%C3%B6rld%21"),
        (
            200,
            r#"{"received": true, "echo_tail": "llo w\u00f6rld!", "ref": 1}"#.into()
        )
    );
    send("sender_uid=alice&recipient_uid=carol&contents=x");
    send("sender_uid=carol&recipient_uid=bob&contents=y");
    assert_eq!(
        get("/getmessages?recipient_uid=bob&start_ref=0&maxcount=1"),
        (
            200,
            r#"{"recipient_uid": "bob", "count": 1, "messages": [{"ref": 1, "recipient_uid": "bob", "sender_uid": "alice", "contents": "hello w\u00f6rld!"}], "complete": false}"#
                .into()
        )
    );
    let (status, all) = get("/getmessages?recipient_uid=bob&start_ref=2");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&all).expect("json");
    assert_eq!(v["messages"][0]["ref"], 3, "bob's refs skip carol's: {all}");
    assert_eq!(v["complete"], true);
    assert_eq!(
        get("/getnextref?recipient_uid=bob"),
        (200, r#"{"nextref": 4}"#.into())
    );
    assert_eq!(
        get("/getmessages?recipient_uid=bob&start_ref=x"),
        (
            400,
            r#"{"error": 400, "message": "start_ref must be a number"}"#.into()
        )
    );
    assert_eq!(relay.messages().len(), 3);
    assert!(relay.requests().contains(&"POST /send".to_string()));
}

/// Issue 18: the kit makes encrypted data directories, locked until
/// unlocked with the kit's passphrase.
#[cfg(feature = "device")]
#[test]
fn the_kit_makes_locked_and_unlocked_data_directories() {
    use otc_testkit::device::{init_encrypted, open_unlocked, otc_device};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ann");
    let pf = init_encrypted(&dir, "Ann");
    let export = tmp.path().join("bob.otcpad");
    otc_device(
        &dir,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "8K",
            "--export",
            export.to_str().unwrap(),
            "--passphrase-file",
            pf.to_str().unwrap(),
        ],
    );
    // Locked: the store does not open without the key.
    let e = otc_device::PadStore::open_dir(&dir).unwrap_err();
    assert_eq!(e.code(), "passphrase_needed", "{e}");
    let store = open_unlocked(&dir);
    assert_eq!(store.contacts(), vec!["bob".to_string()]);
}
