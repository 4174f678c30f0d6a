//! A torn last line: what a writer killed in the middle of its write (or a power loss
//! before its fdatasync) leaves. Such an entry was never committed — nobody was told it
//! was written, and no signature it covered was returned or written — so it is cut off,
//! under the log's exclusive lock, before the next entry is chained on. Its bytes are
//! kept in `<log>.torn` for the record, and a warning says so; the next command then
//! works without manual repair (docs/audit.md, docs/testing.md "Crash safety").

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::AuditError;

/// How far back a torn line is looked for: a whole batch of the group commit fits.
const STEP: u64 = 64 * 1024;

/// Where the bytes of a cut-off line are kept.
pub fn torn_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    PathBuf::from(name)
}

/// With the exclusive lock held: if the log's last line lacks its newline, moves that
/// line to `<log>.torn` and truncates the log to the end of its last whole line.
/// Returns how many bytes were cut.
pub(super) fn cut_torn_tail(file: &File, path: &Path) -> Result<u64, AuditError> {
    let io = |path: &Path, err| AuditError::Io {
        path: path.into(),
        err,
    };
    let len = file.metadata().map_err(|e| io(path, e))?.len();
    if len == 0 || last_byte(file, len).map_err(|e| io(path, e))? == b'\n' {
        return Ok(0);
    }
    // Backwards in steps until the newline that ends the last whole line.
    let mut end = len;
    let keep = loop {
        let from = end.saturating_sub(STEP);
        let mut buf = vec![0; (end - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| io(path, e))?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            break from + i as u64 + 1;
        }
        if from == 0 {
            break 0;
        }
        end = from;
    };
    let mut torn = vec![0; (len - keep) as usize];
    file.read_exact_at(&mut torn, keep)
        .map_err(|e| io(path, e))?;
    let side = torn_path(path);
    let mut kept = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&side)
        .map_err(|e| io(&side, e))?;
    torn.push(b'\n');
    kept.write_all(&torn)
        .and_then(|()| kept.sync_all())
        .map_err(|e| io(&side, e))?;
    file.set_len(keep)
        .and_then(|()| file.sync_data())
        .map_err(|e| io(path, e))?;
    let cut = len - keep;
    eprintln!(
        "warning: audit log {}: its last line was incomplete ({cut} bytes, a write cut off by a crash); that entry was never committed, so it was removed and its bytes kept in {}",
        path.display(),
        side.display()
    );
    Ok(cut)
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, len - 1)?;
    Ok(b[0])
}
