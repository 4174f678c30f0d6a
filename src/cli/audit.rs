//! `tufkey audit verify`: check an audit log's hash chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use tufkey::audit::{self, AuditError};

use super::output::print_json;
use super::{Ctx, EXIT_NOT_VERIFIED};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check that no entry of an audit log was edited, removed or reordered.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit log (JSON lines, as `tufkey serve` writes it).
    log: PathBuf,
    /// The head hash noted earlier (from /healthz or the daemon's stop message): also
    /// proves that no trailing entry was removed since.
    #[arg(long, value_name = "SHA256")]
    head: Option<String>,
}

pub fn run(cmd: AuditCmd, ctx: &Ctx) -> Result<ExitCode> {
    let AuditCmd::Verify(args) = cmd;
    // The library treats a missing log as empty (a daemon's first start); here it is a
    // mistake in the path.
    std::fs::metadata(&args.log).with_context(|| format!("cannot read {}", args.log.display()))?;
    let verdict = audit::verify(&args.log);
    let (ok, report) = match &verdict {
        Ok(v) => {
            let head_ok = args
                .head
                .as_ref()
                .is_none_or(|h| v.head.eq_ignore_ascii_case(h.trim()));
            let msg = if head_ok {
                format!(
                    "{}: {} entries, chain intact, head {}",
                    args.log.display(),
                    v.entries.len(),
                    v.head
                )
            } else {
                format!(
                    "{}: the chain is intact but its head {} is not the expected {}: entries were removed from the end, or the log was replaced",
                    args.log.display(),
                    v.head,
                    args.head.as_deref().unwrap_or_default()
                )
            };
            (
                head_ok,
                json!({"file": args.log, "ok": head_ok, "entries": v.entries.len(), "head": v.head, "message": msg}),
            )
        }
        Err(AuditError::Broken { line, reason, .. }) => (
            false,
            json!({"file": args.log, "ok": false, "line": line, "message": format!("{}, line {line}: {reason}", args.log.display())}),
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
