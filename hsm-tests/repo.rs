//! `tufkey repo`, end to end: repositories built from ceremony roots on SoftHSM tokens,
//! committed and refreshed by the real binary, and read by python-tuf's
//! `ngclient.Updater` over loopback HTTP. Every refusal is checked for its exit code,
//! for naming what was wrong, and for leaving the repository folder byte-for-byte as it was.

#[path = "harness/mod.rs"]
mod harness;

use std::path::Path;

use harness::repo::{
    assert_repo_verify, assert_unchanged, ngclient, ngclient_ok, run_env, Keys, Signer,
};
use harness::{edit_file, p, read_json, snapshot};
use serde_json::Value;

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// A consistent-snapshot repository from a ceremony root (every root key signing) with
/// hello.txt committed; returns (repository, root).
fn committed_repo(k: &Keys) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = k.ceremony_root(k.root.len() as u64);
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let hello = k.path("hello.txt");
    write(&hello, "hello, world\n");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    k.commit(&dir, &[]);
    (dir, root)
}

// ---- publishing -----------------------------------------------------------------

#[test]
fn a_repository_from_a_ceremony_root_is_published_and_ngclient_downloads_its_targets() {
    let k = Keys::new(2);
    let root = k.ceremony_root(2);
    let dir = k.path("repo");
    let init = k.json(&["repo", "init", p(&dir), "--root", p(&root)]);
    assert_eq!(init["root_version"], 1);
    assert_eq!(init["consistent_snapshot"], true);

    let hello = k.path("hello.txt");
    write(&hello, "hello, world\n");
    let tool = k.path("build/tool.bin");
    write(&tool, "binary bits");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    let added = k.json(&[
        "repo",
        "add",
        p(&dir),
        p(&tool),
        "--path",
        "app/v1/tool.bin",
        "--sha512",
        "--custom",
        r#"{"x-channel":"stable"}"#,
    ]);
    assert_eq!(added["staged"][0]["role"], "targets");

    // Nothing is published before the commit.
    assert!(!dir.join("metadata/timestamp.json").exists());
    let keys = k.commit_keys();
    let audit = k.path("audit.jsonl");
    let mut args = vec![
        "--json",
        "--audit-log",
        p(&audit),
        "repo",
        "commit",
        p(&dir),
    ];
    args.extend(keys.iter().map(String::as_str));
    let out: Value = serde_json::from_str(&k.ok(&args)).unwrap();
    // One audit entry per signature, each naming role, version and key.
    let entries: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["action"] == "repo commit")
        .collect();
    let mut audited: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["role"].as_str().unwrap().to_string(),
                e["key_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    audited.sort();
    assert_eq!(
        audited,
        [
            ("snapshot".to_string(), k.snapshot.keyid.clone()),
            ("targets".to_string(), k.targets.keyid.clone()),
            ("timestamp".to_string(), k.timestamp.keyid.clone())
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e["result"] == "signed" && e["version"] == 1));
    assert_eq!(out["committed"], true);
    let written: Vec<String> = out["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        written.last().unwrap().ends_with("metadata/timestamp.json"),
        "{written:?}"
    );

    // The layout ngclient fetches: version-prefixed metadata, hash-prefixed targets
    // (one copy per hash listed).
    for f in [
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/1.targets.json",
        "metadata/1.snapshot.json",
        "metadata/timestamp.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let targets = read_json(&dir.join("metadata/1.targets.json"));
    let entry = &targets["signed"]["targets"]["app/v1/tool.bin"];
    assert_eq!(entry["length"], 11);
    assert_eq!(entry["custom"]["x-channel"], "stable");
    for alg in ["sha256", "sha512"] {
        let h = entry["hashes"][alg].as_str().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("targets/app/v1/{h}.tool.bin"))).unwrap(),
            "binary bits"
        );
    }
    let ts = read_json(&dir.join("metadata/timestamp.json"));
    let snap_bytes = std::fs::read(dir.join("metadata/1.snapshot.json")).unwrap();
    assert_eq!(
        ts["signed"]["meta"]["snapshot.json"]["length"],
        snap_bytes.len()
    );

    let v = ngclient_ok(
        &dir,
        &root,
        &["hello.txt", "app/v1/tool.bin", "missing.txt"],
    );
    assert_eq!(v["found"]["hello.txt"], "hello, world\n");
    assert_eq!(v["found"]["app/v1/tool.bin"], "binary bits");
    assert_eq!(v["found"]["missing.txt"], Value::Null);
    assert_eq!(
        (
            v["timestamp_version"].as_u64(),
            v["snapshot_version"].as_u64(),
            v["targets_version"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );

    // status: every role signed, nothing expiring within an hour.
    let (code, out, _) = k.run(&[
        "--json",
        "repo",
        "status",
        p(&dir),
        "--expiring-within",
        "1h",
    ]);
    assert_eq!(code, 0, "{out}");
    let st: Value = serde_json::from_str(&out).unwrap();
    let roles: Vec<&str> = st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["root", "timestamp", "snapshot", "targets"]);
    assert!(st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["threshold_met"] == true));
    assert_eq!(st["roles"][3]["signed"][0], k.targets.keyid.as_str());
    // A window longer than the timestamp's day: exit 5 for a monitor.
    let (code, _, _) = k.run(&["repo", "status", p(&dir), "--expiring-within", "2d"]);
    assert_eq!(code, 5);

    // A second commit with nothing staged changes nothing.
    let before = snapshot(&dir);
    let out = k.commit(&dir, &[]);
    assert!(out.contains("nothing to commit"), "{out}");
    assert_unchanged(&before, &dir, "an empty commit");
}

#[test]
fn without_consistent_snapshots_keys_come_from_repo_toml_and_files_are_unprefixed() {
    let k = Keys::new(1);
    let root = k.hand_root(1, false, &[&k.targets], "1.root.json");
    let dir = k.path("repo");
    let (t, s, ts) = (
        format!("targets={}", k.targets.uri),
        format!("snapshot={}", k.snapshot.uri),
        format!("timestamp={}", k.timestamp.uri),
    );
    k.ok(&[
        "repo",
        "init",
        p(&dir),
        "--root",
        p(&root),
        "--key",
        &t,
        "--key",
        &s,
        "--key",
        &ts,
    ]);
    let toml = std::fs::read_to_string(dir.join("repo.toml")).unwrap();
    assert!(toml.contains(&k.targets.uri), "{toml}");
    let a = k.path("a.txt");
    write(&a, "first");
    k.ok(&["repo", "add", p(&dir), p(&a)]);
    // A pipeline types no key: repo.toml names them.
    k.ok(&["repo", "commit", p(&dir)]);
    assert_eq!(
        std::fs::read_to_string(dir.join("targets/a.txt")).unwrap(),
        "first"
    );
    for f in [
        "metadata/targets.json",
        "metadata/snapshot.json",
        "metadata/timestamp.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(!dir.join("metadata/1.targets.json").exists());

    write(&a, "second");
    k.ok(&["repo", "add", p(&dir), p(&a)]);
    // An artifact stored elsewhere: recorded by hash, no file published.
    let h = "ab".repeat(32);
    k.ok(&[
        "repo",
        "add",
        p(&dir),
        "--path",
        "ext/image.bin",
        "--hash",
        &format!("sha256:{h}"),
        "--length",
        "4096",
    ]);
    // Snapshot states the length and hash of targets.json too; ngclient checks them.
    let toml = dir.join("repo.toml");
    edit_file(
        &toml,
        "meta_lengths_and_hashes = false",
        "meta_lengths_and_hashes = true",
    );
    k.ok(&["repo", "commit", p(&dir)]);
    let snap = read_json(&dir.join("metadata/snapshot.json"));
    let targets_bytes = std::fs::read(dir.join("metadata/targets.json")).unwrap();
    assert_eq!(
        snap["signed"]["meta"]["targets.json"]["length"],
        targets_bytes.len()
    );
    let targets = read_json(&dir.join("metadata/targets.json"));
    assert_eq!(
        targets["signed"]["targets"]["ext/image.bin"]["hashes"]["sha256"],
        h.as_str()
    );
    assert!(!dir.join("targets/ext").exists());
    let v = ngclient_ok(&dir, &root, &["a.txt"]);
    assert_eq!(v["found"]["a.txt"], "second");
    assert_eq!(v["targets_version"], 2);
    assert_eq!(v["timestamp_version"], 2);
}

#[test]
fn targets_added_then_removed_disappear_for_clients_but_their_files_stay() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let b = k.path("b.txt");
    write(&b, "bee");
    k.ok(&["repo", "add", p(&dir), p(&b)]);
    // A key whose token is not there: exit 7 (retry once the device is back), nothing published.
    let before = snapshot(&dir);
    let absent = format!(
        "timestamp=pkcs11:token=absent;object=key?module-path={}",
        harness::softhsm_module().display()
    );
    let (code, msg) = k.fails(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("targets={}", k.targets.uri),
        "--key",
        &format!("snapshot={}", k.snapshot.uri),
        "--key",
        &absent,
    ]);
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("for role `timestamp`") && msg.contains("token=absent"),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a commit with an absent token");
    k.commit(&dir, &[]);
    let removed = k.json(&["repo", "remove", p(&dir), "hello.txt"]);
    assert_eq!(removed["removed"][0]["role"], "targets");
    k.commit(&dir, &[]);
    let v = ngclient_ok(&dir, &root, &["hello.txt", "b.txt"]);
    assert_eq!(v["found"]["hello.txt"], Value::Null);
    assert_eq!(v["found"]["b.txt"], "bee");
    assert_eq!(v["targets_version"], 3);
    // Clients still on the previous snapshot can finish their download.
    let old = read_json(&dir.join("metadata/1.targets.json"));
    let h = old["signed"]["targets"]["hello.txt"]["hashes"]["sha256"]
        .as_str()
        .unwrap();
    assert!(dir.join(format!("targets/{h}.hello.txt")).is_file());

    // Removing what is not there is refused and changes nothing.
    let before = snapshot(&dir);
    let (code, msg) = k.fails(&["repo", "remove", p(&dir), "hello.txt"]);
    assert_eq!(code, 1);
    assert!(msg.contains("target `hello.txt` is not listed"), "{msg}");
    assert_unchanged(&before, &dir, "a refused remove");

    // A timestamp whose signature was tampered with: status exits 3 and names the role.
    let ts_path = dir.join("metadata/timestamp.json");
    let mut ts = read_json(&ts_path);
    let sig = ts["signatures"][0]["sig"].as_str().unwrap().to_string();
    let flipped = if sig.ends_with('0') { "1" } else { "0" };
    ts["signatures"][0]["sig"] = Value::String(format!("{}{flipped}", &sig[..sig.len() - 1]));
    std::fs::write(&ts_path, serde_json::to_vec(&ts).unwrap()).unwrap();
    let (code, out, _) = k.run(&["repo", "status", p(&dir), "--expiring-within", "1h"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("NOT SIGNED timestamp"), "{out}");
    assert_repo_verify(&dir, &root, 3);
}

#[test]
fn a_delegated_role_holds_the_paths_it_matches_and_survives_a_key_rotation() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let team = k.extra("team", "ed25519");
    let staged = k
        .ok(&["repo", "edit", p(&dir), "targets"])
        .trim()
        .to_string();
    assert!(staged.ends_with("staged/targets.json"), "{staged}");
    k.ok(&[
        "delegation",
        "add",
        &staged,
        "--role",
        "team",
        "--delegate-key",
        &team.uri,
        "--path",
        "team/*",
    ]);
    let a = k.path("a.txt");
    write(&a, "team file");
    // No --role: the delegated role whose paths match takes it.
    let added = k.json(&["repo", "add", p(&dir), p(&a), "--path", "team/a.txt"]);
    assert_eq!(added["staged"][0]["role"], "team");

    // A role whose paths do not match is refused, naming the roles and their patterns.
    let before = snapshot(&dir);
    let (code, msg) = k.fails(&[
        "repo",
        "add",
        p(&dir),
        p(&a),
        "--path",
        "other/a.txt",
        "--role",
        "team",
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("role `team` may not hold target `other/a.txt`")
            && msg.contains("paths: team/*"),
        "{msg}"
    );
    let (_, msg) = k.fails(&["repo", "add", p(&dir), p(&a), "--role", "nobody"]);
    assert!(
        msg.contains("no targets role `nobody`") && msg.contains("`team` (paths: team/*)"),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a refused add");

    // The delegated role's key is needed: without it nothing is published.
    let (code, msg) = k.fails(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("targets={}", k.targets.uri),
        "--key",
        &format!("snapshot={}", k.snapshot.uri),
        "--key",
        &format!("timestamp={}", k.timestamp.uri),
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("role `team` needs 1 signature") && msg.contains(&team.keyid),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a commit without the team key");

    k.commit(&dir, &["--key", &format!("team={}", team.uri)]);
    let v = ngclient_ok(&dir, &root, &["team/a.txt", "hello.txt"]);
    assert_eq!(v["found"]["team/a.txt"], "team file");
    assert_eq!(v["found"]["hello.txt"], "hello, world\n");

    // A member leaves: rotate the team key in the staged targets, commit with the new key.
    let team2 = k.extra("team-2", "ecdsa-p256");
    let staged = k
        .ok(&["repo", "edit", p(&dir), "targets"])
        .trim()
        .to_string();
    k.ok(&[
        "delegation",
        "rotate",
        &staged,
        "--role",
        "team",
        "--remove",
        &team.keyid,
        "--add",
        &team2.uri,
    ]);
    // The old key is no longer the role's key: refused before any signature.
    let before = snapshot(&dir);
    let (code, msg) = k.fails(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("team={}", team.uri),
        "--key",
        &format!("targets={}", k.targets.uri),
        "--key",
        &format!("snapshot={}", k.snapshot.uri),
        "--key",
        &format!("timestamp={}", k.timestamp.uri),
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains(&format!(
            "key id {}) is not a key of role `team`",
            team.keyid
        )),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a commit with the rotated-out key");
    let out = k.json(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("team={}", team2.uri),
        "--key",
        &format!("targets={}", k.targets.uri),
        "--key",
        &format!("snapshot={}", k.snapshot.uri),
        "--key",
        &format!("timestamp={}", k.timestamp.uri),
    ]);
    let roles: Vec<&str> = out["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["targets", "team", "snapshot", "timestamp"],
        "the team role is re-signed although its targets did not change"
    );
    let v = ngclient_ok(&dir, &root, &["team/a.txt"]);
    assert_eq!(v["found"]["team/a.txt"], "team file");
    let st = k.json(&["repo", "status", p(&dir), "--expiring-within", "1h"]);
    let team_st = st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "team")
        .unwrap()
        .clone();
    assert_eq!(team_st["signed"][0], team2.keyid.as_str());
    assert_eq!(team_st["version"], 2);
}

#[test]
fn snapshot_states_an_unchanged_role_as_its_file_is_and_a_tampered_one_must_be_re_signed() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    edit_file(
        &dir.join("repo.toml"),
        "meta_lengths_and_hashes = false",
        "meta_lengths_and_hashes = true",
    );
    let team = k.extra("team", "ed25519");
    let team_key = format!("team={}", team.uri);
    let staged = k
        .ok(&["repo", "edit", p(&dir), "targets"])
        .trim()
        .to_string();
    k.ok(&[
        "delegation",
        "add",
        &staged,
        "--role",
        "team",
        "--delegate-key",
        &team.uri,
        "--path",
        "team/*",
    ]);
    let a = k.path("a.txt");
    write(&a, "team file");
    k.ok(&["repo", "add", p(&dir), p(&a), "--path", "team/a.txt"]);
    k.commit(&dir, &["--key", &team_key]);
    let snapshot_meta = |dir: &Path| {
        let ts = read_json(&dir.join("metadata/timestamp.json"));
        let v = ts["signed"]["meta"]["snapshot.json"]["version"].clone();
        read_json(&dir.join(format!("metadata/{v}.snapshot.json")))["signed"]["meta"].clone()
    };

    // Written again by another tool: the same document and signatures, compact. A commit
    // that leaves `team` alone (no team key given) states the file as it is on disk,
    // which is what clients download and check.
    let team_file = dir.join("metadata/1.team.json");
    let doc = read_json(&team_file);
    let compact = serde_json::to_vec(&doc).unwrap();
    std::fs::write(&team_file, &compact).unwrap();
    let b = k.path("b.txt");
    write(&b, "bee");
    k.ok(&["repo", "add", p(&dir), p(&b)]);
    k.commit(&dir, &[]);
    let meta = snapshot_meta(&dir);
    use sha2::Digest;
    assert_eq!(meta["team.json"]["version"], 1, "{meta}");
    assert_eq!(meta["team.json"]["length"], compact.len(), "{meta}");
    assert_eq!(
        meta["team.json"]["hashes"]["sha256"],
        hex::encode(sha2::Sha256::digest(&compact)).as_str(),
        "{meta}"
    );
    let v = ngclient_ok(&dir, &root, &["team/a.txt", "b.txt"]);
    assert_eq!(v["found"]["team/a.txt"], "team file");
    assert_repo_verify(&dir, &root, 0);

    // Tampered on disk (a target's length changed, the old signature kept): the role no
    // longer verifies, so the commit must re-sign it, and without the team key it is
    // refused instead of hashing the file into the new snapshot.
    let mut doc = doc;
    doc["signed"]["targets"]["team/a.txt"]["length"] = Value::from(4096);
    std::fs::write(&team_file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let c = k.path("c.txt");
    write(&c, "sea");
    k.ok(&["repo", "add", p(&dir), p(&c)]);
    let before = snapshot(&dir);
    let mut args = vec!["repo", "commit", p(&dir)];
    let keys = k.commit_keys();
    args.extend(keys.iter().map(String::as_str));
    let (code, msg) = k.fails(&args);
    assert_eq!(code, 1);
    assert!(
        msg.contains("role `team` needs 1 signature") && msg.contains(&team.keyid),
        "{msg}"
    );
    assert_unchanged(
        &before,
        &dir,
        "a commit over a tampered role without its key",
    );
    // With the key it is re-signed (as after a key rotation), and snapshot states the
    // new file.
    let out = k.json(&{
        let mut a = args.clone();
        a.extend(["--key", team_key.as_str()]);
        a
    });
    let roles: Vec<&str> = out["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["targets", "team", "snapshot", "timestamp"]);
    let meta = snapshot_meta(&dir);
    let written = std::fs::read(dir.join("metadata/2.team.json")).unwrap();
    assert_eq!(meta["team.json"]["version"], 2, "{meta}");
    assert_eq!(meta["team.json"]["length"], written.len(), "{meta}");
    assert_eq!(
        meta["team.json"]["hashes"]["sha256"],
        hex::encode(sha2::Sha256::digest(&written)).as_str(),
        "{meta}"
    );
}

#[test]
fn a_root_rotation_to_version_2_with_a_new_targets_key_is_followed_by_ngclient() {
    let k = Keys::new(2);
    let root1 = k.hand_root(1, true, &[&k.targets], "1.root.json");
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root1)]);
    let hello = k.path("hello.txt");
    write(&hello, "v1 era");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    k.commit(&dir, &[]);

    let targets2 = k.extra("targets-2", "ecdsa-p256");
    let root2 = k.hand_root(2, true, &[&targets2], "2.root.json");
    k.ok(&["repo", "root", p(&dir), p(&root2)]);
    // The old targets key no longer counts: refused before any PIN, nothing published.
    let before = snapshot(&dir);
    let (code, msg) = k.fails(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("targets={}", k.targets.token_uri_for_key()),
        "--no-prompt",
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("is not a key of role `targets`") && msg.contains("no PIN was asked"),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a commit with the old targets key");

    let keys = [
        format!("targets={}", targets2.uri),
        format!("snapshot={}", k.snapshot.uri),
        format!("timestamp={}", k.timestamp.uri),
    ];
    k.ok(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &keys[0],
        "--key",
        &keys[1],
        "--key",
        &keys[2],
    ]);
    assert!(dir.join("metadata/2.root.json").is_file());
    assert_eq!(
        std::fs::read(dir.join("metadata/2.root.json")).unwrap(),
        std::fs::read(dir.join("metadata/root.json")).unwrap()
    );
    // A client that trusts only root 1 walks to root 2 and accepts the re-signed targets.
    let v = ngclient_ok(&dir, &root1, &["hello.txt"]);
    assert_eq!(v["root_version"], 2);
    assert_eq!(v["targets_version"], 2);
    assert_eq!(v["found"]["hello.txt"], "v1 era");

    // A root that skips a version is refused, naming the file.
    let root4 = k.hand_root(4, true, &[&targets2], "4.root.json");
    let before = snapshot(&dir);
    let (code, msg) = k.fails(&["repo", "root", p(&dir), p(&root4)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("4.root.json") && msg.contains("does not follow version 2"),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a refused root");
}

#[test]
fn refresh_re_signs_only_what_is_due_and_says_so_otherwise() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let keys = [
        format!("snapshot={}", k.snapshot.uri),
        format!("timestamp={}", k.timestamp.uri),
    ];
    let refresh = |k: &Keys| {
        let mut c = harness::tufkey(Some(&k.hsm));
        c.args([
            "--json",
            "repo",
            "refresh",
            p(&dir),
            "--key",
            &keys[0],
            "--key",
            &keys[1],
        ]);
        let (code, out, err) = harness::run(c);
        (
            code,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    };
    // Fresh: a 1-day timestamp is re-signed only in its last 12 hours.
    let before = snapshot(&dir);
    let (code, out, err) = refresh(&k);
    assert_eq!(code, 4, "{out}{err}");
    assert_eq!(out["signed"], false);
    assert_unchanged(&before, &dir, "a refresh with nothing due");

    let toml = dir.join("repo.toml");
    edit_file(&toml, "# timestamp = \"12h\"", "timestamp = \"2d\"");
    let (code, out, err) = refresh(&k);
    assert_eq!(code, 0, "{out}{err}");
    let roles: Vec<&str> = out["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["timestamp"]);
    let v = ngclient_ok(&dir, &root, &["hello.txt"]);
    assert_eq!(
        (
            v["timestamp_version"].as_u64(),
            v["snapshot_version"].as_u64()
        ),
        (Some(2), Some(1))
    );

    // Snapshot due too: both are re-signed, snapshot first.
    edit_file(&toml, "# snapshot = \"182d\"", "snapshot = \"400d\"");
    let (code, out, err) = refresh(&k);
    assert_eq!(code, 0, "{out}{err}");
    let v = ngclient_ok(&dir, &root, &["hello.txt"]);
    assert_eq!(
        (
            v["timestamp_version"].as_u64(),
            v["snapshot_version"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(v["found"]["hello.txt"], "hello, world\n");
}

#[test]
fn refresh_refuses_an_expired_targets_role_and_status_reports_it() {
    let k = Keys::new(1);
    let root = k.ceremony_root(1);
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let toml = dir.join("repo.toml");
    edit_file(&toml, "targets = \"365d\"", "targets = \"2s\"");
    k.commit(&dir, &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let before = snapshot(&dir);
    let online = k.online_keys();
    let mut args = vec!["repo", "refresh", p(&dir)];
    args.extend(online.iter().map(String::as_str));
    let (code, msg) = k.fails(&args);
    assert_eq!(code, 1);
    assert!(
        msg.contains("role `targets` expired at") && msg.contains("does not paper over"),
        "{msg}"
    );
    assert_unchanged(&before, &dir, "a refused refresh");
    let (code, out, _) = k.run(&["repo", "status", p(&dir)]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("EXPIRED    targets"), "{out}");
}

// ---- refusals ---------------------------------------------------------------------

#[test]
fn bad_target_paths_files_and_hashes_are_refused_by_name_and_change_nothing() {
    let k = Keys::new(1);
    let (dir, _root) = committed_repo(&k);
    let good = k.path("good.bin");
    write(&good, "good");
    let missing = k.path("missing.bin");
    let folder = k.path("ceremony");
    let zeros = format!("sha256:{}", "0".repeat(64));
    let manifest = k.path("manifest.txt");
    write(
        &manifest,
        "# artifacts in the bucket\nok.tgz 10 sha256:aaaa\n",
    );
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec![p(&good), "--path", "../evil.bin"],
            vec!["`../evil.bin`".into(), "..".into()],
        ),
        (
            vec![p(&good), "--path", "a/../../evil.bin"],
            vec!["`a/../../evil.bin`".into()],
        ),
        (
            vec![p(&good), "--path", "/etc/evil.bin"],
            vec!["`/etc/evil.bin` is absolute".into()],
        ),
        (
            vec![p(&missing)],
            vec![format!("cannot read {}", p(&missing))],
        ),
        (
            vec![p(&folder)],
            vec![
                format!("cannot read {}", p(&folder)),
                "not a regular file".into(),
            ],
        ),
        (
            vec![p(&good), "--hash", &zeros],
            vec![p(&good).to_string(), "does not match".into()],
        ),
        (
            vec!["--path", "x.tgz", "--hash", &zeros],
            vec!["--length".into()],
        ),
        (
            vec!["--path", "x.tgz", "--hash", "md5:00", "--length", "3"],
            vec!["md5".into()],
        ),
        (
            vec!["--manifest", p(&manifest)],
            vec![format!("{} line 2", p(&manifest)), "64 hex digits".into()],
        ),
        (
            vec![p(&good), "--custom", "[1]"],
            vec!["--custom must be a JSON object".into()],
        ),
        (
            vec![p(&good), "--custom", r#"{"rate": 1.5}"#],
            vec![
                "$.targets.good.bin.custom.rate".into(),
                "non-integer".into(),
            ],
        ),
    ];
    let before = snapshot(&dir);
    for (extra, wants) in cases {
        let mut args = vec!["repo", "add", p(&dir)];
        args.extend(extra.iter().copied());
        let (code, msg) = k.fails(&args);
        assert_eq!(code, 1, "{args:?}: {msg}");
        for w in &wants {
            assert!(
                msg.contains(w.as_str()),
                "{args:?}: expected {w:?} in: {msg}"
            );
        }
        assert_unchanged(&before, &dir, &format!("{extra:?}"));
    }
    // The whole command is refused when one of its files is bad: the good one is not staged.
    let (_, msg) = k.fails(&["repo", "add", p(&dir), p(&good), p(&missing)]);
    assert!(msg.contains(p(&missing)), "{msg}");
    assert_unchanged(&before, &dir, "an add with one missing file");

    // A staged file edited by hand cannot smuggle a path outside targets/ past commit.
    let staged = k
        .ok(&["repo", "edit", p(&dir), "targets"])
        .trim()
        .to_string();
    let mut doc = read_json(Path::new(&staged));
    doc["signed"]["targets"]["../../evil"] =
        serde_json::json!({"length": 1, "hashes": {"sha256": "00"}});
    std::fs::write(&staged, serde_json::to_vec(&doc).unwrap()).unwrap();
    let before = snapshot(&dir);
    let keys = k.commit_keys();
    let mut args = vec!["repo", "commit", p(&dir)];
    args.extend(keys.iter().map(String::as_str));
    let (code, msg) = k.fails(&args);
    assert_eq!(code, 1);
    assert!(msg.contains("`../../evil`"), "{msg}");
    assert_unchanged(&before, &dir, "a commit of a hand-edited bad path");
}

#[test]
fn init_refuses_a_root_that_does_not_verify_and_an_existing_repository() {
    let k = Keys::new(2);
    let unsigned = k.path("unsigned.root.json");
    let signed = k.hand_root(1, true, &[&k.targets], "1.root.json");
    let mut doc = read_json(&signed);
    doc["signatures"] = serde_json::json!([]);
    std::fs::write(&unsigned, serde_json::to_vec(&doc).unwrap()).unwrap();
    let dir = k.path("repo");
    let (code, msg) = k.fails(&["repo", "init", p(&dir), "--root", p(&unsigned)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains(&format!("root {} does not verify", p(&unsigned)))
            && msg.contains("0 valid signature(s) by its own root keys where the threshold is 1"),
        "{msg}"
    );
    assert!(!dir.exists(), "nothing was created");

    // A chain with a gap is refused too.
    let v3 = k.hand_root(3, true, &[&k.targets], "3.root.json");
    let (_, msg) = k.fails(&[
        "repo",
        "init",
        p(&dir),
        "--root",
        p(&v3),
        "--root-chain",
        p(&signed),
    ]);
    assert!(
        msg.contains("3.root.json") && msg.contains("does not follow version 1"),
        "{msg}"
    );
    assert!(!dir.exists());

    // A key that is not the role's key is refused at init, before any PIN.
    let (_, msg) = k.fails(&[
        "repo",
        "init",
        p(&dir),
        "--root",
        p(&signed),
        "--key",
        &format!("timestamp={}", k.snapshot.token_uri_for_key()),
        "--no-prompt",
    ]);
    assert!(msg.contains("is not a key of role `timestamp`"), "{msg}");
    assert!(!dir.exists());

    k.ok(&["repo", "init", p(&dir), "--root", p(&signed)]);
    let before = snapshot(&dir);
    let (_, msg) = k.fails(&["repo", "init", p(&dir), "--root", p(&signed)]);
    assert!(msg.contains("already exists"), "{msg}");
    assert_unchanged(&before, &dir, "a second init");
}

// ---- publishing under failure and concurrency ------------------------------------

/// Starts `repo commit DIR` with the keys, pausing `pause_ms` after every file it writes
/// (the documented test hook), in the background.
fn spawn_commit(k: &Keys, dir: &Path, pause_ms: u64) -> std::process::Child {
    let mut c = harness::tufkey(Some(&k.hsm));
    c.args(["repo", "commit", p(dir)])
        .args(k.commit_keys())
        .env("TUFKEY_TEST_PUBLISH_PAUSE_MS", pause_ms.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    c.spawn().expect("start tufkey repo commit")
}

fn wait_for(path: &Path, child: &mut std::process::Child) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the commit ended ({st}) before {} appeared", path.display());
        }
        assert!(
            std::time::Instant::now() < until,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_commit_killed_mid_publish_leaves_the_old_repository_and_the_next_commit_finishes() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let b = k.path("b.txt");
    write(&b, "new target");
    k.ok(&["repo", "add", p(&dir), p(&b)]);
    let sha = read_json(&dir.join("staged/targets.json"))["signed"]["targets"]["b.txt"]["hashes"]
        ["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // Killed right after the target file, then right after the new snapshot: each time
    // python-tuf's client still sees the old repository, whole.
    for last_written in [
        dir.join(format!("targets/{sha}.b.txt")),
        dir.join("metadata/2.snapshot.json"),
    ] {
        let mut child = spawn_commit(&k, &dir, 1500);
        wait_for(&last_written, &mut child);
        child.kill().unwrap();
        child.wait().unwrap();
        let v = ngclient(&dir, &root, &["hello.txt", "b.txt"]);
        assert!(
            v.get("error").is_none(),
            "after a kill past {}: {v}",
            last_written.display()
        );
        assert_eq!(v["timestamp_version"], 1, "{v}");
        assert_eq!(v["found"]["b.txt"], Value::Null);
        assert_eq!(v["found"]["hello.txt"], "hello, world\n");
        assert_repo_verify(&dir, &root, 0);
    }
    // Nothing was lost: the staged change is still there and the next commit publishes it.
    k.commit(&dir, &[]);
    let v = ngclient_ok(&dir, &root, &["b.txt"]);
    assert_eq!(v["timestamp_version"], 2);
    assert_eq!(v["found"]["b.txt"], "new target");
}

#[test]
fn a_second_commit_refuses_naming_the_holder_or_waits_for_it() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let b = k.path("b.txt");
    write(&b, "bee");
    k.ok(&["repo", "add", p(&dir), p(&b)]);
    let mut first = spawn_commit(&k, &dir, 2000);
    wait_for(&dir.join("metadata/2.targets.json"), &mut first);
    let keys = k.commit_keys();
    let mut args = vec!["repo", "commit", p(&dir)];
    args.extend(keys.iter().map(String::as_str));
    let (code, msg) = k.fails(&args);
    assert_eq!(code, 1);
    assert!(
        msg.contains(&format!("locked by pid {}", first.id()))
            && msg.contains("repo commit")
            && msg.contains("--wait"),
        "{msg}"
    );
    // With --wait the second commit runs once the first is done (nothing left to commit).
    args.extend(["--wait", "2m"]);
    let out = k.ok(&args);
    assert!(out.contains("nothing to commit"), "{out}");
    assert!(first.wait().unwrap().success());
    let v = ngclient_ok(&dir, &root, &["b.txt"]);
    assert_eq!(v["found"]["b.txt"], "bee");
}

#[test]
fn snapshot_and_timestamp_are_signed_through_a_running_signer() {
    let k = Keys::new(1);
    let root = k.ceremony_root(1);
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let signer = Signer::start(&k);
    // The pipeline names the remote keys in repo.toml and types nothing else.
    signer.write_keys(&k, &dir, &k.targets.uri);
    let hello = k.path("hello.txt");
    write(&hello, "signed remotely");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    let (code, out, err) = run_env(&k, &["repo", "commit", p(&dir)], &signer.env());
    assert_eq!(code, 0, "{out}{err}");
    let v = ngclient_ok(&dir, &root, &["hello.txt"]);
    assert_eq!(v["found"]["hello.txt"], "signed remotely");
    // The signer logged both signatures for this repository.
    let audit = signer.audit();
    for role in ["snapshot", "timestamp"] {
        assert!(
            audit.lines().any(|l| l.contains("\"result\":\"signed\"")
                && l.contains(&format!("\"role\":\"{role}\""))
                && l.contains("\"repository\":\"acme\"")),
            "no {role} signature in the signer's audit log:\n{audit}"
        );
    }
    // refresh through the signer too, once the timestamp is due.
    let toml = dir.join("repo.toml");
    edit_file(&toml, "# timestamp = \"12h\"", "timestamp = \"2d\"");
    let (code, out, err) = run_env(&k, &["repo", "refresh", p(&dir)], &signer.env());
    assert_eq!(code, 0, "{out}{err}");
    let v = ngclient_ok(&dir, &root, &["hello.txt"]);
    assert_eq!(v["timestamp_version"], 2);
    signer.daemon.stop();
}

// ---- the whole story: root on HSM tokens, targets on a YubiKey, online roles remote ----

/// The virtual PIV card's PIN (hsm-tests/piv/start.sh makes the card with it).
const PIV_PIN: &str = "123456";

/// Whether the virtual YubiKey runs; skipped with a message otherwise, failing under CI=true.
fn piv_card() -> bool {
    match std::env::var_os("TUFKEY_TEST_PIV_CA") {
        Some(_) => true,
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the virtual PIV card did not start in CI: TUFKEY_TEST_PIV_CA is unset (hsm-tests/run.sh exports it)")
        }
        None => {
            eprintln!("skipped: virtual PIV card not running (TUFKEY_TEST_PIV_CA unset); run ./hsm-tests/run.sh");
            false
        }
    }
}

/// A new P-256 key in a free retired slot of the virtual card: (URI, key id).
fn yubikey_key(k: &Keys) -> (String, String) {
    // From the last retired slot down, away from the slots hsm-tests/yubikey.rs prefers.
    for n in (0x82..=0x95).rev() {
        let uri = format!("yubikey:slot={n:02x}");
        let mut c = harness::tufkey(Some(&k.hsm));
        c.args(["key", "generate", &uri, "--type", "ecdsa-p256", "--json"])
            .env("TUFKEY_PIN", PIV_PIN);
        let (code, out, err) = harness::run(c);
        if code != 0 && err.contains("already holds a key") {
            continue;
        }
        assert_eq!(code, 0, "key generate {uri}: {out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        return (
            v["uri"].as_str().unwrap().to_string(),
            v["keyid"].as_str().unwrap().to_string(),
        );
    }
    panic!("no free retired slot on the virtual card; restart it with a fresh state folder");
}

#[test]
fn a_ceremony_root_a_yubikey_targets_key_and_a_remote_signer_make_a_repository_ngclient_updates_from(
) {
    if !piv_card() {
        return;
    }
    let k = Keys::new(2);
    let (yk_uri, yk_id) = yubikey_key(&k);
    let root = k.ceremony_root_with(2, &yk_uri);
    assert_eq!(
        read_json(&root)["signed"]["roles"]["targets"]["keyids"],
        serde_json::json!([yk_id])
    );
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let signer = Signer::start(&k);
    signer.write_keys(&k, &dir, &yk_uri);
    let hello = k.path("hello.txt");
    write(&hello, "from a yubikey");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    let mut env = signer.env();
    env.push(("TUFKEY_PIN", PIV_PIN.into()));
    let (code, out, err) = run_env(&k, &["--json", "repo", "commit", p(&dir)], &env);
    assert_eq!(code, 0, "{out}{err}");
    let v = ngclient_ok(&dir, &root, &["hello.txt"]);
    assert_eq!(v["found"]["hello.txt"], "from a yubikey");
    let st = k.json(&["repo", "status", p(&dir), "--expiring-within", "1h"]);
    let targets = st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "targets")
        .unwrap()
        .clone();
    assert_eq!(targets["signed"], serde_json::json!([yk_id]));
    assert_eq!(targets["threshold_met"], true);
    signer.daemon.stop();
}

#[test]
fn refresh_refuses_an_expired_snapshot_instead_of_signing_a_timestamp_over_it() {
    let k = Keys::new(1);
    let root = k.hand_root(1, true, &[&k.targets], "1.root.json");
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let toml = dir.join("repo.toml");
    edit_file(&toml, "snapshot = \"365d\"", "snapshot = \"2s\"");
    k.commit(&dir, &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let before = snapshot(&dir);
    let online = k.online_keys();
    let mut args = vec!["repo", "refresh", p(&dir)];
    args.extend(online.iter().map(String::as_str));
    let (code, msg) = k.fails(&args);
    assert_eq!(code, 1);
    assert!(msg.contains("role `snapshot` expired at"), "{msg}");
    assert_unchanged(&before, &dir, "a refused refresh");
    // The way out is a commit, which signs a new snapshot and timestamp even with
    // nothing staged.
    edit_file(&toml, "snapshot = \"2s\"", "snapshot = \"365d\"");
    k.commit(&dir, &[]);
    let v = ngclient_ok(&dir, &root, &[]);
    assert_eq!(v["snapshot_version"], 2);
    assert_eq!(v["targets_version"], 1, "targets did not change");
}

#[test]
fn a_nested_delegation_is_made_in_its_delegators_staged_file_and_clients_follow_it() {
    let k = Keys::new(1);
    let (dir, root) = committed_repo(&k);
    let team = k.extra("team", "ed25519");
    let sub = k.extra("team-sub", "ecdsa-p256");
    let targets_file = k
        .ok(&["repo", "edit", p(&dir), "targets"])
        .trim()
        .to_string();
    k.ok(&[
        "delegation",
        "add",
        &targets_file,
        "--role",
        "team",
        "--delegate-key",
        &team.uri,
        "--path",
        "team/*",
    ]);
    // The new role has no document yet: `repo edit` stages an empty one to delegate from.
    let team_file = k.ok(&["repo", "edit", p(&dir), "team"]).trim().to_string();
    k.ok(&[
        "delegation",
        "add",
        &team_file,
        "--role",
        "team-sub",
        "--delegate-key",
        &sub.uri,
        "--path",
        "team/sub-*",
        "--terminating",
    ]);
    let f = k.path("s.txt");
    write(&f, "deep");
    let added = k.json(&["repo", "add", p(&dir), p(&f), "--path", "team/sub-1.txt"]);
    assert_eq!(added["staged"][0]["role"], "team-sub");
    let out = k.json(&[
        "repo",
        "commit",
        p(&dir),
        "--key",
        &format!("targets={}", k.targets.uri),
        "--key",
        &format!("team={}", team.uri),
        "--key",
        &format!("team-sub={}", sub.uri),
        "--key",
        &format!("snapshot={}", k.snapshot.uri),
        "--key",
        &format!("timestamp={}", k.timestamp.uri),
    ]);
    let mut roles: Vec<&str> = out["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        ["snapshot", "targets", "team", "team-sub", "timestamp"]
    );
    let snap = read_json(&dir.join("metadata/2.snapshot.json"));
    let listed: Vec<&String> = snap["signed"]["meta"].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["targets.json", "team-sub.json", "team.json"]);
    let v = ngclient_ok(&dir, &root, &["team/sub-1.txt", "team/other.txt"]);
    assert_eq!(v["found"]["team/sub-1.txt"], "deep");
    assert_eq!(v["found"]["team/other.txt"], Value::Null);
}
