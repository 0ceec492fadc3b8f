//! Turning command-line credentials into engine configurations. Every error names the option
//! or file it comes from.

use crate::cli::{ClientDtls, RequestArgs, ServeArgs, ServerDtls};
use crate::psk::{self, demo_psk, make_psk, parse_hex};
use coaps_dtls::cert::{self, WebPkiVerifier};
use coaps_dtls::crypto::rustcrypto::EcdsaP256SigningKey;
use coaps_dtls::{CertifiedKey, ClientAuth, ClientConfig, DtlsVersion, PeerVerifier, Psk, ServerConfig, StaticPsks};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Reads a file; the error names it and what it was for.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))
}

/// Loads a PEM certificate chain and its P-256 private key.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = cert::load_certs_pem(&read_file(cert, "certificate file")?)
        .map_err(|e| format!("certificate file `{}`: {e}", cert.display()))?;
    let sk = cert::load_private_key_pem(&read_file(key, "private key file")?)
        .map_err(|e| format!("private key file `{}`: {e}", key.display()))?;
    let bytes: [u8; 32] = sk.to_bytes().into();
    let signing =
        EcdsaP256SigningKey::from_bytes(&bytes).map_err(|e| format!("private key file `{}`: {e}", key.display()))?;
    // A key that does not belong to the certificate would only fail later, in every handshake,
    // with a confusing error on the peer's side.
    if let Some(ee) = chain.first() {
        let point =
            cert::end_entity_p256_point(ee).map_err(|e| format!("certificate file `{}`: {e}", cert.display()))?;
        if point != signing.public_point() {
            return Err(format!(
                "private key file `{}` does not match the certificate in `{}`",
                key.display(),
                cert.display()
            ));
        }
    }
    // The build's default provider signs (aws-lc-rs with the `aws-lc` feature).
    let key = coaps_dtls::crypto::providers::default_provider()
        .ecdsa_p256_signing_key(&bytes)
        .map_err(|e| format!("private key file `{}`: {e}", key.display()))?;
    Ok(CertifiedKey { chain, key })
}

/// A verifier trusting the CA certificates in a PEM file.
pub fn verifier(ca: &Path) -> Result<PeerVerifier, String> {
    let roots =
        cert::load_certs_pem(&read_file(ca, "CA file")?).map_err(|e| format!("CA file `{}`: {e}", ca.display()))?;
    let v = WebPkiVerifier::new(&roots).map_err(|e| format!("CA file `{}`: {e}", ca.display()))?;
    Ok(PeerVerifier::WebPki(Arc::new(v)))
}

/// One key given as `-k` text or `--psk-hex`.
#[derive(Debug, Clone, Copy)]
pub enum KeyArg<'a> {
    /// `-k TEXT`.
    Text(&'a str),
    /// `--psk-hex HEX`.
    Hex(&'a str),
}

fn key_bytes(k: KeyArg<'_>) -> Result<Vec<u8>, String> {
    match k {
        KeyArg::Text(t) => Ok(t.as_bytes().to_vec()),
        KeyArg::Hex(h) => parse_hex(h).map_err(|e| format!("--psk-hex `{h}`: {e}")),
    }
}

/// What `serve` was configured with, for the startup message.
#[derive(Debug)]
pub struct ServerSetup {
    /// The engine configuration.
    pub config: ServerConfig,
    /// Whether the public demo PSK is in use.
    pub demo: bool,
    /// PSK identities accepted.
    pub identities: Vec<String>,
}

/// Builds the server configuration. `keys` are the `-k`/`--psk-hex` values in command-line
/// order; the n-th key belongs to the n-th `-u`.
pub fn server_setup(args: &ServeArgs, keys: &[KeyArg<'_>]) -> Result<ServerSetup, String> {
    if args.identity.len() != keys.len() {
        return Err(format!(
            "{} identities (-u) but {} keys (-k/--psk-hex): give each -u IDENTITY its -k KEY",
            args.identity.len(),
            keys.len()
        ));
    }
    let mut psks: Vec<Psk> = Vec::new();
    for (id, k) in args.identity.iter().zip(keys) {
        let p = make_psk(id.as_bytes(), &key_bytes(*k)?).map_err(|e| format!("-u `{id}`: {e}"))?;
        if psks.iter().any(|q| q.identity == p.identity) {
            return Err(format!("-u `{id}` is given twice"));
        }
        psks.push(p);
    }
    if let Some(file) = &args.psk_file {
        let text = String::from_utf8(read_file(file, "PSK file")?)
            .map_err(|_| format!("PSK file `{}` is not UTF-8 text", file.display()))?;
        let from_file = psk::parse_psk_file(&text).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| format!("  {}:{e}", file.display())).collect();
            format!("PSK file `{}` has {} bad line(s):\n{}", file.display(), errs.len(), lines.join("\n"))
        })?;
        for p in from_file {
            if psks.iter().any(|q| q.identity == p.identity) {
                return Err(format!(
                    "identity `{}` is both on the command line and in PSK file `{}`",
                    String::from_utf8_lossy(&p.identity),
                    file.display()
                ));
            }
            psks.push(p);
        }
    }
    let mut config = ServerConfig::default();
    if let (Some(c), Some(k)) = (&args.cert, &args.key) {
        config.cert = Some(certified_key(c, k)?);
    }
    if let Some(ca) = &args.client_ca {
        config.client_auth = ClientAuth::Required(verifier(ca)?);
    }
    let demo = psks.is_empty() && config.cert.is_none() && args.psk_file.is_none();
    if demo {
        psks.push(demo_psk());
    }
    if args.psk_file.is_some() && psks.is_empty() && config.cert.is_none() {
        return Err("the PSK file holds no keys and no certificate is given: no client could connect".into());
    }
    let identities = psks.iter().map(|p| String::from_utf8_lossy(&p.identity).into_owned()).collect();
    if !psks.is_empty() {
        config.psks = Some(Arc::new(StaticPsks(psks)));
    }
    if args.no_cookie {
        config.cookie = None;
    }
    (config.dtls12, config.dtls13) = match args.dtls {
        ServerDtls::V12 => (true, false),
        ServerDtls::V13 => (false, true),
        ServerDtls::Auto => (true, true),
    };
    let prefix = match &args.cid_prefix {
        Some(h) => crate::psk::parse_hex(h).map_err(|e| format!("--cid-prefix: {e}"))?,
        None => Vec::new(),
    };
    if prefix.len() > usize::from(args.cid) {
        return Err(format!(
            "--cid-prefix is {} bytes but --cid is {}: make --cid at least the prefix length",
            prefix.len(),
            args.cid
        ));
    }
    config.connection_id = Some(coaps_dtls::ConnectionIdConfig::new(usize::from(args.cid)).with_prefix(prefix));
    config.common.require_extended_master_secret = !args.allow_no_ems;
    config.max_connections = args.max_peers as usize;
    // Half-open handshakes never take more than half the table by default, so established
    // peers keep room whatever a flood of abandoned handshakes does.
    config.max_handshakes = match args.max_half_open {
        Some(n) => n as usize,
        None => config.max_handshakes.min((config.max_connections / 2).max(1)),
    };
    let q = &mut config.quotas;
    q.max_half_open_per_address = args.max_half_open_per_address as usize;
    q.max_half_open_per_prefix = args.max_half_open_per_prefix as usize;
    q.max_associations_per_address = args.max_peers_per_address as usize;
    q.max_associations_per_identity = args.max_peers_per_identity.map_or(usize::MAX, |n| n as usize);
    q.min_idle_to_evict = Duration::from_secs(args.min_idle_to_evict);
    q.half_open_lifetime = match args.half_open_lifetime {
        Some(s) => Duration::from_secs(s),
        // A long-delay link's client may be silent for minutes between retransmissions.
        None if args.link.params().kind == coaps_dtls::link::TimerKind::LongDelay => {
            args.link.params().handshake_budget
        }
        None => q.half_open_lifetime,
    };
    Ok(ServerSetup { config, demo, identities })
}

/// Builds the client configuration. Returns it and whether the demo PSK is in use.
pub fn client_config(args: &RequestArgs) -> Result<(ClientConfig, bool), String> {
    let mut config = ClientConfig {
        version: match args.dtls {
            ClientDtls::V12 => DtlsVersion::Dtls12,
            ClientDtls::V13 => DtlsVersion::Dtls13,
            ClientDtls::Auto => DtlsVersion::Auto,
        },
        ..ClientConfig::default()
    };
    let key = match (&args.psk_key, &args.psk_hex) {
        (Some(t), _) => Some(KeyArg::Text(t)),
        (None, Some(h)) => Some(KeyArg::Hex(h)),
        (None, None) => None,
    };
    if let (Some(id), Some(k)) = (&args.identity, key) {
        config.psk = Some(make_psk(id.as_bytes(), &key_bytes(k)?).map_err(|e| format!("-u `{id}`: {e}"))?);
    }
    if let Some(ca) = &args.ca {
        config.verifier = Some(verifier(ca)?);
    }
    if let (Some(c), Some(k)) = (&args.cert, &args.key) {
        config.client_cert = Some(certified_key(c, k)?);
    }
    config.connection_id = args.cid.map(|n| coaps_dtls::ConnectionIdConfig::new(usize::from(n)));
    config.common.require_extended_master_secret = !args.allow_no_ems;
    let demo = config.psk.is_none() && config.verifier.is_none();
    if demo {
        config.psk = Some(demo_psk());
    }
    Ok((config, demo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../coaps-dtls/tests/data").join(name)
    }

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["coaps", "serve"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Serve(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn demo_when_nothing_given() {
        let s = server_setup(&serve_args(&[]), &[]).unwrap();
        assert!(s.demo);
        assert_eq!(s.identities, ["coaps-demo"]);
        let key = s.config.psks.unwrap().key_for(b"coaps-demo").unwrap();
        assert_eq!(&key[..], b"coaps-demo-key");
        assert!(s.config.cookie.is_some());
        assert!(s.config.dtls12 && s.config.dtls13, "serve accepts both versions by default");
        let s = server_setup(&serve_args(&["--dtls", "1.3"]), &[]).unwrap();
        assert!(!s.config.dtls12 && s.config.dtls13);
        let s = server_setup(&serve_args(&["--dtls", "1.2"]), &[]).unwrap();
        assert!(s.config.dtls12 && !s.config.dtls13);
    }

    #[test]
    fn connection_id_settings() {
        let s = server_setup(&serve_args(&[]), &[]).unwrap();
        assert_eq!(s.config.connection_id, Some(coaps_dtls::ConnectionIdConfig::new(8)), "8-byte CIDs by default");
        let s = server_setup(&serve_args(&["--cid", "5", "--cid-prefix", "A0b1"]), &[]).unwrap();
        assert_eq!(s.config.connection_id, Some(coaps_dtls::ConnectionIdConfig::new(5).with_prefix(vec![0xa0, 0xb1])));
        let e = server_setup(&serve_args(&["--cid", "1", "--cid-prefix", "a0b1"]), &[]).unwrap_err();
        assert!(e.contains("--cid-prefix is 2 bytes but --cid is 1"), "{e}");
        let e = server_setup(&serve_args(&["--cid-prefix", "abc"]), &[]).unwrap_err();
        assert!(e.starts_with("--cid-prefix: odd number of hex digits"), "{e}");
    }

    #[test]
    fn quota_flags_reach_the_server_configuration() {
        let c = server_setup(&serve_args(&[]), &[]).unwrap().config;
        let d = coaps_dtls::QuotaConfig::default();
        assert_eq!((c.max_connections, c.max_handshakes), (1000, 500), "half of --max-peers half-open");
        assert_eq!(c.quotas, d, "the flags' defaults are the library's");
        let c = server_setup(&serve_args(&["--link", "nb-iot"]), &[]).unwrap().config;
        assert_eq!(c.quotas.half_open_lifetime, coaps_dtls::LinkProfile::NbIot.params().handshake_budget);
        let a = serve_args(&[
            "--max-peers",
            "50",
            "--max-half-open",
            "7",
            "--max-half-open-per-address",
            "2",
            "--max-half-open-per-prefix",
            "3",
            "--half-open-lifetime",
            "4",
            "--max-peers-per-address",
            "5",
            "--max-peers-per-identity",
            "6",
            "--min-idle-to-evict",
            "8",
        ]);
        let c = server_setup(&a, &[]).unwrap().config;
        assert_eq!((c.max_connections, c.max_handshakes), (50, 7));
        let q = c.quotas;
        assert_eq!((q.max_half_open_per_address, q.max_half_open_per_prefix), (2, 3));
        assert_eq!((q.max_associations_per_address, q.max_associations_per_identity), (5, 6));
        assert_eq!((q.half_open_lifetime.as_secs(), q.min_idle_to_evict.as_secs()), (4, 8));
    }

    #[test]
    fn pairs_and_counts() {
        let a = serve_args(&["-u", "a", "-k", "ka", "-u", "b", "--psk-hex", "0102"]);
        let s = server_setup(&a, &[KeyArg::Text("ka"), KeyArg::Hex("0102")]).unwrap();
        assert!(!s.demo);
        let store = s.config.psks.unwrap();
        assert_eq!(&store.key_for(b"a").unwrap()[..], b"ka");
        assert_eq!(&store.key_for(b"b").unwrap()[..], &[1, 2]);
        assert!(store.key_for(b"coaps-demo").is_none(), "no demo key once credentials are given");

        let e = server_setup(&serve_args(&["-u", "a"]), &[]).unwrap_err();
        assert!(e.contains("1 identities (-u) but 0 keys"), "{e}");
        let e = server_setup(
            &serve_args(&["-u", "a", "-k", "x", "-u", "a", "-k", "y"]),
            &[KeyArg::Text("x"), KeyArg::Text("y")],
        )
        .unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = server_setup(&serve_args(&["-u", "a", "--psk-hex", "zz"]), &[KeyArg::Hex("zz")]).unwrap_err();
        assert!(e.contains("--psk-hex `zz`"), "{e}");
    }

    #[test]
    fn psk_file_errors_name_file_and_lines() {
        let dir = std::env::temp_dir().join(format!("coaps-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("psk.txt");
        std::fs::write(&f, "good:key\nbad\n:x\n").unwrap();
        let e = server_setup(&serve_args(&["--psk-file", f.to_str().unwrap()]), &[]).unwrap_err();
        assert!(
            e.contains("2 bad line(s)") && e.contains(":line 2: expected") && e.contains(":line 3: empty identity"),
            "{e}"
        );
        std::fs::write(&f, "good:key\n").unwrap();
        let s = server_setup(&serve_args(&["--psk-file", f.to_str().unwrap()]), &[]).unwrap();
        assert!(!s.demo);
        assert_eq!(s.identities, ["good"]);
        let missing = dir.join("nope.txt");
        let e = server_setup(&serve_args(&["--psk-file", missing.to_str().unwrap()]), &[]).unwrap_err();
        assert!(e.starts_with("cannot read PSK file") && e.contains("nope.txt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn certificates_load_and_mismatches_are_caught() {
        certified_key(&data("server.crt"), &data("server.key")).unwrap();
        let e = certified_key(&data("server.crt"), &data("client.key")).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = certified_key(&data("missing.crt"), &data("server.key")).unwrap_err();
        assert!(e.contains("cannot read certificate file") && e.contains("missing.crt"), "{e}");
        let e = certified_key(&data("server.key"), &data("server.key")).unwrap_err();
        assert!(e.contains("certificate file"), "{e}");
        verifier(&data("ca.crt")).unwrap();
    }
}
