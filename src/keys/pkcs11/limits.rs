//! How often tufkey re-initialises a PKCS#11 module for a token that went away. A leaf:
//! the error messages that quote these intervals format them from here.

use std::time::Duration;

/// At most one re-initialisation of a module (C_Finalize + C_Initialize) per this
/// interval, so that a dead HSM does not turn into a busy loop.
pub const REINIT_INTERVAL: Duration = Duration::from_secs(1);

/// A token that is still absent after a re-initialisation asks for the next one only
/// after a wait that starts at [`REINIT_INTERVAL`] and doubles after each re-initialisation
/// that did not bring it back, up to this (every re-initialisation logs out every token
/// of the module, so a token that is gone for good must not cause one every second).
pub const REINIT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long a re-initialisation waits for the calls in flight on the module (the write
/// lock) before it gives up for now. It never queues for the lock: std's RwLock lets a
/// queued writer block every new reader, so one slow call plus a queued re-initialisation
/// would stall every other token of the module and `/healthz`.
pub const REINIT_LOCK_WAIT: Duration = Duration::from_millis(50);
