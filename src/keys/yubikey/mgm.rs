//! YubiKey PIV management keys (key reference 9B): their algorithms, their metadata,
//! and mutual authentication with them.
//!
//! The `yubikey` crate 0.8 only knows 3DES management keys, and firmware 5.7+ ships an
//! AES-192 one. This module speaks the two APDUs itself:
//!
//! * GET METADATA (`00 F7 00 9B`, firmware 5.3+): tag 01 = algorithm (03 3DES,
//!   08 AES-128, 0A AES-192, 0C AES-256; absent = 3DES), 02 = PIN/touch policy,
//!   05 = 1 while the key is the factory default;
//! * GENERAL AUTHENTICATE mutual authentication (`00 87 <alg> 9B`): the card sends an
//!   encrypted witness, the host returns it decrypted together with its own challenge,
//!   and the card proves it holds the key by returning the challenge encrypted. The
//!   host checks that answer, so a card (or a man in the middle) without the key cannot
//!   fake a success.
//!
//! The crate gives no raw APDU access, so [`SideChannel`] opens a second PC/SC
//! connection to the same reader in shared mode. A YubiKey has one security state per
//! card, not per connection: what this connection authenticates, the crate's connection
//! can use. See docs/yubikey.md ("Management key") for why that holds on real YubiKeys.

use std::ffi::CString;

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use rand_core::RngCore;
use zeroize::Zeroizing;

/// The factory-default management key: the same 24 bytes for 3DES (before 5.7) and
/// AES-192 (5.7 and later).
pub const DEFAULT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// The PIN-protected data object (Yubico): `88 { 89 <management key> }`.
pub const PROTECTED_OBJECT: u32 = 0x5f_c1_09;

const INS_AUTHENTICATE: u8 = 0x87;
const INS_GET_METADATA: u8 = 0xf7;
const KEY_MGM: u8 = 0x9b;
const SW_OK: u16 = 0x9000;

/// A management key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Tdes,
    Aes128,
    Aes192,
    Aes256,
}

impl Algorithm {
    /// From the PIV algorithm identifier.
    pub fn from_id(id: u8) -> Option<Algorithm> {
        match id {
            0x03 => Some(Algorithm::Tdes),
            0x08 => Some(Algorithm::Aes128),
            0x0a => Some(Algorithm::Aes192),
            0x0c => Some(Algorithm::Aes256),
            _ => None,
        }
    }

    /// The PIV algorithm identifier (P1 of GENERAL AUTHENTICATE).
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Tdes => 0x03,
            Algorithm::Aes128 => 0x08,
            Algorithm::Aes192 => 0x0a,
            Algorithm::Aes256 => 0x0c,
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Tdes | Algorithm::Aes192 => 24,
            Algorithm::Aes128 => 16,
            Algorithm::Aes256 => 32,
        }
    }

    /// Block length in bytes: the length of witness and challenge.
    pub fn block_len(self) -> usize {
        match self {
            Algorithm::Tdes => 8,
            _ => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Tdes => "3DES",
            Algorithm::Aes128 => "AES-128",
            Algorithm::Aes192 => "AES-192",
            Algorithm::Aes256 => "AES-256",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A management key. The bytes are zeroized on drop and never printed.
pub struct MgmKey {
    alg: Algorithm,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for MgmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MgmKey({}, redacted)", self.alg)
    }
}

impl MgmKey {
    /// A key of `alg`; `None` when `bytes` has the wrong length for it.
    pub fn new(alg: Algorithm, bytes: &[u8]) -> Option<MgmKey> {
        (bytes.len() == alg.key_len()).then(|| MgmKey {
            alg,
            key: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The factory-default key for a card whose key has algorithm `alg`
    /// (3DES or AES-192; `None` for others, which have no default).
    pub fn default_for(alg: Algorithm) -> Option<MgmKey> {
        match alg {
            Algorithm::Tdes | Algorithm::Aes192 => MgmKey::new(alg, &DEFAULT_KEY),
            _ => None,
        }
    }

    /// A key given as hex (TUFKEY_YUBIKEY_MGM_KEY) for a card whose key has algorithm
    /// `alg`. The error names the expected length and algorithm, never the key.
    pub fn from_hex(hex_key: &str, alg: Algorithm, what: &str) -> Result<MgmKey, String> {
        let trimmed = hex_key.trim();
        let raw = Zeroizing::new(
            hex::decode(trimmed).map_err(|_| format!("{what} must be hexadecimal digits"))?,
        );
        MgmKey::new(alg, &raw).ok_or_else(|| {
            format!(
                "{what} has {} hex digits, but this YubiKey's management key is {alg}, which takes {} hex digits ({} bytes)",
                trimmed.len(),
                alg.key_len() * 2,
                alg.key_len()
            )
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw bytes (for the `yubikey` crate's own 3DES authentication).
    pub fn bytes(&self) -> &[u8] {
        &self.key
    }

    /// Encrypts one block in place (ECB, no padding), as the card does. A slice that
    /// is not one block long is left as it is.
    pub fn encrypt_block(&self, block: &mut [u8]) {
        self.apply(block, true)
    }

    /// Decrypts one block in place (ECB, no padding).
    pub fn decrypt_block(&self, block: &mut [u8]) {
        self.apply(block, false)
    }

    fn apply(&self, block: &mut [u8], encrypt: bool) {
        if block.len() != self.alg.block_len() {
            return;
        }
        macro_rules! run {
            ($cipher:ty) => {{
                let c = <$cipher>::new(GenericArray::from_slice(&self.key));
                let b = GenericArray::from_mut_slice(block);
                if encrypt {
                    c.encrypt_block(b)
                } else {
                    c.decrypt_block(b)
                }
            }};
        }
        match self.alg {
            Algorithm::Tdes => run!(des::TdesEde3),
            Algorithm::Aes128 => run!(aes::Aes128),
            Algorithm::Aes192 => run!(aes::Aes192),
            Algorithm::Aes256 => run!(aes::Aes256),
        }
    }
}

/// What GET METADATA says about the management key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub algorithm: Algorithm,
    /// Still the factory default.
    pub is_default: bool,
    /// Touch policy byte (1 never, 2 always, 3 cached), when reported.
    pub touch: Option<u8>,
}

impl Metadata {
    /// Whether the card wants a touch for management-key authentication.
    pub fn wants_touch(&self) -> bool {
        matches!(self.touch, Some(2 | 3))
    }
}

/// Parses the TLVs of GET METADATA for key 9B.
pub fn parse_metadata(data: &[u8]) -> Result<Metadata, String> {
    let tlvs = parse_tlvs(data).ok_or("malformed management-key metadata")?;
    let find = |tag: u8| tlvs.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    let algorithm = match find(0x01) {
        None => Algorithm::Tdes,
        Some([id]) => Algorithm::from_id(*id)
            .ok_or_else(|| format!("unknown management key algorithm {id:#04x}"))?,
        Some(_) => return Err("malformed management-key algorithm in the metadata".into()),
    };
    let is_default = match find(0x05) {
        Some([flag]) => *flag != 0,
        _ => false,
    };
    let touch = find(0x02).and_then(|p| p.get(1).copied());
    Ok(Metadata {
        algorithm,
        is_default,
        touch,
    })
}

/// The management key inside the PIN-protected object (`88 { 89 key }`), if present.
pub fn parse_protected(object: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let outer = parse_tlvs(object)?;
    let (_, inner) = outer.iter().find(|(t, _)| *t == 0x88)?;
    let inner = parse_tlvs(inner)?;
    let (_, key) = inner.iter().find(|(t, _)| *t == 0x89)?;
    Some(Zeroizing::new(key.to_vec()))
}

/// One-byte-tag BER-TLVs (lengths up to 0x82 xx xx).
fn parse_tlvs(mut data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let tag = data[0];
        let (len, hdr): (usize, usize) = match *data.get(1)? {
            n if n < 0x80 => (n as usize, 2),
            0x81 => (*data.get(2)? as usize, 3),
            0x82 => ((*data.get(2)? as usize) << 8 | *data.get(3)? as usize, 4),
            _ => return None,
        };
        let value = data.get(hdr..hdr.checked_add(len)?)?;
        out.push((tag, value));
        data = &data[hdr + len..];
    }
    Some(out)
}

/// The value of the `7C { tag value }` dynamic authentication template.
fn dyn_auth_value(data: &[u8], tag: u8) -> Option<&[u8]> {
    let outer = parse_tlvs(data)?;
    let (_, inner) = outer.iter().find(|(t, _)| *t == 0x7c)?;
    let inner = parse_tlvs(inner)?;
    inner.into_iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
}

/// Sends command APDUs to the card: returns the response data and the status word.
pub trait Transport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), String>;
}

/// Why an authentication did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// The card refused the key (wrong key) with this status word.
    Refused(u16),
    /// The card's key has another algorithm than the one asked for (6A80/6A86 on the
    /// witness request).
    WrongAlgorithm(u16),
    /// The card accepted, but its proof did not match: not the card holding this key.
    BadCardResponse,
    /// The card answered something that is not a mutual-authentication response.
    Malformed(&'static str),
    /// PC/SC failed.
    Transport(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Refused(sw) => write!(f, "card status {sw:04X}"),
            AuthError::WrongAlgorithm(sw) => write!(f, "the card's key has another algorithm, status {sw:04X}"),
            AuthError::BadCardResponse => f.write_str("the YubiKey's answer to tufkey's challenge is wrong: it does not hold this management key (or something between tufkey and the YubiKey altered the exchange)"),
            AuthError::Malformed(what) => write!(f, "malformed answer from the YubiKey: {what}"),
            AuthError::Transport(e) => write!(f, "smart card error: {e}"),
        }
    }
}

fn apdu(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let mut a = vec![0x00, ins, p1, p2];
    if !data.is_empty() {
        a.push(data.len() as u8);
        a.extend_from_slice(data);
    }
    a
}

/// Mutual authentication with `key` (GENERAL AUTHENTICATE, witness and challenge).
pub fn mutual_auth(t: &mut dyn Transport, key: &MgmKey) -> Result<(), AuthError> {
    let alg = key.algorithm();
    let n = alg.block_len();
    // 1. Ask for a witness: 7C 02 80 00.
    let (resp, sw) = t
        .transmit(&apdu(
            INS_AUTHENTICATE,
            alg.id(),
            KEY_MGM,
            &[0x7c, 0x02, 0x80, 0x00],
        ))
        .map_err(AuthError::Transport)?;
    match sw {
        SW_OK => {}
        0x6a80 | 0x6a86 => return Err(AuthError::WrongAlgorithm(sw)),
        _ => return Err(AuthError::Refused(sw)),
    }
    let witness =
        dyn_auth_value(&resp, 0x80)
            .filter(|w| w.len() == n)
            .ok_or(AuthError::Malformed(
                "no witness of the algorithm's block size",
            ))?;
    // 2. Answer with the decrypted witness and a challenge of our own.
    let mut decrypted = Zeroizing::new(witness.to_vec());
    key.decrypt_block(&mut decrypted);
    let mut challenge = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut challenge);
    let mut data = Zeroizing::new(Vec::with_capacity(4 + 2 * n + 2));
    data.extend_from_slice(&[0x7c, (4 + 2 * n) as u8, 0x80, n as u8]);
    data.extend_from_slice(&decrypted);
    data.extend_from_slice(&[0x81, n as u8]);
    data.extend_from_slice(&challenge);
    let (resp, sw) = t
        .transmit(&apdu(INS_AUTHENTICATE, alg.id(), KEY_MGM, &data))
        .map_err(AuthError::Transport)?;
    if sw != SW_OK {
        return Err(AuthError::Refused(sw));
    }
    // 3. The card must return our challenge encrypted with the same key.
    let answer = dyn_auth_value(&resp, 0x82)
        .filter(|a| a.len() == n)
        .ok_or(AuthError::Malformed("no encrypted challenge"))?;
    let mut expected = challenge;
    key.encrypt_block(&mut expected);
    let diff = expected
        .iter()
        .zip(answer)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(AuthError::BadCardResponse);
    }
    Ok(())
}

/// GET METADATA for the management key. `Ok(None)` when the card does not support it
/// (firmware before 5.3: the key is then 3DES).
pub fn read_metadata(t: &mut dyn Transport) -> Result<Option<Metadata>, String> {
    let (resp, sw) = t.transmit(&apdu(INS_GET_METADATA, 0x00, KEY_MGM, &[]))?;
    match sw {
        SW_OK => parse_metadata(&resp).map(Some),
        0x6d00 | 0x6a81 | 0x6a88 => Ok(None),
        sw => Err(format!(
            "the YubiKey answered status {sw:04X} to GET METADATA"
        )),
    }
}

/// A second PC/SC connection (shared mode) to the reader of a YubiKey the `yubikey`
/// crate already holds. It never resets the card: it leaves it as it is on disconnect,
/// so the PIN verification and the management-key authentication stay for the crate's
/// connection. It does not SELECT the PIV application either (that would clear the PIN
/// verification): the crate's connection already selected it.
pub struct SideChannel {
    card: Option<pcsc::Card>,
}

impl SideChannel {
    pub fn open(reader: &str) -> Result<SideChannel, pcsc::Error> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
        let name = CString::new(reader).map_err(|_| pcsc::Error::UnknownReader)?;
        // T=1 and shared, as the `yubikey` crate connects.
        let card = ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::T1)?;
        Ok(SideChannel { card: Some(card) })
    }

    /// Runs `f` inside one PC/SC transaction, so no other program's APDUs come between.
    pub fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Transport) -> R,
    ) -> Result<R, pcsc::Error> {
        let card = self.card.as_mut().ok_or(pcsc::Error::InvalidHandle)?;
        let tx = card.transaction()?;
        let mut t = PcscTransport { tx: &tx };
        let out = f(&mut t);
        // Ending (also on drop) leaves the card as it is.
        let _ = tx.end(pcsc::Disposition::LeaveCard);
        Ok(out)
    }
}

impl Drop for SideChannel {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            // pcsc's own Drop would reset the card, which clears the PIN and the
            // management-key authentication for every connection: never let it run.
            if let Err((card, _)) = card.disconnect(pcsc::Disposition::LeaveCard) {
                std::mem::forget(card);
            }
        }
    }
}

struct PcscTransport<'a, 'tx> {
    tx: &'a pcsc::Transaction<'tx>,
}

impl Transport for PcscTransport<'_, '_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), String> {
        transmit_chained(apdu, |command| {
            let mut buf = [0u8; 260];
            self.tx
                .transmit(command, &mut buf)
                .map(|r| r.to_vec())
                .map_err(|e| e.to_string())
        })
    }
}

/// At most this many GET RESPONSE rounds after a command ...
pub const MAX_GET_RESPONSE_ROUNDS: usize = 32;
/// ... and at most this much data in one answer (PIV objects are far smaller).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends `apdu` with `send` and collects the answer, following `61xx` (more data) with
/// GET RESPONSE. A card or proxy that keeps answering `61xx` is cut off after
/// [`MAX_GET_RESPONSE_ROUNDS`] rounds or [`MAX_RESPONSE_BYTES`] bytes with an error.
fn transmit_chained(
    apdu: &[u8],
    mut send: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(Vec<u8>, u16), String> {
    let mut data = Vec::new();
    let mut command = apdu.to_vec();
    let mut rounds = 0usize;
    loop {
        let resp = send(&command)?;
        if resp.len() < 2 {
            return Err("short response from the card".into());
        }
        let (body, sw) = resp.split_at(resp.len() - 2);
        data.extend_from_slice(body);
        let sw = u16::from_be_bytes([sw[0], sw[1]]);
        if sw >> 8 == 0x61 {
            rounds += 1;
            if rounds > MAX_GET_RESPONSE_ROUNDS || data.len() > MAX_RESPONSE_BYTES {
                return Err(format!(
                    "the card kept answering 61xx (more data): {} bytes after {} GET RESPONSE rounds; gave up (limit {MAX_GET_RESPONSE_ROUNDS} rounds, {MAX_RESPONSE_BYTES} bytes)",
                    data.len(),
                    rounds - 1
                ));
            }
            // More data: GET RESPONSE.
            command = vec![0x00, 0xc0, 0x00, 0x00, sw as u8];
            continue;
        }
        return Ok((data, sw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(alg: Algorithm, key_hex: &str, plain_hex: &str, cipher_hex: &str) {
        let key = MgmKey::new(alg, &hex::decode(key_hex).unwrap()).unwrap();
        let mut b = hex::decode(plain_hex).unwrap();
        key.encrypt_block(&mut b);
        assert_eq!(hex::encode(&b), cipher_hex, "{alg} encrypt");
        key.decrypt_block(&mut b);
        assert_eq!(hex::encode(&b), plain_hex, "{alg} decrypt");
    }

    #[test]
    fn block_ciphers_match_published_vectors() {
        // FIPS-197 appendix C.1-C.3.
        block(
            Algorithm::Aes128,
            "000102030405060708090a0b0c0d0e0f",
            "00112233445566778899aabbccddeeff",
            "69c4e0d86a7b0430d8cdb78070b4c55a",
        );
        block(
            Algorithm::Aes192,
            "000102030405060708090a0b0c0d0e0f1011121314151617",
            "00112233445566778899aabbccddeeff",
            "dda97ca4864cdfe06eaf70a0ec0d7191",
        );
        block(
            Algorithm::Aes256,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "00112233445566778899aabbccddeeff",
            "8ea2b7ca516745bfeafc49904b496089",
        );
        // NIST SP 800-67 rev. 1, appendix B: three-key TDEA, first block.
        block(
            Algorithm::Tdes,
            "0123456789abcdef23456789abcdef01456789abcdef0123",
            "5468652071756663",
            "a826fd8ce53b855f",
        );
        // Three equal DES keys are single DES (the classic "Now is t" vector).
        block(
            Algorithm::Tdes,
            "0123456789abcdef0123456789abcdef0123456789abcdef",
            "4e6f772069732074",
            "3fa40e8a984d4815",
        );
    }

    #[test]
    fn algorithms_have_piv_ids_and_sizes() {
        for (id, alg, key, blk) in [
            (0x03, Algorithm::Tdes, 24, 8),
            (0x08, Algorithm::Aes128, 16, 16),
            (0x0a, Algorithm::Aes192, 24, 16),
            (0x0c, Algorithm::Aes256, 32, 16),
        ] {
            assert_eq!(Algorithm::from_id(id), Some(alg));
            assert_eq!(alg.id(), id);
            assert_eq!(alg.key_len(), key);
            assert_eq!(alg.block_len(), blk);
        }
        assert_eq!(Algorithm::from_id(0x11), None);
        assert!(MgmKey::default_for(Algorithm::Aes192).is_some());
        assert!(MgmKey::default_for(Algorithm::Tdes).is_some());
        assert!(MgmKey::default_for(Algorithm::Aes256).is_none());
    }

    #[test]
    fn hex_keys_are_checked_against_the_cards_algorithm_without_echoing_them() {
        let k = MgmKey::from_hex(&"ab".repeat(24), Algorithm::Aes192, "X").unwrap();
        assert_eq!(k.algorithm(), Algorithm::Aes192);
        let e = MgmKey::from_hex(&"ab".repeat(16), Algorithm::Aes192, "X").unwrap_err();
        assert!(
            e.contains("32 hex digits") && e.contains("AES-192") && e.contains("48 hex digits"),
            "{e}"
        );
        assert!(!e.contains("abab"), "{e}");
        let e = MgmKey::from_hex(&"cd".repeat(24), Algorithm::Aes256, "X").unwrap_err();
        assert!(
            e.contains("AES-256") && e.contains("64 hex digits") && !e.contains("cdcd"),
            "{e}"
        );
        let e = MgmKey::from_hex("zz-not-hex", Algorithm::Tdes, "X").unwrap_err();
        assert!(
            e.contains("hexadecimal") && !e.contains("zz-not-hex"),
            "{e}"
        );
        assert!(!format!("{k:?}").contains("ab"), "Debug shows no key bytes");
    }

    #[test]
    fn metadata_and_protected_objects_parse() {
        // AES-192, touch never, default (as a fresh 5.7 YubiKey reports).
        let m = parse_metadata(&hex::decode("01010a020200010501 01".replace(' ', "")).unwrap())
            .unwrap();
        assert_eq!(
            m,
            Metadata {
                algorithm: Algorithm::Aes192,
                is_default: true,
                touch: Some(1)
            }
        );
        assert!(!m.wants_touch());
        // No algorithm tag: 3DES (firmware 5.3); touch always; not default.
        let m = parse_metadata(&hex::decode("020200020501 00".replace(' ', "")).unwrap()).unwrap();
        assert_eq!(m.algorithm, Algorithm::Tdes);
        assert!(!m.is_default && m.wants_touch());
        assert!(parse_metadata(&[0x01, 0x01, 0x42]).is_err());
        assert!(parse_metadata(&[0x01, 0x05, 0x0a]).is_err());

        let mut obj = vec![0x88, 26, 0x89, 24];
        obj.extend_from_slice(&DEFAULT_KEY);
        assert_eq!(parse_protected(&obj).unwrap().as_slice(), &DEFAULT_KEY);
        assert!(parse_protected(&[0x88, 0x00]).is_none());
        assert!(parse_protected(&[0x88, 0x05, 0x89]).is_none());
    }

    /// A card holding `key` that speaks mutual authentication, for the host side's tests.
    struct SimCard {
        key: MgmKey,
        witness: Option<Vec<u8>>,
        /// Answer the host's challenge with garbage (a card without the key that accepts anything).
        forge: bool,
        authenticated: bool,
    }

    impl Transport for SimCard {
        fn transmit(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), String> {
            let alg = self.key.algorithm();
            let n = alg.block_len();
            assert_eq!(&apdu[..2], &[0x00, 0x87]);
            if apdu[2] != alg.id() || apdu[3] != 0x9b {
                return Ok((vec![], 0x6a86));
            }
            let data = &apdu[5..];
            if data == [0x7c, 0x02, 0x80, 0x00] {
                let mut w = vec![0u8; n];
                rand_core::OsRng.fill_bytes(&mut w);
                let mut enc = w.clone();
                self.key.encrypt_block(&mut enc);
                self.witness = Some(w);
                let mut out = vec![0x7c, (n + 2) as u8, 0x80, n as u8];
                out.extend(enc);
                return Ok((out, 0x9000));
            }
            let w = dyn_auth_value(data, 0x80).unwrap();
            let c = dyn_auth_value(data, 0x81).unwrap();
            if self.witness.take().as_deref() != Some(w) {
                return Ok((vec![], 0x6982));
            }
            let mut r = c.to_vec();
            if self.forge {
                r[0] ^= 1;
            } else {
                self.key.encrypt_block(&mut r);
            }
            self.authenticated = true;
            let mut out = vec![0x7c, (n + 2) as u8, 0x82, n as u8];
            out.extend(r);
            Ok((out, 0x9000))
        }
    }

    fn sim(alg: Algorithm, key: &[u8], forge: bool) -> SimCard {
        SimCard {
            key: MgmKey::new(alg, key).unwrap(),
            witness: None,
            forge,
            authenticated: false,
        }
    }

    #[test]
    fn mutual_authentication_succeeds_with_the_right_key_for_every_algorithm() {
        for alg in [
            Algorithm::Tdes,
            Algorithm::Aes128,
            Algorithm::Aes192,
            Algorithm::Aes256,
        ] {
            let key: Vec<u8> = (0..alg.key_len() as u8)
                .map(|i| i.wrapping_mul(37) ^ 0x5a)
                .collect();
            let mut card = sim(alg, &key, false);
            mutual_auth(&mut card, &MgmKey::new(alg, &key).unwrap()).unwrap();
            assert!(card.authenticated, "{alg}");
        }
    }

    #[test]
    fn a_wrong_key_a_wrong_algorithm_and_a_forged_card_answer_all_fail() {
        let mut card = sim(Algorithm::Aes192, &DEFAULT_KEY, false);
        let wrong = MgmKey::new(Algorithm::Aes192, &[9u8; 24]).unwrap();
        assert_eq!(
            mutual_auth(&mut card, &wrong),
            Err(AuthError::Refused(0x6982))
        );
        assert!(!card.authenticated);

        // The 3DES default against a 5.7 card (AES-192 default): the same bytes, another algorithm.
        let mut card = sim(Algorithm::Aes192, &DEFAULT_KEY, false);
        let tdes = MgmKey::default_for(Algorithm::Tdes).unwrap();
        assert_eq!(
            mutual_auth(&mut card, &tdes),
            Err(AuthError::WrongAlgorithm(0x6a86))
        );

        // A card that lets anything in but cannot encrypt our challenge is caught.
        let mut card = sim(Algorithm::Aes128, &[1u8; 16], true);
        let key = MgmKey::new(Algorithm::Aes128, &[1u8; 16]).unwrap();
        assert_eq!(
            mutual_auth(&mut card, &key),
            Err(AuthError::BadCardResponse)
        );
    }

    #[test]
    fn get_response_chains_are_followed_and_bounded() {
        // Two chained parts, then the end.
        let mut parts = vec![
            vec![1, 2, 0x61, 0x02],
            vec![3, 4, 0x61, 0x01],
            vec![5, 0x90, 0x00],
        ]
        .into_iter();
        let mut sent = Vec::new();
        let (data, sw) = transmit_chained(&[0, 0xcb, 0x3f, 0xff], |c| {
            sent.push(c.to_vec());
            Ok(parts.next().unwrap())
        })
        .unwrap();
        assert_eq!((data, sw), (vec![1, 2, 3, 4, 5], 0x9000));
        assert_eq!(sent[1], vec![0x00, 0xc0, 0x00, 0x00, 0x02]);
        assert_eq!(sent.len(), 3);

        // A card that never stops answering 61xx: an error after the round limit.
        let mut calls = 0usize;
        let err = transmit_chained(&[0, 0xcb, 0x3f, 0xff], |_| {
            calls += 1;
            Ok(vec![0xaa, 0x61, 0x00])
        })
        .unwrap_err();
        assert!(err.contains("kept answering 61xx"), "{err}");
        assert_eq!(calls, MAX_GET_RESPONSE_ROUNDS + 1);

        // One that sends a lot per round: cut off by size.
        let mut calls = 0usize;
        let err = transmit_chained(&[0, 0xcb, 0x3f, 0xff], |_| {
            calls += 1;
            let mut r = vec![0u8; 4096];
            r.extend_from_slice(&[0x61, 0x00]);
            Ok(r)
        })
        .unwrap_err();
        assert!(err.contains("bytes"), "{err}");
        assert!(calls <= MAX_RESPONSE_BYTES / 4096 + 1, "{calls}");

        // A short answer is an error, not a panic.
        assert!(transmit_chained(&[0], |_| Ok(vec![0x90])).is_err());
    }
}
