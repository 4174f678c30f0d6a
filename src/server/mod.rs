//! `tufkey serve`: the signer daemon for CI pipelines.
//!
//! HTTPS with a client certificate ([`tls`]) or a CI job's OIDC token ([`oidc`]) as
//! one caller [`identity`], on one or more [`listeners`], a policy per client identity
//! ([`config`]), an API under `/v1` that parses what it signs (`api`), versions that
//! only move forward ([`state`]), an audit entry made durable before any signature is
//! returned ([`crate::audit`]), and Prometheus metrics ([`metrics`]). HSM calls run on
//! a bounded pool of blocking workers; the PKCS#11 backend gives each concurrent caller
//! its own session. See docs/signer.md.

pub(crate) mod api;
pub(crate) mod batch;
mod body;
pub mod config;
mod deferred;
pub(crate) mod document;
mod error;
pub mod identity;
pub mod listeners;
mod local;
pub mod metrics;
pub mod oidc;
pub mod pg;
pub mod policy;
pub mod rate;
pub(crate) mod refusal;
pub(crate) mod served;
pub(crate) mod sign_body;
pub mod state;
pub mod store;
pub mod tls;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::audit::{AuditLog, Event};
use config::StateConfig;
use local::LocalStore;
use state::VersionStore;
use store::{Opened, Store};

pub use config::{Config, ConfigError};
pub use error::ServerError;
pub use served::{open_keys, ServedKey};

/// Run-time options that are not part of the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write the bound address (`127.0.0.1:40123`) here once the daemon accepts
    /// connections; useful with `listen = "127.0.0.1:0"`.
    pub ready_file: Option<PathBuf>,
}

/// Opens the store the config names. Called inside the runtime, because the
/// PostgreSQL store spawns its connections and audit writer on it.
async fn open_store(
    cfg: &StateConfig,
    pool: usize,
) -> Result<(Box<dyn Store>, Opened), ServerError> {
    match cfg {
        StateConfig::Files { state, audit } => {
            let (log, history) = AuditLog::open(audit)?;
            let versions = VersionStore::load(state, &history.entries)?;
            versions.save()?;
            let opened = Opened {
                entries: history.entries.len() as u64,
                head: history.head,
            };
            Ok((Box::new(LocalStore::new(versions, log)), opened))
        }
        StateConfig::Postgres { url } => {
            let (store, opened) = pg::PgStore::open(url, pool).await?;
            Ok((Box::new(store), opened))
        }
    }
}

/// The OIDC verifier, its used token ids kept where the store is (PostgreSQL for
/// replicas, so a single-use token is used once across all of them).
async fn open_oidc(cfg: &Config) -> Result<Option<oidc::Oidc>, ServerError> {
    if cfg.oidc.issuers.is_empty() {
        return Ok(None);
    }
    let replay = match &cfg.state {
        StateConfig::Files { .. } => oidc::replay::Replay::memory(),
        StateConfig::Postgres { url } => oidc::replay::Replay::postgres(url)
            .await
            .map_err(ServerError::State)?,
    };
    oidc::Oidc::new(&cfg.oidc, replay).map_err(|e| issuer_error(cfg, e))
}

fn issuer_error(cfg: &Config, (line, reason): (usize, String)) -> ServerError {
    ServerError::Policy {
        config: cfg.path.clone(),
        line,
        reason,
    }
}

/// `tufkey serve --check`'s part beyond the config file: every listener's TLS setup
/// and every JWKS file (issuers that use discovery are not contacted).
pub fn check(cfg: &Config) -> Result<(), ServerError> {
    tls::server_config(&cfg.tls)?;
    for l in &cfg.listeners {
        tls::server_config_for(&cfg.tls, l.client_certificate)?;
    }
    oidc::Oidc::new(&cfg.oidc, oidc::replay::Replay::memory()).map_err(|e| issuer_error(cfg, e))?;
    Ok(())
}

/// Starts the daemon and runs it until SIGTERM or SIGINT. Everything that can be
/// wrong with the config, the certificates, the audit log or the keys is found
/// before the first connection is accepted.
pub fn run(cfg: Config, opts: Options) -> Result<(), ServerError> {
    let tls = tls::server_config(&cfg.tls)?;
    let extra = cfg
        .listeners
        .iter()
        .map(|l| {
            Ok((
                l.addr,
                tls::server_config_for(&cfg.tls, l.client_certificate)?,
            ))
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    // Requests sign and commit on the runtime's threads, at most `workers` at once
    // (worker.rs): two more threads keep connections and health served meanwhile.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers + 2)
        .enable_all()
        .max_blocking_threads(cfg.workers + 4)
        .thread_name("tufkey-serve")
        .build()
        .map_err(|e| ServerError::Runtime(format!("cannot start the runtime: {e}")))?;
    // The store first (a broken audit chain stops the daemon before keys are opened);
    // inside the runtime, which the PostgreSQL store's connections run on.
    let (store, opened) = rt.block_on(open_store(&cfg.state, cfg.workers))?;
    let oidc = rt.block_on(open_oidc(&cfg))?;
    let keys = open_keys(&cfg)?;
    let metrics = metrics::Metrics::default();
    metrics.set_audit_entries(opened.entries);
    let cfg_body_memory = cfg.limits.body_memory;
    let app = Arc::new(api::App {
        workers: Arc::new(tokio::sync::Semaphore::new(cfg.workers)),
        cfg,
        keys,
        store: Arc::from(store),
        metrics,
        head: std::sync::Mutex::new((opened.entries, opened.head)),
        audit_failure: std::sync::Mutex::new(None),
        health: tokio::sync::Mutex::new(None),
        oidc,
        bodies: body::BodyBudget::new(cfg_body_memory),
        deferred: deferred::Deferred::default(),
    });
    let result = rt.block_on(serve(app.clone(), tls, extra, opts));
    rt.shutdown_timeout(Duration::from_secs(5));
    // Dropping the store commits what is queued and stops the local audit writer.
    drop(app);
    result
}

/// A connection accepted on one of the `[[listeners]]`, with that listener's TLS.
type Accepted = (
    tokio::net::TcpStream,
    std::net::SocketAddr,
    tokio_rustls::TlsAcceptor,
);

/// Binds the `[[listeners]]` and forwards what each accepts to the main loop, so every
/// connection goes through the same handling and graceful stop.
async fn extra_listeners(
    extra: Vec<(std::net::SocketAddr, Arc<rustls::ServerConfig>)>,
) -> Result<
    (
        tokio::sync::mpsc::Receiver<Accepted>,
        Vec<String>,
        Vec<tokio::task::JoinHandle<()>>,
    ),
    ServerError,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (mut addrs, mut tasks) = (Vec::new(), Vec::new());
    for (addr, tls) in extra {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| ServerError::Listen { addr, err })?;
        let bound = listener
            .local_addr()
            .map_err(|err| ServerError::Listen { addr, err })?;
        addrs.push(bound.to_string());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => {
                        if tx.send((tcp, peer, acceptor.clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("tufkey serve: accept on {bound} failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    Ok((rx, addrs, tasks))
}

async fn serve(
    app: Arc<api::App>,
    tls: Arc<rustls::ServerConfig>,
    extra: Vec<(std::net::SocketAddr, Arc<rustls::ServerConfig>)>,
    opts: Options,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(app.cfg.listen)
        .await
        .map_err(|err| ServerError::Listen {
            addr: app.cfg.listen,
            err,
        })?;
    let addr = listener.local_addr().map_err(|err| ServerError::Listen {
        addr: app.cfg.listen,
        err,
    })?;
    let (mut extra_rx, extra_addrs, extra_tasks) = extra_listeners(extra).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServerError::Runtime(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| ServerError::Runtime(format!("cannot handle SIGINT: {e}")))?;

    app.record(Event {
        who: "tufkey serve".into(),
        action: "start".into(),
        result: "ok".into(),
        reason: Some(format!(
            "listening on {addr}{}; keys {}",
            extra_addrs
                .iter()
                .map(|a| format!(", {a}"))
                .collect::<String>(),
            app.keys.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        ..Default::default()
    })
    .await?;
    if let Some(p) = &opts.ready_file {
        crate::fsutil::write_atomic(p, addr.to_string().as_bytes())
            .map_err(|e| ServerError::Runtime(format!("{}: {e}", p.display())))?;
    }
    println!("tufkey serve: listening on https://{addr}");
    for a in &extra_addrs {
        println!("tufkey serve: listening on https://{a}");
    }
    eprintln!(
        "tufkey serve: {} key(s), {} client(s), {} HSM worker(s), audit log {}",
        app.keys.len(),
        app.cfg.clients.len(),
        app.cfg.workers,
        app.cfg.state.audit_display()
    );

    // Refusal entries kept while the audit store was down (api::App::record_or_defer).
    // Stopped by a flag, not aborted: an abort in the middle of a flush would drop the
    // entries it had taken.
    let stop_late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late_entries = {
        let app = app.clone();
        let stop = stop_late.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                if !app.deferred.is_empty() {
                    let n = app.flush_deferred().await;
                    if n > 0 {
                        eprintln!("tufkey serve: wrote {n} audit entries kept while the audit store was unavailable");
                    }
                }
            }
        })
    };
    let snapshots = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let app = app.clone();
                let saved = tokio::task::spawn_blocking(move || app.store.snapshot()).await;
                if let Ok(Err(e)) = saved {
                    eprintln!("tufkey serve: cannot write the state snapshot: {e}");
                }
            }
        })
    };

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signal = loop {
        let (tcp, peer, acceptor) = tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            Some(other) = extra_rx.recv() => other,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => (tcp, peer, acceptor.clone()),
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    eprintln!("tufkey serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let header_timeout = app.cfg.limits.header_timeout;
            let handshake = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    app.tls_refused(peer, &e).await;
                    return;
                }
                Err(_) => return,
            };
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(tls::identities);
            let conn_info = Arc::new(identity::Connection { certificate, peer });
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let conn_info = conn_info.clone();
                async move { Ok::<_, std::convert::Infallible>(app.handle(req, &conn_info).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // Errors here are the peer's (reset, timeout): nothing to answer.
            let _ = watcher.watch(conn).await;
        });
    };

    drop(listener);
    for t in extra_tasks {
        t.abort();
    }
    eprintln!("tufkey serve: {signal}: no new connections; finishing requests in flight");
    if tokio::time::timeout(app.cfg.limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "tufkey serve: requests still running after {:?}; stopping anyway",
            app.cfg.limits.shutdown_grace
        );
    }
    snapshots.abort();
    stop_late.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = late_entries.await;
    let late = app.flush_deferred().await;
    if late > 0 {
        eprintln!(
            "tufkey serve: wrote {late} audit entries kept while the audit store was unavailable"
        );
    }
    let still = app.deferred.take();
    if !still.is_empty() || app.deferred.dropped() > 0 {
        eprintln!(
            "tufkey serve: {} audit entries of refusals could not be written (the audit store is unavailable) and {} were not kept (the queue was full); the kept ones follow as JSON lines",
            still.len(),
            app.deferred.dropped()
        );
        for ev in &still {
            if let Ok(line) = serde_json::to_string(ev) {
                eprintln!("{line}");
            }
        }
    }
    let saved = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.store.snapshot())
            .await
            .map_err(|e| ServerError::Runtime(e.to_string()))?
    };
    let stopped = app
        .record(Event {
            who: "tufkey serve".into(),
            action: "stop".into(),
            result: "ok".into(),
            reason: Some(signal.into()),
            ..Default::default()
        })
        .await;
    let head = app.head();
    eprintln!(
        "tufkey serve: stopped; audit log {} has {} entries, head {}",
        app.cfg.state.audit_display(),
        head.0,
        head.1
    );
    saved?;
    stopped?;
    Ok(())
}
