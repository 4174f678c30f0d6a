//! Big metadata and root chains (issue 11, P3 and P4), against python-tuf: a large
//! targets file signed on SoftHSM through the tape path verifies in python-tuf with the
//! same payload bytes; a usage error comes before the file is opened; a chain of roots
//! is accepted and refused where python-tuf's `update_root` accepts and refuses it.
//! The timings themselves live in benches/bigmeta/run.sh, never here.

#[path = "harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// benches/bigmeta/pytuf.py: the bench's python-tuf helper, used here for its files.
fn pytuf(args: &[&str]) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo().join("benches/bigmeta/pytuf.py"))
        .args(args)
        .output()
        .expect("run python");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A P-256 key on a fresh token, and its `{keyid, key}` file for pytuf.py.
fn token_key(hsm: &SoftHsm, dir: &Path) -> (String, PathBuf) {
    let token = hsm.token("bigmeta", "1234");
    let (uri, keyid, key) = generate(Some(hsm), &token.uri("targets"), "ecdsa-p256", &[]);
    let uri = format!("{uri}&pin-value=1234");
    let file = dir.join("tufkey-key.json");
    write_json(&file, &json!({"keyid": keyid, "key": key}));
    (uri, file)
}

const PY_CHECK_TARGETS: &str = r#"
import json, sys
from tuf.api.metadata import Metadata
root = Metadata.from_file(sys.argv[1])
md = Metadata.from_file(sys.argv[2])
root.verify_delegate("targets", md)   # raises unless the threshold is met
print(json.dumps({"payload": md.signed_bytes.decode(), "targets": len(md.signed.targets),
                  "custom": md.signed.unrecognized_fields}))
"#;

#[test]
fn a_large_targets_file_signed_on_softhsm_verifies_in_python_tuf_with_the_same_payload() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new();
    let (uri, key_file) = token_key(&hsm, dir.path());
    let (made, out) = pytuf(&["make", p(dir.path()), "20000", "2", p(&key_file)]);
    assert!(made, "{out}");
    let targets = dir.path().join("targets.json");
    let root = dir.path().join("root.json");
    // Escapes, non-ASCII and an unknown field, which the tape must canonicalise as
    // securesystemslib does and keep in the file.
    let mut doc = read_json(&targets);
    let t = doc["signed"]["targets"].as_object_mut().unwrap();
    t.insert(
        "docs/naïve \"quoted\" \\ file\ttab.txt".into(),
        json!({"length": 1, "hashes": {"sha256": "00"}, "custom": {"é": [1, -2, 18446744073709551615u64]}}),
    );
    doc["signed"]["x-vendor"] = json!({"z": null, "a": "\u{1}\n😀"});
    write_json(&targets, &doc);

    let out = ok(Some(&hsm), &["--json", "sign", p(&targets), "--key", &uri]);
    let signed: Value = serde_json::from_str(&out).unwrap();
    let payload = ok(None, &["payload", p(&targets)]);
    let py: Value =
        serde_json::from_str(&python_tuf(PY_CHECK_TARGETS, &[p(&root), p(&targets)])).unwrap();
    assert_eq!(py["targets"], 20001);
    assert_eq!(
        py["payload"].as_str().unwrap(),
        payload,
        "canonical bytes differ from securesystemslib's"
    );
    assert_eq!(
        py["custom"]["x-vendor"],
        json!({"z": null, "a": "\u{1}\n😀"})
    );
    let (code, report) = verify_json(None, &[p(&targets), "--root", p(&root)]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["payload_sha256"], signed["payload_sha256"]);
}

/// Runs tufkey, killing it (and failing) if it has not finished in 30 s: a command that
/// opened a FIFO with no writer would wait forever.
fn run_with_deadline(args: &[&str]) -> (i32, String) {
    let mut c = tufkey(None);
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            return (status.code().unwrap_or(-1), text);
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("tufkey {args:?} opened the file before checking its arguments");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn verify_without_root_on_a_targets_file_is_a_usage_error_before_the_file_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["targets.json", "7.snapshot.json", "timestamp.json"] {
        // A FIFO without a writer: opening it for reading would block.
        let fifo = dir.path().join(name);
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let (code, text) = run_with_deadline(&["verify", p(&fifo)]);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains(name) && text.contains("--root"), "{text}");
    }
}

#[test]
fn a_chain_of_roots_is_accepted_and_refused_where_python_tuf_update_root_is() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new();
    let (_, key_file) = token_key(&hsm, dir.path());
    let n = 12;
    let (made, out) = pytuf(&["make", p(dir.path()), "10", &n.to_string(), p(&key_file)]);
    assert!(made, "{out}");
    let chain: Vec<PathBuf> = (1..=n)
        .map(|v| dir.path().join(format!("chain/{v}.root.json")))
        .collect();
    let args =
        |files: &[PathBuf]| -> Vec<String> { files.iter().map(|f| p(f).to_string()).collect() };
    let verify = |files: &[PathBuf], extra: &[&str]| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(args(files));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        verify_json(None, &a)
    };

    let (code, report) = verify(&chain, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["final_version"], n);
    assert_eq!(report["steps"].as_array().unwrap().len(), n - 1);
    let (py_ok, out) = pytuf(&["chain", p(dir.path()), &n.to_string(), "1"]);
    assert!(py_ok, "python-tuf refused the chain tufkey accepted: {out}");
    // The same from a trusted root given with --root.
    let (code, report) = verify(&chain[1..], &["--root", p(&chain[0])]);
    assert_eq!(code, 0, "{report}");

    // A version left out: the next root is not exactly one version up.
    let mut skipped = chain.clone();
    skipped.remove(5);
    let (code, report) = verify(&skipped, &[]);
    assert_eq!(code, 3, "{report}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("7.root.json") && problems.contains("exactly version 6"),
        "{problems}"
    );

    // Version 7 keeps one signature: below both thresholds. python-tuf refuses it too.
    let seventh = &chain[6];
    let mut doc = read_json(seventh);
    doc["signatures"].as_array_mut().unwrap().truncate(1);
    write_json(seventh, &doc);
    let (code, report) = verify(&chain, &[]);
    assert_eq!(code, 3, "{report}");
    let failed: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["verified"] != true)
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(failed[0]["file"].as_str().unwrap().ends_with("7.root.json"));
    assert!(
        report["problems"].to_string().contains("threshold not met"),
        "{report}"
    );
    let (py_ok, _) = pytuf(&["chain", p(dir.path()), &n.to_string(), "1"]);
    assert!(!py_ok, "python-tuf accepted the chain tufkey refused");
}

#[test]
fn a_chain_with_a_file_that_is_not_a_root_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("1.root.json");
    let targets = dir.path().join("2.root.json");
    write_unsigned(&root, json!({"_type": "root"}));
    write_unsigned(
        &targets,
        json!({"_type": "targets", "version": 2, "expires": next_year()}),
    );
    let (code, text) = fails(None, &["verify", p(&targets), p(&root)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("2.root.json is a targets file"), "{text}");
}
