//! Issue 11 through the signer daemon: P5's second half and the daemon's memory bound.
//!
//!     benches/p5-serve-batches.sh          # makes the Python venv, then runs this
//!     cargo bench --bench serve_batches    # the same, when the venv exists
//!
//! One run makes a throwaway SoftHSM token with a P-256 key (CKA_ID 0x50), a CA and
//! certificates (rcgen) and a signer.toml, and starts the real `tufkey serve`. Then:
//!
//! - **p5**: 16,384 hashed-bin documents (`bin-0000` … `bin-3fff`, delegated targets
//!   with four targets each) are signed through the daemon with `POST /v1/sign-batch`
//!   (64 documents a request over 4 keep-alive mutual-TLS connections), and every
//!   signature is then checked against the key. In the same run, on the same token and
//!   key, securesystemslib's `HSMSigner` (python-pkcs11 from PyPI, in the bench's own
//!   venv `target/p5-venv`) signs the same 16,384 canonical payloads
//!   (benches/p5_hsmsigner.py). Target: tufkey serve ≥ 20 × HSMSigner.
//! - **memory**: 64 clients send `POST /v1/sign` bodies of just under 1 MiB (a targets
//!   document with many targets) at once, several each; the daemon's resident memory
//!   is sampled throughout and its peak (`VmHWM`) compared with the bound
//!   docs/signer.md states: the size before the load plus 2 × `body_memory`.
//!
//! Environment: BENCH_PARTS (default "p5,memory"), BENCH_P5_DOCUMENTS (16384),
//! BENCH_BATCH (64), BENCH_P5_CLIENTS (4), BENCH_P5_PYTHON (target/p5-venv/bin/python;
//! the comparison is skipped, saying so, when it is missing), BENCH_MEMORY_CLIENTS (64),
//! BENCH_MEMORY_REQUESTS (4 per client), BENCH_BODY_MEMORY (the daemon's `body_memory`,
//! default its own default), BENCH_DIR (where the token and the audit log live; default
//! target/), TUFKEY_BIN. Without `--bench` it is a smoke run with few documents.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tufkey::keys::pkcs11::{self, Pkcs11Signer};
use tufkey::keys::{KeyUri, PinPolicy, Signer};
use tufkey::tuf::{KeyType, Metadata};

#[path = "common/mod.rs"]
mod common;
#[path = "common/serve.rs"]
mod serve;
use common::*;
use serve::{client_runtime, client_tls, connect, cpu_secs, post_once, Ca, Daemon};

const CLIENT: &str = "bench-client";
/// CKA_ID of the P5 key: securesystemslib's HSMSigner finds keys by an integer id.
const KEY_ID_BYTE: u8 = 0x50;

fn daemon_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TUFKEY_BIN") {
        return PathBuf::from(p);
    }
    let exe = or_die(std::env::current_exe(), "current_exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("tufkey"))
        .unwrap_or_else(|| panic!("bench: cannot find the tufkey binary; set TUFKEY_BIN"))
}

/// A hashed bin's document: delegated targets with four targets.
fn bin_doc(i: usize, expires: &str) -> Value {
    let mut targets = serde_json::Map::new();
    for t in 0..4 {
        let name = format!("packages/{i:05}/pkg-{t}.tar.gz");
        let hash = hex::encode(Sha256::digest(name.as_bytes()));
        targets.insert(
            name,
            json!({"length": 1000 + t, "hashes": {"sha256": hash}}),
        );
    }
    json!({"signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1,
        "expires": expires, "targets": targets}, "signatures": []})
}

/// The resident and peak resident memory of a process, in KiB (`/proc/<pid>/status`).
fn rss_kib(pid: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Setup {
    dir: tempfile::TempDir,
    conf: String,
    signer: Pkcs11Signer,
    daemon: Daemon,
    rt: tokio::runtime::Runtime,
    tls: Arc<rustls::ClientConfig>,
    expires: String,
}

fn setup(body_memory: Option<&str>) -> Setup {
    let root = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let _ = std::fs::create_dir_all(&root);
    let dir = or_die(
        tempfile::Builder::new()
            .prefix("bench-serve-batches-")
            .tempdir_in(&root),
        "temp dir",
    );
    let d = dir.path();
    let conf = new_token(&d.join("hsm"));
    or_die(std::fs::write(d.join("pin"), PIN), "pin file");
    let uri = format!(
        "pkcs11:token={TOKEN};object=p5;id=%{KEY_ID_BYTE:02x}?module-path={MODULE}&pin-value={PIN}"
    );
    let policy = PinPolicy::default();
    let KeyUri::Pkcs11(parsed) = or_die(KeyUri::parse(&uri), "key URI") else {
        panic!("bench: {uri} is not a PKCS#11 URI")
    };
    or_die(
        pkcs11::generate(&parsed, KeyType::EcdsaP256, &policy),
        "generating the key",
    );
    let signer = or_die(Pkcs11Signer::open(&parsed, &policy), "opening the key");
    let ca = Ca::new(d);
    ca.issue(d, "server", "localhost", true);
    ca.issue(d, "client", CLIENT, false);
    let mut cfg = String::from(
        "listen = \"127.0.0.1:0\"\nstate = \"state.json\"\naudit = \"audit.jsonl\"\n\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n\n[limits]\nmax_batch_documents = 1024\n# 64 clients queue for the body budget: wait for it rather than get 503.\nqueue_timeout = \"120s\"\n",
    );
    if let Some(m) = body_memory {
        cfg.push_str(&format!("body_memory = \"{m}\"\n"));
    }
    cfg.push_str(&format!(
        "\n[[keys]]\nuri = \"pkcs11:token={TOKEN};object=p5?module-path={MODULE}&pin-source=file:{}\"\n\n[[clients]]\nidentity = \"{CLIENT}\"\nkeys = [\"{}\"]\nrepositories = [\"*\"]\nroles = [\"*\"]\nmax_expiry = \"7d\"\n",
        d.join("pin").display(),
        signer.key_id()
    ));
    or_die(std::fs::write(d.join("signer.toml"), cfg), "signer.toml");
    let daemon = Daemon::start(&daemon_binary(), d, &conf);
    let rt = client_runtime(2);
    Setup {
        tls: client_tls(d),
        dir,
        conf,
        signer,
        daemon,
        rt,
        expires: tufkey::tuf::time::format_expires(chrono::Utc::now() + chrono::Duration::days(1)),
    }
}

/// Sends every body over `clients` keep-alive connections (each takes the next body
/// when its answer is in); returns the answers in order and the elapsed time.
fn send_all(
    s: &Setup,
    path: &'static str,
    bodies: Vec<String>,
    clients: usize,
) -> (Vec<bytes::Bytes>, Duration) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    s.rt.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..clients {
            senders.push(connect(s.daemon.addr, s.tls.clone(), Arc::new(AtomicU64::new(0))).await);
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for mut send in senders {
            let (bodies, next) = (bodies.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    got.push((i, post_once(&mut send, path, body.clone()).await));
                }
                got
            }));
        }
        let mut answers = vec![bytes::Bytes::new(); bodies.len()];
        for t in tasks {
            for (i, a) in or_die(t.await, "a client task") {
                answers[i] = a;
            }
        }
        (answers, start.elapsed())
    })
}

fn p5(s: &Setup, full: bool) {
    let n: usize = env_or("BENCH_P5_DOCUMENTS", if full { 16384 } else { 256 });
    let batch: usize = env_or("BENCH_BATCH", 64);
    let clients: usize = env_or("BENCH_P5_CLIENTS", 4);
    let key_id = s.signer.key_id().to_string();
    let docs: Vec<(String, Value)> = (0..n)
        .map(|i| (format!("bin-{i:04x}"), bin_doc(i, &s.expires)))
        .collect();
    let payloads: Vec<Vec<u8>> = docs
        .iter()
        .map(|(_, d)| or_die(Metadata::from_value(d.clone()), "bin document").payload())
        .collect();
    let bodies: Vec<String> = docs
        .chunks(batch)
        .map(|c| {
            json!({"repository": "p5", "key_id": key_id,
                "documents": c.iter().map(|(role, d)| json!({"role": role, "metadata": d})).collect::<Vec<_>>()})
            .to_string()
        })
        .collect();
    let dpid = s.daemon.child.id().to_string();
    let (cpu0, me0) = (cpu_secs(&dpid), cpu_secs(&std::process::id().to_string()));
    let (answers, took) = send_all(s, "/v1/sign-batch", bodies, clients);
    let (cpu1, me1) = (cpu_secs(&dpid), cpu_secs(&std::process::id().to_string()));
    // Every signature, checked outside the clock.
    let public = s.signer.public_key();
    let mut k = 0;
    for a in &answers {
        let v: Value = or_die(serde_json::from_slice(a), "batch answer");
        for r in v["results"].as_array().into_iter().flatten() {
            assert_eq!(r["status"], 200, "bench: a document was refused: {r}");
            or_die(
                public.verify_hex(&payloads[k], r["sig"].as_str().unwrap_or("")),
                "a daemon signature does not verify",
            );
            k += 1;
        }
    }
    assert_eq!(k, n, "bench: {k} signatures for {n} documents");
    let tufkey_rate = n as f64 / took.as_secs_f64();
    println!(
        "p5: tufkey serve signed {n} bins in {:.2} s with batches of {batch} over {clients} connections: {tufkey_rate:.0}/s (daemon CPU {:.0} us/sig, client CPU {:.0} us/sig); all {n} signatures verify",
        took.as_secs_f64(),
        (cpu1 - cpu0) * 1e6 / n as f64,
        (me1 - me0) * 1e6 / n as f64
    );

    let python = std::env::var_os("BENCH_P5_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/p5-venv/bin/python"));
    if !python.exists() {
        println!(
            "p5: securesystemslib HSMSigner skipped: {} does not exist (benches/p5-serve-batches.sh makes it)",
            python.display()
        );
        return;
    }
    let file = s.dir.path().join("payloads.hex");
    let text: String = payloads.iter().map(|p| hex::encode(p) + "\n").collect();
    or_die(std::fs::write(&file, text), "payload file");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/p5_hsmsigner.py");
    let out = or_die(
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&file)
            .arg(TOKEN)
            .arg(KEY_ID_BYTE.to_string())
            .arg(&key_id)
            .arg(s.signer.public_key().to_value().to_string())
            .env("PYKCS11LIB", MODULE)
            .env("SOFTHSM2_CONF", &s.conf)
            .env("P5_PIN", PIN)
            .output(),
        "running benches/p5_hsmsigner.py",
    );
    assert!(
        out.status.success(),
        "bench: p5_hsmsigner.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = or_die(
        serde_json::from_slice(&out.stdout),
        "p5_hsmsigner.py output",
    );
    let py_rate = v["count"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(f64::NAN);
    let ratio = tufkey_rate / py_rate;
    println!(
        "p5: securesystemslib {} HSMSigner (python-pkcs11 {}) signed {} payloads in {:.2} s: {py_rate:.0}/s; its signatures verify: {}",
        v["securesystemslib"].as_str().unwrap_or("?"),
        v["python_pkcs11"].as_str().unwrap_or("?"),
        v["count"],
        v["seconds"].as_f64().unwrap_or(f64::NAN),
        v["verified"]
    );
    println!(
        "p5: tufkey serve with batches / HSMSigner = {ratio:.1} (target >= 20): {}",
        match (full, ratio >= 20.0) {
            (false, _) => "n/a (smoke run)",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
}

fn memory(s: &Setup, full: bool) {
    let clients: usize = env_or("BENCH_MEMORY_CLIENTS", 64);
    let per_client: usize = env_or("BENCH_MEMORY_REQUESTS", if full { 4 } else { 1 });
    let key_id = s.signer.key_id().to_string();
    let dpid = s.daemon.child.id().to_string();
    // A targets document of just under 1 MiB (the default max_body) per request.
    let body = |repo: usize, version: usize| {
        let mut targets = serde_json::Map::new();
        let mut i = 0;
        let mut size = 0;
        while size < 1_000_000 {
            let name = format!("files/{i:07}.bin");
            size += name.len() + 110;
            targets.insert(name, json!({"length": i, "hashes": {"sha256": "8f88e2ba48b412c3843e9bb26e1b6f8fc9e98aceb0fbaa97ba37b4c98717d7ab"}}));
            i += 1;
        }
        // A repository of its own per request: the requests of one client may be
        // answered in any order, and each is version 1 of its repository.
        json!({"repository": format!("mem-{repo}-{version}"), "key_id": key_id, "role": "targets",
            "metadata": {"signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1,
                "expires": s.expires, "targets": targets}, "signatures": []}})
        .to_string()
    };
    // Warm-up: one such request, so the baseline holds what any request leaves behind.
    let warm = body(clients, 1);
    let max = warm.len();
    send_all(s, "/v1/sign", vec![warm], 1);
    let (base, _) = rss_kib(&dpid);
    let bodies: Vec<String> = (1..=per_client)
        .flat_map(|v| (0..clients).map(move |c| (c, v)))
        .map(|(c, v)| body(c, v))
        .collect();
    let total = bodies.len();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, dpid) = (stop.clone(), dpid.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(&dpid).0);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let (answers, took) = send_all(s, "/v1/sign", bodies, clients);
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.join().unwrap_or(0);
    let (after, hwm) = rss_kib(&dpid);
    assert_eq!(answers.len(), total);
    let body_memory = std::env::var("BENCH_BODY_MEMORY").ok();
    let budget_mib = body_memory
        .as_deref()
        .and_then(|m| m.strip_suffix("MiB"))
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(64);
    let bound = base + 2 * budget_mib * 1024;
    println!(
        "memory: {clients} clients sent {total} bodies of {:.2} MiB each in {:.1} s; daemon RSS before {:.0} MiB, sampled peak {:.0} MiB, VmHWM {:.0} MiB, after {:.0} MiB",
        max as f64 / 1048576.0,
        took.as_secs_f64(),
        base as f64 / 1024.0,
        sampled as f64 / 1024.0,
        hwm as f64 / 1024.0,
        after as f64 / 1024.0
    );
    println!(
        "memory: bound = RSS before + 2 x body_memory ({budget_mib} MiB) = {:.0} MiB: {}",
        bound as f64 / 1024.0,
        if hwm <= bound { "held" } else { "EXCEEDED" }
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "p5,memory".into());
    let body_memory = std::env::var("BENCH_BODY_MEMORY").ok();
    let s = setup(body_memory.as_deref());
    println!(
        "serve_batches: daemon {} at https://{}; {} CPUs; loadavg {}",
        daemon_binary().display(),
        s.daemon.addr,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    if parts.split(',').any(|p| p.trim() == "p5") {
        p5(&s, full);
    }
    if parts.split(',').any(|p| p.trim() == "memory") {
        memory(&s, full);
    }
    println!("serve_batches: loadavg at end {}", loadavg());
}
