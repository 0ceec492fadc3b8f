//! `coaps serve --early-data` and `coaps get|post|put|delete --session-file F --early-data`
//! end to end with the binary: the `-v` lines `early data: accepted`, `early data: rejected`
//! and `early data: not sent (no ticket that allows it)`, and the demo door opened once per
//! command under both policies.

use coaps_test_support::cli::{coaps, run, serve, show};
use coaps_test_support::peers::temp_path;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn request(method: &str, port: u16, file: &Path, early: bool) -> Output {
    let mut cmd = coaps();
    cmd.arg(method)
        .arg(format!("coaps://127.0.0.1:{port}/actuators/door"))
        .args(["--dtls", "1.3", "-v", "-B", "15", "--session-file"])
        .arg(file);
    if method != "get" {
        cmd.args(["-e", "open"]);
    }
    if early {
        cmd.arg("--early-data");
    }
    run(cmd, LIMIT)
}

fn early_line(o: &Output) -> Option<String> {
    String::from_utf8_lossy(&o.stderr).lines().find(|l| l.starts_with("early data: ")).map(str::to_owned)
}

fn door(port: u16, file: &Path) -> String {
    let o = request("get", port, file, false);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn early_data_lines_and_the_door_opens_once_per_command() {
    for policy in ["defer", "reject"] {
        // Cookies on (the default): the resumption layer decides the 0-RTT cookie exemption
        // with the ticket it fetches (RFC 9147 §5.1).
        let server = serve(&["--early-data", "--early-data-policy", policy]);
        let file = temp_path("early");
        // No file yet: nothing to send early with.
        let o = request("post", server.port, &file, true);
        assert!(o.status.success(), "{}", show(&o));
        assert_eq!(early_line(&o).as_deref(), Some("early data: not sent (no ticket that allows it)"), "{}", show(&o));
        let before: u64 = door(server.port, &file).parse().unwrap_or_else(|_| panic!("a count"));
        let commands = ["post", "put", "post"];
        for method in commands {
            let o = request(method, server.port, &file, true);
            assert!(o.status.success(), "{policy} {method}: {}", show(&o));
            assert_eq!(early_line(&o).as_deref(), Some("early data: accepted"), "{policy} {method}: {}", show(&o));
        }
        let after: u64 = door(server.port, &file).parse().unwrap();
        assert_eq!(after, before + commands.len() as u64, "{policy}: once per command");
    }
}
