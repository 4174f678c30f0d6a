//! One writer at a time: an exclusive `flock` on `repo.lock`, held for the whole of an
//! `add`, `commit` or `refresh`, released by the kernel if the process dies. The holder
//! writes who it is into the file so a waiting command can name it, and empties it
//! again on release (so a command leaves the folder as it found it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::RepoError;

/// How often a waiting command retries the lock.
const RETRY: Duration = Duration::from_millis(100);

/// The lock, held until dropped.
#[derive(Debug)]
pub struct RepoLock {
    file: File,
    path: PathBuf,
}

impl RepoLock {
    /// Takes the lock at `path`, waiting up to `wait`; `command` is recorded for others.
    pub fn acquire(path: &Path, wait: Duration, command: &str) -> Result<RepoLock, RepoError> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(RepoError::io(path))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(RepoError::Locked {
                            lock: path.to_path_buf(),
                            holder: holder(&mut file),
                        });
                    }
                    std::thread::sleep(RETRY);
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(RepoError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
        let me = serde_json::json!({
            "pid": std::process::id(),
            "host": host_name(),
            "command": command,
            "since": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(format!("{me}\n").as_bytes())?;
            f.sync_data()
        };
        write(&mut file).map_err(RepoError::io(path))?;
        Ok(RepoLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Forget the holder line, then unlock explicitly so the lock is free even before
        // the descriptor is closed. A killed holder leaves its line; the next one rewrites it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds the lock, from what they wrote: "pid 123 on host (tufkey repo commit …) since …".
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(v) => format!(
            "pid {} on {} (`{}`) since {}",
            v["pid"],
            v["host"].as_str().unwrap_or("?"),
            v["command"].as_str().unwrap_or("?"),
            v["since"].as_str().unwrap_or("?")
        ),
        Err(_) => "another process (it has not written its name yet)".into(),
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_gets_it_once_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("repo.lock");
        let first = RepoLock::acquire(&p, Duration::ZERO, "tufkey repo commit r").unwrap();
        let err = RepoLock::acquire(&p, Duration::from_millis(200), "second")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id()))
                && err.contains("tufkey repo commit r")
                && err.contains("--wait"),
            "{err}"
        );
        drop(first);
        RepoLock::acquire(&p, Duration::ZERO, "second").unwrap();
    }
}
