//! `tufkey repo verify` on repositories that tufkey did not write: python-tuf builds
//! them (hsm-tests/repo_verify_repos.py, keys from securesystemslib), python-tuf's own
//! client (`ngclient.Updater`, over HTTP on loopback) gives its verdict, and tufkey must
//! reach the same one — on a good repository, on broken copies of it, and on the
//! real-world repositories in ../shared/interop/realworld. The one intended difference:
//! a threshold counts distinct public keys, where python-tuf counts key ids.

#[path = "harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::{python, repo, run, snapshot, tufkey};
use serde_json::Value;

fn script() -> PathBuf {
    repo().join("hsm-tests/repo_verify_repos.py")
}

/// Runs the Python side with `args` and returns its JSON output.
fn py(args: &[&str]) -> Value {
    let out = std::process::Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the python script")
}

/// The good repository and every broken copy, written by python-tuf.
struct Built {
    dir: tempfile::TempDir,
    targets: Vec<String>,
}

impl Built {
    fn new() -> Built {
        let dir = tempfile::Builder::new()
            .prefix("tufkey-repo-verify-")
            .tempdir()
            .unwrap();
        let v = py(&["build", dir.path().to_str().unwrap()]);
        let targets = v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        Built { dir, targets }
    }

    fn case(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// ngclient's verdict: refresh from `trusted_root` at `at` ("now" or a time), then
/// download each target. `Ok(())` or the error it raised.
fn ngclient(repo: &Path, trusted_root: &Path, at: &str, targets: &[String]) -> Result<(), String> {
    let mut args = vec![
        "client",
        repo.to_str().unwrap(),
        trusted_root.to_str().unwrap(),
        at,
    ];
    args.extend(targets.iter().map(String::as_str));
    let v = py(&args);
    match v["ok"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(v["error"].as_str().unwrap_or("?").to_string()),
    }
}

/// `tufkey --json repo verify DIR EXTRA…`: (exit code, report).
fn verify_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut c = tufkey(None);
    c.args(["--json", "repo", "verify", dir.to_str().unwrap()]);
    c.args(extra);
    let (code, out, err) = run(c);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\nstdout: {out}\nstderr: {err}"));
    (code, v)
}

/// The problems of a report as "file: message" lines.
fn problems(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            format!(
                "{}: {}",
                p["file"].as_str().unwrap(),
                p["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_repository_written_by_python_tuf_is_accepted_by_ngclient_and_by_repo_verify() {
    let built = Built::new();
    let bins = ["bins-0", "bins-1", "bins-2", "bins-3"];
    for (case, consistent, delegated) in [
        ("good", true, &["team"][..]),
        ("good_not_consistent", false, &["team"][..]),
        // Succinct hash-bin delegations (TAP 15): every bin is a role of its own.
        ("good_succinct", true, &bins[..]),
        // `team` delegated by path_hash_prefixes instead of paths.
        ("good_hash_prefixes", true, &["team"][..]),
    ] {
        good_repository_verifies(&built, case, consistent, delegated);
    }
}

fn good_repository_verifies(built: &Built, case: &str, consistent: bool, delegated: &[&str]) {
    let good = built.case(case);
    let root1 = good.join("metadata/1.root.json");
    ngclient(&good, &root1, "now", &built.targets)
        .unwrap_or_else(|e| panic!("ngclient refuses {case}: {e}"));

    let (code, report) = verify_json(&good, &[]);
    assert_eq!(code, 0, "{case}: {report:#}");
    assert_eq!(report["verified"], true);
    assert!(problems(&report).is_empty());
    let roles = report["roles"].as_array().unwrap();
    assert!(roles
        .iter()
        .all(|r| r["ok"] == true && r["version"].is_u64()));
    // Root v2 needs two distinct keys: root1's (ed25519) and root2's (ecdsa).
    assert_eq!(roles[1]["version"], 2);
    assert_eq!(roles[1]["signed_by"].as_array().unwrap().len(), 2);
    assert_eq!(report["targets"]["listed"], 2);
    assert_eq!(report["targets"]["verified"], 2);
    assert_eq!(report["consistent_snapshot"], consistent);
    // One line per file a client loads, in the order it loads them.
    let got: Vec<(&str, &str)> = roles
        .iter()
        .map(|r| (r["role"].as_str().unwrap(), r["file"].as_str().unwrap()))
        .collect();
    let v = if consistent { "1." } else { "" };
    let mut want: Vec<(String, String)> = vec![
        ("root".into(), "metadata/1.root.json".into()),
        ("root".into(), "metadata/2.root.json".into()),
        ("timestamp".into(), "metadata/timestamp.json".into()),
        ("snapshot".into(), format!("metadata/{v}snapshot.json")),
        ("targets".into(), format!("metadata/{v}targets.json")),
    ];
    want.extend(
        delegated
            .iter()
            .map(|d| (d.to_string(), format!("metadata/{v}{d}.json"))),
    );
    let want: Vec<(&str, &str)> = want.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want, "{case}");
}

#[test]
fn human_output_shows_each_role_with_version_expiry_and_signers() {
    let built = Built::new();
    let mut c = tufkey(None);
    c.args(["repo", "verify", built.case("good").to_str().unwrap()]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "ok   root",
        "v2",
        "ok   timestamp",
        "ok   snapshot",
        "ok   targets",
        "ok   team",
        "expires",
        "signed by 2 of 2",
        "2 files verified",
        "VERIFIED",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Not a terminal here: no progress bar on stderr.
    assert!(err.is_empty(), "{err}");
}

#[test]
fn each_broken_copy_is_refused_naming_the_file_and_ngclient_refuses_it_too() {
    let built = Built::new();
    // (case, the file the problem is in, words of the message, what ngclient raises)
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "bad_signature",
            "metadata/1.targets.json",
            &[
                "targets threshold of root v2 not met",
                "0 of 1",
                "does not verify",
            ],
            "UnsignedMetadataError",
        ),
        (
            "snapshot_wrong_targets_version",
            "metadata/2.targets.json",
            &["is version 1", "metadata/1.snapshot.json states version 2"],
            "BadVersionNumberError",
        ),
        (
            "timestamp_wrong_snapshot_hashes",
            "metadata/1.snapshot.json",
            &[
                "sha256 is",
                "but metadata/timestamp.json states 0000000000000000",
            ],
            "LengthOrHashMismatchError",
        ),
        (
            "root_version_gap",
            "metadata/3.root.json",
            &["2.root.json is missing", "clients stop at root version 1"],
            "UnsignedMetadataError",
        ),
        (
            "tampered_target",
            ".hello.txt",
            &[
                "target `hello.txt`",
                "length is 30 bytes, but metadata/1.targets.json states 22",
            ],
            "DownloadLengthMismatchError",
        ),
        (
            "expired_timestamp",
            "metadata/timestamp.json",
            &["expired at"],
            "ExpiredMetadataError",
        ),
        (
            "target_outside_delegated_paths",
            "metadata/1.team.json",
            &[
                "lists target `elsewhere/tool.bin`",
                "targets delegates `team` only paths [\"team/*\"]",
            ],
            "LookupError",
        ),
        (
            "succinct_wrong_bin",
            "metadata/1.bins-2.json",
            &["lists target `team/tool.bin`", "hash bin `bins-2`"],
            "LookupError",
        ),
        (
            "deep_role_beyond_team_paths",
            "metadata/1.deep.json",
            &[
                "lists target `other.bin`",
                "but targets delegates `team` only paths [\"team/*\"]",
            ],
            "LookupError",
        ),
    ];
    for (case, file, words, ng_error) in cases {
        let dir = built.case(case);
        let before = snapshot(&dir);
        let (code, report) = verify_json(&dir, &[]);
        assert_eq!(code, 3, "{case}: {report:#}");
        assert_eq!(report["verified"], false, "{case}");
        let found = problems(&report);
        assert!(
            found.iter().any(|p| p
                .split_once(": ")
                .is_some_and(|(f, m)| f.ends_with(file) && words.iter().all(|w| m.contains(w)))),
            "{case}: no problem in {file} saying {words:?}; got {found:#?}"
        );
        assert_eq!(snapshot(&dir), before, "{case}: repo verify changed a file");

        let mut targets = built.targets.clone();
        match *case {
            "target_outside_delegated_paths" => targets.push("elsewhere/tool.bin".into()),
            "deep_role_beyond_team_paths" => targets.push("other.bin".into()),
            _ => {}
        }
        let root1 = dir.join("metadata/1.root.json");
        let ng = ngclient(&dir, &root1, "now", &targets);
        assert!(
            ng.as_ref().is_err_and(|e| e.starts_with(ng_error)),
            "{case}: ngclient should refuse with {ng_error}, got {ng:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let built = Built::new();
    // The gap leaves the timestamp key unknown to root v1: both problems are listed.
    let (code, report) = verify_json(&built.case("root_version_gap"), &[]);
    assert_eq!(code, 3);
    let found = problems(&report);
    assert!(
        found.iter().any(|p| p.starts_with("metadata/3.root.json:")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p
                .starts_with("metadata/timestamp.json: timestamp threshold of root v1 not met")),
        "{found:#?}"
    );
    // A tampered target is reported for each hash-prefixed copy clients may fetch.
    let (_, report) = verify_json(&built.case("tampered_target"), &[]);
    let files: std::collections::BTreeSet<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn one_key_under_two_key_ids_meets_python_tufs_threshold_but_not_tufkeys() {
    let built = Built::new();
    let dir = built.case("same_key_two_ids");
    let root1 = dir.join("metadata/1.root.json");
    // python-tuf counts key ids, so its client accepts root v2 signed by one key twice.
    ngclient(&dir, &root1, "now", &built.targets).expect("python-tuf counts key ids");

    let (code, report) = verify_json(&dir, &[]);
    assert_eq!(code, 3, "{report:#}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata/2.root.json")).unwrap()).unwrap();
    let ids: Vec<String> = doc["signed"]["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let found = problems(&report);
    assert!(
        found.iter().any(|p| p.starts_with("metadata/2.root.json:")
            && p.contains("1 of 2 signatures by distinct keys")
            && ids.iter().all(|id| p.contains(id.as_str()))
            && p.contains("same public key")),
        "{found:#?}"
    );

    // `tufkey verify` refuses the same root update, naming both key ids.
    let mut c = tufkey(None);
    c.args([
        "verify",
        dir.join("metadata/2.root.json").to_str().unwrap(),
        "--root",
        root1.to_str().unwrap(),
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("NOT VERIFIED"), "{out}");
    for id in &ids {
        assert!(
            out.contains("are the same public key") && out.contains(id.as_str()),
            "{id} not named:\n{out}"
        );
    }
}

#[test]
fn expiry_is_checked_at_the_time_given_with_at() {
    let built = Built::new();
    let good = built.case("good");
    // The timestamp lives one day; two days on, it has expired.
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let (code, report) = verify_json(&good, &["--at", &later]);
    assert_eq!(code, 3, "{report:#}");
    let found = problems(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("metadata/timestamp.json: expired at"),
        "{found:#?}"
    );
    // And an expired timestamp verifies at a time before it expired.
    let earlier = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let (code, report) = verify_json(&built.case("expired_timestamp"), &["--at", &earlier]);
    assert_eq!(code, 0, "{report:#}");

    let (code, out) = harness::fails(
        None,
        &[
            "repo",
            "verify",
            good.to_str().unwrap(),
            "--at",
            "next tuesday",
        ],
    );
    assert_eq!(code, 1);
    assert!(out.contains("--at `next tuesday` is not a time"), "{out}");
}

#[test]
fn no_targets_checks_metadata_only() {
    let built = Built::new();
    let (code, report) = verify_json(&built.case("tampered_target"), &["--no-targets"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["targets"]["checked_files"], false);
    assert_eq!(report["targets"]["verified"], 0);
}

#[test]
fn a_hash_named_copy_missing_beside_another_is_a_note_not_a_failure() {
    let built = Built::new();
    let good = built.case("good");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(good.join("metadata/1.targets.json")).unwrap())
            .unwrap();
    let sha512 = doc["signed"]["targets"]["hello.txt"]["hashes"]["sha512"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = format!("targets/{sha512}.hello.txt");
    std::fs::remove_file(good.join(&copy)).unwrap();
    let (code, report) = verify_json(&good, &[]);
    assert_eq!(code, 0, "{report:#}");
    let notes = report["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n["file"] == copy.as_str()
            && n["message"]
                .as_str()
                .unwrap()
                .contains("target `hello.txt`")),
        "{notes:#?}"
    );
    assert_eq!(report["targets"]["verified"], 2);
}

#[test]
fn a_trusted_root_outside_the_folder_is_where_the_chain_starts() {
    let built = Built::new();
    let good = built.case("good");
    // Starting from root v2 (a client that already updated), root v1 is not checked.
    let (code, report) = verify_json(
        &good,
        &[
            "--trusted-root",
            good.join("metadata/2.root.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["trusted_root"], "metadata/2.root.json");
    assert_eq!(report["trusted_root_version"], 2);
    // From a root of another repository (tuf-on-ci's), the update to this one's root v2
    // is not signed by the trusted keys: the chain breaks there, and says so.
    let other = realworld("tuf-on-ci-0.11").join("initial_root.json");
    let (code, report) = verify_json(&good, &["--trusted-root", other.to_str().unwrap()]);
    assert_eq!(code, 3, "{report:#}");
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|p| p
                .starts_with("metadata/2.root.json: root threshold of root v1 not met: 0 of 1")),
        "{found:#?}"
    );
}

#[test]
fn unreadable_input_is_exit_1_naming_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = harness::fails(None, &["repo", "verify", empty.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no metadata/ folder") && out.contains(empty.path().to_str().unwrap()),
        "{out}"
    );

    std::fs::create_dir(empty.path().join("metadata")).unwrap();
    let (code, out) = harness::fails(None, &["repo", "verify", empty.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1.root.json") && out.contains("--trusted-root"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Real-world repositories: tufkey agrees with ngclient, at their faketime and now.

fn realworld(name: &str) -> PathBuf {
    repo().join("../shared/interop/realworld").join(name)
}

fn file_line(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn real_world_repositories_get_python_tufs_verdict_at_their_time_and_now() {
    for name in ["sigstore-root-signing", "tuf-on-ci-0.11"] {
        let dir = realworld(name);
        let initial = dir.join("initial_root.json");
        let targetpath = file_line(dir.join("targetpath"));
        let faketime = file_line(dir.join("faketime"));
        for at in [faketime.as_str(), "now"] {
            let ng = ngclient(&dir, &initial, at, std::slice::from_ref(&targetpath));
            let mut extra = vec!["--trusted-root", initial.to_str().unwrap()];
            if at != "now" {
                extra.extend(["--at", at]);
            }
            let (code, report) = verify_json(&dir, &extra);
            assert_eq!(
                code == 0,
                ng.is_ok(),
                "{name} at {at}: tufkey exit {code}, ngclient {ng:?}; tufkey problems {:#?}",
                problems(&report)
            );
            if code == 0 {
                // The one target the folder mirrors was read and matches.
                assert!(
                    report["targets"]["verified"].as_u64().unwrap() >= 1,
                    "{report:#}"
                );
                assert!(!report["targets"]["absent"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::String(targetpath.clone())));
            } else {
                assert_eq!(code, 3);
                assert!(
                    problems(&report).iter().any(|p| p.contains("expired at")),
                    "{report:#}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where keys are added: one public key is never listed under a second key id.

#[test]
fn delegation_add_key_refuses_a_public_key_listed_under_another_key_id() {
    use tufkey::tuf::PublicKey;
    let dir = tempfile::tempdir().unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let key = PublicKey::Ed25519(sk.verifying_key()).to_tuf_key();
    let id = key.key_id();
    let targets = dir.path().join("targets.json");
    harness::write_unsigned(
        &targets,
        serde_json::json!({
            "_type": "targets", "version": 1, "spec_version": "1.0.31",
            "expires": harness::next_year(), "targets": {},
            "delegations": {"keys": {&id: key.to_value()}, "roles": [
                {"name": "team", "keyids": [&id], "threshold": 1, "paths": ["team/*"], "terminating": false},
                {"name": "ops", "keyids": [], "threshold": 1, "paths": ["ops/*"], "terminating": false},
            ]},
        }),
    );
    // The same public key with a tuf-on-ci style extra field: another key id.
    let mut same = key.to_value();
    same["x-tuf-on-ci-keyowner"] = "@someone".into();
    let same_file = dir.path().join("same-key.json");
    std::fs::write(&same_file, serde_json::to_vec(&same).unwrap()).unwrap();
    let before = snapshot(dir.path());
    for role in ["team", "ops"] {
        let (code, out) = harness::fails(
            None,
            &[
                "delegation",
                "add-key",
                targets.to_str().unwrap(),
                "--role",
                role,
                "--delegate-key",
                same_file.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("already listed as key id {id}")),
            "{role}: {out}"
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{role}: a refused add-key changed a file"
        );
    }
}

#[test]
fn ceremony_add_key_refuses_a_public_key_the_trusted_root_lists_under_another_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let pass = [("TUFKEY_PASSPHRASE", "pw")];
    let key_file = dir.path().join("k.p8");
    let uri = format!("file:{}", key_file.display());
    let (_, _, key) = harness::generate(None, &uri, "ed25519", &pass);
    // A trusted root listing this key under a made-up key id (python-tuf does not check
    // ids), signed by it under that id.
    let alias = "ab".repeat(32);
    let role = serde_json::json!({"keyids": [&alias], "threshold": 1});
    let root = dir.path().join("root.json");
    harness::write_unsigned(
        &root,
        serde_json::json!({
            "_type": "root", "spec_version": "1.0.31", "version": 1,
            "expires": harness::next_year(), "consistent_snapshot": true,
            "keys": {&alias: key},
            "roles": {"root": role, "targets": role, "snapshot": role, "timestamp": role},
        }),
    );
    let mut c = tufkey(None);
    c.args(["sign", root.to_str().unwrap(), "--key", &uri])
        .envs(pass);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    doc["signatures"][0]["keyid"] = alias.clone().into();
    std::fs::write(&root, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    harness::ok(None, &["verify", root.to_str().unwrap()]);

    let ceremony = dir.path().join("ceremony");
    harness::ok(
        None,
        &[
            "ceremony",
            "init",
            ceremony.to_str().unwrap(),
            "--trusted",
            root.to_str().unwrap(),
        ],
    );
    let before = snapshot(&ceremony);
    let mut c = tufkey(None);
    c.args([
        "ceremony",
        "add-key",
        ceremony.to_str().unwrap(),
        "--role",
        "targets",
        "--key",
        &uri,
    ])
    .envs(pass);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("already listed as key id {alias}")),
        "{err}"
    );
    assert_eq!(
        snapshot(&ceremony),
        before,
        "a refused add-key changed the ceremony"
    );
}

#[test]
fn malformed_documents_are_problems_in_their_file_never_a_crash() {
    let built = Built::new();
    type Edit = fn(&mut Value);
    // (file, edit, words of the problem reported in that file)
    let cases: &[(&str, Edit, &str)] = &[
        (
            "metadata/timestamp.json",
            |d| d["signed"]["meta"] = 5.into(),
            "`meta` must state `snapshot.json`",
        ),
        (
            "metadata/timestamp.json",
            |d| d["signed"]["spec_version"] = "2.0.0".into(),
            "is not a TUF 1.x version",
        ),
        (
            "metadata/timestamp.json",
            |d| d["signed"]["expires"] = "tomorrow".into(),
            "expires `tomorrow`",
        ),
        (
            "metadata/timestamp.json",
            |d| d["signatures"] = serde_json::json!({}),
            "`signatures` must be an array",
        ),
        (
            "metadata/1.targets.json",
            |d| d["signed"]["targets"] = serde_json::json!([]),
            "`targets` must be an object",
        ),
        (
            "metadata/1.targets.json",
            |d| d["signed"]["targets"]["hello.txt"]["length"] = (-5).into(),
            "`length` must be a non-negative integer",
        ),
        (
            "metadata/1.targets.json",
            |d| {
                d["signed"]["targets"]["../../etc/passwd"] =
                    serde_json::json!({"length": 1, "hashes": {"sha256": "00"}})
            },
            "must not contain `.` or `..` parts",
        ),
        (
            "metadata/1.targets.json",
            |d| d["signed"]["delegations"]["roles"][0]["paths"] = 3.into(),
            "`paths` must be an array of strings",
        ),
        (
            "metadata/1.targets.json",
            |d| d["signed"]["delegations"]["roles"][0]["name"] = "../x".into(),
            "cannot be a metadata file name",
        ),
        (
            "metadata/1.targets.json",
            |d| {
                d["signed"]["delegations"]["succinct_roles"] = serde_json::json!({"bit_length": 99})
            },
            "not both",
        ),
    ];
    for (i, (file, edit, words)) in cases.iter().enumerate() {
        let dir = built.dir.path().join(format!("malformed-{i}"));
        copy_dir(&built.case("good"), &dir);
        let path = dir.join(file);
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut doc);
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        let (code, report) = verify_json(&dir, &[]);
        assert_eq!(code, 3, "{file} / {words}: {report:#}");
        let found = problems(&report);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{file}: ")) && p.contains(words)),
            "{file}: no problem saying {words:?}; got {found:#?}"
        );
    }
    // A file that is not JSON at all.
    let dir = built.dir.path().join("malformed-json");
    copy_dir(&built.case("good"), &dir);
    std::fs::write(dir.join("metadata/2.root.json"), b"{nope").unwrap();
    let (code, report) = verify_json(&dir, &[]);
    assert_eq!(code, 3);
    assert!(problems(&report)
        .iter()
        .any(|p| p.starts_with("metadata/2.root.json: is not valid TUF metadata")));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
