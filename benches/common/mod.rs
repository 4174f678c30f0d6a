//! What both benchmarks share: the throwaway SoftHSM token's names, the plain cryptoki
//! side (slot and private-key lookup), environment knobs and statistics.
#![allow(dead_code)]

use std::fmt::Display;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "bench";
pub const PIN: &str = "1234";

/// Makes the throwaway token ([`TOKEN`], [`PIN`]) in `dir` with
/// softhsm-config/new-token.sh and points `SOFTHSM2_CONF` at it. Call it before anything
/// loads the module (SoftHSM reads its config once) and before other threads start
/// (set_var). Returns the config's path, for child processes.
pub fn new_token(dir: &std::path::Path) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-config/new-token.sh");
    let out = or_die(
        std::process::Command::new(&script)
            .arg(dir)
            .arg(TOKEN)
            .arg(PIN)
            .output(),
        &format!("running {}", script.display()),
    );
    assert!(
        out.status.success(),
        "bench: {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .expect("new-token.sh printed no softhsm2.conf path");
    std::env::set_var("SOFTHSM2_CONF", &conf);
    conf
}

/// Unwraps with a message that shows the error's Display (PKCS#11 return codes included).
pub fn or_die<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("bench: {what}: {e}"),
    }
}

/// An environment knob, parsed, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bench: {name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// The bench token's slot.
pub fn find_slot(p: &Pkcs11) -> Slot {
    for slot in or_die(p.get_slots_with_token(), "C_GetSlotList") {
        let info = or_die(p.get_token_info(slot), "C_GetTokenInfo");
        if info.label().trim_end() == TOKEN {
            return slot;
        }
    }
    panic!("bench: no token labelled {TOKEN:?} after new-token.sh");
}

/// The private key labelled `object`, for the plain cryptoki loop.
pub fn find_private_key(p: &Pkcs11, slot: Slot, object: &str) -> ObjectHandle {
    let s = or_die(p.open_ro_session(slot), "C_OpenSession (plain)");
    // Login is per application: tufkey has logged in already, so this normally says
    // CKR_USER_ALREADY_LOGGED_IN; either way the session can then see private objects.
    match s.login(UserType::User, Some(&AuthPin::from(PIN.to_string()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("bench: plain C_Login: {e}"),
    }
    let handles = or_die(
        s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(object.as_bytes().to_vec()),
        ]),
        "C_FindObjects (plain)",
    );
    match handles.as_slice() {
        [h] => *h,
        other => panic!(
            "bench: expected one private key labelled {object:?}, found {}",
            other.len()
        ),
    }
    // `s` closes here; tufkey's pooled sessions stay open, so the login survives.
}

/// The highest value.
pub fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The median (NaN for no values).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The 1, 5 and 15 minute load averages, to judge how quiet the machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}
