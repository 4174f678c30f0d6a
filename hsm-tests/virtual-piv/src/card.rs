//! The APDU layer between vpcd and piv-authenticator.
//!
//! It assembles chained commands, serves long responses through GET RESPONSE
//! (61xx), and covers what the card lacks compared with a YubiKey 5:
//!
//! * SELECT with a truncated PIV AID (`A0 00 00 03 08`, as the `yubikey`
//!   crate sends it) is rewritten to the full AID;
//! * GET VERSION (FD) reports the configured firmware (5.4.3);
//! * GET SERIAL (F8) reports `--serial`;
//! * ATTEST (F9) is answered here, with a certificate for the slot's public
//!   key (learnt from the GENERATE ASYMMETRIC response) signed by the test
//!   attestation intermediate, which GET DATA 5FFF01 serves;
//! * GET METADATA (F7) is answered here for slots whose key was generated
//!   through this runner, and for the PIN (retries);
//! * the key history object 5FC10C reads as absent, as on a YubiKey;
//! * re-selecting PIV clears the PIN verification, as on a YubiKey;
//! * with `--generic` it is a plain SP 800-73-4 card instead: no GET METADATA, no
//!   ATTEST, no 5FFF01, and the PIN stays verified across SELECT;
//! * the management key (9B) is the runner's (see mgm.rs): 3DES or AES-128/192/256
//!   with GENERAL AUTHENTICATE (mutual and single), SET MANAGEMENT KEY and metadata.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use der::{asn1::BitString, Any, Decode as _};
use iso7816::command::CommandView;
use piv_authenticator::Authenticator;
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::{mgm, pki::Pki, power::PowerLog, tlv};

/// Full PIV AID (NIST SP 800-73-4): RID A000000308, PIX 00001000 0100.
const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// ATR of a YubiKey 5 (PKI/CCID interface); historical bytes spell "YubiKey".
const YUBIKEY_ATR: [u8; 23] = [
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];

const SW_OK: u16 = 0x9000;
const SW_WRONG_LENGTH: u16 = 0x6700;
const SW_WRONG_DATA: u16 = 0x6A80;
const SW_FILE_NOT_FOUND: u16 = 0x6A82;
const SW_REF_NOT_FOUND: u16 = 0x6A88;
const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;
const SW_CHAINING_ERROR: u16 = 0x6883;
const SW_SECURITY_STATUS: u16 = 0x6982;
const SW_CONDITIONS_OF_USE: u16 = 0x6985;
const SW_INCORRECT_P1P2: u16 = 0x6A86;
/// PIV algorithm id of ECC P-256.
const ALG_P256: u8 = 0x11;

const RESPONSE_CAPACITY: usize = 8192;

pub struct Config {
    pub serial: u32,
    pub firmware: [u8; 3],
    /// Yubico form factor byte for attestation (1 = USB-A keychain).
    pub form_factor: u8,
    /// A generic PIV card (`--generic`): none of Yubico's GET METADATA and ATTEST, and
    /// the PIN verification survives a SELECT.
    pub generic: bool,
}

/// A key this runner saw being generated (or imported) in a slot.
#[derive(Clone, Debug)]
pub struct SlotKey {
    pub algorithm: u8,
    /// 1 = generated, 2 = imported (Yubico metadata encoding).
    pub origin: u8,
    pub pin_policy: u8,
    pub touch_policy: u8,
    /// The content of the 7F49 template (86 point, or 81 modulus 82 exponent).
    pub public: Vec<u8>,
    /// An imported P-256 private key (32-byte scalar), which this runner holds and signs
    /// with itself: piv-authenticator 0.7 imports only RSA. Test use only: it is kept in
    /// slots.txt in the clear.
    pub imported_p256: Option<Vec<u8>>,
}

/// Slot keys, persisted as one line per slot in `<state>/slots.txt`.
pub struct Slots {
    path: PathBuf,
    map: BTreeMap<u8, SlotKey>,
}

impl Slots {
    pub fn load(state: &Path) -> Self {
        let path = state.join("slots.txt");
        let mut map = BTreeMap::new();
        if let Ok(text) = fs::read_to_string(&path) {
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() != 6 && f.len() != 7 {
                    continue;
                }
                let byte = |s: &str| u8::from_str_radix(s, 16).ok();
                let (Some(slot), Some(algorithm), Some(origin), Some(pin), Some(touch)) =
                    (byte(f[0]), byte(f[1]), byte(f[2]), byte(f[3]), byte(f[4]))
                else {
                    continue;
                };
                let public = if f[5] == "-" {
                    Vec::new()
                } else {
                    hex_decode(f[5])
                };
                map.insert(
                    slot,
                    SlotKey {
                        algorithm,
                        origin,
                        pin_policy: pin,
                        touch_policy: touch,
                        public,
                        imported_p256: f.get(6).map(|s| hex_decode(s)),
                    },
                );
            }
        }
        Self { path, map }
    }

    fn save(&self) {
        let mut text = String::new();
        for (slot, k) in &self.map {
            let public = if k.public.is_empty() {
                "-".to_string()
            } else {
                hex_encode(&k.public)
            };
            let secret = k
                .imported_p256
                .as_ref()
                .map(|s| format!(" {}", hex_encode(s)))
                .unwrap_or_default();
            text.push_str(&format!(
                "{slot:02x} {:02x} {:02x} {:02x} {:02x} {public}{secret}\n",
                k.algorithm, k.origin, k.pin_policy, k.touch_policy
            ));
        }
        if let Err(e) = fs::write(&self.path, text) {
            log::error!("cannot save {}: {e}", self.path.display());
        }
    }

    fn set(&mut self, slot: u8, key: SlotKey) {
        self.map.insert(slot, key);
        self.save();
    }

    fn clear(&mut self) {
        self.map.clear();
        self.save();
    }
}

/// What outlives a card reset (power cycle): configuration, PKI, slot keys,
/// and the APDU transport state.
pub struct Shared {
    pub config: Config,
    pub pki: Pki,
    pub slots: Slots,
    pub mgm: mgm::MgmKey,
    /// Resets and power cycles pcscd asked for, counted in `<state>/power.txt`.
    pub power: PowerLog,
    chain: Option<Chain>,
    response: Vec<u8>,
    response_offset: usize,
}

struct Chain {
    header: [u8; 3], // ins, p1, p2
    data: Vec<u8>,
}

impl Shared {
    pub fn new(config: Config, pki: Pki, slots: Slots, mgm: mgm::MgmKey, power: PowerLog) -> Self {
        Self {
            config,
            pki,
            slots,
            mgm,
            power,
            chain: None,
            response: Vec::new(),
            response_offset: 0,
        }
    }
}

pub struct Card<'s, T> {
    piv: Authenticator<T>,
    shared: &'s mut Shared,
    /// Set on power-off/reset: the caller then rebuilds the card, which
    /// clears the PIN and management-key authentication like a power cycle.
    pub reset_requested: bool,
    used: bool,
    reply: heapless::Vec<u8, RESPONSE_CAPACITY>,
    /// Management-key authentication in progress (cleared by a power cycle).
    mgm_pending: Option<Pending>,
    /// The management key was authenticated since the last power cycle.
    admin: bool,
}

/// The first half of a management-key authentication.
enum Pending {
    /// Mutual: the plaintext witness the card sent encrypted.
    Witness(Vec<u8>),
    /// Single (external authenticate): the challenge the card sent in the clear.
    Challenge(Vec<u8>),
}

impl<'s, T: piv_authenticator::Client> Card<'s, T> {
    pub fn new(piv: Authenticator<T>, shared: &'s mut Shared) -> Self {
        Self {
            piv,
            shared,
            reset_requested: false,
            used: false,
            reply: heapless::Vec::new(),
            mgm_pending: None,
            admin: false,
        }
    }

    fn handle(&mut self, apdu: &[u8]) -> Vec<u8> {
        let view = match CommandView::try_from(apdu) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("unparsable APDU {}: {e:?}", hex_encode(apdu));
                let sw = match e {
                    iso7816::command::FromSliceError::InvalidClass => SW_CLA_NOT_SUPPORTED,
                    _ => SW_WRONG_LENGTH,
                };
                return sw_only(sw);
            }
        };
        let cla = apdu[0];
        let (ins, p1, p2) = (apdu[1], apdu[2], apdu[3]);
        // Le absent (case 1/3) is treated like Le = 256, as a YubiKey does.
        let le = match view.expected() {
            0 => 256,
            n => n,
        };

        if ins == 0xC0 {
            return self.next_chunk(le);
        }
        self.shared.response.clear();
        self.shared.response_offset = 0;

        // Command chaining (CLA bit 0x10): collect, answer 9000 until the last part.
        let data: Vec<u8>;
        if cla & 0x10 != 0 {
            match &mut self.shared.chain {
                Some(c) if c.header == [ins, p1, p2] => c.data.extend_from_slice(view.data()),
                _ => {
                    self.shared.chain = Some(Chain {
                        header: [ins, p1, p2],
                        data: view.data().to_vec(),
                    })
                }
            }
            return sw_only(SW_OK);
        } else if let Some(c) = self.shared.chain.take() {
            if c.header != [ins, p1, p2] {
                return sw_only(SW_CHAINING_ERROR);
            }
            let mut d = c.data;
            d.extend_from_slice(view.data());
            data = d;
        } else {
            data = view.data().to_vec();
        }
        let cla = cla & !0x10;

        let (body, sw) = self.dispatch(cla, ins, p1, p2, &data);
        log::debug!(
            "{cla:02x} {ins:02x} {p1:02x} {p2:02x} [{}] -> {sw:04x} [{}]",
            data.len(),
            body.len()
        );
        self.shared.response = body;
        self.shared.response_offset = 0;
        if sw != SW_OK {
            let mut out = std::mem::take(&mut self.shared.response);
            out.extend_from_slice(&sw.to_be_bytes());
            return out;
        }
        self.next_chunk(le)
    }

    fn next_chunk(&mut self, le: usize) -> Vec<u8> {
        let s = &mut *self.shared;
        let rest = s.response.len() - s.response_offset;
        let n = rest.min(le);
        let mut out = s.response[s.response_offset..s.response_offset + n].to_vec();
        s.response_offset += n;
        let left = s.response.len() - s.response_offset;
        if left == 0 {
            out.extend_from_slice(&SW_OK.to_be_bytes());
        } else {
            out.extend_from_slice(&[0x61, left.min(0xFF) as u8]);
        }
        out
    }

    /// Sends a complete (unchained) command to piv-authenticator.
    fn forward(&mut self, cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        let mut apdu = vec![cla, ins, p1, p2];
        if data.len() > 255 {
            apdu.extend_from_slice(&[0, (data.len() >> 8) as u8, data.len() as u8]);
            apdu.extend_from_slice(data);
        } else if !data.is_empty() {
            apdu.push(data.len() as u8);
            apdu.extend_from_slice(data);
        }
        let view = match CommandView::try_from(apdu.as_slice()) {
            Ok(v) => v,
            Err(_) => return (Vec::new(), SW_WRONG_LENGTH),
        };
        self.reply.clear();
        match self.piv.respond(view, self.reply.as_mut_view()) {
            Ok(()) => (self.reply.to_vec(), SW_OK),
            Err(status) => (Vec::new(), u16::from_be_bytes(status.into())),
        }
    }

    fn dispatch(&mut self, cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        match (ins, p1, p2) {
            // SELECT by AID: accept truncated PIV AIDs.
            (0xA4, 0x04, _) => {
                let is_piv = data.len() >= 5 && PIV_AID.starts_with(data);
                let (body, sw) = if is_piv && data.len() < PIV_AID.len() {
                    self.forward(cla, ins, p1, p2, &PIV_AID)
                } else {
                    self.forward(cla, ins, p1, p2, data)
                };
                if is_piv && sw == SW_OK && !self.shared.config.generic {
                    // A YubiKey forgets the PIN verification when PIV is
                    // (re)selected; the yubikey crate relies on that to read
                    // the retry counter. piv-authenticator does not, so log out.
                    let _ = self.forward(0x00, 0x20, 0xFF, 0x80, &[]);
                }
                (body, sw)
            }
            // Yubico's extensions a generic PIV card lacks.
            (0xF9 | 0xF7, _, _) if self.shared.config.generic => (Vec::new(), SW_INS_NOT_SUPPORTED),
            (0xCB, 0x3F, 0xFF)
                if self.shared.config.generic
                    && tlv::find(data, 0x5C) == Some(&[0x5F, 0xFF, 0x01][..]) =>
            {
                (Vec::new(), SW_FILE_NOT_FOUND)
            }
            // GET VERSION
            (0xFD, _, _) => (self.shared.config.firmware.to_vec(), SW_OK),
            // GET SERIAL
            (0xF8, _, _) => (self.shared.config.serial.to_be_bytes().to_vec(), SW_OK),
            // ATTEST
            (0xF9, slot, _) => self.attest(slot),
            // GET METADATA
            (0xF7, _, 0x9B) => self.mgm_metadata(),
            (0xF7, _, slot) => self.metadata(slot),
            // GENERAL AUTHENTICATE with the management key
            (0x87, alg, 0x9B) => self.mgm_authenticate(alg, data),
            // SET MANAGEMENT KEY (Yubico): P2 FF = no touch, FE = touch
            (0xFF, 0xFF, p2 @ (0xFF | 0xFE)) => self.set_mgm_key(p2, data),
            // GET DATA
            (0xCB, 0x3F, 0xFF) => match tlv::find(data, 0x5C) {
                Some([0x5F, 0xFF, 0x01]) => self.attestation_object(),
                // PIV's optional key history object; piv-authenticator creates one
                // that the yubikey crate's Key::list takes for a certificate.
                Some([0x5F, 0xC1, 0x0C]) => (Vec::new(), SW_FILE_NOT_FOUND),
                // The PIN-protected object (printed information), kept by the runner.
                Some([0x5F, 0xC1, 0x09]) => self.protected_object(),
                _ => self.forward(cla, ins, p1, p2, data),
            },
            // PUT DATA of the PIN-protected object: needs the management key.
            (0xDB, 0x3F, 0xFF) => match tlv::find(data, 0x5C) {
                Some([0x5F, 0xC1, 0x09]) => {
                    if !self.admin {
                        return (Vec::new(), SW_SECURITY_STATUS);
                    }
                    let value = tlv::find(data, 0x53).unwrap_or(&[]);
                    self.shared
                        .mgm
                        .set_protected((!value.is_empty()).then(|| value.to_vec()));
                    (Vec::new(), SW_OK)
                }
                _ => self.forward(cla, ins, p1, p2, data),
            },
            // GENERATE ASYMMETRIC KEY PAIR: learn the public key.
            (0x47, 0x00, slot) => {
                let (body, sw) = self.forward(cla, ins, p1, p2, data);
                if sw == SW_OK {
                    self.learn_generated(slot, data, &body);
                }
                (body, sw)
            }
            // IMPORT ASYMMETRIC KEY (Yubico) of a P-256 key: held by this runner.
            (0xFE, ALG_P256, slot) => self.import_p256(slot, data),
            // GENERAL AUTHENTICATE with an imported P-256 key: signed by this runner.
            (0x87, ALG_P256, slot) if self.imported_p256(slot).is_some() => {
                self.sign_imported(slot, data)
            }
            // IMPORT ASYMMETRIC KEY (Yubico): attestation is refused for imported keys.
            (0xFE, alg, slot) => {
                let (body, sw) = self.forward(cla, ins, p1, p2, data);
                if sw == SW_OK {
                    let key = SlotKey {
                        algorithm: alg,
                        origin: 2,
                        pin_policy: tlv::find(data, 0xAA)
                            .and_then(|v| v.first().copied())
                            .unwrap_or_else(|| default_pin_policy(slot)),
                        touch_policy: tlv::find(data, 0xAB)
                            .and_then(|v| v.first().copied())
                            .unwrap_or(1),
                        public: Vec::new(),
                        imported_p256: None,
                    };
                    self.shared.slots.set(slot, key);
                }
                (body, sw)
            }
            // RESET (Yubico)
            (0xFB, _, _) => {
                let (body, sw) = self.forward(cla, ins, p1, p2, data);
                if sw == SW_OK {
                    self.shared.slots.clear();
                    let factory = mgm::factory_alg(self.shared.config.firmware);
                    self.shared.mgm.set(factory, &mgm::DEFAULT_KEY, 1);
                    self.shared.mgm.set_protected(None);
                    self.admin = false;
                }
                (body, sw)
            }
            _ => self.forward(cla, ins, p1, p2, data),
        }
    }

    /// GET DATA 5FC109: readable once the PIN is verified.
    /// The scalar of a P-256 key imported into `slot`, if that is what the slot holds.
    fn imported_p256(&self, slot: u8) -> Option<Vec<u8>> {
        self.shared
            .slots
            .map
            .get(&slot)
            .and_then(|k| k.imported_p256.clone())
    }

    /// IMPORT ASYMMETRIC KEY for P-256 (tag 06: the 32-byte scalar, then AA/AB
    /// policies), after the management key, as a YubiKey wants it.
    fn import_p256(&mut self, slot: u8, data: &[u8]) -> (Vec<u8>, u16) {
        if !self.admin {
            return (Vec::new(), SW_SECURITY_STATUS);
        }
        let Some(scalar) = tlv::find(data, 0x06) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Ok(key) = p256::ecdsa::SigningKey::from_slice(scalar) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let point = key.verifying_key().to_encoded_point(false);
        let mut public = Vec::new();
        tlv::put(&mut public, 0x86, point.as_bytes());
        let entry = SlotKey {
            algorithm: ALG_P256,
            origin: 2,
            pin_policy: tlv::find(data, 0xAA)
                .and_then(|v| v.first().copied())
                .filter(|p| *p != 0)
                .unwrap_or_else(|| default_pin_policy(slot)),
            touch_policy: tlv::find(data, 0xAB)
                .and_then(|v| v.first().copied())
                .filter(|t| *t != 0)
                .unwrap_or(1),
            public,
            imported_p256: Some(scalar.to_vec()),
        };
        self.shared.slots.set(slot, entry);
        (Vec::new(), SW_OK)
    }

    /// GENERAL AUTHENTICATE (7C { 82 00, 81 digest }) with an imported P-256 key: only
    /// once the PIN is verified (asked of piv-authenticator with an empty VERIFY), the
    /// signature DER in 7C { 82 … } as a YubiKey answers.
    fn sign_imported(&mut self, slot: u8, data: &[u8]) -> (Vec<u8>, u16) {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let (_, pin_sw) = self.forward(0x00, 0x20, 0x00, 0x80, &[]);
        if pin_sw != SW_OK {
            return (Vec::new(), SW_SECURITY_STATUS);
        }
        let Some(digest) = tlv::find(data, 0x7C).and_then(|t| tlv::find(t, 0x81)) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let Some(key) = self
            .imported_p256(slot)
            .and_then(|s| p256::ecdsa::SigningKey::from_slice(&s).ok())
        else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let sig: p256::ecdsa::Signature = match key.sign_prehash(digest) {
            Ok(s) => s,
            Err(_) => return (Vec::new(), SW_WRONG_DATA),
        };
        let mut inner = Vec::new();
        tlv::put(&mut inner, 0x82, sig.to_der().as_bytes());
        let mut out = Vec::new();
        tlv::put(&mut out, 0x7C, &inner);
        (out, SW_OK)
    }

    fn protected_object(&mut self) -> (Vec<u8>, u16) {
        let (_, sw) = self.forward(0x00, 0x20, 0x00, 0x80, &[]);
        if sw != SW_OK {
            return (Vec::new(), SW_SECURITY_STATUS);
        }
        match &self.shared.mgm.protected {
            Some(v) => {
                let mut out = Vec::new();
                tlv::put(&mut out, 0x53, v);
                (out, SW_OK)
            }
            None => (Vec::new(), SW_FILE_NOT_FOUND),
        }
    }

    /// GET METADATA 9B (firmware 5.3+): algorithm, touch policy, default flag.
    fn mgm_metadata(&mut self) -> (Vec<u8>, u16) {
        let fw = self.shared.config.firmware;
        if (fw[0], fw[1]) < (5, 3) {
            return (Vec::new(), SW_INS_NOT_SUPPORTED);
        }
        let m = &self.shared.mgm;
        let mut out = Vec::new();
        tlv::put(&mut out, 0x01, &[m.alg]);
        tlv::put(&mut out, 0x02, &[0x00, m.touch]);
        tlv::put(&mut out, 0x05, &[u8::from(m.is_default())]);
        (out, SW_OK)
    }

    /// GENERAL AUTHENTICATE 9B: witness (7C 02 80 00) then witness + challenge
    /// (mutual), or challenge (7C 02 81 00) then response (single).
    fn mgm_authenticate(&mut self, alg: u8, data: &[u8]) -> (Vec<u8>, u16) {
        let (key_alg, key) = (self.shared.mgm.alg, self.shared.mgm.key.clone());
        if alg != key_alg {
            // A YubiKey answers a request for another algorithm with 6A86.
            self.mgm_pending = None;
            return (Vec::new(), SW_INCORRECT_P1P2);
        }
        let n = mgm::block_len(alg);
        let Some(template) = tlv::find(data, 0x7C) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let witness = tlv::find(template, 0x80);
        let challenge = tlv::find(template, 0x81);
        let response = tlv::find(template, 0x82);
        let reply = |tag: u32, value: &[u8]| {
            let mut inner = Vec::new();
            tlv::put(&mut inner, tag, value);
            let mut out = Vec::new();
            tlv::put(&mut out, 0x7C, &inner);
            out
        };
        let random = || {
            let mut r = vec![0u8; n];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
            r
        };
        match (witness, challenge, response) {
            (Some([]), None, None) => {
                let w = random();
                let Some(enc) = mgm::crypt(alg, &key, &w, true) else {
                    return (Vec::new(), 0x6F00);
                };
                self.mgm_pending = Some(Pending::Witness(w));
                (reply(0x80, &enc), SW_OK)
            }
            (None, Some([]), None) => {
                let c = random();
                self.mgm_pending = Some(Pending::Challenge(c.clone()));
                (reply(0x81, &c), SW_OK)
            }
            (Some(w), Some(c), None) => {
                let Some(Pending::Witness(expected)) = self.mgm_pending.take() else {
                    return (Vec::new(), SW_CONDITIONS_OF_USE);
                };
                if w.len() != n || c.len() != n {
                    return (Vec::new(), SW_WRONG_DATA);
                }
                if w != expected.as_slice() {
                    log::info!("management key authentication failed (wrong witness)");
                    return (Vec::new(), SW_SECURITY_STATUS);
                }
                let Some(enc) = mgm::crypt(alg, &key, c, true) else {
                    return (Vec::new(), 0x6F00);
                };
                self.mgm_authenticated();
                (reply(0x82, &enc), SW_OK)
            }
            (None, None, Some(r)) => {
                let Some(Pending::Challenge(c)) = self.mgm_pending.take() else {
                    return (Vec::new(), SW_CONDITIONS_OF_USE);
                };
                if mgm::crypt(alg, &key, &c, true).as_deref() != Some(r) {
                    log::info!("management key authentication failed (wrong response)");
                    return (Vec::new(), SW_SECURITY_STATUS);
                }
                self.mgm_authenticated();
                (Vec::new(), SW_OK)
            }
            _ => (Vec::new(), SW_WRONG_DATA),
        }
    }

    /// The host proved the management key: let piv-authenticator know, by
    /// authenticating to it with its own (never changed) 3DES default key.
    fn mgm_authenticated(&mut self) {
        self.admin = true;
        let (body, sw) = self.forward(0x00, 0x87, mgm::TDES, 0x9B, &[0x7C, 0x02, 0x80, 0x00]);
        let witness = tlv::find(&body, 0x7C).and_then(|t| tlv::find(t, 0x80));
        let plain = witness.and_then(|w| mgm::crypt(mgm::TDES, &mgm::DEFAULT_KEY, w, false));
        let Some(plain) = plain.filter(|_| sw == SW_OK) else {
            log::error!("inner management key authentication failed at step 1 ({sw:04x})");
            return;
        };
        let mut inner = Vec::new();
        tlv::put(&mut inner, 0x80, &plain);
        tlv::put(&mut inner, 0x81, &[0x42; 8]);
        let mut data = Vec::new();
        tlv::put(&mut data, 0x7C, &inner);
        let (_, sw) = self.forward(0x00, 0x87, mgm::TDES, 0x9B, &data);
        if sw != SW_OK {
            log::error!("inner management key authentication failed at step 2 ({sw:04x})");
        } else {
            log::debug!("management key authenticated");
        }
    }

    /// SET MANAGEMENT KEY: `alg 9B len key`; needs the management key authenticated.
    fn set_mgm_key(&mut self, p2: u8, data: &[u8]) -> (Vec<u8>, u16) {
        if !self.admin {
            return (Vec::new(), SW_SECURITY_STATUS);
        }
        let [alg, 0x9B, len, key @ ..] = data else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let fw = self.shared.config.firmware;
        let aes_ok = (fw[0], fw[1]) >= (5, 4);
        match mgm::key_len(*alg) {
            Some(l)
                if l == usize::from(*len) && l == key.len() && (*alg == mgm::TDES || aes_ok) => {}
            _ => return (Vec::new(), SW_WRONG_DATA),
        }
        let touch = if p2 == 0xFE { 2 } else { 1 };
        self.shared.mgm.set(*alg, key, touch);
        log::info!("management key set (algorithm {alg:02x})");
        (Vec::new(), SW_OK)
    }

    fn learn_generated(&mut self, slot: u8, request: &[u8], response: &[u8]) {
        let template = tlv::find(request, 0xAC).unwrap_or(&[]);
        let Some(&algorithm) = tlv::find(template, 0x80).and_then(|v| v.first()) else {
            return;
        };
        let Some(public) = tlv::find(response, 0x7F49) else {
            log::warn!("GENERATE response without 7F49: {}", hex_encode(response));
            return;
        };
        let pin_policy = match tlv::find(template, 0xAA).and_then(|v| v.first().copied()) {
            Some(p) if p != 0 => p,
            _ => default_pin_policy(slot),
        };
        let touch_policy = match tlv::find(template, 0xAB).and_then(|v| v.first().copied()) {
            Some(t) if t != 0 => t,
            _ => 1,
        };
        log::info!("slot {slot:02x}: generated key, algorithm {algorithm:02x}");
        self.shared.slots.set(
            slot,
            SlotKey {
                algorithm,
                origin: 1,
                pin_policy,
                touch_policy,
                public: public.to_vec(),
                imported_p256: None,
            },
        );
    }

    fn attest(&mut self, slot: u8) -> (Vec<u8>, u16) {
        let Some(key) = self.shared.slots.map.get(&slot).cloned() else {
            return (Vec::new(), SW_REF_NOT_FOUND);
        };
        if key.origin != 1 {
            // A YubiKey does not attest imported keys.
            return (Vec::new(), SW_WRONG_DATA);
        }
        let Some(spki) = spki_from_template(key.algorithm, &key.public) else {
            return (Vec::new(), SW_WRONG_DATA);
        };
        let info = crate::pki::AttestInfo {
            slot,
            spki: &spki,
            firmware: self.shared.config.firmware,
            serial: self.shared.config.serial,
            pin_policy: key.pin_policy,
            touch_policy: key.touch_policy,
            form_factor: self.shared.config.form_factor,
        };
        match self.shared.pki.attest(&info) {
            Ok(der) => (der, SW_OK),
            Err(e) => {
                log::error!("attestation for slot {slot:02x} failed: {e}");
                (Vec::new(), 0x6F00)
            }
        }
    }

    /// GET DATA 5FFF01: the attestation intermediate as a PIV certificate object.
    fn attestation_object(&mut self) -> (Vec<u8>, u16) {
        let Ok(cert) = self.shared.pki.intermediate_der() else {
            return (Vec::new(), 0x6F00);
        };
        let mut inner = Vec::new();
        tlv::put(&mut inner, 0x70, &cert);
        tlv::put(&mut inner, 0x71, &[0x00]);
        tlv::put(&mut inner, 0xFE, &[]);
        let mut out = Vec::new();
        tlv::put(&mut out, 0x53, &inner);
        (out, SW_OK)
    }

    fn metadata(&mut self, slot: u8) -> (Vec<u8>, u16) {
        if slot == 0x80 {
            // PIN: retries from VERIFY without data (63Cx, or 9000 when verified,
            // which means the counter is full again).
            let (_, sw) = self.forward(0, 0x20, 0x00, 0x80, &[]);
            let remaining = match sw {
                SW_OK => 3,
                sw if sw & 0xFFF0 == 0x63C0 => (sw & 0x0F) as u8,
                0x6983 => 0,
                _ => return (Vec::new(), sw),
            };
            let mut out = Vec::new();
            tlv::put(&mut out, 0x01, &[0xFF]);
            tlv::put(&mut out, 0x02, &[0x00, 0x00]);
            tlv::put(&mut out, 0x06, &[3, remaining]);
            return (out, SW_OK);
        }
        let Some(key) = self.shared.slots.map.get(&slot) else {
            return if matches!(slot, 0x81 | 0x9B) {
                (Vec::new(), SW_INS_NOT_SUPPORTED)
            } else {
                (Vec::new(), SW_REF_NOT_FOUND)
            };
        };
        let mut out = Vec::new();
        tlv::put(&mut out, 0x01, &[key.algorithm]);
        tlv::put(&mut out, 0x02, &[key.pin_policy, key.touch_policy]);
        tlv::put(&mut out, 0x03, &[key.origin]);
        if !key.public.is_empty() {
            tlv::put(&mut out, 0x04, &key.public);
        }
        (out, SW_OK)
    }
}

impl<T: piv_authenticator::Client> Card<'_, T> {
    /// A reset or power cycle: the caller rebuilds the card (if it was used), which
    /// clears the PIN and management-key authentication.
    fn clear_state(&mut self) {
        self.shared.chain = None;
        if self.used {
            self.reset_requested = true;
        }
    }
}

impl<T: piv_authenticator::Client> vpicc::VSmartCard for Card<'_, T> {
    fn atr(&self) -> &[u8] {
        &YUBIKEY_ATR
    }

    fn power_on(&mut self) {
        self.shared.power.power_on();
    }

    fn power_off(&mut self) {
        self.shared.power.power_off();
        self.clear_state();
    }

    fn reset(&mut self) {
        self.shared.power.reset();
        self.clear_state();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.used = true;
        self.handle(apdu)
    }
}

/// YubiKey default PIN policies (and what piv-authenticator enforces):
/// 9C always, 9E never, others once.
fn default_pin_policy(slot: u8) -> u8 {
    match slot {
        0x9C => 3,
        0x9E => 1,
        _ => 2,
    }
}

/// Builds a SubjectPublicKeyInfo from a PIV 7F49 template's content.
pub fn spki_from_template(algorithm: u8, public: &[u8]) -> Option<SubjectPublicKeyInfoOwned> {
    const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    match algorithm {
        0x11 | 0x14 => {
            let point = tlv::find(public, 0x86)?;
            let curve = if algorithm == 0x11 { P256 } else { P384 };
            Some(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: EC_PUBLIC_KEY,
                    parameters: Some(Any::from(curve)),
                },
                subject_public_key: BitString::from_bytes(point).ok()?,
            })
        }
        // RSA 1024/2048 (PIV), 3072/4096 (YubiKey 5.7 ids 05/16)
        0x06 | 0x07 | 0x05 | 0x16 => {
            let n = tlv::find(public, 0x81)?;
            let e = tlv::find(public, 0x82)?;
            let mut seq = tlv::der_uint(n);
            seq.extend(tlv::der_uint(e));
            let rsa_public_key = tlv::der(0x30, &seq);
            Some(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: RSA,
                    parameters: Some(Any::from_der(&[0x05, 0x00]).ok()?),
                },
                subject_public_key: BitString::from_bytes(&rsa_public_key).ok()?,
            })
        }
        _ => None,
    }
}

fn sw_only(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}
