//! TLS (issue 20): the relay terminates TLS with `--tls-cert`/`--tls-key`
//! and reloads them on SIGHUP; `otc`'s relay client trusts a pinned
//! certificate (`relay_ca`) and refuses another with a clear message.
//!
//! The certificates are small fixtures (tests/fixtures, self-signed
//! P-256, for `localhost` and 127.0.0.1, valid 100 years), made with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
//! -nodes -days 36500 -subj "/CN=otc test relay NAME" -addext
//! "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext
//! "basicConstraints=critical,CA:FALSE"`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use otc_rpc_client::relay::{RelayClient, RelayClientError, RelayOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `otc-relay --tls-cert CERT --tls-key KEY` on 127.0.0.1:0; the address
/// it prints (bounded: 20 s).
fn spawn_tls_relay(data: &Path, cert: &Path, key: &Path) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("otc-relay starts");
    let out = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("within 20 s, otc-relay prints the address it listens on");
    let addr = line
        .trim()
        .strip_prefix("otc-relay: listening on https://")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no https:// address in {line:?}"));
    (running, addr)
}

fn pinned(url: &str, cert: &str) -> Result<RelayClient, RelayClientError> {
    let opts = RelayOptions {
        ca_file: Some(fixture(cert)),
        insecure: false,
    };
    RelayClient::with_options(url, &opts).map(|c| c.with_timeout(Duration::from_secs(10)))
}

#[test]
fn a_pinned_self_signed_certificate_works_and_another_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_relay, addr) = spawn_tls_relay(
        dir.path(),
        &fixture("relay-cert.pem"),
        &fixture("relay-key.pem"),
    );
    for url in [
        format!("https://127.0.0.1:{}", addr.port()),
        format!("https://localhost:{}", addr.port()),
    ] {
        let c = pinned(&url, "relay-cert.pem").expect("client");
        c.check()
            .expect("check over TLS with the pinned certificate");
        let sent = c.send("alice", "bob", "aGVsbG8=").expect("send over TLS");
        let got = c
            .get_messages("bob", sent.msg_ref, 10, None)
            .expect("getmessages over TLS");
        assert_eq!(got.messages.len(), 1, "{got:?}");
        assert_eq!(got.messages[0].contents, "aGVsbG8=");
    }

    // Pinned to another certificate: refused, saying why.
    let url = format!("https://127.0.0.1:{}", addr.port());
    let e = pinned(&url, "other-cert.pem")
        .expect("client")
        .check()
        .expect_err("a relay with another certificate is refused");
    let text = e.to_string();
    assert!(matches!(e, RelayClientError::Tls { .. }), "{text}");
    assert!(
        text.contains("certificate is not trusted") && text.contains("relay_ca"),
        "{text}"
    );

    // The system's roots do not know a self-signed certificate either.
    match RelayClient::new(&url) {
        Ok(c) => {
            let e = c.check().expect_err("not in the system's roots");
            assert!(matches!(e, RelayClientError::Tls { .. }), "{e}");
        }
        // A machine without ca-certificates: said clearly, also a refusal.
        Err(e) => assert!(matches!(e, RelayClientError::TlsSetup { .. }), "{e}"),
    }

    // Plain HTTP to a TLS port is not answered as if it were a relay.
    let plain = RelayClient::new(&format!("http://127.0.0.1:{}", addr.port()))
        .expect("plain client (loopback)")
        .with_timeout(Duration::from_secs(10));
    assert!(plain.check().is_err(), "plain http to the TLS port");
}

#[test]
fn a_new_certificate_is_taken_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (
        tls_dir.path().join("cert.pem"),
        tls_dir.path().join("key.pem"),
    );
    std::fs::copy(fixture("relay-cert.pem"), &cert).expect("copy cert");
    std::fs::copy(fixture("relay-key.pem"), &key).expect("copy key");
    let (relay, addr) = spawn_tls_relay(dir.path(), &cert, &key);
    let url = format!("https://127.0.0.1:{}", addr.port());
    pinned(&url, "relay-cert.pem")
        .expect("client")
        .check()
        .expect("first certificate");
    let other = pinned(&url, "other-cert.pem").expect("client");
    assert!(other.check().is_err(), "not yet the other certificate");

    // Renewed: new files, then SIGHUP.
    std::fs::copy(fixture("other-cert.pem"), &cert).expect("copy cert");
    std::fs::copy(fixture("other-key.pem"), &key).expect("copy key");
    let status = Command::new("kill")
        .args(["-HUP", &relay.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -HUP");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match other.check() {
            Ok(()) => break,
            Err(e) if Instant::now() < until => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("within 10 s of SIGHUP, the relay serves the new certificate: {e}"),
        }
    }
    let old = pinned(&url, "relay-cert.pem").expect("client").check();
    assert!(old.is_err(), "the old certificate is no longer served");

    // A broken file on SIGHUP keeps the working certificate.
    std::fs::write(&cert, "not a certificate").expect("write");
    let status = Command::new("kill")
        .args(["-HUP", &relay.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -HUP");
    other
        .check()
        .expect("still the working certificate after a bad reload");
}

#[test]
fn a_missing_or_mismatched_key_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(fixture("relay-cert.pem"))
        .arg("--tls-key")
        .arg(fixture("other-key.pem"))
        .output()
        .expect("otc-relay runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit the certificate"), "{err}");
}
