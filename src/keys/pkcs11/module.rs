//! The PKCS#11 module registry: one initialised module per path per process, and its
//! re-initialisation (C_Finalize + C_Initialize) after a device went away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::keys::error::KeyError;
use crate::keys::uri::Pkcs11Uri;

use super::limits::{REINIT_INTERVAL, REINIT_LOCK_WAIT};
use super::state::lock;

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

/// A loaded PKCS#11 module, one per path per process.
///
/// Every call tufkey makes into the module runs under a read lock of `state` and for
/// its generation. Re-initialising (after a device went away, see
/// `Pkcs11Signer::sign`) takes the write lock when it is free within
/// [`REINIT_LOCK_WAIT`] (else it gives up for now), so no call runs between C_Finalize
/// and C_Initialize; it then bumps the generation, and
/// sessions, logins, slot ids and object handles of an older generation are never used
/// again (they are dropped without a call: C_Finalize closed them).
pub(super) struct Module {
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
pub(super) struct Live<'a> {
    module: &'a Module,
    guard: RwLockReadGuard<'a, ModState>,
}

impl Live<'_> {
    pub(super) fn p11(&self) -> &Pkcs11 {
        &self.module.pkcs11
    }

    pub(super) fn generation(&self) -> u64 {
        self.guard.generation
    }
}

/// What a re-initialisation request did.
pub(super) enum Reinit {
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
    pub(super) fn enter(&self) -> Result<Live<'_>, String> {
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
    pub(super) fn generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Finalizes and initialises the module again, unless another thread already did
    /// since the caller saw generation `seen`, or the last attempt was less than
    /// [`REINIT_INTERVAL`] ago.
    pub(super) fn reinit(&self, seen: u64) -> Reinit {
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

/// The loaded module for `path`, loading and initialising it on first use.
pub(super) fn load(path: &Path) -> Result<Arc<Module>, KeyError> {
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
/// ordered against a re-initialisation that a `Pkcs11Signer` of this process makes
/// after a device went away; tufkey's own calls are.
pub fn module(path: &Path) -> Result<Pkcs11, KeyError> {
    Ok(load(path)?.pkcs11.clone())
}

/// How many times this process re-initialised the module at `path` (None: not loaded).
pub fn module_generation(path: &Path) -> Option<u64> {
    let m = lock(modules()).get(path).cloned();
    m.map(|m| m.generation())
}
