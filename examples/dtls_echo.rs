//! The reference integration of the raw sans-IO engine over `std::net::UdpSocket`.
//!
//! ```text
//! dtls_echo server --listen ADDR [--psk IDENTITY:HEXKEY] [--cert CERT.pem --key KEY.pem [--client-ca CA.pem]]
//!                  [--mtu N] [--no-cookie] [--suites LIST] [--accept-early-data] [--stateless-tickets]
//!                  [--cid LEN]
//! dtls_echo client --connect ADDR [--psk IDENTITY:HEXKEY] [--ca CA.pem --server-name NAME]
//!                  [--cert CERT.pem --key KEY.pem] [--mtu N] [--resume [--early-data TEXT]]
//!                  [--suites LIST] [--timeout SECS] [--cid LEN] [--count N --interval MS] --message TEXT
//! ```
//!
//! The server echoes every application-data record to its sender and serves any number of
//! peers. The client completes the handshake, sends TEXT, prints the echo on stdout and exits
//! 0; on failure it prints the reason on stderr and exits 1 (2 for usage errors). With
//! `--resume` it closes, reconnects with an abbreviated handshake, prints `resumed` on stderr
//! when that succeeded, and sends TEXT again. With `--early-data TEXT` (DTLS 1.3) the resumed
//! connection also sends that TEXT as 0-RTT data (RFC 8446 §4.2.10) and prints `early data
//! accepted` or `early data rejected` on stderr. A server with `--accept-early-data` (off by
//! default) accepts 0-RTT data and echoes it once the handshake completes. Without credentials both sides use the public
//! demo PSK (identity `coaps-demo`, key `coaps-demo-key`), and say so.
//!
//! Connection IDs (DTLS 1.2 and 1.3, RFC 9146, RFC 9147 §9): `--cid LEN` makes the client offer a CID of LEN bytes
//! (0: it sends the server's but wants none) and sets the length of the server's CIDs (the
//! server answers clients that ask by default, with 8 bytes). The client prints the negotiated
//! CIDs on stderr (`cid in=HEX out=HEX`), the server (`cid in=HEX out=HEX`, `-` for none) and a line
//! `address changed: OLD -> NEW` when an association moves to a new address. With
//! `--count N --interval MS` the client sends TEXT N times, MS milliseconds apart, on one
//! association, and prints each echo.

use coaps::dtls::cert::{self, WebPkiVerifier};
use coaps::dtls::crypto::SeededRng;
use coaps::dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps::dtls::{
    CertifiedKey, ClientAuth, ClientConfig, CommonConfig, ConnectionIdConfig, DtlsVersion, EarlyDataConfig, Endpoint,
    Event, PeerVerifier, Psk, ServerConfig, Session, StaticPsks, suites,
};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The built-in demo PSK (the same one `coaps serve` uses): public, for trying things out only.
const DEMO_IDENTITY: &str = "coaps-demo";
const DEMO_KEY: &str = "coaps-demo-key";

#[derive(Default)]
struct Args {
    mode: String,
    listen: Option<String>,
    connect: Option<String>,
    psk: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    ca: Option<String>,
    server_name: Option<String>,
    mtu: Option<usize>,
    no_cookie: bool,
    resume: bool,
    suites: Option<String>,
    message: Option<String>,
    timeout: Option<u64>,
    dtls: Option<String>,
    accept_early_data: bool,
    early_data: Option<String>,
    stateless_tickets: bool,
    cid: Option<usize>,
    count: Option<u32>,
    interval: Option<u64>,
}

const USAGE: &str = "usage:
  dtls_echo server --listen ADDR [--dtls 1.2|1.3|auto] [--psk IDENTITY:HEXKEY] [--cert CERT.pem --key KEY.pem [--client-ca CA.pem]] [--mtu N] [--no-cookie] [--suites LIST] [--accept-early-data] [--stateless-tickets] [--cid LEN]
  dtls_echo client [--dtls 1.2|1.3|auto] --connect ADDR [--psk IDENTITY:HEXKEY] [--ca CA.pem --server-name NAME] [--cert CERT.pem --key KEY.pem] [--mtu N] [--resume [--early-data TEXT]] [--suites LIST] [--timeout SECS] [--cid LEN] [--count N --interval MS] --message TEXT";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args { mode: it.next().ok_or("missing mode: `server` or `client`")?, ..Args::default() };
    if a.mode != "server" && a.mode != "client" {
        return Err(format!("unknown mode `{}`: use `server` or `client`", a.mode));
    }
    while let Some(flag) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = Some(val("--listen")?),
            "--connect" => a.connect = Some(val("--connect")?),
            "--psk" => a.psk = Some(val("--psk")?),
            "--cert" => a.cert = Some(val("--cert")?),
            "--key" => a.key = Some(val("--key")?),
            "--client-ca" => a.client_ca = Some(val("--client-ca")?),
            "--ca" => a.ca = Some(val("--ca")?),
            "--server-name" => a.server_name = Some(val("--server-name")?),
            "--mtu" => {
                let v = val("--mtu")?;
                let n: usize = v.parse().map_err(|_| format!("--mtu takes a number of bytes, got `{v}`"))?;
                if !(100..=65507).contains(&n) {
                    return Err(format!("--mtu must be between 100 and 65507 bytes, got {n}"));
                }
                a.mtu = Some(n);
            }
            "--no-cookie" => a.no_cookie = true,
            "--dtls" => {
                let v = val("--dtls")?;
                if !["1.2", "1.3", "auto"].contains(&v.as_str()) {
                    return Err(format!("--dtls takes 1.2, 1.3 or auto, got `{v}`"));
                }
                a.dtls = Some(v);
            }
            "--accept-early-data" => a.accept_early_data = true,
            "--stateless-tickets" => a.stateless_tickets = true,
            "--early-data" => a.early_data = Some(val("--early-data")?),
            "--resume" => a.resume = true,
            "--suites" => a.suites = Some(val("--suites")?),
            "--message" => a.message = Some(val("--message")?),
            "--timeout" => {
                let v = val("--timeout")?;
                a.timeout = Some(v.parse().map_err(|_| format!("--timeout takes seconds, got `{v}`"))?);
            }
            "--cid" => {
                let v = val("--cid")?;
                let n: usize =
                    v.parse().map_err(|_| format!("--cid takes a CID length in bytes (0..=255), got `{v}`"))?;
                if n > 255 {
                    return Err(format!("--cid: a CID is at most 255 bytes (RFC 9146 §3), got {n}"));
                }
                a.cid = Some(n);
            }
            "--count" => {
                let v = val("--count")?;
                match v.parse::<u32>() {
                    Ok(n) if n >= 1 => a.count = Some(n),
                    _ => return Err(format!("--count takes a number of messages (1 or more), got `{v}`")),
                }
            }
            "--interval" => {
                let v = val("--interval")?;
                a.interval = Some(v.parse().map_err(|_| format!("--interval takes milliseconds, got `{v}`"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if a.mode == "server" && a.early_data.is_some() {
        return Err("--early-data is a client option (the server takes --accept-early-data)".into());
    }
    if a.mode == "client" && a.accept_early_data {
        return Err("--accept-early-data is a server option (the client takes --early-data TEXT)".into());
    }
    if a.mode == "server" && (a.count.is_some() || a.interval.is_some()) {
        return Err("--count and --interval are client options".into());
    }
    if a.count.is_some() && a.resume {
        return Err("--count and --resume do not combine: --count sends on one association".into());
    }
    if a.early_data.is_some() && !a.resume {
        return Err("--early-data needs --resume: 0-RTT data rides on a resumed connection".into());
    }
    if a.mode == "client" && a.early_data.is_some() && a.dtls.as_deref().is_some_and(|v| v != "1.3") {
        return Err("--early-data needs --dtls 1.3 (the client default): 0-RTT exists only in DTLS 1.3".into());
    }
    Ok(a)
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} `{path}`: {e}"))
}

fn parse_psk(s: &str) -> Result<Psk, String> {
    let (id, hex) = s.split_once(':').ok_or("--psk takes IDENTITY:HEXKEY, e.g. Client_identity:0102030405060708")?;
    let hex = hex.trim();
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--psk key must be an even number of hex digits, got `{hex}`"));
    }
    let key: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0)).collect();
    Psk::new(id.as_bytes().to_vec(), key).map_err(|e| format!("--psk: {e}"))
}

fn common(a: &Args) -> Result<CommonConfig, String> {
    let mut c = CommonConfig::default();
    if let Some(m) = a.mtu {
        c.mtu = m;
    }
    if let Some(list) = &a.suites {
        // DTLS 1.2 and 1.3 suites may be mixed; each list keeps its own order.
        c.suites.clear();
        c.suites13.clear();
        for n in list.split(',') {
            if let Some(s) = suites::by_name(n) {
                c.suites.push(*s);
            } else if let Some(s) = suites::by_name13(n) {
                c.suites13.push(s);
            } else {
                return Err(format!(
                    "unknown cipher suite `{n}` (IANA or OpenSSL names, e.g. TLS_PSK_WITH_AES_128_CCM_8)"
                ));
            }
        }
    }
    Ok(c)
}

fn certified_key(cert: &str, key: &str) -> Result<CertifiedKey, String> {
    let chain = cert::load_certs_pem(&read_file(cert, "certificate")?).map_err(|e| format!("{cert}: {e}"))?;
    let sk = cert::load_private_key_pem(&read_file(key, "private key")?).map_err(|e| format!("{key}: {e}"))?;
    let bytes: [u8; 32] = sk.to_bytes().into();
    let signing = EcdsaP256SigningKey::from_bytes(&bytes).map_err(|e| format!("{key}: {e}"))?;
    Ok(CertifiedKey { chain, key: Arc::new(signing) })
}

fn verifier(ca: &str) -> Result<PeerVerifier, String> {
    let roots = cert::load_certs_pem(&read_file(ca, "CA certificate")?).map_err(|e| format!("{ca}: {e}"))?;
    Ok(PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).map_err(|e| format!("{ca}: {e}"))?)))
}

/// A CID in hex, `-` when empty.
fn hex_or_dash(b: &[u8]) -> String {
    if b.is_empty() { "-".into() } else { b.iter().map(|x| format!("{x:02x}")).collect() }
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))
}

/// Sends everything the endpoint wants to send.
fn flush(sock: &UdpSocket, ep: &mut Endpoint) {
    while let Some(t) = ep.poll_transmit() {
        let _ = sock.send_to(&t.payload, t.destination);
    }
}

/// Waits for one datagram or the endpoint's next timer, whichever is first.
fn pump(sock: &UdpSocket, ep: &mut Endpoint, buf: &mut [u8], cap: Duration) {
    let now = Instant::now();
    let wait =
        ep.poll_timeout().map_or(cap, |t| t.saturating_duration_since(now).min(cap)).max(Duration::from_millis(1));
    let _ = sock.set_read_timeout(Some(wait));
    if let Ok((n, from)) = sock.recv_from(buf) {
        ep.handle_datagram(Instant::now(), from, &buf[..n]);
    }
    ep.handle_timeout(Instant::now());
    flush(sock, ep);
}

fn server(a: Args) -> Result<(), String> {
    let listen = a.listen.as_deref().ok_or("server needs --listen ADDR")?;
    let mut cfg = ServerConfig { common: common(&a)?, ..ServerConfig::default() };
    if let Some(p) = &a.psk {
        cfg.psks = Some(Arc::new(StaticPsks(vec![parse_psk(p)?])));
    }
    match (&a.cert, &a.key) {
        (Some(c), Some(k)) => cfg.cert = Some(certified_key(c, k)?),
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    if let Some(ca) = &a.client_ca {
        cfg.client_auth = ClientAuth::Required(verifier(ca)?);
    }
    if a.no_cookie {
        cfg.cookie = None;
    }
    if a.stateless_tickets {
        // Sealed tickets: the server keeps nothing per ticket.
        cfg.tickets = coaps_dtls::TicketMode::Stateless(coaps_dtls::TicketKeys::new(
            coaps_dtls::DEFAULT_TICKET_KEY_ROTATION,
            std::time::SystemTime::now(),
        ));
    }
    if a.accept_early_data {
        cfg.early_data = Some(EarlyDataConfig::default());
    }
    if let Some(n) = a.cid {
        cfg.connection_id = Some(ConnectionIdConfig::new(n));
    }
    match a.dtls.as_deref().unwrap_or("auto") {
        "1.2" => cfg.dtls13 = false,
        "1.3" => cfg.dtls12 = false,
        _ => {}
    }
    if cfg.psks.is_none() && cfg.cert.is_none() {
        let demo =
            Psk::new(DEMO_IDENTITY.as_bytes().to_vec(), DEMO_KEY.as_bytes().to_vec()).map_err(|e| e.to_string())?;
        cfg.psks = Some(Arc::new(StaticPsks(vec![demo])));
        eprintln!(
            "WARNING: no credentials given: serving the PUBLIC DEMO PSK (identity `{DEMO_IDENTITY}`, key `{DEMO_KEY}`)."
        );
        eprintln!("WARNING: anyone can connect. Use --psk IDENTITY:HEXKEY or --cert/--key for anything but a demo.");
    }
    let sock = UdpSocket::bind(resolve(listen)?).map_err(|e| format!("cannot bind {listen}: {e}"))?;
    println!("listening on {}", sock.local_addr().map_err(|e| e.to_string())?);
    let mut ep = Endpoint::server(Arc::new(cfg), SeededRng::from_os(), Instant::now());
    let mut buf = vec![0u8; 65536];
    // 0-RTT data waits for the handshake to complete before it is echoed.
    let mut early: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
    loop {
        pump(&sock, &mut ep, &mut buf, Duration::from_secs(1));
        while let Some((peer, ev)) = ep.poll_event() {
            match ev {
                Event::Connected { identity, suite, resumed } => {
                    let cid = ep.connection(&peer).and_then(|c| c.connection_ids()).map_or(String::new(), |c| {
                        format!(", cid in={} out={}", hex_or_dash(&c.incoming), hex_or_dash(&c.outgoing))
                    });
                    eprintln!(
                        "{peer}: connected, {suite:?}, {identity:?}{}{cid}",
                        if resumed { ", resumed" } else { "" }
                    );
                    for d in early.remove(&peer).unwrap_or_default() {
                        if let Err(e) = ep.send(peer, &d) {
                            eprintln!("{peer}: echo of early data failed: {e}");
                        }
                    }
                }
                Event::EarlyData(d) => {
                    eprintln!("{peer}: early data: {}", String::from_utf8_lossy(&d).trim_end_matches('\n'));
                    // Echoed at `Connected`, not at once as 0.5-RTT data (which the engine can
                    // send): wolfSSL 5.9.4's example client decrypts a 0.5-RTT record but then
                    // fails its resumed wolfSSL_connect with APP_DATA_READY (-441).
                    early.entry(peer).or_default().push(d);
                }
                Event::ApplicationData(d) => {
                    if let Err(e) = ep.send(peer, &d) {
                        eprintln!("{peer}: echo failed: {e}");
                    }
                }
                Event::Closed(r) => {
                    early.remove(&peer);
                    eprintln!("{peer}: closed: {r:?}")
                }
                Event::AddressChanged { old } => {
                    if let Some(d) = early.remove(&old) {
                        early.insert(peer, d);
                    }
                    eprintln!("address changed: {old} -> {peer}");
                }
                // Issued sessions stay in the default in-process store.
                _ => {}
            }
        }
        flush(&sock, &mut ep);
        ep.expire_idle(Instant::now() - Duration::from_secs(300));
    }
}

/// Runs one connection: handshake, send `message`, wait for the echo. Returns the session for
/// resumption and whether the handshake was resumed.
#[allow(clippy::too_many_arguments)]
fn client_once(
    sock: &UdpSocket,
    peer: SocketAddr,
    cfg: &Arc<ClientConfig>,
    name: &str,
    resume: Option<Session>,
    message: &str,
    early_data: Option<&str>,
    deadline: Instant,
    want_session: bool,
    repeat: Option<(u32, Duration)>,
) -> Result<(Option<Session>, bool), String> {
    let (count, interval) = repeat.unwrap_or((1, Duration::ZERO));
    let mut echoes = 0u32;
    let mut ep = Endpoint::client(SeededRng::from_os());
    match early_data {
        Some(e) => ep.connect_with_early_data(Instant::now(), peer, cfg.clone(), name, resume, e.as_bytes()),
        None => ep.connect(Instant::now(), peer, cfg.clone(), name, resume),
    }
    .map_err(|e| e.to_string())?;
    flush(sock, &mut ep);
    let mut buf = vec![0u8; 65536];
    let mut resumed = false;
    let mut early_accepted = false;
    loop {
        if Instant::now() > deadline {
            return Err("timeout: no answer from the server".into());
        }
        pump(sock, &mut ep, &mut buf, Duration::from_millis(200));
        while let Some((_, ev)) = ep.poll_event() {
            match ev {
                Event::Connected { resumed: r, .. } => {
                    resumed = r;
                    if let Some(c) = ep.connection(&peer).and_then(|c| c.connection_ids()) {
                        eprintln!("cid in={} out={}", hex_or_dash(&c.incoming), hex_or_dash(&c.outgoing));
                    }
                    ep.send(peer, message.as_bytes()).map_err(|e| e.to_string())?;
                    flush(sock, &mut ep);
                }
                Event::EarlyDataAccepted => {
                    early_accepted = true;
                    eprintln!("early data accepted");
                }
                Event::EarlyDataRejected => eprintln!("early data rejected"),
                Event::ApplicationData(d) => {
                    println!("{}", String::from_utf8_lossy(&d).trim_end_matches('\n'));
                    // An echo of our accepted 0-RTT data comes first: keep waiting for TEXT's.
                    if early_accepted && early_data.is_some_and(|e| e.as_bytes() == d.as_slice()) {
                        continue;
                    }
                    echoes += 1;
                    if echoes < count {
                        // The next message after the interval, still answering in between.
                        let next = Instant::now() + interval;
                        while Instant::now() < next {
                            pump(sock, &mut ep, &mut buf, next.saturating_duration_since(Instant::now()));
                        }
                        ep.send(peer, message.as_bytes()).map_err(|e| e.to_string())?;
                        flush(sock, &mut ep);
                        continue;
                    }
                    // A DTLS 1.3 ticket (NewSessionTicket) may trail the echo: give it a moment.
                    let wait_until = Instant::now() + Duration::from_millis(500);
                    while want_session
                        && ep.connection(&peer).is_some_and(|c| c.session().is_none())
                        && Instant::now() < wait_until
                    {
                        pump(sock, &mut ep, &mut buf, Duration::from_millis(50));
                    }
                    let session = ep.connection(&peer).and_then(|c| c.session().cloned());
                    ep.close(peer);
                    flush(sock, &mut ep);
                    return Ok((session, resumed));
                }
                Event::Closed(r) => return Err(format!("connection closed: {r:?}")),
                _ => {}
            }
        }
    }
}

fn client(a: Args) -> Result<(), String> {
    let connect = a.connect.as_deref().ok_or("client needs --connect ADDR")?;
    let message = a.message.clone().ok_or("client needs --message TEXT")?;
    let peer = resolve(connect)?;
    let version = match a.dtls.as_deref().unwrap_or("1.3") {
        "1.2" => DtlsVersion::Dtls12,
        "1.3" => DtlsVersion::Dtls13,
        // One ClientHello offering both; the server's answer picks the version.
        _ => DtlsVersion::Auto,
    };
    let mut cfg = ClientConfig { common: common(&a)?, version, ..ClientConfig::default() };
    cfg.connection_id = a.cid.map(ConnectionIdConfig::new);
    if let Some(p) = &a.psk {
        cfg.psk = Some(parse_psk(p)?);
    }
    if let Some(ca) = &a.ca {
        cfg.verifier = Some(verifier(ca)?);
    }
    match (&a.cert, &a.key) {
        (Some(c), Some(k)) => cfg.client_cert = Some(certified_key(c, k)?),
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    if cfg.psk.is_none() && cfg.verifier.is_none() {
        cfg.psk =
            Some(Psk::new(DEMO_IDENTITY.as_bytes().to_vec(), DEMO_KEY.as_bytes().to_vec()).map_err(|e| e.to_string())?);
        eprintln!("note: no credentials given: using the public demo PSK `{DEMO_IDENTITY}`");
    }
    let name = a.server_name.clone().unwrap_or_else(|| peer.ip().to_string());
    let cfg = Arc::new(cfg);
    let bind: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(|_| "bind address")?;
    let sock = UdpSocket::bind(bind).map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
    // The messages' spacing comes on top of the time allowed for answers.
    let spacing = Duration::from_millis(a.interval.unwrap_or(0)) * a.count.unwrap_or(1).saturating_sub(1);
    let deadline = Instant::now() + Duration::from_secs(a.timeout.unwrap_or(10)) + spacing;
    let repeat = a.count.map(|n| (n, Duration::from_millis(a.interval.unwrap_or(0))));
    let (session, _) = client_once(&sock, peer, &cfg, &name, None, &message, None, deadline, a.resume, repeat)?;
    if a.resume {
        let session = session.ok_or("the server issued no session ID or ticket: cannot resume")?;
        let early = a.early_data.as_deref();
        let (_, resumed) =
            client_once(&sock, peer, &cfg, &name, Some(session), &message, early, deadline, false, None)?;
        if !resumed {
            return Err("the server did not resume the session (full handshake instead)".into());
        }
        eprintln!("resumed");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = if args.mode == "server" { server(args) } else { client(args) };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
