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
use std::sync::Barrier;

use harness::daemon::{client_policy, daemon_folder, expires_in, line_of, signer_toml, Ca, Daemon};
use harness::pg::Postgres;
use harness::*;
use rcgen::KeyPair;
use serde_json::{json, Value};
use tufkey::keys::remote::{Client, ClientTls};

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
    let (dir, ca) = daemon_folder("tufkey-replicas-");
    let d = dir.path();
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
        let id = ids[i].0.as_str();
        let text = signer_toml(
            &format!("state = \"{}\"", pg.url()),
            "",
            &[&ids[i].1],
            &[
                client_policy(
                    "ci-main",
                    &[id],
                    &["*"],
                    &["targets", "snapshot", "timestamp"],
                    "7d",
                    "",
                ),
                client_policy(
                    "ci-slow",
                    &[id],
                    &["acme"],
                    &["timestamp"],
                    "7d",
                    "rate = \"3/min\"\n",
                ),
            ],
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
        err.contains(&format!(
            "replica-0.toml:{}:",
            line_of(&text, "workers = 4")
        )) && err.contains("remove `audit`"),
        "{err}"
    );
    // `--check` on the good config reaches PostgreSQL and verifies its chain.
    std::fs::write(&r.config, &text).unwrap();
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
    // The 503 was answered while PostgreSQL was down, so its entry could not be written
    // then: the daemon kept it and wrote it once the database was back, saying so.
    let exports = tempfile::tempdir().unwrap();
    let entries = exported(&pg, &exports.path().join("audit.jsonl"));
    let late: Vec<String> = entries
        .iter()
        .map(Value::to_string)
        .filter(|l| l.contains("recorded late") && l.contains("503"))
        .collect();
    assert_eq!(late.len(), 1, "one late entry, for the 503: {entries:?}");
    assert!(late[0].contains("refused"), "{}", late[0]);

    // Once the tables exist, a role with only the grants docs/signer.md lists runs a
    // replica (no DDL), and cannot create or drop anything.
    pg.psql(
        "signer",
        "CREATE ROLE tufkey_signer LOGIN; \
         GRANT SELECT, INSERT, UPDATE ON tufkey_versions, tufkey_rate TO tufkey_signer; \
         GRANT SELECT, INSERT ON tufkey_audit TO tufkey_signer; \
         GRANT SELECT, UPDATE ON tufkey_audit_head TO tufkey_signer; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    );
    let limited = pg.url().replace("tufkey@", "tufkey_signer@");
    std::fs::write(&r.config, text.replace(&pg.url(), &limited)).unwrap();
    let d = Daemon::start(s.dir.path(), &r.name, &r.hsm, &r.config);
    let c = d.client(&s.client_tls("ci-main"));
    let (status, body) = answer(
        &c.post_json("/v1/sign", &timestamp_req("acme", &s.key_id, 3))
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    d.stop();
    let out = ok(None, &["audit", "verify", &limited]);
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

    // verify-full by name, the CA named relative to the config file (as every path in
    // it is, whatever the daemon's working directory): the daemon signs, and its
    // audit chain verifies over TLS.
    let (code, out, err) = check(&format!(
        "postgres://tufkey@localhost:{port}/signer?sslmode=verify-full&sslrootcert=db-ca.pem"
    ));
    assert_eq!(code, 0, "{out}{err}");
    let url = format!(
        "postgres://tufkey@localhost:{port}/signer?sslmode=verify-full&sslrootcert={}",
        ca_file("db-ca")
    );
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
