//! Key objects on a token: public halves (readable without a login), the private key a
//! URI selects, and decoding EC points.

use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;
use crate::tuf::PublicKey;

use super::module::Live;
use super::token::Token;

/// DER of the P-256 curve OID, as CKA_EC_PARAMS.
pub(super) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID 1.3.101.112.
pub(super) const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// PrintableString "edwards25519", as pkcs11-tool writes CKA_EC_PARAMS for Ed25519.
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

impl Token {
    /// Key pairs on the token whose public object matches the URI's object attributes.
    /// Public objects are readable without a login.
    pub fn public_keys(&self, uri: &Pkcs11Uri) -> Result<Vec<KeyObject>, KeyError> {
        let live = self.enter()?;
        let session = self.session_in(&live)?;
        let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        add_selectors(&mut template, uri);
        let handles = session
            .find_objects(&template)
            .map_err(self.ck("C_FindObjects"))?;
        let mut out = Vec::new();
        for h in handles {
            out.push(self.describe_public(&session, h)?);
        }
        Ok(out)
    }

    fn describe_public(&self, session: &Session, h: ObjectHandle) -> Result<KeyObject, KeyError> {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::KeyType,
                ],
            )
            .map_err(self.ck("C_GetAttributeValue"))?;
        let mut label = String::new();
        let mut id = Vec::new();
        let mut kt = None;
        for a in attrs {
            match a {
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => id = i,
                Attribute::KeyType(k) => kt = Some(k),
                _ => {}
            }
        }
        let object_uri = Pkcs11Uri {
            object: Some(label.clone()),
            id: Some(id.clone()),
            ..self.uri()
        };
        let public = match kt {
            Some(k) if k == CkKeyType::EC || k == CkKeyType::EC_EDWARDS => {
                let a = session
                    .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
                    .map_err(self.ck("C_GetAttributeValue"))?;
                let (mut params, mut point) = (Vec::new(), Vec::new());
                for x in a {
                    match x {
                        Attribute::EcParams(p) => params = p,
                        Attribute::EcPoint(p) => point = p,
                        _ => {}
                    }
                }
                ec_public_key(&params, &point)
            }
            Some(k) if k == CkKeyType::RSA => {
                let a = session
                    .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
                    .map_err(self.ck("C_GetAttributeValue"))?;
                let (mut n, mut e) = (Vec::new(), Vec::new());
                for x in a {
                    match x {
                        Attribute::Modulus(v) => n = v,
                        Attribute::PublicExponent(v) => e = v,
                        _ => {}
                    }
                }
                rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                )
                .map(PublicKey::RsaPss)
                .map_err(|e| e.to_string())
            }
            other => Err(format!(
                "key type {other:?} is not supported (tufkey uses EC P-256, Ed25519 and RSA)"
            )),
        };
        Ok(KeyObject {
            label,
            id,
            uri: object_uri,
            public,
        })
    }

    /// The single private key the URI selects. Needs a login on tokens whose private
    /// objects are private (all of them, for keys tufkey makes).
    pub(super) fn private_key_in(
        &self,
        live: &Live<'_>,
        uri: &Pkcs11Uri,
    ) -> Result<(ObjectHandle, CkKeyType), KeyError> {
        let session = self.session_in(live)?;
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        add_selectors(&mut template, uri);
        let handles = session
            .find_objects(&template)
            .map_err(self.ck("C_FindObjects"))?;
        let describe = |h: ObjectHandle| -> String {
            let a = session
                .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                .unwrap_or_default();
            label_id(&a)
        };
        match handles.as_slice() {
            [] => {
                let present = self.list_objects_brief(&session);
                Err(KeyError::NoObject {
                    uri: uri.to_string(),
                    token: self.label.clone(),
                    present,
                })
            }
            [h] => {
                let kt = session
                    .get_attributes(*h, &[AttributeType::KeyType])
                    .map_err(self.ck("C_GetAttributeValue"))?
                    .into_iter()
                    .find_map(|a| {
                        if let Attribute::KeyType(k) = a {
                            Some(k)
                        } else {
                            None
                        }
                    })
                    .ok_or_else(|| KeyError::Unsupported {
                        uri: uri.to_string(),
                        reason: "the key has no CKA_KEY_TYPE".into(),
                    })?;
                Ok((*h, kt))
            }
            many => Err(KeyError::AmbiguousObject {
                uri: uri.to_string(),
                token: self.label.clone(),
                count: many.len(),
                matches: many
                    .iter()
                    .map(|h| describe(*h))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn list_objects_brief(&self, session: &Session) -> String {
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .unwrap_or_default();
        let handles = if handles.is_empty() {
            session
                .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
                .unwrap_or_default()
        } else {
            handles
        };
        if handles.is_empty() {
            return "none".into();
        }
        handles
            .iter()
            .map(|h| {
                label_id(
                    &session
                        .get_attributes(*h, &[AttributeType::Label, AttributeType::Id])
                        .unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn label_id(attrs: &[Attribute]) -> String {
    let mut label = String::new();
    let mut id = String::new();
    for a in attrs {
        match a {
            Attribute::Label(l) => label = String::from_utf8_lossy(l).into_owned(),
            Attribute::Id(i) => id = hex::encode(i),
            _ => {}
        }
    }
    format!("object={label} id={id}")
}

pub(super) fn add_selectors(template: &mut Vec<Attribute>, uri: &Pkcs11Uri) {
    if let Some(l) = &uri.object {
        template.push(Attribute::Label(l.clone().into_bytes()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
}

/// Decodes CKA_EC_POINT (DER OCTET STRING, or the raw point some tokens return) for
/// P-256 or Ed25519, chosen by CKA_EC_PARAMS.
fn ec_public_key(params: &[u8], point: &[u8]) -> Result<PublicKey, String> {
    let unwrap = |raw_len: usize| -> Result<&[u8], String> {
        if point.len() == raw_len {
            Ok(point)
        } else if point.len() == raw_len + 2 && point[0] == 0x04 && point[1] as usize == raw_len {
            Ok(&point[2..])
        } else {
            Err(format!(
                "CKA_EC_POINT has unexpected length {}",
                point.len()
            ))
        }
    };
    if params == P256_PARAMS {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(unwrap(65)?)
            .map(PublicKey::EcdsaP256)
            .map_err(|e| format!("bad P-256 point: {e}"))
    } else if params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS {
        let raw: [u8; 32] = unwrap(32)?
            .try_into()
            .map_err(|_| "bad Ed25519 point".to_string())?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(PublicKey::Ed25519)
            .map_err(|e| format!("bad Ed25519 point: {e}"))
    } else {
        Err(format!(
            "curve with CKA_EC_PARAMS {} is not supported (P-256 and Ed25519 are)",
            hex::encode(params)
        ))
    }
}

/// A key pair found on a token.
#[derive(Debug, Clone)]
pub struct KeyObject {
    pub label: String,
    pub id: Vec<u8>,
    /// A URI naming exactly this key (module, token label and serial, object, id).
    pub uri: Pkcs11Uri,
    /// The public key, or why it could not be read.
    pub public: Result<PublicKey, String>,
}

/// The public key of the one key pair a URI names (no login: public objects). No key,
/// or several, is an error that lists what the token holds.
pub fn public_key(u: &Pkcs11Uri) -> Result<PublicKey, KeyError> {
    let token = Token::open(u)?;
    let mut keys = token.public_keys(u)?;
    match keys.len() {
        0 => Err(KeyError::NoObject {
            uri: u.to_string(),
            token: token.label.clone(),
            present: describe(&token.public_keys(&u.token_only())?),
        }),
        1 => keys
            .remove(0)
            .public
            .map_err(|reason| KeyError::Unsupported {
                uri: u.to_string(),
                reason,
            }),
        n => Err(KeyError::AmbiguousObject {
            uri: u.to_string(),
            token: token.label.clone(),
            count: n,
            matches: describe(&keys),
        }),
    }
}

/// "object=a id=01, object=b id=02", or "none".
fn describe(keys: &[KeyObject]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(|k| format!("object={} id={}", k.label, hex::encode(&k.id)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_in_both_encodings() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let raw = sk
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&raw);
        for p in [&raw, &wrapped] {
            assert!(
                matches!(ec_public_key(P256_PARAMS, p), Ok(PublicKey::EcdsaP256(k)) if k == *sk.verifying_key())
            );
        }
        let ed = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let mut w = vec![0x04, 32];
        w.extend_from_slice(ed.verifying_key().as_bytes());
        for params in [ED25519_OID_PARAMS, ED25519_NAME_PARAMS] {
            assert!(matches!(
                ec_public_key(params, &w),
                Ok(PublicKey::Ed25519(_))
            ));
        }
        assert!(ec_public_key(&[0x06, 0x01, 0x00], &raw).is_err());
    }
}
