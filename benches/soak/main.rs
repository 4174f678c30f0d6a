//! The daemon soak of issue 13: `tufkey serve` (release build) with a SoftHSM key and
//! the replicas' PostgreSQL store (versions and the audit chain in one database), 64
//! mutual-TLS clients signing for `SOAK_SECONDS` (default 600), the token removed and
//! restored every 30 s and the PostgreSQL server restarted twice; then PASS/FAIL per
//! check and the figures for docs/performance.md ("Soak (issue 13)").
//!
//!     benches/soak/run.sh                      # 10 minutes; SOAK_SECONDS=60 for a quick check
//!     SOAK_SECONDS=60 cargo bench --bench soak # the same without the log file
//!
//! Environment: SOAK_SECONDS (600), SOAK_CLIENTS (64), SOAK_BATCH (16: documents per
//! `/v1/sign-batch` request), SOAK_TOKEN_EVERY (30 s), SOAK_TOKEN_OUT (5 s: how long the
//! token stays away), SOAK_PG_DOWN (5 s), SOAK_PG_RESTARTS (2: spread evenly over the
//! run; more of them tell a per-outage leak from a one-off rise), SOAK_BACKOFF_MS (200: a client's pause after a
//! failed request), SOAK_TIMEOUT (30 s: a request without an answer by then counts as
//! lost), SOAK_RSS_BOUND (1.25: the last minute's highest RSS at most this times the
//! first minute's), SOAK_RECOVERY_BOUND (15 s), SOAK_CLIENT_THREADS (2), SOAK_DIR (where
//! the token and the daemon's files go; default target/), SOAK_KEEP=1 (keep that folder),
//! TUFKEY_BIN (the daemon; default the one cargo built for this bench). PostgreSQL comes
//! from hsm-tests/harness/pg.rs (Debian's postgresql binaries, a throwaway data folder).
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does nothing: a soak is not a
//! test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tufkey::keys::pkcs11::{self, Pkcs11Signer};
use tufkey::keys::{KeyUri, PinPolicy, Pkcs11Uri, Signer};
use tufkey::tuf::KeyType;

#[path = "../common/mod.rs"]
mod common;
#[path = "../../hsm-tests/harness/pg.rs"]
mod pg;
#[path = "../common/serve.rs"]
mod serve;

mod checks;
mod clients;
mod faults;
mod report;

use common::{env_or, loadavg, new_token, or_die, MODULE, PIN, TOKEN};
use serve::{client_runtime, client_tls, Ca, Daemon};

const CLIENT: &str = "soak-client";
const OBJECT: &str = "soak";

fn daemon_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TUFKEY_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_tufkey") {
        Some(p) => PathBuf::from(p),
        None => panic!("soak: cannot find the tufkey binary; set TUFKEY_BIN"),
    }
}

fn key_uri() -> Pkcs11Uri {
    let s = format!("pkcs11:token={TOKEN};object={OBJECT}?module-path={MODULE}&pin-value={PIN}");
    match or_die(KeyUri::parse(&s), "parsing the soak key URI") {
        KeyUri::Pkcs11(u) => *u,
        _ => panic!("soak: {s} did not parse as a PKCS#11 URI"),
    }
}

/// signer.toml: everything in PostgreSQL (docs/signer.md, "Several replicas").
fn signer_toml(d: &Path, pg_url: &str, key_id: &str) -> String {
    let roles: Vec<String> = clients::ROLES.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "# written by benches/soak\nlisten = \"127.0.0.1:0\"\nstate = \"{pg_url}\"\n\n\
         [tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n\n\
         [[keys]]\nuri = \"pkcs11:token={TOKEN};object={OBJECT}?module-path={MODULE}&pin-source=file:{}\"\n\n\
         [[clients]]\nidentity = \"{CLIENT}\"\nkeys = [\"{key_id}\"]\nrepositories = [\"*\"]\nroles = [{}]\nmax_expiry = \"7d\"\n",
        d.join("pin").display(),
        roles.join(", ")
    )
}

/// SIGTERM, then wait (20 s) for the exit status.
fn stop_daemon(d: &mut Daemon) -> Option<std::process::ExitStatus> {
    let pid = d.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(Some(st)) = d.child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: not run without --bench (benches/soak/run.sh or cargo bench --bench soak)");
        return;
    }
    let total: f64 = env_or("SOAK_SECONDS", 600.0);
    let n_clients: usize = env_or("SOAK_CLIENTS", 64);
    let plan = faults::Plan::new(
        total,
        env_or("SOAK_TOKEN_EVERY", 30.0),
        env_or("SOAK_TOKEN_OUT", 5.0),
        env_or("SOAK_PG_DOWN", 5.0),
        env_or("SOAK_PG_RESTARTS", 2),
    );
    let rss_bound: f64 = env_or("SOAK_RSS_BOUND", 1.25);
    let recovery_bound: f64 = env_or("SOAK_RECOVERY_BOUND", 15.0);
    assert!(
        total >= 30.0 && n_clients > 0,
        "soak: SOAK_SECONDS must be at least 30 and SOAK_CLIENTS positive"
    );

    let root = std::env::var_os("SOAK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let _ = std::fs::create_dir_all(&root);
    let dir = or_die(
        tempfile::Builder::new().prefix("soak-").tempdir_in(&root),
        "creating a temp dir",
    );
    let d = dir.path();
    // Nothing else runs yet, and the module is not loaded.
    let conf = new_token(&d.join("hsm"));
    or_die(std::fs::write(d.join("pin"), PIN), "pin file");
    let policy = PinPolicy::default();
    let uri = key_uri();
    or_die(
        pkcs11::generate(&uri, KeyType::EcdsaP256, &policy),
        "generating the P-256 key",
    );
    let (key_id, key) = {
        let s = or_die(Pkcs11Signer::open(&uri, &policy), "Pkcs11Signer::open");
        (s.key_id().to_string(), s.public_key().clone())
    };
    let token = faults::TokenFolder::find(&d.join("hsm"));
    let pg = pg::Postgres::start().unwrap_or_else(|| panic!("soak: needs PostgreSQL"));
    let pg_url = pg.url();

    let ca = Ca::new(d);
    ca.issue(d, "server", "localhost", true);
    ca.issue(d, "client", CLIENT, false);
    or_die(
        std::fs::write(d.join("signer.toml"), signer_toml(d, &pg_url, &key_id)),
        "signer.toml",
    );
    let bin = daemon_binary();
    let mut daemon = Daemon::start(&bin, d, &conf);
    let pid = daemon.child.id();
    let client_threads: usize = env_or("SOAK_CLIENT_THREADS", 2);
    println!(
        "soak: {} (pid {pid}) at https://{} on {pg_url}; {n_clients} clients for {total:.0} s; token away {:.0} s at {:?} s; PostgreSQL down {:.0} s at {:?} s; loadavg at start {}",
        bin.display(),
        daemon.addr,
        plan.token_out,
        plan.token_at,
        plan.pg_down,
        plan.pg_at,
        loadavg()
    );

    let start = Instant::now();
    let setup = Arc::new(clients::Setup {
        addr: daemon.addr,
        tls: client_tls(d),
        key_id: key_id.clone(),
        key,
        start,
        deadline: Duration::from_secs_f64(total),
        batch: env_or("SOAK_BATCH", 16),
        backoff: Duration::from_millis(env_or("SOAK_BACKOFF_MS", 200)),
        timeout: Duration::from_secs_f64(env_or("SOAK_TIMEOUT", 30.0)),
        expires_base: chrono::Utc::now() + chrono::Duration::days(1),
    });
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss_thread = {
        let stop = stop_rss.clone();
        std::thread::spawn(move || faults::sample_rss(start, pid, stop))
    };
    let fault_thread = std::thread::spawn(move || {
        let r = faults::inject(start, &plan, &token, pg);
        (r, plan)
    });
    let rt = client_runtime(client_threads);
    let mut records = rt.block_on(async {
        let tasks: Vec<_> = (0..n_clients)
            .map(|i| tokio::spawn(clients::run(setup.clone(), i)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(or_die(t.await, "a client task"));
        }
        all
    });
    let ran = start.elapsed().as_secs_f64();
    records.sort_by(|a, b| a.t1.total_cmp(&b.t1));
    let ((faults_seen, pg), plan) = fault_thread
        .join()
        .unwrap_or_else(|_| panic!("soak: the fault thread panicked"));
    stop_rss.store(true, Ordering::Relaxed);
    let alive = matches!(daemon.child.try_wait(), Ok(None));
    let rss = rss_thread
        .join()
        .unwrap_or_else(|_| panic!("soak: the RSS thread panicked"));
    let stopped = stop_daemon(&mut daemon);
    println!("soak: clients done after {ran:.1} s; loadavg {}", loadavg());

    // The chain as the daemon left it, and its entries.
    let verify = or_die(
        std::process::Command::new(&bin)
            .args(["audit", "verify", &pg_url])
            .output(),
        "tufkey audit verify",
    );
    let export_path = d.join("audit.jsonl");
    let export = or_die(
        std::process::Command::new(&bin)
            .args(["audit", "export", &pg_url, "-o"])
            .arg(&export_path)
            .output(),
        "tufkey audit export",
    );
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&export_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    report::totals(&records, total);
    let step = if total >= 180.0 { 30.0 } else { 10.0 };
    report::timeline(&records, total, step);
    let rec = checks::recoveries(&faults_seen, &records);
    report::faults(&faults_seen, &records, &rec);
    report::rss(&rss, total, if total >= 180.0 { 60.0 } else { 10.0 });

    let mut results = vec![checks::command(
        "the daemon stayed up through every fault and stopped cleanly on SIGTERM",
        alive && stopped.is_some_and(|s| s.success()),
        format!("running at the end: {alive}; exit on SIGTERM: {stopped:?}"),
    )];
    results.extend(checks::signatures(&records, &entries));
    results.push(checks::command(
        "the audit chain in PostgreSQL verifies (tufkey audit verify) and exports",
        verify.status.success() && export.status.success() && !entries.is_empty(),
        format!(
            "{} entries; verify: {}",
            entries.len(),
            String::from_utf8_lossy(&verify.stdout)
                .trim()
                .lines()
                .chain(String::from_utf8_lossy(&verify.stderr).trim().lines())
                .chain(String::from_utf8_lossy(&export.stderr).trim().lines())
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    ));
    results.push(checks::rss_flat(&rss, total, rss_bound));
    results.push(checks::recovered(&faults_seen, &rec, recovery_bound));
    let planned = plan.token_at.len() + plan.pg_at.len();
    results.push(checks::command(
        "every planned fault happened",
        faults_seen.len() == planned,
        format!("{} of {planned}", faults_seen.len()),
    ));

    println!();
    let mut failed = 0;
    for c in &results {
        println!(
            "{} {}: {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
        failed += usize::from(!c.pass);
    }
    if failed > 0 {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        println!("\nthe daemon's log, last lines:");
        for l in tail.into_iter().rev() {
            println!("  {l}");
        }
    }
    println!(
        "\nsoak: {} of {} checks passed",
        results.len() - failed,
        results.len()
    );
    drop(daemon);
    drop(pg);
    if std::env::var("SOAK_KEEP").is_ok_and(|v| v == "1") {
        println!("soak: kept {}", dir.keep().display());
    } else {
        drop(dir);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
