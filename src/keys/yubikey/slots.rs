//! Key slots: reading a slot's public key from its certificate, listing, generating.

use std::time::Duration;

use rand_core::RngCore;
use spki::DecodePublicKey;
use x509_cert::der::Encode;
use yubikey::certificate::yubikey_signer::{Rsa2048, YubiRsa};
use yubikey::piv::{AlgorithmId, SlotId};
use yubikey::{Certificate, PinPolicy as YkPinPolicy, TouchPolicy as YkTouchPolicy, YubiKey};

use crate::keys::error::KeyError;
use crate::keys::pin::PinPolicy;
use crate::keys::piv_policy::{PivPinPolicy, PivTouchPolicy};
use crate::keys::uri::YubiKeyUri;
use crate::tuf::{KeyType, PublicKey};

use super::auth::authenticate;
use super::errors::{err, explain};
use super::pin::{reverify_pin, verify_pin};
use super::scan::{list_devices, open_device};
/// Every PIV slot that can hold a signing key: 9a, 9c, 9d, 9e and the retired 82–95.
const KEY_SLOTS: [u8; 24] = [
    0x9a, 0x9c, 0x9d, 0x9e, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d,
    0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
];

pub(super) fn slot_id(slot: u8) -> Result<SlotId, String> {
    SlotId::try_from(slot).map_err(|_| format!("{slot:02x} is not a PIV key slot"))
}

fn spki_public_key(spki_der: &[u8]) -> Result<(PublicKey, AlgorithmId), String> {
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der) {
        return Ok((PublicKey::EcdsaP256(k), AlgorithmId::EccP256));
    }
    if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki_der) {
        use rsa::traits::PublicKeyParts;
        if k.n().bits() == 2048 {
            return Ok((PublicKey::RsaPss(k), AlgorithmId::Rsa2048));
        }
        return Err(format!(
            "RSA-{} keys are not supported on YubiKeys here",
            k.n().bits()
        ));
    }
    Err("the slot's key is neither P-256 nor RSA-2048 (P-384 and others have no TUF scheme in tufkey)".into())
}

/// The slot's public key, from the certificate tufkey (or another tool) stored with it.
pub(super) fn read_slot(
    yk: &mut YubiKey,
    uri: &YubiKeyUri,
) -> Result<(PublicKey, AlgorithmId, Vec<u8>), KeyError> {
    let slot = slot_id(uri.slot).map_err(|r| err(uri, r))?;
    let cert = Certificate::read(yk, slot).map_err(|e| match e {
        yubikey::Error::InvalidObject | yubikey::Error::NotFound => err(uri, format!("slot {:02x} holds no certificate, so its key (if any) cannot be named; generate one with `tufkey key generate {uri} --type ecdsa-p256`", uri.slot)),
        other => explain(uri, other),
    })?;
    let spki = cert
        .subject_pki()
        .to_der()
        .map_err(|e| err(uri, e.to_string()))?;
    let (public, alg) = spki_public_key(&spki).map_err(|r| err(uri, r))?;
    Ok((public, alg, spki))
}

/// The URI with the serial filled in.
pub(super) fn full_uri(yk: &YubiKey, uri: &YubiKeyUri) -> YubiKeyUri {
    YubiKeyUri {
        serial: Some(yk.serial().0),
        slot: uri.slot,
    }
}

/// The public key in a slot; no PIN needed.
pub fn public_key(uri: &YubiKeyUri) -> Result<PublicKey, KeyError> {
    let mut yk = open_device(uri)?;
    Ok(read_slot(&mut yk, uri)?.0)
}

/// A slot that holds a key, and its public key (or why it cannot be read).
pub type SlotKey = (YubiKeyUri, Result<PublicKey, String>);

/// Keys in the signing slots of every present YubiKey.
pub fn list_keys() -> Result<Vec<SlotKey>, KeyError> {
    let mut out = Vec::new();
    for d in list_devices()? {
        let mut yk = open_device(&YubiKeyUri {
            serial: Some(d.serial),
            slot: 0x9c,
        })?;
        for slot in KEY_SLOTS {
            let uri = YubiKeyUri {
                serial: Some(d.serial),
                slot,
            };
            match read_slot(&mut yk, &uri) {
                Ok((k, _, _)) => out.push((uri, Ok(k))),
                Err(KeyError::Unsupported { reason, .. })
                    if reason.contains("holds no certificate") => {}
                Err(e) => out.push((uri, Err(e.to_string()))),
            }
        }
    }
    Ok(out)
}

/// Generates a key in the slot, then stores a self-signed certificate with it so the
/// public key can be read later without a PIN. Refuses a slot that already holds a key.
pub fn generate(
    uri: &YubiKeyUri,
    key_type: KeyType,
    pin_policy: PivPinPolicy,
    touch: PivTouchPolicy,
    policy: &PinPolicy,
) -> Result<(YubiKeyUri, PublicKey), KeyError> {
    let alg = match key_type {
        KeyType::EcdsaP256 => AlgorithmId::EccP256,
        KeyType::Rsa2048 => AlgorithmId::Rsa2048,
        KeyType::Ed25519 => return Err(err(uri, "Ed25519 PIV keys need firmware 5.7 and a newer yubikey crate than this build has; use --type ecdsa-p256")),
        KeyType::Rsa3072 => return Err(err(uri, "RSA-3072 PIV keys need firmware 5.7 and a newer yubikey crate than this build has; use --type ecdsa-p256 (or rsa-2048)")),
    };
    let slot = slot_id(uri.slot).map_err(|r| err(uri, r))?;
    let mut yk = open_device(uri)?;
    let full = full_uri(&yk, uri);
    refuse_occupied(&mut yk, &full, slot)?;
    let pin = verify_pin(&mut yk, &full, policy, None)?;
    authenticate(&mut yk, &full)?;
    let (pin_p, touch_p) = yk_policies(pin_policy, touch);
    let spki = yubikey::piv::generate(&mut yk, slot, alg, pin_p, touch_p)
        .map_err(|e| explain(&full, e))?;
    if touch != PivTouchPolicy::Never {
        eprintln!("Touch your YubiKey when it blinks (it signs the new key's certificate)");
    }
    // The self-signed certificate is a signature: slots with PIN policy "always" want the
    // PIN again. Without a re-SELECT: the certificate write needs the management key.
    reverify_pin(&mut yk, &full, &pin)?;
    let public = store_self_signed(&mut yk, &full, slot, alg, spki)?;
    Ok((full, public))
}

/// Refuses a slot that already holds a key: tufkey never overwrites one. A key without a
/// certificate (made by another tool) shows in the slot's metadata (firmware 5.3+); older
/// firmware answers NotSupported and only the certificate tells.
pub(super) fn refuse_occupied(
    yk: &mut YubiKey,
    full: &YubiKeyUri,
    slot: SlotId,
) -> Result<(), KeyError> {
    let has_key = Certificate::read(yk, slot).is_ok() || yubikey::piv::metadata(yk, slot).is_ok();
    if has_key {
        return Err(err(full, format!("slot {:02x} already holds a key; tufkey never overwrites one. Choose another slot (9a, 9c, 9d, 9e, 82-95) or clear it with ykman", full.slot)));
    }
    Ok(())
}

/// tufkey's PIN and touch policies as the `yubikey` crate names them.
pub(super) fn yk_policies(
    pin: PivPinPolicy,
    touch: PivTouchPolicy,
) -> (YkPinPolicy, YkTouchPolicy) {
    let pin_p = match pin {
        PivPinPolicy::Default => YkPinPolicy::Default,
        PivPinPolicy::Once => YkPinPolicy::Once,
        PivPinPolicy::Always => YkPinPolicy::Always,
    };
    let touch_p = match touch {
        PivTouchPolicy::Never => YkTouchPolicy::Never,
        PivTouchPolicy::Always => YkTouchPolicy::Always,
        PivTouchPolicy::Cached => YkTouchPolicy::Cached,
    };
    (pin_p, touch_p)
}

/// Stores a self-signed certificate for the key in `slot` (made on the card from the
/// slot's key, so a slot with PIN policy "always" needs the PIN verified just before),
/// so its public key can be read later without a PIN; returns that public key.
pub(super) fn store_self_signed(
    yk: &mut YubiKey,
    full: &YubiKeyUri,
    slot: SlotId,
    alg: AlgorithmId,
    spki: x509_cert::spki::SubjectPublicKeyInfoOwned,
) -> Result<PublicKey, KeyError> {
    let mut serial = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    let serial = x509_cert::serial_number::SerialNumber::new(&serial)
        .map_err(|e| err(full, e.to_string()))?;
    let validity = x509_cert::time::Validity::from_now(Duration::from_secs(100 * 365 * 86400))
        .map_err(|e| err(full, e.to_string()))?;
    let subject: x509_cert::name::Name = format!("CN=tufkey {:02x} {}", full.slot, yk.serial().0)
        .parse()
        .map_err(|e: x509_cert::der::Error| err(full, e.to_string()))?;
    let cert = match alg {
        AlgorithmId::EccP256 => Certificate::generate_self_signed::<_, p256::NistP256>(
            yk,
            slot,
            serial,
            validity,
            subject,
            spki,
            |_| Ok(()),
        ),
        _ => Certificate::generate_self_signed::<_, YubiRsa<Rsa2048>>(
            yk,
            slot,
            serial,
            validity,
            subject,
            spki,
            |_| Ok(()),
        ),
    }
    .map_err(|e| explain(full, e))?;
    let der = cert
        .subject_pki()
        .to_der()
        .map_err(|e| err(full, e.to_string()))?;
    let (public, _) = spki_public_key(&der).map_err(|r| err(full, r))?;
    Ok(public)
}
