//! The presenter: what the device's screen shows of its state, kept apart
//! from the wiring in [`crate::device`] (issue 16, knot 5). Request
//! threads, the UI event thread and the audit flusher tell the
//! [`Presenter`] what happened (an audit entry, a toast, "the home figures
//! moved"); it notes the change and its thread (`otc-presenter`) sends the
//! UI at most one update per frame ([`FRAME`]): only new alert rows, the
//! whole alerts list only after an Acknowledge. The words are otc-ui's
//! ([`otc_ui::texts`]); [`happened`] gives them an audit event's fields.

use crate::audit::{ALERTS_KEPT, Event};
use crate::board;
use crate::device::{Link, contact_details, home_view};
use crate::error::{Error, Result};
use crate::pad::PadStore;
use crate::platform::Platform;
use crate::rpc::Notice;
use otc_ui::texts::{self, Happened};
use otc_ui::{AlertView, HomeView, Toast, ToastKind, UiHandle};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An audit event as the screen tells it (the words are otc-ui's, see
/// [`otc_ui::texts`]), and whether it is red (red ones are the alerts the
/// owner must acknowledge, [`Event::is_alert`]).
pub fn alert_text(e: &Event) -> (String, bool) {
    (texts::alert_text(&happened(e)), e.is_alert())
}

/// The screen's view of an audit event: the fields it shows.
pub(crate) fn happened(e: &Event) -> Happened {
    let c = |s: &String| s.clone();
    match e {
        Event::Approved { action, contact } => Happened::Approved {
            action: c(action),
            contact: c(contact),
        },
        Event::Rejected { action, contact } => Happened::Rejected {
            action: c(action),
            contact: c(contact),
        },
        Event::TimedOut { action, contact } => Happened::TimedOut {
            action: c(action),
            contact: c(contact),
        },
        Event::Cancelled { action, contact } => Happened::Cancelled {
            action: c(action),
            contact: c(contact),
        },
        Event::Sealed { contact, bytes, .. } => Happened::Sealed {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::Opened { contact, bytes, .. } => Happened::Opened {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::IntegrityFailure { contact, index } => Happened::IntegrityFailure {
            contact: c(contact),
            index: *index,
        },
        Event::Replay { contact, index } => Happened::Replay {
            contact: c(contact),
            index: *index,
        },
        Event::Skipped {
            contact,
            bytes,
            messages,
            ..
        } => Happened::Skipped {
            contact: c(contact),
            messages: *messages,
            bytes: *bytes,
        },
        Event::Burned { contact, index, .. } => Happened::Burned {
            contact: c(contact),
            index: *index,
        },
        Event::LockedOut { contact, seconds } => Happened::LockedOut {
            contact: c(contact),
            seconds: *seconds,
        },
        Event::Failed {
            action,
            contact,
            reason,
        } => Happened::Failed {
            action: c(action),
            contact: c(contact),
            reason: c(reason),
        },
        Event::LimitHit { limit, detail } => Happened::LimitHit {
            limit: c(limit),
            detail: c(detail),
        },
        Event::PadCreated { contact, bytes, .. } => Happened::PadCreated {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::PadImported { contact, bytes, .. } => Happened::PadImported {
            contact: c(contact),
            bytes: *bytes,
        },
        Event::PadRemoved { contact, .. } => Happened::PadRemoved {
            contact: c(contact),
        },
        Event::TamperDetected { detail } => Happened::TamperDetected { detail: c(detail) },
        Event::Started { version } => Happened::Started {
            version: c(version),
        },
        Event::Stop => Happened::Stop,
        Event::Ack { alerts } => Happened::Ack { alerts: *alerts },
        Event::Locked { why } => Happened::Locked { why: c(why) },
        Event::Unlocked { failures } => Happened::Unlocked {
            failures: *failures,
        },
        Event::SettingChanged { setting, value } => Happened::SettingChanged {
            setting: c(setting),
            value: c(value),
        },
        Event::Repeated {
            what,
            contact,
            count,
        } => Happened::Repeated {
            what: c(what),
            contact: c(contact),
            count: *count,
        },
    }
}

/// How often, at most, the presenter updates the screen: what changed in
/// between is sent as one update, and drawn as one frame.
const FRAME: Duration = Duration::from_millis(33);

/// The screen-facing side of the device: the alerts list
/// and the home view. Request threads only note what changed (an alert
/// row, a toast, "the home figures moved"); [`present`] sends it to the
/// UI at most once per [`FRAME`], so a burst of requests (a seal brings two
/// audit events, a toast and a home refresh) costs each request a push
/// onto a list, and the UI one model update and one redraw per frame.
///
/// Firmware keeps its own copy of the alerts list ([`Alerts`]): an
/// Acknowledge is checked against it ([`otc_ui::alerts_digest`]). The UI
/// keeps the list it was sent; only new rows are sent
/// (`UiHandle::add_alerts`), the whole list only after an Acknowledge
/// changed it (or was refused). Rows are noted under the list's lock, so
/// the screen's list, once the presenter has sent what is noted, is
/// firmware's, row for row.
pub(crate) struct Presenter {
    pub(crate) ui: UiHandle,
    owner: String,
    pub(crate) store: Arc<PadStore>,
    link: Link,
    platform: Arc<dyn Platform>,
    alerts: Mutex<Alerts>,
    changes: Arc<Changes>,
    /// The status LED's view of the alerts.
    board: Arc<board::BoardStatus>,
    /// The contact whose screen the owner opened last: its facts are sent
    /// again with every home refresh (the screen ignores them once it
    /// shows something else).
    pub(crate) viewing: Mutex<Option<String>>,
    /// An encrypted data directory: the home screen offers **Lock now**
    /// (a plain one has no passphrase to unlock it with).
    pub(crate) lockable: bool,
    /// The messages read and written on the device since the last unlock
    /// (RAM only, cleared when the device locks).
    pub(crate) conversations: crate::conversation::Conversations,
}

/// Firmware's alerts list, newest first, and how many of its alerts the
/// owner has not acknowledged (the home screen's count, the LED).
struct Alerts {
    /// A deque: a new row goes in front at every audit event (two per
    /// seal), which on a `Vec` moved all hundred rows (issue 16).
    rows: VecDeque<AlertView>,
    unacked: u32,
}

/// What changed on screen since the presenter last sent it.
#[derive(Default)]
struct Changed {
    /// The whole alerts list, to replace the screen's; `newer` and
    /// `older` are rows added after it.
    all: Option<Vec<AlertView>>,
    /// New alert rows, oldest first (as they happened).
    newer: Vec<AlertView>,
    /// Rows from before this start, newest first, to go below the rest.
    older: Vec<AlertView>,
    toast: Option<Toast>,
    home: bool,
    /// The presenter is gone: its thread ends.
    closed: bool,
}

impl Changed {
    fn any(&self) -> bool {
        self.all.is_some()
            || !self.newer.is_empty()
            || !self.older.is_empty()
            || self.toast.is_some()
            || self.home
    }
}

/// [`Changed`], shared by the presenter and its thread.
#[derive(Default)]
struct Changes {
    changed: Mutex<Changed>,
    wake: std::sync::Condvar,
}

impl Changes {
    /// Note a change. The presenter's thread waits on `wake` only while
    /// nothing is noted (see [`Changes::next`], which checks under the same
    /// lock), so only the note that ends "nothing noted" wakes it: the rest
    /// of a burst costs no wake-up call (a futex syscall in std's Condvar,
    /// made whether anyone waits or not).
    fn note(&self, f: impl FnOnce(&mut Changed)) {
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        let was_idle = !c.any() && !c.closed;
        f(&mut c);
        let wake = was_idle && (c.any() || c.closed);
        drop(c);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The next changes to send, once there are any and a frame has
    /// passed since `last`; `None` once the presenter is gone.
    fn next(&self, last: std::time::Instant) -> Option<Changed> {
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        while !c.any() && !c.closed {
            c = self.wake.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        if c.closed {
            return None;
        }
        drop(c);
        // Let the rest of a burst join this update.
        std::thread::sleep((last + FRAME).saturating_duration_since(std::time::Instant::now()));
        let mut c = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        Some(std::mem::take(&mut *c))
    }
}

impl Drop for Presenter {
    fn drop(&mut self) {
        self.changes.note(|c| c.closed = true);
    }
}

/// The presenter's thread: sends the noted changes to the UI, at most
/// once per [`FRAME`], until the presenter is gone.
fn present(presenter: std::sync::Weak<Presenter>, changes: Arc<Changes>) {
    let start = std::time::Instant::now();
    let mut last = start.checked_sub(FRAME).unwrap_or(start);
    while let Some(changed) = changes.next(last) {
        let Some(presenter) = presenter.upgrade() else {
            return;
        };
        presenter.send(changed);
        last = std::time::Instant::now();
    }
}

/// What a new [`Presenter`] shows and how.
pub(crate) struct PresenterParts {
    pub(crate) ui: UiHandle,
    pub(crate) owner: String,
    pub(crate) store: Arc<PadStore>,
    pub(crate) link: Link,
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) board: Arc<board::BoardStatus>,
    pub(crate) lockable: bool,
    /// The unacknowledged alerts from the log, newest first.
    pub(crate) unacked: Vec<AlertView>,
}

impl Presenter {
    /// A presenter, with its thread; the screen gets `unacked` as
    /// its alerts list and the home view.
    pub(crate) fn spawn(p: PresenterParts) -> Result<Arc<Presenter>> {
        let changes = Arc::new(Changes::default());
        let unacked = u32::try_from(p.unacked.len()).unwrap_or(u32::MAX);
        p.ui.set_alerts(p.unacked.clone());
        let presenter = Arc::new(Presenter {
            ui: p.ui,
            owner: p.owner,
            store: p.store,
            link: p.link,
            platform: p.platform,
            alerts: Mutex::new(Alerts {
                rows: p.unacked.into(),
                unacked,
            }),
            changes: changes.clone(),
            board: p.board,
            viewing: Mutex::new(None),
            lockable: p.lockable,
            conversations: Default::default(),
        });
        presenter.board.set_unacked_alert(unacked > 0);
        let weak = Arc::downgrade(&presenter);
        std::thread::Builder::new()
            .name("otc-presenter".into())
            .spawn(move || present(weak, changes))
            .map_err(|e| Error::io("cannot start the presenter thread", e))?;
        presenter.refresh_home();
        Ok(presenter)
    }

    /// Send one batch of changes to the UI.
    fn send(&self, mut c: Changed) {
        if let Some(all) = c.all {
            self.ui.set_alerts(all);
        }
        if !c.newer.is_empty() || !c.older.is_empty() {
            c.newer.reverse();
            self.ui.add_alerts(c.newer, c.older, ALERTS_KEPT);
        }
        if c.home {
            // A locked device's home shows nothing of the store, whatever
            // asked for this refresh (an audit event, the link, a refresh
            // noted before a Lock now and sent after it): the board is
            // marked locked before the lock screen comes up and unlocked
            // just before the gate opens again (`LockCtx::spawn_unlock`).
            if self.board.locked() {
                self.ui.set_home(HomeView {
                    locked: true,
                    ..Default::default()
                });
            } else {
                self.ui.set_home(self.home());
                let viewing = self.viewing.lock().ok().and_then(|v| v.clone());
                if let Some(name) = viewing
                    && let Ok(c) = self.store.contact(&name)
                {
                    self.ui.set_contact_details(contact_details(&c));
                }
            }
        }
        if let Some(t) = c.toast {
            self.ui.toast(t);
        }
    }

    pub(crate) fn home(&self) -> HomeView {
        let unacked = self.alerts.lock().map(|a| a.unacked).unwrap_or(0);
        home_view(
            &self.owner,
            &self.store,
            &self.link,
            self.platform.as_ref(),
            unacked,
            self.lockable,
        )
    }

    pub(crate) fn refresh_home(&self) {
        self.changes.note(|c| c.home = true);
    }

    /// The owner opened `name`'s screen: send its facts.
    pub(crate) fn open_contact(&self, name: &str) {
        if let Ok(mut v) = self.viewing.lock() {
            *v = Some(name.to_string());
        }
        match self.store.contact(name) {
            Ok(c) => self.ui.set_contact_details(contact_details(&c)),
            Err(e) => self.ui.toast(texts::failed_toast(name, &e.to_string())),
        }
    }

    pub(crate) fn alert(&self, e: &Event) {
        let (text, severe) = alert_text(e);
        let row = AlertView {
            at: texts::short_time(self.platform.unix_now()),
            text,
            severe,
            // Red alerts wait for the owner's Acknowledge.
            unacked: severe,
        };
        if let Ok(mut a) = self.alerts.lock() {
            a.rows.push_front(row.clone());
            a.rows.truncate(ALERTS_KEPT);
            if severe {
                a.unacked = a.unacked.saturating_add(1);
                self.board.set_unacked_alert(true);
            }
            self.changes.note(|c| {
                c.newer.push(row);
                // Rows beyond what the screen keeps would be cut anyway.
                if c.newer.len() > ALERTS_KEPT {
                    c.newer.drain(..c.newer.len() - ALERTS_KEPT);
                }
                c.home |= severe;
            });
        }
    }

    /// Alerts from before this start, found by the deferred audit check:
    /// below the ones of this run, and unacknowledged.
    pub(crate) fn add_older(&self, entries: &[crate::audit::Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut rows = alert_rows(entries.iter());
        rows.truncate(ALERTS_KEPT);
        if let Ok(mut a) = self.alerts.lock() {
            a.rows.extend(rows.iter().cloned());
            a.rows.truncate(ALERTS_KEPT);
            a.unacked = a
                .unacked
                .saturating_add(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            self.board.set_unacked_alert(a.unacked > 0);
            self.changes.note(|c| {
                c.older.extend(rows);
                c.home = true;
            });
        }
    }

    /// The whole list to the screen (under the list's lock: the rows
    /// noted before are in it).
    fn note_all(&self, a: &Alerts) {
        let all = a.rows.iter().cloned().collect();
        self.changes.note(|c| {
            c.all = Some(all);
            c.newer.clear();
            c.older.clear();
        });
    }

    /// The screen's list again, as firmware has it.
    pub(crate) fn resend_alerts(&self) {
        if let Ok(a) = self.alerts.lock() {
            self.note_all(&a);
        }
    }

    /// The owner tapped Acknowledge with the `n` oldest unacknowledged
    /// alerts on screen: those are acknowledged, no others. Returns how
    /// many were (to be audited).
    /// Nothing when the list is no longer the one the screen showed
    /// (`list`, its [`otc_ui::alerts_digest`]; rows the presenter has not
    /// sent yet count as a change): the screen gets the new list and the
    /// owner acknowledges again.
    pub(crate) fn acknowledge(&self, n: u32, list: u64) -> u32 {
        let mut done = 0;
        if let Ok(mut a) = self.alerts.lock() {
            if otc_ui::alerts_digest(a.rows.make_contiguous()) != list {
                self.note_all(&a);
                return 0;
            }
            for row in a.rows.iter_mut().rev().filter(|r| r.unacked) {
                if done == n {
                    break;
                }
                row.unacked = false;
                done += 1;
            }
            a.unacked = a.unacked.saturating_sub(done);
            self.board.set_unacked_alert(a.unacked > 0);
            self.note_all(&a);
        }
        self.refresh_home();
        done
    }

    /// A toast, unless an error toast not shown yet would be replaced by
    /// a success one.
    pub(crate) fn toast(&self, t: Toast) {
        self.changes.note(|c| {
            let keep_error = c.toast.as_ref().is_some_and(|p| p.kind == ToastKind::Error)
                && t.kind != ToastKind::Error;
            if !keep_error {
                c.toast = Some(t);
            }
        });
    }

    pub(crate) fn notice(&self, n: Notice) {
        match n {
            Notice::Sealed { contact } => self.toast(texts::sealed_toast(&contact)),
            Notice::Opened { contact } => self.toast(texts::opened_toast(&contact)),
            Notice::ReadHere { contact, message } => {
                self.conversations.add(&contact, false, &message);
                crate::read_here::show(&self.ui, &contact, &message)
            }
            Notice::WroteHere { contact, message } => {
                self.conversations.add(&contact, true, &message);
            }
            Notice::Failed { contact, what } => self.toast(texts::failed_toast(&contact, &what)),
            Notice::StateChanged => self.refresh_home(),
            Notice::Audit(e) => {
                match &e {
                    // Back home after a Reject or a timeout, with a word.
                    Event::Rejected { action, contact } => {
                        self.toast(texts::rejected_toast(action, contact));
                    }
                    Event::TimedOut { action, contact } => {
                        self.toast(texts::timed_out_toast(action, contact));
                    }
                    // Nothing of the home screen behind the lock screen,
                    // and the conversations are forgotten.
                    Event::Locked { .. } => {
                        self.conversations.clear();
                        self.refresh_home();
                    }
                    Event::Unlocked { .. } => self.refresh_home(),
                    _ => {}
                }
                self.alert(&e);
            }
        }
    }
}

/// The alerts screen's rows for alerts from the log, newest first.
pub(crate) fn alert_rows<'a>(
    entries: impl DoubleEndedIterator<Item = &'a crate::audit::Entry>,
) -> Vec<AlertView> {
    entries
        .rev()
        .map(|e| {
            let (text, severe) = alert_text(&e.event);
            AlertView {
                at: texts::short_time(e.time),
                text,
                severe,
                unacked: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A burst of notes wakes the presenter's thread, burst after burst,
    /// though only the first note of each makes the wake-up call; and the
    /// whole burst arrives as one batch.
    #[test]
    fn each_burst_wakes_the_waiting_presenter_thread() {
        let changes = Arc::new(Changes::default());
        let (tx, rx) = mpsc::channel();
        let theirs = changes.clone();
        let thread = std::thread::spawn(move || {
            // No frame to wait out: each batch is taken as soon as noted.
            let past = || {
                Instant::now()
                    .checked_sub(FRAME)
                    .unwrap_or_else(Instant::now)
            };
            while let Some(c) = theirs.next(past()) {
                tx.send((c.home, c.newer.len())).unwrap();
            }
        });
        for burst in 0..3 {
            // Long enough, on an idle machine, for the thread to be waiting
            // again; the assertions hold whether it is or not.
            std::thread::sleep(Duration::from_millis(20));
            let row = AlertView {
                at: "12:00".into(),
                text: format!("burst {burst}"),
                severe: false,
                unacked: false,
            };
            changes.note(|c| c.newer.push(row.clone()));
            changes.note(|c| c.newer.push(row));
            changes.note(|c| c.home = true);
            let mut got = (false, 0);
            while got != (true, 2) {
                let (home, rows) = rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| {
                        panic!("burst {burst}: the presenter thread was not woken")
                    });
                got = (got.0 || home, got.1 + rows);
            }
        }
        changes.note(|c| c.closed = true);
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("the presenter thread did not end once closed");
    }
}
