//! An event's canonical line, written member by member.
//!
//! Every signature the daemon returns waits for its entry, so this is on the hot path:
//! building a `serde_json::Value` tree, escaping it, then canonicalizing it cost about
//! 30,000 instructions an entry (a third of the daemon's own work per signature in a
//! batch). The members of an [`Event`] are known, so they are written here in
//! canonical order (code point order of the names), with the same escaping: control
//! characters as the text `\u00XX` (as `chain::escape_controls` writes them), then `"`
//! and `\` escaped as canonical JSON escapes them. The tests check the bytes against
//! the tree path (`chain`'s tests and the `audit_transcript` fuzz target).

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
        use std::io::Write;
        self.name(name);
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    /// The claims map: its names get their control characters escaped first and are
    /// then sorted, as the tree path sorts them (before `"` and `\` are escaped); two
    /// names that escape alike keep the later value, as the tree path does.
    fn claims(&mut self, claims: &BTreeMap<String, String>) {
        self.name("claims");
        let mut escaped: BTreeMap<String, &str> = BTreeMap::new();
        for (k, v) in claims {
            escaped.insert(controls_escaped(k), v);
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

/// `s` with each control character (U+0000 to U+001F) replaced by the six characters
/// `\u00xx`.
pub(crate) fn controls_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c < ' ' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
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
