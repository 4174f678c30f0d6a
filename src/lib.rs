//! tufkey: hardware-backed key management and signing for TUF repositories.
//!
//! - [`tuf`]: the TUF data model, canonical JSON, key ids and threshold verification;
//! - [`keys`]: key URIs, the [`keys::Signer`] trait, PIN sources and the backends;
//! - [`repo`]: repositories as clients fetch them, and their whole-repository check;
//! - [`server`]: the signer daemon (`tufkey serve`); [`audit`]: the hash-chained audit log
//!   that the daemon and the CLI share (a file or PostgreSQL sink);
//! - [`pg`]: PostgreSQL connections for the replicas' store and the audit sink;
//!   [`pem`]: certificates and keys from PEM files, for both TLS sides;
//! - [`fsutil`]: writing files so that a failure leaves the old file in place;
//!   [`https`]: a bounded HTTPS GET (OIDC discovery, CI token requests).
#![forbid(unsafe_code)]

pub mod audit;
pub mod ceremony;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod https;
pub mod keys;
pub mod notary;
pub mod pem;
pub mod pg;
pub mod repo;
pub mod server;
#[doc(hidden)]
pub mod testhook;
pub mod tuf;
