//! One association with one peer, in DTLS 1.2 or DTLS 1.3: the public [`Connection`] facade
//! over the two engines ([`crate::dtls12`], [`crate::dtls13`]), and the dual-version client's
//! hand-over from one to the other ([`auto`]).
//!
//! # Call order (sans-IO contract)
//!
//! 1. Feed every datagram from the peer to [`Connection::handle_datagram`].
//! 2. When [`Connection::poll_timeout`] passes, call [`Connection::handle_timeout`].
//! 3. After either, drain [`Connection::poll_transmit`] (datagrams to send to the peer) and
//!    [`Connection::poll_event`] (handshake completion, application data, closure).
//!
//! Usually a [`crate::Endpoint`] does this for many peers at once.

pub(crate) mod auto;

use crate::codec::{CipherSuite, ConnectionIdUsage, ProtocolVersion};
use crate::config::{ClientConfig, ServerConfig};
use crate::crypto::SeededRng;
use crate::dtls12::Conn12;
use crate::error::{ConfigError, Error, PeerMisbehaved, UsageError};
use crate::msgs::ClientHello;
use crate::resumption::Session;
use crate::types::{CloseReason, Event, HandshakeFailure, PeerIdentity, Role, Stats};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The Connection IDs of an association (RFC 9146 §3; RFC 9147 §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionIds {
    /// The CID the peer puts in the records it sends us (the one we issued in the handshake);
    /// empty: none. DTLS 1.3 may issue more ([`Connection::issue_connection_ids`]).
    pub incoming: Vec<u8>,
    /// The CID we put in the records we send (the one the peer issued, in DTLS 1.3 the one
    /// in use now); empty: none.
    pub outgoing: Vec<u8>,
}

/// The quota slot of an association no server bookkeeping tracks (see
/// `Connection::quota_slot`).
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// One association with one peer, DTLS 1.2 or DTLS 1.3. See the module docs for the call
/// order.
pub struct Connection {
    inner: Inner,
    /// A [`DtlsVersion::Auto`](crate::DtlsVersion::Auto) client before the server's answer
    /// shows the version: `inner` is the 1.3 client, this what a fall back to 1.2 needs.
    auto: Option<Box<crate::connection::auto::Fallback>>,
    /// A dual-version client that fell back to 1.2 on a HelloVerifyRequest and still waits
    /// for the ServerHello: a DTLS 1.3 one exposes the HelloVerifyRequest as injected.
    guard_hvr: bool,
    /// [`Event::Connected`] was handed out: a later close is no handshake failure.
    connected: bool,
    /// The [`Event::Closed`] that follows the [`Event::HandshakeFailed`] just handed out.
    /// Boxed: every association carries the field, a failed handshake alone fills it.
    held_closed: Option<Box<Event>>,
    /// A server endpoint's bookkeeping slot for this association (see `endpoint::limits`),
    /// kept here so the endpoint needs no second map from address to slot.
    pub(crate) quota_slot: u32,
    /// The low 16 bits of [`Stats::retransmissions`] already added to the endpoint's totals.
    /// 16 bits fit beside `quota_slot` and the flags, so every table entry stays 8 bytes
    /// smaller; the endpoint takes the count after every datagram and timeout, never 2^16
    /// retransmissions apart.
    retransmissions_reported: u16,
}

enum Inner {
    V12(Box<Conn12>),
    V13(Box<crate::dtls13::conn::Conn13>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::V12(c) => c.fmt(f),
            Inner::V13(c) => c.fmt(f),
        }
    }
}

macro_rules! both {
    ($self:ident, $c:ident => $e:expr) => {
        match &$self.inner {
            Inner::V12($c) => $e,
            Inner::V13($c) => $e,
        }
    };
    (mut $self:ident, $c:ident => $e:expr) => {
        match &mut $self.inner {
            Inner::V12($c) => $e,
            Inner::V13($c) => $e,
        }
    };
}

impl Connection {
    /// Starts a client handshake towards `peer` with the version in `config.version`.
    /// `server_name` is checked against the server's certificate (a DNS name or an IP literal)
    /// and sent as SNI when it is a DNS name (RFC 6066 §3 forbids IP literals there).
    /// `resume` offers a session from an earlier connection ([`Connection::session`]) for an
    /// abbreviated handshake: a DTLS 1.2 session ID or a DTLS 1.3 ticket.
    ///
    /// With [`DtlsVersion::Auto`](crate::DtlsVersion::Auto) the ClientHello offers both
    /// versions and the server's answer decides (see the `DtlsVersion::Auto` docs); until it
    /// arrives, [`Connection::version`] reports DTLS 1.3.
    pub fn client(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let inner = match config.version {
            // Auto without a DTLS 1.3 suite has only DTLS 1.2 to offer.
            crate::config::DtlsVersion::Auto if config.common.suites13.is_empty() => {
                Inner::V12(Box::new(Conn12::client(config, peer, server_name, resume, rng, now)?))
            }
            crate::config::DtlsVersion::Dtls12 => {
                Inner::V12(Box::new(Conn12::client(config, peer, server_name, resume, rng, now)?))
            }
            crate::config::DtlsVersion::Dtls13 => {
                Inner::V13(Box::new(crate::dtls13::conn::Conn13::client(config, peer, server_name, resume, rng, now)?))
            }
            crate::config::DtlsVersion::Auto => {
                let fallback = crate::connection::auto::Fallback::new(config.clone(), server_name, resume.as_ref());
                let c = crate::dtls13::conn::Conn13::client(config, peer, server_name, resume, rng, now)?;
                return Ok(Self {
                    inner: Inner::V13(Box::new(c)),
                    auto: Some(Box::new(fallback)),
                    guard_hvr: false,
                    connected: false,
                    held_closed: None,
                    quota_slot: NO_SLOT,
                    retransmissions_reported: 0,
                });
            }
        };
        Ok(Self {
            inner,
            auto: None,
            guard_hvr: false,
            connected: false,
            held_closed: None,
            quota_slot: NO_SLOT,
            retransmissions_reported: 0,
        })
    }

    /// Hands a dual-version client over to the DTLS 1.2 state machine (`crate::auto`), which
    /// then processes the datagrams held so far and `datagram`.
    fn fall_back_to_12(&mut self, now: Instant, datagram: &[u8]) {
        let (Some(mut fallback), Inner::V13(c13)) = (self.auto.take(), &mut self.inner) else { return };
        let Some(sent) = c13.take_first_client_hello() else {
            c13.handle_datagram(now, datagram);
            return;
        };
        let mut c12 = Conn12::client_adopt(
            fallback.config.clone(),
            c13.peer(),
            &fallback.server_name,
            sent,
            fallback.session12.take(),
            now,
        );
        for d in fallback.take_held() {
            c12.handle_datagram(now, &d);
        }
        c12.handle_datagram(now, datagram);
        self.guard_hvr = c12.expects_server_hello();
        // The 1.2 connection counts from zero again.
        self.retransmissions_reported = 0;
        self.inner = Inner::V12(Box::new(c12));
    }

    /// Like [`Connection::client`] for a DTLS 1.3 resumption that also sends `early_data` as
    /// 0-RTT data (RFC 8446 §4.2.10) in epoch 1, in the ClientHello's datagram when it fits.
    /// It is offered only when `resume` is a 1.3 ticket whose early_data extension allows
    /// `early_data.len()` bytes; otherwise [`Event::EarlyDataRejected`] comes at once and the
    /// handshake goes on without it. The outcome is always one of
    /// [`Event::EarlyDataAccepted`] / [`Event::EarlyDataRejected`], before
    /// [`Event::Connected`].
    #[allow(clippy::too_many_arguments)]
    pub fn client_with_early_data(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        early_data: &[u8],
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        if config.version != crate::config::DtlsVersion::Dtls13 {
            return Err(ConfigError::new("0-RTT early data needs DTLS 1.3: set ClientConfig::version to Dtls13"));
        }
        let c =
            crate::dtls13::conn::Conn13::client_early(config, peer, server_name, resume, Some(early_data), rng, now)?;
        Ok(Self {
            inner: Inner::V13(Box::new(c)),
            auto: None,
            guard_hvr: false,
            connected: false,
            held_closed: None,
            quota_slot: NO_SLOT,
            retransmissions_reported: 0,
        })
    }

    /// Client, DTLS 1.3: sends one more record of 0-RTT data while the ServerHello is awaited,
    /// after [`Connection::client_with_early_data`] offered early data. Fails with
    /// [`UsageError::NotConnected`] once the server's answer arrived or when early data was not
    /// offered, and with [`UsageError::LimitReached`] past the ticket's max_early_data_size.
    pub fn send_early_data(&mut self, data: &[u8]) -> Result<(), UsageError> {
        match &mut self.inner {
            Inner::V12(_) => Err(UsageError::Dtls13Only("0-RTT early data")),
            Inner::V13(c) => c.send_early_data(data),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server12(
        config: Arc<ServerConfig>,
        peer: SocketAddr,
        ch: ClientHello,
        message_seq: u16,
        record_seq: u64,
        rng: SeededRng,
        now: Instant,
        cookie_rtt: Option<std::time::Duration>,
        fetched: &[crate::resumption::FetchedSession],
    ) -> Self {
        Self {
            inner: Inner::V12(Box::new(Conn12::server(
                config,
                peer,
                ch,
                message_seq,
                record_seq,
                rng,
                now,
                cookie_rtt,
                fetched,
            ))),
            auto: None,
            guard_hvr: false,
            connected: false,
            held_closed: None,
            quota_slot: NO_SLOT,
            retransmissions_reported: 0,
        }
    }

    pub(crate) fn from13(c: crate::dtls13::conn::Conn13) -> Self {
        Self {
            inner: Inner::V13(Box::new(c)),
            auto: None,
            guard_hvr: false,
            connected: false,
            held_closed: None,
            quota_slot: NO_SLOT,
            retransmissions_reported: 0,
        }
    }

    /// The Connection IDs negotiated for this association (RFC 9146 §3, RFC 9147 §9), `None`
    /// if the connection_id extension was not agreed.
    pub fn connection_ids(&self) -> Option<ConnectionIds> {
        match &self.inner {
            Inner::V12(c) => {
                c.cids().map(|c| ConnectionIds { incoming: c.read().to_vec(), outgoing: c.write().to_vec() })
            }
            Inner::V13(c) => c.cids().map(|c| ConnectionIds {
                incoming: c.issued.first().cloned().unwrap_or_default(),
                outgoing: c.out.clone(),
            }),
        }
    }

    /// DTLS 1.3: how many CIDs this association holds, `(issued by us, issued by the peer)`,
    /// the handshake's included and the peer's counted only when non-empty; both at most
    /// [`ConnectionIdConfig::max_cids`](crate::ConnectionIdConfig::max_cids). `(0, 0)` without
    /// CIDs or on DTLS 1.2 (one each way at most).
    pub fn connection_id_counts(&self) -> (usize, usize) {
        match &self.inner {
            Inner::V12(_) => (0, 0),
            Inner::V13(c) => c.cids().map_or((0, 0), |c| c.counts()),
        }
    }

    /// DTLS 1.3: announces up to `count` new CIDs of ours in a NewConnectionId (RFC 9147 §9),
    /// `immediate` asking the peer to switch to the first at once (usage cid_immediate), else
    /// as spares (cid_spare); returns how many (within
    /// [`ConnectionIdConfig::max_cids`](crate::ConnectionIdConfig::max_cids)). A server
    /// endpoint indexes them, so records with any of them find the association. Fails when
    /// no non-empty CID of ours was negotiated, the cap is reached, or a flight of ours
    /// (another NewConnectionId, a KeyUpdate) is still unacknowledged.
    pub fn issue_connection_ids(&mut self, now: Instant, count: usize, immediate: bool) -> Result<usize, UsageError> {
        let usage = if immediate { ConnectionIdUsage::CidImmediate } else { ConnectionIdUsage::CidSpare };
        match &mut self.inner {
            Inner::V12(_) => Err(UsageError::Dtls13Only("NewConnectionId")),
            Inner::V13(c) if c.is_established() => c.issue_connection_ids(now, count, usage),
            Inner::V13(_) => Err(UsageError::NotConnected),
        }
    }

    /// DTLS 1.3: asks the peer for `num_cids` more CIDs with a RequestConnectionId (RFC 9147
    /// §9); its NewConnectionId adds them as spares, used in order when we send on a new
    /// path. Fails when the peer issued no non-empty CID, a request is still unanswered, or a
    /// flight of ours is still unacknowledged.
    pub fn request_connection_ids(&mut self, now: Instant, num_cids: u8) -> Result<(), UsageError> {
        match &mut self.inner {
            Inner::V12(_) => Err(UsageError::Dtls13Only("RequestConnectionId")),
            Inner::V13(c) if c.is_established() => c.request_connection_ids(now, num_cids),
            Inner::V13(_) => Err(UsageError::NotConnected),
        }
    }

    /// Whether records carrying `cid` are addressed to this association: it issued `cid`
    /// (RFC 9146 §3, RFC 9147 §9) and `cid` is not empty.
    pub(crate) fn issues_cid(&self, cid: &[u8]) -> bool {
        if cid.is_empty() {
            return false;
        }
        match &self.inner {
            Inner::V12(c) => c.cids().is_some_and(|c| c.read() == cid),
            Inner::V13(c) => c.issues_cid(cid),
        }
    }

    /// The non-empty CIDs this side issued.
    pub(crate) fn issued_cids(&self) -> Vec<Vec<u8>> {
        match &self.inner {
            Inner::V12(c) => {
                c.cids().map(|c| c.read()).filter(|c| !c.is_empty()).map(|c| vec![c.to_vec()]).unwrap_or_default()
            }
            Inner::V13(c) => c.issued_cids(),
        }
    }

    /// CIDs issued since the last call (DTLS 1.3: the handshake's, then those of each
    /// NewConnectionId), for the endpoint's index.
    pub(crate) fn take_unindexed_cids(&mut self) -> Vec<Vec<u8>> {
        match &mut self.inner {
            Inner::V12(_) => Vec::new(),
            Inner::V13(c) => c.take_unindexed_cids(),
        }
    }

    /// Whether the last datagram handed in held a record that authenticated and was newer
    /// than any before it: the one kind of datagram that may move the association to the
    /// address it came from (RFC 9146 §6; RFC 9147 §9).
    pub(crate) fn last_datagram_advanced(&self) -> bool {
        match &self.inner {
            Inner::V12(c) => c.last_datagram_advanced(),
            Inner::V13(c) => c.last_datagram_advanced(),
        }
    }

    /// Whether return routability checks were agreed (RFC 9853 §3): both sides sent the
    /// rrc extension beside an agreed CID. DTLS 1.3 associations have none yet.
    pub fn rrc_negotiated(&self) -> bool {
        match &self.inner {
            Inner::V12(c) => c.rrc_negotiated(),
            Inner::V13(_) => false,
        }
    }

    /// One `return_routability_check` record of the current epoch as a datagram, for the
    /// endpoint to send to the address it is checking; `None` without RRC.
    pub(crate) fn seal_rrc(&mut self, msg: &crate::rrc::ReturnRoutabilityCheck) -> Option<Vec<u8>> {
        match &mut self.inner {
            Inner::V12(c) => c.seal_rrc(msg),
            Inner::V13(_) => None,
        }
    }

    /// The oldest `path_response` / `path_drop` received and not yet taken.
    pub(crate) fn take_rrc(&mut self) -> Option<crate::rrc::ReturnRoutabilityCheck> {
        match &mut self.inner {
            Inner::V12(c) => c.take_rrc(),
            Inner::V13(_) => None,
        }
    }

    /// Sends to `peer` from now on.
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        match &mut self.inner {
            Inner::V12(c) => c.set_peer(peer),
            Inner::V13(c) => c.set_peer(peer),
        }
    }

    /// The protocol version of this association.
    pub fn version(&self) -> ProtocolVersion {
        match &self.inner {
            Inner::V12(_) => ProtocolVersion::DTLS1_2,
            Inner::V13(_) => ProtocolVersion::DTLS1_3,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        both!(self, c => c.peer())
    }
    /// Client or server.
    pub fn role(&self) -> Role {
        both!(self, c => c.role())
    }
    /// Whether the handshake completed and the connection is open.
    pub fn is_established(&self) -> bool {
        both!(self, c => c.is_established())
    }
    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        both!(self, c => c.is_handshaking())
    }
    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        both!(self, c => c.is_closed())
    }
    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        both!(self, c => c.close_reason())
    }
    /// The negotiated cipher suite.
    pub fn suite(&self) -> Option<CipherSuite> {
        both!(self, c => c.suite())
    }
    /// The authenticated peer identity.
    pub fn peer_identity(&self) -> &PeerIdentity {
        both!(self, c => c.peer_identity())
    }
    /// Whether a DTLS 1.2 handshake ran without extended_master_secret (RFC 7627), which only
    /// a configuration with `require_extended_master_secret` off allows: its keys are open to
    /// the triple-handshake attack, so export nothing from them (RFC 7627 §5.4).
    pub fn without_extended_master_secret(&self) -> bool {
        match &self.inner {
            Inner::V12(c) => c.without_extended_master_secret(),
            // DTLS 1.3's key schedule binds the whole transcript (RFC 8446 §7.1).
            Inner::V13(_) => false,
        }
    }
    /// Whether the handshake was abbreviated (session resumption).
    pub fn is_resumed(&self) -> bool {
        both!(self, c => c.is_resumed())
    }
    /// The session to offer for resumption on a later connection (client side): a DTLS 1.2
    /// session ID or a DTLS 1.3 ticket, once the server has issued one.
    pub fn session(&self) -> Option<&Session> {
        both!(self, c => c.session())
    }
    /// Whether `client_hello_body` is the ClientHello that created this (server-side)
    /// association: a retransmission or network duplicate of it.
    pub fn is_same_client_hello(&self, client_hello_body: &[u8]) -> bool {
        both!(self, c => c.is_same_client_hello(client_hello_body))
    }
    /// The ClientHello random of this handshake.
    pub fn client_random(&self) -> &[u8; 32] {
        both!(self, c => c.client_random())
    }
    /// Counters.
    pub fn stats(&self) -> Stats {
        both!(self, c => c.stats())
    }
    /// Retransmissions since the last call: the endpoint keeps totals without reading every
    /// association's counters.
    pub(crate) fn take_retransmissions(&mut self) -> u64 {
        // Modulo 2^16 on purpose (see the field).
        let n = self.stats().retransmissions as u16;
        let new = n.wrapping_sub(self.retransmissions_reported);
        self.retransmissions_reported = n;
        u64::from(new)
    }
    /// When a datagram was last received from the peer (for idle expiry).
    pub fn last_activity(&self) -> Instant {
        both!(self, c => c.last_activity())
    }
    /// Largest application-data payload that fits one datagram at the configured MTU.
    pub fn max_payload(&self) -> usize {
        both!(self, c => c.max_payload())
    }
    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        both!(mut self, c => c.poll_transmit())
    }
    /// The next event.
    ///
    /// A handshake that ends in an error before [`Event::Connected`] yields [`Event::HandshakeFailed`]
    /// (what is known of the peer, for logs and metrics) just before its [`Event::Closed`].
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(ev) = self.held_closed.take() {
            return Some(*ev);
        }
        let ev = both!(mut self, c => c.poll_event())?;
        match &ev {
            Event::Connected { .. } => self.connected = true,
            Event::Closed(reason @ CloseReason::Error(_)) if !self.connected => {
                self.connected = true;
                let failure = HandshakeFailure {
                    version: self.version(),
                    role: self.role(),
                    identity: match (self.peer_identity(), both!(self, c => c.claimed_identity())) {
                        (PeerIdentity::Anonymous, Some(claimed)) => claimed.clone(),
                        (proven, _) => proven.clone(),
                    },
                    reason: reason.clone(),
                    records_auth_failed: self.stats().records_auth_failed,
                };
                self.held_closed = Some(Box::new(ev));
                return Some(Event::HandshakeFailed(Box::new(failure)));
            }
            _ => {}
        }
        Some(ev)
    }
    /// When [`Connection::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        both!(self, c => c.poll_timeout())
    }
    /// Drives the retransmission timer (RFC 6347 §4.2.4.1, RFC 9147 §5.8).
    pub fn handle_timeout(&mut self, now: Instant) {
        both!(mut self, c => c.handle_timeout(now))
    }
    /// Sends one application-data record.
    ///
    /// A DTLS 1.3 server may call it from its Finished on, before the client's Finished
    /// ("0.5-RTT data", RFC 8446 §2.3 and §4.4.4, e.g. the answer to a 0-RTT request): the
    /// record is sealed in epoch 3 with `server_application_traffic_secret_0` and sent in its
    /// own datagram, outside the handshake flight (never retransmitted with it). The client is
    /// not authenticated yet at that point beyond the PSK or ticket it proved with its binder:
    /// when the server asked for a client certificate, and while the client's address is not
    /// proven (no cookie exchange) and the record would take what was sent past three times
    /// what was received (RFC 9147 §5.1), the data is held and sent when the client's Finished
    /// verifies; at most `max_early_records` records are held, beyond that
    /// [`UsageError::LimitReached`]. Receiving epoch-3 data still waits for the client's Finished.
    pub fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        both!(mut self, c => c.send(data))
    }
    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        both!(mut self, c => c.close())
    }
    /// Processes one datagram from the peer.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if let Some(fallback) = self.auto.as_mut() {
            match fallback.classify(datagram) {
                crate::connection::auto::Verdict::Undecided => {}
                crate::connection::auto::Verdict::Dtls13 => self.auto = None,
                crate::connection::auto::Verdict::Dtls12 => return self.fall_back_to_12(now, datagram),
            }
        }
        if self.guard_hvr
            && let Inner::V12(c) = &mut self.inner
        {
            if !c.expects_server_hello() {
                self.guard_hvr = false;
            } else if crate::connection::auto::carries_dtls13_server_hello(datagram) {
                self.guard_hvr = false;
                c.fail(Error::PeerMisbehaved(PeerMisbehaved::ServerHello13AfterHelloVerifyRequest));
                return;
            }
        }
        both!(mut self, c => c.handle_datagram(now, datagram))
    }

    /// Updates our sending keys and asks the peer to update its own (DTLS 1.3 KeyUpdate,
    /// RFC 9147 §8, RFC 8446 §4.6.3). The switch happens when the peer acknowledges it. Keys
    /// are also updated automatically before the AEAD usage limits (RFC 9147 §4.5.3).
    pub fn key_update(&mut self, now: Instant) -> Result<(), UsageError> {
        match &mut self.inner {
            Inner::V12(_) => Err(UsageError::Dtls13Only("KeyUpdate")),
            Inner::V13(c) if c.is_established() => {
                c.initiate_key_update(now, crate::codec::KeyUpdateRequest::UpdateRequested);
                Ok(())
            }
            Inner::V13(_) => Err(UsageError::NotConnected),
        }
    }

    /// The epoch application data is sent in: 1 in DTLS 1.2; 3 and up in DTLS 1.3 (one more
    /// per KeyUpdate).
    pub fn send_epoch(&self) -> u64 {
        match &self.inner {
            Inner::V12(c) => u64::from(c.write_epoch()),
            Inner::V13(c) => c.send_epoch(),
        }
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod size_tests {
    use super::*;

    /// Every server association carries a `Connection` (boxed, in the endpoint's table):
    /// keep what only clients or closed associations need out of line (`session`,
    /// `close_reason`), so an idle server association stays small.
    #[test]
    fn connection_stays_small() {
        // The table entry: 40 bytes with the quota slot and the retransmission mark packed in.
        assert!(size_of::<Connection>() <= 40, "Connection grew to {} bytes", size_of::<Connection>());
        assert_eq!(size_of::<Option<Box<Session>>>(), 8);
        assert_eq!(size_of::<Option<Box<CloseReason>>>(), 8);
        // 776 since the three DTLS 1.3 counters joined the shared `Stats` (0-RTT skipped,
        // selective and whole-flight records); the heap per idle association stays < 1 KiB.
        // 784 with the boxed identity a client claimed before proving it (for the failure
        // report, `HandshakeFailure::identity`).
        assert!(size_of::<Conn12>() <= 784, "Conn12 grew to {} bytes", size_of::<Conn12>());
        // 1600 before the DTLS 1.3 core kept its handshake-only parts out of line; with the
        // endpoint's table entry, the boxes and the keys an idle 1.3 association is < 1 KiB.
        // 720 since the Connection ID state (RFC 9147 §9): one pointer, its box absent without
        // CIDs.
        let c13 = size_of::<crate::dtls13::conn::Conn13>();
        // 720 also with the boxed claimed identity, as above.
        assert!(c13 <= 720, "Conn13 grew to {c13} bytes");
    }
}
