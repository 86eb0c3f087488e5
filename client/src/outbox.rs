//! The outbox: packages sealed on the device (their pad bytes spent) that
//! the relay has not acknowledged yet, kept in a file so that quitting or
//! a crash loses none of them.
//!
//! One JSON object a line (`user`, `relay` as HOST:PORT, `to`, `package`,
//! `sealed_at` in Unix seconds). The package is ciphertext, as the relay
//! sees it. Every change rewrites the whole file: a temp file, fsync,
//! rename over the old one, fsync of the directory; an exclusive lock on
//! `FILE.lock` keeps two `otc` processes of one user from undoing each
//! other's changes. A line that does not parse is kept as it is (and
//! reported), never dropped.
//!
//! An entry is written before the relay is asked to take the package and
//! removed only once the relay acknowledged exactly that package.
//!
//! # One sender per entry
//!
//! An entry is sent by one sender at a time: whoever hands a package to
//! the relay first takes its *claim* ([`Outbox::claim`]), an exclusive
//! OS file lock (`flock`) on `FILE.claims/SHA256(package).lock`, held
//! until the package is delivered and removed, or given up on for now.
//! `flock` locks belong to an open file, so the claim excludes another
//! thread of the same `otc` (the interactive client's background retry
//! while the prompt's `send` waits for a slow relay) as well as another
//! `otc` process of the same user sharing the file. A retry
//! ([`crate::chat::Chat::flush_outbox`]) skips an entry someone else
//! holds, and reads the outbox again once it holds one (the holder may
//! have just delivered it). A claim's lock file is unlinked by its holder
//! on release; a claimer checks, once locked, that the file it locked is
//! still the one at that name (else it tries again), so the unlink cannot
//! let two holders in. A crash drops the lock with the process.
//!
//! A crash between the relay's acknowledgement and the removal still
//! sends the package again at the next start. The relay answers such a
//! resend with the ref it already gave (`otc-relay` stores a message once
//! per sender, recipient and contents), so the receiver sees it once. A
//! relay that stores it twice anyway (the original relay, or a hostile
//! one) makes the receiving device refuse the second copy as `replayed`,
//! before any prompt, with no pad spent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// One sealed package waiting for the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The sender, as known to the relay.
    pub user: String,
    /// The relay it is meant for, as HOST:PORT.
    pub relay: String,
    pub to: String,
    pub package: String,
    /// When it was sealed, Unix seconds.
    pub sealed_at: u64,
}

impl Entry {
    pub fn new(user: &str, relay: &str, to: &str, package: &str) -> Entry {
        Entry {
            user: user.into(),
            relay: relay.into(),
            to: to.into(),
            package: package.into(),
            sealed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// A line of the file.
#[derive(Clone, Debug)]
enum Line {
    Entry(Entry),
    /// Not an entry: kept verbatim.
    Unreadable(String),
}

/// Where the outbox lives.
#[derive(Debug)]
enum Place {
    /// In this process only (the library's default, for tests and benches).
    Memory(Mutex<Vec<Entry>>),
    File(PathBuf),
    /// No file could be chosen (no `HOME`): sealing is refused.
    Nowhere(String),
}

/// The outbox of one `otc`.
#[derive(Debug)]
pub struct Outbox {
    place: Place,
    /// Claims of an in-memory outbox (a file's are lock files).
    claimed: Arc<Mutex<HashSet<String>>>,
}

/// Tries at taking a claim whose lock file its holder unlinked meanwhile.
const CLAIM_TRIES: usize = 100;

/// The right to hand one package to the relay; released when dropped.
#[derive(Debug)]
pub struct Claim {
    how: Held,
}

#[derive(Debug)]
enum Held {
    /// The locked file (unlinked, then unlocked, on release).
    File { file: File, path: PathBuf },
    Memory {
        claimed: Arc<Mutex<HashSet<String>>>,
        package: String,
    },
}

impl Drop for Claim {
    fn drop(&mut self) {
        match &self.how {
            Held::File { file, path } => {
                // Unlinked while still locked: a claimer that opened the
                // old file finds it is no longer at `path` and tries again.
                let _ = std::fs::remove_file(path);
                let _ = file.unlock();
            }
            Held::Memory { claimed, package } => {
                claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(package);
            }
        }
    }
}

/// The hex SHA-256 of a package (its claim's name).
fn digest(package: &str) -> String {
    Sha256::digest(package.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the file holds.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// Lines that are not entries (1-based line numbers), kept in the file.
    pub unreadable: Vec<usize>,
}

impl Outbox {
    fn at(place: Place) -> Outbox {
        Outbox {
            place,
            claimed: Arc::default(),
        }
    }

    pub fn memory() -> Outbox {
        Outbox::at(Place::Memory(Mutex::new(Vec::new())))
    }

    pub fn file(path: impl Into<PathBuf>) -> Outbox {
        Outbox::at(Place::File(path.into()))
    }

    /// An outbox that cannot hold anything; `why` says what to do.
    pub fn nowhere(why: impl Into<String>) -> Outbox {
        Outbox::at(Place::Nowhere(why.into()))
    }

    /// Takes the claim on `package` (see the module's docs): `None` when
    /// another sender (a thread, or another `otc` of the same outbox file)
    /// holds it now.
    pub fn claim(&self, package: &str) -> Result<Option<Claim>, String> {
        let path = match &self.place {
            Place::File(p) => p,
            Place::Memory(_) | Place::Nowhere(_) => {
                let mut c = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
                if !c.insert(package.to_string()) {
                    return Ok(None);
                }
                return Ok(Some(Claim {
                    how: Held::Memory {
                        claimed: self.claimed.clone(),
                        package: package.to_string(),
                    },
                }));
            }
        };
        let mut dir = path.as_os_str().to_owned();
        dir.push(".claims");
        let dir = PathBuf::from(dir);
        let err = |what: &str, e: std::io::Error| {
            format!(
                "the outbox's claims {}: {what}: {e} (check that the directory is writable)",
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| err("cannot create the directory", e))?;
        let name = dir.join(format!("{}.lock", digest(package)));
        for _ in 0..CLAIM_TRIES {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&name)
                .map_err(|e| err("cannot open a claim", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(err("cannot lock a claim", e)),
            }
            let same = match (file.metadata(), std::fs::metadata(&name)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                return Ok(Some(Claim {
                    how: Held::File { file, path: name },
                }));
            }
            // Its holder released it (and unlinked it) meanwhile.
        }
        Err(format!(
            "the outbox's claim {} kept changing under {CLAIM_TRIES} tries; try again",
            name.display()
        ))
    }

    /// True if an entry with this package is in the outbox.
    pub fn holds(&self, package: &str) -> Result<bool, String> {
        Ok(self
            .contents()?
            .entries
            .iter()
            .any(|e| e.package == package))
    }

    /// The file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.place {
            Place::File(p) => Some(p),
            _ => None,
        }
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Memory(_) => "in memory".into(),
            Place::File(p) => p.display().to_string(),
            Place::Nowhere(why) => format!("nowhere ({why})"),
        }
    }

    /// Makes sure an entry can be written (the directory exists, the lock
    /// can be taken, the file is readable), before anything is sealed.
    pub fn check(&self) -> Result<(), String> {
        self.change(|_| false).map(|_| ())
    }

    /// Everything in it.
    pub fn contents(&self) -> Result<Contents, String> {
        let mut out = Contents::default();
        self.change(|lines| {
            for (i, l) in lines.iter().enumerate() {
                match l {
                    Line::Entry(e) => out.entries.push(e.clone()),
                    Line::Unreadable(_) => out.unreadable.push(i + 1),
                }
            }
            false
        })?;
        Ok(out)
    }

    /// The entries of `user` for `relay`, oldest first.
    pub fn pending(&self, user: &str, relay: &str) -> Result<Vec<Entry>, String> {
        Ok(self
            .contents()?
            .entries
            .into_iter()
            .filter(|e| e.user == user && e.relay == relay)
            .collect())
    }

    /// Adds `e` (durably, when a file).
    pub fn add(&self, e: Entry) -> Result<(), String> {
        self.change(|lines| {
            lines.push(Line::Entry(e));
            true
        })
        .map(|_| ())
    }

    /// Removes the entries with this package; true if there was one.
    pub fn remove(&self, package: &str) -> Result<bool, String> {
        let mut found = false;
        self.change(|lines| {
            let n = lines.len();
            lines.retain(|l| !matches!(l, Line::Entry(e) if e.package == package));
            found = lines.len() != n;
            found
        })?;
        Ok(found)
    }

    /// Reads the lines under the lock, lets `f` change them, and writes
    /// them back when `f` says it changed something.
    fn change(&self, f: impl FnOnce(&mut Vec<Line>) -> bool) -> Result<(), String> {
        let path = match &self.place {
            Place::Memory(m) => {
                let mut v = m.lock().unwrap_or_else(|p| p.into_inner());
                let mut lines: Vec<Line> = v.drain(..).map(Line::Entry).collect();
                f(&mut lines);
                *v = lines
                    .into_iter()
                    .filter_map(|l| match l {
                        Line::Entry(e) => Some(e),
                        Line::Unreadable(_) => None,
                    })
                    .collect();
                return Ok(());
            }
            Place::Nowhere(why) => return Err(format!("no outbox file: {why}")),
            Place::File(p) => p,
        };
        let err =
            |what: &str, e: std::io::Error| format!("the outbox {}: {what}: {e}", path.display());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| err("cannot create its directory", e))?;
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_name)
            .map_err(|e| err("cannot open its lock file", e))?;
        lock.lock().map_err(|e| err("cannot lock it", e))?;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err("cannot read it", e)),
        };
        let mut lines: Vec<Line> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str::<Entry>(l) {
                Ok(e) => Line::Entry(e),
                Err(_) => Line::Unreadable(l.to_string()),
            })
            .collect();
        if !f(&mut lines) {
            return Ok(());
        }
        let mut body = String::new();
        for l in &lines {
            match l {
                Line::Entry(e) => {
                    body.push_str(&serde_json::to_string(e).map_err(|e| e.to_string())?)
                }
                Line::Unreadable(raw) => body.push_str(raw),
            }
            body.push('\n');
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut t = File::create(&tmp)?;
            t.write_all(body.as_bytes())?;
            t.sync_all()?;
            std::fs::rename(&tmp, path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err("cannot write it", e)
        })?;
        drop(lock);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_unreadable_lines_are_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("sub/outbox-al.jsonl");
        let o = Outbox::file(&p);
        o.check().expect("usable");
        o.add(Entry::new("al", "r:1", "bob", "P1")).expect("add");
        o.add(Entry::new("al", "r:2", "bob", "P2")).expect("add");
        let mut text = std::fs::read_to_string(&p).expect("read");
        text.push_str("not json\n");
        std::fs::write(&p, text).expect("write");
        let o = Outbox::file(&p);
        let c = o.contents().expect("contents");
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.unreadable, vec![3]);
        assert_eq!(o.pending("al", "r:1").expect("pending")[0].package, "P1");
        assert!(o.pending("other", "r:1").expect("pending").is_empty());
        assert!(o.remove("P1").expect("remove"));
        assert!(!o.remove("P1").expect("remove again"));
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(!text.contains("P1") && text.contains("P2") && text.contains("not json"));
    }

    /// A claim excludes another claimer of the same package, through
    /// another `Outbox` of the same file (as another process would) and in
    /// memory, and is free again once dropped.
    #[test]
    fn one_claim_per_package_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("outbox-al.jsonl");
        let (a, b) = (Outbox::file(&p), Outbox::file(&p));
        let m = Outbox::memory();
        for (one, other) in [(&a, &b), (&m, &m)] {
            let held = one.claim("P1").expect("claim").expect("free");
            assert!(other.claim("P1").expect("claim").is_none(), "held");
            let p2 = other.claim("P2").expect("claim").expect("another package");
            drop(held);
            let again = other.claim("P1").expect("claim").expect("released");
            drop((again, p2));
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("outbox-al.jsonl.claims"))
            .expect("the claims directory")
            .collect();
        assert!(left.is_empty(), "released claims leave no file: {left:?}");
    }

    #[test]
    fn nowhere_refuses_and_says_why() {
        let e = Outbox::nowhere("set HOME").check().expect_err("refused");
        assert!(e.contains("set HOME"), "{e}");
    }
}
