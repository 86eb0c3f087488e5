//! Fuzz target: the chat client's parsing of a relay's `/getmessages`
//! reply (raw HTTP bytes from an untrusted relay). Never panics; whatever
//! passes keeps the promises the client relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_rpc_client::relay::{Expected, parse_raw_get_messages};

fuzz_target!(|data: &[u8]| {
    let want = Expected {
        recipient: "bob",
        start_ref: 7,
        maxcount: 20,
    };
    if let Ok(r) = parse_raw_get_messages(data, 64 * 1024, &want) {
        assert_eq!(r.count as usize, r.messages.len());
        assert!(r.messages.len() <= 20);
        let mut floor = 7;
        for m in &r.messages {
            assert!(m.msg_ref >= floor);
            assert_eq!(m.recipient_uid, "bob");
            floor = m.msg_ref + 1;
        }
    }
});
