//! The keys the daemon serves: opened once at start from the config's `[[keys]]`,
//! each with the role restriction of its entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::{Config, KeyConfig};
use super::error::ServerError;
use crate::keys::{PinPolicy, Signer};

/// A served key and the key-level role restriction from its `[[keys]]` entry.
pub struct ServedKey {
    pub signer: Arc<dyn Signer>,
    pub config: KeyConfig,
    /// Signed on the request's own thread (a PKCS#11 session or a `file:` key answers
    /// within milliseconds), not on the blocking pool (a YubiKey may wait for a touch):
    /// see `worker.rs`.
    pub inline: bool,
}

/// Opens every key of the config (PINs from pin-source or environment, never a
/// prompt) and checks that the policy names only keys that are served.
pub fn open_keys(cfg: &Config) -> Result<BTreeMap<String, ServedKey>, ServerError> {
    let pins = PinPolicy {
        force: false,
        remember: false,
        interactive: false,
    };
    let mut keys = BTreeMap::new();
    for k in &cfg.keys {
        let signer = crate::keys::open_signer(&k.uri, &pins).map_err(|err| ServerError::Key {
            config: cfg.path.clone(),
            line: k.line,
            uri: crate::keys::uri::redact(&k.uri),
            err: Box::new(err),
        })?;
        let id = signer.key_id().to_string();
        if keys.contains_key(&id) {
            return Err(ServerError::Policy {
                config: cfg.path.clone(),
                line: k.line,
                reason: format!("key {id} is served twice"),
            });
        }
        let inline = matches!(
            crate::keys::KeyUri::parse(&k.uri),
            Ok(crate::keys::KeyUri::Pkcs11(_) | crate::keys::KeyUri::File(_))
        );
        keys.insert(
            id,
            ServedKey {
                signer: Arc::from(signer),
                config: k.clone(),
                inline,
            },
        );
    }
    for (id, line) in cfg.policy_key_ids() {
        if !keys.contains_key(&id) {
            return Err(ServerError::Policy {
                config: cfg.path.clone(),
                line,
                reason: format!(
                    "the policy allows key {id}, which no [[keys]] entry serves (served: {})",
                    if keys.is_empty() {
                        "none".to_string()
                    } else {
                        keys.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            });
        }
    }
    Ok(keys)
}
