//! virtual-piv: a virtual YubiKey-like PIV card for tufkey's tests.
//!
//! Runs Nitrokey's piv-authenticator on a software trussed platform and
//! plugs it into pcscd through vsmartcard's vpcd driver. See README.md.

mod card;
mod dispatch;
mod pki;
mod storage;
mod tlv;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use piv_authenticator::{Authenticator, Options};
use trussed::{
    platform::Platform as _,
    store::Store as _,
    types::PathBuf as TPath,
    virt::{self, StorageConfig, StoreConfig},
};
use trussed_core::types::Location;

const USAGE: &str = "\
usage: virtual-piv [--port N] [--host ADDR] [--state DIR] [--serial N] [--ca-out PATH]
                   [--connect-timeout SECS] [--deterministic]

  --port N              vpcd port (default 35963)
  --host ADDR           vpcd host (default 127.0.0.1)
  --state DIR           card filesystem, slot keys and attestation CA persist here
                        (default: a fresh directory under /tmp, removed on exit)
  --serial N            serial number reported by GET SERIAL (default 5437251)
  --ca-out PATH         write the attestation root CA certificate (PEM) here
  --connect-timeout S   keep retrying to reach vpcd this long (default 30)
  --deterministic       do not seed the card's RNG from the OS on first start
                        (keys are then the same on every fresh card)
Logging: RUST_LOG=virtual_piv=debug (APDU summaries), piv_authenticator=info.";

struct Args {
    host: String,
    port: u16,
    state: Option<PathBuf>,
    serial: u32,
    ca_out: Option<PathBuf>,
    connect_timeout: Duration,
    deterministic: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: vpicc::DEFAULT_PORT,
        state: None,
        serial: 5437251,
        ca_out: None,
        connect_timeout: Duration::from_secs(30),
        deterministic: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--port" => a.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--host" => a.host = value()?,
            "--state" => a.state = Some(value()?.into()),
            "--serial" => a.serial = value()?.parse().map_err(|e| format!("--serial: {e}"))?,
            "--ca-out" => a.ca_out = Some(value()?.into()),
            "--connect-timeout" => {
                let s: f64 = value()?
                    .parse()
                    .map_err(|e| format!("--connect-timeout: {e}"))?;
                a.connect_timeout = Duration::from_secs_f64(s);
            }
            "--deterministic" => a.deterministic = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("virtual_piv=info"))
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("virtual-piv: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virtual-piv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes a temporary state directory on drop.
struct TempState(Option<PathBuf>);
impl Drop for TempState {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (state, _cleanup) = match &args.state {
        Some(dir) => (dir.clone(), TempState(None)),
        None => {
            let dir = std::env::temp_dir().join(format!("virtual-piv-{}", std::process::id()));
            (dir.clone(), TempState(Some(dir)))
        }
    };
    std::fs::create_dir_all(&state)?;

    let firmware = [5, 4, 3];
    let pki = pki::Pki::load_or_create(&state, args.serial, firmware)?;
    if let Some(path) = &args.ca_out {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, pki.ca_pem()?)?;
    }
    let slots = card::Slots::load(&state);
    let mut shared = card::Shared::new(
        card::Config {
            serial: args.serial,
            firmware,
            form_factor: 1,
        },
        pki,
        slots,
    );

    let addr = format!("{}:{}", args.host, args.port);
    let mut conn = connect(&addr, args.connect_timeout)?;
    log::info!(
        "card inserted: serial {}, firmware {}.{}.{}, state {}",
        args.serial,
        firmware[0],
        firmware[1],
        firmware[2],
        state.display()
    );

    // Each pass is one power cycle of the card: a reset or power-off from
    // pcscd rebuilds it from the persistent filesystem, so the PIN and
    // management-key authentication are cleared as on a real YubiKey.
    let mut first = true;
    loop {
        let outcome: std::io::Result<()> = virt::with_platform(store_config(&state)?, |platform| {
            if first && !args.deterministic {
                seed_rng(&platform);
            }
            platform.run_client_with_backends(
                "piv",
                dispatch::Dispatch::new(),
                dispatch::BACKENDS,
                |client| {
                    let options = Options::default()
                        .storage(Location::Internal)
                        .label(b"tufkey virtual PIV")
                        .url(b"https://example.invalid/tufkey/virtual-piv");
                    let mut card =
                        card::Card::new(Authenticator::new(client, options), &mut shared);
                    loop {
                        conn.poll(&mut card)?;
                        if card.reset_requested {
                            return Ok(());
                        }
                    }
                },
            )
        });
        first = false;
        match outcome {
            Ok(()) => log::debug!("card reset"),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                log::info!("vpcd closed the connection; exiting");
                return Ok(());
            }
            Err(e) => return Err(format!("vpcd connection: {e}").into()),
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> std::io::Result<vpicc::Connection> {
    let start = Instant::now();
    loop {
        match vpicc::connect_socket(addr) {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() < timeout => {
                log::debug!("vpcd at {addr} not reachable yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot reach vpcd at {addr} (is pcscd running with the vpcd reader?): {e}"
                    ),
                ))
            }
        }
    }
}

/// Persistent internal storage (keys, PINs, PIV data objects) in one 1 MiB
/// file; external and volatile storage in RAM (the card keeps everything
/// internal, and volatile state must not survive a power cycle).
fn store_config(state: &Path) -> std::io::Result<StoreConfig<'static>> {
    Ok(StoreConfig {
        internal: storage::open(&state.join("card-internal.littlefs"))?,
        external: StorageConfig::ram(),
        volatile: StorageConfig::ram(),
    })
}

/// trussed's virt platform has a fixed-seed RNG; trussed mixes it with a
/// seed file kept in the internal filesystem. Writing OS entropy there on a
/// fresh card makes its keys differ from other fresh cards' keys.
fn seed_rng(platform: &virt::Platform<'_>) {
    let store = platform.store();
    let ifs = store.ifs();
    let dir = TPath::try_from("trussed/dat").expect("static path");
    let file = TPath::try_from("trussed/dat/rng-state.bin").expect("static path");
    if ifs.exists(&file) {
        return;
    }
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    if let Err(e) = ifs
        .create_dir_all(&dir)
        .and_then(|()| ifs.write(&file, &seed))
    {
        log::warn!("cannot seed the card RNG: {e:?}");
    }
}
