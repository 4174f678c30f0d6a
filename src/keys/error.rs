//! Errors of key backends. Each names the key by URI (PINs redacted) or the token by label.
//!
//! Device errors stay typed until they are shown ([`CardProblem`], [`RemoteError`]), and
//! [`KeyError::outcome`], right below the type, sorts every error into the four kinds that
//! callers act on: the daemon's HTTP status and the CLI's exit code both come from it.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

use super::pkcs11::limits::{REINIT_BACKOFF_MAX, REINIT_INTERVAL};
use super::remote::error::RemoteError;

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
    /// A smart card (YubiKey) or the PC/SC service in front of it.
    #[error("key {uri}: {problem}")]
    Card { uri: String, problem: CardProblem },
    /// A remote `tufkey serve` holding the key.
    #[error("key {uri}: {err}")]
    Remote { uri: String, err: RemoteError },
    /// This build cannot use the backend the URI names.
    #[error("key {uri}: this tufkey was built without the `{feature}` feature")]
    NotBuiltIn { uri: String, feature: &'static str },
    /// The backend the URI names cannot do what was asked.
    #[error("key {uri}: {backend} keys cannot be {operation}: {why}")]
    NotSupported {
        uri: String,
        backend: &'static str,
        operation: &'static str,
        why: &'static str,
    },
}

/// What a YubiKey command says on a machine without the PC/SC client library (tufkey
/// opens it at run time, so it builds and runs everywhere else without it).
pub const PCSC_LIBRARY_MISSING: &str = "the PC/SC library (libpcsclite.so.1) is not installed, so tufkey cannot reach a YubiKey; install pcscd and libpcsclite1 (Debian/Ubuntu: `apt install pcscd libpcsclite1`; Fedora: `dnf install pcsc-lite pcsc-lite-libs`), or set TUFKEY_PCSC_LIBRARY to its path";

/// What went wrong at a smart card or the PC/SC service, each with what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardProblem {
    #[error("pcscd is not running; start it (e.g. `systemctl start pcscd`)")]
    ServiceNotRunning,
    /// libpcsclite could not be opened (why, as the loader said).
    #[error("{PCSC_LIBRARY_MISSING} ({0})")]
    LibraryMissing(String),
    #[error("another program holds the YubiKey exclusively (often gpg's scdaemon: `gpgconf --kill scdaemon`, or a running ykman/browser); close it and try again")]
    HeldElsewhere,
    #[error("the YubiKey was removed")]
    Removed,
    #[error("the slot holds no key (or no certificate naming its public key)")]
    NoKey,
    #[error("the management key was refused")]
    ManagementKeyRefused,
    #[error("the PIN is locked; unblock it with the PUK (`ykman piv access unblock-pin`)")]
    PinLocked,
    #[error("wrong PIN; {tries} tries left")]
    WrongPin { tries: u8 },
    /// Another PC/SC answer, as pcsc-lite names it.
    #[error("smart card error: {0}")]
    Pcsc(String),
    /// Anything else the card or the PIV library said.
    #[error("{0}")]
    Other(String),
}

/// What a caller should make of an error: the daemon's HTTP status and the CLI's exit
/// code are chosen from this, never from the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A device or service is absent or not answering (an HSM token, a YubiKey, pcscd, a
    /// remote signer): nothing is wrong with the request; retry once it is back.
    Unavailable,
    /// The device or a rule said no: a wrong or locked PIN, a final try without
    /// `--force`, a key that is not the role's, an object that exists. Retrying the same
    /// thing does not help; a person has to act.
    Refused,
    /// The request cannot work as written: a bad URI, a key that is not there, an
    /// operation or algorithm the backend does not support, a missing PIN source.
    Usage,
    /// A fault of tufkey, the device or the host (a signature that does not verify, an
    /// unexpected device answer, an I/O error).
    Internal,
}

impl Outcome {
    /// One line on what to do, for people.
    pub fn advice(self) -> &'static str {
        match self {
            Outcome::Unavailable => "the device or service is not available now; nothing was changed. Connect or start it and run the command again",
            Outcome::Refused => "refused; nothing was changed. Retrying the same command will not help: fix what the message names first",
            Outcome::Usage => "the command cannot work as written; nothing was changed. Fix what the message names",
            Outcome::Internal => "an unexpected failure; nothing was changed. If it persists, report it with the message above",
        }
    }
}

impl KeyError {
    /// Whether the message names only a file, not the key URI (callers then add the URI).
    pub fn names_only_a_file(&self) -> bool {
        matches!(
            self,
            KeyError::Io { .. } | KeyError::KeyFile { .. } | KeyError::Passphrase { .. }
        )
    }

    /// The kind of this error (see [`Outcome`]).
    pub fn outcome(&self) -> Outcome {
        use KeyError as E;
        match self {
            E::DeviceUnavailable { .. } | E::CardAbsent { .. } | E::NoToken { .. } => {
                Outcome::Unavailable
            }
            E::Pkcs11 { err, .. } => pkcs11_outcome(err),
            E::Card { problem, .. } => problem.outcome(),
            E::Remote { err, .. } => err.outcome(),
            E::PinLocked { .. }
            | E::PinFinalTry { .. }
            | E::PinNotInitialized { .. }
            | E::PinIncorrect { .. }
            | E::ReloginRefused { .. }
            | E::Passphrase { .. }
            | E::ObjectExists { .. } => Outcome::Refused,
            E::Uri { .. }
            | E::Module { .. }
            | E::NoModule { .. }
            | E::AmbiguousToken { .. }
            | E::NoObject { .. }
            | E::AmbiguousObject { .. }
            | E::NeedsObjectName { .. }
            | E::NoPin { .. }
            | E::PinSource { .. }
            | E::Unsupported { .. }
            | E::KeyFile { .. }
            | E::NotBuiltIn { .. }
            | E::NotSupported { .. } => Outcome::Usage,
            E::Io { err, .. } => match err.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Outcome::Usage
                }
                _ => Outcome::Internal,
            },
            E::Prompt(_) | E::SelfCheck { .. } => Outcome::Internal,
        }
    }
}

/// PKCS#11 answers that mean the token or its device is not there (or not answering)
/// are [`Outcome::Unavailable`]; any other failed call is unexpected.
fn pkcs11_outcome(err: &CkError) -> Outcome {
    match err {
        CkError::Pkcs11(
            RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::CryptokiNotInitialized,
            _,
        ) => Outcome::Unavailable,
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired, _) => {
            Outcome::Refused
        }
        _ => Outcome::Internal,
    }
}

impl CardProblem {
    /// The kind of this problem (see [`Outcome`]).
    pub fn outcome(&self) -> Outcome {
        match self {
            CardProblem::ServiceNotRunning
            | CardProblem::HeldElsewhere
            | CardProblem::Removed
            | CardProblem::Pcsc(_) => Outcome::Unavailable,
            CardProblem::ManagementKeyRefused
            | CardProblem::PinLocked
            | CardProblem::WrongPin { .. } => Outcome::Refused,
            CardProblem::NoKey | CardProblem::LibraryMissing(_) => Outcome::Usage,
            CardProblem::Other(_) => Outcome::Internal,
        }
    }
}

impl RemoteError {
    /// The kind of this error (see [`Outcome`]): a signer that cannot be reached or
    /// answers 503 is unavailable; any other refusal is the signer's policy saying no.
    pub fn outcome(&self) -> Outcome {
        match self {
            RemoteError::Connect { .. } => Outcome::Unavailable,
            RemoteError::Refused { status: 503, .. } => Outcome::Unavailable,
            RemoteError::Refused { status, .. } if *status >= 500 => Outcome::Internal,
            RemoteError::Refused { .. } => Outcome::Refused,
            RemoteError::Material { .. } | RemoteError::Setup(_) => Outcome::Usage,
            RemoteError::Protocol { .. } => Outcome::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(problem: CardProblem) -> KeyError {
        KeyError::Card {
            uri: "yubikey:slot=9c".into(),
            problem,
        }
    }

    #[test]
    fn a_stopped_pcscd_an_absent_yubikey_and_a_wrong_pin_are_three_different_outcomes() {
        let stopped = card(CardProblem::ServiceNotRunning);
        let absent = KeyError::CardAbsent {
            uri: "yubikey:serial=1;slot=9c".into(),
            reason: "YubiKey serial 1 is not inserted (none present)".into(),
        };
        let wrong = KeyError::PinIncorrect {
            token: "YubiKey 1".into(),
            origin: "TUFKEY_PIN".into(),
            after: String::new(),
        };
        assert_eq!(stopped.outcome(), Outcome::Unavailable);
        assert_eq!(absent.outcome(), Outcome::Unavailable);
        assert_eq!(wrong.outcome(), Outcome::Refused);
        assert_eq!(
            card(CardProblem::WrongPin { tries: 2 }).outcome(),
            Outcome::Refused
        );
        assert!(
            stopped.to_string().contains("pcscd is not running"),
            "{stopped}"
        );
    }

    #[test]
    fn a_pkcs11_answer_is_unavailable_only_when_it_means_the_token_is_gone() {
        let e = |rv| KeyError::Pkcs11 {
            op: "C_Sign",
            uri: "pkcs11:token=t".into(),
            err: CkError::Pkcs11(rv, cryptoki::context::Function::Sign),
        };
        assert_eq!(e(RvError::TokenNotPresent).outcome(), Outcome::Unavailable);
        assert_eq!(e(RvError::DeviceRemoved).outcome(), Outcome::Unavailable);
        assert_eq!(e(RvError::PinIncorrect).outcome(), Outcome::Refused);
        assert_eq!(e(RvError::MechanismInvalid).outcome(), Outcome::Internal);
    }

    #[test]
    fn a_remote_signer_that_is_down_is_unavailable_and_one_that_says_no_refuses() {
        let refused = |status| RemoteError::Refused {
            base: "https://s".into(),
            status,
            code: "x".into(),
            message: "m".into(),
        };
        let connect = RemoteError::Connect {
            base: "https://s".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(connect.outcome(), Outcome::Unavailable);
        assert_eq!(refused(503).outcome(), Outcome::Unavailable);
        assert_eq!(refused(403).outcome(), Outcome::Refused);
        assert_eq!(refused(500).outcome(), Outcome::Internal);
    }
}
