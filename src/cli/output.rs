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
