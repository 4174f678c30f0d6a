//! The OIDC parts of `signer.toml`: `[oidc]` with its `[[oidc.issuers]]`, and the
//! `oidc = { issuer, claims }` of a `[[clients]]` entry. `server::config` reads the
//! TOML and hands these parts here; errors come back as (offset, reason) so they are
//! reported at their line like every other config error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use toml::Spanned;

/// The algorithms a token may be signed with. `none`, HMAC (a shared secret, which a
/// public JWKS cannot be) and everything else are refused whatever the config says.
pub const SUPPORTED: &[(&str, Algorithm)] =
    &[("RS256", Algorithm::RS256), ("ES256", Algorithm::ES256)];

/// A supported algorithm by its JOSE name (`RS256`, `ES256`).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The largest bearer token accepted. GitHub's and GitLab's are 1–2 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// How far the signer's and the issuer's clocks may disagree, by default and at most.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// How long one discovery or JWKS fetch may take, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often, by default, an unknown `kid` may make the keys be fetched again: a stream
/// of tokens with made-up key ids cannot make the signer hammer the issuer.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// `[oidc]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    #[serde(default)]
    clock_skew: Option<Spanned<String>>,
    #[serde(default)]
    issuers: Vec<Spanned<RawIssuer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: Spanned<String>,
    #[serde(default)]
    audience: Option<Spanned<String>>,
    #[serde(default)]
    algorithms: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
    #[serde(default)]
    fetch_timeout: Option<Spanned<String>>,
    #[serde(default)]
    refetch_interval: Option<Spanned<String>>,
    #[serde(default)]
    single_use: bool,
}

/// `oidc = { issuer = "…", claims = { … } }` in a `[[clients]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientOidc {
    issuer: Spanned<String>,
    claims: Spanned<BTreeMap<String, toml::Value>>,
}

/// The trusted issuers and the clock skew every token check allows.
#[derive(Debug, Clone, Default)]
pub struct OidcConfig {
    pub clock_skew: Duration,
    pub issuers: Vec<IssuerConfig>,
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeysFrom {
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`, over HTTPS trusting
    /// `ca` alone when given, else the system roots.
    Discovery { ca: Option<PathBuf> },
    /// A JWKS file (air-gapped signers): read at start and again on an unknown `kid`.
    File(PathBuf),
}

/// One `[[oidc.issuers]]` entry.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exactly the `iss` its tokens carry.
    pub issuer: String,
    /// Exactly the `aud` its tokens must carry for this signer.
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeysFrom,
    pub fetch_timeout: Duration,
    /// An unknown `kid` makes the keys be fetched again at most this often.
    pub refetch_interval: Duration,
    /// Each `jti` is accepted once (remembered until the token expires).
    pub single_use: bool,
    pub line: usize,
}

/// What a `[[clients]]` entry asks of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMatch {
    pub issuer: String,
    /// Claim name → exact value or `*` glob.
    pub claims: BTreeMap<String, String>,
}

impl ClientMatch {
    /// The label of an entry that has no `identity`: what it matches, in one line.
    pub fn label(&self) -> String {
        let claims: Vec<String> = self
            .claims
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {}", self.issuer, claims.join(","))
    }
}

/// A config problem at a byte offset of the file.
pub type Problem = (usize, String);

/// How `server::config` reads the parts shared with the rest of the file (passed in,
/// so this file does not import it back).
pub struct Reader<'a> {
    /// Relative paths are from here (the config file's folder).
    pub base: &'a Path,
    /// A byte offset's line number.
    pub line_of: &'a dyn Fn(usize) -> usize,
    /// `30s`, `5m`, … as every duration of the file.
    pub duration: fn(&str) -> Option<Duration>,
}

/// Reads `[oidc]`.
pub fn issuers(raw: Option<&RawOidc>, r: &Reader<'_>) -> Result<OidcConfig, Problem> {
    let base = r.base;
    let Some(raw) = raw else {
        return Ok(OidcConfig::default());
    };
    let duration = |s: &Spanned<String>, max: Duration| -> Result<Duration, Problem> {
        (r.duration)(s.get_ref())
            .filter(|d| *d <= max && !d.is_zero())
            .ok_or_else(|| {
                (
                    s.span().start,
                    format!(
                        "\"{}\": give a duration from 1s to {}s, such as \"30s\"",
                        s.get_ref(),
                        max.as_secs()
                    ),
                )
            })
    };
    let clock_skew = match &raw.clock_skew {
        Some(s) => duration(s, MAX_SKEW)?,
        None => DEFAULT_SKEW,
    };
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for entry in &raw.issuers {
        let at = entry.span().start;
        let e = entry.get_ref();
        let issuer = e.issuer.get_ref().trim().trim_end_matches('/').to_string();
        if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
            return Err((
                e.issuer.span().start,
                format!("issuer = \"{issuer}\": an OIDC issuer is an https:// URL, exactly as its tokens' `iss` says"),
            ));
        }
        if issuers.iter().any(|i| i.issuer == issuer) {
            return Err((
                e.issuer.span().start,
                format!("issuer {issuer} is listed twice; merge the entries"),
            ));
        }
        let audience = match &e.audience {
            Some(a) if !a.get_ref().trim().is_empty() => a.get_ref().trim().to_string(),
            Some(a) => return Err((a.span().start, "empty audience".into())),
            None => {
                return Err((
                    at,
                    format!("issuer {issuer}: `audience` is required (the `aud` your pipelines request for this signer, e.g. its URL): a token minted for another service must not work here"),
                ))
            }
        };
        let algorithms = match &e.algorithms {
            None => SUPPORTED.iter().map(|(_, a)| *a).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for name in list.get_ref() {
                    let Some(alg) = algorithm(name) else {
                        let names: Vec<&str> = SUPPORTED.iter().map(|(n, _)| *n).collect();
                        let why = format!(
                            "algorithm \"{name}\" is not accepted: give some of {} (`none` and HMAC are never accepted)",
                            names.join(", ")
                        );
                        return Err((list.span().start, why));
                    };
                    out.push(alg);
                }
                if out.is_empty() {
                    return Err((
                        list.span().start,
                        "algorithms must list at least one algorithm (or leave it out)".into(),
                    ));
                }
                out
            }
        };
        let path = |s: &Spanned<String>, what: &str| -> Result<PathBuf, Problem> {
            let p = base.join(s.get_ref());
            if s.get_ref().is_empty() || !p.is_file() {
                return Err((
                    s.span().start,
                    format!("{what} {} does not exist or is not a file", p.display()),
                ));
            }
            Ok(p)
        };
        let keys = match (&e.jwks_file, &e.ca) {
            (Some(_), Some(ca)) => return Err((
                ca.span().start,
                "`ca` is for fetching over HTTPS; with `jwks_file` nothing is fetched: remove one"
                    .into(),
            )),
            (Some(f), None) => KeysFrom::File(path(f, "JWKS file")?),
            (None, ca) => KeysFrom::Discovery {
                ca: ca.as_ref().map(|c| path(c, "CA file")).transpose()?,
            },
        };
        let fetch_timeout = match &e.fetch_timeout {
            Some(s) => duration(s, Duration::from_secs(60))?,
            None => DEFAULT_FETCH_TIMEOUT,
        };
        let refetch_interval = match &e.refetch_interval {
            Some(s) => duration(s, Duration::from_secs(3600))?,
            None => DEFAULT_REFETCH_INTERVAL,
        };
        issuers.push(IssuerConfig {
            issuer,
            audience,
            algorithms,
            keys,
            fetch_timeout,
            refetch_interval,
            single_use: e.single_use,
            line: (r.line_of)(at),
        });
    }
    Ok(OidcConfig {
        clock_skew,
        issuers,
    })
}

/// Reads a client entry's `oidc = {…}` against the configured issuers.
pub fn client(raw: &RawClientOidc, oidc: &OidcConfig) -> Result<ClientMatch, Problem> {
    let issuer = raw
        .issuer
        .get_ref()
        .trim()
        .trim_end_matches('/')
        .to_string();
    if !oidc.issuers.iter().any(|i| i.issuer == issuer) {
        return Err((
            raw.issuer.span().start,
            format!("issuer {issuer} is not in [[oidc.issuers]]; add it there (with its audience) first"),
        ));
    }
    let at = raw.claims.span().start;
    let mut claims = BTreeMap::new();
    for (name, value) in raw.claims.get_ref() {
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err((
                    at,
                    format!("claim {name}: give a string (exact, or with * globs)"),
                ));
            }
        };
        if value.is_empty() {
            return Err((
                at,
                format!("claim {name} is empty; give its value or \"*\""),
            ));
        }
        claims.insert(name.clone(), value);
    }
    // A GitHub or GitLab issuer signs tokens for every repository on the service: an
    // entry that pins nothing would give its rights to all of them.
    if claims.values().all(|v| v.chars().all(|c| c == '*')) {
        return Err((
            at,
            "claims must pin at least one claim to a value (e.g. repository_id, or project_path): the issuer signs tokens for every pipeline on its service".into(),
        ));
    }
    Ok(ClientMatch { issuer, claims })
}
