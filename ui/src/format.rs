//! Number formatting for the screens and the command line: sizes in binary
//! units, counts with thousands separators, fingerprints in groups of four.
//!
//! Sizes use one unit system everywhere, binary (KiB = 1024 bytes, MiB,
//! GiB, TiB), because that is what the command line's `16M` means: a pad
//! made with `16M` reads "16.0 MiB" on the screen and in the CLI alike,
//! never "16.7 MB". The CLI (`otc_device::pad::size::human`) calls
//! [`bytes`].

/// "1 byte", "132 bytes", "9,876 bytes", "44.6 KiB", "297 MiB", "1.11 GiB".
///
/// Below 10,000 the exact count; above, three significant digits, rounded
/// down, so a screen never shows more pad left than there is.
pub fn bytes(n: u64) -> String {
    if n == 1 {
        return "1 byte".into();
    }
    if n < 10_000 {
        return format!("{} bytes", count(n));
    }
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scale = 1024u64;
    while unit + 1 < UNITS.len() && n >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    // Hundredths of the unit, in integers (no float rounding surprises).
    let hundredths = u128::from(n) * 100 / u128::from(scale);
    let whole = hundredths / 100;
    let name = UNITS[unit];
    if whole >= 100 {
        format!("{whole} {name}")
    } else if whole >= 10 {
        format!("{whole}.{} {name}", (hundredths % 100) / 10)
    } else {
        format!("{whole}.{:02} {name}", hundredths % 100)
    }
}

/// 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1 message", "9,812 messages".
pub fn messages(n: u64) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{} messages", count(n))
    }
}

/// Fingerprint characters (separators dropped, upper-cased) in groups of 4,
/// `per_row` groups to a row.
pub fn fingerprint_rows(fp: &str, per_row: usize) -> Vec<String> {
    let chars: Vec<char> = fp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let groups: Vec<String> = chars.chunks(4).map(|g| g.iter().collect()).collect();
    groups
        .chunks(per_row.max(1))
        .map(|row| row.join("  "))
        .collect()
}

/// Text from the computer: control characters removed, length capped.
pub fn untrusted(s: &str, max_chars: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() > max_chars {
        let cut: String = clean.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        clean.to_string()
    }
}

/// Countdown as "0:27" / "1:05".
pub fn countdown(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// A rough duration for people: "12 s", "3 min 05 s", "2 h 10 min".
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(132), "132 bytes");
        assert_eq!(bytes(9_876), "9,876 bytes");
        assert_eq!(bytes(9_999), "9,999 bytes");
        assert_eq!(bytes(10_000), "9.76 KiB");
        assert_eq!(bytes(45_678), "44.6 KiB");
        assert_eq!(bytes(65_536), "64.0 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1023 KiB");
        // `16M` on the command line is 16 MiB, and reads so.
        assert_eq!(bytes(16 << 20), "16.0 MiB");
        assert_eq!(bytes((8 << 20) + 400_000), "8.38 MiB");
        assert_eq!(bytes(312_000_000), "297 MiB");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        assert_eq!(bytes(1_199_999_868), "1.11 GiB");
        assert_eq!(bytes(2 << 40), "2.00 TiB");
        assert_eq!(bytes(5000 << 40), "5000 TiB");
        assert_eq!(bytes(u64::MAX), "16777215 TiB");
        // One unit system: never a decimal unit.
        for n in [10_000u64, 1 << 20, 8_388_608, 1 << 30, 1 << 40] {
            let s = bytes(n);
            assert!(s.ends_with("iB"), "{n} -> {s}");
        }
    }

    #[test]
    fn counts_and_messages() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(messages(1), "1 message");
        assert_eq!(messages(9812), "9,812 messages");
    }

    #[test]
    fn fingerprint_grouping() {
        let rows = fingerprint_rows("a1b2-c3d4 e5f6g7h8ijkl", 4);
        assert_eq!(rows, vec!["A1B2  C3D4  E5F6  G7H8", "IJKL"]);
        assert!(fingerprint_rows("", 4).is_empty());
    }

    #[test]
    fn untrusted_text_is_cleaned() {
        assert_eq!(untrusted(" hi\nthere\u{7} ", 40), "hi there");
        assert_eq!(untrusted("abcdefgh", 5), "abcd…");
    }

    #[test]
    fn durations_for_people() {
        use std::time::Duration;
        assert_eq!(duration(Duration::ZERO), "0 s");
        assert_eq!(duration(Duration::from_millis(1500)), "2 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(duration(Duration::from_secs(7800)), "2 h 10 min");
    }

    #[test]
    fn countdown_format() {
        assert_eq!(countdown(27), "0:27");
        assert_eq!(countdown(65), "1:05");
    }
}
