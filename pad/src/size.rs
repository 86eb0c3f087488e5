//! Size strings for the command line: `1000`, `64K`, `512M`, `1G`, `1T`.
//!
//! Suffixes are powers of 1024 (K = 1024, M = 1024², G = 1024³, T = 1024⁴),
//! case-insensitive, optionally followed by `B` or `iB` (`64KiB`, `1GB`).
//! A bare number is a count of bytes.

use crate::error::{Error, Result};

/// Parse a size string into a number of bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::BadSize(s.to_string());
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let suffix = suffix.trim().to_ascii_uppercase();
    let unit = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B'))
        .unwrap_or(&suffix);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    // "B" alone with no unit is fine ("1000B"); "IB" alone is not.
    if unit.is_empty() && suffix == "IB" {
        return Err(bad());
    }
    let v = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_issue() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("64K").unwrap(), 64 * 1024);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
    }

    #[test]
    fn variants() {
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64KB").unwrap(), 65536);
        assert_eq!(parse_size("1000B").unwrap(), 1000);
        assert_eq!(parse_size(" 2G ").unwrap(), 2 << 30);
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "K",
            "-1",
            "1.5G",
            "1X",
            "0",
            "0K",
            "1 G G",
            "iB",
            "10iB",
            "99999999999999999999",
            "16777216T",
        ] {
            let e = parse_size(s).unwrap_err();
            assert_eq!(e.code(), "bad_size", "{s:?}");
        }
    }
}
