//! Issue 22, "Verify before the prompt", through the RPC of two real
//! devices (Alice and Bob over real HTTP on 127.0.0.1, the real UI on a
//! memory display, a frozen fake clock):
//!
//! * the v2 attack and its v3 variants, built by a relay that knows one
//!   message's text: the same slot, shorter, keyed with the known mask;
//!   the next slot with its text inside the known range. Each is refused at
//!   once (`bad_package`), with no prompt, and the genuine message opens
//!   afterwards; after it, the same-slot forgery is a `replayed`.
//! * the same for forged v1 packages on a v1 pad (a genuine index with 32
//!   body bytes, random bytes, a flipped tag bit);
//! * junk and forgeries never lock a contact out: more of them than the
//!   lockout limit, then the genuine package is shown and opens (on main
//!   five junk packages locked the contact for five minutes);
//! * a far skip with a bad tag gets no prompt (and so no "Skipped").
//!
//! A request that showed a prompt would hang on the frozen clock until
//! the client's read timeout, and the screen is checked to be home.

mod common;

use common::device::*;
use otc_proto::b64;
use otc_proto::routes;
use otc_proto::rpc::{PackageResponse, UnpackageResponse};
use otc_proto::{Format, v3};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use serde_json::json;

const SIZE: u64 = 64 * 1024;

/// Poly1305 under a 32-byte key the attacker chose.
fn tag_with(key: &[u8], data: &[u8]) -> [u8; 16] {
    Poly1305::new(poly1305::Key::from_slice(key))
        .compute_unpadded(data)
        .into()
}

/// A v3 package with head (t, k), text `m` masked with `mask`, and a tag
/// under `key` (which the attacker takes from known mask bytes).
fn forge_v3(t: u64, k: u32, m: &[u8], mask: &[u8], key: &[u8]) -> Vec<u8> {
    let head = v3::Head { text: t, slot: k }.to_bytes().unwrap();
    let mut p = head.to_vec();
    p.extend(m.iter().zip(mask).map(|(a, b)| a ^ b));
    let tag = tag_with(key, &p);
    p.extend_from_slice(&tag);
    p
}

/// Post `package` from `from` to `dev`: refused at once with `code`, no
/// prompt, nothing spent.
fn refused_at_once(dev: &Dev, from: &str, package: &[u8], code: &str) {
    let before = dev.contact(from);
    let r = dev.post(
        routes::UNPACKAGE,
        &json!({"from": from, "package": b64::encode(package)}),
    );
    let status = if code == "replayed" { 410 } else { 400 };
    r.expect_error(status, code);
    assert_eq!(dev.screen().screen, "home", "no prompt was shown");
    assert_eq!(dev.contact(from), before, "a refusal spends nothing");
}

#[test]
fn the_v2_attack_and_its_v3_variants_are_refused_before_any_prompt() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    assert_eq!(alice.contact("bob").format, Format::V3);
    let m = b"Meet me at the north gate at 9pm tonight. Bring the documents. -- A";
    assert_eq!(m.len(), 67);
    let (r, _) = bob.seal("alice", std::str::from_utf8(m).unwrap());
    let genuine = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    assert_eq!(genuine.len(), 67 + 27);
    // What the relay knows: the head, and the text mask ct ^ m.
    let head = v3::parse(&genuine).unwrap().head;
    let mask: Vec<u8> = genuine[11..11 + 67]
        .iter()
        .zip(m)
        .map(|(c, p)| c ^ p)
        .collect();
    let fake = b"Plans changed: 10pm, east gate -- A";
    assert_eq!(fake.len(), 35);
    // The v2 attack: same slot, shorter, the key from the mask bytes
    // after the shorter text (v2's key position).
    let same_slot = forge_v3(head.text, head.slot, fake, &mask, &mask[35..67]);
    // The next slot, its text inside the known range, keyed with the
    // known mask too.
    let next_slot = forge_v3(head.text, head.slot + 1, fake, &mask, &mask[32..64]);
    // And a next slot whose text starts further in the known range.
    let next_inner = forge_v3(
        head.text + 10,
        head.slot + 1,
        &fake[..20],
        &mask[10..],
        &mask[30..62],
    );
    for f in [&same_slot, &next_slot, &next_inner] {
        refused_at_once(&alice, "bob", f, "bad_package");
    }
    // The genuine message opens afterwards, with a prompt.
    let (r, shown) = alice.open("bob", &b64::encode(&genuine));
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some(std::str::from_utf8(m).unwrap())
    );
    assert!(!shown.has_text("Skipped"), "{shown:#?}");
    // Afterwards: the same-slot forgery is a replay (its slot is spent),
    // the next-slot ones reuse opened text.
    refused_at_once(&alice, "bob", &same_slot, "replayed");
    refused_at_once(&alice, "bob", &next_slot, "bad_package");
    refused_at_once(&alice, "bob", &next_inner, "bad_package");
    // Bob's next genuine message (slot 1) still opens.
    let (r, _) = bob.seal("alice", "second");
    let second = r.ok::<PackageResponse>().package;
    let (r, _) = alice.open("bob", &second);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("second")
    );
    alice.stop();
    let kinds = audit_kinds(&d.alice);
    let forged = kinds.iter().filter(|k| *k == "integrity_failure").count();
    assert_eq!(
        forged, 3,
        "each forgery before the genuine one is an alert: {kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k == "locked_out"), "{kinds:?}");
}

#[test]
fn forged_v1_packages_are_refused_before_any_prompt() {
    let d = dirs(&[pad("bob", "alice", Format::V1, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "a genuine v1 message");
    let genuine = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    // A genuine index and 32 body bytes.
    let mut short = genuine[..6].to_vec();
    short.extend_from_slice(&[0x5a; 32]);
    // A genuine index and random-looking bytes of the right length.
    let mut noise = genuine[..6].to_vec();
    noise.extend((0..genuine.len() - 6).map(|i| (i as u8).wrapping_mul(37) ^ 0xa5));
    // One flipped bit in the tag.
    let mut flipped = genuine.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    for f in [&short, &noise, &flipped] {
        refused_at_once(&alice, "bob", f, "bad_package");
    }
    let (r, _) = alice.open("bob", &b64::encode(&genuine));
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("a genuine v1 message")
    );
    refused_at_once(&alice, "bob", &genuine, "replayed");
    alice.stop();
    bob.stop();
}

/// On main, five junk packages locked a contact out for five minutes (with
/// no prompt at all): now junk and forgeries never count towards the
/// lockout, and past the rate limit they are `rate_limited` while a
/// package that verifies is still shown and opens.
#[test]
fn junk_and_forgeries_never_lock_a_contact_out() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "genuine");
    let genuine = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    let mut forged = genuine.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let junk: Vec<Vec<u8>> = vec![vec![0u8; 3], vec![9u8; 40], vec![3u8; 60], forged];
    let lockout = limits().lockout_failures as usize;
    let per_minute = limits().refused_per_minute as usize;
    assert!(
        per_minute > lockout,
        "the test needs room below the rate limit"
    );
    // More refusals than the lockout limit, fewer than the rate limit.
    for i in 0..lockout + 2 {
        refused_at_once(&alice, "bob", &junk[i % junk.len()], "bad_package");
    }
    let (r, _) = alice.open("bob", &b64::encode(&genuine));
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("genuine")
    );
    // Past the rate limit, junk gets `rate_limited`, but genuine mail is
    // not held back.
    for i in 0..per_minute + 2 {
        let r = alice.post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&junk[i % junk.len()])}),
        );
        assert!(
            r.status == 400 || r.status == 429,
            "junk is bad_package or rate_limited: {} {}",
            r.status,
            r.body
        );
    }
    alice
        .post(
            routes::UNPACKAGE,
            &json!({"from": "bob", "package": b64::encode(&junk[0])}),
        )
        .expect_error(429, "rate_limited");
    let (r, _) = bob.seal("alice", "still gets through");
    let next = r.ok::<PackageResponse>().package;
    let (r, _) = alice.open("bob", &next);
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("still gets through")
    );
    alice.stop();
    let kinds = audit_kinds(&d.alice);
    assert!(!kinds.iter().any(|k| k == "locked_out"), "{kinds:?}");
    bob.stop();
}

/// A package claiming a far slot with a bad tag: no prompt, so no
/// "Skipped" warning from unverified claims; a far slot outside the
/// region likewise. The genuine first message then opens with no skip.
#[test]
fn a_far_skip_with_a_bad_tag_gets_no_prompt() {
    let d = dirs(&[pad("bob", "alice", Format::V3, SIZE)]);
    let alice = Dev::start(&d.alice, "Alice", limits());
    let bob = Dev::start(&d.bob, "Bob", limits());
    let (r, _) = bob.seal("alice", "first");
    let genuine = b64::decode(&r.ok::<PackageResponse>().package).unwrap();
    let head = v3::parse(&genuine).unwrap().head;
    // Inside the region (slot 1000 of a 32 KiB side), tag made up.
    let far = forge_v3(head.text + 100, 1000, b"hello", &[0; 5], &[7; 32]);
    refused_at_once(&alice, "bob", &far, "bad_package");
    // The index 400000: outside the region.
    let out = forge_v3(head.text + 100, 400_000, b"hello", &[0; 5], &[7; 32]);
    refused_at_once(&alice, "bob", &out, "bad_package");
    let (r, shown) = alice.open("bob", &b64::encode(&genuine));
    assert_eq!(
        r.ok::<UnpackageResponse>().message.as_deref(),
        Some("first")
    );
    assert!(!shown.has_text("Skipped"), "{shown:#?}");
    alice.stop();
    bob.stop();
}
