//! Checking one bearer token: which issuer it claims, whether that issuer signed it
//! with an allowed algorithm, and whether it is for this signer and valid now.
//!
//! The token is read unverified only to choose the issuer and the key (`iss`, `alg`,
//! `kid`); `jsonwebtoken` checks the signature, `iss` and `aud`. Its times (`exp`, `nbf`,
//! `iat`) are checked here against the caller's clock, each read as one NumericDate the
//! way `jsonwebtoken` reads `exp` (whole or fractional seconds), so the time the replay
//! cache keeps a single-use token is the time it stays valid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::config::{algorithm, MAX_TOKEN_BYTES};
use super::error::{AuthError, AuthFailure};
use super::jwks::IssuerKeys;

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub issuer: String,
    pub subject: Option<String>,
    pub claims: Map<String, Value>,
    /// Seconds since the epoch.
    pub expires: u64,
    pub jti: Option<String>,
}

/// What the token says about itself before anything is checked.
struct Peek {
    alg: String,
    kid: Option<String>,
    issuer: Option<String>,
    subject: Option<String>,
}

fn segment(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed(format!("its {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(AuthError::Malformed(format!(
            "its {what} is not a JSON object"
        ))),
    }
}

fn peek(token: &str) -> Result<Peek, AuthError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::Malformed(format!(
            "a JWT has three dot-separated parts, this has {}",
            parts.len()
        )));
    }
    let header = segment(parts[0], "header")?;
    let payload = segment(parts[1], "payload")?;
    let text =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Peek {
        alg: text(&header, "alg").unwrap_or_else(|| "(none given)".into()),
        kid: text(&header, "kid"),
        issuer: text(&payload, "iss"),
        subject: text(&payload, "sub"),
    })
}

/// A NumericDate claim (RFC 7519, 2): seconds since the epoch, possibly fractional, read
/// as `jsonwebtoken` reads `exp` (rounded; negative, infinite or too large is no date).
/// `null` counts as absent, as it does for `jsonwebtoken`.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    let not_a_date =
        || AuthError::Malformed(format!("its `{name}` claim is not a number of seconds"));
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                // In range and finite, so the cast neither saturates nor wraps.
                Ok(Some(f.round() as u64))
            }
            _ => Err(not_a_date()),
        },
    }
}

/// Checks `token` against the trusted issuers at time `now` (seconds since the epoch),
/// allowing `skew` seconds of clock difference. The failure carries what the token
/// claimed, for the audit entry.
pub async fn verify(
    token: &str,
    issuers: &[IssuerKeys],
    skew: u64,
    now: u64,
) -> Result<Verified, AuthFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge(token.len()).into());
    }
    let p = peek(token)?;
    let failure = |error: AuthError| AuthFailure {
        error,
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    };
    let claimed = p
        .issuer
        .clone()
        .ok_or_else(|| AuthError::Malformed("it has no `iss` claim".into()))?;
    let issuer = issuers
        .iter()
        .find(|i| i.cfg.issuer == claimed.trim_end_matches('/'))
        .ok_or_else(|| failure(AuthError::UnknownIssuer(claimed.clone())))?;
    let name = issuer.cfg.issuer.clone();
    let alg = algorithm(&p.alg)
        .filter(|a| issuer.cfg.algorithms.contains(a))
        .ok_or_else(|| {
            failure(AuthError::AlgorithmNotAllowed {
                issuer: name.clone(),
                alg: p.alg.clone(),
                allowed: issuer
                    .cfg
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })?;
    let keys = issuer
        .candidates(p.kid.as_deref(), alg)
        .await
        .map_err(failure)?;
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    // Times are checked below against `now`, not the library's own clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_issuer(&[&claimed]);
    v.set_audience(&[&issuer.cfg.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    let kid = p.kid.clone().unwrap_or_else(|| "(none named)".into());
    let mut last = None;
    let mut data = None;
    for k in &keys {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
            Ok(d) => {
                data = Some(d);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let claims = match (data, last) {
        (Some(d), _) => d.claims,
        (None, e) => {
            let kind = e.map(|e| e.into_kind());
            return Err(failure(match kind {
                Some(ErrorKind::InvalidAudience) => AuthError::WrongAudience {
                    issuer: name,
                    expected: issuer.cfg.audience.clone(),
                },
                Some(ErrorKind::InvalidIssuer) => AuthError::UnknownIssuer(claimed),
                Some(ErrorKind::MissingRequiredClaim(c)) => {
                    AuthError::Malformed(format!("it has no `{c}` claim"))
                }
                Some(ErrorKind::InvalidClaimFormat(c)) => {
                    AuthError::Malformed(format!("its `{c}` claim is not a number of seconds"))
                }
                Some(ErrorKind::InvalidAlgorithm) => AuthError::AlgorithmNotAllowed {
                    issuer: name,
                    alg: p.alg.clone(),
                    allowed: format!("{alg:?}"),
                },
                Some(ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_)) => {
                    AuthError::Malformed("it does not decode as a JWT".into())
                }
                _ => AuthError::BadSignature { issuer: name, kid },
            }));
        }
    };
    let date = |claim: &str| numeric_date(&claims, claim).map_err(failure);
    let Some(expires) = date("exp")? else {
        return Err(failure(AuthError::Malformed(
            "it has no `exp` claim".into(),
        )));
    };
    if expires.saturating_add(skew) < now {
        return Err(failure(AuthError::Expired { issuer: name }));
    }
    if let Some(nbf) = date("nbf")? {
        if nbf > now.saturating_add(skew) {
            return Err(failure(AuthError::NotYetValid {
                issuer: name,
                nbf: time_text(nbf),
            }));
        }
    }
    match date("iat") {
        Ok(Some(iat)) if iat > now.saturating_add(skew) => {
            return Err(failure(AuthError::IssuedInFuture {
                issuer: name,
                iat: time_text(iat),
            }))
        }
        Ok(Some(_)) => {}
        _ => {
            return Err(failure(AuthError::Malformed(
                "it has no numeric `iat` (issued-at) claim".into(),
            )))
        }
    }
    Ok(Verified {
        issuer: name,
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        jti: claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_string),
        expires,
        claims,
    })
}

fn time_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_three_base64url_json_parts() {
        assert!(matches!(peek("abc"), Err(AuthError::Malformed(_))));
        assert!(matches!(peek("a.b.c.d"), Err(AuthError::Malformed(_))));
        assert!(matches!(peek("!!.e30.x"), Err(AuthError::Malformed(_))));
        // {"alg":"none"} . {"iss":"https://i"} . (empty signature)
        let t = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"https://i","sub":"s"}"#)
        );
        let p = peek(&t).unwrap();
        assert_eq!(
            (p.alg.as_str(), p.issuer.as_deref(), p.subject.as_deref()),
            ("none", Some("https://i"), Some("s"))
        );
    }
}

/// Tokens signed by the committed test key (fuzz/fixtures/jwt, also the `jwt` fuzz
/// target's), checked at a fixed time.
#[cfg(test)]
mod time_tests {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::super::config::{IssuerConfig, KeysFrom};
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://token.actions.githubusercontent.com";
    const AUD: &str = "https://signer.example";

    fn issuer() -> IssuerKeys {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/jwt");
        IssuerKeys::new(IssuerConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            algorithms: vec![Algorithm::ES256],
            keys: KeysFrom::File(dir.join("jwks.json")),
            fetch_timeout: Duration::from_secs(1),
            refetch_interval: Duration::from_secs(60),
            single_use: true,
            line: 1,
        })
        .unwrap()
    }

    fn token(claims: Value) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/jwt");
        let key = EncodingKey::from_ec_der(&std::fs::read(dir.join("ec.der")).unwrap());
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn check(claims: Value) -> Result<Verified, AuthError> {
        let issuers = [issuer()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(verify(&token(claims), &issuers, 60, NOW))
            .map_err(|f| f.error)
    }

    #[test]
    fn a_fractional_exp_is_the_time_a_single_use_token_is_remembered_not_now() {
        // jsonwebtoken accepts a NumericDate with a fraction; the replay cache must then
        // keep the token id until that time, or the token could be replayed once its id
        // is swept while it is still valid.
        let exp = NOW + 3600;
        let v = check(
            json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": exp as f64 + 0.25, "jti": "j"}),
        )
        .unwrap();
        assert_eq!(v.expires, exp);
    }

    #[test]
    fn token_times_are_checked_against_the_given_clock_with_the_skew() {
        let at = |iat: u64, exp: u64, nbf: Option<u64>| {
            let mut c = json!({"iss": ISS, "aud": AUD, "iat": iat, "exp": exp});
            if let Some(n) = nbf {
                c["nbf"] = json!(n);
            }
            check(c)
        };
        assert!(at(NOW - 10, NOW + 10, Some(NOW - 10)).is_ok());
        assert!(at(NOW - 100, NOW - 59, None).is_ok(), "within the skew");
        assert!(matches!(
            at(NOW - 100, NOW - 61, None),
            Err(AuthError::Expired { .. })
        ));
        assert!(matches!(
            at(NOW, NOW + 600, Some(NOW + 61)),
            Err(AuthError::NotYetValid { .. })
        ));
        assert!(matches!(
            at(NOW + 61, NOW + 600, None),
            Err(AuthError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn a_time_claim_that_is_no_number_of_seconds_is_refused_as_malformed() {
        for bad in [json!("tomorrow"), json!(-5)] {
            let c = json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 60, "nbf": bad});
            assert!(
                matches!(check(c), Err(AuthError::Malformed(ref m)) if m.contains("`nbf`")),
                "nbf {bad}"
            );
        }
        // An array stops jsonwebtoken's own claim reader: malformed, in its words.
        let c = json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 60, "nbf": [1]});
        assert!(matches!(check(c), Err(AuthError::Malformed(_))));
        let no_iat = json!({"iss": ISS, "aud": AUD, "iat": "x", "exp": NOW + 60});
        assert!(matches!(check(no_iat), Err(AuthError::Malformed(ref m)) if m.contains("iat")));
    }
}
