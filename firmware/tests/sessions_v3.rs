//! The spec's v3 sessions (`$OTC_VECTORS/v3/sessions-v3.json`, default
//! `../shared/vectors` beside the repository) replayed through two real
//! pad stores on real files: the pad is imported as side A on one store and
//! as side B on the other, and every event runs through the store's own
//! API. A seal gives exactly the session's package (or its refusal); an
//! open is first checked with `check_open` (what runs before the prompt:
//! a refused package is refused there, and a genuine one reports the
//! session's `skipped` count), then opened. A session whose `r` is weak is
//! refused at import (`weak_key`), which stands in for its `weak_key` seal
//! event: such a pad never becomes a contact.

use otc_device::pad::{OpenWarning, PadStore, Side};
use otc_proto::Format;
use serde_json::Value;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("OTC_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap_or_else(|| panic!("no {name}"))).unwrap()
}

fn sessions() -> Vec<Value> {
    let file = vectors_dir().join("v3").join("sessions-v3.json");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (set OTC_VECTORS)", file.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["sessions"].as_array().unwrap().clone()
}

/// Whether a store error code is the session's named refusal.
fn matches(code: &str, want: &str) -> bool {
    match want {
        "replayed" => code == "replay",
        // The store names why; the RPC calls all of these bad_package.
        "bad_package" => matches!(code, "bad_package" | "out_of_region" | "bad_tag"),
        "exhausted" => matches!(code, "pad_exhausted" | "too_large"),
        "weak_key" => code == "weak_key",
        _ => false,
    }
}

/// Replay one session; returns the number of events checked.
fn replay(s: &Value, root: &std::path::Path) -> usize {
    let note = s["note"].as_str().unwrap_or("");
    let pad = hex_field(s, "pad_hex");
    let split = s["split"].as_u64().unwrap();
    let a = PadStore::open_dir(root.join("a")).unwrap();
    let b = PadStore::open_dir(root.join("b")).unwrap();
    let events = s["events"].as_array().unwrap();
    let weak = events.iter().any(|e| e["error"] == "weak_key");
    let ia = a.import_pad_bytes("b", &pad, split, Side::A, Format::V3);
    let ib = b.import_pad_bytes("a", &pad, split, Side::B, Format::V3);
    if weak {
        for r in [ia, ib] {
            let e = r.expect_err("a pad with a weak r is refused at import");
            assert_eq!(e.code(), "weak_key", "{note}: {e}");
            assert!(e.to_string().contains("anyone could forge"), "{e}");
        }
        assert!(a.list().is_empty() && b.list().is_empty());
        return 1;
    }
    ia.unwrap();
    ib.unwrap();
    for (i, e) in events.iter().enumerate() {
        let at = format!("{note}: event {i} ({})", e["note"]);
        let side = e["side"].as_str().unwrap();
        let (me, partner) = match side {
            "A" => (&a, "b"),
            _ => (&b, "a"),
        };
        let want_err = e.get("error").and_then(Value::as_str);
        match e["op"].as_str().unwrap() {
            "seal" => {
                let message = hex_field(e, "message_hex");
                match (me.seal(partner, &message), want_err) {
                    (Ok(s), None) => {
                        assert_eq!(s.package, hex_field(e, "package_hex"), "{at}");
                        assert_eq!(s.cost as usize, message.len() + 16, "{at}");
                    }
                    (Err(err), Some(w)) => assert!(matches(err.code(), w), "{at}: {err}"),
                    (got, w) => panic!("{at}: seal gave {got:?}, the session says {w:?}"),
                }
            }
            "open" => {
                let package = hex_field(e, "package_hex");
                let before = me.meta(partner).unwrap();
                match want_err {
                    None => {
                        let check = me.check_open(partner, &package).unwrap();
                        let skipped = check
                            .warnings
                            .iter()
                            .map(|w| match w {
                                OpenWarning::Skipped { messages, .. } => *messages,
                            })
                            .sum::<u64>();
                        let want = e["skipped"].as_u64().unwrap();
                        assert_eq!(skipped, want, "{at}: skipped");
                        assert_eq!(me.meta(partner).unwrap(), before, "{at}: check spent");
                        let o = me.open(partner, &package).unwrap();
                        assert_eq!(o.message, hex_field(e, "message_hex"), "{at}");
                    }
                    Some(w) => {
                        let c = me.check_open(partner, &package).unwrap_err();
                        assert!(matches(c.code(), w), "{at}: check_open: {c}");
                        let o = me.open(partner, &package).unwrap_err();
                        assert!(matches(o.code(), w), "{at}: open: {o}");
                        assert_eq!(me.meta(partner).unwrap(), before, "{at}: a refusal spent");
                    }
                }
            }
            op => panic!("{at}: unknown op {op}"),
        }
    }
    events.len()
}

#[test]
fn every_v3_session_replays_through_two_pad_stores() {
    let all = sessions();
    assert!(all.len() >= 7, "{} sessions", all.len());
    let mut events = 0;
    for s in &all {
        let root = tempfile::tempdir().unwrap();
        events += replay(s, root.path());
    }
    assert!(events > 30, "{events} events");
}

/// The session replay can fail: a changed skipped count is caught.
#[test]
#[should_panic(expected = "skipped")]
fn a_changed_skipped_count_fails_the_replay() {
    let mut all = sessions();
    let s = all
        .iter_mut()
        .find(|s| {
            s["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["skipped"].as_u64().is_some_and(|k| k > 0))
        })
        .expect("a session with a skipped count");
    for e in s["events"].as_array_mut().unwrap() {
        if let Some(k) = e["skipped"].as_u64().filter(|&k| k > 0) {
            e["skipped"] = (k + 1).into();
        }
    }
    let root = tempfile::tempdir().unwrap();
    replay(s, root.path());
}
