//! Stateless session tickets: the session sealed into the ticket itself under a rotating
//! ticket-encryption key, so the server keeps nothing per session and needs no store look-up
//! to resume (the RFC 5077 §4 recommended construction, with ChaCha20-Poly1305 in place of
//! AES-CBC + HMAC; RFC 8446 §4.6.1 leaves the DTLS 1.3 ticket's contents to the server).
//!
//! A ticket is
//!
//! ```text
//! key_name [16] ‖ nonce [12] ‖ ChaCha20-Poly1305(key, nonce, aad, Session::encode(...)) ‖ tag [16]
//! aad = "coaps ticket" ‖ TICKET_FORMAT_VERSION ‖ key_name
//! ```
//!
//! The key name tells which key sealed the ticket (RFC 5077 §4: "key_name"); the AAD binds
//! the name and the format version, so a ticket cannot be moved to another key or read as a
//! later format. [`TicketKeys`] holds the current key (which seals) and the previous one
//! (which still opens), and rotates every [`TicketKeys::rotate_every`]; a ticket sealed under
//! an older key no longer opens, whatever lifetime it was issued with, so a leaked key stops
//! mattering after two periods.
//!
//! Opening is pure computation (no I/O, no lock held for long): the engine opens a ticket
//! offered in a ClientHello itself. Single use for 0-RTT still needs a store: the sealed
//! session carries a random 16-byte ID ([`Session::store_key`] of the opened session) a store
//! can `take` or `SET NX` to refuse a replay (RFC 8446 §8.1).

use crate::codec::Reader;
use crate::crypto::Rng;
use crate::resumption::Session;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::array::Array;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Length of a ticket key's name, the first bytes of every ticket (RFC 5077 §4 uses 16).
pub const TICKET_KEY_NAME_LEN: usize = 16;
/// The sealing format's version, bound into every ticket's AAD.
pub const TICKET_FORMAT_VERSION: u8 = 1;
/// Default period between ticket-key rotations: 24 hours, the longest default lifetime of
/// what a ticket carries (a DTLS 1.2 session, RFC 5246 App. F.1.4), so a ticket issued just
/// before a rotation still opens for its whole lifetime under the previous key.
pub const DEFAULT_TICKET_KEY_ROTATION: Duration = Duration::from_secs(24 * 3600);

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The smallest sealed ticket: name, nonce and tag around an empty plaintext.
const MIN_TICKET_LEN: usize = TICKET_KEY_NAME_LEN + NONCE_LEN + TAG_LEN;
const AAD_LABEL: &[u8] = b"coaps ticket";
/// Version byte of [`TicketKeys::export`]'s format.
const EXPORT_VERSION: u8 = 1;
const EXPORTED_KEY_LEN: usize = TICKET_KEY_NAME_LEN + 32 + 8;

/// One ticket-encryption key: a public name and a 256-bit ChaCha20-Poly1305 key, with the
/// wall-clock time it was made (rotation counts from it, on every node alike). The key never
/// appears in `Debug` and is wiped when dropped.
#[derive(Clone)]
pub struct TicketKey {
    name: [u8; TICKET_KEY_NAME_LEN],
    key: Zeroizing<[u8; 32]>,
    created_unix_ms: u64,
}

impl TicketKey {
    /// A fresh random key (name and key from `rng`) made at `created`.
    pub fn generate(rng: &mut dyn Rng, created: SystemTime) -> Self {
        let mut name = [0u8; TICKET_KEY_NAME_LEN];
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(&mut name);
        rng.fill(&mut key[..]);
        Self { name, key, created_unix_ms: unix_ms(created) }
    }

    /// A key from its parts (loaded from configuration or a shared store).
    pub fn from_parts(name: [u8; TICKET_KEY_NAME_LEN], key: [u8; 32], created: SystemTime) -> Self {
        Self { name, key: Zeroizing::new(key), created_unix_ms: unix_ms(created) }
    }

    /// The key name tickets sealed under this key start with.
    pub fn name(&self) -> &[u8; TICKET_KEY_NAME_LEN] {
        &self.name
    }

    /// When the key was made.
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_unix_ms)
    }

    /// The key in bytes, for a store several nodes share (which must keep it sealed):
    /// `name [16] ‖ key [32] ‖ u64 created unix ms`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(EXPORTED_KEY_LEN));
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.key[..]);
        out.extend_from_slice(&self.created_unix_ms.to_be_bytes());
        out
    }

    /// Reads what [`TicketKey::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        let k = Self::read(&mut r)?;
        r.is_empty().then_some(k)
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let name = r.array::<TICKET_KEY_NAME_LEN>("name").ok()?;
        let key = Zeroizing::new(r.array::<32>("key").ok()?);
        let created_unix_ms = u64::from_be_bytes(r.array::<8>("created").ok()?);
        Some(Self { name, key, created_unix_ms })
    }

    fn aead(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Array::from(*self.key))
    }

    fn age(&self, wall: SystemTime) -> Duration {
        Duration::from_millis(unix_ms(wall).saturating_sub(self.created_unix_ms))
    }
}

/// Never shows the key.
impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("name", &hex(&self.name))
            .field("created_unix_ms", &self.created_unix_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct KeyRing {
    current: TicketKey,
    previous: Option<TicketKey>,
    /// Opens, never seals: the key a cluster makes current at the next rotation, published
    /// ahead so a node whose clock (or refresh) lags still opens tickets sealed by a node
    /// that has already rotated.
    next: Option<TicketKey>,
}

impl KeyRing {
    fn opening(&self, name: &[u8]) -> Option<&TicketKey> {
        std::iter::once(&self.current).chain(&self.previous).chain(&self.next).find(|k| k.name == name)
    }
}

/// The ticket-encryption keys of a server in stateless ticket mode
/// ([`TicketMode::Stateless`]): the current key, which seals, the previous one, which still
/// opens, and (shared keys) the next one, which already opens. A cheap, shareable handle: clones see the same keys, so a task that loads
/// keys from a cluster-wide store ([`TicketKeys::install`]) changes what every engine using
/// the handle seals and opens.
///
/// Two ways of rotating:
///
/// * [`TicketKeys::new`]: the keys live in this process and rotate themselves: sealing a
///   ticket with a current key older than [`TicketKeys::rotate_every`] first makes a new
///   key from the engine's randomness and keeps the old one as previous.
/// * [`TicketKeys::shared`]: the keys come from outside (a store several nodes share) and
///   change only through [`TicketKeys::install`] / [`TicketKeys::install_with_next`], so
///   every node seals and opens with the same keys. With the next key installed ahead, a
///   rotation costs no full handshakes: during the moments nodes disagree on the current
///   key, each opens what the others seal (the laggards hold it as next, the others as
///   previous).
#[derive(Clone)]
pub struct TicketKeys {
    ring: Arc<RwLock<KeyRing>>,
    rotate_every: Duration,
    self_rotating: bool,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.read();
        f.debug_struct("TicketKeys")
            .field("current", &ring.current)
            .field("previous", &ring.previous)
            .field("next", &ring.next)
            .field("rotate_every", &self.rotate_every)
            .field("self_rotating", &self.self_rotating)
            .finish()
    }
}

impl TicketKeys {
    /// Self-rotating keys for one process, the first made from the operating system's RNG at
    /// `wall`; a new one every `rotate_every` (at least one second).
    pub fn new(rotate_every: Duration, wall: SystemTime) -> Self {
        let mut rng = crate::crypto::SeededRng::from_os();
        let current = TicketKey::generate(&mut rng, wall);
        Self::with(current, None, rotate_every, true)
    }

    /// Keys rotated from outside ([`TicketKeys::install`]): `current` seals, `current` and
    /// `previous` open. `rotate_every` is how long the holder means to keep a key current
    /// ([`TicketKeys::rotation_due`] tells when).
    pub fn shared(current: TicketKey, previous: Option<TicketKey>, rotate_every: Duration) -> Self {
        Self::with(current, previous, rotate_every, false)
    }

    fn with(current: TicketKey, previous: Option<TicketKey>, rotate_every: Duration, self_rotating: bool) -> Self {
        Self {
            ring: Arc::new(RwLock::new(KeyRing { current, previous, next: None })),
            rotate_every: rotate_every.max(Duration::from_secs(1)),
            self_rotating,
        }
    }

    /// The period between rotations.
    pub fn rotate_every(&self) -> Duration {
        self.rotate_every
    }

    /// Replaces the keys (every clone of this handle sees the change at once), with no next
    /// key.
    pub fn install(&self, current: TicketKey, previous: Option<TicketKey>) {
        self.install_with_next(current, previous, None);
    }

    /// Replaces the keys, with `next`: the key that becomes current at the next rotation,
    /// which opens (never seals) from now on.
    pub fn install_with_next(&self, current: TicketKey, previous: Option<TicketKey>, next: Option<TicketKey>) {
        *self.write() = KeyRing { current, previous, next };
    }

    /// The name of the key that seals now.
    pub fn current_name(&self) -> [u8; TICKET_KEY_NAME_LEN] {
        self.read().current.name
    }

    /// Whether `ticket` names the current, the previous or the next key: it was sealed by a
    /// server holding these keys (it may still be forged or expired; [`TicketKeys::open`]
    /// tells). A layer skips the store look-up for such a ticket.
    pub fn names_a_key(&self, ticket: &[u8]) -> bool {
        let Some(name) = ticket.get(..TICKET_KEY_NAME_LEN) else { return false };
        self.read().opening(name).is_some()
    }

    /// Whether the current key is older than [`TicketKeys::rotate_every`] at `wall`.
    pub fn rotation_due(&self, wall: SystemTime) -> bool {
        self.read().current.age(wall) >= self.rotate_every
    }

    /// Makes a new current key from `rng` and keeps the current one as previous; the key
    /// before that no longer opens anything.
    pub fn rotate(&self, rng: &mut dyn Rng, wall: SystemTime) {
        let new = TicketKey::generate(rng, wall);
        let mut ring = self.write();
        let old = std::mem::replace(&mut ring.current, new);
        ring.previous = Some(old);
        ring.next = None;
    }

    /// Seals `session` into a ticket under the current key (rotating first when the keys are
    /// self-rotating and the current one is due). `now` / `wall` are the engine's clocks, as
    /// for [`Session::encode`]; the nonce comes from `rng`.
    pub fn seal(&self, session: &Session, rng: &mut dyn Rng, now: Instant, wall: SystemTime) -> Vec<u8> {
        if self.self_rotating && self.rotation_due(wall) {
            self.rotate(rng, wall);
        }
        let key = self.read().current.clone();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let plain = session.encode(now, wall);
        let mut out = Vec::with_capacity(MIN_TICKET_LEN + plain.len());
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let body = out.len();
        out.extend_from_slice(&plain);
        let tag = key
            .aead()
            .encrypt_inout_detached(&Array::from(nonce), &aad(&key.name), out[body..].as_mut().into())
            .expect("ChaCha20-Poly1305 seals any ticket-sized plaintext");
        out.extend_from_slice(&tag);
        out
    }

    /// The session sealed in `ticket`, if it was sealed under the current, the previous or the
    /// next key, is unaltered, decodes, and is not expired at `now`. Everything else — truncated,
    /// forged, sealed under an unknown or retired key, expired — is `None`. Total.
    pub fn open(&self, ticket: &[u8], now: Instant, wall: SystemTime) -> Option<Session> {
        if ticket.len() < MIN_TICKET_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(TICKET_KEY_NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.read().opening(name)?.clone();
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut plain = Zeroizing::new(ct.to_vec());
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        key.aead()
            .decrypt_inout_detached(
                &Array::from(nonce),
                &aad(&key.name),
                plain.as_mut_slice().into(),
                &Array::from(tag),
            )
            .ok()?;
        let session = Session::decode(&plain, now, wall).ok()?;
        (!session.is_expired(now)).then_some(session)
    }

    /// The two keys in bytes, for a store several nodes share (which must keep them sealed,
    /// as `RedisStore` does every value):
    /// `u8 version (1) ‖ u8 count ‖ count × (name [16] ‖ key [32] ‖ u64 created unix ms)`,
    /// current first.
    pub fn export(&self) -> Zeroizing<Vec<u8>> {
        let ring = self.read();
        let keys: Vec<&TicketKey> = std::iter::once(&ring.current).chain(ring.previous.as_ref()).collect();
        let mut out = Zeroizing::new(Vec::with_capacity(2 + keys.len() * EXPORTED_KEY_LEN));
        out.push(EXPORT_VERSION);
        out.push(keys.len() as u8);
        for k in keys {
            out.extend_from_slice(&k.to_bytes());
        }
        out
    }

    /// Reads what [`TicketKeys::export`] wrote: the current key and the previous one, or
    /// `None` for anything else (total).
    pub fn import(bytes: &[u8]) -> Option<(TicketKey, Option<TicketKey>)> {
        let mut r = Reader::new(bytes);
        if r.u8("version").ok()? != EXPORT_VERSION {
            return None;
        }
        let count = r.u8("count").ok()?;
        if !(1..=2).contains(&count) {
            return None;
        }
        let current = TicketKey::read(&mut r)?;
        let previous = if count == 2 { Some(TicketKey::read(&mut r)?) } else { None };
        r.is_empty().then_some((current, previous))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        // Every write replaces whole keys, so a panic elsewhere cannot leave a half-written ring.
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a server keeps what its tickets resume ([`ServerConfig::tickets`](crate::ServerConfig::tickets)).
#[derive(Debug, Clone, Default)]
pub enum TicketMode {
    /// The ticket is a random key into the session store (in-process or a layer's): the
    /// server must find the session there to resume.
    #[default]
    Stateful,
    /// The ticket is the session sealed under these keys: the server opens it itself, with
    /// no store look-up, and stores nothing when it issues one.
    Stateless(TicketKeys),
}

impl TicketMode {
    /// The keys of stateless mode.
    pub fn keys(&self) -> Option<&TicketKeys> {
        match self {
            Self::Stateful => None,
            Self::Stateless(k) => Some(k),
        }
    }
}

fn aad(name: &[u8; TICKET_KEY_NAME_LEN]) -> [u8; AAD_LABEL.len() + 1 + TICKET_KEY_NAME_LEN] {
    let mut a = [0u8; AAD_LABEL.len() + 1 + TICKET_KEY_NAME_LEN];
    a[..AAD_LABEL.len()].copy_from_slice(AAD_LABEL);
    a[AAD_LABEL.len()] = TICKET_FORMAT_VERSION;
    a[AAD_LABEL.len() + 1..].copy_from_slice(name);
    a
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CipherSuite;
    use crate::crypto::SeededRng;
    use crate::types::{PeerIdentity, Ticket13};

    fn session(now: Instant, lifetime: Duration) -> Session {
        Session {
            id: vec![0x42; 16],
            suite: CipherSuite::TLS_AES_128_GCM_SHA256,
            extended_master_secret: true,
            peer_identity: PeerIdentity::Psk(b"device-7".to_vec()),
            established_at: now,
            lifetime,
            master_secret: Zeroizing::new([0; 48]),
            ticket12: None,
            ticket13: Some(Ticket13 {
                psk: Zeroizing::new([0x5A; 32]),
                age_add: 7,
                max_early_data: 0,
                client_ip: None,
            }),
        }
    }

    fn keys(rng: &mut SeededRng, wall: SystemTime) -> TicketKeys {
        TicketKeys::shared(TicketKey::generate(rng, wall), None, Duration::from_secs(3600))
    }

    #[test]
    fn seal_open_round_trip_hides_the_session() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rng = SeededRng::from_seed_u64(1);
        let k = keys(&mut rng, wall);
        let s = session(now, Duration::from_secs(600));
        let t = k.seal(&s, &mut rng, now, wall);
        assert_eq!(&t[..TICKET_KEY_NAME_LEN], &k.current_name());
        assert!(!t.windows(8).any(|w| w == [0x5A; 8]), "the PSK shows in the ticket");
        assert!(!t.windows(8).any(|w| w == b"device-7"), "the identity shows in the ticket");
        let o = k.open(&t, now, wall).expect("opens");
        assert_eq!(o.id, s.id);
        assert_eq!(o.ticket13.as_ref().unwrap().psk[..], [0x5A; 32]);
        // Two seals of one session differ (fresh nonce).
        assert_ne!(t, k.seal(&s, &mut rng, now, wall));
    }

    #[test]
    fn truncated_forged_unknown_retired_and_expired_are_refused() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rng = SeededRng::from_seed_u64(2);
        let k = keys(&mut rng, wall);
        let t = k.seal(&session(now, Duration::from_secs(600)), &mut rng, now, wall);
        for n in 0..t.len() {
            assert!(k.open(&t[..n], now, wall).is_none(), "a {n}-byte prefix opened");
        }
        for i in 0..t.len() {
            let mut f = t.clone();
            f[i] ^= 0x01;
            assert!(k.open(&f, now, wall).is_none(), "a flip at byte {i} opened");
        }
        let mut longer = t.clone();
        longer.push(0);
        assert!(k.open(&longer, now, wall).is_none());
        // Unknown key: another key set with its own name.
        let other = keys(&mut rng, wall);
        assert!(other.open(&t, now, wall).is_none());
        // Same name, different key (a forger who knows the public name): refused.
        let forged = TicketKeys::shared(TicketKey::from_parts(k.current_name(), [9; 32], wall), None, k.rotate_every());
        assert!(forged.open(&t, now, wall).is_none());
        // Rotation: one rotation keeps the ticket (previous key), a second retires its key.
        k.rotate(&mut rng, wall);
        assert!(k.open(&t, now, wall).is_some(), "the previous key must still open");
        let after_one = k.seal(&session(now, Duration::from_secs(600)), &mut rng, now, wall);
        k.rotate(&mut rng, wall);
        assert!(k.open(&t, now, wall).is_none(), "a retired key opened a ticket");
        assert!(k.open(&after_one, now, wall).is_some());
        // Expired: past the sealed session's lifetime.
        let later = now + Duration::from_secs(601);
        let later_wall = wall + Duration::from_secs(601);
        assert!(k.open(&after_one, later, later_wall).is_none(), "an expired ticket opened");
    }

    #[test]
    fn garbage_never_panics() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rng = SeededRng::from_seed_u64(3);
        let k = keys(&mut rng, wall);
        let name = k.current_name();
        for len in 0..300 {
            let mut g = vec![0u8; len];
            rng.fill(&mut g);
            if len >= TICKET_KEY_NAME_LEN {
                g[..TICKET_KEY_NAME_LEN].copy_from_slice(&name);
            }
            assert!(k.open(&g, now, wall).is_none());
            assert!(TicketKeys::import(&g).is_none() || g.len() >= 2 + EXPORTED_KEY_LEN);
        }
    }

    #[test]
    fn self_rotating_keys_rotate_when_due() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rng = SeededRng::from_seed_u64(4);
        let k = TicketKeys::new(Duration::from_secs(60), wall);
        let first = k.current_name();
        let t = k.seal(&session(now, Duration::from_secs(600)), &mut rng, now, wall);
        assert_eq!(k.current_name(), first, "rotated before due");
        let wall2 = wall + Duration::from_secs(61);
        let now2 = now + Duration::from_secs(61);
        let t2 = k.seal(&session(now2, Duration::from_secs(600)), &mut rng, now2, wall2);
        assert_ne!(k.current_name(), first, "not rotated when due");
        assert!(k.open(&t, now2, wall2).is_some() && k.open(&t2, now2, wall2).is_some());
    }

    /// Two nodes of a cluster across a rotation: A has made the next period's key current,
    /// B still seals under the old one but holds the new one as next. Each opens the other's
    /// tickets; the next key never seals.
    #[test]
    fn the_next_key_opens_what_a_node_ahead_sealed() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rng = SeededRng::from_seed_u64(6);
        let period = Duration::from_secs(60);
        let (old, new) = (TicketKey::generate(&mut rng, wall), TicketKey::generate(&mut rng, wall + period));
        let a = TicketKeys::shared(new.clone(), Some(old.clone()), period);
        let b = TicketKeys::shared(old.clone(), None, period);
        let s = session(now, Duration::from_secs(600));
        let from_a = a.seal(&s, &mut rng, now, wall);
        assert!(!b.names_a_key(&from_a) && b.open(&from_a, now, wall).is_none(), "without the next key");
        b.install_with_next(old.clone(), None, Some(new.clone()));
        assert!(b.names_a_key(&from_a));
        assert_eq!(b.open(&from_a, now, wall).expect("B opens A's ticket").id, s.id);
        let from_b = b.seal(&s, &mut rng, now, wall);
        assert_eq!(&from_b[..TICKET_KEY_NAME_LEN], &old.name, "the next key does not seal");
        assert!(a.open(&from_b, now, wall).is_some(), "A opens B's ticket under its previous key");
        assert!(format!("{b:?}").contains("next: Some"));
    }

    #[test]
    fn export_import_round_trip_and_debug_hides_keys() {
        let wall = SystemTime::now();
        let mut rng = SeededRng::from_seed_u64(5);
        let k = TicketKeys::shared(TicketKey::from_parts([1; 16], [0xA5; 32], wall), None, Duration::from_secs(60));
        k.rotate(&mut rng, wall);
        let bytes = k.export();
        let (cur, prev) = TicketKeys::import(&bytes).expect("imports");
        assert_eq!(cur.name(), &k.current_name());
        assert_eq!(prev.as_ref().map(|p| *p.name()), Some([1; 16]));
        for n in 0..bytes.len() {
            assert!(TicketKeys::import(&bytes[..n]).is_none());
        }
        let text = format!("{k:?} {cur:?} {prev:?}");
        assert!(!text.contains("165") && !text.contains("a5a5"), "{text}");
    }
}
