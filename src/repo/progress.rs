//! How long work (hashing files, signing roles) reports its progress; the CLI draws a
//! bar on a terminal, the library only reports.

/// Progress of long work (hashing files, signing roles), shown by the CLI as a bar on a
/// terminal; the library only reports. `Sync`: signing threads report as they finish.
pub trait Progress: Sync {
    /// A new phase of `total` steps (bytes or items).
    fn start(&self, what: &str, total: u64);
    /// `n` more steps done.
    fn advance(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
