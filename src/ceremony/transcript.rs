//! The append-only ceremony transcript: one canonical-JSON entry per line, each
//! carrying the SHA-256 of the line before it and the payload hash after the action.
//! Editing, removing or reordering any line breaks the chain. The chain is the audit
//! log's ([`crate::audit::chain`]: genesis, line hash, sequence and `prev` checks);
//! only the entry's fields are the transcript's own.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::CeremonyError;
use crate::audit::chain::{escape_controls, line_hash, Chain, GENESIS};
use crate::audit::AuditError;
use crate::tuf::cjson::to_canonical;

/// One transcript entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    /// UTC, RFC 3339.
    pub time: String,
    /// Who did it, as far as the machine can tell (`--actor`, TUFKEY_ACTOR, user@host).
    pub actor: String,
    pub action: String,
    pub details: Value,
    /// SHA-256 of the proposed root's canonical payload after this action.
    pub payload_sha256: String,
    /// SHA-256 of the previous line (its bytes, without the newline).
    pub prev: String,
}

/// The transcript as read from disk.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    /// SHA-256 of the last line: the value to note down to pin the whole history.
    pub head: String,
}

impl Default for Transcript {
    /// An empty transcript, whose first entry will point at [`GENESIS`].
    fn default() -> Transcript {
        Transcript {
            entries: Vec::new(),
            head: GENESIS.into(),
        }
    }
}

impl Transcript {
    /// Reads and checks the chain. Any edit, removal or reordering is an error naming the line.
    pub fn read(path: &Path) -> Result<Transcript, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|e| CeremonyError::Io(path.into(), e))?;
        Transcript::parse(path, &text)
    }

    /// Checks the chain of a transcript's text read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Transcript, CeremonyError> {
        let bad = |line: usize, reason: String| CeremonyError::Transcript { line, reason };
        let mut t = Transcript::default();
        let mut chain = Chain::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let entry: Entry = serde_json::from_str(line)
                .map_err(|e| bad(n, format!("not a transcript entry: {e}")))?;
            let canonical =
                to_canonical(&serde_json::to_value(&entry).map_err(|e| bad(n, e.to_string()))?)
                    .map_err(|e| bad(n, e.to_string()))?;
            if canonical != line.as_bytes() {
                return Err(bad(
                    n,
                    "the line was edited (it is not in the canonical form tufkey writes)".into(),
                ));
            }
            // Sequence number and `prev`, checked as the audit log checks its lines.
            chain.push(path, line.as_bytes()).map_err(|e| match e {
                AuditError::Broken { reason, .. } => bad(n, reason),
                other => bad(n, other.to_string()),
            })?;
            t.head = chain.head.clone();
            t.entries.push(entry);
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(bad(t.entries.len(), "the last line is incomplete".into()));
        }
        Ok(t)
    }

    /// Appends an entry and fsyncs it before returning.
    pub fn append(
        &mut self,
        path: &Path,
        actor: &str,
        action: &str,
        details: Value,
        payload_sha256: &str,
    ) -> Result<(), CeremonyError> {
        let entry = Entry {
            seq: self.entries.len() as u64 + 1,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            actor: actor.into(),
            action: action.into(),
            details,
            payload_sha256: payload_sha256.into(),
            prev: self.head.clone(),
        };
        let mut value =
            serde_json::to_value(&entry).map_err(|e| CeremonyError::Invalid(e.to_string()))?;
        // One entry, one line: control characters (a newline in `--actor`) become text.
        escape_controls(&mut value);
        let entry: Entry = serde_json::from_value(value.clone())
            .map_err(|e| CeremonyError::Invalid(e.to_string()))?;
        let mut line = to_canonical(&value).map_err(|e| CeremonyError::Invalid(e.to_string()))?;
        let hash = line_hash(&line);
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CeremonyError::Io(path.into(), e))?;
        crate::testhook::at("transcript-append");
        if crate::testhook::reached("transcript-half-written") {
            let _ = f.write_all(&line[..line.len() / 2]);
            crate::testhook::stall("transcript-half-written");
        }
        f.write_all(&line)
            .map_err(|e| CeremonyError::Io(path.into(), e))?;
        f.sync_all()
            .map_err(|e| CeremonyError::Io(path.into(), e))?;
        crate::testhook::at("transcript-appended");
        self.head = hash;
        self.entries.push(entry);
        Ok(())
    }

    /// The payload hash after the last action.
    pub fn last_payload(&self) -> Option<&str> {
        self.entries.last().map(|e| e.payload_sha256.as_str())
    }
}

/// A hint of who is acting: `TUFKEY_ACTOR`, else `user@host`.
pub fn default_actor() -> String {
    if let Ok(a) = std::env::var("TUFKEY_ACTOR") {
        return a;
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_edit_removal_or_reordering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transcript.jsonl");
        let mut t = Transcript::default();
        for i in 0..3 {
            t.append(&p, "alice@host", "step", json!({"i": i}), "aa")
                .unwrap();
        }
        let read = Transcript::read(&p).unwrap();
        assert_eq!(read.entries.len(), 3);
        assert_eq!(read.head, t.head);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            text.replace("\"i\":1", "\"i\":7"),
            format!("{}\n{}\n", lines[0], lines[2]),
            format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
            format!("{}\n{}\n", lines[0], lines[1]) + &lines[2].replace("alice", "mallory") + "\n",
        ];
        for (i, bad) in cases.iter().enumerate() {
            std::fs::write(&p, bad).unwrap();
            match Transcript::read(&p) {
                Err(_) => {}
                // Only the last line has no successor to betray it: the head noted by
                // the keyholders (status, finalize) pins it.
                Ok(r) => assert!(i == 3 && r.head != t.head, "case {i} not detected"),
            }
        }
    }

    #[test]
    fn an_actor_with_a_newline_leaves_a_transcript_that_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transcript.jsonl");
        let mut t = Transcript::default();
        t.append(
            &p,
            "alice\nmallory",
            "sign",
            json!({"note\n": "a\rb"}),
            "aa",
        )
        .unwrap();
        t.append(&p, "bob", "sign", json!({}), "aa").unwrap();
        let read = Transcript::read(&p).unwrap();
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.entries[0].actor, "alice\\u000amallory");
        assert_eq!(read.entries[0].details, json!({"note\\u000a": "a\\u000db"}));
        assert_eq!(read.head, t.head);
    }
}
