//! `tufkey ceremony …`: offline root signing ceremonies and root rotation.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;
use tufkey::ceremony::{
    default_actor, review::spaced, AttestationRecord, Ceremony, Provenance, Status,
};
use tufkey::keys::{self, KeySource};
use tufkey::tuf::time::{format_expires, parse_expiry_spec};
use tufkey::tuf::Key;

use super::auditor::{is_audit_failure, shown_path, Audited};
use super::ctx::{Ctx, EXIT_NOT_VERIFIED};
use super::output::{confirm, print_json, short};

/// The ceremony commands that sign or change the proposed root (or write it out) are
/// audited; review, status and verify only read.
pub fn audited(cmd: &CeremonyCmd) -> Option<Audited> {
    let (action, dir) = match cmd {
        CeremonyCmd::Init { dir, .. } => ("ceremony init", dir),
        CeremonyCmd::AddKey(a) => ("ceremony add-key", &a.dir),
        CeremonyCmd::RemoveKey { dir, .. } => ("ceremony remove-key", dir),
        CeremonyCmd::Threshold { dir, .. } => ("ceremony threshold", dir),
        CeremonyCmd::Expires { dir, .. } => ("ceremony expires", dir),
        CeremonyCmd::Sign { dir, .. } => ("ceremony sign", dir),
        CeremonyCmd::Merge { dir, .. } => ("ceremony merge", dir),
        CeremonyCmd::Finalize { dir, .. } => ("ceremony finalize", dir),
        CeremonyCmd::Run { dir, .. } => ("ceremony run", dir),
        CeremonyCmd::Review { .. } | CeremonyCmd::Status { .. } | CeremonyCmd::Verify { .. } => {
            return None
        }
    };
    Some(Audited::new(action, Some(dir)))
}

/// What an audit entry of a ceremony change says beyond the ceremony itself.
#[derive(Default)]
struct Change<'a> {
    role: Option<&'a str>,
    key_id: Option<&'a str>,
    key_uri: Option<&'a str>,
}

/// Records a change just made to the ceremony in `dir` (result `ok`). If the entry
/// cannot be written the command fails, saying the change itself was made.
fn audit_change(
    ctx: &Ctx,
    action: &str,
    dir: &Path,
    c: &Ceremony,
    detail: &str,
    x: Change,
) -> Result<()> {
    let mut ev = ctx.audit.event(action, "ok");
    ev.file = Some(shown_path(dir));
    ev.role = x.role.map(str::to_string);
    ev.version = c.proposed.version();
    ev.key_id = x.key_id.map(str::to_string);
    ev.key_uri = x.key_uri.map(keys::uri::redact);
    ev.payload_sha256 = Some(c.proposed.payload_sha256());
    ev.detail = Some(detail.to_string());
    ctx.audit.record(ev).map(|_| ()).with_context(|| {
        format!(
            "`tufkey {action}` changed {} (\"{detail}\"), but the change is not in the audit log",
            dir.display()
        )
    })
}

#[derive(Subcommand)]
pub enum CeremonyCmd {
    /// Start a ceremony in DIR: root version 1, or with --trusted the next version of an existing root.
    Init {
        dir: PathBuf,
        /// The current trusted root.json (for a rotation to version N+1).
        #[arg(long)]
        trusted: Option<PathBuf>,
        /// When the new root expires: a duration (365d, 52w, 1y) or a date (2027-06-30).
        #[arg(long, default_value = "365d")]
        expires: String,
        /// Accept only keys with a valid device attestation (YubiKey PIV).
        #[arg(long)]
        require_attestation: bool,
    },
    /// Add a public key, read from its device, to a role of the new root.
    AddKey(KeyArgs),
    /// Remove a key from a role (by --keyid or --key URI).
    RemoveKey {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long, conflicts_with = "key", required_unless_present = "key")]
        keyid: Option<String>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Set how many of a role's keys must sign.
    Threshold {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        threshold: u64,
    },
    /// Set when the new root expires: a duration (365d, 52w, 1y) or a date.
    Expires {
        dir: PathBuf,
        /// Only `root`: the other roles' expiry is in their own metadata.
        #[arg(long, default_value = "root")]
        role: String,
        when: String,
    },
    /// Show exactly what signing would approve, and the payload hash to compare aloud.
    Review { dir: PathBuf },
    /// Review, confirm, and sign the new root with one key.
    Sign {
        dir: PathBuf,
        #[arg(long)]
        key: String,
        /// Do not ask for confirmation (scripted use).
        #[arg(long)]
        yes: bool,
    },
    /// Thresholds met so far, who signed, who is missing, and whether it can be finalized.
    Status { dir: PathBuf },
    /// Take the valid signatures from a copy of this ceremony signed elsewhere.
    Merge { dir: PathBuf, other: PathBuf },
    /// Verify everything and write OUT/N.root.json and OUT/root.json.
    Finalize {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Also trust this attestation root CA (PEM) when re-checking recorded attestations.
        #[arg(long, value_name = "PEM", env = "TUFKEY_ATTESTATION_CA")]
        attestation_ca: Option<PathBuf>,
    },
    /// Re-check every signature and the transcript.
    Verify {
        dir: PathBuf,
        /// The transcript head noted earlier (status and finalize print it); any later
        /// change to the transcript, the last entry included, is then detected.
        #[arg(long, value_name = "SHA256")]
        expect_head: Option<String>,
        /// Also trust this attestation root CA (PEM) when re-checking attestations.
        #[arg(long, value_name = "PEM", env = "TUFKEY_ATTESTATION_CA")]
        attestation_ca: Option<PathBuf>,
    },
    /// Walk keyholders through signing, one token after another.
    Run {
        dir: PathBuf,
        /// Keys to sign with, in order (asked for when not given).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Finalize into this folder when the thresholds are met.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not ask for confirmations or wait for tokens to be inserted.
        #[arg(long)]
        yes: bool,
        /// Also trust this attestation root CA (PEM) when re-checking recorded attestations.
        #[arg(long, value_name = "PEM", env = "TUFKEY_ATTESTATION_CA")]
        attestation_ca: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct KeyArgs {
    dir: PathBuf,
    /// root, targets, snapshot or timestamp.
    #[arg(long)]
    role: String,
    /// The key's URI; only the public key is read.
    #[arg(long)]
    key: String,
    /// Also trust this attestation root CA (PEM) besides Yubico's.
    #[arg(long, value_name = "PEM", env = "TUFKEY_ATTESTATION_CA")]
    attestation_ca: Option<PathBuf>,
}

pub fn run(cmd: CeremonyCmd, ctx: &Ctx) -> Result<ExitCode> {
    // One name for the transcript and the audit log: --audit-actor / TUFKEY_ACTOR.
    let actor = ctx.actor.clone().unwrap_or_else(default_actor);
    match cmd {
        CeremonyCmd::Init {
            dir,
            trusted,
            expires,
            require_attestation,
        } => {
            let when = expiry(&expires)?;
            let c = Ceremony::init(&dir, trusted.as_deref(), &when, require_attestation, &actor)?;
            audit_change(
                ctx,
                "ceremony init",
                &dir,
                &c,
                &format!(
                    "started a ceremony for root version {}{}",
                    c.proposed.version().unwrap_or(0),
                    match &trusted {
                        Some(t) => format!(" from trusted root {}", shown_path(t)),
                        None => String::new(),
                    }
                ),
                Change::default(),
            )?;
            if ctx.json {
                print_json(
                    &json!({"dir": dir, "version": c.proposed.version(), "payload_sha256": c.proposed.payload_sha256()}),
                );
            } else {
                println!(
                    "started a ceremony for root version {} in {}",
                    c.proposed.version().unwrap_or(0),
                    dir.display()
                );
                if c.trusted.is_some() {
                    println!("  roles and keys copied from the trusted root; signatures reset");
                }
                println!(
                    "next: tufkey ceremony add-key {} --role root --key <URI>",
                    dir.display()
                );
            }
        }
        CeremonyCmd::AddKey(a) => {
            let (key, from) = read_key(&a.key, ctx)?;
            let mut c = Ceremony::open(&a.dir)?;
            let keyid = c
                .add_key(
                    &a.role,
                    &key,
                    &from,
                    attestation(&a.key, a.attestation_ca.as_deref())?.as_ref(),
                    &actor,
                )
                .with_context(|| format!("adding key {} to role {}", from.uri, a.role))?;
            let what = format!("added key {keyid} ({}) to role {}", key.scheme, a.role);
            audit_change(
                ctx,
                "ceremony add-key",
                &a.dir,
                &c,
                &what,
                Change {
                    role: Some(&a.role),
                    key_id: Some(&keyid),
                    key_uri: Some(&from.uri),
                },
            )?;
            report_change(ctx, &c, &what);
        }
        CeremonyCmd::RemoveKey {
            dir,
            role,
            keyid,
            key,
        } => {
            let keyid = match (keyid, key) {
                (Some(k), _) => k,
                (None, Some(uri)) => read_key(&uri, ctx)?.0.key_id(),
                (None, None) => bail!("give --keyid or --key"),
            };
            let mut c = Ceremony::open(&dir)?;
            c.remove_key(&role, &keyid, &actor)?;
            let what = format!("removed key {keyid} from role {role}");
            audit_change(
                ctx,
                "ceremony remove-key",
                &dir,
                &c,
                &what,
                Change {
                    role: Some(&role),
                    key_id: Some(&keyid),
                    key_uri: None,
                },
            )?;
            report_change(ctx, &c, &what);
        }
        CeremonyCmd::Threshold {
            dir,
            role,
            threshold,
        } => {
            let mut c = Ceremony::open(&dir)?;
            c.set_threshold(&role, threshold, &actor)?;
            let what = format!("role {role} now needs {threshold} signature(s)");
            audit_change(
                ctx,
                "ceremony threshold",
                &dir,
                &c,
                &what,
                Change {
                    role: Some(&role),
                    ..Default::default()
                },
            )?;
            report_change(ctx, &c, &what);
        }
        CeremonyCmd::Expires { dir, role, when } => {
            if role != "root" {
                bail!("a root ceremony sets only root's expiry; {role}'s expiry is in {role}.json, set when that file is signed");
            }
            let when = expiry(&when)?;
            let mut c = Ceremony::open(&dir)?;
            c.set_expires(&when, &actor)?;
            let what = format!("the new root expires at {when}");
            audit_change(
                ctx,
                "ceremony expires",
                &dir,
                &c,
                &what,
                Change {
                    role: Some("root"),
                    ..Default::default()
                },
            )?;
            report_change(ctx, &c, &what);
        }
        CeremonyCmd::Review { dir } => {
            let c = Ceremony::read(&dir)?;
            let r = c.review()?;
            if ctx.json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                print!("{}", r.render());
            }
        }
        CeremonyCmd::Sign { dir, key, yes } => sign(&dir, &key, yes, ctx, &actor, None)?,
        CeremonyCmd::Status { dir } => {
            let c = Ceremony::read(&dir)?;
            let s = c.status(Utc::now())?;
            print_status(ctx, &s);
        }
        CeremonyCmd::Merge { dir, other } => {
            let mut c = Ceremony::open(&dir)?;
            let taken = c.merge(&other, &actor)?;
            audit_change(
                ctx,
                "ceremony merge",
                &dir,
                &c,
                &format!(
                    "took {} signature(s) from {}{}",
                    taken.len(),
                    shown_path(&other),
                    if taken.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", taken.join(" "))
                    }
                ),
                Change {
                    role: Some("root"),
                    ..Default::default()
                },
            )?;
            if ctx.json {
                print_json(&json!({"merged": taken}));
            } else if taken.is_empty() {
                println!(
                    "{} has no valid signatures that {} lacks",
                    other.display(),
                    dir.display()
                );
            } else {
                println!(
                    "took {} signature(s) from {}: {}",
                    taken.len(),
                    other.display(),
                    taken.iter().map(|k| short(k)).collect::<Vec<_>>().join(" ")
                );
            }
        }
        CeremonyCmd::Finalize {
            dir,
            out,
            attestation_ca,
        } => {
            let extra = read_ca(attestation_ca.as_deref())?;
            let mut c = Ceremony::open(&dir)?;
            let files = c.finalize(&out, &actor, Utc::now(), &|r, k| {
                piv::check_recorded(r, k, &extra)
            })?;
            audit_finalized(ctx, "ceremony finalize", &dir, &c, &files)?;
            if ctx.json {
                print_json(&json!({"files": files, "transcript_head": c.transcript.head}));
            } else {
                for f in &files {
                    println!("wrote {}", f.display());
                }
                println!(
                    "transcript head (note it with the artifacts): {}",
                    c.transcript.head
                );
            }
        }
        CeremonyCmd::Verify {
            dir,
            expect_head,
            attestation_ca,
        } => return verify(&dir, expect_head.as_deref(), attestation_ca.as_deref(), ctx),
        CeremonyCmd::Run {
            dir,
            keys,
            out,
            yes,
            attestation_ca,
        } => run_interactive(&dir, keys, out, yes, attestation_ca.as_deref(), ctx, &actor)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn expiry(spec: &str) -> Result<String> {
    let t = parse_expiry_spec(spec, Utc::now()).with_context(|| {
        format!("`{spec}` is neither a duration (365d, 52w, 1y) nor a date (2027-06-30)")
    })?;
    Ok(format_expires(t))
}

/// The public key a URI names and where it lives, reading no private key.
fn read_key(uri: &str, ctx: &Ctx) -> Result<(Key, Provenance)> {
    let public = keys::public_key(uri, &ctx.pins)
        .with_context(|| format!("reading the public key of {}", keys::uri::redact(uri)))?;
    let source = KeySource::parse(uri)?;
    let mut from = Provenance {
        uri: source.uri(),
        ..Default::default()
    };
    if let Some((label, serial)) = source.token()? {
        from.token = Some(label);
        from.serial = Some(serial);
    }
    Ok((public.to_tuf_key(), from))
}

fn audit_finalized(
    ctx: &Ctx,
    action: &str,
    dir: &Path,
    c: &Ceremony,
    files: &[PathBuf],
) -> Result<()> {
    audit_change(
        ctx,
        action,
        dir,
        c,
        &format!(
            "finalized root version {}: wrote {}; transcript head {}",
            c.proposed.version().unwrap_or(0),
            files
                .iter()
                .map(|f| shown_path(f))
                .collect::<Vec<_>>()
                .join(", "),
            c.transcript.head
        ),
        Change {
            role: Some("root"),
            ..Default::default()
        },
    )
}

fn report_change(ctx: &Ctx, c: &Ceremony, what: &str) {
    if ctx.json {
        print_json(&json!({"done": what, "payload_sha256": c.proposed.payload_sha256()}));
    } else {
        println!("{what}");
        println!("payload SHA-256 now {}", c.proposed.payload_sha256());
    }
}

/// Signs the proposed root with one key. `step` names the command it is a step of
/// (`ceremony run`), for the audit entry.
fn sign(
    dir: &Path,
    uri: &str,
    yes: bool,
    ctx: &Ctx,
    actor: &str,
    step: Option<&str>,
) -> Result<()> {
    let snapshot = Ceremony::read(dir)?;
    snapshot.check_untouched()?;
    let review = snapshot.review()?;
    let payload_hash = snapshot.proposed.payload_sha256();
    // Check the key before any PIN is asked for: its public half names it.
    let (key, from) = read_key(uri, ctx)?;
    snapshot.check_signer(&key.key_id(), &from.uri)?;
    if !ctx.json {
        print!("{}", review.render());
        println!("Signing with key {} ({})", key.key_id(), from.uri);
    }
    if !confirm("Sign this root?", yes)? {
        bail!("not signed");
    }
    let signer = keys::open_signer(uri, &ctx.pins)?;
    let sig = keys::sign_checked(signer.as_ref(), &snapshot.proposed.payload())?;
    // Audit first: the signature joins the ceremony only once its entry committed.
    let mut ev = ctx.audit.event("ceremony sign", "signed");
    ev.file = Some(shown_path(dir));
    ev.role = Some("root".into());
    ev.version = snapshot.proposed.version();
    ev.key_id = Some(sig.keyid.clone());
    ev.key_uri = Some(keys::uri::redact(&from.uri));
    ev.payload_sha256 = Some(payload_hash.clone());
    ev.detail = step.map(|s| format!("a step of `tufkey {s}`"));
    ctx.audit.record(ev)?;
    let mut c = Ceremony::open(dir)?;
    c.add_signature(sig, &from.uri, &payload_hash, actor)?;
    let s = c.status(Utc::now())?;
    if ctx.json {
        print_json(&json!({"signed": key.key_id(), "status": s}));
    } else {
        println!("recorded the signature of {}", key.key_id());
        print_status(ctx, &s);
    }
    Ok(())
}

fn print_status(ctx: &Ctx, s: &Status) {
    if ctx.json {
        print_json(&serde_json::to_value(s).unwrap_or_default());
        return;
    }
    println!(
        "root version {}, payload {}",
        s.version,
        spaced(&s.payload_sha256)
    );
    println!("transcript head {}", s.transcript_head);
    let show = |label: &str, r: &tufkey::tuf::RoleVerification| {
        println!(
            "  {label}: {} of {} signature(s){}",
            r.counted(),
            r.threshold,
            if r.verified() { " — met" } else { "" }
        );
        for k in &r.signed {
            println!("      signed   {k}");
        }
        for k in &r.missing {
            println!("      missing  {k}");
        }
        for i in &r.invalid {
            println!("      invalid  {} ({})", i.keyid, i.reason);
        }
    };
    show("new root's root keys", &s.new_root);
    if let Some(t) = &s.trusted_root {
        show("trusted root's root keys", t);
    }
    if s.can_finalize {
        println!("ready to finalize");
    } else {
        println!("not ready to finalize:");
        for p in &s.problems {
            println!("  - {p}");
        }
    }
}

fn verify(dir: &Path, expect_head: Option<&str>, ca: Option<&Path>, ctx: &Ctx) -> Result<ExitCode> {
    let c = Ceremony::read(dir).with_context(|| format!("verifying {}", dir.display()))?;
    let s = c.status(Utc::now())?;
    let mut problems = c.transcript_problems();
    let extra = read_ca(ca)?;
    problems.extend(c.attestation_problems(&|rec, key| piv::check_recorded(rec, key, &extra)));
    if let Some(h) = expect_head {
        if !h.eq_ignore_ascii_case(&c.transcript.head) {
            problems.push(format!("the transcript head is {}, not the {h} noted earlier: the transcript changed since", c.transcript.head));
        }
    }
    for r in std::iter::once(&s.new_root).chain(s.trusted_root.iter()) {
        for i in &r.invalid {
            let p = format!("the signature by {} does not verify: {}", i.keyid, i.reason);
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
    if ctx.json {
        print_json(
            &json!({"ok": problems.is_empty(), "entries": c.transcript.entries.len(), "transcript_head": c.transcript.head, "problems": problems, "status": s}),
        );
    } else {
        println!(
            "transcript: {} entries, chain intact, head {}",
            c.transcript.entries.len(),
            c.transcript.head
        );
        if problems.is_empty() {
            println!("every recorded signature verifies and matches the transcript");
        } else {
            for p in &problems {
                println!("  problem: {p}");
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_VERIFIED)
    })
}

fn run_interactive(
    dir: &Path,
    mut keys: Vec<String>,
    out: Option<PathBuf>,
    yes: bool,
    attestation_ca: Option<&Path>,
    ctx: &Ctx,
    actor: &str,
) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if keys.is_empty() && !interactive {
        bail!("`ceremony run` asks for each key; without a terminal give them with --key (or use `ceremony sign`)");
    }
    let c = Ceremony::read(dir)?;
    println!("{}", c.review()?.render());
    println!("Every keyholder: compare the payload SHA-256 above aloud before signing.\n");
    keys.reverse();
    loop {
        let s = Ceremony::read(dir)?.status(Utc::now())?;
        print_status(ctx, &s);
        if s.new_root.verified() && s.trusted_root.as_ref().is_none_or(|t| t.verified()) {
            break;
        }
        let uri = match keys.pop() {
            Some(k) => k,
            None if interactive => {
                let k: String = dialoguer::Input::new()
                    .with_prompt("Key URI of the next keyholder (empty to stop)")
                    .allow_empty(true)
                    .interact_text()?;
                if k.trim().is_empty() {
                    println!("stopped; the ceremony folder keeps the signatures so far");
                    return Ok(());
                }
                k
            }
            None => bail!("the keys given did not meet the thresholds"),
        };
        if !yes && interactive {
            let _: String = dialoguer::Input::new()
                .with_prompt(format!(
                    "Insert the token for {} and press Enter",
                    keys::uri::redact(&uri)
                ))
                .allow_empty(true)
                .interact_text()?;
        }
        if let Err(e) = sign(dir, &uri, yes, ctx, actor, Some("ceremony run")) {
            eprintln!("error: {e:#}");
            if !interactive || is_audit_failure(&e) {
                return Err(e);
            }
            // The command goes on, so this step's failure is recorded here.
            ctx.audit
                .record_failure(&Audited::new("ceremony sign", Some(dir)), &e)?;
            println!("that key did not sign; continue with the next keyholder");
        }
    }
    if let Some(out) = out {
        if confirm(&format!("Finalize into {}?", out.display()), yes)? {
            let mut c = Ceremony::open(dir)?;
            let extra = read_ca(attestation_ca)?;
            let files = c.finalize(&out, actor, Utc::now(), &|r, k| {
                piv::check_recorded(r, k, &extra)
            })?;
            audit_finalized(ctx, "ceremony finalize", dir, &c, &files)?;
            for f in files {
                println!("wrote {}", f.display());
            }
            println!(
                "transcript head (note it with the artifacts): {}",
                c.transcript.head
            );
        }
    }
    Ok(())
}

fn read_ca(ca: Option<&Path>) -> Result<Vec<u8>> {
    match ca {
        Some(p) => {
            std::fs::read(p).with_context(|| format!("reading the attestation CA {}", p.display()))
        }
        None => Ok(Vec::new()),
    }
}

/// The attestation of a YubiKey key, for the ceremony record; `None` for keys that
/// cannot be attested (PKCS#11, files) and, with a warning, for YubiKey keys whose
/// attestation fails (the ceremony refuses those itself under --require-attestation).
fn attestation(uri: &str, ca: Option<&Path>) -> Result<Option<AttestationRecord>> {
    let source = KeySource::parse(uri)?;
    if !matches!(source, KeySource::YubiKey(_)) {
        return Ok(None);
    }
    let extra = read_ca(ca)?;
    match piv::attest(&source, &extra) {
        Ok(rec) => Ok(Some(rec)),
        Err(e) => {
            eprintln!("warning: no valid attestation for {}: {e:#}", source.uri());
            Ok(None)
        }
    }
}

/// PIV attestations for the ceremony record, through the key source.
mod piv {
    use super::*;

    pub fn attest(source: &KeySource, extra: &[u8]) -> Result<AttestationRecord> {
        let (a, slot_pem, inter_pem) = source.attest(extra)?;
        // The record names the YubiKey by the serial it attested.
        let uri = match (source, a.serial) {
            (KeySource::YubiKey(y), Some(serial)) => keys::uri::YubiKeyUri {
                serial: Some(serial),
                slot: y.slot,
            }
            .to_string(),
            _ => source.uri(),
        };
        Ok(AttestationRecord {
            uri,
            slot_certificate: slot_pem,
            intermediate: inter_pem,
            statement: serde_json::to_value(&a)?,
        })
    }

    pub fn check_recorded(
        rec: &AttestationRecord,
        key: &tufkey::tuf::Key,
        extra: &[u8],
    ) -> Result<String, String> {
        let public = key.public_key()?;
        let source = KeySource::parse(&rec.uri).map_err(|e| e.to_string())?;
        let a = source
            .verify_attestation(&rec.slot_certificate, &rec.intermediate, extra, &public)
            .map_err(|e| e.to_string())?;
        Ok(format!("serial {}", a.serial.unwrap_or_default()))
    }
}
