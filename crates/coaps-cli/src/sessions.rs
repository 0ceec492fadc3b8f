//! Session resumption for the commands: the server's session store (`serve --redis`,
//! `--session-capacity`, `--session-lifetime`, `--tickets`) and the client's session file
//! (`get --session-file`).

use crate::cli::{ServeArgs, TicketMode};
use coaps_dtls::ServerConfig;
use coaps_tower::resumption::{AsyncSessionStore, MokaConfig, MokaStore, TicketKeySync};
use coaps_tower::session_cache::{SessionCache, SessionFileError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The server's session store from the command line, and the lifetimes set on `config`.
/// `Err` is a usage error (exit 2).
pub fn server_store(
    args: &ServeArgs,
    config: &mut ServerConfig,
) -> Result<(Arc<dyn AsyncSessionStore>, String), String> {
    // Sessions live in the resumption layer's store only.
    config.session_store = None;
    let mut max_lifetime = coaps_dtls::DEFAULT_SESSION_LIFETIME;
    if let Some(secs) = args.session_lifetime {
        let d = Duration::from_secs(secs);
        config.session_lifetime = d;
        config.ticket_lifetime = d.min(coaps_dtls::MAX_TICKET_LIFETIME);
        max_lifetime = d;
    }
    let (store, mut mode): (Arc<dyn AsyncSessionStore>, String) = match &args.redis {
        None => {
            let store = MokaStore::new(MokaConfig {
                max_entries: args.session_capacity,
                max_lifetime,
                ..MokaConfig::default()
            });
            (Arc::new(store), format!("sessions in memory (up to {})", args.session_capacity))
        }
        Some(url) => redis_store(url, args.session_key_file.as_deref(), max_lifetime)?,
    };
    if args.tickets == TicketMode::Stateless {
        // A key must outlive every ticket it seals: it seals for one period and opens for
        // the next, so a period as long as the longest lifetime does.
        let rotate_every = config.session_lifetime.max(config.ticket_lifetime);
        let keys = if args.redis.is_some() {
            // Every node reads the same per-period keys from Redis.
            let sync = TicketKeySync::new(store.clone(), rotate_every);
            let keys = sync.keys();
            sync.spawn((rotate_every / 10).min(Duration::from_secs(10)));
            mode.push_str(", stateless tickets (keys shared through Redis)");
            keys
        } else {
            mode.push_str(", stateless tickets");
            coaps_dtls::TicketKeys::new(rotate_every, SystemTime::now())
        };
        config.tickets = coaps_dtls::TicketMode::Stateless(keys);
    }
    Ok((store, mode))
}

#[cfg(feature = "redis")]
fn redis_store(
    url: &str,
    key_file: Option<&Path>,
    max_lifetime: Duration,
) -> Result<(Arc<dyn AsyncSessionStore>, String), String> {
    use coaps_tower::resumption::{RedisConfig, RedisStore};
    let key_file = key_file.ok_or("--redis needs --session-key-file FILE (32 random bytes as 64 hex digits)")?;
    let key = read_key(key_file)?;
    let mut config = RedisConfig::new(url, key);
    config.max_lifetime = max_lifetime;
    let store = RedisStore::connect(config).map_err(|e| format!("--redis `{url}`: {e}"))?;
    Ok((Arc::new(store), "sessions in Redis".into()))
}

#[cfg(not(feature = "redis"))]
fn redis_store(
    _url: &str,
    _key_file: Option<&Path>,
    _max_lifetime: Duration,
) -> Result<(Arc<dyn AsyncSessionStore>, String), String> {
    Err("--redis: this coaps was built without the `redis` feature (rebuild with --features redis)".into())
}

/// Reads the 32-byte sealing key: 64 hex digits (surrounding whitespace ignored).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn read_key(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--session-key-file {}: {e}", path.display()))?;
    let hex = text.trim();
    let bad = || {
        format!(
            "--session-key-file {}: expected 64 hex digits (32 bytes; make one with `openssl rand -hex 32`)",
            path.display()
        )
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// What loading a session file gave for one server.
#[derive(Debug)]
pub struct Loaded {
    /// The cache to connect with (empty when the file could not be used).
    pub cache: SessionCache,
    /// Whether it holds an unexpired session for the server (one will be offered).
    pub offers: bool,
}

/// Loads `path` for `host`:`port`. A missing file gives an empty cache silently; an unreadable,
/// corrupted, foreign or expired one prints a warning (and the client does a full handshake).
pub fn load_session_file(path: &Path, host: &str, port: u16) -> Loaded {
    let empty = || Loaded { cache: SessionCache::default(), offers: false };
    let bytes = match std::fs::read(path) {
        Ok(b) => coaps_dtls::Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return empty(),
        Err(e) => {
            eprintln!("warning: cannot read session file {}: {e}; doing a full handshake", path.display());
            return empty();
        }
    };
    let now = Instant::now();
    let cache = match SessionCache::load(&bytes, now, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            let hint = match e {
                SessionFileError::Foreign => " (not written by coaps --session-file)",
                _ => "",
            };
            eprintln!(
                "warning: ignoring session file {}: {e}{hint}; doing a full handshake (the file is rewritten after it)",
                path.display()
            );
            return empty();
        }
    };
    let sessions = cache.sessions(host, port);
    let offers = sessions.iter().any(|s| !s.is_expired(now));
    if sessions.is_empty() && !cache.is_empty() {
        eprintln!(
            "warning: session file {} holds no session for {host}:{port} (saved for another server); doing a full handshake",
            path.display()
        );
    } else if !sessions.is_empty() && !offers {
        eprintln!(
            "warning: the session saved in {} for {host}:{port} has expired; doing a full handshake",
            path.display()
        );
    }
    Loaded { cache, offers }
}

/// Writes `cache` to `path` atomically (a temporary file in the same directory, then a
/// rename), readable by the owner only (mode 0600).
pub fn save_session_file(path: &Path, cache: &SessionCache) -> std::io::Result<()> {
    let bytes = cache.save(Instant::now(), SystemTime::now());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let r = write();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_hex_digits() {
        let dir = std::env::temp_dir().join(format!("coaps-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k");
        std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(read_key(&p).unwrap(), [0xab; 32]);
        for bad in ["ab".repeat(31), "zz".repeat(32), String::new()] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_key(&p).unwrap_err().contains("64 hex digits"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_foreign_files_give_an_empty_cache() {
        let dir = std::env::temp_dir().join(format!("coaps-sess-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = load_session_file(&dir.join("none"), "localhost", 5684);
        assert!(missing.cache.is_empty() && !missing.offers);
        std::fs::write(dir.join("foreign"), b"hello").unwrap();
        let foreign = load_session_file(&dir.join("foreign"), "localhost", 5684);
        assert!(foreign.cache.is_empty() && !foreign.offers);
        // An empty cache saves and loads back, mode 0600.
        let p = dir.join("saved");
        save_session_file(&p, &SessionCache::default()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(load_session_file(&p, "localhost", 5684).cache.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
