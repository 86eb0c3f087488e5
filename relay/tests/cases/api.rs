// The API tests that need only a fresh relay (`start`), included by
// api.rs (SQLite) and api_postgres.rs (PostgreSQL): the same bodies run
// against both backends.

#[test]
fn check_is_byte_exact() {
    let (relay, _d) = start(|_| {});
    let r = get(relay.addr(), "/check");
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"status":"ok"}"#));
}

#[test]
fn send_form_and_json_and_get_messages_shapes() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    let r = post_form(
        a,
        "/send",
        "sender_uid=alice&recipient_uid=bob&contents=QUJDRA%3D%3D",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"received":true,"echo_tail":"QUJDRA==","ref":1}"#
    );
    let r = post_json(
        a,
        "/send",
        r#"{"sender_uid":"carol","recipient_uid":"bob","contents":"0123456789abcdefXYZ"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"received":true,"echo_tail":"3456789abcdefXYZ","ref":2}"#
    );
    let r = get(a, "/getmessages?recipient_uid=bob&start_ref=0");
    assert_eq!(
        r.body,
        concat!(
            r#"{"recipient_uid":"bob","count":2,"messages":["#,
            r#"{"ref":1,"recipient_uid":"bob","sender_uid":"alice","contents":"QUJDRA=="},"#,
            r#"{"ref":2,"recipient_uid":"bob","sender_uid":"carol","contents":"0123456789abcdefXYZ"}"#,
            r#"],"complete":true}"#
        )
    );
    // start_ref filters, maxcount cuts and says so.
    let r = get(a, "/getmessages?recipient_uid=bob&start_ref=2");
    assert_eq!(r.json()["count"], 1);
    let r = get(a, "/getmessages?recipient_uid=bob&start_ref=0&maxcount=1");
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["complete"], false);
    // Another recipient sees nothing.
    assert_eq!(
        get(a, "/getmessages?recipient_uid=alice&start_ref=0").body,
        r#"{"recipient_uid":"alice","count":0,"messages":[],"complete":true}"#
    );
    assert_eq!(
        get(a, "/getnextref?recipient_uid=bob").body,
        r#"{"nextref":3}"#
    );
}

#[test]
fn refs_only_increase() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    let refs: Vec<u64> = (0..5)
        .map(|i| {
            let to = if i % 2 == 0 { "bob" } else { "carol" };
            send(a, "alice", to, &format!("AAA{i}"))
        })
        .collect();
    assert!(refs.windows(2).all(|w| w[0] < w[1]), "{refs:?}");
    let next = get(a, "/getnextref?recipient_uid=zed").json()["nextref"]
        .as_u64()
        .unwrap();
    assert!(next > refs[4]);
}

#[test]
fn errors_are_4xx_json() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    for (r, status) in [
        (get(a, "/getmessages?start_ref=0"), 400),
        (get(a, "/getmessages?recipient_uid=bob&start_ref=x"), 400),
        (get(a, "/getmessages?recipient_uid=bob"), 400),
        (get(a, "/getnextref"), 400),
        (post_form(a, "/send", "sender_uid=a&recipient_uid=b"), 400),
        (post_json(a, "/send", "{not json"), 400),
        (post_json(a, "/send", "[1,2]"), 400),
        (post_form(a, "/send", "%%%&&&==="), 400),
        (get(a, "/send"), 405),
        (get(a, "/nope"), 404),
        // Mischief is off by default.
        (get(a, "/mischief?userid=bob&kind=drop"), 404),
        (post_form(a, "/mischief", "userid=bob&kind=drop"), 404),
    ] {
        assert_eq!(r.status, status, "{}", r.body);
        let j = r.json();
        assert_eq!(j["error"], status);
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(j.as_object().unwrap().len(), 2, "{}", r.body);
    }
    // The relay still works after all that.
    assert_eq!(get(a, "/check").status, 200);
}

#[test]
fn long_poll_wakes_on_send_and_times_out_empty() {
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    let poll = std::thread::spawn(move || {
        request_with(
            a,
            "GET",
            "/getmessages?recipient_uid=bob&start_ref=1&wait=30",
            None,
            b"",
            // Shorter than the wait: only a wake-up answers in time.
            Duration::from_secs(15),
        )
    });
    // Only once the poll has parked is the message sent: then only a
    // wake-up can answer it before the client gives up (a message already
    // there would be returned at once, parked or not).
    until_parked(&relay, 1);
    send(a, "alice", "bob", "HELLO");
    let r = poll.join().expect("poll thread");
    assert_eq!(r.json()["count"], 1, "{}", r.body);
    assert_eq!(r.json()["messages"][0]["contents"], "HELLO");

    // Nothing arrives: an empty reply after the wait, which the poll
    // spent parked (not an empty answer at once).
    let parked = relay.long_polls_parked();
    let r = request_with(
        a,
        "GET",
        "/getmessages?recipient_uid=bob&start_ref=2&wait=1",
        None,
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(
        r.body,
        r#"{"recipient_uid":"bob","count":0,"messages":[],"complete":true}"#
    );
    assert!(
        relay.long_polls_parked() > parked,
        "the empty poll was answered without waiting"
    );
}

/// Wait, at most 20 s, until `relay` has parked `n` long polls in all.
fn until_parked(relay: &otc_relay::Relay, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while relay.long_polls_parked() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 20 s for {n} long poll(s) to park; {} did",
            relay.long_polls_parked()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn garbage_never_takes_the_relay_down() {
    use std::io::{Read, Write};
    let (relay, _d) = start(|_| {});
    let a = relay.addr();
    let raw: [&[u8]; 6] = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /getmessages?recipient_uid=%ff%fe&start_ref=99999999999999999999999 HTTP/1.1\r\n\r\n",
        b"POST /send HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /send HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00{[",
        b"GET /check HTTP/1.1\r\nHost: \xff\r\n",
        b"POST /send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n",
    ];
    for bytes in raw {
        let mut s = std::net::TcpStream::connect(a).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    for q in [
        "/getmessages?recipient_uid=bob&start_ref=-1",
        "/getmessages?recipient_uid=bob&start_ref=0&maxcount=99999999999999999999",
        "/getmessages?recipient_uid=bob&start_ref=0&wait=x",
        "/getnextref?recipient_uid=",
        "/getnextref?recipient_uid=%00",
    ] {
        let r = get(a, q);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
    let long_uid = "u".repeat(65);
    let r = post_form(
        a,
        "/send",
        &format!("sender_uid={long_uid}&recipient_uid=bob&contents=A"),
    );
    assert_eq!(r.status, 400);
    // Unicode contents: the echo tail is cut on a character boundary.
    let r = post_json(
        a,
        "/send",
        r#"{"sender_uid":"a","recipient_uid":"b","contents":"ééééééééééééééééééé"}"#,
    );
    assert_eq!(r.json()["echo_tail"], "éééééééééééééééé");
    assert_eq!(get(a, "/check").body, r#"{"status":"ok"}"#);
}

/// Every refusal, from the HTTP layer too, is exactly
/// `{"error":STATUS,"message":TEXT}` with a 4xx status and a JSON type.
#[test]
fn refusals_are_exactly_error_then_message() {
    use std::io::{Read, Write};
    let (relay, _d) = start(|c| c.max_message = 100);
    let a = relay.addr();
    let r = get(a, "/getmessages?recipient_uid=bob");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"error":400,"message":"missing start_ref"}"#)
    );
    let raw = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(a).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let huge_head = format!("GET /check HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    for (bytes, status) in [
        (
            &b"POST /send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            411,
        ),
        (b"BAD\r\n\r\n", 400),
        (b"GET /check HTTP/2.0\r\n\r\n", 400),
        (huge_head.as_bytes(), 431),
        (
            b"POST /send HTTP/1.1\r\nContent-Length: 999999\r\n\r\n",
            413,
        ),
        (b"GET /check HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
    ] {
        let reply = raw(bytes);
        let (head, body) = reply.split_once("\r\n\r\n").expect("a reply");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["error"], status);
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty());
        assert_eq!(
            body,
            format!(
                r#"{{"error":{status},"message":{}}}"#,
                serde_json::json!(msg)
            )
        );
    }
}

/// curl sends `Expect: 100-continue` before bodies over 1 KiB: the relay
/// says continue, then reads the body.
#[test]
fn expect_continue() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (relay, _d) = start(|_| {});
    let body = format!(
        "sender_uid=alice&recipient_uid=bob&contents={}",
        "A".repeat(2000)
    );
    let mut s = std::net::TcpStream::connect(relay.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /send HTTP/1.1\r\nHost: r\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).expect("the interim reply");
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).expect("the reply");
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(rest.ends_with(r#""ref":1}"#), "{rest}");
}
