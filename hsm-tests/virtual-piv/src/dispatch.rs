//! The trussed backends piv-authenticator needs: PIN handling (trussed-auth),
//! chunked I/O, HPKE and key wrapping (trussed-staging), software RSA
//! (trussed-rsa-alloc, with `raw` signing) and the trussed core.

use trussed::{
    backend::{Backend as _, BackendId},
    platform::Platform,
    serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl},
    service::ServiceResources,
    types::{Context, CoreContext},
};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::{
    api::{reply, request, Reply, Request},
    types::{Bytes, Location},
    Error,
};
use trussed_hpke::HpkeExtension;
use trussed_rsa_alloc::SoftwareRsa;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// Order matters: a request goes to the first backend that handles it.
pub const BACKENDS: &[BackendId<Backend>] = &[
    BackendId::Custom(Backend::Staging),
    BackendId::Custom(Backend::Auth),
    BackendId::Custom(Backend::Rsa),
    BackendId::Core,
];

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Auth,
    Rsa,
    Staging,
}

#[derive(Debug, Clone, Copy)]
pub enum Extension {
    Auth,
    Chunked,
    Hpke,
    WrapKeyToFile,
}

impl From<Extension> for u8 {
    fn from(e: Extension) -> u8 {
        match e {
            Extension::Auth => 0,
            Extension::Chunked => 1,
            Extension::Hpke => 2,
            Extension::WrapKeyToFile => 3,
        }
    }
}

impl TryFrom<u8> for Extension {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        Ok(match id {
            0 => Extension::Auth,
            1 => Extension::Chunked,
            2 => Extension::Hpke,
            3 => Extension::WrapKeyToFile,
            _ => return Err(Error::InternalError),
        })
    }
}

pub struct Dispatch {
    auth: AuthBackend,
    staging: StagingBackend,
}

#[derive(Default)]
pub struct DispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

impl Dispatch {
    pub fn new() -> Self {
        // The "hardware key" binds PIN-derived keys to the device; a constant
        // is fine for a test card (it must stay the same across restarts).
        let hw_key = Bytes::try_from(&b"tufkey virtual-piv test card"[..]).expect("hw key fits");
        Self {
            auth: AuthBackend::with_hw_key(Location::Internal, hw_key, FilesystemLayout::V0),
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for Dispatch {
    type BackendId = Backend;
    type Context = DispatchContext;
    type ExtensionId = Extension;

    fn core_request<P: Platform>(
        &mut self,
        backend: &Backend,
        ctx: &mut Context<DispatchContext>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        match backend {
            Backend::Auth => {
                self.auth
                    .request(&mut ctx.core, &mut ctx.backends.auth, request, resources)
            }
            Backend::Staging => {
                self.staging
                    .request(&mut ctx.core, &mut ctx.backends.staging, request, resources)
            }
            Backend::Rsa => SoftwareRsa.request(&mut ctx.core, &mut (), request, resources),
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &Backend,
        extension: &Extension,
        ctx: &mut Context<DispatchContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core = &mut ctx.core;
        match (backend, extension) {
            (Backend::Auth, Extension::Auth) => self.auth.extension_request_serialized(
                core,
                &mut ctx.backends.auth,
                request,
                resources,
            ),
            (Backend::Staging, Extension::Chunked) => staging::<ChunkedExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            (Backend::Staging, Extension::Hpke) => staging::<HpkeExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            (Backend::Staging, Extension::WrapKeyToFile) => staging::<WrapKeyToFileExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

/// Runs extension `E` on the staging backend.
fn staging<E, P: Platform>(
    backend: &mut StagingBackend,
    core: &mut CoreContext,
    ctx: &mut StagingContext,
    request: &request::SerdeExtension,
    resources: &mut ServiceResources<P>,
) -> Result<reply::SerdeExtension, Error>
where
    E: trussed_core::serde_extensions::Extension,
    StagingBackend: ExtensionImpl<E, Context = StagingContext>,
{
    <StagingBackend as ExtensionImpl<E>>::extension_request_serialized(
        backend, core, ctx, request, resources,
    )
}

impl ExtensionId<AuthExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Auth;
}
impl ExtensionId<ChunkedExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Chunked;
}
impl ExtensionId<HpkeExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Hpke;
}
impl ExtensionId<WrapKeyToFileExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::WrapKeyToFile;
}
