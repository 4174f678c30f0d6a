//! A `POST /v1/sign` body read once. The daemon used to parse the whole body into a
//! `serde_json::Value` tree, check the tree's canonical form, then write that form
//! again for the payload: three walks and an allocation per member for a document it
//! only needs as canonical bytes. Here the body is read into a [`Tape`] (byte ranges,
//! no tree) and the metadata's canonical payload is written straight from it
//! ([`Envelope`]). Anything the tape cannot vouch for, or that is not the plain shape
//! `{repository?, key_id, role?, metadata}` with string fields, takes the `serde_json`
//! path instead, so a client gets exactly the answer (or the error) it got before.

use serde::Deserialize;
use serde_json::Value;

use super::document::{self, Prepared};
use super::refusal::{bad_request, Refusal};
use crate::tuf::tape::{Kind, Tape};

/// `POST /v1/sign` as serde reads it (the fallback, and the error words).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    /// May be left out when the client's policy names exactly one repository.
    repository: Option<String>,
    key_id: String,
    /// Defaults to `signed._type`; a delegated role's name for delegated targets.
    role: Option<String>,
    /// The whole TUF document (`{"signed": …, "signatures": […]}`).
    metadata: Value,
}

/// The document to sign, in whichever form the body was read.
pub(crate) enum Document {
    /// The JSON text of `metadata`, for [`crate::tuf::Envelope::from_bytes`].
    Text(Vec<u8>),
    /// `metadata` as serde parsed it (the body was not one the tape vouches for).
    Value(Value),
}

impl Document {
    /// Parses it as a TUF document with its canonical payload (`role`: the role asked
    /// for, default `signed._type`).
    pub(crate) fn prepare(self, role: Option<String>) -> Result<Prepared, Refusal> {
        match self {
            Document::Text(text) => document::prepare_text(text, role),
            Document::Value(v) => document::prepare(v, role),
        }
    }
}

/// A sign request's fields.
pub(crate) struct SignBody {
    pub repository: Option<String>,
    pub key_id: String,
    pub role: Option<String>,
    pub metadata: Document,
}

/// Reads a `/v1/sign` body: from its tape when it has the plain shape, else through
/// serde (400 `malformed` with serde's words when it is not a sign request).
pub(crate) fn parse(bytes: &[u8]) -> Result<SignBody, Refusal> {
    if let Some(body) = from_tape(bytes) {
        return Ok(body);
    }
    let r: SignRequest = serde_json::from_slice(bytes).map_err(|e| {
        bad_request(
            "malformed",
            format!("the body is not a sign request {{repository, key_id, role?, metadata}}: {e}"),
        )
    })?;
    Ok(SignBody {
        repository: r.repository,
        key_id: r.key_id,
        role: r.role,
        metadata: Document::Value(r.metadata),
    })
}

/// The plain shape only: an object with string `key_id`, optional string (or null)
/// `repository` and `role`, an object `metadata`, each at most once, nothing else.
/// `None` for anything else, which serde then accepts or words.
fn from_tape(bytes: &[u8]) -> Option<SignBody> {
    let tape = Tape::parse(bytes.to_vec()).ok()?;
    if tape.nodes.first()?.kind != Kind::Object {
        return None;
    }
    let (mut repository, mut key_id, mut role, mut metadata) = (None, None, None, None);
    let optional = |v: usize| match tape.nodes[v].kind {
        Kind::Null => Some(None),
        _ => tape.string(v).ok().map(Some),
    };
    for (k, v) in tape.members(0) {
        let slot_filled = match tape.string(k).ok()?.as_str() {
            "repository" => repository.replace(optional(v)?).is_some(),
            "role" => role.replace(optional(v)?).is_some(),
            "key_id" => key_id.replace(tape.string(v).ok()?).is_some(),
            "metadata" if tape.nodes[v].kind == Kind::Object => {
                metadata.replace(tape.json_text(v).to_vec()).is_some()
            }
            _ => return None,
        };
        if slot_filled {
            // A repeated member: serde refuses it, in its words.
            return None;
        }
    }
    Some(SignBody {
        repository: repository.flatten(),
        key_id: key_id?,
        role: role.flatten(),
        metadata: Document::Text(metadata?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(b: &SignBody) -> (Option<&str>, &str, Option<&str>) {
        (b.repository.as_deref(), &b.key_id, b.role.as_deref())
    }

    #[test]
    fn a_plain_body_is_read_from_its_tape_with_the_metadata_text_as_sent() {
        let body = br#"{"repository":"acme","key_id":"AB12","role":null,"metadata":{"signed":{"_type":"timestamp"},"signatures":[]}}"#;
        let b = parse(body).unwrap();
        assert_eq!(fields(&b), (Some("acme"), "AB12", None));
        match b.metadata {
            Document::Text(t) => {
                assert_eq!(t, br#"{"signed":{"_type":"timestamp"},"signatures":[]}"#)
            }
            Document::Value(_) => panic!("a plain body took the serde path"),
        }
    }

    #[test]
    fn unusual_bodies_take_the_serde_path_and_get_its_answer() {
        // An escaped member name, a float inside the metadata: serde reads them.
        let escaped = br#"{"key_\u0069d":"k","metadata":{"signed":{"v":1.5},"signatures":[]}}"#;
        let b = parse(escaped).unwrap();
        assert_eq!(fields(&b), (None, "k", None));
        assert!(matches!(b.metadata, Document::Value(_)));
        // Repeated, unknown, missing or mistyped fields: serde's refusal.
        for (body, words) in [
            (
                &br#"{"key_id":"a","key_id":"b","metadata":{}}"#[..],
                "duplicate field",
            ),
            (
                br#"{"key_id":"a","metadata":{},"extra":1}"#,
                "unknown field `extra`",
            ),
            (br#"{"metadata":{}}"#, "missing field `key_id`"),
            (br#"{"key_id":7,"metadata":{}}"#, "invalid type"),
            (br#"{"key_id":"a","metadata":{}"#, "EOF"),
        ] {
            let r = parse(body).err().expect("a malformed body was accepted");
            assert_eq!(r.code, "malformed");
            assert!(
                r.message.contains(words),
                "{words:?} not in {:?}",
                r.message
            );
        }
    }

    #[test]
    fn metadata_that_is_not_an_object_is_left_to_the_document_checks() {
        let b = parse(br#"{"key_id":"a","metadata":[1]}"#).unwrap();
        assert!(matches!(b.metadata, Document::Value(Value::Array(_))));
    }
}
