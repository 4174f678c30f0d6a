//! `tufkey key …`: generate, list, show, import, delete.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use tufkey::keys::{self, file, KeySource, ListedKey, NewKey, NewKeyOptions};
use tufkey::tuf::{KeyType, PublicKey};

use super::auditor::{shown_path, Audited};
use super::ctx::Ctx;
use super::output::{confirm, print_json, short};

/// The key commands that change key material are audited.
pub fn audited(cmd: &KeyCmd) -> Option<Audited> {
    match cmd {
        KeyCmd::Generate { uri, .. } => Some(Audited::new("key generate", file_of(uri).as_deref())),
        KeyCmd::Import { file, .. } => Some(Audited::new("key import", Some(file))),
        KeyCmd::Delete { uri, .. } => Some(Audited::new("key delete", file_of(uri).as_deref())),
        KeyCmd::Attest { .. } | KeyCmd::List { .. } | KeyCmd::Show { .. } => None,
    }
}

/// The key file a file: URI names.
fn file_of(uri: &str) -> Option<PathBuf> {
    KeySource::parse(uri)
        .ok()
        .and_then(|s| s.key_file().map(Path::to_path_buf))
}

/// Records a change of key material that has just happened. If the entry cannot be
/// written the command fails, saying that the change itself was made.
fn audit_key(
    ctx: &Ctx,
    action: &str,
    uri: &str,
    key_id: Option<String>,
    file: Option<&Path>,
    detail: String,
) -> Result<()> {
    let mut ev = ctx.audit.event(action, "ok");
    ev.key_uri = Some(keys::uri::redact(uri));
    ev.key_id = key_id;
    ev.file = file.map(shown_path);
    ev.detail = Some(detail);
    ctx.audit.record(ev).map(|_| ()).with_context(|| {
        format!(
            "`tufkey {action}` on {} was done, but it is not in the audit log",
            keys::uri::redact(uri)
        )
    })
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a key on a device (PKCS#11: sensitive, non-extractable) or in an encrypted file.
    ///
    /// Examples:
    ///   tufkey key generate 'pkcs11:token=root-a;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so' --type ecdsa-p256
    ///   TUFKEY_PASSPHRASE=… tufkey key generate file:keys/targets.p8 --type ed25519
    #[command(verbatim_doc_comment)]
    Generate {
        /// Where the key goes: pkcs11:…;object=<label>[;id=…], yubikey:[serial=N;]slot=9c or file:<path>.
        uri: String,
        /// The key type (YubiKeys: ecdsa-p256 or rsa-2048).
        #[arg(long = "type", value_parser = super::choice::choice::<KeyType>())]
        key_type: KeyType,
        /// YubiKey only: when the PIN is needed.
        #[arg(long, value_enum, default_value = "default")]
        pin_policy: PinPolicyArg,
        /// YubiKey only: when a touch is needed.
        #[arg(long, value_enum, default_value = "never")]
        touch_policy: TouchPolicyArg,
    },
    /// Verify a YubiKey slot's attestation: the key was made on that YubiKey and cannot leave it.
    ///
    /// Checks the chain slot certificate → device attestation certificate → Yubico PIV
    /// root CA (shipped with tufkey), that the attested key is the key in the slot, and
    /// prints serial, firmware, PIN and touch policy.
    Attest {
        /// A yubikey: URI.
        uri: String,
        /// Also trust this root CA (PEM), e.g. a test CA; TUFKEY_ATTESTATION_CA works too.
        #[arg(long, value_name = "PEM", env = "TUFKEY_ATTESTATION_CA")]
        ca: Option<PathBuf>,
    },
    /// List keys on every token of a PKCS#11 module, and file keys in folders.
    ///
    /// Each SOURCE is a pkcs11: URI (its module, narrowed by token/object attributes),
    /// `yubikey:` (every YubiKey's signing slots) or file:<folder>. Without SOURCE: every
    /// token of the default module. No PIN is needed.
    List {
        /// pkcs11: URIs or file:<folder>.
        sources: Vec<String>,
    },
    /// Print a key's TUF public key JSON, key id and SubjectPublicKeyInfo PEM.
    Show {
        /// The key URI.
        uri: String,
    },
    /// Move a software key (PKCS#8 PEM/DER, encrypted or not) into a PKCS#11 token.
    ///
    /// The key is stored non-extractable on the token. Destroy the file afterwards if
    /// the token is now its only home.
    Import {
        /// The PKCS#8 key file.
        file: PathBuf,
        /// The destination: pkcs11:…;object=<label>[;id=…].
        uri: String,
    },
    /// Delete a key (asks first; --yes to skip the question in scripts).
    Delete {
        /// The key URI.
        uri: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(cmd: KeyCmd, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Generate {
            uri,
            key_type,
            pin_policy,
            touch_policy,
        } => generate(
            &uri,
            NewKeyOptions {
                key_type,
                pin_policy: pin_policy.into(),
                touch_policy: touch_policy.into(),
            },
            ctx,
        ),
        KeyCmd::Attest { uri, ca } => attest(&uri, ca.as_deref(), ctx),
        KeyCmd::List { sources } => list(&sources, ctx),
        KeyCmd::Show { uri } => show(&uri, ctx),
        KeyCmd::Import { file, uri } => import(&file, &uri, ctx),
        KeyCmd::Delete { uri, yes } => delete(&uri, yes, ctx),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn report_key(action: &str, uri: &str, public: &PublicKey, ctx: &Ctx) {
    let key = public.to_tuf_key();
    let keyid = key.key_id();
    if ctx.json {
        print_json(
            &json!({ "uri": uri, "keyid": keyid, "type": public.algorithm(), "key": key.to_value() }),
        );
    } else {
        println!("{action} {} key", public.algorithm());
        println!("  uri:    {uri}");
        println!("  key id: {keyid}");
        println!(
            "  key:    {}",
            serde_json::to_string(&key.to_value()).unwrap_or_default()
        );
    }
}

fn generate(uri: &str, opts: NewKeyOptions, ctx: &Ctx) -> Result<()> {
    let new: NewKey = KeySource::parse(uri)?.generate(opts, &ctx.pins)?;
    audit_generated(ctx, &new.uri, &new.public, new.file.as_deref())?;
    report_key(new.made, &new.uri, &new.public, ctx);
    Ok(())
}

fn audit_generated(ctx: &Ctx, uri: &str, public: &PublicKey, file: Option<&Path>) -> Result<()> {
    audit_key(
        ctx,
        "key generate",
        uri,
        Some(public.to_tuf_key().key_id()),
        file,
        format!("generated a key of type {}", public.algorithm()),
    )
}

fn list(sources: &[String], ctx: &Ctx) -> Result<()> {
    let mut rows: Vec<ListedKey> = Vec::new();
    let defaults = [String::from("pkcs11:")];
    let sources = if sources.is_empty() {
        &defaults[..]
    } else {
        sources
    };
    for s in sources {
        let source = KeySource::parse_for_listing(s)?;
        rows.extend(
            source
                .list(&ctx.pins)
                .with_context(|| format!("listing keys of `{}`", source.uri()))?,
        );
    }
    if ctx.json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| match &r.public {
                Ok(p) => {
                    json!({"uri": r.uri, "type": p.algorithm(), "keyid": p.to_tuf_key().key_id()})
                }
                Err(e) => json!({"uri": r.uri, "error": e}),
            })
            .collect();
        print_json(&json!(items));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no keys found");
        return Ok(());
    }
    println!("{:<10}  {:<10}  URI", "KEY ID", "TYPE");
    for r in &rows {
        match &r.public {
            Ok(p) => println!(
                "{:<10}  {:<10}  {}",
                short(&p.to_tuf_key().key_id()),
                p.algorithm(),
                r.uri
            ),
            Err(e) => println!("{:<10}  {:<10}  {}  ({e})", "?", "?", r.uri),
        }
    }
    Ok(())
}

fn show(uri: &str, ctx: &Ctx) -> Result<()> {
    let public = keys::public_key(uri, &ctx.pins)?;
    let key = public.to_tuf_key();
    if ctx.json {
        print_json(&json!({
            "uri": uri_display(uri),
            "keyid": key.key_id(),
            "type": public.algorithm(),
            "key": key.to_value(),
            "spki_pem": public.spki_pem(),
        }));
    } else {
        println!("uri:    {}", uri_display(uri));
        println!("type:   {}", public.algorithm());
        println!("key id: {}", key.key_id());
        println!(
            "TUF key:\n{}",
            serde_json::to_string_pretty(&key.to_value())?
        );
        print!("{}", public.spki_pem());
    }
    Ok(())
}

fn uri_display(uri: &str) -> String {
    KeySource::parse(uri)
        .map(|s| s.uri())
        .unwrap_or_else(|_| keys::uri::redact(uri))
}

fn import(path: &Path, uri: &str, ctx: &Ctx) -> Result<()> {
    let dest = KeySource::parse(uri)?;
    let key = file::read_key_file(path, &ctx.pins)?;
    let new = dest
        .import(&key, &ctx.pins)
        .with_context(|| format!("importing {} into {}", path.display(), dest.uri()))?;
    audit_key(
        ctx,
        "key import",
        &new.uri,
        Some(new.public.to_tuf_key().key_id()),
        Some(path),
        format!(
            "imported a key of type {} from {}",
            new.public.algorithm(),
            path.display()
        ),
    )?;
    report_key(new.made, &new.uri, &new.public, ctx);
    Ok(())
}

fn delete(uri: &str, yes: bool, ctx: &Ctx) -> Result<()> {
    let source = KeySource::parse(uri)?;
    let deletion = source.deletion(&ctx.pins)?;
    if !ctx.json {
        if let Some(h) = &deletion.header {
            println!("{h}");
            for item in &deletion.items {
                println!("  {item}");
            }
        }
    }
    if !confirm(&deletion.prompt, yes)? {
        bail!("not deleted");
    }
    let items = deletion.items.clone();
    let key_id = deletion.key_id.clone();
    let detail = deletion.detail.clone();
    let file = deletion.file().map(Path::to_path_buf);
    deletion.delete()?;
    audit_key(
        ctx,
        "key delete",
        &source.uri(),
        key_id,
        file.as_deref(),
        detail,
    )?;
    if ctx.json {
        print_json(&json!({ "deleted": items }));
    } else if file.is_some() {
        println!("deleted {}", items.join(", "));
    } else {
        println!("deleted {} objects", items.len());
    }
    Ok(())
}

fn attest(uri: &str, ca: Option<&Path>, ctx: &Ctx) -> Result<()> {
    let source = KeySource::parse(uri)?;
    let extra = match ca {
        Some(p) => std::fs::read(p)
            .with_context(|| format!("reading the attestation CA {}", p.display()))?,
        None => Vec::new(),
    };
    let (a, _, _) = source.attest(&extra)?;
    let shown = source.uri();
    if ctx.json {
        print_json(&json!({"uri": shown, "attestation": a}));
    } else {
        println!("attestation of {shown}: VERIFIED");
        println!(
            "  chain:        slot certificate -> device attestation certificate -> {}",
            a.root
        );
        println!(
            "  serial:       {}",
            a.serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "(not stated)".into())
        );
        println!(
            "  firmware:     {}",
            a.firmware.as_deref().unwrap_or("(not stated)")
        );
        println!("  PIN policy:   {}", a.pin_policy);
        println!("  touch policy: {}", a.touch_policy);
        if let Some(f) = &a.form_factor {
            println!("  form factor:  {f}");
        }
        println!(
            "  key:          the attested key is the key in the slot (SPKI SHA-256 {})",
            a.spki_sha256
        );
    }
    Ok(())
}

/// `--pin-policy`: the CLI's name for [`keys::PivPinPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PinPolicyArg {
    /// The slot's default (9c: always).
    Default,
    /// The PIN once per session.
    Once,
    /// The PIN before every signature.
    Always,
}

impl From<PinPolicyArg> for keys::PivPinPolicy {
    fn from(a: PinPolicyArg) -> keys::PivPinPolicy {
        match a {
            PinPolicyArg::Default => keys::PivPinPolicy::Default,
            PinPolicyArg::Once => keys::PivPinPolicy::Once,
            PinPolicyArg::Always => keys::PivPinPolicy::Always,
        }
    }
}

/// `--touch-policy`: the CLI's name for [`keys::PivTouchPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TouchPolicyArg {
    /// No touch.
    Never,
    /// A touch for every signature.
    Always,
    /// A touch, remembered for 15 seconds.
    Cached,
}

impl From<TouchPolicyArg> for keys::PivTouchPolicy {
    fn from(a: TouchPolicyArg) -> keys::PivTouchPolicy {
        match a {
            TouchPolicyArg::Never => keys::PivTouchPolicy::Never,
            TouchPolicyArg::Always => keys::PivTouchPolicy::Always,
            TouchPolicyArg::Cached => keys::PivTouchPolicy::Cached,
        }
    }
}
