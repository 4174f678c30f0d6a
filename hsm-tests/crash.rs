//! Crash safety: tufkey is SIGKILLed at named points of its writes (the test hook
//! `TUFKEY_TEST_STALL_AT`, src/testhook.rs, stops it there for certain) and after a sweep
//! of delays, with keys on SoftHSM through the real module. After every kill: each file
//! is as before or as after (and then verifies), the audit chain verifies once the next
//! command ran, every signature in a file has its audit entry, and the next command
//! works without manual repair. docs/testing.md, "Crash safety", lists the points.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The points of one atomic file write and of one audit append (src/fsutil.rs,
/// src/audit/file.rs).
const WRITE_POINTS: [&str; 3] = ["write-temp", "write-synced", "write-renamed"];
const AUDIT_POINTS: [&str; 3] = ["audit-append", "audit-half-written", "audit-appended"];
/// Kill delays after start, on top of the named points: they land in key loading,
/// login and signing too.
const DELAYS_MS: [u64; 6] = [0, 15, 40, 80, 150, 300];

/// How a killed run ended.
#[derive(Debug, PartialEq)]
enum Killed {
    /// Stopped at the point and SIGKILLed there.
    AtPoint,
    /// Finished before the point was reached (the command never passes it).
    Finished,
}

/// Runs `c` with `point` armed; SIGKILLs it as soon as it says it stalled there.
fn kill_at(mut c: Command, point: &str) -> Killed {
    c.env("TUFKEY_TEST_STALL_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start tufkey");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with(tufkey::testhook::STALLED) {
                let _ = tx.send(());
            }
        }
    });
    let stalled = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    // A child that finished cannot be killed; `kill` then only reports that.
    let _ = child.kill();
    let status = child.wait().unwrap();
    if stalled {
        assert!(status.code().is_none(), "killed by a signal: {status}");
        Killed::AtPoint
    } else {
        Killed::Finished
    }
}

/// Runs `c` and SIGKILLs it after `ms` milliseconds (if it is still running).
fn kill_after(mut c: Command, ms: u64) {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().expect("start tufkey");
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    child.wait().unwrap();
}

/// [`kill_after`] for a command that logs in to SoftHSM. SoftHSM rewrites its own
/// `token.object` in place at every C_Login (it stores the PIN-count flags there), so a
/// kill that lands inside that write truncates SoftHSM's store and the token is gone
/// ("tokens present: none") — SoftHSM's crash safety, not tufkey's: tufkey never writes
/// to a token when it signs, and a real HSM keeps its state itself. The token folder is
/// put back as it was, so what is checked afterwards is what tufkey wrote.
fn kill_after_keeping_the_token(hsm: &SoftHsm, c: Command, ms: u64) {
    let tokens = hsm.dir.path().join("tokens");
    let saved = hsm.dir.path().join("tokens.saved");
    let _ = std::fs::remove_dir_all(&saved);
    let cp = |from: &Path, to: &Path| {
        let st = Command::new("cp")
            .args(["-a", p(from), p(to)])
            .status()
            .expect("run cp");
        assert!(st.success(), "cp -a {} {}", from.display(), to.display());
    };
    cp(&tokens, &saved);
    kill_after(c, ms);
    std::fs::remove_dir_all(&tokens).unwrap();
    cp(&saved, &tokens);
}

/// Every entry of an audit log that the chain check accepts; fails the test otherwise.
fn audited(log: &Path) -> Vec<Value> {
    ok(None, &["audit", "verify", p(log)]);
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether the audit log holds a `signed` entry for this payload by this key.
fn has_signed_entry(entries: &[Value], payload_sha256: &str, keyid: &str) -> bool {
    entries.iter().any(|e| {
        e["result"] == "signed" && e["payload_sha256"] == payload_sha256 && e["key_id"] == keyid
    })
}

/// The SHA-256 of a document's canonical `signed` part, as the audit entries name it.
fn payload_of(path: &Path) -> String {
    let v = read_json(path);
    let bytes = tufkey::tuf::cjson::to_canonical(&v["signed"]).unwrap();
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Key ids with a non-empty signature in a document.
fn signers(path: &Path) -> Vec<String> {
    read_json(path)["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sig"].as_str().is_some_and(|s| !s.is_empty()))
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect()
}

/// Files below `dir` other than tufkey's own leftovers of a killed write
/// (`.tufkey-*.tmp`, which never replace anything) and a torn audit line's `.torn`.
fn lasting_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = snapshot(dir)
        .keys()
        .map(|k| k.strip_prefix(dir).unwrap().display().to_string())
        .filter(|n| {
            let base = n.rsplit('/').next().unwrap();
            let leftover_temp = base.starts_with(".tufkey-") && base.ends_with(".tmp");
            !(leftover_temp || base.ends_with(".torn"))
        })
        .collect();
    names.sort();
    names
}

/// A SoftHSM token with one P-256 key, and a v1 root listing it for every role.
struct Setup {
    hsm: SoftHsm,
    uri: String,
    keyid: String,
    root: Value,
}

fn setup() -> Setup {
    let hsm = SoftHsm::new();
    let token = hsm.token("crash", "1234");
    let k = generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let root = root_body(std::slice::from_ref(&k), 1);
    Setup {
        uri: k.0.clone(),
        keyid: k.1.clone(),
        root,
        hsm,
    }
}

impl Setup {
    fn tufkey(&self, log: &Path, args: &[&str]) -> Command {
        let mut c = tufkey(Some(&self.hsm));
        c.args(["--audit-log", p(log)]).args(args);
        c
    }
}

#[test]
fn an_audited_sign_killed_at_every_point_leaves_the_old_or_the_signed_file_and_the_next_sign_works()
{
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let md = d.join("root.json");
    let log = d.join("audit.jsonl");
    let sign = ["sign", p(&md), "--key", &s.uri];
    let mut stalled = 0;
    let runs: Vec<(String, Option<u64>)> = WRITE_POINTS
        .iter()
        .chain(AUDIT_POINTS.iter())
        .map(|pt| (pt.to_string(), None))
        .chain(
            DELAYS_MS
                .iter()
                .map(|ms| (format!("after {ms} ms"), Some(*ms))),
        )
        .collect();
    for (what, delay) in runs {
        write_unsigned(&md, s.root.clone());
        let before = std::fs::read(&md).unwrap();
        let c = s.tufkey(&log, &sign);
        match delay {
            None => {
                assert_eq!(kill_at(c, &what), Killed::AtPoint, "{what}");
                stalled += 1;
            }
            Some(ms) => kill_after_keeping_the_token(&s.hsm, c, ms),
        }
        // As before, or signed, verified and audited.
        let now = std::fs::read(&md).unwrap();
        if now != before {
            let (code, report) = verify_json(Some(&s.hsm), &[p(&md)]);
            assert_eq!(code, 0, "killed {what}: the new file must verify: {report}");
        }
        if !signers(&md).is_empty() {
            let entries = audited(&log);
            assert!(
                has_signed_entry(&entries, &payload_of(&md), &s.keyid),
                "killed {what}: a signature was written without its audit entry"
            );
        }
        if what == "write-temp" || what == "write-synced" {
            assert_eq!(now, before, "killed {what}: the rename had not happened");
        }
        // The next command needs no repair: no leftover lock, temp file or torn line stops it.
        ok(
            Some(&s.hsm),
            &["--audit-log", p(&log), "sign", p(&md), "--key", &s.uri],
        );
        let (code, report) = verify_json(Some(&s.hsm), &[p(&md)]);
        assert_eq!(code, 0, "after {what}: {report}");
        let entries = audited(&log);
        assert!(has_signed_entry(&entries, &payload_of(&md), &s.keyid));
        assert_eq!(
            lasting_files(d),
            ["audit.jsonl", "root.json"],
            "after {what}: an unexpected file stayed"
        );
    }
    assert_eq!(stalled, WRITE_POINTS.len() + AUDIT_POINTS.len());
    // A torn entry was cut off and kept aside, never chained onto.
    assert!(tufkey::audit::torn_path(&log).exists());
}

/// A ceremony for a v1 root with the token's key in every role, reviewed and ready to sign.
fn ceremony(s: &Setup, d: &Path, log: &Path) -> std::path::PathBuf {
    let cer = d.join("ceremony");
    let run_ok = |args: &[&str]| {
        let (code, out, err) = run(s.tufkey(log, args));
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    };
    run_ok(&["ceremony", "init", p(&cer)]);
    for role in ["root", "targets", "snapshot", "timestamp"] {
        run_ok(&[
            "ceremony",
            "add-key",
            p(&cer),
            "--role",
            role,
            "--key",
            &s.uri,
        ]);
    }
    run_ok(&["ceremony", "review", p(&cer)]);
    cer
}

/// `ceremony status --json`, which must work after any kill.
fn ceremony_status(s: &Setup, cer: &Path) -> Value {
    let mut c = tufkey(Some(&s.hsm));
    c.args(["ceremony", "status", p(cer), "--json"]);
    let (_, out, err) = run(c);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("ceremony status: {out}{err}"))
}

#[test]
fn a_ceremony_sign_and_finalize_killed_at_every_point_resume_with_the_next_command() {
    let s = setup();
    let points: Vec<&str> = [
        "transcript-append",
        "transcript-half-written",
        "transcript-appended",
        "ceremony-publish",
    ]
    .into_iter()
    .chain(WRITE_POINTS)
    .chain(AUDIT_POINTS)
    .collect();
    for point in &points {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("audit.jsonl");
        let cer = ceremony(&s, d, &log);
        let out = d.join("out");
        let sign = ["ceremony", "sign", p(&cer), "--key", &s.uri, "--yes"];
        let finalize = ["ceremony", "finalize", p(&cer), "--out", p(&out)];

        let k = kill_at(s.tufkey(&log, &sign), point);
        eprintln!("ceremony sign {point}: {k:?}");
        // Status works and the next signature goes through.
        let st = ceremony_status(&s, &cer);
        assert!(st.is_object(), "{st}");
        let (code, o, e) = run(s.tufkey(&log, &sign));
        assert_eq!(code, 0, "ceremony sign after a kill at {point}: {o}{e}");
        ok(Some(&s.hsm), &["ceremony", "verify", p(&cer)]);

        let k = kill_at(s.tufkey(&log, &finalize), point);
        eprintln!("ceremony finalize {point}: {k:?}");
        let (code, o, e) = run(s.tufkey(&log, &finalize));
        assert_eq!(code, 0, "ceremony finalize after a kill at {point}: {o}{e}");
        let root = out.join("1.root.json");
        let (code, report) = verify_json(Some(&s.hsm), &[p(&root)]);
        assert_eq!(code, 0, "after {point}: {report}");
        let entries = audited(&log);
        assert!(
            has_signed_entry(&entries, &payload_of(&root), &s.keyid),
            "after {point}: the root's signature has no audit entry"
        );
        ok(Some(&s.hsm), &["ceremony", "verify", p(&cer)]);
    }
}

#[test]
fn a_delegation_rotate_killed_at_every_point_leaves_a_valid_file_and_can_be_rerun() {
    let s = setup();
    let token = s.hsm.token("crash2", "1234");
    let (new_uri, new_id, _) = generate(Some(&s.hsm), &token.uri("n"), "ecdsa-p256", &[]);
    for point in WRITE_POINTS.iter().chain(AUDIT_POINTS.iter()) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("audit.jsonl");
        let targets = d.join("targets.json");
        write_unsigned(
            &targets,
            json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
                   "expires": next_year(), "targets": {}}),
        );
        let (code, o, e) = run(s.tufkey(
            &log,
            &[
                "delegation",
                "add",
                p(&targets),
                "--role",
                "team",
                "--delegate-key",
                &s.uri,
                "--path",
                "team/*",
                "--key",
                &s.uri,
            ],
        ));
        assert_eq!(code, 0, "{o}{e}");
        let before = std::fs::read(&targets).unwrap();
        let rotate = [
            "delegation",
            "rotate",
            p(&targets),
            "--role",
            "team",
            "--remove",
            &s.keyid,
            "--add",
            &new_uri,
            "--key",
            &s.uri,
        ];
        let k = kill_at(s.tufkey(&log, &rotate), point);
        eprintln!("rotate {point}: {k:?}");
        let now = std::fs::read(&targets).unwrap();
        let done = now != before;
        if done {
            let v = read_json(&targets);
            assert_eq!(v["signed"]["version"], 3, "{point}: {v}");
            assert!(
                has_signed_entry(&audited(&log), &payload_of(&targets), &s.keyid),
                "{point}: a rotated file without its audit entry"
            );
        } else {
            // Not rotated yet: the rotation is simply run again.
            let (code, o, e) = run(s.tufkey(&log, &rotate));
            assert_eq!(code, 0, "rotate after a kill at {point}: {o}{e}");
        }
        let v = read_json(&targets);
        let keyids = &v["signed"]["delegations"]["roles"][0]["keyids"];
        assert_eq!(keyids, &json!([new_id]), "{point}: {v}");
        assert!(has_signed_entry(
            &audited(&log),
            &payload_of(&targets),
            &s.keyid
        ));
        assert_eq!(signers(&targets), std::slice::from_ref(&s.keyid));
    }
}

#[test]
fn a_ceremony_edit_killed_between_its_transcript_entry_and_root_json_is_finished_or_undone() {
    let s = setup();
    let other = s.hsm.token("crash3", "1234");
    let (other_uri, other_id, _) = generate(Some(&s.hsm), &other.uri("o"), "ecdsa-p256", &[]);
    // The add-key is one transcript entry (it also lists the signature it dropped: the
    // root was signed); ceremony-publish is after it, just before root.json is replaced.
    let points = [
        "transcript-append",
        "transcript-half-written",
        "transcript-appended",
        "ceremony-publish",
        "write-temp",
        "write-synced",
        "write-renamed",
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("audit.jsonl");
        let cer = ceremony(&s, d, &log);
        let (code, o, e) = run(s.tufkey(
            &log,
            &["ceremony", "sign", p(&cer), "--key", &s.uri, "--yes"],
        ));
        assert_eq!(code, 0, "{o}{e}");
        let add = [
            "ceremony",
            "add-key",
            p(&cer),
            "--role",
            "targets",
            "--key",
            &other_uri,
        ];
        assert_eq!(
            kill_at(s.tufkey(&log, &add), point),
            Killed::AtPoint,
            "{point}"
        );

        // The next reader finishes or undoes the change: no "changed outside tufkey".
        let st = ceremony_status(&s, &cer);
        let problems = st["problems"].to_string();
        assert!(
            !problems.contains("outside tufkey"),
            "after {point}: {problems}"
        );
        assert!(!cer.join("root.json.next").exists(), "{point}");
        let root = read_json(&cer.join("root.json"));
        let added = root["signed"]["roles"]["targets"]["keyids"]
            .as_array()
            .unwrap()
            .contains(&json!(other_id));
        if added {
            // A change that was adopted has its own entry, naming what it dropped.
            let text = std::fs::read_to_string(cer.join("transcript.jsonl")).unwrap();
            let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert_eq!(last["action"], "add-key", "after {point}: {last}");
            assert_eq!(last["details"]["keyid"], json!(other_id), "{point}");
            assert_eq!(
                last["details"]["signatures_dropped"],
                json!([s.keyid]),
                "{point}"
            );
        } else {
            let (code, o, e) = run(s.tufkey(&log, &add));
            assert_eq!(code, 0, "add-key again after {point}: {o}{e}");
        }
        // Re-sign and finish: the ceremony ends as if nothing had happened.
        let (code, o, e) = run(s.tufkey(
            &log,
            &["ceremony", "sign", p(&cer), "--key", &s.uri, "--yes"],
        ));
        assert_eq!(code, 0, "sign after {point}: {o}{e}");
        ok(Some(&s.hsm), &["ceremony", "verify", p(&cer)]);
        let out = d.join("out");
        let (code, o, e) =
            run(s.tufkey(&log, &["ceremony", "finalize", p(&cer), "--out", p(&out)]));
        assert_eq!(code, 0, "finalize after {point}: {o}{e}");
        let v = read_json(&out.join("1.root.json"));
        assert!(
            v["signed"]["roles"]["targets"]["keyids"]
                .as_array()
                .unwrap()
                .contains(&json!(other_id)),
            "{point}: {v}"
        );
        audited(&log);
    }
}

#[test]
fn a_ceremony_init_killed_at_every_point_can_be_started_or_opened_again() {
    let s = setup();
    for point in [
        "transcript-append",
        "transcript-appended",
        "ceremony-publish",
        "write-synced",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cer = dir.path().join("ceremony");
        let log = dir.path().join("audit.jsonl");
        assert_eq!(
            kill_at(s.tufkey(&log, &["ceremony", "init", p(&cer)]), point),
            Killed::AtPoint,
            "{point}"
        );
        // Either the ceremony exists now (the entry was written) or init runs again.
        let mut c = tufkey(Some(&s.hsm));
        c.args(["ceremony", "status", p(&cer), "--json"]);
        let (code, _, _) = run(c);
        if code != 0 {
            let (code, o, e) = run(s.tufkey(&log, &["ceremony", "init", p(&cer)]));
            assert_eq!(code, 0, "init again after {point}: {o}{e}");
        }
        let (code, o, e) = run(s.tufkey(
            &log,
            &[
                "ceremony",
                "add-key",
                p(&cer),
                "--role",
                "root",
                "--key",
                &s.uri,
            ],
        ));
        assert_eq!(code, 0, "add-key after {point}: {o}{e}");
        ok(Some(&s.hsm), &["ceremony", "verify", p(&cer)]);
    }
}

/// A signature a client got back from the daemon.
struct Returned {
    repository: String,
    version: u64,
    payload_sha256: String,
}

/// Clients that sign timestamps through the daemon until it goes away; what each got.
fn load(
    daemon: &harness::daemon::Daemon,
    tls: &tufkey::keys::remote::ClientTls,
    key_id: &str,
    next_version: &mut [u64],
) -> Vec<Returned> {
    let got = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (t, next) in next_version.iter_mut().enumerate() {
            let got = &got;
            scope.spawn(move || {
                let c = daemon.client(tls);
                loop {
                    let signed = json!({
                        "_type": "timestamp", "spec_version": "1.0.31", "version": *next,
                        "expires": harness::daemon::expires_in(86400),
                        "meta": {"snapshot.json": {"version": *next}},
                    });
                    let req = json!({
                        "repository": format!("repo-{t}"),
                        "key_id": key_id,
                        "metadata": {"signed": signed, "signatures": []},
                    });
                    // Every request claims a new version, answered or not.
                    *next += 1;
                    let answer = c.post_json("/v1/sign", &req).and_then(|r| c.expect_ok(r));
                    match answer {
                        Ok(v) => got.lock().unwrap().push(Returned {
                            repository: v["repository"].as_str().unwrap().into(),
                            version: v["version"].as_u64().unwrap(),
                            payload_sha256: v["payload_sha256"].as_str().unwrap().into(),
                        }),
                        Err(_) => return,
                    }
                }
            });
        }
    });
    got.into_inner().unwrap()
}

#[test]
fn a_daemon_killed_under_load_returned_no_signature_without_its_audit_entry_and_restarts() {
    use harness::daemon::{client_policy, daemon_folder, signer_toml, Daemon};
    let hsm = SoftHsm::new();
    let token = hsm.token("online", "4321");
    let key = generate(Some(&hsm), &token.uri("ts"), "ecdsa-p256", &[]);
    let (dir, ca) = daemon_folder("tufkey-crash-");
    let d = dir.path();
    let config = d.join("signer.toml");
    let policy = client_policy("ci", &[&key.1], &["*"], &["timestamp"], "7d", "");
    let store = "state = \"state.json\"\naudit = \"audit.jsonl\"";
    std::fs::write(&config, signer_toml(store, "", &[&key.0], &[policy])).unwrap();
    let (cert, cert_key) = ca.issue(d, "ci", "ci", false, false);
    let tls = tufkey::keys::remote::ClientTls {
        ca: d.join("client-ca.pem"),
        identity: Some((cert, cert_key)),
    };
    let log = d.join("audit.jsonl");
    // The 5th visit: some signatures were answered before the kill.
    let rounds: Vec<(String, Option<u64>)> = [
        "audit-append#5",
        "audit-half-written#5",
        "audit-appended#5",
        "serve-answer#5",
        "write-temp#3",
        "write-renamed#3",
    ]
    .iter()
    .map(|p| (p.to_string(), None))
    .chain([50u64, 200, 500].map(|ms| (format!("after {ms} ms"), Some(ms))))
    .collect();
    let mut next_version = [1u64; 4];
    let mut returned = Vec::new();
    for (what, delay) in &rounds {
        let env: Vec<(&str, &str)> = match delay {
            None => vec![("TUFKEY_TEST_STALL_AT", what.as_str())],
            Some(_) => vec![],
        };
        let mut daemon = Daemon::start_with_env(d, "daemon", &hsm, &config, &env);
        let log_file = daemon.log.clone();
        let killer = std::thread::spawn({
            let delay = *delay;
            let pid = daemon.child.id();
            move || {
                // Killed in every case, so that the clients never wait forever.
                let stalled = match delay {
                    Some(ms) => {
                        std::thread::sleep(Duration::from_millis(ms));
                        true
                    }
                    None => {
                        let until = std::time::Instant::now() + Duration::from_secs(30);
                        loop {
                            let text = std::fs::read_to_string(&log_file).unwrap_or_default();
                            if text.contains(tufkey::testhook::STALLED) {
                                break true;
                            }
                            if std::time::Instant::now() > until {
                                break false;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                };
                let st = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                assert!(st.unwrap().success());
                assert!(stalled, "the daemon never stalled");
            }
        });
        let got = load(&daemon, &tls, &key.1, &mut next_version);
        killer.join().unwrap();
        let _ = daemon.child.wait();
        assert!(
            delay.is_some() || !got.is_empty(),
            "{what}: nothing was answered first"
        );
        returned.extend(got);

        // The next start needs no repair (the one-daemon lock, state file, a torn line).
        let daemon = Daemon::start(d, "daemon", &hsm, &config);
        let after = load_one(&daemon, &tls, &key.1, &mut next_version);
        returned.extend(after);
        daemon.stop();

        // Every answered signature has its entry; no version was signed twice.
        let entries = audited(&log);
        for r in &returned {
            assert!(
                entries.iter().any(|e| e["result"] == "signed"
                    && e["repository"] == r.repository.as_str()
                    && e["version"] == r.version
                    && e["payload_sha256"] == r.payload_sha256.as_str()),
                "{what}: {} v{} was returned without its audit entry",
                r.repository,
                r.version
            );
        }
        let mut signed: Vec<(String, u64)> = entries
            .iter()
            .filter(|e| e["result"] == "signed")
            .map(|e| {
                (
                    e["repository"].as_str().unwrap().into(),
                    e["version"].as_u64().unwrap(),
                )
            })
            .collect();
        let n = signed.len();
        signed.sort();
        signed.dedup();
        assert_eq!(signed.len(), n, "{what}: a version was signed twice");
        serde_json::from_slice::<Value>(&std::fs::read(d.join("state.json")).unwrap())
            .unwrap_or_else(|e| panic!("{what}: state.json: {e}"));
    }
    assert!(returned.len() > rounds.len(), "{} answered", returned.len());
}

/// One signature per client after a restart: the daemon serves again.
fn load_one(
    daemon: &harness::daemon::Daemon,
    tls: &tufkey::keys::remote::ClientTls,
    key_id: &str,
    next_version: &mut [u64],
) -> Vec<Returned> {
    let c = daemon.client(tls);
    let mut got = Vec::new();
    for (t, next) in next_version.iter_mut().enumerate() {
        let signed = json!({
            "_type": "timestamp", "spec_version": "1.0.31", "version": *next,
            "expires": harness::daemon::expires_in(86400),
            "meta": {"snapshot.json": {"version": *next}},
        });
        *next += 1;
        let req = json!({"repository": format!("repo-{t}"), "key_id": key_id,
                         "metadata": {"signed": signed, "signatures": []}});
        let v = c
            .post_json("/v1/sign", &req)
            .and_then(|r| c.expect_ok(r))
            .unwrap_or_else(|e| panic!("signing after a restart: {e}"));
        got.push(Returned {
            repository: v["repository"].as_str().unwrap().into(),
            version: v["version"].as_u64().unwrap(),
            payload_sha256: v["payload_sha256"].as_str().unwrap().into(),
        });
    }
    got
}

/// Set in the re-executed test: the folder where a small tmpfs is mounted, in a private
/// mount namespace (`unshare -m`) that ends with the test.
const FULL_DISK_ENV: &str = "TUFKEY_CRASH_FULL_DISK_AT";
const FULL_DISK_TEST: &str =
    "on_a_full_disk_every_write_fails_naming_its_path_and_leaves_files_as_they_were";

#[test]
fn on_a_full_disk_every_write_fails_naming_its_path_and_leaves_files_as_they_were() {
    if let Some(at) = std::env::var_os(FULL_DISK_ENV) {
        return full_disk_inside(Path::new(&at));
    }
    // Root and a mount namespace are needed (CI runs as root); elsewhere it says why.
    let can = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        assert!(
            std::env::var_os("CI").is_none(),
            "the full-disk test needs root and `unshare -m` (util-linux) under CI"
        );
        eprintln!("skipping: the full-disk test needs root and `unshare -m`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(dir.path())
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", FULL_DISK_TEST, "--nocapture", "--test-threads=1"])
        .env(FULL_DISK_ENV, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("full-disk cases checked: 5"),
        "the inner test did not run: {text}"
    );
}

/// Inside the namespace: everything is set up on the tmpfs, the tmpfs is filled, then
/// each writing command must fail naming its file and change nothing.
fn full_disk_inside(at: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(&at.display().to_string())),
        "no tmpfs at {}",
        at.display()
    );
    let k = harness::repo::Keys::new(1);
    let root = k.ceremony_root(1);
    // A repository, a root to sign, an audit log and a ceremony, all on the tmpfs.
    let repo = at.join("repo");
    k.ok(&["repo", "init", p(&repo), "--root", p(&root)]);
    let hello = at.join("hello.txt");
    std::fs::write(&hello, "hello\n").unwrap();
    k.ok(&["repo", "add", p(&repo), p(&hello)]);
    let md = at.join("root.json");
    write_unsigned(
        &md,
        root_body(&[(k.root[0].keyid.as_str(), &k.root[0].key)], 1),
    );
    let log = at.join("audit.jsonl");
    let cer = at.join("ceremony");
    let uri = k.root[0].uri.as_str();
    k.ok(&["--audit-log", p(&log), "sign", p(&md), "--key", uri]);
    k.ok(&["--audit-log", p(&log), "ceremony", "init", p(&cer)]);
    k.ok(&[
        "ceremony",
        "add-key",
        p(&cer),
        "--role",
        "root",
        "--key",
        uri,
    ]);

    // tmpfs hands out whole pages: an append into the log's last, partly used page
    // would still fit. Entries with a chosen actor length make the log end on a page.
    pad_to_page(&k, &log, &md, uri);

    // Fill it: every later byte written fails with ENOSPC.
    let mut filler = std::fs::File::create(at.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);

    let commit_keys = k.commit_keys();
    let mut commit: Vec<&str> = vec!["repo", "commit", p(&repo)];
    commit.extend(commit_keys.iter().map(String::as_str));
    let cases: Vec<(Vec<&str>, String)> = vec![
        // The signed file itself (no audit log).
        (vec!["sign", p(&md), "--key", uri], p(&md).to_string()),
        // The audit entry, written before the signed file.
        (
            vec!["--audit-log", p(&log), "sign", p(&md), "--key", uri],
            p(&log).to_string(),
        ),
        // A ceremony: its root.json (staged) or its transcript.
        (
            vec![
                "ceremony",
                "add-key",
                p(&cer),
                "--role",
                "targets",
                "--key",
                uri,
            ],
            p(&cer).to_string(),
        ),
        (
            vec!["ceremony", "sign", p(&cer), "--key", uri, "--yes"],
            p(&cer).to_string(),
        ),
        // A repository commit (targets, snapshot, timestamp).
        (commit, p(&repo).to_string()),
    ];
    for (args, names) in &cases {
        let before = snapshot(at);
        let (code, msg) = k.fails(args);
        assert_eq!(code, 1, "{args:?}: {msg}");
        assert!(
            msg.contains(names.as_str()) && msg.contains("No space left"),
            "{args:?}: the error must name {names} and say the disk is full: {msg}"
        );
        assert!(!msg.contains("panicked"), "{msg}");
        assert_eq!(
            snapshot(at),
            before,
            "{args:?}: a file changed or was left behind"
        );
    }
    eprintln!("full-disk cases checked: {}", cases.len());
    // Space again: the same commands work without any repair.
    std::fs::remove_file(at.join("filler")).unwrap();
    for (args, _) in &cases {
        k.ok(args);
    }
    audited(&log);
}

/// Appends audit entries (signing `md` again) until the log's length is a multiple of
/// 4096, choosing the last entry's `--audit-actor` length to land on the boundary.
fn pad_to_page(k: &harness::repo::Keys, log: &Path, md: &Path, uri: &str) {
    let len = |log: &Path| std::fs::metadata(log).unwrap().len();
    let sign_as = |actor: &str| {
        k.ok(&[
            "--audit-log",
            p(log),
            "--audit-actor",
            actor,
            "sign",
            p(md),
            "--key",
            uri,
        ]);
    };
    for _ in 0..20 {
        if len(log) % 4096 == 0 {
            return;
        }
        let before = len(log);
        sign_as("a");
        // An entry is `base` bytes plus its actor's length.
        let base = len(log) - before - 1;
        let room = 4096 - len(log) % 4096;
        if room > base && room < 4096 {
            sign_as(&"a".repeat((room - base) as usize));
        }
    }
    panic!("could not pad {} to a page", log.display());
}
