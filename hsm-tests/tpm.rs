//! The PKCS#11 backend against a second implementation: a TPM 2.0 token (Debian's
//! tpm2-pkcs11 on swtpm behind tpm2-abrmd, started per test by hsm-tests/tpm/start.sh
//! and stopped by PID). The same stories as the SoftHSM suite — generate, list, sign,
//! python-tuf verifies, PIN rules, a daemon that survives its device going away — and
//! where the TPM differs (no Ed25519, no PIN counters, a dictionary-attack lockout over
//! the whole TPM), what tufkey does about it.

#[path = "harness/mod.rs"]
mod harness;
#[path = "harness/tpm.rs"]
mod tpm_harness;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harness::daemon::{client_policy, daemon_folder, expires_in, signer_toml};
use harness::*;
use serde_json::{json, Value};
use tpm_harness::Tpm;
use tufkey::keys::remote::{Client, ClientTls};

/// python-tuf checks the root's threshold with its own `verify_delegate` (it raises
/// below it), lists the key ids whose signatures verified, and recomputes every key id.
const PY_VERIFY: &str = r#"
import hashlib, json, sys
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Metadata
root = Metadata.from_file(sys.argv[1])
root.verify_delegate("root", root)
res = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
ids = {kid: hashlib.sha256(encode_canonical(k.to_dict()).encode()).hexdigest() for kid, k in root.signed.keys.items()}
print(json.dumps({"verified": res.verified, "signed": sorted(res.signed), "keyids": ids}))
"#;

/// A root over `keys` (threshold: all of them), signed by all with `tufkey sign`.
fn signed_root(tpm: &Tpm, dir: &Path, keys: &[(String, String, Value)]) -> std::path::PathBuf {
    let root = dir.join("root.json");
    write_unsigned(&root, root_body(keys, keys.len() as u64));
    let mut args = vec!["sign", p(&root)];
    for k in keys {
        args.extend(["--key", k.0.as_str()]);
    }
    tpm.ok(&args);
    root
}

/// What python-tuf says about a root file.
fn python_tuf_on(root: &Path) -> Value {
    serde_json::from_str(&python_tuf(PY_VERIFY, &[p(root)])).unwrap()
}

/// A root with one key, unsigned, for PIN stories.
fn one_key_root(dir: &Path, key: &(String, String, Value)) -> std::path::PathBuf {
    let root = dir.join("root.json");
    write_unsigned(&root, root_body(std::slice::from_ref(key), 1));
    root
}

#[test]
fn p256_and_rsa_keys_made_in_the_tpm_sign_a_root_that_python_tuf_verifies_with_the_same_key_ids() {
    let tpm = Tpm::start();
    let token = tpm.token("tpm-root", "4711");
    let keys = vec![
        tpm.generate(&token.uri("p256"), "ecdsa-p256"),
        tpm.generate(&token.uri("rsa2048"), "rsa-2048"),
        tpm.generate(&token.uri("rsa3072"), "rsa-3072"),
    ];
    assert_eq!(keys[0].2["scheme"], "ecdsa-sha2-nistp256");
    assert_eq!(keys[1].2["scheme"], "rsassa-pss-sha256");

    // The private keys live in the TPM: sensitive, never extractable.
    let out = tpm
        .command("pkcs11-tool")
        .args(["--module", p(&tpm_harness::tpm2_module())])
        .args(["--token-label", "tpm-root", "--login", "--pin", "4711"])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .expect("pkcs11-tool (package opensc)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("Private Key Object").count(), 3, "{text}");
    assert_eq!(text.matches("never extractable").count(), 3, "{text}");
    assert!(!text.contains("  extractable"), "{text}");

    // `key list` reads the public halves without a PIN: the same key ids.
    let listed: Value =
        serde_json::from_str(&tpm.ok(&["key", "list", &token.token_uri(), "--json"])).unwrap();
    let mut listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyid"].as_str().unwrap())
        .collect();
    let mut ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    listed_ids.sort();
    ids.sort();
    assert_eq!(listed_ids, ids);

    // The token is listed with what tpm2-pkcs11 reports: no PIN counters.
    let tokens: Value = serde_json::from_str(&tpm.ok(&[
        "token",
        "list",
        "--module",
        p(&tpm_harness::tpm2_module()),
        "--json",
    ]))
    .unwrap();
    let t = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "tpm-root")
        .expect("the TPM token is listed");
    assert_eq!(t["pin"], "not-reported", "{t}");
    assert!(
        !t["model"].as_str().unwrap().contains('\0'),
        "model without NUL padding: {t}"
    );

    let dir = tempfile::tempdir().unwrap();
    let root = signed_root(&tpm, dir.path(), &keys);
    let (code, v) = verify_json(None, &[p(&root)]);
    assert_eq!(code, 0, "tufkey verify: {v}");

    // python-tuf verifies every signature and computes tufkey's key ids.
    let out = python_tuf_on(&root);
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["signed"], json!(ids));
    for k in &keys {
        assert_eq!(out["keyids"][&k.1], k.1.as_str(), "key id of {}", k.0);
    }
}

#[test]
fn ed25519_is_refused_with_the_reason_before_any_pin_is_asked_for() {
    let tpm = Tpm::start();
    let token = tpm.token("tpm-ed", "4711");
    let (code, out, err, logins) =
        tpm.run_through_spy(&["key", "generate", &token.uri("ed"), "--type", "ed25519"]);
    assert_eq!(
        (code, logins),
        (1, 0),
        "refused before any C_Login: {err}{out}"
    );
    for words in [
        "token \"tpm-ed\"",
        "cannot generate an ed25519 key",
        "CKM_EC_EDWARDS_KEY_PAIR_GEN",
        "CKM_EDDSA",
        "No PIN was asked for or spent",
        "--type ecdsa-p256",
    ] {
        assert!(err.contains(words), "{words:?} missing from: {err}");
    }
    // Nothing was made.
    let listed: Value =
        serde_json::from_str(&tpm.ok(&["key", "list", &token.token_uri(), "--json"])).unwrap();
    assert_eq!(listed, json!([]));

    // P-256 on the same token works: the refusal was about the mechanism, not the token.
    tpm.generate(&token.uri("p256"), "ecdsa-p256");
}

/// python-tuf's key id for the public half of a PEM private key file.
const PY_KEYID_OF_PEM: &str = r#"
import sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import SSlibKey
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
print(SSlibKey.from_crypto(key.public_key()).keyid)
"#;

#[test]
fn keys_are_imported_with_tpm2_ptool_not_through_pkcs11_and_then_sign_with_python_tufs_key_id() {
    let tpm = Tpm::start();
    let token = tpm.token("tpm-import", "4711");
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("p256.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-out")
        .arg(&pem)
        .status()
        .expect("run openssl");
    assert!(st.success());

    // tpm2-pkcs11 creates no private key objects: refused with the way that works,
    // before any PIN.
    let (code, out, err, logins) =
        tpm.run_through_spy(&["key", "import", p(&pem), &token.uri("imported")]);
    assert_eq!((code, logins), (1, 0), "{out}{err}");
    assert!(
        err.contains("TPM 2.0 token (tpm2-pkcs11)")
            && err.contains("No PIN was asked for or spent")
            && err.contains("tpm2_ptool import --label tpm-import"),
        "{err}"
    );

    // The way the message shows: the key is then on the token, and tufkey signs with
    // it under the key id python-tuf computes from the PEM file.
    let st = tpm
        .command("tpm2_ptool")
        .args([
            "import",
            "--label",
            "tpm-import",
            "--key-label",
            "imported",
            "--algorithm",
            "ecc",
            "--userpin",
            &token.pin,
            "--privkey",
            p(&pem),
            "--path",
        ])
        .arg(tpm.dir.path().join("store"))
        .output()
        .expect("run tpm2_ptool import");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let shown: Value =
        serde_json::from_str(&tpm.ok(&["key", "show", &token.uri("imported"), "--json"])).unwrap();
    let python_keyid = python_tuf(PY_KEYID_OF_PEM, &[p(&pem)]);
    assert_eq!(shown["keyid"].as_str().unwrap(), python_keyid.trim());
    let key = (
        token.uri("imported"),
        shown["keyid"].as_str().unwrap().to_string(),
        shown["key"].clone(),
    );
    let root = signed_root(&tpm, dir.path(), &[key]);
    assert_eq!(python_tuf_on(&root)["verified"], true);
}

/// TPM2_PT_MAX_AUTH_FAIL of the running TPM: wrong PINs before its lockout.
fn max_auth_fail(tpm: &Tpm) -> u32 {
    let out = tpm
        .command("tpm2_getcap")
        .arg("properties-variable")
        .output()
        .expect("run tpm2_getcap");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("TPM2_PT_MAX_AUTH_FAIL"))
        .unwrap_or_else(|| panic!("tpm2_getcap shows TPM2_PT_MAX_AUTH_FAIL: {text}"));
    let hex = line.rsplit("0x").next().unwrap().trim();
    u32::from_str_radix(hex, 16).unwrap()
}

#[test]
fn wrong_pins_count_toward_the_tpms_lockout_which_is_explained_and_never_an_so_pin_matter() {
    let tpm = Tpm::start();
    let token = tpm.token("tpm-pin", "4711");
    let other = tpm.token("tpm-other", "1234");
    let key = tpm.generate(&token.uri("k"), "ecdsa-p256");
    let other_key = tpm.generate(&other.uri("k"), "ecdsa-p256");
    let dir = tempfile::tempdir().unwrap();
    let root = one_key_root(dir.path(), &key);
    let before = snapshot(dir.path());
    let wrong = token.with_pin(&key.0, "wrong-pin-5813");
    let limit = max_auth_fail(&tpm);
    assert!(
        limit >= 2,
        "a TPM that locks at the first wrong PIN: {limit}"
    );

    // A wrong PIN: one C_Login, the TPM's counting explained, the PIN never printed.
    let (code, _, err, logins) = tpm.run_through_spy(&["sign", p(&root), "--key", &wrong]);
    assert_eq!((code, logins), (1, 1), "{err}");
    assert!(
        err.contains("wrong PIN for token \"tpm-pin\"")
            && err.contains("the TPM counts wrong PINs over all its tokens"),
        "{err}"
    );
    assert!(
        !err.contains("5813"),
        "the PIN must never be printed: {err}"
    );
    assert_eq!(snapshot(dir.path()), before);
    // The right PIN still signs.
    tpm.ok(&["sign", p(&root), "--key", &key.0]);
    let signed = snapshot(dir.path());

    // The TPM's dictionary-attack counter is one for the whole TPM: wrong PINs on one
    // token lock the other token's right PIN out too, and the SO PIN is no way out.
    for _ in 1..limit {
        let (code, err) = tpm.fails(&["sign", p(&root), "--key", &wrong]);
        assert_eq!(code, 1, "{err}");
    }
    let other_root_dir = tempfile::tempdir().unwrap();
    let other_root = one_key_root(other_root_dir.path(), &other_key);
    let other_before = snapshot(other_root_dir.path());
    let (code, err) = tpm.fails(&["sign", p(&other_root), "--key", &other_key.0]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is locked")
            && err.contains("dictionary-attack lockout")
            && err.contains("tpm2_dictionarylockout --clear-lockout")
            && !err.contains("SO PIN"),
        "{err}"
    );
    assert_eq!(snapshot(other_root_dir.path()), other_before);
    assert_eq!(snapshot(dir.path()), signed);
}

/// A running `tufkey serve` on this TPM.
struct Serve {
    child: Child,
    client: Client,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(tpm: &Tpm, dir: &Path, key: &(String, String, Value), ca: &harness::daemon::Ca) -> Serve {
    let config = dir.join("signer.toml");
    std::fs::write(
        &config,
        signer_toml(
            "state = \"state.json\"\naudit = \"audit.jsonl\"",
            "",
            &[&key.0],
            &[client_policy(
                "ci",
                &[&key.1],
                &["*"],
                &["timestamp"],
                "7d",
                "",
            )],
        ),
    )
    .unwrap();
    let ready = dir.join("serve.ready");
    let log = dir.join("serve.log");
    let mut c = tpm.tufkey();
    c.args(["serve", "--config", p(&config), "--ready-file", p(&ready)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = c.spawn().expect("start tufkey serve");
    let until = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&ready) {
            break addr;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "tufkey serve exited with {st}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < until, "tufkey serve did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (cert, key_file) = ca.issue(dir, "ci", "ci", false, false);
    let tls = ClientTls {
        ca: dir.join("client-ca.pem"),
        identity: Some((cert, key_file)),
    };
    let client = Client::new(&format!("https://{addr}"), &tls).unwrap();
    Serve { child, client, log }
}

fn timestamp(version: u64) -> Value {
    json!({
        "signed": {
            "_type": "timestamp", "spec_version": "1.0.31", "version": version,
            "expires": expires_in(86400), "meta": {"snapshot.json": {"version": version}},
        },
        "signatures": [],
    })
}

/// Asks the daemon to sign timestamp `version`: (HTTP status, answer).
fn sign_timestamp(s: &Serve, key_id: &str, version: u64) -> (u16, Value) {
    let r = s
        .client
        .post_json(
            "/v1/sign",
            &json!({"repository": "acme", "key_id": key_id, "metadata": timestamp(version)}),
        )
        .unwrap();
    (r.status, r.json())
}

/// python-tuf checks one signature of `doc` with `key`.
fn python_tuf_checks_signature(doc: &Value, keyid: &str, key: &Value, sig: &Value, dir: &Path) {
    let mut signed = doc.clone();
    signed["signatures"] = json!([{"keyid": keyid, "sig": sig}]);
    let file = dir.join(format!("ts-{}.json", doc["signed"]["version"]));
    std::fs::write(&file, serde_json::to_vec(&signed).unwrap()).unwrap();
    python_tuf(
        r#"
import json, sys
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata
md = Metadata.from_file(sys.argv[1])
SSlibKey.from_dict(sys.argv[2], json.loads(sys.argv[3])).verify_signature(md.signatures[sys.argv[2]], md.signed_bytes)
"#,
        &[p(&file), keyid, &key.to_string()],
    );
}

#[test]
fn a_signer_daemon_signs_with_a_tpm_key_and_recovers_after_the_resource_manager_restarts() {
    let tpm = Tpm::start();
    let token = tpm.token("tpm-online", "4711");
    let key = tpm.generate(&token.uri("ts"), "ecdsa-p256");
    let (dir, ca) = daemon_folder("tufkey-tpm-serve-");
    let s = serve(&tpm, dir.path(), &key, &ca);

    let (status, v) = sign_timestamp(&s, &key.1, 1);
    assert_eq!(status, 200, "{v}");
    python_tuf_checks_signature(&timestamp(1), &key.1, &key.2, &v["sig"], dir.path());

    // The resource manager goes away (crash, upgrade): the daemon says the device is
    // unavailable rather than signing wrongly or hanging.
    tpm.stop_abrmd();
    let (status, v) = sign_timestamp(&s, &key.1, 2);
    assert_eq!(status, 503, "unavailable while tpm2-abrmd is down: {v}");
    // Health asks the TPM itself (tpm2-pkcs11 answers token info from its store).
    let h = s.client.get("/healthz").unwrap();
    assert_eq!(h.status, 503, "{}", String::from_utf8_lossy(&h.body));
    assert_eq!(h.json()["unavailable"][0]["keyid"], key.1.as_str());

    // It comes back: the daemon re-initialises the module, logs in again with the PIN
    // it holds, and signs — without a restart.
    tpm.start_abrmd();
    let until = Instant::now() + Duration::from_secs(60);
    let mut version = 3;
    let v = loop {
        let (status, v) = sign_timestamp(&s, &key.1, version);
        if status == 200 {
            break v;
        }
        assert_eq!(status, 503, "only 'unavailable' while recovering: {v}");
        assert!(
            Instant::now() < until,
            "the daemon did not recover: {v}\n{}",
            std::fs::read_to_string(&s.log).unwrap_or_default()
        );
        version += 1;
        std::thread::sleep(Duration::from_millis(500));
    };
    python_tuf_checks_signature(&timestamp(version), &key.1, &key.2, &v["sig"], dir.path());
    let h = s.client.get("/healthz").unwrap();
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&h.body));
}
