//! Importing a software P-256 key into a PIV slot (moving a key out of a file, e.g. a
//! Notary key store, into a YubiKey): the same rules as generating one — never over a
//! key already in the slot, the PIN's retry counter read first, the management key
//! authenticated the way `auth.rs` does — then a self-signed certificate so the public
//! key can be read later without a PIN. The key cannot be attested: only keys made on
//! the card can.

use spki::EncodePublicKey;
use x509_cert::der::Decode;
use yubikey::piv::AlgorithmId;
use zeroize::Zeroizing;

use crate::keys::error::KeyError;
use crate::keys::file::SoftKey;
use crate::keys::pin::PinPolicy;
use crate::keys::piv_policy::{PivPinPolicy, PivTouchPolicy};
use crate::keys::uri::YubiKeyUri;
use crate::tuf::PublicKey;

use super::auth::authenticate;
use super::errors::{err, explain};
use super::pin::{reverify_pin, verify_pin};
use super::scan::open_device;
use super::slots::{refuse_occupied, slot_id, store_self_signed, yk_policies};

/// Writes `key` (P-256 only) into the slot `uri` names; returns the URI with the serial
/// filled in and the public key read back from the stored certificate.
pub fn import(
    uri: &YubiKeyUri,
    key: &SoftKey,
    pin_policy: PivPinPolicy,
    touch: PivTouchPolicy,
    policy: &PinPolicy,
) -> Result<(YubiKeyUri, PublicKey), KeyError> {
    let SoftKey::EcdsaP256(signing) = key else {
        return Err(err(
            uri,
            "only P-256 keys are imported into YubiKey slots here; import RSA and Ed25519 keys into a PKCS#11 token instead",
        ));
    };
    let slot = slot_id(uri.slot).map_err(|r| err(uri, r))?;
    let spki_der = signing
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| err(uri, e.to_string()))?;
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
        .map_err(|e| err(uri, e.to_string()))?;
    let mut yk = open_device(uri)?;
    let full = super::slots::full_uri(&yk, uri);
    refuse_occupied(&mut yk, &full, slot)?;
    let pin = verify_pin(&mut yk, &full, policy, None)?;
    authenticate(&mut yk, &full)?;
    let (pin_p, touch_p) = yk_policies(pin_policy, touch);
    let scalar = Zeroizing::new(signing.to_bytes().to_vec());
    yubikey::piv::import_ecc_key(&mut yk, slot, AlgorithmId::EccP256, &scalar, touch_p, pin_p)
        .map_err(|e| explain(&full, e))?;
    if touch != PivTouchPolicy::Never {
        eprintln!("Touch your YubiKey when it blinks (it signs the imported key's certificate)");
    }
    reverify_pin(&mut yk, &full, &pin)?;
    let public = store_self_signed(&mut yk, &full, slot, AlgorithmId::EccP256, spki)?;
    if public.to_tuf_key() != key.public().to_tuf_key() {
        return Err(err(
            &full,
            format!(
                "slot {:02x} answers with another public key than the one imported; do not use it",
                full.slot
            ),
        ));
    }
    Ok((full, public))
}
