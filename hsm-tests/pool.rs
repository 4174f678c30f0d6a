//! The PKCS#11 backend in-process: one initialised module per process, a session pool
//! that lets several threads sign at once, and a login shared by every key on a token.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::{Arc, Barrier, OnceLock};

use harness::*;
use tufkey::keys::pkcs11::{self, Pkcs11Signer};
use tufkey::keys::{KeyUri, PinPolicy, Pkcs11Uri, Signer};
use tufkey::tuf::KeyType;

struct Fixture {
    _hsm: SoftHsm,
    a: Token,
    b: Token,
    c: Token,
}

/// One SoftHSM folder for this test binary: SoftHSM reads SOFTHSM2_CONF once, when the
/// module is initialised, so the tokens are made before any test touches the module.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let hsm = SoftHsm::new();
        let a = hsm.token("pool-a", "1111");
        let b = hsm.token("pool-b", "2222");
        let c = hsm.token("pool-c", "3333");
        // Edition 2021: set_var is safe; every test thread is waiting on this OnceLock.
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        for (t, pin) in [(&a, "1111"), (&b, "2222"), (&c, "3333")] {
            for (label, kt) in [
                ("p256", KeyType::EcdsaP256),
                ("ed", KeyType::Ed25519),
                ("rsa", KeyType::Rsa3072),
            ] {
                pkcs11::generate(&uri(t, label, Some(pin)), kt, &PinPolicy::default())
                    .expect("generate");
            }
        }
        Fixture { _hsm: hsm, a, b, c }
    })
}

fn uri(t: &Token, object: &str, pin: Option<&str>) -> Pkcs11Uri {
    let mut s = format!(
        "pkcs11:token={};object={object}?module-path={}",
        t.label,
        softhsm_module().display()
    );
    if let Some(p) = pin {
        s.push_str(&format!("&pin-value={p}"));
    }
    match KeyUri::parse(&s).unwrap() {
        KeyUri::Pkcs11(u) => *u,
        other => panic!("{other:?}"),
    }
}

#[test]
fn several_threads_sign_at_once_each_on_its_own_session() {
    let f = fixture();
    let signer = Arc::new(
        Pkcs11Signer::open(&uri(&f.a, "rsa", Some("1111")), &PinPolicy::default()).unwrap(),
    );
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    std::thread::scope(|s| {
        for t in 0..threads {
            let signer = signer.clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                barrier.wait();
                for i in 0..15 {
                    let msg = format!("thread {t} message {i}");
                    let sig = signer.sign(msg.as_bytes()).unwrap();
                    signer
                        .public_key()
                        .verify_hex(msg.as_bytes(), &hex::encode(sig))
                        .unwrap();
                }
            });
        }
    });
    assert!(
        signer.token().pooled_sessions() >= 2,
        "signing ran on {} session(s)",
        signer.token().pooled_sessions()
    );
}

#[test]
fn every_key_type_signs_in_process_and_verifies() {
    let f = fixture();
    for label in ["p256", "ed", "rsa"] {
        let signer =
            Pkcs11Signer::open(&uri(&f.b, label, Some("2222")), &PinPolicy::default()).unwrap();
        let sig = tufkey::keys::sign_checked(&signer, b"canonical bytes").unwrap();
        assert_eq!(sig.keyid, signer.key_id());
    }
}

#[test]
fn a_second_key_on_a_logged_in_token_needs_no_pin_again() {
    let f = fixture();
    Pkcs11Signer::open(&uri(&f.a, "p256", Some("1111")), &PinPolicy::default()).unwrap();
    // No pin-value, no environment, no terminal: works only because the token is logged in.
    let second = Pkcs11Signer::open(&uri(&f.a, "ed", None), &PinPolicy::default()).unwrap();
    assert!(second.sign(b"x").is_ok());
}

#[test]
fn a_signer_logs_in_again_when_the_device_forgot_its_login() {
    let f = fixture();
    let signer =
        Pkcs11Signer::open(&uri(&f.c, "p256", Some("3333")), &PinPolicy::default()).unwrap();
    signer.sign(b"before").unwrap();
    // What an HSM restart looks like to a client that keeps its sessions: the login is
    // gone. (A logout in any session logs the whole application out.)
    let module = pkcs11::module(&softhsm_module()).unwrap();
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label().trim_end() == "pool-c")
        .unwrap();
    module.open_ro_session(slot).unwrap().logout().unwrap();
    // The same signer opens fresh sessions, logs in again from its PIN source and signs.
    let sig = signer
        .sign(b"after")
        .expect("signing after the login was lost");
    signer
        .public_key()
        .verify_hex(b"after", &hex::encode(sig))
        .unwrap();
}
