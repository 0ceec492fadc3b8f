use super::NotRun;
use crate::types::BoxError;
use coap_lite::Packet;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A held request: waits for its handshake, then runs (boxed: only unsafe 0-RTT requests
/// take this path).
pub(crate) type Deferred = Pin<Box<dyn Future<Output = Result<Packet, BoxError>> + Send>>;

pin_project! {
    /// Response future of [`EarlyData`](super::EarlyData): the application's straight away
    /// (no box), an answer of the layer's own (4.01 + Echo, no box), a request never run, or
    /// a request held until its handshake completes.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { response: Option<Packet> },
        NotRun,
        Deferred { future: Deferred },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(crate) fn answer(response: Packet) -> Self {
        Self { kind: Kind::Answer { response: Some(response) } }
    }

    pub(crate) fn not_run() -> Self {
        Self { kind: Kind::NotRun }
    }

    pub(crate) fn deferred(future: Deferred) -> Self {
        Self { kind: Kind::Deferred { future } }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Answer { .. } => "answer",
            Kind::NotRun => "not run",
            Kind::Deferred { .. } => "deferred",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Packet, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Packet, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Answer { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Ready(Err(NotRun.into())),
            },
            KindProj::NotRun => Poll::Ready(Err(NotRun.into())),
            KindProj::Deferred { future } => future.as_mut().poll(cx),
        }
    }
}
