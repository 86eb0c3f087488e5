//! The original One Time Chat's device RPC, `POST /runrpc`, as the device
//! answers it for the original client (issue 10, item 4).
//!
//! The original client calls the device with
//! `{"method": NAME, "args": [..], "kwargs": {..}}` and reads
//! `{"return": VALUE}`, or `{"error": TEXT}` when the call itself failed
//! (it then raises). It also raises on any status but 200. The device
//! answers four methods; each goes through the same handlers as `/v1` (same
//! prompt, limits, lockout, rate limit and audit):
//!
//! | call                                        | like                      | `VALUE`              |
//! |---------------------------------------------|---------------------------|----------------------|
//! | `package(src_uid, dst_uid, message)`        | `POST /v1/package`        | [`PackageReturn`]    |
//! | `unpackage(src_uid, dst_uid, package_b64)`  | `POST /v1/unpackage`      | [`UnpackageReturn`]  |
//! | `get_next_ref(uid, server_address)`         | `GET /v1/cursor/{relay}`  | the ref, or `null`   |
//! | `save_next_ref(uid, server_address, nextref)` | `PUT /v1/cursor/{relay}` | `null`              |
//!
//! **The reply shapes, decided** (from the report, section 6.3.3, and the
//! original's behaviour that its client relies on):
//!
//! - `package` and `unpackage` always answer `{"return": {...}}` with status
//!   200: `{"success": true, "package": B64}` or
//!   `{"success": true, "message": TEXT, "skip_detected", "reuse_detected"}`;
//!   any failure (rejected, busy, timed out, unknown contact, pad used up,
//!   bad package, locked out, rate limited, a uid that is not this device's
//!   owner) is `{"success": false, "error": TEXT}`, plus the two flags for
//!   `unpackage`. The text is the `/v1` error's message, which never carries
//!   internals (a package that does not open says only that); the stable
//!   `/v1` code is not given, as the original had none.
//!   - `package` has no flags, as in the original.
//!   - `unpackage` always has both flags. `reuse_detected` is true when the
//!     package was refused as a replay (its pad range was opened before); a
//!     replay is refused, never opened again, so it comes with
//!     `success: false`. `skip_detected` is true when the message opened and
//!     earlier messages from the contact never arrived.
//!   - A message that is not valid UTF-8 is given with U+FFFD replacements
//!     (the original only ever sends text).
//! - `get_next_ref` returns the bare number, or `null` when this relay's
//!   position was never saved (the original client then starts from the
//!   relay's own next ref); `save_next_ref` returns `null`. These are not
//!   dictionaries in the original, and its client uses the value as a
//!   number, so their failures are call errors.
//! - **Call errors** are `{"error": TEXT}` with status 200, as the
//!   original's `runrpc` gave them: no such method, a body that is not a
//!   call, arguments missing, extra or of the wrong type, a uid that is not
//!   the owner's or a server address that is no relay name for
//!   `get/save_next_ref`, the device stopping.
//! - **The front layer's refusals stay as `/v1` has them** (a 4xx or 5xx
//!   with `{"error": {"code", "message"}}`): a `Host` that is not an IP
//!   address or an allowed name, a foreign `Origin`, a body without
//!   `Content-Type: application/json`, too large, overloaded. The original
//!   client sends `Content-Type: application/json` (python-requests'
//!   `json=`), so the check costs it nothing, and a web page cannot send it
//!   cross-site. It addresses the device as `http://localhost:PORT` when
//!   given a bare port: that `Host` is a name, so the owner adds
//!   `localhost` to `rpc.allowed_hosts` or gives the client the address.
//!
//! **Who is who.** The device has one owner (its `owner` name); the other
//! uid of `package`/`unpackage` is the contact. `package(src, dst, m)`:
//! `src` must be the owner and `dst` is the contact. `unpackage(src, dst,
//! p)`: `src` is the contact and `dst` must be the owner.
//! `get/save_next_ref`: `uid` must be the owner. A mismatch is refused with
//! an error that says which uid was expected.
//!
//! **Relays.** The original keys the read position by the relay's address
//! as its client wrote it (`http://host:port`). The device keeps
//! `/v1/cursor/{relay}`, whose names cannot hold `/`, so the key is
//! [`relay_key`]: the address without its `http://` or `https://` and
//! trailing slashes (`http://relay.example:5000/` → `relay.example:5000`).

use serde::{Deserialize, Serialize};

/// The path of the original RPC endpoint (also in [`crate::routes`]).
pub const PATH: &str = "/runrpc";

/// The methods the device answers, in the order of the table above.
pub const METHODS: [&str; 4] = ["package", "unpackage", "get_next_ref", "save_next_ref"];

/// The parameter names of `method`, as the original declared them (for
/// `kwargs`), or `None` if the device does not answer it.
pub fn params(method: &str) -> Option<&'static [&'static str]> {
    Some(match method {
        "package" => &["src_uid", "dst_uid", "message"],
        "unpackage" => &["src_uid", "dst_uid", "package_b64"],
        "get_next_ref" => &["uid", "server_address"],
        "save_next_ref" => &["uid", "server_address", "nextref"],
        _ => return None,
    })
}

/// A call: `{"method", "args", "kwargs"}`. `args` and `kwargs` may be left
/// out (empty); any other field is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub method: String,
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    #[serde(default)]
    pub kwargs: serde_json::Map<String, serde_json::Value>,
}

/// `{"return": VALUE}`: a call that ran (which may still have failed, see
/// the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Return<T> {
    #[serde(rename = "return")]
    pub value: T,
}

/// `{"error": TEXT}`: a call that could not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallError {
    pub error: String,
}

/// What `package` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageReturn {
    pub success: bool,
    /// The package, base64 (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Why not (on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `unpackage` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackageReturn {
    pub success: bool,
    /// The message (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why not (on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Earlier messages from the contact never arrived.
    pub skip_detected: bool,
    /// The package's pad range was opened before: refused as a replay.
    pub reuse_detected: bool,
}

/// The `/v1/cursor/{relay}` name the original's `server_address` maps to
/// (see the module doc); `None` if what is left is not a relay name
/// (1 to 128 letters, digits, `.`, `-`, `_`, `:`). Host names are
/// case-insensitive, so the key is lower-cased (as `otc` does): the same
/// relay written two ways keeps one read position.
pub fn relay_key(server_address: &str) -> Option<String> {
    let strip = |scheme: &str| {
        server_address
            .get(..scheme.len())
            .filter(|p| p.eq_ignore_ascii_case(scheme))
            .map(|_| &server_address[scheme.len()..])
    };
    let rest = strip("http://")
        .or_else(|| strip("https://"))
        .unwrap_or(server_address);
    let key = rest.trim_end_matches('/');
    valid_relay_name(key).then(|| key.to_ascii_lowercase())
}

/// True if `name` can name a relay in `/v1/cursor/{relay}`.
pub fn valid_relay_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes on the wire, spelled out: the original client reads them.
    #[test]
    fn reply_shapes() {
        let ok = Return {
            value: PackageReturn {
                success: true,
                package: Some("AAE=".into()),
                error: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"return":{"success":true,"package":"AAE="}}"#
        );
        let no = Return {
            value: UnpackageReturn {
                success: false,
                message: None,
                error: Some("no".into()),
                skip_detected: false,
                reuse_detected: true,
            },
        };
        assert_eq!(
            serde_json::to_string(&no).unwrap(),
            r#"{"return":{"success":false,"error":"no","skip_detected":false,"reuse_detected":true}}"#
        );
        assert_eq!(
            serde_json::to_string(&Return::<Option<u64>> { value: None }).unwrap(),
            r#"{"return":null}"#
        );
        assert_eq!(
            serde_json::to_string(&CallError { error: "x".into() }).unwrap(),
            r#"{"error":"x"}"#
        );
    }

    #[test]
    fn calls_parse_as_the_original_client_sends_them() {
        let c: Call = serde_json::from_str(
            r#"{"method": "package", "args": ["alice", "bob", "hi"], "kwargs": {}}"#,
        )
        .unwrap();
        assert_eq!((c.method.as_str(), c.args.len()), ("package", 3));
        let c: Call = serde_json::from_str(r#"{"method": "get_next_ref"}"#).unwrap();
        assert!(c.args.is_empty() && c.kwargs.is_empty());
        assert!(serde_json::from_str::<Call>(r#"{"method": "x", "argz": []}"#).is_err());
        assert!(serde_json::from_str::<Call>(r#"{"args": []}"#).is_err());
        for m in METHODS {
            assert!(params(m).is_some(), "{m}");
        }
        assert_eq!(params("whoami"), None);
    }

    #[test]
    fn relay_keys() {
        let key = |k: &str| Some(k.to_string());
        assert_eq!(
            relay_key("http://relay.example:5000/"),
            key("relay.example:5000")
        );
        assert_eq!(
            relay_key("http://Relay.EXAMPLE:5000"),
            key("relay.example:5000"),
            "host names are case-insensitive"
        );
        assert_eq!(relay_key("HTTPS://127.0.0.1:8"), key("127.0.0.1:8"));
        assert_eq!(relay_key("127.0.0.1:8"), key("127.0.0.1:8"));
        assert_eq!(relay_key("http://x/path"), None);
        assert_eq!(relay_key("http://"), None);
        assert_eq!(relay_key(""), None);
        assert_eq!(relay_key("http://[::1]:5000"), None, "brackets are no name");
    }
}
