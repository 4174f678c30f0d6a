//! P5, first half: re-signing every hashed bin of a repository with one P-256 key on
//! SoftHSM (`tufkey repo bins --resign`, in process) against a plain cryptoki loop
//! signing the same bins' payloads at the same thread count, interleaved in one run.
//!
//!     benches/bins/run.sh            # or: cargo bench --bench bins
//!
//! Setup (not timed): a throwaway SoftHSM token with P-256 keys for root, targets,
//! snapshot, timestamp and the bins; a root signed with its key; `repo init`; `repo bins
//! --count BINS`; the first `repo commit` (which signs every bin once).
//!
//! Each round then times, back to back:
//! - plain: THREADS threads, one cryptoki session each, taking the next of the BINS
//!   payloads (the canonical bytes of every bin, as published) and doing what tufkey does
//!   on the token per signature: SHA-256 on the host and C_Sign with CKM_ECDSA. Nothing
//!   else: no DER conversion, no check, no files.
//! - tufkey: `repo::commit` with `resign_bins` (what `repo bins --resign` runs): load
//!   the repository, give every bin a new version and expiry, canonicalise, one
//!   `sign_many` call for the bins key (THREADS sessions), check every signature
//!   against the public key, sign snapshot and timestamp, write every file and sync.
//!   Two figures: the signing phase (from the start of signing to the last bin
//!   signature checked: version/expiry edits, canonical JSON, C_Sign, DER, the check),
//!   and the whole command (also loading 16,384 files, writing them and one syncfs).
//!
//! It prints every run and then the ratios tufkey/plain in signatures per second (the
//! median of each round's ratio, rounds being back to back). The P5 target is a signing
//! ratio >= 0.8 at 2 threads. Never a test assertion: this only reports.
//!
//! Environment: BENCH_BINS (default 16384), BENCH_THREADS (default 2), BENCH_ROUNDS
//! (default 3), BENCH_KEEP (set: keep the repository and token folder, and say where). Without `--bench` (as `cargo test --benches` runs it) it is a smoke run:
//! 64 bins, one round.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use cryptoki::mechanism::Mechanism;
use serde_json::json;
use sha2::{Digest, Sha256};

use tufkey::keys::pkcs11::{self, parallel::THREADS_ENV};
use tufkey::keys::SelfCheck;
use tufkey::keys::{self, KeyUri, PinPolicy};
use tufkey::repo::bins::{self, BinsRequest};
use tufkey::repo::commit::{commit, SignOptions};
use tufkey::repo::lock::RepoLock;
use tufkey::repo::{Hooks, Progress, Repository};
use tufkey::tuf::{KeyType, Metadata};

#[path = "../common/mod.rs"]
mod common;
use common::*;

const ROLES: [&str; 5] = ["root", "targets", "snapshot", "timestamp", "bins"];

/// Records when signing started and when the last bin signature arrived.
struct Clock {
    bins: u64,
    done: AtomicU64,
    started: Mutex<Option<Instant>>,
    first_signed: Mutex<Option<Instant>>,
    bins_signed: Mutex<Option<Instant>>,
}

impl Progress for Clock {
    fn start(&self, what: &str, _total: u64) {
        if what == "signing" {
            *self.started.lock().unwrap() = Some(Instant::now());
        }
    }
    fn advance(&self, n: u64) {
        self.first_signed
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        if self.done.fetch_add(n, Ordering::Relaxed) + n == self.bins {
            *self.bins_signed.lock().unwrap() = Some(Instant::now());
        }
    }
    fn finish(&self) {}
}

fn uri(object: &str, pin_file: &Path) -> String {
    format!(
        "pkcs11:token={TOKEN};object={object}?module-path={MODULE}&pin-source=file:{}",
        pin_file.display()
    )
}

/// A root over the five keys, signed by the root key.
fn root(uris: &BTreeMap<&str, String>, pins: &PinPolicy, out: &Path) {
    let mut keys_obj = serde_json::Map::new();
    let mut roles = serde_json::Map::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let key = or_die(keys::public_key(&uris[role], pins), "reading a public key").to_tuf_key();
        let id = key.key_id();
        keys_obj.insert(id.clone(), key.to_value());
        roles.insert(role.into(), json!({"keyids": [id], "threshold": 1}));
    }
    let expires = tufkey::tuf::time::format_expires(Utc::now() + chrono::Duration::days(365));
    let mut md = or_die(
        Metadata::new(json!({
            "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": expires,
            "consistent_snapshot": true, "keys": keys_obj, "roles": roles,
        })),
        "building the root",
    );
    let signer = or_die(
        keys::open_signer(&uris["root"], pins),
        "opening the root key",
    );
    let sig = or_die(
        keys::sign_checked(signer.as_ref(), &md.payload()),
        "signing the root",
    );
    md.set_signature(sig);
    or_die(
        std::fs::write(out, md.to_pretty_bytes()),
        "writing 1.root.json",
    );
}

/// One commit of the repository (every bin re-signed when `resign`): (whole command,
/// signing phase).
fn run_commit(
    dir: &Path,
    bins: u64,
    resign: bool,
    pins: &PinPolicy,
) -> (Duration, Duration, Duration) {
    let t0 = Instant::now();
    let repo = or_die(Repository::open(dir), "opening the repository");
    let lock = or_die(
        RepoLock::acquire(&repo.layout.lock(), Duration::ZERO, "bench"),
        "locking the repository",
    );
    let clock = Clock {
        bins,
        done: AtomicU64::new(0),
        started: Mutex::new(None),
        first_signed: Mutex::new(None),
        bins_signed: Mutex::new(None),
    };
    let mut before = |_: &[tufkey::repo::signing::Made]| Ok(());
    let mut on_write = |_: &Path| {};
    let mut hooks = Hooks {
        progress: &clock,
        before_publish: &mut before,
        on_write: &mut on_write,
    };
    let opts = SignOptions {
        keys: &[],
        pins,
        now: Utc::now(),
        resign_bins: resign,
    };
    let out = or_die(commit(&repo, &lock, &opts, &mut hooks), "repo commit");
    let total = t0.elapsed();
    let o = out.expect("the commit signed nothing");
    assert!(
        o.roles.len() as u64 >= bins,
        "bench: the commit re-signed {} roles, fewer than the {bins} bins",
        o.roles.len()
    );
    let started = clock
        .started
        .lock()
        .unwrap()
        .expect("signing never started");
    let signed = clock
        .bins_signed
        .lock()
        .unwrap()
        .expect("bins never all signed");
    let first = clock.first_signed.lock().unwrap().expect("nothing signed");
    (total, signed - started, first - started)
}

/// The canonical bytes of every published bin.
fn bin_payloads(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in or_die(std::fs::read_dir(dir.join("metadata")), "listing metadata/") {
        let path = or_die(e, "reading metadata/").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("1.bins-") {
            let md = or_die(
                Metadata::from_slice(&or_die(std::fs::read(&path), "reading a bin")),
                "parsing a bin",
            );
            out.push(md.payload());
        }
    }
    out
}

/// CPU seconds this process has used (user + system, all threads), from /proc/self/stat
/// (clock ticks of 10 ms): on a shared machine CPU per signature says more than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ")".
    (ticks(11) + ticks(12)) / 100.0
}

/// tufkey's PKCS#11 `sign_many` over `payloads`, nothing else (no check, no repository):
/// signatures per second. Separates the parallel signer from the repository's work.
/// Also the time of the self-check (`SelfCheck::check`, what the repository code runs on
/// every signature before writing it) per signature, on one thread.
fn sign_many_only(signer: &dyn keys::Signer, payloads: &[Vec<u8>]) -> (f64, Duration) {
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let t0 = Instant::now();
    let out = signer.sign_many(&refs);
    let took = t0.elapsed();
    let sigs: Vec<Vec<u8>> = out.into_iter().map(|r| or_die(r, "sign_many")).collect();
    let checker = SelfCheck::new(signer);
    let t1 = Instant::now();
    for (m, s) in refs.iter().zip(&sigs) {
        or_die(checker.check(m, s), "self-check");
    }
    let check = t1.elapsed() / sigs.len() as u32;
    (payloads.len() as f64 / took.as_secs_f64(), check)
}

/// The plain loop over `payloads` on `threads` sessions: signatures per second.
fn plain(payloads: &[Vec<u8>], threads: usize) -> (f64, Duration) {
    let p11 = or_die(pkcs11::module(Path::new(MODULE)), "loading SoftHSM");
    let slot = find_slot(&p11);
    let key = find_private_key(&p11, slot, "bins");
    let next = AtomicUsize::new(0);
    let sessions: Vec<_> = (0..threads)
        .map(|_| or_die(p11.open_ro_session(slot), "C_OpenSession (plain)"))
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for session in sessions {
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = payloads.get(i) else { break };
                let digest = Sha256::digest(m);
                std::hint::black_box(or_die(
                    session.sign(&Mechanism::Ecdsa, key, &digest),
                    "plain C_Sign",
                ));
            });
        }
    });
    let took = t0.elapsed();
    (payloads.len() as f64 / took.as_secs_f64(), took)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let bins: u64 = env_or("BENCH_BINS", if full { 16_384 } else { 64 });
    let threads: usize = env_or("BENCH_THREADS", 2);
    let rounds: usize = env_or("BENCH_ROUNDS", if full { 3 } else { 1 });
    if !full {
        println!("bins: smoke run (no --bench argument); use benches/bins/run.sh to measure");
    }
    // Before any thread starts: the token's config, and the sessions tufkey signs over.
    let dir = or_die(tempfile::tempdir(), "creating a temp dir");
    new_token(dir.path());
    std::env::set_var(THREADS_ENV, threads.to_string());
    let pin_file = dir.path().join("pin");
    or_die(std::fs::write(&pin_file, PIN), "writing the PIN file");
    let pins = PinPolicy::default();

    let t = Instant::now();
    let mut uris = BTreeMap::new();
    for role in ROLES {
        let u = uri(role, &pin_file);
        let parsed = match or_die(KeyUri::parse(&u), "parsing a key URI") {
            KeyUri::Pkcs11(p) => *p,
            _ => panic!("bench: {u} is not a PKCS#11 URI"),
        };
        or_die(
            pkcs11::generate(&parsed, KeyType::EcdsaP256, &pins),
            "generating a key",
        );
        uris.insert(role, u);
    }
    let root_file = dir.path().join("1.root.json");
    root(&uris, &pins, &root_file);
    let repo_dir = dir.path().join("repo");
    let mut keys_map = BTreeMap::new();
    for role in ["targets", "snapshot", "timestamp"] {
        keys_map.insert(role.to_string(), vec![uris[role].clone()]);
    }
    or_die(
        tufkey::repo::init::init(&repo_dir, &root_file, &[], &keys_map, &pins, Utc::now()),
        "repo init",
    );
    {
        let repo = or_die(Repository::open(&repo_dir), "opening the repository");
        let _lock = or_die(
            RepoLock::acquire(&repo.layout.lock(), Duration::ZERO, "bench"),
            "locking",
        );
        or_die(
            bins::create(
                &repo,
                &BinsRequest {
                    count: bins,
                    uris: std::slice::from_ref(&uris["bins"]),
                    threshold: 1,
                    prefix: "bins",
                    pins: &pins,
                },
            ),
            "repo bins --count",
        );
    }
    let (first, _, _) = run_commit(&repo_dir, bins, false, &pins);
    println!(
        "bins: SoftHSM at {MODULE}; {bins} bins, one P-256 key; {threads} threads each side; {rounds} rounds; {} CPUs; loadavg at start {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        loadavg()
    );
    println!(
        "setup (keys, root, init, bins, first commit of every bin) {:.1} s; first commit {:.2} s",
        t.elapsed().as_secs_f64(),
        first.as_secs_f64()
    );
    let payloads = bin_payloads(&repo_dir);
    assert_eq!(
        payloads.len() as u64,
        bins,
        "bench: not every bin was published"
    );

    let bins_signer = or_die(
        keys::open_signer(&uris["bins"], &pins),
        "opening the bins key",
    );
    let mut many_ratios = Vec::new();
    let mut sign_ratios = Vec::new();
    let mut cpu_plain = Vec::new();
    let mut cpu_many = Vec::new();
    let mut cpu_whole = Vec::new();
    let mut whole_ratios = Vec::new();
    let mut plain_rates = Vec::new();
    let mut sign_rates = Vec::new();
    let mut whole_rates = Vec::new();
    for round in 1..=rounds {
        let per_sig = |c0: f64| (cpu_seconds() - c0) / bins as f64 * 1e6;
        let c0 = cpu_seconds();
        let (plain_rate, plain_took) = plain(&payloads, threads);
        cpu_plain.push(per_sig(c0));
        let c0 = cpu_seconds();
        let (many_rate, check) = sign_many_only(bins_signer.as_ref(), &payloads);
        cpu_many.push(per_sig(c0));
        let c0 = cpu_seconds();
        let (whole, signing, prep) = run_commit(&repo_dir, bins, true, &pins);
        cpu_whole.push(per_sig(c0));
        let sign_rate = bins as f64 / signing.as_secs_f64();
        let whole_rate = bins as f64 / whole.as_secs_f64();
        println!(
            "round {round}: plain {plain_rate:>8.0}/s ({:.2} s) | sign_many alone {many_rate:>8.0}/s, check {:.0} µs each | tufkey signing phase {sign_rate:>8.0}/s ({:.2} s, of which {:.2} s before the first signature), whole command {whole_rate:>8.0}/s ({:.2} s)",
            plain_took.as_secs_f64(),
            check.as_secs_f64() * 1e6,
            signing.as_secs_f64(),
            prep.as_secs_f64(),
            whole.as_secs_f64()
        );
        many_ratios.push(many_rate / plain_rate);
        sign_ratios.push(sign_rate / plain_rate);
        whole_ratios.push(whole_rate / plain_rate);
        plain_rates.push(plain_rate);
        sign_rates.push(sign_rate);
        whole_rates.push(whole_rate);
    }
    println!();
    println!("| {bins} bins, P-256, {threads} threads | signatures/s (median) | ratio to plain (median of rounds) |");
    println!("|---|---|---|");
    println!("| plain cryptoki loop | {:.0} | 1 |", median(&plain_rates));
    println!(
        "| tufkey `sign_many` alone (no check, no repository) | - | {:.2} |",
        median(&many_ratios)
    );
    println!(
        "| tufkey, signing phase | {:.0} | {:.2} |",
        median(&sign_rates),
        median(&sign_ratios)
    );
    println!(
        "| tufkey, whole `repo bins --resign` | {:.0} | {:.2} |",
        median(&whole_rates),
        median(&whole_ratios)
    );
    println!();
    println!(
        "CPU per signature (median, user + system, all threads): plain {:.0} µs; sign_many alone + one check each {:.0} µs; whole `repo bins --resign` {:.0} µs",
        median(&cpu_plain),
        median(&cpu_many),
        median(&cpu_whole)
    );
    println!(
        "P5 target (signing ratio >= 0.80 at 2 threads): {} (ratio {:.2}); loadavg at end {}",
        if median(&sign_ratios) >= 0.8 {
            "met"
        } else {
            "NOT met"
        },
        median(&sign_ratios),
        loadavg()
    );
    if std::env::var_os("BENCH_KEEP").is_some() {
        let kept: PathBuf = dir.keep();
        println!(
            "kept the repository in {} (SOFTHSM2_CONF={})",
            kept.join("repo").display(),
            std::env::var("SOFTHSM2_CONF").unwrap_or_default()
        );
    }
}
