//! Real TUF clients for the tests: python-tuf's `ngclient.Updater` and the `tough` crate,
//! updating from a repository folder served over HTTP on loopback.
//!
//! A test serves a folder with [`HttpRepo::serve`], makes one client per cache folder with
//! [`ngclient`] or [`tough`] (or [`tough_folder`], tough's filesystem transport), and calls
//! `refresh()` / `download(path)`. Each call is one update cycle of a new client process
//! that starts from the trusted root and the cache folder, as an installed client would:
//! rollback and freeze checks apply against what earlier calls trusted.
//!
//! Neither client can be given a time: python-tuf reads the clock, tough too (and refuses a
//! clock that went back since its datastore was last used). `.at(time)` runs the client
//! under `faketime` (Debian package `faketime`) with the clock set back or forward by a
//! fixed offset, so it starts at `time` and runs on across calls, as a real clock does.
//!
//! Needs: `$TUFKEY_TEST_PYTHON` (python-tuf venv, see hsm-tests/run.sh) and the tough client
//! built with `cargo build -p tough-client` (or `$TUFKEY_TEST_TOUGH_CLIENT`).

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

/// The helper scripts beside the tests.
fn script(name: &str) -> PathBuf {
    super::repo().join("hsm-tests/clients").join(name)
}

fn utf8(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("not a UTF-8 path: {}", p.display()))
}

// ---- the server ----------------------------------------------------------------------

/// A Python `http.server` on 127.0.0.1 (port chosen by the OS) serving one repository
/// folder (`metadata/`, `targets/`), killed by PID at drop. Every request is logged, so a
/// test can assert what a client fetched.
pub struct HttpRepo {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    _state: tempfile::TempDir,
    taken: Cell<usize>,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Request {
    pub method: String,
    /// The URL path, e.g. `/metadata/3.snapshot.json`.
    pub path: String,
    pub status: u16,
}

impl HttpRepo {
    /// Starts serving `dir`; returns once the port is bound.
    pub fn serve(dir: &Path) -> HttpRepo {
        let state = tempfile::Builder::new()
            .prefix("tufkey-http-")
            .tempdir()
            .expect("temp dir for the server's log");
        let log = state.path().join("requests.jsonl");
        let stderr_path = state.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("server stderr file");
        let mut child = Command::new(super::python())
            .arg(script("serve.py"))
            .arg(dir)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start python http.server (hsm-tests/clients/serve.py)");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("server stdout")).read_line(&mut line);
        let port = match (read, line.trim().parse::<u16>()) {
            (Ok(_), Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the HTTP server for {} did not start: {}",
                    dir.display(),
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        HttpRepo {
            child,
            port,
            dir: dir.to_path_buf(),
            log,
            _state: state,
            taken: Cell::new(0),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/metadata/", self.base_url())
    }

    pub fn targets_url(&self) -> String {
        format!("{}/targets/", self.base_url())
    }

    /// The folder being served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every request since the server started, in order.
    pub fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("request log {}: {e}: {l}", self.log.display()))
            })
            .collect()
    }

    /// The requests since the last `take_requests` (or since the start): what one client
    /// call fetched.
    pub fn take_requests(&self) -> Vec<Request> {
        let all = self.requests();
        let new = all[self.taken.get().min(all.len())..].to_vec();
        self.taken.set(all.len());
        new
    }
}

impl Drop for HttpRepo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The paths of the requests answered with `status`.
pub fn paths_with_status(requests: &[Request], status: u16) -> Vec<&str> {
    requests
        .iter()
        .filter(|r| r.status == status)
        .map(|r| r.path.as_str())
        .collect()
}

// ---- what a client says --------------------------------------------------------------

/// The versions a client trusts after an update cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TrustedVersions {
    pub root: u64,
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
}

/// The result of one update cycle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ClientOutcome {
    /// The client accepted the repository; `bytes_len`/`sha256` are those of the target
    /// it delivered (`None` for a refresh).
    Ok {
        #[serde(default)]
        bytes_len: Option<u64>,
        #[serde(default)]
        sha256: Option<String>,
        trusted_versions: TrustedVersions,
    },
    /// The client refused: `error_type` is python-tuf's exception class
    /// (`ExpiredMetadataError`, …) or tough's error variant (`ExpiredMetadata`, …);
    /// both say `TargetNotFound` for a target that no role lists.
    Refused { error_type: String, message: String },
}

impl ClientOutcome {
    /// The trusted versions; panics with the client's refusal otherwise.
    #[track_caller]
    pub fn trusted(&self) -> TrustedVersions {
        match self {
            ClientOutcome::Ok {
                trusted_versions, ..
            } => *trusted_versions,
            ClientOutcome::Refused {
                error_type,
                message,
            } => panic!("the client refused: {error_type}: {message}"),
        }
    }

    /// (length, sha256) of the delivered target; panics if the client refused or fetched none.
    #[track_caller]
    pub fn delivered(&self) -> (u64, String) {
        match self {
            ClientOutcome::Ok {
                bytes_len: Some(len),
                sha256: Some(sha),
                ..
            } => (*len, sha.clone()),
            other => panic!("expected a delivered target, got {other:?}"),
        }
    }

    /// (error_type, message); panics if the client accepted.
    #[track_caller]
    pub fn refusal(&self) -> (&str, &str) {
        match self {
            ClientOutcome::Refused {
                error_type,
                message,
            } => (error_type, message),
            ok => panic!("expected the client to refuse, it accepted: {ok:?}"),
        }
    }
}

// ---- the clients ---------------------------------------------------------------------

/// Which client program runs an update cycle.
#[derive(Debug, Clone)]
enum Program {
    Ngclient,
    Tough,
}

/// One installed client: its trusted root, its cache folder, where it fetches from.
#[derive(Debug, Clone)]
pub struct Client {
    program: Program,
    metadata_url: String,
    targets_url: String,
    trusted_root: PathBuf,
    cache: PathBuf,
    /// Seconds to add to the real clock (through faketime), if any.
    clock_offset: Option<i64>,
}

/// python-tuf's `ngclient.Updater` fetching from `http`, starting from `trusted_root`,
/// keeping its metadata in `cache/metadata` and downloads in `cache/targets`.
pub fn ngclient(http: &HttpRepo, trusted_root: &Path, cache: &Path) -> Client {
    Client::new(
        Program::Ngclient,
        http.metadata_url(),
        http.targets_url(),
        trusted_root,
        cache,
    )
}

/// tough (`hsm-tests/tough-client`) fetching from `http`, with `datastore` as its cache.
pub fn tough(http: &HttpRepo, trusted_root: &Path, datastore: &Path) -> Client {
    Client::new(
        Program::Tough,
        http.metadata_url(),
        http.targets_url(),
        trusted_root,
        datastore,
    )
}

/// One client of each kind fetching from `http`, with caches `caches/ngclient` and
/// `caches/tough`: what a test runs when both clients must agree.
pub fn both(http: &HttpRepo, trusted_root: &Path, caches: &Path) -> [Client; 2] {
    [
        ngclient(http, trusted_root, &caches.join("ngclient")),
        tough(http, trusted_root, &caches.join("tough")),
    ]
}

/// tough reading a repository folder through its filesystem transport (`file://` URLs).
pub fn tough_folder(repo_dir: &Path, trusted_root: &Path, datastore: &Path) -> Client {
    let dir = repo_dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", repo_dir.display()));
    Client::new(
        Program::Tough,
        format!("file://{}/metadata/", utf8(&dir)),
        format!("file://{}/targets/", utf8(&dir)),
        trusted_root,
        datastore,
    )
}

impl Client {
    fn new(
        program: Program,
        metadata_url: String,
        targets_url: String,
        trusted_root: &Path,
        cache: &Path,
    ) -> Client {
        Client {
            program,
            metadata_url,
            targets_url,
            trusted_root: trusted_root.to_path_buf(),
            cache: cache.to_path_buf(),
            clock_offset: None,
        }
    }

    /// Runs this client with a clock that reads `time` now (`2025-02-09 12:02:08+00:00` or
    /// `2025-02-09T12:02:08Z`) and keeps running, through `faketime`. An offset rather than
    /// a fixed time: tough refuses a clock that reads earlier than at its previous run.
    pub fn at(mut self, time: &str) -> Client {
        let t =
            chrono::DateTime::parse_from_rfc3339(&time.replacen(' ', "T", 1)).unwrap_or_else(|e| {
                panic!("time {time:?}: {e}: give 2025-02-09T12:02:08Z or 2025-02-09 12:02:08+00:00")
            });
        self.clock_offset =
            Some((t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds());
        self
    }

    /// One update cycle: root, timestamp, snapshot, top-level targets.
    pub fn refresh(&self) -> ClientOutcome {
        self.run(None)
    }

    /// One update cycle that also fetches `target_path` (delegations followed), its length
    /// and hashes checked by the client before it hands the bytes over.
    pub fn download(&self, target_path: &str) -> ClientOutcome {
        self.run(Some(target_path))
    }

    /// `ngclient` or `tough`, for messages.
    pub fn name(&self) -> &'static str {
        match self.program {
            Program::Ngclient => "python-tuf ngclient",
            Program::Tough => "tough",
        }
    }

    fn run(&self, target: Option<&str>) -> ClientOutcome {
        let mut argv: Vec<String> = match self.program {
            Program::Ngclient => vec![
                utf8(&super::python()).to_string(),
                utf8(&script("ngclient.py")).to_string(),
                self.metadata_url.clone(),
                self.targets_url.clone(),
                utf8(&self.trusted_root).to_string(),
                utf8(&self.cache).to_string(),
            ],
            Program::Tough => vec![
                utf8(&tough_client_bin()).to_string(),
                "--root".into(),
                utf8(&self.trusted_root).to_string(),
                "--metadata-url".into(),
                self.metadata_url.clone(),
                "--targets-url".into(),
                self.targets_url.clone(),
                "--datastore".into(),
                utf8(&self.cache).to_string(),
            ],
        };
        match (&self.program, target) {
            (Program::Ngclient, Some(t)) => argv.push(t.to_string()),
            (Program::Tough, Some(t)) => argv.extend(["--target".to_string(), t.to_string()]),
            (_, None) => {}
        }
        let mut cmd = match self.clock_offset {
            Some(offset) => {
                // libfaketime's relative form: "+N" / "-N" seconds from the real clock.
                let mut c = Command::new(faketime_bin());
                c.args(["-f", &format!("{offset:+}")])
                    .args(&argv)
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.stdin(Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        // ngclient.py exits 0 for either outcome; tough-client exits 3 when tough refused.
        let code = out.status.code().unwrap_or(-1);
        let parsed = serde_json::from_str::<ClientOutcome>(line);
        match (code, parsed) {
            (0, Ok(o)) | (3, Ok(o @ ClientOutcome::Refused { .. })) => o,
            (_, parsed) => panic!(
                "{} failed (exit {code}, {parsed:?}):\nargv: {argv:?}\nstdout: {stdout}\nstderr: {}",
                self.name(),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

fn faketime_bin() -> PathBuf {
    let p = PathBuf::from("/usr/bin/faketime");
    assert!(
        p.exists(),
        "faketime is not installed: apt-get install faketime (hsm-tests/run.sh does); \
         neither python-tuf's client nor tough can be given a time otherwise"
    );
    p
}

/// The tough client, built by `cargo build -p tough-client` into this test's target folder;
/// refused when older than its sources, so a test never runs a stale client.
pub fn tough_client_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TUFKEY_TEST_TOUGH_CLIENT") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test binary> -> target/debug/tough-client
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("tough-client");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the tough client first: cargo build -p tough-client \
                 (hsm-tests/run.sh does)",
                bin.display()
            )
        });
    let src = super::repo().join("hsm-tests/tough-client");
    for f in [
        src.join("Cargo.toml"),
        src.join("src/main.rs"),
        src.join("src/loopback.rs"),
    ] {
        let changed = std::fs::metadata(&f).and_then(|m| m.modified());
        if changed.is_ok_and(|c| c > built) {
            panic!(
                "{} is older than {}: rebuild it with cargo build -p tough-client",
                bin.display(),
                f.display()
            );
        }
    }
    bin
}
