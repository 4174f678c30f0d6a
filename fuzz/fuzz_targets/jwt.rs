//! OIDC bearer tokens as `tufkey serve` reads them: the `Authorization` header, the
//! token's header and claims, the algorithm allowlist, the key in a fixed JWKS (the RSA
//! and P-256 test keys in fuzz/fixtures/jwt), the signature, `aud` and the times at a fixed
//! clock, then the `[[clients]]` claims policy and the audit entry.
//!
//! Three kinds of input, so that the fuzzer gets past the signature check:
//! - `sign ALG KID KEY` and `name=value` lines: the target builds the claims (a value
//!   `@+600` is the fixed clock plus 600 s, `@-60.5` a fractional time; JSON values are
//!   JSON, the rest strings), signs them with the fixture key KEY (`rsa` or `ec`) under a
//!   header saying ALG and KID (`-`: none) and sends `Bearer <token>`;
//! - `glob`, a pattern line and a text: the policy's glob against a reference matcher;
//! - anything else: the header value as it is (`Bearer eyJ…`).
//!
//! Checked beyond "no panic": a token is accepted only if its issuer is trusted, its
//! audience is this signer's, its times hold at the fixed clock (and the expiry kept for
//! replays is its `exp`), and, for built tokens, the header's algorithm is the signing
//! key's and allowed and its `kid` is that key's; the policy entry chosen is the first one
//! whose every claim matches by a reference glob, and none when none does.
#![no_main]
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use tufkey::server::config::ClientPolicy;
use tufkey::server::identity::Identity;
use tufkey::server::oidc::claims;
use tufkey::server::oidc::config::{ClientMatch, IssuerConfig, KeysFrom, OidcConfig};
use tufkey::server::oidc::replay::Replay;
use tufkey::server::oidc::Oidc;

/// The fixed clock: 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GITLAB: &str = "https://gitlab.com";
const AUDIENCE: &str = "https://signer.example";

struct World {
    oidc: Oidc,
    clients: Vec<ClientPolicy>,
    rsa: EncodingKey,
    ec: EncodingKey,
}

fn fixed_now() -> u64 {
    NOW
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt/jwks.json");
        let issuer = |issuer: &str, algorithms: Vec<Algorithm>| IssuerConfig {
            issuer: issuer.into(),
            audience: AUDIENCE.into(),
            algorithms,
            keys: KeysFrom::File(jwks.into()),
            fetch_timeout: Duration::from_secs(1),
            // An unknown `kid` re-reads the JWKS once, then not for an hour.
            refetch_interval: Duration::from_secs(3600),
            single_use: false,
            line: 1,
        };
        let cfg = OidcConfig {
            clock_skew: Duration::from_secs(SKEW),
            issuers: vec![
                issuer(GITHUB, vec![Algorithm::RS256, Algorithm::ES256]),
                issuer(GITLAB, vec![Algorithm::RS256]),
            ],
        };
        let oidc = match Oidc::new(&cfg, Replay::memory()) {
            Ok(Some(o)) => o.with_clock(fixed_now),
            Ok(None) => panic!("no issuers"),
            Err((_, e)) => panic!("the fixture JWKS does not load: {e}"),
        };
        let client = |identity: &str, oidc: Option<(&str, &[(&str, &str)])>| ClientPolicy {
            identity: identity.into(),
            oidc: oidc.map(|(issuer, claims)| ClientMatch {
                issuer: issuer.into(),
                claims: claims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            line: 1,
            keys: Vec::new(),
            repositories: vec!["acme".into()],
            roles: vec!["targets".into()],
            max_expiry: Duration::from_secs(86_400),
            role_expiry: Vec::new(),
            rate: None,
            raw: false,
        };
        let clients = vec![
            // A certificate client whose name a token's subject could copy.
            client("repo:acme/app:environment:release", None),
            client(
                "acme-release",
                Some((
                    GITHUB,
                    &[
                        ("repository", "acme/app"),
                        ("repository_id", "42"),
                        ("ref", "refs/tags/v*"),
                        ("environment", "release"),
                    ],
                )),
            ),
            client(
                "acme-main",
                Some((
                    GITHUB,
                    &[
                        ("repository_owner", "acme"),
                        ("ref", "refs/heads/main"),
                        (
                            "job_workflow_ref",
                            "acme/*/.github/workflows/*.yml@refs/heads/*",
                        ),
                    ],
                )),
            ),
            client(
                "gitlab-prod",
                Some((
                    GITLAB,
                    &[
                        ("project_path", "group/*project"),
                        ("ref_protected", "true"),
                        ("ref", "v*.*.*"),
                    ],
                )),
            ),
        ];
        let der = |name: &str| {
            let path = format!("{}/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        World {
            oidc,
            clients,
            // PKCS#1 and PKCS#8 DER, as jsonwebtoken reads them without its PEM feature.
            rsa: EncodingKey::from_rsa_der(&der("rsa.der")),
            ec: EncodingKey::from_ec_der(&der("ec.der")),
        }
    })
}

/// `*` is any run of characters, everything else itself: a plain dynamic-programming
/// matcher to hold `claims::glob` against.
fn reference_glob(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let mut ok = vec![false; t.len() + 1];
    ok[0] = true;
    for pc in pattern.chars() {
        if pc == '*' {
            for j in 1..=t.len() {
                ok[j] = ok[j] || ok[j - 1];
            }
        } else {
            for j in (1..=t.len()).rev() {
                ok[j] = ok[j - 1] && t[j - 1] == pc;
            }
            ok[0] = false;
        }
    }
    ok[t.len()]
}

/// A NumericDate as RFC 7519 means it: non-negative seconds, possibly fractional.
fn reference_date(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// The text a policy compares for a claim: strings, numbers and booleans.
fn reference_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a built token was made of.
struct Built {
    alg: String,
    kid: Option<String>,
    key: &'static str,
}

/// `@+600` and `@-60.5` relative to the fixed clock; JSON as JSON; else a string.
fn claim_value(text: &str) -> Value {
    if let Some(delta) = text.strip_prefix('@') {
        if let Ok(d) = delta.parse::<f64>() {
            let t = NOW as f64 + d;
            return if delta.contains(['.', 'e', 'E']) {
                json!(t)
            } else if t >= 0.0 {
                json!(t as u64)
            } else {
                json!(t as i64)
            };
        }
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A token built from `sign ALG KID KEY` and `name=value` lines, signed by a fixture key.
fn build(text: &str) -> Option<(String, Built)> {
    let mut lines = text.lines();
    let mut first = lines.next()?.strip_prefix("sign")?.split_whitespace();
    let alg = first.next().unwrap_or("ES256").to_string();
    let kid = first.next().filter(|k| *k != "-").map(str::to_string);
    let key = if first.next() == Some("rsa") {
        "rsa"
    } else {
        "ec"
    };
    let mut claims = Map::new();
    for line in lines {
        if let Some((name, value)) = line.split_once('=') {
            claims.insert(name.to_string(), claim_value(value));
        }
    }
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(k) = &kid {
        header["kid"] = json!(k);
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
    );
    let w = world();
    let (enc, signing) = match key {
        "rsa" => (&w.rsa, Algorithm::RS256),
        _ => (&w.ec, Algorithm::ES256),
    };
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), enc, signing).ok()?;
    Some((format!("{input}.{sig}"), Built { alg, kid, key }))
}

fn check_accepted(token_claims: &Map<String, Value>, issuer: &str, expires: u64) {
    let aud_ok = match token_claims.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(
        aud_ok,
        "accepted a token for another audience: {token_claims:?}"
    );
    assert!(
        [GITHUB, GITLAB].contains(&issuer),
        "accepted issuer {issuer}"
    );
    let exp = reference_date(token_claims.get("exp"));
    assert!(
        exp.is_some_and(|e| e + SKEW >= NOW),
        "accepted an expired token or one without a numeric exp: {token_claims:?}"
    );
    assert_eq!(
        Some(expires),
        exp,
        "the expiry kept for replays is not the token's exp"
    );
    if let Some(nbf) = token_claims.get("nbf").filter(|v| !v.is_null()) {
        assert!(
            reference_date(Some(nbf)).is_some_and(|n| n <= NOW + SKEW),
            "accepted a token before its nbf: {token_claims:?}"
        );
    }
    assert!(
        reference_date(token_claims.get("iat")).is_some_and(|i| i <= NOW + SKEW),
        "accepted a token without iat, or issued in the future: {token_claims:?}"
    );
}

/// The first `[[clients]]` entry whose issuer and every claim match, by the reference glob.
fn reference_policy<'a>(
    clients: &'a [ClientPolicy],
    issuer: &str,
    c: &Map<String, Value>,
) -> Option<&'a str> {
    clients
        .iter()
        .find(|p| {
            p.oidc.as_ref().is_some_and(|m| {
                m.issuer == issuer
                    && m.claims.iter().all(|(name, pattern)| {
                        c.get(name)
                            .and_then(reference_text)
                            .is_some_and(|t| reference_glob(pattern, &t))
                    })
            })
        })
        .map(|p| p.identity.as_str())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(rest) = text.strip_prefix("glob\n") {
        let (pattern, subject) = rest.split_once('\n').unwrap_or((rest, ""));
        assert_eq!(
            claims::glob(pattern, subject),
            reference_glob(pattern, subject),
            "glob {pattern:?} on {subject:?}"
        );
        return;
    }
    let w = world();
    let (header, built) = match build(text) {
        Some((token, b)) => (format!("Bearer {token}"), Some(b)),
        None => (text.to_string(), None),
    };
    let out = tufkey::fuzzing::oidc_request(&w.oidc, header.as_bytes(), &w.clients);
    match &out.identity {
        Identity::Token(v) => {
            check_accepted(&v.claims, &v.issuer, v.expires);
            if let Some(b) = &built {
                let signed_as = if b.key == "rsa" { "RS256" } else { "ES256" };
                assert_eq!(
                    b.alg, signed_as,
                    "accepted a token whose header names another algorithm than its key's"
                );
                if let Some(kid) = &b.kid {
                    assert_eq!(
                        kid.as_str(),
                        if b.key == "rsa" { "rsa-1" } else { "ec-1" },
                        "accepted a token whose kid names another key"
                    );
                }
                assert!(
                    !(v.issuer == GITLAB && b.alg != "RS256"),
                    "accepted an algorithm the issuer does not allow"
                );
            }
            let expected = reference_policy(&w.clients, &v.issuer, &v.claims);
            match (&out.authorized, expected) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "another policy entry was chosen"),
                (Err((403, "no-policy")), None) => {}
                (got, want) => panic!("policy: daemon {got:?}, reference {want:?}"),
            }
            assert_eq!(out.event.issuer.as_deref(), Some(v.issuer.as_str()));
        }
        Identity::Refused(_) => {
            assert!(out.authorized.is_err(), "a refused token was authorised");
            assert_eq!(out.event.who, "-", "a refused token named someone");
        }
        Identity::Certificate(_) => panic!("no certificate was presented"),
    }
});
