//! Leaving Notary: `tufkey notary keys | import-key | verify | migrate` on Notary's own
//! compatibility fixtures (hsm-tests/notary-fixtures, passphrase `randompass`), keys
//! imported into SoftHSM through the real module (and P-256 keys into the virtual
//! YubiKey, needing `TUFKEY_TEST_PIV_CA`), and the migrated repository read by python-tuf's
//! ngclient over loopback HTTP.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use harness::clients::{ngclient, HttpRepo};
use harness::*;
use p256::ecdsa::signature::Verifier;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, EncodePublicKey};
use x509_cert::der::{Decode, Encode};

const PASS: &str = "randompass";
const PASS_ENV: &str = "TUFKEY_NOTARY_PASSPHRASE";
/// The one target both fixtures sign (Notary's own LICENSE file).
const LICENSE_SHA256: &str = "9395bac6fccb26bcb55efb083d1b4b0fe72a1c25f959f056c016120b3bb56a62";

/// One of Notary's fixture repositories: its folder, GUN, a time at which all of it was
/// valid (Notary's client refuses expired data; these expired since), and its private
/// keys by Notary key id with their role.
struct Fixture {
    name: &'static str,
    gun: &'static str,
    valid_at: &'static str,
    keys: [(&'static str, &'static str); 3],
}

const NOTARY_01: Fixture = Fixture {
    name: "notary0.1",
    gun: "docker.com/notary0.1/samplerepo",
    valid_at: "2016-02-10T00:00:00Z",
    keys: [
        (
            "604cb6ddb8f33f974bc1785e45d9e209f8b31c5e054e5bf79f394443ec687012",
            "root",
        ),
        (
            "01305346e99b0e997fc97e626095835e99b076d9fa3c52d8fbaea6c093e28c2f",
            "targets",
        ),
        (
            "3860144e902fa14e0590e149f735ace9287b0e5fdd43de3620811c70f00ffa12",
            "snapshot",
        ),
    ],
};

const NOTARY_03: Fixture = Fixture {
    name: "notary0.3",
    gun: "docker.com/notary0.3/samplerepo",
    valid_at: "2017-01-01T00:00:00Z",
    keys: [
        (
            "a9316b11307336232474e3f6c6d3915adfc2b6c2002ef4b2b4cafb1cf4838692",
            "root",
        ),
        (
            "e97dda6e8d9b5e3774422d230c497c8e3cc8bf4d530559d517a7456037c57554",
            "targets",
        ),
        (
            "6fd86dc5beb889760ec56cefb4b29334ffbb98b2f4de05a9e40affa3688b04fa",
            "snapshot",
        ),
    ],
};

const FIXTURES: [&Fixture; 2] = [&NOTARY_01, &NOTARY_03];

impl Fixture {
    fn dir(&self) -> PathBuf {
        repo().join("hsm-tests/notary-fixtures").join(self.name)
    }

    fn metadata(&self, dir: &Path, role: &str) -> PathBuf {
        dir.join("tuf")
            .join(self.gun)
            .join("metadata")
            .join(format!("{role}.json"))
    }

    /// A writable copy of the fixture, for tampering and deleting.
    fn copy(&self, into: &Path) -> PathBuf {
        let to = into.join(self.name);
        copy_tree(&self.dir(), &to);
        to
    }

    /// The public key Notary's own root.json lists for `role` (the certificate's key
    /// for root), decoded here with the p256 and x509-cert crates, not tufkey's code.
    fn notary_public_key(&self, role: &str) -> p256::ecdsa::VerifyingKey {
        let root = read_json(&self.metadata(&self.dir(), "root"));
        let id = root["signed"]["roles"][role]["keyids"][0].as_str().unwrap();
        let key = &root["signed"]["keys"][id];
        let public = b64(key["keyval"]["public"].as_str().unwrap());
        let spki = if key["keytype"] == "ecdsa-x509" {
            let pem = String::from_utf8(public).unwrap();
            let (_, der) = x509_cert::der::pem::decode_vec(pem.as_bytes()).unwrap();
            let cert = x509_cert::Certificate::from_der(&der).unwrap();
            cert.tbs_certificate
                .subject_public_key_info
                .to_der()
                .unwrap()
        } else {
            public
        };
        p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap()
    }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `tufkey ARGS` with the Notary passphrase `pass` in the environment (None: unset).
fn notary(hsm: Option<&SoftHsm>, pass: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = tufkey(hsm);
    c.args(args);
    if let Some(p) = pass {
        c.env(PASS_ENV, p);
    }
    run(c)
}

fn notary_ok(hsm: Option<&SoftHsm>, args: &[&str]) -> String {
    let (code, out, err) = notary(hsm, Some(PASS), args);
    assert_eq!(
        code, 0,
        "tufkey {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn listed(dir: &Path, pass: Option<&str>, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "notary", "keys", p(dir)];
    args.extend_from_slice(extra);
    let (_, out, err) = notary(None, pass, &args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    v["keys"].as_array().unwrap().clone()
}

// ---- notary keys --------------------------------------------------------------------

#[test]
fn every_private_key_of_both_fixtures_is_listed_with_its_role_gun_and_both_key_ids() {
    for f in FIXTURES {
        let rows = listed(&f.dir(), Some(PASS), &[]);
        let got: BTreeMap<String, (String, String)> = rows
            .iter()
            .map(|r| {
                assert!(r["problem"].is_null(), "{}: {r}", f.name);
                // The id Notary computes from the decrypted key is the one in its file name.
                assert_eq!(r["notary_keyid"], r["file_keyid"], "{}: {r}", f.name);
                assert_eq!(r["algorithm"], "ecdsa-p256");
                (
                    r["file_keyid"].as_str().unwrap().to_string(),
                    (
                        r["role"].as_str().unwrap().to_string(),
                        r["gun"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        let want: BTreeMap<String, (String, String)> = f
            .keys
            .iter()
            .map(|(id, role)| (id.to_string(), (role.to_string(), f.gun.to_string())))
            .collect();
        assert_eq!(got, want, "{}", f.name);
        // The TUF key id is python-tuf's: SHA-256 of the securesystemslib key JSON of the
        // same public key that Notary's root.json lists for that role.
        for r in &rows {
            let role = r["role"].as_str().unwrap();
            let pem = f
                .notary_public_key(role)
                .to_public_key_pem(spki::der::pem::LineEnding::LF)
                .unwrap();
            let tuf_id = python_tuf(
                "import sys,json,hashlib\nfrom securesystemslib.formats import encode_canonical\nk={'keytype':'ecdsa','scheme':'ecdsa-sha2-nistp256','keyval':{'public':sys.argv[1]}}\nprint(hashlib.sha256(encode_canonical(k).encode()).hexdigest())",
                &[&pem],
            );
            assert_eq!(
                r["tuf_keyid"].as_str().unwrap(),
                tuf_id.trim(),
                "{}: {role}",
                f.name
            );
        }
    }
}

#[test]
fn keys_without_the_passphrase_still_shows_role_gun_and_where_each_came_from() {
    let rows = listed(&NOTARY_01.dir(), None, &["--no-decrypt"]);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r["tuf_keyid"].is_null());
        assert_eq!(r["layout"], "notary 0.1 (role in file name)");
        assert_eq!(r["format"], "legacy PEM (SEC1, AES-CBC)");
    }
    let root = rows.iter().find(|r| r["role"] == "root").unwrap();
    // 0.1 root keys carry no GUN: it comes from the root.json whose certificate holds the key.
    assert_eq!(root["gun_from"], "trust-data");
    assert_eq!(root["gun"], NOTARY_01.gun);
    let targets = rows.iter().find(|r| r["role"] == "targets").unwrap();
    assert_eq!(targets["role_from"], "file-name");
    assert_eq!(targets["gun_from"], "path");
    let rows = listed(&NOTARY_03.dir(), None, &["--no-decrypt"]);
    assert!(rows.iter().all(|r| r["role_from"] == "header"), "{rows:?}");
}

#[test]
fn a_wrong_passphrase_is_named_per_key_and_fails_the_listing() {
    let (code, out, _) = notary(
        None,
        Some("not-it"),
        &["notary", "keys", p(&NOTARY_03.dir())],
    );
    assert_eq!(code, 1);
    assert_eq!(out.matches("wrong passphrase").count(), 3, "{out}");
}

#[test]
fn a_passphrase_per_kind_of_key_is_read_from_its_own_variable_first() {
    // Notary asked for a root passphrase and a repository one; so can the environment.
    let mut c = tufkey(None);
    c.args(["--json", "notary", "keys", p(&NOTARY_03.dir())])
        .env(PASS_ENV, "the-repository-one")
        .env(format!("{PASS_ENV}_ROOT"), PASS);
    let (code, out, _) = run(c);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    for r in v["keys"].as_array().unwrap() {
        if r["role"] == "root" {
            assert!(r["problem"].is_null(), "{r}");
        } else {
            assert!(
                r["problem"].as_str().unwrap().contains("wrong passphrase"),
                "{r}"
            );
        }
    }
}

#[test]
fn damaged_and_unknown_key_files_are_named_with_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = NOTARY_03.copy(tmp.path());
    let keys = dir.join("private/tuf_keys").join(NOTARY_03.gun);
    let targets = keys.join(format!("{}.key", NOTARY_03.keys[1].0));
    let text = std::fs::read_to_string(&targets).unwrap();
    // Cut short: the END line is gone.
    std::fs::write(&targets, &text[..text.len() / 2]).unwrap();
    // Not a key at all, and a PEM block of a kind Notary never wrote.
    std::fs::write(keys.join("0000000000000000.key"), "hello").unwrap();
    std::fs::write(
        keys.join("1111111111111111.key"),
        "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let rows = listed(&dir, Some(PASS), &[]);
    let problem = |id: &str| {
        rows.iter()
            .find(|r| r["file_keyid"] == id)
            .and_then(|r| r["problem"].as_str())
            .unwrap_or_else(|| panic!("no problem shown for {id}: {rows:?}"))
            .to_string()
    };
    let cut = problem(NOTARY_03.keys[1].0);
    assert!(
        cut.contains(p(&targets)) && cut.contains("cut short"),
        "{cut}"
    );
    assert!(problem("0000000000000000").contains("no PEM block"));
    assert!(problem("1111111111111111").contains("`CERTIFICATE` PEM block is not a private key"));
    // The good keys are still listed with their ids.
    assert!(rows
        .iter()
        .any(|r| r["file_keyid"] == NOTARY_03.keys[0].0 && r["problem"].is_null()));
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let before = snapshot(&dir);
    let (code, msg) = fails_with_pass(
        &hsm,
        &[
            "notary",
            "import-key",
            p(&dir),
            &NOTARY_03.keys[1].0[..12],
            &token.uri("targets"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        msg.contains(p(&targets)) && msg.contains("cut short"),
        "{msg}"
    );
    assert_eq!(snapshot(&dir), before);
    assert_token_empty(&hsm, &token);
}

fn fails_with_pass(hsm: &SoftHsm, args: &[&str]) -> (i32, String) {
    let (code, out, err) = notary(Some(hsm), Some(PASS), args);
    assert_ne!(code, 0, "tufkey {args:?} should have failed:\n{out}");
    (code, format!("{err}{out}"))
}

/// The token holds no key objects (`tufkey key list` through the real module).
fn assert_token_empty(hsm: &SoftHsm, token: &harness::Token) {
    let out = ok(Some(hsm), &["--json", "key", "list", &token.token_uri()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(keys.is_empty(), "the token should hold no key: {out}");
}

// ---- notary import-key into SoftHSM ----------------------------------------------------

/// Imports `keyid` of `dir` into `uri`; returns the JSON import-key printed.
fn import(hsm: &SoftHsm, dir: &Path, keyid: &str, uri: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "notary", "import-key", p(dir), keyid, uri];
    args.extend_from_slice(extra);
    serde_json::from_str(&notary_ok(Some(hsm), &args)).unwrap()
}

/// Has `tufkey sign` sign a small targets document with the key at `uri` (SoftHSM
/// through the real module); returns the canonical bytes signed and the DER signature.
fn sign_on_device(hsm: &SoftHsm, uri: &str, what: &str, dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let file = dir.join(format!("{what}.json"));
    let signed = serde_json::json!({
        "_type": "targets", "spec_version": "1.0.31", "version": 1,
        "expires": next_year(), "targets": {}, "x-signed-by": what,
    });
    write_unsigned(&file, signed.clone());
    sign_with(Some(hsm), &file, &[uri]);
    let sig = read_json(&file)["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    (
        tufkey::tuf::cjson::to_canonical(&signed).unwrap(),
        hex::decode(sig).unwrap(),
    )
}

#[test]
fn every_notary_key_imported_into_softhsm_signs_what_notarys_own_root_json_key_verifies() {
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let work = tempfile::tempdir().unwrap();
    for f in FIXTURES {
        for (id, role) in f.keys {
            let label = format!("{}-{role}", f.name);
            let out = import(&hsm, &f.dir(), &id[..10], &token.uri(&label), &[]);
            assert_eq!(out["role"], role);
            assert_eq!(out["gun"], f.gun);
            assert_eq!(out["notary_keyid"], id);
            let (message, sig) =
                sign_on_device(&hsm, out["uri"].as_str().unwrap(), &label, work.path());
            let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
            f.notary_public_key(role)
                .verify(&message, &sig)
                .unwrap_or_else(|e| panic!("{} {role}: {e}", f.name));
            // The TUF key import-key printed is that same public key.
            let pem = out["key"]["keyval"]["public"].as_str().unwrap();
            assert_eq!(
                p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap(),
                f.notary_public_key(role)
            );
        }
    }
    assert_private_keys_stay_on_the_token(&hsm, &token, 6);
}

/// The imported private keys are private (invisible without a login), sensitive and not
/// extractable, each with its public key object beside it: read with OpenSC's
/// pkcs11-tool through the real module, not through tufkey.
fn assert_private_keys_stay_on_the_token(hsm: &SoftHsm, token: &harness::Token, count: usize) {
    let tool = |login: bool, kind: &str| {
        let mut c = std::process::Command::new("pkcs11-tool");
        c.env("SOFTHSM2_CONF", &hsm.conf).args([
            "--module",
            p(&softhsm_module()),
            "--token-label",
            &token.label,
            "--list-objects",
            "--type",
            kind,
        ]);
        if login {
            c.args(["--login", "--pin", &token.pin]);
        }
        let out = c.output().expect("pkcs11-tool (apt-get install opensc)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        tool(false, "privkey").matches("Private Key Object").count(),
        0
    );
    let private = tool(true, "privkey");
    assert_eq!(
        private.matches("Private Key Object").count(),
        count,
        "{private}"
    );
    for access in private
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Access:"))
    {
        let words: Vec<&str> = access.split(',').map(str::trim).collect();
        assert!(
            words.contains(&"sensitive") && !words.contains(&"extractable"),
            "{private}"
        );
    }
    assert_eq!(
        tool(false, "pubkey").matches("Public Key Object").count(),
        count
    );
}

#[test]
fn a_wrong_passphrase_says_so_and_writes_nothing() {
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let before = snapshot(&NOTARY_03.dir());
    let (code, out, err) = notary(
        Some(&hsm),
        Some("wrongpass"),
        &[
            "notary",
            "import-key",
            p(&NOTARY_03.dir()),
            "a9316b11",
            &token.uri("root"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("wrong passphrase") && err.contains("a9316b11307336"),
        "{err}"
    );
    assert_token_empty(&hsm, &token);
    assert_eq!(snapshot(&NOTARY_03.dir()), before);
}

#[test]
fn an_unknown_key_id_lists_the_ids_the_store_has() {
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let (code, msg) = fails_with_pass(
        &hsm,
        &[
            "notary",
            "import-key",
            p(&NOTARY_03.dir()),
            "deadbeef",
            &token.uri("x"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        msg.contains("no key with id deadbeef") && msg.contains("a9316b113073"),
        "{msg}"
    );
}

#[test]
fn the_source_key_file_is_kept_unless_delete_source_is_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = NOTARY_03.copy(tmp.path());
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let (id, _) = NOTARY_03.keys[2];
    let file = dir
        .join("private/tuf_keys")
        .join(NOTARY_03.gun)
        .join(format!("{id}.key"));
    let bytes = std::fs::read(&file).unwrap();
    import(&hsm, &dir, id, &token.uri("kept"), &[]);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "import without --delete-source changed the file"
    );
    // No terminal to confirm on and no --yes: refused before anything is imported.
    let (code, msg) = fails_with_pass(
        &hsm,
        &[
            "notary",
            "import-key",
            p(&dir),
            id,
            &token.uri("unconfirmed"),
            "--delete-source",
        ],
    );
    assert_eq!(code, 1);
    assert!(msg.contains("--yes"), "{msg}");
    assert!(file.exists());
    let out = import(
        &hsm,
        &dir,
        id,
        &token.uri("moved"),
        &["--delete-source", "--yes"],
    );
    assert_eq!(out["source_deleted"], true);
    assert!(!file.exists());
    assert_private_keys_stay_on_the_token(&hsm, &token, 2);
}

// ---- notary verify ----------------------------------------------------------------------

fn verify(dir: &Path, gun: &str, at: Option<&str>) -> (i32, Value) {
    let mut args = vec!["--json", "notary", "verify", p(dir), "--gun", gun];
    if let Some(t) = at {
        args.extend(["--at", t]);
    }
    let (code, out, err) = notary(None, None, &args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v)
}

fn problems(v: &Value) -> String {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn notary_verify_accepts_both_fixture_repositories_at_a_time_they_were_valid() {
    for f in FIXTURES {
        let (code, v) = verify(&f.dir(), f.gun, Some(f.valid_at));
        assert_eq!(code, 0, "{}: {}", f.name, problems(&v));
        assert_eq!(v["verified"], true);
        let roles: Vec<&str> = v["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["root", "timestamp", "snapshot", "targets"]);
        assert_eq!(v["targets"]["LICENSE"], "targets");
    }
}

#[test]
fn a_root_certificate_close_to_expiry_verifies_with_a_warning() {
    let (code, v) = verify(
        &NOTARY_03.dir(),
        NOTARY_03.gun,
        Some("2026-03-01T00:00:00Z"),
    );
    assert_eq!(code, 0, "{}", problems(&v));
    assert!(
        v["warnings"]
            .to_string()
            .contains("expires at 2026-07-23T21:31:26+00:00, within 182 days"),
        "{v}"
    );
    let (_, v) = verify(&NOTARY_03.dir(), NOTARY_03.gun, Some(NOTARY_03.valid_at));
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn notary_verify_today_refuses_what_has_expired_since_as_notarys_client_does() {
    for f in FIXTURES {
        let (code, v) = verify(&f.dir(), f.gun, None);
        assert_eq!(code, 3, "{}", f.name);
        let p = problems(&v);
        // Both root certificates expired in 2026.
        assert!(
            p.contains("expired at 2026-")
                && p.contains("Notary's client refuses an expired root certificate"),
            "{p}"
        );
    }
    let (_, v) = verify(&NOTARY_01.dir(), NOTARY_01.gun, None);
    assert!(problems(&v)
        .contains("timestamp.json: role timestamp expired at 2016-02-17T23:22:35.661611395Z"));
    assert!(problems(&v).contains("use --at"));
}

/// Rewrites one metadata file of a copy of `f` with `change` applied to its JSON.
fn tampered(f: &Fixture, tmp: &Path, role: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = f.copy(tmp);
    let path = f.metadata(&dir, role);
    let mut v = read_json(&path);
    change(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    dir
}

#[test]
fn a_changed_target_hash_is_refused() {
    for f in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tampered(f, tmp.path(), "targets", |v| {
            v["signed"]["targets"]["LICENSE"]["hashes"]["sha256"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        });
        let (code, v) = verify(&dir, f.gun, Some(f.valid_at));
        assert_eq!(code, 3, "{}", f.name);
        let p = problems(&v);
        assert!(
            p.contains("the signature by targets key") && p.contains("does not verify"),
            "{p}"
        );
        assert!(
            p.contains("the sha256 of") && p.contains("targets.json"),
            "{p}"
        );
    }
}

#[test]
fn a_removed_signature_is_refused() {
    for f in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tampered(f, tmp.path(), "snapshot", |v| {
            v["signatures"] = Value::Array(vec![]);
        });
        let (code, v) = verify(&dir, f.gun, Some(f.valid_at));
        assert_eq!(code, 3);
        assert!(
            problems(&v).contains("0 valid signature(s) by snapshot keys where the threshold is 1"),
            "{}",
            problems(&v)
        );
    }
}

/// The other fixture's root certificate, which is valid but names another GUN.
fn other_certificate() -> String {
    let root = read_json(&NOTARY_03.metadata(&NOTARY_03.dir(), "root"));
    root["signed"]["keys"]["a367e24141e771fe071a669ec73d0b3edf860459c698d29b6d0793cc4a36695d"]
        ["keyval"]["public"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_swapped_root_certificate_is_refused() {
    // In root.json itself: the certificate under the root key id is another one.
    let tmp = tempfile::tempdir().unwrap();
    let id = "e49372530f68d233a66fa27470dc5dcb64baca1054a7fd8bf9814db36ad6ed6b";
    let dir = tampered(&NOTARY_01, tmp.path(), "root", |v| {
        v["signed"]["keys"][id]["keyval"]["public"] = Value::String(other_certificate());
    });
    let (code, v) = verify(&dir, NOTARY_01.gun, Some(NOTARY_01.valid_at));
    assert_eq!(code, 3);
    let p = problems(&v);
    assert!(
        p.contains(&format!("key {id} is listed under the wrong id")),
        "{p}"
    );
    assert!(p.contains("0 valid signature(s) by root keys"), "{p}");
    // The certificate pinned for the GUN (Notary 0.1's trusted_certificates) swapped.
    let tmp = tempfile::tempdir().unwrap();
    let dir = NOTARY_01.copy(tmp.path());
    let pinned = dir
        .join("trusted_certificates")
        .join(NOTARY_01.gun)
        .join(format!("{id}.crt"));
    std::fs::write(&pinned, b64(&other_certificate())).unwrap();
    let (code, v) = verify(&dir, NOTARY_01.gun, Some(NOTARY_01.valid_at));
    assert_eq!(code, 3);
    assert!(
        problems(&v).contains("the root certificate was swapped"),
        "{}",
        problems(&v)
    );
    // A root certificate whose CN is not the GUN.
    let tmp = tempfile::tempdir().unwrap();
    let dir = NOTARY_03.copy(tmp.path());
    let moved = dir.join("tuf/docker.com/elsewhere");
    std::fs::rename(dir.join("tuf").join(NOTARY_03.gun), &moved).unwrap();
    let (code, v) = verify(&dir, "docker.com/elsewhere", Some(NOTARY_03.valid_at));
    assert_eq!(code, 3);
    assert!(
        problems(&v).contains("CN to be the GUN `docker.com/elsewhere`"),
        "{}",
        problems(&v)
    );
}

// ---- notary migrate -> ceremony -> repository -> ngclient --------------------------------

/// The fixture's targets as TUF 1.0 writes them: hex instead of Notary's base64.
fn fixture_targets_in_tuf_form(f: &Fixture) -> Value {
    let targets = read_json(&f.metadata(&f.dir(), "targets"));
    let mut out = serde_json::Map::new();
    for (path, entry) in targets["signed"]["targets"].as_object().unwrap() {
        let mut hashes = serde_json::Map::new();
        for (alg, h) in entry["hashes"].as_object().unwrap() {
            hashes.insert(
                alg.clone(),
                Value::String(hex::encode(b64(h.as_str().unwrap()))),
            );
        }
        out.insert(
            path.clone(),
            serde_json::json!({"length": entry["length"], "hashes": hashes}),
        );
    }
    Value::Object(out)
}

#[test]
fn migrate_writes_the_fixture_targets_and_refuses_tampered_data_or_a_used_folder() {
    for f in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        notary_ok(
            None,
            &[
                "notary",
                "migrate",
                p(&f.dir()),
                "--gun",
                f.gun,
                "--out",
                p(&out),
                "--at",
                f.valid_at,
            ],
        );
        assert_eq!(
            read_json(&out.join("targets.json")),
            fixture_targets_in_tuf_form(f),
            "{}",
            f.name
        );
        let record = read_json(&out.join("migration.json"));
        assert_eq!(record["gun"], f.gun);
        let ceremony_root = read_json(&out.join("ceremony/root.json"));
        for (role, want) in [
            ("root", 1),
            ("targets", 1),
            ("snapshot", 1),
            ("timestamp", 0),
        ] {
            let ids = ceremony_root["signed"]["roles"][role]["keyids"]
                .as_array()
                .unwrap();
            assert_eq!(ids.len(), want, "{} {role}: {ceremony_root}", f.name);
        }
        // A second run into the same folder is refused and changes nothing.
        let before = snapshot(&out);
        let (code, _, err) = notary(
            None,
            None,
            &[
                "notary",
                "migrate",
                p(&f.dir()),
                "--gun",
                f.gun,
                "--out",
                p(&out),
                "--at",
                f.valid_at,
            ],
        );
        assert_eq!(code, 1);
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(snapshot(&out), before);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tampered(&NOTARY_03, tmp.path(), "targets", |v| {
        v["signed"]["targets"]["LICENSE"]["length"] = Value::from(1);
    });
    let out = tmp.path().join("out");
    let (code, _, err) = notary(
        None,
        None,
        &[
            "notary",
            "migrate",
            p(&dir),
            "--gun",
            NOTARY_03.gun,
            "--out",
            p(&out),
            "--at",
            NOTARY_03.valid_at,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("does not verify, so it is not migrated"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn after_migrate_a_ceremony_and_repo_commit_ngclient_downloads_license_with_notarys_sha256() {
    for f in FIXTURES {
        migrate_ceremony_commit_download(f);
    }
}

fn migrate_ceremony_commit_download(f: &Fixture) {
    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    // 1. Notary's keys into the token.
    let mut uris = BTreeMap::new();
    for (id, role) in f.keys {
        let out = import(&hsm, &f.dir(), id, &token.uri(role), &[]);
        uris.insert(role, out["uri"].as_str().unwrap().to_string());
    }
    // 2. The migration: a ceremony with those keys, the targets manifest.
    let out = w.join("migration");
    notary_ok(
        Some(&hsm),
        &[
            "notary",
            "migrate",
            p(&f.dir()),
            "--gun",
            f.gun,
            "--out",
            p(&out),
            "--at",
            f.valid_at,
        ],
    );
    let ceremony = out.join("ceremony");
    // 3. The ceremony: a new timestamp key (Notary's server held the old one), the root signs.
    let (ts_uri, _, _) = generate(Some(&hsm), &token.uri("timestamp"), "ecdsa-p256", &[]);
    ok(
        Some(&hsm),
        &[
            "ceremony",
            "add-key",
            p(&ceremony),
            "--role",
            "timestamp",
            "--key",
            &ts_uri,
        ],
    );
    let roots = w.join("roots");
    ok(
        Some(&hsm),
        &[
            "ceremony",
            "run",
            p(&ceremony),
            "--out",
            p(&roots),
            "--yes",
            "--key",
            &uris["root"],
        ],
    );
    // 4. The repository: Notary's targets, the file itself, commit with the imported keys.
    let repo_dir = w.join("repo");
    ok(
        Some(&hsm),
        &[
            "repo",
            "init",
            p(&repo_dir),
            "--root",
            p(&roots.join("1.root.json")),
            "--key",
            &format!("targets={}", uris["targets"]),
            "--key",
            &format!("snapshot={}", uris["snapshot"]),
            "--key",
            &format!("timestamp={ts_uri}"),
        ],
    );
    ok(
        Some(&hsm),
        &[
            "repo",
            "add",
            p(&repo_dir),
            "--manifest",
            p(&out.join("targets.json")),
        ],
    );
    let license = repo().join("hsm-tests/notary-fixtures/LICENSE");
    ok(
        Some(&hsm),
        &[
            "repo",
            "add",
            p(&repo_dir),
            p(&license),
            "--path",
            "LICENSE",
        ],
    );
    ok(Some(&hsm), &["repo", "commit", p(&repo_dir)]);
    // 5. python-tuf's client, trusting the new root, downloads LICENSE.
    let notary_sha = hex::encode(b64(read_json(&f.metadata(&f.dir(), "targets"))["signed"]
        ["targets"]["LICENSE"]["hashes"]["sha256"]
        .as_str()
        .unwrap()));
    assert_eq!(notary_sha, LICENSE_SHA256);
    let http = HttpRepo::serve(&repo_dir);
    let got = ngclient(&http, &roots.join("1.root.json"), &w.join("ngclient")).download("LICENSE");
    assert_eq!(got.delivered(), (11309, notary_sha.clone()));
    let delivered = std::fs::read(w.join("ngclient/targets/LICENSE")).ok();
    if let Some(bytes) = delivered {
        assert_eq!(hex::encode(Sha256::digest(bytes)), notary_sha);
    }
    // The published targets role is signed by the key that signed Notary's targets.json.
    let published = read_json(&repo_dir.join("metadata/1.targets.json"));
    let listed = read_json(&out.join("migration.json"))["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "targets")
        .unwrap()["tuf_id"]
        .clone();
    assert_eq!(published["signatures"][0]["keyid"], listed);
}

// ---- notary import-key into the virtual YubiKey (P-256) -----------------------------------

/// The virtual YubiKey's factory-default PIN.
const PIV_PIN: &str = "123456";

/// Whether the virtual card runs (hsm-tests/run.sh exports TUFKEY_TEST_PIV_CA once it
/// does); under CI=true a missing card fails the test instead of skipping it.
fn piv_card_running() -> bool {
    if std::env::var_os("TUFKEY_TEST_PIV_CA").is_some() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "the virtual PIV card did not start in CI: TUFKEY_TEST_PIV_CA is unset"
    );
    eprintln!("skipped: virtual PIV card not running (TUFKEY_TEST_PIV_CA unset); run ./hsm-tests/run.sh or /work/piv-test.sh");
    false
}

#[test]
fn notary_p256_keys_imported_into_the_virtual_yubikey_sign_what_notarys_root_json_verifies() {
    if !piv_card_running() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Other test files take free slots from 9a upwards; these take them from 95 down,
    // skipping any slot that already holds a key (import never overwrites one).
    let mut slots = (0x82u8..=0x95).rev();
    for f in FIXTURES {
        // Every key of both fixtures (all P-256): six of the twenty retired slots, so the
        // suite's other card tests keep enough free ones.
        for (id, role) in f.keys {
            let (uri, out) = loop {
                let slot = slots.next().expect("a free retired PIV slot (82-95)");
                let uri = format!("yubikey:slot={slot:02x}");
                let mut c = tufkey(None);
                c.args(["--json", "notary", "import-key", p(&f.dir()), id, &uri])
                    .env(PASS_ENV, PASS)
                    .env("TUFKEY_PIN", PIV_PIN);
                let (code, out, err) = run(c);
                if code == 0 {
                    break (uri, serde_json::from_str::<Value>(&out).unwrap());
                }
                assert!(
                    err.contains("already holds a key"),
                    "import into {uri} failed: {err}"
                );
            };
            assert_eq!(out["notary_keyid"], id);
            assert_eq!(out["role"], role);
            let file = work.path().join(format!("{}-{role}.json", f.name));
            write_unsigned(
                &file,
                serde_json::json!({
                    "_type": "targets", "spec_version": "1.0.31", "version": 1,
                    "expires": next_year(), "targets": {},
                }),
            );
            let mut c = tufkey(None);
            c.args(["sign", p(&file), "--key", &uri])
                .env("TUFKEY_PIN", PIV_PIN);
            let (code, _, err) = run(c);
            assert_eq!(code, 0, "signing with {uri}: {err}");
            let doc = read_json(&file);
            let message = tufkey::tuf::cjson::to_canonical(&doc["signed"]).unwrap();
            let sig = hex::decode(doc["signatures"][0]["sig"].as_str().unwrap()).unwrap();
            f.notary_public_key(role)
                .verify(&message, &p256::ecdsa::Signature::from_der(&sig).unwrap())
                .unwrap_or_else(|e| panic!("{} {role} in {uri}: {e}", f.name));
            assert_eq!(doc["signatures"][0]["keyid"], out["keyid"]);
        }
    }
    // Importing into a slot that now holds one of these keys is refused, naming the slot.
    let mut c = tufkey(None);
    c.args([
        "notary",
        "import-key",
        p(&NOTARY_03.dir()),
        NOTARY_03.keys[2].0,
        "yubikey:slot=95",
    ])
    .env(PASS_ENV, PASS)
    .env("TUFKEY_PIN", PIV_PIN);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.contains("slot 95 already holds a key"), "{err}");
}

// ---- Notary 0.4+ key stores: flat private/ with role and gun headers, PKCS#8 ---------------

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// A PEM block with Notary's `role` and `gun` headers inserted after its BEGIN line.
fn with_headers(pem: &[u8], role: &str, gun: &str) -> String {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    let (begin, rest) = text.split_once('\n').unwrap();
    // A legacy block already has headers (Proc-Type, DEK-Info) and a blank line.
    if rest.starts_with("Proc-Type") {
        format!("{begin}\nrole: {role}\ngun: {gun}\n{rest}")
    } else {
        format!("{begin}\nrole: {role}\ngun: {gun}\n\n{rest}")
    }
}

/// Notary's key id of a public key given as SPKI DER.
fn notary_id(keytype: &str, spki_der: &[u8]) -> String {
    let v = serde_json::json!({"keytype": keytype, "keyval": {"private": null,
        "public": base64::engine::general_purpose::STANDARD.encode(spki_der)}});
    // serde_json sorts object keys: this is the canonical form for strings and null.
    hex::encode(Sha256::digest(serde_json::to_vec(&v).unwrap()))
}

#[test]
fn keys_in_notarys_later_flat_layout_pkcs8_and_legacy_rsa_are_listed_and_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let private = tmp.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    let gun = "example.com/app";
    // The 0.3 targets key as Notary 0.4+ writes it: PKCS#8, PBES2 with PBKDF2-HMAC-SHA1
    // (2048 iterations) and AES-256-CBC, `role` and `gun` headers.
    let (ec_id, _) = NOTARY_03.keys[1];
    let source = NOTARY_03
        .dir()
        .join("private/tuf_keys")
        .join(NOTARY_03.gun)
        .join(format!("{ec_id}.key"));
    let plain = openssl(
        &["ec", "-in", p(&source), "-passin", &format!("pass:{PASS}")],
        b"",
    );
    let pkcs8 = openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-v2prf",
            "hmacWithSHA1",
            "-iter",
            "2048",
            "-passout",
            &format!("pass:{PASS}"),
        ],
        &plain,
    );
    std::fs::write(
        private.join(format!("{ec_id}.key")),
        with_headers(&pkcs8, "targets", gun),
    )
    .unwrap();
    // An RSA key in OpenSSL's legacy encrypted PKCS#1 form.
    let rsa = openssl(&["genrsa", "2048"], b"");
    let rsa_enc = openssl(
        &[
            "rsa",
            "-aes256",
            "-traditional",
            "-passout",
            &format!("pass:{PASS}"),
        ],
        &rsa,
    );
    let rsa_spki = openssl(&["rsa", "-pubout", "-outform", "DER"], &rsa);
    let rsa_id = notary_id("rsa", &rsa_spki);
    std::fs::write(
        private.join(format!("{rsa_id}.key")),
        with_headers(&rsa_enc, "snapshot", gun),
    )
    .unwrap();

    // A delegation key Notary stored without a passphrase: unencrypted PKCS#8.
    let (plain_id, _) = NOTARY_01.keys[1];
    let source = NOTARY_01
        .dir()
        .join("private/tuf_keys")
        .join(NOTARY_01.gun)
        .join(format!("{plain_id}_targets.key"));
    let plain = openssl(
        &["ec", "-in", p(&source), "-passin", &format!("pass:{PASS}")],
        b"",
    );
    let unencrypted = openssl(&["pkcs8", "-topk8", "-nocrypt"], &plain);
    std::fs::write(
        private.join(format!("{plain_id}.key")),
        with_headers(&unencrypted, "targets/releases", gun),
    )
    .unwrap();

    let rows = listed(tmp.path(), Some(PASS), &[]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (id, role, alg, format) in [
        (ec_id.to_string(), "targets", "ecdsa-p256", "PKCS#8 (PBES2)"),
        (
            rsa_id.clone(),
            "snapshot",
            "rsa-2048",
            "legacy PEM (PKCS#1, AES-CBC)",
        ),
        (
            plain_id.to_string(),
            "targets/releases",
            "ecdsa-p256",
            "PKCS#8 (unencrypted)",
        ),
    ] {
        let r = rows
            .iter()
            .find(|r| r["file_keyid"] == id.as_str())
            .unwrap();
        assert!(r["problem"].is_null(), "{r}");
        assert_eq!(r["notary_keyid"], id.as_str());
        assert_eq!(
            (r["role"].as_str(), r["gun"].as_str()),
            (Some(role), Some(gun))
        );
        assert_eq!(
            (r["role_from"].as_str(), r["gun_from"].as_str()),
            (Some("header"), Some("header"))
        );
        assert_eq!(r["algorithm"], alg);
        assert_eq!(r["format"], format);
        assert_eq!(r["layout"], "notary 0.4+ (role and gun headers)");
    }
    let rows = listed(tmp.path(), Some("wrong"), &[]);
    for r in &rows {
        let problem = r["problem"].as_str();
        if r["file_keyid"] == plain_id {
            assert_eq!(problem, None, "an unencrypted key needs no passphrase: {r}");
        } else {
            assert!(
                problem.unwrap_or_default().contains("wrong passphrase"),
                "{r}"
            );
        }
    }

    let hsm = SoftHsm::new();
    let token = hsm.token("notary", "1234");
    let ec = import(&hsm, tmp.path(), ec_id, &token.uri("ec"), &[]);
    assert_eq!(
        p256::ecdsa::VerifyingKey::from_public_key_pem(
            ec["key"]["keyval"]["public"].as_str().unwrap()
        )
        .unwrap(),
        NOTARY_03.notary_public_key("targets")
    );
    let rsa = import(&hsm, tmp.path(), &rsa_id, &token.uri("rsa"), &[]);
    assert_eq!(rsa["key"]["scheme"], "rsassa-pss-sha256");
    let pem = rsa["key"]["keyval"]["public"].as_str().unwrap();
    let der = spki::Document::from_public_key_pem(pem).unwrap();
    assert_eq!(der.as_bytes(), &rsa_spki[..]);
    assert_private_keys_stay_on_the_token(&hsm, &token, 2);
}

// ---- delegations, on a Notary repository made here ----------------------------------------

/// Notary's JSON of a P-256 public key and its Notary key id.
fn notary_ecdsa_key(k: &p256::ecdsa::SigningKey) -> (String, Value) {
    let der = k.verifying_key().to_public_key_der().unwrap();
    let v = serde_json::json!({"keytype": "ecdsa", "keyval": {"private": null,
        "public": base64::engine::general_purpose::STANDARD.encode(der.as_bytes())}});
    (notary_id("ecdsa", der.as_bytes()), v)
}

/// A Notary envelope: `signed` signed the way Notary signs (raw r‖s, base64, `method`).
fn notary_signed(signed: Value, signers: &[(&str, &p256::ecdsa::SigningKey)]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    let msg = tufkey::tuf::cjson::to_canonical(&signed).unwrap();
    let sigs: Vec<Value> = signers
        .iter()
        .map(|(id, k)| {
            let s: p256::ecdsa::Signature = k.sign(&msg);
            serde_json::json!({"keyid": id, "method": "ecdsa",
                "sig": base64::engine::general_purpose::STANDARD.encode(s.to_bytes())})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"signed": signed, "signatures": sigs})).unwrap()
}

fn meta(bytes: &[u8]) -> Value {
    serde_json::json!({"length": bytes.len(), "hashes": {
        "sha256": base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))}})
}

/// A Notary repository for `gun` with a delegation `targets/releases` (paths
/// `release/`) that lists one target inside its paths and one outside; returns its
/// trust folder.
fn notary_repo_with_delegation(into: &Path, gun: &str) -> PathBuf {
    use p256::pkcs8::DecodePrivateKey;
    use rcgen::{CertificateParams, DnType, KeyPair};
    let root_pair = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, gun);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&root_pair).unwrap();
    let root_key = p256::ecdsa::SigningKey::from_pkcs8_der(&root_pair.serialize_der()).unwrap();
    let cert_key = serde_json::json!({"keytype": "ecdsa-x509", "keyval": {"private": null,
        "public": base64::engine::general_purpose::STANDARD.encode(cert.pem())}});
    let cert_id = hex::encode(Sha256::digest(serde_json::to_vec(&cert_key).unwrap()));
    let new_key = || p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (targets_k, snapshot_k, timestamp_k, releases_k) =
        (new_key(), new_key(), new_key(), new_key());
    let [(t_id, t_pub), (s_id, s_pub), (ts_id, ts_pub), (r_id, r_pub)] =
        [&targets_k, &snapshot_k, &timestamp_k, &releases_k].map(notary_ecdsa_key);
    let expires = "2039-01-01T00:00:00Z";
    let role = |id: &str| serde_json::json!({"keyids": [id], "threshold": 1});
    let root = notary_signed(
        serde_json::json!({"_type": "Root", "consistent_snapshot": false, "expires": expires, "version": 1,
            "keys": {cert_id.clone(): cert_key, t_id.clone(): t_pub, s_id.clone(): s_pub, ts_id.clone(): ts_pub},
            "roles": {"root": role(&cert_id), "targets": role(&t_id), "snapshot": role(&s_id), "timestamp": role(&ts_id)}}),
        &[(&cert_id, &root_key)],
    );
    let file = |len: u64, byte: u8| {
        serde_json::json!({"length": len, "hashes": {
        "sha256": base64::engine::general_purpose::STANDARD.encode([byte; 32])}, "custom": {"by": "test"}})
    };
    let targets = notary_signed(
        serde_json::json!({"_type": "Targets", "expires": expires, "version": 3,
            "targets": {"LICENSE": file(11309, 1)},
            "delegations": {"keys": {r_id.clone(): r_pub},
                "roles": [{"name": "targets/releases", "keyids": [r_id], "threshold": 1, "paths": ["release/"]}]}}),
        &[(&t_id, &targets_k)],
    );
    let releases = notary_signed(
        serde_json::json!({"_type": "Targets", "expires": expires, "version": 2,
            "targets": {"release/app.tgz": file(42, 2), "other/stray.tgz": file(7, 3)},
            "delegations": {"keys": {}, "roles": []}}),
        &[(&r_id, &releases_k)],
    );
    let snapshot = notary_signed(
        serde_json::json!({"_type": "Snapshot", "expires": expires, "version": 3,
            "meta": {"root": meta(&root), "targets": meta(&targets), "targets/releases": meta(&releases)}}),
        &[(&s_id, &snapshot_k)],
    );
    let timestamp = notary_signed(
        serde_json::json!({"_type": "Timestamp", "expires": expires, "version": 3,
            "meta": {"snapshot": meta(&snapshot)}}),
        &[(&ts_id, &timestamp_k)],
    );
    let md = into.join("tuf").join(gun).join("metadata");
    std::fs::create_dir_all(md.join("targets")).unwrap();
    for (name, bytes) in [
        ("root", &root),
        ("targets", &targets),
        ("targets/releases", &releases),
        ("snapshot", &snapshot),
        ("timestamp", &timestamp),
    ] {
        std::fs::write(md.join(format!("{name}.json")), bytes).unwrap();
    }
    into.to_path_buf()
}

#[test]
fn delegated_roles_are_checked_with_their_keys_and_paths_and_migrated_as_their_own_manifest() {
    let gun = "example.com/delegated";
    let tmp = tempfile::tempdir().unwrap();
    let dir = notary_repo_with_delegation(&tmp.path().join("trust"), gun);
    let (code, v) = verify(&dir, gun, None);
    assert_eq!(code, 0, "{}", problems(&v));
    assert_eq!(v["targets"]["release/app.tgz"], "targets/releases");
    assert!(v["targets"].get("other/stray.tgz").is_none());
    assert!(v["warnings"]
        .to_string()
        .contains("other/stray.tgz is outside the paths delegated to targets/releases"));
    let releases = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "targets/releases")
        .unwrap();
    assert_eq!(
        (releases["version"].as_u64(), releases["ok"].as_bool()),
        (Some(2), Some(true))
    );

    let out = tmp.path().join("out");
    notary_ok(None, &["notary", "migrate", p(&dir), "--out", p(&out)]);
    let manifest = read_json(&out.join("delegated/releases.json"));
    assert_eq!(manifest["release/app.tgz"]["length"], 42);
    assert_eq!(
        manifest["release/app.tgz"]["hashes"]["sha256"],
        hex::encode([2u8; 32])
    );
    assert_eq!(
        manifest["release/app.tgz"]["custom"],
        serde_json::json!({"by": "test"})
    );
    assert!(manifest.get("other/stray.tgz").is_none());
    assert_eq!(
        read_json(&out.join("targets.json"))["LICENSE"]["hashes"]["sha256"],
        hex::encode([1u8; 32])
    );

    // The delegated role changed after signing: its signature and the snapshot disagree.
    let file = dir
        .join("tuf")
        .join(gun)
        .join("metadata/targets/releases.json");
    let mut doc = read_json(&file);
    doc["signed"]["targets"]["release/app.tgz"]["length"] = Value::from(43);
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let (code, v) = verify(&dir, gun, None);
    assert_eq!(code, 3);
    let p = problems(&v);
    assert!(
        p.contains("the signature by targets/releases key") && p.contains("does not verify"),
        "{p}"
    );
    assert!(
        p.contains("the sha256 of") && p.contains("but `meta.targets/releases` states"),
        "{p}"
    );
}
