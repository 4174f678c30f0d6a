//! The CLI's side of the audit log: `--audit-log <path|postgres://…>` (or
//! `TUFKEY_AUDIT_LOG`) names the log that commands which sign or change key material
//! or trust append to, the same hash-chained log `tufkey serve` writes (see
//! docs/audit.md). Without it the CLI writes no audit entries.
//!
//! The order is fixed: the log is opened before the command changes anything (so an
//! unwritable log, an unreachable database or a log whose last line is broken stops
//! the command first); a signature's entry is committed before the signature is stored
//! anywhere (a repository's many signatures in one commit, [`Auditor::record_many`]);
//! other changes are recorded right after they are made. An entry that
//! cannot be written fails the command.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::Result;
use tufkey::audit::{Committed, Event, Sink, Target};

/// An audit entry could not be written; the command fails with this in its chain
/// (and no failure entry is attempted for it: it would fail the same way).
#[derive(Debug, thiserror::Error)]
#[error("{reason}: the audit entry was not written; fix the audit log (or its database) and rerun (`tufkey audit verify {log}` checks it)")]
pub struct AuditFailed {
    pub log: String,
    pub reason: String,
}

/// What an audited command is, for its failure entry.
pub struct Audited {
    /// The command as typed: `sign`, `key generate`, `ceremony sign`, …
    pub action: String,
    /// The file or folder it works on, if any.
    pub file: Option<PathBuf>,
}

impl Audited {
    pub fn new(action: &str, file: Option<&Path>) -> Audited {
        Audited {
            action: action.into(),
            file: file.map(Path::to_path_buf),
        }
    }
}

/// Where the CLI's audit entries go, and who it says made them.
pub struct Auditor {
    target: Option<Target>,
    /// `--audit-actor` / `TUFKEY_ACTOR`, else `user@host`.
    who: String,
    user: Option<String>,
    uid: Option<u32>,
    host: Option<String>,
    sink: RefCell<Option<Box<dyn Sink>>>,
}

impl Auditor {
    pub fn new(log: Option<&str>, actor: Option<&str>) -> Auditor {
        let target = log.and_then(Target::parse);
        let uid = local_uid();
        let user = uid.and_then(user_name).or_else(|| {
            std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty())
        });
        let host = host_name();
        let who = actor
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "{}@{}",
                    user.as_deref().unwrap_or("unknown"),
                    host.as_deref().unwrap_or("unknown-host")
                )
            });
        Auditor {
            target,
            who,
            user,
            uid,
            host,
            sink: RefCell::new(None),
        }
    }

    /// Whether an audit log was named.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The log as it may be shown (a PostgreSQL password redacted).
    pub fn shown(&self) -> String {
        match &self.target {
            Some(t) => t.shown(),
            None => "(none)".into(),
        }
    }

    fn failed(&self, reason: impl std::fmt::Display) -> AuditFailed {
        AuditFailed {
            log: self.shown(),
            reason: reason.to_string(),
        }
    }

    /// Opens the log if one is named and it is not open yet. Called before an audited
    /// command changes anything.
    pub fn open(&self) -> Result<(), AuditFailed> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let mut sink = self.sink.borrow_mut();
        if sink.is_some() {
            return Ok(());
        }
        *sink = Some(target.open_shared().map_err(|e| self.failed(e))?);
        Ok(())
    }

    /// A new event for `action` with `result`, carrying who ran it.
    pub fn event(&self, action: &str, result: &str) -> Event {
        Event {
            who: self.who.clone(),
            action: action.into(),
            result: result.into(),
            source: Some("cli".into()),
            user: self.user.clone(),
            uid: self.uid,
            host: self.host.clone(),
            ..Default::default()
        }
    }

    /// Makes `event` durable; `Ok(None)` when no log is named. The error names the log.
    pub fn record(&self, event: Event) -> Result<Option<Committed>, AuditFailed> {
        if !self.enabled() {
            return Ok(None);
        }
        self.open()?;
        let sink = self.sink.borrow();
        let committed = match sink.as_ref() {
            Some(sink) => sink.append_blocking(event).map_err(|e| self.failed(e)),
            None => Err(self.failed("the log is not open")),
        }?;
        Ok(Some(committed))
    }

    /// Makes every event durable in one commit (one lock, one fdatasync or one
    /// transaction): all of them or none. Re-signing 16,384 bins writes 16,384 entries,
    /// and one flush each would take about a minute. Returns how many were written
    /// (none when no log is named).
    pub fn record_many(&self, events: Vec<Event>) -> Result<usize, AuditFailed> {
        if !self.enabled() || events.is_empty() {
            return Ok(0);
        }
        self.open()?;
        let sink = self.sink.borrow();
        let committed = match sink.as_ref() {
            Some(sink) => sink
                .append_many_blocking(events)
                .map_err(|e| self.failed(e)),
            None => Err(self.failed("the log is not open")),
        }?;
        Ok(committed.len())
    }

    /// Records that an audited command failed (`result` `error`, the message as
    /// `reason`). Skipped when the failure was the audit log itself.
    pub fn record_failure(&self, what: &Audited, err: &anyhow::Error) -> Result<(), AuditFailed> {
        if !self.enabled() || is_audit_failure(err) {
            return Ok(());
        }
        let mut ev = self.event(&what.action, "error");
        ev.reason = Some(format!("{err:#}"));
        ev.file = what.file.as_deref().map(shown_path);
        self.record(ev).map(|_| ())
    }
}

/// Whether an error (or one of its causes) is a failed audit write.
pub fn is_audit_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<AuditFailed>())
}

/// A path as recorded: absolute, so that entries from different working folders can
/// be told apart.
pub fn shown_path(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// The effective user id: the owner of `/proc/self` (Linux), without libc.
fn local_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The user name of `uid` from /etc/passwd (users only known to NSS, e.g. LDAP, fall
/// back to `$USER`).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_string())
    })
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_the_actor_or_user_at_host() {
        let a = Auditor::new(None, Some("alice (root keyholder 2)"));
        assert_eq!(a.who, "alice (root keyholder 2)");
        assert!(!a.enabled());
        let b = Auditor::new(Some(""), None);
        assert!(!b.enabled());
        assert!(b.who.contains('@'), "{}", b.who);
        let ev = b.event("sign", "signed");
        assert_eq!(ev.source.as_deref(), Some("cli"));
        assert_eq!(ev.uid, local_uid());
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let a = Auditor::new(Some("postgres://u:secret@127.0.0.1:1/db"), None);
        assert!(!a.shown().contains("secret"));
    }
}
