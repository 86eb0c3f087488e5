//! The `otc-device` command line, run as a real process.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn otc(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run otc-device")
}

/// `otc-device` with `input` on its standard input.
fn otc_stdin(data: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run otc-device");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the code");
    child.wait_with_output().expect("otc-device output")
}

/// The pairing code `pad new` printed.
fn code_in(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap_or_else(|| panic!("no pairing code in:\n{out}"))
        .to_string()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn fails(o: &Output, code: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains(&format!("error[{code}]")), "{err}");
    err
}

#[test]
fn help_reads_like_a_man_page() {
    let o = Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .arg("--help")
        .output()
        .unwrap();
    let h = ok(&o);
    for want in ["powers of 1024", "EXAMPLES", "EXIT STATUS", "--data", "pad"] {
        assert!(h.contains(want), "missing {want:?} in:\n{h}");
    }
    assert!(!h.contains("debug"), "debug commands are hidden:\n{h}");
    // Issue 15: run's help named a Rust module instead of the settings.
    let o = Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let h = ok(&o);
    assert!(!h.contains("otc_device::"), "Rust names in the help:\n{h}");
    for want in ["DIR/otc.toml", "[display]", "prompt_timeout_seconds"] {
        assert!(h.contains(want), "missing {want:?} in:\n{h}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .args(["pad", "new", "--help"])
        .output()
        .unwrap();
    let h = ok(&o);
    for want in [
        "SECRET",
        "--hwrng",
        "pairing code",
        "--export",
        "--format",
        "SP 800-90B",
        "v1|v3",
    ] {
        assert!(h.contains(want), "missing {want:?} in:\n{h}");
    }
    // Issue 15: the file bob imports is the one made for him.
    let o = Command::new(env!("CARGO_BIN_EXE_otc-device"))
        .arg("--help")
        .output()
        .unwrap();
    let h = ok(&o);
    for want in [
        "--export /media/usb/bob.otcpad",
        "pad import /media/usb/bob.otcpad --contact alice",
    ] {
        assert!(h.contains(want), "missing {want:?} in:\n{h}");
    }
}

#[cfg(any(debug_assertions, feature = "debug-cli"))]
#[test]
fn new_import_list_seal_open_remove() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let export = dir.path().join("bob.otcpad");
    let e = export.to_str().unwrap();
    let out = ok(&otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "64K",
            "--export",
            e,
        ],
    ));
    assert!(out.contains("destroy"), "{out}");
    let code = code_in(&out);
    // the export is private to its owner
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&export).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "export must not be readable by others");
    // The code is not in the file.
    let bytes = std::fs::read(&export).unwrap();
    let plain = code.replace('-', "");
    assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()));

    // No code, a wrong code, a typo: refused, nothing imported.
    fails(
        &otc(&b, &["pad", "import", e, "--contact", "alice"]),
        "code_needed",
    );
    let other = "0000-0000-0000-0000-0000-0000-0000";
    fails(
        &otc_stdin(
            &b,
            &["pad", "import", e, "--contact", "alice", "--code-file", "-"],
            other,
        ),
        "wrong_pairing_code",
    );
    let typo = format!(
        "{}{}",
        if code.starts_with('7') { '8' } else { '7' },
        &code[1..]
    );
    fails(
        &otc_stdin(
            &b,
            &["pad", "import", e, "--contact", "alice", "--code-file", "-"],
            &typo,
        ),
        "bad_pairing_code",
    );
    assert!(pad_files(&b).is_empty());
    // The code as a person types it, on standard input.
    let typed = format!("{}\n", code.to_lowercase().replace('-', " "));
    let out = ok(&otc_stdin(
        &b,
        &["pad", "import", e, "--contact", "alice", "--code-file", "-"],
        &typed,
    ));
    let fp_b = out
        .lines()
        .find_map(|l| l.strip_prefix("Fingerprint: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let pkg = ok(&otc(&a, &["debug", "seal", "--contact", "bob", "hi bob"]));
    let msg = ok(&otc(
        &b,
        &["debug", "open", "--contact", "alice", pkg.trim()],
    ));
    assert_eq!(msg.trim(), "hi bob");

    let json = ok(&otc(&b, &["pad", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &v[0];
    assert_eq!(c["fingerprint"], fp_b.as_str());
    let ja: serde_json::Value =
        serde_json::from_str(&ok(&otc(&a, &["pad", "list", "--json"]))).unwrap();
    assert_eq!(
        ja[0]["fingerprint"],
        fp_b.as_str(),
        "same fingerprint on both"
    );
    assert_eq!(c["name"], "alice");
    assert_eq!(c["side"], "B");
    assert_eq!(c["format"], "v3");
    assert_eq!(c["size"], 65536);
    // v3: the side less its 16-byte r; "hi bob" cost 6 + 16.
    assert_eq!(c["send_left"], 32768 - 16);
    assert_eq!(c["recv_left"], 32768 - 16 - 22);
    assert_eq!(c["send_messages_left"], (32768 - 16) / 116);
    let table = ok(&otc(&a, &["pad", "list"]));
    assert!(
        table.contains("bob") && table.contains("SEND LEFT"),
        "{table}"
    );

    ok(&otc(&a, &["pad", "remove", "bob"]));
    assert!(pad_files(&a).is_empty());
    let table = ok(&otc(&a, &["pad", "list"]));
    assert!(table.contains("No pads"), "{table}");
    fails(&otc(&a, &["pad", "remove", "bob"]), "unknown_contact");
}

#[test]
fn v1_and_split_options() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let export = dir.path().join("x.otcpad");
    ok(&otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "8K",
            "--split",
            "6K",
            "--format",
            "v1",
            "--export",
            export.to_str().unwrap(),
        ],
    ));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&otc(&a, &["pad", "list", "--json"]))).unwrap();
    assert_eq!(v[0]["format"], "v1");
    assert_eq!(v[0]["split"], 6144);
    assert_eq!(v[0]["send_left"], 6144);
}

#[test]
fn failed_creation_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let export = dir.path().join("bob.otcpad");
    let err = fails(
        &otc(
            &a,
            &[
                "pad",
                "new",
                "--contact",
                "bob",
                "--size",
                "1M",
                "--source",
                "/dev/zero",
                "--export",
                export.to_str().unwrap(),
            ],
        ),
        "health_test_failed",
    );
    assert!(err.contains("nothing was kept"), "{err}");
    assert!(!export.exists());
    assert!(!dir.path().join("bob.otcpad.tmp").exists());
    assert!(pad_files(&a).is_empty());
    let v: serde_json::Value =
        serde_json::from_str(&ok(&otc(&a, &["pad", "list", "--json"]))).unwrap();
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn usage_and_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let x = dir.path().join("x").to_str().unwrap().to_string();
    fails(
        &otc(
            &a,
            &[
                "pad",
                "new",
                "--contact",
                "bob",
                "--size",
                "12Q",
                "--export",
                &x,
            ],
        ),
        "bad_size",
    );
    fails(
        &otc(
            &a,
            &[
                "pad",
                "new",
                "--contact",
                "bob",
                "--size",
                "10",
                "--export",
                &x,
            ],
        ),
        "size_out_of_range",
    );
    // unknown format is a usage error (exit 2)
    let o = otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "1K",
            "--format",
            "v4",
            "--export",
            &x,
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    // v2 is withdrawn: refused with the plain sentence
    let o = otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "1K",
            "--format",
            "v2",
            "--export",
            &x,
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("withdrawn") && err.contains("make a new pad"),
        "{err}"
    );
    // a directory that is not ours
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("file"), b"x").unwrap();
    fails(&otc(&theirs, &["pad", "list"]), "data_dir_not_ours");
    // import of something that is not an export
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![1u8; 500]).unwrap();
    fails(
        &otc(
            &a,
            &["pad", "import", junk.to_str().unwrap(), "--contact", "c"],
        ),
        "export_corrupt",
    );
}

#[test]
fn import_legacy_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let store = dir.path().join("alice.bob.random.store");
    let meta = dir.path().join("alice.bob.random.metadata");
    let mut pad = vec![0u8; 4096];
    getrandom::fill(&mut pad).unwrap();
    std::fs::write(&store, &pad).unwrap();
    std::fs::write(
        &meta,
        r#"{"direction": 1, "split_index": 2048, "encrypt_index": 100, "n_bytes": 4096, "checksum": "zz"}"#,
    )
    .unwrap();
    let out = ok(&otc(
        &a,
        &[
            "pad",
            "import-legacy",
            store.to_str().unwrap(),
            meta.to_str().unwrap(),
            "--contact",
            "bob",
        ],
    ));
    assert!(out.contains("destroy"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&otc(&a, &["pad", "list", "--json"]))).unwrap();
    assert_eq!(v[0]["format"], "v1");
    assert_eq!(v[0]["origin"], "legacy");
    assert_eq!(v[0]["send_left"], 2048 - 100);
    // wrong size
    std::fs::write(&store, &pad[..4000]).unwrap();
    fails(
        &otc(
            &a,
            &[
                "pad",
                "import-legacy",
                store.to_str().unwrap(),
                meta.to_str().unwrap(),
                "--contact",
                "carol",
            ],
        ),
        "legacy_wrong_size",
    );
}

/// Issue 15: `init` advised only a `run` that fails on a laptop
/// (`display /dev/fb0: No such file or directory`); it also says how to
/// try the device there, with its screen in a browser.
#[test]
fn init_says_how_to_try_it_on_a_laptop() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&otc(d.path(), &["init", "--owner", "alice"]));
    assert!(out.contains("This device now belongs to alice."), "{out}");
    assert!(
        out.contains("On a laptop") && out.contains("make run"),
        "{out}"
    );
}

/// Issue 22: a pad file that does not match its record is shown as damaged
/// in `pad list` (text and `--json`), with no figures, and is not touched.
#[test]
fn pad_list_shows_a_truncated_pad_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let export = dir.path().join("bob.otcpad");
    let e = export.to_str().unwrap();
    ok(&otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            "64K",
            "--export",
            e,
        ],
    ));
    ok(&otc(
        &a,
        &[
            "pad",
            "new",
            "--contact",
            "carol",
            "--size",
            "64K",
            "--export",
            &format!("{e}.2"),
        ],
    ));
    let json = ok(&otc(&a, &["pad", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bob_id = v[0]["pad_id"].as_str().unwrap().to_string();
    let file = a.join("pads").join(format!("{bob_id}.pad"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(16 * 1024))
        .unwrap();

    let json = ok(&otc(&a, &["pad", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "bob");
    assert_eq!(v[0]["state"], "damaged", "{json}");
    assert_eq!(v[0]["send_left"], 0, "{json}");
    assert!(
        v[0]["damage"]
            .as_str()
            .unwrap_or_default()
            .contains("truncated"),
        "{json}"
    );
    assert_eq!(v[1]["name"], "carol");
    assert_eq!(v[1]["state"], "ok", "{json}");
    let table = ok(&otc(&a, &["pad", "list"]));
    let bob_row = table.lines().find(|l| l.starts_with("bob ")).unwrap();
    assert!(bob_row.contains("DAMAGED"), "{table}");
    assert!(
        !bob_row.contains("32.0 KiB"),
        "figures for a damaged pad: {table}"
    );
    assert!(
        table.contains("DAMAGED bob:") && table.contains("otc-device pad remove bob"),
        "{table}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 * 1024);
}

/// Issue 18: `init --passphrase-file` makes an encrypted data directory;
/// every `pad` and `debug` command on it needs the passphrase, from a file
/// or standard input, never an argument.
#[test]
fn an_encrypted_data_directory_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let pf = dir.path().join("pass");
    // A weak passphrase is refused with the reason, and nothing is made.
    std::fs::write(&pf, "hunter2\n").unwrap();
    let p = pf.to_str().unwrap();
    let err = fails(
        &otc(&a, &["init", "--owner", "Ann", "--passphrase-file", p]),
        "weak_passphrase",
    );
    assert!(err.contains("characters"), "{err}");
    assert!(!a.join("otc-device.key").exists());
    // A good one, with the device's real Argon2id parameters.
    std::fs::write(&pf, "violin orbit carpet lemon glacier\n").unwrap();
    ok(&otc(
        &a,
        &["init", "--owner", "Ann", "--passphrase-file", p],
    ));
    assert!(a.join("otc-device.key").exists());
    // Again: refused, it is encrypted already.
    fails(
        &otc(&a, &["init", "--owner", "Ann", "--passphrase-file", p]),
        "already_initialized",
    );
    let export = dir.path().join("bob.otcpad");
    let e = export.to_str().unwrap();
    let new = [
        "pad",
        "new",
        "--contact",
        "bob",
        "--size",
        "64K",
        "--export",
        e,
    ];
    // Without the passphrase: refused, with what to do.
    let err = fails(&otc(&a, &new), "passphrase_needed");
    assert!(err.contains("--passphrase-file"), "{err}");
    let mut with = new.to_vec();
    with.extend(["--passphrase-file", p]);
    let code = code_in(&ok(&otc(&a, &with)));
    // Standard input works too; a wrong passphrase is counted.
    let list = ["pad", "list", "--json", "--passphrase-file", "-"];
    let json = ok(&otc_stdin(&a, &list, "violin orbit carpet lemon glacier\n"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "bob");
    let err = fails(&otc_stdin(&a, &list, "violin orbit\n"), "wrong_passphrase");
    assert!(err.contains("1 failed"), "{err}");
    let pkg = ok(&otc(
        &a,
        &[
            "debug",
            "seal",
            "--contact",
            "bob",
            "hi bob",
            "--passphrase-file",
            p,
        ],
    ));
    assert!(!pkg.trim().is_empty());
    // The pad file's name and bytes hide the contact and the pad.
    let files = pad_files(&a);
    assert_eq!(files.len(), 1);
    let ours = std::fs::read(&files[0]).unwrap();
    // The partner's plain copy of the pad.
    let partner = dir.path().join("partner");
    ok(&otc_stdin(
        &partner,
        &["pad", "import", e, "--contact", "ann", "--code-file", "-"],
        &code,
    ));
    let pad = std::fs::read(&pad_files(&partner)[0]).unwrap();
    let windows: std::collections::HashSet<&[u8]> = pad
        .windows(16)
        .filter(|w| w.iter().any(|b| *b != 0))
        .collect();
    assert!(windows.len() > 60_000);
    assert!(!ours.windows(16).any(|w| windows.contains(w)));
    assert_eq!(ours.len(), pad.len(), "the same pad");
    // A plain directory refuses a passphrase it has no use for.
    let b = dir.path().join("b");
    ok(&otc(&b, &["pad", "list"]));
    fails(
        &otc(&b, &["pad", "list", "--passphrase-file", p]),
        "not_encrypted",
    );
}

/// `network-address`, what /init gives eth0 before each start: the
/// owner's address from `device.toml` (chosen on the screen) with the boot
/// partition's prefix length, else the boot partition's; a damaged
/// `device.toml` is said on standard error and the boot partition's used.
#[test]
fn network_address_prefers_the_owners_and_keeps_the_prefix() {
    let d = tempfile::tempdir().unwrap();
    let args = ["network-address", "--configured", "10.0.0.2/24"];
    assert_eq!(ok(&otc(d.path(), &args)).trim(), "10.0.0.2/24");
    otc_device::clear_settings::ClearSettings {
        address: Some("192.168.7.9".parse().unwrap()),
        ..Default::default()
    }
    .save(d.path())
    .unwrap();
    assert_eq!(ok(&otc(d.path(), &args)).trim(), "192.168.7.9/24");
    std::fs::write(d.path().join("device.toml"), "address = \"nonsense\"\n").unwrap();
    let o = otc(d.path(), &args);
    assert_eq!(ok(&o).trim(), "10.0.0.2/24");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("device.toml"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
