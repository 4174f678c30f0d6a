//! Where every file of a repository lives: what python-tuf's ngclient and tough fetch
//! (`metadata/{N}.root.json`, `metadata/timestamp.json`, `metadata/{V}.{role}.json` or
//! `metadata/{role}.json`, `targets/{dir}/{hash}.{name}` or `targets/{path}`), and
//! tufkey's own files beside them (`repo.toml`, `staged/`, `repo.lock`).

use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The repository settings file.
pub const CONFIG_FILE: &str = "repo.toml";
/// Pending, unsigned changes between `add` and `commit`.
pub const STAGED_DIR: &str = "staged";
/// The lock that keeps two commits from interleaving.
pub const LOCK_FILE: &str = "repo.lock";

/// python-tuf quotes role names with `urllib.parse.quote(name, "")`: everything but
/// letters, digits and `_.-~` is percent-encoded.
const ROLE_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The paths of one repository folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    pub fn targets_dir(&self) -> PathBuf {
        self.dir.join("targets")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn staged_dir(&self) -> PathBuf {
        self.dir.join(STAGED_DIR)
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// `metadata/{N}.root.json`: every root version stays, clients walk the chain.
    pub fn root(&self, version: u64) -> PathBuf {
        self.metadata_dir().join(format!("{version}.root.json"))
    }

    /// `metadata/root.json`: the newest root, for tools that bootstrap from it.
    pub fn root_copy(&self) -> PathBuf {
        self.metadata_dir().join("root.json")
    }

    /// `metadata/timestamp.json`, never version-prefixed.
    pub fn timestamp(&self) -> PathBuf {
        self.metadata_dir().join("timestamp.json")
    }

    /// Snapshot and targets roles: `{V}.{role}.json` when consistent, else `{role}.json`.
    pub fn role(&self, role: &str, version: u64, consistent: bool) -> PathBuf {
        self.metadata_dir()
            .join(role_file_name(role, version, consistent))
    }

    /// Where clients download a target from, one path per hash when consistent
    /// (ngclient uses the first hash listed, tough any: every one gets a copy).
    pub fn target_files(
        &self,
        target: &str,
        hashes: &[(String, String)],
        consistent: bool,
    ) -> Vec<PathBuf> {
        let base = self.targets_dir();
        if !consistent {
            return vec![base.join(target)];
        }
        let (dir, name) = match target.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, target),
        };
        hashes
            .iter()
            .map(|(_, h)| {
                let file = format!("{h}.{name}");
                match dir {
                    Some(d) => base.join(d).join(file),
                    None => base.join(file),
                }
            })
            .collect()
    }

    /// A staged (unsigned) copy of a targets role.
    pub fn staged_role(&self, role: &str) -> PathBuf {
        self.staged_dir().join(format!("{}.json", quote_role(role)))
    }

    /// A staged new root.
    pub fn staged_root(&self) -> PathBuf {
        self.staged_dir().join("root.json")
    }

    /// The folder of target contents waiting to be published.
    pub fn staged_files_dir(&self) -> PathBuf {
        self.staged_dir().join("files")
    }

    /// Target contents waiting to be published, by SHA-256.
    pub fn staged_file(&self, sha256: &str) -> PathBuf {
        self.staged_files_dir().join(sha256)
    }
}

/// The metadata file name of a snapshot or targets role.
pub fn role_file_name(role: &str, version: u64, consistent: bool) -> String {
    if consistent {
        format!("{version}.{}.json", quote_role(role))
    } else {
        format!("{}.json", quote_role(role))
    }
}

/// A role name as it appears in file names and snapshot `meta` keys (python-tuf quotes it).
pub fn quote_role(role: &str) -> String {
    utf8_percent_encode(role, ROLE_NAME).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_ngclient_fetches() {
        let l = Layout::new(Path::new("/r"));
        assert_eq!(l.root(2), Path::new("/r/metadata/2.root.json"));
        assert_eq!(
            l.role("snapshot", 7, true),
            Path::new("/r/metadata/7.snapshot.json")
        );
        assert_eq!(
            l.role("targets", 7, false),
            Path::new("/r/metadata/targets.json")
        );
        assert_eq!(quote_role("team/a b"), "team%2Fa%20b");
        let hashes = vec![
            ("sha256".to_string(), "aa".to_string()),
            ("sha512".to_string(), "bb".to_string()),
        ];
        assert_eq!(
            l.target_files("app/v1/x.tgz", &hashes, true),
            vec![
                PathBuf::from("/r/targets/app/v1/aa.x.tgz"),
                PathBuf::from("/r/targets/app/v1/bb.x.tgz")
            ]
        );
        assert_eq!(
            l.target_files("x.tgz", &hashes, false),
            vec![PathBuf::from("/r/targets/x.tgz")]
        );
    }
}
