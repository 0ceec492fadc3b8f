//! The server's DTLS 1.2 handshake (RFC 6347 §4.2, RFC 5246 §7.3): the answer to a ClientHello
//! the endpoint has accepted (suite, certificate type and client authentication choice, or
//! session-ID resumption from a session handed in or stored), the sessions it issues, and one
//! struct per state it waits in. Each state holds what it has learnt so far and takes the one
//! message it expects, consuming itself into the next state; any other message is out of
//! order.
//!
//! ```text
//! ClientHello ─┬─ a session to resume: ServerHello CCS Finished ─▶ ExpectResumedFinished ─▶ done
//!              └─ ServerHello [Certificate] [ServerKeyExchange] [CertificateRequest] ServerHelloDone
//!                   ├─ client authentication ─▶ ExpectCertificate ─▶ ExpectClientKeyExchange
//!                   └───────────────────────────────────────────────▶ ExpectClientKeyExchange
//! ExpectClientKeyExchange ─┬─ a client certificate came ─▶ ExpectCertificateVerify ─▶ ExpectFinished
//!                          └────────────────────────────────────────────────────────▶ ExpectFinished
//! ExpectFinished ─▶ our CCS + Finished ─▶ done
//! ```

use super::engine::{Core, HsData, encode_to_vec, hello_digest, read_all};
use crate::codec::*;
use crate::config::{ClientAuth, PeerVerifier, ServerConfig};
use crate::crypto::prf::{self, MasterSecret};
use crate::crypto::{EcdhKeyPair, Rng, SeededRng};
use crate::error::{Error, Incompatible, PeerMisbehaved};
use crate::handshake::reassembly::HandshakeMessage;
use crate::msgs::*;
use crate::resumption::FetchedSession;
use crate::suites;
use crate::types::{Event, PeerIdentity, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A server handshake in progress: the role's configuration and the state it waits in.
pub(super) struct Server {
    config: Arc<ServerConfig>,
    state: State,
}

/// What the server waits for. Each variant is named after the state struct it holds.
#[allow(clippy::enum_variant_names)]
enum State {
    ExpectCertificate(ExpectCertificate),
    ExpectClientKeyExchange(ExpectClientKeyExchange),
    ExpectCertificateVerify(ExpectCertificateVerify),
    ExpectFinished(ExpectFinished),
    ExpectResumedFinished(ExpectResumedFinished),
}

/// What a state's transition reads beside the message: the association's core, the server's
/// configuration, the clock.
struct Context<'a> {
    core: &'a mut Core,
    config: &'a ServerConfig,
    now: Instant,
    /// Length of the transcript before the message being handled (what a Finished or a
    /// CertificateVerify covers).
    transcript_before: usize,
}

fn out_of_order() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageOutOfOrder)
}

impl Server {
    /// Creates the core of a server association and answers the ClientHello that created it;
    /// see `Conn12::server`. The error, if any, is the core's to fail with.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept(
        config: Arc<ServerConfig>,
        peer: SocketAddr,
        ch: ClientHello,
        message_seq: u16,
        record_seq: u64,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<Duration>,
        fetched: &[FetchedSession],
    ) -> (Core, Result<Self, Error>) {
        let timer = config.common.retransmit_timer(peer, Role::Server, cookie_rtt);
        let mut core = Core::new(Role::Server, peer, config.clone(), rng, now, timer);
        core.client_random = ch.random.0;
        // RFC 6347 §4.2.2: after a stateless HelloVerifyRequest (message_seq 0) the server's next
        // message continues the numbering; matching the ClientHello's message_seq does that.
        core.send_seq = message_seq;
        // The stateless HelloVerifyRequest reused the first ClientHello's record sequence number
        // (RFC 6347 §4.2.1) and we keep no record of it; continuing from the second
        // ClientHello's number (as OpenSSL does) never repeats one, which peers such as GnuTLS
        // would drop as a replay.
        core.write_seq[0] = record_seq;
        core.reasm.set_next_seq(message_seq.wrapping_add(1));
        let msg = HandshakeMessage { msg_type: HandshakeType::ClientHello, message_seq, body: ch.to_vec() };
        core.hello_digest = hello_digest(&*config.common.provider, &msg.body);
        msg.transcript_bytes(&mut core.transcript);
        let state = handle_client_hello(&mut core, &config, now, ch, fetched);
        (core, state.map(|state| Self { config, state }))
    }

    /// The message the server waits for, for `Debug`.
    pub(super) fn expecting(&self) -> &'static str {
        match self.state {
            State::ExpectCertificate(_) => "Certificate",
            State::ExpectClientKeyExchange(_) => "ClientKeyExchange",
            State::ExpectCertificateVerify(_) => "CertificateVerify",
            State::ExpectFinished(_) | State::ExpectResumedFinished(_) => "Finished",
        }
    }

    /// Takes one handshake message, already in the transcript (which held `transcript_before`
    /// bytes before it). `None`: the handshake is complete.
    pub(super) fn handle(
        self,
        core: &mut Core,
        now: Instant,
        msg: &HandshakeMessage,
        transcript_before: usize,
    ) -> Result<Option<Self>, Error> {
        let Self { config, state } = self;
        let mut cx = Context { core, config: &config, now, transcript_before };
        let next = match state {
            State::ExpectCertificate(s) => State::ExpectClientKeyExchange(s.handle(&mut cx, msg)?),
            State::ExpectClientKeyExchange(s) => s.handle(&mut cx, msg)?,
            State::ExpectCertificateVerify(s) => State::ExpectFinished(s.handle(&mut cx, msg)?),
            State::ExpectFinished(s) => return s.handle(&mut cx, msg).map(|()| None),
            State::ExpectResumedFinished(s) => return s.handle(&mut cx, msg).map(|()| None),
        };
        Ok(Some(Self { config, state: next }))
    }
}

/// Chooses the parameters of the handshake from the ClientHello and sends our first flight:
/// ServerHello, Certificate (ECDSA suites), ServerKeyExchange (unless plain PSK without a
/// hint), CertificateRequest (client authentication), ServerHelloDone; or ServerHello,
/// ChangeCipherSpec, Finished when it resumes a session.
fn handle_client_hello(
    core: &mut Core,
    config: &ServerConfig,
    now: Instant,
    ch: ClientHello,
    fetched: &[FetchedSession],
) -> Result<State, Error> {
    let provider = config.common.provider.clone();
    // DTLS versions count down: 1.2 is 0xFEFD, so anything numerically above it is older.
    if ch.client_version.0 > ProtocolVersion::DTLS1_2.0 {
        return Err(Error::Incompatible(Incompatible::ClientWithoutDtls12));
    }
    if !ch.compression_methods.contains(&Compression::Null) {
        return Err(Error::PeerMisbehaved(PeerMisbehaved::NullCompressionNotOffered));
    }
    let mut ems = false;
    let mut reneg = ch.cipher_suites.contains(&CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV);
    let mut groups_ok = true;
    let mut sigs_ok = true;
    let mut point_formats = false;
    let mut server_cert_types: Option<&[CertificateType]> = None;
    let mut client_cert_types: Option<&[CertificateType]> = None;
    for ext in &ch.extensions {
        match ext {
            ClientExtension::ExtendedMasterSecret => ems = true,
            ClientExtension::RenegotiationInfo(v) => {
                if !v.is_empty() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::RenegotiationInfoOnInitialHandshake));
                }
                reneg = true;
            }
            ClientExtension::SupportedGroups(g) => groups_ok = g.contains(&NamedGroup::Secp256r1),
            ClientExtension::SignatureAlgorithms(s) => sigs_ok = s.contains(&SignatureScheme::EcdsaSecp256r1Sha256),
            ClientExtension::EcPointFormats(f) => {
                if !f.contains(&EcPointFormat::Uncompressed) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::UncompressedPointsNotOffered));
                }
                point_formats = true;
            }
            ClientExtension::ServerCertificateType(t) => server_cert_types = Some(t),
            ClientExtension::ClientCertificateType(t) => client_cert_types = Some(t),
            _ => {}
        }
    }
    let mut server_random = [0u8; 32];
    core.rng().fill(&mut server_random);
    if config.dtls13 {
        // RFC 8446 §4.1.3 (RFC 9147 §5.3): a server that can do 1.3 and negotiates 1.2
        // MUST end its random with "DOWNGRD\x01", so that a 1.3 client whose offer was
        // stripped in transit notices.
        server_random[24..].copy_from_slice(&crate::dtls13::msgs::DowngradeSentinel::Dtls12.bytes());
    }

    // RFC 5077 session tickets: the client offers the extension (empty: it wants one) and we
    // issue tickets, statefully (a key into the store) or sealed (TicketMode::Stateless).
    let offered_ticket = ch.session_ticket();
    // No ticket for a session without EMS: it could never be resumed (RFC 7627 §5.3).
    let issue_ticket = ems && offered_ticket.is_some() && config.issues_tickets() && !config.session_lifetime.is_zero();
    // Resumption, with RFC 7627 §5.3's EMS rules: a ticket first (RFC 5077 §3.1), then the
    // session ID (RFC 5246 §7.4.1.2); each handed in by a layer, else from our store (or, a
    // sealed ticket, opened here).
    let by_ticket = offered_ticket.filter(|t| !t.is_empty()).and_then(|t| find_ticket12(config, fetched, t, now));
    let by_id = || {
        (!ch.session_id.0.is_empty())
            .then(|| crate::resumption::find_session(config, fetched, &ch.session_id.0, false, now))
            .flatten()
            .map(|(s, _)| s)
    };
    let ticket_resumption = by_ticket.is_some();
    // RFC 9146 §3: negotiated afresh on every handshake, resumptions included.
    let cid_ext = match (&config.connection_id, ch.connection_id()) {
        (Some(ours_cfg), Some(theirs)) => {
            let ours = ours_cfg.generate(core.rng());
            core.cid.set_read(ours.clone());
            core.cid.set_write(theirs.to_vec());
            core.cid.negotiated = true;
            // RFC 9853 §3: rrc is answered only beside an agreed CID.
            core.cid.rrc = ours_cfg.return_routability_check.is_some() && ch.offers_rrc();
            Some(ServerExtension::ConnectionId(ours))
        }
        _ => None,
    };
    if let Some(session) = by_ticket.or_else(by_id) {
        if session.extended_master_secret && !ems {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumptionWithoutEms));
        }
        // RFC 7627 §5.3: neither the session nor this ClientHello uses EMS: the server SHOULD
        // abort rather than resume insecurely (the triple-handshake attack resumes). Such
        // sessions are not stored here; one from elsewhere (an older server sharing the
        // store) is refused the same way.
        if !session.extended_master_secret && !ems {
            return Err(Error::Incompatible(Incompatible::ClientWithoutEms));
        }
        let suite_ok =
            ch.cipher_suites.contains(&session.suite) && config.common.suites.iter().any(|s| s.suite == session.suite);
        if suite_ok && session.extended_master_secret == ems {
            let suite = suites::lookup(session.suite).ok_or(Error::Crypto)?;
            let d = HsData {
                suite,
                client_random: ch.random.0,
                server_random,
                // RFC 5077 §3.4: accepting a ticket, the server echoes the client's session ID
                // (which the client may have made up to recognise the resumption).
                session_id: if ticket_resumption { ch.session_id.0.clone() } else { session.id.clone() },
                ems,
                cert_type: CertificateType::X509,
            };
            core.suite = Some(suite);
            core.flight.clear();
            let mut sh = server_hello(&d, reneg, false, None);
            sh.extensions.extend(cid_ext.clone());
            if core.cid.rrc {
                sh.extensions.push(ServerExtension::Rrc);
            }
            core.queue_handshake(HandshakeType::ServerHello, sh.to_vec());
            let master = MasterSecret::from_bytes(*session.master_secret());
            core.install_keys(&d, &master)?;
            core.queue_ccs_finished(&master, b"server finished");
            core.send_new_flight(now, true);
            let identity = session.peer_identity.clone();
            return Ok(State::ExpectResumedFinished(ExpectResumedFinished { d, master, identity }));
        }
    }
    if config.common.require_extended_master_secret && !ems {
        return Err(Error::Incompatible(Incompatible::ClientWithoutEms));
    }

    // Certificate type (RFC 7250 §4.2): the server's preference among the client's offer.
    let server_cert_type = match server_cert_types {
        None => (config.cert.as_ref().is_some_and(|c| !c.chain.is_empty())).then_some(CertificateType::X509),
        Some(types) => {
            if config.raw_public_key && config.cert.is_some() && types.contains(&CertificateType::RawPublicKey) {
                Some(CertificateType::RawPublicKey)
            } else if types.contains(&CertificateType::X509)
                && config.cert.as_ref().is_some_and(|c| !c.chain.is_empty())
            {
                Some(CertificateType::X509)
            } else {
                None
            }
        }
    };
    let suite = config
        .common
        .suites
        .iter()
        .find(|s| {
            ch.cipher_suites.contains(&s.suite)
                && match s.kx {
                    KeyExchangeAlgorithm::Psk => config.psks.is_some(),
                    KeyExchangeAlgorithm::EcdhePsk => config.psks.is_some() && groups_ok,
                    KeyExchangeAlgorithm::EcdheEcdsa => server_cert_type.is_some() && groups_ok && sigs_ok,
                }
        })
        .and_then(|s| suites::lookup(s.suite))
        .ok_or(Error::Incompatible(Incompatible::NoCommonSuite12))?;
    let ecdsa = suite.kx == KeyExchangeAlgorithm::EcdheEcdsa;
    let cert_type = server_cert_type.filter(|_| ecdsa).unwrap_or(CertificateType::X509);
    let (request_client_cert, client_cert_type) = match (&config.client_auth, ecdsa) {
        (ClientAuth::None, _) | (_, false) => (false, None),
        (ClientAuth::Optional(v) | ClientAuth::Required(v), true) => {
            let want = match v {
                PeerVerifier::WebPki(_) => CertificateType::X509,
                PeerVerifier::Pinned(_) => CertificateType::RawPublicKey,
            };
            match client_cert_types {
                Some(t) if t.contains(&want) => (true, Some(want)),
                Some(_) => (true, None),
                None if want == CertificateType::X509 => (true, None),
                None => (true, None),
            }
        }
    };
    // RFC 5077 §3.4: a server that will issue a ticket to a client that presented none
    // SHOULD send an empty session ID; the ticket is then the one way back to the session.
    let session_id = if config.issues_sessions() && !issue_ticket {
        let mut id = vec![0u8; 32];
        core.rng().fill(&mut id);
        id
    } else {
        Vec::new()
    };
    let d = HsData { suite, client_random: ch.random.0, server_random, session_id, ems, cert_type };
    core.suite = Some(suite);
    core.flight.clear();
    let mut sh = server_hello(
        &d,
        reneg,
        point_formats && suite.uses_ecdhe(),
        server_cert_types.map(|_| cert_type).filter(|_| ecdsa),
    );
    if let Some(t) = client_cert_type {
        sh.extensions.push(ServerExtension::ClientCertificateType(t));
    }
    if issue_ticket {
        // RFC 5077 §3.2: an empty SessionTicket extension promises a NewSessionTicket.
        sh.extensions.push(ServerExtension::SessionTicket);
    }
    sh.extensions.extend(cid_ext);
    if core.cid.rrc {
        sh.extensions.push(ServerExtension::Rrc);
    }
    core.queue_handshake(HandshakeType::ServerHello, sh.to_vec());
    if ecdsa {
        let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
        let cert = match cert_type {
            CertificateType::RawPublicKey => Certificate::RawPublicKey(ck.key.public_key_spki()),
            _ => Certificate::X509(ck.chain.clone()),
        };
        core.queue_handshake(HandshakeType::Certificate, encode_to_vec(|o| cert.encode(o)));
    }
    let hint = config.psk_hint.clone().unwrap_or_default();
    let eph = if suite.uses_ecdhe() { Some(provider.ecdh_p256(core.rng())?) } else { None };
    let params = eph.as_ref().map(|e| ServerEcdhParams {
        curve_type: EcCurveType::NamedCurve,
        named_curve: NamedGroup::Secp256r1,
        public: e.public_key().to_vec(),
    });
    let ske = match (suite.kx, params) {
        (KeyExchangeAlgorithm::Psk, _) if hint.is_empty() => None,
        (KeyExchangeAlgorithm::Psk, _) => Some(ServerKeyExchange::Psk { hint }),
        (KeyExchangeAlgorithm::EcdhePsk, Some(params)) => Some(ServerKeyExchange::EcdhePsk { hint, params }),
        (KeyExchangeAlgorithm::EcdheEcdsa, Some(params)) => {
            let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
            // RFC 8422 §5.4: signature over client_random || server_random || ServerECDHParams.
            let mut signed = Vec::with_capacity(64 + 70);
            signed.extend_from_slice(&d.client_random);
            signed.extend_from_slice(&d.server_random);
            params.encode(&mut signed);
            let signature = ck.key.sign(&signed)?;
            Some(ServerKeyExchange::EcdheEcdsa {
                params,
                signature: DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature },
            })
        }
        _ => return Err(Error::Crypto),
    };
    if let Some(ske) = ske {
        core.queue_handshake(HandshakeType::ServerKeyExchange, encode_to_vec(|o| ske.encode(o)));
    }
    if request_client_cert {
        let cr = CertificateRequest {
            certificate_types: vec![ClientCertificateType::EcdsaSign],
            supported_signature_algorithms: vec![SignatureScheme::EcdsaSecp256r1Sha256],
            certificate_authorities: Vec::new(),
        };
        core.queue_handshake(HandshakeType::CertificateRequest, cr.to_vec());
    }
    core.queue_handshake(HandshakeType::ServerHelloDone, Vec::new());
    core.send_new_flight(now, true);
    Ok(if request_client_cert {
        State::ExpectCertificate(ExpectCertificate { d, eph, issue_ticket })
    } else {
        State::ExpectClientKeyExchange(ExpectClientKeyExchange { d, eph, client: None, issue_ticket })
    })
}

fn server_hello(d: &HsData, reneg: bool, point_formats: bool, cert_type: Option<CertificateType>) -> ServerHello {
    let mut extensions = Vec::new();
    if reneg {
        extensions.push(ServerExtension::RenegotiationInfo(Vec::new()));
    }
    if d.ems {
        extensions.push(ServerExtension::ExtendedMasterSecret);
    }
    if point_formats {
        extensions.push(ServerExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]));
    }
    if let Some(t) = cert_type {
        extensions.push(ServerExtension::ServerCertificateType(t));
    }
    ServerHello {
        server_version: ProtocolVersion::DTLS1_2,
        random: Random(d.server_random),
        session_id: SessionId(d.session_id.clone()),
        cipher_suite: d.suite.suite,
        compression_method: Compression::Null,
        extensions,
    }
}

/// We sent a CertificateRequest: the client's Certificate (possibly empty) comes first.
struct ExpectCertificate {
    d: HsData,
    eph: Option<Box<dyn EcdhKeyPair>>,
    issue_ticket: bool,
}

impl ExpectCertificate {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<ExpectClientKeyExchange, Error> {
        if msg.msg_type != HandshakeType::Certificate {
            return Err(out_of_order());
        }
        let Self { d, eph, issue_ticket } = self;
        let cert = read_all(&msg.body, |r| Certificate::read_with(r, d.cert_type))?;
        // Named in the failure report if the certificate is refused.
        cx.core.out.claimed_identity = match &cert {
            Certificate::X509(chain) if !chain.is_empty() => Some(Box::new(PeerIdentity::Certificate(chain.clone()))),
            Certificate::RawPublicKey(spki) => Some(Box::new(PeerIdentity::RawPublicKey(spki.clone()))),
            _ => None,
        };
        let client = verify_client_cert(cx.config, &cert)?;
        Ok(ExpectClientKeyExchange { d, eph, client, issue_ticket })
    }
}

fn verify_client_cert(config: &ServerConfig, cert: &Certificate) -> Result<Option<([u8; 65], PeerIdentity)>, Error> {
    let now = (config.common.wall_clock)();
    let (verifier, required) = match &config.client_auth {
        ClientAuth::None => {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::UnrequestedClientCertificate12));
        }
        ClientAuth::Optional(v) => (v, false),
        ClientAuth::Required(v) => (v, true),
    };
    match (cert, verifier) {
        (Certificate::X509(chain), _) if chain.is_empty() => {
            if required {
                // RFC 5246 §7.4.6: the server may abort with handshake_failure.
                Err(Error::Incompatible(Incompatible::ClientCertificateRequired12))
            } else {
                Ok(None)
            }
        }
        (Certificate::X509(chain), PeerVerifier::WebPki(v)) => {
            let point = v.verify_client(chain, now)?;
            Ok(Some((point, PeerIdentity::Certificate(chain.clone()))))
        }
        (Certificate::RawPublicKey(spki), PeerVerifier::Pinned(p)) => {
            let point = p.verify(spki)?;
            Ok(Some((point, PeerIdentity::RawPublicKey(spki.clone()))))
        }
        _ => Err(Error::Incompatible(Incompatible::ClientCertificateTypeRefused)),
    }
}

/// The client's key exchange comes next; our ephemeral key (ECDHE suites) completes it.
struct ExpectClientKeyExchange {
    d: HsData,
    eph: Option<Box<dyn EcdhKeyPair>>,
    /// The client certificate's key and identity, if it sent one; a CertificateVerify follows.
    client: Option<([u8; 65], PeerIdentity)>,
    /// We promised a NewSessionTicket in the ServerHello (RFC 5077 §3.2).
    issue_ticket: bool,
}

impl ExpectClientKeyExchange {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<State, Error> {
        if msg.msg_type != HandshakeType::ClientKeyExchange {
            return Err(out_of_order());
        }
        let Self { d, eph, client, issue_ticket } = self;
        let cke = read_all(&msg.body, |r| ClientKeyExchange::read_with(r, d.suite.kx))?;
        let config = cx.config;
        if let ClientKeyExchange::Psk { identity: id } | ClientKeyExchange::EcdhePsk { identity: id, .. } = &cke {
            // Named in the failure report: unknown, or its key turns out wrong at the Finished.
            cx.core.out.claimed_identity = Some(Box::new(PeerIdentity::Psk(id.clone())));
        }
        let psk_for = |identity: &[u8]| -> Result<Zeroizing<Vec<u8>>, Error> {
            config.psks.as_ref().and_then(|s| s.key_for(identity)).ok_or(Error::UnknownPskIdentity)
        };
        let mut identity = PeerIdentity::Anonymous;
        let pms = match (d.suite.kx, cke) {
            (KeyExchangeAlgorithm::Psk, ClientKeyExchange::Psk { identity: id }) => {
                let key = psk_for(&id)?;
                identity = PeerIdentity::Psk(id);
                prf::psk_pre_master(&key)
            }
            (KeyExchangeAlgorithm::EcdhePsk, ClientKeyExchange::EcdhePsk { identity: id, public }) => {
                let key = psk_for(&id)?;
                identity = PeerIdentity::Psk(id);
                let eph = eph.ok_or(Error::Crypto)?;
                let z = eph.complete(&public).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                prf::ecdhe_psk_pre_master(&*z, &key)
            }
            (KeyExchangeAlgorithm::EcdheEcdsa, ClientKeyExchange::Ecdhe { public }) => {
                let eph = eph.ok_or(Error::Crypto)?;
                let z = eph.complete(&public).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
                Zeroizing::new(z.to_vec())
            }
            _ => {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ClientKeyExchangeMismatch));
            }
        };
        let master = cx.core.derive_master(&d, &pms);
        cx.core.install_keys(&d, &master)?;
        Ok(match client {
            Some((point, identity)) => {
                State::ExpectCertificateVerify(ExpectCertificateVerify { d, master, point, identity, issue_ticket })
            }
            None => State::ExpectFinished(ExpectFinished { d, master, identity, issue_ticket }),
        })
    }
}

/// The client sent a certificate: its CertificateVerify proves it holds the key.
struct ExpectCertificateVerify {
    d: HsData,
    master: MasterSecret,
    /// The client certificate's public key.
    point: [u8; 65],
    identity: PeerIdentity,
    issue_ticket: bool,
}

impl ExpectCertificateVerify {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<ExpectFinished, Error> {
        if msg.msg_type != HandshakeType::CertificateVerify {
            return Err(out_of_order());
        }
        let Self { d, master, point, identity, issue_ticket } = self;
        let cv = DigitallySigned::read_exact(&msg.body)?;
        if cv.scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::CertificateVerifyUnofferedScheme));
        }
        // RFC 5246 §7.4.8: the signature covers every handshake message before CertificateVerify.
        cx.core
            .common()
            .provider
            .ecdsa_p256_verify(&point, &cx.core.transcript[..cx.transcript_before], &cv.signature)
            .map_err(|_| Error::DecryptError("client CertificateVerify"))?;
        Ok(ExpectFinished { d, master, identity, issue_ticket })
    }
}

/// Keys are installed: the client's Finished completes a full handshake, ours answers it.
struct ExpectFinished {
    d: HsData,
    master: MasterSecret,
    identity: PeerIdentity,
    issue_ticket: bool,
}

impl ExpectFinished {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<(), Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        let Self { d, master, identity, issue_ticket } = self;
        let answer: Option<&[u8]> = if issue_ticket { None } else { Some(b"server finished") };
        cx.core.verify_peer_finished(cx.now, &master, cx.transcript_before, msg, b"client finished", answer)?;
        if issue_ticket {
            // RFC 5077 §3.3: NewSessionTicket goes between the client's Finished and our
            // ChangeCipherSpec, in our last flight (resent with it).
            let nst = new_session_ticket(cx, &d, &master, &identity);
            cx.core.flight.clear();
            cx.core.queue_handshake(HandshakeType::NewSessionTicket, nst.to_vec());
            cx.core.queue_ccs_finished(&master, b"server finished");
            cx.core.send_new_flight(cx.now, false);
            cx.core.holds_last_flight = true;
        }
        established(cx, &d, &master, identity, false);
        Ok(())
    }
}

/// We resumed a session and sent our Finished first: the client's Finished completes it.
struct ExpectResumedFinished {
    d: HsData,
    master: MasterSecret,
    identity: PeerIdentity,
}

impl ExpectResumedFinished {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<(), Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        let Self { d, master, identity } = self;
        cx.core.verify_peer_finished(cx.now, &master, cx.transcript_before, msg, b"client finished", None)?;
        established(cx, &d, &master, identity, true);
        Ok(())
    }
}

/// A full handshake's new session goes to the session store and, if asked, out as an event;
/// the server keeps no copy in the association.
fn established(cx: &mut Context<'_>, d: &HsData, master: &MasterSecret, identity: PeerIdentity, resumed: bool) {
    let config = cx.config;
    cx.core.without_ems = !d.ems;
    // RFC 7627 §5.3: a session without EMS is never resumed (see `hello`), so it is not kept.
    if let (Some(session), false, true) =
        (d.session(master, &identity, cx.now, config.session_lifetime), resumed, d.ems)
    {
        crate::resumption::store_session(config, &session, cx.now);
        if config.session_events {
            cx.core.out.events.push_back(Event::SessionIssued(Box::new(session)));
        }
    }
    cx.core.established(cx.now, d.suite, identity, resumed);
}

/// Server: the unexpired DTLS 1.2 session an RFC 5077 ticket stands for: opened here when it
/// is sealed (stateless mode), else looked up like a session ID (a stateful ticket is a key
/// into the store, handed in by a layer or in our own store).
fn find_ticket12(
    config: &ServerConfig,
    fetched: &[FetchedSession],
    ticket: &[u8],
    now: Instant,
) -> Option<crate::resumption::Session> {
    if let Some(keys) = config.tickets.keys()
        && let Some(s) = keys.open(ticket, now, (config.common.wall_clock)()).filter(|s| !s.is_dtls13_ticket())
    {
        return Some(s);
    }
    // A stateful ticket is exactly 32 random bytes, a session store key.
    (ticket.len() == STATEFUL_TICKET_LEN)
        .then(|| crate::resumption::find_session(config, fetched, ticket, false, now))
        .flatten()
        .map(|(s, _)| s)
}

/// Length of a stateful RFC 5077 ticket: a random store key, as long as a session ID.
const STATEFUL_TICKET_LEN: usize = 32;

/// Server: the NewSessionTicket of a full handshake (RFC 5077 §3.3). Stateful: a random
/// 32-byte key under which the session goes to the store (and out as
/// [`Event::SessionIssued`] when asked); stateless: the session sealed under the ticket keys,
/// with a random ID inside.
fn new_session_ticket(
    cx: &mut Context<'_>,
    d: &HsData,
    master: &MasterSecret,
    identity: &PeerIdentity,
) -> NewSessionTicket {
    let config = cx.config;
    let lifetime = config.session_lifetime;
    let mut id = vec![0u8; STATEFUL_TICKET_LEN];
    cx.core.rng().fill(&mut id);
    let session = crate::resumption::Session {
        id: id.clone(),
        suite: d.suite.suite,
        extended_master_secret: d.ems,
        peer_identity: identity.clone(),
        established_at: cx.now,
        lifetime,
        master_secret: Zeroizing::new(*master.as_bytes()),
        ticket12: None,
        ticket13: None,
    };
    let ticket = match config.tickets.keys() {
        Some(keys) => {
            let wall = (config.common.wall_clock)();
            keys.seal(&session, cx.core.rng(), cx.now, wall)
        }
        None => {
            crate::resumption::store_session(config, &session, cx.now);
            if config.session_events {
                cx.core.out.events.push_back(Event::SessionIssued(Box::new(session)));
            }
            id
        }
    };
    NewSessionTicket { lifetime_hint: u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX), ticket }
}
