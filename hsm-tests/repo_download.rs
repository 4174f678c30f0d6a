//! `tufkey repo download`: a target fetched from a repository folder as a TUF client
//! fetches it. The repositories are made by `tufkey repo` with keys on SoftHSM tokens;
//! python-tuf's ngclient, over loopback HTTP, must deliver the same bytes. Every refusal
//! is checked for its exit code, for naming what failed, and for leaving `--out` as it was.

#[path = "harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::clients::{ngclient, HttpRepo};
use harness::p;
use harness::repo::Keys;

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// A consistent-snapshot repository from a ceremony root: `hello.txt` in top-level
/// targets and `team/a.txt` in the delegated role `team` (paths `team/*`), committed.
/// Returns (repository, trusted root).
fn repo_with_a_delegation(k: &Keys) -> (PathBuf, PathBuf) {
    let root = k.ceremony_root(1);
    let dir = k.path("repo");
    k.ok(&["repo", "init", p(&dir), "--root", p(&root)]);
    let hello = k.path("hello.txt");
    write(&hello, "hello, world\n");
    k.ok(&["repo", "add", p(&dir), p(&hello)]);
    let team = k.extra("team", "ed25519");
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
    k.commit(&dir, &["--key", &format!("team={}", team.uri)]);
    (dir, root)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The published copy of a target (consistent snapshots: `targets/HASH.NAME`).
fn published(dir: &Path, sub: &str, name: &str) -> PathBuf {
    let folder = dir.join("targets").join(sub);
    std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!(".{name}")))
        })
        .unwrap_or_else(|| panic!("no published copy of {name} in {}", folder.display()))
}

#[test]
fn a_top_level_and_a_delegated_target_are_downloaded_with_their_role_and_hashes() {
    let k = Keys::new(1);
    let (dir, root) = repo_with_a_delegation(&k);

    let out = k.path("hello.out");
    let v = k.json(&[
        "repo",
        "download",
        p(&dir),
        "hello.txt",
        "--out",
        p(&out),
        "--trusted-root",
        p(&root),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"hello, world\n");
    assert_eq!(v["path"], "hello.txt");
    assert_eq!(v["role"], "targets");
    assert_eq!(v["length"], 13);
    assert_eq!(v["hashes"]["sha256"], sha256_hex(b"hello, world\n"));
    assert_eq!(v["out"], p(&out));

    // Default trust: DIR/metadata/1.root.json; human output names the role that listed it.
    let out = k.path("a.out");
    let said = k.ok(&["repo", "download", p(&dir), "team/a.txt", "--out", p(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), b"team file");
    assert!(
        said.contains("listed by team") && said.contains("team/a.txt"),
        "{said}"
    );
}

#[test]
fn python_tuf_ngclient_downloads_the_same_bytes_as_tufkey() {
    let k = Keys::new(1);
    let (dir, root) = repo_with_a_delegation(&k);
    let http = HttpRepo::serve(&dir);
    for target in ["hello.txt", "team/a.txt"] {
        let out = k.path("ours");
        k.ok(&["repo", "download", p(&dir), target, "--out", p(&out)]);
        let ours = std::fs::read(&out).unwrap();
        let cache = k.path(&format!("ngclient-{}", target.replace('/', "-")));
        let (len, sha) = ngclient(&http, &root, &cache).download(target).delivered();
        assert_eq!(
            (len, sha),
            (ours.len() as u64, sha256_hex(&ours)),
            "{target}: ngclient and tufkey disagree"
        );
    }
}

#[test]
fn a_tampered_target_file_or_an_expired_timestamp_is_refused_and_out_is_left_alone() {
    let k = Keys::new(1);
    let (dir, _root) = repo_with_a_delegation(&k);
    let out = k.path("kept.txt");
    write(&out, "what was here before");

    // Expired: the default timestamp lasts one day.
    let later = (chrono::Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (code, said, err) = k.run(&[
        "repo",
        "download",
        p(&dir),
        "hello.txt",
        "--out",
        p(&out),
        "--at",
        &later,
    ]);
    assert_eq!(code, 3, "{said}{err}");
    assert!(
        err.contains("metadata/timestamp.json") && err.contains("expired"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "what was here before"
    );

    // Tampered: same length, other bytes, in the delegated role's target.
    let copy = published(&dir, "team", "a.txt");
    std::fs::write(&copy, "TEAM FILE").unwrap();
    let (code, said, err) = k.run(&["repo", "download", p(&dir), "team/a.txt", "--out", p(&out)]);
    assert_eq!(code, 3, "{said}{err}");
    let name = copy.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&format!("targets/team/{name}"))
            && err.contains("sha256")
            && err.contains("team.json"),
        "the refusal names the file and the role that states its hash: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "what was here before"
    );
    // Scripts get the same refusal as JSON.
    let (code, said, _) = k.run(&[
        "--json",
        "repo",
        "download",
        p(&dir),
        "team/a.txt",
        "--out",
        p(&out),
    ]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(v["downloaded"], false);
    assert_eq!(v["problems"][0]["file"], format!("targets/team/{name}"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "what was here before"
    );
}

#[test]
fn a_path_no_role_lists_or_one_with_dot_dot_is_refused_without_writing() {
    let k = Keys::new(1);
    let (dir, _root) = repo_with_a_delegation(&k);
    let out = k.path("never.txt");

    // team/* goes to `team`, which does not list it; `targets` does not either.
    let (code, msg) = k.fails(&["repo", "download", p(&dir), "team/b.txt", "--out", p(&out)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("`team/b.txt` is not listed") && msg.contains("searched: targets, team"),
        "{msg}"
    );
    // A path `team` may not hold is not searched for in `team`.
    let (_, msg) = k.fails(&["repo", "download", p(&dir), "other/a.txt", "--out", p(&out)]);
    assert!(msg.contains("searched: targets)"), "{msg}");

    let (code, msg) = k.fails(&[
        "repo",
        "download",
        p(&dir),
        "team/../hello.txt",
        "--out",
        p(&out),
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("target path `team/../hello.txt`") && msg.contains(".."),
        "{msg}"
    );
    assert!(!out.exists(), "nothing is written on a refusal");
}

/// Repositories written by python-tuf itself (hsm-tests/repo_verify_repos.py): delegation
/// by `paths`, by `path_hash_prefixes`, by succinct hash bins, and without consistent
/// snapshots. For every target, tufkey downloads exactly what ngclient delivers.
#[test]
fn on_repositories_python_tuf_wrote_every_target_downloads_as_ngclient_delivers_it() {
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(harness::python())
        .arg(harness::repo().join("hsm-tests/repo_verify_repos.py"))
        .args(["build", p(work.path())])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets: Vec<&str> = built["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(targets.len() >= 2, "{built}");
    for case in [
        "good",
        "good_not_consistent",
        "good_hash_prefixes",
        "good_succinct",
    ] {
        let dir = work.path().join(case);
        let root = dir.join("metadata/1.root.json");
        let http = HttpRepo::serve(&dir);
        for (i, target) in targets.iter().enumerate() {
            let file = work.path().join(format!("{case}-{i}.out"));
            let mut c = harness::tufkey(None);
            c.args(["repo", "download", p(&dir), target, "--out", p(&file)]);
            let (code, said, err) = harness::run(c);
            assert_eq!(code, 0, "{case} {target}: {said}{err}");
            let ours = std::fs::read(&file).unwrap();
            let cache = work.path().join(format!("ngclient-{case}-{i}"));
            let theirs = ngclient(&http, &root, &cache).download(target).delivered();
            assert_eq!(
                theirs,
                (ours.len() as u64, sha256_hex(&ours)),
                "{case} {target}: ngclient and tufkey disagree"
            );
        }
    }
}
