//! One issuer's signing keys: fetched by OIDC discovery over HTTPS (or read from a
//! JWKS file), cached, and fetched again when a token names a key id the cache does
//! not have — at most once per `refetch_interval` (a minute by default), so a stream
//! of tokens with made-up key ids cannot make the signer hammer the issuer.
//!
//! Each issuer has its own lock, held across its fetch: requests for one issuer whose
//! endpoint hangs wait at most that issuer's `fetch_timeout`, and requests for every
//! other issuer do not wait at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::config::{IssuerConfig, KeysFrom};
use super::error::AuthError;
use crate::https;

/// A key set older than this is fetched again before use (keys an issuer removed stop
/// being trusted); if that fails the old set is kept.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// After a failed fetch, requests are answered 503 at once for this long instead of
/// each waiting for another fetch.
pub const FAILED_RETRY: Duration = Duration::from_secs(5);
/// The largest discovery document and JWKS accepted.
pub const MAX_DISCOVERY_BYTES: usize = 64 << 10;
pub const MAX_JWKS_BYTES: usize = 256 << 10;

/// A usable public key of the issuer.
#[derive(Clone)]
pub struct IssuerKey {
    pub kid: Option<String>,
    /// RS256 for RSA keys, ES256 for P-256 keys.
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The keys of one JWKS that can verify RS256 or ES256 signatures. Other keys (HMAC
/// `oct` keys above all, encryption keys, other curves) are left out, so nothing a
/// JWKS holds can ever be used as a shared secret.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<IssuerKey>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS (JSON): {e}"))?;
    let list = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS: no `keys` array")?;
    let mut out = Vec::new();
    for entry in list {
        // One key of a kind we do not know must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Some(stated) = jwk.common.key_algorithm {
            if format!("{stated:?}") != format!("{alg:?}") {
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(IssuerKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(out)
}

/// What [`IssuerKeys::refresh`] did.
enum Refresh {
    Done,
    Failed(String),
    /// A fetch was tried too recently.
    Skipped,
}

#[derive(Default)]
struct Cache {
    keys: Option<Arc<Vec<IssuerKey>>>,
    fetched: Option<Instant>,
    /// When the last fetch was tried and, if it failed, why.
    attempted: Option<(Instant, Option<String>)>,
}

/// One issuer's keys, fetched on demand.
pub struct IssuerKeys {
    pub cfg: IssuerConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    cache: tokio::sync::Mutex<Cache>,
}

impl IssuerKeys {
    /// Reads a JWKS file now (a broken file stops the daemon at start) or prepares the
    /// TLS settings for discovery.
    pub fn new(cfg: IssuerConfig) -> Result<IssuerKeys, String> {
        let mut cache = Cache::default();
        let tls = match &cfg.keys {
            KeysFrom::File(path) => {
                let keys = read_file(path)?;
                cache.keys = Some(Arc::new(keys));
                cache.fetched = Some(Instant::now());
                None
            }
            KeysFrom::Discovery { ca } => Some(https::client_config(ca.as_deref())?),
        };
        Ok(IssuerKeys {
            cfg,
            tls,
            cache: tokio::sync::Mutex::new(cache),
        })
    }

    /// The keys that may have signed a token with this `kid` and `alg`: the one with
    /// that key id, or every key of the algorithm when the token names none.
    pub async fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<IssuerKey>, AuthError> {
        let pick = |keys: &[IssuerKey]| -> Vec<IssuerKey> {
            keys.iter()
                .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
                .cloned()
                .collect()
        };
        let mut cache = self.cache.lock().await;
        let stale = cache.fetched.is_none_or(|t| t.elapsed() >= MAX_AGE);
        if stale {
            self.refresh(&mut cache, FAILED_RETRY).await;
        }
        let Some(keys) = cache.keys.clone() else {
            let reason = cache
                .attempted
                .as_ref()
                .and_then(|(_, e)| e.clone())
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(self.unavailable(reason));
        };
        let found = pick(&keys);
        if !found.is_empty() {
            return Ok(found);
        }
        // A key the cache does not know: the issuer may have rotated. Fetch again,
        // unless that was tried within the refetch interval.
        match self.refresh(&mut cache, self.cfg.refetch_interval).await {
            Refresh::Done => {
                if let Some(keys) = cache.keys.clone() {
                    let found = pick(&keys);
                    if !found.is_empty() {
                        return Ok(found);
                    }
                }
            }
            // The fetch that could have found the key failed: the token cannot be
            // checked now, which is not the caller's fault.
            Refresh::Failed(reason) => return Err(self.unavailable(reason)),
            Refresh::Skipped => {}
        }
        Err(AuthError::UnknownKey {
            issuer: self.cfg.issuer.clone(),
            kid: kid.unwrap_or("(none named)").to_string(),
        })
    }

    fn unavailable(&self, reason: String) -> AuthError {
        AuthError::JwksUnavailable {
            issuer: self.cfg.issuer.clone(),
            reason,
        }
    }

    /// Fetches the key set unless a fetch was tried within `interval`.
    async fn refresh(&self, cache: &mut Cache, interval: Duration) -> Refresh {
        if cache
            .attempted
            .as_ref()
            .is_some_and(|(t, _)| t.elapsed() < interval)
        {
            return Refresh::Skipped;
        }
        let fetched = match &self.cfg.keys {
            KeysFrom::File(path) => read_file(path),
            KeysFrom::Discovery { .. } => self.discover().await,
        };
        let now = Instant::now();
        match fetched {
            Ok(keys) => {
                cache.keys = Some(Arc::new(keys));
                cache.fetched = Some(now);
                cache.attempted = Some((now, None));
                Refresh::Done
            }
            Err(reason) => {
                eprintln!(
                    "tufkey serve: cannot fetch the keys of OIDC issuer {}: {reason}",
                    self.cfg.issuer
                );
                cache.attempted = Some((now, Some(reason.clone())));
                Refresh::Failed(reason)
            }
        }
    }

    /// Discovery document, then the JWKS it names, each bounded in time and size.
    async fn discover(&self) -> Result<Vec<IssuerKey>, String> {
        let Some(tls) = &self.tls else {
            return Err("no TLS settings for discovery".into());
        };
        let limits = |max_bytes| https::Limits {
            timeout: self.cfg.fetch_timeout,
            max_bytes,
        };
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer);
        let body = https::get(&url, tls.clone(), &[], limits(MAX_DISCOVERY_BYTES))
            .await
            .map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not a discovery document (JSON): {e}"))?;
        // OpenID Connect Discovery 1.0, section 4.3: the document's issuer must be the
        // one it was fetched for.
        let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if said.trim_end_matches('/') != self.cfg.issuer {
            return Err(format!(
                "{url}: the document is for issuer {said:?}, not {}",
                self.cfg.issuer
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://"))
            .ok_or_else(|| format!("{url}: no https:// `jwks_uri` in the discovery document"))?;
        let body = https::get(jwks_uri, tls.clone(), &[], limits(MAX_JWKS_BYTES))
            .await
            .map_err(|e| e.to_string())?;
        parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<IssuerKey>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "{}: larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    let keys = parse_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if keys.is_empty() {
        return Err(format!(
            "{}: no RSA or P-256 signing key in the JWKS",
            path.display()
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_and_p256_signing_keys_are_kept_and_hmac_keys_never() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "use": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "enc", "crv": "P-256", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "unknown"},
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        let kept: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(kept, vec![(Some("ec"), Algorithm::ES256)]);
        assert!(parse_jwks(b"{\"nokeys\": 1}").is_err());
    }
}
