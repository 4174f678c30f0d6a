//! Runs the card's trussed service in the card's own thread, answering each request the
//! moment the client makes it.
//!
//! trussed's `virt::Platform::run_client_with_backends` runs the service in a second thread
//! that looks for requests every millisecond (`thread::sleep(1 ms)`) while the client thread
//! spins on an atomic until the reply comes. A PIV command makes dozens of trussed requests
//! (state loads, file reads, crypto), so every APDU cost about 4.5 ms of CPU and, on a loaded
//! 2-core machine, 40 ms or more of wall time (measured: docs/testing.md, "CI time"). Here
//! the client's syscall is the service itself: same requests, same replies, same backends,
//! no second thread, no sleeping and no spinning.

use trussed::{
    backend::{BackendId, Dispatch},
    pipe::{ServiceEndpoint, TrussedChannel},
    platform::Syscall,
    service::Service,
    types::CoreContext,
    virt, ClientImplementation,
};

/// The service and its one endpoint: a syscall processes the pending request at once.
pub struct Inline<'a, 'p, D: Dispatch> {
    service: Service<virt::Platform<'p>, D>,
    endpoints: [ServiceEndpoint<'a, D::BackendId, D::Context>; 1],
}

impl<D: Dispatch> Syscall for Inline<'_, '_, D> {
    fn syscall(&mut self) {
        self.service.process(&mut self.endpoints);
    }
}

/// The client `f` gets: trussed's client, served inline.
pub type Client<'a, 'p, D> = ClientImplementation<'a, Inline<'a, 'p, D>, D>;

/// What `platform.run_client_with_backends(client_id, dispatch, backends, f)` does, with the
/// service answering inline instead of from a polling thread.
pub fn run_client<D, R>(
    platform: virt::Platform<'_>,
    client_id: &str,
    dispatch: D,
    backends: &'static [BackendId<D::BackendId>],
    f: impl FnOnce(Client<'_, '_, D>) -> R,
) -> R
where
    D: Dispatch,
    D::Context: Default,
{
    let channel = TrussedChannel::new();
    let (requester, responder) = channel.split().expect("a new trussed channel splits once");
    let context = CoreContext::new(
        client_id
            .try_into()
            .expect("the client id is a short static path"),
    );
    let inline = Inline {
        service: Service::with_dispatch(platform, dispatch),
        endpoints: [ServiceEndpoint::new(responder, context, backends)],
    };
    f(ClientImplementation::new(requester, inline, None))
}
