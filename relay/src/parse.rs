//! Everything the relay reads from a client, as pure functions (no I/O, no
//! state), so that one fuzz target (`fuzz/fuzz_targets/relay_request.rs`)
//! can reach all of it: the request head, query strings, form and JSON
//! bodies, and the fields of each endpoint.
//!
//! Every function returns a clear error for bad input and never panics;
//! errors are `(status, RelayError)`, the reply the client gets.

use std::collections::HashMap;

use otc_proto::relay::{GetMessagesQuery, RelayError, SendRequest};

/// The longest uid accepted, in bytes.
pub const MAX_UID_BYTES: usize = 64;
/// The longest request head (request line and headers), in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most headers in one request.
pub const MAX_HEADERS: usize = 64;

/// A refusal: the HTTP status and the JSON body.
pub type Refusal = (u16, RelayError);

/// A refusal with `status` and `message`.
pub fn err(status: u16, message: impl Into<String>) -> Refusal {
    (
        status,
        RelayError {
            error: status,
            message: message.into(),
        },
    )
}

/// A request head: the request line and the headers the relay uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), empty when there is none.
    pub query: String,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
    /// `Content-Type`, when given.
    pub content_type: Option<String>,
    /// `Expect: 100-continue` was asked for.
    pub expect_continue: bool,
    /// The connection stays open after the reply (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// Parses a request head: everything up to and including the blank line.
/// Bodies are only taken with a `Content-Length` (chunked: 411).
pub fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    if bytes.len() > MAX_HEAD_BYTES {
        return Err(err(
            431,
            format!("request head too large: at most {MAX_HEAD_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| err(400, "the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    if line.contains(['\r', '\n']) {
        return Err(err(400, "bad request line: a bare CR or LF"));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err(400, "bad request line: want METHOD TARGET HTTP/1.x"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(err(
                400,
                format!("unsupported HTTP version {version:?}: HTTP/1.1 or HTTP/1.0"),
            ));
        }
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(err(400, "bad request line: the method is not a word"));
    }
    // An absolute target (`http://host/path`) names the same path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(err(400, "bad request target: it must start with /"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        content_length: None,
        content_type: None,
        expect_continue: false,
        keep_alive: !http10,
    };
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(err(431, format!("too many headers: at most {MAX_HEADERS}")));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| err(400, "bad header line: no colon"))?;
        // Framing must read the same to every parser on the way (a proxy in
        // front, say): a name that is not a plain token (`Content-Length :`,
        // a folded line) or a bare CR or LF could hide a `Content-Length` or
        // `Transfer-Encoding` from this one and smuggle a request.
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(err(
                400,
                "bad header line: the name must be letters, digits or !#$%&'*+-.^_`|~ right before the colon",
            ));
        }
        if value.contains(['\r', '\n']) {
            return Err(err(400, "bad header line: a bare CR or LF"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| err(400, format!("bad Content-Length {value:?}")))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(err(400, "two different Content-Length headers"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(err(
                411,
                "Transfer-Encoding is not supported: send a Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(err(417, format!("cannot meet Expect: {value}")));
            }
            head.expect_continue = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.keep_alive = true;
                }
            }
        }
    }
    Ok(head)
}

/// A byte of an HTTP token (RFC 9110, section 5.6.2): what a header
/// name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A query string's (or form body's) fields; the last of a repeated name wins.
pub fn parse_form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// A request body's fields: a JSON object when `content_type` says
/// `application/json` (strings and numbers kept, other values ignored),
/// else form-encoded, as the original client sends it.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, Refusal> {
    let is_json = content_type.is_some_and(|c| {
        c.trim_start()
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Ok(parse_form(body));
    }
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| err(400, format!("the body is not a JSON object: {e}")))?;
    Ok(v.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect())
}

/// A uid field: 1 to [`MAX_UID_BYTES`] bytes, no control characters.
pub fn uid<'a>(f: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Refusal> {
    let v = f
        .get(name)
        .ok_or_else(|| err(400, format!("missing {name}")))?;
    if v.is_empty() || v.len() > MAX_UID_BYTES || v.chars().any(char::is_control) {
        return Err(err(
            400,
            format!("bad {name}: 1 to {MAX_UID_BYTES} bytes, no control characters"),
        ));
    }
    Ok(v)
}

/// An optional whole-number field.
pub fn number(f: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Refusal> {
    f.get(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| err(400, format!("bad {name}: not a whole number: {v:?}")))
        })
        .transpose()
}

/// A `/send`'s fields; `contents` at most `max_message` bytes (413).
pub fn send_request(
    f: &HashMap<String, String>,
    max_message: usize,
) -> Result<SendRequest, Refusal> {
    let sender = uid(f, "sender_uid")?;
    let recipient = uid(f, "recipient_uid")?;
    let contents = f
        .get("contents")
        .ok_or_else(|| err(400, "missing contents"))?;
    if contents.len() > max_message {
        return Err(err(
            413,
            format!(
                "message too large: {} bytes, at most {max_message}",
                contents.len()
            ),
        ));
    }
    Ok(SendRequest {
        sender_uid: sender.to_owned(),
        recipient_uid: recipient.to_owned(),
        contents: contents.to_owned(),
    })
}

/// A `/getmessages` query (`start_ref` required).
pub fn get_messages_query(q: &HashMap<String, String>) -> Result<GetMessagesQuery, Refusal> {
    let recipient = uid(q, "recipient_uid")?;
    let start_ref = number(q, "start_ref")?.ok_or_else(|| err(400, "missing start_ref"))?;
    Ok(GetMessagesQuery {
        recipient_uid: recipient.to_owned(),
        start_ref,
        maxcount: number(q, "maxcount")?,
        wait: number(q, "wait")?,
    })
}

/// The last `chars` characters of `s` (the send reply's `echo_tail`).
pub fn echo_tail(s: &str, chars: usize) -> &str {
    if chars == 0 {
        return "";
    }
    let start = s.char_indices().rev().nth(chars - 1).map_or(0, |(i, _)| i);
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(
            b"POST /send?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n\
              Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/send"));
        assert_eq!(h.query, "x=1");
        assert_eq!(h.content_length, Some(12));
        assert!(h.expect_continue && h.keep_alive);
        let h = parse_head(b"GET http://relay:8000/check HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(h.path, "/check");
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        for (bad, status) in [
            (&b"GET /\r\n\r\n"[..], 400),
            (b"GET / HTTP/2\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET nope HTTP/1.1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 400),
        ] {
            assert_eq!(parse_head(bad).unwrap_err().0, status, "{bad:?}");
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(65));
        assert_eq!(parse_head(many.as_bytes()).unwrap_err().0, 431);
    }

    #[test]
    fn bodies_and_fields() {
        let f = parse_body(None, b"sender_uid=a&recipient_uid=b&contents=QQ%3D%3D").unwrap();
        let s = send_request(&f, 4).unwrap();
        assert_eq!(s.contents, "QQ==");
        assert_eq!(send_request(&f, 3).unwrap_err().0, 413);
        let f = parse_body(
            Some("application/json; charset=utf-8"),
            br#"{"sender_uid":"a","recipient_uid":"b","contents":"x","n":5,"o":{}}"#,
        )
        .unwrap();
        assert_eq!(f.get("n").map(String::as_str), Some("5"));
        assert!(!f.contains_key("o"));
        assert_eq!(
            parse_body(Some("application/json"), b"[1]").unwrap_err().0,
            400
        );
        let q = parse_form(b"recipient_uid=bob&start_ref=3&wait=x");
        assert_eq!(get_messages_query(&q).unwrap_err().0, 400);
        assert_eq!(echo_tail("abcdef", 3), "def");
        assert_eq!(echo_tail("ab", 3), "ab");
        assert_eq!(echo_tail("ééé", 2), "éé");
    }
}
