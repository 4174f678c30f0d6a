//! Notary's public keys as its trust data writes them (`{"keytype": "ecdsa" | "ecdsa-x509"
//! | "rsa" | "rsa-x509" | "ed25519", "keyval": {"private": null, "public": BASE64}}`),
//! Notary's key ids (SHA-256 over the canonical JSON of exactly that object) and the TUF
//! 1.0 key for the same public key, so a key can be followed from Notary to tufkey.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, EncodePublicKey};

use super::cert::NotaryCert;
use crate::keys::file::SoftKey;
use crate::tuf::cjson::to_canonical;
use crate::tuf::PublicKey;

/// A public key as Notary lists it in root.json or a delegation.
#[derive(Debug, Clone)]
pub struct NotaryKey {
    /// `ecdsa`, `ecdsa-x509`, `rsa`, `rsa-x509` or `ed25519`.
    pub keytype: String,
    /// The decoded `keyval.public`: SPKI DER, a PEM certificate, or a raw Ed25519 key.
    pub public: Vec<u8>,
}

impl NotaryKey {
    /// Reads `{"keytype", "keyval": {"public": BASE64}}`.
    pub fn from_value(v: &Value) -> Result<NotaryKey, String> {
        let keytype = v
            .get("keytype")
            .and_then(Value::as_str)
            .ok_or("a key without `keytype`")?;
        let b64 = v
            .pointer("/keyval/public")
            .and_then(Value::as_str)
            .ok_or("a key without `keyval.public`")?;
        let public = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("`keyval.public` is not base64: {e}"))?;
        Ok(NotaryKey {
            keytype: keytype.to_string(),
            public,
        })
    }

    /// The public half of a private key, as Notary writes it (`ecdsa`, `rsa`, `ed25519`).
    pub fn of_private(key: &SoftKey) -> NotaryKey {
        match key.public() {
            PublicKey::EcdsaP256(k) => NotaryKey {
                keytype: "ecdsa".into(),
                public: spki_der(&k),
            },
            PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k) => NotaryKey {
                keytype: "rsa".into(),
                public: spki_der(&k),
            },
            PublicKey::Ed25519(k) => NotaryKey {
                keytype: "ed25519".into(),
                public: k.as_bytes().to_vec(),
            },
        }
    }

    /// The JSON object Notary stores and hashes for the key id.
    pub fn to_value(&self) -> Value {
        json!({
            "keytype": self.keytype,
            "keyval": {
                "private": null,
                "public": base64::engine::general_purpose::STANDARD.encode(&self.public),
            }
        })
    }

    /// Notary's key id: SHA-256 of the canonical JSON of [`NotaryKey::to_value`].
    pub fn notary_id(&self) -> String {
        // The object has strings and null only: canonical JSON cannot fail on it.
        let bytes = to_canonical(&self.to_value()).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// Whether the key is a certificate (Notary's root keys).
    pub fn is_x509(&self) -> bool {
        self.keytype.ends_with("-x509")
    }

    /// The certificate of an `*-x509` key.
    pub fn certificate(&self) -> Result<NotaryCert, String> {
        if !self.is_x509() {
            return Err(format!("a `{}` key holds no certificate", self.keytype));
        }
        NotaryCert::from_pem(&self.public)
    }

    /// The key that verifies signatures: the certificate's key for `*-x509` keys.
    pub fn public_key(&self) -> Result<PublicKey, String> {
        match self.keytype.as_str() {
            "ecdsa" => p256::ecdsa::VerifyingKey::from_public_key_der(&self.public)
                .map(PublicKey::EcdsaP256)
                .map_err(|_| "an `ecdsa` key that is not P-256 SPKI".into()),
            "rsa" => rsa::RsaPublicKey::from_public_key_der(&self.public)
                .map(PublicKey::RsaPss)
                .map_err(|_| "an `rsa` key that is not RSA SPKI".into()),
            "ed25519" => {
                let raw: [u8; 32] = self
                    .public
                    .as_slice()
                    .try_into()
                    .map_err(|_| "an `ed25519` key must be 32 bytes")?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map(PublicKey::Ed25519)
                    .map_err(|_| "an invalid Ed25519 public key".into())
            }
            "ecdsa-x509" | "rsa-x509" => {
                let cert = self.certificate()?;
                let k = cert.public_key()?;
                match (&k, self.keytype.as_str()) {
                    (PublicKey::EcdsaP256(_), "ecdsa-x509")
                    | (PublicKey::RsaPss(_), "rsa-x509") => Ok(k),
                    _ => Err(format!(
                        "the certificate's key does not match keytype `{}`",
                        self.keytype
                    )),
                }
            }
            other => Err(format!("key type `{other}` is not one Notary uses")),
        }
    }

    /// The key without its certificate, as Notary names the private key file of an
    /// `*-x509` root key (`utils.CanonicalKeyID`).
    pub fn canonical_id(&self) -> Result<String, String> {
        if !self.is_x509() {
            return Ok(self.notary_id());
        }
        let k = self.public_key()?;
        Ok(NotaryKey {
            keytype: self.keytype.trim_end_matches("-x509").to_string(),
            public: match k {
                PublicKey::EcdsaP256(k) => spki_der(&k),
                PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k) => spki_der(&k),
                PublicKey::Ed25519(k) => k.as_bytes().to_vec(),
            },
        }
        .notary_id())
    }

    /// The TUF 1.0 key id of the same public key (what tufkey and python-tuf compute).
    pub fn tuf_id(&self) -> Result<String, String> {
        Ok(self.public_key()?.to_tuf_key().key_id())
    }
}

fn spki_der<K: EncodePublicKey>(k: &K) -> Vec<u8> {
    // Encoding a well-formed in-memory key cannot fail.
    k.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
}

/// Checks a Notary signature (`method` `ecdsa`: raw r‖s; `rsapss`: PSS SHA-256;
/// `rsapkcs1v15`; `ed25519`) over `message` with `key`.
pub fn verify_signature(
    key: &PublicKey,
    method: &str,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    match (method, key) {
        ("ecdsa", PublicKey::EcdsaP256(_)) => {
            let der = if sig.len() == 64 {
                p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| "an invalid ECDSA signature".to_string())?
                    .to_der()
                    .as_bytes()
                    .to_vec()
            } else {
                sig.to_vec()
            };
            key.verify(message, &der)
        }
        ("rsapss", PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k)) => {
            PublicKey::RsaPss(k.clone()).verify(message, sig)
        }
        ("rsapkcs1v15", PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k)) => {
            PublicKey::RsaPkcs1(k.clone()).verify(message, sig)
        }
        ("ed25519", PublicKey::Ed25519(_)) => key.verify(message, sig),
        (m, k) => Err(format!(
            "signature method `{m}` does not fit a {} key",
            k.algorithm()
        )),
    }
}
