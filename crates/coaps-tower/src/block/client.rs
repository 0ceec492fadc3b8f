//! The client side of block-wise transfer (RFC 7959): [`send_blockwise`].
//!
//! * A payload larger than one block goes as Block1 blocks, Size1 on the first (§4); each
//!   2.31 Continue moves on, and a smaller SZX in the server's Block1 is adopted from the next
//!   block (§2.5, block-size negotiation: the smaller size wins). A 4.13 whose Block1 names a
//!   smaller size restarts the upload once at that size. Any other answer ends the upload and
//!   is returned as it is.
//! * A response carrying Block2 with M=1 is followed block by block with the same request
//!   (without Block1, and without the payload unless the method is FETCH), again adopting a
//!   smaller SZX. Every block is checked: it must start exactly where the body so far ends,
//!   be full-size unless it is the last, keep the first block's ETag, and the body must stay
//!   within [`BlockwiseOptions::max_body_size`]. An ETag change means the representation
//!   changed mid-transfer (§2.4): the transfer restarts from block 0, up to
//!   [`BlockwiseOptions::max_restarts`] times, then fails with [`BlockError::Changed`]. The
//!   caller gets either the whole body or an error, never a splice of two representations.

use super::{BlockOption, MAX_SZX, uint};
use crate::client::{Client, Error};
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use std::fmt;

/// Settings of [`send_blockwise`].
#[derive(Debug, Clone)]
pub struct BlockwiseOptions {
    /// Preferred block size as SZX (2^(SZX+4) bytes): the Block1 size, and, when set, asked
    /// for in Block2 from the first request on (libcoap's `-b`). Default `None`: 1024-byte
    /// Block1 blocks, Block2 as the server chooses.
    pub szx: Option<u8>,
    /// Largest body accepted through Block2. Default 16 MiB.
    pub max_body_size: usize,
    /// How often a Block2 transfer restarts when the ETag changes. Default 2.
    pub max_restarts: u32,
}

impl Default for BlockwiseOptions {
    fn default() -> Self {
        Self { szx: None, max_body_size: 16 << 20, max_restarts: 2 }
    }
}

/// Why a block-wise exchange failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockError {
    /// One of the requests failed.
    Client(Error),
    /// The representation changed mid-transfer (a different ETag) more often than
    /// [`BlockwiseOptions::max_restarts`] allows.
    Changed {
        /// Restarts made.
        restarts: u32,
    },
    /// A block did not continue the body (wrong number, wrong size, no Block2 in a later
    /// response): the server is inconsistent.
    Inconsistent(String),
    /// The body grew beyond [`BlockwiseOptions::max_body_size`] (or Size2 announced more).
    TooLarge {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(e) => e.fmt(f),
            Self::Changed { restarts } => write!(
                f,
                "the resource changed during the block-wise transfer (ETag changed; gave up after {restarts} restart{})",
                if *restarts == 1 { "" } else { "s" }
            ),
            Self::Inconsistent(w) => write!(f, "block-wise transfer broken by the server: {w}"),
            Self::TooLarge { max } => write!(f, "the response body exceeds the {max}-byte limit"),
        }
    }
}

impl std::error::Error for BlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for BlockError {
    fn from(e: Error) -> Self {
        Self::Client(e)
    }
}

fn code_is(p: &Packet, code: ResponseType) -> bool {
    p.header.code == MessageClass::Response(code)
}

/// Sends `request` over `client`, block-wise as needed, and returns the response with the
/// whole body (Block1/Block2 removed from it). See the [module docs](self).
pub async fn send_blockwise(client: &Client, request: Packet, opts: &BlockwiseOptions) -> Result<Packet, BlockError> {
    let response = upload(client, &request, opts).await?;
    download(client, &request, response, opts).await
}

/// A request of the exchange: a copy of `base` with a fresh Message ID and token (each block
/// is its own exchange; the client assigns both).
fn fresh(base: &Packet) -> Packet {
    let mut p = base.clone();
    p.set_token(Vec::new());
    p
}

async fn upload(client: &Client, request: &Packet, opts: &BlockwiseOptions) -> Result<Packet, BlockError> {
    let mut szx = opts.szx.unwrap_or(MAX_SZX).min(MAX_SZX);
    let body = &request.payload;
    let mut first = request.clone();
    if let Some(s) = opts.szx {
        // Early negotiation (§2.4): ask for our block size in the first response.
        BlockOption::new(0, false, s).set_in(&mut first, CoapOption::Block2);
    }
    if body.len() <= 16 << szx {
        return Ok(client.send(first).await?);
    }
    let mut offset = 0usize;
    let mut renegotiated = false;
    loop {
        let size = 16usize << szx;
        let end = (offset + size).min(body.len());
        let more = end < body.len();
        let b1 = BlockOption::new((offset / size) as u32, more, szx);
        let mut req = fresh(&first);
        req.payload = body[offset..end].to_vec();
        b1.set_in(&mut req, CoapOption::Block1);
        if offset == 0 {
            req.add_option(CoapOption::Size1, uint(u32::try_from(body.len()).unwrap_or(u32::MAX)));
        }
        if more {
            // Block2 belongs to the request that gets the final response.
            req.clear_option(CoapOption::Block2);
        }
        let resp = client.send(req).await?;
        let echoed = match BlockOption::from_packet(&resp, CoapOption::Block1) {
            Some(Ok(b)) => Some(b),
            _ => None,
        };
        if code_is(&resp, ResponseType::RequestEntityTooLarge)
            && let Some(b) = echoed.filter(|b| b.szx < szx)
            && !renegotiated
        {
            renegotiated = true;
            szx = b.szx;
            offset = 0;
            continue;
        }
        if !more || !code_is(&resp, ResponseType::Continue) {
            return Ok(resp);
        }
        offset = end;
        if let Some(b) = echoed.filter(|b| b.szx < szx) {
            // The server's smaller size wins (§2.5); `offset` is a multiple of it.
            szx = b.szx;
        }
    }
}

async fn download(
    client: &Client,
    request: &Packet,
    first: Packet,
    opts: &BlockwiseOptions,
) -> Result<Packet, BlockError> {
    let mut first = first;
    let mut restarts = 0u32;
    'restart: loop {
        let b2 = match BlockOption::from_packet(&first, CoapOption::Block2) {
            None => return Ok(first),
            Some(Err(e)) => return Err(BlockError::Inconsistent(format!("Block2: {e}"))),
            Some(Ok(b)) => b,
        };
        if u8::from(first.header.code) >> 5 != 2 {
            return Ok(first);
        }
        if b2.num != 0 {
            return Err(BlockError::Inconsistent(format!("the first response is block {}, not 0", b2.num)));
        }
        if let Some(size2) = super::get_uint(&first, CoapOption::Size2)
            && size2 as usize > opts.max_body_size
        {
            return Err(BlockError::TooLarge { max: opts.max_body_size });
        }
        let etag = first.get_option(CoapOption::ETag).and_then(|l| l.front().cloned());
        let mut body = std::mem::take(&mut first.payload);
        let mut block = b2;
        check_block(&block, body.len(), 0)?;
        let fetch = first_method(request) == Some(RequestType::Fetch);
        let mut next_req = request.clone();
        next_req.clear_option(CoapOption::Block1);
        next_req.clear_option(CoapOption::Size1);
        next_req.clear_option(CoapOption::Observe);
        if !fetch {
            next_req.payload = Vec::new();
        }
        while block.more {
            let szx = block.szx;
            let want = BlockOption::new((body.len() / (16 << szx)) as u32, false, szx);
            let mut req = fresh(&next_req);
            want.set_in(&mut req, CoapOption::Block2);
            let resp = client.send(req).await?;
            if u8::from(resp.header.code) >> 5 != 2 {
                // The server gave up (e.g. 4.08 or 4.02): its answer, not a partial body.
                return Ok(resp);
            }
            let got_etag = resp.get_option(CoapOption::ETag).and_then(|l| l.front().cloned());
            if got_etag != etag {
                // Only a safe method may be sent again from the start.
                let safe = matches!(first_method(request), Some(RequestType::Get | RequestType::Fetch));
                if restarts >= opts.max_restarts || !safe {
                    return Err(BlockError::Changed { restarts });
                }
                restarts += 1;
                tracing::debug!(restarts, "block-wise: ETag changed, restarting the transfer");
                first = upload(client, &fresh(request), opts).await?;
                continue 'restart;
            }
            block = match BlockOption::from_packet(&resp, CoapOption::Block2) {
                Some(Ok(b)) => b,
                _ => return Err(BlockError::Inconsistent("a later response has no valid Block2 option".into())),
            };
            if block.szx > szx {
                return Err(BlockError::Inconsistent(format!(
                    "the block size grew from {} to {}",
                    16 << szx,
                    block.size()
                )));
            }
            if block.offset() != body.len() {
                return Err(BlockError::Inconsistent(format!(
                    "block {} starts at byte {}, expected byte {}",
                    block.num,
                    block.offset(),
                    body.len()
                )));
            }
            check_block(&block, resp.payload.len(), body.len())?;
            if body.len() + resp.payload.len() > opts.max_body_size {
                return Err(BlockError::TooLarge { max: opts.max_body_size });
            }
            body.extend_from_slice(&resp.payload);
        }
        first.payload = body;
        first.clear_option(CoapOption::Block2);
        first.clear_option(CoapOption::Size2);
        return Ok(first);
    }
}

/// A non-final block has exactly its size; no block is larger.
fn check_block(block: &BlockOption, len: usize, at: usize) -> Result<(), BlockError> {
    if len > block.size() || (block.more && len != block.size()) {
        return Err(BlockError::Inconsistent(format!(
            "block {} at byte {at} has {len} bytes, its size is {}{}",
            block.num,
            block.size(),
            if block.more { " and more follow" } else { "" }
        )));
    }
    Ok(())
}

fn first_method(p: &Packet) -> Option<RequestType> {
    match p.header.code {
        MessageClass::Request(m) => Some(m),
        _ => None,
    }
}
