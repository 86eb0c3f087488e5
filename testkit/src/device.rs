//! Real pad devices in-process, for the tests of the programs around the
//! device (the chat client, end-to-end runs) and for benches.
//!
//! A [`TestDevice`] is the appliance minus its hardware: the real
//! `device::start` (pad store on a real data directory with real fsyncs,
//! broker, audit log, the RPC endpoint on 127.0.0.1 over real HTTP) and the
//! real UI, drawn on a memory display and touched through a scripted touch
//! source. The owner is simulated by a *thumb*: a thread that watches the
//! screen trace and, for every new prompt, taps the real Approve or Reject
//! button, or leaves it alone so that it times out ([`Thumb`]). Clocks are
//! the real ones (so a prompt left alone does time out, after
//! [`Options::prompt_timeout`]).
//!
//! [`mesh`] prepares the data directories of a group of owners, each pair
//! sharing a pad, with the device's own `pad new` / `pad import` commands
//! ([`otc_device`], [`init`], [`share_pad`]).
//!
//! The pieces a [`TestDevice`] is made of are public for tests that drive
//! the screen themselves or run on the platform's test twin (otc-device's
//! own integration tests): [`start_options`], [`start_device`],
//! [`wait_screen`], [`wait_until`].
//!
//! Every wait here is bounded and panics saying what it waited for.

use otc_device::device::{self, Running, StartOptions};
use otc_device::net::Bind;
use otc_device::platform::{Platform, RealPlatform};
use otc_device::rpc::Limits;
use otc_proto::Format;
use otc_rpc_client::Client;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::{ScriptedTouch, TouchScript};
use otc_ui::{ScreenTrace, TraceHandle, UiConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait for something a device should do at once.
pub const WAIT: Duration = Duration::from_secs(20);

/// What the simulated owner does with each new prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thumb {
    /// Tap Approve.
    Approve,
    /// Tap Reject.
    Reject,
    /// Tap **Read here** on a confirm-open (issue 19: the text is shown
    /// on the device's screen only, until the test taps its Done);
    /// Approve on any other prompt.
    ReadHere,
    /// Tap nothing: the prompt times out (or the client hangs up).
    Leave,
}

impl Thumb {
    fn to_u8(self) -> u8 {
        match self {
            Thumb::Approve => 0,
            Thumb::Reject => 1,
            Thumb::Leave => 2,
            Thumb::ReadHere => 3,
        }
    }

    fn from_u8(v: u8) -> Thumb {
        match v {
            0 => Thumb::Approve,
            1 => Thumb::Reject,
            3 => Thumb::ReadHere,
            _ => Thumb::Leave,
        }
    }
}

/// How a [`TestDevice`] runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a prompt waits for the owner (the device's default: 30 s).
    pub prompt_timeout: Duration,
    /// The RPC limits (the device's defaults).
    pub limits: Limits,
    /// What the thumb does at start.
    pub thumb: Thumb,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prompt_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            thumb: Thumb::Approve,
        }
    }
}

/// A running device with a simulated owner. See the module doc.
pub struct TestDevice {
    /// Its data directory.
    pub dir: PathBuf,
    /// The owner's name.
    pub owner: String,
    /// Where its RPC endpoint listens (127.0.0.1).
    pub addr: SocketAddr,
    trace: TraceHandle,
    /// Taps for the test itself ([`TestDevice::tap`]).
    script: TouchScript,
    thumb: Arc<AtomicU8>,
    answered: Arc<AtomicU64>,
    stop_thumb: Arc<AtomicBool>,
    thumb_thread: Option<JoinHandle<()>>,
    running: Option<Running>,
}

impl TestDevice {
    /// Start a device on `dir` (made by [`mesh`] or `otc-device init`)
    /// with the default [`Options`]: the thumb approves every prompt.
    pub fn start(dir: &Path, owner: &str) -> TestDevice {
        Self::start_with(dir, owner, Options::default())
    }

    /// Start a device on `dir` with `opts`.
    pub fn start_with(dir: &Path, owner: &str, opts: Options) -> TestDevice {
        let (running, script) = start_device(
            dir,
            StartOptions {
                prompt_timeout: opts.prompt_timeout,
                limits: opts.limits,
                ..start_options(owner)
            },
            Arc::new(RealPlatform::new()),
        );
        let trace = running.ui.trace.clone();
        let thumb = Arc::new(AtomicU8::new(opts.thumb.to_u8()));
        let answered = Arc::new(AtomicU64::new(0));
        let stop_thumb = Arc::new(AtomicBool::new(false));
        let thumb_thread = std::thread::Builder::new()
            .name(format!("thumb-{owner}"))
            .spawn({
                let (trace, thumb, answered, stop) = (
                    trace.clone(),
                    thumb.clone(),
                    answered.clone(),
                    stop_thumb.clone(),
                );
                let script = script.clone();
                move || run_thumb(trace, script, thumb, answered, stop)
            })
            .expect("spawn the thumb thread");
        TestDevice {
            dir: dir.to_path_buf(),
            owner: owner.to_string(),
            addr: running.addr,
            trace,
            script,
            thumb,
            answered,
            stop_thumb,
            thumb_thread: Some(thumb_thread),
            running: Some(running),
        }
    }

    /// `http://127.0.0.1:PORT`, the device URL a client is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared typed client, talking to this device.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// What the owner does with the next prompts.
    pub fn set_thumb(&self, thumb: Thumb) {
        self.thumb.store(thumb.to_u8(), Ordering::SeqCst);
    }

    /// How many prompts the thumb has tapped (approved or rejected).
    pub fn prompts_answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// What the screen shows now.
    pub fn screen(&self) -> ScreenTrace {
        self.trace.get()
    }

    /// Wait until the screen matches `pred` (at most [`WAIT`]).
    pub fn wait_screen(&self, what: &str, pred: impl Fn(&ScreenTrace) -> bool) -> ScreenTrace {
        wait_screen(&self.trace, &format!("{}: {what}", self.owner), pred)
    }

    /// Tap the button `id` (or labelled `id`) of the screen now shown,
    /// as the owner's finger would (a key of the keyboard, say:
    /// `kb-char-h`, `kb-space`, `kb-done`). Panics if there is none.
    pub fn tap(&self, id: &str) {
        let t = self.trace.get();
        let b = t
            .button(id)
            .unwrap_or_else(|| panic!("{}: no button {id:?} on screen: {t:#?}", self.owner));
        self.script.tap_button(b);
    }

    /// The running device (its service, UI thread, address).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the device is running")
    }

    /// Stop the device cleanly (the store is closed, the audit log gets
    /// `stop`). [`TestDevice::start`] on the same directory restarts it.
    pub fn stop(mut self) {
        self.shutdown()
            .unwrap_or_else(|e| panic!("{}: stop the device: {e}", self.owner));
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.stop_thumb.store(true, Ordering::SeqCst);
        if let Some(t) = self.thumb_thread.take() {
            let _ = t.join();
        }
        match self.running.take() {
            Some(r) => r.stop().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        // A failing test must not hang or panic again in drop.
        let _ = self.shutdown();
    }
}

/// The thumb: tap each new prompt once, as the policy says at the time.
fn run_thumb(
    trace: TraceHandle,
    script: TouchScript,
    thumb: Arc<AtomicU8>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut last: Option<u64> = None;
    while !stop.load(Ordering::SeqCst) {
        let t = trace.get();
        if let Some(id) = t.prompt
            && last != Some(id)
        {
            let button = match Thumb::from_u8(thumb.load(Ordering::SeqCst)) {
                Thumb::Approve => Some("approve"),
                Thumb::ReadHere if t.screen == "confirm-open" => Some("read-here"),
                Thumb::ReadHere => Some("approve"),
                Thumb::Reject => Some("reject"),
                Thumb::Leave => None,
            };
            if let Some(b) = button.and_then(|b| t.button(b)).filter(|b| b.armed) {
                script.tap_button(b);
                answered.fetch_add(1, Ordering::SeqCst);
                last = Some(id);
            } else if button.is_none() {
                // Left alone on purpose; a later policy change does not
                // come back to it.
                last = Some(id);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The options every test device starts with: `owner`, the RPC endpoint
/// on 127.0.0.1 with a port the kernel picks, the device's default prompt
/// timeout and limits, no extra allowed hosts, and taps that count at once
/// (the arm delay is the UI's own business, tested in otc-ui). Change a
/// field with `StartOptions { limits, ..start_options(owner) }`.
pub fn start_options(owner: &str) -> StartOptions {
    StartOptions {
        owner: owner.to_string(),
        bind: Bind::Loopback(SocketAddr::from(([127, 0, 0, 1], 0))),
        prompt_timeout: Options::default().prompt_timeout,
        limits: Limits::default(),
        ui: UiConfig {
            arm_delay: Duration::ZERO,
            // Like the arm delay: off for tests that drive prompts on a
            // fake clock (otc-ui's own tests check it, issue 23).
            changed_arm_delay: Duration::ZERO,
            ..Default::default()
        },
        allowed_hosts: Vec::new(),
        pairing: Default::default(),
        lock: Default::default(),
    }
}

/// Start the real device (`device::start`) on data directory `dir` with
/// `opts` and `platform`, drawing on an 800x480 memory display and touched
/// through a scripted touch source; return once the home screen shows,
/// with the script that taps it.
pub fn start_device(
    dir: &Path,
    opts: StartOptions,
    platform: Arc<dyn Platform>,
) -> (Running, TouchScript) {
    let (display, _pixels) = MemoryDisplay::new(800, 480);
    let (touch, script) = ScriptedTouch::new();
    let owner = opts.owner.clone();
    let running = device::start(
        dir,
        opts,
        Box::new(display),
        Some(Box::new(touch)),
        platform,
    )
    .unwrap_or_else(|e| panic!("start the device on {}: {e}", dir.display()));
    wait_screen(
        &running.ui.trace,
        &format!("{owner}: the home screen after start"),
        |t| t.screen == "home",
    );
    (running, script)
}

/// Poll `f` until it gives `Some`, for at most [`WAIT`]; panic saying
/// `what` was waited for.
pub fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(what, f, String::new)
}

/// Wait until the screen `trace` follows matches `pred` (at most
/// [`WAIT`]); returns that trace, or panics saying `what` was waited for
/// and what the screen shows.
pub fn wait_screen(
    trace: &TraceHandle,
    what: &str,
    pred: impl Fn(&ScreenTrace) -> bool,
) -> ScreenTrace {
    poll(
        what,
        || Some(trace.get()).filter(|t| pred(t)),
        || format!("; the screen shows {:#?}", trace.get()),
    )
}

/// The one bounded wait: `f` every 5 ms for at most [`WAIT`], then a panic
/// with `what` and `describe()`.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>, describe: impl Fn() -> String) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("gave up after {WAIT:?} waiting for {what}{}", describe());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run an `otc-device` command on data directory `dir`, in this process
/// (so it is audited exactly as on a device).
pub fn otc_device(dir: &Path, args: &[&str]) {
    use clap::Parser;
    let d = dir.to_str().expect("a UTF-8 path");
    let mut argv = vec!["otc-device", "--data", d];
    argv.extend_from_slice(args);
    let cli =
        otc_device::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    otc_device::cli::run(cli).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
}

/// `otc-device init --owner OWNER` on data directory `dir`.
pub fn init(dir: &Path, owner: &str) {
    otc_device(dir, &["init", "--owner", owner]);
}

/// The passphrase of the encrypted data directories the kit makes
/// ([`init_encrypted`]).
pub const TEST_PASSPHRASE: &str = "violin orbit carpet lemon glacier";

/// `otc-device init --owner OWNER --passphrase-file F` on `dir`: an
/// encrypted data directory (issue 18), with the tiny test-only Argon2id
/// parameters (`--insecure-test-kdf`) so unlocking costs nothing. The
/// passphrase is [`TEST_PASSPHRASE`]; the returned file holds it (next to
/// `dir`, named `<dir>.passphrase`), for `--passphrase-file`.
pub fn init_encrypted(dir: &Path, owner: &str) -> PathBuf {
    let pf = passphrase_file(dir);
    std::fs::write(&pf, format!("{TEST_PASSPHRASE}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", pf.display()));
    let p = pf.to_str().expect("a UTF-8 path");
    otc_device(
        dir,
        &[
            "init",
            "--owner",
            owner,
            "--passphrase-file",
            p,
            "--insecure-test-kdf",
        ],
    );
    pf
}

/// The passphrase file [`init_encrypted`] writes for `dir`.
pub fn passphrase_file(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".passphrase");
    dir.with_file_name(name)
}

/// Unlock an encrypted data directory made by [`init_encrypted`]: its
/// master key (counts as one unlock try, like the lock screen's).
pub fn unlock(dir: &Path) -> otc_device::pad::vault::MasterKey {
    use otc_device::pad::vault;
    vault::unlock(
        &otc_device::pad::vfs::RealFs,
        dir,
        TEST_PASSPHRASE.as_bytes(),
        vault::DEFAULT_MAX_FAILURES,
    )
    .unwrap_or_else(|e| panic!("unlock {}: {e}", dir.display()))
}

/// The pad store of an encrypted data directory, unlocked (a device that
/// is not: just do not call this, and the directory stays unreadable).
pub fn open_unlocked(dir: &Path) -> otc_device::PadStore {
    otc_device::PadStore::open_dir_keyed(dir, Default::default(), Some(unlock(dir)))
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A pad of `size` bytes in `format` between two data directories, as two
/// real devices would share it: `maker` (a directory and its name for the
/// other side) makes it with `pad new --export`, `taker` (likewise) imports
/// the sealed export with `pad import --code-file`. `pad new` prints its
/// pairing code only on its standard output, which an in-process run cannot
/// read, so the file the taker imports is a second sealed export of the
/// same (unused) pad, written through the library with a code we keep. The
/// files are made under `root` and removed after.
pub fn share_pad(
    root: &Path,
    (maker, at_maker): (&Path, &str),
    (taker, at_taker): (&Path, &str),
    size: u64,
    format: Format,
) {
    use otc_device::pad::pairing;
    let first = root.join(format!("{at_taker}-{at_maker}.first.otcpad"));
    let export = root.join(format!("{at_taker}-{at_maker}.otcpad"));
    let code_file = root.join(format!("{at_taker}-{at_maker}.code"));
    let f = first.to_str().expect("a UTF-8 path");
    let (size, format) = (size.to_string(), format.to_string());
    otc_device(
        maker,
        &[
            "pad",
            "new",
            "--contact",
            at_maker,
            "--size",
            &size,
            "--format",
            &format,
            "--export",
            f,
        ],
    );
    {
        let store = otc_device::PadStore::open_dir(maker)
            .unwrap_or_else(|e| panic!("open {}: {e}", maker.display()));
        let code = pairing::PairingCode::generate().expect("a pairing code");
        pairing::export_sealed(&store, at_maker, &export, &code)
            .unwrap_or_else(|e| panic!("export {}: {e}", export.display()));
        store.close().expect("close the maker's store");
        std::fs::write(&code_file, code.groups()).expect("write the code file");
    }
    let e = export.to_str().expect("a UTF-8 path");
    let c = code_file.to_str().expect("a UTF-8 path");
    otc_device(
        taker,
        &["pad", "import", e, "--contact", at_taker, "--code-file", c],
    );
    for f in [&first, &export, &code_file] {
        std::fs::remove_file(f).unwrap_or_else(|err| panic!("remove {}: {err}", f.display()));
    }
}

/// Data directories for `owners` under `root` (one each, named by the
/// owner), every pair sharing a pad of `size` bytes in `format`. In each
/// owner's directory the contact for another owner has that owner's name.
/// The earlier owner in `owners` makes the pad (side A) and the later one
/// imports it (side B), as two real devices would through an export file.
pub fn mesh(root: &Path, owners: &[&str], size: u64, format: Format) -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    for o in owners {
        let dir = root.join(o);
        init(&dir, o);
        dirs.insert(o.to_string(), dir);
    }
    for (i, a) in owners.iter().enumerate() {
        for b in &owners[i + 1..] {
            share_pad(root, (&dirs[*a], b), (&dirs[*b], a), size, format);
        }
    }
    dirs
}
