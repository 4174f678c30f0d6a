//! `tufkey repo verify`: a whole repository checked as a client would check it, with
//! every problem listed by file. Exit 0 verified, 3 does not verify, 1 unreadable input.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Args;
use tufkey::repo::verify::{verify_repository, Report, VerifyOptions};
use tufkey::tuf::time::parse_user_time;

use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::{print_json, short};

#[derive(Args)]
#[command(after_help = "\
What is checked, the way a TUF client (python-tuf's ngclient, tough) updates:
  the root chain from the trusted root: N+1.root.json while it exists, each signed by a
  threshold of the previous root's keys and of its own, versions one apart; the last root
  not expired; timestamp.json; the snapshot it states (version, length, hashes); targets
  and every delegated role reachable through delegations (versions, lengths and hashes
  that snapshot states, thresholds of the delegating role's keys, paths and
  path_hash_prefixes); every target file present under targets/ (hash-prefixed names when
  consistent_snapshot) against its length and hashes; the expiry of every role.

A threshold counts distinct public keys: one key listed under two key ids counts once.
Target files that are listed but absent are counted, not failed (artifacts can be stored
elsewhere).

Exit status: 0 verified, 3 the repository does not verify, 1 it cannot be read
(no metadata/ folder, no trusted root).

Examples:
  tufkey repo verify ./repo
  tufkey repo verify ./repo --trusted-root root-shipped-with-clients.json
  tufkey repo verify ./repo --at 2025-02-09T12:02:08Z --json")]
pub struct VerifyArgs {
    /// The repository folder as clients fetch it: metadata/ and targets/.
    dir: PathBuf,
    /// The root clients already trust (default: DIR/metadata/1.root.json). Give the root
    /// your clients ship with to check exactly what they will accept.
    #[arg(long, value_name = "ROOT.json")]
    trusted_root: Option<PathBuf>,
    /// Check expiry at this time instead of now (RFC 3339, e.g. 2025-02-09T12:02:08Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Do not read target files; check metadata only.
    #[arg(long)]
    no_targets: bool,
}

pub fn run(args: VerifyArgs, ctx: &Ctx) -> Result<ExitCode> {
    let at = match &args.at {
        Some(s) => parse_user_time(s)
            .with_context(|| format!("--at `{s}` is not a time; use e.g. 2025-02-09T12:02:08Z"))?,
        None => Utc::now(),
    };
    let bar = progress_bar(ctx);
    let options = VerifyOptions {
        trusted_root: args.trusted_root.clone(),
        at,
        check_targets: !args.no_targets,
        progress: bar.clone().map(|b| {
            Arc::new(move |done: u64, total: u64| {
                b.set_length(total);
                b.set_position(done);
            }) as tufkey::repo::verify::Progress
        }),
    };
    let report = verify_repository(&args.dir, &options);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report.with_context(|| format!("cannot verify {}", args.dir.display()))?;
    if ctx.json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["verified"] = serde_json::Value::Bool(report.verified());
        print_json(&v);
    } else {
        print_human(&report);
    }
    Ok(if report.verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_VERIFIED)
    })
}

/// A byte-count bar on stderr while target files are hashed; none without a terminal
/// or with --json.
fn progress_bar(ctx: &Ctx) -> Option<indicatif::ProgressBar> {
    if ctx.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "hashing target files {bar:30} {bytes}/{total_bytes} ({eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

fn print_human(r: &Report) {
    println!(
        "{}: checked at {} from trusted root {} (v{})",
        r.dir,
        r.checked_at,
        r.trusted_root,
        r.trusted_root_version.unwrap_or(0)
    );
    for role in &r.roles {
        let signed: Vec<&str> = role.signed_by.iter().map(|k| short(k)).collect();
        println!(
            "  {} {:<12} v{:<4} expires {}  signed by {} of {} ({}) per {}  {}",
            if role.ok { "ok  " } else { "FAIL" },
            role.role,
            role.version.unwrap_or(0),
            role.expires.as_deref().unwrap_or("?"),
            signed.len(),
            role.threshold.unwrap_or(0),
            signed.join(" "),
            role.delegator,
            role.file
        );
    }
    let t = &r.targets;
    if t.checked_files {
        println!(
            "  targets: {} listed, {} files verified, {} not present under targets/",
            t.listed,
            t.verified,
            t.absent.len()
        );
    } else {
        println!(
            "  targets: {} listed, files not checked (--no-targets)",
            t.listed
        );
    }
    for n in &r.notes {
        println!("  note: {}: {}", n.file, n.message);
    }
    if r.verified() {
        println!("VERIFIED");
    } else {
        for p in &r.problems {
            println!("  problem: {}: {}", p.file, p.message);
        }
        println!("NOT VERIFIED ({} problem(s))", r.problems.len());
    }
}
