//! Where the client's settings come from, highest first: command-line
//! flags, environment variables, the config file, built-in defaults.
//!
//! | setting         | flag               | environment          | config file key  |
//! |-----------------|--------------------|----------------------|------------------|
//! | device URL      | `--device`         | `OTC_DEVICE`         | `device`         |
//! | relay URL       | `--relay`          | `OTC_RELAY`          | `relay`          |
//! | relay CA / pin  | `--relay-ca`       | `OTC_RELAY_CA`       | `relay_ca`       |
//! | plain http ok   | `--insecure-relay` |                      |                  |
//! | your name       | `--user`           | `OTC_USER`           | `user`           |
//! | device timeout  | `--device-timeout` | `OTC_DEVICE_TIMEOUT` | `device_timeout` |
//! | relay timeout   | `--relay-timeout`  | `OTC_RELAY_TIMEOUT`  | `relay_timeout`  |
//! | outbox file     | `--outbox`         | `OTC_OUTBOX`         | `outbox`         |
//! | config file     | `--config`         | `OTC_CONFIG`         |                  |
//! | groups          |                    |                      | `[groups]`       |
//!
//! The config file is TOML, by default `$XDG_CONFIG_HOME/otc/config.toml`
//! (else `~/.config/otc/config.toml`); a missing default file is fine, a
//! missing named one is an error. Unknown keys are an error, so a typo is
//! not silently ignored.
//!
//! The outbox (sealed messages the relay has not taken yet, see
//! [`crate::outbox`]) is by default
//! `$XDG_STATE_HOME/otc/outbox-USER.jsonl`, else
//! `~/.local/state/otc/outbox-USER.jsonl`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default device timeout: above the device's longest prompt timeout.
pub const DEFAULT_DEVICE_TIMEOUT_SECS: u64 = 120;
/// Default relay timeout (a long poll adds its wait).
pub const DEFAULT_RELAY_TIMEOUT_SECS: u64 = 10;

/// The config file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub device: Option<String>,
    pub relay: Option<String>,
    /// PEM file: the relay's CA, or its own certificate pinned.
    pub relay_ca: Option<PathBuf>,
    pub user: Option<String>,
    pub device_timeout: Option<u64>,
    pub relay_timeout: Option<u64>,
    pub outbox: Option<PathBuf>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

/// What the flags and environment gave (clap fills flags and env in).
#[derive(Clone, Debug, Default)]
pub struct Given {
    pub config: Option<PathBuf>,
    pub device: Option<String>,
    pub relay: Option<String>,
    pub relay_ca: Option<PathBuf>,
    pub insecure_relay: bool,
    pub user: Option<String>,
    pub device_timeout: Option<u64>,
    pub relay_timeout: Option<u64>,
    pub outbox: Option<PathBuf>,
}

/// The settings the client runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub device: String,
    pub relay: String,
    /// PEM file trusted for an https:// relay (else the system's roots).
    pub relay_ca: Option<PathBuf>,
    /// Plain http:// allowed to a public address.
    pub insecure_relay: bool,
    pub user: String,
    pub device_timeout: Duration,
    pub relay_timeout: Duration,
    pub groups: BTreeMap<String, Vec<String>>,
    /// The outbox file, or why there is none (no `HOME`).
    pub outbox: Result<PathBuf, String>,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
}

/// The default config file path (whether or not it exists).
pub fn default_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty());
    match xdg {
        Some(d) => Some(PathBuf::from(d).join("otc/config.toml")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/otc/config.toml")),
    }
}

/// The default outbox file of `user` (whether or not it exists). Bytes
/// of the name other than ASCII letters, digits, `.`, `_` and `-` become
/// `_` (entries name their user, so two names that meet here stay apart).
pub fn default_outbox(user: &str) -> Option<PathBuf> {
    let safe: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = format!("otc/outbox-{safe}.jsonl");
    let xdg = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty());
    match xdg {
        Some(d) => Some(PathBuf::from(d).join(file)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state").join(file)),
    }
}

/// Reads a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        // One line, in words: where, and what is wrong (the parser's own
        // message, whose several lines quote the file).
        let at = e.span().map_or(String::new(), |sp| {
            let before = text.get(..sp.start).unwrap_or(&text);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {col}")
        });
        format!(
            "the config file {} is not valid{at}: {}; fix it, or point --config (OTC_CONFIG) at another file",
            path.display(),
            e.message().trim().replace('\n', " ")
        )
    })
}

/// Merges flags and environment (`given`) over the config file.
pub fn resolve(given: Given) -> Result<Settings, String> {
    let (file, path) = match &given.config {
        Some(p) => (read_file(p)?, Some(p.clone())),
        None => match default_path().filter(|p| p.exists()) {
            Some(p) => (read_file(&p)?, Some(p)),
            None => (FileConfig::default(), None),
        },
    };
    let need = |v: Option<String>, flag: &str, env: &str, key: &str| {
        v.filter(|s| !s.is_empty()).ok_or_else(|| {
            format!(
                "no {key} given: use {flag}, set {env}, or put {key} = \"…\" in the config file"
            )
        })
    };
    let device = need(
        given.device.or(file.device),
        "--device URL",
        "OTC_DEVICE",
        "device",
    )?;
    let relay = need(
        given.relay.or(file.relay),
        "--relay URL",
        "OTC_RELAY",
        "relay",
    )?;
    let user = need(given.user.or(file.user), "--user NAME", "OTC_USER", "user")?;
    let user_for_outbox = user.clone();
    let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d).max(1));
    Ok(Settings {
        device,
        relay,
        relay_ca: given
            .relay_ca
            .or(file.relay_ca)
            .filter(|p| !p.as_os_str().is_empty()),
        insecure_relay: given.insecure_relay,
        user,
        device_timeout: secs(
            given.device_timeout.or(file.device_timeout),
            DEFAULT_DEVICE_TIMEOUT_SECS,
        ),
        relay_timeout: secs(
            given.relay_timeout.or(file.relay_timeout),
            DEFAULT_RELAY_TIMEOUT_SECS,
        ),
        outbox: given
            .outbox
            .or(file.outbox)
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| default_outbox(&user_for_outbox))
            .ok_or_else(|| {
                "neither XDG_STATE_HOME nor HOME is set: give --outbox FILE or OTC_OUTBOX"
                    .to_string()
            }),
        groups: file.groups,
        file: path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_groups_come_from_it() {
        let dir = std::env::temp_dir().join(format!("otc-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("c.toml");
        std::fs::write(
            &p,
            "device = \"http://10.0.0.2:9051\"\nrelay = \"http://r:1\"\nuser = \"al\"\nrelay_timeout = 3\n[groups]\nfriends = [\"bob\", \"carol\"]\n",
        )
        .expect("write");
        let s = resolve(Given {
            config: Some(p.clone()),
            user: Some("alice".into()),
            ..Given::default()
        })
        .expect("settings");
        assert_eq!(s.user, "alice");
        assert_eq!(s.device, "http://10.0.0.2:9051");
        assert_eq!(s.relay_timeout, Duration::from_secs(3));
        assert_eq!(
            s.device_timeout,
            Duration::from_secs(DEFAULT_DEVICE_TIMEOUT_SECS)
        );
        assert_eq!(s.groups["friends"], ["bob", "carol"]);
        std::fs::write(&p, "devise = \"x\"\n").expect("write");
        let e = resolve(Given {
            config: Some(p.clone()),
            ..Given::default()
        })
        .expect_err("typo");
        assert!(e.contains("not valid") && e.contains("devise"), "{e}");
        // Issue 20: the relay's pinned certificate from the file, the flag first.
        std::fs::write(&p, "relay_ca = \"/etc/otc/relay.pem\"\n").expect("write");
        let s = resolve(Given {
            config: Some(p.clone()),
            device: Some("http://d:1".into()),
            relay: Some("https://r".into()),
            user: Some("u".into()),
            ..Given::default()
        })
        .expect("settings");
        assert_eq!(s.relay_ca, Some(PathBuf::from("/etc/otc/relay.pem")));
        assert!(!s.insecure_relay);
        let s = resolve(Given {
            config: Some(p.clone()),
            device: Some("http://d:1".into()),
            relay: Some("https://r".into()),
            user: Some("u".into()),
            relay_ca: Some("/x.pem".into()),
            ..Given::default()
        })
        .expect("settings");
        assert_eq!(s.relay_ca, Some(PathBuf::from("/x.pem")));
        // Issue 15: one line, where and what, no quoted lines.
        assert!(
            !e.contains('\n') && e.contains("at line 1, column 1"),
            "{e}"
        );
        let e = resolve(Given {
            config: Some(dir.join("missing.toml")),
            ..Given::default()
        })
        .expect_err("missing");
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_setting_names_all_three_ways_to_give_it() {
        let e = resolve(Given {
            config: Some(PathBuf::from("/dev/null")),
            device: Some("http://d:1".into()),
            user: Some("u".into()),
            ..Given::default()
        })
        .expect_err("no relay");
        assert!(
            e.contains("--relay") && e.contains("OTC_RELAY") && e.contains("relay ="),
            "{e}"
        );
    }
}
