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

pub fn run(chat: Chat, settings: &Settings, style: Style) -> ExitCode {
    let mut editor = Editor::new();
    let printer = editor.printer();
    let chat = Arc::new(chat);
    print(&printer, id_text(&chat, settings));
    if let Ok(st) = chat.device().status()
        && st.owner != chat.user()
    {
        print(
            &printer,
            style.error(&format!(
                "this device belongs to {}, not {}: sends are refused until otc starts with --user {}",
                clean(&st.owner),
                clean(chat.user()),
                clean(&st.owner)
            )),
        );
    }
    print(
        &printer,
        Shown::text("type `help` for the commands; messages arrive by themselves"),
    );
    {
        let emit = |e: &Event| print(&printer, style.event(e));
        match crate::cli::start_flush_text(&chat, &emit) {
            Some((true, t)) => print(&printer, style.ok(&t)),
            Some((false, t)) => print(&printer, style.error(&clean(&t))),
            None => {}
        }
    }
    let poller = Arc::new(Poller {
        held: Mutex::new(false),
        wake: Condvar::new(),
        quit: AtomicBool::new(false),
    });
    {
        let (chat, poller, p) = (chat.clone(), poller.clone(), printer.clone());
        let spawned = std::thread::Builder::new()
            .name("otc-poll".into())
            .spawn(move || poll_loop(&chat, &poller, &p, style));
        if let Err(e) = spawned {
            print(
                &printer,
                style.error(&format!(
                    "cannot start the receiving thread ({e}); press Enter to fetch"
                )),
            );
        }
    }
    let emit = {
        let printer = printer.clone();
        move |e: &Event| print(&printer, style.event(e))
    };
    loop {
        let line = match editor.readline(&format!("{}> ", clean(chat.user()))) {
            Ok(Input::Line(l)) => l,
            Ok(Input::Interrupted) => continue,
            Ok(Input::End) => break,
            Err(e) => {
                eprintln!("otc: cannot read the terminal any more ({e}); leaving");
                break;
            }
        };
        if !line.trim().is_empty() {
            editor.add_history(&line);
        }
        let cmd = match commands::parse(&line) {
            Ok(c) => c,
            Err(usage) => {
                print(&printer, style.error(&usage));
                continue;
            }
        };
        match cmd {
            Command::Quit => break,
            Command::Fetch => {
                let held = match chat.fetch(&emit) {
                    Ok(f) => {
                        if f.opened + f.refused == 0 && f.held.is_none() {
                            print(&printer, style.approve("no new messages"));
                        }
                        f.held.is_some()
                    }
                    Err(e) => {
                        print(&printer, style.error(&e.to_string()));
                        matches!(e, FetchError::Device(_))
                    }
                };
                if held {
                    print(&printer, style.approve("press Enter to try again"));
                }
                *poller.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
                poller.wake.notify_all();
            }
            Command::Send { to, text } => send_each(&chat, &[to], &text, &emit, &printer, style),
            Command::Multi { to, text } => send_each(&chat, &to, &text, &emit, &printer, style),
            Command::Write { to } => write_on_device(&chat, &to, &emit, &printer, style),
            Command::Group { name, members } => {
                print(
                    &printer,
                    style.ok(&format!("group {name}: {}", members.join(", "))),
                );
                chat.set_group(&name, members);
            }
            Command::GroupSend { group, text } => match chat.group(&group) {
                Some(members) => send_each(&chat, &members, &text, &emit, &printer, style),
                None => print(
                    &printer,
                    style.error(&format!(
                        "no group {group:?}; define it with `group {group} A B ..`"
                    )),
                ),
            },
            Command::Id => print(&printer, id_text(&chat, settings)),
            Command::Clear => editor.clear_screen(),
            Command::Help => print(&printer, Shown::lines(HELP)),
            Command::Contacts => match chat.contacts() {
                Ok(cs) => print(&printer, Shown::lines(contacts_table(&cs).trim_end())),
                Err(e) => print(&printer, style.error(&e.to_string())),
            },
            Command::Log => {
                let log = chat.log();
                if log.is_empty() {
                    print(&printer, Shown::text("no warnings"));
                }
                for entry in log {
                    print(&printer, log_line(&entry, style));
                }
            }
        }
    }
    poller.quit.store(true, Ordering::SeqCst);
    poller.wake.notify_all();
    let waiting = chat.outbox_len();
    if waiting > 0 {
        eprintln!(
            "otc: {waiting} sealed message(s) not taken by the relay yet are kept in the outbox ({}); the next start sends them",
            clean(&chat.outbox().describe())
        );
    }
    ExitCode::from(EXIT_OK)
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
