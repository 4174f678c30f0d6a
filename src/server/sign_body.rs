//! A `POST /v1/sign` or `POST /v1/sign-batch` body read once. The daemon used to parse the whole body into a
//! `serde_json::Value` tree, check the tree's canonical form, then write that form
//! again for the payload: three walks and an allocation per member for a document it
//! only needs as canonical bytes. Here the body is read into a [`Tape`] (byte ranges,
//! no tree) and the metadata's canonical payload is written straight from it
//! ([`Envelope`]). Anything the tape cannot vouch for, or that is not the plain shape
//! `{repository?, key_id, role?, metadata}` with string fields, takes the `serde_json`
//! path instead, so a client gets exactly the answer (or the error) it got before. A
//! batch body `{repository?, key_id, documents: [{repository?, role?, metadata}]}` is
//! read the same way: one tape for the whole body, each document kept as its JSON text.

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

/// `POST /v1/sign-batch`.
pub(crate) struct BatchRequest {
    /// The default for every document; may be left out when the client's policy names
    /// exactly one repository.
    pub(crate) repository: Option<String>,
    pub(crate) key_id: String,
    pub(crate) documents: Vec<BatchDocument>,
}

/// One document of a batch.
pub(crate) struct BatchDocument {
    pub(crate) repository: Option<String>,
    /// Defaults to `signed._type`; a delegated role's name (a hashed bin) otherwise.
    pub(crate) role: Option<String>,
    pub(crate) metadata: Document,
}

/// The body as serde reads it: the fallback for bodies the tape does not vouch for, and
/// the words of every refusal of a malformed body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SerdeBatch {
    repository: Option<String>,
    key_id: String,
    documents: Vec<SerdeDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SerdeDocument {
    repository: Option<String>,
    role: Option<String>,
    metadata: Value,
}

impl BatchRequest {
    /// A body as the daemon reads it: from its tape when it has the plain shape (each
    /// document's metadata kept as its JSON text, no `Value` tree), else through serde,
    /// with the same answers either way. One function, so that the `sign_batch` fuzz
    /// target (src/fuzzing.rs) reads bodies exactly as the daemon does.
    pub(crate) fn parse(body: &[u8]) -> Result<BatchRequest, Refusal> {
        tape_or_serde(
            body,
            batch_from_tape,
            "a batch request {repository?, key_id, documents: [{repository?, role?, metadata}]}",
            |r: SerdeBatch| BatchRequest {
                repository: r.repository,
                key_id: r.key_id,
                documents: r
                    .documents
                    .into_iter()
                    .map(|d| BatchDocument {
                        repository: d.repository,
                        role: d.role,
                        metadata: Document::Value(d.metadata),
                    })
                    .collect(),
            },
        )
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
    tape_or_serde(
        bytes,
        from_tape,
        "a sign request {repository, key_id, role?, metadata}",
        |r: SignRequest| SignBody {
            repository: r.repository,
            key_id: r.key_id,
            role: r.role,
            metadata: Document::Value(r.metadata),
        },
    )
}

/// A body from its tape when `tape` vouches for it, else through serde as `S` (400
/// `malformed` with serde's words, saying the body is not `what`).
fn tape_or_serde<T, S: serde::de::DeserializeOwned>(
    bytes: &[u8],
    tape: impl FnOnce(&[u8]) -> Option<T>,
    what: &str,
    from_serde: impl FnOnce(S) -> T,
) -> Result<T, Refusal> {
    if let Some(read) = tape(bytes) {
        return Ok(read);
    }
    serde_json::from_slice(bytes)
        .map(from_serde)
        .map_err(|e| bad_request("malformed", format!("the body is not {what}: {e}")))
}

/// The body's tape when it parses and is an object.
fn object_tape(bytes: &[u8]) -> Option<Tape> {
    let tape = Tape::parse(bytes.to_vec()).ok()?;
    (tape.nodes.first()?.kind == Kind::Object).then_some(tape)
}

/// The plain shape only: an object with string `key_id`, optional string (or null)
/// `repository` and `role`, an object `metadata`, each at most once, nothing else.
/// `None` for anything else, which serde then accepts or words.
fn from_tape(bytes: &[u8]) -> Option<SignBody> {
    let tape = object_tape(bytes)?;
    let f = fields(&tape, 0, Shape::Sign)?;
    Some(SignBody {
        repository: f.repository,
        key_id: f.key_id?,
        role: f.role,
        metadata: Document::Text(f.metadata?),
    })
}

/// The plain shape of a batch: an object with string `key_id`, optional string (or
/// null) `repository`, an array `documents` of objects each with optional string (or
/// null) `repository` and `role` and an object `metadata`; every member at most once,
/// nothing else. `None` for anything else, which serde then accepts or words.
fn batch_from_tape(bytes: &[u8]) -> Option<BatchRequest> {
    let tape = object_tape(bytes)?;
    let top = fields(&tape, 0, Shape::Batch)?;
    let list = top.documents?;
    let mut documents = Vec::with_capacity(tape.items(list).count());
    for d in tape.items(list) {
        if tape.nodes[d].kind != Kind::Object {
            return None;
        }
        let f = fields(&tape, d, Shape::BatchDocument)?;
        documents.push(BatchDocument {
            repository: f.repository,
            role: f.role,
            metadata: Document::Text(f.metadata?),
        });
    }
    Some(BatchRequest {
        repository: top.repository,
        key_id: top.key_id?,
        documents,
    })
}

/// Which object of a body is read: each allows its own members.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `/v1/sign`: `repository`, `key_id`, `role`, `metadata`.
    Sign,
    /// `/v1/sign-batch`: `repository`, `key_id`, `documents`.
    Batch,
    /// One of a batch's `documents`: `repository`, `role`, `metadata`.
    BatchDocument,
}

/// What one object of a body held, read from the tape.
#[derive(Default)]
struct Fields {
    repository: Option<String>,
    key_id: Option<String>,
    role: Option<String>,
    metadata: Option<Vec<u8>>,
    documents: Option<usize>,
}

/// Reads the object at `obj`; `None` for a member that is not allowed there, repeated
/// or of a type the tape does not vouch for.
fn fields(tape: &Tape, obj: usize, shape: Shape) -> Option<Fields> {
    let optional = |v: usize| match tape.nodes[v].kind {
        Kind::Null => Some(None),
        _ => tape.string(v).ok().map(Some),
    };
    let (mut repository, mut role) = (None, None);
    let mut f = Fields::default();
    let batch = shape == Shape::Batch;
    for (k, v) in tape.members(obj) {
        let slot_filled = match &*tape.name(k).ok()? {
            "repository" => repository.replace(optional(v)?).is_some(),
            "role" if !batch => role.replace(optional(v)?).is_some(),
            "key_id" if shape != Shape::BatchDocument => {
                f.key_id.replace(tape.string(v).ok()?).is_some()
            }
            "metadata" if !batch && tape.nodes[v].kind == Kind::Object => {
                f.metadata.replace(tape.json_text(v).to_vec()).is_some()
            }
            "documents" if batch && tape.nodes[v].kind == Kind::Array => {
                f.documents.replace(v).is_some()
            }
            _ => return None,
        };
        if slot_filled {
            // A repeated member: serde refuses it, in its words.
            return None;
        }
    }
    f.repository = repository.flatten();
    f.role = role.flatten();
    Some(f)
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

    fn batch(body: &[u8]) -> Result<BatchRequest, Refusal> {
        BatchRequest::parse(body)
    }

    #[test]
    fn a_plain_batch_is_read_from_its_tape_with_each_metadata_text_as_sent() {
        let body = br#"{"key_id":"AB","repository":null,"documents":[
            {"metadata":{"signed":{"_type":"targets"},"signatures":[]},"role":"bin-0","repository":"acme"},
            {"role":null,"metadata":{"signed":{"_type":"timestamp"}}}]}"#;
        let r = batch(body).unwrap();
        assert_eq!((r.repository.as_deref(), r.key_id.as_str()), (None, "AB"));
        let docs: Vec<_> = r
            .documents
            .iter()
            .map(|d| match &d.metadata {
                Document::Text(t) => (
                    d.repository.as_deref(),
                    d.role.as_deref(),
                    String::from_utf8_lossy(t).into_owned(),
                ),
                Document::Value(_) => panic!("a plain batch took the serde path"),
            })
            .collect();
        assert_eq!(
            docs,
            [
                (
                    Some("acme"),
                    Some("bin-0"),
                    r#"{"signed":{"_type":"targets"},"signatures":[]}"#.to_string()
                ),
                (
                    None,
                    None,
                    r#"{"signed":{"_type":"timestamp"}}"#.to_string()
                ),
            ]
        );
    }

    #[test]
    fn unusual_batches_take_the_serde_path_and_get_its_answer() {
        // A float inside one document's metadata: serde reads the whole body.
        let r =
            batch(br#"{"key_id":"k","documents":[{"metadata":{"v":1}},{"metadata":{"v":1.5}}]}"#)
                .unwrap();
        assert!(r
            .documents
            .iter()
            .all(|d| matches!(d.metadata, Document::Value(_))));
        // Metadata that is not an object is left to the document checks.
        let r = batch(br#"{"key_id":"k","documents":[{"metadata":"text"}]}"#).unwrap();
        assert!(matches!(
            r.documents[0].metadata,
            Document::Value(Value::String(_))
        ));
        // Members where they do not belong, repeated, missing or mistyped: serde's words.
        for (body, words) in [
            (
                &br#"{"key_id":"k","role":"x","documents":[]}"#[..],
                "unknown field `role`",
            ),
            (
                br#"{"key_id":"k","metadata":{},"documents":[]}"#,
                "unknown field `metadata`",
            ),
            (
                br#"{"key_id":"k","documents":[{"key_id":"k","metadata":{}}]}"#,
                "unknown field `key_id`",
            ),
            (
                br#"{"key_id":"k","documents":[{"metadata":{},"metadata":{}}]}"#,
                "duplicate field",
            ),
            (
                br#"{"key_id":"k","documents":[],"documents":[]}"#,
                "duplicate field",
            ),
            (
                br#"{"key_id":"k","documents":[{"role":"r"}]}"#,
                "missing field `metadata`",
            ),
            (br#"{"documents":[]}"#, "missing field `key_id`"),
            (br#"{"key_id":"k","documents":{}}"#, "invalid type"),
            (br#"{"key_id":"k","documents":[7]}"#, "invalid type"),
        ] {
            let r = batch(body).err().expect("a malformed batch was accepted");
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
