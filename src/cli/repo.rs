//! `tufkey repo …`: build, commit, publish, refresh and monitor a TUF repository in a
//! folder. The work is in `tufkey::repo`; this file parses flags, shows progress and
//! results, and maps outcomes to exit codes a monitor can use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tufkey::repo::config::parse_duration;
use tufkey::repo::refresh::Refreshed;
use tufkey::repo::targets::{self, NewTarget};
use tufkey::repo::{self as lib, Progress};
use tufkey::tuf::fileinfo::{FileInfo, HashAlg};

use super::auditor::{shown_path, Audited};
use super::ctx::Ctx;
use super::output::{print_json, short};
use super::repo_common::{
    key_pairs, lift, lock, open, outcome_json, publishing, show_outcome, wait_arg, Bar, CommitArgs,
};

/// `repo refresh`: nothing was due, nothing was signed.
pub const EXIT_NOTHING_TO_DO: u8 = 4;
/// `repo status`: a role expires within `--expiring-within`.
pub const EXIT_EXPIRING: u8 = 5;
/// `repo status`: a role has expired.
pub const EXIT_EXPIRED: u8 = 6;
/// `repo status` lists every role by name up to this many; beyond, roles that are fine
/// are counted (hashed bins).
const STATUS_LISTED: usize = 40;

#[derive(Subcommand)]
#[command(
    after_help = "A repository folder holds metadata/ and targets/ (serve these two to clients), \
repo.toml (keys and lifetimes), staged/ (changes waiting for `commit`) and repo.lock.\n\
Walkthrough: docs/repository.md"
)]
pub enum RepoCmd {
    /// Start a repository from a root a ceremony finalized (and the roots before it).
    Init(InitArgs),
    /// Record targets (files, or artifacts stored elsewhere by hash) for the next commit.
    #[command(
        after_help = "Examples:\n  tufkey repo add repo dist/app-1.2.tar.gz --path app/1.2/app.tar.gz\n  \
tufkey repo add repo --path images/base.qcow2 --hash sha256:HEX --length 1048576\n  \
tufkey repo add repo --manifest artifacts.txt   # PATH LENGTH sha256:HEX lines"
    )]
    Add(AddArgs),
    /// Remove targets for the next commit (their files stay for clients mid-update).
    Remove(RemoveArgs),
    /// Stage a targets role for editing (e.g. with `tufkey delegation …`); prints its file.
    Edit(EditArgs),
    /// Stage a new root version (a finished rotation ceremony) for the next commit.
    Root(RootArgs),
    /// Sign what changed, build snapshot and timestamp, publish in client-safe order.
    #[command(
        after_help = "Keys come from --key ROLE=URI, else from [keys] in repo.toml. Every key is checked \
against its role (public half, no PIN) and the thresholds are counted before anything is signed.\n\
Example:\n  tufkey repo commit repo --key targets=yubikey:slot=9c \\\n    \
--key snapshot=https://signer:7443/keys/ID --key timestamp=https://signer:7443/keys/ID"
    )]
    Commit(CommitArgs),
    /// Re-sign timestamp (and snapshot) when due. Exit 0: signed; 4: nothing was due.
    #[command(
        after_help = "Run it from a timer well inside the timestamp's lifetime (hourly for the \
default 1-day timestamp). Exit codes: 0 signed, 4 nothing was due (systemd: SuccessExitStatus=4), \
1 error, including an expired snapshot or targets role, which refresh never papers over."
    )]
    Refresh(CommitArgs),
    /// Every role's version, expiry and signers. Exit 0 ok, 3 threshold not met, 5 expiring, 6 expired.
    Status(StatusArgs),
    /// Check a whole repository the way a client would: root chain, timestamp, snapshot,
    /// targets and delegated roles, target files, expiry. Exit 3 when it does not verify.
    Verify(super::repo_verify::VerifyArgs),
    /// Fetch one target as a TUF client would (trusted root, every check) and write it.
    Download(super::repo_download::DownloadArgs),
    /// Delegate the targets path space to N succinct hash bins (TAP 15), advise a bin
    /// count, or re-sign every bin.
    #[command(after_help = super::repo_bins::AFTER_HELP)]
    Bins(super::repo_bins::BinsArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The new repository's folder (created; must not hold a repository yet).
    dir: PathBuf,
    /// The root to start from (N.root.json from `ceremony finalize`/`ceremony run`).
    #[arg(long, value_name = "ROOT.json")]
    root: PathBuf,
    /// Earlier roots, so clients holding an older root can walk to the new one.
    #[arg(long = "root-chain", value_name = "N.root.json")]
    root_chain: Vec<PathBuf>,
    /// Keys to write into repo.toml, checked against the root (no PIN asked): ROLE=URI.
    #[arg(long = "key", value_name = "ROLE=URI")]
    keys: Vec<String>,
}

#[derive(Args)]
pub struct AddArgs {
    /// The repository folder.
    dir: PathBuf,
    /// Files to publish under targets/ (their names become the target paths).
    files: Vec<PathBuf>,
    /// The target path (for one FILE, or with --hash for an artifact stored elsewhere).
    #[arg(long, value_name = "NAME")]
    path: Option<String>,
    /// The targets role to record into (default: the delegated role whose paths match, else targets).
    #[arg(long)]
    role: Option<String>,
    /// Custom metadata for the target(s): a JSON object.
    #[arg(long, value_name = "JSON")]
    custom: Option<String>,
    /// Record SHA-512 too (and publish a SHA-512-prefixed copy when consistent).
    #[arg(long)]
    sha512: bool,
    /// A hash of an artifact stored elsewhere (sha256:HEX, optionally sha512:HEX too),
    /// or of FILE to check it against.
    #[arg(long = "hash", value_name = "ALG:HEX")]
    hashes: Vec<String>,
    /// The artifact's length in bytes (with --hash).
    #[arg(long)]
    length: Option<u64>,
    /// Targets stored elsewhere: a file with `PATH LENGTH sha256:HEX [sha512:HEX]` lines,
    /// or JSON in TUF's form {"PATH": {"length": N, "hashes": {...}, "custom": {...}}}.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Wait this long for another command holding the repository lock (e.g. 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = wait_arg)]
    wait: Duration,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// The repository folder.
    dir: PathBuf,
    /// Target paths to remove.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Only from this role.
    #[arg(long)]
    role: Option<String>,
    #[arg(long, default_value = "0s", value_parser = wait_arg)]
    wait: Duration,
}

#[derive(Args)]
pub struct EditArgs {
    /// The repository folder.
    dir: PathBuf,
    /// The targets role (`targets` or a delegated role).
    role: String,
}

#[derive(Args)]
pub struct RootArgs {
    /// The repository folder.
    dir: PathBuf,
    /// The new root (version N+1), signed by the old and new root thresholds.
    new_root: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The repository folder.
    dir: PathBuf,
    /// Exit 5 when a role expires within this (e.g. 12h, 30d). Default: timestamp and
    /// snapshot once past their refresh point (a refresh was missed), other roles 30d.
    #[arg(long, value_parser = window_arg, value_name = "DURATION")]
    expiring_within: Option<chrono::Duration>,
}

fn window_arg(s: &str) -> Result<chrono::Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration; write e.g. 12h, 30d"))
}

/// The commands that sign or change trust are audited.
pub fn audited(cmd: &RepoCmd) -> Option<Audited> {
    match cmd {
        RepoCmd::Commit(a) => Some(Audited::new("repo commit", Some(&a.dir))),
        RepoCmd::Refresh(a) => Some(Audited::new("repo refresh", Some(&a.dir))),
        RepoCmd::Root(a) => Some(Audited::new("repo root", Some(&a.dir))),
        RepoCmd::Bins(a) if !a.advise => Some(Audited::new("repo bins", Some(&a.dir))),
        _ => None,
    }
}

pub fn run(cmd: RepoCmd, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        RepoCmd::Init(a) => init(a, ctx),
        RepoCmd::Add(a) => add(a, ctx),
        RepoCmd::Remove(a) => remove(a, ctx),
        RepoCmd::Edit(a) => edit(a, ctx),
        RepoCmd::Root(a) => root(a, ctx),
        RepoCmd::Commit(a) => commit(a, ctx),
        RepoCmd::Refresh(a) => refresh(a, ctx),
        RepoCmd::Status(a) => status(a, ctx),
        RepoCmd::Verify(a) => super::repo_verify::run(a, ctx),
        RepoCmd::Download(a) => super::repo_download::run(a, ctx),
        RepoCmd::Bins(a) => super::repo_bins::run(a, ctx),
    }
}

fn init(a: InitArgs, ctx: &Ctx) -> Result<ExitCode> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, u) in key_pairs(&a.keys)? {
        keys.entry(r).or_default().push(u);
    }
    let done = lib::init::init(&a.dir, &a.root, &a.root_chain, &keys, &ctx.pins, Utc::now())
        .map_err(lift)?;
    if ctx.json {
        print_json(&json!({
            "dir": a.dir, "root_version": done.root_version,
            "consistent_snapshot": done.consistent_snapshot, "written": done.written,
        }));
    } else {
        println!(
            "started repository {} at root version {} (consistent snapshots {})",
            a.dir.display(),
            done.root_version,
            if done.consistent_snapshot {
                "on"
            } else {
                "off"
            }
        );
        for p in &done.written {
            println!("  wrote {}", p.display());
        }
        println!(
            "next: name keys in {}, add targets with `tufkey repo add`, then `tufkey repo commit {}`",
            a.dir.join("repo.toml").display(),
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The targets an `add` records: from FILEs (hashed, with --hash checked), from
/// --hash/--length alone, or from a manifest.
fn new_targets(a: &AddArgs, ctx: &Ctx) -> Result<Vec<NewTarget>> {
    let custom: Option<Value> = match &a.custom {
        Some(s) => {
            Some(serde_json::from_str(s).with_context(|| format!("--custom `{s}` is not JSON"))?)
        }
        None => None,
    };
    let given: Vec<(String, String)> = a
        .hashes
        .iter()
        .map(|h| targets::parse_hash("--hash", h))
        .collect::<Result<_, _>>()?;
    let mut algs = vec![HashAlg::Sha256];
    if a.sha512 || given.iter().any(|(n, _)| n == "sha512") {
        algs.push(HashAlg::Sha512);
    }
    let mut out = Vec::new();
    if let Some(m) = &a.manifest {
        if !a.files.is_empty() || !given.is_empty() || a.path.is_some() {
            bail!("--manifest {} lists its own targets; give FILEs, --path or --hash in another `repo add`", m.display());
        }
        out = targets::read_manifest(m)?;
        for t in &mut out {
            if t.custom.is_none() {
                t.custom.clone_from(&custom);
            }
        }
        return Ok(out);
    }
    if a.files.is_empty() {
        let path = a.path.clone().context("give FILEs to publish, or --path NAME with --hash sha256:HEX --length N for an artifact stored elsewhere, or --manifest FILE")?;
        let length = a
            .length
            .context("--hash needs --length N (the artifact's size in bytes)")?;
        if !given.iter().any(|(n, _)| n == "sha256") {
            bail!("target `{path}`: give --hash sha256:HEX (a SHA-256 is required)");
        }
        return Ok(vec![NewTarget {
            path,
            info: FileInfo {
                length,
                hashes: given,
            },
            custom,
            source: None,
        }]);
    }
    if a.files.len() > 1 && (a.path.is_some() || !given.is_empty()) {
        bail!(
            "--path and --hash describe one target; add the {} files one at a time",
            a.files.len()
        );
    }
    let bar = Bar::new(ctx, true);
    let mut total = 0;
    for f in &a.files {
        total += std::fs::metadata(f)
            .map_err(|source| lib::RepoError::File {
                path: f.clone(),
                source,
            })?
            .len();
    }
    bar.start("hashing", total);
    for f in &a.files {
        let info = targets::hash_file(f, &algs, &bar)?;
        let path = match &a.path {
            Some(p) => p.clone(),
            None => f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("{} has no file name; pass --path NAME", f.display()))?,
        };
        if !given.is_empty() {
            let want = FileInfo {
                length: a.length.unwrap_or(info.length),
                hashes: given.clone(),
            };
            targets::check_given(&format!("{} (target `{path}`)", f.display()), &want, &info)?;
        }
        out.push(NewTarget {
            path,
            info,
            custom: custom.clone(),
            source: Some(f.clone()),
        });
    }
    bar.finish();
    Ok(out)
}

fn add(a: AddArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let items = new_targets(&a, ctx)?;
    let _lock = lock(&repo, a.wait)?;
    let done = targets::add(&repo, &items, a.role.as_deref())?;
    if ctx.json {
        print_json(&json!({"dir": a.dir, "staged": done}));
    } else {
        for r in &done {
            println!(
                "{} {} ({} bytes) in role `{}`",
                if r.replaced { "replaced" } else { "added" },
                r.path,
                r.length,
                r.role
            );
        }
        println!(
            "staged; publish with `tufkey repo commit {}`",
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(a: RemoveArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let _lock = lock(&repo, a.wait)?;
    let done = targets::remove(&repo, &a.paths, a.role.as_deref())?;
    if ctx.json {
        print_json(&json!({"dir": a.dir, "removed": done}));
    } else {
        for r in &done {
            println!("removed {} from role `{}`", r.path, r.role);
        }
        println!(
            "staged; publish with `tufkey repo commit {}`",
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn edit(a: EditArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let _lock = lock(&repo, Duration::ZERO)?;
    let path = targets::stage_for_edit(&repo, &a.role)?;
    if ctx.json {
        print_json(&json!({"role": a.role, "staged": path}));
    } else {
        // The path alone on stdout, so `$(tufkey repo edit DIR targets)` works.
        println!("{}", path.display());
        eprintln!(
            "edit it (e.g. `tufkey delegation add {} --role NAME …`, no --key needed), then `tufkey repo commit {}`",
            path.display(),
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn root(a: RootArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let _lock = lock(&repo, Duration::ZERO)?;
    let v = lib::init::stage_root(&repo, &a.new_root, Utc::now())?;
    let mut ev = ctx.audit.event("repo root", "ok");
    ev.file = Some(shown_path(&a.new_root));
    ev.role = Some("root".into());
    ev.version = Some(v);
    ctx.audit.record(ev)?;
    if ctx.json {
        print_json(&json!({"dir": a.dir, "staged_root_version": v}));
    } else {
        println!(
            "root version {v} staged; `tufkey repo commit {}` publishes it and re-signs the roles whose keys changed",
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn commit(a: CommitArgs, ctx: &Ctx) -> Result<ExitCode> {
    let (done, written) = publishing(&a, ctx, "repo commit", false, lib::commit::commit)?;
    match done {
        None => {
            if ctx.json {
                print_json(&json!({"dir": a.dir, "committed": false}));
            } else {
                println!(
                    "nothing to commit in {}: no staged changes, every role verifies and snapshot and timestamp are not due",
                    a.dir.display()
                );
            }
        }
        Some(o) => {
            if ctx.json {
                let mut v = outcome_json(&o, &written);
                v["dir"] = json!(a.dir);
                v["committed"] = json!(true);
                print_json(&v);
            } else {
                println!("published {}:", a.dir.display());
                show_outcome(&o, &written);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn refresh(a: CommitArgs, ctx: &Ctx) -> Result<ExitCode> {
    let (done, written) = publishing(&a, ctx, "repo refresh", false, lib::refresh::refresh)?;
    match done {
        Refreshed::NothingToDo {
            timestamp_expires,
            next_due,
        } => {
            if ctx.json {
                print_json(
                    &json!({"dir": a.dir, "signed": false, "timestamp_expires": timestamp_expires, "next_due": next_due}),
                );
            } else {
                println!("nothing to do: timestamp expires {timestamp_expires}; the next refresh is due at {next_due}");
            }
            Ok(ExitCode::from(EXIT_NOTHING_TO_DO))
        }
        Refreshed::Signed(o) => {
            if ctx.json {
                let mut v = outcome_json(&o, &written);
                v["dir"] = json!(a.dir);
                v["signed"] = json!(true);
                print_json(&v);
            } else {
                println!("refreshed {}:", a.dir.display());
                show_outcome(&o, &written);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status(a: StatusArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let report = lib::status::status(&repo, Utc::now(), a.expiring_within)?;
    let code = if report.any_expired() {
        EXIT_EXPIRED
    } else if report.any_unverified() {
        super::ctx::EXIT_NOT_VERIFIED
    } else if report.any_expiring() {
        EXIT_EXPIRING
    } else {
        0
    };
    if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        v["dir"] = json!(a.dir);
        v["exit_code"] = json!(code);
        print_json(&v);
    } else {
        println!(
            "{} (consistent snapshots {})",
            a.dir.display(),
            if report.consistent_snapshot {
                "on"
            } else {
                "off"
            }
        );
        // Thousands of hash bins: the ones in trouble by name, the rest counted.
        let many = report.roles.len() > STATUS_LISTED;
        let mut quiet_ok = 0usize;
        for r in &report.roles {
            let fine = !r.expired && r.threshold_met && !r.expiring;
            if many && fine && !lib::config::is_top_level(&r.role) {
                quiet_ok += 1;
                continue;
            }
            let state = if r.expired {
                "EXPIRED"
            } else if !r.threshold_met {
                "NOT SIGNED"
            } else if r.expiring {
                "expiring"
            } else {
                "ok"
            };
            println!(
                "  {:<10} {:<10} version {:<4} expires {}  {} of {} signed: {}",
                state,
                r.role,
                r.version,
                r.expires,
                r.signed.len(),
                r.threshold,
                r.signed
                    .iter()
                    .map(|k| short(k))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if quiet_ok > 0 {
            println!("  ok         {quiet_ok} more targets role(s) verify and expire later (--json lists each)");
        }
        if report.unpublished {
            println!(
                "  nothing published yet: run `tufkey repo commit {}`",
                a.dir.display()
            );
        }
        if !report.staged.is_empty() {
            println!("  staged, not committed: {}", report.staged.join(", "));
        }
    }
    Ok(ExitCode::from(code))
}
