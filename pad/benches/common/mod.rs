//! What the pad store's benches share.

use otc_pad::PadStore;
use otc_pad::generate::{NewPad, create_pad};
use otc_proto::Format;
use std::path::Path;

/// A pad of `size` bytes in `format` between two stores: `alice` makes it
/// for "bob" (its export written to `dir/export`), `bob` imports it as
/// "alice", and the export is deleted.
pub fn make_and_import(alice: &PadStore, bob: &PadStore, dir: &Path, size: u64, format: Format) {
    let export = dir.join("export");
    create_pad(
        alice,
        &NewPad {
            contact: "bob".into(),
            size,
            split: None,
            format,
            source: None,
            export: export.clone(),
        },
        &mut |_, _, _| {},
    )
    .expect("create pad");
    otc_pad::export::import(bob, &export, "alice", &mut |_, _| {}).expect("import");
    std::fs::remove_file(export).expect("remove export");
}
