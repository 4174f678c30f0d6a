//! `tufkey demo`: the main job on throwaway keys, printing each command as it runs it,
//! so a newcomer sees the real CLI at work: a 3-of-5 root ceremony, finalized and
//! verified, then rotated once; then a repository published from those roots, a client
//! download and a timestamp refresh. With SoftHSM installed each keyholder's key lives on its
//! own throwaway token (own SOFTHSM2_CONF in a temporary folder); otherwise in encrypted
//! `file:` keys.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use chrono::{Duration, SecondsFormat, Utc};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct DemoArgs {
    /// Work in this folder (kept afterwards) instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use encrypted file: keys even when SoftHSM is installed.
    #[arg(long)]
    files: bool,
}

const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];
const DEMO_PIN: &str = "demo-pin-1234";

struct Demo {
    dir: PathBuf,
    envs: Vec<(String, String)>,
}

impl Demo {
    /// Sets a variable for every later command and prints it once, as a reader would
    /// type it (secret values masked; they are the demo's throwaway ones).
    fn export(&mut self, name: &str, value: &str, secret: bool) {
        let shown = if secret { "****" } else { value };
        println!("$ export {name}={}", shell_quote(shown));
        self.envs.push((name.into(), value.into()));
    }

    /// Runs `tufkey ARGS`, echoing the command line and its output.
    fn tufkey(&self, args: &[&str]) -> Result<(bool, String)> {
        let (code, out) = self.exec(args)?;
        Ok((code == Some(0), out))
    }

    /// Runs `tufkey ARGS`, which must exit with `code` (e.g. 4: `repo refresh` had nothing to do).
    fn must_exit(&self, args: &[&str], code: i32) -> Result<String> {
        let (got, out) = self.exec(args)?;
        if got != Some(code) {
            bail!(
                "the demo step `tufkey {}` exited with {got:?}, not {code}",
                args.join(" ")
            );
        }
        Ok(out)
    }

    /// Runs `tufkey ARGS`, echoing the command line and its output; returns the exit code.
    fn exec(&self, args: &[&str]) -> Result<(Option<i32>, String)> {
        println!(
            "\n$ tufkey {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let exe = std::env::current_exe().context("finding the tufkey executable")?;
        let out = Command::new(exe)
            .args(args)
            .arg("--no-prompt")
            // Throwaway keys: nothing for the user's audit log.
            .env_remove("TUFKEY_AUDIT_LOG")
            .current_dir(&self.dir)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running tufkey")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code(), stdout))
    }

    fn must(&self, args: &[&str]) -> Result<String> {
        let (ok, out) = self.tufkey(args)?;
        if !ok {
            bail!("the demo step `tufkey {}` failed", args.join(" "));
        }
        Ok(out)
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{s}'")
    }
}

fn step(title: &str) {
    println!("\n== {title}");
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let _tmp;
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            d.canonicalize()?
        }
        None => {
            _tmp = tempfile::Builder::new().prefix("tufkey-demo-").tempdir()?;
            _tmp.path().to_path_buf()
        }
    };
    println!("tufkey demo in {}", dir.display());
    let mut demo = Demo {
        dir: dir.clone(),
        envs: vec![
            ("TUFKEY_NO_KEYRING".into(), "1".into()),
            ("TUFKEY_ACTOR".into(), "demo".into()),
        ],
    };
    let module = SOFTHSM_MODULES
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(|m| m.display().to_string());
    let softhsm = !args.files && module.is_some() && which("softhsm2-util");
    // Five root keyholders, a sixth who joins at the rotation, the release (targets) key
    // and the online (snapshot, timestamp) key.
    let holders = [
        "keyholder-1",
        "keyholder-2",
        "keyholder-3",
        "keyholder-4",
        "keyholder-5",
        "keyholder-6",
        "release",
        "online",
    ];
    let types = [
        "ecdsa-p256",
        "ed25519",
        "rsa-3072",
        "ecdsa-p256",
        "ed25519",
        "ecdsa-p256",
        "ecdsa-p256",
        "ed25519",
    ];
    // Every command runs in the demo folder with the module and the (throwaway) PIN or
    // passphrase in its environment, so the URIs printed stay short enough to follow.
    let uris: Vec<String> = match (&module, softhsm) {
        (Some(module), true) => {
            setup_softhsm(&mut demo, &holders)?;
            demo.export("TUFKEY_PKCS11_MODULE", module, false);
            demo.export("TUFKEY_PIN", DEMO_PIN, true);
            holders
                .iter()
                .map(|h| format!("pkcs11:token={h};object=tuf"))
                .collect()
        }
        _ => {
            println!("(SoftHSM not found: using encrypted file: keys; install softhsm2 to see keys on tokens)");
            demo.export("TUFKEY_PASSPHRASE", "demo passphrase", true);
            holders.iter().map(|h| format!("file:{h}.p8")).collect()
        }
    };

    step(&format!(
        "1. Each keyholder makes a key{}",
        if softhsm {
            " on their own token (non-extractable)"
        } else {
            ""
        }
    ));
    for (uri, t) in uris.iter().zip(types) {
        demo.must(&["key", "generate", uri, "--type", t])?;
    }
    // Each token holds one key named `tuf`, so the short URI stays unambiguous.
    let k = |i: usize| uris[i].as_str();

    step("2. Start a ceremony for root version 1: five root keys, threshold 3");
    demo.must(&["ceremony", "init", "ceremony-v1", "--expires", "365d"])?;
    for i in 0..5 {
        demo.must(&[
            "ceremony",
            "add-key",
            "ceremony-v1",
            "--role",
            "root",
            "--key",
            k(i),
        ])?;
    }
    demo.must(&[
        "ceremony",
        "add-key",
        "ceremony-v1",
        "--role",
        "targets",
        "--key",
        k(6),
    ])?;
    demo.must(&[
        "ceremony",
        "add-key",
        "ceremony-v1",
        "--role",
        "snapshot",
        "--key",
        k(7),
    ])?;
    demo.must(&[
        "ceremony",
        "add-key",
        "ceremony-v1",
        "--role",
        "timestamp",
        "--key",
        k(7),
    ])?;
    demo.must(&[
        "ceremony",
        "threshold",
        "ceremony-v1",
        "--role",
        "root",
        "3",
    ])?;

    step("3. Every keyholder reads the review and compares the payload hash aloud");
    demo.must(&["ceremony", "review", "ceremony-v1"])?;

    step("4. Three keyholders sign, one after another (each would insert their own token)");
    for i in 0..3 {
        demo.must(&["ceremony", "sign", "ceremony-v1", "--key", k(i), "--yes"])?;
    }

    step("5. Finalize into repo/, then verify the result and the transcript");
    demo.must(&["ceremony", "finalize", "ceremony-v1", "--out", "repo"])?;
    demo.must(&["verify", "repo/1.root.json"])?;
    demo.must(&["ceremony", "verify", "ceremony-v1"])?;

    step("6. The release key signs targets.json; it verifies against the new root");
    let expires = (Utc::now() + Duration::days(90)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let targets = json!({"signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": expires, "targets": {}}, "signatures": []});
    std::fs::write(
        dir.join("repo/targets.json"),
        serde_json::to_vec_pretty(&targets)?,
    )?;
    demo.must(&["sign", "repo/targets.json", "--key", k(6)])?;
    demo.must(&["verify", "repo/targets.json", "--root", "repo/root.json"])?;

    step("7. Rotate to root version 2: keyholder-5 leaves, keyholder-6 joins");
    demo.must(&[
        "ceremony",
        "init",
        "ceremony-v2",
        "--trusted",
        "repo/root.json",
        "--expires",
        "365d",
    ])?;
    demo.must(&[
        "ceremony",
        "remove-key",
        "ceremony-v2",
        "--role",
        "root",
        "--key",
        k(4),
    ])?;
    demo.must(&[
        "ceremony",
        "add-key",
        "ceremony-v2",
        "--role",
        "root",
        "--key",
        k(5),
    ])?;
    demo.must(&["ceremony", "review", "ceremony-v2"])?;

    step("8. A key that is in neither root is refused before any PIN is asked for");
    let (ok, _) = demo.tufkey(&["ceremony", "sign", "ceremony-v2", "--key", k(7), "--yes"])?;
    if ok {
        bail!("a key outside both roots signed the root");
    }

    step(
        "9. Keyholders 1, 2 and 6 sign: the new root's threshold is met, the old root's (3) is not",
    );
    for i in [0, 1, 5] {
        demo.must(&["ceremony", "sign", "ceremony-v2", "--key", k(i), "--yes"])?;
    }

    step("10. Keyholder 3 signs too; finalize and check the root update rule");
    demo.must(&["ceremony", "sign", "ceremony-v2", "--key", k(2), "--yes"])?;
    demo.must(&["ceremony", "finalize", "ceremony-v2", "--out", "repo"])?;
    demo.must(&["verify", "repo/2.root.json", "--root", "repo/1.root.json"])?;

    step("11. A tampered copy of targets.json is rejected");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(dir.join("repo/targets.json"))?)?;
    doc["signed"]["version"] = json!(2);
    std::fs::write(dir.join("tampered.json"), serde_json::to_vec_pretty(&doc)?)?;
    let (ok, _) = demo.tufkey(&["verify", "tampered.json", "--root", "repo/2.root.json"])?;
    if ok {
        bail!("a tampered file verified");
    }
    publish(&demo, k(6), k(7))?;
    println!("\nDemo complete: a 3-of-5 root signed, finalized and verified; rotated to version 2 under both thresholds; targets signed; tampering caught; a repository published from both roots, downloaded by a client trusting root v1, and its timestamp refreshed.");
    Ok(ExitCode::SUCCESS)
}

/// The demo's target, written by the demo and downloaded back by the client step.
const DEMO_TARGET: &[u8] = b"tufkey demo release 1.0\n";

/// Steps 12-16: the finalized roots become a repository that a client updates from.
fn publish(demo: &Demo, release: &str, online: &str) -> Result<()> {
    step("12. Start a repository from the finalized roots (v2, and v1 so old clients can walk to it)");
    let targets = format!("targets={release}");
    let snapshot = format!("snapshot={online}");
    let timestamp = format!("timestamp={online}");
    demo.must(&[
        "repo",
        "init",
        "site",
        "--root",
        "repo/2.root.json",
        "--root-chain",
        "repo/1.root.json",
        "--key",
        &targets,
        "--key",
        &snapshot,
        "--key",
        &timestamp,
    ])?;

    step("13. Add a release file and commit: the release key signs targets, the online key snapshot and timestamp (keys from site/repo.toml)");
    std::fs::write(demo.dir.join("app-1.0.txt"), DEMO_TARGET)?;
    demo.must(&[
        "repo",
        "add",
        "site",
        "app-1.0.txt",
        "--path",
        "app/1.0/app.txt",
    ])?;
    demo.must(&["repo", "commit", "site"])?;
    demo.must(&["repo", "verify", "site"])?;

    step("14. A client that ships root v1 downloads the target: root chain, timestamp, snapshot, targets, length and hashes checked");
    demo.must(&[
        "repo",
        "download",
        "site",
        "app/1.0/app.txt",
        "--out",
        "downloaded.txt",
        "--trusted-root",
        "repo/1.root.json",
    ])?;
    let got = std::fs::read(demo.dir.join("downloaded.txt")).context("reading downloaded.txt")?;
    if got != DEMO_TARGET {
        bail!("the downloaded target differs from the file the demo published");
    }
    println!("downloaded.txt has the bytes of app-1.0.txt");

    step("15. The timer's refresh: nothing is due yet (exit 4)");
    demo.must_exit(&["repo", "refresh", "site"], 4)?;

    step("16. Re-sign the timestamp once it is inside its signing period; a 25h period on a 1-day timestamp makes it due now");
    let config = demo.dir.join("site/repo.toml");
    let text = std::fs::read_to_string(&config).context("reading site/repo.toml")?;
    let line = "timestamp = \"25h\"\n";
    let text = match text.find("[signing_period]\n") {
        Some(i) => {
            let at = i + "[signing_period]\n".len();
            format!("{}{line}{}", &text[..at], &text[at..])
        }
        None => format!("{text}\n[signing_period]\n{line}"),
    };
    std::fs::write(&config, text).context("writing site/repo.toml")?;
    println!("$ # site/repo.toml, [signing_period]: {}", line.trim());
    demo.must(&["repo", "refresh", "site"])?;
    demo.must(&[
        "repo",
        "verify",
        "site",
        "--trusted-root",
        "repo/1.root.json",
    ])?;
    Ok(())
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn setup_softhsm(demo: &mut Demo, labels: &[&str]) -> Result<()> {
    let tokens = demo.dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = demo.dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    step(&format!(
        "0. Throwaway SoftHSM tokens, one per keyholder (SOFTHSM2_CONF={})",
        conf.display()
    ));
    for label in labels {
        println!("$ softhsm2-util --init-token --free --label {label} --pin **** --so-pin ****");
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                DEMO_PIN,
                "--so-pin",
                "demo-so-pin-5678",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("running softhsm2-util")?;
        if !out.status.success() {
            bail!(
                "softhsm2-util failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    demo.export("SOFTHSM2_CONF", &conf.display().to_string(), false);
    Ok(())
}
