//! Why the daemon could not start (or stopped badly): one error for every part of it,
//! in a file of its own so that the parts need not import the daemon's entry point.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::config::ConfigError;
use super::store::StoreError;
use crate::audit::AuditError;
use crate::keys::KeyError;

/// Why the daemon could not start (or stopped badly).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("state: {0}")]
    State(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}:{line}: cannot open key {uri}: {err}", config.display())]
    Key {
        config: PathBuf,
        line: usize,
        uri: String,
        err: Box<KeyError>,
    },
    #[error("{}:{line}: {reason}", config.display())]
    Policy {
        config: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot listen on {addr}: {err}")]
    Listen {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("{0}")]
    Runtime(String),
}
