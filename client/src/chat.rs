//! The chat engine: sending (seal on the device, hand to the relay) and
//! receiving (fetch from the relay, open on the device, move the read
//! position kept on the device), with no terminal in it. The interactive
//! client, the one-shot commands and the tests all drive a [`Chat`].
//!
//! Device and relay calls go through the one typed client
//! (`otc_rpc_client`). Device operations are serialized by one lock (the
//! device shows one prompt at a time); a long poll on the relay holds no
//! lock, so the user can send while the background poller waits.
//!
//! # What moves the read position
//!
//! The read position (`/v1/cursor/{relay}` on the device) is the ref of the
//! first message not yet dealt with. It moves past a message only when that
//! message is *settled*: opened, or failed **for good**. See
//! [`fails_for_good`] for which device answers are final. Any other
//! failure (the device unplugged, busy, timed out, the owner tapped Reject,
//! locked, rate limited, stopping) leaves the message where it is, stops
//! the batch there (later messages are not opened either, since the
//! position cannot jump over a message), and the message is fetched again
//! next time.

use crate::outbox::{Entry, Outbox};
use otc_proto::relay::RelayMessage;
use otc_proto::rpc::{
    ComposeRequest, ContactInfo, ContactState, ErrorCode, PackageRequest, PackageResponse,
    UnpackageRequest, Warning,
};
use otc_rpc_client::relay::{RelayClient, RelayClientError};
use otc_rpc_client::{Client, ClientError};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Messages asked for per `/getmessages`.
pub const BATCH: u64 = 20;
/// Batches one [`Chat::fetch`] takes at most (a relay that always says
/// there is more cannot keep a fetch going for ever; the next fetch goes
/// on from the saved read position).
pub const MAX_BATCHES: usize = 50;
/// Shortest time between two polls that brought nothing: a relay that
/// ignores `wait` (the original) answers at once, and the client must not
/// ask it again at once.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Warnings kept for the `log` command.
pub const LOG_LEN: usize = 200;
/// Longest wait for a message written on the device (`/v1/compose`): the
/// device's own timeout counts from the last key press, so the owner may
/// type for a long time; this only bounds a device that never answers.
pub const COMPOSE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Attempts at handing a sealed package to the relay before it is left
/// in the outbox.
pub const SEND_ATTEMPTS: u32 = 3;

/// True when a device error on *opening* is final: asking again can never
/// open this message, so the read position may move past it.
///
/// - `replayed`: the package's pad range was opened before on this device
///   (by this client or any other, in this process or an earlier one); it
///   was refused before any prompt, with no pad spent, and can never open.
/// - `bad_package`: the package does not open (corrupted or forged); the
///   device burns nothing for one failure, and the same bytes fail the
///   same way again.
/// - `unknown_contact`: no pad for the sender on this device.
/// - `bad_request`: the contents are not a package at all (not base64).
/// - `too_large`, `pad_exhausted`: the package claims more pad than the
///   contact has left.
///
/// Everything else is not final and leaves the message to be fetched again:
/// `rejected` (the owner may approve next time), `timeout`, `busy`,
/// `locked`, `rate_limited`, `cancelled`, `overloaded`, `internal` (a
/// storage error on the device, such as a full disk: the message opens once
/// there is room), `damaged_pad` (the sender's pad file on the device does
/// not match its record: the message opens if the owner puts the right file
/// back; once the owner removes the damaged pad the device says
/// `unknown_contact`, which is final), any transport error (unplugged, no
/// answer), and the codes that mean the client is talking to the wrong
/// thing (`not_found`, `bad_host`, ...).
pub fn fails_for_good(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Replayed
            | ErrorCode::BadPackage
            | ErrorCode::UnknownContact
            | ErrorCode::BadRequest
            | ErrorCode::TooLarge
            | ErrorCode::PadExhausted
    )
}

/// A message opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub msg_ref: u64,
    pub from: String,
    /// The text, or `None` when the message is not UTF-8 or was read on
    /// the device.
    pub text: Option<String>,
    /// The bytes, base64 (empty when read on the device).
    pub text_b64: String,
    /// What the device warned about (skipped messages before this one).
    pub warnings: Vec<Warning>,
    /// The owner read it on the device's screen (**Read here**, or a
    /// private contact, issue 19): the laptop never had the text. It is
    /// opened all the same (the pad is spent, the read position moves).
    pub read_on_device: bool,
}

/// Why a message was given up on for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The same pad range was opened before on the device (the device
    /// says so: `replayed`): a replay, refused without spending pad.
    Replay,
    /// It does not open (`bad_package`): corrupted or forged.
    Integrity,
    /// The sender has no pad on this device.
    UnknownSender,
    /// Not a package, or claims more pad than is left.
    Malformed,
}

/// Something the user should see, besides opened messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Messages from `from` were skipped before this one (dropped by the
    /// relay, or still to come out of order).
    Skipped { msg_ref: u64, from: String },
    /// A message given up on for good; the read position moved past it.
    Refused {
        msg_ref: u64,
        from: String,
        why: Refusal,
    },
    /// A message not opened this time (device busy, unplugged, rejected,
    /// ...); it will be fetched again.
    Held {
        msg_ref: u64,
        from: String,
        error: String,
    },
    /// Opened, but the device did not save the new read position.
    CursorNotSaved { error: String },
    /// A sealed message the relay would not take, kept for retry.
    Unsent { to: String, error: String },
    /// The outbox file could not be written or read.
    Outbox { error: String },
    /// A message from the outbox finally delivered.
    Delivered { to: String, msg_ref: u64 },
    /// The read position was past every ref the relay ever gave out (a
    /// bogus ref from a hostile reply, or a relay started afresh): it was
    /// moved back to the relay's next ref.
    Rewound { from: u64, to: u64 },
}

impl Notice {
    /// True for the warnings of the report (replay, skipped, integrity).
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            Notice::Skipped { .. }
                | Notice::Refused {
                    why: Refusal::Replay | Refusal::Integrity,
                    ..
                }
        )
    }

    /// The notice as one plain line (no colour).
    pub fn text(&self) -> String {
        match self {
            Notice::Skipped { msg_ref, from } => format!(
                "WARNING skipped: messages from {from} before this one (ref {msg_ref}) never arrived; the relay dropped or is holding them"
            ),
            Notice::Refused { msg_ref, from, why } => match why {
                Refusal::Replay => format!(
                    "WARNING replay: message ref {msg_ref} from {from} reuses a pad range already opened; refused, no pad spent"
                ),
                Refusal::Integrity => format!(
                    "WARNING integrity: message ref {msg_ref} from {from} does not open (corrupted or forged); refused"
                ),
                Refusal::UnknownSender => format!(
                    "message ref {msg_ref} from {from} cannot be opened: no pad for {from} on the device; skipped"
                ),
                Refusal::Malformed => format!(
                    "message ref {msg_ref} from {from} is not a package this device can open; skipped"
                ),
            },
            Notice::Held {
                msg_ref,
                from,
                error,
            } => format!(
                "message ref {msg_ref} from {from} not opened: {error}; it will be fetched again"
            ),
            Notice::CursorNotSaved { error } => {
                format!("the device did not save the read position: {error}")
            }
            Notice::Unsent { to, error } => format!(
                "NOT SENT to {to}: {error}; the sealed message is kept in the outbox and retried on the next fetch"
            ),
            Notice::Outbox { error } => format!("outbox: {error}"),
            Notice::Delivered { to, msg_ref } => {
                format!("delivered to {to} from the outbox (ref {msg_ref})")
            }
            Notice::Rewound { from, to } => format!(
                "the read position {from} is past every ref the relay gave out (its next is {to}): reading from {to}"
            ),
        }
    }
}

/// What a [`Chat`] reports while it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The device is showing a prompt and waits for the owner's tap.
    Approve(String),
    Message(Incoming),
    Notice(Notice),
}

/// A sent message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub to: String,
    pub msg_ref: u64,
    pub pad_left: u64,
}

/// Why a send failed. Only [`SendError::Unsent`] has spent pad.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no pad for {0:?} on the device (`contacts` lists who you can write to)")]
    UnknownContact(String),
    /// `--user` is not the device's owner: the receivers' devices know
    /// the sender by the owner's name, so nothing sealed under another
    /// name could be opened. Checked before anything is sealed.
    #[error(
        "you are --user {user:?} but this device belongs to {owner:?}: your contacts' devices know you by that name, so they could not open what you send. Nothing was sealed; start otc with --user {owner:?} (or OTC_USER, or user = in the config file)"
    )]
    WrongUser { user: String, owner: String },
    #[error(
        "not sent (nothing sealed, no pad spent): the pad for {0:?} is damaged on the device (its file does not match the device's record); see the device's home screen"
    )]
    DamagedPad(String),
    #[error(
        "the message to {to} needs {need} pad bytes but only {left} are left; send something shorter"
    )]
    TooLarge { to: String, need: u64, left: u64 },
    #[error("not sent: {0}")]
    Device(ClientError),
    #[error("not sent (nothing sealed, no pad spent): {0}")]
    Relay(RelayClientError),
    #[error("not sent (nothing sealed, no pad spent): {0}")]
    Outbox(String),
    #[error(
        "NOT SENT: sealed, but the relay did not take it: {error}. The pad bytes are spent; the package is kept"
    )]
    Unsent {
        to: String,
        package: String,
        error: RelayClientError,
    },
}

/// Why a fetch stopped before the relay had nothing more.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Relay(RelayClientError),
    #[error("{0}")]
    Device(ClientError),
}

/// What one fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Messages opened.
    pub opened: usize,
    /// Messages given up on for good.
    pub refused: usize,
    /// The ref of a message left to be fetched again (device busy, ...).
    pub held: Option<u64>,
    /// The read position afterwards.
    pub cursor: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Settled,
    Held,
}

/// One entry of the `log`.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub at: SystemTime,
    pub notice: Notice,
}

/// What a retry of the outbox did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Delivered now.
    pub sent: usize,
    /// Still waiting (for this user and relay).
    pub left: usize,
    /// Being sent by someone else right now (a `send` of this process,
    /// or another `otc` sharing the outbox): skipped.
    pub busy: usize,
    /// Why the first one left was not taken.
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    /// The read position as last read from or written to the device.
    cursor: Option<u64>,
    /// True when `cursor` is ahead of what the device has saved.
    cursor_dirty: bool,
    /// Refs this process opened (so a ref whose position was not saved is
    /// not opened twice).
    opened_refs: HashSet<u64>,
}

/// A chat session of one user, on one device and one relay.
pub struct Chat {
    device: Client,
    relay: RelayClient,
    user: String,
    cursor_name: String,
    state: Mutex<State>,
    log: Mutex<VecDeque<LogEntry>>,
    groups: Mutex<BTreeMap<String, Vec<String>>>,
    outbox: Outbox,
    /// One retry of the outbox at a time in this process.
    flushing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Chat {
    pub fn new(device: Client, relay: RelayClient, user: impl Into<String>) -> Chat {
        let cursor_name = relay.cursor_name();
        Chat {
            device,
            relay,
            user: user.into(),
            cursor_name,
            state: Mutex::new(State::default()),
            log: Mutex::new(VecDeque::new()),
            groups: Mutex::new(BTreeMap::new()),
            outbox: Outbox::memory(),
            flushing: Mutex::new(()),
        }
    }

    /// Keeps sealed packages the relay has not taken in `outbox` (the
    /// default is in memory only).
    pub fn with_outbox(mut self, outbox: Outbox) -> Chat {
        self.outbox = outbox;
        self
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> &Client {
        &self.device
    }

    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// The name the read position is kept under on the device.
    pub fn cursor_name(&self) -> &str {
        &self.cursor_name
    }

    /// Define (or replace) a group.
    pub fn set_group(&self, name: &str, members: Vec<String>) {
        lock(&self.groups).insert(name.to_string(), members);
    }

    pub fn group(&self, name: &str) -> Option<Vec<String>> {
        lock(&self.groups).get(name).cloned()
    }

    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        lock(&self.groups).clone()
    }

    /// Recent notices, oldest first.
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.log).iter().cloned().collect()
    }

    /// Sealed messages of this user for this relay that the relay has not
    /// taken yet (0 when the outbox cannot be read).
    pub fn outbox_len(&self) -> usize {
        self.outbox
            .pending(&self.user, &self.cursor_name)
            .map_or(0, |v| v.len())
    }

    /// Removes `package` from the outbox once the relay has it (`otc
    /// resend`); true if it was there.
    pub fn outbox_delivered(&self, package: &str) -> Result<bool, String> {
        self.outbox.remove(package)
    }

    fn note(&self, n: Notice, emit: &dyn Fn(&Event)) {
        {
            let mut log = lock(&self.log);
            if log.len() == LOG_LEN {
                log.pop_front();
            }
            log.push_back(LogEntry {
                at: SystemTime::now(),
                notice: n.clone(),
            });
        }
        emit(&Event::Notice(n));
    }

    /// The contacts on the device.
    pub fn contacts(&self) -> Result<Vec<ContactInfo>, ClientError> {
        self.device.contacts()
    }

    /// The read position (from the device the first time).
    pub fn cursor(&self) -> Result<u64, ClientError> {
        let mut st = lock(&self.state);
        self.cursor_locked(&mut st)
    }

    /// The read position as the device has it now (another client on the
    /// same device may have moved it), or ours if we are ahead (a save
    /// that failed).
    fn refresh_cursor(&self) -> Result<u64, ClientError> {
        let mut st = lock(&self.state);
        let saved = self.device.cursor(&self.cursor_name)?;
        let c = st.cursor.map_or(saved, |ours| ours.max(saved));
        st.cursor = Some(c);
        Ok(c)
    }

    fn cursor_locked(&self, st: &mut State) -> Result<u64, ClientError> {
        if let Some(c) = st.cursor {
            return Ok(c);
        }
        let c = self.device.cursor(&self.cursor_name)?;
        st.cursor = Some(c);
        Ok(c)
    }

    /// Seal `text` for `to` on the device and hand it to the relay. `Ok`
    /// only once the relay has acknowledged exactly this package.
    pub fn send(&self, to: &str, text: &str, emit: &dyn Fn(&Event)) -> Result<Sent, SendError> {
        self.seal_and_send(to, Some(text), emit)
    }

    /// Have the owner write a message to `to` on the device's own
    /// keyboard and seal it there (`/v1/compose`, issue 19: the laptop
    /// never sees the text), then hand the package to the relay exactly as
    /// [`Chat::send`] does (outbox, retries, [`SendError::Unsent`]).
    ///
    /// The device ends the keyboard after its prompt timeout *without a
    /// key press*, so the call may take long: it waits up to
    /// [`COMPOSE_TIMEOUT`] (or the device timeout if that is longer).
    /// **Cancel** on the device is `rejected` ([`SendError::Device`]),
    /// with nothing sealed.
    pub fn send_on_device(&self, to: &str, emit: &dyn Fn(&Event)) -> Result<Sent, SendError> {
        self.seal_and_send(to, None, emit)
    }

    /// [`Chat::send`] with `Some(text)`, [`Chat::send_on_device`] with
    /// `None`.
    fn seal_and_send(
        &self,
        to: &str,
        text: Option<&str>,
        emit: &dyn Fn(&Event),
    ) -> Result<Sent, SendError> {
        let st = lock(&self.state);
        // Checked here so that the owner is not asked for something that
        // cannot work, and so that the reason is plain.
        let owner = self.device.status().map_err(SendError::Device)?.owner;
        if owner != self.user {
            return Err(SendError::WrongUser {
                user: self.user.clone(),
                owner,
            });
        }
        let contacts = self.device.contacts().map_err(SendError::Device)?;
        let c = contacts
            .iter()
            .find(|c| c.name == to)
            .ok_or_else(|| SendError::UnknownContact(to.to_string()))?;
        if c.state == ContactState::Damaged {
            return Err(SendError::DamagedPad(to.to_string()));
        }
        if let Some(text) = text {
            let need = c.format.pad_cost(text.len()) as u64;
            if need > c.send_left {
                return Err(SendError::TooLarge {
                    to: to.to_string(),
                    need,
                    left: c.send_left,
                });
            }
        }
        // A relay that is down, or an outbox that cannot be written, is
        // found out before any pad is spent.
        self.relay.check().map_err(SendError::Relay)?;
        self.outbox.check().map_err(SendError::Outbox)?;
        let refused = |e: ClientError| match e.code() {
            Some(ErrorCode::UnknownContact) => SendError::UnknownContact(to.to_string()),
            Some(ErrorCode::DamagedPad) => SendError::DamagedPad(to.to_string()),
            _ => SendError::Device(e),
        };
        let sealed = match text {
            Some(text) => {
                emit(&Event::Approve(format!(
                    "approve on the device… (seal {} bytes for {to})",
                    text.len()
                )));
                self.device
                    .package(&PackageRequest {
                        to: to.to_string(),
                        message: Some(text.to_string()),
                        message_b64: None,
                    })
                    .map_err(refused)?
            }
            None => {
                emit(&Event::Approve(format!(
                    "write the message to {to} on the device's keyboard and tap Seal…"
                )));
                let timeout = COMPOSE_TIMEOUT.max(self.device.timeout());
                self.device
                    .clone()
                    .with_timeout(timeout)
                    .compose(&ComposeRequest { to: to.to_string() })
                    .map_err(refused)?
            }
        };
        drop(st);
        self.hand_over(to, sealed, emit)
    }

    /// The part of a send after the seal: the package into the outbox,
    /// then to the relay.
    fn hand_over(
        &self,
        to: &str,
        sealed: PackageResponse,
        emit: &dyn Fn(&Event),
    ) -> Result<Sent, SendError> {
        // This package's claim, taken before it is in the outbox: a retry
        // of the outbox (the background thread, another `otc` of this
        // user) skips it while this send hands it to the relay.
        let _claim = match self.outbox.claim(&sealed.package) {
            Ok(c) => c,
            Err(error) => {
                self.note(Notice::Outbox { error }, emit);
                None
            }
        };
        // Kept before the relay is asked, so that a crash from here on
        // loses nothing; the next start sends it.
        if let Err(error) = self.outbox.add(Entry::new(
            &self.user,
            &self.cursor_name,
            to,
            &sealed.package,
        )) {
            self.note(Notice::Outbox { error }, emit);
        }
        match self.deliver(to, &sealed.package) {
            Ok(msg_ref) => {
                if let Err(error) = self.outbox.remove(&sealed.package) {
                    self.note(
                        Notice::Outbox {
                            error: format!(
                                "{error}; the message was delivered, and may be sent again at the next start (the relay answers that with the ref it gave)"
                            ),
                        },
                        emit,
                    );
                }
                Ok(Sent {
                    to: to.to_string(),
                    msg_ref,
                    pad_left: sealed.pad_left,
                })
            }
            Err(error) => {
                self.note(
                    Notice::Unsent {
                        to: to.to_string(),
                        error: error.to_string(),
                    },
                    &|_| {},
                );
                Err(SendError::Unsent {
                    to: to.to_string(),
                    package: sealed.package,
                    error,
                })
            }
        }
    }

    /// Hand an already sealed package to the relay (a few attempts).
    pub fn deliver(&self, to: &str, package: &str) -> Result<u64, RelayClientError> {
        let mut attempt = 1;
        loop {
            match self.relay.send(&self.user, to, package) {
                Ok(r) => return Ok(r.msg_ref),
                // The relay answered and refused: asking again is no use.
                Err(e @ RelayClientError::Refused { .. }) => return Err(e),
                Err(e) if attempt >= SEND_ATTEMPTS => return Err(e),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(300 * u64::from(attempt)));
                    attempt += 1;
                }
            }
        }
    }

    /// Try the outbox again: this user's packages for this relay, oldest
    /// first, one attempt each; stops at the first the relay does not take.
    pub fn flush_outbox(&self, emit: &dyn Fn(&Event)) -> Flushed {
        let _one = lock(&self.flushing);
        let mut done = Flushed::default();
        let pending = match self.outbox.pending(&self.user, &self.cursor_name) {
            Ok(p) => p,
            Err(error) => {
                done.error = Some(error.clone());
                self.note(Notice::Outbox { error }, emit);
                return done;
            }
        };
        for (i, e) in pending.iter().enumerate() {
            // One sender per entry (the outbox module's docs).
            let _claim = match self.outbox.claim(&e.package) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    done.busy += 1;
                    continue;
                }
                Err(error) => {
                    done.left = pending.len() - i;
                    done.error = Some(error.clone());
                    self.note(Notice::Outbox { error }, emit);
                    break;
                }
            };
            // Its holder may have delivered it just before letting go.
            match self.outbox.holds(&e.package) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    done.left = pending.len() - i;
                    done.error = Some(error.clone());
                    self.note(Notice::Outbox { error }, emit);
                    break;
                }
            }
            match self.relay.send(&self.user, &e.to, &e.package) {
                Ok(r) => {
                    done.sent += 1;
                    if let Err(error) = self.outbox.remove(&e.package) {
                        // Sent again next time: the relay answers with
                        // the ref it gave.
                        self.note(Notice::Outbox { error }, emit);
                    }
                    self.note(
                        Notice::Delivered {
                            to: e.to.clone(),
                            msg_ref: r.msg_ref,
                        },
                        emit,
                    );
                }
                Err(err) => {
                    done.left = pending.len() - i;
                    done.error = Some(err.to_string());
                    break;
                }
            }
        }
        done
    }

    /// Fetch and open everything the relay has from the read position on
    /// (several batches if need be), without waiting.
    pub fn fetch(&self, emit: &dyn Fn(&Event)) -> Result<Fetched, FetchError> {
        self.flush_outbox(emit);
        let mut total = Fetched::default();
        for _ in 0..MAX_BATCHES {
            let (f, complete) = self.fetch_once(None, emit)?;
            total.opened += f.opened;
            total.refused += f.refused;
            total.held = f.held;
            total.cursor = f.cursor;
            if complete || f.held.is_some() {
                break;
            }
        }
        Ok(total)
    }

    /// One long poll of `wait` seconds ([`Chat::fetch_once`]); when it
    /// brought nothing, it takes at least [`MIN_POLL_INTERVAL`], so that a
    /// loop of polls does not spin on a relay without long poll.
    pub fn poll(&self, wait: u64, emit: &dyn Fn(&Event)) -> Result<(Fetched, bool), FetchError> {
        let started = std::time::Instant::now();
        let r = self.fetch_once(Some(wait), emit);
        if let Ok((f, _)) = &r
            && f.opened + f.refused == 0
            && f.held.is_none()
        {
            std::thread::sleep(MIN_POLL_INTERVAL.saturating_sub(started.elapsed()));
        }
        r
    }

    /// One batch; with `wait`, a long poll of that many seconds when there
    /// is nothing yet. Returns what was done and whether the relay had
    /// nothing more.
    pub fn fetch_once(
        &self,
        wait: Option<u64>,
        emit: &dyn Fn(&Event),
    ) -> Result<(Fetched, bool), FetchError> {
        let start = self.refresh_cursor().map_err(FetchError::Device)?;
        // No lock while the relay holds the request.
        let batch = self
            .relay
            .get_messages(&self.user, start, BATCH, wait)
            .map_err(FetchError::Relay)?;
        // A long poll may have waited while another client on the same
        // device opened some of these: read the position again.
        if wait.is_some() && !batch.messages.is_empty() {
            self.refresh_cursor().map_err(FetchError::Device)?;
        }
        if batch.messages.is_empty() && batch.complete && start > 0 {
            // A position no relay ref ever reached (left by a bogus ref in
            // a hostile reply) would skip every real message for good.
            if let Ok(next) = self.relay.next_ref(&self.user)
                && next < start
            {
                let mut st = lock(&self.state);
                st.cursor = Some(next);
                st.cursor_dirty = true;
                self.save_cursor(&mut st, emit);
                self.note(
                    Notice::Rewound {
                        from: start,
                        to: next,
                    },
                    emit,
                );
                return Ok((
                    Fetched {
                        cursor: next,
                        ..Fetched::default()
                    },
                    false,
                ));
            }
        }
        let mut st = lock(&self.state);
        let mut done = Fetched {
            cursor: self.cursor_locked(&mut st).map_err(FetchError::Device)?,
            ..Fetched::default()
        };
        for m in &batch.messages {
            // Dealt with meanwhile (another fetch of this session).
            if m.msg_ref < done.cursor {
                continue;
            }
            let (verdict, opened) = if st.opened_refs.contains(&m.msg_ref) {
                (Verdict::Settled, None)
            } else {
                self.open(&mut st, m, &mut done, emit)
            };
            if verdict == Verdict::Held {
                done.held = Some(m.msg_ref);
                return Ok((done, false));
            }
            done.cursor = m.msg_ref + 1;
            st.cursor = Some(done.cursor);
            st.cursor_dirty = true;
            self.save_cursor(&mut st, emit);
            // Shown once the position is saved: a script that stops
            // after reading a message will not be given it again.
            if let Some(incoming) = opened {
                emit(&Event::Message(incoming));
            }
        }
        Ok((done, batch.complete))
    }

    fn save_cursor(&self, st: &mut State, emit: &dyn Fn(&Event)) {
        let Some(c) = st.cursor.filter(|_| st.cursor_dirty) else {
            return;
        };
        match self.device.set_cursor(&self.cursor_name, c) {
            Ok(_) => st.cursor_dirty = false,
            Err(e) => self.note(
                Notice::CursorNotSaved {
                    error: e.to_string(),
                },
                emit,
            ),
        }
    }

    fn open(
        &self,
        st: &mut State,
        m: &RelayMessage,
        done: &mut Fetched,
        emit: &dyn Fn(&Event),
    ) -> (Verdict, Option<Incoming>) {
        emit(&Event::Approve(format!(
            "approve on the device… (open message ref {} from {})",
            m.msg_ref, m.sender_uid
        )));
        let reply = self.device.unpackage(&UnpackageRequest {
            from: m.sender_uid.clone(),
            package: m.contents.clone(),
        });
        match reply {
            Ok(r) => {
                st.opened_refs.insert(m.msg_ref);
                if r.warnings.contains(&Warning::Skipped) {
                    self.note(
                        Notice::Skipped {
                            msg_ref: m.msg_ref,
                            from: m.sender_uid.clone(),
                        },
                        emit,
                    );
                }
                done.opened += 1;
                let incoming = Incoming {
                    msg_ref: m.msg_ref,
                    from: m.sender_uid.clone(),
                    // Whatever such a reply carries besides the flag, no
                    // text is shown for a message read on the device.
                    text: r.message.filter(|_| !r.read_on_device),
                    text_b64: if r.read_on_device {
                        String::new()
                    } else {
                        r.message_b64
                    },
                    warnings: r.warnings,
                    read_on_device: r.read_on_device,
                };
                (Verdict::Settled, Some(incoming))
            }
            Err(e) if e.code().is_some_and(fails_for_good) => {
                // The device tells a replay (refused by range, before any
                // prompt) from a package that does not verify.
                let why = match e.code() {
                    Some(ErrorCode::Replayed) => Refusal::Replay,
                    Some(ErrorCode::BadPackage) => Refusal::Integrity,
                    Some(ErrorCode::UnknownContact) => Refusal::UnknownSender,
                    _ => Refusal::Malformed,
                };
                done.refused += 1;
                self.note(
                    Notice::Refused {
                        msg_ref: m.msg_ref,
                        from: m.sender_uid.clone(),
                        why,
                    },
                    emit,
                );
                (Verdict::Settled, None)
            }
            Err(e) => {
                self.note(
                    Notice::Held {
                        msg_ref: m.msg_ref,
                        from: m.sender_uid.clone(),
                        error: e.to_string(),
                    },
                    emit,
                );
                (Verdict::Held, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision of what is final, pinned: changing it changes what a
    /// user can lose.
    #[test]
    fn which_device_errors_are_for_good() {
        use ErrorCode as E;
        let final_ = [
            E::Replayed,
            E::BadPackage,
            E::UnknownContact,
            E::BadRequest,
            E::TooLarge,
            E::PadExhausted,
        ];
        let again = [
            E::Rejected,
            E::Timeout,
            E::Busy,
            E::Locked,
            E::LockedOut,
            E::RateLimited,
            E::Cancelled,
            E::Overloaded,
            E::Internal,
            E::DamagedPad,
            E::NotFound,
            E::MethodNotAllowed,
            E::UnsupportedMediaType,
            E::BadHost,
            E::ForbiddenOrigin,
        ];
        for c in final_ {
            assert!(fails_for_good(c), "{c:?}");
        }
        for c in again {
            assert!(!fails_for_good(c), "{c:?}");
        }
    }
}
