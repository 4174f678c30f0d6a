//! YubiKey PIV keys through the `yubikey` crate and pcscd.
//!
//! Treats people as age-plugin-yubikey does: waits for a key to be inserted, picks by
//! serial when several are present, checks the PIN's length and retry counter before
//! spending a try, never retries a wrong PIN, explains a sharing violation, warns about
//! a factory-default PIN, and never resets or overwrites a key it did not make.
//!
//! Never resets a card it only read: every open YubiKey is a [`Held`], which disconnects
//! with "leave card" unless tufkey gave the card a PIN or a management key, and then
//! resets it so the verified PIN and the management-key authentication do not outlive
//! tufkey's use (see docs/yubikey.md).
//!
//! Algorithms: ECDSA P-256 (TUF `ecdsa-sha2-nistp256`; the card returns DER) and
//! RSA-2048 with `rsassa-pss-sha256` (EMSA-PSS encoded here, raw RSA on the card).
//! Ed25519 and RSA-3072 need firmware 5.7 and a newer crate; they are refused.

use std::io::IsTerminal;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pcsc::Disposition;
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, EncodePublicKey};
use x509_cert::der::Encode;
use yubikey::certificate::yubikey_signer::{Rsa2048, YubiRsa};
use yubikey::piv::{AlgorithmId, SlotId};
use yubikey::{
    Certificate, MgmKey, PinPolicy as YkPinPolicy, TouchPolicy as YkTouchPolicy, YubiKey,
};

use super::error::{CardProblem, KeyError, Outcome};
use super::pin::{self, PinOrigin, PinPolicy, PinRequest, Secret};
use super::pin_cache;
use super::piv_attest::{self, Attestation};
use super::piv_policy::{PivPinPolicy, PivTouchPolicy};
use super::signer::Signer;
use super::uri::YubiKeyUri;
use super::yubikey_mgm::{self as mgm, SideChannel};
use crate::tuf::{Key, KeyType, PublicKey};

/// The factory-default PIV PIN. It is never tried; it is only recognised to warn.
const DEFAULT_PIN: &str = "123456";

/// Every PIV slot that can hold a signing key: 9a, 9c, 9d, 9e and the retired 82–95.
const KEY_SLOTS: [u8; 24] = [
    0x9a, 0x9c, 0x9d, 0x9e, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d,
    0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
];

fn slot_id(slot: u8) -> Result<SlotId, String> {
    SlotId::try_from(slot).map_err(|_| format!("{slot:02x} is not a PIV key slot"))
}

fn err(uri: &YubiKeyUri, reason: impl Into<String>) -> KeyError {
    KeyError::Unsupported {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// The typed problem behind a `yubikey` crate error; its words (and what to do) are in
/// [`CardProblem`]'s `Display`.
fn problem(e: yubikey::Error) -> CardProblem {
    use yubikey::Error as E;
    match e {
        E::PcscError {
            inner: Some(pcsc::Error::NoService | pcsc::Error::ServiceStopped),
        } => CardProblem::ServiceNotRunning,
        E::PcscError {
            inner: Some(pcsc::Error::SharingViolation),
        } => CardProblem::HeldElsewhere,
        E::PcscError {
            inner:
                Some(
                    pcsc::Error::NoSmartcard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::NoReadersAvailable,
                ),
        } => CardProblem::Removed,
        E::PcscError { inner } => CardProblem::Pcsc(format!("{inner:?}")),
        E::NotFound => CardProblem::NoKey,
        E::AuthenticationError => CardProblem::ManagementKeyRefused,
        E::PinLocked => CardProblem::PinLocked,
        E::WrongPin { tries } => CardProblem::WrongPin { tries },
        other => CardProblem::Other(format!("{other}")),
    }
}

/// A `yubikey` crate error as a [`KeyError`] naming the URI.
fn explain(uri: &YubiKeyUri, e: yubikey::Error) -> KeyError {
    KeyError::Card {
        uri: uri.to_string(),
        problem: problem(e),
    }
}

/// An open YubiKey, released on drop with a disposition chosen by what tufkey did with
/// it. The `yubikey` crate (through pcsc) disconnects a dropped `YubiKey` with "reset
/// card", which logs every program out of every application on that card; tufkey never
/// drops a bare `YubiKey`, only a `Held`:
///
/// - a card tufkey only read (opened to find a serial, listed, a certificate, metadata
///   or an attestation read) is left as it is (`LeaveCard`);
/// - a card tufkey gave a PIN or a management key is reset (`ResetCard`) when released,
///   so the verified PIN and the management-key authentication do not stay on the card
///   for other local programs to use. [`Held::reset_on_release`] marks it, right before
///   the secret is sent (a PIN refused before it reaches the card changes nothing).
struct Held {
    yk: Option<YubiKey>,
    after: Disposition,
}

impl Held {
    fn new(yk: YubiKey) -> Held {
        Held {
            yk: Some(yk),
            after: Disposition::LeaveCard,
        }
    }

    /// The card is about to receive a PIN or management key: reset it when released.
    fn reset_on_release(&mut self) {
        self.after = Disposition::ResetCard;
    }

    /// Lets go of a handle that answered one of the [`card_gone`] errors. When the card
    /// was reset, powered down or removed under it (`cause` says so, see
    /// [`state_cleared`]), nothing verified through it is left on the card, and a reset
    /// now would only end the sessions other programs opened since: the card is left as
    /// it is. Otherwise (the connection failed, pcscd lost the handle) the handle is
    /// released as it would be anyway (reset if tufkey gave the card a PIN), which fails
    /// quietly if the card is gone.
    fn release_gone(mut self, cause: Option<&yubikey::Error>) {
        if cause.is_some_and(state_cleared) {
            self.after = Disposition::LeaveCard;
        }
    }
}

impl Deref for Held {
    type Target = YubiKey;
    fn deref(&self) -> &YubiKey {
        self.yk
            .as_ref()
            .expect("a Held YubiKey is only taken on drop")
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut YubiKey {
        self.yk
            .as_mut()
            .expect("a Held YubiKey is only taken on drop")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(yk) = self.yk.take() else { return };
        let serial = yk.serial().0;
        if let Err((yk, e)) = yk.disconnect(self.after) {
            let gone = matches!(
                e,
                yubikey::Error::PcscError {
                    inner: Some(
                        pcsc::Error::RemovedCard
                            | pcsc::Error::NoSmartcard
                            | pcsc::Error::ResetCard
                            | pcsc::Error::UnpoweredCard
                            | pcsc::Error::NotTransacted
                            | pcsc::Error::ReaderUnavailable
                            | pcsc::Error::InvalidHandle
                            | pcsc::Error::NoService
                            | pcsc::Error::ServiceStopped
                    )
                }
            );
            if self.after == Disposition::LeaveCard {
                // Dropping it would reset the card after all: keep the handle until the
                // process ends (pcscd then releases it without a reset).
                std::mem::forget(yk);
            } else {
                if !gone {
                    eprintln!("warning: YubiKey {serial} could not be reset after use ({e}); unplug it to clear its PIN verification");
                }
                // The crate's own drop tries the reset once more.
                drop(yk);
            }
        }
    }
}

/// One present YubiKey.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub serial: u32,
    pub version: String,
    pub reader: String,
}

/// Every YubiKey pcscd sees right now.
pub fn list_devices() -> Result<Vec<Device>, KeyError> {
    let any = YubiKeyUri {
        serial: None,
        slot: 0x9c,
    };
    let mut ctx = yubikey::reader::Context::open().map_err(|e| explain(&any, e))?;
    let mut out = Vec::new();
    for reader in ctx.iter().map_err(|e| explain(&any, e))? {
        if let Ok(yk) = reader.open().map(Held::new) {
            out.push(Device {
                serial: yk.serial().0,
                version: yk.version().to_string(),
                reader: reader.name().into_owned(),
            });
        }
    }
    Ok(out)
}

/// How long to wait for a key to be inserted: TUFKEY_YUBIKEY_WAIT seconds, else 60 s
/// at a terminal and none without one.
fn wait_budget() -> Duration {
    match std::env::var("TUFKEY_YUBIKEY_WAIT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(s) => Duration::from_secs(s),
        None if std::io::stdin().is_terminal() => Duration::from_secs(60),
        None => Duration::ZERO,
    }
}

/// The reason of an [`err`] or [`explain`] error (the URI is named once, outside), or
/// the whole message of another.
fn reason(e: KeyError) -> String {
    match e {
        KeyError::Unsupported { reason, .. } => reason,
        KeyError::Card { problem, .. } => problem.to_string(),
        other => other.to_string(),
    }
}

/// What one look at the readers found for a URI.
enum Scan {
    /// The YubiKey the URI names.
    Found(Held),
    /// Not there; the serials of the YubiKeys that are.
    Absent(Vec<u32>),
}

/// Looks once for the YubiKey the URI names, without waiting. Every card opened and not
/// returned is left as it was (only its serial was read). No reader at all (a USB
/// YubiKey is its own reader, so none is plugged in) counts as absent.
fn scan(uri: &YubiKeyUri) -> Result<Scan, KeyError> {
    let no_readers = |e: &yubikey::Error| {
        matches!(
            e,
            yubikey::Error::PcscError {
                inner: Some(pcsc::Error::NoReadersAvailable)
            }
        )
    };
    let mut ctx = match yubikey::reader::Context::open() {
        Ok(ctx) => ctx,
        Err(e) if no_readers(&e) => return Ok(Scan::Absent(Vec::new())),
        Err(e) => return Err(explain(uri, e)),
    };
    let readers = match ctx.iter() {
        Ok(readers) => readers,
        Err(e) if no_readers(&e) => return Ok(Scan::Absent(Vec::new())),
        Err(e) => return Err(explain(uri, e)),
    };
    let mut found: Vec<Held> = Vec::new();
    let mut sharing = false;
    for reader in readers {
        match reader.open() {
            Ok(yk) => found.push(Held::new(yk)),
            Err(yubikey::Error::PcscError {
                inner: Some(pcsc::Error::SharingViolation),
            }) => sharing = true,
            Err(_) => {}
        }
    }
    if sharing && found.is_empty() {
        return Err(explain(
            uri,
            yubikey::Error::PcscError {
                inner: Some(pcsc::Error::SharingViolation),
            },
        ));
    }
    let serials: Vec<u32> = found.iter().map(|y| y.serial().0).collect();
    match uri.serial {
        Some(s) => {
            if let Some(i) = serials.iter().position(|x| *x == s) {
                return Ok(Scan::Found(found.swap_remove(i)));
            }
        }
        None if found.len() == 1 => return Ok(Scan::Found(found.remove(0))),
        None if found.len() > 1 => {
            return Err(err(
                uri,
                format!(
                "{} YubiKeys are present (serials {}); name one with yubikey:serial=N;slot={:02x}",
                found.len(),
                serials
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                uri.slot
            ),
            ))
        }
        None => {}
    }
    Ok(Scan::Absent(serials))
}

/// "none present" or "present: 1, 2".
fn present_list(serials: &[u32]) -> String {
    if serials.is_empty() {
        "none present".to_string()
    } else {
        format!(
            "present: {}",
            serials
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Opens the YubiKey the URI names, waiting (with a message) for it to be inserted.
/// Every card opened and not returned is left as it was (only its serial was read).
fn open_device(uri: &YubiKeyUri) -> Result<Held, KeyError> {
    let deadline = Instant::now() + wait_budget();
    let mut told = false;
    loop {
        let serials = match scan(uri)? {
            Scan::Found(yk) => return Ok(yk),
            Scan::Absent(serials) => serials,
        };
        if Instant::now() >= deadline {
            let what = uri
                .serial
                .map(|s| format!("YubiKey serial {s}"))
                .unwrap_or_else(|| "a YubiKey".into());
            let present = present_list(&serials);
            return Err(KeyError::CardAbsent {
                uri: uri.to_string(),
                reason: format!("{what} is not inserted ({present}); insert it and try again (set TUFKEY_YUBIKEY_WAIT=<seconds> to wait)"),
            });
        }
        if !told {
            let what = uri
                .serial
                .map(|s| format!("YubiKey serial {s}"))
                .unwrap_or_else(|| "your YubiKey".into());
            eprintln!(
                "Insert {what} (waiting up to {} s)...",
                wait_budget().as_secs()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The pcsc errors after which a handle is useless for good (pcsc-lite answers the same
/// on every later call): the card was reset by another program or powered down
/// (`ResetCard`, `UnpoweredCard`), removed (`RemovedCard`, `NoSmartcard`), the
/// connection to it fails (`NotTransacted`: what a handle answers once the virtual card
/// behind vpcd is gone), the reader went away (`ReaderUnavailable`), or pcscd lost the
/// handle or stopped (`InvalidHandle`, `NoService`, `ServiceStopped`).
fn card_gone(e: &yubikey::Error) -> bool {
    state_cleared(e)
        || matches!(
            e,
            yubikey::Error::PcscError {
                inner: Some(
                    pcsc::Error::NotTransacted
                        | pcsc::Error::ReaderUnavailable
                        | pcsc::Error::InvalidHandle
                        | pcsc::Error::NoService
                        | pcsc::Error::ServiceStopped
                )
            }
        )
}

/// The [`card_gone`] errors that say the card itself lost its security state: it was
/// reset, powered down or removed, so no PIN verified through the handle is left on it.
fn state_cleared(e: &yubikey::Error) -> bool {
    matches!(
        e,
        yubikey::Error::PcscError {
            inner: Some(
                pcsc::Error::ResetCard
                    | pcsc::Error::UnpoweredCard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::NoSmartcard
            )
        }
    )
}

/// Why an operation on an open card failed: the card went away under the handle (see
/// [`card_gone`]), which a signer answers by opening the card again, or anything else.
#[derive(Debug)]
enum Failure {
    /// `None`: there was no handle (an earlier reopen failed).
    Gone(Option<yubikey::Error>),
    Failed(KeyError),
}

impl Failure {
    fn from_card(uri: &YubiKeyUri, e: yubikey::Error) -> Failure {
        if card_gone(&e) {
            Failure::Gone(Some(e))
        } else {
            Failure::Failed(explain(uri, e))
        }
    }

    fn into_key_error(self, uri: &YubiKeyUri) -> KeyError {
        match self {
            Failure::Gone(Some(e)) => explain(uri, e),
            Failure::Gone(None) => err(uri, "the YubiKey is not open"),
            Failure::Failed(e) => e,
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Failure {
        Failure::Failed(e)
    }
}

/// Verifies the PIN once: reads the retry counter first, refuses a locked PIN and a
/// final try without `--force`, checks the length before spending a try, never retries.
fn verify_pin(
    yk: &mut Held,
    uri: &YubiKeyUri,
    policy: &PinPolicy,
    known: Option<&Secret>,
) -> Result<Secret, KeyError> {
    verify_pin_on(yk, uri, policy, known).map_err(|f| f.into_key_error(uri))
}

/// [`verify_pin`], telling a card that went away under the handle apart.
fn verify_pin_on(
    yk: &mut Held,
    uri: &YubiKeyUri,
    policy: &PinPolicy,
    known: Option<&Secret>,
) -> Result<Secret, Failure> {
    let serial = yk.serial().0;
    let label = format!("YubiKey {serial}");
    let retries = yk
        .get_pin_retries()
        .map_err(|e| Failure::from_card(uri, e))?;
    match retries {
        0 => {
            return Err(Failure::Failed(KeyError::PinLocked {
                token: label,
                uri: uri.to_string(),
                unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
            }))
        }
        1 if !policy.force => return Err(KeyError::PinFinalTry { token: label }.into()),
        _ => {}
    }
    let (secret, origin) = match known {
        Some(s) => (s.clone(), PinOrigin::UriValue),
        None => {
            let req = PinRequest {
                what: format!("PIV PIN for YubiKey {serial}"),
                uri_value: None,
                uri_source: None,
                env: vec![
                    format!("TUFKEY_PIN_{serial}"),
                    "TUFKEY_YUBIKEY_PIN".into(),
                    "TUFKEY_PIN".into(),
                ],
                cache_key: Some(format!("yubikey:{serial}")),
            };
            pin::obtain(&req, policy)?
        }
    };
    let len = secret.expose().len();
    if !(6..=8).contains(&len) {
        return Err(err(
            uri,
            format!(
                "a PIV PIN has 6 to 8 characters; the one given has {len}, so no try was spent"
            ),
        )
        .into());
    }
    yk.reset_on_release();
    match yk.verify_pin(secret.expose().as_bytes()) {
        Ok(()) => {
            if secret.expose() == DEFAULT_PIN && known.is_none() {
                eprintln!("warning: YubiKey {serial} still uses the factory-default PIN; change it (`ykman piv access change-pin`) before a ceremony");
            }
            if policy.remember && origin != PinOrigin::Cache {
                pin_cache::store(&format!("yubikey:{serial}"), &secret);
            }
            Ok(secret)
        }
        Err(yubikey::Error::WrongPin { tries }) => {
            if origin == PinOrigin::Cache {
                let _ = pin_cache::forget(&format!("yubikey:{serial}"));
            }
            let after = match tries {
                0 => "; the PIN is now LOCKED".to_string(),
                1 => "; ONE try is left".to_string(),
                n => format!("; {n} tries left"),
            };
            Err(Failure::Failed(KeyError::PinIncorrect {
                token: label,
                origin: origin.to_string(),
                after,
            }))
        }
        Err(yubikey::Error::PinLocked) => Err(Failure::Failed(KeyError::PinLocked {
            token: label,
            uri: uri.to_string(),
            unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
        })),
        Err(e) => Err(Failure::from_card(uri, e)),
    }
}

/// Where the management key tried came from, to say which one was refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MgmSource {
    Env,
    Protected,
    FactoryDefault,
}

/// The management key's algorithm and state, from GET METADATA on firmware 5.3+ (over
/// a second connection, see yubikey_mgm). `None` on older firmware, or when the card
/// does not answer it: the key is then 3DES, as yubico-piv-tool and ykman assume.
fn mgm_metadata(
    yk: &YubiKey,
    uri: &YubiKeyUri,
    side: &mut Option<SideChannel>,
) -> Result<Option<mgm::Metadata>, KeyError> {
    let v = yk.version();
    if v.major < 5 || (v.major == 5 && v.minor < 3) {
        return Ok(None);
    }
    let ch = side_channel(yk, uri, side)?;
    ch.transaction(mgm::read_metadata)
        .map_err(|e| pcsc_explain(uri, e))?
        .map_err(|r| err(uri, format!("reading the management key's metadata: {r}")))
}

fn side_channel<'a>(
    yk: &YubiKey,
    uri: &YubiKeyUri,
    side: &'a mut Option<SideChannel>,
) -> Result<&'a mut SideChannel, KeyError> {
    if side.is_none() {
        *side = Some(SideChannel::open(yk.name()).map_err(|e| pcsc_explain(uri, e))?);
    }
    side.as_mut()
        .ok_or_else(|| err(uri, "the second smart-card connection is gone"))
}

fn pcsc_explain(uri: &YubiKeyUri, e: pcsc::Error) -> KeyError {
    explain(uri, yubikey::Error::PcscError { inner: Some(e) })
}

/// The key of the PIN-protected management key object (5FC109), if the YubiKey has one.
/// Reading it needs the PIN verified.
fn protected_mgm_key(yk: &mut YubiKey) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let object = yk.fetch_object(mgm::PROTECTED_OBJECT).ok()?;
    mgm::parse_protected(&object)
}

/// Authenticates with the management key (the PIN must be verified first). The key is,
/// in this order: TUFKEY_YUBIKEY_MGM_KEY (hex, its length fitting the card's algorithm),
/// the PIN-protected management key, or the factory default (3DES before firmware 5.7,
/// AES-192 from 5.7; tried only when the metadata says it is still set, or on firmware
/// that cannot say). A wrong key is never retried with another source. Every key, 3DES
/// too, is used over a second connection with tufkey's own mutual authentication (the
/// `yubikey` crate 0.8 knows only 3DES, and slices the card's answer without checking
/// its length, which panics on a short answer; ours checks).
fn authenticate(yk: &mut Held, uri: &YubiKeyUri) -> Result<(), KeyError> {
    let serial = yk.serial().0;
    let mut side: Option<SideChannel> = None;
    let meta = mgm_metadata(yk, uri, &mut side)?;
    let alg = meta
        .as_ref()
        .map(|m| m.algorithm)
        .unwrap_or(mgm::Algorithm::Tdes);
    let (key, source) = if let Ok(hexkey) = std::env::var("TUFKEY_YUBIKEY_MGM_KEY") {
        let hexkey = Secret::new(hexkey);
        let key = mgm::MgmKey::from_hex(hexkey.expose(), alg, "TUFKEY_YUBIKEY_MGM_KEY")
            .map_err(|r| err(uri, r))?;
        (key, MgmSource::Env)
    } else if let Some(raw) = protected_mgm_key(yk) {
        let key = mgm::MgmKey::new(alg, &raw).ok_or_else(|| {
            err(
                uri,
                format!(
                    "the PIN-protected management key (object 5FC109) has {} bytes, but YubiKey {serial}'s management key is {alg} ({} bytes): the stored copy is stale. Store it again (`ykman piv access change-management-key --generate --protect -a {}`), or give the key in TUFKEY_YUBIKEY_MGM_KEY",
                    raw.len(),
                    alg.key_len(),
                    ykman_alg(alg)
                ),
            )
        })?;
        (key, MgmSource::Protected)
    } else {
        if let Some(m) = meta.as_ref().filter(|m| !m.is_default) {
            return Err(err(
                uri,
                format!(
                    "YubiKey {serial}'s management key ({}) is neither the factory default nor PIN-protected; give it in TUFKEY_YUBIKEY_MGM_KEY ({} hex digits), or make it PIN-protected (`ykman piv access change-management-key --generate --protect`)",
                    m.algorithm,
                    m.algorithm.key_len() * 2
                ),
            ));
        }
        let key = mgm::MgmKey::default_for(alg).ok_or_else(|| {
            err(
                uri,
                format!("YubiKey {serial} reports a default {alg} management key, which does not exist; give the key in TUFKEY_YUBIKEY_MGM_KEY"),
            )
        })?;
        (key, MgmSource::FactoryDefault)
    };
    if meta.as_ref().is_some_and(mgm::Metadata::wants_touch) {
        eprintln!("Touch your YubiKey when it blinks (its management key wants a touch)");
    }
    // The PIN was verified before, so this is already set; the management key alone
    // would call for the reset too.
    yk.reset_on_release();
    if alg == mgm::Algorithm::Tdes && MgmKey::from_bytes(key.bytes()).is_err() {
        // Only the crate's check of the key; it does not talk to the card.
        return Err(err(
            uri,
            "the 3DES management key is a weak DES key, which a YubiKey does not accept",
        ));
    }
    let ch = side_channel(yk, uri, &mut side)?;
    let outcome = match ch
        .transaction(|t| mgm::mutual_auth(t, &key))
        .map_err(|e| pcsc_explain(uri, e))?
    {
        Ok(()) => Ok(()),
        Err(mgm::AuthError::Transport(e)) => {
            return Err(err(
                uri,
                format!("management key authentication: smart card error: {e}"),
            ))
        }
        Err(e) => Err(Some(e)),
    };
    drop(side);
    match outcome {
        Ok(()) => {
            if source == MgmSource::FactoryDefault || meta.as_ref().is_some_and(|m| m.is_default) {
                eprintln!("warning: YubiKey {serial} still uses the factory-default management key ({alg}); anyone holding it can replace keys and certificates. Change it (`ykman piv access change-management-key --generate --protect`) before a ceremony");
            }
            Ok(())
        }
        Err(detail) => {
            let detail = detail.map(|d| format!("; {d}")).unwrap_or_default();
            let digits = alg.key_len() * 2;
            let reason = match source {
                MgmSource::Env => format!(
                    "YubiKey {serial} refused the management key given in TUFKEY_YUBIKEY_MGM_KEY ({alg}){detail}; check it (`ykman piv info` shows the algorithm), or unset TUFKEY_YUBIKEY_MGM_KEY to use a PIN-protected or the factory-default key. Nothing was changed on the YubiKey"
                ),
                MgmSource::Protected => format!(
                    "YubiKey {serial} refused its own PIN-protected management key (object 5FC109, {alg}){detail}: the stored copy is stale. Store it again (`ykman piv access change-management-key --generate --protect`), or give the key in TUFKEY_YUBIKEY_MGM_KEY ({digits} hex digits). Nothing was changed on the YubiKey"
                ),
                MgmSource::FactoryDefault => format!(
                    "YubiKey {serial} refused the factory-default management key ({alg}){detail}: it was changed. Give it in TUFKEY_YUBIKEY_MGM_KEY ({digits} hex digits), or make it PIN-protected (`ykman piv access change-management-key --generate --protect`). Nothing was changed on the YubiKey"
                ),
            };
            Err(err(uri, reason))
        }
    }
}

/// ykman's name for an algorithm (`-a`).
fn ykman_alg(alg: mgm::Algorithm) -> &'static str {
    match alg {
        mgm::Algorithm::Tdes => "TDES",
        mgm::Algorithm::Aes128 => "AES128",
        mgm::Algorithm::Aes192 => "AES192",
        mgm::Algorithm::Aes256 => "AES256",
    }
}

/// Verifies a PIN that this session verified moments ago, without reading the retry
/// counter first: the `yubikey` crate reads it by re-selecting the PIV application,
/// which on a YubiKey resets the application's security state, and the management-key
/// authentication must survive until the certificate is written.
fn reverify_pin(yk: &mut Held, uri: &YubiKeyUri, pin: &Secret) -> Result<(), KeyError> {
    yk.reset_on_release();
    match yk.verify_pin(pin.expose().as_bytes()) {
        Ok(()) => Ok(()),
        Err(yubikey::Error::WrongPin { tries }) => Err(KeyError::PinIncorrect {
            token: format!("YubiKey {}", yk.serial().0),
            origin: "the PIN verified moments before (was it changed meanwhile?)".into(),
            after: format!("; {tries} tries left"),
        }),
        Err(yubikey::Error::PinLocked) => Err(KeyError::PinLocked {
            token: format!("YubiKey {}", yk.serial().0),
            uri: uri.to_string(),
            unlock: "unblock it with the PUK (`ykman piv access unblock-pin`)",
        }),
        Err(e) => Err(explain(uri, e)),
    }
}

fn spki_public_key(spki_der: &[u8]) -> Result<(PublicKey, AlgorithmId), String> {
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der) {
        return Ok((PublicKey::EcdsaP256(k), AlgorithmId::EccP256));
    }
    if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki_der) {
        use rsa::traits::PublicKeyParts;
        if k.n().bits() == 2048 {
            return Ok((PublicKey::RsaPss(k), AlgorithmId::Rsa2048));
        }
        return Err(format!(
            "RSA-{} keys are not supported on YubiKeys here",
            k.n().bits()
        ));
    }
    Err("the slot's key is neither P-256 nor RSA-2048 (P-384 and others have no TUF scheme in tufkey)".into())
}

/// The slot's public key, from the certificate tufkey (or another tool) stored with it.
fn read_slot(
    yk: &mut YubiKey,
    uri: &YubiKeyUri,
) -> Result<(PublicKey, AlgorithmId, Vec<u8>), KeyError> {
    let slot = slot_id(uri.slot).map_err(|r| err(uri, r))?;
    let cert = Certificate::read(yk, slot).map_err(|e| match e {
        yubikey::Error::InvalidObject | yubikey::Error::NotFound => err(uri, format!("slot {:02x} holds no certificate, so its key (if any) cannot be named; generate one with `tufkey key generate {uri} --type ecdsa-p256`", uri.slot)),
        other => explain(uri, other),
    })?;
    let spki = cert
        .subject_pki()
        .to_der()
        .map_err(|e| err(uri, e.to_string()))?;
    let (public, alg) = spki_public_key(&spki).map_err(|r| err(uri, r))?;
    Ok((public, alg, spki))
}

/// The URI with the serial filled in.
fn full_uri(yk: &YubiKey, uri: &YubiKeyUri) -> YubiKeyUri {
    YubiKeyUri {
        serial: Some(yk.serial().0),
        slot: uri.slot,
    }
}

/// The public key in a slot; no PIN needed.
pub fn public_key(uri: &YubiKeyUri) -> Result<PublicKey, KeyError> {
    let mut yk = open_device(uri)?;
    Ok(read_slot(&mut yk, uri)?.0)
}

/// A slot that holds a key, and its public key (or why it cannot be read).
pub type SlotKey = (YubiKeyUri, Result<PublicKey, String>);

/// Keys in the signing slots of every present YubiKey.
pub fn list_keys() -> Result<Vec<SlotKey>, KeyError> {
    let mut out = Vec::new();
    for d in list_devices()? {
        let mut yk = open_device(&YubiKeyUri {
            serial: Some(d.serial),
            slot: 0x9c,
        })?;
        for slot in KEY_SLOTS {
            let uri = YubiKeyUri {
                serial: Some(d.serial),
                slot,
            };
            match read_slot(&mut yk, &uri) {
                Ok((k, _, _)) => out.push((uri, Ok(k))),
                Err(KeyError::Unsupported { reason, .. })
                    if reason.contains("holds no certificate") => {}
                Err(e) => out.push((uri, Err(e.to_string()))),
            }
        }
    }
    Ok(out)
}

/// Generates a key in the slot, then stores a self-signed certificate with it so the
/// public key can be read later without a PIN. Refuses a slot that already holds a key.
pub fn generate(
    uri: &YubiKeyUri,
    key_type: KeyType,
    pin_policy: PivPinPolicy,
    touch: PivTouchPolicy,
    policy: &PinPolicy,
) -> Result<(YubiKeyUri, PublicKey), KeyError> {
    let alg = match key_type {
        KeyType::EcdsaP256 => AlgorithmId::EccP256,
        KeyType::Rsa2048 => AlgorithmId::Rsa2048,
        KeyType::Ed25519 => return Err(err(uri, "Ed25519 PIV keys need firmware 5.7 and a newer yubikey crate than this build has; use --type ecdsa-p256")),
        KeyType::Rsa3072 => return Err(err(uri, "RSA-3072 PIV keys need firmware 5.7 and a newer yubikey crate than this build has; use --type ecdsa-p256 (or rsa-2048)")),
    };
    let slot = slot_id(uri.slot).map_err(|r| err(uri, r))?;
    let mut yk = open_device(uri)?;
    let full = full_uri(&yk, uri);
    // A key without a certificate (made by another tool) shows in the slot's metadata
    // (firmware 5.3+); older firmware answers NotSupported and only the certificate tells.
    let has_key =
        Certificate::read(&mut yk, slot).is_ok() || yubikey::piv::metadata(&mut yk, slot).is_ok();
    if has_key {
        return Err(err(&full, format!("slot {:02x} already holds a key; tufkey never overwrites one. Choose another slot (9a, 9c, 9d, 9e, 82-95) or clear it with ykman", uri.slot)));
    }
    let pin = verify_pin(&mut yk, &full, policy, None)?;
    authenticate(&mut yk, &full)?;
    let pin_p = match pin_policy {
        PivPinPolicy::Default => YkPinPolicy::Default,
        PivPinPolicy::Once => YkPinPolicy::Once,
        PivPinPolicy::Always => YkPinPolicy::Always,
    };
    let touch_p = match touch {
        PivTouchPolicy::Never => YkTouchPolicy::Never,
        PivTouchPolicy::Always => YkTouchPolicy::Always,
        PivTouchPolicy::Cached => YkTouchPolicy::Cached,
    };
    let spki = yubikey::piv::generate(&mut yk, slot, alg, pin_p, touch_p)
        .map_err(|e| explain(&full, e))?;
    if touch != PivTouchPolicy::Never {
        eprintln!("Touch your YubiKey when it blinks (it signs the new key's certificate)");
    }
    // The self-signed certificate is a signature: slots with PIN policy "always" want the
    // PIN again. Without a re-SELECT: the certificate write needs the management key.
    reverify_pin(&mut yk, &full, &pin)?;
    let mut serial = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    let serial = x509_cert::serial_number::SerialNumber::new(&serial)
        .map_err(|e| err(&full, e.to_string()))?;
    let validity = x509_cert::time::Validity::from_now(Duration::from_secs(100 * 365 * 86400))
        .map_err(|e| err(&full, e.to_string()))?;
    let subject: x509_cert::name::Name = format!("CN=tufkey {:02x} {}", uri.slot, yk.serial().0)
        .parse()
        .map_err(|e: x509_cert::der::Error| err(&full, e.to_string()))?;
    let cert = match alg {
        AlgorithmId::EccP256 => Certificate::generate_self_signed::<_, p256::NistP256>(
            &mut yk,
            slot,
            serial,
            validity,
            subject,
            spki,
            |_| Ok(()),
        ),
        _ => Certificate::generate_self_signed::<_, YubiRsa<Rsa2048>>(
            &mut yk,
            slot,
            serial,
            validity,
            subject,
            spki,
            |_| Ok(()),
        ),
    }
    .map_err(|e| explain(&full, e))?;
    let der = cert
        .subject_pki()
        .to_der()
        .map_err(|e| err(&full, e.to_string()))?;
    let (public, _) = spki_public_key(&der).map_err(|r| err(&full, r))?;
    Ok((full, public))
}

/// EMSA-PSS encoding (RFC 8017 9.1.1) with SHA-256, MGF1-SHA256 and a 32-byte salt, for a
/// key of `mod_bits` bits: the card then applies the raw RSA operation.
fn emsa_pss_encode(message: &[u8], mod_bits: usize) -> Vec<u8> {
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let m_hash = Sha256::digest(message);
    let mut salt = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut salt);
    let mut m_prime = Vec::with_capacity(8 + 32 + 32);
    m_prime.extend_from_slice(&[0u8; 8]);
    m_prime.extend_from_slice(&m_hash);
    m_prime.extend_from_slice(&salt);
    let h = Sha256::digest(&m_prime);
    let db_len = em_len - 32 - 1;
    let mut db = vec![0u8; db_len];
    db[db_len - 32 - 1] = 0x01;
    db[db_len - 32..].copy_from_slice(&salt);
    // MGF1 with SHA-256.
    let mut mask = Vec::with_capacity(db_len + 32);
    let mut counter = 0u32;
    while mask.len() < db_len {
        let mut hasher = Sha256::new();
        hasher.update(h);
        hasher.update(counter.to_be_bytes());
        mask.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    for (d, m) in db.iter_mut().zip(mask) {
        *d ^= m;
    }
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let mut em = db;
    em.extend_from_slice(&h);
    em.push(0xbc);
    em
}

/// A signer whose key stays in a YubiKey PIV slot.
///
/// It keeps one PC/SC connection. When a signature finds that the card was reset or
/// removed under it (another program reset the card, pcscd powered it down, the YubiKey
/// was unplugged and plugged back), the signer lets go of the old handle without a reset,
/// looks for the card by its serial once, without waiting, checks that the slot still
/// holds this signer's public key, verifies the PIN under the same rules as before every
/// signature, and signs: at most one reopen per signature. The `yubikey` crate's own
/// `reconnect` is never used: it resends a PIN it cached on its own.
pub struct YubiKeySigner {
    /// Reset when the signer is dropped: the PIN was verified when it was opened. `None`
    /// after the card went away and could not be opened again; the next signature looks
    /// for it again.
    yk: Mutex<Option<Held>>,
    uri: YubiKeyUri,
    shown: String,
    serial: u32,
    slot: SlotId,
    alg: AlgorithmId,
    /// The slot's public key (SPKI DER) when the signer was opened: a card found again
    /// under the same serial must hold the same key.
    spki: Vec<u8>,
    pin: Secret,
    /// Set when the card refused the PIN this signer holds: it is never sent again.
    refused: Mutex<PinRefusal>,
    public: Key,
    keyid: String,
}

/// Whether the card refused the PIN a signer holds. A signer verifies its PIN again
/// before every signature; if the PIN was changed (or the card swapped) under a running
/// process, the first wrong answer spends one try and every later signature fails at
/// once, without sending the PIN, until the process is restarted.
#[derive(Default)]
struct PinRefusal(Option<String>);

impl PinRefusal {
    /// An error when the PIN was refused before.
    fn check(&self, token: &str, uri: &str) -> Result<(), KeyError> {
        match &self.0 {
            Some(reason) => Err(KeyError::ReloginRefused {
                token: token.into(),
                uri: uri.into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Looks at the outcome of verifying the held PIN: a wrong-PIN answer sticks, and
    /// the error says so.
    fn note<T>(&mut self, outcome: Result<T, KeyError>) -> Result<T, KeyError> {
        match outcome {
            Err(KeyError::PinIncorrect { token, after, .. }) => {
                let origin =
                    "the PIN this process verified when it opened the key (was it changed meanwhile?)"
                        .to_string();
                self.0 = Some(format!("it answered \"wrong PIN\" to {origin}{after}"));
                Err(KeyError::PinIncorrect {
                    token,
                    origin,
                    after: format!(
                        "{after}; tufkey will not send that PIN again in this process: check the PIN, then restart tufkey"
                    ),
                })
            }
            other => other,
        }
    }
}

impl YubiKeySigner {
    /// Opens the YubiKey, reads the slot's public key and verifies the PIN once.
    pub fn open(uri: &YubiKeyUri, policy: &PinPolicy) -> Result<YubiKeySigner, KeyError> {
        let mut yk = open_device(uri)?;
        let full = full_uri(&yk, uri);
        let (public, alg, spki) = read_slot(&mut yk, &full)?;
        let pin = verify_pin(&mut yk, &full, policy, None)?;
        let slot = slot_id(full.slot).map_err(|r| err(&full, r))?;
        let tuf_key = public.to_tuf_key();
        let keyid = tuf_key.key_id();
        Ok(YubiKeySigner {
            serial: yk.serial().0,
            yk: Mutex::new(Some(yk)),
            shown: full.to_string(),
            uri: full,
            slot,
            alg,
            spki,
            pin,
            refused: Mutex::new(PinRefusal::default()),
            public: tuf_key,
            keyid,
        })
    }

    /// Verifies the held PIN and signs `input` (a digest, or an EMSA-PSS block) on `yk`.
    fn sign_on(
        &self,
        yk: &mut Held,
        refused: &mut PinRefusal,
        input: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        // Slot 9c (and PIN policy "always") wants the PIN right before each signature.
        // These verifications are tufkey's own, with the PIN that worked at open: they
        // never spend a final try, `--force` or not (that was for the first one).
        let policy = PinPolicy {
            force: false,
            remember: false,
            interactive: false,
        };
        match verify_pin_on(yk, &self.uri, &policy, Some(&self.pin)) {
            Ok(_) => {}
            Err(Failure::Failed(e)) => {
                return Err(Failure::Failed(refused.note(Err::<(), _>(e)).unwrap_err()))
            }
            Err(gone) => return Err(gone),
        }
        let out = yubikey::piv::sign_data(yk, input, self.alg, self.slot).map_err(|e| match e {
            yubikey::Error::GenericError | yubikey::Error::AuthenticationError => Failure::Failed(err(
                &self.uri,
                "the YubiKey refused to sign: if it blinked, it wanted a touch that was not given in time; touch it and try again",
            )),
            other => Failure::from_card(&self.uri, other),
        })?;
        let mut sig = out.to_vec();
        if self.alg == AlgorithmId::Rsa2048 && sig.len() < 256 {
            let mut padded = vec![0u8; 256 - sig.len()];
            padded.extend_from_slice(&sig);
            sig = padded;
        }
        Ok(sig)
    }

    /// Opens the card again after it went away under the signer: by serial, once,
    /// without waiting, and only if the slot still holds this signer's public key. The
    /// PIN is not sent here. `cause`: what the old handle answered (`None`: there was no
    /// handle, an earlier reopen failed).
    fn reopen(&self, cause: Option<&yubikey::Error>) -> Result<Held, KeyError> {
        let serial = self.serial;
        let what = match cause {
            Some(yubikey::Error::PcscError {
                inner: Some(pcsc::Error::ResetCard | pcsc::Error::UnpoweredCard),
            }) => "it was reset or powered down by something else (another program, pcscd)"
                .to_string(),
            Some(yubikey::Error::PcscError {
                inner: Some(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard),
            }) => "it was removed".to_string(),
            Some(yubikey::Error::PcscError { inner: Some(e) }) => {
                format!("the connection to it was lost (pcsc {e:?})")
            }
            Some(e) => format!("the connection to it was lost ({e})"),
            None => "it was not available at an earlier signature".to_string(),
        };
        let again = |why: String| {
            err(
                &self.uri,
                format!("YubiKey {serial} could not be opened again after {what}: {why}"),
            )
        };
        // Same words, but a card or service that is not there stays "unavailable".
        let again_as = |e: KeyError| {
            let unavailable = e.outcome() == Outcome::Unavailable;
            let why = format!(
                "YubiKey {serial} could not be opened again after {what}: {}",
                reason(e)
            );
            if unavailable {
                KeyError::CardAbsent {
                    uri: self.uri.to_string(),
                    reason: why,
                }
            } else {
                err(&self.uri, why)
            }
        };
        let mut yk = match scan(&self.uri).map_err(again_as)? {
            Scan::Found(yk) => yk,
            Scan::Absent(present) => {
                return Err(KeyError::CardAbsent {
                    uri: self.uri.to_string(),
                    reason: format!(
                        "YubiKey {serial} could not be opened again after {what}: it is not inserted ({}). Nothing was signed; insert YubiKey {serial}: the next signature opens it again, no restart needed",
                        present_list(&present)
                    ),
                })
            }
        };
        let (_, _, spki) = read_slot(&mut yk, &self.uri).map_err(again_as)?;
        if spki != self.spki {
            // Only read so far: the card is released leaving it as it is.
            return Err(again(format!(
                "the card now answering as serial {serial} holds another key in slot {:02x} than the one this signer opened (key id {}), so tufkey does not trust it and sent it no PIN. Insert the YubiKey this process opened (the next signature looks again), or restart tufkey to use this one",
                self.uri.slot, self.keyid
            )));
        }
        Ok(yk)
    }
}

impl Signer for YubiKeySigner {
    fn uri(&self) -> &str {
        &self.shown
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut held = self.yk.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.check(&format!("YubiKey {}", self.serial), &self.shown)?;
        let input = match self.alg {
            AlgorithmId::EccP256 => Sha256::digest(message).to_vec(),
            _ => emsa_pss_encode(message, 2048),
        };
        let first = match held.as_mut() {
            Some(yk) => self.sign_on(yk, &mut refused, &input),
            None => Err(Failure::Gone(None)),
        };
        let cause = match first {
            Ok(sig) => return Ok(sig),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Gone(cause)) => cause,
        };
        // The handle is dead (the card was reset or removed under it, or the connection
        // was lost): let go of it (without a reset when the card already lost its state),
        // look for the card once, and try once more. One reopen per signature; no loop.
        if let Some(old) = held.take() {
            old.release_gone(cause.as_ref());
        }
        let yk = held.insert(self.reopen(cause.as_ref())?);
        match self.sign_on(yk, &mut refused, &input) {
            Ok(sig) => Ok(sig),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::Gone(e)) => {
                if let Some(old) = held.take() {
                    old.release_gone(e.as_ref());
                }
                let e = e.map(|e| reason(explain(&self.uri, e))).unwrap_or_default();
                Err(err(
                    &self.uri,
                    format!(
                        "YubiKey {} went away again right after tufkey opened it anew ({e}); nothing was signed. The next signature opens it again",
                        self.serial
                    ),
                ))
            }
        }
    }
}

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
    let att = yubikey::piv::attest(&mut yk, slot).map_err(|e| match e {
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
    let slot_cert = piv_attest::parse_certs(&att)
        .map_err(|r| err(&full, r))?
        .remove(0);
    let inter_cert = piv_attest::parse_certs(inter_der)
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
    let slot_cert = piv_attest::parse_certs(slot_pem.as_bytes())
        .map_err(|r| err(uri, r))?
        .remove(0);
    let inter_cert = piv_attest::parse_certs(inter_pem.as_bytes())
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
    let roots = piv_attest::roots(extra_roots)
        .map_err(|r| err(uri, format!("the extra attestation CA: {r}")))?;
    let a = piv_attest::verify(slot_cert, inter, &roots, spki)
        .map_err(|r| err(uri, format!("attestation refused: {r}")))?;
    if let (Some(s), Some(want)) = (a.serial, uri.serial) {
        if s != want {
            return Err(err(
                uri,
                format!("attestation refused: it is for YubiKey serial {s}, not {want}"),
            ));
        }
    }
    Ok((a, piv_attest::to_pem(slot_cert), piv_attest::to_pem(inter)))
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
fn strip_tlv(data: &[u8], tag: u8) -> Option<&[u8]> {
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
    fn pss_encoding_done_here_verifies_as_rsassa_pss_sha256() {
        use rsa::traits::PrivateKeyParts;
        let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let em = emsa_pss_encode(b"canonical bytes", 2048);
        // The card's raw RSA operation: em^d mod n.
        let m = rsa::BigUint::from_bytes_be(&em);
        let s = m
            .modpow(k.d(), rsa::traits::PublicKeyParts::n(&k))
            .to_bytes_be();
        let mut sig = vec![0u8; 256 - s.len()];
        sig.extend_from_slice(&s);
        let public = PublicKey::RsaPss(k.to_public_key()).to_tuf_key();
        public
            .verify_hex(b"canonical bytes", &hex::encode(&sig))
            .unwrap();
        assert!(public
            .verify_hex(b"other bytes", &hex::encode(&sig))
            .is_err());
    }

    #[test]
    fn tlv_values_are_found() {
        let mut obj = vec![0x70, 0x82, 0x01, 0x00];
        obj.extend(vec![7u8; 256]);
        obj.extend([0x71, 0x01, 0x00, 0xfe, 0x00]);
        assert_eq!(strip_tlv(&obj, 0x70).map(<[u8]>::len), Some(256));
        assert_eq!(strip_tlv(&obj, 0x71), Some(&[0u8][..]));
        assert_eq!(strip_tlv(&[0x70, 0x05, 1], 0x70), None);
    }

    #[test]
    fn a_refused_held_pin_is_never_sent_again() {
        let mut r = PinRefusal::default();
        assert!(r.check("YubiKey 1", "yubikey:slot=9c").is_ok());
        // Other failures (a removed card, a locked PIN seen before sending) do not stick.
        let other: Result<(), KeyError> = Err(KeyError::PinFinalTry {
            token: "YubiKey 1".into(),
        });
        assert!(r.note(other).is_err());
        assert!(r.check("YubiKey 1", "yubikey:slot=9c").is_ok());
        assert!(r.note(Ok(())).is_ok());
        let wrong: Result<(), KeyError> = Err(KeyError::PinIncorrect {
            token: "YubiKey 1".into(),
            origin: "x".into(),
            after: "; 2 tries left".into(),
        });
        let e = r.note(wrong).unwrap_err().to_string();
        assert!(e.contains("will not send that PIN again"), "{e}");
        for _ in 0..3 {
            let e = r.check("YubiKey 1", "yubikey:slot=9c").unwrap_err();
            assert!(matches!(e, KeyError::ReloginRefused { .. }), "{e}");
            assert!(e.to_string().contains("2 tries left"), "{e}");
        }
    }
}
