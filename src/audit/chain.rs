//! The hash chain itself, the same for every sink and for the ceremony transcript:
//! the genesis `prev`, the line hash, the canonical line an event becomes, and the
//! check that each line continues the one before it.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::AuditError;
use super::event::Event;
use crate::tuf::cjson::to_canonical;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A verified log: its entries and the hash of its last line.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entries: Vec<Map<String, Value>>,
    /// SHA-256 of the last line ([`GENESIS`] for an empty log): note it down to pin
    /// the whole history, trailing entries included.
    pub head: String,
}

/// SHA-256 of one line's bytes (without the newline): the next entry's `prev`.
pub fn line_hash(line: &[u8]) -> String {
    crate::tuf::hex::lower(&Sha256::digest(line))
}

/// Checks a log given as its JSON-lines bytes; `path` only names it in errors (the
/// PostgreSQL store passes its redacted URL, so both stores share one verifier).
pub fn verify_bytes(path: &Path, text: &[u8]) -> Result<Verified, AuditError> {
    let mut chain = Chain::new();
    let mut entries = Vec::new();
    if !text.is_empty() && !text.ends_with(b"\n") {
        let n = text.split(|b| *b == b'\n').count();
        return Err(AuditError::Broken {
            path: path.into(),
            line: n,
            reason: "the last line is incomplete (a write was cut off, or the file was truncated)"
                .into(),
        });
    }
    if !text.is_empty() {
        for line in text[..text.len() - 1].split(|b| *b == b'\n') {
            entries.push(chain.push(path, line)?);
        }
    }
    Ok(Verified {
        entries,
        head: chain.head,
    })
}

/// The position of a chain: the last `seq` and the hash of its line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chain {
    pub(crate) seq: u64,
    pub(crate) head: String,
}

impl Chain {
    pub(crate) fn new() -> Chain {
        Chain {
            seq: 0,
            head: GENESIS.into(),
        }
    }

    /// Checks that `line` is the next entry (canonical, `seq` + 1, `prev` = head) and
    /// moves onto it. In a file log an entry's `seq` is its line number.
    pub(crate) fn push(
        &mut self,
        path: &Path,
        line: &[u8],
    ) -> Result<Map<String, Value>, AuditError> {
        let n = self.seq + 1;
        let bad = |reason: String| AuditError::Broken {
            path: path.into(),
            line: usize::try_from(n).unwrap_or(usize::MAX),
            reason,
        };
        let (obj, seq) = parse_line(line).map_err(bad)?;
        if seq != n {
            return Err(bad(format!(
                "sequence number {seq} where {n} was expected: an entry was removed or moved"
            )));
        }
        if obj.get("prev").and_then(Value::as_str) != Some(self.head.as_str()) {
            return Err(bad(
                "the hash of the previous entry does not match: an earlier entry was changed, removed or moved"
                    .into(),
            ));
        }
        self.seq = n;
        self.head = line_hash(line);
        Ok(obj)
    }
}

/// One line as an entry: a JSON object in exactly its canonical form, with a `seq`.
pub(crate) fn parse_line(line: &[u8]) -> Result<(Map<String, Value>, u64), String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON audit entry: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let canonical = to_canonical(&Value::Object(obj.clone()))
        .map_err(|e| format!("not canonical JSON: {e}"))?;
    if canonical != line {
        return Err("the line was edited (it is not in the canonical form tufkey writes)".into());
    }
    let seq = obj
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("no sequence number")?;
    Ok((obj, seq))
}

/// Encodes `event` as the line with sequence number `seq` after `prev`. Shared with
/// the PostgreSQL sink so that both write byte-identical lines.
pub(crate) fn encode(event: &Event, seq: u64, prev: &str) -> Vec<u8> {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    super::line::write(event, seq, prev, &time)
}

/// Rewrites control characters (U+0000 to U+001F) in strings and keys as the text
/// `\u00XX`. Canonical JSON writes them raw: a newline in a client's name or an error
/// message would split the entry over two lines, and the log would no longer verify.
pub(crate) fn escape_controls(value: &mut Value) {
    fn has_controls(s: &str) -> bool {
        s.bytes().any(|b| b < b' ')
    }
    let escaped = super::line::controls_escaped;
    match value {
        Value::String(s) if has_controls(s) => *s = escaped(s),
        Value::Array(items) => items.iter_mut().for_each(escape_controls),
        // Keys are rebuilt only when one needs it: every entry passes through here.
        Value::Object(obj) if obj.keys().any(|k| has_controls(k)) => {
            let entries = std::mem::take(obj);
            for (key, mut v) in entries {
                escape_controls(&mut v);
                obj.insert(escaped(&key), v);
            }
        }
        Value::Object(obj) => obj.values_mut().for_each(escape_controls),
        _ => {}
    }
}

/// The line as it was written before `line` wrote it member by member: the event as a
/// `serde_json::Value`, control characters escaped, canonicalized. The oracle that the
/// tests and the `audit_transcript` fuzz target hold [`super::line::write`] to; `None`
/// if the tree path fails.
pub(crate) fn through_a_tree(event: &Event, seq: u64, prev: &str, time: &str) -> Option<Vec<u8>> {
    let Value::Object(mut obj) = serde_json::to_value(event).ok()? else {
        return None;
    };
    obj.insert("seq".into(), Value::from(seq));
    obj.insert("prev".into(), Value::String(prev.into()));
    obj.insert("time".into(), Value::String(time.into()));
    let mut value = Value::Object(obj);
    escape_controls(&mut value);
    to_canonical(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_a_newline_in_a_field_stays_one_verifiable_line() {
        // Followed from the cjson_metadata fuzz target's first finding: canonical JSON keeps control
        // characters raw, so a newline in `who` or `reason` split the entry in two.
        let event = Event {
            who: "ci\nmain".into(),
            action: "sign".into(),
            result: "refused".into(),
            reason: Some("bad\tinput\u{1}".into()),
            ..Default::default()
        };
        let mut log = encode(&event, 1, GENESIS);
        assert!(!log.iter().any(|b| *b < b' '), "a control byte in the line");
        log.push(b'\n');
        let verified = verify_bytes(Path::new("audit.jsonl"), &log).unwrap();
        assert_eq!(verified.entries[0]["who"], "ci\\u000amain");
        assert_eq!(verified.entries[0]["reason"], "bad\\u0009input\\u0001");
    }

    // The line `audit::line` writes member by member, against the tree path.
    use std::collections::BTreeMap;

    fn same_as_the_tree(event: &Event) {
        let (seq, prev, time) = (u64::MAX, "ab\"\\\n", "2026-12-04T13:00:00.123Z");
        let line = super::super::line::write(event, seq, prev, time);
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&through_a_tree(event, seq, prev, time).unwrap()),
            "for {event:?}"
        );
    }

    #[test]
    fn an_event_with_every_field_set_is_written_as_the_tree_path_writes_it() {
        let awkward = "a\"b\\c\nd\u{0}e\u{1f}f\u{7f}g é 🔑 \\u000a";
        let mut claims = BTreeMap::new();
        claims.insert("repository".into(), "acme/\"app\"".into());
        claims.insert("ref\nname".into(), "refs/heads/main".into());
        claims.insert("Z".into(), "upper before lower".into());
        claims.insert("é".into(), awkward.into());
        let every = Event {
            who: awkward.into(),
            action: "sign-batch".into(),
            result: "signed".into(),
            reason: Some(awkward.into()),
            status: Some(u16::MAX),
            peer: Some("127.0.0.1:4242".into()),
            repository: Some("acme".into()),
            role: Some("bin-3f".into()),
            version: Some(u64::MAX),
            key_id: Some("ab".repeat(32)),
            payload_sha256: Some("cd".repeat(32)),
            issuer: Some("https://token.actions.githubusercontent.com".into()),
            subject: Some("repo:acme/app:ref:refs/heads/main".into()),
            claims: Some(claims),
            source: Some("cli".into()),
            user: Some("release\teng".into()),
            uid: Some(u32::MAX),
            host: Some("build-01".into()),
            file: Some("/srv/repo/metadata/1.root.json".into()),
            key_uri: Some("pkcs11:token=a;object=b".into()),
            detail: Some(String::new()),
        };
        same_as_the_tree(&every);
    }

    #[test]
    fn sparse_events_and_empty_strings_are_written_as_the_tree_path_writes_them() {
        same_as_the_tree(&Event::default());
        same_as_the_tree(&Event {
            who: "bench-client".into(),
            action: "sign".into(),
            result: "refused".into(),
            status: Some(0),
            version: Some(0),
            claims: Some(BTreeMap::new()),
            ..Default::default()
        });
    }

    #[test]
    fn every_byte_below_the_space_and_both_escaped_characters_match_the_tree_path() {
        let all: String = (0u8..0x80).map(char::from).collect();
        same_as_the_tree(&Event {
            who: all.clone(),
            action: all.clone(),
            result: all,
            ..Default::default()
        });
    }

    #[test]
    fn claim_names_that_escape_alike_keep_the_later_value_as_the_tree_does() {
        let mut claims = BTreeMap::new();
        claims.insert("a\u{1}".into(), "control".into());
        claims.insert("a\\u0001".into(), "text".into());
        claims.insert("a\u{1}b".into(), "sorted after escaping".into());
        claims.insert("a\\".into(), "backslash".into());
        // `"` sorts before `#` as a character, after it once escaped as `\"`.
        claims.insert("q\"".into(), "quote".into());
        claims.insert("q#".into(), "hash".into());
        same_as_the_tree(&Event {
            claims: Some(claims),
            ..Default::default()
        });
    }
}
