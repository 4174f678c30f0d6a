//! `tufkey repo`, end to end: repositories built from ceremony roots on SoftHSM tokens,
//! committed and refreshed by the real binary, and read by python-tuf's
//! `ngclient.Updater` over loopback HTTP. Every refusal is checked for its exit code,
//! for naming what was wrong, and for leaving the repository folder byte-for-byte as it was.

#[path = "harness/mod.rs"]
mod harness;

use std::path::Path;

use harness::repo::{assert_unchanged, ngclient, ngclient_ok, p, Keys};
use harness::snapshot;
use serde_json::Value;

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A consistent-snapshot repository from a 2-of-2 ceremony root with hello.txt committed.
fn committed_repo(k: &Keys) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = k.ceremony_root(2);
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
    let mut args = vec!["--json", "repo", "commit", p(&dir)];
    args.extend(keys.iter().map(String::as_str));
    let out: Value = serde_json::from_str(&k.ok(&args)).unwrap();
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
    k.ok(&["repo", "commit", p(&dir)]);
    let v = ngclient_ok(&dir, &root, &["a.txt"]);
    assert_eq!(v["found"]["a.txt"], "second");
    assert_eq!(v["targets_version"], 2);
    assert_eq!(v["timestamp_version"], 2);
}
