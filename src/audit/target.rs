//! An audit log named by the user (`--audit-log`, `TUFKEY_AUDIT_LOG`, `tufkey audit
//! verify LOG`): a file path or a `postgres://` URL, opened as the matching sink.

use std::path::PathBuf;

use super::error::AuditError;
use super::file::AuditLog;
use super::pg::PgSink;
use super::sink::Sink;
use crate::pg::{is_postgres_url, redact_url};

/// Which log a name means.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    File(PathBuf),
    /// The replicas' PostgreSQL store (the URL as given: it may hold a password).
    Postgres(String),
}

impl Target {
    /// The log `name` means; `None` for an empty name (no log).
    pub fn parse(name: &str) -> Option<Target> {
        if name.trim().is_empty() {
            None
        } else if is_postgres_url(name) {
            Some(Target::Postgres(name.to_string()))
        } else {
            Some(Target::File(PathBuf::from(name)))
        }
    }

    /// The log as it may be shown (a PostgreSQL password redacted).
    pub fn shown(&self) -> String {
        match self {
            Target::File(p) => p.display().to_string(),
            Target::Postgres(url) => redact_url(url),
        }
    }

    /// Opens the log to append to it next to a running daemon and other commands (see
    /// [`AuditLog::open_shared`] and [`PgSink::open_blocking`]); blocking, for the CLI.
    pub fn open_shared(&self) -> Result<Box<dyn Sink>, AuditError> {
        Ok(match self {
            Target::File(p) => Box::new(AuditLog::open_shared(p)?),
            Target::Postgres(url) => Box::new(PgSink::open_blocking(url)?),
        })
    }
}
