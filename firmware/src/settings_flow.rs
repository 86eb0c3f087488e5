//! **Settings** on the device's screen (issue 18), from the About screen:
//! network address, rotation, touch check, prompt timeout, idle lock,
//! change passphrase, **Wipe device**. Steps are
//! [`otc_ui::UiHandle::ask_choice`] (at most three buttons each, so the
//! settings are grouped in three pages) and the keyboard. Every change is
//! written to the sealed settings file and audited
//! ([`crate::audit::Event::SettingChanged`]; a passphrase is never
//! written, the entry says `changed`).
//!
//! Decisions:
//! - a plain data directory (no passphrase) has no Settings: its settings
//!   are `otc.toml`'s; the step says so;
//! - the idle lock applies at once; the prompt timeout from the next
//!   start (the broker's is fixed while it runs), and the step says so;
//! - the rotation and the touch correction apply at once (the screen turns
//!   as the step says, no restart) and are written to the clear
//!   `DIR/device.toml` ([`crate::clear_settings`]: the lock screen needs
//!   them), as is the address; the touch check fits a new correction from
//!   three taps ([`crate::first_boot::touch_check`]), or says why not and
//!   keeps the one before;
//! - a new address applies from the next start (init gives it to eth0
//!   before it starts otc-device: `otc-device network-address`), and the
//!   step says so: the endpoint's socket is bound to eth0's address, and
//!   moving it while the device runs (a second accept loop, the old one
//!   stopped) is not done yet;
//! - **Wipe device** takes the passphrase (a wrong one counts towards the
//!   key's failure limit like the lock screen's), then locks the endpoint
//!   and shreds the key file and every file of the data directory
//!   ([`vault::wipe`]); nothing can be audited after that (the log is
//!   gone with the rest), so the wipe is audited just before it.

use crate::audit::Event;
use crate::first_boot::{address_check, strength_line};
use crate::lock::{LockCtx, Settings};
use crate::pad::vault::{self, MasterKey};
use crate::pad::vfs::RealFs;
use otc_ui::{ChoiceRequest, TextKind, TextRequest, Toast};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the settings steps need: the key (the settings are sealed with
/// it), the settings, and how to audit and lock.
pub struct SettingsCtx {
    pub lock: Arc<LockCtx>,
    /// `None`: a plain data directory.
    pub key: Option<Arc<MasterKey>>,
    pub settings: Mutex<Option<Settings>>,
    pub audit: Arc<dyn Fn(Event) + Send + Sync>,
    /// Closes the endpoint (before a wipe).
    pub close: Arc<dyn Fn() + Send + Sync>,
    running: AtomicBool,
}

impl SettingsCtx {
    pub fn new(
        lock: Arc<LockCtx>,
        key: Option<Arc<MasterKey>>,
        settings: Option<Settings>,
        audit: Arc<dyn Fn(Event) + Send + Sync>,
        close: Arc<dyn Fn() + Send + Sync>,
    ) -> SettingsCtx {
        SettingsCtx {
            lock,
            key,
            settings: Mutex::new(settings),
            audit,
            close,
            running: AtomicBool::new(false),
        }
    }
}

/// Starts the settings steps on a thread of their own (unless they run).
pub fn start(ctx: &Arc<SettingsCtx>) {
    if ctx.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let c = ctx.clone();
    let spawned = ctx.lock.spawn_flow("otc-settings", move || {
        run(&c);
        c.running.store(false, Ordering::SeqCst);
    });
    if spawned.is_err() {
        ctx.running.store(false, Ordering::SeqCst);
    }
}

fn summary(s: &Settings, c: &crate::clear_settings::ClearSettings) -> Vec<String> {
    let idle = match s.idle_lock() {
        Some(d) => otc_ui::format::duration(d),
        None => "never".into(),
    };
    vec![
        format!(
            "Prompt timeout {} · idle lock {idle}",
            otc_ui::format::duration(s.prompt_timeout())
        ),
        format!(
            "Address {} · screen {}",
            c.address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "from otc.toml".into()),
            if c.rotation == 180 {
                "upside down"
            } else {
                "right way up"
            }
        ),
    ]
}

fn run(ctx: &SettingsCtx) {
    let l = &ctx.lock;
    let (Some(key), Some(mut s)) = (
        ctx.key.clone(),
        ctx.settings.lock().ok().and_then(|g| g.clone()),
    ) else {
        l.step(ChoiceRequest {
            screen: "settings".into(),
            title: "Settings".into(),
            warning: Some(
                "This card is not encrypted and has no passphrase: its settings are in \
                 otc.toml. Set the device up on its own screen to use Settings."
                    .into(),
            ),
            choices: vec!["Back".into()],
            ..Default::default()
        });
        return;
    };
    loop {
        let Some(page) = l.step(ChoiceRequest {
            screen: "settings".into(),
            title: "Settings".into(),
            lines: summary(&s, &l.clear()),
            choices: vec![
                "Network and screen".into(),
                "Timeouts".into(),
                "Passphrase and wipe".into(),
            ],
            cancel: Some("Back".into()),
            ..Default::default()
        }) else {
            return;
        };
        if page == 0 {
            // Saved in the clear file by the step itself.
            if let Some((setting, value)) = network_and_screen(l) {
                (ctx.audit)(Event::SettingChanged {
                    setting: setting.to_string(),
                    value: value.clone(),
                });
                l.ui()
                    .toast(Toast::info(format!("Saved: {setting} = {value}")));
            }
            continue;
        }
        let changed: Option<(&str, String)> = match page {
            1 => timeouts(l, &mut s),
            _ => {
                if passphrase_and_wipe(ctx, &key) {
                    return;
                }
                None
            }
        };
        let Some((setting, value)) = changed else {
            continue;
        };
        match s.save(l.dir(), &key) {
            Ok(()) => {
                if let Ok(mut g) = ctx.settings.lock() {
                    *g = Some(s.clone());
                }
                if setting == "idle lock" {
                    l.set_idle(s.idle_lock());
                }
                (ctx.audit)(Event::SettingChanged {
                    setting: setting.to_string(),
                    value: value.clone(),
                });
                l.ui()
                    .toast(Toast::info(format!("Saved: {setting} = {value}")));
            }
            Err(e) => l
                .ui()
                .toast(Toast::error(format!("The setting was not saved: {e}"))),
        }
    }
}

/// The network and screen page: each change applied at once and written
/// to `DIR/device.toml`; what changed, for the audit, or `None` (nothing
/// changed, or it could not be written: the screen said so).
fn network_and_screen(l: &LockCtx) -> Option<(&'static str, String)> {
    let i = l.step(ChoiceRequest {
        screen: "settings-network".into(),
        title: "Network and screen".into(),
        choices: vec![
            "Network address".into(),
            "Rotation".into(),
            "Touch check".into(),
        ],
        cancel: Some("Back".into()),
        ..Default::default()
    })?;
    let before = l.clear();
    let mut new = before.clone();
    let changed = match i {
        0 => {
            let now = before.address.map(|a| a.to_string()).unwrap_or_default();
            let t = l.text(
                TextRequest::of(TextKind::NetworkAddress, &now, 15),
                Box::new(|t: &str| address_check(t).map(|_| ())),
            )?;
            let a = address_check(&t).ok()?;
            new.address = Some(a);
            ("network address", a.to_string())
        }
        1 => {
            let r = l.step(ChoiceRequest {
                screen: "settings-rotation".into(),
                title: "Rotation".into(),
                lines: vec![
                    "Is this text the right way up? Upside down turns the screen at once.".into(),
                ],
                choices: vec!["Right way up".into(), "Upside down".into()],
                cancel: Some("Back".into()),
                ..Default::default()
            })?;
            if r == 0 {
                return None;
            }
            new.rotation = (before.rotation + 180) % 360;
            ("rotation", format!("{}°", new.rotation))
        }
        _ => {
            let m = crate::first_boot::touch_check(l)??;
            new.touch = Some(m);
            (
                "touch correction",
                format!("fitted ({:+.0}, {:+.0} px at the centre)", m.c, m.f),
            )
        }
    };
    match l.apply_clear(new, true) {
        Ok(()) if changed.0 == "network address" => {
            // Said on a step of its own (a toast would be gone with the
            // next step): when it applies.
            let now = l
                .opts()
                .address_now
                .map(|a| format!(" Until then it answers on {a}."))
                .unwrap_or_default();
            l.step(ChoiceRequest {
                screen: "settings-address-saved".into(),
                title: "Network address".into(),
                lines: vec![format!(
                    "Saved. The device takes {} when it next starts: switch it off and on.{now}",
                    changed.1
                )],
                choices: vec!["OK".into()],
                ..Default::default()
            });
            Some(changed)
        }
        Ok(()) => Some(changed),
        Err(e) => {
            // Back to what is on disk and was applied before.
            let _ = l.apply_clear(before, false);
            l.ui()
                .toast(Toast::error(format!("The setting was not saved: {e}")));
            None
        }
    }
}

fn seconds_check(min: u64, max: u64, zero_ok: bool) -> otc_ui::TextCheck {
    Box::new(move |t: &str| match t.trim().parse::<u64>() {
        Ok(0) if zero_ok => Ok(()),
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ if zero_ok => Err(format!("0 (never), or {min} to {max} seconds.")),
        _ => Err(format!("{min} to {max} seconds.")),
    })
}

fn timeouts(l: &LockCtx, s: &mut Settings) -> Option<(&'static str, String)> {
    let i = l.step(ChoiceRequest {
        screen: "settings-timeouts".into(),
        title: "Timeouts".into(),
        lines: summary(s, &l.clear()),
        choices: vec!["Prompt timeout".into(), "Idle lock".into()],
        cancel: Some("Back".into()),
        ..Default::default()
    })?;
    if i == 0 {
        let t = l.text(
            TextRequest::of(TextKind::Seconds, &s.prompt_timeout_seconds.to_string(), 3),
            seconds_check(5, 600, false),
        )?;
        s.prompt_timeout_seconds = t.trim().parse().ok()?;
        Some((
            "prompt timeout",
            format!("{} s (from the next start)", s.prompt_timeout_seconds),
        ))
    } else {
        let t = l.text(
            TextRequest::of(TextKind::Seconds, &s.idle_lock_seconds.to_string(), 5),
            seconds_check(15, 86_400, true),
        )?;
        s.idle_lock_seconds = t.trim().parse().ok()?;
        Some(("idle lock", format!("{} s", s.idle_lock_seconds)))
    }
}

/// Returns true when the device was wiped (the settings end).
fn passphrase_and_wipe(ctx: &SettingsCtx, key: &Arc<MasterKey>) -> bool {
    let _ = key;
    let l = &ctx.lock;
    let Some(i) = l.step(ChoiceRequest {
        screen: "settings-passphrase".into(),
        title: "Passphrase and wipe".into(),
        choices: vec!["Change passphrase".into(), "Wipe device".into()],
        cancel: Some("Back".into()),
        ..Default::default()
    }) else {
        return false;
    };
    if i == 0 {
        change_passphrase(ctx);
        return false;
    }
    let Some(_) = l.step(ChoiceRequest {
        screen: "settings-wipe".into(),
        title: "Wipe device".into(),
        lines: vec!["Type the passphrase next to wipe.".into()],
        warning: Some(
            "This destroys the key and every pad on this device, for good. Messages sealed \
             with these pads can never be opened again, here or anywhere. Your contacts must \
             make new pads with you."
                .into(),
        ),
        choices: vec!["Wipe device".into()],
        cancel: Some("Cancel".into()),
        ..Default::default()
    }) else {
        return false;
    };
    let Some(pass) = l.text(
        TextRequest::passphrase(TextKind::Passphrase),
        Box::new(|_: &str| Ok(())),
    ) else {
        return false;
    };
    let pass = zeroize::Zeroizing::new(pass);
    let max = l.opts().max_failures.max(1);
    if let Err(e) = vault::unlock(&RealFs, l.dir(), pass.as_bytes(), max) {
        l.ui().toast(Toast::error(format!(
            "Not wiped: {e}. Nothing was changed."
        )));
        return false;
    }
    (ctx.audit)(Event::SettingChanged {
        setting: "wipe device".into(),
        value: "wiped".into(),
    });
    (ctx.close)();
    let done = vault::wipe(&RealFs, l.dir());
    let (title, warning) = match done {
        Ok(()) => (
            "Device wiped",
            "The key and every pad are destroyed. Restart the device to set it up again."
                .to_string(),
        ),
        Err(e) => (
            "The wipe did not finish",
            format!("{e}. The device stays locked; restart it and wipe again."),
        ),
    };
    l.step(ChoiceRequest {
        screen: "wiped".into(),
        title: title.into(),
        warning: Some(warning),
        ..Default::default()
    });
    true
}

fn change_passphrase(ctx: &SettingsCtx) {
    let l = &ctx.lock;
    let Some(old) = l.text(
        TextRequest::passphrase(TextKind::Passphrase),
        Box::new(|p: &str| {
            if p.is_empty() {
                Err("Type the passphrase you have now.".into())
            } else {
                Ok(())
            }
        }),
    ) else {
        return;
    };
    let old = zeroize::Zeroizing::new(old);
    let Some(new) = l.text(
        TextRequest::passphrase(TextKind::NewPassphrase),
        Box::new(|p: &str| match vault::passphrase_strength(p).refused {
            Some(why) => Err(why),
            None => Ok(()),
        }),
    ) else {
        return;
    };
    let new = zeroize::Zeroizing::new(new);
    let bits = vault::passphrase_strength(&new).bits;
    let want = new.clone();
    let again = l.text(
        TextRequest::passphrase(TextKind::RepeatPassphrase),
        Box::new(move |p: &str| {
            if p == want.as_str() {
                Ok(())
            } else {
                Err("Not the same passphrase.".into())
            }
        }),
    );
    if again.map(zeroize::Zeroizing::new).is_none() {
        return;
    }
    match vault::change_passphrase(
        &RealFs,
        l.dir(),
        old.as_bytes(),
        new.as_bytes(),
        &l.opts().kdf,
    ) {
        Ok(()) => {
            (ctx.audit)(Event::SettingChanged {
                setting: "passphrase".into(),
                value: "changed".into(),
            });
            l.ui().toast(Toast::info(format!(
                "Passphrase changed. {}",
                strength_line(bits)
            )));
        }
        Err(e) => l
            .ui()
            .toast(Toast::error(format!("The passphrase was not changed: {e}"))),
    }
}
