//! How `yubikey` crate and PC/SC errors become typed [`KeyError`]s (see [`CardProblem`]).

use crate::keys::error::{CardProblem, KeyError};
use crate::keys::uri::YubiKeyUri;

pub(super) fn err(uri: &YubiKeyUri, reason: impl Into<String>) -> KeyError {
    KeyError::Unsupported {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// The typed problem behind a `yubikey` crate error; its words (and what to do) are in
/// [`CardProblem`]'s `Display`.
fn problem(e: yubikey::Error) -> CardProblem {
    use yubikey::Error as E;
    match e {
        E::PcscError {
            inner: Some(pcsc::Error::NoService | pcsc::Error::ServiceStopped),
        } => match pcsc_sys::library_error() {
            // Every PC/SC call answers "no service" when the library is missing too.
            Some(why) => CardProblem::LibraryMissing(why.to_string()),
            None => CardProblem::ServiceNotRunning,
        },
        E::PcscError {
            inner: Some(pcsc::Error::SharingViolation),
        } => CardProblem::HeldElsewhere,
        E::PcscError {
            inner:
                Some(
                    pcsc::Error::NoSmartcard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::NoReadersAvailable,
                ),
        } => CardProblem::Removed,
        E::PcscError { inner } => CardProblem::Pcsc(format!("{inner:?}")),
        E::NotFound => CardProblem::NoKey,
        E::AuthenticationError => CardProblem::ManagementKeyRefused,
        E::PinLocked => CardProblem::PinLocked,
        E::WrongPin { tries } => CardProblem::WrongPin { tries },
        other => CardProblem::Other(format!("{other}")),
    }
}

/// A `yubikey` crate error as a [`KeyError`] naming the URI.
pub(super) fn explain(uri: &YubiKeyUri, e: yubikey::Error) -> KeyError {
    KeyError::Card {
        uri: uri.to_string(),
        problem: problem(e),
    }
}

/// The reason of an [`err`] or [`explain`] error (the URI is named once, outside), or
/// the whole message of another.
pub(super) fn reason(e: KeyError) -> String {
    match e {
        KeyError::Unsupported { reason, .. } => reason,
        KeyError::Card { problem, .. } => problem.to_string(),
        other => other.to_string(),
    }
}

pub(super) fn pcsc_explain(uri: &YubiKeyUri, e: pcsc::Error) -> KeyError {
    explain(uri, yubikey::Error::PcscError { inner: Some(e) })
}
