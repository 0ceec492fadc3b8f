//! Bytes and datagrams on the wire per handshake mode, this engine beside OpenSSL, both with the
//! cookie exchange (HelloVerifyRequest round trip included) and without. Not a timing bench:
//! it runs each handshake once in memory and prints a table. The engine's heap allocations per
//! handshake (client and server together) are counted too; OpenSSL's go through `malloc`, not
//! the Rust allocator, so they are not.
//!
//! DTLS 1.3 rows (this engine only: the `openssl` crate's DTLS is 1.2) follow for the full
//! handshake with the certificate, external PSK (psk_dhe_ke) and ticket resumption, with the
//! HelloRetryRequest cookie (the server default) and without. Flights are runs of datagrams in
//! one direction; round trips (RT) are the server flights the client had received when it
//! reported `Connected`, i.e. before it can send application data. DTLS 1.3's post-handshake
//! flights (the server's NewSessionTicket and ACK, the client's ACK) count in the flights and
//! bytes but not in RT.
//!
//! A last table counts what `coaps energy` charges a battery device for: each mode's handshake,
//! then one 32-byte CoAP GET and its answer (for 0-RTT, the GET as early data and the answer as
//! 0.5-RTT data), until nothing moves; aRT = server flights the client had received when it had
//! the answer. `crates/coaps-cli/tests/energy.rs` checks `coaps energy --json` against the same
//! harness.
//!
//! `cargo bench --bench wire_bytes`

use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType};
use coaps_bench_support::alloc::thread_allocations as allocations;
use coaps_bench_support::{CountingAlloc, Mode, Outcome, ossl, ours};
use coaps_dtls::CipherSuite;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn row(label: &str, stack: &str, cookies: bool, o: &Outcome, allocs: Option<u64>) {
    let w = &o.wire;
    let hvr = if cookies { format!("{} + {}", w.client_hello_bytes, w.hello_verify_request_bytes) } else { "-".into() };
    println!(
        "| {label:<48} | {stack:<7} | {:>3} / {:>5} | {:>3} / {:>5} | {:>3} | {:>5} | {:>2} / {:>2} | {:>2} | {hvr:>11} | {:>6} |",
        w.c2s_datagrams,
        w.c2s_bytes,
        w.s2c_datagrams,
        w.s2c_bytes,
        w.datagrams(),
        w.bytes(),
        w.c2s_flights,
        w.s2c_flights,
        w.round_trips,
        allocs.map_or("-".into(), |a| a.to_string()),
    );
}

fn header(title: &str) {
    println!("{title}");
    println!();
    println!(
        "| {:<48} | {:<7} | c→s dg / B  | s→c dg / B  | dg  | bytes | flights | RT | CH1 + HVR B | allocs |",
        "mode", "stack"
    );
    println!(
        "|{:-<50}|{:-<9}|{:-<13}|{:-<13}|{:-<5}|{:-<7}|{:-<9}|{:-<4}|{:-<13}|{:-<8}|",
        "", "", "", "", "", "", "", "", "", ""
    );
}

/// One measured handshake of `h` (after a warm-up one), and the allocations it made.
fn measure(h: &mut ours::Harness, resume: bool) -> (Outcome, u64) {
    if resume {
        h.prime_session();
    }
    // One handshake first, so lazily built state (e.g. the CPU-feature probes) is not counted.
    h.handshake(resume);
    let before = allocations();
    let o = h.handshake(resume);
    (o, allocations() - before)
}

fn dtls13() {
    header("Bytes on the wire per DTLS 1.3 handshake, this engine (UDP payloads; MTU 1152; in memory, no loss)");
    let chacha = CipherSuite::TLS_CHACHA20_POLY1305_SHA256;
    let ccm8 = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    for cookies in [true, false] {
        for (label, mode, suite, resume) in [
            ("1.3 ecdhe-ecdsa chacha20", Mode::EcdsaCcm8, chacha, false),
            ("1.3 ecdhe-ecdsa ccm8", Mode::EcdsaCcm8, ccm8, false),
            ("1.3 psk-dhe chacha20", Mode::EcdhePskChaCha, chacha, false),
            ("1.3 psk-dhe ccm8", Mode::PskCcm8, ccm8, false),
            ("1.3 resumed (ticket) ecdsa chacha20", Mode::EcdsaCcm8, chacha, true),
            ("1.3 resumed (ticket) psk ccm8", Mode::PskCcm8, ccm8, true),
        ] {
            let mut h = ours::Harness::with13(mode, suite, |c| {
                if !cookies {
                    c.cookie = None;
                }
            });
            let (o, allocs) = measure(&mut h, resume);
            let label = format!("{label}{}", if cookies { " (HRR cookie)" } else { " (no cookie)" });
            row(&label, "coaps", cookies, &o, Some(allocs));
        }
    }
    // The whole 0-RTT handshake, counted like the rows above (`coaps energy`'s dtls1.3-0rtt):
    // from the ticket's address the server skips the cookie (RFC 9147 §5.1).
    let mut h =
        ours::Harness::with13(Mode::PskCcm8, ccm8, |c| c.early_data = Some(coaps_dtls::EarlyDataConfig::default()));
    h.prime_session();
    h.handshake_early(&[0x42u8; 32]);
    let before = allocations();
    let o = h.handshake_early(&[0x42u8; 32]);
    row("1.3 resumed psk ccm8 0-RTT, 32-byte request", "coaps", false, &o, Some(allocations() - before));
    println!();
    println!("CH1 + HVR for 1.3 = first ClientHello + HelloRetryRequest (the cookie round trip).");
    println!();
    first_application_byte();
    println!("The 1.3 client sends a P-256 key share by default, so external PSK and tickets run psk_dhe_ke");
    println!("(ClientConfig::resumption_key_exchange = PskKe resumes without one).");
}

/// 0-RTT beside 1-RTT resumption: what crosses the wire before the server has the client's
/// first application byte (a 32-byte request), with the server's default cookie exchange
/// (skipped for a 0-RTT resumption from the ticket's address, RFC 9147 §5.1).
fn first_application_byte() {
    println!(
        "Until the server has the client's first application byte (DTLS 1.3 ticket resumption, 32-byte request, MTU 1152)"
    );
    println!();
    println!("| {:<74} | RT | dg | bytes | aRT | dg | bytes |", "mode");
    println!("|{:-<76}|{:-<4}|{:-<4}|{:-<7}|{:-<5}|{:-<4}|{:-<7}|", "", "", "", "", "", "", "");
    let request = [0x42u8; 32];
    let chacha = CipherSuite::TLS_CHACHA20_POLY1305_SHA256;
    let ccm8 = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    for (label, mode, suite) in [("psk ccm8", Mode::PskCcm8, ccm8), ("ecdsa chacha20", Mode::EcdsaCcm8, chacha)] {
        for (how, early, cookie, psk_ke, skip) in [
            ("1-RTT, HRR cookie", false, true, false, false),
            ("1-RTT, cookie skipped (§5.1)", false, true, false, true),
            ("1-RTT, no cookie", false, false, false, false),
            ("0-RTT", true, true, false, false),
            ("0-RTT, psk_ke (no key share)", true, true, true, false),
        ] {
            let mut h = ours::Harness::with13(mode, suite, |c| {
                c.early_data = Some(coaps_dtls::EarlyDataConfig::default());
                c.skip_cookie_on_resumption = skip;
                if !cookie {
                    c.cookie = None;
                }
            });
            h.prime_session();
            if psk_ke {
                h.tweak_client(|c| c.resumption_key_exchange = coaps_dtls::ResumptionKeyExchange::PskKe);
            }
            let f = h.first_byte(&request, early);
            assert_eq!(f.early, early);
            // A ticket that carried accepted early data is single-use (RFC 8446 §8.1).
            h.prime_session();
            let a = h.answer(&request, &[0x24u8; 64], early);
            assert_eq!(a.early, early);
            let label = format!("1.3 resumed (ticket) {label}: {how}");
            println!(
                "| {label:<74} | {:>2} | {:>2} | {:>5} | {:>3} | {:>2} | {:>5} |",
                f.round_trips, f.datagrams, f.bytes, a.round_trips, a.datagrams, a.bytes
            );
        }
        // An unsafe request (a POST) sent as 0-RTT data and held by the server until the
        // handshake completes (EarlyDataLayer's defer policy), from the ticket's address (no
        // cookie, RFC 9147 §5.1) and with the HelloRetryRequest cookie (which refuses the early
        // data: the client sends the request again once connected).
        for (how, skip) in [("deferred 0-RTT POST, cookie skipped", true), ("deferred 0-RTT POST, HRR cookie", false)] {
            let mut h = ours::Harness::with13(mode, suite, |c| {
                c.early_data =
                    Some(coaps_dtls::EarlyDataConfig { skip_cookie_on_resumption: skip, ..Default::default() });
            });
            h.prime_session();
            let f = h.first_byte_or_resent(&request);
            h.prime_session();
            let a = h.answer_deferred(&request, &[0x24u8; 64]);
            assert_eq!(a.early, skip, "{how}: early data accepted only without the cookie round trip");
            let label = format!("1.3 resumed (ticket) {label}: {how}");
            println!(
                "| {label:<74} | {:>2} | {:>2} | {:>5} | {:>3} | {:>2} | {:>5} |",
                f.round_trips, f.datagrams, f.bytes, a.round_trips, a.datagrams, a.bytes
            );
        }
    }
    println!();
    println!("RT = server flights the client had received when the server got the data; dg and bytes count both");
    println!("directions up to then. A 0-RTT resumption from the ticket's address skips the cookie (RFC 9147 §5.1).");
    println!(
        "aRT, dg, bytes after it: until the client has the server's 64-byte answer, sent as soon as the server has the request"
    );
    println!("(for 0-RTT requests as 0.5-RTT data, right after the server's Finished, RFC 8446 §2.3).");
    println!("Deferred 0-RTT POST: the server has the request early (first columns) but answers only after the");
    println!("client's Finished; with the HRR cookie the early data is refused and the POST is sent again in 1-RTT.");
}

/// `coaps energy`'s request and answer (`coaps_cli::energy::run::{request, answer}`): a
/// confirmable GET of /sensors/temperature with an 8-byte token (32 bytes), and its
/// piggybacked 2.05 Content, text/plain "21.5 C".
fn reading() -> (Vec<u8>, Vec<u8>) {
    let token = vec![0x5e, 0x17, 0xa3, 0x09, 0xc4, 0x2b, 0x71, 0xd8];
    let mut req = Packet::new();
    req.header.set_type(MessageType::Confirmable);
    req.header.code = MessageClass::Request(RequestType::Get);
    req.header.message_id = 0x7d01;
    req.set_token(token.clone());
    req.add_option(CoapOption::UriPath, b"sensors".to_vec());
    req.add_option(CoapOption::UriPath, b"temperature".to_vec());
    let mut ans = Packet::new();
    ans.header.set_type(MessageType::Acknowledgement);
    ans.header.code = MessageClass::Response(ResponseType::Content);
    ans.header.message_id = 0x7d01;
    ans.set_token(token);
    ans.set_content_format(ContentFormat::TextPlain);
    ans.payload = b"21.5 C".to_vec();
    (req.to_bytes().expect("request"), ans.to_bytes().expect("answer"))
}

/// `coaps energy`'s rows: handshake + one CoAP GET + its answer, per mode.
fn wake_ups() {
    let (req, ans) = reading();
    println!(
        "Handshake + one {}-byte CoAP GET + its {}-byte answer (coaps energy's rows; CCM_8, cookie exchange on, in memory, no loss)",
        req.len(),
        ans.len()
    );
    println!();
    println!("| {:<22} | c→s dg / B  | s→c dg / B  | dg  | bytes | RT | aRT |", "mode");
    println!("|{:-<24}|{:-<13}|{:-<13}|{:-<5}|{:-<7}|{:-<4}|{:-<5}|", "", "", "", "", "", "", "");
    let ccm8 = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    let early_data = |c: &mut coaps_dtls::ServerConfig| c.early_data = Some(coaps_dtls::EarlyDataConfig::default());
    let rows: [(&str, ours::Harness, bool, bool); 8] = [
        ("dtls1.2-psk", ours::Harness::new(Mode::PskCcm8), false, false),
        ("dtls1.2-psk-nocookie", ours::Harness::with(Mode::PskCcm8, |c| c.cookie = None), false, false),
        ("dtls1.2-ecdhe-ecdsa", ours::Harness::new(Mode::EcdsaCcm8), false, false),
        ("dtls1.2-resumption", ours::Harness::new(Mode::PskCcm8), true, false),
        ("dtls1.3-cert", ours::Harness::with13(Mode::EcdsaCcm8, ccm8, |_| {}), false, false),
        ("dtls1.3-psk", ours::Harness::with13(Mode::PskCcm8, ccm8, |_| {}), false, false),
        (
            "dtls1.3-resumption",
            ours::Harness::with13(Mode::PskCcm8, ccm8, |c| c.skip_cookie_on_resumption = true),
            true,
            false,
        ),
        ("dtls1.3-0rtt", ours::Harness::with13(Mode::PskCcm8, ccm8, early_data), true, true),
    ];
    for (label, mut h, resume, early) in rows {
        if resume {
            h.prime_session();
        }
        h.exchange(resume, early, &req, &ans);
        let w = h.exchange(resume, early, &req, &ans).wire;
        println!(
            "| {label:<22} | {:>3} / {:>5} | {:>3} / {:>5} | {:>3} | {:>5} | {:>2} | {:>3} |",
            w.c2s_datagrams,
            w.c2s_bytes,
            w.s2c_datagrams,
            w.s2c_bytes,
            w.datagrams(),
            w.bytes(),
            w.round_trips,
            w.answer_round_trips
        );
    }
    println!();
    println!("RT = round trips until connected; aRT = until the client has the answer.");
}

fn main() {
    header("Bytes on the wire per DTLS 1.2 handshake (UDP payloads; MTU 1152; in memory, no loss)");
    for cookies in [true, false] {
        for mode in Mode::ALL {
            for resume in [false, true] {
                if resume && !matches!(mode, Mode::PskCcm8 | Mode::EcdsaCcm8) {
                    continue;
                }
                let label = format!(
                    "{}{}{}",
                    if resume { "resumed " } else { "" },
                    mode,
                    if cookies { "" } else { " (no cookie)" }
                );
                let mut h = ours::Harness::with(mode, |c| {
                    if !cookies {
                        c.cookie = None;
                    }
                });
                let (o, allocs) = measure(&mut h, resume);
                row(&label, "coaps", cookies, &o, Some(allocs));

                let mut h = ossl::Harness::with_cookies(mode, cookies);
                if resume {
                    h.prime_session();
                }
                let o = h.handshake(resume);
                row(&label, "openssl", cookies, &o, None);
            }
        }
    }
    println!();
    println!("dg = datagrams; CH1 + HVR = first ClientHello + HelloVerifyRequest (the cookie round trip).");
    println!("OpenSSL: session tickets off (session-ID resumption, like the engine); cookie = 16-byte HMAC-SHA-256.");
    println!("flights = client / server flights; RT = round trips until the client is connected.");
    println!();
    dtls13();
    println!();
    wake_ups();
}
