//! Lengths and hashes, as python-tuf's `verify_length_and_hashes` checks them, for
//! metadata files (against what timestamp and snapshot state) and target files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};
use sha2::digest::DynDigest;

/// The hash algorithms securesystemslib computes that a TUF repository uses.
fn hasher(algorithm: &str) -> Option<Box<dyn DynDigest>> {
    Some(match algorithm {
        "sha224" => Box::new(sha2::Sha224::default()),
        "sha256" => Box::new(sha2::Sha256::default()),
        "sha384" => Box::new(sha2::Sha384::default()),
        "sha512" => Box::new(sha2::Sha512::default()),
        _ => return None,
    })
}

/// A stated length and hashes: `length` and `hashes` of a snapshot/timestamp `meta`
/// entry (both optional) or of a target (both required).
#[derive(Debug, Clone, Default)]
pub struct Stated {
    pub length: Option<u64>,
    pub hashes: BTreeMap<String, String>,
}

impl Stated {
    /// Reads `length` and `hashes` from a file-info object; `required` for targets.
    /// The checks are python-tuf's: a length is a non-negative integer, `hashes` a
    /// non-empty object of strings.
    pub fn from_info(info: &Value, required: bool) -> Result<Stated, String> {
        let length = match info.get("length") {
            None if !required => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or("`length` must be a non-negative integer")?,
            ),
            None => return Err("`length` is missing".into()),
        };
        let hashes = match info.get("hashes") {
            None if !required => BTreeMap::new(),
            Some(Value::Object(m)) if !m.is_empty() => strings(m)?,
            Some(_) => return Err("`hashes` must be a non-empty object of hex strings".into()),
            None => return Err("`hashes` is missing".into()),
        };
        Ok(Stated { length, hashes })
    }

    /// Compares with the actual bytes; one message per difference, naming `by`, the
    /// file that states the length and hashes.
    pub fn check_bytes(&self, bytes: &[u8], by: &str) -> Vec<String> {
        let mut hashers = BTreeMap::new();
        let mut problems = self.hashers(&mut hashers, by);
        for h in hashers.values_mut() {
            h.update(bytes);
        }
        problems.extend(self.compare(bytes.len() as u64, hashers, by));
        problems
    }

    /// As [`Stated::check_bytes`] for a file read in pieces (targets can be large).
    pub fn check_file(
        &self,
        path: &Path,
        by: &str,
        on_bytes: &dyn Fn(u64),
    ) -> std::io::Result<Vec<String>> {
        let mut hashers = BTreeMap::new();
        let mut problems = self.hashers(&mut hashers, by);
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut len = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            on_bytes(n as u64);
            for h in hashers.values_mut() {
                h.update(&buf[..n]);
            }
        }
        problems.extend(self.compare(len, hashers, by));
        Ok(problems)
    }

    fn hashers(&self, out: &mut BTreeMap<String, Box<dyn DynDigest>>, by: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for alg in self.hashes.keys() {
            match hasher(alg) {
                Some(h) => {
                    out.insert(alg.clone(), h);
                }
                None => problems.push(format!(
                    "{by} states a hash by `{alg}`, which is not supported (sha224, sha256, sha384, sha512), so the file cannot be checked"
                )),
            }
        }
        problems
    }

    fn compare(
        &self,
        len: u64,
        hashers: BTreeMap<String, Box<dyn DynDigest>>,
        by: &str,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(want) = self.length {
            if want != len {
                problems.push(format!("length is {len} bytes, but {by} states {want}"));
            }
        }
        for (alg, h) in hashers {
            let got = hex::encode(h.finalize());
            let want = &self.hashes[&alg];
            if !got.eq_ignore_ascii_case(want) {
                problems.push(format!("{alg} is {got}, but {by} states {want}"));
            }
        }
        problems
    }
}

fn strings(m: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    m.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_owned()))
                .ok_or_else(|| format!("hash `{k}` must be a string"))
        })
        .collect()
}

/// Whether a target path can name a file under `targets/` without leaving it.
pub fn safe_target_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the target path is empty".into());
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("a target path must be relative, with `/` between parts".into());
    }
    if path.split('/').any(|part| part == ".." || part == ".") {
        return Err("a target path must not contain `.` or `..` parts".into());
    }
    Ok(())
}

/// The file names a client downloads a target from: `dir/HASH.name` for each stated
/// hash when snapshots are consistent (ngclient takes the first hash; a repository
/// publishes one per hash), else the path itself.
pub fn target_file_names(path: &str, stated: &Stated, consistent: bool) -> Vec<String> {
    if !consistent {
        return vec![path.to_owned()];
    }
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), path),
    };
    stated
        .hashes
        .values()
        .map(|h| format!("{dir}{h}.{name}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stated_lengths_and_hashes_are_compared_with_the_bytes() {
        let info = json!({"length": 5, "hashes": {"sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}});
        let s = Stated::from_info(&info, true).unwrap();
        assert!(s.check_bytes(b"hello", "targets.json").is_empty());
        let problems = s.check_bytes(b"hello!", "targets.json");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0], "length is 6 bytes, but targets.json states 5");
        let md5 = Stated::from_info(&json!({"hashes": {"md5": "00"}}), false).unwrap();
        assert!(md5.check_bytes(b"x", "snapshot.json")[0]
            .contains("snapshot.json states a hash by `md5`"));
    }

    #[test]
    fn targets_need_length_and_hashes_but_meta_entries_do_not() {
        assert!(Stated::from_info(&json!({"version": 1}), false).is_ok());
        assert!(Stated::from_info(&json!({"length": 1}), true).is_err());
        assert!(
            Stated::from_info(&json!({"length": -1, "hashes": {"sha256": "00"}}), true).is_err()
        );
        assert!(Stated::from_info(&json!({"length": 1, "hashes": {}}), true).is_err());
    }

    #[test]
    fn consistent_target_names_carry_each_hash_before_the_base_name() {
        let s = Stated::from_info(
            &json!({"length": 1, "hashes": {"sha256": "aa", "sha512": "bb"}}),
            true,
        )
        .unwrap();
        assert_eq!(
            target_file_names("team/tool.bin", &s, true),
            ["team/aa.tool.bin", "team/bb.tool.bin"]
        );
        assert_eq!(target_file_names("tool.bin", &s, false), ["tool.bin"]);
    }

    #[test]
    fn target_paths_that_leave_the_targets_folder_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", "a\\b", ""] {
            assert!(safe_target_path(bad).is_err(), "{bad}");
        }
        assert!(safe_target_path("team/tool-1.0.tar.gz").is_ok());
    }
}
