//! The exit code of a failed command, from the [`Outcome`] of the key error behind it
//! (the same mapping gives the daemon its HTTP status): a monitor can tell "the device or
//! service is away, retry later" (7) from every other failure (1); 4, 5 and 6 belong to
//! `repo refresh` and `repo status`.

use std::process::ExitCode;

use tufkey::keys::{KeyError, Outcome};

/// A key's device or service (HSM token, YubiKey, pcscd, remote signer) is not available
/// now; nothing was changed, and the same command can succeed once it is back.
pub const EXIT_UNAVAILABLE: u8 = 7;

/// The outcome of the key error somewhere in `e`'s chain, if there is one.
pub fn outcome(e: &anyhow::Error) -> Option<Outcome> {
    e.chain()
        .find_map(|c| c.downcast_ref::<KeyError>())
        .map(KeyError::outcome)
}

/// The exit code for a failed command.
pub fn exit_code(outcome: Option<Outcome>) -> ExitCode {
    match outcome {
        Some(Outcome::Unavailable) => ExitCode::from(EXIT_UNAVAILABLE),
        Some(Outcome::Refused | Outcome::Usage | Outcome::Internal) | None => ExitCode::FAILURE,
    }
}

/// What to do, printed after the error for outcomes whose message may not say it.
pub fn hint(outcome: Option<Outcome>) -> Option<&'static str> {
    match outcome {
        Some(o @ Outcome::Unavailable) => Some(o.advice()),
        _ => None,
    }
}
