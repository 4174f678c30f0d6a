//! The session pool of a token: read-only sessions that grow to the number of concurrent
//! signers, and read-write sessions for creating and destroying objects.

use cryptoki::session::Session;

use crate::keys::error::KeyError;

use super::module::Live;
use super::state::lock;
use super::token::Token;

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

impl Token {
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

    pub(super) fn session_in<'a>(
        &'a self,
        live: &'a Live<'a>,
    ) -> Result<PooledSession<'a>, KeyError> {
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

    /// A read-write session for creating and destroying objects, closed when dropped;
    /// it must not outlive `live`.
    pub(super) fn rw_session_in(&self, live: &Live<'_>) -> Result<Session, KeyError> {
        live.p11()
            .open_rw_session(self.slot_in(live)?)
            .map_err(self.ck("C_OpenSession"))
    }
}
