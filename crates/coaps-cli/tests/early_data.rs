//! `coaps serve --early-data` and `coaps get|post|put|delete --session-file F --early-data`
//! end to end with the binary: the `-v` lines `early data: accepted`, `early data: rejected`
//! and `early data: not sent (no ticket that allows it)`, and the demo door opened once per
//! command under both policies.

use coaps_test_support::cli::{door_count, door_request as request, early_data_line as early_line, serve, show};
use coaps_test_support::peers::temp_path;

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
        let before = door_count(server.port, &file);
        let commands = ["post", "put", "post"];
        for method in commands {
            let o = request(method, server.port, &file, true);
            assert!(o.status.success(), "{policy} {method}: {}", show(&o));
            assert_eq!(early_line(&o).as_deref(), Some("early data: accepted"), "{policy} {method}: {}", show(&o));
        }
        let after = door_count(server.port, &file);
        assert_eq!(after, before + commands.len() as u64, "{policy}: once per command");
    }
}
