//! Leaving Notary (v1): its key stores and trust data, read so that keys move into
//! hardware and a TUF 1.0 repository continues what Notary published.
//!
//! - [`store`]: key stores in every layout Notary used (0.1 role-in-file-name, 0.2–0.3
//!   `role` headers, 0.4+ flat with `role` and `gun` headers), listed without a
//!   passphrase; [`privkey`] decrypts their files (legacy OpenSSL PEM encryption, PKCS#8
//!   PBES2) into memory only;
//! - [`pubkey`]: Notary's public keys and key ids, the TUF key id of the same key, and
//!   Notary's signature methods; [`cert`]: certificates as root keys;
//! - [`trust`] and [`verify`]: trust data read and checked with Notary's client rules;
//! - [`migrate`]: the targets and keys carried into a ceremony and repository manifests.
//!
//! Notary signs Go canonical JSON, which for its documents is the same OLPC canonical
//! form `tuf::cjson` writes (only `"` and `\` escaped, sorted keys, no floats).

pub mod cert;
pub mod error;
pub mod migrate;
pub mod pemfile;
pub mod privkey;
pub mod pubkey;
pub mod store;
pub mod trust;
pub mod verify;

pub use error::NotaryError;
pub use store::{Opened, StoredKey};
