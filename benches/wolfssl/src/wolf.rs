//! wolfSSL DTLS 1.3 client and server connections over in-memory datagram queues.
//!
//! A [`Ctx`] (`WOLFSSL_CTX`) lives as long as a bench group; each handshake makes a new
//! [`Conn`] (`WOLFSSL`) per side, as a server does per client. wolfSSL's IO callbacks read one
//! queued datagram per call and queue each datagram wolfSSL sends, so nothing touches a socket.
//! Non-blocking: a callback with nothing queued says "want read", and wolfSSL returns
//! `WOLFSSL_ERROR_WANT_READ` from `wolfSSL_connect`/`accept`/`read` until more is delivered.

#![allow(unsafe_code)]

use crate::ffi::*;
use crate::{Auth, MTU, PSK_IDENTITY, PSK_KEY, Peer, Suite13, read_data};
use std::collections::VecDeque;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::marker::PhantomData;
use std::sync::Once;

fn check(what: &str, rc: c_int) {
    assert_eq!(rc, WOLFSSL_SUCCESS, "{what} returned {rc}");
}

/// Loads a PEM file of the engine's test data into a `WOLFSSL_CTX` through `f`.
fn load_pem(
    ctx: *mut WOLFSSL_CTX,
    name: &str,
    f: unsafe extern "C" fn(*mut WOLFSSL_CTX, *const u8, std::ffi::c_long, c_int) -> c_int,
) {
    let pem = read_data(name);
    // SAFETY: `ctx` is a live context; the buffer is valid for `pem.len()` bytes during the call
    // and wolfSSL copies what it keeps.
    let rc = unsafe { f(ctx, pem.as_ptr(), pem.len() as std::ffi::c_long, WOLFSSL_FILETYPE_PEM) };
    check(name, rc);
}

/// A `WOLFSSL_CTX` for one role, authentication and suite.
#[derive(Debug)]
pub struct Ctx {
    ptr: *mut WOLFSSL_CTX,
    server: bool,
    auth: Auth,
}

impl Ctx {
    /// A DTLS 1.3-only client context.
    pub fn client(auth: Auth, suite: Suite13) -> Self {
        Self::new(false, auth, suite)
    }

    /// A DTLS 1.3-only server context.
    pub fn server(auth: Auth, suite: Suite13) -> Self {
        Self::new(true, auth, suite)
    }

    fn new(server: bool, auth: Auth, suite: Suite13) -> Self {
        static INIT: Once = Once::new();
        // SAFETY: wolfSSL_Init has no preconditions; `Once` keeps it to one call.
        INIT.call_once(|| check("wolfSSL_Init", unsafe { wolfSSL_Init() }));
        // SAFETY: the method functions return static tables; CTX_new takes ownership of them.
        let ptr = unsafe {
            wolfSSL_CTX_new(if server { wolfDTLSv1_3_server_method() } else { wolfDTLSv1_3_client_method() })
        };
        assert!(!ptr.is_null(), "wolfSSL_CTX_new");
        let ctx = Self { ptr, server, auth };
        // SAFETY (whole block): `ptr` is a live context not shared with anything yet; the
        // strings are NUL-terminated statics; `groups` outlives the call; the callbacks are
        // `extern "C"` functions with the signatures wolfSSL declares.
        unsafe {
            check("set_cipher_list", wolfSSL_CTX_set_cipher_list(ptr, suite.wolfssl().as_ptr()));
            // P-256 only, as the engine: the client's one key share is then always acceptable
            // (no HelloRetryRequest for a group), and the server never picks X25519.
            let mut groups = [WOLFSSL_ECC_SECP256R1];
            check("set_groups", wolfSSL_CTX_set_groups(ptr, groups.as_mut_ptr(), 1));
            wolfSSL_CTX_SetIORecv(ptr, recv_cb);
            wolfSSL_CTX_SetIOSend(ptr, send_cb);
            match (server, auth) {
                (false, Auth::Cert) => {
                    load_pem(ptr, "ca.crt", wolfSSL_CTX_load_verify_buffer);
                    wolfSSL_CTX_set_verify(ptr, WOLFSSL_VERIFY_PEER, std::ptr::null());
                }
                (true, Auth::Cert) => {
                    load_pem(ptr, "server.crt", wolfSSL_CTX_use_certificate_buffer);
                    load_pem(ptr, "server.key", wolfSSL_CTX_use_PrivateKey_buffer);
                    wolfSSL_CTX_set_verify(ptr, WOLFSSL_VERIFY_NONE, std::ptr::null());
                }
                (false, Auth::PskDhe) => {
                    let cb: PskClientTls13 = match suite {
                        Suite13::ChaCha20 => psk_client::<true>,
                        Suite13::Aes128Gcm => psk_client::<false>,
                    };
                    wolfSSL_CTX_set_psk_client_tls13_callback(ptr, cb);
                    assert_eq!(wolfSSL_CTX_only_dhe_psk(ptr), 0, "only_dhe_psk"); // 0 is success here
                }
                (true, Auth::PskDhe) => {
                    let cb: PskServerTls13 = match suite {
                        Suite13::ChaCha20 => psk_server::<true>,
                        Suite13::Aes128Gcm => psk_server::<false>,
                    };
                    wolfSSL_CTX_set_psk_server_tls13_callback(ptr, cb);
                    wolfSSL_CTX_set_verify(ptr, WOLFSSL_VERIFY_NONE, std::ptr::null());
                    assert_eq!(wolfSSL_CTX_only_dhe_psk(ptr), 0, "only_dhe_psk"); // 0 is success here
                }
            }
        }
        ctx
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the context is ours; connections made from it borrow it (`Conn<'_>`), so
        // none is alive any more.
        unsafe { wolfSSL_CTX_free(self.ptr) }
    }
}

fn psk_suite(chacha: bool) -> &'static CStr {
    if chacha { Suite13::ChaCha20.wolfssl() } else { Suite13::Aes128Gcm.wolfssl() }
}

/// The client's external PSK: identity, key, and the suite wolfSSL should use it with.
unsafe extern "C" fn psk_client<const CHACHA: bool>(
    _ssl: *mut WOLFSSL,
    _hint: *const c_char,
    identity: *mut c_char,
    id_max_len: c_uint,
    key: *mut u8,
    key_max_len: c_uint,
    suite: *mut *const c_char,
) -> c_uint {
    if PSK_IDENTITY.len() >= id_max_len as usize || PSK_KEY.len() > key_max_len as usize {
        return 0;
    }
    // SAFETY: wolfSSL passes an identity buffer of `id_max_len` bytes, a key buffer of
    // `key_max_len` bytes (both checked above) and a writable suite pointer.
    unsafe {
        std::ptr::copy_nonoverlapping(PSK_IDENTITY.as_ptr(), identity.cast::<u8>(), PSK_IDENTITY.len());
        *identity.add(PSK_IDENTITY.len()) = 0;
        std::ptr::copy_nonoverlapping(PSK_KEY.as_ptr(), key, PSK_KEY.len());
        *suite = psk_suite(CHACHA).as_ptr();
    }
    PSK_KEY.len() as c_uint
}

/// The server's PSK lookup: the one identity both sides know.
unsafe extern "C" fn psk_server<const CHACHA: bool>(
    _ssl: *mut WOLFSSL,
    identity: *const c_char,
    key: *mut u8,
    key_max_len: c_uint,
    suite: *mut *const c_char,
) -> c_uint {
    // SAFETY: wolfSSL passes the client's identity NUL-terminated.
    let id = unsafe { CStr::from_ptr(identity) };
    if id.to_bytes() != PSK_IDENTITY || PSK_KEY.len() > key_max_len as usize {
        return 0;
    }
    // SAFETY: a key buffer of `key_max_len` bytes (checked) and a writable suite pointer.
    unsafe {
        std::ptr::copy_nonoverlapping(PSK_KEY.as_ptr(), key, PSK_KEY.len());
        *suite = psk_suite(CHACHA).as_ptr();
    }
    PSK_KEY.len() as c_uint
}

/// The datagram queues of one connection (wolfSSL's IO context).
#[derive(Debug, Default)]
struct Io {
    inbox: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
}

/// wolfSSL's receive callback: one queued datagram, truncated to `sz` as a UDP read would be.
unsafe extern "C" fn recv_cb(_ssl: *mut WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    // SAFETY: `ctx` is the `Io` of the connection being driven (set by `Conn::new`), alive and
    // not otherwise borrowed while wolfSSL runs.
    let io = unsafe { &mut *ctx.cast::<Io>() };
    match io.inbox.pop_front() {
        Some(d) => {
            let n = d.len().min(sz.max(0) as usize);
            // SAFETY: wolfSSL's buffer holds `sz` bytes; `n <= sz`.
            unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), buf.cast::<u8>(), n) };
            n as c_int
        }
        None => WOLFSSL_CBIO_ERR_WANT_READ,
    }
}

/// wolfSSL's send callback: queues the datagram.
unsafe extern "C" fn send_cb(_ssl: *mut WOLFSSL, buf: *mut c_char, sz: c_int, ctx: *mut c_void) -> c_int {
    // SAFETY: as in `recv_cb`; `buf` holds `sz` bytes.
    let (io, data) = unsafe { (&mut *ctx.cast::<Io>(), std::slice::from_raw_parts(buf.cast::<u8>(), sz as usize)) };
    io.outbox.push_back(data.to_vec());
    sz
}

/// A wolfSSL session (with its ticket) kept by a client for resumption.
#[derive(Debug)]
pub struct Session(*mut WOLFSSL_SESSION);

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: a reference from `wolfSSL_get1_session`, released once.
        unsafe { wolfSSL_SESSION_free(self.0) }
    }
}

/// One wolfSSL connection (`WOLFSSL`) over its in-memory queues.
#[derive(Debug)]
pub struct Conn<'ctx> {
    ssl: *mut WOLFSSL,
    io: *mut Io,
    server: bool,
    started: bool,
    done: bool,
    _ctx: PhantomData<&'ctx Ctx>,
}

impl<'ctx> Conn<'ctx> {
    /// A connection from `ctx`. A server with `cookie` answers the first ClientHello with a
    /// HelloRetryRequest carrying a cookie (wolfSSL's DTLS 1.3 default); without, it calls
    /// `wolfSSL_disable_hrr_cookie`. A client offers `session` (its ticket) if given.
    pub fn new(ctx: &'ctx Ctx, cookie: bool, session: Option<&Session>) -> Self {
        let io = Box::into_raw(Box::<Io>::default());
        // SAFETY: `ctx.ptr` is live for 'ctx; `io` stays valid until `Drop` and is only
        // reached through wolfSSL's callbacks while this connection is driven; the SNI and
        // domain strings are copied by wolfSSL; `session` is a live session.
        let ssl = unsafe {
            let ssl = wolfSSL_new(ctx.ptr);
            assert!(!ssl.is_null(), "wolfSSL_new");
            wolfSSL_SetIOReadCtx(ssl, io.cast());
            wolfSSL_SetIOWriteCtx(ssl, io.cast());
            wolfSSL_dtls_set_using_nonblock(ssl, 1);
            check("dtls_set_mtu", wolfSSL_dtls_set_mtu(ssl, MTU as u16));
            if ctx.server {
                if !cookie {
                    check("disable_hrr_cookie", wolfSSL_disable_hrr_cookie(ssl));
                }
            } else {
                // The engine's client always names the server it expects; so does this one,
                // and with a certificate it checks the name as the engine's webpki verifier does.
                let name = c"localhost";
                let len = name.to_bytes().len() as u16;
                check("UseSNI", wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, name.as_ptr().cast(), len));
                if ctx.auth == Auth::Cert {
                    check("check_domain_name", wolfSSL_check_domain_name(ssl, name.as_ptr()));
                }
                if let Some(s) = session {
                    check("set_session", wolfSSL_set_session(ssl, s.0));
                }
            }
            ssl
        };
        Self { ssl, io, server: ctx.server, started: false, done: false, _ctx: PhantomData }
    }

    /// The session for resumption (after the handshake, once the ticket arrived).
    pub fn session(&self) -> Option<Session> {
        // SAFETY: `ssl` is live.
        let s = unsafe { wolfSSL_get1_session(self.ssl) };
        (!s.is_null()).then_some(Session(s))
    }

    /// The negotiated protocol version and suite, as wolfSSL reports them.
    pub fn negotiated(&self) -> (String, u16) {
        // SAFETY: `ssl` is live; wolfSSL_get_version returns a static string.
        unsafe {
            let v = CStr::from_ptr(wolfSSL_get_version(self.ssl)).to_string_lossy().into_owned();
            (v, wolfSSL_get_current_cipher_suite(self.ssl) as u16)
        }
    }

    fn io(&mut self) -> &mut Io {
        // SAFETY: no wolfSSL call is running (we hold `&mut self`), so nothing else borrows it.
        unsafe { &mut *self.io }
    }

    fn fail(&self, what: &str, ret: c_int) -> ! {
        // SAFETY: `ssl` is live; the error string buffer is wolfSSL's documented 80 bytes.
        let (err, text) = unsafe {
            let err = wolfSSL_get_error(self.ssl, ret);
            let mut buf = [0 as c_char; 80];
            wolfSSL_ERR_error_string(err as std::ffi::c_ulong, buf.as_mut_ptr());
            (err, CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
        };
        panic!("wolfSSL {} {what}: error {err} ({text})", if self.server { "server" } else { "client" })
    }

    /// Runs wolfSSL on what was delivered: the handshake until done, then reads (ACKs,
    /// NewSessionTicket) until the inbox is empty.
    fn progress(&mut self) {
        self.started = true;
        if !self.done {
            // SAFETY: `ssl` is live; the callbacks reach `io` only during this call.
            let ret = unsafe { if self.server { wolfSSL_accept(self.ssl) } else { wolfSSL_connect(self.ssl) } };
            if ret == WOLFSSL_SUCCESS {
                self.done = true;
            } else {
                // SAFETY: `ssl` is live.
                let err = unsafe { wolfSSL_get_error(self.ssl, ret) };
                if err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE {
                    self.fail(if self.server { "accept" } else { "connect" }, ret);
                }
            }
        }
        let mut buf = [0u8; 64];
        let mut guard = 0;
        while self.done && !self.io().inbox.is_empty() {
            guard += 1;
            assert!(guard < 64, "wolfSSL read loop does not drain");
            // SAFETY: `ssl` is live; `buf` is writable for its length.
            let ret = unsafe { wolfSSL_read(self.ssl, buf.as_mut_ptr().cast(), buf.len() as c_int) };
            if ret <= 0 {
                // SAFETY: `ssl` is live.
                let err = unsafe { wolfSSL_get_error(self.ssl, ret) };
                if err != WOLFSSL_ERROR_WANT_READ && err != WOLFSSL_ERROR_WANT_WRITE {
                    self.fail("read", ret);
                }
            }
        }
    }
}

impl Peer for Conn<'_> {
    fn deliver(&mut self, datagram: &[u8]) {
        self.io().inbox.push_back(datagram.to_vec());
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        if !self.started || !self.io().inbox.is_empty() {
            self.progress();
        }
        self.io().outbox.pop_front()
    }
    fn connected(&mut self) -> Option<bool> {
        // SAFETY: `ssl` is live.
        self.done.then(|| unsafe { wolfSSL_session_reused(self.ssl) } == 1)
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        // SAFETY: both are ours and freed once; wolfSSL no longer calls back after `free`.
        unsafe {
            wolfSSL_free(self.ssl);
            drop(Box::from_raw(self.io));
        }
    }
}
