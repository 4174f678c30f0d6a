//! [`Token`]: one token of a module, shared by every key on it, found by label and serial.
//! Its other concerns live beside it: `pool.rs`, `login.rs`,
//! `recovery.rs`, `objects.rs`, `destroy.rs` and `create.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::error::Error as CkError;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;

use super::answers::brief;
use super::module::{load, module_path, Live, Module};
use super::state::lock;
use super::state::Backoff;
use super::state::Listed;
use super::state::LoginState;

/// One token of a module, shared by every key on it in this process: its sessions, its
/// login and its state. It is known by label and serial; its slot is looked up again
/// after the module is re-initialised (slot ids can change).
pub struct Token {
    pub(super) module: Arc<Module>,
    pub(super) module_path: PathBuf,
    pub label: String,
    pub serial: String,
    /// The slot as of a module generation.
    pub(super) slot: Mutex<Option<(u64, Slot)>>,
    /// Idle sessions with the module generation they were opened in. They are opened
    /// without close-on-drop: one of an older generation is simply dropped (C_Finalize
    /// closed it, and its handle number may belong to a newer session by now).
    pub(super) idle: Mutex<Vec<(u64, Session)>>,
    pub(super) login: Mutex<LoginState>,
    /// Why the token is unavailable, from the failure that showed it; `None` when fine.
    pub(super) down: Mutex<Option<String>>,
    /// When an absent token may ask for the next module re-initialisation.
    pub(super) backoff: Mutex<Backoff>,
    /// What [`Token::key_objects`] returned last, with the module generation of its
    /// handles: [`Token::destroy`] destroys only these, and only while each handle still
    /// names the object that was listed.
    pub(super) listed: Mutex<Option<(u64, Vec<Listed>)>>,
}

/// Open tokens by (module path, label, serial): keys on one token share its sessions
/// and login.
type TokenMap = Mutex<HashMap<(PathBuf, String, String), Arc<Token>>>;

pub(super) fn tokens() -> &'static TokenMap {
    static TOKENS: OnceLock<TokenMap> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

fn matches_token(uri: &Pkcs11Uri, slot: Slot, info: &cryptoki::slot::TokenInfo) -> bool {
    let eq =
        |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have.trim_end());
    eq(&uri.token, info.label())
        && eq(&uri.serial, info.serial_number())
        && eq(&uri.manufacturer, info.manufacturer_id())
        && eq(&uri.model, info.model())
        && uri.slot_id.is_none_or(|s| s == slot.id())
}

impl Token {
    /// The one token the URI's token attributes select. No token, or several, is an
    /// error that lists what is there.
    pub fn open(uri: &Pkcs11Uri) -> Result<Arc<Token>, KeyError> {
        let path = module_path(uri)?;
        let module = load(&path)?;
        let shown = uri.to_string();
        let live = module
            .enter()
            .map_err(|reason| KeyError::DeviceUnavailable {
                uri: shown.clone(),
                token: uri.token.clone().unwrap_or_else(|| "?".into()),
                serial: uri.serial.clone().unwrap_or_else(|| "?".into()),
                reason,
            })?;
        let p = live.p11();
        let ck = |op| {
            move |source| KeyError::Pkcs11 {
                op,
                uri: uri.to_string(),
                err: source,
            }
        };
        let mut found = Vec::new();
        let mut present = Vec::new();
        for slot in p.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
            // A token that does not answer (e.g. one that went away) is not the only
            // one: list it and look at the others.
            let info = match p.get_token_info(slot) {
                Ok(info) => info,
                Err(e) => {
                    present.push(format!(
                        "slot {} ({})",
                        slot.id(),
                        brief(&ck("C_GetTokenInfo")(e))
                    ));
                    continue;
                }
            };
            if !info.token_initialized() {
                continue;
            }
            present.push(format!(
                "\"{}\" (serial {})",
                info.label().trim_end(),
                info.serial_number().trim_end()
            ));
            if matches_token(uri, slot, &info) {
                found.push((slot, info));
            }
        }
        match found.len() {
            0 => Err(KeyError::NoToken {
                uri: shown,
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }),
            1 => {
                let (slot, info) = found.remove(0);
                let label = info.label().trim_end().to_string();
                let serial = info.serial_number().trim_end().to_string();
                let mut map = lock(tokens());
                let token = map
                    .entry((path.clone(), label.clone(), serial.clone()))
                    .or_insert_with(|| {
                        Arc::new(Token {
                            module: module.clone(),
                            module_path: path.clone(),
                            label,
                            serial,
                            slot: Mutex::new(None),
                            idle: Mutex::new(Vec::new()),
                            login: Mutex::new(LoginState::default()),
                            down: Mutex::new(None),
                            backoff: Mutex::new(Backoff::default()),
                            listed: Mutex::new(None),
                        })
                    })
                    .clone();
                *lock(&token.slot) = Some((live.generation(), slot));
                Ok(token)
            }
            n => Err(KeyError::AmbiguousToken {
                uri: shown,
                count: n,
                matches: found
                    .iter()
                    .map(|(s, i)| {
                        format!(
                            "\"{}\" serial {} slot-id {}",
                            i.label().trim_end(),
                            i.serial_number().trim_end(),
                            s.id()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// A URI naming exactly this token.
    pub fn uri(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(self.label.clone()),
            serial: Some(self.serial.clone()),
            module_path: Some(self.module_path.clone()),
            ..Default::default()
        }
    }

    pub(super) fn ck(&self, op: &'static str) -> impl FnOnce(CkError) -> KeyError + '_ {
        move |source| KeyError::Pkcs11 {
            op,
            uri: self.uri().to_string(),
            err: source,
        }
    }

    /// The error for this token being unavailable, naming `uri`.
    pub(super) fn unavailable(&self, uri: &str, reason: String) -> KeyError {
        KeyError::DeviceUnavailable {
            uri: uri.to_string(),
            token: self.label.clone(),
            serial: self.serial.clone(),
            reason,
        }
    }

    /// The module, initialised, for the duration of a sequence of calls.
    pub(super) fn enter(&self) -> Result<Live<'_>, KeyError> {
        self.module
            .enter()
            .map_err(|why| self.unavailable(&self.uri().to_string(), why))
    }

    /// This token's slot in the module's current generation, found again by label and
    /// serial after a re-initialisation.
    pub(super) fn slot_in(&self, live: &Live<'_>) -> Result<Slot, KeyError> {
        let generation = live.generation();
        if let Some((g, slot)) = *lock(&self.slot) {
            if g == generation {
                return Ok(slot);
            }
        }
        let p = live.p11();
        let slots = p.get_slots_with_token().map_err(|e| {
            self.unavailable(&self.uri().to_string(), format!("C_GetSlotList: {e}"))
        })?;
        let mut present = Vec::new();
        for slot in slots {
            match p.get_token_info(slot) {
                Ok(info) if info.token_initialized() => {
                    let (l, s) = (info.label().trim_end(), info.serial_number().trim_end());
                    if l == self.label && s == self.serial {
                        *lock(&self.slot) = Some((generation, slot));
                        return Ok(slot);
                    }
                    present.push(format!("\"{l}\" (serial {s})"));
                }
                Ok(_) => {}
                Err(e) => present.push(format!(
                    "slot {} ({})",
                    slot.id(),
                    brief(&self.ck("C_GetTokenInfo")(e))
                )),
            }
        }
        Err(self.unavailable(
            &self.uri().to_string(),
            format!(
                "the module lists no token with this label and serial (tokens present: {})",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        ))
    }
}
