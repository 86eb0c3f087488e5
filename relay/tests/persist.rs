//! The real binary: messages and refs survive a SIGKILL and restart; an
//! older relay's log is refused until imported, and its import drops a
//! torn last record and keeps every ref.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `otc-relay` on port 0 and reads the address it prints.
fn spawn(data: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otc-relay"));
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra);
    spawn_cmd(cmd)
}

/// Starts `cmd` (an otc-relay on port 0) and reads the address it prints
/// (bounded: 20 s).
fn spawn_cmd(mut cmd: Command) -> (Running, SocketAddr) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otc-relay starts");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            all.push_str(&l);
            all.push('\n');
            let _ = etx.send(all.clone());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("within 20 s, otc-relay prints the address it listens on");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no address in {line:?}; stderr: {:?}",
                erx.try_iter().last()
            )
        });
    (running, addr)
}

#[test]
fn survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, a) = spawn(dir.path(), &[]);
    let mut refs = Vec::new();
    for i in 0..20 {
        refs.push(send(a, "alice", "bob", &format!("M{i}")));
    }
    send(a, "bob", "alice", "HI");
    let next_before = get(a, "/getnextref?recipient_uid=bob").json()["nextref"]
        .as_u64()
        .unwrap();
    // SIGKILL: no chance to flush anything.
    relay.0.kill().expect("SIGKILL the relay");
    relay.0.wait().expect("reap the relay");

    let (_relay, a) = spawn(dir.path(), &[]);
    let got = contents(a, "bob", 0);
    let want: Vec<String> = (0..20).map(|i| format!("M{i}")).collect();
    assert_eq!(got, want);
    assert_eq!(contents(a, "alice", 0), ["HI"]);
    let next_after = get(a, "/getnextref?recipient_uid=bob").json()["nextref"]
        .as_u64()
        .unwrap();
    assert_eq!(next_after, next_before);
    let r = send(a, "alice", "bob", "AFTER");
    assert!(r > *refs.last().unwrap());
    assert_eq!(r, next_before);
}

/// `prlimit --pid PID --fsize=LIMIT:`: the largest file `PID` may write
/// (util-linux's prlimit, on the running relay). Only the soft limit is
/// moved, so raising it again needs no privilege.
fn set_file_size_limit(pid: u32, limit: &str) {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={limit}:"))
        .output()
        .expect("prlimit runs (util-linux)");
    assert!(
        out.status.success(),
        "prlimit --fsize={limit}: : {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commit path when the disk refuses a write (issue 20: the old log
/// was tested across SIGKILL only, which never fails a write). The relay
/// runs with SIGXFSZ ignored, and the test lowers its file-size limit
/// (`prlimit`) just above what its files hold, so the next commit's WAL
/// write fails with EFBIG as a full disk would fail it. Every send then
/// gets 507 saying nothing was stored, none is acknowledged, and the
/// relay keeps answering; once the limit is lifted, sends are
/// acknowledged again with refs above every earlier one, and after a
/// SIGKILL and restart exactly the acknowledged messages are there.
#[test]
fn a_disk_that_refuses_the_commit_gets_507_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    // An ignored signal stays ignored across exec.
    cmd.args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path());
    let (mut relay, a) = spawn_cmd(cmd);
    let pid = relay.0.id();
    let mut acked = Vec::new();
    for i in 0..3 {
        let body = format!("OK{i}");
        acked.push((send(a, "alice", "bob", &body), body));
    }
    let biggest = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    set_file_size_limit(pid, &(biggest + 4096).to_string());
    let big = "R".repeat(40_000);
    for i in 0..4 {
        let r = post_form(
            a,
            "/send",
            &format!("sender_uid=alice&recipient_uid=bob&contents={big}{i}"),
        );
        assert_eq!(r.status, 507, "send {i} with the disk refusing: {}", r.body);
        assert!(r.body.contains("not stored"), "{}", r.body);
    }
    assert_eq!(
        get(a, "/check").status,
        200,
        "the relay still answers after failed commits"
    );
    set_file_size_limit(pid, "unlimited");
    for i in 0..2 {
        let body = format!("AFTER{i}");
        let r = send(a, "alice", "bob", &body);
        assert!(
            acked.iter().all(|(earlier, _)| r > *earlier),
            "ref {r} after the failures is not above every earlier ack: {acked:?}"
        );
        acked.push((r, body));
    }
    relay.0.kill().expect("SIGKILL the relay");
    relay.0.wait().expect("reap the relay");
    let (_relay, a) = spawn(dir.path(), &[]);
    let want: Vec<String> = acked.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(
        contents(a, "bob", 0),
        want,
        "after a restart: exactly the acknowledged messages"
    );
}

#[test]
fn refs_used_up_without_a_message_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_relay, a) = spawn(dir.path(), &["--mischief"]);
        send(a, "alice", "bob", "ONE");
        // A dropped message uses up its ref; a restart must not reuse it.
        post_form(a, "/mischief", "userid=bob&kind=drop");
        send(a, "alice", "bob", "GONE");
    }
    let (_relay, a) = spawn(dir.path(), &[]);
    assert_eq!(contents(a, "bob", 0), ["ONE"]);
    assert_eq!(send(a, "alice", "bob", "THREE"), 3);
    assert_eq!(contents(a, "bob", 0), ["ONE", "THREE"]);
}

/// `otc-relay --data DIR --import-log`, bounded (20 s): its output.
fn import(dir: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--import-log", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otc-relay --import-log starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll the import").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("otc-relay --import-log did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the import's output")
}

/// An older relay's log is refused with words that name the import; the
/// import drops a torn last record (never acknowledged) and keeps refs
/// above every ref the log used, skipped ones included.
#[test]
fn an_old_log_is_refused_until_imported_and_its_torn_tail_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(otc_relay::store::LOG_NAME);
    let mut text = concat!(
        r#"{"t":"m","ref":1,"recipient_uid":"bob","sender_uid":"alice","contents":"ONE","at":4000000000}"#,
        "\n",
        r#"{"t":"s","ref":2}"#,
        "\n",
    )
    .as_bytes()
    .to_vec();
    // A write cut short by a crash.
    text.extend_from_slice(br#"{"t":"m","ref":99,"recipient_uid":"bo"#);
    std::fs::write(&log, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .expect("otc-relay runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("messages.log") && err.contains("--import-log"),
        "{err}"
    );
    let out = import(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1 messages"));
    assert!(!log.exists(), "the log is renamed once imported");
    let (_relay, a) = spawn(dir.path(), &[]);
    assert_eq!(contents(a, "bob", 0), ["ONE"]);
    assert_eq!(send(a, "alice", "bob", "THREE"), 3);
    assert_eq!(contents(a, "bob", 0), ["ONE", "THREE"]);
}

#[test]
fn mischief_mode_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .args(["--listen", "not an address", "--data"])
        .arg(dir.path())
        .arg("--mischief")
        .output()
        .expect("otc-relay runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MISCHIEF MODE IS ON"), "{err}");
    assert!(
        err.contains(r#"--listen "not an address" is not an address to listen on"#),
        "{err}"
    );
    assert!(!out.status.success());
    let help = Command::new(env!("CARGO_BIN_EXE_otc-relay"))
        .arg("--help")
        .output()
        .expect("otc-relay --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for w in [
        "--listen",
        "--data",
        "--mischief",
        "EXAMPLES",
        "/getmessages",
    ] {
        assert!(help.contains(w), "--help lacks {w}");
    }
}

/// `--keep-days`: messages older than that are dropped at start; refs are
/// never reused; `--keep-days 0` keeps everything. (The messages come
/// from an older relay's log, imported: that is how they get old dates.)
#[test]
fn old_messages_are_pruned_at_start_and_refs_stay_above() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(otc_relay::store::LOG_NAME);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    std::fs::write(
        &log,
        format!(
            concat!(
                r#"{{"t":"m","ref":1,"recipient_uid":"bob","sender_uid":"a","contents":"ANCIENT","at":{}}}"#,
                "\n",
                r#"{{"t":"m","ref":2,"recipient_uid":"bob","sender_uid":"a","contents":"OLD","at":{}}}"#,
                "\n",
                r#"{{"t":"m","ref":5,"recipient_uid":"bob","sender_uid":"a","contents":"RECENT","at":{}}}"#,
                "\n",
                // Written before pruning existed: no "at", counts as new.
                r#"{{"t":"m","ref":6,"recipient_uid":"carol","sender_uid":"a","contents":"UNDATED"}}"#,
                "\n"
            ),
            now - 400 * day,
            now - 8 * day,
            now - day
        ),
    )
    .unwrap();
    assert!(import(dir.path()).status.success());
    {
        let (_relay, a) = spawn(dir.path(), &["--keep-days", "0"]);
        assert_eq!(contents(a, "bob", 0), ["ANCIENT", "OLD", "RECENT"]);
    }
    {
        let (_relay, a) = spawn(dir.path(), &["--keep-days", "7"]);
        // start_ref below the oldest kept: starts at the oldest kept.
        assert_eq!(contents(a, "bob", 0), ["RECENT"]);
        assert_eq!(contents(a, "carol", 0), ["UNDATED"]);
        assert_eq!(send(a, "alice", "bob", "NEW"), 7);
    }
    // After pruning, refs continue above every ref used.
    let (_relay, a) = spawn(dir.path(), &["--keep-days", "7"]);
    assert_eq!(contents(a, "bob", 0), ["RECENT", "NEW"]);
    let next = get(a, "/getnextref?recipient_uid=bob").json()["nextref"]
        .as_u64()
        .unwrap();
    assert_eq!(next, 8);
}
