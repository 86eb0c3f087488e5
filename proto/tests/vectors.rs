//! Every vector in every `*.json` of `$OTC_VECTORS` (default
//! `../shared/vectors` beside the repository), checked both ways: sealing
//! `message` with `pad` gives `package`, and opening `package` with `pad`
//! gives `message` — or, for `valid: false`, is rejected and releases nothing.

use otc_proto::{Format, ProtoError};
use serde_json::Value;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("OTC_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key} missing: {v}"));
    hex::decode(s).unwrap_or_else(|e| panic!("vector field {key} is not hex: {e}"))
}

#[test]
fn every_vector_both_ways() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read vectors dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json in {}", dir.display());

    let (mut valid, mut invalid, mut weak) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read vectors");
        let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
        let list = doc["vectors"].as_array().expect("a `vectors` array");
        for v in list {
            let name = format!("{}: {}", file.display(), v["note"]);
            let format = match v["format"].as_u64() {
                Some(1) => Format::V1,
                Some(2) => Format::V2,
                other => panic!("{name}: unknown format {other:?}"),
            };
            let index = v["index"].as_u64().expect("index");
            let message = hex_field(v, "message_hex");
            let pad = hex_field(v, "pad_hex");
            let package = hex_field(v, "package_hex");
            let is_valid = v["valid"].as_bool().expect("valid");

            assert_eq!(
                pad.len(),
                format.pad_cost(message.len()),
                "{name}: pad length"
            );
            let opened = format.open(&package, &pad);
            let is_weak = match format {
                Format::V2 => otc_proto::v2::is_weak_key(&pad[message.len()..]),
                // v1 refuses an erased pad too (issue 7 item 5): the shared
                // "all-zero pad" vector would otherwise send the message in
                // clear under a known HMAC key.
                Format::V1 => otc_proto::v1::is_weak_pad(&pad, message.len()),
            };
            if is_weak {
                // Known contradiction in the shared vectors: with an all-zero
                // pad, Poly1305's r is 0 and every tag is 0, so the "valid"
                // and the "tampered" package carry equally valid tags and no
                // function of (package, pad) can accept one and reject the
                // other. We refuse such keys (see v2::is_weak_key), which
                // satisfies "must be rejected" and refuses the degenerate
                // "valid" one too. Checked here, not skipped.
                assert_eq!(
                    format.seal(index, &message, &pad),
                    Err(ProtoError::WeakKey),
                    "{name}: seal with a weak key"
                );
                assert_eq!(
                    opened,
                    Err(ProtoError::WeakKey),
                    "{name}: open with a weak key"
                );
                weak += 1;
                continue;
            }
            let sealed = format.seal(index, &message, &pad).expect(&name);
            if is_valid {
                assert_eq!(sealed, package, "{name}: seal");
                assert_eq!(format.read_index(&package), Ok(index), "{name}: index");
                assert_eq!(opened.as_deref(), Ok(&message[..]), "{name}: open");
                valid += 1;
            } else {
                assert_ne!(
                    sealed, package,
                    "{name}: tampered package equals the sealed one"
                );
                assert!(
                    matches!(opened, Err(ProtoError::BadTag | ProtoError::NotV2)),
                    "{name}: tampered package was not rejected: {opened:?}"
                );
                invalid += 1;
            }
        }
    }
    eprintln!(
        "checked {valid} valid and {invalid} tampered vectors, {weak} with a refused weak key (v2 r = 0 or v1 erased pad)"
    );
    assert!(
        valid > 0 && invalid > 0,
        "need both valid and tampered vectors"
    );
}
