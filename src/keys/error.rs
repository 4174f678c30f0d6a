//! Errors of key backends. Each names the key by URI (PINs redacted) or the token by label.

use std::path::PathBuf;

use super::pkcs11::limits::{REINIT_BACKOFF_MAX, REINIT_INTERVAL};

/// What went wrong with a key or a device.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key URI `{uri}`: `{part}`: {reason}")]
    Uri {
        uri: String,
        part: String,
        reason: String,
    },
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("no PKCS#11 module given and none found (looked for {looked}); add ?module-path=/path/to/module.so to the URI or set TUFKEY_PKCS11_MODULE")]
    NoModule { looked: String },
    #[error("no token matches {uri}; tokens present: {present}")]
    NoToken { uri: String, present: String },
    #[error("{count} tokens match {uri} ({matches}); add serial= or slot-id= to pick one")]
    AmbiguousToken {
        uri: String,
        count: usize,
        matches: String,
    },
    #[error("no key matches {uri} on token \"{token}\"; keys there: {present}")]
    NoObject {
        uri: String,
        token: String,
        present: String,
    },
    #[error("{count} keys match {uri} on token \"{token}\" ({matches}); add id= (or a more specific object=) to pick one")]
    AmbiguousObject {
        uri: String,
        token: String,
        count: usize,
        matches: String,
    },
    #[error("key URI {uri} must name the new key with object=<label> (and optionally id=)")]
    NeedsObjectName { uri: String },
    #[error("a key matching {uri} already exists on token \"{token}\" ({existing}); choose another object= or id=, or delete it first")]
    ObjectExists {
        uri: String,
        token: String,
        existing: String,
    },
    #[error("the user PIN of {token} is locked; {unlock} before using {uri}. tufkey never guesses a PIN")]
    PinLocked {
        token: String,
        uri: String,
        unlock: &'static str,
    },
    #[error("the user PIN of token \"{token}\" has one try left; a wrong PIN now locks it. Check the PIN and rerun with --force to spend the final try")]
    PinFinalTry { token: String },
    #[error("the user PIN of token \"{token}\" is not initialised; set it with the SO PIN first")]
    PinNotInitialized { token: String },
    #[error("wrong PIN for token \"{token}\" (from {origin}); one try was spent and tufkey did not retry{after}")]
    PinIncorrect {
        token: String,
        origin: String,
        after: String,
    },
    #[error("no {what} available and no terminal to ask on; give pin-source=file:/path in the URI or set {env}")]
    NoPin { what: String, env: String },
    #[error("cannot read PIN from {source_name}: {reason}")]
    PinSource { source_name: String, reason: String },
    #[error("cannot read the PIN from the terminal: {0}")]
    Prompt(String),
    #[error("the HSM token \"{token}\" (serial {serial}) that holds {uri} is unavailable: {reason}. Nothing is signed with it until it is back; tufkey looks for it again on later uses (re-initialising the PKCS#11 module after {} s, then less often while it stays away, up to once every {} s), so no restart is needed once the device is connected and reachable again", REINIT_INTERVAL.as_secs(), REINIT_BACKOFF_MAX.as_secs())]
    DeviceUnavailable {
        uri: String,
        token: String,
        serial: String,
        reason: String,
    },
    #[error("token \"{token}\" refused the PIN when tufkey logged in again by itself ({reason}); tufkey will not try a PIN on it again in this process: check the token and the PIN source of {uri}, then restart tufkey")]
    ReloginRefused {
        token: String,
        uri: String,
        reason: String,
    },
    #[error("{op} failed for {uri}: {err}")]
    Pkcs11 {
        op: &'static str,
        uri: String,
        err: cryptoki::error::Error,
    },
    #[error("key {uri}: {reason}")]
    Unsupported { uri: String, reason: String },
    /// A hardware key (a YubiKey) that is not there now; a later use looks again.
    #[error("key {uri}: {reason}")]
    CardAbsent { uri: String, reason: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("wrong passphrase for key file {path} (or the file is corrupt)")]
    Passphrase { path: PathBuf },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("key {uri} produced a signature that does not verify with its own public key ({reason}); nothing was written")]
    SelfCheck { uri: String, reason: String },
}
