//! Two invariants of ARCHITECTURE.md that the code's shape must keep, checked
//! on the source tree itself (the other invariants have behavioural tests,
//! listed there):
//!
//! * the UI never sees pad bytes: otc-ui depends on neither otc-proto nor
//!   otc-device, so it has no type that could carry them;
//! * only the RPC endpoint's modules touch sockets: in otc-device, the
//!   socket types appear in `front.rs`, `net.rs` and `rpc.rs` only.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("firmware/ has a parent")
        .to_path_buf()
}

/// The dependency names of one `[section]` of a Cargo.toml, parsed as TOML.
fn deps(manifest: &Path, section: &str) -> Vec<String> {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let value: toml::Value = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", manifest.display()));
    value
        .get(section)
        .and_then(|t| t.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_ui_crate_cannot_name_pad_or_wire_types() {
    let manifest = repo().join("ui/Cargo.toml");
    let normal = deps(&manifest, "dependencies");
    assert!(
        !normal.is_empty(),
        "ui/Cargo.toml lists no dependencies at all: wrong file?"
    );
    for forbidden in ["otc-proto", "otc-device"] {
        assert!(
            !normal.iter().any(|d| d == forbidden),
            "otc-ui depends on {forbidden}: the UI must get view models, never pad or wire types"
        );
    }
}

#[test]
fn only_the_endpoint_modules_touch_sockets() {
    let allowed = ["front.rs", "net.rs", "rpc.rs"];
    let src = repo().join("firmware/src");
    let mut stack = vec![src.clone()];
    let mut seen = 0;
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let touches = ["TcpListener", "TcpStream", "UdpSocket", "socket2::"]
                .iter()
                .any(|t| text.contains(t));
            let name = path.strip_prefix(&src).expect("under src").to_path_buf();
            if touches && !allowed.iter().any(|a| Path::new(a) == name) {
                offenders.push(name.display().to_string());
            }
        }
    }
    assert!(
        seen > 10,
        "found only {seen} source files under {}",
        src.display()
    );
    assert!(
        offenders.is_empty(),
        "socket types outside the endpoint's modules ({allowed:?}): {offenders:?}"
    );
}

/// Issue #9, item 2: the command line resolves its flags and `otc.toml`
/// into plain options (`device::RunOptions`); the running device never
/// sees the command line's types, so `cli.rs` -> `device.rs` is one-way.
#[test]
fn the_device_module_does_not_name_the_command_line() {
    let path = repo().join("firmware/src/device.rs");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        text.contains("pub fn start"),
        "{} does not look like the device module",
        path.display()
    );
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for forbidden in ["cli::", "clap::", "RunArgs"] {
            assert!(
                !code.contains(forbidden),
                "device.rs line {} names {forbidden:?}: {line}",
                n + 1
            );
        }
    }
}
