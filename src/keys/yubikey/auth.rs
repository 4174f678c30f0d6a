//! Management-key authentication before writing to a slot (3DES or AES, default or
//! PIN-protected), through tufkey's own GENERAL AUTHENTICATE ([`super::mgm`]).

use yubikey::{MgmKey, YubiKey};

use crate::keys::error::KeyError;
use crate::keys::secret::Secret;
use crate::keys::uri::YubiKeyUri;

use super::errors::{err, pcsc_explain};
use super::held::Held;
use super::mgm;
use super::mgm::SideChannel;
/// Where the management key tried came from, to say which one was refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MgmSource {
    Env,
    Protected,
    FactoryDefault,
}

/// The management key's algorithm and state, from GET METADATA on firmware 5.3+ (over
/// a second connection, see `mgm.rs`). `None` on older firmware, or when the card
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
/// that cannot say). A wrong key is never retried with another source. A card that
/// reports firmware 5.3+ but answers no GET METADATA is a generic PIV card: the key's
/// length gives its algorithm, and a 24-byte key refused as 3DES is tried as AES-192 (a
/// management key has no retry counter, so this costs nothing). Every key, 3DES
/// too, is used over a second connection with tufkey's own mutual authentication (the
/// `yubikey` crate 0.8 knows only 3DES, and slices the card's answer without checking
/// its length, which panics on a short answer; ours checks).
pub(super) fn authenticate(yk: &mut Held, uri: &YubiKeyUri) -> Result<(), KeyError> {
    let serial = yk.serial().0;
    let mut side: Option<SideChannel> = None;
    let meta = mgm_metadata(yk, uri, &mut side)?;
    let v = yk.version();
    // A card that reports firmware 5.3+ but has no GET METADATA is not a YubiKey: a
    // generic PIV card (Nitrokey 3 and others), whose default key may be 3DES or AES.
    let generic = meta.is_none() && (v.major, v.minor) >= (5, 3);
    let alg = meta
        .as_ref()
        .map(|m| m.algorithm)
        .unwrap_or(mgm::Algorithm::Tdes);
    // On a card that does not say, the key's length tells the algorithm (24 bytes: 3DES,
    // then AES-192 is tried).
    let alg_of = |len: usize| {
        if generic {
            by_length(len).unwrap_or(alg)
        } else {
            alg
        }
    };
    let (key, source) = if let Ok(hexkey) = std::env::var("TUFKEY_YUBIKEY_MGM_KEY") {
        let hexkey = Secret::new(hexkey);
        let alg = alg_of(hexkey.expose().trim().len() / 2);
        let key = mgm::MgmKey::from_hex(hexkey.expose(), alg, "TUFKEY_YUBIKEY_MGM_KEY")
            .map_err(|r| err(uri, r))?;
        (key, MgmSource::Env)
    } else if let Some(raw) = protected_mgm_key(yk) {
        let alg = alg_of(raw.len());
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
    let mut alg = key.algorithm();
    // The same 24 bytes as AES-192, for a card that does not say which it uses.
    let as_aes = (generic && alg == mgm::Algorithm::Tdes)
        .then(|| mgm::MgmKey::new(mgm::Algorithm::Aes192, key.bytes()))
        .flatten();
    // Only the crate's check of the key; it does not talk to the card.
    let weak_des = alg == mgm::Algorithm::Tdes && MgmKey::from_bytes(key.bytes()).is_err();
    if weak_des && as_aes.is_none() {
        return Err(err(
            uri,
            "the 3DES management key is a weak DES key, which a YubiKey does not accept",
        ));
    }
    if let Some(aes) = &as_aes {
        eprintln!(
            "note: card {serial} does not report its management key (no GET METADATA, as on generic PIV cards): trying {} as {}, then as {}; a refused management key spends no retry counter",
            source.describe(),
            mgm::Algorithm::Tdes,
            aes.algorithm()
        );
    }
    let mut outcome = if weak_des {
        Err(None)
    } else {
        mutual_auth(yk, uri, &mut side, &key)?
    };
    if let (Err(_), Some(aes)) = (&outcome, &as_aes) {
        if mutual_auth(yk, uri, &mut side, aes)?.is_ok() {
            alg = aes.algorithm();
            outcome = Ok(());
        }
    }
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
                _ if as_aes.is_some() => format!(
                    "card {serial} refused {} as {} and as {}{detail}; the card does not say which management key it has (no GET METADATA). Give the right one in TUFKEY_YUBIKEY_MGM_KEY (hex: 32 digits for AES-128, 48 for 3DES or AES-192, 64 for AES-256). Nothing was changed on the card",
                    source.describe(),
                    mgm::Algorithm::Tdes,
                    mgm::Algorithm::Aes192
                ),
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

impl MgmSource {
    fn describe(self) -> &'static str {
        match self {
            MgmSource::Env => "the management key given in TUFKEY_YUBIKEY_MGM_KEY",
            MgmSource::Protected => "the PIN-protected management key (object 5FC109)",
            MgmSource::FactoryDefault => "the factory-default management key",
        }
    }
}

/// The algorithm a management key of `len` bytes has on a card that does not say:
/// 24 bytes are taken as 3DES first (AES-192 is tried after).
fn by_length(len: usize) -> Option<mgm::Algorithm> {
    match len {
        16 => Some(mgm::Algorithm::Aes128),
        24 => Some(mgm::Algorithm::Tdes),
        32 => Some(mgm::Algorithm::Aes256),
        _ => None,
    }
}

/// One mutual authentication with `key` over the second connection: `Ok(Err(detail))`
/// when the card refused the key (which spends no retry counter), `Err` when the card
/// could not be asked.
fn mutual_auth(
    yk: &YubiKey,
    uri: &YubiKeyUri,
    side: &mut Option<SideChannel>,
    key: &mgm::MgmKey,
) -> Result<Result<(), Option<mgm::AuthError>>, KeyError> {
    let ch = side_channel(yk, uri, side)?;
    match ch
        .transaction(|t| mgm::mutual_auth(t, key))
        .map_err(|e| pcsc_explain(uri, e))?
    {
        Ok(()) => Ok(Ok(())),
        Err(mgm::AuthError::Transport(e)) => Err(err(
            uri,
            format!("management key authentication: smart card error: {e}"),
        )),
        Err(e) => Ok(Err(Some(e))),
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
