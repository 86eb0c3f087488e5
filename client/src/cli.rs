//! The `otc` command line: flags (clap, with environment variables), the
//! one-shot subcommands for scripts (`send`, `recv`, `contacts`,
//! `resend`, `outbox`), and the interactive client when no subcommand is given.
//! Everything here is a thin layer over [`crate::chat::Chat`].

use crate::chat::{Chat, Event, FetchError, Incoming, Notice, Refusal, SendError};
use crate::config::{self, Given, Settings};
use crate::outbox::Outbox;
use crate::style::{Style, clean};
use clap::{Parser, Subcommand};
use otc_rpc_client::Client;
use otc_rpc_client::relay::{HttpUrl, RelayClient, RelayOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Done.
pub const EXIT_OK: u8 = 0;
/// The device refused, could not be reached, or a message was left to be
/// fetched again (nothing lost, nothing sent).
pub const EXIT_DEVICE: u8 = 1;
/// A bad command line or config.
pub const EXIT_USAGE: u8 = 2;
/// The relay could not be reached, refused, or sent an untrusted reply
/// (nothing sealed, no pad spent).
pub const EXIT_RELAY: u8 = 3;
/// Sealed but the relay did not take it: the pad bytes are spent, the
/// package is kept in the outbox (sent by the next start) and printed for
/// `otc resend`.
pub const EXIT_UNSENT: u8 = 4;

/// One Time Chat's chat client: messages sealed and opened by your pad
/// device, carried by an untrusted relay.
///
/// Without a subcommand it is interactive (type `help`). Every use of pad
/// bytes waits for Approve on the device's screen ("approve on the
/// device…").
#[derive(Parser, Debug)]
#[command(name = "otc", version, after_long_help = AFTER_HELP)]
pub struct Args {
    /// The device's RPC endpoint, e.g. http://10.0.0.2:9051 (10.0.0.2
    /// alone means the same).
    #[arg(long, value_name = "URL", env = "OTC_DEVICE", global = true)]
    pub device: Option<String>,
    /// The relay, e.g. https://relay.example (plain http:// only to a
    /// loopback or private address, unless --insecure-relay).
    #[arg(long, value_name = "URL", env = "OTC_RELAY", global = true)]
    pub relay: Option<String>,
    /// PEM file of the only certificates trusted for an https:// relay: its
    /// CA, or the relay's own self-signed certificate (pinned) [default:
    /// the system's roots].
    #[arg(long, value_name = "FILE", env = "OTC_RELAY_CA", global = true)]
    pub relay_ca: Option<PathBuf>,
    /// Allow plain http:// to a relay on a public address (anyone on the
    /// way then sees who writes to whom, and when).
    #[arg(long, global = true)]
    pub insecure_relay: bool,
    /// Your name on the relay (your contacts know you by it).
    #[arg(long, value_name = "NAME", env = "OTC_USER", global = true)]
    pub user: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/otc/config.toml, else ~/.config/otc/config.toml].
    #[arg(long, value_name = "FILE", env = "OTC_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Seconds to wait for the device (a prompt waits for your tap) [default: 120].
    #[arg(long, value_name = "SECS", env = "OTC_DEVICE_TIMEOUT", global = true)]
    pub device_timeout: Option<u64>,
    /// Seconds to wait for the relay [default: 10].
    #[arg(long, value_name = "SECS", env = "OTC_RELAY_TIMEOUT", global = true)]
    pub relay_timeout: Option<u64>,
    /// The outbox: sealed messages the relay has not taken yet [default:
    /// $XDG_STATE_HOME/otc/outbox-USER.jsonl, else ~/.local/state/otc/outbox-USER.jsonl].
    #[arg(long, value_name = "FILE", env = "OTC_OUTBOX", global = true)]
    pub outbox: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Seal TEXT for NAME and send it; exits 0 once the relay has it.
    /// NAME may be A,B,.. or a group from the config file: one message
    /// each; if any fails, the exit status is the first failure's. With
    /// --on-device, the owner writes each message on the device instead.
    Send {
        /// Write the message on the device's own keyboard instead (tap
        /// Seal there); the laptop never sees its text. No TEXT then.
        #[arg(long)]
        on_device: bool,
        name: String,
        #[arg(
            required_unless_present = "on_device",
            conflicts_with = "on_device",
            num_args = 1..,
            trailing_var_arg = true
        )]
        text: Vec<String>,
    },
    /// Open new messages and print them as `NAME: TEXT`; moves the read
    /// position kept on the device past each one opened or refused for good.
    Recv {
        /// Keep waiting for messages (long poll) until interrupted.
        #[arg(long)]
        follow: bool,
        /// One JSON object a line: {"ref","from","text","text_b64","warnings",
        /// "read_on_device"} for a message (text and text_b64 null when it
        /// was read on the device), {"ref","from","refused"} for one
        /// refused for good ("replay", "integrity", "unknown_sender" or
        /// "malformed").
        #[arg(long)]
        json: bool,
    },
    /// Pad bytes left per contact, from the device.
    Contacts {
        #[arg(long)]
        json: bool,
    },
    /// Hand an already sealed PACKAGE (printed by a failed send) to the
    /// relay; removes it from the outbox once the relay has it.
    Resend { name: String, package: String },
    /// List the sealed messages waiting in the outbox (for every relay;
    /// those for --relay are sent by the next `send`, `recv` or
    /// interactive start).
    Outbox {
        /// One JSON object a line: {"user","relay","to","package","sealed_at"}.
        #[arg(long)]
        json: bool,
    },
}

const AFTER_HELP: &str = "\
CONFIGURATION:
  Each setting comes from its flag, else its environment variable, else the
  config file (TOML), else the default:
    --device  OTC_DEVICE   device = \"http://10.0.0.2:9051\"
    --relay   OTC_RELAY    relay = \"http://relay.example:8000\"
    --user    OTC_USER     user = \"alice\"
    --device-timeout OTC_DEVICE_TIMEOUT  device_timeout = 120
    --relay-timeout  OTC_RELAY_TIMEOUT   relay_timeout = 10
    --outbox  OTC_OUTBOX   outbox = \"/path/outbox.jsonl\"  (default
                            $XDG_STATE_HOME/otc/outbox-USER.jsonl, else
                            ~/.local/state/otc/outbox-USER.jsonl)
    --config  OTC_CONFIG   (default $XDG_CONFIG_HOME/otc/config.toml,
                            else ~/.config/otc/config.toml; may be absent)
  Groups for `gs` can be kept in the file:  [groups]  friends = [\"bob\", \"carol\"]
  NO_COLOR (set, non-empty) turns colour off; colour is only used on a terminal.

THE OUTBOX:
  A message is sealed on the device (its pad bytes spent) and then handed
  to the relay. Before the relay is asked, the sealed package (ciphertext)
  is written to the outbox file (fsync'd); it is removed once the relay
  has acknowledged it. Whatever the relay did not take (down, a crash, a
  kill, quitting) is sent first by the next `send`, `recv` or interactive
  start for the same relay; `otc outbox` lists it. If a crash comes after
  the relay took a package but before it left the outbox, it is sent
  again; otc-relay answers that with the ref it gave the first time (it
  keeps one copy per sender, recipient and package). One sender at a
  time hands an entry to the relay: a retry skips an entry that another
  thread or another otc of the same outbox is sending (a lock on
  OUTBOX.claims/SHA256.lock).

THE READ POSITION:
  Kept on the device (GET/PUT /v1/cursor/HOST:PORT of the relay). It moves
  past a message once it is opened or refused for good (it does not open:
  corrupted, forged, replayed; no pad for the sender; not a package). A
  message not opened because the device was busy, unplugged, timed out or
  the owner tapped Reject is fetched again next time.

EXIT STATUS:
  0 done; 1 the device refused or could not be reached, or a message was
  left for next time (nothing lost); 2 bad command line or config (or
  --user is not the device's owner: nothing sealed); 3 the
  relay could not be reached, refused or misbehaved (nothing sealed); 4
  sealed but the relay did not take it (kept in the outbox and sent by the
  next start; the package is also printed for `otc resend`).";

/// Runs `otc` with `args`.
pub fn run(args: Args) -> ExitCode {
    let given = Given {
        config: args.config,
        device: args.device,
        relay: args.relay,
        relay_ca: args.relay_ca,
        insecure_relay: args.insecure_relay,
        user: args.user,
        device_timeout: args.device_timeout,
        relay_timeout: args.relay_timeout,
        outbox: args.outbox,
    };
    let settings = match config::resolve(given) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let chat = match connect(&settings) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let style = Style::detect();
    match args.command {
        None => crate::interactive::run(chat, &settings, style),
        Some(Cmd::Send {
            on_device,
            name,
            text,
        }) => {
            start_flush(&chat, style);
            let names = chat.group(&name).unwrap_or_else(|| {
                name.split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            let text = (!on_device).then(|| text.join(" "));
            let codes: Vec<ExitCode> = names
                .iter()
                .map(|n| send(&chat, n, text.as_deref(), style))
                .collect();
            codes
                .into_iter()
                .find(|c| *c != ExitCode::from(EXIT_OK))
                .unwrap_or(ExitCode::from(EXIT_OK))
        }
        Some(Cmd::Recv { follow, json }) => {
            start_flush(&chat, style);
            recv(&chat, follow, json, style)
        }
        Some(Cmd::Contacts { json }) => contacts(&chat, json),
        Some(Cmd::Resend { name, package }) => match chat.outbox().claim(&package) {
            Ok(None) => fail(
                EXIT_RELAY,
                "not sent: another otc is handing this package to the relay right now; `otc outbox` shows whether it is still waiting",
            ),
            Ok(Some(_claim)) => resend(&chat, &name, &package, style),
            Err(e) => fail(EXIT_USAGE, &format!("not sent: {e}")),
        },
        Some(Cmd::Outbox { json }) => list_outbox(&chat, json),
    }
}

/// `otc resend`, holding the package's claim.
fn resend(chat: &Chat, name: &str, package: &str, style: Style) -> ExitCode {
    match chat.deliver(name, package) {
        Ok(r) => {
            println!("sent to {} (ref {r})", clean(name));
            if let Err(e) = chat.outbox_delivered(package) {
                eprintln!("{}", style.error(&e));
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => fail(EXIT_RELAY, &format!("not sent: {e}")),
    }
}

/// What a retry of the outbox at start did, as one line (None when
/// nothing was waiting).
pub fn start_flush_text(chat: &Chat, emit: &dyn Fn(&Event)) -> Option<(bool, String)> {
    let f = chat.flush_outbox(emit);
    let waiting = f.sent + f.left;
    if waiting == 0 {
        return f
            .error
            .map(|e| (false, format!("cannot read the outbox: {e}")));
    }
    Some(match f.error {
        None => (
            true,
            format!("{waiting} sealed message(s) were waiting; sent"),
        ),
        Some(e) => (
            false,
            format!(
                "{waiting} sealed message(s) were waiting; {} sent, {} kept in the outbox ({}): {e}",
                f.sent,
                f.left,
                chat.outbox().describe()
            ),
        ),
    })
}

/// Sends what is waiting in the outbox for this relay, and says so.
fn start_flush(chat: &Chat, style: Style) {
    let emit = |e: &Event| eprintln!("{}", style.event(e));
    match start_flush_text(chat, &emit) {
        Some((true, t)) => eprintln!("otc: {}", style.ok(&t)),
        Some((false, t)) => eprintln!("otc: {}", style.error(&clean(&t))),
        None => {}
    }
}

fn list_outbox(chat: &Chat, json: bool) -> ExitCode {
    let c = match chat.outbox().contents() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let mine: Vec<_> = c.entries.iter().filter(|e| e.user == chat.user()).collect();
    for n in &c.unreadable {
        eprintln!(
            "otc: line {n} of the outbox {} is not an entry (kept as it is)",
            chat.outbox().describe()
        );
    }
    if json {
        for e in mine {
            json_line(serde_json::to_value(e).unwrap_or_default());
        }
        return ExitCode::from(EXIT_OK);
    }
    if mine.is_empty() {
        println!("the outbox {} is empty", chat.outbox().describe());
    }
    for e in mine {
        let here = if e.relay == chat.cursor_name() {
            ""
        } else {
            " (another relay)"
        };
        println!(
            "sealed at {} (Unix), to {} via {}{here}, {} bytes",
            e.sealed_at,
            clean(&e.to),
            clean(&e.relay),
            e.package.len()
        );
    }
    ExitCode::from(EXIT_OK)
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("otc: {}", clean(msg));
    ExitCode::from(code)
}

/// The device's port when `--device` gives none.
pub const DEVICE_PORT: u16 = 9051;

/// `--device` as a URL: `10.0.0.2` and `10.0.0.2:9051` are taken as
/// `http://10.0.0.2:9051` (the device speaks plain HTTP on its cable, on
/// port 9051 unless its otc.toml says otherwise).
pub fn device_url(given: &str) -> String {
    let given = given.trim();
    let url = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    // Add the port when the authority has none (an IPv6 literal keeps its
    // colons inside brackets).
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let has_port = match authority.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => authority.contains(':'),
    };
    if has_port || authority.is_empty() {
        url
    } else {
        let path = &rest[authority.len()..];
        let scheme = url.split_once("://").map_or("http", |(s, _)| s);
        format!("{scheme}://{authority}:{DEVICE_PORT}{path}")
    }
}

/// A [`Chat`] for `settings` (URLs parsed and resolved, not contacted).
pub fn connect(s: &Settings) -> Result<Chat, String> {
    let device_url = device_url(&s.device);
    let dev =
        HttpUrl::parse(&device_url).map_err(|e| format!("bad device URL {:?}: {e}", s.device))?;
    if dev.tls {
        return Err(format!(
            "bad device URL {:?}: the device speaks plain http:// over its USB link",
            s.device
        ));
    }
    if !dev.prefix.is_empty() {
        return Err(format!(
            "bad device URL {:?}: the device serves at the root (http://HOST:PORT)",
            s.device
        ));
    }
    let addr = dev
        .resolve()
        .map_err(|e| format!("bad device URL {:?}: {e}", s.device))?;
    let device = Client::new(addr).with_timeout(s.device_timeout);
    let opts = RelayOptions {
        ca_file: s.relay_ca.clone(),
        insecure: s.insecure_relay,
    };
    let relay = RelayClient::with_options(&s.relay, &opts)
        .map_err(|e| e.to_string())?
        .with_timeout(s.relay_timeout);
    if s.user.is_empty() || s.user.len() > 64 || s.user.chars().any(char::is_control) {
        return Err("--user must be 1 to 64 bytes with no control characters".into());
    }
    let outbox = match &s.outbox {
        Ok(p) => Outbox::file(p),
        Err(why) => Outbox::nowhere(why.clone()),
    };
    let chat = Chat::new(device, relay, s.user.clone()).with_outbox(outbox);
    for (g, members) in &s.groups {
        chat.set_group(g, members.clone());
    }
    Ok(chat)
}

/// One send: `text`, or with `None` a message written on the device.
fn send(chat: &Chat, to: &str, text: Option<&str>, style: Style) -> ExitCode {
    let emit = |e: &Event| eprintln!("{}", style.event(e));
    let sent = match text {
        Some(text) => chat.send(to, text, &emit),
        None => chat.send_on_device(to, &emit),
    };
    match sent {
        Ok(s) => {
            println!(
                "sent to {} (ref {}, {} pad bytes left)",
                clean(&s.to),
                s.msg_ref,
                s.pad_left
            );
            ExitCode::from(EXIT_OK)
        }
        Err(e @ SendError::Relay(_)) => fail(EXIT_RELAY, &e.to_string()),
        Err(e @ SendError::WrongUser { .. }) => fail(EXIT_USAGE, &e.to_string()),
        Err(SendError::Unsent { to, package, error }) => {
            eprintln!(
                "otc: NOT SENT to {}: sealed, but the relay did not take it: {}",
                clean(&to),
                clean(&error.to_string())
            );
            eprintln!(
                "otc: the pad bytes are spent; the sealed message is kept in the outbox ({}) and sent by the next `otc send` or `otc recv`; or send it yourself with:",
                clean(&chat.outbox().describe())
            );
            eprintln!("otc resend {} {package}", clean(&to));
            ExitCode::from(EXIT_UNSENT)
        }
        Err(e) => fail(EXIT_DEVICE, &e.to_string()),
    }
}

fn json_line(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", json_text(&v));
    let _ = out.flush();
}

/// `v` as one line of JSON that is safe to show on a terminal (issue 23):
/// serde_json escapes C0 controls only, so the C1 controls (U+0080 to
/// U+009F: U+009B is a CSI), DEL, the bidi controls and the line and
/// paragraph separators are written as `\uXXXX` escapes too. They can
/// occur only inside strings, where the escape means the same character:
/// the JSON is unchanged for a parser.
pub fn json_text(v: &serde_json::Value) -> String {
    let raw = v.to_string();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let n = u32::from(c);
        let risky = (0x7f..=0x9f).contains(&n)
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}');
        if risky {
            out.push_str(&format!("\\u{n:04x}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A message as `recv --json` prints it: `text` and `text_b64` are null
/// when it was read on the device (`"read_on_device": true`).
pub fn message_json(m: &Incoming) -> serde_json::Value {
    let (text, text_b64) = if m.read_on_device {
        (None, None)
    } else {
        (m.text.as_deref(), Some(m.text_b64.as_str()))
    };
    serde_json::json!({
        "ref": m.msg_ref,
        "from": m.from,
        "text": text,
        "text_b64": text_b64,
        "warnings": m.warnings,
        "read_on_device": m.read_on_device,
    })
}

fn recv(chat: &Chat, follow: bool, json: bool, style: Style) -> ExitCode {
    let emit = |e: &Event| match e {
        Event::Message(m) if json => json_line(message_json(m)),
        Event::Message(m) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", style.message(m));
            let _ = out.flush();
        }
        Event::Notice(n) => {
            eprintln!("{}", style.notice(n));
            if let (true, Notice::Refused { msg_ref, from, why }) = (json, n) {
                let why = match why {
                    Refusal::Replay => "replay",
                    Refusal::Integrity => "integrity",
                    Refusal::UnknownSender => "unknown_sender",
                    Refusal::Malformed => "malformed",
                };
                json_line(serde_json::json!({"ref": msg_ref, "from": from, "refused": why}));
            }
        }
        Event::Approve(w) => eprintln!("{}", style.approve(w)),
    };
    if !follow {
        return match chat.fetch(&emit) {
            Ok(f) if f.held.is_some() => ExitCode::from(EXIT_DEVICE),
            Ok(_) => ExitCode::from(EXIT_OK),
            Err(e @ FetchError::Relay(_)) => fail(EXIT_RELAY, &e.to_string()),
            Err(e) => fail(EXIT_DEVICE, &e.to_string()),
        };
    }
    let mut relay_down = false;
    loop {
        chat.flush_outbox(&emit);
        match chat.poll(20, &emit) {
            Ok((f, _)) if f.held.is_some() => return ExitCode::from(EXIT_DEVICE),
            Ok(_) => {
                if relay_down {
                    eprintln!("{}", style.ok("the relay answers again"));
                }
                relay_down = false;
            }
            Err(FetchError::Relay(e)) => {
                if !relay_down {
                    eprintln!("{}", style.error(&format!("{e}; trying again every 3 s")));
                }
                relay_down = true;
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(e) => return fail(EXIT_DEVICE, &e.to_string()),
        }
    }
}

fn contacts(chat: &Chat, json: bool) -> ExitCode {
    match chat.contacts() {
        Ok(cs) if json => {
            json_line(serde_json::to_value(&cs).unwrap_or_default());
            ExitCode::from(EXIT_OK)
        }
        Ok(cs) => {
            print!("{}", contacts_table(&cs));
            ExitCode::from(EXIT_OK)
        }
        Err(e) => fail(EXIT_DEVICE, &e.to_string()),
    }
}

/// The `contacts` table.
pub fn contacts_table(cs: &[otc_proto::rpc::ContactInfo]) -> String {
    if cs.is_empty() {
        return "no contacts: make or import a pad on the device\n".into();
    }
    let w = cs
        .iter()
        .map(|c| clean(&c.name).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = format!(
        "{:<w$}  {:>12}  {:>12}  format\n",
        "name", "send left", "receive left"
    );
    for c in cs {
        let damaged = match c.state {
            otc_proto::rpc::ContactState::Damaged => {
                "  DAMAGED: the pad file on the device does not match its record; see its screen"
            }
            otc_proto::rpc::ContactState::Ok => "",
        };
        // Issue 19: its messages are read on the device only.
        let private = if c.private {
            "  private: read on the device only"
        } else {
            ""
        };
        s.push_str(&format!(
            "{:<w$}  {:>12}  {:>12}  {}{private}{damaged}\n",
            clean(&c.name),
            c.send_left,
            c.receive_left,
            c.format
        ));
    }
    s
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn json_lines_escape_c1_bidi_and_separators_and_stay_the_same_json() {
        let text = "a\u{9b}2J b\u{202e}c d\u{2028}e \u{7f} \u{1b}[2J ok é 日本";
        let v = serde_json::json!({"from": "bob\u{2066}", "text": text});
        let line = json_text(&v);
        for bad in [
            '\u{9b}', '\u{202e}', '\u{2028}', '\u{2066}', '\u{7f}', '\u{1b}',
        ] {
            assert!(!line.contains(bad), "{bad:?} raw in {line}");
        }
        assert!(
            line.contains("\\u009b") && line.contains("\\u202e"),
            "{line}"
        );
        assert!(
            line.contains("é 日本"),
            "other characters stay as they are: {line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back, v, "the same JSON for a parser");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: plain http:// to a public relay address is refused
    /// before any traffic unless --insecure-relay; https:// is taken.
    #[test]
    fn plain_http_to_a_public_relay_needs_insecure_relay() {
        let dir = std::env::temp_dir().join(format!("otc-cli-insecure-{}", std::process::id()));
        let given = |relay: &str, insecure_relay: bool| config::Given {
            config: Some(dir.join("none.toml")),
            device: Some("http://127.0.0.1:9051".into()),
            relay: Some(relay.into()),
            user: Some("alice".into()),
            outbox: Some(dir.join("outbox.jsonl")),
            insecure_relay,
            ..config::Given::default()
        };
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("none.toml"), "").expect("write");
        let s = config::resolve(given("http://192.0.2.1:8000", false)).expect("settings");
        let e = connect(&s).err().expect("refused");
        assert!(e.contains("--insecure-relay"), "{e}");
        let s = config::resolve(given("http://192.0.2.1:8000", true)).expect("settings");
        assert!(connect(&s).is_ok());
        let s = config::resolve(given("http://127.0.0.1:8000", false)).expect("settings");
        assert!(connect(&s).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("otc").chain(args.iter().copied()))
    }

    /// Issue 19: `send --on-device NAME` takes no text; `send NAME`
    /// still needs some; giving both is a usage error (exit 2).
    #[test]
    fn send_on_device_takes_no_text() {
        match parse(&["send", "--on-device", "bob"])
            .expect("parsed")
            .command
        {
            Some(Cmd::Send {
                on_device: true,
                name,
                text,
            }) => assert_eq!((name.as_str(), text.len()), ("bob", 0)),
            other => panic!("{other:?}"),
        }
        match parse(&["send", "bob", "hello", "there"])
            .expect("parsed")
            .command
        {
            Some(Cmd::Send {
                on_device: false,
                name,
                text,
            }) => assert_eq!(
                (name.as_str(), text),
                ("bob", vec!["hello".into(), "there".into()])
            ),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["send", "--on-device", "bob", "hello"][..],
            &["send", "bob", "--on-device", "hello"],
        ] {
            let e = parse(bad).expect_err("refused");
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{bad:?}");
            assert!(e.to_string().contains("--on-device"), "{bad:?}: {e}");
        }
        let e = parse(&["send", "bob"]).expect_err("no text");
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
    }

    /// Issue 19: the `recv --json` line of a message read on the device
    /// says so and has no text; an ordinary one keeps its keys.
    #[test]
    fn json_line_of_a_message_read_on_the_device() {
        let m = Incoming {
            msg_ref: 4,
            from: "bob".into(),
            text: None,
            text_b64: String::new(),
            warnings: vec![otc_proto::rpc::Warning::Skipped],
            read_on_device: true,
        };
        assert_eq!(
            message_json(&m),
            serde_json::json!({"ref": 4, "from": "bob", "text": null, "text_b64": null,
                "warnings": ["skipped"], "read_on_device": true})
        );
        let m = Incoming {
            text: Some("hi".into()),
            text_b64: "aGk=".into(),
            warnings: vec![],
            read_on_device: false,
            ..m
        };
        assert_eq!(
            message_json(&m),
            serde_json::json!({"ref": 4, "from": "bob", "text": "hi", "text_b64": "aGk=",
                "warnings": [], "read_on_device": false})
        );
    }

    /// Issue 19: the table marks a private contact; --json has the field.
    #[test]
    fn contacts_show_the_private_flag() {
        let c = |name: &str, private: bool| otc_proto::rpc::ContactInfo {
            name: name.into(),
            pad_id: "00".into(),
            format: otc_proto::Format::V3,
            send_left: 10,
            receive_left: 20,
            state: otc_proto::rpc::ContactState::Ok,
            private,
        };
        let table = contacts_table(&[c("bob", true), c("carol", false)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("bob") && lines[1].contains("private"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("carol") && !lines[2].contains("private"),
            "{table}"
        );
        let v = serde_json::to_value([c("bob", true)]).expect("json");
        assert_eq!(v[0]["private"], true);
    }

    /// Issue 15: `--device 10.0.0.2` was refused for lack of `http://`.
    #[test]
    fn a_device_address_without_scheme_or_port_is_taken() {
        for (given, want) in [
            ("10.0.0.2", "http://10.0.0.2:9051"),
            ("10.0.0.2:9000", "http://10.0.0.2:9000"),
            ("http://10.0.0.2", "http://10.0.0.2:9051"),
            ("http://10.0.0.2:9051", "http://10.0.0.2:9051"),
            ("[fe80::1]", "http://[fe80::1]:9051"),
            ("[fe80::1]:9", "http://[fe80::1]:9"),
            ("otc.local/", "http://otc.local:9051/"),
        ] {
            assert_eq!(device_url(given), want, "{given}");
            assert!(HttpUrl::parse(&device_url(given)).is_ok(), "{given}");
        }
    }
}
