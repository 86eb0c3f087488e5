//! The message relay's wire types: the API of the original One Time Chat
//! relay (`server/server.py`, report section 6.5), byte for byte in its JSON
//! shapes, plus the long-poll `wait` our relay adds.
//!
//! Shared by the relay (`otc-relay`) and the chat client (`otc`), neither of
//! which may depend on the device firmware. The relay is untrusted and knows
//! nothing of pads: `contents` is an opaque string (the client puts a
//! base64 package in it).
//!
//! | method + path       | request                                   | reply                    |
//! |---------------------|-------------------------------------------|--------------------------|
//! | `GET /check`        |                                           | [`CheckResponse`]        |
//! | `POST /send`        | [`SendRequest`] (form-encoded or JSON)    | [`SendResponse`]         |
//! | `GET /getmessages`  | [`GetMessagesQuery`] (query string)       | [`GetMessagesResponse`]  |
//! | `GET /getnextref`   | [`GetNextRefQuery`] (query string)        | [`NextRefResponse`]      |
//! | `GET/POST /mischief`| [`MischiefRequest`] (`--mischief` only)   | [`MischiefResponse`]     |
//! | any failure (4xx)   |                                           | [`RelayError`]           |
//!
//! Decisions:
//! - Nothing here denies unknown fields: the original client and relay are
//!   other programs whose extra fields must not break us, and this side
//!   only reads the fields it names.
//! - Fields are declared in the order the original writes them, because
//!   serde serializes in declaration order and the tests below compare the
//!   JSON byte for byte.
//! - The JSON key `ref` is a Rust keyword: the field is `msg_ref`.

use serde::{Deserialize, Serialize};

/// `GET`: is the relay up.
pub const CHECK: &str = "/check";
/// `POST`: hand a message to the relay.
pub const SEND: &str = "/send";
/// `GET`: a recipient's messages from a ref on.
pub const GET_MESSAGES: &str = "/getmessages";
/// `GET`: the ref the next message to a recipient will get.
pub const GET_NEXT_REF: &str = "/getnextref";
/// `GET` (the form page, or an order in the query) and `POST` (an order,
/// form-encoded or JSON): make the relay misbehave. Only served by a relay
/// started with `--mischief`.
pub const MISCHIEF: &str = "/mischief";

/// Reply to `GET /check`: `{"status":"ok"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub status: String,
}

impl CheckResponse {
    /// The only reply a working relay gives.
    pub fn ok() -> Self {
        CheckResponse {
            status: "ok".into(),
        }
    }
}

/// `POST /send`: the original client sends it form-encoded
/// (`sender_uid=..&recipient_uid=..&contents=..`); JSON is accepted too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub sender_uid: String,
    pub recipient_uid: String,
    /// Opaque to the relay (a base64 package).
    pub contents: String,
}

/// Reply to [`SendRequest`]:
/// `{"received":true,"echo_tail":..,"ref":N}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    pub received: bool,
    /// The end of the contents as the relay stored them, so the sender can
    /// see they arrived whole.
    pub echo_tail: String,
    /// The ref the message was stored under.
    #[serde(rename = "ref")]
    pub msg_ref: u64,
}

/// `GET /getmessages?recipient_uid=..&start_ref=..[&maxcount=..][&wait=..]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMessagesQuery {
    pub recipient_uid: String,
    /// The first ref wanted (refs below it are not returned).
    pub start_ref: u64,
    /// At most this many messages; the relay's own cap when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxcount: Option<u64>,
    /// Our addition: when there is nothing from `start_ref` on, wait up to
    /// this many seconds for a message before answering (long poll). The
    /// original relay ignores it and answers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayMessage {
    #[serde(rename = "ref")]
    pub msg_ref: u64,
    pub recipient_uid: String,
    pub sender_uid: String,
    pub contents: String,
}

/// Reply to [`GetMessagesQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMessagesResponse {
    pub recipient_uid: String,
    /// `messages.len()`.
    pub count: u64,
    /// In ref order.
    pub messages: Vec<RelayMessage>,
    /// False when `maxcount` cut the list short: ask again from the last
    /// ref + 1.
    pub complete: bool,
}

/// `GET /getnextref?recipient_uid=..`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetNextRefQuery {
    pub recipient_uid: String,
}

/// Reply to [`GetNextRefQuery`]: `{"nextref":N}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRefResponse {
    pub nextref: u64,
}

/// Every failure: `{"error": STATUS, "message": TEXT}` with a 4xx status
/// (the HTTP status repeated as a number).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayError {
    pub error: u16,
    pub message: String,
}

/// A `/mischief` order: play `kind` (`drop`, `corrupt`, `replay` or
/// `reorder`) on `userid`'s next incoming message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MischiefRequest {
    pub userid: String,
    pub kind: String,
}

/// Reply to [`MischiefRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MischiefResponse {
    pub ok: bool,
    pub userid: String,
    pub kind: String,
    /// Tricks now waiting for that user's next messages.
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// Serializes to exactly `text`, and `text` reads back as the value.
    fn both_ways<T>(v: T, text: &str)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(json(&v), text);
        assert_eq!(serde_json::from_str::<T>(text).unwrap(), v);
    }

    #[test]
    fn check() {
        both_ways(CheckResponse::ok(), r#"{"status":"ok"}"#);
    }

    #[test]
    fn send() {
        both_ways(
            SendRequest {
                sender_uid: "alice".into(),
                recipient_uid: "bob".into(),
                contents: "AAAA".into(),
            },
            r#"{"sender_uid":"alice","recipient_uid":"bob","contents":"AAAA"}"#,
        );
        both_ways(
            SendResponse {
                received: true,
                echo_tail: "AAAA".into(),
                msg_ref: 7,
            },
            r#"{"received":true,"echo_tail":"AAAA","ref":7}"#,
        );
    }

    #[test]
    fn get_messages() {
        both_ways(
            GetMessagesQuery {
                recipient_uid: "bob".into(),
                start_ref: 3,
                maxcount: None,
                wait: None,
            },
            r#"{"recipient_uid":"bob","start_ref":3}"#,
        );
        both_ways(
            GetMessagesQuery {
                recipient_uid: "bob".into(),
                start_ref: 3,
                maxcount: Some(10),
                wait: Some(25),
            },
            r#"{"recipient_uid":"bob","start_ref":3,"maxcount":10,"wait":25}"#,
        );
        both_ways(
            GetMessagesResponse {
                recipient_uid: "bob".into(),
                count: 2,
                messages: vec![
                    RelayMessage {
                        msg_ref: 3,
                        recipient_uid: "bob".into(),
                        sender_uid: "alice".into(),
                        contents: "AAAA".into(),
                    },
                    RelayMessage {
                        msg_ref: 4,
                        recipient_uid: "bob".into(),
                        sender_uid: "carol".into(),
                        contents: "BBBB".into(),
                    },
                ],
                complete: true,
            },
            concat!(
                r#"{"recipient_uid":"bob","count":2,"messages":["#,
                r#"{"ref":3,"recipient_uid":"bob","sender_uid":"alice","contents":"AAAA"},"#,
                r#"{"ref":4,"recipient_uid":"bob","sender_uid":"carol","contents":"BBBB"}"#,
                r#"],"complete":true}"#
            ),
        );
        both_ways(
            GetMessagesResponse {
                recipient_uid: "bob".into(),
                count: 0,
                messages: vec![],
                complete: false,
            },
            r#"{"recipient_uid":"bob","count":0,"messages":[],"complete":false}"#,
        );
    }

    #[test]
    fn next_ref() {
        both_ways(
            GetNextRefQuery {
                recipient_uid: "bob".into(),
            },
            r#"{"recipient_uid":"bob"}"#,
        );
        both_ways(NextRefResponse { nextref: 12 }, r#"{"nextref":12}"#);
    }

    #[test]
    fn errors() {
        both_ways(
            RelayError {
                error: 400,
                message: "missing recipient_uid".into(),
            },
            r#"{"error":400,"message":"missing recipient_uid"}"#,
        );
    }

    #[test]
    fn unknown_fields_from_other_programs_are_ignored() {
        let r: NextRefResponse = serde_json::from_str(r#"{"nextref":5,"extra":1}"#).unwrap();
        assert_eq!(r.nextref, 5);
        // A required field missing is an error, not a default.
        assert!(serde_json::from_str::<SendResponse>(r#"{"received":true,"ref":1}"#).is_err());
    }

    #[test]
    fn mischief() {
        both_ways(
            MischiefRequest {
                userid: "bob".into(),
                kind: "drop".into(),
            },
            r#"{"userid":"bob","kind":"drop"}"#,
        );
        both_ways(
            MischiefResponse {
                ok: true,
                userid: "bob".into(),
                kind: "replay".into(),
                pending: 2,
            },
            r#"{"ok":true,"userid":"bob","kind":"replay","pending":2}"#,
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            [CHECK, SEND, GET_MESSAGES, GET_NEXT_REF, MISCHIEF],
            [
                "/check",
                "/send",
                "/getmessages",
                "/getnextref",
                "/mischief"
            ]
        );
    }
}
