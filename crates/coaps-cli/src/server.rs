//! `coaps serve`: the demo application behind the CoAPS stack.

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ServeArgs};
use crate::creds::{self, KeyArg};
use crate::demo::Demo;
use crate::psk::{DEMO_IDENTITY, DEMO_KEY};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// The default listen address: every IPv6 and (dual-stack) IPv4 address, CoAPS port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED), 5684);

/// Parses `--listen`: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT` or a bare `PORT` (all addresses).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(DEFAULT_LISTEN.ip(), port));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("--listen `{s}`: {e} (write ADDR:PORT, e.g. 127.0.0.1:5684 or [::]:5684)"))?
        .next()
        .ok_or_else(|| format!("--listen `{s}` resolves to no address"))
}

/// Binds a UDP socket; an IPv6 wildcard socket is made dual-stack explicitly (IPV6_V6ONLY off),
/// so IPv4 clients such as 127.0.0.1 reach it as `::ffff:127.0.0.1` whatever the OS default.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

/// The block-wise and observe limits of `--max-block-body`, `--max-block-buffer`,
/// `--max-observers` and `--max-observers-per-peer` (each range-checked by clap), checked
/// against each other.
fn coap_limits(
    args: &ServeArgs,
) -> Result<(coaps_tower::block::BlockConfig, coaps_tower::observe::ObserveConfig), String> {
    if args.max_block_body > args.max_block_buffer {
        return Err(format!(
            "--max-block-body {} is larger than --max-block-buffer {}: one upload could never fit; \
             raise --max-block-buffer or lower --max-block-body",
            args.max_block_body, args.max_block_buffer
        ));
    }
    if args.max_observers_per_peer > args.max_observers {
        return Err(format!(
            "--max-observers-per-peer {} is larger than --max-observers {}: lower it or raise --max-observers",
            args.max_observers_per_peer, args.max_observers
        ));
    }
    let to_usize =
        |v: u64, flag: &str| usize::try_from(v).map_err(|_| format!("{flag} {v} is too large for this machine"));
    let block = coaps_tower::block::BlockConfig {
        max_body_size: to_usize(args.max_block_body, "--max-block-body")?,
        max_buffered_bytes: to_usize(args.max_block_buffer, "--max-block-buffer")?,
        ..Default::default()
    };
    let observe = coaps_tower::observe::ObserveConfig {
        max_observers: args.max_observers as usize,
        max_per_peer: args.max_observers_per_peer as usize,
        ..Default::default()
    };
    Ok((block, observe))
}

/// Runs the server. Returns the exit status.
pub async fn run(args: ServeArgs, keys: Vec<KeyArg<'_>>) -> u8 {
    let mut setup = match creds::server_setup(&args, &keys) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (sessions, sessions_mode) = match crate::sessions::server_store(&args, &mut setup.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (block, observe) = match coap_limits(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let listen = match args.listen.as_deref().map(parse_listen).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let std_sock = match listen {
        Some(a) => bind_udp(a).map_err(|e| format!("cannot listen on {a}: {e}")),
        // Hosts without IPv6 cannot bind [::]: fall back to IPv4 only for the default.
        None => bind_udp(DEFAULT_LISTEN).or_else(|e6| {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_LISTEN.port());
            tracing::warn!(error = %e6, "cannot listen on {DEFAULT_LISTEN}, trying {v4}");
            bind_udp(v4).map_err(|e| format!("cannot listen on {DEFAULT_LISTEN} ({e6}) nor on {v4}: {e}"))
        }),
    };
    let threads = args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let sock = match std_sock {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e} (is another server on that port? use --listen ADDR:PORT)");
            return EXIT_FAILURE;
        }
    };
    if setup.demo {
        eprintln!(
            "WARNING: no credentials given: serving the PUBLIC DEMO PSK (identity `{DEMO_IDENTITY}`, key `{DEMO_KEY}`)."
        );
        eprintln!(
            "WARNING: anyone can connect with it. Use -u IDENTITY -k KEY, --psk-file FILE or --cert/--key for anything but a demo."
        );
    }
    if args.no_cookie {
        eprintln!(
            "WARNING: --no-cookie: the cookie exchange (HelloVerifyRequest, HelloRetryRequest cookie) is off; spoofed ClientHellos get full answers."
        );
    }
    if args.allow_no_ems {
        tracing::warn!(
            "--allow-no-ems: DTLS 1.2 clients without extended_master_secret (RFC 7627) are let in; their \
             sessions are open to the triple-handshake attack and are never resumed"
        );
    }
    let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(threads, "serving");
    let mut modes = Vec::new();
    if !setup.identities.is_empty() {
        modes.push(format!(
            "PSK ({} identit{})",
            setup.identities.len(),
            if setup.identities.len() == 1 { "y" } else { "ies" }
        ));
    }
    if setup.config.cert.is_some() {
        modes.push(format!(
            "certificate{}",
            if matches!(setup.config.client_auth, coaps_dtls::ClientAuth::Required(_)) {
                " (client certificate required)"
            } else {
                ""
            }
        ));
    }
    modes.push(
        match (setup.config.dtls12, setup.config.dtls13) {
            (true, true) => "DTLS 1.3 and 1.2",
            (false, true) => "DTLS 1.3 only",
            _ => "DTLS 1.2 only",
        }
        .to_owned(),
    );
    modes.push(sessions_mode);
    // The "listening on" line is on stdout, flushed, so scripts can wait for it and read the port.
    println!("listening on {local} ({})", modes.join(", "));
    let _ = std::io::stdout().flush();
    if args.early_data {
        let window = std::time::Duration::from_secs(args.early_data_window);
        setup.config.early_data =
            Some(coaps_dtls::EarlyDataConfig { freshness_window: window, ..coaps_dtls::EarlyDataConfig::default() });
    }
    // RFC 9147 §5.1: a resumption from the ticket's address with a fresh ticket age and a
    // valid binder needs no cookie round trip.
    setup.config.skip_cookie_on_resumption = true;
    let policy = match args.early_data_policy {
        crate::cli::EarlyPolicy::Defer => coaps_tower::EarlyDataPolicy::Defer,
        crate::cli::EarlyPolicy::Reject => coaps_tower::EarlyDataPolicy::Reject,
    };
    // Harmless without --early-data: no request then arrives as early data.
    let early_layer = coaps_tower::EarlyDataLayer::new().policy(policy);
    let app = tower::Layer::layer(&early_layer, Demo::new());
    // The recorder is installed even without --metrics: the shutdown summary reads it.
    let registry = crate::prometheus::install();
    let metrics_listener = match &args.metrics {
        None => None,
        Some(a) => match tokio::net::TcpListener::bind(a.as_str()).await {
            Ok(l) => {
                if let Ok(addr) = l.local_addr() {
                    println!("metrics on http://{addr}/metrics");
                    let _ = std::io::stdout().flush();
                }
                Some(l)
            }
            Err(e) => {
                eprintln!("error: --metrics {a}: cannot listen: {e} (give ADDR:PORT, e.g. 127.0.0.1:9684)");
                return EXIT_USAGE;
            }
        },
    };
    // Each stack (one per thread) hands its handles over as it is built.
    let stacks: Arc<std::sync::Mutex<Vec<crate::transport::StackStats>>> = Arc::default();
    let publish = {
        let (stacks, early_layer) = (stacks.clone(), early_layer.clone());
        move || {
            crate::transport::StackStats::publish(&stacks.lock().unwrap_or_else(|e| e.into_inner()));
            let e = early_layer.stats();
            metrics::counter!("coaps_early_data_total", "result" => "accepted")
                .absolute(e.safe_run_early + e.allowed_run_early);
            metrics::counter!("coaps_early_data_total", "result" => "deferred").absolute(e.deferred);
            metrics::counter!("coaps_early_data_total", "result" => "rejected").absolute(e.rejected);
        }
    };
    let exporter = match (metrics_listener, &registry) {
        (Some(l), Some(r)) => Some(tokio::spawn(crate::prometheus::serve(l, r.clone(), publish.clone()))),
        _ => None,
    };
    let stack_config = crate::transport::StackConfig {
        config: Arc::new(setup.config),
        links: crate::transport::Links { default: args.link, prefixes: args.link_prefix },
        sessions,
        psk_lookups_per_second: args.psk_lookups_per_second,
        block,
        observe,
    };
    let handed = stacks.clone();
    let observe = move |s| handed.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    let result = if threads > 1 {
        crate::transport::serve_sharded(sock, threads, stack_config, app, shutdown_signal(), observe).await
    } else {
        match tokio::net::UdpSocket::from_std(sock) {
            Ok(sock) => crate::transport::serve_observed(sock, stack_config, app, shutdown_signal(), observe).await,
            Err(e) => Err(e.into()),
        }
    };
    if let Some(x) = exporter {
        x.abort();
    }
    publish();
    if let Some(r) = &registry {
        let associations: usize =
            stacks.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|s| s.associations.count()).sum();
        tracing::info!(
            "summary: {} handshakes ({} failed), {} requests, {} associations at shutdown",
            r.sum("coaps_handshakes_total", None),
            r.sum("coaps_handshakes_total", None) - r.sum("coaps_handshakes_total", Some(("outcome", "ok"))),
            r.sum("coaps_requests_total", None),
            associations,
        );
    }
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("5700").unwrap(), "[::]:5700".parse().unwrap());
        assert_eq!(parse_listen("127.0.0.1:5700").unwrap(), "127.0.0.1:5700".parse().unwrap());
        assert_eq!(parse_listen("[::1]:5700").unwrap(), "[::1]:5700".parse().unwrap());
        assert!(parse_listen("nonsense").unwrap_err().contains("--listen `nonsense`"));
    }

    #[test]
    fn dual_stack_wildcard_accepts_ipv4() {
        let Ok(server) = bind_udp("[::]:0".parse().unwrap()) else {
            eprintln!("skipped: no IPv6 on this host");
            return;
        };
        let port = server.local_addr().unwrap().port();
        server.set_nonblocking(false).unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.ip().to_canonical(), client.local_addr().unwrap().ip());
    }
}
