//! The client's DTLS 1.2 handshake (RFC 6347 §4.2, RFC 5246 §7.3): its first ClientHello
//! (fresh, or adopted from a dual-version client), the HelloVerifyRequest exchange, the
//! session it offers for resumption, and one struct per state it waits in. Each state holds
//! what it has learnt so far and takes the one message it expects, consuming itself into the
//! next state; any other message is out of order.
//!
//! ```text
//! ExpectServerHello ─┬─ HelloVerifyRequest: the same hello again, with the cookie; stays
//!                    ├─ ServerHello resuming our session ─▶ ExpectResumedFinished
//!                    ├─ ServerHello, ECDSA suite ─▶ ExpectCertificate ─▶ ExpectServerKeyExchange
//!                    └─ ServerHello, PSK suite ────────────────────────▶ ExpectServerKeyExchange
//! ExpectServerKeyExchange ─┬─ ServerKeyExchange ─▶ ExpectCertificateRequest
//!                          └─ ServerHelloDone (plain PSK, no hint: RFC 4279 §2) ─▶ final flight
//! ExpectCertificateRequest ─┬─ CertificateRequest (ECDSA) ─▶ ExpectServerHelloDone ─▶ final flight
//!                           └─ ServerHelloDone ─▶ final flight
//! final flight: [Certificate] ClientKeyExchange [CertificateVerify] CCS Finished ─▶ ExpectFinished
//! ExpectFinished ─▶ done;  ExpectResumedFinished ─▶ our CCS + Finished ─▶ done
//! ```

use super::engine::{Core, FlightMsg, HsData, encode_to_vec, read_all};
use crate::codec::*;
use crate::config::{ClientConfig, PeerVerifier};
use crate::crypto::prf::{self, MasterSecret};
use crate::crypto::{Rng, SeededRng};
use crate::error::{ConfigError, Error, Incompatible, PeerMisbehaved};
use crate::handshake::flight::RttSampleKind;
use crate::handshake::reassembly::HandshakeMessage;
use crate::msgs::*;
use crate::resumption::Session;
use crate::suites::{self, SupportedSuite};
use crate::types::{PeerIdentity, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// A client handshake in progress: the role's configuration and the state it waits in.
pub(super) struct Client {
    config: Arc<ClientConfig>,
    /// Checked against the server's certificate.
    server_name: String,
    state: State,
    /// RFC 5077 tickets: where this handshake stands.
    tickets: TicketProgress,
}

/// RFC 5077 on the client: whether the ServerHello promised a NewSessionTicket (§3.2), and
/// the one that came (§3.3).
#[derive(Default)]
struct TicketProgress {
    /// The ServerHello carried the (empty) SessionTicket extension.
    acked: bool,
    /// The NewSessionTicket: the ticket and its lifetime hint in seconds.
    received: Option<(Vec<u8>, u32)>,
}

/// What the client waits for. Each variant is named after the state struct it holds.
#[allow(clippy::enum_variant_names)]
enum State {
    ExpectServerHello(ExpectServerHello),
    ExpectCertificate(ExpectCertificate),
    ExpectServerKeyExchange(ExpectServerKeyExchange),
    ExpectCertificateRequest(ExpectCertificateRequest),
    ExpectServerHelloDone(ExpectServerHelloDone),
    ExpectFinished(ExpectFinished),
    ExpectResumedFinished(ExpectResumedFinished),
}

/// What a state's transition reads beside the message: the association's core, the client's
/// configuration, the clock.
struct Context<'a> {
    core: &'a mut Core,
    config: &'a ClientConfig,
    server_name: &'a str,
    now: Instant,
    /// Length of the transcript before the message being handled (what a Finished covers).
    transcript_before: usize,
    /// The NewSessionTicket of this handshake, if one came.
    new_ticket: Option<&'a (Vec<u8>, u32)>,
}

fn out_of_order() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageOutOfOrder)
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

impl Client {
    /// Starts a client handshake towards `peer`: builds the core and sends the first
    /// ClientHello, offering `resume` when one of our suites can resume it. See
    /// `Conn12::client`.
    pub(super) fn start(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<(Core, Self), ConfigError> {
        let timer = config.common.retransmit_timer(peer, Role::Client, None);
        let mut core = Core::new(Role::Client, peer, config.clone(), rng, now, timer);
        let offered: Vec<&SupportedSuite> = config
            .common
            .suites
            .iter()
            .filter(|s| if s.uses_psk() { config.psk.is_some() } else { config.verifier.is_some() })
            .collect();
        if offered.is_empty() {
            return Err(ConfigError::new(
                "no credentials for any configured cipher suite: configure a PSK (PSK suites) or a CA / pinned key (ECDSA suites)",
            ));
        }
        let mut random = [0u8; 32];
        core.rng().fill(&mut random);
        core.client_random = random;
        let mut extensions = Vec::new();
        if !is_ip_literal(server_name) && !server_name.is_empty() {
            extensions.push(ClientExtension::ServerName(vec![ServerName {
                name_type: 0,
                name: server_name.as_bytes().to_vec(),
            }]));
        }
        if offered.iter().any(|s| s.uses_ecdhe()) {
            extensions.push(ClientExtension::SupportedGroups(vec![NamedGroup::Secp256r1]));
            extensions.push(ClientExtension::EcPointFormats(vec![EcPointFormat::Uncompressed]));
        }
        if offered.iter().any(|s| !s.uses_psk()) {
            extensions.push(ClientExtension::SignatureAlgorithms(vec![SignatureScheme::EcdsaSecp256r1Sha256]));
            if matches!(config.verifier, Some(PeerVerifier::Pinned(_))) {
                extensions.push(ClientExtension::ServerCertificateType(vec![CertificateType::RawPublicKey]));
            }
            if config.client_cert.as_ref().is_some_and(|k| k.chain.is_empty()) {
                extensions.push(ClientExtension::ClientCertificateType(vec![CertificateType::RawPublicKey]));
            }
        }
        extensions.push(ClientExtension::ExtendedMasterSecret);
        extensions.push(ClientExtension::RenegotiationInfo(Vec::new()));
        let tickets = config.session_tickets;
        let offered_session = resume.filter(|s| {
            offered.iter().any(|o| o.suite == s.suite) && (!s.id.is_empty() || (tickets && s.ticket12.is_some()))
        });
        let ticket = offered_session.as_ref().and_then(|s| s.ticket12.clone()).filter(|_| tickets);
        // RFC 5077 §3.4: with a ticket, a session ID of our own making tells us by its echo
        // whether the server resumed.
        let session_id = match (&offered_session, &ticket) {
            (Some(s), _) if !s.id.is_empty() => s.id.clone(),
            (Some(_), Some(_)) => {
                let mut id = vec![0u8; 32];
                core.rng().fill(&mut id);
                id
            }
            _ => Vec::new(),
        };
        if tickets {
            // RFC 5077 §3.2: empty asks for a ticket; a ticket asks to resume with it.
            extensions.push(ClientExtension::SessionTicket(ticket.unwrap_or_default()));
        }
        if let Some(cid) = &config.connection_id {
            // RFC 9146 §3: the CID we want to receive; kept as the one to read with, until
            // the ServerHello says whether the server agreed.
            let cid = cid.generate(core.rng());
            core.cid.set_read(cid.clone());
            extensions.push(ClientExtension::ConnectionId(cid));
            // RFC 9853 §3: a client offering connection_id SHOULD offer rrc too.
            if config.connection_id.as_ref().is_some_and(|c| c.return_routability_check.is_some()) {
                extensions.push(ClientExtension::Rrc);
            }
        }
        let ch = ClientHello {
            client_version: ProtocolVersion::DTLS1_2,
            random: Random(random),
            session_id: SessionId(session_id),
            cookie: Vec::new(),
            cipher_suites: offered.iter().map(|s| s.suite).collect(),
            compression_methods: vec![Compression::Null],
            extensions,
        };
        let hello_record_seq = send_client_hello(&mut core, now, &ch);
        let state = State::ExpectServerHello(ExpectServerHello { ch, offered: offered_session, hello_record_seq });
        Ok((core, Self { config, server_name: server_name.to_owned(), state, tickets: TicketProgress::default() }))
    }

    /// Takes over the first ClientHello of a dual-version client; see `Conn12::client_adopt`.
    /// The error, if any, is the core's to fail with: the hello does not round-trip.
    pub(super) fn adopt(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        sent: crate::dtls13::engine::SentClientHello,
        offered: Option<Session>,
        now: Instant,
    ) -> (Core, Result<Self, Error>) {
        // The 1.2 codec must re-encode the hello byte for byte, or a second ClientHello after a
        // HelloVerifyRequest would differ from the first in more than the cookie.
        let ch = ClientHello::read_exact(&sent.body).ok().filter(|ch| ch.to_vec() == sent.body);
        let rng = sent.rng.map_or_else(SeededRng::from_os, |b| *b);
        // The policy goes with the timer: it has already seen this ClientHello go out.
        let mut core = Core::new(Role::Client, peer, config.clone(), rng, now, sent.timer);
        core.client_random = ch.as_ref().map_or([0; 32], |ch| ch.random.0);
        // The dual hello's connection_id (RFC 9146 §3): read with that CID, as `start` does.
        if let Some(cid) = ch.as_ref().and_then(|ch| ch.connection_id()) {
            core.cid.set_read(cid.to_vec());
        }
        core.write_seq[0] = sent.next_record_seq;
        core.send_seq = sent.message_seq.wrapping_add(1);
        core.reasm.set_next_seq(sent.message_seq);
        core.peer_flight_start = sent.message_seq;
        let msg =
            HandshakeMessage { msg_type: HandshakeType::ClientHello, message_seq: sent.message_seq, body: sent.body };
        msg.transcript_bytes(&mut core.transcript);
        core.flight.push(FlightMsg::Handshake {
            epoch: 0,
            msg_type: HandshakeType::ClientHello,
            message_seq: msg.message_seq,
            body: msg.body,
        });
        core.timer_armed = sent.timer_armed;
        core.out = sent.out;
        core.last_activity = sent.last_activity;
        let client = match ch {
            Some(ch) => {
                let offered = offered.filter(|s| !s.id.is_empty() && s.id == ch.session_id.0);
                // The adopted hello is the first: every HelloVerifyRequest answers it.
                let state = State::ExpectServerHello(ExpectServerHello { ch, offered, hello_record_seq: 0 });
                Ok(Self { config, server_name: server_name.to_owned(), state, tickets: TicketProgress::default() })
            }
            None => {
                Err(Error::Config(ConfigError::new("the dual-version ClientHello does not round-trip as DTLS 1.2")))
            }
        };
        (core, client)
    }

    /// Whether the client still waits for the ServerHello (and so for a HelloVerifyRequest).
    pub(super) fn expects_server_hello(&self) -> bool {
        matches!(self.state, State::ExpectServerHello(_))
    }

    /// The message the client waits for, for `Debug`.
    pub(super) fn expecting(&self) -> &'static str {
        match self.state {
            State::ExpectServerHello(_) => "ServerHello",
            State::ExpectCertificate(_) => "Certificate",
            State::ExpectServerKeyExchange(_) => "ServerKeyExchange",
            State::ExpectCertificateRequest(_) | State::ExpectServerHelloDone(_) => "ServerHelloDone",
            State::ExpectFinished(_) | State::ExpectResumedFinished(_) => "Finished",
        }
    }

    /// A HelloVerifyRequest that arrived whole in a record (`Core::pending_hvr`), outside the
    /// reassembler, in a record numbered `record_seq`.
    pub(super) fn handle_hello_verify_request(
        &mut self,
        core: &mut Core,
        now: Instant,
        body: &[u8],
        record_seq: u64,
    ) -> Result<(), Error> {
        let hvr = HelloVerifyRequest::read_exact(body)?;
        match &mut self.state {
            State::ExpectServerHello(s) => s.handle_hvr(core, now, hvr, Some(record_seq)),
            _ => Ok(()),
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
        let Self { config, server_name, state, mut tickets } = self;
        match (&state, msg.msg_type) {
            (State::ExpectServerHello(s), HandshakeType::ServerHello) => {
                let sh = ServerHello::read_exact(&msg.body)?;
                tickets.acked = sh.has_session_ticket_ack();
                if tickets.acked && s.ch.session_ticket().is_none() {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::UnsolicitedServerExtension));
                }
            }
            // RFC 5077 §3.3: promised in the ServerHello, it comes before the server's
            // ChangeCipherSpec, in a full handshake or a resumption that renews the ticket.
            (State::ExpectFinished(_) | State::ExpectResumedFinished(_), HandshakeType::NewSessionTicket)
                if tickets.acked && tickets.received.is_none() =>
            {
                let nst = NewSessionTicket::read_exact(&msg.body)?;
                // An empty ticket withdraws the promise (RFC 5077 §3.3): nothing to keep.
                if !nst.ticket.is_empty() {
                    tickets.received = Some((nst.ticket, nst.lifetime_hint));
                }
                return Ok(Some(Self { config, server_name, state, tickets }));
            }
            _ => {}
        }
        let mut cx = Context {
            core,
            config: &config,
            server_name: &server_name,
            now,
            transcript_before,
            new_ticket: tickets.received.as_ref(),
        };
        let next = match state {
            State::ExpectServerHello(s) => s.handle(&mut cx, msg)?,
            State::ExpectCertificate(s) => State::ExpectServerKeyExchange(s.handle(&mut cx, msg)?),
            State::ExpectServerKeyExchange(s) => s.handle(&mut cx, msg)?,
            State::ExpectCertificateRequest(s) => s.handle(&mut cx, msg)?,
            State::ExpectServerHelloDone(s) => State::ExpectFinished(s.handle(&mut cx, msg)?),
            State::ExpectFinished(s) => return s.handle(&mut cx, msg).map(|()| None),
            State::ExpectResumedFinished(s) => return s.handle(&mut cx, msg).map(|()| None),
        };
        Ok(Some(Self { config, server_name, state: next, tickets }))
    }
}

/// Sends `ch` as a new flight; returns the record sequence number of its first transmission.
fn send_client_hello(core: &mut Core, now: Instant, ch: &ClientHello) -> u64 {
    // The server numbers its ServerHello after the ClientHello it answers.
    core.reasm.set_next_seq(core.send_seq);
    core.transcript.clear();
    let body = ch.to_vec();
    core.flight.clear();
    core.queue_handshake(HandshakeType::ClientHello, body);
    // Epoch 0, and a ClientHello fits one record (a larger one would be refused anyway).
    let first_record_seq = core.write_seq[0];
    core.send_new_flight(now, true);
    first_record_seq
}

/// Our ClientHello is out (again, with a cookie after a HelloVerifyRequest).
struct ExpectServerHello {
    /// Resent with the server's cookie after a HelloVerifyRequest.
    ch: ClientHello,
    /// The session offered in the hello's session_id, resumed if the server echoes it.
    offered: Option<Session>,
    /// The record sequence number `ch` first went out with: its retransmissions are numbered
    /// above it, every earlier ClientHello below.
    hello_record_seq: u64,
}

impl ExpectServerHello {
    fn handle(mut self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<State, Error> {
        match msg.msg_type {
            HandshakeType::HelloVerifyRequest => {
                let hvr = HelloVerifyRequest::read_exact(&msg.body)?;
                // Reassembled (it came fragmented): its record numbers are not at hand.
                self.handle_hvr(cx.core, cx.now, hvr, None)?;
                Ok(State::ExpectServerHello(self))
            }
            HandshakeType::ServerHello => {
                let sh = ServerHello::read_exact(&msg.body)?;
                self.handle_server_hello(cx, sh)
            }
            _ => Err(out_of_order()),
        }
    }

    /// RFC 6347 §4.2.1: answer a HelloVerifyRequest with the ClientHello repeated plus the
    /// cookie. A server may refuse our cookie (it expired while our ClientHello kept getting
    /// lost) and send a fresh one, so a new cookie in answer to our current ClientHello gets a
    /// new ClientHello; a duplicate of the one we already answered is ignored.
    ///
    /// An answer to an earlier ClientHello is ignored too. The server echoes the record
    /// sequence number of the ClientHello it answers (RFC 6347 §4.2.1), so `record_seq` below
    /// our current hello's first record says so. On a path slower than our timer it is the
    /// common case: our first hello went out twice, and the second HelloVerifyRequest (with a
    /// cookie of a later issue time) arrives after we sent the hello with the first cookie.
    /// Answering it would restart the handshake under a new message_seq, and the ServerHello
    /// flight already on its way would then be out of order.
    fn handle_hvr(
        &mut self,
        core: &mut Core,
        now: Instant,
        hvr: HelloVerifyRequest,
        record_seq: Option<u64>,
    ) -> Result<(), Error> {
        let stale = record_seq.is_some_and(|seq| seq < self.hello_record_seq);
        let ch = &mut self.ch;
        if hvr.cookie == ch.cookie || stale {
            return Ok(());
        }
        ch.cookie = hvr.cookie;
        if core.timer_armed {
            core.timer.on_answer(now, RttSampleKind::Cookie);
        }
        self.hello_record_seq = send_client_hello(core, now, ch);
        Ok(())
    }

    fn handle_server_hello(self, cx: &mut Context<'_>, sh: ServerHello) -> Result<State, Error> {
        let Self { ch, offered, .. } = self;
        let require_ems = cx.config.common.require_extended_master_secret;
        if ch.offers_dtls13() {
            // RFC 8446 §4.1.3 (RFC 9147 §5.3): a client that offered 1.3 and gets a 1.2
            // ServerHello MUST abort with illegal_parameter if the server random ends with a
            // downgrade sentinel; a 1.3 server's answer (supported_versions) is no 1.2 one
            // either (§4.2.1), e.g. after an injected HelloVerifyRequest (see `crate::auto`).
            if crate::dtls13::msgs::DowngradeSentinel::find(&sh.random).is_some() {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::DowngradeSentinel12));
            }
            if sh
                .extensions
                .iter()
                .any(|e| matches!(e, ServerExtension::Unknown { typ: ExtensionType::SupportedVersions, .. }))
            {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerHello13AfterFallback));
            }
        }
        if sh.server_version != ProtocolVersion::DTLS1_2 {
            return Err(Error::Incompatible(Incompatible::ServerVersionNot12));
        }
        if !ch.cipher_suites.contains(&sh.cipher_suite) {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedSuite12));
        }
        let suite =
            suites::lookup(sh.cipher_suite).ok_or(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnknownSuite))?;
        if sh.compression_method != Compression::Null {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseCompression));
        }
        let mut ems = false;
        let mut rrc = false;
        let mut cert_type = CertificateType::X509;
        for ext in &sh.extensions {
            match ext {
                ServerExtension::ExtendedMasterSecret => ems = true,
                ServerExtension::RenegotiationInfo(v) if !v.is_empty() => {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::NonEmptyRenegotiationInfo));
                }
                ServerExtension::ServerCertificateType(t) => cert_type = *t,
                // RFC 9146 §3: the CID the server wants in our records; only if we offered.
                ServerExtension::ConnectionId(c) if ch.connection_id().is_some() => {
                    cx.core.cid.set_write(c.clone());
                    cx.core.cid.negotiated = true;
                }
                ServerExtension::Rrc if ch.offers_rrc() => rrc = true,
                ServerExtension::ConnectionId(_) | ServerExtension::Rrc | ServerExtension::Unknown { .. } => {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::UnsolicitedServerExtension));
                }
                _ => {}
            }
        }
        // RFC 9853 §3: the server MUST NOT send rrc without agreeing to the CID.
        if rrc && !cx.core.cid.negotiated {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::UnsolicitedServerExtension));
        }
        if !cx.core.cid.negotiated {
            cx.core.cid = Default::default();
        }
        cx.core.cid.rrc = rrc;
        let d = HsData {
            suite,
            client_random: ch.random.0,
            server_random: sh.random.0,
            session_id: sh.session_id.0.clone(),
            ems,
            cert_type,
        };
        cx.core.suite = Some(suite);
        // Resumed when the server echoes the session ID we sent (RFC 5246 §7.4.1.3): the
        // session's own, or the one we made up to go with its ticket (RFC 5077 §3.4).
        if let Some(session) = offered.filter(|_| !sh.session_id.0.is_empty() && ch.session_id.0 == sh.session_id.0) {
            // Abbreviated handshake (RFC 5246 §7.3).
            if session.suite != suite.suite {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumedWithOtherSuite12));
            }
            if session.extended_master_secret != ems {
                // RFC 7627 §5.3: the resumed session must keep the original EMS status.
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ResumptionChangedEms));
            }
            let master = MasterSecret::from_bytes(*session.master_secret());
            cx.core.install_keys(&d, &master)?;
            let identity = session.peer_identity.clone();
            let ticket = session.ticket12.clone();
            return Ok(State::ExpectResumedFinished(ExpectResumedFinished { d, master, identity, ticket }));
        }
        if require_ems && !ems {
            return Err(Error::Incompatible(Incompatible::ServerWithoutEms));
        }
        Ok(match suite.kx {
            KeyExchangeAlgorithm::EcdheEcdsa => State::ExpectCertificate(ExpectCertificate { d }),
            _ => {
                let identity =
                    PeerIdentity::Psk(cx.config.psk.as_ref().map(|p| p.identity.clone()).unwrap_or_default());
                State::ExpectServerKeyExchange(ExpectServerKeyExchange { d, server_point: None, identity })
            }
        })
    }
}

/// An ECDSA suite was chosen: the server's certificate (or raw public key, RFC 7250) comes next.
struct ExpectCertificate {
    d: HsData,
}

impl ExpectCertificate {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<ExpectServerKeyExchange, Error> {
        if msg.msg_type != HandshakeType::Certificate {
            return Err(out_of_order());
        }
        let d = self.d;
        let cert = read_all(&msg.body, |r| Certificate::read_with(r, d.cert_type))?;
        let (point, identity) = verify_server_cert(cx, &cert)?;
        Ok(ExpectServerKeyExchange { d, server_point: Some(point), identity })
    }
}

fn verify_server_cert(cx: &Context<'_>, cert: &Certificate) -> Result<([u8; 65], PeerIdentity), Error> {
    let config = cx.config;
    let now = (config.common.wall_clock)();
    match (cert, &config.verifier) {
        (Certificate::X509(chain), Some(PeerVerifier::WebPki(v))) => {
            if chain.is_empty() {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::NoServerCertificate12));
            }
            let point = v.verify_server(chain, cx.server_name, now)?;
            Ok((point, PeerIdentity::Certificate(chain.clone())))
        }
        (Certificate::RawPublicKey(spki), Some(PeerVerifier::Pinned(p))) => {
            let point = p.verify(spki)?;
            Ok((point, PeerIdentity::RawPublicKey(spki.clone())))
        }
        _ => Err(Error::Incompatible(Incompatible::ServerCertificateTypeMismatch)),
    }
}

/// The server's key exchange parameters come next (for plain PSK they may be omitted).
struct ExpectServerKeyExchange {
    d: HsData,
    /// The server certificate's key, which signs the parameters (ECDSA suites).
    server_point: Option<[u8; 65]>,
    identity: PeerIdentity,
}

impl ExpectServerKeyExchange {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<State, Error> {
        let Self { d, server_point, identity } = self;
        match msg.msg_type {
            HandshakeType::ServerKeyExchange => {
                let ske = read_all(&msg.body, |r| ServerKeyExchange::read_with(r, d.suite.kx))?;
                let server_ecdh = check_ske(cx.core, &d, server_point.as_ref(), ske)?;
                Ok(State::ExpectCertificateRequest(ExpectCertificateRequest { d, identity, server_ecdh }))
            }
            HandshakeType::ServerHelloDone if d.suite.kx == KeyExchangeAlgorithm::Psk => {
                // RFC 4279 §2: ServerKeyExchange may be omitted when there is no hint.
                if !msg.body.is_empty() {
                    return Err(InvalidMessage::TrailingData("ServerHelloDone").into());
                }
                send_final_flight(cx, d, identity, None, false).map(State::ExpectFinished)
            }
            _ => Err(out_of_order()),
        }
    }
}

fn check_ske(
    core: &Core,
    d: &HsData,
    server_point: Option<&[u8; 65]>,
    ske: ServerKeyExchange,
) -> Result<Option<Vec<u8>>, Error> {
    let check_params = |p: &ServerEcdhParams| {
        if p.curve_type != EcCurveType::NamedCurve || p.named_curve != NamedGroup::Secp256r1 {
            Err(Error::PeerMisbehaved(PeerMisbehaved::ServerChoseUnofferedGroup))
        } else {
            Ok(())
        }
    };
    match (d.suite.kx, ske) {
        (KeyExchangeAlgorithm::Psk, ServerKeyExchange::Psk { .. }) => Ok(None),
        (KeyExchangeAlgorithm::EcdhePsk, ServerKeyExchange::EcdhePsk { params, .. }) => {
            check_params(&params)?;
            Ok(Some(params.public))
        }
        (KeyExchangeAlgorithm::EcdheEcdsa, ServerKeyExchange::EcdheEcdsa { params, signature }) => {
            check_params(&params)?;
            if signature.scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
                return Err(Error::PeerMisbehaved(PeerMisbehaved::ServerKeyExchangeUnofferedScheme));
            }
            let point = server_point.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerCertificate))?;
            // RFC 8422 §5.4: signature over client_random || server_random || ServerECDHParams.
            let mut signed = Vec::with_capacity(64 + 70);
            signed.extend_from_slice(&d.client_random);
            signed.extend_from_slice(&d.server_random);
            params.encode(&mut signed);
            core.common()
                .provider
                .ecdsa_p256_verify(point, &signed, &signature.signature)
                .map_err(|_| Error::DecryptError("ServerKeyExchange signature"))?;
            Ok(Some(params.public))
        }
        _ => Err(Error::PeerMisbehaved(PeerMisbehaved::ServerKeyExchangeMismatch)),
    }
}

/// The key exchange is known: a CertificateRequest (ECDSA suites only) or ServerHelloDone.
struct ExpectCertificateRequest {
    d: HsData,
    identity: PeerIdentity,
    /// The server's ephemeral ECDH public key (ECDHE suites).
    server_ecdh: Option<Vec<u8>>,
}

impl ExpectCertificateRequest {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<State, Error> {
        let Self { d, identity, server_ecdh } = self;
        match msg.msg_type {
            HandshakeType::CertificateRequest if d.suite.kx == KeyExchangeAlgorithm::EcdheEcdsa => {
                let cr = CertificateRequest::read_exact(&msg.body)?;
                if !cr.supported_signature_algorithms.contains(&SignatureScheme::EcdsaSecp256r1Sha256) {
                    // We can still answer with an empty Certificate; the server decides.
                }
                Ok(State::ExpectServerHelloDone(ExpectServerHelloDone { d, identity, server_ecdh }))
            }
            HandshakeType::ServerHelloDone => {
                let done = ExpectServerHelloDone { d, identity, server_ecdh };
                done.finish(cx, &msg.body, false).map(State::ExpectFinished)
            }
            _ => Err(out_of_order()),
        }
    }
}

/// The server asked for our certificate; its ServerHelloDone ends its flight.
struct ExpectServerHelloDone {
    d: HsData,
    identity: PeerIdentity,
    server_ecdh: Option<Vec<u8>>,
}

impl ExpectServerHelloDone {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<ExpectFinished, Error> {
        if msg.msg_type != HandshakeType::ServerHelloDone {
            return Err(out_of_order());
        }
        self.finish(cx, &msg.body, true)
    }

    fn finish(self, cx: &mut Context<'_>, body: &[u8], cert_requested: bool) -> Result<ExpectFinished, Error> {
        if !body.is_empty() {
            return Err(InvalidMessage::TrailingData("ServerHelloDone").into());
        }
        send_final_flight(cx, self.d, self.identity, self.server_ecdh, cert_requested)
    }
}

/// Our flight after the server's hello flight: Certificate (if requested), ClientKeyExchange,
/// CertificateVerify (if we sent a certificate), ChangeCipherSpec, Finished (RFC 5246 §7.3).
fn send_final_flight(
    cx: &mut Context<'_>,
    d: HsData,
    identity: PeerIdentity,
    server_ecdh: Option<Vec<u8>>,
    cert_requested: bool,
) -> Result<ExpectFinished, Error> {
    let config = cx.config;
    let core = &mut *cx.core;
    let provider = config.common.provider.clone();
    core.flight.clear();
    let mut signing_key = None;
    if cert_requested {
        let cert = match &config.client_cert {
            Some(k) if d.cert_type == CertificateType::RawPublicKey || k.chain.is_empty() => {
                signing_key = Some(k.key.clone());
                Certificate::RawPublicKey(k.key.public_key_spki())
            }
            Some(k) => {
                signing_key = Some(k.key.clone());
                Certificate::X509(k.chain.clone())
            }
            // RFC 5246 §7.4.6: a client without a suitable certificate sends an empty one.
            None => Certificate::X509(Vec::new()),
        };
        core.queue_handshake(HandshakeType::Certificate, encode_to_vec(|o| cert.encode(o)));
    }
    let psk_identity = || config.psk.as_ref().map(|p| p.identity.clone()).unwrap_or_default();
    let (cke, pms) = match d.suite.kx {
        KeyExchangeAlgorithm::Psk => {
            let psk = config.psk.as_ref().ok_or(Error::Config(ConfigError::new("PSK suite without a PSK")))?;
            (ClientKeyExchange::Psk { identity: psk_identity() }, prf::psk_pre_master(psk.key()))
        }
        KeyExchangeAlgorithm::EcdhePsk => {
            let psk = config.psk.as_ref().ok_or(Error::Config(ConfigError::new("PSK suite without a PSK")))?;
            let peer = server_ecdh.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerKeyExchange))?;
            let eph = provider.ecdh_p256(core.rng())?;
            let public = eph.public_key().to_vec();
            let z = eph.complete(&peer).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
            (
                ClientKeyExchange::EcdhePsk { identity: psk_identity(), public },
                prf::ecdhe_psk_pre_master(&*z, psk.key()),
            )
        }
        KeyExchangeAlgorithm::EcdheEcdsa => {
            let peer = server_ecdh.ok_or(Error::PeerMisbehaved(PeerMisbehaved::MissingServerKeyExchange))?;
            let eph = provider.ecdh_p256(core.rng())?;
            let public = eph.public_key().to_vec();
            let z = eph.complete(&peer).map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidEcdhPoint))?;
            (ClientKeyExchange::Ecdhe { public }, Zeroizing::new(z.to_vec()))
        }
    };
    core.queue_handshake(HandshakeType::ClientKeyExchange, encode_to_vec(|o| cke.encode(o)));
    let master = core.derive_master(&d, &pms);
    if let Some(key) = signing_key {
        // RFC 5246 §7.4.8: signature over all handshake messages so far.
        let signature = key.sign(&core.transcript)?;
        let cv = DigitallySigned { scheme: SignatureScheme::EcdsaSecp256r1Sha256, signature };
        core.queue_handshake(HandshakeType::CertificateVerify, cv.to_vec());
    }
    core.install_keys(&d, &master)?;
    core.queue_ccs_finished(&master, b"client finished");
    core.send_new_flight(cx.now, true);
    Ok(ExpectFinished { d, master, identity })
}

/// Our final flight is out: the server's Finished completes a full handshake.
struct ExpectFinished {
    d: HsData,
    master: MasterSecret,
    identity: PeerIdentity,
}

impl ExpectFinished {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<(), Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        let Self { d, master, identity } = self;
        cx.core.verify_peer_finished(cx.now, &master, cx.transcript_before, msg, b"server finished", None)?;
        established(cx, &d, &master, identity, false);
        Ok(())
    }
}

/// The server resumed our session: its Finished comes first, ours answers it (RFC 5246 §7.3).
struct ExpectResumedFinished {
    d: HsData,
    master: MasterSecret,
    identity: PeerIdentity,
    /// The ticket we resumed with: kept for the next time unless the server renews it.
    ticket: Option<Vec<u8>>,
}

impl ExpectResumedFinished {
    fn handle(self, cx: &mut Context<'_>, msg: &HandshakeMessage) -> Result<(), Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        let Self { d, master, identity, ticket } = self;
        cx.core.verify_peer_finished(
            cx.now,
            &master,
            cx.transcript_before,
            msg,
            b"server finished",
            Some(b"client finished"),
        )?;
        let renewed = cx.new_ticket.is_some();
        established_with(cx, &d, &master, identity, true, ticket.filter(|_| !renewed));
        Ok(())
    }
}

/// The client keeps the session to offer it on a later connection. It cannot know the
/// server's lifetime; the server refuses what it has forgotten, and a full handshake follows.
fn established(cx: &mut Context<'_>, d: &HsData, master: &MasterSecret, identity: PeerIdentity, resumed: bool) {
    established_with(cx, d, master, identity, resumed, None);
}

/// [`established`], keeping `old_ticket` (the ticket a resumption used) when no new one came.
/// A session with a ticket is kept even without a session ID (RFC 5077 §3.4); its lifetime is
/// the ticket's hint when the server gave one (§3.3).
fn established_with(
    cx: &mut Context<'_>,
    d: &HsData,
    master: &MasterSecret,
    identity: PeerIdentity,
    resumed: bool,
    old_ticket: Option<Vec<u8>>,
) {
    let mut lifetime = crate::resumption::DEFAULT_SESSION_LIFETIME;
    let ticket = match cx.new_ticket {
        Some((t, hint)) => {
            if *hint > 0 {
                lifetime = lifetime.min(std::time::Duration::from_secs(u64::from(*hint)));
            }
            Some(t.clone())
        }
        None => old_ticket,
    };
    let session = match ticket {
        Some(t) => d.session_with_ticket(master, &identity, cx.now, lifetime, t),
        None => d.session(master, &identity, cx.now, lifetime),
    };
    cx.core.without_ems = !d.ems;
    // RFC 7627 §5.3: a session without EMS must not be resumed, so it is not kept.
    if let Some(session) = session.filter(|_| d.ems) {
        cx.core.session = Some(Box::new(session));
    }
    cx.core.established(cx.now, d.suite, identity, resumed);
}

impl HsData {
    /// The client's session of a handshake that gave (or kept) an RFC 5077 ticket: `id` is
    /// the server's session ID, possibly empty.
    fn session_with_ticket(
        &self,
        master: &MasterSecret,
        identity: &PeerIdentity,
        now: Instant,
        lifetime: std::time::Duration,
        ticket: Vec<u8>,
    ) -> Option<Session> {
        Some(Session {
            id: self.session_id.clone(),
            suite: self.suite.suite,
            extended_master_secret: self.ems,
            peer_identity: identity.clone(),
            established_at: now,
            lifetime,
            master_secret: Zeroizing::new(*master.as_bytes()),
            ticket13: None,
            ticket12: Some(ticket),
        })
    }
}
