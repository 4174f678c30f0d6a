//! `{length, hashes}` as targets and snapshot/timestamp `meta` entries state them, and
//! the hash algorithms tufkey writes (python-tuf verifies any it knows; tufkey writes
//! only SHA-256 and, on request, SHA-512).

use std::io::Read;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha512};

/// A hash algorithm tufkey writes into `hashes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    /// The name TUF uses as the key in `hashes`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// The algorithm with TUF name `name`, if tufkey can compute it.
    pub fn from_name(name: &str) -> Option<HashAlg> {
        match name {
            "sha256" => Some(HashAlg::Sha256),
            "sha512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// Length of the hex digest, to check hashes given by hand.
    pub fn hex_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 64,
            HashAlg::Sha512 => 128,
        }
    }
}

/// Length and hex digests of some bytes, as a `{length, hashes}` object states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub length: u64,
    /// (algorithm name, lower-case hex), sorted by name as the JSON object will be.
    pub hashes: Vec<(String, String)>,
}

impl FileInfo {
    /// Hashes bytes in memory.
    pub fn of_bytes(bytes: &[u8], algs: &[HashAlg]) -> FileInfo {
        let mut r = bytes;
        // Reading from a slice cannot fail.
        FileInfo::of_reader(&mut r, algs, |_| {}).unwrap_or(FileInfo {
            length: 0,
            hashes: Vec::new(),
        })
    }

    /// Hashes a stream in one pass, calling `progress` with the bytes read so far.
    pub fn of_reader(
        r: &mut dyn Read,
        algs: &[HashAlg],
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<FileInfo> {
        let mut s256 = algs.contains(&HashAlg::Sha256).then(Sha256::new);
        let mut s512 = algs.contains(&HashAlg::Sha512).then(Sha512::new);
        let mut buf = vec![0u8; 256 * 1024];
        let mut length = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            length += n as u64;
            if let Some(h) = s256.as_mut() {
                h.update(&buf[..n]);
            }
            if let Some(h) = s512.as_mut() {
                h.update(&buf[..n]);
            }
            progress(length);
        }
        let mut hashes = Vec::new();
        if let Some(h) = s256 {
            hashes.push(("sha256".to_string(), hex::encode(h.finalize())));
        }
        if let Some(h) = s512 {
            hashes.push(("sha512".to_string(), hex::encode(h.finalize())));
        }
        Ok(FileInfo { length, hashes })
    }

    /// The hex digest for algorithm `name`.
    pub fn hash(&self, name: &str) -> Option<&str> {
        self.hashes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.as_str())
    }

    /// `{"length": …, "hashes": {…}}`.
    pub fn to_value(&self) -> Value {
        let hashes: Map<String, Value> = self
            .hashes
            .iter()
            .map(|(n, h)| (n.clone(), Value::String(h.clone())))
            .collect();
        json!({"length": self.length, "hashes": hashes})
    }

    /// Reads `{length, hashes}` from a targets entry or a `meta` entry; `None` when either
    /// is missing or malformed.
    pub fn from_value(v: &Value) -> Option<FileInfo> {
        let length = v.get("length")?.as_u64()?;
        let hashes = v
            .get("hashes")?
            .as_object()?
            .iter()
            .map(|(k, h)| h.as_str().map(|h| (k.clone(), h.to_string())))
            .collect::<Option<Vec<_>>>()?;
        Some(FileInfo { length, hashes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_and_json_form() {
        let fi = FileInfo::of_bytes(b"abc", &[HashAlg::Sha256, HashAlg::Sha512]);
        assert_eq!(fi.length, 3);
        assert_eq!(
            fi.hash("sha256"),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(fi.hash("sha512").unwrap().starts_with("ddaf35a1"));
        let back = FileInfo::from_value(&fi.to_value()).unwrap();
        assert_eq!(back, fi);
        assert!(FileInfo::from_value(&json!({"length": 3})).is_none());
    }
}
