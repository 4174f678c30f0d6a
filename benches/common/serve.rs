//! A running `tufkey serve` for the benches that go through the daemon
//! (benches/daemon.rs, benches/serve_batches.rs): a CA and certificates (rcgen), the
//! daemon as a child process, keep-alive mutual-TLS connections, and process CPU time.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::common::or_die;

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let mut p = or_die(CertificateParams::new(Vec::<String>::new()), "CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "bench-ca");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = or_die(KeyPair::generate(), "CA key");
        let cert = or_die(p.self_signed(&key), "CA certificate");
        or_die(std::fs::write(dir.join("ca.pem"), cert.pem()), "ca.pem");
        Ca {
            issuer: Issuer::new(p, key),
        }
    }

    pub fn issue(&self, dir: &Path, file: &str, cn: &str, server: bool) {
        let mut p = or_die(CertificateParams::new(Vec::<String>::new()), "params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![
                SanType::DnsName(or_die("localhost".try_into(), "SAN")),
                SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = or_die(KeyPair::generate(), "leaf key");
        let cert = or_die(p.signed_by(&key, &self.issuer), "leaf certificate");
        or_die(
            std::fs::write(dir.join(format!("{file}.pem")), cert.pem()),
            "cert",
        );
        or_die(
            std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()),
            "key",
        );
    }
}

pub fn client_tls(dir: &Path) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in or_die(CertificateDer::pem_file_iter(dir.join("ca.pem")), "ca.pem") {
        or_die(roots.add(or_die(c, "ca.pem")), "adding the CA");
    }
    let certs: Vec<CertificateDer<'static>> = or_die(
        CertificateDer::pem_file_iter(dir.join("client.pem")),
        "client.pem",
    )
    .map(|c| or_die(c, "client.pem"))
    .collect();
    let key = or_die(
        PrivateKeyDer::from_pem_file(dir.join("client.key")),
        "client.key",
    );
    let cfg = or_die(
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions(),
        "TLS versions",
    )
    .with_root_certificates(roots);
    let mut cfg = or_die(
        cfg.with_client_auth_cert(certs, key),
        "client certificate and key",
    );
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

// ---------------------------------------------------------------- the daemon

pub struct Daemon {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(bin: &Path, dir: &Path, conf: &str) -> Daemon {
        let ready = dir.join("ready");
        let log = dir.join("daemon.log");
        let child = or_die(
            Command::new(bin)
                .args(["serve", "--config"])
                .arg(dir.join("signer.toml"))
                .arg("--ready-file")
                .arg(&ready)
                .env("SOFTHSM2_CONF", conf)
                .stdout(Stdio::null())
                .stderr(or_die(std::fs::File::create(&log), "daemon.log"))
                .spawn(),
            &format!("starting {}", bin.display()),
        );
        let mut d = Daemon {
            child,
            addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            log,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&ready) {
                d.addr = or_die(a.trim().parse(), "the daemon's ready file");
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "daemon bench: tufkey serve exited with {status}: {}",
                    std::fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "tufkey serve did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process, in seconds (from /proc/<pid>/stat).
pub fn cpu_secs(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // After the ")": state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------- the clients

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    conns: Arc<AtomicU64>,
) -> Sender {
    let tcp = or_die(tokio::net::TcpStream::connect(addr).await, "connect");
    or_die(tcp.set_nodelay(true), "TCP_NODELAY");
    let name = ServerName::try_from("localhost").unwrap_or_else(|_| unreachable!());
    let stream = or_die(
        tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await,
        "TLS handshake",
    );
    let (send, conn) = or_die(
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await,
        "HTTP handshake",
    );
    conns.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One POST; panics unless the daemon answered 200.
pub async fn post_once(send: &mut Sender, path: &'static str, body: String) -> Bytes {
    or_die(send.ready().await, "connection not ready (closed?)");
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let resp = or_die(send.send_request(or_die(req, "request")).await, "request");
    let status = resp.status();
    let bytes = or_die(resp.into_body().collect().await, "response body").to_bytes();
    if status != hyper::StatusCode::OK {
        panic!(
            "daemon bench: the daemon answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    bytes
}

/// The clients' own tokio runtime, `threads` worker threads, apart from the daemon's
/// process: what each bench's clients run on.
pub fn client_runtime(threads: usize) -> tokio::runtime::Runtime {
    or_die(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
        "client runtime",
    )
}
