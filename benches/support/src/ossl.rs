//! OpenSSL (through the `openssl` crate), client and server on one thread: two `SslStream`s
//! over an in-memory datagram pipe, configured to match the engine as closely as OpenSSL
//! allows: DTLS 1.2 only, the same single suite, P-256 only, the same MTU, cookie exchange on
//! (HMAC-SHA-256 cookies), session-ID resumption (tickets off, except with [`ticket_contexts`]).

use crate::{MTU, Mode, Outcome, PSK_IDENTITY, PSK_KEY, Wire, data_path};
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, ShutdownState, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslOptions, SslRef,
    SslSession, SslSessionCacheMode, SslStream, SslVerifyMode, SslVersion,
};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// Both directions of the pipe, and what went through it.
#[derive(Debug, Default)]
pub struct Pipe {
    c2s: VecDeque<Vec<u8>>,
    s2c: VecDeque<Vec<u8>>,
    /// Traffic so far.
    pub wire: Wire,
}

/// One end of a [`Pipe`]. Each `write` is one datagram, each `read` returns one whole
/// datagram (truncated to the buffer, as a UDP socket would), and an empty queue reads as
/// `WouldBlock`.
#[derive(Debug)]
pub struct End {
    pipe: Rc<RefCell<Pipe>>,
    client: bool,
}

impl End {
    /// The two ends of a fresh pipe: (client, server).
    pub fn pair() -> (End, End, Rc<RefCell<Pipe>>) {
        let pipe = Rc::new(RefCell::new(Pipe::default()));
        (End { pipe: pipe.clone(), client: true }, End { pipe: pipe.clone(), client: false }, pipe)
    }

    /// Queues a datagram for this end to read (as if the peer had sent it), uncounted.
    pub fn inject(&self, datagram: Vec<u8>) {
        let mut p = self.pipe.borrow_mut();
        if self.client { p.s2c.push_back(datagram) } else { p.c2s.push_back(datagram) }
    }

    /// Takes the next datagram this end has written.
    pub fn take_sent(&self) -> Option<Vec<u8>> {
        let mut p = self.pipe.borrow_mut();
        if self.client { p.c2s.pop_front() } else { p.s2c.pop_front() }
    }
}

impl Read for End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut p = self.pipe.borrow_mut();
        let queue = if self.client { &mut p.s2c } else { &mut p.c2s };
        let Some(d) = queue.pop_front() else { return Err(io::ErrorKind::WouldBlock.into()) };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for End {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut p = self.pipe.borrow_mut();
        if self.client {
            p.wire.c2s(buf.len());
            p.c2s.push_back(buf.to_vec());
        } else {
            p.wire.s2c(buf.len());
            p.s2c.push_back(buf.to_vec());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const COOKIE_SECRET: [u8; 32] = [0x42; 32];

/// HMAC-SHA-256 (RFC 2104) over `parts`, from OpenSSL's SHA-256: the cookie MAC, as the
/// engine's (which also covers the peer address; a memory BIO has none).
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = openssl::sha::Sha256::new();
    inner.update(&ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = openssl::sha::Sha256::new();
    outer.update(&opad);
    outer.update(&inner.finish());
    outer.finish()
}

/// A cookie as OpenSSL's own examples make them: a MAC over the peer's address. A memory pipe
/// has no address, so a fixed one stands in (the client random is not yet set when OpenSSL's
/// stateful server asks for the cookie).
fn cookie_for(_ssl: &SslRef) -> [u8; 16] {
    let mac = hmac_sha256(&COOKIE_SECRET, &[&[4, 192, 0, 2, 2], &40000u16.to_be_bytes()]);
    let mut c = [0u8; 16];
    c.copy_from_slice(&mac[..16]);
    c
}

fn common(mode: Mode, session_cache: bool) -> Result<SslContextBuilder, ErrorStack> {
    let mut b = SslContext::builder(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(mode.openssl_cipher())?;
    b.set_groups_list("P-256")?;
    b.set_sigalgs_list("ECDSA+SHA256")?;
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_QUERY_MTU);
    b.set_session_cache_mode(if session_cache { SslSessionCacheMode::BOTH } else { SslSessionCacheMode::OFF });
    Ok(b)
}

/// Server and client contexts for `mode`; `cookies` switches the cookie exchange.
pub fn contexts(mode: Mode, cookies: bool) -> Result<(SslContext, SslContext), ErrorStack> {
    contexts_with(mode, cookies, true)
}

/// [`contexts`], with `session_cache` switching the session caches (both sides) on or off.
pub fn contexts_with(mode: Mode, cookies: bool, session_cache: bool) -> Result<(SslContext, SslContext), ErrorStack> {
    let (server, client) = builders(mode, cookies, session_cache)?;
    Ok((server.build(), client.build()))
}

/// Contexts that resume by RFC 5077 ticket only: the server issues OpenSSL's own
/// (stateless) tickets and keeps no session cache; cookie exchange on.
pub fn ticket_contexts(mode: Mode) -> Result<(SslContext, SslContext), ErrorStack> {
    let (mut server, mut client) = builders(mode, true, true)?;
    server.clear_options(SslOptions::NO_TICKET);
    server.set_session_cache_mode(SslSessionCacheMode::OFF);
    client.clear_options(SslOptions::NO_TICKET);
    Ok((server.build(), client.build()))
}

fn builders(
    mode: Mode,
    cookies: bool,
    session_cache: bool,
) -> Result<(SslContextBuilder, SslContextBuilder), ErrorStack> {
    let mut server = common(mode, session_cache)?;
    let mut client = common(mode, session_cache)?;
    server.set_session_id_context(b"coaps-bench")?;
    if cookies {
        server.set_options(SslOptions::COOKIE_EXCHANGE);
        server.set_cookie_generate_cb(|ssl, out| {
            let c = cookie_for(ssl);
            out[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        });
        server.set_cookie_verify_cb(|ssl, cookie| {
            let c = cookie_for(ssl);
            // Constant time, as a real server's check must be.
            cookie.len() == c.len() && openssl::memcmp::eq(cookie, &c)
        });
    }
    if mode.uses_psk() {
        client.set_psk_client_callback(|_, _hint, identity, psk| {
            identity[..PSK_IDENTITY.len()].copy_from_slice(PSK_IDENTITY);
            identity[PSK_IDENTITY.len()] = 0;
            psk[..PSK_KEY.len()].copy_from_slice(&PSK_KEY);
            Ok(PSK_KEY.len())
        });
        server.set_psk_server_callback(|_, identity, psk| {
            if identity != Some(PSK_IDENTITY) {
                return Ok(0);
            }
            psk[..PSK_KEY.len()].copy_from_slice(&PSK_KEY);
            Ok(PSK_KEY.len())
        });
    } else {
        server.set_certificate_chain_file(data_path("server.crt"))?;
        server.set_private_key_file(data_path("server.key"), SslFiletype::PEM)?;
        server.check_private_key()?;
        client.set_ca_file(data_path("ca.crt"))?;
        client.set_verify(SslVerifyMode::PEER);
    }
    Ok((server, client))
}

/// An OpenSSL server context and client context; each [`Harness::handshake`] makes a fresh
/// `Ssl` on each side.
pub struct Harness {
    server: SslContext,
    client: SslContext,
    mode: Mode,
    session: Option<SslSession>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("mode", &self.mode)
            .field("primed", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Contexts for `mode`, cookie exchange on.
    pub fn new(mode: Mode) -> Self {
        Self::with_cookies(mode, true)
    }

    /// Contexts for `mode`, cookie exchange as asked.
    pub fn with_cookies(mode: Mode, cookies: bool) -> Self {
        Self::with_options(mode, cookies, true)
    }

    /// Contexts for `mode`, cookie exchange and session caches as asked.
    pub fn with_options(mode: Mode, cookies: bool, session_cache: bool) -> Self {
        let (server, client) = contexts_with(mode, cookies, session_cache).unwrap_or_else(|e| panic!("{mode}: {e}"));
        Self { server, client, mode, session: None }
    }

    /// Contexts for `mode` that resume by ticket only ([`ticket_contexts`]).
    pub fn with_tickets(mode: Mode) -> Self {
        let (server, client) = ticket_contexts(mode).unwrap_or_else(|e| panic!("{mode}: {e}"));
        Self { server, client, mode, session: None }
    }

    /// The server context.
    pub fn server_context(&self) -> &SslContext {
        &self.server
    }

    /// A server-side `Ssl` as the harness configures it.
    pub fn server_ssl(&self) -> Ssl {
        let mut ssl = Ssl::new(&self.server).expect("Ssl::new");
        ssl.set_accept_state();
        ssl.set_mtu(MTU as u32).expect("mtu");
        ssl
    }

    /// Runs one full handshake and keeps its session for resumed handshakes.
    pub fn prime_session(&mut self) {
        let (outcome, session) = self.run(None);
        assert!(!outcome.resumed);
        self.session = Some(session);
    }

    /// One complete handshake between fresh `Ssl`s; with `resume`, the client offers the
    /// session of [`Harness::prime_session`].
    ///
    /// # Panics
    /// If the handshake fails, or a resumption was asked for and not granted.
    pub fn handshake(&mut self, resume: bool) -> Outcome {
        let session = if resume { Some(self.session.clone().expect("prime_session first")) } else { None };
        let (outcome, _) = self.run(session);
        assert_eq!(outcome.resumed, resume, "{}: resumption not as asked", self.mode);
        outcome
    }

    /// One complete full handshake between fresh `Ssl`s; the client is dropped and the
    /// server's `SslStream` returned, established, with its pipe emptied (queue capacity given
    /// back), as a server keeps an idle association.
    ///
    /// # Panics
    /// If the handshake fails.
    pub fn establish(&mut self) -> SslStream<End> {
        let (_, _, server) = self.drive(None);
        {
            let mut p = server.get_ref().pipe.borrow_mut();
            p.c2s = VecDeque::new();
            p.s2c = VecDeque::new();
        }
        server
    }

    fn run(&mut self, resume: Option<SslSession>) -> (Outcome, SslSession) {
        let (outcome, mut client, mut server) = self.drive(resume);
        // Freeing an `SSL` that has not shut down evicts its session from the cache and marks
        // it not resumable (`ssl_clear_bad_session`); mark the shutdown done, without sending
        // close_notify, as the engine harness forgets its association without one.
        client.set_shutdown(ShutdownState::SENT | ShutdownState::RECEIVED);
        server.set_shutdown(ShutdownState::SENT | ShutdownState::RECEIVED);
        let session = client.ssl().session().expect("session").to_owned();
        (outcome, session)
    }

    fn drive(&mut self, resume: Option<SslSession>) -> (Outcome, SslStream<End>, SslStream<End>) {
        let (c_end, s_end, pipe) = End::pair();
        let mut cssl = Ssl::new(&self.client).expect("Ssl::new");
        cssl.set_connect_state();
        cssl.set_mtu(MTU as u32).expect("mtu");
        if !self.mode.uses_psk() {
            cssl.param_mut().set_host("localhost").expect("host");
        }
        if let Some(s) = &resume {
            set_session(&mut cssl, s).expect("set_session");
        }
        let mut client = SslStream::new(cssl, c_end).expect("SslStream");
        let mut server = SslStream::new(self.server_ssl(), s_end).expect("SslStream");
        let (mut c_done, mut s_done) = (false, false);
        let mut round_trips = 0;
        for _ in 0..32 {
            if !c_done {
                c_done = step(&mut client, "client", self.mode);
                if c_done {
                    round_trips = pipe.borrow().wire.s2c_flights;
                }
            }
            if !s_done {
                s_done = step(&mut server, "server", self.mode);
            }
            if c_done && s_done {
                break;
            }
        }
        assert!(c_done && s_done, "{}: OpenSSL handshake did not complete", self.mode);
        let resumed = client.ssl().session_reused() && server.ssl().session_reused();
        let mut wire = pipe.borrow().wire;
        wire.round_trips = round_trips;
        (Outcome { resumed, wire }, client, server)
    }
}

/// Advances one side; `true` once its handshake is complete.
fn step(s: &mut SslStream<End>, who: &str, mode: Mode) -> bool {
    match s.do_handshake() {
        Ok(()) => true,
        Err(e) if e.code() == ErrorCode::WANT_READ => false,
        Err(e) => panic!("{mode}: OpenSSL {who}: {e}"),
    }
}

/// `SSL_set_session`, which the `openssl` crate marks unsafe because the session must come
/// from a context compatible with the `Ssl`'s.
fn set_session(ssl: &mut SslRef, session: &SslSession) -> Result<(), ErrorStack> {
    // SAFETY: every session passed here was made by a handshake of this harness's client
    // context, the context `ssl` was created from.
    #[allow(unsafe_code)]
    unsafe {
        ssl.set_session(session)
    }
}
