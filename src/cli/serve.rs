//! `tufkey serve`: the signer daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tufkey::server::{self, Config};

#[derive(Args)]
pub struct ServeArgs {
    /// The daemon's configuration (TOML; see docs/signer.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Write the bound address (host:port) to FILE once connections are accepted
    /// (useful with `listen = "127.0.0.1:0"`).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Check the configuration, certificates, audit log and keys, then exit.
    #[arg(long)]
    check: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    if args.check {
        server::check(&cfg)?;
        match &cfg.state {
            server::config::StateConfig::Files { audit, .. } => {
                tufkey::audit::verify(audit)?;
            }
            server::config::StateConfig::Postgres { url } => {
                tufkey::audit::pg::verify_blocking(url, true)?;
            }
        }
        let keys = server::open_keys(&cfg)?;
        println!(
            "{}: ok ({} key(s), {} client(s))",
            args.config.display(),
            keys.len(),
            cfg.clients.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    server::run(
        cfg,
        server::Options {
            ready_file: args.ready_file,
        },
    )
    .with_context(|| format!("tufkey serve --config {}", args.config.display()))?;
    Ok(ExitCode::SUCCESS)
}
