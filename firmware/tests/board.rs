//! Issue 14, board support: the real `otc-device run` binary, with a status
//! LED, push buttons and a backlight idle time in its `otc.toml`, starts on
//! a machine with no GPIO (this one: a desktop or CI runner, like QEMU's
//! virtual board), says so once on stderr, serves, and stops cleanly.
//!
//! The LED, buttons and backlight themselves are tested through their
//! twins in `src/board/*.rs` and `src/board.rs` (fake clock).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_otc-device");
/// Every wait in this file gives up after this long, saying what it
/// waited for.
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_device_starts_without_a_gpio_chip_and_says_so_once() {
    if otc_device::board::board_model().is_some_and(|m| m.contains("Raspberry Pi")) {
        eprintln!("skipped: this machine is a Raspberry Pi, which has GPIO");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let o = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["init", "--owner", "Alice"])
        .output()
        .expect("run otc-device init");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let toml = data.join("otc.toml");
    let mut cfg = std::fs::read_to_string(&toml).expect("read otc.toml");
    cfg.push_str(
        "\n[display]\nbacklight_idle_secs = 30\n\n[status_led]\npin = 17\n\n\
         [buttons]\napprove_pin = 5\nreject_pin = 6\n",
    );
    std::fs::write(&toml, cfg).expect("write otc.toml");

    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["run", "--listen", "127.0.0.1:0", "--display", "memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start otc-device run");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("RPC endpoint:") {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let url = match rx.recv_timeout(WAIT) {
        Ok(u) => u,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the device did not print its endpoint within {WAIT:?}; stderr:\n{}",
                err_reader.join().unwrap_or_default()
            );
        }
    };
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected endpoint line {url:?}"));
    let status = otc_rpc_client::Client::new(addr).status();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait for the device") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the device did not stop within {WAIT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = err_reader.join().expect("stderr reader");
    let status = status.unwrap_or_else(|e| panic!("/v1/status failed: {e}; stderr:\n{err}"));
    assert_eq!(status.owner, "Alice");
    assert!(exit.success(), "exit {exit:?}; stderr:\n{err}");
    assert_eq!(
        err.matches("otc-device: no GPIO here").count(),
        1,
        "said once; stderr:\n{err}"
    );
    assert!(
        err.contains("the status LED and the push buttons are off"),
        "stderr:\n{err}"
    );
}
