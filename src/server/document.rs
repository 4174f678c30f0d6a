//! The checks one TUF document must pass before the daemon signs it: the same for
//! `POST /v1/sign` and for every document of `POST /v1/sign-batch`, so a batch can
//! never sign what a single request would be refused.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::config::ClientPolicy;
use super::policy::TOP_LEVEL;
use super::refusal::{bad_request, forbidden, state_unavailable, Refusal};
use super::served::ServedKey;
use super::store::ReserveError;
use crate::tuf::{Envelope, Metadata};

/// A parsed document: what is signed and what it claims to be.
pub struct Prepared {
    pub md: Envelope,
    /// The canonical bytes of `signed`: what the key signs.
    pub payload: Vec<u8>,
    pub payload_sha256: String,
    /// `signed._type`.
    pub role_type: String,
    /// The role asked for (default: `_type`).
    pub role: String,
}

/// Parses `metadata` as a TUF document and computes its canonical payload.
pub fn prepare(metadata: Value, role: Option<String>) -> Result<Prepared, Refusal> {
    let md = Metadata::from_value(metadata).map_err(not_tuf)?;
    prepared(Envelope::from_metadata(md), role)
}

/// As [`prepare`], from the document's JSON text: read from a tape where it can be,
/// with the same answers (`POST /v1/sign` reads its body this way).
pub fn prepare_text(metadata: Vec<u8>, role: Option<String>) -> Result<Prepared, Refusal> {
    prepared(Envelope::from_bytes(metadata).map_err(not_tuf)?, role)
}

fn not_tuf(e: crate::tuf::TufError) -> Refusal {
    bad_request(
        "malformed-metadata",
        format!("`metadata` is not a TUF document: {e}"),
    )
}

fn prepared(md: Envelope, role: Option<String>) -> Result<Prepared, Refusal> {
    let payload = md.payload().to_vec();
    let payload_sha256 = md.payload_sha256().to_string();
    let role_type = md.role_type().to_string();
    let role = role.unwrap_or_else(|| role_type.clone());
    Ok(Prepared {
        md,
        payload,
        payload_sha256,
        role_type,
        role,
    })
}

/// The repository asked for, or the client's only one.
pub fn repository(policy: &ClientPolicy, given: Option<String>) -> Result<String, Refusal> {
    match given {
        Some(repo) => Ok(repo),
        None => match policy.repositories.as_slice() {
            [only] if only != "*" => Ok(only.clone()),
            _ => Err(bad_request(
                "malformed",
                "give `repository`: this client may sign for more than one",
            )),
        },
    }
}

/// Role, repository, key and expiry rules for one document, in the order docs/signer.md
/// lists them; returns the version to claim.
pub fn check(
    policy: &ClientPolicy,
    key: &ServedKey,
    key_id: &str,
    repository: &str,
    doc: &Prepared,
    now: DateTime<Utc>,
) -> Result<u64, Refusal> {
    let role = doc.role.as_str();
    let expected_type = if TOP_LEVEL.contains(&role) {
        role
    } else {
        "targets"
    };
    if doc.role_type != expected_type {
        return Err(bad_request(
            "role-mismatch",
            format!(
                "role `{role}` is signed as _type `{expected_type}`, but the document is `{}`",
                doc.role_type
            ),
        ));
    }
    if !policy.allows_repository(repository) {
        return Err(forbidden(
            "repository-not-allowed",
            format!(
                "client {} may not sign for repository `{repository}`",
                policy.identity
            ),
        ));
    }
    if !policy.allows_role(role) {
        return Err(forbidden(
            "role-not-allowed",
            format!(
                "client {} may not sign role `{role}` (allowed: {})",
                policy.identity,
                policy.roles.join(", ")
            ),
        ));
    }
    if !key.config.allows_role(role) {
        return Err(forbidden(
            "role-not-allowed",
            format!("key {key_id} may not sign role `{role}`"),
        ));
    }
    let version = doc.md.version().filter(|v| *v > 0).ok_or_else(|| {
        bad_request(
            "malformed-metadata",
            "`signed.version` must be a positive integer",
        )
    })?;
    let expires = doc
        .md
        .expires()
        .ok_or_else(|| bad_request("malformed-metadata", "`signed.expires` is missing"))?;
    let expires = crate::tuf::time::parse_expires(&expires)
        .map_err(|e| bad_request("malformed-metadata", e.to_string()))?;
    if expires <= now {
        return Err(forbidden(
            "expired",
            format!("the document expired at {expires}; it would be useless signed"),
        ));
    }
    let (max_expiry, rule) = policy.max_expiry_for(role);
    let limit = chrono::Duration::from_std(max_expiry)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if expires > limit {
        let which = match rule {
            Some(p) => format!("role_max_expiry \"{p}\""),
            None => "max_expiry".into(),
        };
        return Err(forbidden(
            "expiry-beyond-policy",
            format!(
                "expires {} is beyond the {}s ({which}) that client {} may ask for role `{role}` (latest allowed now: {})",
                crate::tuf::time::format_expires(expires),
                max_expiry.as_secs(),
                policy.identity,
                crate::tuf::time::format_expires(limit)
            ),
        ));
    }
    Ok(version)
}

/// Why a version claim failed, as the answer says it.
pub fn reserve_refusal(e: ReserveError, repository: &str, role: &str, version: u64) -> Refusal {
    match e {
        ReserveError::NotIncreasing { last } => forbidden(
            "version-not-increasing",
            format!(
                "version {version} of {repository}/{role} is not above {last}, the last version this signer signed: a rollback or replay"
            ),
        ),
        ReserveError::OutOfRange(_) => bad_request("malformed-metadata", e.to_string()),
        ReserveError::Store(e) => state_unavailable(e),
    }
}
