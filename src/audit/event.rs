//! What one audit entry says, and where it landed once committed.

use serde::{Deserialize, Serialize};

/// One event: who did what, with which result. Optional fields are left out of the
/// line when empty, so the line is the canonical form of exactly these fields.
///
/// `Deserialize` lets the daemon keep an entry it cannot write yet as one compact JSON
/// string (`server::deferred`); absent fields read as empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    /// The client identity (certificate CN or SAN that matched the policy), the CLI's
    /// actor (`--audit-actor`, else `user@host`), or `-` when the peer never
    /// authenticated.
    pub who: String,
    /// What was asked: `sign`, `sign-raw`, `list-keys`, `connect`, `start`, `stop`, …
    /// from the daemon; the command as typed (`sign`, `key generate`, `ceremony
    /// sign`, `delegation rotate`, …) from the CLI.
    pub action: String,
    /// `signed`, `refused`, `error` or `ok`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP status the daemon answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// Daemon, OIDC clients: the token's issuer and subject (as claimed, for a token
    /// that was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Daemon, OIDC clients: the claims the policy entry matched, with the token's values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<std::collections::BTreeMap<String, String>>,
    /// `cli` for entries of CLI commands; absent for the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// CLI: the operating-system user (name) that ran the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// CLI: that user's numeric id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// CLI: the machine's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// CLI: the file (metadata, ceremony folder, key file) the command changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// CLI: the key's URI (any `pin-value` redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_uri: Option<String>,
    /// CLI: what changed, in words (`added key … to role root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where a committed entry landed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: u64,
    /// The hash of this entry's line: the log's head right after it.
    pub hash: String,
}
