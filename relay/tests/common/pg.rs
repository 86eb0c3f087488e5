//! A real PostgreSQL server for the `--database` tests: `initdb` into a
//! temporary directory, `pg_ctl start` on a free loopback port (its Unix
//! socket in the same directory), stopped by [`PgServer`]'s `Drop`, so
//! also when a test fails. PostgreSQL refuses to run as root: as root the
//! directory is given to the `postgres` user and the tools run through
//! `runuser -u postgres --`. Nothing is skipped: without the binaries
//! (`scripts/install-deps` installs `postgresql`) the test fails saying so.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn tool(name: &str) -> Command {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "{} is missing: install PostgreSQL 15 (scripts/install-deps installs `postgresql`)",
        path.display()
    );
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgServer {
    /// Creates a cluster and starts it.
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown of the cluster directory",
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = PgServer { dir, port };
        let mut c = tool("initdb");
        c.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(s.data());
        run(c, "initdb");
        s.pg_ctl_start();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://` URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn pg_ctl_start(&self) {
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start");
    }

    /// Stops the server (fast: open connections are cut).
    pub fn pg_ctl_stop(&self) {
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(c, "pg_ctl stop");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut c = tool("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        let _ = c.output();
    }
}

impl PgServer {
    /// Runs `sql` with `psql` and returns its unaligned output, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        let mut c = tool("psql");
        c.args([
            "-X",
            "-tA",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &self.port.to_string(), "-c", sql]);
        String::from_utf8(run(c, "psql").stdout)
            .unwrap()
            .trim()
            .to_owned()
    }
}
