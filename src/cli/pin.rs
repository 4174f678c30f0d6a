//! `tufkey pin forget`: clear the OS keyring PIN cache for a token.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use tufkey::keys::{pin_cache, pkcs11, KeyUri};

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
    let KeyUri::Pkcs11(u) = KeyUri::parse(&uri)? else {
        bail!("only PKCS#11 PINs are cached; {uri} is not a pkcs11: URI");
    };
    let token = pkcs11::Token::open(&u.token_only())?;
    let removed = pin_cache::forget(&token.cache_key()).map_err(anyhow::Error::msg)?;
    if ctx.json {
        print_json(&json!({"token": token.label, "removed": removed}));
    } else if removed {
        println!("forgot the cached PIN of token \"{}\"", token.label);
    } else {
        println!("no PIN was cached for token \"{}\"", token.label);
    }
    Ok(ExitCode::SUCCESS)
}
