use super::future::ResponseFuture;
use super::layer::Shared;
use crate::types::{BoxError, Datagram, Transmits};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service built by [`ResumptionLayer`](super::ResumptionLayer).
///
/// The inner service must be `Clone`: a proven ClientHello waits for the store before it is
/// handed on, so the call takes the inner service that was made ready (as
/// `tower::buffer` workers and `tower::util::CallAll` do) and leaves a clone in its place.
pub struct Resumption<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Resumption<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The counters so far (shared with the layer).
    pub fn stats(&self) -> super::ResumptionStats {
        self.shared.stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Resumption<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug> fmt::Debug for Resumption<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumption").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> Service<Datagram> for Resumption<S>
where
    S: Service<Datagram, Response = Transmits> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = Transmits;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, d: Datagram) -> Self::Future {
        match self.shared.plan(&d) {
            Err(e) => ResponseFuture::failed(e),
            Ok(None) => ResponseFuture::inner(self.inner.call(d)),
            Ok(Some(plan)) => {
                // The ready service goes with the datagram; a fresh clone waits for poll_ready.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                // The gate reads the hello again only where this layer decides the exemption.
                let hello = plan.decide.then(|| d.payload.clone());
                ResponseFuture::fetching(Box::pin(self.shared.clone().resolve(plan, d.peer, hello)), ready, d)
            }
        }
    }
}
