//! What PKCS#11 return values mean for tufkey: their names in messages, and which ones
//! may mean a device went away.

use cryptoki::error::{Error as CkError, RvError};

use crate::keys::error::KeyError;

/// A short form of an error for "why is the token unavailable" messages.
pub(super) fn brief(e: &KeyError) -> String {
    match e {
        KeyError::Pkcs11 {
            op,
            err: CkError::Pkcs11(rv, _),
            ..
        } => format!("{op} answered {}", rv_name(*rv)),
        KeyError::DeviceUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// `CKR_GENERAL_ERROR` style names for the return values that mean a device problem.
pub(super) fn rv_name(rv: RvError) -> String {
    let known = match rv {
        RvError::GeneralError => "CKR_GENERAL_ERROR",
        RvError::FunctionFailed => "CKR_FUNCTION_FAILED",
        RvError::DeviceError => "CKR_DEVICE_ERROR",
        RvError::DeviceMemory => "CKR_DEVICE_MEMORY",
        RvError::DeviceRemoved => "CKR_DEVICE_REMOVED",
        RvError::TokenNotPresent => "CKR_TOKEN_NOT_PRESENT",
        RvError::TokenNotRecognized => "CKR_TOKEN_NOT_RECOGNIZED",
        RvError::SlotIdInvalid => "CKR_SLOT_ID_INVALID",
        RvError::SessionHandleInvalid => "CKR_SESSION_HANDLE_INVALID",
        RvError::SessionClosed => "CKR_SESSION_CLOSED",
        RvError::ObjectHandleInvalid => "CKR_OBJECT_HANDLE_INVALID",
        RvError::KeyHandleInvalid => "CKR_KEY_HANDLE_INVALID",
        RvError::UserNotLoggedIn => "CKR_USER_NOT_LOGGED_IN",
        RvError::CryptokiNotInitialized => "CKR_CRYPTOKI_NOT_INITIALIZED",
        _ => "",
    };
    if known.is_empty() {
        format!("{rv:?}")
    } else {
        known.to_string()
    }
}

/// Errors that may mean the device went away, or came back and forgot the sessions,
/// the login or the object handles: the token is then probed, and either gets one fresh
/// attempt (it still answers) or is reported unavailable.
///
/// A failed C_Login never is: it may have spent a PIN try, and logging in again with the
/// same PIN in the same request could spend another.
pub(super) fn device_trouble(e: &KeyError) -> bool {
    match e {
        KeyError::DeviceUnavailable { .. } | KeyError::NoToken { .. } => true,
        KeyError::Pkcs11 { op: "C_Login", .. } => false,
        KeyError::Pkcs11 {
            err: CkError::Pkcs11(rv, _),
            ..
        } => matches!(
            rv,
            RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError
                | RvError::FunctionFailed
        ),
        _ => false,
    }
}

/// Answers to C_Login that plainly mean the token was not there to judge the PIN (so no
/// try was spent). CKR_DEVICE_ERROR, CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED are not
/// among them: a token may count a try and then fail.
pub(super) fn login_device_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::CryptokiNotInitialized
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_login_is_never_device_trouble() {
        let e = |op, rv| KeyError::Pkcs11 {
            op,
            uri: "pkcs11:token=t".into(),
            err: CkError::Pkcs11(rv, cryptoki::context::Function::Login),
        };
        for rv in [
            RvError::GeneralError,
            RvError::FunctionFailed,
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::UserNotLoggedIn,
        ] {
            assert!(!device_trouble(&e("C_Login", rv)), "{rv:?}");
            assert!(device_trouble(&e("C_Sign", rv)), "{rv:?}");
        }
        // Only answers that plainly mean "no token" spare the token from the refusal.
        for rv in [
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SlotIdInvalid,
        ] {
            assert!(login_device_gone(rv), "{rv:?}");
        }
        for rv in [
            RvError::GeneralError,
            RvError::FunctionFailed,
            RvError::DeviceError,
            RvError::DeviceMemory,
            RvError::PinLocked,
        ] {
            assert!(!login_device_gone(rv), "{rv:?}");
        }
    }
}
