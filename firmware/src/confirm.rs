//! The confirmation broker: every use of pad bytes waits for the owner.
//!
//! One prompt at a time: while a prompt is on screen, any other request gets
//! [`Outcome::Busy`] at once (it never queues behind the owner's thumb). A
//! prompt ends with the owner's tap, with its timeout (measured on the
//! injected [`Clock`], the same one the screen's countdown uses), or when the
//! client that asked hangs up (the caller's `still_wanted` says so), in which
//! case the prompt is taken off the screen. Only [`Outcome::Approved`] lets
//! the caller spend pad; everything else consumes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a prompt ended, as the screen reports it: the UI's own type (the
/// owner's tap, the countdown, or a withdrawal). A screen never reports
/// `Busy` (the broker shows one prompt at a time); if one did, it counts as
/// `Cancelled`. The broker turns it into an [`Outcome`] for its caller.
pub use otc_ui::Decision;

/// How a confirmation ended, as the broker's caller sees it (what the
/// screen's [`Decision`] became, or why no prompt was shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    /// Approved with **Read here** (a confirm-open, issue 19): the text
    /// is for the device's screen only.
    ReadHere,
    Rejected,
    TimedOut,
    /// The client hung up, or the screen withdrew the prompt.
    Cancelled,
    /// Another prompt is on screen.
    Busy,
    /// The device is stopping: the prompt was withdrawn (or never shown).
    Stopped,
}

/// Monotonic time for timeouts: the UI's clock, so the broker and the
/// on-screen countdown agree; tests use [`otc_ui::FakeClock`].
pub use otc_ui::Clock;

/// The screen side: shows prompts and reports answers.
pub trait Screen: Send + Sync {
    type Prompt;
    type Ticket;
    /// Put `prompt` on screen.
    fn show(&self, prompt: Self::Prompt) -> Self::Ticket;
    /// Wait up to `wait` for the answer.
    fn wait(&self, ticket: &Self::Ticket, wait: Duration) -> Option<Decision>;
    /// Take the prompt off the screen.
    fn withdraw(&self, ticket: &Self::Ticket);
    /// Put the keyboard up for a message to `contact`, written on the
    /// device (issue 19, Write here). `None`: this screen has no keyboard
    /// (the default).
    fn ask_message(&self, _contact: &str) -> Option<otc_ui::TextTicket> {
        None
    }
    /// Take that keyboard off the screen (it answers `Cancelled`).
    fn cancel_message(&self, _ticket: &otc_ui::TextTicket) {}
}

/// See the module documentation.
pub struct Broker<S: Screen> {
    screen: S,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    busy: AtomicBool,
    /// Set by [`Broker::stop_prompts`]: no prompt is shown any more.
    stopping: AtomicBool,
    /// How often the client's connection and the clock are looked at.
    poll: Duration,
}

struct Release<'a>(&'a AtomicBool);
impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The broker held for the owner's own work ([`Broker::hold`]); dropping
/// it lets prompts through again.
pub struct Hold<'a>(#[allow(dead_code)] Release<'a>);

impl<S: Screen> Broker<S> {
    pub fn new(screen: S, clock: Arc<dyn Clock>, timeout: Duration) -> Self {
        Broker {
            screen,
            clock,
            timeout,
            busy: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            poll: Duration::from_millis(50),
        }
    }

    /// The prompt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True while a prompt is on screen.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Claims the broker for the owner's own work on the screen (making or
    /// importing a pad): while the returned guard lives, every request that
    /// would show a prompt gets [`Outcome::Busy`] at once (the RPC answers
    /// `busy`), and [`is_busy`](Self::is_busy) says so. `None` if a prompt
    /// is on screen (or another claim holds it).
    pub fn hold(&self) -> Option<Hold<'_>> {
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Hold(Release(&self.busy)))
    }

    /// The device is stopping: the prompt on screen (if any) is withdrawn
    /// within one poll interval and ends as [`Outcome::Stopped`], and no new
    /// prompt is shown. There is no way back: a stopping broker stays so.
    pub fn stop_prompts(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The screen this broker drives.
    pub fn screen(&self) -> &S {
        &self.screen
    }

    /// The clock its timeouts are measured on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether the device is stopping (no prompt is shown any more).
    pub fn is_stopping(&self) -> bool {
        self.stopping()
    }

    /// How often a wait looks at the client and the clock.
    pub fn poll_interval(&self) -> Duration {
        self.poll
    }

    /// Ask the owner. `still_wanted` is polled while waiting; when it says
    /// false the prompt is withdrawn and the outcome is `Cancelled`.
    ///
    /// The deadline is read from the clock *before* `busy` is claimed, so
    /// anyone who sees [`is_busy`](Self::is_busy) (with its acquire load)
    /// knows the deadline is fixed: moving the clock after that point always
    /// counts towards this prompt's timeout. (Reading the clock after the
    /// claim let a test advance a fake clock in between, which put the
    /// deadline out of reach and hung the test.)
    pub fn confirm(&self, prompt: S::Prompt, still_wanted: &dyn Fn() -> bool) -> Outcome {
        let deadline = self.clock.now() + self.timeout;
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Outcome::Busy;
        }
        let _release = Release(&self.busy);
        if self.stopping() {
            return Outcome::Stopped;
        }
        let ticket = self.screen.show(prompt);
        loop {
            match self.screen.wait(&ticket, self.poll) {
                Some(Decision::Approve) => return Outcome::Approved,
                Some(Decision::ReadHere) => return Outcome::ReadHere,
                Some(Decision::Reject) => return Outcome::Rejected,
                Some(Decision::Timeout) => return Outcome::TimedOut,
                Some(Decision::Cancelled | Decision::Busy) => return Outcome::Cancelled,
                None => {}
            }
            if self.stopping() {
                self.screen.withdraw(&ticket);
                return Outcome::Stopped;
            }
            if !still_wanted() {
                self.screen.withdraw(&ticket);
                return Outcome::Cancelled;
            }
            if self.clock.now() >= deadline {
                self.screen.withdraw(&ticket);
                return Outcome::TimedOut;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, channel};

    use otc_ui::FakeClock;

    /// A screen whose answers come from the test through a channel.
    struct FakeScreen {
        answers: Mutex<Receiver<Decision>>,
        shown: Mutex<Vec<&'static str>>,
        withdrawn: Mutex<u32>,
    }
    impl Screen for FakeScreen {
        type Prompt = &'static str;
        type Ticket = ();
        fn show(&self, p: &'static str) {
            self.shown.lock().unwrap().push(p);
        }
        fn wait(&self, _: &(), wait: Duration) -> Option<Decision> {
            self.answers.lock().unwrap().recv_timeout(wait).ok()
        }
        fn withdraw(&self, _: &()) {
            *self.withdrawn.lock().unwrap() += 1;
        }
    }

    fn broker() -> (Arc<Broker<FakeScreen>>, Sender<Decision>, Arc<FakeClock>) {
        let (tx, rx) = channel();
        let clock = Arc::new(FakeClock::new());
        let screen = FakeScreen {
            answers: Mutex::new(rx),
            shown: Mutex::default(),
            withdrawn: Mutex::default(),
        };
        let mut b = Broker::new(screen, clock.clone(), Duration::from_secs(30));
        b.poll = Duration::from_millis(5);
        (Arc::new(b), tx, clock)
    }

    #[test]
    fn answers_map_to_outcomes() {
        let (b, tx, _) = broker();
        for (a, o) in [
            (Decision::Approve, Outcome::Approved),
            (Decision::Reject, Outcome::Rejected),
            (Decision::Timeout, Outcome::TimedOut),
            (Decision::Cancelled, Outcome::Cancelled),
        ] {
            tx.send(a).unwrap();
            assert_eq!(b.confirm("seal", &|| true), o);
            assert!(!b.is_busy());
        }
        assert_eq!(b.screen().shown.lock().unwrap().len(), 4);
    }

    /// How long any wait in these tests may take before it fails, naming
    /// what it waited for. Generous: a loaded CI machine is slow, but a
    /// missed wake-up must fail, not hang.
    const WAIT: Duration = Duration::from_secs(10);

    /// Polls `cond` until it holds; panics after [`WAIT`] naming `what`.
    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "gave up after {WAIT:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Joins `t`, or panics after [`WAIT`] naming what it was doing.
    fn join_within<T>(t: std::thread::JoinHandle<T>, what: &str) -> T {
        wait_until(what, || t.is_finished());
        match t.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        }
    }

    #[test]
    fn a_held_broker_is_busy_until_the_hold_ends() {
        let (b, _tx, _clock) = broker();
        let hold = b.hold().expect("nothing on screen");
        assert!(b.is_busy());
        assert!(b.hold().is_none(), "one hold at a time");
        assert_eq!(b.confirm("seal", &|| true), Outcome::Busy);
        drop(hold);
        assert!(!b.is_busy());
        assert!(b.hold().is_some());
    }

    #[test]
    fn a_second_request_is_busy_at_once() {
        let (b, tx, _) = broker();
        let b2 = b.clone();
        let first = std::thread::spawn(move || b2.confirm("first", &|| true));
        // Busy is claimed before the prompt is shown: wait for the screen.
        wait_until("the first prompt on screen", || {
            !b.screen().shown.lock().unwrap().is_empty()
        });
        assert_eq!(b.confirm("second", &|| true), Outcome::Busy);
        assert_eq!(*b.screen().shown.lock().unwrap(), vec!["first"]);
        tx.send(Decision::Approve).unwrap();
        assert_eq!(
            join_within(first, "the approved confirm to return"),
            Outcome::Approved
        );
        assert!(!b.is_busy());
    }

    #[test]
    fn the_fake_clock_drives_the_timeout() {
        let (b, _tx, clock) = broker();
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.confirm("seal", &|| true));
        // Once busy is visible the deadline is fixed (see `confirm`).
        wait_until("the broker to claim busy", || b.is_busy());
        clock.advance(Duration::from_secs(29));
        // Give the broker a few polls at 29 s: it must not time out yet.
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.is_busy(), "29 s is not yet the 30 s timeout");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            join_within(t, "the broker to time out at 30 s on the fake clock"),
            Outcome::TimedOut
        );
        assert_eq!(*b.screen().withdrawn.lock().unwrap(), 1);
    }

    /// The race behind a hang that struck about one run in three: a test
    /// that sees busy and moves the clock must know the deadline is already
    /// fixed. A clock that looks at the broker's busy flag whenever it is
    /// read proves the order every time: the read for the deadline comes
    /// before busy is claimed.
    #[test]
    fn the_deadline_is_read_before_busy_is_claimed() {
        #[derive(Default)]
        struct SpyClock {
            broker: std::sync::OnceLock<std::sync::Weak<Broker<FakeScreen>>>,
            busy_at_first_read: Mutex<Option<bool>>,
        }
        impl Clock for SpyClock {
            fn now(&self) -> Duration {
                let busy = self
                    .broker
                    .get()
                    .and_then(|w| w.upgrade())
                    .is_some_and(|b| b.is_busy());
                self.busy_at_first_read.lock().unwrap().get_or_insert(busy);
                Duration::ZERO
            }
        }
        let (tx, rx) = channel();
        let clock = Arc::new(SpyClock::default());
        let screen = FakeScreen {
            answers: Mutex::new(rx),
            shown: Mutex::default(),
            withdrawn: Mutex::default(),
        };
        let b = Arc::new(Broker::new(screen, clock.clone(), Duration::from_secs(30)));
        assert!(clock.broker.set(Arc::downgrade(&b)).is_ok());
        tx.send(Decision::Approve).unwrap();
        assert_eq!(b.confirm("seal", &|| true), Outcome::Approved);
        assert_eq!(
            *clock.busy_at_first_read.lock().unwrap(),
            Some(false),
            "confirm read the clock for its deadline after claiming busy"
        );
    }

    #[test]
    fn a_client_that_hangs_up_cancels_its_prompt() {
        let (b, _tx, _) = broker();
        let gone = AtomicBool::new(false);
        let b2 = b.clone();
        std::thread::scope(|s| {
            let t = s.spawn(|| b2.confirm("seal", &|| !gone.load(Ordering::Acquire)));
            wait_until("the broker to claim busy", || b.is_busy());
            gone.store(true, Ordering::Release);
            wait_until("the broker to notice the client hung up", || {
                t.is_finished()
            });
            assert_eq!(t.join().unwrap(), Outcome::Cancelled);
        });
        assert_eq!(*b.screen().withdrawn.lock().unwrap(), 1);
        assert!(!b.is_busy());
    }
}
