//! `coaps://` URIs and their decomposition into CoAP options (RFC 7252 §6.1, §6.4).

use coap_lite::{CoapOption, Packet};
use std::fmt;
use std::net::IpAddr;

/// Default port of the `coaps` scheme (RFC 7252 §6.2).
pub const COAPS_DEFAULT_PORT: u16 = 5684;

/// A parsed `coaps://host[:port]/path?query` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapsUri {
    /// The host as written, without brackets for IPv6 literals.
    pub host: String,
    /// The port (5684 when absent).
    pub port: u16,
    /// Percent-decoded path segments; each becomes a Uri-Path option.
    pub path: Vec<String>,
    /// Percent-decoded query arguments; each becomes a Uri-Query option.
    pub query: Vec<String>,
}

impl CoapsUri {
    /// Parses `uri`; the error says what is wrong and, where possible, how to write it.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!(
                "`{uri}` is not a URI: write it as coaps://host[:port]/path, e.g. coaps://127.0.0.1/hello"
            ));
        };
        if !scheme.eq_ignore_ascii_case("coaps") {
            return Err(format!(
                "unsupported scheme `{scheme}://`: only coaps:// (CoAP over DTLS) is supported, \
                 e.g. coaps://{}",
                rest
            ));
        }
        // RFC 7252 §6.4 step 5: a fragment is an error.
        if rest.contains('#') {
            return Err(format!("`{uri}` has a fragment (`#...`): CoAP URIs cannot have one"));
        }
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("`{uri}` has user information (`...@`): CoAP URIs cannot have it"));
        }
        let (host, port) = split_host_port(authority).map_err(|e| format!("`{uri}`: {e}"))?;
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        // Step 8: an empty path or "/" gives no Uri-Path; otherwise every segment after the
        // leading "/" is one option, empty ones included.
        let path = if path.is_empty() || path == "/" {
            Vec::new()
        } else {
            path[1..]
                .split('/')
                .map(|s| percent_decode(s).map_err(|e| format!("`{uri}`: path: {e}")))
                .collect::<Result<_, _>>()?
        };
        // Step 9: each `&`-separated argument is one Uri-Query option.
        let query = match query {
            None | Some("") => Vec::new(),
            Some(q) => q
                .split('&')
                .map(|s| percent_decode(s).map_err(|e| format!("`{uri}`: query: {e}")))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self { host, port, path, query })
    }

    /// The host as an IP address, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host:port` for resolving (IPv6 literals bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Adds Uri-Host (only for a registered name, RFC 7252 §6.4 step 6), Uri-Path and Uri-Query.
    /// No Uri-Port: the request goes to that very port (step 7).
    pub fn add_options(&self, packet: &mut Packet) {
        if self.ip().is_none() {
            packet.add_option(CoapOption::UriHost, self.host.to_ascii_lowercase().into_bytes());
        }
        for seg in &self.path {
            packet.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &self.query {
            packet.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
    }
}

impl fmt::Display for CoapsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coaps://{}/{}", self.authority(), self.path.join("/"))?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query.join("&"))?;
        }
        Ok(())
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed `[` in the IPv6 address")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{h}]` is not an IPv6 address"));
        }
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return Err(format!("unexpected `{after}` after the IPv6 address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("IPv6 addresses must be in brackets, e.g. coaps://[::1]/hello".into());
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host: write coaps://HOST/..., e.g. coaps://127.0.0.1/hello".into());
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)) {
        return Err(format!("`{host}` is not a valid host name or address"));
    }
    let port = match port {
        None | Some("") => COAPS_DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(format!("`{p}` is not a port number (1-65535)")),
        },
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes; the result must be UTF-8 (Uri-Path and Uri-Query are strings).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match b.get(i + 1..i + 3) {
                Some(&[h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    out.push((hex_val(h) << 4) | hex_val(l))
                }
                _ => return Err(format!("bad percent escape in `{s}`: `%` must be followed by two hex digits")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CoapsUri {
        CoapsUri::parse(s).unwrap()
    }

    #[test]
    fn basic_forms() {
        let u = p("coaps://127.0.0.1:5700/hello");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.clone(), u.query.len()),
            ("127.0.0.1", 5700, vec!["hello".into()], 0)
        );
        assert_eq!(p("coaps://127.0.0.1").port, 5684);
        assert_eq!(p("coaps://127.0.0.1").path, Vec::<String>::new());
        assert_eq!(p("coaps://127.0.0.1/").path, Vec::<String>::new());
        assert_eq!(p("COAPS://localhost:/a").port, 5684);
        assert_eq!(p("coaps://[::1]:9/x").host, "::1");
        assert_eq!(p("coaps://[::1]:9/x").authority(), "[::1]:9");
        assert_eq!(p("coaps://[::1]").port, 5684);
        assert_eq!(p("coaps://h/.well-known/core").path, [".well-known", "core"]);
        assert_eq!(p("coaps://h/a/").path, ["a", ""]);
    }

    #[test]
    fn query_and_percent_decoding() {
        let u = p("coaps://h/a%20b/c?x=1&y=%26&z");
        assert_eq!(u.path, ["a b", "c"]);
        assert_eq!(u.query, ["x=1", "y=&", "z"]);
        let u = p("coaps://h?rt=demo");
        assert!(u.path.is_empty());
        assert_eq!(u.query, ["rt=demo"]);
        assert!(CoapsUri::parse("coaps://h/%zz").unwrap_err().contains("percent escape"));
        assert!(CoapsUri::parse("coaps://h/%2").unwrap_err().contains("percent escape"));
        assert!(CoapsUri::parse("coaps://h/%ff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn refusals_say_why() {
        let e = CoapsUri::parse("coap://127.0.0.1/hello").unwrap_err();
        assert!(e.contains("only coaps://") && e.contains("coaps://127.0.0.1/hello"), "{e}");
        assert!(CoapsUri::parse("http://x/").unwrap_err().contains("only coaps://"));
        assert!(CoapsUri::parse("127.0.0.1/hello").unwrap_err().contains("coaps://host"));
        assert!(CoapsUri::parse("coaps://h/x#frag").unwrap_err().contains("fragment"));
        assert!(CoapsUri::parse("coaps:///x").unwrap_err().contains("no host"));
        assert!(CoapsUri::parse("coaps://h:0/").unwrap_err().contains("port"));
        assert!(CoapsUri::parse("coaps://h:70000/").unwrap_err().contains("port"));
        assert!(CoapsUri::parse("coaps://::1/").unwrap_err().contains("brackets"));
        assert!(CoapsUri::parse("coaps://[::1/").unwrap_err().contains("unclosed"));
        assert!(CoapsUri::parse("coaps://[nope]/").unwrap_err().contains("not an IPv6"));
        assert!(CoapsUri::parse("coaps://u@h/").unwrap_err().contains("user information"));
    }

    #[test]
    fn options() {
        let mut pk = Packet::new();
        p("coaps://Example.COM/a/b?q=1&r").add_options(&mut pk);
        let list = |o| pk.get_option(o).map(|l| l.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(list(CoapOption::UriHost), [b"example.com".to_vec()]);
        assert_eq!(list(CoapOption::UriPath), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(list(CoapOption::UriQuery), [b"q=1".to_vec(), b"r".to_vec()]);
        assert!(list(CoapOption::UriPort).is_empty());
        // IP literals get no Uri-Host.
        let mut pk = Packet::new();
        p("coaps://127.0.0.1/hello").add_options(&mut pk);
        assert!(pk.get_option(CoapOption::UriHost).is_none());
        let mut pk = Packet::new();
        p("coaps://[::1]/hello").add_options(&mut pk);
        assert!(pk.get_option(CoapOption::UriHost).is_none());
    }
}
