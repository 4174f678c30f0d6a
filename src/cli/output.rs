//! Shared output helpers: JSON for scripts, short key ids for people.

use serde_json::Value;

/// Prints pretty JSON on stdout.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The first 8 hex digits of a key id, for tables.
pub fn short(keyid: &str) -> &str {
    keyid.get(..8).unwrap_or(keyid)
}

/// Asks a yes/no question on the terminal; `yes` answers it in advance (`--yes`).
/// Without a terminal and without `yes` it refuses, telling the user about `--yes`.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no terminal to confirm on (\"{question}\"); rerun with --yes once you are sure"
        );
    }
    Ok(dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()?)
}

/// The last lines of a human verification report: `VERIFIED`, or every problem and
/// `NOT VERIFIED`, so every verify command ends the same way for people reading it.
pub fn print_verdict(ok: bool, problems: &[String]) {
    if ok {
        println!("VERIFIED");
    } else {
        for p in problems {
            println!("  problem: {p}");
        }
        println!("NOT VERIFIED");
    }
}

/// 0 when verified, otherwise the exit code a monitor reads as "does not verify".
pub fn verdict_code(ok: bool, not_verified: u8) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(not_verified)
    }
}
