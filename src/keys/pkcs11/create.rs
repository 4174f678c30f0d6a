//! Making keys on a token: generating key pairs and importing software keys, never
//! over an existing label or id.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass};
use cryptoki::session::Session;
use rand_core::RngCore;

use crate::keys::error::KeyError;
use crate::keys::file::SoftKey;
use crate::keys::pin::PinPolicy;
use crate::keys::uri::Pkcs11Uri;
use crate::tuf::{KeyType, PublicKey};

use super::mechanisms::Making;
use super::objects::{label_id, ED25519_OID_PARAMS, P256_PARAMS};
use super::token::Token;

impl Token {
    /// Refuses when any object already has this label or id, so a URI stays unambiguous.
    fn ensure_free(&self, session: &Session, uri: &Pkcs11Uri) -> Result<(), KeyError> {
        let mut clashes = Vec::new();
        for attr in [
            uri.object.clone().map(|l| Attribute::Label(l.into_bytes())),
            uri.id.clone().map(Attribute::Id),
        ]
        .into_iter()
        .flatten()
        {
            for h in session
                .find_objects(&[attr])
                .map_err(self.ck("C_FindObjects"))?
            {
                let a = session
                    .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                    .unwrap_or_default();
                clashes.push(label_id(&a));
            }
        }
        if clashes.is_empty() {
            Ok(())
        } else {
            clashes.dedup();
            Err(KeyError::ObjectExists {
                uri: uri.to_string(),
                token: self.label.clone(),
                existing: clashes.join(", "),
            })
        }
    }
}

fn fresh_id() -> Vec<u8> {
    let mut id = vec![0u8; 8];
    rand_core::OsRng.fill_bytes(&mut id);
    id
}

pub(super) fn object_uri(token: &Token, uri: &Pkcs11Uri, id: Vec<u8>) -> Pkcs11Uri {
    Pkcs11Uri {
        object: uri.object.clone(),
        id: Some(id),
        pin_source: uri.pin_source.clone(),
        module_path: uri
            .module_path
            .clone()
            .or_else(|| Some(token.module_path.clone())),
        ..token.uri()
    }
}

fn private_template(label: &[u8], id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

fn public_template(label: &[u8], id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// Creates a key on the token the URI names: checks, before any PIN, that the token has
/// the mechanisms a `key_type` key needs, logs in, opens a read-write session,
/// checks that no object uses the label or id yet, and hands `make` the session and the
/// public and private templates (label, id and the key-pair attributes). Returns a URI
/// naming the new key and its public key, read back from the token.
fn new_key(
    uri: &Pkcs11Uri,
    (key_type, making): (KeyType, Making),
    policy: &PinPolicy,
    make: impl FnOnce(&Session, Vec<Attribute>, Vec<Attribute>) -> Result<(), KeyError>,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    let label = uri
        .object
        .clone()
        .ok_or_else(|| KeyError::NeedsObjectName {
            uri: uri.to_string(),
        })?;
    let token = Token::open(uri)?;
    token.require_mechanisms(uri, key_type, making)?;
    token.login(uri, policy)?;
    let id = uri.id.clone().unwrap_or_else(fresh_id);
    {
        let live = token.enter()?;
        let session = token.rw_session_in(&live)?;
        token.ensure_free(&session, uri)?;
        make(
            &session,
            public_template(label.as_bytes(), &id),
            private_template(label.as_bytes(), &id),
        )?;
    }
    let new_uri = object_uri(&token, uri, id);
    let key = read_back(&token, &new_uri)?;
    Ok((new_uri, key))
}

/// Generates a key pair on the token: the private key is Sensitive and not
/// Extractable. Returns a URI naming the new key and its public key.
pub fn generate(
    uri: &Pkcs11Uri,
    key_type: KeyType,
    policy: &PinPolicy,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    let making = (key_type, Making::Generate);
    new_key(uri, making, policy, |session, mut pub_t, priv_t| {
        let mech = match key_type {
            KeyType::EcdsaP256 => {
                pub_t.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyType::Ed25519 => {
                pub_t.push(Attribute::EcParams(ED25519_OID_PARAMS.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            KeyType::Rsa3072 | KeyType::Rsa2048 => {
                let bits: u64 = if key_type == KeyType::Rsa3072 {
                    3072
                } else {
                    2048
                };
                pub_t.push(Attribute::ModulusBits(bits.into()));
                pub_t.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        session
            .generate_key_pair(&mech, &pub_t, &priv_t)
            .map(|_| ())
            .map_err(|source| KeyError::Pkcs11 {
                op: "C_GenerateKeyPair",
                uri: uri.to_string(),
                err: source,
            })
    })
}

fn read_back(token: &Token, uri: &Pkcs11Uri) -> Result<PublicKey, KeyError> {
    let mut keys = token.public_keys(uri)?;
    match keys.pop() {
        Some(k) if keys.is_empty() => k.public.map_err(|reason| KeyError::Unsupported {
            uri: uri.to_string(),
            reason,
        }),
        _ => Err(KeyError::Unsupported {
            uri: uri.to_string(),
            reason: "the new key could not be read back".into(),
        }),
    }
}

/// Writes a software key into the token as a non-extractable private key plus its
/// public key object (for migrating keys into hardware).
pub fn import(
    uri: &Pkcs11Uri,
    key: &SoftKey,
    policy: &PinPolicy,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let key_type = match key {
        SoftKey::EcdsaP256(_) => KeyType::EcdsaP256,
        SoftKey::Ed25519(_) => KeyType::Ed25519,
        SoftKey::Rsa(k) if k.size() <= 256 => KeyType::Rsa2048,
        SoftKey::Rsa(_) => KeyType::Rsa3072,
    };
    let making = (key_type, Making::Import);
    new_key(uri, making, policy, |session, mut pub_t, mut priv_t| {
        pub_t.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        priv_t.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let octet = |p: &[u8]| {
            let mut v = vec![0x04, p.len() as u8];
            v.extend_from_slice(p);
            v
        };
        match key {
            SoftKey::EcdsaP256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::EcPoint(octet(point.as_bytes())),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::Value(k.to_bytes().to_vec()),
                ]);
            }
            SoftKey::Ed25519(k) => {
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_OID_PARAMS.to_vec()),
                    Attribute::EcPoint(octet(k.verifying_key().as_bytes())),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_OID_PARAMS.to_vec()),
                    Attribute::Value(k.to_bytes().to_vec()),
                ]);
            }
            SoftKey::Rsa(k) => {
                let mut k = (**k).clone();
                k.precompute().map_err(|e| KeyError::Unsupported {
                    uri: uri.to_string(),
                    reason: e.to_string(),
                })?;
                let primes = k.primes();
                if primes.len() != 2 {
                    return Err(KeyError::Unsupported {
                        uri: uri.to_string(),
                        reason: "multi-prime RSA keys cannot be imported".into(),
                    });
                }
                let missing = || KeyError::Unsupported {
                    uri: uri.to_string(),
                    reason: "RSA CRT values missing".into(),
                };
                let n = k.n().to_bytes_be();
                let e = k.e().to_bytes_be();
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::RSA),
                    Attribute::Modulus(n.clone()),
                    Attribute::PublicExponent(e.clone()),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::RSA),
                    Attribute::Modulus(n),
                    Attribute::PublicExponent(e),
                    Attribute::PrivateExponent(k.d().to_bytes_be()),
                    Attribute::Prime1(primes[0].to_bytes_be()),
                    Attribute::Prime2(primes[1].to_bytes_be()),
                    Attribute::Exponent1(k.dp().ok_or_else(missing)?.to_bytes_be()),
                    Attribute::Exponent2(k.dq().ok_or_else(missing)?.to_bytes_be()),
                    Attribute::Coefficient(k.crt_coefficient().ok_or_else(missing)?.to_bytes_be()),
                ]);
            }
        }
        let ck = |source| KeyError::Pkcs11 {
            op: "C_CreateObject",
            uri: uri.to_string(),
            err: source,
        };
        let priv_h = session.create_object(&priv_t).map_err(ck)?;
        if let Err(e) = session.create_object(&pub_t) {
            let _ = session.destroy_object(priv_h);
            return Err(ck(e));
        }
        Ok(())
    })
}
