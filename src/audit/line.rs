//! An event's canonical line, written member by member.
//!
//! Every signature the daemon returns waits for its entry, so this is on the hot path:
//! building a `serde_json::Value` tree, escaping it, then canonicalizing it cost about
//! 30,000 instructions an entry (a third of the daemon's own work per signature in a
//! batch). The members of an [`Event`] are known, so they are written here in
//! canonical order (code point order of the names), with the same escaping: control
//! characters as the text `\u00XX` (see [`super::chain::escape_controls`]), then `"`
//! and `\` escaped as canonical JSON escapes them. The tests check the bytes against
//! the tree path for events with every field and every awkward character.

use std::collections::BTreeMap;

use super::event::Event;

/// The line of `event` with sequence number `seq`, after `prev`, stamped `time`.
pub(crate) fn write(event: &Event, seq: u64, prev: &str, time: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    let mut o = Object::new(&mut out);
    // Names in code point order; an absent optional member is left out.
    o.text("action", &event.action);
    if let Some(claims) = &event.claims {
        o.claims(claims);
    }
    o.opt("detail", &event.detail);
    o.opt("file", &event.file);
    o.opt("host", &event.host);
    o.opt("issuer", &event.issuer);
    o.opt("key_id", &event.key_id);
    o.opt("key_uri", &event.key_uri);
    o.opt("payload_sha256", &event.payload_sha256);
    o.opt("peer", &event.peer);
    o.text("prev", prev);
    o.opt("reason", &event.reason);
    o.opt("repository", &event.repository);
    o.text("result", &event.result);
    o.opt("role", &event.role);
    o.number("seq", seq);
    o.opt("source", &event.source);
    if let Some(status) = event.status {
        o.number("status", u64::from(status));
    }
    o.opt("subject", &event.subject);
    o.text("time", time);
    if let Some(uid) = event.uid {
        o.number("uid", u64::from(uid));
    }
    o.opt("user", &event.user);
    if let Some(version) = event.version {
        o.number("version", version);
    }
    o.text("who", &event.who);
    o.close();
    out
}

/// A JSON object being written: the braces and the commas between members.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(name, self.out);
        self.out.push(b':');
    }

    fn text(&mut self, name: &str, value: &str) {
        self.name(name);
        string(value, self.out);
    }

    fn opt(&mut self, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.text(name, v);
        }
    }

    fn number(&mut self, name: &str, value: u64) {
        self.name(name);
        self.out.extend_from_slice(value.to_string().as_bytes());
    }

    /// The claims map: its names get their control characters escaped first and are
    /// then sorted, as the tree path sorts them (before `"` and `\` are escaped); two
    /// names that escape alike keep the later value, as the tree path does.
    fn claims(&mut self, claims: &BTreeMap<String, String>) {
        self.name("claims");
        let mut escaped: BTreeMap<String, &str> = BTreeMap::new();
        for (k, v) in claims {
            escaped.insert(super::chain::controls_escaped(k), v);
        }
        let mut inner = Object::new(self.out);
        for (key, value) in escaped {
            inner.text(&key, value);
        }
        inner.close();
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A string as the line holds it: a control character becomes the six characters
/// `\u00xx`, whose backslash canonical JSON then escapes like any other.
fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The line as it was written before this module, through a tree: the event as a
/// `serde_json::Value`, control characters escaped, canonicalized. The oracle that the
/// tests and the `audit_transcript` fuzz target hold [`write`] to; `None` if the tree
/// path fails.
pub(crate) fn through_a_tree(event: &Event, seq: u64, prev: &str, time: &str) -> Option<Vec<u8>> {
    use serde_json::Value;
    let Value::Object(mut obj) = serde_json::to_value(event).ok()? else {
        return None;
    };
    obj.insert("seq".into(), Value::from(seq));
    obj.insert("prev".into(), Value::String(prev.into()));
    obj.insert("time".into(), Value::String(time.into()));
    let mut value = Value::Object(obj);
    super::chain::escape_controls(&mut value);
    crate::tuf::cjson::to_canonical(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_the_tree(event: &Event) {
        let (seq, prev, time) = (u64::MAX, "ab\"\\\n", "2026-12-04T13:00:00.123Z");
        let line = write(event, seq, prev, time);
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
