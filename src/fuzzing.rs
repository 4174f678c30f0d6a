//! Entry points for the fuzz targets in `fuzz/` (docs/testing.md, "Fuzzing"): each calls
//! the parser that production code calls on untrusted bytes, so that a fuzz target never
//! fuzzes a copy. Hidden from the docs; not an API for anything else.

use std::path::Path;

use serde_json::Value;

#[cfg(feature = "yubikey")]
use crate::keys::yubikey::{attest, mgm};
use crate::repo::verify::{files, paths};
use crate::server::{api, sign_body};

/// The body of `POST /v1/sign` and `POST /v1/sign-raw` as the daemon reads it, up to the
/// point where the key and the client's policy are needed: the request, the TUF document
/// in it, its canonical payload, role type and version; the raw request's hex.
pub fn sign_request_body(body: &[u8]) {
    if let Ok(r) = sign_body::parse(body) {
        if let Ok(doc) = r.metadata.prepare(r.role) {
            let _ = (
                doc.payload,
                doc.md.role_type(),
                doc.md.version(),
                doc.md.expires(),
            );
        }
    }
    if let Ok(r) = serde_json::from_slice::<api::RawSignRequest>(body) {
        let _ = hex::decode(r.message_hex.trim());
    }
}

/// A PIV card's answers that tufkey reads itself (the `yubikey` crate reads the rest):
/// GET METADATA for the management key, the PIN-protected management key object, and the
/// TLVs around an attested public key.
#[cfg(feature = "yubikey")]
pub fn piv_answers(data: &[u8]) {
    let _ = mgm::parse_metadata(data);
    let _ = mgm::parse_protected(data);
    if let Some(&tag) = data.first() {
        let _ = attest::strip_tlv(&data[1..], tag);
    }
}

/// The parts of a repository that `repo verify` reads from metadata: a delegated role's
/// path rule (and which paths it allows), succinct hash bins, a file's stated length and
/// hashes and the file names a client would fetch it by.
pub fn repo_metadata_value(value: &Value, target: &str) {
    if let Ok(rule) = paths::PathRule::from_role(value) {
        let _ = (rule.allows(target), rule.describe());
    }
    if let Some(bins) = value.get("succinct_roles") {
        if let Ok(s) = paths::Succinct::from_value(bins) {
            let _ = s.role_for(target);
        }
    }
    for required in [false, true] {
        if let Ok(stated) = files::Stated::from_info(value, required) {
            let _ = files::target_file_names(target, &stated, required);
            let _ = stated.check_bytes(target.as_bytes(), "fuzz");
        }
    }
    let _ = files::safe_target_path(target);
}

/// A ceremony transcript read from `path` whose text is `text`.
pub fn ceremony_transcript(path: &Path, text: &str) {
    let _ = crate::ceremony::Transcript::parse(path, text);
}
