//! `tufkey notary …`: leaving Notary v1 — its keys into hardware, its trust data checked,
//! its targets carried into a TUF 1.0 repository (runbook: docs/notary.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use serde_json::json;
use tufkey::ceremony::default_actor;
use tufkey::keys::{self, KeySource, Secret};
use tufkey::notary::migrate::{migrate, MigrateOptions};
use tufkey::notary::{store, verify};
use tufkey::tuf::time::{format_expires, parse_expiry_spec, parse_user_time};

use super::auditor::{shown_path, Audited};
use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::{confirm, print_json, short};

/// Where the Notary passphrase may come from besides the prompt.
pub const PASSPHRASE_ENV: &str = "TUFKEY_NOTARY_PASSPHRASE";

#[derive(Subcommand)]
pub enum NotaryCmd {
    /// List the keys in a Notary key store: role, GUN, key id (Notary's and TUF's), algorithm, format.
    ///
    /// DIR is Notary's trust folder (~/.docker/trust, ~/.notary) or its private/ folder.
    /// Role and GUN come from the files themselves; the key ids and algorithm need the
    /// passphrase, unless --no-decrypt: TUFKEY_NOTARY_PASSPHRASE_ROOT, _TARGETS,
    /// _SNAPSHOT, _DELEGATION (Notary's kinds), then TUFKEY_NOTARY_PASSPHRASE, then a
    /// hidden prompt once per kind.
    ///
    /// Examples:
    ///   tufkey notary keys ~/.docker/trust
    ///   TUFKEY_NOTARY_PASSPHRASE=… tufkey notary keys ~/.notary --json
    #[command(verbatim_doc_comment)]
    Keys {
        dir: PathBuf,
        /// Do not ask for the passphrase: list what the file names and headers say.
        #[arg(long)]
        no_decrypt: bool,
    },
    /// Move one Notary private key into a PKCS#11 token (non-extractable) or a YubiKey slot (P-256).
    ///
    /// KEYID is the Notary key id (the file name; 8 or more leading digits are enough).
    /// The key is decrypted in memory with the Notary passphrase (TUFKEY_NOTARY_PASSPHRASE
    /// or a hidden prompt), written to the device, and the TUF key and key id printed.
    /// The source file is left as it was unless --delete-source is given (asked first).
    ///
    /// Examples:
    ///   tufkey notary import-key ~/.docker/trust 1a2b3c4d 'pkcs11:token=root-a;object=notary-root?module-path=/usr/lib/softhsm/libsofthsm2.so'
    ///   tufkey notary import-key ~/.docker/trust 5e6f7a8b yubikey:slot=9c
    #[command(verbatim_doc_comment)]
    ImportKey {
        dir: PathBuf,
        keyid: String,
        /// Where the key goes: pkcs11:…;object=<label> or yubikey:[serial=N;]slot=9c.
        uri: String,
        /// Delete the Notary key file after a successful import (asks first).
        #[arg(long)]
        delete_source: bool,
        /// Answer the --delete-source confirmation with yes.
        #[arg(long, requires = "delete_source")]
        yes: bool,
    },
    /// Check a Notary trust repository with Notary's rules (exit 0 verified, 3 not).
    ///
    /// Checks root (root certificates: CN = GUN, leaf, no SHA-1, valid; pinned
    /// certificates in trusted_certificates/<gun>/ when present), then targets, snapshot,
    /// timestamp and delegations: signature thresholds, snapshot/timestamp hashes and
    /// lengths, expiry. Like Notary's client, expired metadata or root certificates fail;
    /// --at checks the data as of another time (e.g. archived trust data).
    ///
    /// Examples:
    ///   tufkey notary verify ~/.docker/trust --gun docker.io/library/app
    ///   tufkey notary verify old-trust/ --at 2019-01-01
    #[command(verbatim_doc_comment)]
    Verify {
        dir: PathBuf,
        /// The GUN to check (optional when DIR holds trust data for one GUN only).
        #[arg(long)]
        gun: Option<String>,
        /// Check as of this time (RFC 3339 or a date) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Start a TUF 1.0 repository from a Notary one: a root ceremony with Notary's keys and
    /// manifests of the same targets (see docs/notary.md for the whole migration).
    ///
    /// Writes OUT/ceremony (continue with `tufkey ceremony add-key/sign/finalize`),
    /// OUT/targets.json (for `tufkey repo add REPO --manifest`), OUT/delegated/*.json
    /// and OUT/migration.json. The trust data must verify first (see `notary verify`).
    ///
    /// Example:
    ///   tufkey notary migrate ~/.docker/trust --gun docker.io/library/app --out migration/
    #[command(verbatim_doc_comment)]
    Migrate {
        dir: PathBuf,
        #[arg(long)]
        gun: Option<String>,
        /// A new or empty folder for the ceremony and manifests.
        #[arg(long)]
        out: PathBuf,
        /// Check the Notary trust data as of this time instead of now.
        #[arg(long)]
        at: Option<String>,
        /// When the new root expires: a duration (365d, 52w, 1y) or a date.
        #[arg(long, default_value = "365d")]
        expires: String,
        /// Start the ceremony with empty roles instead of Notary's keys.
        #[arg(long)]
        without_keys: bool,
    },
}

/// import-key changes key material and migrate starts a ceremony: both are audited.
pub fn audited(cmd: &NotaryCmd) -> Option<Audited> {
    match cmd {
        NotaryCmd::ImportKey { dir, .. } => Some(Audited::new("notary import-key", Some(dir))),
        NotaryCmd::Migrate { out, .. } => Some(Audited::new("notary migrate", Some(out))),
        NotaryCmd::Keys { .. } | NotaryCmd::Verify { .. } => None,
    }
}

pub fn run(cmd: NotaryCmd, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        NotaryCmd::Keys { dir, no_decrypt } => list(&dir, no_decrypt, ctx),
        NotaryCmd::ImportKey {
            dir,
            keyid,
            uri,
            delete_source,
            yes,
        } => import(&dir, &keyid, &uri, delete_source, yes, ctx),
        NotaryCmd::Verify { dir, gun, at } => check(&dir, gun.as_deref(), at.as_deref(), ctx),
        NotaryCmd::Migrate {
            dir,
            gun,
            out,
            at,
            expires,
            without_keys,
        } => start_migration(
            &dir,
            gun.as_deref(),
            &out,
            at.as_deref(),
            &expires,
            without_keys,
            ctx,
        ),
    }
}

/// The Notary passphrase: TUFKEY_NOTARY_PASSPHRASE, else a hidden prompt when allowed.
/// Notary asked for one passphrase per kind of key (its NOTARY_ROOT_PASSPHRASE,
/// NOTARY_TARGETS_PASSPHRASE, … variables): the kind a role's passphrase belongs to.
fn passphrase_kind(role: Option<&str>) -> &'static str {
    match role {
        Some("root") => "root",
        Some("targets") => "targets",
        Some("snapshot") => "snapshot",
        Some("timestamp") => "timestamp",
        Some(_) => "delegation",
        None => "unknown-role",
    }
}

/// The Notary passphrase for keys of `role`: TUFKEY_NOTARY_PASSPHRASE_<KIND> (ROOT,
/// TARGETS, SNAPSHOT, TIMESTAMP, DELEGATION), then TUFKEY_NOTARY_PASSPHRASE, then a
/// hidden prompt (once per kind, remembered in `asked` for this command) when allowed.
fn passphrase(
    role: Option<&str>,
    what: &str,
    ctx: &Ctx,
    asked: &mut BTreeMap<&'static str, Secret>,
) -> Result<Option<Secret>> {
    let kind = passphrase_kind(role);
    let specific = format!("{PASSPHRASE_ENV}_{}", kind.replace('-', "_").to_uppercase());
    for var in [specific.as_str(), PASSPHRASE_ENV] {
        if let Ok(p) = std::env::var(var) {
            return Ok(Some(Secret::new(p)));
        }
    }
    if let Some(p) = asked.get(kind) {
        return Ok(Some(p.clone()));
    }
    if !ctx.pins.interactive {
        return Ok(None);
    }
    let p = Secret::new(
        dialoguer::Password::new()
            .with_prompt(format!("Notary passphrase for {kind} keys ({what})"))
            .allow_empty_password(true)
            .interact()
            .context("reading the passphrase")?,
    );
    asked.insert(kind, p.clone());
    Ok(Some(p))
}

/// Decrypts a listed key: with the passphrase the environment gives for its kind, or one
/// typed for its kind already; else one typed for another kind if it opens this key too
/// (Notary users often share one passphrase); else a new prompt.
fn open_listed(
    k: &store::StoredKey,
    dir: &Path,
    ctx: &Ctx,
    asked: &mut BTreeMap<&'static str, Secret>,
) -> Result<Result<store::Opened, tufkey::notary::NotaryError>> {
    if !k.is_encrypted() {
        return Ok(store::open(k, None));
    }
    let role = k.role.as_ref().map(|r| r.0.as_str());
    let kind = passphrase_kind(role);
    let from_env = std::env::var_os(PASSPHRASE_ENV).is_some()
        || std::env::var_os(format!(
            "{PASSPHRASE_ENV}_{}",
            kind.replace('-', "_").to_uppercase()
        ))
        .is_some();
    if !from_env && !asked.contains_key(kind) {
        let others: Vec<Secret> = asked.values().cloned().collect();
        for p in others {
            if let Ok(o) = store::open(k, Some(&p)) {
                asked.insert(kind, p);
                return Ok(Ok(o));
            }
        }
    }
    let pass = passphrase(role, &dir.display().to_string(), ctx, asked)?;
    Ok(store::open(k, pass.as_ref()))
}

fn at_time(at: Option<&str>) -> Result<chrono::DateTime<Utc>> {
    match at {
        None => Ok(Utc::now()),
        Some(s) => parse_user_time(s).with_context(|| {
            format!("--at {s:?} is not a time (use RFC 3339, e.g. 2019-01-01T00:00:00Z, or a date)")
        }),
    }
}

fn list(dir: &Path, no_decrypt: bool, ctx: &Ctx) -> Result<ExitCode> {
    let stored = store::list(dir)?;
    let mut asked = BTreeMap::new();
    let mut rows = Vec::new();
    for k in &stored {
        let opened = if no_decrypt {
            None
        } else {
            Some(open_listed(k, dir, ctx, &mut asked)?)
        };
        let (notary_id, tuf_id, algorithm, problem) = match &opened {
            Some(Ok(o)) => (
                Some(o.notary_id.clone()),
                Some(o.tuf_id.clone()),
                Some(o.key.public().algorithm()),
                None,
            ),
            Some(Err(e)) => (None, None, None, Some(e.to_string())),
            None => (None, None, None, k.block.as_ref().err().cloned()),
        };
        rows.push(json!({
            "file": k.path.display().to_string(),
            "role": k.role.as_ref().map(|r| &r.0),
            "role_from": k.role.as_ref().map(|r| r.1),
            "gun": k.gun.as_ref().map(|g| &g.0),
            "gun_from": k.gun.as_ref().map(|g| g.1),
            "file_keyid": k.file_id,
            "notary_keyid": notary_id,
            "tuf_keyid": tuf_id,
            "algorithm": algorithm,
            "format": k.format(),
            "layout": k.layout,
            "problem": problem,
        }));
    }
    if ctx.json {
        print_json(&json!({"dir": dir.display().to_string(), "keys": rows}));
    } else if rows.is_empty() {
        println!("no Notary key files (*.key) under {}", dir.display());
    } else {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
        println!(
            "{:<10} {:<36} {:<12} {:<12} {:<11} FORMAT",
            "ROLE", "GUN", "NOTARY ID", "TUF ID", "ALGORITHM"
        );
        for r in &rows {
            let nid = r["notary_keyid"]
                .as_str()
                .or(r["file_keyid"].as_str())
                .unwrap_or("-");
            println!(
                "{:<10} {:<36} {:<12} {:<12} {:<11} {}",
                s(&r["role"]),
                s(&r["gun"]),
                short(nid),
                short(r["tuf_keyid"].as_str().unwrap_or("-")),
                s(&r["algorithm"]),
                s(&r["format"]),
            );
            println!("    {}", s(&r["file"]));
            if let Some(p) = r["problem"].as_str() {
                println!("    problem: {p}");
            }
        }
    }
    let failed = rows.iter().any(|r| !r["problem"].is_null());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn import(
    dir: &Path,
    keyid: &str,
    uri: &str,
    delete_source: bool,
    yes: bool,
    ctx: &Ctx,
) -> Result<ExitCode> {
    let dest = KeySource::parse(uri)?;
    let stored = store::find(dir, keyid)?;
    // Asked before anything happens, so a missing terminal stops the command first.
    let delete_now = delete_source
        && confirm(
            &format!(
                "After importing, delete {}? The key then exists only in the device",
                stored.path.display()
            ),
            yes,
        )?;
    let role = stored.role.as_ref().map(|r| r.0.as_str());
    let pass = if stored.is_encrypted() {
        passphrase(
            role,
            &stored.path.display().to_string(),
            ctx,
            &mut BTreeMap::new(),
        )?
    } else {
        None
    };
    let opened = store::open(&stored, pass.as_ref())
        .with_context(|| format!("nothing was written to {}", dest.uri()))?;
    drop(pass);
    let new = dest.import(&opened.key, &ctx.pins).with_context(|| {
        format!(
            "importing Notary key {} ({}) into {}",
            opened.notary_id,
            stored.path.display(),
            dest.uri()
        )
    })?;
    let tuf_key = new.public.to_tuf_key();
    if tuf_key.key_id() != opened.tuf_id {
        bail!(
            "{} now holds a key with TUF key id {}, but the Notary key has {}; do not use it, and check the device",
            new.uri,
            tuf_key.key_id(),
            opened.tuf_id
        );
    }
    let role = stored.role.as_ref().map(|r| r.0.clone());
    let gun = stored.gun.as_ref().map(|g| g.0.clone());
    let mut ev = ctx.audit.event("notary import-key", "ok");
    ev.key_uri = Some(keys::uri::redact(&new.uri));
    ev.key_id = Some(opened.tuf_id.clone());
    ev.file = Some(shown_path(&stored.path));
    ev.role = role.clone();
    ev.detail = Some(format!(
        "Notary key {} ({} of {}) {} {}",
        opened.notary_id,
        role.as_deref().unwrap_or("unknown role"),
        gun.as_deref().unwrap_or("no GUN"),
        new.made,
        new.public.algorithm()
    ));
    ctx.audit.record(ev).with_context(|| {
        format!(
            "the key was imported into {}, but it is not in the audit log",
            new.uri
        )
    })?;
    let mut deleted = false;
    if delete_now {
        std::fs::remove_file(&stored.path).with_context(|| {
            format!(
                "the key was imported into {}, but {} could not be deleted",
                new.uri,
                stored.path.display()
            )
        })?;
        deleted = true;
    } else if delete_source && !ctx.json {
        println!("{} was kept", stored.path.display());
    }
    if ctx.json {
        print_json(&json!({
            "uri": new.uri,
            "keyid": opened.tuf_id,
            "notary_keyid": opened.notary_id,
            "role": role,
            "gun": gun,
            "type": new.public.algorithm(),
            "key": tuf_key.to_value(),
            "source_deleted": deleted,
        }));
    } else {
        println!(
            "{} {} key (Notary {} key {})",
            new.made,
            new.public.algorithm(),
            role.as_deref().unwrap_or("?"),
            short(&opened.notary_id)
        );
        println!("  uri:    {}", new.uri);
        println!("  key id: {}", opened.tuf_id);
        println!(
            "  key:    {}",
            serde_json::to_string(&tuf_key.to_value()).unwrap_or_default()
        );
        if deleted {
            println!("  deleted {}", stored.path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(dir: &Path, gun: Option<&str>, at: Option<&str>, ctx: &Ctx) -> Result<ExitCode> {
    let when = at_time(at)?;
    let report = verify::verify(dir, gun, when)?;
    if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        v["verified"] = json!(report.verified());
        print_json(&v);
    } else {
        println!(
            "Notary trust data for {} (checked at {})",
            report.gun, report.at
        );
        for r in &report.roles {
            println!(
                "  {:<4} {:<20} version {:<4} expires {:<36} {}/{} signature(s)",
                if r.ok { "ok" } else { "FAIL" },
                r.role,
                r.version,
                r.expires,
                r.signed_by.len(),
                r.threshold
            );
        }
        println!("  {} target(s)", report.targets.len());
        for w in &report.warnings {
            println!("  warning: {w}");
        }
        for p in &report.problems {
            println!("  problem: {p}");
        }
        println!(
            "{}",
            if report.verified() {
                "verified"
            } else {
                "does NOT verify"
            }
        );
    }
    Ok(if report.verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_VERIFIED)
    })
}

fn start_migration(
    dir: &Path,
    gun: Option<&str>,
    out: &Path,
    at: Option<&str>,
    expires: &str,
    without_keys: bool,
    ctx: &Ctx,
) -> Result<ExitCode> {
    let when = at_time(at)?;
    let root_expires = parse_expiry_spec(expires, Utc::now())
        .map(format_expires)
        .with_context(|| {
            format!("--expires {expires:?}: give a duration (365d, 52w, 1y) or a date")
        })?;
    let actor = ctx.actor.clone().unwrap_or_else(default_actor);
    let m = migrate(&MigrateOptions {
        dir,
        gun,
        out,
        at: when,
        root_expires: &root_expires,
        keep_keys: !without_keys,
        actor: &actor,
    })?;
    let mut ev = ctx.audit.event("notary migrate", "ok");
    ev.file = Some(shown_path(out));
    ev.repository = Some(m.gun.clone());
    ev.detail = Some(format!(
        "{} target(s), {} key(s) carried into {}",
        m.targets,
        m.keys.len(),
        m.ceremony.display()
    ));
    ctx.audit.record(ev).with_context(|| {
        format!(
            "{} was written, but it is not in the audit log",
            out.display()
        )
    })?;
    if ctx.json {
        print_json(&serde_json::to_value(&m)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "migrated {} ({} target(s)) into {}",
        m.gun,
        m.targets,
        out.display()
    );
    println!(
        "  ceremony: {} (root version 1, expires {root_expires})",
        m.ceremony.display()
    );
    for k in &m.keys {
        println!(
            "    {:<9} Notary {} (key file {}) -> TUF key id {}",
            k.role,
            short(&k.notary_id),
            short(&k.key_file_id),
            k.tuf_id
        );
    }
    for (role, p) in &m.manifests {
        println!("  manifest for {role}: {}", p.display());
    }
    println!("  record: {}", m.record.display());
    for n in &m.notes {
        println!("  note: {n}");
    }
    println!("next (docs/notary.md):");
    println!(
        "  1. tufkey notary import-key {} KEYID URI   for each key above",
        dir.display()
    );
    println!(
        "  2. tufkey ceremony add-key {} --role timestamp --key URI",
        m.ceremony.display()
    );
    println!(
        "  3. tufkey ceremony sign {} --key URI; tufkey ceremony finalize {} --out roots/",
        m.ceremony.display(),
        m.ceremony.display()
    );
    println!(
        "  4. tufkey repo init REPO --root roots/1.root.json; tufkey repo add REPO --manifest {}",
        out.join("targets.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
