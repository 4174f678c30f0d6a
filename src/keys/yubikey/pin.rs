//! PIN rules at a YubiKey: the retry counter is read first, a final try needs `--force`, a
//! wrong PIN is never retried, and a refusal sticks for a running signer.

use crate::keys::error::KeyError;
use crate::keys::pin;
use crate::keys::pin::{PinOrigin, PinPolicy, PinRequest};
use crate::keys::pin_cache;
use crate::keys::secret::Secret;
use crate::keys::uri::YubiKeyUri;

use super::errors::{err, explain};
use super::held::{card_gone, Held};
/// The factory-default PIV PIN. It is never tried; it is only recognised to warn.
const DEFAULT_PIN: &str = "123456";

/// Why an operation on an open card failed: the card went away under the handle (see
/// [`card_gone`]), which a signer answers by opening the card again, or anything else.
#[derive(Debug)]
pub(super) enum Failure {
    /// `None`: there was no handle (an earlier reopen failed).
    Gone(Option<yubikey::Error>),
    Failed(KeyError),
}

impl Failure {
    pub(super) fn from_card(uri: &YubiKeyUri, e: yubikey::Error) -> Failure {
        if card_gone(&e) {
            Failure::Gone(Some(e))
        } else {
            Failure::Failed(explain(uri, e))
        }
    }

    fn into_key_error(self, uri: &YubiKeyUri) -> KeyError {
        match self {
            Failure::Gone(Some(e)) => explain(uri, e),
            Failure::Gone(None) => err(uri, "the YubiKey is not open"),
            Failure::Failed(e) => e,
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Failure {
        Failure::Failed(e)
    }
}

/// Verifies the PIN once: reads the retry counter first, refuses a locked PIN and a
/// final try without `--force`, checks the length before spending a try, never retries.
pub(super) fn verify_pin(
    yk: &mut Held,
    uri: &YubiKeyUri,
    policy: &PinPolicy,
    known: Option<&Secret>,
) -> Result<Secret, KeyError> {
    verify_pin_on(yk, uri, policy, known).map_err(|f| f.into_key_error(uri))
}

/// [`verify_pin`], telling a card that went away under the handle apart.
pub(super) fn verify_pin_on(
    yk: &mut Held,
    uri: &YubiKeyUri,
    policy: &PinPolicy,
    known: Option<&Secret>,
) -> Result<Secret, Failure> {
    let serial = yk.serial().0;
    let label = format!("YubiKey {serial}");
    let retries = yk
        .get_pin_retries()
        .map_err(|e| Failure::from_card(uri, e))?;
    match retries {
        0 if pin_already_verified(yk, uri)? => {
            // A generic PIV card keeps the PIN verified across SELECT, so the crate's
            // "0 tries" can mean "verified by another program": the last VERIFY
            // succeeded, which reset the counter, so ours is not a final try.
            eprintln!("note: card {serial} reports its PIN already verified (by another program; generic PIV cards keep it across sessions); tufkey verifies its own PIN all the same");
        }
        0 => {
            return Err(Failure::Failed(KeyError::PinLocked {
                token: label,
                uri: uri.to_string(),
                unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
            }))
        }
        1 if !policy.force => return Err(KeyError::PinFinalTry { token: label }.into()),
        _ => {}
    }
    let (secret, origin) = match known {
        Some(s) => (s.clone(), PinOrigin::UriValue),
        None => {
            let req = PinRequest {
                what: format!("PIV PIN for YubiKey {serial}"),
                uri_value: None,
                uri_source: None,
                env: vec![
                    format!("TUFKEY_PIN_{serial}"),
                    "TUFKEY_YUBIKEY_PIN".into(),
                    "TUFKEY_PIN".into(),
                ],
                cache_key: Some(format!("yubikey:{serial}")),
            };
            pin::obtain(&req, policy)?
        }
    };
    let len = secret.expose().len();
    if !(6..=8).contains(&len) {
        return Err(err(
            uri,
            format!(
                "a PIV PIN has 6 to 8 characters; the one given has {len}, so no try was spent"
            ),
        )
        .into());
    }
    yk.reset_on_release();
    match yk.verify_pin(secret.expose().as_bytes()) {
        Ok(()) => {
            if secret.expose() == DEFAULT_PIN && known.is_none() {
                eprintln!("warning: YubiKey {serial} still uses the factory-default PIN; change it (`ykman piv access change-pin`) before a ceremony");
            }
            if policy.remember && origin != PinOrigin::Cache {
                pin_cache::store(&format!("yubikey:{serial}"), &secret);
            }
            Ok(secret)
        }
        Err(yubikey::Error::WrongPin { tries }) => {
            if origin == PinOrigin::Cache {
                let _ = pin_cache::forget(&format!("yubikey:{serial}"));
            }
            let after = match tries {
                0 => "; the PIN is now LOCKED".to_string(),
                1 => "; ONE try is left".to_string(),
                n => format!("; {n} tries left"),
            };
            Err(Failure::Failed(KeyError::PinIncorrect {
                token: label,
                origin: origin.to_string(),
                after,
            }))
        }
        Err(yubikey::Error::PinLocked) => Err(Failure::Failed(KeyError::PinLocked {
            token: label,
            uri: uri.to_string(),
            unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
        })),
        Err(e) => Err(Failure::from_card(uri, e)),
    }
}

/// Whether the card answers an empty VERIFY with 9000: its PIN is verified already.
/// The `yubikey` crate reads that answer as "0 tries left", like a blocked PIN (6983);
/// asking again without its re-SELECT tells the two apart, and spends no try.
fn pin_already_verified(yk: &mut Held, uri: &YubiKeyUri) -> Result<bool, Failure> {
    match yk.verify_pin(&[]) {
        Ok(()) => Ok(true),
        Err(yubikey::Error::WrongPin { .. }) => Ok(false),
        Err(e) => Err(Failure::from_card(uri, e)),
    }
}

/// Verifies a PIN that this session verified moments ago, without reading the retry
/// counter first: the `yubikey` crate reads it by re-selecting the PIV application,
/// which on a YubiKey resets the application's security state, and the management-key
/// authentication must survive until the certificate is written.
pub(super) fn reverify_pin(yk: &mut Held, uri: &YubiKeyUri, pin: &Secret) -> Result<(), KeyError> {
    yk.reset_on_release();
    match yk.verify_pin(pin.expose().as_bytes()) {
        Ok(()) => Ok(()),
        Err(yubikey::Error::WrongPin { tries }) => Err(KeyError::PinIncorrect {
            token: format!("YubiKey {}", yk.serial().0),
            origin: "the PIN verified moments before (was it changed meanwhile?)".into(),
            after: format!("; {tries} tries left"),
        }),
        Err(yubikey::Error::PinLocked) => Err(KeyError::PinLocked {
            token: format!("YubiKey {}", yk.serial().0),
            uri: uri.to_string(),
            unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
        }),
        Err(e) => Err(explain(uri, e)),
    }
}

/// Whether the card refused the PIN a signer holds. A signer verifies its PIN again
/// before every signature; if the PIN was changed (or the card swapped) under a running
/// process, the first wrong answer spends one try and every later signature fails at
/// once, without sending the PIN, until the process is restarted.
#[derive(Default)]
pub(super) struct PinRefusal(Option<String>);

impl PinRefusal {
    /// An error when the PIN was refused before.
    pub(super) fn check(&self, token: &str, uri: &str) -> Result<(), KeyError> {
        match &self.0 {
            Some(reason) => Err(KeyError::ReloginRefused {
                token: token.into(),
                uri: uri.into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Looks at the outcome of verifying the held PIN: a wrong-PIN answer sticks, and
    /// the error says so.
    pub(super) fn note<T>(&mut self, outcome: Result<T, KeyError>) -> Result<T, KeyError> {
        match outcome {
            Err(KeyError::PinIncorrect { token, after, .. }) => {
                let origin =
                    "the PIN this process verified when it opened the key (was it changed meanwhile?)"
                        .to_string();
                self.0 = Some(format!("it answered \"wrong PIN\" to {origin}{after}"));
                Err(KeyError::PinIncorrect {
                    token,
                    origin,
                    after: format!(
                        "{after}; tufkey will not send that PIN again in this process: check the PIN, then restart tufkey"
                    ),
                })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_held_pin_is_never_sent_again() {
        let mut r = PinRefusal::default();
        assert!(r.check("YubiKey 1", "yubikey:slot=9c").is_ok());
        // Other failures (a removed card, a locked PIN seen before sending) do not stick.
        let other: Result<(), KeyError> = Err(KeyError::PinFinalTry {
            token: "YubiKey 1".into(),
        });
        assert!(r.note(other).is_err());
        assert!(r.check("YubiKey 1", "yubikey:slot=9c").is_ok());
        assert!(r.note(Ok(())).is_ok());
        let wrong: Result<(), KeyError> = Err(KeyError::PinIncorrect {
            token: "YubiKey 1".into(),
            origin: "x".into(),
            after: "; 2 tries left".into(),
        });
        let e = r.note(wrong).unwrap_err().to_string();
        assert!(e.contains("will not send that PIN again"), "{e}");
        for _ in 0..3 {
            let e = r.check("YubiKey 1", "yubikey:slot=9c").unwrap_err();
            assert!(matches!(e, KeyError::ReloginRefused { .. }), "{e}");
            assert!(e.to_string().contains("2 tries left"), "{e}");
        }
    }
}
