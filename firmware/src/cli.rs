//! The `otc-device` command line: pad management on a data directory.

use crate::audit::{AuditLog, Event};
use crate::board::{ScreenOptions, WatchdogOptions};
use crate::config::Config;
use crate::device::{RunOptions, StartOptions};
use crate::error::{Error, Result};
use crate::net::Bind;
use crate::pad::Error as PadError;
use crate::pad::PadStore;
use crate::pad::StoreOptions;
use crate::pad::generate;
use crate::pad::legacy;
use crate::pad::pairing::{self, MakeOptions, PairingCode};
use crate::pad::size::parse_size;
use crate::pad::vault::{self, KdfParams};
use crate::pad::vfs::RealFs;
use crate::units::human;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use otc_proto::Format;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const LONG_ABOUT: &str = "\
otc-device keeps one-time pads for One Time Chat and spends each pad byte at
most once. This command manages the pads in a data directory: it makes new
pads, imports pads made by a partner's device or by the original One Time
Chat tool, lists them, and erases them.

A pad is shared by two devices. The device that makes it is side A and sends
with the first part of the pad; the partner imports the export file and is
side B, sending with the rest. The owners' way is on the devices themselves
(New contact and Import contact on the home screen): the pad is made from the
device's hardware RNG and never leaves the two devices unsealed. Making a pad
here, on a computer, is for development and tests: that computer saw every
pad byte. Pad bytes are overwritten with zeros on disk
as soon as they are used. On SD cards and other flash storage that overwrite
is best effort (the card may keep old copies of blocks); keep the data
directory on an encrypted partition and destroy the card at end of life.

SIZES are a whole number of bytes, optionally followed by K, M, G or T, which
are powers of 1024: 1000, 64K, 512M, 1G, 1T.";

const AFTER_HELP: &str = "\
EXAMPLES:
    Make a 1 GiB pad for bob, mixing in the hardware RNG; it prints the
    pairing code that seals the export:
        otc-device --data /var/lib/otc-device pad new --contact bob \\
            --size 1G --hwrng /dev/hwrng --export /media/usb/bob.otcpad

    On bob's device, import it with the code (typed on standard input), then
    destroy the file:
        otc-device pad import /media/usb/bob.otcpad --contact alice --code-file -

    See what is left:
        otc-device pad list

EXIT STATUS:
    0 on success, 1 on an error (the message says what to do next; the code
    in brackets is stable for scripts), 2 on a usage error.";

/// The `otc-device` command.
#[derive(Debug, Parser)]
#[command(
    name = "otc-device",
    version,
    about = "One Time Chat pad device: keeps one-time pads and spends them at most once",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// Data directory holding the pads and their metadata. It is created if
    /// missing; an existing non-empty directory must have been made by
    /// otc-device.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/otc-device",
        global = true
    )]
    pub data: PathBuf,

    /// The passphrase of an encrypted data directory, read from this file
    /// (`-`: standard input); one trailing newline is not part of it.
    /// Never given as an argument (it would show in `ps` and the shell's
    /// history). `init` with it makes an encrypted data directory; every
    /// other command on an encrypted one needs it.
    #[arg(long, value_name = "PATH", global = true)]
    pub passphrase_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set the device owner's name (once) and prepare the data directory.
    ///
    /// With --passphrase-file the data directory is encrypted at rest: a
    /// random master key, wrapped under the passphrase with Argon2id, in
    /// DIR/otc-device.key; every pad and record is encrypted under it. The
    /// directory must be new or empty (a plain one is not converted), and
    /// a weak passphrase is refused with the reason.
    Init {
        /// The owner's name, shown on the home screen.
        #[arg(long, value_name = "NAME")]
        owner: String,
        /// Tests only: tiny Argon2id parameters (8 KiB, 1 pass), so a test
        /// can unlock in microseconds and use any passphrase. Worthless
        /// against guessing.
        #[cfg(any(debug_assertions, feature = "debug-cli"))]
        #[arg(long, hide = true)]
        insecure_test_kdf: bool,
    },
    /// Run the device: the screen, the confirmation prompts and the RPC
    /// endpoint for the chat client.
    ///
    /// Settings come from DIR/otc.toml, every key optional and unknown
    /// keys refused: owner; [rpc] interface, port, prompt_timeout_seconds,
    /// allowed_hosts; [limits]; [display] kind (fbdev, spi, emulator) and
    /// its device; [touch] device, rotation, calibration. The README's
    /// "Flash, then everything else on the device" explains each. These flags override
    /// the file. The endpoint serves
    /// the Ethernet interface only: --interface binds to that interface's
    /// address and to the device itself (SO_BINDTODEVICE), and wildcard
    /// addresses are refused. --listen is for development and accepts
    /// loopback addresses only.
    Run(RunArgs),
    /// Make, import, list and erase pads.
    ///
    /// Never back up, restore or copy the data directory (or clone its SD
    /// card) and run from the copy: a copy holds old cursors, so it sends
    /// with pad bytes that were already used, and nothing on the device can
    /// tell a copy from the original. A pad this data directory ever held or
    /// made cannot be imported into it again, even after `pad remove`.
    #[command(subcommand)]
    Pad(PadCommand),
    /// Show the status LED's error pattern (two short flashes every two
    /// seconds) for SECONDS, then switch it off: what /init runs while it
    /// waits to try again a device that could not start (no display, say).
    /// The LED is `[status_led]` of DIR/otc.toml; without one (or without
    /// GPIO) it only waits, and says why once.
    StatusLedError {
        /// How long to show it.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
    },
    /// Print the address eth0 should have, for /init: the owner's address
    /// from DIR/device.toml (chosen on the device's screen) with the
    /// prefix length of CONFIGURED, or CONFIGURED when the owner chose
    /// none. A device.toml that cannot be read is said on standard error
    /// and CONFIGURED printed.
    NetworkAddress {
        /// The boot partition's `[network] address`, e.g. 10.0.0.2/24.
        #[arg(long, value_name = "ADDRESS/PREFIX")]
        configured: String,
    },
    /// Developer tools (not for normal use; debug builds only).
    #[cfg(any(debug_assertions, feature = "debug-cli"))]
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

/// `otc-device run ...`
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Serve the RPC endpoint on this interface only (default from
    /// otc.toml, else eth0).
    #[arg(long, value_name = "IFACE", conflicts_with = "listen")]
    pub interface: Option<String>,
    /// Serve on this loopback address instead (development and tests).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The screen: fbdev (/dev/fb0 + evdev touch), spi, memory (no screen)
    /// or emulator (a page on loopback; emulator builds only).
    #[arg(long, value_name = "KIND")]
    pub display: Option<crate::config::DisplayKind>,
    /// Where the emulator page listens (loopback only; default
    /// 127.0.0.1:9080).
    #[arg(long, value_name = "ADDR")]
    pub emulator_listen: Option<std::net::SocketAddr>,
    /// The hardware random source New contact makes pads from (XORed with
    /// the kernel RNG; required: without it no pad is made). Host tests
    /// may give /dev/urandom.
    #[arg(long, value_name = "PATH", default_value = crate::pad::pairing::DEFAULT_HWRNG)]
    pub hwrng: PathBuf,
    /// This directory stands for the USB stick of New contact's export and
    /// Import contact (emulator builds only; "inserted" while it exists).
    #[cfg(feature = "emulator")]
    #[arg(long, value_name = "DIR")]
    pub stick: Option<PathBuf>,
    /// Pet this hardware watchdog (e.g. /dev/watchdog) while the device
    /// works: once a second, as long as the RPC endpoint's accept loop, the
    /// UI loop and the audit flusher have each turned within the last 10 s
    /// (and for up to 60 s while it starts). Otherwise it stops petting and
    /// the board resets when the watchdog expires. It is opened first of
    /// all, with its timeout set (--watchdog-timeout). A stop on
    /// SIGTERM/SIGINT disarms it (magic close); a crash leaves it
    /// counting, so whoever restarts the device must do so within the
    /// timeout. Only one process may hold it. No watchdog without this
    /// flag.
    #[arg(long, value_name = "DEVICE")]
    pub watchdog: Option<PathBuf>,
    /// The watchdog's timeout: no pet for this long resets the board
    /// (bcm2835 on the Pi allows at most 15).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 15,
        requires = "watchdog",
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    pub watchdog_timeout: u64,
    /// Test hook: print the screen trace on stdout as one line
    /// `otc-trace: {json}` whenever it changes (firmware/src/test_trace.rs).
    /// The trace holds the pairing code: never in normal use. image/init
    /// passes it only for the kernel command line's otc.test_trace=1.
    #[arg(long, hide = true)]
    pub test_trace: bool,
}

/// `otc-device pad ...`
#[derive(Debug, Subcommand)]
pub enum PadCommand {
    /// Make a new pad for a contact and write the partner's sealed export.
    ///
    /// The pad is filled with the kernel random number generator XORed with
    /// the hardware RNG named by --hwrng. Both raw streams must pass the
    /// SP 800-90B repetition-count and adaptive-proportion health tests on
    /// byte samples (claimed min-entropy 4 bits per byte, window 512,
    /// false-alarm rate 2^-40 per test), or nothing is kept: no pad, no
    /// metadata, no export file. This device becomes side A. Without
    /// --hwrng the kernel RNG alone makes the pad (with a warning).
    ///
    /// The export is sealed (XChaCha20-Poly1305) with a fresh pairing code,
    /// printed here and nowhere else: give it to the partner apart from the
    /// file (read it out, never on the same medium). The partner imports
    /// with `pad import FILE --contact NAME --code-file -`. Made on a
    /// computer, the pad was seen by that computer: for development and
    /// tests; owners pair on the devices (New contact / Import contact).
    /// Destroy the file once imported (SECRET only with the code).
    New {
        /// Name of the contact this pad is for.
        #[arg(long, value_name = "NAME")]
        contact: String,
        /// Pad size: bytes, or with K, M, G, T (powers of 1024).
        #[arg(long, value_name = "SIZE")]
        size: String,
        /// The hardware random source to XOR in, e.g. /dev/hwrng (--source
        /// is the older name).
        #[arg(long = "hwrng", alias = "source", value_name = "PATH")]
        hwrng: Option<PathBuf>,
        /// Package format: v3 (default; information-theoretically
        /// authenticated, n + 16 pad bytes a message) or v1 (compatible
        /// with the original One Time Chat, 2n + 48). v2 is withdrawn.
        #[arg(long, value_name = "v1|v3", default_value = "v3")]
        format: Format,
        /// Where side A's region ends (default: half the size). Accepts SIZE syntax.
        #[arg(long, value_name = "SIZE")]
        split: Option<String>,
        /// Write the partner's export file here (neither FILE nor FILE.tmp
        /// may exist).
        #[arg(long, value_name = "FILE")]
        export: PathBuf,
    },
    /// Import a pad from a partner's sealed export (made by `pad new`).
    ///
    /// The pairing code the maker showed opens it. Every byte of the file is
    /// authenticated before anything is kept: a wrong code or a changed byte
    /// keeps nothing. Unsealed exports of earlier versions are refused.
    /// Destroy the file after importing it.
    Import {
        /// The export file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Name of the partner.
        #[arg(long, value_name = "NAME")]
        contact: String,
        /// A file holding the pairing code (`-`: read it from standard
        /// input). Case, spaces and dashes do not matter.
        #[arg(long, value_name = "PATH")]
        code_file: Option<PathBuf>,
    },
    /// Import a pad made by the original One Time Chat tool.
    ///
    /// STORE is the raw pad (e.g. alice.bob.random.store), METADATA its JSON
    /// metadata (alice.bob.random.metadata). The pad keeps format v1 and the
    /// original's send position. The original files are not changed:
    /// destroy them after importing.
    ImportLegacy {
        /// The original `.store` file.
        #[arg(value_name = "STORE")]
        store: PathBuf,
        /// The original `.metadata` file.
        #[arg(value_name = "METADATA")]
        metadata: PathBuf,
        /// Name of the partner.
        #[arg(long, value_name = "NAME")]
        contact: String,
    },
    /// List contacts with pad left to send and to receive.
    ///
    /// "Messages" counts 100-byte messages in the contact's format (v3:
    /// 116 pad bytes each; v1: 248). Pads of the withdrawn format v2 are
    /// named on standard error, to be removed.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Erase a contact's pad and its metadata.
    ///
    /// The pad file is overwritten with zeros and synced, then deleted with
    /// the contact's metadata. There is no undo. (On flash storage the
    /// overwrite is best effort; see the note in `otc-device --help`.)
    Remove {
        /// The contact.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `otc-device debug ...` (hidden; used by tests). These spend pad bytes
/// without the confirmation screen, so they exist only in debug builds or
/// with the `debug-cli` feature.
#[cfg(any(debug_assertions, feature = "debug-cli"))]
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Seal messages in a loop, printing `index lo hi package-hex` for each.
    SealLoop {
        #[arg(long)]
        contact: String,
        #[arg(long, default_value_t = 100)]
        message_len: usize,
        /// Stop after this many (default: until the pad is used up).
        #[arg(long)]
        count: Option<u64>,
        /// Reservation block in bytes.
        #[arg(long)]
        reserve_block: Option<u64>,
    },
    /// Seal one message given as text; print the package in hex.
    Seal {
        #[arg(long)]
        contact: String,
        message: String,
    },
    /// Open one package given in hex; print the message.
    Open {
        #[arg(long)]
        contact: String,
        package: String,
    },
}

/// Run the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otc-device: error[{}]: {e}", e.code());
            ExitCode::from(1)
        }
    }
}

fn bar(total: u64, msg: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}

/// Run a parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            owner,
            #[cfg(any(debug_assertions, feature = "debug-cli"))]
            insecure_test_kdf,
        } => {
            #[cfg(not(any(debug_assertions, feature = "debug-cli")))]
            let insecure_test_kdf = false;
            match &cli.passphrase_file {
                // The owner's name goes into the sealed settings, never
                // into otc.toml in clear (a stolen card shows no name).
                Some(pf) => init_encrypted(&cli.data, pf, insecure_test_kdf, &owner)?,
                None => {
                    PadStore::open_dir(&cli.data)?.close()?;
                    crate::config::set_owner(&cli.data, &owner)?;
                }
            }
            println!(
                "This device now belongs to {}. On the appliance, start it with \
                 `otc-device --data {} run`.",
                owner.trim(),
                cli.data.display()
            );
            // A laptop has no touchscreen at /dev/fb0: say how to try it.
            if cfg!(feature = "emulator") {
                println!(
                    "On a laptop, run it with its screen in the browser: `otc-device --data {} \
                     run --listen 127.0.0.1:9051 --display emulator`, then open \
                     http://127.0.0.1:9080/ (or use `make run`).",
                    cli.data.display()
                );
            } else {
                println!(
                    "On a laptop, try it with the screen in a browser: `make run` (a build \
                     with feature emulator)."
                );
            }
            Ok(())
        }
        Command::Run(args) => {
            let opts = run_options(&cli.data, &args)?;
            crate::device::run(&cli.data, opts)
        }
        Command::Pad(cmd) => run_pad(
            &DataDir {
                dir: &cli.data,
                passphrase_file: cli.passphrase_file.as_deref(),
            },
            cmd,
        ),
        Command::StatusLedError { seconds } => {
            status_led_error(&cli.data, Duration::from_secs(seconds));
            Ok(())
        }
        Command::NetworkAddress { configured } => {
            let owner = crate::clear_settings::load_at_start(&cli.data).address;
            println!(
                "{}",
                crate::clear_settings::eth0_address(owner, &configured)
            );
            Ok(())
        }
        #[cfg(any(debug_assertions, feature = "debug-cli"))]
        Command::Debug(cmd) => run_debug(
            &DataDir {
                dir: &cli.data,
                passphrase_file: cli.passphrase_file.as_deref(),
            },
            cmd,
        ),
    }
}

/// `status-led-error`: the error pattern on `[status_led]` for `span`, or
/// only the wait when there is no LED to show it on (said once).
fn status_led_error(dir: &Path, span: Duration) {
    let led = match Config::load(dir) {
        Ok(cfg) => cfg.status_led,
        Err(e) => {
            eprintln!("otc-device: status-led-error: {e}; no LED is shown");
            None
        }
    };
    let opened = crate::board::gpio::open(led.as_ref(), None);
    match opened.led {
        Some(mut led) => {
            let clock = otc_ui::SystemClock::new();
            crate::board::led::show_error(led.as_mut(), &clock, span, &mut std::thread::sleep);
        }
        None => std::thread::sleep(span),
    }
}

/// The data directory a `pad` or `debug` command works on, and where its
/// passphrase comes from if it is encrypted.
pub struct DataDir<'a> {
    pub dir: &'a Path,
    pub passphrase_file: Option<&'a Path>,
}

impl DataDir<'_> {
    /// Open the store: plain, or (with a key file, or a failure counter
    /// left by a destroyed key) unlocked with the passphrase. The command
    /// line counts wrong passphrases like the screen does
    /// ([`vault::DEFAULT_MAX_FAILURES`] in a row destroy the key) but does
    /// not wait between tries: it is for development and tests.
    fn open(&self, opts: StoreOptions) -> Result<PadStore> {
        let encrypted = vault::is_initialized(&RealFs, self.dir)
            || self.dir.join(vault::FAILURES_FILE).exists();
        if !encrypted {
            if self.passphrase_file.is_some()
                && self.dir.join(crate::pad::store::MARKER_FILE).exists()
            {
                return Err(PadError::NotEncrypted(self.dir.to_path_buf()).into());
            }
            return Ok(PadStore::open_dir_with(self.dir, opts)?);
        }
        let Some(pf) = self.passphrase_file else {
            return Err(PadError::PassphraseNeeded(self.dir.to_path_buf()).into());
        };
        let pass = read_passphrase(pf)?;
        let key = vault::unlock(&RealFs, self.dir, &pass, vault::DEFAULT_MAX_FAILURES)?;
        Ok(PadStore::open_dir_keyed(self.dir, opts, Some(key))?)
    }
}

/// Read a passphrase from `path` (`-`: standard input), without one
/// trailing newline (`\n` or `\r\n`). An empty one is refused.
pub fn read_passphrase(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut text = zeroize::Zeroizing::new(Vec::new());
    let res = if path == Path::new("-") {
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut text))
    };
    res.map_err(|e| {
        Error::io(
            format!("cannot read the passphrase from {}", path.display()),
            e,
        )
    })?;
    if text.ends_with(b"\n") {
        text.pop();
        if text.ends_with(b"\r") {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(Error::io(
            format!("cannot read the passphrase from {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "it is empty"),
        ));
    }
    Ok(text)
}

/// `init --passphrase-file`: a new encrypted data directory (see
/// [`Command::Init`]).
fn init_encrypted(dir: &Path, passphrase_file: &Path, test_kdf: bool, owner: &str) -> Result<()> {
    let pass = read_passphrase(passphrase_file)?;
    let params = if test_kdf {
        KdfParams::TEST
    } else {
        let text = std::str::from_utf8(&pass)
            .map_err(|_| PadError::WeakPassphrase("it is not UTF-8 text".to_string()))?;
        if let Some(reason) = vault::passphrase_strength(text).refused {
            return Err(PadError::WeakPassphrase(reason).into());
        }
        KdfParams::DEFAULT
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?
        .count();
    if entries > 0 {
        let reason = if vault::is_initialized(&RealFs, dir) {
            "it is encrypted already"
        } else {
            "it is not empty; an encrypted data directory starts empty (a plain one is not converted)"
        };
        return Err(PadError::AlreadyInitialized {
            path: dir.to_path_buf(),
            reason: reason.to_string(),
        }
        .into());
    }
    let canon = std::fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
    if let Some(parent) = canon.parent() {
        crate::pad::fsutil::sync_dir(parent)?;
    }
    let key = vault::create(&RealFs, &canon, &pass, &params)?;
    PadStore::open_dir_keyed(&canon, StoreOptions::default(), Some(key.clone()))?.close()?;
    crate::lock::Settings::new(owner.trim()).save(&canon, &key)?;
    Ok(())
}

/// `run`'s flags and `DIR/otc.toml`, resolved into the device's plain
/// options: a flag wins over the file, the file over the defaults.
pub fn run_options(dir: &Path, args: &RunArgs) -> Result<RunOptions> {
    let cfg = Config::load(dir)?;
    // No owner in otc.toml and no key file: the first boot on the screen
    // asks for one (issue 18). A key file: the owner is in the sealed
    // settings, read after unlock.
    let encrypted = crate::pad::vault::is_initialized(&crate::pad::vfs::RealFs, dir);
    let first_boot = cfg.owner.is_none() && !encrypted;
    let owner = cfg.owner.clone().unwrap_or_default();
    let bind = choose_bind(args, &cfg);
    let mut display = cfg.display.clone();
    if let Some(a) = args.emulator_listen {
        display.emulator_listen = a;
    }
    Ok(RunOptions {
        start: StartOptions {
            owner,
            bind,
            prompt_timeout: Duration::from_secs(cfg.rpc.prompt_timeout_seconds),
            limits: cfg.limits.clone(),
            ui: otc_ui::UiConfig::default(),
            allowed_hosts: cfg.rpc.allowed_hosts.clone(),
            pairing: crate::pairing_flow::PairingOptions {
                stick: stick_option(args),
                hwrng: args.hwrng.clone(),
                ..Default::default()
            },
            lock: crate::lock::LockOptions {
                first_boot,
                max_failures: cfg.lock.max_failures,
                ..Default::default()
            },
        },
        screen: ScreenOptions {
            kind: args.display.unwrap_or(cfg.display.kind),
            display,
            touch: cfg.touch.clone(),
        },
        watchdog: args.watchdog.clone().map(|device| WatchdogOptions {
            device,
            timeout: Duration::from_secs(args.watchdog_timeout),
        }),
        status_led: cfg.status_led.clone(),
        buttons: cfg.buttons.clone(),
        hwrng: args.hwrng.clone(),
        test_trace: args.test_trace,
    })
}

/// The USB stick `run` uses: `--stick DIR` in emulator builds, the real USB
/// stick ([`crate::stick::UsbStick`]) in device builds.
fn stick_option(args: &RunArgs) -> Option<std::sync::Arc<dyn crate::stick::Stick>> {
    #[cfg(feature = "emulator")]
    if let Some(d) = &args.stick {
        return Some(std::sync::Arc::new(crate::stick::DirStick::new(d.clone())));
    }
    let _ = args;
    // A device build (no emulator) uses the real USB stick; an emulator
    // build without --stick has none, so host runs never mount a disk.
    if cfg!(feature = "emulator") {
        None
    } else {
        Some(std::sync::Arc::new(crate::stick::UsbStick))
    }
}

/// Where to serve: flags first, then `otc.toml`, then `eth0`.
pub fn choose_bind(args: &RunArgs, cfg: &Config) -> Bind {
    let port = cfg.rpc.port;
    if let Some(addr) = args.listen {
        return Bind::Loopback(addr);
    }
    if let Some(name) = &args.interface {
        return Bind::Interface {
            name: name.clone(),
            port,
        };
    }
    if let Some(addr) = cfg.rpc.listen {
        return Bind::Loopback(addr);
    }
    Bind::Interface {
        name: cfg.rpc.interface.clone().unwrap_or_else(|| "eth0".into()),
        port,
    }
}

/// Record a pad change in the audit log. The change itself has happened
/// and stands; a log that cannot be written is reported, not fatal.
///
/// Takes the open `store` because the store holds the data directory's
/// lock: the entry is written while no other process (a starting device,
/// another CLI command) can append to the same log, so two writers never
/// fork its hash chain. Callers close the store only after this returns.
fn audit_pad(store: &PadStore, event: Event) {
    #[cfg(test)]
    tests::AUDIT_HOOK.with(|h| {
        if let Some(h) = h.borrow().as_ref() {
            h(store.dir())
        }
    });
    // An encrypted data directory's log is sealed under its master key.
    let files = crate::audit::Files::real(store.dir(), store.master_key());
    let res = AuditLog::open_in(files, Box::new(crate::platform::system_unix_now))
        .and_then(|(mut log, _)| log.append(event));
    if let Err(e) = res {
        eprintln!("otc-device: warning: could not write the audit log: {e}");
    }
}

/// `pad ...`: one function per subcommand.
fn run_pad(data: &DataDir, cmd: PadCommand) -> Result<()> {
    match cmd {
        PadCommand::New {
            contact,
            size,
            hwrng,
            format,
            split,
            export,
        } => pad_new(
            data,
            contact,
            &size,
            hwrng,
            format,
            split.as_deref(),
            export,
        ),
        PadCommand::Import {
            file,
            contact,
            code_file,
        } => pad_import(data, &file, &contact, code_file.as_deref()),
        PadCommand::ImportLegacy {
            store,
            metadata,
            contact,
        } => pad_import_legacy(data, &store, &metadata, &contact),
        PadCommand::List { json } => pad_list(data, json),
        PadCommand::Remove { name } => pad_remove(data, &name),
    }
}

/// `pad new`: make the pad (hardware RNG ⊕ kernel RNG), then write the
/// sealed export and print its pairing code. If the export cannot be
/// written, the new pad is erased again: nothing is kept.
fn pad_new(
    data: &DataDir,
    contact: String,
    size: &str,
    hwrng: Option<PathBuf>,
    format: Format,
    split: Option<&str>,
    export: PathBuf,
) -> Result<()> {
    let size = parse_size(size)?;
    let split = split.map(parse_size).transpose()?;
    generate::check_geometry(size, split)?;
    if std::fs::symlink_metadata(&export).is_ok() {
        return Err(PadError::OutputExists(export).into());
    }
    let tmp = crate::pad::export::temp_path(&export);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        return Err(PadError::OutputExists(tmp).into());
    }
    let store = data.open(StoreOptions::default())?;
    if hwrng.is_none() {
        eprintln!(
            "warning: no --hwrng: the pad is made from this computer's kernel RNG alone, and this \
             computer saw every pad byte. For development and tests only; owners make pads on \
             the device (New contact)."
        );
    }
    let gen_bar = bar(size, "generating");
    let made = pairing::make_pad_with(
        &store,
        &MakeOptions {
            contact,
            size,
            split,
            format,
            hw: hwrng,
        },
        &mut |done, _| {
            gen_bar.set_position(done);
            true
        },
    );
    gen_bar.finish_and_clear();
    let c = made?;
    let code = PairingCode::generate();
    let exp_bar = bar(size, "exporting");
    let exported = code.and_then(|code| {
        pairing::export_sealed_with(&store, &c.contact, &export, &code, &mut |done, _| {
            exp_bar.set_position(done);
            true
        })
        .map(|s| (s, code))
    });
    exp_bar.finish_and_clear();
    let (summary, code) = match exported {
        Ok(x) => x,
        Err(e) => {
            let _ = store.remove(&c.contact, &mut |_, _| {});
            return Err(e.into());
        }
    };
    audit_pad(
        &store,
        Event::PadCreated {
            contact: c.contact.clone(),
            pad_id: c.pad_id.clone(),
            bytes: c.size,
        },
    );
    store.close()?;
    println!(
        "Made a {} pad for {} (format {}, pad id {}).",
        human(c.size),
        c.contact,
        c.format,
        short_id(&c.pad_id)?
    );
    println!(
        "This device is side A and sends with the first {}.",
        human(c.split)
    );
    println!("Fingerprint: {}", c.fingerprint);
    println!();
    println!(
        "{} holds {}'s half, sealed with this pairing code:",
        summary.path.display(),
        c.contact
    );
    println!("Pairing code: {}", code.groups());
    println!(
        "  Give the code to {} apart from the file (say it; never on the same medium).",
        c.contact
    );
    println!("  Import there with `otc-device pad import FILE --contact NAME --code-file -`,");
    println!("  compare the fingerprints, then destroy the file.");
    Ok(())
}

/// What an import made, for the audit entry.
struct ImportedPad {
    contact: String,
    pad_id: String,
    size: u64,
}

/// The part both imports share: open the store, run `import` with a
/// progress bar over `file`'s length, audit the new pad, close the store.
fn import_pad<T>(
    data: &DataDir,
    file: &Path,
    import: impl FnOnce(&PadStore, &mut dyn FnMut(u64, u64)) -> crate::pad::Result<T>,
    pad: impl Fn(&T) -> ImportedPad,
) -> Result<T> {
    let store = data.open(StoreOptions::default())?;
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let pb = bar(len, "importing");
    let res = import(&store, &mut |d, _| pb.set_position(d));
    pb.finish_and_clear();
    let r = res?;
    let p = pad(&r);
    audit_pad(
        &store,
        Event::PadImported {
            contact: p.contact,
            pad_id: p.pad_id,
            bytes: p.size,
        },
    );
    store.close()?;
    Ok(r)
}

/// Read a pairing code from `path` (`-`: standard input).
fn read_code(path: &Path) -> Result<PairingCode> {
    let mut text = zeroize::Zeroizing::new(String::new());
    let res = if path == Path::new("-") {
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
    };
    res.map_err(|e| {
        Error::io(
            format!("cannot read the pairing code from {}", path.display()),
            e,
        )
    })?;
    Ok(PairingCode::parse(&text)?)
}

/// `pad import`: a sealed export with its pairing code. A plain export of
/// an earlier version is refused ([`Error::PlainExport`]).
fn pad_import(data: &DataDir, file: &Path, contact: &str, code_file: Option<&Path>) -> Result<()> {
    let kind = pairing::probe(file)?;
    if kind == pairing::ExportKind::Plain {
        return Err(PadError::PlainExport {
            path: file.to_path_buf(),
        }
        .into());
    }
    let Some(code_file) = code_file else {
        return Err(PadError::CodeNeeded {
            path: file.to_path_buf(),
        }
        .into());
    };
    if code_file == Path::new("-") && data.passphrase_file == Some(Path::new("-")) {
        return Err(Error::io(
            "cannot read both the pairing code and the passphrase from standard input",
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "give one of --code-file and --passphrase-file as a file",
            ),
        ));
    }
    let code = read_code(code_file)?;
    let r = import_pad(
        data,
        file,
        |store, progress| {
            pairing::import_sealed_with(store, file, &code, contact, &mut |d, t| {
                progress(d, t);
                true
            })
        },
        |r| ImportedPad {
            contact: r.contact.clone(),
            pad_id: r.pad_id.clone(),
            size: r.size,
        },
    )?;
    println!(
        "Imported a {} pad for {} (format {}, side {}, pad id {}).",
        human(r.size),
        r.contact,
        r.format,
        r.side,
        short_id(&r.pad_id)?
    );
    println!("Fingerprint: {}", r.fingerprint);
    println!(
        "Compare it with the maker's. Then destroy {} (flash may keep old blocks, which are useless without the code).",
        file.display()
    );
    Ok(())
}

/// `pad import-legacy`.
fn pad_import_legacy(
    data: &DataDir,
    store_path: &Path,
    metadata: &Path,
    contact: &str,
) -> Result<()> {
    let r = import_pad(
        data,
        store_path,
        |store, progress| legacy::import_legacy(store, store_path, metadata, contact, progress),
        |r| ImportedPad {
            contact: r.contact.clone(),
            pad_id: r.pad_id.clone(),
            size: r.size,
        },
    )?;
    println!(
        "Imported a {} One Time Chat pad for {} (format v1, side {}, {} already used, pad id {}).",
        human(r.size),
        r.contact,
        r.side,
        human(r.already_used),
        short_id(&r.pad_id)?
    );
    println!(
        "SECRET: now destroy {} and {}; they still hold the pad.",
        store_path.display(),
        metadata.display()
    );
    Ok(())
}

/// `pad list`.
fn pad_list(data: &DataDir, json: bool) -> Result<()> {
    let store = data.open(StoreOptions::default())?;
    let list = store.list();
    let withdrawn = store.withdrawn();
    store.close()?;
    for w in &withdrawn {
        eprintln!(
            "{}: this pad uses format v2, which is withdrawn because a relay that knows one message can forge another; it cannot be used. Erase it with `otc-device pad remove {}` and make a new pad with `otc-device pad new`.",
            w.name, w.name
        );
    }
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(&list).map_err(|e| PadError::CorruptMeta {
            what: "contact list".into(),
            reason: e.to_string(),
        })?;
        writeln!(out, "{text}").map_err(|e| Error::io("cannot write", e))?;
        return Ok(());
    }
    if list.is_empty() && withdrawn.is_empty() {
        writeln!(out, "No pads yet. Make one with `otc-device pad new`.")
            .map_err(|e| Error::io("cannot write", e))?;
        return Ok(());
    }
    let w = |out: &mut std::io::StdoutLock, s: String| {
        writeln!(out, "{s}").map_err(|e| Error::io("cannot write", e))
    };
    w(
        &mut out,
        format!(
            "{:<20} {:>4} {:>6} {:>11} {:>11} {:>10} {:>11} {:>10}",
            "CONTACT", "SIDE", "FORMAT", "SIZE", "SEND LEFT", "MESSAGES", "RECV LEFT", "MESSAGES"
        ),
    )?;
    for c in &list {
        let line = match &c.damage {
            // A damaged pad has no figures to show: say so in their place.
            Some(_) => format!(
                "{:<20} {:>4} {:>6} {:>11} {:>11}",
                c.name,
                c.side.to_string(),
                c.format.to_string(),
                human(c.size),
                "DAMAGED"
            ),
            None => format!(
                "{:<20} {:>4} {:>6} {:>11} {:>11} {:>10} {:>11} {:>10}",
                c.name,
                c.side.to_string(),
                c.format.to_string(),
                human(c.size),
                human(c.send_left),
                c.send_messages_left,
                human(c.receive_left),
                c.receive_messages_left
            ),
        };
        w(&mut out, line)?;
    }
    for c in &list {
        if let Some(why) = &c.damage {
            w(
                &mut out,
                format!(
                    "DAMAGED {}: {why}. The pad cannot be used and is left as it is; if the right \
                     file cannot be put back, remove it with `otc-device pad remove {}`",
                    c.name, c.name
                ),
            )?;
        }
    }
    w(
        &mut out,
        "(messages: 100-byte messages in the contact's format)".into(),
    )?;
    Ok(())
}

/// `pad remove`.
fn pad_remove(data: &DataDir, name: &str) -> Result<()> {
    let store = data.open(StoreOptions::default())?;
    if let Some(w) = store.withdrawn().into_iter().find(|w| w.name == name) {
        // A v2 pad (withdrawn): erased like any other.
        store.remove(name, &mut |_, _| {})?;
        audit_pad(
            &store,
            Event::PadRemoved {
                contact: name.to_string(),
                pad_id: w.pad_id,
            },
        );
        store.close()?;
        println!("Erased the withdrawn (v2) pad for {name} and its metadata.");
        return Ok(());
    }
    let info = store.contact(name)?;
    let pb = bar(info.size, "erasing");
    let res = store.remove(name, &mut |d, _| pb.set_position(d));
    pb.finish_and_clear();
    res?;
    audit_pad(
        &store,
        Event::PadRemoved {
            contact: name.to_string(),
            pad_id: info.pad_id,
        },
    );
    store.close()?;
    println!("Erased the pad for {name} and its metadata.");
    Ok(())
}

#[cfg(any(debug_assertions, feature = "debug-cli"))]
fn run_debug(data: &DataDir, cmd: DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::SealLoop {
            contact,
            message_len,
            count,
            reserve_block,
        } => {
            let mut opts = StoreOptions::default();
            if let Some(b) = reserve_block {
                opts.reserve_block = b;
            }
            let store = data.open(opts)?;
            let message = vec![0x42u8; message_len];
            let mut out = std::io::stdout().lock();
            let mut n = 0u64;
            while count.is_none_or(|c| n < c) {
                let s = match store.seal(&contact, &message) {
                    Ok(s) => s,
                    Err(PadError::PadExhausted { .. }) | Err(PadError::TooLarge { .. }) => {
                        let _ = writeln!(out, "exhausted");
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let meta_side_desc = s.cost;
                writeln!(
                    out,
                    "{} {} {}",
                    s.index,
                    meta_side_desc,
                    hex::encode(&s.package)
                )
                .and_then(|_| out.flush())
                .map_err(|e| Error::io("cannot write", e))?;
                n += 1;
            }
            Ok(store.close()?)
        }
        DebugCommand::Seal { contact, message } => {
            let store = data.open(StoreOptions::default())?;
            let s = store.seal(&contact, message.as_bytes())?;
            store.close()?;
            println!("{}", hex::encode(s.package));
            Ok(())
        }
        DebugCommand::Open { contact, package } => {
            let bytes = hex::decode(package.trim()).map_err(|e| PadError::BadPackage {
                format: "hex".into(),
                reason: e.to_string(),
            })?;
            let store = data.open(StoreOptions::default())?;
            let check = store.check_open(&contact, &bytes)?;
            for w in &check.warnings {
                eprintln!("warning: {w:?}");
            }
            let o = store.open(&contact, &bytes)?;
            store.close()?;
            println!("{}", String::from_utf8_lossy(&o.message));
            Ok(())
        }
    }
}

/// The first 16 hex digits of a pad id, as the command line shows it. A
/// pad id is 64 hex digits; a shorter or non-hex one (a damaged record) is
/// an error, not a panic.
fn short_id(pad_id: &str) -> Result<&str> {
    match pad_id.get(..16) {
        Some(s) if s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(s),
        _ => Err(PadError::CorruptMeta {
            what: "pad id".into(),
            reason: format!("{pad_id:?} is not 64 hex digits"),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn short_ids_of_damaged_pad_ids_are_errors() {
        assert_eq!(short_id(&"ab".repeat(32)).ok(), Some("abababababababab"));
        for bad in [
            "",
            "abc",
            "0123456789abcde",
            "0123456789abcdeX00",
            "ééééééééé",
        ] {
            let e = short_id(bad).expect_err(bad);
            assert_eq!(e.code(), "corrupt_metadata", "{bad:?}");
        }
    }

    type Hook = Box<dyn Fn(&std::path::Path)>;

    thread_local! {
        /// Called by [`audit_pad`] just before it writes (tests only).
        pub(super) static AUDIT_HOOK: RefCell<Option<Hook>> = RefCell::new(None);
    }

    /// Whether some open description holds the data directory's lock right
    /// now (flock locks conflict between descriptions, even in one process).
    fn dir_is_locked(dir: &std::path::Path) -> bool {
        let marker = dir.join(crate::pad::store::MARKER_FILE);
        let f = std::fs::File::open(&marker)
            .unwrap_or_else(|e| panic!("open {}: {e}", marker.display()));
        match f.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(e)) => panic!("try_lock: {e}"),
        }
    }

    fn cli(data: &std::path::Path, args: &[&str]) -> Result<()> {
        let mut argv = vec!["otc-device".to_string(), "--data".into()];
        argv.push(data.display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        run(Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")))
    }

    /// The screen trace (it holds the pairing code) is printed only with
    /// `run --test-trace`: off by default.
    #[test]
    fn the_test_trace_is_off_unless_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        cli(tmp.path(), &["init", "--owner", "Owner"]).unwrap();
        let opts = |extra: &[&str]| {
            let mut argv = vec!["otc-device", "--data"];
            let data = tmp.path().display().to_string();
            argv.push(&data);
            argv.push("run");
            argv.extend_from_slice(extra);
            let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("not run")
            };
            run_options(tmp.path(), &args).unwrap()
        };
        assert!(!opts(&[]).test_trace, "off by default");
        assert!(opts(&["--test-trace"]).test_trace);
    }

    /// Every pad command writes its audit entry while it still holds the
    /// data directory's lock (it used to close the store first, so a
    /// device starting at that moment could append to the same log).
    #[test]
    fn pad_commands_audit_while_holding_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
        let export = tmp.path().join("bob.pad");
        let seen: std::rc::Rc<RefCell<Vec<(std::path::PathBuf, bool)>>> = Default::default();
        let sink = seen.clone();
        AUDIT_HOOK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |dir| {
                sink.borrow_mut()
                    .push((dir.to_path_buf(), dir_is_locked(dir)))
            }))
        });
        let export_s = export.display().to_string();
        cli(
            &alice,
            &[
                "pad",
                "new",
                "--contact",
                "bob",
                "--size",
                "64K",
                "--export",
                &export_s,
            ],
        )
        .unwrap();
        // The code went to standard output only; a second sealed export of
        // the unused pad, with a code we know, is what bob imports.
        let code = PairingCode::generate().unwrap();
        let again = tmp.path().join("bob2.pad");
        {
            let store = PadStore::open_dir(&alice).unwrap();
            pairing::export_sealed(&store, "bob", &again, &code).unwrap();
            store.close().unwrap();
        }
        let code_file = tmp.path().join("code");
        std::fs::write(&code_file, code.groups()).unwrap();
        let (again_s, code_s) = (again.display().to_string(), code_file.display().to_string());
        cli(
            &bob,
            &[
                "pad",
                "import",
                &again_s,
                "--contact",
                "alice",
                "--code-file",
                &code_s,
            ],
        )
        .unwrap();
        cli(&alice, &["pad", "remove", "bob"]).unwrap();
        AUDIT_HOOK.with(|h| *h.borrow_mut() = None);

        let seen = seen.borrow();
        assert_eq!(
            *seen,
            vec![(alice.clone(), true), (bob, true), (alice.clone(), true)],
            "each audit entry must be written with the data directory locked"
        );
        // And the lock is released once the command is done.
        assert!(!dir_is_locked(&alice));
        let (_, problems) = AuditLog::open(&alice).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}
