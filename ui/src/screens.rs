//! From view models to screen content: every string a screen shows is made
//! here (or, for alert rows, toasts and alert times, in [`crate::texts`]),
//! handed to the Slint globals, and kept as the trace's texts.

use crate::choice::{ChoiceRequest, MAX_CHOICES, TARGET_SIZE, Target};
use crate::format;
use crate::generated::{
    AboutData, AlertRow, AlertsData, AppWindow, ButtonInfo, ChoiceData, ContactData, ContactRow,
    FactRow, HomeData, KeyboardData, ProgressData, PromptData, ToastData,
};
use crate::keyboard::{Key, KeyboardLayout, TextKind, TextRequest, Typing};
use crate::model::{
    AboutView, AlertView, ContactDetailsView, ContactView, HomeView, MessageView, ProgressView,
    Prompt, Toast, ToastKind, WarningView,
};
use slint::{ComponentHandle, Model, ModelRc, SharedString, VecModel};

/// Size class of the screen, which decides how much fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub compact: bool,
}

impl Layout {
    pub fn for_size(width: u32, height: u32) -> Self {
        Layout {
            compact: width < 640 || height < 400,
        }
    }
    /// Contact rows the home screen shows at most, with the "+ N more"
    /// line below them when there are more: the header (name, About and
    /// Alerts, the link's own line) and the row of New contact and Import
    /// contact below leave room for 2 rows and that line at both sizes,
    /// not for 3 rows (see HomeScreen in screens.slint). More pages on.
    pub fn max_rows(&self) -> usize {
        2
    }
    /// Alert rows a page of the alerts screen shows (a row of buttons
    /// below them: Up, Down, Acknowledge).
    pub fn alert_rows(&self) -> usize {
        if self.compact { 3 } else { 5 }
    }
}

fn s(x: &str) -> SharedString {
    SharedString::from(x)
}

/// The list model for a repeater that shows `current` now: `current`
/// itself with `v` put in place when it is one of ours, else a new one.
///
/// In place, a row that did not change keeps its Slint item and a changed
/// one is updated, not rebuilt. A finger on a row (a contact, a key, a
/// choice) while the screen is refreshed under it (a seal's new bytes
/// left, a toast) therefore still clicks when it lifts: a new model would
/// have dropped the pressed item, and the tap with it.
fn in_place<T: Clone + PartialEq + 'static>(current: ModelRc<T>, v: Vec<T>) -> ModelRc<T> {
    let Some(m) = current.as_any().downcast_ref::<VecModel<T>>() else {
        return ModelRc::new(VecModel::from(v));
    };
    let n = v.len();
    for (i, row) in v.into_iter().enumerate() {
        if i >= m.row_count() {
            m.push(row);
        } else if m.row_data(i).as_ref() != Some(&row) {
            m.set_row_data(i, row);
        }
    }
    while m.row_count() > n {
        m.remove(m.row_count() - 1);
    }
    current
}

/// The first row of the home screen's page that starts at `top` (kept
/// inside the list; a page past the end starts again at the first row).
pub(crate) fn home_top(layout: Layout, n: usize, top: usize) -> usize {
    if top >= n {
        0
    } else {
        top / layout.max_rows() * layout.max_rows()
    }
}

/// How many contact rows the home screen shows for `n` contacts from row
/// `top` (the rest are counted in "+ N more contacts").
pub(crate) fn home_rows_shown(layout: Layout, n: usize, top: usize) -> usize {
    n.saturating_sub(home_top(layout, n, top))
        .min(layout.max_rows())
}

/// Home's line about the cable: connected or not, the address, and
/// "Not encrypted" first on a card without a passphrase.
fn home_link_text(home: &HomeView) -> String {
    let link = match (home.link.up, &home.link.address) {
        _ if home.link.loopback => format!(
            "Development: loopback only · {}",
            home.link.address.as_deref().unwrap_or("no address")
        ),
        (true, Some(a)) => format!("Ethernet connected · {a}"),
        (true, None) => "Ethernet connected · no address".to_string(),
        (false, _) => "Ethernet not connected".to_string(),
    };
    // A card without a passphrase says so on every home screen.
    if home.not_encrypted {
        format!("Not encrypted · {link}")
    } else {
        link
    }
}

/// One contact's row on home (name, pad left, the bar), with its name
/// and detail texts.
fn contact_row(c: &ContactView) -> (ContactRow, String, String) {
    let fraction = if c.pad_total_bytes == 0 || c.damaged {
        0.0
    } else {
        (c.pad_left_bytes as f64 / c.pad_total_bytes as f64) as f32
    };
    let name = format::untrusted(&c.name, 32);
    let detail = if c.damaged {
        "Pad damaged · cannot be used".to_string()
    } else {
        format!(
            "{} left · {}",
            format::bytes(c.pad_left_bytes),
            format::messages(c.messages_left)
        )
    };
    let row = ContactRow {
        name: s(&name),
        detail: s(&detail),
        fraction,
        low: fraction < 0.1,
    };
    (row, name, detail)
}

/// "+ N more contacts" when not all of `total` fit in the `shown` rows.
fn more_contacts_text(total: usize, shown: usize) -> String {
    if total > shown {
        let n = total - shown;
        format!("+ {n} more contact{}", if n == 1 { "" } else { "s" })
    } else {
        String::new()
    }
}

/// Shows `home` from contact row `top` and returns its texts.
pub(crate) fn apply_home(
    app: &AppWindow,
    layout: Layout,
    home: &HomeView,
    top: usize,
) -> Vec<String> {
    let d = app.global::<HomeData>();
    if home.locked {
        return apply_locked_home(&d);
    }
    let mut texts = Vec::new();
    let owner = if home.owner.trim().is_empty() {
        "One Time Chat".to_string()
    } else {
        format::untrusted(&home.owner, 40)
    };
    let link = home_link_text(home);
    let alerts = if home.unseen_alerts > 0 {
        format!("Alerts ({})", home.unseen_alerts)
    } else {
        "Alerts".to_string()
    };
    d.set_owner(s(&owner));
    d.set_link_up(home.link.up);
    d.set_link_text(s(&link));
    d.set_alerts_label(s(&alerts));
    d.set_alerts_unseen(home.unseen_alerts > 0);
    d.set_about_label(s("About"));
    d.set_lock_label(s(if home.lockable { "Lock now" } else { "" }));
    texts.push(owner);
    texts.push(link);

    let top = home_top(layout, home.contacts.len(), top);
    let shown = home_rows_shown(layout, home.contacts.len(), top);
    let mut rows = Vec::new();
    for c in &home.contacts[top..top + shown] {
        let (row, name, detail) = contact_row(c);
        texts.push(name);
        texts.push(detail);
        rows.push(row);
    }
    d.set_contacts(in_place(d.get_contacts(), rows));
    d.set_first_index(i32::try_from(top).unwrap_or(i32::MAX));
    let more = more_contacts_text(home.contacts.len(), shown);
    let empty = if home.contacts.is_empty() {
        "No contacts yet. Tap New contact to make a pad, or Import contact.".to_string()
    } else {
        String::new()
    };
    d.set_new_label(s("New contact"));
    d.set_import_label(s("Import contact"));
    d.set_more_label(s(if more.is_empty() { "" } else { "More" }));
    for t in [&more, &empty] {
        if !t.is_empty() {
            texts.push(t.clone());
        }
    }
    d.set_more_text(s(&more));
    d.set_empty_text(s(&empty));
    texts
}

/// The home of a locked device: "Locked", one line, and no button (every
/// label empty hides its button, and the trace leaves it out).
fn apply_locked_home(d: &HomeData<'_>) -> Vec<String> {
    let (title, line) = ("Locked", "Unlock this device on its lock screen.");
    d.set_owner(s(title));
    d.set_link_up(false);
    d.set_link_text(s(""));
    d.set_alerts_label(s(""));
    d.set_alerts_unseen(false);
    d.set_about_label(s(""));
    d.set_lock_label(s(""));
    d.set_contacts(in_place(d.get_contacts(), Vec::new()));
    d.set_first_index(0);
    d.set_new_label(s(""));
    d.set_import_label(s(""));
    d.set_more_label(s(""));
    d.set_more_text(s(""));
    d.set_empty_text(s(line));
    vec![title.to_string(), line.to_string()]
}

/// The screen name of a prompt.
pub(crate) fn prompt_screen(p: &Prompt) -> &'static str {
    match p {
        Prompt::Seal { .. } => "confirm-seal",
        Prompt::Open { .. } => "confirm-open",
        Prompt::Pair { .. } => "pairing",
    }
}

/// The words a changed request starts with (see
/// [`crate::UiConfig::changed_arm_delay`]).
pub const CHANGED: &str = "The request changed:";

fn note_text(note: &Option<String>) -> String {
    match note {
        Some(n) if !n.trim().is_empty() => {
            format!("From the computer: “{}”", format::untrusted(n, 120))
        }
        _ => String::new(),
    }
}

pub(crate) fn warning_text(w: &WarningView) -> String {
    match w {
        WarningView::Replay { index } => {
            format!("⚠ Replay: message #{index} was already opened once")
        }
        WarningView::Skipped { count } => format!(
            "⚠ Skipped: {} earlier message{} never arrived",
            format::count(*count),
            if *count == 1 { "" } else { "s" }
        ),
    }
}

/// Characters per line and lines per page of a message on confirm-seal:
/// a line is cut where even the widest glyphs of DejaVu Sans at the
/// caption size fit the box for ordinary text (a line of only the widest
/// glyphs, such as "WWW", is wrapped by the screen instead of clipped),
/// and the page leaves the buttons on screen at both sizes (see the
/// golden PNGs confirm-seal-message-*).
pub(crate) fn message_geometry(layout: Layout) -> (usize, usize) {
    if layout.compact { (44, 2) } else { (54, 3) }
}

/// Shows the message part of a seal prompt (from line `top`); returns its
/// texts and the first line shown.
fn apply_message(
    d: &PromptData<'_>,
    layout: Layout,
    message: Option<&MessageView>,
    top: usize,
) -> (Vec<String>, usize) {
    let Some(message) = message else {
        d.set_message_header(s(""));
        d.set_message_lines(in_place(d.get_message_lines(), Vec::new()));
        d.set_message_notes(in_place(d.get_message_notes(), Vec::new()));
        d.set_message_up_label(s(""));
        d.set_message_down_label(s(""));
        return (Vec::new(), 0);
    };
    let (width, rows) = message_geometry(layout);
    let page = crate::message::page(message, width, rows, top);
    let mut texts = vec![page.header.clone()];
    texts.extend(page.lines.iter().cloned());
    texts.extend(page.notes.iter().cloned());
    d.set_message_header(s(&page.header));
    d.set_message_lines(in_place(
        d.get_message_lines(),
        page.lines.iter().map(|l| s(l)).collect(),
    ));
    d.set_message_notes(in_place(
        d.get_message_notes(),
        page.notes.iter().map(|l| s(l)).collect(),
    ));
    d.set_message_up_label(s(if page.can_up { "Up" } else { "" }));
    d.set_message_down_label(s(if page.can_down { "Down" } else { "" }));
    (texts, page.top)
}

/// What a prompt shows besides its message and countdown, before the
/// untrusted name is cut and the title marked as changed.
struct PromptFacts {
    title: &'static str,
    who_label: &'static str,
    who: String,
    facts: Vec<(&'static str, String)>,
    warnings: Vec<String>,
    fingerprint_rows: Vec<String>,
    note: String,
    approve: &'static str,
    reject: &'static str,
}

impl PromptFacts {
    /// A question about `who`, with no facts, warnings or fingerprint.
    fn question(
        title: &'static str,
        who_label: &'static str,
        who: &str,
        note: String,
        (approve, reject): (&'static str, &'static str),
    ) -> Self {
        PromptFacts {
            title,
            who_label,
            who: who.to_string(),
            facts: Vec::new(),
            warnings: Vec::new(),
            fingerprint_rows: Vec::new(),
            note,
            approve,
            reject,
        }
    }
}

/// The facts of each kind of prompt: what is asked, about whom, and the
/// labels of its two buttons.
fn prompt_facts(p: &Prompt) -> PromptFacts {
    let yes_no = ("Approve", "Reject");
    match p {
        Prompt::Seal {
            contact,
            client_note,
            message,
            ..
        } => {
            let title = match message {
                None => "Encrypt a message?",
                Some(_) => "Encrypt this message?",
            };
            let note = note_text(client_note);
            PromptFacts {
                facts: seal_facts(p),
                ..PromptFacts::question(title, "To", contact, note, yes_no)
            }
        }
        Prompt::Open {
            contact,
            cost_bytes,
            warnings,
            client_note,
            for_laptop,
            ..
        } => PromptFacts {
            facts: vec![("Pad used", format::bytes(*cost_bytes))],
            warnings: warnings.iter().map(warning_text).collect(),
            // A private contact: no way to give the laptop the text.
            ..PromptFacts::question(
                "Decrypt a message?",
                "From",
                contact,
                note_text(client_note),
                (if *for_laptop { "Open for laptop" } else { "" }, "Reject"),
            )
        },
        Prompt::Pair {
            contact,
            pad_bytes,
            fingerprint,
            ..
        } => PromptFacts {
            facts: vec![("New pad", format::bytes(*pad_bytes))],
            fingerprint_rows: format::fingerprint_rows(fingerprint, 4),
            ..PromptFacts::question(
                "Same code on both screens?",
                "Pairing with",
                contact,
                String::new(),
                ("They match", "Different"),
            )
        },
    }
}

/// The facts a seal prompt lists (size, pad used, pad left after), none
/// for a message written on the device: its summary says them
/// ([`seal_summary`]).
fn seal_facts(p: &Prompt) -> Vec<(&'static str, String)> {
    match p {
        Prompt::Seal {
            message: None,
            message_bytes,
            cost_bytes,
            pad_left_after,
            ..
        } => vec![
            ("Message", format::bytes(*message_bytes)),
            ("Pad used", format::bytes(*cost_bytes)),
            ("Pad left after", format::bytes(*pad_left_after)),
        ],
        _ => Vec::new(),
    }
}

/// The one-line summary above a message written on the device (size, pad
/// used, pad left after); empty for any other prompt.
fn seal_summary(p: &Prompt) -> String {
    match p {
        Prompt::Seal {
            message: Some(_),
            message_bytes,
            cost_bytes,
            pad_left_after,
            ..
        } => format!(
            "{} · uses {} of pad · {} left after",
            format::bytes(*message_bytes),
            format::bytes(*cost_bytes),
            format::bytes(*pad_left_after)
        ),
        _ => String::new(),
    }
}

/// Sets the prompt's title, who, facts, warnings, fingerprint, note and
/// button labels; returns their texts in screen order.
fn apply_prompt_facts(d: &PromptData, f: &PromptFacts, title: &str, who: &str) -> Vec<String> {
    let mut texts = vec![title.to_string(), f.who_label.to_string(), who.to_string()];
    let mut fact_rows = Vec::new();
    for (label, value) in &f.facts {
        texts.push(label.to_string());
        texts.push(value.clone());
        fact_rows.push(FactRow {
            label: s(label),
            value: s(value),
        });
    }
    texts.extend(f.fingerprint_rows.iter().cloned());
    texts.extend(f.warnings.iter().cloned());
    if !f.note.is_empty() {
        texts.push(f.note.clone());
    }
    d.set_title(s(title));
    d.set_who_label(s(f.who_label));
    d.set_who(s(who));
    d.set_facts(in_place(d.get_facts(), fact_rows));
    d.set_warnings(in_place(
        d.get_warnings(),
        f.warnings.iter().map(|w| s(w)).collect(),
    ));
    d.set_fingerprint_rows(in_place(
        d.get_fingerprint_rows(),
        f.fingerprint_rows.iter().map(|r| s(r)).collect(),
    ));
    d.set_note(s(&f.note));
    d.set_approve_label(s(f.approve));
    d.set_reject_label(s(f.reject));
    texts
}

/// Shows `p` (without the countdown, see [`apply_countdown`]) from message
/// line `message_top`, and returns its texts and the first message line
/// shown.
pub(crate) fn apply_prompt(
    app: &AppWindow,
    layout: Layout,
    p: &Prompt,
    message_top: usize,
    changed: bool,
) -> (Vec<String>, usize) {
    let d = app.global::<PromptData>();
    let f = prompt_facts(p);
    // A prompt right after a withdrawn one says so first (issue 23).
    let title = if changed {
        format!("{CHANGED} {}", f.title)
    } else {
        f.title.to_string()
    };
    let who = format::untrusted(&f.who, 32);
    let mut texts = apply_prompt_facts(&d, &f, &title, &who);
    d.set_read_here_label(s(if matches!(p, Prompt::Open { .. }) {
        "Read here"
    } else {
        ""
    }));
    let summary = seal_summary(p);
    if !summary.is_empty() {
        texts.push(summary.clone());
    }
    d.set_summary(s(&summary));
    let seal_message = match p {
        Prompt::Seal {
            message: Some(m), ..
        } => Some(m),
        _ => None,
    };
    let (message_texts, top) = apply_message(&d, layout, seal_message, message_top);
    texts.extend(message_texts);
    (texts, top)
}

/// Sets the countdown; returns its text.
pub(crate) fn apply_countdown(app: &AppWindow, secs_left: u64, total_secs: u64) -> String {
    let d = app.global::<PromptData>();
    let text = format::countdown(secs_left);
    d.set_countdown_text(s(&text));
    let fraction = if total_secs == 0 {
        0.0
    } else {
        secs_left as f32 / total_secs as f32
    };
    d.set_countdown_fraction(fraction);
    text
}

/// The alerts in the order the screen lists them: the unacknowledged ones
/// first, oldest first (so that those acknowledged are always the oldest
/// unacknowledged, see [`crate::UiEvent::AlertsAcknowledged`]), then the
/// other red ones, then the routine ones, each newest first. `alerts` is
/// newest first.
pub fn alerts_order(alerts: &[AlertView]) -> Vec<&AlertView> {
    let mut out: Vec<&AlertView> = alerts.iter().filter(|a| a.unacked).rev().collect();
    out.extend(alerts.iter().filter(|a| !a.unacked && a.severe));
    out.extend(alerts.iter().filter(|a| !a.unacked && !a.severe));
    out
}

/// What one page of the alerts screen showed.
pub(crate) struct AlertsPage {
    pub texts: Vec<String>,
    /// The first row shown (clamped to the list).
    pub top: usize,
    /// How many unacknowledged alerts are on this page or above it.
    pub unacked_through: usize,
}

/// Shows one page of the alerts (from row `top` of [`alerts_order`]),
/// with Up and Down when there is more, and Acknowledge when
/// `can_ack` (unacknowledged alerts have been on screen).
pub(crate) fn apply_alerts(
    app: &AppWindow,
    layout: Layout,
    alerts: &[AlertView],
    top: usize,
    can_ack: bool,
) -> AlertsPage {
    let d = app.global::<AlertsData>();
    let title = "Alerts".to_string();
    let mut texts = vec![title.clone()];
    let order = alerts_order(alerts);
    let page = layout.alert_rows();
    let top = top.min(order.len().saturating_sub(1) / page * page);
    let end = (top + page).min(order.len());
    let unacked = order.iter().filter(|a| a.unacked).count();
    let mut rows = Vec::new();
    for a in &order[top..end] {
        let mut at = format::untrusted(&a.at, 20);
        if a.unacked {
            at = format!("NEW · {at}");
        }
        let text = format::untrusted(&a.text, 100);
        texts.push(at.clone());
        texts.push(text.clone());
        rows.push(AlertRow {
            time: s(&at),
            text: s(&text),
            severe: a.severe,
        });
    }
    let more = if order.len() > page {
        format!(
            "{}–{} of {}",
            format::count(top as u64 + 1),
            format::count(end as u64),
            format::count(order.len() as u64)
        )
    } else {
        String::new()
    };
    let empty = if alerts.is_empty() {
        "Nothing to report.".to_string()
    } else {
        String::new()
    };
    for t in [&more, &empty] {
        if !t.is_empty() {
            texts.push(t.clone());
        }
    }
    let label = |on: bool, l: &str| s(if on { l } else { "" });
    d.set_title(s(&title));
    d.set_rows(in_place(d.get_rows(), rows));
    d.set_more_text(s(&more));
    d.set_empty_text(s(&empty));
    d.set_back_label(s("Back"));
    d.set_up_label(label(top > 0, "Up"));
    d.set_down_label(label(end < order.len(), "Down"));
    d.set_ack_label(label(can_ack || unacked.min(end) > 0, "Acknowledge"));
    AlertsPage {
        texts,
        top,
        unacked_through: unacked.min(end),
    }
}

/// Shows the About screen and returns its texts.
pub(crate) fn apply_about(app: &AppWindow, about: &AboutView) -> Vec<String> {
    let d = app.global::<AboutData>();
    let title = "About this device".to_string();
    let board = if about.board.trim().is_empty() {
        "Unknown (no device tree model)".to_string()
    } else {
        format::untrusted(&about.board, 60)
    };
    let mut facts = vec![
        (
            "Software".to_string(),
            format::untrusted(&about.software, 60),
        ),
        ("Board".to_string(), board),
    ];
    facts.extend(
        about
            .facts
            .iter()
            .map(|(l, v)| (format::untrusted(l, 24), format::untrusted(v, 60))),
    );
    let mut texts = vec![title.clone()];
    let mut rows = Vec::new();
    for (label, value) in facts {
        texts.push(label.clone());
        texts.push(value.clone());
        rows.push(FactRow {
            label: s(&label),
            value: s(&value),
        });
    }
    d.set_title(s(&title));
    d.set_rows(in_place(d.get_rows(), rows));
    d.set_settings_label(s("Settings"));
    d.set_back_label(s("Back"));
    texts
}

/// Shows progress and returns its texts.
pub(crate) fn apply_progress(app: &AppWindow, p: &ProgressView) -> Vec<String> {
    let d = app.global::<ProgressData>();
    let fraction = if p.total_bytes == 0 {
        0.0
    } else {
        (p.done_bytes.min(p.total_bytes) as f64 / p.total_bytes as f64) as f32
    };
    let title = format::untrusted(&p.title, 60);
    let percent = format!("{} %", (fraction * 100.0).floor() as u32);
    let mut detail = format!(
        "{} of {}",
        format::bytes(p.done_bytes.min(p.total_bytes)),
        format::bytes(p.total_bytes)
    );
    if let Some(left) = p.time_left {
        detail.push_str(&format!(" · about {} left", format::duration(left)));
    }
    d.set_title(s(&title));
    d.set_percent_text(s(&percent));
    d.set_fraction(fraction);
    d.set_detail(s(&detail));
    d.set_cancellable(p.cancellable);
    d.set_cancel_label(s("Cancel"));
    vec![title, percent, detail]
}

/// Shows or hides the toast; returns its text.
pub(crate) fn apply_toast(app: &AppWindow, t: Option<&Toast>) -> Option<String> {
    let d = app.global::<ToastData>();
    match t {
        Some(t) => {
            let text = format::untrusted(&t.text, 60);
            d.set_text(s(&text));
            d.set_kind(match t.kind {
                ToastKind::Success => 0,
                ToastKind::Info => 1,
                ToastKind::Error => 2,
            });
            d.set_visible(true);
            Some(text)
        }
        None => {
            d.set_visible(false);
            None
        }
    }
}

/// A contact's name as every screen shows it.
pub(crate) fn contact_name(name: &str) -> String {
    format::untrusted(name, 32)
}

/// Shows the details of contact `name` (`details`, once firmware sent
/// them for this name) and returns its texts.
pub(crate) fn apply_contact(
    app: &AppWindow,
    name: &str,
    details: Option<&ContactDetailsView>,
) -> Vec<String> {
    let d = app.global::<ContactData>();
    let title = contact_name(name);
    let mut texts = vec![title.clone()];
    let mut facts: Vec<(&str, String)> = Vec::new();
    let shown = details.filter(|v| v.name == name);
    match shown {
        Some(v) => {
            let direction = |left: u64, messages: u64| {
                format!("{} · {}", format::bytes(left), format::messages(messages))
            };
            facts.push((
                "You can send",
                direction(v.send_left_bytes, v.send_messages_left),
            ));
            facts.push((
                "They can send",
                direction(v.receive_left_bytes, v.receive_messages_left),
            ));
            facts.push(("Format", format::untrusted(&v.format, 20)));
            if let Some(t) = v.made_unix {
                facts.push(("Made", crate::texts::date(t)));
            }
            let fp = format::fingerprint_rows(&format::untrusted(&v.fingerprint, 32), 4);
            facts.push(("Fingerprint", fp.join("  ")));
            facts.push((
                "Private",
                if v.private {
                    "yes: read on this device only".to_string()
                } else {
                    "no".to_string()
                },
            ));
        }
        None => facts.push(("", "Reading the pad store…".to_string())),
    }
    let mut rows = Vec::new();
    for (label, value) in &facts {
        if !label.is_empty() {
            texts.push(label.to_string());
        }
        texts.push(value.clone());
        rows.push(FactRow {
            label: s(label),
            value: s(value),
        });
    }
    d.set_title(s(&title));
    d.set_facts(in_place(d.get_facts(), rows));
    d.set_back_label(s("Back"));
    d.set_remove_label(s("Remove"));
    d.set_private_label(s("Private contact"));
    d.set_messages_label(s("Messages"));
    d.set_private_shown(shown.is_some());
    texts
}

/// Shows the question before removing contact `name`; returns its texts.
pub(crate) fn apply_remove_contact(app: &AppWindow, name: &str) -> Vec<String> {
    let d = app.global::<ContactData>();
    let name = contact_name(name);
    let title = format!("Remove {name}?");
    let text = format!(
        "This erases the pad you share with {name}, for good. Messages to and from \
         {name} can no longer be sealed or opened on this device. This cannot be undone."
    );
    d.set_confirm_title(s(&title));
    d.set_confirm_text(s(&text));
    d.set_cancel_label(s("Cancel"));
    d.set_remove_label(s("Remove"));
    vec![title, text]
}

/// The title and hint of the keyboard for `kind`.
fn keyboard_words(kind: TextKind) -> (&'static str, &'static str) {
    match kind {
        TextKind::ContactName => ("Name", "Letters, digits and . _ - @ (at most 64)"),
        TextKind::PairingCode => (
            "Code",
            "The code on your partner's screen (spaces and case do not matter)",
        ),
        TextKind::Passphrase => ("Passphrase", "The passphrase that unlocks this device"),
        TextKind::NewPassphrase => (
            "New passphrase",
            "Several words nobody could guess; it protects everything on the card",
        ),
        TextKind::RepeatPassphrase => ("Passphrase again", "The same passphrase once more"),
        TextKind::OwnerName => ("Your name", "How this device names its owner"),
        TextKind::NetworkAddress => (
            "Network address",
            "The IPv4 address on the cable, e.g. 192.168.7.2 (a /24 network)",
        ),
        TextKind::Seconds => ("Seconds", "A whole number of seconds"),
        TextKind::Message => (
            "Message",
            "Written and sealed here: the laptop gets only the package",
        ),
    }
}

/// Shows the keyboard: its keys at `keys`, the text typed so far and the
/// reason the last Done was refused (if any). Returns its texts.
pub(crate) fn apply_keyboard(
    app: &AppWindow,
    layout: Layout,
    keys: &KeyboardLayout,
    request: &TextRequest,
    typing: &Typing,
    reason: Option<&str>,
) -> Vec<String> {
    let d = app.global::<KeyboardData>();
    let kind = request.kind;
    let (title, hint) = keyboard_words(kind);
    let title = request.title.as_deref().unwrap_or(title);
    let shown = typing.shown(if layout.compact { 22 } else { 30 }, kind.is_secret());
    let reason = reason.map(|r| format::untrusted(r, 90)).unwrap_or_default();
    let infos: Vec<ButtonInfo> = keys
        .keys
        .iter()
        .map(|k| ButtonInfo {
            id: s(&k.key.id()),
            label: s(&if k.key == Key::Done && kind == TextKind::Message {
                "Seal".to_string()
            } else {
                k.key.label(typing.upper)
            }),
            x: k.x,
            y: k.y,
            w: k.w,
            h: k.h,
        })
        .collect();
    d.set_title(s(title));
    d.set_text(s(&shown));
    d.set_hint(s(hint));
    d.set_reason(s(&reason));
    d.set_upper(typing.upper);
    d.set_keys_top(keys.keys_top);
    d.set_keys(in_place(d.get_keys(), infos));
    let mut texts = vec![title.to_string(), shown];
    texts.push(if reason.is_empty() {
        hint.to_string()
    } else {
        reason
    });
    texts
}

/// The logical pixel of `t`'s centre on a `size` screen, kept far enough
/// from the edges for its whole button to show.
pub(crate) fn target_center(t: &Target, size: (u32, u32)) -> (u32, u32) {
    let (w, h) = TARGET_SIZE;
    let place = |permille: u16, n: u32, side: u32| -> u32 {
        let p = u64::from(permille.min(1000)) * u64::from(n) / 1000;
        let lo = u64::from(side / 2);
        let hi = u64::from(n.saturating_sub(side / 2)).max(lo);
        p.clamp(lo, hi) as u32
    };
    (
        place(t.x_permille, size.0, w),
        place(t.y_permille, size.1, h),
    )
}

/// Shows one step of a flow and returns its texts: the title, the lines,
/// the code (one text) and the warning.
pub(crate) fn apply_choice(app: &AppWindow, c: &ChoiceRequest, size: (u32, u32)) -> Vec<String> {
    let d = app.global::<ChoiceData>();
    let target = c.target.as_ref().map(|t| {
        let (x, y) = target_center(t, size);
        let (w, h) = TARGET_SIZE;
        ButtonInfo {
            id: s("target"),
            label: s(&format::untrusted(&t.label, 20)),
            x: x.saturating_sub(w / 2) as f32,
            y: y.saturating_sub(h / 2) as f32,
            w: w as f32,
            h: h as f32,
        }
    });
    d.set_target(target.clone().unwrap_or_default());
    let c = &ChoiceRequest {
        // A target step has neither (see `crate::choice`).
        choices: if target.is_some() {
            Vec::new()
        } else {
            c.choices.clone()
        },
        cancel: if target.is_some() {
            None
        } else {
            c.cancel.clone()
        },
        ..c.clone()
    };
    let title = format::untrusted(&c.title, 60);
    let lines: Vec<String> = c.lines.iter().map(|l| format::untrusted(l, 200)).collect();
    let code = c.code.as_deref().map(|x| format::untrusted(x, 80));
    let warning = c.warning.as_deref().map(|x| format::untrusted(x, 200));
    let choices: Vec<SharedString> = c
        .choices
        .iter()
        .take(MAX_CHOICES)
        .map(|x| s(&format::untrusted(x, 80)))
        .collect();
    d.set_title(s(&title));
    d.set_lines(in_place(
        d.get_lines(),
        lines.iter().map(|l| s(l)).collect(),
    ));
    d.set_code(s(code.as_deref().unwrap_or("")));
    d.set_warning(s(warning.as_deref().unwrap_or("")));
    d.set_choices(in_place(d.get_choices(), choices));
    d.set_cancel_label(s(c.cancel.as_deref().unwrap_or("")));
    let mut texts = vec![title];
    texts.extend(lines);
    texts.extend(code);
    texts.extend(warning);
    texts
}
