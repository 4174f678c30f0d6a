//! Named points where a test can stop tufkey for certain, to SIGKILL it exactly there
//! (hsm-tests/crash.rs, docs/testing.md "Crash safety"). Random kill delays alone miss
//! the narrow windows that matter (between a temporary file's fsync and its rename,
//! between an audit entry and the answer it allows); a stall makes each one certain.
//!
//! Inert unless `TUFKEY_TEST_STALL_AT` is set: its value is `POINT` (the first time the
//! point is reached) or `POINT#N` (the N-th time, counting from 1). On reaching it, the
//! process prints `tufkey-test: stalled at POINT#N` on stderr and sleeps until killed.
//! The environment is read once; no secret or input ever reaches this module.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The marker a stalled process prints on stderr (followed by ` POINT#N`).
pub const STALLED: &str = "tufkey-test: stalled at";

/// The environment variable that arms one point.
pub const ENV: &str = "TUFKEY_TEST_STALL_AT";

fn armed() -> Option<&'static (String, u32)> {
    static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok()?;
            match v.split_once('#') {
                Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
                None => Some((v, 1)),
            }
        })
        .as_ref()
}

/// Whether this visit of `point` is the armed one (each call counts as a visit).
/// Lets a caller do something first (write half a line) and then [`stall`].
pub fn reached(point: &str) -> bool {
    let Some((name, nth)) = armed() else {
        return false;
    };
    if name != point {
        return false;
    }
    static SEEN: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let n = seen
        .get_or_insert_with(HashMap::new)
        .entry(point.to_string())
        .or_insert(0);
    *n += 1;
    *n == *nth
}

/// Announces the stall on stderr and sleeps until the process is killed.
pub fn stall(point: &str) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{STALLED} {point}");
    let _ = err.flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Stops here if this visit of `point` is the armed one.
pub fn at(point: &str) {
    if reached(point) {
        stall(point);
    }
}
