//! The audit log as the endpoint's threads share it, one of the jobs
//! [`crate::rpc::Service`] used to do itself (issue 16): request threads,
//! the front layer, the lock screen and the audit flusher all write
//! through one [`Auditor`], which owns the log behind a mutex and tells the
//! screen of each entry ([`Notice::Audit`]) and of a write that failed.
//!
//! Which events are written at all (limit hits past their share) is the
//! policy's to say ([`super::policy`]); the auditor writes what it is given.

use super::Notice;
use crate::audit::{AuditError, AuditLog, Entry, Event, Scan};
use std::sync::{Mutex, MutexGuard};

/// The audit log and the screen's ear.
pub(crate) struct Auditor {
    log: Mutex<AuditLog>,
    notify: Box<dyn Fn(Notice) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Auditor {
    pub(crate) fn new(log: AuditLog, notify: Box<dyn Fn(Notice) + Send + Sync>) -> Self {
        Auditor {
            log: Mutex::new(log),
            notify,
        }
    }

    /// Tell the screen something.
    pub(crate) fn notify(&self, notice: Notice) {
        (self.notify)(notice)
    }

    /// Write `event` (with any line held before it, in one write) and
    /// tell the screen. A write that fails is reported on the screen; the
    /// caller's outcome stands.
    pub(crate) fn write(&self, event: Event) {
        self.append(event, true)
    }

    /// Append `event` and tell the screen, but let its line wait in memory
    /// for the next [`write`](Self::write), [`write_out`](Self::write_out)
    /// or flush: a request that audits again before it is answered (a
    /// seal: approved, then sealed or failed) writes its lines once.
    pub(crate) fn hold(&self, event: Event) {
        self.append(event, false)
    }

    fn append(&self, event: Event, write_out: bool) {
        let done = {
            let mut log = lock(&self.log);
            if write_out {
                log.append(event.clone())
            } else {
                log.hold(event.clone())
            }
        };
        if let Err(e) = done {
            self.failed(&e);
        }
        self.notify(Notice::Audit(event));
    }

    /// Write out the lines held ([`hold`](Self::hold)), if any.
    pub(crate) fn write_out(&self) {
        if let Err(e) = lock(&self.log).write_out() {
            self.failed(&e);
        }
    }

    /// Make routine entries durable: begun under the log's lock, synced
    /// outside it, so requests append their entries while the disk syncs.
    pub(crate) fn flush(&self) {
        let flush = lock(&self.log).begin_flush();
        if let Some(Err(e)) = flush.map(|f| f.complete()) {
            self.failed(&e);
        }
    }

    /// The screen hears of an audit write that failed.
    pub(crate) fn failed(&self, e: &AuditError) {
        self.notify(Notice::Failed {
            contact: String::new(),
            what: format!("audit log: {e}"),
        });
    }

    /// The deferred chain check is done ([`AuditLog::checked`]): the older
    /// unacknowledged alerts, and the damage found, if any (not yet
    /// written: the caller audits it).
    pub(crate) fn checked(&self, scan: Scan) -> (Vec<Entry>, Option<String>) {
        lock(&self.log).checked(scan)
    }

    /// Give up the log (to write the `stop` entry after the store closed).
    pub(crate) fn into_log(self) -> AuditLog {
        self.log.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}
