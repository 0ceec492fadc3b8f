//! Tests for credentials and certificate verification.
//!
//! Certificates are generated at test time with `openssl`, using the recipe in
//! `scripts/gen-certs.sh` (the interop peers' recipe). Without `openssl` the
//! PKI tests print a reason and pass, unless `COAPS_REQUIRE_PEERS=1` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::sec1::ToSec1Point;

use super::*;

/// "Now" for validity checks, a little ahead of the wall clock: certificates issued during the
/// test have notBefore at the second they were made, which can be after a `now` taken earlier
/// when the machine is loaded (seen as a flaky NotValidYet).
fn checked_at() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

const DAY: Duration = Duration::from_secs(86_400);

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// A freshly generated CA, server and client (see `gen-certs.sh`) in a temporary directory,
/// removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

impl Pki {
    /// Generates a PKI, or returns `None` (after saying why) when `openssl` is unavailable.
    fn generate() -> Option<Self> {
        if !openssl_available() {
            if std::env::var("COAPS_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("openssl is required (COAPS_REQUIRE_PEERS=1) but was not found");
            }
            eprintln!("skipping certificate test: `openssl` not found in PATH");
            return None;
        }
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "coaps-cert-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let pki = Pki { dir };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gen-certs.sh");
        let out = Command::new("bash").arg(&script).arg(&pki.dir).output().expect("run gen-certs.sh");
        assert!(out.status.success(), "gen-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(pki)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Runs `openssl` with `args` inside the PKI directory.
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn verifier(&self) -> WebPkiVerifier {
        WebPkiVerifier::new(&[self.read("ca.crt.der")]).expect("CA is a valid trust anchor")
    }

    fn chain(&self, who: &str) -> Vec<Vec<u8>> {
        vec![self.read(&format!("{who}.crt.der"))]
    }

    fn public_point(&self, who: &str) -> [u8; 65] {
        let key = load_private_key_pem(&self.read(&format!("{who}.key"))).expect("load key");
        key.public_key().to_sec1_point(false).as_bytes().try_into().expect("uncompressed point is 65 bytes")
    }

    /// Issues a DER certificate for `csr` from the test CA with the given validity, digest and
    /// extension file.
    fn issue(&self, csr: &str, days: &str, digest: &str, ext: &str, out: &str) {
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            days,
            digest,
            "-extfile",
            ext,
            "-outform",
            "DER",
            "-out",
            out,
        ]);
    }
}

macro_rules! pki_or_skip {
    () => {
        match Pki::generate() {
            Some(pki) => pki,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// X.509 path validation
// ---------------------------------------------------------------------------------------------

#[test]
fn server_chain_verifies_for_dns_name_and_ip_literal() {
    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    let expected = pki.public_point("server");
    let now = checked_at();

    assert_eq!(verifier.verify_server(&pki.chain("server"), "localhost", now), Ok(expected));
    assert_eq!(verifier.verify_server(&pki.chain("server"), "127.0.0.1", now), Ok(expected));

    // A peer may append the root itself; path building must still succeed.
    let with_root = vec![pki.read("server.crt.der"), pki.read("ca.crt.der")];
    assert_eq!(verifier.verify_server(&with_root, "localhost", now), Ok(expected));

    // The key extracted without validation is the same.
    assert_eq!(end_entity_p256_point(&pki.read("server.crt.der")), Ok(expected));
}

#[test]
fn certificate_for_another_name_is_refused() {
    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    let now = checked_at();
    for name in ["example.com", "127.0.0.2", "::2", "server"] {
        let err = verifier.verify_server(&pki.chain("server"), name, now).expect_err(name);
        assert_eq!(err, CertificateError::NotValidForName, "{name}");
        assert_eq!(err.alert(), AlertDescription::BadCertificate);
    }
    let err = verifier.verify_server(&pki.chain("server"), "not a host name", now).unwrap_err();
    assert!(matches!(err, CertificateError::Other(ref s) if s.contains("not a host name")), "{err:?}");
}

#[test]
fn unrelated_ca_is_refused() {
    let pki = pki_or_skip!();
    let now = checked_at();

    // A CA with a different name: no candidate issuer at all.
    pki.openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "other-ca.key"]);
    pki.openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "other-ca.key",
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/CN=Other CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-outform",
        "DER",
        "-out",
        "other-ca.crt.der",
    ]);
    let other = WebPkiVerifier::new(&[pki.read("other-ca.crt.der")]).unwrap();
    let err = other.verify_server(&pki.chain("server"), "localhost", now).unwrap_err();
    assert_eq!(err, CertificateError::UnknownIssuer);
    assert_eq!(err.alert(), AlertDescription::UnknownCa);
    assert_eq!(other.verify_client(&pki.chain("client"), now), Err(CertificateError::UnknownIssuer));

    // A second gen-certs run: its CA has the *same* name ("Test P256 CA") but another key, so
    // webpki finds a name match whose signature does not verify, which it reports as a bad
    // signature (as rustls does). Either way the chain is refused.
    let second = pki_or_skip!();
    assert_eq!(
        second.verifier().verify_server(&pki.chain("server"), "localhost", now),
        Err(CertificateError::BadSignature)
    );
    assert_eq!(second.verifier().verify_client(&pki.chain("client"), now), Err(CertificateError::BadSignature));
}

#[test]
fn extended_key_usage_is_enforced() {
    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    let now = checked_at();

    // A clientAuth-only certificate presented by a server.
    let err = verifier.verify_server(&pki.chain("client"), "localhost", now).unwrap_err();
    assert_eq!(err, CertificateError::InvalidPurpose);
    assert_eq!(err.alert(), AlertDescription::UnsupportedCertificate);

    // And the other way round.
    assert_eq!(verifier.verify_client(&pki.chain("server"), now), Err(CertificateError::InvalidPurpose));
    assert_eq!(verifier.verify_client(&pki.chain("client"), now), Ok(pki.public_point("client")));

    // The CA certificate is not an end entity.
    let err = verifier.verify_client(&[pki.read("ca.crt.der")], now).unwrap_err();
    assert_eq!(err, CertificateError::InvalidPurpose);
}

#[test]
fn validity_period_is_enforced() {
    let pki = pki_or_skip!();
    pki.issue("server.csr", "1", "-sha256", "server.ext", "short.crt.der");
    let verifier = pki.verifier();
    let now = checked_at();
    let short = vec![pki.read("short.crt.der")];

    assert_eq!(verifier.verify_server(&short, "localhost", now), Ok(pki.public_point("server")));
    // The end entity expired, the CA (10 years) did not.
    let err = verifier.verify_server(&short, "localhost", now + 30 * DAY).unwrap_err();
    assert_eq!(err, CertificateError::Expired);
    assert_eq!(err.alert(), AlertDescription::CertificateExpired);
    // Far future: everything expired.
    assert_eq!(
        verifier.verify_server(&pki.chain("server"), "localhost", now + 20 * 365 * DAY),
        Err(CertificateError::Expired)
    );
    // Far past (2001).
    let err = verifier
        .verify_server(&pki.chain("server"), "localhost", UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap_err();
    assert_eq!(err, CertificateError::NotValidYet);
    assert_eq!(err.alert(), AlertDescription::CertificateExpired);
}

#[test]
fn tampered_signature_is_refused() {
    let pki = pki_or_skip!();
    let mut der = pki.read("server.crt.der");
    // The certificate ends with the signature's `s` INTEGER.
    *der.last_mut().unwrap() ^= 0x01;
    let err = pki.verifier().verify_server(&[der.clone()], "localhost", checked_at()).unwrap_err();
    assert_eq!(err, CertificateError::BadSignature);
    assert_eq!(err.alert(), AlertDescription::BadCertificate);

    // Tampering with the signed part (here, inside the public key) too.
    let point = pki.public_point("server");
    let mut der = pki.read("server.crt.der");
    let pos = der.windows(65).position(|w| w == point).expect("point in cert");
    der[pos + 64] ^= 0x01;
    assert!(pki.verifier().verify_server(&[der], "localhost", checked_at()).is_err());
}

/// A verifier remembers the issuer signatures it verified, and a remembered signature replaces
/// only the ECDSA check: names, validity, key usage and other signatures are still checked.
#[test]
fn verified_signatures_are_remembered_and_other_checks_still_run() {
    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    let now = checked_at();
    let expected = pki.public_point("server");
    let cached = |v: &WebPkiVerifier| v.signatures.lock().len();
    assert_eq!(cached(&verifier), 0);
    assert_eq!(verifier.verify_server(&pki.chain("server"), "localhost", now), Ok(expected));
    assert_eq!(cached(&verifier), 1);
    assert_eq!(verifier.verify_server(&pki.chain("server"), "127.0.0.1", now), Ok(expected));
    assert_eq!(cached(&verifier), 1, "a hit stores nothing new");

    assert_eq!(
        verifier.verify_server(&pki.chain("server"), "example.com", now),
        Err(CertificateError::NotValidForName)
    );
    assert_eq!(
        verifier.verify_server(&pki.chain("server"), "localhost", now + 20 * 365 * DAY),
        Err(CertificateError::Expired)
    );
    assert!(verifier.verify_client(&pki.chain("server"), now).is_err(), "serverAuth-only certificate");

    // Another signature by the same CA over the same certificate body is not a hit.
    let mut der = pki.read("server.crt.der");
    *der.last_mut().unwrap() ^= 0x01;
    assert_eq!(verifier.verify_server(&[der], "localhost", now), Err(CertificateError::BadSignature));
    // Neither is the same signature over a changed body.
    let mut der = pki.read("server.crt.der");
    let pos = der.windows(65).position(|w| w == expected).expect("point in cert");
    der[pos + 64] ^= 0x01;
    assert!(verifier.verify_server(&[der], "localhost", now).is_err());
    assert_eq!(cached(&verifier), 1, "failures are not stored");

    assert_eq!(verifier.verify_client(&pki.chain("client"), now), Ok(pki.public_point("client")));
    assert_eq!(cached(&verifier), 2);
}

/// The cache holds at most `SIGNATURE_CACHE_ENTRIES`, dropping the oldest, and its key
/// separates the parts so that moving bytes between them changes the entry.
#[test]
fn signature_cache_is_bounded_and_unambiguous() {
    let cache = SignatureCache::default();
    for i in 0..SIGNATURE_CACHE_ENTRIES + 3 {
        cache.insert(SignatureCache::entry(&[4; 65], &[i as u8; 32], &[0x30; 70]));
    }
    assert_eq!(cache.lock().len(), SIGNATURE_CACHE_ENTRIES);
    assert!(!cache.contains(&SignatureCache::entry(&[4; 65], &[0; 32], &[0x30; 70])), "oldest dropped");
    assert!(cache.contains(&SignatureCache::entry(&[4; 65], &[3; 32], &[0x30; 70])));
    assert_ne!(SignatureCache::entry(&[1, 2], &[3], &[4]), SignatureCache::entry(&[1], &[2, 3], &[4]));
}

#[test]
fn sha384_signed_certificate_verifies() {
    let pki = pki_or_skip!();
    pki.issue("server.csr", "30", "-sha384", "server.ext", "s384.crt.der");
    assert_eq!(
        pki.verifier().verify_server(&[pki.read("s384.crt.der")], "localhost", checked_at()),
        Ok(pki.public_point("server"))
    );
}

#[test]
fn non_p256_keys_and_algorithms_are_unsupported() {
    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    let now = checked_at();

    // A P-384 end-entity key, validly issued by the P-256 CA.
    pki.openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "p384.key"]);
    pki.openssl(&["req", "-new", "-key", "p384.key", "-subj", "/CN=p384", "-out", "p384.csr"]);
    pki.issue("p384.csr", "30", "-sha256", "server.ext", "p384.crt.der");
    let err = verifier.verify_server(&[pki.read("p384.crt.der")], "localhost", now).unwrap_err();
    assert_eq!(err, CertificateError::UnsupportedKey);
    assert_eq!(err.alert(), AlertDescription::UnsupportedCertificate);

    // A P-256 end entity signed by an RSA CA.
    pki.openssl(&["genrsa", "-out", "rsa-ca.key", "1024"]);
    pki.openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "rsa-ca.key",
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/CN=RSA CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-outform",
        "DER",
        "-out",
        "rsa-ca.crt.der",
    ]);
    pki.openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "rsa-ca.crt.der",
        "-CAform",
        "DER",
        "-CAkey",
        "rsa-ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "server.ext",
        "-outform",
        "DER",
        "-out",
        "rsa-signed.crt.der",
    ]);
    let rsa_verifier = WebPkiVerifier::new(&[pki.read("rsa-ca.crt.der")]).unwrap();
    let err = rsa_verifier.verify_server(&[pki.read("rsa-signed.crt.der")], "localhost", now).unwrap_err();
    assert_eq!(err, CertificateError::UnsupportedSignatureAlgorithm);
    assert_eq!(err.alert(), AlertDescription::UnsupportedCertificate);
}

#[test]
fn verifier_construction_and_degenerate_chains() {
    assert_eq!(WebPkiVerifier::new(&[]).unwrap_err(), CredentialError::NoTrustAnchors);
    let err = WebPkiVerifier::new(&[vec![0x30, 0x03, 0x02, 0x01, 0x00]]).unwrap_err();
    assert!(matches!(err, CredentialError::BadTrustAnchor { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("trust anchor #0"));

    let pki = pki_or_skip!();
    let verifier = pki.verifier();
    assert!(format!("{verifier:?}").contains("trust_anchors: 1"));
    let now = checked_at();
    assert!(matches!(verifier.verify_server(&[], "localhost", now), Err(CertificateError::Other(_))));
    assert_eq!(verifier.verify_client(&[b"not a certificate".to_vec()], now), Err(CertificateError::BadEncoding));
    let mut truncated = pki.read("server.crt.der");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(verifier.verify_server(&[truncated.clone()], "localhost", now), Err(CertificateError::BadEncoding));
    assert_eq!(end_entity_p256_point(&truncated), Err(CertificateError::BadEncoding));
    assert_eq!(subject_summary(&truncated), None);

    // from_pem over the PEM CA behaves like new over the DER CA.
    let from_pem = WebPkiVerifier::from_pem(&pki.read("ca.crt")).unwrap();
    assert_eq!(from_pem.verify_server(&pki.chain("server"), "localhost", now), Ok(pki.public_point("server")));
}

#[test]
fn subject_summary_reports_common_name() {
    let pki = pki_or_skip!();
    assert_eq!(subject_summary(&pki.read("server.crt.der")).as_deref(), Some("server"));
    assert_eq!(subject_summary(&pki.read("client.crt.der")).as_deref(), Some("client"));
    assert_eq!(subject_summary(&pki.read("ca.crt.der")).as_deref(), Some("Test P256 CA"));

    // Without a CN, the first DNS subjectAltName is used.
    pki.openssl(&["req", "-new", "-key", "server.key", "-subj", "/O=No CN", "-out", "nocn.csr"]);
    pki.issue("nocn.csr", "30", "-sha256", "server.ext", "nocn.crt.der");
    assert_eq!(subject_summary(&pki.read("nocn.crt.der")).as_deref(), Some("localhost"));
    assert_eq!(subject_summary(b"garbage"), None);
}

// ---------------------------------------------------------------------------------------------
// PEM loading
// ---------------------------------------------------------------------------------------------

#[test]
fn certificates_load_in_order() {
    let pki = pki_or_skip!();
    let server = pki.read("server.crt.der");
    let ca = pki.read("ca.crt.der");
    assert_eq!(load_certs_pem(&pki.read("server.crt")).unwrap(), vec![server.clone()]);
    // The combined file holds a certificate and a key; only the certificate is returned.
    assert_eq!(load_certs_pem(&pki.read("server.pem")).unwrap(), vec![server.clone()]);
    let mut bundle = pki.read("server.crt");
    bundle.extend_from_slice(&pki.read("ca.crt"));
    assert_eq!(load_certs_pem(&bundle).unwrap(), vec![server, ca]);

    let err = load_certs_pem(&pki.read("server.key")).unwrap_err();
    assert_eq!(err, CredentialError::NoCertificate { found: vec!["PRIVATE KEY".into()] });
    assert!(err.to_string().starts_with("no PEM CERTIFICATE block found in input"), "{err}");
}

#[test]
fn pkcs8_and_sec1_keys_load() {
    let pki = pki_or_skip!();
    let pkcs8 = load_private_key_pem(&pki.read("server.key")).unwrap();
    let sec1 = load_private_key_pem(&pki.read("server.key.sec1")).unwrap();
    let combined = load_private_key_pem(&pki.read("server.pem")).unwrap();
    assert_eq!(pkcs8.to_bytes(), sec1.to_bytes());
    assert_eq!(pkcs8.to_bytes(), combined.to_bytes());
    // The key belongs to the certificate.
    assert_eq!(
        end_entity_p256_point(&pki.read("server.crt.der")).unwrap().as_slice(),
        pkcs8.public_key().to_sec1_point(false).as_bytes()
    );
    // `openssl ecparam -genkey` without `-noout` prepends an EC PARAMETERS block.
    pki.openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-out", "withparams.key"]);
    load_private_key_pem(&pki.read("withparams.key")).unwrap();
}

#[test]
fn unusable_keys_give_clear_errors() {
    let pki = pki_or_skip!();

    // P-384, both containers.
    pki.openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "p384.sec1"]);
    pki.openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "p384.sec1", "-out", "p384.p8"]);
    for file in ["p384.sec1", "p384.p8"] {
        let err = load_private_key_pem(&pki.read(file)).unwrap_err();
        assert_eq!(err, CredentialError::NotP256 { found: "P-384".into() }, "{file}");
        assert!(err.to_string().starts_with("key is not a P-256 EC key (found P-384)"), "{err}");
    }

    // RSA, PKCS#8 and traditional.
    pki.openssl(&["genrsa", "-out", "rsa.p8", "1024"]);
    pki.openssl(&["genrsa", "-traditional", "-out", "rsa.trad", "1024"]);
    let err = load_private_key_pem(&pki.read("rsa.p8")).unwrap_err();
    assert_eq!(err, CredentialError::NotP256 { found: "RSA".into() });
    let err = load_private_key_pem(&pki.read("rsa.trad")).unwrap_err();
    assert!(matches!(err, CredentialError::NotP256 { ref found } if found.starts_with("RSA")));

    // Encrypted.
    pki.openssl(&["pkcs8", "-topk8", "-in", "server.key.sec1", "-passout", "pass:secret", "-out", "enc.key"]);
    let err = load_private_key_pem(&pki.read("enc.key")).unwrap_err();
    assert_eq!(err, CredentialError::EncryptedPrivateKey);
    assert!(err.to_string().contains("encrypted"));

    // Two keys.
    let mut two = pki.read("server.key");
    two.extend_from_slice(&pki.read("client.key"));
    assert_eq!(load_private_key_pem(&two).unwrap_err(), CredentialError::MultiplePrivateKeys(2));

    // A certificate is not a key.
    let err = load_private_key_pem(&pki.read("server.crt")).unwrap_err();
    assert_eq!(err, CredentialError::NoPrivateKey { found: vec!["CERTIFICATE".into()] });
}

#[test]
fn garbage_pem_gives_clear_errors() {
    let err = load_private_key_pem(b"hello world").unwrap_err();
    assert_eq!(err, CredentialError::NoPrivateKey { found: vec![] });
    assert!(err.to_string().contains("no PEM PRIVATE KEY or EC PRIVATE KEY block found"));
    assert_eq!(load_certs_pem(b"").unwrap_err(), CredentialError::NoCertificate { found: vec![] });

    let bad_b64 = b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    assert!(matches!(load_private_key_pem(bad_b64), Err(CredentialError::Pem(_))));
    let unterminated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
    assert!(matches!(load_certs_pem(unterminated), Err(CredentialError::Pem(_))));

    // Valid base64, invalid DER.
    let junk = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(load_private_key_pem(junk), Err(CredentialError::MalformedKey(_))));
    let junk = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(load_private_key_pem(junk), Err(CredentialError::MalformedKey(_))));
}

// ---------------------------------------------------------------------------------------------
// Raw public keys
// ---------------------------------------------------------------------------------------------

#[test]
fn spki_builder_matches_openssl_and_pins_work() {
    let pki = pki_or_skip!();
    pki.openssl(&["pkey", "-in", "server.key", "-pubout", "-outform", "DER", "-out", "server.spki"]);
    pki.openssl(&["pkey", "-in", "client.key", "-pubout", "-outform", "DER", "-out", "client.spki"]);
    let server_spki = pki.read("server.spki");
    let client_spki = pki.read("client.spki");
    let point = pki.public_point("server");

    assert_eq!(p256_spki_der(&point), server_spki);
    assert_eq!(spki_p256_point(&server_spki), Ok(point));

    let pins = PinnedKeys::new(vec![server_spki.clone()]);
    assert_eq!(pins.len(), 1);
    assert_eq!(pins.verify(&server_spki), Ok(point));
    let err = pins.verify(&client_spki).unwrap_err();
    assert_eq!(err, CertificateError::NotPinned);
    assert_eq!(err.alert(), AlertDescription::CertificateUnknown);
    // A prefix of a pinned key is not the pinned key.
    assert_eq!(pins.verify(&server_spki[..server_spki.len() - 1]), Err(CertificateError::NotPinned));
    assert_eq!(PinnedKeys::new(vec![]).verify(&server_spki), Err(CertificateError::NotPinned));
    assert_eq!(format!("{pins:?}"), "PinnedKeys { keys: 1 }");
}

#[test]
fn spki_parsing_refuses_other_keys() {
    let pki = pki_or_skip!();
    pki.openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "p384.key"]);
    pki.openssl(&["pkey", "-in", "p384.key", "-pubout", "-outform", "DER", "-out", "p384.spki"]);
    pki.openssl(&["genrsa", "-out", "rsa.key", "1024"]);
    pki.openssl(&["pkey", "-in", "rsa.key", "-pubout", "-outform", "DER", "-out", "rsa.spki"]);
    pki.openssl(&[
        "ec",
        "-in",
        "server.key",
        "-pubout",
        "-conv_form",
        "compressed",
        "-outform",
        "DER",
        "-out",
        "compressed.spki",
    ]);
    for file in ["p384.spki", "rsa.spki", "compressed.spki"] {
        assert_eq!(spki_p256_point(&pki.read(file)), Err(CertificateError::UnsupportedKey), "{file}");
    }
    // Pinned, but not a key we can use.
    let rsa = pki.read("rsa.spki");
    assert_eq!(PinnedKeys::new(vec![rsa.clone()]).verify(&rsa), Err(CertificateError::UnsupportedKey));
}

#[test]
fn spki_parsing_is_strict_without_openssl() {
    let key = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
    let point: [u8; 65] = key.public_key().to_sec1_point(false).as_bytes().try_into().unwrap();
    let spki = p256_spki_der(&point);
    assert_eq!(spki.len(), 91);
    assert_eq!(spki_p256_point(&spki), Ok(point));
    // Cross-check the fixed prefix against the pkcs8/spki encoder.
    use p256::pkcs8::EncodePublicKey;
    assert_eq!(key.public_key().to_public_key_der().unwrap().as_bytes(), spki.as_slice());

    let mut trailing = spki.clone();
    trailing.push(0);
    assert_eq!(spki_p256_point(&trailing), Err(CertificateError::BadEncoding));
    for len in 0..spki.len() {
        assert_eq!(spki_p256_point(&spki[..len]), Err(CertificateError::BadEncoding), "{len}");
    }
    // A point that is not on the curve.
    let mut off_curve = point;
    off_curve[64] ^= 1;
    assert_eq!(spki_p256_point(&p256_spki_der(&off_curve)), Err(CertificateError::UnsupportedKey));
    // Wrong curve OID (prime256v1 → prime239v1, 1.2.840.10045.3.1.4).
    let mut wrong_curve = spki.clone();
    assert_eq!(wrong_curve[22], 0x07);
    wrong_curve[22] = 0x04;
    assert_eq!(spki_p256_point(&wrong_curve), Err(CertificateError::UnsupportedKey));
    // Non-zero unused bits in the BIT STRING.
    let mut unused_bits = spki;
    unused_bits[25] = 1;
    assert!(spki_p256_point(&unused_bits).is_err());
}

// ---------------------------------------------------------------------------------------------
// Signature algorithms and error mapping
// ---------------------------------------------------------------------------------------------

#[test]
fn ecdsa_algorithms_verify_p256_signatures() {
    use sha2::Digest;

    let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = sk.verifying_key().to_sec1_point(false);
    let msg = b"to be signed";

    let sig: p256::ecdsa::Signature = sk.sign(msg);
    let der = sig.to_der();
    assert!(ECDSA_P256_SHA256.verify_signature(point.as_bytes(), msg, der.as_bytes()).is_ok());
    assert!(ECDSA_P256_SHA256.verify_signature(point.as_bytes(), b"other", der.as_bytes()).is_err());
    // The same signature under SHA-384 does not verify.
    assert!(ECDSA_P256_SHA384.verify_signature(point.as_bytes(), msg, der.as_bytes()).is_err());
    // Raw r||s is not the X.509 encoding.
    assert!(ECDSA_P256_SHA256.verify_signature(point.as_bytes(), msg, &sig.to_bytes()).is_err());
    // Compressed keys are refused.
    let compressed = sk.verifying_key().to_sec1_point(true);
    assert!(ECDSA_P256_SHA256.verify_signature(compressed.as_bytes(), msg, der.as_bytes()).is_err());

    let sig384: p256::ecdsa::Signature = sk.sign_prehash(&sha2::Sha384::digest(msg)).unwrap();
    let der384 = sig384.to_der();
    assert!(ECDSA_P256_SHA384.verify_signature(point.as_bytes(), msg, der384.as_bytes()).is_ok());
    assert!(ECDSA_P256_SHA256.verify_signature(point.as_bytes(), msg, der384.as_bytes()).is_err());

    assert_eq!(ECDSA_P256_SHA256.public_key_alg_id(), alg_id::ECDSA_P256);
    assert_eq!(ECDSA_P256_SHA256.signature_alg_id(), alg_id::ECDSA_SHA256);
    assert_eq!(ECDSA_P256_SHA384.signature_alg_id(), alg_id::ECDSA_SHA384);
}

#[test]
fn alerts_follow_rfc5246() {
    use AlertDescription as A;
    use CertificateError as E;
    let cases = [
        (E::BadEncoding, A::BadCertificate),
        (E::UnknownIssuer, A::UnknownCa),
        (E::Expired, A::CertificateExpired),
        (E::NotValidYet, A::CertificateExpired),
        (E::NotValidForName, A::BadCertificate),
        (E::UnsupportedKey, A::UnsupportedCertificate),
        (E::UnsupportedSignatureAlgorithm, A::UnsupportedCertificate),
        (E::BadSignature, A::BadCertificate),
        (E::InvalidPurpose, A::UnsupportedCertificate),
        (E::Revoked, A::CertificateRevoked),
        (E::NotPinned, A::CertificateUnknown),
        (E::Other("x".into()), A::CertificateUnknown),
    ];
    for (err, alert) in cases {
        assert_eq!(err.alert(), alert, "{err:?}");
        assert!(!err.to_string().is_empty());
    }
}
