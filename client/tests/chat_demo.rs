//! `make chat-demo` works: the real `scripts/chat-demo` (its data in a temp
//! dir, its ports free ones) starts a relay and two emulated devices; alice
//! sends to bob with the `otc` command the script printed while a tap on
//! her device's emulator page approves the seal, bob receives with his
//! printed command and a tap on his page, and SIGTERM to the script stops
//! all three processes.
//!
//! The script is given the binaries next to this test's `otc`
//! (`CHAT_DEMO_BIN_DIR`) rather than building: a build from inside a test
//! would relink `otc-device` under the tests running beside it.
//! `make unit` builds all three there (otc-device with the emulator page);
//! run alone, first `cargo build -p otc-device --features
//! otc-device/emulator -p otc-relay`.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the script may take to set up and start everything.
const READY: Duration = Duration::from_secs(60);
/// How long any other single wait may take.
const WAIT: Duration = Duration::from_secs(30);

/// The running script; stopped (SIGTERM, bounded) if the test fails.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: PathBuf,
    /// What the script started (pid, name), once known.
    started: Vec<(u32, String)>,
}

impl Demo {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most `READY`) for the script's "chat-demo: ready" line.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "chat-demo: ready" => return,
                Ok(l) => self.stdout.push(l),
                Err(_) => panic!(
                    "scripts/chat-demo printed no ready line within {READY:?} (or stopped); \
                     stdout: {:#?}\nstderr: {}",
                    self.stdout,
                    self.stderr()
                ),
            }
        }
    }

    /// The `otc` command the script printed for `user`: program and args.
    fn otc_command(&self, user: &str) -> Vec<String> {
        let tail = format!("--user {user}");
        let line = self
            .stdout
            .iter()
            .find(|l| l.trim_end().ends_with(&tail))
            .unwrap_or_else(|| panic!("no otc command for {user} in {:#?}", self.stdout));
        line.split_whitespace().map(String::from).collect()
    }

    fn terminate(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM the script");
    }

    /// Waits (at most `WAIT`) for the script to exit; its status code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for the script") {
                return st.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "scripts/chat-demo did not exit within {WAIT:?} of SIGTERM; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    /// A failed test leaves nothing running: the script is stopped, and
    /// whatever it started that outlives it gets SIGKILL.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.started = children(self.child.id());
            self.terminate();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for (pid, name) in &self.started {
            // Only if that pid is still the same program.
            let now = std::fs::read_to_string(format!("/proc/{pid}/comm"));
            if now.is_ok_and(|c| c.trim_end() == name) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One HTTP request to the emulator page on `port`; status line and JSON
/// body.
fn page(port: u16, method: &str, path: &str, body: &str) -> (String, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the emulator page");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write the request");
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .expect("the emulator page did not finish its reply within 10 s");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a reply head");
    let status = head.lines().next().unwrap_or_default().to_string();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Waits (at most `WAIT`) until the device whose page is on `port` shows
/// `screen` with an armed Approve button, then taps it.
fn approve(port: u16, screen: &str) {
    let deadline = Instant::now() + WAIT;
    let (x, y) = loop {
        let (_, t) = page(port, "GET", "/emu/trace", "");
        let button = (t["screen"] == screen)
            .then(|| t["buttons"].as_array())
            .flatten()
            .and_then(|bs| bs.iter().find(|b| b["id"] == "approve"))
            .filter(|b| b["armed"] != false);
        if let Some(b) = button {
            let at = |k: &str| b[k].as_u64().expect("a button coordinate");
            break (at("x") + at("w") / 2, at("y") + at("h") / 2);
        }
        if Instant::now() > deadline {
            panic!("no armed Approve on a {screen} screen within {WAIT:?}; the trace: {t}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, r) = page(
        port,
        "POST",
        "/emu/touch",
        &format!(r#"{{"x":{x},"y":{y}}}"#),
    );
    assert!(status.contains(" 200 "), "tap refused: {status} {r}");
    assert_eq!(r["ok"], true, "{r}");
    assert!(r.get("ignored").is_none(), "the tap did nothing: {r}");
}

/// The printed `otc` command plus `args`, with no config file, no OTC_*
/// environment and its outbox in `state`.
fn otc(cmd: &[String], args: &[&str], state: &Path) -> Child {
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(args)
        .env("NO_COLOR", "1")
        .env("OTC_CONFIG", "/dev/null")
        .env("XDG_STATE_HOME", state)
        .env_remove("OTC_OUTBOX")
        .env_remove("OTC_DEVICE")
        .env_remove("OTC_RELAY")
        .env_remove("OTC_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the printed otc command")
}

/// The children of process `pid` with their names, from /proc.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parens.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
            out.push((p, comm.to_string()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[test]
fn two_people_chat_through_the_demo_and_sigterm_stops_it_all() {
    let otc_bin = Path::new(env!("CARGO_BIN_EXE_otc"));
    let bin_dir = otc_bin.parent().expect("the binaries' directory");
    for b in ["otc-device", "otc-relay"] {
        assert!(
            bin_dir.join(b).exists(),
            "{b} is not built in {}: `make unit` builds it, or run \
             `cargo build -p otc-device --features otc-device/emulator -p otc-relay`",
            bin_dir.display()
        );
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("chat-demo");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let (relay, alice, alice_page, bob, bob_page) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/chat-demo");
    let stderr = tmp.path().join("chat-demo.stderr");
    let mut child = Command::new(&script)
        .env("CHAT_DEMO_DIR", &dir)
        .env("CHAT_DEMO_BIN_DIR", bin_dir)
        .env("CHAT_DEMO_RELAY", relay.to_string())
        .env("CHAT_DEMO_ALICE", alice.to_string())
        .env("CHAT_DEMO_ALICE_PAGE", alice_page.to_string())
        .env("CHAT_DEMO_BOB", bob.to_string())
        .env("CHAT_DEMO_BOB_PAGE", bob_page.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start scripts/chat-demo");
    let out = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut demo = Demo {
        child,
        lines,
        stdout: Vec::new(),
        stderr,
        started: Vec::new(),
    };
    demo.wait_ready();
    let text = demo.stdout.join("\n");
    for p in [alice_page, bob_page] {
        assert!(
            text.contains(&format!("http://127.0.0.1:{p}/")),
            "page {p} not printed: {text}"
        );
    }
    assert!(
        !dir.join("bob.otcpad").exists(),
        "the export file was not destroyed"
    );

    let state = tmp.path().join("state");
    let send = otc(
        &demo.otc_command("alice"),
        &["send", "bob", "hello from the demo"],
        &state,
    );
    approve(alice_page, "confirm-seal");
    let o = common::finish(send, &["send"], WAIT, "alice's send to bob");
    assert!(
        o.status.success(),
        "alice's send failed: {}",
        common::stderr(&o)
    );
    let recv = otc(&demo.otc_command("bob"), &["recv"], &state);
    approve(bob_page, "confirm-open");
    let o = common::finish(recv, &["recv"], WAIT, "bob's recv");
    assert!(
        o.status.success(),
        "bob's recv failed: {}",
        common::stderr(&o)
    );
    assert_eq!(common::stdout(&o), "alice: hello from the demo\n");

    let running = children(demo.child.id());
    demo.started = running.clone();
    let names: Vec<&str> = running.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        ["otc-device", "otc-device", "otc-relay"],
        "{running:?}"
    );
    demo.terminate();
    let code = demo.wait_exit();
    assert_eq!(code, Some(143), "stderr: {}", demo.stderr());
    for (pid, name) in &running {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} ({pid}) still runs after the script stopped"
        );
    }
    for p in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still answers"
        );
    }
    let err = demo.stderr();
    assert!(err.contains("chat-demo: stopped"), "{err}");
    assert!(!err.contains("killed"), "a process had to be killed: {err}");
}

/// Issue 15, defect 5: with `make run` still up, the demo said "ready"
/// (the taken port answered its checks), then "a process stopped by
/// itself". Now it checks its ports first and says which is taken, by
/// what, and what to do; nothing is started.
#[test]
fn a_taken_port_is_named_before_anything_starts() {
    let otc_bin = Path::new(env!("CARGO_BIN_EXE_otc"));
    let bin_dir = otc_bin.parent().expect("the binaries' directory");
    let tmp = tempfile::tempdir().expect("temp dir");
    // Someone else's server on alice's RPC port.
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/chat-demo");
    let child = Command::new(&script)
        .env("CHAT_DEMO_DIR", tmp.path().join("chat-demo"))
        .env("CHAT_DEMO_BIN_DIR", bin_dir)
        .env("CHAT_DEMO_RELAY", ports[0].to_string())
        .env("CHAT_DEMO_ALICE", taken.to_string())
        .env("CHAT_DEMO_ALICE_PAGE", ports[1].to_string())
        .env("CHAT_DEMO_BOB", ports[2].to_string())
        .env("CHAT_DEMO_BOB_PAGE", ports[3].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scripts/chat-demo");
    let o = common::finish(child, &["chat-demo"], READY, "the demo to refuse");
    let (out, err) = (common::stdout(&o), common::stderr(&o));
    assert_eq!(o.status.code(), Some(1), "stdout: {out}; stderr: {err}");
    assert!(
        !out.contains("ready") && !err.contains("ready"),
        "{out} {err}"
    );
    assert!(
        err.contains(&format!("port {taken} (alice's RPC) is taken by chat_demo"))
            && err.contains(&format!("(pid {})", std::process::id()))
            && err.contains("CHAT_DEMO_ALICE"),
        "{err}"
    );
    for p in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} answers: something was started"
        );
    }
    drop(squatter);
}
