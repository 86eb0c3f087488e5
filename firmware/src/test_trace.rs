//! The screen trace on the console, for system tests only (issue 17).
//!
//! `otc-device run --test-trace` prints the UI's screen trace
//! ([`otc_ui::ScreenTrace`]: the screen's name, texts, and every button's
//! id, label and rectangle in screen pixels) as one line
//! `otc-trace: {json}` on stdout whenever it changes. image/qemu-pair
//! reads those lines off the serial console to find where to tap, by
//! label, and to read the pairing code.
//!
//! Decision: a flag of `run`, off unless given. The image's init passes it
//! only when the kernel command line carries the test hook
//! `otc.test_trace=1` (image/init), which the shipped cmdline.txt and
//! extlinux.conf never do: the trace holds the pairing code, which must
//! never reach a serial cable in normal use. A flag rather than otc-device
//! reading /proc/cmdline itself, so that the device's behaviour is all on
//! its command line and a host run can use it too.

use otc_ui::ScreenTrace;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What starts every trace line.
pub const PREFIX: &str = "otc-trace: ";

/// How often the trace is read for a change.
pub const POLL: Duration = Duration::from_millis(100);

/// Remembers the last trace printed and says what to print for the next.
#[derive(Default)]
pub struct TracePrinter {
    last: Option<ScreenTrace>,
}

impl TracePrinter {
    /// The line to print for `now` (`otc-trace: {json}`, no newline), or
    /// None when it equals the last one printed.
    pub fn line(&mut self, now: ScreenTrace) -> Option<String> {
        if self.last.as_ref() == Some(&now) {
            return None;
        }
        let line = format!("{PREFIX}{}", now.to_json());
        self.last = Some(now);
        Some(line)
    }
}

/// Prints every change of `get()` to `out` (one line each, flushed) every
/// [`POLL`], until `stop`. A write that fails (no console) is ignored: the
/// trace is a test aid, never a reason to stop the device.
pub fn spawn(
    get: impl Fn() -> ScreenTrace + Send + 'static,
    mut out: impl Write + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("otc-test-trace".into())
        .spawn(move || {
            let mut printer = TracePrinter::default();
            while !stop.load(Ordering::Acquire) {
                if let Some(line) = printer.line(get()) {
                    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
                }
                std::thread::sleep(POLL);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn trace(screen: &str) -> ScreenTrace {
        ScreenTrace {
            screen: screen.into(),
            texts: vec!["ABCD EFGH".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_line_per_change_only() {
        let mut p = TracePrinter::default();
        let first = p.line(trace("home")).expect("the first trace is printed");
        assert!(first.starts_with(PREFIX), "{first}");
        let back: ScreenTrace =
            serde_json::from_str(&first[PREFIX.len()..]).expect("the line is the trace's JSON");
        assert_eq!(back, trace("home"));
        assert!(!first.contains('\n'), "one line: {first}");
        assert_eq!(p.line(trace("home")), None, "no change, no line");
        let next = p.line(trace("keyboard")).expect("a change is printed");
        assert!(next.contains("\"screen\":\"keyboard\""), "{next}");
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_thread_prints_changes_until_stopped() {
        let now = Arc::new(Mutex::new(trace("home")));
        let out = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let get = {
            let now = now.clone();
            move || now.lock().unwrap().clone()
        };
        let t = spawn(get, out.clone(), stop.clone()).unwrap();
        let text = || String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let wait = |what: &str, f: &dyn Fn(&str) -> bool| {
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while !f(&text()) {
                assert!(
                    std::time::Instant::now() < end,
                    "waited 10 s for {what}: {:?}",
                    text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait("the home trace", &|s| s.contains("\"screen\":\"home\""));
        *now.lock().unwrap() = trace("keyboard");
        wait("the keyboard trace", &|s| {
            s.contains("\"screen\":\"keyboard\"")
        });
        stop.store(true, Ordering::Release);
        t.join().unwrap();
        let s = text();
        assert_eq!(s.lines().count(), 2, "one line per change: {s}");
        assert!(s.lines().all(|l| l.starts_with(PREFIX)), "{s}");
    }
}
