//! `otc-device run --watchdog`: the real binary pets a regular file that
//! stands in for /dev/watchdog (the Linux watchdog API is writes: a pet is
//! a byte, the magic close a `V`). A SIGTERM stop ends with `V`; a SIGKILL
//! leaves no `V` (the kernel would keep counting); the flags' misuse is a
//! clear error. The health decision itself is unit-tested in
//! `src/watchdog.rs` on a fake clock; the reset of a hung device in
//! `image/qemu-test`.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_otc-device");
/// Every wait in this file gives up after this long, saying what it
/// waited for.
const WAIT: Duration = Duration::from_secs(20);

fn otc(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run otc-device")
}

struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        // Only if a test failed before the process ended.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `run` on loopback with no screen, petting `dog`; returns once `dog`
/// holds at least 2 pets (the one at open, and one after the start).
fn start(data: &Path, dog: &Path) -> Device {
    let o = otc(data, &["init", "--owner", "Alice"]);
    assert!(
        o.status.success(),
        "init: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(dog, b"").expect("the stand-in watchdog file");
    let child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--display",
            "memory",
            "--watchdog",
        ])
        .arg(dog)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start otc-device run");
    let mut dev = Device(child);
    let deadline = Instant::now() + WAIT;
    while std::fs::read(dog).map(|b| b.len()).unwrap_or(0) < 2 {
        if let Some(status) = dev.0.try_wait().expect("try_wait") {
            panic!("otc-device run exited ({status}) before it petted the watchdog twice");
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT:?} waiting for 2 pets in {}",
            dog.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    dev
}

fn wait_exit(dev: &mut Device) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = dev.0.try_wait().expect("try_wait") {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT:?} waiting for otc-device to exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sigterm_stop_pets_then_closes_with_v() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dog) = (tmp.path().join("data"), tmp.path().join("watchdog"));
    let mut dev = start(&data, &dog);
    kill(Pid::from_raw(dev.0.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(&mut dev);
    assert!(status.success(), "a SIGTERM stop exits 0, not {status}");
    let bytes = std::fs::read(&dog).unwrap();
    let (last, pets) = bytes.split_last().expect("bytes");
    assert_eq!(*last, b'V', "the magic close comes last: {bytes:?}");
    assert!(
        pets.len() >= 2 && pets.iter().all(|&b| b != b'V'),
        "{bytes:?}"
    );
}

#[test]
fn a_sigkill_leaves_the_watchdog_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dog) = (tmp.path().join("data"), tmp.path().join("watchdog"));
    let mut dev = start(&data, &dog);
    dev.0.kill().unwrap();
    wait_exit(&mut dev);
    let bytes = std::fs::read(&dog).unwrap();
    assert!(bytes.len() >= 2, "{bytes:?}");
    assert!(
        !bytes.contains(&b'V'),
        "no magic close after SIGKILL: {bytes:?}"
    );
}

#[test]
fn watchdog_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = otc(&data, &["init", "--owner", "Alice"]);
    assert!(o.status.success());
    let run = ["run", "--listen", "127.0.0.1:0", "--display", "memory"];
    // A timeout without a watchdog, and one out of range: usage errors.
    let o = otc(&data, &[&run[..], &["--watchdog-timeout", "10"]].concat());
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = otc(
        &data,
        &[
            &run[..],
            &["--watchdog", "/dev/null", "--watchdog-timeout", "1"],
        ]
        .concat(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A character device that is no watchdog, and a missing one: errors
    // that name it, before anything starts.
    for (dev, says) in [
        (
            "/dev/null",
            "cannot set the timeout of the watchdog /dev/null",
        ),
        (
            "/nonexistent/watchdog",
            "cannot open the watchdog /nonexistent/watchdog",
        ),
    ] {
        let o = otc(&data, &[&run[..], &["--watchdog", dev]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{dev}: {err}");
        assert!(err.contains(says), "{dev}: {err}");
    }
}
