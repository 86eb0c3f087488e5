//! `otc-image-verify audit DIR`: checks the audit log of an otc-device data
//! directory that the QEMU system test (`image/qemu-test`) copied off the
//! image after its power cuts, with the device's own chain check
//! ([`otc_device::audit::check`], read-only).
//!
//! Prints `entries N`, one `sealed CONTACT INDEX COST` line per seal the log
//! records (so the test can check that no pad range was handed out twice,
//! including seals whose reply a power cut lost), and one `problem: ...`
//! line per finding; exits 0 when the chain verifies from the first entry
//! to the last, 1 when it does not, 2 on a usage or I/O error.

use otc_device::audit::Event;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [cmd, dir] if cmd == "audit" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: otc-image-verify audit DIR");
            return ExitCode::from(2);
        }
    };
    match otc_device::audit::check(&dir) {
        Ok(checked) => {
            println!("entries {}", checked.entries.len());
            for e in &checked.entries {
                if let Event::Sealed {
                    contact,
                    index,
                    cost,
                    ..
                } = &e.event
                {
                    println!("sealed {contact} {index} {cost}");
                }
            }
            for p in &checked.problems {
                println!("problem: {p}");
            }
            if checked.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!(
                "otc-image-verify: cannot read the audit log in {}: {e}",
                dir.display()
            );
            ExitCode::from(2)
        }
    }
}
