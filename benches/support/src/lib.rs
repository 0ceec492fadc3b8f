//! Fixtures shared by the criterion benches of the `coaps` package (`benches/*.rs`):
//!
//! * [`Mode`]: the handshake modes measured, each with this engine's suite and OpenSSL's.
//! * [`ours::Harness`]: one long-lived server [`Endpoint`](coaps_dtls::Endpoint) and fresh
//!   clients, handshaking in memory on one thread.
//! * [`ossl::Harness`]: the same with two OpenSSL `SslStream`s over an in-memory datagram pipe.
//! * [`Wire`]: datagram and byte counters for both directions.
//! * [`CountingAlloc`]: a global allocator that counts heap allocations.
//!
//! The benches live in the root package, whose workspace lints forbid `unsafe`; the two
//! things here that need it (the allocator and OpenSSL's `SSL_set_session`) are why this is a
//! crate and not a module.

use std::fmt;

pub mod alloc;
pub mod cpu;
pub mod heap;
pub mod ossl;
pub mod ours;
pub mod report;

pub use alloc::CountingAlloc;

/// Where the certificates and keys of the engine's tests are.
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/coaps-dtls/tests/data");

/// Path of a file in [`DATA`].
pub fn data_path(name: &str) -> String {
    format!("{DATA}/{name}")
}

/// Reads a file from [`DATA`].
pub fn read_data(name: &str) -> Vec<u8> {
    std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("{}: {e}", data_path(name)))
}

/// The PSK identity both sides use.
pub const PSK_IDENTITY: &[u8] = b"Client_identity";
/// The PSK both sides use (16 bytes, as in the engine's tests).
pub const PSK_KEY: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
/// UDP payload limit on both stacks (the engine's default, RFC 7252's guidance for CoAP).
pub const MTU: usize = 1152;

/// A handshake mode: key exchange plus cipher suite, named the same on both stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// TLS_PSK_WITH_AES_128_CCM_8.
    PskCcm8,
    /// TLS_PSK_WITH_CHACHA20_POLY1305_SHA256.
    PskChaCha,
    /// TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 (P-256).
    EcdhePskChaCha,
    /// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, P-256 X.509 server certificate, verified by the client.
    EcdsaCcm8,
}

impl Mode {
    /// Every mode, cheapest first.
    pub const ALL: [Mode; 4] = [Mode::PskCcm8, Mode::PskChaCha, Mode::EcdhePskChaCha, Mode::EcdsaCcm8];

    /// OpenSSL's name of the suite (also accepted by `coaps_dtls::suites::by_name`).
    pub fn openssl_cipher(self) -> &'static str {
        match self {
            Mode::PskCcm8 => "PSK-AES128-CCM8",
            Mode::PskChaCha => "PSK-CHACHA20-POLY1305",
            Mode::EcdhePskChaCha => "ECDHE-PSK-CHACHA20-POLY1305",
            Mode::EcdsaCcm8 => "ECDHE-ECDSA-AES128-CCM8",
        }
    }

    /// Whether the mode authenticates with the PSK (otherwise with the server certificate).
    pub fn uses_psk(self) -> bool {
        !matches!(self, Mode::EcdsaCcm8)
    }

    /// A short label for bench IDs and tables.
    pub fn label(self) -> &'static str {
        match self {
            Mode::PskCcm8 => "psk-ccm8",
            Mode::PskChaCha => "psk-chacha20",
            Mode::EcdhePskChaCha => "ecdhe-psk-chacha20",
            Mode::EcdsaCcm8 => "ecdhe-ecdsa-ccm8",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// UDP datagrams and payload bytes carried in each direction during one handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// Datagrams client → server.
    pub c2s_datagrams: usize,
    /// UDP payload bytes client → server.
    pub c2s_bytes: usize,
    /// Datagrams server → client.
    pub s2c_datagrams: usize,
    /// UDP payload bytes server → client.
    pub s2c_bytes: usize,
    /// Size of the first ClientHello datagram.
    pub client_hello_bytes: usize,
    /// Size of the HelloVerifyRequest datagram (0 if there was none).
    pub hello_verify_request_bytes: usize,
    /// Client flights: runs of consecutive client → server datagrams (a change of direction
    /// starts a new flight), post-handshake ones (ACK, …) included.
    pub c2s_flights: usize,
    /// Server flights, counted the same way (NewSessionTicket, ACK included).
    pub s2c_flights: usize,
    /// Round trips until the client could send application data: server flights the client
    /// had received when it reported `Connected` (a round trip = client flight + server
    /// flight). Set by the harness.
    pub round_trips: usize,
    /// With a request after the handshake ([`ours::Harness::exchange`]): server flights the
    /// client had received when it had the answer (the answer's datagram counts with the
    /// flight it leaves with). 0 without one. Set by the harness.
    pub answer_round_trips: usize,
    last_c2s: Option<bool>,
}

impl Wire {
    /// Datagrams in both directions.
    pub fn datagrams(&self) -> usize {
        self.c2s_datagrams + self.s2c_datagrams
    }
    /// Bytes in both directions.
    pub fn bytes(&self) -> usize {
        self.c2s_bytes + self.s2c_bytes
    }
    /// Flights in both directions.
    pub fn flights(&self) -> usize {
        self.c2s_flights + self.s2c_flights
    }
    pub(crate) fn c2s(&mut self, len: usize) {
        if self.c2s_datagrams == 0 {
            self.client_hello_bytes = len;
        }
        if self.last_c2s != Some(true) {
            self.c2s_flights += 1;
            self.last_c2s = Some(true);
        }
        self.c2s_datagrams += 1;
        self.c2s_bytes += len;
    }
    pub(crate) fn s2c(&mut self, len: usize) {
        if self.s2c_datagrams == 0 {
            self.hello_verify_request_bytes = len;
        }
        if self.last_c2s != Some(false) {
            self.s2c_flights += 1;
            self.last_c2s = Some(false);
        }
        self.s2c_datagrams += 1;
        self.s2c_bytes += len;
    }
}

/// What one in-memory handshake did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether both sides report the handshake as abbreviated (session resumption).
    pub resumed: bool,
    /// Traffic.
    pub wire: Wire,
}
