//! The RPC endpoint: versioned HTTP/JSON for the untrusted chat client on
//! the other end of the Ethernet cable.
//!
//! | method + path            | body → reply                                             |
//! |--------------------------|----------------------------------------------------------|
//! | `POST /v1/package`       | `{to, message | message_b64}` → `{package, index, pad_left}` |
//! | `POST /v1/unpackage`     | `{from, package}` → `{message, message_b64, warnings}`   |
//! | `GET /v1/contacts`       | → `{contacts: [{name, pad_id, format, send_left, receive_left, state}]}` (`state`: `ok` or `damaged`) |
//! | `GET /v1/status`         | → `{owner, version, contacts, busy}`                     |
//! | `GET/PUT /v1/cursor/R`   | `{cursor}`: the client's read position on relay `R`       |
//! | `POST /runrpc`           | the original One Time Chat client's calls (`rpc/runrpc.rs`; shapes in [`otc_proto::runrpc`]): the same handlers |
//!
//! Every failure is a non-2xx status with `{"error": {"code", "message"}}`
//! and a stable code ([`ErrorCode`]). A package whose pad range was opened
//! before is refused as `replayed` (410) before any prompt; every other
//! opening failure says `bad_package` and nothing more, except a storage
//! error (disk full, I/O error), which is `internal` (500) on every path:
//! no integrity accounting, nothing spent, an alert that says "storage
//! error". A contact whose pad file does not match its record (found at
//! start) is refused as `damaged_pad` (409) before any prompt. A seal or
//! open the owner approved that then fails is audited (`failed`) and shown
//! in the alerts. Seal and open wait for the owner's tap through the
//! [`Broker`]; nothing is consumed unless the owner approves.
//!
//! [`Service::handle`] is the whole protocol as a function of (method, path,
//! body); [`serve`] puts it on a socket behind [`crate::front`], which
//! bounds connections, sizes and deadlines and checks `Host`, `Origin` and
//! `Content-Type` before anything reaches `handle`.
//!
//! [`Service`] routes requests and runs their flow (check, prompt, seal or
//! open, answer). What it used to do besides has modules of its own (issue
//! 16), under `rpc/`: the lockout and rate policy, the one throttle of
//! limit hits included (`rpc/policy.rs`), the client's read positions
//! (`rpc/read_refs.rs`, [`ReadRefs`]), and the audit log as all threads
//! share it (`rpc/auditor.rs`). [`Limits`] lives in [`crate::config`] and is
//! re-exported here. The endpoint's modules depend on the settings, never
//! the reverse: config → error → audit → platform; rpc → config, audit,
//! confirm, front, platform.

use crate::audit::{AuditLog, Event};
/// Re-exported from [`crate::config`], where it lives.
pub use crate::config::Limits;
use crate::confirm::{Broker, Outcome, Screen};
use crate::pad::{OpenCheck, OpenWarning, Opened, PadStore};
use crate::platform::Platform;
use otc_proto::Format;
use otc_proto::b64;
use otc_proto::routes::{self, Endpoint, Method};
use otc_proto::rpc::{
    ComposeRequest, ContactInfo, ContactsResponse, Cursor, ErrorBody, ErrorCode, PackageRequest,
    PackageResponse, StatusResponse, UnpackageRequest, UnpackageResponse, Warning,
};
use otc_proto::runrpc::valid_relay_name;
use serde::Serialize;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod auditor;
mod policy;
mod read_refs;
mod runrpc;

use auditor::Auditor;
use policy::Policy;
pub use read_refs::{MAX_RELAYS, ReadRefs};

/// A message's bytes on their way to the screen: wiped when dropped, and
/// never printed by `Debug` (a prompt may be logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(pub zeroize::Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: &[u8]) -> Self {
        Plaintext(zeroize::Zeroizing::new(bytes.to_vec()))
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

/// What the owner is asked to approve. Every figure comes from the
/// device's own state; only the byte count of the message is the client's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalPrompt {
    Seal {
        contact: String,
        message_bytes: u64,
        cost: u64,
        pad_left_after: u64,
        /// The message itself, shown on the confirm screen (issue 19:
        /// what you see is what you seal). Its `Debug` names only its size.
        message: Plaintext,
    },
    /// Shown only for a package whose tag verified (the spec's checks 1
    /// to 5 ran before): every figure on it is verified.
    Open {
        contact: String,
        cost: u64,
        /// Messages the partner sent before this one that never arrived,
        /// if any: v3's slot count (the spec's `skipped`); for v1, the
        /// skipped pad bytes in 100-byte messages.
        skipped: Option<u64>,
        /// The screen offers Open for laptop (false: a private contact,
        /// only Read here).
        for_laptop: bool,
    },
}

/// How the owner approved a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Approval {
    /// Approve / They match / **Open for laptop**.
    Approved,
    /// **Read here** on a confirm-open.
    ReadHere,
}

/// Something the device's screen should know about (toasts, home refresh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Sealed {
        contact: String,
    },
    Opened {
        contact: String,
    },
    /// Opened with **Read here**: show the text on the device's screen
    /// (and nowhere else).
    ReadHere {
        contact: String,
        message: Plaintext,
    },
    /// Written and sealed with **Write here**: kept for the device's
    /// conversation screen (and nowhere else).
    WroteHere {
        contact: String,
        message: Plaintext,
    },
    Failed {
        contact: String,
        what: String,
    },
    /// Contacts or pad left changed: refresh the home screen.
    StateChanged,
    /// A new audit event was written.
    Audit(Event),
}

/// A failed request. A replay is `code` [`ErrorCode::Replayed`] (which
/// `/runrpc` reports as the original's `reuse_detected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

fn fail(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

const BAD_PACKAGE: &str = "the package could not be opened";

/// Why a replay may be named (and not just `bad_package`): the laptop
/// hands the device every package and sees every reply, and a package's
/// index is in the clear, so which ranges were opened is nothing it does
/// not know already. The refusal is by range, before any pad byte is read,
/// so it says nothing about pad or tags. See [`ErrorCode::Replayed`].
fn replayed() -> Failure {
    fail(
        ErrorCode::Replayed,
        "this package's pad range was opened before: a replay; refused, nothing was used",
    )
}

fn rate_limited(contact: &str, seconds: u64) -> Failure {
    fail(
        ErrorCode::RateLimited,
        format!(
            "too many packages from {contact:?} were refused (replays, forgeries or junk); \
             try again in {seconds} s"
        ),
    )
}

/// The index of a package that was well formed and in range but whose tag
/// did not verify (a forgery, or damage in transit), if `e` says so.
fn forged_at(e: &crate::pad::Error, package: &[u8], format: Format) -> Option<u64> {
    if !matches!(e, crate::pad::Error::VerifyFailed {}) {
        return None;
    }
    match format {
        Format::V3 => otc_proto::v3::parse(package).ok().map(|p| p.head.text),
        Format::V1 => otc_proto::v1::read_index(package).ok(),
    }
}

fn stopping() -> Failure {
    fail(
        ErrorCode::Cancelled,
        "the device is stopping; nothing was used; try again once it is back",
    )
}

/// A store error as the client sees it: the code from the one mapping
/// (`From<&Error> for ErrorCode`, in [`crate::pad::error`]) and a message that
/// says what to do without internal detail. A storage error (disk full,
/// I/O error) is `internal`, and a pad file that does not match its record
/// `damaged_pad`, on every path. Otherwise, on the opening path
/// (`opening`) nothing is `internal`: every failure that is not about the
/// contact or size is `bad_package`, and its message carries nothing.
fn store_failure(e: &crate::pad::Error, opening: bool) -> Failure {
    use crate::pad::Error as E;
    match (ErrorCode::from(e), e) {
        (ErrorCode::DamagedPad, E::PadDamaged { contact, .. } | E::PadFileMissing { contact }) => {
            fail(
                ErrorCode::DamagedPad,
                format!(
                    "the pad for {contact:?} is damaged on the device (its file does not match \
                     its record), so it cannot be used; nothing was used. The device's home \
                     screen shows it"
                ),
            )
        }
        (ErrorCode::Internal, E::Io { .. }) => fail(
            ErrorCode::Internal,
            "a storage error on the device (disk full or failing): nothing was sealed or \
             opened; try again later, and see the alerts on its screen",
        ),
        (ErrorCode::UnknownContact, E::UnknownContact(name) | E::BadContactName(name)) => fail(
            ErrorCode::UnknownContact,
            format!(
                "no pad for contact {name:?}; GET {} lists them",
                routes::CONTACTS
            ),
        ),
        (ErrorCode::PadExhausted, _) => fail(
            ErrorCode::PadExhausted,
            "the pad for this contact is used up; make a new pad on the device",
        ),
        (ErrorCode::TooLarge, E::TooLarge { need, left, .. }) => fail(
            ErrorCode::TooLarge,
            format!("this message needs {need} pad bytes but only {left} are left"),
        ),
        (ErrorCode::BadPackage, _) => fail(ErrorCode::BadPackage, BAD_PACKAGE),
        (ErrorCode::Replayed, _) => replayed(),
        _ if opening => fail(ErrorCode::BadPackage, BAD_PACKAGE),
        _ => fail(
            ErrorCode::Internal,
            "the device could not complete the request; see the alerts on its screen",
        ),
    }
}

/// Counts the request threads inside [`Service::handle`].
struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The running device: store, broker, audit log, limits.
pub struct Service<S: Screen<Prompt = ApprovalPrompt>> {
    store: Arc<PadStore>,
    broker: Broker<S>,
    /// The audit log, shared by every thread that writes to it.
    auditor: Auditor,
    /// Lockouts and rate limits (of refused packages and limit hits).
    policy: Policy,
    limits: Limits,
    owner: String,
    read_refs: Mutex<ReadRefs>,
    /// Set by [`Service::begin_stop`]: new requests are refused.
    stopping: AtomicBool,
    /// Requests inside [`Service::handle`].
    inflight: AtomicUsize,
    /// See [`Service::raise_start_alerts`].
    start_alerts: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply: status and JSON body.
pub type Reply = (u16, String);

fn json<T: Serialize>(status: u16, body: &T) -> Reply {
    (
        status,
        serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string()),
    )
}

/// What a locked device answers (issue 18, [`crate::lock::Gate`]):
/// `GET /v1/status` says `locked: true` (no owner, no contacts: they are
/// behind the passphrase); every other request, whatever it is, is
/// refused with `locked` (423) before it is parsed, and `/runrpc` with the
/// original client's error shape.
pub fn locked_reply(method: &str, path: &str) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    let endpoint = Endpoint::parse(path);
    if endpoint == Some(Endpoint::Status) && Endpoint::Status.allows(method) {
        return json(
            200,
            &StatusResponse {
                owner: String::new(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                contacts: 0,
                busy: false,
                locked: true,
            },
        );
    }
    let message = "the device is locked: type the passphrase on its screen, then try again";
    if endpoint == Some(Endpoint::RunRpc) && Endpoint::RunRpc.allows(method) {
        return runrpc::call_error(message);
    }
    error_reply(&fail(ErrorCode::Locked, message))
}

fn error_reply(f: &Failure) -> Reply {
    json(
        f.code.http_status(),
        &ErrorBody::new(f.code, f.message.clone()),
    )
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    // Request bodies are JSON objects. serde would also fill a struct from
    // an array (`["bob", "hi"]`), so anything else is refused first.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(fail(
            ErrorCode::BadRequest,
            "invalid request body: expected a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| fail(ErrorCode::BadRequest, format!("invalid request body: {e}")))
}

/// The audit log's action for a message written on the device.
const WRITE_HERE: &str = "write here";

/// The device's screen is taken by another request.
fn busy() -> Failure {
    fail(
        ErrorCode::Busy,
        "another request is waiting on the device's screen; try again in a moment",
    )
}

impl<S: Screen<Prompt = ApprovalPrompt>> Service<S> {
    /// The service over `store`, asking the owner through `broker`,
    /// auditing to `audit`; lockouts and rate limits read the monotonic
    /// clock of `platform`.
    pub fn new(
        store: Arc<PadStore>,
        broker: Broker<S>,
        audit: AuditLog,
        platform: &dyn Platform,
        limits: Limits,
        owner: String,
        notify: Box<dyn Fn(Notice) + Send + Sync>,
    ) -> std::io::Result<Self> {
        let (read_refs, set_aside) =
            ReadRefs::load_or_set_aside(store.vfs(), store.dir(), store.master_key())?;
        Ok(Service {
            store,
            broker,
            auditor: Auditor::new(audit, notify),
            policy: Policy::new(platform.clock(), &limits),
            limits,
            owner,
            read_refs: Mutex::new(read_refs),
            stopping: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            start_alerts: Mutex::new(set_aside.into_iter().collect()),
        })
    }

    /// What the start found and set aside (a damaged read positions file):
    /// audited as alerts once the screen listens ([`Service::audit`]);
    /// the device calls this when its presenter is up.
    pub fn raise_start_alerts(&self) {
        let found = std::mem::take(&mut *lock(&self.start_alerts));
        for detail in found {
            self.audit(Event::TamperDetected { detail });
        }
    }

    /// The first step of a clean stop: refuse new requests (`cancelled`)
    /// and withdraw the prompt on screen, whose client gets `cancelled`
    /// too. Requests past their prompt (sealing, opening) run to the end.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.broker.stop_prompts();
    }

    /// True once [`Service::begin_stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The audit log's deferred chain check is done (see
    /// [`AuditLog::open_quick`]): damage is logged (once) and shown as an
    /// alert; returns the older unacknowledged alerts it found, to show.
    pub fn audit_checked(&self, scan: crate::audit::Scan) -> Vec<crate::audit::Entry> {
        let (older, tamper) = self.auditor.checked(scan);
        if let Some(detail) = tamper {
            self.audit(Event::TamperDetected { detail });
        }
        older
    }

    /// Wait until no request is inside [`Service::handle`], at most `limit`.
    /// True if none is.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.inflight.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Give up the device, keeping its store (to close it cleanly) and its
    /// audit log (to write the `stop` entry after that).
    pub fn into_parts(self) -> (Arc<PadStore>, AuditLog) {
        (self.store, self.auditor.into_log())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &PadStore {
        &self.store
    }

    /// Give up the device, keeping its store (to close it cleanly).
    pub fn into_store(self) -> Arc<PadStore> {
        self.store
    }

    pub fn broker(&self) -> &Broker<S> {
        &self.broker
    }

    /// Write an audit event and tell the screen. An audit write that fails
    /// is reported on the screen; the request's outcome stands.
    ///
    /// Limit hits are logged one by one up to `limits.refused_per_minute`
    /// per limit and minute; past that they are counted and summed up in
    /// one `repeated` entry (a flood of oversized requests must not fill
    /// the log, nor sync it for each).
    /// Tells the screen the device's state changed (the home screen is
    /// rebuilt), e.g. after an unlock.
    pub fn state_changed(&self) {
        self.notify(Notice::StateChanged)
    }

    pub fn audit(&self, event: Event) {
        if let Event::LimitHit { limit, .. } = &event {
            let (logged, summary) = self.policy.limit_hit(limit);
            if let Some(summary) = summary {
                self.auditor.write(summary);
            }
            if !logged {
                return;
            }
        }
        self.auditor.write(event);
    }

    /// Make routine audit entries durable (see [`crate::audit`]), after
    /// summing up the rate-limited refusals of windows that are over.
    pub fn flush_audit(&self) {
        self.sum_up_refusals(false);
        self.auditor.flush();
    }

    /// The screen hears of an audit write that failed (the request's
    /// outcome stands).
    pub fn audit_failed(&self, e: &crate::audit::AuditError) {
        self.auditor.failed(e);
    }

    /// Write one `repeated` entry per contact for the requests the rate
    /// limit refused: for windows that are over, or all of them (`all`,
    /// at stop).
    pub fn sum_up_refusals(&self, all: bool) {
        for summary in self.policy.due_summaries(all) {
            self.audit(summary);
        }
    }

    /// A replay or a refused package from `contact`: counts towards the
    /// rate limit (a window that ended is summed up first).
    fn refused(&self, contact: &str) {
        if let Some(summary) = self.policy.refused(contact) {
            self.audit(summary);
        }
    }

    /// Seconds until `contact` may send packages again, if it sent too
    /// many refused ones in this window (this request is counted, not
    /// audited one by one).
    fn rate_limited(&self, contact: &str) -> Option<u64> {
        let (seconds, summary) = self.policy.rate_limited(contact);
        if let Some(summary) = summary {
            self.audit(summary);
        }
        seconds
    }

    /// Tell the screen something.
    fn notify(&self, notice: Notice) {
        self.auditor.notify(notice)
    }

    /// The whole protocol: `still_wanted` says whether the client is still
    /// connected (polled while a prompt waits). Once the device is stopping
    /// every request gets `cancelled`.
    pub fn handle(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let _inflight = InFlight(&self.inflight);
        let path = path.split('?').next().unwrap_or(path);
        let endpoint = Endpoint::parse(path);
        if self.stopping.load(Ordering::Acquire) {
            if endpoint == Some(Endpoint::RunRpc) && Endpoint::RunRpc.allows(method) {
                return runrpc::call_error(&stopping().message);
            }
            return error_reply(&stopping());
        }
        let result = match endpoint {
            // The relay name is checked before the method, as `cursor` does.
            Some(Endpoint::Cursor(relay)) => self.cursor_endpoint(method, relay, body),
            Some(e) if !e.allows(method) => Err(fail(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}"),
            )),
            Some(Endpoint::Package) => parse(body)
                .and_then(|r| self.seal(r, still_wanted))
                .map(|r| json(200, &r)),
            Some(Endpoint::Unpackage) => parse(body)
                .and_then(|r| self.open(r, still_wanted))
                .map(|r| json(200, &r)),
            Some(Endpoint::Compose) => parse(body)
                .and_then(|r| self.compose(r, still_wanted))
                .map(|r| json(200, &r)),
            Some(Endpoint::RunRpc) => Ok(self.runrpc(body, still_wanted)),
            Some(Endpoint::Contacts) => Ok(self.contacts()),
            Some(Endpoint::Status) => Ok(self.status()),
            None => Err(fail(ErrorCode::NotFound, format!("no endpoint {path}"))),
        };
        // Every entry of an answered request is in the log's file.
        self.auditor.write_out();
        result.unwrap_or_else(|f| error_reply(&f))
    }

    fn confirm(
        &self,
        request: ApprovalPrompt,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<Approval, Failure> {
        let (action, contact, laptop_may_have_it) = match &request {
            ApprovalPrompt::Seal { contact, .. } => ("seal".to_string(), contact.clone(), true),
            ApprovalPrompt::Open {
                contact,
                for_laptop,
                ..
            } => ("open".to_string(), contact.clone(), *for_laptop),
        };
        let is_open = action == "open";
        let (event, result) = match self.broker.confirm(request, still_wanted) {
            // Nothing was shown: nothing to audit.
            Outcome::Busy => return Err(busy()),
            // The prompt was withdrawn; the `stop` entry follows.
            Outcome::Stopped => return Err(stopping()),
            // The screen has no Open for laptop then; a screen that
            // answered Approve anyway is refused, never obeyed.
            Outcome::Approved if !laptop_may_have_it => (
                Event::Rejected { action, contact },
                Err(fail(
                    ErrorCode::Rejected,
                    "this contact's messages are read on the device only",
                )),
            ),
            Outcome::Approved => (Event::Approved { action, contact }, Ok(Approval::Approved)),
            Outcome::ReadHere if is_open => (
                Event::Approved {
                    action: "read here".to_string(),
                    contact,
                },
                Ok(Approval::ReadHere),
            ),
            // Only a confirm-open offers Read here.
            Outcome::ReadHere => (
                Event::Cancelled { action, contact },
                Err(fail(ErrorCode::Rejected, "the request was cancelled")),
            ),
            Outcome::Rejected => (
                Event::Rejected { action, contact },
                Err(fail(
                    ErrorCode::Rejected,
                    "the owner rejected this on the device",
                )),
            ),
            Outcome::TimedOut => (
                Event::TimedOut { action, contact },
                Err(fail(
                    ErrorCode::Timeout,
                    format!(
                        "nobody approved this on the device within {} s",
                        self.broker.timeout().as_secs()
                    ),
                )),
            ),
            Outcome::Cancelled => (
                Event::Cancelled { action, contact },
                Err(fail(ErrorCode::Rejected, "the request was cancelled")),
            ),
        };
        if result.is_ok() {
            // Written with the entry that follows (sealed, opened, failed),
            // or before the reply at the latest (`handle`).
            self.auditor.hold(event);
        } else {
            self.audit(event);
        }
        result
    }

    /// `POST /v1/compose` (issue 19, Write here): the owner writes a
    /// message to `req.to` on the device's keyboard and taps **Seal**; the
    /// laptop gets the package (the `/v1/package` reply), never the text.
    ///
    /// - The contact must have pad for a message before the keyboard shows
    ///   (unknown, exhausted or damaged: refused at once, as a seal is).
    /// - The keyboard holds the broker: no prompt can come up over it
    ///   while the owner types (another request gets `busy`), and the
    ///   keyboard is refused `busy` while a prompt or another flow is up.
    /// - **Cancel** answers `rejected`; the client hanging up takes the
    ///   keyboard away (`rejected`, "cancelled"); the prompt timeout counts
    ///   from the last key press (`timeout`). Each is audited as a seal's.
    /// - Tapping Seal is the approval (audited `approved`, action
    ///   `write here`); the text is wiped from memory once sealed.
    fn compose(
        &self,
        req: ComposeRequest,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<PackageResponse, Failure> {
        let contact = req.to;
        self.store
            .quote(&contact, 1)
            .map_err(|e| store_failure(&e, false))?;
        let Some(hold) = self.broker.hold() else {
            return Err(busy());
        };
        if self.broker.is_stopping() {
            return Err(stopping());
        }
        let Some(ticket) = self.broker.screen().ask_message(&contact) else {
            return Err(fail(
                ErrorCode::BadRequest,
                "this device has no keyboard to write a message on",
            ));
        };
        let text = self.typed_message(&ticket, &contact, still_wanted)?;
        self.audit(Event::Approved {
            action: WRITE_HERE.to_string(),
            contact: contact.clone(),
        });
        let message = text.as_bytes();
        let sealed = self
            .store
            .seal(&contact, message)
            .map_err(|e| self.approved_but_failed("seal", &contact, &e, false))?;
        drop(hold);
        self.audit(Event::Sealed {
            contact: contact.clone(),
            index: sealed.index,
            bytes: message.len() as u64,
            cost: sealed.cost,
        });
        self.notify(Notice::WroteHere {
            contact: contact.clone(),
            message: Plaintext::new(message),
        });
        self.notify(Notice::Sealed { contact });
        self.notify(Notice::StateChanged);
        Ok(PackageResponse {
            package: b64::encode(&sealed.package),
            index: sealed.index,
            pad_left: sealed.pad_left,
        })
    }

    /// Wait for the message the owner types on the device's keyboard for
    /// `contact` (`/v1/compose`): the text once they tap Done, or why
    /// not (cancelled on the device, the screen busy, or
    /// [`Self::compose_ended`]), audited.
    fn typed_message(
        &self,
        ticket: &otc_ui::TextTicket,
        contact: &str,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<zeroize::Zeroizing<String>, Failure> {
        let since = self.broker.clock().now();
        loop {
            match ticket.wait_timeout(self.broker.poll_interval()) {
                Some(otc_ui::TextAnswer::Done(t)) => return Ok(zeroize::Zeroizing::new(t)),
                Some(otc_ui::TextAnswer::Busy) => return Err(busy()),
                Some(otc_ui::TextAnswer::Cancelled) => {
                    self.audit(Event::Rejected {
                        action: WRITE_HERE.to_string(),
                        contact: contact.to_string(),
                    });
                    return Err(fail(
                        ErrorCode::Rejected,
                        "the owner cancelled the message on the device",
                    ));
                }
                None => {}
            }
            let since = since.max(ticket.last_key_at());
            if let Some((event, failure)) = self.compose_ended(contact, since, still_wanted) {
                self.broker.screen().cancel_message(ticket);
                if let Some(e) = event {
                    self.audit(e);
                }
                return Err(failure);
            }
        }
    }

    /// Whether a message being written must end before it is done: the
    /// device stopping, the laptop gone, or no key for the timeout
    /// (counted from `since`, the last key press); with the entry to audit.
    fn compose_ended(
        &self,
        contact: &str,
        since: Duration,
        still_wanted: &dyn Fn() -> bool,
    ) -> Option<(Option<Event>, Failure)> {
        let timeout = self.broker.timeout();
        let (action, contact) = (WRITE_HERE.to_string(), contact.to_string());
        if self.broker.is_stopping() {
            Some((None, stopping()))
        } else if !still_wanted() {
            Some((
                Some(Event::Cancelled { action, contact }),
                fail(ErrorCode::Rejected, "the request was cancelled"),
            ))
        } else if self.broker.clock().now().saturating_sub(since) >= timeout {
            Some((
                Some(Event::TimedOut { action, contact }),
                fail(
                    ErrorCode::Timeout,
                    format!(
                        "no key was pressed on the device for {} s",
                        timeout.as_secs()
                    ),
                ),
            ))
        } else {
            None
        }
    }

    /// `POST /v1/package` (and the original's `package`): seal a message
    /// once the owner approves.
    fn seal(
        &self,
        req: PackageRequest,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<PackageResponse, Failure> {
        let message = match (req.message, req.message_b64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b)) => b64::decode(&b)
                .map_err(|e| fail(ErrorCode::BadRequest, format!("message_b64: {e}")))?,
            _ => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "give exactly one of \"message\" and \"message_b64\"",
                ));
            }
        };
        if message.len() > self.limits.max_message_bytes {
            self.audit(Event::LimitHit {
                limit: "max_message_bytes".into(),
                detail: format!("{} bytes", message.len()),
            });
            return Err(fail(
                ErrorCode::TooLarge,
                format!(
                    "the message is {} bytes; the limit is {}",
                    message.len(),
                    self.limits.max_message_bytes
                ),
            ));
        }
        let quote = self
            .store
            .quote(&req.to, message.len())
            .map_err(|e| store_failure(&e, false))?;
        self.confirm(
            ApprovalPrompt::Seal {
                contact: req.to.clone(),
                message_bytes: message.len() as u64,
                cost: quote.cost,
                pad_left_after: quote.pad_left_after,
                message: Plaintext::new(&message),
            },
            still_wanted,
        )?;
        let sealed = self
            .store
            .seal(&req.to, &message)
            .map_err(|e| self.approved_but_failed("seal", &req.to, &e, false))?;
        self.audit(Event::Sealed {
            contact: req.to.clone(),
            index: sealed.index,
            bytes: message.len() as u64,
            cost: sealed.cost,
        });
        self.notify(Notice::Sealed { contact: req.to });
        self.notify(Notice::StateChanged);
        Ok(PackageResponse {
            package: b64::encode(&sealed.package),
            index: sealed.index,
            pad_left: sealed.pad_left,
        })
    }

    /// A seal or open the owner approved failed in the store: audited
    /// (an alert that says what happened: "storage error" for a disk that
    /// is full or failing), shown on the screen, answered as
    /// [`store_failure`] says.
    fn approved_but_failed(
        &self,
        action: &str,
        contact: &str,
        e: &crate::pad::Error,
        opening: bool,
    ) -> Failure {
        let reason = match e {
            crate::pad::Error::Io { .. } => format!("storage error: {e}"),
            _ => e.to_string(),
        };
        self.audit(Event::Failed {
            action: action.to_string(),
            contact: contact.to_string(),
            reason,
        });
        self.notify(Notice::Failed {
            contact: contact.to_string(),
            what: match e {
                crate::pad::Error::Io { .. } => format!("storage error: could not {action}"),
                _ => format!("could not {action}"),
            },
        });
        store_failure(e, opening)
    }

    fn open_failed(&self, contact: &str, index: Option<u64>) {
        self.refused(contact);
        if let Some(index) = index {
            self.audit(Event::IntegrityFailure {
                contact: contact.to_string(),
                index,
            });
        }
        self.notify(Notice::Failed {
            contact: contact.to_string(),
            what: "a package did not open".into(),
        });
        if let Some(locked_out) = self.policy.open_failed(contact) {
            self.audit(locked_out);
        }
    }

    /// A contact locked out (too many opens that failed after approval) is
    /// refused before anything is read. (Packages refused before a prompt
    /// never lock a contact out; see [`Service::check_before_prompt`].)
    fn refuse_if_limited(&self, contact: &str) -> Result<(), Failure> {
        if self.policy.locked_out(contact) {
            return Err(fail(
                ErrorCode::LockedOut,
                format!(
                    "too many packages from {contact:?} failed to open; try again in up to {} s",
                    self.limits.lockout_seconds
                ),
            ));
        }
        Ok(())
    }

    /// Everything that refuses a package before a prompt, with nothing
    /// spent: malformed, out of range, a replay, or a tag that does not
    /// verify (the store's `check_open` runs the spec's checks 1 to 5, or
    /// v1's range checks and HMAC). A refusal is answered at once
    /// (`replayed` or `bad_package`), audited and shown on the screen, and
    /// counted towards the per-contact rate limit; past the limit it is
    /// answered `rate_limited` and summed up in the audit log. It never
    /// counts towards the lockout, and the rate limit never holds back a
    /// package that verifies: junk cannot block genuine mail.
    fn check_before_prompt(
        &self,
        contact: &str,
        format: Format,
        package: &[u8],
    ) -> Result<OpenCheck, Failure> {
        let e = match self.store.check_open(contact, package) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let f = store_failure(&e, true);
        if !matches!(f.code, ErrorCode::BadPackage | ErrorCode::Replayed) {
            return Err(f);
        }
        if let Some(seconds) = self.rate_limited(contact) {
            return Err(rate_limited(contact, seconds));
        }
        if let crate::pad::Error::Replay { index } = e {
            return Err(self.replay_refused(contact, index));
        }
        self.refused(contact);
        if let Some(index) = forged_at(&e, package, format) {
            // A well-formed package whose tag did not verify: a forgery
            // or damage in transit. Worth an alert.
            self.audit(Event::IntegrityFailure {
                contact: contact.to_string(),
                index,
            });
        }
        self.notify(Notice::Failed {
            contact: contact.to_string(),
            what: "a package was refused before opening".into(),
        });
        Err(f)
    }

    /// A replay from `contact` at `index`: audited, shown on the screen,
    /// counted towards the rate limit, answered `replayed`.
    fn replay_refused(&self, contact: &str, index: u64) -> Failure {
        self.audit(Event::Replay {
            contact: contact.to_string(),
            index,
        });
        // Not a failed open for the lockout: a client re-fetching old
        // packages from a relay is not guessing tags, and a replay is
        // refused by range without touching pad bytes. It does count
        // towards the rate limit (each one is an audit entry).
        self.refused(contact);
        self.notify(Notice::Failed {
            contact: contact.to_string(),
            what: "a replayed package was refused".into(),
        });
        replayed()
    }

    /// Open an approved package; a failure of the package's own is counted
    /// towards the lockout.
    fn open_approved(
        &self,
        contact: &str,
        package: &[u8],
        check: &OpenCheck,
    ) -> Result<Opened, Failure> {
        match self.store.open(contact, package) {
            Ok(o) => Ok(o),
            // Opened meanwhile by another request for the same range
            // (approved while this one waited): still a replay.
            Err(crate::pad::Error::Replay { index }) => Err(self.replay_refused(contact, index)),
            Err(e) => {
                // A range an old version burned (`RangeBurned`) never gets
                // here: the check before the prompt refuses it
                // (`firmware/tests/legacy_burned.rs`).
                let f = store_failure(&e, true);
                if f.code == ErrorCode::BadPackage {
                    self.open_failed(contact, Some(check.index));
                    Err(f)
                } else {
                    // Not the package's fault (a storage error): no
                    // integrity accounting, and the message opens later.
                    Err(self.approved_but_failed("open", contact, &e, true))
                }
            }
        }
    }

    /// `POST /v1/unpackage` (and the original's `unpackage`): open a
    /// package once the owner approves.
    fn open(
        &self,
        req: UnpackageRequest,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<UnpackageResponse, Failure> {
        let package = b64::decode(&req.package)
            .map_err(|e| fail(ErrorCode::BadRequest, format!("package: {e}")))?;
        let contact = req.from;
        // Unknown contacts are told apart from locked ones and bad packages.
        let info = self
            .store
            .contact(&contact)
            .map_err(|e| store_failure(&e, false))?;
        self.refuse_if_limited(&contact)?;
        let check = self.check_before_prompt(&contact, info.format, &package)?;
        let (skipped, skipped_bytes) = match check.warnings.first() {
            Some(OpenWarning::Skipped { messages, bytes }) => (Some(*messages), Some(*bytes)),
            None => (None, None),
        };
        let approval = self.confirm(
            ApprovalPrompt::Open {
                contact: contact.clone(),
                cost: check.cost,
                skipped,
                // A private contact's text is for the device's screen
                // only: the prompt has no Open for laptop, whatever the
                // request (issue 19).
                for_laptop: !info.private,
            },
            still_wanted,
        )?;
        let opened = self.open_approved(&contact, &package, &check)?;
        // A genuine package from this contact: earlier failures no longer
        // count towards a lockout.
        self.policy.opened(&contact);
        if let (Some(messages), Some(bytes)) = (skipped, skipped_bytes) {
            self.audit(Event::Skipped {
                contact: contact.clone(),
                index: opened.index,
                bytes,
                messages,
            });
        }
        self.audit(Event::Opened {
            contact: contact.clone(),
            index: opened.index,
            bytes: opened.message.len() as u64,
            cost: opened.cost,
        });
        // Read here shows the message itself instead of the toast.
        if approval != Approval::ReadHere {
            self.notify(Notice::Opened {
                contact: contact.clone(),
            });
        }
        self.notify(Notice::StateChanged);
        let mut warnings = Vec::new();
        if skipped.is_some() {
            warnings.push(Warning::Skipped);
        }
        if approval == Approval::ReadHere {
            // The text goes to the screen only (wiped when dropped); the
            // laptop learns that it was read, nothing of it.
            let message = Plaintext(zeroize::Zeroizing::new(opened.message));
            self.notify(Notice::ReadHere { contact, message });
            return Ok(UnpackageResponse {
                message: None,
                message_b64: String::new(),
                warnings,
                read_on_device: true,
            });
        }
        let message_b64 = b64::encode(&opened.message);
        let message = String::from_utf8(opened.message).ok();
        Ok(UnpackageResponse {
            message,
            message_b64,
            warnings,
            read_on_device: false,
        })
    }

    fn contacts(&self) -> Reply {
        let contacts = self
            .store
            .list()
            .into_iter()
            .map(|c| ContactInfo {
                name: c.name,
                pad_id: c.pad_id,
                format: c.format,
                send_left: c.send_left,
                receive_left: c.receive_left,
                state: c.state,
                private: c.private,
            })
            .collect();
        json(200, &ContactsResponse { contacts })
    }

    fn status(&self) -> Reply {
        json(
            200,
            &StatusResponse {
                owner: self.owner.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                contacts: self.store.contacts().len(),
                busy: self.broker.is_busy(),
                locked: false,
            },
        )
    }

    fn cursor_endpoint(&self, method: &str, relay: &str, body: &[u8]) -> Result<Reply, Failure> {
        check_relay_name(relay)?;
        match Method::parse(method) {
            Some(Method::Get) => {
                let cursor = self.read_ref(relay)?.unwrap_or(0);
                Ok(json(200, &Cursor { cursor }))
            }
            Some(Method::Put) => {
                let c: Cursor = parse(body)?;
                self.save_read_ref(relay, c.cursor)?;
                Ok(json(200, &c))
            }
            _ => Err(fail(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on cursors; use GET or PUT"),
            )),
        }
    }

    /// The client's read position on `relay`, if it was ever saved
    /// (`GET /v1/cursor/{relay}` says 0 then; the original's
    /// `get_next_ref` says `null`).
    fn read_ref(&self, relay: &str) -> Result<Option<u64>, Failure> {
        check_relay_name(relay)?;
        Ok(lock(&self.read_refs).get(relay))
    }

    /// Save the client's read position on `relay` (durably, see
    /// [`ReadRefs`]).
    fn save_read_ref(&self, relay: &str, cursor: u64) -> Result<(), Failure> {
        check_relay_name(relay)?;
        let mut refs = lock(&self.read_refs);
        if !refs.has_room_for(relay) {
            return Err(fail(
                ErrorCode::TooLarge,
                format!(
                    "the device keeps read positions for at most {MAX_RELAYS} relays, \
                     and {relay:?} is not one of them"
                ),
            ));
        }
        refs.set(self.store.vfs(), relay, cursor)
            .map_err(|_| fail(ErrorCode::Internal, "the device could not save the cursor"))
    }
}

fn check_relay_name(relay: &str) -> Result<(), Failure> {
    if valid_relay_name(relay) {
        Ok(())
    } else {
        Err(fail(
            ErrorCode::BadRequest,
            "relay names are 1 to 128 characters of letters, digits, '.', '-', '_' or ':'",
        ))
    }
}

/// Serve `device` on `listener` until `stop` is set, behind the front
/// layer ([`crate::front`]): at most `limits.max_open_connections`
/// connections, at most `limits.max_in_flight` requests handled at once,
/// bounded heads and bodies with deadlines, and only requests whose `Host`
/// is an IP literal or one of `allowed_hosts` (names, see
/// [`crate::front::allowed_names`]).
pub fn serve<S>(
    device: Arc<Service<S>>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    allowed_hosts: Vec<String>,
    heartbeat: crate::watchdog::Heartbeat,
) -> std::io::Result<()>
where
    S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static,
{
    let settings = front_settings(&device.limits, allowed_hosts);
    crate::front::serve(device, listener, stop, settings, heartbeat)
}

/// The front layer's settings from the device's limits.
pub fn front_settings(l: &Limits, allowed_hosts: Vec<String>) -> crate::front::Settings {
    crate::front::Settings {
        max_open_connections: l.max_open_connections,
        max_in_flight: l.max_in_flight,
        max_header_bytes: l.max_header_bytes,
        max_body_bytes: l.max_body_bytes,
        header_timeout: Duration::from_millis(l.header_timeout_ms),
        body_timeout: Duration::from_millis(l.body_timeout_ms),
        allowed_hosts,
    }
}

impl<S> crate::front::Handler for Service<S>
where
    S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static,
{
    fn handle(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply {
        Service::handle(self, method, path, body, still_wanted)
    }

    fn limit_hit(&self, limit: &str, detail: &str) {
        self.audit(Event::LimitHit {
            limit: limit.to_string(),
            detail: detail.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    //! Issue #9, "Prove": the whole seal path (request, prompt, approval,
    //! pad spent, audit) on the platform's test twin, with no thread
    //! sleeps: fake clocks, a seeded RNG, a screen twin that approves.

    use super::*;
    use crate::confirm::Decision;
    use crate::pad::generate::{NewPad, create_pad_with};
    use crate::platform::TestPlatform;
    use otc_proto::Format;
    use otc_proto::rpc::PackageResponse;

    const WALL: u64 = 1_700_000_123;

    /// The owner approves every prompt at once; the twin counts prompts.
    #[derive(Default)]
    struct Approves(AtomicUsize);

    impl Screen for Approves {
        type Prompt = ApprovalPrompt;
        type Ticket = ();
        fn show(&self, _prompt: ApprovalPrompt) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
        fn wait(&self, _ticket: &(), _wait: Duration) -> Option<Decision> {
            Some(Decision::Approve)
        }
        fn withdraw(&self, _ticket: &()) {}
    }

    /// The owner approves every prompt, after `before_approving` ran (once).
    struct ApprovesAfter {
        shown: AtomicUsize,
        before_approving: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Screen for ApprovesAfter {
        type Prompt = ApprovalPrompt;
        type Ticket = ();
        fn show(&self, _prompt: ApprovalPrompt) {
            self.shown.fetch_add(1, Ordering::AcqRel);
        }
        fn wait(&self, _ticket: &(), _wait: Duration) -> Option<Decision> {
            if let Some(f) = lock(&self.before_approving).take() {
                f();
            }
            Some(Decision::Approve)
        }
        fn withdraw(&self, _ticket: &()) {}
    }

    /// Issue 18: in an encrypted data directory the read positions are
    /// sealed under the master key: the file shows no relay name or
    /// number, another key cannot read it, and the positions load back.
    #[test]
    fn read_positions_are_sealed_under_the_master_key() {
        use crate::pad::vault::{self, KdfParams};
        use crate::pad::vfs::RealFs;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let key = vault::create(&RealFs, &dir, b"p", &KdfParams::TEST).unwrap();
        let store = PadStore::open_dir_keyed(&dir, Default::default(), Some(key)).unwrap();
        let mut refs =
            ReadRefs::load_with_key(store.vfs(), store.dir(), store.master_key()).unwrap();
        refs.set(store.vfs(), "relay.example", 123456789).unwrap();
        let raw = std::fs::read(dir.join("cursors.json")).unwrap();
        for needle in [&b"relay.example"[..], b"123456789"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
        let back = ReadRefs::load_with_key(store.vfs(), store.dir(), store.master_key()).unwrap();
        assert_eq!(back.get("relay.example"), Some(123456789));
        // Plain or under another key: refused, not misread.
        assert!(ReadRefs::load(store.vfs(), store.dir()).is_err());
        let other_dir = tmp.path().join("o");
        std::fs::create_dir(&other_dir).unwrap();
        let other = vault::create(&RealFs, &other_dir, b"p", &KdfParams::TEST).unwrap();
        assert!(ReadRefs::load_with_key(store.vfs(), store.dir(), Some(&other)).is_err());
    }

    /// Issue 23 part 8: a damaged `cursors.json` (garbage, cut, sealed
    /// under another key) does not stop the device: it is set aside as
    /// `cursors.json.damaged`, its bytes kept, the positions start empty,
    /// and the reason is given for the alert; a second damaged file does
    /// not overwrite the first one set aside. A good file loads as before.
    #[test]
    fn a_damaged_read_positions_file_is_set_aside_not_fatal() {
        use crate::pad::vfs::RealFs;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("cursors.json");
        std::fs::write(&file, b"not json at all\x00\xff").unwrap();
        let (refs, why) = ReadRefs::load_or_set_aside(&RealFs, dir, None).expect("starts");
        assert_eq!(refs.get("relay.example"), None);
        let why = why.expect("it says what it did");
        assert!(
            why.contains("cursors.json") && why.contains("cursors.json.damaged"),
            "{why}"
        );
        assert!(!file.exists());
        assert_eq!(
            std::fs::read(dir.join("cursors.json.damaged")).unwrap(),
            b"not json at all\x00\xff"
        );
        // Saving works again, and a second damaged file is kept apart.
        let mut refs = refs;
        refs.set(&RealFs, "relay.example", 7).unwrap();
        std::fs::write(&file, b"{\"relay.example\": ").unwrap();
        let (_, why) = ReadRefs::load_or_set_aside(&RealFs, dir, None).unwrap();
        assert!(why.unwrap().contains("cursors.json.damaged-2"));
        assert!(dir.join("cursors.json.damaged").exists());
        // A good file: loaded, nothing set aside.
        let mut refs = ReadRefs::load(&RealFs, dir).unwrap();
        refs.set(&RealFs, "relay.example", 9).unwrap();
        let (back, why) = ReadRefs::load_or_set_aside(&RealFs, dir, None).unwrap();
        assert_eq!((back.get("relay.example"), why), (Some(9), None));
    }

    #[test]
    fn a_range_opened_while_its_prompt_was_up_is_still_a_replay() {
        // The package passed the check before the prompt, then its range
        // was opened (by another request) while the owner looked at the
        // prompt: the approved open finds a replay, answers `replayed`,
        // audits `replay` (not an integrity failure) and spends nothing
        // more.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alice");
        let bob_dir = tmp.path().join("bob");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&bob_dir).unwrap();
        let store = Arc::new(PadStore::open_dir(&dir).unwrap());
        let platform = Arc::new(TestPlatform::new(WALL, 7));
        let export = tmp.path().join("bob.otcpad");
        create_pad_with(
            platform.as_ref(),
            &store,
            &NewPad {
                contact: "bob".into(),
                size: 64 * 1024,
                split: None,
                format: Format::V3,
                source: None,
                export: export.clone(),
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let bob = PadStore::open_dir(&bob_dir).unwrap();
        crate::pad::export::import(&bob, &export, "alice", &mut |_, _| {}).unwrap();
        let package = bob.seal("alice", b"only once").unwrap().package;
        let full = store.list()[0].receive_left;

        let other = store.clone();
        let first = package.clone();
        let screen = ApprovesAfter {
            shown: AtomicUsize::new(0),
            before_approving: Mutex::new(Some(Box::new(move || {
                other.open("bob", &first).expect("the other opener");
            }))),
        };
        let wall = platform.clone();
        let (audit, _) =
            AuditLog::open_with_clock(&dir, Box::new(move || wall.unix_now())).unwrap();
        let broker = Broker::new(screen, platform.clock(), Duration::from_secs(30));
        let device = Service::new(
            store,
            broker,
            audit,
            platform.as_ref(),
            Limits::default(),
            "alice".into(),
            Box::new(|_| {}),
        )
        .unwrap();
        let body = serde_json::json!({"from": "bob", "package": b64::encode(&package)});
        let (status, reply) = device.handle(
            "POST",
            routes::UNPACKAGE,
            body.to_string().as_bytes(),
            &|| true,
        );
        assert_eq!(status, 410, "{reply}");
        let reply: ErrorBody = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply.error.code, ErrorCode::Replayed);
        assert_eq!(device.broker.screen().shown.load(Ordering::Acquire), 1);
        let cost = Format::V3.pad_cost(b"only once".len()) as u64;
        let (store, mut audit) = device.into_parts();
        assert_eq!(store.list()[0].receive_left, full - cost, "spent once");
        audit.flush().unwrap();
        let kinds: Vec<String> = crate::audit::check(&dir)
            .unwrap()
            .entries
            .iter()
            .map(|e| {
                let v = serde_json::to_value(&e.event).unwrap();
                v["kind"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert!(kinds.iter().any(|k| k == "replay"), "{kinds:?}");
        assert!(!kinds.iter().any(|k| k == "integrity_failure"), "{kinds:?}");
    }

    #[test]
    fn seal_runs_through_the_test_platform() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let store = PadStore::open_dir(&dir).unwrap();
        let platform = Arc::new(TestPlatform::new(WALL, 42));
        // The pad itself is made from the twin's seeded RNG.
        create_pad_with(
            platform.as_ref(),
            &store,
            &NewPad {
                contact: "bob".into(),
                size: 64 * 1024,
                split: None,
                format: Format::V3,
                source: None,
                export: tmp.path().join("bob.otcpad"),
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let before = store.list()[0].send_left;

        let wall = platform.clone();
        let (audit, _) =
            AuditLog::open_with_clock(&dir, Box::new(move || wall.unix_now())).unwrap();
        let broker = Broker::new(
            Approves::default(),
            platform.clock(),
            Duration::from_secs(30),
        );
        let device = Service::new(
            Arc::new(store),
            broker,
            audit,
            platform.as_ref(),
            Limits::default(),
            "alice".into(),
            Box::new(|_| {}),
        )
        .unwrap();

        let (status, body) = device.handle(
            "POST",
            routes::PACKAGE,
            br#"{"to": "bob", "message": "attack at dawn"}"#,
            &|| true,
        );
        assert_eq!(status, 200, "{body}");
        let reply: PackageResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(reply.index, 0);
        assert!(reply.pad_left < before, "the seal spent pad");
        assert_eq!(device.broker.screen().0.load(Ordering::Acquire), 1);

        let (store, mut audit) = device.into_parts();
        assert_eq!(store.list()[0].send_left, reply.pad_left);
        audit.flush().unwrap();
        let entries = crate::audit::check(&dir).unwrap().entries;
        let sealed = entries
            .iter()
            .find(|e| matches!(e.event, Event::Sealed { .. }))
            .expect("a sealed entry");
        assert_eq!(sealed.time, WALL, "stamped by the twin's wall clock");
        assert!(entries.iter().all(|e| e.time == WALL));
    }
}
