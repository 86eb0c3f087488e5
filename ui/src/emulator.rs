//! The emulator page (feature `emulator` only; never in a release image).
//!
//! A tiny HTTP server on loopback that shows the live screen of a UI running
//! on a [`MemoryDisplay`](crate::sink::memory::MemoryDisplay) and turns
//! clicks into touches, for humans and for automation alike:
//!
//! | route                | what                                                  |
//! |----------------------|-------------------------------------------------------|
//! | `GET /`              | the page: live screen, clicks become touches, trace   |
//! | `GET /emu/screen.png`| the screen now                                        |
//! | `GET /emu/trace`     | the screen trace as JSON                              |
//! | `POST /emu/touch`    | `{"x":..,"y":..}` in screen pixels: press and release |
//! |                      | (answers once the UI handled it: see below)           |
//! | `GET /emu/events`    | server-sent events, one per screen change             |
//!
//! It binds loopback addresses only, answers only requests whose `Host` is a
//! loopback IP literal or `localhost` (no DNS rebinding: a name such as
//! `127.attacker.example` is refused, though it may resolve to 127.0.0.1),
//! refuses every request whose `Origin` is not its own page's (issue 23),
//! and takes touches only as
//! `application/json` (so a web page elsewhere cannot post one without a
//! CORS preflight, which this server never grants).
//!
//! A touch is answered only after the UI handled it, with what became of
//! it: `{"ok":true,"x":..,"y":..}` when it reached the screen, or with an
//! `ignored` field naming why it did nothing, e.g.
//! `{"ok":true,"x":..,"y":..,"ignored":"not_armed"}` for a tap on a prompt
//! whose buttons are not armed yet ([`crate::ignored`] lists the reasons;
//! the trace's `armed` says beforehand). A UI that has not handled the tap
//! within [`TAP_WAIT`] gets a 504 (the tap stays queued).

use crate::error::UiError;
use crate::sink::memory::MemoryScreen;
use crate::source::scripted::TouchScript;
use crate::ui::TraceHandle;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// How long `POST /emu/touch` waits for the UI to handle the tap.
pub const TAP_WAIT: Duration = Duration::from_secs(5);

/// A running emulator page. Stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Ctx {
    screen: MemoryScreen,
    touch: TouchScript,
    trace: TraceHandle,
    size: (u32, u32),
    stop: Arc<AtomicBool>,
}

impl Emulator {
    /// Serves the page on `addr` (a loopback address; port 0 picks one).
    pub fn start(
        addr: SocketAddr,
        screen: MemoryScreen,
        touch: TouchScript,
        trace: TraceHandle,
    ) -> Result<Emulator, UiError> {
        if !addr.ip().is_loopback() {
            return Err(UiError::Other(format!(
                "the emulator page listens on loopback only; refusing {addr} \
                 (use 127.0.0.1:PORT)"
            )));
        }
        let server = Server::http(addr)
            .map_err(|e| UiError::Other(format!("emulator page on {addr}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| UiError::Other("emulator page: no IP address".into()))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let frame = screen.frame();
        let ctx = Ctx {
            screen,
            touch,
            trace,
            size: (frame.width, frame.height),
            stop: stop.clone(),
        };
        let srv = server.clone();
        let thread = std::thread::Builder::new()
            .name("otc-emulator".into())
            .spawn(move || serve(srv, ctx))
            .map_err(|e| UiError::Other(format!("emulator thread: {e}")))?;
        Ok(Emulator {
            addr,
            stop,
            server,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address, e.g. `http://127.0.0.1:8088/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: Arc<Server>, ctx: Ctx) {
    while !ctx.stop.load(Ordering::Relaxed) {
        match server.recv() {
            Ok(req) => {
                let ctx = ctx.clone();
                // SSE streams are long-lived; everything else is quick.
                let _ = std::thread::Builder::new()
                    .name("otc-emulator-req".into())
                    .spawn(move || handle(req, &ctx));
            }
            Err(_) => break,
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn json_response(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
}

fn error(status: u16, msg: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(status, serde_json::json!({ "error": msg }).to_string())
}

/// `host[:port]` or `[v6][:port]` when the host is one the emulator
/// answers to: a loopback IP literal (127.0.0.0/8, `::1`) or `localhost`.
/// Anything else is a name a web page could have made resolve to
/// 127.0.0.1 (DNS rebinding): `127.attacker.example` and
/// `127.0.0.1.nip.io` are names, not addresses. Returns the host (lower
/// case) and the port (80 when none is given).
fn loopback_authority(s: &str) -> Option<(String, u16)> {
    let port = |p: Option<&str>| -> Option<u16> {
        match p {
            None => Some(80),
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok()
            }
            Some(_) => None,
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = inside.parse().ok()?;
        let p = match after {
            "" => None,
            a => Some(a.strip_prefix(':')?),
        };
        return ip.is_loopback().then_some((ip.to_string(), port(p)?));
    }
    let (host, p) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host = host.to_ascii_lowercase();
    let ok = host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    ok.then_some((host, port(p)?))
}

/// The emulator's rule for `Host` and `Origin` (the RPC endpoint's, for a
/// loopback server): exactly one `Host`, naming a loopback IP literal or
/// `localhost`; and no `Origin`, or exactly one that is this page's own
/// (`http://`, the same host and port). `Err` says why.
fn check_host_and_origin(req: &Request) -> Result<(), String> {
    let all = |name: &'static str| -> Vec<String> {
        req.headers()
            .iter()
            .filter(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().trim().to_string())
            .collect()
    };
    let hosts = all("Host");
    let [host] = hosts.as_slice() else {
        return Err("the emulator needs exactly one Host header".into());
    };
    let host = loopback_authority(host).ok_or_else(|| {
        format!("the emulator answers loopback addresses and localhost only, not Host {host:?}")
    })?;
    match all("Origin").as_slice() {
        [] => Ok(()),
        [origin] => {
            let own = origin
                .strip_prefix("http://")
                .and_then(loopback_authority)
                .is_some_and(|o| o == host);
            if own {
                Ok(())
            } else {
                Err(format!(
                    "Origin {origin:?} is not the emulator's own page: web pages may not use it"
                ))
            }
        }
        _ => Err("more than one Origin header".into()),
    }
}

#[derive(serde::Deserialize)]
struct TouchReq {
    x: u32,
    y: u32,
}

fn handle(mut req: Request, ctx: &Ctx) {
    if let Err(why) = check_host_and_origin(&req) {
        let _ = req.respond(error(403, &why));
        return;
    }
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let method = req.method().clone();
    let resp = match (method, path.as_str()) {
        (Method::Get, "/") => Response::from_string(page(ctx.size))
            .with_header(header("Content-Type", "text/html; charset=utf-8"))
            .with_header(header("Cache-Control", "no-store")),
        (Method::Get, "/emu/screen.png") => match ctx.screen.png() {
            Ok(png) => Response::from_data(png)
                .with_header(header("Content-Type", "image/png"))
                .with_header(header("Cache-Control", "no-store")),
            Err(e) => error(500, &e.to_string()),
        },
        (Method::Get, "/emu/trace") => json_response(200, ctx.trace.get().to_json()),
        (Method::Post, "/emu/touch") => touch(&mut req, ctx),
        (Method::Get, "/emu/events") => {
            events(req, ctx);
            return;
        }
        (_, "/" | "/emu/screen.png" | "/emu/trace" | "/emu/touch" | "/emu/events") => {
            error(405, "method not allowed")
        }
        _ => error(404, "no such page"),
    };
    let _ = req.respond(resp);
}

fn touch(req: &mut Request, ctx: &Ctx) -> Response<std::io::Cursor<Vec<u8>>> {
    let json = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .is_some_and(|h| h.value.as_str().starts_with("application/json"));
    if !json {
        return error(415, "send the touch as application/json");
    }
    let mut body = Vec::new();
    if req.as_reader().take(4096).read_to_end(&mut body).is_err() {
        return error(400, "could not read the request body");
    }
    let t: TouchReq = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(_) => return error(400, r#"expected {"x": <int>, "y": <int>} in screen pixels"#),
    };
    if t.x >= ctx.size.0 || t.y >= ctx.size.1 {
        return error(
            400,
            &format!(
                "({}, {}) is off the {}x{} screen",
                t.x, t.y, ctx.size.0, ctx.size.1
            ),
        );
    }
    let before = ctx.trace.taps_handled();
    ctx.touch.tap(t.x, t.y);
    match ctx.trace.wait_tap(before, t.x, t.y, TAP_WAIT) {
        Some(r) => {
            let mut j = serde_json::json!({ "ok": true, "x": t.x, "y": t.y });
            if let Some(why) = r.ignored {
                j["ignored"] = why.into();
            }
            json_response(200, j.to_string())
        }
        None => error(
            504,
            &format!(
                "the screen did not take the touch within {} s (it is still queued); \
                 is the device busy or stopped?",
                TAP_WAIT.as_secs()
            ),
        ),
    }
}

/// Server-sent events: `event: screen` with the generation, on every change.
fn events(req: Request, ctx: &Ctx) {
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                Cache-Control: no-store\r\nConnection: close\r\n\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut seen = 0;
    let mut idle = Duration::ZERO;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let g = ctx.screen.wait_for_change(seen, Duration::from_millis(500));
        let msg = if g != seen {
            seen = g;
            idle = Duration::ZERO;
            format!("event: screen\ndata: {{\"generation\":{g}}}\n\n")
        } else {
            idle += Duration::from_millis(500);
            if idle < Duration::from_secs(15) {
                continue;
            }
            idle = Duration::ZERO;
            ": keep-alive\n\n".to_string()
        };
        if w.write_all(msg.as_bytes()).and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

fn page((w, h): (u32, u32)) -> String {
    PAGE.replace("{W}", &w.to_string())
        .replace("{H}", &h.to_string())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>One Time Chat pad — emulator</title>
<style>
  body { background: #1b1f24; color: #e6e9ee; font: 15px/1.4 system-ui, sans-serif; margin: 24px; }
  h1 { font-size: 18px; font-weight: 600; margin: 0 0 12px; }
  .device { display: inline-block; padding: 18px; background: #050607; border-radius: 18px;
            box-shadow: 0 6px 24px rgba(0,0,0,.5); }
  #screen { display: block; width: {W}px; height: {H}px; cursor: pointer; image-rendering: pixelated;
            user-select: none; }
  #status { margin: 10px 0; color: #a9b4c0; }
  #trace { background: #0d1117; padding: 10px; border-radius: 8px; max-width: {W}px;
           white-space: pre-wrap; word-break: break-all; font: 12px/1.4 monospace; }
</style>
</head>
<body>
<h1>One Time Chat pad — emulator (click the screen to touch it)</h1>
<div class="device"><img id="screen" src="/emu/screen.png?g=0" alt="device screen" draggable="false"></div>
<div id="status">connecting…</div>
<pre id="trace"></pre>
<script>
"use strict";
const W = {W}, H = {H};
const img = document.getElementById("screen");
const status = document.getElementById("status");
const trace = document.getElementById("trace");
let touches = 0;

async function refreshTrace() {
  const r = await fetch("/emu/trace", { cache: "no-store" });
  trace.textContent = JSON.stringify(await r.json());
}

img.addEventListener("click", async (ev) => {
  const box = img.getBoundingClientRect();
  const x = Math.min(W - 1, Math.max(0, Math.floor((ev.clientX - box.left) * W / box.width)));
  const y = Math.min(H - 1, Math.max(0, Math.floor((ev.clientY - box.top) * H / box.height)));
  const r = await fetch("/emu/touch", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ x, y }),
  });
  touches += 1;
  const j = await r.json().catch(() => ({}));
  status.textContent = `touch ${touches} at (${x}, ${y}): ${r.status}`
    + (j.ignored ? ` (ignored: ${j.ignored})` : (j.error ? ` (${j.error})` : ""));
});

const events = new EventSource("/emu/events");
events.addEventListener("screen", (ev) => {
  const g = JSON.parse(ev.data).generation;
  img.src = "/emu/screen.png?g=" + g;
  status.textContent = `screen ${g}` + (touches ? `, ${touches} touches sent` : "");
  refreshTrace();
});
events.onerror = () => { status.textContent = "disconnected from the device"; };
refreshTrace();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::memory::MemoryDisplay;
    use crate::source::scripted::ScriptedTouch;

    #[test]
    fn refuses_non_loopback_addresses() {
        let (_d, screen) = MemoryDisplay::new(8, 8);
        let (_t, script) = ScriptedTouch::new();
        let err = Emulator::start(
            "0.0.0.0:0".parse().unwrap(),
            screen,
            script,
            TraceHandle::default(),
        )
        .err()
        .expect("must refuse");
        assert!(err.to_string().contains("loopback only"), "{err}");
    }

    fn http(addr: SocketAddr, raw: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn post_touch(a: SocketAddr, body: &str) -> String {
        http(
            a,
            &format!(
                "POST /emu/touch HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// A real UI behind the page, on a fake clock that moves only when told.
    fn rig() -> (crate::UiThread, Emulator, crate::FakeClock) {
        let (display, screen) = MemoryDisplay::new(800, 480);
        let (touch, script) = ScriptedTouch::new();
        let clock = crate::FakeClock::new();
        let ui = crate::Ui::spawn(
            Box::new(display),
            Some(Box::new(touch)),
            std::sync::Arc::new(clock.clone()),
            crate::UiConfig::default(),
        )
        .unwrap();
        let emu = Emulator::start(
            "127.0.0.1:0".parse().unwrap(),
            screen,
            script,
            ui.trace.clone(),
        )
        .unwrap();
        (ui, emu, clock)
    }

    #[test]
    fn routes_touch_trace_and_guards() {
        let (ui, emu, _clock) = rig();
        let a = emu.addr();
        let host = format!("Host: {a}\r\nConnection: close\r\n");

        let r = http(a, &format!("GET / HTTP/1.1\r\n{host}\r\n"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("EventSource(\"/emu/events\")"));

        let r = http(a, &format!("GET /emu/screen.png HTTP/1.1\r\n{host}\r\n"));
        assert!(r.contains("image/png"), "{r}");

        let r = http(a, &format!("GET /emu/trace HTTP/1.1\r\n{host}\r\n"));
        assert!(r.contains("\"screen\""), "{r}");

        let r = post_touch(a, r#"{"x":10,"y":20}"#);
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with(r#"{"ok":true,"x":10,"y":20}"#), "{r}");
        assert_eq!(ui.trace.taps_handled(), 1);

        let body = r#"{"x":10,"y":20}"#;
        let r = http(
            a,
            &format!(
                "POST /emu/touch HTTP/1.1\r\n{host}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(r.starts_with("HTTP/1.1 415"), "{r}");

        let r = post_touch(a, r#"{"x":900,"y":20}"#);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");

        let r = http(
            a,
            "GET /emu/trace HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        // The refused touches never reached the UI.
        assert_eq!(ui.trace.taps_handled(), 1);
        drop(emu);
        ui.stop().unwrap();
    }

    /// DNS rebinding (issue 23 part 6): a page on a name that resolves to
    /// 127.0.0.1 sends that name as `Host`, so only loopback IP literals
    /// and `localhost` are taken (`127.attacker.example` and
    /// `127.0.0.1.nip.io` are names, not addresses); and a request that
    /// says it comes from a page elsewhere (`Origin`) is refused, on every
    /// route, before it touches the screen.
    #[test]
    fn a_rebinding_host_or_a_foreign_origin_is_refused() {
        let (ui, emu, _clock) = rig();
        let a = emu.addr();
        let port = a.port();
        let body = r#"{"x":10,"y":20}"#;
        let touch = |host: &str, origin: Option<&str>| {
            let origin = origin
                .map(|o| format!("Origin: {o}\r\n"))
                .unwrap_or_default();
            http(
                a,
                &format!(
                    "POST /emu/touch HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
        };
        let trace = |host: &str| {
            http(
                a,
                &format!("GET /emu/trace HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            )
        };
        for host in [
            format!("127.attacker.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
            format!("127.0.0.1.:{port}"),
            format!("localhost.attacker.example:{port}"),
            "127.0.0.1:99999".to_string(),
            String::new(),
        ] {
            let r = trace(&host);
            assert!(r.starts_with("HTTP/1.1 403"), "Host {host:?}: {r}");
            let r = touch(&host, None);
            assert!(r.starts_with("HTTP/1.1 403"), "Host {host:?}: {r}");
        }
        for origin in [
            "http://evil.example".to_string(),
            format!("http://127.attacker.example:{port}"),
            "null".to_string(),
            format!("http://localhost:{port}"),
            format!("https://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        ] {
            let r = touch(&format!("127.0.0.1:{port}"), Some(&origin));
            assert!(r.starts_with("HTTP/1.1 403"), "Origin {origin:?}: {r}");
        }
        assert_eq!(ui.trace.taps_handled(), 0, "no refused tap reached the UI");
        // The page's own requests: an IP literal or localhost, with or
        // without its own origin.
        for (host, origin) in [
            (
                format!("127.0.0.1:{port}"),
                Some(format!("http://127.0.0.1:{port}")),
            ),
            (
                format!("localhost:{port}"),
                Some(format!("http://localhost:{port}")),
            ),
            (format!("127.0.0.1:{port}"), None),
        ] {
            let r = touch(&host, origin.as_deref());
            assert!(
                r.starts_with("HTTP/1.1 200"),
                "Host {host:?} Origin {origin:?}: {r}"
            );
        }
        assert_eq!(ui.trace.taps_handled(), 3);
        drop(emu);
        ui.stop().unwrap();
    }

    /// A tap on a prompt that is not armed yet is answered as ignored, with
    /// the reason, and the trace said beforehand that the button was not
    /// armed; once armed, the same tap approves.
    #[test]
    fn a_tap_before_the_prompt_is_armed_is_reported_as_ignored() {
        let (ui, emu, clock) = rig();
        let a = emu.addr();
        let ticket = ui.handle.show_prompt(crate::Prompt::Seal {
            contact: "bob".into(),
            message_bytes: 5,
            cost_bytes: 37,
            pad_left_after: 1 << 20,
            timeout: Duration::from_secs(30),
            client_note: None,
            message: None,
        });
        let approve = wait_for_button(&ui.trace, "approve", false);
        let (x, y) = approve.center();
        let r = post_touch(a, &format!(r#"{{"x":{x},"y":{y}}}"#));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains(r#""ignored":"not_armed""#), "{r}");
        assert_eq!(
            ticket.try_decision(),
            None,
            "an ignored tap decides nothing"
        );

        clock.advance(Duration::from_secs(1));
        // No pixel changes when the buttons arm: the UI wakes at the arming
        // time by itself and republishes the trace.
        wait_for_button(&ui.trace, "approve", true);
        let r = post_touch(a, &format!(r#"{{"x":{x},"y":{y}}}"#));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(!r.contains("ignored"), "{r}");
        assert_eq!(
            ticket.wait_timeout(Duration::from_secs(5)),
            Some(crate::Decision::Approve),
            "the armed tap must approve within 5 s"
        );
        drop(emu);
        ui.stop().unwrap();
    }

    /// Waits (at most 5 s, then fails naming it) until the trace shows
    /// button `id` with `armed` as given.
    fn wait_for_button(trace: &TraceHandle, id: &str, armed: bool) -> crate::TraceButton {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let t = trace.get();
            if let Some(b) = t.button(id).filter(|b| b.armed == armed) {
                return b.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up after 5 s waiting for button {id:?} with armed={armed} in {}",
                t.to_json()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
