//! `tufkey verify`: a role's threshold against its delegator, the root update rule
//! for a new root, and expiry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde_json::json;
use tufkey::tuf::time::{parse_expires, parse_user_time};
use tufkey::tuf::{Delegator, Envelope, RoleVerification, TufError};

use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::{print_json, short};
use super::sign::load_envelope;
use super::verify_chain;

#[derive(Args)]
pub struct VerifyArgs {
    /// The metadata file to check. Several root files (`2.root.json 3.root.json …`) are
    /// checked as a chain, the way a client updates its root: each must be exactly one
    /// version above the one before it and signed by a threshold of that root's keys and
    /// of its own. The chain starts from --root (the trusted root), or else from the
    /// first file. Exit 0: verified; 3: a step, a threshold or the newest root's expiry
    /// fails; 1: a file cannot be read or is not a root.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The delegator: the trusted root.json for root, targets, snapshot and timestamp;
    /// the delegating targets file for a delegated role. For a root FILE, give the
    /// previous root to check the update rule (N+1 signed by a threshold of N and of
    /// itself); leave it out to check the root against its own keys.
    #[arg(long, visible_alias = "delegator", value_name = "FILE")]
    root: Option<PathBuf>,
    /// The role to check FILE as (default: its _type, or for a delegated role the name
    /// in its file name, e.g. 5.registry.npmjs.org.json).
    #[arg(long)]
    role: Option<String>,
    /// Check expiry at this time instead of now (RFC 3339, e.g. 2025-02-09T12:02:08Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

struct Check {
    label: String,
    result: RoleVerification,
}

pub fn run(args: VerifyArgs, ctx: &Ctx) -> Result<ExitCode> {
    // Arguments first: a usage error never waits for a large file to be read.
    let at: DateTime<Utc> = match &args.at {
        Some(s) => parse_user_time(s)
            .with_context(|| format!("--at `{s}` is not a time; use e.g. 2025-02-09T12:02:08Z"))?,
        None => Utc::now(),
    };
    if args.files.len() > 1 {
        if args.role.is_some() {
            return Ok(usage(
                "--role applies to one file; several files are checked as a chain of roots",
            ));
        }
        return verify_chain::run(&args.files, args.root.as_deref(), at, ctx);
    }
    let file = &args.files[0];
    if args.root.is_none() {
        if let Some(role) = top_level_role_by_name(file) {
            return Ok(usage(&format!(
                "{} is named as the {role} role's file: pass --root <root.json> to check it against the root's {role} keys",
                file.display()
            )));
        }
    }
    let md = load_envelope(file)?;
    let expires_str = md
        .expires()
        .with_context(|| format!("{}: `expires` is missing", file.display()))?;
    let expires = parse_expires(&expires_str)
        .with_context(|| format!("{} cannot be loaded", file.display()))?;
    let version = md
        .version()
        .with_context(|| format!("{}: `version` must be a positive integer", file.display()))?;

    let delegator_md = match &args.root {
        Some(p) => {
            let d = load_envelope(p)?;
            if let Some(e) = d.expires() {
                parse_expires(&e).with_context(|| format!("{} cannot be loaded", p.display()))?;
            }
            Some(d)
        }
        None => None,
    };
    let mut checks: Vec<Check> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();

    match (&delegator_md, md.role_type()) {
        (None, "root") => {
            let own = delegator(&md, file)?;
            warnings.extend(keyid_warnings(&own, file));
            checks.push(Check { label: format!("root keys of {} itself", name(file)), result: check(&own, "root", &md)? });
        }
        (None, other) => bail!(
            "{} is a {other} file: pass --root <root.json> (top-level roles) or --delegator <targets.json> (delegated roles)",
            file.display()
        ),
        (Some(dmd), "root") if dmd.role_type() == "root" && dmd.version() != Some(version) => {
            let root_path = args.root.as_deref().unwrap_or(Path::new(""));
            let trusted = delegator(dmd, root_path)?;
            let own = delegator(&md, file)?;
            warnings.extend(keyid_warnings(&own, file));
            let trusted_version = dmd.version().unwrap_or(0);
            if version != trusted_version + 1 {
                problems.push(format!(
                    "version {version} does not follow the trusted root's version {trusted_version}: a root update must be exactly version {}",
                    trusted_version + 1
                ));
            }
            checks.push(Check {
                label: format!("root keys of the trusted {} (v{trusted_version})", name(root_path)),
                result: check(&trusted, "root", &md)?,
            });
            checks.push(Check { label: format!("root keys of {} itself (v{version})", name(file)), result: check(&own, "root", &md)? });
        }
        (Some(dmd), _) => {
            let root_path = args.root.as_deref().unwrap_or(Path::new(""));
            let d = delegator(dmd, root_path)?;
            warnings.extend(keyid_warnings(&d, root_path));
            let role = match &args.role {
                Some(r) => r.clone(),
                None => infer_role(&md, &d, file)?,
            };
            let result = check(&d, &role, &md).with_context(|| {
                format!(
                    "{} does not delegate `{role}` (it delegates: {}); pass --role",
                    root_path.display(),
                    d.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            if d.kind == "root" && md.role_type() != role && ["root", "targets", "snapshot", "timestamp"].contains(&role.as_str()) {
                problems.push(format!("the file's _type is {} but it is checked as role {role}", md.role_type()));
            }
            checks.push(Check { label: format!("{role} keys of {}", name(root_path)), result });
        }
    }

    let expired = expires <= at;
    if expired {
        problems.push(format!(
            "expired at {expires_str} (checked at {}; use --at to check an earlier time)",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    for c in &checks {
        let same_key = c.result.same_key_notes();
        if !c.result.verified() {
            problems.push(format!(
                "threshold not met for {}: {} of {} valid signatures by distinct keys",
                c.label,
                c.result.counted(),
                c.result.threshold
            ));
            problems.extend(same_key);
        } else {
            warnings.extend(same_key);
        }
    }
    let ok = problems.is_empty();

    if ctx.json {
        let checks_json: Vec<_> = checks
            .iter()
            .map(|c| {
                json!({
                    "against": c.label, "role": c.result.role, "threshold": c.result.threshold,
                    "verified": c.result.verified(), "signed": c.result.signed, "missing": c.result.missing,
                    "invalid": c.result.invalid, "unrelated": c.result.unrelated,
                    "counted": c.result.counted(), "same_key": c.result.same_key,
                })
            })
            .collect();
        print_json(&json!({
            "file": file, "type": md.role_type(), "version": version, "expires": expires_str,
            "checked_at": at.to_rfc3339_opts(SecondsFormat::Secs, true), "expired": expired,
            "verified": ok, "checks": checks_json, "problems": problems, "warnings": warnings,
            "payload_sha256": md.payload_sha256(),
        }));
    } else {
        println!(
            "{}: {} version {version}, expires {expires_str}",
            file.display(),
            md.role_type()
        );
        for c in &checks {
            let r = &c.result;
            println!(
                "  {} {}: {} of threshold {}",
                if r.verified() { "ok  " } else { "FAIL" },
                c.label,
                r.counted(),
                r.threshold
            );
            for k in &r.signed {
                println!("      signed    {k}");
            }
            for k in &r.missing {
                println!("      missing   {k}");
            }
            for i in &r.invalid {
                println!("      invalid   {}  ({})", i.keyid, i.reason);
            }
            if !r.unrelated.is_empty() {
                println!(
                    "      ignored   {} signature(s) by keys outside this role: {}",
                    r.unrelated.len(),
                    r.unrelated
                        .iter()
                        .map(|k| short(k))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        for w in &warnings {
            println!("  warning: {w}");
        }
        super::output::print_verdict(ok, &problems);
    }
    Ok(super::output::verdict_code(ok, EXIT_NOT_VERIFIED))
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn delegator(md: &Envelope, path: &Path) -> Result<Delegator> {
    md.delegator()
        .with_context(|| format!("{} cannot be used as a delegator", path.display()))
}

fn check(d: &Delegator, role: &str, md: &Envelope) -> Result<RoleVerification, TufError> {
    d.verify_signatures(role, md.payload(), md.signatures())
}

/// Exit status of a usage error, as clap's.
const EXIT_USAGE: u8 = 2;

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// `targets`, `snapshot` or `timestamp` when the file's name says it is that role's file
/// (`targets.json`, `7.snapshot.json`): such a file needs --root, which is known
/// without reading it.
fn top_level_role_by_name(file: &Path) -> Option<&'static str> {
    let stem = name(file);
    let stem = stem.strip_suffix(".json")?;
    let stem = match stem.split_once('.') {
        Some((v, rest)) if v.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => stem,
    };
    ["targets", "snapshot", "timestamp"]
        .into_iter()
        .find(|r| *r == stem)
}

fn keyid_warnings(d: &Delegator, path: &Path) -> Vec<String> {
    d.keyid_mismatches()
        .into_iter()
        .map(|(listed, computed)| {
            format!("{}: key listed as {listed} hashes to {computed} (python-tuf does not check this either)", name(path))
        })
        .collect()
}

/// The role a file is checked as: its `_type` against a root, or the name in
/// `N.<name>.json` / `<name>.json` against a targets delegator.
fn infer_role(md: &Envelope, d: &Delegator, file: &Path) -> Result<String> {
    if d.kind == "root" {
        return Ok(md.role_type().to_string());
    }
    let stem = name(file);
    let stem = stem.strip_suffix(".json").unwrap_or(&stem);
    let stem = match stem.split_once('.') {
        Some((v, rest)) if v.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => stem,
    };
    if d.roles.contains_key(stem) {
        return Ok(stem.to_string());
    }
    bail!(
        "cannot tell which delegated role {} is; pass --role (delegated roles: {})",
        file.display(),
        d.roles.keys().cloned().collect::<Vec<_>>().join(", ")
    )
}
