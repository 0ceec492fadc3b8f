//! Radio models: currents, bit rates, framing and a typical round-trip time per radio, with
//! where each number comes from.
//!
//! # The model
//!
//! The radio of the device (the DTLS client) is on from its first datagram until it has the
//! answer to its one CoAP request (the handshake, then the request, then the answer: one
//! wake-up), and:
//!
//! * **transmits** for the airtime of every datagram it sends (retransmissions included):
//!   frames × fixed per-frame time + (UDP payload + header + per-frame overhead) × 8 / uplink
//!   rate, drawing the TX current;
//! * **receives** for the airtime of every datagram that reaches it, at the downlink rate,
//!   drawing the RX current (link-layer acknowledgements, where the radio has them, are
//!   charged to the other direction: a received frame costs an ACK transmission, a sent one an
//!   ACK reception);
//! * **waits**, listening at the RX current, for the time the simulator's clock advanced from
//!   its first datagram until it had the answer: propagation (the RTT given) and, under loss,
//!   the retransmission timers. The simulator does not model airtime, so it is added on top.
//!
//! `radio_ms` = wait + TX + RX airtime; energy = TX current × TX airtime + RX current × (RX
//! airtime + wait). Datagrams after the answer (DTLS 1.3's ACK of the NewSessionTicket, and the
//! ticket itself when it comes later) count with their airtime but add no wait.
//!
//! Not modelled (they are the same for every mode, or depend on the network operator): the
//! cellular attach / RRC connection set-up before the first datagram and the RRC inactivity
//! tail after the last (seconds at tens of mA on LTE-M and NB-IoT), PSM and eDRX sleep,
//! LTE's PDCP/RLC/MAC headers and scheduling grants, Wi-Fi association and contention
//! back-off, 802.15.4 CSMA-CA back-off and multi-hop forwarding, and the CPU's energy for the
//! cryptography. The figures are therefore the handshake's share of a connection, to compare
//! modes, not a device's whole wake-up.

use std::time::Duration;

/// Link-layer framing of one radio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    /// Header bytes added once per datagram: IPv4 + UDP (28), or their 6LoWPAN compressed
    /// form.
    pub datagram_header: usize,
    /// Largest link frame payload; longer datagrams are fragmented. `None`: no fragmentation
    /// at these sizes (the IP MTU is above the engine's 1152-byte datagrams).
    pub frame_payload: Option<usize>,
    /// Extra header bytes of every frame after the first (6LoWPAN FRAGN is one byte longer
    /// than FRAG1; both are in `frame_overhead`).
    pub fragment_header: usize,
    /// Bytes every frame adds at the link rate (MAC header, FCS, PHY header).
    pub frame_overhead: usize,
    /// Fixed airtime of every frame besides its bytes (preambles at a lower rate, inter-frame
    /// spaces), in microseconds.
    pub frame_fixed_us: f64,
    /// Airtime of the link-layer acknowledgement of every frame, in microseconds (0: none).
    pub ack_us: f64,
}

/// A radio: currents, rates, framing and the RTT assumed when `--rtt` is not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radio {
    /// The name on the command line and in the JSON.
    pub name: &'static str,
    /// What it models, for the text output.
    pub description: &'static str,
    /// Transmit current, mA.
    pub tx_ma: f64,
    /// Receive (and listen) current, mA.
    pub rx_ma: f64,
    /// Uplink (device → network) bit rate, kb/s.
    pub up_kbps: f64,
    /// Downlink bit rate, kb/s.
    pub down_kbps: f64,
    /// Framing.
    pub framing: Framing,
    /// Round-trip time assumed without `--rtt`.
    pub typical_rtt: Duration,
    /// The link profile whose retransmission timers the handshakes run (`coaps --link`).
    pub link: coaps_dtls::LinkProfile,
}

/// No link-layer fragmentation or ACK: LTE-M and NB-IoT carry the IP datagram whole (their own
/// L2 overhead is not modelled).
const CELLULAR: Framing = Framing {
    datagram_header: 28,
    frame_payload: None,
    fragment_header: 0,
    frame_overhead: 0,
    frame_fixed_us: 0.0,
    ack_us: 0.0,
};

/// nRF9160 on LTE-M (Cat-M1).
///
/// * 230 mA TX, 46 mA RX: the seed's figures (Nordic nRF9160 at +23 dBm transmit power and in
///   RRC-connected receive; Nordic's Online Power Profiler gives the same order).
/// * 375 kb/s up, 300 kb/s down: the nRF9160 Product Brief's LTE-M peak rates.
/// * 150 ms RTT: a typical LTE-M round trip to a server in good coverage (an assumption;
///   issue 11 notes 1–2 s during coverage changes: pass `--rtt`).
pub const NRF9160_LTE_M: Radio = Radio {
    name: "nrf9160-lte-m",
    description: "Nordic nRF9160, LTE-M: 230 mA TX / 46 mA RX, 375 kb/s up / 300 kb/s down",
    tx_ma: 230.0,
    rx_ma: 46.0,
    up_kbps: 375.0,
    down_kbps: 300.0,
    framing: CELLULAR,
    typical_rtt: Duration::from_millis(150),
    link: coaps_dtls::LinkProfile::LteM,
};

/// nRF9160 on NB-IoT (Cat-NB1).
///
/// * 230 mA TX, 46 mA RX: the same module and power amplifier as [`NRF9160_LTE_M`] at
///   +23 dBm (the seed's figures).
/// * 62.5 kb/s up, 60 kb/s down: the nRF9160 Product Brief's NB-IoT peak rates (coverage
///   enhancement repetitions make real rates lower, which this model understates).
/// * 1000 ms RTT: the middle of issue 11's 0.5–2 s for NB-IoT (an assumption).
pub const NB_IOT: Radio = Radio {
    name: "nb-iot",
    description: "Nordic nRF9160, NB-IoT: 230 mA TX / 46 mA RX, 62.5 kb/s up / 60 kb/s down",
    tx_ma: 230.0,
    rx_ma: 46.0,
    up_kbps: 62.5,
    down_kbps: 60.0,
    framing: CELLULAR,
    typical_rtt: Duration::from_millis(1000),
    link: coaps_dtls::LinkProfile::NbIot,
};

/// IEEE 802.15.4 (2.4 GHz O-QPSK) with 6LoWPAN.
///
/// * 250 kb/s both ways: the 2.4 GHz PHY of IEEE 802.15.4-2006 (§6.5), the seed's calculator.
/// * 24 mA TX (0 dBm), 20 mA RX: TI CC2538 datasheet (SWRS096), active-mode currents.
/// * Frames: 127-byte PHY payload (aMaxPHYPacketSize), of which 9 bytes MAC header (short
///   addresses, PAN ID compression) and 2 bytes FCS; 6 bytes PHY header (preamble, SFD, length)
///   at the same rate; 6LoWPAN IPHC + UDP NHC headers taken as 10 bytes (RFC 6282, addresses
///   from context); fragments per RFC 4944 §5.3 (FRAG1 4 bytes, FRAGN 5, payloads in multiples
///   of 8); every frame acknowledged (5-byte ACK + 6-byte PHY header + 12-symbol turnaround).
/// * 40 ms RTT: one radio hop to a border router and a short path beyond (an assumption).
pub const IEEE_802_15_4: Radio = Radio {
    name: "802.15.4",
    description: "IEEE 802.15.4 O-QPSK 250 kb/s, 6LoWPAN (TI CC2538: 24 mA TX / 20 mA RX)",
    tx_ma: 24.0,
    rx_ma: 20.0,
    up_kbps: 250.0,
    down_kbps: 250.0,
    framing: Framing {
        datagram_header: 10,
        frame_payload: Some(127 - 9 - 2),
        fragment_header: 5,
        frame_overhead: 9 + 2 + 6,
        frame_fixed_us: 0.0,
        // 11 bytes at 32 µs/byte, plus the 192 µs turnaround (12 symbols of 16 µs).
        ack_us: 11.0 * 32.0 + 192.0,
    },
    typical_rtt: Duration::from_millis(40),
    link: coaps_dtls::LinkProfile::Ieee802154,
};

/// ESP32 Wi-Fi, 802.11n HT20 MCS7.
///
/// * 180 mA TX (802.11n MCS7 at +14 dBm), 100 mA RX (upper end of 95–100 mA): Espressif ESP32
///   Series Datasheet, RF power-consumption specifications. Power save is off (the radio
///   listens at the RX current while it waits).
/// * 65 Mb/s both ways (MCS7, 20 MHz, long guard interval).
/// * Frames: 24-byte MAC header + 8-byte LLC/SNAP + 4-byte FCS around the IP datagram; 36 µs
///   HT-mixed preamble per frame plus 34 µs DIFS; the ACK: 16 µs SIFS + 20 µs legacy preamble +
///   14 bytes at 24 Mb/s.
/// * 10 ms RTT: a LAN to a local server (an assumption).
pub const ESP32_WIFI: Radio = Radio {
    name: "esp32-wifi",
    description: "Espressif ESP32, 802.11n MCS7 65 Mb/s: 180 mA TX / 100 mA RX",
    tx_ma: 180.0,
    rx_ma: 100.0,
    up_kbps: 65_000.0,
    down_kbps: 65_000.0,
    framing: Framing {
        datagram_header: 28,
        frame_payload: None,
        fragment_header: 0,
        frame_overhead: 24 + 8 + 4,
        frame_fixed_us: 36.0 + 34.0,
        ack_us: 16.0 + 20.0 + 14.0 * 8.0 / 24.0,
    },
    typical_rtt: Duration::from_millis(10),
    link: coaps_dtls::LinkProfile::Wifi,
};

/// Every radio, in the report's order.
pub const ALL: [Radio; 4] = [NRF9160_LTE_M, NB_IOT, IEEE_802_15_4, ESP32_WIFI];

/// The radio called `name`.
pub fn by_name(name: &str) -> Option<Radio> {
    ALL.into_iter().find(|r| r.name == name)
}

impl Radio {
    /// Link frames carrying a datagram of `payload` UDP payload bytes, and the bytes they put
    /// on the air (headers included, the fixed per-frame time excluded).
    pub fn frames(&self, payload: usize) -> (usize, usize) {
        let f = &self.framing;
        let datagram = payload + f.datagram_header;
        match f.frame_payload {
            Some(max) if datagram > max => {
                // RFC 4944 §5.3: fragment payloads are multiples of 8 bytes, except the last.
                let first = (max - (f.fragment_header - 1)) / 8 * 8;
                let next = (max - f.fragment_header) / 8 * 8;
                let rest = datagram - first;
                let n = 1 + rest.div_ceil(next);
                let headers = (f.fragment_header - 1) + (n - 1) * f.fragment_header;
                (n, datagram + headers + n * f.frame_overhead)
            }
            _ => (1, datagram + f.frame_overhead),
        }
    }

    /// Airtime of sending one datagram of `payload` bytes, and of receiving its link ACKs.
    pub fn send_airtime(&self, payload: usize) -> (Duration, Duration) {
        let (n, bytes) = self.frames(payload);
        let tx = n as f64 * self.framing.frame_fixed_us + bytes as f64 * 8.0 * 1000.0 / self.up_kbps;
        (us(tx), us(n as f64 * self.framing.ack_us))
    }

    /// Airtime of receiving one datagram of `payload` bytes, and of sending its link ACKs.
    pub fn receive_airtime(&self, payload: usize) -> (Duration, Duration) {
        let (n, bytes) = self.frames(payload);
        let rx = n as f64 * self.framing.frame_fixed_us + bytes as f64 * 8.0 * 1000.0 / self.down_kbps;
        (us(rx), us(n as f64 * self.framing.ack_us))
    }
}

fn us(micros: f64) -> Duration {
    Duration::from_secs_f64(micros / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for r in ALL {
            assert_eq!(by_name(r.name), Some(r));
        }
        assert_eq!(by_name("lora"), None);
    }

    #[test]
    fn cellular_airtime_is_bytes_at_the_bit_rate() {
        // 100 + 28 bytes at 375 kb/s = 2.730666 ms.
        let (tx, ack) = NRF9160_LTE_M.send_airtime(100);
        assert_eq!(tx.as_micros(), 2730);
        assert_eq!(ack, Duration::ZERO);
        let (rx, _) = NB_IOT.receive_airtime(100);
        // 128 bytes at 60 kb/s.
        assert_eq!(rx.as_micros(), 17_066);
    }

    #[test]
    fn lowpan_fragments_what_does_not_fit_a_frame() {
        // 90 + 10 = 100 bytes: one frame of 100 + 17.
        assert_eq!(IEEE_802_15_4.frames(90), (1, 117));
        // 300 + 10 = 310 bytes: FRAG1 carries 112, FRAGNs 104 each: 1 + 2 frames.
        let (n, bytes) = IEEE_802_15_4.frames(300);
        assert_eq!(n, 3);
        assert_eq!(bytes, 310 + 4 + 2 * 5 + 3 * 17);
        let (tx, ack) = IEEE_802_15_4.send_airtime(300);
        assert_eq!(tx.as_micros(), (bytes * 32) as u128);
        assert_eq!(ack.as_micros(), 3 * 544);
    }

    #[test]
    fn wifi_is_dominated_by_its_fixed_frame_time() {
        let (tx, ack) = ESP32_WIFI.send_airtime(100);
        assert!(tx > Duration::from_micros(70) && tx < Duration::from_micros(100), "{tx:?}");
        assert!(ack > Duration::from_micros(40), "{ack:?}");
    }
}
