//! OIDC workload identity: a CI job's own short-lived token (GitHub Actions, GitLab…)
//! authenticates it to the signer, so the pipeline holds no secret at all.
//!
//! - [`config`]: `[[oidc.issuers]]` and the `oidc = {…}` of a `[[clients]]` entry;
//! - [`jwks`]: each issuer's keys, by discovery over HTTPS or from a file, cached;
//! - [`token`]: one token checked (signature, `iss`, `aud`, `exp`, `nbf`, `iat`);
//! - [`claims`]: a verified token matched against the policy entries;
//! - [`replay`]: single-use token ids, in memory or in PostgreSQL for replicas;
//! - [`error`]: why a token was refused, with its HTTP status and reason code.
//!
//! JWT and JWK handling is `jsonwebtoken`'s (docs/signer.md says why); this module
//! only chooses the issuer and key, and adds what that library leaves out (`iat`,
//! `jti`, the key cache).

pub mod claims;
pub mod config;
pub mod error;
pub mod jwks;
pub mod replay;
pub mod token;

pub use error::{AuthError, AuthFailure};
pub use token::Verified;

use config::OidcConfig;
use jwks::IssuerKeys;
use replay::Replay;

/// The trusted issuers, their keys, and the used token ids.
pub struct Oidc {
    issuers: Vec<IssuerKeys>,
    skew: u64,
    replay: Replay,
    /// Seconds since the epoch that token times are checked against.
    clock: fn() -> u64,
}

impl Oidc {
    /// The verifier for `cfg` (`None` when no issuer is configured), remembering
    /// single-use token ids in `replay`. JWKS files are read now; nothing is fetched
    /// until the first token of an issuer arrives, so an issuer that is down does not
    /// stop the daemon. An error gives the issuer entry's config line.
    pub fn new(cfg: &OidcConfig, replay: Replay) -> Result<Option<Oidc>, (usize, String)> {
        if cfg.issuers.is_empty() {
            return Ok(None);
        }
        let issuers = cfg
            .issuers
            .iter()
            .map(|i| {
                IssuerKeys::new(i.clone())
                    .map_err(|e| (i.line, format!("issuer {}: {e}", i.issuer)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Oidc {
            issuers,
            skew: cfg.clock_skew.as_secs(),
            replay,
            clock: jsonwebtoken::get_current_timestamp,
        }))
    }

    /// The same verifier checking token times (`exp`, `nbf`, `iat`) against `clock`
    /// instead of the system clock, so that a token's outcome does not depend on when
    /// it is checked: the `jwt` fuzz target runs at a fixed moment.
    #[doc(hidden)]
    pub fn with_clock(self, clock: fn() -> u64) -> Oidc {
        Oidc { clock, ..self }
    }

    /// Checks a bearer token: signed by a trusted issuer's key, for this signer, valid
    /// now. Does not use up a single-use token ([`Oidc::use_once`] does).
    pub async fn verify(&self, token: &str) -> Result<Verified, AuthFailure> {
        token::verify(token, &self.issuers, self.skew, (self.clock)()).await
    }

    /// For an issuer with `single_use = true`: accepts the token's `jti` once, until the
    /// token expires. Tokens of other issuers pass unchanged.
    pub async fn use_once(&self, t: &Verified) -> Result<(), AuthFailure> {
        let Some(issuer) = self.issuers.iter().find(|i| i.cfg.issuer == t.issuer) else {
            return Ok(());
        };
        if !issuer.cfg.single_use {
            return Ok(());
        }
        let failure = |error| AuthFailure {
            error,
            issuer: Some(t.issuer.clone()),
            subject: t.subject.clone(),
        };
        let Some(jti) = t.jti.as_deref().filter(|j| !j.is_empty()) else {
            return Err(failure(AuthError::Malformed(format!(
                "issuer {} is single use here, and the token has no `jti` (token id)",
                t.issuer
            ))));
        };
        let until = t.expires.saturating_add(self.skew);
        match self.replay.first_use(&t.issuer, jti, until).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(failure(AuthError::Replayed {
                issuer: t.issuer.clone(),
                jti: jti.to_string(),
            })),
            Err(e) => Err(failure(AuthError::StoreUnavailable(e))),
        }
    }

    /// Whether the issuer of `t` wants a fresh token for every signing request.
    pub fn single_use(&self, issuer: &str) -> bool {
        self.issuers
            .iter()
            .any(|i| i.cfg.issuer == issuer && i.cfg.single_use)
    }
}
