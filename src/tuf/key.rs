//! TUF public keys: their JSON form, key ids and signature verification.
//!
//! The accepted (keytype, scheme) pairs and public-key encodings follow
//! securesystemslib's `SSlibKey`, so that a verdict here is python-tuf's verdict.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, EncodePublicKey};

use super::cjson::to_canonical;
use super::error::TufError;

/// TUF `ecdsa-sha2-nistp256`.
pub const SCHEME_ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// TUF `rsassa-pss-sha256`: PSS, SHA-256, MGF1-SHA256, salt length 32 when signing.
pub const SCHEME_RSA_PSS_SHA256: &str = "rsassa-pss-sha256";
/// TUF `rsa-pkcs1v15-sha256` (verified, never produced by tufkey).
pub const SCHEME_RSA_PKCS1_SHA256: &str = "rsa-pkcs1v15-sha256";
/// TUF `ed25519`: pure Ed25519 over the whole canonical message.
pub const SCHEME_ED25519: &str = "ed25519";

/// The kinds of key tufkey creates on devices and in files.
/// (The CLI offers them by [`KeyType::as_str`]; this type knows nothing of clap.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (TUF `ecdsa-sha2-nistp256`).
    EcdsaP256,
    /// Ed25519 (TUF `ed25519`).
    Ed25519,
    /// RSA 3072 with PSS/SHA-256 (TUF `rsassa-pss-sha256`).
    Rsa3072,
    /// RSA 2048 with PSS/SHA-256: the largest RSA key a YubiKey PIV slot takes here.
    Rsa2048,
}

impl KeyType {
    /// The name users type on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key parsed for verification.
#[derive(Debug, Clone)]
pub enum PublicKey {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    RsaPss(rsa::RsaPublicKey),
    RsaPkcs1(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The TUF key for this public key, in the encoding securesystemslib writes
    /// (`from_crypto`): SPKI PEM with a trailing newline for ECDSA and RSA, hex for Ed25519.
    pub fn to_tuf_key(&self) -> Key {
        let (keytype, scheme, public) = match self {
            PublicKey::EcdsaP256(k) => ("ecdsa", SCHEME_ECDSA_P256, spki_pem(k)),
            PublicKey::RsaPss(k) => ("rsa", SCHEME_RSA_PSS_SHA256, spki_pem(k)),
            PublicKey::RsaPkcs1(k) => ("rsa", SCHEME_RSA_PKCS1_SHA256, spki_pem(k)),
            PublicKey::Ed25519(k) => ("ed25519", SCHEME_ED25519, hex::encode(k.as_bytes())),
        };
        let mut keyval = Map::new();
        keyval.insert("public".into(), Value::String(public));
        Key {
            keytype: keytype.into(),
            scheme: scheme.into(),
            keyval,
            extra: Map::new(),
        }
    }

    /// SubjectPublicKeyInfo as PEM, whatever the algorithm (for `key show`).
    pub fn spki_pem(&self) -> String {
        match self {
            PublicKey::EcdsaP256(k) => spki_pem(k),
            PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k) => spki_pem(k),
            PublicKey::Ed25519(k) => spki_pem(k),
        }
    }

    /// A short human name of the algorithm.
    pub fn algorithm(&self) -> String {
        use rsa::traits::PublicKeyParts;
        match self {
            PublicKey::EcdsaP256(_) => "ecdsa-p256".into(),
            PublicKey::RsaPss(k) | PublicKey::RsaPkcs1(k) => format!("rsa-{}", k.n().bits()),
            PublicKey::Ed25519(_) => "ed25519".into(),
        }
    }

    /// Checks `sig` (in TUF's encoding for this scheme) over `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), String> {
        use p256::ecdsa::signature::Verifier;
        match self {
            PublicKey::EcdsaP256(k) => {
                p256::ecdsa::Signature::from_der(sig)
                    .map_err(|_| "the ECDSA signature is not valid DER".to_string())?;
                // ring verifies P-256 about five times faster than the p256 crate, and
                // every signature tufkey makes is verified before it leaves (the signer
                // daemon's hot path). Both accept high-S values, as TUF clients do.
                let point = k.to_encoded_point(false);
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_ASN1,
                    point.as_bytes(),
                )
                .verify(message, sig)
                .map_err(|_| "ECDSA signature does not verify".into())
            }
            PublicKey::RsaPss(k) => verify_rsa_pss_any_salt(k, message, sig),
            PublicKey::RsaPkcs1(k) => {
                let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone());
                let sig = rsa::pkcs1v15::Signature::try_from(sig)
                    .map_err(|_| "malformed RSA signature".to_string())?;
                vk.verify(message, &sig)
                    .map_err(|_| "RSA PKCS#1 v1.5 signature does not verify".into())
            }
            PublicKey::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(sig)
                    .map_err(|_| "an Ed25519 signature must be 64 bytes".to_string())?;
                k.verify_strict(message, &sig)
                    .map_err(|_| "Ed25519 signature does not verify".into())
            }
        }
    }
}

/// securesystemslib verifies PSS with `salt_length=AUTO`, so any salt length that the
/// encoding itself declares is accepted. tufkey always signs with 32.
fn verify_rsa_pss_any_salt(
    k: &rsa::RsaPublicKey,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    use rsa::traits::PublicKeyParts;
    let digest = Sha256::digest(message);
    let max_salt = k.size().saturating_sub(32 + 2);
    // Try the common lengths first: 32 (tufkey, python-tuf), then the maximum
    // (Go's and OpenSSL's PSSSaltLengthAuto), then every other length.
    let mut candidates = vec![32usize, max_salt];
    candidates.extend((0..=max_salt).filter(|l| *l != 32 && *l != max_salt));
    for salt in candidates {
        if k.verify(rsa::Pss::new_with_salt::<Sha256>(salt), &digest, sig)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err("RSA-PSS signature does not verify".into())
}

fn spki_pem<K: EncodePublicKey>(k: &K) -> String {
    // Encoding a well-formed in-memory key cannot fail.
    k.to_public_key_pem(spki::der::pem::LineEnding::LF)
        .unwrap_or_default()
}

/// A TUF key as it appears in metadata, with unknown fields (such as
/// `x-tuf-on-ci-online-uri` or `keyid_hash_algorithms`) kept as they were.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: Map<String, Value>,
    pub extra: Map<String, Value>,
}

impl Key {
    /// Parses a key object. Like python-tuf, the public value is decoded only when used.
    pub fn from_value(keyid: &str, value: &Value) -> Result<Key, TufError> {
        let obj = value.as_object().ok_or_else(|| TufError::Schema {
            path: format!("key {keyid}"),
            reason: "a key must be a JSON object".into(),
        })?;
        let field = |name: &str| -> Result<String, TufError> {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| TufError::Schema {
                    path: format!("key {keyid}"),
                    reason: format!("`{name}` must be a string"),
                })
        };
        let keytype = field("keytype")?;
        let scheme = field("scheme")?;
        let keyval = obj
            .get("keyval")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| TufError::Schema {
                path: format!("key {keyid}"),
                reason: "`keyval` must be an object".into(),
            })?;
        let mut extra = obj.clone();
        for f in ["keytype", "scheme", "keyval"] {
            extra.remove(f);
        }
        let key = Key {
            keytype,
            scheme,
            keyval,
            extra,
        };
        if !key.is_supported() {
            return Err(TufError::UnsupportedKey {
                keyid: keyid.into(),
                keytype: key.keytype,
                scheme: key.scheme,
            });
        }
        Ok(key)
    }

    /// The key object as JSON, unknown fields included.
    pub fn to_value(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert("keytype".into(), Value::String(self.keytype.clone()));
        obj.insert("scheme".into(), Value::String(self.scheme.clone()));
        obj.insert("keyval".into(), Value::Object(self.keyval.clone()));
        Value::Object(obj)
    }

    /// The key id: SHA-256 over the canonical JSON of the whole key object, unknown
    /// fields (`x-…`, `keyid_hash_algorithms`) included. For a key with only `keytype`,
    /// `scheme` and `keyval` this is securesystemslib's default key id; tuf-on-ci and
    /// Sigstore hash their extra fields too, and so does this.
    pub fn key_id(&self) -> String {
        // keyval and extra came from JSON that was already canonicalisable, or from our own keys.
        let bytes = to_canonical(&self.to_value()).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    fn is_supported(&self) -> bool {
        matches!(
            (self.keytype.as_str(), self.scheme.as_str()),
            ("ecdsa" | "ecdsa-sha2-nistp256", SCHEME_ECDSA_P256)
                | ("rsa", SCHEME_RSA_PSS_SHA256 | SCHEME_RSA_PKCS1_SHA256)
                | ("ed25519", SCHEME_ED25519)
        )
    }

    /// Decodes `keyval.public` as securesystemslib does: PEM SPKI for ECDSA and RSA,
    /// 32 hex-encoded bytes for Ed25519.
    pub fn public_key(&self) -> Result<PublicKey, String> {
        let public = self
            .keyval
            .get("public")
            .and_then(Value::as_str)
            .ok_or_else(|| "keyval.public is missing or not a string".to_string())?;
        match (self.keytype.as_str(), self.scheme.as_str()) {
            (_, SCHEME_ECDSA_P256) => p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                .map(PublicKey::EcdsaP256)
                .map_err(|_| "keyval.public is not a PEM P-256 SubjectPublicKeyInfo".into()),
            (_, SCHEME_RSA_PSS_SHA256) => rsa::RsaPublicKey::from_public_key_pem(public)
                .map(PublicKey::RsaPss)
                .map_err(|_| "keyval.public is not a PEM RSA SubjectPublicKeyInfo".into()),
            (_, SCHEME_RSA_PKCS1_SHA256) => rsa::RsaPublicKey::from_public_key_pem(public)
                .map(PublicKey::RsaPkcs1)
                .map_err(|_| "keyval.public is not a PEM RSA SubjectPublicKeyInfo".into()),
            (_, SCHEME_ED25519) => {
                let bytes: [u8; 32] = hex::decode(public)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| "keyval.public is not 32 hex-encoded bytes".to_string())?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(PublicKey::Ed25519)
                    .map_err(|_| "keyval.public is not a valid Ed25519 point".into())
            }
            _ => Err(format!(
                "unsupported key type {} with scheme {}",
                self.keytype, self.scheme
            )),
        }
    }

    /// What makes two listings the same key for a threshold: the public key material
    /// (SubjectPublicKeyInfo, so the PEM's line breaks, the key id, the scheme name and
    /// extra fields do not matter). A value that does not decode is compared as written.
    pub fn public_identity(&self) -> String {
        match self.public_key() {
            Ok(k) => k.spki_pem(),
            Err(_) => format!(
                "undecoded:{}:{}",
                self.keytype,
                self.keyval
                    .get("public")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        }
    }

    /// Verifies a hex signature string over `message`.
    pub fn verify_hex(&self, message: &[u8], sig_hex: &str) -> Result<(), String> {
        if sig_hex.is_empty() {
            return Err("the signature is empty (not signed yet)".into());
        }
        let sig = hex::decode(sig_hex).map_err(|_| "the signature is not hex".to_string())?;
        self.public_key()?.verify(message, &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_id_covers_the_whole_key_as_tuf_on_ci_computes_it() {
        // Key a54e905f… from ../shared/interop/realworld/tuf-on-ci-0.11/metadata/1.root.json;
        // tuf-on-ci hashes the x- field too.
        let v = json!({
            "keytype": "ecdsa",
            "keyval": {"public": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEu+ebm3VUg6U2b0IIeR6NFZU7uxkL\nR1sVLxV8SEW7G+AMXMasEQf5daxfwVMP1kuEkhGs3mBYLkYXlWDh9BNSxg==\n-----END PUBLIC KEY-----\n"},
            "scheme": "ecdsa-sha2-nistp256",
            "x-tuf-on-ci-online-uri": "gcpkms:projects/python-tuf-kms/locations/global/keyRings/git-repo-demo/cryptoKeys/online/cryptoKeyVersions/1"
        });
        let key = Key::from_value("a54e", &v).unwrap();
        assert_eq!(
            key.key_id(),
            "a54e905f3e03bb0cccdc954bd40d4d29b5c1a2a95c2777f10f9c63a503c7f777"
        );
        assert_eq!(key.to_value(), v);
        assert!(matches!(key.public_key(), Ok(PublicKey::EcdsaP256(_))));
    }

    #[test]
    fn unknown_type_or_scheme_is_refused_with_the_key_id() {
        let v = json!({"keytype": "dsa", "scheme": "dsa-sha1", "keyval": {"public": "x"}});
        let err = Key::from_value("abcd", &v).unwrap_err();
        assert!(err.to_string().contains("abcd"), "{err}");
        assert!(err.to_string().contains("dsa-sha1"), "{err}");
    }

    #[test]
    fn ecdsa_signatures_verify_with_low_and_high_s_as_tuf_clients_accept_both() {
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let public = PublicKey::EcdsaP256(*sk.verifying_key());
        let sig: p256::ecdsa::Signature = sk.sign(b"message");
        let (r, s) = sig.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        for sig in [sig, flipped] {
            public.verify(b"message", sig.to_der().as_bytes()).unwrap();
            assert!(public.verify(b"other", sig.to_der().as_bytes()).is_err());
        }
        assert!(public.verify(b"message", &[0x30, 0x00]).is_err());
    }

    #[test]
    fn hex_ecdsa_public_values_do_not_decode_as_in_securesystemslib() {
        let v = json!({"keytype": "ecdsa-sha2-nistp256", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": "04cbc5"}});
        let key = Key::from_value("k", &v).unwrap();
        assert!(key.public_key().is_err());
    }
}
