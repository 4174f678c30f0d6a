//! `file:` keys: encrypted PKCS#8 files, for development, tests and the embedded default.
//!
//! The private key is PBES2 (scrypt + AES-256-CBC) encrypted PKCS#8 PEM. Beside it,
//! `<name>.pub.json` holds the TUF public key so that listing and showing keys needs no
//! passphrase.

use std::path::{Path, PathBuf};

use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use super::error::KeyError;
use super::pin::{self, PinPolicy, PinRequest, Secret};
use super::signer::Signer;
use crate::fsutil;
use crate::tuf::{Key, KeyType, PublicKey};

const OID_EC: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");

/// A private key held in memory. Each variant zeroizes itself on drop.
pub enum SoftKey {
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl SoftKey {
    /// A fresh key from the OS random generator.
    pub fn generate(t: KeyType) -> Result<SoftKey, String> {
        Ok(match t {
            KeyType::EcdsaP256 => SoftKey::EcdsaP256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyType::Ed25519 => SoftKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyType::Rsa3072 | KeyType::Rsa2048 => {
                let bits = if t == KeyType::Rsa3072 { 3072 } else { 2048 };
                SoftKey::Rsa(Box::new(
                    rsa::RsaPrivateKey::new(&mut OsRng, bits).map_err(|e| e.to_string())?,
                ))
            }
        })
    }

    /// Reads an unencrypted PKCS#8 DER private key of a supported algorithm.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SoftKey, String> {
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
        let oid = info.algorithm.oid;
        if oid == OID_ED25519 {
            ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(SoftKey::Ed25519)
                .map_err(|e| e.to_string())
        } else if oid == OID_RSA {
            rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map(|k| SoftKey::Rsa(Box::new(k)))
                .map_err(|e| e.to_string())
        } else if oid == OID_EC {
            let curve = info.algorithm.parameters_oid().ok();
            if curve != Some(OID_P256) {
                return Err(format!(
                    "EC keys must be on P-256; this one is on {curve:?}"
                ));
            }
            p256::SecretKey::from_pkcs8_der(der)
                .map(|k| SoftKey::EcdsaP256(k.into()))
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "unsupported key algorithm {oid}; tufkey handles P-256, Ed25519 and RSA"
            ))
        }
    }

    /// Unencrypted PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let doc = match self {
            SoftKey::EcdsaP256(k) => k.to_pkcs8_der(),
            SoftKey::Ed25519(k) => k.to_pkcs8_der(),
            SoftKey::Rsa(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| e.to_string())?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            SoftKey::EcdsaP256(k) => PublicKey::EcdsaP256(*k.verifying_key()),
            SoftKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SoftKey::Rsa(k) => PublicKey::RsaPss(k.to_public_key()),
        }
    }

    /// Signs `message` in TUF's encoding: ECDSA DER over SHA-256, RSA-PSS SHA-256 with a
    /// 32-byte salt, or pure Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer as _};
        match self {
            SoftKey::EcdsaP256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            SoftKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SoftKey::Rsa(k) => {
                // rsa's PSS signing key uses the digest length (32) as salt length.
                let sk = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new((**k).clone());
                sk.sign_with_rng(&mut OsRng, message).to_vec()
            }
        }
    }
}

/// Where the public key of a `file:` key is kept.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".pub.json");
    path.with_file_name(name)
}

fn passphrase_request(path: &Path) -> PinRequest<'static> {
    PinRequest {
        what: format!("passphrase for key file {}", path.display()),
        uri_value: None,
        uri_source: None,
        env: vec!["TUFKEY_PASSPHRASE".into()],
        cache_key: None,
    }
}

/// The most memory scrypt may ask for (128 · r · N bytes) in a key file tufkey reads:
/// tufkey writes N = 2^17, r = 8 (128 MiB, the `scrypt` crate's recommendation);
/// OpenSSL's and Python's defaults are smaller.
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;
/// The most scrypt lanes (p), each a full pass over that memory.
pub const MAX_SCRYPT_LANES: u16 = 16;
/// The most PBKDF2 rounds: what PKCS#5 implementations treat as their ceiling
/// (OWASP asks 600,000 for SHA-256; Notary wrote 10,000).
pub const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Why an encrypted key's key-derivation settings are refused, checked before any
/// passphrase is asked: a damaged or hostile file with scrypt N = 2^40 or four billion
/// PBKDF2 rounds would exhaust memory (the process aborts) or keep the command busy for
/// hours instead of failing. `None` when they are within the limits above (or not PBES2,
/// which decryption refuses with its own words).
pub fn kdf_cost_problem(info: &pkcs8::EncryptedPrivateKeyInfo<'_>) -> Option<String> {
    use pkcs8::pkcs5::{pbes2::Kdf, EncryptionScheme};
    let EncryptionScheme::Pbes2(params) = &info.encryption_algorithm else {
        return None;
    };
    let reencrypt = "if the key is yours, decrypt it with the tool that wrote it and encrypt it again with standard settings (tufkey writes scrypt N=2^17, r=8, p=1)";
    match &params.kdf {
        Kdf::Pbkdf2(p) if p.iteration_count > MAX_PBKDF2_ROUNDS => Some(format!(
            "its PBKDF2 iteration count {} is above the {MAX_PBKDF2_ROUNDS} tufkey accepts; {reencrypt}",
            p.iteration_count
        )),
        Kdf::Scrypt(p) => {
            let memory = 128u128 * u128::from(p.cost_parameter) * u128::from(p.block_size);
            if memory > u128::from(MAX_SCRYPT_MEMORY) || p.parallelization > MAX_SCRYPT_LANES {
                Some(format!(
                    "its scrypt settings (N={}, r={}, p={}) ask for {} MiB of memory and {} passes, above the {} MiB and {MAX_SCRYPT_LANES} passes tufkey accepts; {reencrypt}",
                    p.cost_parameter,
                    p.block_size,
                    p.parallelization,
                    memory >> 20,
                    p.parallelization,
                    MAX_SCRYPT_MEMORY >> 20
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Reads a PKCS#8 PEM or DER file, decrypting it if it is encrypted.
pub fn read_key_file(path: &Path, policy: &PinPolicy) -> Result<SoftKey, KeyError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| KeyError::Io {
        path: path.into(),
        err: e,
    })?);
    let bad = |reason: String| KeyError::KeyFile {
        path: path.into(),
        reason,
    };
    let (label, der): (String, Zeroizing<Vec<u8>>) = match std::str::from_utf8(&raw) {
        Ok(text) if text.contains("-----BEGIN") => {
            let (label, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes())
                .map_err(|e| bad(format!("not a PEM file: {e}")))?;
            (label.to_string(), Zeroizing::new(der))
        }
        _ => {
            let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(&raw[..]).is_ok();
            (
                if encrypted {
                    "ENCRYPTED PRIVATE KEY"
                } else {
                    "PRIVATE KEY"
                }
                .into(),
                raw.clone(),
            )
        }
    };
    match label.as_str() {
        "ENCRYPTED PRIVATE KEY" => {
            let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(&der[..])
                .map_err(|e| bad(format!("not an encrypted PKCS#8 key: {e}")))?;
            if let Some(problem) = kdf_cost_problem(&enc) {
                return Err(bad(problem));
            }
            let (pass, _) = pin::obtain(&passphrase_request(path), policy)?;
            let doc = enc
                .decrypt(pass.expose())
                .map_err(|_| KeyError::Passphrase { path: path.into() })?;
            SoftKey::from_pkcs8_der(doc.as_bytes()).map_err(bad)
        }
        "PRIVATE KEY" => SoftKey::from_pkcs8_der(&der).map_err(bad),
        other => Err(bad(format!(
            "PEM label `{other}` is not a PKCS#8 private key (convert with `openssl pkcs8 -topk8`)"
        ))),
    }
}

/// Encrypts `key` with a passphrase (asked twice when prompting) and returns the PEM text.
pub fn encrypt_key(
    path: &Path,
    key: &SoftKey,
    policy: &PinPolicy,
) -> Result<Zeroizing<String>, KeyError> {
    let bad = |reason: String| KeyError::KeyFile {
        path: path.into(),
        reason,
    };
    let pass = match std::env::var("TUFKEY_PASSPHRASE") {
        Ok(p) => Secret::new(p),
        Err(_) if policy.interactive => {
            let p = dialoguer::Password::new()
                .with_prompt(format!("New passphrase for {}", path.display()))
                .with_confirmation("Repeat the passphrase", "The passphrases differ")
                .interact()
                .map_err(|e| KeyError::Prompt(e.to_string()))?;
            Secret::new(p)
        }
        Err(_) => {
            return Err(KeyError::NoPin {
                what: format!("passphrase for new key file {}", path.display()),
                env: "TUFKEY_PASSPHRASE".into(),
            })
        }
    };
    if pass.expose().is_empty() {
        return Err(bad("an empty passphrase is not allowed".into()));
    }
    let der = key.to_pkcs8_der().map_err(&bad)?;
    let info = pkcs8::PrivateKeyInfo::try_from(&der[..]).map_err(|e| bad(e.to_string()))?;
    let enc = info
        .encrypt(OsRng, pass.expose())
        .map_err(|e| bad(e.to_string()))?;
    let pem = enc
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .map_err(|e| bad(e.to_string()))?;
    Ok(pem)
}

/// Makes a new encrypted key file at `path` (refused when it exists) and its
/// `.pub.json`, each written atomically (temporary file, fsync, rename); the key file is
/// removed again when the public file cannot be written.
pub fn generate(path: &Path, key_type: KeyType, policy: &PinPolicy) -> Result<PublicKey, KeyError> {
    let exists = |reason: &str| KeyError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if path.exists() {
        return Err(exists(
            "already exists; choose another path or delete it first",
        ));
    }
    let key = SoftKey::generate(key_type).map_err(|reason| KeyError::KeyFile {
        path: path.to_path_buf(),
        reason,
    })?;
    let pem = encrypt_key(path, &key, policy)?;
    let public = key.public();
    let pub_json = serde_json::to_vec_pretty(&public.to_tuf_key().to_value()).map_err(|e| {
        KeyError::KeyFile {
            path: public_path(path),
            reason: e.to_string(),
        }
    })?;
    let pub_path = public_path(path);
    fsutil::create_new_atomic(path, pem.as_bytes(), Some(0o600)).map_err(|err| KeyError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    if let Err(err) = fsutil::write_atomic(&pub_path, &pub_json) {
        let _ = std::fs::remove_file(path);
        return Err(KeyError::Io {
            path: pub_path,
            err,
        });
    }
    Ok(public)
}

/// The public key of a `file:` key: from the `.pub.json` beside it, else (that file
/// missing or unreadable) by decrypting the key, which needs the passphrase.
pub fn public_key(path: &Path, policy: &PinPolicy) -> Result<PublicKey, KeyError> {
    let pub_path = public_path(path);
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        let bad = |reason: String| KeyError::KeyFile {
            path: pub_path.clone(),
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let key = Key::from_value("(public key file)", &v).map_err(|e| bad(e.to_string()))?;
        return key.public_key().map_err(bad);
    }
    Ok(read_key_file(path, policy)?.public())
}

/// A key file found in a folder: its URI, and its public key or why it could not be read.
pub type FoundKey = (String, Result<PublicKey, String>);

/// The `file:` keys in a folder: every `<name>.pub.json` with its `<name>` beside it, as
/// (URI, public key or why it could not be read).
pub fn list_folder(dir: &Path) -> Result<Vec<FoundKey>, KeyError> {
    let entries = std::fs::read_dir(dir).map_err(|err| KeyError::Io {
        path: dir.to_path_buf(),
        err,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".pub.json") else {
            continue;
        };
        let key_path = p.with_file_name(stem);
        if !key_path.exists() {
            continue;
        }
        out.push((
            format!("file:{}", key_path.display()),
            public_key(&key_path, &PinPolicy::default()).map_err(|e| e.to_string()),
        ));
    }
    Ok(out)
}

/// Deletes a key file and the `.pub.json` beside it.
pub fn delete(path: &Path) -> Result<(), KeyError> {
    std::fs::remove_file(path).map_err(|err| KeyError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let _ = std::fs::remove_file(public_path(path));
    Ok(())
}

/// A signer backed by a decrypted `file:` key.
pub struct FileSigner {
    uri: String,
    key: SoftKey,
    public: Key,
    keyid: String,
}

impl FileSigner {
    /// Opens `path`, asking for its passphrase as `policy` allows.
    pub fn open(path: &Path, policy: &PinPolicy) -> Result<FileSigner, KeyError> {
        let key = read_key_file(path, policy)?;
        let public = key.public().to_tuf_key();
        let keyid = public.key_id();
        Ok(FileSigner {
            uri: format!("file:{}", path.display()),
            key,
            public,
            keyid,
        })
    }
}

impl Signer for FileSigner {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(self.key.sign(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encrypted key file whose key derivation is `kdf` (the ciphertext is filler:
    /// the settings must be refused before anything is derived or decrypted).
    fn encrypted_with(kdf: pkcs8::pkcs5::pbes2::Kdf<'_>) -> Vec<u8> {
        use pkcs8::der::Encode;
        use pkcs8::pkcs5::{pbes2, EncryptionScheme};
        let info = pkcs8::EncryptedPrivateKeyInfo {
            encryption_algorithm: EncryptionScheme::Pbes2(pbes2::Parameters {
                kdf,
                encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &[7; 16] },
            }),
            encrypted_data: &[0; 48],
        };
        info.to_der().unwrap()
    }

    #[test]
    fn a_key_file_asking_for_too_much_memory_or_time_is_refused_before_the_passphrase() {
        use pkcs8::pkcs5::pbes2::{Kdf, Pbkdf2Params, Pbkdf2Prf, ScryptParams};
        let dir = tempfile::tempdir().unwrap();
        let scrypt = |log_n: u32, r: u16, p: u16| {
            Kdf::Scrypt(ScryptParams {
                salt: &[1; 16],
                cost_parameter: 1 << log_n,
                block_size: r,
                parallelization: p,
                key_length: Some(32),
            })
        };
        let pbkdf2 = |rounds: u32| {
            Kdf::Pbkdf2(Pbkdf2Params {
                salt: &[1; 16],
                iteration_count: rounds,
                key_length: None,
                prf: Pbkdf2Prf::HmacWithSha256,
            })
        };
        for (name, kdf, words) in [
            ("huge-n.der", scrypt(40, 8, 1), "N=1099511627776, r=8, p=1"),
            ("huge-r.der", scrypt(20, 1024, 1), "131072 MiB"),
            ("many-lanes.der", scrypt(14, 8, 64), "64 passes"),
            (
                "rounds.der",
                pbkdf2(u32::MAX),
                "PBKDF2 iteration count 4294967295",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, encrypted_with(kdf)).unwrap();
            // No TUFKEY_PASSPHRASE and no prompt: reaching the passphrase would be NoPin.
            let policy = PinPolicy::default();
            match read_key_file(&path, &policy) {
                Err(KeyError::KeyFile { path: p, reason }) => {
                    assert_eq!(p, path);
                    assert!(reason.contains(words), "{words:?} not in {reason:?}");
                    assert!(reason.contains("encrypt it again"), "{reason}");
                }
                other => panic!("{name}: {:?}", other.map(|_| "a key")),
            }
        }
        // What tufkey writes, OpenSSL's scrypt default and Notary's PBKDF2 pass.
        for kdf in [scrypt(17, 8, 1), scrypt(14, 8, 1), pbkdf2(10_000)] {
            let der = encrypted_with(kdf);
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(&der[..]).unwrap();
            assert_eq!(kdf_cost_problem(&info), None);
        }
    }

    #[test]
    fn every_type_signs_what_its_public_key_verifies() {
        for t in [KeyType::EcdsaP256, KeyType::Ed25519, KeyType::Rsa3072] {
            let k = SoftKey::generate(t).unwrap();
            let sig = k.sign(b"payload");
            let public = k.public().to_tuf_key();
            public.verify_hex(b"payload", &hex::encode(&sig)).unwrap();
            assert!(
                public.verify_hex(b"other", &hex::encode(&sig)).is_err(),
                "{t}"
            );
            let again = SoftKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap();
            assert_eq!(again.public().to_tuf_key(), public);
        }
    }
}
