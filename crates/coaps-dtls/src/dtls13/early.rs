//! 0-RTT early data in DTLS 1.3 (RFC 8446 §4.2.10, RFC 9147 §5.6 and §6.1), both sides: the
//! client's epoch-1 sending beside its ClientHello, the server's decision on a ClientHello's
//! early_data, and the stateless gate's look-ups ([`cookie_exempt`], [`psk_ke_possible`]).
//! Receiving the accepted epoch-1 records is the record layer's ([`super::engine`]). The
//! public policy types live in [`crate::config::early_data`].

use crate::codec::*;
use crate::config::ServerConfig;
use crate::config::early_data::{DEFAULT_RESUMPTION_FRESHNESS, EarlyDataContext};
use crate::crypto::AeadAlgorithm;
use crate::dtls13::engine::{Core, EarlyReceive, State, hash, suite13};
use crate::dtls13::key_schedule::{self as tls13, EarlySecret};
use crate::dtls13::msgs::*;
use crate::dtls13::record::{self as record13, HeaderStyle, ReceiveEpoch13, Record13, SendEpoch13};
use crate::error::{Error, PeerMisbehaved, UsageError};
use crate::resumption::{FetchedSession, Session, SessionSource};
use crate::types::Event;
use std::net::SocketAddr;
use std::time::Instant;

/// DTLS 1.3 epoch of 0-RTT data (RFC 9147 §6.1).
const EPOCH_EARLY: u64 = 1;

/// Client: 0-RTT sending state, boxed in the handshake states up to EncryptedExtensions, which
/// tells whether the server took it; most handshakes have none.
#[derive(Debug, Default)]
pub(crate) struct ClientEarly {
    /// Epoch-1 keys until the server's answer.
    send: Option<SendEpoch13>,
    /// Early data is offered in the ClientHello the server answers (cleared by an HRR).
    offered: bool,
    /// Early-data bytes sent, and the limit.
    bytes: u64,
    max: u64,
    /// The sealed epoch-1 records, resent byte for byte with each ClientHello retransmission:
    /// the server's per-epoch replay window (RFC 9147 §4.5.1) drops the copies, so a record is
    /// never delivered twice.
    records: Vec<Vec<u8>>,
}

/// Whether the stateless gate may skip the cookie exchange for `ch` (RFC 9147 §5.1: "when a
/// session is resumed ... and the IP address matches one associated with the PSK"): the first
/// PSK is a ticket of ours (stored, handed in, or sealed and opened here) issued to this
/// address, the ticket age is fresh both ways (RFC 8446 §8.3) and the first binder verifies
/// over `ch_body`. A ClientHello offering early data passes when the server allows 0-RTT
/// without a cookie ([`EarlyDataConfig::skip_cookie_on_resumption`](crate::EarlyDataConfig::skip_cookie_on_resumption)) and the ticket
/// allows early data; any other resumption when
/// [`ServerConfig::skip_cookie_on_resumption`] is set.
///
/// Without a cookie nothing shows that the sender can receive at `peer`, so only a ClientHello
/// the ticket holder wrote within the freshness window passes: an altered copy (another random,
/// to look like a new connection and replace the live association, RFC 9147 §5.11) fails the
/// binder, and an identical copy is routed to the association it already created.
///
/// `fetched` are the sessions a layer handed in, looked at before the in-process store.
pub(crate) fn cookie_exempt(
    config: &ServerConfig,
    ch: &ClientHello13,
    ch_body: &[u8],
    peer: SocketAddr,
    now: Instant,
    fetched: &[FetchedSession],
) -> bool {
    let zero_rtt = ch.has_early_data() && config.early_data.as_ref().is_some_and(|e| e.skip_cookie_on_resumption);
    if !zero_rtt && !config.skip_cookie_on_resumption {
        return false;
    }
    let window = config.early_data.as_ref().map_or(DEFAULT_RESUMPTION_FRESHNESS, |e| e.freshness_window);
    let Some(offered) = ch.pre_shared_key() else { return false };
    let (Some(first), Some(binder)) = (offered.identities.first(), offered.binders.first()) else { return false };
    let Some((session, _)) = find_ticket(config, fetched, &first.identity, now) else {
        return false;
    };
    let Some(t) = session.ticket13.as_ref() else { return false };
    if t.client_ip != Some(peer.ip()) || (!config.skip_cookie_on_resumption && t.max_early_data == 0) {
        return false;
    }
    let client_age = std::time::Duration::from_millis(u64::from(first.obfuscated_ticket_age.wrapping_sub(t.age_add)));
    if client_age.abs_diff(now.saturating_duration_since(session.established_at)) > window {
        return false;
    }
    let Ok((_, Some(off))) = ClientHello13::read_with_binders_offset(ch_body) else { return false };
    let mut partial = Vec::new();
    truncated_client_hello_transcript(ch_body, off, &mut partial);
    let p = &*config.common.provider;
    let binder_key = EarlySecret::new(p, Some(&t.psk[..])).binder_key(p, false);
    let expected = tls13::psk_binder(p, &binder_key, &hash(p, &partial));
    binder.len() == expected.len() && bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &binder[..]))
}

/// Server: the unexpired DTLS 1.3 ticket a PSK identity names. In stateless mode the identity
/// is a sealed session the engine opens itself (no store); an identity that does not open is
/// still looked up as a stateful ticket, so tickets issued before a switch to stateless mode
/// keep resuming for their lifetime.
///
/// A sealed ticket counts as taken (single use, RFC 8446 §8.1) only when a layer handed in
/// the opened session as taken ([`FetchedSession::from_take`](crate::FetchedSession::from_take)): it recorded the ticket's ID in a
/// store shared by every node, first (see `coaps_tower::resumption`).
pub(crate) fn find_ticket(
    config: &ServerConfig,
    fetched: &[FetchedSession],
    identity: &[u8],
    now: Instant,
) -> Option<(Session, SessionSource)> {
    if let Some(keys) = config.tickets.keys() {
        let opened = keys.open(identity, now, (config.common.wall_clock)()).filter(Session::is_dtls13_ticket);
        if let Some(session) = opened {
            // Without a record of its ID in a shared store it never carries 0-RTT.
            let taken = fetched.iter().any(|f| f.taken && f.session.is_dtls13_ticket() && f.session.id == session.id);
            return Some((session, SessionSource::Fetched { taken }));
        }
    }
    crate::resumption::find_session(config, fetched, identity, true, now)
}

/// Whether `ch` can complete with psk_ke alone (no key share, RFC 8446 §4.2.9): it offers that
/// mode and a PSK identity the server knows (a ticket in its store or an external PSK). The
/// stateless gate then does not ask for a key share.
/// `fetched` are the sessions a layer handed in, looked at before the in-process store.
pub(crate) fn psk_ke_possible(
    config: &ServerConfig,
    ch: &ClientHello13,
    now: Instant,
    fetched: &[FetchedSession],
) -> bool {
    if !ch.psk_key_exchange_modes().unwrap_or_default().contains(&PskKeyExchangeMode::PskKe) {
        return false;
    }
    let Some(offered) = ch.pre_shared_key() else { return false };
    offered.identities.iter().any(|id| {
        find_ticket(config, fetched, &id.identity, now).is_some()
            || config.psks.as_ref().is_some_and(|p| p.key_for(&id.identity).is_some())
    })
}

impl ClientEarly {
    /// Client, right after the ClientHello that offers early_data with `ticket` went out:
    /// derives the epoch-1 keys from `client_early_traffic_secret` over the ClientHello
    /// (RFC 8446 §7.1) and sends `data`, packed into the ClientHello's datagram when it fits.
    pub(crate) fn start(core: &mut Core, ticket: &Session, data: &[u8]) -> Result<Box<Self>, UsageError> {
        let t = ticket.ticket13.as_ref().ok_or(UsageError::NotConnected)?;
        // RFC 8446 §4.2.10: 0-RTT uses the ticket's suite.
        let aead = suite13(ticket.suite).ok_or(UsageError::Crypto)?;
        let p = core.provider();
        let secret = EarlySecret::new(&*p, Some(&t.psk[..])).client_early_traffic_secret(&*p, &core.transcript_hash());
        let prot = core.protection(aead, &secret).map_err(|_| UsageError::Crypto)?;
        let mut early = Box::new(Self {
            send: Some(SendEpoch13::new(EPOCH_EARLY, prot)),
            offered: true,
            max: u64::from(t.max_early_data),
            ..Self::default()
        });
        early.send(core, data)?;
        Ok(early)
    }

    /// Client awaiting the ServerHello: one more 0-RTT record (see
    /// [`crate::Connection::send_early_data`]).
    pub(crate) fn send(&mut self, core: &mut Core, data: &[u8]) -> Result<(), UsageError> {
        let mtu = core.common().mtu;
        if !self.offered {
            return Err(UsageError::NotConnected);
        }
        let Some(send) = self.send.as_mut() else { return Err(UsageError::NotConnected) };
        // RFC 8446 §4.2.10: never more than the ticket's max_early_data_size.
        if self.bytes + data.len() as u64 > self.max {
            return Err(UsageError::LimitReached("max_early_data_size of the ticket"));
        }
        let style = HeaderStyle::choose(0, None, true);
        let max = send.protection().max_plaintext_len(mtu, style);
        if data.len() > max {
            return Err(UsageError::MessageTooLarge { len: data.len(), max });
        }
        let mut rec = Vec::with_capacity(data.len() + 32);
        send.seal(ContentType::ApplicationData, data, &mut rec, style).map_err(|_| UsageError::Crypto)?;
        self.bytes += data.len() as u64;
        let first = self.records.is_empty();
        self.records.push(rec.clone());
        push_early_record(core, rec, first);
        Ok(())
    }

    /// Client awaiting the ServerHello: the ClientHello was just retransmitted; its 0-RTT
    /// records go along, unchanged.
    pub(crate) fn resend(&self, core: &mut Core) {
        if !self.offered {
            return;
        }
        for (i, rec) in self.records.iter().enumerate() {
            push_early_record(core, rec.clone(), i == 0);
        }
    }
}

/// Appends an epoch-1 record to the datagram just queued (the ClientHello's) when it fits,
/// else sends it alone.
fn push_early_record(core: &mut Core, rec: Vec<u8>, behind_hello: bool) {
    let mtu = core.common().mtu;
    if behind_hello
        && let Some(last) = core.out.transmits.back_mut()
        && last.len() + rec.len() <= mtu
    {
        last.extend_from_slice(&rec);
        core.out.stats.bytes_sent += rec.len() as u64;
        return;
    }
    core.push_datagram(rec);
}

/// Client: a HelloRetryRequest arrived. The second ClientHello must not offer early data
/// (RFC 8446 §4.2.10), so what was sent is lost: it will be reported as rejected.
pub(crate) fn client_after_hrr(early: Option<&mut ClientEarly>, ch2: &mut ClientHello13) {
    ch2.extensions.retain(|e| !matches!(e, ClientExtension13::EarlyData));
    if let Some(e) = early {
        e.offered = false;
        e.send = None;
        e.records = Vec::new();
    }
}

/// Client: EncryptedExtensions tells whether the server took our early data
/// (RFC 8446 §4.2.10); the application hears it before `Connected`. The 0-RTT state ends here.
pub(crate) fn client_outcome(early: Option<Box<ClientEarly>>, core: &mut Core, accepted: bool) -> Result<(), Error> {
    let offered = early.as_ref().is_some_and(|e| e.offered);
    if accepted {
        if !offered {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::EarlyDataAcceptedNotOffered));
        }
        // RFC 8446 §4.2.10: early data is accepted only with the first PSK (our ticket).
        if !core.resumed {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::EarlyDataWithoutFirstPsk));
        }
        core.out.events.push_back(Event::EarlyDataAccepted);
    } else if early.is_some() {
        core.out.events.push_back(Event::EarlyDataRejected);
    }
    Ok(())
}

/// Server: decides on the early data `ch` offers, after the PSK choice and with the
/// ClientHello in the transcript (RFC 8446 §4.2.10). `ticket` is the resumed session with
/// the client's obfuscated ticket age when the selected PSK is one of our tickets;
/// `after_hrr` when a HelloRetryRequest came first. Returns whether EncryptedExtensions
/// must carry early_data.
#[allow(clippy::too_many_arguments)]
pub(crate) fn server_decision(
    core: &mut Core,
    config: &ServerConfig,
    ch: &ClientHello13,
    selected: u16,
    ticket: Option<&(Session, u32, SessionSource)>,
    suite: CipherSuite,
    aead: AeadAlgorithm,
    after_hrr: bool,
    now: Instant,
) -> Result<bool, Error> {
    if !ch.has_early_data() {
        return Ok(false);
    }
    let ticket_max = ticket.and_then(|(s, _, _)| s.ticket13.as_ref()).map_or(0, |t| t.max_early_data);
    let config_max = config.early_data.as_ref().map_or(0, |e| e.max_early_data_size);
    let mut early = EarlyReceive { max: u64::from(ticket_max.max(config_max)), ..EarlyReceive::default() };
    let accept = (|| {
        let ed = config.early_data.as_ref()?;
        // RFC 8446 §4.2.10: not after an HRR, only with the first PSK, a ticket that
        // allows early data, and the ticket's suite.
        let (session, obfuscated_age, source) = ticket.filter(|_| selected == 0 && !after_hrr)?;
        let t = session.ticket13.as_ref().filter(|t| t.max_early_data > 0)?;
        if session.suite != suite {
            return None;
        }
        // RFC 8446 §4.2.11.1 / §8.3: the client's age of the ticket must match ours.
        let client_age = std::time::Duration::from_millis(u64::from(obfuscated_age.wrapping_sub(t.age_add)));
        let server_age = now.saturating_duration_since(session.established_at);
        if !ed.is_fresh(client_age, server_age) {
            return None;
        }
        let server_name = ch.server_name().and_then(|n| std::str::from_utf8(n).ok());
        let ctx = EarlyDataContext {
            peer: core.peer,
            ticket: &session.id,
            peer_identity: &session.peer_identity,
            suite,
            client_ticket_age: client_age,
            server_ticket_age: server_age,
            server_name,
        };
        if !ed.accept.as_ref().is_none_or(|hook| hook(&ctx)) {
            return None;
        }
        // RFC 8446 §8.1: single-use tickets. Only the association that removes the ticket
        // from the store, in one atomic step, accepts its early data; a replayed or
        // concurrent ClientHello (on this node or another sharing the store) finds it gone
        // and resumes without 0-RTT. A handed-in ticket counts only if the layer took it.
        let single_use = match source {
            SessionSource::Fetched { taken } => *taken,
            SessionSource::Store => config.session_store.as_ref().is_some_and(|st| st.take(&session.id, now).is_some()),
        };
        if !single_use {
            return None;
        }
        Some((t.psk.clone(), t.max_early_data.min(ed.max_early_data_size)))
    })();
    let accepted = accept.is_some();
    if let Some((psk, max)) = accept {
        let p = core.provider();
        let secret = EarlySecret::new(&*p, Some(&psk[..])).client_early_traffic_secret(&*p, &core.transcript_hash());
        early.recv = Some(ReceiveEpoch13::new(EPOCH_EARLY, core.protection(aead, &secret)?));
        early.max = u64::from(max);
        // The early data is authorized by the ticket's identity: report it before the
        // handshake completes.
        if let Some((session, _, _)) = ticket {
            core.identity = session.peer_identity.clone();
        }
    }
    core.tr.early = Some(Box::new(early));
    Ok(accepted)
}

/// Server: the records packed behind the ClientHello that created this association
/// (0-RTT data in the same datagram, RFC 8446 §4.2.10).
pub(crate) fn handle_rest_of_first_datagram(core: &mut Core, datagram: &[u8]) {
    if core.tr.early.is_none() || core.state == State::Closed {
        return;
    }
    let mut peer_repeated = false;
    for rec in record13::split_datagram13(datagram) {
        if matches!(rec, Record13::Ciphertext(_)) {
            core.handle_record(rec, &mut peer_repeated);
            if core.state == State::Closed {
                return;
            }
        }
    }
}
