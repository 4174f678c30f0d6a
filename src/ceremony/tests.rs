//! `Ceremony::add_key` checks first and writes last: a refused key leaves no
//! attestation file. Only YubiKey keys come with an attestation through the CLI, so the
//! ordering is shown here on the library call, with a record written as data.

use serde_json::json;

use super::*;
use crate::tuf::PublicKey;

fn key(n: u8) -> Key {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
    PublicKey::Ed25519(sk.verifying_key()).to_tuf_key()
}

fn record() -> AttestationRecord {
    AttestationRecord {
        uri: "yubikey:serial=5437251;slot=9c".into(),
        slot_certificate: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        intermediate: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        statement: json!({"serial": 5437251, "slot": "9c"}),
    }
}

fn provenance() -> Provenance {
    Provenance {
        uri: "yubikey:serial=5437251;slot=9c".into(),
        ..Provenance::default()
    }
}

/// The files a refused add-key must leave exactly as they were.
fn snapshot(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("root.json")).unwrap(),
        std::fs::read(dir.join("transcript.jsonl")).unwrap(),
    )
}

#[test]
fn an_attested_key_already_listed_under_another_key_id_is_refused_and_leaves_no_attestation_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ceremony");
    let mut c = Ceremony::init(&dir, None, "2030-01-01T00:00:00Z", false, "alice").unwrap();
    // The same public key with an extra field hashes to another key id.
    let mut listed = key(1);
    listed.extra.insert("x-note".into(), json!("same key"));
    let existing = c
        .add_key("root", &listed, &provenance(), None, "alice")
        .unwrap();
    let before = snapshot(&dir);

    let err = c
        .add_key("targets", &key(1), &provenance(), Some(&record()), "alice")
        .unwrap_err();

    assert!(err.to_string().contains(&existing), "{err}");
    assert!(
        !dir.join("attestations").exists(),
        "a refused key left {}",
        dir.join("attestations").display()
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "root.json and the transcript are unchanged"
    );
}

#[test]
fn an_attested_key_for_a_role_that_does_not_exist_leaves_no_attestation_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ceremony");
    let mut c = Ceremony::init(&dir, None, "2030-01-01T00:00:00Z", false, "alice").unwrap();
    let before = snapshot(&dir);

    let err = c
        .add_key("mirror", &key(1), &provenance(), Some(&record()), "alice")
        .unwrap_err();

    assert!(err.to_string().contains("mirror"), "{err}");
    assert!(!dir.join("attestations").exists());
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn an_accepted_attested_key_has_its_record_on_disk_with_the_hash_the_transcript_states() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ceremony");
    let mut c = Ceremony::init(&dir, None, "2030-01-01T00:00:00Z", false, "alice").unwrap();

    let keyid = c
        .add_key("root", &key(1), &provenance(), Some(&record()), "alice")
        .unwrap();

    let file = dir.join("attestations").join(format!("{keyid}.json"));
    let bytes = std::fs::read(&file).unwrap();
    let entry = c.transcript.entries.last().unwrap();
    assert_eq!(entry.action, "add-key");
    assert_eq!(
        entry.details["attestation"]["sha256"],
        hex::encode(Sha256::digest(&bytes))
    );
    assert_eq!(
        serde_json::from_slice::<AttestationRecord>(&bytes)
            .unwrap()
            .statement,
        record().statement
    );
}
