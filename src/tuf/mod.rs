//! The TUF data model: canonical JSON, keys and key ids, the metadata envelope,
//! threshold verification. Pure data and crypto: no I/O, nothing else of tufkey.

pub mod chain;
pub mod cjson;
pub mod edit;
pub mod envelope;
pub mod error;
pub mod fileinfo;
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

/// Lower-case hex, as TUF writes signatures, hashes and key ids. The `hex` crate builds
/// its string one `char` at a time, which costs more than the SHA-256 it encodes; this
/// is on every signature's path in the signer daemon.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_lower_writes_what_the_hex_crate_writes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_lower(&all), hex::encode(&all));
        assert_eq!(super::hex_lower(&[]), "");
    }
}
