//! Issue #7, "a stop wastes pad": the real `otc-device run` binary, stopped
//! by SIGTERM or SIGINT, gives the unused reservation back, withdraws a prompt (its
//! client gets `cancelled`), ends the audit log with a `stop` entry and
//! exits 0.
//!
//! The device runs on loopback with the emulator screen (feature
//! `emulator`), and the test approves prompts by tapping the emulator's
//! `/emu/touch` at the Approve button that `/emu/trace` reports. How long
//! each stop took is printed (`--nocapture`); the test only asserts that
//! the process exits within a generous 10 s, never a timing.
#![cfg(feature = "emulator")]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use otc_device::audit::{self, Event};
use otc_proto::Format;
use otc_proto::routes;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_otc-device");
/// Every wait in this file gives up after this long, saying what it
/// waited for.
const WAIT: Duration = Duration::from_secs(10);
const SIZE: u64 = 256 * 1024;

fn otc(data: &Path, args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run otc-device");
    assert!(
        o.status.success(),
        "otc-device {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A data directory owned by Alice with a pad for bob (Alice's side: the
/// first half to send).
fn data_dir() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("alice");
    otc(&data, &["init", "--owner", "Alice"]);
    let export = root.path().join("bob.otcpad");
    otc(
        &data,
        &[
            "pad",
            "new",
            "--contact",
            "bob",
            "--size",
            &SIZE.to_string(),
            "--format",
            "v3",
            "--export",
            export.to_str().expect("utf-8 path"),
        ],
    );
    root
}

fn send_left(data: &Path) -> u64 {
    let o = otc(data, &["pad", "list", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("pad list --json");
    v.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "bob"))
        .and_then(|c| c["send_left"].as_u64())
        .unwrap_or_else(|| panic!("no send_left for bob in {v}"))
}

/// The running binary and its two endpoints.
struct Device {
    child: Child,
    rpc: SocketAddr,
    emu: SocketAddr,
}

impl Drop for Device {
    fn drop(&mut self) {
        // Only if a test failed before the process ended.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` after `http://` in a line the binary prints.
fn addr_in(line: &str) -> Option<SocketAddr> {
    let rest = line.split("http://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

fn start(data: &Path) -> Device {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--display",
            "emulator",
            "--emulator-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start otc-device run");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut rpc, mut emu) = (None, None);
    let deadline = Instant::now() + WAIT;
    while rpc.is_none() || emu.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("gave up after {WAIT:?} waiting for `run` to print its endpoints")
        });
        if line.starts_with("RPC endpoint:") {
            rpc = addr_in(&line);
        } else if line.starts_with("emulator page:") {
            emu = addr_in(&line);
        }
    }
    let (Some(rpc), Some(emu)) = (rpc, emu) else {
        unreachable!("the loop ends when both are known")
    };
    Device { child, rpc, emu }
}

/// One request through the shared client; (status, JSON body or null).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    // A prompt may wait for the test's tap: the limit is generous.
    let reply = otc_rpc_client::Client::new(addr)
        .with_timeout(WAIT * 2)
        .send(method, path, body.as_deref().map(str::as_bytes))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

impl Device {
    fn trace(&self) -> Value {
        http(self.emu, "GET", "/emu/trace", None).1
    }

    fn wait_prompt(&self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.trace();
            if t["screen"] == "confirm-seal" {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "gave up after {WAIT:?} waiting for the seal prompt; the screen shows {t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Seal `message` for bob from another thread (it waits on a prompt).
    fn spawn_seal(&self, message: &str) -> JoinHandle<(u16, Value)> {
        let (addr, body) = (self.rpc, json!({"to": "bob", "message": message}));
        std::thread::spawn(move || http(addr, "POST", routes::PACKAGE, Some(&body)))
    }

    /// Seal `message`, tapping Approve until the request is answered (a
    /// tap before the button is armed is ignored by the screen).
    fn seal(&self, message: &str) -> (u16, Value) {
        let request = self.spawn_seal(message);
        let deadline = Instant::now() + WAIT;
        while !request.is_finished() {
            let t = self.trace();
            if let Some(b) = t["buttons"]
                .as_array()
                .and_then(|bs| bs.iter().find(|b| b["id"] == "approve"))
            {
                let num = |k: &str| b[k].as_u64().unwrap_or(0);
                let (x, y) = (num("x") + num("w") / 2, num("y") + num("h") / 2);
                http(
                    self.emu,
                    "POST",
                    "/emu/touch",
                    Some(&json!({"x": x, "y": y})),
                );
            }
            assert!(
                Instant::now() < deadline,
                "gave up after {WAIT:?} approving the seal; the screen shows {t}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        request.join().expect("seal thread")
    }

    /// Send `signal`, then wait (at most 10 s) for the exit; returns how
    /// long the stop took.
    fn terminate(mut self, signal: Signal) -> Duration {
        let began = Instant::now();
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("send the signal");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for otc-device") {
                assert_eq!(status.code(), Some(0), "a clean stop exits 0: {status}");
                return began.elapsed();
            }
            assert!(
                began.elapsed() < WAIT,
                "gave up after {WAIT:?} waiting for otc-device to exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn last_audit_event(data: &Path) -> Event {
    let c = audit::check(data).expect("read the audit log");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    c.entries.last().map(|e| e.event.clone()).expect("entries")
}

#[test]
fn sigterm_gives_the_unused_reservation_back() {
    let root = data_dir();
    let data = root.path().join("alice");
    let before = send_left(&data);
    // v3: the side less its 16-byte hash key r.
    assert_eq!(before, SIZE / 2 - 16);
    let dev = start(&data);
    let message = "one short message";
    let (status, reply) = dev.seal(message);
    assert_eq!(status, 200, "{reply}");
    let cost = Format::V3.pad_cost(message.len()) as u64;
    assert_eq!(reply["pad_left"].as_u64(), Some(before - cost), "{reply}");
    let took = dev.terminate(Signal::SIGTERM);
    eprintln!("clean stop after one seal took {} ms", took.as_millis());
    assert_eq!(
        send_left(&data),
        before - cost,
        "after a clean stop only the message's own pad is gone"
    );
    assert_eq!(last_audit_event(&data), Event::Stop);

    // The next start's send cursor continues exactly there (v3: the text
    // offset after the first message, and slot 1).
    let dev = start(&data);
    let (status, reply) = dev.seal(message);
    assert_eq!(status, 200, "{reply}");
    let text = message.len() as u64;
    assert_eq!(reply["index"].as_u64(), Some(text), "{reply}");
    let package = otc_proto::b64::decode(reply["package"].as_str().unwrap()).unwrap();
    assert_eq!(otc_proto::v3::parse(&package).unwrap().head.slot, 1);
    dev.terminate(Signal::SIGTERM);
    assert_eq!(send_left(&data), before - 2 * cost);
}

#[test]
fn sigint_withdraws_the_prompt_and_the_client_hears_cancelled() {
    let root = data_dir();
    let data = root.path().join("alice");
    let before = send_left(&data);
    let dev = start(&data);
    let request = dev.spawn_seal("never approved");
    dev.wait_prompt();
    // Ctrl-C in a terminal: the same clean stop.
    let took = dev.terminate(Signal::SIGINT);
    eprintln!("clean stop with a prompt up took {} ms", took.as_millis());
    let (status, reply) = request.join().expect("seal thread");
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (503, Some("cancelled")),
        "{reply}"
    );
    assert_eq!(send_left(&data), before, "nothing was spent");
    assert_eq!(last_audit_event(&data), Event::Stop);
}
