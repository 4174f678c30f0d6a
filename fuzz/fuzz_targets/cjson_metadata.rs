//! Canonical JSON and the metadata envelope: anything tufkey canonicalises must parse back
//! to the same canonical bytes, and a document it loads must keep its payload (the bytes
//! every signature covers) through to_value / pretty-printing and loading again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tufkey::tuf::cjson::to_canonical;
use tufkey::tuf::Metadata;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        // OLPC canonical JSON (securesystemslib's) writes control characters unescaped,
        // which strict JSON parsers refuse: the round trip holds for the other strings.
        let canonical = to_canonical(&value)
            .ok()
            .filter(|c| !c.iter().any(|b| *b < 0x20));
        if let Some(canonical) = canonical {
            let again: Value = serde_json::from_slice(&canonical)
                .unwrap_or_else(|e| panic!("canonical JSON does not parse back: {e}"));
            let canonical_again =
                to_canonical(&again).expect("re-parsed canonical JSON canonicalises");
            assert_eq!(
                canonical, canonical_again,
                "canonical JSON is not a fixed point"
            );
        }
    }
    if let Ok(md) = Metadata::from_slice(data) {
        let payload = md.payload();
        let reloaded = Metadata::from_value(md.to_value()).expect("to_value loads again");
        assert_eq!(
            payload,
            reloaded.payload(),
            "payload changed through to_value"
        );
        let pretty = Metadata::from_slice(&md.to_pretty_bytes()).expect("pretty output loads");
        assert_eq!(
            payload,
            pretty.payload(),
            "payload changed through the pretty form"
        );
        assert_eq!(md.signatures().len(), pretty.signatures().len());
        let _ = (
            md.role_type(),
            md.version(),
            md.expires(),
            md.payload_sha256(),
        );
    }
});
