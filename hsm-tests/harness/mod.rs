//! Test harness: throwaway SoftHSM tokens (through `softhsm-config/new-token.sh`),
//! the real `tufkey` binary, the python-tuf venv, and helpers to prove that a failed
//! command left every file as it was.
#![allow(dead_code)]

pub mod clients;
pub mod daemon;
mod files;
pub mod pg;
pub mod repo;
mod root;
mod spy;

// Every test binary compiles the whole harness and uses part of it (hence also
// `dead_code` above): the re-exports below are the shared fixtures' one name.
#[allow(unused_imports)]
pub use files::{edit_file, p, read_json, write_json};
#[allow(unused_imports)]
pub use root::{root_body, verify_json, RootKey};
#[allow(unused_imports)]
pub use spy::{pkcs11_spy, run_through_spy};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The SoftHSM module the tests load, through the real library.
pub fn softhsm_module() -> PathBuf {
    for p in [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib64/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("SoftHSM is not installed; run ./hsm-tests/run.sh, which installs softhsm2 and opensc");
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with its own SoftHSM config and token directory, removed at drop.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

/// One initialised token in a [`SoftHsm`].
pub struct Token {
    pub label: String,
    pub pin: String,
    /// A file holding the PIN, for `pin-source=file:…`.
    pub pin_file: PathBuf,
}

impl SoftHsm {
    pub fn new() -> SoftHsm {
        let dir = tempfile::Builder::new()
            .prefix("tufkey-hsm-")
            .tempdir()
            .expect("temp dir");
        let conf = dir.path().join("softhsm2.conf");
        SoftHsm { dir, conf }
    }

    /// Creates a token with `softhsm-config/new-token.sh`.
    pub fn token(&self, label: &str, pin: &str) -> Token {
        let out = Command::new(repo().join("softhsm-config/new-token.sh"))
            .args([self.dir.path().to_str().unwrap(), label, pin])
            .output()
            .expect("run softhsm-config/new-token.sh");
        assert!(
            out.status.success(),
            "new-token.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin_file = self.dir.path().join(format!("{label}.pin"));
        std::fs::write(&pin_file, pin).unwrap();
        Token {
            label: label.into(),
            pin: pin.into(),
            pin_file,
        }
    }

    /// The `token.object` file of the token with `label`.
    pub fn token_file(&self, label: &str) -> PathBuf {
        let mut padded = label.as_bytes().to_vec();
        padded.resize(32, b' ');
        for e in std::fs::read_dir(self.dir.path().join("tokens")).unwrap() {
            let f = e.unwrap().path().join("token.object");
            if std::fs::read(&f)
                .map(|b| b.windows(32).any(|w| w == padded.as_slice()))
                .unwrap_or(false)
            {
                return f;
            }
        }
        panic!("no token file for {label}");
    }

    /// Sets bits in the token's stored PKCS#11 flags (SoftHSM's CKA_OS_TOKENFLAGS,
    /// attribute 0x8000534B), so the real module reports e.g. CKF_USER_PIN_FINAL_TRY.
    /// SoftHSM never sets FINAL_TRY or LOCKED itself; this is how a test gets there.
    pub fn set_token_flags(&self, label: &str, bits: u64) {
        let f = self.token_file(label);
        let mut b = std::fs::read(&f).unwrap();
        let tag = [0u8, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];
        let at = b
            .windows(tag.len())
            .position(|w| w == tag)
            .expect("CKA_OS_TOKENFLAGS in token file")
            + tag.len();
        let flags = u64::from_be_bytes(b[at..at + 8].try_into().unwrap()) | bits;
        b[at..at + 8].copy_from_slice(&flags.to_be_bytes());
        std::fs::write(&f, b).unwrap();
    }
}

pub const CKF_USER_PIN_FINAL_TRY: u64 = 0x0002_0000;
pub const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;

impl Token {
    /// A URI for `object` on this token, PIN from its pin file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={}&pin-source=file:{}",
            self.label,
            softhsm_module().display(),
            self.pin_file.display()
        )
    }

    /// The token-only URI, without a PIN source.
    pub fn token_uri(&self) -> String {
        format!(
            "pkcs11:token={}?module-path={}",
            self.label,
            softhsm_module().display()
        )
    }
}

/// `tufkey` with a clean environment: no inherited PINs, no keyring, this SoftHSM.
pub fn tufkey(hsm: Option<&SoftHsm>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tufkey"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TUFKEY_") || k == "SOFTHSM2_CONF" {
            c.env_remove(k);
        }
    }
    c.env("TUFKEY_NO_KEYRING", "1")
        .stdin(std::process::Stdio::null());
    if let Some(h) = hsm {
        c.env("SOFTHSM2_CONF", &h.conf);
    }
    c
}

/// Runs a command and returns (status code, stdout, stderr).
pub fn run(mut c: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run tufkey");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `tufkey ARGS` and requires success.
pub fn ok(hsm: Option<&SoftHsm>, args: &[&str]) -> String {
    let mut c = tufkey(hsm);
    c.args(args);
    let (code, out, err) = run(c);
    assert_eq!(
        code, 0,
        "tufkey {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// `tufkey sign FILE --key URI…` with every URI given; requires success.
pub fn sign_with(hsm: Option<&SoftHsm>, file: &Path, uris: &[&str]) -> String {
    let mut args = vec!["sign", file.to_str().expect("UTF-8 path")];
    for u in uris {
        args.extend(["--key", u]);
    }
    ok(hsm, &args)
}

/// Runs `tufkey ARGS`, requires failure, and returns (exit code, stderr + stdout).
pub fn fails(hsm: Option<&SoftHsm>, args: &[&str]) -> (i32, String) {
    let mut c = tufkey(hsm);
    c.args(args);
    let (code, out, err) = run(c);
    assert_ne!(
        code, 0,
        "tufkey {args:?} should have failed:\nstdout: {out}"
    );
    (code, format!("{err}{out}"))
}

/// Every file below `dir` with its bytes, to compare before and after a failed command.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The Python with python-tuf from PyPI that hsm-tests/run.sh set up.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TUFKEY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo().join("target/interop-venv/bin/python");
    assert!(p.exists(), "python-tuf venv missing: run ./hsm-tests/run.sh (it creates target/interop-venv with `tuf` from PyPI)");
    p
}

/// Runs a Python script with python-tuf; returns stdout, panicking with stderr on failure.
pub fn python_tuf(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python-tuf script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes an unsigned TUF document with the given `signed` body.
pub fn write_unsigned(path: &Path, signed: serde_json::Value) {
    let doc = serde_json::json!({"signed": signed, "signatures": []});
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// An expiry a year from now in TUF's format.
pub fn next_year() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 365 * 86400;
    // Days-from-civil inverse (Howard Hinnant's algorithm), to avoid a date dependency here.
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Generates a key with `tufkey key generate --json` and returns (uri, keyid, key JSON).
pub fn generate(
    hsm: Option<&SoftHsm>,
    uri: &str,
    key_type: &str,
    envs: &[(&str, &str)],
) -> (String, String, serde_json::Value) {
    let mut c = tufkey(hsm);
    c.args(["key", "generate", uri, "--type", key_type, "--json"]);
    for (k, v) in envs {
        c.env(k, v);
    }
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "key generate {uri} failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["uri"].as_str().unwrap().to_string(),
        v["keyid"].as_str().unwrap().to_string(),
        v["key"].clone(),
    )
}

/// After a signer's PIN was refused once, every later signature stops before any PIN
/// reaches the device, and says what to do.
pub fn assert_refusal_sticks(signer: &dyn tufkey::keys::Signer) {
    for _ in 0..3 {
        match signer.sign(b"again") {
            Err(e @ tufkey::keys::KeyError::ReloginRefused { .. }) => {
                assert!(e.to_string().contains("restart tufkey"), "{e}")
            }
            other => panic!("expected the refusal to stick: {other:?}"),
        }
    }
}
