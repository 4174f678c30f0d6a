//! What every command is handed: the shared options and the exit status of "read fine
//! but does not verify". A leaf, so that a command's file can use it without importing
//! the CLI's entry point (`use super::ctx::Ctx`).

use tufkey::keys::PinPolicy;

use super::auditor::Auditor;

/// Exit status when metadata was read fine but does not verify.
pub const EXIT_NOT_VERIFIED: u8 = 3;

/// Options every command shares.
pub struct Ctx {
    pub json: bool,
    pub pins: PinPolicy,
    /// The audit log (`--audit-log`); a no-op when none is named.
    pub audit: Auditor,
    /// `--audit-actor` / `TUFKEY_ACTOR`.
    pub actor: Option<String>,
}
