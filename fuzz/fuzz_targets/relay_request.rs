//! Fuzz target: everything otc-relay reads from a client (`otc_relay::parse`):
//! a request head, then the rest as a body (form or JSON, as the head's
//! Content-Type says), the endpoints' fields from it, and the same bytes
//! as a query string and as a JSON body. Nothing may panic; what parses
//! must make sense.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_relay::parse;

fn fields(f: &std::collections::HashMap<String, String>) {
    if let Ok(s) = parse::send_request(f, 1024) {
        assert!(s.contents.len() <= 1024);
        assert!(!s.sender_uid.is_empty() && s.sender_uid.len() <= parse::MAX_UID_BYTES);
        let tail = parse::echo_tail(&s.contents, 16);
        assert!(s.contents.ends_with(tail) && tail.chars().count() <= 16);
    }
    if let Ok(q) = parse::get_messages_query(f) {
        assert!(!q.recipient_uid.chars().any(char::is_control));
    }
    let _ = parse::uid(f, "userid");
}

fuzz_target!(|data: &[u8]| {
    let split = data.windows(4).position(|w| w == b"\r\n\r\n");
    if let Some(i) = split {
        let (head, body) = data.split_at(i + 4);
        if let Ok(h) = parse::parse_head(head) {
            assert!(h.path.starts_with('/'));
            assert!(!h.path.contains('?'));
            fields(&parse::parse_form(h.query.as_bytes()));
            if let Ok(f) = parse::parse_body(h.content_type.as_deref(), body) {
                fields(&f);
            }
        }
    } else if let Ok(h) = parse::parse_head(data) {
        assert!(h.path.starts_with('/'));
    }
    fields(&parse::parse_form(data));
    if let Ok(f) = parse::parse_body(Some("application/json"), data) {
        fields(&f);
    }
});
