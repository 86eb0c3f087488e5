//! The relay's message table: an append-only log file, one JSON record per
//! line, fsynced before a send is acknowledged.
//!
//! Why not sled: the relay needs one table that only grows, read back in
//! full at start. An append-only file with `sync_data` after each append
//! gives exactly the guarantee we promise ("acknowledged means on disk";
//! refs only ever increase) with a format a person can read with `cat`,
//! no background threads, and no extra dependency tree to build. sled's
//! strengths (random updates, compaction, large data sets) are unused here.
//!
//! Crash safety: a SIGKILL or power cut can leave a torn last line. At open
//! every line is parsed; the first line that does not parse (or lacks its
//! newline) ends the log, and the file is truncated back to the last whole
//! record before anything new is appended. Such a line was never
//! acknowledged, because the acknowledgement comes after the fsync.
//!
//! Refs are global (the original relay kept one table with an
//! auto-increment key): the next ref is one past the largest ref in the
//! log, and refs consumed without storing (mischief `drop`) are recorded
//! as a `skip` record so that a restart never hands them out again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use otc_proto::relay::RelayMessage;
use serde::{Deserialize, Serialize};

use crate::RelayFailure;

/// The log file's name inside the data directory.
pub const LOG_NAME: &str = "messages.log";

/// One line of the log.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum Record {
    /// A stored message.
    #[serde(rename = "m")]
    Message(RelayMessage),
    /// A ref used up without a message (so it is never reused).
    #[serde(rename = "s")]
    Skip {
        #[serde(rename = "ref")]
        msg_ref: u64,
    },
}

/// The messages, in memory and on disk.
pub struct Store {
    file: File,
    path: PathBuf,
    next_ref: u64,
    by_recipient: HashMap<String, Vec<RelayMessage>>,
    /// The log's length: everything before it is whole records.
    len: u64,
    /// A failed write could not be undone: refuse further writes, since
    /// records after a torn one would be dropped at the next start.
    broken: bool,
}

impl Store {
    /// Opens (or creates) the log in `dir`, reading back every whole record.
    pub fn open(dir: &Path) -> Result<Store, RelayFailure> {
        let io = |what: &str, e: std::io::Error| {
            RelayFailure::Storage(format!("{what} in {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the data directory", e))?;
        let path = dir.join(LOG_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io("cannot open the message log", e))?;
        let mut next_ref = 1u64;
        let mut by_recipient: HashMap<String, Vec<RelayMessage>> = HashMap::new();
        let mut good_len = 0u64;
        {
            let mut reader = BufReader::new(&file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| io("cannot read the message log", e))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                let Ok(rec) = serde_json::from_slice::<Record>(&line) else {
                    break;
                };
                let r = match rec {
                    Record::Message(m) => {
                        let r = m.msg_ref;
                        by_recipient
                            .entry(m.recipient_uid.clone())
                            .or_default()
                            .push(m);
                        r
                    }
                    Record::Skip { msg_ref } => msg_ref,
                };
                next_ref = next_ref.max(r.saturating_add(1));
                good_len += n as u64;
            }
        }
        let len = file
            .metadata()
            .map_err(|e| io("cannot stat the message log", e))?
            .len();
        if len != good_len {
            eprintln!(
                "otc-relay: dropping {} bytes of a torn record at the end of {} (never acknowledged)",
                len - good_len,
                path.display()
            );
            file.set_len(good_len)
                .map_err(|e| io("cannot truncate the torn end of the message log", e))?;
            file.sync_all()
                .map_err(|e| io("cannot sync the message log", e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| io("cannot seek the message log", e))?;
        for msgs in by_recipient.values_mut() {
            msgs.sort_by_key(|m| m.msg_ref);
        }
        Ok(Store {
            file,
            path,
            next_ref,
            by_recipient,
            len: good_len,
            broken: false,
        })
    }

    /// The ref the next message will get.
    pub fn next_ref(&self) -> u64 {
        self.next_ref
    }

    /// How many messages `recipient` has stored.
    pub fn mailbox_len(&self, recipient: &str) -> usize {
        self.by_recipient.get(recipient).map_or(0, Vec::len)
    }

    fn append(&mut self, rec: &Record) -> Result<(), RelayFailure> {
        if self.broken {
            return Err(RelayFailure::Storage(format!(
                "an earlier write to {} failed and could not be undone; restart the relay",
                self.path.display()
            )));
        }
        let mut line = serde_json::to_vec(rec)
            .map_err(|e| RelayFailure::Storage(format!("cannot encode a record: {e}")))?;
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut off whatever part of the record got out, so that later
            // records do not follow a torn one.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(RelayFailure::Storage(format!(
                "cannot write {}: {e}",
                self.path.display()
            )));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Stores a message under the next ref, on disk before it returns.
    pub fn push(
        &mut self,
        sender_uid: &str,
        recipient_uid: &str,
        contents: &str,
    ) -> Result<u64, RelayFailure> {
        let m = RelayMessage {
            msg_ref: self.next_ref,
            recipient_uid: recipient_uid.to_owned(),
            sender_uid: sender_uid.to_owned(),
            contents: contents.to_owned(),
        };
        let rec = Record::Message(m);
        self.append(&rec)?;
        self.next_ref += 1;
        if let Record::Message(m) = rec {
            self.by_recipient
                .entry(recipient_uid.to_owned())
                .or_default()
                .push(m);
        }
        Ok(self.next_ref - 1)
    }

    /// Uses up the next ref without storing anything.
    pub fn skip(&mut self) -> Result<u64, RelayFailure> {
        let r = self.next_ref;
        self.append(&Record::Skip { msg_ref: r })?;
        self.next_ref += 1;
        Ok(r)
    }

    /// Up to `max` of `recipient`'s messages with ref >= `start_ref`, and
    /// whether that was all of them.
    pub fn fetch(&self, recipient: &str, start_ref: u64, max: usize) -> (Vec<RelayMessage>, bool) {
        let Some(all) = self.by_recipient.get(recipient) else {
            return (Vec::new(), true);
        };
        let from = all.partition_point(|m| m.msg_ref < start_ref);
        let rest = &all[from..];
        let take = rest.len().min(max);
        (rest[..take].to_vec(), take == rest.len())
    }
}
