//! `coaps get|post|put|delete`: one request over one DTLS association.

use crate::cli::{
    EXIT_CLIENT_ERROR, EXIT_FAILURE, EXIT_OK, EXIT_OTHER_RESPONSE, EXIT_SERVER_ERROR, EXIT_USAGE, RequestArgs,
};
use crate::creds;
use crate::psk::DEMO_IDENTITY;
use crate::uri::CoapsUri;
use coap_lite::{ContentFormat, MessageClass, MessageType, Packet, RequestType};
use coaps_dtls::crypto::{Rng, SeededRng};
use coaps_tower::block::client::BlockError;
use coaps_tower::{ClientOptions, SessionCache};
use std::time::{Duration, Instant};

/// Builds a confirmable request for `uri` with a fresh message ID and token (RFC 7252 §5.3.1:
/// tokens from a good random source so off-path attackers cannot guess them).
pub fn build_request(method: RequestType, uri: &CoapsUri, payload: Option<&[u8]>) -> Packet {
    let mut rng = SeededRng::from_os();
    let mut rand = [0u8; 10];
    rng.fill(&mut rand);
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = u16::from_be_bytes([rand[0], rand[1]]);
    p.set_token(rand[2..].to_vec());
    uri.add_options(&mut p);
    if let Some(b) = payload {
        p.payload = b.to_vec();
    }
    p
}

/// `4.04 Not Found`: the code in dotted form with its RFC 7252 §12.1.2 name.
pub fn code_text(code: MessageClass) -> String {
    let n = u8::from(code);
    let (class, detail) = (n >> 5, n & 0x1f);
    let name = match n {
        0x00 => "Empty",
        0x41 => "Created",
        0x42 => "Deleted",
        0x43 => "Valid",
        0x44 => "Changed",
        0x45 => "Content",
        0x5f => "Continue",
        0x80 => "Bad Request",
        0x81 => "Unauthorized",
        0x82 => "Bad Option",
        0x83 => "Forbidden",
        0x84 => "Not Found",
        0x85 => "Method Not Allowed",
        0x86 => "Not Acceptable",
        0x88 => "Request Entity Incomplete",
        0x89 => "Conflict",
        0x8c => "Precondition Failed",
        0x8d => "Request Entity Too Large",
        0x8f => "Unsupported Content-Format",
        0x9d => "Too Many Requests",
        0xa0 => "Internal Server Error",
        0xa1 => "Not Implemented",
        0xa2 => "Bad Gateway",
        0xa3 => "Service Unavailable",
        0xa4 => "Gateway Timeout",
        0xa5 => "Proxying Not Supported",
        _ => "",
    };
    if name.is_empty() { format!("{class}.{detail:02}") } else { format!("{class}.{detail:02} {name}") }
}

/// The exit status for a response code: 0 for 2.xx, 4 for 4.xx, 5 for 5.xx, 3 otherwise.
pub fn exit_for(code: MessageClass) -> u8 {
    match u8::from(code) >> 5 {
        2 => EXIT_OK,
        4 => EXIT_CLIENT_ERROR,
        5 => EXIT_SERVER_ERROR,
        _ => EXIT_OTHER_RESPONSE,
    }
}

/// Whether a payload is shown as text (so a final newline may be added for the terminal).
pub(crate) fn is_text(p: &Packet) -> bool {
    matches!(
        p.get_content_format(),
        None | Some(ContentFormat::TextPlain)
            | Some(ContentFormat::ApplicationLinkFormat)
            | Some(ContentFormat::ApplicationJSON)
            | Some(ContentFormat::ApplicationXML)
    ) && std::str::from_utf8(&p.payload).is_ok()
}

/// What the client was given, so a hint names what to change rather than what is already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintContext {
    /// `-u/-k` (or the demo PSK).
    pub psk: bool,
    /// `--ca`.
    pub ca: bool,
    /// `--cert/--key`.
    pub client_cert: bool,
    /// `--dtls`.
    pub dtls: Option<crate::cli::ClientDtls>,
}

impl HintContext {
    /// From the request's arguments.
    pub fn of(args: &crate::cli::RequestArgs) -> Self {
        Self {
            psk: args.ca.is_none() || args.identity.is_some(),
            ca: args.ca.is_some(),
            client_cert: args.cert.is_some(),
            dtls: Some(args.dtls),
        }
    }
}

/// Explains a failure to get any response, looking through the error's source chain for what
/// the DTLS engine or the OS said ([`describe_error_with`] for a PSK client).
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    describe_error_with(e, &HintContext { psk: true, ..HintContext::default() })
}

/// Explains a failure to get any response, with a hint fitted to what the client was given.
pub fn describe_error_with(e: &(dyn std::error::Error + 'static), cx: &HintContext) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts: Vec<String> = Vec::new();
    while let Some(err) = cur {
        let hint = if let Some(d) = err.downcast_ref::<coaps_dtls::Error>() {
            Some(dtls_hint(d, cx))
        } else if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    Some("connection refused: nothing listens on that port (ICMP port unreachable)".to_owned())
                }
                _ => None,
            }
        } else {
            None
        };
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        if let Some(h) = hint {
            parts.push(h);
        }
        cur = err.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}

/// The advice for one engine error. Every branch is tested (`hints_match_the_cause`).
pub fn dtls_hint(e: &coaps_dtls::Error, cx: &HintContext) -> String {
    use crate::cli::ClientDtls;
    use coaps_dtls::AlertDescription as A;
    use coaps_dtls::Error as E;
    use coaps_dtls::Incompatible as I;
    match e {
        E::AlertReceived(A::UnknownPskIdentity) => {
            "the server does not know this PSK identity: check -u (and that the server has it)".into()
        }
        E::AlertReceived(A::DecryptError | A::BadRecordMac) if cx.psk => {
            "the server could not verify our handshake: the PSK key is wrong, check -k".into()
        }
        E::DecryptError(_) | E::BadRecordMac(_) if cx.psk => {
            "the server's handshake did not verify with our key: the PSK key is wrong, check -k".into()
        }
        E::AlertReceived(A::DecryptError | A::BadRecordMac) | E::DecryptError(_) | E::BadRecordMac(_) => {
            "the handshake did not verify: a broken peer or something altering the datagrams".into()
        }
        E::AlertReceived(A::ProtocolVersion) => match cx.dtls {
            Some(ClientDtls::V12) => "the server does not speak DTLS 1.2: try --dtls 1.3 or --dtls auto".into(),
            Some(ClientDtls::V13) => "the server does not speak DTLS 1.3: try --dtls 1.2 or --dtls auto".into(),
            _ => "the server speaks none of the DTLS versions we offer (1.2 and 1.3)".into(),
        },
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate: add --cert CERT.pem --key KEY.pem".into()
        }
        E::AlertReceived(A::HandshakeFailure) => {
            if cx.ca && !cx.client_cert {
                "the server refused the handshake: it may require a client certificate (add --cert/--key), \
                 or shares no cipher suite with us"
                    .into()
            } else if cx.ca {
                "the server refused the handshake: no cipher suite in common, or it does not accept our certificate"
                    .into()
            } else {
                "the server refused the handshake: it may not know this PSK identity (a DTLS 1.3 server says so \
                 this way; check -u/-k), may want certificates (--ca), or shares no cipher suite with us"
                    .into()
            }
        }
        E::AlertReceived(A::BadCertificate)
        | E::AlertReceived(A::UnsupportedCertificate)
        | E::AlertReceived(A::CertificateUnknown)
        | E::AlertReceived(A::CertificateExpired)
        | E::AlertReceived(A::UnknownCa) => {
            if cx.client_cert {
                "the server refused our client certificate (--cert/--key): is it issued by a CA the server trusts?"
                    .into()
            } else {
                "the server refused the handshake over certificates: it may require a client certificate (--cert/--key)"
                    .into()
            }
        }
        E::Incompatible(I::ServerWithoutEms) => {
            "the server does not support extended_master_secret (RFC 7627): --allow-no-ems connects anyway".into()
        }
        E::Incompatible(I::ClientCertificateRequired12 | I::ClientCertificateRequired13) => {
            "the server requires a client certificate: add --cert CERT.pem --key KEY.pem".into()
        }
        E::Incompatible(I::ServerDidNotSelectDtls13 | I::ServerVersionNot12) => {
            "the server chose another DTLS version: try --dtls auto".into()
        }
        E::Incompatible(_) => {
            if cx.ca {
                "no common parameters with the server: does it have a P-256 certificate?".into()
            } else {
                "no common parameters with the server: does it accept PSK (-u/-k)? otherwise use --ca".into()
            }
        }
        E::Certificate(_) => {
            "the server's certificate was refused: check --ca and that the URI host is in its subjectAltName".into()
        }
        E::HandshakeTimeout => "no DTLS answer: is a CoAPS server running there?".into(),
        _ => String::new(),
    }
}

/// Runs one request. Returns the exit status.
pub async fn run(method: RequestType, args: RequestArgs) -> u8 {
    let uri = match CoapsUri::parse(&args.uri) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (config, demo) = match creds::client_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if demo {
        eprintln!("note: no credentials given (-u/-k or --ca): using the public demo PSK `{DEMO_IDENTITY}`");
    }
    let peer = match tokio::net::lookup_host(uri.authority()).await.map(|mut it| it.next()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!("error: `{}` resolves to no address", uri.host);
            return EXIT_FAILURE;
        }
        Err(e) => {
            eprintln!("error: cannot resolve `{}`: {e}", uri.host);
            return EXIT_FAILURE;
        }
    };
    let payload = match crate::transfer::payload(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut request = build_request(method, &uri, payload.as_deref());
    crate::transfer::apply(&args, &mut request);
    let plan = crate::transfer::Plan::of(&args);
    // An observation runs for -s seconds on top of the wait for the first answer.
    let timeout = Duration::from_secs(args.timeout + args.observe.unwrap_or(0));
    let config = std::sync::Arc::new(config);
    let loaded = args.session_file.as_deref().map(|f| crate::sessions::load_session_file(f, &uri.host, peer.port()));
    let mut link = args.link.policy();
    if let Some(ms) = args.rtt {
        link = link.with_rtt_hint(Duration::from_millis(ms));
    }
    let options = |cache: Option<SessionCache>| ClientOptions {
        sessions: cache,
        link: Some(link.clone()),
        ..ClientOptions::default()
    };
    let cache = loaded.as_ref().map(|l| l.cache.clone());
    let offers = loaded.as_ref().is_some_and(|l| l.offers);
    // A saved session the server does not know leads to a full handshake. One that breaks the
    // handshake (a file altered consistently: the server's Finished does not decrypt and is
    // dropped) must not lock the client out: after half the time, once more with a full one.
    let started = Instant::now();
    // 0-RTT only with a DTLS 1.3 ticket that allows early data.
    let early = args.early_data
        && cache.as_ref().is_some_and(|c| {
            c.sessions(&uri.host, peer.port()).first().is_some_and(|s| s.is_dtls13_ticket() && s.allows_early_data())
        });
    if args.early_data && !early && args.verbosity() > 0 {
        eprintln!("early data: not sent (no ticket that allows it)");
    }
    let exchange = crate::transport::exchange(
        peer,
        config.clone(),
        &uri.host,
        request.clone(),
        args.verbosity(),
        options(cache.clone()),
        offers.then_some(timeout / 2),
        early,
        &plan,
    );
    let mut result = tokio::time::timeout(timeout, exchange).await;
    if let (Ok(Err(BlockError::Client(coaps_tower::ClientError::Handshake(reason)))), Some(l)) = (&result, &loaded)
        && l.offers
    {
        eprintln!(
            "warning: resuming the saved session failed ({}); retrying with a full handshake",
            describe_error_with(&coaps_tower::ClientError::Handshake(reason.clone()), &HintContext::of(&args))
        );
        let fresh = SessionCache::default();
        let exchange = crate::transport::exchange(
            peer,
            config,
            &uri.host,
            request,
            args.verbosity(),
            options(Some(fresh.clone())),
            None,
            false,
            &plan,
        );
        result = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), exchange).await;
        if let Some(l) = &loaded {
            for s in fresh.sessions(&uri.host, peer.port()).into_iter().rev() {
                l.cache.insert(&uri.host, peer.port(), s);
            }
        }
    }
    if let (Some(file), Some(cache)) = (&args.session_file, &cache)
        && matches!(result, Ok(Ok(_)))
        && let Err(e) = crate::sessions::save_session_file(file, cache)
    {
        eprintln!("warning: cannot save the session to {}: {e}", file.display());
    }
    let response = match result {
        Err(_) => {
            eprintln!(
                "error: timeout: no response from {peer} within {}s (is a CoAPS server running on that \
                 port? a wrong PSK key looks the same: DTLS silently drops what it cannot decrypt)",
                args.timeout
            );
            return EXIT_FAILURE;
        }
        Ok(Err(BlockError::Client(coaps_tower::ClientError::Reset))) => {
            eprintln!("error: {peer} answered with a Reset: it could not process the request");
            return EXIT_OTHER_RESPONSE;
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", describe_error_with(&e, &HintContext::of(&args)));
            return EXIT_FAILURE;
        }
        Ok(Ok(r)) => r,
    };
    report(&response, args.verbosity() > 0, &plan)
}

fn report(response: &Packet, verbose: bool, plan: &crate::transfer::Plan) -> u8 {
    let code = response.header.code;
    let status = exit_for(code);
    if verbose && status == EXIT_OK {
        eprintln!("{}", code_text(code));
    }
    if status == EXIT_OK {
        crate::transfer::write_payload(plan, response);
    } else {
        // RFC 7252 §5.5.2: an error's payload is a diagnostic message for humans.
        let diag = String::from_utf8_lossy(&response.payload);
        if diag.is_empty() {
            eprintln!("error: the server answered {}", code_text(code));
        } else {
            eprintln!("error: the server answered {}: {diag}", code_text(code));
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{CoapOption, ResponseType};
    use coaps_tower::BoxError;

    #[test]
    fn codes() {
        assert_eq!(code_text(MessageClass::Response(ResponseType::Content)), "2.05 Content");
        assert_eq!(code_text(MessageClass::Response(ResponseType::NotFound)), "4.04 Not Found");
        assert_eq!(code_text(MessageClass::Response(ResponseType::MethodNotAllowed)), "4.05 Method Not Allowed");
        assert_eq!(code_text(MessageClass::Response(ResponseType::InternalServerError)), "5.00 Internal Server Error");
        assert_eq!(code_text(MessageClass::from(0x47)), "2.07");
        assert_eq!(exit_for(MessageClass::Response(ResponseType::Changed)), 0);
        assert_eq!(exit_for(MessageClass::Response(ResponseType::NotFound)), 4);
        assert_eq!(exit_for(MessageClass::Response(ResponseType::ServiceUnavailable)), 5);
        assert_eq!(exit_for(MessageClass::Empty), 3);
    }

    #[test]
    fn request_carries_uri_and_fresh_ids() {
        let uri = CoapsUri::parse("coaps://127.0.0.1:5700/actuators/door?x=1").unwrap();
        let a = build_request(RequestType::Post, &uri, Some(b"open"));
        let b = build_request(RequestType::Post, &uri, Some(b"open"));
        assert_eq!(a.header.get_type(), MessageType::Confirmable);
        assert_eq!(a.header.code, MessageClass::Request(RequestType::Post));
        assert_eq!(a.payload, b"open");
        assert_eq!(a.get_token().len(), 8);
        assert_ne!((a.header.message_id, a.get_token()), (b.header.message_id, b.get_token()));
        let path: Vec<_> = a.get_option(CoapOption::UriPath).unwrap().iter().cloned().collect();
        assert_eq!(path, [b"actuators".to_vec(), b"door".to_vec()]);
        // It encodes and decodes.
        let back = Packet::from_bytes(&a.to_bytes().unwrap()).unwrap();
        assert_eq!(back.payload, b"open");
    }

    #[test]
    fn hints_match_the_cause() {
        use crate::cli::ClientDtls;
        use coaps_dtls::AlertDescription as A;
        use coaps_dtls::Error as E;
        use coaps_dtls::Incompatible as I;
        let psk = HintContext { psk: true, ..HintContext::default() };
        let ca = HintContext { ca: true, ..HintContext::default() };
        let ca_cert = HintContext { ca: true, client_cert: true, ..HintContext::default() };
        let v12 = HintContext { psk: true, dtls: Some(ClientDtls::V12), ..HintContext::default() };
        let v13 = HintContext { psk: true, dtls: Some(ClientDtls::V13), ..HintContext::default() };
        let auto = HintContext { psk: true, dtls: Some(ClientDtls::Auto), ..HintContext::default() };
        let cert_err = coaps_dtls::CertificateError::Expired;
        let table: Vec<(E, HintContext, &str)> = vec![
            (E::AlertReceived(A::UnknownPskIdentity), psk, "does not know this PSK identity"),
            (E::AlertReceived(A::DecryptError), psk, "PSK key is wrong, check -k"),
            (E::AlertReceived(A::BadRecordMac), psk, "PSK key is wrong, check -k"),
            (E::BadRecordMac("the server's Finished"), psk, "PSK key is wrong, check -k"),
            (E::DecryptError("server Finished"), psk, "PSK key is wrong, check -k"),
            (E::AlertReceived(A::BadRecordMac), ca, "altering the datagrams"),
            (E::AlertReceived(A::ProtocolVersion), v12, "does not speak DTLS 1.2: try --dtls 1.3"),
            (E::AlertReceived(A::ProtocolVersion), v13, "does not speak DTLS 1.3: try --dtls 1.2"),
            (E::AlertReceived(A::ProtocolVersion), auto, "none of the DTLS versions"),
            (E::AlertReceived(A::CertificateRequired), ca, "requires a client certificate: add --cert"),
            (E::AlertReceived(A::HandshakeFailure), ca, "may require a client certificate (add --cert/--key)"),
            (E::AlertReceived(A::HandshakeFailure), ca_cert, "does not accept our certificate"),
            (E::AlertReceived(A::HandshakeFailure), psk, "may not know this PSK identity"),
            (E::AlertReceived(A::BadCertificate), ca_cert, "refused our client certificate"),
            (E::AlertReceived(A::UnknownCa), ca, "may require a client certificate"),
            (E::Incompatible(I::ServerWithoutEms), psk, "--allow-no-ems"),
            (E::Incompatible(I::ClientCertificateRequired12), ca, "add --cert"),
            (E::Incompatible(I::ServerDidNotSelectDtls13), v13, "--dtls auto"),
            (E::Incompatible(I::NoCommonSuite12), ca, "P-256 certificate"),
            (E::Incompatible(I::NoCommonSuite12), psk, "does it accept PSK"),
            (E::Certificate(cert_err), ca, "check --ca"),
            (E::HandshakeTimeout, psk, "is a CoAPS server running"),
        ];
        for (e, cx, want) in &table {
            let hint = dtls_hint(e, cx);
            assert!(hint.contains(want), "{e:?} with {cx:?}: {hint:?} lacks {want:?}");
        }
        // The hints never tell the user to add what is already there.
        assert!(!dtls_hint(&E::AlertReceived(A::HandshakeFailure), &psk).contains("PSK needs"));
        assert!(!dtls_hint(&E::AlertReceived(A::HandshakeFailure), &ca).contains("need --ca"));
        assert_eq!(dtls_hint(&E::Crypto, &psk), "");
    }

    #[test]
    fn errors_are_explained() {
        let e: BoxError = Box::new(coaps_dtls::Error::AlertReceived(coaps_dtls::AlertDescription::UnknownPskIdentity));
        let s = describe_error(e.as_ref());
        assert!(s.contains("does not know this PSK identity: check -u"), "{s}");
        let e: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(describe_error(e.as_ref()).contains("nothing listens"));
    }
}
