//! Which PKCS#11 implementation a module is, where its PIN rules differ from the
//! standard flags: tpm2-pkcs11 (a TPM 2.0 as a token) reports no retry counter at all
//! and locks by the TPM's dictionary-attack protection, which an SO PIN cannot lift.

use cryptoki::context::Pkcs11;

/// C_GetInfo's manufacturer of Debian's (and upstream's) tpm2-pkcs11.
const TPM2_PKCS11_MANUFACTURER: &str = "tpm2-software.github.io";

/// How a TPM's dictionary-attack lockout ends: SO PIN unlocking does not apply.
pub(super) const UNLOCK_TPM: &str = "the TPM is in dictionary-attack lockout after too many \
    wrong PINs (counted over every token and key on this TPM), and refuses every PIN without \
    counting it until the lockout interval passes (`tpm2_getcap properties-variable` shows \
    TPM2_PT_LOCKOUT_COUNTER, TPM2_PT_MAX_AUTH_FAIL and TPM2_PT_LOCKOUT_INTERVAL in seconds) \
    or the TPM's owner clears it with `tpm2_dictionarylockout --clear-lockout`; wait or clear it";

/// What a wrong PIN means on a TPM token, added to the wrong-PIN error.
pub(super) const WRONG_PIN_TPM: &str = "; the TPM counts wrong PINs over all its tokens and \
    tpm2-pkcs11 reports no tries left, so tufkey cannot warn before the try that locks the \
    TPM (see docs/keys-and-pins.md, \"TPM tokens\")";

/// A module's implementation, as far as tufkey must tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Implementation {
    /// tpm2-pkcs11: PIN flags are never set; a lockout is the TPM's, for a time.
    Tpm2Pkcs11,
    /// Any other module: the PIN flags of PKCS#11 are trusted.
    Standard,
}

impl Implementation {
    /// Asks the module (C_GetInfo; no session, no PIN).
    pub(super) fn of(p11: &Pkcs11) -> Implementation {
        match p11.get_library_info() {
            Ok(info) if info.manufacturer_id().trim_end() == TPM2_PKCS11_MANUFACTURER => {
                Implementation::Tpm2Pkcs11
            }
            _ => Implementation::Standard,
        }
    }
}
