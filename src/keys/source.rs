//! One way into every key backend: a key URI opened once as a [`KeySource`].
//!
//! This is the only place that matches on the kind of key a URI names, and the only place
//! that knows a backend was left out of the build (the `yubikey` feature). Callers ask a
//! source for what they need — a signer, the public key, the keys it lists, a new key, a
//! deletion — and a backend that cannot do it refuses with [`KeyError::NotSupported`],
//! naming the URI and what to do instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::object::ObjectHandle;

use super::error::KeyError;
use super::file;
use super::pin::PinPolicy;
use super::piv_policy::{PivPinPolicy, PivTouchPolicy};
use super::pkcs11::{self, Token};
use super::remote;
use super::signer::Signer;
use super::uri::{FileUri, KeyUri, Pkcs11Uri, RemoteUri, YubiKeyUri};
use crate::tuf::{KeyType, PublicKey};

/// Where keys come from, as a URI names it.
#[derive(Debug, Clone)]
pub enum KeySource {
    Pkcs11(Box<Pkcs11Uri>),
    File(FileUri),
    YubiKey(YubiKeyUri),
    /// Every slot of every YubiKey present (`yubikey:` alone; listing only).
    EveryYubiKey,
    Remote(RemoteUri),
}

/// A key a source listed: a URI naming exactly it, and its public key (or why that
/// could not be read).
#[derive(Debug, Clone)]
pub struct ListedKey {
    pub uri: String,
    pub public: Result<PublicKey, String>,
}

/// What a new key looks like: its type, and the PIV policies when it is made in a
/// YubiKey slot (other backends ignore them).
#[derive(Debug, Clone, Copy)]
pub struct NewKeyOptions {
    pub key_type: KeyType,
    pub pin_policy: PivPinPolicy,
    pub touch_policy: PivTouchPolicy,
}

/// A key that was just made.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// A URI naming exactly the new key.
    pub uri: String,
    pub public: PublicKey,
    /// How and where it was made, for people ("on the token a non-extractable").
    pub made: &'static str,
    /// The key file, for `file:` keys.
    pub file: Option<PathBuf>,
}

/// Keys selected for deletion: shown to a person, then destroyed by [`Deletion::delete`].
pub struct Deletion {
    /// A line that places the items ("on token \"x\" (serial y):"), if any.
    pub header: Option<String>,
    /// One line per object or file that goes.
    pub items: Vec<String>,
    /// The question to confirm.
    pub prompt: String,
    /// The key id of the key that goes, read while it still exists.
    pub key_id: Option<String>,
    /// What was destroyed, for the audit log.
    pub detail: String,
    target: Target,
}

enum Target {
    Pkcs11 {
        token: Arc<Token>,
        handles: Vec<ObjectHandle>,
    },
    File {
        path: PathBuf,
    },
}

impl KeySource {
    /// Parses a key URI.
    pub fn parse(uri: &str) -> Result<KeySource, KeyError> {
        Ok(match KeyUri::parse(uri)? {
            KeyUri::Pkcs11(u) => KeySource::Pkcs11(u),
            KeyUri::File(f) => KeySource::File(f),
            KeyUri::YubiKey(y) => KeySource::YubiKey(y),
            KeyUri::Remote(r) => KeySource::Remote(r),
        })
    }

    /// Parses a source to list: a key URI, or `yubikey:` for every YubiKey present.
    pub fn parse_for_listing(uri: &str) -> Result<KeySource, KeyError> {
        match uri {
            "yubikey:" | "yubikey" => Ok(KeySource::EveryYubiKey),
            _ => KeySource::parse(uri),
        }
    }

    /// The URI, with any PIN redacted.
    pub fn uri(&self) -> String {
        match self {
            KeySource::Pkcs11(u) => u.to_string(),
            KeySource::File(f) => f.to_string(),
            KeySource::YubiKey(y) => y.to_string(),
            KeySource::EveryYubiKey => "yubikey:".to_string(),
            KeySource::Remote(r) => r.to_string(),
        }
    }

    /// The key file a `file:` URI names.
    pub fn key_file(&self) -> Option<&Path> {
        match self {
            KeySource::File(f) => Some(&f.path),
            _ => None,
        }
    }

    fn refuse(&self, operation: &'static str, why: &'static str) -> KeyError {
        let backend = match self {
            KeySource::Pkcs11(_) => "PKCS#11",
            KeySource::File(_) => "file:",
            KeySource::YubiKey(_) | KeySource::EveryYubiKey => "YubiKey",
            KeySource::Remote(_) => "remote signer",
        };
        KeyError::NotSupported {
            uri: self.uri(),
            backend,
            operation,
            why,
        }
    }

    /// Opens the key to sign, logging in or decrypting as `policy` allows.
    pub fn signer(&self, policy: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
        match self {
            KeySource::Pkcs11(u) => Ok(Box::new(pkcs11::Pkcs11Signer::open(u, policy)?)),
            KeySource::File(f) => Ok(Box::new(file::FileSigner::open(&f.path, policy)?)),
            KeySource::YubiKey(y) => piv::signer(y, policy),
            KeySource::EveryYubiKey => Err(self.refuse(
                "used to sign",
                "name one slot, e.g. yubikey:slot=9c (and serial= when several are present)",
            )),
            KeySource::Remote(r) => Ok(Box::new(remote::RemoteSigner::open(r)?)),
        }
    }

    /// The public key, without a PIN where the backend allows: PKCS#11 public objects,
    /// the `.pub.json` beside a `file:` key (else the passphrase is needed), a YubiKey
    /// slot's certificate, the remote signer's key.
    pub fn public_key(&self, policy: &PinPolicy) -> Result<PublicKey, KeyError> {
        match self {
            KeySource::Pkcs11(u) => pkcs11::public_key(u),
            KeySource::File(f) => file::public_key(&f.path, policy),
            KeySource::YubiKey(y) => piv::public_key(y),
            KeySource::EveryYubiKey => Err(self.refuse(
                "shown as one key",
                "name one slot, e.g. yubikey:slot=9c, or list them with `tufkey key list yubikey:`",
            )),
            KeySource::Remote(r) => remote::public_key(r),
        }
    }

    /// The label and serial of the token that holds a PKCS#11 key (None for others).
    pub fn token(&self) -> Result<Option<(String, String)>, KeyError> {
        match self {
            KeySource::Pkcs11(u) => {
                let t = Token::open(u)?;
                Ok(Some((t.label.clone(), t.serial.clone())))
            }
            _ => Ok(None),
        }
    }

    /// The keys the source names: every key on the matching tokens, the keys in a
    /// folder of `file:` keys, one YubiKey slot or all of them.
    pub fn list(&self, policy: &PinPolicy) -> Result<Vec<ListedKey>, KeyError> {
        match self {
            KeySource::Pkcs11(u) => Ok(pkcs11::list_keys(u)?
                .into_iter()
                .map(|k| ListedKey {
                    uri: k.uri.to_string(),
                    public: k.public,
                })
                .collect()),
            KeySource::File(f) => Ok(file::list_folder(&f.path)?
                .into_iter()
                .map(|(uri, public)| ListedKey { uri, public })
                .collect()),
            KeySource::YubiKey(y) => Ok(vec![ListedKey {
                uri: y.to_string(),
                public: self.public_key(policy).map_err(|e| e.to_string()),
            }]),
            KeySource::EveryYubiKey => piv::list(),
            KeySource::Remote(_) => Err(self.refuse(
                "listed",
                "list a remote signer's keys with its API; this URI names one key",
            )),
        }
    }

    /// Makes a new key where the URI says: on the token (sensitive, not extractable),
    /// in the YubiKey slot, or in a new encrypted file (written atomically).
    pub fn generate(&self, opts: NewKeyOptions, policy: &PinPolicy) -> Result<NewKey, KeyError> {
        match self {
            KeySource::Pkcs11(u) => {
                let (uri, public) = pkcs11::generate(u, opts.key_type, policy)?;
                Ok(NewKey {
                    uri: uri.to_string(),
                    public,
                    made: "generated on the token a non-extractable",
                    file: None,
                })
            }
            KeySource::File(f) => {
                let public = file::generate(&f.path, opts.key_type, policy)?;
                Ok(NewKey {
                    uri: f.to_string(),
                    public,
                    made: "generated an encrypted",
                    file: Some(f.path.clone()),
                })
            }
            KeySource::YubiKey(y) => piv::generate(y, opts, policy),
            KeySource::EveryYubiKey => Err(self.refuse(
                "generated",
                "name the slot for the new key, e.g. yubikey:slot=9c",
            )),
            KeySource::Remote(_) => {
                Err(self.refuse("generated", "create keys on the signer's own device"))
            }
        }
    }

    /// Writes a software key into the device as a non-extractable key (a PKCS#11 token,
    /// or a YubiKey slot for P-256 keys with the slot's default PIN policy, no touch).
    pub fn import(&self, key: &file::SoftKey, policy: &PinPolicy) -> Result<NewKey, KeyError> {
        match self {
            KeySource::Pkcs11(u) => {
                let (uri, public) = pkcs11::import(u, key, policy)?;
                Ok(NewKey {
                    uri: uri.to_string(),
                    public,
                    made: "imported as a non-extractable",
                    file: None,
                })
            }
            KeySource::YubiKey(y) => piv::import(y, key, policy),
            _ => Err(self.refuse(
                "imported into",
                "import moves a key into a PKCS#11 token or a YubiKey slot; give a pkcs11: or yubikey: URI",
            )),
        }
    }

    /// Selects what deleting the key would destroy, for a person to confirm.
    pub fn deletion(&self, policy: &PinPolicy) -> Result<Deletion, KeyError> {
        match self {
            KeySource::Pkcs11(u) => pkcs11_deletion(u, policy),
            KeySource::File(f) => file_deletion(f),
            KeySource::YubiKey(_) | KeySource::EveryYubiKey => Err(self.refuse(
                "deleted",
                "tufkey does not delete or reset YubiKey slots; overwrite the slot with `tufkey key generate` or use ykman",
            )),
            KeySource::Remote(_) => Err(self.refuse(
                "deleted",
                "it belongs to a remote signer; its operator manages its keys",
            )),
        }
    }

    /// Whether the backend has a health check for `/healthz` (PKCS#11 tokens).
    pub fn has_health_check(&self) -> bool {
        matches!(self, KeySource::Pkcs11(_))
    }

    /// Whether the device behind the key can be used now, for the daemon's `/healthz`
    /// (Ok for backends without a check). Spends no PIN try; blocking.
    pub fn health(&self) -> Result<(), KeyError> {
        match self {
            KeySource::Pkcs11(u) => pkcs11::check_token(u),
            _ => Ok(()),
        }
    }

    /// Forgets the cached PIN of the token the URI names (PKCS#11 only); returns the
    /// token's label and whether a PIN was cached.
    pub fn forget_cached_pin(&self) -> Result<(String, bool), KeyError> {
        match self {
            KeySource::Pkcs11(u) => {
                let token = Token::open(&u.token_only())?;
                let removed = super::pin_cache::forget(&token.cache_key()).map_err(|reason| {
                    KeyError::PinSource {
                        source_name: "the OS keyring".into(),
                        reason,
                    }
                })?;
                Ok((token.label.clone(), removed))
            }
            _ => Err(self.refuse(
                "given a cached PIN",
                "only PKCS#11 PINs are cached; give a pkcs11: URI",
            )),
        }
    }

    /// The PIV attestation of a YubiKey key (see [`super::yubikey::attestation`]): the statement,
    /// and the slot and intermediate certificates (PEM) it was checked with. `extra_ca`:
    /// PEM of another root to trust (tests), empty for Yubico's own.
    pub fn attest(
        &self,
        extra_ca: &[u8],
    ) -> Result<(super::yubikey::attestation::Attestation, String, String), KeyError> {
        match self {
            KeySource::YubiKey(y) => piv::attest(y, extra_ca),
            _ => Err(self.refuse(
                "attested",
                "only YubiKey keys carry a PIV attestation; give a yubikey: URI",
            )),
        }
    }

    /// Checks an attestation recorded earlier (slot and intermediate certificates, PEM)
    /// against `public` without the device.
    pub fn verify_attestation(
        &self,
        slot_pem: &str,
        intermediate_pem: &str,
        extra_ca: &[u8],
        public: &PublicKey,
    ) -> Result<super::yubikey::attestation::Attestation, KeyError> {
        match self {
            KeySource::YubiKey(y) => {
                piv::verify_recorded(y, slot_pem, intermediate_pem, extra_ca, public)
            }
            _ => Err(self.refuse(
                "attested",
                "only YubiKey keys carry a PIV attestation; give a yubikey: URI",
            )),
        }
    }
}

impl std::str::FromStr for KeySource {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<KeySource, KeyError> {
        KeySource::parse(s)
    }
}

/// Lists the objects a PKCS#11 URI selects (after a login: private objects are private).
fn pkcs11_deletion(u: &Pkcs11Uri, policy: &PinPolicy) -> Result<Deletion, KeyError> {
    if u.object.is_none() && u.id.is_none() {
        return Err(KeyError::Unsupported {
            uri: u.to_string(),
            reason: "it names no key; add object= and/or id= so that only one key is deleted"
                .into(),
        });
    }
    let token = Token::open(u)?;
    token.login(u, policy)?;
    let objects = token.key_objects(u)?;
    if objects.is_empty() {
        return Err(KeyError::NoObject {
            uri: u.to_string(),
            token: token.label.clone(),
            present: "none that match".into(),
        });
    }
    let items: Vec<String> = objects.iter().map(|(_, d)| d.clone()).collect();
    let key_id = pkcs11::public_key(u).ok().map(|p| p.to_tuf_key().key_id());
    Ok(Deletion {
        header: Some(format!(
            "on token \"{}\" (serial {}):",
            token.label, token.serial
        )),
        prompt: format!(
            "Destroy these {} objects? A deleted key cannot be recovered",
            items.len()
        ),
        detail: format!(
            "destroyed on token \"{}\" (serial {}): {}",
            token.label,
            token.serial,
            items.join(", ")
        ),
        key_id,
        items,
        target: Target::Pkcs11 {
            handles: objects.iter().map(|(h, _)| *h).collect(),
            token,
        },
    })
}

fn file_deletion(f: &FileUri) -> Result<Deletion, KeyError> {
    if !f.path.exists() {
        return Err(KeyError::KeyFile {
            path: f.path.clone(),
            reason: "no such key file".into(),
        });
    }
    let key_id = file::public_key(&f.path, &PinPolicy::default())
        .ok()
        .map(|p| p.to_tuf_key().key_id());
    Ok(Deletion {
        header: None,
        items: vec![f.path.display().to_string()],
        prompt: format!(
            "Delete key file {} (this cannot be undone)?",
            f.path.display()
        ),
        key_id,
        detail: format!("deleted key file {}", f.path.display()),
        target: Target::File {
            path: f.path.clone(),
        },
    })
}

impl Deletion {
    /// Destroys what was listed: PKCS#11 objects only while each handle still names the
    /// object that was listed (see [`Token::destroy`]); a key file and its `.pub.json`.
    pub fn delete(self) -> Result<(), KeyError> {
        match self.target {
            Target::Pkcs11 { token, handles } => token.destroy(&handles),
            Target::File { path } => file::delete(&path),
        }
    }

    /// The key file that goes, for `file:` keys.
    pub fn file(&self) -> Option<&Path> {
        match &self.target {
            Target::File { path } => Some(path),
            Target::Pkcs11 { .. } => None,
        }
    }
}

/// The YubiKey backend, or the one refusal of a build without it.
#[cfg(feature = "yubikey")]
mod piv {
    use crate::keys::error::KeyError;
    use crate::keys::pin::PinPolicy;
    use crate::keys::signer::Signer;
    use crate::keys::source::{ListedKey, NewKey, NewKeyOptions};
    use crate::keys::uri::YubiKeyUri;
    use crate::keys::yubikey as backend;
    use crate::keys::yubikey::attestation::Attestation;
    use crate::tuf::PublicKey;

    pub fn signer(y: &YubiKeyUri, policy: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
        Ok(Box::new(backend::YubiKeySigner::open(y, policy)?))
    }

    pub fn public_key(y: &YubiKeyUri) -> Result<PublicKey, KeyError> {
        backend::public_key(y)
    }

    pub fn list() -> Result<Vec<ListedKey>, KeyError> {
        Ok(backend::list_keys()?
            .into_iter()
            .map(|(u, public)| ListedKey {
                uri: u.to_string(),
                public,
            })
            .collect())
    }

    pub fn generate(
        y: &YubiKeyUri,
        opts: NewKeyOptions,
        policy: &PinPolicy,
    ) -> Result<NewKey, KeyError> {
        let (uri, public) =
            backend::generate(y, opts.key_type, opts.pin_policy, opts.touch_policy, policy)?;
        Ok(NewKey {
            uri: uri.to_string(),
            public,
            made: "generated in the YubiKey slot a non-extractable",
            file: None,
        })
    }

    pub fn import(
        y: &YubiKeyUri,
        key: &crate::keys::file::SoftKey,
        policy: &PinPolicy,
    ) -> Result<NewKey, KeyError> {
        use crate::keys::piv_policy::{PivPinPolicy, PivTouchPolicy};
        let (uri, public) =
            backend::import(y, key, PivPinPolicy::Default, PivTouchPolicy::Never, policy)?;
        Ok(NewKey {
            uri: uri.to_string(),
            public,
            made: "imported into the YubiKey slot a non-extractable",
            file: None,
        })
    }

    pub fn attest(
        y: &YubiKeyUri,
        extra_ca: &[u8],
    ) -> Result<(Attestation, String, String), KeyError> {
        backend::attest(y, extra_ca)
    }

    pub fn verify_recorded(
        y: &YubiKeyUri,
        slot_pem: &str,
        intermediate_pem: &str,
        extra_ca: &[u8],
        public: &PublicKey,
    ) -> Result<Attestation, KeyError> {
        let spki = backend::spki_der(public).ok_or_else(|| KeyError::Unsupported {
            uri: y.to_string(),
            reason: "the key has no SubjectPublicKeyInfo".into(),
        })?;
        backend::verify_recorded(y, slot_pem, intermediate_pem, extra_ca, &spki)
    }
}

#[cfg(not(feature = "yubikey"))]
mod piv {
    use crate::keys::error::KeyError;
    use crate::keys::pin::PinPolicy;
    use crate::keys::signer::Signer;
    use crate::keys::source::{ListedKey, NewKey, NewKeyOptions};
    use crate::keys::uri::YubiKeyUri;
    use crate::keys::yubikey::attestation::Attestation;
    use crate::tuf::PublicKey;

    fn off(y: &YubiKeyUri) -> KeyError {
        KeyError::NotBuiltIn {
            uri: y.to_string(),
            feature: "yubikey",
        }
    }

    pub fn signer(y: &YubiKeyUri, _: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
        Err(off(y))
    }

    pub fn public_key(y: &YubiKeyUri) -> Result<PublicKey, KeyError> {
        Err(off(y))
    }

    pub fn list() -> Result<Vec<ListedKey>, KeyError> {
        Err(off(&YubiKeyUri {
            serial: None,
            slot: 0x9c,
        }))
    }

    pub fn generate(y: &YubiKeyUri, _: NewKeyOptions, _: &PinPolicy) -> Result<NewKey, KeyError> {
        Err(off(y))
    }

    pub fn import(
        y: &YubiKeyUri,
        _: &crate::keys::file::SoftKey,
        _: &PinPolicy,
    ) -> Result<NewKey, KeyError> {
        Err(off(y))
    }

    pub fn attest(y: &YubiKeyUri, _: &[u8]) -> Result<(Attestation, String, String), KeyError> {
        Err(off(y))
    }

    pub fn verify_recorded(
        y: &YubiKeyUri,
        _: &str,
        _: &str,
        _: &[u8],
        _: &PublicKey,
    ) -> Result<Attestation, KeyError> {
        Err(off(y))
    }
}
