//! `SessionCache`: the client's sessions per server name and port.
//!
//! * with real sessions from in-memory handshakes: DTLS 1.3 tickets newest first, bounded, each
//!   offered once; a DTLS 1.2 session kept (one per server) and reused; expired ones dropped;
//!   the saved form round-trips, and every truncation, bit flip, foreign file or newer version is
//!   refused without a panic;
//! * `Client` with a cache resumes DTLS 1.3 against the wolfSSL example server with the ticket
//!   that server sent (skipped without the wolfSSL peers, unless `COAPS_REQUIRE_PEERS=1`).

use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::SeededRng;
use coaps_dtls::{ClientConfig, DtlsVersion, Endpoint, Event, PeerVerifier, Psk, ServerConfig, Session, StaticPsks};
use coaps_test_support::wolfssl::{Dtls, data_cert, require_wolfssl, wolf_server_cert_args};
use coaps_tower::session_cache::{SessionCache, SessionFileError};
use coaps_tower::{Client, ClientOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn server_addr() -> SocketAddr {
    "192.0.2.1:5684".parse().unwrap()
}

/// `n` sessions from full handshakes with one in-memory server: DTLS 1.3 tickets or DTLS 1.2
/// session IDs.
fn sessions(version: DtlsVersion, n: u64) -> Vec<Session> {
    let psk = Psk::new("cache", b"0123456789abcdef".to_vec()).unwrap();
    let server = Arc::new(ServerConfig {
        psks: Some(Arc::new(StaticPsks(vec![psk.clone()]))),
        cookie: None,
        ..ServerConfig::default()
    });
    let client = Arc::new(ClientConfig { version, psk: Some(psk), ..ClientConfig::default() });
    let now = Instant::now();
    let mut s = Endpoint::server(server, SeededRng::from_seed_u64(1), now);
    (0..n)
        .map(|i| {
            let from: SocketAddr = SocketAddr::new([192, 0, 2, 9].into(), 1000 + i as u16);
            let mut c = Endpoint::client(SeededRng::from_seed_u64(100 + i));
            c.connect(now, server_addr(), client.clone(), "localhost", None).unwrap();
            for _ in 0..20 {
                while let Some(t) = c.poll_transmit() {
                    s.handle_datagram(now, from, &t.payload);
                }
                while let Some(t) = s.poll_transmit() {
                    c.handle_datagram(now, server_addr(), &t.payload);
                }
                while let Some((_, ev)) = c.poll_event() {
                    if let Event::Connected { .. } = ev {
                        // A DTLS 1.3 ticket comes after the handshake, with the server's answer.
                        c.send(server_addr(), b"x").unwrap();
                    }
                }
                while s.poll_event().is_some() {}
            }
            c.connection(&server_addr()).and_then(|c| c.session().cloned()).expect("a session")
        })
        .collect()
}

#[test]
fn tickets_newest_first_bounded_and_offered_once() {
    let tickets = sessions(DtlsVersion::Dtls13, 5);
    assert!(tickets.iter().all(Session::is_dtls13_ticket));
    let cache = SessionCache::new(8, 3);
    for t in &tickets {
        cache.insert("example.com", 5684, t.clone());
    }
    assert_eq!(cache.len(), 3, "bounded per server");
    let now = Instant::now();
    // Newest first, each once.
    for t in tickets.iter().rev().take(3) {
        assert_eq!(cache.take("example.com", 5684, now).as_ref().map(|s| &s.id), Some(&t.id));
    }
    assert!(cache.take("example.com", 5684, now).is_none());
    // Other names and ports are other servers.
    cache.insert("example.com", 5684, tickets[0].clone());
    assert!(cache.take("example.com", 5685, now).is_none());
    assert!(cache.take("example.org", 5684, now).is_none());
    // Expired tickets are dropped, not offered.
    let later = now + tickets[0].lifetime() + Duration::from_secs(1);
    assert!(cache.take("example.com", 5684, later).is_none());
    assert!(cache.is_empty());
}

#[test]
fn a_dtls12_session_is_kept_and_reused_and_servers_are_bounded() {
    let s = sessions(DtlsVersion::Dtls12, 2);
    let cache = SessionCache::new(2, 4);
    cache.insert("a", 1, s[0].clone());
    cache.insert("a", 1, s[1].clone());
    assert_eq!(cache.len(), 1, "one DTLS 1.2 session per server: the newest");
    let now = Instant::now();
    for _ in 0..3 {
        assert_eq!(cache.take("a", 1, now).map(|x| x.id), Some(s[1].id.clone()), "reused");
    }
    cache.insert("b", 1, s[0].clone());
    cache.insert("c", 1, s[0].clone());
    assert!(cache.sessions("a", 1).is_empty(), "the least recently updated server went");
    assert_eq!(cache.sessions("c", 1).len(), 1);
}

#[test]
fn saved_form_round_trips_and_refuses_damage() {
    let cache = SessionCache::default();
    for t in sessions(DtlsVersion::Dtls13, 2) {
        cache.insert("sensor.example", 5684, t);
    }
    cache.insert("gw", 61616, sessions(DtlsVersion::Dtls12, 1).remove(0));
    let (now, wall) = (Instant::now(), SystemTime::now());
    let saved = cache.save(now, wall);
    let loaded = SessionCache::load(&saved, now, wall).unwrap();
    for (name, port) in [("sensor.example", 5684), ("gw", 61616)] {
        let (a, b) = (cache.sessions(name, port), loaded.sessions(name, port));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.id, x.master_secret(), x.is_dtls13_ticket()),
                (&y.id, y.master_secret(), y.is_dtls13_ticket())
            );
        }
    }
    // In another process a minute later: the same sessions, a minute older.
    let later = SessionCache::load(&saved, now + Duration::from_secs(60), wall + Duration::from_secs(60)).unwrap();
    assert_eq!(later.len(), cache.len());

    for n in 0..saved.len() {
        assert!(SessionCache::load(&saved[..n], now, wall).is_err(), "a {n}-byte prefix loaded");
    }
    for i in 0..saved.len() {
        let mut d = saved.to_vec();
        d[i] ^= 0x10;
        assert!(SessionCache::load(&d, now, wall).is_err(), "a flip at {i} loaded");
    }
    assert_eq!(SessionCache::load(b"GIF89a....", now, wall).unwrap_err(), SessionFileError::Foreign);
    let mut v2 = saved.to_vec();
    v2[14] = 2;
    assert_eq!(SessionCache::load(&v2, now, wall).unwrap_err(), SessionFileError::UnknownVersion(2));
    // Debug shows no secret.
    let text = format!("{cache:?}");
    assert!(text.contains("sensor.example:5684 (2 sessions)"), "{text}");
}

/// Our `Client`, its cache filled by the first connection, resumes DTLS 1.3 with the ticket
/// the wolfSSL server sent (`-r`: it serves two connections).
#[tokio::test]
async fn client_resumes_against_wolfssl_with_a_cached_ticket() {
    let Some(wolf) = require_wolfssl() else { return };
    let mut args = wolf_server_cert_args(false);
    args.push("-r".into());
    let (mut server, addr) = wolf.server(Dtls::V13, None, &args);
    let roots = cert::load_certs_pem(&std::fs::read(data_cert("ca.crt")).unwrap()).unwrap();
    let config = Arc::new(ClientConfig {
        version: DtlsVersion::Dtls13,
        verifier: Some(PeerVerifier::WebPki(Arc::new(WebPkiVerifier::new(&roots).unwrap()))),
        ..ClientConfig::default()
    });
    let cache = SessionCache::default();
    let options = || ClientOptions { sessions: Some(cache.clone()), ..ClientOptions::default() };
    let first = tokio::time::timeout(
        Duration::from_secs(20),
        Client::connect_with(addr, config.clone(), "localhost", options()),
    )
    .await
    .expect("connect in time")
    .unwrap_or_else(|e| panic!("{e}\n{}", server.dump()));
    assert!(!first.info().resumed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.is_empty() {
        assert!(Instant::now() < deadline, "no NewSessionTicket from wolfSSL\n{}", server.dump());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.close().await;
    // wolfSSL's example server binds its UDP socket anew for the resumed session (`-r`): until
    // it has, the kernel answers "connection refused", which the client reports at once. Try
    // again for a bounded time, as a user would.
    let mut attempts = 0;
    let second = loop {
        attempts += 1;
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            Client::connect_with(addr, config.clone(), "localhost", options()),
        )
        .await
        .expect("connect in time");
        match r {
            Err(e) if attempts < 20 && e.to_string().contains("refused") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => break r.unwrap_or_else(|e| panic!("{e}\n{}", server.dump())),
        }
    };
    assert!(second.info().resumed, "not resumed\n{}", server.dump());
    second.close().await;
    server.wait_exit(Duration::from_secs(10));
    assert!(server.stdout().contains("SSL reused session"), "{}", server.dump());
}
