//! The emulator page in a real headless Chromium: the test clicks Approve on
//! the page (a real mouse event at the button's place in the page, handled by
//! the page's own JavaScript, which posts the touch) and sees the decision
//! arrive in Rust.
//!
//! Needs `chromium` (Debian package) or the binary named in `OTC_CHROMIUM`.
//! Without one the test fails, unless `OTC_SKIP_BROWSER=1`.
#![cfg(feature = "emulator")]

use otc_ui::emulator::Emulator;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::ScriptedTouch;
use otc_ui::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OTC_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A minimal Chrome DevTools Protocol client over one page's websocket.
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let hostport = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let stream = TcpStream::connect(&hostport).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (ws, _) = tungstenite::client(ws_url, stream).expect("websocket to chromium");
        Cdp { ws, next: 0 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        // Chromium sends events too; each read is bounded by the socket's
        // read timeout, and the whole wait by this deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "gave up after 30 s waiting for chromium's answer to {method}"
            );
            let m = self.ws.read().expect("reading from chromium");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        r["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.eval(expr) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what} ({expr})");
    }
}

fn launch(chromium: &PathBuf, url: &str) -> (Browser, u16) {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--window-size=1024,768",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let browser = Browser {
        child,
        _profile: profile,
    };
    let port_file = browser._profile.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(&port_file)
            && let Some(port) = s.lines().next().and_then(|l| l.trim().parse::<u16>().ok())
        {
            return (browser, port);
        }
        assert!(Instant::now() < deadline, "chromium did not open DevTools");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clicking_approve_in_headless_chromium_approves() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("OTC_SKIP_BROWSER").is_some_and(|v| v == "1") {
            eprintln!("no chromium found; skipped because OTC_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "this test needs a headless Chromium: apt-get install chromium \
             (or set OTC_CHROMIUM=/path/to/chrome, or OTC_SKIP_BROWSER=1 to skip)"
        );
    };

    // The UI on its own thread, as on the device, with the real clock.
    let (tx, rx) = std::sync::mpsc::channel();
    let ui_thread = std::thread::spawn(move || {
        let (display, screen) = MemoryDisplay::new(800, 480);
        let (touch, script) = ScriptedTouch::new();
        let ui = Ui::new(
            Box::new(display),
            Some(Box::new(touch)),
            Arc::new(SystemClock::new()),
            UiConfig::default(),
        )
        .unwrap();
        tx.send((ui.handle(), screen, script, ui.trace_handle()))
            .unwrap();
        ui.run().unwrap();
    });
    let (handle, screen, script, trace) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the UI thread did not start within 30 s");
    let emu = Emulator::start(
        "127.0.0.1:0".parse().unwrap(),
        screen,
        script,
        trace.clone(),
    )
    .unwrap();

    handle.set_home(HomeView {
        owner: "Alice".into(),
        ..HomeView::default()
    });
    let ticket = handle.show_prompt(Prompt::Seal {
        contact: "bob".into(),
        message_bytes: 100,
        cost_bytes: 132,
        pad_left_after: 1_000_000,
        timeout: Duration::from_secs(120),
        client_note: None,
        message: None,
    });

    let (_browser, port) = launch(&chromium, &emu.url());
    let ws_url = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list: Value =
                serde_json::from_str(&http_get(port, "/json/list")).unwrap_or_default();
            let page = list.as_array().and_then(|a| {
                a.iter()
                    .find(|t| {
                        t["type"] == "page"
                            && t["url"].as_str().is_some_and(|u| u.starts_with(&emu.url()))
                    })
                    .cloned()
            });
            if let Some(p) = page {
                break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "page target not found: {list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut cdp = Cdp::connect(&ws_url);

    // The page shows the prompt (its trace comes over the page's own fetch).
    cdp.wait_for(
        "the page to show confirm-seal",
        r#"document.readyState === "complete"
           && document.getElementById("screen").naturalWidth === 800
           && document.getElementById("trace").textContent.includes('"screen":"confirm-seal"')"#,
    );
    let t: ScreenTrace = serde_json::from_value(
        cdp.eval(r#"JSON.parse(document.getElementById("trace").textContent)"#),
    )
    .unwrap();
    assert!(t.has_text("EMULATOR"), "emulator marker missing: {t:?}");
    let approve = t
        .button("Approve")
        .expect("Approve on the page's trace")
        .clone();
    let (bx, by) = approve.center();
    let rect = cdp.eval(
        r#"(() => { const r = document.getElementById("screen").getBoundingClientRect();
                    return { left: r.left, top: r.top, width: r.width, height: r.height }; })()"#,
    );
    let px = rect["left"].as_f64().unwrap() + bx as f64 * rect["width"].as_f64().unwrap() / 800.0;
    let py = rect["top"].as_f64().unwrap() + by as f64 * rect["height"].as_f64().unwrap() / 480.0;

    // Let the prompt arm (it ignores taps in its first 400 ms): the trace
    // says when.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !trace.get().button("approve").is_some_and(|b| b.armed) {
        assert!(
            Instant::now() < deadline,
            "gave up after 20 s waiting for Approve to be armed: {}",
            trace.get().to_json()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for kind in ["mousePressed", "mouseReleased"] {
        cdp.call(
            "Input.dispatchMouseEvent",
            json!({ "type": kind, "x": px, "y": py, "button": "left", "clickCount": 1 }),
        );
    }
    assert_eq!(
        ticket.wait_timeout(Duration::from_secs(20)),
        Some(Decision::Approve),
        "the click on the page did not approve"
    );

    // And the page follows the screen back home over server-sent events.
    cdp.wait_for(
        "the page to show home again",
        r#"document.getElementById("trace").textContent.includes('"screen":"home"')"#,
    );

    drop(cdp);
    handle.quit();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ui_thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "gave up after 20 s waiting for the UI thread to quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ui_thread.join().expect("the UI thread panicked");
}
