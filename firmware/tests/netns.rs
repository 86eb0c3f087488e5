//! The RPC endpoint answers on the Ethernet side and on no other interface.
//!
//! The test builds its own little network out of Linux network namespaces
//! and veth pairs (it needs root, or CAP_SYS_ADMIN + CAP_NET_ADMIN, and
//! iproute2's `ip`):
//!
//! ```text
//!  otc-laptop-PID            otc-dev-PID                     otc-other-PID
//!  lap0 10.99.1.2/24 ──── vethA 10.99.1.1/24
//!                          vethB 10.99.2.1/24 ──── oth0 10.99.2.2/24
//!                                                   route 10.99.1.0/24 via 10.99.2.1
//! ```
//!
//! The real `otc-device` binary runs in `otc-dev-PID` with
//! `run --interface vethA`. The laptop gets `200` from
//! `http://10.99.1.1:9051/v1/status`. The other namespace's packets for
//! 10.99.1.1:9051 do arrive at the device (through vethB, by its route; a
//! plain listener on 10.99.1.1 without SO_BINDTODEVICE accepts them, which
//! the test shows as a control) but the endpoint is bound to vethA, so the
//! device's kernel answers with a reset: connection refused. 10.99.2.1:9051
//! is refused too. No packet ever leaves these namespaces.
//!
//! When namespaces cannot be made here the test fails with the reason,
//! unless `OTC_SKIP_NETNS=1` is set.
//!
//! The tests of `run`'s refusals (wildcard `--listen`, unknown interface)
//! need no namespaces and run everywhere.

use nix::sched::{CloneFlags, setns};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_otc-device");

fn otc(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run otc-device")
}

/// A data directory with an owner.
fn init(owner: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = otc(dir.path(), &["init", "--owner", owner]);
    assert!(
        o.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

/// Run `ip ARGS`, returning stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The three namespaces, the veth pairs between them, and the device
/// process. Dropping it stops the device and deletes the namespaces (which
/// deletes the veth pairs with them), also when an assertion failed.
struct Lab {
    dev: String,
    laptop: String,
    other: String,
    device: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.device.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.dev, &self.laptop, &self.other] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Lab {
    fn build() -> Result<Lab, String> {
        let pid = std::process::id();
        let lab = Lab {
            dev: format!("otc-dev-{pid}"),
            laptop: format!("otc-laptop-{pid}"),
            other: format!("otc-other-{pid}"),
            device: None,
        };
        let (dev, lap, oth) = (&lab.dev, &lab.laptop, &lab.other);
        for ns in [dev, lap, oth] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // veth pairs made straight inside the namespaces: no name ever
        // appears in the host's namespace.
        ip(&[
            "link", "add", "vethA", "netns", dev, "type", "veth", "peer", "name", "lap0", "netns",
            lap,
        ])?;
        ip(&[
            "link", "add", "vethB", "netns", dev, "type", "veth", "peer", "name", "oth0", "netns",
            oth,
        ])?;
        for (ns, ifc, addr) in [
            (dev, "vethA", "10.99.1.1/24"),
            (dev, "vethB", "10.99.2.1/24"),
            (lap, "lap0", "10.99.1.2/24"),
            (oth, "oth0", "10.99.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", ifc])?;
            ip(&["-n", ns, "link", "set", ifc, "up"])?;
        }
        // The other side reaches the device's Ethernet address through
        // vethB. 10.99.1.1 is local to the device, so the packet is
        // delivered there without forwarding; only the socket lookup
        // decides whether anything answers.
        ip(&[
            "-n",
            oth,
            "route",
            "add",
            "10.99.1.0/24",
            "via",
            "10.99.2.1",
        ])?;
        ip(&[
            "-n",
            lap,
            "route",
            "add",
            "10.99.2.0/24",
            "via",
            "10.99.1.1",
        ])?;
        Ok(lab)
    }

    /// Start `otc-device run ARGS` inside the device namespace and wait for
    /// it to print where it listens.
    fn run_device(&mut self, data: &Path, args: &[&str]) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.dev, BIN, "--data"])
            .arg(data)
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn otc-device in the device namespace");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        self.device = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("RPC endpoint:") {
                    let _ = tx.send(line);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                if let Some(mut c) = self.device.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                panic!("otc-device did not start in {}:\n{err}", self.dev);
            }
        }
    }
}

/// Run `f` on a thread that lives in network namespace `ns`: sockets it
/// makes belong to that namespace.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        setns(&fd, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// `GET /v1/status` from the current namespace through the shared client:
/// the status code and the body, or the connection error (refused, reset
/// or timed out, as the kernel said).
fn get_status(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    use otc_rpc_client::ClientError;
    let reply = otc_rpc_client::Client::new(addr)
        .with_timeout(Duration::from_secs(5))
        .send("GET", otc_proto::routes::STATUS, None)
        .map_err(|e| match e {
            ClientError::Connect { source, .. } | ClientError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?;
    Ok((
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    ))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A connection attempt that must be refused (a reset from the device's
/// kernel), not time out: a timeout would mean the packet never arrived,
/// which proves nothing about the endpoint.
fn assert_refused(ns: &str, to: SocketAddr) {
    let r = in_ns(ns, move || get_status(to));
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("from {ns}, {to} must refuse the connection; got {other:?}"),
    }
}

#[test]
fn the_endpoint_answers_on_the_ethernet_side_only() {
    let mut lab = match Lab::build() {
        Ok(lab) => lab,
        Err(e) if std::env::var("OTC_SKIP_NETNS").as_deref() == Ok("1") => {
            eprintln!("skipped (OTC_SKIP_NETNS=1): cannot build the namespaces: {e}");
            return;
        }
        Err(e) => panic!(
            "this test needs network namespaces (root or CAP_SYS_ADMIN + CAP_NET_ADMIN, and \
             iproute2's `ip`); set OTC_SKIP_NETNS=1 to skip it where they cannot be made.\n{e}"
        ),
    };
    let data = init("Alice");
    let line = lab.run_device(
        data.path(),
        &["--interface", "vethA", "--display", "memory"],
    );
    assert!(line.contains("http://10.99.1.1:9051/"), "{line}");

    // The laptop, on the Ethernet cable.
    let (code, body) = in_ns(&lab.laptop, || get_status(addr("10.99.1.1:9051")))
        .expect("the laptop reaches the endpoint on vethA");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status["owner"], "Alice", "{body}");

    // Control: a plain socket on the device's Ethernet address (no
    // SO_BINDTODEVICE) is reachable from the other namespace, so packets
    // from there do arrive at the device through vethB.
    let control = in_ns(&lab.dev, || {
        TcpListener::bind("10.99.1.1:9052").expect("control listener")
    });
    in_ns(&lab.other, || {
        TcpStream::connect_timeout(&addr("10.99.1.1:9052"), Duration::from_secs(3))
    })
    .expect("control: the other namespace reaches 10.99.1.1 through vethB");
    drop(control);

    // The endpoint itself is bound to vethA: the same packets get a reset.
    assert_refused(&lab.other, addr("10.99.1.1:9051"));
    // ... and it does not listen on the other interface's address at all.
    assert_refused(&lab.other, addr("10.99.2.1:9051"));
    assert_refused(&lab.laptop, addr("10.99.2.1:9051"));

    // Still serving the laptop after all that.
    let (code, _) = in_ns(&lab.laptop, || get_status(addr("10.99.1.1:9051")))
        .expect("the laptop still reaches the endpoint");
    assert_eq!(code, 200);

    let device = lab.device.as_mut().expect("device");
    assert!(
        device.try_wait().expect("device status").is_none(),
        "the device is still running"
    );
}

#[test]
fn run_refuses_a_wildcard_listen_address() {
    let data = init("Alice");
    for wildcard in ["0.0.0.0:9051", "[::]:9051"] {
        let o = otc(
            data.path(),
            &["run", "--listen", wildcard, "--display", "memory"],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{wildcard}: {err}");
        assert!(err.contains("error[net]"), "{err}");
        assert!(
            err.contains("refusing to listen on wildcard address"),
            "{err}"
        );
        assert!(err.contains("--interface eth0"), "says what to do: {err}");
    }
    let o = otc(
        data.path(),
        &["run", "--listen", "10.99.1.1:9051", "--display", "memory"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("loopback addresses only"), "{err}");
}

#[test]
fn run_on_an_unknown_interface_is_a_clear_error() {
    let data = init("Alice");
    let o = otc(
        data.path(),
        &["run", "--interface", "nosuch0", "--display", "memory"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error[net]"), "{err}");
    assert!(
        err.contains("interface \"nosuch0\" does not exist or has no IPv4 address"),
        "{err}"
    );
}
