//! The faults the soak injects and the daemon's memory it watches.
//!
//! - **Token removal.** SoftHSM keeps each token in its own folder under the token
//!   directory. Moving that folder out of the directory (one `rename`, atomic) is what a
//!   pulled USB token or an unreachable network HSM looks like to a running process: the
//!   open sessions' keys stop working (`C_Sign` answers `CKR_OBJECT_HANDLE_INVALID`,
//!   `C_GetTokenInfo` `CKR_GENERAL_ERROR`) and the token does not come back by itself when
//!   the folder returns: the daemon must notice, re-initialise the module and log in
//!   again, as it must after a real re-plug (docs/signer.md, "When the HSM goes away").
//! - **PostgreSQL restart.** The postmaster is stopped by its PID (SIGINT, PostgreSQL's
//!   fast shutdown: open connections are cut), kept down for a few seconds and started
//!   again on the same data directory and port, as an operator's restart or a fail-over
//!   would.
//! - **RSS.** `VmRSS` of the daemon from /proc, once a second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pg::Postgres;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    Token,
    Postgres,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Token => "token removed",
            FaultKind::Postgres => "PostgreSQL restarted",
        }
    }
}

/// One injected fault, in seconds since the clients started.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// When the token folder was moved away / the postmaster was told to stop.
    pub start: f64,
    /// When the folder was back / PostgreSQL accepted connections again.
    pub restored: f64,
}

/// When each fault happens: a token removal every `token_every` seconds (the first at
/// 10 s), `pg_restarts` PostgreSQL restarts spread evenly over the run (two: at about one
/// and two thirds), each placed 20 s into a token period so that the two kinds of fault
/// never overlap.
pub struct Plan {
    pub token_at: Vec<f64>,
    pub token_out: f64,
    pub pg_at: Vec<f64>,
    pub pg_down: f64,
}

impl Plan {
    pub fn new(
        total: f64,
        token_every: f64,
        token_out: f64,
        pg_down: f64,
        pg_restarts: u32,
    ) -> Plan {
        let mut token_at = Vec::new();
        let mut t = 10.0;
        while t + token_out + 5.0 <= total {
            token_at.push(t);
            t += token_every;
        }
        let mut pg_at: Vec<f64> = (1..=pg_restarts)
            .map(|i| f64::from(i) / f64::from(pg_restarts + 1))
            .map(|f| (total * f / token_every).floor() * token_every + 20.0)
            .filter(|t| t + pg_down + 5.0 <= total)
            .collect();
        pg_at.dedup();
        Plan {
            token_at,
            token_out,
            pg_at,
            pg_down,
        }
    }
}

/// The SoftHSM token's folder and the place it is moved to while "removed".
pub struct TokenFolder {
    from: PathBuf,
    to: PathBuf,
}

impl TokenFolder {
    /// The one token folder under `hsm/tokens` (softhsm-config/new-token.sh made it).
    pub fn find(hsm: &Path) -> TokenFolder {
        let tokens = hsm.join("tokens");
        let found: Vec<PathBuf> = std::fs::read_dir(&tokens)
            .unwrap_or_else(|e| panic!("soak: reading {}: {e}", tokens.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        let [from] = found.as_slice() else {
            panic!(
                "soak: expected one token folder in {}, found {}",
                tokens.display(),
                found.len()
            );
        };
        let away = hsm.join("away");
        std::fs::create_dir_all(&away)
            .unwrap_or_else(|e| panic!("soak: creating {}: {e}", away.display()));
        let to = away.join(from.file_name().unwrap_or_default());
        TokenFolder {
            from: from.clone(),
            to,
        }
    }

    pub fn remove(&self) {
        std::fs::rename(&self.from, &self.to)
            .unwrap_or_else(|e| panic!("soak: moving the token folder away: {e}"));
    }

    pub fn restore(&self) {
        std::fs::rename(&self.to, &self.from)
            .unwrap_or_else(|e| panic!("soak: moving the token folder back: {e}"));
    }
}

/// Runs the plan from `start`; returns what happened, and the PostgreSQL server (running).
pub fn inject(
    start: Instant,
    plan: &Plan,
    token: &TokenFolder,
    mut pg: Postgres,
) -> (Vec<Fault>, Postgres) {
    let mut events: Vec<(f64, FaultKind)> = plan
        .token_at
        .iter()
        .map(|t| (*t, FaultKind::Token))
        .chain(plan.pg_at.iter().map(|t| (*t, FaultKind::Postgres)))
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let now = || start.elapsed().as_secs_f64();
    let sleep_until = |t: f64| {
        let left = t - start.elapsed().as_secs_f64();
        if left > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(left));
        }
    };
    let mut faults = Vec::new();
    for (at, kind) in events {
        sleep_until(at);
        let begun = now();
        match kind {
            FaultKind::Token => {
                token.remove();
                eprintln!("soak: {begun:7.1} s  token folder moved away");
                sleep_until(begun + plan.token_out);
                token.restore();
            }
            FaultKind::Postgres => {
                pg.stop();
                eprintln!(
                    "soak: {begun:7.1} s  PostgreSQL stopped ({:.1} s)",
                    now() - begun
                );
                sleep_until(begun + plan.pg_down);
                pg.spawn();
            }
        }
        let restored = now();
        eprintln!("soak: {restored:7.1} s  {} — back", kind.name());
        faults.push(Fault {
            kind,
            start: begun,
            restored,
        });
    }
    (faults, pg)
}

/// The daemon's resident set in KiB, or `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples the daemon's RSS once a second until `stop`; (seconds since start, KiB).
pub fn sample_rss(start: Instant, pid: u32, stop: Arc<AtomicBool>) -> Vec<(f64, u64)> {
    let mut v = Vec::new();
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        if let Some(kib) = rss_kib(pid) {
            v.push((start.elapsed().as_secs_f64(), kib));
        }
        next += Duration::from_secs(1);
        let left = next.saturating_duration_since(Instant::now());
        std::thread::sleep(left);
    }
    v
}
