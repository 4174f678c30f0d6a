//! `tufkey audit verify` / `tufkey audit export`: check an audit log's hash chain,
//! in a JSON-lines file or in the PostgreSQL store that signer replicas share.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use tufkey::audit::{self, AuditError, Target, Verified};

use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::print_json;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check that no entry of an audit log was edited, removed or reordered.
    Verify(VerifyArgs),
    /// Write the audit log held in PostgreSQL as JSON lines (byte-identical to a
    /// file log), for archiving or for `tufkey audit verify FILE` elsewhere.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit log: a JSON-lines file as `tufkey serve` writes it, or the
    /// replicas' `postgres://user@host:port/db` (its head row is checked too).
    log: String,
    /// The head hash noted earlier (from /healthz or the daemon's stop message): also
    /// proves that no trailing entry was removed since.
    #[arg(long, value_name = "SHA256")]
    head: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The replicas' store: `postgres://user@host:port/db`.
    url: String,
    /// Write here (atomically) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(cmd: AuditCmd, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Verify(args) => verify(args, ctx),
        AuditCmd::Export(args) => export(args),
    }
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let Some(Target::Postgres(url)) = Target::parse(&args.url) else {
        anyhow::bail!("`tufkey audit export` reads the PostgreSQL store: give a postgres:// URL (a file log is already in this form)");
    };
    let (bytes, _, _) =
        audit::pg::export_blocking(&url)?.ok_or_else(|| audit::pg::no_tables(&url))?;
    match &args.output {
        Some(p) => tufkey::fsutil::write_atomic(p, &bytes)
            .with_context(|| format!("cannot write {}", p.display()))?,
        None => std::io::stdout()
            .write_all(&bytes)
            .context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs, ctx: &Ctx) -> Result<ExitCode> {
    let target = Target::parse(&args.log).ok_or_else(|| {
        anyhow::anyhow!("give the audit log to verify: a file or a postgres:// URL")
    })?;
    let name = match &target {
        Target::File(_) => args.log.clone(),
        Target::Postgres(_) => target.shown(),
    };
    let verdict: Result<Verified, AuditError> = match &target {
        Target::Postgres(url) => audit::pg::verify_blocking(url, false),
        Target::File(path) => {
            // The library treats a missing log as empty (a daemon's first start); here
            // it is a mistake in the path.
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
            audit::verify(path)
        }
    };
    let (ok, report) = match &verdict {
        Ok(v) => {
            // The noted head must be in the chain: the log's head, or (the daemon and
            // CLI commands kept appending since it was noted) an earlier entry's.
            let at = args.head.as_ref().map(|h| noted_at(v, h.trim()));
            let head_ok = at.is_none_or(|n| n.is_some());
            let later = match at {
                Some(Some(n)) if n < v.entries.len() => format!(
                    "; the noted head is entry {n}, the {} after it were appended since",
                    v.entries.len() - n
                ),
                _ => String::new(),
            };
            let msg = if head_ok {
                format!(
                    "{name}: {} entries, chain intact, head {}{later}",
                    v.entries.len(),
                    v.head
                )
            } else {
                format!(
                    "{name}: the chain is intact but the noted head {1} is not in it (its head is {0}): entries were removed from the end, or the log was replaced",
                    v.head,
                    args.head.as_deref().unwrap_or_default()
                )
            };
            (
                head_ok,
                json!({"file": name, "ok": head_ok, "entries": v.entries.len(), "head": v.head, "message": msg}),
            )
        }
        Err(AuditError::Broken { line, reason, .. }) => (
            false,
            json!({"file": name, "ok": false, "line": line, "message": format!("{name}, line {line}: {reason}")}),
        ),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    if ctx.json {
        print_json(&report);
    } else if ok {
        println!("{}", report["message"].as_str().unwrap_or_default());
    } else {
        eprintln!("{}", report["message"].as_str().unwrap_or_default());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_VERIFIED)
    })
}

/// Which entry's line hashes to `head` (1-based; 0 for the empty log's genesis), if any.
fn noted_at(v: &Verified, head: &str) -> Option<usize> {
    if v.head.eq_ignore_ascii_case(head) {
        return Some(v.entries.len());
    }
    // Entry n+1's `prev` is the hash of entry n.
    v.entries.iter().enumerate().find_map(|(i, e)| {
        e.get("prev")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|p| p.eq_ignore_ascii_case(head))
            .then_some(i)
    })
}
