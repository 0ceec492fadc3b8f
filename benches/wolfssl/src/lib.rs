//! DTLS 1.3 handshakes of the coaps engine beside wolfSSL 5.9.4, all in one process and on one
//! thread, datagrams handed over in memory (see `benches/handshake13.rs`).
//!
//! * [`wolf`]: wolfSSL client and server connections over in-memory datagram queues (wolfSSL's
//!   IO callbacks), through a hand-written [`ffi`] to the C library that `build.rs` links.
//! * [`coaps`]: the engine's client and server as [`Peer`]s, so either can face a wolfSSL one.
//! * [`handshake`]: drives a client and a server [`Peer`] to completion.
//!
//! A crate of its own, outside the workspace, so that CI and workspace builds never compile
//! wolfSSL; `unsafe` is confined to [`ffi`] and [`wolf`] (the C calls), as in `benches/support`.

use coaps_dtls::CipherSuite;
use std::ffi::CStr;

pub mod coaps;
pub mod ffi;
pub mod wolf;

pub use coaps_bench_support::{MTU, PSK_IDENTITY, PSK_KEY, read_data};

/// The DTLS 1.3 cipher suite both stacks offer (and so negotiate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite13 {
    /// TLS_CHACHA20_POLY1305_SHA256: the engine's default and the suite of `benches/handshake.rs`'s
    /// `dtls13-*` rows.
    ChaCha20,
    /// TLS_AES_128_GCM_SHA256.
    Aes128Gcm,
}

impl Suite13 {
    /// `COAPS_BENCH_SUITE13=aes128gcm` selects AES-128-GCM; anything else (or unset) ChaCha20.
    pub fn from_env() -> Self {
        match std::env::var("COAPS_BENCH_SUITE13").as_deref() {
            Ok("aes128gcm" | "aes" | "TLS_AES_128_GCM_SHA256") => Suite13::Aes128Gcm,
            _ => Suite13::ChaCha20,
        }
    }
    /// The engine's code point.
    pub fn coaps(self) -> CipherSuite {
        match self {
            Suite13::ChaCha20 => CipherSuite::TLS_CHACHA20_POLY1305_SHA256,
            Suite13::Aes128Gcm => CipherSuite::TLS_AES_128_GCM_SHA256,
        }
    }
    /// wolfSSL's name (for `wolfSSL_CTX_set_cipher_list` and its PSK callbacks).
    pub fn wolfssl(self) -> &'static CStr {
        match self {
            Suite13::ChaCha20 => c"TLS13-CHACHA20-POLY1305-SHA256",
            Suite13::Aes128Gcm => c"TLS13-AES128-GCM-SHA256",
        }
    }
    /// The IANA code point as wolfSSL's `wolfSSL_get_current_cipher_suite` reports it
    /// (`0x13nn`).
    pub fn code(self) -> u16 {
        match self {
            Suite13::ChaCha20 => 0x1303,
            Suite13::Aes128Gcm => 0x1301,
        }
    }
}

/// How the server authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// ECDHE (P-256) with the P-256 ECDSA server certificate of `crates/coaps-dtls/tests/data`,
    /// verified by the client against `ca.crt` for the name `localhost`.
    Cert,
    /// External PSK ([`PSK_IDENTITY`], [`PSK_KEY`]) with ECDHE (psk_dhe_ke, P-256).
    PskDhe,
}

/// One side of a handshake, fed and drained one datagram at a time.
pub trait Peer {
    /// Hands over one datagram from the other side.
    fn deliver(&mut self, datagram: &[u8]);
    /// Processes what was delivered (or starts, for a client that has sent nothing yet) and
    /// returns the next datagram to send, if any.
    fn transmit(&mut self) -> Option<Vec<u8>>;
    /// `Some(resumed)` once the handshake completed on this side.
    fn connected(&mut self) -> Option<bool>;
}

/// Datagrams and bytes of one handshake, both directions, and flights (runs of datagrams in
/// one direction, the post-handshake ACK and NewSessionTicket included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams client → server.
    pub c2s_datagrams: usize,
    /// Bytes client → server.
    pub c2s_bytes: usize,
    /// Datagrams server → client.
    pub s2c_datagrams: usize,
    /// Bytes server → client.
    pub s2c_bytes: usize,
    /// Flights in both directions.
    pub flights: usize,
    /// Whether both sides report a resumed handshake.
    pub resumed: bool,
}

/// Runs `client` and `server` until nothing moves any more, then checks that both completed.
///
/// # Panics
/// If either side did not report the handshake as complete.
pub fn handshake(client: &mut impl Peer, server: &mut impl Peer) -> Traffic {
    let mut t = Traffic::default();
    let mut last_c2s = None;
    for _ in 0..64 {
        let mut moved = false;
        while let Some(d) = client.transmit() {
            if last_c2s != Some(true) {
                t.flights += 1;
                last_c2s = Some(true);
            }
            t.c2s_datagrams += 1;
            t.c2s_bytes += d.len();
            server.deliver(&d);
            moved = true;
        }
        while let Some(d) = server.transmit() {
            if last_c2s != Some(false) {
                t.flights += 1;
                last_c2s = Some(false);
            }
            t.s2c_datagrams += 1;
            t.s2c_bytes += d.len();
            client.deliver(&d);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    match (client.connected(), server.connected()) {
        (Some(c), Some(s)) => t.resumed = c && s,
        (c, s) => panic!("handshake did not complete: client {c:?}, server {s:?}, {t:?}"),
    }
    t
}
