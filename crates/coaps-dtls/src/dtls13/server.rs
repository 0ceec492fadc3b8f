//! The DTLS 1.3 server handshake (RFC 9147 §5, RFC 8446 §4): the ClientHello that passed the
//! stateless cookie gate (whose HelloRetryRequest is rebuilt from its cookie, [`HrrState`])
//! is answered with the server's whole flight, then one struct per state until the client's
//! Finished, each with a consuming transition for the messages it may receive. The server
//! configuration lives here; the association's record layer, flights and transcript are the
//! [`Core`]'s.

use crate::codec::*;
use crate::config::{ClientAuth, PeerVerifier, ServerConfig};
use crate::crypto::{AeadAlgorithm, Rng, SeededRng};
use crate::dtls13::cid::Cids13;
use crate::dtls13::early;
use crate::dtls13::engine::{Core, EPOCH_APPLICATION, EPOCH_HANDSHAKE, EPOCH_PLAINTEXT, Incoming, hash, suite13};
use crate::dtls13::key_schedule::{self as tls13, EarlySecret, MasterSecret13, Secret};
use crate::dtls13::msgs::*;
use crate::dtls13::record::{HeaderStyle, ReceiveEpoch13, SendEpoch13};
use crate::error::{Error, Incompatible, PeerMisbehaved, UsageError};
use crate::resumption::{FetchedSession, Session, SessionSource, Ticket13};
use crate::types::{Event, PeerIdentity, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// What a DTLS 1.3 HelloRetryRequest cookie carries so that the server can stay stateless
/// (RFC 9147 §5.1, RFC 8446 §4.2.2): the hash of the first ClientHello (the transcript restarts
/// with `message_hash(ClientHello1)`, RFC 8446 §4.4.1) and the parameters the HelloRetryRequest
/// chose, which the second ClientHello must honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HrrState {
    /// SHA-256 of the first ClientHello (TLS-style transcript encoding).
    pub client_hello1_hash: [u8; 32],
    /// The cipher suite selected in the HelloRetryRequest.
    pub cipher_suite: u16,
    /// The key_share group requested in the HelloRetryRequest (0 when none was requested).
    pub group: u16,
}

/// The HelloRetryRequest a stateless server sends for `ch1`, rebuilt byte for byte from the
/// cookie when the second ClientHello returns it (RFC 9147 §5.1).
pub(crate) fn hello_retry_request(state: &HrrState, cookie: &[u8]) -> Vec<u8> {
    let mut extensions = vec![HelloRetryExtension13::SupportedVersions(ProtocolVersion::DTLS1_3)];
    if state.group != 0 {
        extensions.push(HelloRetryExtension13::KeyShare(NamedGroup::from(state.group)));
    }
    extensions.push(HelloRetryExtension13::Cookie(cookie.to_vec()));
    ServerHelloMessage13::HelloRetryRequest(HelloRetryRequest13 {
        legacy_version: ProtocolVersion::DTLS1_2,
        // RFC 9147 §5: DTLS servers MUST NOT echo the legacy_session_id.
        legacy_session_id_echo: SessionId::default(),
        cipher_suite: CipherSuite::from(state.cipher_suite),
        legacy_compression_method: Compression::Null,
        extensions,
    })
    .to_vec()
}

/// The server's choice for a ClientHello: suite and whether a key share must be requested.
pub(crate) fn server_choose(config: &ServerConfig, ch: &ClientHello13) -> Option<(CipherSuite, bool)> {
    let suite = config.common.suites13.iter().copied().find(|s| ch.cipher_suites.contains(s))?;
    let needs_group = ch.key_share_for(NamedGroup::Secp256r1).is_none();
    Some((suite, needs_group))
}

/// The server side, from a ClientHello that passed the cookie gate. `prefix` is the
/// transcript before it (`message_hash(CH1) || HelloRetryRequest` after a stateless HRR,
/// empty otherwise); `cookie_rtt` the round trip of the cookie exchange, for the
/// retransmission policy. The state is `None` when the ClientHello failed (the core is closed
/// and holds the alert).
#[allow(clippy::too_many_arguments)]
pub(crate) fn accept(
    config: Arc<ServerConfig>,
    peer: SocketAddr,
    ch: ClientHello13,
    ch_body: &[u8],
    message_seq: u16,
    record_seq: u64,
    prefix: Vec<u8>,
    rng: SeededRng,
    now: Instant,
    cookie_rtt: Option<std::time::Duration>,
    fetched: &[FetchedSession],
) -> (Core, Option<State>) {
    let mut c = Core::new(Role::Server, peer, config.clone(), rng, now, cookie_rtt);
    c.client_random = ch.random.0;
    c.hello_digest = hash(&*config.common.provider, ch_body);
    c.send_seq = message_seq;
    c.tr.plain_seq = record_seq;
    c.reasm.set_next_seq(message_seq.wrapping_add(1));
    c.tr.transcript.add_raw(&*config.common.provider, &prefix);
    match (ExpectClientHello { config }).handle(&mut c, now, ch, ch_body, fetched) {
        Ok(state) => (c, Some(state)),
        Err(e) => {
            c.fail(e);
            (c, None)
        }
    }
}

/// Secrets and parameters of a handshake in progress that the client's flight still needs.
struct Keys {
    suite: CipherSuite,
    aead: AeadAlgorithm,
    client_hs: Secret,
    cert_type: CertificateType,
}

/// Server, from its Finished to the client's (RFC 8446 §2.3 "0.5-RTT data", §4.4.4): the
/// secrets that are ready, and what bounds sending before the client has proven anything.
struct HalfRtt {
    master: MasterSecret13,
    /// Installed for receiving only once the client's Finished verifies (RFC 9147 §5.6 /
    /// RFC 8446 §4.4.4: epoch-3 data from the client is not accepted before).
    client_ap: Secret,
    server_ap: Secret,
    /// No CertificateRequest went out: the client is as authenticated now as it will be at its
    /// Finished (anonymous, or by the PSK / ticket it proved with its binder). With a
    /// CertificateRequest, sending waits for the client's Finished.
    may_send: bool,
    /// The client's address was proven by a cookie exchange (a HelloRetryRequest came first).
    address_verified: bool,
    /// Bytes received from the client so far: without a proven address, at most three times
    /// as many may be sent (RFC 9147 §5.1).
    received: u64,
    /// Application data that could not go yet (client authentication pending or amplification
    /// limit), sent at the client's Finished in order; bounded by `max_early_records`.
    held: Vec<Vec<u8>>,
}

/// What every state after our Finished holds.
struct Handshake {
    config: Arc<ServerConfig>,
    k: Keys,
    half_rtt: HalfRtt,
}

/// The server's handshake state after its flight; none once established.
// Each variant is named after the state struct it holds, which says what is expected next.
#[allow(clippy::enum_variant_names)]
pub(crate) enum State {
    ExpectCertificate(ExpectCertificate),
    ExpectCertificateVerify(ExpectCertificateVerify),
    ExpectFinished(ExpectFinished),
}

impl State {
    /// The next state for `msg`, `None` once the handshake is complete.
    pub(crate) fn handle(self, core: &mut Core, now: Instant, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        match self {
            State::ExpectCertificate(s) => s.handle(core, msg),
            State::ExpectCertificateVerify(s) => s.handle(core, msg),
            State::ExpectFinished(s) => s.handle(core, now, msg),
        }
    }

    fn half_rtt(&mut self) -> &mut HalfRtt {
        match self {
            State::ExpectCertificate(s) => &mut s.hs.half_rtt,
            State::ExpectCertificateVerify(s) => &mut s.hs.half_rtt,
            State::ExpectFinished(s) => &mut s.hs.half_rtt,
        }
    }

    /// A datagram from the client arrived: it raises the amplification limit (RFC 9147 §5.1).
    pub(crate) fn on_datagram(&mut self, len: usize) {
        self.half_rtt().received += len as u64;
    }

    /// The whole datagram of the ClientHello is known (see [`HalfRtt::received`]).
    pub(crate) fn on_first_datagram(&mut self, len: usize) {
        let hr = self.half_rtt();
        hr.received = hr.received.max(len as u64);
    }

    /// Between our Finished and the client's (RFC 8446 §2.3 "0.5-RTT data"): sends now when
    /// no client certificate is pending and the address is proven or the three-times
    /// amplification limit allows it (RFC 9147 §5.1), else holds the data for the client's
    /// Finished, in order.
    pub(crate) fn send_half_rtt(&mut self, core: &mut Core, data: &[u8]) -> Result<(), UsageError> {
        core.check_payload(data)?;
        let sealed = core.sealed_len(EPOCH_APPLICATION, data.len(), HeaderStyle::choose(0, None, true)) as u64;
        let max_held = core.common().max_early_records;
        let sent = core.out.stats.bytes_sent;
        let hr = self.half_rtt();
        let within_limit = hr.address_verified || sent + sealed <= hr.received.saturating_mul(3);
        if hr.may_send && within_limit && hr.held.is_empty() {
            return core.send_app_record(data);
        }
        if hr.held.len() >= max_held {
            return Err(UsageError::LimitReached("0.5-RTT data held until the client's Finished"));
        }
        hr.held.push(data.to_vec());
        Ok(())
    }
}

fn out_of_order() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageOutOfOrder)
}

/// A ClientHello that passed the gate, answered with our whole flight at once.
struct ExpectClientHello {
    config: Arc<ServerConfig>,
}

impl ExpectClientHello {
    fn handle(
        self,
        core: &mut Core,
        now: Instant,
        ch: ClientHello13,
        ch_body: &[u8],
        fetched: &[FetchedSession],
    ) -> Result<State, Error> {
        let config = self.config;
        let provider = config.common.provider.clone();
        ch.check_dtls13_legacy_fields().map_err(|a| {
            Error::PeerMisbehaved(match a {
                AlertDescription::ProtocolVersion => PeerMisbehaved::Dtls13LegacyVersion,
                _ => PeerMisbehaved::Dtls13LegacyField,
            })
        })?;
        let (suite, _) = server_choose(&config, &ch).ok_or(Error::Incompatible(Incompatible::NoCommonSuite13))?;
        let aead = suite13(suite).ok_or(Error::Crypto)?;
        // PSK (RFC 8446 §4.2.11): the first offered identity we know, a ticket (handed in by a
        // layer, else from our session store) or an external PSK, with a valid binder.
        let mut psk_key: Option<Zeroizing<Vec<u8>>> = None;
        let mut identity = PeerIdentity::Anonymous;
        let mut selected: u16 = 0;
        let mut resumed_ticket: Option<(Session, u32, SessionSource)> = None;
        if let Some(offered) = ch.pre_shared_key() {
            // Named in the failure report when no identity is known: the first one offered.
            core.out.claimed_identity =
                offered.identities.first().map(|id| Box::new(PeerIdentity::Psk(id.identity.clone())));
            for (i, id) in offered.identities.iter().enumerate() {
                let session = early::find_ticket(&config, fetched, &id.identity, now).filter(|(t, _)| t.suite == suite);
                let ticket =
                    session.as_ref().and_then(|(t, _)| t.ticket13.clone().map(|tk| (tk, t.peer_identity.clone())));
                let (key, external, who) = match ticket {
                    Some((tk, who)) => (Zeroizing::new(tk.psk.to_vec()), false, who),
                    None => match config.psks.as_ref().and_then(|st| st.key_for(&id.identity)) {
                        Some(k) => {
                            // Named in the failure report if its binder does not verify.
                            core.out.claimed_identity = Some(Box::new(PeerIdentity::Psk(id.identity.clone())));
                            (k, true, PeerIdentity::Psk(id.identity.clone()))
                        }
                        None => continue,
                    },
                };
                let (_, offset) = ClientHello13::read_with_binders_offset(ch_body)?;
                let off = offset.ok_or(Error::Crypto)?;
                let mut partial = Vec::new();
                truncated_client_hello_transcript(ch_body, off, &mut partial);
                let binder_key = EarlySecret::new(&*provider, Some(&key)).binder_key(&*provider, external);
                let th = core.tr.transcript.hash_with(&*provider, &partial);
                let expected = tls13::psk_binder(&*provider, &binder_key, &th);
                let got = offered.binders.get(i).map(|b| b.as_slice()).unwrap_or_default();
                if got.len() != expected.len() || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], got)) {
                    return Err(Error::DecryptError("PSK binder"));
                }
                core.resumed = !external;
                if !external {
                    resumed_ticket = session.map(|(s, source)| (s, id.obfuscated_ticket_age, source));
                }
                identity = who;
                psk_key = Some(key);
                selected = i as u16;
                break;
            }
        }
        let modes = ch.psk_key_exchange_modes().unwrap_or_default();
        let key_share = ch.key_share_for(NamedGroup::Secp256r1);
        let use_dhe = match &psk_key {
            Some(_) if modes.contains(&PskKeyExchangeMode::PskDheKe) && key_share.is_some() => true,
            Some(_) if modes.contains(&PskKeyExchangeMode::PskKe) => false,
            Some(_) => {
                return Err(Error::Incompatible(Incompatible::NoUsablePskMode));
            }
            None => {
                let sigs_ok =
                    ch.signature_algorithms().is_some_and(|s| s.contains(&SignatureScheme::EcdsaSecp256r1Sha256));
                if config.cert.is_none() || !sigs_ok {
                    return Err(Error::Incompatible(Incompatible::NoCommonAuthentication));
                }
                true
            }
        };
        let key_share = match (use_dhe, key_share) {
            (true, Some(ks)) => Some(ks.clone()),
            (true, None) => {
                return Err(Error::Incompatible(Incompatible::NoSecp256r1));
            }
            (false, _) => None,
        };
        let mut random = [0u8; 32];
        core.rng().fill(&mut random);
        let mut sh_ext = vec![ServerHelloExtension13::SupportedVersions(ProtocolVersion::DTLS1_3)];
        let shared = match key_share {
            Some(ks) => {
                let eph = provider.ecdh_p256(core.rng())?;
                sh_ext.push(ServerHelloExtension13::KeyShare(KeyShareEntry {
                    group: NamedGroup::Secp256r1,
                    key_exchange: eph.public_key().to_vec(),
                }));
                Some(
                    eph.complete(&ks.key_exchange)
                        .map_err(|_| Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))?,
                )
            }
            None => None,
        };
        if psk_key.is_some() {
            sh_ext.push(ServerHelloExtension13::PreSharedKey(selected));
        }
        // RFC 9147 §9 / RFC 9146 §3: a client that offers connection_id gets the CID we want
        // to receive, in the ServerHello (RFC 9147 §9 example); our encrypted records carry
        // its CID from the first one on.
        if let (Some(cfg), Some(theirs)) = (config.connection_id.as_ref(), ch.connection_id()) {
            let ours = cfg.generate(core.rng());
            sh_ext.push(ServerHelloExtension13::ConnectionId(ours.clone()));
            core.cid = Some(Box::new(Cids13::negotiated(cfg.clone(), ours, theirs.to_vec())));
        }
        let sh = ServerHelloMessage13::ServerHello(ServerHello13 {
            legacy_version: ProtocolVersion::DTLS1_2,
            random: Random(random),
            // RFC 9147 §5: never echo the legacy_session_id.
            legacy_session_id_echo: SessionId::default(),
            cipher_suite: suite,
            legacy_compression_method: Compression::Null,
            extensions: sh_ext,
        });
        let after_hrr = !core.tr.transcript.is_empty();
        core.tr.transcript.add(&*provider, HandshakeType::ClientHello, ch_body);
        let early_accepted = early::server_decision(
            core,
            &config,
            &ch,
            selected,
            resumed_ticket.as_ref().filter(|_| psk_key.is_some()),
            suite,
            aead,
            after_hrr,
            now,
        )?;
        core.tr.flight.clear();
        core.queue(EPOCH_PLAINTEXT, HandshakeType::ServerHello, sh.to_vec());
        let p = core.provider();
        let early_secret = EarlySecret::new(&*p, psk_key.as_deref().map(|k| &k[..]));
        let hs_secret = early_secret.into_handshake(&*p, shared.as_ref().map(|z| &z[..]));
        let th = core.transcript_hash();
        let client_hs = hs_secret.client_handshake_traffic_secret(&*p, &th);
        let server_hs = hs_secret.server_handshake_traffic_secret(&*p, &th);
        core.tr.send_hs = Some(SendEpoch13::new(EPOCH_HANDSHAKE, core.protection(aead, &server_hs)?));
        core.tr.recv_hs = Some(ReceiveEpoch13::new(EPOCH_HANDSHAKE, core.protection(aead, &client_hs)?));
        core.suite = Some(suite);
        // Certificate type (RFC 7250 §4.2).
        let cert_type = match ch.server_certificate_types() {
            Some(t) if config.raw_public_key && t.contains(&CertificateType::RawPublicKey) => {
                CertificateType::RawPublicKey
            }
            _ => CertificateType::X509,
        };
        let mut ee = Vec::new();
        if ch.server_certificate_types().is_some() && psk_key.is_none() {
            ee.push(EncryptedExtension13::ServerCertificateType(cert_type));
        }
        if early_accepted {
            ee.push(EncryptedExtension13::EarlyData);
        }
        core.queue(
            EPOCH_HANDSHAKE,
            HandshakeType::EncryptedExtensions,
            EncryptedExtensions13 { extensions: ee }.to_vec(),
        );
        let mut cert_requested = false;
        if psk_key.is_none() {
            if !matches!(config.client_auth, ClientAuth::None) {
                let cr = CertificateRequest13 {
                    certificate_request_context: Vec::new(),
                    extensions: vec![CertificateRequestExtension13::SignatureAlgorithms(vec![
                        SignatureScheme::EcdsaSecp256r1Sha256,
                    ])],
                };
                core.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateRequest, cr.to_vec());
                cert_requested = true;
            }
            let ck = config.cert.as_ref().ok_or(Error::Crypto)?;
            let list = match cert_type {
                CertificateType::RawPublicKey => {
                    vec![CertificateEntry { data: ck.key.public_key_spki(), extensions: Vec::new() }]
                }
                _ => ck.chain.iter().map(|c| CertificateEntry { data: c.clone(), extensions: Vec::new() }).collect(),
            };
            let cert = Certificate13 { certificate_request_context: Vec::new(), certificate_list: list };
            core.queue(EPOCH_HANDSHAKE, HandshakeType::Certificate, cert.to_vec());
            let content = certificate_verify_content(Role::Server, &core.transcript_hash());
            let signature = ck.key.sign(&content)?;
            let cv = CertificateVerify13 { algorithm: SignatureScheme::EcdsaSecp256r1Sha256, signature };
            core.queue(EPOCH_HANDSHAKE, HandshakeType::CertificateVerify, cv.to_vec());
        }
        let vd = tls13::finished_verify_data(&*p, &server_hs, &core.transcript_hash());
        core.queue(EPOCH_HANDSHAKE, HandshakeType::Finished, vd.to_vec());
        let th_server_finished = core.transcript_hash();
        core.send_new_flight(now, true);
        // RFC 8446 §7.1 / §2.3: server_application_traffic_secret_0 hashes the transcript
        // through our Finished, so our epoch-3 sending keys exist now ("0.5-RTT data"); the
        // flight above is sealed and owns no epoch-3 record, so its retransmission and ACKs
        // are unaffected. Receiving in epoch 3 waits for the client's Finished.
        let master = hs_secret.into_master(&*p);
        let client_ap = master.client_application_traffic_secret_0(&*p, &th_server_finished);
        let server_ap = master.server_application_traffic_secret_0(&*p, &th_server_finished);
        core.send_app = Some(SendEpoch13::new(EPOCH_APPLICATION, core.protection(aead, &server_ap)?));
        let hs = Handshake {
            config,
            k: Keys { suite, aead, client_hs, cert_type },
            half_rtt: HalfRtt {
                master,
                client_ap,
                server_ap,
                may_send: !cert_requested,
                address_verified: after_hrr,
                // The ClientHello record (13-byte header, 12-byte handshake header) until the
                // whole first datagram is known.
                received: ch_body.len() as u64 + 25,
                held: Vec::new(),
            },
        };
        Ok(if cert_requested {
            State::ExpectCertificate(ExpectCertificate { hs, identity })
        } else {
            State::ExpectFinished(ExpectFinished { hs, identity })
        })
    }
}

/// We asked for the client's certificate (RFC 8446 §4.3.2); an empty one is allowed when
/// client authentication is optional.
pub(crate) struct ExpectCertificate {
    hs: Handshake,
    identity: PeerIdentity,
}

impl ExpectCertificate {
    fn handle(self, core: &mut Core, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::Certificate {
            return Err(out_of_order());
        }
        let Self { hs, identity } = self;
        Ok(Some(match verify_client_certificate(&hs.config, &hs.k, msg.body, &mut core.out.claimed_identity)? {
            Some((point, identity)) => State::ExpectCertificateVerify(ExpectCertificateVerify { hs, point, identity }),
            None => State::ExpectFinished(ExpectFinished { hs, identity }),
        }))
    }
}

/// The client's certificate verified; its CertificateVerify proves the key (RFC 8446 §4.4.3).
pub(crate) struct ExpectCertificateVerify {
    hs: Handshake,
    /// The client's P-256 public key, from its certificate.
    point: [u8; 65],
    identity: PeerIdentity,
}

impl ExpectCertificateVerify {
    fn handle(self, core: &mut Core, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::CertificateVerify {
            return Err(out_of_order());
        }
        core.verify_certificate_verify(&self.point, Role::Client, msg.body, &msg.before)?;
        Ok(Some(State::ExpectFinished(ExpectFinished { hs: self.hs, identity: self.identity })))
    }
}

/// The client's Finished completes the handshake (RFC 8446 §4.4.4).
pub(crate) struct ExpectFinished {
    hs: Handshake,
    identity: PeerIdentity,
}

impl ExpectFinished {
    fn handle(self, core: &mut Core, now: Instant, msg: Incoming<'_>) -> Result<Option<State>, Error> {
        if msg.msg_type != HandshakeType::Finished {
            return Err(out_of_order());
        }
        if !tls13::verify_finished(&*core.provider(), &self.hs.k.client_hs, &msg.before, msg.body) {
            return Err(Error::DecryptError("client Finished"));
        }
        self.complete(core, now)?;
        Ok(None)
    }

    /// The client's Finished verified: the client's epoch-3 keys (derived at our Finished,
    /// RFC 8446 §7.1) are installed for receiving; our sending keys have been in place since
    /// our Finished and keep their record numbers. Held 0.5-RTT data goes out now.
    fn complete(self, core: &mut Core, now: Instant) -> Result<(), Error> {
        let Self { hs: Handshake { config, k, half_rtt }, identity } = self;
        let HalfRtt { master, client_ap, server_ap, held, .. } = half_rtt;
        core.recv_app = Some(ReceiveEpoch13::new(EPOCH_APPLICATION, core.protection(k.aead, &client_ap)?));
        core.app_secrets = Some(Box::new((server_ap, client_ap)));
        // RFC 9147 §7: acknowledge the client's final flight.
        core.ack_now = true;
        core.tr.flight.clear();
        core.timer_armed = false;
        let res_master = master.resumption_master_secret(&*core.provider(), &core.transcript_hash());
        core.established(k.suite, identity.clone());
        for data in held {
            // The key usage limit cannot be reached this early; were it, the association ends.
            core.send_app_record(&data).map_err(|e| match e {
                UsageError::LimitReached(w) => Error::LimitReached(w),
                _ => Error::Crypto,
            })?;
        }
        issue_ticket(core, &config, now, k.suite, identity, &res_master);
        Ok(())
    }
}

/// The client's Certificate (RFC 8446 §4.4.2) checked against the configured client
/// authentication: its key and identity, `None` for an empty one where that is allowed.
fn verify_client_certificate(
    config: &ServerConfig,
    k: &Keys,
    body: &[u8],
    claimed: &mut Option<Box<PeerIdentity>>,
) -> Result<Option<([u8; 65], PeerIdentity)>, Error> {
    let cert = Certificate13::read_exact_with(body, k.cert_type)?;
    // Named in the failure report if the certificate is refused.
    *claimed = match (&config.client_auth, cert.certificate_list.first()) {
        (ClientAuth::Required(PeerVerifier::Pinned(_)) | ClientAuth::Optional(PeerVerifier::Pinned(_)), Some(e)) => {
            Some(Box::new(PeerIdentity::RawPublicKey(e.data.clone())))
        }
        (_, Some(_)) => {
            Some(Box::new(PeerIdentity::Certificate(cert.certificate_list.iter().map(|e| e.data.clone()).collect())))
        }
        (_, None) => None,
    };
    let now = (config.common.wall_clock)();
    let (verifier, required) = match &config.client_auth {
        ClientAuth::None => {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::UnrequestedClientCertificate13));
        }
        ClientAuth::Optional(v) => (v, false),
        ClientAuth::Required(v) => (v, true),
    };
    if cert.certificate_list.is_empty() {
        return if required { Err(Error::Incompatible(Incompatible::ClientCertificateRequired13)) } else { Ok(None) };
    }
    let chain: Vec<Vec<u8>> = cert.certificate_list.iter().map(|e| e.data.clone()).collect();
    match verifier {
        PeerVerifier::WebPki(v) => Ok(Some((v.verify_client(&chain, now)?, PeerIdentity::Certificate(chain)))),
        PeerVerifier::Pinned(p) => {
            let spki = chain.into_iter().next().unwrap_or_default();
            Ok(Some((p.verify(&spki)?, PeerIdentity::RawPublicKey(spki))))
        }
    }
}

/// Server: one NewSessionTicket after the handshake (RFC 8446 §4.6.1), stored in the
/// session store under a random ticket ID (and reported as [`Event::TicketIssued`] when
/// configured) and retransmitted until acknowledged (RFC 9147 §5.8.4).
fn issue_ticket(
    core: &mut Core,
    config: &ServerConfig,
    now: Instant,
    suite: CipherSuite,
    identity: PeerIdentity,
    res_master: &Secret,
) {
    // RFC 8446 §4.6.1: at most seven days, in whole seconds; zero would be discarded.
    let lifetime = config.effective_ticket_lifetime();
    if !config.issues_tickets() || lifetime.is_zero() {
        return;
    }
    // The ticket ID: the store key of a stateful ticket, and inside a sealed one the key a
    // store can take to make its 0-RTT single use (RFC 8446 §8.1).
    let mut id = vec![0u8; 16];
    let mut add = [0u8; 4];
    core.rng().fill(&mut id);
    core.rng().fill(&mut add);
    let nonce = vec![0u8];
    let psk = tls13::resumption_psk(&*core.provider(), res_master, &nonce);
    // RFC 8446 §4.2.10 / §4.6.1: the ticket allows 0-RTT only when the server takes it.
    let max_early_data = config.early_data.as_ref().map_or(0, |e| e.max_early_data_size);
    let session = Session {
        id: id.clone(),
        suite,
        extended_master_secret: true,
        peer_identity: identity,
        established_at: now,
        lifetime,
        master_secret: Zeroizing::new([0; 48]),
        ticket12: None,
        ticket13: Some(Ticket13 {
            psk: Zeroizing::new(*psk.as_bytes()),
            age_add: u32::from_be_bytes(add),
            max_early_data,
            client_ip: Some(core.peer.ip()),
        }),
    };
    let ticket = match config.tickets.keys() {
        // Stateless: the ticket is the sealed session; nothing is stored or reported.
        Some(keys) => {
            let wall = (config.common.wall_clock)();
            keys.seal(&session, core.rng(), now, wall)
        }
        None => {
            crate::resumption::store_session(config, &session, now);
            if config.session_events {
                core.out.events.push_back(Event::TicketIssued(Box::new(session)));
            }
            id
        }
    };
    let nst = NewSessionTicket13 {
        ticket_lifetime: lifetime.as_secs() as u32,
        ticket_age_add: u32::from_be_bytes(add),
        ticket_nonce: nonce,
        ticket,
        extensions: if max_early_data > 0 {
            vec![NewSessionTicketExtension13::EarlyData(max_early_data)]
        } else {
            Vec::new()
        },
    };
    core.send_post_handshake(now, HandshakeType::NewSessionTicket, nst.to_vec());
}
