//! Repository test support for hsm-tests/repo.rs: keyholders on throwaway SoftHSM
//! tokens, roots made by a ceremony or by hand (signed with `tufkey sign`), and a real
//! python-tuf `ngclient.Updater` over loopback HTTP that refreshes and downloads targets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{
    fails, generate, ok, p, python_tuf, run, sign_with, tufkey, write_unsigned, SoftHsm, Token,
};

/// One key on its own token.
pub struct Holder {
    pub token: Token,
    pub uri: String,
    pub keyid: String,
    pub key: Value,
}

/// Keys of a repository on SoftHSM tokens, and a work folder.
pub struct Keys {
    pub hsm: SoftHsm,
    pub root: Vec<Holder>,
    pub targets: Holder,
    pub snapshot: Holder,
    pub timestamp: Holder,
    pub work: tempfile::TempDir,
}

impl Keys {
    /// `roots` root keys, and one key each for targets (Ed25519), snapshot and timestamp (P-256).
    pub fn new(roots: usize) -> Keys {
        let hsm = SoftHsm::new();
        let root = (0..roots)
            .map(|i| holder(&hsm, &format!("root-{}", i + 1), "ed25519"))
            .collect();
        Keys {
            targets: holder(&hsm, "targets", "ed25519"),
            snapshot: holder(&hsm, "snapshot", "ecdsa-p256"),
            timestamp: holder(&hsm, "timestamp", "ecdsa-p256"),
            root,
            work: tempfile::tempdir().unwrap(),
            hsm,
        }
    }

    /// Another key on its own token (for rotations and delegated roles).
    pub fn extra(&self, label: &str, key_type: &str) -> Holder {
        holder(&self.hsm, label, key_type)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(Some(&self.hsm), args)
    }

    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        fails(Some(&self.hsm), args)
    }

    /// (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = tufkey(Some(&self.hsm));
        c.args(args);
        run(c)
    }

    /// `tufkey --json ARGS`, which must succeed, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// A root version 1 from a real ceremony (`ceremony init/add-key/threshold/run`),
    /// every root key signing; returns the finalized `1.root.json`.
    pub fn ceremony_root(&self, threshold: u64) -> PathBuf {
        self.ceremony_root_with(threshold, &self.targets.uri)
    }

    /// As [`Keys::ceremony_root`], with the targets key named by `targets_uri` (a
    /// YubiKey, say: `ceremony add-key` reads only its public half).
    pub fn ceremony_root_with(&self, threshold: u64, targets_uri: &str) -> PathBuf {
        let dir = self.path("ceremony");
        let out = self.path("roots");
        self.ok(&["ceremony", "init", p(&dir)]);
        for k in &self.root {
            self.ok(&[
                "ceremony",
                "add-key",
                p(&dir),
                "--role",
                "root",
                "--key",
                &k.uri,
            ]);
        }
        self.ok(&[
            "ceremony",
            "threshold",
            p(&dir),
            "--role",
            "root",
            &threshold.to_string(),
        ]);
        for (role, uri) in [
            ("targets", targets_uri),
            ("snapshot", self.snapshot.uri.as_str()),
            ("timestamp", self.timestamp.uri.as_str()),
        ] {
            self.ok(&["ceremony", "add-key", p(&dir), "--role", role, "--key", uri]);
        }
        let mut args = vec!["ceremony", "run", p(&dir), "--out", p(&out), "--yes"];
        for k in &self.root {
            args.extend(["--key", k.uri.as_str()]);
        }
        self.ok(&args);
        out.join("1.root.json")
    }

    /// A root written by hand and signed by every root key with `tufkey sign`: all root
    /// keys with threshold 1, `targets` as given, this fixture's snapshot and timestamp.
    pub fn hand_root(
        &self,
        version: u64,
        consistent: bool,
        targets: &[&Holder],
        file: &str,
    ) -> PathBuf {
        let mut keys = serde_json::Map::new();
        let all: Vec<&Holder> = self
            .root
            .iter()
            .chain(targets.iter().copied())
            .chain([&self.snapshot, &self.timestamp])
            .collect();
        for k in all {
            keys.insert(k.keyid.clone(), k.key.clone());
        }
        let ids = |hs: &[&Holder]| hs.iter().map(|h| h.keyid.clone()).collect::<Vec<_>>();
        let roots: Vec<&Holder> = self.root.iter().collect();
        let signed = json!({
            "_type": "root", "spec_version": "1.0.31", "version": version,
            "expires": super::next_year(), "consistent_snapshot": consistent, "keys": keys,
            "roles": {
                "root": {"keyids": ids(&roots), "threshold": 1},
                "targets": {"keyids": ids(targets), "threshold": 1},
                "snapshot": {"keyids": [self.snapshot.keyid], "threshold": 1},
                "timestamp": {"keyids": [self.timestamp.keyid], "threshold": 1},
            },
        });
        let path = self.path(file);
        write_unsigned(&path, signed);
        let uris: Vec<&str> = self.root.iter().map(|h| h.uri.as_str()).collect();
        sign_with(Some(&self.hsm), &path, &uris);
        path
    }

    /// `--key ROLE=URI` arguments for targets, snapshot and timestamp.
    pub fn commit_keys(&self) -> Vec<String> {
        let mut keys = vec!["--key".into(), format!("targets={}", self.targets.uri)];
        keys.extend(self.online_keys());
        keys
    }

    /// `--key ROLE=URI` arguments for the online roles, snapshot and timestamp (what
    /// `repo refresh` needs).
    pub fn online_keys(&self) -> Vec<String> {
        vec![
            "--key".into(),
            format!("snapshot={}", self.snapshot.uri),
            "--key".into(),
            format!("timestamp={}", self.timestamp.uri),
        ]
    }

    /// `tufkey repo commit DIR` with [`Keys::commit_keys`] and `more`.
    pub fn commit(&self, dir: &Path, more: &[&str]) -> String {
        let keys = self.commit_keys();
        let mut args = vec!["repo", "commit", p(dir)];
        args.extend(keys.iter().map(String::as_str));
        args.extend_from_slice(more);
        self.ok(&args)
    }
}

impl Holder {
    /// This key's URI without a PIN source: signing with it would have to ask.
    pub fn token_uri_for_key(&self) -> String {
        self.uri
            .split("&pin-source=")
            .next()
            .unwrap_or(&self.uri)
            .to_string()
    }
}

fn holder(hsm: &SoftHsm, label: &str, key_type: &str) -> Holder {
    let token = hsm.token(label, &format!("pin-{label}"));
    let (uri, keyid, key) = generate(Some(hsm), &token.uri("key"), key_type, &[]);
    Holder {
        token,
        uri,
        keyid,
        key,
    }
}

/// python-tuf's ngclient over HTTP on 127.0.0.1 (an OS-chosen port), serving the
/// repository folder: bootstrap with `root`, refresh, then look up and download each
/// target (hashes and length checked by the client). Prints versions and contents.
const PY_NGCLIENT: &str = r#"
import http.server, json, os, sys, tempfile, threading
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1"
from tuf.ngclient import Updater
repo, bootstrap, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]

class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=repo, **kw)
    def log_message(self, *a):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % server.server_address[1]
cache, downloads = tempfile.mkdtemp(), tempfile.mkdtemp()
out = {}
try:
    with open(bootstrap, "rb") as f:
        updater = Updater(metadata_dir=cache, metadata_base_url=base + "/metadata/",
                          target_dir=downloads, target_base_url=base + "/targets/", bootstrap=f.read())
    try:
        updater.refresh()
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
        print(json.dumps(out))
        sys.exit(0)
    found = {}
    for name in wanted:
        info = updater.get_targetinfo(name)
        if info is None:
            found[name] = None
            continue
        path = updater.download_target(info, filepath=os.path.join(downloads, str(len(found))))
        with open(path, "rb") as f:
            found[name] = f.read().decode()
    t = updater._trusted_set
    out.update({"root_version": t.root.version, "timestamp_version": t.timestamp.version,
                "snapshot_version": t.snapshot.version, "targets_version": t.targets.version,
                "found": found})
    print(json.dumps(out))
finally:
    server.shutdown()
"#;

/// Runs [`PY_NGCLIENT`]: `{"root_version", "timestamp_version", "snapshot_version",
/// "targets_version", "found": {path: content or null}}`, or `{"error": "…"}` when the
/// client refuses the repository.
pub fn ngclient(repo: &Path, bootstrap_root: &Path, targets: &[&str]) -> Value {
    let mut args = vec![p(repo), p(bootstrap_root)];
    args.extend_from_slice(targets);
    let out = python_tuf(PY_NGCLIENT, &args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("ngclient output ({e}): {out}"))
}

/// [`ngclient`], requiring a successful refresh; `tufkey repo verify` from the same
/// trusted root must agree.
pub fn ngclient_ok(repo: &Path, bootstrap_root: &Path, targets: &[&str]) -> Value {
    let v = ngclient(repo, bootstrap_root, targets);
    assert!(
        v.get("error").is_none(),
        "ngclient refused the repository: {v}"
    );
    assert_repo_verify(repo, bootstrap_root, 0);
    v
}

/// `tufkey repo verify DIR --trusted-root ROOT` exits with `code` (0: verifies, 3: not).
pub fn assert_repo_verify(repo: &Path, trusted_root: &Path, code: i32) {
    let mut c = tufkey(None);
    c.args(["repo", "verify", p(repo), "--trusted-root", p(trusted_root)]);
    let (got, out, err) = run(c);
    assert_eq!(
        got,
        code,
        "tufkey repo verify {}:\n{out}{err}",
        repo.display()
    );
}

/// Asserts that every file below `dir` has the bytes it had in `before`, naming the
/// files that were added, removed or changed (never dumping their bytes).
pub fn assert_unchanged(
    before: &std::collections::BTreeMap<PathBuf, Vec<u8>>,
    dir: &Path,
    what: &str,
) {
    let after = super::snapshot(dir);
    let mut diff = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diff.push(format!("removed {}", p.display())),
            Some(a) if a != b => diff.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("added {}", p.display()));
    }
    assert!(diff.is_empty(), "{what} changed the repository: {diff:?}");
}

/// A running `tufkey serve` holding this fixture's snapshot and timestamp keys, with a
/// client certificate allowed to sign those roles for repository `acme`.
pub struct Signer {
    pub daemon: super::daemon::Daemon,
    pub dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Signer {
    pub fn start(k: &Keys) -> Signer {
        use super::daemon::{client_policy, daemon_folder, signer_toml, Daemon};
        let (dir, ca) = daemon_folder("tufkey-repo-serve-");
        let config = dir.path().join("signer.toml");
        let policy = client_policy(
            "ci-publisher",
            &[&k.snapshot.keyid, &k.timestamp.keyid],
            &["acme"],
            &["snapshot", "timestamp"],
            "400d",
            "",
        );
        let toml = signer_toml(
            "state = \"state.json\"\naudit = \"audit.jsonl\"",
            "",
            &[&k.snapshot.uri, &k.timestamp.uri],
            &[policy],
        );
        std::fs::write(&config, toml).unwrap();
        let daemon = Daemon::start(dir.path(), "serve", &k.hsm, &config);
        let (cert, key) = ca.issue(dir.path(), "ci", "ci-publisher", false, false);
        Signer {
            daemon,
            dir,
            cert,
            key,
        }
    }

    /// `https://…/keys/<keyid>`.
    pub fn key_uri(&self, keyid: &str) -> String {
        format!("{}/keys/{keyid}", self.daemon.base())
    }

    /// The client's TLS environment.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("TUFKEY_REMOTE_CA", self.dir.path().join("client-ca.pem")),
            ("TUFKEY_REMOTE_CERT", self.cert.clone()),
            ("TUFKEY_REMOTE_KEY", self.key.clone()),
        ]
    }

    /// The daemon's audit log.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }

    /// Names the signer's keys for snapshot and timestamp (and `targets_uri` for
    /// targets) in the repository's repo.toml.
    pub fn write_keys(&self, k: &Keys, dir: &Path, targets_uri: &str) {
        let toml = dir.join("repo.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        let keys = format!(
            "[keys]\nsnapshot = \"{}\"\ntimestamp = \"{}\"\ntargets = \"{targets_uri}\"\n",
            self.key_uri(&k.snapshot.keyid),
            self.key_uri(&k.timestamp.keyid)
        );
        std::fs::write(&toml, text.replace("[keys]\n", &keys)).unwrap();
    }
}

/// `tufkey ARGS` on `k`'s tokens with `env` added: (exit code, stdout, stderr).
pub fn run_env(k: &Keys, args: &[&str], env: &[(&str, PathBuf)]) -> (i32, String, String) {
    let mut c = tufkey(Some(&k.hsm));
    c.args(args);
    for (n, v) in env {
        c.env(n, v);
    }
    run(c)
}
