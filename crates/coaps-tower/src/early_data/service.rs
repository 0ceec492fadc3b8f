use super::echo;
use super::future::ResponseFuture;
use super::layer::{EarlyDataPolicy, Held, HoldKey, Shared, bump};
use super::{ECHO, NotRun};
use crate::types::{BoxError, CoapRequest, Handshaken};
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The 0-RTT filter over an application service; see the [module docs](super).
pub struct EarlyData<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for EarlyData<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S> fmt::Debug for EarlyData<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EarlyData").field("policy", &self.shared.policy).finish_non_exhaustive()
    }
}

impl<S> EarlyData<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// 4.01 Unauthorized with a fresh Echo value for the peer (RFC 9175 §2.4).
    fn unauthorized(&self, req: &CoapRequest) -> Packet {
        let mut resp = req.response();
        resp.header.code = MessageClass::Response(ResponseType::Unauthorized);
        let peer = Shared::echo_peer(req.peer, &req.identity);
        let value = echo::issue(&self.shared.echo_key, (self.shared.wall_clock)(), &peer);
        resp.add_option(CoapOption::Unknown(ECHO), value);
        resp
    }
}

/// Counts a held request against its association while it waits; a request dropped before it
/// ran is counted as dropped.
struct HeldGuard {
    shared: Arc<Shared>,
    key: HoldKey,
    handshake: Handshaken,
    bytes: usize,
    ran: bool,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        if !self.ran {
            bump(&self.shared.counters.deferred_dropped);
        }
        let mut held = self.shared.held();
        if let Some(h) = held.get_mut(&self.key)
            && h.handshake == self.handshake
        {
            h.count = h.count.saturating_sub(1);
            h.bytes = h.bytes.saturating_sub(self.bytes);
            if h.count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl<S> Service<CoapRequest> for EarlyData<S>
where
    S: Service<CoapRequest, Response = Packet> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Packet;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: CoapRequest) -> Self::Future {
        let c = &self.shared.counters;
        let MessageClass::Request(method) = req.message.header.code else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        if !req.early_data {
            if self.shared.policy == EarlyDataPolicy::Reject
                && let Some(value) = req.message.get_option(CoapOption::Unknown(ECHO)).and_then(|v| v.front())
            {
                let peer = Shared::echo_peer(req.peer, &req.identity);
                let now = (self.shared.wall_clock)();
                match echo::verify(&self.shared.echo_key, now, self.shared.echo_lifetime, &peer, value) {
                    Ok(()) => bump(&c.echo_verified),
                    Err(why) => {
                        bump(&c.echo_refused);
                        tracing::debug!(peer = %req.peer, ?why, "Echo refused: 4.01 with a fresh one");
                        return ResponseFuture::answer(self.unauthorized(&req));
                    }
                }
            }
            return ResponseFuture::inner(self.inner.call(req));
        }
        if matches!(method, RequestType::Get | RequestType::Fetch) {
            bump(&c.safe_run_early);
            return ResponseFuture::inner(self.inner.call(req));
        }
        let path: Vec<&[u8]> = req
            .message
            .get_option(CoapOption::UriPath)
            .map(|l| l.iter().map(Vec::as_slice).collect())
            .unwrap_or_default();
        if self.shared.allow.iter().any(|r| r.matches(method, &path)) {
            bump(&c.allowed_run_early);
            return ResponseFuture::inner(self.inner.call(req));
        }
        if self.shared.policy == EarlyDataPolicy::Reject {
            bump(&c.rejected);
            return ResponseFuture::answer(self.unauthorized(&req));
        }

        // Defer: count it against its association, within the limits.
        let bytes = req.message.payload.len()
            + req.message.options().map(|(_, vs)| vs.iter().map(|v| v.len() + 1).sum::<usize>()).sum::<usize>();
        {
            let mut held = self.shared.held();
            let h = held.entry(HoldKey::of(&req)).or_insert_with(|| Held {
                handshake: req.handshake.clone(),
                count: 0,
                bytes: 0,
            });
            if h.handshake != req.handshake {
                // Requests built by hand at an address whose handshake changed: start over.
                *h = Held { handshake: req.handshake.clone(), count: 0, bytes: 0 };
            }
            if h.count >= self.shared.max_deferred || h.bytes + bytes > self.shared.max_deferred_bytes {
                bump(&c.over_limit);
                tracing::debug!(peer = %req.peer, "0-RTT request over the hold limits: not run");
                return ResponseFuture::not_run();
            }
            h.count += 1;
            h.bytes += bytes;
        }
        bump(&c.deferred);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut guard = HeldGuard {
            shared: self.shared.clone(),
            key: HoldKey::of(&req),
            handshake: req.handshake.clone(),
            bytes,
            ran: false,
        };
        let timeout = self.shared.defer_timeout;
        ResponseFuture::deferred(Box::pin(async move {
            let completed = tokio::time::timeout(timeout, req.handshake.clone().wait()).await.unwrap_or(false);
            if !completed {
                tracing::debug!(peer = %req.peer, "0-RTT request held for a handshake that never completed: dropped");
                return Err(NotRun.into());
            }
            guard.ran = true;
            bump(&guard.shared.counters.deferred_run);
            drop(guard);
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await.map_err(Into::into)?;
            inner.call(req).await.map_err(Into::into)
        }))
    }
}
