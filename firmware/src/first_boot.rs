//! The first boot on the screen (issue 18): a device with no key file and
//! no owner walks the owner through its name, a passphrase (twice, its
//! strength shown, a weak one refused with the reason), the network
//! address on the cable, the display's rotation and a touch check, then
//! makes the key file ([`vault::create`]) and the sealed settings file
//! ([`Settings`]) and opens the store: the home screen follows.
//!
//! Decisions:
//! - the passphrase's strength is the pad crate's own estimate
//!   ([`vault::passphrase_strength`]); the keyboard refuses a weak one at
//!   **Done** with its reason, and the next step shows the estimate;
//! - rotation offers 0° and 180° only: the screens are laid out for a
//!   landscape panel, and a panel mounted the other way up is the case
//!   that happens;
//! - the rotation applies at once (the touch step after it is drawn the
//!   chosen way up): `otc_ui::Orientation`, on every display and touch
//!   source, the emulator page included;
//! - the touch step shows three targets in turn (**Top**, **Middle**,
//!   **Bottom**, not on one line: [`TARGETS`]); each tap counts wherever
//!   it lands, and the correction that takes the three taps onto the
//!   three targets (an affine map in panel pixels, on top of `otc.toml`'s
//!   calibration: `otc_ui::orient::fit`) applies at once. Taps that lie
//!   on a line, are mirrored, or are so far off that the fit would
//!   stretch the panel by more than 2× or move a corner by more than half
//!   the screen are refused with the reason, the correction before is
//!   kept, and the owner may try again or keep it;
//! - the rotation, the touch correction and the address are needed
//!   before unlock and are not secret, so they go to the clear
//!   `DIR/device.toml` ([`crate::clear_settings`]), written once the key
//!   file is made (a directory whose old key was destroyed is shredded
//!   first, this file with it); the sealed settings keep the owner's
//!   name and the timeouts;
//! - the address step offers the address eth0 has now (otc.toml's), so
//!   that **Done** changes nothing; another one applies from the next
//!   start (init gives it to eth0 before it starts otc-device: see
//!   [`crate::clear_settings::eth0_address`]).

use crate::clear_settings::ClearSettings;
use crate::lock::{LockCtx, Settings, Unlock};
use crate::pad::vault;
use crate::pad::vfs::RealFs;
use otc_ui::{Affine, Target};
use otc_ui::{ChoiceRequest, ProgressView, TextKind, TextRequest};
use std::net::Ipv4Addr;

/// The owner's name: 1 to 40 characters, no control characters, not
/// only spaces.
pub fn owner_check(name: &str) -> Result<(), String> {
    let n = name.trim();
    if n.is_empty() {
        return Err("Type a name first.".into());
    }
    if n.chars().count() > 40 {
        return Err("At most 40 characters.".into());
    }
    if n.chars().any(char::is_control) {
        return Err("Letters, digits, spaces and marks only.".into());
    }
    Ok(())
}

/// The address on the cable: four numbers 0-255 with dots, not 0.0.0.0,
/// a broadcast, multicast or loopback address.
pub fn address_check(text: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = text
        .trim()
        .parse()
        .map_err(|_| "Four numbers from 0 to 255 with dots, e.g. 192.168.7.2.".to_string())?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err(format!("{a} cannot be the device's address."));
    }
    Ok(a)
}

/// What the strength step says about a passphrase of `bits` bits.
pub fn strength_line(bits: f64) -> String {
    format!("Strength: about {} bits (estimated).", bits.round() as u64)
}

/// The touch step's targets: label, and centre in thousandths of the
/// screen's width and height. Spread over the screen and not on one line,
/// so three taps fix both directions.
pub const TARGETS: [(&str, u16, u16); 3] = [
    ("Top", 200, 300),
    ("Middle", 800, 550),
    ("Bottom", 350, 850),
];

/// The touch step: the three [`TARGETS`] in turn, then the correction
/// fitted from where the taps landed. `Ok(correction)` or why the taps
/// give none; `None` if the device stops.
pub(crate) fn touch_taps(ctx: &LockCtx) -> Option<Result<Affine, otc_ui::FitError>> {
    let mut targets = [(0.0, 0.0); 3];
    let mut landed = [(0.0, 0.0); 3];
    let mut size = (0, 0);
    for (i, (label, x, y)) in TARGETS.iter().enumerate() {
        let tap = ctx.tap_target(ChoiceRequest {
            screen: "touch-check".into(),
            title: "Touch check".into(),
            lines: vec![format!("Tap the target {label}.")],
            target: Some(Target {
                label: label.to_string(),
                x_permille: *x,
                y_permille: *y,
            }),
            ..Default::default()
        })?;
        targets[i] = (f64::from(tap.target.0), f64::from(tap.target.1));
        landed[i] = (f64::from(tap.at.0), f64::from(tap.at.1));
        size = tap.size;
    }
    Some(otc_ui::orient::fit(targets, landed, size))
}

/// [`touch_taps`], and the correction applied at once (not saved: the
/// caller saves). Taps that give none are refused on a step of their own
/// (`touch-check-failed`: why, **Try again**, **Keep the one there is**).
/// `Some(None)`: the owner kept the correction before. `None` if the
/// device stops.
pub(crate) fn touch_check(ctx: &LockCtx) -> Option<Option<Affine>> {
    loop {
        match touch_taps(ctx)? {
            Ok(m) => {
                let mut c = ctx.clear();
                c.touch = Some(m);
                // Not saved here: applied, so the next screens take taps
                // with it.
                let _ = ctx.apply_clear(c, false);
                return Some(Some(m));
            }
            Err(e) => {
                let again = ctx.step(ChoiceRequest {
                    screen: "touch-check-failed".into(),
                    title: "Touch check".into(),
                    lines: vec!["The correction before stays.".into()],
                    warning: Some(format!("Touch not changed: {e}.")),
                    choices: vec!["Try again".into(), "Keep the one there is".into()],
                    ..Default::default()
                })?;
                if again != 0 {
                    return Some(None);
                }
            }
        }
    }
}

/// Runs the setup; `None` if the device stops first.
pub(crate) fn run(ctx: &LockCtx) -> Option<Unlock> {
    welcome(ctx)?;
    let owner = ask_owner(ctx)?;
    let pass = ask_passphrase(ctx)?;
    let address = ask_address(ctx)?;
    let rotation = ask_rotation(ctx)?;
    let touch = touch_check(ctx)?;
    let answers = Answers {
        owner,
        pass,
        address,
        rotation,
        touch,
    };
    let ui = ctx.ui();
    ui.show_progress(ProgressView {
        title: "Making the key (this takes a few seconds)".into(),
        done_bytes: 0,
        total_bytes: 1,
        cancellable: false,
        time_left: None,
    });
    let made = make_device(ctx, &answers);
    ui.hide_progress();
    match made {
        Ok(unlock) => Some(unlock),
        Err(what) => {
            ctx.fatal(&what);
            None
        }
    }
}

/// What the owner answered in the setup's steps.
struct Answers {
    owner: String,
    pass: zeroize::Zeroizing<String>,
    address: Ipv4Addr,
    rotation: u16,
    /// The touch correction fitted from the taps; `None`: the one before.
    touch: Option<Affine>,
}

/// Step 1: the welcome screen and its **Start**.
fn welcome(ctx: &LockCtx) -> Option<usize> {
    ctx.step(ChoiceRequest {
        screen: "first-boot".into(),
        title: "Welcome".into(),
        lines: vec![
            "Set up this device: your name, a passphrase, the network, the screen.".into(),
            "Everything on the card will be encrypted under the passphrase.".into(),
        ],
        choices: vec!["Start".into()],
        ..Default::default()
    })
}

/// Step 2: the owner's name ([`owner_check`]), trimmed.
fn ask_owner(ctx: &LockCtx) -> Option<String> {
    let name = ctx.text(
        TextRequest::of(TextKind::OwnerName, "", 40),
        Box::new(owner_check),
    )?;
    Some(name.trim().to_string())
}

/// Step 3: the passphrase, refused when weak, its strength shown, then
/// typed once more; asked again from the start when the owner chooses
/// another or cancels the repetition.
fn ask_passphrase(ctx: &LockCtx) -> Option<zeroize::Zeroizing<String>> {
    loop {
        let first = zeroize::Zeroizing::new(ctx.text(
            TextRequest::passphrase(TextKind::NewPassphrase),
            Box::new(|p: &str| match vault::passphrase_strength(p).refused {
                Some(why) => Err(why),
                None => Ok(()),
            }),
        )?);
        let bits = vault::passphrase_strength(&first).bits;
        let go = ctx.step(ChoiceRequest {
            screen: "first-boot-strength".into(),
            title: "Passphrase strength".into(),
            lines: vec![
                strength_line(bits),
                "Next: type it once more. Nobody can recover it for you.".into(),
            ],
            choices: vec!["Continue".into(), "Choose another".into()],
            ..Default::default()
        })?;
        if go != 0 {
            continue;
        }
        let want = first.clone();
        let again = ctx.text(
            TextRequest::passphrase(TextKind::RepeatPassphrase),
            Box::new(move |p: &str| {
                if p == want.as_str() {
                    Ok(())
                } else {
                    Err("Not the same passphrase. Type it again, or Cancel to start over.".into())
                }
            }),
        );
        if let Some(a) = again {
            drop(zeroize::Zeroizing::new(a));
            return Some(first);
        }
    }
}

/// Step 4: the address on the cable, offering what eth0 has now
/// (otc.toml's), so that **Done** keeps it.
fn ask_address(ctx: &LockCtx) -> Option<Ipv4Addr> {
    let offered = ctx
        .clear()
        .address
        .or(ctx.opts().address_now)
        .map(|a| a.to_string())
        .filter(|a| address_check(a).is_ok())
        .unwrap_or_else(|| "192.168.7.2".into());
    let address = ctx.text(
        TextRequest::of(TextKind::NetworkAddress, &offered, 15),
        Box::new(|t: &str| address_check(t).map(|_| ())),
    )?;
    address_check(&address).ok()
}

/// Step 5: which way up; the rotation applies at once (not saved yet).
fn ask_rotation(ctx: &LockCtx) -> Option<u16> {
    let upright = ctx.clear().rotation;
    let rotation = match ctx.step(ChoiceRequest {
        screen: "first-boot-rotation".into(),
        title: "Screen".into(),
        lines: vec![
            "Is this text the right way up?".into(),
            "Upside down turns the screen at once.".into(),
        ],
        choices: vec!["Right way up".into(), "Upside down".into()],
        ..Default::default()
    })? {
        0 => upright,
        _ => (upright + 180) % 360,
    };
    let mut clear = ctx.clear();
    clear.rotation = rotation;
    let _ = ctx.apply_clear(clear, false);
    Some(rotation)
}

/// Step 7 (after the touch check): erases what a destroyed key left,
/// makes the data directory, the key file, the clear settings and the
/// sealed settings, in that order. `Err`: what cannot be made, in words.
fn make_device(ctx: &LockCtx, a: &Answers) -> Result<Unlock, String> {
    // A directory whose key was destroyed: shred what the old key sealed
    // (records, pads, settings, the counter) before a new key is made, so
    // nothing of the old device stays beside the new one.
    if crate::lock::key_destroyed(ctx.dir())
        && let Err(e) = vault::wipe(&RealFs, ctx.dir())
    {
        return Err(format!("The old data cannot be erased: {e}."));
    }
    // The data directory first (its marker), then the key file in it.
    crate::pad::PadStore::open_dir(ctx.dir())
        .and_then(|s| s.close())
        .map_err(|e| format!("The data directory cannot be made: {e}."))?;
    let key = vault::create(&RealFs, ctx.dir(), a.pass.as_bytes(), &ctx.opts().kdf)
        .map_err(|e| format!("The key file cannot be made: {e}."))?;
    let clear = ClearSettings {
        rotation: a.rotation,
        address: Some(a.address),
        touch: a.touch.or(ctx.clear().touch),
    };
    ctx.apply_clear(clear, true)
        .map_err(|e| format!("The screen and network settings cannot be written: {e}."))?;
    let settings = Settings::new(&a.owner);
    settings
        .save(ctx.dir(), &key)
        .map_err(|e| format!("The settings cannot be written: {e}."))?;
    Ok(Unlock {
        key,
        settings: Some(settings),
        failures: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_address_checks_say_what_is_wrong() {
        assert!(owner_check("Alice").is_ok());
        assert!(owner_check("  ").is_err());
        assert!(owner_check(&"a".repeat(41)).is_err());
        assert_eq!(
            address_check("192.168.7.2"),
            Ok(Ipv4Addr::new(192, 168, 7, 2))
        );
        for bad in ["192.168.7", "256.1.1.1", "0.0.0.0", "127.0.0.1", "a.b.c.d"] {
            assert!(address_check(bad).is_err(), "{bad}");
        }
    }
}
