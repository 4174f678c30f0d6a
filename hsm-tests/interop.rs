//! Interop with python-tuf (installed from PyPI by hsm-tests/run.sh): what tufkey signs
//! on SoftHSM, python-tuf verifies with its own `Metadata.verify_delegate` and computes
//! the same key ids; what python-tuf signs, tufkey verifies.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;
use serde_json::{json, Value};

const PY_VERIFY: &str = r#"
import hashlib, json, sys
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Metadata
root = Metadata.from_file(sys.argv[1])
targets = Metadata.from_file(sys.argv[2])
root.verify_delegate("root", root)           # raises if the threshold is not met
root.verify_delegate("targets", targets)
def ids(md):
    return {kid: hashlib.sha256(encode_canonical(k.to_dict()).encode()).hexdigest() for kid, k in md.signed.keys.items()}
res = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
print(json.dumps({"keyids": ids(root), "root_signed": sorted(res.signed), "root_verified": res.verified,
                  "payload": encode_canonical(root.signed.to_dict())}))
"#;

#[test]
fn python_tuf_verifies_what_tufkey_signed_on_softhsm_with_all_three_key_types() {
    let hsm = SoftHsm::new();
    let a = hsm.token("keyholder-a", "1111");
    let b = hsm.token("keyholder-b", "2222");
    let c = hsm.token("keyholder-c", "3333");
    let keys = vec![
        generate(Some(&hsm), &a.uri("root"), "ecdsa-p256", &[]),
        generate(Some(&hsm), &b.uri("root"), "rsa-3072", &[]),
        generate(Some(&hsm), &c.uri("root"), "ed25519", &[]),
    ];
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    let targets = dir.path().join("targets.json");
    write_unsigned(
        &root,
        json!({
            "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": next_year(), "consistent_snapshot": true,
            "keys": keys.iter().map(|k| (k.1.clone(), k.2.clone())).collect::<serde_json::Map<_, _>>(),
            "roles": {
                "root": {"keyids": ids, "threshold": 3},
                "targets": {"keyids": [ids[1], ids[2]], "threshold": 2},
                "snapshot": {"keyids": [ids[0]], "threshold": 1},
                "timestamp": {"keyids": [ids[0]], "threshold": 1},
            },
            "x-tufkey-test": {"pem": "-----BEGIN X-----\nline\n-----END X-----\n", "quote": "a\"b\\c", "uni": "é"}
        }),
    );
    write_unsigned(
        &targets,
        json!({
            "_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": next_year(),
            "targets": {"file.txt": {"length": 3, "hashes": {"sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}, "custom": {"x": [1, 2]}}}
        }),
    );
    sign_with(Some(&hsm), &root, &[&keys[0].0, &keys[1].0, &keys[2].0]);
    sign_with(Some(&hsm), &targets, &[&keys[1].0, &keys[2].0]);

    let out: Value = serde_json::from_str(&python_tuf(
        PY_VERIFY,
        &[root.to_str().unwrap(), targets.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(out["root_verified"], true);
    let mut want: Vec<&str> = ids.clone();
    want.sort();
    assert_eq!(out["root_signed"], json!(want));
    // python-tuf's key ids are tufkey's.
    for k in &keys {
        assert_eq!(out["keyids"][&k.1], k.1.as_str(), "key id of {}", k.0);
    }
    // The canonical payload is byte for byte securesystemslib's.
    let ours = ok(None, &["payload", root.to_str().unwrap()]);
    assert_eq!(out["payload"].as_str().unwrap(), ours);
}

const PY_SIGN: &str = r#"
import json, sys
from datetime import datetime, timedelta, timezone
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Targets, TargetFile
out = sys.argv[1]
signers = [CryptoSigner.generate_ecdsa(), CryptoSigner.generate_ed25519(), CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256")]
expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
root = Metadata(Root(expires=expires))
for s in signers:
    root.signed.add_key(s.public_key, "root")
root.signed.add_key(signers[1].public_key, "targets")
root.signed.roles["root"].threshold = 3
root.signed.unrecognized_fields["x-python"] = {"nested": ["a", 1]}
for s in signers:
    root.sign(s, append=True)
root.to_file(f"{out}/root.json")
targets = Metadata(Targets(expires=expires))
targets.signed.targets["a.txt"] = TargetFile.from_data("a.txt", b"abc")
targets.sign(signers[1])
targets.to_file(f"{out}/targets.json")
print(json.dumps([s.public_key.keyid for s in signers]))
"#;

#[test]
fn tufkey_verifies_what_python_tuf_signed_and_rejects_a_tampered_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let keyids: Vec<String> = serde_json::from_str(&python_tuf(PY_SIGN, &[d])).unwrap();
    let root = dir.path().join("root.json");
    let targets = dir.path().join("targets.json");

    let mut c = tufkey(None);
    c.args(["verify", root.to_str().unwrap(), "--json"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut signed: Vec<String> = serde_json::from_value(v["checks"][0]["signed"].clone()).unwrap();
    signed.sort();
    let mut want = keyids.clone();
    want.sort();
    assert_eq!(
        signed, want,
        "all three python-tuf signatures (ECDSA, Ed25519, RSA-PSS) verify in tufkey"
    );
    assert_eq!(
        v["warnings"],
        json!([]),
        "python-tuf's key ids are the hashes tufkey computes"
    );
    ok(
        None,
        &[
            "verify",
            targets.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );

    // Change one signed byte: the signature no longer covers the document.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&targets).unwrap()).unwrap();
    assert_eq!(doc["signed"]["targets"]["a.txt"]["length"], 3);
    doc["signed"]["targets"]["a.txt"]["length"] = json!(4);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&doc).unwrap()).unwrap();
    let (code, err) = fails(
        None,
        &[
            "verify",
            tampered.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("invalid") && err.contains(&keyids[1]), "{err}");
}
