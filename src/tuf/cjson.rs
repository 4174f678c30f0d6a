//! OLPC canonical JSON exactly as securesystemslib's `encode_canonical` writes it.
//!
//! Every TUF signature and key id is computed over these bytes, so this is the one
//! place that produces them. Rules: object keys sorted by code point, no whitespace,
//! integers only (a float makes the document unsignable), and inside strings only
//! `"` and `\` are escaped — control characters such as PEM newlines are written
//! as they are.

use serde_json::Value;

/// Why a JSON value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    /// Canonical JSON has no floats; securesystemslib refuses them too.
    #[error("the value at {path} is a non-integer number ({value}); canonical JSON allows only integers")]
    Float { path: String, value: String },
}

/// Canonical bytes of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(1024);
    write_value(value, &mut out, &mut String::from("$"))?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float {
                    path: path.clone(),
                    value: n.to_string(),
                });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's default map is a BTreeMap<String, _>: iteration is in byte
            // order of the UTF-8 keys, which equals Python's code-point order. Sort
            // explicitly anyway so a `preserve_order` feature elsewhere cannot break it.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                let len = path.len();
                path.push('.');
                path.push_str(key);
                write_value(&map[key], out, path)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A string as canonical JSON writes it (only `"` and `\` escaped); the tape's writer
/// uses it for strings that had escapes.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_canonical(&v).unwrap()).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_whitespace_is_dropped() {
        assert_eq!(
            canon(json!({"b": 1, "a": [true, null, "x"]})),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn only_quote_and_backslash_are_escaped() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAB\tC\u{1}\n";
        assert_eq!(
            canon(json!({ "k": pem, "q": "a\"b\\c" })),
            format!("{{\"k\":\"{pem}\",\"q\":\"a\\\"b\\\\c\"}}")
        );
    }

    #[test]
    fn non_ascii_is_written_as_utf8_and_sorted_by_code_point() {
        assert_eq!(
            canon(json!({"é": 1, "z": 2, "Z": 3})),
            "{\"Z\":3,\"z\":2,\"é\":1}"
        );
    }

    #[test]
    fn negative_and_large_integers_are_kept() {
        assert_eq!(
            canon(json!([-5, 18446744073709551615u64])),
            "[-5,18446744073709551615]"
        );
    }

    #[test]
    fn floats_are_refused_with_their_path() {
        let err = to_canonical(&json!({"signed": {"x": [1, 2.5]}})).unwrap_err();
        assert_eq!(
            err,
            CanonicalError::Float {
                path: "$.signed.x[1]".into(),
                value: "2.5".into()
            }
        );
    }
}
