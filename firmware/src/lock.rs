//! The locked state (issue 18): what the RPC endpoint answers while the
//! device is locked ([`Gate`]), and the delay after wrong passphrases
//! ([`delay_after`]).
//!
//! Decisions kept here:
//! - the endpoint exists from the first moment (the laptop learns the
//!   device is there and locked); until the owner unlocks it on the
//!   screen, [`Gate`] answers `GET /v1/status` with `locked: true` and
//!   every other request with the error code `locked` (423), before the
//!   request is parsed and without touching the store;
//! - **Lock now** and the idle lock close the gate again. The store stays
//!   open in memory behind it (the master key too) until the next unlock:
//!   a locked device refuses every request and shows only the lock screen,
//!   and a restart or power cut forgets the key. Closing the store at each
//!   lock would mean stopping every thread that holds it; what that buys
//!   (the key out of RAM while locked) does not stop an attacker who holds
//!   the running device and can read its RAM anyway;
//! - a request already past the gate when it closes finishes (its prompt
//!   is on screen over the lock screen, or its seal is under way); the
//!   idle lock waits until no prompt is on screen.

use crate::board::BoardStatus;
use crate::clear_settings::ClearSettings;
use crate::confirm::Screen;
use crate::error::{Error, Result};
use crate::front::Handler;
use crate::pad::Error as VaultError;
use crate::pad::vault::{self, KdfParams, MasterKey};
use crate::pad::vfs::RealFs;
use crate::pad::{PadStore, durable};
use crate::rpc::{self, ApprovalPrompt, Reply, Service};
use otc_ui::{
    ChoiceAnswer, ChoiceRequest, Clock, ProgressView, TextAnswer, TextKind, TextRequest,
    TraceHandle, UiHandle,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The RPC endpoint's handler: the device's [`Service`] once unlocked,
/// [`rpc::locked_reply`] while locked.
pub struct Gate<S: Screen<Prompt = ApprovalPrompt>> {
    service: RwLock<Option<Arc<Service<S>>>>,
    open: AtomicBool,
}

impl<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static> Default for Gate<S> {
    fn default() -> Self {
        Gate {
            service: RwLock::new(None),
            open: AtomicBool::new(false),
        }
    }
}

impl<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static> Gate<S> {
    /// A gate that is locked and has no service yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store is open: requests go to `service` from now on.
    pub fn unlock_with(&self, service: Arc<Service<S>>) {
        if let Ok(mut s) = self.service.write() {
            *s = Some(service);
        }
        self.open.store(true, Ordering::SeqCst);
    }

    /// Opens the gate again on the service it had (after the lock screen).
    /// Returns false if there is no service yet.
    pub fn reopen(&self) -> bool {
        let has = self.service().is_some();
        if has {
            self.open.store(true, Ordering::SeqCst);
        }
        has
    }

    /// Locks: every request from now on is refused with `locked`.
    pub fn lock(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    pub fn is_locked(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    /// Locks and lets go of the service (a clean stop closes the store).
    pub fn forget(&self) {
        self.lock();
        if let Ok(mut s) = self.service.write() {
            *s = None;
        }
    }

    /// The service, once the store was opened (locked or not).
    pub fn service(&self) -> Option<Arc<Service<S>>> {
        self.service.read().ok().and_then(|s| s.clone())
    }

    fn open_service(&self) -> Option<Arc<Service<S>>> {
        if self.is_locked() {
            return None;
        }
        self.service()
    }
}

impl<S: Screen<Prompt = ApprovalPrompt> + Send + Sync + 'static> Handler for Gate<S> {
    fn handle(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply {
        match self.open_service() {
            Some(s) => s.handle(method, path, body, still_wanted),
            None => rpc::locked_reply(method, path),
        }
    }

    fn limit_hit(&self, limit: &str, detail: &str) {
        // Audited once a store is open (locked again or not); before the
        // first unlock there is no log to write to.
        if let Some(s) = self.service() {
            Handler::limit_hit(s.as_ref(), limit, detail);
        }
    }
}

/// Wrong passphrases allowed before the key file is destroyed (the
/// default of `StartOptions::max_failures`).
pub const DEFAULT_MAX_FAILURES: u32 = vault::DEFAULT_MAX_FAILURES;

/// How long the lock screen waits before it takes another passphrase,
/// after `failures` wrong ones in a row (the durable count, so a restart
/// does not reset it): none for the first 2, then 5 s doubling each time
/// (5, 10, 20, 40 s, ...), at most 10 minutes. With 10 tries before the
/// wipe, guessing on the device itself is hopeless either way; the delay
/// keeps a fumbling owner from spending all tries in a minute.
pub fn delay_after(failures: u32) -> Duration {
    if failures < 3 {
        return Duration::ZERO;
    }
    let doublings = (failures - 3).min(16);
    Duration::from_secs((5u64 << doublings).min(600))
}

/// The lock's options (`StartOptions::lock`).
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// Wrong passphrases in a row before the key file is destroyed.
    pub max_failures: u32,
    /// Lock after this long without a touch (`None`: never). The owner's
    /// setting (sealed settings file) replaces it after unlock.
    pub idle_lock: Option<Duration>,
    /// Argon2id parameters of a key file made on this device (first
    /// boot, change passphrase).
    pub kdf: KdfParams,
    /// No owner yet (`otc.toml` names none) and no key file: the device
    /// starts with the first-boot setup on its screen.
    pub first_boot: bool,
    /// The Ethernet interface's address the endpoint listens on (set by
    /// `device::start` for `--interface`): what the first boot's address
    /// step offers, so that accepting it changes nothing.
    pub address_now: Option<std::net::Ipv4Addr>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            max_failures: DEFAULT_MAX_FAILURES,
            idle_lock: Some(DEFAULT_IDLE_LOCK),
            kdf: KdfParams::DEFAULT,
            first_boot: false,
            address_now: None,
        }
    }
}

/// The idle lock's default: 5 minutes without a touch.
pub const DEFAULT_IDLE_LOCK: Duration = Duration::from_secs(300);

/// How a device starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A plain (unencrypted) data directory: no key file. Opened at once,
    /// unlocked, as every device before issue 18. Decision: such a
    /// directory keeps working (the test kit, `make image DATA=DIR`, the
    /// QEMU tests and every card made before issue 18 are plain); the home
    /// screen says "Not encrypted" in red, and it has no **Lock now**
    /// (there is no passphrase). A device set up on its own screen is
    /// never plain.
    Plain,
    /// A key file: locked until the passphrase is typed on the screen.
    Locked,
    /// Neither a key file nor an owner: the first-boot setup.
    FirstBoot,
}

impl Mode {
    /// The mode of data directory `dir`.
    pub fn of(dir: &Path, opts: &LockOptions) -> Result<Mode> {
        Ok(if vault::is_initialized(&RealFs, dir) {
            Mode::Locked
        } else if key_destroyed(dir) {
            // What the destroyed key sealed can never be read again: the
            // card starts over (the first boot shreds it before a new key
            // is made), whatever `first_boot` says, since there is no
            // plain store to run.
            Mode::FirstBoot
        } else if opts.first_boot && !has_contacts(dir)? {
            Mode::FirstBoot
        } else {
            // A plain directory that already holds pads is never turned
            // into a first boot (its pads would stay in clear beside a
            // new key): it runs plain, with its warning.
            Mode::Plain
        })
    }
}

/// Whether `dir` is what an encrypted directory leaves when its key file
/// was destroyed (too many wrong passphrases): the failure counter without
/// the key file.
pub fn key_destroyed(dir: &Path) -> bool {
    !vault::is_initialized(&RealFs, dir) && dir.join(vault::FAILURES_FILE).exists()
}

/// Whether the plain data directory `dir` holds any contact.
fn has_contacts(dir: &Path) -> Result<bool> {
    if !dir.join(crate::pad::store::MARKER_FILE).exists() {
        return Ok(false);
    }
    let store = PadStore::open_dir(dir)?;
    let any = !store.contacts().is_empty();
    store.close()?;
    Ok(any)
}

/// The owner's settings that live behind the passphrase: the file
/// [`SETTINGS_FILE`], sealed with the master key
/// ([`MasterKey::seal_blob`], purpose [`SETTINGS_PURPOSE`]), replaced
/// durably. What the screen needs before anyone typed a passphrase (the
/// display kind and bus, its rotation and the touch calibration) and what
/// init needs before otc-device runs (the network address) cannot be
/// behind the passphrase: see [`crate::config`] and
/// [`crate::clear_settings`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub owner: String,
    /// Seconds a prompt waits for the owner.
    pub prompt_timeout_seconds: u64,
    /// Seconds without a touch before the device locks itself (0: never).
    pub idle_lock_seconds: u64,
    /// No longer written: the address lives in the clear
    /// `DIR/device.toml` ([`crate::clear_settings`]), since the laptop
    /// must reach the device before unlock. Read (and ignored) so that
    /// settings files written before are still read.
    #[serde(default, skip_serializing)]
    pub address: Option<String>,
    /// No longer written: the rotation lives in `DIR/device.toml` (the
    /// lock screen must be the right way up). Read and ignored, as
    /// `address`.
    #[serde(default, skip_serializing)]
    pub rotation: u16,
}

/// The sealed settings file in the data directory.
pub const SETTINGS_FILE: &str = "settings.sealed";
/// The associated data the settings are sealed with.
pub const SETTINGS_PURPOSE: &str = "otc settings v1";

impl Settings {
    pub fn new(owner: &str) -> Settings {
        Settings {
            owner: owner.to_string(),
            prompt_timeout_seconds: 30,
            idle_lock_seconds: DEFAULT_IDLE_LOCK.as_secs(),
            address: None,
            rotation: 0,
        }
    }

    pub fn prompt_timeout(&self) -> Duration {
        Duration::from_secs(self.prompt_timeout_seconds.clamp(5, 600))
    }

    pub fn idle_lock(&self) -> Option<Duration> {
        (self.idle_lock_seconds > 0).then(|| Duration::from_secs(self.idle_lock_seconds.max(15)))
    }

    /// The settings of `dir`, if it has them.
    pub fn load(dir: &Path, key: &MasterKey) -> Result<Option<Settings>> {
        let path = dir.join(SETTINGS_FILE);
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read the settings", e)),
        };
        let plain = key.open_blob(SETTINGS_PURPOSE, &sealed).map_err(|e| {
            Error::io(
                "the settings file does not open with this key",
                std::io::Error::other(e.to_string()),
            )
        })?;
        serde_json::from_slice(&plain).map(Some).map_err(|e| {
            Error::io(
                "the settings file does not parse",
                std::io::Error::other(e.to_string()),
            )
        })
    }

    /// Writes the settings sealed (tmp + fsync + rename + directory fsync).
    pub fn save(&self, dir: &Path, key: &MasterKey) -> Result<()> {
        let plain = serde_json::to_vec(self).map_err(|e| {
            Error::io(
                "cannot write the settings",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let sealed = key.seal_blob(SETTINGS_PURPOSE, &plain);
        durable::replace_durably(&RealFs, &dir.join(SETTINGS_FILE), &sealed)
            .map_err(|e| Error::io("cannot write the settings", e))
    }
}

/// Opens the pad store of `dir`: encrypted under the master key when it
/// has a key file ([`PadStore::open_dir_keyed`]), plain without one.
pub fn open_store(dir: &Path, key: Option<&MasterKey>) -> Result<PadStore> {
    Ok(PadStore::open_dir_keyed(
        dir,
        crate::pad::StoreOptions::default(),
        key.cloned(),
    )?)
}

/// What the lock screen gives back: the master key read from the key file
/// with the right passphrase, the owner's settings, and how many wrong
/// passphrases came before it.
pub struct Unlock {
    pub key: MasterKey,
    pub settings: Option<Settings>,
    pub failures: u32,
}

/// A target step's tap ([`LockCtx::tap_target`]), in panel pixels.
pub(crate) struct TargetTap {
    pub at: (u32, u32),
    pub target: (u32, u32),
    pub size: (u32, u32),
}

/// What runs once the lock screen or the first boot has the key.
pub type OnUnlock = Box<dyn FnOnce(Unlock) -> Result<()> + Send>;

/// The lock screen's state, shared by the device's threads.
pub struct LockCtx {
    dir: PathBuf,
    ui: UiHandle,
    trace: TraceHandle,
    clock: Arc<dyn Clock>,
    opts: LockOptions,
    board: Arc<BoardStatus>,
    quit: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The idle lock: the UI activity last seen, when, and the time.
    idle: Mutex<(u64, Duration, Option<Duration>)>,
    /// The owner's screen and network settings (`DIR/device.toml`), as
    /// applied now.
    clear: Mutex<ClearSettings>,
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often a flow's thread looks whether the device is stopping.
const POLL: Duration = Duration::from_millis(50);

impl LockCtx {
    pub fn new(
        dir: &Path,
        ui: UiHandle,
        trace: TraceHandle,
        clock: Arc<dyn Clock>,
        opts: LockOptions,
        board: Arc<BoardStatus>,
        clear: ClearSettings,
    ) -> LockCtx {
        let idle = (trace.activity(), clock.now(), opts.idle_lock);
        LockCtx {
            dir: dir.to_path_buf(),
            ui,
            trace,
            clock,
            opts,
            board,
            quit: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            idle: Mutex::new(idle),
            clear: Mutex::new(clear),
        }
    }

    /// The owner's screen and network settings as applied now.
    pub fn clear(&self) -> ClearSettings {
        guard(&self.clear).clone()
    }

    /// Applies `new` at once (the screen's orientation and touch
    /// correction) and, if `save`, writes it to `DIR/device.toml` first:
    /// nothing is applied when it cannot be written.
    pub(crate) fn apply_clear(&self, new: ClearSettings, save: bool) -> Result<()> {
        if save {
            new.save(&self.dir)?;
        }
        self.ui.set_orientation(new.orientation());
        *guard(&self.clear) = new;
        Ok(())
    }

    /// Shows a target step ([`otc_ui::Target`]) and waits for its tap:
    /// where it landed, where the target was and the screen's size, in
    /// panel pixels ([`ChoiceAnswer::Tapped`]). `None` if the device stops.
    pub(crate) fn tap_target(&self, req: ChoiceRequest) -> Option<TargetTap> {
        let t = self.ui.ask_choice(req);
        loop {
            if self.quitting() {
                self.ui.cancel_choice(&t);
                return None;
            }
            match t.wait_timeout(POLL) {
                Some(ChoiceAnswer::Tapped { at, target, size }) => {
                    return Some(TargetTap { at, target, size });
                }
                Some(_) => return None,
                None => {}
            }
        }
    }

    /// The idle lock's time from now on (the owner's setting).
    pub fn set_idle(&self, after: Option<Duration>) {
        let mut i = guard(&self.idle);
        *i = (self.trace.activity(), self.clock.now(), after);
    }

    /// True once nothing happened on the screen for the idle lock's time:
    /// the caller locks. Restarts the count. Only on the owner's own
    /// screens (home, alerts, about, a contact): never while a prompt
    /// waits, a flow's step, the keyboard or a progress screen is shown,
    /// or `busy` (the broker is held: a pad is being made).
    pub fn idle_expired(&self, busy: bool) -> bool {
        let mut i = guard(&self.idle);
        let (activity, now) = (self.trace.activity(), self.clock.now());
        let screen = self.trace.get().screen;
        let resting = matches!(
            screen.as_str(),
            "home" | "alerts" | "about" | "contact" | "remove-contact"
        );
        if activity != i.0 || self.trace.prompt_waiting() || busy || !resting {
            i.0 = activity;
            i.1 = now;
            return false;
        }
        match i.2 {
            Some(after) if now.saturating_sub(i.1) >= after => {
                i.1 = now;
                true
            }
            _ => false,
        }
    }

    /// The device is stopping: flows end at their next look.
    pub fn quit(&self) {
        self.quit.store(true, Ordering::SeqCst);
    }

    fn quitting(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    /// Waits for the flows' threads (after [`LockCtx::quit`] and the UI's
    /// stop, which withdraws what they wait for).
    pub fn join(&self) {
        let threads: Vec<_> = guard(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Runs the lock screen (`Mode::Locked`) or the first-boot setup
    /// (`Mode::FirstBoot`) on a thread of its own; `then` gets the key.
    pub fn spawn_unlock(self: &Arc<Self>, mode: Mode, then: OnUnlock) -> Result<()> {
        let ctx = self.clone();
        self.board.set_locked(true);
        // Nothing of the home screen shows between the steps (the UI falls
        // back to home for a moment between one step and the next): a
        // locked home says "Locked" and takes no tap.
        self.ui.set_home(otc_ui::HomeView {
            locked: true,
            ..Default::default()
        });
        let t = std::thread::Builder::new()
            .name("otc-lock".into())
            .spawn(move || {
                // A flow ended by a Cancel, or a step refused because
                // another was on screen, starts again: the device stays
                // locked until the passphrase, or until it stops.
                let got = loop {
                    let got = match mode {
                        Mode::FirstBoot => crate::first_boot::run(&ctx),
                        _ => ctx.lock_screen(),
                    };
                    if got.is_some() || ctx.quitting() {
                        break got;
                    }
                    std::thread::sleep(POLL);
                };
                if let Some(u) = got {
                    // Unlocked before `then` opens the gate, so the home it
                    // draws is the owner's (see `HomeView::locked`).
                    ctx.board.set_locked(false);
                    match then(u) {
                        Ok(()) => {
                            let after = guard(&ctx.idle).2;
                            ctx.set_idle(after);
                        }
                        Err(e) => {
                            ctx.board.set_locked(true);
                            ctx.fatal(&e.to_string())
                        }
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the lock screen", e))?;
        guard(&self.threads).push(t);
        Ok(())
    }

    /// Runs `f` on a thread of its own, joined when the device stops.
    pub fn spawn_flow(&self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| Error::io("cannot start a flow's thread", e))?;
        guard(&self.threads).push(t);
        Ok(())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ui(&self) -> &UiHandle {
        &self.ui
    }

    pub(crate) fn opts(&self) -> &LockOptions {
        &self.opts
    }

    /// Shows `req` and waits for an answer, looking at the stop flag.
    pub(crate) fn step(&self, req: ChoiceRequest) -> Option<usize> {
        let t = self.ui.ask_choice(req);
        loop {
            if self.quitting() {
                self.ui.cancel_choice(&t);
                return None;
            }
            match t.wait_timeout(POLL) {
                Some(ChoiceAnswer::Chosen(i)) => return Some(i),
                Some(_) => return None,
                None => {}
            }
        }
    }

    /// Asks for text, looking at the stop flag.
    pub(crate) fn text(&self, req: TextRequest, check: otc_ui::TextCheck) -> Option<String> {
        let t = self.ui.ask_text(req, check);
        loop {
            if self.quitting() {
                self.ui.cancel_text(&t);
                return None;
            }
            match t.wait_timeout(POLL) {
                Some(TextAnswer::Done(s)) => return Some(s),
                Some(_) => return None,
                None => {}
            }
        }
    }

    /// A screen with no way on (the key is gone, the store did not open):
    /// stays until the device stops.
    pub(crate) fn fatal(&self, what: &str) {
        self.step(ChoiceRequest {
            screen: "lock-error".into(),
            title: "The device cannot start".into(),
            warning: Some(what.to_string()),
            ..Default::default()
        });
    }

    /// A step shown while a wait runs out: no buttons, withdrawn when the
    /// platform's clock reaches `until` (or the device stops).
    fn wait_until(&self, req: ChoiceRequest, until: Duration) -> bool {
        let t = self.ui.ask_choice(req);
        loop {
            if self.quitting() {
                self.ui.cancel_choice(&t);
                return false;
            }
            if self.clock.now() >= until {
                self.ui.cancel_choice(&t);
                return true;
            }
            let _ = t.wait_timeout(POLL);
        }
    }

    /// The lock screen: **Unlock**, then the passphrase on the keyboard
    /// (masked). A wrong one is counted durably before it is checked (the
    /// key file's counter, [`vault::unlock`]); after the third in a row
    /// the screen waits ([`delay_after`]) before it takes another; after
    /// [`LockOptions::max_failures`] the key file is destroyed and the
    /// screen says so. Returns `None` when the device stops.
    fn lock_screen(&self) -> Option<Unlock> {
        let mut tries = Tries {
            last_failure_at: self.clock.now(),
            note: None,
            failures_seen: 0,
        };
        let max = self.opts.max_failures.max(1);
        loop {
            if self.quitting() {
                return None;
            }
            let failures = self.read_failures()?;
            tries.failures_seen = tries.failures_seen.max(failures);
            let counted = counted_lines(failures, max);
            if !self.wait_out_delay(&mut tries, failures, &counted) {
                return None;
            }
            let Some(pass) = self.ask_passphrase(&mut tries, counted)? else {
                continue;
            };
            match self.check_passphrase(&mut tries, pass, failures, max) {
                Tried::Unlocked(u) => return Some(u),
                Tried::Again => {}
                Tried::Stop => return None,
            }
        }
    }

    /// Lock screen, step 1: the wrong passphrases in a row so far (the
    /// key file's counter); `None` (the device stops on a fatal screen)
    /// when it cannot be read.
    fn read_failures(&self) -> Option<u32> {
        match vault::failures(&RealFs, &self.dir) {
            Ok(n) => Some(n),
            Err(e) => {
                self.fatal(&format!("The key file cannot be read: {e}."));
                None
            }
        }
    }

    /// Lock screen, step 2: after wrong passphrases, waits on a screen of
    /// its own until [`delay_after`] has passed since the last. False when
    /// the device stops meanwhile.
    fn wait_out_delay(&self, tries: &mut Tries, failures: u32, counted: &[String]) -> bool {
        let delay = delay_after(failures);
        let until = tries.last_failure_at + delay;
        if self.clock.now() >= until {
            return true;
        }
        let mut lines = counted.to_vec();
        lines.push(format!(
            "Wait {} before the next try.",
            otc_ui::format::duration(delay)
        ));
        self.wait_until(
            ChoiceRequest {
                screen: "lock-wait".into(),
                title: "Locked".into(),
                lines,
                warning: tries.note.take(),
                ..Default::default()
            },
            until,
        )
    }

    /// Lock screen, step 3: **Unlock**, then the passphrase on the
    /// keyboard. `None` when the device stops; `Some(None)` when the
    /// keyboard was cancelled (the lock screen comes again).
    fn ask_passphrase(&self, tries: &mut Tries, counted: Vec<String>) -> Option<Option<String>> {
        let mut lines = vec!["Type the passphrase to unlock this device.".to_string()];
        lines.extend(counted);
        self.step(ChoiceRequest {
            screen: "lock".into(),
            title: "Locked".into(),
            lines,
            warning: tries.note.take(),
            choices: vec!["Unlock".into()],
            ..Default::default()
        })?;
        let pass = self.text(
            TextRequest::passphrase(TextKind::Passphrase),
            Box::new(|p: &str| {
                if p.is_empty() {
                    Err("Type the passphrase first.".into())
                } else {
                    Ok(())
                }
            }),
        );
        if pass.is_none() && self.quitting() {
            return None;
        }
        Some(pass)
    }

    /// Lock screen, step 4: checks the passphrase (counted durably first,
    /// [`vault::unlock`]) and loads the settings with the key; a wrong one
    /// is noted for the next lock screen; the key destroyed is said on a
    /// screen of its own.
    fn check_passphrase(&self, tries: &mut Tries, pass: String, failures: u32, max: u32) -> Tried {
        self.ui.show_progress(ProgressView {
            title: "Checking the passphrase".into(),
            done_bytes: 0,
            total_bytes: 1,
            cancellable: false,
            time_left: None,
        });
        let got = vault::unlock(&RealFs, &self.dir, pass.as_bytes(), max);
        drop(zeroize::Zeroizing::new(pass));
        let key = match got {
            Ok(key) => key,
            Err(e) => {
                self.ui.hide_progress();
                return self.refused(tries, e, max);
            }
        };
        let settings = Settings::load(&self.dir, &key);
        self.ui.hide_progress();
        match settings {
            Ok(settings) => Tried::Unlocked(Unlock {
                key,
                settings,
                failures: tries.failures_seen.max(failures),
            }),
            Err(e) => {
                self.fatal(&format!("The settings cannot be read: {e}."));
                Tried::Stop
            }
        }
    }

    /// Lock screen, step 4 refused: a wrong passphrase or an error is
    /// noted for the next try; a destroyed key ends the lock screen.
    fn refused(&self, tries: &mut Tries, e: VaultError, max: u32) -> Tried {
        match e {
            VaultError::WrongPassphrase { failures: n, .. } => {
                tries.failures_seen = tries.failures_seen.max(n);
                tries.last_failure_at = self.clock.now();
                tries.note = Some("Wrong passphrase.".into());
            }
            VaultError::KeyDestroyed => {
                self.step(ChoiceRequest {
                    screen: "lock-wiped".into(),
                    title: "The key is destroyed".into(),
                    lines: vec![format!(
                        "{max} wrong passphrases in a row: the device destroyed its key file."
                    )],
                    warning: Some(
                        "Nothing on this card can be read any more, by anyone. The pads \
                         are lost: make new ones with your contacts."
                            .into(),
                    ),
                    ..Default::default()
                });
                return Tried::Stop;
            }
            e => {
                tries.last_failure_at = self.clock.now();
                tries.note = Some(format!("The passphrase could not be checked: {e}."));
            }
        }
        Tried::Again
    }
}

/// What the lock screen keeps from one try to the next.
struct Tries {
    /// When the last wrong passphrase was typed (platform clock).
    last_failure_at: Duration,
    /// Said on the next lock screen (a wrong passphrase, an error).
    note: Option<String>,
    /// The most wrong passphrases in a row seen, reported after unlock.
    failures_seen: u32,
}

/// How a try at the passphrase ended.
enum Tried {
    Unlocked(Unlock),
    /// Wrong or not checked: the lock screen comes again.
    Again,
    /// The device stops (a fatal screen, the key destroyed).
    Stop,
}

/// The lock screen's line about wrong passphrases in a row, if any.
fn counted_lines(failures: u32, max: u32) -> Vec<String> {
    if failures == 0 {
        return Vec::new();
    }
    let left = max.saturating_sub(failures);
    vec![format!(
        "{failures} wrong passphrase{} in a row. {left} more and the device erases its key.",
        if failures == 1 { "" } else { "s" }
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_each_failure_and_is_capped() {
        let d: Vec<u64> = (0..12).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(d, [0, 0, 0, 5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(delay_after(u32::MAX), Duration::from_secs(600));
    }
}
