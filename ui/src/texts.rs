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
    Locked {
        why: String,
    },
    Unlocked {
        failures: u64,
    },
    SettingChanged {
        setting: String,
        value: String,
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
        Happened::Locked { why } if why == "idle" => "Device locked (idle)".to_string(),
        Happened::Locked { .. } => "Device locked".to_string(),
        Happened::Unlocked { failures: 0 } => "Device unlocked".to_string(),
        Happened::Unlocked { failures: 1 } => {
            "Device unlocked after 1 wrong passphrase".to_string()
        }
        Happened::Unlocked { failures } => {
            format!("Device unlocked after {failures} wrong passphrases")
        }
        Happened::SettingChanged { setting, value } => {
            format!("Setting changed: {setting} = {value}")
        }
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
    let (_, month, day) = civil_date(unix);
    let secs = unix % 86_400;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = MONTHS
        .get(usize::try_from(month - 1).unwrap_or(0))
        .unwrap_or(&"?");
    format!("{day} {name} {:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

/// `YYYY-MM-DD` (UTC) for a unix time, e.g. when a pad was made.
pub fn date(unix: u64) -> String {
    let (year, month, day) = civil_date(unix);
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month, day) of a unix time, UTC (proleptic Gregorian).
fn civil_date(unix: u64) -> (i64, i64, i64) {
    let days = (unix / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why a contact name is refused, as the keyboard says it. The rule is
/// the pad store's (firmware decides which applies; see the keyboard's
/// [`crate::keyboard::TextCheck`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong {
        max: usize,
    },
    StartsWithDot,
    /// The first character outside the allowed ones.
    BadChar(char),
    /// Another contact has this name.
    Taken,
    /// Refused by a rule none of the above names.
    NotAllowed,
}

/// The keyboard's words for a refused name.
pub fn name_problem(p: &NameProblem) -> String {
    const ALLOWED: &str = "letters, digits and . _ - @";
    match p {
        NameProblem::Empty => "Type a name first.".into(),
        NameProblem::TooLong { max } => format!("Too long: at most {max} characters."),
        NameProblem::StartsWithDot => "A name cannot start with a dot.".into(),
        NameProblem::BadChar(' ') => format!("No spaces in a name: only {ALLOWED}."),
        NameProblem::BadChar(c) => {
            let c = if c.is_control() {
                format!("U+{:04X}", u32::from(*c))
            } else {
                c.to_string()
            };
            format!("“{c}” cannot be in a name: only {ALLOWED}.")
        }
        NameProblem::Taken => "You already have a contact with this name.".into(),
        NameProblem::NotAllowed => {
            format!("Not a valid name: 1 to 64 of {ALLOWED}, not starting with a dot.")
        }
    }
}

/// The toast after a contact and its pad were removed.
pub fn removed_toast(contact: &str) -> Toast {
    Toast::success(format!("Removed {contact}; the pad is erased"))
}

/// The toast when a removal must wait for the request on screen.
pub fn remove_busy_toast(contact: &str) -> Toast {
    failed_toast(
        contact,
        "not removed while a request waits for your answer; try again",
    )
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
    fn dates_are_utc_civil_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_326_060), "2026-11-22");
        assert_eq!(date(1_709_251_140), "2024-02-29");
        // 2000-03-01 00:00:00 UTC: after a leap day in a year that is a
        // multiple of 400.
        assert_eq!(date(951_868_800), "2000-03-01");
    }

    #[test]
    fn name_problems_say_what_is_wrong() {
        assert_eq!(name_problem(&NameProblem::Empty), "Type a name first.");
        assert!(name_problem(&NameProblem::TooLong { max: 64 }).contains("at most 64"));
        assert!(name_problem(&NameProblem::BadChar(' ')).starts_with("No spaces"));
        assert!(name_problem(&NameProblem::BadChar('!')).starts_with("“!”"));
        // A control character is not put on the screen as it is.
        assert!(!name_problem(&NameProblem::BadChar('\u{7}')).contains('\u{7}'));
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
