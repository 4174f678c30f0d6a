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
//! token is marked unavailable and the caller gets [`KeyError::DeviceUnavailable`] at
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand_core::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::KeyError;
use super::pin::{self, PinOrigin, PinPolicy, PinRequest, Secret};
use super::pin_cache;
use super::software::SoftKey;
use super::uri::Pkcs11Uri;
use super::Signer;
use crate::tuf::{Key, KeyType, PublicKey};

/// DER of the P-256 curve OID, as CKA_EC_PARAMS.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID 1.3.101.112.
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// PrintableString "edwards25519", as pkcs11-tool writes CKA_EC_PARAMS for Ed25519.
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// Where tufkey looks for a module when the URI names none (after `TUFKEY_PKCS11_MODULE`).
pub const DEFAULT_MODULES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The module a URI uses: `module-path`, else `TUFKEY_PKCS11_MODULE`, else p11-kit-proxy
/// or SoftHSM where installed.
pub fn module_path(uri: &Pkcs11Uri) -> Result<PathBuf, KeyError> {
    if let Some(p) = &uri.module_path {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("TUFKEY_PKCS11_MODULE") {
        return Ok(PathBuf::from(p));
    }
    DEFAULT_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| KeyError::NoModule {
            looked: DEFAULT_MODULES.join(", "),
        })
}

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

/// A loaded PKCS#11 module, one per path per process.
///
/// Every call tufkey makes into the module runs under a read lock of `state` and for
/// its generation. Re-initialising (after a device went away, see
/// [`Pkcs11Signer::sign`]) takes the write lock when it is free within
/// [`REINIT_LOCK_WAIT`] (else it gives up for now), so no call runs between C_Finalize
/// and C_Initialize; it then bumps the generation, and
/// sessions, logins, slot ids and object handles of an older generation are never used
/// again (they are dropped without a call: C_Finalize closed them).
struct Module {
    path: PathBuf,
    pkcs11: Pkcs11,
    state: RwLock<ModState>,
    /// When the last re-initialisation started (the rate limit).
    last_reinit: Mutex<Option<Instant>>,
}

struct ModState {
    generation: u64,
    /// False when C_Initialize failed during a re-initialisation: nothing may call the
    /// module until a later re-initialisation succeeds.
    live: bool,
    /// Why it is not live.
    why: String,
}

/// The module is initialised, at one generation, for as long as this lives.
struct Live<'a> {
    module: &'a Module,
    guard: RwLockReadGuard<'a, ModState>,
}

impl Live<'_> {
    fn p11(&self) -> &Pkcs11 {
        &self.module.pkcs11
    }

    fn generation(&self) -> u64 {
        self.guard.generation
    }
}

/// What a re-initialisation request did.
enum Reinit {
    /// The module was re-initialised (by this call or, meanwhile, by another thread).
    Done,
    /// The last one was too recent; the next one is allowed after this long.
    NotYet(Duration),
    /// Calls in flight held the module for longer than [`REINIT_LOCK_WAIT`]: not done,
    /// a later request tries again.
    Busy,
    /// C_Initialize failed; the module stays unusable until a later attempt.
    Failed(String),
}

impl Module {
    fn enter(&self) -> Result<Live<'_>, String> {
        let guard = self.state.read().unwrap_or_else(|e| e.into_inner());
        if guard.live {
            Ok(Live {
                module: self,
                guard,
            })
        } else {
            Err(guard.why.clone())
        }
    }

    /// The current generation: how many times the module was re-initialised.
    fn generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Finalizes and initialises the module again, unless another thread already did
    /// since the caller saw generation `seen`, or the last attempt was less than
    /// [`REINIT_INTERVAL`] ago.
    fn reinit(&self, seen: u64) -> Reinit {
        // Held for the whole re-initialisation: attempts queue here, then see the new
        // generation. Order: `last_reinit`, then `state`; nothing takes them the other way.
        let mut last = lock(&self.last_reinit);
        if self.generation() != seen {
            return Reinit::Done;
        }
        if let Some(t) = *last {
            let since = t.elapsed();
            if since < REINIT_INTERVAL {
                return Reinit::NotYet(REINIT_INTERVAL - since);
            }
        }
        let before = *last;
        *last = Some(Instant::now());
        // Waits a little for the calls in flight to finish, without queueing for the lock
        // (a queued writer would block every new reader of the module meanwhile).
        let started = Instant::now();
        let mut st = loop {
            match self.state.try_write() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if started.elapsed() >= REINIT_LOCK_WAIT {
                        // Not done: the rate limit does not count this attempt.
                        *last = before;
                        return Reinit::Busy;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let finalized = self.pkcs11.clone().finalize();
        st.generation += 1;
        match self
            .pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                st.live = true;
                st.why.clear();
                Reinit::Done
            }
            Err(e) => {
                st.live = false;
                st.why = format!(
                    "PKCS#11 module {} could not be initialised again (C_Finalize: {}; C_Initialize: {e})",
                    self.path.display(),
                    match finalized {
                        Ok(()) => "ok".to_string(),
                        Err(f) => f.to_string(),
                    }
                );
                Reinit::Failed(st.why.clone())
            }
        }
    }
}

fn modules() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The loaded module for `path`, loading and initialising it on first use.
fn load(path: &Path) -> Result<Arc<Module>, KeyError> {
    let mut map = lock(modules());
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    let err = |reason: String| KeyError::Module {
        path: path.into(),
        reason,
    };
    if !path.exists() {
        return Err(err("no such file".into()));
    }
    let p = Pkcs11::new(path).map_err(|e| err(e.to_string()))?;
    match p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let m = Arc::new(Module {
        path: path.to_path_buf(),
        pkcs11: p,
        state: RwLock::new(ModState {
            generation: 0,
            live: true,
            why: String::new(),
        }),
        last_reinit: Mutex::new(None),
    });
    map.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// The initialised module for `path`, loading and initialising it on first use, for
/// callers that make their own PKCS#11 calls (benchmarks, tests). Such calls are not
/// ordered against a re-initialisation that a [`Pkcs11Signer`] of this process makes
/// after a device went away; tufkey's own calls are.
pub fn module(path: &Path) -> Result<Pkcs11, KeyError> {
    Ok(load(path)?.pkcs11.clone())
}

/// How many times this process re-initialised the module at `path` (None: not loaded).
pub fn module_generation(path: &Path) -> Option<u64> {
    let m = lock(modules()).get(path).cloned();
    m.map(|m| m.generation())
}

/// How a locked PKCS#11 user PIN is unlocked.
const UNLOCK_SO: &str =
    "unlock it with the SO PIN (e.g. `pkcs11-tool --init-pin --login --login-type so`)";

/// The state of a token's user PIN, from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinState {
    Ok,
    CountLow,
    FinalTry,
    Locked,
    NotInitialized,
}

impl PinState {
    fn from_info(info: &cryptoki::slot::TokenInfo) -> PinState {
        if !info.user_pin_initialized() {
            PinState::NotInitialized
        } else if info.user_pin_locked() {
            PinState::Locked
        } else if info.user_pin_final_try() {
            PinState::FinalTry
        } else if info.user_pin_count_low() {
            PinState::CountLow
        } else {
            PinState::Ok
        }
    }

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            PinState::Ok => "ok",
            PinState::CountLow => "count low (a wrong PIN was entered)",
            PinState::FinalTry => "FINAL TRY",
            PinState::Locked => "LOCKED",
            PinState::NotInitialized => "not initialised",
        }
    }
}

/// Decides whether a login may be attempted in `state`. Locked and uninitialised PINs
/// are never tried; a final try needs `force`.
pub fn check_pin_state(
    state: PinState,
    force: bool,
    token: &str,
    uri: &str,
) -> Result<(), KeyError> {
    match state {
        PinState::Ok | PinState::CountLow => Ok(()),
        PinState::FinalTry if force => Ok(()),
        PinState::FinalTry => Err(KeyError::PinFinalTry {
            token: token.into(),
        }),
        PinState::Locked => Err(KeyError::PinLocked {
            token: format!("token \"{token}\""),
            uri: uri.into(),
            unlock: UNLOCK_SO,
        }),
        PinState::NotInitialized => Err(KeyError::PinNotInitialized {
            token: token.into(),
        }),
    }
}

/// What `token list` shows about a token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSummary {
    pub slot_id: u64,
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub pin: PinState,
    /// A URI naming this token.
    pub uri: String,
}

/// Every initialised token of the module at `path`.
pub fn list_tokens(path: &Path) -> Result<Vec<TokenSummary>, KeyError> {
    let m = load(path)?;
    let live = m.enter().map_err(|reason| KeyError::Module {
        path: path.into(),
        reason,
    })?;
    let p = live.p11();
    let ck = |op| {
        move |source| KeyError::Pkcs11 {
            op,
            uri: format!("module {}", path.display()),
            err: source,
        }
    };
    let mut out = Vec::new();
    for slot in p.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        let info = p.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if !info.token_initialized() {
            continue;
        }
        let uri = Pkcs11Uri {
            token: Some(info.label().trim_end().to_string()),
            serial: Some(info.serial_number().trim_end().to_string()),
            module_path: Some(path.to_path_buf()),
            ..Default::default()
        };
        out.push(TokenSummary {
            slot_id: slot.id(),
            label: info.label().trim_end().to_string(),
            serial: info.serial_number().trim_end().to_string(),
            manufacturer: info.manufacturer_id().trim_end().to_string(),
            model: info.model().trim_end().to_string(),
            pin: PinState::from_info(&info),
            uri: uri.to_string(),
        });
    }
    Ok(out)
}

/// One token of a module, shared by every key on it in this process: its sessions, its
/// login and its state. It is known by label and serial; its slot is looked up again
/// after the module is re-initialised (slot ids can change).
pub struct Token {
    module: Arc<Module>,
    module_path: PathBuf,
    pub label: String,
    pub serial: String,
    /// The slot as of a module generation.
    slot: Mutex<Option<(u64, Slot)>>,
    /// Idle sessions with the module generation they were opened in. They are opened
    /// without close-on-drop: one of an older generation is simply dropped (C_Finalize
    /// closed it, and its handle number may belong to a newer session by now).
    idle: Mutex<Vec<(u64, Session)>>,
    login: Mutex<LoginState>,
    /// Why the token is unavailable, from the failure that showed it; `None` when fine.
    down: Mutex<Option<String>>,
    /// When an absent token may ask for the next module re-initialisation.
    backoff: Mutex<Backoff>,
    /// What [`Token::key_objects`] returned last, with the module generation of its
    /// handles: [`Token::destroy`] destroys only these, and only while each handle still
    /// names the object that was listed.
    listed: Mutex<Option<(u64, Vec<Listed>)>>,
}

/// An object as [`Token::key_objects`] listed it (and the user confirmed).
#[derive(Clone, PartialEq, Eq)]
struct Listed {
    handle: ObjectHandle,
    class: Option<ObjectClass>,
    label: Vec<u8>,
    id: Vec<u8>,
}

/// The back-off of an absent token's re-initialisation requests.
struct Backoff {
    /// No re-initialisation for this token before then.
    not_before: Option<Instant>,
    /// The wait after the next re-initialisation that does not bring the token back.
    wait: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            not_before: None,
            wait: REINIT_INTERVAL,
        }
    }
}

impl Backoff {
    /// A re-initialisation did not bring the token back: wait longer before the next.
    fn failed(&mut self, now: Instant) {
        self.not_before = Some(now + self.wait);
        self.wait = (self.wait * 2).min(REINIT_BACKOFF_MAX);
    }

    /// How long until the next re-initialisation is allowed (None: now).
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[derive(Default)]
struct LoginState {
    /// The module generation in which this process is logged in to the token.
    generation: Option<u64>,
    /// The PIN that logged in last. The token does not own it (tokens live in a static
    /// map, which is never dropped): the signers that logged in with it hold it (see
    /// [`Pkcs11Signer`]) to log in again after the device comes back or the module is
    /// re-initialised, and it is zeroized when the last of them is dropped. This lets a
    /// signer opened later on the logged-in token share it.
    pin: Weak<Secret>,
    /// Set when a login that tufkey made by itself failed (a wrong PIN, or any answer
    /// that does not plainly mean the device is gone): no PIN is tried again.
    refused: Option<String>,
}

/// A session borrowed from a token's pool; it goes back when dropped.
pub struct PooledSession<'a> {
    token: &'a Token,
    generation: u64,
    session: Option<Session>,
    /// The module lock, when this session owns it (from [`Token::session`]); dropped
    /// after the session went back to the pool.
    _live: Option<Live<'a>>,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Present from creation until drop.
        self.session
            .as_ref()
            .expect("pooled session present until drop")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            lock(&self.token.idle).push((self.generation, s));
        }
    }
}

/// Open tokens by (module path, label, serial): keys on one token share its sessions
/// and login.
type TokenMap = Mutex<HashMap<(PathBuf, String, String), Arc<Token>>>;

fn tokens() -> &'static TokenMap {
    static TOKENS: OnceLock<TokenMap> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

fn matches_token(uri: &Pkcs11Uri, slot: Slot, info: &cryptoki::slot::TokenInfo) -> bool {
    let eq =
        |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have.trim_end());
    eq(&uri.token, info.label())
        && eq(&uri.serial, info.serial_number())
        && eq(&uri.manufacturer, info.manufacturer_id())
        && eq(&uri.model, info.model())
        && uri.slot_id.is_none_or(|s| s == slot.id())
}

/// A short form of an error for "why is the token unavailable" messages.
fn brief(e: &KeyError) -> String {
    match e {
        KeyError::Pkcs11 {
            op,
            err: CkError::Pkcs11(rv, _),
            ..
        } => format!("{op} answered {}", rv_name(*rv)),
        KeyError::DeviceUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// `CKR_GENERAL_ERROR` style names for the return values that mean a device problem.
fn rv_name(rv: RvError) -> String {
    let known = match rv {
        RvError::GeneralError => "CKR_GENERAL_ERROR",
        RvError::FunctionFailed => "CKR_FUNCTION_FAILED",
        RvError::DeviceError => "CKR_DEVICE_ERROR",
        RvError::DeviceMemory => "CKR_DEVICE_MEMORY",
        RvError::DeviceRemoved => "CKR_DEVICE_REMOVED",
        RvError::TokenNotPresent => "CKR_TOKEN_NOT_PRESENT",
        RvError::TokenNotRecognized => "CKR_TOKEN_NOT_RECOGNIZED",
        RvError::SlotIdInvalid => "CKR_SLOT_ID_INVALID",
        RvError::SessionHandleInvalid => "CKR_SESSION_HANDLE_INVALID",
        RvError::SessionClosed => "CKR_SESSION_CLOSED",
        RvError::ObjectHandleInvalid => "CKR_OBJECT_HANDLE_INVALID",
        RvError::KeyHandleInvalid => "CKR_KEY_HANDLE_INVALID",
        RvError::UserNotLoggedIn => "CKR_USER_NOT_LOGGED_IN",
        RvError::CryptokiNotInitialized => "CKR_CRYPTOKI_NOT_INITIALIZED",
        _ => "",
    };
    if known.is_empty() {
        format!("{rv:?}")
    } else {
        known.to_string()
    }
}

impl Token {
    /// The one token the URI's token attributes select. No token, or several, is an
    /// error that lists what is there.
    pub fn open(uri: &Pkcs11Uri) -> Result<Arc<Token>, KeyError> {
        let path = module_path(uri)?;
        let module = load(&path)?;
        let shown = uri.to_string();
        let live = module
            .enter()
            .map_err(|reason| KeyError::DeviceUnavailable {
                uri: shown.clone(),
                token: uri.token.clone().unwrap_or_else(|| "?".into()),
                serial: uri.serial.clone().unwrap_or_else(|| "?".into()),
                reason,
            })?;
        let p = live.p11();
        let ck = |op| {
            move |source| KeyError::Pkcs11 {
                op,
                uri: uri.to_string(),
                err: source,
            }
        };
        let mut found = Vec::new();
        let mut present = Vec::new();
        for slot in p.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
            // A token that does not answer (e.g. one that went away) is not the only
            // one: list it and look at the others.
            let info = match p.get_token_info(slot) {
                Ok(info) => info,
                Err(e) => {
                    present.push(format!(
                        "slot {} ({})",
                        slot.id(),
                        brief(&ck("C_GetTokenInfo")(e))
                    ));
                    continue;
                }
            };
            if !info.token_initialized() {
                continue;
            }
            present.push(format!(
                "\"{}\" (serial {})",
                info.label().trim_end(),
                info.serial_number().trim_end()
            ));
            if matches_token(uri, slot, &info) {
                found.push((slot, info));
            }
        }
        match found.len() {
            0 => Err(KeyError::NoToken {
                uri: shown,
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }),
            1 => {
                let (slot, info) = found.remove(0);
                let label = info.label().trim_end().to_string();
                let serial = info.serial_number().trim_end().to_string();
                let mut map = lock(tokens());
                let token = map
                    .entry((path.clone(), label.clone(), serial.clone()))
                    .or_insert_with(|| {
                        Arc::new(Token {
                            module: module.clone(),
                            module_path: path.clone(),
                            label,
                            serial,
                            slot: Mutex::new(None),
                            idle: Mutex::new(Vec::new()),
                            login: Mutex::new(LoginState::default()),
                            down: Mutex::new(None),
                            backoff: Mutex::new(Backoff::default()),
                            listed: Mutex::new(None),
                        })
                    })
                    .clone();
                *lock(&token.slot) = Some((live.generation(), slot));
                Ok(token)
            }
            n => Err(KeyError::AmbiguousToken {
                uri: shown,
                count: n,
                matches: found
                    .iter()
                    .map(|(s, i)| {
                        format!(
                            "\"{}\" serial {} slot-id {}",
                            i.label().trim_end(),
                            i.serial_number().trim_end(),
                            s.id()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// A URI naming exactly this token.
    pub fn uri(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(self.label.clone()),
            serial: Some(self.serial.clone()),
            module_path: Some(self.module_path.clone()),
            ..Default::default()
        }
    }

    fn ck(&self, op: &'static str) -> impl FnOnce(CkError) -> KeyError + '_ {
        move |source| KeyError::Pkcs11 {
            op,
            uri: self.uri().to_string(),
            err: source,
        }
    }

    /// The error for this token being unavailable, naming `uri`.
    fn unavailable(&self, uri: &str, reason: String) -> KeyError {
        KeyError::DeviceUnavailable {
            uri: uri.to_string(),
            token: self.label.clone(),
            serial: self.serial.clone(),
            reason,
        }
    }

    /// The module, initialised, for the duration of a sequence of calls.
    fn enter(&self) -> Result<Live<'_>, KeyError> {
        self.module
            .enter()
            .map_err(|why| self.unavailable(&self.uri().to_string(), why))
    }

    /// This token's slot in the module's current generation, found again by label and
    /// serial after a re-initialisation.
    fn slot_in(&self, live: &Live<'_>) -> Result<Slot, KeyError> {
        let generation = live.generation();
        if let Some((g, slot)) = *lock(&self.slot) {
            if g == generation {
                return Ok(slot);
            }
        }
        let p = live.p11();
        let slots = p.get_slots_with_token().map_err(|e| {
            self.unavailable(&self.uri().to_string(), format!("C_GetSlotList: {e}"))
        })?;
        let mut present = Vec::new();
        for slot in slots {
            match p.get_token_info(slot) {
                Ok(info) if info.token_initialized() => {
                    let (l, s) = (info.label().trim_end(), info.serial_number().trim_end());
                    if l == self.label && s == self.serial {
                        *lock(&self.slot) = Some((generation, slot));
                        return Ok(slot);
                    }
                    present.push(format!("\"{l}\" (serial {s})"));
                }
                Ok(_) => {}
                Err(e) => present.push(format!(
                    "slot {} ({})",
                    slot.id(),
                    brief(&self.ck("C_GetTokenInfo")(e))
                )),
            }
        }
        Err(self.unavailable(
            &self.uri().to_string(),
            format!(
                "the module lists no token with this label and serial (tokens present: {})",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        ))
    }

    /// A session of the current generation from the pool, or a new one.
    fn take_session(&self, live: &Live<'_>) -> Result<Session, KeyError> {
        let generation = live.generation();
        let reuse = {
            let mut idle = lock(&self.idle);
            // Older generations' sessions were closed by C_Finalize: drop them, no call.
            idle.retain(|(g, _)| *g == generation);
            idle.pop()
        };
        match reuse {
            Some((_, s)) => Ok(s),
            None => {
                let slot = self.slot_in(live)?;
                live.p11()
                    .open_ro_session_no_drop(slot)
                    .map_err(self.ck("C_OpenSession"))
            }
        }
    }

    fn session_in<'a>(&'a self, live: &'a Live<'a>) -> Result<PooledSession<'a>, KeyError> {
        Ok(PooledSession {
            token: self,
            generation: live.generation(),
            session: Some(self.take_session(live)?),
            _live: None,
        })
    }

    /// A read-only session from the pool (opened when none is idle). It holds the
    /// module's lock: a re-initialisation waits until it is dropped.
    pub fn session(&self) -> Result<PooledSession<'_>, KeyError> {
        let live = self.enter()?;
        let session = self.take_session(&live)?;
        Ok(PooledSession {
            token: self,
            generation: live.generation(),
            session: Some(session),
            _live: Some(live),
        })
    }

    /// Forgets sessions and login after the device went away; the next use opens fresh
    /// ones and logs in again.
    pub fn reset(&self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        if let Ok(live) = self.module.enter() {
            for (g, s) in idle {
                if g == live.generation() {
                    // The device may have forgotten it already; either way it is gone.
                    let _ = s.close();
                }
            }
        }
        lock(&self.login).generation = None;
    }

    /// How many idle sessions the pool holds (as many as were ever used at once).
    pub fn pooled_sessions(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The token's PIN state, read now.
    pub fn pin_state(&self) -> Result<PinState, KeyError> {
        let live = self.enter()?;
        self.pin_state_in(&live)
    }

    fn pin_state_in(&self, live: &Live<'_>) -> Result<PinState, KeyError> {
        let info = live
            .p11()
            .get_token_info(self.slot_in(live)?)
            .map_err(self.ck("C_GetTokenInfo"))?;
        Ok(PinState::from_info(&info))
    }

    /// The keyring entry name of this token's cached PIN.
    pub fn cache_key(&self) -> String {
        format!(
            "pkcs11:{}:{}:{}",
            self.module_path.display(),
            self.label,
            self.serial
        )
    }

    /// Logs the user in once for the whole application. `uri` supplies pin-value and
    /// pin-source. Exactly one C_Login is made per call that needs one. The PIN is not
    /// kept: it is zeroized when this returns (a [`Pkcs11Signer`] keeps its own).
    pub fn login(&self, uri: &Pkcs11Uri, policy: &PinPolicy) -> Result<(), KeyError> {
        let live = self.enter()?;
        self.login_in(&live, uri, policy, false, None, &mut false)
            .map(|_| ())
    }

    /// Logs in unless this process is logged in to the token in the module's current
    /// generation. The PIN a signer holds (`held`) is tried first, else the one the
    /// token's other signers hold, else the URI's and the environment's. PIN rules apply
    /// to every attempt: a locked PIN is not tried, a final try needs `force` (never for
    /// a login tufkey makes by itself, `automatic`). When a login that tufkey made by
    /// itself (`automatic`, or with a PIN that logged in before) fails for any reason
    /// other than a device that is plainly gone — a wrong PIN, a locked PIN, or an error
    /// after which nobody can tell whether a try was spent — no PIN is tried on this
    /// token again in this process. Returns the PIN that is logged in with, when known,
    /// for the caller to hold. `tried` is set once C_Login was called.
    fn login_in(
        &self,
        live: &Live<'_>,
        uri: &Pkcs11Uri,
        policy: &PinPolicy,
        automatic: bool,
        held: Option<Arc<Secret>>,
        tried: &mut bool,
    ) -> Result<Option<Arc<Secret>>, KeyError> {
        let generation = live.generation();
        let mut st = lock(&self.login);
        if st.generation == Some(generation) {
            return Ok(held.or_else(|| st.pin.upgrade()));
        }
        let shown = uri.to_string();
        if let Some(reason) = &st.refused {
            return Err(KeyError::ReloginRefused {
                token: self.label.clone(),
                uri: shown,
                reason: reason.clone(),
            });
        }
        let session = self.session_in(live)?;
        let state = session
            .get_session_info()
            .map_err(self.ck("C_GetSessionInfo"))?
            .session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            st.generation = Some(generation);
            return Ok(held.or_else(|| st.pin.upgrade()));
        }
        // A login tufkey makes by itself never spends a final try, --force or not.
        let force = policy.force && !automatic;
        check_pin_state(self.pin_state_in(live)?, force, &self.label, &shown)?;
        let (secret, origin) = match held.or_else(|| st.pin.upgrade()) {
            Some(pin) => (pin, None),
            None => {
                let req = PinRequest {
                    what: format!("user PIN for token \"{}\"", self.label),
                    uri_value: uri.pin_value.as_ref(),
                    uri_source: uri.pin_source.as_deref(),
                    env: vec![pin::token_env_var(&self.label), "TUFKEY_PIN".into()],
                    cache_key: Some(self.cache_key()),
                };
                let (secret, origin) = pin::obtain(&req, policy)?;
                (Arc::new(secret), Some(origin))
            }
        };
        let origin_text = match &origin {
            Some(o) => o.to_string(),
            None => "the PIN this process logged in with before".to_string(),
        };
        // Whether a failure stops all further logins to this token.
        let sticky = automatic || origin.is_none();
        let auth = AuthPin::from(secret.expose().to_owned());
        *tried = true;
        let answer = session.login(UserType::User, Some(&auth));
        drop(auth);
        match answer {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if policy.remember && origin.as_ref().is_some_and(|o| *o != PinOrigin::Cache) {
                    pin_cache::store(&self.cache_key(), &secret);
                }
                st.generation = Some(generation);
                st.pin = Arc::downgrade(&secret);
                Ok(Some(secret))
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                if origin == Some(PinOrigin::Cache) {
                    let _ = pin_cache::forget(&self.cache_key());
                }
                let mut after = match self.pin_state_in(live) {
                    Ok(PinState::FinalTry) => "; the token now has ONE try left".to_string(),
                    Ok(PinState::Locked) => "; the token is now LOCKED".to_string(),
                    _ => String::new(),
                };
                if sticky {
                    st.pin = Weak::new();
                    st.refused = Some(format!(
                        "it answered CKR_PIN_INCORRECT to {origin_text}{after}"
                    ));
                    after.push_str(
                        "; tufkey was logging in again by itself (the device had gone away or forgotten the login) and will not try another PIN on this token: check the token and the PIN, then restart tufkey",
                    );
                }
                Err(KeyError::PinIncorrect {
                    token: self.label.clone(),
                    origin: origin_text,
                    after,
                })
            }
            Err(CkError::Pkcs11(rv, _)) if sticky && login_device_gone(rv) => {
                // The token was not there to judge the PIN: no try was spent. Nothing
                // is retried in this request; the next one looks for the token first.
                Err(self.mark_down(&shown, format!("C_Login answered {}", rv_name(rv))))
            }
            Err(e) if sticky => {
                // A locked PIN, or an answer after which nobody can tell whether the
                // token counted a try (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, …): never
                // again by itself, so that each request cannot spend one.
                let what = match &e {
                    CkError::Pkcs11(rv, _) => rv_name(*rv),
                    other => other.to_string(),
                };
                st.pin = Weak::new();
                st.refused = Some(format!(
                    "C_Login answered {what} to {origin_text}; a try may have been spent"
                ));
                Err(KeyError::ReloginRefused {
                    token: self.label.clone(),
                    uri: shown,
                    reason: st.refused.clone().unwrap_or_default(),
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeyError::PinLocked {
                token: format!("token \"{}\"", self.label),
                uri: shown,
                unlock: UNLOCK_SO,
            }),
            Err(e) => Err(self.ck("C_Login")(e)),
        }
    }

    /// Whether a login that tufkey made by itself failed on this token, so that no PIN
    /// is tried on it again in this process.
    pub fn login_refused(&self) -> bool {
        lock(&self.login).refused.is_some()
    }

    /// Whether the token answers now, as the same token (label and serial), in the
    /// module's current generation. Errors name `uri`.
    fn probe(&self, uri: &str) -> Result<(), KeyError> {
        let live = self
            .module
            .enter()
            .map_err(|why| self.unavailable(uri, why))?;
        let slot = self
            .slot_in(&live)
            .map_err(|e| self.unavailable(uri, brief(&e)))?;
        let info = live
            .p11()
            .get_token_info(slot)
            .map_err(|e| self.unavailable(uri, brief(&self.ck("C_GetTokenInfo")(e))))?;
        let (l, s) = (info.label().trim_end(), info.serial_number().trim_end());
        if l == self.label && s == self.serial {
            Ok(())
        } else {
            Err(self.unavailable(
                uri,
                format!("slot {} now holds token \"{l}\" (serial {s})", slot.id()),
            ))
        }
    }

    /// Whether a failure marked this token unavailable.
    pub fn is_down(&self) -> bool {
        lock(&self.down).is_some()
    }

    /// Marks the token unavailable and returns the error to report.
    fn mark_down(&self, uri: &str, reason: String) -> KeyError {
        *lock(&self.down) = Some(reason.clone());
        self.unavailable(uri, reason)
    }

    fn mark_up(&self) {
        *lock(&self.down) = None;
    }

    /// Tries to get an unavailable token back: first looks for it as the module is now
    /// (a device that came back in its slot, or a re-initialisation another thread made),
    /// then re-initialises the module, at most once per [`REINIT_INTERVAL`] per module and,
    /// while the token stays away, at doubling intervals up to [`REINIT_BACKOFF_MAX`] (a
    /// token that is gone for good must not log every other token of the module out every
    /// second). Never logs in: the next signature does that, from the PIN its signer holds.
    fn recover(&self, uri: &str) -> Result<(), KeyError> {
        let seen = self.module.generation();
        if self.probe(uri).is_ok() {
            self.came_back();
            return Ok(());
        }
        let was = lock(&self.down).clone().unwrap_or_default();
        // One recovery of this token at a time; the others wait for its outcome here.
        let mut backoff = lock(&self.backoff);
        if let Some(wait) = backoff.remaining(Instant::now()) {
            // Another thread may have just re-initialised it: look once more.
            if self.module.generation() != seen && self.probe(uri).is_ok() {
                drop(backoff);
                self.came_back();
                return Ok(());
            }
            return Err(self.unavailable(
                uri,
                format!(
                    "{was} (the token stayed away after the last re-initialisation; the next one for it is in {} ms)",
                    wait.as_millis()
                ),
            ));
        }
        match self.module.reinit(seen) {
            Reinit::Done => match self.probe(uri) {
                Ok(()) => {
                    drop(backoff);
                    self.came_back();
                    Ok(())
                }
                Err(e) => {
                    backoff.failed(Instant::now());
                    let why = brief(&e);
                    Err(self.mark_down(
                        uri,
                        format!("still absent after re-initialising the PKCS#11 module: {why}"),
                    ))
                }
            },
            Reinit::NotYet(wait) => {
                // Another thread may have just re-initialised it: look once more.
                if self.module.generation() != seen && self.probe(uri).is_ok() {
                    drop(backoff);
                    self.came_back();
                    return Ok(());
                }
                Err(self.unavailable(
                    uri,
                    format!(
                        "{was} (next re-initialisation of the module allowed in {} ms)",
                        wait.as_millis()
                    ),
                ))
            }
            Reinit::Busy => Err(self.unavailable(
                uri,
                format!(
                    "{was} (the module could not be re-initialised now: other calls held it for over {} ms; the next request tries again)",
                    REINIT_LOCK_WAIT.as_millis()
                ),
            )),
            Reinit::Failed(why) => {
                backoff.failed(Instant::now());
                Err(self.mark_down(uri, why))
            }
        }
    }

    /// The token answers again: available, and the back-off starts over.
    fn came_back(&self) {
        self.mark_up();
        *lock(&self.backoff) = Backoff::default();
    }

    /// Whether the token can be used now, for health checks: an unavailable token is
    /// looked for again (see [`Token::recover`], rate-limited); an available one is asked
    /// for its token info. Spends no PIN try.
    pub fn check(&self) -> Result<(), KeyError> {
        let uri = self.uri().to_string();
        if let Some(reason) = lock(&self.login).refused.clone() {
            return Err(KeyError::ReloginRefused {
                token: self.label.clone(),
                uri,
                reason,
            });
        }
        if self.is_down() {
            return self.recover(&uri);
        }
        self.probe(&uri).map_err(|e| {
            let why = brief(&e);
            self.mark_down(&uri, why)
        })
    }

    /// Key pairs on the token whose public object matches the URI's object attributes.
    /// Public objects are readable without a login.
    pub fn public_keys(&self, uri: &Pkcs11Uri) -> Result<Vec<KeyObject>, KeyError> {
        let live = self.enter()?;
        let session = self.session_in(&live)?;
        let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        add_selectors(&mut template, uri);
        let handles = session
            .find_objects(&template)
            .map_err(self.ck("C_FindObjects"))?;
        let mut out = Vec::new();
        for h in handles {
            out.push(self.describe_public(&session, h)?);
        }
        Ok(out)
    }

    fn describe_public(&self, session: &Session, h: ObjectHandle) -> Result<KeyObject, KeyError> {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::KeyType,
                ],
            )
            .map_err(self.ck("C_GetAttributeValue"))?;
        let mut label = String::new();
        let mut id = Vec::new();
        let mut kt = None;
        for a in attrs {
            match a {
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => id = i,
                Attribute::KeyType(k) => kt = Some(k),
                _ => {}
            }
        }
        let object_uri = Pkcs11Uri {
            object: Some(label.clone()),
            id: Some(id.clone()),
            ..self.uri()
        };
        let public = match kt {
            Some(k) if k == CkKeyType::EC || k == CkKeyType::EC_EDWARDS => {
                let a = session
                    .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
                    .map_err(self.ck("C_GetAttributeValue"))?;
                let (mut params, mut point) = (Vec::new(), Vec::new());
                for x in a {
                    match x {
                        Attribute::EcParams(p) => params = p,
                        Attribute::EcPoint(p) => point = p,
                        _ => {}
                    }
                }
                ec_public_key(&params, &point)
            }
            Some(k) if k == CkKeyType::RSA => {
                let a = session
                    .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
                    .map_err(self.ck("C_GetAttributeValue"))?;
                let (mut n, mut e) = (Vec::new(), Vec::new());
                for x in a {
                    match x {
                        Attribute::Modulus(v) => n = v,
                        Attribute::PublicExponent(v) => e = v,
                        _ => {}
                    }
                }
                rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                )
                .map(PublicKey::RsaPss)
                .map_err(|e| e.to_string())
            }
            other => Err(format!(
                "key type {other:?} is not supported (tufkey uses EC P-256, Ed25519 and RSA)"
            )),
        };
        Ok(KeyObject {
            label,
            id,
            uri: object_uri,
            public,
        })
    }

    /// The single private key the URI selects. Needs a login on tokens whose private
    /// objects are private (all of them, for keys tufkey makes).
    fn private_key_in(
        &self,
        live: &Live<'_>,
        uri: &Pkcs11Uri,
    ) -> Result<(ObjectHandle, CkKeyType), KeyError> {
        let session = self.session_in(live)?;
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        add_selectors(&mut template, uri);
        let handles = session
            .find_objects(&template)
            .map_err(self.ck("C_FindObjects"))?;
        let describe = |h: ObjectHandle| -> String {
            let a = session
                .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                .unwrap_or_default();
            label_id(&a)
        };
        match handles.as_slice() {
            [] => {
                let present = self.list_objects_brief(&session);
                Err(KeyError::NoObject {
                    uri: uri.to_string(),
                    token: self.label.clone(),
                    present,
                })
            }
            [h] => {
                let kt = session
                    .get_attributes(*h, &[AttributeType::KeyType])
                    .map_err(self.ck("C_GetAttributeValue"))?
                    .into_iter()
                    .find_map(|a| {
                        if let Attribute::KeyType(k) = a {
                            Some(k)
                        } else {
                            None
                        }
                    })
                    .ok_or_else(|| KeyError::Unsupported {
                        uri: uri.to_string(),
                        reason: "the key has no CKA_KEY_TYPE".into(),
                    })?;
                Ok((*h, kt))
            }
            many => Err(KeyError::AmbiguousObject {
                uri: uri.to_string(),
                token: self.label.clone(),
                count: many.len(),
                matches: many
                    .iter()
                    .map(|h| describe(*h))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn list_objects_brief(&self, session: &Session) -> String {
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .unwrap_or_default();
        let handles = if handles.is_empty() {
            session
                .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
                .unwrap_or_default()
        } else {
            handles
        };
        if handles.is_empty() {
            return "none".into();
        }
        handles
            .iter()
            .map(|h| {
                label_id(
                    &session
                        .get_attributes(*h, &[AttributeType::Label, AttributeType::Id])
                        .unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every key object (public and private) the URI selects, for deletion. Needs a login.
    /// The handles are valid until the module is re-initialised ([`Token::destroy`]
    /// refuses them after that, and refuses any handle that no longer names the object
    /// listed here).
    pub fn key_objects(&self, uri: &Pkcs11Uri) -> Result<Vec<(ObjectHandle, String)>, KeyError> {
        let live = self.enter()?;
        let session = self.session_in(&live)?;
        let mut out = Vec::new();
        let mut listed = Vec::new();
        for (class, name) in [
            (ObjectClass::PRIVATE_KEY, "private key"),
            (ObjectClass::PUBLIC_KEY, "public key"),
        ] {
            let mut template = vec![Attribute::Class(class)];
            add_selectors(&mut template, uri);
            for h in session
                .find_objects(&template)
                .map_err(self.ck("C_FindObjects"))?
            {
                let seen = self.identify(&session, h)?;
                let a = [
                    Attribute::Label(seen.label.clone()),
                    Attribute::Id(seen.id.clone()),
                ];
                out.push((h, format!("{name} {}", label_id(&a))));
                listed.push(seen);
            }
        }
        *lock(&self.listed) = Some((live.generation(), listed));
        Ok(out)
    }

    /// The class, label and id of the object `h` names now.
    fn identify(&self, session: &Session, h: ObjectHandle) -> Result<Listed, KeyError> {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(self.ck("C_GetAttributeValue"))?;
        let mut seen = Listed {
            handle: h,
            class: None,
            label: Vec::new(),
            id: Vec::new(),
        };
        for a in attrs {
            match a {
                Attribute::Class(c) => seen.class = Some(c),
                Attribute::Label(l) => seen.label = l,
                Attribute::Id(i) => seen.id = i,
                _ => {}
            }
        }
        Ok(seen)
    }

    /// Destroys objects found by [`Token::key_objects`]. Before each C_DestroyObject the
    /// handle's class, label and id are read again and must be those listed (and shown
    /// for confirmation): an HSM that restarted meanwhile may have given the handle
    /// number to another object. Nothing is destroyed when one of them differs up front.
    pub fn destroy(&self, handles: &[ObjectHandle]) -> Result<(), KeyError> {
        let live = self.enter()?;
        let stale = |reason: String| KeyError::Unsupported {
            uri: self.uri().to_string(),
            reason,
        };
        let listed = match lock(&self.listed).clone() {
            Some((g, l)) if g == live.generation() => l,
            Some(_) => return Err(stale("the PKCS#11 module was re-initialised after the keys were listed, so their handles are stale; nothing was deleted: run the command again".into())),
            None => return Err(stale("the keys to delete were not listed first; nothing was deleted".into())),
        };
        let s = self.rw_session_in(&live)?;
        let expected = |h: &ObjectHandle| listed.iter().find(|l| l.handle == *h);
        let verify = |h: &ObjectHandle| -> Result<(), KeyError> {
            let want = expected(h).ok_or_else(|| {
                stale(format!(
                    "object handle {h} is not one of the objects listed for deletion; nothing more was deleted"
                ))
            })?;
            let now = self.identify(&s, *h)?;
            if now != *want {
                let show = |l: &Listed| {
                    format!(
                        "{} {}",
                        match l.class {
                            Some(c) if c == ObjectClass::PRIVATE_KEY => "private key",
                            Some(c) if c == ObjectClass::PUBLIC_KEY => "public key",
                            _ => "object",
                        },
                        label_id(&[
                            Attribute::Label(l.label.clone()),
                            Attribute::Id(l.id.clone())
                        ])
                    )
                };
                return Err(stale(format!(
                    "object handle {h} now names {}, not the {} that was listed and confirmed (did the HSM restart?); it was not deleted: run the command again",
                    show(&now),
                    show(want)
                )));
            }
            Ok(())
        };
        // All of them first: nothing is deleted when one already differs.
        for h in handles {
            verify(h)?;
        }
        for h in handles {
            verify(h)?;
            s.destroy_object(*h).map_err(self.ck("C_DestroyObject"))?;
        }
        *lock(&self.listed) = None;
        Ok(())
    }

    /// A read-write session for creating and destroying objects, closed when dropped;
    /// it must not outlive `live`.
    fn rw_session_in(&self, live: &Live<'_>) -> Result<Session, KeyError> {
        live.p11()
            .open_rw_session(self.slot_in(live)?)
            .map_err(self.ck("C_OpenSession"))
    }

    /// Refuses when any object already has this label or id, so a URI stays unambiguous.
    fn ensure_free(&self, session: &Session, uri: &Pkcs11Uri) -> Result<(), KeyError> {
        let mut clashes = Vec::new();
        for attr in [
            uri.object.clone().map(|l| Attribute::Label(l.into_bytes())),
            uri.id.clone().map(Attribute::Id),
        ]
        .into_iter()
        .flatten()
        {
            for h in session
                .find_objects(&[attr])
                .map_err(self.ck("C_FindObjects"))?
            {
                let a = session
                    .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                    .unwrap_or_default();
                clashes.push(label_id(&a));
            }
        }
        if clashes.is_empty() {
            Ok(())
        } else {
            clashes.dedup();
            Err(KeyError::ObjectExists {
                uri: uri.to_string(),
                token: self.label.clone(),
                existing: clashes.join(", "),
            })
        }
    }
}

fn label_id(attrs: &[Attribute]) -> String {
    let mut label = String::new();
    let mut id = String::new();
    for a in attrs {
        match a {
            Attribute::Label(l) => label = String::from_utf8_lossy(l).into_owned(),
            Attribute::Id(i) => id = hex::encode(i),
            _ => {}
        }
    }
    format!("object={label} id={id}")
}

fn add_selectors(template: &mut Vec<Attribute>, uri: &Pkcs11Uri) {
    if let Some(l) = &uri.object {
        template.push(Attribute::Label(l.clone().into_bytes()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
}

/// Decodes CKA_EC_POINT (DER OCTET STRING, or the raw point some tokens return) for
/// P-256 or Ed25519, chosen by CKA_EC_PARAMS.
fn ec_public_key(params: &[u8], point: &[u8]) -> Result<PublicKey, String> {
    let unwrap = |raw_len: usize| -> Result<&[u8], String> {
        if point.len() == raw_len {
            Ok(point)
        } else if point.len() == raw_len + 2 && point[0] == 0x04 && point[1] as usize == raw_len {
            Ok(&point[2..])
        } else {
            Err(format!(
                "CKA_EC_POINT has unexpected length {}",
                point.len()
            ))
        }
    };
    if params == P256_PARAMS {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(unwrap(65)?)
            .map(PublicKey::EcdsaP256)
            .map_err(|e| format!("bad P-256 point: {e}"))
    } else if params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS {
        let raw: [u8; 32] = unwrap(32)?
            .try_into()
            .map_err(|_| "bad Ed25519 point".to_string())?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(PublicKey::Ed25519)
            .map_err(|e| format!("bad Ed25519 point: {e}"))
    } else {
        Err(format!(
            "curve with CKA_EC_PARAMS {} is not supported (P-256 and Ed25519 are)",
            hex::encode(params)
        ))
    }
}

/// A key pair found on a token.
#[derive(Debug, Clone)]
pub struct KeyObject {
    pub label: String,
    pub id: Vec<u8>,
    /// A URI naming exactly this key (module, token label and serial, object, id).
    pub uri: Pkcs11Uri,
    /// The public key, or why it could not be read.
    pub public: Result<PublicKey, String>,
}

#[derive(Debug, Clone, Copy)]
enum Mech {
    Ecdsa,
    Eddsa,
    RsaPss,
}

/// A signer whose private key stays on the token.
pub struct Pkcs11Signer {
    token: Arc<Token>,
    /// The key's handle with the module generation it was found in; found again after
    /// the module is re-initialised or the device came back (handles do not survive).
    handle: Mutex<Option<(u64, ObjectHandle)>>,
    /// The private key's type, checked when the key is found again.
    key_type: CkKeyType,
    mech: Mech,
    uri: String,
    /// What `open` was given, to log in again and find the key after a device outage.
    source: Pkcs11Uri,
    /// The PIN policy for logging in again: never interactive, never a final try.
    policy: PinPolicy,
    /// The PIN this signer (or another signer of the token) logged in with, to log in
    /// again after the device came back. Held here, not in the token (tokens live in a
    /// static map that is never dropped), so it is zeroized when the last signer holding
    /// it is dropped; forgotten when the token refused a login tufkey made by itself.
    pin: Mutex<Option<Arc<Secret>>>,
    public: Key,
    keyid: String,
}

/// Errors that may mean the device went away, or came back and forgot the sessions,
/// the login or the object handles: the token is then probed, and either gets one fresh
/// attempt (it still answers) or is reported unavailable.
///
/// A failed C_Login never is: it may have spent a PIN try, and logging in again with the
/// same PIN in the same request could spend another.
fn device_trouble(e: &KeyError) -> bool {
    match e {
        KeyError::DeviceUnavailable { .. } | KeyError::NoToken { .. } => true,
        KeyError::Pkcs11 { op: "C_Login", .. } => false,
        KeyError::Pkcs11 {
            err: CkError::Pkcs11(rv, _),
            ..
        } => matches!(
            rv,
            RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError
                | RvError::FunctionFailed
        ),
        _ => false,
    }
}

/// Answers to C_Login that plainly mean the token was not there to judge the PIN (so no
/// try was spent). CKR_DEVICE_ERROR, CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED are not
/// among them: a token may count a try and then fail.
fn login_device_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::CryptokiNotInitialized
    )
}

impl Pkcs11Signer {
    /// Finds the key, logs in (PIN rules apply) and prepares to sign.
    pub fn open(uri: &Pkcs11Uri, policy: &PinPolicy) -> Result<Pkcs11Signer, KeyError> {
        let token = Token::open(uri)?;
        let shown = uri.to_string();
        // Look at the public half first: a wrong URI is reported before any PIN is asked.
        let publics = token.public_keys(uri)?;
        if publics.len() > 1 {
            return Err(KeyError::AmbiguousObject {
                uri: shown,
                token: token.label.clone(),
                count: publics.len(),
                matches: publics
                    .iter()
                    .map(|k| format!("object={} id={}", k.label, hex::encode(&k.id)))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let (generation, handle, kt, pin) = {
            let live = token.enter()?;
            let pin = token.login_in(&live, uri, policy, false, None, &mut false)?;
            let (handle, kt) = token.private_key_in(&live, uri)?;
            (live.generation(), handle, kt, pin)
        };
        let public = match publics.into_iter().next() {
            Some(k) => k.public.map_err(|reason| KeyError::Unsupported { uri: shown.clone(), reason })?,
            None => {
                return Err(KeyError::Unsupported {
                    uri: shown,
                    reason: "the token holds the private key but no public key object with the same label and id; tufkey needs it to name the key".into(),
                })
            }
        };
        let mech = match (&public, kt) {
            (PublicKey::EcdsaP256(_), k) if k == CkKeyType::EC => Mech::Ecdsa,
            (PublicKey::Ed25519(_), k) if k == CkKeyType::EC_EDWARDS => Mech::Eddsa,
            (PublicKey::RsaPss(_), k) if k == CkKeyType::RSA => Mech::RsaPss,
            _ => {
                return Err(KeyError::Unsupported {
                    uri: shown,
                    reason: "the private and public objects are of different key types".into(),
                })
            }
        };
        let tuf_key = public.to_tuf_key();
        let keyid = tuf_key.key_id();
        Ok(Pkcs11Signer {
            token,
            handle: Mutex::new(Some((generation, handle))),
            key_type: kt,
            mech,
            uri: shown,
            source: uri.clone(),
            policy: PinPolicy {
                interactive: false,
                force: false,
                ..*policy
            },
            pin: Mutex::new(pin),
            public: tuf_key,
            keyid,
        })
    }

    /// The token this key lives on.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }
}

impl Signer for Pkcs11Signer {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    /// Signs in the token. When the device went away the answer is at once a
    /// [`KeyError::DeviceUnavailable`]; later calls look for the token again (see
    /// [`Token::recover`]: re-found by label and serial, the module re-initialised at most
    /// once a second, less often while it stays away), log in again with the PIN this
    /// signer holds (never a prompt, never a final try; a failure other than a device
    /// that is plainly gone stops all further tries), find the key again and sign. A
    /// failed C_Login is never followed by another in the same call.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        if self.token.is_down() {
            self.token.recover(&self.uri)?;
        }
        let mut in_login = false;
        match self.sign_once(message, &mut in_login) {
            Err(e) if !in_login && device_trouble(&e) => match self.token.probe(&self.uri) {
                Ok(()) => {
                    // The token answers: the sessions, the login or the handle are stale
                    // (an HSM that restarted, a login that was dropped). Fresh sessions,
                    // a new login from the PIN this process holds, the key found again,
                    // one retry.
                    self.token.reset();
                    *lock(&self.handle) = None;
                    let mut in_login = false;
                    match self.sign_once(message, &mut in_login) {
                        Err(e2) if !in_login && device_trouble(&e2) => Err(self.token.mark_down(
                            &self.uri,
                            format!(
                                "{}, and again with fresh sessions: {}",
                                brief(&e),
                                brief(&e2)
                            ),
                        )),
                        other => other,
                    }
                }
                Err(gone) => Err(self
                    .token
                    .mark_down(&self.uri, format!("{}; then {}", brief(&e), brief(&gone)))),
            },
            other => other,
        }
    }
}

impl Pkcs11Signer {
    /// One attempt. `in_login` is set when it called C_Login (after a failure the caller
    /// must not retry: that C_Login may have spent a try).
    fn sign_once(&self, message: &[u8], in_login: &mut bool) -> Result<Vec<u8>, KeyError> {
        let live = self.token.enter()?;
        let generation = live.generation();
        let held = lock(&self.pin).clone();
        match self
            .token
            .login_in(&live, &self.source, &self.policy, true, held, in_login)
        {
            // Only a failed C_Login forbids the retry.
            Ok(Some(pin)) => {
                *in_login = false;
                *lock(&self.pin) = Some(pin);
            }
            Ok(None) => *in_login = false,
            Err(e) => {
                if self.token.login_refused() {
                    // Never tried again: no reason to keep it in memory.
                    *lock(&self.pin) = None;
                }
                return Err(e);
            }
        }
        let known = *lock(&self.handle);
        let handle = match known {
            Some((g, h)) if g == generation => h,
            _ => {
                let (h, kt) = self.token.private_key_in(&live, &self.source)?;
                if kt != self.key_type {
                    return Err(KeyError::Unsupported {
                        uri: self.uri.clone(),
                        reason: format!(
                            "after the token came back the key has type {kt:?}, not {:?}; is it the same token?",
                            self.key_type
                        ),
                    });
                }
                *lock(&self.handle) = Some((generation, h));
                h
            }
        };
        let session = self.token.session_in(&live)?;
        let ck = |source| KeyError::Pkcs11 {
            op: "C_Sign",
            uri: self.uri.clone(),
            err: source,
        };
        match self.mech {
            Mech::Ecdsa => {
                // CKM_ECDSA over a digest hashed here: portable, and SoftHSM lacks CKM_ECDSA_SHA256.
                let digest = Sha256::digest(message);
                let raw = session
                    .sign(&Mechanism::Ecdsa, handle, &digest)
                    .map_err(ck)?;
                let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|e| {
                    KeyError::Unsupported {
                        uri: self.uri.clone(),
                        reason: format!(
                            "the token returned a malformed ECDSA signature ({} bytes): {e}",
                            raw.len()
                        ),
                    }
                })?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Mech::Eddsa => {
                let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                session.sign(&m, handle, message).map_err(ck)
            }
            Mech::RsaPss => {
                let m = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                });
                session.sign(&m, handle, message).map_err(ck)
            }
        }
    }
}

fn fresh_id() -> Vec<u8> {
    let mut id = vec![0u8; 8];
    rand_core::OsRng.fill_bytes(&mut id);
    id
}

fn object_uri(token: &Token, uri: &Pkcs11Uri, id: Vec<u8>) -> Pkcs11Uri {
    Pkcs11Uri {
        object: uri.object.clone(),
        id: Some(id),
        pin_source: uri.pin_source.clone(),
        module_path: uri
            .module_path
            .clone()
            .or_else(|| Some(token.module_path.clone())),
        ..token.uri()
    }
}

fn private_template(label: &[u8], id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

fn public_template(label: &[u8], id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// Creates a key on the token the URI names: logs in, opens a read-write session,
/// checks that no object uses the label or id yet, and hands `make` the session and the
/// public and private templates (label, id and the key-pair attributes). Returns a URI
/// naming the new key and its public key, read back from the token.
fn new_key(
    uri: &Pkcs11Uri,
    policy: &PinPolicy,
    make: impl FnOnce(&Session, Vec<Attribute>, Vec<Attribute>) -> Result<(), KeyError>,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    let label = uri
        .object
        .clone()
        .ok_or_else(|| KeyError::NeedsObjectName {
            uri: uri.to_string(),
        })?;
    let token = Token::open(uri)?;
    token.login(uri, policy)?;
    let id = uri.id.clone().unwrap_or_else(fresh_id);
    {
        let live = token.enter()?;
        let session = token.rw_session_in(&live)?;
        token.ensure_free(&session, uri)?;
        make(
            &session,
            public_template(label.as_bytes(), &id),
            private_template(label.as_bytes(), &id),
        )?;
    }
    let new_uri = object_uri(&token, uri, id);
    let key = read_back(&token, &new_uri)?;
    Ok((new_uri, key))
}

/// Generates a key pair on the token: the private key is Sensitive and not
/// Extractable. Returns a URI naming the new key and its public key.
pub fn generate(
    uri: &Pkcs11Uri,
    key_type: KeyType,
    policy: &PinPolicy,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    new_key(uri, policy, |session, mut pub_t, priv_t| {
        let mech = match key_type {
            KeyType::EcdsaP256 => {
                pub_t.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyType::Ed25519 => {
                pub_t.push(Attribute::EcParams(ED25519_OID_PARAMS.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            KeyType::Rsa3072 | KeyType::Rsa2048 => {
                let bits: u64 = if key_type == KeyType::Rsa3072 {
                    3072
                } else {
                    2048
                };
                pub_t.push(Attribute::ModulusBits(bits.into()));
                pub_t.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        session
            .generate_key_pair(&mech, &pub_t, &priv_t)
            .map(|_| ())
            .map_err(|source| KeyError::Pkcs11 {
                op: "C_GenerateKeyPair",
                uri: uri.to_string(),
                err: source,
            })
    })
}

fn read_back(token: &Token, uri: &Pkcs11Uri) -> Result<PublicKey, KeyError> {
    let mut keys = token.public_keys(uri)?;
    match keys.pop() {
        Some(k) if keys.is_empty() => k.public.map_err(|reason| KeyError::Unsupported {
            uri: uri.to_string(),
            reason,
        }),
        _ => Err(KeyError::Unsupported {
            uri: uri.to_string(),
            reason: "the new key could not be read back".into(),
        }),
    }
}

/// Writes a software key into the token as a non-extractable private key plus its
/// public key object (for migrating keys into hardware).
pub fn import(
    uri: &Pkcs11Uri,
    key: &SoftKey,
    policy: &PinPolicy,
) -> Result<(Pkcs11Uri, PublicKey), KeyError> {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    new_key(uri, policy, |session, mut pub_t, mut priv_t| {
        pub_t.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        priv_t.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let octet = |p: &[u8]| {
            let mut v = vec![0x04, p.len() as u8];
            v.extend_from_slice(p);
            v
        };
        match key {
            SoftKey::EcdsaP256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::EcPoint(octet(point.as_bytes())),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::Value(k.to_bytes().to_vec()),
                ]);
            }
            SoftKey::Ed25519(k) => {
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_OID_PARAMS.to_vec()),
                    Attribute::EcPoint(octet(k.verifying_key().as_bytes())),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_OID_PARAMS.to_vec()),
                    Attribute::Value(k.to_bytes().to_vec()),
                ]);
            }
            SoftKey::Rsa(k) => {
                let mut k = (**k).clone();
                k.precompute().map_err(|e| KeyError::Unsupported {
                    uri: uri.to_string(),
                    reason: e.to_string(),
                })?;
                let primes = k.primes();
                if primes.len() != 2 {
                    return Err(KeyError::Unsupported {
                        uri: uri.to_string(),
                        reason: "multi-prime RSA keys cannot be imported".into(),
                    });
                }
                let missing = || KeyError::Unsupported {
                    uri: uri.to_string(),
                    reason: "RSA CRT values missing".into(),
                };
                let n = k.n().to_bytes_be();
                let e = k.e().to_bytes_be();
                pub_t.extend([
                    Attribute::KeyType(CkKeyType::RSA),
                    Attribute::Modulus(n.clone()),
                    Attribute::PublicExponent(e.clone()),
                ]);
                priv_t.extend([
                    Attribute::KeyType(CkKeyType::RSA),
                    Attribute::Modulus(n),
                    Attribute::PublicExponent(e),
                    Attribute::PrivateExponent(k.d().to_bytes_be()),
                    Attribute::Prime1(primes[0].to_bytes_be()),
                    Attribute::Prime2(primes[1].to_bytes_be()),
                    Attribute::Exponent1(k.dp().ok_or_else(missing)?.to_bytes_be()),
                    Attribute::Exponent2(k.dq().ok_or_else(missing)?.to_bytes_be()),
                    Attribute::Coefficient(k.crt_coefficient().ok_or_else(missing)?.to_bytes_be()),
                ]);
            }
        }
        let ck = |source| KeyError::Pkcs11 {
            op: "C_CreateObject",
            uri: uri.to_string(),
            err: source,
        };
        let priv_h = session.create_object(&priv_t).map_err(ck)?;
        if let Err(e) = session.create_object(&pub_t) {
            let _ = session.destroy_object(priv_h);
            return Err(ck(e));
        }
        Ok(())
    })
}

/// Health of the token a key URI names, for the daemon's `/healthz`: the token this
/// process already opened for it (else it is opened now) is checked with
/// [`Token::check`], which also tries to get an unavailable token back (rate-limited).
/// Spends no PIN try.
pub fn check_token(uri: &Pkcs11Uri) -> Result<(), KeyError> {
    let path = module_path(uri)?;
    let known: Vec<Arc<Token>> = lock(tokens())
        .values()
        .filter(|t| {
            t.module_path == path
                && uri.token.as_deref().is_none_or(|l| l == t.label)
                && uri.serial.as_deref().is_none_or(|s| s == t.serial)
        })
        .cloned()
        .collect();
    match known.as_slice() {
        [token] => token.check(),
        _ => Token::open(uri)?.check(),
    }
}

/// Public keys on every token of a module (no login needed), optionally narrowed by URI.
pub fn list_keys(filter: &Pkcs11Uri) -> Result<Vec<KeyObject>, KeyError> {
    let path = module_path(filter)?;
    let mut out = Vec::new();
    for t in list_tokens(&path)? {
        let token_filter = Pkcs11Uri {
            slot_id: Some(t.slot_id),
            module_path: Some(path.clone()),
            ..filter.clone()
        };
        let token = match Token::open(&token_filter) {
            Ok(t) => t,
            Err(KeyError::NoToken { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.extend(token.public_keys(filter)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_rules() {
        assert!(check_pin_state(PinState::Ok, false, "t", "u").is_ok());
        assert!(check_pin_state(PinState::CountLow, false, "t", "u").is_ok());
        assert!(matches!(
            check_pin_state(PinState::FinalTry, false, "t", "u"),
            Err(KeyError::PinFinalTry { .. })
        ));
        assert!(check_pin_state(PinState::FinalTry, true, "t", "u").is_ok());
        assert!(matches!(
            check_pin_state(PinState::Locked, true, "t", "u"),
            Err(KeyError::PinLocked { .. })
        ));
        assert!(matches!(
            check_pin_state(PinState::NotInitialized, true, "t", "u"),
            Err(KeyError::PinNotInitialized { .. })
        ));
    }

    #[test]
    fn ec_points_in_both_encodings() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let raw = sk
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&raw);
        for p in [&raw, &wrapped] {
            assert!(
                matches!(ec_public_key(P256_PARAMS, p), Ok(PublicKey::EcdsaP256(k)) if k == *sk.verifying_key())
            );
        }
        let ed = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let mut w = vec![0x04, 32];
        w.extend_from_slice(ed.verifying_key().as_bytes());
        for params in [ED25519_OID_PARAMS, ED25519_NAME_PARAMS] {
            assert!(matches!(
                ec_public_key(params, &w),
                Ok(PublicKey::Ed25519(_))
            ));
        }
        assert!(ec_public_key(&[0x06, 0x01, 0x00], &raw).is_err());
    }

    #[test]
    fn a_failed_login_is_never_device_trouble() {
        let e = |op, rv| KeyError::Pkcs11 {
            op,
            uri: "pkcs11:token=t".into(),
            err: CkError::Pkcs11(rv, cryptoki::context::Function::Login),
        };
        for rv in [
            RvError::GeneralError,
            RvError::FunctionFailed,
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::UserNotLoggedIn,
        ] {
            assert!(!device_trouble(&e("C_Login", rv)), "{rv:?}");
            assert!(device_trouble(&e("C_Sign", rv)), "{rv:?}");
        }
        // Only answers that plainly mean "no token" spare the token from the refusal.
        for rv in [
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SlotIdInvalid,
        ] {
            assert!(login_device_gone(rv), "{rv:?}");
        }
        for rv in [
            RvError::GeneralError,
            RvError::FunctionFailed,
            RvError::DeviceError,
            RvError::DeviceMemory,
            RvError::PinLocked,
        ] {
            assert!(!login_device_gone(rv), "{rv:?}");
        }
    }

    #[test]
    fn an_absent_token_backs_off_doubling_up_to_a_minute() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.remaining(t0), None);
        let mut waits = Vec::new();
        for _ in 0..9 {
            b.failed(t0);
            waits.push(b.remaining(t0).unwrap().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.remaining(t0 + REINIT_BACKOFF_MAX), None);
    }
}
