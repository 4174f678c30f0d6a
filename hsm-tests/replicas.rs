//! Several signer replicas on one PostgreSQL store: two real `tufkey serve` processes,
//! each with its own SoftHSM folder holding a copy of the same key (as replicas with
//! HSM-replicated keys would), sharing the versions, rate buckets and ONE audit chain
//! in a real PostgreSQL server that this file starts on loopback with a throwaway
//! data directory and stops by PID.
//!
//! Without PostgreSQL binaries (Debian's `postgresql` package; hsm-tests/run.sh
//! installs it) the tests say why and skip; under `CI=true` they fail instead.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use harness::daemon::{expires_in, Ca, Daemon};
use harness::*;
use rcgen::KeyPair;
use serde_json::{json, Value};
use tufkey::keys::remote::{Client, ClientTls};

// ---------------------------------------------------------------------------
// A throwaway PostgreSQL server.

/// The folder with `initdb` and `postgres`: Debian's /usr/lib/postgresql/<ver>/bin
/// (newest first), or `TUFKEY_TEST_PG_BIN`.
fn pg_bin() -> Option<PathBuf> {
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private PostgreSQL server: its own data directory, socket folder and loopback
/// port; stopped by the PID in its `postmaster.pid` when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The running server (`runuser` wrapping it when root), `None` while stopped.
    child: Option<Child>,
    port: u16,
    root: bool,
}

impl Postgres {
    /// Starts a server, or returns `None` (after saying why) when PostgreSQL is not
    /// installed and this is not CI.
    fn start() -> Option<Postgres> {
        let Some(bin) = pg_bin() else {
            let why = "PostgreSQL is not installed (Debian: apt-get install postgresql; hsm-tests/run.sh does it)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("skipping the replica tests: {why}");
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

    fn as_pg(&self, prog: &str) -> Command {
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
    fn spawn(&mut self) {
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
    fn stop(&mut self) {
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
    fn require_tls(&mut self, cert: &Path, key: &Path) {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("postgres://tufkey@127.0.0.1:{}/signer", self.port)
    }

    /// Runs SQL as the superuser (over TCP; trust authentication on loopback).
    fn psql(&self, db: &str, sql: &str) -> String {
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

/// One replica: its own SoftHSM folder with the shared key imported, its own config.
struct Replica {
    hsm: SoftHsm,
    config: PathBuf,
    name: String,
}

/// Two replicas' worth of setup on one PostgreSQL store.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    key_id: String,
    key: Value,
    replicas: Vec<Replica>,
}

fn setup(pg: &Postgres) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("tufkey-replicas-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "client-ca");
    ca.issue(d, "server", "localhost", true, false);
    // The online key, made in software once and imported into every replica's HSM.
    let key_file = d.join("online.p8.pem");
    std::fs::write(&key_file, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mut replicas = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let hsm = SoftHsm::new();
        let token = hsm.token("online", "4321");
        let uri = token.uri("ts");
        let out = ok(
            Some(&hsm),
            &["key", "import", key_file.to_str().unwrap(), &uri, "--json"],
        );
        let imported: Value = serde_json::from_str(&out).unwrap();
        ids.push((imported["keyid"].as_str().unwrap().to_string(), uri));
        let name = format!("replica-{i}");
        let config = d.join(format!("{name}.toml"));
        let text = format!(
            r#"listen = "127.0.0.1:0"
state = "{url}"
workers = 4

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "client-ca.pem"

[[keys]]
uri = "{uri}"

[[clients]]
identity = "ci-main"
keys = ["{id}"]
repositories = ["*"]
roles = ["targets", "snapshot", "timestamp"]
max_expiry = "7d"

[[clients]]
identity = "ci-slow"
keys = ["{id}"]
repositories = ["acme"]
roles = ["timestamp"]
max_expiry = "7d"
rate = "3/min"
"#,
            url = pg.url(),
            uri = ids[i].1,
            id = ids[i].0,
        );
        std::fs::write(&config, text).unwrap();
        replicas.push(Replica { hsm, config, name });
    }
    assert_eq!(ids[0].0, ids[1].0, "both HSMs hold the same key");
    let shown = ok(
        Some(&replicas[0].hsm),
        &["key", "show", &ids[0].1, "--json"],
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    Setup {
        dir,
        ca,
        key_id: ids[0].0.clone(),
        key: shown["key"].clone(),
        replicas,
    }
}

impl Setup {
    fn client_tls(&self, name: &str) -> ClientTls {
        let (c, k) = self.ca.issue(self.dir.path(), name, name, false, false);
        ClientTls {
            ca: self.dir.path().join("client-ca.pem"),
            identity: Some((c, k)),
        }
    }

    fn start_all(&self) -> Vec<Daemon> {
        self.replicas
            .iter()
            .map(|r| Daemon::start(self.dir.path(), &r.name, &r.hsm, &r.config))
            .collect()
    }
}

fn timestamp_req(repo: &str, key_id: &str, version: u64) -> Value {
    json!({
        "repository": repo,
        "key_id": key_id,
        "metadata": {
            "signed": {
                "_type": "timestamp",
                "spec_version": "1.0.31",
                "version": version,
                "expires": expires_in(3600),
                "meta": {"snapshot.json": {"version": version}},
            },
            "signatures": [],
        },
    })
}

/// (status, error code) of an answer.
fn answer(r: &tufkey::keys::remote::Response) -> (u16, String) {
    (
        r.status,
        r.json()["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// The audit log held in PostgreSQL, through `tufkey audit export`.
fn exported(pg: &Postgres, into: &Path) -> Vec<Value> {
    ok(
        None,
        &[
            "audit",
            "export",
            &pg.url(),
            "--output",
            into.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(into)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------

#[test]
fn two_replicas_sign_each_version_once_and_keep_one_audit_chain() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let s = setup(&pg);
    let daemons = s.start_all();
    let main = s.client_tls("ci-main");

    // Simultaneous requests for the same repository, role and version, spread over
    // both replicas: exactly one signature per version, every other one refused.
    let (rounds, per_round) = (4u64, 12usize);
    for version in 1..=rounds {
        let barrier = Barrier::new(per_round);
        let body = timestamp_req("race", &s.key_id, version);
        let answers: Vec<(u16, String, Value)> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..per_round)
                .map(|i| {
                    let (d, tls, barrier, body) = (&daemons[i % 2], &main, &barrier, &body);
                    scope.spawn(move || {
                        let c = d.client(tls);
                        barrier.wait();
                        let r = c.post_json("/v1/sign", body).unwrap();
                        let (st, code) = answer(&r);
                        (st, code, r.json())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins: Vec<&(u16, String, Value)> = answers.iter().filter(|a| a.0 == 200).collect();
        assert_eq!(wins.len(), 1, "version {version}: {answers:?}");
        for a in answers.iter().filter(|a| a.0 != 200) {
            assert_eq!(
                (a.0, a.1.as_str()),
                (403, "version-not-increasing"),
                "{a:?}"
            );
        }
        // The one signature verifies with the key both HSMs hold.
        let key = tufkey::tuf::Key::from_value(&s.key_id, &s.key).unwrap();
        let md = tufkey::tuf::Metadata::from_value(body["metadata"].clone()).unwrap();
        assert_eq!(wins[0].2["keyid"], s.key_id.as_str());
        key.verify_hex(&md.payload(), wins[0].2["sig"].as_str().unwrap())
            .unwrap();
    }

    // One replica's signature is a replay on the other, in both directions.
    let (a, b) = (daemons[0].client(&main), daemons[1].client(&main));
    let sign = |c: &Client, v: u64| {
        answer(
            &c.post_json("/v1/sign", &timestamp_req("acme", &s.key_id, v))
                .unwrap(),
        )
    };
    assert_eq!(sign(&a, 10).0, 200);
    assert_eq!(sign(&b, 10), (403, "version-not-increasing".into()));
    assert_eq!(sign(&b, 11).0, 200);
    assert_eq!(sign(&a, 9), (403, "version-not-increasing".into()));

    // The rate bucket is shared: 3 a minute for ci-slow, whichever replica it asks.
    let slow = s.client_tls("ci-slow");
    let (sa, sb) = (daemons[0].client(&slow), daemons[1].client(&slow));
    assert_eq!(sign(&sa, 100).0, 200);
    assert_eq!(sign(&sb, 101).0, 200);
    assert_eq!(sign(&sa, 102).0, 200);
    assert_eq!(sign(&sb, 103), (429, "rate-limited".into()));

    for d in daemons {
        d.stop();
    }

    // ONE chain holding every request from both replicas, accepted and refused.
    let out = ok(None, &["audit", "verify", &pg.url()]);
    assert!(out.contains("chain intact"), "{out}");
    let file = s.dir.path().join("exported.jsonl");
    let entries = exported(&pg, &file);
    let out = ok(None, &["audit", "verify", file.to_str().unwrap()]);
    assert!(out.contains("chain intact"), "{out}");
    let race: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "sign" && e["repository"] == "race")
        .collect();
    assert_eq!(race.len() as u64, rounds * per_round as u64);
    assert_eq!(
        race.iter().filter(|e| e["result"] == "signed").count() as u64,
        rounds
    );
    assert_eq!(
        race.iter()
            .filter(|e| e["result"] == "refused"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("version-not-increasing:")))
            .count() as u64,
        rounds * (per_round as u64 - 1)
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "sign" && e["repository"] == "acme")
            .count(),
        7
    );
    // The rate limit refuses before the body is read: that entry names the client.
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["who"] == "ci-slow" && e["status"] == 429)
            .count(),
        1
    );
    assert_eq!(entries.iter().filter(|e| e["action"] == "start").count(), 2);
    assert_eq!(entries.iter().filter(|e| e["action"] == "stop").count(), 2);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
    }

    // State survives restarting both replicas.
    let daemons = s.start_all();
    let (a, b) = (daemons[0].client(&main), daemons[1].client(&main));
    assert_eq!(sign(&a, 11), (403, "version-not-increasing".into()));
    assert_eq!(sign(&b, 11), (403, "version-not-increasing".into()));
    let r = b
        .post_json("/v1/sign", &timestamp_req("race", &s.key_id, rounds))
        .unwrap();
    assert_eq!(answer(&r), (403, "version-not-increasing".into()));
    assert_eq!(sign(&b, 102), (403, "version-not-increasing".into()));
    assert_eq!(sign(&b, 200).0, 200);
    assert_eq!(
        sign(&daemons[0].client(&slow), 104),
        (429, "rate-limited".into()),
        "the rate bucket survives a restart too"
    );
    for d in daemons {
        d.stop();
    }
    let out = ok(None, &["audit", "verify", &pg.url()]);
    assert!(out.contains("chain intact"), "{out}");

    // Tampering in the database is detected, and a replica refuses to start on it.
    let n: u64 = pg
        .psql("signer", "SELECT count(*) FROM tufkey_audit")
        .parse()
        .unwrap();
    assert_eq!(n as usize, entries.len() + 2 + 6 + 2);
    pg.psql(
        "signer",
        "UPDATE tufkey_audit SET line = replace(line, '\"who\":\"ci-main\"', '\"who\":\"ci-evil\"') WHERE seq = (SELECT min(seq) FROM tufkey_audit WHERE line LIKE '%\"who\":\"ci-main\"%')",
    );
    let (code, msg) = fails(None, &["audit", "verify", &pg.url()]);
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("line "), "{msg}");
    let mut c = tufkey(Some(&s.replicas[0].hsm));
    c.args(["serve", "--config", s.replicas[0].config.to_str().unwrap()]);
    let (code, _, err) = run(c);
    assert_ne!(code, 0);
    assert!(err.contains("audit log") || err.contains("line "), "{err}");
    // Put it back, then cut the last entry: the head row shows it.
    pg.psql(
        "signer",
        "UPDATE tufkey_audit SET line = replace(line, '\"who\":\"ci-evil\"', '\"who\":\"ci-main\"')",
    );
    ok(None, &["audit", "verify", &pg.url()]);
    pg.psql(
        "signer",
        "DELETE FROM tufkey_audit WHERE seq = (SELECT max(seq) FROM tufkey_audit)",
    );
    let (code, msg) = fails(None, &["audit", "verify", &pg.url()]);
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("removed from the end"), "{msg}");
}

#[test]
fn a_replica_checks_its_config_and_rides_out_a_database_outage() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let s = setup(&pg);
    let r = &s.replicas[0];
    let text = std::fs::read_to_string(&r.config).unwrap();
    std::fs::write(
        &r.config,
        text.replacen("workers = 4", "audit = \"audit.jsonl\"\nworkers = 4", 1),
    )
    .unwrap();
    let mut c = tufkey(Some(&r.hsm));
    c.args(["serve", "--config", r.config.to_str().unwrap(), "--check"]);
    let (code, _, err) = run(c);
    assert_ne!(code, 0);
    assert!(
        err.contains("replica-0.toml:3:") && err.contains("remove `audit`"),
        "{err}"
    );
    // `--check` on the good config reaches PostgreSQL and verifies its chain.
    std::fs::write(&r.config, text).unwrap();
    let out = ok(
        Some(&r.hsm),
        &["serve", "--config", r.config.to_str().unwrap(), "--check"],
    );
    assert!(out.contains("ok"), "{out}");

    // PostgreSQL goes away: nothing is signed (503), and signing resumes when it is back.
    let d = Daemon::start(s.dir.path(), &r.name, &r.hsm, &r.config);
    let c = d.client(&s.client_tls("ci-main"));
    let sign = |v: u64| {
        answer(
            &c.post_json("/v1/sign", &timestamp_req("acme", &s.key_id, v))
                .unwrap(),
        )
    };
    assert_eq!(sign(1).0, 200);
    pg.stop();
    assert_eq!(sign(2), (503, "state-unavailable".into()));
    pg.spawn();
    assert_eq!(sign(1), (403, "version-not-increasing".into()));
    assert_eq!(sign(2).0, 200);
    d.stop();
    let out = ok(None, &["audit", "verify", &pg.url()]);
    assert!(out.contains("chain intact"), "{out}");
}

/// `state = "postgres://…?sslmode=verify-full&sslrootcert=…"`: the replica talks to a
/// TLS-only PostgreSQL and authenticates it by its certificate; a plain connection, a
/// server certificate from another CA, or one for another name is refused before the
/// daemon starts, with the reason.
#[test]
fn a_replica_reaches_postgres_over_verified_tls_only() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let s = setup(&pg);
    let d = s.dir.path();
    let db_ca = Ca::new(d, "db-ca");
    let (cert, key) = db_ca.issue_named(d, "db", "db.internal", &["localhost"], false);
    pg.require_tls(&cert, &key);
    let other_ca = Ca::new(d, "other-ca");

    let r = &s.replicas[0];
    let text = std::fs::read_to_string(&r.config).unwrap();
    let plain = pg.url();
    let port = pg.port;
    let check = |url: &str| {
        std::fs::write(&r.config, text.replace(&plain, url)).unwrap();
        let mut c = tufkey(Some(&r.hsm));
        c.args(["serve", "--config", r.config.to_str().unwrap(), "--check"]);
        run(c)
    };
    let ca_file = |name: &str| d.join(format!("{name}.pem")).to_str().unwrap().to_string();

    // No TLS: the server's pg_hba refuses it, and the daemon does not start.
    let (code, _, err) = check(&plain);
    assert_ne!(code, 0);
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );

    // The server's certificate comes from a CA we do not trust.
    let url = format!(
        "postgres://tufkey@localhost:{port}/signer?sslmode=verify-full&sslrootcert={}",
        ca_file("other-ca")
    );
    let (code, _, err) = check(&url);
    assert_ne!(code, 0);
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains(&format!("localhost:{port}")), "{err}");

    // The right CA, but the certificate names `localhost`, not 127.0.0.1: verify-full
    // refuses, verify-ca (chain only) accepts.
    let by_ip = |mode: &str| {
        format!(
            "postgres://tufkey@127.0.0.1:{port}/signer?sslmode={mode}&sslrootcert={}",
            ca_file("db-ca")
        )
    };
    let (code, _, err) = check(&by_ip("verify-full"));
    assert_ne!(code, 0);
    assert!(err.contains("certificate"), "{err}");
    let (code, out, err) = check(&by_ip("verify-ca"));
    assert_eq!(code, 0, "{out}{err}");

    // `require` without a root certificate is refused by tufkey itself.
    let (code, _, err) = check(&format!(
        "postgres://tufkey@localhost:{port}/signer?sslmode=require"
    ));
    assert_ne!(code, 0);
    assert!(err.contains("needs sslrootcert"), "{err}");
    drop(other_ca);

    // verify-full by name: the daemon signs, and its audit chain verifies over TLS.
    let url = format!(
        "postgres://tufkey@localhost:{port}/signer?sslmode=verify-full&sslrootcert={}",
        ca_file("db-ca")
    );
    let (code, out, err) = check(&url);
    assert_eq!(code, 0, "{out}{err}");
    let daemon = Daemon::start(d, &r.name, &r.hsm, &r.config);
    let c = daemon.client(&s.client_tls("ci-main"));
    let (status, _) = answer(
        &c.post_json("/v1/sign", &timestamp_req("acme", &s.key_id, 1))
            .unwrap(),
    );
    assert_eq!(status, 200);
    daemon.stop();
    let out = ok(None, &["audit", "verify", &url]);
    assert!(out.contains("chain intact"), "{out}");
    // (pg_hba rejects every TCP connection without TLS, so these were all TLS.)
}
