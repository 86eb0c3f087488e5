//! `DIR/device.toml`: the owner's settings that must work before the
//! passphrase is typed, kept in clear on the data partition (issue 18).
//!
//! Decision: the display's rotation and the touch correction are needed
//! by the lock screen itself (it must be the right way up and tappable),
//! and the network address by the laptop before unlock (it asks
//! `/v1/status` to learn that the device is locked). None of them is a
//! secret: the laptop on the cable knows the address, and anyone holding
//! the device sees which way up its screen is. So they live here, in
//! clear, read at every start before the lock screen; the sealed settings
//! ([`crate::lock::Settings`]) keep the rest (owner, timeouts). This file
//! names no contact, holds no pad byte and no audit text, so the
//! stolen-card checks (`firmware/tests/audit_at_rest.rs`, `image/qemu-pair`)
//! hold with it.
//!
//! The file is written whole with [`replace_durably`] (tmp + fsync +
//! rename + directory fsync) on the storage seam, so a power cut leaves
//! the old or the new one. A file that does not parse, or says something
//! out of range, is reported on standard error at start and the device
//! runs with `otc.toml`'s screen and address ([`load_at_start`]): a
//! damaged file must not keep the owner from unlocking. It is not
//! rewritten until the owner changes a setting. **Wipe device** removes
//! it with everything else; the next first boot asks again.
//!
//! ```toml
//! rotation = 180                  # 0 or 180, on top of otc.toml's
//! address = "192.168.7.2"         # eth0's, over otc.toml's (see net.rs)
//! [touch]                         # x' = a·x + b·y + c, y' = d·x + e·y + f
//! a = 1.0
//! b = 0.0
//! c = -12.0
//! d = 0.0
//! e = 1.0
//! f = 30.0
//! ```

use crate::error::{Error, Result};
use crate::pad::durable::replace_durably;
use crate::pad::vfs::RealFs;
use otc_ui::{Affine, Orientation};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

/// The file name in the data directory.
pub const FILE: &str = "device.toml";

/// The owner's screen and network settings (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClearSettings {
    /// The owner's rotation: 0 (as `otc.toml` mounts it) or 180 (upside
    /// down from that).
    pub rotation: u16,
    /// The eth0 address the owner chose; `None`: `otc.toml`'s / init's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// The touch correction fitted from the owner's taps (panel pixels,
    /// on top of `otc.toml`'s calibration); `None`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch: Option<Affine>,
}

impl ClearSettings {
    /// How the UI turns frames and corrects touches.
    pub fn orientation(&self) -> Orientation {
        Orientation {
            upside_down: self.rotation == 180,
            touch: self.touch.unwrap_or(Affine::IDENTITY),
        }
    }

    /// What is wrong with the file's values, if anything.
    fn check(&self) -> std::result::Result<(), String> {
        if self.rotation != 0 && self.rotation != 180 {
            return Err(format!("rotation = {}: give 0 or 180", self.rotation));
        }
        if let Some(t) = &self.touch {
            let all = [t.a, t.b, t.c, t.d, t.e, t.f];
            let det = t.det();
            if all.iter().any(|v| !v.is_finite()) || !(0.25..=4.0).contains(&det) {
                return Err("[touch] is not a correction a screen can use".into());
            }
        }
        if let Some(a) = self.address {
            crate::first_boot::address_check(&a.to_string())?;
        }
        Ok(())
    }

    /// Reads `DIR/device.toml`; a missing file is all defaults.
    pub fn load(dir: &Path) -> Result<ClearSettings> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClearSettings::default());
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let s: ClearSettings = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        s.check().map_err(|reason| Error::Config { path, reason })?;
        Ok(s)
    }

    /// Writes `DIR/device.toml` whole, durably.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        self.check().map_err(|reason| Error::Config {
            path: path.clone(),
            reason,
        })?;
        let body = toml::to_string(self).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let text = format!(
            "# The owner's screen and network settings, made on the device's own \
             screen (firmware/src/clear_settings.rs). Not secret.\n{body}"
        );
        replace_durably(&RealFs, &path, text.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }
}

/// The address init gives eth0 (`ADDRESS/PREFIX`, as `ip addr add`
/// takes it): the owner's address from `device.toml` when there is one,
/// with the prefix length of `configured` (the boot partition's
/// `[network] address`, e.g. `10.0.0.2/24`; none means `/32`, as for
/// `ip addr add`; a bad one `/24`); else `configured` as it is. Decision: the owner chooses the
/// address on the screen, not the network's size, which stays the boot
/// partition's.
pub fn eth0_address(owner: Option<Ipv4Addr>, configured: &str) -> String {
    let Some(a) = owner else {
        return configured.trim().to_string();
    };
    let prefix = match configured.trim().split_once('/') {
        None => 32,
        Some((_, p)) => p
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .unwrap_or(24),
    };
    format!("{a}/{prefix}")
}

impl ClearSettings {
    /// These settings for a screen of `size` pixels: a touch correction
    /// the fit would have refused there ([`Affine::check`]: it moves a
    /// corner by more than half the screen, say, written by hand or for
    /// another panel) is said on standard error and dropped, so the lock
    /// screen stays tappable.
    pub fn for_screen(mut self, size: (u32, u32)) -> ClearSettings {
        if let Some(t) = self.touch
            && let Err(e) = t.check(size)
        {
            eprintln!(
                "otc-device: {FILE}: the touch correction is not used on this {}x{} screen: {e}",
                size.0, size.1
            );
            self.touch = None;
        }
        self
    }
}

/// [`ClearSettings::load`] at start: a file that cannot be read is said on
/// standard error and the defaults are used (see the module doc).
pub fn load_at_start(dir: &Path) -> ClearSettings {
    match ClearSettings::load(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "otc-device: {e}; the screen and address of otc.toml are used until the \
                 owner sets them again in Settings"
            );
            ClearSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_the_defaults_and_a_saved_one_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let none = ClearSettings::load(d.path()).unwrap();
        assert_eq!(none, ClearSettings::default());
        assert_eq!(none.orientation(), Orientation::default());
        let s = ClearSettings {
            rotation: 180,
            address: Some(Ipv4Addr::new(192, 168, 7, 9)),
            touch: Some(Affine {
                c: -12.5,
                f: 30.0,
                ..Affine::IDENTITY
            }),
        };
        s.save(d.path()).unwrap();
        assert_eq!(ClearSettings::load(d.path()).unwrap(), s);
        let o = s.orientation();
        assert!(o.upside_down);
        assert_eq!(o.touch.c, -12.5);
    }

    #[test]
    fn a_correction_too_far_for_the_screen_is_dropped_at_start() {
        let near = ClearSettings {
            rotation: 180,
            touch: Some(Affine {
                c: 30.0,
                ..Affine::IDENTITY
            }),
            ..Default::default()
        };
        assert_eq!(near.clone().for_screen((800, 480)), near);
        let far = ClearSettings {
            touch: Some(Affine {
                c: 1.0e6,
                ..Affine::IDENTITY
            }),
            ..near.clone()
        };
        let kept = far.for_screen((800, 480));
        assert_eq!(kept.touch, None);
        assert_eq!(kept.rotation, 180, "the rest is kept");
    }

    #[test]
    fn the_owners_address_wins_and_keeps_the_configured_prefix() {
        let mine = Some(Ipv4Addr::new(192, 168, 7, 9));
        assert_eq!(eth0_address(None, "10.0.0.2/24"), "10.0.0.2/24");
        assert_eq!(eth0_address(None, " 10.0.0.2/16 "), "10.0.0.2/16");
        assert_eq!(eth0_address(mine, "10.0.0.2/24"), "192.168.7.9/24");
        assert_eq!(eth0_address(mine, "10.0.0.2/30"), "192.168.7.9/30");
        assert_eq!(eth0_address(mine, "10.0.0.2"), "192.168.7.9/32", "as ip");
        assert_eq!(eth0_address(mine, ""), "192.168.7.9/32");
        for odd in ["10.0.0.2/", "10.0.0.2/33", "10.0.0.2/x", "10.0.0.2/0"] {
            assert_eq!(eth0_address(mine, odd), "192.168.7.9/24", "{odd:?}");
        }
    }

    #[test]
    fn a_bad_file_is_refused_with_its_reason_and_start_uses_the_defaults() {
        let d = tempfile::tempdir().unwrap();
        for (text, says) in [
            ("rotation = 90\n", "rotation = 90"),
            ("rotation = 0\nspeed = 3\n", "speed"),
            ("address = \"127.0.0.1\"\n", "127.0.0.1"),
            ("address = \"300.1.1.1\"\n", "address"),
            (
                "[touch]\na = 0.0\nb = 0.0\nc = 0.0\nd = 0.0\ne = 0.0\nf = 0.0\n",
                "[touch]",
            ),
        ] {
            std::fs::write(d.path().join(FILE), text).unwrap();
            let e = ClearSettings::load(d.path()).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert_eq!(load_at_start(d.path()), ClearSettings::default());
            // Not rewritten by reading.
            assert_eq!(std::fs::read_to_string(d.path().join(FILE)).unwrap(), text);
        }
        let bad = ClearSettings {
            rotation: 90,
            ..Default::default()
        };
        assert!(
            bad.save(d.path()).is_err(),
            "nothing out of range is written"
        );
    }
}
