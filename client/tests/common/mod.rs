//! Shared parts of the client's tests: a real `otc-relay` in-process on
//! 127.0.0.1, a hostile HTTP server scripted by the test, and the real
//! `otc` binary run with a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A real relay on 127.0.0.1:0 with its data in a temp dir.
pub struct TestRelay {
    pub relay: Option<otc_relay::Relay>,
    /// Where it listens (kept when stopped).
    pub at: SocketAddr,
    pub dir: tempfile::TempDir,
    pub mischief: bool,
}

impl TestRelay {
    pub fn start(mischief: bool) -> TestRelay {
        let dir = tempfile::tempdir().expect("relay temp dir");
        let mut cfg = otc_relay::Config::new("127.0.0.1:0", dir.path());
        cfg.mischief = mischief;
        // Tests make many requests quickly from one address.
        cfg.rate = 10_000.0;
        cfg.burst = 10_000.0;
        let relay = otc_relay::Relay::start(cfg).expect("start the relay");
        TestRelay {
            at: relay.addr(),
            relay: Some(relay),
            dir,
            mischief,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.at
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Stops it (the port is then closed: "relay down").
    pub fn stop(&mut self) {
        self.relay.take();
    }

    /// Queues a `/mischief` trick on `user`'s next message.
    pub fn mischief(&self, user: &str, kind: &str) {
        let body = format!("userid={user}&kind={kind}");
        let reply = raw_request(
            self.addr(),
            &format!(
                "POST /mischief HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "mischief refused: {reply}"
        );
    }
}

/// One request on a fresh connection; the whole reply as text.
pub fn raw_request(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server did not finish its reply within 10 s");
    String::from_utf8_lossy(&out).to_string()
}

/// What a hostile server does with one request.
pub type Script = dyn Fn(&str, &mut TcpStream) + Send + Sync;

/// A hostile HTTP server: each request's head (request line and headers)
/// goes to `script`, which writes whatever it likes. Stops when dropped.
pub struct Hostile {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    pub fn start(script: Arc<Script>) -> Hostile {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = conn else { continue };
                let script = script.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(1) => head.push(b[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    script(&head, &mut s);
                    // Close gently: a request body left unread would make
                    // the close a reset, which can reach the client before
                    // it reads the reply (a flake under load). Say we are
                    // done, then take what it still sends (bounded).
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut sink = [0u8; 4096];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Hostile { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Writes a 200 reply with `body`.
pub fn reply_json(s: &mut TcpStream, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A port nobody listens on.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Runs the real `otc` binary with `args` (and no config file, no OTC_*
/// environment), killed if it has not finished within `deadline`; `what`
/// says what was awaited.
pub fn otc(args: &[&str], deadline: Duration, what: &str) -> Output {
    let state = tempfile::tempdir().expect("a state dir for otc");
    let child = command(args)
        .env("XDG_STATE_HOME", state.path())
        .spawn()
        .expect("start otc");
    finish(child, args, deadline, what)
}

/// The real `otc` binary with `args`, no config file, no OTC_* environment
/// (and no default outbox: give `--outbox`).
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otc"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", "/nonexistent/otc-test-state")
        .env_remove("OTC_OUTBOX")
        .env("OTC_CONFIG", "/dev/null")
        .env_remove("OTC_DEVICE")
        .env_remove("OTC_RELAY")
        .env_remove("OTC_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` (started with `args`) at most `deadline`, killing it
/// and panicking with `what` if it has not finished by then.
pub fn finish(
    mut child: std::process::Child,
    args: &[&str],
    deadline: Duration,
    what: &str,
) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait for otc") {
            Some(_) => return child.wait_with_output().expect("otc output"),
            None if start.elapsed() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("otc output");
                panic!(
                    "otc {args:?} did not finish within {deadline:?} while waiting for {what}; stdout: {}; stderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Owners with real devices (otc-testkit), every pair sharing a pad, and
/// a real relay.
pub struct World {
    pub root: tempfile::TempDir,
    pub dirs: std::collections::BTreeMap<String, std::path::PathBuf>,
    pub devices: std::collections::BTreeMap<String, otc_testkit::TestDevice>,
    pub relay: TestRelay,
}

/// Pad size of the tests' pads.
pub const PAD: u64 = 1 << 16;

impl World {
    pub fn new(owners: &[&str], mischief: bool) -> World {
        Self::with(owners, mischief, otc_testkit::Options::default())
    }

    pub fn with(owners: &[&str], mischief: bool, opts: otc_testkit::Options) -> World {
        Self::in_dir(&std::env::temp_dir(), owners, mischief, opts)
    }

    /// A world whose data directories (and outboxes) are in a fresh
    /// directory under `parent` (a small tmpfs, to fill the devices' disk).
    pub fn in_dir(
        parent: &std::path::Path,
        owners: &[&str],
        mischief: bool,
        opts: otc_testkit::Options,
    ) -> World {
        let root = tempfile::tempdir_in(parent).expect("temp dir");
        let dirs = otc_testkit::mesh(root.path(), owners, PAD, otc_proto::Format::V3);
        let devices = owners
            .iter()
            .map(|o| {
                (
                    o.to_string(),
                    otc_testkit::TestDevice::start_with(&dirs[*o], o, opts.clone()),
                )
            })
            .collect();
        World {
            root,
            dirs,
            devices,
            relay: TestRelay::start(mischief),
        }
    }

    pub fn dev(&self, owner: &str) -> &otc_testkit::TestDevice {
        &self.devices[owner]
    }

    /// The flags `otc` needs to run as `owner`.
    pub fn flags(&self, owner: &str) -> Vec<String> {
        self.flags_with_relay(owner, &self.relay.url())
    }

    /// `owner`'s outbox file (kept in the world's temp dir).
    pub fn outbox(&self, owner: &str) -> std::path::PathBuf {
        self.root.path().join(format!("outbox-{owner}.jsonl"))
    }

    pub fn flags_with_relay(&self, owner: &str, relay: &str) -> Vec<String> {
        vec![
            "--outbox".into(),
            self.outbox(owner).to_string_lossy().to_string(),
            "--device".into(),
            self.dev(owner).url(),
            "--relay".into(),
            relay.to_string(),
            "--user".into(),
            owner.into(),
        ]
    }

    /// Runs `otc` as `owner` with `args` after the flags.
    pub fn otc(&self, owner: &str, args: &[&str], what: &str) -> Output {
        let flags = self.flags(owner);
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        otc(&all, Duration::from_secs(60), what)
    }

    /// The read position `owner`'s device keeps for the relay.
    pub fn cursor(&self, owner: &str) -> u64 {
        let name = otc_rpc_client::relay::RelayClient::from_addr(self.relay.addr()).cursor_name();
        self.dev(owner)
            .client()
            .cursor(&name)
            .expect("read the cursor")
    }

    /// The relay's next ref.
    pub fn next_ref(&self) -> u64 {
        otc_rpc_client::relay::RelayClient::from_addr(self.relay.addr())
            .next_ref("x")
            .expect("next ref")
    }

    /// `owner`'s contact `name` as the device lists it.
    pub fn contact(&self, owner: &str, name: &str) -> otc_proto::rpc::ContactInfo {
        self.dev(owner)
            .client()
            .contacts()
            .expect("contacts")
            .into_iter()
            .find(|c| c.name == name)
            .expect("the contact")
    }

    /// A library [`otc_client::chat::Chat`] for `owner`.
    pub fn chat(&self, owner: &str) -> otc_client::chat::Chat {
        otc_client::chat::Chat::new(
            self.dev(owner).client(),
            otc_rpc_client::relay::RelayClient::from_addr(self.relay.addr()),
            owner,
        )
    }
}

/// Waits for the message keyboard to `to` on `dev`, types `text` on it
/// (lowercase letters and spaces: `kb-char-X`, `kb-space`) and leaves it
/// there (`kb-done` seals it, `kb-cancel` cancels).
pub fn type_message(dev: &otc_testkit::TestDevice, to: &str, text: &str) {
    dev.wait_screen("the message keyboard", |t| {
        t.screen == "keyboard"
            && t.has_text(&format!("Message to {to}"))
            && t.button("kb-done").is_some()
    });
    for c in text.chars() {
        match c {
            ' ' => dev.tap("kb-space"),
            c => dev.tap(&format!("kb-char-{c}")),
        }
    }
    dev.wait_screen(&format!("{text:?} typed"), |t| {
        t.screen == "keyboard" && t.has_text(text)
    });
}

/// Asserts `o` exited with `code`, showing its output otherwise.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status; stdout: {}; stderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A proxy in front of a real relay that holds every `/send` for `delay`
/// before passing it on, and keeps the body of each `/send` it passed on
/// (a slow relay, as a user behind a slow link meets it). The client
/// sends `Connection: close`, so a request is one connection.
pub struct SlowSend {
    pub addr: SocketAddr,
    /// The `contents` of the `/send` requests, in arrival order.
    pub sends: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl SlowSend {
    pub fn start(relay: SocketAddr, delay: Duration) -> SlowSend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let sends = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, log) = (stop.clone(), sends.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || proxy_one(s, relay, delay, &log));
            }
        });
        SlowSend { addr, sends, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many `/send` requests carried `package`.
    pub fn sends_of(&self, package: &str) -> usize {
        self.sends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| *c == package)
            .count()
    }
}

/// The `contents` field of a form-encoded `/send` body, decoded.
fn form_contents(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(v) = text.split('&').find_map(|kv| kv.strip_prefix("contents=")) else {
        return String::new();
    };
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'%'),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn proxy_one(
    mut s: TcpStream,
    relay: SocketAddr,
    delay: Duration,
    log: &std::sync::Mutex<Vec<String>>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => req.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&req).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).is_err() {
        return;
    }
    if head.starts_with("POST /send") {
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(form_contents(&body));
        std::thread::sleep(delay);
    }
    req.extend_from_slice(&body);
    let Ok(mut up) = TcpStream::connect(relay) else {
        return;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    if up.write_all(&req).is_err() {
        return;
    }
    let mut reply = Vec::new();
    let _ = up.read_to_end(&mut reply);
    let _ = s.write_all(&reply);
}

impl Drop for SlowSend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}
