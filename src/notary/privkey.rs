//! Notary's private key files, decrypted into a [`SoftKey`] held only in memory.
//!
//! Formats Notary wrote, oldest first:
//! - 0.1–0.3: `EC PRIVATE KEY` (SEC1), `RSA PRIVATE KEY` (PKCS#1) or Notary's own
//!   `ED25519 PRIVATE KEY` (public ‖ Go private key, 96 bytes), encrypted the legacy
//!   OpenSSL way (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: AES-256-CBC,<iv>`, key from
//!   MD5(passphrase ‖ salt) as Go's `x509.DecryptPEMBlock` reads it);
//! - 0.4 and later: `ENCRYPTED PRIVATE KEY` (PKCS#8, PBES2 with PBKDF2-HMAC-SHA1 and
//!   AES-256-CBC), or `PRIVATE KEY` when stored without a passphrase. Notary's PKCS#8
//!   puts a SEC1 key in version 1 without a public key and uses its own Ed25519 OID, so
//!   the inner structure is read here rather than by the strict `pkcs8` crate.
//!
//! Every buffer that held key material is zeroized when dropped.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use md5::{Digest, Md5};
use p256::pkcs8::DecodePrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use zeroize::Zeroizing;

use super::pemfile::PemBlock;
use crate::keys::file::SoftKey;
use crate::keys::Secret;

const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.3.6.1.4.1.11591.15.1: the Ed25519 OID Notary's PKCS#8 uses.
const OID_NOTARY_ED25519: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];
/// 1.3.101.112: RFC 8410 Ed25519.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Why a key could not be read: the passphrase, or the file itself.
#[derive(Debug)]
pub enum ReadFailure {
    WrongPassphrase,
    Damaged(String),
}

/// The formats Notary wrote, as `notary keys` names them.
pub fn format_name(block: &PemBlock) -> &'static str {
    let encrypted = block
        .headers
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"));
    match (block.kind.as_str(), encrypted) {
        ("EC PRIVATE KEY", true) => "legacy PEM (SEC1, AES-CBC)",
        ("EC PRIVATE KEY", false) => "legacy PEM (SEC1, unencrypted)",
        ("RSA PRIVATE KEY", true) => "legacy PEM (PKCS#1, AES-CBC)",
        ("RSA PRIVATE KEY", false) => "legacy PEM (PKCS#1, unencrypted)",
        ("ED25519 PRIVATE KEY", true) => "legacy PEM (Notary Ed25519, AES-CBC)",
        ("ED25519 PRIVATE KEY", false) => "legacy PEM (Notary Ed25519, unencrypted)",
        ("ENCRYPTED PRIVATE KEY", _) => "PKCS#8 (PBES2)",
        ("PRIVATE KEY", _) => "PKCS#8 (unencrypted)",
        _ => "unknown",
    }
}

/// Whether this PEM block is a private key format Notary wrote.
pub fn is_known_kind(kind: &str) -> bool {
    matches!(
        kind,
        "EC PRIVATE KEY"
            | "RSA PRIVATE KEY"
            | "ED25519 PRIVATE KEY"
            | "ENCRYPTED PRIVATE KEY"
            | "PRIVATE KEY"
    )
}

/// Decrypts (when encrypted) and parses a Notary private key block.
pub fn decrypt(block: &PemBlock, pass: Option<&Secret>) -> Result<SoftKey, ReadFailure> {
    let damaged = |s: String| ReadFailure::Damaged(s);
    match block.kind.as_str() {
        "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
            let plain = if block.headers.get("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED")) {
                let pass = pass.ok_or(ReadFailure::WrongPassphrase)?;
                legacy_decrypt(block, pass)?
            } else {
                Zeroizing::new(block.body.to_vec())
            };
            // A wrong passphrase may still leave valid padding (1 in 256): the key then
            // does not parse, which also means the passphrase was wrong.
            let encrypted = block.headers.contains_key("DEK-Info");
            let parsed = match block.kind.as_str() {
                "EC PRIVATE KEY" => ec_from_sec1(&plain),
                "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&plain)
                    .map(|k| SoftKey::Rsa(Box::new(k)))
                    .map_err(|e| format!("not a PKCS#1 RSA key: {e}")),
                _ => ed25519_from_notary(&plain),
            };
            parsed.map_err(|e| if encrypted { ReadFailure::WrongPassphrase } else { damaged(e) })
        }
        "ENCRYPTED PRIVATE KEY" => {
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(&block.body[..])
                .map_err(|e| damaged(format!("not an encrypted PKCS#8 key: {e}")))?;
            if let Some(problem) = crate::keys::file::kdf_cost_problem(&info) {
                return Err(damaged(problem));
            }
            let pass = pass.ok_or(ReadFailure::WrongPassphrase)?;
            let doc = info
                .decrypt(pass.expose())
                .map_err(|_| ReadFailure::WrongPassphrase)?;
            from_pkcs8(doc.as_bytes()).map_err(|_| ReadFailure::WrongPassphrase)
        }
        "PRIVATE KEY" => from_pkcs8(&block.body).map_err(damaged),
        other => Err(damaged(format!(
            "a `{other}` PEM block is not a private key format Notary wrote (EC/RSA/ED25519 PRIVATE KEY, ENCRYPTED PRIVATE KEY)"
        ))),
    }
}

/// OpenSSL's legacy PEM encryption as Go's `x509.DecryptPEMBlock` reads it.
fn legacy_decrypt(block: &PemBlock, pass: &Secret) -> Result<Zeroizing<Vec<u8>>, ReadFailure> {
    let damaged = |s: &str| ReadFailure::Damaged(s.to_string());
    let dek = block
        .headers
        .get("DEK-Info")
        .ok_or_else(|| damaged("encrypted, but the `DEK-Info` header is missing"))?;
    let (cipher, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| damaged("the `DEK-Info` header is not `CIPHER,IV`"))?;
    let iv = hex::decode(iv_hex.trim()).map_err(|_| damaged("the `DEK-Info` IV is not hex"))?;
    let key_len = match cipher.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        other => {
            return Err(ReadFailure::Damaged(format!(
                "cipher `{other}` is not one Notary used (AES-128/192/256-CBC)"
            )))
        }
    };
    if iv.len() != 16 {
        return Err(damaged("the `DEK-Info` IV must be 16 bytes"));
    }
    // EVP_BytesToKey(MD5, salt = first 8 bytes of the IV, one round).
    let mut key = Zeroizing::new(Vec::with_capacity(48));
    let mut prev = Zeroizing::new(Vec::new());
    while key.len() < key_len {
        let mut h = Md5::new();
        h.update(&*prev);
        h.update(pass.expose().as_bytes());
        h.update(&iv[..8]);
        *prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(key_len);
    let mut buf = Zeroizing::new(block.body.to_vec());
    if buf.is_empty() || !buf.len().is_multiple_of(16) {
        return Err(damaged(
            "the encrypted body is not a whole number of AES blocks",
        ));
    }
    let plain_len = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(|_| damaged("bad key or IV length"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(|_| damaged("bad key or IV length"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(|_| damaged("bad key or IV length"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
    }
    .map_err(|_| ReadFailure::WrongPassphrase)?;
    buf.truncate(plain_len);
    Ok(buf)
}

fn ec_from_sec1(der: &[u8]) -> Result<SoftKey, String> {
    p256::SecretKey::from_sec1_der(der)
        .map(|k| SoftKey::EcdsaP256(k.into()))
        .map_err(|_| {
            "not a SEC1 P-256 private key (tufkey handles P-256, the curve Notary generates)".into()
        })
}

/// Notary's Ed25519 serialisation: public key (32) ‖ Go private key (seed 32 ‖ public 32).
fn ed25519_from_notary(bytes: &[u8]) -> Result<SoftKey, String> {
    if bytes.len() != 96 {
        return Err(format!(
            "a Notary Ed25519 key is 96 bytes (public ‖ private), this one is {}",
            bytes.len()
        ));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes[32..64]);
    let k = ed25519_dalek::SigningKey::from_bytes(&seed);
    if k.verifying_key().as_bytes() != &bytes[..32] {
        return Err("the Ed25519 key's public half does not match its private half".into());
    }
    Ok(SoftKey::Ed25519(k))
}

/// A DER TLV: tag, contents, the bytes after it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An unencrypted PKCS#8 key in Notary's flavour (or the standard one).
fn from_pkcs8(der: &[u8]) -> Result<SoftKey, String> {
    let bad = || "not a PKCS#8 private key".to_string();
    let (tag, seq, _) = tlv(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (_, _version, rest) = tlv(seq).ok_or_else(bad)?;
    let (alg_tag, alg, rest) = tlv(rest).ok_or_else(bad)?;
    let (oid_tag, oid, _) = tlv(alg).ok_or_else(bad)?;
    let (key_tag, key, _) = tlv(rest).ok_or_else(bad)?;
    if alg_tag != 0x30 || oid_tag != 0x06 || key_tag != 0x04 {
        return Err(bad());
    }
    if oid == OID_EC {
        ec_from_sec1(key)
    } else if oid == OID_RSA {
        rsa::RsaPrivateKey::from_pkcs1_der(key)
            .map(|k| SoftKey::Rsa(Box::new(k)))
            .map_err(|e| format!("not a PKCS#1 RSA key: {e}"))
    } else if oid == OID_NOTARY_ED25519 {
        ed25519_from_notary(key)
    } else if oid == OID_ED25519 {
        ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(SoftKey::Ed25519)
            .map_err(|e| e.to_string())
    } else {
        Err("a PKCS#8 key of an algorithm Notary did not use (P-256, RSA, Ed25519)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notary::pemfile;

    fn notary_ed25519_pem(body: &[u8]) -> String {
        use base64::Engine;
        format!(
            "-----BEGIN ED25519 PRIVATE KEY-----\nrole: targets/releases\ngun: example.com/app\n\n{}\n-----END ED25519 PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    }

    #[test]
    fn notarys_ed25519_format_public_then_go_private_key_is_read() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let public = k.verifying_key().to_bytes();
        let mut body = public.to_vec();
        body.extend_from_slice(&[7u8; 32]);
        body.extend_from_slice(&public);
        let block = pemfile::parse(&notary_ed25519_pem(&body)).unwrap();
        assert_eq!(block.headers["role"], "targets/releases");
        let Ok(SoftKey::Ed25519(got)) = decrypt(&block, None) else {
            panic!("not read as Ed25519");
        };
        assert_eq!(got.verifying_key().to_bytes(), public);
    }

    #[test]
    fn an_ed25519_key_whose_halves_disagree_is_refused_as_damaged() {
        let mut body = vec![1u8; 32];
        body.extend_from_slice(&[7u8; 64]);
        let block = pemfile::parse(&notary_ed25519_pem(&body)).unwrap();
        match decrypt(&block, None) {
            Err(ReadFailure::Damaged(r)) => assert!(r.contains("does not match"), "{r}"),
            _ => panic!("accepted a key whose public half is not its own"),
        }
        let block = pemfile::parse(&notary_ed25519_pem(&[0u8; 64])).unwrap();
        assert!(
            matches!(decrypt(&block, None), Err(ReadFailure::Damaged(r)) if r.contains("96 bytes"))
        );
    }

    #[test]
    fn an_encrypted_key_asking_for_a_terabyte_of_scrypt_is_damaged_before_decrypting() {
        use pkcs8::der::Encode;
        use pkcs8::pkcs5::{pbes2, EncryptionScheme};
        let info = pkcs8::EncryptedPrivateKeyInfo {
            encryption_algorithm: EncryptionScheme::Pbes2(pbes2::Parameters {
                kdf: pbes2::Kdf::Scrypt(pbes2::ScryptParams {
                    salt: &[1; 16],
                    cost_parameter: 1 << 33,
                    block_size: 8,
                    parallelization: 1,
                    key_length: Some(32),
                }),
                encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &[7; 16] },
            }),
            encrypted_data: &[0; 48],
        };
        let block = PemBlock {
            kind: "ENCRYPTED PRIVATE KEY".into(),
            headers: Default::default(),
            body: Zeroizing::new(info.to_der().unwrap()),
        };
        // Refused as damaged even without a passphrase: nothing is derived.
        match decrypt(&block, None) {
            Err(ReadFailure::Damaged(r)) => assert!(r.contains("scrypt settings"), "{r}"),
            other => panic!("not refused as damaged: {:?}", other.err()),
        }
    }
}
