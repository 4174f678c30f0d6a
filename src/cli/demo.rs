//! `tufkey demo`: the main job on throwaway keys, printing each command as it runs it,
//! so a newcomer sees the real CLI at work. With SoftHSM installed the keys live on a
//! throwaway token (own SOFTHSM2_CONF in a temporary folder); otherwise in encrypted
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
    /// Runs `tufkey ARGS`, echoing the command line and its output.
    fn tufkey(&self, args: &[&str]) -> Result<(bool, String)> {
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
            .current_dir(&self.dir)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running tufkey")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), stdout))
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
        envs: vec![("TUFKEY_NO_KEYRING".into(), "1".into())],
    };
    let module = SOFTHSM_MODULES.iter().map(Path::new).find(|p| p.exists());
    let softhsm = !args.files && module.is_some() && which("softhsm2-util");
    let uris: Vec<String> = if softhsm {
        let module = module.map(|m| m.display().to_string()).unwrap_or_default();
        setup_softhsm(&mut demo)?;
        ["root-p256", "root-ed25519", "root-rsa"]
            .iter()
            .map(|label| format!("pkcs11:token=tufkey-demo;object={label}?module-path={module}&pin-source=file:{}/pin", dir.display()))
            .collect()
    } else {
        println!("(SoftHSM not found: using encrypted file: keys; install softhsm2 to see keys on a token)");
        demo.envs
            .push(("TUFKEY_PASSPHRASE".into(), "demo passphrase".into()));
        ["root-p256.p8", "root-ed25519.p8", "root-rsa.p8"]
            .iter()
            .map(|f| format!("file:{}/{f}", dir.display()))
            .collect()
    };

    println!(
        "\n== 1. Create three keys, one of each type{}",
        if softhsm {
            ", on the token (non-extractable)"
        } else {
            ""
        }
    );
    let mut keys = Vec::new();
    for (uri, t) in uris.iter().zip(["ecdsa-p256", "ed25519", "rsa-3072"]) {
        let out = demo.must(&["key", "generate", uri, "--type", t, "--json"])?;
        let v: Value = serde_json::from_str(&out).context("reading key generate --json")?;
        keys.push((
            v["uri"].as_str().unwrap_or_default().to_string(),
            v["keyid"].as_str().unwrap_or_default().to_string(),
            v["key"].clone(),
        ));
    }
    if softhsm {
        demo.must(&[
            "key",
            "list",
            &format!(
                "pkcs11:token=tufkey-demo?module-path={}",
                module.map(|m| m.display().to_string()).unwrap_or_default()
            ),
        ])?;
    }

    println!("\n== 2. Write root.json version 1: the three keys, root threshold 2");
    let expires = (Utc::now() + Duration::days(365)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let root = json!({
        "signed": {
            "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": expires, "consistent_snapshot": true,
            "keys": keys.iter().map(|k| (k.1.clone(), k.2.clone())).collect::<serde_json::Map<_, _>>(),
            "roles": {
                "root": {"keyids": ids, "threshold": 2},
                "targets": {"keyids": [ids[1]], "threshold": 1},
                "snapshot": {"keyids": [ids[0]], "threshold": 1},
                "timestamp": {"keyids": [ids[0]], "threshold": 1},
            },
            "x-demo-note": "unknown fields are kept and signed"
        },
        "signatures": []
    });
    std::fs::write(dir.join("root.json"), serde_json::to_vec_pretty(&root)?)?;
    println!("wrote {}", dir.join("root.json").display());

    println!("\n== 3. The bytes every signature covers, and their SHA-256 to compare aloud");
    demo.must(&["payload", "root.json", "--sha256"])?;

    println!("\n== 4. Sign with one key: not enough for threshold 2");
    demo.must(&["sign", "root.json", "--key", &keys[0].0])?;
    let (ok, _) = demo.tufkey(&["verify", "root.json"])?;
    if ok {
        bail!("one signature should not meet a threshold of 2");
    }

    println!("\n== 5. Sign with two more keys and verify");
    demo.must(&[
        "sign",
        "root.json",
        "--key",
        &keys[1].0,
        "--key",
        &keys[2].0,
    ])?;
    demo.must(&["verify", "root.json"])?;

    println!("\n== 6. A targets file signed by the targets key, verified against root.json");
    let targets = json!({"signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": expires, "targets": {}}, "signatures": []});
    std::fs::write(
        dir.join("targets.json"),
        serde_json::to_vec_pretty(&targets)?,
    )?;
    demo.must(&["sign", "targets.json", "--key", &keys[1].0])?;
    demo.must(&["verify", "targets.json", "--root", "root.json"])?;

    println!("\n== 7. A tampered copy is rejected");
    let text = std::fs::read_to_string(dir.join("targets.json"))?
        .replace("\"version\": 1", "\"version\": 2");
    std::fs::write(dir.join("tampered.json"), text)?;
    let (ok, _) = demo.tufkey(&["verify", "tampered.json", "--root", "root.json"])?;
    if ok {
        bail!("a tampered file verified");
    }
    println!("\nDemo complete: keys created, root.json and targets.json signed and verified, tampering caught.");
    Ok(ExitCode::SUCCESS)
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn setup_softhsm(demo: &mut Demo) -> Result<()> {
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
    std::fs::write(demo.dir.join("pin"), DEMO_PIN)?;
    println!(
        "\n== 0. A throwaway SoftHSM token (own SOFTHSM2_CONF={})",
        conf.display()
    );
    println!("$ softhsm2-util --init-token --free --label tufkey-demo --pin **** --so-pin ****");
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "tufkey-demo",
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
    demo.envs
        .push(("SOFTHSM2_CONF".into(), conf.display().to_string()));
    Ok(())
}
