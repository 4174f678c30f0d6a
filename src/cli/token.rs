//! `tufkey token list`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use tufkey::keys::{pkcs11, Pkcs11Uri};

use super::ctx::Ctx;
use super::output::print_json;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// List the tokens of a PKCS#11 module with label, serial, manufacturer and PIN state.
    List {
        /// The module library (default: TUFKEY_PKCS11_MODULE, then p11-kit-proxy or SoftHSM).
        #[arg(long)]
        module: Option<std::path::PathBuf>,
    },
}

pub fn run(cmd: TokenCmd, ctx: &Ctx) -> Result<ExitCode> {
    let TokenCmd::List { module } = cmd;
    let uri = Pkcs11Uri {
        module_path: module,
        ..Default::default()
    };
    let path = pkcs11::module_path(&uri)?;
    let tokens = pkcs11::list_tokens(&path)
        .with_context(|| format!("listing tokens of {}", path.display()))?;
    if ctx.json {
        print_json(&json!({"module": path, "tokens": tokens}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("module {}", path.display());
    if tokens.is_empty() {
        println!("  no initialised tokens");
    }
    for t in &tokens {
        println!(
            "  \"{}\"  serial {}  {} {}  slot-id {}  PIN: {}",
            t.label,
            t.serial,
            t.manufacturer,
            t.model,
            t.slot_id,
            t.pin.describe()
        );
        println!("      {}", t.uri);
    }
    Ok(ExitCode::SUCCESS)
}
