//! A TPM 2.0 token for tests: Debian's tpm2-pkcs11 on a software TPM (swtpm) behind a
//! tpm2-abrmd resource manager on a private D-Bus session bus, started by
//! `hsm-tests/tpm/start.sh` and stopped by PID (`stop.sh`) when the [`Tpm`] is dropped.
//! Each [`Tpm`] is its own TPM, bus and store, so tests run in parallel and a test may
//! restart the resource manager without disturbing another.
//!
//! Declared by a test file beside the shared harness:
//! `#[path = "harness/tpm.rs"] mod tpm_harness;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{pkcs11_spy, repo, run, tufkey};

/// Debian's tpm2-pkcs11 module.
pub fn tpm2_module() -> PathBuf {
    for p in [
        "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
        "/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1",
        "/usr/lib/aarch64-linux-gnu/libtpm2_pkcs11.so.1",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "tpm2-pkcs11 is not installed; run ./hsm-tests/run.sh, which installs swtpm, \
         swtpm-tools, tpm2-abrmd, libtpm2-pkcs11-1, libtpm2-pkcs11-tools, tpm2-tools, \
         libtss2-tcti-tabrmd0 and dbus"
    );
}

/// One running software TPM with its resource manager and tpm2-pkcs11 store.
pub struct Tpm {
    pub dir: tempfile::TempDir,
    /// NAME=VALUE pairs a client of this TPM needs (bus address, TCTI, store).
    env: Vec<(String, String)>,
}

/// One token in a [`Tpm`]'s store.
pub struct TpmToken {
    pub label: String,
    pub pin: String,
    pub so_pin: String,
    /// A file holding the user PIN, for `pin-source=file:…`.
    pub pin_file: PathBuf,
}

fn script(name: &str) -> PathBuf {
    repo().join("hsm-tests/tpm").join(name)
}

impl Tpm {
    /// Starts a TPM. Missing tooling fails the test and says how to get it.
    pub fn start() -> Tpm {
        tpm2_module();
        let dir = tempfile::Builder::new()
            .prefix("tufkey-tpm-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new(script("start.sh"))
            .arg(dir.path())
            .output()
            .expect("run hsm-tests/tpm/start.sh");
        if !out.status.success() {
            let _ = Command::new(script("stop.sh")).arg(dir.path()).status();
            panic!(
                "hsm-tests/tpm/start.sh failed (run ./hsm-tests/run.sh, which installs the TPM \
                 tooling):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = std::fs::read_to_string(dir.path().join("env"))
            .expect("start.sh writes STATEDIR/env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tpm { dir, env }
    }

    /// A command with this TPM's environment (bus, TCTI, store).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Adds a token with `tpm2_ptool addtoken` (primary object 1 from `start.sh`).
    pub fn token(&self, label: &str, pin: &str) -> TpmToken {
        let so_pin = format!("so-{label}-{}", std::process::id());
        let out = self
            .command("tpm2_ptool")
            .args([
                "addtoken",
                "--pid=1",
                &format!("--sopin={so_pin}"),
                &format!("--userpin={pin}"),
                &format!("--label={label}"),
                "--path",
            ])
            .arg(self.dir.path().join("store"))
            .output()
            .expect("run tpm2_ptool addtoken");
        assert!(
            out.status.success(),
            "tpm2_ptool addtoken failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin_file = self.dir.path().join(format!("{label}.pin"));
        std::fs::write(&pin_file, pin).unwrap();
        TpmToken {
            label: label.into(),
            pin: pin.into(),
            so_pin,
            pin_file,
        }
    }

    /// `tufkey` with a clean environment (as [`tufkey`]) and this TPM's.
    pub fn tufkey(&self) -> Command {
        let mut c = tufkey(None);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `tufkey ARGS` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let mut c = self.tufkey();
        c.args(args);
        let (code, out, err) = run(c);
        assert_eq!(
            code, 0,
            "tufkey {args:?} failed:\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Runs `tufkey ARGS`, requires failure, and returns (exit code, stderr + stdout).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let mut c = self.tufkey();
        c.args(args);
        let (code, out, err) = run(c);
        assert_ne!(
            code, 0,
            "tufkey {args:?} should have failed:\nstdout: {out}"
        );
        (code, format!("{err}{out}"))
    }

    /// `tufkey key generate URI --type T --json`: (uri, keyid, key JSON).
    pub fn generate(&self, uri: &str, key_type: &str) -> (String, String, serde_json::Value) {
        let out = self.ok(&["key", "generate", uri, "--type", key_type, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["uri"].as_str().unwrap().to_string(),
            v["keyid"].as_str().unwrap().to_string(),
            v["key"].clone(),
        )
    }

    /// Runs `tufkey ARGS` with OpenSC's pkcs11-spy in front of tpm2-pkcs11 and returns
    /// (exit code, stdout, stderr, C_Login calls the module saw).
    pub fn run_through_spy(&self, args: &[&str]) -> (i32, String, String, usize) {
        let spy = pkcs11_spy();
        let log = self.dir.path().join("spy.log");
        let _ = std::fs::remove_file(&log);
        let module = tpm2_module();
        let mut c = self.tufkey();
        c.args(
            args.iter()
                .map(|a| a.replace(module.to_str().unwrap(), spy)),
        )
        .env("PKCS11SPY", &module)
        .env("PKCS11SPY_OUTPUT", &log);
        let (code, out, err) = run(c);
        let logins = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("C_Login"))
            .count();
        (code, out, err, logins)
    }

    /// Stops the resource manager (tpm2-abrmd) by PID, as a crash or an upgrade would.
    pub fn stop_abrmd(&self) {
        let st = Command::new(script("stop.sh"))
            .arg(self.dir.path())
            .arg("abrmd")
            .status()
            .expect("run stop.sh");
        assert!(st.success());
    }

    /// Starts the resource manager again on the same TPM and bus.
    pub fn start_abrmd(&self) {
        let out = Command::new(script("start.sh"))
            .arg(self.dir.path())
            .env("TPM_ABRMD_ONLY", "1")
            .output()
            .expect("run start.sh");
        assert!(
            out.status.success(),
            "restarting tpm2-abrmd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        let _ = Command::new(script("stop.sh"))
            .arg(self.dir.path())
            .status();
    }
}

impl TpmToken {
    /// A URI for `object` on this token, PIN from its pin file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={}&pin-source=file:{}",
            self.label,
            tpm2_module().display(),
            self.pin_file.display()
        )
    }

    /// The token-only URI, without a PIN source.
    pub fn token_uri(&self) -> String {
        format!(
            "pkcs11:token={}?module-path={}",
            self.label,
            tpm2_module().display()
        )
    }

    /// `uri` with the PIN given inline instead of from the pin file.
    pub fn with_pin(&self, uri: &str, pin: &str) -> String {
        uri.replace(
            &format!("pin-source=file:{}", self.pin_file.display()),
            &format!("pin-value={pin}"),
        )
    }
}
