//! Target paths as TUF clients treat them: which names are safe to publish, and which
//! delegated role may hold a path (`paths` globs and `path_hash_prefixes`), matched
//! exactly as python-tuf's `DelegatedRole.is_delegated_path` does so that a target is
//! filed where clients will look for it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a target path cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("target path `{0}` is empty")]
    Empty(String),
    #[error("target path `{0}` is absolute; give it relative to the repository's targets/ (e.g. `app/1.0.tar.gz`)")]
    Absolute(String),
    #[error("target path `{0}` contains a `..` or `.` segment; a client would write outside (or around) its download folder")]
    DotSegment(String),
    #[error("target path `{0}` has an empty segment (`//` or a trailing `/`)")]
    EmptySegment(String),
    #[error("target path `{0}` contains a backslash or a control character; use `/` between folders and printable names")]
    BadCharacter(String),
}

/// Checks that `path` is a relative, `/`-separated name with no `.`/`..` segment, so a
/// client joining it to its download folder stays inside it.
pub fn check_target_path(path: &str) -> Result<(), PathError> {
    let own = || path.to_string();
    if path.is_empty() {
        return Err(PathError::Empty(own()));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(own()));
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::BadCharacter(own()));
    }
    for seg in path.split('/') {
        match seg {
            "" => return Err(PathError::EmptySegment(own())),
            "." | ".." => return Err(PathError::DotSegment(own())),
            _ => {}
        }
    }
    Ok(())
}

/// Python's `fnmatch.fnmatch` on POSIX (no case folding): `*`, `?`, `[seq]`, `[!seq]`.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    matches_from(&n, &p)
}

fn matches_from(n: &[char], p: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| matches_from(&n[i..], &p[1..])),
        Some('?') => !n.is_empty() && matches_from(&n[1..], &p[1..]),
        Some('[') => match class(p) {
            Some((set, negate, used)) => match n.first() {
                Some(c) => set_has(&set, *c) != negate && matches_from(&n[1..], &p[used..]),
                None => false,
            },
            // An unclosed `[` is a literal, as in Python.
            None => n.first() == Some(&'[') && matches_from(&n[1..], &p[1..]),
        },
        Some(c) => n.first() == Some(c) && matches_from(&n[1..], &p[1..]),
    }
}

/// Inclusive character ranges of a `[...]` class.
type Ranges = Vec<(char, char)>;

/// A `[...]` class at the start of `p`: its ranges, whether it is negated, and how
/// many pattern characters it used.
fn class(p: &[char]) -> Option<(Ranges, bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut ranges = Vec::new();
    while i < p.len() {
        let c = p[i];
        if c == ']' && i > start {
            return Some((ranges, negate, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            ranges.push((c, p[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    None
}

fn set_has(set: &[(char, char)], c: char) -> bool {
    set.iter().any(|(lo, hi)| *lo <= c && c <= *hi)
}

/// python-tuf's `_is_target_in_pathpattern`: the same number of `/`-separated parts,
/// each matched with `fnmatch`, so `team/*` covers `team/a` but not `team/a/b`.
pub fn path_matches_pattern(target: &str, pattern: &str) -> bool {
    let t: Vec<&str> = target.split('/').collect();
    let p: Vec<&str> = pattern.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| fnmatch(a, b))
}

/// Whether the delegated role object `role` (an element of `delegations.roles`) is
/// trusted for `target`: one of its `paths` matches, or the SHA-256 of the path starts
/// with one of its `path_hash_prefixes`.
pub fn role_may_hold(role: &Value, target: &str) -> bool {
    let strings = |field: &str| -> Vec<String> {
        role.get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    if role.get("paths").is_some() {
        return strings("paths")
            .iter()
            .any(|p| path_matches_pattern(target, p));
    }
    if role.get("path_hash_prefixes").is_some() {
        let digest = hex::encode(Sha256::digest(target.as_bytes()));
        return strings("path_hash_prefixes")
            .iter()
            .any(|p| digest.starts_with(p.as_str()));
    }
    false
}

/// How a delegated role describes its paths, for messages: its globs, or its hash prefixes.
pub fn describe_role_paths(role: &Value) -> String {
    let list = |field: &str| {
        role.get(field).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    match (list("paths"), list("path_hash_prefixes")) {
        (Some(p), _) => format!("paths: {p}"),
        (None, Some(h)) => format!("path hash prefixes: {h}"),
        (None, None) => "no paths".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsafe_target_paths_are_refused() {
        assert!(check_target_path("app/1.0/app.tar.gz").is_ok());
        assert!(check_target_path("file with spaces.txt").is_ok());
        for (bad, want) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", ".."),
            ("a/../b", ".."),
            ("a/./b", ".."),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\\b", "backslash"),
            ("a\nb", "control"),
        ] {
            let e = check_target_path(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn globs_match_per_segment_like_python_tuf() {
        assert!(path_matches_pattern("team/a.txt", "team/*"));
        assert!(!path_matches_pattern("team/sub/a.txt", "team/*"));
        assert!(path_matches_pattern("team/sub/a.txt", "team/*/*.txt"));
        assert!(path_matches_pattern("a1.txt", "a?.txt"));
        assert!(!path_matches_pattern("a12.txt", "a?.txt"));
        assert!(path_matches_pattern("v3.bin", "v[0-9].bin"));
        assert!(!path_matches_pattern("vx.bin", "v[0-9].bin"));
        assert!(path_matches_pattern("vx.bin", "v[!0-9].bin"));
        assert!(path_matches_pattern("[x", "[x"));
        assert!(path_matches_pattern("anything", "*"));
        assert!(!path_matches_pattern("a/b", "*"));
    }

    #[test]
    fn hash_prefixes_use_the_sha256_of_the_path() {
        let digest = hex::encode(Sha256::digest(b"file.txt"));
        let role = json!({"name": "bin", "path_hash_prefixes": [&digest[..2]]});
        assert!(role_may_hold(&role, "file.txt"));
        let other = json!({"name": "bin", "path_hash_prefixes": ["zz"]});
        assert!(!role_may_hold(&other, "file.txt"));
        assert!(!role_may_hold(&json!({"name": "none"}), "file.txt"));
    }
}
