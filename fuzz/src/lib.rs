//! Fuzz targets for `coaps-dtls`, as plain functions over bytes.
//!
//! Each `fuzz_targets/<name>.rs` is a thin wrapper: a libFuzzer entry point under cargo-fuzz
//! (`--cfg fuzzing`), or a plain binary replaying files otherwise ([`replay_main`]). Keeping the
//! logic here lets the corpus generator ([`scenario`]) and the replay binaries share the exact
//! configurations, seeds and input encoding the endpoint targets use, so recorded handshakes
//! replay deterministically into a fresh endpoint and fuzzing starts deep in the handshake.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use coaps_dtls::cert::{self, PinnedKeys, WebPkiVerifier};
use coaps_dtls::CookieConfig;
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, Endpoint, Event, PeerVerifier, Psk, ServerConfig, StaticPsks,
};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub mod coap;
pub mod dtls13;
pub mod memo;
pub mod scenario;
pub mod targets;
pub mod targets13;

macro_rules! data_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/coaps-dtls/tests/data/", $name))
    };
}

/// Seed of the server endpoint in `server_endpoint` (and in the corpus generator).
pub const SERVER_SEED: u64 = 0x5e7e_5eed;
/// Seed of the client endpoint in `client_endpoint` (and in the corpus generator).
pub const CLIENT_SEED: u64 = 0xc11e_5eed;
/// Server name the client checks the certificate against.
pub const SERVER_NAME: &str = "localhost";

/// The server's address.
pub fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().expect("literal")
}

/// Peers a script can send from, by index (`ctl & 3`). On the server side index 0 is the
/// recorded client; on the client side index 0 is the server.
pub fn peer(side_is_server: bool, index: u8) -> SocketAddr {
    let s = match (side_is_server, index & 3) {
        (true, 0) => "192.0.2.2:40000",
        (false, 0) => return server_addr(),
        (_, 1) => "192.0.2.3:40001",
        (_, 2) => "[2001:db8::7]:40002",
        _ => "192.0.2.2:40003",
    };
    s.parse().expect("literal")
}

fn psk() -> Psk {
    Psk::new(b"Client_identity".to_vec(), (1..=16).collect::<Vec<u8>>()).expect("psk")
}

fn signing_key(pem: &[u8]) -> Arc<EcdsaP256SigningKey> {
    let sk = cert::load_private_key_pem(pem).expect("key");
    let bytes: [u8; 32] = sk.to_bytes().into();
    Arc::new(EcdsaP256SigningKey::from_bytes(&bytes).expect("key"))
}

/// One WebPKI verifier for every configuration: its signature cache then outlives a single
/// execution, as it outlives a single handshake in a server.
fn webpki() -> PeerVerifier {
    static V: OnceLock<PeerVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let roots = cert::load_certs_pem(data_file!("ca.crt")).expect("ca");
        PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).expect("roots")))
    })
    .clone()
}

fn certified(cert_pem: &[u8], key_pem: &[u8]) -> CertifiedKey {
    CertifiedKey {
        chain: cert::load_certs_pem(cert_pem).expect("certs"),
        key: Arc::new(memo::MemoSigner::new(signing_key(key_pem))),
    }
}

fn server_certified() -> CertifiedKey {
    static K: OnceLock<CertifiedKey> = OnceLock::new();
    K.get_or_init(|| certified(data_file!("server.crt"), data_file!("server.key"))).clone()
}

fn client_certified() -> CertifiedKey {
    static K: OnceLock<CertifiedKey> = OnceLock::new();
    K.get_or_init(|| certified(data_file!("client.crt"), data_file!("client.key"))).clone()
}

/// The common configuration of every endpoint target: defaults, with the memoizing provider
/// ([`memo::MemoCrypto`]) over the default one.
fn common() -> CommonConfig {
    CommonConfig { provider: memo::MemoCrypto::shared(), ..CommonConfig::default() }
}

/// A configuration per flag byte, built once: parsing keys and certificates and deriving
/// public keys would otherwise cost more than many executions.
pub(crate) fn once_per_flags<T>(
    cache: &'static [OnceLock<Arc<T>>; 256],
    flags: u8,
    build: impl FnOnce(u8) -> T,
) -> Arc<T> {
    cache[usize::from(flags)].get_or_init(|| Arc::new(build(flags))).clone()
}

/// Server configuration selected by the first input byte of `server_endpoint`:
/// bit 0 switches the cookie exchange off, bit 1 asks for an (optional) client certificate,
/// bit 2 offers raw public keys. PSK and certificate suites are always both enabled.
pub fn server_config(flags: u8) -> Arc<ServerConfig> {
    static C: [OnceLock<Arc<ServerConfig>>; 256] = [const { OnceLock::new() }; 256];
    once_per_flags(&C, flags, |flags| ServerConfig {
        common: common(),
        psks: Some(Arc::new(StaticPsks(vec![psk()]))),
        cert: Some(server_certified()),
        raw_public_key: flags & 4 != 0,
        client_auth: if flags & 2 != 0 { ClientAuth::Optional(webpki()) } else { ClientAuth::None },
        cookie: if flags & 1 != 0 { None } else { Some(CookieConfig::default()) },
        // Small limits, so the fuzzer can reach them with few peers.
        max_connections: 3,
        max_handshakes: 2,
        ..ServerConfig::default()
    })
}

/// Client configuration selected by the first input byte of `client_endpoint`:
/// bits 0-1: 0 PSK, 1 X.509 (WebPKI), 2 raw public key (pinned), 3 X.509 with a client
/// certificate; in PSK mode, bit 2 restricts the suites to ECDHE_PSK, bit 3 to plain PSK.
pub fn client_config(flags: u8) -> Arc<ClientConfig> {
    static C: [OnceLock<Arc<ClientConfig>>; 256] = [const { OnceLock::new() }; 256];
    once_per_flags(&C, flags, |flags| {
        let mut common = common();
        let by = |n: &str| *coaps_dtls::suites::by_name(n).expect("suite");
        if flags & 3 != 0 {
            // Certificate modes keep every suite: the PSK ones are left out for lack of a PSK.
        } else if flags & 4 != 0 {
            common.suites = vec![by("TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256")];
        } else if flags & 8 != 0 {
            common.suites = vec![by("TLS_PSK_WITH_AES_128_CCM_8")];
        }
        let mut cfg = ClientConfig { common, ..ClientConfig::default() };
        match flags & 3 {
            0 => cfg.psk = Some(psk()),
            1 => cfg.verifier = Some(webpki()),
            2 => {
                let spki = server_certified().key.public_key_spki();
                cfg.verifier = Some(PeerVerifier::Pinned(Arc::new(PinnedKeys::new(vec![spki]))));
            }
            _ => {
                cfg.verifier = Some(webpki());
                cfg.client_cert = Some(client_certified());
            }
        }
        cfg
    })
}

/// One step of an endpoint script: advance the clock, then deliver a datagram from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// Peer index (see [`peer`]).
    pub peer: u8,
    /// How far the clock moves before the datagram.
    pub advance: Duration,
    /// The datagram.
    pub datagram: &'a [u8],
}

/// Time steps are quadratic so both sub-second reordering and the 60 s cookie lifetime and
/// retransmission ceiling are reachable with one byte.
fn advance_of(steps: u8) -> Duration {
    Duration::from_millis(25 * u64::from(steps) * u64::from(steps))
}

/// Decodes a script: repeated `ctl:u8 len:u16be bytes[len]` (a short tail is taken as is).
/// `ctl & 3` is the peer, `ctl >> 2` the clock step.
pub fn ops(mut data: &[u8]) -> impl Iterator<Item = Op<'_>> {
    std::iter::from_fn(move || {
        let (&ctl, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let n = len.min(rest.len());
        let (datagram, rest) = rest.split_at(n);
        data = rest;
        Some(Op { peer: ctl & 3, advance: advance_of(ctl >> 2), datagram })
    })
}

/// Appends one script step (the inverse of [`ops`]); `steps` is the clock step (< 64).
pub fn encode_op(out: &mut Vec<u8>, peer: u8, steps: u8, datagram: &[u8]) {
    out.push((steps.min(63) << 2) | (peer & 3));
    let len = u16::try_from(datagram.len()).expect("datagram under 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(datagram);
}

/// Drains an endpoint, checking the invariants every output must meet: no datagram over the
/// MTU, and application data is echoed back so the send path is exercised too.
pub fn drain(ep: &mut Endpoint, mtu: usize) {
    while let Some(t) = ep.poll_transmit() {
        assert!(t.payload.len() <= mtu, "datagram of {} bytes over the MTU {mtu}", t.payload.len());
    }
    let mut echo = Vec::new();
    while let Some((peer, ev)) = ep.poll_event() {
        if let Event::ApplicationData(d) = ev {
            echo.push((peer, d));
        }
    }
    for (peer, d) in echo {
        let _ = ep.send(peer, &d);
        while let Some(t) = ep.poll_transmit() {
            assert!(t.payload.len() <= mtu, "datagram of {} bytes over the MTU {mtu}", t.payload.len());
        }
    }
}

/// Lets every timer of `ep` run out (at most 64 firings): retransmission budgets must end,
/// not loop.
pub fn settle(ep: &mut Endpoint, mut now: Instant, mtu: usize) {
    for _ in 0..64 {
        let Some(t) = ep.poll_timeout() else { break };
        now = now.max(t);
        ep.handle_timeout(now);
        drain(ep, mtu);
    }
}

/// Feeds a client endpoint that has called `connect` a script of datagrams from the server and
/// three strangers; it must never grow an association it did not start. Then lets its timers
/// run out.
pub fn run_client_script(ep: &mut Endpoint, mut now: Instant, script: &[u8]) {
    let mtu = coaps_dtls::CommonConfig::default().mtu;
    drain(ep, mtu);
    for op in ops(script) {
        now += op.advance;
        ep.handle_timeout(now);
        drain(ep, mtu);
        ep.handle_datagram(now, peer(false, op.peer), op.datagram);
        drain(ep, mtu);
        assert!(ep.connection_count() <= 1, "a client endpoint grew an association it did not start");
    }
    settle(ep, now, mtu);
}

/// Runs `f` over every file named on the command line (directories are walked one level), or
/// over stdin when none is named: corpus replay without libFuzzer, e.g. on a stable toolchain.
pub fn replay_main(f: fn(&[u8])) {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if args.is_empty() {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).expect("stdin");
        f(&buf);
        println!("1 input ran");
        return;
    }
    let mut n = 0usize;
    for a in args {
        let p = std::path::Path::new(&a);
        let files: Vec<std::path::PathBuf> = if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(p).expect("dir").filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            v
        } else {
            vec![p.to_path_buf()]
        };
        for file in files.into_iter().filter(|f| f.is_file()) {
            f(&std::fs::read(&file).expect("read"));
            n += 1;
        }
    }
    println!("{n} inputs ran");
}

/// A fresh server endpoint as `server_endpoint` builds it.
pub fn new_server(flags: u8, now: Instant) -> Endpoint {
    Endpoint::server(server_config(flags), SeededRng::from_seed_u64(SERVER_SEED), now)
}

/// A fresh client endpoint connected to [`server_addr`] as `client_endpoint` builds it.
pub fn new_client(flags: u8, now: Instant) -> Endpoint {
    let mut ep = Endpoint::client(SeededRng::from_seed_u64(CLIENT_SEED));
    ep.connect(now, server_addr(), client_config(flags), SERVER_NAME, None).expect("connect");
    ep
}
