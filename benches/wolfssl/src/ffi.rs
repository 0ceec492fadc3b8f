//! The few wolfSSL 5.9.4 C functions the bench calls, declared by hand from `wolfssl/ssl.h` and
//! `wolfssl/wolfio.h` (no bindgen, so no libclang at build time). Handles are opaque.

#![allow(unsafe_code, non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_ushort, c_void};

/// `WOLFSSL_CTX`.
#[derive(Debug)]
#[repr(C)]
pub struct WOLFSSL_CTX {
    _opaque: [u8; 0],
}
/// `WOLFSSL`.
#[derive(Debug)]
#[repr(C)]
pub struct WOLFSSL {
    _opaque: [u8; 0],
}
/// `WOLFSSL_METHOD`.
#[derive(Debug)]
#[repr(C)]
pub struct WOLFSSL_METHOD {
    _opaque: [u8; 0],
}
/// `WOLFSSL_SESSION`.
#[derive(Debug)]
#[repr(C)]
pub struct WOLFSSL_SESSION {
    _opaque: [u8; 0],
}

pub const WOLFSSL_SUCCESS: c_int = 1;
pub const WOLFSSL_FILETYPE_PEM: c_int = 1;
pub const WOLFSSL_ERROR_WANT_READ: c_int = 2;
pub const WOLFSSL_ERROR_WANT_WRITE: c_int = 3;
pub const WOLFSSL_CBIO_ERR_WANT_READ: c_int = -2;
pub const WOLFSSL_VERIFY_NONE: c_int = 0;
pub const WOLFSSL_VERIFY_PEER: c_int = 1;
pub const WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT: c_int = 2;
pub const WOLFSSL_SNI_HOST_NAME: u8 = 0;
pub const WOLFSSL_ECC_SECP256R1: c_int = 23;

pub type CallbackIORecv = unsafe extern "C" fn(*mut WOLFSSL, *mut c_char, c_int, *mut c_void) -> c_int;
pub type CallbackIOSend = unsafe extern "C" fn(*mut WOLFSSL, *mut c_char, c_int, *mut c_void) -> c_int;
/// `wc_psk_client_tls13_callback`: (ssl, hint, identity, id_max_len, key, key_max_len,
/// ciphersuite) → key length, 0 on failure.
pub type PskClientTls13 = unsafe extern "C" fn(
    *mut WOLFSSL,
    *const c_char,
    *mut c_char,
    c_uint,
    *mut u8,
    c_uint,
    *mut *const c_char,
) -> c_uint;
/// `wc_psk_server_tls13_callback`: (ssl, identity, key, key_max_len, ciphersuite) → key length.
pub type PskServerTls13 =
    unsafe extern "C" fn(*mut WOLFSSL, *const c_char, *mut u8, c_uint, *mut *const c_char) -> c_uint;

unsafe extern "C" {
    pub fn wolfSSL_Init() -> c_int;
    pub fn wolfDTLSv1_3_client_method() -> *mut WOLFSSL_METHOD;
    pub fn wolfDTLSv1_3_server_method() -> *mut WOLFSSL_METHOD;
    pub fn wolfSSL_CTX_new(method: *mut WOLFSSL_METHOD) -> *mut WOLFSSL_CTX;
    pub fn wolfSSL_CTX_free(ctx: *mut WOLFSSL_CTX);
    pub fn wolfSSL_CTX_use_certificate_buffer(
        ctx: *mut WOLFSSL_CTX,
        buf: *const u8,
        sz: c_long,
        format: c_int,
    ) -> c_int;
    pub fn wolfSSL_CTX_use_PrivateKey_buffer(ctx: *mut WOLFSSL_CTX, buf: *const u8, sz: c_long, format: c_int)
    -> c_int;
    pub fn wolfSSL_CTX_load_verify_buffer(ctx: *mut WOLFSSL_CTX, buf: *const u8, sz: c_long, format: c_int) -> c_int;
    pub fn wolfSSL_CTX_set_verify(ctx: *mut WOLFSSL_CTX, mode: c_int, cb: *const c_void);
    pub fn wolfSSL_CTX_set_cipher_list(ctx: *mut WOLFSSL_CTX, list: *const c_char) -> c_int;
    pub fn wolfSSL_CTX_set_groups(ctx: *mut WOLFSSL_CTX, groups: *mut c_int, count: c_int) -> c_int;
    pub fn wolfSSL_CTX_only_dhe_psk(ctx: *mut WOLFSSL_CTX) -> c_int;
    pub fn wolfSSL_CTX_set_psk_client_tls13_callback(ctx: *mut WOLFSSL_CTX, cb: PskClientTls13);
    pub fn wolfSSL_CTX_set_psk_server_tls13_callback(ctx: *mut WOLFSSL_CTX, cb: PskServerTls13);
    pub fn wolfSSL_CTX_SetIORecv(ctx: *mut WOLFSSL_CTX, cb: CallbackIORecv);
    pub fn wolfSSL_CTX_SetIOSend(ctx: *mut WOLFSSL_CTX, cb: CallbackIOSend);

    pub fn wolfSSL_new(ctx: *mut WOLFSSL_CTX) -> *mut WOLFSSL;
    pub fn wolfSSL_free(ssl: *mut WOLFSSL);
    pub fn wolfSSL_SetIOReadCtx(ssl: *mut WOLFSSL, ctx: *mut c_void);
    pub fn wolfSSL_SetIOWriteCtx(ssl: *mut WOLFSSL, ctx: *mut c_void);
    pub fn wolfSSL_dtls_set_using_nonblock(ssl: *mut WOLFSSL, nonblock: c_int);
    pub fn wolfSSL_dtls_set_mtu(ssl: *mut WOLFSSL, mtu: c_ushort) -> c_int;
    pub fn wolfSSL_disable_hrr_cookie(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_UseSNI(ssl: *mut WOLFSSL, kind: u8, data: *const c_void, size: c_ushort) -> c_int;
    pub fn wolfSSL_check_domain_name(ssl: *mut WOLFSSL, dn: *const c_char) -> c_int;
    pub fn wolfSSL_connect(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_accept(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_read(ssl: *mut WOLFSSL, data: *mut c_void, sz: c_int) -> c_int;
    pub fn wolfSSL_get_error(ssl: *mut WOLFSSL, ret: c_int) -> c_int;
    pub fn wolfSSL_session_reused(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_get1_session(ssl: *mut WOLFSSL) -> *mut WOLFSSL_SESSION;
    pub fn wolfSSL_set_session(ssl: *mut WOLFSSL, session: *mut WOLFSSL_SESSION) -> c_int;
    pub fn wolfSSL_SESSION_free(session: *mut WOLFSSL_SESSION);
    pub fn wolfSSL_get_current_cipher_suite(ssl: *mut WOLFSSL) -> c_int;
    pub fn wolfSSL_ERR_error_string(err: std::ffi::c_ulong, buf: *mut c_char) -> *mut c_char;
    pub fn wolfSSL_get_version(ssl: *const WOLFSSL) -> *const c_char;
}
