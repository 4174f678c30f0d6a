//! A token that went away: probing it, marking it down, and getting it back (module
//! re-initialisation with back-off); the health check of `/healthz`.

use std::sync::Arc;
use std::time::Instant;

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;

use super::answers::{brief, device_trouble};
use super::limits::REINIT_LOCK_WAIT;
use super::module::{module_path, Live, Reinit};
use super::state::{lock, Backoff};
use super::token::{tokens, Token};

impl Token {
    /// Whether the token answers now, as the same token (label and serial), in the
    /// module's current generation. Errors name `uri`.
    pub(super) fn probe(&self, uri: &str) -> Result<(), KeyError> {
        let live = self
            .module
            .enter()
            .map_err(|why| self.unavailable(uri, why))?;
        let slot = self
            .slot_in(&live)
            .map_err(|e| self.unavailable(uri, brief(&e)))?;
        let info = live
            .p11()
            .get_token_info(slot)
            .map_err(|e| self.unavailable(uri, brief(&self.ck("C_GetTokenInfo")(e))))?;
        let (l, s) = (info.label().trim_end(), info.serial_number().trim_end());
        if l == self.label && s == self.serial {
            if info.rng() {
                self.ask_rng(&live, uri)?;
            }
            Ok(())
        } else {
            Err(self.unavailable(
                uri,
                format!("slot {} now holds token \"{l}\" (serial {s})", slot.id()),
            ))
        }
    }

    /// Asks the device's random number generator for a few bytes. Some modules answer
    /// C_GetTokenInfo without the device — tpm2-pkcs11 reads its store, also behind
    /// p11-kit-proxy — so a TPM or resource manager that went away shows only here, before
    /// any login. An answer that may mean the device is gone makes the token unavailable;
    /// any other (a module without C_GenerateRandom) says nothing about it.
    fn ask_rng(&self, live: &Live<'_>, uri: &str) -> Result<(), KeyError> {
        let answer = self.session_in(live).and_then(|s| {
            s.generate_random_vec(8)
                .map_err(self.ck("C_GenerateRandom"))
        });
        match answer {
            Err(e) if device_trouble(&e) => Err(self.unavailable(uri, brief(&e))),
            _ => Ok(()),
        }
    }

    /// Whether a failure marked this token unavailable.
    pub fn is_down(&self) -> bool {
        lock(&self.down).is_some()
    }

    /// Marks the token unavailable and returns the error to report.
    pub(super) fn mark_down(&self, uri: &str, reason: String) -> KeyError {
        *lock(&self.down) = Some(reason.clone());
        self.unavailable(uri, reason)
    }

    fn mark_up(&self) {
        *lock(&self.down) = None;
    }

    /// Tries to get an unavailable token back: first looks for it as the module is now
    /// (a device that came back in its slot, or a re-initialisation another thread made),
    /// then re-initialises the module, at most once per `REINIT_INTERVAL` per module and,
    /// while the token stays away, at doubling intervals up to `REINIT_BACKOFF_MAX` (a
    /// token that is gone for good must not log every other token of the module out every
    /// second). Never logs in: the next signature does that, from the PIN its signer holds.
    pub(super) fn recover(&self, uri: &str) -> Result<(), KeyError> {
        let seen = self.module.generation();
        if self.probe(uri).is_ok() {
            self.came_back();
            return Ok(());
        }
        let was = lock(&self.down).clone().unwrap_or_default();
        // One recovery of this token at a time; the others wait for its outcome here.
        let mut backoff = lock(&self.backoff);
        if let Some(wait) = backoff.remaining(Instant::now()) {
            // Another thread may have just re-initialised it: look once more.
            if self.module.generation() != seen && self.probe(uri).is_ok() {
                drop(backoff);
                self.came_back();
                return Ok(());
            }
            return Err(self.unavailable(
                uri,
                format!(
                    "{was} (the token stayed away after the last re-initialisation; the next one for it is in {} ms)",
                    wait.as_millis()
                ),
            ));
        }
        match self.module.reinit(seen) {
            Reinit::Done => match self.probe(uri) {
                Ok(()) => {
                    drop(backoff);
                    self.came_back();
                    Ok(())
                }
                Err(e) => {
                    backoff.failed(Instant::now());
                    let why = brief(&e);
                    Err(self.mark_down(
                        uri,
                        format!("still absent after re-initialising the PKCS#11 module: {why}"),
                    ))
                }
            },
            Reinit::NotYet(wait) => {
                // Another thread may have just re-initialised it: look once more.
                if self.module.generation() != seen && self.probe(uri).is_ok() {
                    drop(backoff);
                    self.came_back();
                    return Ok(());
                }
                Err(self.unavailable(
                    uri,
                    format!(
                        "{was} (next re-initialisation of the module allowed in {} ms)",
                        wait.as_millis()
                    ),
                ))
            }
            Reinit::Busy => Err(self.unavailable(
                uri,
                format!(
                    "{was} (the module could not be re-initialised now: other calls held it for over {} ms; the next request tries again)",
                    REINIT_LOCK_WAIT.as_millis()
                ),
            )),
            Reinit::Failed(why) => {
                backoff.failed(Instant::now());
                Err(self.mark_down(uri, why))
            }
        }
    }

    /// The token answers again: available, and the back-off starts over.
    fn came_back(&self) {
        self.mark_up();
        *lock(&self.backoff) = Backoff::default();
    }

    /// Whether the token can be used now, for health checks: an unavailable token is
    /// looked for again (see `Token::recover`, rate-limited); an available one is asked
    /// for its token info. Spends no PIN try.
    pub fn check(&self) -> Result<(), KeyError> {
        let uri = self.uri().to_string();
        if let Some(reason) = lock(&self.login).refused.clone() {
            return Err(KeyError::ReloginRefused {
                token: self.label.clone(),
                uri,
                reason,
            });
        }
        if self.is_down() {
            return self.recover(&uri);
        }
        self.probe(&uri).map_err(|e| {
            let why = brief(&e);
            self.mark_down(&uri, why)
        })
    }
}

/// Health of the token a key URI names, for the daemon's `/healthz`: the token this
/// process already opened for it (else it is opened now) is checked with
/// [`Token::check`], which also tries to get an unavailable token back (rate-limited).
/// Spends no PIN try.
pub fn check_token(uri: &Pkcs11Uri) -> Result<(), KeyError> {
    let path = module_path(uri)?;
    let known: Vec<Arc<Token>> = lock(tokens())
        .values()
        .filter(|t| {
            t.module_path == path
                && uri.token.as_deref().is_none_or(|l| l == t.label)
                && uri.serial.as_deref().is_none_or(|s| s == t.serial)
        })
        .cloned()
        .collect();
    match known.as_slice() {
        [token] => token.check(),
        _ => Token::open(uri)?.check(),
    }
}
