//! Shared output helpers: JSON for scripts, short key ids for people.

use serde_json::Value;

/// Prints pretty JSON on stdout.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The first 8 hex digits of a key id, for tables.
pub fn short(keyid: &str) -> &str {
    keyid.get(..8).unwrap_or(keyid)
}
