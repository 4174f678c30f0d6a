//! A metadata file as `tufkey sign` and `tufkey verify` need it: its envelope
//! (type, version, expiry, signatures) and its canonical payload, read from a
//! [`Tape`] over the file's bytes instead of a `serde_json::Value` tree. A 100,000-target
//! file then costs its bytes, its tape and its payload in memory, and one pass each.
//!
//! It answers exactly as [`Metadata`] does: when the tape declines a file (floats,
//! repeated member names, anything unusual) or finds its envelope wrong, the file is
//! read as a `Metadata`, which accepts it or gives today's error.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::TufError;
use super::metadata::{parse_signatures, Metadata, Signature};
use super::tape::{Declined, Kind, Tape};
use super::tape_write::{
    canonical, canonical_replacing, indent, pretty_replacing, pretty_value, Replace,
};
use super::verify::Delegator;

/// A metadata document held for signing or verifying.
pub struct Envelope {
    repr: Repr,
    payload: Vec<u8>,
    payload_sha256: String,
}

enum Repr {
    Tape(Box<TapeDoc>),
    Value(Box<Metadata>),
}

struct TapeDoc {
    tape: Tape,
    /// Node of `signed`.
    signed: usize,
    role_type: String,
    signatures: Vec<Signature>,
    /// Top-level members besides `signed` and `signatures`, kept as they were.
    extra: Map<String, Value>,
    /// `version` and `expires` set since the file was read (written in place of the
    /// tape's), sorted by name.
    replaced: Vec<(&'static str, Value)>,
}

impl Envelope {
    /// Reads a metadata file's bytes, accepting and refusing exactly what
    /// [`Metadata::from_slice`] does.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Envelope, TufError> {
        let bytes = match Tape::parse(bytes) {
            Ok(tape) => match TapeDoc::read(tape) {
                Ok((doc, payload)) => return Ok(Envelope::new(Repr::Tape(Box::new(doc)), payload)),
                Err(tape) => tape.bytes,
            },
            Err((Declined, bytes)) => bytes,
        };
        let md = Metadata::from_slice(&bytes)?;
        drop(bytes);
        let payload = md.payload();
        Ok(Envelope::new(Repr::Value(Box::new(md)), payload))
    }

    /// A document already parsed as [`Metadata`] (the daemon's batch documents), so
    /// that callers hold one type whichever way a document was read.
    pub fn from_metadata(md: Metadata) -> Envelope {
        let payload = md.payload();
        Envelope::new(Repr::Value(Box::new(md)), payload)
    }

    fn new(repr: Repr, payload: Vec<u8>) -> Envelope {
        let payload_sha256 = crate::tuf::hex::lower(&Sha256::digest(&payload));
        Envelope {
            repr,
            payload,
            payload_sha256,
        }
    }

    /// Whether the file was read from its tape (false: through a `serde_json::Value`).
    pub fn is_fast(&self) -> bool {
        matches!(self.repr, Repr::Tape(_))
    }

    /// The bytes every signature covers: canonical JSON of `signed`.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// SHA-256 of the payload, hex (computed once: audit entries and output quote it).
    pub fn payload_sha256(&self) -> &str {
        &self.payload_sha256
    }

    /// `signed._type`.
    pub fn role_type(&self) -> &str {
        match &self.repr {
            Repr::Tape(d) => &d.role_type,
            Repr::Value(md) => md.role_type(),
        }
    }

    /// `signed.version`, when it is a positive integer.
    pub fn version(&self) -> Option<u64> {
        match &self.repr {
            Repr::Tape(d) => {
                if let Some(v) = d.replaced_member("version") {
                    return v.as_u64();
                }
                let v = d.tape.get(d.signed, "version")?;
                (d.tape.nodes[v].kind == Kind::Int)
                    .then(|| std::str::from_utf8(d.tape.span(v)).ok()?.parse().ok())
                    .flatten()
            }
            Repr::Value(md) => md.version(),
        }
    }

    /// `signed.expires` as written.
    pub fn expires(&self) -> Option<String> {
        match &self.repr {
            Repr::Tape(d) => match d.replaced_member("expires") {
                Some(v) => v.as_str().map(str::to_string),
                None => d.tape.string(d.tape.get(d.signed, "expires")?).ok(),
            },
            Repr::Value(md) => md.expires().map(str::to_string),
        }
    }

    /// One member of `signed`, as JSON (for the small parts: `keys`, `delegations`).
    pub fn signed_member(&self, name: &str) -> Option<Value> {
        match &self.repr {
            Repr::Tape(d) => {
                if let Some(v) = d.replaced_member(name) {
                    return Some(v.clone());
                }
                let v = d.tape.get(d.signed, name)?;
                serde_json::from_slice(d.tape.json_text(v)).ok()
            }
            Repr::Value(md) => md.signed().get(name).cloned(),
        }
    }

    /// The keys and roles this document delegates to, read from the members that hold
    /// them only (a large targets file's `targets` is not parsed).
    pub fn delegator(&self) -> Result<Delegator, TufError> {
        match &self.repr {
            Repr::Value(md) => Delegator::from_metadata(md),
            Repr::Tape(d) => {
                let mut signed = Map::new();
                signed.insert("_type".into(), Value::String(d.role_type.clone()));
                for name in ["keys", "roles", "delegations"] {
                    if let Some(v) = self.signed_member(name) {
                        signed.insert(name.into(), v);
                    }
                }
                Delegator::from_signed(&Value::Object(signed))
            }
        }
    }

    /// Sets `version` and `expires` and drops every signature, as
    /// [`Metadata::set_version_and_expires`] does; the payload is written again from the
    /// tape with the new members in place, nothing else is copied.
    pub fn set_version_and_expires(&mut self, version: u64, expires: &str) -> Result<(), TufError> {
        match &mut self.repr {
            Repr::Value(md) => {
                md.set_version_and_expires(version, expires)?;
                self.payload = md.payload();
            }
            Repr::Tape(d) => {
                super::time::parse_expires(expires)?;
                d.replaced = vec![
                    ("expires", Value::String(expires.into())),
                    ("version", Value::from(version)),
                ];
                d.signatures.clear();
                // The old payload goes first: one payload held at a time.
                let old = std::mem::take(&mut self.payload).len();
                let mut payload = Vec::with_capacity(old + 64);
                // The tape was canonicalised when read, so it writes again without declining.
                let _ = canonical_replacing(&d.tape, d.signed, &d.replace(), &mut payload);
                self.payload = payload;
            }
        }
        self.payload_sha256 = crate::tuf::hex::lower(&Sha256::digest(&self.payload));
        Ok(())
    }

    /// Calls `f` with each entry of `signed.targets` (in name order) until it fails; no
    /// entry when `targets` is missing or not an object. The entries stay where they are:
    /// a 100,000-target role is walked, not copied.
    pub fn each_target<E>(
        &self,
        mut f: impl FnMut(&str, TargetEntry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.repr {
            Repr::Value(md) => {
                let targets = md.signed().get("targets").and_then(Value::as_object);
                for (path, entry) in targets.into_iter().flatten() {
                    f(path, TargetEntry::Value(entry))?;
                }
            }
            Repr::Tape(d) => {
                let Some(targets) = d.tape.get(d.signed, "targets") else {
                    return Ok(());
                };
                if d.tape.nodes[targets].kind != Kind::Object {
                    return Ok(());
                }
                // The tape was canonicalised when read: its names sort and decode.
                let Ok(members) = d.tape.sorted_members(targets) else {
                    return Ok(());
                };
                for (k, v) in members {
                    if let Ok(path) = d.tape.name(k) {
                        f(&path, TargetEntry::Tape(&d.tape, v))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The signatures in file order.
    pub fn signatures(&self) -> &[Signature] {
        match &self.repr {
            Repr::Tape(d) => &d.signatures,
            Repr::Value(md) => md.signatures(),
        }
    }

    /// Adds a signature, replacing any earlier one by the same key id in place.
    pub fn set_signature(&mut self, sig: Signature) {
        match &mut self.repr {
            Repr::Tape(d) => match d.signatures.iter_mut().find(|s| s.keyid == sig.keyid) {
                Some(existing) => *existing = sig,
                None => d.signatures.push(sig),
            },
            Repr::Value(md) => md.set_signature(sig),
        }
    }

    /// The file form, byte for byte what [`Metadata::to_pretty_bytes`] writes.
    pub fn to_pretty_bytes(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Tape(d) => d.pretty(),
            Repr::Value(md) => md.to_pretty_bytes(),
        }
    }

    /// As [`Envelope::to_pretty_bytes`], letting go of the payload first: for a large
    /// file that is one copy less held at the peak.
    pub fn into_pretty_bytes(mut self) -> Vec<u8> {
        self.payload = Vec::new();
        self.to_pretty_bytes()
    }
}

/// One entry of `signed.targets`, read where it lies.
pub enum TargetEntry<'a> {
    Value(&'a Value),
    Tape(&'a Tape, usize),
}

impl TargetEntry<'_> {
    /// `hashes.sha256`, when it is a string.
    pub fn sha256(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            TargetEntry::Value(v) => v
                .get("hashes")?
                .get("sha256")?
                .as_str()
                .map(std::borrow::Cow::Borrowed),
            TargetEntry::Tape(tape, i) => {
                let hashes = tape.get(*i, "hashes")?;
                let sha = tape.get(hashes, "sha256")?;
                tape.name(sha).ok()
            }
        }
    }

    /// The whole entry as JSON.
    pub fn to_value(&self) -> Option<Value> {
        match self {
            TargetEntry::Value(v) => Some((*v).clone()),
            TargetEntry::Tape(tape, i) => serde_json::from_slice(tape.json_text(*i)).ok(),
        }
    }
}

/// What the envelope says, before it is put together with its tape.
struct Parts {
    signed: usize,
    role_type: String,
    signatures: Vec<Signature>,
    extra: Map<String, Value>,
}

impl TapeDoc {
    /// The envelope from the tape, with the payload; the tape back when anything is
    /// unusual, so that `Metadata` decides (and words any error).
    fn read(tape: Tape) -> Result<(TapeDoc, Vec<u8>), Tape> {
        match TapeDoc::parts(&tape) {
            Ok((parts, payload)) => Ok((
                TapeDoc {
                    tape,
                    signed: parts.signed,
                    role_type: parts.role_type,
                    signatures: parts.signatures,
                    extra: parts.extra,
                    replaced: Vec::new(),
                },
                payload,
            )),
            Err(Declined) => Err(tape),
        }
    }

    fn parts(tape: &Tape) -> Result<(Parts, Vec<u8>), Declined> {
        if tape.nodes[0].kind != Kind::Object {
            return Err(Declined);
        }
        let mut signed = None;
        let mut sigs = None;
        let mut extra = Map::new();
        for (k, v) in tape.sorted_members(0)? {
            match &*tape.name(k)? {
                "signed" => signed = Some(v),
                "signatures" => sigs = Some(v),
                name => {
                    let value = serde_json::from_slice(tape.json_text(v)).map_err(|_| Declined)?;
                    extra.insert(name.to_string(), value);
                }
            }
        }
        let (signed, sigs) = (signed.ok_or(Declined)?, sigs.ok_or(Declined)?);
        if tape.nodes[signed].kind != Kind::Object {
            return Err(Declined);
        }
        let role_type = tape.string(tape.get(signed, "_type").ok_or(Declined)?)?;
        let raw_sigs: Value = serde_json::from_slice(tape.json_text(sigs)).map_err(|_| Declined)?;
        let Value::Array(raw_sigs) = raw_sigs else {
            return Err(Declined);
        };
        let signatures = parse_signatures(raw_sigs).map_err(|_| Declined)?;
        let mut payload = Vec::with_capacity(tape.bytes.len());
        canonical(tape, signed, &mut payload)?;
        payload.shrink_to_fit();
        let parts = Parts {
            signed,
            role_type,
            signatures,
            extra,
        };
        Ok((parts, payload))
    }

    /// A member of `signed` set since the file was read.
    fn replaced_member(&self, name: &str) -> Option<&Value> {
        self.replaced
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The members set since the file was read, as the tape writers take them.
    fn replace(&self) -> Vec<Replace<'_>> {
        self.replaced
            .iter()
            .map(|(name, value)| Replace { name, value })
            .collect()
    }

    /// `{signatures, signed, …}` with sorted names and one-space indent, as serde_json
    /// pretty-prints `Metadata::to_value()`, plus the final newline.
    fn pretty(&self) -> Vec<u8> {
        let sigs = Value::Array(self.signatures.iter().map(Signature::to_value).collect());
        let mut names: Vec<&str> = self.extra.keys().map(String::as_str).collect();
        names.extend(["signatures", "signed"]);
        names.sort_unstable();
        let mut out = Vec::with_capacity(self.tape.bytes.len() + 4096);
        out.push(b'{');
        for (pos, name) in names.into_iter().enumerate() {
            out.extend_from_slice(if pos > 0 { b",\n" } else { b"\n" });
            indent(&mut out, 1);
            // Writing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, name);
            out.extend_from_slice(b": ");
            match name {
                "signed" => {
                    // The tape was canonicalised when read, so it writes again without declining.
                    let _ = pretty_replacing(&self.tape, self.signed, 1, &self.replace(), &mut out);
                }
                "signatures" => pretty_value(&sigs, 1, &mut out),
                other => pretty_value(&self.extra[other], 1, &mut out),
            }
        }
        out.extend_from_slice(b"\n}\n");
        out
    }
}
