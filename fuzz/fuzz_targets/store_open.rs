//! Fuzz target: untrusted packages handed to a real pad store (a small v1
//! or v3 pad in a temporary directory). `check_open` and `open` must never
//! panic; `check_open` must change nothing; nothing may open unless it was
//! sealed with the pad (the fuzzer cannot forge a tag by chance).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otc_device::pad::PadStore;
use otc_device::pad::generate::{NewPad, create_pad};
use otc_proto::Format;
use std::sync::OnceLock;

struct Fixture {
    _dir: std::path::PathBuf,
    store: PadStore,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("otc-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = PadStore::open_dir(dir.join("data")).expect("store");
        for (name, format) in [("v1", Format::V1), ("v3", Format::V3)] {
            create_pad(
                &store,
                &NewPad {
                    contact: name.into(),
                    size: 4096,
                    split: None,
                    format,
                    source: None,
                    export: dir.join(format!("{name}.export")),
                },
                &mut |_, _, _| {},
            )
            .expect("pad");
        }
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, package)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let contact = if sel & 1 == 0 { "v1" } else { "v3" };
    let before = f.store.meta(contact).expect("meta");
    let _ = f.store.check_open(contact, package);
    assert_eq!(f.store.meta(contact).expect("meta"), before);
    if let Ok(opened) = f.store.open(contact, package) {
        panic!("a fuzzed package opened: {} bytes", opened.message.len());
    }
});
