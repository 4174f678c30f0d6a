//! `tufkey verify [--root TRUSTED] 2.root.json 3.root.json …`: a chain of roots, as a
//! client walks it (tuf::chain), with one line per version and the final root's expiry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tufkey::tuf::chain::{self, ChainRoot, Step, Threshold};
use tufkey::tuf::time::parse_expires;

use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::print_json;
use super::sign::load_envelope;

/// Checks the chain: `trusted` (or else the first file) is trusted and checked against
/// its own keys; every later file is one step.
pub fn run(
    files: &[PathBuf],
    trusted: Option<&Path>,
    at: DateTime<Utc>,
    ctx: &Ctx,
) -> Result<ExitCode> {
    let paths: Vec<&Path> = trusted
        .into_iter()
        .chain(files.iter().map(PathBuf::as_path))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let roots = read_all(&paths, threads)?;
    let steps = chain::steps(&roots, threads);

    let first = &roots[0];
    let own = first
        .keys
        .verify_signatures("root", first.env.payload(), first.env.signatures())
        .with_context(|| format!("{} cannot be used as a root", paths[0].display()))?;
    let mut problems = Vec::new();
    if !own.verified() {
        problems.push(format!(
            "{}: the trusted root is not signed by a threshold of its own root keys ({} of {})",
            paths[0].display(),
            own.counted(),
            own.threshold
        ));
    }
    for (step, path) in steps.iter().zip(&paths[1..]) {
        problems.extend(step_problems(step, path));
    }
    let last = roots.last().map(|r| &r.env).unwrap_or(&first.env);
    let expires = last.expires().unwrap_or_default();
    let expired = parse_expires(&expires).map_or(true, |e| e <= at);
    if expired {
        problems.push(format!(
            "the newest root ({}) expired at {expires} (checked at {}; use --at to check an earlier time)",
            paths[paths.len() - 1].display(),
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    let ok = problems.is_empty();
    if ctx.json {
        let steps_json: Vec<_> = steps
            .iter()
            .zip(&paths[1..])
            .map(|(s, p)| {
                json!({
                    "file": p, "version": s.version, "expected_version": s.expected, "verified": s.ok(),
                    "by_previous": threshold_json(&s.by_previous), "by_itself": threshold_json(&s.by_itself),
                })
            })
            .collect();
        print_json(&json!({
            "trusted": paths[0], "trusted_version": first.env.version(),
            "trusted_self_signed": own.verified(), "steps": steps_json,
            "final_version": last.version(), "expires": expires, "expired": expired,
            "checked_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "verified": ok, "problems": problems,
        }));
    } else {
        println!(
            "{}: trusted root version {}, {} of threshold {} of its own keys",
            paths[0].display(),
            first.env.version().unwrap_or(0),
            own.counted(),
            own.threshold
        );
        for (s, p) in steps.iter().zip(&paths[1..]) {
            println!(
                "  {} {} v{}: {} of {} by the previous root's keys, {} of {} by its own",
                if s.ok() { "ok  " } else { "FAIL" },
                p.display(),
                s.version.map_or("?".into(), |v| v.to_string()),
                s.by_previous.counted.len(),
                s.by_previous.threshold,
                s.by_itself.counted.len(),
                s.by_itself.threshold
            );
        }
        println!(
            "newest root: version {}, expires {expires}",
            last.version().unwrap_or(0)
        );
        super::output::print_verdict(ok, &problems);
    }
    Ok(super::output::verdict_code(ok, EXIT_NOT_VERIFIED))
}

/// Reads and parses every root, in parallel; the first file that cannot be read or
/// is not a usable root stops the command, named.
fn read_all(paths: &[&Path], threads: usize) -> Result<Vec<ChainRoot>> {
    let chunk = paths.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<ChainRoot>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|p| read_root(p)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut roots = Vec::with_capacity(paths.len());
    for part in parts {
        roots.extend(part?);
    }
    Ok(roots)
}

fn read_root(path: &Path) -> Result<ChainRoot> {
    let env = load_envelope(path)?;
    if env.role_type() != "root" {
        anyhow::bail!(
            "{} is a {} file; every file of a chain must be a root",
            path.display(),
            env.role_type()
        );
    }
    if let Some(e) = env.expires() {
        parse_expires(&e).with_context(|| format!("{} cannot be loaded", path.display()))?;
    }
    let keys = env
        .delegator()
        .with_context(|| format!("{} cannot be used as a root", path.display()))?;
    Ok(ChainRoot { env, keys })
}

fn step_problems(s: &Step, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if s.version != Some(s.expected) {
        out.push(format!(
            "{}: version {} does not follow the previous root: a root update must be exactly version {}",
            path.display(),
            s.version.map_or("(none)".into(), |v| v.to_string()),
            s.expected
        ));
    }
    for (t, whose) in [
        (&s.by_previous, "the previous root's"),
        (&s.by_itself, "its own"),
    ] {
        if !t.met() {
            let invalid: Vec<String> = t
                .invalid
                .iter()
                .map(|i| format!("{} ({})", i.keyid, i.reason))
                .collect();
            out.push(format!(
                "{}: threshold not met for {whose} root keys: {} of {} valid signatures by distinct keys{}",
                path.display(),
                t.counted.len(),
                t.threshold,
                if invalid.is_empty() { String::new() } else { format!("; invalid: {}", invalid.join(", ")) }
            ));
        }
    }
    out
}

fn threshold_json(t: &Threshold) -> serde_json::Value {
    json!({"threshold": t.threshold, "counted": t.counted, "met": t.met(), "invalid": t.invalid})
}
