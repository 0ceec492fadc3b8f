use super::future::ResponseFuture;
use super::layer::RetransmitLayer;
use crate::types::{Datagram, Transmits};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service of [`RetransmitLayer`]: passes every datagram on, after recording the cookie
/// round trip of a proven ClientHello.
#[derive(Debug, Clone)]
pub struct Retransmit<S> {
    pub(crate) inner: S,
    pub(crate) layer: RetransmitLayer,
}

impl<S> Retransmit<S> {
    /// The layer's factory and counters.
    pub fn layer(&self) -> &RetransmitLayer {
        &self.layer
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Datagram> for Retransmit<S>
where
    S: Service<Datagram, Response = Transmits>,
{
    type Response = Transmits;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, d: Datagram) -> Self::Future {
        // Recorded before the handshake layer sees the ClientHello: the association it creates
        // builds its policy from the table, so the first flight already uses this sample.
        if let Some(rtt) = d.cookie.and_then(|c| c.rtt_sample) {
            self.layer.factory.record_sample(d.peer, rtt);
            self.layer.counters.cookie_samples.fetch_add(1, Ordering::Relaxed);
        }
        ResponseFuture::new(self.inner.call(d))
    }
}
