//! The interactive client in a real terminal: `otc` runs in a tmux pane
//! (its own tmux server, its socket in a temp dir), keys are
//! typed with send-keys, the screen is read with capture-pane. A send; a
//! message that arrives while a line is half typed (the half line
//! survives under it); a skipped warning, in colour; `log`; `quit`.
//! Real devices (otc-testkit), the real relay with `--mischief`.

mod common;

use common::{Hostile, World};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
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

    /// Pastes `text` into the pane in one piece (`send-keys -l`: all of
    /// it reaches otc in one write, as a paste or a fast typist's keys do),
    /// then waits until the prompt line shows all of it, with no other
    /// key pressed.
    fn paste(&self, text: &str) {
        // One column per character; the line so far is the prompt line up
        // to the cursor (capture-pane trims the prompt's trailing space).
        assert!(text.is_ascii(), "one column per character");
        let x = self.cursor_x();
        let before = format!("{:x$}", self.prompt_line());
        self.run(&["send-keys", "-t", "otc", "-l", text]);
        let want = format!("{before}{text}");
        self.wait(
            &format!("the prompt line to show the pasted {text:?} whole, the cursor after it"),
            |_| self.prompt_line() == want.trim_end() && self.cursor_x() == want.len(),
        );
    }

    /// Pastes `text` with tmux's own paste (`paste-buffer`: its newlines
    /// reach otc as Enter, all in one write).
    fn paste_buffer(&self, text: &str) {
        self.run(&["set-buffer", "-b", "otc-test", "--", text]);
        self.run(&["paste-buffer", "-d", "-b", "otc-test", "-t", "otc"]);
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

/// Starts `otc` as `user` of `w` in a tmux pane of its own server and
/// waits for its prompt; `None` when tmux is not installed.
fn start(w: &World, user: &str) -> Option<Tmux> {
    start_with(&w.flags(user).join(" "), user)
}

/// Starts `otc FLAGS` (as `user`) in a tmux pane of its own server, the
/// clipboard escape (OSC 52) allowed to set tmux's buffers, and waits for
/// its prompt; `None` when tmux is not installed.
fn start_with(flags: &str, user: &str) -> Option<Tmux> {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("SKIPPED: tmux is not installed (scripts/install-deps installs it)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir for the tmux socket");
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock").to_string_lossy().to_string(),
        _dir: dir,
    };
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
        "60",
        &cmd,
    ]);
    tmux.run(&["set-option", "-g", "set-clipboard", "on"]);
    tmux.wait("the prompt", |s| {
        s.contains(&format!("{user}>")) && s.contains(&format!("you are {user}"))
    });
    Some(tmux)
}

#[test]
fn interactive_client_in_tmux() {
    let w = World::new(&["alice", "bob"], true);
    let Some(tmux) = start(&w, "bob") else {
        return;
    };

    // A send.
    tmux.paste("send alice hello from tmux");
    tmux.keys(&["Enter"]);
    tmux.wait("the send to be acknowledged", |s| {
        s.contains("sent to alice (ref")
    });
    assert!(tmux.screen(false).contains("approve on the device"));

    // A message arrives while a line is half typed.
    tmux.paste("half a li");
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
    tmux.paste("contacts");
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
    tmux.paste("log");
    tmux.keys(&["Enter"]);
    tmux.wait("the log", |s| s.matches("WARNING skipped").count() >= 2);

    // For the log of the run: what the user saw.
    println!("the pane before quit:\n{}", tmux.screen(false));
    quit(&tmux);
}

/// Types `quit` and waits (at most 30 s) for otc, and with it the tmux
/// session, to end.
fn quit(tmux: &Tmux) {
    tmux.paste("quit");
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

/// The lines of `screen` that contain `part`, without trailing spaces.
fn lines_with<'a>(screen: &'a str, part: &str) -> Vec<&'a str> {
    screen
        .lines()
        .filter(|l| l.contains(part))
        .map(str::trim_end)
        .collect()
}

/// Issue 19: a message bob reads on his device is shown as such in the
/// chat, never its text; `/write alice` has bob write on the device's
/// keyboard, and the chat shows it sent, without the text.
#[test]
fn read_and_written_on_the_device() {
    let w = World::new(&["alice", "bob"], false);
    let Some(tmux) = start(&w, "bob") else {
        return;
    };
    let alice = w.chat("alice");

    w.dev("bob").set_thumb(otc_testkit::Thumb::ReadHere);
    alice
        .send("bob", "kq7w only on the device", &|_| {})
        .expect("alice sends");
    let s = tmux.wait("the message read on the device", |s| {
        s.contains("alice: (read on the device)")
    });
    assert!(!s.contains("kq7w"), "{s}");
    w.dev("bob").set_thumb(otc_testkit::Thumb::Approve);

    tmux.paste("help");
    tmux.keys(&["Enter"]);
    tmux.wait("/write in the help", |s| s.contains("/write NAME"));

    let before = w.next_ref();
    tmux.paste("/write alice");
    tmux.keys(&["Enter"]);
    tmux.wait("the word to write on the device", |s| {
        s.contains("write the message to alice on the device's keyboard")
    });
    common::type_message(w.dev("bob"), "alice", "yo there");
    w.dev("bob").tap("kb-done");
    let s = tmux.wait("the message written on the device, sent", |s| {
        s.contains(&format!(
            "you → alice: (written on the device), sent (ref {before}, "
        ))
    });
    assert!(
        !s.contains("yo there"),
        "the laptop never had the text:\n{s}"
    );
    let got = std::sync::Mutex::new(Vec::new());
    alice
        .fetch(&|e| {
            if let otc_client::chat::Event::Message(m) = e {
                got.lock().expect("got").push(m.text.clone());
            }
        })
        .expect("alice's fetch");
    assert_eq!(
        got.into_inner().expect("got"),
        vec![Some("yo there".to_string())]
    );
    quit(&tmux);
}

/// Issue 15, defect 2: a paste (several keys in one read) was shown as its
/// first key only, `bob> h`, until another key was pressed.
#[test]
fn pasted_lines_are_taken_whole() {
    let w = World::new(&["alice", "bob"], false);
    let Some(tmux) = start(&w, "bob") else {
        return;
    };

    // As the issue did it: `send-keys 'help' Enter`, nothing after.
    tmux.keys(&["help", "Enter"]);
    let s = tmux.wait(
        "the help text after `help` and Enter came in one piece",
        |s| s.contains("leave (also Ctrl-D)"),
    );
    assert_eq!(lines_with(&s, "bob> help"), ["bob> help"], "{s}");

    // Two whole lines in one paste: both are run, in order.
    tmux.paste_buffer("id\ncontacts\n");
    let s = tmux.wait("the answers to the pasted `id` and `contacts`", |s| {
        s.matches("you are bob").count() == 2 && s.contains("receive left")
    });
    let id = s.find("bob> id").expect("the pasted `id` line");
    let contacts = s.find("bob> contacts").expect("the pasted `contacts` line");
    assert!(id < contacts, "`id` then `contacts`:\n{s}");
    tmux.wait("an empty prompt after the paste", |_| {
        tmux.prompt_line() == "bob>"
    });

    quit(&tmux);
}

/// Issue 15's proof: lines pasted while messages arrive. The pasted lines
/// and the messages are each shown whole, once, and the lines are run.
#[test]
fn lines_pasted_while_messages_arrive() {
    let w = World::new(&["alice", "bob"], false);
    let Some(tmux) = start(&w, "bob") else {
        return;
    };
    let alice = w.chat("alice");

    // Alice sends three messages while bob pastes three commands.
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for i in 1..=3 {
                alice
                    .send("bob", &format!("ping {i} while bob pastes"), &|_| {})
                    .expect("alice sends");
            }
        });
        tmux.paste_buffer(
            "send alice pasted line 1\nsend alice pasted line 2\nsend alice pasted line 3\n",
        );
        sender.join().expect("alice's sending thread");
    });
    let s = tmux.wait("three messages and three sends", |s| {
        s.matches("sent to alice (ref").count() == 3
            && (1..=3).all(|i| s.contains(&format!("ping {i} while bob pastes")))
    });
    for i in 1..=3 {
        let line = format!("bob> send alice pasted line {i}");
        assert_eq!(lines_with(&s, &format!("pasted line {i}")), [&line], "{s}");
        let got = lines_with(&s, &format!("ping {i} while"));
        assert_eq!(got.len(), 1, "message {i} shown once:\n{s}");
        assert!(
            got[0].ends_with(&format!("alice: ping {i} while bob pastes")),
            "message {i} whole:\n{s}"
        );
    }
    tmux.wait("an empty prompt after the paste", |_| {
        tmux.prompt_line() == "bob>"
    });

    // Half a line pasted, a message arrives: the half line is kept under
    // it and the rest pasted later completes it.
    tmux.paste("send alice first half");
    alice
        .send("bob", "ping 4 between the halves", &|_| {})
        .expect("alice sends");
    let s = tmux.wait("the message between the halves", |s| {
        s.contains("alice: ping 4 between the halves")
    });
    let last = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert_eq!(last.trim_end(), "bob> send alice first half", "{s}");
    tmux.paste(" and the second");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the send of the completed line", |s| {
        s.matches("sent to alice (ref").count() == 4
    });
    assert_eq!(
        lines_with(&s, "first half"),
        ["bob> send alice first half and the second"],
        "{s}"
    );

    quit(&tmux);
}

/// Issue 23 part 2: a hostile device and a hostile relay answer every
/// request with terminal escapes (set the title, clear the screen, write
/// the clipboard with OSC 52), in error texts, as raw bodies and inside
/// JSON. Nothing of it reaches the terminal: after the start and `id`, the
/// pane's title is unchanged, the screen was never cleared (the first line
/// is still there), no tmux buffer was written, and the escapes are shown
/// as visible placeholders.
#[test]
fn a_hostile_device_and_relay_cannot_drive_the_terminal() {
    const NASTY: &str = "\x1b]0;PWNED\x07\x1b[2J\x1b[H\x1b]52;c;UFdORUQ=\x07\u{9b}2J\u{202e}";
    // Each in its own error shape (valid JSON, so the texts get through
    // to the client's messages) over a 500.
    let script = |body: String| {
        Arc::new(move |_head: &str, s: &mut std::net::TcpStream| {
            let _ = write!(
                s,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }) as Arc<common::Script>
    };
    let device_error =
        serde_json::json!({"error": {"code": "internal", "message": NASTY}}).to_string();
    let relay_error = serde_json::json!({"error": 500, "message": NASTY}).to_string();
    let device = Hostile::start(script(device_error));
    let relay = Hostile::start(script(relay_error));
    let dir = tempfile::tempdir().unwrap();
    let flags = format!(
        "--outbox {} --device {} --relay {} --user bob",
        dir.path().join("outbox.jsonl").display(),
        device.url(),
        relay.url()
    );
    let Some(tmux) = start_with(&flags, "bob") else {
        return;
    };
    let title = || tmux.run(&["display-message", "-p", "-t", "otc", "#{pane_title}"]);
    tmux.paste("id");
    tmux.keys(&["Enter"]);
    tmux.wait("the answer to id", |s| {
        s.matches("you are bob").count() >= 2
    });
    tmux.wait("the line taken", |_| tmux.prompt_line() == "bob>");
    tmux.paste("contacts");
    tmux.keys(&["Enter"]);
    tmux.wait("the line taken", |_| tmux.prompt_line() == "bob>");
    tmux.paste("log");
    tmux.keys(&["Enter"]);
    tmux.wait("the answer to log", |s| {
        s.contains("no warnings") || s.contains("UTC")
    });
    let screen = tmux.screen(false);
    let coloured = tmux.screen(true);
    println!("the pane:\n{screen}");
    assert!(
        !title().contains("PWNED"),
        "the hostile servers set the pane's title to {:?}",
        title()
    );
    assert!(
        screen
            .lines()
            .next()
            .is_some_and(|l| l.contains("you are bob")),
        "the screen was cleared: the first line is gone:\n{screen}"
    );
    let buffers = tmux.run(&["list-buffers"]);
    assert!(
        buffers.trim().is_empty(),
        "OSC 52 wrote tmux's clipboard: {buffers}"
    );
    assert!(
        screen.contains("not answering") && screen.contains("]0;PWNED"),
        "the error texts are shown:\n{screen}"
    );
    // No escape of theirs in what the pane holds (our own colours are
    // SGR `ESC [ ... m` only).
    for (i, _) in coloured.match_indices('\x1b') {
        let rest = &coloured[i + 1..];
        let sgr = rest.starts_with('[')
            && rest[1..]
                .chars()
                .take_while(|c| *c != 'm')
                .all(|c| c.is_ascii_digit() || c == ';');
        assert!(
            sgr,
            "a foreign escape reached the pane: {:?}",
            &rest[..rest.len().min(20)]
        );
    }
    quit(&tmux);
}
