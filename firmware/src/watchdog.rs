//! The hardware watchdog, petted only while the device works
//! (`otc-device run --watchdog DEVICE`).
//!
//! The board code opens the device ([`crate::board::open_watchdog`]: the
//! Linux watchdog API, `/dev/watchdog`, with its timeout set); this module
//! decides, once every [`PET_EVERY`], whether to pet it (write one byte).
//!
//! **Healthy** means that each of the device's loops has turned within the
//! last [`STALL_LIMIT`] (10 s), as their heartbeat counters show:
//! - the RPC endpoint's accept loop (`front::serve`; it turns at least
//!   every 200 ms);
//! - the UI loop (`otc_ui::Ui::run`; at least once a second, plus the time
//!   to draw a frame);
//! - the audit flusher (every 100 ms it takes the service's audit lock and
//!   makes routine entries durable), so a deadlocked service or a storage
//!   write stuck for 10 s counts too.
//!
//! While the device starts (before [`Watchdog::watch`] hands over those
//! heartbeats) it is petted for at most [`START_LIMIT`] (60 s). A device
//! that stops being healthy is no longer petted, and the hardware resets
//! the board at most `STALL_LIMIT + PET_EVERY + timeout` after its last
//! turn (26 s with the default 15 s timeout). A process that is stopped
//! or killed outright pets nothing from that moment on.
//!
//! **Stops.** A deliberate, clean stop ([`Watchdog::stop_clean`]) writes
//! the magic `V` before closing, so the kernel disarms the watchdog. Any
//! other end (a crash, an error, SIGKILL) closes it without the `V`: the
//! kernel keeps counting, and whoever restarts the device (the image's
//! init, after 2 s) must have it open again within the timeout, or the
//! board resets. That is why [`crate::device::run`] opens it before
//! anything slow.
//!
//! The decision is [`Health::check`], a pure function of the heartbeat
//! counts and the monotonic clock (tests drive it with the platform's fake
//! clock); [`Petter`] is one decision plus its write; [`Watchdog`] is the
//! thread that makes one every [`PET_EVERY`].

use otc_ui::Clock;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the device decides whether to pet.
pub const PET_EVERY: Duration = Duration::from_secs(1);
/// A loop whose heartbeat has not moved for longer than this is stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);
/// How long the device is petted while it starts, before its loops run.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// What a pet writes (any byte but `V` pets; the kernel's documentation
/// writes a NUL).
pub const PET: u8 = 0;
/// The magic close: written just before a clean close, it disarms the
/// watchdog (drivers with `WDIOF_MAGICCLOSE`; the others ignore it).
pub const MAGIC_CLOSE: u8 = b'V';

/// A loop's heartbeat: a counter it bumps at every turn. Cheap (one relaxed
/// atomic add); clones share the count.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn new() -> Self {
        Self::default()
    }

    /// One turn of the loop.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Turns so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A heartbeat as the watchdog reads it: its loop's name (for the console)
/// and how to read its count.
pub struct Pulse {
    pub name: &'static str,
    read: Box<dyn Fn() -> u64 + Send>,
}

impl Pulse {
    pub fn new(name: &'static str, read: impl Fn() -> u64 + Send + 'static) -> Self {
        Pulse {
            name,
            read: Box::new(read),
        }
    }

    /// A [`Heartbeat`]'s pulse.
    pub fn of(name: &'static str, beat: &Heartbeat) -> Self {
        let beat = beat.clone();
        Pulse::new(name, move || beat.count())
    }
}

/// What [`Health::check`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every loop turned within the stall limit: pet.
    Healthy,
    /// Still starting, within the start limit: pet.
    Starting,
    /// This loop has not turned for this long: do not pet.
    Stalled { name: &'static str, for_: Duration },
    /// The device has not finished starting within the start limit: do
    /// not pet.
    StartTooLong,
}

impl Verdict {
    /// Whether the watchdog is petted.
    pub fn pets(&self) -> bool {
        matches!(self, Verdict::Healthy | Verdict::Starting)
    }
}

/// The health decision: per heartbeat, its last count and when it last
/// moved, on the monotonic clock (see the module doc).
pub struct Health {
    stall_limit: Duration,
    start_limit: Duration,
    opened_at: Duration,
    /// (pulse, last count seen, when it last changed)
    watched: Option<Vec<(Pulse, u64, Duration)>>,
}

impl Health {
    /// Starting at `now`, with the given limits.
    pub fn new(now: Duration, stall_limit: Duration, start_limit: Duration) -> Self {
        Health {
            stall_limit,
            start_limit,
            opened_at: now,
            watched: None,
        }
    }

    /// The device has started: from `now` on, `pulses` decide. Each counts
    /// as having just turned.
    pub fn watch(&mut self, now: Duration, pulses: Vec<Pulse>) {
        self.watched = Some(
            pulses
                .into_iter()
                .map(|p| {
                    let n = (p.read)();
                    (p, n, now)
                })
                .collect(),
        );
    }

    /// Whether to pet at `now`. The first stalled loop (in the order
    /// given to [`Health::watch`]) is the one named.
    pub fn check(&mut self, now: Duration) -> Verdict {
        let Some(watched) = self.watched.as_mut() else {
            return if now.saturating_sub(self.opened_at) <= self.start_limit {
                Verdict::Starting
            } else {
                Verdict::StartTooLong
            };
        };
        let mut verdict = Verdict::Healthy;
        for (pulse, last, changed) in watched.iter_mut() {
            let n = (pulse.read)();
            if n != *last {
                *last = n;
                *changed = now;
            }
            let still = now.saturating_sub(*changed);
            if still > self.stall_limit && verdict == Verdict::Healthy {
                verdict = Verdict::Stalled {
                    name: pulse.name,
                    for_: still,
                };
            }
        }
        verdict
    }
}

/// One decision and its write, on the opened device `W`.
pub struct Petter<W: Write> {
    dev: W,
    health: Health,
    clock: Arc<dyn Clock>,
    /// Whether the last decision petted (to say so on the console only
    /// when it changes).
    petting: bool,
    /// Whether the last pet failed to write.
    failing: bool,
    /// For the console: what the device is.
    label: String,
}

impl<W: Write> Petter<W> {
    /// A petter on `dev` (opened by [`crate::board::open_watchdog`], or
    /// a stand-in in tests), starting now on `clock`.
    pub fn new(dev: W, label: &str, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        let health = Health::new(clock.now(), limits.stall, limits.start);
        Petter {
            dev,
            health,
            clock,
            petting: true,
            failing: false,
            label: label.to_string(),
        }
    }

    /// See [`Health::watch`].
    pub fn watch(&mut self, pulses: Vec<Pulse>) {
        self.health.watch(self.clock.now(), pulses);
    }

    /// Decide and, if healthy, pet. A failed write is said on the console
    /// (once, until one succeeds again) and is not fatal.
    pub fn tick(&mut self) -> Verdict {
        let verdict = self.health.check(self.clock.now());
        let pets = verdict.pets();
        if pets != self.petting {
            self.petting = pets;
            if pets {
                eprintln!(
                    "otc-device: watchdog: healthy again; petting {}",
                    self.label
                );
            } else {
                eprintln!(
                    "otc-device: watchdog: {}; no longer petting {}: the board resets when it \
                     expires",
                    why(&verdict, self.health.start_limit),
                    self.label
                );
            }
        }
        if pets {
            match self.dev.write_all(&[PET]).and_then(|()| self.dev.flush()) {
                Ok(()) => self.failing = false,
                Err(e) if !self.failing => {
                    self.failing = true;
                    eprintln!("otc-device: watchdog: cannot pet {}: {e}", self.label);
                }
                Err(_) => {}
            }
        }
        verdict
    }

    /// The clean stop: the magic close, then the device is closed.
    pub fn stop_clean(mut self) -> std::io::Result<()> {
        self.dev.write_all(&[MAGIC_CLOSE])?;
        self.dev.flush()
    }
}

/// What the console says about a verdict that does not pet.
fn why(v: &Verdict, start_limit: Duration) -> String {
    match v {
        Verdict::Stalled { name, for_ } => {
            format!("{name} has not turned for {} s", for_.as_secs())
        }
        Verdict::StartTooLong => format!(
            "the device has not finished starting in {} s",
            start_limit.as_secs()
        ),
        Verdict::Healthy | Verdict::Starting => "healthy".into(),
    }
}

/// The bounds of the decision and of the petting thread.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub every: Duration,
    pub stall: Duration,
    pub start: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            every: PET_EVERY,
            stall: STALL_LIMIT,
            start: START_LIMIT,
        }
    }
}

/// How the petting thread is told to end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Running,
    /// Write the magic close first (a deliberate stop).
    Clean,
    /// Close without it: the kernel keeps counting.
    Abandon,
}

struct Shared {
    state: Mutex<(End, Option<Vec<Pulse>>)>,
    cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The petting thread: a [`Petter::tick`] every [`Limits::every`] (real
/// time; the health decision reads the clock it was given). Dropped without
/// [`Watchdog::stop_clean`], it closes the device without the magic close.
pub struct Watchdog {
    shared: Arc<Shared>,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl Watchdog {
    /// Pets `petter`'s device at once, then every `every`.
    pub fn spawn<W: Write + Send + 'static>(
        mut petter: Petter<W>,
        every: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new((End::Running, None)),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let join = std::thread::Builder::new()
            .name("otc-watchdog".into())
            .spawn(move || {
                loop {
                    let pulses = lock(&s.state).1.take();
                    if let Some(p) = pulses {
                        petter.watch(p);
                    }
                    petter.tick();
                    let guard = lock(&s.state);
                    let (guard, _) =
                        s.cv.wait_timeout_while(guard, every, |st| st.0 == End::Running)
                            .unwrap_or_else(|e| e.into_inner());
                    match guard.0 {
                        End::Running => {}
                        End::Clean => return petter.stop_clean(),
                        End::Abandon => return Ok(()),
                    }
                }
            })?;
        Ok(Watchdog {
            shared,
            join: Some(join),
        })
    }

    /// The device has started: its loops' heartbeats decide from now on
    /// (see [`Health::watch`]).
    pub fn watch(&self, pulses: Vec<Pulse>) {
        lock(&self.shared.state).1 = Some(pulses);
    }

    fn end(&mut self, how: End) -> std::io::Result<()> {
        lock(&self.shared.state).0 = how;
        self.shared.cv.notify_all();
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the watchdog thread panicked")),
            None => Ok(()),
        }
    }

    /// A deliberate stop: the magic close, so the board does not reset.
    pub fn stop_clean(mut self) -> std::io::Result<()> {
        self.end(End::Clean)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.end(End::Abandon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Platform, TestPlatform};

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn health(p: &TestPlatform) -> Health {
        Health::new(p.clock().now(), STALL_LIMIT, START_LIMIT)
    }

    #[test]
    fn starting_is_petted_for_the_start_limit_only() {
        let p = TestPlatform::new(0, 0);
        let mut h = health(&p);
        assert_eq!(h.check(p.clock().now()), Verdict::Starting);
        p.fake_clock().advance(START_LIMIT);
        assert_eq!(h.check(p.clock().now()), Verdict::Starting);
        p.fake_clock().advance(S(1));
        assert_eq!(h.check(p.clock().now()), Verdict::StartTooLong);
        assert!(!Verdict::StartTooLong.pets());
        // Started late: its loops decide from then on.
        h.watch(p.clock().now(), vec![Pulse::new("a", || 0)]);
        assert_eq!(h.check(p.clock().now()), Verdict::Healthy);
    }

    #[test]
    fn a_loop_that_stops_turning_stops_the_petting_after_the_stall_limit() {
        let p = TestPlatform::new(0, 0);
        let (rpc, ui) = (Heartbeat::new(), Heartbeat::new());
        let mut h = health(&p);
        h.watch(
            p.clock().now(),
            vec![Pulse::of("rpc", &rpc), Pulse::of("ui", &ui)],
        );
        let now = || p.clock().now();
        // Both turn every second for a minute: healthy throughout.
        for _ in 0..60 {
            p.fake_clock().advance(S(1));
            rpc.beat();
            ui.beat();
            assert_eq!(h.check(now()), Verdict::Healthy);
        }
        // The UI stops; the endpoint goes on. Healthy up to the limit ...
        for _ in 0..10 {
            p.fake_clock().advance(S(1));
            rpc.beat();
            assert_eq!(h.check(now()), Verdict::Healthy);
        }
        // ... and not one second past it.
        p.fake_clock().advance(S(1));
        rpc.beat();
        assert_eq!(
            h.check(now()),
            Verdict::Stalled {
                name: "ui",
                for_: S(11)
            }
        );
        // A turn of the UI makes it healthy again.
        ui.beat();
        assert_eq!(h.check(now()), Verdict::Healthy);
    }

    #[test]
    fn a_loop_checked_rarely_is_judged_by_its_count_not_the_checks() {
        // Checks 30 s apart (a petting thread that was itself held up):
        // a loop that turned in between is healthy, one that did not is not.
        let p = TestPlatform::new(0, 0);
        let (a, b) = (Heartbeat::new(), Heartbeat::new());
        let mut h = health(&p);
        h.watch(
            p.clock().now(),
            vec![Pulse::of("a", &a), Pulse::of("b", &b)],
        );
        p.fake_clock().advance(S(30));
        a.beat();
        assert_eq!(
            h.check(p.clock().now()),
            Verdict::Stalled {
                name: "b",
                for_: S(30)
            }
        );
    }

    /// A regular file stands in for /dev/watchdog: every healthy tick
    /// writes one pet byte, an unhealthy one writes nothing, and a clean
    /// stop ends with the magic `V`.
    #[test]
    fn petting_writes_only_while_healthy_and_a_clean_stop_writes_v() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("watchdog");
        let file = std::fs::File::create(&path).unwrap();
        let p = TestPlatform::new(0, 0);
        let beat = Heartbeat::new();
        let mut petter = Petter::new(file, "test", p.clock(), Limits::default());
        assert_eq!(petter.tick(), Verdict::Starting);
        petter.watch(vec![Pulse::of("loop", &beat)]);
        for _ in 0..3 {
            p.fake_clock().advance(S(1));
            beat.beat();
            assert!(petter.tick().pets());
        }
        assert_eq!(std::fs::read(&path).unwrap(), [PET; 4]);
        p.fake_clock().advance(STALL_LIMIT + S(1));
        assert!(!petter.tick().pets());
        assert!(!petter.tick().pets());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [PET; 4],
            "no pet while stuck"
        );
        beat.beat();
        assert!(petter.tick().pets());
        petter.stop_clean().unwrap();
        let mut want = vec![PET; 5];
        want.push(MAGIC_CLOSE);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    /// The thread against a FIFO (read by this test, as the kernel would):
    /// pets arrive, and a clean stop ends with `V` and closes the FIFO.
    #[test]
    fn the_thread_pets_a_fifo_and_ends_with_v() {
        use std::io::Read;
        use std::sync::mpsc::RecvTimeoutError;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("watchdog");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
        // The reader: every byte, then None at end of file (the writer closed).
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut fifo = std::fs::File::open(path).unwrap();
                let mut b = [0u8; 1];
                while fifo.read(&mut b).unwrap() == 1 {
                    tx.send(Some(b[0])).unwrap();
                }
                tx.send(None).unwrap();
            });
        }
        let dev = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let p = TestPlatform::new(0, 0);
        let limits = Limits {
            every: Duration::from_millis(5),
            ..Limits::default()
        };
        let wd =
            Watchdog::spawn(Petter::new(dev, "fifo", p.clock(), limits), limits.every).unwrap();
        wd.watch(vec![Pulse::new("loop", || 0)]);
        // Three pets (the fake clock never moves, so it stays healthy).
        for i in 0..3 {
            match rx.recv_timeout(S(10)) {
                Ok(Some(b)) => assert_eq!(b, PET),
                other => panic!("waited 10 s for pet {i} on the FIFO: {other:?}"),
            }
        }
        wd.stop_clean().unwrap();
        let mut rest = Vec::new();
        loop {
            match rx.recv_timeout(S(10)) {
                Ok(Some(b)) => rest.push(b),
                Ok(None) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("waited 10 s for the FIFO to close after a clean stop: {rest:?}")
                }
                Err(e) => panic!("the FIFO reader: {e}"),
            }
        }
        assert_eq!(rest.last(), Some(&MAGIC_CLOSE), "{rest:?}");
        assert!(rest[..rest.len() - 1].iter().all(|&b| b == PET), "{rest:?}");
    }

    /// Dropped without a clean stop (an error path), the thread ends and
    /// closes the device without `V`: the kernel would keep counting.
    #[test]
    fn dropping_closes_without_v() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("watchdog");
        let file = std::fs::File::create(&path).unwrap();
        let p = TestPlatform::new(0, 0);
        let limits = Limits::default();
        let wd =
            Watchdog::spawn(Petter::new(file, "file", p.clock(), limits), limits.every).unwrap();
        drop(wd);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.is_empty(), "it pets once at start");
        assert!(!bytes.contains(&MAGIC_CLOSE), "{bytes:?}");
    }
}
