//! Why a request's credentials were not accepted, with the HTTP status and reason code
//! beside the type (as `keys::error` maps key errors to outcomes): the API turns an
//! [`AuthError`] into its answer without knowing the cases.

/// Why a bearer token (or the lack of any credential) was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("no client certificate and no `Authorization: Bearer` token: present a certificate from the client CA, or an OIDC token from a configured issuer")]
    NoCredentials,
    #[error("the bearer token is {0} bytes, more than the {max} a token may have", max = super::config::MAX_TOKEN_BYTES)]
    TooLarge(usize),
    #[error("the bearer token is malformed: {0}")]
    Malformed(String),
    #[error("tokens from issuer {0:?} are not trusted by this signer (its [[oidc.issuers]] lists the issuers it trusts)")]
    UnknownIssuer(String),
    #[error("issuer {issuer}: tokens signed with `{alg}` are refused; this signer accepts {allowed} (never `none` or HMAC)")]
    AlgorithmNotAllowed {
        issuer: String,
        alg: String,
        allowed: String,
    },
    #[error("issuer {issuer}: no signing key {kid} in its JWKS (fetched again at most once per refetch interval): the token was not signed by the issuer")]
    UnknownKey { issuer: String, kid: String },
    #[error("issuer {issuer}: the token's signature does not verify with the issuer's key {kid}")]
    BadSignature { issuer: String, kid: String },
    #[error("issuer {issuer}: the token is not for this signer (its audience must be {expected:?}; request the token with that audience)")]
    WrongAudience { issuer: String, expected: String },
    #[error("issuer {issuer}: the token expired; request a fresh one")]
    Expired { issuer: String },
    #[error(
        "issuer {issuer}: the token is not valid yet (nbf is {nbf}, beyond the allowed clock skew)"
    )]
    NotYetValid { issuer: String, nbf: String },
    #[error("issuer {issuer}: the token was issued in the future (iat {iat}, beyond the allowed clock skew): check the clocks")]
    IssuedInFuture { issuer: String, iat: String },
    #[error("issuer {issuer}: token id (jti) {jti:?} was already used, and this issuer's tokens are single use: request a fresh token for every request")]
    Replayed { issuer: String, jti: String },
    #[error("cannot fetch the signing keys of issuer {issuer}, so its tokens cannot be checked now: {reason}")]
    JwksUnavailable { issuer: String, reason: String },
    #[error(
        "the signer's state store is unavailable, so single-use tokens cannot be checked: {0}"
    )]
    StoreUnavailable(String),
}

impl AuthError {
    /// The HTTP status: 401 for credentials that do not prove who the caller is, 503
    /// when the signer cannot check them now (nothing in the request needs fixing).
    pub fn status(&self) -> u16 {
        match self {
            AuthError::JwksUnavailable { .. } | AuthError::StoreUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// The `error` code of the JSON answer and the audit entry.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::NoCredentials => "no-credentials",
            AuthError::TooLarge(_) => "token-too-large",
            AuthError::Malformed(_) => "token-malformed",
            AuthError::UnknownIssuer(_) => "unknown-issuer",
            AuthError::AlgorithmNotAllowed { .. } => "algorithm-not-allowed",
            AuthError::UnknownKey { .. } => "unknown-key",
            AuthError::BadSignature { .. } => "bad-signature",
            AuthError::WrongAudience { .. } => "wrong-audience",
            AuthError::Expired { .. } => "token-expired",
            AuthError::NotYetValid { .. } => "token-not-yet-valid",
            AuthError::IssuedInFuture { .. } => "token-issued-in-future",
            AuthError::Replayed { .. } => "token-replayed",
            AuthError::JwksUnavailable { .. } => "jwks-unavailable",
            AuthError::StoreUnavailable(_) => "state-unavailable",
        }
    }

    /// Seconds after which a retry may succeed (503s only).
    pub fn retry_after(&self) -> Option<u64> {
        (self.status() == 503).then_some(5)
    }
}

/// A refused token and what it claimed about itself, unverified, for the audit entry.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub error: AuthError,
    /// The `iss` and `sub` the token claimed (not proven: the token was refused).
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

impl From<AuthError> for AuthFailure {
    fn from(error: AuthError) -> AuthFailure {
        AuthFailure {
            error,
            issuer: None,
            subject: None,
        }
    }
}
