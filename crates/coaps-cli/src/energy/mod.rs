//! `coaps energy`: the energy of a DTLS handshake on a battery-powered radio, computed from
//! handshakes **actually run**, not from assumed message sizes.
//!
//! Every [`Mode`] runs in-process between this engine's client and server over the
//! deterministic simulator ([`coaps_sim`]) with the RTT and loss asked for ([`run`]); every
//! datagram is counted where it is sent. Each row is one wake-up of a battery device: the
//! handshake, one 32-byte CoAP GET ([`run::request`], the same in every mode) and its answer,
//! until the device has the answer: so 0-RTT, which sends the request beside its ClientHello,
//! saves the request's round trip that every other mode pays after its handshake. A [`Radio`] model ([`radio`], where its numbers and
//! their sources are) turns the transcript into radio-on time and charge, and the charge into
//! handshakes per battery and the battery's share spent on reconnects ([`Row`]).
//!
//! Without loss each row is one run (the simulator is deterministic). With loss, each row is
//! run over [`LOSSY_SEEDS`] seeds; the row shows the run of median energy (so every number in
//! it comes from one real transcript), plus the mean energy and how many seeds completed.
//!
//! Timers: both sides run the radio's link profile ([`Radio::link`], [`Timers::Link`], as
//! `coaps --link PROFILE --rtt MS` would) with the RTT as its hint
//! ([`run::link_retransmit_policy`]): `lte-m` and `nb-iot` start at max(floor, 5 × RTT),
//! `802.15.4` at max(1 s, 5 × RTT), `wifi` at RFC 6347's 1 s, each with its handshake budget in
//! time. [`timer_sweep`] compares `nb-iot` with the RFC timers over a range of losses.
//!
//! ```
//! use coaps_cli::energy::{self, Mode, Params, radio};
//!
//! let params = Params { rtt: None, loss: 0.0, reconnects_per_day: 100, battery_mah: 2000.0 };
//! let row = energy::row(radio::NRF9160_LTE_M, Mode::Dtls13Psk, &params).unwrap();
//! assert_eq!(row.handshake_round_trips, 2); // HelloRetryRequest, then the handshake proper
//! assert_eq!(row.round_trips, 3); // then the request and its answer
//! assert!(row.energy_uah > 0.0);
//! ```

pub mod plot;
pub mod radio;
pub mod run;

pub use radio::Radio;
pub use run::{Link, Mode, Timers, Transcript};

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, EnergyArgs};
use serde::Serialize;
use std::time::Duration;

/// Seeds per row when `--loss` is above zero.
pub const LOSSY_SEEDS: u64 = 32;
/// Losses of the timer sweep, percent.
pub const SWEEP_LOSSES: [u32; 6] = [0, 5, 10, 20, 30, 40];
/// RTT of the timer sweep without `--rtt`: issue 11's NB-IoT case (750 ms each way), where
/// RFC 6347's 1 s timer fires before any answer can arrive.
pub const SWEEP_RTT: Duration = Duration::from_millis(1500);
/// Modes of the timer sweep.
pub const SWEEP_MODES: [Mode; 2] = [Mode::Dtls12Psk, Mode::Dtls13Psk];

/// What the report is computed for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Round-trip time; `None`: each radio's [`Radio::typical_rtt`].
    pub rtt: Option<Duration>,
    /// Loss probability each way, in `[0, 1)`.
    pub loss: f64,
    /// Reconnects (full or resumed handshakes) per day, for the battery figures.
    pub reconnects_per_day: u32,
    /// Battery capacity, mAh.
    pub battery_mah: f64,
}

/// One row of the report: one mode on one radio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Radio name.
    pub radio: &'static str,
    /// Mode name.
    pub mode: &'static str,
    /// Round-trip time the handshake ran with, ms.
    pub rtt_ms: u64,
    /// Loss each way, percent.
    pub loss_percent: f64,
    /// Retransmission timers: the radio's link profile (`lte-m`, `nb-iot`, `802.15.4`, `wifi`).
    pub timer: &'static str,
    /// Runs (seeds) behind the row.
    pub seeds: u64,
    /// Runs that completed.
    pub completed: u64,
    /// Datagrams the client sent (retransmissions included).
    pub datagrams_up: usize,
    /// Datagrams the server sent to the client.
    pub datagrams_down: usize,
    /// UDP payload bytes the client sent.
    pub bytes_up: usize,
    /// UDP payload bytes the server sent.
    pub bytes_down: usize,
    /// Round trips until the client had the answer to its request (the handshake's, plus the
    /// request's own unless it went as 0-RTT early data).
    pub round_trips: usize,
    /// Round trips until the client was connected (the `wire_bytes` bench's RT).
    pub handshake_round_trips: usize,
    /// Flight retransmissions, both sides.
    pub retransmissions: u64,
    /// Times the client sent the CoAP request again (no answer within its ACK_TIMEOUT).
    pub request_retransmissions: u64,
    /// CoAP bytes of the request (the same in every mode).
    pub request_bytes: usize,
    /// CoAP bytes of the answer.
    pub answer_bytes: usize,
    /// The server took the request as 0-RTT early data.
    pub request_early: bool,
    /// Time from the client's first datagram to `Connected`, ms.
    pub completion_ms: f64,
    /// Time from the client's first datagram until it had the answer, ms: the wait the radio
    /// is charged for.
    pub answer_at_ms: f64,
    /// Transmit airtime, ms.
    pub tx_ms: f64,
    /// Receive airtime, ms.
    pub rx_ms: f64,
    /// Radio-on time: waiting until the answer + TX + RX airtime, ms.
    pub radio_ms: f64,
    /// Charge of the wake-up (handshake, request, answer), µAh.
    pub energy_uah: f64,
    /// Mean charge over the completed seeds, µAh (equals `energy_uah` without loss).
    pub energy_uah_mean: f64,
    /// Wake-ups (handshake, request, answer) a full battery pays for (radio only).
    pub handshakes_per_battery: f64,
    /// Reconnects per day the battery figures assume.
    pub reconnects_per_day: u32,
    /// Battery capacity the figures assume, mAh.
    pub battery_mah: f64,
    /// Charge spent on the wake-ups per day, mAh.
    pub mah_per_day: f64,
    /// Share of the battery spent on the wake-ups per year, percent.
    pub battery_percent_per_year: f64,
    /// Days the battery would last on the wake-ups alone.
    pub battery_days: f64,
}

fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Radio-on time and charge of a transcript on `radio` (see [`radio`] for the model):
/// `(tx, rx, radio_on, µAh)`.
pub fn charge(radio: &Radio, t: &Transcript) -> (Duration, Duration, Duration, f64) {
    let (mut tx, mut rx) = (Duration::ZERO, Duration::ZERO);
    for &len in &t.up {
        let (send, acks) = radio.send_airtime(len);
        tx += send;
        rx += acks;
    }
    for &len in &t.received {
        let (receive, acks) = radio.receive_airtime(len);
        rx += receive;
        tx += acks;
    }
    // The device listens until it has the answer (until connected for a handshake alone).
    let wait = t.answered.unwrap_or(t.completion);
    let on = wait + tx + rx;
    // mA × s = mAs; 1 µAh = 3.6 mAs.
    let mas = radio.tx_ma * tx.as_secs_f64() + radio.rx_ma * (rx + wait).as_secs_f64();
    (tx, rx, on, mas / 3.6)
}

/// The row of `mode` on `radio`: runs the handshake, the request and its answer (over
/// [`LOSSY_SEEDS`] seeds with loss) and applies the radio model. `Err` when no seed completed.
pub fn row(radio: Radio, mode: Mode, p: &Params) -> Result<Row, run::Failed> {
    let rtt = p.rtt.unwrap_or(radio.typical_rtt);
    let seeds = if p.loss > 0.0 { LOSSY_SEEDS } else { 1 };
    let mut runs: Vec<(f64, Transcript)> = Vec::new();
    let mut last_error = None;
    for seed in 0..seeds {
        match run::run(mode, Link { rtt, loss: p.loss, seed }, Timers::Link(radio.link)) {
            Ok(t) => runs.push((charge(&radio, &t).3, t)),
            Err(e) => last_error = Some(e),
        }
    }
    if runs.is_empty() {
        return Err(last_error.unwrap_or_else(|| run::Failed("no run".into())));
    }
    let mean = runs.iter().map(|(e, _)| e).sum::<f64>() / runs.len() as f64;
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let completed = runs.len() as u64;
    let (_, t) = runs.swap_remove(runs.len() / 2);
    let (tx, rx, on, uah) = charge(&radio, &t);
    // The battery figures follow from the energy as shown, so a reader can redo them.
    let uah = round(uah, 3);
    let mah_per_day = f64::from(p.reconnects_per_day) * uah / 1000.0;
    Ok(Row {
        radio: radio.name,
        mode: mode.name(),
        rtt_ms: rtt.as_millis() as u64,
        loss_percent: round(p.loss * 100.0, 3),
        timer: Timers::Link(radio.link).name(),
        seeds,
        completed,
        datagrams_up: t.up.len(),
        datagrams_down: t.down.len(),
        bytes_up: t.up.iter().sum(),
        bytes_down: t.down.iter().sum(),
        round_trips: t.answer_round_trips.unwrap_or(t.round_trips),
        handshake_round_trips: t.round_trips,
        retransmissions: t.retransmissions,
        request_retransmissions: t.request_retransmissions,
        request_bytes: t.request_bytes,
        answer_bytes: t.answer_bytes,
        request_early: t.early_data_accepted,
        completion_ms: round(ms(t.completion), 3),
        answer_at_ms: round(ms(t.answered.unwrap_or(t.completion)), 3),
        tx_ms: round(ms(tx), 3),
        rx_ms: round(ms(rx), 3),
        radio_ms: round(ms(on), 3),
        energy_uah: uah,
        energy_uah_mean: round(mean, 3),
        handshakes_per_battery: (p.battery_mah * 1000.0 / uah).floor(),
        reconnects_per_day: p.reconnects_per_day,
        battery_mah: p.battery_mah,
        mah_per_day: round(mah_per_day, 4),
        battery_percent_per_year: round(mah_per_day * 365.0 / p.battery_mah * 100.0, 3),
        battery_days: round(p.battery_mah / mah_per_day, 1),
    })
}

/// One point of the timer sweep: `mode` with `timers` at `loss_percent`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// Mode name.
    pub mode: &'static str,
    /// Timer name.
    pub timer: &'static str,
    /// RTT, ms.
    pub rtt_ms: u64,
    /// Loss each way, percent.
    pub loss_percent: u32,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that completed within the timers' budget (RFC 6347: 7 tries, 120 s; `nb-iot`: 20
    /// minutes).
    pub completed: u64,
    /// Median completion time of those that completed, seconds.
    pub median_s: f64,
    /// Mean flight retransmissions (both sides) of those that completed.
    pub mean_retransmissions: f64,
}

/// Handshake completion time against loss, RFC 6347 timers against the `nb-iot` profile, for
/// [`SWEEP_MODES`] at `rtt`, [`LOSSY_SEEDS`] seeds per point.
pub fn timer_sweep(rtt: Duration) -> Vec<SweepPoint> {
    let mut points = Vec::new();
    for mode in SWEEP_MODES {
        for timers in [Timers::Rfc6347, Timers::Link(coaps_dtls::LinkProfile::NbIot)] {
            for loss in SWEEP_LOSSES {
                let mut done: Vec<Transcript> = (0..LOSSY_SEEDS)
                    .filter_map(|seed| {
                        run::run_handshake(mode, Link { rtt, loss: f64::from(loss) / 100.0, seed }, timers).ok()
                    })
                    .collect();
                done.sort_by_key(|t| t.completion);
                let median_s = done.get(done.len() / 2).map_or(f64::NAN, |t| round(t.completion.as_secs_f64(), 3));
                let retx = done.iter().map(|t| t.retransmissions as f64).sum::<f64>() / done.len().max(1) as f64;
                points.push(SweepPoint {
                    mode: mode.name(),
                    timer: timers.name(),
                    rtt_ms: rtt.as_millis() as u64,
                    loss_percent: loss,
                    seeds: LOSSY_SEEDS,
                    completed: done.len() as u64,
                    median_s,
                    mean_retransmissions: round(retx, 2),
                });
            }
        }
    }
    points
}

/// Checks the command line's values; the message says what is wrong and what is accepted.
pub fn params(args: &EnergyArgs) -> Result<(Vec<Radio>, Params), String> {
    let mut radios = Vec::new();
    for name in &args.radio {
        let r = radio::by_name(name).ok_or_else(|| {
            let known: Vec<_> = radio::ALL.iter().map(|r| r.name).collect();
            format!("unknown radio `{name}`; known radios: {}", known.join(", "))
        })?;
        if !radios.contains(&r) {
            radios.push(r);
        }
    }
    if radios.is_empty() {
        radios = radio::ALL.to_vec();
    }
    Ok((
        radios,
        Params {
            rtt: args.rtt.map(|ms| Duration::from_millis(u64::from(ms))),
            loss: args.loss / 100.0,
            reconnects_per_day: args.reconnects_per_day,
            battery_mah: f64::from(args.battery_mah),
        },
    ))
}

/// Runs `coaps energy`; returns the exit status.
pub fn command(args: EnergyArgs) -> u8 {
    let (radios, p) = match params(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut rows = Vec::new();
    for radio in &radios {
        for mode in Mode::ALL {
            match row(*radio, mode, &p) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    eprintln!(
                        "error: {mode} on {} completed on none of {} seeds ({e}); lower --loss",
                        radio.name,
                        if p.loss > 0.0 { LOSSY_SEEDS } else { 1 }
                    );
                    return EXIT_FAILURE;
                }
            }
        }
    }
    let sweep = args.out.as_ref().map(|_| timer_sweep(p.rtt.unwrap_or(SWEEP_RTT)));
    if let (Some(dir), Some(sweep)) = (&args.out, &sweep) {
        match plot::write_all(dir, &rows, sweep) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: cannot write the plots to {}: {e}", dir.display());
                return EXIT_FAILURE;
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        print!("{}", table(&radios, &rows, &p));
        if let Some(sweep) = &sweep {
            print!("{}", sweep_table(sweep));
        }
    }
    EXIT_OK
}

/// The human-readable report: one Markdown table per radio.
pub fn table(radios: &[Radio], rows: &[Row], p: &Params) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for radio in radios {
        let rtt = p.rtt.unwrap_or(radio.typical_rtt);
        let _ = writeln!(
            s,
            "{} ({}), RTT {} ms, loss {} %",
            radio.name,
            radio.description,
            rtt.as_millis(),
            p.loss * 100.0
        );
        s.push('\n');
        let _ = writeln!(
            s,
            "| mode                 | dg up/down | bytes up/down | RT | retx | radio ms | energy µAh | wake-ups/battery   | % battery/year at {}/day |",
            p.reconnects_per_day
        );
        s.push_str("|----------------------|------------|---------------|----|------|----------|------------|--------------------|------------------------|\n");
        for r in rows.iter().filter(|r| r.radio == radio.name) {
            let _ = writeln!(
                s,
                "| {:<20} | {:>4} / {:<3} | {:>6} / {:<5} | {:>2} | {:>4} | {:>8.1} | {:>10.3} | {:>18.0} | {:>22.3} |",
                r.mode,
                r.datagrams_up,
                r.datagrams_down,
                r.bytes_up,
                r.bytes_down,
                r.round_trips,
                r.retransmissions,
                r.radio_ms,
                r.energy_uah,
                r.handshakes_per_battery,
                r.battery_percent_per_year
            );
        }
        s.push('\n');
    }
    if let Some(r) = rows.first() {
        let _ = writeln!(
            s,
            "Each row: the handshake, then one {}-byte CoAP GET and its {}-byte answer (0-RTT: the GET beside the \
             ClientHello); RT and radio ms until the device has the answer.",
            r.request_bytes, r.answer_bytes
        );
    }
    let _ = writeln!(
        s,
        "Battery: {} mAh, {} reconnects/day. Radio model and sources: `coaps energy --help` and the README.",
        p.battery_mah, p.reconnects_per_day
    );
    s
}

/// The timer sweep as a Markdown table.
pub fn sweep_table(points: &[SweepPoint]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(p) = points.first() {
        let _ = writeln!(s, "\nHandshake completion vs loss, RTT {} ms, {} seeds per point", p.rtt_ms, p.seeds);
    }
    s.push_str("\n| mode         | timer        | loss % | completed | median s | mean retx |\n");
    s.push_str("|--------------|--------------|--------|-----------|----------|-----------|\n");
    for p in points {
        let _ = writeln!(
            s,
            "| {:<12} | {:<12} | {:>6} | {:>4} / {:<3}| {:>8.3} | {:>9.2} |",
            p.mode, p.timer, p.loss_percent, p.completed, p.seeds, p.median_s, p.mean_retransmissions
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params { rtt: None, loss: 0.0, reconnects_per_day: 100, battery_mah: 2000.0 }
    }

    #[test]
    fn charge_is_currents_times_times() {
        let t = Transcript {
            up: vec![100],
            down: vec![200],
            received: vec![200],
            completion: Duration::from_millis(150),
            ..Transcript::default()
        };
        let (tx, rx, on, uah) = charge(&radio::NRF9160_LTE_M, &t);
        // 128 B at 375 kb/s; 228 B at 300 kb/s.
        assert_eq!(tx.as_micros(), 2730);
        assert_eq!(rx.as_micros(), 6080);
        assert_eq!(on, Duration::from_millis(150) + tx + rx);
        let expect = (230.0 * 0.002_730_666 + 46.0 * (0.006_08 + 0.15)) / 3.6;
        assert!((uah - expect).abs() < 1e-3, "{uah} vs {expect}");
    }

    #[test]
    fn battery_figures_follow_the_energy() {
        let r = row(radio::NRF9160_LTE_M, Mode::Dtls12Psk, &params()).unwrap();
        assert_eq!((r.seeds, r.completed), (1, 1));
        assert!((r.mah_per_day - 100.0 * r.energy_uah / 1000.0).abs() < 1e-3);
        assert!((r.handshakes_per_battery - (2_000_000.0 / r.energy_uah).floor()).abs() <= 1.0);
        assert!((r.battery_days * r.mah_per_day - 2000.0).abs() / 2000.0 < 1e-2);
        assert_eq!(r.energy_uah, r.energy_uah_mean);
    }

    #[test]
    fn waiting_dominates_on_cellular_and_airtime_on_802_15_4() {
        let lte = row(radio::NRF9160_LTE_M, Mode::Dtls12Psk, &params()).unwrap();
        assert!(lte.completion_ms > 10.0 * (lte.tx_ms + lte.rx_ms));
        let lowpan = row(radio::IEEE_802_15_4, Mode::Dtls12EcdheEcdsa, &params()).unwrap();
        assert!(lowpan.tx_ms + lowpan.rx_ms > 30.0, "{lowpan:?}");
    }

    #[test]
    fn a_longer_rtt_costs_more() {
        let short = row(radio::NB_IOT, Mode::Dtls13Psk, &Params { rtt: Some(Duration::from_millis(100)), ..params() });
        let long = row(radio::NB_IOT, Mode::Dtls13Psk, &Params { rtt: Some(Duration::from_millis(2000)), ..params() });
        let (short, long) = (short.unwrap(), long.unwrap());
        assert_eq!((short.bytes_up, short.bytes_down), (long.bytes_up, long.bytes_down));
        assert!(long.energy_uah > short.energy_uah * 5.0);
    }
}
