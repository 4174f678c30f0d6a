//! The CLI's audit entries (`--audit-log`), end to end with real parts: the real
//! `tufkey` binary against SoftHSM tokens, a real `tufkey serve` appending to the SAME
//! file while many CLI processes do, `tufkey audit verify` as the judge, and a
//! throwaway PostgreSQL server for `--audit-log postgres://…`.
//!
//! Part of the `cli` test binary (hsm-tests/cli.rs includes it):
//! `cargo test --test cli audit::`.

use crate::harness::pg;

use std::path::{Path, PathBuf};
use std::sync::Barrier;

use crate::harness::daemon::{client_policy, daemon_folder, expires_in, signer_toml, Ca, Daemon};
use crate::harness::*;
use serde_json::{json, Value};
use tufkey::keys::remote::ClientTls;

/// `tufkey audit verify LOG --json`: requires an intact chain, returns its report.
fn verified(log: &str) -> Value {
    let out = ok(None, &["audit", "verify", log, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    v
}

/// The entries of a JSON-lines log.
fn entries(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn timestamp(version: u64) -> Value {
    json!({
        "_type": "timestamp",
        "spec_version": "1.0.31",
        "version": version,
        "expires": expires_in(86400),
        "meta": {"snapshot.json": {"version": version}},
    })
}

/// (uid, user name) of this test process, as the CLI should record them.
fn me() -> (u64, String) {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    let uid: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    (uid, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn cli_key_generate_and_sign_on_softhsm_are_audited_with_who_and_what() {
    let hsm = SoftHsm::new();
    let token = hsm.token("audited", "1234");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_s = log.to_str().unwrap();

    // key generate, with the log given by environment.
    let mut c = tufkey(Some(&hsm));
    c.args([
        "key",
        "generate",
        &token.uri("ts"),
        "--type",
        "ecdsa-p256",
        "--json",
    ])
    .env("TUFKEY_AUDIT_LOG", &log);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    let keyid = serde_json::from_str::<Value>(&out).unwrap()["keyid"]
        .as_str()
        .unwrap()
        .to_string();

    // sign, with the log and an actor given by flags; the URI carries a PIN value,
    // which must never reach the log.
    let md = dir.path().join("timestamp.json");
    write_unsigned(&md, timestamp(7));
    let with_pin = format!(
        "pkcs11:token=audited;object=ts?module-path={}&pin-value=1234",
        softhsm_module().display()
    );
    ok(
        Some(&hsm),
        &[
            "--audit-log",
            log_s,
            "--audit-actor",
            "alice (timestamp keyholder)",
            "sign",
            md.to_str().unwrap(),
            "--key",
            &with_pin,
        ],
    );
    let payload = ok(None, &["payload", md.to_str().unwrap(), "--sha256"]);

    // A failing sign (no such key): an `error` entry with the reason; file unchanged.
    let no_such_key = token.uri("nope");
    let sign_with_no_such_key = || {
        fails(
            Some(&hsm),
            &[
                "--audit-log",
                log_s,
                "sign",
                md.to_str().unwrap(),
                "--key",
                &no_such_key,
            ],
        )
    };
    let before = std::fs::read(&md).unwrap();
    let (_, msg) = sign_with_no_such_key();
    assert_eq!(std::fs::read(&md).unwrap(), before, "{msg}");

    // Not audited: reading commands.
    ok(
        Some(&hsm),
        &["--audit-log", log_s, "key", "list", &token.token_uri()],
    );

    let report = verified(log_s);
    assert_eq!(report["entries"], 3, "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("1234"),
        "a PIN reached the audit log: {text}"
    );
    let e = entries(&log);
    let (uid, user) = me();
    for x in &e {
        assert_eq!(x["source"], "cli");
        assert_eq!(x["uid"], uid);
        assert_eq!(x["user"], user.as_str());
        assert!(x["host"].as_str().is_some_and(|h| !h.is_empty()), "{x}");
        assert!(x["time"].as_str().is_some(), "{x}");
        assert!(
            x.get("repository").is_none(),
            "the CLI must not feed the daemon's version state: {x}"
        );
    }
    assert_eq!(e[0]["action"], "key generate");
    assert_eq!(e[0]["result"], "ok");
    assert_eq!(e[0]["key_id"], keyid.as_str());
    assert!(
        e[0]["key_uri"].as_str().unwrap().contains("object=ts"),
        "{}",
        e[0]
    );
    assert!(e[0]["who"]
        .as_str()
        .unwrap()
        .ends_with(&format!("@{}", e[0]["host"].as_str().unwrap())));

    assert_eq!(e[1]["action"], "sign");
    assert_eq!(e[1]["result"], "signed");
    assert_eq!(e[1]["who"], "alice (timestamp keyholder)");
    assert_eq!(e[1]["role"], "timestamp");
    assert_eq!(e[1]["version"], 7);
    assert_eq!(e[1]["key_id"], keyid.as_str());
    assert_eq!(e[1]["payload_sha256"], payload.trim());
    assert_eq!(
        Path::new(e[1]["file"].as_str().unwrap()),
        std::fs::canonicalize(&md).unwrap()
    );
    assert!(
        e[1]["key_uri"].as_str().unwrap().contains("pin-value=***"),
        "{}",
        e[1]
    );

    assert_eq!(e[2]["action"], "sign");
    assert_eq!(e[2]["result"], "error");
    assert!(
        e[2]["reason"].as_str().unwrap().contains("nope"),
        "{}",
        e[2]
    );

    // A head noted earlier still verifies after later appends (it is in the chain);
    // one that is not in the chain does not.
    let noted = report["head"].as_str().unwrap().to_string();
    sign_with_no_such_key();
    let out = ok(None, &["audit", "verify", log_s, "--head", &noted]);
    assert!(
        out.contains("entry 3, the 1 after it were appended since"),
        "{out}"
    );
    let (code, msg) = fails(None, &["audit", "verify", log_s, "--head", &"1".repeat(64)]);
    assert_eq!(code, 3, "{msg}");
}

#[test]
fn an_unusable_audit_log_fails_sign_and_leaves_the_metadata_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = format!("file:{}", d.join("k.p8").display());
    generate(None, &key, "ed25519", &[("TUFKEY_PASSPHRASE", "pw")]);
    let md = d.join("timestamp.json");
    write_unsigned(&md, timestamp(1));
    // (A torn last line, as a crashed writer leaves it, no longer stops a command: it
    // was never committed and is cut off; hsm-tests/crash.rs.)
    let cases: Vec<(PathBuf, &str)> = vec![
        (d.join("no-such-folder/audit.jsonl"), "No such file"),
        (d.to_path_buf(), "directory"),
        // Opens fine; the write itself fails (ENOSPC): the signature must not be written.
        (PathBuf::from("/dev/full"), "No space left"),
    ];
    for (log, why) in &cases {
        let before = snapshot(d);
        let mut c = tufkey(None);
        c.args([
            "--audit-log",
            log.to_str().unwrap(),
            "sign",
            md.to_str().unwrap(),
        ])
        .args(["--key", &key])
        .env("TUFKEY_PASSPHRASE", "pw");
        let (code, out, err) = run(c);
        assert_ne!(code, 0, "signed despite audit log {}: {out}", log.display());
        assert!(
            err.contains(&log.display().to_string()) && err.contains(why),
            "the error must name the log {} and say why ({why}): {err}",
            log.display()
        );
        assert!(err.contains("audit"), "{err}");
        assert_eq!(snapshot(d), before, "a file changed for {}", log.display());
    }
    // key generate stops before touching anything too.
    let (_, err) = fails(
        None,
        &[
            "--audit-log",
            "/nonexistent-dir/audit.jsonl",
            "key",
            "generate",
            &format!("file:{}", d.join("k2.p8").display()),
            "--type",
            "ed25519",
        ],
    );
    assert!(err.contains("/nonexistent-dir/audit.jsonl"), "{err}");
    assert!(!d.join("k2.p8").exists());
}

/// One daemon setup: a token with a P-256 key, certificates, a config whose audit
/// log is `audit.jsonl` in the folder.
struct Served {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
    ca: Ca,
    key: (String, String, Value),
    config: PathBuf,
}

fn served() -> Served {
    let hsm = SoftHsm::new();
    let token = hsm.token("online", "4321");
    let key = generate(Some(&hsm), &token.uri("ts"), "ecdsa-p256", &[]);
    let (dir, ca) = daemon_folder("tufkey-audit-");
    let config = dir.path().join("signer.toml");
    std::fs::write(
        &config,
        signer_toml(
            "state = \"state.json\"\naudit = \"audit.jsonl\"",
            "",
            &[&key.0],
            &[client_policy(
                "ci-main",
                &[&key.1],
                &["*"],
                &["timestamp"],
                "7d",
                "",
            )],
        ),
    )
    .unwrap();
    Served {
        hsm,
        dir,
        ca,
        key,
        config,
    }
}

#[test]
fn a_daemon_and_many_cli_processes_append_to_one_file_as_one_chain() {
    let s = served();
    let d = s.dir.path();
    let log = d.join("audit.jsonl");
    let daemon = Daemon::start(d, "daemon", &s.hsm, &s.config);
    let (cert, key) = s.ca.issue(d, "ci-main", "ci-main", false, false);
    let tls = ClientTls {
        ca: d.join("client-ca.pem"),
        identity: Some((cert.clone(), key.clone())),
    };

    // A second daemon on the same log is still refused.
    let mut c = tufkey(Some(&s.hsm));
    c.args(["serve", "--config", s.config.to_str().unwrap()]);
    let (code, _, err) = run(c);
    assert_ne!(code, 0);
    assert!(err.contains("serve.lock"), "{err}");

    // File keys for the CLI processes (software: the test is about the log).
    let file_key = format!("file:{}", d.join("cli.p8").display());
    generate(None, &file_key, "ed25519", &[("TUFKEY_PASSPHRASE", "pw")]);

    const CLI_PROCS: usize = 8;
    const CLI_SIGNS: usize = 4;
    const DAEMON_THREADS: usize = 4;
    const DAEMON_SIGNS: u64 = 8;
    let start = Barrier::new(CLI_PROCS + DAEMON_THREADS);
    std::thread::scope(|scope| {
        for p in 0..CLI_PROCS {
            let (start, log, file_key) = (&start, &log, &file_key);
            scope.spawn(move || {
                let md = d.join(format!("cli-{p}.json"));
                write_unsigned(&md, timestamp(p as u64 + 1));
                start.wait();
                for _ in 0..CLI_SIGNS {
                    let mut c = tufkey(None);
                    c.args(["--audit-log", log.to_str().unwrap()])
                        .args(["--audit-actor", &format!("proc-{p}")])
                        .args(["sign", md.to_str().unwrap(), "--key", file_key])
                        .env("TUFKEY_PASSPHRASE", "pw");
                    let (code, out, err) = run(c);
                    assert_eq!(code, 0, "CLI sign {p}: {out}{err}");
                }
            });
        }
        for t in 0..DAEMON_THREADS {
            let (start, daemon, tls, key_id) = (&start, &daemon, &tls, &s.key.1);
            scope.spawn(move || {
                let c = daemon.client(tls);
                start.wait();
                for v in 1..=DAEMON_SIGNS {
                    let req = json!({
                        "repository": format!("repo-{t}"),
                        "key_id": key_id,
                        "metadata": {"signed": timestamp(v), "signatures": []},
                    });
                    let r = c.post_json("/v1/sign", &req).unwrap();
                    c.expect_ok(r).unwrap();
                }
            });
        }
    });

    // One signature through the daemon by the CLI, both auditing into the same file:
    // the daemon's entry commits while the CLI waits for its answer, then the CLI's.
    let remote = d.join("remote.json");
    write_unsigned(&remote, timestamp(100));
    let mut c = tufkey(None);
    c.args([
        "--audit-log",
        log.to_str().unwrap(),
        "sign",
        remote.to_str().unwrap(),
    ])
    .args(["--key", &format!("{}/keys/{}", daemon.base(), s.key.1)])
    .env("TUFKEY_REMOTE_CA", d.join("client-ca.pem"))
    .env("TUFKEY_REMOTE_CERT", &cert)
    .env("TUFKEY_REMOTE_KEY", &key)
    .env("TUFKEY_REMOTE_REPOSITORY", "remote-repo");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");

    daemon.stop();
    let report = verified(log.to_str().unwrap());
    let e = entries(&log);
    assert_eq!(report["entries"], e.len());
    let cli: Vec<&Value> = e.iter().filter(|x| x["source"] == "cli").collect();
    let served: Vec<&Value> = e
        .iter()
        .filter(|x| x.get("source").is_none() && x["result"] == "signed")
        .collect();
    assert_eq!(cli.len(), CLI_PROCS * CLI_SIGNS + 1, "a CLI entry was lost");
    assert_eq!(
        served.len(),
        DAEMON_THREADS * DAEMON_SIGNS as usize + 1,
        "a daemon entry was lost"
    );
    for p in 0..CLI_PROCS {
        let mine = cli
            .iter()
            .filter(|x| x["who"] == format!("proc-{p}"))
            .count();
        assert_eq!(mine, CLI_SIGNS, "entries of CLI process {p}");
    }
    // The remote signature: the daemon's entry, then the CLI's, same payload.
    let daemon_remote = served
        .iter()
        .find(|x| x["repository"] == "remote-repo")
        .unwrap();
    let cli_remote = cli.iter().find(|x| x["version"] == 100).unwrap();
    assert_eq!(
        daemon_remote["payload_sha256"],
        cli_remote["payload_sha256"]
    );
    assert!(daemon_remote["seq"].as_u64() < cli_remote["seq"].as_u64());
    // The daemon starts again on the log the CLI wrote to, verifying it whole.
    let daemon = Daemon::start(d, "daemon2", &s.hsm, &s.config);
    daemon.stop();
    verified(log.to_str().unwrap());
}

#[test]
fn a_postgres_audit_log_takes_the_cli_entries_into_the_replicas_chain() {
    let Some(pg) = pg::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = format!("file:{}", d.join("k.p8").display());
    let url = pg.url();
    // Generated with the database as the audit log (tables created on first use).
    let mut c = tufkey(None);
    c.args([
        "--audit-log",
        &url,
        "key",
        "generate",
        &key,
        "--type",
        "ed25519",
        "--json",
    ])
    .env("TUFKEY_PASSPHRASE", "pw");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    let keyid = serde_json::from_str::<Value>(&out).unwrap()["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    let md = d.join("timestamp.json");
    write_unsigned(&md, timestamp(3));
    for _ in 0..3 {
        let mut c = tufkey(None);
        c.args(["sign", md.to_str().unwrap(), "--key", &key])
            .env("TUFKEY_AUDIT_LOG", &url)
            .env("TUFKEY_PASSPHRASE", "pw");
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{out}{err}");
    }
    let report = verified(&url);
    assert_eq!(report["entries"], 4, "{report}");
    let export = d.join("export.jsonl");
    ok(
        None,
        &["audit", "export", &url, "-o", export.to_str().unwrap()],
    );
    let e = entries(&export);
    assert_eq!(e[0]["action"], "key generate");
    assert_eq!(e[0]["key_id"], keyid.as_str());
    for x in &e[1..] {
        assert_eq!(x["action"], "sign");
        assert_eq!(x["result"], "signed");
        assert_eq!(x["key_id"], keyid.as_str());
        assert_eq!(x["version"], 3);
        assert_eq!(x["source"], "cli");
    }
    // The exported lines are the file form: they verify as a file too.
    verified(export.to_str().unwrap());

    // An unreachable database fails the command before it signs.
    let before = std::fs::read(&md).unwrap();
    let dead = format!(
        "postgres://tufkey:secret@127.0.0.1:{}/signer",
        pg::free_port()
    );
    let mut c = tufkey(None);
    c.args([
        "--audit-log",
        &dead,
        "sign",
        md.to_str().unwrap(),
        "--key",
        &key,
    ])
    .env("TUFKEY_PASSPHRASE", "pw");
    let (code, out, err) = run(c);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("127.0.0.1") && err.contains("audit"), "{err}");
    assert!(!err.contains("secret"), "a password was shown: {err}");
    assert_eq!(std::fs::read(&md).unwrap(), before);
}

#[test]
fn ceremony_and_delegation_changes_are_audited_and_the_actor_names_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("audit.jsonl");
    let key = format!("file:{}", d.join("k.p8").display());
    generate(None, &key, "ed25519", &[("TUFKEY_PASSPHRASE", "pw")]);
    let cer = d.join("ceremony");
    let (cer_s, out_s) = (cer.to_str().unwrap(), d.join("out"));
    let run_audited = |args: &[&str]| {
        let mut c = tufkey(None);
        c.args(["--audit-log", log.to_str().unwrap(), "--audit-actor", "bob"])
            .args(args)
            .env("TUFKEY_PASSPHRASE", "pw");
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    };
    run_audited(&["ceremony", "init", cer_s]);
    for role in ["root", "targets", "snapshot", "timestamp"] {
        run_audited(&["ceremony", "add-key", cer_s, "--role", role, "--key", &key]);
    }
    run_audited(&["ceremony", "review", cer_s]);
    run_audited(&["ceremony", "sign", cer_s, "--key", &key, "--yes"]);
    run_audited(&[
        "ceremony",
        "finalize",
        cer_s,
        "--out",
        out_s.to_str().unwrap(),
    ]);
    let targets = d.join("targets.json");
    write_unsigned(
        &targets,
        json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
               "expires": expires_in(86400), "targets": {}}),
    );
    run_audited(&[
        "delegation",
        "add",
        targets.to_str().unwrap(),
        "--role",
        "team",
        "--delegate-key",
        &key,
        "--path",
        "team/*",
        "--key",
        &key,
    ]);

    verified(log.to_str().unwrap());
    let e = entries(&log);
    let actions: Vec<&str> = e.iter().map(|x| x["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "ceremony init",
            "ceremony add-key",
            "ceremony add-key",
            "ceremony add-key",
            "ceremony add-key",
            "ceremony sign",
            "ceremony finalize",
            "delegation add",
        ]
    );
    assert!(e.iter().all(|x| x["who"] == "bob"));
    let signed = &e[5];
    assert_eq!(signed["result"], "signed");
    assert_eq!(signed["role"], "root");
    assert_eq!(signed["version"], 1);
    assert_eq!(e[6]["result"], "ok");
    assert!(
        e[6]["detail"].as_str().unwrap().contains("1.root.json"),
        "{}",
        e[6]
    );
    assert_eq!(e[7]["result"], "signed");
    assert_eq!(e[7]["version"], 2);
    assert!(
        e[7]["detail"].as_str().unwrap().contains("`team`"),
        "{}",
        e[7]
    );
    // The ceremony transcript names the same actor.
    let transcript = std::fs::read_to_string(cer.join("transcript.jsonl")).unwrap();
    assert!(transcript.contains("\"bob\""), "{transcript}");
}
