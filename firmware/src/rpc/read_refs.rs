//! The client's read positions on relays (`DIR/cursors.json`): one of the
//! jobs [`crate::rpc::Service`] used to do itself (issue 16). The endpoint
//! reads and sets them (`/v1/cursor/{relay}`, `/runrpc`'s next refs); this
//! module loads, checks, seals and durably replaces the file.

#[cfg(doc)]
use crate::pad::PadStore;
use crate::pad::durable::replace_durably;
use crate::pad::vfs::{self, Vfs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The client's read positions on relays ("read refs": the next relay ref
/// to fetch; the wire calls them cursors, `/v1/cursor/{relay}`, and the
/// original client next refs), kept on the device in `DIR/cursors.json`,
/// replaced durably through the pad store's storage seam
/// ([`replace_durably`]: temp file, fsync, rename, directory fsync), so
/// the power-loss simulator checks it as it checks the store
/// (`firmware/tests/powerloss_read_refs.rs`). Not the pad's send offset,
/// which is the store's.
///
/// Why a read position is not saved in the same sync as the open (issue
/// 16 asked for that, "or justified otherwise"): the position is the
/// laptop's to move, by its own request (`PUT /v1/cursor/{relay}`) after
/// it has the open's reply and has shown the message; an open names no
/// relay and no ref (the device never learns where a package came from),
/// and the client moves the position only past messages settled for good,
/// which the device cannot judge. So a message costs the open's one sync
/// (its receipt, [`crate::pad::journal`]) and then this file's replace
/// (file fsync, directory fsync): three dependent syncs, down from five.
/// Not saving it durably would be cheaper still, but a position lost to a
/// power cut makes the client fetch opened messages again, and the device
/// would then raise replay warnings over messages the owner already read.
///
/// In an encrypted data directory (issue 18) the file is a sealed blob
/// under the master key ([`crate::pad::vault::MasterKey::seal_blob`],
/// purpose `cursors`): [`ReadRefs::load_with_key`] with the store's key
/// ([`PadStore::master_key`]).
pub struct ReadRefs {
    path: PathBuf,
    map: BTreeMap<String, u64>,
    key: Option<crate::pad::vault::MasterKey>,
}

/// The associated data of the sealed read positions.
const READ_REFS_PURPOSE: &str = "cursors";

/// The file's size bound when read back: [`MAX_RELAYS`] names of at most
/// 128 bytes with their numbers, with room to spare.
const READ_REFS_MAX_BYTES: u64 = 64 * 1024;

impl ReadRefs {
    /// The positions kept in `dir` (none if the file is missing).
    pub fn load(vfs: &dyn Vfs, dir: &Path) -> std::io::Result<Self> {
        Self::load_with_key(vfs, dir, None)
    }

    /// The positions kept in `dir`, sealed under `key` when it is given
    /// (an encrypted data directory).
    pub fn load_with_key(
        vfs: &dyn Vfs,
        dir: &Path,
        key: Option<&crate::pad::vault::MasterKey>,
    ) -> std::io::Result<Self> {
        let path = dir.join("cursors.json");
        let map = match vfs::read_all(vfs, &path, READ_REFS_MAX_BYTES) {
            Ok(bytes) => Self::decode(&bytes, key).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(ReadRefs {
            path,
            map,
            key: key.cloned(),
        })
    }

    /// The positions in the file's bytes; `Err` says why they are not.
    fn decode(
        bytes: &[u8],
        key: Option<&crate::pad::vault::MasterKey>,
    ) -> Result<BTreeMap<String, u64>, String> {
        let opened;
        let bytes = match key {
            Some(k) => {
                opened = k
                    .open_blob(READ_REFS_PURPOSE, bytes)
                    .map_err(|e| e.to_string())?;
                &opened[..]
            }
            None => bytes,
        };
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// What the running device loads (issue 23): like
    /// [`ReadRefs::load_with_key`], but a file that is there and cannot be
    /// read as read positions (damaged, cut, not ours) does not keep the
    /// device from starting, which under init would be a restart loop with
    /// every pad out of reach over a convenience file. It is set aside as
    /// `cursors.json.damaged` (`-2`, `-3`, ... when that exists), durably,
    /// and the positions start empty; the second value says what happened,
    /// for the audit log's alert. The read positions are then unknown: the
    /// client reads from the start, and the replay check refuses what was
    /// opened already. An I/O error reading it is still an error.
    pub fn load_or_set_aside(
        vfs: &dyn Vfs,
        dir: &Path,
        key: Option<&crate::pad::vault::MasterKey>,
    ) -> std::io::Result<(Self, Option<String>)> {
        let path = dir.join("cursors.json");
        let bytes = match vfs::read_all(vfs, &path, READ_REFS_MAX_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::load_with_key(vfs, dir, key)?, None));
            }
            // Longer than any file of ours: damaged too.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Vec::new(),
            Err(e) => return Err(e),
        };
        let why = match Self::decode(&bytes, key) {
            Ok(map) => {
                let refs = ReadRefs {
                    path,
                    map,
                    key: key.cloned(),
                };
                return Ok((refs, None));
            }
            Err(why) => why,
        };
        let mut n = 1;
        let aside = loop {
            let name = if n == 1 {
                "cursors.json.damaged".to_string()
            } else {
                format!("cursors.json.damaged-{n}")
            };
            let p = dir.join(&name);
            if vfs.kind(&p)?.is_none() {
                break (p, name);
            }
            n += 1;
        };
        vfs.rename(&path, &aside.0)?;
        vfs.sync_dir(dir)?;
        let refs = ReadRefs {
            path,
            map: BTreeMap::new(),
            key: key.cloned(),
        };
        Ok((
            refs,
            Some(format!(
                "the read positions file cursors.json could not be read ({why}); it was set \
                 aside as {} and the read positions start over: the client reads again from \
                 the start, and messages opened already are refused as replays",
                aside.1
            )),
        ))
    }

    /// The position kept for `relay`.
    pub fn get(&self, relay: &str) -> Option<u64> {
        self.map.get(relay).copied()
    }

    /// Whether `relay` may be saved: already kept, or room for one more.
    pub fn has_room_for(&self, relay: &str) -> bool {
        self.map.contains_key(relay) || self.map.len() < MAX_RELAYS
    }

    /// Keep `cursor` for `relay`, durably: when this returns `Ok`, the new
    /// position survives a power cut; on an error the old one is kept
    /// (on disk and here).
    pub fn set(&mut self, vfs: &dyn Vfs, relay: &str, cursor: u64) -> std::io::Result<()> {
        let mut next = self.map.clone();
        next.insert(relay.to_string(), cursor);
        let mut bytes = serde_json::to_vec(&next).map_err(std::io::Error::other)?;
        if let Some(k) = &self.key {
            bytes = k.seal_blob(READ_REFS_PURPOSE, &bytes);
        }
        replace_durably(vfs, &self.path, &bytes)?;
        self.map = next;
        Ok(())
    }
}

/// The most relays the device keeps a read position for: each save
/// rewrites them all, and a hostile laptop must not fill the data
/// partition (where the pads live) with made-up relay names.
pub const MAX_RELAYS: usize = 64;
