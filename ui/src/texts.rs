//! The words the device's screens show about what happened: alert rows,
//! toasts and alert times. With `screens.rs` (which makes everything else
//! a screen shows), every string on the screen is made in otc-ui.
//!
//! The firmware describes an event as a [`Happened`] (plain data, no pad
//! bytes) and takes the text from here; it never formats screen text
//! itself. otc-ui does not depend on the firmware, so [`Happened`] mirrors
//! the audit events field for field, keeping only what is shown.

use crate::model::Toast;

/// Something that happened on the device, as the alerts screen tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happened {
    Approved {
        action: String,
        contact: String,
    },
    Rejected {
        action: String,
        contact: String,
    },
    TimedOut {
        action: String,
        contact: String,
    },
    /// The client hung up while the prompt waited.
    Cancelled {
        action: String,
        contact: String,
    },
    Sealed {
        contact: String,
        bytes: u64,
    },
    Opened {
        contact: String,
        bytes: u64,
    },
    IntegrityFailure {
        contact: String,
        index: u64,
    },
    Replay {
        contact: String,
        index: u64,
    },
    /// `messages`: how many never arrived (0 when only `bytes`, the
    /// skipped pad, is known).
    Skipped {
        contact: String,
        messages: u64,
        bytes: u64,
    },
    Burned {
        contact: String,
        index: u64,
    },
    LockedOut {
        contact: String,
        seconds: u64,
    },
    /// A seal or open (`action`) the owner approved did not complete.
    Failed {
        action: String,
        contact: String,
        reason: String,
    },
    LimitHit {
        limit: String,
        detail: String,
    },
    PadCreated {
        contact: String,
        bytes: u64,
    },
    PadImported {
        contact: String,
        bytes: u64,
    },
    PadRemoved {
        contact: String,
    },
    TamperDetected {
        detail: String,
    },
    Started {
        version: String,
    },
    Stop,
    Ack {
        alerts: u64,
    },
    Repeated {
        what: String,
        contact: String,
        count: u64,
    },
}

/// The alerts screen's text for `h`.
pub fn alert_text(h: &Happened) -> String {
    match h {
        Happened::Approved { action, contact } => format!("Approved: {action} for {contact}"),
        Happened::Rejected { action, contact } => format!("Rejected: {action} for {contact}"),
        Happened::TimedOut { action, contact } => format!("Timed out: {action} for {contact}"),
        Happened::Cancelled { action, contact } => {
            format!("Computer hung up: {action} for {contact}")
        }
        Happened::Sealed { contact, bytes } => format!("Sealed {bytes} bytes for {contact}"),
        Happened::Opened { contact, bytes } => format!("Opened {bytes} bytes from {contact}"),
        Happened::IntegrityFailure { contact, index } => {
            format!("Package from {contact} failed verification (pad index {index})")
        }
        Happened::Replay { contact, index } => {
            format!("Replayed package from {contact} refused (pad index {index})")
        }
        Happened::Skipped {
            contact,
            messages: 0,
            bytes,
        } => {
            format!("Messages from {contact} were skipped ({bytes} pad bytes)")
        }
        Happened::Skipped {
            contact, messages, ..
        } => {
            format!("{messages} earlier messages from {contact} never arrived")
        }
        Happened::Burned { contact, index } => {
            format!("Pad range at {index} for {contact} burned after repeated failures")
        }
        Happened::LockedOut { contact, seconds } => {
            format!("{contact} locked out for {seconds} s after failed packages")
        }
        Happened::Failed {
            action,
            contact,
            reason,
        } => {
            let mut a = action.chars();
            let action: String = a
                .next()
                .map(|c| c.to_uppercase().chain(a).collect())
                .unwrap_or_default();
            format!("{action} for {contact} failed: {reason}")
        }
        Happened::LimitHit { limit, detail } => format!("Limit hit: {limit} ({detail})"),
        Happened::PadCreated { contact, bytes } => {
            format!("Pad created for {contact} ({bytes} bytes)")
        }
        Happened::PadImported { contact, bytes } => {
            format!("Pad imported for {contact} ({bytes} bytes)")
        }
        Happened::PadRemoved { contact } => format!("Pad for {contact} erased"),
        Happened::TamperDetected { detail } => format!("AUDIT LOG DAMAGED: {detail}"),
        Happened::Started { version } => format!("Device started (version {version})"),
        Happened::Stop => "Device stopped".to_string(),
        Happened::Ack { alerts: 1 } => "1 alert acknowledged".to_string(),
        Happened::Ack { alerts } => format!("{alerts} alerts acknowledged"),
        Happened::Repeated {
            what,
            contact,
            count,
        } if contact.is_empty() => {
            format!("{count} more {what} (rate limit)")
        }
        Happened::Repeated {
            what,
            contact,
            count,
        } => format!("{count} more {what} from {contact} refused (rate limit)"),
    }
}

/// The toast after an approved seal.
pub fn sealed_toast(contact: &str) -> Toast {
    Toast::success(format!("Sealed for {contact}"))
}

/// The toast after an approved open.
pub fn opened_toast(contact: &str) -> Toast {
    Toast::success(format!("Opened from {contact}"))
}

/// The toast after the owner tapped Reject (`action`: seal or open).
pub fn rejected_toast(action: &str, contact: &str) -> Toast {
    Toast::info(format!("Rejected: {action} for {contact}; nothing spent"))
}

/// The toast after a prompt nobody answered.
pub fn timed_out_toast(action: &str, contact: &str) -> Toast {
    Toast::info(format!("Timed out: {action} for {contact}; nothing spent"))
}

/// The toast for a failure, about `contact` if there is one (empty: none).
pub fn failed_toast(contact: &str, what: &str) -> Toast {
    if contact.is_empty() {
        Toast::error(what)
    } else {
        Toast::error(format!("{contact}: {what}"))
    }
}

/// `D Mon HH:MM` (UTC) for a unix time, for the alerts list: the month
/// by name, so that no reader takes 12-04 for the 12th of April.
pub fn short_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = MONTHS
        .get(usize::try_from(month - 1).unwrap_or(0))
        .unwrap_or(&"?");
    format!("{day} {name} {:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToastKind;

    #[test]
    fn short_time_is_utc_civil_time() {
        assert_eq!(short_time(0), "1 Jan 00:00");
        // 2026-11-22 05:41:00 UTC
        assert_eq!(short_time(1_795_326_060), "22 Nov 05:41");
        // 2024-02-29 23:59 UTC (leap day)
        assert_eq!(short_time(1_709_251_140), "29 Feb 23:59");
        // 2026-12-04 06:00 UTC: not "12-04" (issue 15)
        assert_eq!(short_time(1_796_364_000), "4 Dec 06:00");
    }

    #[test]
    fn alert_texts() {
        assert_eq!(
            alert_text(&Happened::Cancelled {
                action: "seal".into(),
                contact: "bob".into()
            }),
            "Computer hung up: seal for bob"
        );
        assert_eq!(alert_text(&Happened::Stop), "Device stopped");
        assert_eq!(
            alert_text(&Happened::Ack { alerts: 1 }),
            "1 alert acknowledged"
        );
        assert_eq!(
            alert_text(&Happened::Ack { alerts: 2 }),
            "2 alerts acknowledged"
        );
        assert_eq!(
            alert_text(&Happened::Repeated {
                what: "packages".into(),
                contact: "bob".into(),
                count: 3
            }),
            "3 more packages from bob refused (rate limit)"
        );
        assert_eq!(
            alert_text(&Happened::Repeated {
                what: "requests".into(),
                contact: String::new(),
                count: 4
            }),
            "4 more requests (rate limit)"
        );
    }

    #[test]
    fn toasts() {
        assert_eq!(sealed_toast("bob").text, "Sealed for bob");
        assert_eq!(opened_toast("bob").kind, ToastKind::Success);
        assert_eq!(failed_toast("", "audit log: full").text, "audit log: full");
        let t = failed_toast("bob", "refused");
        assert_eq!(
            (t.kind, t.text.as_str()),
            (ToastKind::Error, "bob: refused")
        );
    }
}
