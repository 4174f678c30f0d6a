//! The PIN and touch policies of a new YubiKey key: backend data, no CLI traits (the
//! CLI wraps them for `--pin-policy` / `--touch-policy`).

/// PIV PIN policy for a new YubiKey key (the CLI's `--pin-policy` wraps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PivPinPolicy {
    /// The slot's default (9c: always).
    Default,
    /// The PIN once per session.
    Once,
    /// The PIN before every signature.
    Always,
}

/// PIV touch policy for a new YubiKey key (the CLI's `--touch-policy` wraps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PivTouchPolicy {
    /// No touch.
    Never,
    /// A touch for every signature.
    Always,
    /// A touch, remembered for 15 seconds.
    Cached,
}
