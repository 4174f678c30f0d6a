//! The `tufkey` command line against throwaway SoftHSM tokens, through the real module.
//! Each test reads as a short story of what a user does and what they must see.

#[path = "harness/mod.rs"]
mod harness;

/// `--audit-log`: the CLI's audit entries, next to a running daemon and in PostgreSQL.
#[path = "audit.rs"]
mod audit;

use std::path::Path;

use harness::*;
use serde_json::{json, Value};

fn three_token_keys(hsm: &SoftHsm, token: &Token) -> Vec<(String, String, Value)> {
    [
        ("p256", "ecdsa-p256"),
        ("ed", "ed25519"),
        ("rsa", "rsa-3072"),
    ]
    .iter()
    .map(|(label, t)| generate(Some(hsm), &token.uri(label), t, &[]))
    .collect()
}

#[test]
fn keys_of_every_type_are_made_on_the_token_and_sign_a_root_that_verifies() {
    let hsm = SoftHsm::new();
    let token = hsm.token("root-a", "1234");
    let keys = three_token_keys(&hsm, &token);

    // `key list` needs no PIN and shows each key with its key id.
    let listed: Value = serde_json::from_str(&ok(
        Some(&hsm),
        &["key", "list", &token.token_uri(), "--json"],
    ))
    .unwrap();
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

    // `key show` gives the same key id, the TUF key and the SPKI PEM.
    let shown: Value =
        serde_json::from_str(&ok(Some(&hsm), &["key", "show", &keys[2].0, "--json"])).unwrap();
    assert_eq!(shown["keyid"], keys[2].1.as_str());
    assert_eq!(shown["key"]["scheme"], "rsassa-pss-sha256");
    assert!(shown["spki_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&keys, 3));
    let before: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    sign_with(Some(&hsm), &root, &[&keys[0].0, &keys[1].0, &keys[2].0]);

    let (code, v) = verify_json(Some(&hsm), &[root.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["checks"][0]["signed"].as_array().unwrap().len(), 3);
    // Unknown fields, PEM newlines included, are still there and were signed.
    let after: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    assert_eq!(after["signed"], before["signed"]);
}

#[test]
fn keys_made_on_the_token_are_sensitive_and_never_extractable() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            softhsm_module().to_str().unwrap(),
            "--token-label",
            "t",
            "--login",
            "--pin",
            "1234",
            "--list-objects",
            "--type",
            "privkey",
        ])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .expect("pkcs11-tool (package opensc)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("label:      k"), "{text}");
    assert!(
        text.contains("sensitive") && text.contains("never extractable"),
        "{text}"
    );
    assert!(!text.contains("  extractable"), "{text}");
}

#[test]
fn file_keys_of_every_type_sign_and_verify_and_a_wrong_passphrase_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("TUFKEY_PASSPHRASE", "correct horse")];
    let keys: Vec<_> = [
        ("a.p8", "ecdsa-p256"),
        ("b.p8", "ed25519"),
        ("c.p8", "rsa-3072"),
    ]
    .iter()
    .map(|(f, t)| {
        generate(
            None,
            &format!("file:{}", dir.path().join(f).display()),
            t,
            &env,
        )
    })
    .collect();
    // The private key file is encrypted PKCS#8, readable by its owner only.
    let pem = std::fs::read_to_string(dir.path().join("a.p8")).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("a.p8"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let listed: Value = serde_json::from_str(&ok(
        None,
        &[
            "key",
            "list",
            &format!("file:{}", dir.path().display()),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);

    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&keys, 3));
    let mut c = tufkey(None);
    c.args([
        "sign",
        root.to_str().unwrap(),
        "--key",
        &keys[0].0,
        "--key",
        &keys[1].0,
        "--key",
        &keys[2].0,
    ])
    .env("TUFKEY_PASSPHRASE", "correct horse");
    assert_eq!(run(c).0, 0);
    assert_eq!(verify_json(None, &[root.to_str().unwrap()]).0, 0);

    let before = snapshot(dir.path());
    let mut c = tufkey(None);
    c.args(["sign", root.to_str().unwrap(), "--key", &keys[0].0])
        .env("TUFKEY_PASSPHRASE", "wrong");
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("wrong passphrase") && err.contains("a.p8"),
        "{err}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_software_key_imported_into_the_token_keeps_its_key_id_and_signs_there() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let dir = tempfile::tempdir().unwrap();
    for (f, t) in [
        ("e.p8", "ecdsa-p256"),
        ("d.p8", "ed25519"),
        ("r.p8", "rsa-3072"),
    ] {
        let file = dir.path().join(f);
        let (_, file_keyid, key) = generate(
            None,
            &format!("file:{}", file.display()),
            t,
            &[("TUFKEY_PASSPHRASE", "pw")],
        );
        let mut c = tufkey(Some(&hsm));
        c.args([
            "key",
            "import",
            file.to_str().unwrap(),
            &token.uri(f),
            "--json",
        ])
        .env("TUFKEY_PASSPHRASE", "pw");
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{err}");
        let imported: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(imported["keyid"], file_keyid.as_str(), "{t}");

        // The token key now signs what the file key's public key verifies.
        let targets = dir.path().join(format!("{f}.targets.json"));
        write_unsigned(
            &targets,
            json!({"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": next_year(), "targets": {}}),
        );
        let root = dir.path().join(format!("{f}.root.json"));
        write_unsigned(
            &root,
            root_body(&[(String::new(), file_keyid.clone(), key)], 1),
        );
        ok(
            Some(&hsm),
            &[
                "sign",
                targets.to_str().unwrap(),
                "--key",
                imported["uri"].as_str().unwrap(),
            ],
        );
        assert_eq!(
            verify_json(
                Some(&hsm),
                &[targets.to_str().unwrap(), "--root", root.to_str().unwrap()]
            )
            .0,
            0,
            "{t}"
        );
    }
}

#[test]
fn signing_again_with_the_same_key_replaces_its_signature_and_keeps_the_others() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let keys = three_token_keys(&hsm, &token);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&keys, 2));
    // A signature by a key this root does not know is kept untouched.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    doc["signatures"] = json!([{"keyid": "00ff", "sig": "abcd", "x-extra": 1}]);
    std::fs::write(&root, serde_json::to_vec(&doc).unwrap()).unwrap();

    sign_with(Some(&hsm), &root, &[&keys[0].0, &keys[1].0]);
    let first: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    ok(
        Some(&hsm),
        &["sign", root.to_str().unwrap(), "--key", &keys[0].0],
    );
    let second: Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    let sigs = second["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 3, "{sigs:?}");
    assert_eq!(
        sigs[0],
        json!({"keyid": "00ff", "sig": "abcd", "x-extra": 1})
    );
    assert_eq!(
        sigs.iter()
            .filter(|s| s["keyid"] == keys[0].1.as_str())
            .count(),
        1
    );
    // ECDSA signatures are randomised by the token: the replacement is a new signature.
    assert_ne!(
        first["signatures"][1]["sig"],
        second["signatures"][1]["sig"]
    );
    assert_eq!(verify_json(Some(&hsm), &[root.to_str().unwrap()]).0, 0);
}

#[test]
fn payload_prints_the_canonical_bytes_that_signatures_cover() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    std::fs::write(&f, "{\"signatures\": [], \"signed\": {\"_type\": \"targets\", \"b\": \"x\\ny\\\"\", \"a\": [1, {\"d\": null, \"c\": true}]}}").unwrap();
    let out = ok(None, &["payload", f.to_str().unwrap()]);
    assert_eq!(
        out,
        "{\"_type\":\"targets\",\"a\":[1,{\"c\":true,\"d\":null}],\"b\":\"x\ny\\\"\"}"
    );
    let sha = ok(None, &["payload", f.to_str().unwrap(), "--sha256"]);
    assert_eq!(sha.trim().len(), 64);
}

#[test]
fn a_signature_made_elsewhere_is_added_only_after_it_verifies() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let keys = three_token_keys(&hsm, &token);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&keys, 1));
    // "Elsewhere": sign a copy, take the signature out of it.
    let copy = dir.path().join("copy.json");
    std::fs::copy(&root, &copy).unwrap();
    ok(
        Some(&hsm),
        &["sign", copy.to_str().unwrap(), "--key", &keys[1].0],
    );
    let signed: Value = serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
    let sig = signed["signatures"][0]["sig"].as_str().unwrap().to_string();

    // A corrupted signature is refused and nothing changes.
    let mut bad = sig.clone().into_bytes();
    bad[10] = if bad[10] == b'0' { b'1' } else { b'0' };
    let before = snapshot(dir.path());
    let (code, err) = fails(
        None,
        &[
            "add-signature",
            root.to_str().unwrap(),
            "--keyid",
            &keys[1].1,
            "--sig",
            std::str::from_utf8(&bad).unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("does not verify") && err.contains(&keys[1].1),
        "{err}"
    );
    assert_eq!(snapshot(dir.path()), before);
    // So is an unknown key id.
    let (_, err) = fails(
        None,
        &[
            "add-signature",
            root.to_str().unwrap(),
            "--keyid",
            "feed",
            "--sig",
            &sig,
        ],
    );
    assert!(err.contains("feed"), "{err}");

    ok(
        None,
        &[
            "add-signature",
            root.to_str().unwrap(),
            "--keyid",
            &keys[1].1,
            "--sig",
            &sig,
        ],
    );
    assert_eq!(verify_json(None, &[root.to_str().unwrap()]).0, 0);
}

#[test]
fn verify_names_who_signed_and_who_is_missing_and_fails_below_threshold() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let keys = three_token_keys(&hsm, &token);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&keys, 2));
    ok(
        Some(&hsm),
        &["sign", root.to_str().unwrap(), "--key", &keys[2].0],
    );
    let (code, v) = verify_json(None, &[root.to_str().unwrap()]);
    assert_eq!(code, 3, "not verified is exit code 3");
    assert_eq!(v["checks"][0]["signed"], json!([keys[2].1]));
    let mut missing: Vec<String> =
        serde_json::from_value(v["checks"][0]["missing"].clone()).unwrap();
    missing.sort();
    let mut want = vec![keys[0].1.clone(), keys[1].1.clone()];
    want.sort();
    assert_eq!(missing, want);
    // Human output says the same in words.
    let (_, text) = fails(None, &["verify", root.to_str().unwrap()]);
    assert!(
        text.contains("1 of threshold 2") && text.contains("NOT VERIFIED"),
        "{text}"
    );
}

#[test]
fn a_root_update_needs_both_thresholds_and_exactly_the_next_version() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let keys = three_token_keys(&hsm, &token);
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("1.root.json");
    write_unsigned(&v1, root_body(&keys[..2], 2));
    sign_with(Some(&hsm), &v1, &[&keys[0].0, &keys[1].0]);

    // v2 rotates key 0 out and key 2 in; threshold 2 of {1, 2}.
    let mut body = root_body(&keys[1..], 2);
    body["version"] = json!(2);
    let v2 = dir.path().join("2.root.json");
    write_unsigned(&v2, body.clone());
    // Signed by the new keys only: v1's threshold (keys 0, 1) is not met.
    sign_with(Some(&hsm), &v2, &[&keys[1].0, &keys[2].0]);
    let (code, v) = verify_json(
        None,
        &[v2.to_str().unwrap(), "--root", v1.to_str().unwrap()],
    );
    assert_eq!(code, 3);
    assert_eq!(v["checks"][0]["verified"], false);
    assert_eq!(v["checks"][1]["verified"], true);
    // With the outgoing key's signature too, both thresholds hold.
    ok(
        Some(&hsm),
        &["sign", v2.to_str().unwrap(), "--key", &keys[0].0],
    );
    assert_eq!(
        verify_json(
            None,
            &[v2.to_str().unwrap(), "--root", v1.to_str().unwrap()]
        )
        .0,
        0
    );

    // Version 3 straight from version 1 is refused.
    body["version"] = json!(3);
    let v3 = dir.path().join("3.root.json");
    write_unsigned(&v3, body);
    sign_with(Some(&hsm), &v3, &[&keys[0].0, &keys[1].0, &keys[2].0]);
    let (code, v) = verify_json(
        None,
        &[v3.to_str().unwrap(), "--root", v1.to_str().unwrap()],
    );
    assert_eq!(code, 3);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("exactly version 2"),
        "{v}"
    );
}

#[test]
fn delete_asks_first_and_removes_only_the_named_key() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let keys = three_token_keys(&hsm, &token);
    // No terminal and no --yes: nothing is deleted.
    let (_, err) = fails(Some(&hsm), &["key", "delete", &token.uri("ed")]);
    assert!(err.contains("--yes"), "{err}");
    let count = |hsm: &SoftHsm| {
        serde_json::from_str::<Value>(&ok(
            Some(hsm),
            &["key", "list", &token.token_uri(), "--json"],
        ))
        .unwrap()
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(count(&hsm), 3);
    ok(Some(&hsm), &["key", "delete", &token.uri("ed"), "--yes"]);
    assert_eq!(count(&hsm), 2);
    let (_, err) = fails(Some(&hsm), &["key", "show", &keys[1].0]);
    assert!(err.contains("no key matches"), "{err}");
}

#[test]
fn token_list_shows_label_serial_and_pin_state() {
    let hsm = SoftHsm::new();
    hsm.token("alpha", "1234");
    hsm.token("beta", "5678");
    let list = |hsm: &SoftHsm| -> Value {
        serde_json::from_str(&ok(
            Some(hsm),
            &[
                "token",
                "list",
                "--module",
                softhsm_module().to_str().unwrap(),
                "--json",
            ],
        ))
        .unwrap()
    };
    let v = list(&hsm);
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t["pin"] == "ok"
        && t["serial"].as_str().unwrap().len() == 16
        && t["manufacturer"] == "SoftHSM project"));
    hsm.set_token_flags("alpha", CKF_USER_PIN_FINAL_TRY);
    hsm.set_token_flags("beta", CKF_USER_PIN_LOCKED);
    let v = list(&hsm);
    let state = |label: &str| {
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == label)
            .unwrap()["pin"]
            .clone()
    };
    assert_eq!(state("alpha"), "final-try");
    assert_eq!(state("beta"), "locked");
    let text = ok(
        Some(&hsm),
        &[
            "token",
            "list",
            "--module",
            softhsm_module().to_str().unwrap(),
        ],
    );
    assert!(
        text.contains("FINAL TRY") && text.contains("LOCKED"),
        "{text}"
    );
}

// ---- PINs ----------------------------------------------------------------------

/// Runs `tufkey sign` through OpenSC's pkcs11-spy in front of SoftHSM and returns
/// (exit code, stderr, number of C_Login calls the module saw).
fn sign_through_spy(hsm: &SoftHsm, file: &Path, uri: &str, extra: &[&str]) -> (i32, String, usize) {
    let mut args = vec!["sign", p(file), "--key", uri];
    args.extend_from_slice(extra);
    let (code, _, err, logins) = run_through_spy(hsm, &args);
    (code, err, logins)
}

#[test]
fn a_wrong_pin_costs_exactly_one_login_attempt_and_changes_nothing() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let (uri, _, key) = generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(
        &root,
        root_body(&[(uri.clone(), key["keyval"].to_string(), key.clone())], 1),
    );
    let wrong = uri.replace(
        &format!("pin-source=file:{}", token.pin_file.display()),
        "pin-value=9999",
    );
    let before = snapshot(dir.path());
    let (code, err, logins) = sign_through_spy(&hsm, &root, &wrong, &[]);
    assert_eq!(code, 1);
    assert_eq!(logins, 1, "exactly one C_Login, never a retry");
    assert!(
        err.contains("wrong PIN for token \"t\"") && err.contains("did not retry"),
        "{err}"
    );
    assert!(
        !err.contains("9999"),
        "the PIN must never be printed: {err}"
    );
    assert_eq!(snapshot(dir.path()), before);
    // The right PIN still works, and the token says a wrong PIN was seen.
    let (code, err, logins) = sign_through_spy(&hsm, &root, &uri, &[]);
    assert_eq!((code, logins), (0, 1), "{err}");
}

#[test]
fn a_final_try_is_spent_only_with_force_and_a_locked_token_is_never_tried() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let (uri, _, key) = generate(Some(&hsm), &token.uri("k"), "ed25519", &[]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&[(uri.clone(), "id".into(), key)], 1));
    let before = snapshot(dir.path());

    hsm.set_token_flags("t", CKF_USER_PIN_FINAL_TRY);
    let (code, err, logins) = sign_through_spy(&hsm, &root, &uri, &[]);
    assert_eq!((code, logins), (1, 0), "no login without --force: {err}");
    assert!(
        err.contains("one try left") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(snapshot(dir.path()), before);
    let (code, err, logins) = sign_through_spy(&hsm, &root, &uri, &["--force"]);
    assert_eq!((code, logins), (0, 1), "{err}");

    let hsm2 = SoftHsm::new();
    let token2 = hsm2.token("l", "1234");
    let (uri2, _, _) = generate(Some(&hsm2), &token2.uri("k"), "ed25519", &[]);
    hsm2.set_token_flags("l", CKF_USER_PIN_LOCKED);
    let before = snapshot(dir.path());
    let (code, err, logins) = sign_through_spy(&hsm2, &root, &uri2, &["--force"]);
    assert_eq!((code, logins), (1, 0), "{err}");
    assert!(err.contains("locked"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn pins_come_from_the_token_environment_variable_and_are_never_guessed() {
    let hsm = SoftHsm::new();
    let token = hsm.token("root-b", "4321");
    let (_, _, key) = generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("root.json");
    write_unsigned(&f, root_body(&[(String::new(), "id".into(), key)], 1));
    let bare = format!(
        "pkcs11:token=root-b;object=k?module-path={}",
        softhsm_module().display()
    );
    // No PIN anywhere and no terminal: a clear error naming the variable to set.
    let (_, err) = fails(Some(&hsm), &["sign", f.to_str().unwrap(), "--key", &bare]);
    assert!(
        err.contains("TUFKEY_PIN_ROOT_B") && err.contains("pin-source"),
        "{err}"
    );
    let mut c = tufkey(Some(&hsm));
    c.args(["sign", f.to_str().unwrap(), "--key", &bare])
        .env("TUFKEY_PIN_ROOT_B", "4321");
    assert_eq!(run(c).0, 0);
    let mut c = tufkey(Some(&hsm));
    c.args(["sign", f.to_str().unwrap(), "--key", &bare])
        .env("TUFKEY_PIN", "4321");
    assert_eq!(run(c).0, 0);
}

// ---- bad input -------------------------------------------------------------------

#[test]
fn bad_metadata_is_refused_with_the_file_named_and_left_as_it_was() {
    let hsm = SoftHsm::new();
    let token = hsm.token("t", "1234");
    let (uri, _, _) = generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("truncated.json", "{\"signed\": {\"_type\": \"root\"", "not valid JSON"),
        ("array.json", "[1, 2]", "`signed` and `signatures`"),
        ("signed-string.json", "{\"signed\": \"root\", \"signatures\": []}", "`signed` must be a JSON object"),
        ("float.json", "{\"signed\": {\"_type\": \"targets\", \"x\": 1.5}, \"signatures\": []}", "only integers"),
        ("dup-sig.json", "{\"signed\": {\"_type\": \"targets\"}, \"signatures\": [{\"keyid\": \"a\", \"sig\": \"\"}, {\"keyid\": \"a\", \"sig\": \"\"}]}", "more than one signature for key id a"),
    ];
    for (name, text, _) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let before = snapshot(dir.path());
    for (name, _, reason) in cases {
        let p = dir.path().join(name);
        for args in [
            vec!["sign", p.to_str().unwrap(), "--key", &uri],
            vec!["payload", p.to_str().unwrap()],
        ] {
            let (code, err) = fails(Some(&hsm), &args);
            assert_eq!(code, 1, "{name}");
            assert!(err.contains(name) && err.contains(reason), "{name}: {err}");
        }
    }
    let (_, err) = fails(
        None,
        &[
            "sign",
            dir.path().join("missing.json").to_str().unwrap(),
            "--key",
            &uri,
        ],
    );
    assert!(err.contains("missing.json"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn unknown_key_types_and_schemes_are_named_by_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    let mut body = root_body(
        &[(
            String::new(),
            "abc123".into(),
            json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00"}}),
        )],
        1,
    );
    body["keys"]["abc123"] =
        json!({"keytype": "dsa", "scheme": "dsa-sha1", "keyval": {"public": "x"}});
    write_unsigned(&root, body.clone());
    let (code, err) = fails(None, &["verify", root.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("abc123") && err.contains("dsa-sha1") && err.contains("root.json"),
        "{err}"
    );
    body["keys"]["abc123"] =
        json!({"keytype": "ed25519", "scheme": "ed25519-ph", "keyval": {"public": "00"}});
    write_unsigned(&root, body);
    let (_, err) = fails(None, &["verify", root.to_str().unwrap()]);
    assert!(err.contains("ed25519-ph"), "{err}");
}

#[test]
fn uris_that_name_no_token_no_key_or_two_keys_are_explained() {
    let hsm = SoftHsm::new();
    let token = hsm.token("present", "1234");
    generate(Some(&hsm), &token.uri("k"), "ecdsa-p256", &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    write_unsigned(&f, json!({"_type": "targets", "version": 1}));
    let before = snapshot(dir.path());
    let m = softhsm_module().display().to_string();

    let (_, err) = fails(
        Some(&hsm),
        &[
            "sign",
            f.to_str().unwrap(),
            "--key",
            &format!("pkcs11:token=absent;object=k?module-path={m}&pin-value=1234"),
        ],
    );
    assert!(
        err.contains("no token matches") && err.contains("\"present\""),
        "{err}"
    );
    let (_, err) = fails(
        Some(&hsm),
        &["sign", f.to_str().unwrap(), "--key", &token.uri("nokey")],
    );
    assert!(
        err.contains("no key matches") && err.contains("object=k"),
        "{err}"
    );

    // Two key pairs with one label (made by another tool): the URI is ambiguous.
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            &m,
            "--token-label",
            "present",
            "--login",
            "--pin",
            "1234",
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "k",
            "--id",
            "77",
        ])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, err) = fails(
        Some(&hsm),
        &["sign", f.to_str().unwrap(), "--key", &token.uri("k")],
    );
    assert!(
        err.contains("2 keys match") && err.contains("id=77") && err.contains("add id="),
        "{err}"
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "failed signs left the file as it was"
    );
    // Adding id= picks one.
    ok(
        Some(&hsm),
        &[
            "sign",
            f.to_str().unwrap(),
            "--key",
            &token.uri("k").replace("object=k", "object=k;id=%77"),
        ],
    );

    let (_, err) = fails(
        Some(&hsm),
        &["key", "generate", &token.uri("k"), "--type", "ed25519"],
    );
    assert!(err.contains("already exists"), "{err}");
    let (_, err) = fails(None, &["key", "show", "pkcs11:token=x;objekt=y"]);
    assert!(err.contains("`objekt=y`"), "{err}");
    let (_, err) = fails(
        None,
        &[
            "key",
            "show",
            "pkcs11:token=x?module-path=/nonexistent/lib.so",
        ],
    );
    assert!(err.contains("/nonexistent/lib.so"), "{err}");
}

#[test]
fn completions_and_help_are_there() {
    let out = ok(None, &["completions", "bash"]);
    assert!(out.contains("tufkey") && out.contains("generate"));
    let help = ok(None, &["key", "generate", "--help"]);
    assert!(
        help.contains("ecdsa-p256") && help.contains("non-extractable"),
        "{help}"
    );
}

#[test]
fn remember_pin_caches_it_in_the_session_keyring_until_pin_forget() {
    let hsm = SoftHsm::new();
    let token = hsm.token("cached", "2468");
    let (_, _, key) = generate(Some(&hsm), &token.uri("k"), "ed25519", &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    write_unsigned(&f, root_body(&[(String::new(), "id".into(), key)], 1));
    let bare = format!(
        "pkcs11:token=cached;object=k?module-path={}",
        softhsm_module().display()
    );
    // A private session keyring (keyutils), as a keyholder's login session would have.
    let script = r#"
        set -u
        TUFKEY_PIN=2468 "$T" sign "$F" --key "$U" --remember-pin >/dev/null || exit 11
        "$T" sign "$F" --key "$U" >/dev/null || exit 12
        "$T" pin forget "$U" || exit 13
        "$T" sign "$F" --key "$U" 2>/dev/null && exit 14
        exit 0
    "#;
    let mut c = std::process::Command::new("keyctl");
    c.args(["session", "-", "sh", "-c", script])
        .env("T", env!("CARGO_BIN_EXE_tufkey"))
        .env("F", &f)
        .env("U", &bare)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env_remove("TUFKEY_NO_KEYRING")
        .env_remove("TUFKEY_PIN")
        .stdin(std::process::Stdio::null());
    let out = c
        .output()
        .expect("keyctl (package keyutils) is needed for the keyring test");
    assert!(
        out.status.success(),
        "step {:?} failed: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("forgot the cached PIN of token \"cached\"")
    );
}

#[test]
fn without_a_usable_keyring_remember_pin_says_so_once_and_still_signs() {
    let hsm = SoftHsm::new();
    let token = hsm.token("nokr", "1234");
    let (uri, _, key) = generate(Some(&hsm), &token.uri("k"), "ed25519", &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    write_unsigned(&f, root_body(&[(String::new(), "id".into(), key)], 1));
    let mut c = tufkey(Some(&hsm));
    c.args(["sign", f.to_str().unwrap(), "--key", &uri, "--remember-pin"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("keyring is not usable").count(), 1, "{err}");
}

/// The README's first command, on SoftHSM tokens and on file: keys: a ceremony, a
/// rotation, and a repository published from both roots that a client trusting root v1
/// downloads from (tufkey's and python-tuf's ngclient), with a refresh that signs.
#[test]
fn the_readme_demo_runs_a_ceremony_a_rotation_and_a_published_repository_on_softhsm_and_on_files() {
    for extra in [&[][..], &["--files"][..]] {
        let work = tempfile::tempdir().unwrap();
        let mut c = tufkey(None);
        c.arg("demo").args(extra).arg("--dir").arg(work.path());
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "demo {extra:?} failed:\n{out}\n{err}");
        assert!(
            out.contains("Demo complete")
                && out.contains("ceremony finalize")
                && out.contains("repo/2.root.json"),
            "{out}"
        );
        assert_eq!(
            out.contains("softhsm2-util --init-token"),
            extra.is_empty(),
            "SoftHSM is used unless --files"
        );

        // The client step wrote the published file's bytes.
        let dir = work.path();
        assert_eq!(
            std::fs::read(dir.join("downloaded.txt")).unwrap(),
            b"tufkey demo release 1.0\n"
        );
        // Refresh: first nothing due, then a timestamp version 2 signed.
        assert!(out.contains("nothing to do"), "{out}");
        let site = dir.join("site");
        let ts = read_json(&site.join("metadata/timestamp.json"));
        assert_eq!(ts["signed"]["version"], 2, "the second refresh signed");
        // What the demo published is what a client that ships root v1 accepts.
        let v1 = dir.join("repo/1.root.json");
        ok(
            None,
            &["repo", "verify", p(&site), "--trusted-root", p(&v1)],
        );
        let http = harness::clients::HttpRepo::serve(&site);
        let delivered = harness::clients::ngclient(&http, &v1, &dir.join("ngclient"))
            .download("app/1.0/app.txt")
            .delivered();
        let want = b"tufkey demo release 1.0\n";
        use sha2::Digest;
        assert_eq!(
            delivered,
            (want.len() as u64, hex::encode(sha2::Sha256::digest(want))),
            "ngclient delivers the demo's target"
        );
    }
}

/// A client config file that has no entry for the key's signer is named, with the urls
/// it does have, instead of a generic "set it somewhere" hint; nothing is contacted.
#[test]
fn a_remote_config_without_the_keys_signer_says_which_signers_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("remote.toml");
    std::fs::write(
        &conf,
        "[[signer]]\nurl = \"https://other.example:7443\"\nca = \"ca.pem\"\n\n[[signer]]\nurl = \"https://third.example\"\nca = \"ca.pem\"\n",
    )
    .unwrap();
    let key = format!("https://signer.example:7443/keys/{}", "ab".repeat(32));
    let mut c = tufkey(None);
    c.args(["key", "show", &key])
        .env("TUFKEY_REMOTE_CONFIG", &conf);
    let (code, out, err) = run(c);
    assert_ne!(code, 0, "{out}{err}");
    let want = format!(
        "no [[signer]] in {} has url https://signer.example:7443; it has: https://other.example:7443, https://third.example",
        conf.display()
    );
    assert!(err.contains(&want), "{err}");
}
