//! [`YubiKeySigner`]: signs in a slot (RSA-PSS encoded here), verifies the PIN it holds
//! before each signature and reopens its card once after a reset or re-insertion.

use std::sync::Mutex;

use rand_core::RngCore;
use sha2::{Digest, Sha256};
use yubikey::piv::{AlgorithmId, SlotId};

use crate::keys::error::{KeyError, Outcome};
use crate::keys::pin::PinPolicy;
use crate::keys::secret::Secret;
use crate::keys::signer::Signer;
use crate::keys::uri::YubiKeyUri;
use crate::tuf::Key;

use super::errors::{err, explain, reason};
use super::held::Held;
use super::pin::{verify_pin, verify_pin_on, Failure, PinRefusal};
use super::scan::{open_device, present_list, scan, Scan};
use super::slots::{full_uri, read_slot, slot_id};
/// EMSA-PSS encoding (RFC 8017 9.1.1) with SHA-256, MGF1-SHA256 and a 32-byte salt, for a
/// key of `mod_bits` bits: the card then applies the raw RSA operation.
fn emsa_pss_encode(message: &[u8], mod_bits: usize) -> Vec<u8> {
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let m_hash = Sha256::digest(message);
    let mut salt = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut salt);
    let mut m_prime = Vec::with_capacity(8 + 32 + 32);
    m_prime.extend_from_slice(&[0u8; 8]);
    m_prime.extend_from_slice(&m_hash);
    m_prime.extend_from_slice(&salt);
    let h = Sha256::digest(&m_prime);
    let db_len = em_len - 32 - 1;
    let mut db = vec![0u8; db_len];
    db[db_len - 32 - 1] = 0x01;
    db[db_len - 32..].copy_from_slice(&salt);
    // MGF1 with SHA-256.
    let mut mask = Vec::with_capacity(db_len + 32);
    let mut counter = 0u32;
    while mask.len() < db_len {
        let mut hasher = Sha256::new();
        hasher.update(h);
        hasher.update(counter.to_be_bytes());
        mask.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    for (d, m) in db.iter_mut().zip(mask) {
        *d ^= m;
    }
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let mut em = db;
    em.extend_from_slice(&h);
    em.push(0xbc);
    em
}

/// A signer whose key stays in a YubiKey PIV slot.
///
/// It keeps one PC/SC connection. When a signature finds that the card was reset or
/// removed under it (another program reset the card, pcscd powered it down, the YubiKey
/// was unplugged and plugged back), the signer lets go of the old handle without a reset,
/// looks for the card by its serial once, without waiting, checks that the slot still
/// holds this signer's public key, verifies the PIN under the same rules as before every
/// signature, and signs: at most one reopen per signature. The `yubikey` crate's own
/// `reconnect` is never used: it resends a PIN it cached on its own.
pub struct YubiKeySigner {
    /// Reset when the signer is dropped: the PIN was verified when it was opened. `None`
    /// after the card went away and could not be opened again; the next signature looks
    /// for it again.
    yk: Mutex<Option<Held>>,
    uri: YubiKeyUri,
    shown: String,
    serial: u32,
    slot: SlotId,
    alg: AlgorithmId,
    /// The slot's public key (SPKI DER) when the signer was opened: a card found again
    /// under the same serial must hold the same key.
    spki: Vec<u8>,
    pin: Secret,
    /// Set when the card refused the PIN this signer holds: it is never sent again.
    refused: Mutex<PinRefusal>,
    public: Key,
    keyid: String,
}

impl YubiKeySigner {
    /// Opens the YubiKey, reads the slot's public key and verifies the PIN once.
    pub fn open(uri: &YubiKeyUri, policy: &PinPolicy) -> Result<YubiKeySigner, KeyError> {
        let mut yk = open_device(uri)?;
        let full = full_uri(&yk, uri);
        let (public, alg, spki) = read_slot(&mut yk, &full)?;
        let pin = verify_pin(&mut yk, &full, policy, None)?;
        let slot = slot_id(full.slot).map_err(|r| err(&full, r))?;
        let tuf_key = public.to_tuf_key();
        let keyid = tuf_key.key_id();
        Ok(YubiKeySigner {
            serial: yk.serial().0,
            yk: Mutex::new(Some(yk)),
            shown: full.to_string(),
            uri: full,
            slot,
            alg,
            spki,
            pin,
            refused: Mutex::new(PinRefusal::default()),
            public: tuf_key,
            keyid,
        })
    }

    /// Verifies the held PIN and signs `input` (a digest, or an EMSA-PSS block) on `yk`.
    fn sign_on(
        &self,
        yk: &mut Held,
        refused: &mut PinRefusal,
        input: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        // Slot 9c (and PIN policy "always") wants the PIN right before each signature.
        // These verifications are tufkey's own, with the PIN that worked at open: they
        // never spend a final try, `--force` or not (that was for the first one).
        let policy = PinPolicy {
            force: false,
            remember: false,
            interactive: false,
        };
        match verify_pin_on(yk, &self.uri, &policy, Some(&self.pin)) {
            Ok(_) => {}
            Err(Failure::Failed(e)) => {
                return Err(Failure::Failed(refused.note(Err::<(), _>(e)).unwrap_err()))
            }
            Err(gone) => return Err(gone),
        }
        let out = yubikey::piv::sign_data(yk, input, self.alg, self.slot).map_err(|e| match e {
            yubikey::Error::GenericError | yubikey::Error::AuthenticationError => Failure::Failed(err(
                &self.uri,
                "the YubiKey refused to sign: if it blinked, it wanted a touch that was not given in time; touch it and try again",
            )),
            other => Failure::from_card(&self.uri, other),
        })?;
        let mut sig = out.to_vec();
        if self.alg == AlgorithmId::Rsa2048 && sig.len() < 256 {
            let mut padded = vec![0u8; 256 - sig.len()];
            padded.extend_from_slice(&sig);
            sig = padded;
        }
        Ok(sig)
    }

    /// Opens the card again after it went away under the signer: by serial, once,
    /// without waiting, and only if the slot still holds this signer's public key. The
    /// PIN is not sent here. `cause`: what the old handle answered (`None`: there was no
    /// handle, an earlier reopen failed).
    pub(super) fn reopen(&self, cause: Option<&yubikey::Error>) -> Result<Held, KeyError> {
        let serial = self.serial;
        let what = match cause {
            Some(yubikey::Error::PcscError {
                inner: Some(pcsc::Error::ResetCard | pcsc::Error::UnpoweredCard),
            }) => "it was reset or powered down by something else (another program, pcscd)"
                .to_string(),
            Some(yubikey::Error::PcscError {
                inner: Some(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard),
            }) => "it was removed".to_string(),
            Some(yubikey::Error::PcscError { inner: Some(e) }) => {
                format!("the connection to it was lost (pcsc {e:?})")
            }
            Some(e) => format!("the connection to it was lost ({e})"),
            None => "it was not available at an earlier signature".to_string(),
        };
        let again = |why: String| {
            err(
                &self.uri,
                format!("YubiKey {serial} could not be opened again after {what}: {why}"),
            )
        };
        // Same words, but a card or service that is not there stays "unavailable".
        let again_as = |e: KeyError| {
            let unavailable = e.outcome() == Outcome::Unavailable;
            let why = format!(
                "YubiKey {serial} could not be opened again after {what}: {}",
                reason(e)
            );
            if unavailable {
                KeyError::CardAbsent {
                    uri: self.uri.to_string(),
                    reason: why,
                }
            } else {
                err(&self.uri, why)
            }
        };
        let mut yk = match scan(&self.uri).map_err(again_as)? {
            Scan::Found(yk) => yk,
            Scan::Absent(present) => {
                return Err(KeyError::CardAbsent {
                    uri: self.uri.to_string(),
                    reason: format!(
                        "YubiKey {serial} could not be opened again after {what}: it is not inserted ({}). Nothing was signed; insert YubiKey {serial}: the next signature opens it again, no restart needed",
                        present_list(&present)
                    ),
                })
            }
        };
        let (_, _, spki) = read_slot(&mut yk, &self.uri).map_err(again_as)?;
        if spki != self.spki {
            // Only read so far: the card is released leaving it as it is.
            return Err(again(format!(
                "the card now answering as serial {serial} holds another key in slot {:02x} than the one this signer opened (key id {}), so tufkey does not trust it and sent it no PIN. Insert the YubiKey this process opened (the next signature looks again), or restart tufkey to use this one",
                self.uri.slot, self.keyid
            )));
        }
        Ok(yk)
    }
}

impl Signer for YubiKeySigner {
    fn uri(&self) -> &str {
        &self.shown
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut held = self.yk.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.check(&format!("YubiKey {}", self.serial), &self.shown)?;
        let input = match self.alg {
            AlgorithmId::EccP256 => Sha256::digest(message).to_vec(),
            _ => emsa_pss_encode(message, 2048),
        };
        let first = match held.as_mut() {
            Some(yk) => self.sign_on(yk, &mut refused, &input),
            None => Err(Failure::Gone(None)),
        };
        let cause = match first {
            Ok(sig) => return Ok(sig),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Gone(cause)) => cause,
        };
        // The handle is dead (the card was reset or removed under it, or the connection
        // was lost): let go of it (without a reset when the card already lost its state),
        // look for the card once, and try once more. One reopen per signature; no loop.
        if let Some(old) = held.take() {
            old.release_gone(cause.as_ref());
        }
        let yk = held.insert(self.reopen(cause.as_ref())?);
        match self.sign_on(yk, &mut refused, &input) {
            Ok(sig) => Ok(sig),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::Gone(e)) => {
                if let Some(old) = held.take() {
                    old.release_gone(e.as_ref());
                }
                let e = e.map(|e| reason(explain(&self.uri, e))).unwrap_or_default();
                Err(err(
                    &self.uri,
                    format!(
                        "YubiKey {} went away again right after tufkey opened it anew ({e}); nothing was signed. The next signature opens it again",
                        self.serial
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::PublicKey;

    #[test]
    fn pss_encoding_done_here_verifies_as_rsassa_pss_sha256() {
        use rsa::traits::PrivateKeyParts;
        let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let em = emsa_pss_encode(b"canonical bytes", 2048);
        // The card's raw RSA operation: em^d mod n.
        let m = rsa::BigUint::from_bytes_be(&em);
        let s = m
            .modpow(k.d(), rsa::traits::PublicKeyParts::n(&k))
            .to_bytes_be();
        let mut sig = vec![0u8; 256 - s.len()];
        sig.extend_from_slice(&s);
        let public = PublicKey::RsaPss(k.to_public_key()).to_tuf_key();
        public
            .verify_hex(b"canonical bytes", &hex::encode(&sig))
            .unwrap();
        assert!(public
            .verify_hex(b"other bytes", &hex::encode(&sig))
            .is_err());
    }
}
