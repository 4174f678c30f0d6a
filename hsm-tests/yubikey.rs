//! YubiKey PIV keys, end to end, on the virtual card (virtual-piv behind a private pcscd,
//! started by hsm-tests/run.sh, which exports TUFKEY_TEST_PIV_CA): generate, list, show,
//! sign, attest, PIN tries, and root ceremonies with YubiKey and SoftHSM keys side by side.
//! Every step is the real `tufkey` binary; python-tuf and `yubico-piv-tool` check from outside.
//! Each test reads as a short story of what a YubiKey holder does and what they must see.
//!
//! There is one card, so the tests take turns (a lock), and they never reuse a slot that
//! holds a key: each run picks free slots and creates two keys (up to four with --ignored).
//! When the card is full, restart it with a fresh state folder (hsm-tests/piv/stop.sh,
//! then start.sh).
//!
//! The virtual card counts the resets pcscd sends it (`<card state>/power.txt`, see
//! hsm-tests/virtual-piv/README.md), so the tests see which commands reset the YubiKey: reading
//! never does, a command that gave it a PIN or management key does once, at the end.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The virtual card's serial number, firmware version and factory-default PIN and PUK.
const SERIAL: &str = "5437251";
const FIRMWARE: &str = "5.4.3";
const PIN: &str = "123456";
const PUK: &str = "12345678";

/// Every PIV key slot, in the order free slots are taken.
const SLOTS: [&str; 24] = [
    "9a", "9c", "9d", "9e", "82", "83", "84", "85", "86", "87", "88", "89", "8a", "8b", "8c", "8d",
    "8e", "8f", "90", "91", "92", "93", "94", "95",
];

// ---- the card ----------------------------------------------------------------------

static CARD_LOCK: Mutex<()> = Mutex::new(());

/// The virtual card, held by one test at a time.
struct Card {
    /// The test attestation root CA (PEM) the virtual card's attestations chain to.
    ca: PathBuf,
    /// The card's state folder (start.sh's STATEDIR/card, next to the CA).
    state: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

/// Takes the card, or says why the test is skipped (under CI=true: fails).
fn card() -> Option<Card> {
    let turn = CARD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match std::env::var_os("TUFKEY_TEST_PIV_CA") {
        Some(ca) => {
            let ca = PathBuf::from(ca);
            assert!(
                ca.is_file(),
                "TUFKEY_TEST_PIV_CA={} is not a file; is the virtual PIV card running? (hsm-tests/run.sh starts it)",
                ca.display()
            );
            let state = ca.parent().unwrap().join("card");
            Some(Card {
                ca,
                state,
                _turn: turn,
            })
        }
        None if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "the virtual PIV card did not start in CI: TUFKEY_TEST_PIV_CA is unset (hsm-tests/run.sh exports it once pcscd and virtual-piv run; see its log above)"
        ),
        None => {
            eprintln!(
                "skipped: virtual PIV card not running (TUFKEY_TEST_PIV_CA unset); run ./hsm-tests/run.sh, or start the card with hsm-tests/piv/start.sh and export TUFKEY_TEST_PIV_CA=STATEDIR/attest-ca.pem"
            );
            None
        }
    }
}

/// How many times pcscd reset the card in `state` since it started: warm resets, which
/// is what a PC/SC disconnect (or reconnect) with "reset card" sends. Power-offs pcscd
/// makes on its own (an idle card is powered down after a few seconds) are not counted.
fn resets(state: &Path) -> u64 {
    let path = state.join("power.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the virtual card writes it since it counts resets: rebuild and restart it (cargo build -p virtual-piv; hsm-tests/run.sh does)",
            path.display()
        )
    });
    text.lines()
        .find_map(|l| l.strip_prefix("resets "))
        .unwrap_or_else(|| panic!("no resets line in {}: {text}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Runs `f` and returns what it returned and how many resets the card in `state` got
/// meanwhile. pcscd forwards a reset to the card (and the card counts it) before the
/// client's disconnect returns, so a finished tufkey's resets are already counted.
fn counting_resets<R>(state: &Path, f: impl FnOnce() -> R) -> (R, u64) {
    let before = resets(state);
    let out = f();
    (out, resets(state) - before)
}

/// `tufkey ARGS` with a clean environment plus `envs`; returns (code, stdout, stderr).
fn tk(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = tufkey(None);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    run(c)
}

/// `tufkey ARGS` that must succeed; returns (stdout, stderr).
fn tk_ok(args: &[&str], envs: &[(&str, &str)]) -> (String, String) {
    let (code, out, err) = tk(args, envs);
    assert_eq!(
        code, 0,
        "tufkey {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    (out, err)
}

/// `tufkey ARGS` that must fail; returns (code, stderr + stdout).
fn tk_fails(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let (code, out, err) = tk(args, envs);
    assert_ne!(
        code, 0,
        "tufkey {args:?} should have failed:\nstdout: {out}\nstderr: {err}"
    );
    (code, format!("{err}{out}"))
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn slot_uri(slot: &str) -> String {
    format!("yubikey:slot={slot}")
}

/// Whether `key show` finds no certificate (so tufkey sees no key) in the slot.
fn shows_no_certificate(slot: &str) -> bool {
    let (code, out, err) = tk(&["key", "show", &slot_uri(slot)], &[]);
    if code == 0 {
        return false;
    }
    assert!(
        err.contains("holds no certificate"),
        "`tufkey key show {}` failed for another reason than an empty slot (is the card running?):\n{out}{err}",
        slot_uri(slot)
    );
    true
}

/// Slots this test process has taken (or found holding a key), so no two tests share one.
static TAKEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// A slot that holds no key yet, reserved for the caller: `preferred` when it is free.
fn free_slot(preferred: Option<&'static str>) -> &'static str {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for slot in preferred.into_iter().chain(SLOTS) {
        if taken.contains(slot) {
            continue;
        }
        taken.insert(slot);
        if shows_no_certificate(slot) {
            return slot;
        }
    }
    panic!(
        "no free PIV slot left on the virtual card (all 24 hold keys from earlier runs); restart it with a fresh state folder: hsm-tests/piv/stop.sh DIR; rm -rf DIR; VIRTUAL_PIV_BIN=… hsm-tests/piv/start.sh DIR"
    );
}

/// A key tufkey generated in a slot of the card.
#[derive(Clone, Debug)]
struct YkKey {
    slot: &'static str,
    /// The URI `key generate` printed (with the serial).
    uri: String,
    keyid: String,
    /// The TUF public key.
    key: Value,
    /// All of `key generate --json`'s output, and what it said on stderr.
    generated: Value,
    generate_stderr: String,
    /// How many times `key generate` reset the card.
    generate_resets: u64,
}

/// `tufkey key generate yubikey:slot=… --type T EXTRA --json` into a free slot (the
/// preferred one if free). A slot that turns out to hold a key without a certificate
/// (tufkey refuses it) is skipped.
fn generate_yk(
    card: &Card,
    preferred: Option<&'static str>,
    key_type: &str,
    extra: &[&str],
) -> YkKey {
    let mut preferred = preferred;
    loop {
        let slot = free_slot(preferred.take());
        let uri = slot_uri(slot);
        let mut args = vec!["key", "generate", &uri, "--type", key_type, "--json"];
        args.extend_from_slice(extra);
        let ((code, out, err), generate_resets) =
            counting_resets(&card.state, || tk(&args, &[("TUFKEY_PIN", PIN)]));
        if code != 0 && err.contains("already holds a key") {
            assert_eq!(
                generate_resets, 0,
                "a refused generate (no PIN sent) reset the card"
            );
            continue;
        }
        assert_eq!(code, 0, "tufkey {args:?} failed:\n{out}{err}");
        let v = json_of(&out);
        return YkKey {
            slot,
            uri: v["uri"].as_str().unwrap().to_string(),
            keyid: v["keyid"].as_str().unwrap().to_string(),
            key: v["key"].clone(),
            generated: v,
            generate_stderr: err,
            generate_resets,
        };
    }
}

/// The two keys most tests use, generated once per test run (keeps the card from filling):
/// P-256 with PIN policy "always" (in 9c when free) and RSA-2048 with PIN policy "once"
/// and touch policy "cached".
struct Keys {
    p256: YkKey,
    rsa: YkKey,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

fn keys(card: &Card) -> &'static Keys {
    KEYS.get_or_init(|| Keys {
        p256: generate_yk(card, Some("9c"), "ecdsa-p256", &["--pin-policy", "always"]),
        rsa: generate_yk(
            card,
            None,
            "rsa-2048",
            &["--pin-policy", "once", "--touch-policy", "cached"],
        ),
    })
}

/// Runs `yubico-piv-tool ARGS` (the independent observer), requiring success.
fn piv_tool(args: &[&str]) -> String {
    let out = Command::new("yubico-piv-tool")
        .args(args)
        .output()
        .expect("yubico-piv-tool is needed to observe the card independently (apt-get install yubico-piv-tool; hsm-tests/run.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "yubico-piv-tool {args:?} failed: {text}"
    );
    text
}

/// The PIN retry counter as `yubico-piv-tool -a status` reads it (spends no try).
fn pin_tries() -> u32 {
    let status = piv_tool(&["-a", "status"]);
    status
        .lines()
        .find_map(|l| l.strip_prefix("PIN tries left:"))
        .unwrap_or_else(|| panic!("no \"PIN tries left\" in yubico-piv-tool's status:\n{status}"))
        .trim()
        .parse()
        .unwrap()
}

/// Puts the PIN retry counter back to 3 if a test stopped half-way: the right PIN when
/// tries are left, the PUK when the PIN is locked. So later tests (and people) still
/// have a usable card. Does nothing when the counter is at 3.
struct RestorePinOnDrop;

impl Drop for RestorePinOnDrop {
    fn drop(&mut self) {
        let status = Command::new("yubico-piv-tool")
            .args(["-a", "status"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let args: &[&str] = if status.contains("PIN tries left:\t0") {
            &["-a", "unblock-pin", "-P", PUK, "-N", PIN]
        } else if status.contains("PIN tries left:\t1") || status.contains("PIN tries left:\t2") {
            &["-a", "verify-pin", "-P", PIN]
        } else {
            return;
        };
        eprintln!("restoring the PIN retry counter: yubico-piv-tool {args:?}");
        let _ = Command::new("yubico-piv-tool").args(args).output();
    }
}

/// python-tuf verifies a root against itself and computes the key ids itself.
const PY_VERIFY_ROOT: &str = r#"
import hashlib, json, sys
from securesystemslib.formats import encode_canonical
from tuf.api.metadata import Metadata
root = Metadata.from_file(sys.argv[1])
root.verify_delegate("root", root)           # raises if the threshold is not met
res = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
ids = {kid: hashlib.sha256(encode_canonical(k.to_dict()).encode()).hexdigest() for kid, k in root.signed.keys.items()}
print(json.dumps({"keyids": ids, "signed": sorted(res.signed), "verified": res.verified,
                  "threshold": root.signed.roles["root"].threshold}))
"#;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The DER inside a PEM block (base64 decoded here, to compare with attested SPKI hashes).
fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in b64.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The row of `tufkey key list yubikey: --json` for `key`, if listed.
fn listed_row(key: &YkKey) -> Option<Value> {
    let listed = json_of(&tk_ok(&["key", "list", "yubikey:", "--json"], &[]).0);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uri"] == key.uri.as_str())
        .cloned()
}

// ---- generate, list, show, sign, verify -----------------------------------------

#[test]
fn keys_of_both_supported_types_are_made_on_the_yubikey_and_sign_a_root_that_python_tuf_verifies() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    for (key, keytype, scheme, algorithm) in [
        (&k.p256, "ecdsa", "ecdsa-sha2-nistp256", "ecdsa-p256"),
        (&k.rsa, "rsa", "rsassa-pss-sha256", "rsa-2048"),
    ] {
        // `key generate --json` names the key by a URI with the card's serial.
        assert_eq!(
            key.uri,
            format!("yubikey:serial={SERIAL};slot={}", key.slot),
            "{:?}",
            key.generated
        );
        assert_eq!(key.keyid.len(), 64, "{:?}", key.generated);
        assert_eq!(key.generated["type"], algorithm);
        assert_eq!(key.key["keytype"], keytype);
        assert_eq!(key.key["scheme"], scheme);
        assert!(key.key["keyval"]["public"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        // The factory-default PIN worked, and tufkey said it should be changed.
        assert!(
            key.generate_stderr.contains("factory-default PIN"),
            "{}",
            key.generate_stderr
        );

        // `key show` needs no PIN and gives the same key id, by the short URI and the full one.
        for uri in [slot_uri(key.slot), key.uri.clone()] {
            let shown = json_of(&tk_ok(&["key", "show", &uri, "--json"], &[]).0);
            assert_eq!(shown["keyid"], key.keyid.as_str(), "{uri}");
            assert_eq!(shown["key"], key.key, "{uri}");
            assert_eq!(shown["type"], algorithm);
        }
    }
    // The touch policy asked for is announced when the key is made.
    assert!(
        k.rsa.generate_stderr.contains("Touch your YubiKey"),
        "{}",
        k.rsa.generate_stderr
    );

    // `key list yubikey:` lists them with their key ids, without a PIN. (Keys in the
    // retired slots 82-95 have their own test below.)
    for key in [&k.p256, &k.rsa] {
        if !SLOTS[..4].contains(&key.slot) {
            continue;
        }
        let row = listed_row(key)
            .unwrap_or_else(|| panic!("`key list yubikey:` does not list {}", key.uri));
        assert_eq!(row["keyid"], key.keyid.as_str(), "{row}");
        assert_eq!(row["type"], key.generated["type"], "{row}");
    }

    // Both keys sign a root that lists them, in one command; tufkey and python-tuf verify it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(
        &root,
        root_body(
            &[
                (k.p256.keyid.as_str(), &k.p256.key),
                (k.rsa.keyid.as_str(), &k.rsa.key),
            ],
            2,
        ),
    );
    let before = read_json(&root);
    tk_ok(
        &[
            "sign",
            p(&root),
            "--key",
            &slot_uri(k.p256.slot),
            "--key",
            &k.rsa.uri,
        ],
        &[(&format!("TUFKEY_PIN_{SERIAL}"), PIN)],
    );
    let after = read_json(&root);
    assert_eq!(after["signed"], before["signed"]);
    let (code, v) = verify_json(None, &[p(&root)]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        sorted(serde_json::from_value(v["checks"][0]["signed"].clone()).unwrap()),
        sorted(vec![k.p256.keyid.clone(), k.rsa.keyid.clone()])
    );
    // RSA signatures are the whole 2048-bit block, hex.
    let rsa_sig = after["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["keyid"] == k.rsa.keyid.as_str())
        .unwrap()["sig"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rsa_sig.len(), 512);

    let py = json_of(&python_tuf(PY_VERIFY_ROOT, &[p(&root)]));
    assert_eq!(py["verified"], true, "{py}");
    assert_eq!(
        py["signed"],
        json!(sorted(vec![k.p256.keyid.clone(), k.rsa.keyid.clone()]))
    );
    for key in [&k.p256, &k.rsa] {
        assert_eq!(
            py["keyids"][&key.keyid],
            key.keyid.as_str(),
            "key id of {}",
            key.uri
        );
    }
}

#[test]
fn ed25519_and_rsa_3072_are_refused_on_a_yubikey_with_the_reason_and_nothing_is_made() {
    let Some(_card) = card() else { return };
    let slot = free_slot(None);
    let uri = slot_uri(slot);
    let tries = pin_tries();
    for t in ["ed25519", "rsa-3072"] {
        // No PIN is given: the refusal comes before anything touches the card.
        let (code, msg) = tk_fails(&["key", "generate", &uri, "--type", t], &[]);
        assert_eq!(code, 1, "{t}: {msg}");
        assert!(
            msg.contains("firmware 5.7") && msg.contains("ecdsa-p256"),
            "{t}: {msg}"
        );
        assert!(
            msg.contains(if t == "ed25519" {
                "Ed25519"
            } else {
                "RSA-3072"
            }),
            "{t}: {msg}"
        );
        assert!(shows_no_certificate(slot), "{t}: slot {slot} changed");
    }
    assert_eq!(pin_tries(), tries, "no PIN try was spent");
}

// ---- attestation ------------------------------------------------------------------

#[test]
fn an_attestation_chains_to_the_test_ca_and_states_serial_firmware_and_policies() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);

    let (out, _) = tk_ok(&["key", "attest", &slot_uri(k.p256.slot), "--ca", ca], &[]);
    for line in [
        "VERIFIED",
        "tufkey virtual-piv Test Attestation Root CA",
        &format!("serial:       {SERIAL}"),
        &format!("firmware:     {FIRMWARE}"),
        "PIN policy:   always",
        "touch policy: never",
        "the attested key is the key in the slot",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }

    // The CA from the environment works as well as --ca; --json states the same.
    for key in [&k.p256, &k.rsa] {
        let (out, _) = tk_ok(
            &["key", "attest", &key.uri, "--json"],
            &[("TUFKEY_ATTESTATION_CA", ca)],
        );
        let a = &json_of(&out)["attestation"];
        assert_eq!(a["serial"], json!(SERIAL.parse::<u64>().unwrap()), "{a}");
        assert_eq!(a["firmware"], FIRMWARE, "{a}");
        let (pin, touch) = if key.slot == k.p256.slot {
            ("always", "never")
        } else {
            ("once", "cached")
        };
        assert_eq!(a["pin_policy"], pin, "{a}");
        assert_eq!(a["touch_policy"], touch, "{a}");
        assert!(
            a["root"]
                .as_str()
                .unwrap()
                .contains("Test Attestation Root CA"),
            "{a}"
        );
        // The attested key is the key `key show` gives.
        let shown = json_of(&tk_ok(&["key", "show", &key.uri, "--json"], &[]).0);
        let spki = pem_der(shown["spki_pem"].as_str().unwrap());
        assert_eq!(a["spki_sha256"], sha256_hex(&spki), "{a}");
    }
}

#[test]
fn an_attestation_is_refused_without_the_test_ca_and_when_the_slot_names_another_key() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);

    // Only Yubico's root is trusted: the virtual card's attestation does not chain to it.
    let (code, msg) = tk_fails(&["key", "attest", &k.p256.uri], &[]);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("does not chain") && msg.contains("Yubico PIV Root CA"),
        "{msg}"
    );

    let work = tempfile::tempdir().unwrap();

    // A slot whose certificate names another slot's key: the card attests the key that is
    // really in the slot, and tufkey sees it is not the one the certificate claims.
    // The RSA slot gets the P-256 slot's certificate for a moment, and its own back after.
    let own = work.path().join("own.pem");
    let other = work.path().join("other.pem");
    piv_tool(&["-s", k.rsa.slot, "-a", "read-certificate", "-o", p(&own)]);
    piv_tool(&["-s", k.p256.slot, "-a", "read-certificate", "-o", p(&other)]);
    struct Restore<'a>(&'a str, &'a Path);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = Command::new("yubico-piv-tool")
                .args(["-s", self.0, "-a", "import-certificate", "-i"])
                .arg(self.1)
                .output();
        }
    }
    let restore = Restore(k.rsa.slot, &own);
    piv_tool(&[
        "-s",
        k.rsa.slot,
        "-a",
        "import-certificate",
        "-i",
        p(&other),
    ]);
    let shown = json_of(&tk_ok(&["key", "show", &k.rsa.uri, "--json"], &[]).0);
    assert_eq!(
        shown["keyid"],
        k.p256.keyid.as_str(),
        "the certificate names the P-256 key"
    );
    let (code, msg) = tk_fails(&["key", "attest", &k.rsa.uri, "--ca", ca], &[]);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("for a different key"), "{msg}");

    // A ceremony that requires attestation does not take that key.
    let dir = work.path().join("ceremony");
    tk_ok(&["ceremony", "init", p(&dir), "--require-attestation"], &[]);
    let before = snapshot(&dir);
    let (code, msg) = tk_fails(
        &[
            "ceremony",
            "add-key",
            p(&dir),
            "--role",
            "root",
            "--key",
            &k.rsa.uri,
        ],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("requires key attestation")
            && msg.contains("no valid attestation")
            && msg.contains("for a different key"),
        "{msg}"
    );
    assert_eq!(snapshot(&dir), before);
    drop(restore);
    let shown = json_of(&tk_ok(&["key", "show", &k.rsa.uri, "--json"], &[]).0);
    assert_eq!(
        shown["keyid"],
        k.rsa.keyid.as_str(),
        "the RSA slot has its certificate back"
    );
}

/// A ceremony in `dir` requiring attestation, with `roles` (role, key) added, each
/// YubiKey key with its attestation.
fn attested_ceremony(dir: &Path, roles: &[(&str, &YkKey)], ca: &str) {
    tk_ok(&["ceremony", "init", p(dir), "--require-attestation"], &[]);
    for (role, key) in roles {
        let (_, err) = tk_ok(
            &[
                "ceremony",
                "add-key",
                p(dir),
                "--role",
                role,
                "--key",
                &key.uri,
            ],
            &[("TUFKEY_ATTESTATION_CA", ca)],
        );
        assert!(!err.contains("no valid attestation"), "{err}");
    }
}

#[test]
fn an_attested_key_refused_by_the_ceremony_leaves_no_attestation_file_behind() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ceremony");
    tk_ok(&["ceremony", "init", p(&dir), "--require-attestation"], &[]);
    let before = snapshot(&dir);

    // The attestation is fetched and valid, but a root has no role `mirror`.
    let (code, msg) = tk_fails(
        &[
            "ceremony",
            "add-key",
            p(&dir),
            "--role",
            "mirror",
            "--key",
            &k.p256.uri,
        ],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("mirror"), "{msg}");
    assert!(
        !dir.join("attestations").exists(),
        "the refused key left an attestation record"
    );
    assert_eq!(snapshot(&dir), before);

    // The same key for a role that exists is recorded with its attestation.
    tk_ok(
        &[
            "ceremony",
            "add-key",
            p(&dir),
            "--role",
            "root",
            "--key",
            &k.p256.uri,
        ],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert!(dir
        .join(format!("attestations/{}.json", k.p256.keyid))
        .exists());
}

/// Rewrites the transcript with `edit` applied to each entry and the hash chain redone,
/// as someone covering their tracks would.
fn forge_transcript(dir: &Path, edit: impl Fn(&mut Value)) {
    let path = dir.join("transcript.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            line,
            "this helper writes the canonical form tufkey writes"
        );
        edit(&mut v);
        v["prev"] = json!(prev);
        let line = serde_json::to_string(&v).unwrap();
        prev = sha256_hex(line.as_bytes());
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

#[test]
fn ceremony_verify_rechecks_recorded_attestations_and_catches_a_swapped_or_edited_one() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ceremony");
    attested_ceremony(&dir, &[("root", &k.p256), ("targets", &k.rsa)], ca);

    // Each YubiKey key's attestation is recorded, and the transcript holds its hash.
    let rec_p256 = dir.join(format!("attestations/{}.json", k.p256.keyid));
    let rec_rsa = dir.join(format!("attestations/{}.json", k.rsa.keyid));
    let rec = read_json(&rec_p256);
    assert!(rec["slot_certificate"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        rec["statement"]["serial"],
        json!(SERIAL.parse::<u64>().unwrap())
    );
    assert_eq!(rec["statement"]["pin_policy"], "always");
    let transcript = std::fs::read_to_string(dir.join("transcript.jsonl")).unwrap();
    let added: Vec<Value> = transcript
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "add-key" && e["details"]["keyid"] == k.p256.keyid.as_str())
        .collect();
    assert_eq!(added.len(), 1);
    assert_eq!(
        added[0]["details"]["attestation"]["sha256"],
        sha256_hex(&std::fs::read(&rec_p256).unwrap())
    );

    let verify = |envs: &[(&str, &str)]| tk(&["ceremony", "verify", p(&dir)], envs);
    let with_ca = [("TUFKEY_ATTESTATION_CA", ca)];
    let (code, out, err) = verify(&with_ca);
    assert_eq!(code, 0, "{out}{err}");
    let head = json_of(&tk_ok(&["ceremony", "verify", p(&dir), "--json"], &with_ca).0)
        ["transcript_head"]
        .as_str()
        .unwrap()
        .to_string();

    // Without the test CA, both recorded attestations are re-checked and found not to chain.
    let (code, out, err) = verify(&[]);
    assert_eq!(code, 3, "{out}{err}");
    for key in [&k.p256, &k.rsa] {
        assert!(
            out.contains(&format!(
                "the attestation of key {} does not hold",
                key.keyid
            )) && out.contains("does not chain"),
            "{out}{err}"
        );
    }

    // Another key's attestation file copied over this key's: not the file recorded.
    let original = std::fs::read(&rec_p256).unwrap();
    std::fs::copy(&rec_rsa, &rec_p256).unwrap();
    let (code, out, err) = verify(&with_ca);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains(&format!(
            "is not the attestation the transcript recorded for key {}",
            k.p256.keyid
        )),
        "{out}{err}"
    );

    // The file edited in place (the PIN policy it states): not the file recorded either.
    let edited =
        String::from_utf8(original.clone())
            .unwrap()
            .replacen("\"always\"", "\"never\"", 1);
    assert_ne!(edited.as_bytes(), &original[..]);
    std::fs::write(&rec_p256, &edited).unwrap();
    let (code, out, err) = verify(&with_ca);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("is not the attestation the transcript recorded"),
        "{out}{err}"
    );

    // The swap covered up by a transcript rewritten with the new file's hash and a
    // consistent hash chain: the re-check itself sees the attestation is for another key,
    // and the head noted earlier no longer matches.
    std::fs::copy(&rec_rsa, &rec_p256).unwrap();
    let swapped_sha = sha256_hex(&std::fs::read(&rec_p256).unwrap());
    let keyid = k.p256.keyid.clone();
    forge_transcript(&dir, |e| {
        if e["action"] == "add-key" && e["details"]["keyid"] == keyid.as_str() {
            e["details"]["attestation"]["sha256"] = json!(swapped_sha);
        }
    });
    let (code, out, err) = verify(&with_ca);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains(&format!(
            "the attestation of key {} does not hold",
            k.p256.keyid
        )) && out.contains("for a different key"),
        "{out}{err}"
    );
    // The forged chain itself holds: only the attestation check (and the head) catch it.
    assert!(out.contains("chain intact"), "{out}{err}");
    assert!(
        !out.contains("is not the attestation the transcript recorded"),
        "{out}{err}"
    );
    let (code, out, err) = tk(
        &["ceremony", "verify", p(&dir), "--expect-head", &head],
        &with_ca,
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("the transcript changed since"), "{out}{err}");
}

#[test]

fn a_ceremony_that_requires_attestation_does_not_finalize_with_a_swapped_attestation() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ceremony");
    let out_dir = work.path().join("metadata");
    // Every key of every role attested: the two YubiKey keys serve two roles each.
    attested_ceremony(
        &dir,
        &[
            ("root", &k.p256),
            ("targets", &k.rsa),
            ("snapshot", &k.p256),
            ("timestamp", &k.rsa),
        ],
        ca,
    );
    tk_ok(
        &["ceremony", "sign", p(&dir), "--key", &k.p256.uri, "--yes"],
        &[("TUFKEY_PIN", PIN)],
    );
    let status = json_of(&tk_ok(&["ceremony", "status", p(&dir), "--json"], &[]).0);
    assert_eq!(status["can_finalize"], true, "{status}");

    // The P-256 key's attestation replaced by the RSA key's, the transcript rewritten to
    // match: `ceremony verify` says so, and finalize must not write the root either.
    let rec_p256 = dir.join(format!("attestations/{}.json", k.p256.keyid));
    std::fs::copy(
        dir.join(format!("attestations/{}.json", k.rsa.keyid)),
        &rec_p256,
    )
    .unwrap();
    let swapped_sha = sha256_hex(&std::fs::read(&rec_p256).unwrap());
    let keyid = k.p256.keyid.clone();
    forge_transcript(&dir, |e| {
        if e["action"] == "add-key" && e["details"]["keyid"] == keyid.as_str() {
            e["details"]["attestation"]["sha256"] = json!(swapped_sha);
        }
    });
    let (code, out, err) = tk(
        &["ceremony", "verify", p(&dir)],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("for a different key"), "{out}{err}");

    let (code, msg) = tk_fails(
        &["ceremony", "finalize", p(&dir), "--out", p(&out_dir)],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert!(code == 1 || code == 3, "{msg}");
    assert!(msg.contains("attestation"), "{msg}");
    assert!(!out_dir.join("1.root.json").exists());
}

#[test]

fn a_yubikey_key_in_two_roles_keeps_both_recorded_attestations_valid() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ceremony");
    attested_ceremony(&dir, &[("root", &k.p256), ("snapshot", &k.p256)], ca);
    let (code, out, err) = tk(
        &["ceremony", "verify", p(&dir)],
        &[("TUFKEY_ATTESTATION_CA", ca)],
    );
    assert_eq!(code, 0, "{out}{err}");
}

// ---- PIN tries ----------------------------------------------------------------------

#[test]
fn a_wrong_pin_spends_exactly_one_try_a_pin_of_wrong_length_none_and_the_last_try_needs_force() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let _restore = RestorePinOnDrop;
    let key = &k.p256;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&[(key.keyid.as_str(), &key.key)], 1));
    let sign = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec!["sign", p(&root), "--key", key.uri.as_str()];
        args.extend_from_slice(extra);
        tk(&args, envs)
    };

    // The right PIN signs and resets the counter to 3.
    let (code, out, err) = sign(&[], &[("TUFKEY_PIN", PIN)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pin_tries(), 3);
    assert_eq!(verify_json(None, &[p(&root)]).0, 0);
    let signed = snapshot(dir.path());

    // A wrong PIN: one try spent, not retried, and nothing written.
    let (code, out, err) = sign(&[], &[("TUFKEY_PIN", "654321")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("wrong PIN")
            && err.contains("one try was spent")
            && err.contains("did not retry")
            && err.contains("2 tries left"),
        "{err}"
    );
    assert_eq!(pin_tries(), 2, "a wrong PIN spends exactly one try");
    assert_eq!(snapshot(dir.path()), signed);

    // PINs of the wrong length are refused before the card sees them: no try spent.
    for short_or_long in ["12345", "123456789"] {
        let (code, out, err) = sign(&[], &[("TUFKEY_YUBIKEY_PIN", short_or_long)]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("6 to 8 characters") && err.contains("no try was spent"),
            "{short_or_long}: {err}"
        );
        assert_eq!(pin_tries(), 2, "{short_or_long} spent a try");
    }
    assert_eq!(snapshot(dir.path()), signed);

    // The right PIN (from TUFKEY_YUBIKEY_PIN) restores the counter.
    let (code, out, err) = sign(&[], &[("TUFKEY_YUBIKEY_PIN", PIN)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pin_tries(), 3);
    // TUFKEY_PIN_<SERIAL> wins over TUFKEY_PIN: the wrong one is never tried.
    let (code, out, err) = sign(
        &[],
        &[
            (&format!("TUFKEY_PIN_{SERIAL}"), PIN),
            ("TUFKEY_PIN", "000000"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pin_tries(), 3);

    // Two wrong PINs leave one try; tufkey says so.
    let (_, _, err) = sign(&[], &[("TUFKEY_PIN", "654321")]);
    assert!(err.contains("2 tries left"), "{err}");
    let (code, _, err) = sign(&[], &[("TUFKEY_PIN", "654321")]);
    assert_eq!(code, 1);
    assert!(err.contains("ONE try is left"), "{err}");
    assert_eq!(pin_tries(), 1);
    let at_one = snapshot(dir.path());

    // With one try left, tufkey refuses to spend it without --force, right PIN or not.
    for pin in [PIN, "654321"] {
        let (code, out, err) = sign(&[], &[("TUFKEY_PIN", pin)]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("one try left") && err.contains("--force"),
            "{pin}: {err}"
        );
        assert_eq!(pin_tries(), 1, "tufkey spent the final try without --force");
    }
    assert_eq!(snapshot(dir.path()), at_one);

    // The right PIN with --force signs and restores the counter.
    let (code, out, err) = sign(&["--force"], &[("TUFKEY_PIN", PIN)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pin_tries(), 3);
    assert_eq!(verify_json(None, &[p(&root)]).0, 0);
}

// ---- a ceremony with YubiKey and SoftHSM keys ------------------------------------------

#[test]
fn a_root_ceremony_with_two_yubikey_keys_and_two_softhsm_keys_is_signed_by_three_and_verifies() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let hsm = SoftHsm::new();
    let work = tempfile::tempdir().unwrap();
    let soft: Vec<(String, String, Value)> = [("root-3", "ecdsa-p256"), ("root-4", "ed25519")]
        .iter()
        .map(|(label, t)| {
            let token = hsm.token(label, &format!("pin-{label}"));
            generate(Some(&hsm), &token.uri("key"), t, &[])
        })
        .collect();
    let online = hsm.token("online", "pin-online");
    let online_keys: Vec<(String, String, Value)> = ["targets", "snapshot", "timestamp"]
        .iter()
        .map(|role| generate(Some(&hsm), &online.uri(role), "ecdsa-p256", &[]))
        .collect();
    let with = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = tufkey(Some(&hsm));
        c.args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        run(c)
    };
    let ok_with = |args: &[&str], envs: &[(&str, &str)]| {
        let (code, out, err) = with(args, envs);
        assert_eq!(code, 0, "tufkey {args:?} failed:\n{out}{err}");
        (out, err)
    };
    let attest_ca = ("TUFKEY_ATTESTATION_CA", ca);

    // A ceremony requiring attestation refuses the SoftHSM key and changes nothing.
    let strict = work.path().join("strict");
    ok_with(
        &["ceremony", "init", p(&strict), "--require-attestation"],
        &[],
    );
    ok_with(
        &[
            "ceremony",
            "add-key",
            p(&strict),
            "--role",
            "root",
            "--key",
            &k.p256.uri,
        ],
        &[attest_ca],
    );
    let before = snapshot(&strict);
    let (code, out, err) = with(
        &[
            "ceremony",
            "add-key",
            p(&strict),
            "--role",
            "root",
            "--key",
            &soft[0].0,
        ],
        &[attest_ca],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("requires key attestation"), "{err}");
    assert_eq!(snapshot(&strict), before);

    // Without that rule: 2 YubiKey + 2 SoftHSM root keys, threshold 3.
    let dir = work.path().join("ceremony");
    let meta = work.path().join("repo/metadata");
    ok_with(&["ceremony", "init", p(&dir)], &[]);
    for uri in [&k.p256.uri, &k.rsa.uri, &soft[0].0, &soft[1].0] {
        ok_with(
            &[
                "ceremony",
                "add-key",
                p(&dir),
                "--role",
                "root",
                "--key",
                uri,
            ],
            &[attest_ca],
        );
    }
    ok_with(
        &["ceremony", "threshold", p(&dir), "--role", "root", "3"],
        &[],
    );
    for (role, key) in ["targets", "snapshot", "timestamp"]
        .iter()
        .zip(&online_keys)
    {
        ok_with(
            &[
                "ceremony",
                "add-key",
                p(&dir),
                "--role",
                role,
                "--key",
                &key.0,
            ],
            &[],
        );
    }
    // The two YubiKey keys have their attestations recorded; the SoftHSM keys have none.
    let attestations: Vec<String> = std::fs::read_dir(dir.join("attestations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        sorted(attestations),
        sorted(vec![
            format!("{}.json", k.p256.keyid),
            format!("{}.json", k.rsa.keyid)
        ])
    );

    // Three keyholders sign: both YubiKey slots and one SoftHSM token.
    for uri in [&k.p256.uri, &k.rsa.uri, &soft[0].0] {
        ok_with(
            &["ceremony", "sign", p(&dir), "--key", uri, "--yes"],
            &[("TUFKEY_PIN", PIN)],
        );
    }
    let (out, _) = ok_with(&["ceremony", "status", p(&dir), "--json"], &[]);
    let status = json_of(&out);
    assert_eq!(status["can_finalize"], true, "{status}");
    // Finalize re-checks the recorded attestations, so it needs the test CA too.
    ok_with(
        &["ceremony", "finalize", p(&dir), "--out", p(&meta)],
        &[attest_ca],
    );
    let root = meta.join("1.root.json");
    assert!(root.exists() && meta.join("root.json").exists());

    let (code, v) = verify_json(None, &[p(&root)]);
    assert_eq!(code, 0, "{v}");
    let want = sorted(vec![
        k.p256.keyid.clone(),
        k.rsa.keyid.clone(),
        soft[0].1.clone(),
    ]);
    assert_eq!(
        sorted(serde_json::from_value(v["checks"][0]["signed"].clone()).unwrap()),
        want
    );
    let py = json_of(&python_tuf(PY_VERIFY_ROOT, &[p(&root)]));
    assert_eq!(py["verified"], true, "{py}");
    assert_eq!(py["threshold"], 3);
    assert_eq!(py["signed"], json!(want));
    for id in [&k.p256.keyid, &k.rsa.keyid, &soft[0].1, &soft[1].1] {
        assert_eq!(py["keyids"][id], id.as_str(), "python-tuf's key id");
    }

    // `ceremony verify` re-checks both recorded attestations: with the test CA they hold,
    // without it both are named as not chaining.
    let (out, _) = ok_with(&["ceremony", "verify", p(&dir), "--json"], &[attest_ca]);
    let v = json_of(&out);
    assert_eq!(v["ok"], true, "{v}");
    let (code, out, err) = with(&["ceremony", "verify", p(&dir), "--json"], &[]);
    assert_eq!(code, 3, "{out}{err}");
    let problems = json_of(&out)["problems"].to_string();
    for key in [&k.p256, &k.rsa] {
        assert!(
            problems.contains(&format!(
                "the attestation of key {} does not hold",
                key.keyid
            )),
            "{problems}"
        );
    }
    assert!(!problems.contains(&soft[0].1), "{problems}");
}

// ---- what tufkey never does to a YubiKey ----------------------------------------------

#[test]
fn tufkey_never_deletes_a_yubikey_slot_and_never_generates_over_a_key() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let tries = pin_tries();
    for key in [&k.p256, &k.rsa] {
        let (code, msg) = tk_fails(
            &["key", "delete", &key.uri, "--yes"],
            &[("TUFKEY_PIN", PIN)],
        );
        assert_eq!(code, 1, "{msg}");
        assert!(
            msg.contains("does not delete or reset YubiKey slots"),
            "{msg}"
        );

        let (code, msg) = tk_fails(
            &[
                "key",
                "generate",
                &slot_uri(key.slot),
                "--type",
                "ecdsa-p256",
            ],
            &[("TUFKEY_PIN", PIN)],
        );
        assert_eq!(code, 1, "{msg}");
        assert!(
            msg.contains("already holds a key") && msg.contains("never overwrites"),
            "{msg}"
        );
        let shown = json_of(&tk_ok(&["key", "show", &key.uri, "--json"], &[]).0);
        assert_eq!(
            shown["keyid"],
            key.keyid.as_str(),
            "the slot's key is unchanged"
        );
    }
    assert_eq!(pin_tries(), tries, "the refusals spent no PIN try");
}

#[test]

fn a_slot_holding_a_key_without_a_certificate_is_not_overwritten() {
    let Some(_card) = card() else { return };
    // Another tool made a key in the slot and stored no certificate with it.
    let slot = free_slot(None);
    let made = piv_tool(&["-s", slot, "-a", "generate", "-A", "ECCP256"]);
    let public = &made[made
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("a public key")..];
    let public = &public[..public.find("-----END PUBLIC KEY-----").unwrap()];
    assert!(shows_no_certificate(slot));

    let (code, out, err) = tk(
        &[
            "key",
            "generate",
            &slot_uri(slot),
            "--type",
            "ecdsa-p256",
            "--json",
        ],
        &[("TUFKEY_PIN", PIN)],
    );
    let replaced = code == 0
        && !json_of(&out)["key"]["keyval"]["public"]
            .as_str()
            .unwrap()
            .starts_with(public);
    assert!(
        !replaced && code == 1,
        "tufkey generated over the key in slot {slot} (code {code}):\n{out}{err}"
    );
    assert!(err.contains("already holds a key"), "{err}");
}

#[test]

fn key_list_shows_yubikey_keys_in_the_retired_slots_82_to_95_too() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    // One of the test keys in a retired slot, else a new one in the first free retired slot.
    let key = match [&k.p256, &k.rsa]
        .into_iter()
        .find(|k| !SLOTS[..4].contains(&k.slot))
    {
        Some(key) => key.clone(),
        None => {
            {
                let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
                taken.extend(&SLOTS[..4]);
            }
            generate_yk(&card, None, "ecdsa-p256", &[])
        }
    };
    assert!(!SLOTS[..4].contains(&key.slot));
    let row =
        listed_row(&key).unwrap_or_else(|| panic!("`key list yubikey:` does not list {}", key.uri));
    assert_eq!(row["keyid"], key.keyid.as_str(), "{row}");
}

// ---- management keys: the 3DES default, and a firmware 5.7 YubiKey (AES-192) ----------

/// The second virtual card: a YubiKey with firmware 5.7.1 (factory AES-192 management key).
const AES_SERIAL: &str = "5437252";
/// A 48-hex-digit AES-192 management key the tests set on it.
const AES_KEY: &str = "00112233445566778899aabbccddeeff0011223344556677";

/// A second virtual card started by the test itself, in the same pcscd: vpcd's reader
/// (configured by hsm-tests/piv/start.sh on port P) has a second slot listening on
/// P+1. It has firmware 5.7.1, serial 5437252 and a fresh state folder; it is stopped
/// by its PID on drop, and the drop waits until tufkey no longer sees it, so the other
/// tests (which name no serial) find one YubiKey again. Hold the [`Card`] while it runs.
struct AesCard {
    child: std::process::Child,
    state: tempfile::TempDir,
    /// The runner, its vpcd port and the extra flags, to start it again on the same state.
    bin: PathBuf,
    port: u16,
    extra: Vec<String>,
}

impl AesCard {
    fn start(_card: &Card, extra: &[&str]) -> AesCard {
        let bin = std::env::var_os("VIRTUAL_PIV_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_BIN_EXE_tufkey")).with_file_name("virtual-piv")
            });
        assert!(
            bin.is_file(),
            "{} is missing: build the virtual card with `cargo build -p virtual-piv` (hsm-tests/run.sh does)",
            bin.display()
        );
        let port: u16 = std::env::var("VIRTUAL_PIV_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(35963)
            + 1;
        let state = tempfile::Builder::new()
            .prefix("tufkey-piv-aes-")
            .tempdir()
            .unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = Self::spawn(&bin, port, state.path(), &extra);
        let mut card = AesCard {
            child,
            state,
            bin,
            port,
            extra,
        };
        card.wait_present();
        card
    }

    fn spawn(bin: &Path, port: u16, state: &Path, extra: &[String]) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("virtual-piv.log"))
            .unwrap();
        let mut c = Command::new(bin);
        c.args(["--port", &port.to_string(), "--serial", AES_SERIAL])
            .args(["--firmware", "5.7.1", "--connect-timeout", "10"])
            .arg("--state")
            .arg(state.join("card"))
            .arg("--ca-out")
            .arg(state.join("ca.pem"))
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c.spawn().expect("start virtual-piv")
    }

    fn wait_present(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.present() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the 5.7 virtual card exited ({status}): {}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the 5.7 virtual card did not show up in pcscd on port {} within 30 s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn wait_absent(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.present() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Pulls the card out: stops its process as stop.sh does (SIGTERM, which keeps its
    /// state) and waits until tufkey no longer sees it.
    fn unplug(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.wait_absent();
    }

    /// Plugs it back in: the same card (state folder, serial, keys, PIN) in a new process.
    fn plug_in(&mut self) {
        self.child = Self::spawn(&self.bin, self.port, self.state.path(), &self.extra);
        self.wait_present();
    }

    /// How many warm resets the card got since its process started (see [`resets`]).
    fn resets(&self) -> u64 {
        resets(&self.state.path().join("card"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("virtual-piv.log")).unwrap_or_default()
    }

    /// Whether tufkey sees YubiKey 5437252.
    fn present(&self) -> bool {
        let (_, out, err) = tk(&["key", "show", &aes_uri("9c")], &[]);
        !format!("{out}{err}").contains("is not inserted")
    }
}

impl Drop for AesCard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.wait_absent();
    }
}

fn aes_uri(slot: &str) -> String {
    format!("yubikey:serial={AES_SERIAL};slot={slot}")
}

/// `key generate` on the 5.7 card (JSON), with the PIN and `envs`.
fn aes_generate(slot: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let uri = aes_uri(slot);
    let mut all = vec![("TUFKEY_PIN", PIN)];
    all.extend_from_slice(envs);
    tk(
        &["key", "generate", &uri, "--type", "ecdsa-p256", "--json"],
        &all,
    )
}

/// The slot of the 5.7 card holds no key: no certificate for tufkey, and a generate
/// there would be refused if the card held a key without one (tufkey reads the slot's
/// metadata first), so callers generate into it afterwards to prove it was empty.
fn aes_slot_shows_empty(slot: &str) -> bool {
    let (code, out, err) = tk(&["key", "show", &aes_uri(slot)], &[]);
    code != 0 && format!("{out}{err}").contains("holds no certificate")
}

#[test]
fn the_3des_card_warns_that_its_management_key_is_still_the_factory_default() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    assert!(
        k.p256
            .generate_stderr
            .contains("still uses the factory-default management key (3DES)"),
        "{}",
        k.p256.generate_stderr
    );
}

#[test]
fn a_firmware_5_7_yubikey_makes_keys_with_its_factory_aes192_management_key_and_says_it_is_the_default(
) {
    let Some(card) = card() else { return };
    let aes = AesCard::start(&card, &[]);
    let (code, out, err) = aes_generate("9c", &[]);
    assert_eq!(
        code,
        0,
        "generate on the 5.7 card failed:\n{out}{err}\ncard log:\n{}",
        aes.log()
    );
    assert!(
        err.contains("YubiKey 5437252 still uses the factory-default management key (AES-192)")
            && err.contains("change-management-key"),
        "{err}"
    );
    let made = json_of(&out);
    assert_eq!(made["uri"], aes_uri("9c"));
    // The certificate tufkey wrote needs the management key too: the key reads back.
    let shown = json_of(&tk_ok(&["key", "show", &aes_uri("9c"), "--json"], &[]).0);
    assert_eq!(shown["keyid"], made["keyid"], "{shown}");
    // And it signs (PIN before the signature, slot 9c), verified by tufkey.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    let keyid = made["keyid"].as_str().unwrap();
    write_unsigned(&root, root_body(&[(keyid, &made["key"])], 1));
    tk_ok(
        &["sign", p(&root), "--key", &aes_uri("9c")],
        &[("TUFKEY_PIN", PIN)],
    );
    let (code, report) = verify_json(None, &[p(&root)]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn an_explicit_aes_management_key_is_used_and_a_wrong_or_misfit_one_is_refused_leaving_the_slot_empty(
) {
    let Some(card) = card() else { return };
    // The card's key was changed from the factory default (as with ykman).
    let aes = AesCard::start(&card, &["--mgm-alg", "aes192", "--mgm-key", AES_KEY]);

    // No key given: the default is not even tried, since the metadata says it was changed.
    let (code, out, err) = aes_generate("9a", &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("management key (AES-192) is neither the factory default nor PIN-protected")
            && err.contains("TUFKEY_YUBIKEY_MGM_KEY (48 hex digits)"),
        "{err}"
    );

    // A wrong key of the right length: refused, named by its source, never echoed.
    let wrong = "ffeeddccbbaa99887766554433221100ffeeddccbbaa9988";
    let (code, out, err) = aes_generate("9a", &[("TUFKEY_YUBIKEY_MGM_KEY", wrong)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused the management key given in TUFKEY_YUBIKEY_MGM_KEY (AES-192")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert!(
        !err.contains(wrong) && !err.contains(AES_KEY),
        "key material in: {err}"
    );
    assert!(aes_slot_shows_empty("9a"));

    // A key whose length does not fit the card's algorithm: refused before any try.
    let short = &AES_KEY[..32];
    let (code, out, err) = aes_generate("9a", &[("TUFKEY_YUBIKEY_MGM_KEY", short)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("TUFKEY_YUBIKEY_MGM_KEY has 32 hex digits")
            && err.contains("AES-192, which takes 48 hex digits"),
        "{err}"
    );
    assert!(!err.contains(short), "key material in: {err}");
    assert!(aes_slot_shows_empty("9a"));

    // The right key: the slot (still empty, so no key hid there) gets its key, no warning.
    let (code, out, err) = aes_generate("9a", &[("TUFKEY_YUBIKEY_MGM_KEY", AES_KEY)]);
    assert_eq!(code, 0, "{out}{err}\ncard log:\n{}", aes.log());
    assert!(!err.contains("factory-default management key"), "{err}");
    let made = json_of(&out);
    let shown = json_of(&tk_ok(&["key", "show", &aes_uri("9a"), "--json"], &[]).0);
    assert_eq!(shown["keyid"], made["keyid"]);
}

#[test]
fn a_pin_protected_aes_management_key_is_read_after_the_pin_and_used() {
    let Some(card) = card() else { return };
    let aes = AesCard::start(
        &card,
        &[
            "--mgm-alg",
            "aes192",
            "--mgm-key",
            AES_KEY,
            "--mgm-protected",
        ],
    );
    let (code, out, err) = aes_generate("9d", &[]);
    assert_eq!(code, 0, "{out}{err}\ncard log:\n{}", aes.log());
    assert!(!err.contains("factory-default management key"), "{err}");
    // An explicit key still comes first: a wrong one is refused, not replaced by the stored one.
    let wrong = "ffeeddccbbaa99887766554433221100ffeeddccbbaa9988";
    let (code, out, err) = aes_generate("9e", &[("TUFKEY_YUBIKEY_MGM_KEY", wrong)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("given in TUFKEY_YUBIKEY_MGM_KEY"), "{err}");
    assert!(aes_slot_shows_empty("9e"));
}

// ---- resets: a card tufkey only read is left as it is ----------------------------------

#[test]
fn reading_a_yubikey_never_resets_it_and_a_pin_or_management_key_makes_one_reset_at_the_end() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let ca = p(&card.ca);
    let state = card.state.as_path();

    // Making a key (PIN and management key) reset the card exactly once.
    for key in [&k.p256, &k.rsa] {
        assert_eq!(key.generate_resets, 1, "key generate of {}", key.uri);
    }

    // Reading, by every command that only reads, resets nothing: the key list, the
    // public key (short and full URI, and an empty slot), the attestation.
    let empty = free_slot(None);
    let (_, n) = counting_resets(state, || {
        tk_ok(&["key", "list", "yubikey:", "--json"], &[]);
        for uri in [slot_uri(k.p256.slot), k.rsa.uri.clone()] {
            tk_ok(&["key", "show", &uri, "--json"], &[]);
        }
        assert!(shows_no_certificate(empty));
        for key in [&k.p256, &k.rsa] {
            tk_ok(&["key", "attest", &key.uri, "--ca", ca, "--json"], &[]);
        }
    });
    assert_eq!(n, 0, "key list/show/attest reset the card {n} times");

    // Refusals before any secret reaches the card reset nothing either: generate over a
    // key, a PIN of the wrong length.
    let (_, n) = counting_resets(state, || {
        tk_fails(
            &["key", "generate", &k.p256.uri, "--type", "ecdsa-p256"],
            &[("TUFKEY_PIN", PIN)],
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root.json");
        write_unsigned(&root, root_body(&[(k.p256.keyid.as_str(), &k.p256.key)], 1));
        let (_, msg) = tk_fails(
            &["sign", p(&root), "--key", &k.p256.uri],
            &[("TUFKEY_PIN", "12345")],
        );
        assert!(msg.contains("no try was spent"), "{msg}");
    });
    assert_eq!(n, 0, "refusals before any PIN reset the card {n} times");

    // Signing verifies the PIN: one reset, when tufkey lets go of the card. Two keys of
    // the same card in one command: one reset each, after both signed.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(
        &root,
        root_body(
            &[
                (k.p256.keyid.as_str(), &k.p256.key),
                (k.rsa.keyid.as_str(), &k.rsa.key),
            ],
            1,
        ),
    );
    let (_, n) = counting_resets(state, || {
        tk_ok(
            &["sign", p(&root), "--key", &k.p256.uri],
            &[("TUFKEY_PIN", PIN)],
        )
    });
    assert_eq!(n, 1, "sign with one YubiKey key");
    let (_, n) = counting_resets(state, || {
        tk_ok(
            &["sign", p(&root), "--key", &k.p256.uri, "--key", &k.rsa.uri],
            &[("TUFKEY_PIN", PIN)],
        )
    });
    assert_eq!(n, 2, "sign with two keys of one YubiKey");
    assert_eq!(verify_json(None, &[p(&root)]).0, 0);
}

#[test]
fn with_two_yubikeys_present_the_one_not_named_is_never_reset() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let aes = AesCard::start(&card, &[]);
    let aes_state = aes.state.path().join("card");
    let both = |f: &dyn Fn()| {
        let ((), a) = counting_resets(&aes_state, || {
            let ((), m) = counting_resets(&card.state, f);
            assert_eq!(m, 0, "the 5437251 card was reset {m} times");
        });
        assert_eq!(a, 0, "the 5437252 card was reset {a} times");
    };

    // tufkey opens every card to read its serial: the ones it did not want, and the one
    // it only read, are left as they are.
    both(&|| {
        let shown = json_of(&tk_ok(&["key", "show", &k.p256.uri, "--json"], &[]).0);
        assert_eq!(shown["keyid"], k.p256.keyid.as_str());
        assert!(aes_slot_shows_empty("9c"));
        let (_, msg) = tk_fails(&["key", "show", &slot_uri(k.p256.slot)], &[]);
        assert!(msg.contains("2 YubiKeys are present"), "{msg}");
        tk_ok(&["key", "list", "yubikey:", "--json"], &[]);
    });

    // Signing with the first card resets it once, and not the second.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&[(k.p256.keyid.as_str(), &k.p256.key)], 1));
    let ((), a) = counting_resets(&aes_state, || {
        let (_, m) = counting_resets(&card.state, || {
            tk_ok(
                &["sign", p(&root), "--key", &k.p256.uri],
                &[("TUFKEY_PIN", PIN)],
            )
        });
        assert_eq!(m, 1, "the signing card");
    });
    assert_eq!(a, 0, "the other card");

    // Making a key on the second card (AES-192 management key over a second connection,
    // which leaves the card) resets it once, and not the first.
    let (_, m) = counting_resets(&card.state, || {
        let ((code, out, err), a) = counting_resets(&aes_state, || aes_generate("9c", &[]));
        assert_eq!(code, 0, "{out}{err}\ncard log:\n{}", aes.log());
        assert_eq!(a, 1, "the card the key was made on");
    });
    assert_eq!(m, 0, "the other card");
}

// ---- a PIN changed under a running signer ------------------------------------------

/// Changes the PIN back to the test PIN when dropped (also when the test fails half-way).
struct ChangePinBackOnDrop(&'static str);

impl Drop for ChangePinBackOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("yubico-piv-tool")
            .args(["-a", "change-pin", "-P", self.0, "-N", PIN])
            .output();
        // The right PIN puts the retry counter back to 3.
        let _ = Command::new("yubico-piv-tool")
            .args(["-a", "verify-pin", "-P", PIN])
            .output();
    }
}

/// Changes the PIV PIN (CHANGE REFERENCE DATA) over a PC/SC connection of this test
/// that leaves the card as it is: yubico-piv-tool resets the card when it disconnects,
/// which would end every other connection's session, the running signer's too.
fn change_pin_leaving_the_card(old: &str, new: &str) {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("pcscd");
    let mut buf = [0u8; 4096];
    let readers: Vec<std::ffi::CString> = ctx
        .list_readers(&mut buf)
        .expect("list readers")
        .map(|r| r.to_owned())
        .collect();
    let card = readers
        .iter()
        .find_map(|r| {
            ctx.connect(r, pcsc::ShareMode::Shared, pcsc::Protocols::T1)
                .ok()
        })
        .expect("a reader with the virtual card");
    let send = |apdu: &[u8]| -> Vec<u8> {
        let mut out = [0u8; 258];
        card.transmit(apdu, &mut out).expect("transmit").to_vec()
    };
    let select = send(&[0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08]);
    assert!(
        select.len() >= 2 && matches!(select[select.len() - 2], 0x90 | 0x61),
        "SELECT PIV answered {select:02x?}"
    );
    let pad = |p: &str| {
        let mut v = p.as_bytes().to_vec();
        v.resize(8, 0xff);
        v
    };
    let mut apdu = vec![0x00, 0x24, 0x00, 0x80, 0x10];
    apdu.extend(pad(old));
    apdu.extend(pad(new));
    let answer = send(&apdu);
    assert!(
        answer.ends_with(&[0x90, 0x00]),
        "CHANGE REFERENCE DATA answered {answer:02x?}"
    );
    card.disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("disconnect leaving the card");
}

/// An in-process signer for `uri` on the card with this serial, its PIN given through
/// `TUFKEY_PIN_<serial>` only while it opens (tufkey runs elsewhere with a clean
/// environment).
fn open_in_process(uri: &str, serial: &str) -> Box<dyn tufkey::keys::Signer> {
    let var = format!("TUFKEY_PIN_{serial}");
    std::env::set_var(&var, PIN);
    let signer = tufkey::keys::open_signer(uri, &tufkey::keys::PinPolicy::default());
    std::env::remove_var(&var);
    signer.expect("open the YubiKey signer")
}

/// Signs `msg` and checks the signature with the signer's public key.
fn sign_and_verify(signer: &dyn tufkey::keys::Signer, msg: &[u8]) {
    let sig = signer.sign(msg).expect("the signer signs");
    signer
        .public_key()
        .verify_hex(msg, &hex::encode(sig))
        .expect("the signature verifies");
}

/// A signer verifies the PIN it holds before every signature. When someone changes the
/// PIN under a running process (here: between two signatures, over another PC/SC
/// connection), the next signature spends exactly one try, and every later one fails at
/// once without sending the PIN again: the refusal sticks until the process restarts.
#[test]
fn a_pin_changed_under_a_running_signer_costs_one_try_and_is_never_sent_again() {
    use tufkey::keys::KeyError;
    let Some(card) = card() else { return };
    let k = keys(&card);
    let _restore = RestorePinOnDrop;
    assert_eq!(pin_tries(), 3);
    let signer = open_in_process(&k.p256.uri, SERIAL);
    sign_and_verify(signer.as_ref(), b"before");

    const NEW_PIN: &str = "24680135";
    change_pin_leaving_the_card(PIN, NEW_PIN);
    let _back = ChangePinBackOnDrop(NEW_PIN);

    match signer.sign(b"after") {
        Err(e @ KeyError::PinIncorrect { .. }) => {
            let text = e.to_string();
            assert!(text.contains("will not send that PIN again"), "{text}");
            assert!(!text.contains(PIN) && !text.contains(NEW_PIN), "{text}");
        }
        other => panic!("expected one wrong-PIN answer: {other:?}"),
    }
    assert_refusal_sticks(signer.as_ref());
    drop(signer);
    // Observed from outside (yubico-piv-tool resets the card, so only now): four
    // signatures after the change, one try spent.
    assert_eq!(pin_tries(), 2, "a refused PIN was sent again");
}

/// Opens a PC/SC connection of the test's own to the reader whose name contains `reader`.
fn raw_connection(reader: &str) -> pcsc::Card {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("pcscd");
    let mut buf = [0u8; 4096];
    let name = ctx
        .list_readers(&mut buf)
        .expect("list readers")
        .find(|r| r.to_string_lossy().contains(reader))
        .unwrap_or_else(|| panic!("no reader named …{reader}"))
        .to_owned();
    ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::T1)
        .expect("connect to the virtual card")
}

/// SELECT PIV over a raw connection: what the connection answers (status words or error).
fn select_piv(card: &pcsc::Card) -> Result<Vec<u8>, pcsc::Error> {
    let mut out = [0u8; 258];
    card.transmit(
        &[0x00, 0xa4, 0x04, 0x00, 0x05, 0xa0, 0x00, 0x00, 0x03, 0x08],
        &mut out,
    )
    .map(<[u8]>::to_vec)
}

/// A long-running signer (as `tufkey serve` keeps one) outlives a card reset by another
/// program: the next signature finds its handle answering "card reset", lets go of it
/// without a reset of its own, opens the card again by serial, checks the slot's key,
/// verifies the PIN (no try spent) and signs. A card that is pulled out makes the next
/// signature fail at once saying so; once it is back, the one after that signs, without
/// a restart.
#[test]
fn a_running_signer_reopens_its_yubikey_after_a_reset_by_another_program_or_a_replug() {
    let Some(card) = card() else { return };
    let k = keys(&card);
    let _restore = RestorePinOnDrop;
    assert_eq!(pin_tries(), 3);
    let signer = open_in_process(&k.p256.uri, SERIAL);
    let sign_and_verify = |msg: &[u8]| sign_and_verify(signer.as_ref(), msg);
    sign_and_verify(b"before the reset");

    // Another program resets the card: yubico-piv-tool does when it exits. A connection
    // held across it (like the signer's) answers "card reset" from then on.
    let observer = raw_connection("virtual-piv 00 00");
    assert!(select_piv(&observer).is_ok());
    let (tries, reset_by_tool) = counting_resets(&card.state, pin_tries);
    assert_eq!(
        (tries, reset_by_tool),
        (3, 1),
        "yubico-piv-tool resets once"
    );
    assert_eq!(select_piv(&observer), Err(pcsc::Error::ResetCard));
    observer
        .disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("a handle whose card was reset disconnects (leaving the card)");

    // The signer opens the card again and signs, resetting nothing itself.
    let ((), resets_by_reopen) =
        counting_resets(&card.state, || sign_and_verify(b"after the reset"));
    assert_eq!(resets_by_reopen, 0, "the reopen reset the card");
    sign_and_verify(b"and again, on the new connection");

    // A test connection that disconnects with "reset card" does the same.
    let resetter = raw_connection("virtual-piv 00 00");
    let ((), n) = counting_resets(&card.state, || {
        resetter
            .disconnect(pcsc::Disposition::ResetCard)
            .map_err(|(_, e)| e)
            .expect("reset the card");
    });
    assert_eq!(n, 1);
    sign_and_verify(b"after a reset by a pcsc client");

    // Four PIN verifications on two reopened connections, no try spent; the signer's
    // drop resets the card once (it verified the PIN through the new connection).
    let ((), at_drop) = counting_resets(&card.state, || drop(signer));
    assert_eq!(at_drop, 1, "a dropped signer resets the card once");
    assert_eq!(pin_tries(), 3, "a reopen spent a PIN try");
}

/// The card is pulled out under a running signer: the next signature fails at once
/// (no waiting, even with TUFKEY_YUBIKEY_WAIT set) saying the YubiKey is not inserted;
/// once it is plugged back in, the next signature signs. Then another card answering
/// under the same serial, with another key in the slot, is not trusted: no PIN is sent.
#[test]
fn a_running_signer_answers_at_once_while_its_yubikey_is_out_and_signs_once_it_is_back() {
    use tufkey::keys::KeyError;
    let Some(card) = card() else { return };
    let mut aes = AesCard::start(&card, &[]);
    let (code, out, err) = aes_generate("9c", &[]);
    assert_eq!(code, 0, "{out}{err}");
    let signer = open_in_process(&aes_uri("9c"), AES_SERIAL);
    let sign_and_verify = |msg: &[u8]| sign_and_verify(signer.as_ref(), msg);
    sign_and_verify(b"before");

    aes.unplug();
    // A budget to wait for insertion is for people at a terminal, not for a signer.
    std::env::set_var("TUFKEY_YUBIKEY_WAIT", "30");
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let e = signer.sign(b"while out").unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the signer waited {:?} for the card",
            started.elapsed()
        );
        let text = e.to_string();
        assert!(matches!(e, KeyError::CardAbsent { .. }), "{e:?}");
        assert!(
            text.contains(&format!("YubiKey {AES_SERIAL}")) && text.contains("is not inserted"),
            "{text}"
        );
        assert!(text.contains("next signature opens it again"), "{text}");
    }
    std::env::remove_var("TUFKEY_YUBIKEY_WAIT");

    aes.plug_in();
    sign_and_verify(b"back in");
    assert_eq!(aes.resets(), 0, "the reopen reset the card");

    // Another card under the same serial (a fresh state folder: its own keys) is refused
    // before any PIN reaches it.
    aes.unplug();
    let kept = std::mem::replace(
        &mut aes.state,
        tempfile::Builder::new()
            .prefix("tufkey-piv-aes-")
            .tempdir()
            .unwrap(),
    );
    aes.plug_in();
    let (code, out, err) = aes_generate("9c", &[]);
    assert_eq!(code, 0, "{out}{err}");
    // Generating reset the card (a PIN and management key were given): the signer's handle
    // answers "card reset", and the card it finds holds another key.
    let e = signer.sign(b"impostor").unwrap_err().to_string();
    assert!(
        e.contains("holds another key") && e.contains("sent it no PIN"),
        "{e}"
    );
    assert_eq!(aes.resets(), 1, "only the generate reset the new card");
    drop(signer);
    drop(kept);
}

/// Three failures that look alike to a user and need different answers: pcscd not
/// running and the YubiKey not inserted mean "retry once it is back" (exit 7, with a hint,
/// and `Outcome::Unavailable`, which the daemon answers with 503), a wrong PIN means
/// "a person has to act" (exit 1, `Outcome::Refused`).
#[test]
fn a_stopped_pcscd_an_absent_yubikey_and_a_wrong_pin_each_get_their_own_outcome() {
    use tufkey::keys::{open_signer, Outcome, PinPolicy};
    let Some(card) = card() else { return };
    let k = keys(&card);

    // No pcscd behind the socket this process asks: pcsc-lite reads PCSCLITE_CSOCK_NAME.
    let nowhere = tempfile::tempdir().unwrap();
    let socket = nowhere.path().join("pcscd.comm");
    let (code, msg) = tk_fails(
        &["key", "show", &k.p256.uri],
        &[("PCSCLITE_CSOCK_NAME", p(&socket))],
    );
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("pcscd is not running") && msg.contains("systemctl start pcscd"),
        "{msg}"
    );
    assert!(
        msg.contains("hint: the device or service is not available now"),
        "{msg}"
    );

    // pcscd runs, but no YubiKey with this serial is inserted.
    let absent = "yubikey:serial=1;slot=9c";
    let (code, msg) = tk_fails(&["key", "show", absent], &[("TUFKEY_YUBIKEY_WAIT", "0")]);
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("YubiKey serial 1 is not inserted") && msg.contains(SERIAL),
        "{msg}"
    );
    std::env::set_var("TUFKEY_YUBIKEY_WAIT", "0");
    let e = open_signer(absent, &PinPolicy::default()).err();
    std::env::remove_var("TUFKEY_YUBIKEY_WAIT");
    let e = e.expect("no such YubiKey");
    assert_eq!(e.outcome(), Outcome::Unavailable, "{e}");

    // A wrong PIN: refused, one try spent (and given back below), no hint to retry.
    let _restore = RestorePinOnDrop;
    let var = format!("TUFKEY_PIN_{SERIAL}");
    std::env::set_var(&var, "654321");
    let e = open_signer(&k.p256.uri, &PinPolicy::default()).err();
    std::env::remove_var(&var);
    let e = e.expect("a wrong PIN opens no signer");
    assert_eq!(e.outcome(), Outcome::Refused, "{e}");
    assert!(e.to_string().contains("wrong PIN"), "{e}");
    assert_eq!(pin_tries(), 2, "exactly one try spent");
    piv_tool(&["-a", "verify-pin", "-P", PIN]);
    assert_eq!(pin_tries(), 3);
}

/// The signer daemon with a key on a YubiKey answers 503 `hsm-unavailable` while pcscd
/// cannot be reached and while the YubiKey is out, names the cause, and signs again once
/// both are back. "pcscd cannot be reached": the daemon finds pcscd through a socket path
/// of its own (PCSCLITE_CSOCK_NAME, a link to the real socket); with the link removed and
/// the card pulled (which ends the daemon's card connection), it has no pcscd to ask.
#[test]
fn the_daemon_answers_503_while_pcscd_is_unreachable_or_the_yubikey_is_out() {
    use harness::daemon::{client_policy, daemon_folder, expires_in, signer_toml, Daemon};
    let Some(card) = card() else { return };
    let mut aes = AesCard::start(&card, &[]);
    let (code, out, err) = aes_generate("9c", &[]);
    assert_eq!(code, 0, "{out}{err}");
    let generated = json_of(&out);
    let key_uri = generated["uri"].as_str().unwrap().to_string();
    let keyid = generated["keyid"].as_str().unwrap().to_string();

    let (dir, ca) = daemon_folder("tufkey-serve-yk-");
    let d = dir.path();
    let config = d.join("signer.toml");
    std::fs::write(
        &config,
        signer_toml(
            "state = \"state.json\"\naudit = \"audit.jsonl\"",
            "",
            &[&key_uri],
            &[client_policy(
                "ci-main",
                &[&keyid],
                &["*"],
                &["timestamp"],
                "7d",
                "",
            )],
        ),
    )
    .unwrap();
    let link = d.join("pcscd.comm");
    std::os::unix::fs::symlink("/run/pcscd/pcscd.comm", &link).unwrap();
    let ready = d.join("daemon.ready");
    let log = d.join("daemon.log");
    let mut c = tufkey(None);
    c.args(["serve", "--config"])
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready)
        .env(format!("TUFKEY_PIN_{AES_SERIAL}"), PIN)
        .env("PCSCLITE_CSOCK_NAME", &link)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = c.spawn().expect("start tufkey serve");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&ready) {
            break addr;
        }
        assert!(
            std::time::Instant::now() < until,
            "tufkey serve did not become ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let daemon = Daemon { child, addr, log };
    let (cert, key) = ca.issue(d, "ci-main", "ci-main", false, false);
    let client = daemon.client(&tufkey::keys::remote::ClientTls {
        ca: d.join("client-ca.pem"),
        identity: Some((cert, key)),
    });
    let sign = |version: u64| {
        let doc = json!({
            "signed": {
                "_type": "timestamp",
                "spec_version": "1.0.31",
                "version": version,
                "expires": expires_in(3600),
                "meta": {"snapshot.json": {"version": version}},
            },
            "signatures": [],
        });
        let r = client
            .post_json(
                "/v1/sign",
                &json!({"repository": "acme", "key_id": keyid, "metadata": doc}),
            )
            .unwrap();
        let body = r.json();
        (r.status, body)
    };

    let (status, body) = sign(1);
    assert_eq!(status, 200, "{body}");

    // No pcscd to reach, and the daemon's card connection is gone.
    std::fs::remove_file(&link).unwrap();
    aes.unplug();
    let (status, body) = sign(2);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("hsm-unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("pcscd is not running"), "{message}");
    assert!(!message.contains(PIN), "the PIN leaked: {message}");

    // pcscd is reachable again, but the YubiKey is still out.
    std::os::unix::fs::symlink("/run/pcscd/pcscd.comm", &link).unwrap();
    let (status, body) = sign(3);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("hsm-unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("is not inserted"), "{message}");

    // Both back: the daemon opens the card again and signs, no restart.
    aes.plug_in();
    let (status, body) = sign(4);
    assert_eq!(status, 200, "{body}");
    daemon.stop();
}

// ---- a generic PIV card (no Yubico extensions) -------------------------------------

/// VERIFY of the PIV PIN over a connection of the test's own, as another program (say
/// OpenSC) does: the card's PIN is then verified for everyone until a reset.
fn verify_pin_raw(card: &pcsc::Card, pin: &str) -> Vec<u8> {
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    let mut padded = pin.as_bytes().to_vec();
    padded.resize(8, 0xff);
    apdu.extend(padded);
    let mut out = [0u8; 258];
    card.transmit(&apdu, &mut out)
        .expect("VERIFY over the raw connection")
        .to_vec()
}

/// The virtual card in its generic-PIV mode (`virtual-piv --generic`, as a Nitrokey 3):
/// no GET METADATA, no ATTEST, the PIN kept verified across SELECT; its management key
/// is the AES-192 factory default (firmware 5.7.1), which tufkey must find without
/// being told the algorithm.
#[test]
fn a_generic_piv_card_makes_and_signs_with_keys_and_says_what_it_cannot_do() {
    let Some(card) = card() else { return };
    let generic = AesCard::start(&card, &["--generic"]);

    // Generate: the factory-default management key is tried as 3DES, then as AES-192,
    // and tufkey says so (a refused management key costs no PIN or PUK try).
    let (code, out, err) = aes_generate("9c", &[]);
    assert_eq!(
        code,
        0,
        "generate on the generic card failed:\n{out}{err}\ncard log:\n{}",
        generic.log()
    );
    assert!(
        err.contains("does not report its management key (no GET METADATA")
            && err.contains("spends no retry counter")
            && err.contains("factory-default management key (AES-192)"),
        "{err}"
    );
    let made = json_of(&out);
    let keyid = made["keyid"].as_str().unwrap().to_string();

    // Sign; python-tuf verifies and computes the same key id.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    write_unsigned(&root, root_body(&[(keyid.as_str(), &made["key"])], 1));
    tk_ok(
        &["sign", p(&root), "--key", &aes_uri("9c")],
        &[("TUFKEY_PIN", PIN)],
    );
    let v: Value = serde_json::from_str(&python_tuf(PY_VERIFY_ROOT, &[p(&root)])).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["keyids"][&keyid], keyid.as_str());

    // Another program verified the PIN and holds the card: an empty VERIFY answers
    // 9000. That is neither "locked" nor a try; tufkey says so and signs.
    let other = raw_connection("virtual-piv 00 01");
    assert!(select_piv(&other).is_ok());
    assert_eq!(verify_pin_raw(&other, PIN), vec![0x90, 0x00]);
    let (code, out, err) = tk(
        &["sign", p(&root), "--key", &aes_uri("9c")],
        &[("TUFKEY_PIN", PIN)],
    );
    let _ = other.disconnect(pcsc::Disposition::LeaveCard);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("reports its PIN already verified") && !err.contains("locked"),
        "{err}"
    );
    let (code, report) = verify_json(None, &[p(&root)]);
    assert_eq!(code, 0, "{report}");

    // No attestation: said plainly, and a ceremony that requires one refuses the key.
    let (code, msg) = tk_fails(&["key", "attest", &aes_uri("9c")], &[]);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("does not implement attestation") && msg.contains("cannot be attested"),
        "{msg}"
    );
    let work = tempfile::tempdir().unwrap();
    let ceremony = work.path().join("ceremony");
    tk_ok(
        &["ceremony", "init", p(&ceremony), "--require-attestation"],
        &[],
    );
    let before = snapshot(&ceremony);
    let (code, msg) = tk_fails(
        &[
            "ceremony",
            "add-key",
            p(&ceremony),
            "--role",
            "root",
            "--key",
            &aes_uri("9c"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("requires key attestation") && msg.contains(&keyid),
        "{msg}"
    );
    assert_eq!(snapshot(&ceremony), before);
}

/// A generic PIV card whose management key was changed to an AES-256 key: without it
/// tufkey says what it tried and how to give the key, and writes nothing; given in
/// TUFKEY_YUBIKEY_MGM_KEY, its length tells the algorithm the card does not report.
#[test]
fn a_generic_piv_card_with_a_changed_management_key_takes_it_by_length_and_is_untouched_without_it()
{
    let Some(card) = card() else { return };
    let aes256 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let generic = AesCard::start(
        &card,
        &["--generic", "--mgm-alg", "aes256", "--mgm-key", aes256],
    );

    let (code, out, err) = aes_generate("9a", &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused the factory-default management key as 3DES and as AES-192")
            && err.contains("TUFKEY_YUBIKEY_MGM_KEY")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert!(
        aes_slot_shows_empty("9a"),
        "the refused generate wrote the slot"
    );

    let (code, out, err) = aes_generate("9a", &[("TUFKEY_YUBIKEY_MGM_KEY", aes256)]);
    assert_eq!(
        code,
        0,
        "generate with the AES-256 key failed:\n{out}{err}\ncard log:\n{}",
        generic.log()
    );
    let made = json_of(&out);
    let shown = json_of(&tk_ok(&["key", "show", &aes_uri("9a"), "--json"], &[]).0);
    assert_eq!(shown["keyid"], made["keyid"], "{shown}");
}
