//! The role-independent core of one DTLS 1.2 association (RFC 6347): the record layer (epochs,
//! sequence numbers, record protection, replay window, records that overtook their keys),
//! handshake reassembly and the transcript, flights and their retransmission
//! (RFC 6347 §4.2.4), alerts, application data, counters and closure, and the handshake steps
//! both roles take the same way (master secret, key block, Finished). The client's and the
//! server's handshake states ([`super::client`], [`super::server`]) drive it; it knows neither.

use crate::codec::*;
use crate::config::{ClientConfig, CommonConfig, ServerConfig};
use crate::crypto::SeededRng;
use crate::crypto::prf::{self, MasterSecret};
use crate::error::{Error, UsageError};
use crate::handshake::flight::{RetransmitTimer, fragment};
use crate::handshake::reassembly::{HandshakeMessage, Insert, Reassembler};
use crate::msgs::*;
use crate::record::{self, RecordHeader, RecordProtection, ReplayWindow};
use crate::resumption::Session;
use crate::rrc::ReturnRoutabilityCheck;
use crate::suites::SupportedSuite;
use crate::types::{CloseReason, Event, Outputs, PeerIdentity, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Where the association is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Handshaking,
    Established,
    Closed,
}

/// A message of a flight, kept for retransmission (RFC 6347 §4.2.4: flights are resent whole).
#[derive(Debug)]
pub(super) enum FlightMsg {
    Handshake { epoch: u16, msg_type: HandshakeType, message_seq: u16, body: Vec<u8> },
    ChangeCipherSpec,
}

/// A HelloVerifyRequest kept aside for the client's handshake state (see `Core::pending_hvr`).
#[derive(Debug)]
pub(super) struct PendingHvr {
    /// The record's sequence number: the server echoes the one of the ClientHello it answers
    /// (RFC 6347 §4.2.1), which tells an answer to an earlier ClientHello from one to ours.
    pub(super) record_seq: u64,
    pub(super) body: Vec<u8>,
}

/// Negotiated parameters of a handshake in progress, the same for both roles.
pub(super) struct HsData {
    pub(super) suite: &'static SupportedSuite,
    pub(super) client_random: [u8; 32],
    pub(super) server_random: [u8; 32],
    pub(super) session_id: Vec<u8>,
    pub(super) ems: bool,
    pub(super) cert_type: CertificateType,
}

impl HsData {
    /// The resumable session this handshake establishes, if the server issued a session ID
    /// (RFC 5246 §7.4.1.3). `lifetime` is the role's: only the server knows its own.
    pub(super) fn session(
        &self,
        master: &MasterSecret,
        identity: &PeerIdentity,
        now: Instant,
        lifetime: Duration,
    ) -> Option<Session> {
        (!self.session_id.is_empty()).then(|| Session {
            id: self.session_id.clone(),
            suite: self.suite.suite,
            extended_master_secret: self.ems,
            peer_identity: identity.clone(),
            established_at: now,
            lifetime,
            master_secret: Zeroizing::new(*master.as_bytes()),
            ticket12: None,
            ticket13: None,
        })
    }
}

/// The part of either role's configuration the core reads. The rest of a role's
/// configuration stays with that role's handshake states.
pub(super) trait CommonSource: Send + Sync {
    fn common(&self) -> &CommonConfig;
}

impl CommonSource for ClientConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl CommonSource for ServerConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

/// The record layer, flights and results of one DTLS 1.2 association, whatever its role.
pub(super) struct Core {
    pub(super) role: Role,
    pub(super) peer: SocketAddr,
    config: Arc<dyn CommonSource>,
    /// Needed only during the handshake; dropped once it is over.
    rng: Option<Box<SeededRng>>,
    pub(super) state: State,
    // record layer
    pub(super) write_epoch: u16,
    pub(super) write_seq: [u64; 2],
    write_prot: Option<RecordProtection>,
    read_prot: Option<RecordProtection>,
    replay: ReplayWindow,
    /// Records that overtook the handshake (rare): boxed, so an association without any
    /// carries one pointer instead of two empty vectors.
    early: Option<Box<Early>>,
    // handshake
    pub(super) reasm: Reassembler,
    pub(super) send_seq: u16,
    pub(super) transcript: Vec<u8>,
    pub(super) flight: Vec<FlightMsg>,
    pub(super) timer: RetransmitTimer,
    pub(super) timer_armed: bool,
    /// First message_seq of the peer flight we are waiting for (see `send_new_flight`).
    pub(super) peer_flight_start: u16,
    /// A HelloVerifyRequest seen while waiting for ServerHello, handled outside the
    /// reassembler because a server may send a fresh one (new cookie) at any time. Boxed: it
    /// is rare, and every association carries the field.
    pub(super) pending_hvr: Option<Box<PendingHvr>>,
    /// We sent the handshake's last flight and must resend it if the peer repeats its own
    /// (RFC 6347 §4.2.4); cleared once the peer's application data proves it is done.
    pub(super) holds_last_flight: bool,
    /// When the kept last flight is released if the peer stays silent.
    pub(super) linger_until: Option<Instant>,
    // results
    pub(super) suite: Option<&'static SupportedSuite>,
    pub(super) identity: PeerIdentity,
    /// Client side only (the server's copy lives in its session store); boxed so a server
    /// association does not carry an empty `Session`'s size inline.
    pub(super) session: Option<Box<Session>>,
    pub(super) resumed: bool,
    /// The handshake ran without extended_master_secret (RFC 7627), which only a
    /// configuration with `require_extended_master_secret` off allows.
    pub(super) without_ems: bool,
    pub(super) client_random: [u8; 32],
    /// Digest of the ClientHello body that created this (server-side) association.
    pub(super) hello_digest: [u8; 32],
    pub(super) out: Outputs,
    pub(super) last_activity: Instant,
    /// Connection IDs (RFC 9146); empty vectors when none are used.
    pub(super) cid: Cids,
}

/// Epoch-1 input that arrived before it could be used.
#[derive(Debug, Default)]
struct Early {
    /// Records before their keys.
    records: Vec<(RecordHeader, Vec<u8>)>,
    /// Application data before the Finished that completes the handshake.
    app_data: Vec<Vec<u8>>,
}

/// The Connection IDs of one DTLS 1.2 association (RFC 9146 §3). The CIDs themselves are
/// out of line, so an association without them carries one pointer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Cids {
    ids: Option<Box<CidPair>>,
    /// The peer agreed: both sides sent the extension.
    pub(crate) negotiated: bool,
    /// The last datagram held a record that authenticated and was newer than any before it
    /// (what RFC 9146 §6 asks before the peer's address may change).
    pub(crate) advanced: bool,
    /// Both sides sent the rrc extension (RFC 9853 §3), which needs the CID agreed too.
    pub(crate) rrc: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct CidPair {
    read: Vec<u8>,
    write: Vec<u8>,
    /// `path_response` / `path_drop` messages received, for the endpoint's path checks
    /// (at most [`MAX_RRC_HELD`]).
    rrc_in: Vec<ReturnRoutabilityCheck>,
}

/// RRC answers held between two datagrams: the endpoint takes them after each one, so
/// more only come from a datagram packed with them, and the rest go.
const MAX_RRC_HELD: usize = 4;

impl Cids {
    /// The CID we asked to receive: peers put it in the records they send us (a client's
    /// offer, until the ServerHello says whether it was accepted). Empty: none.
    pub(crate) fn read(&self) -> &[u8] {
        self.ids.as_ref().map_or(&[], |i| &i.read)
    }

    /// The CID the peer asked to receive, which our protected records carry. Empty: none.
    pub(crate) fn write(&self) -> &[u8] {
        self.ids.as_ref().map_or(&[], |i| &i.write)
    }

    pub(super) fn set_read(&mut self, cid: Vec<u8>) {
        self.ids.get_or_insert_with(Default::default).read = cid;
    }

    pub(super) fn set_write(&mut self, cid: Vec<u8>) {
        self.ids.get_or_insert_with(Default::default).write = cid;
    }

    /// Takes the oldest `path_response` / `path_drop` received.
    pub(crate) fn take_rrc(&mut self) -> Option<ReturnRoutabilityCheck> {
        let held = &mut self.ids.as_mut()?.rrc_in;
        (!held.is_empty()).then(|| held.remove(0))
    }

    /// Whether protected records from the peer must be `tls12_cid` records (RFC 9146 §3).
    fn expects_cid_records(&self) -> bool {
        self.negotiated && !self.read().is_empty()
    }

    /// Whether our protected records are `tls12_cid` records.
    fn writes_cid_records(&self) -> bool {
        self.negotiated && !self.write().is_empty()
    }
}

/// Decodes a message whose layout depends on negotiated parameters, refusing trailing bytes.
pub(super) fn read_all<'a, T>(
    body: &'a [u8],
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, InvalidMessage>,
) -> Result<T, InvalidMessage> {
    let mut r = Reader::new(body);
    let v = f(&mut r)?;
    r.expect_empty(std::any::type_name::<T>())?;
    Ok(v)
}

pub(super) fn encode_to_vec(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v);
    v
}

pub(super) fn hello_digest(provider: &dyn crate::crypto::CryptoProvider, body: &[u8]) -> [u8; 32] {
    let mut h = provider.sha256();
    h.update(body);
    h.current()
}

impl Core {
    pub(super) fn new(
        role: Role,
        peer: SocketAddr,
        config: Arc<dyn CommonSource>,
        rng: SeededRng,
        now: Instant,
        timer: RetransmitTimer,
    ) -> Self {
        let reasm = Reassembler::new(config.common().max_reassembly_bytes);
        Self {
            role,
            peer,
            config,
            rng: Some(Box::new(rng)),
            state: State::Handshaking,
            write_epoch: 0,
            write_seq: [0, 0],
            write_prot: None,
            read_prot: None,
            replay: ReplayWindow::default(),
            early: None,
            reasm,
            send_seq: 0,
            transcript: Vec::new(),
            flight: Vec::new(),
            timer,
            timer_armed: false,
            peer_flight_start: 0,
            pending_hvr: None,
            holds_last_flight: false,
            linger_until: None,
            suite: None,
            identity: PeerIdentity::Anonymous,
            session: None,
            resumed: false,
            without_ems: false,
            client_random: [0; 32],
            hello_digest: [0; 32],
            out: Outputs::default(),
            last_activity: now,
            cid: Cids::default(),
        }
    }

    pub(super) fn rng(&mut self) -> &mut SeededRng {
        // Only the handshake draws randomness, and it runs while the RNG is present; the
        // fallback keeps this total rather than panicking.
        self.rng.get_or_insert_with(|| Box::new(SeededRng::from_os()))
    }

    pub(super) fn common(&self) -> &CommonConfig {
        self.config.common()
    }

    /// Largest application-data payload that fits one datagram at the configured MTU.
    pub(super) fn max_payload(&self) -> usize {
        self.common().mtu.saturating_sub(self.protected_overhead()).min(16384)
    }

    /// Bytes a protected record adds to its content: header, nonce, tag, and with a CID the
    /// CID and the inner content type (RFC 9146 §4).
    fn protected_overhead(&self) -> usize {
        let cid = if self.cid.writes_cid_records() { self.cid.write().len() + 1 } else { 0 };
        self.write_prot.as_ref().map_or(RecordHeader::LEN + 24, |p| p.overhead()) + cid
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking if self.timer_armed => self.timer.deadline(),
            State::Established => self.linger_until,
            _ => None,
        }
    }

    /// Drives the retransmission timer (RFC 6347 §4.2.4.1).
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Established {
            if self.linger_until.is_some_and(|t| t <= now) {
                self.release_handshake();
            }
            return;
        }
        let Some(deadline) = self.poll_timeout() else { return };
        if now < deadline {
            return;
        }
        if self.timer.on_timeout(now).is_err() {
            self.timer_armed = false;
            self.fail(Error::HandshakeTimeout);
            return;
        }
        self.out.stats.retransmissions += 1;
        self.encode_flight();
    }

    /// Sends one application-data record.
    pub(super) fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        if self.state != State::Established {
            return Err(UsageError::NotConnected);
        }
        let max = self.max_payload();
        if data.len() > max {
            return Err(UsageError::MessageTooLarge { len: data.len(), max });
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        self.write_record(ContentType::ApplicationData, data, &mut out).map_err(|e| match e {
            Error::LimitReached(w) => UsageError::LimitReached(w),
            _ => UsageError::Crypto,
        })?;
        self.push_datagram(out);
        Ok(())
    }

    /// Sends close_notify (RFC 5246 §7.2.1) and closes.
    pub(super) fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
        self.closed(CloseReason::Local);
    }

    // ----------------------------------------------------------------------------------------
    // input

    /// Processes one record of a datagram. `accept_hvr`: the handshake waits for a ServerHello,
    /// so a HelloVerifyRequest is kept aside for it (see `pending_hvr`).
    ///
    /// `cid` is the CID of a `tls12_cid` record (RFC 9146 §4), empty for any other record.
    pub(super) fn handle_record(
        &mut self,
        header: RecordHeader,
        cid: &[u8],
        fragment: &[u8],
        peer_repeated: &mut bool,
        accept_hvr: bool,
    ) {
        if header.version != ProtocolVersion::DTLS1_2 && header.version != ProtocolVersion::DTLS1_0 {
            self.out.stats.records_invalid += 1;
            return;
        }
        let is_cid = header.content_type == ContentType::Tls12Cid;
        // A CID record carries the CID we issued, or it is not for us (RFC 9146 §4).
        if is_cid && (cid != self.cid.read() || cid.is_empty()) {
            self.out.stats.records_invalid += 1;
            return;
        }
        let plaintext: Vec<u8>;
        let mut content_type = header.content_type;
        let payload: &[u8] = match header.epoch {
            // RFC 9146 §3: plaintext records never use the CID format.
            0 if is_cid => {
                self.out.stats.records_invalid += 1;
                return;
            }
            0 => fragment,
            1 => {
                let Some(prot) = &self.read_prot else {
                    // Keys not derived yet: the record overtook the handshake message that
                    // makes them. Hold a bounded number and retry later.
                    let max = self.common().max_early_records;
                    let early = self.early.get_or_insert_with(Default::default);
                    if early.records.len() < max {
                        early.records.push((header, fragment.to_vec()));
                    } else {
                        self.out.stats.records_invalid += 1;
                    }
                    return;
                };
                // RFC 9146 §3: once a non-empty CID is negotiated for this direction, a
                // protected record without it is invalid, and one with it needs the agreement.
                if is_cid != self.cid.expects_cid_records() {
                    self.out.stats.records_invalid += 1;
                    return;
                }
                if !self.replay.check(header.sequence_number) {
                    self.out.stats.records_replayed += 1;
                    return;
                }
                let opened = if is_cid {
                    prot.open_cid(&header, cid, fragment)
                } else {
                    prot.open(&header, fragment).map(|p| (header.content_type, p))
                };
                match opened {
                    Ok((typ, p)) => {
                        // RFC 9146 §6: newer than anything before, so it may move the peer.
                        if self.replay.highest().is_none_or(|h| header.sequence_number > h) {
                            self.cid.advanced = true;
                        }
                        // RFC 6347 §4.1.2.6: the window moves only after authentication.
                        self.replay.mark(header.sequence_number);
                        content_type = typ;
                        plaintext = p;
                        &plaintext
                    }
                    Err(_) => {
                        self.out.stats.records_auth_failed += 1;
                        // RFC 5246 §7.4.9: the handshake cannot complete without the peer's
                        // Finished, the first record of its epoch 1 (sequence number 0, RFC
                        // 6347 §4.1); waiting for the retransmission budget would only hide a
                        // wrong key (RFC 5246 §7.2.2: bad_record_mac). Other records are still
                        // dropped (RFC 6347 §4.1.2.7): late records of a previous association
                        // with the same address must not end a new handshake.
                        if self.state == State::Handshaking && header.epoch == 1 && header.sequence_number == 0 {
                            self.fail(Error::BadRecordMac(match self.role {
                                Role::Server => "the client's Finished",
                                Role::Client => "the server's Finished",
                            }));
                        }
                        return;
                    }
                }
            }
            _ => {
                self.out.stats.records_invalid += 1;
                return;
            }
        };
        match content_type {
            ContentType::Handshake => self.handle_handshake_record(header, payload, peer_repeated, accept_hvr),
            ContentType::ChangeCipherSpec => {
                if payload != [1] {
                    self.out.stats.records_invalid += 1;
                }
            }
            ContentType::Alert => self.handle_alert(header.epoch, payload),
            // RFC 9853 §4: protected, and only once both sides agreed to it.
            ContentType::ReturnRoutabilityCheck
                if header.epoch == 1 && self.cid.rrc && self.state == State::Established =>
            {
                self.handle_rrc(payload)
            }
            ContentType::ApplicationData if header.epoch == 1 => match self.state {
                State::Established => {
                    if self.holds_last_flight {
                        self.release_handshake();
                    }
                    self.out.events.push_back(Event::ApplicationData(payload.to_vec()));
                }
                State::Handshaking
                    if self.early.as_ref().map_or(0, |e| e.app_data.len()) < self.common().max_early_records =>
                {
                    // Authenticated but the Finished that completes the handshake is still
                    // missing (reordering); deliver once it arrives.
                    self.early.get_or_insert_with(Default::default).app_data.push(payload.to_vec());
                }
                _ => self.out.stats.records_invalid += 1,
            },
            _ => self.out.stats.records_invalid += 1,
        }
    }

    /// One `return_routability_check` message (RFC 9853 §5.4): a `path_challenge` is
    /// answered at once, from here to where the peer is known to be (an endpoint that moved
    /// the association on the record sends there); answers go to the endpoint's path checks.
    fn handle_rrc(&mut self, payload: &[u8]) {
        match ReturnRoutabilityCheck::read(payload) {
            Ok(ReturnRoutabilityCheck::PathChallenge(cookie)) => {
                if let Some(d) = self.seal_rrc(&ReturnRoutabilityCheck::PathResponse(cookie)) {
                    self.push_datagram(d);
                }
            }
            Ok(m @ (ReturnRoutabilityCheck::PathResponse(_) | ReturnRoutabilityCheck::PathDrop(_))) => {
                if let Some(ids) = self.cid.ids.as_mut()
                    && ids.rrc_in.len() < MAX_RRC_HELD
                {
                    ids.rrc_in.push(m);
                }
            }
            // RFC 9853 §4: unknown message types are ignored.
            Ok(ReturnRoutabilityCheck::Unknown(_)) => {}
            Err(_) => self.out.stats.records_invalid += 1,
        }
    }

    /// One `return_routability_check` record of the current epoch, as a datagram of its own
    /// (RFC 9853 §5.3: each challenge in its own packet), for the caller to address; `None`
    /// before the handshake is over or without RRC.
    pub(super) fn seal_rrc(&mut self, msg: &ReturnRoutabilityCheck) -> Option<Vec<u8>> {
        if !self.cid.rrc || self.state != State::Established {
            return None;
        }
        let mut out = Vec::with_capacity(64);
        self.write_record(ContentType::ReturnRoutabilityCheck, &msg.to_vec(), &mut out).ok()?;
        Some(out)
    }

    fn handle_handshake_record(
        &mut self,
        header: RecordHeader,
        payload: &[u8],
        peer_repeated: &mut bool,
        accept_hvr: bool,
    ) {
        let epoch = header.epoch;
        let mut r = Reader::new(payload);
        while !r.is_empty() {
            let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) else {
                self.out.stats.records_invalid += 1;
                return;
            };
            // Finished must be protected by the new epoch; a plaintext one is forged or broken.
            if epoch == 0 && hdr.msg_type == HandshakeType::Finished {
                self.out.stats.records_invalid += 1;
                continue;
            }
            if epoch == 0
                && hdr.msg_type == HandshakeType::HelloVerifyRequest
                && hdr.fragment_offset == 0
                && hdr.fragment_length == hdr.length
                && self.role == Role::Client
            {
                if accept_hvr {
                    self.pending_hvr =
                        Some(Box::new(PendingHvr { record_seq: header.sequence_number, body: frag.to_vec() }));
                }
                // Past the ServerHello, a HelloVerifyRequest is a late answer to one of our
                // earlier ClientHellos (the network delayed it beyond our retransmission
                // timer): ignored. In the reassembler it would pass for a repeat of the
                // server's flight and make us resend ours for nothing.
                continue;
            }
            if self.state == State::Established && hdr.message_seq >= self.reasm.next_seq() {
                // A new handshake message after the handshake: renegotiation, which this
                // implementation refuses (RFC 5746 §4.4 allows a no_renegotiation warning).
                if epoch == 1 && matches!(hdr.msg_type, HandshakeType::HelloRequest | HandshakeType::ClientHello) {
                    self.send_alert(AlertLevel::Warning, AlertDescription::NoRenegotiation);
                }
                self.out.stats.records_invalid += 1;
                continue;
            }
            match self.reasm.insert(&hdr, frag) {
                Ok(Insert::Old) if hdr.message_seq < self.peer_flight_start => *peer_repeated = true,
                Ok(_) => {}
                Err(_) => self.out.stats.records_invalid += 1,
            }
        }
    }

    fn handle_alert(&mut self, epoch: u16, payload: &[u8]) {
        let Ok(alert) = Alert::read_exact(payload) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        // After the handshake, plaintext alerts are unauthenticated and could be spoofed.
        if self.state == State::Established && epoch == 0 {
            self.out.stats.records_invalid += 1;
            return;
        }
        if alert.description == AlertDescription::CloseNotify {
            if self.state == State::Established {
                self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
            }
            self.closed(CloseReason::PeerClosed);
        } else if alert.level == AlertLevel::Fatal || self.state == State::Handshaking {
            // RFC 6347 §4.1.2.7 treats alerts as fatal in practice; a warning during the
            // handshake (other than no_renegotiation) means the peer will not continue.
            if alert.level == AlertLevel::Fatal || alert.description != AlertDescription::NoRenegotiation {
                self.closed(CloseReason::Error(Error::AlertReceived(alert.description)));
            }
        }
    }

    /// The epoch-1 records that arrived before their keys, once the keys exist.
    /// A held `tls12_cid` record carried our CID (checked when it was held).
    pub(super) fn take_early_records(&mut self) -> Option<Vec<(RecordHeader, Vec<u8>)>> {
        let early = self.early.as_mut().filter(|e| self.read_prot.is_some() && !e.records.is_empty())?;
        Some(std::mem::take(&mut early.records))
    }

    /// Our flight was lost if the peer repeats the flight it answers (RFC 6347 §4.2.4):
    /// resend it, during the handshake or while we keep the handshake's last flight.
    pub(super) fn on_peer_repeated(&mut self) {
        if self.state != State::Closed
            && !self.flight.is_empty()
            && (self.state == State::Handshaking || self.holds_last_flight)
        {
            self.out.stats.retransmissions += 1;
            self.timer.note_retransmitted();
            self.encode_flight();
        }
    }

    // ----------------------------------------------------------------------------------------
    // handshake steps both roles share

    /// RFC 7627 §4 (session hash over the transcript through ClientKeyExchange) or the
    /// RFC 5246 §8.1 derivation.
    pub(super) fn derive_master(&self, d: &HsData, pms: &[u8]) -> MasterSecret {
        let provider = &*self.common().provider;
        if d.ems {
            let mut h = provider.sha256();
            h.update(&self.transcript);
            MasterSecret::extended(provider, pms, &h.current())
        } else {
            MasterSecret::from_pre_master(provider, pms, &d.client_random, &d.server_random)
        }
    }

    /// Derives the key block (RFC 5246 §6.3) and installs epoch 1 in both directions.
    pub(super) fn install_keys(&mut self, d: &HsData, master: &MasterSecret) -> Result<(), Error> {
        let provider = self.common().provider.clone();
        let kb = prf::key_block(&*provider, master, d.suite.aead, &d.server_random, &d.client_random);
        let client = RecordProtection::new(&*provider, d.suite.aead, &kb.client_write_key, &kb.client_write_iv)?;
        let server = RecordProtection::new(&*provider, d.suite.aead, &kb.server_write_key, &kb.server_write_iv)?;
        let (write, read) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.write_prot = Some(write);
        self.read_prot = Some(read);
        Ok(())
    }

    /// Checks the peer's Finished against the transcript before it (RFC 5246 §7.4.9) and, when
    /// `answer` names our label, sends our ChangeCipherSpec + Finished as the handshake's last
    /// flight, kept to be resent if the peer repeats its own (RFC 6347 §4.2.4).
    pub(super) fn verify_peer_finished(
        &mut self,
        now: Instant,
        master: &MasterSecret,
        before_len: usize,
        msg: &HandshakeMessage,
        peer_label: &[u8],
        answer: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.transcript.truncate(before_len);
        self.check_finished(master, peer_label, &msg.body)?;
        msg.transcript_bytes(&mut self.transcript);
        if let Some(label) = answer {
            self.flight.clear();
            self.queue_ccs_finished(master, label);
            self.send_new_flight(now, false);
            self.holds_last_flight = true;
        }
        Ok(())
    }

    fn check_finished(&self, master: &MasterSecret, label: &[u8], body: &[u8]) -> Result<(), Error> {
        let provider = &*self.common().provider;
        let mut h = provider.sha256();
        h.update(&self.transcript);
        let expected = prf::verify_data(provider, master, label, &h.current());
        if body.len() != expected.len() || !bool::from(expected.ct_eq(body)) {
            return Err(Error::DecryptError("Finished verify_data"));
        }
        Ok(())
    }

    pub(super) fn queue_ccs_finished(&mut self, master: &MasterSecret, label: &[u8]) {
        let provider = self.common().provider.clone();
        let mut h = provider.sha256();
        h.update(&self.transcript);
        let vd = prf::verify_data(&*provider, master, label, &h.current());
        self.flight.push(FlightMsg::ChangeCipherSpec);
        self.write_epoch = 1;
        self.queue_handshake(HandshakeType::Finished, vd.to_vec());
    }

    /// The handshake is over: report it, deliver the application data that overtook the last
    /// Finished, and keep our last flight only as long as the peer may still need it. The role
    /// has already dealt with the session (the client keeps it, the server stores it).
    pub(super) fn established(&mut self, now: Instant, suite: &SupportedSuite, identity: PeerIdentity, resumed: bool) {
        self.state = State::Established;
        self.timer_armed = false;
        self.timer.disarm();
        self.resumed = resumed;
        self.identity = identity.clone();
        // Proven: the claim is no longer needed (no heap kept per idle association).
        self.out.claimed_identity = None;
        self.transcript = Vec::new();
        self.out.events.push_back(Event::Connected { identity, suite: suite.suite, resumed });
        self.rng = None;
        let early = self.early.as_mut().map(|e| std::mem::take(&mut e.app_data)).unwrap_or_default();
        if self.holds_last_flight && early.is_empty() {
            // RFC 6347 §4.2.4: keep our last flight for a while in case the peer repeats its
            // own (for as long as its handshake may keep retrying); its first application
            // record, or this deadline, ends the need. The peer's budget is unknown: ours,
            // from the association's policy (a link profile's is in time, and may be far
            // longer than the configuration's), is the best guess.
            self.linger_until = Some(now + self.timer.handshake_timeout());
        } else {
            self.release_handshake();
        }
        for data in early {
            self.out.events.push_back(Event::ApplicationData(data));
        }
    }

    /// Frees what only the handshake needed, so an idle association stays small.
    fn release_handshake(&mut self) {
        self.holds_last_flight = false;
        self.linger_until = None;
        self.flight = Vec::new();
        self.transcript = Vec::new();
        self.early = None;
        self.pending_hvr = None;
        self.reasm.shrink_to_fit();
    }

    /// Adds a handshake message to the current flight and to the transcript.
    pub(super) fn queue_handshake(&mut self, msg_type: HandshakeType, body: Vec<u8>) {
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        let msg = HandshakeMessage { msg_type, message_seq, body };
        msg.transcript_bytes(&mut self.transcript);
        let HandshakeMessage { body, .. } = msg;
        self.flight.push(FlightMsg::Handshake { epoch: self.write_epoch, msg_type, message_seq, body });
    }

    /// Sends a new flight. `expect_reply`: the peer answers it, so the retransmission timer
    /// runs (RFC 6347 §4.2.4); otherwise it is the handshake's last flight, resent only when
    /// the peer repeats its own.
    pub(super) fn send_new_flight(&mut self, now: Instant, expect_reply: bool) {
        // Messages numbered below this belong to the peer flight ours answers: seeing one again
        // means our flight was lost. Messages at or above it are the peer's next flight, still
        // arriving, and must not trigger a resend (that would echo retransmissions forever).
        self.peer_flight_start = self.reasm.next_seq();
        self.encode_flight();
        self.timer_armed = self.timer.start_flight(now, expect_reply);
    }

    /// Encodes the current flight into datagrams, fragmenting to the MTU
    /// (RFC 6347 §4.2.3) and packing several records per datagram (§4.1.1). The MTU is the
    /// timer's hint: the configured one, smaller after repeated timeouts (§4.1.1.1).
    fn encode_flight(&mut self) {
        let mtu = self.timer.flight_mtu(self.common().mtu);
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut cur: Vec<u8> = Vec::with_capacity(mtu);
        let mut scratch = Vec::new();
        let flight = std::mem::take(&mut self.flight);
        for msg in &flight {
            match msg {
                FlightMsg::ChangeCipherSpec => {
                    if cur.len() + RecordHeader::LEN + 1 > mtu && !cur.is_empty() {
                        datagrams.push(std::mem::replace(&mut cur, Vec::with_capacity(mtu)));
                    }
                    let seq = self.next_seq(0);
                    record::encode_plaintext(
                        ContentType::ChangeCipherSpec,
                        ProtocolVersion::DTLS1_2,
                        0,
                        seq,
                        &[1],
                        &mut cur,
                    );
                }
                FlightMsg::Handshake { epoch, msg_type, message_seq, body } => {
                    let overhead = if *epoch == 0 { RecordHeader::LEN } else { self.protected_overhead() };
                    let max_frag = mtu.saturating_sub(overhead).max(HandshakeHeader::LEN + 1);
                    for (hdr, frag) in fragment(*msg_type, *message_seq, body, max_frag) {
                        scratch.clear();
                        hdr.encode(&mut scratch);
                        scratch.extend_from_slice(frag);
                        if cur.len() + overhead + scratch.len() > mtu && !cur.is_empty() {
                            datagrams.push(std::mem::replace(&mut cur, Vec::with_capacity(mtu)));
                        }
                        let seq = self.next_seq(*epoch);
                        if *epoch == 0 {
                            record::encode_plaintext(
                                ContentType::Handshake,
                                ProtocolVersion::DTLS1_2,
                                0,
                                seq,
                                &scratch,
                                &mut cur,
                            );
                        } else if let Some(p) = &self.write_prot {
                            // Sealing fails only when the sequence space is exhausted; the
                            // record is then skipped and the timer gives up eventually.
                            let _ = seal(p, &self.cid, ContentType::Handshake, *epoch, seq, &scratch, &mut cur);
                        }
                    }
                }
            }
        }
        self.flight = flight;
        if !cur.is_empty() {
            datagrams.push(cur);
        }
        self.timer.note_flight_encoded(datagrams.iter().map(Vec::len).max().unwrap_or(0));
        for d in datagrams {
            self.push_datagram(d);
        }
    }

    fn next_seq(&mut self, epoch: u16) -> u64 {
        let i = usize::from(epoch.min(1));
        let s = self.write_seq[i];
        self.write_seq[i] += 1;
        s
    }

    fn write_record(&mut self, typ: ContentType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let epoch = self.write_epoch;
        if self.write_seq[usize::from(epoch.min(1))] >= record::MAX_SEQ {
            // RFC 6347 §4.1: never let the sequence number wrap.
            return Err(Error::LimitReached("record sequence number space exhausted"));
        }
        let seq = self.next_seq(epoch);
        if epoch == 0 {
            record::encode_plaintext(typ, ProtocolVersion::DTLS1_2, 0, seq, payload, out);
        } else {
            let p = self.write_prot.as_ref().ok_or(Error::Crypto)?;
            seal(p, &self.cid, typ, epoch, seq, payload, out)?;
        }
        Ok(())
    }

    fn push_datagram(&mut self, d: Vec<u8>) {
        self.out.push_datagram(d);
    }

    pub(super) fn send_alert(&mut self, level: AlertLevel, description: AlertDescription) {
        let alert = Alert { level, description }.encode();
        let mut out = Vec::with_capacity(48);
        if self.write_record(ContentType::Alert, &alert, &mut out).is_ok() {
            self.push_datagram(out);
        }
    }

    /// Ends the association on a fatal error, with the alert the error maps to.
    pub(super) fn fail(&mut self, e: Error) {
        if self.state == State::Closed {
            return;
        }
        if let Some(a) = e.alert() {
            self.send_alert(AlertLevel::Fatal, a);
        }
        self.closed(CloseReason::Error(e));
    }

    fn closed(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.timer_armed = false;
        self.flight.clear();
        self.out.closed(reason);
    }
}

/// Seals one protected record, as a `tls12_cid` record once the peer asked for a CID
/// (RFC 9146 §3: from the moment encryption is on).
fn seal(
    p: &RecordProtection,
    cid: &Cids,
    typ: ContentType,
    epoch: u16,
    seq: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), crate::crypto::CryptoError> {
    if cid.writes_cid_records() {
        p.seal_cid(typ, ProtocolVersion::DTLS1_2, epoch, seq, cid.write(), payload, 0, out)
    } else {
        p.seal(typ, ProtocolVersion::DTLS1_2, epoch, seq, payload, out)
    }
}
