//! Signatures per second through tufkey's PKCS#11 backend against a plain cryptoki
//! loop on the same SoftHSM key.
//!
//!     cargo bench --bench pkcs11_sign
//!
//! For each key type (P-256, Ed25519, RSA-3072 PSS) and thread count (1 and 2) it
//! times, interleaved, a plain loop (one cryptoki session per thread, the hash and
//! C_Sign tufkey would do and nothing else) and `Signer::sign` on one shared
//! `Pkcs11Signer`. It prints every run, then per row the best rate of each side and
//! the ratio tufkey/plain: the median over rounds of each round's tufkey/plain, the
//! two runs of a round being back to back so that load from other processes mostly
//! hits both alike (the ratio of the best runs is shown too). The target is tufkey
//! within 10% of the plain loop (ratio >= 0.90).
//!
//! Environment: BENCH_SECONDS (per timed run, default 1.25), BENCH_ROUNDS
//! (interleaved plain/tufkey pairs, default 4), BENCH_THREADS (default "1,2"),
//! BENCH_KEYS (default "p256,ed25519,rsa3072"). The defaults take about 70 s.
//! A throwaway SoftHSM token is made in a temp dir; the system's SoftHSM
//! configuration is never touched. Run without `--bench` (as `cargo test --benches`
//! does) it is a smoke run of a few seconds.

use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use sha2::{Digest, Sha256};

use tufkey::keys::pkcs11::{self, Pkcs11Signer};
use tufkey::keys::{KeyUri, PinPolicy, Pkcs11Uri, Signer};
use tufkey::tuf::KeyType;

#[path = "common/mod.rs"]
mod common;
use common::*;

const MESSAGE_LEN: usize = 1024;

#[derive(Clone, Copy)]
enum Kind {
    P256,
    Ed25519,
    Rsa3072,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::P256 => "P-256 (SHA-256 + CKM_ECDSA)",
            Kind::Ed25519 => "Ed25519 (CKM_EDDSA)",
            Kind::Rsa3072 => "RSA-3072 (CKM_SHA256_RSA_PKCS_PSS)",
        }
    }
    fn object(self) -> &'static str {
        match self {
            Kind::P256 => "p256",
            Kind::Ed25519 => "ed25519",
            Kind::Rsa3072 => "rsa3072",
        }
    }
    fn key_type(self) -> KeyType {
        match self {
            Kind::P256 => KeyType::EcdsaP256,
            Kind::Ed25519 => KeyType::Ed25519,
            Kind::Rsa3072 => KeyType::Rsa3072,
        }
    }
}

/// Exactly what the plain loop does per signature: the software hash tufkey does for
/// ECDSA, then C_Sign with the mechanism tufkey uses (built per call, as tufkey does,
/// because `Mechanism` is not Send). Returns the token's raw output.
fn plain_sign(
    kind: Kind,
    session: &cryptoki::session::Session,
    key: ObjectHandle,
    msg: &[u8],
) -> Vec<u8> {
    let r = match kind {
        Kind::P256 => {
            let digest = Sha256::digest(msg);
            session.sign(&Mechanism::Ecdsa, key, &digest)
        }
        Kind::Ed25519 => {
            let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            session.sign(&m, key, msg)
        }
        Kind::Rsa3072 => {
            let m = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            });
            session.sign(&m, key, msg)
        }
    };
    or_die(r, "plain C_Sign")
}

fn key_uri(object: &str) -> Pkcs11Uri {
    let s = format!("pkcs11:token={TOKEN};object={object}?module-path={MODULE}&pin-value={PIN}");
    match or_die(KeyUri::parse(&s), "parsing the bench key URI") {
        KeyUri::Pkcs11(u) => *u,
        _ => panic!("pkcs11_sign bench: {s} did not parse as a PKCS#11 URI"),
    }
}

/// Runs `threads` workers for `dur`, each calling `work` (which gets the worker's state
/// from `init`, made before the clock starts) in a loop. Returns signatures per second.
fn measure<S, I, W>(threads: usize, dur: Duration, init: I, work: W) -> f64
where
    I: Fn() -> S + Sync,
    W: Fn(&S) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let (total, elapsed) = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let state = init();
                    barrier.wait();
                    let start = Instant::now();
                    let mut n: u64 = 0;
                    while start.elapsed() < dur {
                        work(&state);
                        n += 1;
                    }
                    (n, start.elapsed())
                })
            })
            .collect();
        barrier.wait();
        let mut total = 0u64;
        let mut longest = Duration::ZERO;
        for w in workers {
            let (n, e) = w.join().expect("a bench worker thread panicked");
            total += n;
            longest = longest.max(e);
        }
        (total, longest)
    });
    total as f64 / elapsed.as_secs_f64()
}

struct Row {
    kind: Kind,
    threads: usize,
    plain: Vec<f64>,
    tufkey: Vec<f64>,
}

fn main() {
    // `cargo bench` passes "--bench" (and maybe a filter, which is ignored). Without it
    // (`cargo test --benches` / `--all-targets`) this is a quick smoke run: same setup
    // and self-checks, runs of 0.1 s, one round.
    let full = std::env::args().any(|a| a == "--bench");
    let secs: f64 = env_or("BENCH_SECONDS", if full { 1.25 } else { 0.1 });
    let rounds: usize = env_or("BENCH_ROUNDS", if full { 4 } else { 1 });
    let threads_list: Vec<usize> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|t| {
            t.trim()
                .parse()
                .unwrap_or_else(|_| panic!("pkcs11_sign bench: BENCH_THREADS: bad entry {t:?}"))
        })
        .collect();
    assert!(
        secs > 0.0 && rounds > 0,
        "BENCH_SECONDS and BENCH_ROUNDS must be positive"
    );
    let dur = Duration::from_secs_f64(secs);
    let warmup = Duration::from_millis(if full { 250 } else { 20 });
    if !full {
        println!("pkcs11_sign: smoke run (no --bench argument); use `cargo bench` to measure");
    }

    // A throwaway token. SOFTHSM2_CONF must be set before the module is first loaded;
    // nothing else runs yet, so set_var is sound here.
    let dir = or_die(tempfile::tempdir(), "creating a temp dir");
    new_token(dir.path());

    let policy = PinPolicy::default();
    let msg: Vec<u8> = (0..MESSAGE_LEN).map(|i| (i * 131 + 7) as u8).collect();
    let p11 = or_die(pkcs11::module(Path::new(MODULE)), "loading SoftHSM");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);

    println!(
        "pkcs11_sign: SoftHSM at {MODULE}, token in {}",
        dir.path().display()
    );
    println!(
        "message {MESSAGE_LEN} bytes; {secs} s per timed run; {rounds} interleaved plain/tufkey rounds; threads {threads_list:?}; {cpus} CPUs; loadavg at start {}",
        loadavg()
    );

    let only = std::env::var("BENCH_KEYS").ok();
    let kinds: Vec<Kind> = [Kind::P256, Kind::Ed25519, Kind::Rsa3072]
        .into_iter()
        .filter(|k| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x.trim() == k.object()))
        })
        .collect();
    assert!(
        !kinds.is_empty(),
        "BENCH_KEYS selects no key type (use p256, ed25519, rsa3072)"
    );
    let mut rows = Vec::new();
    for kind in kinds {
        let uri = key_uri(kind.object());
        let t0 = Instant::now();
        or_die(
            pkcs11::generate(&uri, kind.key_type(), &policy),
            &format!("generating the {} key", kind.object()),
        );
        let signer = or_die(Pkcs11Signer::open(&uri, &policy), "Pkcs11Signer::open");
        println!(
            "\n{}: key generated and opened in {:.1} s (key id {}...)",
            kind.name(),
            t0.elapsed().as_secs_f64(),
            &signer.key_id()[..16]
        );

        let slot = find_slot(&p11);
        let handle = find_private_key(&p11, slot, kind.object());
        let open_session = || or_die(p11.open_ro_session(slot), "C_OpenSession (plain worker)");

        // Check once, outside the clock, that both paths produce signatures that verify
        // with the key's public key: the bench must not time something broken.
        let public = signer.public_key();
        let sig = or_die(signer.sign(&msg), "tufkey sign (self-check)");
        or_die(
            public.verify_hex(&msg, &hex::encode(&sig)),
            "tufkey signature does not verify",
        );
        let raw = plain_sign(kind, &open_session(), handle, &msg);
        let plain_sig = match kind {
            // tufkey's encoding is DER; the plain loop leaves r||s raw, so convert here.
            Kind::P256 => or_die(
                p256::ecdsa::Signature::from_slice(&raw),
                "plain ECDSA output",
            )
            .to_der()
            .as_bytes()
            .to_vec(),
            _ => raw,
        };
        or_die(
            public.verify_hex(&msg, &hex::encode(&plain_sig)),
            "plain signature does not verify",
        );
        println!("  self-check: tufkey and plain signatures verify");

        for &threads in &threads_list {
            let plain_run = |d: Duration| {
                measure(threads, d, open_session, |s| {
                    black_box(plain_sign(kind, s, handle, black_box(&msg)));
                })
            };
            let tufkey_run = |d: Duration| {
                measure(
                    threads,
                    d,
                    || (),
                    |_| {
                        black_box(or_die(signer.sign(black_box(&msg)), "tufkey sign"));
                    },
                )
            };
            // Warm both paths (tufkey's pool grows to `threads` sessions here).
            plain_run(warmup);
            tufkey_run(warmup);
            let mut row = Row {
                kind,
                threads,
                plain: Vec::new(),
                tufkey: Vec::new(),
            };
            for r in 0..rounds {
                // Alternate which goes first so neither always follows the other.
                if r % 2 == 0 {
                    row.plain.push(plain_run(dur));
                    row.tufkey.push(tufkey_run(dur));
                } else {
                    row.tufkey.push(tufkey_run(dur));
                    row.plain.push(plain_run(dur));
                }
            }
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  {threads} thread(s): plain [{}] /s, tufkey [{}] /s",
                fmt(&row.plain),
                fmt(&row.tufkey)
            );
            rows.push(row);
        }
    }

    println!("\nloadavg at end {}", loadavg());
    println!(
        "\nSignatures per second (best of {rounds} interleaved runs of {secs} s each), 1 KiB message;\nratio = median over rounds of tufkey/plain within a round:\n"
    );
    println!(
        "| Key | Threads | plain cryptoki /s | tufkey /s | tufkey / plain | (best / best) | within 10% |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut misses = Vec::new();
    for row in &rows {
        let (p, t) = (best(&row.plain), best(&row.tufkey));
        let pairs: Vec<f64> = row
            .tufkey
            .iter()
            .zip(&row.plain)
            .map(|(t, p)| t / p)
            .collect();
        let ratio = median(&pairs);
        let ratio_best = t / p;
        let ok = ratio >= 0.90;
        if !ok {
            misses.push(format!("{} x{}", row.kind.object(), row.threads));
        }
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | ({:.3}) | {} |",
            row.kind.name(),
            row.threads,
            p,
            t,
            ratio,
            ratio_best,
            match (full, ok) {
                (false, _) => "n/a (smoke)",
                (true, true) => "yes",
                (true, false) => "NO",
            }
        );
    }
    if !full {
        println!("\nsmoke run: runs this short do not judge the 10% target; use `cargo bench`");
    } else if misses.is_empty() {
        println!("\ntarget met: tufkey is within 10% of the plain loop in every row");
    } else {
        println!("\ntarget MISSED in: {}", misses.join(", "));
    }
    drop(dir);
}
