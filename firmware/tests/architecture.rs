//! Two invariants of ARCHITECTURE.md that the code's shape must keep, checked
//! on the source tree itself (the other invariants have behavioural tests,
//! listed there):
//!
//! * the UI never sees pad bytes: otc-ui depends on neither otc-proto nor
//!   otc-device, so it has no type that could carry them;
//! * only the RPC endpoint's modules touch sockets: in otc-device, socket
//!   types, socket crates and socket calls are used in `front.rs`, `net.rs`
//!   and `rpc.rs` only. Checked on the code as `syn` parses it (renames,
//!   `self`, globs and renamed crates followed), not by a text search;
//! * the pad store (the crate otc-pad, `pad/`) names no HTTP, UI or
//!   command-line crate and touches no socket: its Cargo.toml lists none
//!   (and its normal dependencies are otc-proto and an allow-list of small
//!   crates), and no path in its source names one, read with `syn` the
//!   same way.

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

/// What touches a socket, as paths: the socket types, the socket crates,
/// and the C calls on sockets (also through `nix::libc`).
const SOCKET_PATHS: &[&str] = &[
    "std::net::TcpListener",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::os::unix::net",
    "socket2",
    "nix::sys::socket",
];
const SOCKET_CALLS: &[&str] = &[
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "send",
    "sendto",
    "sendmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "setsockopt",
    "getsockopt",
    "shutdown",
    "getpeername",
    "getsockname",
];
/// Socket type names, wherever a path names them (a re-export under
/// another module keeps its last segment).
const SOCKET_TYPES: &[&str] = &[
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
];

/// Whether the path `p` (segments joined by `::`, aliases expanded) is or
/// is inside one of the socket paths.
fn is_socket_path(p: &str) -> bool {
    let inside = |root: &str| p == root || p.starts_with(&format!("{root}::"));
    SOCKET_PATHS.iter().any(|r| inside(r))
        || SOCKET_CALLS
            .iter()
            .any(|c| inside(&format!("libc::{c}")) || inside(&format!("nix::libc::{c}")))
        || p.split("::").any(|segment| SOCKET_TYPES.contains(&segment))
}

/// Whether a glob import of `prefix` could bring a socket path into scope
/// under a short name.
fn glob_reaches_sockets(prefix: &str) -> bool {
    let reaches = |root: &str| root.starts_with(&format!("{prefix}::"));
    is_socket_path(prefix)
        || ["libc", "nix::libc"]
            .iter()
            .any(|c| *c == prefix || reaches(c))
        || SOCKET_PATHS.iter().any(|r| reaches(r))
}

/// The real uses of paths in one Rust source file, parsed with `syn`:
/// `use` trees (with `as` renames and `self`), `extern crate .. as`,
/// and every path in code, types, patterns and macro arguments that parse
/// as expressions. Comments and strings are not code, so they never count.
#[derive(Default)]
struct Uses {
    /// Short name -> the path it stands for (`use a::b as c`: c -> a::b).
    aliases: std::collections::HashMap<String, String>,
    /// Prefixes imported with `*`.
    globs: Vec<String>,
    /// Every path used, as written.
    paths: Vec<String>,
}

impl Uses {
    fn of(text: &str, renamed_crates: &[(String, String)]) -> Result<Uses, syn::Error> {
        let file = syn::parse_file(text)?;
        let mut uses = Uses::default();
        for (key, package) in renamed_crates {
            uses.aliases.insert(key.clone(), package.clone());
        }
        syn::visit::Visit::visit_file(&mut uses, &file);
        Ok(uses)
    }

    fn use_tree(&mut self, prefix: &str, tree: &syn::UseTree) {
        let join = |p: &str, s: &str| {
            if p.is_empty() {
                s.to_string()
            } else {
                format!("{p}::{s}")
            }
        };
        match tree {
            syn::UseTree::Path(p) => self.use_tree(&join(prefix, &p.ident.to_string()), &p.tree),
            syn::UseTree::Name(n) if n.ident == "self" => {
                let last = prefix.rsplit("::").next().unwrap_or(prefix).to_string();
                self.paths.push(prefix.to_string());
                self.aliases.insert(last, prefix.to_string());
            }
            syn::UseTree::Name(n) => {
                let full = join(prefix, &n.ident.to_string());
                self.paths.push(full.clone());
                self.aliases.insert(n.ident.to_string(), full);
            }
            syn::UseTree::Rename(r) => {
                let full = if r.ident == "self" {
                    prefix.to_string()
                } else {
                    join(prefix, &r.ident.to_string())
                };
                self.paths.push(full.clone());
                self.aliases.insert(r.rename.to_string(), full);
            }
            syn::UseTree::Glob(_) => self.globs.push(prefix.to_string()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }

    /// `p` with its first segment replaced by what it is an alias of, again
    /// and again (a bounded number of times: aliases may chain).
    fn expand(&self, p: &str) -> String {
        let mut p = p.trim_start_matches("::").to_string();
        for _ in 0..8 {
            let (first, rest) = p
                .split_once("::")
                .map_or((p.as_str(), None), |(f, r)| (f, Some(r)));
            match self.aliases.get(first) {
                Some(full) if full != first => {
                    p = match rest {
                        Some(r) => format!("{full}::{r}"),
                        None => full.clone(),
                    };
                }
                _ => break,
            }
        }
        p
    }

    /// The uses that touch sockets, expanded.
    fn touching_sockets(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .paths
            .iter()
            .map(|p| self.expand(p))
            .filter(|p| is_socket_path(p))
            .collect();
        found.extend(
            self.globs
                .iter()
                .map(|g| self.expand(g))
                .filter(|g| glob_reaches_sockets(g))
                .map(|g| format!("{g}::*")),
        );
        found
    }
}

impl<'ast> syn::visit::Visit<'ast> for Uses {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        // `use ::a::b` and `use a::b` name the same crate here.
        self.use_tree("", &u.tree);
    }

    fn visit_item_extern_crate(&mut self, c: &'ast syn::ItemExternCrate) {
        if let Some((_, rename)) = &c.rename {
            self.aliases.insert(rename.to_string(), c.ident.to_string());
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let joined = p
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect::<Vec<_>>()
            .join("::");
        self.paths.push(joined);
        syn::visit::visit_path(self, p);
    }

    /// Attributes name paths too: `#[derive(clap::Parser)]` names clap.
    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &a.meta {
            let parser = syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
            if let Ok(metas) = syn::parse::Parser::parse2(parser, list.tokens.clone()) {
                metas.iter().for_each(|m| self.visit_meta(m));
            }
        }
        syn::visit::visit_attribute(self, a);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(args) = syn::parse::Parser::parse2(parser, m.tokens.clone()) {
            args.iter().for_each(|e| self.visit_expr(e));
        } else if let Ok(items) = syn::parse2::<syn::File>(m.tokens.clone()) {
            self.visit_file(&items);
        }
    }
}

/// Dependencies of otc-device renamed in its Cargo.toml (`key = { package
/// = "..." }`), as crate names: a renamed `socket2` is still `socket2`.
fn renamed_crates() -> Vec<(String, String)> {
    let manifest = repo().join("firmware/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let value: toml::Value = text.parse().expect("firmware/Cargo.toml is TOML");
    ["dependencies", "dev-dependencies"]
        .iter()
        .filter_map(|s| value.get(s).and_then(|t| t.as_table()))
        .flat_map(|t| t.iter())
        .filter_map(|(key, v)| {
            let package = v.get("package")?.as_str()?;
            Some((key.replace('-', "_"), package.replace('-', "_")))
        })
        .collect()
}

/// The socket uses in `text`, parsed as a Rust file.
fn socket_uses(text: &str) -> Vec<String> {
    Uses::of(text, &renamed_crates())
        .unwrap_or_else(|e| panic!("not Rust: {e}\n{text}"))
        .touching_sockets()
}

/// The check below finds sockets however they are named: the ways this
/// test once missed (a `nix::sys::socket` call) and the ways a rename
/// could hide one. And it does not take addresses for sockets.
#[test]
fn socket_uses_are_found_however_they_are_named() {
    for touching in [
        "fn f(fd: i32) { let _ = nix::sys::socket::send(fd, b\"x\", MsgFlags::empty()); }",
        "use nix::sys::socket::send;",
        "use nix::sys::socket::{self as s}; fn f() { s::recv(); }",
        "use nix::sys as system; fn f() { system::socket::recv(); }",
        "use nix::sys::*; fn f() { socket::recv(); }",
        "use std::net as n; fn f() -> n::TcpStream { todo!() }",
        "use std::net::{SocketAddr, TcpListener as L};",
        "extern crate socket2 as s2; fn f() { s2::Socket::new(); }",
        "fn f() { let _ = ::socket2::Socket::new(); }",
        "fn f() { unsafe { nix::libc::connect(0, p, 0) }; }",
        "use nix::libc as c; fn f() { unsafe { c::accept(0, p, q) }; }",
        "fn f() { println!(\"{}\", std::net::TcpStream::connect(a).is_ok()); }",
        "fn f() -> std::io::Result<()> { let s: std::os::unix::net::UnixStream = todo!(); Ok(()) }",
        "fn f() { let _ = crate::net::TcpStream::connect(a); }",
    ] {
        assert!(!socket_uses(touching).is_empty(), "missed: {touching}");
    }
    for clean in [
        "use std::net::{IpAddr, Ipv4Addr, SocketAddr};",
        "// TcpStream in a comment\nfn f() -> &'static str { \"nix::sys::socket\" }",
        "fn socket() {} fn f() { socket(); crate::net::listen(b); }",
        "use nix::sys::signal::SigSet;",
    ] {
        assert_eq!(socket_uses(clean), Vec::<String>::new(), "{clean}");
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
            let touches = socket_uses(&text);
            let name = path.strip_prefix(&src).expect("under src").to_path_buf();
            if !touches.is_empty() && !allowed.iter().any(|a| Path::new(a) == name) {
                offenders.push(format!("{}: {touches:?}", name.display()));
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
        "sockets touched outside the endpoint's modules ({allowed:?}): {offenders:?}"
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

/// Crates the pad store must not name: HTTP (servers, clients, parsers),
/// the UI, the command line, and the crates built on them.
const NOT_FOR_THE_PAD_STORE: &[&str] = &[
    "http",
    "httparse",
    "hyper",
    "tiny_http",
    "reqwest",
    "ureq",
    "axum",
    "socket2",
    "otc_ui",
    "slint",
    "indicatif",
    "clap",
    "otc_device",
    "otc_relay",
    "otc_rpc_client",
    "otc_client",
    "otc_testkit",
];

/// What otc-pad may depend on (normal dependencies): otc-proto and small
/// crates. A new one is a decision, made here in view of the boundary.
const PAD_STORE_DEPENDENCIES: &[&str] = &[
    "otc_proto",
    "thiserror",
    "zeroize",
    "getrandom",
    "sha2",
    "serde",
    "serde_json",
    "hex",
    // The sealed export (pairing.rs): RustCrypto's AEAD and HKDF.
    "chacha20poly1305",
    "hkdf",
    // Encryption at rest (vault.rs, issue 18): RustCrypto's Argon2id, the
    // passphrase KDF that wraps the master key, and ChaCha20, the stream
    // cipher over pad bytes (seekable by offset; no AES on the Pi 3).
    "argon2",
    "chacha20",
    // sync_file_range, which std does not wrap (vfs.rs, start_writeback).
    "libc",
];

/// Every dependency of `manifest` in every section (normal, dev, build,
/// and the same under `[target.*]`), as crate names (`-` -> `_`, a
/// `package = ".."` rename followed), with the section it is in.
fn all_deps(manifest: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let value: toml::Value = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", manifest.display()));
    let sections = ["dependencies", "dev-dependencies", "build-dependencies"];
    let mut tables: Vec<(String, &toml::Table)> = sections
        .iter()
        .filter_map(|s| Some((s.to_string(), value.get(s)?.as_table()?)))
        .collect();
    if let Some(targets) = value.get("target").and_then(|t| t.as_table()) {
        for (cfg, t) in targets {
            for s in sections {
                if let Some(table) = t.get(s).and_then(|d| d.as_table()) {
                    tables.push((format!("target.{cfg}.{s}"), table));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (section, table) in tables {
        for (key, v) in table {
            let name = v.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            out.push((section.clone(), name.replace('-', "_")));
            if name != key {
                out.push((section.clone(), key.replace('-', "_")));
            }
        }
    }
    out
}

/// The paths in `text` (one Rust file) that name a crate the pad store
/// must not name, or touch a socket.
fn forbidden_for_the_pad_store(text: &str) -> Vec<String> {
    let uses = Uses::of(text, &[]).unwrap_or_else(|e| panic!("not Rust: {e}\n{text}"));
    let mut found: Vec<String> = uses
        .paths
        .iter()
        .chain(uses.globs.iter())
        .map(|p| uses.expand(p))
        .filter(|p| {
            let first = p.split("::").next().unwrap_or("");
            NOT_FOR_THE_PAD_STORE.contains(&first)
        })
        .collect();
    found.extend(uses.touching_sockets());
    found
}

/// The check below finds a forbidden crate however the source names it,
/// and does not take the store's own words for one.
#[test]
fn forbidden_crates_are_found_however_they_are_named() {
    for naming in [
        "use clap::Parser;",
        "use clap as c; fn f() { c::Command::new(\"x\"); }",
        "fn f() { let _ = ::httparse::Request::new(&mut []); }",
        "use otc_ui::format::bytes;",
        "fn f() -> String { otc_ui::format::bytes(1) }",
        "use http::*;",
        "fn f() { let _ = std::net::TcpStream::connect(a); }",
        "#[derive(clap::Parser)] struct A;",
    ] {
        assert!(
            !forbidden_for_the_pad_store(naming).is_empty(),
            "missed: {naming}"
        );
    }
    for clean in [
        "use otc_proto::rpc::ErrorCode; // clap::Parser in a comment",
        "fn f() -> &'static str { \"the screen shows it (otc_ui::format)\" }",
        "use crate::vfs::Vfs; fn http() {}",
    ] {
        assert_eq!(
            forbidden_for_the_pad_store(clean),
            Vec::<String>::new(),
            "{clean}"
        );
    }
}

#[test]
fn the_pad_store_names_no_http_ui_or_clap_crate() {
    let pad = repo().join("pad");
    let deps = all_deps(&pad.join("Cargo.toml"));
    assert!(
        deps.iter().any(|(_, d)| d == "otc_proto"),
        "pad/Cargo.toml does not list otc-proto: wrong file?"
    );
    let named: Vec<_> = deps
        .iter()
        .filter(|(_, d)| NOT_FOR_THE_PAD_STORE.contains(&d.as_str()))
        .collect();
    assert!(
        named.is_empty(),
        "pad/Cargo.toml lists crates the pad store must not depend on: {named:?}"
    );
    let unexpected: Vec<_> = deps
        .iter()
        .filter(|(s, d)| s == "dependencies" && !PAD_STORE_DEPENDENCIES.contains(&d.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "otc-pad depends on crates outside its allow-list (otc-proto and small crates; \
         see PAD_STORE_DEPENDENCIES): {unexpected:?}"
    );

    let mut stack: Vec<PathBuf> = ["src", "tests", "benches"]
        .iter()
        .map(|d| pad.join(d))
        .collect();
    let mut seen = 0;
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
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
            let found = forbidden_for_the_pad_store(&text);
            if !found.is_empty() {
                offenders.push(format!("{}: {found:?}", path.display()));
            }
        }
    }
    assert!(
        seen > 10,
        "found only {seen} source files under {}",
        pad.display()
    );
    assert!(
        offenders.is_empty(),
        "the pad store names HTTP, UI, command-line or socket crates: {offenders:?}"
    );
}
