//! The span tape (`tuf::tape`, `tuf::tape_write`, `tuf::Envelope`) against the serde path
//! (`serde_json::Value`, `cjson`, `Metadata`) on the same bytes: whenever the tape answers,
//! its answer must be the serde path's — the same canonical bytes and pretty form for any
//! JSON value, and for a metadata file the same payload, file form, type, version, expiry,
//! signatures, delegations and the same error text. The tape may decline; then the serde
//! path decides. Any disagreement panics. (`src/tuf/tape_tests.rs` does this for generated
//! documents; this is the fuzzer's version.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tufkey::tuf::cjson::to_canonical;
use tufkey::tuf::tape::Tape;
use tufkey::tuf::tape_write::{canonical, pretty, pretty_value};
use tufkey::tuf::{Delegator, Envelope, Metadata};

/// Any JSON value: canonical and pretty bytes from the tape equal the serde path's.
fn value_both_ways(data: &[u8]) {
    let Ok(tape) = Tape::parse(data.to_vec()) else {
        return;
    };
    let parsed = serde_json::from_slice::<Value>(data);
    let mut fast = Vec::new();
    if canonical(&tape, 0, &mut fast).is_ok() {
        let value = parsed.as_ref().unwrap_or_else(|e| {
            panic!("the tape wrote canonical bytes for JSON serde_json refuses: {e}")
        });
        let slow = to_canonical(value)
            .unwrap_or_else(|e| panic!("the tape wrote canonical bytes where cjson refuses: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&slow),
            "canonical bytes differ"
        );
    }
    let mut fast = Vec::new();
    if pretty(&tape, 0, 0, &mut fast).is_ok() {
        let value = parsed.as_ref().unwrap_or_else(|e| {
            panic!("the tape wrote a pretty form for JSON serde_json refuses: {e}")
        });
        let mut slow = Vec::new();
        pretty_value(value, 0, &mut slow);
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&slow),
            "pretty forms differ"
        );
    }
}

/// A metadata file: `Envelope` (tape first) and `Metadata` give the same answers.
fn envelope_both_ways(data: &[u8]) {
    let slow = Metadata::from_slice(data);
    let env = Envelope::from_bytes(data.to_vec());
    let (md, env) = match (slow, env) {
        (Ok(md), Ok(env)) => (md, env),
        (Err(a), Err(b)) => {
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "the two paths refuse differently"
            );
            return;
        }
        (a, b) => panic!(
            "Metadata says {:?}, Envelope says {:?}",
            a.err().map(|e| e.to_string()),
            b.err().map(|e| e.to_string())
        ),
    };
    assert_eq!(env.payload(), md.payload().as_slice(), "payloads differ");
    assert_eq!(env.payload_sha256(), md.payload_sha256());
    assert_eq!(env.role_type(), md.role_type());
    assert_eq!(env.version(), md.version());
    assert_eq!(env.expires().as_deref(), md.expires());
    assert_eq!(env.signatures(), md.signatures());
    assert_eq!(
        String::from_utf8_lossy(&env.to_pretty_bytes()),
        String::from_utf8_lossy(&md.to_pretty_bytes()),
        "file forms differ"
    );
    for name in ["keys", "roles", "delegations", "version", "_type"] {
        assert_eq!(
            env.signed_member(name),
            md.signed().get(name).cloned(),
            "signed.{name} differs"
        );
    }
    let delegated = |d: Result<Delegator, tufkey::tuf::TufError>| {
        d.map(|d| d.keyid_mismatches()).map_err(|e| e.to_string())
    };
    assert_eq!(
        delegated(env.delegator()),
        delegated(Delegator::from_metadata(&md)),
        "delegations differ"
    );
}

fuzz_target!(|data: &[u8]| {
    value_both_ways(data);
    envelope_both_ways(data);
});
