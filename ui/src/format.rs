//! Number formatting for the screens: sizes in decimal units, counts with
//! thousands separators, fingerprints in groups of four.

/// "132 bytes", "9,876 bytes", "45.6 KB", "312 MB", "1.20 GB".
pub fn bytes(n: u64) -> String {
    if n == 1 {
        return "1 byte".into();
    }
    if n < 10_000 {
        return format!("{} bytes", count(n));
    }
    let units = [("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)];
    let mut pick = units[0];
    for u in units {
        if n as f64 >= u.1 {
            pick = u;
        }
    }
    let v = n as f64 / pick.1;
    if v >= 100.0 {
        format!("{:.0} {}", v.floor(), pick.0)
    } else if v >= 10.0 {
        format!("{:.1} {}", (v * 10.0).floor() / 10.0, pick.0)
    } else {
        format!("{:.2} {}", (v * 100.0).floor() / 100.0, pick.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(132), "132 bytes");
        assert_eq!(bytes(9_876), "9,876 bytes");
        assert_eq!(bytes(45_678), "45.6 KB");
        assert_eq!(bytes(312_000_000), "312 MB");
        assert_eq!(bytes(1_199_999_868), "1.19 GB");
        assert_eq!(bytes(2_000_000_000_000), "2.00 TB");
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
    fn countdown_format() {
        assert_eq!(countdown(27), "0:27");
        assert_eq!(countdown(65), "1:05");
    }
}
