//! `tufkey repo download`: one target fetched from a repository folder the way a TUF
//! client fetches it, and written only once every check passed. Trust comes from
//! `repo verify`'s walk (the root chain from the trusted root, timestamp, snapshot,
//! targets and delegations); the client's search order is the report's
//! `find_target`; the file is checked against the length and every hash its role
//! states. Exit 0 downloaded, 3 something does not verify, 1 unreadable input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use serde_json::{json, Value};
use tufkey::repo::verify::{
    safe_target_path, target_file_names, verify_repository, Found, Problem, Report, Stated,
    VerifyOptions, MAX_DELEGATIONS,
};
use tufkey::tuf::time::parse_user_time;

use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::print_json;

#[derive(Args)]
#[command(after_help = "\
What a client does, on a repository folder (as `tuftool download` or python-tuf's ngclient):
  trust starts from the trusted root and walks N+1.root.json while it exists; then
  timestamp, the snapshot it states, targets; then the target is searched in the clients'
  order (pre-order depth first through delegations whose paths, path_hash_prefixes or
  hash bin match it; a terminating delegation ends the search below it; at most 32
  delegated roles) and taken from the first role that lists it. The file
  (targets/HASH.NAME when consistent_snapshot) must have that role's length and every
  hash it states. Only then is --out written, atomically; on any refusal it is left as
  it was.

Every metadata file is checked, not only those on the target's path: download refuses a
repository that `tufkey repo verify --no-targets` refuses.

Exit status: 0 downloaded, 3 the metadata or the target file does not verify, 1 the
input cannot be read (no repository, no trusted root, a target path no role lists or
with `..`, a missing file, --out not writable).

Examples:
  tufkey repo download ./repo app/1.2/app.tar.gz --out app.tar.gz
  tufkey repo download ./repo app/1.2/app.tar.gz --out app.tar.gz --trusted-root shipped-root.json
  tufkey repo download ./repo hello.txt --out hello.txt --at 2025-02-09T12:02:08Z --json")]
pub struct DownloadArgs {
    /// The repository folder as clients fetch it: metadata/ and targets/.
    dir: PathBuf,
    /// The target path as roles list it (e.g. app/1.2/app.tar.gz).
    target: String,
    /// Where to write the target once it verifies (replaced atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The root the client already trusts (default: DIR/metadata/1.root.json). Give the
    /// root your clients ship with to get exactly what they would.
    #[arg(long, value_name = "ROOT.json")]
    trusted_root: Option<PathBuf>,
    /// Check expiry at this time instead of now (RFC 3339, e.g. 2025-02-09T12:02:08Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

pub fn run(args: DownloadArgs, ctx: &Ctx) -> Result<ExitCode> {
    safe_target_path(&args.target).map_err(|e| {
        anyhow::anyhow!(
            "target path `{}`: {e}; give the path as the targets role lists it",
            args.target
        )
    })?;
    let at = match &args.at {
        Some(s) => parse_user_time(s)
            .with_context(|| format!("--at `{s}` is not a time; use e.g. 2025-02-09T12:02:08Z"))?,
        None => Utc::now(),
    };
    let options = VerifyOptions {
        trusted_root: args.trusted_root.clone(),
        at,
        // Only the requested file is read: the others are not this client's business.
        check_targets: false,
        progress: None,
    };
    let report = verify_repository(&args.dir, &options)
        .with_context(|| format!("cannot download from {}", args.dir.display()))?;
    if !report.verified() {
        return Ok(refuse(&args, ctx, &report.problems));
    }
    let found = find(&report, &args)?;
    let stated = match Stated::from_info(&found.info, true) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("target `{}`: {e}", found.path);
            return Ok(refuse_one(&args, ctx, &found.role_file, message));
        }
    };
    let (file, bytes) = read_target(&args.dir, &found, &stated, report.consistent_snapshot)?;
    let problems = stated.check_bytes(&bytes, &found.role_file);
    if !problems.is_empty() {
        let problems: Vec<Problem> = problems
            .into_iter()
            .map(|message| Problem {
                file: file.clone(),
                message: format!("target `{}`: {message}", found.path),
            })
            .collect();
        return Ok(refuse(&args, ctx, &problems));
    }
    tufkey::fsutil::write_atomic(&args.out, &bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if ctx.json {
        print_json(&json!({
            "path": found.path,
            "role": found.role,
            "length": bytes.len(),
            "hashes": stated.hashes,
            "out": args.out,
        }));
    } else {
        println!(
            "downloaded {} ({} bytes, listed by {} in {}; length and {} checked) to {}",
            found.path,
            bytes.len(),
            found.role,
            found.role_file,
            stated.hashes.keys().cloned().collect::<Vec<_>>().join(", "),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The role a client takes the target from, or why no client would find it.
fn find(report: &Report, args: &DownloadArgs) -> Result<Found> {
    report.find_target(&args.target).or_else(|miss| {
        let cut = if miss.gave_up {
            format!(" (the search stops after {MAX_DELEGATIONS} delegated roles, as clients' does)")
        } else {
            String::new()
        };
        bail!(
            "target `{}` is not listed by any role a client searches for it in {} (searched: {}){cut}; check the path with `tufkey repo status {}` or add it with `tufkey repo add`",
            args.target,
            args.dir.display(),
            miss.searched.join(", "),
            args.dir.display()
        )
    })
}

/// Reads the target's file under `targets/`, the first of its names that exists (a
/// client names it by one hash; a repository publishes one copy per hash), never more
/// than one byte past the stated length.
fn read_target(
    dir: &Path,
    found: &Found,
    stated: &Stated,
    consistent: bool,
) -> Result<(String, Vec<u8>)> {
    let names = target_file_names(&found.path, stated, consistent);
    let Some(name) = names.iter().find(|n| dir.join("targets").join(n).is_file()) else {
        bail!(
            "target `{}` is listed by {} but its file is not in {}/targets (looked for {}); the artifact may be stored elsewhere",
            found.path,
            found.role_file,
            dir.display(),
            names.join(", ")
        );
    };
    let file = format!("targets/{name}");
    let path = dir.join("targets").join(name);
    let limit = stated.length.unwrap_or(0).saturating_add(1);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((file, bytes))
}

fn refuse_one(args: &DownloadArgs, ctx: &Ctx, file: &str, message: String) -> ExitCode {
    refuse(
        args,
        ctx,
        &[Problem {
            file: file.to_owned(),
            message,
        }],
    )
}

/// Reports why nothing was written and returns exit 3; `--out` is untouched.
fn refuse(args: &DownloadArgs, ctx: &Ctx, problems: &[Problem]) -> ExitCode {
    if ctx.json {
        let v: Value = json!({
            "path": args.target,
            "downloaded": false,
            "problems": problems,
        });
        print_json(&v);
    }
    eprintln!(
        "refusing to download `{}` from {}: it does not verify ({} not written):",
        args.target,
        args.dir.display(),
        args.out.display()
    );
    for p in problems {
        eprintln!("  {}: {}", p.file, p.message);
    }
    eprintln!(
        "run `tufkey repo verify {}` for the whole report",
        args.dir.display()
    );
    ExitCode::from(EXIT_NOT_VERIFIED)
}
