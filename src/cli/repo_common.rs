//! What the `repo` commands that sign share: opening and locking a repository, `--key
//! ROLE=URI` pairs, the progress bar, the publishing step (sign, audit, write) and how its
//! outcome is shown. A leaf of `cli/`: `repo.rs` and `repo_bins.rs` both use it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use serde_json::{json, Value};
use tufkey::repo::commit::{Outcome, SignOptions};
use tufkey::repo::config::parse_duration;
use tufkey::repo::lock::RepoLock;
use tufkey::repo::signing::Made;
use tufkey::repo::{self as lib, Hooks, Progress, Repository};

use super::auditor::shown_path;
use super::ctx::Ctx;
use super::output::short;

#[derive(Args)]
pub struct CommitArgs {
    /// The repository folder.
    pub(super) dir: PathBuf,
    /// A key to sign ROLE with: ROLE=URI (pkcs11:, yubikey:, file:, https://…/keys/ID).
    /// Replaces repo.toml's keys for that role; repeat to meet a threshold.
    #[arg(long = "key", value_name = "ROLE=URI")]
    pub(super) keys: Vec<String>,
    /// Wait this long for another commit or refresh holding the lock (e.g. 30s, 5m);
    /// default: refuse at once, naming the holder.
    #[arg(long, default_value = "0s", value_parser = wait_arg)]
    pub(super) wait: Duration,
}

pub(super) fn wait_arg(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
        .and_then(|d| d.to_std().ok())
        .ok_or_else(|| format!("`{s}` is not a duration; write e.g. 30s, 5m, 1h"))
}

/// A library error for the CLI's error chain: a key error behind it is put in the chain
/// itself, so the exit code tells an unavailable device (7) from other failures.
pub(super) fn lift(e: lib::RepoError) -> anyhow::Error {
    let what = match &e {
        lib::RepoError::Sign { uri, role, .. } => {
            format!("signing role `{role}` with {uri}; nothing was published")
        }
        lib::RepoError::KeyRead { uri, role, .. } => {
            format!("reading the public key of {uri} for role `{role}`")
        }
        _ => return e.into(),
    };
    match e {
        lib::RepoError::Sign { source, .. } | lib::RepoError::KeyRead { source, .. } => {
            anyhow::Error::new(*source).context(what)
        }
        other => other.into(),
    }
}

pub(super) fn open(dir: &Path) -> Result<Repository> {
    Ok(Repository::open(dir)?)
}

pub(super) fn lock(repo: &Repository, wait: Duration) -> Result<RepoLock> {
    let command: Vec<String> = std::env::args().collect();
    Ok(RepoLock::acquire(
        &repo.layout.lock(),
        wait,
        &command.join(" "),
    )?)
}

/// `ROLE=URI` pairs.
pub(super) fn key_pairs(keys: &[String]) -> Result<Vec<(String, String)>> {
    keys.iter()
        .map(|k| match k.split_once('=') {
            Some((r, u)) if !r.is_empty() && !u.is_empty() && !r.contains(':') => {
                Ok((r.to_string(), u.to_string()))
            }
            _ => bail!(
                "--key {}: write ROLE=URI, e.g. --key timestamp=pkcs11:token=online;object=ts",
                tufkey::keys::uri::redact(k)
            ),
        })
        .collect()
}

/// A progress bar on stderr when it is a terminal and output is for people.
pub(super) struct Bar(indicatif::ProgressBar);

impl Bar {
    pub(super) fn new(ctx: &Ctx, bytes: bool) -> Bar {
        if ctx.json || !std::io::stderr().is_terminal() {
            return Bar(indicatif::ProgressBar::hidden());
        }
        let template = if bytes {
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg:>10} [{bar:30}] {pos}/{len}"
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bar(indicatif::ProgressBar::new(0).with_style(style))
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        self.0.reset();
        self.0.set_length(total);
        self.0.set_message(what.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Audit entries for every signature, all durable in one commit before anything is
/// published.
fn audit_hook<'a>(
    ctx: &'a Ctx,
    action: &'a str,
    dir: &'a Path,
) -> impl FnMut(&[Made]) -> Result<(), String> + 'a {
    move |made| {
        let file = shown_path(dir);
        let events = made
            .iter()
            .map(|m| {
                let mut ev = ctx.audit.event(action, "signed");
                ev.file = Some(file.clone());
                ev.role = Some(m.role.clone());
                ev.version = Some(m.version);
                ev.key_id = Some(m.keyid.clone());
                ev.key_uri = Some(tufkey::keys::uri::redact(&m.uri));
                ev.payload_sha256 = Some(m.payload_sha256.clone());
                ev
            })
            .collect();
        ctx.audit.record_many(events).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Most roles listed one by one; a commit of thousands of bins is summarised.
const ROLES_LISTED: usize = 12;

pub(super) fn show_outcome(o: &Outcome, written: &[PathBuf]) {
    let listed = if o.roles.len() > ROLES_LISTED {
        ROLES_LISTED - 2
    } else {
        o.roles.len()
    };
    for r in o.roles.iter().take(listed) {
        println!(
            "  {:<10} version {:<4} expires {}",
            r.role, r.version, r.expires
        );
    }
    if listed < o.roles.len() {
        println!("  … {} more role(s)", o.roles.len() - listed);
    }
    let by_key = o
        .signatures
        .iter()
        .fold(BTreeMap::<&str, Vec<&str>>::new(), |mut m, s| {
            m.entry(&s.keyid).or_default().push(&s.role);
            m
        });
    for (keyid, roles) in by_key {
        let shown = if roles.len() > 4 {
            format!("{} roles ({}, …)", roles.len(), roles[..3].join(", "))
        } else {
            roles.join(", ")
        };
        println!("  signed {shown} with {}", short(keyid));
    }
    println!("  {} file(s) written, timestamp.json last", written.len());
    for w in &o.warnings {
        println!("  warning: {w}");
    }
}

pub(super) fn outcome_json(o: &Outcome, written: &[PathBuf]) -> Value {
    let sigs: Vec<Value> = o
        .signatures
        .iter()
        .map(
            |s| json!({"role": s.role, "keyid": s.keyid, "uri": tufkey::keys::uri::redact(&s.uri)}),
        )
        .collect();
    json!({"roles": o.roles, "signatures": sigs, "target_files": o.target_files, "written": written, "warnings": o.warnings})
}

/// What `commit` and `refresh` share: open the repository, take its lock, sign with the
/// keys given (audited before anything is published) and collect the files written.
pub(super) fn publishing<T>(
    a: &CommitArgs,
    ctx: &Ctx,
    action: &str,
    resign_bins: bool,
    run: impl FnOnce(&Repository, &RepoLock, &SignOptions, &mut Hooks) -> Result<T, lib::RepoError>,
) -> Result<(T, Vec<PathBuf>)> {
    let repo = open(&a.dir)?;
    let keys = key_pairs(&a.keys)?;
    let held = lock(&repo, a.wait)?;
    let bar = Bar::new(ctx, false);
    let mut written = Vec::new();
    let mut audit = audit_hook(ctx, action, &a.dir);
    let mut hooks = Hooks {
        progress: &bar,
        before_publish: &mut audit,
        on_write: &mut |p: &Path| written.push(p.to_path_buf()),
    };
    let opts = SignOptions {
        keys: &keys,
        pins: &ctx.pins,
        now: Utc::now(),
        resign_bins,
    };
    let done = run(&repo, &held, &opts, &mut hooks)
        .map_err(lift)
        .with_context(|| format!("{action}: {}", a.dir.display()))?;
    Ok((done, written))
}
