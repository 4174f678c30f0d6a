//! A change of the proposed root in three steps that a crash cannot leave half done:
//! the new root.json is written as `root.json.next`, the transcript entry is appended,
//! then the staged file is renamed over root.json. The next command that opens the
//! ceremony finishes (entry written) or discards (no entry) what a crash left
//! (hsm-tests/crash.rs, docs/testing.md "Crash safety").

use std::path::{Path, PathBuf};

use super::{load_md, Ceremony, CeremonyError, Transcript};
use crate::fsutil;

impl Ceremony {
    /// A changed root.json written before its transcript entry and renamed over
    /// root.json after it, so that a crash in between can be finished or undone.
    pub(super) fn staged_path(dir: &Path) -> PathBuf {
        dir.join("root.json.next")
    }

    /// With the folder's lock held: finishes or undoes a change that was killed between
    /// writing `root.json.next` and renaming it over root.json. If the transcript records
    /// the staged root (its payload, its signatures), the change happened and the rename
    /// is done now; otherwise it never happened and the staged file is removed. Without this, the next
    /// command would call root.json "changed outside tufkey" (or find no root.json at all).
    pub(super) fn finish_staged(dir: &Path) -> Result<(), CeremonyError> {
        Self::cut_torn_entry(dir)?;
        let staged = Self::staged_path(dir);
        if !staged.exists() {
            return Ok(());
        }
        // Adopted only if the transcript accounts for it exactly: its payload is the last
        // entry's and every signature in it was recorded.
        let recorded = match (load_md(&staged), Self::transcript_path(dir).exists()) {
            (Ok(proposed), true) => {
                let trusted = Self::trusted_path(dir);
                let staged_ceremony = Ceremony {
                    dir: dir.into(),
                    proposed,
                    trusted: if trusted.exists() {
                        Some(load_md(&trusted)?)
                    } else {
                        None
                    },
                    transcript: Transcript::read(&Self::transcript_path(dir))?,
                    _lock: None,
                };
                staged_ceremony.transcript_problems().is_empty()
            }
            _ => false,
        };
        if recorded {
            std::fs::rename(&staged, Self::root_path(dir))
                .map_err(|e| CeremonyError::Io(staged.clone(), e))?;
            fsutil::sync_dir(dir);
            eprintln!(
                "note: {}: the last change was recorded in the transcript but interrupted before root.json was replaced; it was completed now",
                dir.display()
            );
        } else {
            std::fs::remove_file(&staged).map_err(|e| CeremonyError::Io(staged.clone(), e))?;
            eprintln!(
                "note: {}: an interrupted change that the transcript never recorded was discarded ({} removed)",
                dir.display(),
                staged.display()
            );
        }
        Ok(())
    }

    /// Writes the changed root to `root.json.next` before its transcript entry.
    pub(super) fn stage(&self) -> Result<(), CeremonyError> {
        let p = Self::staged_path(&self.dir);
        fsutil::write_atomic(&p, &self.proposed.to_pretty_bytes())
            .map_err(|e| CeremonyError::Io(p, e))
    }

    /// After the transcript entry: the staged root becomes root.json.
    pub(super) fn publish_staged(&self) -> Result<(), CeremonyError> {
        let staged = Self::staged_path(&self.dir);
        crate::testhook::at("ceremony-publish");
        std::fs::rename(&staged, Self::root_path(&self.dir))
            .map_err(|e| CeremonyError::Io(staged, e))?;
        fsutil::sync_dir(&self.dir);
        Ok(())
    }

    /// Whether the transcript's last line lacks its newline (read without the lock).
    pub(super) fn transcript_torn(dir: &Path) -> bool {
        std::fs::read(Self::transcript_path(dir))
            .is_ok_and(|t| !t.is_empty() && !t.ends_with(b"\n"))
    }

    /// With the folder's lock held: a transcript entry cut off in the middle of its write
    /// (power loss) never took effect — the command that wrote it had not finished — so
    /// it is moved to `transcript.jsonl.torn` rather than leaving the ceremony unusable.
    fn cut_torn_entry(dir: &Path) -> Result<(), CeremonyError> {
        let path = Self::transcript_path(dir);
        let Ok(text) = std::fs::read(&path) else {
            return Ok(());
        };
        if text.is_empty() || text.ends_with(b"\n") {
            return Ok(());
        }
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let side = dir.join("transcript.jsonl.torn");
        let mut torn = text[keep..].to_vec();
        torn.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&side)
            .map_err(|e| CeremonyError::Io(side.clone(), e))?;
        std::io::Write::write_all(&mut f, &torn)
            .and_then(|()| f.sync_all())
            .map_err(|e| CeremonyError::Io(side.clone(), e))?;
        let t = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| CeremonyError::Io(path.clone(), e))?;
        t.set_len(keep as u64)
            .and_then(|()| t.sync_all())
            .map_err(|e| CeremonyError::Io(path.clone(), e))?;
        eprintln!(
            "note: {}: its last entry was cut off in the middle of its write and never took effect; it was moved to {}",
            path.display(),
            side.display()
        );
        Ok(())
    }
}
