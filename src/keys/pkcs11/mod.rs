//! PKCS#11 keys through the real module (SoftHSM in tests, any HSM in production).
//!
//! One initialised `Pkcs11` per module path per process, one [`Token`] per token
//! (known by label and serial) with a pool of sessions so that several threads sign at
//! once, and a login that is shared by all sessions of the application as PKCS#11
//! defines. Before a login the token's PIN flags are read: a locked PIN is not tried, a
//! final try is spent only with `--force`, and a wrong PIN is never retried.
//!
//! A token can go away under a running process. A signature that fails in a way that
//! may mean so makes tufkey ask the token for its info: if it answers, the sessions,
//! login and key handle are renewed and the signature is tried once more; if not, the
//! token is marked unavailable and the caller gets [`KeyError::DeviceUnavailable`](crate::keys::error::KeyError::DeviceUnavailable) at
//! once. Later uses look for the token again by label and serial, and re-initialise the
//! module (C_Finalize + C_Initialize; SoftHSM needs that to see a token folder that came
//! back) at most once per [`REINIT_INTERVAL`], and for a token that stays away at
//! doubling intervals up to [`REINIT_BACKOFF_MAX`]. Every call runs under a read lock of
//! its module and a re-initialisation under the write lock (taken only if it is free
//! within [`REINIT_LOCK_WAIT`]), and sessions, logins, slots and handles carry the module
//! generation they belong to, so nothing of an older generation is used again. Logging
//! in again uses the PIN the signers of the token logged in with (they hold it; it is
//! zeroized when the last of them is dropped) and never spends a final try; any failure
//! of that login other than a device that is plainly gone stops all further logins to
//! that token, and a failed C_Login is never retried within a request.
//!
//! One type per concern, as cryptoki splits `Session`: [`Token`] is declared in `token.rs`
//! and its `impl` blocks live in `pool.rs`, `login.rs`, `recovery.rs`, `objects.rs`,
//! `destroy.rs`, `create.rs` and `mechanisms.rs`.

mod answers;
mod create;
mod destroy;
mod implementation;
pub(crate) mod limits;
mod listing;
mod login;
mod mechanisms;
mod module;
mod objects;
pub mod parallel;
mod pin_rules;
mod pool;
mod recovery;
mod signer;
mod state;
mod token;

pub use create::{generate, import};
pub use limits::{REINIT_BACKOFF_MAX, REINIT_INTERVAL, REINIT_LOCK_WAIT};
pub use listing::{list_keys, list_tokens, TokenSummary};
pub use module::{module, module_generation, module_path, DEFAULT_MODULES};
pub use objects::{public_key, KeyObject};
pub use pin_rules::{check_pin_state, FinalTry, PinState};
pub use pool::PooledSession;
pub use recovery::check_token;
pub use signer::Pkcs11Signer;
pub use token::Token;
