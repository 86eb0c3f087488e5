//! The UI loop: state, touches, prompts, countdowns, rendering.
//!
//! A [`Ui`] lives on one thread (Slint objects are not `Send`). Other
//! threads talk to it through a cloneable [`UiHandle`]: post a [`Prompt`]
//! and get a [`PromptTicket`] that receives the [`Decision`], update the
//! home screen, show toasts and progress. Either call [`Ui::run`] (real
//! devices, the emulator) or drive it step by step with [`Ui::step`] (tests,
//! with a [`crate::FakeClock`]).
//!
//! Safety rules kept here:
//! - one prompt at a time: a second prompt gets [`Decision::Busy`] at once
//!   and never replaces the one the owner is looking at;
//! - a prompt's buttons are armed only `arm_delay` after it appears, so a
//!   tap meant for the previous screen cannot approve it;
//! - both ends of a tap must fall on the same armed prompt: a press on one
//!   prompt and a release after another was swapped in does nothing (the
//!   release is dropped and Slint sees the pointer leave instead); the
//!   same holds for a flow's steps (a keyboard or a choice): a press on
//!   one and a release on the next chooses nothing (`step_changed`), since
//!   list rows keep their Slint items across a refresh (a press survives
//!   a refresh of the same screen);
//! - the physical push buttons ([`UiHandle::push_button`], for panels
//!   without touch) follow the same rules as taps: both the press and the
//!   release must fall on the same armed prompt, and a press while the
//!   other button is held counts for neither;
//! - every tap's fate is recorded ([`TapRecord`], through the
//!   [`TraceHandle`]), so the emulator page can say that a tap was ignored
//!   and why instead of answering `ok` for a tap that did nothing;
//! - prompts time out ([`Decision::Timeout`]); a dropped UI cancels them.

use crate::choice::{self, ChoiceAnswer, ChoiceRequest};
use crate::clock::Clock;
use crate::display::{Display, Frame, Rect};
use crate::error::UiError;
use crate::generated::{AppWindow, Bridge, Theme};
use crate::keyboard::{self, Key, KeyboardLayout, TextAnswer, TextCheck, TextRequest, Typing};
use crate::model::{
    AboutView, AlertView, ContactDetailsView, Decision, HomeView, ProgressView, Prompt, PushButton,
    Toast, ToastKind, UiEvent,
};
use crate::orient::Orientation;
use crate::platform;
use crate::screens::{self, Layout};
use crate::touch::{Touch, TouchEvent};
use crate::trace::{ScreenTrace, TraceButton};
use slint::platform::software_renderer::{MinimalSoftwareWindow, RepaintBufferType, Rgb565Pixel};
use slint::platform::{PointerEventButton, WindowEvent};
use slint::{ComponentHandle, LogicalPosition, Model};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Settings of a [`Ui`].
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// Taps on a prompt count only this long after it appeared.
    pub arm_delay: Duration,
    /// A prompt that comes within [`UiConfig::changed_window`] after one
    /// was withdrawn (its client hung up or stopped) is a changed request
    /// (issue 23): the laptop may have swapped it in at the moment the
    /// owner meant to tap the first. It says "The request changed" at its
    /// top and counts taps only this long after it appeared (or
    /// `arm_delay`, if that is longer).
    pub changed_arm_delay: Duration,
    /// See [`UiConfig::changed_arm_delay`].
    pub changed_window: Duration,
    /// Draw the "EMULATOR" marker. Defaults to on in builds with feature
    /// `emulator`, off otherwise.
    pub emulator_marker: bool,
    /// The owner's orientation from the first frame on (later changes:
    /// [`UiHandle::set_orientation`]); see [`crate::orient`].
    pub orientation: Orientation,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            arm_delay: Duration::from_millis(400),
            changed_arm_delay: Duration::from_millis(1500),
            changed_window: Duration::from_secs(2),
            emulator_marker: cfg!(feature = "emulator"),
            orientation: Orientation::default(),
        }
    }
}

enum Msg {
    Prompt {
        id: u64,
        prompt: Prompt,
        reply: Sender<Decision>,
    },
    Cancel(u64),
    AskText {
        id: u64,
        request: TextRequest,
        check: TextCheck,
        reply: Sender<TextAnswer>,
        keys: Arc<AtomicU64>,
    },
    CancelText(u64),
    AskChoice {
        id: u64,
        request: ChoiceRequest,
        reply: Sender<ChoiceAnswer>,
    },
    CancelChoice(u64),
    ContactDetails(ContactDetailsView),
    Home(HomeView),
    Alerts(Vec<AlertView>),
    AddAlerts {
        newer: Vec<AlertView>,
        older: Vec<AlertView>,
        keep: usize,
    },
    About(AboutView),
    Button {
        button: PushButton,
        pressed: bool,
    },
    Progress(Option<ProgressView>),
    Toast(Toast),
    Touch(TouchEvent),
    Orientation(Orientation),
    Quit,
}

/// A cloneable, `Send` handle to a running [`Ui`], for other threads.
#[derive(Clone)]
pub struct UiHandle {
    tx: Sender<Msg>,
    ids: Arc<AtomicU64>,
}

/// The answer to one prompt, to wait on.
#[derive(Debug)]
pub struct PromptTicket {
    id: u64,
    rx: Receiver<Decision>,
}

impl PromptTicket {
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Blocks until the owner decides, the prompt times out or is cancelled.
    pub fn wait(&self) -> Decision {
        self.rx.recv().unwrap_or(Decision::Cancelled)
    }
    /// Like [`wait`](Self::wait) but gives up after `timeout` (returns `None`).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Decision> {
        match self.rx.recv_timeout(timeout) {
            Ok(d) => Some(d),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Decision::Cancelled),
        }
    }
    /// The decision if there is one already.
    pub fn try_decision(&self) -> Option<Decision> {
        match self.rx.try_recv() {
            Ok(d) => Some(d),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Decision::Cancelled),
        }
    }
}

/// The answer to one request for text ([`UiHandle::ask_text`]), to wait on.
#[derive(Debug)]
pub struct TextTicket {
    id: u64,
    rx: Receiver<TextAnswer>,
    keys: Arc<AtomicU64>,
}

impl TextTicket {
    pub fn id(&self) -> u64 {
        self.id
    }
    /// When the owner last pressed a key on this keyboard, on the UI's
    /// clock (nanoseconds of [`Clock::now`]; 0: no key yet), so that a
    /// caller's timeout can count from it.
    pub fn last_key_at(&self) -> Duration {
        Duration::from_nanos(self.keys.load(Ordering::SeqCst))
    }
    /// Blocks until Done (on an accepted text) or Cancel.
    pub fn wait(&self) -> TextAnswer {
        self.rx.recv().unwrap_or(TextAnswer::Cancelled)
    }
    /// Like [`wait`](Self::wait) but gives up after `timeout` (`None`).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<TextAnswer> {
        match self.rx.recv_timeout(timeout) {
            Ok(a) => Some(a),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(TextAnswer::Cancelled),
        }
    }
    /// The answer if there is one already.
    pub fn try_answer(&self) -> Option<TextAnswer> {
        match self.rx.try_recv() {
            Ok(a) => Some(a),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(TextAnswer::Cancelled),
        }
    }
}

/// The answer to one step of a flow ([`UiHandle::ask_choice`]), to wait on.
#[derive(Debug)]
pub struct ChoiceTicket {
    id: u64,
    rx: Receiver<ChoiceAnswer>,
}

impl ChoiceTicket {
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Blocks until a choice or Cancel is tapped.
    pub fn wait(&self) -> ChoiceAnswer {
        self.rx.recv().unwrap_or(ChoiceAnswer::Cancelled)
    }
    /// Like [`wait`](Self::wait) but gives up after `timeout` (`None`).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ChoiceAnswer> {
        match self.rx.recv_timeout(timeout) {
            Ok(a) => Some(a),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(ChoiceAnswer::Cancelled),
        }
    }
}

impl UiHandle {
    /// Shows `prompt`; the ticket receives the decision. If the UI is gone
    /// the ticket answers [`Decision::Cancelled`].
    pub fn show_prompt(&self, prompt: Prompt) -> PromptTicket {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, rx) = mpsc::channel();
        let _ = self.tx.send(Msg::Prompt { id, prompt, reply });
        PromptTicket { id, rx }
    }
    /// Withdraws the prompt if it is still open (it answers `Cancelled`).
    pub fn cancel(&self, ticket: &PromptTicket) {
        let _ = self.tx.send(Msg::Cancel(ticket.id));
    }
    /// Shows the on-screen keyboard for `request` (see
    /// [`crate::keyboard`]): the ticket gets the text once Done is tapped
    /// and `check` accepts it, or [`TextAnswer::Cancelled`]. A request
    /// while another is on screen gets [`TextAnswer::Busy`] at once.
    /// Prompts and progress still come first; the keyboard (and what was
    /// typed) is back when they are gone.
    pub fn ask_text(&self, request: TextRequest, check: TextCheck) -> TextTicket {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, rx) = mpsc::channel();
        let keys = Arc::new(AtomicU64::new(0));
        let _ = self.tx.send(Msg::AskText {
            id,
            request,
            check,
            reply,
            keys: keys.clone(),
        });
        TextTicket { id, rx, keys }
    }
    /// Takes the keyboard off the screen if it is still there for this
    /// ticket (it answers `Cancelled`).
    pub fn cancel_text(&self, ticket: &TextTicket) {
        let _ = self.tx.send(Msg::CancelText(ticket.id));
    }
    /// Shows one step of a flow (see [`crate::choice`]): the ticket gets
    /// the index of the choice tapped, or [`ChoiceAnswer::Cancelled`]. A
    /// step while another is on screen gets [`ChoiceAnswer::Busy`] at once.
    pub fn ask_choice(&self, request: ChoiceRequest) -> ChoiceTicket {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, rx) = mpsc::channel();
        let _ = self.tx.send(Msg::AskChoice { id, request, reply });
        ChoiceTicket { id, rx }
    }
    /// Takes the step off the screen if it is still there for this ticket
    /// (it answers `Cancelled`).
    pub fn cancel_choice(&self, ticket: &ChoiceTicket) {
        let _ = self.tx.send(Msg::CancelChoice(ticket.id));
    }
    /// The facts for the contact screen, after [`UiEvent::ContactOpened`]
    /// (shown if that contact's screen is open).
    pub fn set_contact_details(&self, details: ContactDetailsView) {
        let _ = self.tx.send(Msg::ContactDetails(details));
    }
    pub fn set_home(&self, home: HomeView) {
        let _ = self.tx.send(Msg::Home(home));
    }
    /// The audit events for the alerts screen, newest first.
    pub fn set_alerts(&self, alerts: Vec<AlertView>) {
        let _ = self.tx.send(Msg::Alerts(alerts));
    }
    /// Only what changed on the alerts screen: `newer` rows go above the
    /// ones it has, `older` ones below (both newest first), and then only
    /// the first `keep` rows are kept. Cheaper than [`set_alerts`](Self::set_alerts)
    /// for a long list that grows by a row or two. Like a new list, a
    /// change resets what counts as shown for **Acknowledge**.
    pub fn add_alerts(&self, newer: Vec<AlertView>, older: Vec<AlertView>, keep: usize) {
        let _ = self.tx.send(Msg::AddAlerts { newer, older, keep });
    }
    /// What the About screen shows.
    pub fn set_about(&self, about: AboutView) {
        let _ = self.tx.send(Msg::About(about));
    }
    /// A push button went down (`pressed`) or came up, already debounced.
    /// Like a tap, it counts only if both ends fall on the same armed
    /// prompt (see the module doc); its fate is in
    /// [`TraceHandle::button_records`].
    pub fn push_button(&self, button: PushButton, pressed: bool) {
        let _ = self.tx.send(Msg::Button { button, pressed });
    }
    /// Shows (or updates) the progress screen.
    pub fn show_progress(&self, progress: ProgressView) {
        let _ = self.tx.send(Msg::Progress(Some(progress)));
    }
    pub fn hide_progress(&self) {
        let _ = self.tx.send(Msg::Progress(None));
    }
    pub fn toast(&self, toast: Toast) {
        let _ = self.tx.send(Msg::Toast(toast));
    }
    /// Injects a touch as if it came from the touch source.
    pub fn touch(&self, event: TouchEvent) {
        let _ = self.tx.send(Msg::Touch(event));
    }
    /// Turns the screen and corrects touches from now on (see
    /// [`crate::orient`]); the whole screen is drawn again.
    pub fn set_orientation(&self, orientation: Orientation) {
        let _ = self.tx.send(Msg::Orientation(orientation));
    }
    /// Makes [`Ui::run`] return.
    pub fn quit(&self) {
        let _ = self.tx.send(Msg::Quit);
    }
}

/// Why a tap did nothing.
pub mod ignored {
    /// The press came before the prompt's buttons were armed.
    pub const NOT_ARMED: &str = "not_armed";
    /// The press and the release fell on different prompts (one was
    /// swapped in while the finger was down).
    pub const PROMPT_CHANGED: &str = "prompt_changed";
    /// The press and the release fell on different steps of a flow (a
    /// keyboard or a choice was swapped in while the finger was down).
    pub const STEP_CHANGED: &str = "step_changed";
    /// A push button was pressed while no prompt was on screen.
    pub const NO_PROMPT: &str = "no_prompt";
    /// Both push buttons were down at once: neither press counts.
    pub const BOTH_PRESSED: &str = "both_pressed";
    /// Approve on the confirm-open of a private contact, which has no
    /// Open for laptop (issue 19): only Read here opens it.
    pub const NOT_FOR_LAPTOP: &str = "not_for_laptop";
}

/// What became of one push of a physical button (press and release).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ButtonRecord {
    /// Pushes handled before this one (counts from 0).
    pub seq: u64,
    pub button: PushButton,
    /// `None` if it answered the prompt; else why it was dropped (one of
    /// the [`ignored`] reasons).
    pub ignored: Option<&'static str>,
}

/// What became of one tap (press and release), as the UI handled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRecord {
    /// Taps handled before this one (counts from 0).
    pub seq: u64,
    /// Where the finger was lifted, as the touch source said (panel
    /// pixels, before the owner's correction and turn).
    pub x: u32,
    pub y: u32,
    /// `None` if the tap went to the screen; else why it was dropped (one
    /// of the [`ignored`] reasons).
    pub ignored: Option<&'static str>,
}

/// The last taps, newest last.
#[derive(Default)]
struct TapLog {
    handled: u64,
    recent: VecDeque<TapRecord>,
}

/// How many tap records are kept for readers that come late.
const TAPS_KEPT: usize = 32;

/// The latest screen trace and the fate of the last taps, shared with other
/// threads (the emulator page).
#[derive(Clone, Default)]
pub struct TraceHandle {
    inner: Arc<Mutex<ScreenTrace>>,
    taps: Arc<(Mutex<TapLog>, Condvar)>,
    /// Turns of [`Ui::run`]'s loop: a heartbeat for a watchdog.
    turns: Arc<std::sync::atomic::AtomicU64>,
    /// Touches, button presses and prompts so far (see [`Self::activity`]).
    activity: Arc<AtomicU64>,
    /// A prompt waits for the owner.
    prompt_waiting: Arc<AtomicBool>,
    /// The last pushes of the physical buttons, newest last.
    pushes: Arc<Mutex<(u64, VecDeque<ButtonRecord>)>>,
}

impl TraceHandle {
    pub fn get(&self) -> ScreenTrace {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, t: ScreenTrace) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// How many turns the UI loop ([`Ui::run`]) has made. It turns at least
    /// once a second (plus the time to draw a frame) while the UI is alive,
    /// so a count that stops moving means a stuck UI thread.
    pub fn loop_turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    /// A count that moves at every touch, every push-button press and
    /// every prompt shown: the owner's (or the computer's) activity, for
    /// the board's backlight idle timer.
    pub fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    /// Whether a prompt is on screen, waiting for the owner (for the
    /// board's status LED and backlight).
    pub fn prompt_waiting(&self) -> bool {
        self.prompt_waiting.load(Ordering::Relaxed)
    }

    /// What became of the last pushes of the physical buttons (at most
    /// 32), oldest first.
    pub fn button_records(&self) -> Vec<ButtonRecord> {
        let log = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        log.1.iter().cloned().collect()
    }

    fn record_button(&self, button: PushButton, ignored: Option<&'static str>) {
        let mut log = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        let seq = log.0;
        log.0 += 1;
        if log.1.len() == TAPS_KEPT {
            log.1.pop_front();
        }
        log.1.push_back(ButtonRecord {
            seq,
            button,
            ignored,
        });
    }

    fn touched(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// How many taps the UI has handled so far. Read it before sending a
    /// tap, then [`wait_tap`](Self::wait_tap) for what became of it.
    pub fn taps_handled(&self) -> u64 {
        self.taps
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handled
    }

    /// Waits up to `timeout` for the first tap released at (`x`, `y`)
    /// after the first `after` taps, and returns what became of it, or
    /// `None` if the UI has not handled such a tap by then. (Taps are
    /// matched by place: if another source queued a tap at the very same
    /// pixel just before, its record is the one returned.)
    pub fn wait_tap(&self, after: u64, x: u32, y: u32, timeout: Duration) -> Option<TapRecord> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.taps;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = log
                .recent
                .iter()
                .find(|r| r.seq >= after && r.x == x && r.y == y)
            {
                return Some(r.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            log = match cvar.wait_timeout(log, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn record_tap(&self, x: u32, y: u32, ignored: Option<&'static str>) {
        let (lock, cvar) = &*self.taps;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        let seq = log.handled;
        log.handled += 1;
        if log.recent.len() == TAPS_KEPT {
            log.recent.pop_front();
        }
        log.recent.push_back(TapRecord { seq, x, y, ignored });
        cvar.notify_all();
    }
}

/// A finger that is down: which prompt it pressed on (`None`: no prompt),
/// which step of a flow (keyboard or choice) was on screen, or why the
/// press was already dropped.
#[derive(Clone, Copy)]
struct Press {
    prompt: Option<u64>,
    step: Option<u64>,
    ignored: Option<&'static str>,
}

struct ActivePrompt {
    id: u64,
    prompt: Prompt,
    reply: Sender<Decision>,
    shown_at: Duration,
    /// Taps count from `shown_at + arm_after`.
    arm_after: Duration,
    /// It came right after a withdrawn one ([`UiConfig::changed_arm_delay`]).
    changed: bool,
    deadline: Duration,
    last_secs: u64,
    /// The trace already says the buttons are armed.
    armed_traced: bool,
    /// The first line of the message shown (confirm-seal's Up / Down).
    message_top: usize,
}

#[derive(Clone, PartialEq, Eq)]
enum UserScreen {
    Home,
    Alerts,
    About,
    /// The details of the contact of this name.
    Contact(String),
    /// "Remove this contact?"
    RemoveContact(String),
}

/// A step of a flow on screen.
struct ActiveChoice {
    id: u64,
    request: ChoiceRequest,
    reply: Sender<ChoiceAnswer>,
}

/// A request for text on the keyboard.
struct ActiveText {
    id: u64,
    request: TextRequest,
    check: TextCheck,
    reply: Sender<TextAnswer>,
    typing: Typing,
    /// Why the last Done was refused; cleared by the next key.
    reason: Option<String>,
    /// When the last key was pressed ([`TextTicket::last_key_at`]).
    keys: Arc<AtomicU64>,
}

/// A UI running on its own thread, from [`Ui::spawn`].
pub struct UiThread {
    /// Post prompts, home updates, toasts.
    pub handle: UiHandle,
    /// The latest screen trace.
    pub trace: TraceHandle,
    /// Owner actions ([`UiEvent`]).
    pub events: Receiver<UiEvent>,
    join: std::thread::JoinHandle<Result<(), UiError>>,
}

impl UiThread {
    /// Asks the UI to stop and waits for it.
    pub fn stop(self) -> Result<(), UiError> {
        self.handle.quit();
        self.join
            .join()
            .unwrap_or_else(|_| Err(UiError::Other("the UI thread panicked".into())))
    }

    /// Whether the UI thread has ended (an error, or [`UiHandle::quit`]).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

/// The UI, on its own thread. See the module docs.
pub struct Ui {
    app: AppWindow,
    window: Rc<MinimalSoftwareWindow>,
    display: Box<dyn Display>,
    touch: Option<Box<dyn Touch>>,
    clock: Arc<dyn Clock>,
    config: UiConfig,
    layout: Layout,
    frame: Frame,
    /// The frame turned by 180° on its way to the display (upside down).
    turned: Frame,
    /// The whole frame goes to the display at the next render (the
    /// orientation changed).
    present_all: bool,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    ids: Arc<AtomicU64>,
    actions: Rc<RefCell<Vec<String>>>,
    events_tx: Sender<UiEvent>,
    events_rx: Option<Receiver<UiEvent>>,
    trace: TraceHandle,

    home: HomeView,
    alerts: Vec<AlertView>,
    /// The alerts screen's first row shown.
    alerts_top: usize,
    /// How many of the unacknowledged alerts (the first rows) have been on
    /// the alerts screen since it was opened or its list last changed.
    alerts_shown: usize,
    about: AboutView,
    progress: Option<ProgressView>,
    prompt: Option<ActivePrompt>,
    /// When the last prompt was withdrawn (not answered by the owner).
    withdrawn_at: Option<Duration>,
    /// The push buttons that are down (Approve, Reject), as [`Press`]es.
    held: [Option<Press>; 2],
    toast: Option<(Toast, Duration)>,
    /// A toast that came in while a contact's screen was open (where a
    /// toast covers Back and Remove), shown once home is, unless it
    /// expired meanwhile.
    toast_for_home: Option<(Toast, Duration)>,
    user_screen: UserScreen,
    details: Option<ContactDetailsView>,
    text: Option<ActiveText>,
    choice: Option<ActiveChoice>,
    /// The home screen's first contact row shown (More pages on).
    home_top: usize,
    keys: KeyboardLayout,
    press: Option<Press>,
    screen_texts: Vec<String>,
    countdown_text: Option<String>,
    toast_text: Option<String>,
    content_dirty: bool,
    quit: bool,
}

impl Ui {
    /// A UI on this thread, rendering at `display.size()`.
    pub fn new(
        display: Box<dyn Display>,
        touch: Option<Box<dyn Touch>>,
        clock: Arc<dyn Clock>,
        config: UiConfig,
    ) -> Result<Ui, UiError> {
        let (width, height) = display.size();
        if width == 0 || height == 0 {
            return Err(UiError::Unsupported(format!(
                "display reports size {width}x{height}"
            )));
        }
        let window = MinimalSoftwareWindow::new(RepaintBufferType::ReusedBuffer);
        platform::prepare(window.clone(), clock.clone())?;
        let app = AppWindow::new().map_err(|e| UiError::Other(format!("creating screens: {e}")))?;
        window.set_size(slint::PhysicalSize::new(width, height));
        app.show()
            .map_err(|e| UiError::Other(format!("showing window: {e}")))?;
        let layout = Layout::for_size(width, height);
        app.global::<Theme>().set_compact(layout.compact);
        app.set_emulator(config.emulator_marker);
        let actions: Rc<RefCell<Vec<String>>> = Rc::default();
        let sink = actions.clone();
        app.global::<Bridge>()
            .on_action(move |id| sink.borrow_mut().push(id.to_string()));
        let (tx, rx) = mpsc::channel();
        let (events_tx, events_rx) = mpsc::channel();
        let mut ui = Ui {
            app,
            window,
            display,
            touch,
            clock,
            config,
            layout,
            frame: Frame::new(width, height),
            turned: Frame::new(0, 0),
            present_all: false,
            tx,
            rx,
            ids: Arc::default(),
            actions,
            events_tx,
            events_rx: Some(events_rx),
            trace: TraceHandle::default(),
            home: HomeView::default(),
            alerts: Vec::new(),
            alerts_top: 0,
            alerts_shown: 0,
            about: AboutView::default(),
            progress: None,
            prompt: None,
            withdrawn_at: None,
            held: [None; 2],
            toast: None,
            user_screen: UserScreen::Home,
            details: None,
            text: None,
            choice: None,
            home_top: 0,
            keys: keyboard::layout(width, height, layout.compact),
            press: None,
            screen_texts: Vec::new(),
            countdown_text: None,
            toast_text: None,
            toast_for_home: None,
            content_dirty: true,
            quit: false,
        };
        ui.refresh();
        Ok(ui)
    }

    /// Starts a UI on a new thread named `otc-ui` and returns once its
    /// screens exist (or failed to).
    pub fn spawn(
        display: Box<dyn Display>,
        touch: Option<Box<dyn Touch>>,
        clock: Arc<dyn Clock>,
        config: UiConfig,
    ) -> Result<UiThread, UiError> {
        let (tx, rx) = mpsc::channel();
        let join = std::thread::Builder::new()
            .name("otc-ui".into())
            .spawn(move || {
                let mut ui = match Ui::new(display, touch, clock, config) {
                    Ok(ui) => ui,
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = tx.send(Err(e));
                        return Err(UiError::Other(msg));
                    }
                };
                let events = ui.take_events();
                let _ = tx.send(Ok((ui.handle(), ui.trace_handle(), events)));
                ui.run()
            })
            .map_err(|e| UiError::Other(format!("starting the UI thread: {e}")))?;
        match rx.recv() {
            Ok(Ok((handle, trace, Some(events)))) => Ok(UiThread {
                handle,
                trace,
                events,
                join,
            }),
            Ok(Err(e)) => Err(e),
            _ => Err(UiError::Other(
                "the UI thread stopped while starting".into(),
            )),
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> UiHandle {
        UiHandle {
            tx: self.tx.clone(),
            ids: self.ids.clone(),
        }
    }

    /// The latest trace, readable from any thread.
    pub fn trace_handle(&self) -> TraceHandle {
        self.trace.clone()
    }

    /// Owner actions firmware may care about (can be taken once).
    pub fn take_events(&mut self) -> Option<Receiver<UiEvent>> {
        self.events_rx.take()
    }

    /// Logical screen size.
    pub fn size(&self) -> (u32, u32) {
        (self.frame.width, self.frame.height)
    }

    /// The last rendered frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Runs until [`UiHandle::quit`]. The touch source is polled on its own
    /// thread so posted prompts never wait for a touch.
    pub fn run(mut self) -> Result<(), UiError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut poller = None;
        if let Some(mut touch) = self.touch.take() {
            let tx = self.tx.clone();
            let stop = stop.clone();
            poller = Some(std::thread::spawn(move || -> Result<(), UiError> {
                while !stop.load(Ordering::Relaxed) {
                    for e in touch.poll(Duration::from_millis(100))? {
                        if tx.send(Msg::Touch(e)).is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }));
        }
        let result = loop {
            if let Err(e) = self.step(Duration::from_secs(1)) {
                break Err(e);
            }
            self.trace.turns.fetch_add(1, Ordering::Relaxed);
            if self.quit {
                break Ok(());
            }
            if let Some(p) = &poller
                && p.is_finished()
            {
                break match poller.take().map(|p| p.join()) {
                    Some(Ok(Err(e))) => Err(e),
                    _ => Err(UiError::Other("touch thread stopped".into())),
                };
            }
        };
        stop.store(true, Ordering::Relaxed);
        result
    }

    /// One turn of the loop: polls the touch source (without blocking),
    /// waits up to `wait` (less if a countdown or timer is due) for a
    /// request if nothing is pending, handles everything pending,
    /// updates countdowns and timeouts, renders and presents. Returns
    /// whether anything was drawn.
    pub fn step(&mut self, wait: Duration) -> Result<bool, UiError> {
        let mut msgs = Vec::new();
        if let Some(t) = self.touch.as_mut() {
            msgs.extend(t.poll(Duration::ZERO)?.into_iter().map(Msg::Touch));
        }
        if msgs.is_empty() && !wait.is_zero() && !self.content_dirty {
            let wait = wait.min(self.until_next_wakeup());
            match self.rx.recv_timeout(wait) {
                Ok(m) => msgs.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
        }
        while let Ok(m) = self.rx.try_recv() {
            msgs.push(m);
        }
        for m in msgs {
            self.handle_msg(m);
        }
        self.tick();
        self.render()
    }

    /// Renders now if anything changed; returns whether anything was drawn.
    pub fn render(&mut self) -> Result<bool, UiError> {
        if self.content_dirty {
            self.refresh();
        }
        slint::platform::update_timers_and_animations();
        let mut dirty = None;
        let frame = &mut self.frame;
        self.window.draw_if_needed(|renderer| {
            let buf: &mut [Rgb565Pixel] = bytemuck_cast(&mut frame.pixels);
            let region = renderer.render(buf, frame.width as usize);
            let o = region.bounding_box_origin();
            let s = region.bounding_box_size();
            dirty = Some(Rect::new(
                o.x.max(0) as u32,
                o.y.max(0) as u32,
                s.width,
                s.height,
            ));
        });
        match dirty {
            Some(d) => {
                // Trace first: whoever sees the new frame finds its trace.
                self.trace.set(self.trace());
                if self.present_all {
                    self.present_all = false;
                    self.present(self.whole())?;
                } else if !d.is_empty() {
                    self.present(d)?;
                }
                Ok(true)
            }
            None if self.present_all => {
                self.present_all = false;
                self.trace.set(self.trace());
                self.present(self.whole())?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn whole(&self) -> Rect {
        Rect::new(0, 0, self.frame.width, self.frame.height)
    }

    /// Shows `dirty` of the frame on the display, turned by 180° when the
    /// owner's orientation says the panel is upside down.
    fn present(&mut self, dirty: Rect) -> Result<(), UiError> {
        if !self.config.orientation.upside_down {
            return self.display.present(&self.frame, dirty);
        }
        let (w, h) = (self.frame.width, self.frame.height);
        if self.turned.width != w || self.turned.height != h {
            self.turned = Frame::new(w, h);
        }
        let x1 = (dirty.x + dirty.w).min(w);
        let y1 = (dirty.y + dirty.h).min(h);
        let (x0, y0) = (dirty.x.min(x1), dirty.y.min(y1));
        let wu = w as usize;
        for y in y0..y1 {
            let src = y as usize * wu;
            let dst = (h - 1 - y) as usize * wu;
            for x in x0..x1 {
                self.turned.pixels[dst + (w - 1 - x) as usize] =
                    self.frame.pixels[src + x as usize];
            }
        }
        let turned = Rect::new(w - x1, h - y1, x1 - x0, y1 - y0);
        self.display.present(&self.turned, turned)
    }

    /// Redraws and presents the whole screen, e.g. after the display lost
    /// its content (console switch, panel reset). Returns the region drawn.
    pub fn repaint_all(&mut self) -> Result<Rect, UiError> {
        if self.content_dirty {
            self.refresh();
        }
        self.window.request_redraw();
        let mut dirty = Rect::default();
        let frame = &mut self.frame;
        self.window.draw_if_needed(|renderer| {
            renderer.set_repaint_buffer_type(RepaintBufferType::NewBuffer);
            let buf: &mut [Rgb565Pixel] = bytemuck_cast(&mut frame.pixels);
            let region = renderer.render(buf, frame.width as usize);
            renderer.set_repaint_buffer_type(RepaintBufferType::ReusedBuffer);
            let o = region.bounding_box_origin();
            let s = region.bounding_box_size();
            dirty = Rect::new(o.x.max(0) as u32, o.y.max(0) as u32, s.width, s.height);
        });
        if !dirty.is_empty() {
            self.present(dirty)?;
        }
        Ok(dirty)
    }

    /// What the screen shows now.
    pub fn trace(&self) -> ScreenTrace {
        let mut texts = self.screen_texts.clone();
        let screen = self.screen_name();
        if let Some(c) = &self.countdown_text {
            texts.push(c.clone());
        }
        if self.config.emulator_marker {
            texts.push("EMULATOR".into());
        }
        // Before a prompt is armed, every touch is dropped, whatever it hits.
        let armed = self.prompt_armed();
        let mut buttons: Vec<TraceButton> = self
            .app
            .get_buttons()
            .iter()
            // A hidden button has no label (the alerts screen's Up, Down,
            // Acknowledge when there is nothing to do).
            .filter(|b| !b.label.is_empty())
            .map(|b| TraceButton {
                id: b.id.to_string(),
                label: b.label.to_string(),
                x: b.x.round().max(0.0) as u32,
                y: b.y.round().max(0.0) as u32,
                w: b.w.round().max(0.0) as u32,
                h: b.h.round().max(0.0) as u32,
                armed,
            })
            .collect();
        if screen == "home" {
            buttons.extend(self.contact_buttons(armed));
        }
        if let Some(t) = &self.toast_text {
            texts.push(t.clone());
            let b = self.app.get_toast_info();
            buttons.push(TraceButton {
                id: b.id.to_string(),
                label: b.label.to_string(),
                x: b.x.round().max(0.0) as u32,
                y: b.y.round().max(0.0) as u32,
                w: b.w.round().max(0.0) as u32,
                h: b.h.round().max(0.0) as u32,
                armed,
            });
        }
        ScreenTrace {
            screen,
            texts,
            buttons,
            toast: self.toast_text.clone(),
            prompt: self.prompt.as_ref().map(|p| p.id),
            upside_down: self
                .config
                .orientation
                .upside_down
                .then_some([self.frame.width, self.frame.height]),
        }
    }

    /// One button per contact row on the home screen (id `contact:I`,
    /// labelled with the name as shown), where the rows are drawn.
    fn contact_buttons(&self, armed: bool) -> Vec<TraceButton> {
        if self.home.locked {
            return Vec::new();
        }
        let first = self.app.get_contact_first_row();
        let step = self.app.get_contact_row_step();
        let n = self.home.contacts.len();
        let top = screens::home_top(self.layout, n, self.home_top);
        let shown = screens::home_rows_shown(self.layout, n, top);
        self.home.contacts[top..top + shown]
            .iter()
            .enumerate()
            .map(|(i, c)| TraceButton {
                id: format!("contact:{}", top + i),
                label: screens::contact_name(&c.name),
                x: first.x.round().max(0.0) as u32,
                y: (first.y + step * i as f32).round().max(0.0) as u32,
                w: first.w.round().max(0.0) as u32,
                h: first.h.round().max(0.0) as u32,
                armed,
            })
            .collect()
    }

    /// The trace's name of the screen on show: a step of a flow is named
    /// by its request (its Slint screen is `choice`, see
    /// [`Self::slint_screen`]).
    fn screen_name(&self) -> String {
        match (&self.prompt, &self.progress, &self.text, &self.choice) {
            (None, None, None, Some(c)) => c.request.screen.clone(),
            _ => self.slint_screen().to_string(),
        }
    }

    /// The Slint screen on show.
    fn slint_screen(&self) -> &'static str {
        if let Some(p) = &self.prompt {
            screens::prompt_screen(&p.prompt)
        } else if self.progress.is_some() {
            "progress"
        } else if self.text.is_some() {
            "keyboard"
        } else if self.choice.is_some() {
            "choice"
        } else {
            match self.user_screen {
                UserScreen::Home => "home",
                UserScreen::Alerts => "alerts",
                UserScreen::About => "about",
                UserScreen::Contact(_) => "contact",
                UserScreen::RemoveContact(_) => "remove-contact",
            }
        }
    }

    fn until_next_wakeup(&self) -> Duration {
        let now = self.clock.now();
        let mut next = Duration::from_secs(1);
        if let Some(p) = &self.prompt {
            // Wake when the buttons arm, so the trace says so at once.
            let arms_at = p.shown_at + p.arm_after;
            if !p.armed_traced && arms_at > now {
                next = next.min(arms_at - now);
            }
            // Wake at the next whole second of the countdown.
            let left = p.deadline.saturating_sub(now);
            let frac = Duration::from_nanos((left.as_nanos() % 1_000_000_000) as u64);
            next = next.min(if frac.is_zero() {
                Duration::from_secs(1)
            } else {
                frac
            });
        }
        if let Some((_, until)) = &self.toast {
            next = next.min(until.saturating_sub(now));
        }
        if let Some(t) = slint::platform::duration_until_next_timer_update() {
            next = next.min(t);
        }
        next.max(Duration::from_millis(1))
    }

    /// One message from the handle: each kind goes to the step that
    /// handles it.
    fn handle_msg(&mut self, m: Msg) {
        match m {
            Msg::Prompt { id, prompt, reply } => self.show_prompt(id, prompt, reply),
            Msg::Cancel(id) => self.withdraw_prompt(id),
            Msg::AskText {
                id,
                request,
                check,
                reply,
                keys,
            } => self.start_text(id, request, check, reply, keys),
            Msg::CancelText(id) => {
                if self.text.as_ref().is_some_and(|t| t.id == id) {
                    self.end_text(TextAnswer::Cancelled);
                }
            }
            Msg::AskChoice { id, request, reply } => self.start_choice(id, request, reply),
            Msg::CancelChoice(id) => {
                if self.choice.as_ref().is_some_and(|c| c.id == id) {
                    self.end_choice(ChoiceAnswer::Cancelled);
                }
            }
            Msg::ContactDetails(d) => self.set_details(d),
            Msg::Home(h) => {
                self.home = h;
                self.content_dirty |= self.shows(UserScreen::Home);
            }
            Msg::Alerts(a) => self.set_alerts(a),
            Msg::AddAlerts { newer, older, keep } => self.add_alerts(newer, older, keep),
            Msg::About(a) => {
                self.about = a;
                self.content_dirty = true;
            }
            Msg::Button { button, pressed } => self.on_push_button(button, pressed),
            Msg::Progress(p) => {
                self.progress = p;
                self.content_dirty = true;
            }
            Msg::Toast(t) => self.show_toast(t),
            Msg::Touch(e) => self.on_touch(e),
            Msg::Orientation(o) => {
                self.config.orientation = o;
                // The trace says which way up; the display gets it all.
                self.present_all = true;
                self.content_dirty = true;
            }
            Msg::Quit => self.quit = true,
        }
    }

    /// The prompt `id` is withdrawn (the request went away): it ends as
    /// cancelled, and the next prompt soon after says it changed.
    fn withdraw_prompt(&mut self, id: u64) {
        if self.prompt.as_ref().is_some_and(|p| p.id == id) {
            self.withdrawn_at = Some(self.clock.now());
            self.resolve(Decision::Cancelled);
        }
    }

    /// A contact's details; redrawn if that contact's screen is up.
    fn set_details(&mut self, d: ContactDetailsView) {
        if matches!(&self.user_screen, UserScreen::Contact(n) if *n == d.name) {
            self.content_dirty = true;
        }
        self.details = Some(d);
    }

    /// The whole alert list, replacing the one there was.
    fn set_alerts(&mut self, a: Vec<AlertView>) {
        // What was shown of the old list says nothing of the new
        // one: only what is on screen from now on counts.
        if a != self.alerts {
            self.alerts = a;
            self.alerts_new_list();
        }
    }

    /// A prompt arrives: shown (armed after the arm delay, longer right
    /// after a withdrawn one), unless one is already shown (then `Busy`).
    fn show_prompt(&mut self, id: u64, prompt: Prompt, reply: Sender<Decision>) {
        if self.prompt.is_some() {
            let _ = reply.send(Decision::Busy);
            return;
        }
        let now = self.clock.now();
        let timeout = prompt.timeout();
        // Only the prompt right after the withdrawn one.
        let changed = self
            .withdrawn_at
            .take()
            .is_some_and(|t| now.saturating_sub(t) <= self.config.changed_window);
        let arm_after = if changed {
            self.config.arm_delay.max(self.config.changed_arm_delay)
        } else {
            self.config.arm_delay
        };
        self.prompt = Some(ActivePrompt {
            id,
            prompt,
            reply,
            shown_at: now,
            arm_after,
            changed,
            deadline: now + timeout,
            last_secs: u64::MAX,
            armed_traced: false,
            message_top: 0,
        });
        self.trace.prompt_waiting.store(true, Ordering::Relaxed);
        self.trace.touched();
        // Nothing may cover a prompt's buttons.
        self.toast = None;
        self.content_dirty = true;
    }

    /// A text step arrives (a keyboard screen), unless one is already
    /// shown (then `Busy`); a toast on screen waits for its end.
    fn start_text(
        &mut self,
        id: u64,
        request: TextRequest,
        check: TextCheck,
        reply: Sender<TextAnswer>,
        keys: Arc<AtomicU64>,
    ) {
        if self.text.is_some() {
            let _ = reply.send(TextAnswer::Busy);
            return;
        }
        self.hold_toast();
        self.text = Some(ActiveText {
            id,
            typing: Typing::new(&request),
            request,
            check,
            reply,
            reason: None,
            keys,
        });
        self.content_dirty = true;
    }

    /// A choice step arrives, unless one is already shown (then `Busy`).
    fn start_choice(&mut self, id: u64, request: ChoiceRequest, reply: Sender<ChoiceAnswer>) {
        if self.choice.is_some() {
            let _ = reply.send(ChoiceAnswer::Busy);
            return;
        }
        // Nothing may cover a step's buttons.
        self.toast = None;
        self.choice = Some(ActiveChoice { id, request, reply });
        self.content_dirty = true;
    }

    /// New alerts at the top and older ones at the bottom of the list,
    /// which keeps at most `keep` rows.
    fn add_alerts(&mut self, newer: Vec<AlertView>, older: Vec<AlertView>, keep: usize) {
        // Older rows past `keep` would be cut at once.
        let changed =
            keep > 0 && (!newer.is_empty() || (!older.is_empty() && self.alerts.len() < keep));
        self.alerts.splice(0..0, newer);
        self.alerts.extend(older);
        self.alerts.truncate(keep);
        if changed {
            self.alerts_new_list();
        }
    }

    /// A toast: dropped under a prompt, held while it would cover a step's
    /// keys or buttons, otherwise shown until its time is up.
    fn show_toast(&mut self, t: Toast) {
        if self.prompt.is_some() {
            return;
        }
        let until = self.clock.now() + t.duration;
        if self.text.is_some() || self.choice.is_some() {
            // It would sit over keys (the space bar) or a
            // step's buttons: it waits until the step ends
            // (see `release_held_toast`), error or not.
            self.toast_for_home = Some((t, until));
        } else if self.on_contact_screens() && t.kind != ToastKind::Error {
            // It would sit over Back and Remove: it waits for
            // home (see `back_home`).
            self.toast_for_home = Some((t, until));
        } else {
            self.toast = Some((t, until));
            self.content_dirty = true;
        }
    }

    /// Whether `screen` is what the owner sees now (no prompt or progress
    /// over it): changes to a screen out of sight wait until it is shown,
    /// which refreshes it anyway.
    fn shows(&self, screen: UserScreen) -> bool {
        self.prompt.is_none()
            && self.progress.is_none()
            && self.text.is_none()
            && self.choice.is_none()
            && self.user_screen == screen
    }

    /// The alerts list changed: what was shown of it says nothing of the
    /// new one, so **Acknowledge** counts only what is on screen from now
    /// on; redrawn if in sight.
    fn alerts_new_list(&mut self) {
        self.alerts_top = 0;
        self.alerts_shown = 0;
        self.content_dirty |= self.shows(UserScreen::Alerts);
    }

    /// The step of a flow on screen (a keyboard or a choice), by its
    /// ticket's id.
    fn step_id(&self) -> Option<u64> {
        match (&self.text, &self.choice) {
            (Some(t), _) => Some(t.id),
            (None, Some(c)) => Some(c.id),
            (None, None) => None,
        }
    }

    fn prompt_armed(&self) -> bool {
        match &self.prompt {
            Some(p) => self.clock.now() >= p.shown_at + p.arm_after,
            None => true,
        }
    }

    fn on_touch(&mut self, e: TouchEvent) {
        // Layout and content must be current before hit-testing.
        if self.content_dirty {
            self.refresh();
        }
        if self.on_target(e) {
            return;
        }
        // From the source's (panel) pixels to the UI's: the owner's
        // correction, then the turn (see `crate::orient`).
        let o = self.config.orientation;
        let size = self.size();
        // The tap's record keeps where the source said (what a sender of
        // taps waits for, `TraceHandle::wait_tap`).
        let raw = e;
        let e = match e {
            TouchEvent::Down { x, y } => {
                let (x, y) = o.touch_to_logical(x, y, size);
                TouchEvent::Down { x, y }
            }
            TouchEvent::Move { x, y } => {
                let (x, y) = o.touch_to_logical(x, y, size);
                TouchEvent::Move { x, y }
            }
            TouchEvent::Up { x, y } => {
                let (x, y) = o.touch_to_logical(x, y, size);
                TouchEvent::Up { x, y }
            }
        };
        let pos = |x: u32, y: u32| LogicalPosition::new(x as f32, y as f32);
        match e {
            TouchEvent::Down { x, y } => {
                self.trace.touched();
                let (prompt, step) = (self.prompt.as_ref().map(|p| p.id), self.step_id());
                if !self.prompt_armed() {
                    self.press = Some(Press {
                        prompt,
                        step,
                        ignored: Some(ignored::NOT_ARMED),
                    });
                    return;
                }
                self.press = Some(Press {
                    prompt,
                    step,
                    ignored: None,
                });
                self.dispatch(WindowEvent::PointerMoved {
                    position: pos(x, y),
                });
                self.dispatch(WindowEvent::PointerPressed {
                    position: pos(x, y),
                    button: PointerEventButton::Left,
                });
            }
            TouchEvent::Move { x, y } => {
                if self.press.is_some_and(|p| p.ignored.is_none()) {
                    self.dispatch(WindowEvent::PointerMoved {
                        position: pos(x, y),
                    });
                }
            }
            TouchEvent::Up { x, y } => {
                let now_on = self.prompt.as_ref().map(|p| p.id);
                let verdict = match self.press.take() {
                    Some(Press {
                        ignored: Some(why), ..
                    }) => Some(why),
                    Some(p) if p.prompt != now_on => {
                        // Slint saw the press: let the pointer leave, so
                        // nothing stays pressed and nothing is clicked.
                        self.dispatch(WindowEvent::PointerExited);
                        Some(ignored::PROMPT_CHANGED)
                    }
                    // The same for a step of a flow: its buttons keep
                    // their Slint items across a refresh (see
                    // `screens::in_place`), so the next step's button at
                    // the same place would take the click.
                    Some(p) if p.step != self.step_id() => {
                        self.dispatch(WindowEvent::PointerExited);
                        Some(ignored::STEP_CHANGED)
                    }
                    // A release without a press (a source that lost the
                    // press) clicks nothing in Slint; pass it on.
                    _ => None,
                };
                if verdict.is_none() {
                    self.dispatch(WindowEvent::PointerReleased {
                        position: pos(x, y),
                        button: PointerEventButton::Left,
                    });
                    self.dispatch(WindowEvent::PointerExited);
                }
                // Record after the actions ran, below: a reader that sees
                // the record sees the tap's effect too.
                self.run_actions();
                let (rx, ry) = match raw {
                    TouchEvent::Up { x, y } => (x, y),
                    _ => (x, y),
                };
                self.trace.record_tap(rx, ry, verdict);
                return;
            }
        }
        self.run_actions();
    }

    /// A touch on a target step (see [`crate::choice`]): the release ends
    /// the step with where it landed, in panel pixels before the
    /// correction. Returns whether the touch was the step's.
    fn on_target(&mut self, e: TouchEvent) -> bool {
        let Some(target) = (match (&self.prompt, &self.progress, &self.text, &self.choice) {
            (None, None, None, Some(c)) => c.request.target.clone(),
            _ => None,
        }) else {
            return false;
        };
        match e {
            TouchEvent::Down { .. } => {
                self.trace.touched();
                self.press = Some(Press {
                    prompt: None,
                    step: self.step_id(),
                    ignored: None,
                });
            }
            TouchEvent::Move { .. } => {}
            TouchEvent::Up { x, y } => {
                // A press on another screen (a step before this one) does
                // not end this one.
                if self.press.take().is_some_and(|p| p.step != self.step_id()) {
                    self.trace.record_tap(x, y, Some(ignored::STEP_CHANGED));
                    return true;
                }
                let size = self.size();
                let (tx, ty) = screens::target_center(&target, size);
                let target = self.config.orientation.turn(tx, ty, size);
                self.end_choice(ChoiceAnswer::Tapped {
                    at: (x, y),
                    target,
                    size,
                });
                self.trace.record_tap(x, y, None);
            }
        }
        true
    }

    /// A push button's press or release (see the module doc).
    fn on_push_button(&mut self, button: PushButton, pressed: bool) {
        let (me, other) = match button {
            PushButton::Approve => (0, 1),
            PushButton::Reject => (1, 0),
        };
        if pressed {
            self.trace.touched();
            let prompt = self.prompt.as_ref().map(|p| p.id);
            let mut press = Press {
                prompt,
                step: None,
                ignored: if prompt.is_none() {
                    Some(ignored::NO_PROMPT)
                } else if !self.prompt_armed() {
                    Some(ignored::NOT_ARMED)
                } else {
                    None
                },
            };
            // Both down at once: an ambiguous answer counts for neither.
            if let Some(o) = self.held[other].as_mut() {
                o.ignored.get_or_insert(ignored::BOTH_PRESSED);
                press.ignored.get_or_insert(ignored::BOTH_PRESSED);
            }
            self.held[me] = Some(press);
            return;
        }
        // A release with no press seen (e.g. held since before start).
        let Some(press) = self.held[me].take() else {
            return;
        };
        let now_on = self.prompt.as_ref().map(|p| p.id);
        let verdict = match press {
            Press {
                ignored: Some(why), ..
            } => Some(why),
            p if p.prompt != now_on => Some(ignored::PROMPT_CHANGED),
            _ if button == PushButton::Approve && !self.laptop_may_approve() => {
                Some(ignored::NOT_FOR_LAPTOP)
            }
            _ => None,
        };
        if verdict.is_none() {
            self.resolve(match button {
                PushButton::Approve => Decision::Approve,
                PushButton::Reject => Decision::Reject,
            });
        }
        self.trace.record_button(button, verdict);
    }

    /// Approve may answer the prompt on screen: false only on the
    /// confirm-open of a private contact (no Open for laptop).
    fn laptop_may_approve(&self) -> bool {
        !matches!(
            self.prompt.as_ref().map(|p| &p.prompt),
            Some(Prompt::Open {
                for_laptop: false,
                ..
            })
        )
    }

    /// A confirm-open is on screen (Read here answers it).
    fn is_open_prompt(&self) -> bool {
        matches!(
            self.prompt.as_ref().map(|p| &p.prompt),
            Some(Prompt::Open { .. })
        )
    }

    fn run_actions(&mut self) {
        let actions: Vec<String> = std::mem::take(&mut *self.actions.borrow_mut());
        for a in actions {
            self.on_action(&a);
        }
    }

    fn dispatch(&self, e: WindowEvent) {
        let _ = self.window.dispatch_event_with_result(e);
    }

    /// A button's action id: handled by the group of the screen it
    /// belongs to; an id no group takes (its screen is not up) does nothing.
    fn on_action(&mut self, id: &str) {
        // The groups are tried in this order, each taking the ids it
        // knows (when their screen is up).
        let _ = self.on_prompt_action(id)
            || self.on_alerts_action(id)
            || self.on_home_action(id)
            || self.on_step_action(id)
            || self.on_contact_action(id)
            || self.on_other_action(id);
    }

    /// Actions on a prompt: Approve, Read here, Reject, scrolling its
    /// message. Returns whether `id` was one of them.
    fn on_prompt_action(&mut self, id: &str) -> bool {
        match id {
            "approve" if self.prompt.is_some() && self.laptop_may_approve() => {
                self.resolve(Decision::Approve)
            }
            "read-here" if self.is_open_prompt() => self.resolve(Decision::ReadHere),
            "reject" if self.prompt.is_some() => self.resolve(Decision::Reject),
            "message-up" | "message-down" if self.prompt.is_some() => {
                let rows = screens::message_geometry(self.layout).1;
                if let Some(p) = self.prompt.as_mut() {
                    p.message_top = if id == "message-up" {
                        p.message_top.saturating_sub(rows)
                    } else {
                        p.message_top + rows
                    };
                }
                self.content_dirty = true;
            }
            _ => return false,
        }
        true
    }

    /// Actions of the alerts screen: opening it, scrolling, Acknowledge.
    /// Returns whether `id` was one of them.
    fn on_alerts_action(&mut self, id: &str) -> bool {
        match id {
            "alerts" if self.on_home() => {
                self.user_screen = UserScreen::Alerts;
                self.alerts_top = 0;
                self.alerts_shown = 0;
                let _ = self.events_tx.send(UiEvent::AlertsOpened);
                self.content_dirty = true;
            }
            "alerts-up" if self.user_screen == UserScreen::Alerts => {
                self.alerts_top = self.alerts_top.saturating_sub(self.layout.alert_rows());
                self.content_dirty = true;
            }
            "alerts-down" if self.user_screen == UserScreen::Alerts => {
                self.alerts_top += self.layout.alert_rows();
                self.content_dirty = true;
            }
            "acknowledge" if self.user_screen == UserScreen::Alerts && self.alerts_shown > 0 => {
                self.acknowledge_shown()
            }
            _ => return false,
        }
        true
    }

    /// Acknowledge: the oldest unacknowledged alerts, as many as were
    /// shown (the screen lists them first, oldest first).
    fn acknowledge_shown(&mut self) {
        let n = self.alerts_shown;
        let list = crate::model::alerts_digest(&self.alerts);
        for a in self.alerts.iter_mut().rev().filter(|a| a.unacked).take(n) {
            a.unacked = false;
        }
        self.alerts_shown = 0;
        let _ = self.events_tx.send(UiEvent::AlertsAcknowledged {
            count: u32::try_from(n).unwrap_or(u32::MAX),
            list,
        });
        self.content_dirty = true;
    }

    /// Actions of home and About: About, Back, the pairing flows,
    /// Settings, Lock now, More. Returns whether `id` was one of them.
    fn on_home_action(&mut self, id: &str) -> bool {
        match id {
            "about" if self.on_home() => {
                self.user_screen = UserScreen::About;
                self.content_dirty = true;
            }
            "back" => {
                self.back_home();
            }
            "new-contact" | "import-contact" if self.on_home() => {
                let _ = self.events_tx.send(if id == "new-contact" {
                    UiEvent::NewContact
                } else {
                    UiEvent::ImportContact
                });
            }
            "settings" if self.slint_screen() == "about" => {
                let _ = self.events_tx.send(UiEvent::SettingsOpened);
            }
            "lock-now" if self.on_home() => {
                let _ = self.events_tx.send(UiEvent::LockNow);
            }
            "home-more" if self.on_home() => {
                let n = self.home.contacts.len();
                let top = screens::home_top(self.layout, n, self.home_top);
                self.home_top = screens::home_top(self.layout, n, top + self.layout.max_rows());
                self.content_dirty = true;
            }
            _ => return false,
        }
        true
    }

    /// Actions of a flow's steps: a choice's buttons and Cancel, and the
    /// keys of a text step. Returns whether `id` was one of them.
    fn on_step_action(&mut self, id: &str) -> bool {
        match id {
            choice::CANCEL_ID if self.on_choice() => self.end_choice(ChoiceAnswer::Cancelled),
            _ if id.starts_with("choice:") && self.on_choice() => {
                let n = self.choice.as_ref().map_or(0, |c| c.request.choices.len());
                let i = id["choice:".len()..].parse::<usize>().ok();
                if let Some(i) = i.filter(|i| *i < n.min(choice::MAX_CHOICES)) {
                    self.end_choice(ChoiceAnswer::Chosen(i));
                }
            }
            _ if id.starts_with(keyboard::KEY_PREFIX) => {
                if let Some(k) = Key::from_id(id) {
                    self.on_key(k);
                }
            }
            _ => return false,
        }
        true
    }

    /// Actions about one contact: opening it from home, Messages,
    /// Private, Remove and its confirmation. Returns whether `id` was one
    /// of them.
    fn on_contact_action(&mut self, id: &str) -> bool {
        match id {
            _ if id.starts_with("contact:") && self.on_home() => self.open_contact(id),
            "messages" => {
                if let UserScreen::Contact(name) = &self.user_screen {
                    let _ = self
                        .events_tx
                        .send(UiEvent::ConversationOpened { name: name.clone() });
                }
            }
            "private" => {
                if let (UserScreen::Contact(name), Some(d)) = (&self.user_screen, &self.details)
                    && d.name == *name
                {
                    let _ = self.events_tx.send(UiEvent::SetPrivate {
                        name: name.clone(),
                        private: !d.private,
                    });
                }
            }
            "remove" | "remove-cancel" | "remove-confirm" => self.on_remove_action(id),
            _ => return false,
        }
        true
    }

    /// `contact:ROW` on home: the contact screen of that row, if it is
    /// one of the rows shown.
    fn open_contact(&mut self, id: &str) {
        let n = self.home.contacts.len();
        let top = screens::home_top(self.layout, n, self.home_top);
        let shown = top..top + screens::home_rows_shown(self.layout, n, top);
        let row = id["contact:".len()..].parse::<usize>().ok();
        if let Some(c) = row
            .filter(|i| shown.contains(i))
            .map(|i| &self.home.contacts[i])
        {
            let name = c.name.clone();
            self.details = None;
            // Nothing may cover this screen's buttons (a toast sits
            // where Back and Remove are).
            self.toast = None;
            self.user_screen = UserScreen::Contact(name.clone());
            let _ = self.events_tx.send(UiEvent::ContactOpened { name });
            self.content_dirty = true;
        }
    }

    /// Remove on a contact's screen, then Cancel or Remove on the
    /// confirmation.
    fn on_remove_action(&mut self, id: &str) {
        match (id, &self.user_screen) {
            ("remove", UserScreen::Contact(name)) => {
                self.toast = None;
                self.user_screen = UserScreen::RemoveContact(name.clone());
                self.content_dirty = true;
            }
            ("remove-cancel", UserScreen::RemoveContact(name)) => {
                self.user_screen = UserScreen::Contact(name.clone());
                self.content_dirty = true;
            }
            ("remove-confirm", UserScreen::RemoveContact(name)) => {
                let name = name.clone();
                self.back_home();
                let _ = self.events_tx.send(UiEvent::RemoveContact { name });
                self.content_dirty = true;
            }
            _ => {}
        }
    }

    /// The progress screen's Cancel and a toast's dismissal. Returns
    /// whether `id` was one of them.
    fn on_other_action(&mut self, id: &str) -> bool {
        match id {
            "cancel" if self.progress.is_some() => {
                let _ = self.events_tx.send(UiEvent::ProgressCancelled);
            }
            "dismiss-toast" => {
                self.toast = None;
                self.content_dirty = true;
            }
            _ => return false,
        }
        true
    }

    /// A key of the on-screen keyboard.
    fn on_key(&mut self, key: Key) {
        let Some(t) = self.text.as_mut() else {
            return;
        };
        let now = u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX);
        t.keys.store(now.max(1), Ordering::SeqCst);
        match key {
            Key::Cancel => self.end_text(TextAnswer::Cancelled),
            Key::Done => match (t.check)(&t.typing.text) {
                Ok(()) => {
                    let text = t.typing.text.clone();
                    self.end_text(TextAnswer::Done(text));
                }
                Err(reason) => {
                    t.reason = Some(reason);
                    self.content_dirty = true;
                }
            },
            k => {
                t.typing.press(k);
                t.reason = None;
                self.content_dirty = true;
            }
        }
    }

    /// The home screen is what the owner sees (no prompt, progress,
    /// keyboard or step over it).
    /// A contact's screen (or its Remove question) is the user screen.
    fn on_contact_screens(&self) -> bool {
        matches!(
            self.user_screen,
            UserScreen::Contact(_) | UserScreen::RemoveContact(_)
        )
    }

    /// Back to the home screen, with a toast that waited for it.
    fn back_home(&mut self) {
        self.user_screen = UserScreen::Home;
        if let Some((t, until)) = self.toast_for_home.take()
            && self.clock.now() < until
            && self.prompt.is_none()
        {
            self.toast = Some((t, until));
        }
        self.content_dirty = true;
    }

    /// The home screen of an unlocked device is what the owner sees (a
    /// locked one offers nothing: [`HomeView::locked`]).
    fn on_home(&self) -> bool {
        self.slint_screen() == "home" && !self.home.locked
    }

    /// A step of a flow is what the owner sees.
    fn on_choice(&self) -> bool {
        self.slint_screen() == "choice"
    }

    fn end_choice(&mut self, answer: ChoiceAnswer) {
        if let Some(c) = self.choice.take() {
            let _ = c.reply.send(answer);
            self.content_dirty = true;
        }
        self.release_held_toast();
    }

    fn end_text(&mut self, answer: TextAnswer) {
        if let Some(t) = self.text.take() {
            let _ = t.reply.send(answer);
            self.content_dirty = true;
        }
        self.release_held_toast();
    }

    /// A keyboard or a step is coming up: a toast on screen would cover
    /// its keys or buttons (a tap on the space bar only dismissed a
    /// "Sealed for bob" toast lying over it), so it waits, still counting
    /// down, until the step ends.
    fn hold_toast(&mut self) {
        if let Some(t) = self.toast.take() {
            self.toast_for_home = Some(t);
            self.content_dirty = true;
        }
    }

    /// A keyboard or step ended: a toast that waited for it shows now if
    /// it has time left and nothing else that holds toasts is up.
    fn release_held_toast(&mut self) {
        if self.text.is_none()
            && self.choice.is_none()
            && self.prompt.is_none()
            && !self.on_contact_screens()
            && let Some((t, until)) = self.toast_for_home.take()
            && self.clock.now() < until
        {
            self.toast = Some((t, until));
            self.content_dirty = true;
        }
    }

    fn resolve(&mut self, d: Decision) {
        if let Some(p) = self.prompt.take() {
            self.trace.prompt_waiting.store(false, Ordering::Relaxed);
            let _ = p.reply.send(d);
            self.content_dirty = true;
        }
    }

    /// Time-driven state: prompt timeout, countdown, toast expiry.
    fn tick(&mut self) {
        let now = self.clock.now();
        if let Some((_, until)) = &self.toast
            && now >= *until
        {
            self.toast = None;
            self.content_dirty = true;
        }
        if self.prompt.as_ref().is_some_and(|p| now >= p.deadline) {
            self.resolve(Decision::Timeout);
        }
        if self.content_dirty {
            self.refresh();
        }
        self.update_countdown();
        // Arming changes no pixel, so no frame would carry it: publish the
        // trace now, so it says the buttons take taps.
        if self.prompt.as_ref().is_some_and(|p| !p.armed_traced) && self.prompt_armed() {
            if let Some(p) = self.prompt.as_mut() {
                p.armed_traced = true;
            }
            self.trace.set(self.trace());
        }
    }

    fn update_countdown(&mut self) {
        let now = self.clock.now();
        if let Some(p) = self.prompt.as_mut() {
            let left = p.deadline.saturating_sub(now);
            // Round up: "0:01" until the very end.
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            if secs != p.last_secs {
                p.last_secs = secs;
                let total = p.prompt.timeout().as_secs().max(1);
                self.countdown_text = Some(screens::apply_countdown(&self.app, secs, total));
            }
        } else {
            self.countdown_text = None;
        }
    }

    /// Puts the current state on the screens.
    fn refresh(&mut self) {
        self.content_dirty = false;
        let name = self.slint_screen();
        if let (None, None, None, Some(c)) =
            (&self.prompt, &self.progress, &self.text, &self.choice)
        {
            self.screen_texts = screens::apply_choice(&self.app, &c.request, self.size());
            self.app.set_screen(name.into());
            self.toast_text = screens::apply_toast(&self.app, self.toast.as_ref().map(|(t, _)| t));
            self.update_countdown();
            return;
        }
        self.screen_texts = match (&self.prompt, &self.progress, &self.text, &self.user_screen) {
            (Some(p), _, _, _) => {
                let (texts, top) = screens::apply_prompt(
                    &self.app,
                    self.layout,
                    &p.prompt,
                    p.message_top,
                    p.changed,
                );
                if let Some(p) = self.prompt.as_mut() {
                    p.message_top = top;
                }
                texts
            }
            (None, Some(pr), _, _) => screens::apply_progress(&self.app, pr),
            (None, None, Some(t), _) => screens::apply_keyboard(
                &self.app,
                self.layout,
                &self.keys,
                &t.request,
                &t.typing,
                t.reason.as_deref(),
            ),
            (None, None, None, UserScreen::Alerts) => {
                let page = screens::apply_alerts(
                    &self.app,
                    self.layout,
                    &self.alerts,
                    self.alerts_top,
                    self.alerts_shown > 0,
                );
                self.alerts_top = page.top;
                self.alerts_shown = self.alerts_shown.max(page.unacked_through);
                page.texts
            }
            (None, None, None, UserScreen::About) => screens::apply_about(&self.app, &self.about),
            (None, None, None, UserScreen::Home) => {
                screens::apply_home(&self.app, self.layout, &self.home, self.home_top)
            }
            (None, None, None, UserScreen::Contact(name)) => {
                screens::apply_contact(&self.app, name, self.details.as_ref())
            }
            (None, None, None, UserScreen::RemoveContact(name)) => {
                screens::apply_remove_contact(&self.app, name)
            }
        };
        self.app.set_screen(name.into());
        self.toast_text = screens::apply_toast(&self.app, self.toast.as_ref().map(|(t, _)| t));
        if let Some(p) = self.prompt.as_mut() {
            p.last_secs = u64::MAX;
        }
        self.update_countdown();
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.resolve(Decision::Cancelled);
        self.end_text(TextAnswer::Cancelled);
        self.end_choice(ChoiceAnswer::Cancelled);
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Prompt { reply, .. } => {
                    let _ = reply.send(Decision::Cancelled);
                }
                Msg::AskText { reply, .. } => {
                    let _ = reply.send(TextAnswer::Cancelled);
                }
                Msg::AskChoice { reply, .. } => {
                    let _ = reply.send(ChoiceAnswer::Cancelled);
                }
                _ => {}
            }
        }
    }
}

fn bytemuck_cast(px: &mut [u16]) -> &mut [Rgb565Pixel] {
    bytemuck::cast_slice_mut(px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<UiHandle>();
        send_sync::<TraceHandle>();
        send::<PromptTicket>();
        send::<UiThread>();
    }

    #[test]
    fn ticket_of_a_gone_ui_is_cancelled() {
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let h = UiHandle {
            tx,
            ids: Arc::default(),
        };
        let t = h.show_prompt(Prompt::Pair {
            contact: "x".into(),
            pad_bytes: 1,
            fingerprint: "abcd".into(),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(t.wait(), Decision::Cancelled);
        assert_eq!(t.try_decision(), Some(Decision::Cancelled));
        assert_eq!(
            t.wait_timeout(Duration::from_millis(1)),
            Some(Decision::Cancelled)
        );
    }
}
