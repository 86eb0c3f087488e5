//! The interactive client: a prompt with history (our own line editor,
//! [`crate::lineedit`], which says why it is not rustyline), and a
//! background thread that long-polls the relay and prints incoming
//! messages and warnings above the prompt (the editor's [`Printer`] draws
//! the line being typed again underneath).
//!
//! When a message cannot be opened for now (device busy, unplugged, owner
//! tapped Reject, ...) the background thread stops opening until the user
//! presses Enter, so the owner is not asked again and again.

use crate::chat::{Chat, Event, FetchError, LogEntry, Sent};
use crate::cli::{EXIT_OK, contacts_table};
use crate::commands::{self, Command, HELP};
use crate::config::Settings;
use crate::lineedit::{Editor, Input, Printer};
use crate::style::{Shown, Style, clean};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Seconds of each long poll of the background thread.
pub const POLL_WAIT_SECS: u64 = 20;

struct Poller {
    /// A message is held: do not open until Enter.
    held: Mutex<bool>,
    wake: Condvar,
    quit: AtomicBool,
}

fn print(p: &Printer, line: Shown) {
    p.print(&line);
}

/// The interactive session: greets, starts the receiving thread, reads
/// and runs commands until `quit` or end of input, then says what is left
/// in the outbox.
pub fn run(chat: Chat, settings: &Settings, style: Style) -> ExitCode {
    let mut editor = Editor::new();
    let session = Session {
        printer: editor.printer(),
        chat: Arc::new(chat),
        settings,
        style,
        poller: Arc::new(Poller {
            held: Mutex::new(false),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
        }),
    };
    session.greet();
    session.start_poller();
    session.command_loop(&mut editor);
    session.stop_poller();
    session.report_outbox();
    ExitCode::from(EXIT_OK)
}

/// What the prompt loop does after a command.
enum Next {
    Prompt,
    Quit,
}

/// The state of one interactive session, shared by its steps.
struct Session<'a> {
    chat: Arc<Chat>,
    printer: Printer,
    settings: &'a Settings,
    style: Style,
    poller: Arc<Poller>,
}

impl Session<'_> {
    fn say(&self, line: Shown) {
        print(&self.printer, line);
    }

    /// Prints an event above the prompt.
    fn emit(&self, e: &Event) {
        self.say(self.style.event(e));
    }

    /// Step 1: the `id` line, a warning when the device belongs to someone
    /// else, the hint, and the sends left in the outbox from last time.
    fn greet(&self) {
        let (chat, style) = (&self.chat, self.style);
        self.say(id_text(chat, self.settings));
        if let Ok(st) = chat.device().status()
            && st.owner != chat.user()
        {
            self.say(style.error(&format!(
                "this device belongs to {}, not {}: sends are refused until otc starts with --user {}",
                clean(&st.owner),
                clean(chat.user()),
                clean(&st.owner)
            )));
        }
        self.say(Shown::text(
            "type `help` for the commands; messages arrive by themselves",
        ));
        match crate::cli::start_flush_text(chat, &|e: &Event| self.emit(e)) {
            Some((true, t)) => self.say(style.ok(&t)),
            Some((false, t)) => self.say(style.error(&clean(&t))),
            None => {}
        }
    }

    /// Step 2: the background thread that long-polls the relay. Without it
    /// the user can still fetch by hand.
    fn start_poller(&self) {
        let (chat, poller, p) = (self.chat.clone(), self.poller.clone(), self.printer.clone());
        let style = self.style;
        let spawned = std::thread::Builder::new()
            .name("otc-poll".into())
            .spawn(move || poll_loop(&chat, &poller, &p, style));
        if let Err(e) = spawned {
            self.say(style.error(&format!(
                "cannot start the receiving thread ({e}); press Enter to fetch"
            )));
        }
    }

    /// Step 3: reads lines and runs their commands until `quit`, end of
    /// input or a terminal that cannot be read.
    fn command_loop(&self, editor: &mut Editor) {
        loop {
            let line = match editor.readline(&format!("{}> ", clean(self.chat.user()))) {
                Ok(Input::Line(l)) => l,
                Ok(Input::Interrupted) => continue,
                Ok(Input::End) => return,
                Err(e) => {
                    eprintln!("otc: cannot read the terminal any more ({e}); leaving");
                    return;
                }
            };
            if !line.trim().is_empty() {
                editor.add_history(&line);
            }
            match commands::parse(&line) {
                Ok(cmd) => {
                    if let Next::Quit = self.execute(cmd, editor) {
                        return;
                    }
                }
                Err(usage) => self.say(self.style.error(&usage)),
            }
        }
    }

    /// Runs one parsed command.
    fn execute(&self, cmd: Command, editor: &mut Editor) -> Next {
        let (chat, style) = (&*self.chat, self.style);
        let emit = |e: &Event| self.emit(e);
        match cmd {
            Command::Quit => return Next::Quit,
            Command::Fetch => self.fetch_now(),
            Command::Send { to, text } => {
                send_each(chat, &[to], &text, &emit, &self.printer, style)
            }
            Command::Multi { to, text } => send_each(chat, &to, &text, &emit, &self.printer, style),
            Command::Write { to } => write_on_device(chat, &to, &emit, &self.printer, style),
            Command::Group { name, members } => {
                self.say(style.ok(&format!("group {name}: {}", members.join(", "))));
                chat.set_group(&name, members);
            }
            Command::GroupSend { group, text } => match chat.group(&group) {
                Some(members) => send_each(chat, &members, &text, &emit, &self.printer, style),
                None => self.say(style.error(&format!(
                    "no group {group:?}; define it with `group {group} A B ..`"
                ))),
            },
            Command::Id => self.say(id_text(chat, self.settings)),
            Command::Clear => editor.clear_screen(),
            Command::Help => self.say(Shown::lines(HELP)),
            Command::Contacts => match chat.contacts() {
                Ok(cs) => self.say(Shown::lines(contacts_table(&cs).trim_end())),
                Err(e) => self.say(style.error(&e.to_string())),
            },
            Command::Log => self.show_log(),
        }
        Next::Prompt
    }

    /// `fetch` (or a bare Enter): fetches now, and holds or releases the
    /// background thread depending on whether a message is held.
    fn fetch_now(&self) {
        let style = self.style;
        let held = match self.chat.fetch(&|e: &Event| self.emit(e)) {
            Ok(f) => {
                if f.opened + f.refused == 0 && f.held.is_none() {
                    self.say(style.approve("no new messages"));
                }
                f.held.is_some()
            }
            Err(e) => {
                self.say(style.error(&e.to_string()));
                matches!(e, FetchError::Device(_))
            }
        };
        if held {
            self.say(style.approve("press Enter to try again"));
        }
        *self.poller.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        self.poller.wake.notify_all();
    }

    /// `log`: the warnings of this session, oldest first.
    fn show_log(&self) {
        let log = self.chat.log();
        if log.is_empty() {
            self.say(Shown::text("no warnings"));
        }
        for entry in log {
            self.say(log_line(&entry, self.style));
        }
    }

    /// Step 4: tells the background thread to stop (it notices within a
    /// poll or a retry pause).
    fn stop_poller(&self) {
        self.poller.quit.store(true, Ordering::SeqCst);
        self.poller.wake.notify_all();
    }

    /// Step 5: says how many sealed messages stay in the outbox for the
    /// next start.
    fn report_outbox(&self) {
        let waiting = self.chat.outbox_len();
        if waiting > 0 {
            eprintln!(
                "otc: {waiting} sealed message(s) not taken by the relay yet are kept in the outbox ({}); the next start sends them",
                clean(&self.chat.outbox().describe())
            );
        }
    }
}

fn send_each(
    chat: &Chat,
    to: &[String],
    text: &str,
    emit: &dyn Fn(&Event),
    printer: &Printer,
    style: Style,
) {
    chat.flush_outbox(emit);
    for name in to {
        match chat.send(name, text, emit) {
            Ok(s) => print(
                printer,
                style.ok(&format!(
                    "sent to {} (ref {}, {} pad bytes left)",
                    s.to, s.msg_ref, s.pad_left
                )),
            ),
            Err(e) => print(printer, style.error(&format!("to {name}: {e}"))),
        }
    }
}

/// `/write NAME`: the owner writes the message on the device (the chat
/// says so while the device waits), then it goes to the relay like any
/// send.
fn write_on_device(chat: &Chat, to: &str, emit: &dyn Fn(&Event), printer: &Printer, style: Style) {
    chat.flush_outbox(emit);
    match chat.send_on_device(to, emit) {
        Ok(s) => print(printer, style.ok(&written_line(&s))),
        Err(e) => print(printer, style.error(&format!("to {to}: {e}"))),
    }
}

/// The line of a message sent with `/write`: who it went to and the ref,
/// without its text (the laptop never had it).
pub fn written_line(s: &Sent) -> String {
    format!(
        "you → {}: {WRITTEN_ON_DEVICE}, sent (ref {}, {} pad bytes left)",
        s.to, s.msg_ref, s.pad_left
    )
}

/// Shown in place of the text of a message written on the device.
pub const WRITTEN_ON_DEVICE: &str = "(written on the device)";

/// The `id` line. The device's and the relay's error texts are in it:
/// the whole line is cleaned.
fn id_text(chat: &Chat, s: &Settings) -> Shown {
    let owner = match chat.device().status() {
        Ok(st) => format!("owner {}", clean(&st.owner)),
        Err(e) => format!("not answering: {e}"),
    };
    let relay = match chat.relay().check() {
        Ok(()) => "up".to_string(),
        Err(e) => format!("not answering: {e}"),
    };
    let cursor = match chat.cursor() {
        Ok(c) => c.to_string(),
        Err(_) => "unknown".into(),
    };
    Shown::text(&format!(
        "you are {} | device {} ({owner}) | relay {} ({relay}) | read position {cursor}",
        chat.user(),
        s.device,
        s.relay
    ))
}

fn log_line(e: &LogEntry, style: Style) -> Shown {
    let secs = e.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    Shown::prefixed(
        &format!("{h:02}:{m:02}:{s:02} UTC "),
        style.notice(&e.notice),
    )
}

fn poll_loop(chat: &Chat, poller: &Poller, printer: &Printer, style: Style) {
    let emit = |e: &Event| print(printer, style.event(e));
    let mut relay_down = false;
    while !poller.quit.load(Ordering::SeqCst) {
        {
            let held = poller.held.lock().unwrap_or_else(|e| e.into_inner());
            if *held {
                let _ = poller.wake.wait_timeout(held, Duration::from_secs(1));
                continue;
            }
        }
        if chat.outbox_len() > 0 {
            chat.flush_outbox(&emit);
        }
        match chat.poll(POLL_WAIT_SECS, &emit) {
            Ok((f, _)) => {
                if relay_down {
                    print(printer, style.ok("the relay answers again"));
                }
                relay_down = false;
                if f.held.is_some() {
                    print(printer, style.approve("press Enter to try again"));
                    *poller.held.lock().unwrap_or_else(|e| e.into_inner()) = true;
                }
            }
            Err(FetchError::Relay(e)) => {
                if !relay_down {
                    print(
                        printer,
                        style.error(&format!("{e}; trying again every 3 s")),
                    );
                }
                relay_down = true;
                for _ in 0..30 {
                    if poller.quit.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Err(e) => {
                print(
                    printer,
                    style.error(&format!("{e}; press Enter to try again")),
                );
                *poller.held.lock().unwrap_or_else(|e| e.into_inner()) = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: a message written on the device is shown as sent, with
    /// its ref and pad left but no text; a name's escapes are cleaned.
    #[test]
    fn the_line_of_a_message_written_on_the_device() {
        let s = Sent {
            to: "bob".into(),
            msg_ref: 12,
            pad_left: 900,
        };
        assert_eq!(
            written_line(&s),
            "you → bob: (written on the device), sent (ref 12, 900 pad bytes left)"
        );
        let s = Sent {
            to: "b\x1b[2Job".into(),
            ..s
        };
        assert!(
            !Style::plain()
                .ok(&written_line(&s))
                .as_str()
                .contains('\x1b'),
            "cleaned"
        );
    }
}
