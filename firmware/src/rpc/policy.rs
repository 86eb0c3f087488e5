//! The endpoint's lockout and rate policy, one of the jobs
//! [`crate::rpc::Service`] used to do itself (issue 16):
//!
//! - **Lockout**: a contact whose approved opens failed
//!   `limits.lockout_failures` times is refused for `limits.lockout_seconds`.
//! - **Refused packages** (replays, forgeries, junk) from one contact are
//!   answered one by one up to `limits.refused_per_minute` per minute; past
//!   that they are `rate_limited` and summed up in one `repeated` entry.
//! - **Limit hits** (from the front layer or the endpoint) are audited one
//!   by one up to the same share per limit and minute, the rest summed up.
//!   This is the one throttle of limit hits; it reads the platform clock.
//!
//! The policy keeps counts and says what to audit (the [`Event`]s it
//! returns); it writes nothing itself, so it depends on no log.

use crate::audit::Event;
use crate::config::Limits;
use crate::confirm::Clock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct Lockout {
    failures: u32,
    until: Option<Duration>,
}

/// The rate limit's window for refused packages and limit hits.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Refused packages from one contact (or hits of one limit) in the
/// current window.
#[derive(Default)]
struct Refusals {
    since: Duration,
    count: u32,
    /// Requests refused by the rate limit, not yet in the audit log.
    suppressed: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` on `key`'s window in `map`, starting the window afresh first if
/// the last one is over. Returns `f`'s result and the number of requests
/// the ended window suppressed (for the caller's summary entry; 0 if none).
fn in_window<T>(
    map: &Mutex<HashMap<String, Refusals>>,
    key: &str,
    now: Duration,
    f: impl FnOnce(&mut Refusals) -> T,
) -> (T, u64) {
    let mut all = lock(map);
    let r = all.entry(key.to_string()).or_default();
    let mut summary = 0;
    if now >= r.since + REFUSAL_WINDOW {
        summary = std::mem::take(&mut r.suppressed);
        *r = Refusals {
            since: now,
            ..Refusals::default()
        };
    }
    (f(r), summary)
}

/// The `repeated` entry for `count` hits of `limit` not logged one by one.
fn limit_summary(limit: &str, count: u64) -> Event {
    Event::Repeated {
        what: format!("{limit} limit hits"),
        contact: String::new(),
        count,
    }
}

/// The `repeated` entry for `count` packages from `contact` refused by the
/// rate limit.
fn refusals_summary(contact: &str, count: u64) -> Event {
    Event::Repeated {
        what: "packages".into(),
        contact: contact.to_string(),
        count,
    }
}

/// Lockouts, refusal windows and limit-hit windows, on one clock.
pub(crate) struct Policy {
    clock: Arc<dyn Clock>,
    refused_per_minute: u32,
    lockout_failures: u32,
    lockout_seconds: u64,
    lockouts: Mutex<HashMap<String, Lockout>>,
    refusals: Mutex<HashMap<String, Refusals>>,
    /// Limit hits per limit name in the current window (same scheme).
    limit_hits: Mutex<HashMap<String, Refusals>>,
}

impl Policy {
    /// The policy of `limits`, reading `clock` (the platform's monotonic
    /// clock).
    pub(crate) fn new(clock: Arc<dyn Clock>, limits: &Limits) -> Self {
        Policy {
            clock,
            refused_per_minute: limits.refused_per_minute,
            lockout_failures: limits.lockout_failures,
            lockout_seconds: limits.lockout_seconds,
            lockouts: Mutex::default(),
            refusals: Mutex::default(),
            limit_hits: Mutex::default(),
        }
    }

    /// Counts a hit of `limit`: whether it is to be logged (false once
    /// this window has had its share), and the summary of the window that
    /// just ended, if it suppressed any.
    pub(crate) fn limit_hit(&self, limit: &str) -> (bool, Option<Event>) {
        let share = self.refused_per_minute;
        let (logged, summary) = in_window(&self.limit_hits, limit, self.clock.now(), |r| {
            r.count = r.count.saturating_add(1);
            let logged = r.count <= share;
            if !logged {
                r.suppressed += 1;
            }
            logged
        });
        (logged, (summary > 0).then(|| limit_summary(limit, summary)))
    }

    /// A replay or a refused package from `contact`: counts towards the
    /// rate limit. Returns the summary of the window that just ended.
    pub(crate) fn refused(&self, contact: &str) -> Option<Event> {
        self.with_refusals(contact, |r| r.count = r.count.saturating_add(1))
            .1
    }

    /// Seconds until `contact` may send packages again, if it sent too
    /// many refused ones in this window (this request is counted, not
    /// audited one by one); and the summary of the window that just ended.
    pub(crate) fn rate_limited(&self, contact: &str) -> (Option<u64>, Option<Event>) {
        let now = self.clock.now();
        let limit = self.refused_per_minute;
        self.with_refusals(contact, |r| {
            (r.count >= limit).then(|| {
                r.suppressed += 1;
                (r.since + REFUSAL_WINDOW)
                    .saturating_sub(now)
                    .as_secs()
                    .max(1)
            })
        })
    }

    fn with_refusals<T>(
        &self,
        contact: &str,
        f: impl FnOnce(&mut Refusals) -> T,
    ) -> (T, Option<Event>) {
        let (out, summary) = in_window(&self.refusals, contact, self.clock.now(), f);
        (
            out,
            (summary > 0).then(|| refusals_summary(contact, summary)),
        )
    }

    /// One `repeated` entry per contact, then per limit, for the requests
    /// the rate limits refused: for windows that are over, or all of them
    /// (`all`, at stop).
    pub(crate) fn due_summaries(&self, all: bool) -> Vec<Event> {
        let now = self.clock.now();
        let due = |map: &Mutex<HashMap<String, Refusals>>| -> Vec<(String, u64)> {
            lock(map)
                .iter_mut()
                .filter(|(_, r)| r.suppressed > 0 && (all || now >= r.since + REFUSAL_WINDOW))
                .map(|(k, r)| (k.clone(), std::mem::take(&mut r.suppressed)))
                .collect()
        };
        let packages = due(&self.refusals)
            .into_iter()
            .map(|(contact, count)| refusals_summary(&contact, count));
        let limits = due(&self.limit_hits)
            .into_iter()
            .map(|(limit, count)| limit_summary(&limit, count));
        packages.chain(limits).collect()
    }

    /// True while `contact` is locked out.
    pub(crate) fn locked_out(&self, contact: &str) -> bool {
        let now = self.clock.now();
        let mut l = lock(&self.lockouts);
        match l.get_mut(contact) {
            Some(Lockout {
                until: Some(until), ..
            }) if now < *until => true,
            Some(entry) => {
                entry.until = None;
                false
            }
            None => false,
        }
    }

    /// An approved open from `contact` failed: counts towards the lockout.
    /// Returns the `locked_out` entry if this one locked it out.
    pub(crate) fn open_failed(&self, contact: &str) -> Option<Event> {
        let mut l = lock(&self.lockouts);
        let e = l.entry(contact.to_string()).or_default();
        e.failures += 1;
        if e.failures < self.lockout_failures {
            return None;
        }
        e.failures = 0;
        e.until = Some(self.clock.now() + Duration::from_secs(self.lockout_seconds));
        Some(Event::LockedOut {
            contact: contact.to_string(),
            seconds: self.lockout_seconds,
        })
    }

    /// An open from `contact` succeeded: its failures are forgotten.
    pub(crate) fn opened(&self, contact: &str) {
        lock(&self.lockouts).remove(contact);
    }
}
