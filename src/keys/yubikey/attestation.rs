//! YubiKey PIV attestation: the slot's attestation certificate, signed by the device's
//! attestation intermediate (object 5FFF01), signed by Yubico's PIV root CA. Proves
//! that the key was generated on that YubiKey (serial, firmware) with the stated PIN
//! and touch policies, and can never have left it.
//!
//! Pure X.509 work, no device access: the backend fetches the certificates.

use serde::Serialize;
use sha2::{Digest, Sha256};
use spki::DecodePublicKey;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

/// Yubico PIV Root CA Serial 263751, the root of attestations from YubiKey 4.3 and 5
/// (before firmware 5.7.4). https://developers.yubico.com/PIV/Introduction/PIV_attestation.html
pub const YUBICO_PIV_ROOT_CA: &str = "-----BEGIN CERTIFICATE-----
MIIDFzCCAf+gAwIBAgIDBAZHMA0GCSqGSIb3DQEBCwUAMCsxKTAnBgNVBAMMIFl1
YmljbyBQSVYgUm9vdCBDQSBTZXJpYWwgMjYzNzUxMCAXDTE2MDMxNDAwMDAwMFoY
DzIwNTIwNDE3MDAwMDAwWjArMSkwJwYDVQQDDCBZdWJpY28gUElWIFJvb3QgQ0Eg
U2VyaWFsIDI2Mzc1MTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMN2
cMTNR6YCdcTFRxuPy31PabRn5m6pJ+nSE0HRWpoaM8fc8wHC+Tmb98jmNvhWNE2E
ilU85uYKfEFP9d6Q2GmytqBnxZsAa3KqZiCCx2LwQ4iYEOb1llgotVr/whEpdVOq
joU0P5e1j1y7OfwOvky/+AXIN/9Xp0VFlYRk2tQ9GcdYKDmqU+db9iKwpAzid4oH
BVLIhmD3pvkWaRA2H3DA9t7H/HNq5v3OiO1jyLZeKqZoMbPObrxqDg+9fOdShzgf
wCqgT3XVmTeiwvBSTctyi9mHQfYd2DwkaqxRnLbNVyK9zl+DzjSGp9IhVPiVtGet
X02dxhQnGS7K6BO0Qe8CAwEAAaNCMEAwHQYDVR0OBBYEFMpfyvLEojGc6SJf8ez0
1d8Cv4O/MA8GA1UdEwQIMAYBAf8CAQEwDgYDVR0PAQH/BAQDAgEGMA0GCSqGSIb3
DQEBCwUAA4IBAQBc7Ih8Bc1fkC+FyN1fhjWioBCMr3vjneh7MLbA6kSoyWF70N3s
XhbXvT4eRh0hvxqvMZNjPU/VlRn6gLVtoEikDLrYFXN6Hh6Wmyy1GTnspnOvMvz2
lLKuym9KYdYLDgnj3BeAvzIhVzzYSeU77/Cupofj093OuAswW0jYvXsGTyix6B3d
bW5yWvyS9zNXaqGaUmP3U9/b6DlHdDogMLu3VLpBB9bm5bjaKWWJYgWltCVgUbFq
Fqyi4+JE014cSgR57Jcu3dZiehB6UtAPgad9L5cNvua/IWRmm+ANy3O2LH++Pyl8
SREzU8onbBsjMg9QDiSf5oJLKvd/Ren+zGY7
-----END CERTIFICATE-----
";

const OID_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
const OID_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";
const OID_POLICY: &str = "1.3.6.1.4.1.41482.3.8";
const OID_FORM_FACTOR: &str = "1.3.6.1.4.1.41482.3.9";
const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// What an attestation says, once verified.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attestation {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub pin_policy: String,
    pub touch_policy: String,
    pub form_factor: Option<String>,
    /// Subject of the root the chain ends at.
    pub root: String,
    /// SHA-256 of the attested SubjectPublicKeyInfo (DER).
    pub spki_sha256: String,
}

fn pem_or_der(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    match std::str::from_utf8(data) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {
            let mut out = Vec::new();
            for block in text
                .split("-----END CERTIFICATE-----")
                .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
            {
                let pem = format!("{block}-----END CERTIFICATE-----\n");
                let (_, der) = x509_cert::der::pem::decode_vec(pem.trim_start().as_bytes())
                    .map_err(|e| format!("bad PEM certificate: {e}"))?;
                out.push(der);
            }
            Ok(out)
        }
        _ => Ok(vec![data.to_vec()]),
    }
}

/// Parses one or more certificates from PEM (several blocks) or a single DER.
pub fn parse_certs(data: &[u8]) -> Result<Vec<Certificate>, String> {
    pem_or_der(data)?
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}")))
        .collect()
}

/// PEM of a certificate.
pub fn to_pem(cert: &Certificate) -> String {
    use x509_cert::der::EncodePem;
    cert.to_pem(x509_cert::der::pem::LineEnding::LF)
        .unwrap_or_default()
}

/// Checks that `issuer` signed `cert` (RSA PKCS#1 v1.5 or ECDSA P-256, SHA-256).
fn check_signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "issued by \"{}\", not by \"{}\"",
            cert.tbs_certificate.issuer, issuer.tbs_certificate.subject
        ));
    }
    let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let sig = cert
        .signature
        .as_bytes()
        .ok_or("the signature is not a whole number of bytes")?;
    let spki = issuer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    match cert.signature_algorithm.oid.to_string().as_str() {
        OID_SHA256_RSA => {
            use rsa::signature::Verifier;
            let key = rsa::RsaPublicKey::from_public_key_der(&spki)
                .map_err(|_| "the issuer's key is not RSA".to_string())?;
            let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|e| e.to_string())?;
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                .verify(&tbs, &sig)
                .map_err(|_| "bad RSA signature".into())
        }
        OID_ECDSA_SHA256 => {
            use p256::ecdsa::signature::Verifier;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                .map_err(|_| "the issuer's key is not P-256".to_string())?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|e| e.to_string())?;
            key.verify(&tbs, &sig)
                .map_err(|_| "bad ECDSA signature".into())
        }
        other => Err(format!("signature algorithm {other} is not supported")),
    }
}

fn policy_name(kind: &str, b: u8) -> String {
    match (kind, b) {
        ("pin", 1) | ("touch", 1) => "never".into(),
        ("pin", 2) => "once".into(),
        ("pin", 3) | ("touch", 2) => "always".into(),
        ("touch", 3) => "cached".into(),
        (_, 0) => "default".into(),
        (_, n) => format!("unknown ({n})"),
    }
}

/// Verifies `slot_cert` ← `intermediate` ← one of `roots`, and that the attested key is
/// `expected_spki_der` (the key in use). Returns what the attestation states.
pub fn verify(
    slot_cert: &Certificate,
    intermediate: &Certificate,
    roots: &[Certificate],
    expected_spki_der: &[u8],
) -> Result<Attestation, String> {
    check_signed_by(slot_cert, intermediate).map_err(|e| {
        format!("the attestation certificate is not signed by the device's attestation key: {e}")
    })?;
    let root = roots
        .iter()
        .find(|r| check_signed_by(intermediate, r).is_ok())
        .ok_or_else(|| {
            format!(
                "the device's attestation certificate (\"{}\") does not chain to a trusted root ({})",
                intermediate.tbs_certificate.subject,
                roots.iter().map(|r| format!("\"{}\"", r.tbs_certificate.subject)).collect::<Vec<_>>().join(", ")
            )
        })?;
    check_signed_by(root, root).map_err(|e| format!("the trusted root is not self-signed: {e}"))?;
    let attested = slot_cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    if attested != expected_spki_der {
        return Err("the attested public key is not the key in this slot: the attestation is for a different key".into());
    }
    let mut a = Attestation {
        serial: None,
        firmware: None,
        pin_policy: "default".into(),
        touch_policy: "default".into(),
        form_factor: None,
        root: root.tbs_certificate.subject.to_string(),
        spki_sha256: hex::encode(Sha256::digest(&attested)),
    };
    for ext in slot_cert.tbs_certificate.extensions.iter().flatten() {
        let v = ext.extn_value.as_bytes();
        match ext.extn_id.to_string().as_str() {
            OID_FIRMWARE if v.len() == 3 => {
                a.firmware = Some(format!("{}.{}.{}", v[0], v[1], v[2]))
            }
            OID_SERIAL => {
                // A DER INTEGER.
                if let Ok(i) = x509_cert::der::asn1::Uint::from_der(v) {
                    a.serial = Some(
                        i.as_bytes()
                            .iter()
                            .fold(0u32, |acc, b| acc.wrapping_shl(8) | u32::from(*b)),
                    );
                }
            }
            OID_POLICY if v.len() == 2 => {
                a.pin_policy = policy_name("pin", v[0]);
                a.touch_policy = policy_name("touch", v[1]);
            }
            OID_FORM_FACTOR if !v.is_empty() => {
                a.form_factor = Some(
                    match v[0] & 0x7f {
                        1 => "USB-A keychain",
                        2 => "USB-A nano",
                        3 => "USB-C keychain",
                        4 => "USB-C nano",
                        5 => "USB-C Lightning",
                        6 => "USB-A Bio",
                        7 => "USB-C Bio",
                        _ => "unknown",
                    }
                    .into(),
                )
            }
            _ => {}
        }
    }
    Ok(a)
}

/// The roots tufkey trusts: Yubico's PIV root, plus extra roots (e.g. a test CA).
pub fn roots(extra: &[u8]) -> Result<Vec<Certificate>, String> {
    let mut out = parse_certs(YUBICO_PIV_ROOT_CA.as_bytes())?;
    if !extra.is_empty() {
        out.extend(parse_certs(extra)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_yubico_root_parses_and_is_self_signed() {
        let roots = roots(&[]).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(
            roots[0].tbs_certificate.subject.to_string(),
            "CN=Yubico PIV Root CA Serial 263751"
        );
        check_signed_by(&roots[0], &roots[0]).unwrap();
    }
}
