//! virtual-piv: a virtual YubiKey-like PIV card for tufkey's tests.
//!
//! Runs Nitrokey's piv-authenticator on a software trussed platform and
//! plugs it into pcscd through vsmartcard's vpcd driver. See README.md.

mod card;
mod dispatch;
mod mgm;
mod net;
mod pki;
mod power;
mod runner;
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
                   [--firmware X.Y.Z] [--mgm-alg ALG] [--mgm-key HEX] [--mgm-protected]
                   [--generic]

  --port N              vpcd port (default 35963)
  --host ADDR           vpcd host (default 127.0.0.1)
  --state DIR           card filesystem, slot keys and attestation CA persist here
                        (default: a fresh directory under /tmp, removed on exit);
                        DIR/power.txt counts the resets, power-offs and power-ons
                        pcscd sent since this start (tests read it)
  --serial N            serial number reported by GET SERIAL (default 5437251)
  --ca-out PATH         write the attestation root CA certificate (PEM) here
  --connect-timeout S   keep retrying to reach vpcd this long (default 30)
  --deterministic       do not seed the card's RNG from the OS on first start
                        (keys are then the same on every fresh card)
  --firmware X.Y.Z      version GET VERSION and attestations report (default 5.4.3);
                        5.3+ answers GET METADATA for the management key, 5.4+ takes
                        AES management keys, 5.7+ ships an AES-192 default key
  --mgm-alg ALG         set the management key's algorithm: tdes, aes128, aes192, aes256
                        (with the default key unless --mgm-key; replaces a stored key)
  --mgm-key HEX         set the management key (with --mgm-alg, or the firmware's
                        default algorithm); replaces a stored key
  --mgm-protected       store the management key in the PIN-protected object 5FC109
                        (88 { 89 key }), as `ykman ... change-management-key --protect`
  --generic             a generic SP 800-73-4 PIV card rather than a YubiKey: no GET
                        METADATA (F7) and no ATTEST (F9) (both 6D00), no attestation
                        object 5FFF01, and the PIN stays verified across SELECT (an
                        empty VERIFY then answers 9000), as on a Nitrokey 3
  Without --mgm-alg/--mgm-key the key stored in the state dir is kept, and a fresh
  card has the factory default: 3DES before 5.7, AES-192 from 5.7, both
  010203040506070801020304050607080102030405060708.
  Environment: VIRTUAL_PIV_FIRMWARE, VIRTUAL_PIV_MGM_ALG, VIRTUAL_PIV_MGM_KEY,
  VIRTUAL_PIV_MGM_PROTECTED=1, VIRTUAL_PIV_GENERIC=1 are read when the flag is not given.
Logging: RUST_LOG=virtual_piv=debug (APDU summaries), piv_authenticator=info.";

struct Args {
    host: String,
    port: u16,
    state: Option<PathBuf>,
    serial: u32,
    ca_out: Option<PathBuf>,
    connect_timeout: Duration,
    deterministic: bool,
    firmware: [u8; 3],
    mgm_alg: Option<u8>,
    mgm_key: Option<Vec<u8>>,
    mgm_protected: bool,
    generic: bool,
}

fn parse_firmware(v: &str) -> Result<[u8; 3], String> {
    let parts: Vec<u8> = v
        .split('.')
        .map(|p| p.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--firmware {v}: {e}"))?;
    match parts[..] {
        [a, b, c] if a == 4 || a == 5 => Ok([a, b, c]),
        _ => Err(format!(
            "--firmware {v}: want X.Y.Z with X 4 or 5 (the yubikey crate accepts no other)"
        )),
    }
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
        firmware: [5, 4, 3],
        mgm_alg: None,
        mgm_key: None,
        mgm_protected: false,
        generic: false,
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = env("VIRTUAL_PIV_FIRMWARE") {
        a.firmware = parse_firmware(&v)?;
    }
    if let Some(v) = env("VIRTUAL_PIV_MGM_ALG") {
        a.mgm_alg =
            Some(mgm::parse_alg(&v).ok_or(format!("VIRTUAL_PIV_MGM_ALG={v}: unknown algorithm"))?);
    }
    if env("VIRTUAL_PIV_MGM_PROTECTED").is_some_and(|v| v != "0") {
        a.mgm_protected = true;
    }
    if env("VIRTUAL_PIV_GENERIC").is_some_and(|v| v != "0") {
        a.generic = true;
    }
    if let Some(v) = env("VIRTUAL_PIV_MGM_KEY") {
        a.mgm_key = Some(mgm::hex_decode(&v).ok_or("VIRTUAL_PIV_MGM_KEY is not hex")?);
    }
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
            "--firmware" => a.firmware = parse_firmware(&value()?)?,
            "--mgm-alg" => {
                let v = value()?;
                a.mgm_alg = Some(mgm::parse_alg(&v).ok_or(format!(
                    "--mgm-alg {v}: unknown algorithm (tdes, aes128, aes192, aes256)"
                ))?);
            }
            "--mgm-protected" => a.mgm_protected = true,
            "--generic" => a.generic = true,
            "--mgm-key" => {
                a.mgm_key = Some(mgm::hex_decode(&value()?).ok_or("--mgm-key is not hex")?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.mgm_alg.is_some() || a.mgm_key.is_some() {
        let alg = a.mgm_alg.unwrap_or(mgm::factory_alg(a.firmware));
        let len = mgm::key_len(alg).unwrap_or(0);
        let key_len = a.mgm_key.as_ref().map_or(len, Vec::len);
        if key_len != len {
            return Err(format!(
                "--mgm-key has {key_len} bytes; algorithm {alg:02x} takes {len}"
            ));
        }
        if alg != mgm::TDES && (a.firmware[0], a.firmware[1]) < (5, 4) {
            return Err("AES management keys need --firmware 5.4.0 or later".into());
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

    let firmware = args.firmware;
    let pki = pki::Pki::load_or_create(&state, args.serial, firmware)?;
    if let Some(path) = &args.ca_out {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, pki.ca_pem()?)?;
    }
    let slots = card::Slots::load(&state);
    let forced = (args.mgm_alg.is_some() || args.mgm_key.is_some()).then(|| {
        let alg = args.mgm_alg.unwrap_or(mgm::factory_alg(firmware));
        (
            alg,
            args.mgm_key
                .clone()
                .unwrap_or_else(|| mgm::DEFAULT_KEY.to_vec()),
        )
    });
    let mut mgm_key = mgm::MgmKey::load(&state, mgm::factory_alg(firmware), forced);
    if args.mgm_protected {
        mgm_key.protect();
    }
    let mut shared = card::Shared::new(
        card::Config {
            serial: args.serial,
            firmware,
            form_factor: 1,
            generic: args.generic,
        },
        pki,
        slots,
        mgm_key,
        power::PowerLog::new(&state),
    );

    let addr = format!("{}:{}", args.host, args.port);
    let (mut conn, quick_ack) = connect(&addr, args.connect_timeout)?;
    // Off by default: with it the YubiKey tests take half the time, but a card unplugged and
    // started again is not seen by pcscd (src/net.rs; docs/testing.md, "CI time").
    let quick_ack_on = std::env::var_os("VIRTUAL_PIV_QUICKACK").is_some_and(|v| v == "1");
    log::info!(
        "card inserted: {}serial {}, firmware {}.{}.{}, management key algorithm {:02x}{}, state {}",
        if args.generic { "generic PIV card, " } else { "" },
        args.serial,
        firmware[0],
        firmware[1],
        firmware[2],
        shared.mgm.alg,
        if shared.mgm.is_default() {
            " (default)"
        } else {
            ""
        },
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
            runner::run_client(
                platform,
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
                        if quick_ack_on {
                            net::quick_ack(&quick_ack);
                        }
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

/// The connection to vpcd, and a second handle on its socket to set TCP_QUICKACK with.
fn connect(
    addr: &str,
    timeout: Duration,
) -> std::io::Result<(vpicc::Connection, std::net::TcpStream)> {
    let start = Instant::now();
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(c) => return Ok((c.try_clone()?.into(), c)),
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
