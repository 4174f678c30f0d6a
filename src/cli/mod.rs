//! The command line: clap definitions, one file per command group. Errors get their
//! context (file, URI, key id) here, at the edge.

mod audit;
mod auditor;
mod ceremony;
mod choice;
mod ctx;
mod delegation;
mod demo;
mod key;
mod notary;
mod outcome;
mod output;
mod pin;
mod repo;
mod repo_bins;
mod repo_common;
mod repo_download;
mod repo_verify;
mod serve;
mod sign;
mod token;
mod verify;
mod verify_chain;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tufkey::keys::PinPolicy;

use ctx::Ctx;

#[derive(Parser)]
#[command(
    name = "tufkey",
    version,
    about = "Keep TUF signing keys in hardware and sign TUF metadata with them",
    long_about = "tufkey keeps TUF (The Update Framework) signing keys in PKCS#11 HSMs (SoftHSM for tests) \
or encrypted files, signs TUF metadata with them, and verifies thresholds the way python-tuf does.\n\n\
Keys are named by URI everywhere:\n  \
pkcs11:token=root-a;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin\n  \
file:/path/to/key.p8\n\n\
PINs come from the URI (pin-source=, pin-value=), then TUFKEY_PIN_<TOKEN LABEL> or TUFKEY_PIN, \
then the OS keyring if --remember-pin stored one, then a hidden prompt. Passphrases of file: keys \
come from TUFKEY_PASSPHRASE or a prompt.",
    after_help = "Try `tufkey demo` to watch a 3-of-5 root ceremony and a rotation on throwaway tokens."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Allow spending a PIN's final try (a wrong PIN then locks the token).
    #[arg(long, global = true)]
    force: bool,
    /// Cache a PIN that worked in the OS keyring, so the next command does not ask.
    #[arg(long, global = true)]
    remember_pin: bool,
    /// Never prompt; fail if a PIN or passphrase is not given by URI or environment.
    #[arg(long, global = true)]
    no_prompt: bool,
    /// Remote keys (https://…/keys/<id>): client certificate (PEM) for mutual TLS.
    /// These three can also live in ~/.config/tufkey/remote.toml (docs/signer.md).
    #[arg(
        long,
        global = true,
        value_name = "PEM",
        env = "TUFKEY_REMOTE_CERT",
        hide_env_values = true
    )]
    remote_cert: Option<std::path::PathBuf>,
    /// Remote keys: the client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        value_name = "PEM",
        env = "TUFKEY_REMOTE_KEY",
        hide_env_values = true
    )]
    remote_key: Option<std::path::PathBuf>,
    /// Remote keys: the CA (PEM) that signed the signer's server certificate.
    #[arg(
        long,
        global = true,
        value_name = "PEM",
        env = "TUFKEY_REMOTE_CA",
        hide_env_values = true
    )]
    remote_ca: Option<std::path::PathBuf>,
    /// Remote keys: a file holding an OIDC token (read for every request) to send instead
    /// of a client certificate. TUFKEY_REMOTE_TOKEN gives the token itself; inside GitHub
    /// Actions with `id-token: write` one is fetched (docs/signer.md, "OIDC clients").
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TUFKEY_REMOTE_TOKEN_FILE",
        hide_env_values = true
    )]
    remote_token_file: Option<std::path::PathBuf>,
    /// Append an entry for every command that signs or changes keys or trust to this
    /// hash-chained audit log: a JSON-lines file (shared safely with a running
    /// `tufkey serve` and other commands) or the replicas' `postgres://…` store. Not
    /// set: no audit entries. A failed entry fails the command (see docs/audit.md).
    #[arg(
        long,
        global = true,
        value_name = "FILE|postgres://…",
        env = "TUFKEY_AUDIT_LOG",
        hide_env_values = true
    )]
    audit_log: Option<String>,
    /// Who to name in audit entries and ceremony transcripts (e.g. "alice, root
    /// keyholder 2"); the OS user, uid and host are recorded beside it. Default: user@host.
    #[arg(long, global = true, value_name = "NAME", env = "TUFKEY_ACTOR")]
    audit_actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, show, import and delete keys.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Show PKCS#11 tokens and their PIN state.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Add one signature per key to a TUF metadata file.
    Sign(sign::SignArgs),
    /// Check a role's signature threshold (and expiry) against its delegator.
    Verify(verify::VerifyArgs),
    /// Print the canonical bytes that signatures of a metadata file cover.
    Payload(sign::PayloadArgs),
    /// Add a signature made elsewhere, after checking it.
    AddSignature(sign::AddSignatureArgs),
    /// Offline root signing ceremonies and root rotation.
    #[command(subcommand)]
    Ceremony(ceremony::CeremonyCmd),
    /// Edit a targets file's delegations and re-sign it (delegated key rotation).
    #[command(subcommand)]
    Delegation(delegation::DelegationCmd),
    /// Manage the OS keyring PIN cache.
    #[command(subcommand)]
    Pin(pin::PinCmd),
    /// Build, commit, publish, refresh and monitor a TUF repository folder.
    #[command(subcommand)]
    Repo(repo::RepoCmd),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the signer daemon for CI pipelines (mutual TLS, policy, audit log).
    Serve(serve::ServeArgs),
    /// Check the hash chain of an audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Leave Notary v1: list and import its keys, verify its trust data, migrate its targets.
    #[command(subcommand)]
    Notary(notary::NotaryCmd),
    /// Run a whole 3-of-5 root ceremony and a rotation on throwaway keys, printing each command.
    Demo(demo::DemoArgs),
}

/// The audited commands (they sign, or change key material or trust), with the
/// file they work on; `None` for everything else.
fn audited(cmd: &Command) -> Option<auditor::Audited> {
    match cmd {
        Command::Sign(a) => Some(sign::audited_sign(a)),
        Command::AddSignature(a) => Some(sign::audited_add(a)),
        Command::Key(c) => key::audited(c),
        Command::Ceremony(c) => ceremony::audited(c),
        Command::Delegation(c) => Some(delegation::audited(c)),
        Command::Repo(c) => repo::audited(c),
        Command::Notary(c) => notary::audited(c),
        _ => None,
    }
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // The remote-key client reads its TLS files from the environment; flags override it.
    // Set once here, before any thread exists.
    for (var, value) in [
        (tufkey::keys::remote::ENV_CERT, &cli.remote_cert),
        (tufkey::keys::remote::ENV_KEY, &cli.remote_key),
        (tufkey::keys::remote::ENV_CA, &cli.remote_ca),
        (
            tufkey::keys::remote::token::ENV_TOKEN_FILE,
            &cli.remote_token_file,
        ),
    ] {
        if let Some(v) = value {
            std::env::set_var(var, v);
        }
    }
    let ctx = Ctx {
        json: cli.json,
        pins: PinPolicy::from_flags(cli.force, cli.remember_pin, cli.no_prompt),
        audit: auditor::Auditor::new(cli.audit_log.as_deref(), cli.audit_actor.as_deref()),
        actor: cli.audit_actor.clone(),
    };
    let audited = audited(&cli.command);
    // The log is opened before an audited command changes anything: an unwritable
    // log stops it here, with nothing done.
    if audited.is_some() {
        if let Err(e) = ctx.audit.open() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Key(c) => key::run(c, &ctx),
        Command::Token(c) => token::run(c, &ctx),
        Command::Sign(a) => sign::sign(a, &ctx),
        Command::Verify(a) => verify::run(a, &ctx),
        Command::Payload(a) => sign::payload(a),
        Command::AddSignature(a) => sign::add_signature(a, &ctx),
        Command::Pin(c) => pin::run(c, &ctx),
        Command::Ceremony(c) => ceremony::run(c, &ctx),
        Command::Delegation(c) => delegation::run(c, &ctx),
        Command::Repo(c) => repo::run(c, &ctx),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tufkey", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Audit(c) => audit::run(c, &ctx),
        Command::Notary(c) => notary::run(c, &ctx),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let kind = outcome::outcome(&e);
            if let Some(hint) = outcome::hint(kind) {
                eprintln!("hint: {hint}");
            }
            if let Some(what) = &audited {
                if let Err(ae) = ctx.audit.record_failure(what, &e) {
                    eprintln!("error: and this failure could not be audited: {ae}");
                }
            }
            outcome::exit_code(kind)
        }
    }
}
