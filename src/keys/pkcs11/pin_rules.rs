//! PIN flags of a token and the rules that decide whether a login may be tried.

use serde::Serialize;

use crate::keys::error::KeyError;

use super::implementation::Implementation;

/// How a locked PKCS#11 user PIN is unlocked.
pub(super) const UNLOCK_SO: &str =
    "unlock it with the SO PIN (e.g. `pkcs11-tool --init-pin --login --login-type so`)";

/// The state of a token's user PIN, from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinState {
    Ok,
    CountLow,
    FinalTry,
    Locked,
    NotInitialized,
    /// The module never reports PIN counters (tpm2-pkcs11): neither a low count nor a
    /// final try can be seen before a login.
    NotReported,
}

impl PinState {
    pub(super) fn from_info(info: &cryptoki::slot::TokenInfo) -> PinState {
        if !info.user_pin_initialized() {
            PinState::NotInitialized
        } else if info.user_pin_locked() {
            PinState::Locked
        } else if info.user_pin_final_try() {
            PinState::FinalTry
        } else if info.user_pin_count_low() {
            PinState::CountLow
        } else {
            PinState::Ok
        }
    }

    /// The state as tufkey must read it for this module's implementation: "ok" from a
    /// module that never sets the counter flags says nothing.
    pub(super) fn as_reported_by(self, implementation: Implementation) -> PinState {
        match (self, implementation) {
            (PinState::Ok, Implementation::Tpm2Pkcs11) => PinState::NotReported,
            (state, _) => state,
        }
    }

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            PinState::Ok => "ok",
            PinState::CountLow => "count low (a wrong PIN was entered)",
            PinState::FinalTry => "FINAL TRY",
            PinState::Locked => "LOCKED",
            PinState::NotInitialized => "not initialised",
            PinState::NotReported => "not reported (TPM: wrong PINs count toward its lockout)",
        }
    }
}

/// Whether a login may spend a PIN's final try: only with `--force`, and never when
/// tufkey logs in again by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalTry {
    Refuse,
    Spend,
}

/// Decides whether a login may be attempted in `state`. Locked and uninitialised PINs
/// are never tried; a final try needs [`FinalTry::Spend`].
pub fn check_pin_state(
    state: PinState,
    final_try: FinalTry,
    token: &str,
    uri: &str,
) -> Result<(), KeyError> {
    match state {
        PinState::Ok | PinState::CountLow | PinState::NotReported => Ok(()),
        PinState::FinalTry if final_try == FinalTry::Spend => Ok(()),
        PinState::FinalTry => Err(KeyError::PinFinalTry {
            token: token.into(),
        }),
        PinState::Locked => Err(KeyError::PinLocked {
            token: format!("token \"{token}\""),
            uri: uri.into(),
            unlock: UNLOCK_SO,
        }),
        PinState::NotInitialized => Err(KeyError::PinNotInitialized {
            token: token.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn pin_rules() {
        assert!(check_pin_state(PinState::Ok, FinalTry::Refuse, "t", "u").is_ok());
        assert!(check_pin_state(PinState::CountLow, FinalTry::Refuse, "t", "u").is_ok());
        assert!(check_pin_state(PinState::NotReported, FinalTry::Refuse, "t", "u").is_ok());
        assert_eq!(
            PinState::Ok.as_reported_by(Implementation::Tpm2Pkcs11),
            PinState::NotReported
        );
        assert_eq!(
            PinState::Ok.as_reported_by(Implementation::Standard),
            PinState::Ok
        );
        assert!(matches!(
            check_pin_state(PinState::FinalTry, FinalTry::Refuse, "t", "u"),
            Err(KeyError::PinFinalTry { .. })
        ));
        assert!(check_pin_state(PinState::FinalTry, FinalTry::Spend, "t", "u").is_ok());
        assert!(matches!(
            check_pin_state(PinState::Locked, FinalTry::Spend, "t", "u"),
            Err(KeyError::PinLocked { .. })
        ));
        assert!(matches!(
            check_pin_state(PinState::NotInitialized, FinalTry::Spend, "t", "u"),
            Err(KeyError::PinNotInitialized { .. })
        ));
    }
}
