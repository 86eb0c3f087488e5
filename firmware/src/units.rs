//! Byte counts for people, on the command line exactly as on the screen.
//!
//! Parsing size strings (`64K`, `1G`) is the pad crate's
//! ([`crate::pad::size`]); showing them is presentation, so it stays in
//! the appliance, next to the screen's formatter it calls.

/// Format a byte count for people, exactly as the screen does
/// ([`otc_ui::format::bytes`]): binary units, `64.0 KiB`, `1.50 GiB`,
/// `100 bytes`. One formatter, so the CLI and the screen never disagree.
pub fn human(bytes: u64) -> String {
    otc_ui::format::bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pad::size::parse_size;

    #[test]
    fn human_sizes() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(65536), "64.0 KiB");
        assert_eq!(human(3 << 29), "1.50 GiB");
        // What `16M` parses to reads back in the same units, as on screen.
        let n = parse_size("16M").unwrap();
        assert_eq!(human(n), "16.0 MiB");
        assert_eq!(human(n), otc_ui::format::bytes(n));
    }
}
