//! JSON read once into a flat "tape" of byte ranges over the input, for documents
//! too large to hold as a `serde_json::Value` tree (a 13 MB targets file is a
//! 350 MB tree of maps and strings; its tape is one 16-byte node per value).
//!
//! The tape only accepts what it is sure `serde_json` accepts the same way: plain
//! integers that fit 64 bits, strings that are valid UTF-8, objects without repeated
//! member names, nesting below [`MAX_DEPTH`]. Anything else — floats, `-0`, repeated
//! names, odd escapes — is [`Declined`], and the caller takes the `serde_json` path,
//! so the answer (value or error message) is always the one `serde_json` gives.

use std::borrow::Cow;
use std::cmp::Ordering;

/// (key node, value node) of one object member.
pub type Member = (usize, usize);

/// Bytes that end a run of plain string content: `"`, `\\` and control bytes.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Nesting deeper than this is left to serde_json (which stops at 128).
pub const MAX_DEPTH: usize = 100;

/// The tape cannot vouch for this input; use `serde_json`, which decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    True,
    False,
    /// An integer that fits `i64` or `u64`; its text is its canonical form.
    Int,
    /// A string without escapes: its bytes are the string.
    Str,
    /// A string with escapes: decode before use.
    EscStr,
    Array,
    Object,
}

/// One JSON value. Strings span their content inside the quotes; containers span
/// from the opening to after the closing bracket; an object's members follow it as
/// key node, value subtree, key node, value subtree…
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub start: u32,
    pub end: u32,
    /// Index of the first node after this value's subtree.
    pub next: u32,
    pub kind: Kind,
}

/// A parsed document: the input bytes and its nodes (node 0 is the root value).
pub struct Tape {
    pub bytes: Vec<u8>,
    pub nodes: Vec<Node>,
}

impl Tape {
    /// Parses `bytes`, or declines (see the module comment).
    pub fn parse(bytes: Vec<u8>) -> Result<Tape, (Declined, Vec<u8>)> {
        match parse_nodes(&bytes) {
            Ok(nodes) => Ok(Tape { bytes, nodes }),
            Err(d) => Err((d, bytes)),
        }
    }

    /// The raw bytes a node spans.
    pub fn span(&self, i: usize) -> &[u8] {
        let n = self.nodes[i];
        &self.bytes[n.start as usize..n.end as usize]
    }

    /// An object's members in file order, as (key node, value node).
    pub fn members(&self, obj: usize) -> Members<'_> {
        Members {
            tape: self,
            at: obj + 1,
            end: self.nodes[obj].next as usize,
        }
    }

    /// An array's items in order.
    pub fn items(&self, arr: usize) -> Items<'_> {
        Items {
            tape: self,
            at: arr + 1,
            end: self.nodes[arr].next as usize,
        }
    }

    /// Whether a container has no members or items.
    pub fn is_empty(&self, i: usize) -> bool {
        self.nodes[i].next as usize == i + 1
    }

    /// An object's members sorted by name (code point order, as canonical JSON and
    /// python's `sort_keys` order them). Repeated names are declined.
    pub fn sorted_members(&self, obj: usize) -> Result<Sorted<'_>, Declined> {
        // Files written by python-tuf and tufkey are already sorted: one pass checks it,
        // and the members are then walked in place.
        let mut prev: Option<&[u8]> = None;
        let mut in_order = true;
        for (k, _) in self.members(obj) {
            if self.nodes[k].kind != Kind::Str {
                in_order = false;
                break;
            }
            let name = self.span(k);
            if prev.is_some_and(|p| p >= name) {
                in_order = false;
                break;
            }
            prev = Some(name);
        }
        if in_order {
            return Ok(Sorted::InPlace(self.members(obj)));
        }
        let mut keyed: Vec<(Cow<'_, str>, Member)> = Vec::new();
        for m in self.members(obj) {
            keyed.push((self.name(m.0)?, m));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        if keyed
            .windows(2)
            .any(|w| w[0].0.cmp(&w[1].0) == Ordering::Equal)
        {
            return Err(Declined);
        }
        let sorted: Vec<(usize, usize)> = keyed.into_iter().map(|(_, m)| m).collect();
        Ok(Sorted::Moved(sorted.into_iter()))
    }

    /// The value of member `name` of an object (the tape holds no repeated names).
    pub fn get(&self, obj: usize, name: &str) -> Option<usize> {
        if self.nodes[obj].kind != Kind::Object {
            return None;
        }
        self.members(obj)
            .find(|(k, _)| self.name(*k).is_ok_and(|s| s == name))
            .map(|(_, v)| v)
    }

    /// A string node's value, borrowed from the input when it has no escapes (member
    /// names nearly always): what to compare names with, without an allocation each.
    /// The input is valid UTF-8 (checked by [`Tape::parse`]), so a plain string always
    /// borrows; names compare in code point order as their bytes do.
    pub fn name(&self, i: usize) -> Result<Cow<'_, str>, Declined> {
        match self.nodes[i].kind {
            Kind::Str => std::str::from_utf8(self.span(i))
                .map(Cow::Borrowed)
                .map_err(|_| Declined),
            _ => self.string(i).map(Cow::Owned),
        }
    }

    /// A string node's value.
    pub fn string(&self, i: usize) -> Result<String, Declined> {
        match self.nodes[i].kind {
            Kind::Str => std::str::from_utf8(self.span(i))
                .map(str::to_string)
                .map_err(|_| Declined),
            Kind::EscStr => decode_escaped(&self.bytes, self.nodes[i]),
            _ => Err(Declined),
        }
    }

    /// A node's whole JSON text (a string with its quotes).
    pub fn json_text(&self, i: usize) -> &[u8] {
        let n = self.nodes[i];
        match n.kind {
            Kind::Str | Kind::EscStr => &self.bytes[n.start as usize - 1..n.end as usize + 1],
            _ => self.span(i),
        }
    }
}

/// An object's (key node, value node) pairs in file order.
pub struct Members<'a> {
    tape: &'a Tape,
    at: usize,
    end: usize,
}

impl Iterator for Members<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.at >= self.end {
            return None;
        }
        let (k, v) = (self.at, self.at + 1);
        self.at = self.tape.nodes[v].next as usize;
        Some((k, v))
    }
}

/// An array's item nodes in order.
pub struct Items<'a> {
    tape: &'a Tape,
    at: usize,
    end: usize,
}

impl Iterator for Items<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let i = self.at;
        self.at = self.tape.nodes[i].next as usize;
        Some(i)
    }
}

/// Members by name: in place when the file had them sorted, else a sorted copy.
pub enum Sorted<'a> {
    InPlace(Members<'a>),
    Moved(std::vec::IntoIter<(usize, usize)>),
}

impl Iterator for Sorted<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        match self {
            Sorted::InPlace(m) => m.next(),
            Sorted::Moved(m) => m.next(),
        }
    }
}

/// A string with escapes, decoded exactly as serde_json decodes it.
fn decode_escaped(bytes: &[u8], n: Node) -> Result<String, Declined> {
    serde_json::from_slice(&bytes[n.start as usize - 1..n.end as usize + 1]).map_err(|_| Declined)
}

fn parse_nodes(bytes: &[u8]) -> Result<Vec<Node>, Declined> {
    if bytes.len() >= u32::MAX as usize || std::str::from_utf8(bytes).is_err() {
        return Err(Declined);
    }
    let mut p = Parser {
        b: bytes,
        i: 0,
        nodes: Vec::with_capacity(bytes.len() / 16 + 4),
    };
    p.ws();
    p.value(0)?;
    p.ws();
    if p.i != bytes.len() {
        return Err(Declined);
    }
    Ok(p.nodes)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn push(&mut self, kind: Kind, start: usize, end: usize) -> usize {
        let idx = self.nodes.len();
        self.nodes.push(Node {
            start: start as u32,
            end: end as u32,
            next: idx as u32 + 1,
            kind,
        });
        idx
    }

    fn value(&mut self, depth: usize) -> Result<(), Declined> {
        match self.peek().ok_or(Declined)? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true", Kind::True),
            b'f' => self.literal(b"false", Kind::False),
            b'n' => self.literal(b"null", Kind::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Declined),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<(), Declined> {
        if !self.b[self.i..].starts_with(word) {
            return Err(Declined);
        }
        let start = self.i;
        self.i += word.len();
        self.push(kind, start, self.i);
        Ok(())
    }

    /// Integers only; fractions, exponents, `-0` and values outside 64 bits are
    /// declined (serde_json makes them floats, which canonical JSON refuses).
    fn number(&mut self) -> Result<(), Declined> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let digits_start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let digits = &self.b[digits_start..self.i];
        if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
            return Err(Declined);
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return Err(Declined);
        }
        let mut magnitude: u64 = 0;
        for d in digits {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
                .ok_or(Declined)?;
        }
        if negative && (magnitude == 0 || magnitude > 1 << 63) {
            return Err(Declined);
        }
        self.push(Kind::Int, start, self.i);
        Ok(())
    }

    fn string(&mut self) -> Result<usize, Declined> {
        self.i += 1; // the opening quote
        let start = self.i;
        let mut escaped = false;
        loop {
            // Skip plain bytes in a tight loop; stop at a quote, a backslash or a control byte.
            while self.i < self.b.len() && !STRING_STOP[self.b[self.i] as usize] {
                self.i += 1;
            }
            match *self.b.get(self.i).ok_or(Declined)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                _ => return Err(Declined),
            }
        }
        let end = self.i;
        self.i += 1; // the closing quote
        let kind = if escaped { Kind::EscStr } else { Kind::Str };
        let idx = self.push(kind, start, end);
        if escaped {
            decode_escaped(self.b, self.nodes[idx])?;
        }
        Ok(idx)
    }

    fn array(&mut self, depth: usize) -> Result<(), Declined> {
        if depth > MAX_DEPTH {
            return Err(Declined);
        }
        let start = self.i;
        let idx = self.push(Kind::Array, start, start);
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                self.value(depth)?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                    }
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Declined),
                }
            }
        }
        self.close(idx);
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), Declined> {
        if depth > MAX_DEPTH {
            return Err(Declined);
        }
        let start = self.i;
        let idx = self.push(Kind::Object, start, start);
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(Declined);
                }
                self.string()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(Declined);
                }
                self.i += 1;
                self.ws();
                self.value(depth)?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                    }
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Declined),
                }
            }
        }
        self.close(idx);
        Ok(())
    }

    fn close(&mut self, idx: usize) {
        let next = self.nodes.len() as u32;
        let node = &mut self.nodes[idx];
        node.end = self.i as u32;
        node.next = next;
    }
}
