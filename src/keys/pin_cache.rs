//! The opt-in PIN cache in the OS keyring (keyutils session keyring on Linux).
//!
//! Only PINs that just logged in successfully are stored; a cached PIN that a device
//! then refuses is deleted at once and never tried again. Where no keyring is usable
//! the cache says so once and everything falls back to the other PIN sources.

use std::sync::{Arc, Once, OnceLock};

use super::secret::Secret;

const SERVICE: &str = "tufkey";
static STORE: OnceLock<bool> = OnceLock::new();
static WARNED: Once = Once::new();

fn store_ready() -> bool {
    *STORE.get_or_init(|| {
        if std::env::var_os("TUFKEY_NO_KEYRING").is_some() {
            return false;
        }
        #[cfg(target_os = "linux")]
        {
            match linux_keyutils_keyring_store::Store::new() {
                Ok(s) => {
                    let s: Arc<keyring_core::CredentialStore> = s;
                    keyring_core::set_default_store(s);
                    true
                }
                Err(_) => false,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

fn warn_once(what: &str) {
    WARNED.call_once(|| {
        eprintln!("note: the OS keyring is not usable here ({what}); the PIN is not cached and will be asked for again");
    });
}

fn entry(key: &str) -> Option<keyring_core::Entry> {
    if !store_ready() {
        return None;
    }
    keyring_core::Entry::new(SERVICE, key).ok()
}

/// A cached PIN, if the keyring has one for `key`.
pub fn get(key: &str) -> Option<Secret> {
    entry(key)?.get_password().ok().map(Secret::new)
}

/// Stores a PIN that just worked. Reports once when no keyring is usable.
pub fn store(key: &str, pin: &Secret) {
    let Some(e) = entry(key) else {
        warn_once("no keyring store is available");
        return;
    };
    if let Err(err) = e.set_password(pin.expose()) {
        warn_once(&format!(
            "{err}; on a headless Linux box run tufkey inside `keyctl session -`"
        ));
    }
}

/// Deletes a cached PIN. Returns whether one was there.
pub fn forget(key: &str) -> Result<bool, String> {
    let Some(e) = entry(key) else {
        return Err("no OS keyring is usable here, so nothing is cached".into());
    };
    match e.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(err) => Err(err.to_string()),
    }
}
