//! The interactive client in a real terminal: `otc` runs in a tmux pane
//! (its own tmux server, its socket in a temp dir), keys are
//! typed with send-keys, the screen is read with capture-pane. A send; a
//! message that arrives while a line is half typed (the half line
//! survives under it); a skipped warning, in colour; `log`; `quit`.
//! Real devices (otc-testkit), the real relay with `--mischief`.

mod common;

use common::World;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    /// The server's socket, in a temp dir of this test (removed with it).
    socket: String,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// The pane's text (`escapes`: with colour codes).
    fn screen(&self, escapes: bool) -> String {
        let mut a = vec!["capture-pane", "-p", "-t", "otc"];
        if escapes {
            a.push("-e");
        }
        self.run(&a)
    }

    /// Waits (at most 30 s) until the pane shows what `pred` wants.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen(false);
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("gave up after 30 s waiting for {what}; the pane shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` one key at a time, each seen echoed on the prompt line
    /// before the next, as a person types. (Several keys in one read are
    /// not all taken by rustyline while an ExternalPrinter exists:
    /// rustyline issue #976, see the crate README.)
    fn type_text(&self, text: &str) {
        // Each key is seen by the cursor moving one column on (a typed
        // space does not show in capture-pane, which trims lines).
        assert!(text.is_ascii(), "one column per key");
        let base = self.cursor_x();
        for (i, c) in text.char_indices() {
            let mut buf = [0u8; 4];
            self.run(&["send-keys", "-t", "otc", "-l", c.encode_utf8(&mut buf)]);
            let want = base + i + 1;
            self.wait(
                &format!("the cursor at column {want} after typing {c:?}"),
                |_| self.cursor_x() == want,
            );
        }
    }

    /// The pane's cursor column.
    fn cursor_x(&self) -> usize {
        let x = self.run(&["display-message", "-p", "-t", "otc", "#{cursor_x}"]);
        x.trim()
            .parse()
            .unwrap_or_else(|_| panic!("tmux cursor_x {x:?}"))
    }

    /// The last line with the prompt on it, without trailing spaces.
    fn prompt_line(&self) -> String {
        self.screen(false)
            .lines()
            .rev()
            .find(|l| l.starts_with("bob>"))
            .unwrap_or_default()
            .trim_end()
            .to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "otc"];
        a.extend_from_slice(keys);
        self.run(&a);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only our own server (its own socket).
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn interactive_client_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("SKIPPED: tmux is not installed (scripts/install-deps installs it)");
        return;
    }
    let w = World::new(&["alice", "bob"], true);
    let dir = tempfile::tempdir().expect("temp dir for the tmux socket");
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock").to_string_lossy().to_string(),
        _dir: dir,
    };
    let flags = w.flags("bob").join(" ");
    let cmd = format!(
        "env -u NO_COLOR OTC_CONFIG=/dev/null TERM=xterm-256color {} {flags}",
        env!("CARGO_BIN_EXE_otc")
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "otc",
        "-x",
        "160",
        "-y",
        "40",
        &cmd,
    ]);
    tmux.wait("the prompt", |s| {
        s.contains("bob>") && s.contains("you are bob")
    });

    // A send.
    tmux.type_text("send alice hello from tmux");
    tmux.keys(&["Enter"]);
    tmux.wait("the send to be acknowledged", |s| {
        s.contains("sent to alice (ref")
    });
    assert!(tmux.screen(false).contains("approve on the device"));

    // A message arrives while a line is half typed.
    tmux.type_text("half a li");
    let alice = w.chat("alice");
    alice
        .send("bob", "ping while you type", &|_| {})
        .expect("alice sends");
    let s = tmux.wait("the incoming message", |s| {
        s.contains("alice: ping while you type")
    });
    let last = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert_eq!(
        last.trim_end(),
        "bob> half a li",
        "the half line survives:\n{s}"
    );
    // And it is still being edited: finish it as a command.
    tmux.keys(&["C-u"]);
    tmux.wait("the line cleared", |_| tmux.prompt_line() == "bob>");
    tmux.type_text("contacts");
    tmux.keys(&["Enter"]);
    tmux.wait("the contacts table", |s| s.contains("receive left"));

    // A warning: the relay drops a message, the next one says so.
    w.relay.mischief("bob", "drop");
    alice.send("bob", "lost", &|_| {}).expect("alice sends");
    alice
        .send("bob", "after the gap", &|_| {})
        .expect("alice sends");
    tmux.wait("the skipped warning", |s| {
        s.contains("WARNING skipped") && s.contains("alice: after the gap")
    });
    let coloured = tmux.screen(true);
    let warn_line = coloured
        .lines()
        .find(|l| l.contains("WARNING skipped"))
        .expect("the warning line");
    assert!(
        warn_line.contains("\x1b["),
        "the warning is in colour: {warn_line:?}"
    );
    tmux.type_text("log");
    tmux.keys(&["Enter"]);
    tmux.wait("the log", |s| s.matches("WARNING skipped").count() >= 2);

    // For the log of the run: what the user saw.
    println!("the pane before quit:\n{}", tmux.screen(false));
    tmux.type_text("quit");
    tmux.keys(&["Enter"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("tmux")
        .args(["-S", &tmux.socket, "has-session", "-t", "otc"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "otc did not quit within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
