//! One DTLS 1.3 association as the rest of the crate sees it: the role-independent
//! [`Core`] and, while the handshake runs, the role's state ([`client::State`] or
//! [`server::State`]). An established association holds no handshake state.
//!
//! The public face is [`crate::Connection`], which dispatches to this type for 1.3.

use crate::codec::{CipherSuite, ConnectionIdUsage, KeyUpdateRequest};
use crate::config::{ClientConfig, ServerConfig};
use crate::crypto::SeededRng;
use crate::dtls13::cid::Cids13;
use crate::dtls13::engine::{Core, SentClientHello};
use crate::dtls13::msgs::ClientHello13;
use crate::dtls13::{client, early, server};
use crate::error::{ConfigError, Error, UsageError};
use crate::handshake::reassembly::HandshakeMessage;
use crate::resumption::{FetchedSession, Session};
use crate::types::{CloseReason, Event, PeerIdentity, Role, Stats};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The handshake state of either role.
enum Hs {
    Client(client::State),
    Server(server::State),
}

/// A DTLS 1.3 association. See [`crate::Connection`] for the call order.
pub(crate) struct Conn13 {
    core: Core,
    /// Boxed: the states are large and an established association has none.
    hs: Option<Box<Hs>>,
}

impl fmt::Debug for Conn13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn13")
            .field("role", &self.core.role)
            .field("peer", &self.core.peer)
            .field("state", &self.core.state)
            .field("suite", &self.core.suite)
            .field("identity", &self.core.identity)
            .finish_non_exhaustive()
    }
}

/// Hands `msg` to the handshake state, or to the core once the handshake is over.
fn handle_message(hs: &mut Option<Box<Hs>>, core: &mut Core, now: Instant, msg: HandshakeMessage) -> Result<(), Error> {
    let Some(state) = hs.take() else {
        return core.handle_post_handshake(now, msg);
    };
    let incoming = core.begin_message(now, &msg);
    *hs = match *state {
        Hs::Client(s) => s.handle(core, now, incoming)?.map(Hs::Client),
        Hs::Server(s) => s.handle(core, now, incoming)?.map(Hs::Server),
    }
    .map(Box::new);
    Ok(())
}

impl Conn13 {
    pub(crate) fn client(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        Self::client_early(config, peer, server_name, resume, None, rng, now)
    }

    /// A client that also sends `early_data` as 0-RTT data when the ticket allows it
    /// (RFC 8446 §4.2.10; see `early.rs`).
    pub(crate) fn client_early(
        config: Arc<ClientConfig>,
        peer: SocketAddr,
        server_name: &str,
        resume: Option<Session>,
        early_data: Option<&[u8]>,
        rng: SeededRng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let (core, state) = client::start(config, peer, server_name, resume, early_data, rng, now)?;
        Ok(Self { core, hs: Some(Box::new(Hs::Client(state))) })
    }

    /// The server side, from a ClientHello that passed the cookie gate (see
    /// [`server::accept`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
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
    ) -> Self {
        let (core, state) =
            server::accept(config, peer, ch, ch_body, message_seq, record_seq, prefix, rng, now, cookie_rtt, fetched);
        Self { core, hs: state.map(|s| Box::new(Hs::Server(s))) }
    }

    /// A closed association keeps no handshake state.
    fn drop_closed_handshake(&mut self) {
        if self.core.is_closed() {
            self.hs = None;
        }
    }

    pub(crate) fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.core.is_closed() {
            return;
        }
        if let Some(Hs::Server(s)) = self.hs.as_deref_mut() {
            s.on_datagram(datagram.len());
        }
        let hs = &mut self.hs;
        self.core.handle_datagram(now, datagram, &mut |core, now, msg| handle_message(hs, core, now, msg));
        self.drop_closed_handshake();
    }

    /// Server: the records packed behind the ClientHello that created this association
    /// (0-RTT data in the same datagram, RFC 8446 §4.2.10).
    pub(crate) fn handle_rest_of_first_datagram(&mut self, _now: Instant, datagram: &[u8]) {
        if let Some(Hs::Server(s)) = self.hs.as_deref_mut() {
            s.on_first_datagram(datagram.len());
        }
        early::handle_rest_of_first_datagram(&mut self.core, datagram);
        self.drop_closed_handshake();
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.core.handle_timeout(now)
            && let Some(Hs::Client(s)) = self.hs.as_deref()
        {
            s.on_retransmit(&mut self.core);
        }
        self.drop_closed_handshake();
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.poll_transmit()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.core.max_payload()
    }

    /// Application data; a server between its Finished and the client's sends it as 0.5-RTT
    /// data (RFC 8446 §2.3, see [`server::State::send_half_rtt`]).
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), UsageError> {
        match self.hs.as_deref_mut() {
            Some(Hs::Server(s)) if self.core.is_handshaking() => s.send_half_rtt(&mut self.core, data),
            _ => self.core.send(data),
        }
    }

    /// Client: one more 0-RTT record (see [`crate::Connection::send_early_data`]).
    pub(crate) fn send_early_data(&mut self, data: &[u8]) -> Result<(), UsageError> {
        match self.hs.as_deref_mut() {
            Some(Hs::Client(s)) => s.send_early_data(&mut self.core, data),
            _ => Err(UsageError::NotConnected),
        }
    }

    pub(crate) fn close(&mut self) {
        self.core.close();
        self.drop_closed_handshake();
    }

    /// Sends a KeyUpdate; see [`Core::initiate_key_update`].
    pub(crate) fn initiate_key_update(&mut self, now: Instant, request: KeyUpdateRequest) {
        self.core.initiate_key_update(now, request);
    }

    /// The epoch our application data is sent in (3, then one more per KeyUpdate).
    pub(crate) fn send_epoch(&self) -> u64 {
        self.core.send_epoch()
    }

    /// Hands over the ClientHello of a client still waiting for the first ServerHello (no
    /// HelloRetryRequest seen), for a fallback to DTLS 1.2; `None` in any other state.
    pub(crate) fn take_first_client_hello(&mut self) -> Option<SentClientHello> {
        match self.hs.as_deref() {
            Some(Hs::Client(s)) => s.take_first_client_hello(&mut self.core),
            _ => None,
        }
    }

    /// The Connection IDs, once agreed (RFC 9147 §9).
    pub(crate) fn cids(&self) -> Option<&Cids13> {
        self.core.cid.as_deref().filter(|c| c.negotiated)
    }

    /// Whether `cid` is one of the CIDs this side issued (records to us may carry it).
    pub(crate) fn issues_cid(&self, cid: &[u8]) -> bool {
        self.cids().is_some_and(|c| c.issued.iter().any(|i| i == cid))
    }

    /// The CIDs this side issued.
    pub(crate) fn issued_cids(&self) -> Vec<Vec<u8>> {
        self.cids().map_or_else(Vec::new, |c| c.issued.clone())
    }

    /// CIDs issued since the last call, for the endpoint's index.
    pub(crate) fn take_unindexed_cids(&mut self) -> Vec<Vec<u8>> {
        self.core.cid.as_deref_mut().filter(|c| c.negotiated).map_or_else(Vec::new, |c| c.take_unindexed())
    }

    /// Whether the last datagram held a record that authenticated and was newer than any
    /// before it (RFC 9146 §6, which RFC 9147 §9 keeps for DTLS 1.3).
    pub(crate) fn last_datagram_advanced(&self) -> bool {
        self.core.cid.as_deref().is_some_and(|c| c.advanced)
    }

    /// Sends to `peer` from now on, with the peer's next spare CID if it gave us one
    /// (RFC 9147 §9: "SHOULD use a new CID whenever sending on a new path").
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        self.core.peer = peer;
        if let Some(c) = self.core.cid.as_deref_mut() {
            c.use_next_spare();
        }
    }

    /// See [`crate::Connection::issue_connection_ids`].
    pub(crate) fn issue_connection_ids(
        &mut self,
        now: Instant,
        count: usize,
        usage: ConnectionIdUsage,
    ) -> Result<usize, UsageError> {
        self.core.issue_connection_ids(now, count, usage)
    }

    /// See [`crate::Connection::request_connection_ids`].
    pub(crate) fn request_connection_ids(&mut self, now: Instant, num_cids: u8) -> Result<(), UsageError> {
        self.core.request_connection_ids(now, num_cids)
    }

    pub(crate) fn session(&self) -> Option<&Session> {
        self.core.session()
    }
    pub(crate) fn is_resumed(&self) -> bool {
        self.core.is_resumed()
    }
    pub(crate) fn peer(&self) -> SocketAddr {
        self.core.peer()
    }
    pub(crate) fn role(&self) -> Role {
        self.core.role()
    }
    pub(crate) fn is_established(&self) -> bool {
        self.core.is_established()
    }
    pub(crate) fn is_handshaking(&self) -> bool {
        self.core.is_handshaking()
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.core.close_reason()
    }
    pub(crate) fn suite(&self) -> Option<CipherSuite> {
        self.core.suite()
    }
    pub(crate) fn peer_identity(&self) -> &PeerIdentity {
        self.core.peer_identity()
    }
    pub(crate) fn claimed_identity(&self) -> Option<&PeerIdentity> {
        self.core.out.claimed_identity.as_deref()
    }
    pub(crate) fn client_random(&self) -> &[u8; 32] {
        self.core.client_random()
    }
    pub(crate) fn is_same_client_hello(&self, body: &[u8]) -> bool {
        self.core.is_same_client_hello(body)
    }
    pub(crate) fn stats(&self) -> Stats {
        self.core.stats()
    }
    pub(crate) fn last_activity(&self) -> Instant {
        self.core.last_activity()
    }
}
