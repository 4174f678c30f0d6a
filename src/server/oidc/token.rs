//! Checking one bearer token: which issuer it claims, whether that issuer signed it
//! with an allowed algorithm, and whether it is for this signer and valid now.
//!
//! The token is read unverified only to choose the issuer and the key (`iss`, `alg`,
//! `kid`); everything it proves is checked by `jsonwebtoken` (signature, `iss`, `aud`,
//! `exp`, `nbf`), plus `iat` here, which that library does not check.

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

/// Checks `token` against the trusted issuers, allowing `skew` seconds of clock
/// difference. The failure carries what the token claimed, for the audit entry.
pub async fn verify(
    token: &str,
    issuers: &[IssuerKeys],
    skew: u64,
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
    v.leeway = skew;
    v.validate_exp = true;
    v.validate_nbf = true;
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
                Some(ErrorKind::ExpiredSignature) => AuthError::Expired { issuer: name },
                Some(ErrorKind::ImmatureSignature) => AuthError::NotYetValid {
                    issuer: name,
                    nbf: time_claim(token, "nbf"),
                },
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
    let now = jsonwebtoken::get_current_timestamp();
    match claims.get("iat").map(Value::as_u64) {
        Some(Some(iat)) if iat > now + skew => {
            return Err(failure(AuthError::IssuedInFuture {
                issuer: name,
                iat: time_text(iat),
            }))
        }
        Some(Some(_)) => {}
        _ => {
            return Err(failure(AuthError::Malformed(
                "it has no numeric `iat` (issued-at) claim".into(),
            )))
        }
    }
    let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
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

/// A numeric claim of the (already decoded once) token as a UTC time, for messages.
fn time_claim(token: &str, name: &str) -> String {
    token
        .split('.')
        .nth(1)
        .and_then(|p| segment(p, "payload").ok())
        .and_then(|m| m.get(name).and_then(Value::as_u64))
        .map(time_text)
        .unwrap_or_else(|| "?".into())
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
