//! The OIDC token a remote-key client sends (`Authorization: Bearer …`) so that a CI
//! job reaches the signer with no client certificate and no stored secret.
//!
//! Where it comes from, first match wins:
//!
//! 1. `TUFKEY_REMOTE_TOKEN`: the token itself (GitLab: an `id_tokens:` variable);
//! 2. `TUFKEY_REMOTE_TOKEN_FILE` (`--remote-token-file`): a file holding it, read again
//!    for every request, so whatever writes it may refresh it;
//! 3. inside GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL` and
//!    `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, present with `permissions: id-token: write`),
//!    when no client certificate is configured (a job that has one for this signer and
//!    `id-token: write` for something else keeps authenticating by certificate):
//!    fetched from GitHub for the audience `TUFKEY_REMOTE_AUDIENCE`, else the client
//!    config file's `audience`, else the signer's `https://host:port`. A fetched token is
//!    reused while it has more than a minute left, and fetched anew for every request
//!    when the signer says its tokens are single use.
//!
//! Tokens are [`Secret`]s: zeroized, never printed, never in an error message.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::error::RemoteError;
use crate::keys::secret::Secret;

pub const ENV_TOKEN: &str = "TUFKEY_REMOTE_TOKEN";
pub const ENV_TOKEN_FILE: &str = "TUFKEY_REMOTE_TOKEN_FILE";
pub const ENV_AUDIENCE: &str = "TUFKEY_REMOTE_AUDIENCE";
/// The CA for the token request, for a GitHub Enterprise Server with a private CA
/// (default: the system roots).
pub const ENV_TOKEN_CA: &str = "TUFKEY_REMOTE_TOKEN_CA";
/// Set by GitHub Actions in jobs with `permissions: id-token: write`.
pub const ACTIONS_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const ACTIONS_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// How long a token request to GitHub may take, and how large its answer may be.
const REQUEST_LIMITS: crate::https::Limits = crate::https::Limits {
    timeout: Duration::from_secs(30),
    max_bytes: 64 << 10,
};
/// A cached token with less than this left is fetched again.
const MIN_LIFETIME: u64 = 60;

/// Where the bearer token comes from.
pub enum TokenSource {
    Static(Secret),
    File(PathBuf),
    GitHubActions {
        url: String,
        request_token: Secret,
        audience: String,
        ca: Option<PathBuf>,
        /// The last token fetched and its `exp`.
        cached: Mutex<Option<(Secret, u64)>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("TokenSource::Static(***)"),
            TokenSource::File(p) => write!(f, "TokenSource::File({})", p.display()),
            TokenSource::GitHubActions { audience, .. } => {
                write!(f, "TokenSource::GitHubActions(audience {audience})")
            }
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment offers a token, so that a client certificate is optional.
pub fn configured() -> bool {
    [ENV_TOKEN, ENV_TOKEN_FILE, ACTIONS_URL]
        .iter()
        .any(|n| var(n).is_some())
}

impl TokenSource {
    /// The source the environment names for the signer at `base` (`audience`: the
    /// client config file's, if any), or `None`: no token is sent. With
    /// `has_certificate`, a GitHub Actions token is not fetched.
    pub fn from_env(
        base: &str,
        audience: Option<&str>,
        has_certificate: bool,
    ) -> Result<Option<TokenSource>, RemoteError> {
        if let Some(t) = var(ENV_TOKEN) {
            return Ok(Some(TokenSource::Static(Secret::new(t.trim().to_string()))));
        }
        if let Some(p) = var(ENV_TOKEN_FILE) {
            return Ok(Some(TokenSource::File(PathBuf::from(p))));
        }
        let Some(url) = var(ACTIONS_URL).filter(|_| !has_certificate) else {
            return Ok(None);
        };
        let request_token = var(ACTIONS_TOKEN).ok_or_else(|| {
            RemoteError::Setup(format!(
                "{ACTIONS_URL} is set but {ACTIONS_TOKEN} is not: give the job `permissions: id-token: write`"
            ))
        })?;
        let audience = var(ENV_AUDIENCE)
            .or_else(|| audience.map(str::to_string))
            .unwrap_or_else(|| base.trim_end_matches('/').to_string());
        Ok(Some(TokenSource::GitHubActions {
            url,
            request_token: Secret::new(request_token),
            audience,
            ca: var(ENV_TOKEN_CA).map(PathBuf::from),
            cached: Mutex::new(None),
        }))
    }

    /// The token for the next request; `fresh` fetches a new one where the source can
    /// (GitHub Actions), for signers that accept each token once.
    pub fn token(&self, rt: &tokio::runtime::Runtime, fresh: bool) -> Result<Secret, RemoteError> {
        match self {
            TokenSource::Static(t) => Ok(Secret::new(t.expose().to_string())),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| RemoteError::Material {
                    what: "OIDC token file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(RemoteError::Material {
                        what: "OIDC token file",
                        path: path.clone(),
                        reason: "the file is empty".into(),
                    });
                }
                Ok(Secret::new(t.to_string()))
            }
            TokenSource::GitHubActions {
                url,
                request_token,
                audience,
                ca,
                cached,
            } => {
                let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                if let Some((t, exp)) = cached.as_ref() {
                    if !fresh && *exp > now + MIN_LIFETIME {
                        return Ok(Secret::new(t.expose().to_string()));
                    }
                }
                let t = rt.block_on(fetch_actions_token(
                    url,
                    request_token,
                    audience,
                    ca.as_deref(),
                ))?;
                let exp = expiry(t.expose()).unwrap_or(now);
                *cached = Some((Secret::new(t.expose().to_string()), exp));
                Ok(t)
            }
        }
    }
}

/// GitHub's token request: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with the
/// request token as bearer; the answer is `{"value": "<JWT>"}`.
async fn fetch_actions_token(
    url: &str,
    request_token: &Secret,
    audience: &str,
    ca: Option<&std::path::Path>,
) -> Result<Secret, RemoteError> {
    let setup =
        |reason: String| RemoteError::Setup(format!("GitHub Actions OIDC token request: {reason}"));
    let tls = crate::https::client_config(ca).map_err(setup)?;
    let audience: String =
        percent_encoding::utf8_percent_encode(audience, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}audience={audience}");
    let auth = format!("Bearer {}", request_token.expose());
    let body = crate::https::get(&full, tls, &[("authorization", &auth)], REQUEST_LIMITS)
        .await
        // The URL carries no secret (the request token travels in the header).
        .map_err(|e| setup(e.to_string()))?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| setup(format!("the answer is not JSON: {e}")))?;
    v.get("value")
        .and_then(Value::as_str)
        .map(|t| Secret::new(t.to_string()))
        .ok_or_else(|| setup("the answer has no `value`".into()))
}

/// The `exp` of a JWT, read without checking anything (only to know when to fetch
/// another; the signer does the checking).
fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp").and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_expiry_is_read_unverified_and_a_token_is_never_printed() {
        let exp = 2_000_000_000u64;
        let payload = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"));
        assert_eq!(expiry(&format!("e30.{payload}.sig")), Some(exp));
        assert_eq!(expiry("not-a-jwt"), None);
        let s = TokenSource::Static(Secret::new("abc".into()));
        assert!(
            !format!("{s:?}").contains("abc"),
            "a token is never printed"
        );
    }
}
