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
    /// The token that comes back with its PIN at the final try.
    f: Token,
    /// The token that goes away for long (back-off, a busy module).
    g: Token,
    /// The token whose signers hold the PIN.
    h: Token,
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
        let f_ = hsm.token("pool-f", "6666");
        let g = hsm.token("pool-g", "7777");
        let h = hsm.token("pool-h", "8888");
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
        for (t, pin) in [(&f_, "6666"), (&g, "7777"), (&h, "8888")] {
            for (label, kt) in [("p256", KeyType::EcdsaP256), ("ed", KeyType::Ed25519)] {
                pkcs11::generate(&uri(t, label, Some(pin)), kt, &PinPolicy::default())
                    .expect("generate");
            }
        }
        Fixture {
            hsm,
            a,
            b,
            c,
            d,
            e,
            f: f_,
            g,
            h,
        }
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
    assert_refusal_sticks(&signer);
}

/// Waits until `signer` answers something other than "unavailable" (at most `within`).
fn sign_when_back(signer: &Pkcs11Signer, within: Duration) -> Result<Vec<u8>, KeyError> {
    let until = Instant::now() + within;
    loop {
        match signer.sign(b"after") {
            Err(KeyError::DeviceUnavailable { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => break other,
        }
    }
}

/// The logged-out token: what an HSM restart looks like to a client that keeps its
/// sessions. (A logout in any session logs the whole application out.)
fn log_out(label: &str) {
    let module = pkcs11::module(&softhsm_module()).unwrap();
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label().trim_end() == label)
        .unwrap();
    module.open_ro_session(slot).unwrap().logout().unwrap();
}

/// A signer opened with --force logs in again by itself after the token came back, and
/// the token now says "final try": tufkey does not spend it (a login it makes by itself
/// never does), and says so on every request instead.
#[test]
fn an_automatic_login_again_never_spends_the_final_try_even_with_force() {
    let f = fixture();
    let force = PinPolicy {
        force: true,
        ..PinPolicy::default()
    };
    let signer = Pkcs11Signer::open(&uri(&f.f, "p256", Some("6666")), &force).unwrap();
    signer.sign(b"before").unwrap();
    let _raw = raw_module_lock();
    // SoftHSM reads the flags when the module is initialised: set them, then let the
    // token go away and come back, so the re-initialisation reads them.
    f.hsm.set_token_flags("pool-f", CKF_USER_PIN_FINAL_TRY);
    let folder = token_folder(f, "pool-f");
    let away = f.hsm.dir.path().join("pool-f-away");
    std::fs::rename(&folder, &away).unwrap();
    match signer.sign(b"while away") {
        Err(KeyError::DeviceUnavailable { .. }) => {}
        other => panic!("expected unavailable: {other:?}"),
    }
    std::fs::rename(&away, &folder).unwrap();
    match sign_when_back(&signer, Duration::from_secs(10)) {
        Err(KeyError::PinFinalTry { .. }) => {}
        other => panic!("expected the final try to be left alone: {other:?}"),
    }
    assert!(matches!(
        signer.sign(b"again"),
        Err(KeyError::PinFinalTry { .. })
    ));
}

/// The PIN to log in again lives in the signers, not in the process-wide token: a
/// signer opened on a logged-in token shares it with the one that logged in, and once
/// the signers holding it are gone, nothing in the process has it any more.
#[test]
fn the_pin_for_logging_in_again_is_held_by_the_signers_only() {
    let f = fixture();
    let first =
        Pkcs11Signer::open(&uri(&f.h, "p256", Some("8888")), &PinPolicy::default()).unwrap();
    // No PIN in the URI: it shares the first signer's.
    let second = Pkcs11Signer::open(&uri(&f.h, "ed", None), &PinPolicy::default()).unwrap();
    drop(first);
    let _raw = raw_module_lock();
    log_out("pool-h");
    second
        .sign(b"x")
        .expect("the second signer logs in again with the PIN it shares");
    drop(second);

    // A login that is not a signer's (as `key generate` or `key delete` make) keeps no
    // PIN either: a signer opened on the logged-in token has none to log in again with.
    let t = pkcs11::Token::open(&uri(&f.h, "p256", Some("8888"))).unwrap();
    t.login(&uri(&f.h, "p256", Some("8888")), &PinPolicy::default())
        .unwrap();
    let third = Pkcs11Signer::open(&uri(&f.h, "p256", None), &PinPolicy::default()).unwrap();
    log_out("pool-h");
    match third.sign(b"y") {
        Err(KeyError::NoPin { .. }) => {}
        other => panic!("expected no PIN to be left in the process: {other:?}"),
    }
    // Put the login back for other users of the token.
    t.login(&uri(&f.h, "p256", Some("8888")), &PinPolicy::default())
        .unwrap();
}

/// A token that stays away: a re-initialisation never queues behind a slow call (other
/// tokens keep signing), and the token asks for re-initialisations at doubling
/// intervals, not every second; when it is back it signs again.
#[test]
fn a_token_that_stays_away_backs_off_and_never_stalls_the_module() {
    let f = fixture();
    let module = softhsm_module();
    let gone = Pkcs11Signer::open(&uri(&f.g, "p256", Some("7777")), &PinPolicy::default()).unwrap();
    let other =
        Pkcs11Signer::open(&uri(&f.b, "p256", Some("2222")), &PinPolicy::default()).unwrap();
    gone.sign(b"before").unwrap();
    let _raw = raw_module_lock();
    let folder = token_folder(f, "pool-g");
    let away = f.hsm.dir.path().join("pool-g-away");
    std::fs::rename(&folder, &away).unwrap();
    match gone.sign(b"x") {
        Err(KeyError::DeviceUnavailable { .. }) => {}
        other => panic!("expected unavailable: {other:?}"),
    }

    // Past the module's once-a-second limit (another test may have just re-initialised).
    std::thread::sleep(Duration::from_millis(1100));
    // A slow call on another token holds the module (a session holds its read lock).
    let gen0 = pkcs11::module_generation(&module).unwrap();
    let a = pkcs11::Token::open(&uri(&f.a, "p256", None)).unwrap();
    let held = a.session().unwrap();
    let (gone_took, gone_said, other_took) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let t = Instant::now();
            let r = gone.sign(b"y");
            (t.elapsed(), r)
        });
        std::thread::sleep(Duration::from_millis(10));
        let t = Instant::now();
        other.sign(b"z").expect("another token signs meanwhile");
        let other_took = t.elapsed();
        let (took, r) = h.join().unwrap();
        (took, r, other_took)
    });
    drop(held);
    eprintln!("while busy: the absent token answered in {gone_took:?}, another token signed in {other_took:?}");
    match gone_said {
        Err(e @ KeyError::DeviceUnavailable { .. }) => {
            assert!(
                e.to_string().contains("could not be re-initialised now"),
                "{e}"
            )
        }
        other => panic!("expected unavailable: {other:?}"),
    }
    assert!(gone_took < Duration::from_secs(1), "{gone_took:?}");
    assert!(other_took < Duration::from_secs(1), "{other_took:?}");
    assert_eq!(pkcs11::module_generation(&module).unwrap(), gen0);

    // Away for 4.5 s with a request every 50 ms: re-initialisations at about 0, 1 and 3 s
    // (not one a second).
    let start = Instant::now();
    let mut said_later = None;
    while start.elapsed() < Duration::from_millis(4500) {
        match gone.sign(b"w") {
            Err(e @ KeyError::DeviceUnavailable { .. }) => {
                let text = e.to_string();
                if text.contains("the next one for it is in") {
                    said_later = Some(text);
                }
            }
            other => panic!("expected unavailable: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reinits = pkcs11::module_generation(&module).unwrap() - gen0;
    eprintln!("{reinits} re-initialisations in 4.5 s");
    assert!(
        (2..=3).contains(&reinits),
        "{reinits} re-initialisations in 4.5 s"
    );
    assert!(
        said_later.is_some(),
        "no request said when the next look is"
    );

    std::fs::rename(&away, &folder).unwrap();
    let back = Instant::now();
    let sig = sign_when_back(&gone, Duration::from_secs(10)).expect("signs again once back");
    eprintln!(
        "signed again {:?} after the token came back",
        back.elapsed()
    );
    gone.public_key()
        .verify_hex(b"after", &hex::encode(sig))
        .unwrap();
}

/// `key delete` confirms a list of objects and then destroys them by handle: a handle
/// that no longer names what was listed (an HSM restart can give handle numbers out
/// again) is not destroyed.
#[test]
fn objects_are_destroyed_only_while_their_handles_name_what_was_listed() {
    let f = fixture();
    // Handles stay valid only while no other test re-initialises the module.
    let _raw = raw_module_lock();
    let pin = Some("1111");
    for label in ["del-1", "del-2"] {
        pkcs11::generate(
            &uri(&f.a, label, pin),
            KeyType::EcdsaP256,
            &PinPolicy::default(),
        )
        .unwrap();
    }
    let u1 = uri(&f.a, "del-1", pin);
    let u2 = uri(&f.a, "del-2", pin);
    let t = pkcs11::Token::open(&u1).unwrap();
    t.login(&u1, &PinPolicy::default()).unwrap();
    let first: Vec<_> = t
        .key_objects(&u1)
        .unwrap()
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(first.len(), 2);
    // Listing another key replaces what destroy accepts.
    t.key_objects(&u2).unwrap();
    let e = t.destroy(&first).unwrap_err().to_string();
    assert!(e.contains("not one of the objects listed"), "{e}");
    assert_eq!(t.public_keys(&uri(&f.a, "del-1", None)).unwrap().len(), 1);

    // Listed, then the handle names something else (here: renamed behind tufkey's back).
    let listed: Vec<_> = t
        .key_objects(&u1)
        .unwrap()
        .into_iter()
        .map(|o| o.0)
        .collect();
    {
        let module = pkcs11::module(&softhsm_module()).unwrap();
        let slot = module
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| module.get_token_info(*s).unwrap().label().trim_end() == "pool-a")
            .unwrap();
        let s = module.open_rw_session(slot).unwrap();
        s.update_attributes(
            listed[1],
            &[cryptoki::object::Attribute::Label(b"other".to_vec())],
        )
        .unwrap();
    }
    let e = t.destroy(&listed).unwrap_err().to_string();
    assert!(e.contains("now names") && e.contains("object=other"), "{e}");
    // Nothing was destroyed (the check runs over all handles first): the private key
    // is still there, and so is the renamed public key.
    assert_eq!(t.key_objects(&u1).unwrap().len(), 1);
    assert_eq!(t.public_keys(&uri(&f.a, "other", None)).unwrap().len(), 1);

    // Listed and unchanged: destroyed.
    let u2_objects: Vec<_> = t
        .key_objects(&u2)
        .unwrap()
        .into_iter()
        .map(|o| o.0)
        .collect();
    t.destroy(&u2_objects).unwrap();
    assert!(t.public_keys(&uri(&f.a, "del-2", None)).unwrap().is_empty());
}
