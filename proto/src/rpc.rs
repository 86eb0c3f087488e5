//! RPC request and response bodies of the device's HTTP/JSON endpoint (v1).
//!
//! Shared by the device (`otc-device run`) and the chat client (`otc`).
//! Requests reject unknown fields, so a typo is an error, not a silent
//! default. Binary fields are standard padded base64 (see [`crate::b64`]).

use serde::{Deserialize, Serialize};

/// `POST /v1/package`: seal a message for a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// The contact's name on this device.
    pub to: String,
    /// The message as UTF-8 text. Exactly one of `message`, `message_b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The message as base64 bytes. Exactly one of `message`, `message_b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_b64: Option<String>,
}

/// `POST /v1/compose`: ask the owner to write a message to `to` on the
/// device's own keyboard and seal it (issue 19, "Write here"). The reply
/// is a [`PackageResponse`], as for `/v1/package`; the laptop never sees
/// the text. **Cancel** on the device answers `rejected`; the prompt
/// timeout counts from the last key press.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeRequest {
    /// The contact's name on this device.
    pub to: String,
}

/// Reply to [`PackageRequest`] (and to [`ComposeRequest`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageResponse {
    /// The sealed package, base64.
    pub package: String,
    /// Pad index the package starts at.
    pub index: u64,
    /// Pad bytes left to send to this contact afterwards.
    pub pad_left: u64,
}

/// `POST /v1/unpackage`: open a package from a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackageRequest {
    /// The contact's name on this device.
    pub from: String,
    /// The package, base64.
    pub package: String,
}

/// Something the owner was warned about while opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warning {
    /// The package's pad range overlaps one already opened.
    Replay,
    /// Messages were skipped: a gap since the last opened range.
    Skipped,
}

/// Reply to [`UnpackageRequest`].
///
/// Opened for the laptop (the owner tapped **Open for laptop**):
/// `{"message": TEXT-or-null, "message_b64": B64, "warnings": [..],
/// "read_on_device": false}`.
///
/// Read on the device (issue 19: the owner tapped **Read here**; the text
/// was shown on the device's screen only): `{"message": null,
/// "message_b64": "", "warnings": [..], "read_on_device": true}`. Nothing
/// of the text is in the reply, not even its length; the pad was spent
/// exactly as for an open. The keys are the same as an open's so a
/// client that ignores `read_on_device` still parses the reply (it sees
/// an empty message, never a wrong one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackageResponse {
    /// The message as text, or `null` when it is not valid UTF-8 or was
    /// read on the device.
    pub message: Option<String>,
    /// The message bytes, base64; empty when read on the device.
    pub message_b64: String,
    /// What the owner was warned about.
    pub warnings: Vec<Warning>,
    /// The message was read on the device's screen and is not in this
    /// reply. Absent in replies of devices older than issue 19 (`false`).
    #[serde(default)]
    pub read_on_device: bool,
}

/// One contact, as `GET /v1/contacts` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInfo {
    pub name: String,
    /// SHA-256 fingerprint of the shared pad, hex.
    pub pad_id: String,
    pub format: crate::Format,
    /// Pad bytes left to send with.
    pub send_left: u64,
    /// Pad bytes left that the contact can still send with.
    pub receive_left: u64,
    /// Whether the pad can be used. A device that does not say is taken
    /// to mean `ok`.
    #[serde(default)]
    pub state: ContactState,
    /// A private contact (issue 19): every message from it is read on the
    /// device only (`read_on_device` replies); the laptop cannot ask for
    /// the text. Set on the contact's screen. A device that does not say
    /// is taken to mean `false`.
    #[serde(default)]
    pub private: bool,
}

/// Whether a contact's pad can be used (`"ok"`), or its pad file does not
/// match the device's record of it (`"damaged"`: truncated, the wrong size,
/// missing). A damaged pad is never used or written; seals and opens for it
/// are refused with [`ErrorCode::DamagedPad`] before any prompt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    #[default]
    Ok,
    Damaged,
}

impl ContactState {
    /// The state as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::Ok => "ok",
            ContactState::Damaged => "damaged",
        }
    }
}

/// Reply to `GET /v1/contacts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsResponse {
    pub contacts: Vec<ContactInfo>,
}

/// Reply to `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusResponse {
    /// The device owner's name.
    pub owner: String,
    /// Device software version.
    pub version: String,
    /// Number of contacts with a pad.
    pub contacts: usize,
    /// True while a confirmation prompt is on the screen.
    pub busy: bool,
    /// True while the device is locked (issue 18): every other request is
    /// refused with `locked` until the owner types the passphrase on the
    /// device's screen. A locked device says no owner and no contacts
    /// (they are behind the passphrase). Absent from older devices, which
    /// had no lock: read as `false`.
    #[serde(default)]
    pub locked: bool,
}

/// Body of `GET/PUT /v1/cursor/{relay}`: the client's read position on a
/// relay, kept on the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub cursor: u64,
}

/// Stable error codes. Clients match on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, wrong types, unknown fields, invalid base64.
    BadRequest,
    /// No pad for that contact name.
    UnknownContact,
    /// The message or request is larger than allowed or than the pad left.
    TooLarge,
    /// No pad left to send to this contact.
    PadExhausted,
    /// The owner tapped Reject.
    Rejected,
    /// Nobody answered the prompt in time.
    Timeout,
    /// Another prompt is on the screen.
    Busy,
    /// The package cannot be opened: malformed, out of range, or its tag
    /// does not verify (corrupted or forged). No more detail is given.
    /// Final: the same bytes fail the same way again.
    BadPackage,
    /// The package's pad range overlaps one this device has already
    /// opened: a replay (or a forgery claiming that range). Refused by
    /// range before any prompt, without reading pad; nothing was consumed,
    /// and it can never open (those pad bytes are erased). Final.
    ///
    /// Why this is told apart from [`ErrorCode::BadPackage`]: the laptop
    /// hands the device every package and sees every reply, so it already
    /// knows which ranges were opened (the index is in the clear in the
    /// package head); this code tells it nothing it could not work out,
    /// and says nothing about pad bytes or tags. The original client's
    /// `/runrpc` reply says the same with `reuse_detected`.
    Replayed,
    /// No such endpoint or resource.
    NotFound,
    /// The device is locked: the owner has not typed the passphrase on
    /// its screen since it started (or since it was locked again, by
    /// **Lock now** or the idle lock). Every request but `GET /v1/status`
    /// gets this; nothing was read or consumed. Not final: retry once the
    /// owner has unlocked the device (HTTP 423 Locked).
    Locked,
    /// Too many failed opens from this contact: locked out for a while
    /// (HTTP 429). Until issue 18 this case was `locked`; it has a code of
    /// its own so that `locked` means only "the device is locked". The
    /// wire spec (`package-formats.md`) lists no error codes, so this
    /// file is where the list is kept.
    LockedOut,
    /// Method not allowed on this endpoint.
    MethodNotAllowed,
    /// Too many connections at once.
    Overloaded,
    /// A POST or PUT (or any request with a body) without
    /// `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The `Host` header is neither an IP address nor a name the owner
    /// allowed (`rpc.allowed_hosts`): DNS rebinding is refused this way.
    BadHost,
    /// The request came from a web page of another origin.
    ForbiddenOrigin,
    /// Something went wrong on the device (a storage error: disk full,
    /// I/O error); nothing was consumed. Not final: the same request may
    /// work later.
    Internal,
    /// The contact's pad file on the device does not match its record
    /// (truncated, the wrong size, missing): the pad cannot be used until
    /// the owner deals with it on the device. Refused before any prompt;
    /// nothing was consumed.
    DamagedPad,
    /// The device is stopping: a prompt was withdrawn or a new request
    /// refused; nothing was consumed. Retry once it is back.
    Cancelled,
    /// Too many refused packages (replays, failed opens) from this contact
    /// in a short time; retry later. Nothing was consumed.
    RateLimited,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadPackage => 400,
            ErrorCode::Rejected | ErrorCode::ForbiddenOrigin => 403,
            ErrorCode::UnknownContact | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
            ErrorCode::Busy | ErrorCode::DamagedPad => 409,
            ErrorCode::PadExhausted | ErrorCode::Replayed => 410,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::BadHost => 421,
            ErrorCode::Locked => 423,
            ErrorCode::LockedOut | ErrorCode::Overloaded | ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Cancelled => 503,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownContact => "unknown_contact",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::PadExhausted => "pad_exhausted",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::BadPackage => "bad_package",
            ErrorCode::Replayed => "replayed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Locked => "locked",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BadHost => "bad_host",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::Internal => "internal",
            ErrorCode::DamagedPad => "damaged_pad",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// The body of every failed request: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let ok: PackageRequest = serde_json::from_str(r#"{"to":"bob","message":"hi"}"#).unwrap();
        assert_eq!(ok.to, "bob");
        assert!(serde_json::from_str::<PackageRequest>(r#"{"to":"bob","mesage":"hi"}"#).is_err());
        assert!(serde_json::from_str::<PackageRequest>(r#"{"to":5,"message":"hi"}"#).is_err());
    }

    /// Issue 18: `locked` is the device's lock (423 Locked); a contact
    /// locked out after failed opens has a code of its own.
    #[test]
    fn locked_is_the_device_and_locked_out_is_a_contact() {
        assert_eq!(
            (ErrorCode::Locked.as_str(), ErrorCode::Locked.http_status()),
            ("locked", 423)
        );
        assert_eq!(
            (
                ErrorCode::LockedOut.as_str(),
                ErrorCode::LockedOut.http_status()
            ),
            ("locked_out", 429)
        );
        let old: StatusResponse =
            serde_json::from_str(r#"{"owner":"a","version":"1","contacts":0,"busy":false}"#)
                .unwrap();
        assert!(!old.locked, "a device without a lock is not locked");
    }

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::UnknownContact,
            ErrorCode::TooLarge,
            ErrorCode::PadExhausted,
            ErrorCode::Rejected,
            ErrorCode::Timeout,
            ErrorCode::Busy,
            ErrorCode::BadPackage,
            ErrorCode::Replayed,
            ErrorCode::NotFound,
            ErrorCode::Locked,
            ErrorCode::LockedOut,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Overloaded,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::BadHost,
            ErrorCode::ForbiddenOrigin,
            ErrorCode::Internal,
            ErrorCode::DamagedPad,
            ErrorCode::Cancelled,
            ErrorCode::RateLimited,
        ] {
            let json = serde_json::to_string(&ErrorBody::new(code, "m")).unwrap();
            assert_eq!(
                json,
                format!(
                    r#"{{"error":{{"code":"{}","message":"m"}}}}"#,
                    code.as_str()
                )
            );
            assert!((400..600).contains(&code.http_status()));
        }
    }

    #[test]
    fn the_contract_names_of_damage() {
        assert_eq!(ErrorCode::DamagedPad.as_str(), "damaged_pad");
        assert_eq!(ErrorCode::DamagedPad.http_status(), 409);
        let c: ContactInfo = serde_json::from_str(
            r#"{"name":"bob","pad_id":"00","format":"v3","send_left":1,"receive_left":2,"state":"damaged"}"#,
        )
        .unwrap();
        assert_eq!(c.state, ContactState::Damaged);
        let json = serde_json::to_value(ContactInfo {
            state: ContactState::Ok,
            ..c
        })
        .unwrap();
        assert_eq!(json["state"], "ok");
        // A device that does not say is "ok".
        let old: ContactInfo = serde_json::from_str(
            r#"{"name":"bob","pad_id":"00","format":"v3","send_left":1,"receive_left":2}"#,
        )
        .unwrap();
        assert_eq!(old.state, ContactState::Ok);
    }

    #[test]
    fn warnings_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&[Warning::Replay, Warning::Skipped]).unwrap(),
            r#"["replay","skipped"]"#
        );
    }
}
