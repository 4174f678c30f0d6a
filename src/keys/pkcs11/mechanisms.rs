//! What a token can do, asked before any PIN: implementations differ (a TPM 2.0 token
//! through tpm2-pkcs11 has no Ed25519, takes RSA only up to its TPM's sizes and imports
//! no private keys through PKCS#11), and a
//! raw "C_GenerateKeyPair failed: CKR_MECHANISM_INVALID" after the PIN was spent tells a
//! user neither why nor what to choose instead.

use cryptoki::mechanism::{MechanismInfo, MechanismType};

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;
use crate::tuf::KeyType;

use super::implementation::Implementation;
use super::token::Token;

/// Every key type tufkey can make on a PKCS#11 token, in the order it suggests them.
const ALL: [KeyType; 4] = [
    KeyType::EcdsaP256,
    KeyType::Ed25519,
    KeyType::Rsa3072,
    KeyType::Rsa2048,
];

/// Why a key is wanted on the token: generated there, or imported into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Making {
    Generate,
    Import,
}

/// The mechanisms (with the name PKCS#11 gives them) a key of this type needs: to be
/// generated on the token (only when generating) and to sign as tufkey signs.
fn needs(key_type: KeyType, making: Making) -> Vec<(MechanismType, &'static str)> {
    let (gen, sign) = match key_type {
        KeyType::EcdsaP256 => (
            (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
            (MechanismType::ECDSA, "CKM_ECDSA"),
        ),
        KeyType::Ed25519 => (
            (
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                "CKM_EC_EDWARDS_KEY_PAIR_GEN",
            ),
            (MechanismType::EDDSA, "CKM_EDDSA"),
        ),
        KeyType::Rsa3072 | KeyType::Rsa2048 => (
            (
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                "CKM_RSA_PKCS_KEY_PAIR_GEN",
            ),
            (
                MechanismType::SHA256_RSA_PKCS_PSS,
                "CKM_SHA256_RSA_PKCS_PSS",
            ),
        ),
    };
    match making {
        Making::Generate => vec![gen, sign],
        Making::Import => vec![sign],
    }
}

/// What C_GetMechanismInfo says about one mechanism, as far as tufkey asks.
#[derive(Debug, Clone, Copy)]
struct Offer {
    generate_key_pair: bool,
    sign: bool,
    /// Key sizes (bits for RSA); a maximum of 0 means "not stated".
    min: usize,
    max: usize,
}

impl From<MechanismInfo> for Offer {
    fn from(i: MechanismInfo) -> Offer {
        Offer {
            generate_key_pair: i.generate_key_pair(),
            sign: i.sign(),
            min: i.min_key_size(),
            max: i.max_key_size(),
        }
    }
}

fn rsa_bits(key_type: KeyType) -> Option<usize> {
    match key_type {
        KeyType::Rsa3072 => Some(3072),
        KeyType::Rsa2048 => Some(2048),
        KeyType::EcdsaP256 | KeyType::Ed25519 => None,
    }
}

/// What is missing for `key_type` among the token's mechanisms, in words; `None` when
/// nothing is. `info` answers C_GetMechanismInfo for a listed mechanism.
fn missing(
    key_type: KeyType,
    making: Making,
    listed: &[MechanismType],
    info: &dyn Fn(MechanismType) -> Option<Offer>,
) -> Option<String> {
    let mut gaps = Vec::new();
    for (mech, name) in needs(key_type, making) {
        if !listed.contains(&mech) {
            gaps.push(format!("it does not offer {name}"));
            continue;
        }
        let Some(i) = info(mech) else { continue };
        let generating = mech == needs(key_type, Making::Generate)[0].0;
        if generating && making == Making::Generate && !i.generate_key_pair {
            gaps.push(format!("its {name} cannot generate key pairs"));
        } else if !generating && !i.sign {
            gaps.push(format!("its {name} cannot sign"));
        }
        // Modules state RSA sizes in bits.
        if let Some(bits) = rsa_bits(key_type) {
            let (min, max) = (i.min, i.max);
            if max != 0 && (bits < min || bits > max) {
                gaps.push(format!("its {name} takes {min}- to {max}-bit keys"));
            }
        }
    }
    (!gaps.is_empty()).then(|| gaps.join(", "))
}

impl Token {
    /// Refuses, before any login, a key type this token cannot generate (or, for an
    /// import, cannot sign with), saying what the token lacks and which key types it
    /// can make instead.
    pub(super) fn require_mechanisms(
        &self,
        uri: &Pkcs11Uri,
        key_type: KeyType,
        making: Making,
    ) -> Result<(), KeyError> {
        let live = self.enter()?;
        let slot = self.slot_in(&live)?;
        let p = live.p11();
        if making == Making::Import && Implementation::of(p) == Implementation::Tpm2Pkcs11 {
            return Err(KeyError::Unsupported {
                uri: uri.to_string(),
                reason: format!(
                    "token \"{label}\" is a TPM 2.0 token (tpm2-pkcs11), which cannot create \
                     private key objects through PKCS#11 (its C_CreateObject takes only public \
                     keys and data). No PIN was asked for or spent. Import the key with \
                     tpm2-pkcs11's own tool, `tpm2_ptool import --label {label} --key-label \
                     NAME --algorithm ecc|rsa --privkey FILE.pem --userpin PIN` (on the signer \
                     machine alone: the PIN is in its arguments), then name it pkcs11:token={label};object=NAME",
                    label = self.label
                ),
            });
        }
        let listed = p
            .get_mechanism_list(slot)
            .map_err(self.ck("C_GetMechanismList"))?;
        let info = |m: MechanismType| p.get_mechanism_info(slot, m).ok().map(Offer::from);
        let Some(gap) = missing(key_type, making, &listed, &info) else {
            return Ok(());
        };
        let possible: Vec<&str> = ALL
            .into_iter()
            .filter(|t| missing(*t, making, &listed, &info).is_none())
            .map(KeyType::as_str)
            .collect();
        let instead = if possible.is_empty() {
            "it can make none of tufkey's key types; use another token".to_string()
        } else {
            format!(
                "choose one it can make (--type {}) or a token that supports {key_type}",
                possible.join(", --type ")
            )
        };
        let verb = match making {
            Making::Generate => "generate an",
            Making::Import => "sign with an imported",
        };
        Err(KeyError::Unsupported {
            uri: uri.to_string(),
            reason: format!(
                "token \"{}\" ({}) cannot {verb} {key_type} key: {gap}. No PIN was asked for \
                 or spent; {instead}",
                self.label,
                self.module_path.display()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_without_eddsa_lacks_ed25519_and_says_which_mechanisms() {
        let tpm_like = [
            MechanismType::ECC_KEY_PAIR_GEN,
            MechanismType::ECDSA,
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA256_RSA_PKCS_PSS,
        ];
        let no_info = |_| None;
        let gap = missing(KeyType::Ed25519, Making::Generate, &tpm_like, &no_info).unwrap();
        assert_eq!(
            gap,
            "it does not offer CKM_EC_EDWARDS_KEY_PAIR_GEN, it does not offer CKM_EDDSA"
        );
        assert_eq!(
            missing(KeyType::Ed25519, Making::Import, &tpm_like, &no_info).unwrap(),
            "it does not offer CKM_EDDSA"
        );
        for t in [KeyType::EcdsaP256, KeyType::Rsa2048, KeyType::Rsa3072] {
            assert_eq!(
                missing(t, Making::Generate, &tpm_like, &no_info),
                None,
                "{t}"
            );
        }
    }

    #[test]
    fn an_rsa_size_outside_the_stated_range_and_a_mechanism_that_cannot_sign_are_named() {
        let listed = [
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::SHA256_RSA_PKCS_PSS,
        ];
        let up_to_2048 = |m: MechanismType| {
            Some(Offer {
                generate_key_pair: m == MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                sign: m == MechanismType::SHA256_RSA_PKCS_PSS,
                min: 1024,
                max: 2048,
            })
        };
        assert_eq!(
            missing(KeyType::Rsa2048, Making::Generate, &listed, &up_to_2048),
            None
        );
        assert_eq!(
            missing(KeyType::Rsa3072, Making::Generate, &listed, &up_to_2048).unwrap(),
            "its CKM_RSA_PKCS_KEY_PAIR_GEN takes 1024- to 2048-bit keys, \
             its CKM_SHA256_RSA_PKCS_PSS takes 1024- to 2048-bit keys"
        );
        let verify_only = |_| {
            Some(Offer {
                generate_key_pair: true,
                sign: false,
                min: 0,
                max: 0,
            })
        };
        assert_eq!(
            missing(KeyType::Rsa3072, Making::Import, &listed, &verify_only).unwrap(),
            "its CKM_SHA256_RSA_PKCS_PSS cannot sign"
        );
    }
}
