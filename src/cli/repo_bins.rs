//! `tufkey repo bins`: succinct hashed bins (TAP 15). Three modes: `--count N --key URI`
//! stages the delegation (existing targets move into their bins; `repo commit` signs and
//! publishes), `--advise` prints a bin count for the repository's size and why, and
//! `--resign` re-signs every bin (an expiry bump, a new bin key) in parallel over the
//! key's sessions, then snapshot and timestamp.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use tufkey::repo::bins::{self, BinsRequest};
use tufkey::repo::bins_advise::{self, human_bytes};

use super::auditor::shown_path;
use super::ctx::Ctx;
use super::output::{print_json, short};
use super::repo_common::{
    key_pairs, lock, open, outcome_json, publishing, show_outcome, wait_arg, CommitArgs,
};

/// `repo bins --help`, after the flags.
pub const AFTER_HELP: &str = "\
Examples:
  tufkey repo bins repo --advise                         # how many bins, and why
  tufkey repo bins repo --count 1024 --key pkcs11:token=bins;object=bins
  tufkey repo commit repo                                # signs targets, every bin, snapshot, timestamp
  tufkey repo bins repo --resign                         # re-sign every bin (expiry bump, new key)

Bins are roles PREFIX-<hex> (bins-000 … bins-3ff for 1,024); a target goes to the bin picked by the
first bits of the SHA-256 of its path, as python-tuf's SuccinctRoles does. `repo add` files targets
into their bins and `repo commit` re-signs only the bins that changed. The bins' keys are kept in
repo.toml under [keys] as \"PREFIX\" = [...]; their lifetime under [expiry] PREFIX (else `delegated`).
--resign signs over several sessions of a PKCS#11 token at once (TUFKEY_PKCS11_THREADS, default the
CPU count, at least 2). See docs/repository.md, \"Hashed bins\".";

#[derive(clap::Args)]
pub struct BinsArgs {
    /// The repository folder.
    pub dir: PathBuf,
    /// How many bins: a power of two from 2 to 65,536 (see --advise).
    #[arg(long, value_name = "N", conflicts_with_all = ["advise", "resign"])]
    count: Option<u64>,
    /// With --count: a key URI for the bins (repeat for several keys). With --resign:
    /// ROLE=URI as for `repo commit` (e.g. bins=URI, snapshot=URI, timestamp=URI).
    #[arg(long = "key", value_name = "URI")]
    keys: Vec<String>,
    /// With --count: how many of the bins' keys must sign each bin.
    #[arg(long, default_value_t = 1, requires = "count")]
    threshold: u64,
    /// With --count: the bins' role name prefix (roles PREFIX-000 …).
    #[arg(long, default_value = bins::DEFAULT_PREFIX, requires = "count")]
    prefix: String,
    /// Print a recommended bin count for this repository's size and why (no change).
    #[arg(long, conflicts_with = "resign")]
    pub advise: bool,
    /// Re-sign every bin with a new version and expiry, then snapshot and timestamp.
    #[arg(long)]
    pub resign: bool,
    /// Wait this long for another command holding the repository lock (e.g. 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = wait_arg)]
    wait: Duration,
}

pub fn run(a: BinsArgs, ctx: &Ctx) -> Result<ExitCode> {
    if a.advise {
        return advise(&a, ctx);
    }
    if a.resign {
        return resign(a, ctx);
    }
    match a.count {
        Some(count) => create(&a, count, ctx),
        None => bail!(
            "repo bins {}: give --count N --key URI to delegate targets to N hash bins, --advise for a count, or --resign to re-sign every bin",
            a.dir.display()
        ),
    }
}

fn create(a: &BinsArgs, count: u64, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let _held = lock(&repo, a.wait)?;
    let done = bins::create(
        &repo,
        &BinsRequest {
            count,
            uris: &a.keys,
            threshold: a.threshold,
            prefix: &a.prefix,
            pins: &ctx.pins,
        },
    )
    .map_err(super::repo_common::lift)?;
    let mut ev = ctx.audit.event("repo bins", "staged");
    ev.file = Some(shown_path(&a.dir));
    ev.role = Some("targets".into());
    ctx.audit.record(ev)?;
    if ctx.json {
        print_json(&json!({"dir": a.dir, "staged": done}));
    } else {
        println!(
            "staged {} hash bins `{}` … `{}` (succinct_roles, bit_length {}) delegated from targets",
            done.count, done.first, done.last, done.bit_length
        );
        println!(
            "  keys {} (threshold {})",
            done.keyids
                .iter()
                .map(|k| short(k))
                .collect::<Vec<_>>()
                .join(" "),
            done.threshold
        );
        println!(
            "  moved {} target(s) from targets into {} bin(s)",
            done.moved, done.filled
        );
        if done.config_updated {
            println!(
                "  repo.toml: [keys] \"{}\" names the bins' key(s)",
                done.prefix
            );
        }
        println!(
            "publish with `tufkey repo commit {}` (signs targets, all {} bins, snapshot and timestamp)",
            a.dir.display(),
            done.count
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn advise(a: &BinsArgs, ctx: &Ctx) -> Result<ExitCode> {
    let repo = open(&a.dir)?;
    let advice = bins_advise::advise(&repo, &a.prefix)?;
    if ctx.json {
        let mut v = serde_json::to_value(&advice)?;
        v["dir"] = json!(a.dir);
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "recommended: {} bins for {} targets{}",
        advice.recommended,
        advice.targets,
        match advice.current {
            Some(c) => format!(" (the repository has {c})"),
            None => String::new(),
        }
    );
    println!("  {}", advice.why);
    println!(
        "  {:>7}  {:>10}  {:>10}  {:>12}  {:>14}",
        "bins", "snapshot", "one bin", "per update", "re-sign all"
    );
    for c in &advice.choices {
        println!(
            "  {:>7}  {:>10}  {:>10}  {:>12}  {:>14}{}",
            c.bins,
            human_bytes(c.snapshot_bytes),
            human_bytes(c.bin_bytes),
            human_bytes(c.per_update_bytes),
            format!("{} roles", c.resign_all),
            if c.bins == advice.recommended {
                "  <-"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn resign(a: BinsArgs, ctx: &Ctx) -> Result<ExitCode> {
    key_pairs(&a.keys)?;
    let c = CommitArgs {
        dir: a.dir.clone(),
        keys: a.keys.clone(),
        wait: a.wait,
    };
    let (done, written) = publishing(&c, ctx, "repo bins", true, |repo, held, opts, hooks| {
        let docs = tufkey::repo::targets::working_docs(repo)?;
        if bins::current(&docs).is_none() {
            return Err(tufkey::repo::RepoError::Other(format!(
                "{}: top-level targets has no hash bins to re-sign; create them with `tufkey repo bins {} --count N --key URI`",
                repo.layout.dir.display(),
                repo.layout.dir.display()
            )));
        }
        tufkey::repo::commit::commit(repo, held, opts, hooks)
    })?;
    let Some(o) = done else {
        bail!("repo bins --resign {}: nothing was signed", a.dir.display());
    };
    if ctx.json {
        let mut v = outcome_json(&o, &written);
        v["dir"] = json!(a.dir);
        v["resigned"] = json!(true);
        print_json(&v);
    } else {
        println!("re-signed every bin of {}:", a.dir.display());
        let bins = o.roles.len().saturating_sub(2);
        println!("  {bins} targets role(s) re-signed, then snapshot and timestamp");
        show_outcome(&o, &written);
    }
    Ok(ExitCode::SUCCESS)
}
