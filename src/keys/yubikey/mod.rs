//! YubiKey PIV keys through the `yubikey` crate and pcscd.
//!
//! Treats people as age-plugin-yubikey does: waits for a key to be inserted, picks by
//! serial when several are present, checks the PIN's length and retry counter before
//! spending a try, never retries a wrong PIN, explains a sharing violation, warns about
//! a factory-default PIN, and never resets or overwrites a key it did not make.
//!
//! Never resets a card it only read: every open YubiKey is a `Held`, which disconnects
//! with "leave card" unless tufkey gave the card a PIN or a management key, and then
//! resets it so the verified PIN and the management-key authentication do not outlive
//! tufkey's use (see docs/yubikey.md).
//!
//! Algorithms: ECDSA P-256 (TUF `ecdsa-sha2-nistp256`; the card returns DER) and
//! RSA-2048 with `rsassa-pss-sha256` (EMSA-PSS encoded here, raw RSA on the card).
//! Ed25519 and RSA-3072 need firmware 5.7 and a newer crate; they are refused.
//!
//! One concern per file: held cards and their release (`held.rs`), scanning and opening by
//! serial, PIN rules, management-key authentication, slots (read, list, generate), the
//! signer, importing a software key (`import.rs`), and attestation (the pure X.509 chain checks in `attestation.rs` are built
//! without the `yubikey` feature too, for the types they define).

#[cfg(feature = "yubikey")]
pub(crate) mod attest;
pub mod attestation;

pub use crate::keys::error::PCSC_LIBRARY_MISSING;
#[cfg(feature = "yubikey")]
mod auth;
#[cfg(feature = "yubikey")]
mod errors;
#[cfg(feature = "yubikey")]
mod held;
#[cfg(feature = "yubikey")]
mod import;
#[cfg(feature = "yubikey")]
pub(crate) mod mgm;
#[cfg(feature = "yubikey")]
mod pin;
#[cfg(feature = "yubikey")]
mod scan;
#[cfg(feature = "yubikey")]
mod signer;
#[cfg(feature = "yubikey")]
mod slots;

#[cfg(feature = "yubikey")]
pub use attest::{attest, spki_der, verify_recorded};
#[cfg(feature = "yubikey")]
pub use import::import;
#[cfg(feature = "yubikey")]
pub use scan::{list_devices, Device};
#[cfg(feature = "yubikey")]
pub use signer::YubiKeySigner;
#[cfg(feature = "yubikey")]
pub use slots::{generate, list_keys, public_key, SlotKey};
