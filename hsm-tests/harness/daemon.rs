//! Signer-daemon test support shared by hsm-tests/server.rs and hsm-tests/replicas.rs:
//! a test CA issuing rcgen certificates, a running `tufkey serve` guard, and TUF
//! expiry strings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tufkey::keys::remote::{Client, ClientTls};

use super::{tufkey, SoftHsm};

/// A CA with its key, able to issue certificates into `dir`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Makes a self-signed CA and writes its certificate to `dir/{name}.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(p, key),
        }
    }

    /// Issues a certificate (a server one for localhost/127.0.0.1, else a client one;
    /// valid only in 2020 when `expired`); returns (cert path, key path).
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        server: bool,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let names: &[&str] = if server {
            &["localhost", "127.0.0.1"]
        } else {
            &[]
        };
        self.issue_named(dir, file, cn, names, expired)
    }

    /// As [`Ca::issue`], for a server known by exactly `names` (DNS names or IP
    /// addresses); no names makes a client certificate.
    pub fn issue_named(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        names: &[&str],
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if !names.is_empty() {
            p.subject_alt_names = names
                .iter()
                .map(|n| match n.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*n).try_into().unwrap()),
                })
                .collect();
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A running `tufkey serve`, stopped with SIGTERM (or killed when a test fails).
pub struct Daemon {
    pub child: Child,
    /// The address from the ready file.
    pub addr: String,
    /// The daemon's stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `tufkey serve --config config` on the tokens of `hsm`, with its ready file
    /// `dir/{name}.ready` and its stderr in `dir/{name}.log`; waits until it is ready.
    pub fn start(dir: &Path, name: &str, hsm: &SoftHsm, config: &Path) -> Daemon {
        Self::start_with_env(dir, name, hsm, config, &[])
    }

    /// As [`Daemon::start`], with extra environment variables (a test hook, say).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        hsm: &SoftHsm,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let ready = dir.join(format!("{name}.ready"));
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!("{name}.log"));
        let mut c = tufkey(Some(hsm));
        c.args(["serve", "--config"])
            .arg(config)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .envs(env.iter().copied());
        let mut child = c.spawn().expect("start tufkey serve");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                return Daemon { child, addr, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "tufkey serve exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "tufkey serve did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://{addr}`.
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn client(&self, tls: &ClientTls) -> Client {
        Client::new(&self.base(), tls).unwrap()
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
    }

    /// SIGTERM, then the exit status must be success.
    pub fn stop(self) {
        self.sigterm();
        self.wait_exit();
    }

    /// Waits for the daemon to exit, which must be a success.
    pub fn wait_exit(mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "tufkey serve stopped with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(Instant::now() < until, "tufkey serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// A TUF expiry `secs` from now.
pub fn expires_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A folder for a daemon: a client CA (`client-ca.pem`) and a server certificate for
/// localhost and 127.0.0.1 (`server.pem`, `server.key`).
pub fn daemon_folder(prefix: &str) -> (tempfile::TempDir, Ca) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let ca = Ca::new(dir.path(), "client-ca");
    ca.issue(dir.path(), "server", "localhost", true, false);
    (dir, ca)
}

/// A signer.toml for the files [`daemon_folder`] writes: a free loopback port, the
/// `store` lines (`state = …`, `audit = …`), 4 workers, the TLS files, `extra` as is
/// (a `[limits]` table, say), one `[[keys]]` per URI, then the `clients` tables.
pub fn signer_toml(store: &str, extra: &str, key_uris: &[&str], clients: &[String]) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\n{store}\nworkers = 4\n\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"client-ca.pem\"\n\n{extra}"
    );
    for u in key_uris {
        t.push_str(&format!("[[keys]]\nuri = \"{u}\"\n\n"));
    }
    t.push_str(&clients.join("\n"));
    t
}

/// One `[[clients]]` policy table; `more` adds lines (`rate = …`, `raw = true`).
pub fn client_policy(
    identity: &str,
    keys: &[&str],
    repositories: &[&str],
    roles: &[&str],
    max_expiry: &str,
    more: &str,
) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[clients]]\nidentity = \"{identity}\"\nkeys = [{}]\nrepositories = [{}]\nroles = [{}]\nmax_expiry = \"{max_expiry}\"\n{more}",
        list(keys),
        list(repositories),
        list(roles)
    )
}

/// The 1-based number of the first line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the config"))
        + 1
}
