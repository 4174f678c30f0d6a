//! Deleting keys: objects are listed first, and destroyed only while each handle still
//! names the object that was listed and confirmed.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;

use super::objects::{add_selectors, label_id};
use super::state::{lock, Listed};
use super::token::Token;

impl Token {
    /// Every key object (public and private) the URI selects, for deletion. Needs a login.
    /// The handles are valid until the module is re-initialised ([`Token::destroy`]
    /// refuses them after that, and refuses any handle that no longer names the object
    /// listed here).
    pub fn key_objects(&self, uri: &Pkcs11Uri) -> Result<Vec<(ObjectHandle, String)>, KeyError> {
        let live = self.enter()?;
        let session = self.session_in(&live)?;
        let mut out = Vec::new();
        let mut listed = Vec::new();
        for (class, name) in [
            (ObjectClass::PRIVATE_KEY, "private key"),
            (ObjectClass::PUBLIC_KEY, "public key"),
        ] {
            let mut template = vec![Attribute::Class(class)];
            add_selectors(&mut template, uri);
            for h in session
                .find_objects(&template)
                .map_err(self.ck("C_FindObjects"))?
            {
                let seen = self.identify(&session, h)?;
                let a = [
                    Attribute::Label(seen.label.clone()),
                    Attribute::Id(seen.id.clone()),
                ];
                out.push((h, format!("{name} {}", label_id(&a))));
                listed.push(seen);
            }
        }
        *lock(&self.listed) = Some((live.generation(), listed));
        Ok(out)
    }

    /// The class, label and id of the object `h` names now.
    fn identify(&self, session: &Session, h: ObjectHandle) -> Result<Listed, KeyError> {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(self.ck("C_GetAttributeValue"))?;
        let mut seen = Listed {
            handle: h,
            class: None,
            label: Vec::new(),
            id: Vec::new(),
        };
        for a in attrs {
            match a {
                Attribute::Class(c) => seen.class = Some(c),
                Attribute::Label(l) => seen.label = l,
                Attribute::Id(i) => seen.id = i,
                _ => {}
            }
        }
        Ok(seen)
    }

    /// Destroys objects found by [`Token::key_objects`]. Before each C_DestroyObject the
    /// handle's class, label and id are read again and must be those listed (and shown
    /// for confirmation): an HSM that restarted meanwhile may have given the handle
    /// number to another object. Nothing is destroyed when one of them differs up front.
    pub fn destroy(&self, handles: &[ObjectHandle]) -> Result<(), KeyError> {
        let live = self.enter()?;
        let stale = |reason: String| KeyError::Unsupported {
            uri: self.uri().to_string(),
            reason,
        };
        let listed = match lock(&self.listed).clone() {
            Some((g, l)) if g == live.generation() => l,
            Some(_) => return Err(stale("the PKCS#11 module was re-initialised after the keys were listed, so their handles are stale; nothing was deleted: run the command again".into())),
            None => return Err(stale("the keys to delete were not listed first; nothing was deleted".into())),
        };
        let s = self.rw_session_in(&live)?;
        let expected = |h: &ObjectHandle| listed.iter().find(|l| l.handle == *h);
        let verify = |h: &ObjectHandle| -> Result<(), KeyError> {
            let want = expected(h).ok_or_else(|| {
                stale(format!(
                    "object handle {h} is not one of the objects listed for deletion; nothing more was deleted"
                ))
            })?;
            let now = self.identify(&s, *h)?;
            if now != *want {
                let show = |l: &Listed| {
                    format!(
                        "{} {}",
                        match l.class {
                            Some(c) if c == ObjectClass::PRIVATE_KEY => "private key",
                            Some(c) if c == ObjectClass::PUBLIC_KEY => "public key",
                            _ => "object",
                        },
                        label_id(&[
                            Attribute::Label(l.label.clone()),
                            Attribute::Id(l.id.clone())
                        ])
                    )
                };
                return Err(stale(format!(
                    "object handle {h} now names {}, not the {} that was listed and confirmed (did the HSM restart?); it was not deleted: run the command again",
                    show(&now),
                    show(want)
                )));
            }
            Ok(())
        };
        // All of them first: nothing is deleted when one already differs.
        for h in handles {
            verify(h)?;
        }
        for h in handles {
            verify(h)?;
            s.destroy_object(*h).map_err(self.ck("C_DestroyObject"))?;
        }
        *lock(&self.listed) = None;
        Ok(())
    }
}
