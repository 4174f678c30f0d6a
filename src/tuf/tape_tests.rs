//! The tape path must answer exactly as the `serde_json::Value` path: the same
//! canonical bytes, the same file form, the same envelope, the same errors. Thousands
//! of generated documents (escapes, unicode, big and negative integers, floats,
//! repeated names, odd whitespace, invalid text) are read both ways and compared.

use serde_json::Value;

use super::cjson::to_canonical;
use super::envelope::Envelope;
use super::metadata::Metadata;
use super::tape::Tape;
use super::tape_write::canonical;

/// xorshift64*: reproducible documents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const STRING_PIECES: &[&str] = &[
    "a",
    "Z",
    "path/to/file-1.tar.gz",
    "\\\"",
    "\\\\",
    "\\n",
    "\\t",
    "\\/",
    "\\u00e9",
    "é",
    "日本",
    "\\ud83d\\ude00",
    "😀",
    "\u{7f}",
    "\\u0000",
    "\\u001f",
    "-----BEGIN PUBLIC KEY-----\\nMFkw\\n",
    " ",
];
/// Pieces that make a string invalid (serde_json refuses them).
const BAD_STRING_PIECES: &[&str] = &["\\ud800", "\u{1}", "\\x", "\\u12"];
const NUMBERS: &[&str] = &[
    "0",
    "7",
    "-1",
    "1234567890",
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "-0",
    "1.5",
    "1e3",
    "2E-2",
    "100000000000000000000000",
];
const KEYS: &[&str] = &[
    "a", "b", "\\u0061", "Z", "é", "\\u00e9", "length", "hashes", "x-", "_type", "aa", "",
];
const SPACE: &[&str] = &["", "", "", " ", "\n", "\n  ", "\t", "\r\n"];

fn string(rng: &mut Rng, bad: bool) -> String {
    let mut s = String::from("\"");
    for _ in 0..rng.below(4) {
        s.push_str(rng.pick(STRING_PIECES));
    }
    if bad && rng.below(60) == 0 {
        s.push_str(rng.pick(BAD_STRING_PIECES));
    }
    s.push('"');
    s
}

fn value(rng: &mut Rng, depth: usize, bad: bool) -> String {
    let ws = |rng: &mut Rng| rng.pick(SPACE).to_string();
    let choice = if depth > 4 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match choice {
        0 => rng.pick(&["null", "true", "false"]).to_string(),
        1 | 2 => {
            let n = rng.pick(NUMBERS);
            // Floats appear in a few documents only, so that most stay canonical.
            if n.contains(['.', 'e', 'E']) || n == "-0" || n.len() > 20 {
                if bad && rng.below(10) == 0 {
                    n.to_string()
                } else {
                    "42".into()
                }
            } else {
                n.to_string()
            }
        }
        3 | 4 => string(rng, bad),
        5 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| format!("{}{}{}", ws(rng), value(rng, depth + 1, bad), ws(rng)))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let members: Vec<String> = (0..rng.below(5))
                .map(|_| {
                    let key = format!("\"{}\"", rng.pick(KEYS));
                    format!(
                        "{}{key}{}:{}{}{}",
                        ws(rng),
                        ws(rng),
                        ws(rng),
                        value(rng, depth + 1, bad),
                        ws(rng)
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
    }
}

/// A metadata document whose `signed` and extra members are generated, in any order.
fn envelope(rng: &mut Rng, bad: bool) -> String {
    let mut signed = vec![
        format!(
            "\"_type\":{}",
            rng.pick(&["\"targets\"", "\"root\"", "\"t\\u0061rgets\""])
        ),
        format!(
            "\"version\":{}",
            rng.pick(&["1", "7", "-3", "18446744073709551615"])
        ),
        format!(
            "\"expires\":{}",
            rng.pick(&["\"2030-01-01T00:00:00Z\"", "\"2030-01-01T00:00:00\\u005a\""])
        ),
    ];
    for _ in 0..rng.below(4) {
        signed.push(format!("\"{}\":{}", rng.pick(KEYS), value(rng, 1, bad)));
    }
    shuffle(rng, &mut signed);
    let sig = |id: &str| format!("{{\"keyid\":\"{id}\",\"sig\":\"ab01\"}}");
    let sigs = match rng.below(6) {
        0 => "[]".to_string(),
        1 => format!("[{},{}]", sig("k1"), sig("k1")),
        2 if bad => "{}".to_string(),
        3 => format!(
            "[{},{{\"keyid\":\"k2\",\"sig\":\"\",\"x-note\":[1,\"é\"]}}]",
            sig("k1")
        ),
        _ => format!("[{}]", sig("k1")),
    };
    let mut top = vec![
        format!("\"signed\":{{{}}}", signed.join(",")),
        format!("\"signatures\":{sigs}"),
    ];
    if rng.below(3) == 0 {
        top.push(format!("\"x-top\":{}", value(rng, 1, bad)));
    }
    if bad && rng.below(20) == 0 {
        top.push("\"signed\":{\"_type\":\"root\"}".into());
    }
    shuffle(rng, &mut top);
    let pad = rng.pick(SPACE);
    format!("{pad}{{{}}}{pad}", top.join(&format!(",{pad}")))
}

fn shuffle(rng: &mut Rng, items: &mut [String]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

#[test]
fn the_tape_writes_the_same_canonical_bytes_as_cjson_for_generated_json() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut fast, mut declined) = (0, 0);
    for _ in 0..20_000 {
        let text = value(&mut rng, 0, true);
        let slow = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| to_canonical(&v).ok());
        let tape = Tape::parse(text.clone().into_bytes()).ok().and_then(|t| {
            let mut out = Vec::new();
            canonical(&t, 0, &mut out).ok().map(|()| out)
        });
        match tape {
            Some(bytes) => {
                fast += 1;
                assert_eq!(Some(bytes), slow, "{text}");
            }
            None => declined += 1,
        }
    }
    // The comparison means something only if most documents took the tape path.
    assert!(
        fast > 15_000 && declined > 100,
        "fast {fast}, declined {declined}"
    );
}

#[test]
fn an_envelope_read_from_its_tape_equals_metadata_in_every_answer() {
    let mut rng = Rng(0x0bad_cafe_f00d_0002);
    let (mut fast, mut refused) = (0, 0);
    for _ in 0..5_000 {
        let text = envelope(&mut rng, true);
        let slow = Metadata::from_slice(text.as_bytes());
        let env = Envelope::from_bytes(text.clone().into_bytes());
        match (&slow, &env) {
            (Ok(md), Ok(env)) => {
                fast += usize::from(env.is_fast());
                assert_eq!(env.payload(), md.payload().as_slice(), "{text}");
                assert_eq!(env.payload_sha256(), md.payload_sha256(), "{text}");
                assert_eq!(env.to_pretty_bytes(), md.to_pretty_bytes(), "{text}");
                assert_eq!(env.role_type(), md.role_type(), "{text}");
                assert_eq!(env.version(), md.version(), "{text}");
                assert_eq!(env.expires().as_deref(), md.expires(), "{text}");
                assert_eq!(env.signatures(), md.signatures(), "{text}");
            }
            (Err(a), Err(b)) => {
                refused += 1;
                assert_eq!(a.to_string(), b.to_string(), "{text}");
            }
            _ => panic!(
                "{text}: Metadata says {:?}, Envelope says {:?}",
                slow.as_ref().err(),
                env.as_ref().err()
            ),
        }
    }
    assert!(
        fast > 1_500 && refused > 100,
        "fast {fast}, refused {refused}"
    );
}

#[test]
fn a_signed_object_with_a_repeated_name_keeps_the_last_value_as_serde_json_does() {
    let text = r#"{"signatures":[],"signed":{"_type":"targets","version":1,"version":2,"x":{"a":1,"\u0061":2}}}"#;
    let env = Envelope::from_bytes(text.as_bytes().to_vec()).unwrap();
    let md = Metadata::from_slice(text.as_bytes()).unwrap();
    assert!(!env.is_fast(), "repeated names are left to serde_json");
    assert_eq!(
        env.payload(),
        br#"{"_type":"targets","version":2,"x":{"a":2}}"#
    );
    assert_eq!(env.payload(), md.payload().as_slice());
    assert_eq!(env.version(), Some(2));
}

#[test]
fn a_float_in_signed_is_refused_with_its_path_as_before() {
    let text = r#"{"signatures":[],"signed":{"_type":"targets","x":[1,2.5]}}"#;
    let err = Envelope::from_bytes(text.as_bytes().to_vec())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("$.x[1]") && err.contains("2.5"), "{err}");
}

#[test]
fn a_python_tuf_style_file_is_read_from_its_tape_and_written_back_unchanged() {
    let text = "{\n \"signatures\": [\n  {\n   \"keyid\": \"k1\",\n   \"sig\": \"ab\"\n  }\n ],\n \"signed\": {\n  \"_type\": \"targets\",\n  \"expires\": \"2030-01-01T00:00:00Z\",\n  \"spec_version\": \"1.0.31\",\n  \"targets\": {\n   \"a/b.txt\": {\n    \"hashes\": {\n     \"sha256\": \"00ff\"\n    },\n    \"length\": 3\n   }\n  },\n  \"version\": 4\n }\n}\n";
    let env = Envelope::from_bytes(text.as_bytes().to_vec()).unwrap();
    assert!(env.is_fast());
    assert_eq!(env.to_pretty_bytes(), text.as_bytes());
    assert_eq!(
        env.payload(),
        br#"{"_type":"targets","expires":"2030-01-01T00:00:00Z","spec_version":"1.0.31","targets":{"a/b.txt":{"hashes":{"sha256":"00ff"},"length":3}},"version":4}"#
    );
}

#[test]
fn every_truncation_of_a_document_is_refused_with_the_same_error_both_ways() {
    let text = r#"{"signatures":[{"keyid":"k1","sig":"ab"}],"signed":{"_type":"targets","expires":"2030-01-01T00:00:00Z","targets":{"a\u00e9":{"hashes":{"sha256":"00"},"length":-12}},"version":3},"x-top":[true,null]}"#;
    assert!(Envelope::from_bytes(text.as_bytes().to_vec())
        .unwrap()
        .is_fast());
    for end in 0..text.len() {
        let cut = &text.as_bytes()[..end];
        let slow = Metadata::from_slice(cut)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let fast = Envelope::from_bytes(cut.to_vec())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(slow.is_err(), "a cut document parsed: {end}");
        assert_eq!(fast, slow, "cut at {end}");
    }
}

#[test]
fn a_new_version_and_expiry_are_written_from_the_tape_as_metadata_writes_them() {
    let mut rng = Rng(0x0bad_cafe_f00d_0003);
    let mut fast = 0;
    for round in 0..3_000 {
        let mut text = envelope(&mut rng, false);
        if round % 3 == 0 {
            // Also documents without `version` or `expires`, where both are added.
            text = text.replacen("\"version\":", "\"x-version\":", 1).replacen(
                "\"expires\":",
                "\"a-expires\":",
                1,
            );
        }
        let (Ok(mut md), Ok(mut env)) = (
            Metadata::from_slice(text.as_bytes()),
            Envelope::from_bytes(text.clone().into_bytes()),
        ) else {
            continue;
        };
        fast += usize::from(env.is_fast());
        md.set_version_and_expires(42, "2031-02-03T04:05:06Z")
            .unwrap();
        env.set_version_and_expires(42, "2031-02-03T04:05:06Z")
            .unwrap();
        assert_eq!(env.payload(), md.payload().as_slice(), "{text}");
        assert_eq!(env.payload_sha256(), md.payload_sha256(), "{text}");
        assert_eq!(env.to_pretty_bytes(), md.to_pretty_bytes(), "{text}");
        assert_eq!(env.version(), Some(42), "{text}");
        assert_eq!(env.expires().as_deref(), md.expires(), "{text}");
        assert!(env.signatures().is_empty(), "{text}");
        let bad = env.set_version_and_expires(1, "tomorrow").unwrap_err();
        assert_eq!(
            bad.to_string(),
            md.set_version_and_expires(1, "tomorrow")
                .unwrap_err()
                .to_string()
        );
    }
    assert!(fast > 1_000, "fast {fast}");
}

#[test]
fn target_entries_are_walked_on_the_tape_as_in_the_value_tree() {
    let docs = [
        r#"{"signatures":[],"signed":{"_type":"targets","targets":{"b":{"hashes":{"sha256":"02"},"length":2},"a\u00e9":{"hashes":{"sha256":"0\u0031"},"length":1},"c":{"hashes":{"sha512":"03"}},"d":{"hashes":{"sha256":4}},"e":[]}}}"#,
        r#"{"signatures":[],"signed":{"_type":"targets","targets":[]}}"#,
        r#"{"signatures":[],"signed":{"_type":"targets"}}"#,
        r#"{"signatures":[],"signed":{"_type":"targets","targets":{"x":{"length":1.5}}}}"#,
    ];
    for text in docs {
        let walk = |env: &Envelope| {
            let mut seen = Vec::new();
            env.each_target(|path, entry| {
                seen.push((
                    path.to_string(),
                    entry.sha256().map(|s| s.into_owned()),
                    entry.to_value(),
                ));
                Ok::<(), ()>(())
            })
            .unwrap();
            seen
        };
        let Ok(env) = Envelope::from_bytes(text.as_bytes().to_vec()) else {
            continue;
        };
        let md = Envelope::from_metadata(Metadata::from_slice(text.as_bytes()).unwrap());
        assert!(!md.is_fast());
        assert_eq!(walk(&env), walk(&md), "{text}");
    }
}
