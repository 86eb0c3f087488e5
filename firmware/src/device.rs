//! `otc-device run`: the pad store, the broker, the audit log and the RPC
//! endpoint, wired to the screen.
//!
//! The screen runs on its own thread ([`otc_ui::Ui::spawn`]); the RPC
//! endpoint on another; the broker posts prompts to the screen through
//! [`UiScreen`] and waits for the owner's tap. What the screen shows comes
//! from the device's own state: the home screen is rebuilt from the pad
//! store after every seal and open, and audit events become the alerts list
//! (alerts never acknowledged come back from the audit log at start; the
//! owner's Acknowledge tap acknowledges those shown, audited as `ack`).
//! Request threads only note what changed on screen; the presenter thread
//! sends it at most once per frame ([`FRAME`], see `Presenter`).
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
use crate::lock::{self, Gate, LockCtx, LockOptions};
use crate::net::{self, Bind};
use crate::pad::{PadStore, Side};
use crate::pairing_flow;
use crate::platform::{Platform, RealPlatform};
pub use crate::presenter::alert_text;
use crate::presenter::{Presenter, PresenterParts, alert_rows};
use crate::rpc::{self, ApprovalPrompt, Service};
use crate::settings_flow::{self, SettingsCtx};
use crate::watchdog::{self, Heartbeat, Pulse, Watchdog};
use otc_ui::texts::{self, NameProblem};
use otc_ui::{
    ContactDetailsView, ContactView, Decision, Display, HomeView, LinkView, ProgressView, Prompt,
    PromptTicket, TextCheck, Touch, UiConfig, UiEvent, UiHandle, UiThread, WarningView,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a clean stop waits, in all, for requests past their prompt to
/// finish and for their threads to let go of the device. The whole stop
/// must end within 2 s.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// The broker's view of the touchscreen.
pub struct UiScreen {
    handle: UiHandle,
    timeout: Duration,
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
                message,
            } => Prompt::Seal {
                contact: contact.clone(),
                message_bytes: *message_bytes,
                cost_bytes: *cost,
                pad_left_after: *pad_left_after,
                timeout: self.timeout,
                client_note: None,
                message: Some(otc_ui::MessageView::of_bytes(message.bytes())),
            },
            ApprovalPrompt::Open {
                contact,
                cost,
                skipped,
                for_laptop,
            } => Prompt::Open {
                contact: contact.clone(),
                cost_bytes: *cost,
                warnings: skipped
                    .map(|count| WarningView::Skipped { count })
                    .into_iter()
                    .collect(),
                timeout: self.timeout,
                client_note: None,
                for_laptop: *for_laptop,
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

    fn ask_message(&self, contact: &str) -> Option<otc_ui::TextTicket> {
        Some(self.handle.ask_text(
            otc_ui::TextRequest::message(contact),
            Box::new(|t: &str| {
                if t.trim().is_empty() {
                    Err("Type the message first".to_string())
                } else {
                    Ok(())
                }
            }),
        ))
    }

    fn cancel_message(&self, ticket: &otc_ui::TextTicket) {
        self.handle.cancel_text(ticket)
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
    lockable: bool,
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
                    damaged: c.state == otc_proto::rpc::ContactState::Damaged,
                }
            })
            .collect(),
        link: link.view(platform),
        unseen_alerts,
        lockable,
        not_encrypted: !lockable,
        locked: false,
    }
}

/// The contact screen's facts from the store's summary of a contact. The
/// fingerprint is the pad id's short form (its first 16 hex digits, as
/// the command line shows it). The store does not record when a pad was
/// made, so that is left out.
pub fn contact_details(c: &crate::pad::ContactSummary) -> ContactDetailsView {
    let (send_total, receive_total) = match c.side {
        Side::A => (c.split, c.size - c.split),
        Side::B => (c.size - c.split, c.split),
    };
    ContactDetailsView {
        name: c.name.clone(),
        send_left_bytes: c.send_left,
        send_total_bytes: send_total,
        send_messages_left: c.send_messages_left,
        receive_left_bytes: c.receive_left,
        receive_total_bytes: receive_total,
        receive_messages_left: c.receive_messages_left,
        format: c.format.to_string(),
        fingerprint: c.pad_id.chars().take(16).collect(),
        made_unix: None,
        private: c.private,
    }
}

/// Why `name` cannot be a new contact's name, in the screen's terms: the
/// store's rule ([`crate::pad::store::validate_contact_name`]) decides, and this
/// only says which part of it failed; `taken` are the names in use.
pub fn name_problem(name: &str, taken: &[String]) -> Option<NameProblem> {
    if crate::pad::store::validate_contact_name(name).is_ok() {
        return taken
            .iter()
            .any(|t| t == name)
            .then_some(NameProblem::Taken);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    Some(if name.is_empty() {
        NameProblem::Empty
    } else if name.starts_with('.') {
        NameProblem::StartsWithDot
    } else if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        NameProblem::BadChar(c)
    } else if name.len() > 64 {
        NameProblem::TooLong { max: 64 }
    } else {
        NameProblem::NotAllowed
    })
}

/// The keyboard's check for a new contact's name: the store's rule, and
/// not one of `taken` (the store's names when the keyboard was asked for;
/// the store checks again when the contact is made). Quick and lock-free,
/// as a check on the UI thread must be.
pub fn contact_name_check(taken: Vec<String>) -> TextCheck {
    Box::new(move |name: &str| match name_problem(name, &taken) {
        None => Ok(()),
        Some(p) => Err(texts::name_problem(&p)),
    })
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
    /// The USB stick, the hardware RNG and the sizes of the New contact
    /// and Import contact flows ([`crate::pairing_flow`]).
    pub pairing: crate::pairing_flow::PairingOptions,
    /// The lock: wrong passphrases before the wipe, the idle lock, the
    /// Argon2id parameters of a new key file ([`crate::lock`]).
    pub lock: LockOptions,
}

/// A running device. `S` is the screen the broker asks: the touchscreen
/// ([`UiScreen`]) on a device; a bench may pass a twin (see
/// [`start_with_screen`]).
pub struct Running<S: Screen<Prompt = ApprovalPrompt> = UiScreen> {
    pub ui: UiThread,
    /// Where the RPC endpoint listens.
    pub addr: SocketAddr,
    /// What the endpoint answers: `locked` until the store is open and
    /// the device unlocked ([`crate::lock`]).
    gate: Arc<Gate<S>>,
    stop: Arc<AtomicBool>,
    rpc: Option<JoinHandle<std::io::Result<()>>>,
    flusher: Option<JoinHandle<()>>,
    /// The parts that exist once the store is open.
    unlocked: Arc<Mutex<Option<Unlocked<S>>>>,
    /// The lock screen's state and threads.
    lock: Arc<LockCtx>,
    /// Heartbeats of the accept loop and the audit flusher (the UI loop's
    /// is in its trace handle); see [`Running::pulses`].
    rpc_beat: Heartbeat,
    flush_beat: Heartbeat,
    /// What the board's lights follow besides the UI (alerts, the lock).
    board_status: Arc<board::BoardStatus>,
    /// The board's thread (LED, buttons, backlight), once attached.
    board: Option<JoinHandle<()>>,
}

/// What a device has once its store is open.
struct Unlocked<S: Screen<Prompt = ApprovalPrompt>> {
    service: Arc<Service<S>>,
    presenter: Arc<Presenter>,
    events: Option<JoinHandle<()>>,
    /// The audit log's chain check, after start (see [`AuditLog::open_quick`]).
    checker: Option<JoinHandle<()>>,
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
        // The lock screen, the first boot and Settings end at their next
        // look (within 50 ms, or once a passphrase check or an open under
        // way is done), so the store is open or not for good here.
        self.lock.quit();
        self.lock.join();
        let unlocked = lock(&self.unlocked).take();
        let Some(mut u) = unlocked else {
            // Never unlocked: nothing to close.
            self.stop.store(true, Ordering::Release);
            if let Some(t) = self.rpc.take() {
                let _ = t.join();
            }
            if let Some(t) = self.board.take() {
                let _ = t.join();
            }
            let ui = self.ui;
            let _ = ui.stop();
            self.lock.join();
            if let Some(t) = self.flusher.take() {
                let _ = t.join();
            }
            return Ok(());
        };
        u.service.begin_stop();
        u.service.wait_idle(STOP_GRACE);
        // The audit check stops at its next line once the device is
        // stopping.
        if let Some(t) = u.checker.take() {
            let _ = t.join();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.rpc.take() {
            let _ = t.join();
        }
        if let Some(t) = self.board.take() {
            let _ = t.join();
        }
        let ui = self.ui;
        let _ = ui.stop();
        self.lock.join();
        if let Some(t) = u.events.take() {
            let _ = t.join();
        }
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        u.service.sum_up_refusals(true);
        // One grace time in all, for the requests and their threads.
        let grace = deadline.saturating_duration_since(std::time::Instant::now());
        // The presenter and the gate hold the service and the store too.
        drop(u.presenter);
        self.gate.forget();
        let service = sole_owner(u.service, grace)?;
        let (store, mut audit) = service.into_parts();
        sole_owner(store, grace)?.close()?;
        audit.append(Event::Stop)?;
        audit.flush()?;
        Ok(())
    }

    /// The device's protocol state, once its store is open (`None` while
    /// it was never unlocked).
    pub fn service(&self) -> Option<Arc<Service<S>>> {
        self.gate.service()
    }

    /// Whether the endpoint answers `locked` now.
    pub fn is_locked(&self) -> bool {
        self.gate.is_locked()
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

    /// Drive the board's LED, buttons and backlight ([`board::Board`]) on
    /// their own thread until the device stops, following the UI and
    /// [`Self::board_status`]; `clock` is the monotonic clock (the
    /// platform's). Nothing happens for a board with nothing to drive.
    pub fn attach_board(
        &mut self,
        board: board::Board,
        clock: Arc<dyn otc_ui::Clock>,
    ) -> Result<()> {
        if self.board.is_some() {
            return Err(Error::io(
                "the board",
                std::io::Error::other("a board is already attached"),
            ));
        }
        self.board = board::spawn(
            board,
            self.ui.handle.clone(),
            self.ui.trace.clone(),
            self.board_status.clone(),
            clock,
            self.stop.clone(),
        )
        .map_err(|e| Error::io("cannot start the board thread", e))?;
        Ok(())
    }

    /// What the status LED shows besides the UI's state: unacknowledged
    /// alerts (kept by the device) and the lock (the input later work
    /// drives, [`board::BoardStatus::set_locked`]).
    pub fn board_status(&self) -> &Arc<board::BoardStatus> {
        &self.board_status
    }

    /// What the owner's confirmed **Remove** on a contact's screen does
    /// (the screen sends it to the UI event thread, which calls the same
    /// code): refused while a prompt is shown, else the pad is erased,
    /// `pad_removed` audited and the home screen refreshed. Returns when
    /// done.
    pub fn remove_contact(&self, name: &str) {
        if let Some(u) = lock(&self.unlocked).as_ref() {
            remove_contact(&u.presenter, &u.service, name)
        }
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
    screen: impl FnOnce(UiHandle, Duration) -> S + Send + 'static,
) -> Result<Running<S>>
where
    S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static,
{
    let (listener, addr, link) = listen(&opts.bind)?;
    let mode = lock::Mode::of(dir, &opts.lock)?;
    let mut lock_opts = opts.lock.clone();
    if let (Bind::Interface { .. }, std::net::IpAddr::V4(a)) = (&opts.bind, addr.ip()) {
        lock_opts.address_now = Some(a);
    }
    let clock = platform.clock();
    // The owner's rotation and touch correction hold from the first frame
    // (the lock screen's), before any passphrase: `clear_settings`.
    let clear = crate::clear_settings::load_at_start(dir).for_screen(display.size());
    let mut ui = spawn_ui(display, touch, clock.clone(), &clear, opts.ui)?;
    let board_status = Arc::new(board::BoardStatus::default());
    board_status.set_locked(mode != lock::Mode::Plain);
    let gate: Arc<Gate<S>> = Arc::new(Gate::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (rpc_beat, flush_beat) = (Heartbeat::new(), Heartbeat::new());
    let front_settings = rpc::front_settings(&opts.limits, opts.allowed_hosts);
    let lock_ctx = Arc::new(LockCtx::new(
        dir,
        ui.handle.clone(),
        ui.trace.clone(),
        clock,
        lock_opts,
        board_status.clone(),
        clear,
    ));
    let unlocked = Arc::new(Mutex::new(None));
    let flusher = spawn_audit_flusher(&gate, &stop, &flush_beat, &lock_ctx)?;
    let events = std::mem::replace(&mut ui.events, std::sync::mpsc::channel().1);
    let opener = Opener {
        dir: dir.to_path_buf(),
        owner: opts.owner,
        prompt_timeout: opts.prompt_timeout,
        limits: opts.limits,
        pairing: opts.pairing,
        link,
        platform,
        ui: ui.handle.clone(),
        board_status: board_status.clone(),
        events,
        screen: Box::new(screen),
        gate: gate.clone(),
        unlocked: unlocked.clone(),
        lock: lock_ctx.clone(),
    };
    opener.open_or_wait(mode, &lock_ctx)?;
    // Serve only now. The socket has listened since `net::listen` above, and
    // image/init calls the device ready as soon as it does; a request that
    // arrives meanwhile waits in the kernel's queue until here. So a plain
    // directory's first request finds its store open instead of being
    // refused as `locked` (seen in QEMU after a power cut), and a locked
    // directory serves its refusals and `/v1/status` while the owner types.
    let rpc = {
        let (gate, stop) = (gate.clone(), stop.clone());
        let beat = rpc_beat.clone();
        std::thread::Builder::new()
            .name("otc-rpc".into())
            .spawn(move || crate::front::serve(gate, listener, stop, front_settings, beat))
            .map_err(|e| Error::io("cannot start the RPC thread", e))?
    };
    Ok(Running {
        ui,
        addr,
        gate,
        stop,
        rpc: Some(rpc),
        flusher: Some(flusher),
        unlocked,
        lock: lock_ctx,
        rpc_beat,
        flush_beat,
        board_status,
        board: None,
    })
}

/// The RPC socket, listening from here on (requests wait in the kernel's
/// queue until the front layer serves), its address, and the link the
/// home screen shows.
fn listen(bind: &Bind) -> Result<(net::Listener, SocketAddr, Link)> {
    let listener = net::listen(bind)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the RPC socket's address", e))?;
    let link = match bind {
        Bind::Interface { name, .. } => Link::Interface(name.clone()),
        Bind::Loopback(_) => Link::Loopback(addr),
    };
    Ok((listener, addr, link))
}

/// The UI thread, turned as the owner's settings say from its first
/// frame, with the About screen's software line.
fn spawn_ui(
    display: Box<dyn Display>,
    touch: Option<Box<dyn Touch>>,
    clock: Arc<dyn otc_ui::Clock>,
    clear: &crate::clear_settings::ClearSettings,
    ui: UiConfig,
) -> Result<UiThread> {
    let ui_config = otc_ui::UiConfig {
        orientation: clear.orientation(),
        ..ui
    };
    let ui = otc_ui::Ui::spawn(display, touch, clock, ui_config)?;
    ui.handle.set_about(otc_ui::AboutView {
        software: software(),
        ..Default::default()
    });
    Ok(ui)
}

/// Everything that opens the store once the device is unlocked (at once
/// for a plain data directory), and starts what needs it.
struct Opener<S: Screen<Prompt = ApprovalPrompt>> {
    dir: std::path::PathBuf,
    owner: String,
    prompt_timeout: Duration,
    limits: rpc::Limits,
    pairing: pairing_flow::PairingOptions,
    link: Link,
    platform: Arc<dyn Platform>,
    ui: UiHandle,
    board_status: Arc<board::BoardStatus>,
    events: std::sync::mpsc::Receiver<UiEvent>,
    screen: Box<dyn FnOnce(UiHandle, Duration) -> S + Send>,
    gate: Arc<Gate<S>>,
    unlocked: Arc<Mutex<Option<Unlocked<S>>>>,
    lock: Arc<LockCtx>,
}

impl<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static> Opener<S> {
    /// A plain data directory (development, tests) opens at once, as
    /// before issue 18; a locked one, or a first boot, once the lock
    /// screen has the key.
    fn open_or_wait(self, mode: lock::Mode, lock_ctx: &Arc<LockCtx>) -> Result<()> {
        match mode {
            lock::Mode::Plain => self.open(None, None, 0),
            lock::Mode::Locked | lock::Mode::FirstBoot => lock_ctx.spawn_unlock(
                mode,
                Box::new(move |u: lock::Unlock| self.open(Some(u.key), u.settings, u.failures)),
            ),
        }
    }

    /// Opens the store (with the master key of an encrypted directory),
    /// the audit log and the service, starts the UI event thread and the
    /// audit check, and opens the gate. `settings`: the owner's, from the
    /// sealed settings file (an encrypted directory).
    /// `failures`: wrong passphrases typed before the right one (audited
    /// as an alert with the unlock).
    fn open(
        self,
        key: Option<crate::pad::vault::MasterKey>,
        settings: Option<lock::Settings>,
        failures: u32,
    ) -> Result<()> {
        let dir = self.dir.as_path();
        let (owner, prompt_timeout) = match &settings {
            Some(s) => (s.owner.clone(), s.prompt_timeout()),
            None => (self.owner.clone(), self.prompt_timeout),
        };
        let key = key.map(Arc::new);
        let store = Arc::new(lock::open_store(dir, key.as_deref())?);
        // Damage is logged (once) as a `tamper_detected` alert: by
        // `open_quick` for a log it checks in full, else by the check thread
        // below. It is shown until the owner has seen it.
        // Entries are stamped by the wall clock this start was given, like
        // the alerts on screen (issue #9: they used to take the real time).
        // An encrypted directory's log is sealed under its master key.
        let audit_files = crate::audit::Files::real(dir, key.as_deref());
        let wall = self.platform.clone();
        let (mut audit, opened) =
            AuditLog::open_quick_in(audit_files, Box::new(move || wall.unix_now()))?;
        audit.append(Event::Started {
            version: env!("CARGO_PKG_VERSION").to_string(),
        })?;
        if failures > 0 {
            audit.append(Event::Unlocked {
                failures: u64::from(failures),
            })?;
        }
        let presenter = Presenter::spawn(PresenterParts {
            ui: self.ui.clone(),
            owner: owner.clone(),
            store: store.clone(),
            link: self.link,
            platform: self.platform.clone(),
            board: self.board_status.clone(),
            lockable: key.is_some(),
            unacked: alert_rows(audit.unacked_alerts()),
        })?;
        let broker = Broker::new(
            (self.screen)(self.ui.clone(), prompt_timeout),
            self.platform.clock(),
            prompt_timeout,
        );
        let notify_presenter = presenter.clone();
        let service = Arc::new(
            Service::new(
                store,
                broker,
                audit,
                self.platform.as_ref(),
                self.limits,
                owner.clone(),
                Box::new(move |n| notify_presenter.notice(n)),
            )
            .map_err(|e| Error::io("cannot load the relay cursors", e))?,
        );
        if let Some(s) = &settings {
            self.lock.set_idle(s.idle_lock());
        }
        let checked = Arc::new(Checked::default());
        let checker = spawn_audit_check(opened, &service, &presenter, &checked)?;
        service.raise_start_alerts();
        let audit_service = service.clone();
        let close_gate = self.gate.clone();
        let flows = Flows {
            flows: Arc::default(),
            opts: self.pairing,
            owner,
            settings: Arc::new(SettingsCtx::new(
                self.lock.clone(),
                key,
                settings,
                Arc::new(move |e| audit_service.audit(e)),
                Arc::new(move || close_gate.lock()),
            )),
        };
        let events = spawn_ui_events(
            self.events,
            &presenter,
            &service,
            &checked,
            flows,
            (&self.gate, &self.lock),
        )?;
        self.gate.unlock_with(service.clone());
        self.board_status.set_locked(false);
        if let Ok(mut u) = self.unlocked.lock() {
            *u = Some(Unlocked {
                service,
                presenter,
                events: Some(events),
                checker,
            });
        }
        Ok(())
    }
}

/// This software, as the About screen names it.
fn software() -> String {
    format!("otc-device {}", env!("CARGO_PKG_VERSION"))
}

/// The audit log's deferred chain check, on its own thread (none when
/// `open_quick` already checked it all).
fn spawn_audit_check<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    opened: Opened,
    service: &Arc<Service<S>>,
    presenter: &Arc<Presenter>,
    checked: &Arc<Checked>,
) -> Result<Option<JoinHandle<()>>> {
    Ok(match opened {
        Opened::Checked(_) => {
            checked.set();
            None
        }
        Opened::Deferred(deferred) => {
            let (service, presenter, checked) =
                (service.clone(), presenter.clone(), checked.clone());
            let t = std::thread::Builder::new()
                .name("otc-audit-check".into())
                .spawn(move || {
                    let keep_going = || !service.is_stopping();
                    match deferred.check(&keep_going) {
                        // Cut short by a stop: nothing is concluded (the
                        // next start checks again).
                        Ok(_) if service.is_stopping() => {}
                        Ok(scan) => presenter.add_older(&service.audit_checked(scan)),
                        Err(e) => service.audit_failed(&e),
                    }
                    checked.set();
                })
                .map_err(|e| Error::io("cannot start the audit check", e))?;
            Some(t)
        }
    })
}

/// What the UI event thread needs to start the pairing flows.
struct Flows {
    flows: Arc<pairing_flow::Flows>,
    opts: pairing_flow::PairingOptions,
    owner: String,
    /// The settings steps ([`settings_flow`]).
    settings: Arc<SettingsCtx>,
}

/// The thread that acts on what the owner does on the screen.
fn spawn_ui_events<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static>(
    rx: std::sync::mpsc::Receiver<UiEvent>,
    presenter: &Arc<Presenter>,
    service: &Arc<Service<S>>,
    checked: &Arc<Checked>,
    flows: Flows,
    (gate, lock_ctx): (&Arc<Gate<S>>, &Arc<LockCtx>),
) -> Result<JoinHandle<()>> {
    Ok({
        let (presenter, service, checked) = (presenter.clone(), service.clone(), checked.clone());
        let (gate, lock_ctx) = (gate.clone(), lock_ctx.clone());
        std::thread::Builder::new()
            .name("otc-ui-events".into())
            .spawn(move || {
                while let Ok(e) = rx.recv() {
                    match &e {
                        UiEvent::ContactOpened { name } => presenter.open_contact(name),
                        UiEvent::RemoveContact { name } => {
                            remove_contact(&presenter, &service, name)
                        }
                        UiEvent::ConversationOpened { name } => {
                            presenter.conversations.show(&presenter.ui, name)
                        }
                        UiEvent::SetPrivate { name, private } => {
                            set_private(&presenter, &service, name, *private)
                        }
                        UiEvent::NewContact | UiEvent::ImportContact => {
                            let which = if e == UiEvent::NewContact {
                                pairing_flow::Which::NewContact
                            } else {
                                pairing_flow::Which::ImportContact
                            };
                            let refresh_presenter = presenter.clone();
                            pairing_flow::start(
                                pairing_flow::Ctx {
                                    ui: presenter.ui.clone(),
                                    service: service.clone(),
                                    opts: flows.opts.clone(),
                                    flows: flows.flows.clone(),
                                    owner: flows.owner.clone(),
                                    refresh: Arc::new(move || refresh_presenter.refresh_home()),
                                },
                                which,
                            );
                        }
                        UiEvent::ProgressCancelled => flows.flows.cancel(),
                        UiEvent::SettingsOpened => settings_flow::start(&flows.settings),
                        UiEvent::LockNow if presenter.lockable => {
                            relock(&gate, &lock_ctx, &service, "lock now")
                        }
                        _ => {}
                    }
                    // Opening the alerts screen acknowledges nothing; the
                    // owner's Acknowledge tap acknowledges the alerts that
                    // were on screen (the oldest unacknowledged ones):
                    // audited, and not reloaded at the next start.
                    if let UiEvent::AlertsAcknowledged { count, list } = e {
                        // Not before the log's check is done: the alerts it
                        // finds are older than any shown, and the log's
                        // `ack` of N means the N oldest. The screen gets
                        // the list again (still unacknowledged) meanwhile.
                        if !checked.wait(CHECK_WAIT) {
                            presenter.resend_alerts();
                            continue;
                        }
                        let alerts = presenter.acknowledge(count, list);
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

/// The owner confirmed removing `name` on the screen: erase its pad and
/// record (the store's [`PadStore::remove`], as `pad remove` does), with
/// the progress on screen, then audit `pad_removed` like the command line.
/// Runs on the UI event thread, never the UI's own. Refused, with a toast
/// and nothing touched, while a prompt waits for the owner (a request may
/// be about to use this pad) or the device is stopping.
fn remove_contact<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    presenter: &Presenter,
    service: &Service<S>,
    name: &str,
) {
    if service.is_stopping() || service.broker().is_busy() {
        presenter.ui.toast(texts::remove_busy_toast(name));
        return;
    }
    let info = match presenter.store.contact(name) {
        Ok(c) => c,
        Err(e) => {
            presenter
                .ui
                .toast(texts::failed_toast(name, &e.to_string()));
            presenter.refresh_home();
            return;
        }
    };
    let title = format!("Erasing the pad for {name}");
    let mut shown = 0u64;
    let res = presenter.store.remove(name, &mut |done, total| {
        // A screen update per 1 % is plenty.
        if done == total || done.saturating_sub(shown) >= (total / 100).max(1) {
            shown = done;
            presenter.ui.show_progress(ProgressView {
                title: title.clone(),
                done_bytes: done,
                total_bytes: total,
                cancellable: false,
                time_left: None,
            });
        }
    });
    presenter.ui.hide_progress();
    match res {
        Ok(()) => {
            service.audit(Event::PadRemoved {
                contact: name.to_string(),
                pad_id: info.pad_id,
            });
            presenter.ui.toast(texts::removed_toast(name));
            if let Ok(mut v) = presenter.viewing.lock()
                && v.as_deref() == Some(name)
            {
                *v = None;
            }
        }
        Err(e) => presenter
            .ui
            .toast(texts::failed_toast(name, &format!("not removed: {e}"))),
    }
    presenter.refresh_home();
}

/// **Private contact** on `name`'s screen (issue 19): from now on every
/// message from `name` is read on the device only (`private`), or may be
/// opened for the laptop again. The record is durable before the screen
/// says so, the change is audited (`setting_changed`, `private_contact:NAME`), and
/// the contact's screen shows the new state. A confirm-open already on
/// screen keeps the buttons it was shown with.
fn set_private<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    presenter: &Presenter,
    service: &Service<S>,
    name: &str,
    private: bool,
) {
    match presenter.store.set_private(name, private) {
        Ok(()) => {
            service.audit(Event::SettingChanged {
                setting: format!("private_contact:{name}"),
                value: if private { "on" } else { "off" }.to_string(),
            });
            // The screen's Private row says it at once (a toast would wait
            // for home).
            presenter.open_contact(name);
        }
        Err(e) => presenter
            .ui
            .toast(texts::failed_toast(name, &e.to_string())),
    }
}

/// The thread that makes routine audit entries durable every
/// [`crate::audit::FLUSH_INTERVAL`] until `stop`; `beat` beats after each
/// flush.
fn spawn_audit_flusher<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static>(
    gate: &Arc<Gate<S>>,
    stop: &Arc<AtomicBool>,
    beat: &Heartbeat,
    lock_ctx: &Arc<LockCtx>,
) -> Result<JoinHandle<()>> {
    Ok({
        let (gate, stop, beat) = (gate.clone(), stop.clone(), beat.clone());
        let lock_ctx = lock_ctx.clone();
        std::thread::Builder::new()
            .name("otc-audit-flush".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(crate::audit::FLUSH_INTERVAL);
                    if let Some(service) = gate.service() {
                        service.flush_audit();
                        // The idle lock is looked at as often (it reads
                        // the UI's activity and the platform's clock).
                        if !gate.is_locked() && lock_ctx.idle_expired(service.broker().is_busy()) {
                            relock(&gate, &lock_ctx, &service, "idle");
                        }
                    }
                    beat.beat();
                }
            })
            .map_err(|e| Error::io("cannot start the audit flusher", e))?
    })
}

/// Locks the device again (**Lock now**, the idle lock): the gate closes
/// at once, the lock is audited, and the lock screen comes up; the right
/// passphrase opens the gate on the same service again.
fn relock<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static>(
    gate: &Arc<Gate<S>>,
    lock_ctx: &Arc<LockCtx>,
    service: &Arc<Service<S>>,
    why: &str,
) {
    if gate.is_locked() {
        return;
    }
    gate.lock();
    let (gate2, service2) = (gate.clone(), service.clone());
    let spawned = lock_ctx.spawn_unlock(
        lock::Mode::Locked,
        Box::new(move |u: lock::Unlock| {
            // The store is open already; the key read again is dropped.
            gate2.reopen();
            service2.state_changed();
            service2.audit(Event::Unlocked {
                failures: u64::from(u.failures),
            });
            Ok(())
        }),
    );
    // Audited once the lock screen is up (which marks the board locked,
    // so the home that this event refreshes says "Locked").
    service.audit(Event::Locked {
        why: why.to_string(),
    });
    if let Err(e) = spawned {
        // Without a lock screen the device stays locked: a restart shows
        // one.
        service.audit(Event::Failed {
            action: "lock".into(),
            contact: String::new(),
            reason: e.to_string(),
        });
    }
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
    /// `[status_led]`, if there is one.
    pub status_led: Option<crate::config::StatusLedConfig>,
    /// `[buttons]`, if there are any.
    pub buttons: Option<crate::config::ButtonsConfig>,
    /// The hardware random source New contact makes pads from (`run
    /// --hwrng`, default [`crate::pad::pairing::DEFAULT_HWRNG`]). Required
    /// on the device: without it making a pad is refused
    /// ([`crate::Error::NoHardwareRng`]).
    pub hwrng: std::path::PathBuf,
    /// Print the screen trace on stdout at every change (`run
    /// --test-trace`, a system-test hook; [`crate::test_trace`]).
    pub test_trace: bool,
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
    let screen = board::open_screen(&opts.screen)?;
    // No GPIO (QEMU, a desktop) is said once, and the device starts.
    let gpio = board::gpio::open(opts.status_led.as_ref(), opts.buttons.as_ref());
    let clock = platform.clock();
    let mut running = start(dir, opts.start, screen.display, screen.touch, platform)?;
    let mut facts = gpio.facts;
    facts.extend(screen.backlight_fact);
    running.ui.handle.set_about(otc_ui::AboutView {
        software: software(),
        board: board::board_model().unwrap_or_default(),
        facts,
    });
    running.attach_board(
        board::Board::new(board::Hardware {
            led: gpio.led,
            buttons: gpio.buttons,
            backlight: screen.backlight,
            backlight_idle: board::backlight_idle(&opts.screen.display),
        }),
        clock,
    )?;
    let emu = screen.emulator;
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
    let trace_stop = Arc::new(AtomicBool::new(false));
    if opts.test_trace {
        let trace = running.ui.trace.clone();
        crate::test_trace::spawn(move || trace.get(), std::io::stdout(), trace_stop.clone())
            .map_err(|e| Error::io("cannot start the test trace thread", e))?;
        eprintln!("otc-device: test hook: the screen trace is printed (--test-trace)");
    }
    let _stop_trace = StopOnDrop(trace_stop);
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

/// Sets its flag when dropped (stops the test trace thread on any return).
struct StopOnDrop(Arc<AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
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
        let down = home_view("Alice", &store, &link, &platform, 0, false).link;
        assert!(!down.up);
        assert_eq!(down.address, None);
        platform.set_link(true);
        platform.set_address(Some(std::net::Ipv4Addr::new(192, 168, 7, 2)));
        let up = home_view("Alice", &store, &link, &platform, 0, false).link;
        assert!(up.up);
        assert_eq!(up.address.as_deref(), Some("192.168.7.2"));
        assert!(!up.loopback);
    }

    /// Longest real-time wait in these tests, for the device's threads.
    const WAIT: Duration = Duration::from_secs(10);

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "gave up after {WAIT:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The device wired to a board of twins: an alert the owner has not
    /// seen makes the LED blink fast until the owner acknowledges it,
    /// the Approve button answers the screen's prompt, and the board's
    /// thread ends with the device.
    #[test]
    fn the_device_drives_a_board_of_twins() {
        use crate::board::buttons::twin::TwinButtons;
        use crate::board::led::twin::TwinLed;
        let tmp = tempfile::tempdir().unwrap();
        let platform = Arc::new(crate::platform::TestPlatform::new(1_795_326_060, 1));
        let clock = platform.fake_clock();
        let (display, _screen) = otc_ui::sink::memory::MemoryDisplay::new(800, 480);
        let (touch, script) = otc_ui::source::scripted::ScriptedTouch::new();
        let opts = StartOptions {
            owner: "Alice".into(),
            bind: Bind::Loopback(SocketAddr::from(([127, 0, 0, 1], 0))),
            prompt_timeout: Duration::from_secs(30),
            limits: rpc::Limits::default(),
            ui: UiConfig::default(),
            allowed_hosts: Vec::new(),
            pairing: Default::default(),
            lock: Default::default(),
        };
        let mut running = start(
            tmp.path(),
            opts,
            Box::new(display),
            Some(Box::new(touch)),
            platform.clone(),
        )
        .unwrap();
        let (led, buttons) = (TwinLed::default(), TwinButtons::default());
        running
            .attach_board(
                board::Board::new(board::Hardware {
                    led: Some(Box::new(led.clone())),
                    buttons: Some(Box::new(buttons.clone())),
                    ..Default::default()
                }),
                platform.clock(),
            )
            .unwrap();
        wait_for("the LED to light steady", || led.lit());

        // An alert: blinks four times a second (the fake clock is moved
        // to the lit and the dark half of a fast blink).
        running
            .service()
            .expect("unlocked")
            .audit(Event::TamperDetected {
                detail: "test".into(),
            });
        wait_for("the device to count the alert", || {
            running.board_status().unacked_alert()
        });
        let began = led.writes();
        clock.advance(Duration::from_millis(60));
        wait_for("the fast blink's dark half", || {
            led.writes() > began && !led.lit()
        });
        clock.advance(Duration::from_millis(125));
        wait_for("the fast blink's lit half", || led.lit());
        // The owner opens the alerts (which acknowledges nothing: issue
        // 15) and taps Acknowledge with the alert on screen: steady again.
        let trace = running.ui.trace.clone();
        wait_for("the home screen", || trace.get().button("alerts").is_some());
        let alerts = trace.get().button("alerts").unwrap().clone();
        script.tap_button(&alerts);
        wait_for("the Acknowledge button", || {
            trace.get().button("acknowledge").is_some()
        });
        assert!(
            running.board_status().unacked_alert(),
            "opening the alerts screen acknowledged the alert"
        );
        let ack = trace.get().button("acknowledge").unwrap().clone();
        script.tap_button(&ack);
        wait_for("the alert to be acknowledged", || {
            !running.board_status().unacked_alert()
        });
        clock.advance(Duration::from_millis(10));
        wait_for("a steady LED", || led.lit());

        // A prompt, armed; the Approve button answers it.
        let ticket = running.ui.handle.show_prompt(Prompt::Seal {
            contact: "bob".into(),
            message_bytes: 5,
            cost_bytes: 37,
            pad_left_after: 1000,
            timeout: Duration::from_secs(30),
            client_note: None,
            message: None,
        });
        wait_for("the prompt on screen", || trace.prompt_waiting());
        clock.advance(Duration::from_secs(1));
        // The fake clock moves in 10 ms steps while the board's thread
        // debounces (each step waits for the condition a little).
        let drive = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + WAIT;
            while !cond() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "gave up after {WAIT:?} waiting for {what}"
                );
                clock.advance(Duration::from_millis(10));
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let before = trace.activity();
        buttons.set(true, false);
        drive("the press to reach the UI", &|| trace.activity() > before);
        assert_eq!(ticket.try_decision(), None, "a press alone decides nothing");
        buttons.set(false, false);
        drive("the push to be handled", &|| {
            trace.button_records().len() == 1
        });
        assert_eq!(
            ticket.wait_timeout(WAIT),
            Some(Decision::Approve),
            "{:?}",
            trace.button_records()
        );
        running.stop().unwrap();
    }

    #[test]
    fn name_problems_follow_the_stores_rule() {
        let taken = vec!["bob".to_string()];
        let long = "a".repeat(65);
        for (name, want) in [
            ("", Some(NameProblem::Empty)),
            (".bob", Some(NameProblem::StartsWithDot)),
            ("bob smith", Some(NameProblem::BadChar(' '))),
            ("bö", Some(NameProblem::BadChar('ö'))),
            (long.as_str(), Some(NameProblem::TooLong { max: 64 })),
            ("bob", Some(NameProblem::Taken)),
            ("bob.2", None),
            ("a-b_c@d.e", None),
            (&long[..64], None),
        ] {
            assert_eq!(name_problem(name, &taken), want, "{name:?}");
            // The store's own rule agrees on every name but a taken one.
            let valid = crate::pad::store::validate_contact_name(name).is_ok();
            assert_eq!(valid, want.is_none() || want == Some(NameProblem::Taken));
        }
        let check = contact_name_check(taken);
        assert_eq!(check("carol"), Ok(()));
        assert_eq!(
            check(".x"),
            Err(texts::name_problem(&NameProblem::StartsWithDot))
        );
    }
}
