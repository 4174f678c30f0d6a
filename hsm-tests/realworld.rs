//! tufkey against python-tuf on metadata from real repositories
//! (`../shared/interop/realworld`: Sigstore's root-signing repository and a tuf-on-ci
//! 0.11 repository).
//!
//! Every verdict here is python-tuf's, computed in the test with python-tuf's own API
//! (`Metadata.from_bytes`, `get_verification_result`, `get_root_verification_result`,
//! `is_expired`, `signed_bytes`), and tufkey must reach the same one: same exit status,
//! same set of keys whose signature counts, same keys that do not count. Each test starts
//! one Python process for all of its files, as Python starts slowly.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harness::read_json;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The data

fn realworld() -> PathBuf {
    harness::repo().join("../shared/interop/realworld")
}

fn sigstore(file: &str) -> PathBuf {
    realworld()
        .join("sigstore-root-signing/metadata")
        .join(file)
}

fn tuf_on_ci(file: &str) -> PathBuf {
    realworld().join("tuf-on-ci-0.11/metadata").join(file)
}

fn sigstore_root(n: u32) -> PathBuf {
    sigstore(&format!("{n}.root.json"))
}

/// The time at which a repository's newest metadata is valid, as its `faketime` file says
/// (`2025-02-09 12:02:08+00:00`); passed to `--at` as it is.
fn faketime(repo: &str) -> String {
    let p = realworld().join(repo).join("faketime");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// One day before the file's own `expires`: a time at which only its signatures decide.
fn day_before_expiry(p: &Path) -> String {
    let doc = read_json(p);
    let expires = doc["signed"]["expires"].as_str().expect("expires");
    let t = chrono::NaiveDateTime::parse_from_str(expires, "%Y-%m-%dT%H:%M:%SZ")
        .unwrap_or_else(|e| panic!("{}: expires {expires}: {e}", p.display()));
    (t - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Every metadata file of both repositories (and their `initial_root.json`).
fn all_metadata_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for repo in ["sigstore-root-signing", "tuf-on-ci-0.11"] {
        files.push(realworld().join(repo).join("initial_root.json"));
        let dir = realworld().join(repo).join("metadata");
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 20, "realworld data is missing: {files:?}");
    files
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// python-tuf's side

/// Refuses to run without `cryptography`: without it securesystemslib verifies no ECDSA
/// or RSA signature at all (every one fails as UnsupportedLibraryError, which
/// `get_verification_result` counts as "unsigned"), and python-tuf's verdict on these
/// repositories would be meaningless.
const PY_PRELUDE: &str = r#"
import datetime, hashlib, json, sys
try:
    import cryptography  # noqa: F401
except ImportError:
    sys.exit("the python-tuf venv has no `cryptography`: securesystemslib then verifies no "
             "ECDSA/RSA signature at all. Install it beside tuf: pip install tuf cryptography")
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Metadata, Root
"#;

/// For each job {file, delegator, role, at}: python-tuf's verdict, or the load error.
const PY_VERIFY: &str = r#"
jobs = json.loads(sys.argv[1])

def load(path):
    try:
        with open(path, "rb") as f:
            return Metadata.from_bytes(f.read()), None
    except Exception as e:
        return None, {"error_file": path, "error": f"{type(e).__name__}: {e}: {e.__cause__}"}

def check(delegator, role, md):
    r = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    keyids = delegator.get_delegated_role(role).keyids
    nokey = []
    for k in keyids:
        try:
            delegator.get_key(k)
        except ValueError:
            nokey.append(k)
    return {
        "threshold": r.threshold,
        "verified": r.verified,
        "signed": sorted(r.signed),
        "unsigned": sorted(r.unsigned),
        "nokey": nokey,
        "unrelated": sorted(k for k in md.signatures if k not in keyids),
    }

def at_time(s):
    if s is None:
        return datetime.datetime.now(datetime.timezone.utc)
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))

out = []
for job in jobs:
    md, err = load(job["file"])
    prev = None
    if err is None and job["delegator"] is not None:
        prev, err = load(job["delegator"])
    if err is not None:
        out.append(err)
        continue
    res = {"error": None, "sequential": None, "expired": md.signed.is_expired(at_time(job["at"]))}
    if prev is None:
        # A root against its own keys, as python-tuf checks a first root.
        r = md.signed.get_root_verification_result(None, md.signed_bytes, md.signatures)
        res["checks"] = [check(md.signed, Root.type, md)]
        assert r.verified == res["checks"][0]["verified"]
    elif md.signed.type == Root.type and prev.signed.type == Root.type:
        # The client's root update: threshold of the trusted root and of the new one,
        # and version N+1 (python-tuf raises ValueError otherwise).
        try:
            r = md.signed.get_root_verification_result(prev.signed, md.signed_bytes, md.signatures)
            res["sequential"] = True
        except ValueError:
            r = None
            res["sequential"] = False
        res["checks"] = [check(prev.signed, Root.type, md), check(md.signed, Root.type, md)]
        if r is not None:
            assert r.verified == all(c["verified"] for c in res["checks"])
    else:
        res["checks"] = [check(prev.signed, job["role"] or md.signed.type, md)]
    res["verified"] = (all(c["verified"] for c in res["checks"])
                       and res["sequential"] is not False and not res["expired"])
    out.append(res)
print(json.dumps(out))
"#;

/// For each file: the canonical bytes of `signed` by securesystemslib's `encode_canonical`
/// on the raw JSON and, when python-tuf can load the file, `Metadata.signed_bytes`.
const PY_PAYLOAD: &str = r#"
out = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        raw = f.read()
    entry = {"raw": encode_canonical(json.loads(raw)["signed"]).encode().hex(), "tuf": None}
    try:
        entry["tuf"] = Metadata.from_bytes(raw).signed_bytes.hex()
    except Exception:
        pass
    out[path] = entry
print(json.dumps(out))
"#;

/// For each delegator file python-tuf loads: the keys whose listed key id is not the
/// SHA-256 of the canonical key object (`Key.to_dict()`, unknown fields included).
const PY_KEYIDS: &str = r#"
out = {}
for path in sys.argv[1:]:
    signed = Metadata.from_file(path).signed
    if signed.type == Root.type:
        keys = signed.keys
    else:
        keys = signed.delegations.keys if signed.delegations else {}
    computed = {k: hashlib.sha256(encode_canonical(key.to_dict()).encode()).hexdigest()
                for k, key in keys.items()}
    out[path] = {"keys": len(keys), "mismatches": sorted([k, c] for k, c in computed.items() if k != c)}
print(json.dumps(out))
"#;

fn python(script: &str, args: &[&str]) -> Value {
    let out = harness::python_tuf(&format!("{PY_PRELUDE}{script}"), args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("python printed no JSON ({e}):\n{out}"))
}

// ---------------------------------------------------------------------------------------
// One `tufkey verify` run next to python-tuf's verdict on the same question

#[derive(Clone)]
struct Job {
    file: PathBuf,
    delegator: Option<PathBuf>,
    /// `--role` for tufkey.
    role: Option<String>,
    /// The delegated role python-tuf checks (None: the file's `_type`); given to
    /// python-tuf explicitly so that tufkey's inference from the file name is tested.
    py_role: Option<String>,
    at: Option<String>,
}

impl Job {
    fn new(file: PathBuf) -> Job {
        Job {
            file,
            delegator: None,
            role: None,
            py_role: None,
            at: None,
        }
    }
    fn against(mut self, delegator: PathBuf) -> Job {
        self.delegator = Some(delegator);
        self
    }
    fn at(mut self, at: &str) -> Job {
        self.at = Some(at.to_string());
        self
    }
    /// The delegated role, for python-tuf only: tufkey must infer it.
    fn inferred_role(mut self, role: &str) -> Job {
        self.py_role = Some(role.to_string());
        self
    }
    /// The delegated role, for both (tufkey by `--role`).
    fn role(mut self, role: &str) -> Job {
        self.role = Some(role.to_string());
        self.py_role = Some(role.to_string());
        self
    }

    fn describe(&self) -> String {
        let mut d = format!("tufkey verify {}", self.file.display());
        if let Some(r) = &self.delegator {
            d += &format!(" --root {}", r.display());
        }
        if let Some(r) = &self.role {
            d += &format!(" --role {r}");
        }
        if let Some(t) = &self.at {
            d += &format!(" --at '{t}'");
        }
        d
    }

    fn to_py(&self) -> Value {
        json!({
            "file": s(&self.file),
            "delegator": self.delegator.as_deref().map(s),
            "role": self.py_role,
            "at": self.at,
        })
    }

    fn run_tufkey(&self) -> (i32, String, String) {
        let mut c = harness::tufkey(None);
        c.arg("verify").arg(&self.file).arg("--json");
        if let Some(d) = &self.delegator {
            c.arg("--root").arg(d);
        }
        if let Some(r) = &self.role {
            c.args(["--role", r]);
        }
        if let Some(t) = &self.at {
            c.args(["--at", t]);
        }
        harness::run(c)
    }
}

struct Outcome {
    /// python-tuf's result for the job.
    py: Value,
    code: i32,
    /// tufkey's `--json` output (Null when it failed with an error).
    out: Value,
    stderr: String,
}

impl Outcome {
    fn problems(&self) -> Vec<String> {
        self.out["problems"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

/// Asks python-tuf about every job in one process, then runs tufkey on each and requires
/// the same verdict: exit 1 where python-tuf cannot load a file, else exit 0 exactly when
/// python-tuf verifies, the same expiry verdict, and per check the same threshold, the
/// same keys whose signatures count, the same role keys that do not count, and the same
/// signatures by keys outside the role.
fn verify_like_python(jobs: &[Job]) -> Vec<Outcome> {
    let spec = Value::Array(jobs.iter().map(Job::to_py).collect());
    let py = python(PY_VERIFY, &[&spec.to_string()]);
    let py = py.as_array().expect("a list of results").clone();
    assert_eq!(py.len(), jobs.len());
    jobs.iter()
        .zip(py)
        .map(|(job, py)| {
            let what = job.describe();
            let (code, stdout, stderr) = job.run_tufkey();
            if let Some(err) = py["error"].as_str() {
                assert_eq!(
                    code, 1,
                    "{what}: python-tuf cannot load {} ({err}), so tufkey must fail with exit 1\nstdout: {stdout}\nstderr: {stderr}",
                    py["error_file"]
                );
                return Outcome { py, code, out: Value::Null, stderr };
            }
            let out: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!("{what}: exit {code}, no JSON ({e})\nstdout: {stdout}\nstderr: {stderr}")
            });
            let verified = py["verified"].as_bool().unwrap();
            let ctx = format!("{what}\npython-tuf: {py:#}\ntufkey (exit {code}): {out:#}\nstderr: {stderr}");
            assert_eq!(code, if verified { 0 } else { 3 }, "exit status differs from python-tuf's verdict: {ctx}");
            assert_eq!(out["verified"], py["verified"], "verdict: {ctx}");
            assert_eq!(out["expired"], py["expired"], "expiry: {ctx}");
            let checks = out["checks"].as_array().expect("checks");
            let py_checks = py["checks"].as_array().unwrap();
            assert_eq!(checks.len(), py_checks.len(), "number of checks: {ctx}");
            for (t, p) in checks.iter().zip(py_checks) {
                let against = &t["against"];
                assert_eq!(t["threshold"], p["threshold"], "threshold of {against}: {ctx}");
                let signed = t["signed"].as_array().unwrap();
                assert_eq!(signed.len(), strings(&t["signed"]).len(), "a key counted twice in {against}: {ctx}");
                assert_eq!(strings(&t["signed"]), strings(&p["signed"]), "valid signatures for {against}: {ctx}");
                let mut t_not = strings(&t["missing"]);
                t_not.extend(t["invalid"].as_array().unwrap().iter().map(|i| i["keyid"].as_str().unwrap().to_string()));
                let mut p_not = strings(&p["unsigned"]);
                p_not.extend(strings(&p["nokey"]));
                assert_eq!(t_not, p_not, "role keys that do not count (missing + invalid) for {against}: {ctx}");
                assert_eq!(strings(&t["unrelated"]), strings(&p["unrelated"]), "signatures outside the role for {against}: {ctx}");
                assert_eq!(t["verified"], p["verified"], "threshold verdict for {against}: {ctx}");
            }
            let problems = out["problems"].as_array().unwrap();
            let mentions = |word: &str| problems.iter().any(|p| p.as_str().unwrap().contains(word));
            if py["sequential"] == json!(false) {
                assert!(mentions("does not follow"), "python-tuf refuses a non-sequential root update: {ctx}");
            }
            if py["expired"] == json!(true) {
                assert!(mentions("expired"), "expiry is not among the problems: {ctx}");
            }
            Outcome { py, code, out, stderr }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. The Sigstore root chain

#[test]
fn sigstore_root_chain_updates_as_python_tuf_decides() {
    let mut jobs = Vec::new();
    // Each update N-1 -> N at a time N is still valid: python-tuf's client ignores the
    // expiry of intermediate roots, and they all expired long ago.
    for n in 5..=12 {
        jobs.push(
            Job::new(sigstore_root(n))
                .against(sigstore_root(n - 1))
                .at(&day_before_expiry(&sigstore_root(n))),
        );
    }
    // Each root against its own keys.
    for n in 4..=12 {
        jobs.push(Job::new(sigstore_root(n)).at(&day_before_expiry(&sigstore_root(n))));
    }
    // Skipping a version is not an update, however well signed.
    jobs.push(
        Job::new(sigstore_root(7))
            .against(sigstore_root(5))
            .at(&day_before_expiry(&sigstore_root(7))),
    );
    jobs.push(
        Job::new(sigstore_root(12))
            .against(sigstore_root(10))
            .at(&day_before_expiry(&sigstore_root(12))),
    );
    let outcomes = verify_like_python(&jobs);

    // The verdicts python-tuf gave, spelled out: 6..12 update, 5 does not (root 4's keys
    // are hex, which securesystemslib does not decode).
    for (n, o) in (5..=12).zip(&outcomes[..8]) {
        assert_eq!(
            o.py["verified"],
            json!(n >= 6),
            "python-tuf on {n}.root.json against {}.root.json: {:#}",
            n - 1,
            o.py
        );
        assert_eq!(
            o.code,
            if n >= 6 { 0 } else { 3 },
            "{n}.root.json: {:#}",
            o.out
        );
        assert_eq!(
            o.out["checks"].as_array().unwrap().len(),
            2,
            "{n}.root.json: two checks"
        );
    }
    let root5 = &outcomes[0];
    let trusted4 = &root5.out["checks"][0];
    assert!(
        trusted4["signed"].as_array().unwrap().is_empty(),
        "{trusted4:#}"
    );
    assert!(
        !trusted4["invalid"].as_array().unwrap().is_empty(),
        "root 4's hex keys must be reported invalid: {trusted4:#}"
    );
    assert!(
        root5
            .problems()
            .iter()
            .any(|p| p.contains("threshold not met")),
        "{:?}",
        root5.problems()
    );

    // Root 12: five signatures, two of them empty, three that verify.
    let root12 = &outcomes[7];
    let sigs = read_json(&sigstore_root(12))["signatures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sigs.len(), 5);
    let empty: BTreeSet<String> = sigs
        .iter()
        .filter(|s| s["sig"] == "")
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(empty.len(), 2);
    for (t, p) in root12.out["checks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(root12.py["checks"].as_array().unwrap())
    {
        assert_eq!(t["signed"].as_array().unwrap().len(), 3, "{t:#}");
        assert_eq!(p["signed"].as_array().unwrap().len(), 3, "{p:#}");
        assert!(
            empty.is_subset(&strings(&t["missing"])),
            "empty signatures are missing ones: {t:#}"
        );
    }

    // Self checks: root 4 fails on its own hex keys, 5..12 are signed by their own keys.
    for (n, o) in (4..=12).zip(&outcomes[8..17]) {
        assert_eq!(
            o.py["verified"],
            json!(n >= 5),
            "python-tuf on {n}.root.json alone: {:#}",
            o.py
        );
    }

    // Non-sequential updates.
    for o in &outcomes[17..] {
        assert_eq!(o.py["sequential"], json!(false));
        assert_eq!(o.code, 3);
    }
}

// ---------------------------------------------------------------------------------------
// 2. Roots 1..3: `expires` with fractions and offsets, which python-tuf cannot load

#[test]
fn sigstore_roots_1_to_3_cannot_be_loaded_by_either() {
    let jobs = vec![
        Job::new(sigstore_root(1)),
        Job::new(sigstore_root(2)),
        Job::new(sigstore_root(3)),
        Job::new(sigstore_root(2)).against(sigstore_root(1)),
        Job::new(sigstore_root(3)).against(sigstore_root(2)),
        // A loadable root whose trusted predecessor cannot be loaded.
        Job::new(sigstore_root(4)).against(sigstore_root(3)),
    ];
    let outcomes = verify_like_python(&jobs);
    for (job, o) in jobs.iter().zip(&outcomes) {
        let err = o.py["error"]
            .as_str()
            .unwrap_or_else(|| panic!("python-tuf loaded {}: {:#}", job.describe(), o.py));
        assert!(
            err.contains("does not match format"),
            "python-tuf fails on the expiry format: {err}"
        );
        let bad = PathBuf::from(o.py["error_file"].as_str().unwrap());
        assert_eq!(o.code, 1);
        assert!(
            o.stderr
                .contains(&format!("{} cannot be loaded", name(&bad)))
                && o.stderr.contains("expires"),
            "{}: tufkey must say that {} cannot be loaded because of its expiry: {}",
            job.describe(),
            bad.display(),
            o.stderr
        );
    }
    assert_eq!(
        outcomes[5].py["error_file"].as_str(),
        Some(s(&sigstore_root(3)))
    );
}

// ---------------------------------------------------------------------------------------
// 3. The other roles at the repositories' own time

#[test]
fn every_role_verifies_against_its_delegator_at_faketime() {
    let sft = faketime("sigstore-root-signing");
    let tft = faketime("tuf-on-ci-0.11");
    let jobs = vec![
        Job::new(sigstore("11.targets.json"))
            .against(sigstore_root(12))
            .at(&sft),
        Job::new(sigstore("159.snapshot.json"))
            .against(sigstore_root(12))
            .at(&sft),
        Job::new(sigstore("timestamp.json"))
            .against(sigstore_root(12))
            .at(&sft),
        Job::new(sigstore("5.registry.npmjs.org.json"))
            .against(sigstore("11.targets.json"))
            .at(&sft)
            .inferred_role("registry.npmjs.org"),
        Job::new(sigstore("5.registry.npmjs.org.json"))
            .against(sigstore("11.targets.json"))
            .at(&sft)
            .role("registry.npmjs.org"),
        Job::new(tuf_on_ci("1.root.json")).at(&tft),
        Job::new(tuf_on_ci("1.targets.json"))
            .against(tuf_on_ci("1.root.json"))
            .at(&tft),
        Job::new(tuf_on_ci("2.snapshot.json"))
            .against(tuf_on_ci("1.root.json"))
            .at(&tft),
        Job::new(tuf_on_ci("timestamp.json"))
            .against(tuf_on_ci("1.root.json"))
            .at(&tft),
        Job::new(tuf_on_ci("2.delegatedrole.json"))
            .against(tuf_on_ci("1.targets.json"))
            .at(&tft)
            .inferred_role("delegatedrole"),
        Job::new(tuf_on_ci("2.delegatedrole.json"))
            .against(tuf_on_ci("1.targets.json"))
            .at(&tft)
            .role("delegatedrole"),
    ];
    let outcomes = verify_like_python(&jobs);
    for (job, o) in jobs.iter().zip(&outcomes) {
        assert_eq!(
            o.py["verified"],
            json!(true),
            "python-tuf: {}: {:#}",
            job.describe(),
            o.py
        );
        assert_eq!(o.code, 0, "{}: {:#}", job.describe(), o.out);
        assert_eq!(o.out["expired"], json!(false));
        let role = job
            .py_role
            .clone()
            .unwrap_or_else(|| o.out["type"].as_str().unwrap().to_string());
        assert_eq!(
            o.out["checks"][0]["role"],
            json!(role),
            "{}: checked as the wrong role",
            job.describe()
        );
    }
    // The npm registry's delegated role expires after faketime (and before now: see below).
    let npm = &outcomes[3];
    assert!(
        npm.out["expires"].as_str().unwrap() > npm.out["checked_at"].as_str().unwrap(),
        "{:#}",
        npm.out
    );
    // Roles with unsigned keyholders: the empty signature is missing, not invalid.
    let delegated = &outcomes[9].out["checks"][0];
    assert_eq!(
        delegated["missing"].as_array().unwrap().len(),
        1,
        "{delegated:#}"
    );
    assert!(
        delegated["invalid"].as_array().unwrap().is_empty(),
        "{delegated:#}"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Expiry

#[test]
fn expiry_is_checked_now_unless_at_is_given() {
    let sft = faketime("sigstore-root-signing");
    let jobs = vec![
        Job::new(sigstore("timestamp.json")).against(sigstore_root(12)),
        Job::new(sigstore("timestamp.json"))
            .against(sigstore_root(12))
            .at(&sft),
        // tuf-on-ci's metadata is valid until 2044.
        Job::new(tuf_on_ci("timestamp.json")).against(tuf_on_ci("1.root.json")),
        // The npm registry's delegated role: valid at faketime (see above), not now.
        Job::new(sigstore("5.registry.npmjs.org.json"))
            .against(sigstore("11.targets.json"))
            .inferred_role("registry.npmjs.org"),
    ];
    let outcomes = verify_like_python(&jobs);
    let now = &outcomes[0];
    assert_eq!(now.py["expired"], json!(true), "{:#}", now.py);
    assert_eq!(now.code, 3);
    assert_eq!(now.out["expired"], json!(true));
    assert!(
        now.problems().iter().any(|p| p.contains("expired")),
        "{:?}",
        now.problems()
    );
    assert_eq!(
        now.out["checks"][0]["verified"],
        json!(true),
        "only the expiry fails: {:#}",
        now.out
    );
    assert_eq!(now.problems().len(), 1, "{:?}", now.problems());

    let then = &outcomes[1];
    assert_eq!(then.py["verified"], json!(true));
    assert_eq!(then.code, 0, "{:#}", then.out);
    assert_eq!(then.out["expired"], json!(false));

    let tuf_on_ci_now = &outcomes[2];
    assert_eq!(tuf_on_ci_now.py["verified"], json!(true));
    assert_eq!(tuf_on_ci_now.code, 0, "{:#}", tuf_on_ci_now.out);

    let npm_now = &outcomes[3];
    assert_eq!(npm_now.py["expired"], json!(true), "{:#}", npm_now.py);
    assert_eq!(npm_now.code, 3, "{:#}", npm_now.out);
    assert_eq!(npm_now.out["checks"][0]["verified"], json!(true));
}

// ---------------------------------------------------------------------------------------
// 5. Tampered copies

/// Writes `src` into `dir` under its own name with the only occurrence of `from` replaced
/// by `to`, which differs from it in exactly one byte.
fn tampered(src: &Path, dir: &Path, from: &str, to: &str) -> PathBuf {
    assert_eq!(from.len(), to.len());
    assert_eq!(
        from.bytes().zip(to.bytes()).filter(|(a, b)| a != b).count(),
        1,
        "{from} -> {to}"
    );
    let text = std::fs::read_to_string(src).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} must hold `{from}` exactly once",
        src.display()
    );
    let out = dir.join(name(src));
    std::fs::write(&out, text.replace(from, to)).unwrap();
    out
}

/// The hex string with its last character changed.
fn flip_last(hex: &str) -> String {
    let (head, last) = hex.split_at(hex.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// The first non-empty signature of a file: (keyid, sig).
fn first_signature(p: &Path) -> (String, String) {
    let doc = read_json(p);
    let sig = doc["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sig"] != "")
        .expect("a signature")
        .clone();
    (
        sig["keyid"].as_str().unwrap().to_string(),
        sig["sig"].as_str().unwrap().to_string(),
    )
}

/// The sha256 of the first target (or snapshot entry) that has hashes.
fn first_hash(p: &Path, field: &str) -> String {
    let doc = read_json(p);
    doc["signed"][field]
        .as_object()
        .unwrap()
        .values()
        .find_map(|t| t["hashes"]["sha256"].as_str())
        .unwrap_or_else(|| panic!("{}: no {field} entry with a sha256", p.display()))
        .to_string()
}

#[test]
fn tampered_copies_are_rejected_like_python_tuf_does() {
    let dir = tempfile::Builder::new()
        .prefix("tufkey-realworld-")
        .tempdir()
        .unwrap();
    let sft = faketime("sigstore-root-signing");
    let tft = faketime("tuf-on-ci-0.11");
    let root12_at = day_before_expiry(&sigstore_root(12));
    // Each case: the original (which verifies) and a copy with one byte changed, and for a
    // changed signature the key whose signature no longer counts.
    let mut cases: Vec<(Job, Job, Option<String>)> = Vec::new();
    let mut case = |orig: Job, from: &str, to: &str, bad_sig: Option<String>| {
        let sub = dir.path().join(cases.len().to_string());
        std::fs::create_dir(&sub).unwrap();
        let copy = Job {
            file: tampered(&orig.file, &sub, from, to),
            ..orig.clone()
        };
        cases.push((orig, copy, bad_sig));
    };

    // A number in `signed`.
    let ts = Job::new(sigstore("timestamp.json"))
        .against(sigstore_root(12))
        .at(&sft);
    case(ts.clone(), "\"version\": 272", "\"version\": 273", None);
    // A hash in snapshot's meta and in targets.
    let snap = Job::new(sigstore("159.snapshot.json"))
        .against(sigstore_root(12))
        .at(&sft);
    let h = first_hash(&snap.file, "meta");
    case(snap, &h, &flip_last(&h), None);
    let targets = Job::new(sigstore("11.targets.json"))
        .against(sigstore_root(12))
        .at(&sft);
    let h = first_hash(&targets.file, "targets");
    case(targets, &h, &flip_last(&h), None);
    // The delegated role's expiry, its name still inferred from the copy's file name.
    let npm = Job::new(sigstore("5.registry.npmjs.org.json"))
        .against(sigstore("11.targets.json"))
        .at(&sft)
        .inferred_role("registry.npmjs.org");
    case(
        npm,
        "\"expires\": \"2025-07-17T09:40:03Z\"",
        "\"expires\": \"2025-07-17T09:40:04Z\"",
        None,
    );
    // Signatures.
    let (kid, sig) = first_signature(&sigstore("timestamp.json"));
    case(ts, &sig, &flip_last(&sig), Some(kid));
    let root12 = Job::new(sigstore_root(12))
        .against(sigstore_root(11))
        .at(&root12_at);
    let (kid, sig) = first_signature(&root12.file);
    case(root12, &sig, &flip_last(&sig), Some(kid));
    // tuf-on-ci.
    let delegated = Job::new(tuf_on_ci("2.delegatedrole.json"))
        .against(tuf_on_ci("1.targets.json"))
        .at(&tft)
        .inferred_role("delegatedrole");
    let h = first_hash(&delegated.file, "targets");
    case(delegated, &h, &flip_last(&h), None);
    let root = Job::new(tuf_on_ci("1.root.json")).at(&tft);
    case(
        root,
        "\"expires\": \"2044-08-10T10:05:04Z\"",
        "\"expires\": \"2044-08-10T10:05:05Z\"",
        None,
    );
    let ci_targets = Job::new(tuf_on_ci("1.targets.json"))
        .against(tuf_on_ci("1.root.json"))
        .at(&tft);
    let (kid, sig) = first_signature(&ci_targets.file);
    case(ci_targets, &sig, &flip_last(&sig), Some(kid));

    let jobs: Vec<Job> = cases
        .iter()
        .flat_map(|(o, t, _)| [o.clone(), t.clone()])
        .collect();
    let outcomes = verify_like_python(&jobs);
    for (i, (_, copy, bad_sig)) in cases.iter().enumerate() {
        let (orig, tamp) = (&outcomes[2 * i], &outcomes[2 * i + 1]);
        let what = copy.describe();
        assert_eq!(
            orig.code, 0,
            "the original of {what} must verify: {:#}",
            orig.out
        );
        assert_eq!(
            tamp.py["verified"],
            json!(false),
            "python-tuf accepts {what}: {:#}",
            tamp.py
        );
        assert_eq!(tamp.code, 3, "{what}: {:#}", tamp.out);
        assert_eq!(
            tamp.out["expired"],
            json!(false),
            "{what}: fails on signatures, not expiry"
        );
        let checks = tamp.out["checks"].as_array().unwrap();
        let orig_checks = orig.out["checks"].as_array().unwrap();
        assert_eq!(checks.len(), orig_checks.len());
        let mut reported = false;
        for (check, orig_check) in checks.iter().zip(orig_checks) {
            let invalid: BTreeSet<String> = check["invalid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["keyid"].as_str().unwrap().to_string())
                .collect();
            let counted = strings(&orig_check["signed"]);
            match bad_sig {
                // Only the changed signature stops counting, and it is reported invalid.
                Some(kid) => {
                    if counted.contains(kid) {
                        assert!(
                            invalid.contains(kid),
                            "{what}: the changed signature of {kid} is not invalid: {check:#}"
                        );
                        reported = true;
                    }
                    let mut still = counted.clone();
                    still.remove(kid);
                    assert_eq!(strings(&check["signed"]), still, "{what}: {check:#}");
                }
                // A change in `signed`: no signature that counted on the original counts.
                None => {
                    assert!(
                        check["signed"].as_array().unwrap().is_empty(),
                        "{what}: {check:#}"
                    );
                    assert_eq!(invalid, counted, "{what}: {check:#}");
                    reported = true;
                }
            }
        }
        assert!(reported, "{what}: nothing reported invalid: {:#}", tamp.out);
    }
}

// ---------------------------------------------------------------------------------------
// 6. Canonical bytes

fn tufkey_bytes(args: &[&str]) -> Vec<u8> {
    let mut c = harness::tufkey(None);
    c.args(args);
    let out = c.output().expect("run tufkey");
    assert!(
        out.status.success(),
        "tufkey {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn payload_is_byte_for_byte_python_canonical_json() {
    let files = all_metadata_files();
    let args: Vec<&str> = files.iter().map(|p| s(p)).collect();
    let py = python(PY_PAYLOAD, &args);
    let mut unloadable = BTreeSet::new();
    for f in &files {
        let entry = &py[s(f)];
        let ours = tufkey_bytes(&["payload", s(f)]);
        let raw = hex::decode(entry["raw"].as_str().unwrap()).unwrap();
        assert!(
            ours == raw,
            "{}: `tufkey payload` differs from encode_canonical(signed):\ntufkey: {}\npython: {}",
            f.display(),
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&raw)
        );
        match entry["tuf"].as_str() {
            Some(tuf) => assert!(
                ours == hex::decode(tuf).unwrap(),
                "{}: `tufkey payload` differs from python-tuf's Metadata.signed_bytes",
                f.display()
            ),
            None => {
                unloadable.insert(name(f));
            }
        }
        let sha = String::from_utf8(tufkey_bytes(&["payload", "--sha256", s(f)])).unwrap();
        let want: String = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&raw))
        };
        assert_eq!(sha.trim(), want, "{}: payload --sha256", f.display());
    }
    let expected: BTreeSet<String> = (1..=3).map(|n| format!("{n}.root.json")).collect();
    assert_eq!(unloadable, expected, "the files python-tuf cannot load");
}

// ---------------------------------------------------------------------------------------
// 7. Key ids

/// (listed, computed) pairs from tufkey's key id warnings.
fn keyid_warnings(out: &Value) -> BTreeSet<(String, String)> {
    out["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| {
            let w = w.as_str().unwrap();
            let rest = w.split_once("key listed as ")?.1;
            let (listed, rest) = rest.split_once(" hashes to ")?;
            let computed = rest.split_whitespace().next()?;
            Some((listed.to_string(), computed.to_string()))
        })
        .collect()
}

#[test]
fn keyid_warnings_are_the_keys_python_hashes_differently() {
    let sft = faketime("sigstore-root-signing");
    let tft = faketime("tuf-on-ci-0.11");
    // Every delegator, with a job that makes tufkey read its keys: a root against
    // itself, a targets file as the delegator of its delegated role.
    let mut delegators: Vec<(PathBuf, Job)> = Vec::new();
    for n in 4..=12 {
        delegators.push((sigstore_root(n), Job::new(sigstore_root(n))));
    }
    for repo in ["sigstore-root-signing", "tuf-on-ci-0.11"] {
        let p = realworld().join(repo).join("initial_root.json");
        delegators.push((p.clone(), Job::new(p)));
    }
    delegators.push((tuf_on_ci("1.root.json"), Job::new(tuf_on_ci("1.root.json"))));
    delegators.push((
        sigstore("11.targets.json"),
        Job::new(sigstore("5.registry.npmjs.org.json"))
            .against(sigstore("11.targets.json"))
            .at(&sft),
    ));
    delegators.push((
        tuf_on_ci("1.targets.json"),
        Job::new(tuf_on_ci("2.delegatedrole.json"))
            .against(tuf_on_ci("1.targets.json"))
            .at(&tft),
    ));
    let args: Vec<&str> = delegators.iter().map(|(p, _)| s(p)).collect();
    let py = python(PY_KEYIDS, &args);

    let mut all_mismatches = BTreeMap::new();
    for (p, job) in &delegators {
        let entry = &py[s(p)];
        assert!(
            entry["keys"].as_u64().unwrap() > 0,
            "{}: no keys",
            p.display()
        );
        let want: BTreeSet<(String, String)> = entry["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0].as_str().unwrap().to_string(),
                    m[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let (code, stdout, stderr) = job.run_tufkey();
        assert!(
            code == 0 || code == 3,
            "{}: exit {code}: {stderr}",
            job.describe()
        );
        let out: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            keyid_warnings(&out),
            want,
            "{}: key id warnings vs python's computed key ids: {:#}",
            job.describe(),
            out["warnings"]
        );
        for w in out["warnings"].as_array().unwrap() {
            if w.as_str().unwrap().contains("key listed as") {
                assert!(
                    w.as_str().unwrap().starts_with(&format!("{}:", name(p))),
                    "warning names the file: {w}"
                );
            }
        }
        if !want.is_empty() {
            all_mismatches.insert(name(p), want);
        }
    }
    // Root 11's online key is listed under an id its content does not hash to (the data's
    // README: "v11 has a keyid compliance issue"); the test must see at least that one.
    assert!(
        all_mismatches.contains_key("11.root.json"),
        "python found no key id mismatch in 11.root.json: {all_mismatches:?}"
    );
}
