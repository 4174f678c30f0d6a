//! The TUF data model: canonical JSON, keys and key ids, the metadata envelope,
//! threshold verification. Pure data and crypto: no I/O, nothing else of tufkey.

pub mod chain;
pub mod cjson;
pub mod edit;
pub mod envelope;
pub mod error;
pub mod fileinfo;
pub mod hex;
pub mod key;
pub mod metadata;
pub mod paths;
pub mod tape;
#[cfg(test)]
mod tape_tests;
pub mod tape_write;
pub mod time;
pub mod verify;

pub use envelope::Envelope;
pub use error::TufError;
pub use key::{Key, KeyType, PublicKey};
pub use metadata::{Metadata, Signature};
pub use verify::{Delegator, RoleVerification, SameKey};
