//! PIV attestation of a slot: fetched from the card and checked against Yubico's root
//! (and an extra test root), or checked later from recorded certificates.

use spki::EncodePublicKey;

use crate::keys::error::KeyError;
use crate::keys::uri::YubiKeyUri;
use crate::tuf::PublicKey;

use super::attestation;
use super::attestation::Attestation;
use super::errors::{err, explain};
use super::scan::open_device;
use super::slots::{full_uri, read_slot, slot_id};
/// Fetches and verifies the slot's attestation. `extra_roots` are PEM roots trusted in
/// addition to Yubico's (a test CA). Returns the statement and the two certificates (PEM).
pub fn attest(
    uri: &YubiKeyUri,
    extra_roots: &[u8],
) -> Result<(Attestation, String, String), KeyError> {
    let mut yk = open_device(uri)?;
    let full = full_uri(&yk, uri);
    let (_, _, spki) = read_slot(&mut yk, &full)?;
    let slot = slot_id(full.slot).map_err(|r| err(&full, r))?;
    let version = yk.version();
    let att = yubikey::piv::attest(&mut yk, slot).map_err(|e| match e {
        yubikey::Error::NotSupported if (version.major, version.minor) >= (4, 3) => err(
            &full,
            "this card does not implement attestation (Yubico's ATTEST; generic PIV cards such as Nitrokey 3 lack it): the key cannot be attested, and a ceremony made with --require-attestation refuses it",
        ),
        yubikey::Error::NotSupported => err(
            &full,
            "this YubiKey cannot attest keys (firmware before 4.3)",
        ),
        yubikey::Error::GenericError => err(
            &full,
            format!(
                "slot {:02x} has no attestable key: imported keys cannot be attested",
                full.slot
            ),
        ),
        other => explain(&full, other),
    })?;
    let inter = yk.fetch_object(0x5fff01).map_err(|e| explain(&full, e))?;
    let inter_der = strip_tlv(&inter, 0x70).ok_or_else(|| {
        err(
            &full,
            "the attestation intermediate (object 5FFF01) is malformed",
        )
    })?;
    let slot_cert = attestation::parse_certs(&att)
        .map_err(|r| err(&full, r))?
        .remove(0);
    let inter_cert = attestation::parse_certs(inter_der)
        .map_err(|r| err(&full, r))?
        .remove(0);
    verify_attestation(&full, &slot_cert, &inter_cert, extra_roots, &spki)
}

/// Verifies recorded attestation certificates (PEM) for a public key (SPKI DER).
pub fn verify_recorded(
    uri: &YubiKeyUri,
    slot_pem: &str,
    inter_pem: &str,
    extra_roots: &[u8],
    spki: &[u8],
) -> Result<Attestation, KeyError> {
    let slot_cert = attestation::parse_certs(slot_pem.as_bytes())
        .map_err(|r| err(uri, r))?
        .remove(0);
    let inter_cert = attestation::parse_certs(inter_pem.as_bytes())
        .map_err(|r| err(uri, r))?
        .remove(0);
    verify_attestation(uri, &slot_cert, &inter_cert, extra_roots, spki).map(|(a, _, _)| a)
}

fn verify_attestation(
    uri: &YubiKeyUri,
    slot_cert: &x509_cert::Certificate,
    inter: &x509_cert::Certificate,
    extra_roots: &[u8],
    spki: &[u8],
) -> Result<(Attestation, String, String), KeyError> {
    let roots = attestation::roots(extra_roots)
        .map_err(|r| err(uri, format!("the extra attestation CA: {r}")))?;
    let a = attestation::verify(slot_cert, inter, &roots, spki)
        .map_err(|r| err(uri, format!("attestation refused: {r}")))?;
    if let (Some(s), Some(want)) = (a.serial, uri.serial) {
        if s != want {
            return Err(err(
                uri,
                format!("attestation refused: it is for YubiKey serial {s}, not {want}"),
            ));
        }
    }
    Ok((
        a,
        attestation::to_pem(slot_cert),
        attestation::to_pem(inter),
    ))
}

/// The SPKI (DER) of a TUF public key, to compare with an attested key.
pub fn spki_der(public: &PublicKey) -> Option<Vec<u8>> {
    match public {
        PublicKey::EcdsaP256(k) => k.to_public_key_der().ok().map(|d| d.as_bytes().to_vec()),
        PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k) => {
            k.to_public_key_der().ok().map(|d| d.as_bytes().to_vec())
        }
        PublicKey::Ed25519(k) => k.to_public_key_der().ok().map(|d| d.as_bytes().to_vec()),
    }
}

/// The value of the first TLV with `tag` (one- or multi-byte BER length).
pub(crate) fn strip_tlv(data: &[u8], tag: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i + 2 <= data.len() {
        let t = data[i];
        let (len, hdr) = match data[i + 1] {
            n if n < 0x80 => (n as usize, 2),
            0x81 => (*data.get(i + 2)? as usize, 3),
            0x82 => (
                (*data.get(i + 2)? as usize) << 8 | *data.get(i + 3)? as usize,
                4,
            ),
            _ => return None,
        };
        let start = i + hdr;
        let end = start.checked_add(len)?;
        if end > data.len() {
            return None;
        }
        if t == tag {
            return Some(&data[start..end]);
        }
        i = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_values_are_found() {
        let mut obj = vec![0x70, 0x82, 0x01, 0x00];
        obj.extend(vec![7u8; 256]);
        obj.extend([0x71, 0x01, 0x00, 0xfe, 0x00]);
        assert_eq!(strip_tlv(&obj, 0x70).map(<[u8]>::len), Some(256));
        assert_eq!(strip_tlv(&obj, 0x71), Some(&[0u8][..]));
        assert_eq!(strip_tlv(&[0x70, 0x05, 1], 0x70), None);
    }
}
