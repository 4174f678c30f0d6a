//! Logging in to a token: once per application, under the PIN rules, with the PIN the
//! token's signers hold when tufkey logs in again by itself.

use std::sync::{Arc, Weak};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{SessionState, UserType};
use cryptoki::types::AuthPin;

use crate::keys::error::KeyError;
use crate::keys::pin;
use crate::keys::pin::{PinOrigin, PinPolicy, PinRequest, Secret};
use crate::keys::pin_cache;
use crate::keys::uri::Pkcs11Uri;

use super::answers::{login_device_gone, rv_name};
use super::implementation::{Implementation, UNLOCK_TPM, WRONG_PIN_TPM};
use super::module::Live;
use super::pin_rules::{check_pin_state, FinalTry, PinState, UNLOCK_SO};
use super::state::lock;
use super::token::Token;

/// Who asks for a login, which decides what a failure costs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginBy {
    /// A command, or a signer being opened: `--force` may spend a final try.
    Caller,
    /// tufkey logging in again by itself (the device came back, or the module was
    /// re-initialised): never a final try, and any failure other than a device that is
    /// plainly gone stops all further logins to the token in this process.
    Itself,
}

/// Why a login failed, and whether C_Login was called for it.
pub(super) enum LoginFailure {
    /// Refused before any C_Login (PIN rules, no PIN, a token that does not answer): no
    /// try was spent.
    NotTried(KeyError),
    /// C_Login was called and failed: it may have spent a try, so nothing calls it again
    /// within the same request.
    Tried(KeyError),
}

impl LoginFailure {
    pub(super) fn into_error(self) -> KeyError {
        match self {
            LoginFailure::NotTried(e) | LoginFailure::Tried(e) => e,
        }
    }
}

impl From<KeyError> for LoginFailure {
    fn from(e: KeyError) -> LoginFailure {
        LoginFailure::NotTried(e)
    }
}

impl Token {
    /// The token's PIN state, read now.
    pub fn pin_state(&self) -> Result<PinState, KeyError> {
        let live = self.enter()?;
        self.pin_state_in(&live)
    }

    fn pin_state_in(&self, live: &Live<'_>) -> Result<PinState, KeyError> {
        let info = live
            .p11()
            .get_token_info(self.slot_in(live)?)
            .map_err(self.ck("C_GetTokenInfo"))?;
        Ok(PinState::from_info(&info).as_reported_by(Implementation::of(live.p11())))
    }

    /// The keyring entry name of this token's cached PIN.
    pub fn cache_key(&self) -> String {
        format!(
            "pkcs11:{}:{}:{}",
            self.module_path.display(),
            self.label,
            self.serial
        )
    }

    /// Logs the user in once for the whole application. `uri` supplies pin-value and
    /// pin-source. Exactly one C_Login is made per call that needs one. The PIN is not
    /// kept: it is zeroized when this returns (a `Pkcs11Signer` keeps its own).
    pub fn login(&self, uri: &Pkcs11Uri, policy: &PinPolicy) -> Result<(), KeyError> {
        let live = self.enter()?;
        self.login_in(&live, uri, policy, LoginBy::Caller, None)
            .map(|_| ())
            .map_err(LoginFailure::into_error)
    }

    /// Logs in unless this process is logged in to the token in the module's current
    /// generation. The PIN a signer holds (`held`) is tried first, else the one the
    /// token's other signers hold, else the URI's and the environment's. PIN rules apply
    /// to every attempt: a locked PIN is not tried, a final try needs `force` (never for
    /// a login tufkey makes by itself, [`LoginBy::Itself`]). When a login that tufkey made
    /// by itself (`Itself`, or with a PIN that logged in before) fails for any reason
    /// other than a device that is plainly gone — a wrong PIN, a locked PIN, or an error
    /// after which nobody can tell whether a try was spent — no PIN is tried on this
    /// token again in this process. Returns the PIN that is logged in with, when known,
    /// for the caller to hold; a failure says whether C_Login was called.
    pub(super) fn login_in(
        &self,
        live: &Live<'_>,
        uri: &Pkcs11Uri,
        policy: &PinPolicy,
        by: LoginBy,
        held: Option<Arc<Secret>>,
    ) -> Result<Option<Arc<Secret>>, LoginFailure> {
        let generation = live.generation();
        let mut st = lock(&self.login);
        if st.generation == Some(generation) {
            return Ok(held.or_else(|| st.pin.upgrade()));
        }
        let shown = uri.to_string();
        if let Some(reason) = &st.refused {
            return Err(LoginFailure::NotTried(KeyError::ReloginRefused {
                token: self.label.clone(),
                uri: shown,
                reason: reason.clone(),
            }));
        }
        let session = self.session_in(live)?;
        let state = session
            .get_session_info()
            .map_err(self.ck("C_GetSessionInfo"))?
            .session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            st.generation = Some(generation);
            return Ok(held.or_else(|| st.pin.upgrade()));
        }
        // A login tufkey makes by itself never spends a final try, --force or not.
        let final_try = if policy.force && by == LoginBy::Caller {
            FinalTry::Spend
        } else {
            FinalTry::Refuse
        };
        check_pin_state(self.pin_state_in(live)?, final_try, &self.label, &shown)?;
        let (secret, origin) = match held.or_else(|| st.pin.upgrade()) {
            Some(pin) => (pin, None),
            None => {
                let req = PinRequest {
                    what: format!("user PIN for token \"{}\"", self.label),
                    uri_value: uri.pin_value.as_ref(),
                    uri_source: uri.pin_source.as_deref(),
                    env: vec![pin::token_env_var(&self.label), "TUFKEY_PIN".into()],
                    cache_key: Some(self.cache_key()),
                };
                let (secret, origin) = pin::obtain(&req, policy)?;
                (Arc::new(secret), Some(origin))
            }
        };
        let origin_text = match &origin {
            Some(o) => o.to_string(),
            None => "the PIN this process logged in with before".to_string(),
        };
        // Whether a failure stops all further logins to this token.
        let sticky = by == LoginBy::Itself || origin.is_none();
        let auth = AuthPin::from(secret.expose().to_owned());
        let answer = session.login(UserType::User, Some(&auth));
        drop(auth);
        let failed = match answer {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if policy.remember && origin.as_ref().is_some_and(|o| *o != PinOrigin::Cache) {
                    pin_cache::store(&self.cache_key(), &secret);
                }
                st.generation = Some(generation);
                st.pin = Arc::downgrade(&secret);
                return Ok(Some(secret));
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                if origin == Some(PinOrigin::Cache) {
                    let _ = pin_cache::forget(&self.cache_key());
                }
                let mut after = match self.pin_state_in(live) {
                    Ok(PinState::FinalTry) => "; the token now has ONE try left".to_string(),
                    Ok(PinState::Locked) => "; the token is now LOCKED".to_string(),
                    _ => String::new(),
                };
                if Implementation::of(live.p11()) == Implementation::Tpm2Pkcs11 {
                    after.push_str(WRONG_PIN_TPM);
                }
                if sticky {
                    st.pin = Weak::new();
                    st.refused = Some(format!(
                        "it answered CKR_PIN_INCORRECT to {origin_text}{after}"
                    ));
                    after.push_str(
                        "; tufkey was logging in again by itself (the device had gone away or forgotten the login) and will not try another PIN on this token: check the token and the PIN, then restart tufkey",
                    );
                }
                KeyError::PinIncorrect {
                    token: self.label.clone(),
                    origin: origin_text,
                    after,
                }
            }
            Err(CkError::Pkcs11(rv, _)) if sticky && login_device_gone(rv) => {
                // The token was not there to judge the PIN: no try was spent. Nothing
                // is retried in this request; the next one looks for the token first.
                self.mark_down(&shown, format!("C_Login answered {}", rv_name(rv)))
            }
            Err(e) if sticky => {
                // A locked PIN, or an answer after which nobody can tell whether the
                // token counted a try (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, …): never
                // again by itself, so that each request cannot spend one.
                let what = match &e {
                    CkError::Pkcs11(rv, _) => rv_name(*rv),
                    other => other.to_string(),
                };
                st.pin = Weak::new();
                st.refused = Some(format!(
                    "C_Login answered {what} to {origin_text}; a try may have been spent"
                ));
                KeyError::ReloginRefused {
                    token: self.label.clone(),
                    uri: shown,
                    reason: st.refused.clone().unwrap_or_default(),
                }
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => KeyError::PinLocked {
                token: format!("token \"{}\"", self.label),
                uri: shown,
                unlock: match Implementation::of(live.p11()) {
                    Implementation::Tpm2Pkcs11 => UNLOCK_TPM,
                    Implementation::Standard => UNLOCK_SO,
                },
            },
            Err(e) => self.ck("C_Login")(e),
        };
        Err(LoginFailure::Tried(failed))
    }

    /// Whether a login that tufkey made by itself failed on this token, so that no PIN
    /// is tried on it again in this process.
    pub fn login_refused(&self) -> bool {
        lock(&self.login).refused.is_some()
    }
}
