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

/// Session ticket mode (`serve --tickets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TicketMode {
    /// The ticket is a key into the session store (moka, or Redis with --redis).
    Stateful,
    /// The session sealed into the ticket under a rotating key (shared through Redis with
    /// --redis): resuming needs no store look-up.
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
    /// Send a FETCH request (RFC 8132; the query in the payload, -e or -f) and print the
    /// response payload.
    Fetch(RequestArgs),
    /// Send a PATCH request (RFC 8132; the patch in the payload) and print the response payload.
    Patch(RequestArgs),
    /// Send an iPATCH request (RFC 8132: idempotent PATCH) and print the response payload.
    #[command(name = "ipatch")]
    IPatch(RequestArgs),
    /// Energy per DTLS handshake on battery-powered radios, from handshakes run in-process
    /// over the network simulator.
    Energy(EnergyArgs),
    /// Forward UDP between a listen address and a target with delay, jitter, loss and
    /// duplication (a user-space `tc netem` for tests); prints per-direction counts at exit.
    Relay(RelayArgs),
}

/// Parses `--link`: a [`coaps_dtls::LinkProfile`] name.
pub fn parse_link(s: &str) -> Result<coaps_dtls::LinkProfile, String> {
    s.parse().map_err(|e: coaps_dtls::UnknownLinkProfile| e.to_string())
}

/// Parses `--link-prefix`: `PREFIX=PROFILE`, an address prefix and a [`coaps_dtls::LinkProfile`]
/// name.
pub fn parse_link_prefix(s: &str) -> Result<(coaps_dtls::link::IpPrefix, coaps_dtls::LinkProfile), String> {
    let (prefix, profile) = s.split_once('=').ok_or_else(|| {
        format!("`{s}` is not PREFIX=PROFILE: give an address prefix and a link profile, e.g. --link-prefix 10.0.0.0/8=nb-iot")
    })?;
    let prefix = prefix.trim().parse().map_err(|e: coaps_dtls::link::InvalidIpPrefix| e.to_string())?;
    Ok((prefix, parse_link(profile.trim())?))
}

/// Largest `--rtt` and relay delay: 10 minutes, beyond any network a handshake can cross.
pub const MAX_RTT_MS: u64 = 600_000;

/// Parses `--rtt`: whole milliseconds, 1 to [`MAX_RTT_MS`].
pub fn parse_rtt(s: &str) -> Result<u64, String> {
    let ms: u64 = s.trim().parse().map_err(|_| {
        format!("`{s}` is not a round-trip time: give whole milliseconds between 1 and {MAX_RTT_MS}, e.g. --rtt 1500")
    })?;
    if ms == 0 || ms > MAX_RTT_MS {
        return Err(format!("{ms} ms is out of range: give a round-trip time between 1 and {MAX_RTT_MS} ms"));
    }
    Ok(ms)
}

/// Parses a relay delay or jitter: whole milliseconds, 0 to [`MAX_RTT_MS`].
pub fn parse_delay(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(ms) if ms <= MAX_RTT_MS => Ok(ms),
        _ => Err(format!("`{s}` is not a delay: give whole milliseconds between 0 and {MAX_RTT_MS}")),
    }
}

/// Parses a relay probability: a percentage from 0 to 100 (decimals allowed).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage: give a number from 0 to 100, e.g. 10 or 2.5")),
    }
}

/// `coaps relay`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each datagram from a client is forwarded to --target from a socket of its own, and                         the target's answers go back to that client. Delay, jitter, loss and duplication                         apply to each direction independently, from one random stream seeded by --seed.                         At exit (Ctrl-C, SIGTERM or --duration) the counts of datagrams and bytes per                         direction are printed on stdout."
)]
pub struct RelayArgs {
    /// Address to listen on for clients, e.g. 127.0.0.1:0 (the chosen port is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Where to forward to, e.g. 127.0.0.1:5684.
    #[arg(long, value_name = "ADDR")]
    pub target: String,
    /// One-way delay added to every datagram, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = parse_delay)]
    pub delay: u64,
    /// Extra uniform delay in [0, MS] per datagram (reorders datagrams closer than that).
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = parse_delay)]
    pub jitter: u64,
    /// Percentage of datagrams lost, each way.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0, value_parser = parse_percent)]
    pub loss: f64,
    /// Percentage of datagrams delivered twice, each way.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0, value_parser = parse_percent)]
    pub duplicate: f64,
    /// Seed of the random decisions (the same seed and traffic give the same decisions).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: Option<u64>,
    /// Most clients relayed at once (each holds one socket); beyond it, new clients are dropped.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_clients: u32,
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
    /// Most session-store look-ups per second for DTLS 1.3 ClientHellos that offer a PSK
    /// without a cookie (0-RTT and cookie-skipping resumptions, RFC 9147 §5.1): each is made
    /// before the client's address is proven. Beyond it such hellos get the cookie exchange
    /// first; 0 always does.
    #[arg(long, value_name = "N", default_value_t = coaps_tower::cookie::DEFAULT_PSK_LOOKUPS_PER_SECOND)]
    pub psk_lookups_per_second: u32,
    /// Most DTLS associations at once. When full, the association idle longest (at least
    /// --min-idle-to-evict) makes room for a new client.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers: u32,
    /// Threads serving associations, each with its own share of the peers (routed by address)
    /// and its own timers. Default: the available parallelism (cores) of the machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Most half-open handshakes at once; at the limit the least recently heard one makes
    /// room for a new client. Default: half of --max-peers, at most 1000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_half_open: Option<u32>,
    /// Most half-open handshakes from one IP address.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_half_open_per_address: u32,
    /// Most half-open handshakes from one /24 (IPv4) or /56 (IPv6) prefix.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_half_open_per_prefix: u32,
    /// Seconds a half-open handshake may go without a datagram from its client before it is
    /// forgotten. Default: 33 (every RFC 6347 back-off gap up to the sixth retransmission), or the handshake budget of a
    /// long-delay --link profile (802.15.4, lte-m, nb-iot, satellite).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub half_open_lifetime: Option<u64>,
    /// Largest body reassembled from a block-wise upload (Block1, RFC 7959), and largest
    /// response kept for a block-wise download (Block2); a larger upload gets 4.13 Request
    /// Entity Too Large with Size1. At most 256 MiB and at most --max-block-buffer.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(16..=256 << 20))]
    pub max_block_body: u64,
    /// Bytes held by every block-wise transfer together; beyond, new uploads get 5.03.
    /// At most 4 GiB.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(16..=4 << 30))]
    pub max_block_buffer: u64,
    /// Most observers (RFC 7641) in total; beyond, a registration is answered without
    /// Observe (a plain GET). With --threads, each thread takes its share.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_observers: u32,
    /// Most observers of one peer address (one client may observe several resources).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_observers_per_peer: u32,
    /// Most associations with one IP address (raise it when many clients share one NAT).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers_per_address: u32,
    /// Most associations of one PSK identity or certificate. Default: no limit (fleets often
    /// share one PSK identity).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers_per_identity: Option<u32>,
    /// Seconds an association must have been idle before it may be evicted for a new client
    /// when the table is full (a busier table refuses new clients instead).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub min_idle_to_evict: u64,
    /// The network clients reach the server over, which sizes the handshake retransmission
    /// timers and the CoAP deduplication lifetime: ethernet, wifi, 802.15.4, lte-m, nb-iot,
    /// satellite, or auto (RFC timers until a client's RTT is measured, then adaptive).
    #[arg(long, value_name = "PROFILE", default_value = "auto", value_parser = parse_link)]
    pub link: coaps_dtls::LinkProfile,
    /// A profile for the clients inside an address prefix, as PREFIX=PROFILE (e.g.
    /// `--link-prefix 10.0.0.0/8=nb-iot`); repeatable, the first matching prefix wins, other
    /// clients use --link.
    #[arg(long = "link-prefix", value_name = "PREFIX=PROFILE", value_parser = parse_link_prefix)]
    pub link_prefix: Vec<(coaps_dtls::link::IpPrefix, coaps_dtls::LinkProfile)>,
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
    /// Session tickets (DTLS 1.2 RFC 5077 and DTLS 1.3): `stateful` (the default: the ticket
    /// is a key into the session store) or `stateless` (the session sealed into the ticket
    /// under a rotating key, kept in Redis with --redis so every server opens every ticket).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = TicketMode::Stateful)]
    pub tickets: TicketMode,
    /// Accept DTLS 1.3 0-RTT early data from resuming clients (off by default). GET and FETCH
    /// run at once; other methods follow --early-data-policy (see docs/0rtt.md).
    #[arg(long)]
    pub early_data: bool,
    /// What happens to an unsafe request (POST, PUT, DELETE, ...) sent as 0-RTT data: `defer`
    /// (default) holds it until the handshake completes, `reject` answers 4.01 with an Echo
    /// option and the client repeats it after the handshake.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = EarlyPolicy::Defer, requires = "early_data")]
    pub early_data_policy: EarlyPolicy,
    /// Connection IDs (RFC 9146, RFC 9147 §9): the length in bytes of the CIDs the server gives
    /// clients that ask for one (0 to 255; 0: the server takes none but sends the client's).
    /// A client with a CID keeps its association when its address changes (NAT rebinding).
    /// Default 8.
    #[arg(long, value_name = "LEN", default_value_t = 8, value_parser = clap::value_parser!(u8))]
    pub cid: u8,
    /// Leading bytes of every CID this server issues, in hex (at most --cid bytes): a server
    /// identifier a UDP load balancer routes on (see docs/connection-ids.md).
    #[arg(long, value_name = "HEX")]
    pub cid_prefix: Option<String>,
    /// How far, in seconds, a resuming client's ticket age may stray from the server's, either
    /// way, for 0-RTT (RFC 8446 §8.3; default 10). With --tickets stateless, each 0-RTT use
    /// of a ticket is recorded in the session store for twice this long, and no 0-RTT is
    /// accepted for this long after start (records made before a restart may be lost).
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600), requires = "early_data")]
    pub early_data_window: u64,
    /// Let DTLS 1.2 clients in that do not offer extended_master_secret (RFC 7627), as some
    /// deployed stacks do not. Off by default: such sessions are open to the triple-handshake
    /// attack, so they are never resumed (RFC 7627 §5.3) and each is logged with a warning.
    #[arg(long)]
    pub allow_no_ems: bool,
    /// Serve counters in the Prometheus text format at `http://ADDR/metrics` (e.g.
    /// 127.0.0.1:9684); a one-line summary is logged at shutdown either way.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// `--early-data-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EarlyPolicy {
    /// Hold unsafe 0-RTT requests until the handshake completes.
    Defer,
    /// Answer unsafe 0-RTT requests 4.01 + Echo.
    Reject,
}

/// `coaps get|post|put|delete|fetch|patch|ipatch`.
#[derive(Debug, Args)]
#[command(after_help = "Payloads larger than one block are sent block-wise (RFC 7959, Block1 with Size1), and \
                        block-wise answers are fetched to the end (Block2), checking the ETag of every block.\n\
                        Exit status: 0 for a 2.xx response, 4 for 4.xx, 5 for 5.xx, 3 for other responses \
                        (e.g. a Reset), 1 when no (complete) response came (timeout, DTLS alert, certificate \
                        error, a block-wise transfer broken or changed mid-way), 2 for usage errors.")]
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
    #[arg(short = 'e', value_name = "PAYLOAD", conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Request payload from FILE (`-` reads stdin).
    #[arg(short = 'f', value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Write the response payload (and each notification) to FILE instead of stdout.
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Observe the resource for SECONDS (RFC 7641), printing each notification; deregisters
    /// at the end.
    #[arg(short = 's', value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub observe: Option<u64>,
    /// Block size in bytes for block-wise transfer (RFC 7959): 16, 32, 64, 128, 256, 512 or
    /// 1024; also asked for in the first request (the smaller of ours and the server's wins).
    #[arg(short = 'b', value_name = "SIZE", value_parser = crate::transfer::parse_block_size)]
    pub block_size: Option<u16>,
    /// Content-Format of the payload: a name (text, link, xml, octet, json, cbor, ...) or a number.
    #[arg(short = 't', value_name = "TYPE", value_parser = crate::transfer::parse_content_format)]
    pub content_format: Option<u16>,
    /// Accept: the Content-Format wanted in the answer (a name or a number).
    #[arg(short = 'A', value_name = "TYPE", value_parser = crate::transfer::parse_content_format)]
    pub accept: Option<u16>,
    /// Add an option: NUM,VALUE (repeatable); VALUE is text, or 0x followed by hex digits.
    #[arg(short = 'O', value_name = "NUM,VALUE", action = ArgAction::Append, value_parser = crate::transfer::parse_option)]
    pub options: Vec<crate::transfer::RawOption>,
    /// Send the request non-confirmable.
    #[arg(short = 'N')]
    pub non_confirmable: bool,
    /// Token as 1 to 8 bytes of hex digits.
    #[arg(short = 'T', value_name = "TOKEN", value_parser = crate::transfer::parse_token)]
    pub token: Option<crate::transfer::Token>,
    /// Verbosity on stderr, libcoap style: `-v` (or any LEVEL from 1 to 6) prints the response
    /// code and the connection (DTLS version, suite, resumed or not, the server's identity);
    /// `-v 7` and above also each message with its options. `-v 0` is quiet.
    #[arg(short = 'v', long, value_name = "LEVEL", num_args = 0..=1, require_equals = true,
          default_missing_value = "1", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub verbose: Option<u8>,
    /// Connect to DTLS 1.2 servers that do not offer extended_master_secret (RFC 7627). Off by
    /// default; the session is then not kept for resumption.
    #[arg(long)]
    pub allow_no_ems: bool,
    /// The network the server is reached over, which sizes the DTLS retransmission timers and
    /// the CoAP ACK_TIMEOUT: ethernet, wifi, 802.15.4, lte-m, nb-iot, satellite, or auto (RFC
    /// timers until the RTT is measured, then adaptive).
    #[arg(long, value_name = "PROFILE", default_value = "auto", value_parser = parse_link)]
    pub link: coaps_dtls::LinkProfile,
    /// A known round-trip time in milliseconds, to size the timers from before any measurement
    /// (ignored by ethernet and wifi, which keep the RFC timers).
    #[arg(long, value_name = "MILLISECONDS", value_parser = parse_rtt)]
    pub rtt: Option<u64>,
    /// Resume with the session saved in FILE (if it holds one for this server), and save the
    /// newest session or ticket there afterwards (mode 0600). A missing file is fine.
    #[arg(long, value_name = "FILE")]
    pub session_file: Option<PathBuf>,
    /// Send this request as DTLS 1.3 0-RTT early data when the ticket in --session-file allows
    /// it (unsafe methods too: the server's policy decides). With -v, says whether the server
    /// accepted it.
    #[arg(long, requires = "session_file")]
    pub early_data: bool,
    /// Give up after this many seconds without a response.
    #[arg(short = 'B', long = "timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Ask the server for Connection IDs (RFC 9146, RFC 9147 §9) with a CID of LEN bytes for
    /// this side (0 to 255; 0: send the server's CID, take none), so the association survives
    /// a change of this client's address. Off by default.
    #[arg(long, value_name = "LEN", value_parser = clap::value_parser!(u8))]
    pub cid: Option<u8>,
}

impl RequestArgs {
    /// The `-v` level: 0 without `-v`.
    pub fn verbosity(&self) -> u8 {
        self.verbose.unwrap_or(0)
    }
}

/// Rewrites the libcoap habit `-v 7` into `-v=7`: `-v` takes its level only attached, so that
/// `-v coaps://…` keeps the URI.
pub fn attach_verbose_level(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter().peekable();
    while let Some(a) = it.next() {
        let is_v = a == "-v" || a == "--verbose";
        match it.peek().and_then(|n| n.to_str()) {
            Some(level) if is_v && !level.is_empty() && level.bytes().all(|b| b.is_ascii_digit()) => {
                let mut joined = a.clone();
                joined.push("=");
                joined.push(level);
                out.push(joined);
                it.next();
            }
            _ => out.push(a),
        }
    }
    out
}

fn loss_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number; give a percentage from 0 to 90"))?;
    if !(0.0..=90.0).contains(&v) {
        return Err(format!("{s} % is out of range; give a percentage from 0 to 90"));
    }
    Ok(v)
}

/// A whole number from `lo` to `hi`; the error names the range (clap's own says only "invalid
/// digit" for `-5`).
fn bounded(s: &str, what: &str, lo: u32, hi: u32) -> Result<u32, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if (i128::from(lo)..=i128::from(hi)).contains(&v) => Ok(v as u32),
        Ok(_) => Err(format!("{s} is out of range; give {what} from {lo} to {hi}")),
        Err(_) => Err(format!("`{s}` is not a whole number; give {what} from {lo} to {hi}")),
    }
}

fn rtt_ms(s: &str) -> Result<u32, String> {
    bounded(s, "a round-trip time in milliseconds", 1, 60_000)
}

fn per_day(s: &str) -> Result<u32, String> {
    bounded(s, "a number of reconnects per day", 1, 1_000_000)
}

fn mah(s: &str) -> Result<u32, String> {
    bounded(s, "a capacity in mAh", 1, 1_000_000)
}

/// `coaps energy`.
#[derive(Debug, Args)]
#[command(after_help = "Modes (rows): dtls1.2-psk, dtls1.2-psk-nocookie, dtls1.2-ecdhe-ecdsa, dtls1.2-resumption, \
                        dtls1.3-cert, dtls1.3-psk, dtls1.3-resumption, dtls1.3-0rtt.\n\
                        Radios: nrf9160-lte-m (230 mA TX / 46 mA RX, 375/300 kb/s, RTT 150 ms), \
                        nb-iot (230/46 mA, 62.5/60 kb/s, RTT 1000 ms), 802.15.4 (24/20 mA, 250 kb/s, 6LoWPAN, \
                        RTT 40 ms), esp32-wifi (180/100 mA, 65 Mb/s, RTT 10 ms).\n\
                        Each row is one wake-up: the handshake, one 32-byte CoAP GET (0-RTT: beside the ClientHello) \
                        and its answer. Radio-on time = wait until the answer (simulated RTTs and timers) + TX and RX airtime; \
                        energy = TX current x TX airtime + RX current x the rest. Sources and limits: README.")]
pub struct EnergyArgs {
    /// Radio model (repeatable; default: all): nrf9160-lte-m, nb-iot, 802.15.4, esp32-wifi.
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub radio: Vec<String>,
    /// Round-trip time in milliseconds (1 to 60000; default: each radio's typical RTT).
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = rtt_ms)]
    pub rtt: Option<u32>,
    /// Datagram loss each way, percent (0 to 90). Above 0 every row runs 32 seeds.
    #[arg(long, value_name = "PERCENT", default_value = "0", allow_negative_numbers = true, value_parser = loss_percent)]
    pub loss: f64,
    /// Reconnects (wake-ups: handshake, request, answer) per day, for the battery figures (1 to
    /// 1000000).
    #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true, value_parser = per_day)]
    pub reconnects_per_day: u32,
    /// Battery capacity in mAh (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 2000, allow_negative_numbers = true, value_parser = mah)]
    pub battery_mah: u32,
    /// Print one JSON array of rows instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Write SVG plots (energy per mode per radio; completion time vs loss, RFC vs LPWAN
    /// timers) and their numbers as JSON into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}
