//! # coaps-cli
//!
//! The `coaps` command: a CoAPS demo server and a client in the style of libcoap's
//! `coap-client`.
//!
//! ```text
//! coaps serve [--listen ADDR] [-u IDENTITY -k KEY]... [--psk-file FILE]
//!             [--cert CERT.pem --key KEY.pem [--client-ca CA.pem]] [--dtls 1.2|1.3|auto]
//!             [--no-cookie] [--max-peers N] [--link PROFILE] [--max-half-open N]
//!             [--max-half-open-per-address N] [--max-half-open-per-prefix N]
//!             [--half-open-lifetime SECONDS] [--max-peers-per-address N]
//!             [--max-peers-per-identity N] [--min-idle-to-evict SECONDS]
//! coaps get|post|put|delete|fetch|patch|ipatch URI [-u IDENTITY -k KEY] [--ca CA.pem]
//!             [--cert CERT.pem --key KEY.pem] [--dtls 1.2|1.3] [-e PAYLOAD | -f FILE] [-o FILE]
//!             [-s SECONDS] [-b SIZE] [-t TYPE] [-A TYPE] [-O NUM,VALUE]... [-N] [-T TOKEN]
//!             [-v] [-B SECONDS] [--link PROFILE] [--rtt MILLISECONDS]
//! coaps energy [--radio NAME]... [--rtt MS] [--loss PERCENT] [--reconnects-per-day N]
//!             [--battery-mah N] [--json] [--out DIR]
//! coaps relay --listen ADDR --target ADDR [--delay MS] [--jitter MS] [--loss PERCENT]
//!             [--duplicate PERCENT] [--seed N] [--duration SECONDS]
//! ```
//!
//! * [`demo`]: the application `serve` hosts, a plain `tower::Service<CoapRequest>`.
//! * [`psk`]: `-k`/`--psk-hex` keys and the `--psk-file` format.
//! * [`uri`]: `coaps://` URIs to Uri-Path / Uri-Query options.
//! * [`transport`]: the `coaps-tower` stacks (cookie, retransmit, handshake and CoAP layers;
//!   `Client`).
//! * [`energy`]: energy per handshake from handshakes run over the simulator, radio models.
//! * [`relay`]: the UDP impairment relay.
//!
//! Usage, the PSK file format and the exit statuses are in the crate's `README.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod creds;
pub mod demo;
pub mod energy;
pub mod prometheus;
pub mod psk;
pub mod relay;
pub mod server;
pub mod sessions;
pub mod transfer;
pub mod transport;
pub mod uri;

use clap::{ArgMatches, CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use coap_lite::RequestType;
use creds::KeyArg;

/// The `-k` and `--psk-hex` values of `serve`, merged in command-line order so that the n-th
/// key pairs with the n-th `-u` whichever form each key was given in.
pub fn serve_keys(m: &ArgMatches) -> Vec<KeyArg<'_>> {
    let mut keys: Vec<(usize, KeyArg<'_>)> = Vec::new();
    for (id, text) in [("psk_key", true), ("psk_hex", false)] {
        let (Some(vals), Some(idx)) = (m.get_many::<String>(id), m.indices_of(id)) else { continue };
        for (v, i) in vals.zip(idx) {
            keys.push((i, if text { KeyArg::Text(v) } else { KeyArg::Hex(v) }));
        }
    }
    keys.sort_by_key(|(i, _)| *i);
    keys.into_iter().map(|(_, k)| k).collect()
}

/// Parses the process arguments (exiting with clap's message on a usage error), runs the
/// command and returns the exit status.
pub fn main_with_args(argv: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let matches = Cli::command().get_matches_from(cli::attach_verbose_level(argv.into_iter().collect()));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if let Command::Energy(args) = cli.command {
        return energy::command(args);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return cli::EXIT_FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let sub = matches.subcommand_matches("serve").unwrap_or(&matches);
            rt.block_on(server::run(args, serve_keys(sub)))
        }
        Command::Get(a) => rt.block_on(client::run(RequestType::Get, a)),
        Command::Post(a) => rt.block_on(client::run(RequestType::Post, a)),
        Command::Put(a) => rt.block_on(client::run(RequestType::Put, a)),
        Command::Delete(a) => rt.block_on(client::run(RequestType::Delete, a)),
        Command::Fetch(a) => rt.block_on(client::run(RequestType::Fetch, a)),
        Command::Patch(a) => rt.block_on(client::run(RequestType::Patch, a)),
        Command::IPatch(a) => rt.block_on(client::run(RequestType::IPatch, a)),
        Command::Energy(_) => unreachable!("handled above, without a runtime"),
        Command::Relay(a) => rt.block_on(relay::run(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pair_in_command_line_order() {
        let m = Cli::command()
            .try_get_matches_from([
                "coaps",
                "serve",
                "-u",
                "a",
                "--psk-hex",
                "01",
                "-u",
                "b",
                "-k",
                "two",
                "-u",
                "c",
                "-k",
                "three",
            ])
            .unwrap();
        let keys = serve_keys(m.subcommand_matches("serve").unwrap());
        let shown: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(shown, [r#"Hex("01")"#, r#"Text("two")"#, r#"Text("three")"#]);
    }

    #[test]
    fn clap_refuses_incomplete_credentials() {
        let e = |args: &[&str]| Cli::command().try_get_matches_from(args).unwrap_err().to_string();
        assert!(e(&["coaps", "get", "coaps://h/", "-k", "x"]).contains("-u <IDENTITY>"));
        assert!(e(&["coaps", "get", "coaps://h/", "-u", "x"]).contains("-k <KEY>"));
        assert!(
            e(&["coaps", "get", "coaps://h/", "-u", "x", "-k", "y", "--psk-hex", "00"]).contains("cannot be used with")
        );
        assert!(e(&["coaps", "get", "coaps://h/", "--cert", "c.pem", "--key", "k.pem"]).contains("--ca <CA.pem>"));
        assert!(e(&["coaps", "serve", "--cert", "c.pem"]).contains("--key <KEY.pem>"));
        assert!(e(&["coaps", "serve", "--max-peers", "0"]).contains("--max-peers"));
        assert!(e(&["coaps", "serve", "--max-half-open-per-address", "0"]).contains("--max-half-open-per-address"));
        assert!(e(&["coaps", "serve", "--half-open-lifetime", "0"]).contains("--half-open-lifetime"));
        assert!(e(&["coaps", "get"]).contains("<URI>"));
        Cli::command().debug_assert();
    }
}
