//! The signed-envelope of every TUF document: `{"signed": {...}, "signatures": [...]}`.
//!
//! `signed` is kept as the JSON it was read as, so that every field — including
//! ones tufkey does not know, such as `x-` extensions — survives a load/save round
//! trip and stays covered by the signatures.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::cjson::{to_canonical, CanonicalError};
use super::error::TufError;

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub keyid: String,
    /// Lower-case hex, as TUF writes it; may be empty where a keyholder has not signed yet.
    pub sig: String,
    pub extra: Map<String, Value>,
}

impl Signature {
    /// A signature from raw bytes.
    pub fn new(keyid: impl Into<String>, sig: &[u8]) -> Signature {
        Signature {
            keyid: keyid.into(),
            sig: crate::tuf::hex::lower(sig),
            extra: Map::new(),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert("keyid".into(), Value::String(self.keyid.clone()));
        obj.insert("sig".into(), Value::String(self.sig.clone()));
        Value::Object(obj)
    }
}

/// A TUF metadata document.
#[derive(Debug, Clone)]
pub struct Metadata {
    signed: Value,
    signatures: Vec<Signature>,
    extra: Map<String, Value>,
}

impl Metadata {
    /// Parses a metadata file's bytes, refusing what python-tuf refuses in the envelope:
    /// a non-object `signed`, malformed signatures, two signatures by one key id.
    pub fn from_slice(bytes: &[u8]) -> Result<Metadata, TufError> {
        let value: Value = serde_json::from_slice(bytes)?;
        Metadata::from_value(value)
    }

    /// As [`Metadata::from_slice`], from parsed JSON.
    pub fn from_value(value: Value) -> Result<Metadata, TufError> {
        let schema = |path: &str, reason: &str| TufError::Schema {
            path: path.into(),
            reason: reason.into(),
        };
        let Value::Object(mut top) = value else {
            return Err(schema(
                "$",
                "a metadata file must be a JSON object with `signed` and `signatures`",
            ));
        };
        let signed = top
            .remove("signed")
            .ok_or_else(|| schema("$", "`signed` is missing"))?;
        let Value::Object(ref signed_obj) = signed else {
            return Err(schema("$.signed", "`signed` must be a JSON object"));
        };
        match signed_obj.get("_type") {
            Some(Value::String(_)) => {}
            _ => {
                return Err(schema(
                    "$.signed._type",
                    "`_type` must be a string such as \"root\" or \"targets\"",
                ))
            }
        }
        to_canonical(&signed)?;
        let raw_sigs = top
            .remove("signatures")
            .ok_or_else(|| schema("$", "`signatures` is missing"))?;
        let Value::Array(raw_sigs) = raw_sigs else {
            return Err(schema("$.signatures", "`signatures` must be an array"));
        };
        let signatures = parse_signatures(raw_sigs)?;
        Ok(Metadata {
            signed,
            signatures,
            extra: top,
        })
    }

    /// The `signed` object.
    pub fn signed(&self) -> &Value {
        &self.signed
    }

    /// The `signed` object, taken out of the envelope: for a caller done with the
    /// signatures that keeps a large part (a 100,000-target map) without copying it.
    pub fn into_signed(self) -> Value {
        self.signed
    }

    /// A new unsigned document.
    pub fn new(signed: Value) -> Result<Metadata, TufError> {
        Metadata::from_value(serde_json::json!({"signed": signed, "signatures": []}))
    }

    /// Changes `signed` and drops every signature, since they covered the old payload.
    /// The edit must keep the document canonicalisable; it is checked.
    pub fn edit<T>(
        &mut self,
        f: impl FnOnce(&mut Value) -> Result<T, TufError>,
    ) -> Result<T, TufError> {
        let mut signed = self.signed.clone();
        let out = f(&mut signed)?;
        to_canonical(&signed)?;
        self.signed = signed;
        self.signatures.clear();
        Ok(out)
    }

    /// Records `entry` as `signed.targets[path]` and drops every signature. Unlike
    /// [`Metadata::edit`] it neither clones nor re-checks the whole document (the rest
    /// was checked when it was read), only the entry: a command adding 100,000 targets
    /// one by one stays linear instead of quadratic.
    pub fn insert_target(&mut self, path: &str, entry: Value) -> Result<(), TufError> {
        to_canonical(&entry).map_err(|CanonicalError::Float { path: at, value }| {
            CanonicalError::Float {
                path: format!("$.targets.{path}{}", &at[1..]),
                value,
            }
        })?;
        let targets = self
            .signed
            .as_object_mut()
            .and_then(|o| {
                o.entry("targets")
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
            })
            .ok_or_else(|| TufError::Schema {
                path: "$.signed.targets".into(),
                reason: "must be an object".into(),
            })?;
        targets.insert(path.to_owned(), entry);
        self.signatures.clear();
        Ok(())
    }

    /// Sets `version` and `expires` and drops every signature. An integer and a string
    /// keep a document canonical, so unlike [`Metadata::edit`] nothing is cloned or
    /// re-checked: a commit re-versions a 100,000-target role without copying it.
    pub fn set_version_and_expires(&mut self, version: u64, expires: &str) -> Result<(), TufError> {
        super::time::parse_expires(expires)?;
        let signed = self
            .signed
            .as_object_mut()
            .ok_or_else(|| TufError::Schema {
                path: "$.signed".into(),
                reason: "must be an object".into(),
            })?;
        signed.insert("expires".into(), Value::String(expires.into()));
        signed.insert("version".into(), Value::from(version));
        self.signatures.clear();
        Ok(())
    }

    /// `signed._type`.
    pub fn role_type(&self) -> &str {
        self.signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `signed.version`, when it is a positive integer.
    pub fn version(&self) -> Option<u64> {
        self.signed.get("version").and_then(Value::as_u64)
    }

    /// `signed.expires` as written.
    pub fn expires(&self) -> Option<&str> {
        self.signed.get("expires").and_then(Value::as_str)
    }

    /// The signatures in file order.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes every signature covers: canonical JSON of `signed`.
    pub fn payload(&self) -> Vec<u8> {
        // Checked to be canonicalisable when loaded.
        to_canonical(&self.signed).unwrap_or_default()
    }

    /// SHA-256 of the payload, hex: what keyholders compare aloud.
    pub fn payload_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.payload()))
    }

    /// Adds a signature, replacing any earlier one by the same key id in place.
    pub fn set_signature(&mut self, sig: Signature) {
        match self.signatures.iter_mut().find(|s| s.keyid == sig.keyid) {
            Some(existing) => *existing = sig,
            None => self.signatures.push(sig),
        }
    }

    /// The whole document as JSON.
    pub fn to_value(&self) -> Value {
        let mut top = self.extra.clone();
        top.insert("signed".into(), self.signed.clone());
        top.insert(
            "signatures".into(),
            Value::Array(self.signatures.iter().map(Signature::to_value).collect()),
        );
        Value::Object(top)
    }

    /// The file form: sorted keys, one-space indent and a final newline, as python-tuf writes.
    pub fn to_pretty_bytes(&self) -> Vec<u8> {
        use serde::Serialize;
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // The envelope borrowed, not cloned as `to_value` would (a 100,000-target
        // `signed` is hundreds of MB as a tree); a BTreeMap keeps the keys sorted.
        let signatures = Value::Array(self.signatures.iter().map(Signature::to_value).collect());
        let mut top: std::collections::BTreeMap<&str, &Value> =
            self.extra.iter().map(|(k, v)| (k.as_str(), v)).collect();
        top.insert("signed", &self.signed);
        top.insert("signatures", &signatures);
        // Serialising JSON values into a Vec cannot fail.
        let _ = top.serialize(&mut ser);
        out.push(b'\n');
        out
    }
}

/// The `signatures` array's entries, refusing what python-tuf refuses: a non-object
/// entry, a non-string `keyid` or `sig`, two signatures by one key id.
pub(crate) fn parse_signatures(raw_sigs: Vec<Value>) -> Result<Vec<Signature>, TufError> {
    let schema = |path: &str, reason: &str| TufError::Schema {
        path: path.into(),
        reason: reason.into(),
    };
    let mut signatures: Vec<Signature> = Vec::with_capacity(raw_sigs.len());
    for (i, s) in raw_sigs.into_iter().enumerate() {
        let path = format!("$.signatures[{i}]");
        let Value::Object(mut obj) = s else {
            return Err(schema(
                &path,
                "a signature must be an object with `keyid` and `sig`",
            ));
        };
        let keyid = match obj.remove("keyid") {
            Some(Value::String(k)) => k,
            _ => return Err(schema(&path, "`keyid` must be a string")),
        };
        let sig = match obj.remove("sig") {
            Some(Value::String(k)) => k,
            _ => return Err(schema(&path, "`sig` must be a string")),
        };
        if signatures.iter().any(|s| s.keyid == keyid) {
            return Err(TufError::DuplicateSignature(keyid));
        }
        signatures.push(Signature {
            keyid,
            sig,
            extra: obj,
        });
    }
    Ok(signatures)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"signed":{"_type":"targets","x-custom":{"a":[1,2]},"version":3},
        "signatures":[{"keyid":"aa","sig":"01","x-note":"keep"}],"x-top":true}"#;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let md = Metadata::from_slice(DOC.as_bytes()).unwrap();
        let again = Metadata::from_slice(&md.to_pretty_bytes()).unwrap();
        assert_eq!(
            again.to_value(),
            serde_json::from_str::<Value>(DOC).unwrap()
        );
        assert_eq!(
            again.payload(),
            br#"{"_type":"targets","version":3,"x-custom":{"a":[1,2]}}"#
        );
    }

    #[test]
    fn a_new_signature_by_the_same_key_replaces_the_old_one() {
        let mut md = Metadata::from_slice(DOC.as_bytes()).unwrap();
        md.set_signature(Signature::new("aa", &[2]));
        md.set_signature(Signature::new("bb", &[3]));
        let sigs: Vec<_> = md
            .signatures()
            .iter()
            .map(|s| (s.keyid.as_str(), s.sig.as_str()))
            .collect();
        assert_eq!(sigs, [("aa", "02"), ("bb", "03")]);
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_path() {
        let cases = [
            ("[]", "$"),
            (r#"{"signed": [], "signatures": []}"#, "$.signed"),
            (
                r#"{"signed": {"_type": "root"}, "signatures": {}}"#,
                "$.signatures",
            ),
            (
                r#"{"signed": {"_type": "root"}, "signatures": [{"keyid": 1, "sig": ""}]}"#,
                "$.signatures[0]",
            ),
            (
                r#"{"signed": {"version": 1}, "signatures": []}"#,
                "$.signed._type",
            ),
            (
                r#"{"signed": {"_type": "root", "x": 1.5}, "signatures": []}"#,
                "$.x",
            ),
        ];
        for (doc, path) in cases {
            let err = Metadata::from_slice(doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(path), "{doc}: {err}");
        }
        let dup = r#"{"signed": {"_type": "root"}, "signatures": [{"keyid": "a", "sig": ""}, {"keyid": "a", "sig": ""}]}"#;
        assert!(
            matches!(Metadata::from_slice(dup.as_bytes()), Err(TufError::DuplicateSignature(k)) if k == "a")
        );
    }
}
