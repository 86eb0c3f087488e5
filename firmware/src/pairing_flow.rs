//! The owner's pairing flows on the screen: **New contact** (make a pad,
//! export its partner's half to a USB stick sealed with a pairing code,
//! show the code, then the fingerprint) and **Import contact** (pick the
//! export on the stick, type the code and a name, import, erase the file
//! from the stick, show the fingerprint). The pad work is
//! [`crate::pad::pairing`]'s; this module only asks the owner, step by
//! step ([`otc_ui::UiHandle::ask_choice`], [`otc_ui::UiHandle::ask_text`]),
//! on a thread of its own.
//!
//! Rules kept here:
//! - one flow at a time; none starts while a prompt is on screen;
//! - while a pad is made, exported or imported the broker is held
//!   ([`crate::confirm::Broker::hold`]): the RPC endpoint answers `busy`;
//! - Cancel at any step destroys everything half-made: a pad made but not
//!   yet taken by the partner is removed (its export on the stick is
//!   useless without the code, which is forgotten);
//! - the pairing code lives only in this thread's memory and on the screen,
//!   never on the card or the stick, and is dropped when the flow ends;
//! - the stick is mounted only for the export (read-write), the import
//!   (read-only), and the erasure of the imported file (read-write);
//! - a stick pulled out mid-write or mid-read stops the work at the next
//!   1 MiB ([`crate::stick::MountedStick::still_there`], and the errors a
//!   pulled stick gives) and says so ([`STICK_PULLED_EXPORT`],
//!   [`STICK_PULLED_IMPORT`]): the importer keeps nothing, and the maker's
//!   next try first erases what the cut write left on the stick.
//!
//! Sizes offered: those of [`PairingOptions::sizes`] that fit the data
//! partition's free space (statvfs, or the test seam
//! [`PairingOptions::free_space`]) minus [`PairingOptions::reserve`], at
//! most [`otc_ui::choice::MAX_CHOICES`], the largest ones. The time each
//! will take is from the hardware source's rate, measured when the flow
//! starts (a 64 KiB read).

use crate::Error;
use crate::audit::Event;
use crate::confirm::Screen;
use crate::pad::Error as PadError;
use crate::pad::pairing::{self, ExportKind, ImportSummary, PairingCode, SealedHeader};
use crate::pad::{PadStore, fsutil};
use crate::rpc::{ApprovalPrompt, Service};
use crate::stick::{self, Mode, Stick};
use otc_ui::{ChoiceAnswer, ChoiceRequest, ProgressView, TextAnswer, TextRequest, UiHandle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the device finds free space on the data partition (a test seam:
/// the real one is statvfs; a test may say "full" without filling a disk).
pub type FreeSpace = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

/// What the pairing flows need besides the store.
#[derive(Clone)]
pub struct PairingOptions {
    /// The USB stick (`None`: no stick can be used; the flows say so).
    pub stick: Option<Arc<dyn Stick>>,
    /// The hardware random source (`run --hwrng`, default `/dev/hwrng`);
    /// required: without it no pad is made.
    pub hwrng: PathBuf,
    /// Free space the data partition keeps after a new pad.
    pub reserve: u64,
    /// The sizes offered, smallest first.
    pub sizes: Vec<u64>,
    pub free_space: FreeSpace,
}

impl Default for PairingOptions {
    fn default() -> Self {
        PairingOptions {
            stick: None,
            hwrng: PathBuf::from(pairing::DEFAULT_HWRNG),
            reserve: 256 << 20,
            sizes: vec![16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30, 16 << 30],
            free_space: Arc::new(statvfs_free),
        }
    }
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
pub fn statvfs_free(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// A size in binary units as the size buttons start: `64 MiB`, `1 GiB`.
pub fn size_label(n: u64) -> String {
    const K: u64 = 1024;
    match n {
        _ if n >= K * K * K && n.is_multiple_of(K * K * K) => format!("{} GiB", n / (K * K * K)),
        _ if n >= K * K && n.is_multiple_of(K * K) => format!("{} MiB", n / (K * K)),
        _ if n >= K && n.is_multiple_of(K) => format!("{} KiB", n / K),
        _ => format!("{n} bytes"),
    }
}

/// What one size button says: the size first, then about how many 100-byte
/// messages it carries (both directions together; a v3 message costs its
/// length + 16) and about how long making it takes at `rate` bytes/s.
pub fn size_choice(size: u64, rate: f64) -> String {
    let messages = size / 116;
    let secs = if rate > 0.0 { size as f64 / rate } else { 0.0 };
    format!(
        "{} · about {} messages of 100 bytes · ~{}",
        size_label(size),
        otc_ui::format::count(messages),
        otc_ui::format::duration(Duration::from_secs_f64(secs))
    )
}

/// The sizes to offer with `free` bytes free (see the module docs).
pub fn sizes_that_fit(opts: &PairingOptions, free: u64) -> Vec<u64> {
    let room = free.saturating_sub(opts.reserve);
    let fit: Vec<u64> = opts.sizes.iter().copied().filter(|s| *s <= room).collect();
    let skip = fit.len().saturating_sub(otc_ui::choice::MAX_CHOICES);
    fit[skip..].to_vec()
}

/// The hardware source's rate in bytes a second, from one 64 KiB read.
fn measure_rate(hw: &Path) -> Result<f64, String> {
    let mut f = std::fs::File::open(hw).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let t = Instant::now();
    let n = fsutil::read_full(&mut f, &mut buf).map_err(|e| e.to_string())?;
    if n < buf.len() {
        return Err("it ended after a few bytes".into());
    }
    Ok(n as f64 / t.elapsed().as_secs_f64().max(1e-6))
}

/// The state the flows share with the UI event thread.
#[derive(Default)]
pub struct Flows {
    /// A flow is running.
    active: AtomicBool,
    /// Cancel was tapped on the progress screen.
    cancel: AtomicBool,
}

impl Flows {
    /// The progress screen's Cancel was tapped.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// Everything a flow uses.
pub struct Ctx<S: Screen<Prompt = ApprovalPrompt> + 'static> {
    pub ui: UiHandle,
    pub service: Arc<Service<S>>,
    pub opts: PairingOptions,
    pub flows: Arc<Flows>,
    pub owner: String,
    /// Called when the contacts changed (the home screen is rebuilt).
    pub refresh: Arc<dyn Fn() + Send + Sync>,
}

/// Which flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    NewContact,
    ImportContact,
}

/// Starts a flow on its own thread, unless one runs or a prompt is on
/// screen (then a toast says why).
pub fn start<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: Ctx<S>, which: Which) {
    if ctx.service.is_stopping() {
        return;
    }
    if ctx.service.broker().is_busy() {
        ctx.ui.toast(otc_ui::Toast::error(
            "The device is busy with a request. Try again when it is done.",
        ));
        return;
    }
    if ctx.flows.active.swap(true, Ordering::SeqCst) {
        return;
    }
    let flows = ctx.flows.clone();
    let spawned = std::thread::Builder::new()
        .name("otc-pairing".into())
        .spawn(move || {
            match which {
                Which::NewContact => new_contact(&ctx),
                Which::ImportContact => import_contact(&ctx),
            }
            (ctx.refresh)();
            ctx.flows.active.store(false, Ordering::SeqCst);
        });
    if spawned.is_err() {
        flows.active.store(false, Ordering::SeqCst);
    }
}

fn step(ui: &UiHandle, req: ChoiceRequest) -> Option<usize> {
    match ui.ask_choice(req).wait() {
        ChoiceAnswer::Chosen(i) => Some(i),
        ChoiceAnswer::Cancelled | ChoiceAnswer::Busy | ChoiceAnswer::Tapped { .. } => None,
    }
}

/// A step that says what went wrong; `retry` offers "Try again".
/// Returns whether the owner wants to try again.
fn trouble(ui: &UiHandle, screen: &str, title: &str, what: &str, retry: bool) -> bool {
    let choices = if retry {
        vec!["Try again".to_string()]
    } else {
        vec!["Back".to_string()]
    };
    let r = step(
        ui,
        ChoiceRequest {
            screen: screen.into(),
            title: title.into(),
            warning: Some(what.into()),
            choices,
            cancel: retry.then(|| "Cancel".into()),
            ..Default::default()
        },
    );
    retry && r == Some(0)
}

/// A name for the export file: the maker's name (letters, digits, `._-`
/// only) and the start of the pad id, e.g. `Alice-3f9a0c12.otcpad`.
fn export_name(owner: &str, pad_id: &str) -> String {
    let who: String = owner
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(32)
        .collect();
    let who = who.trim_start_matches('.');
    let who = if who.is_empty() { "pad" } else { who };
    format!("{who}-{}.otcpad", &pad_id[..pad_id.len().min(8)])
}

fn progress_view(title: &str, done: u64, total: u64, started: Instant) -> ProgressView {
    let elapsed = started.elapsed().as_secs_f64();
    let time_left = (done > 0 && done < total && elapsed > 0.0)
        .then(|| Duration::from_secs_f64((total - done) as f64 * elapsed / done as f64));
    ProgressView {
        title: title.to_string(),
        done_bytes: done,
        total_bytes: total,
        cancellable: true,
        time_left,
    }
}

/// Removes a contact made by a flow that did not finish (Cancel, a failed
/// export): its pad is erased.
fn undo_made<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>, name: &str) {
    let store: &PadStore = ctx.service.store();
    let pad_id = store.contact(name).map(|c| c.pad_id).unwrap_or_default();
    if store.remove(name, &mut |_, _| {}).is_ok() {
        ctx.service.audit(Event::PadRemoved {
            contact: name.to_string(),
            pad_id,
        });
    }
}

/// The maker's side: name → size → Make → Export → code → fingerprint.
fn new_contact<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) {
    let Some(name) = ask_name(ctx) else {
        return;
    };
    let Some(free) = free_space_for_pad(ctx) else {
        return;
    };
    let Some(rate) = hwrng_rate(ctx) else {
        return;
    };
    let Some(size) = choose_size(ctx, &name, free, rate) else {
        return;
    };
    if !confirm_make(ctx, &name, size) {
        return;
    }
    // Make, with the endpoint answering busy.
    let Some(hold) = ctx.service.broker().hold() else {
        ctx.ui.toast(otc_ui::Toast::error(
            "The device is busy with a request. Nothing was made; try again.",
        ));
        return;
    };
    let made = match make(ctx, &name, size) {
        Ok(m) => m,
        Err(e) => {
            drop(hold);
            say_not_made(ctx, e);
            return;
        }
    };
    ctx.service.audit(Event::PadCreated {
        contact: name.clone(),
        pad_id: made.pad_id.clone(),
        bytes: made.size,
    });
    (ctx.refresh)();
    let Some(code) = export_until_done(ctx, &name, &made.pad_id, hold) else {
        return;
    };
    if !show_code(ctx, &name, code) {
        undo_made(ctx, &name);
        ctx.ui
            .toast(otc_ui::Toast::info("Cancelled: the new pad was erased"));
        return;
    }
    step(
        &ctx.ui,
        ChoiceRequest {
            screen: "new-contact-done".into(),
            title: format!("Paired with {name}"),
            lines: vec!["Compare with your partner's screen: the same fingerprint on both.".into()],
            code: Some(made.fingerprint.clone()),
            choices: vec!["Done".into()],
            ..Default::default()
        },
    );
}

/// New contact, step 1 (and import's name step): the contact's name, one
/// not taken yet; `None` when the owner cancels.
fn ask_name<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) -> Option<String> {
    let taken = ctx.service.store().contacts();
    match ctx
        .ui
        .ask_text(
            TextRequest::contact_name(),
            crate::device::contact_name_check(taken),
        )
        .wait()
    {
        TextAnswer::Done(n) => Some(n),
        _ => None,
    }
}

/// New contact, step 2: the data partition's free space, when it can be
/// read and some size fits; otherwise the owner is told why no pad can be
/// made.
fn free_space_for_pad<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) -> Option<u64> {
    let free = match (ctx.opts.free_space)(ctx.service.store().dir()) {
        Ok(f) => f,
        Err(e) => {
            trouble(
                &ctx.ui,
                "new-contact-error",
                "Cannot read the free space",
                &format!("The data partition's free space cannot be read: {e}."),
                false,
            );
            return None;
        }
    };
    if sizes_that_fit(&ctx.opts, free).is_empty() {
        trouble(
            &ctx.ui,
            "new-contact-full",
            "No room for a new pad",
            &format!(
                "The data partition has {} free and the device keeps {} free. No pad fits: \
                 remove a contact you no longer need to make room.",
                otc_ui::format::bytes(free),
                otc_ui::format::bytes(ctx.opts.reserve)
            ),
            false,
        );
        return None;
    }
    Some(free)
}

/// New contact, step 3: the hardware random source's rate (for the time
/// each size takes), or the owner is told that no pad can be made without
/// it.
fn hwrng_rate<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) -> Option<f64> {
    let hw = &ctx.opts.hwrng;
    match measure_rate(hw) {
        Ok(r) => Some(r),
        Err(e) => {
            trouble(
                &ctx.ui,
                "new-contact-error",
                "No hardware random source",
                &format!(
                    "Pads are made only with the hardware random source {}, and it cannot be \
                     read ({e}). Nothing was made.",
                    hw.display()
                ),
                false,
            );
            None
        }
    }
}

/// New contact, step 4: the owner picks one of the sizes that fit.
fn choose_size<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    free: u64,
    rate: f64,
) -> Option<u64> {
    let sizes = sizes_that_fit(&ctx.opts, free);
    let i = step(
        &ctx.ui,
        ChoiceRequest {
            screen: "new-contact-size".into(),
            title: format!("Pad size for {name}"),
            lines: vec![format!(
                "{} free; {} stays free for the device.",
                otc_ui::format::bytes(free),
                otc_ui::format::bytes(ctx.opts.reserve)
            )],
            choices: sizes.iter().map(|s| size_choice(*s, rate)).collect(),
            cancel: Some("Cancel".into()),
            ..Default::default()
        },
    )?;
    Some(sizes[i])
}

/// New contact, step 5: the owner taps Make.
fn confirm_make<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    size: u64,
) -> bool {
    step(
        &ctx.ui,
        ChoiceRequest {
            screen: "new-contact-make".into(),
            title: format!("Make a pad for {name}"),
            lines: vec![format!(
                "{} from the hardware random source {} and the kernel's, health-tested.",
                size_label(size),
                ctx.opts.hwrng.display()
            )],
            choices: vec!["Make".into()],
            cancel: Some("Cancel".into()),
            ..Default::default()
        },
    )
    .is_some()
}

/// New contact, step 6: makes the pad (the broker held by the caller),
/// with a progress screen whose Cancel stops it.
fn make<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    size: u64,
) -> Result<pairing::Made, PadError> {
    let ui = &ctx.ui;
    ctx.flows.cancel.store(false, Ordering::SeqCst);
    let title = format!("Making a pad for {name}");
    let started = Instant::now();
    let mut shown = 0u64;
    let made = pairing::make_pad(
        ctx.service.store(),
        name,
        size,
        Some(&ctx.opts.hwrng),
        &mut |done, total| {
            if done == total || done - shown >= (total / 100).max(1) {
                shown = done;
                ui.show_progress(progress_view(&title, done, total, started));
            }
            !ctx.flows.cancel.load(Ordering::SeqCst)
        },
    );
    ui.hide_progress();
    made
}

/// New contact, step 6 failed: says that nothing was kept, and why.
fn say_not_made<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>, e: PadError) {
    match e {
        PadError::Cancelled => ctx
            .ui
            .toast(otc_ui::Toast::info("Cancelled: nothing was kept")),
        e => {
            trouble(
                &ctx.ui,
                "new-contact-error",
                "The pad was not made",
                &format!("{e}. Nothing was kept."),
                false,
            );
        }
    }
}

/// New contact, step 7: exports to the stick until it worked (the code)
/// or the owner gives up (then the new pad is erased). The broker's hold
/// ends here either way.
fn export_until_done<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    pad_id: &str,
    hold: crate::confirm::Hold<'_>,
) -> Option<PairingCode> {
    let ui = &ctx.ui;
    let code = loop {
        let tapped = step(
            ui,
            ChoiceRequest {
                screen: "new-contact-export".into(),
                title: format!("Export for {name}"),
                lines: vec![
                    "Insert a USB stick, then tap Export. It gets your partner's half of the \
                     pad, sealed with a code that only this screen shows."
                        .into(),
                ],
                choices: vec!["Export".into()],
                cancel: Some("Cancel".into()),
                ..Default::default()
            },
        );
        if tapped.is_some() {
            match export(ctx, name, pad_id) {
                Ok(code) => break Some(code),
                Err(what) => {
                    if trouble(ui, "new-contact-error", "The export failed", &what, true) {
                        continue;
                    }
                }
            }
        }
        break None;
    };
    drop(hold);
    if code.is_none() {
        undo_made(ctx, name);
        ui.toast(otc_ui::Toast::info("Cancelled: the new pad was erased"));
    }
    code
}

/// New contact, step 8: shows the pairing code until the partner has
/// imported the export (true) or the owner cancels (false). The code is
/// dropped when this step ends.
fn show_code<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    code: PairingCode,
) -> bool {
    let shown = code.groups().replace('-', " ");
    let taken = step(
        &ctx.ui,
        ChoiceRequest {
            screen: "new-contact-code".into(),
            title: format!("Pairing code for {name}"),
            lines: vec![
                "Remove the stick. Your partner imports the file and types this code; it is \
                 shown only here, until they have imported it."
                    .into(),
            ],
            code: Some(shown),
            choices: vec!["Partner has imported it".into()],
            cancel: Some("Cancel".into()),
            ..Default::default()
        },
    );
    drop(code);
    taken.is_some()
}

/// The words for an export or import that the stick's removal cut short.
pub const STICK_PULLED_EXPORT: &str = "The USB stick was removed while the export was written. \
     What is on it is incomplete and cannot be imported, and the next try replaces it. Insert \
     the stick again and tap Try again.";
/// The same for an import.
pub const STICK_PULLED_IMPORT: &str = "The USB stick was removed while the export was read. \
     Nothing was written on this device. Insert the stick again and import once more.";

/// Whether `e` is an I/O error a pulled (or failed) stick gives: EIO,
/// ENODEV, ENXIO, ENOMEDIUM ([`crate::stick_mount::is_removal`]).
fn stick_gone(e: &PadError) -> bool {
    match e {
        PadError::Io { source, .. } => source
            .raw_os_error()
            .is_some_and(|n| crate::stick_mount::is_removal(nix::errno::Errno::from_raw(n))),
        _ => false,
    }
}

/// Erases what an earlier try for this pad left on the stick: the
/// temporary file of a write cut short, or a whole file whose code was
/// never shown (its try failed while syncing). Both are named after this
/// device's owner and this pad, so nothing else is touched.
fn clear_earlier_try(out: &Path) -> Result<(), String> {
    let tmp = crate::pad::export::temp_path(out);
    for stale in [out, tmp.as_path()] {
        if std::fs::symlink_metadata(stale).is_ok() {
            crate::pad::durable::shred(&crate::pad::vfs::RealFs, stale, &mut |_, _| {}).map_err(
                |e| {
                    format!(
                        "An earlier try left {} on the USB stick and it cannot be erased ({e}). \
                         Delete it on a computer, or use another stick.",
                        stale
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// Mounts the stick and writes the sealed export; returns the code. Every
/// failure is said in words, and nothing on the stick can be imported
/// (the code of a failed try is never shown). A stick pulled out stops the
/// write at the next chunk ([`STICK_PULLED_EXPORT`]).
fn export<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    pad_id: &str,
) -> Result<PairingCode, String> {
    let stick = ctx
        .opts
        .stick
        .as_ref()
        .ok_or("This device has no USB stick port configured.")?;
    let mounted = stick.mount(Mode::ReadWrite).map_err(|e| e.to_string())?;
    let out = mounted.dir().join(export_name(&ctx.owner, pad_id));
    clear_earlier_try(&out)?;
    let code = PairingCode::generate().map_err(|e| e.to_string())?;
    let title = format!("Exporting for {name}");
    let started = Instant::now();
    let mut pulled = false;
    let res = pairing::export_sealed_with(
        ctx.service.store(),
        name,
        &out,
        &code,
        &mut |done, total| {
            if !mounted.still_there() {
                pulled = true;
                return false;
            }
            ctx.ui
                .show_progress(progress_view(&title, done, total, started));
            true
        },
    );
    ctx.ui.hide_progress();
    let pulled = pulled || !mounted.still_there() || res.as_ref().is_err_and(stick_gone);
    // Sync and unmount before "Remove the stick": a stick pulled out
    // before its files were written out is an error, not a success.
    let finished = mounted.finish();
    match (res, finished) {
        (Ok(_), Ok(())) => Ok(code),
        _ if pulled => Err(STICK_PULLED_EXPORT.into()),
        (Err(e), _) => Err(format!(
            "Writing to the USB stick failed: {e}. What is on it cannot be imported. Check the \
             stick (inserted, not full, not write-protected) and tap Try again."
        )),
        (Ok(_), Err(e)) => Err(format!(
            "{e}. What is on the stick cannot be imported (its code is not shown); tap Try \
             again."
        )),
    }
}

/// What a step of the import that may be tried again came to.
enum Attempt<T> {
    /// It worked.
    Done(T),
    /// The owner tapped Try again.
    Again,
    /// The owner cancelled, or was told why the import cannot go on.
    Stop,
}

/// The importer's side: stick → file → code → name → Import → erase the
/// file → fingerprint.
fn import_contact<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) {
    let ui = &ctx.ui;
    let Some(stick) = ctx.opts.stick.clone() else {
        trouble(
            ui,
            "import-error",
            "No USB stick port",
            "This device has no USB stick port configured.",
            false,
        );
        return;
    };
    let Some((file, header)) = pick_export(ctx, &*stick) else {
        return;
    };
    let (name, done) = loop {
        match import_once(ctx, &*stick, &file, &header) {
            Attempt::Done(x) => break x,
            Attempt::Again => continue,
            Attempt::Stop => return,
        }
    };
    ctx.service.audit(Event::PadImported {
        contact: name.clone(),
        pad_id: done.pad_id.clone(),
        bytes: done.size,
    });
    (ctx.refresh)();
    let about_stick = erase_export(&*stick, &file);
    step(
        ui,
        ChoiceRequest {
            screen: "import-done".into(),
            title: format!("Imported {name}"),
            lines: vec![
                about_stick,
                "Remove the stick. Compare with your partner's screen: the same \
                 fingerprint on both."
                    .into(),
            ],
            code: Some(done.fingerprint.clone()),
            choices: vec!["Done".into()],
            ..Default::default()
        },
    );
}

/// Import, step 1: the stick and the export on it, asked again after
/// each trouble the owner wants to retry; `None` when the owner cancels.
fn pick_export<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    stick: &dyn Stick,
) -> Option<(PathBuf, SealedHeader)> {
    loop {
        let inserted = step(
            &ctx.ui,
            ChoiceRequest {
                screen: "import-insert".into(),
                title: "Import a contact".into(),
                lines: vec![
                    "Insert the USB stick with your partner's export, then tap Continue.".into(),
                ],
                choices: vec!["Continue".into()],
                cancel: Some("Cancel".into()),
                ..Default::default()
            },
        );
        inserted?;
        let (files, dir) = match list_exports(ctx, stick) {
            Attempt::Done(x) => x,
            Attempt::Again => continue,
            Attempt::Stop => return None,
        };
        let path = choose_export(ctx, &files, &dir)?;
        match probe_export(ctx, stick, &path) {
            Attempt::Done(h) => return Some((path, h)),
            Attempt::Again => continue,
            Attempt::Stop => return None,
        }
    }
}

/// Import, step 1a: the export files on the stick and its directory, or
/// the trouble (no stick, no export on it).
fn list_exports<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    stick: &dyn Stick,
) -> Attempt<(Vec<String>, PathBuf)> {
    let listed = stick
        .mount(Mode::ReadOnly)
        .and_then(|m| stick::export_files(&m).map(|f| (f, m.dir().to_path_buf())));
    let retry = match listed {
        Ok((f, _)) if f.is_empty() => trouble(
            &ctx.ui,
            "import-error",
            "No export on the stick",
            "The stick holds no export file (a name ending in .otcpad).",
            true,
        ),
        Ok(x) => return Attempt::Done(x),
        Err(e) => trouble(
            &ctx.ui,
            "import-error",
            "No USB stick",
            &e.to_string(),
            true,
        ),
    };
    if retry { Attempt::Again } else { Attempt::Stop }
}

/// Import, step 1b: the owner picks one of the (first) export files.
fn choose_export<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    files: &[String],
    dir: &Path,
) -> Option<PathBuf> {
    let shown: Vec<String> = files
        .iter()
        .take(otc_ui::choice::MAX_CHOICES)
        .cloned()
        .collect();
    let i = step(
        &ctx.ui,
        ChoiceRequest {
            screen: "import-files".into(),
            title: "Which export?".into(),
            lines: vec![format!("{} on the stick.", files.len())],
            choices: shown.clone(),
            cancel: Some("Cancel".into()),
            ..Default::default()
        },
    )?;
    Some(dir.join(&shown[i]))
}

/// Import, step 1c: the chosen file's header, if it is a sealed export;
/// a plain (old) export is refused for good.
fn probe_export<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    stick: &dyn Stick,
    path: &Path,
) -> Attempt<SealedHeader> {
    match stick
        .mount(Mode::ReadOnly)
        .map_err(|e| e.to_string())
        .and_then(|_m| pairing::probe(path).map_err(|e| e.to_string()))
    {
        Ok(ExportKind::Sealed(h)) => Attempt::Done(h),
        Ok(ExportKind::Plain) => {
            trouble(
                &ctx.ui,
                "import-error",
                "Not a sealed export",
                "This file is a plain export of an older version, which the device no \
                 longer accepts. Ask your partner to make a new contact.",
                false,
            );
            Attempt::Stop
        }
        Err(e) => {
            if trouble(&ctx.ui, "import-error", "Cannot read the export", &e, true) {
                Attempt::Again
            } else {
                Attempt::Stop
            }
        }
    }
}

/// Import, steps 2 to 4, once: the code, the name, the owner's Import,
/// then the import itself; `Again` after a wrong code the owner wants to
/// type again.
fn import_once<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    stick: &dyn Stick,
    file: &Path,
    header: &SealedHeader,
) -> Attempt<(String, ImportSummary)> {
    let Some(code) = ask_code(ctx) else {
        return Attempt::Stop;
    };
    let Some(name) = ask_name(ctx) else {
        return Attempt::Stop;
    };
    if !confirm_import(ctx, &name, file, header) {
        return Attempt::Stop;
    }
    let Some(hold) = ctx.service.broker().hold() else {
        ctx.ui.toast(otc_ui::Toast::error(
            "The device is busy with a request. Nothing was imported; try again.",
        ));
        return Attempt::Stop;
    };
    let (res, pulled) = import_file(ctx, stick, file, &code, &name);
    drop(hold);
    drop(code);
    match judge_import(ctx, res, pulled) {
        Attempt::Done(done) => Attempt::Done((name, done)),
        Attempt::Again => Attempt::Again,
        Attempt::Stop => Attempt::Stop,
    }
}

/// Import, step 2: the pairing code from the maker's screen.
fn ask_code<S: Screen<Prompt = ApprovalPrompt> + 'static>(ctx: &Ctx<S>) -> Option<PairingCode> {
    match ctx
        .ui
        .ask_text(
            TextRequest::pairing_code(),
            Box::new(|t: &str| PairingCode::parse(t).map(|_| ()).map_err(|e| e.to_string())),
        )
        .wait()
    {
        TextAnswer::Done(t) => PairingCode::parse(&t).ok(),
        _ => None,
    }
}

/// Import, step 3 (after the name): the owner taps Import.
fn confirm_import<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    name: &str,
    file: &Path,
    header: &SealedHeader,
) -> bool {
    step(
        &ctx.ui,
        ChoiceRequest {
            screen: "import-confirm".into(),
            title: format!("Import {name}"),
            lines: vec![format!(
                "{} · a pad of {}",
                file.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                otc_ui::format::bytes(header.size)
            )],
            choices: vec!["Import".into()],
            cancel: Some("Cancel".into()),
            ..Default::default()
        },
    )
    .is_some()
}

/// Import, step 4: imports the export from the read-only stick (the
/// broker held by the caller), with a progress screen whose Cancel stops
/// it. Also says whether the stick was pulled out meanwhile.
fn import_file<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    stick: &dyn Stick,
    file: &Path,
    code: &PairingCode,
    name: &str,
) -> (Result<ImportSummary, Error>, bool) {
    let ui = &ctx.ui;
    ctx.flows.cancel.store(false, Ordering::SeqCst);
    let title = format!("Importing {name}");
    let started = Instant::now();
    let mut pulled = false;
    let store = ctx.service.store();
    let res = stick
        .mount(Mode::ReadOnly)
        .map_err(|e| Error::io("the USB stick", std::io::Error::other(e.to_string())))
        .and_then(|m| {
            let r = pairing::import_sealed_with(store, file, code, name, &mut |done, total| {
                if !m.still_there() {
                    pulled = true;
                    return false;
                }
                ui.show_progress(progress_view(&title, done, total, started));
                !ctx.flows.cancel.load(Ordering::SeqCst)
            });
            pulled |= r.as_ref().is_err_and(stick_gone);
            r.map_err(Error::from)
        });
    ui.hide_progress();
    (res, pulled)
}

/// Import, step 4's outcome: the summary, or the owner told what went
/// wrong (a wrong code may be typed again).
fn judge_import<S: Screen<Prompt = ApprovalPrompt> + 'static>(
    ctx: &Ctx<S>,
    res: Result<ImportSummary, Error>,
    pulled: bool,
) -> Attempt<ImportSummary> {
    let ui = &ctx.ui;
    match res {
        Ok(d) => return Attempt::Done(d),
        Err(_) if pulled => {
            trouble(
                ui,
                "import-error",
                "The USB stick was removed",
                STICK_PULLED_IMPORT,
                false,
            );
        }
        Err(Error::Pad(PadError::WrongPairingCode { .. })) => {
            if trouble(
                ui,
                "import-error",
                "Wrong code",
                "This code does not open the export. Nothing was written. Check the code \
                 on your partner's screen and type it again.",
                true,
            ) {
                return Attempt::Again;
            }
        }
        Err(Error::Pad(PadError::Cancelled)) => {
            ui.toast(otc_ui::Toast::info("Cancelled: nothing was kept"));
        }
        Err(e) => {
            trouble(
                ui,
                "import-error",
                "Not imported",
                &format!("{e}. Nothing was written."),
                false,
            );
        }
    }
    Attempt::Stop
}

/// Import, step 5: overwrites and deletes the imported export on the
/// stick (mounted read-write for this only); returns what to tell the
/// owner about the stick.
fn erase_export(stick: &dyn Stick, file: &Path) -> String {
    let erased = stick
        .mount(Mode::ReadWrite)
        .map_err(|e| e.to_string())
        .and_then(|_m| {
            crate::pad::durable::shred(&crate::pad::vfs::RealFs, file, &mut |_, _| {})
                .map_err(|e| e.to_string())
        });
    match erased {
        Ok(()) => "The export file was overwritten and deleted from the stick. Its flash \
                   memory may keep old blocks; they are useless without the code."
            .to_string(),
        Err(e) => format!(
            "The export file could not be erased from the stick ({e}): delete it there. \
             Without the code it is useless."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_buttons_start_with_the_size_in_binary_units() {
        assert_eq!(size_label(64 << 20), "64 MiB");
        assert_eq!(size_label(1 << 30), "1 GiB");
        assert_eq!(size_label(64 << 10), "64 KiB");
        let c = size_choice(64 << 20, (1 << 20) as f64);
        assert!(
            c.starts_with("64 MiB · about 578,524 messages of 100 bytes · ~"),
            "{c}"
        );
        assert!(c.ends_with("1 min 04 s"), "{c}");
    }

    #[test]
    fn only_sizes_that_leave_the_reserve_are_offered() {
        let o = PairingOptions {
            reserve: 100,
            sizes: vec![10, 100, 1000, 2000, 3000, 4000],
            ..Default::default()
        };
        assert_eq!(sizes_that_fit(&o, 150), vec![10]);
        assert_eq!(sizes_that_fit(&o, 100), Vec::<u64>::new());
        assert_eq!(sizes_that_fit(&o, 3100), vec![1000, 2000, 3000]);
        assert_eq!(sizes_that_fit(&o, 0), Vec::<u64>::new());
    }

    #[test]
    fn the_errors_of_a_pulled_stick_are_told_as_such() {
        use nix::errno::Errno;
        for e in [Errno::EIO, Errno::ENODEV, Errno::ENXIO, Errno::ENOMEDIUM] {
            let err = PadError::io("cannot write", std::io::Error::from_raw_os_error(e as i32));
            assert!(stick_gone(&err), "{e}");
        }
        for e in [Errno::ENOSPC, Errno::EROFS, Errno::ENOENT] {
            let err = PadError::io("cannot write", std::io::Error::from_raw_os_error(e as i32));
            assert!(!stick_gone(&err), "{e}");
        }
        assert!(!stick_gone(&PadError::Cancelled));
    }

    #[test]
    fn export_names_are_safe_file_names() {
        assert_eq!(
            export_name("Alice", "3f9a0c12ffff"),
            "Alice-3f9a0c12.otcpad"
        );
        assert_eq!(export_name("../.x y", "ab"), "xy-ab.otcpad");
        assert_eq!(export_name("", "abcdef0123"), "pad-abcdef01.otcpad");
    }
}
