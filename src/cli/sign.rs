//! `tufkey sign`, `tufkey payload`, `tufkey add-signature`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use tufkey::fsutil;
use tufkey::keys::{self, KeyError};
use tufkey::tuf::{Envelope, Metadata, Signature};

use super::auditor::{shown_path, Audited};
use super::ctx::Ctx;
use super::output::{print_json, short};

/// `sign`'s failure entries name the file it signs.
pub fn audited_sign(a: &SignArgs) -> Audited {
    Audited::new("sign", Some(a.out.as_ref().unwrap_or(&a.file)))
}

/// `add-signature`'s failure entries name the file.
pub fn audited_add(a: &AddSignatureArgs) -> Audited {
    Audited::new("add-signature", Some(&a.file))
}

/// The audit entry for one signature `action` made (or, `result` "ok", added) over
/// `md`'s payload, stored in `file`.
pub fn signature_event(
    ctx: &Ctx,
    action: &str,
    result: &str,
    md: &Metadata,
    file: &Path,
    keyid: &str,
    uri: Option<&str>,
) -> tufkey::audit::Event {
    let signed = Signed {
        role: md.role_type(),
        version: md.version(),
        payload_sha256: &md.payload_sha256(),
    };
    signed.event(ctx, action, result, file, keyid, uri)
}

/// What an audit entry says about the document a signature covers.
struct Signed<'a> {
    role: &'a str,
    version: Option<u64>,
    payload_sha256: &'a str,
}

impl Signed<'_> {
    fn of(env: &Envelope) -> Signed<'_> {
        Signed {
            role: env.role_type(),
            version: env.version(),
            payload_sha256: env.payload_sha256(),
        }
    }

    fn event(
        &self,
        ctx: &Ctx,
        action: &str,
        result: &str,
        file: &Path,
        keyid: &str,
        uri: Option<&str>,
    ) -> tufkey::audit::Event {
        let mut ev = ctx.audit.event(action, result);
        ev.file = Some(shown_path(file));
        ev.role = Some(self.role.to_string());
        ev.version = self.version;
        ev.key_id = Some(keyid.to_string());
        ev.key_uri = uri.map(keys::uri::redact);
        ev.payload_sha256 = Some(self.payload_sha256.to_string());
        ev
    }
}

/// Reads and parses a metadata file; errors name the file.
pub fn load(path: &Path) -> Result<Metadata> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metadata::from_slice(&bytes)
        .with_context(|| format!("{} is not usable TUF metadata", path.display()))
}

/// Reads a metadata file for signing or verifying only: its envelope and payload,
/// without a JSON tree of the whole document (large targets files); errors as `load`'s.
pub fn load_envelope(path: &Path) -> Result<Envelope> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Envelope::from_bytes(bytes)
        .with_context(|| format!("{} is not usable TUF metadata", path.display()))
}

#[derive(Args)]
pub struct SignArgs {
    /// The metadata file (root, targets, snapshot, timestamp or delegated targets).
    file: PathBuf,
    /// A key to sign with; repeat for several keys. Each adds (or replaces) its own signature.
    #[arg(long = "key", required = true, value_name = "URI")]
    keys: Vec<String>,
    /// Write the signed file here instead of replacing FILE.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn sign(args: SignArgs, ctx: &Ctx) -> Result<ExitCode> {
    // Every key URI is checked before the (possibly large) file is read.
    for uri in &args.keys {
        keys::uri::KeyUri::parse(uri).map_err(|e| with_uri(e, uri))?;
    }
    let mut md = load_envelope(&args.file)?;
    // Every key signs before anything is written: one failure leaves the file as it was.
    let mut done = Vec::new();
    for uri in &args.keys {
        let signer = keys::open_signer(uri, &ctx.pins).map_err(|e| with_uri(e, uri))?;
        let sig = keys::sign_checked(signer.as_ref(), md.payload())
            .with_context(|| format!("signing {} with {}", args.file.display(), signer.uri()))?;
        let replaced = md.signatures().iter().any(|s| s.keyid == sig.keyid);
        done.push((signer.uri().to_string(), sig.keyid.clone(), replaced));
        md.set_signature(sig);
    }
    let out = args.out.as_ref().unwrap_or(&args.file);
    // Audit first: a signature whose entry did not commit is never written.
    for (uri, keyid, _) in &done {
        ctx.audit
            .record(Signed::of(&md).event(ctx, "sign", "signed", out, keyid, Some(uri)))?;
    }
    let known = known_keyids(&md);
    let (role, version, payload_sha256) = (
        md.role_type().to_string(),
        md.version(),
        md.payload_sha256().to_string(),
    );
    fsutil::write_atomic(out, &md.into_pretty_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    if ctx.json {
        let items: Vec<_> = done
            .iter()
            .map(|(u, k, r)| json!({"uri": u, "keyid": k, "replaced": r}))
            .collect();
        print_json(&json!({"file": out, "payload_sha256": payload_sha256, "signatures": items}));
    } else {
        println!(
            "signed {} ({role} v{})",
            out.display(),
            version.unwrap_or(0)
        );
        for (u, k, r) in &done {
            println!("  {} {k}  {u}", if *r { "replaced" } else { "added   " });
        }
        if let Some(known) = known {
            for (_, k, _) in done.iter().filter(|(_, k, _)| !known.contains(k)) {
                eprintln!("note: key {} is not listed in this root; its signature counts only for another root", short(k));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn with_uri(e: KeyError, uri: &str) -> anyhow::Error {
    // KeyError messages already name the URI or token; add it where they name only a file.
    if e.names_only_a_file() {
        anyhow::Error::new(e).context(format!("opening key {}", keys::uri::redact(uri)))
    } else {
        e.into()
    }
}

/// Key ids a root lists, so that signing a root with a stranger key gets a note.
fn known_keyids(md: &Envelope) -> Option<Vec<String>> {
    if md.role_type() != "root" {
        return None;
    }
    md.signed_member("keys")
        .and_then(|k| k.as_object().map(|k| k.keys().cloned().collect()))
}

#[derive(Args)]
pub struct PayloadArgs {
    /// The metadata file.
    file: PathBuf,
    /// Print the SHA-256 of the payload instead of the bytes.
    #[arg(long)]
    sha256: bool,
}

pub fn payload(args: PayloadArgs) -> Result<ExitCode> {
    let md = load_envelope(&args.file)?;
    if args.sha256 {
        println!("{}", md.payload_sha256());
    } else {
        std::io::stdout().write_all(md.payload())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct AddSignatureArgs {
    /// The metadata file.
    file: PathBuf,
    /// The key id the signature is by.
    #[arg(long)]
    keyid: String,
    /// The signature, hex-encoded, over the file's canonical payload (see `tufkey payload`).
    #[arg(long)]
    sig: String,
    /// The delegator that holds the public key (root.json or a targets file). A root file
    /// can use its own keys, so this may be left out for roots.
    #[arg(long, visible_alias = "delegator")]
    root: Option<PathBuf>,
}

pub fn add_signature(args: AddSignatureArgs, ctx: &Ctx) -> Result<ExitCode> {
    let mut md = load_envelope(&args.file)?;
    let (source, delegator) = match &args.root {
        Some(p) => (p.display().to_string(), load_envelope(p)?.delegator()),
        None if md.role_type() == "root" => (args.file.display().to_string(), md.delegator()),
        None => bail!(
            "{} is a {} file; pass --root <root.json> or --delegator <targets.json> so the key {} can be found",
            args.file.display(),
            md.role_type(),
            args.keyid
        ),
    };
    let delegator = delegator.with_context(|| format!("reading the keys of {source}"))?;
    let key = delegator
        .keys
        .get(&args.keyid)
        .with_context(|| format!("key id {} is not among the keys of {source}", args.keyid))?;
    let sig_hex = args.sig.trim().to_ascii_lowercase();
    key.verify_hex(md.payload(), &sig_hex).map_err(|reason| {
        anyhow::anyhow!(
            "the signature by key {} does not verify over the payload of {} ({reason}); nothing was written. \
Check that it was made over `tufkey payload {}`",
            args.keyid,
            args.file.display(),
            args.file.display()
        )
    })?;
    let replaced = md.signatures().iter().any(|s| s.keyid == args.keyid);
    let sig = Signature {
        keyid: args.keyid.clone(),
        sig: sig_hex,
        extra: Default::default(),
    };
    md.set_signature(sig);
    ctx.audit.record(Signed::of(&md).event(
        ctx,
        "add-signature",
        "ok",
        &args.file,
        &args.keyid,
        None,
    ))?;
    fsutil::write_atomic(&args.file, &md.into_pretty_bytes())
        .with_context(|| format!("writing {}", args.file.display()))?;
    if ctx.json {
        print_json(&json!({"file": args.file, "keyid": args.keyid, "replaced": replaced}));
    } else {
        println!(
            "{} signature by key {} in {}",
            if replaced { "replaced" } else { "added" },
            args.keyid,
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
