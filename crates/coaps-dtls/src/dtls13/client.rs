//! The DTLS 1.3 client handshake (RFC 9147 §5, RFC 8446 §4): one struct per state, each with
//! the data that state has and a consuming transition for the messages it may receive, in the
//! order of RFC 8446 §2 (ServerHello or HelloRetryRequest, EncryptedExtensions, an optional
//! CertificateRequest, Certificate and CertificateVerify unless a PSK authenticates the server,
//! Finished). The client configuration lives here; the association's record layer, flights
//! and transcript are the [`Core`]'s.

use crate::codec::*;
use crate::config::early_data::ResumptionKeyExchange;
use crate::config::{ClientConfig, PeerVerifier};
use crate::crypto::{AeadAlgorithm, EcdhKeyPair, Rng, SeededRng};
use crate::dtls13::cid::Cids13;
use crate::dtls13::early::{self, ClientEarly};
use crate::dtls13::engine::{
    ClientTickets, Core, EPOCH_APPLICATION, EPOCH_HANDSHAKE, EPOCH_PLAINTEXT, Incoming, SentClientHello, Transcript,
    suite13,
};
use crate::dtls13::key_schedule::{self as tls13, EarlySecret, HandshakeSecret, Secret};
use crate::dtls13::msgs::*;
use crate::dtls13::record::{ReceiveEpoch13, SendEpoch13};
use crate::error::{ConfigError, Error, Incompatible, PeerMisbehaved, UsageError};
use crate::resumption::Session;
use crate::types::{Event, PeerIdentity, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// The client's configuration and the server name the handshake is for, carried from state
/// to state and dropped with the last one.
struct Context {
    config: Arc<ClientConfig>,
    server_name: String,
}

/// Secrets and parameters of a handshake in progress, from the ServerHello on.
struct Keys {
    suite: CipherSuite,
    aead: AeadAlgorithm,
    /// Until our Finished, which derives the master secret from it.
    hs_secret: HandshakeSecret,
    client_hs: Secret,
    server_hs: Secret,
    /// A PSK (external or ticket) was selected: the server authenticates with it, not with a
    /// certificate (RFC 8446 §2.2).
    psk: bool,
    cert_type: CertificateType,
    /// The CertificateRequest's context, to echo in our Certificate (RFC 8446 §4.4.2).
    cert_requested: Option<Vec<u8>>,
    identity: PeerIdentity,
}

/// The client's handshake state; none once established.
// Each variant is named after the state struct it holds, which says what is expected next.
#[allow(clippy::enum_variant_names)]
pub(crate) enum State {
    ExpectServerHello(ExpectServerHello),
    ExpectEncryptedExtensions(ExpectEncryptedExtensions),
    ExpectCertificateOrRequest(ExpectCertificateOrRequest),
    ExpectCertificate(ExpectCertificate),
    ExpectCertificateVerify(ExpectCertificateVerify),
    ExpectFinished(ExpectFinished),
}

impl State {
    /// The next state for `msg`, `None` once the handshake is complete.
    pub(crate) fn handle(self, core: &mut Core, now: Instant, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        match self {
            State::ExpectServerHello(s) => s.handle(core, now, msg),
            State::ExpectEncryptedExtensions(s) => s.handle(core, msg),
            State::ExpectCertificateOrRequest(s) => s.handle(msg),
            State::ExpectCertificate(s) => s.handle(msg),
            State::ExpectCertificateVerify(s) => s.handle(core, msg),
            State::ExpectFinished(s) => s.handle(core, now, msg),
        }
    }

    /// The ClientHello is still the first one and unanswered: a dual-version client may hand
    /// it over to DTLS 1.2 ([`Core::take_first_client_hello`]).
    pub(crate) fn take_first_client_hello(&self, core: &mut Core) -> Option<SentClientHello> {
        match self {
            State::ExpectServerHello(s) if !s.retried => core.take_first_client_hello(),
            _ => None,
        }
    }

    /// One more 0-RTT record, only while the ServerHello is awaited (RFC 8446 §4.2.10).
    pub(crate) fn send_early_data(&mut self, core: &mut Core, data: &[u8]) -> Result<(), UsageError> {
        match self {
            State::ExpectServerHello(ExpectServerHello { early: Some(e), .. }) => e.send(core, data),
            _ => Err(UsageError::NotConnected),
        }
    }

    /// The timer resent the ClientHello: its 0-RTT records go along.
    pub(crate) fn on_retransmit(&self, core: &mut Core) {
        if let State::ExpectServerHello(ExpectServerHello { early: Some(e), .. }) = self {
            e.resend(core);
        }
    }
}

fn out_of_order() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageOutOfOrder)
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// The client's key share and psk_key_exchange_modes when resuming: psk_ke alone drops the
/// key share (RFC 8446 §4.2.9). An external PSK offered beside the ticket then runs psk_ke too.
fn resumption_modes(config: &ClientConfig, resuming: bool) -> (bool, Vec<PskKeyExchangeMode>) {
    if resuming && config.resumption_key_exchange == ResumptionKeyExchange::PskKe {
        (false, vec![PskKeyExchangeMode::PskKe])
    } else {
        (true, vec![PskKeyExchangeMode::PskDheKe, PskKeyExchangeMode::PskKe])
    }
}

/// After a HelloRetryRequest that asks for secp256r1 (RFC 8446 §4.1.4): a psk_ke-only
/// ClientHello gains the key share and offers psk_dhe_ke too.
fn add_key_share(ch: &mut ClientHello13, public_key: &[u8]) {
    if ch.key_share_for(NamedGroup::Secp256r1).is_some() {
        return;
    }
    let share = ClientExtension13::KeyShare(vec![KeyShareEntry {
        group: NamedGroup::Secp256r1,
        key_exchange: public_key.to_vec(),
    }]);
    let pos =
        ch.extensions.iter().position(|e| matches!(e, ClientExtension13::SupportedGroups(_))).map_or(0, |p| p + 1);
    ch.extensions.insert(pos, share);
    for e in &mut ch.extensions {
        if let ClientExtension13::PskKeyExchangeModes(m) = e
            && !m.contains(&PskKeyExchangeMode::PskDheKe)
        {
            m.insert(0, PskKeyExchangeMode::PskDheKe);
        }
    }
}

/// A client association's first flight: the ClientHello, and `early_data` as 0-RTT data when
/// the ticket allows it (RFC 8446 §4.2.10; see `early.rs`).
pub(crate) fn start(
    config: Arc<ClientConfig>,
    peer: SocketAddr,
    server_name: &str,
    resume: Option<Session>,
    early_data: Option<&[u8]>,
    rng: SeededRng,
    now: Instant,
) -> Result<(Core, State), ConfigError> {
    let suites: Vec<CipherSuite> = config.common.suites13.clone();
    if suites.is_empty() {
        return Err(ConfigError::new("no DTLS 1.3 cipher suite configured: set CommonConfig::suites13"));
    }
    if config.psk.is_none() && config.verifier.is_none() {
        return Err(ConfigError::new("DTLS 1.3 needs a PSK or a CA / pinned key: set ClientConfig::psk or ::verifier"));
    }
    let mut c = Core::new(Role::Client, peer, config.clone(), rng, now, None);
    let mut random = [0u8; 32];
    c.rng().fill(&mut random);
    c.client_random = random;
    // DtlsVersion::Auto: one ClientHello for a 1.3 and a 1.2 server (crate::auto).
    let dual = (config.version == crate::config::DtlsVersion::Auto)
        .then(|| crate::dtls13::dual_hello::dual_hello_extras(&config, resume.as_ref()));
    // A ticket is offered only for a suite we still allow (RFC 8446 §4.2.11: same hash).
    let resume = resume.filter(|s| {
        suites.contains(&s.suite)
            && s.ticket13.is_some()
            && now.saturating_duration_since(s.established_at) < s.lifetime
    });
    let provider = config.common.provider.clone();
    // RFC 8446 §4.2.10: early data only with a ticket that allows this much of it.
    let offer_early = early_data.filter(|d| {
        resume.as_ref().and_then(|s| s.max_early_data_size()).is_some_and(|m| d.len() as u64 <= u64::from(m))
    });
    let (key_share, psk_modes) = resumption_modes(&config, resume.is_some());
    // A psk_ke-only resumption sends no key share: no P-256 scalar multiplication for it.
    let eph = if key_share { Some(provider.ecdh_p256(c.rng())?) } else { None };
    let mut extensions = vec![
        ClientExtension13::SupportedVersions(match dual {
            Some(_) => vec![ProtocolVersion::DTLS1_3, ProtocolVersion::DTLS1_2],
            None => vec![ProtocolVersion::DTLS1_3],
        }),
        ClientExtension13::SupportedGroups(vec![NamedGroup::Secp256r1]),
    ];
    if let Some(eph) = &eph {
        extensions.push(ClientExtension13::KeyShare(vec![KeyShareEntry {
            group: NamedGroup::Secp256r1,
            key_exchange: eph.public_key().to_vec(),
        }]));
    }
    if config.verifier.is_some() {
        extensions.push(ClientExtension13::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]));
        if matches!(config.verifier, Some(PeerVerifier::Pinned(_))) {
            extensions.push(ClientExtension13::ServerCertificateType(vec![CertificateType::RawPublicKey]));
        }
    }
    if !server_name.is_empty() && !is_ip_literal(server_name) {
        extensions.push(ClientExtension13::ServerName(vec![ServerName {
            name_type: 0,
            name: server_name.as_bytes().to_vec(),
        }]));
    }
    if let Some(d) = &dual {
        extensions.extend(d.extensions.iter().cloned());
    }
    // RFC 9147 §9 / RFC 9146 §3: the CID we want to receive, read with from now on (the
    // server's encrypted flight carries it) until the ServerHello says whether it agreed. In a
    // dual-version hello it is the same extension for a DTLS 1.2 server (the 1.2 engine takes
    // the offer over on a fall back).
    if let Some(cfg) = config.connection_id.as_ref() {
        let cid = cfg.generate(c.rng());
        extensions.push(ClientExtension13::ConnectionId(cid.clone()));
        c.cid = Some(Box::new(Cids13::offered(cfg.clone(), cid)));
    }
    let mut identities = Vec::new();
    if let Some(ticket) = &resume {
        // RFC 8446 §4.2.11.1: the ticket age in ms, obfuscated by the ticket's age_add.
        let age = now.saturating_duration_since(ticket.established_at).as_millis() as u32;
        let add = ticket.ticket13.as_ref().map_or(0, |t| t.age_add);
        identities.push(PskIdentity { identity: ticket.id.clone(), obfuscated_ticket_age: age.wrapping_add(add) });
    }
    if let Some(psk) = &config.psk {
        identities.push(PskIdentity { identity: psk.identity.clone(), obfuscated_ticket_age: 0 });
    }
    if offer_early.is_some() {
        extensions.push(ClientExtension13::EarlyData);
    }
    if !identities.is_empty() {
        extensions.push(ClientExtension13::PskKeyExchangeModes(psk_modes));
        // RFC 8446 §4.2.11: pre_shared_key is the last extension; binders are filled in
        // once the truncated ClientHello is known.
        let binders = vec![vec![0u8; 32]; identities.len()];
        extensions.push(ClientExtension13::PreSharedKey(OfferedPsks { identities, binders }));
    }
    let ch = ClientHello13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        random: Random(random),
        legacy_session_id: dual.as_ref().map(|d| d.legacy_session_id.clone()).unwrap_or_default(),
        legacy_cookie: Vec::new(),
        cipher_suites: suites.into_iter().chain(dual.into_iter().flat_map(|d| d.suites12)).collect(),
        legacy_compression_methods: vec![Compression::Null],
        extensions,
    };
    let cx = Context { config, server_name: server_name.to_owned() };
    send_client_hello(&mut c, now, &cx, resume.as_ref(), &ch).map_err(ConfigError::starting)?;
    let early = match (offer_early, &resume, early_data) {
        (Some(d), Some(ticket), _) => Some(ClientEarly::start(&mut c, ticket, d).map_err(ConfigError::starting)?),
        (_, _, Some(_)) => {
            c.out.events.push_back(Event::EarlyDataRejected);
            None
        }
        _ => None,
    };
    Ok((c, State::ExpectServerHello(ExpectServerHello { cx, ch, eph, retried: false, resume, early })))
}

/// Encodes `ch` with its PSK binders computed over the transcript so far plus the truncated
/// ClientHello (RFC 8446 §4.2.11.2), adds it to the transcript and sends it.
fn send_client_hello(
    core: &mut Core,
    now: Instant,
    cx: &Context,
    resume: Option<&Session>,
    ch: &ClientHello13,
) -> Result<(), Error> {
    let mut body = Vec::new();
    let offset = ch.encode_with_binders_offset(&mut body);
    if let Some(off) = offset {
        let mut partial = Vec::new();
        truncated_client_hello_transcript(&body, off, &mut partial);
        let th = core.tr.transcript.hash_with(&*cx.config.common.provider, &partial);
        // One binder per identity, in order: the ticket (resumption binder key), then the
        // external PSK (RFC 8446 §7.1 "ext binder" / "res binder").
        let mut binders = Vec::new();
        let p = &*cx.config.common.provider;
        if let Some(t) = resume.and_then(|s| s.ticket13.as_ref()) {
            binders
                .push(tls13::psk_binder(p, &EarlySecret::new(p, Some(&t.psk[..])).binder_key(p, false), &th).to_vec());
        }
        if let Some(psk) = &cx.config.psk {
            binders.push(tls13::psk_binder(p, &EarlySecret::new(p, Some(psk.key())).binder_key(p, true), &th).to_vec());
        }
        write_binders(&mut body, off, &binders)?;
    }
    core.reasm.set_next_seq(core.send_seq);
    core.tr.flight.clear();
    core.queue(EPOCH_PLAINTEXT, HandshakeType::ClientHello, body);
    core.send_new_flight(now, true);
    Ok(())
}

/// Our ClientHello is out; a ServerHello or a HelloRetryRequest answers it.
pub(crate) struct ExpectServerHello {
    cx: Context,
    ch: ClientHello13,
    /// `None` while no key share was sent (a psk_ke-only resumption): the P-256 key pair is
    /// only made once a HelloRetryRequest asks for one.
    eph: Option<Box<dyn EcdhKeyPair>>,
    /// A HelloRetryRequest came already; a second one is an error (RFC 8446 §4.1.4).
    retried: bool,
    /// The ticket offered for resumption.
    resume: Option<Session>,
    early: Option<Box<ClientEarly>>,
}

impl ExpectServerHello {
    fn handle(self, core: &mut Core, now: Instant, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::ServerHello {
            return Err(out_of_order());
        }
        let body = msg.body;
        let Self { cx, ch, eph, retried, resume, mut early } = self;
        let provider = cx.config.common.provider.clone();
        match ServerHelloMessage13::read_exact(body)? {
            ServerHelloMessage13::HelloRetryRequest(hrr) => {
                if retried {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::SecondHelloRetryRequest));
                }
                if hrr.selected_version() != Some(ProtocolVersion::DTLS1_3) {
                    return Err(Error::Incompatible(Incompatible::HelloRetryRequestWithoutDtls13));
                }
                if !ch.cipher_suites.contains(&hrr.cipher_suite) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::HelloRetryRequestUnofferedSuite));
                }
                if hrr.selected_group().is_some_and(|g| g != NamedGroup::Secp256r1) {
                    return Err(Error::Incompatible(Incompatible::HelloRetryRequestUnsupportedGroup));
                }
                // RFC 8446 §4.4.1: the transcript restarts with message_hash(ClientHello1).
                let ch1_hash = core.tr.transcript.hash(&*provider);
                let mut restart = Vec::new();
                message_hash(&ch1_hash, &mut restart);
                core.tr.transcript = Transcript::default();
                core.tr.transcript.add_raw(&*provider, &restart);
                core.tr.transcript.add(&*provider, HandshakeType::ServerHello, body);
                let mut ch2 = ch.clone();
                early::client_after_hrr(early.as_deref_mut(), &mut ch2);
                let mut eph = eph;
                if hrr.selected_group() == Some(NamedGroup::Secp256r1) {
                    let pair = match eph {
                        Some(pair) => pair,
                        None => provider.ecdh_p256(core.rng())?,
                    };
                    add_key_share(&mut ch2, pair.public_key());
                    eph = Some(pair);
                }
                if let Some(cookie) = hrr.cookie() {
                    let pos = ch2
                        .extensions
                        .iter()
                        .position(|e| matches!(e, ClientExtension13::PreSharedKey(_)))
                        .unwrap_or(ch2.extensions.len());
                    ch2.extensions.insert(pos, ClientExtension13::Cookie(cookie.to_vec()));
                }
                send_client_hello(core, now, &cx, resume.as_ref(), &ch2)?;
                Ok(Some(State::ExpectServerHello(ExpectServerHello { cx, ch: ch2, eph, retried: true, resume, early })))
            }
            ServerHelloMessage13::ServerHello(sh) => {
                if sh.selected_version() != Some(ProtocolVersion::DTLS1_3) {
                    return Err(Error::Incompatible(Incompatible::ServerDidNotSelectDtls13));
                }
                if DowngradeSentinel::find(&sh.random).is_some() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::DowngradeSentinel13));
                }
                if !ch.cipher_suites.contains(&sh.cipher_suite) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedSuite13));
                }
                let aead = suite13(sh.cipher_suite).ok_or(Error::PeerMisbehaved(PeerMisbehaved::UnknownSuite13))?;
                core.tr.transcript.add(&*provider, HandshakeType::ServerHello, body);
                let ticket = resume;
                let n_offered = usize::from(ticket.is_some()) + usize::from(cx.config.psk.is_some());
                let chosen: Option<(Zeroizing<Vec<u8>>, PeerIdentity, bool)> = match sh.selected_identity() {
                    Some(i) if usize::from(i) >= n_offered => {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerSelectedUnofferedPsk));
                    }
                    Some(0) if ticket.is_some() => ticket.as_ref().and_then(|t| {
                        let psk = t.ticket13.as_ref()?.psk.to_vec();
                        Some((Zeroizing::new(psk), t.peer_identity.clone(), true))
                    }),
                    Some(_) => cx
                        .config
                        .psk
                        .as_ref()
                        .map(|p| (Zeroizing::new(p.key().to_vec()), PeerIdentity::Psk(p.identity.clone()), false)),
                    None => None,
                };
                if let (Some((_, _, true)), Some(t)) = (&chosen, &ticket)
                    && t.suite != sh.cipher_suite
                {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumedWithOtherSuite13));
                }
                let psk_used = chosen.is_some();
                core.resumed = chosen.as_ref().is_some_and(|c| c.2);
                let shared = match sh.key_share() {
                    Some(ks) if ks.group == NamedGroup::Secp256r1 => {
                        // RFC 8446 §4.2.8: the server's share answers one we sent.
                        let eph = eph.ok_or(Error::PeerMisbehaved(PeerMisbehaved::KeyShareNotOffered))?;
                        Some(
                            eph.complete(&ks.key_exchange)
                                .map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?,
                        )
                    }
                    Some(_) => {
                        return Err(Error::PeerMisbehaved(PeerMisbehaved::KeyShareUnofferedGroup));
                    }
                    None if psk_used => None,
                    None => return Err(Error::PeerMisbehaved(PeerMisbehaved::MissingKeyShare)),
                };
                let p = core.provider();
                let early_secret = EarlySecret::new(&*p, chosen.as_ref().map(|c| &c.0[..]));
                let hs_secret = early_secret.into_handshake(&*p, shared.as_ref().map(|z| &z[..]));
                let th = core.transcript_hash();
                let client_hs = hs_secret.client_handshake_traffic_secret(&*p, &th);
                let server_hs = hs_secret.server_handshake_traffic_secret(&*p, &th);
                core.tr.send_hs = Some(SendEpoch13::new(EPOCH_HANDSHAKE, core.protection(aead, &client_hs)?));
                core.tr.recv_hs = Some(ReceiveEpoch13::new(EPOCH_HANDSHAKE, core.protection(aead, &server_hs)?));
                core.suite = Some(sh.cipher_suite);
                // RFC 9146 §3: the CID the server wants in our records; only if we offered.
                match (sh.connection_id(), core.cid.as_deref_mut()) {
                    (Some(theirs), Some(c)) => {
                        c.out = theirs.to_vec();
                        c.negotiated = true;
                    }
                    (Some(_), None) => return Err(Error::PeerMisbehaved(PeerMisbehaved::UnsolicitedServerExtension)),
                    (None, _) => core.cid = None,
                }
                let identity = chosen.map_or(PeerIdentity::Anonymous, |c| c.1);
                // The server's flight is answered by ours: stop retransmitting the ClientHello.
                core.timer_armed = false;
                let k = Keys {
                    suite: sh.cipher_suite,
                    aead,
                    hs_secret,
                    client_hs,
                    server_hs,
                    psk: psk_used,
                    cert_type: CertificateType::X509,
                    cert_requested: None,
                    identity,
                };
                Ok(Some(State::ExpectEncryptedExtensions(ExpectEncryptedExtensions { cx, k, early })))
            }
        }
    }
}

/// Handshake keys are in place; the server's encrypted flight starts.
pub(crate) struct ExpectEncryptedExtensions {
    cx: Context,
    k: Keys,
    /// Our 0-RTT data, if offered: EncryptedExtensions tells its fate.
    early: Option<Box<ClientEarly>>,
}

impl ExpectEncryptedExtensions {
    fn handle(self, core: &mut Core, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::EncryptedExtensions {
            return Err(out_of_order());
        }
        let Self { cx, mut k, early } = self;
        let ee = EncryptedExtensions13::read_exact(msg.body)?;
        if let Some(t) = ee.server_certificate_type() {
            k.cert_type = t;
        }
        early::client_outcome(early, core, ee.has_early_data())?;
        Ok(Some(if k.psk {
            State::ExpectFinished(ExpectFinished { cx, k })
        } else {
            State::ExpectCertificateOrRequest(ExpectCertificateOrRequest { cx, k })
        }))
    }
}

/// Certificate authentication: the server may ask for our certificate first (RFC 8446
/// §4.3.2).
pub(crate) struct ExpectCertificateOrRequest {
    cx: Context,
    k: Keys,
}

impl ExpectCertificateOrRequest {
    fn handle(self, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        let Self { cx, mut k } = self;
        match msg.msg_type {
            HandshakeType::CertificateRequest => {
                let cr = CertificateRequest13::read_exact(msg.body)?;
                k.cert_requested = Some(cr.certificate_request_context);
                Ok(Some(State::ExpectCertificate(ExpectCertificate { cx, k })))
            }
            HandshakeType::Certificate => ExpectCertificate { cx, k }.handle(msg),
            _ => Err(out_of_order()),
        }
    }
}

/// The server's Certificate (RFC 8446 §4.4.2), after its CertificateRequest.
pub(crate) struct ExpectCertificate {
    cx: Context,
    k: Keys,
}

impl ExpectCertificate {
    fn handle(self, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::Certificate {
            return Err(out_of_order());
        }
        let Self { cx, mut k } = self;
        let (point, identity) = verify_server_certificate(&cx, &k, msg.body)?;
        k.identity = identity;
        Ok(Some(State::ExpectCertificateVerify(ExpectCertificateVerify { cx, k, point })))
    }
}

fn verify_server_certificate(cx: &Context, k: &Keys, body: &[u8]) -> Result<([u8; 65], PeerIdentity), Error> {
    let cert = Certificate13::read_exact_with(body, k.cert_type)?;
    let now = (cx.config.common.wall_clock)();
    match (k.cert_type, &cx.config.verifier) {
        (CertificateType::X509, Some(PeerVerifier::WebPki(v))) => {
            let chain: Vec<Vec<u8>> = cert.certificate_list.iter().map(|e| e.data.clone()).collect();
            if chain.is_empty() {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::EmptyServerCertificate13));
            }
            let point = v.verify_server(&chain, &cx.server_name, now)?;
            Ok((point, PeerIdentity::Certificate(chain)))
        }
        (CertificateType::RawPublicKey, Some(PeerVerifier::Pinned(p))) => {
            let spki = cert.end_entity().map(|e| e.to_vec()).unwrap_or_default();
            let point = p.verify(&spki)?;
            Ok((point, PeerIdentity::RawPublicKey(spki)))
        }
        _ => Err(Error::Incompatible(Incompatible::CertificateTypeMismatch13)),
    }
}

/// The server's certificate verified; its CertificateVerify proves the key (RFC 8446 §4.4.3).
pub(crate) struct ExpectCertificateVerify {
    cx: Context,
    k: Keys,
    /// The server's P-256 public key, from its certificate.
    point: [u8; 65],
}

impl ExpectCertificateVerify {
    fn handle(self, core: &mut Core, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::CertificateVerify {
            return Err(out_of_order());
        }
        core.verify_certificate_verify(&self.point, Role::Server, msg.body, &msg.before)?;
        Ok(Some(State::ExpectFinished(ExpectFinished { cx: self.cx, k: self.k })))
    }
}

/// The server is authenticated (by certificate or PSK); its Finished ends its flight.
pub(crate) struct ExpectFinished {
    cx: Context,
    k: Keys,
}

impl ExpectFinished {
    fn handle(self, core: &mut Core, now: Instant, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        if !tls13::verify_finished(&*core.provider(), &self.k.server_hs, &msg.before, msg.body) {
            return Err(Error::DecryptError("server Finished"));
        }
        self.finish(core, now)?;
        Ok(None)
    }

    /// The client's last flight: optional Certificate + CertificateVerify and Finished in the
    /// handshake epoch (RFC 8446 §4.4), then application keys.
    fn finish(self, core: &mut Core, now: Instant) -> Result<(), Error> {
        let Self { cx, k } = self;
        let th_server_finished = core.transcript_hash();
        let p = core.provider();
        let master = k.hs_secret.into_master(&*p);
        let client_ap = master.client_application_traffic_secret_0(&*p, &th_server_finished);
        let server_ap = master.server_application_traffic_secret_0(&*p, &th_server_finished);
        core.tr.flight.clear();
        if let Some(context) = &k.cert_requested {
            let (entries, key) = match &cx.config.client_cert {
                Some(ck) if k.cert_type == CertificateType::RawPublicKey || ck.chain.is_empty() => (
                    vec![CertificateEntry { data: ck.key.public_key_spki(), extensions: Vec::new() }],
                    Some(ck.key.clone()),
                ),
                Some(ck) => (
                    ck.chain.iter().map(|c| CertificateEntry { data: c.clone(), extensions: Vec::new() }).collect(),
                    Some(ck.key.clone()),
                ),
                None => (Vec::new(), None),
            };
            let cert = Certificate13 { certificate_request_context: context.clone(), certificate_list: entries };
            core.queue(EPOCH_HANDSHAKE, HandshakeType::Certificate, cert.to_vec());
            if let Some(key) = key {
                let content = certificate_verify_content(Role::Client, &core.transcript_hash());
                let signature = key.sign(&content)?;
                let cv = CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature };
                core.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateVerify, cv.to_vec());
            }
        }
        let vd = tls13::finished_verify_data(&*p, &k.client_hs, &core.transcript_hash());
        core.queue(EPOCH_HANDSHAKE, HandshakeType::Finished, vd.to_vec());
        // RFC 8446 §7.1: the resumption secret hashes the transcript through client Finished.
        let res_master = master.resumption_master_secret(&*p, &core.transcript_hash());
        core.tickets = Some(Box::new(ClientTickets { res_master, session: None }));
        core.send_app = Some(SendEpoch13::new(EPOCH_APPLICATION, core.protection(k.aead, &client_ap)?));
        core.recv_app = Some(ReceiveEpoch13::new(EPOCH_APPLICATION, core.protection(k.aead, &server_ap)?));
        core.app_secrets = Some(Box::new((client_ap, server_ap)));
        // RFC 9147 §5.8.3: the final flight is retransmitted until the server's ACK.
        core.send_new_flight(now, true);
        core.established(k.suite, k.identity);
        Ok(())
    }
}
