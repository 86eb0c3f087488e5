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
//! - the touch step asks for the three targets in turn (top, middle,
//!   bottom, as buttons at known places); a tap that lands on the wrong
//!   one starts the step again, so a touch panel that is off cannot get
//!   the owner past it. It checks the calibration `otc.toml` gave; it
//!   does not compute a new one (see the README);
//! - the address and the rotation are kept in the sealed settings; init
//!   still sets eth0 and the display from the boot partition's
//!   `otc.toml` (see the README).

use crate::lock::{LockCtx, Settings, Unlock};
use crate::pad::vault;
use crate::pad::vfs::RealFs;
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

/// The touch check: three targets in turn; a tap on the wrong one starts
/// again. `None` if the owner cancels or the device stops.
pub(crate) fn touch_check(ctx: &LockCtx) -> Option<()> {
    let targets = ["Top", "Middle", "Bottom"];
    'check: loop {
        for (i, want) in targets.iter().enumerate() {
            let got = ctx.step(ChoiceRequest {
                screen: "touch-check".into(),
                title: "Touch check".into(),
                lines: vec![format!("Tap the target {want}.")],
                choices: targets.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            })?;
            if got != i {
                ctx.ui().toast(otc_ui::Toast::error(
                    "That tap landed on another target. Start again from the top.",
                ));
                continue 'check;
            }
        }
        return Some(());
    }
}

/// Runs the setup; `None` if the device stops first.
pub(crate) fn run(ctx: &LockCtx) -> Option<Unlock> {
    let ui = ctx.ui();
    ctx.step(ChoiceRequest {
        screen: "first-boot".into(),
        title: "Welcome".into(),
        lines: vec![
            "Set up this device: your name, a passphrase, the network, the screen.".into(),
            "Everything on the card will be encrypted under the passphrase.".into(),
        ],
        choices: vec!["Start".into()],
        ..Default::default()
    })?;
    let owner = ctx
        .text(
            TextRequest::of(TextKind::OwnerName, "", 40),
            Box::new(owner_check),
        )?
        .trim()
        .to_string();
    let pass = loop {
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
        match again {
            Some(a) => {
                drop(zeroize::Zeroizing::new(a));
                break first;
            }
            None => continue,
        }
    };
    let address = ctx.text(
        TextRequest::of(TextKind::NetworkAddress, "192.168.7.2", 15),
        Box::new(|t: &str| address_check(t).map(|_| ())),
    )?;
    let address = address_check(&address).ok()?;
    let rotation = match ctx.step(ChoiceRequest {
        screen: "first-boot-rotation".into(),
        title: "Screen".into(),
        lines: vec!["Is this text the right way up?".into()],
        choices: vec!["Right way up".into(), "Upside down".into()],
        ..Default::default()
    })? {
        0 => 0,
        _ => 180,
    };
    touch_check(ctx)?;
    ui.show_progress(ProgressView {
        title: "Making the key (this takes a few seconds)".into(),
        done_bytes: 0,
        total_bytes: 1,
        cancellable: false,
        time_left: None,
    });
    // A directory whose key was destroyed: shred what the old key sealed
    // (records, pads, settings, the counter) before a new key is made, so
    // nothing of the old device stays beside the new one.
    if crate::lock::key_destroyed(ctx.dir())
        && let Err(e) = vault::wipe(&RealFs, ctx.dir())
    {
        ui.hide_progress();
        ctx.fatal(&format!("The old data cannot be erased: {e}."));
        return None;
    }
    // The data directory first (its marker), then the key file in it.
    if let Err(e) = crate::pad::PadStore::open_dir(ctx.dir()).and_then(|s| s.close()) {
        ui.hide_progress();
        ctx.fatal(&format!("The data directory cannot be made: {e}."));
        return None;
    }
    let made = vault::create(&RealFs, ctx.dir(), pass.as_bytes(), &ctx.opts().kdf);
    let key = match made {
        Ok(k) => k,
        Err(e) => {
            ui.hide_progress();
            ctx.fatal(&format!("The key file cannot be made: {e}."));
            return None;
        }
    };
    let mut settings = Settings::new(&owner);
    settings.address = Some(address.to_string());
    settings.rotation = rotation;
    if let Err(e) = settings.save(ctx.dir(), &key) {
        ui.hide_progress();
        ctx.fatal(&format!("The settings cannot be written: {e}."));
        return None;
    }
    ui.hide_progress();
    Some(Unlock {
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
