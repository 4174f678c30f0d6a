//! The one trait every backend implements.

use super::error::KeyError;
use crate::tuf::Key;

/// A key that can sign. `message` is the exact canonical bytes; each backend hashes as
/// its mechanism needs (Ed25519 signs the whole message). Blocking.
pub trait Signer: Send + Sync {
    /// The key's URI, with any PIN redacted.
    fn uri(&self) -> &str;
    /// The TUF public key.
    fn public_key(&self) -> &Key;
    /// The TUF key id of [`Signer::public_key`].
    fn key_id(&self) -> &str;
    /// A signature in TUF's encoding for the key's scheme.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Signatures for many messages, one result each, in order. Re-signing thousands of
    /// hashed bins is bound by the key, so backends that can do better than one at a
    /// time override this: a token signs over several sessions in parallel, a remote
    /// signer sends one batch request. A refused message does not stop the others.
    fn sign_many(&self, messages: &[&[u8]]) -> Vec<Result<Vec<u8>, KeyError>> {
        messages.iter().map(|m| self.sign(m)).collect()
    }
    /// [`Signer::sign_many`], telling `done(i, result)` as message `i` is signed, from
    /// whichever thread signed it: a caller checks each signature and moves a progress
    /// bar while the key is still busy with the others. By default the whole batch is
    /// signed first (one request for a remote key), then `done` is told in order.
    fn sign_many_with(
        &self,
        messages: &[&[u8]],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        let out = self.sign_many(messages);
        for (i, r) in out.iter().enumerate() {
            done(i, r);
        }
        out
    }
    /// [`Signer::sign_many_with`] for TUF documents whose role the caller knows (a
    /// hashed bin is a `targets` document signed as role `bins-3ff`). A key in hand
    /// signs bytes and ignores the role; a remote signer must say it, because its
    /// policy, rollback tracking and audit log are per role.
    fn sign_roles_with(
        &self,
        docs: &[RoleMessage<'_>],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        let messages: Vec<&[u8]> = docs.iter().map(|d| d.message).collect();
        self.sign_many_with(&messages, done)
    }
}

/// What [`Signer::sign_many_with`] tells about each message signed.
pub type Done<'a> = dyn Fn(usize, &Result<Vec<u8>, KeyError>) + Sync + 'a;

/// One document for [`Signer::sign_roles_with`]: the role it is signed as and its
/// canonical `signed` bytes.
#[derive(Debug, Clone, Copy)]
pub struct RoleMessage<'a> {
    pub role: &'a str,
    pub message: &'a [u8],
}
