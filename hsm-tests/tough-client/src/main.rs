//! `tough-client`: loads a TUF repository with the `tough` crate, as an application using
//! tough would, and prints one JSON outcome line for tufkey's interop tests.
//!
//! ```text
//! tough-client --root TRUSTED_ROOT.json --metadata-url URL --targets-url URL
//!              --datastore DIR [--target PATH]
//! ```
//!
//! URLs are `file:///folder/` (tough's filesystem transport) or `http://127.0.0.1:PORT/…/`
//! (plain HTTP on loopback, `loopback.rs`). The datastore folder persists between runs, so
//! a second run applies tough's rollback checks against what the first one trusted.
//!
//! tough takes no explicit time: it reads the system clock (and refuses a clock that went
//! backwards since the datastore's last run). Tests that need another time run this program
//! under `faketime`.
//!
//! Output, exit 0: `{"outcome":"ok","trusted_versions":{…},"bytes_len":N,"sha256":"…"}`
//! (`bytes_len`/`sha256` only with `--target`). Exit 3: `{"outcome":"refused",
//! "error_type":"<tough::error::Error variant>","message":"…"}`; a target the metadata does
//! not list is refused as `TargetNotFound`. Exit 2: bad arguments; exit 1: local I/O.

mod loopback;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tough::{FilesystemTransport, IntoVec, Repository, RepositoryLoader, TargetName};
use url::Url;

const USAGE: &str = "usage: tough-client --root TRUSTED_ROOT.json --metadata-url URL \
--targets-url URL --datastore DIR [--target PATH]";

struct Args {
    root: PathBuf,
    metadata_url: Url,
    targets_url: Url,
    datastore: PathBuf,
    target: Option<String>,
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}\n\nLoads a TUF repository with the tough crate and prints one JSON outcome (see the module doc in hsm-tests/tough-client/src/main.rs).");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tough-client: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let root = match std::fs::read(&args.root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "tough-client: cannot read the trusted root {}: {e}",
                args.root.display()
            );
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.datastore) {
        eprintln!(
            "tough-client: cannot create the datastore {}: {e}",
            args.datastore.display()
        );
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tough-client: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (outcome, code) = match runtime.block_on(run(&args, &root)) {
        Ok(v) => (v, 0),
        Err(refusal) => (refusal, 3),
    };
    println!("{outcome}");
    ExitCode::from(code)
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut root, mut metadata_url, mut targets_url, mut datastore, mut target) =
        (None, None, None, None, None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value)),
            "--metadata-url" => metadata_url = Some(base_url(&value)?),
            "--targets-url" => targets_url = Some(base_url(&value)?),
            "--datastore" => datastore = Some(PathBuf::from(value)),
            "--target" => target = Some(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(Args {
        root: root.ok_or("--root is required")?,
        metadata_url: metadata_url.ok_or("--metadata-url is required")?,
        targets_url: targets_url.ok_or("--targets-url is required")?,
        datastore: datastore.ok_or("--datastore is required")?,
        target,
    })
}

/// A base URL with the trailing slash that `Url::join` needs to keep its last segment.
fn base_url(s: &str) -> Result<Url, String> {
    let with_slash = if s.ends_with('/') {
        s.to_string()
    } else {
        format!("{s}/")
    };
    let url = Url::parse(&with_slash).map_err(|e| format!("{s}: not a URL: {e}"))?;
    match url.scheme() {
        "file" | "http" => Ok(url),
        other => Err(format!(
            "{s}: scheme {other} is not supported (file: or http:)"
        )),
    }
}

/// Loads the repository (and reads the target); `Err` is the refusal as JSON.
async fn run(args: &Args, root: &[u8]) -> Result<Value, Value> {
    let loader = RepositoryLoader::new(&root, args.metadata_url.clone(), args.targets_url.clone())
        .datastore(&args.datastore);
    let loader = if args.metadata_url.scheme() == "file" {
        loader.transport(FilesystemTransport)
    } else {
        loader.transport(loopback::LoopbackHttpTransport)
    };
    let repo = loader.load().await.map_err(|e| refused(&e))?;
    let mut out = json!({"outcome": "ok", "trusted_versions": trusted_versions(&repo)});
    if let Some(path) = &args.target {
        let (len, sha256) = read_target(&repo, path).await?;
        out["bytes_len"] = json!(len);
        out["sha256"] = json!(sha256);
    }
    Ok(out)
}

fn trusted_versions(repo: &Repository) -> Value {
    json!({
        "root": repo.root().signed.version.get(),
        "timestamp": repo.timestamp().signed.version.get(),
        "snapshot": repo.snapshot().signed.version.get(),
        "targets": repo.targets().signed.version.get(),
    })
}

/// The target's bytes, which tough hands over only once their length and hashes matched.
async fn read_target(repo: &Repository, path: &str) -> Result<(usize, String), Value> {
    let name = TargetName::new(path).map_err(|e| refused(&e))?;
    let stream = repo.read_target(&name).await.map_err(|e| refused(&e))?;
    let Some(stream) = stream else {
        return Err(json!({
            "outcome": "refused",
            "error_type": "TargetNotFound",
            "message": format!("no targets role (top-level or delegated) lists {path}"),
        }));
    };
    let bytes = stream.into_vec().await.map_err(|e| refused(&e))?;
    Ok((bytes.len(), hex::encode(Sha256::digest(&bytes))))
}

/// tough's error as {error_type, message}. `error_type` is the variant name of the innermost
/// tough error in the chain: a target whose hash does not match surfaces as `Transport`
/// wrapping `HashMismatch` (tough checks while streaming), and the test wants the latter.
fn refused(e: &tough::error::Error) -> Value {
    let mut error_type = variant_name(e);
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(inner) = s.downcast_ref::<tough::error::Error>() {
            error_type = variant_name(inner);
        }
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    json!({"outcome": "refused", "error_type": error_type, "message": message})
}

/// `HashMismatch` for `HashMismatch { context: …, … }`: snafu's Debug starts with the variant.
fn variant_name(e: &tough::error::Error) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}
