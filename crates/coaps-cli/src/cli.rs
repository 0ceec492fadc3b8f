//! Command-line arguments (clap derive). The option letters follow libcoap's `coap-client` and
//! `coap-server` where they overlap (`-u`, `-k`, `-e`, `-v`, `-B`).

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Exit status: success (a 2.xx response, or a server that shut down cleanly).
pub const EXIT_OK: u8 = 0;
/// Exit status: no response (timeout, DTLS alert, certificate refused, I/O error…).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad command line or unreadable/invalid credential files.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a response that is neither 2.xx, 4.xx nor 5.xx (e.g. a Reset).
pub const EXIT_OTHER_RESPONSE: u8 = 3;
/// Exit status: a 4.xx client-error response.
pub const EXIT_CLIENT_ERROR: u8 = 4;
/// Exit status: a 5.xx server-error response.
pub const EXIT_SERVER_ERROR: u8 = 5;

/// DTLS versions a server accepts (`serve --dtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerDtls {
    /// DTLS 1.2 only (RFC 6347).
    #[value(name = "1.2")]
    V12,
    /// DTLS 1.3 only (RFC 9147); DTLS 1.2 clients are refused.
    #[value(name = "1.3")]
    V13,
    /// Both: DTLS 1.3 for clients that offer it, DTLS 1.2 otherwise.
    #[value(name = "auto")]
    Auto,
}

/// The DTLS version a client speaks (`get --dtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientDtls {
    /// DTLS 1.2 (RFC 6347).
    #[value(name = "1.2")]
    V12,
    /// DTLS 1.3 (RFC 9147).
    #[value(name = "1.3")]
    V13,
    /// Offer both in one ClientHello: DTLS 1.3 when the server speaks it, DTLS 1.2 otherwise
    /// (with the RFC 8446 §4.1.3 downgrade check).
    #[value(name = "auto")]
    Auto,
}

/// DTLS 1.3 ticket mode (`serve --tickets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TicketMode {
    /// The ticket is a key into the session store (moka, or Redis with --redis).
    Stateful,
    /// The session sealed into the ticket under a rotating key: not yet supported.
    Stateless,
}

/// `coaps`: CoAP over DTLS 1.2 and 1.3.
#[derive(Debug, Parser)]
#[command(
    name = "coaps",
    version,
    about = "CoAP over DTLS 1.2 and 1.3 (CoAPS): a demo server and a coap-client-like client",
    after_help = "Without credentials, both sides use the PUBLIC demo PSK (identity `coaps-demo`, key \
                  `coaps-demo-key`).\nLogs go to stderr; set the level with RUST_LOG (e.g. RUST_LOG=debug).\n\
                  Exit status of get/post/put/delete: 0 for 2.xx, 4 for 4.xx, 5 for 5.xx, 3 for other \
                  responses, 1 when no response came (timeout, alert, certificate error), 2 for usage errors."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the demo resources (/hello, /.well-known/core, /actuators/door) over CoAPS.
    Serve(ServeArgs),
    /// Send a GET request and print the response payload.
    Get(RequestArgs),
    /// Send a POST request (payload with -e) and print the response payload.
    Post(RequestArgs),
    /// Send a PUT request (payload with -e) and print the response payload.
    Put(RequestArgs),
    /// Send a DELETE request and print the response payload.
    Delete(RequestArgs),
}

/// `coaps serve`.
#[derive(Debug, Args)]
#[command(after_help = "PSK file format: one `identity:key` per line; the key is text, or binary \
                        as `hex:HEXDIGITS`; `#` starts a comment line. Example:\n  # sensors\n  \
                        sensor-17:correct horse battery staple\n  gateway:hex:000102030405060708090a0b0c0d0e0f")]
pub struct ServeArgs {
    /// Address to listen on. The default `[::]:5684` is dual-stack: it also accepts IPv4
    /// clients such as 127.0.0.1 (falls back to 0.0.0.0:5684 where IPv6 is unavailable).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// PSK identity (repeatable: the n-th -u pairs with the n-th -k or --psk-hex).
    #[arg(short = 'u', value_name = "IDENTITY", action = ArgAction::Append)]
    pub identity: Vec<String>,
    /// PSK as text, as in libcoap (repeatable, one per -u).
    #[arg(short = 'k', value_name = "KEY", action = ArgAction::Append)]
    pub psk_key: Vec<String>,
    /// PSK as hex digits, for binary keys (repeatable, one per -u).
    #[arg(long = "psk-hex", value_name = "HEX", action = ArgAction::Append)]
    pub psk_hex: Vec<String>,
    /// File of PSKs, one `identity:key` per line (see below).
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// Server certificate chain (PEM, end-entity first, P-256 key); enables ECDHE-ECDSA suites.
    #[arg(long, value_name = "CERT.pem", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key for --cert (PEM, PKCS#8 or SEC1, P-256).
    #[arg(long, value_name = "KEY.pem", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Require client certificates chaining to this CA (PEM).
    #[arg(long, value_name = "CA.pem", requires = "cert")]
    pub client_ca: Option<PathBuf>,
    /// DTLS versions to accept: `auto` (default) speaks DTLS 1.3 with clients that offer it
    /// and DTLS 1.2 with the others; `1.2` or `1.3` accepts only that version.
    #[arg(long, value_name = "VERSION", value_enum, default_value_t = ServerDtls::Auto)]
    pub dtls: ServerDtls,
    /// Turn off the stateless cookie exchange (DTLS 1.2 HelloVerifyRequest, RFC 6347 §4.2.1;
    /// DTLS 1.3 HelloRetryRequest cookie, RFC 9147 §5.1). Only for testing: without it the
    /// server can be used to amplify spoofed traffic.
    #[arg(long)]
    pub no_cookie: bool,
    /// Most DTLS associations at once.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers: u32,
    /// Keep resumable sessions and tickets in this Redis (`redis://host:port[/db]`, Redis 7
    /// standalone) instead of in-process: several servers pointed at one Redis resume each
    /// other's clients, and sessions outlive restarts. Needs --session-key-file.
    #[arg(long, value_name = "URL", requires = "session_key_file")]
    pub redis: Option<String>,
    /// File holding the 32-byte key (64 hex digits) that seals sessions in Redis; the same on
    /// every server. Make one with `openssl rand -hex 32 > FILE`.
    #[arg(long, value_name = "FILE", requires = "redis")]
    pub session_key_file: Option<PathBuf>,
    /// Most sessions kept by the in-process cache (without --redis).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_capacity: u64,
    /// Longest a session or ticket may be resumed, in seconds (DTLS 1.3 tickets at most
    /// 604800, RFC 8446 §4.6.1). Default: 86400 for DTLS 1.2 sessions, 7200 for tickets.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub session_lifetime: Option<u64>,
    /// DTLS 1.3 tickets: `stateful` (the default: the ticket is a key into the session store).
    /// `stateless` is not yet supported.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = TicketMode::Stateful)]
    pub tickets: TicketMode,
}

/// `coaps get|post|put|delete`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The resource, `coaps://host[:port]/path?query` (default port 5684).
    #[arg(value_name = "URI")]
    pub uri: String,
    /// PSK identity.
    #[arg(short = 'u', value_name = "IDENTITY", requires = "psk")]
    pub identity: Option<String>,
    /// PSK as text, as in libcoap.
    #[arg(short = 'k', value_name = "KEY", group = "psk", requires = "identity")]
    pub psk_key: Option<String>,
    /// PSK as hex digits, for binary keys.
    #[arg(long = "psk-hex", value_name = "HEX", group = "psk", requires = "identity")]
    pub psk_hex: Option<String>,
    /// Certificate mode: check the server's certificate against this CA (PEM) and the URI's host.
    #[arg(long, value_name = "CA.pem")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), sent when the server asks for one.
    #[arg(long, value_name = "CERT.pem", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// Private key for --cert (PEM, P-256).
    #[arg(long, value_name = "KEY.pem", requires = "cert")]
    pub key: Option<PathBuf>,
    /// DTLS version to speak: `auto` (the default) offers 1.3 and 1.2 in one ClientHello and
    /// speaks whichever the server picks (libcoap's servers speak 1.2, `coaps serve` 1.3).
    #[arg(long, value_name = "VERSION", value_enum, default_value_t = ClientDtls::Auto)]
    pub dtls: ClientDtls,
    /// Request payload (text).
    #[arg(short = 'e', value_name = "PAYLOAD")]
    pub payload: Option<String>,
    /// Print the response code (and connection details) on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Resume with the session saved in FILE (if it holds one for this server), and save the
    /// newest session or ticket there afterwards (mode 0600). A missing file is fine.
    #[arg(long, value_name = "FILE")]
    pub session_file: Option<PathBuf>,
    /// Give up after this many seconds without a response.
    #[arg(short = 'B', long = "timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}
