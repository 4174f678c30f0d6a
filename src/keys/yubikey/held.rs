//! [`Held`]: an open YubiKey released with a disposition chosen by what tufkey did with it
//! (never a reset of a card tufkey only read), and which PC/SC answers mean the card is gone.

use std::ops::{Deref, DerefMut};

use pcsc::Disposition;
use yubikey::YubiKey;

/// An open YubiKey, released on drop with a disposition chosen by what tufkey did with
/// it. The `yubikey` crate (through pcsc) disconnects a dropped `YubiKey` with "reset
/// card", which logs every program out of every application on that card; tufkey never
/// drops a bare `YubiKey`, only a `Held`:
///
/// - a card tufkey only read (opened to find a serial, listed, a certificate, metadata
///   or an attestation read) is left as it is (`LeaveCard`);
/// - a card tufkey gave a PIN or a management key is reset (`ResetCard`) when released,
///   so the verified PIN and the management-key authentication do not stay on the card
///   for other local programs to use. [`Held::reset_on_release`] marks it, right before
///   the secret is sent (a PIN refused before it reaches the card changes nothing).
pub(super) struct Held {
    yk: Option<YubiKey>,
    after: Disposition,
}

impl Held {
    pub(super) fn new(yk: YubiKey) -> Held {
        Held {
            yk: Some(yk),
            after: Disposition::LeaveCard,
        }
    }

    /// The card is about to receive a PIN or management key: reset it when released.
    pub(super) fn reset_on_release(&mut self) {
        self.after = Disposition::ResetCard;
    }

    /// Lets go of a handle that answered one of the [`card_gone`] errors. When the card
    /// was reset, powered down or removed under it (`cause` says so, see
    /// [`state_cleared`]), nothing verified through it is left on the card, and a reset
    /// now would only end the sessions other programs opened since: the card is left as
    /// it is. Otherwise (the connection failed, pcscd lost the handle) the handle is
    /// released as it would be anyway (reset if tufkey gave the card a PIN), which fails
    /// quietly if the card is gone.
    pub(super) fn release_gone(mut self, cause: Option<&yubikey::Error>) {
        if cause.is_some_and(state_cleared) {
            self.after = Disposition::LeaveCard;
        }
    }
}

impl Deref for Held {
    type Target = YubiKey;
    fn deref(&self) -> &YubiKey {
        self.yk
            .as_ref()
            .expect("a Held YubiKey is only taken on drop")
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut YubiKey {
        self.yk
            .as_mut()
            .expect("a Held YubiKey is only taken on drop")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(yk) = self.yk.take() else { return };
        let serial = yk.serial().0;
        if let Err((yk, e)) = yk.disconnect(self.after) {
            let gone = matches!(
                e,
                yubikey::Error::PcscError {
                    inner: Some(
                        pcsc::Error::RemovedCard
                            | pcsc::Error::NoSmartcard
                            | pcsc::Error::ResetCard
                            | pcsc::Error::UnpoweredCard
                            | pcsc::Error::NotTransacted
                            | pcsc::Error::ReaderUnavailable
                            | pcsc::Error::InvalidHandle
                            | pcsc::Error::NoService
                            | pcsc::Error::ServiceStopped
                    )
                }
            );
            if self.after == Disposition::LeaveCard {
                // Dropping it would reset the card after all: keep the handle until the
                // process ends (pcscd then releases it without a reset).
                std::mem::forget(yk);
            } else {
                if !gone {
                    eprintln!("warning: YubiKey {serial} could not be reset after use ({e}); unplug it to clear its PIN verification");
                }
                // The crate's own drop tries the reset once more.
                drop(yk);
            }
        }
    }
}

/// The pcsc errors after which a handle is useless for good (pcsc-lite answers the same
/// on every later call): the card was reset by another program or powered down
/// (`ResetCard`, `UnpoweredCard`), removed (`RemovedCard`, `NoSmartcard`), the
/// connection to it fails (`NotTransacted`: what a handle answers once the virtual card
/// behind vpcd is gone), the reader went away (`ReaderUnavailable`), or pcscd lost the
/// handle or stopped (`InvalidHandle`, `NoService`, `ServiceStopped`).
pub(super) fn card_gone(e: &yubikey::Error) -> bool {
    state_cleared(e)
        || matches!(
            e,
            yubikey::Error::PcscError {
                inner: Some(
                    pcsc::Error::NotTransacted
                        | pcsc::Error::ReaderUnavailable
                        | pcsc::Error::InvalidHandle
                        | pcsc::Error::NoService
                        | pcsc::Error::ServiceStopped
                )
            }
        )
}

/// The [`card_gone`] errors that say the card itself lost its security state: it was
/// reset, powered down or removed, so no PIN verified through the handle is left on it.
fn state_cleared(e: &yubikey::Error) -> bool {
    matches!(
        e,
        yubikey::Error::PcscError {
            inner: Some(
                pcsc::Error::ResetCard
                    | pcsc::Error::UnpoweredCard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::NoSmartcard
            )
        }
    )
}
