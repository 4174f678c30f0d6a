//! The X.509 certificates Notary uses as root keys (`ecdsa-x509`, `rsa-x509`): their
//! subject CN (Notary requires it to be the GUN), validity window, CA flag, signature
//! algorithm and public key, checked the way Notary's `ValidateCertificate` and trust
//! pinning check them.

use chrono::{DateTime, Duration, Utc};
use spki::DecodePublicKey;
use x509_cert::der::oid::db::rfc4519::CN;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;

use crate::tuf::PublicKey;

/// SHA-1 signature algorithms Notary refuses: sha1WithRSA, dsaWithSHA1, ecdsaWithSHA1.
const SHA1_SIG_OIDS: [&str; 3] = [
    "1.2.840.113549.1.1.5",
    "1.2.840.10040.4.3",
    "1.2.840.10045.4.1",
];

/// A parsed root certificate.
#[derive(Debug, Clone)]
pub struct NotaryCert {
    pub der: Vec<u8>,
    pub common_name: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub is_ca: bool,
    pub signature_oid: String,
    spki_der: Vec<u8>,
}

impl NotaryCert {
    /// The first `CERTIFICATE` block of PEM text (Notary stores certificates as PEM).
    pub fn from_pem(pem: &[u8]) -> Result<NotaryCert, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "the certificate is not PEM text")?;
        let block = super::pemfile::parse(text)?;
        if block.kind != "CERTIFICATE" {
            return Err(format!(
                "a `{}` PEM block where a certificate belongs",
                block.kind
            ));
        }
        NotaryCert::from_der(&block.body)
    }

    pub fn from_der(der: &[u8]) -> Result<NotaryCert, String> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let mut common_name = String::new();
        for rdn in tbs.subject.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid == CN {
                    if let Ok(s) = std::str::from_utf8(atv.value.value()) {
                        common_name = s.to_string();
                    }
                }
            }
        }
        let time = |t: &x509_cert::time::Time| {
            let secs = t.to_unix_duration().as_secs();
            DateTime::<Utc>::from_timestamp(secs as i64, 0).unwrap_or_default()
        };
        let is_ca = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == x509_cert::der::oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
            .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|b| b.ca));
        let spki_der = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("the certificate's public key cannot be encoded: {e}"))?;
        Ok(NotaryCert {
            der: der.to_vec(),
            common_name,
            not_before: time(&tbs.validity.not_before),
            not_after: time(&tbs.validity.not_after),
            is_ca,
            signature_oid: cert.signature_algorithm.oid.to_string(),
            spki_der,
        })
    }

    /// The certified key.
    pub fn public_key(&self) -> Result<PublicKey, String> {
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki_der) {
            return Ok(PublicKey::EcdsaP256(k));
        }
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(&self.spki_der) {
            return Ok(PublicKey::RsaPss(k));
        }
        Err("the certificate's key is neither P-256 nor RSA".into())
    }

    /// Notary's certificate rules at time `at`: a leaf (not a CA), no SHA-1 signature,
    /// RSA of at least 2048 bits, CN equal to the GUN, and valid at `at` (Notary allows
    /// a not-before up to one day in the future). Every problem is listed.
    pub fn problems(&self, gun: &str, at: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        let cn = &self.common_name;
        if self.not_before > self.not_after {
            out.push(format!(
                "certificate CN={cn}: its validity window is invalid"
            ));
        }
        if SHA1_SIG_OIDS.contains(&self.signature_oid.as_str()) {
            out.push(format!(
                "certificate CN={cn}: signed with SHA-1, which Notary refuses"
            ));
        }
        if self.is_ca {
            out.push(format!(
                "certificate CN={cn}: a CA certificate, but root keys must be leaf certificates"
            ));
        }
        if let Ok(PublicKey::RsaPss(k)) = self.public_key() {
            use rsa::traits::PublicKeyParts;
            if k.n().bits() < 2048 {
                out.push(format!(
                    "certificate CN={cn}: RSA key shorter than 2048 bits"
                ));
            }
        }
        if cn != gun {
            out.push(format!("certificate CN={cn}: Notary requires the root certificate's CN to be the GUN `{gun}`"));
        }
        if at + Duration::days(1) < self.not_before {
            out.push(format!(
                "certificate CN={cn}: not valid before {} (checked at {})",
                self.not_before.to_rfc3339(),
                at.to_rfc3339()
            ));
        }
        if at > self.not_after {
            out.push(format!(
                "certificate CN={cn}: expired at {} (checked at {}); Notary's client refuses an expired root certificate",
                self.not_after.to_rfc3339(),
                at.to_rfc3339()
            ));
        }
        out
    }
}
