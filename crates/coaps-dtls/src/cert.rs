//! Credentials: PEM loading, X.509 path validation (rustls-webpki) with server name checks,
//! and raw public keys (RFC 7250) pinned by SubjectPublicKeyInfo.
//!
//! Only ECDSA over P-256 is supported for peer keys, as required for CoAPS
//! (RFC 7252 §9.1.3.2 for raw public keys, §9.1.3.3 for X.509: id-ecPublicKey with secp256r1,
//! uncompressed points). Path validation is
//! delegated to `rustls-webpki`; this module only supplies the signature algorithms (implemented
//! with the pure-Rust `p256` crate, so no `ring`/`aws-lc` is linked) and maps webpki's errors to
//! TLS alerts (RFC 5246 §7.2.2).
//!
//! The few DER walks done here (SubjectPublicKeyInfo, the subject common name, key containers)
//! use the `der`/`spki`/`pkcs8`/`sec1` decoders, which are total and bounded by their input.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use p256::pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
use p256::pkcs8::der::{Decode, Reader, SliceReader, Tag, Tagged};
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{DecodePrivateKey, PrivateKeyInfoRef};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, ServerName, SignatureVerificationAlgorithm, TrustAnchor,
    UnixTime, alg_id,
};
use zeroize::Zeroizing;

use crate::codec::AlertDescription;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// Object identifiers
// ---------------------------------------------------------------------------------------------

/// id-ecPublicKey (RFC 5480 §2.1.1).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480 §2.1.1.1).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-at-commonName (RFC 5280 §4.1.2.4, X.520).
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// A human name for the key algorithms and curves people are likely to feed us by mistake, so
/// that error messages say "P-384" rather than "1.3.132.0.34".
fn oid_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.10045.2.1" => "EC (unspecified curve)",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.101.110" => "X25519",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        other => return format!("OID {other}"),
    };
    name.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A problem with locally supplied credentials (PEM files, keys, trust anchors).
///
/// These are configuration errors: the `Display` text says what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// The input contained no `CERTIFICATE` PEM block.
    NoCertificate {
        /// The PEM block labels that were found instead (may be empty).
        found: Vec<String>,
    },
    /// The input contained no `PRIVATE KEY` or `EC PRIVATE KEY` PEM block.
    NoPrivateKey {
        /// The PEM block labels that were found instead (may be empty).
        found: Vec<String>,
    },
    /// The input contained more than one private key, so which one to use is ambiguous.
    MultiplePrivateKeys(usize),
    /// The private key is encrypted with a passphrase, which is not supported.
    EncryptedPrivateKey,
    /// The PEM text itself is malformed (bad base64, missing END line, ...).
    Pem(String),
    /// The key is a valid key, but not a P-256 EC key.
    NotP256 {
        /// What the key is instead, e.g. `RSA` or `P-384`.
        found: String,
    },
    /// The key container (PKCS#8 or SEC1) could not be decoded.
    MalformedKey(String),
    /// No trust anchors were given to [`WebPkiVerifier::new`].
    NoTrustAnchors,
    /// A trust anchor certificate could not be parsed.
    BadTrustAnchor {
        /// Index of the offending certificate in the input.
        index: usize,
        /// Why it was refused.
        reason: String,
    },
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() { "no PEM blocks at all".to_owned() } else { format!("only {}", found.join(", ")) }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCertificate { found } => write!(
                f,
                "no PEM CERTIFICATE block found in input ({}); expected \
                 `-----BEGIN CERTIFICATE-----` sections (convert a DER file with \
                 `openssl x509 -inform DER -in cert.der -out cert.pem`)",
                found_list(found)
            ),
            Self::NoPrivateKey { found } => write!(
                f,
                "no PEM PRIVATE KEY or EC PRIVATE KEY block found in input ({}); expected a \
                 PKCS#8 `-----BEGIN PRIVATE KEY-----` or SEC1 `-----BEGIN EC PRIVATE KEY-----` section",
                found_list(found)
            ),
            Self::MultiplePrivateKeys(n) => {
                write!(f, "found {n} private keys in input; supply exactly one private key")
            }
            Self::EncryptedPrivateKey => write!(
                f,
                "private key is encrypted, which is not supported; decrypt it with \
                 `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-plain.pem`"
            ),
            Self::Pem(e) => write!(f, "malformed PEM input: {e}"),
            Self::NotP256 { found } => write!(
                f,
                "key is not a P-256 EC key (found {found}); generate one with \
                 `openssl ecparam -name prime256v1 -genkey -noout -out key.pem`"
            ),
            Self::MalformedKey(e) => write!(
                f,
                "private key could not be decoded ({e}); expected an unencrypted PKCS#8 or \
                 SEC1 P-256 key"
            ),
            Self::NoTrustAnchors => {
                write!(f, "no trust anchors given; supply at least one CA certificate to verify peers against")
            }
            Self::BadTrustAnchor { index, reason } => {
                write!(f, "trust anchor #{index} is not a usable X.509 v3 certificate: {reason}")
            }
        }
    }
}

impl std::error::Error for CredentialError {}

/// Why a peer's certificate (or raw public key) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    /// The certificate or key is not valid DER, or is not a valid X.509 v3 certificate.
    BadEncoding,
    /// The chain does not lead to any configured trust anchor.
    UnknownIssuer,
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotValidYet,
    /// The end-entity certificate does not cover the expected server name.
    NotValidForName,
    /// The peer's key is not a P-256 EC key in uncompressed form.
    UnsupportedKey,
    /// A certificate in the chain is signed with an algorithm other than ECDSA P-256 with
    /// SHA-256 or SHA-384.
    UnsupportedSignatureAlgorithm,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate may not be used for this purpose (extended key usage, or a CA
    /// certificate used as an end entity and vice versa).
    InvalidPurpose,
    /// A certificate in the chain was revoked.
    Revoked,
    /// A raw public key (RFC 7250) that is not in the pinned set.
    NotPinned,
    /// Any other reason, described by the string.
    Other(String),
}

impl CertificateError {
    /// The alert to send to the peer for this error (RFC 5246 §7.2.2).
    pub fn alert(&self) -> AlertDescription {
        match self {
            // "A certificate was corrupt, contained signatures that did not verify correctly".
            Self::BadEncoding | Self::BadSignature | Self::NotValidForName => AlertDescription::BadCertificate,
            // "A valid certificate chain ... was received, but ... the CA certificate could not
            // be located or couldn't be matched with a known, trusted CA".
            Self::UnknownIssuer => AlertDescription::UnknownCa,
            // "A certificate has expired or is not currently valid".
            Self::Expired | Self::NotValidYet => AlertDescription::CertificateExpired,
            // "A certificate was of an unsupported type".
            Self::UnsupportedKey | Self::UnsupportedSignatureAlgorithm | Self::InvalidPurpose => {
                AlertDescription::UnsupportedCertificate
            }
            Self::Revoked => AlertDescription::CertificateRevoked,
            // "Some other (unspecified) issue arose in processing the certificate, rendering it
            // unacceptable": an unpinned raw key is well-formed, merely not trusted.
            Self::NotPinned | Self::Other(_) => AlertDescription::CertificateUnknown,
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEncoding => f.write_str("peer certificate is not a valid DER X.509 v3 certificate"),
            Self::UnknownIssuer => f.write_str(
                "peer certificate chain does not lead to a trusted CA (add the issuing CA to the trust anchors)",
            ),
            Self::Expired => f.write_str("peer certificate (or an issuer) has expired"),
            Self::NotValidYet => {
                f.write_str("peer certificate (or an issuer) is not valid yet (check the system clock)")
            }
            Self::NotValidForName => {
                f.write_str("peer certificate is not valid for the requested server name (no matching subjectAltName)")
            }
            Self::UnsupportedKey => f.write_str("peer key is not an uncompressed P-256 EC public key"),
            Self::UnsupportedSignatureAlgorithm => f.write_str(
                "peer certificate chain uses a signature algorithm other than ECDSA P-256 with SHA-256/SHA-384",
            ),
            Self::BadSignature => f.write_str("a signature in the peer certificate chain does not verify"),
            Self::InvalidPurpose => {
                f.write_str("peer certificate is not allowed for this purpose (extended key usage or CA flag)")
            }
            Self::Revoked => f.write_str("peer certificate has been revoked"),
            Self::NotPinned => f.write_str("peer raw public key is not among the pinned keys"),
            Self::Other(s) => write!(f, "peer certificate refused: {s}"),
        }
    }
}

impl std::error::Error for CertificateError {}

// The deprecated unit variants are no longer produced, but are mapped in case a patch release
// emits them again.
#[allow(deprecated)]
fn map_webpki_error(e: webpki::Error) -> CertificateError {
    use webpki::Error as E;
    match e {
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::InvalidCertValidity
        | E::InvalidSerialNumber
        | E::UnsupportedCertVersion
        | E::UnsupportedCriticalExtension
        | E::MalformedDnsIdentifier
        | E::MalformedNameConstraint
        | E::EmptyEkuExtension => CertificateError::BadEncoding,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertNotValidForName(_) => CertificateError::NotValidForName,
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::SignatureAlgorithmMismatch => CertificateError::UnsupportedSignatureAlgorithm,
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => {
            CertificateError::InvalidPurpose
        }
        other => CertificateError::Other(format!("{other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// PEM loading
// ---------------------------------------------------------------------------------------------

fn section_label(kind: &SectionKind) -> String {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        _ => "unknown",
    }
    .to_owned()
}

/// Loads all `CERTIFICATE` blocks from PEM text, in order, as DER.
///
/// Other blocks (keys, CRLs) are skipped, so a combined cert+key file is accepted. The
/// certificates are not parsed here; path validation rejects malformed ones.
pub fn load_certs_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, CredentialError> {
    let mut certs = Vec::new();
    let mut found = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(|e| CredentialError::Pem(e.to_string()))?;
        if kind == SectionKind::Certificate {
            certs.push(der);
        } else {
            // Do not keep key material around longer than needed.
            drop(Zeroizing::new(der));
            found.push(section_label(&kind));
        }
    }
    if certs.is_empty() {
        return Err(CredentialError::NoCertificate { found });
    }
    Ok(certs)
}

/// Loads a P-256 private key from PEM text: PKCS#8 (`PRIVATE KEY`, RFC 5208/5958) or SEC1
/// (`EC PRIVATE KEY`, RFC 5915). Other blocks (e.g. certificates, `EC PARAMETERS`) are skipped;
/// exactly one private key must be present.
pub fn load_private_key_pem(pem: &[u8]) -> Result<p256::SecretKey, CredentialError> {
    // The PEM parser does not know these labels and would silently skip them, which would
    // produce a misleading "no private key" error.
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(pem, b"Proc-Type: 4,ENCRYPTED") {
        return Err(CredentialError::EncryptedPrivateKey);
    }
    let mut keys: Vec<(SectionKind, Zeroizing<Vec<u8>>)> = Vec::new();
    let mut found = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(|e| CredentialError::Pem(e.to_string()))?;
        let der = Zeroizing::new(der);
        match kind {
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => keys.push((kind, der)),
            other => found.push(section_label(&other)),
        }
    }
    match keys.len() {
        0 => Err(CredentialError::NoPrivateKey { found }),
        1 => {
            let (kind, der) = &keys[0];
            match kind {
                SectionKind::PrivateKey => decode_pkcs8(der),
                SectionKind::EcPrivateKey => decode_sec1(der),
                _ => Err(CredentialError::NotP256 { found: "RSA (RSA PRIVATE KEY block)".to_owned() }),
            }
        }
        n => Err(CredentialError::MultiplePrivateKeys(n)),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// PKCS#8 `PrivateKeyInfo` (RFC 5958 §2) holding an `ECPrivateKey`.
fn decode_pkcs8(der: &[u8]) -> Result<p256::SecretKey, CredentialError> {
    let info = PrivateKeyInfoRef::try_from(der).map_err(|e| CredentialError::MalformedKey(e.to_string()))?;
    if info.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(CredentialError::NotP256 { found: oid_name(&info.algorithm.oid) });
    }
    // RFC 5480 §2.1.1: the parameters carry the named curve.
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == OID_P256 => {}
        Ok(curve) => {
            return Err(CredentialError::NotP256 { found: oid_name(&curve) });
        }
        Err(_) => {
            return Err(CredentialError::NotP256 { found: "EC key without a named curve".to_owned() });
        }
    }
    p256::SecretKey::from_pkcs8_der(der).map_err(|e| CredentialError::MalformedKey(e.to_string()))
}

/// SEC1 `ECPrivateKey` (RFC 5915 §3).
fn decode_sec1(der: &[u8]) -> Result<p256::SecretKey, CredentialError> {
    let key = sec1::EcPrivateKey::try_from(der).map_err(|e| CredentialError::MalformedKey(e.to_string()))?;
    match key.parameters.and_then(|p| p.named_curve()) {
        Some(curve) if curve == OID_P256 => {}
        Some(curve) => {
            return Err(CredentialError::NotP256 { found: oid_name(&curve) });
        }
        // RFC 5915 §3 lets the parameters be omitted when known from context; the only context
        // we have is the key length.
        None if key.private_key.len() != 32 => {
            return Err(CredentialError::NotP256 {
                found: format!("EC key with a {}-byte scalar", key.private_key.len()),
            });
        }
        None => {}
    }
    p256::SecretKey::from_sec1_der(der).map_err(|e| CredentialError::MalformedKey(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` (RFC 5480 §2) up to the point:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }`.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Builds the `SubjectPublicKeyInfo` (RFC 5480 §2) for an uncompressed P-256 point, as sent in
/// a raw public key Certificate message (RFC 7250 §3).
pub fn p256_spki_der(point: &[u8; 65]) -> Vec<u8> {
    let mut out = Vec::with_capacity(P256_SPKI_PREFIX.len() + point.len());
    out.extend_from_slice(&P256_SPKI_PREFIX);
    out.extend_from_slice(point);
    out
}

/// Checks that `point` is an uncompressed SEC1 encoding of a valid P-256 point.
///
/// Compressed points are refused: RFC 8422 §5.1.2 deprecates them and webpki's own ECDSA
/// algorithms do not accept them either.
fn checked_point(point: &[u8]) -> Result<[u8; 65], CertificateError> {
    let arr: [u8; 65] = point.try_into().map_err(|_| CertificateError::UnsupportedKey)?;
    if arr[0] != 0x04 || p256::PublicKey::from_sec1_bytes(&arr).is_err() {
        return Err(CertificateError::UnsupportedKey);
    }
    Ok(arr)
}

/// Extracts the uncompressed point from a `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7), accepting
/// only `id-ecPublicKey` with the `prime256v1` named curve (RFC 5480 §2.1.1).
///
/// Malformed DER (including trailing bytes) gives [`CertificateError::BadEncoding`]; any other
/// key type, curve or point form gives [`CertificateError::UnsupportedKey`].
pub fn spki_p256_point(spki_der: &[u8]) -> Result<[u8; 65], CertificateError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|_| CertificateError::BadEncoding)?;
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(CertificateError::UnsupportedKey);
    }
    match spki.algorithm.parameters_oid() {
        Ok(curve) if curve == OID_P256 => {}
        _ => return Err(CertificateError::UnsupportedKey),
    }
    let point = spki.subject_public_key.as_bytes().ok_or(CertificateError::BadEncoding)?;
    checked_point(point)
}

/// The P-256 public key of a certificate, without any validation of the certificate itself.
pub fn end_entity_p256_point(cert_der: &[u8]) -> Result<[u8; 65], CertificateError> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(map_webpki_error)?;
    spki_p256_point(cert.subject_public_key_info().as_ref())
}

/// A short human-readable summary of a certificate's subject for the application: the subject
/// common name if present, else the first DNS subjectAltName. Control characters are removed.
///
/// This is informational only: never use it for authorisation decisions (use the name check of
/// [`WebPkiVerifier::verify_server`] instead).
pub fn subject_summary(cert_der: &[u8]) -> Option<String> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let summary = common_name(cert.subject()).or_else(|| cert.valid_dns_names().next().map(str::to_owned))?;
    let clean: String = summary.chars().filter(|c| !c.is_control()).collect();
    (!clean.is_empty()).then_some(clean)
}

/// The subject commonName and the first DNS subjectAltName of a certificate, each with control
/// characters removed, for [`PeerIdentity`](crate::PeerIdentity)'s `Display`. Informational
/// only, as [`subject_summary`].
pub(crate) fn subject_names(cert_der: &[u8]) -> (Option<String>, Option<String>) {
    let der = CertificateDer::from(cert_der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else { return (None, None) };
    let clean = |s: &str| Some(s.chars().filter(|c| !c.is_control()).collect::<String>()).filter(|s| !s.is_empty());
    let cn = common_name(cert.subject()).and_then(|s| clean(&s));
    let san = cert.valid_dns_names().next().and_then(clean);
    (cn, san)
}

/// Finds the first commonName in the contents of an X.501 `Name` (RFC 5280 §4.1.2.4):
/// `SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }`.
fn common_name(name_contents: &[u8]) -> Option<String> {
    let mut rdns = SliceReader::new(name_contents).ok()?;
    while !rdns.is_finished() {
        let rdn: AnyRef<'_> = rdns.decode().ok()?;
        if rdn.tag() != Tag::Set {
            return None;
        }
        let mut atvs = SliceReader::new(rdn.value()).ok()?;
        while !atvs.is_finished() {
            let atv: AnyRef<'_> = atvs.decode().ok()?;
            let (oid, value) = atv
                .sequence(|r| {
                    let oid: ObjectIdentifier = r.decode()?;
                    let value: AnyRef<'_> = r.decode()?;
                    Ok::<_, p256::pkcs8::der::Error>((oid, value))
                })
                .ok()?;
            if oid == OID_COMMON_NAME {
                // DirectoryString: only the ASCII-compatible forms are rendered.
                return match value.tag() {
                    Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                        std::str::from_utf8(value.value()).ok().map(str::to_owned)
                    }
                    _ => None,
                };
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Signature algorithms for webpki
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

/// ECDSA over P-256 (RFC 5758 §3.2 signature identifiers, RFC 5480 key identifiers), verified
/// with the `p256` crate.
#[derive(Debug)]
struct EcdsaP256 {
    signature_alg_id: AlgorithmIdentifier,
    hash: Hash,
}

impl EcdsaP256 {
    /// Verifies `signature` over `message` with `public_key`; when `cache` is given, a
    /// signature it already holds as verified is accepted without the point arithmetic, and a
    /// newly verified one is added to it.
    fn verify_cached(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
        cache: Option<&SignatureCache>,
    ) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest;

        // Uncompressed points only (see `checked_point`); `from_sec1_bytes` then checks that the
        // point is on the curve and not the identity, so the key is decoded once.
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return Err(InvalidSignature);
        }
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        // X.509 ECDSA signatures are DER `Ecdsa-Sig-Value` (RFC 5480 §2.2 / RFC 5758 §3.2).
        let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        // FIPS 186-4 §6.4: a digest longer than the group order is truncated to its leftmost
        // bits, which `verify_prehash` does.
        let mut digest = [0u8; 48];
        let digest = match self.hash {
            Hash::Sha256 => {
                digest[..32].copy_from_slice(&sha2::Sha256::digest(message));
                &digest[..32]
            }
            Hash::Sha384 => {
                digest.copy_from_slice(&sha2::Sha384::digest(message));
                &digest[..]
            }
        };
        // ECDSA verification is a function of (key, digest, signature) alone, so a verified
        // triple seen again is exactly as valid as the first time.
        let entry = cache.map(|_| SignatureCache::entry(public_key, digest, signature));
        if let (Some(cache), Some(entry)) = (cache, &entry)
            && cache.contains(entry)
        {
            return Ok(());
        }
        key.verify_prehash(digest, &sig).map_err(|_| InvalidSignature)?;
        if let (Some(cache), Some(entry)) = (cache, entry) {
            cache.insert(entry);
        }
        Ok(())
    }
}

impl SignatureVerificationAlgorithm for EcdsaP256 {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        self.verify_cached(public_key, message, signature, None)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P256
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature_alg_id
    }
}

/// An [`EcdsaP256`] algorithm that consults a verifier's [`SignatureCache`].
#[derive(Debug)]
struct CachedEcdsaP256<'a> {
    alg: &'static EcdsaP256,
    cache: &'a SignatureCache,
}

impl SignatureVerificationAlgorithm for CachedEcdsaP256<'_> {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        self.alg.verify_cached(public_key, message, signature, Some(self.cache))
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.alg.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.alg.signature_alg_id
    }
}

/// How many verified certificate signatures a [`WebPkiVerifier`] remembers: enough for the
/// chains of a handful of peers (one signature per certificate below the trust anchor).
const SIGNATURE_CACHE_ENTRIES: usize = 16;

/// Certificate signatures already verified by one [`WebPkiVerifier`], most recent last.
///
/// A client reconnecting to the same server (or a server seeing the same client again) gets
/// the same chain each time, and checking the issuer's ECDSA signature on it is the single
/// most expensive step of path validation (a P-256 double-scalar multiplication, about a
/// quarter of a full ECDHE-ECDSA handshake's CPU on the client). Entries are compared byte for
/// byte on the public key, the message digest and the signature, and only signatures that
/// verified are stored, so a hit is never a weaker check than the verification it replaces;
/// everything else webpki checks (validity period, name constraints, key usage, names) is
/// still done for every chain.
#[derive(Default)]
struct SignatureCache(std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>);

impl fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureCache").field("entries", &self.lock().len()).finish()
    }
}

impl SignatureCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Vec<u8>>> {
        // The guarded data is a plain list that no panic can leave half-updated.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cache key: each part length-prefixed, so that no two triples encode alike.
    fn entry(public_key: &[u8], digest: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut e = Vec::with_capacity(3 + public_key.len() + digest.len() + signature.len());
        for part in [public_key, digest, signature] {
            // Every part is under 256 bytes (65-byte point, 48-byte digest at most, and a DER
            // P-256 signature of at most 72 bytes, which `Signature::from_der` has checked).
            e.push(part.len() as u8);
            e.extend_from_slice(part);
        }
        e
    }

    fn contains(&self, entry: &[u8]) -> bool {
        self.lock().iter().any(|e| e.as_slice() == entry)
    }

    fn insert(&self, entry: Vec<u8>) {
        let mut entries = self.lock();
        if entries.iter().any(|e| *e == entry) {
            return;
        }
        if entries.len() == SIGNATURE_CACHE_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
}

/// ECDSA P-256 with SHA-256 (`ecdsa-with-SHA256`), for webpki path validation.
pub static ECDSA_P256_SHA256: &dyn SignatureVerificationAlgorithm = &P256_SHA256;

static P256_SHA256: EcdsaP256 = EcdsaP256 { signature_alg_id: alg_id::ECDSA_SHA256, hash: Hash::Sha256 };

/// ECDSA P-256 with SHA-384 (`ecdsa-with-SHA384`), which some CAs use to sign P-256 keys.
///
/// RFC 7252 §9.1.3.3 says certificates MUST be signed with SHA-256; that binds issuers, and
/// accepting SHA-384 as well costs no security, so verification is lenient here.
pub static ECDSA_P256_SHA384: &dyn SignatureVerificationAlgorithm = &P256_SHA384;

static P256_SHA384: EcdsaP256 = EcdsaP256 { signature_alg_id: alg_id::ECDSA_SHA384, hash: Hash::Sha384 };

/// The certificate signature algorithms accepted in chains. Anything else (RSA, P-384 issuers,
/// Ed25519) is reported as [`CertificateError::UnsupportedSignatureAlgorithm`].
pub static SUPPORTED_SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[ECDSA_P256_SHA256, ECDSA_P256_SHA384];

// ---------------------------------------------------------------------------------------------
// Verifiers
// ---------------------------------------------------------------------------------------------

/// Verifies X.509 chains against a fixed set of trust anchors using `rustls-webpki`
/// (RFC 5280 path validation).
pub struct WebPkiVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    signatures: SignatureCache,
}

impl fmt::Debug for WebPkiVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPkiVerifier").field("trust_anchors", &self.anchors.len()).finish()
    }
}

fn unix_time(now: SystemTime) -> UnixTime {
    // A clock before 1970 is treated as 1970, which makes every certificate "not valid yet".
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

impl WebPkiVerifier {
    /// Creates a verifier trusting the given DER CA certificates.
    pub fn new(roots_der: &[Vec<u8>]) -> Result<Self, CredentialError> {
        if roots_der.is_empty() {
            return Err(CredentialError::NoTrustAnchors);
        }
        let anchors = roots_der
            .iter()
            .enumerate()
            .map(|(index, der)| {
                let der = CertificateDer::from(der.as_slice());
                webpki::anchor_from_trusted_cert(&der)
                    .map(|a| a.to_owned())
                    .map_err(|e| CredentialError::BadTrustAnchor { index, reason: format!("{e:?}") })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { anchors, signatures: SignatureCache::default() })
    }

    /// Creates a verifier trusting every `CERTIFICATE` in the PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CredentialError> {
        Self::new(&load_certs_pem(pem)?)
    }

    fn verify_chain(
        &self,
        chain: &[Vec<u8>],
        usage: webpki::KeyUsage,
        server_name: Option<&ServerName<'_>>,
        now: SystemTime,
    ) -> Result<[u8; 65], CertificateError> {
        let (ee, rest) = chain
            .split_first()
            .ok_or_else(|| CertificateError::Other("peer sent an empty certificate chain".to_owned()))?;
        let ee_der = CertificateDer::from(ee.as_slice());
        let ee_cert = webpki::EndEntityCert::try_from(&ee_der).map_err(map_webpki_error)?;
        let intermediates: Vec<CertificateDer<'_>> = rest.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
        // The same algorithms as `SUPPORTED_SIG_ALGS`, remembering verified signatures.
        let sha256 = CachedEcdsaP256 { alg: &P256_SHA256, cache: &self.signatures };
        let sha384 = CachedEcdsaP256 { alg: &P256_SHA384, cache: &self.signatures };
        let algs: [&dyn SignatureVerificationAlgorithm; 2] = [&sha256, &sha384];
        ee_cert
            .verify_for_usage(&algs, &self.anchors, &intermediates, unix_time(now), usage, None, None)
            .map_err(map_webpki_error)?;
        if let Some(name) = server_name {
            // RFC 6125 §6 via webpki: only subjectAltName dNSName / iPAddress entries count,
            // never the subject CN.
            ee_cert.verify_is_valid_for_subject_name(name).map_err(map_webpki_error)?;
        }
        spki_p256_point(ee_cert.subject_public_key_info().as_ref())
    }

    /// Server certificate check done by a client: `chain` (end-entity first) must chain to a
    /// trust anchor, allow the serverAuth extended key usage (RFC 5280 §4.2.1.12), and
    /// `server_name` (a DNS name or IP literal, e.g. `"localhost"` or `"127.0.0.1"`) must match
    /// one of the certificate's subjectAltName entries (RFC 6125). Returns the end-entity's
    /// P-256 point.
    pub fn verify_server(
        &self,
        chain: &[Vec<u8>],
        server_name: &str,
        now: SystemTime,
    ) -> Result<[u8; 65], CertificateError> {
        let name = ServerName::try_from(server_name).map_err(|_| {
            CertificateError::Other(format!(
                "`{server_name}` is not a valid DNS name or IP address to check the certificate against"
            ))
        })?;
        self.verify_chain(chain, webpki::KeyUsage::server_auth(), Some(&name), now)
    }

    /// Client certificate check done by a server: `chain` (end-entity first) must chain to a
    /// trust anchor and allow the clientAuth extended key usage. Returns the P-256 point.
    pub fn verify_client(&self, chain: &[Vec<u8>], now: SystemTime) -> Result<[u8; 65], CertificateError> {
        self.verify_chain(chain, webpki::KeyUsage::client_auth(), None, now)
    }
}

/// Raw public keys (RFC 7250) trusted by exact `SubjectPublicKeyInfo` DER.
///
/// RFC 7252 §9.1.3.2.1 has each endpoint keep an access control list of the peers' raw keys;
/// pinning the full SPKI means no parsing happens before the key is known to be trusted.
#[derive(Clone)]
pub struct PinnedKeys {
    spkis: Vec<Vec<u8>>,
}

impl fmt::Debug for PinnedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedKeys").field("keys", &self.spkis.len()).finish()
    }
}

impl PinnedKeys {
    /// Pins the given `SubjectPublicKeyInfo` DER encodings (see [`p256_spki_der`]).
    pub fn new(spkis: Vec<Vec<u8>>) -> Self {
        Self { spkis }
    }

    /// Number of pinned keys.
    pub fn len(&self) -> usize {
        self.spkis.len()
    }

    /// Whether no key is pinned (then every peer is refused).
    pub fn is_empty(&self) -> bool {
        self.spkis.is_empty()
    }

    /// Accepts `spki_der` only if it is byte-equal to a pinned SPKI, and returns its P-256
    /// point. Anything else gives [`CertificateError::NotPinned`]; a pinned SPKI that is not a
    /// P-256 key gives [`CertificateError::UnsupportedKey`].
    pub fn verify(&self, spki_der: &[u8]) -> Result<[u8; 65], CertificateError> {
        if !self.spkis.iter().any(|k| k.as_slice() == spki_der) {
            return Err(CertificateError::NotPinned);
        }
        spki_p256_point(spki_der)
    }
}
