//! What one client may sign: its `[[clients]]` entry of `signer.toml`, parsed, and the
//! rules that read it (docs/signer.md, "Policy").
//!
//! Role names in `roles` (and in a key's `roles`) are exact names, `*` for any role, or
//! shell globs (`bins-*`, `bins-[0-9a-f][0-9a-f][0-9a-f]`, as Python's `fnmatch`) for
//! delegated roles such as python-tuf's succinct hashed bins `<prefix>-<hex>`. A glob
//! never covers a top-level role (`root`, `targets`, `snapshot`, `timestamp`): a
//! pattern written for 16,384 bins must not also let a client sign timestamps, so
//! those are always named exactly (a glob that would match one is refused at its line).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::oidc::config::{self as oidc, ClientMatch, OidcConfig};
use super::rate::{parse_rate, Rate};
use crate::tuf::paths::fnmatch;

/// Top-level role names: never covered by a glob.
pub const TOP_LEVEL: &[&str] = &["root", "targets", "snapshot", "timestamp"];

/// What one client identity may do.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    /// Matched against the certificate's subject CN and its DNS, URI and e-mail SANs;
    /// for an OIDC entry only its name (default: what it matches).
    pub identity: String,
    /// Set: the entry matches OIDC tokens of this issuer with these claims, and no
    /// certificate.
    pub oidc: Option<ClientMatch>,
    pub line: usize,
    /// Key ids (64 hex digits, lower case).
    pub keys: Vec<String>,
    /// Repository names; `*` allows any.
    pub repositories: Vec<String>,
    /// Role names or patterns ([`role_matches`]); `*` allows any.
    pub roles: Vec<String>,
    /// The farthest in the future an `expires` may be, for roles without their own.
    pub max_expiry: Duration,
    /// `role_max_expiry`: (role name or pattern, limit); bins live for months while a
    /// timestamp lives for a day, and one client may sign both.
    pub role_expiry: Vec<(String, Duration)>,
    /// Requests per period, as a token bucket (burst = `per`'s count).
    pub rate: Option<Rate>,
    /// Whether raw-bytes signing (`/v1/sign-raw`) is allowed with these keys.
    pub raw: bool,
}

impl ClientPolicy {
    pub fn allows_repository(&self, r: &str) -> bool {
        self.repositories.iter().any(|x| x == "*" || x == r)
    }
    pub fn allows_role(&self, r: &str) -> bool {
        self.roles.iter().any(|x| role_matches(x, r))
    }
    pub fn allows_key(&self, k: &str) -> bool {
        self.keys.iter().any(|x| x == k)
    }

    /// The expiry limit for `role` and the `role_max_expiry` entry it came from: the
    /// entry naming the role exactly, else the longest (most specific) pattern that
    /// covers it, else `max_expiry` (`None`).
    pub fn max_expiry_for(&self, role: &str) -> (Duration, Option<&str>) {
        if let Some((p, d)) = self.role_expiry.iter().find(|(p, _)| p == role) {
            return (*d, Some(p));
        }
        self.role_expiry
            .iter()
            .filter(|(p, _)| role_matches(p, role))
            .max_by_key(|(p, _)| p.len())
            .map_or((self.max_expiry, None), |(p, d)| (*d, Some(p.as_str())))
    }
}

/// Whether the policy entry `pattern` covers `role`: `*` covers every role, a name
/// itself, and a glob every delegated role it matches (never a top-level one).
pub fn role_matches(pattern: &str, role: &str) -> bool {
    pattern == "*"
        || pattern == role
        || (is_glob(pattern) && !TOP_LEVEL.contains(&role) && fnmatch(role, pattern))
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Why `pattern` cannot be a role entry, if it cannot: empty, or a glob other than `*`
/// that would cover a top-level role.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("an empty role name".into());
    }
    if pattern == "*" || !is_glob(pattern) {
        return None;
    }
    TOP_LEVEL.iter().find(|t| fnmatch(t, pattern)).map(|t| {
        format!(
            "\"{pattern}\" would match top-level role `{t}`: globs cover delegated roles only; name top-level roles exactly"
        )
    })
}

/// A `[[clients]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default)]
    identity: Option<Spanned<String>>,
    #[serde(default)]
    oidc: Option<Spanned<oidc::RawClientOidc>>,
    keys: Spanned<Vec<String>>,
    repositories: Spanned<Vec<String>>,
    roles: Spanned<Vec<String>>,
    max_expiry: Spanned<String>,
    #[serde(default)]
    role_max_expiry: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    rate: Option<Spanned<String>>,
    #[serde(default)]
    raw: bool,
}

impl RawClient {
    /// Where `identity` is written, for the "two entries" error.
    pub(super) fn identity_at(&self) -> Option<usize> {
        self.identity.as_ref().map(|i| i.span().start)
    }
}

/// A config error inside one entry: (byte offset, reason).
type At = (usize, String);

/// One `[[clients]]` entry (starting at byte `at`) checked; `line_of` turns offsets into
/// line numbers, `duration` parses `7d`-style durations.
pub(super) fn parse(
    raw: &Spanned<RawClient>,
    oidc_cfg: &OidcConfig,
    line_of: &dyn Fn(usize) -> usize,
    duration: fn(&str) -> Option<Duration>,
) -> Result<ClientPolicy, At> {
    let at = raw.span().start;
    let c = raw.get_ref();
    let oidc = match &c.oidc {
        Some(o) => Some(oidc::client(o.get_ref(), oidc_cfg)?),
        None => None,
    };
    let (identity, id_at) = match (&c.identity, &oidc) {
        (Some(i), _) => (i.get_ref().trim().to_string(), i.span().start),
        (None, Some(m)) => (m.label(), at),
        (None, None) => return Err((at, "a [[clients]] entry needs `identity` (a certificate name) or `oidc = { issuer, claims }`".into())),
    };
    if identity.is_empty() {
        return Err((id_at, "empty identity".into()));
    }
    let mut key_ids = Vec::new();
    for k in c.keys.get_ref() {
        if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                c.keys.span().start,
                format!("\"{k}\" is not a key id (64 hex digits; `tufkey key show URI` prints it)"),
            ));
        }
        key_ids.push(k.to_ascii_lowercase());
    }
    for (list, what) in [(&c.repositories, "repositories"), (&c.roles, "roles")] {
        if list.get_ref().is_empty() || list.get_ref().iter().any(|s| s.is_empty()) {
            return Err((
                list.span().start,
                format!("{what} must list at least one non-empty name (or \"*\")"),
            ));
        }
    }
    if let Some(why) = c.roles.get_ref().iter().find_map(|r| pattern_problem(r)) {
        return Err((c.roles.span().start, why));
    }
    let limit = |s: &Spanned<String>, what: &str| {
        duration(s.get_ref())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                (
                    s.span().start,
                    format!(
                        "{what} = \"{}\" is not a duration such as \"1d\", \"12h\" or \"30d\"",
                        s.get_ref()
                    ),
                )
            })
    };
    let max_expiry = limit(&c.max_expiry, "max_expiry")?;
    let roles = c.roles.get_ref().clone();
    let mut role_expiry = Vec::new();
    for (pattern, d) in c.role_max_expiry.iter().flat_map(|t| t.get_ref()) {
        if let Some(why) = pattern_problem(pattern) {
            return Err((d.span().start, format!("role_max_expiry: {why}")));
        }
        // A pattern `roles` does not allow is a typo: its limit would never apply.
        let allowed = roles
            .iter()
            .any(|r| r == "*" || r == pattern || (!is_glob(pattern) && role_matches(r, pattern)));
        if !allowed {
            return Err((
                d.span().start,
                format!(
                    "role_max_expiry names \"{pattern}\", which `roles` ({}) does not allow; add it to `roles` or fix the name",
                    roles.join(", ")
                ),
            ));
        }
        role_expiry.push((
            pattern.clone(),
            limit(d, &format!("role_max_expiry.\"{pattern}\""))?,
        ));
    }
    let rate = match &c.rate {
        None => None,
        Some(r) => Some(parse_rate(r.get_ref()).ok_or_else(|| {
            (
                r.span().start,
                format!(
                    "rate = \"{}\": give requests per period such as \"60/min\", \"10/s\" or \"1000/h\"",
                    r.get_ref()
                ),
            )
        })?),
    };
    Ok(ClientPolicy {
        identity,
        oidc,
        line: line_of(at),
        keys: key_ids,
        repositories: c.repositories.get_ref().clone(),
        roles,
        max_expiry,
        role_expiry,
        rate,
        raw: c.raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(roles: &[&str], role_expiry: &[(&str, u64)]) -> ClientPolicy {
        ClientPolicy {
            identity: "ci".into(),
            oidc: None,
            line: 1,
            keys: vec![],
            repositories: vec!["*".into()],
            roles: roles.iter().map(|r| r.to_string()).collect(),
            max_expiry: Duration::from_secs(86400),
            role_expiry: role_expiry
                .iter()
                .map(|(p, d)| (p.to_string(), Duration::from_secs(*d)))
                .collect(),
            rate: None,
            raw: false,
        }
    }

    #[test]
    fn a_glob_covers_succinct_bin_names_but_never_a_top_level_role() {
        let p = policy(&["timestamp", "bins-*"], &[]);
        for bin in ["bins-0", "bins-3ff", "bins-0000"] {
            assert!(p.allows_role(bin), "{bin}");
        }
        assert!(p.allows_role("timestamp"));
        assert!(!p.allows_role("snapshot"));
        assert!(!p.allows_role("bin-0"));
        // A hex class pins the succinct form exactly.
        let exact = policy(&["bins-[0-9a-f][0-9a-f][0-9a-f]"], &[]);
        assert!(exact.allows_role("bins-3ff"));
        assert!(!exact.allows_role("bins-3fff") && !exact.allows_role("bins-xyz"));
        // `*` stays "any role", top-level ones included; other globs never cover them.
        assert!(role_matches("*", "root"));
        assert!(!role_matches("*s", "targets"));
        assert!(role_matches("*s", "bins"));
    }

    #[test]
    fn a_glob_that_would_match_a_top_level_role_is_a_config_error() {
        assert!(pattern_problem("bins-*").is_none());
        assert!(pattern_problem("*").is_none());
        assert!(pattern_problem("timestamp").is_none());
        let why = pattern_problem("t*").unwrap();
        assert!(
            why.contains("`targets`") && why.contains("exactly"),
            "{why}"
        );
        assert!(pattern_problem("").is_some());
    }

    #[test]
    fn the_expiry_limit_is_the_exact_entry_then_the_longest_pattern_then_max_expiry() {
        let p = policy(
            &["*"],
            &[
                ("bins-*", 90 * 86400),
                ("bins-0*", 30 * 86400),
                ("bins-07", 7),
            ],
        );
        assert_eq!(
            p.max_expiry_for("bins-07"),
            (Duration::from_secs(7), Some("bins-07"))
        );
        assert_eq!(
            p.max_expiry_for("bins-0a"),
            (Duration::from_secs(30 * 86400), Some("bins-0*"))
        );
        assert_eq!(
            p.max_expiry_for("bins-ff"),
            (Duration::from_secs(90 * 86400), Some("bins-*"))
        );
        assert_eq!(
            p.max_expiry_for("timestamp"),
            (Duration::from_secs(86400), None)
        );
    }
}
