//! The role-independent core of a DTLS 1.3 association (RFC 9147): epochs and their keys,
//! record protection and record numbers ([`super::record`]), ACK generation and processing
//! (§7), selective retransmission of the current flight (§5.8.1, §7.2), KeyUpdate (§8),
//! the flight buffer and its timer, the running transcript, alerts, the outputs, statistics
//! and close. The handshake states of each role ([`super::client`], [`super::server`]) and
//! 0-RTT ([`super::early`]) drive it; it knows none of them, so a state's data and legal
//! inputs stay in the state's own struct.
//!
//! Implemented: ACKs of the final flight, and of a partial flight when the rest does not
//! follow promptly (§7.1); selective retransmission of only the unacknowledged fragments;
//! NewSessionTicket receiving (RFC 8446 §4.6.1, RFC 9147 §5.8.4); KeyUpdate; close_notify;
//! receiving epoch-1 (0-RTT) records once the server has decided on them.

use crate::codec::*;
use crate::config::{ClientConfig, CommonConfig, ServerConfig};
use crate::crypto::{AeadAlgorithm, CryptoProvider, HashContext, SeededRng};
use crate::dtls13::cid::Cids13;
use crate::dtls13::key_schedule::{self as tls13, Secret, TrafficKeys};
use crate::dtls13::msgs::*;
use crate::dtls13::record::{
    self as record13, CiphertextRecord, HeaderStyle, ReceiveEpoch13, Record13, RecordProtection13, SendEpoch13,
    encode_plaintext13,
};
use crate::error::{Error, PeerMisbehaved, UsageError};
use crate::handshake::flight::{Delivered, RetransmitConfig, RetransmitTimer, RttSampleKind, fragment, fragment_range};
use crate::handshake::reassembly::{HandshakeMessage, Insert, Reassembler};
use crate::msgs::{Alert, HandshakeHeader};
use crate::resumption::{Session, Ticket13};
use crate::types::{CloseReason, Event, Outputs, PeerIdentity, Role, Stats};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// DTLS 1.3 epochs (RFC 9147 §6.1).
pub(crate) const EPOCH_PLAINTEXT: u64 = 0;
pub(crate) const EPOCH_HANDSHAKE: u64 = 2;
pub(crate) const EPOCH_APPLICATION: u64 = 3;

/// The 1.3 suites this engine implements, with their record protection.
pub fn suite13(suite: CipherSuite) -> Option<AeadAlgorithm> {
    Some(match suite {
        CipherSuite::TLS_CHACHA20_POLY1305_SHA256 => AeadAlgorithm::ChaCha20Poly1305,
        CipherSuite::TLS_AES_128_GCM_SHA256 => AeadAlgorithm::Aes128Gcm,
        CipherSuite::TLS_AES_128_CCM_8_SHA256 => AeadAlgorithm::Aes128Ccm8,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Handshaking,
    Established,
    Closed,
}

/// A record to send: epoch, content type, plaintext, and the flight fragment it carries.
type Outgoing = (u64, ContentType, Vec<u8>, Option<Carried>);

/// The part of a flight message one record carries: index in the flight and body range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Carried {
    msg: usize,
    start: usize,
    end: usize,
}

/// A record of the current flight as sent, so that an ACK naming its record number marks the
/// fragment it carried as delivered (RFC 9147 §7.2: "this requires implementations to track
/// which messages appear in which records").
#[derive(Debug, Clone, Copy)]
struct SentRecord {
    epoch: u64,
    seq: u64,
    carried: Carried,
    acked: bool,
}

/// Most record numbers kept for the next ACK; a flight fragmented into more records than this
/// is acknowledged in part and the rest is resent (correct, only slower).
const MAX_TO_ACK: usize = 256;

/// Why (part of) the current flight is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// The retransmission timer fired (RFC 9147 §5.8.1, way 1).
    Timer,
    /// The peer repeated its previous flight and has acknowledged nothing of ours (way 3).
    PeerRepeated,
    /// An ACK acknowledged part of the flight (way 2, §7.2).
    PartialAck,
}

#[derive(Debug)]
pub(crate) struct FlightMsg {
    epoch: u64,
    pub(crate) msg_type: HandshakeType,
    message_seq: u16,
    body: Vec<u8>,
    /// What the peer has acknowledged of the body.
    delivered: Delivered,
}

impl FlightMsg {
    fn new(epoch: u64, msg_type: HandshakeType, message_seq: u16, body: Vec<u8>) -> Self {
        Self { epoch, msg_type, message_seq, body, delivered: Delivered::default() }
    }

    fn acked(&self) -> bool {
        self.delivered.is_complete(self.body.len())
    }

    /// Largest handshake fragment (header included) that fits one record in one datagram,
    /// with a CID of `cid_len` bytes in the header of an encrypted record.
    fn max_fragment(&self, mtu: usize, cid_len: usize) -> usize {
        let overhead = if self.epoch == EPOCH_PLAINTEXT { 13 } else { 5 + cid_len + 16 + 1 };
        mtu.saturating_sub(overhead).max(HandshakeHeader::LEN + 1)
    }
}

/// The configuration both roles share, reached through the role's own configuration: the
/// core keeps the role's `Arc` (no copy per association) and sees only this part of it, the
/// rest stays with the role's handshake states.
pub(crate) trait HasCommon: Send + Sync {
    fn common(&self) -> &CommonConfig;
}

impl HasCommon for ClientConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl HasCommon for ServerConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

/// Server: receiving 0-RTT data in epoch 1 (RFC 9147 §6.1), from the decision on the
/// ClientHello's early_data ([`super::early`]) until the first epoch-3 record.
#[derive(Debug, Default)]
pub(crate) struct EarlyReceive {
    /// Epoch-1 keys while early data is accepted; `None` when it was rejected.
    pub(crate) recv: Option<ReceiveEpoch13>,
    /// Early-data bytes received, and the limit.
    pub(crate) bytes: u64,
    pub(crate) max: u64,
    /// Bytes of rejected early data skipped so far.
    pub(crate) skipped: u64,
}

/// A handshake message as a handshake state receives it.
pub(crate) struct Incoming<'a> {
    pub(crate) msg_type: HandshakeType,
    pub(crate) body: &'a [u8],
    /// The transcript hash before this message: what CertificateVerify signs and Finished
    /// MACs (RFC 8446 §4.4.3, §4.4.4); zero for the other messages, which do not need it.
    pub(crate) before: [u8; 32],
}

/// The part of a DTLS 1.3 association that outlives the handshake and does not depend on the
/// role's handshake state (see the module docs). `pub(crate)` fields are the handshake
/// states' to set as the key schedule advances.
pub(crate) struct Core {
    pub(crate) role: Role,
    pub(crate) peer: SocketAddr,
    config: Arc<dyn HasCommon>,
    pub(crate) state: State,
    pub(crate) send_app: Option<SendEpoch13>,
    pub(crate) recv_app: Option<ReceiveEpoch13>,
    /// The application epoch before the last KeyUpdate, kept for records still in flight;
    /// boxed, as most associations never have one (the epoch-2 keys are in [`Transient`]).
    recv_prev: Option<Box<ReceiveEpoch13>>,
    /// Current application traffic secrets (send, receive), for KeyUpdate (RFC 8446 §7.2).
    pub(crate) app_secrets: Option<Box<(Secret, Secret)>>,
    /// Our KeyUpdate is sent and awaits its ACK; only then do we switch keys (RFC 9147 §8).
    key_update_pending: bool,
    auto_key_update: bool,
    /// Client: the resumption master secret and the ticket the server issued (RFC 8446
    /// §4.6.1), in one box: a server association has neither.
    pub(crate) tickets: Option<Box<ClientTickets>>,
    pub(crate) resumed: bool,
    pub(crate) reasm: Reassembler,
    pub(crate) send_seq: u16,
    /// What only a handshake or a flight in progress needs; none of it when idle.
    pub(crate) tr: LazyTransient,
    timer: RetransmitTimer,
    pub(crate) timer_armed: bool,
    peer_flight_start: u16,
    pub(crate) ack_now: bool,
    /// A handshake record was accepted while handling the current datagram.
    hs_record_received: bool,
    pub(crate) suite: Option<CipherSuite>,
    pub(crate) identity: PeerIdentity,
    pub(crate) client_random: [u8; 32],
    pub(crate) hello_digest: [u8; 32],
    pub(crate) out: Outputs,
    last_activity: Instant,
    /// Connection IDs (RFC 9147 §9), when this association uses them.
    pub(crate) cid: Option<Box<Cids13>>,
}

/// A client's resumption state once the handshake is over.
pub(crate) struct ClientTickets {
    pub(crate) res_master: Secret,
    /// The ticket the server issued last.
    pub(crate) session: Option<Session>,
}

/// The part of a [`Core`] that only a handshake or a flight in progress needs: the flight,
/// its records and the ACK bookkeeping (RFC 9147 §7), records and data that arrived before
/// their keys, the transcript, and a server's deadline for its epoch-2 receiving keys.
#[derive(Default)]
pub(crate) struct Transient {
    /// The handshake's generator (a server's ticket after it takes a fresh one).
    rng: Option<Box<SeededRng>>,
    /// Server: 0-RTT receiving state (RFC 8446 §4.2.10), set by `early.rs`.
    pub(crate) early: Option<Box<EarlyReceive>>,
    /// Sequence number of our next epoch-0 record: only hellos and alerts before any keys
    /// are sent in the clear, so an established association never needs it again.
    pub(crate) plain_seq: u64,
    /// The handshake epoch's keys (RFC 9147 §6.1 epoch 2).
    pub(crate) send_hs: Option<SendEpoch13>,
    pub(crate) recv_hs: Option<ReceiveEpoch13>,
    pub(crate) transcript: Transcript,
    pub(crate) flight: Vec<FlightMsg>,
    /// Record numbers of the current flight's records (every transmission), with the
    /// fragment each carried.
    sent_records: Vec<SentRecord>,
    /// Handshake records of the peer's current flight received and buffered, to acknowledge
    /// (RFC 9147 §7); on a client also the plaintext ServerHello record.
    to_ack: Vec<RecordNumber>,
    /// When to acknowledge a partial peer flight whose rest has not followed (RFC 9147 §7.1).
    ack_deadline: Option<Instant>,
    early_records: Vec<Vec<u8>>,
    early_app_data: Vec<Vec<u8>>,
    /// Server: when the epoch-2 receiving keys go (see [`Core::release_idle`]).
    recv_hs_until: Option<Instant>,
}

impl Transient {
    const EMPTY: Transient = Transient {
        rng: None,
        early: None,
        plain_seq: 0,
        send_hs: None,
        recv_hs: None,
        transcript: Transcript(None),
        flight: Vec::new(),
        sent_records: Vec::new(),
        to_ack: Vec::new(),
        ack_deadline: None,
        early_records: Vec::new(),
        early_app_data: Vec::new(),
        recv_hs_until: None,
    };

    /// Holds nothing an established association could need (`plain_seq` aside, see there):
    /// dropping it loses nothing.
    fn is_empty(&self) -> bool {
        self.rng.is_none()
            && self.early.is_none()
            && self.send_hs.is_none()
            && self.recv_hs.is_none()
            && self.transcript.is_empty()
            && self.flight.is_empty()
            && self.sent_records.is_empty()
            && self.to_ack.is_empty()
            && self.ack_deadline.is_none()
            && self.early_records.is_empty()
            && self.early_app_data.is_empty()
            && self.recv_hs_until.is_none()
    }
}

/// A [`Transient`] boxed only while it holds something: reading an absent one reads an empty
/// one, writing allocates it, [`LazyTransient::release`] frees it. Inline in every
/// association this is one pointer instead of the 150-odd bytes of the fields.
#[derive(Default)]
pub(crate) struct LazyTransient(Option<Box<Transient>>);

static EMPTY_TRANSIENT: Transient = Transient::EMPTY;

impl LazyTransient {
    fn release(&mut self) {
        self.0 = None;
    }

    /// Without allocating: `None` when absent.
    fn get_mut(&mut self) -> Option<&mut Transient> {
        self.0.as_deref_mut()
    }
}

impl std::ops::Deref for LazyTransient {
    type Target = Transient;
    fn deref(&self) -> &Transient {
        self.0.as_deref().unwrap_or(&EMPTY_TRANSIENT)
    }
}

impl std::ops::DerefMut for LazyTransient {
    fn deref_mut(&mut self) -> &mut Transient {
        self.0.get_or_insert_with(Box::default)
    }
}

pub(crate) fn hash(provider: &dyn CryptoProvider, bytes: &[u8]) -> [u8; 32] {
    let mut h = provider.sha256();
    h.update(bytes);
    h.current()
}

/// The handshake transcript as a running hash (RFC 8446 §4.4.1): each message is absorbed
/// once and a transcript hash finalizes a copy of the context, instead of hashing every byte
/// so far again at each of the handshake's transcript hashes. `None` until the first byte
/// (and again once the handshake is over), so an idle association holds no hash state.
#[derive(Default)]
pub(crate) struct Transcript(Option<Box<dyn HashContext>>);

impl Transcript {
    fn context(&mut self, provider: &dyn CryptoProvider) -> &mut Box<dyn HashContext> {
        self.0.get_or_insert_with(|| provider.sha256())
    }

    /// Absorbs bytes already in transcript form (the `message_hash || HRR` prefix).
    pub(crate) fn add_raw(&mut self, provider: &dyn CryptoProvider, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.context(provider).update(bytes);
        }
    }

    /// Absorbs a handshake message in its TLS 1.3 form (RFC 9147 §5.2), as
    /// [`transcript_bytes_13`] writes it.
    pub(crate) fn add(&mut self, provider: &dyn CryptoProvider, msg_type: HandshakeType, body: &[u8]) {
        debug_assert!(body.len() <= 0xff_ffff, "handshake body longer than 2^24-1");
        let len = (body.len() as u32).to_be_bytes();
        let header = [u8::from(msg_type), len[1], len[2], len[3]];
        let ctx = self.context(provider);
        ctx.update(&header);
        ctx.update(body);
    }

    /// The hash of the transcript so far followed by `more` (already in transcript form),
    /// leaving the transcript as it is: the PSK binders' partial transcript (RFC 8446
    /// §4.2.11.2).
    pub(crate) fn hash_with(&self, provider: &dyn CryptoProvider, more: &[u8]) -> [u8; 32] {
        let mut ctx = match &self.0 {
            Some(c) => c.fork(),
            None => provider.sha256(),
        };
        ctx.update(more);
        ctx.current()
    }

    pub(crate) fn hash(&self, provider: &dyn CryptoProvider) -> [u8; 32] {
        match &self.0 {
            Some(c) => c.current(),
            None => provider.sha256().current(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}
impl Core {
    pub(crate) fn new(
        role: Role,
        peer: SocketAddr,
        config: Arc<dyn HasCommon>,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<std::time::Duration>,
    ) -> Self {
        let common = config.common();
        let tr = LazyTransient(Some(Box::new(Transient { rng: Some(Box::new(rng)), ..Transient::default() })));
        Self {
            role,
            peer,
            reasm: Reassembler::new(common.max_reassembly_bytes),
            timer: common.retransmit_timer(peer, role, cookie_rtt),
            config,
            state: State::Handshaking,
            send_app: None,
            recv_app: None,
            recv_prev: None,
            app_secrets: None,
            key_update_pending: false,
            auto_key_update: false,
            tickets: None,
            resumed: false,
            send_seq: 0,
            tr,
            timer_armed: false,
            peer_flight_start: 0,
            ack_now: false,
            hs_record_received: false,
            suite: None,
            identity: PeerIdentity::Anonymous,
            client_random: [0; 32],
            hello_digest: [0; 32],
            out: Outputs::default(),
            last_activity: now,
            cid: None,
        }
    }

    pub(crate) fn common(&self) -> &CommonConfig {
        self.config.common()
    }

    pub(crate) fn rng(&mut self) -> &mut SeededRng {
        self.tr.rng.get_or_insert_with(|| Box::new(SeededRng::from_os()))
    }

    pub(crate) fn transcript_hash(&self) -> [u8; 32] {
        self.tr.transcript.hash(&*self.config.common().provider)
    }

    /// The provider, as an owned handle so that it can be used while the core is borrowed
    /// mutably.
    pub(crate) fn provider(&self) -> Arc<dyn CryptoProvider> {
        self.common().provider.clone()
    }

    pub(crate) fn protection(&self, aead: AeadAlgorithm, secret: &Secret) -> Result<RecordProtection13, Error> {
        let p = &*self.common().provider;
        Ok(RecordProtection13::new(p, &TrafficKeys::derive(p, aead, secret))?)
    }

    /// Checks the peer's CertificateVerify over the transcript hash `th` before it
    /// (RFC 8446 §4.4.3) with the key of the certificate it sent.
    pub(crate) fn verify_certificate_verify(
        &self,
        point: &[u8; 65],
        signer: Role,
        body: &[u8],
        th: &[u8; 32],
    ) -> Result<(), Error> {
        let cv = CertificateVerify13::read_exact(body)?;
        if cv.algorithm != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::CertificateVerifyUnofferedScheme));
        }
        let content = certificate_verify_content(signer, th);
        self.common()
            .provider
            .ecdsa_p256_verify(point, &content, &cv.signature)
            .map_err(|_| Error::DecryptError("CertificateVerify"))
    }

    /// What every handshake message does to the association before its state sees it:
    /// retransmission timing and the transcript. Returns the message as the state receives it.
    pub(crate) fn begin_message<'a>(&mut self, now: Instant, msg: &'a HandshakeMessage) -> Incoming<'a> {
        let body = msg.body.as_slice();
        let typ = msg.msg_type;
        if self.timer_armed {
            // The first message of the peer's next flight answers ours (RFC 9147 §5.8.2); the
            // timer measures it only if ours went out once. A HelloRetryRequest (a ServerHello
            // with the RFC 8446 §4.1.3 random) ends the stateless exchange.
            let hrr = typ == HandshakeType::ServerHello && body.get(2..34) == Some(&HELLO_RETRY_REQUEST_RANDOM[..]);
            let kind = if hrr { RttSampleKind::Cookie } else { RttSampleKind::Flight };
            self.timer.on_answer(now, kind);
        }
        let before = match typ {
            HandshakeType::CertificateVerify | HandshakeType::Finished => self.transcript_hash(),
            _ => [0; 32],
        };
        // The ServerHello goes into the transcript in the client's state: after a
        // HelloRetryRequest the transcript first restarts (RFC 8446 §4.4.1).
        if typ != HandshakeType::ServerHello {
            self.tr.transcript.add(&*self.config.common().provider, typ, body);
        }
        Incoming { msg_type: typ, body, before }
    }

    // ------------------------------------------------------------------------------------

    pub(crate) fn queue(&mut self, epoch: u64, msg_type: HandshakeType, body: Vec<u8>) {
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        // RFC 9147 §5.2: the transcript uses the TLS 1.3 message form, without the DTLS fields.
        self.tr.transcript.add(&*self.config.common().provider, msg_type, &body);
        self.tr.flight.push(FlightMsg::new(epoch, msg_type, message_seq, body));
    }

    pub(crate) fn send_new_flight(&mut self, now: Instant, expect_reply: bool) {
        self.peer_flight_start = self.reasm.next_seq();
        self.tr.sent_records.clear();
        if self.state == State::Handshaking {
            // RFC 9147 §7: our next flight implicitly acknowledges the peer's, and ACKs cover
            // only the current flight, so the ACK list starts over.
            self.tr.to_ack.clear();
            self.tr.ack_deadline = None;
            self.hs_record_received = false;
        }
        self.encode_flight();
        self.timer_armed = self.timer.start_flight(now, expect_reply);
    }

    /// Sends the current flight again: only the fragments the peer has not acknowledged, split
    /// afresh to the MTU (RFC 9147 §5.8.1 SENDING state "SHOULD omit any messages or message
    /// fragments which have already been acknowledged", §7.2). The counters compare this with
    /// a whole-flight retransmission (RFC 6347 §4.2.4, still what DTLS 1.2 does) at the same
    /// timer or peer-triggered events; ACK-triggered resends have no whole-flight counterpart,
    /// so they count on the selective side only.
    fn retransmit(&mut self, why: Resend) {
        self.out.stats.retransmissions += 1;
        // Karn's rule (RFC 6298 §3): an answer after a resend is no RTT sample.
        self.timer.note_retransmitted();
        if why != Resend::PartialAck {
            let mtu = self.timer.flight_mtu(self.common().mtu);
            let cid_len = self.out_cid_len();
            let whole: usize = self
                .tr
                .flight
                .iter()
                .map(|m| fragment(m.msg_type, m.message_seq, &m.body, m.max_fragment(mtu, cid_len)).len())
                .sum();
            self.out.stats.whole_flight_records += whole as u64;
        }
        let sent = self.encode_flight();
        self.out.stats.records_retransmitted += sent as u64;
    }

    /// Encodes the flight's unacknowledged fragments (RFC 9147 §7.2: only what the peer has
    /// not acknowledged is resent), fragmenting to the MTU and packing records into datagrams;
    /// every record but the last of a datagram carries its length (RFC 9147 §4). Returns the
    /// number of records written. The MTU is the timer's hint: smaller after repeated
    /// timeouts (RFC 9147 §4.4).
    fn encode_flight(&mut self) -> usize {
        let mtu = self.timer.flight_mtu(self.common().mtu);
        let cid_len = self.out_cid_len();
        let mut items: Vec<Outgoing> = Vec::new();
        for (i, m) in self.tr.flight.iter().enumerate() {
            let max_frag = m.max_fragment(mtu, cid_len);
            for gap in m.delivered.gaps(m.body.len()) {
                for (hdr, frag) in fragment_range(m.msg_type, m.message_seq, &m.body, gap, max_frag) {
                    let start = hdr.fragment_offset as usize;
                    let carried = Carried { msg: i, start, end: start + frag.len() };
                    let mut p = Vec::with_capacity(HandshakeHeader::LEN + frag.len());
                    hdr.encode(&mut p);
                    p.extend_from_slice(frag);
                    items.push((m.epoch, ContentType::Handshake, p, Some(carried)));
                }
            }
        }
        let n = items.len();
        self.pack(items);
        n
    }

    pub(crate) fn sealed_len(&self, epoch: u64, len: usize, style: HeaderStyle) -> usize {
        let prot = match epoch {
            EPOCH_PLAINTEXT => None,
            EPOCH_HANDSHAKE => self.tr.send_hs.as_ref().map(|s| s.protection()),
            _ => self.send_app.as_ref().map(|s| s.protection()),
        };
        prot.map_or(13 + len, |p| p.sealed_len(len, style) + self.out_cid_len())
    }

    fn pack(&mut self, items: Vec<Outgoing>) {
        let mtu = self.timer.flight_mtu(self.common().mtu);
        let mut largest = 0;
        let mut datagrams: Vec<Vec<Outgoing>> = Vec::new();
        let mut cur: Vec<Outgoing> = Vec::new();
        let mut cur_len = 0;
        for it in items {
            let len = self.sealed_len(it.0, it.2.len(), HeaderStyle::FULL);
            if cur_len + len > mtu && !cur.is_empty() {
                datagrams.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            cur_len += len;
            cur.push(it);
        }
        if !cur.is_empty() {
            datagrams.push(cur);
        }
        for d in datagrams {
            let n = d.len();
            let mut out = Vec::with_capacity(mtu);
            for (i, (epoch, ct, plain, carried)) in d.into_iter().enumerate() {
                let last = i + 1 == n;
                let style = HeaderStyle { length: !last, ..HeaderStyle::choose(0, None, last) };
                if let Some(seq) = self.write_record(epoch, ct, &plain, &mut out, style)
                    && let Some(carried) = carried
                {
                    self.tr.sent_records.push(SentRecord { epoch, seq, carried, acked: false });
                }
            }
            if !out.is_empty() {
                largest = largest.max(out.len());
                self.push_datagram(out);
            }
        }
        self.timer.note_flight_encoded(largest);
    }

    /// Writes one record in `epoch`; returns its sequence number.
    fn write_record(
        &mut self,
        epoch: u64,
        ct: ContentType,
        plain: &[u8],
        out: &mut Vec<u8>,
        style: HeaderStyle,
    ) -> Option<u64> {
        match epoch {
            EPOCH_PLAINTEXT => {
                let seq = self.tr.plain_seq;
                self.tr.plain_seq += 1;
                encode_plaintext13(ct, EPOCH_PLAINTEXT, seq, plain, out);
                Some(seq)
            }
            // RFC 9147 §9: every encrypted record carries the peer's CID once agreed.
            EPOCH_HANDSHAKE => {
                let cid = self.cid.as_deref().map_or(&[][..], |c| c.out());
                self.tr.send_hs.as_mut()?.seal_cid(ct, plain, out, style, cid).ok()
            }
            _ => {
                let cid = self.cid.as_deref().map_or(&[][..], |c| c.out());
                let seq = self.send_app.as_mut()?.seal_cid(ct, plain, out, style, cid).ok()?;
                if ct == ContentType::ApplicationData && self.send_app.as_ref().is_some_and(|s| s.key_update_due()) {
                    // RFC 9846 §5.5: update the keys before the AEAD limits are reached.
                    self.auto_key_update = true;
                }
                Some(seq)
            }
        }
    }

    pub(crate) fn push_datagram(&mut self, d: Vec<u8>) {
        self.out.push_datagram(d);
    }

    fn current_epoch(&self) -> u64 {
        if let Some(a) = self.send_app.as_ref().filter(|_| self.state == State::Established) {
            a.epoch()
        } else if self.tr.send_hs.is_some() {
            EPOCH_HANDSHAKE
        } else {
            EPOCH_PLAINTEXT
        }
    }

    fn send_alert(&mut self, level: AlertLevel, description: AlertDescription) {
        let alert = Alert { level, description }.encode();
        let epoch = self.current_epoch();
        let mut out = Vec::new();
        if self.write_record(epoch, ContentType::Alert, &alert, &mut out, HeaderStyle::choose(0, None, true)).is_some()
        {
            self.push_datagram(out);
        }
    }

    /// Sends an ACK of the handshake records received. During the handshake the list is kept
    /// and each ACK repeats it whole, since an earlier ACK may have been lost (RFC 9147 §7: an
    /// ACK lists the records of the current flight received so far); after the handshake each
    /// record is acknowledged once (§7, post-handshake messages). The list is cut to what fits
    /// one datagram, keeping the newest records, which are the likeliest not yet acknowledged
    /// (§7.1 "SHOULD favor including records which have not yet been acknowledged").
    fn send_ack(&mut self) {
        self.ack_now = false;
        self.tr.ack_deadline = None;
        if self.tr.to_ack.is_empty() {
            return;
        }
        self.tr.to_ack.sort();
        self.tr.to_ack.dedup();
        let mut numbers =
            if self.state == State::Handshaking { self.tr.to_ack.clone() } else { std::mem::take(&mut self.tr.to_ack) };
        // Record header (up to 5) + content type + tag (16) + the ACK's 2-byte length.
        let fit = self.common().mtu.saturating_sub(5 + self.out_cid_len() + 1 + 16 + 2) / 16;
        if numbers.len() > fit {
            numbers.drain(..numbers.len() - fit);
        }
        let ack = Ack { record_numbers: numbers };
        // A server that sends 0.5-RTT data has epoch-3 keys before the handshake completes;
        // its ACKs of the client's flight stay in epoch 2 until then.
        let epoch = match &self.send_app {
            Some(a) if self.state == State::Established => a.epoch(),
            _ => EPOCH_HANDSHAKE,
        };
        let mut out = Vec::new();
        if self
            .write_record(epoch, ContentType::Ack, &ack.to_vec(), &mut out, HeaderStyle::choose(0, None, true))
            .is_some()
        {
            self.push_datagram(out);
        }
    }

    /// RFC 9147 §7.2: every fragment carried by an acknowledged record is delivered, in
    /// whichever transmission it was acknowledged; a partial ACK that acknowledges something
    /// new makes us resend the rest at once; a complete one cancels retransmission.
    fn handle_ack(&mut self, body: &[u8]) {
        let Ok(ack) = Ack::read_exact(body) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        let mut newly = false;
        let selective = self.common().selective_retransmission;
        let tr = &mut *self.tr;
        for rn in &ack.record_numbers {
            for r in tr.sent_records.iter_mut() {
                if r.epoch == rn.epoch && r.seq == rn.sequence_number && !r.acked {
                    r.acked = true;
                    if let Some(m) = tr.flight.get_mut(r.carried.msg) {
                        m.delivered.insert(r.carried.start, r.carried.end);
                        newly = true;
                    }
                }
            }
        }
        if newly && self.timer_armed {
            // RFC 9147 §5.8.2: a message acknowledged without having been retransmitted gives
            // an RTT sample (only the first ACK of the flight's single transmission counts).
            self.timer.on_answer(self.last_activity, RttSampleKind::Ack);
        }
        if !selective && self.tr.flight.iter().any(|m| !m.acked()) {
            // Whole-flight mode: only a complete ACK counts; the flight stays whole.
            for m in self.tr.flight.iter_mut() {
                m.delivered = Delivered::default();
            }
            for r in self.tr.sent_records.iter_mut() {
                r.acked = false;
            }
            newly = false;
        }
        if newly && self.timer_armed && self.tr.flight.iter().any(|m| !m.acked()) {
            let now = self.last_activity;
            self.retransmit(Resend::PartialAck);
            self.timer.rearm(now);
        }
        if !self.tr.flight.is_empty() && self.tr.flight.iter().all(|m| m.acked()) {
            self.timer_armed = false;
            self.timer.disarm();
            if self.key_update_pending {
                self.switch_send_keys();
            }
            if self.state == State::Established {
                self.tr.flight.clear();
                self.tr.sent_records.clear();
                self.drop_handshake_send_keys();
                // A RequestConnectionId that came while this flight was out (§9: one
                // NewConnectionId outstanding at a time).
                self.serve_cid_request(self.last_activity);
            }
        }
    }

    /// Whether no flight of ours awaits acknowledgement on an established association.
    pub(crate) fn flight_idle(&self) -> bool {
        self.state == State::Established && self.tr.flight.is_empty()
    }

    /// Whether `rec` is addressed to this association by its CID (see [`Cids13::accepts`]):
    /// plaintext records never carry one.
    fn cid_accepts(&self, rec: &Record13<'_>) -> bool {
        match (rec, self.cid.as_deref()) {
            (Record13::Plaintext(_), _) => true,
            (Record13::Ciphertext(ct), Some(c)) => c.accepts(ct.cid, ct.header.epoch_bits),
            (Record13::Ciphertext(ct), None) => ct.cid.is_empty(),
        }
    }

    /// Handles one datagram; `handshake` takes each handshake message it completes (the
    /// role's state machine, or post-handshake messages).
    pub(crate) fn handle_datagram<F>(&mut self, now: Instant, datagram: &[u8], handshake: &mut F)
    where
        F: FnMut(&mut Core, Instant, HandshakeMessage) -> Result<(), Error>,
    {
        if self.state == State::Closed {
            return;
        }
        self.out.stats.datagrams_received += 1;
        self.last_activity = now;
        let mut peer_repeated = false;
        self.hs_record_received = false;
        let cid_len = self.cid.as_deref_mut().map_or(0, |c| {
            c.advanced = false;
            c.in_len()
        });
        let mut records = record13::split_datagram13_cid(datagram, cid_len);
        let mut malformed = false;
        for rec in records.by_ref() {
            if !self.cid_accepts(&rec) {
                // RFC 9147 §4: a record with a CID that is not ours (or none when one is
                // due) is dropped with the rest of the datagram.
                malformed = true;
                break;
            }
            self.handle_record(rec, &mut peer_repeated);
            if self.state == State::Closed {
                return;
            }
        }
        if malformed || records.hit_malformed() {
            self.out.stats.records_invalid += 1;
        }
        self.drain(now, &mut peer_repeated, handshake);
        if self.state == State::Closed {
            return;
        }
        if peer_repeated {
            if self.state == State::Established {
                // Our ACK (of the client's final flight, or of a KeyUpdate) was lost
                // (RFC 9147 §7): acknowledge the repeat.
                self.ack_now = true;
            } else if self.state == State::Handshaking
                && !self.tr.flight.is_empty()
                && self.tr.flight.iter().all(|m| m.delivered == Delivered::default())
            {
                // RFC 9147 §5.8.1 way 3: only when nothing of our flight was acknowledged;
                // otherwise the peer's ACK already told us what to resend.
                self.retransmit(Resend::PeerRepeated);
            }
        }
        if self.ack_now {
            self.send_ack();
        } else if self.hs_record_received
            && self.state == State::Handshaking
            && self.tr.ack_deadline.is_none()
            && self.common().selective_retransmission
        {
            // RFC 9147 §7.1: part of the peer's flight arrived and the rest did not come with
            // it; acknowledge what we have if the rest is still missing after a quarter of the
            // retransmission timeout, so that the peer resends only the missing fragments.
            // (Reordered fragments alone do not trigger an ACK: with jitter they are common,
            // and an ACK for them would make the peer resend fragments still in flight.)
            self.tr.ack_deadline = Some(now + self.timer.current() / 4);
        }
        self.release_idle(now);
    }

    pub(crate) fn handle_record(&mut self, rec: Record13<'_>, peer_repeated: &mut bool) {
        match rec {
            Record13::Plaintext(raw) => {
                // Epoch 0: only the hellos travel in the clear; alerts in the clear are
                // believed only before the peer has keys.
                match raw.header.content_type {
                    ContentType::Handshake if raw.header.epoch == 0 => {
                        let seq = raw.header.sequence_number;
                        let accepted = self.handle_handshake_payload(EPOCH_PLAINTEXT, raw.fragment, seq, peer_repeated);
                        // The client acknowledges the ServerHello record with the rest of the
                        // server's flight, in epoch 2 (RFC 9147 §7: an ACK's epoch may be higher
                        // than the records it covers).
                        if accepted && self.role == Role::Client && self.state == State::Handshaking {
                            self.note_handshake_record(EPOCH_PLAINTEXT, seq);
                        }
                    }
                    // (Not once established: then the epoch-2 keys may be gone, dropped when idle.)
                    ContentType::Alert if self.state == State::Handshaking && self.tr.recv_hs.is_none() => {
                        self.handle_alert(raw.fragment)
                    }
                    _ => self.out.stats.records_invalid += 1,
                }
            }
            Record13::Ciphertext(ct) => {
                let bits = u64::from(ct.header.epoch_bits);
                // RFC 9147 §4.2.2: the epoch whose low bits match, newest first.
                let opened = if let Some(r) = self.recv_app.as_mut().filter(|r| r.epoch() & 3 == bits) {
                    let e = r.epoch();
                    r.open(&ct).map(|o| (e, o))
                } else if let Some(r) = self.recv_prev.as_mut().filter(|r| r.epoch() & 3 == bits) {
                    let e = r.epoch();
                    r.open(&ct).map(|o| (e, o))
                } else if bits == 1 && self.tr.early.is_some() {
                    // 0-RTT data (RFC 9147 §6.1 epoch 1).
                    self.handle_early_record(&ct);
                    return;
                } else if let Some(r) = self.tr.get_mut().and_then(|t| t.recv_hs.as_mut()).filter(|_| bits == 2) {
                    r.open(&ct).map(|o| (EPOCH_HANDSHAKE, o))
                } else if (bits == 3 && self.recv_app.is_none())
                    || (bits == 2 && self.tr.recv_hs.is_none() && self.state == State::Handshaking)
                {
                    // Application data that overtook the Finished that makes its keys, or
                    // the server's encrypted flight packed in the datagram after the
                    // ServerHello that makes its keys (the records are split before the
                    // ServerHello is processed): held and replayed once the keys exist.
                    if self.tr.early_records.len() < self.common().max_early_records {
                        let mut v = ct.header_bytes.to_vec();
                        v.extend_from_slice(ct.encrypted_record);
                        self.tr.early_records.push(v);
                    }
                    return;
                } else {
                    Err(record13::OpenError13::WrongEpoch)
                };
                let (epoch, o) = match opened {
                    Ok(x) => {
                        if let Some(c) = self.cid.as_deref_mut() {
                            c.authenticated(x.0, x.1.seq);
                        }
                        x
                    }
                    Err(record13::OpenError13::Authentication) => {
                        self.out.stats.records_auth_failed += 1;
                        return;
                    }
                    Err(record13::OpenError13::Replay) => {
                        self.out.stats.records_replayed += 1;
                        return;
                    }
                    Err(_) => {
                        self.out.stats.records_invalid += 1;
                        return;
                    }
                };
                match o.content_type {
                    ContentType::Handshake => {
                        // RFC 9147 §7: acknowledge only records processed or buffered.
                        if self.handle_handshake_payload(epoch, &o.plaintext, o.seq, peer_repeated) {
                            self.note_handshake_record(epoch, o.seq);
                        }
                    }
                    ContentType::Ack => self.handle_ack(&o.plaintext),
                    ContentType::Alert => self.handle_alert(&o.plaintext),
                    ContentType::ApplicationData if epoch >= EPOCH_APPLICATION => {
                        // Server: epoch 1 is over (RFC 9147 §5.6: "Servers could discard epoch
                        // 1 keys after the first epoch 3 data arrives").
                        if self.tr.early.is_some() {
                            self.tr.early = None;
                        }
                        // Application data from the server does not prove that it has our
                        // Finished: it may be 0.5-RTT data (RFC 8446 §2.3). Only its ACK
                        // ends the retransmission of our final flight (RFC 9147 §5.8.3).
                        match self.state {
                            State::Established => self.out.events.push_back(Event::ApplicationData(o.plaintext)),
                            State::Handshaking if self.tr.early_app_data.len() < self.common().max_early_records => {
                                self.tr.early_app_data.push(o.plaintext)
                            }
                            _ => self.out.stats.records_invalid += 1,
                        }
                    }
                    _ => self.out.stats.records_invalid += 1,
                }
            }
        }
    }

    /// An epoch-1 record (RFC 9147 §6.1) at a server that decided on early data: delivered as
    /// [`Event::EarlyData`] when it accepted it, abort past max_early_data_size (RFC 8446
    /// §4.2.10: unexpected_message); skipped and counted when it rejected it.
    fn handle_early_record(&mut self, ct: &CiphertextRecord<'_>) {
        let Some(e) = self.tr.get_mut().and_then(|t| t.early.as_mut()) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        let Some(recv) = e.recv.as_mut() else {
            let len = ct.encrypted_record.len() as u64;
            if e.skipped + len <= e.max {
                e.skipped += len;
                self.out.stats.early_records_skipped += 1;
            } else {
                self.out.stats.records_invalid += 1;
            }
            return;
        };
        match recv.open(ct) {
            Ok(o) if o.content_type == ContentType::ApplicationData => {
                e.bytes += o.plaintext.len() as u64;
                if e.bytes > e.max {
                    self.fail(Error::PeerMisbehaved(PeerMisbehaved::TooMuchEarlyData));
                    return;
                }
                self.out.events.push_back(Event::EarlyData(o.plaintext));
            }
            Ok(_) => self.out.stats.records_invalid += 1,
            Err(record13::OpenError13::Authentication) => self.out.stats.records_auth_failed += 1,
            Err(record13::OpenError13::Replay) => self.out.stats.records_replayed += 1,
            Err(_) => self.out.stats.records_invalid += 1,
        }
    }

    /// Feeds a handshake record's fragments to the reassembler; returns whether every one was
    /// buffered or already held, i.e. whether the record may be acknowledged (RFC 9147 §7).
    fn handle_handshake_payload(&mut self, epoch: u64, payload: &[u8], _seq: u64, peer_repeated: &mut bool) -> bool {
        let mut r = Reader::new(payload);
        let mut all = true;
        while !r.is_empty() {
            let Ok((hdr, frag)) = HandshakeHeader::read_fragment(&mut r) else {
                self.out.stats.records_invalid += 1;
                return false;
            };
            // Only the hellos may arrive in the clear (RFC 9147 §4.1).
            if epoch == EPOCH_PLAINTEXT
                && !matches!(hdr.msg_type, HandshakeType::ServerHello | HandshakeType::ClientHello)
            {
                self.out.stats.records_invalid += 1;
                all = false;
                continue;
            }
            match self.reasm.insert(&hdr, frag) {
                Ok(Insert::Old) if hdr.message_seq < self.peer_flight_start || self.state == State::Established => {
                    *peer_repeated = true
                }
                Ok(_) => {}
                Err(_) => {
                    self.out.stats.records_invalid += 1;
                    all = false;
                }
            }
        }
        all
    }

    fn note_handshake_record(&mut self, epoch: u64, seq: u64) {
        if self.tr.to_ack.len() < MAX_TO_ACK {
            self.tr.to_ack.push(RecordNumber { epoch, sequence_number: seq });
        }
        self.hs_record_received = true;
    }

    fn handle_alert(&mut self, payload: &[u8]) {
        let Ok(alert) = Alert::read_exact(payload) else {
            self.out.stats.records_invalid += 1;
            return;
        };
        if alert.description == AlertDescription::CloseNotify {
            if self.state == State::Established {
                self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
            }
            self.closed(CloseReason::PeerClosed);
        } else {
            // RFC 8446 §6: in TLS 1.3 every alert but close_notify and user_canceled is fatal.
            if alert.description != AlertDescription::UserCanceled {
                self.closed(CloseReason::Error(Error::AlertReceived(alert.description)));
            }
        }
    }

    fn drain<F>(&mut self, now: Instant, peer_repeated: &mut bool, handshake: &mut F)
    where
        F: FnMut(&mut Core, Instant, HandshakeMessage) -> Result<(), Error>,
    {
        loop {
            while let Some(msg) = self.reasm.pop() {
                if let Err(e) = handshake(self, now, msg) {
                    self.fail(e);
                    return;
                }
                if self.state == State::Closed {
                    return;
                }
            }
            if self.tr.early_records.is_empty() {
                // Read through the shared empty part: an idle association allocates nothing.
                break;
            }
            let (hs, app) = (self.tr.recv_hs.is_some(), self.recv_app.is_some());
            let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tr.early_records)
                .into_iter()
                .partition(|d| if d.first().is_some_and(|b| b & 3 == 2) { hs } else { app });
            self.tr.early_records = held;
            if !ready.is_empty() {
                let cid_len = self.cid.as_deref().map_or(0, |c| c.in_len());
                for d in ready {
                    for rec in record13::split_datagram13_cid(&d, cid_len) {
                        if !self.cid_accepts(&rec) {
                            self.out.stats.records_invalid += 1;
                            break;
                        }
                        self.handle_record(rec, peer_repeated);
                    }
                }
                continue;
            }
            break;
        }
    }

    pub(crate) fn established(&mut self, suite: CipherSuite, identity: PeerIdentity) {
        self.state = State::Established;
        self.identity = identity.clone();
        // Proven: the claim is no longer needed (no heap kept per idle association).
        self.out.claimed_identity = None;
        self.tr.rng = None;
        self.tr.transcript = Transcript::default();
        self.drop_handshake_send_keys();
        self.out.events.push_back(Event::Connected { identity, suite, resumed: self.resumed });
        for d in std::mem::take(&mut self.tr.early_app_data) {
            self.out.events.push_back(Event::ApplicationData(d));
        }
    }

    /// Once established, everything is sent in an application epoch except what is left of a
    /// handshake-epoch flight (the client's final flight until the server's ACK, RFC 9147
    /// §5.8.3): after that the epoch-2 sending keys are never used again, and an idle
    /// association does not keep them. (The receiving keys stay: a repeated peer flight in
    /// epoch 2 is still recognised and acknowledged.)
    fn drop_handshake_send_keys(&mut self) {
        if self.state == State::Established
            && self.tr.send_hs.is_some()
            && self.tr.flight.iter().all(|m| m.epoch != EPOCH_HANDSHAKE)
        {
            self.tr.send_hs = None;
        }
    }

    /// How long a server keeps its epoch-2 receiving keys once established: RFC 9147 §5.8.1
    /// ("for at least twice the default MSL defined for [RFC0793], when in the FINISHED state,
    /// the server MUST respond to retransmission of the client's final flight with a
    /// retransmit of its ACK"), and no less than the association's handshake budget (its
    /// policy's, as a link profile sets it), the longest a client on the same link keeps
    /// resending its Finished.
    fn finished_linger(&self) -> std::time::Duration {
        const TWICE_MSL: std::time::Duration = std::time::Duration::from_secs(2 * 120);
        TWICE_MSL.max(self.timer.handshake_timeout())
    }

    /// Frees what an established association with no flight in progress no longer needs, so
    /// that an idle association stays small; nothing here changes what goes on the wire.
    ///
    /// * The [`Transient`] part goes once it holds nothing, and the reassembler's list loses
    ///   its capacity (a post-handshake message allocates them again).
    /// * The epoch-2 receiving keys: a client's once the server acknowledged its final flight
    ///   (the server is then FINISHED and sends nothing in epoch 2 again, RFC 9147 §5.8.1; a
    ///   reordered copy of its flight is dropped as a record of an unknown epoch, §4.2.2); a
    ///   server's after [`Core::finished_linger`], since only it tells when the client stops
    ///   resending its Finished: the client's epoch-3 records do not, as the client sends them
    ///   before our ACK reaches it (RFC 9147 §5.8.1, §7: a lost ACK of the final flight is
    ///   answered by acknowledging the repeat).
    fn release_idle(&mut self, now: Instant) {
        if self.state != State::Established {
            return;
        }
        if self.tr.recv_hs.is_some() && self.role == Role::Server {
            let linger = self.finished_linger();
            let until = *self.tr.recv_hs_until.get_or_insert(now + linger);
            if until <= now {
                self.tr.recv_hs = None;
                self.tr.recv_hs_until = None;
            }
        }
        if self.timer_armed || self.tr.ack_deadline.is_some() || !self.tr.flight.iter().all(|m| m.acked()) {
            return;
        }
        if self.role == Role::Client && self.tr.recv_hs.is_some() {
            self.tr.recv_hs = None;
        }
        if let Some(t) = self.tr.get_mut() {
            // A server's ticket (issued after the handshake) took a fresh generator.
            t.rng = None;
        }
        self.drop_handshake_send_keys();
        if !self.tr.flight.is_empty() || !self.tr.sent_records.is_empty() {
            // Acknowledged in full: nothing left to resend.
            self.tr.flight = Vec::new();
            self.tr.sent_records = Vec::new();
        }
        if self.tr.is_empty() {
            self.tr.release();
        }
        self.reasm.shrink_to_fit();
    }

    pub(crate) fn fail(&mut self, e: Error) {
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
        // No flight, ACK or key deadline is left to serve.
        self.tr.release();
        self.out.closed(reason);
    }

    /// Returns whether the retransmission timer fired and the flight went out again (a
    /// client's 0-RTT records go along with its ClientHello, `early.rs`).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.state == State::Closed {
            return false;
        }
        if self.tr.ack_deadline.is_some_and(|d| d <= now) {
            self.send_ack();
        }
        let fired = self.handle_retransmit_timeout(now);
        self.release_idle(now);
        fired
    }

    fn handle_retransmit_timeout(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.timer.deadline().filter(|_| self.timer_armed) else { return false };
        if now < deadline {
            return false;
        }
        if self.timer.on_timeout(now).is_err() {
            self.timer_armed = false;
            if self.state == State::Handshaking {
                self.fail(Error::HandshakeTimeout);
            }
            return false;
        }
        self.retransmit(Resend::Timer);
        true
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let retransmit = if self.timer_armed { self.timer.deadline() } else { None };
        [retransmit, self.tr.ack_deadline, self.tr.recv_hs_until].into_iter().flatten().min()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.poll_transmit()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    pub(crate) fn max_payload(&self) -> usize {
        let style = HeaderStyle::choose(0, None, true);
        let space = self.common().mtu.saturating_sub(self.out_cid_len());
        self.send_app.as_ref().map_or(0, |s| s.protection().max_plaintext_len(space, style)).min(16384)
    }

    /// Application data once established; a server's 0.5-RTT data goes through its
    /// handshake state (`server.rs`), which checks the size here too.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        if self.state != State::Established {
            return Err(UsageError::NotConnected);
        }
        self.check_payload(data)?;
        self.send_app_record(data)
    }

    pub(crate) fn check_payload(&self, data: &[u8]) -> Result<(), UsageError> {
        let max = self.max_payload();
        if data.len() > max {
            return Err(UsageError::MessageTooLarge { len: data.len(), max });
        }
        Ok(())
    }

    pub(crate) fn send_app_record(&mut self, data: &[u8]) -> Result<(), UsageError> {
        let mut out = Vec::with_capacity(data.len() + 32);
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        self.write_record(epoch, ContentType::ApplicationData, data, &mut out, HeaderStyle::choose(0, None, true))
            .ok_or(UsageError::LimitReached("application key usage limit reached"))?;
        self.push_datagram(out);
        if std::mem::take(&mut self.auto_key_update) {
            self.initiate_key_update(self.last_activity, KeyUpdateRequest::UpdateNotRequested);
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.send_alert(AlertLevel::Warning, AlertDescription::CloseNotify);
        self.closed(CloseReason::Local);
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }
    pub(crate) fn role(&self) -> Role {
        self.role
    }
    pub(crate) fn is_established(&self) -> bool {
        self.state == State::Established
    }
    pub(crate) fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.out.close_reason.as_deref()
    }
    pub(crate) fn suite(&self) -> Option<CipherSuite> {
        self.suite
    }
    pub(crate) fn peer_identity(&self) -> &PeerIdentity {
        &self.identity
    }
    pub(crate) fn client_random(&self) -> &[u8; 32] {
        &self.client_random
    }
    pub(crate) fn is_same_client_hello(&self, body: &[u8]) -> bool {
        self.role == Role::Server && hash(&*self.common().provider, body) == self.hello_digest
    }
    pub(crate) fn stats(&self) -> Stats {
        self.out.stats
    }
    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }
}

impl Core {
    /// Post-handshake messages (RFC 9147 §5.8.4 / RFC 8446 §4.6), each acknowledged: KeyUpdate
    /// is acted on; a client keeps a NewSessionTicket as the session to resume with.
    pub(crate) fn handle_post_handshake(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
        self.ack_now = true;
        match msg.msg_type {
            HandshakeType::KeyUpdate => {
                let ku = KeyUpdate::read_exact(&msg.body)?;
                if matches!(ku.request_update, KeyUpdateRequest::Unknown(_)) {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyUpdateRequest));
                }
                self.switch_recv_keys()?;
                if ku.request_update == KeyUpdateRequest::UpdateRequested && !self.key_update_pending {
                    // RFC 8446 §4.6.3: answer with our own KeyUpdate, not requesting another.
                    self.initiate_key_update(now, KeyUpdateRequest::UpdateNotRequested);
                }
                Ok(())
            }
            HandshakeType::NewSessionTicket => {
                let nst = NewSessionTicket13::read_exact(&msg.body)?;
                let max_early_data = nst.max_early_data_size().unwrap_or(0);
                if let (Some(t), Some(suite), Role::Client) = (self.tickets.as_mut(), self.suite, self.role) {
                    let psk = tls13::resumption_psk(&*self.config.common().provider, &t.res_master, &nst.ticket_nonce);
                    // RFC 8446 §4.6.1: never longer than seven days.
                    let lifetime = std::time::Duration::from_secs(u64::from(nst.ticket_lifetime))
                        .min(crate::resumption::MAX_TICKET_LIFETIME);
                    if !lifetime.is_zero() {
                        t.session = Some(Session {
                            id: nst.ticket,
                            suite,
                            extended_master_secret: true,
                            peer_identity: self.identity.clone(),
                            established_at: now,
                            lifetime,
                            master_secret: Zeroizing::new([0; 48]),
                            ticket12: None,
                            ticket13: Some(Ticket13 {
                                psk: Zeroizing::new(*psk.as_bytes()),
                                age_add: nst.ticket_age_add,
                                max_early_data,
                                client_ip: None,
                            }),
                        });
                    }
                }
                Ok(())
            }
            HandshakeType::NewConnectionId => self.handle_new_connection_id(&msg.body),
            HandshakeType::RequestConnectionId => self.handle_request_connection_id(now, &msg.body),
            _ => Err(Error::PeerMisbehaved(PeerMisbehaved::HandshakeMessageAfterHandshake)),
        }
    }

    /// Sends a KeyUpdate in the current epoch; our sending keys change once it is acknowledged
    /// (RFC 9147 §8), our receiving keys when the peer's KeyUpdate arrives.
    pub(crate) fn initiate_key_update(&mut self, now: Instant, request: KeyUpdateRequest) {
        if self.state != State::Established || self.key_update_pending || self.send_app.is_none() {
            return;
        }
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.tr.flight.clear();
        self.tr.flight.push(FlightMsg::new(
            epoch,
            HandshakeType::KeyUpdate,
            message_seq,
            KeyUpdate { request_update: request }.to_vec(),
        ));
        self.key_update_pending = true;
        self.send_new_flight(now, true);
    }

    fn next_epoch_keys(&self, secret: &Secret) -> Result<(Secret, RecordProtection13), Error> {
        // The application epochs' AEAD is the suite's.
        let aead = self.send_app.as_ref().ok_or(Error::Crypto)?.protection().algorithm();
        let next = tls13::next_application_traffic_secret(&*self.common().provider, secret);
        let prot = self.protection(aead, &next)?;
        Ok((next, prot))
    }

    fn switch_send_keys(&mut self) {
        self.key_update_pending = false;
        let (Some(secrets), Some(send)) = (&self.app_secrets, &self.send_app) else { return };
        let epoch = send.epoch() + 1;
        if let Ok((next, prot)) = self.next_epoch_keys(&secrets.0) {
            self.send_app = Some(SendEpoch13::new(epoch, prot));
            if let Some(s) = self.app_secrets.as_mut() {
                s.0 = next;
            }
        }
        self.tr.flight.clear();
        self.tr.sent_records.clear();
    }

    fn switch_recv_keys(&mut self) -> Result<(), Error> {
        let (Some(secrets), Some(recv)) = (&self.app_secrets, &self.recv_app) else { return Err(Error::Crypto) };
        let epoch = recv.epoch() + 1;
        let (next, prot) = self.next_epoch_keys(&secrets.1)?;
        self.recv_prev = self.recv_app.take().map(Box::new);
        self.recv_app = Some(ReceiveEpoch13::new(epoch, prot));
        if let Some(s) = self.app_secrets.as_mut() {
            s.1 = next;
        }
        Ok(())
    }
}

impl Core {
    /// The epoch our application data is sent in (3, then one more per KeyUpdate).
    pub(crate) fn send_epoch(&self) -> u64 {
        self.send_app.as_ref().map_or(self.current_epoch(), |a| a.epoch())
    }

    /// Queues a post-handshake message alone as the current flight, in the current
    /// application epoch, retransmitted until acknowledged (RFC 9147 §5.8.4).
    pub(crate) fn send_post_handshake(&mut self, now: Instant, msg_type: HandshakeType, body: Vec<u8>) {
        let epoch = self.send_app.as_ref().map_or(EPOCH_APPLICATION, |a| a.epoch());
        let message_seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.tr.flight.clear();
        self.tr.flight.push(FlightMsg::new(epoch, msg_type, message_seq, body));
        self.send_new_flight(now, true);
    }

    pub(crate) fn session(&self) -> Option<&Session> {
        self.tickets.as_ref().and_then(|t| t.session.as_ref())
    }

    pub(crate) fn is_resumed(&self) -> bool {
        self.resumed
    }
}

impl Core {
    /// Length of the CID our records carry (0: none).
    pub(crate) fn out_cid_len(&self) -> usize {
        self.cid.as_deref().map_or(0, |c| c.out().len())
    }

    /// NewConnectionId from the peer (RFC 9147 §9).
    fn handle_new_connection_id(&mut self, body: &[u8]) -> Result<(), Error> {
        let nci = NewConnectionId::read_exact(body)?;
        match self.cid.as_deref_mut() {
            Some(c) => c.take_new(nci),
            None => Err(Error::PeerMisbehaved(PeerMisbehaved::ConnectionIdMessageNotAllowed)),
        }
    }

    /// RequestConnectionId from the peer (RFC 9147 §9): answered now, or once our flight in
    /// progress is acknowledged.
    fn handle_request_connection_id(&mut self, now: Instant, body: &[u8]) -> Result<(), Error> {
        let req = RequestConnectionId::read_exact(body)?;
        match self.cid.as_deref_mut() {
            Some(c) => c.take_request(req.num_cids)?,
            None => return Err(Error::PeerMisbehaved(PeerMisbehaved::ConnectionIdMessageNotAllowed)),
        }
        self.serve_cid_request(now);
        Ok(())
    }

    /// Answers a pending RequestConnectionId with a NewConnectionId (usage cid_spare, §9) once
    /// no flight of ours is outstanding.
    fn serve_cid_request(&mut self, now: Instant) {
        if !self.flight_idle() {
            return;
        }
        // Fresh OS randomness: a CID is an identifier others must not predict, and an idle
        // association keeps no generator.
        let mut rng = SeededRng::from_os();
        let cids = self.cid.as_deref_mut().and_then(|c| c.answer_request(&mut rng));
        if let Some(cids) = cids {
            let body = NewConnectionId { cids, usage: ConnectionIdUsage::CidSpare }.to_vec();
            self.send_post_handshake(now, HandshakeType::NewConnectionId, body);
        }
    }

    /// Announces up to `count` new CIDs of ours (see [`crate::Connection::issue_connection_ids`]).
    pub(crate) fn issue_connection_ids(
        &mut self,
        now: Instant,
        count: usize,
        usage: ConnectionIdUsage,
    ) -> Result<usize, UsageError> {
        if !self.flight_idle() {
            return Err(self.busy());
        }
        let Some(c) = self.cid.as_deref_mut() else {
            return Err(UsageError::LimitReached("no Connection IDs were negotiated"));
        };
        let mut rng = SeededRng::from_os();
        let cids = c.issue_more(count, &mut rng)?;
        let n = cids.len();
        self.send_post_handshake(now, HandshakeType::NewConnectionId, NewConnectionId { cids, usage }.to_vec());
        Ok(n)
    }

    /// Asks the peer for `num_cids` more CIDs (see [`crate::Connection::request_connection_ids`]).
    pub(crate) fn request_connection_ids(&mut self, now: Instant, num_cids: u8) -> Result<(), UsageError> {
        if !self.flight_idle() {
            return Err(self.busy());
        }
        let Some(c) = self.cid.as_deref_mut() else {
            return Err(UsageError::LimitReached("no Connection IDs were negotiated"));
        };
        c.start_request()?;
        self.send_post_handshake(now, HandshakeType::RequestConnectionId, RequestConnectionId { num_cids }.to_vec());
        Ok(())
    }

    fn busy(&self) -> UsageError {
        if self.state == State::Established {
            UsageError::LimitReached("a flight (NewConnectionId, KeyUpdate, ...) is still unacknowledged")
        } else {
            UsageError::NotConnected
        }
    }
}

/// What a DTLS 1.2 state machine needs to take over the first ClientHello of a dual-version
/// client (`crate::auto`): the bytes sent, their numbering, and the retransmission state.
pub(crate) struct SentClientHello {
    pub(crate) body: Vec<u8>,
    pub(crate) message_seq: u16,
    pub(crate) next_record_seq: u64,
    pub(crate) timer: RetransmitTimer,
    pub(crate) timer_armed: bool,
    pub(crate) rng: Option<Box<SeededRng>>,
    pub(crate) out: Outputs,
    pub(crate) last_activity: Instant,
}

impl Core {
    /// Hands over the ClientHello of the current flight; the caller has checked that this is
    /// a client still waiting for the first ServerHello (`conn.rs`).
    pub(crate) fn take_first_client_hello(&mut self) -> Option<SentClientHello> {
        if self.role != Role::Client || self.state != State::Handshaking {
            return None;
        }
        let ch = self.tr.flight.iter().find(|m| m.msg_type == HandshakeType::ClientHello)?;
        Some(SentClientHello {
            body: ch.body.clone(),
            message_seq: ch.message_seq,
            next_record_seq: self.tr.plain_seq,
            // This state machine is dropped after the hand-over; its timer goes with the hello.
            timer: std::mem::replace(&mut self.timer, RetransmitTimer::new(RetransmitConfig::default())),
            timer_armed: self.timer_armed,
            rng: self.tr.rng.take(),
            out: std::mem::take(&mut self.out),
            last_activity: self.last_activity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rustcrypto::RustCrypto;
    use sha2::{Digest, Sha256};

    /// The running transcript hashes exactly the bytes [`transcript_bytes_13`] lays out, at
    /// every point, and its binder hash covers the transcript plus the extra bytes without
    /// absorbing them. (Both sides of a handshake use `Transcript`, so an in-memory handshake
    /// alone would not notice a shared framing mistake.)
    #[test]
    fn running_transcript_matches_flat_bytes() {
        let p = RustCrypto;
        let mut t = Transcript::default();
        let mut flat = Vec::new();
        assert!(t.is_empty());
        assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)));
        let prefix = [0xfeu8, 0, 0, 32].iter().copied().chain([7u8; 32]).collect::<Vec<u8>>();
        t.add_raw(&p, &prefix);
        flat.extend_from_slice(&prefix);
        let bodies: [(HandshakeType, Vec<u8>); 3] = [
            (HandshakeType::ClientHello, vec![1; 300]),
            (HandshakeType::ServerHello, Vec::new()),
            (HandshakeType::Finished, (0..=255u8).cycle().take(70_000).collect()),
        ];
        for (typ, body) in &bodies {
            t.add(&p, *typ, body);
            transcript_bytes_13(*typ, body, &mut flat);
            assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)));
        }
        let more = b"truncated hello";
        let mut with_more = flat.clone();
        with_more.extend_from_slice(more);
        assert_eq!(t.hash_with(&p, more), <[u8; 32]>::from(Sha256::digest(&with_more)));
        assert_eq!(t.hash(&p), <[u8; 32]>::from(Sha256::digest(&flat)), "hash_with must not absorb");
        assert!(!t.is_empty());
        let empty = Transcript::default();
        assert_eq!(empty.hash_with(&p, more), <[u8; 32]>::from(Sha256::digest(more)));
    }

    /// What an idle established association keeps inline is the total guarded in
    /// `connection/mod.rs`; these are the parts it must not keep inline (`--nocapture` prints
    /// a breakdown of the rest).
    #[test]
    fn idle_association_parts_stay_out_of_line() {
        use std::mem::size_of;
        assert_eq!(size_of::<LazyTransient>(), 8);
        assert_eq!(size_of::<Option<Box<ReceiveEpoch13>>>(), 8);
        assert_eq!(size_of::<Option<Box<SendEpoch13>>>(), 8);
        assert_eq!(size_of::<Option<Box<ClientTickets>>>(), 8);
        assert!(size_of::<Transient>() >= 300, "the transient part moved inline again?");
        assert!(
            size_of::<RecordProtection13>() <= 56,
            "RecordProtection13 grew to {}",
            size_of::<RecordProtection13>()
        );
        let rows: [(&str, usize); 10] = [
            ("Core", size_of::<Core>()),
            ("Option<SendEpoch13>", size_of::<Option<SendEpoch13>>()),
            ("Option<ReceiveEpoch13>", size_of::<Option<ReceiveEpoch13>>()),
            ("Transient (boxed)", size_of::<Transient>()),
            ("Reassembler", size_of::<Reassembler>()),
            ("RetransmitTimer", size_of::<RetransmitTimer>()),
            ("Outputs", size_of::<Outputs>()),
            ("PeerIdentity", size_of::<PeerIdentity>()),
            ("SocketAddr", size_of::<SocketAddr>()),
            ("Instant", size_of::<Instant>()),
        ];
        for (name, size) in rows {
            println!("{name:<24} {size:>5}");
        }
    }
}
