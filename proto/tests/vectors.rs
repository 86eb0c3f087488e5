//! Every vector in every `*.json` under `$OTC_VECTORS` (default
//! `../shared/vectors` beside the repository) *and its subfolders*.
//!
//! * `vectors` files (single packages) are checked both ways: sealing
//!   `message` gives `package`, and opening `package` gives `message`, or,
//!   for `valid: false`, is refused and releases nothing. v1 and v3 are
//!   live; every v2 entry must now be refused (v2 is withdrawn: its format
//!   number does not parse, and its package is not a v3 package).
//! * `sessions` files are replayed event by event on two fresh sides (A and
//!   B) sharing the session's pad: each seal must give exactly the package
//!   (or the named error), each open the message and the `skipped` count
//!   (or the named refusal). The replay is [`replay`], written once and
//!   also run on a deliberately changed session, which must fail.

use otc_proto::v3::{self, Head, Received, Region};
use otc_proto::{Format, ProtoError, v1};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn vectors_dir() -> PathBuf {
    match std::env::var_os("OTC_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

/// Every `*.json` under `dir`, subfolders included, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("cannot read vectors dir {}: {e}", d.display()));
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn hex_field(v: &Value, key: &str) -> Result<Vec<u8>, String> {
    let s = v[key]
        .as_str()
        .ok_or_else(|| format!("vector field {key} missing: {v}"))?;
    hex::decode(s).map_err(|e| format!("vector field {key} is not hex: {e}"))
}

fn key16(b: &[u8], what: &str) -> [u8; 16] {
    b.try_into()
        .unwrap_or_else(|_| panic!("{what} must be 16 bytes, is {}", b.len()))
}

#[derive(Default, Debug)]
struct Counts {
    valid: usize,
    invalid: usize,
    weak: usize,
    withdrawn: usize,
    sessions: usize,
    events: usize,
}

#[test]
fn every_vector_both_ways() {
    let dir = vectors_dir();
    let files = json_files(&dir);
    assert!(!files.is_empty(), "no *.json under {}", dir.display());
    let mut c = Counts::default();
    let mut v3_files = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read vectors");
        let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
        let name = file.display().to_string();
        match (doc.get("vectors"), doc.get("sessions")) {
            (Some(list), None) => {
                for v in list.as_array().expect("a `vectors` array") {
                    let what = format!("{name}: {}", v["note"]);
                    match v["format"].as_u64() {
                        Some(1) => check_v1(v, &what, &mut c),
                        Some(2) => check_v2_refused(v, &what, &mut c),
                        Some(3) => {
                            check_v3(v, &what, &mut c);
                        }
                        other => panic!("{what}: unknown format {other:?}"),
                    }
                }
            }
            (None, Some(list)) => {
                for s in list.as_array().expect("a `sessions` array") {
                    let what = format!("{name}: session {}", s["note"]);
                    let n = replay(s).unwrap_or_else(|e| panic!("{what}: {e}"));
                    c.sessions += 1;
                    c.events += n;
                }
            }
            _ => panic!("{name}: neither a `vectors` nor a `sessions` file"),
        }
        if name.contains("v3") {
            v3_files += 1;
        }
    }
    eprintln!("checked {c:?} in {} files", files.len());
    assert!(
        c.valid > 0 && c.invalid > 0,
        "need valid and tampered vectors"
    );
    assert!(
        c.sessions > 0,
        "no v3 sessions found under {}",
        dir.display()
    );
    assert!(v3_files >= 2, "expected the v3 folder's two files");
}

fn check_v1(v: &Value, what: &str, c: &mut Counts) {
    let index = v["index"].as_u64().expect("index");
    let message = hex_field(v, "message_hex").unwrap();
    let pad = hex_field(v, "pad_hex").unwrap();
    let package = hex_field(v, "package_hex").unwrap();
    assert_eq!(pad.len(), v1::pad_cost(message.len()), "{what}: pad length");
    let opened = v1::open(&package, &pad);
    if v1::is_weak_pad(&pad, message.len()) {
        // The shared "all-zero pad" vector: an erased pad would send the
        // message in clear under a known HMAC key; refused both ways.
        assert_eq!(v1::seal(index, &message, &pad), Err(ProtoError::WeakKey));
        assert_eq!(opened, Err(ProtoError::WeakKey), "{what}");
        c.weak += 1;
        return;
    }
    let sealed = v1::seal(index, &message, &pad).expect(what);
    if v["valid"].as_bool().expect("valid") {
        assert_eq!(sealed, package, "{what}: seal");
        assert_eq!(v1::read_index(&package), Ok(index), "{what}: index");
        assert_eq!(v1::verify(&package, &pad), Ok(()), "{what}: verify");
        assert_eq!(opened.as_deref(), Ok(&message[..]), "{what}: open");
        c.valid += 1;
    } else {
        assert_ne!(sealed, package, "{what}: tampered equals sealed");
        assert_eq!(opened, Err(ProtoError::BadTag), "{what}: open");
        assert_eq!(v1::verify(&package, &pad), Err(ProtoError::BadTag));
        c.invalid += 1;
    }
}

/// v2 is withdrawn: its format number does not parse, and its package,
/// offered to v3 with the v2 key bytes as `r` and `s`, is refused by the
/// marker before any tag work.
fn check_v2_refused(v: &Value, what: &str, c: &mut Counts) {
    assert_eq!("v2".parse::<Format>(), Err(ProtoError::Withdrawn));
    assert_eq!(
        serde_json::from_value::<Format>(Value::from("v2"))
            .unwrap_err()
            .to_string(),
        ProtoError::Withdrawn.to_string()
    );
    let message = hex_field(v, "message_hex").unwrap();
    let pad = hex_field(v, "pad_hex").unwrap();
    let package = hex_field(v, "package_hex").unwrap();
    let n = message.len();
    assert_eq!(pad.len(), n + 32, "{what}: v2 pad length");
    let r = key16(&pad[n..n + 16], "r");
    let s = key16(&pad[n + 16..], "s");
    let refused = v3::open(&package, &pad[..n], &r, &s);
    assert!(
        matches!(
            refused,
            Err(ProtoError::NotV3 { marker: 2 } | ProtoError::PackageTooShort { .. })
        ),
        "{what}: a v2 package must be refused, got {refused:?}"
    );
    assert!(
        Received::default()
            .check(Region::new(0, 1 << 20).unwrap(), &package)
            .is_err(),
        "{what}: a v2 package passed the v3 checks"
    );
    c.withdrawn += 1;
}

fn check_v3(v: &Value, what: &str, c: &mut Counts) {
    let head = Head {
        text: v["index"].as_u64().expect("index"),
        slot: u32::try_from(v["slot"].as_u64().expect("slot")).expect("slot fits u32"),
    };
    let message = hex_field(v, "message_hex").unwrap();
    let text_pad = hex_field(v, "text_pad_hex").unwrap();
    let r = key16(&hex_field(v, "r_hex").unwrap(), "r");
    let s = key16(&hex_field(v, "s_hex").unwrap(), "s");
    let package = hex_field(v, "package_hex").unwrap();
    let opened = v3::open(&package, &text_pad, &r, &s);
    if v3::is_weak_r(&r) {
        assert_eq!(
            v3::seal(head, &message, &text_pad, &r, &s),
            Err(ProtoError::WeakKey),
            "{what}: seal with a weak r"
        );
        assert_eq!(opened, Err(ProtoError::WeakKey), "{what}: open, weak r");
        assert!(
            !v["valid"].as_bool().expect("valid"),
            "{what}: weak but valid"
        );
        c.weak += 1;
        return;
    }
    let sealed = v3::seal(head, &message, &text_pad, &r, &s).expect(what);
    if v["valid"].as_bool().expect("valid") {
        assert_eq!(sealed, package, "{what}: seal");
        assert_eq!(v3::parse(&package).map(|p| p.head), Ok(head), "{what}");
        assert_eq!(opened.as_deref(), Ok(&message[..]), "{what}: open");
        c.valid += 1;
    } else {
        assert_ne!(sealed, package, "{what}: tampered equals sealed");
        assert!(
            matches!(opened, Err(ProtoError::BadTag | ProtoError::NotV3 { .. })),
            "{what}: tampered package not refused: {opened:?}"
        );
        c.invalid += 1;
    }
}

/// One side of a session: its region, its send state, and what it opened
/// of the partner's packages.
struct Side {
    region: Region,
    text: u64,
    slot: u64,
    received: Received,
}

/// The name a session gives an outcome.
fn code(e: &ProtoError) -> &'static str {
    match e {
        ProtoError::Replayed { .. } => "replayed",
        ProtoError::Exhausted => "exhausted",
        ProtoError::WeakKey => "weak_key",
        _ => "bad_package",
    }
}

fn key_at(pad: &[u8], span: v3::Span) -> [u8; 16] {
    key16(&pad[span.lo as usize..span.hi as usize], "key")
}

/// Replay one session on two fresh sides; the number of events checked,
/// or the first disagreement.
fn replay(s: &Value) -> Result<usize, String> {
    let pad = hex_field(s, "pad_hex")?;
    let size = pad.len() as u64;
    let split = s["split"].as_u64().ok_or("no split")?;
    let region = |side: &str| match side {
        "A" => Region::new(0, split),
        _ => Region::new(split, size),
    };
    let mut sides = std::collections::BTreeMap::new();
    for name in ["A", "B"] {
        let region = region(name).map_err(|e| e.to_string())?;
        sides.insert(
            name,
            Side {
                region,
                text: region.lo,
                slot: 0,
                received: Received::default(),
            },
        );
    }
    let events = s["events"].as_array().ok_or("no events")?;
    for (i, e) in events.iter().enumerate() {
        let at = format!("event {i} ({})", e["note"]);
        let side = e["side"].as_str().ok_or("no side")?;
        let want_err = e.get("error").and_then(Value::as_str);
        match e["op"].as_str() {
            Some("seal") => {
                let me = sides
                    .get_mut(side)
                    .ok_or_else(|| format!("{at}: side {side}"))?;
                let message = hex_field(e, "message_hex")?;
                let got = me
                    .region
                    .next(me.text, me.slot, message.len() as u64)
                    .and_then(|head| {
                        let t = head.text as usize;
                        let r = key_at(&pad, me.region.key_span());
                        let mask = me
                            .region
                            .slot_span(head.slot)
                            .ok_or(ProtoError::Exhausted)?;
                        let s = key_at(&pad, mask);
                        let package = v3::seal(head, &message, &pad[t..t + message.len()], &r, &s)?;
                        Ok((head, package))
                    });
                match (got, want_err) {
                    (Ok((head, package)), None) => {
                        let want = hex_field(e, "package_hex")?;
                        if package != want {
                            return Err(format!("{at}: sealed a different package"));
                        }
                        me.text = head.text + message.len() as u64;
                        me.slot += 1;
                    }
                    (Err(err), Some(w)) if code(&err) == w => {}
                    (got, w) => {
                        return Err(format!(
                            "{at}: seal gave {:?}, the session says {w:?}",
                            got.map(|(h, _)| h)
                        ));
                    }
                }
            }
            Some("open") => {
                let partner = if side == "A" { "B" } else { "A" };
                let from = sides[partner].region;
                let me = sides
                    .get_mut(side)
                    .ok_or_else(|| format!("{at}: side {side}"))?;
                let package = hex_field(e, "package_hex")?;
                let got = me.received.check(from, &package).and_then(|claim| {
                    let r = key_at(&pad, from.key_span());
                    let s = key_at(&pad, claim.mask);
                    v3::verify(&package, &r, &s)?;
                    let text = &pad[claim.text.lo as usize..claim.text.hi as usize];
                    let message = v3::decrypt(&package, text)?;
                    Ok((claim, message))
                });
                match (got, want_err) {
                    (Ok((claim, message)), None) => {
                        if message != hex_field(e, "message_hex")? {
                            return Err(format!("{at}: opened a different message"));
                        }
                        let skipped = me.received.skipped(claim.head.slot);
                        let want = e["skipped"].as_u64().ok_or("no skipped")?;
                        if skipped != want {
                            return Err(format!(
                                "{at}: skipped {skipped}, the session says {want}"
                            ));
                        }
                        me.received.record(&claim);
                    }
                    (Err(err), Some(w)) if code(&err) == w => {}
                    (got, w) => {
                        return Err(format!(
                            "{at}: open gave {:?}, the session says {w:?}",
                            got.map(|(c, _)| c)
                        ));
                    }
                }
            }
            other => return Err(format!("{at}: unknown op {other:?}")),
        }
    }
    Ok(events.len())
}

fn sessions() -> Vec<Value> {
    let file = json_files(&vectors_dir())
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "sessions-v3.json"))
        .expect("sessions-v3.json under $OTC_VECTORS");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["sessions"].as_array().unwrap().clone()
}

/// The replay is not a check that cannot fail: every changed `skipped`, a
/// changed package byte, an error named differently, and a dropped event
/// each make it fail.
#[test]
fn a_changed_session_event_fails() {
    let mut changed_skipped = 0;
    for s in sessions() {
        assert!(replay(&s).is_ok());
        let events = s["events"].as_array().unwrap();
        for (i, e) in events.iter().enumerate() {
            if let Some(k) = e.get("skipped").and_then(Value::as_u64) {
                let mut bad = s.clone();
                bad["events"][i]["skipped"] = Value::from(k + 1);
                let err = replay(&bad).expect_err("a changed skipped count passed");
                assert!(err.contains("skipped"), "{err}");
                changed_skipped += 1;
            }
            if let Some(w) = e.get("error").and_then(Value::as_str) {
                let mut bad = s.clone();
                let other = if w == "replayed" {
                    "bad_package"
                } else {
                    "replayed"
                };
                bad["events"][i]["error"] = Value::from(other);
                assert!(replay(&bad).is_err(), "a renamed error passed: {w}");
            }
            if e["op"] == "seal" && e.get("package_hex").is_some() {
                let mut bad = s.clone();
                let mut p = hex::decode(e["package_hex"].as_str().unwrap()).unwrap();
                let last = p.len() - 1;
                p[last] ^= 1;
                bad["events"][i]["package_hex"] = Value::from(hex::encode(p));
                assert!(replay(&bad).is_err(), "a changed package passed");
            }
        }
    }
    assert!(changed_skipped >= 10, "too few skipped counts to change");
}
