//! The PIV management key (key reference 9B), emulated by the runner.
//!
//! piv-authenticator knows 3DES and AES-256 management keys only, while a YubiKey 5.4+
//! also has AES-128/192 and a 5.7+ one ships an AES-192 default. So the runner keeps
//! the 9B key itself (`STATE/mgm.txt`: algorithm, key, touch) and answers GENERAL
//! AUTHENTICATE, SET MANAGEMENT KEY and GET METADATA for 9B. After a successful
//! authentication it authenticates to piv-authenticator with that card's own,
//! never-changed 3DES default key, so the card's security status follows.

use std::path::{Path, PathBuf};

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};

/// The factory-default key: the same bytes for 3DES (before 5.7) and AES-192 (5.7+).
pub const DEFAULT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

pub const TDES: u8 = 0x03;
pub const AES128: u8 = 0x08;
pub const AES192: u8 = 0x0A;
pub const AES256: u8 = 0x0C;

/// Key length for a management key algorithm, `None` for unknown ones.
pub fn key_len(alg: u8) -> Option<usize> {
    match alg {
        TDES | AES192 => Some(24),
        AES128 => Some(16),
        AES256 => Some(32),
        _ => None,
    }
}

pub fn block_len(alg: u8) -> usize {
    if alg == TDES {
        8
    } else {
        16
    }
}

/// `tdes`, `aes128`, `aes192`, `aes256` (command line).
pub fn parse_alg(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "tdes" | "3des" => Some(TDES),
        "aes128" => Some(AES128),
        "aes192" => Some(AES192),
        "aes256" => Some(AES256),
        _ => None,
    }
}

/// The factory-default algorithm of a firmware version: AES-192 from 5.7 on.
pub fn factory_alg(firmware: [u8; 3]) -> u8 {
    if (firmware[0], firmware[1]) >= (5, 7) {
        AES192
    } else {
        TDES
    }
}

/// Encrypts (or decrypts) one block with `alg` and `key`; `None` on a length mismatch.
pub fn crypt(alg: u8, key: &[u8], block: &[u8], encrypt: bool) -> Option<Vec<u8>> {
    if key_len(alg)? != key.len() || block.len() != block_len(alg) {
        return None;
    }
    let mut out = block.to_vec();
    macro_rules! run {
        ($cipher:ty) => {{
            let c = <$cipher>::new(GenericArray::from_slice(key));
            let b = GenericArray::from_mut_slice(&mut out);
            if encrypt {
                c.encrypt_block(b)
            } else {
                c.decrypt_block(b)
            }
        }};
    }
    match alg {
        TDES => run!(des::TdesEde3),
        AES128 => run!(aes::Aes128),
        AES192 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    }
    Some(out)
}

/// The card's management key, persisted in `STATE/mgm.txt`.
pub struct MgmKey {
    path: PathBuf,
    pub alg: u8,
    pub key: Vec<u8>,
    /// Touch policy byte for metadata: 1 never, 2 always.
    pub touch: u8,
    /// The PIN-protected data object 5FC109 (the value of its tag 53), where ykman
    /// keeps a PIN-protected management key as `88 { 89 key }`
    /// (`STATE/protected.hex`).
    pub protected: Option<Vec<u8>>,
    protected_path: PathBuf,
}

impl MgmKey {
    /// Loads the stored key; `forced` (from the command line) replaces it, and a card
    /// without one gets `factory` with the default key.
    pub fn load(state: &Path, factory: u8, forced: Option<(u8, Vec<u8>)>) -> Self {
        let path = state.join("mgm.txt");
        let protected_path = state.join("protected.hex");
        let protected = std::fs::read_to_string(&protected_path)
            .ok()
            .and_then(|t| hex_decode(t.trim()));
        let mut k = MgmKey {
            path,
            alg: factory,
            key: DEFAULT_KEY.to_vec(),
            touch: 1,
            protected,
            protected_path,
        };
        if let Some((alg, key)) = forced {
            k.alg = alg;
            k.key = key;
            k.save();
            return k;
        }
        let stored = std::fs::read_to_string(&k.path).ok().and_then(|t| {
            let f: Vec<&str> = t.split_whitespace().collect();
            let alg = u8::from_str_radix(f.first()?, 16).ok()?;
            let key = hex_decode(f.get(1)?)?;
            let touch = u8::from_str_radix(f.get(2)?, 16).ok()?;
            (key_len(alg)? == key.len()).then_some((alg, key, touch))
        });
        match stored {
            Some((alg, key, touch)) => {
                k.alg = alg;
                k.key = key;
                k.touch = touch;
            }
            None => k.save(),
        }
        k
    }

    pub fn set(&mut self, alg: u8, key: &[u8], touch: u8) {
        self.alg = alg;
        self.key = key.to_vec();
        self.touch = touch;
        self.save();
    }

    /// Stores (or with `None` removes) object 5FC109.
    pub fn set_protected(&mut self, value: Option<Vec<u8>>) {
        let result = match &value {
            Some(v) => std::fs::write(&self.protected_path, crate::card::hex_encode(v)),
            None => match std::fs::remove_file(&self.protected_path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if let Err(e) = result {
            log::error!("cannot save {}: {e}", self.protected_path.display());
        }
        self.protected = value;
    }

    /// Stores the current key as a PIN-protected management key, as
    /// `ykman piv access change-management-key --protect` does.
    pub fn protect(&mut self) {
        let mut inner = Vec::new();
        crate::tlv::put(&mut inner, 0x89, &self.key);
        let mut outer = Vec::new();
        crate::tlv::put(&mut outer, 0x88, &inner);
        self.set_protected(Some(outer));
    }

    /// Whether the key is the factory default (the default bytes).
    pub fn is_default(&self) -> bool {
        self.key == DEFAULT_KEY
    }

    fn save(&self) {
        let text = format!(
            "{:02x} {} {:02x}\n",
            self.alg,
            crate::card::hex_encode(&self.key),
            self.touch
        );
        if let Err(e) = std::fs::write(&self.path, text) {
            log::error!("cannot save {}: {e}", self.path.display());
        }
    }
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphers_match_fips_197_and_sp_800_67() {
        let key: Vec<u8> = (0u8..24).collect();
        let pt = hex_decode("00112233445566778899aabbccddeeff").unwrap();
        let ct = crypt(AES192, &key, &pt, true).unwrap();
        assert_eq!(
            crate::card::hex_encode(&ct),
            "dda97ca4864cdfe06eaf70a0ec0d7191"
        );
        assert_eq!(crypt(AES192, &key, &ct, false).unwrap(), pt);
        let k3 = hex_decode("0123456789abcdef23456789abcdef01456789abcdef0123").unwrap();
        let ct = crypt(TDES, &k3, &hex_decode("5468652071756663").unwrap(), true).unwrap();
        assert_eq!(crate::card::hex_encode(&ct), "a826fd8ce53b855f");
        assert!(crypt(AES128, &key, &pt, true).is_none(), "wrong key length");
    }
}
