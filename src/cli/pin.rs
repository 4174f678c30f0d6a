//! `tufkey pin forget`: clear the OS keyring PIN cache for a token.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use tufkey::keys::KeySource;

use super::ctx::Ctx;
use super::output::print_json;

#[derive(Subcommand)]
pub enum PinCmd {
    /// Remove the cached PIN of the token a pkcs11: URI names.
    Forget {
        /// A pkcs11: URI naming the token.
        uri: String,
    },
}

pub fn run(cmd: PinCmd, ctx: &Ctx) -> Result<ExitCode> {
    let PinCmd::Forget { uri } = cmd;
    let (label, removed) = KeySource::parse(&uri)?.forget_cached_pin()?;
    if ctx.json {
        print_json(&json!({"token": label, "removed": removed}));
    } else if removed {
        println!("forgot the cached PIN of token \"{}\"", label);
    } else {
        println!("no PIN was cached for token \"{}\"", label);
    }
    Ok(ExitCode::SUCCESS)
}
