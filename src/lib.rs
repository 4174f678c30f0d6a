//! tufkey: hardware-backed key management and signing for TUF repositories.
//!
//! - [`tuf`]: the TUF data model, canonical JSON, key ids and threshold verification;
//! - [`keys`]: key URIs, the [`keys::Signer`] trait, PIN sources and the backends;
//! - [`server`]: the signer daemon (`tufkey serve`); [`audit`]: its hash-chained audit log;
//! - [`fsutil`]: writing files so that a failure leaves the old file in place.
#![forbid(unsafe_code)]

pub mod audit;
pub mod ceremony;
pub mod fsutil;
pub mod keys;
pub mod repo;
pub mod server;
pub mod tuf;
