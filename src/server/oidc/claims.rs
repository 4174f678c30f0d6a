//! Matching a verified token's claims against a `[[clients]]` entry's `claims`: each
//! named claim must be present and equal the entry's value, where `*` in the value
//! stands for any run of characters (`refs/tags/v*`, `acme/*`). Nothing else is special,
//! so a value is never read as a regular expression.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::ClientMatch;

/// A claim's value as the text a policy compares: strings as they are, numbers and
/// booleans as JSON writes them (GitLab's `ref_protected` is `"true"`; some issuers
/// send ids as numbers). Arrays and objects match nothing.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `*` matches any run of characters (including `/` and nothing); the rest exactly.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The entry's claims as the token has them, if every one matches.
pub fn matches(
    m: &ClientMatch,
    issuer: &str,
    claims: &Map<String, Value>,
) -> Option<BTreeMap<String, String>> {
    if m.issuer != issuer {
        return None;
    }
    let mut matched = BTreeMap::new();
    for (name, pattern) in &m.claims {
        let value = claims.get(name).and_then(claim_text)?;
        if !glob(pattern, &value) {
            return None;
        }
        matched.insert(name.clone(), value);
    }
    Some(matched)
}

/// For a token that matched no entry: the token's values of every claim the issuer's
/// entries look at, so the audit entry shows what it asked with.
pub fn looked_at<'a>(
    entries: impl Iterator<Item = &'a ClientMatch>,
    issuer: &str,
    claims: &Map<String, Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in entries.filter(|m| m.issuer == issuer) {
        for name in m.claims.keys() {
            if let Some(v) = claims.get(name).and_then(claim_text) {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_runs_of_any_characters_and_the_rest_exactly() {
        assert!(glob("refs/heads/main", "refs/heads/main"));
        assert!(!glob("refs/heads/main", "refs/heads/main2"));
        assert!(glob("refs/tags/v*", "refs/tags/v1.2.3"));
        assert!(!glob("refs/tags/v*", "refs/heads/v1"));
        assert!(glob("acme/*", "acme/app/sub"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("*-release", "prod-release"));
        assert!(!glob("ab*ba", "aba"), "the two ends may not overlap");
        assert!(!glob("release.+", "release-x"), "no regular expressions");
    }

    #[test]
    fn every_claim_of_the_entry_must_match_and_numbers_compare_as_text() {
        let m = ClientMatch {
            issuer: "https://token.actions.githubusercontent.com".into(),
            claims: [
                ("repository".to_string(), "acme/app".to_string()),
                ("repository_id".to_string(), "42".to_string()),
                ("ref".to_string(), "refs/heads/*".to_string()),
            ]
            .into(),
        };
        let token = json!({"repository": "acme/app", "repository_id": 42, "ref": "refs/heads/main", "sub": "x"});
        let claims = token.as_object().unwrap();
        let got = matches(&m, "https://token.actions.githubusercontent.com", claims).unwrap();
        assert_eq!(got["repository_id"], "42");
        assert_eq!(got.len(), 3, "only the entry's claims are reported");
        assert!(matches(&m, "https://gitlab.com", claims).is_none());
        let renamed =
            json!({"repository": "acme/app", "repository_id": "43", "ref": "refs/heads/main"});
        assert!(matches(&m, &m.issuer, renamed.as_object().unwrap()).is_none());
        let missing = json!({"repository": "acme/app", "ref": "refs/heads/main"});
        assert!(matches(&m, &m.issuer, missing.as_object().unwrap()).is_none());
        let seen = looked_at([&m].into_iter(), &m.issuer, missing.as_object().unwrap());
        assert_eq!(seen.len(), 2);
    }
}
