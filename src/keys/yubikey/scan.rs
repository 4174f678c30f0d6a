//! Finding YubiKeys: scanning the readers, opening one by serial, waiting for insertion.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::keys::error::KeyError;
use crate::keys::uri::YubiKeyUri;

use super::errors::{err, explain};
use super::held::Held;
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

/// What one look at the readers found for a URI.
pub(super) enum Scan {
    /// The YubiKey the URI names.
    Found(Held),
    /// Not there; the serials of the YubiKeys that are.
    Absent(Vec<u32>),
}

/// Looks once for the YubiKey the URI names, without waiting. Every card opened and not
/// returned is left as it was (only its serial was read). No reader at all (a USB
/// YubiKey is its own reader, so none is plugged in) counts as absent.
pub(super) fn scan(uri: &YubiKeyUri) -> Result<Scan, KeyError> {
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
pub(super) fn present_list(serials: &[u32]) -> String {
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
pub(super) fn open_device(uri: &YubiKeyUri) -> Result<Held, KeyError> {
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
