//! Root signing ceremonies, root rotation and delegated key rotation, end to end: every
//! keyholder has their own throwaway SoftHSM token, every step is the real `tufkey`
//! binary, and python-tuf (its client's root-update rule, a real `ngclient.Updater`
//! over loopback HTTP, `Metadata.verify_delegate`) checks what comes out.
//! Each test reads as a short story of what keyholders do and what they must see.

#[path = "harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---- helpers ---------------------------------------------------------------------

/// One keyholder: their own token, one key on it.
#[allow(dead_code)]
struct Keyholder {
    label: String,
    token: Token,
    uri: String,
    keyid: String,
    key: Value,
}

fn keyholder(hsm: &SoftHsm, label: &str, key_type: &str) -> Keyholder {
    let token = hsm.token(label, &format!("pin-{label}"));
    let (uri, keyid, key) = generate(Some(hsm), &token.uri("key"), key_type, &[]);
    Keyholder {
        label: label.into(),
        token,
        uri,
        keyid,
        key,
    }
}

/// Keyholders of a repository: root keys on tokens `root-1`…, and one token each for
/// the targets, snapshot and timestamp keys. `work` holds ceremony folders and the repository.
struct Fixture {
    root: Vec<Keyholder>,
    targets: Keyholder,
    snapshot: Keyholder,
    timestamp: Keyholder,
    work: tempfile::TempDir,
    hsm: SoftHsm,
}

impl Fixture {
    fn new(root_types: &[&str]) -> Fixture {
        let hsm = SoftHsm::new();
        let root = root_types
            .iter()
            .enumerate()
            .map(|(i, t)| keyholder(&hsm, &format!("root-{}", i + 1), t))
            .collect();
        let targets = keyholder(&hsm, "targets", "ed25519");
        let snapshot = keyholder(&hsm, "snapshot", "ecdsa-p256");
        let timestamp = keyholder(&hsm, "timestamp", "ecdsa-p256");
        Fixture {
            root,
            targets,
            snapshot,
            timestamp,
            work: tempfile::tempdir().unwrap(),
            hsm,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Where finalized roots (and the rest of the repository's metadata) go.
    fn metadata(&self) -> PathBuf {
        self.path("repo/metadata")
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(Some(&self.hsm), args)
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        fails(Some(&self.hsm), args)
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = tufkey(Some(&self.hsm));
        c.args(args);
        run(c)
    }

    /// `tufkey --json ARGS`, which must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Starts a root version 1 ceremony in `dir`: all root keys with `threshold`,
    /// one key each for targets, snapshot and timestamp.
    fn propose_v1(&self, dir: &Path, threshold: u64) {
        self.ok(&["ceremony", "init", p(dir)]);
        for k in &self.root {
            self.ok(&[
                "ceremony",
                "add-key",
                p(dir),
                "--role",
                "root",
                "--key",
                &k.uri,
            ]);
        }
        self.ok(&[
            "ceremony",
            "threshold",
            p(dir),
            "--role",
            "root",
            &threshold.to_string(),
        ]);
        for (role, k) in [
            ("targets", &self.targets),
            ("snapshot", &self.snapshot),
            ("timestamp", &self.timestamp),
        ] {
            self.ok(&[
                "ceremony",
                "add-key",
                p(dir),
                "--role",
                role,
                "--key",
                &k.uri,
            ]);
        }
    }

    fn sign(&self, dir: &Path, k: &Keyholder) -> String {
        self.ok(&["ceremony", "sign", p(dir), "--key", &k.uri, "--yes"])
    }

    fn status(&self, dir: &Path) -> Value {
        self.json(&["ceremony", "status", p(dir)])
    }

    /// A root version 1 with the first `threshold` root keys signing, finalized into
    /// `metadata()` by `ceremony run`.
    fn finalized_v1(root_types: &[&str], threshold: u64) -> Fixture {
        let f = Fixture::new(root_types);
        let dir = f.path("ceremony-v1");
        f.propose_v1(&dir, threshold);
        let meta = f.metadata();
        let mut args = vec!["ceremony", "run", p(&dir), "--out", p(&meta), "--yes"];
        for k in &f.root[..threshold as usize] {
            args.extend(["--key", k.uri.as_str()]);
        }
        f.ok(&args);
        assert!(meta.join("1.root.json").exists());
        f
    }
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn ids(ks: &[&Keyholder]) -> Vec<String> {
    let mut out: Vec<String> = ks.iter().map(|k| k.keyid.clone()).collect();
    out.sort();
    out
}

fn problems(status: &Value) -> String {
    strings(&status["problems"]).join("\n")
}

/// The role named `name` in a review.
fn review_role<'a>(review: &'a Value, name: &str) -> &'a Value {
    review["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == name)
        .unwrap_or_else(|| panic!("no role {name} in {review}"))
}

fn keyids_of(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyid"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The key ids that signed a metadata file.
fn signers(path: &Path) -> Vec<String> {
    let v = read_json(path);
    let mut out: Vec<String> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["sig"].as_str().is_some_and(|s| !s.is_empty()))
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn transcript(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("transcript.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `tufkey ARGS` with OpenSC's pkcs11-spy in front of SoftHSM (every module path
/// in ARGS is replaced) and returns (exit code, stderr + stdout, C_Login calls seen).
fn run_spied(hsm: &SoftHsm, args: &[&str]) -> (i32, String, usize) {
    let (code, out, err, logins) = run_through_spy(hsm, args);
    (code, format!("{err}{out}"), logins)
}

// ---- python-tuf ------------------------------------------------------------------

/// Root verification as python-tuf does it for a repository's root (v1 against itself).
const PY_ROOT_SELF: &str = r#"
import json, sys
from tuf.api.metadata import Metadata
root = Metadata.from_file(sys.argv[1])
root.verify_delegate("root", root)
res = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
print(json.dumps({"version": root.signed.version, "signed": sorted(res.signed), "threshold": root.signed.roles["root"].threshold}))
"#;

/// The ngclient's own root-update rule: trusted N, then N+1 (and a copy that must fail).
const PY_UPDATE_ROOT: &str = r#"
import json, sys
from tuf.api.exceptions import UnsignedMetadataError
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType
old, new, short = (open(p, "rb").read() for p in sys.argv[1:4])
refused = None
try:
    TrustedMetadataSet(old, EnvelopeType.METADATA).update_root(short)
except UnsignedMetadataError as e:
    refused = type(e).__name__
trusted = TrustedMetadataSet(old, EnvelopeType.METADATA)
root = trusted.update_root(new)
print(json.dumps({"version": root.version, "threshold": root.roles["root"].threshold, "short_refused": refused}))
"#;

/// A real ngclient.Updater over HTTP on 127.0.0.1 (a free port chosen by the OS),
/// bootstrapped with the old root: it must rotate to the new root and fetch a target.
const PY_UPDATER: &str = r#"
import http.server, json, os, sys, tempfile, threading
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1"
from tuf.ngclient import Updater
repo, bootstrap = sys.argv[1], sys.argv[2]

class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=repo, **kw)
    def log_message(self, *a):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % server.server_address[1]
cache, downloads = tempfile.mkdtemp(), tempfile.mkdtemp()
try:
    with open(bootstrap, "rb") as f:
        updater = Updater(metadata_dir=cache, metadata_base_url=base + "/metadata/",
                          target_dir=downloads, target_base_url=base + "/targets/", bootstrap=f.read())
    updater.refresh()
    info = updater.get_targetinfo("hello.txt")
    path = updater.download_target(info)
    with open(path, "rb") as f:
        content = f.read().decode()
    t = updater._trusted_set
    print(json.dumps({"root_version": t.root.version, "root_threshold": t.root.roles["root"].threshold,
                      "root_keys": sorted(t.root.roles["root"].keyids),
                      "snapshot_version": t.snapshot.version, "targets_version": t.targets.version,
                      "content": content, "cached_roots": sorted(os.listdir(os.path.join(cache, "root_history")))}))
finally:
    server.shutdown()
"#;

/// Delegations as python-tuf verifies them: root → targets, targets → team.
const PY_DELEGATIONS: &str = r#"
import json, sys
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata
root, targets, team, old_team = (Metadata.from_file(p) for p in sys.argv[1:5])
root.verify_delegate("targets", targets)
targets.verify_delegate("team", team)
role = targets.signed.delegations.roles["team"]
try:
    targets.verify_delegate("team", old_team)
    old = "verified"
except UnsignedMetadataError:
    old = "refused"
print(json.dumps({"team_keys": role.keyids, "paths": role.paths, "targets_version": targets.signed.version, "old": old}))
"#;

// ---- a root is born --------------------------------------------------------------

#[test]
fn a_three_of_five_root_with_mixed_key_types_is_reviewed_signed_by_three_and_finalized() {
    let f = Fixture::new(&["ecdsa-p256", "ed25519", "rsa-3072", "ecdsa-p256", "ed25519"]);
    let dir = f.path("ceremony");
    let meta = f.metadata();
    f.propose_v1(&dir, 3);
    let root_json = dir.join("root.json");

    // The review says exactly what will be signed: version, roles, every key with the
    // URI and token it was read from, and the payload hash.
    let review = f.json(&["ceremony", "review", p(&dir)]);
    assert_eq!(review["version_from"], Value::Null);
    assert_eq!(review["version_to"], 1);
    let root_role = review_role(&review, "root");
    assert_eq!(root_role["threshold_to"], 3);
    assert_eq!(
        keyids_of(&root_role["added"]),
        ids(&f.root.iter().collect::<Vec<_>>())
    );
    for k in &f.root {
        let shown = root_role["added"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["keyid"] == k.keyid.as_str())
            .unwrap();
        let source = shown["source"].as_str().unwrap();
        assert!(
            source.contains(&format!("token \"{}\"", k.label)) && source.contains("object=key"),
            "{source}"
        );
        assert_eq!(shown["keytype"], k.key["keytype"]);
        assert_eq!(shown["scheme"], k.key["scheme"]);
    }
    for (role, k) in [
        ("targets", &f.targets),
        ("snapshot", &f.snapshot),
        ("timestamp", &f.timestamp),
    ] {
        let r = review_role(&review, role);
        assert_eq!(r["threshold_to"], 1);
        assert_eq!(keyids_of(&r["added"]), vec![k.keyid.clone()]);
        assert!(r["added"][0]["source"]
            .as_str()
            .unwrap()
            .contains(&format!("token \"{role}\"")));
    }
    let payload = f.ok(&["payload", p(&root_json), "--sha256"]);
    assert_eq!(review["payload_sha256"].as_str().unwrap(), payload.trim());
    let text = f.ok(&["ceremony", "review", p(&dir)]);
    assert!(text.contains("New root, version 1"), "{text}");
    assert!(
        text.contains("Role root: threshold 3 of 5 key(s)"),
        "{text}"
    );
    let spaced: Vec<String> = payload
        .trim()
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(text.contains(&spaced.join(" ")), "{text}");

    // Two signatures (ECDSA, RSA): not ready, and finalize refuses and writes nothing.
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[2]);
    let st = f.status(&dir);
    assert_eq!(st["can_finalize"], false);
    assert_eq!(st["new_root"]["threshold"], 3);
    assert_eq!(
        strings(&st["new_root"]["signed"]),
        ids(&[&f.root[0], &f.root[2]])
    );
    assert!(
        problems(&st).contains("threshold is not met: 2 of 3"),
        "{st}"
    );
    assert!(f
        .ok(&["ceremony", "status", p(&dir)])
        .contains("not ready to finalize"));
    let before = snapshot(&dir);
    let (code, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("cannot finalize") && msg.contains("threshold is not met: 2 of 3"),
        "{msg}"
    );
    assert!(!meta.join("1.root.json").exists() && !meta.join("root.json").exists());
    assert_eq!(snapshot(&dir), before, "a refused finalize changes nothing");

    // The third (Ed25519) makes it ready.
    f.sign(&dir, &f.root[4]);
    let st = f.status(&dir);
    assert_eq!(st["can_finalize"], true, "{st}");
    assert_eq!(st["problems"], json!([]));
    assert_eq!(st["version"], 1);
    assert_eq!(
        strings(&st["new_root"]["signed"]),
        ids(&[&f.root[0], &f.root[2], &f.root[4]])
    );
    assert_eq!(
        strings(&st["new_root"]["missing"]),
        ids(&[&f.root[1], &f.root[3]])
    );
    let text = f.ok(&["ceremony", "status", p(&dir)]);
    assert!(
        text.contains("3 of 3 signature(s) — met") && text.contains("ready to finalize"),
        "{text}"
    );

    let fin = f.json(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    let v1 = std::fs::read(meta.join("1.root.json")).unwrap();
    assert_eq!(v1, std::fs::read(meta.join("root.json")).unwrap());
    assert_eq!(strings(&fin["files"]).len(), 2);
    assert_eq!(
        signers(&meta.join("1.root.json")),
        ids(&[&f.root[0], &f.root[2], &f.root[4]])
    );
    let v = f.json(&["verify", p(&meta.join("1.root.json"))]);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["version"], 1);
    let head = fin["transcript_head"].as_str().unwrap();
    let out = f.ok(&["ceremony", "verify", p(&dir), "--expect-head", head]);
    assert!(out.contains("chain intact"), "{out}");
    assert_eq!(transcript(&dir).last().unwrap()["action"], "finalize");

    let py: Value =
        serde_json::from_str(&python_tuf(PY_ROOT_SELF, &[p(&meta.join("1.root.json"))])).unwrap();
    assert_eq!(py["threshold"], 3);
    assert_eq!(
        strings(&py["signed"]),
        ids(&[&f.root[0], &f.root[2], &f.root[4]])
    );
}

// ---- rotation --------------------------------------------------------------------

#[test]
fn a_rotation_needs_three_old_and_four_new_signatures_and_python_tufs_updater_follows_it() {
    let f = Fixture::finalized_v1(
        &["ecdsa-p256", "ed25519", "rsa-3072", "ed25519", "ecdsa-p256"],
        3,
    );
    let meta = f.metadata();
    let new6 = keyholder(&f.hsm, "root-6", "ed25519");
    let new7 = keyholder(&f.hsm, "root-7", "ecdsa-p256");
    let dir = f.path("rotation");
    let out = f.ok(&[
        "ceremony",
        "init",
        p(&dir),
        "--trusted",
        p(&meta.join("1.root.json")),
        "--expires",
        "400d",
    ]);
    assert!(out.contains("version 2"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("trusted-root.json")).unwrap(),
        std::fs::read(meta.join("1.root.json")).unwrap()
    );
    f.ok(&[
        "ceremony",
        "remove-key",
        p(&dir),
        "--role",
        "root",
        "--key",
        &f.root[3].uri,
    ]);
    f.ok(&[
        "ceremony",
        "remove-key",
        p(&dir),
        "--role",
        "root",
        "--keyid",
        &f.root[4].keyid,
    ]);
    f.ok(&[
        "ceremony",
        "add-key",
        p(&dir),
        "--role",
        "root",
        "--key",
        &new6.uri,
    ]);
    f.ok(&[
        "ceremony",
        "add-key",
        p(&dir),
        "--role",
        "root",
        "--key",
        &new7.uri,
    ]);
    f.ok(&["ceremony", "threshold", p(&dir), "--role", "root", "4"]);

    let review = f.json(&["ceremony", "review", p(&dir)]);
    assert_eq!(
        (review["version_from"].clone(), review["version_to"].clone()),
        (json!(1), json!(2))
    );
    let r = review_role(&review, "root");
    assert_eq!(
        (r["threshold_from"].clone(), r["threshold_to"].clone()),
        (json!(3), json!(4))
    );
    assert_eq!(keyids_of(&r["added"]), ids(&[&new6, &new7]));
    assert_eq!(keyids_of(&r["removed"]), ids(&[&f.root[3], &f.root[4]]));
    assert_eq!(r["unchanged"], 3);
    let t = review_role(&review, "targets");
    assert_eq!(
        (t["added"].clone(), t["removed"].clone()),
        (json!([]), json!([]))
    );
    let text = f.ok(&["ceremony", "review", p(&dir)]);
    assert!(
        text.contains("Root version 1 → 2") && text.contains("threshold 3 → 4"),
        "{text}"
    );

    // Status shows both thresholds.
    let st = f.status(&dir);
    assert_eq!(st["new_root"]["threshold"], 4);
    assert_eq!(st["trusted_root"]["threshold"], 3);
    let text = f.ok(&["ceremony", "status", p(&dir)]);
    assert!(
        text.contains("new root's root keys: 0 of 4")
            && text.contains("trusted root's root keys: 0 of 3"),
        "{text}"
    );

    // New keys 6 and 7 and old-and-new key 1: neither threshold is met.
    let v2 = meta.join("2.root.json");
    let meta_before = snapshot(&meta);
    for k in [&new6, &new7, &f.root[0]] {
        f.sign(&dir, k);
    }
    let st = f.status(&dir);
    let pr = problems(&st);
    assert!(
        pr.contains("the new root's threshold is not met: 3 of 4")
            && pr.contains("the trusted root's threshold is not met: 1 of 3"),
        "{pr}"
    );
    let (_, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    assert!(msg.contains("3 of 4") && msg.contains("1 of 3"), "{msg}");
    // Key 2 meets the new root's 4, but only 2 of the old root's 3 have signed.
    f.sign(&dir, &f.root[1]);
    let (_, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    assert!(
        msg.contains("the trusted root's threshold is not met: 2 of 3")
            && !msg.contains("new root's threshold"),
        "{msg}"
    );
    assert!(!v2.exists());
    assert_eq!(
        snapshot(&meta),
        meta_before,
        "refused finalizes leave the repository alone"
    );

    // Key 4, removed from the new root, still signs for the old one: both met.
    f.sign(&dir, &f.root[3]);
    let st = f.status(&dir);
    assert_eq!(st["can_finalize"], true, "{st}");
    assert_eq!(
        strings(&st["new_root"]["signed"]),
        ids(&[&f.root[0], &f.root[1], &new6, &new7])
    );
    assert_eq!(
        strings(&st["trusted_root"]["signed"]),
        ids(&[&f.root[0], &f.root[1], &f.root[3]])
    );
    assert!(strings(&st["new_root"]["unrelated"]).contains(&f.root[3].keyid));
    f.ok(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    assert_eq!(
        std::fs::read(&v2).unwrap(),
        std::fs::read(meta.join("root.json")).unwrap()
    );
    assert_eq!(
        signers(&v2),
        ids(&[&f.root[0], &f.root[1], &f.root[3], &new6, &new7])
    );
    let v = f.json(&["verify", p(&v2), "--root", p(&meta.join("1.root.json"))]);
    assert_eq!(v["verified"], true, "{v}");
    f.ok(&["ceremony", "verify", p(&dir)]);

    // python-tuf's client rule: 1 → 2 succeeds; without key 4's signature it is refused.
    let mut short = read_json(&v2);
    short["signatures"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["keyid"] != f.root[3].keyid.as_str());
    let short_path = f.path("2.root.short.json");
    write_json(&short_path, &short);
    let py: Value = serde_json::from_str(&python_tuf(
        PY_UPDATE_ROOT,
        &[p(&meta.join("1.root.json")), p(&v2), p(&short_path)],
    ))
    .unwrap();
    assert_eq!(
        py,
        json!({"version": 2, "threshold": 4, "short_refused": "UnsignedMetadataError"})
    );

    // A whole repository: targets, snapshot and timestamp signed on their tokens, served
    // over loopback HTTP to ngclient's Updater, which trusts only 1.root.json.
    let content = b"hello from a rotated repository\n";
    let sha = hex::encode(Sha256::digest(content));
    let targets_dir = f.path("repo/targets");
    std::fs::create_dir_all(&targets_dir).unwrap();
    std::fs::write(targets_dir.join(format!("{sha}.hello.txt")), content).unwrap();
    let docs = [
        (
            "1.targets.json",
            &f.targets,
            json!({"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
                   "targets": {"hello.txt": {"length": content.len(), "hashes": {"sha256": sha}}}}),
        ),
        (
            "1.snapshot.json",
            &f.snapshot,
            json!({"_type": "snapshot", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
                   "meta": {"targets.json": {"version": 1}}}),
        ),
        (
            "timestamp.json",
            &f.timestamp,
            json!({"_type": "timestamp", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
                   "meta": {"snapshot.json": {"version": 1}}}),
        ),
    ];
    for (name, k, body) in docs {
        let path = meta.join(name);
        write_unsigned(&path, body);
        f.ok(&["sign", p(&path), "--key", &k.uri]);
        let v = f.json(&["verify", p(&path), "--root", p(&v2)]);
        assert_eq!(v["verified"], true, "{name}: {v}");
    }
    let py: Value = serde_json::from_str(&python_tuf(
        PY_UPDATER,
        &[p(&f.path("repo")), p(&meta.join("1.root.json"))],
    ))
    .unwrap();
    assert_eq!(py["root_version"], 2, "{py}");
    assert_eq!(py["root_threshold"], 4);
    assert_eq!(
        strings(&py["root_keys"]),
        ids(&[&f.root[0], &f.root[1], &f.root[2], &new6, &new7])
    );
    assert_eq!(
        (
            py["snapshot_version"].clone(),
            py["targets_version"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(py["content"], "hello from a rotated repository\n");
    assert_eq!(py["cached_roots"], json!(["1.root.json", "2.root.json"]));
}

#[test]
fn a_rotated_targets_key_signs_for_the_new_root_and_the_old_one_no_longer_counts() {
    let f = Fixture::finalized_v1(&["ed25519", "ecdsa-p256", "ed25519"], 2);
    let meta = f.metadata();
    let new_targets = keyholder(&f.hsm, "targets-2", "ecdsa-p256");
    let dir = f.path("rotate-targets");
    f.ok(&[
        "ceremony",
        "init",
        p(&dir),
        "--trusted",
        p(&meta.join("1.root.json")),
    ]);
    f.ok(&[
        "ceremony",
        "remove-key",
        p(&dir),
        "--role",
        "targets",
        "--key",
        &f.targets.uri,
    ]);
    f.ok(&[
        "ceremony",
        "add-key",
        p(&dir),
        "--role",
        "targets",
        "--key",
        &new_targets.uri,
    ]);
    let review = f.json(&["ceremony", "review", p(&dir)]);
    let t = review_role(&review, "targets");
    assert_eq!(keyids_of(&t["added"]), vec![new_targets.keyid.clone()]);
    assert_eq!(keyids_of(&t["removed"]), vec![f.targets.keyid.clone()]);
    assert!(t["added"][0]["source"]
        .as_str()
        .unwrap()
        .contains("token \"targets-2\""));
    let r = review_role(&review, "root");
    assert_eq!(
        (
            r["added"].clone(),
            r["removed"].clone(),
            r["unchanged"].clone()
        ),
        (json!([]), json!([]), json!(3))
    );
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[2]);
    assert_eq!(f.status(&dir)["can_finalize"], true);
    f.ok(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    let (v1, v2) = (meta.join("1.root.json"), meta.join("2.root.json"));
    assert_eq!(
        f.json(&["verify", p(&v2), "--root", p(&v1)])["verified"],
        true
    );
    let listed = read_json(&v2)["signed"]["roles"]["targets"]["keyids"].clone();
    assert_eq!(listed, json!([new_targets.keyid]));

    let body = json!({"_type": "targets", "spec_version": "1.0.31", "version": 2, "expires": next_year(), "targets": {}});
    let by_new = f.path("new/targets.json");
    let by_old = f.path("old/targets.json");
    for (path, k) in [(&by_new, &new_targets), (&by_old, &f.targets)] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_unsigned(path, body.clone());
        f.ok(&["sign", p(path), "--key", &k.uri]);
    }
    let check = |file: &Path, root: &Path| {
        let (code, out, err) = f.run(&["--json", "verify", p(file), "--root", p(root)]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
        (code, v)
    };
    let (code, v) = check(&by_new, &v2);
    assert_eq!((code, v["verified"].clone()), (0, json!(true)), "{v}");
    let (code, v) = check(&by_old, &v2);
    assert_eq!((code, v["verified"].clone()), (3, json!(false)), "{v}");
    assert!(
        v["problems"].to_string().contains("threshold not met"),
        "{v}"
    );
    assert_eq!(
        strings(&v["checks"][0]["unrelated"]),
        vec![f.targets.keyid.clone()]
    );
    // Against the old root it is the other way round.
    assert_eq!(check(&by_old, &v1).0, 0);
    assert_eq!(check(&by_new, &v1).0, 3);
}

// ---- delegations -----------------------------------------------------------------

#[test]
fn a_delegated_roles_key_is_rotated_and_only_the_new_keys_signature_counts() {
    let f = Fixture::finalized_v1(&["ed25519"], 1);
    let root = f.metadata().join("root.json");
    let team1 = keyholder(&f.hsm, "team-1", "ecdsa-p256");
    let team2 = keyholder(&f.hsm, "team-2", "ed25519");
    let d = f.path("delegation");
    std::fs::create_dir_all(&d).unwrap();
    let targets = d.join("targets.json");
    write_unsigned(
        &targets,
        json!({"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": next_year(), "targets": {}, "x-keep": "me"}),
    );
    f.ok(&["sign", p(&targets), "--key", &f.targets.uri]);

    let out = f.json(&[
        "delegation",
        "add",
        p(&targets),
        "--role",
        "team",
        "--delegate-key",
        &team1.uri,
        "--path",
        "team/*",
        "--key",
        &f.targets.uri,
        "--delegator",
        p(&root),
    ]);
    assert_eq!(
        (out["version"].clone(), out["threshold_met"].clone()),
        (json!(2), json!(true)),
        "{out}"
    );
    let t = read_json(&targets);
    assert_eq!(t["signed"]["version"], 2);
    assert_eq!(t["signed"]["x-keep"], "me");
    let role = &t["signed"]["delegations"]["roles"][0];
    assert_eq!(role["name"], "team");
    assert_eq!(role["keyids"], json!([team1.keyid]));
    assert_eq!(role["paths"], json!(["team/*"]));
    assert_eq!(role["threshold"], 1);
    assert_eq!(t["signed"]["delegations"]["keys"][&team1.keyid], team1.key);
    assert_eq!(signers(&targets), vec![f.targets.keyid.clone()]);
    assert_eq!(
        f.json(&["verify", p(&targets), "--root", p(&root)])["verified"],
        true
    );

    // The team signs its own targets file.
    let team = d.join("team.json");
    write_unsigned(
        &team,
        json!({"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
               "targets": {"team/app.tar.gz": {"length": 3, "hashes": {"sha256": hex::encode(Sha256::digest(b"app"))}}}}),
    );
    f.ok(&["sign", p(&team), "--key", &team1.uri]);
    assert_eq!(
        f.json(&["verify", p(&team), "--delegator", p(&targets)])["verified"],
        true
    );
    let old_team = f.path("old/team.json");
    std::fs::create_dir_all(old_team.parent().unwrap()).unwrap();
    std::fs::copy(&team, &old_team).unwrap();

    // Rotate: team-1 out (by URI), team-2 in (by its public key file).
    let pubkey = d.join("team-2.pub.json");
    write_json(&pubkey, &team2.key);
    let out = f.json(&[
        "delegation",
        "rotate",
        p(&targets),
        "--role",
        "team",
        "--remove",
        &team1.uri,
        "--add",
        p(&pubkey),
        "--key",
        &f.targets.uri,
        "--delegator",
        p(&root),
    ]);
    assert_eq!(
        (out["version"].clone(), out["threshold_met"].clone()),
        (json!(3), json!(true)),
        "{out}"
    );
    let t = read_json(&targets);
    assert_eq!(
        t["signed"]["delegations"]["roles"][0]["keyids"],
        json!([team2.keyid])
    );
    assert_eq!(
        t["signed"]["delegations"]["keys"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![&team2.keyid],
        "the old key is gone from the keys too"
    );
    assert_eq!(
        f.json(&["verify", p(&targets), "--root", p(&root)])["verified"],
        true
    );

    // The old signature no longer counts; the new key's does.
    let (code, out, _) = f.run(&["verify", p(&team), "--delegator", p(&targets)]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("NOT VERIFIED") && out.contains("threshold not met"),
        "{out}"
    );
    f.ok(&["sign", p(&team), "--key", &team2.uri]);
    let v = f.json(&["verify", p(&team), "--delegator", p(&targets)]);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(
        strings(&v["checks"][0]["signed"]),
        vec![team2.keyid.clone()]
    );
    assert_eq!(
        strings(&v["checks"][0]["unrelated"]),
        vec![team1.keyid.clone()]
    );
    let (code, _, _) = f.run(&["verify", p(&old_team), "--delegator", p(&targets)]);
    assert_eq!(code, 3, "a team file signed only by the rotated-out key");

    let py: Value = serde_json::from_str(&python_tuf(
        PY_DELEGATIONS,
        &[p(&root), p(&targets), p(&team), p(&old_team)],
    ))
    .unwrap();
    assert_eq!(
        py,
        json!({"team_keys": [team2.keyid], "paths": ["team/*"], "targets_version": 3, "old": "refused"})
    );
}

// ---- what must be refused --------------------------------------------------------

#[test]
fn a_key_in_neither_root_is_refused_before_any_pin_is_used() {
    let f = Fixture::finalized_v1(&["ed25519", "ecdsa-p256"], 1);
    let newcomer = keyholder(&f.hsm, "newcomer", "ed25519");
    let outsider = keyholder(&f.hsm, "outsider", "ecdsa-p256");
    let dir = f.path("rotation");
    f.ok(&[
        "ceremony",
        "init",
        p(&dir),
        "--trusted",
        p(&f.metadata().join("1.root.json")),
    ]);
    f.ok(&[
        "ceremony",
        "remove-key",
        p(&dir),
        "--role",
        "root",
        "--key",
        &f.root[1].uri,
    ]);
    f.ok(&[
        "ceremony",
        "add-key",
        p(&dir),
        "--role",
        "root",
        "--key",
        &newcomer.uri,
    ]);

    // A wrong PIN in the URI: had tufkey logged in, it would have spent a try on it.
    let wrong_pin = std::fs::canonicalize(f.hsm.dir.path())
        .unwrap()
        .join("wrong.pin");
    std::fs::write(&wrong_pin, "0000-wrong").unwrap();
    let before = snapshot(&dir);
    for (k, who) in [(&outsider, "a stranger"), (&f.targets, "a targets key")] {
        let uri = k.uri.replace(
            &format!("pin-source=file:{}", k.token.pin_file.display()),
            &format!("pin-source=file:{}", wrong_pin.display()),
        );
        assert_ne!(uri, k.uri);
        let (code, msg, logins) = run_spied(
            &f.hsm,
            &["ceremony", "sign", p(&dir), "--key", &uri, "--yes"],
        );
        assert_eq!(code, 1, "{who}: {msg}");
        assert!(
            msg.contains(&k.keyid)
                && msg.contains("is not a root key of the trusted root or of the new root"),
            "{who}: {msg}"
        );
        assert_eq!(
            logins, 0,
            "{who}: no PIN may be tried for a key that cannot sign: {msg}"
        );
        assert!(!msg.contains("PIN"), "{who}: {msg}");
        assert_eq!(snapshot(&dir), before, "{who}");
    }
    // Keys of either root are welcome: one only in the old root, one only in the new.
    let (code, msg, logins) = run_spied(
        &f.hsm,
        &[
            "ceremony",
            "sign",
            p(&dir),
            "--key",
            &f.root[1].uri,
            "--yes",
        ],
    );
    assert_eq!((code, logins), (0, 1), "{msg}");
    f.sign(&dir, &newcomer);
    let st = f.status(&dir);
    assert_eq!(
        strings(&st["trusted_root"]["signed"]),
        vec![f.root[1].keyid.clone()]
    );
    assert_eq!(
        strings(&st["new_root"]["signed"]),
        vec![newcomer.keyid.clone()]
    );
}

#[test]
fn a_tampered_transcript_fails_verify_and_blocks_finalize() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 2);
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[1]);
    let head = f.status(&dir)["transcript_head"]
        .as_str()
        .unwrap()
        .to_string();
    f.ok(&["ceremony", "verify", p(&dir), "--expect-head", &head]);
    let path = dir.join("transcript.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    // init, 2 root keys, threshold, 3 online keys, 2 signatures.
    assert_eq!(lines.len(), 9);
    assert!(lines[3].contains("\"action\":\"threshold\"") && lines[3].contains("\"to\":2"));
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut reordered = lines.clone();
    reordered.swap(5, 6);
    let cases = [
        (
            "a middle line edited (the threshold lowered in the record)",
            original.replacen(lines[3], &lines[3].replace("\"to\":2", "\"to\":1"), 1),
            "transcript.jsonl line 5",
        ),
        (
            "a middle line removed",
            join(&[&lines[..4], &lines[5..]].concat()),
            "transcript.jsonl line 5",
        ),
        (
            "two lines swapped",
            join(&reordered),
            "transcript.jsonl line 6",
        ),
        (
            "the last line removed",
            join(&lines[..8]),
            "is not in the transcript",
        ),
    ];
    for (what, text, says) in cases {
        std::fs::write(&path, &text).unwrap();
        let before = snapshot(&dir);
        let (code, msg) = f.fails(&["ceremony", "verify", p(&dir)]);
        assert!(code == 1 || code == 3, "{what}: {code}");
        assert!(msg.contains(says), "{what}: {msg}");
        let (_, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
        assert!(msg.contains(says), "{what}: finalize said {msg}");
        assert!(!repo.join("1.root.json").exists(), "{what}");
        assert_eq!(snapshot(&dir), before, "{what}");
        std::fs::write(&path, &original).unwrap();
        f.ok(&["ceremony", "verify", p(&dir)]);
    }

    // The last line has no successor to betray an edit; the head noted earlier does.
    let last: Value = serde_json::from_str(lines[8]).unwrap();
    assert_eq!(last["action"], "sign");
    let actor = format!("\"actor\":\"{}\"", last["actor"].as_str().unwrap());
    assert!(lines[8].contains(&actor));
    let forged = lines[8].replacen(&actor, "\"actor\":\"mallory@elsewhere\"", 1);
    let edited = join(&[&lines[..8], &[forged.as_str()][..]].concat());
    assert_ne!(edited, original);
    std::fs::write(&path, &edited).unwrap();
    let (code, msg) = f.fails(&["ceremony", "verify", p(&dir), "--expect-head", &head]);
    assert_eq!(code, 3);
    assert!(msg.contains("the transcript changed since"), "{msg}");
}

#[test]
fn a_root_edited_by_hand_after_signing_fails_verify_and_finalize() {
    let f = Fixture::new(&["ed25519", "rsa-3072"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 2);
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[1]);
    assert_eq!(f.status(&dir)["can_finalize"], true);
    let root_json = dir.join("root.json");
    let mut v = read_json(&root_json);
    v["signed"]["expires"] = json!("2099-01-01T00:00:00Z");
    write_json(&root_json, &v);

    let before = snapshot(&dir);
    let (code, msg) = f.fails(&["ceremony", "verify", p(&dir)]);
    assert_eq!(code, 3);
    assert!(
        msg.contains("root.json was changed outside tufkey"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "the signature by {} does not verify",
            f.root[0].keyid
        )),
        "{msg}"
    );
    let (code, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("changed outside tufkey") && msg.contains("threshold is not met: 0 of 2"),
        "{msg}"
    );
    assert!(!repo.exists());
    assert_eq!(snapshot(&dir), before);
    assert_eq!(f.status(&dir)["can_finalize"], false);
}

#[test]

fn a_root_edited_by_hand_is_not_laundered_by_the_next_signature_or_edit() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256"]);
    let proposed = f.path("proposed");
    f.propose_v1(&proposed, 2);
    // Someone with the USB stick lowers the root threshold from 2 to 1 by hand…
    let lower_threshold = |dir: &Path| {
        let root_json = dir.join("root.json");
        let mut v = read_json(&root_json);
        v["signed"]["roles"]["root"]["threshold"] = json!(1);
        write_json(&root_json, &v);
        assert_eq!(f.fails(&["ceremony", "verify", p(dir)]).0, 3);
    };
    // …then the next keyholder signs, or someone makes an ordinary edit: either way the
    // hand edit must not become part of the record, and must never be finalized.
    let next_steps: [(&str, Vec<&str>); 2] = [
        (
            "a signature",
            vec!["ceremony", "sign", "DIR", "--key", &f.root[1].uri, "--yes"],
        ),
        ("an edit", vec!["ceremony", "expires", "DIR", "200d"]),
    ];
    for (what, step) in next_steps {
        let dir = f.path(&format!("after {what}"));
        copy_dir(&proposed, &dir);
        lower_threshold(&dir);
        let step: Vec<&str> = step
            .iter()
            .map(|a| if *a == "DIR" { p(&dir) } else { a })
            .collect();
        let (code, _, _) = f.run(&step);
        if code == 0 && what == "an edit" {
            f.sign(&dir, &f.root[1]);
        }
        let (vcode, vout, _) = f.run(&["ceremony", "verify", p(&dir)]);
        assert!(
            code != 0 || vcode != 0,
            "after {what}, `ceremony verify` passes over a hand-edited root:\n{vout}"
        );
        let repo = f.path(&format!("repo after {what}"));
        let (fcode, fout, ferr) = f.run(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
        assert_ne!(
            fcode, 0,
            "after {what}, finalize wrote a 1-of-2 root signed once: {fout}{ferr}"
        );
    }
}

#[test]
fn merging_a_different_ceremony_is_refused_and_changes_nothing() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256"]);
    let (ours, theirs) = (f.path("ours"), f.path("theirs"));
    f.propose_v1(&ours, 2);
    f.propose_v1(&theirs, 1);
    f.sign(&ours, &f.root[0]);
    f.sign(&theirs, &f.root[1]);
    let before = snapshot(&ours);
    let (code, msg) = f.fails(&["ceremony", "merge", p(&ours), p(&theirs)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("different ceremony") && msg.contains(p(&theirs)),
        "{msg}"
    );
    assert_eq!(snapshot(&ours), before);
}

#[test]
fn a_version_jump_is_refused_at_finalize() {
    let f = Fixture::finalized_v1(&["ed25519"], 1);
    let meta = f.metadata();
    let dir = f.path("rotation");
    f.ok(&[
        "ceremony",
        "init",
        p(&dir),
        "--trusted",
        p(&meta.join("1.root.json")),
    ]);
    f.sign(&dir, &f.root[0]);
    let root_json = dir.join("root.json");
    let mut v = read_json(&root_json);
    assert_eq!(v["signed"]["version"], 2);
    v["signed"]["version"] = json!(3);
    write_json(&root_json, &v);
    let before = snapshot(&meta);
    let (code, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&meta)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("the new root has version 3; it must be exactly 2"),
        "{msg}"
    );
    assert_eq!(snapshot(&meta), before);
    assert!(!meta.join("3.root.json").exists() && !meta.join("2.root.json").exists());
    let (code, msg) = f.fails(&["ceremony", "verify", p(&dir)]);
    assert_eq!(code, 3, "{msg}");
}

#[test]
fn an_expired_root_is_refused_until_a_later_expiry_is_set_and_signed_again() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 2);
    f.ok(&["ceremony", "expires", p(&dir), "2020-01-01"]);
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[1]);
    let st = f.status(&dir);
    assert_eq!(st["can_finalize"], false);
    assert!(
        problems(&st).contains("expires at 2020-01-01T00:00:00Z, which is in the past"),
        "{st}"
    );
    let (code, msg) = f.fails(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("in the past") && msg.contains("ceremony expires"),
        "{msg}"
    );
    assert!(!repo.exists());

    // A new expiry is a new payload: the two signatures are dropped, and the expiry's own
    // transcript entry says so (one entry per change).
    let before = transcript(&dir).len();
    f.ok(&["ceremony", "expires", p(&dir), "90d"]);
    let t = transcript(&dir);
    assert_eq!(t.len(), before + 1, "one entry for the change");
    let change = &t[t.len() - 1];
    assert_eq!(change["action"], "expires");
    assert_eq!(
        strings(&change["details"]["signatures_dropped"]),
        ids(&[&f.root[0], &f.root[1]])
    );
    assert_eq!(f.status(&dir)["new_root"]["signed"], json!([]));
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[1]);
    f.ok(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
    assert_eq!(
        f.json(&["verify", p(&repo.join("1.root.json"))])["verified"],
        true
    );
}

// ---- several keyholders, several machines ----------------------------------------

#[test]
fn two_keyholders_signing_at_the_same_moment_both_get_recorded() {
    // Each keyholder brings their own device: a SoftHSM folder of their own, so the two
    // processes share nothing but the ceremony folder. (SoftHSM's file store is not
    // meant for two processes at once: with one shared token folder, C_GetTokenInfo
    // now and then fails with CKR_GENERAL_ERROR.)
    let devices: Vec<(SoftHsm, Keyholder)> = ["ed25519", "ecdsa-p256", "ed25519", "ecdsa-p256"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let hsm = SoftHsm::new();
            let k = keyholder(&hsm, &format!("root-{}", i + 1), t);
            (hsm, k)
        })
        .collect();
    let online = SoftHsm::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ceremony");
    ok(Some(&online), &["ceremony", "init", p(&dir)]);
    for (hsm, k) in &devices {
        ok(
            Some(hsm),
            &[
                "ceremony",
                "add-key",
                p(&dir),
                "--role",
                "root",
                "--key",
                &k.uri,
            ],
        );
    }
    ok(
        Some(&online),
        &["ceremony", "threshold", p(&dir), "--role", "root", "2"],
    );
    for role in ["targets", "snapshot", "timestamp"] {
        let k = keyholder(&online, role, "ed25519");
        ok(
            Some(&online),
            &[
                "ceremony",
                "add-key",
                p(&dir),
                "--role",
                role,
                "--key",
                &k.uri,
            ],
        );
    }
    let status = || -> Value {
        serde_json::from_str(&ok(None, &["--json", "ceremony", "status", p(&dir)])).unwrap()
    };
    let rounds = [
        (0, 1),
        (2, 3),
        (0, 2),
        (1, 3),
        (0, 3),
        (1, 2),
        (1, 0),
        (3, 2),
    ];
    for (round, (a, b)) in rounds.into_iter().enumerate() {
        if round > 0 {
            // A fresh payload each round: earlier signatures are dropped.
            ok(
                None,
                &["ceremony", "expires", p(&dir), &format!("{}d", 100 + round)],
            );
            assert_eq!(status()["new_root"]["signed"], json!([]));
        }
        let children: Vec<_> = [a, b]
            .iter()
            .map(|&i| {
                let (hsm, k) = &devices[i];
                let mut c = tufkey(Some(hsm));
                c.args(["ceremony", "sign", p(&dir), "--key", &k.uri, "--yes"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let both = ids(&[&devices[a].1, &devices[b].1]);
        let st = status();
        assert_eq!(
            strings(&st["new_root"]["signed"]),
            both,
            "round {round}: a signature was lost"
        );
        assert_eq!(st["can_finalize"], true, "round {round}: {st}");
        assert_eq!(signers(&dir.join("root.json")), both);
        let out = ok(None, &["ceremony", "verify", p(&dir)]);
        assert!(out.contains("chain intact"), "round {round}: {out}");
    }
    let signs = transcript(&dir)
        .iter()
        .filter(|e| e["action"] == "sign")
        .count();
    assert_eq!(signs, 2 * rounds.len());
}

#[test]
fn signing_again_with_the_same_key_replaces_its_signature() {
    let f = Fixture::new(&["ecdsa-p256", "ed25519"]);
    let dir = f.path("ceremony");
    f.propose_v1(&dir, 2);
    f.sign(&dir, &f.root[0]);
    f.sign(&dir, &f.root[1]);
    let first = read_json(&dir.join("root.json"))["signatures"].clone();
    f.sign(&dir, &f.root[0]);
    let root = read_json(&dir.join("root.json"));
    let sigs = root["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2, "{root}");
    let mine: Vec<&Value> = sigs
        .iter()
        .filter(|s| s["keyid"] == f.root[0].keyid.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    // ECDSA signatures differ each time: the newest is the one kept, and it is the one recorded.
    assert_ne!(first.to_string(), root["signatures"].to_string());
    let last = transcript(&dir).last().unwrap().clone();
    assert_eq!(
        (last["action"].clone(), last["details"]["sig"].clone()),
        (json!("sign"), mine[0]["sig"].clone())
    );
    let st = f.status(&dir);
    assert_eq!(
        strings(&st["new_root"]["signed"]),
        ids(&[&f.root[0], &f.root[1]])
    );
    f.ok(&["ceremony", "verify", p(&dir)]);
}

#[test]
fn merge_takes_the_signatures_made_on_a_copy_elsewhere() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256", "rsa-3072"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 3);
    let copy = f.path("usb-stick");
    copy_dir(&dir, &copy);
    f.sign(&dir, &f.root[0]);
    f.sign(&copy, &f.root[1]);
    f.sign(&copy, &f.root[2]);
    let out = f.json(&["ceremony", "merge", p(&dir), p(&copy)]);
    assert_eq!(strings(&out["merged"]), ids(&[&f.root[1], &f.root[2]]));
    assert_eq!(
        signers(&dir.join("root.json")),
        ids(&[&f.root[0], &f.root[1], &f.root[2]])
    );
    let last = transcript(&dir).last().unwrap().clone();
    assert_eq!(last["action"], "merge");
    f.ok(&["ceremony", "verify", p(&dir)]);
    // Merging again finds nothing new and records nothing.
    let before = snapshot(&dir);
    let out = f.ok(&["ceremony", "merge", p(&dir), p(&copy)]);
    assert!(out.contains("has no valid signatures that"), "{out}");
    assert_eq!(snapshot(&dir), before);
    assert_eq!(f.status(&dir)["can_finalize"], true);
    f.ok(&["ceremony", "finalize", p(&dir), "--out", p(&repo)]);
    assert_eq!(
        f.json(&["verify", p(&repo.join("1.root.json"))])["verified"],
        true
    );
}

#[test]
fn ceremony_run_signs_with_the_keys_given_until_the_thresholds_are_met_and_finalizes() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256", "ed25519", "ecdsa-p256"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 3);

    // Without a terminal, signing needs --yes, and `run` needs its keys named.
    let before = snapshot(&dir);
    let (_, msg) = f.fails(&["ceremony", "sign", p(&dir), "--key", &f.root[0].uri]);
    assert!(
        msg.contains("no terminal to confirm on") && msg.contains("--yes"),
        "{msg}"
    );
    let (_, msg) = f.fails(&["ceremony", "run", p(&dir), "--out", p(&repo), "--yes"]);
    assert!(msg.contains("--key"), "{msg}");
    assert_eq!(snapshot(&dir), before);

    let out = f.ok(&[
        "ceremony",
        "run",
        p(&dir),
        "--key",
        &f.root[0].uri,
        "--key",
        &f.root[1].uri,
        "--key",
        &f.root[2].uri,
        "--key",
        &f.root[3].uri,
        "--out",
        p(&repo),
        "--yes",
    ]);
    assert!(
        out.contains(&format!("wrote {}", p(&repo.join("1.root.json")))),
        "{out}"
    );
    assert!(out.contains("transcript head"), "{out}");
    // Three signatures meet the threshold; the fourth keyholder is not asked.
    assert_eq!(
        signers(&repo.join("1.root.json")),
        ids(&[&f.root[0], &f.root[1], &f.root[2]])
    );
    assert_eq!(
        std::fs::read(repo.join("1.root.json")).unwrap(),
        std::fs::read(repo.join("root.json")).unwrap()
    );
    assert_eq!(
        f.json(&["verify", p(&repo.join("root.json"))])["verified"],
        true
    );
    f.ok(&["ceremony", "verify", p(&dir)]);
}

#[test]
fn ceremony_run_stops_when_the_keys_given_do_not_meet_the_thresholds() {
    let f = Fixture::new(&["ed25519", "ecdsa-p256", "ed25519"]);
    let dir = f.path("ceremony");
    let repo = f.path("repo");
    f.propose_v1(&dir, 3);
    let (code, msg) = f.fails(&[
        "ceremony",
        "run",
        p(&dir),
        "--key",
        &f.root[0].uri,
        "--key",
        &f.root[1].uri,
        "--out",
        p(&repo),
        "--yes",
    ]);
    assert_eq!(code, 1);
    assert!(msg.contains("did not meet the thresholds"), "{msg}");
    assert!(!repo.exists());
    // The signatures made so far stay in the folder for the next session.
    assert_eq!(
        signers(&dir.join("root.json")),
        ids(&[&f.root[0], &f.root[1]])
    );
    f.ok(&["ceremony", "verify", p(&dir)]);
}
