//! `tufkey delegation …`: edit the delegations of a targets (or delegated targets)
//! file, bump its version and re-sign it with the delegator's keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;
use tufkey::fsutil;
use tufkey::keys;
use tufkey::tuf::edit::{self, Holder};
use tufkey::tuf::time::{format_expires, parse_expiry_spec};
use tufkey::tuf::{Delegator, Key, Metadata};

use super::auditor::Audited;
use super::ctx::Ctx;
use super::output::{print_json, short};
use super::sign::{load, signature_event};

/// Every delegation command changes trust: audited, named as typed.
pub fn audited(cmd: &DelegationCmd) -> Audited {
    let (action, c) = match cmd {
        DelegationCmd::Add { common, .. } => ("delegation add", common),
        DelegationCmd::Remove { common } => ("delegation remove", common),
        DelegationCmd::AddKey { common, .. } => ("delegation add-key", common),
        DelegationCmd::RemoveKey { common, .. } => ("delegation remove-key", common),
        DelegationCmd::Threshold { common, .. } => ("delegation threshold", common),
        DelegationCmd::Rotate { common, .. } => ("delegation rotate", common),
    };
    Audited::new(action, Some(c.out.as_ref().unwrap_or(&c.file)))
}

#[derive(Subcommand)]
pub enum DelegationCmd {
    /// Delegate a new role to one or more keys.
    Add {
        #[command(flatten)]
        common: Common,
        /// A key of the new role: a key URI, or a file with a TUF public key (JSON). Repeat for several.
        #[arg(long = "delegate-key", required = true, value_name = "URI|FILE")]
        delegate_keys: Vec<String>,
        /// How many of the role's keys must sign it.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// Target path patterns the role is trusted for (e.g. 'team/*'). Repeat for several.
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// Stop the search at this role when it does not list a target.
        #[arg(long)]
        terminating: bool,
    },
    /// Remove a delegated role and the keys only it used.
    Remove {
        #[command(flatten)]
        common: Common,
    },
    /// Add a key to a delegated role.
    AddKey {
        #[command(flatten)]
        common: Common,
        #[arg(long = "delegate-key", value_name = "URI|FILE")]
        delegate_key: String,
    },
    /// Remove a key from a delegated role (by key id, URI or public key file).
    RemoveKey {
        #[command(flatten)]
        common: Common,
        #[arg(long = "delegate-key", value_name = "KEYID|URI|FILE")]
        delegate_key: String,
    },
    /// Set a delegated role's threshold.
    Threshold {
        #[command(flatten)]
        common: Common,
        threshold: u64,
    },
    /// Replace one key of a delegated role by another in one step (a lost key, a member leaving).
    Rotate {
        #[command(flatten)]
        common: Common,
        /// The key going out: key id, URI or public key file.
        #[arg(long, value_name = "KEYID|URI|FILE")]
        remove: String,
        /// The key coming in: URI or public key file.
        #[arg(long, value_name = "URI|FILE")]
        add: String,
    },
}

#[derive(Args)]
pub struct Common {
    /// The delegating targets file; it is edited, its version bumped and re-signed.
    file: PathBuf,
    /// The delegated role's name.
    #[arg(long)]
    role: String,
    /// A key of the delegating role to re-sign FILE with; repeat to meet its threshold.
    /// Without keys FILE is written unsigned, for `tufkey sign` elsewhere.
    #[arg(long = "key", value_name = "URI")]
    keys: Vec<String>,
    /// New expiry of FILE: a duration (90d, 12w, 1y) or a date; default: unchanged.
    #[arg(long)]
    expires: Option<String>,
    /// FILE's own delegator (root.json, or the parent targets file) to check the result against.
    #[arg(long, value_name = "FILE")]
    delegator: Option<PathBuf>,
    /// Write here instead of replacing FILE.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A public key from a key URI or a TUF public key file.
fn delegate_key(spec: &str, ctx: &Ctx) -> Result<Key> {
    let p = Path::new(spec);
    if p.is_file() && spec.ends_with(".json") {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p)?)
            .with_context(|| format!("{spec} is not JSON"))?;
        let k =
            Key::from_value(spec, &v).with_context(|| format!("{spec} is not a TUF public key"))?;
        k.public_key()
            .map_err(anyhow::Error::msg)
            .with_context(|| spec.to_string())?;
        return Ok(k);
    }
    Ok(keys::public_key(spec, &ctx.pins)
        .with_context(|| format!("reading the public key of {}", keys::uri::redact(spec)))?
        .to_tuf_key())
}

/// A key id, or the id of the key a URI or file names.
fn key_id_of(spec: &str, ctx: &Ctx) -> Result<String> {
    if spec.len() == 64 && spec.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(spec.to_ascii_lowercase());
    }
    Ok(delegate_key(spec, ctx)?.key_id())
}

/// An edit of the `signed` part of the delegating file.
type Change = Box<dyn FnOnce(&mut serde_json::Value) -> Result<(), tufkey::tuf::TufError>>;

pub fn run(cmd: DelegationCmd, ctx: &Ctx) -> Result<ExitCode> {
    let action = audited(&cmd).action;
    let (common, what, change): (Common, String, Change) = match cmd {
        DelegationCmd::Add {
            common,
            delegate_keys,
            threshold,
            paths,
            terminating,
        } => {
            let keys: Vec<Key> = delegate_keys
                .iter()
                .map(|k| delegate_key(k, ctx))
                .collect::<Result<_>>()?;
            let name = common.role.clone();
            let what = format!(
                "delegated `{name}` to {} key(s), threshold {threshold}, paths {}",
                keys.len(),
                paths.join(" ")
            );
            (
                common,
                what,
                Box::new(move |s| {
                    edit::add_delegation(s, &name, &keys, threshold, &paths, terminating)
                }),
            )
        }
        DelegationCmd::Remove { common } => {
            let name = common.role.clone();
            (
                common,
                format!("removed the delegation to `{name}`"),
                Box::new(move |s| edit::remove_delegation(s, &name)),
            )
        }
        DelegationCmd::AddKey {
            common,
            delegate_key: k,
        } => {
            let key = delegate_key(&k, ctx)?;
            let name = common.role.clone();
            let what = format!("added key {} to `{name}`", key.key_id());
            (
                common,
                what,
                Box::new(move |s| edit::add_key(s, Holder::Delegations, &name, &key).map(|_| ())),
            )
        }
        DelegationCmd::RemoveKey {
            common,
            delegate_key: k,
        } => {
            let id = key_id_of(&k, ctx)?;
            let name = common.role.clone();
            (
                common,
                format!("removed key {id} from `{name}`"),
                Box::new(move |s| edit::remove_key(s, Holder::Delegations, &name, &id)),
            )
        }
        DelegationCmd::Threshold { common, threshold } => {
            let name = common.role.clone();
            (
                common,
                format!("`{name}` now needs {threshold} signature(s)"),
                Box::new(move |s| edit::set_threshold(s, Holder::Delegations, &name, threshold)),
            )
        }
        DelegationCmd::Rotate {
            common,
            remove,
            add,
        } => {
            let out_id = key_id_of(&remove, ctx)?;
            let key = delegate_key(&add, ctx)?;
            let name = common.role.clone();
            let what = format!(
                "rotated `{name}`: key {out_id} out, key {} in",
                key.key_id()
            );
            (
                common,
                what,
                Box::new(move |s| {
                    edit::add_key(s, Holder::Delegations, &name, &key)?;
                    edit::remove_key(s, Holder::Delegations, &name, &out_id)
                }),
            )
        }
    };
    apply(common, &action, &what, change, ctx)
}

fn apply(c: Common, action: &str, what: &str, change: Change, ctx: &Ctx) -> Result<ExitCode> {
    let mut md = load(&c.file)?;
    if md.role_type() != "targets" {
        bail!(
            "{} is a {} file; delegations live in targets files",
            c.file.display(),
            md.role_type()
        );
    }
    let version = md
        .version()
        .with_context(|| format!("{}: no version", c.file.display()))?;
    let expires = match &c.expires {
        Some(e) => Some(format_expires(
            parse_expiry_spec(e, Utc::now())
                .with_context(|| format!("`{e}` is neither a duration nor a date"))?,
        )),
        None => None,
    };
    md.edit(|s| {
        change(s)?;
        edit::set_version(s, version + 1)?;
        if let Some(e) = &expires {
            edit::set_expires(s, e)?;
        }
        Ok(())
    })
    .with_context(|| format!("editing {}", c.file.display()))?;
    // Check the result is a usable delegator before anything is signed or written.
    Delegator::from_metadata(&md)
        .with_context(|| format!("the edited {} would not be valid", c.file.display()))?;
    let payload = md.payload();
    let mut signed_by = Vec::new();
    let mut uris = Vec::new();
    for uri in &c.keys {
        let signer = keys::open_signer(uri, &ctx.pins)?;
        let sig = keys::sign_checked(signer.as_ref(), &payload)
            .with_context(|| format!("signing with {}", signer.uri()))?;
        signed_by.push(sig.keyid.clone());
        uris.push(signer.uri().to_string());
        md.set_signature(sig);
    }
    let verdict = match &c.delegator {
        Some(d) => Some(check(&md, &c.file, d)?),
        None => None,
    };
    let out = c.out.as_ref().unwrap_or(&c.file);
    // Audit first (one entry per signature, or one for an unsigned edit): nothing is
    // written unless its entries committed.
    let detail = format!("{what} (delegated role `{}`)", c.role);
    if signed_by.is_empty() {
        let mut ev = ctx.audit.event(action, "ok");
        ev.file = Some(super::auditor::shown_path(out));
        ev.role = Some(md.role_type().to_string());
        ev.version = md.version();
        ev.payload_sha256 = Some(md.payload_sha256());
        ev.detail = Some(detail);
        ctx.audit.record(ev)?;
    } else {
        for (keyid, uri) in signed_by.iter().zip(&uris) {
            let mut ev = signature_event(ctx, action, "signed", &md, out, keyid, Some(uri));
            ev.detail = Some(detail.clone());
            ctx.audit.record(ev)?;
        }
    }
    fsutil::write_atomic(out, &md.to_pretty_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    if ctx.json {
        print_json(
            &json!({"file": out, "done": what, "version": version + 1, "signed_by": signed_by, "threshold_met": verdict}),
        );
    } else {
        println!("{what}");
        println!(
            "{} is now version {}, signed by {} key(s){}",
            out.display(),
            version + 1,
            signed_by.len(),
            if signed_by.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    signed_by
                        .iter()
                        .map(|k| short(k))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        );
        match verdict {
            Some(true) => println!("its delegator's threshold is met"),
            Some(false) => println!("note: its delegator's threshold is NOT met yet; collect more signatures with `tufkey sign`"),
            None if signed_by.is_empty() => println!("note: unsigned; sign it with `tufkey sign {} --key <URI>`", out.display()),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `md` (written as `file`) meets its delegator's threshold. A root delegates
/// `targets`; a targets file delegates the role named in `file` (`N.<role>.json`).
fn check(md: &Metadata, file: &Path, delegator_path: &Path) -> Result<bool> {
    let d = load(delegator_path)?;
    let d = Delegator::from_metadata(&d)
        .with_context(|| format!("{} cannot be used as a delegator", delegator_path.display()))?;
    let role = if d.kind == "root" {
        "targets".to_string()
    } else {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        match stem.split_once('.') {
            Some((v, rest)) if v.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
            _ => stem.to_string(),
        }
    };
    let r = d
        .verify_role(&role, md)
        .with_context(|| format!("{} does not delegate `{role}`", delegator_path.display()))?;
    Ok(r.verified())
}
