//! The daemon's memory: the last version signed per (repository, role), and the
//! rate-limit buckets.
//!
//! Versions are made durable by the audit log: every `signed` entry carries the
//! repository, role and version, and it is fsynced before the signature is returned.
//! At start the daemon takes the maximum of the state file (a snapshot, written
//! atomically after signing and at shutdown) and a replay of the audit log, so a crash
//! between a signature and the next snapshot cannot reopen a version for replay, and a
//! rotated audit log does not lose the versions either.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value};

use super::error::ServerError;
use super::rate::Rate;

/// repository → role → last signed version.
type Versions = BTreeMap<String, BTreeMap<String, u64>>;

/// Last-signed versions, with reservations for requests being signed right now.
pub struct VersionStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    versions: Versions,
    dirty: bool,
}

/// Why a version was refused.
#[derive(Debug)]
pub struct NotIncreasing {
    pub last: u64,
}

impl VersionStore {
    /// Loads the snapshot at `path` (if any) and raises it with the `signed` entries of
    /// the audit log.
    pub fn load(path: &Path, audit: &[Map<String, Value>]) -> Result<VersionStore, ServerError> {
        let mut versions: Versions = match std::fs::read(path) {
            Ok(bytes) => {
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    ServerError::State(format!("{}: not a tufkey state file: {e}", path.display()))
                })?;
                serde_json::from_value(v.get("versions").cloned().unwrap_or(Value::Null)).map_err(
                    |e| {
                        ServerError::State(format!(
                            "{}: `versions` is not repository → role → version: {e}",
                            path.display()
                        ))
                    },
                )?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Versions::new(),
            Err(e) => return Err(ServerError::State(format!("{}: {e}", path.display()))),
        };
        let mut dirty = false;
        for e in audit {
            if e.get("result").and_then(Value::as_str) != Some("signed") {
                continue;
            }
            let (Some(repo), Some(role), Some(version)) = (
                e.get("repository").and_then(Value::as_str),
                e.get("role").and_then(Value::as_str),
                e.get("version").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let slot = versions
                .entry(repo.to_string())
                .or_default()
                .entry(role.to_string())
                .or_insert(0);
            if version > *slot {
                *slot = version;
                dirty = true;
            }
        }
        Ok(VersionStore {
            path: path.into(),
            inner: Mutex::new(Inner { versions, dirty }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `version` for (repository, role) if it is above the last one; concurrent
    /// requests for the same version get one success. Returns the previous value for
    /// [`VersionStore::release`].
    pub fn reserve(&self, repo: &str, role: &str, version: u64) -> Result<u64, NotIncreasing> {
        let mut inner = self.lock();
        // Looked up by reference first: a known repository and role (nearly every
        // request) allocates nothing.
        let roles = match inner.versions.get_mut(repo) {
            Some(roles) => roles,
            None => inner.versions.entry(repo.to_string()).or_default(),
        };
        let slot = match roles.get_mut(role) {
            Some(slot) => slot,
            None => roles.entry(role.to_string()).or_insert(0),
        };
        if version <= *slot {
            return Err(NotIncreasing { last: *slot });
        }
        let prev = *slot;
        *slot = version;
        inner.dirty = true;
        Ok(prev)
    }

    /// Gives a reservation back after signing failed, unless a later version was
    /// claimed meanwhile.
    pub fn release(&self, repo: &str, role: &str, version: u64, prev: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.versions.get_mut(repo).and_then(|r| r.get_mut(role)) {
            if *slot == version {
                *slot = prev;
            }
        }
    }

    /// The last signed version, for `/v1/state`-style answers and tests.
    pub fn last(&self, repo: &str, role: &str) -> u64 {
        self.lock()
            .versions
            .get(repo)
            .and_then(|r| r.get(role))
            .copied()
            .unwrap_or(0)
    }

    /// Writes the snapshot if anything changed (temp file, fsync, rename).
    pub fn save(&self) -> Result<(), ServerError> {
        let bytes = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            serde_json::to_vec_pretty(&serde_json::json!({
                "versions": inner.versions,
                "note": "last TUF metadata version signed per repository and role; the audit log is the durable record",
            }))
            .map_err(|e| ServerError::State(e.to_string()))?
        };
        crate::fsutil::write_atomic(&self.path, &bytes).map_err(|e| {
            self.lock().dirty = true;
            ServerError::State(format!("{}: {e}", self.path.display()))
        })
    }
}

/// Token buckets per client identity (per daemon; see docs/signer.md for replicas).
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes `n` tokens from `identity`'s bucket, or none; `Err(seconds)` says when `n`
    /// are back.
    pub fn take(&self, identity: &str, rate: Rate, n: u32) -> Result<(), u64> {
        let want = f64::from(n);
        let cap = f64::from(rate.count);
        let per_sec = cap / rate.period.as_secs_f64();
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = b.entry(identity.to_string()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(cap);
        *at = now;
        if *tokens >= want {
            *tokens -= want;
            Ok(())
        } else {
            Err(((want - *tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn versions_only_move_forward_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let s = VersionStore::load(&p, &[]).unwrap();
        assert_eq!(s.reserve("acme", "targets", 3).unwrap(), 0);
        assert!(s.reserve("acme", "targets", 3).is_err());
        assert!(s.reserve("acme", "targets", 2).is_err());
        let prev = s.reserve("acme", "targets", 5).unwrap();
        s.release("acme", "targets", 5, prev);
        assert_eq!(s.last("acme", "targets"), 3);
        s.save().unwrap();
        let audit: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "result": "signed", "repository": "acme", "role": "snapshot", "version": 9
        }))
        .unwrap();
        let s = VersionStore::load(&p, &[audit]).unwrap();
        assert_eq!(s.last("acme", "targets"), 3);
        assert_eq!(s.last("acme", "snapshot"), 9);
    }

    #[test]
    fn rate_limit_is_a_token_bucket() {
        let r = RateLimiter::default();
        let rate = Rate {
            count: 2,
            period: Duration::from_secs(60),
        };
        assert!(r.take("a", rate, 1).is_ok());
        assert!(r.take("a", rate, 1).is_ok());
        assert!(r.take("a", rate, 1).is_err());
        assert!(r.take("b", rate, 1).is_ok());
    }

    #[test]
    fn a_batch_takes_one_token_per_document_or_none() {
        let r = RateLimiter::default();
        let rate = Rate {
            count: 10,
            period: Duration::from_secs(60),
        };
        assert!(r.take("a", rate, 7).is_ok());
        // 3 left: a batch of 4 takes nothing and says when 4 will be there (6 s each).
        assert_eq!(r.take("a", rate, 4), Err(6));
        assert!(r.take("a", rate, 3).is_ok());
        assert!(r.take("a", rate, 1).is_err());
    }
}
