//! `tufkey key …`: generate, list, show, import, delete.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use tufkey::fsutil;
use tufkey::keys::{self, pkcs11, software, KeyUri, PivPinPolicy, PivTouchPolicy, Pkcs11Uri};
use tufkey::tuf::{KeyType, PublicKey};

use super::auditor::{shown_path, Audited};
use super::output::{confirm, print_json, short};
use super::Ctx;

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
    match KeyUri::parse(uri) {
        Ok(KeyUri::File(f)) => Some(f.path),
        _ => None,
    }
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
        pin_policy: PivPinPolicy,
        /// YubiKey only: when a touch is needed.
        #[arg(long, value_enum, default_value = "never")]
        touch_policy: PivTouchPolicy,
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
        } => generate(&uri, key_type, (pin_policy, touch_policy), ctx),
        KeyCmd::Attest { uri, ca } => yk::attest_cmd(&uri, ca.as_deref(), ctx),
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

fn generate(
    uri: &str,
    key_type: KeyType,
    piv: (PivPinPolicy, PivTouchPolicy),
    ctx: &Ctx,
) -> Result<()> {
    match KeyUri::parse(uri)? {
        KeyUri::YubiKey(y) => {
            let (new_uri, public) = yk::generate(&y, key_type, piv, ctx)?;
            audit_generated(ctx, &new_uri, &public, None)?;
            report_key(
                "generated in the YubiKey slot a non-extractable",
                &new_uri,
                &public,
                ctx,
            );
        }
        KeyUri::Remote(r) => {
            bail!("{r} is a key of a remote signer; create keys on the signer's own device")
        }
        KeyUri::Pkcs11(u) => {
            let (new_uri, public) = pkcs11::generate(&u, key_type, &ctx.pins)?;
            audit_generated(ctx, &new_uri.to_string(), &public, None)?;
            report_key(
                "generated on the token a non-extractable",
                &new_uri.to_string(),
                &public,
                ctx,
            );
        }
        KeyUri::File(f) => {
            if f.path.exists() {
                bail!(
                    "key file {} already exists; choose another path or delete it first",
                    f.path.display()
                );
            }
            let key = software::SoftKey::generate(key_type).map_err(anyhow::Error::msg)?;
            let pem = software::encrypt_key(&f.path, &key, &ctx.pins)?;
            let public = key.public();
            let pub_json = serde_json::to_vec_pretty(&public.to_tuf_key().to_value())?;
            let pub_path = software::public_path(&f.path);
            fsutil::create_new_atomic(&f.path, pem.as_bytes(), Some(0o600))
                .with_context(|| format!("writing key file {}", f.path.display()))?;
            if let Err(e) = fsutil::write_atomic(&pub_path, &pub_json) {
                let _ = std::fs::remove_file(&f.path);
                return Err(e).with_context(|| format!("writing {}", pub_path.display()));
            }
            audit_generated(ctx, &f.to_string(), &public, Some(&f.path))?;
            report_key("generated an encrypted", &f.to_string(), &public, ctx);
        }
    }
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

struct Listed {
    uri: String,
    public: Result<PublicKey, String>,
}

fn list(sources: &[String], ctx: &Ctx) -> Result<()> {
    let mut rows: Vec<Listed> = Vec::new();
    let defaults = [String::from("pkcs11:")];
    let sources = if sources.is_empty() {
        &defaults[..]
    } else {
        sources
    };
    for s in sources {
        if s == "yubikey:" || s == "yubikey" {
            rows.extend(
                yk::list()?
                    .into_iter()
                    .map(|(uri, public)| Listed { uri, public }),
            );
            continue;
        }
        match KeyUri::parse(s)? {
            KeyUri::YubiKey(y) => {
                let public = keys::public_key(s, &ctx.pins).map_err(|e| e.to_string());
                rows.push(Listed {
                    uri: y.to_string(),
                    public,
                });
            }
            KeyUri::Remote(r) => {
                bail!("list a remote signer's keys with its API; {r} names one key")
            }
            KeyUri::Pkcs11(u) => {
                for k in pkcs11::list_keys(&u).with_context(|| format!("listing keys of {s}"))? {
                    rows.push(Listed {
                        uri: k.uri.to_string(),
                        public: k.public,
                    });
                }
            }
            KeyUri::File(f) => rows.extend(list_files(&f.path)?),
        }
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

fn list_files(dir: &Path) -> Result<Vec<Listed>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading folder {}", dir.display()))?;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".pub.json") else {
            continue;
        };
        let key_path = p.with_file_name(stem);
        if !key_path.exists() {
            continue;
        }
        let uri = format!("file:{}", key_path.display());
        out.push(Listed {
            uri: uri.clone(),
            public: keys::public_key(&uri, &Default::default()).map_err(|e| e.to_string()),
        });
    }
    Ok(out)
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
    KeyUri::parse(uri)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| keys::uri::redact(uri))
}

fn import(file: &Path, uri: &str, ctx: &Ctx) -> Result<()> {
    let KeyUri::Pkcs11(u) = KeyUri::parse(uri)? else {
        bail!("import moves a key into a PKCS#11 token; {uri} is not a pkcs11: URI");
    };
    let key = software::read_key_file(file, &ctx.pins)?;
    let (new_uri, public) = pkcs11::import(&u, &key, &ctx.pins)
        .with_context(|| format!("importing {} into {}", file.display(), u))?;
    audit_key(
        ctx,
        "key import",
        &new_uri.to_string(),
        Some(public.to_tuf_key().key_id()),
        Some(file),
        format!(
            "imported a key of type {} from {}",
            public.algorithm(),
            file.display()
        ),
    )?;
    report_key(
        "imported as a non-extractable",
        &new_uri.to_string(),
        &public,
        ctx,
    );
    Ok(())
}

fn delete(uri: &str, yes: bool, ctx: &Ctx) -> Result<()> {
    match KeyUri::parse(uri)? {
        KeyUri::YubiKey(y) => bail!(
            "tufkey does not delete or reset YubiKey slots ({y}); overwrite the slot with `tufkey key generate` or use ykman"
        ),
        KeyUri::Remote(r) => bail!("{r} belongs to a remote signer; its operator manages its keys"),
        KeyUri::Pkcs11(u) => delete_pkcs11(&u, yes, ctx),
        KeyUri::File(f) => {
            let pub_path = software::public_path(&f.path);
            if !f.path.exists() {
                bail!("no key file {}", f.path.display());
            }
            if !confirm(
                &format!(
                    "Delete key file {} (this cannot be undone)?",
                    f.path.display()
                ),
                yes,
            )? {
                bail!("not deleted");
            }
            let key_id = keys::public_key(uri, &Default::default())
                .ok()
                .map(|p| p.to_tuf_key().key_id());
            std::fs::remove_file(&f.path)
                .with_context(|| format!("deleting {}", f.path.display()))?;
            let _ = std::fs::remove_file(&pub_path);
            audit_key(
                ctx,
                "key delete",
                uri,
                key_id,
                Some(&f.path),
                format!("deleted key file {}", f.path.display()),
            )?;
            if !ctx.json {
                println!("deleted {}", f.path.display());
            } else {
                print_json(&json!({"deleted": [f.path]}));
            }
            Ok(())
        }
    }
}

fn delete_pkcs11(u: &Pkcs11Uri, yes: bool, ctx: &Ctx) -> Result<()> {
    if u.object.is_none() && u.id.is_none() {
        bail!("{u} names no key; add object= and/or id= so that only one key is deleted");
    }
    let token = pkcs11::Token::open(u)?;
    token.login(u, &ctx.pins)?;
    let objects = token.key_objects(u)?;
    if objects.is_empty() {
        bail!("no key matches {u} on token \"{}\"", token.label);
    }
    let names: Vec<String> = objects.iter().map(|(_, d)| d.clone()).collect();
    if !ctx.json {
        println!("on token \"{}\" (serial {}):", token.label, token.serial);
        for n in &names {
            println!("  {n}");
        }
    }
    if !confirm(
        &format!(
            "Destroy these {} objects? A deleted key cannot be recovered",
            names.len()
        ),
        yes,
    )? {
        bail!("not deleted");
    }
    // The key id for the audit entry, read from the public half while it still exists.
    let key_id = keys::public_key(&u.to_string(), &ctx.pins)
        .ok()
        .map(|p| p.to_tuf_key().key_id());
    let handles: Vec<_> = objects.iter().map(|(h, _)| *h).collect();
    token.destroy(&handles)?;
    audit_key(
        ctx,
        "key delete",
        &u.to_string(),
        key_id,
        None,
        format!(
            "destroyed on token \"{}\" (serial {}): {}",
            token.label,
            token.serial,
            names.join(", ")
        ),
    )?;
    if ctx.json {
        print_json(&json!({"deleted": names}));
    } else {
        println!("deleted {} objects", names.len());
    }
    Ok(())
}

/// YubiKey commands, present when tufkey is built with the `yubikey` feature.
#[cfg(feature = "yubikey")]
mod yk {
    use super::*;
    use tufkey::keys::piv_attest::Attestation;
    use tufkey::keys::uri::YubiKeyUri;
    use tufkey::keys::yubikey as backend;

    pub fn generate(
        y: &YubiKeyUri,
        t: KeyType,
        piv: (PivPinPolicy, PivTouchPolicy),
        ctx: &Ctx,
    ) -> Result<(String, PublicKey)> {
        let (uri, public) = backend::generate(y, t, piv.0, piv.1, &ctx.pins)?;
        Ok((uri.to_string(), public))
    }

    pub fn list() -> Result<Vec<(String, Result<PublicKey, String>)>> {
        Ok(backend::list_keys()?
            .into_iter()
            .map(|(u, k)| (u.to_string(), k))
            .collect())
    }

    pub fn attest(y: &YubiKeyUri, extra: &[u8]) -> Result<(Attestation, String, String)> {
        Ok(backend::attest(y, extra)?)
    }

    pub fn attest_cmd(uri: &str, ca: Option<&Path>, ctx: &Ctx) -> Result<()> {
        let KeyUri::YubiKey(y) = KeyUri::parse(uri)? else {
            bail!("only YubiKey keys carry a PIV attestation; {uri} is not a yubikey: URI");
        };
        let extra = match ca {
            Some(p) => std::fs::read(p)
                .with_context(|| format!("reading the attestation CA {}", p.display()))?,
            None => Vec::new(),
        };
        let (a, _, _) = attest(&y, &extra)?;
        if ctx.json {
            print_json(&json!({"uri": y.to_string(), "attestation": a}));
        } else {
            println!("attestation of {y}: VERIFIED");
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
}

#[cfg(not(feature = "yubikey"))]
mod yk {
    use super::*;
    use tufkey::keys::uri::YubiKeyUri;

    const MISSING: &str = "this tufkey was built without the `yubikey` feature";

    pub fn generate(
        _: &YubiKeyUri,
        _: KeyType,
        _: (PivPinPolicy, PivTouchPolicy),
        _: &Ctx,
    ) -> Result<(String, PublicKey)> {
        bail!(MISSING)
    }

    pub fn list() -> Result<Vec<(String, Result<PublicKey, String>)>> {
        bail!(MISSING)
    }

    pub fn attest_cmd(_: &str, _: Option<&Path>, _: &Ctx) -> Result<()> {
        bail!(MISSING)
    }
}
