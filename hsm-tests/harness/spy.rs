//! Counting PKCS#11 logins: `tufkey` run through OpenSC's pkcs11-spy in front of
//! SoftHSM, whose log shows every `C_Login` the module saw.

use std::path::Path;

use super::{run, softhsm_module, tufkey, SoftHsm};

/// OpenSC's pkcs11-spy module.
pub fn pkcs11_spy() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("pkcs11-spy.so (package opensc) is needed to count C_Login calls")
}

/// Runs `tufkey ARGS` with the spy in front of SoftHSM (the module path inside ARGS
/// is replaced by the spy's) and returns (exit code, stdout, stderr, C_Login calls).
pub fn run_through_spy(hsm: &SoftHsm, args: &[&str]) -> (i32, String, String, usize) {
    let spy = pkcs11_spy();
    let log = hsm.dir.path().join("spy.log");
    let _ = std::fs::remove_file(&log);
    let module = softhsm_module();
    let mut c = tufkey(Some(hsm));
    c.args(
        args.iter()
            .map(|a| a.replace(module.to_str().unwrap(), spy)),
    )
    .env("PKCS11SPY", &module)
    .env("PKCS11SPY_OUTPUT", &log);
    let (code, out, err) = run(c);
    let logins = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_Login"))
        .count();
    (code, out, err, logins)
}
