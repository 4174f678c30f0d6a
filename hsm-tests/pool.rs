//! The PKCS#11 backend in-process: one initialised module per process, a session pool
//! that lets several threads sign at once, and a login shared by every key on a token.

#[path = "harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use harness::*;
use tufkey::keys::pkcs11::{self, Pkcs11Signer};
use tufkey::keys::{KeyError, KeyUri, PinPolicy, Pkcs11Uri, Signer};
use tufkey::tuf::KeyType;

struct Fixture {
    hsm: SoftHsm,
    a: Token,
    b: Token,
    c: Token,
    /// The token whose folder the outage test moves away and back.
    d: Token,
    /// The token whose PIN changes while it is away.
    e: Token,
}

/// Taken by tests that call the module directly (not through tufkey) and by the test
/// that makes tufkey re-initialise the module: raw calls are not ordered against a
/// re-initialisation, tufkey's own calls are.
static RAW_MODULE: Mutex<()> = Mutex::new(());

fn raw_module_lock() -> std::sync::MutexGuard<'static, ()> {
    RAW_MODULE.lock().unwrap_or_else(|e| e.into_inner())
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
        let d = hsm.token("pool-d", "4444");
        let e = hsm.token("pool-e", "5555");
        // Edition 2021: set_var is safe; every test thread is waiting on this OnceLock.
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        for (t, pin) in [
            (&a, "1111"),
            (&b, "2222"),
            (&c, "3333"),
            (&d, "4444"),
            (&e, "5555"),
        ] {
            for (label, kt) in [
                ("p256", KeyType::EcdsaP256),
                ("ed", KeyType::Ed25519),
                ("rsa", KeyType::Rsa3072),
            ] {
                pkcs11::generate(&uri(t, label, Some(pin)), kt, &PinPolicy::default())
                    .expect("generate");
            }
        }
        Fixture { hsm, a, b, c, d, e }
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
    let _raw = raw_module_lock();
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

/// The folder SoftHSM keeps the token with `label` in.
fn token_folder(f: &Fixture, label: &str) -> PathBuf {
    f.hsm
        .token_file(label)
        .parent()
        .expect("token.object is in a folder")
        .to_path_buf()
}

/// Several threads sign on two keys of a token while its folder is moved away and
/// back (SoftHSM 2.6 then fails every call on it until the module is re-initialised);
/// another thread signs on another token of the same module throughout.
#[test]
fn signers_recover_when_the_token_goes_away_and_comes_back() {
    let f = fixture();
    let module = softhsm_module();
    let signers: Vec<Arc<Pkcs11Signer>> = ["p256", "ed"]
        .iter()
        .map(|k| {
            Arc::new(
                Pkcs11Signer::open(&uri(&f.d, k, Some("4444")), &PinPolicy::default()).unwrap(),
            )
        })
        .collect();
    let bystander = Arc::new(
        Pkcs11Signer::open(&uri(&f.a, "ed", Some("1111")), &PinPolicy::default()).unwrap(),
    );
    let _raw = raw_module_lock();
    let folder = token_folder(f, "pool-d");
    let away = f.hsm.dir.path().join("pool-d-away");
    let gen_before = pkcs11::module_generation(&module).unwrap();

    let stop = AtomicBool::new(false);
    // 0: present, 1: away, 2: back.
    let phase = AtomicUsize::new(0);
    let ok_in = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let unavailable = AtomicUsize::new(0);
    let bystander_ok = AtomicUsize::new(0);
    let first_back_ok: Mutex<Option<Instant>> = Mutex::new(None);
    let back_at: Mutex<Option<Instant>> = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..4 {
            let signer = signers[t % 2].clone();
            let (stop, phase, ok_in, unavailable) = (&stop, &phase, &ok_in, &unavailable);
            let first_back_ok = &first_back_ok;
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let msg = format!("thread {t} message {i}");
                    let p = phase.load(Ordering::SeqCst);
                    let result = signer.sign(msg.as_bytes());
                    // A call that started before the move may end after it.
                    let p_end = phase.load(Ordering::SeqCst);
                    match result {
                        Ok(sig) => {
                            signer
                                .public_key()
                                .verify_hex(msg.as_bytes(), &hex::encode(sig))
                                .expect("every signature verifies: no stale handle");
                            ok_in[p].fetch_add(1, Ordering::SeqCst);
                            if p == 2 {
                                first_back_ok
                                    .lock()
                                    .unwrap()
                                    .get_or_insert_with(Instant::now);
                            }
                        }
                        Err(e @ KeyError::DeviceUnavailable { .. }) => {
                            assert_ne!(p_end, 0, "unavailable while the token was there: {e}");
                            let text = e.to_string();
                            assert!(
                                text.contains("pool-d") && text.contains(signer.uri()),
                                "{text}"
                            );
                            unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("thread {t}: neither a signature nor unavailable: {e}"),
                    }
                }
            });
        }
        let (stop, bystander, bystander_ok) = (&stop, bystander.clone(), &bystander_ok);
        s.spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let msg = format!("bystander {i}");
                let sig = bystander
                    .sign(msg.as_bytes())
                    .expect("a token that stayed signs through the other's outage");
                bystander
                    .public_key()
                    .verify_hex(msg.as_bytes(), &hex::encode(sig))
                    .unwrap();
                bystander_ok.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });

        std::thread::sleep(Duration::from_millis(300));
        // Phase first: a signature that starts in phase 0 starts before the move.
        phase.store(1, Ordering::SeqCst);
        std::fs::rename(&folder, &away).unwrap();
        let outage = Instant::now();
        std::thread::sleep(Duration::from_millis(2500));
        phase.store(2, Ordering::SeqCst);
        std::fs::rename(&away, &folder).unwrap();
        *back_at.lock().unwrap() = Some(Instant::now());
        let away_for = outage.elapsed();
        let until = Instant::now() + Duration::from_secs(10);
        while first_back_ok.lock().unwrap().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let reinits = pkcs11::module_generation(&module).unwrap() - gen_before;
        eprintln!("{reinits} module re-initialisations; token away for {away_for:?}");
        // At most one re-initialisation a second, plus the one that finds it back.
        let bound = away_for.as_secs() + 3;
        assert!(
            reinits >= 1 && reinits <= bound,
            "{reinits} re-initialisations in {away_for:?} (bound {bound})"
        );
    });
    let back = back_at.lock().unwrap().unwrap();
    let recovered = first_back_ok
        .lock()
        .unwrap()
        .expect("no signature within 10 s after the token came back");
    let took = recovered.duration_since(back);
    eprintln!(
        "signatures before/during/after: {:?}; unavailable answers: {}; bystander signatures: {}; first signature {:?} after the token came back",
        ok_in.iter().map(|a| a.load(Ordering::SeqCst)).collect::<Vec<_>>(),
        unavailable.load(Ordering::SeqCst),
        bystander_ok.load(Ordering::SeqCst),
        took
    );
    assert!(ok_in[0].load(Ordering::SeqCst) > 0);
    assert!(unavailable.load(Ordering::SeqCst) > 0);
    assert!(ok_in[2].load(Ordering::SeqCst) > 0);
    assert!(took < Duration::from_secs(3), "recovery took {took:?}");
    assert!(bystander_ok.load(Ordering::SeqCst) > 0);
}

/// The token comes back with another PIN (as if it was re-initialised elsewhere): the
/// signer logs in again with the PIN it holds, gets CKR_PIN_INCORRECT once, and then
/// stops: no further C_Login, a clear error on every later use.
#[test]
fn a_wrong_pin_after_the_token_came_back_is_not_tried_again() {
    let f = fixture();
    let signer =
        Pkcs11Signer::open(&uri(&f.e, "p256", Some("5555")), &PinPolicy::default()).unwrap();
    signer.sign(b"before").unwrap();
    let _raw = raw_module_lock();

    // Away: the token folder moves to another SoftHSM folder, where its PIN changes.
    let folder = token_folder(f, "pool-e");
    let side = f.hsm.dir.path().join("side");
    std::fs::create_dir_all(side.join("tokens")).unwrap();
    let side_conf = side.join("softhsm2.conf");
    std::fs::write(
        &side_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            side.join("tokens").display()
        ),
    )
    .unwrap();
    let moved = side.join("tokens").join(folder.file_name().unwrap());
    std::fs::rename(&folder, &moved).unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &side_conf)
        .args(["--module", softhsm_module().to_str().unwrap()])
        .args(["--token-label", "pool-e", "--login", "--pin", "5555"])
        .args(["--change-pin", "--new-pin", "9999"])
        .output()
        .expect("pkcs11-tool (opensc) is needed: run ./hsm-tests/run.sh");
    assert!(
        out.status.success(),
        "pkcs11-tool --change-pin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match signer.sign(b"while away") {
        Err(KeyError::DeviceUnavailable { .. }) => {}
        other => panic!("expected unavailable: {other:?}"),
    }
    std::fs::rename(&moved, &folder).unwrap();

    // Back: recovery (rate-limited) finds it, the login with the held PIN fails once.
    let until = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match signer.sign(b"after") {
            Err(KeyError::DeviceUnavailable { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => break other,
        }
    };
    match first {
        Err(e @ KeyError::PinIncorrect { .. }) => {
            let text = e.to_string();
            assert!(text.contains("will not try another PIN"), "{text}");
            assert!(!text.contains("5555") && !text.contains("9999"), "{text}");
        }
        other => panic!("expected one wrong-PIN answer: {other:?}"),
    }
    // Every later use stops before C_Login, and says what to do.
    for _ in 0..3 {
        match signer.sign(b"again") {
            Err(e @ KeyError::ReloginRefused { .. }) => {
                assert!(e.to_string().contains("restart tufkey"), "{e}")
            }
            other => panic!("expected the refusal to stick: {other:?}"),
        }
    }
}
