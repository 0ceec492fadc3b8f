use super::layer::Outcome;
use crate::handshake::WiringError;
use crate::types::{BoxError, Datagram, Transmits};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// The store look-up of one ClientHello (boxed: the store's futures are boxed anyway).
pub(crate) type Fetch = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pin_project! {
    /// Response future of [`Resumption`](super::Resumption): the inner service's straight
    /// away for everything but a proven ClientHello (no box), or a store look-up followed by
    /// the inner service's, or a wiring error.
    pub struct ResponseFuture<S: Service<Datagram>> {
        #[pin]
        kind: Kind<S>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S: Service<Datagram>> {
        Inner { #[pin] future: S::Future },
        Fetching { fetch: Fetch, service: Option<S>, datagram: Option<Datagram> },
        Failed { error: Option<WiringError> },
    }
}

impl<S: Service<Datagram>> ResponseFuture<S> {
    pub(crate) fn inner(future: S::Future) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(crate) fn fetching(fetch: Fetch, service: S, datagram: Datagram) -> Self {
        Self { kind: Kind::Fetching { fetch, service: Some(service), datagram: Some(datagram) } }
    }

    pub(crate) fn failed(error: WiringError) -> Self {
        Self { kind: Kind::Failed { error: Some(error) } }
    }
}

impl<S: Service<Datagram>> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Fetching { .. } => "fetching",
            Kind::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Datagram, Response = Transmits>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Transmits, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.kind.as_mut().project() {
                KindProj::Inner { future } => return future.poll(cx).map_err(Into::into),
                KindProj::Failed { error } => {
                    let e = error.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(Box::new(e)));
                }
                KindProj::Fetching { fetch, service, datagram } => {
                    let sessions = match ready!(fetch.as_mut().poll(cx)) {
                        Outcome::Sessions(s) => s,
                        Outcome::Answer(t) => return Poll::Ready(Ok(t)),
                    };
                    let mut d = datagram.take().expect("ResponseFuture polled after completion");
                    d.sessions.extend(sessions);
                    let mut svc = service.take().expect("ResponseFuture polled after completion");
                    Kind::Inner { future: svc.call(d) }
                }
            };
            this.kind.set(next);
        }
    }
}
