//! Helpers for the RPC integration tests: whole devices (`device::start`)
//! with a memory display, a scripted touch source and a fake clock, talked
//! to over real HTTP on 127.0.0.1 through the shared client
//! (`otc-rpc-client`); raw sockets only for deliberately bad requests.
//! Starting a device, making data directories and the bounded waits are
//! the testkit's (`otc-testkit`), shared with the client's tests; what is
//! here adds the fake clock, the manual taps and the RPC helpers.
//!
//! Nothing here measures time. Real-time waits (for the screen to show a
//! prompt, for an audit entry to appear) poll with a bound and fail with a
//! message that says what never happened. The fake clock never moves by
//! itself, so a prompt can end only by a tap, a hang-up, or a test that
//! advances the clock: a request that shows a prompt nobody answers hangs,
//! and the client's read timeout turns that into a clear failure.

use otc_device::audit;
use otc_device::device::{Running, StartOptions};
use otc_device::platform::TestPlatform;
use otc_device::rpc::Limits;
use otc_proto::Format;
use otc_proto::routes;
use otc_proto::rpc::{ContactInfo, ContactsResponse};
use otc_rpc_client::Client;
use otc_ui::source::scripted::TouchScript;
use otc_ui::{FakeClock, ScreenTrace, TraceHandle};
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest real-time wait for something the device should do at once, and
/// the bounded polls (from the testkit, which runs every test device).
#[allow(unused_imports)] // not every test binary uses them
pub use otc_testkit::{WAIT, wait_until};
/// Longest wait for an HTTP reply (a prompt nobody answers never replies).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The prompt timeout the devices run with (the default).
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Wall clock for audit entries and alert times (fixed: tests never read it).
pub const WALL: u64 = 1_795_326_060;

// ---------------------------------------------------------------- HTTP ---

/// A reply: status and body.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {} {}", self.status, self.body))
    }

    /// Assert a success reply and parse it.
    pub fn ok<T: serde::de::DeserializeOwned>(&self) -> T {
        assert_eq!(self.status, 200, "expected success, got {}", self.body);
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply does not parse ({e}): {}", self.body))
    }

    /// Assert the error shape `{"error": {"code", "message"}}` (nothing
    /// else) and a non-2xx status; return the code.
    pub fn error_code(&self) -> String {
        assert!(
            !(200..300).contains(&self.status),
            "expected an error, got {} {}",
            self.status,
            self.body
        );
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "only \"error\" at top level: {}", self.body);
        let err = obj["error"].as_object().expect("\"error\" is an object");
        assert_eq!(err.len(), 2, "code and message only: {}", self.body);
        let code = err["code"].as_str().expect("code is a string").to_string();
        let message = err["message"].as_str().expect("message is a string");
        assert!(!message.trim().is_empty(), "empty message: {}", self.body);
        code
    }

    /// Assert this is error `code` with HTTP status `status`.
    pub fn expect_error(&self, status: u16, code: &str) {
        let got = self.error_code();
        assert_eq!(
            (self.status, got.as_str()),
            (status, code),
            "wrong error: {}",
            self.body
        );
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Connect with bounded timeouts (for raw, deliberately bad requests).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    s.set_write_timeout(Some(READ_TIMEOUT))
        .expect("write timeout");
    s
}

/// The shared client's request head for `method path` (with a
/// `Content-Length` when there is a body), for raw requests.
pub fn head(method: &str, path: &str, body_len: Option<usize>) -> String {
    otc_rpc_client::request_head(method, path, "device", body_len)
}

/// One request through the shared client; any reply.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
    Client::new(addr)
        .with_timeout(READ_TIMEOUT)
        .send(method, path, body)
        .map(Resp::from)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

impl From<otc_rpc_client::Response> for Resp {
    fn from(r: otc_rpc_client::Response) -> Resp {
        Resp {
            status: r.status,
            headers: r.headers,
            body: String::from_utf8(r.body).expect("reply body is UTF-8"),
        }
    }
}

/// Send `head` then `body` (from another thread, so a server that answers
/// before reading everything cannot deadlock us) and read the reply.
pub fn raw(addr: SocketAddr, head: &[u8], body: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(head).expect("write request head");
    let writer = if body.is_empty() {
        None
    } else {
        let mut w = s.try_clone().expect("clone socket");
        let body = body.to_vec();
        // The server may answer and close before reading it all: ignore
        // write errors, the reply says what happened.
        Some(std::thread::spawn(move || {
            let _ = w.write_all(&body);
        }))
    };
    let resp = read_response(&mut s);
    if let Some(w) = writer {
        // The socket is closed by then, or the write timeout ends it.
        let _ = w.join();
    }
    resp
}

/// Read one HTTP/1.1 response with the shared client's reader.
pub fn read_response(s: &mut TcpStream) -> Resp {
    otc_rpc_client::read_response(s)
        .map(Resp::from)
        .unwrap_or_else(|e| panic!("reading the reply: {e}"))
}

// ------------------------------------------------------------- devices ---

/// Run `otc-device` commands in this process (so pad creation and import
/// are audited exactly as on a real device).
#[allow(unused_imports)] // not every test binary uses it
pub use otc_testkit::otc_device as otc;

/// A pad between Alice and Bob: Alice's name for Bob, Bob's name for
/// Alice, the format and the size.
#[derive(Clone, Copy, Debug)]
pub struct PadSpec {
    pub at_alice: &'static str,
    pub at_bob: &'static str,
    pub format: Format,
    pub size: u64,
}

pub const fn pad(
    at_alice: &'static str,
    at_bob: &'static str,
    format: Format,
    size: u64,
) -> PadSpec {
    PadSpec {
        at_alice,
        at_bob,
        format,
        size,
    }
}

/// Two data directories, Alice's and Bob's, with owners and the given
/// pads (Alice made them, Bob imported them), not yet running.
pub struct Dirs {
    pub root: tempfile::TempDir,
    pub alice: PathBuf,
    pub bob: PathBuf,
}

pub fn dirs(pads: &[PadSpec]) -> Dirs {
    let root = tempfile::tempdir().expect("tempdir");
    let alice = root.path().join("alice");
    let bob = root.path().join("bob");
    otc_testkit::init(&alice, "Alice");
    otc_testkit::init(&bob, "Bob");
    for p in pads {
        otc_testkit::share_pad(
            root.path(),
            (&alice, p.at_alice),
            (&bob, p.at_bob),
            p.size,
            p.format,
        );
    }
    Dirs { root, alice, bob }
}

/// A device running on a data directory.
pub struct Dev {
    pub dir: PathBuf,
    pub owner: String,
    pub limits: Limits,
    pub clock: FakeClock,
    pub script: TouchScript,
    pub trace: TraceHandle,
    pub addr: SocketAddr,
    running: Option<Running>,
}

impl Dev {
    /// Start a device on `dir` on 127.0.0.1:0.
    pub fn start(dir: &Path, owner: &str, limits: Limits) -> Dev {
        Dev::start_with(dir, owner, limits, Default::default())
    }

    /// [`Dev::start`] with the pairing flows' stick, RNG and sizes.
    pub fn start_with(
        dir: &Path,
        owner: &str,
        limits: Limits,
        pairing: otc_device::pairing_flow::PairingOptions,
    ) -> Dev {
        let platform = TestPlatform::new(WALL, 0);
        let clock = platform.fake_clock();
        let (running, script) = otc_testkit::start_device(
            dir,
            StartOptions {
                prompt_timeout: PROMPT_TIMEOUT,
                limits: limits.clone(),
                // The requests below say `Host: device`, as a client would
                // after the owner allowed that name in otc.toml.
                allowed_hosts: vec!["device".into()],
                pairing,
                ..otc_testkit::start_options(owner)
            },
            Arc::new(platform),
        );
        Dev {
            dir: dir.to_path_buf(),
            owner: owner.to_string(),
            limits,
            clock,
            script,
            trace: running.ui.trace.clone(),
            addr: running.addr,
            running: Some(running),
        }
    }

    /// Stop the device (closes its store cleanly).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().expect("stop the device");
        }
    }

    /// Stop and start again on the same directory (a fresh fake clock).
    pub fn restart(mut self) -> Dev {
        self.shutdown();
        Dev::start(&self.dir.clone(), &self.owner.clone(), self.limits.clone())
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// What the screen shows now.
    pub fn screen(&self) -> ScreenTrace {
        self.trace.get()
    }

    /// Wait until the screen matches `pred`; returns that trace.
    pub fn wait_screen(&self, what: &str, pred: impl Fn(&ScreenTrace) -> bool) -> ScreenTrace {
        otc_testkit::wait_screen(&self.trace, what, pred)
    }

    /// Wait for a prompt (`confirm-seal` or `confirm-open`) with its buttons.
    pub fn wait_prompt(&self, screen: &str) -> ScreenTrace {
        self.wait_screen(&format!("the {screen} prompt"), |t| {
            t.screen == screen && t.button("approve").is_some() && t.button("reject").is_some()
        })
    }

    /// Wait until no prompt is on screen.
    pub fn wait_no_prompt(&self) -> ScreenTrace {
        self.wait_screen("the prompt to leave the screen", |t| {
            !t.screen.starts_with("confirm-")
        })
    }

    /// Tap the button `id` of the current screen.
    pub fn tap(&self, id: &str) {
        let t = self.trace.get();
        let b = t
            .button(id)
            .unwrap_or_else(|| panic!("no button {id:?} on screen: {t:#?}"));
        self.script.tap_button(b);
    }

    /// Send a request from another thread (it may wait on a prompt).
    pub fn spawn(&self, method: &str, path: &str, body: Value) -> JoinHandle<Resp> {
        let addr = self.addr;
        let (method, path) = (method.to_string(), path.to_string());
        std::thread::spawn(move || {
            let body = serde_json::to_vec(&body).expect("json");
            request(addr, &method, &path, Some(&body))
        })
    }

    /// Send a request that shows `prompt`, and answer it with `button`
    /// ("approve" or "reject"). Returns the reply and the prompt's trace.
    pub fn answered(
        &self,
        path: &str,
        body: Value,
        prompt: &str,
        button: &str,
    ) -> (Resp, ScreenTrace) {
        let h = self.spawn("POST", path, body);
        let shown = self.wait_prompt(prompt);
        self.tap(button);
        let resp = h.join().expect("request thread");
        self.wait_no_prompt();
        (resp, shown)
    }

    /// Seal `message` for `to`, approved on the screen.
    pub fn seal(&self, to: &str, message: &str) -> (Resp, ScreenTrace) {
        self.answered(
            routes::PACKAGE,
            serde_json::json!({"to": to, "message": message}),
            "confirm-seal",
            "approve",
        )
    }

    /// Open `package` from `from`, approved on the screen.
    pub fn open(&self, from: &str, package: &str) -> (Resp, ScreenTrace) {
        self.answered(
            routes::UNPACKAGE,
            serde_json::json!({"from": from, "package": package}),
            "confirm-open",
            "approve",
        )
    }

    /// A request that must not show a prompt: with the fake clock frozen,
    /// one that did would hang until the client's read timeout.
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        let body = serde_json::to_vec(body).expect("json");
        request(self.addr, "POST", path, Some(&body))
    }

    pub fn post_bytes(&self, path: &str, body: &[u8]) -> Resp {
        request(self.addr, "POST", path, Some(body))
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, None)
    }

    /// `GET /v1/contacts`.
    pub fn contacts(&self) -> Vec<ContactInfo> {
        self.get(routes::CONTACTS).ok::<ContactsResponse>().contacts
    }

    pub fn contact(&self, name: &str) -> ContactInfo {
        self.contacts()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no contact {name:?} in /v1/contacts"))
    }

    /// The audit event kinds so far.
    pub fn audit_kinds(&self) -> Vec<String> {
        audit_kinds(&self.dir)
    }

    /// Wait until the audit log has an event of `kind` (events are written
    /// just after the screen changes).
    pub fn wait_audit(&self, kind: &str) -> Vec<String> {
        wait_until(&format!("an audit event {kind:?}"), || {
            let k = self.audit_kinds();
            k.iter().any(|x| x == kind).then_some(k)
        })
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // A failed test must not hang in drop; errors do not matter here.
            let _ = r.stop();
        }
    }
}

/// The kinds of the audit log's entries, in order.
pub fn audit_kinds(dir: &Path) -> Vec<String> {
    audit::check(dir)
        .expect("read the audit log")
        .entries
        .iter()
        .map(|e| kind(&e.event))
        .collect()
}

/// The `kind` tag of an event as written in the log.
pub fn kind(e: &audit::Event) -> String {
    serde_json::to_value(e).expect("event json")["kind"]
        .as_str()
        .expect("kind")
        .to_string()
}

/// Limits for tests: the defaults unless a test says otherwise.
pub fn limits() -> Limits {
    Limits::default()
}
