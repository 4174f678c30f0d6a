//! Tokens and keys of a module, for `token list` and `key list` (no login).

use std::path::Path;

use serde::Serialize;

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;

use super::implementation::Implementation;
use super::module::{load, module_path};
use super::objects::KeyObject;
use super::pin_rules::PinState;
use super::token::Token;

/// What `token list` shows about a token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSummary {
    pub slot_id: u64,
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub pin: PinState,
    /// A URI naming this token.
    pub uri: String,
}

/// Every initialised token of the module at `path`.
pub fn list_tokens(path: &Path) -> Result<Vec<TokenSummary>, KeyError> {
    let m = load(path)?;
    let live = m.enter().map_err(|reason| KeyError::Module {
        path: path.into(),
        reason,
    })?;
    let p = live.p11();
    let ck = |op| {
        move |source| KeyError::Pkcs11 {
            op,
            uri: format!("module {}", path.display()),
            err: source,
        }
    };
    let implementation = Implementation::of(p);
    let mut out = Vec::new();
    for slot in p.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        let info = p.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if !info.token_initialized() {
            continue;
        }
        let uri = Pkcs11Uri {
            token: Some(info.label().trim_end().to_string()),
            serial: Some(info.serial_number().trim_end().to_string()),
            module_path: Some(path.to_path_buf()),
            ..Default::default()
        };
        out.push(TokenSummary {
            slot_id: slot.id(),
            label: info.label().trim_end().to_string(),
            serial: info.serial_number().trim_end().to_string(),
            manufacturer: info.manufacturer_id().trim_end().to_string(),
            // tpm2-pkcs11 pads the TPM's model with NULs.
            model: info.model().trim_end_matches([' ', '\0']).to_string(),
            pin: PinState::from_info(&info).as_reported_by(implementation),
            uri: uri.to_string(),
        });
    }
    Ok(out)
}

/// Public keys on every token of a module (no login needed), optionally narrowed by URI.
pub fn list_keys(filter: &Pkcs11Uri) -> Result<Vec<KeyObject>, KeyError> {
    let path = module_path(filter)?;
    let mut out = Vec::new();
    for t in list_tokens(&path)? {
        let token_filter = Pkcs11Uri {
            slot_id: Some(t.slot_id),
            module_path: Some(path.clone()),
            ..filter.clone()
        };
        let token = match Token::open(&token_filter) {
            Ok(t) => t,
            Err(KeyError::NoToken { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.extend(token.public_keys(filter)?);
    }
    Ok(out)
}
