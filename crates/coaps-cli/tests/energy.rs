//! `coaps energy`: usage errors, the JSON rows (fields, the LTE-M ordering, byte counts equal
//! to the `wire_bytes` bench's own harness running the same handshake + request + answer), the
//! SVG plots, and a lossy run.

use coaps_bench_support::{Mode as BenchMode, Outcome, ours};
use coaps_cli::energy::run::{answer, request};
use coaps_dtls::CipherSuite;
use coaps_test_support::cli::{coaps, run, show};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

fn energy(args: &[&str]) -> std::process::Output {
    let mut cmd = coaps();
    cmd.arg("energy").args(args);
    run(cmd, LIMIT)
}

fn json_rows(args: &[&str]) -> Vec<Value> {
    let out = energy(&[args, &["--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    v.as_array().expect("one JSON array").clone()
}

fn num(row: &Value, field: &str) -> f64 {
    row[field].as_f64().unwrap_or_else(|| panic!("{field} missing or not a number in {row}"))
}

fn find<'a>(rows: &'a [Value], radio: &str, mode: &str) -> &'a Value {
    rows.iter().find(|r| r["radio"] == radio && r["mode"] == mode).unwrap_or_else(|| panic!("no row {radio} {mode}"))
}

#[test]
fn bad_input_is_a_usage_error() {
    for (args, expect) in [
        (&["--loss", "150"][..], "--loss"),
        (&["--loss", "-1"], "--loss"),
        (&["--loss", "lots"], "not a number; give a percentage from 0 to 90"),
        (&["--rtt", "0"], "--rtt"),
        (&["--rtt", "-5"], "give a round-trip time in milliseconds from 1 to 60000"),
        (&["--rtt", "86400000"], "--rtt"),
        (&["--rtt", "1.5"], "not a whole number"),
        (&["--reconnects-per-day", "0"], "--reconnects-per-day"),
        (&["--reconnects-per-day", "-3"], "reconnects per day from 1 to 1000000"),
        (&["--battery-mah", "-2000"], "give a capacity in mAh from 1 to 1000000"),
        (&["--battery-mah", "99999999999999999999999999999999999999999"], "--battery-mah"),
        (&["--radio", "lora"], "unknown radio `lora`; known radios: nrf9160-lte-m, nb-iot, 802.15.4, esp32-wifi"),
    ] {
        let out = energy(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?} should mention {expect:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn json_rows_have_the_fields_and_the_lte_m_ordering() {
    let rows = json_rows(&[]);
    let radios = ["nrf9160-lte-m", "nb-iot", "802.15.4", "esp32-wifi"];
    let modes = [
        "dtls1.2-psk",
        "dtls1.2-psk-nocookie",
        "dtls1.2-ecdhe-ecdsa",
        "dtls1.2-resumption",
        "dtls1.3-cert",
        "dtls1.3-psk",
        "dtls1.3-resumption",
        "dtls1.3-0rtt",
    ];
    assert_eq!(rows.len(), radios.len() * modes.len());
    for radio in radios {
        for mode in modes {
            let r = find(&rows, radio, mode);
            for field in [
                "datagrams_up",
                "datagrams_down",
                "bytes_up",
                "bytes_down",
                "round_trips",
                "handshake_round_trips",
                "retransmissions",
                "request_retransmissions",
                "request_bytes",
                "answer_bytes",
                "completion_ms",
                "answer_at_ms",
                "radio_ms",
                "energy_uah",
                "handshakes_per_battery",
                "battery_percent_per_year",
            ] {
                assert!(num(r, field) >= 0.0, "{radio} {mode} {field}");
            }
            assert!(num(r, "energy_uah") > 0.0 && num(r, "radio_ms") > 0.0);
            assert_eq!(num(r, "retransmissions"), 0.0, "no loss, no spurious timer: {r}");
            assert_eq!(num(r, "request_retransmissions"), 0.0, "no loss, no spurious CoAP timer: {r}");
            assert_eq!(num(r, "request_bytes"), 32.0, "the same request in every mode: {r}");
            assert_eq!(num(r, "answer_bytes"), answer().len() as f64);
            assert_eq!(r["request_early"].as_bool(), Some(mode == "dtls1.3-0rtt"), "{r}");
            // The request costs a round trip after the handshake, except as 0-RTT early data.
            let extra = if mode == "dtls1.3-0rtt" { 0.0 } else { 1.0 };
            assert_eq!(num(r, "round_trips"), num(r, "handshake_round_trips") + extra, "{r}");
            assert!(num(r, "answer_at_ms") >= num(r, "completion_ms"), "{r}");
            assert_eq!((num(r, "reconnects_per_day"), num(r, "battery_mah")), (100.0, 2000.0));
        }
    }
    // Issue 11: on LTE-M, 1.3 0-RTT < 1.3 resumption < 1.3 full PSK < 1.2 full PSK, on the
    // measured energy of a wake-up (handshake, request, answer).
    let lte = |mode| num(find(&rows, "nrf9160-lte-m", mode), "energy_uah");
    let order = ["dtls1.3-0rtt", "dtls1.3-resumption", "dtls1.3-psk", "dtls1.2-psk"];
    for pair in order.windows(2) {
        assert!(lte(pair[0]) < lte(pair[1]), "{} ({}) < {} ({})", pair[0], lte(pair[0]), pair[1], lte(pair[1]));
    }
    // The radios differ in time, not in bytes.
    for mode in modes {
        let lte = find(&rows, "nrf9160-lte-m", mode);
        let lowpan = find(&rows, "802.15.4", mode);
        assert_eq!(lte["bytes_up"], lowpan["bytes_up"], "{mode}");
        assert_eq!(lte["round_trips"], lowpan["round_trips"], "{mode}");
    }
}

/// What `benches/wire_bytes.rs` measures for `mode` in its "handshake + request + answer"
/// table (with its warm-up run first): the bench's own in-memory harness, not the simulator.
fn bench_figures(mode: &str) -> Outcome {
    let ccm8 = CipherSuite::TLS_AES_128_CCM_8_SHA256;
    let (req, ans) = (request(), answer());
    let twice = |h: &mut ours::Harness, resume: bool| {
        if resume {
            h.prime_session();
        }
        h.exchange(resume, false, &req, &ans);
        h.exchange(resume, false, &req, &ans)
    };
    match mode {
        "dtls1.2-psk" => twice(&mut ours::Harness::new(BenchMode::PskCcm8), false),
        "dtls1.2-psk-nocookie" => twice(&mut ours::Harness::with(BenchMode::PskCcm8, |c| c.cookie = None), false),
        "dtls1.2-ecdhe-ecdsa" => twice(&mut ours::Harness::new(BenchMode::EcdsaCcm8), false),
        "dtls1.2-resumption" => twice(&mut ours::Harness::new(BenchMode::PskCcm8), true),
        "dtls1.3-cert" => twice(&mut ours::Harness::with13(BenchMode::EcdsaCcm8, ccm8, |_| {}), false),
        "dtls1.3-psk" => twice(&mut ours::Harness::with13(BenchMode::PskCcm8, ccm8, |_| {}), false),
        "dtls1.3-resumption" => {
            twice(&mut ours::Harness::with13(BenchMode::PskCcm8, ccm8, |c| c.skip_cookie_on_resumption = true), true)
        }
        "dtls1.3-0rtt" => {
            let mut h = ours::Harness::with13(BenchMode::PskCcm8, ccm8, |c| {
                c.early_data = Some(coaps_dtls::EarlyDataConfig::default())
            });
            h.prime_session();
            h.exchange(true, true, &req, &ans);
            h.exchange(true, true, &req, &ans)
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn byte_counts_equal_the_wire_bytes_bench() {
    let rows = json_rows(&["--radio", "nrf9160-lte-m", "--radio", "nb-iot"]);
    assert_eq!(rows.len(), 16);
    let mut seen = HashMap::new();
    for r in &rows {
        let mode = r["mode"].as_str().unwrap();
        let o = seen.entry(mode.to_owned()).or_insert_with(|| bench_figures(mode));
        let w = &o.wire;
        let got = |f| num(r, f) as usize;
        assert_eq!(
            (got("datagrams_up"), got("datagrams_down"), got("bytes_up")),
            (w.c2s_datagrams, w.s2c_datagrams, w.c2s_bytes),
            "{mode}: {r} vs {w:?}"
        );
        assert_eq!((got("handshake_round_trips"), got("round_trips")), (w.round_trips, w.answer_round_trips), "{mode}");
        if mode.contains("ecdsa") || mode.contains("cert") {
            // The server's one ECDSA signature (ServerKeyExchange / CertificateVerify) is DER:
            // r and s are 32 bytes plus a 0x00 when their top bit is set, so its length varies
            // by up to 2 bytes with the handshake's randoms, which differ between the two
            // harnesses.
            assert!(got("bytes_down").abs_diff(w.s2c_bytes) <= 2, "{mode}: {} vs {}", got("bytes_down"), w.s2c_bytes);
        } else {
            assert_eq!(got("bytes_down"), w.s2c_bytes, "{mode}: {r}");
        }
    }
    assert_eq!(seen.len(), 8);
}

fn svg_texts(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(|t| t.trim().to_owned()).collect()
}

#[test]
fn svg_plots_are_valid_and_show_the_numbers() {
    let dir = std::env::temp_dir().join(format!("coaps-energy-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap();
    let rows = json_rows(&["--radio", "nrf9160-lte-m", "--radio", "802.15.4", "--out", dir_arg]);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("energy.json")).unwrap()).unwrap();
    assert_eq!(written.as_array().unwrap(), &rows, "energy.json holds the --json rows");

    let texts = svg_texts(&dir.join("energy.svg"));
    for r in &rows {
        let label = format!("{:.3}", num(r, "energy_uah"));
        assert!(texts.contains(&label), "energy.svg lacks {label} ({}): {texts:?}", r["mode"]);
    }
    for mode in ["dtls1.2-psk", "dtls1.3-0rtt"] {
        assert!(texts.iter().any(|t| t == mode), "x axis names {mode}");
    }
    assert!(texts.iter().any(|t| t.starts_with("nrf9160-lte-m:")) && texts.iter().any(|t| t.starts_with("802.15.4:")));

    let sweep: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("timers.json")).unwrap()).unwrap();
    let sweep = sweep.as_array().unwrap();
    assert_eq!(sweep.len(), 2 * 2 * 6);
    let texts = svg_texts(&dir.join("timers.svg"));
    for p in sweep {
        let label = format!("{:.3} ({}/{})", num(p, "median_s"), num(p, "completed"), num(p, "seeds"));
        assert!(texts.contains(&label), "timers.svg lacks {label}: {p}");
    }
    // At a 1.5 s RTT and no loss the RFC 1 s timer fires before every answer; the LPWAN timer
    // (7.5 s) never does, and both complete at the same time.
    let at = |mode: &str, timer: &str, loss: f64| {
        sweep
            .iter()
            .find(|p| p["mode"] == mode && p["timer"] == timer && num(p, "loss_percent") == loss)
            .unwrap_or_else(|| panic!("no sweep point {mode} {timer} {loss}"))
    };
    for mode in ["dtls1.2-psk", "dtls1.3-psk"] {
        let (rfc, lpwan) = (at(mode, "rfc6347", 0.0), at(mode, "nb-iot", 0.0));
        assert_eq!(num(rfc, "rtt_ms"), 1500.0);
        assert!(num(rfc, "mean_retransmissions") >= 2.0, "{rfc}");
        assert_eq!(num(lpwan, "mean_retransmissions"), 0.0, "{lpwan}");
        assert_eq!(num(rfc, "median_s"), num(lpwan, "median_s"));
    }
    // With its handshake budget in time the profile never completes fewer handshakes than the
    // RFC timers with their 7 tries and 120 s, whatever the loss.
    for p in sweep.iter().filter(|p| p["timer"] == "nb-iot") {
        let rfc = at(p["mode"].as_str().unwrap(), "rfc6347", num(p, "loss_percent"));
        assert!(num(p, "completed") >= num(rfc, "completed"), "{p} completed fewer than {rfc}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loss_means_seeds_retransmissions_and_more_energy() {
    let lossless = json_rows(&["--radio", "nb-iot"]);
    let lossy = json_rows(&["--radio", "nb-iot", "--loss", "20"]);
    for r in &lossy {
        let mode = r["mode"].as_str().unwrap();
        let clean = find(&lossless, "nb-iot", mode);
        assert_eq!(num(r, "seeds"), 32.0);
        assert!(num(r, "completed") >= 24.0, "{r}");
        assert!(num(r, "energy_uah_mean") >= num(clean, "energy_uah"), "{mode}: {r} vs {clean}");
    }
    let retx: f64 = lossy.iter().map(|r| num(r, "retransmissions")).sum();
    assert!(retx > 0.0, "20 % loss costs retransmissions somewhere: {lossy:?}");

    let out = energy(&["--radio", "nb-iot", "--loss", "20"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nb-iot (") && text.contains("| dtls1.3-0rtt"), "{text}");
}
