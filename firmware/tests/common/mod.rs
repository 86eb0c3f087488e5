//! Shared helpers for the integration tests: real directories, real files.
//!
//! The pad helpers (pairs of stores, pads, reading pad files back) are the
//! pad crate's test helpers, `pad/tests/common/mod.rs`, included from
//! there so both crates' tests use the same ones; the device helpers
//! (a running device, HTTP requests) are in `device.rs`.
#![allow(dead_code)]

pub mod device;

#[path = "../../../pad/tests/common/mod.rs"]
mod pad_helpers;
#[allow(unused_imports)]
pub use pad_helpers::*;

/// Every file (not directory) under `dir`.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read a directory") {
        let p = e.expect("an entry").path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
