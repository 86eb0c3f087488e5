//! `otc-device run`: the pad store, the broker, the audit log and the RPC
//! endpoint, wired to the screen.
//!
//! The screen runs on its own thread ([`otc_ui::Ui::spawn`]); the RPC
//! endpoint on another; the broker posts prompts to the screen through
//! [`UiScreen`] and waits for the owner's tap. What the screen shows comes
//! from the device's own state: the home screen is rebuilt from the pad
//! store after every seal and open, and audit events become the alerts list
//! (alerts never acknowledged come back from the audit log at start;
//! opening the alerts screen acknowledges them, audited as `ack`).
//! `run` stops cleanly on SIGTERM/SIGINT ([`Running::stop`]).
//! Clocks and the link state come from one [`Platform`] bundle.
//! [`start`] is also what the integration tests use, with a memory display,
//! a scripted touch source and the platform's test twin
//! ([`crate::platform::TestPlatform`]: fake clocks); the RPC bench uses
//! [`start_with_screen`] with its own auto-approving screen twin.

use crate::audit::{AuditLog, Event, Opened};
use crate::board;
use crate::confirm::{Broker, Screen};
use crate::error::{Error, Result};
use crate::net::{self, Bind};
use crate::pad::{PadStore, Side};
use crate::platform::{Platform, RealPlatform};
use crate::rpc::{self, ApprovalPrompt, Notice, Service};
use crate::watchdog::{self, Heartbeat, Pulse, Watchdog};
use otc_ui::texts::{self, Happened};
use otc_ui::{
    AlertView, ContactView, Decision, Display, HomeView, LinkView, Prompt, PromptTicket, Toast,
    ToastKind, Touch, UiConfig, UiEvent, UiHandle, UiThread, WarningView,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::audit::ALERTS_KEPT;

/// How long a clean stop waits, in all, for requests past their prompt to
/// finish and for their threads to let go of the device. The whole stop
/// must end within 2 s.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// The broker's view of the touchscreen.
pub struct UiScreen {
    handle: UiHandle,
    timeout: Duration,
}

/// Estimated count of messages behind `bytes` of skipped pad (100-byte
/// messages in the contact's format), at least 1.
fn skipped_messages(bytes: u64, cost_of_100: u64) -> u64 {
    bytes.div_ceil(cost_of_100.max(1)).max(1)
}

impl UiScreen {
    pub fn new(handle: UiHandle, timeout: Duration) -> Self {
        UiScreen { handle, timeout }
    }

    /// The view model for a broker request.
    pub fn prompt(&self, r: &ApprovalPrompt) -> Prompt {
        match r {
            ApprovalPrompt::Seal {
                contact,
                message_bytes,
                cost,
                pad_left_after,
            } => Prompt::Seal {
                contact: contact.clone(),
                message_bytes: *message_bytes,
                cost_bytes: *cost,
                pad_left_after: *pad_left_after,
                timeout: self.timeout,
                client_note: None,
            },
            ApprovalPrompt::Open {
                contact,
                cost,
                skipped_bytes,
                cost_of_100,
            } => Prompt::Open {
                contact: contact.clone(),
                cost_bytes: *cost,
                warnings: skipped_bytes
                    .map(|b| WarningView::Skipped {
                        count: skipped_messages(b, *cost_of_100),
                    })
                    .into_iter()
                    .collect(),
                timeout: self.timeout,
                client_note: None,
            },
        }
    }
}

impl Screen for UiScreen {
    type Prompt = ApprovalPrompt;
    type Ticket = PromptTicket;

    fn show(&self, request: ApprovalPrompt) -> PromptTicket {
        self.handle.show_prompt(self.prompt(&request))
    }

    fn wait(&self, ticket: &PromptTicket, wait: Duration) -> Option<Decision> {
        ticket.wait_timeout(wait)
    }

    fn withdraw(&self, ticket: &PromptTicket) {
        self.handle.cancel(ticket)
    }
}

/// Where the endpoint is, as the home screen shows it.
#[derive(Clone, Debug)]
pub enum Link {
    Interface(String),
    Loopback(SocketAddr),
}

impl Link {
    fn view(&self, platform: &dyn Platform) -> LinkView {
        match self {
            Link::Interface(name) => LinkView {
                up: platform.link_up(name),
                address: platform.ipv4(name).map(|a| a.to_string()),
                loopback: false,
            },
            Link::Loopback(addr) => LinkView {
                up: true,
                address: Some(addr.to_string()),
                loopback: true,
            },
        }
    }
}

/// The home screen from the store's own figures (the link state from
/// `platform`).
pub fn home_view(
    owner: &str,
    store: &PadStore,
    link: &Link,
    platform: &dyn Platform,
    unseen_alerts: u32,
) -> HomeView {
    HomeView {
        owner: owner.to_string(),
        contacts: store
            .list()
            .into_iter()
            .map(|c| {
                let region = match c.side {
                    Side::A => c.split,
                    Side::B => c.size - c.split,
                };
                ContactView {
                    name: c.name,
                    pad_left_bytes: c.send_left,
                    pad_total_bytes: region,
                    messages_left: c.send_messages_left,
                }
            })
            .collect(),
        link: link.view(platform),
        unseen_alerts,
    }
}

/// An audit event as the screen tells it (the words are otc-ui's, see
/// [`otc_ui::texts`]), and whether it is red (red ones are the alerts the
/// owner must acknowledge, [`Event::is_alert`]).
pub fn alert_text(e: &Event) -> (String, bool) {
    (texts::alert_text(&happened(e)), e.is_alert())
}

/// The screen's view of an audit event: the fields it shows.
fn happened(e: &Event) -> Happened {
    let c = |s: &String| s.clone();
    match e {
        Event::Approved { action, contact } => Happened::Approved {
            action: c(action),
            contact: c(contact),
        },
        Event::Rejected { action, contact } => Happened::Rejected {
            action: c(action),
            contact: c(contact),
        },
        Event::TimedOut { action, contact } => Happened::TimedOut {
            action: c(action),
            contact: c(contact),
        },
        Event::Cancelled { action, contact } => Happened::Cancelled {
            action: c(action),
            contact: c(contact),
        },
        Event::Sealed { contact, bytes, .. } => Happened::Sealed {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::Opened { contact, bytes, .. } => Happened::Opened {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::IntegrityFailure { contact, index } => Happened::IntegrityFailure {
            contact: c(contact),
            index: *index,
        },
        Event::Replay { contact, index } => Happened::Replay {
            contact: c(contact),
            index: *index,
        },
        Event::Skipped { contact, bytes, .. } => Happened::Skipped {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::Burned { contact, index, .. } => Happened::Burned {
            contact: c(contact),
            index: *index,
        },
        Event::LockedOut { contact, seconds } => Happened::LockedOut {
            contact: c(contact),
            seconds: *seconds,
        },
        Event::LimitHit { limit, detail } => Happened::LimitHit {
            limit: c(limit),
            detail: c(detail),
        },
        Event::PadCreated { contact, bytes, .. } => Happened::PadCreated {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::PadImported { contact, bytes, .. } => Happened::PadImported {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::PadRemoved { contact, .. } => Happened::PadRemoved {
            contact: c(contact),
        },
        Event::TamperDetected { detail } => Happened::TamperDetected { detail: c(detail) },
        Event::Started { version } => Happened::Started {
            version: c(version),
        },
        Event::Stop => Happened::Stop,
        Event::Ack { alerts } => Happened::Ack { alerts: *alerts },
        Event::Repeated {
            what,
            contact,
            count,
        } => Happened::Repeated {
            what: c(what),
            contact: c(contact),
            count: *count,
        },
    }
}

/// How often, at most, the presenter updates the screen: what changed in
/// between is sent as one update, and drawn as one frame.
const FRAME: Duration = Duration::from_millis(33);

/// The screen-facing side of the device (the presenter): the alerts list
/// and the home view. Request threads only note what changed (an alert
/// row, a toast, "the home figures moved"); [`present`] sends it to the
/// UI at most once per [`FRAME`], so a burst of requests (a seal brings two
/// audit events, a toast and a home refresh) costs each request a push
/// onto a list, and the UI one model update and one redraw per frame. The
/// UI keeps the alerts list; only new rows are sent.
struct Face {
    ui: UiHandle,
    owner: String,
    store: Arc<PadStore>,
    link: Link,
    platform: Arc<dyn Platform>,
    /// Alerts not seen by the owner yet (the home screen's count).
    unseen: Mutex<u32>,
    changes: Arc<Changes>,
}

/// What changed on screen since the presenter last sent it.
#[derive(Default)]
struct Changed {
    /// New alert rows, oldest first (as they happened).
    newer: Vec<AlertView>,
    /// Rows from before this start, newest first, to go below the rest.
    older: Vec<AlertView>,
    toast: Option<Toast>,
    home: bool,
    /// The face is gone: the presenter ends.
    closed: bool,
}

impl Changed {
    fn any(&self) -> bool {
        !self.newer.is_empty() || !self.older.is_empty() || self.toast.is_some() || self.home
    }
}

/// [`Changed`], shared by the face and its presenter thread.
#[derive(Default)]
struct Changes {
    changed: Mutex<Changed>,
    wake: std::sync::Condvar,
}

impl Changes {
    fn note(&self, f: impl FnOnce(&mut Changed)) {
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c);
        drop(c);
        self.wake.notify_one();
    }

    /// The next changes to send, once there are any and a frame has
    /// passed since `last`; `None` once the face is gone.
    fn next(&self, last: std::time::Instant) -> Option<Changed> {
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        while !c.any() && !c.closed {
            c = self.wake.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        if c.closed {
            return None;
        }
        drop(c);
        // Let the rest of a burst join this update.
        std::thread::sleep((last + FRAME).saturating_duration_since(std::time::Instant::now()));
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        Some(std::mem::take(&mut *c))
    }
}

impl Drop for Face {
    fn drop(&mut self) {
        self.changes.note(|c| c.closed = true);
    }
}

/// The presenter: sends the face's changes to the UI, at most once per
/// [`FRAME`], until the face is gone.
fn present(face: std::sync::Weak<Face>, changes: Arc<Changes>) {
    let start = std::time::Instant::now();
    let mut last = start.checked_sub(FRAME).unwrap_or(start);
    while let Some(changed) = changes.next(last) {
        let Some(face) = face.upgrade() else {
            return;
        };
        face.send(changed);
        last = std::time::Instant::now();
    }
}

impl Face {
    /// A face on `ui`, with its presenter thread.
    fn spawn(
        ui: UiHandle,
        owner: String,
        store: Arc<PadStore>,
        link: Link,
        platform: Arc<dyn Platform>,
        unseen: u32,
    ) -> Result<Arc<Face>> {
        let changes = Arc::new(Changes::default());
        let face = Arc::new(Face {
            ui,
            owner,
            store,
            link,
            platform,
            unseen: Mutex::new(unseen),
            changes: changes.clone(),
        });
        let weak = Arc::downgrade(&face);
        std::thread::Builder::new()
            .name("otc-presenter".into())
            .spawn(move || present(weak, changes))
            .map_err(|e| Error::io("cannot start the presenter thread", e))?;
        Ok(face)
    }

    /// Send one batch of changes to the UI.
    fn send(&self, mut c: Changed) {
        if !c.newer.is_empty() || !c.older.is_empty() {
            c.newer.reverse();
            self.ui.add_alerts(c.newer, c.older, ALERTS_KEPT);
        }
        if c.home {
            self.ui.set_home(self.home());
        }
        if let Some(t) = c.toast {
            self.ui.toast(t);
        }
    }

    fn home(&self) -> HomeView {
        let unseen = self.unseen.lock().map(|n| *n).unwrap_or(0);
        home_view(
            &self.owner,
            &self.store,
            &self.link,
            self.platform.as_ref(),
            unseen,
        )
    }

    fn refresh_home(&self) {
        self.changes.note(|c| c.home = true);
    }

    fn alert(&self, e: &Event) {
        let (text, severe) = alert_text(e);
        let row = AlertView {
            at: texts::short_time(self.platform.unix_now()),
            text,
            severe,
        };
        if severe && let Ok(mut n) = self.unseen.lock() {
            *n = n.saturating_add(1);
        }
        self.changes.note(|c| {
            c.newer.push(row);
            // Rows beyond what the screen keeps would be cut anyway.
            if c.newer.len() > ALERTS_KEPT {
                c.newer.drain(..c.newer.len() - ALERTS_KEPT);
            }
            c.home |= severe;
        });
    }

    /// Alerts from before this start, found by the deferred audit check:
    /// below the ones of this run, and unseen.
    fn add_older(&self, entries: &[crate::audit::Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut rows = alert_rows(entries.iter());
        rows.truncate(ALERTS_KEPT);
        if let Ok(mut n) = self.unseen.lock() {
            *n = n.saturating_add(u32::try_from(entries.len()).unwrap_or(u32::MAX));
        }
        self.changes.note(|c| {
            c.older.extend(rows);
            c.home = true;
        });
    }

    /// The owner opened the alerts screen: every alert on it is seen.
    /// Returns how many were not seen before (to be acknowledged).
    fn seen(&self) -> u32 {
        let n = self
            .unseen
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or(0);
        self.refresh_home();
        n
    }

    /// A toast, unless an error toast not shown yet would be replaced by
    /// a success one.
    fn toast(&self, t: Toast) {
        self.changes.note(|c| {
            let keep_error = c.toast.as_ref().is_some_and(|p| p.kind == ToastKind::Error)
                && t.kind != ToastKind::Error;
            if !keep_error {
                c.toast = Some(t);
            }
        });
    }

    fn notice(&self, n: Notice) {
        match n {
            Notice::Sealed { contact } => self.toast(texts::sealed_toast(&contact)),
            Notice::Opened { contact } => self.toast(texts::opened_toast(&contact)),
            Notice::Failed { contact, what } => self.toast(texts::failed_toast(&contact, &what)),
            Notice::StateChanged => self.refresh_home(),
            Notice::Audit(e) => self.alert(&e),
        }
    }
}

/// How `start` should run.
pub struct StartOptions {
    pub owner: String,
    pub bind: Bind,
    pub prompt_timeout: Duration,
    pub limits: rpc::Limits,
    pub ui: UiConfig,
    /// Host names accepted besides IP literals (`rpc.allowed_hosts`).
    pub allowed_hosts: Vec<String>,
}

/// A running device. `S` is the screen the broker asks: the touchscreen
/// ([`UiScreen`]) on a device; a bench may pass a twin (see
/// [`start_with_screen`]).
pub struct Running<S: Screen<Prompt = ApprovalPrompt> = UiScreen> {
    pub service: Arc<Service<S>>,
    pub ui: UiThread,
    /// Where the RPC endpoint listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    rpc: Option<JoinHandle<std::io::Result<()>>>,
    events: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    /// The audit log's chain check, after start (see [`AuditLog::open_quick`]).
    checker: Option<JoinHandle<()>>,
    /// Heartbeats of the accept loop and the audit flusher (the UI loop's
    /// is in its trace handle); see [`Running::pulses`].
    rpc_beat: Heartbeat,
    flush_beat: Heartbeat,
}

/// Set once the audit log's chain check is done; acknowledging alerts
/// waits for it, so an `ack` covers what the check found.
#[derive(Default)]
struct Checked {
    done: Mutex<bool>,
    cv: std::sync::Condvar,
}

/// How long acknowledging alerts waits for the audit check.
const CHECK_WAIT: Duration = Duration::from_secs(10);

impl Checked {
    fn set(&self) {
        if let Ok(mut d) = self.done.lock() {
            *d = true;
        }
        self.cv.notify_all();
    }

    /// Wait until the check is done, at most `limit`; false if it is not.
    fn wait(&self, limit: Duration) -> bool {
        let Ok(d) = self.done.lock() else {
            return false;
        };
        self.cv
            .wait_timeout_while(d, limit, |d| !*d)
            .map(|(d, _)| *d)
            .unwrap_or(false)
    }
}

impl<S: Screen<Prompt = ApprovalPrompt> + 'static> Running<S> {
    /// A clean stop, in this order:
    ///
    /// 1. new requests get `cancelled`, and the prompt on screen (if any) is
    ///    withdrawn: its client gets `cancelled`, nothing is spent;
    /// 2. requests past their prompt finish (at most `STOP_GRACE`, 1.5 s);
    /// 3. the endpoint stops accepting, the screen stops;
    /// 4. the store is closed: synced, and the unused part of the
    ///    reservation block given back, so the next start's send offset
    ///    continues where the last message ended;
    /// 5. the audit log gets a `stop` entry (after the rate limit's
    ///    summaries) and is flushed.
    ///
    /// If a request thread still holds the device after the grace time,
    /// the store cannot be closed here: that is an error (the store's own
    /// drop gives the reservation back if the thread ends before exit).
    pub fn stop(mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + STOP_GRACE;
        self.service.begin_stop();
        self.service.wait_idle(STOP_GRACE);
        // The audit check stops at its next line once the device is
        // stopping.
        if let Some(t) = self.checker.take() {
            let _ = t.join();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.rpc.take() {
            let _ = t.join();
        }
        let ui = self.ui;
        let _ = ui.stop();
        if let Some(t) = self.events.take() {
            let _ = t.join();
        }
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        self.service.sum_up_refusals(true);
        // One grace time in all, for the requests and their threads.
        let grace = deadline.saturating_duration_since(std::time::Instant::now());
        let service = sole_owner(self.service, grace)?;
        let (store, mut audit) = service.into_parts();
        sole_owner(store, grace)?.close()?;
        audit.append(Event::Stop)?;
        audit.flush()?;
        Ok(())
    }

    /// The heartbeats that say whether this device works, for the
    /// hardware watchdog ([`crate::watchdog`]): the RPC endpoint's accept
    /// loop, the UI loop and the audit flusher.
    pub fn pulses(&self) -> Vec<Pulse> {
        let trace = self.ui.trace.clone();
        vec![
            Pulse::of("the RPC accept loop", &self.rpc_beat),
            Pulse::new("the UI loop", move || trace.loop_turns()),
            Pulse::of("the audit flusher", &self.flush_beat),
        ]
    }

    /// True once the RPC endpoint has stopped by itself (on an error);
    /// [`Running::wait`] then says why.
    pub fn endpoint_stopped(&self) -> bool {
        self.rpc.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Wait until the RPC endpoint stops (it stops on error only).
    pub fn wait(mut self) -> Result<()> {
        if let Some(t) = self.rpc.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::io("the RPC endpoint stopped", e)),
                Err(_) => {
                    return Err(Error::io(
                        "the RPC endpoint",
                        std::io::Error::other("panicked"),
                    ));
                }
            }
        }
        self.stop()
    }
}

/// Take `shared` back once every other holder (a request thread finishing
/// its reply) has let go, waiting at most `grace`.
fn sole_owner<T>(mut shared: Arc<T>, grace: Duration) -> Result<T> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(t) => return Ok(t),
            Err(again) if std::time::Instant::now() < deadline => {
                shared = again;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => {
                return Err(Error::io(
                    "the clean stop",
                    std::io::Error::other(
                        "a request was still being answered after the grace time; the pad \
                         store was not closed here (a restart skips the unused reservation)",
                    ),
                ));
            }
        }
    }
}

/// The alerts screen's rows for alerts from the log, newest first.
fn alert_rows<'a>(
    entries: impl DoubleEndedIterator<Item = &'a crate::audit::Entry>,
) -> Vec<AlertView> {
    entries
        .rev()
        .map(|e| {
            let (text, severe) = alert_text(&e.event);
            AlertView {
                at: texts::short_time(e.time),
                text,
                severe,
            }
        })
        .collect()
}

/// Start the device on data directory `dir` with the given screen; the
/// broker asks the owner on it ([`UiScreen`]). Clocks, and the link state
/// the home screen shows, come from `platform` ([`RealPlatform`] on a
/// device, [`crate::platform::TestPlatform`] in tests).
pub fn start(
    dir: &Path,
    opts: StartOptions,
    display: Box<dyn Display>,
    touch: Option<Box<dyn Touch>>,
    platform: Arc<dyn Platform>,
) -> Result<Running> {
    start_with_screen(dir, opts, display, touch, platform, UiScreen::new)
}

/// [`start`], with the broker asking the screen `screen` makes from the
/// UI's handle and the prompt timeout. Only the RPC bench passes anything
/// but `UiScreen::new` (an auto-approving twin that lives in `benches/`),
/// so no build of the device can approve by itself.
pub fn start_with_screen<S>(
    dir: &Path,
    opts: StartOptions,
    display: Box<dyn Display>,
    touch: Option<Box<dyn Touch>>,
    platform: Arc<dyn Platform>,
    screen: impl FnOnce(UiHandle, Duration) -> S,
) -> Result<Running<S>>
where
    S: Screen<Prompt = ApprovalPrompt> + 'static,
{
    let listener = net::listen(&opts.bind)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the RPC socket's address", e))?;
    let link = match &opts.bind {
        Bind::Interface { name, .. } => Link::Interface(name.clone()),
        Bind::Loopback(_) => Link::Loopback(addr),
    };
    let store = Arc::new(PadStore::open_dir(dir)?);
    // Damage is logged (once) as a `tamper_detected` alert: by
    // `open_quick` for a log it checks in full, else by the check thread
    // below. It is shown until the owner has seen it.
    // Entries are stamped by the wall clock this start was given, like
    // the alerts on screen (issue #9: they used to take the real time).
    let wall = platform.clone();
    let (mut audit, opened) =
        AuditLog::open_quick_with_clock(dir, Box::new(move || wall.unix_now()))?;
    audit.append(Event::Started {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })?;
    let unacked = alert_rows(audit.unacked_alerts());
    let unseen = u32::try_from(unacked.len()).unwrap_or(u32::MAX);
    let clock = platform.clock();
    let mut ui = otc_ui::Ui::spawn(display, touch, clock.clone(), opts.ui)?;
    ui.handle.set_alerts(unacked);
    let face = Face::spawn(
        ui.handle.clone(),
        opts.owner.clone(),
        store.clone(),
        link,
        platform.clone(),
        unseen,
    )?;
    face.refresh_home();
    let broker = Broker::new(
        screen(ui.handle.clone(), opts.prompt_timeout),
        clock,
        opts.prompt_timeout,
    );
    let notify_face = face.clone();
    let service = Arc::new(
        Service::new(
            store,
            broker,
            audit,
            platform.as_ref(),
            opts.limits,
            opts.owner,
            Box::new(move |n| notify_face.notice(n)),
        )
        .map_err(|e| Error::io("cannot load the relay cursors", e))?,
    );
    let checked = Arc::new(Checked::default());
    let checker = spawn_audit_check(opened, &service, &face, &checked)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (rpc_beat, flush_beat) = (Heartbeat::new(), Heartbeat::new());
    let rpc = {
        let (service, stop) = (service.clone(), stop.clone());
        let hosts = opts.allowed_hosts;
        let beat = rpc_beat.clone();
        std::thread::Builder::new()
            .name("otc-rpc".into())
            .spawn(move || rpc::serve(service, listener, stop, hosts, beat))
            .map_err(|e| Error::io("cannot start the RPC thread", e))?
    };
    let events = spawn_ui_events(&mut ui, &face, &service, &checked)?;
    let flusher = spawn_audit_flusher(&service, &stop, &flush_beat)?;
    Ok(Running {
        service,
        ui,
        addr,
        stop,
        rpc: Some(rpc),
        events: Some(events),
        flusher: Some(flusher),
        checker,
        rpc_beat,
        flush_beat,
    })
}

/// The audit log's deferred chain check, on its own thread (none when
/// `open_quick` already checked it all).
fn spawn_audit_check<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    opened: Opened,
    service: &Arc<Service<S>>,
    face: &Arc<Face>,
    checked: &Arc<Checked>,
) -> Result<Option<JoinHandle<()>>> {
    Ok(match opened {
        Opened::Checked(_) => {
            checked.set();
            None
        }
        Opened::Deferred(deferred) => {
            let (service, face, checked) = (service.clone(), face.clone(), checked.clone());
            let t = std::thread::Builder::new()
                .name("otc-audit-check".into())
                .spawn(move || {
                    let keep_going = || !service.is_stopping();
                    match deferred.check(&keep_going) {
                        // Cut short by a stop: nothing is concluded (the
                        // next start checks again).
                        Ok(_) if service.is_stopping() => {}
                        Ok(scan) => face.add_older(&service.audit_checked(scan)),
                        Err(e) => service.audit_failed(&e),
                    }
                    checked.set();
                })
                .map_err(|e| Error::io("cannot start the audit check", e))?;
            Some(t)
        }
    })
}

/// The thread that acts on what the owner does on the screen.
fn spawn_ui_events<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ui: &mut UiThread,
    face: &Arc<Face>,
    service: &Arc<Service<S>>,
    checked: &Arc<Checked>,
) -> Result<JoinHandle<()>> {
    Ok({
        let rx = std::mem::replace(&mut ui.events, std::sync::mpsc::channel().1);
        let (face, service, checked) = (face.clone(), service.clone(), checked.clone());
        std::thread::Builder::new()
            .name("otc-ui-events".into())
            .spawn(move || {
                while let Ok(e) = rx.recv() {
                    // Opening the alerts screen acknowledges what it shows:
                    // audited, and not reloaded at the next start.
                    if e == UiEvent::AlertsOpened {
                        // A check that takes longer than this is not worth
                        // holding the owner's acknowledgement for.
                        let _ = checked.wait(CHECK_WAIT);
                        let alerts = face.seen();
                        if alerts > 0 {
                            service.audit(Event::Ack {
                                alerts: u64::from(alerts),
                            });
                        }
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the UI event thread", e))?
    })
}

/// The thread that makes routine audit entries durable every
/// [`crate::audit::FLUSH_INTERVAL`] until `stop`; `beat` beats after each
/// flush.
fn spawn_audit_flusher<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    service: &Arc<Service<S>>,
    stop: &Arc<AtomicBool>,
    beat: &Heartbeat,
) -> Result<JoinHandle<()>> {
    Ok({
        let (service, stop, beat) = (service.clone(), stop.clone(), beat.clone());
        std::thread::Builder::new()
            .name("otc-audit-flush".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(crate::audit::FLUSH_INTERVAL);
                    service.flush_audit();
                    beat.beat();
                }
            })
            .map_err(|e| Error::io("cannot start the audit flusher", e))?
    })
}

/// `otc-device run`, resolved: everything the command line and
/// `DIR/otc.toml` decided (see `cli::run_options`), as plain values. This
/// module never sees the command line itself.
pub struct RunOptions {
    pub start: StartOptions,
    /// Which screen to open (the board's business, see [`board`]).
    pub screen: board::ScreenOptions,
    /// The hardware watchdog to pet while the device works, if any
    /// ([`crate::watchdog`]).
    pub watchdog: Option<board::WatchdogOptions>,
}

/// `otc-device run`: start on the real platform with the board's screen,
/// until SIGTERM or SIGINT, then stop cleanly.
///
/// With a watchdog, it is opened first of all (a restarted device must
/// pet it again before the timeout) and petted while the device starts,
/// then while its loops turn ([`crate::watchdog`]). A stop on a signal
/// ends with the magic close; any other end leaves it counting.
pub fn run(dir: &Path, opts: RunOptions) -> Result<()> {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = stop_signals()?;
    let platform = Arc::new(RealPlatform::new());
    let watchdog = match &opts.watchdog {
        Some(w) => {
            let dev = board::open_watchdog(w)?;
            let limits = watchdog::Limits::default();
            let label = w.device.display().to_string();
            let petter = watchdog::Petter::new(dev, &label, platform.clock(), limits);
            Some(
                Watchdog::spawn(petter, limits.every)
                    .map_err(|e| Error::io("cannot start the watchdog thread", e))?,
            )
        }
        None => None,
    };
    let (display, touch, emu) = board::open_screen(&opts.screen)?;
    let running = start(dir, opts.start, display, touch, platform)?;
    if let Some(w) = &watchdog {
        w.watch(running.pulses());
        eprintln!(
            "otc-device: petting the watchdog while the endpoint, the screen and the audit log \
             work"
        );
    }
    #[cfg(feature = "emulator")]
    let _emulator = match emu {
        Some(parts) => {
            let e = otc_ui::emulator::Emulator::start(
                opts.screen.display.emulator_listen,
                parts.screen,
                parts.script,
                running.ui.trace.clone(),
            )?;
            println!("emulator page: {}", e.url());
            Some(e)
        }
        None => None,
    };
    #[cfg(not(feature = "emulator"))]
    let _ = emu;
    println!("RPC endpoint:  http://{}/v1/status", running.addr);
    loop {
        match signals.recv_timeout(Duration::from_millis(100)) {
            Ok(signal) => {
                let began = std::time::Instant::now();
                eprintln!("{signal}: stopping cleanly");
                let stopped = running.stop();
                // A deliberate stop: the watchdog is disarmed either way.
                if let Some(w) = watchdog {
                    w.stop_clean()
                        .map_err(|e| Error::io("cannot disarm the watchdog", e))?;
                }
                stopped?;
                eprintln!("stopped cleanly in {} ms", began.elapsed().as_millis());
                return Ok(());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !running.endpoint_stopped() => {}
            // The endpoint ended by itself, or the signal thread did.
            Err(_) => return running.wait(),
        }
    }
}

/// SIGTERM and SIGINT, as a channel: they are blocked in this thread (and
/// so in every thread started after it) and taken by one thread with
/// `sigwait`, so no handler runs at an arbitrary point of another thread.
/// The main thread then stops the device cleanly ([`Running::stop`]).
fn stop_signals() -> Result<std::sync::mpsc::Receiver<nix::sys::signal::Signal>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| Error::io("cannot block SIGTERM/SIGINT", e.into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("otc-signals".into())
        .spawn(move || {
            while let Ok(signal) = set.wait() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::io("cannot start the signal thread", e))?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_texts_come_from_otc_ui() {
        let e = Event::Sealed {
            contact: "bob".into(),
            index: 0,
            bytes: 5,
            cost: 37,
        };
        assert_eq!(
            alert_text(&e),
            ("Sealed 5 bytes for bob".to_string(), false)
        );
        let (_, red) = alert_text(&Event::TamperDetected { detail: "x".into() });
        assert!(red);
    }

    /// The home screen's link line reads the platform: down, then up
    /// with an address, as the twin is told.
    #[test]
    fn the_home_screen_shows_the_platforms_link() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PadStore::open_dir(tmp.path()).unwrap();
        let platform = crate::platform::TestPlatform::new(0, 0);
        let link = Link::Interface("eth0".into());
        platform.set_link(false);
        let down = home_view("Alice", &store, &link, &platform, 0).link;
        assert!(!down.up);
        assert_eq!(down.address, None);
        platform.set_link(true);
        platform.set_address(Some(std::net::Ipv4Addr::new(192, 168, 7, 2)));
        let up = home_view("Alice", &store, &link, &platform, 0).link;
        assert!(up.up);
        assert_eq!(up.address.as_deref(), Some("192.168.7.2"));
        assert!(!up.loopback);
    }

    #[test]
    fn skipped_message_estimate() {
        assert_eq!(skipped_messages(1, 132), 1);
        assert_eq!(skipped_messages(132, 132), 1);
        assert_eq!(skipped_messages(133, 132), 2);
        assert_eq!(skipped_messages(5, 0), 5);
    }
}
