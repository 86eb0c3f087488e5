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
//!   release is dropped and Slint sees the pointer leave instead);
//! - every tap's fate is recorded ([`TapRecord`], through the
//!   [`TraceHandle`]), so the emulator page can say that a tap was ignored
//!   and why instead of answering `ok` for a tap that did nothing;
//! - prompts time out ([`Decision::Timeout`]); a dropped UI cancels them.

use crate::clock::Clock;
use crate::display::{Display, Frame, Rect};
use crate::error::UiError;
use crate::generated::{AppWindow, Bridge, Theme};
use crate::model::{AlertView, Decision, HomeView, ProgressView, Prompt, Toast, UiEvent};
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
    /// Draw the "EMULATOR" marker. Defaults to on in builds with feature
    /// `emulator`, off otherwise.
    pub emulator_marker: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            arm_delay: Duration::from_millis(400),
            emulator_marker: cfg!(feature = "emulator"),
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
    Home(HomeView),
    Alerts(Vec<AlertView>),
    AddAlerts {
        newer: Vec<AlertView>,
        older: Vec<AlertView>,
        keep: usize,
    },
    Progress(Option<ProgressView>),
    Toast(Toast),
    Touch(TouchEvent),
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
    /// for a long list that grows by a row or two.
    pub fn add_alerts(&self, newer: Vec<AlertView>, older: Vec<AlertView>, keep: usize) {
        let _ = self.tx.send(Msg::AddAlerts { newer, older, keep });
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
}

/// What became of one tap (press and release), as the UI handled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRecord {
    /// Taps handled before this one (counts from 0).
    pub seq: u64,
    /// Where the finger was lifted.
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
/// or why the press was already dropped.
#[derive(Clone, Copy)]
struct Press {
    prompt: Option<u64>,
    ignored: Option<&'static str>,
}

struct ActivePrompt {
    id: u64,
    prompt: Prompt,
    reply: Sender<Decision>,
    shown_at: Duration,
    deadline: Duration,
    last_secs: u64,
    /// The trace already says the buttons are armed.
    armed_traced: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UserScreen {
    Home,
    Alerts,
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
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    ids: Arc<AtomicU64>,
    actions: Rc<RefCell<Vec<String>>>,
    events_tx: Sender<UiEvent>,
    events_rx: Option<Receiver<UiEvent>>,
    trace: TraceHandle,

    home: HomeView,
    alerts: Vec<AlertView>,
    progress: Option<ProgressView>,
    prompt: Option<ActivePrompt>,
    toast: Option<(Toast, Duration)>,
    user_screen: UserScreen,
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
            tx,
            rx,
            ids: Arc::default(),
            actions,
            events_tx,
            events_rx: Some(events_rx),
            trace: TraceHandle::default(),
            home: HomeView::default(),
            alerts: Vec::new(),
            progress: None,
            prompt: None,
            toast: None,
            user_screen: UserScreen::Home,
            press: None,
            screen_texts: Vec::new(),
            countdown_text: None,
            toast_text: None,
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
                if !d.is_empty() {
                    self.display.present(&self.frame, d)?;
                }
                Ok(true)
            }
            None => Ok(false),
        }
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
            self.display.present(&self.frame, dirty)?;
        }
        Ok(dirty)
    }

    /// What the screen shows now.
    pub fn trace(&self) -> ScreenTrace {
        let mut texts = self.screen_texts.clone();
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
            screen: self.screen_name().to_string(),
            texts,
            buttons,
            toast: self.toast_text.clone(),
            prompt: self.prompt.as_ref().map(|p| p.id),
        }
    }

    fn screen_name(&self) -> &'static str {
        if let Some(p) = &self.prompt {
            screens::prompt_screen(&p.prompt)
        } else if self.progress.is_some() {
            "progress"
        } else {
            match self.user_screen {
                UserScreen::Home => "home",
                UserScreen::Alerts => "alerts",
            }
        }
    }

    fn until_next_wakeup(&self) -> Duration {
        let now = self.clock.now();
        let mut next = Duration::from_secs(1);
        if let Some(p) = &self.prompt {
            // Wake when the buttons arm, so the trace says so at once.
            let arms_at = p.shown_at + self.config.arm_delay;
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

    fn handle_msg(&mut self, m: Msg) {
        match m {
            Msg::Prompt { id, prompt, reply } => {
                if self.prompt.is_some() {
                    let _ = reply.send(Decision::Busy);
                    return;
                }
                let now = self.clock.now();
                let timeout = prompt.timeout();
                self.prompt = Some(ActivePrompt {
                    id,
                    prompt,
                    reply,
                    shown_at: now,
                    deadline: now + timeout,
                    last_secs: u64::MAX,
                    armed_traced: false,
                });
                // Nothing may cover a prompt's buttons.
                self.toast = None;
                self.content_dirty = true;
            }
            Msg::Cancel(id) => {
                if self.prompt.as_ref().is_some_and(|p| p.id == id) {
                    self.resolve(Decision::Cancelled);
                }
            }
            Msg::Home(h) => {
                self.home = h;
                self.content_dirty |= self.shows(UserScreen::Home);
            }
            Msg::Alerts(a) => {
                self.alerts = a;
                self.content_dirty |= self.shows(UserScreen::Alerts);
            }
            Msg::AddAlerts { newer, older, keep } => {
                self.alerts.splice(0..0, newer);
                self.alerts.extend(older);
                self.alerts.truncate(keep);
                self.content_dirty |= self.shows(UserScreen::Alerts);
            }
            Msg::Progress(p) => {
                self.progress = p;
                self.content_dirty = true;
            }
            Msg::Toast(t) => {
                if self.prompt.is_none() {
                    let until = self.clock.now() + t.duration;
                    self.toast = Some((t, until));
                    self.content_dirty = true;
                }
            }
            Msg::Touch(e) => self.on_touch(e),
            Msg::Quit => self.quit = true,
        }
    }

    /// Whether `screen` is what the owner sees now (no prompt or progress
    /// over it): changes to a screen out of sight wait until it is shown,
    /// which refreshes it anyway.
    fn shows(&self, screen: UserScreen) -> bool {
        self.prompt.is_none() && self.progress.is_none() && self.user_screen == screen
    }

    fn prompt_armed(&self) -> bool {
        match &self.prompt {
            Some(p) => self.clock.now() >= p.shown_at + self.config.arm_delay,
            None => true,
        }
    }

    fn on_touch(&mut self, e: TouchEvent) {
        // Layout and content must be current before hit-testing.
        if self.content_dirty {
            self.refresh();
        }
        let pos = |x: u32, y: u32| LogicalPosition::new(x as f32, y as f32);
        match e {
            TouchEvent::Down { x, y } => {
                let prompt = self.prompt.as_ref().map(|p| p.id);
                if !self.prompt_armed() {
                    self.press = Some(Press {
                        prompt,
                        ignored: Some(ignored::NOT_ARMED),
                    });
                    return;
                }
                self.press = Some(Press {
                    prompt,
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
                self.trace.record_tap(x, y, verdict);
                return;
            }
        }
        self.run_actions();
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

    fn on_action(&mut self, id: &str) {
        match id {
            "approve" if self.prompt.is_some() => self.resolve(Decision::Approve),
            "reject" if self.prompt.is_some() => self.resolve(Decision::Reject),
            "alerts" => {
                self.user_screen = UserScreen::Alerts;
                let _ = self.events_tx.send(UiEvent::AlertsOpened);
                self.content_dirty = true;
            }
            "back" => {
                self.user_screen = UserScreen::Home;
                self.content_dirty = true;
            }
            "cancel" if self.progress.is_some() => {
                let _ = self.events_tx.send(UiEvent::ProgressCancelled);
            }
            "dismiss-toast" => {
                self.toast = None;
                self.content_dirty = true;
            }
            _ => {}
        }
    }

    fn resolve(&mut self, d: Decision) {
        if let Some(p) = self.prompt.take() {
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
        let name = self.screen_name();
        self.screen_texts = match (&self.prompt, &self.progress, self.user_screen) {
            (Some(p), _, _) => screens::apply_prompt(&self.app, self.layout, &p.prompt),
            (None, Some(pr), _) => screens::apply_progress(&self.app, pr),
            (None, None, UserScreen::Alerts) => {
                screens::apply_alerts(&self.app, self.layout, &self.alerts)
            }
            (None, None, UserScreen::Home) => {
                screens::apply_home(&self.app, self.layout, &self.home)
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
        while let Ok(m) = self.rx.try_recv() {
            if let Msg::Prompt { reply, .. } = m {
                let _ = reply.send(Decision::Cancelled);
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
