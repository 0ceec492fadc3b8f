//! The libcoap-style request options of `coaps get|post|put|delete|fetch|patch|ipatch`
//! (`-t`, `-A`, `-O`, `-N`, `-T`, `-b`, `-f`, `-o`, `-s`) and what happens after the
//! handshake: a block-wise exchange (RFC 7959) or an observation (RFC 7641).

use crate::cli::RequestArgs;
use coap_lite::{CoapOption, MessageType, Packet};
use coaps_tower::Client;
use coaps_tower::block::BlockOption;
use coaps_tower::block::client::{BlockError, BlockwiseOptions, send_blockwise};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Content-Format names accepted by `-t` and `-A` (RFC 7252 §12.3 and the IANA registry),
/// with libcoap's short forms.
pub const CONTENT_FORMATS: &[(&str, u16)] = &[
    ("text", 0),
    ("text/plain", 0),
    ("link", 40),
    ("application/link-format", 40),
    ("xml", 41),
    ("application/xml", 41),
    ("octet", 42),
    ("binary", 42),
    ("octet-stream", 42),
    ("application/octet-stream", 42),
    ("exi", 47),
    ("application/exi", 47),
    ("json", 50),
    ("application/json", 50),
    ("json-patch", 51),
    ("application/json-patch+json", 51),
    ("merge-patch", 52),
    ("application/merge-patch+json", 52),
    ("cbor", 60),
    ("application/cbor", 60),
    ("senml+json", 110),
    ("application/senml+json", 110),
    ("senml+cbor", 112),
    ("application/senml+cbor", 112),
];

/// Parses `-t`/`-A`: a name from [`CONTENT_FORMATS`] or a number 0–65535.
pub fn parse_content_format(s: &str) -> Result<u16, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u16>() {
        return Ok(n);
    }
    CONTENT_FORMATS.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)).map(|&(_, v)| v).ok_or_else(|| {
        let names: Vec<&str> = CONTENT_FORMATS.iter().map(|(n, _)| *n).filter(|n| !n.contains('/')).collect();
        format!("`{s}` is not a content format: give a number (0-65535) or one of {}", names.join(", "))
    })
}

/// An option given with `-O NUM,VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// The option number.
    pub number: u16,
    /// Its value.
    pub value: Vec<u8>,
}

/// Parses `-O NUM,VALUE`: VALUE is text, `0x` followed by hex digits for bytes, or empty.
pub fn parse_option(s: &str) -> Result<RawOption, String> {
    let (num, value) = s.split_once(',').unwrap_or((s, ""));
    let number: u16 = num.trim().parse().map_err(|_| {
        format!(
            "`{s}`: the option number `{num}` is not a number from 0 to 65535 (write -O NUM,VALUE, e.g. -O 2049,abc)"
        )
    })?;
    if number == 0 {
        return Err("option number 0 is reserved (RFC 7252 §12.2)".into());
    }
    let value = match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => decode_hex(hex).ok_or_else(|| format!("`{s}`: `0x{hex}` is not an even number of hex digits"))?,
        None => value.as_bytes().to_vec(),
    };
    if value.len() > 1034 {
        return Err(format!("`{s}`: an option value is at most 1034 bytes"));
    }
    Ok(RawOption { number, value })
}

/// A token given with `-T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(pub Vec<u8>);

/// Parses `-T TOKEN`: 1 to 8 bytes as hex digits (`0x` optional).
pub fn parse_token(s: &str) -> Result<Token, String> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    match decode_hex(hex) {
        Some(t) if !t.is_empty() && t.len() <= 8 => Ok(Token(t)),
        _ => Err(format!("`{s}` is not a token: give 1 to 8 bytes as hex digits, e.g. -T 0a1b2c")),
    }
}

/// Parses `-b SIZE`: a block size of 16, 32, 64, 128, 256, 512 or 1024 bytes.
pub fn parse_block_size(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(n @ (16 | 32 | 64 | 128 | 256 | 512 | 1024)) => Ok(n),
        _ => Err(format!("`{s}` is not a block size: give 16, 32, 64, 128, 256, 512 or 1024 (bytes)")),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// The request payload: `-e` text, or `-f FILE` (`-` reads stdin).
pub fn payload(args: &RequestArgs) -> Result<Option<Vec<u8>>, String> {
    if let Some(p) = &args.payload {
        return Ok(Some(p.as_bytes().to_vec()));
    }
    let Some(file) = &args.payload_file else { return Ok(None) };
    let mut buf = Vec::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("cannot read the payload from stdin: {e}"))?;
    } else {
        buf = std::fs::read(file).map_err(|e| format!("cannot read the payload file {}: {e}", file.display()))?;
    }
    Ok(Some(buf))
}

/// Adds `-t`, `-A`, `-O`, `-N`, `-T` to `request`.
pub fn apply(args: &RequestArgs, request: &mut Packet) {
    if let Some(t) = args.content_format {
        request.clear_option(CoapOption::ContentFormat);
        request.add_option(CoapOption::ContentFormat, uint(u32::from(t)));
    }
    if let Some(a) = args.accept {
        request.add_option(CoapOption::Accept, uint(u32::from(a)));
    }
    for o in &args.options {
        request.add_option(CoapOption::from(o.number), o.value.clone());
    }
    if args.non_confirmable {
        request.header.set_type(MessageType::NonConfirmable);
    }
    if let Some(Token(t)) = &args.token {
        request.set_token(t.clone());
    }
}

fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

/// What to do once connected (from `-b`, `-s`, `-o`).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Block-wise settings (`-b`).
    pub block: BlockwiseOptions,
    /// Observe for this long (`-s`).
    pub observe: Option<Duration>,
    /// Where payloads go (`-o`; stdout when `None`).
    pub output: Option<PathBuf>,
}

impl Plan {
    /// The plan of `args`.
    pub fn of(args: &RequestArgs) -> Self {
        Self {
            block: BlockwiseOptions {
                szx: args.block_size.map(|b| BlockOption::szx_for(usize::from(b))),
                ..BlockwiseOptions::default()
            },
            observe: args.observe.map(Duration::from_secs),
            output: args.output.clone(),
        }
    }
}

/// Sends `request` block-wise as needed; with an observation, prints the first answer and
/// every notification until the time is up, deregisters, and returns the first answer with
/// its payload already printed (emptied).
pub async fn send(client: &Client, request: Packet, plan: &Plan) -> Result<Packet, BlockError> {
    if let Some(path) = &plan.output
        && let Err(e) = std::fs::File::create(path)
    {
        eprintln!("error: cannot write the response to {}: {e}", path.display());
    }
    let Some(duration) = plan.observe else {
        let response = send_blockwise(client, request.clone(), &plan.block).await?;
        // 4.01 + Echo (RFC 9175): once more with the Echo value.
        return Ok(client.retry_with_echo(&request, response).await?);
    };
    let mut obs = coaps_tower::observe::client::observe(client, request).await?;
    let Some(first) = obs.next().await else { return Err(BlockError::Client(coaps_tower::ClientError::Timeout)) };
    if u8::from(first.header.code) >> 5 != 2 {
        return Ok(first);
    }
    if !obs.is_registered() {
        eprintln!("note: the server did not register the observation (no Observe option in its answer)");
        return Ok(first);
    }
    write_payload(plan, &first);
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        match tokio::time::timeout_at(deadline, obs.next()).await {
            Err(_) => break,
            Ok(None) => break,
            Ok(Some(n)) => {
                if u8::from(n.header.code) >> 5 == 2 {
                    write_payload(plan, &n);
                } else {
                    eprintln!("observation ended: the server answered {}", crate::client::code_text(n.header.code));
                    break;
                }
            }
        }
    }
    // Deregister (RFC 7641 §3.6); a failure here loses nothing already printed.
    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), obs.cancel())
        .await
        .unwrap_or(Err(coaps_tower::ClientError::Timeout))
    {
        tracing::debug!(error = %e, "could not deregister the observation");
    }
    let mut done = first;
    done.payload.clear();
    Ok(done)
}

/// Writes one payload to `-o FILE` (appending) or stdout, with a newline after text for the
/// terminal.
pub fn write_payload(plan: &Plan, p: &Packet) {
    let text = crate::client::is_text(p);
    let newline = text && !p.payload.is_empty() && !p.payload.ends_with(b"\n");
    match &plan.output {
        Some(path) => {
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(&p.payload));
            if let Err(e) = res {
                eprintln!("error: cannot write the response to {}: {e}", path.display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&p.payload);
            if newline {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_formats_by_name_and_number() {
        assert_eq!(parse_content_format("json"), Ok(50));
        assert_eq!(parse_content_format("application/cbor"), Ok(60));
        assert_eq!(parse_content_format("TEXT"), Ok(0));
        assert_eq!(parse_content_format("11542"), Ok(11542));
        let e = parse_content_format("jsn").unwrap_err();
        assert!(e.contains("json") && e.contains("number"), "{e}");
    }

    #[test]
    fn options_tokens_block_sizes() {
        assert_eq!(parse_option("2049,abc"), Ok(RawOption { number: 2049, value: b"abc".to_vec() }));
        assert_eq!(parse_option("2049,0x00ff"), Ok(RawOption { number: 2049, value: vec![0, 0xff] }));
        assert_eq!(parse_option("60"), Ok(RawOption { number: 60, value: vec![] }));
        assert!(parse_option("x,1").unwrap_err().contains("-O NUM,VALUE"));
        assert!(parse_option("0,1").unwrap_err().contains("reserved"));
        assert!(parse_option("5,0xabc").unwrap_err().contains("hex"));
        assert_eq!(parse_token("0a1b"), Ok(Token(vec![0x0a, 0x1b])));
        assert!(parse_token("00112233445566778899").is_err());
        assert!(parse_token("").is_err());
        assert_eq!(parse_block_size("64"), Ok(64));
        assert!(parse_block_size("100").unwrap_err().contains("16, 32"));
        assert!(parse_block_size("2048").is_err());
    }
}
