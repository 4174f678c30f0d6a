//! Reading and writing the JSON files tests make and check, and paths as arguments.

use std::path::Path;

use serde_json::Value;

/// A path as a command-line argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A JSON file's contents; a missing or broken file fails the test naming it.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `v` as pretty JSON (as an editor or another tool would leave it).
pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Edits a text file (a `repo.toml`) by replacing `from` with `to`; a `from` that is not
/// there fails the test, so an edit can never silently do nothing.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(from),
        "{}: no `{from}` to replace",
        path.display()
    );
    std::fs::write(path, text.replace(from, to))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
