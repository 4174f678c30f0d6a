//! Changes waiting for `commit`: unsigned copies of the targets roles that changed
//! (`staged/<role>.json`, which `tufkey delegation …` may edit too), a new root
//! (`staged/root.json`), and target contents to publish (`staged/files/<sha256>`).
//! Nothing here is fetched by clients; `commit` signs and publishes it, then clears it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::error::RepoError;
use super::layout::Layout;
use super::state::{load, load_envelope};
use crate::fsutil;
use crate::tuf::{Envelope, Metadata};

/// The staging area of one repository.
pub struct Staging<'a> {
    layout: &'a Layout,
}

impl<'a> Staging<'a> {
    pub fn new(layout: &'a Layout) -> Staging<'a> {
        Staging { layout }
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), RepoError> {
        std::fs::create_dir_all(dir).map_err(RepoError::io(dir))
    }

    /// Every staged targets role, by name.
    pub fn roles(&self) -> Result<BTreeMap<String, Metadata>, RepoError> {
        self.roles_with(load, Metadata::role_type)
    }

    /// Every staged targets role, by name, read as [`Envelope`]s (from their tape: a
    /// 100,000-target role is not built as a JSON tree).
    pub fn envelopes(&self) -> Result<BTreeMap<String, Envelope>, RepoError> {
        self.roles_with(load_envelope, Envelope::role_type)
    }

    /// The names of the staged targets roles, without reading them; none when the
    /// staging folder cannot be listed (then [`Staging::roles`] says why).
    pub fn role_names(&self) -> BTreeSet<String> {
        self.role_files()
            .map(|files| files.into_iter().map(|(role, _)| role).collect())
            .unwrap_or_default()
    }

    /// (role, staged file) of every staged targets role.
    fn role_files(&self) -> Result<Vec<(String, PathBuf)>, RepoError> {
        let dir = self.layout.staged_dir();
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(RepoError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        for e in entries {
            let e = e.map_err(RepoError::io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(quoted) = name.strip_suffix(".json") else {
                continue;
            };
            if quoted == "root" || !e.path().is_file() {
                continue;
            }
            let role = percent_decode_str(quoted).decode_utf8_lossy().into_owned();
            out.push((role, e.path()));
        }
        Ok(out)
    }

    fn roles_with<D>(
        &self,
        read: impl Fn(&Path) -> Result<D, RepoError>,
        role_type: impl Fn(&D) -> &str,
    ) -> Result<BTreeMap<String, D>, RepoError> {
        let mut out = BTreeMap::new();
        for (role, path) in self.role_files()? {
            let md = read(&path)?;
            if role_type(&md) != "targets" {
                return Err(RepoError::Invalid {
                    reason: format!(
                        "a staged role must be a targets document, this one is `{}`",
                        role_type(&md)
                    ),
                    path,
                });
            }
            out.insert(role, md);
        }
        Ok(out)
    }

    /// Stages (replaces) role `role`'s unsigned document.
    pub fn write_role(&self, role: &str, md: &Metadata) -> Result<(), RepoError> {
        self.ensure_dir(&self.layout.staged_dir())?;
        let path = self.layout.staged_role(role);
        fsutil::write_atomic(&path, &md.to_pretty_bytes()).map_err(RepoError::io(&path))
    }

    /// Stages (replaces) many roles' documents, made durable together by one sync (an
    /// add that touches thousands of hash bins).
    pub fn write_roles(&self, roles: &BTreeMap<String, Metadata>) -> Result<(), RepoError> {
        if roles.len() < 2 {
            for (name, md) in roles {
                self.write_role(name, md)?;
            }
            return Ok(());
        }
        self.ensure_dir(&self.layout.staged_dir())?;
        let files: Vec<_> = roles
            .iter()
            .map(|(name, md)| (self.layout.staged_role(name), md.to_pretty_bytes()))
            .collect();
        super::publish::write_many(&files, &mut |_| {})
    }

    /// A staged new root, if any.
    pub fn root(&self) -> Result<Option<Metadata>, RepoError> {
        let p = self.layout.staged_root();
        if p.exists() {
            Ok(Some(load(&p)?))
        } else {
            Ok(None)
        }
    }

    /// Stages a new root (already verified by the caller).
    pub fn write_root(&self, md: &Metadata) -> Result<(), RepoError> {
        self.ensure_dir(&self.layout.staged_dir())?;
        let p = self.layout.staged_root();
        fsutil::write_atomic(&p, &md.to_pretty_bytes()).map_err(RepoError::io(&p))
    }

    /// Copies a target's contents into the staging area (once per SHA-256).
    pub fn stage_file(&self, from: &Path, sha256: &str) -> Result<(), RepoError> {
        let to = self.layout.staged_file(sha256);
        if to.exists() {
            return Ok(());
        }
        if let Some(d) = to.parent() {
            self.ensure_dir(d)?;
        }
        fsutil::copy_atomic(from, &to).map_err(|source| RepoError::File {
            path: from.to_path_buf(),
            source,
        })
    }

    /// The names in the folder of staged contents, listed once (a commit of a
    /// 100,000-target role asks about each); `None` when it cannot be listed.
    pub fn file_names(&self) -> Option<std::collections::HashSet<String>> {
        let dir = self.layout.staged_files_dir();
        match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Default::default()),
            Err(_) => None,
        }
    }

    /// Whether contents with this SHA-256 wait to be published.
    pub fn has_file(&self, sha256: &str) -> bool {
        self.layout.staged_file(sha256).is_file()
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> Result<bool, RepoError> {
        Ok(self.roles()?.is_empty() && self.root()?.is_none())
    }

    /// Removes everything staged (after a commit published it).
    pub fn clear(&self) -> Result<(), RepoError> {
        let dir = self.layout.staged_dir();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RepoError::Io {
                path: dir,
                source: e,
            }),
        }
    }
}
