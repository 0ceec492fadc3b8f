//! Block-wise transfer (RFC 7959) in both roles.
//!
//! * [`BlockLayer`] / [`Block`]: a server-side middleware between the [`CoapLayer`](crate::CoapLayer) and the
//!   application. It reassembles Block1 uploads into one request, and cuts large responses
//!   into Block2 blocks (with Size2 and an ETag so a client can tell a changed representation
//!   from the next block of the same one).
//! * [`client::send_blockwise`]: the [`Client`](crate::Client) side: sends a large payload as
//!   Block1 blocks (with Size1), follows Block2 to the end, checks the ETag across blocks and
//!   restarts (or fails) on a change, so it never returns a spliced body.
//!
//! # Why not coap-lite's `block_handler`
//!
//! coap-lite 0.13 has a `BlockHandler` for the server role. It does not fit the limits this
//! crate promises: its transfer cache has an expiry but no size bound (one entry per
//! requester and path, any number of them), a Block1 upload may keep growing 16 KiB at a
//! time without an upper limit, its `BlockValue` keeps block numbers in 12 bits (RFC 7959
//! allows 20), and it adds neither an ETag nor Size2. The layer here is small and keeps every
//! limit in [`BlockConfig`]: bytes per body, transfers per peer, bytes in total, lifetime.
//!
//! # Server behaviour
//!
//! * **Block1** (§2.5): blocks must arrive in order, each non-final block exactly its SZX size.
//!   Block 0 starts (or restarts) the upload of (peer, method, Uri-Path, Uri-Query). Each
//!   non-final block is answered 2.31 Continue echoing Block1 with the server's SZX when it
//!   is smaller (block-size negotiation: the client continues with the smaller size). A block
//!   that jumps, overlaps or follows an unknown or expired upload gets **4.08 Request Entity
//!   Incomplete**; a body beyond [`BlockConfig::max_body_size`] (announced in Size1 or actually
//!   sent) gets **4.13 Request Entity Too Large** with Size1 set to the limit (§4). The final
//!   block hands the whole body to the application, whose answer carries Block1 (M=0).
//! * **Block2** (§2.4): a response larger than a block, or any response to a request carrying
//!   Block2, is cut at the smaller of the client's SZX and [`BlockConfig::max_szx`] (shrunk
//!   further if the options would not fit [`BlockConfig::max_message_size`]), with Size2 and
//!   an ETag (a digest of the body when the application set none). GET and FETCH are safe to
//!   run again, so each later block re-runs the application and slices the fresh answer: no
//!   memory is held, and if the representation changed, its ETag changed with it. Responses
//!   to other methods are kept (bounded) until their last block is fetched. A block number
//!   past the end gets **4.02 Bad Option** (§2.2).
//!
//! # Example
//!
//! ```
//! use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
//! use coaps_tower::block::{BlockLayer, BlockOption};
//! use coaps_tower::{BoxError, CoapRequest};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new().layer(BlockLayer::new()).service_fn(|req: CoapRequest| async move {
//!     let mut resp = req.response();
//!     resp.header.code = MessageClass::Response(ResponseType::Content);
//!     resp.payload = vec![7u8; 3000];
//!     Ok::<_, Infallible>(resp)
//! });
//! let mut get = Packet::new();
//! get.header.code = MessageClass::Request(RequestType::Get);
//! let req = CoapRequest {
//!     message: get,
//!     peer: "192.0.2.1:40000".parse()?,
//!     identity: coaps_dtls::PeerIdentity::Anonymous,
//!     early_data: false,
//!     handshake: coaps_tower::Handshaken::complete(),
//!     association: coaps_tower::Association::unknown(),
//! };
//! let first = svc.oneshot(req).await?;
//! let block2 = BlockOption::from_packet(&first, CoapOption::Block2).unwrap()?;
//! assert_eq!((block2.num, block2.more, block2.size()), (0, true, 1024));
//! assert_eq!(first.payload.len(), 1024);
//! # Ok(())
//! # }
//! ```

pub mod client;

use crate::types::{BoxError, CoapRequest};
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use pin_project_lite::pin_project;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// The largest SZX (6: 1024-byte blocks); 7 is reserved for BERT (RFC 8323), which needs a
/// reliable transport.
pub const MAX_SZX: u8 = 6;

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOption {
    /// NUM: the block number, at most 2^20 − 1.
    pub num: u32,
    /// M: whether more blocks follow.
    pub more: bool,
    /// SZX: the block size is 2^(SZX + 4) bytes, 0 to [`MAX_SZX`].
    pub szx: u8,
}

/// Why a Block option could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOptionError {
    /// More than 3 bytes (RFC 7959 §2.2).
    TooLong,
    /// SZX 7, reserved for BERT.
    Reserved,
}

impl fmt::Display for BlockOptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => f.write_str("a Block option is at most 3 bytes"),
            Self::Reserved => f.write_str("SZX 7 (BERT) is not supported over DTLS"),
        }
    }
}

impl std::error::Error for BlockOptionError {}

impl BlockOption {
    /// A block of `2^(szx+4)` bytes; `szx` is capped at [`MAX_SZX`], `num` at 20 bits.
    pub fn new(num: u32, more: bool, szx: u8) -> Self {
        Self { num: num & 0xF_FFFF, more, szx: szx.min(MAX_SZX) }
    }

    /// The SZX of the largest block no larger than `size` bytes (16 to 1024).
    pub fn szx_for(size: usize) -> u8 {
        let mut szx = 0u8;
        while szx < MAX_SZX && (16usize << (szx + 1)) <= size {
            szx += 1;
        }
        szx
    }

    /// The block size in bytes.
    pub fn size(&self) -> usize {
        16usize << self.szx
    }

    /// The byte offset of this block.
    pub fn offset(&self) -> usize {
        self.num as usize * self.size()
    }

    /// Decodes an option value: a uint of 0 to 3 bytes (RFC 7959 §2.2).
    pub fn decode(value: &[u8]) -> Result<Self, BlockOptionError> {
        if value.len() > 3 {
            return Err(BlockOptionError::TooLong);
        }
        let v = value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let szx = (v & 7) as u8;
        if szx == 7 {
            return Err(BlockOptionError::Reserved);
        }
        Ok(Self { num: v >> 4, more: v & 8 != 0, szx })
    }

    /// Encodes the value as a minimal uint.
    pub fn encode(&self) -> Vec<u8> {
        uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }

    /// The first `option` (Block1 or Block2) of `packet`: `None` when absent.
    pub fn from_packet(packet: &Packet, option: CoapOption) -> Option<Result<Self, BlockOptionError>> {
        packet.get_option(option).and_then(|l| l.front()).map(|v| Self::decode(v))
    }

    /// Replaces `option` in `packet` with this value.
    pub fn set_in(&self, packet: &mut Packet, option: CoapOption) {
        packet.clear_option(option);
        packet.add_option(option, self.encode());
    }
}

/// A minimal big-endian uint option value (RFC 7252 §3.2).
pub(crate) fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

/// Reads a uint option of at most 4 bytes; `None` when absent or longer.
pub(crate) fn get_uint(packet: &Packet, option: CoapOption) -> Option<u32> {
    let v = packet.get_option(option)?.front()?;
    (v.len() <= 4).then(|| v.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Limits of the server-side [`BlockLayer`].
#[derive(Debug, Clone)]
pub struct BlockConfig {
    /// Largest block the server sends or asks for, as SZX (2^(SZX+4) bytes). Default
    /// [`MAX_SZX`] (1024 bytes).
    pub max_szx: u8,
    /// Largest body reassembled from Block1 blocks, and largest response kept for Block2.
    /// Default 1 MiB.
    pub max_body_size: usize,
    /// Transfers kept per peer address; a new one evicts the peer's oldest. Default 4.
    pub max_transfers_per_peer: usize,
    /// Bytes held by all transfers together; beyond, new uploads get 5.03. Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// How long an idle transfer is kept. Default 120 s.
    pub transfer_lifetime: Duration,
    /// Largest encoded response (the [`CoapConfig::max_message_size`](crate::CoapConfig)
    /// below): blocks shrink until a block with its options fits. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::coap::DEFAULT_MAX_MESSAGE_SIZE).
    pub max_message_size: usize,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            max_szx: MAX_SZX,
            max_body_size: 1 << 20,
            max_transfers_per_peer: 4,
            max_buffered_bytes: 16 << 20,
            transfer_lifetime: Duration::from_secs(120),
            max_message_size: crate::coap::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A [`Layer`] producing [`Block`] services; the clones of one service share their transfers.
#[derive(Debug, Clone, Default)]
pub struct BlockLayer {
    config: BlockConfig,
}

impl BlockLayer {
    /// The default [`BlockConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// With `config`.
    pub fn with_config(config: BlockConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for BlockLayer {
    type Service = Block<S>;
    fn layer(&self, inner: S) -> Block<S> {
        Block { inner, shared: Arc::new(Shared { config: self.config.clone(), state: Mutex::default() }) }
    }
}

/// The block-wise middleware. See the [module docs](self).
pub struct Block<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Block<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S> fmt::Debug for Block<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Block")
            .field("config", &self.shared.config)
            .field("transfers", &st.transfers.len())
            .field("buffered", &st.buffered)
            .finish_non_exhaustive()
    }
}

impl<S> Block<S> {
    /// Transfers held now (uploads in progress and responses awaiting their next block).
    pub fn transfers(&self) -> usize {
        self.shared.lock().transfers.len()
    }

    /// Bytes held by those transfers.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().buffered
    }
}

/// (peer, method code, Uri-Path and Uri-Query): the resource a transfer belongs to (§2.4, §2.5).
type Key = (SocketAddr, u8, Vec<u8>);

fn key_of(req: &CoapRequest) -> Key {
    let mut k = Vec::new();
    for opt in [CoapOption::UriPath, CoapOption::UriQuery] {
        k.push(0xff);
        if let Some(list) = req.message.get_option(opt) {
            for seg in list {
                k.extend_from_slice(&(seg.len() as u32).to_be_bytes());
                k.extend_from_slice(seg);
            }
        }
    }
    (req.peer, u8::from(req.message.header.code), k)
}

enum Held {
    /// Block1 body received so far.
    Upload(Vec<u8>),
    /// A response (of an unsafe method) whose later blocks are still to be fetched.
    Download(Packet),
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Self::Upload(b) => b.len(),
            Self::Download(p) => p.payload.len(),
        }
    }
}

struct Transfer {
    held: Held,
    touched: Instant,
    seq: u64,
}

#[derive(Default)]
struct State {
    transfers: HashMap<Key, Transfer>,
    buffered: usize,
    seq: u64,
}

impl State {
    fn remove(&mut self, key: &Key) -> Option<Transfer> {
        let t = self.transfers.remove(key)?;
        self.buffered -= t.held.len();
        Some(t)
    }

    fn expire(&mut self, now: Instant, lifetime: Duration) {
        let old: Vec<Key> = self
            .transfers
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.touched) >= lifetime)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.remove(&k);
        }
    }

    /// Makes room for a new transfer of `peer`: evicts its oldest beyond the per-peer limit.
    fn admit(&mut self, peer: SocketAddr, config: &BlockConfig) {
        loop {
            let mine: Vec<(&Key, u64)> =
                self.transfers.iter().filter(|(k, _)| k.0 == peer).map(|(k, t)| (k, t.seq)).collect();
            if mine.len() < config.max_transfers_per_peer.max(1) {
                return;
            }
            let Some(oldest) = mine.iter().min_by_key(|(_, s)| *s).map(|(k, _)| (*k).clone()) else { return };
            tracing::debug!(%peer, "block-wise: transfer limit per peer reached, dropping the oldest");
            self.remove(&oldest);
        }
    }

    fn insert(&mut self, key: Key, held: Held, now: Instant) {
        self.remove(&key);
        self.seq += 1;
        self.buffered += held.len();
        self.transfers.insert(key, Transfer { held, touched: now, seq: self.seq });
    }
}

struct Shared {
    config: BlockConfig,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Transfers are inserted and removed whole: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn max_szx(&self) -> u8 {
        self.config.max_szx.min(MAX_SZX)
    }
}

fn error(req: &CoapRequest, code: ResponseType, diagnostic: &str) -> Packet {
    let mut p = req.response();
    p.header.code = MessageClass::Response(code);
    p.payload = diagnostic.as_bytes().to_vec();
    p
}

/// What a request turned into before the application.
// Built and matched at once, never stored: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Plan {
    /// Answered without the application.
    Answer(Packet),
    /// Served from a held response.
    Held(Packet),
    /// To the application; then the response is cut per `block2` and carries `block1`.
    Call { request: CoapRequest, block1: Option<BlockOption>, block2: Option<BlockOption>, key: Key, safe: bool },
}

impl Shared {
    fn plan(&self, mut req: CoapRequest) -> Plan {
        let block1 = match BlockOption::from_packet(&req.message, CoapOption::Block1) {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return Plan::Answer(error(&req, ResponseType::BadOption, &format!("Block1: {e}"))),
        };
        let block2 = match BlockOption::from_packet(&req.message, CoapOption::Block2) {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return Plan::Answer(error(&req, ResponseType::BadOption, &format!("Block2: {e}"))),
        };
        let key = key_of(&req);
        let safe = matches!(req.message.header.code, MessageClass::Request(RequestType::Get | RequestType::Fetch));
        let now = Instant::now();
        let mut st = self.lock();
        st.expire(now, self.config.transfer_lifetime);
        if let Some(b1) = block1 {
            let max = self.config.max_body_size;
            let too_large = |req: &CoapRequest| {
                let mut p =
                    error(req, ResponseType::RequestEntityTooLarge, &format!("the body may be at most {max} bytes"));
                p.add_option(CoapOption::Size1, uint(u32::try_from(max).unwrap_or(u32::MAX)));
                p
            };
            if get_uint(&req.message, CoapOption::Size1).is_some_and(|s| s as usize > max) {
                st.remove(&key);
                return Plan::Answer(too_large(&req));
            }
            if b1.more && req.message.payload.len() != b1.size() {
                st.remove(&key);
                return Plan::Answer(error(
                    &req,
                    ResponseType::BadRequest,
                    &format!(
                        "Block1 block {} has {} bytes, its SZX says {}",
                        b1.num,
                        req.message.payload.len(),
                        b1.size()
                    ),
                ));
            }
            let mut body = if b1.num == 0 {
                st.remove(&key);
                Vec::new()
            } else {
                match st.remove(&key) {
                    Some(Transfer { held: Held::Upload(body), .. }) => body,
                    _ => {
                        return Plan::Answer(error(
                            &req,
                            ResponseType::RequestEntityIncomplete,
                            "no Block1 transfer in progress (block 0 missing, or expired): start again at block 0",
                        ));
                    }
                }
            };
            if b1.offset() != body.len() {
                // A jump, an overlap or a repeat: the body would have a hole or a seam.
                return Plan::Answer(error(
                    &req,
                    ResponseType::RequestEntityIncomplete,
                    &format!(
                        "Block1 block {} starts at byte {}, expected byte {}: start again at block 0",
                        b1.num,
                        b1.offset(),
                        body.len()
                    ),
                ));
            }
            if body.len() + req.message.payload.len() > max {
                return Plan::Answer(too_large(&req));
            }
            body.extend_from_slice(&req.message.payload);
            // Block-size negotiation (§2.5): our smaller SZX tells the client to continue with it.
            let echo = BlockOption::new(b1.num, b1.more, b1.szx.min(self.max_szx()));
            if b1.more {
                if st.buffered + body.len() > self.config.max_buffered_bytes {
                    tracing::warn!(peer = %req.peer, "block-wise: buffer limit reached, refusing an upload");
                    return Plan::Answer(error(
                        &req,
                        ResponseType::ServiceUnavailable,
                        "too many uploads in progress; retry later",
                    ));
                }
                if b1.num == 0 {
                    st.admit(req.peer, &self.config);
                }
                st.insert(key, Held::Upload(body), now);
                let mut p = req.response();
                p.header.code = MessageClass::Response(ResponseType::Continue);
                echo.set_in(&mut p, CoapOption::Block1);
                return Plan::Answer(p);
            }
            req.message.payload = body;
            req.message.clear_option(CoapOption::Block1);
            req.message.clear_option(CoapOption::Size1);
            req.message.clear_option(CoapOption::Block2);
            return Plan::Call { request: req, block1: Some(echo), block2, key, safe };
        }
        if let Some(b2) = block2.filter(|b| b.num > 0)
            && let Some(t) = st.transfers.get_mut(&key)
            && let Held::Download(p) = &t.held
        {
            t.touched = now;
            let full = p.clone();
            drop(st);
            let (resp, last) = self.cut(&req, full, b2, None);
            if last {
                self.lock().remove(&key);
            }
            return Plan::Held(resp);
        }
        drop(st);
        req.message.clear_option(CoapOption::Block2);
        Plan::Call { request: req, block1: None, block2, key, safe }
    }

    /// Cuts `full` (the whole response) to the block `want` asks for. Returns the block and
    /// whether it is the last.
    fn cut(
        &self,
        req: &CoapRequest,
        mut full: Packet,
        want: BlockOption,
        block1: Option<BlockOption>,
    ) -> (Packet, bool) {
        let mut szx = want.szx.min(self.max_szx());
        let body = std::mem::take(&mut full.payload);
        if full.get_option(CoapOption::ETag).is_none_or(|l| l.is_empty()) {
            full.add_option(CoapOption::ETag, etag_of(&body));
        }
        full.clear_option(CoapOption::Size2);
        full.add_option(CoapOption::Size2, uint(u32::try_from(body.len()).unwrap_or(u32::MAX)));
        if let Some(b1) = block1 {
            b1.set_in(&mut full, CoapOption::Block1);
        }
        // Shrink the block until the message fits (options + 4-byte Block2 + marker).
        let overhead = {
            let mut probe = full.clone();
            BlockOption::new(0xF_FFFF, true, 0).set_in(&mut probe, CoapOption::Block2);
            probe.to_bytes().map(|b| b.len() + 1).unwrap_or(usize::MAX)
        };
        while szx > 0 && overhead.saturating_add(16 << szx) > self.config.max_message_size {
            szx -= 1;
        }
        let offset = want.offset();
        if offset >= body.len() && !(offset == 0 && body.is_empty()) {
            return (
                error(
                    req,
                    ResponseType::BadOption,
                    &format!("Block2 block {} is past the end ({} bytes)", want.num, body.len()),
                ),
                true,
            );
        }
        // A client asking with a larger SZX than ours gets the block holding its offset (§2.4).
        let size = 16usize << szx;
        let num = (offset / size) as u32;
        let start = num as usize * size;
        let end = (start + size).min(body.len());
        let more = end < body.len();
        full.payload = body[start..end].to_vec();
        BlockOption::new(num, more, szx).set_in(&mut full, CoapOption::Block2);
        (full, !more)
    }

    /// Shapes the application's answer: cut into blocks when needed.
    fn finish(
        &self,
        req: &CoapRequest,
        resp: Packet,
        block1: Option<BlockOption>,
        block2: Option<BlockOption>,
        key: Key,
        safe: bool,
    ) -> Packet {
        let block_size = 16usize << block2.map_or(self.max_szx(), |b| b.szx.min(self.max_szx()));
        let app_blocks = resp.get_option(CoapOption::Block2).is_some_and(|l| !l.is_empty());
        if app_blocks || (block2.is_none() && resp.payload.len() <= block_size.min(self.config.max_message_size)) {
            let mut resp = resp;
            if let Some(b1) = block1 {
                b1.set_in(&mut resp, CoapOption::Block1);
            }
            return resp;
        }
        let want = block2.unwrap_or(BlockOption::new(0, false, self.max_szx()));
        let full = (!safe && want.num == 0).then(|| resp.clone());
        let (block, last) = self.cut(req, resp, want, block1);
        if let Some(mut full) = full
            && !last
        {
            // An unsafe method ran once: keep its answer for the later blocks.
            let mut st = self.lock();
            if st.buffered + full.payload.len() <= self.config.max_buffered_bytes
                && full.payload.len() <= self.config.max_body_size
            {
                if full.get_option(CoapOption::ETag).is_none_or(|l| l.is_empty()) {
                    let tag = block.get_option(CoapOption::ETag).and_then(|l| l.front().cloned()).unwrap_or_default();
                    full.add_option(CoapOption::ETag, tag);
                }
                st.admit(req.peer, &self.config);
                st.insert(key, Held::Download(full), Instant::now());
            } else {
                tracing::warn!(peer = %req.peer, "block-wise: buffer limit reached, the later blocks of a response are not kept");
            }
        }
        block
    }
}

/// An ETag for a body the application gave none: the first 8 bytes of its SHA-256, so the
/// same representation always gets the same tag and a changed one (almost surely) another.
fn etag_of(body: &[u8]) -> Vec<u8> {
    use coaps_dtls::crypto::CryptoProvider;
    coaps_dtls::crypto::rustcrypto::RustCrypto.sha256_parts(&[b"coaps-etag", body])[..8].to_vec()
}

impl<S, E> Service<CoapRequest> for Block<S>
where
    S: Service<CoapRequest, Response = Packet, Error = E>,
    E: Into<BoxError>,
{
    type Response = Packet;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: CoapRequest) -> Self::Future {
        match self.shared.plan(req) {
            Plan::Answer(p) | Plan::Held(p) => ResponseFuture { kind: Kind::Ready { response: Some(p) } },
            Plan::Call { request, block1, block2, key, safe } => {
                // What `finish` needs of the request once the application consumed it.
                let mut skeleton = request.clone();
                skeleton.message.payload = Vec::new();
                let future = self.inner.call(request);
                ResponseFuture {
                    kind: Kind::Inner {
                        future,
                        after: Some(After { shared: self.shared.clone(), req: skeleton, block1, block2, key, safe }),
                    },
                }
            }
        }
    }
}

struct After {
    shared: Arc<Shared>,
    req: CoapRequest,
    block1: Option<BlockOption>,
    block2: Option<BlockOption>,
    key: Key,
    safe: bool,
}

pin_project! {
    /// The future of [`Block`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Ready { response: Option<Packet> },
        Inner { #[pin] future: F, after: Option<After> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready { .. } => "ready",
            Kind::Inner { .. } => "inner",
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
            KindProj::Ready { response } => {
                Poll::Ready(response.take().ok_or_else(|| BoxError::from("block-wise future polled after completion")))
            }
            KindProj::Inner { future, after } => {
                let resp = ready!(future.poll(cx)).map_err(Into::into)?;
                let Some(a) = after.take() else {
                    return Poll::Ready(Err(BoxError::from("block-wise future polled after completion")));
                };
                Poll::Ready(Ok(a.shared.finish(&a.req, resp, a.block1, a.block2, a.key, a.safe)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_round_trip_and_limits() {
        for (num, more, szx) in [(0, false, 0), (1, true, 6), (0xF_FFFF, true, 2), (4096, false, 6)] {
            let b = BlockOption::new(num, more, szx);
            assert_eq!(BlockOption::decode(&b.encode()).unwrap(), b);
        }
        assert_eq!(BlockOption::new(0, false, 0).encode(), Vec::<u8>::new());
        assert_eq!(BlockOption::decode(&[]).unwrap(), BlockOption::new(0, false, 0));
        assert_eq!(BlockOption::decode(&[0, 0, 0, 0]), Err(BlockOptionError::TooLong));
        assert_eq!(BlockOption::decode(&[0x0f]), Err(BlockOptionError::Reserved));
        assert_eq!(BlockOption::new(3, false, 6).offset(), 3072);
        assert_eq!(BlockOption::szx_for(64), 2);
        assert_eq!(BlockOption::szx_for(1000), 5);
        assert_eq!(BlockOption::szx_for(4096), 6);
        assert_eq!(BlockOption::szx_for(1), 0);
    }
}
