//! A throwaway PostgreSQL server for tests: its own data directory, socket folder and
//! loopback port, `trust` authentication, stopped by the postmaster's PID at drop.
//! (The same server hsm-tests/replicas.rs starts; shared here for the audit tests.)
//!
//! Self-contained, so a test file can include it with
//! `#[path = "harness/pg.rs"] mod pg;` or through `harness::pg`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder with `initdb` and `postgres`: Debian's /usr/lib/postgresql/<ver>/bin
/// (newest first), or `TUFKEY_TEST_PG_BIN`.
pub fn pg_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TUFKEY_TEST_PG_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.join("initdb").exists());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private PostgreSQL server: its own data directory, socket folder and loopback
/// port; stopped by the PID in its `postmaster.pid` when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The running server (`runuser` wrapping it when root), `None` while stopped.
    child: Option<Child>,
    pub port: u16,
    root: bool,
}

impl Postgres {
    /// Starts a server, or returns `None` (after saying why) when PostgreSQL is not
    /// installed and this is not CI.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = pg_bin() else {
            let why = "PostgreSQL is not installed (Debian: apt-get install postgresql; hsm-tests/run.sh does it)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("skipping the PostgreSQL tests: {why}");
            return None;
        };
        // PostgreSQL refuses to run as root: then everything runs as `postgres`.
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tufkey-pg-")
            .tempdir()
            .unwrap();
        if root {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown the PostgreSQL folder to postgres");
        }
        let mut pg = Postgres {
            dir,
            bin,
            child: None,
            port: free_port(),
            root,
        };
        let out = pg
            .as_pg("initdb")
            .arg("-D")
            .arg(pg.dir.path().join("data"))
            .args(["-U", "tufkey", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.spawn();
        pg.psql("postgres", "CREATE DATABASE signer");
        Some(pg)
    }

    pub fn as_pg(&self, prog: &str) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(prog));
            c
        } else {
            Command::new(self.bin.join(prog))
        };
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        c
    }

    /// Starts the server on its data directory and port; waits until it accepts.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .unwrap();
        let child = self
            .as_pg("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < until,
                "postgres did not accept connections: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server by the postmaster's PID (under runuser the child is runuser
    /// itself) with SIGINT, PostgreSQL's fast shutdown, and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::trim).map(str::to_string))
            .filter(|p| p.parse::<u32>().is_ok());
        match pid {
            Some(pid) => {
                let _ = Command::new("kill").args(["-INT", &pid]).status();
            }
            None => {
                let _ = child.kill();
            }
        }
        let until = Instant::now() + Duration::from_secs(30);
        while let Ok(None) = child.try_wait() {
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the server with TLS on (this certificate and key) and only TLS
    /// connections allowed over TCP (`hostssl`); the unix socket stays open for psql.
    pub fn require_tls(&mut self, cert: &Path, key: &Path) {
        self.stop();
        let data = self.dir.path().join("data");
        std::fs::copy(cert, data.join("server.crt")).unwrap();
        std::fs::copy(key, data.join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.root {
            for f in ["server.crt", "server.key"] {
                let st = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(data.join(f))
                    .status()
                    .unwrap();
                assert!(st.success());
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("postgres://tufkey@127.0.0.1:{}/signer", self.port)
    }

    /// Runs SQL as the superuser (over TCP; trust authentication on loopback).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "tufkey",
            ])
            .args(["-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
