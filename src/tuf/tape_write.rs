//! Bytes written straight from a [`Tape`]: canonical JSON (what signatures cover) and
//! the pretty file form, with no `serde_json::Value` in between.
//!
//! Both must equal, byte for byte, what `cjson::to_canonical` and serde_json's pretty
//! printer write for the same document parsed into a `Value`; the tests in
//! `tape_tests.rs` compare them on many documents.

use super::cjson::write_string;
use super::tape::{Declined, Kind, Tape};

/// Canonical JSON of node `i` (see `cjson.rs` for the rules), appended to `out`.
pub fn canonical(tape: &Tape, i: usize, out: &mut Vec<u8>) -> Result<(), Declined> {
    let n = tape.nodes[i];
    match n.kind {
        Kind::Null | Kind::True | Kind::False | Kind::Int => out.extend_from_slice(tape.span(i)),
        Kind::Str => {
            // No escapes in the input means no `"` or `\` inside: the bytes are canonical.
            out.push(b'"');
            out.extend_from_slice(tape.span(i));
            out.push(b'"');
        }
        Kind::EscStr => write_string(&tape.string(i)?, out),
        Kind::Array => {
            out.push(b'[');
            for (pos, item) in tape.items(i).enumerate() {
                if pos > 0 {
                    out.push(b',');
                }
                canonical(tape, item, out)?;
            }
            out.push(b']');
        }
        Kind::Object => {
            out.push(b'{');
            for (pos, (k, v)) in tape.sorted_members(i)?.enumerate() {
                if pos > 0 {
                    out.push(b',');
                }
                canonical(tape, k, out)?;
                out.push(b':');
                canonical(tape, v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Node `i` as serde_json's pretty printer (one-space indent) writes it at nesting
/// `level`: sorted members, `": "` after names, `[]`/`{}` when empty.
pub fn pretty(tape: &Tape, i: usize, level: usize, out: &mut Vec<u8>) -> Result<(), Declined> {
    let n = tape.nodes[i];
    match n.kind {
        Kind::Null | Kind::True | Kind::False | Kind::Int | Kind::Str => {
            out.extend_from_slice(tape.json_text(i))
        }
        Kind::EscStr => {
            // Writing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &tape.string(i)?);
        }
        Kind::Array => {
            out.push(b'[');
            for (pos, item) in tape.items(i).enumerate() {
                out.extend_from_slice(if pos > 0 { b",\n" } else { b"\n" });
                indent(out, level + 1);
                pretty(tape, item, level + 1, out)?;
            }
            close(out, level, !tape.is_empty(i), b']');
        }
        Kind::Object => {
            out.push(b'{');
            for (pos, (k, v)) in tape.sorted_members(i)?.enumerate() {
                out.extend_from_slice(if pos > 0 { b",\n" } else { b"\n" });
                indent(out, level + 1);
                pretty(tape, k, level + 1, out)?;
                out.extend_from_slice(b": ");
                pretty(tape, v, level + 1, out)?;
            }
            close(out, level, !tape.is_empty(i), b'}');
        }
    }
    Ok(())
}

/// Writes the one-space indentation of `level`.
pub fn indent(out: &mut Vec<u8>, level: usize) {
    out.resize(out.len() + level, b' ');
}

fn close(out: &mut Vec<u8>, level: usize, had_items: bool, bracket: u8) {
    if had_items {
        out.push(b'\n');
        indent(out, level);
    }
    out.push(bracket);
}

/// A `serde_json::Value` in the same pretty form, nested at `level`: serde_json's
/// output with each line indented `level` more (its strings never hold a raw newline).
pub fn pretty_value(value: &serde_json::Value, level: usize, out: &mut Vec<u8>) {
    use serde::Serialize;
    let mut own = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut own, fmt);
    // Serialising a Value into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    for b in own {
        out.push(b);
        if b == b'\n' {
            indent(out, level);
        }
    }
}

/// A member of an object written with a new value: `name` replaces the member of that
/// name, or is added in its sorted place (what inserting into a `serde_json::Map` does).
pub struct Replace<'a> {
    pub name: &'a str,
    pub value: &'a serde_json::Value,
}

/// One member of an object as [`canonical_replacing`] and [`pretty_replacing`] write it.
enum Item<'a> {
    Member(usize, usize),
    Replaced(&'a Replace<'a>),
}

/// The object's members sorted by name, with `replace` (sorted by name) merged in.
fn merged<'a>(
    tape: &Tape,
    obj: usize,
    replace: &'a [Replace<'a>],
) -> Result<Vec<Item<'a>>, Declined> {
    let mut out = Vec::new();
    let mut pending = replace.iter().peekable();
    for (k, v) in tape.sorted_members(obj)? {
        let name = tape.name(k)?;
        while let Some(r) = pending.next_if(|r| r.name.as_bytes() < name.as_bytes()) {
            out.push(Item::Replaced(r));
        }
        match pending.next_if(|r| r.name.as_bytes() == name.as_bytes()) {
            Some(r) => out.push(Item::Replaced(r)),
            None => out.push(Item::Member(k, v)),
        }
    }
    out.extend(pending.map(Item::Replaced));
    Ok(out)
}

/// Canonical JSON of object `obj` with the members of `replace` (sorted by name) in
/// place of its own: the payload of a document whose version and expiry changed,
/// without building the document again.
pub fn canonical_replacing(
    tape: &Tape,
    obj: usize,
    replace: &[Replace<'_>],
    out: &mut Vec<u8>,
) -> Result<(), Declined> {
    if tape.nodes[obj].kind != Kind::Object {
        return Err(Declined);
    }
    out.push(b'{');
    for (pos, item) in merged(tape, obj, replace)?.into_iter().enumerate() {
        if pos > 0 {
            out.push(b',');
        }
        match item {
            Item::Member(k, v) => {
                canonical(tape, k, out)?;
                out.push(b':');
                canonical(tape, v, out)?;
            }
            Item::Replaced(r) => {
                write_string(r.name, out);
                out.push(b':');
                let bytes = super::cjson::to_canonical(r.value).map_err(|_| Declined)?;
                out.extend_from_slice(&bytes);
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// As [`pretty`] for object `obj` with the members of `replace` in place of its own.
pub fn pretty_replacing(
    tape: &Tape,
    obj: usize,
    level: usize,
    replace: &[Replace<'_>],
    out: &mut Vec<u8>,
) -> Result<(), Declined> {
    if tape.nodes[obj].kind != Kind::Object {
        return Err(Declined);
    }
    let items = merged(tape, obj, replace)?;
    out.push(b'{');
    let had_items = !items.is_empty();
    for (pos, item) in items.into_iter().enumerate() {
        out.extend_from_slice(if pos > 0 { b",\n" } else { b"\n" });
        indent(out, level + 1);
        match item {
            Item::Member(k, v) => {
                pretty(tape, k, level + 1, out)?;
                out.extend_from_slice(b": ");
                pretty(tape, v, level + 1, out)?;
            }
            Item::Replaced(r) => {
                // Writing a &str into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, r.name);
                out.extend_from_slice(b": ");
                pretty_value(r.value, level + 1, out);
            }
        }
    }
    close(out, level, had_items, b'}');
    Ok(())
}
