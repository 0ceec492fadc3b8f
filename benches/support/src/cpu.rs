//! A criterion [`Measurement`] of the calling thread's CPU time instead of wall time.
//!
//! The benches run on a small machine shared with builds and tests; wall time then counts the
//! slices other processes get, and a load change between the two halves of a comparison skews
//! the ratio. Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) counts only this thread's work, which
//! is what "handshake CPU" means. `COAPS_BENCH_WALL=1` switches the benches back to wall time.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};
use std::time::Duration;

/// Thread CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpuTime;

/// Whether the benches should measure wall time (`COAPS_BENCH_WALL` set) instead.
pub fn wall_time_requested() -> bool {
    std::env::var_os("COAPS_BENCH_WALL").is_some_and(|v| v != "0")
}

/// This thread's CPU time so far.
pub fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

fn rate(per_iter: f64, typical_ns: f64, values: &mut [f64], units: [&'static str; 4]) -> &'static str {
    let r = per_iter * 1e9 / typical_ns;
    let (div, unit) = if r < 1e3 {
        (1.0, units[0])
    } else if r < 1e6 {
        (1e3, units[1])
    } else if r < 1e9 {
        (1e6, units[2])
    } else {
        (1e9, units[3])
    };
    for v in values {
        *v = per_iter * 1e9 / *v / div;
    }
    unit
}

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns cpu")
        } else if ns < 1e6 {
            (1e-3, "µs cpu")
        } else if ns < 1e9 {
            (1e-6, "ms cpu")
        } else {
            (1e-9, "s cpu")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(&self, typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                rate(n as f64, typical, values, ["B/s", "KB/s", "MB/s", "GB/s"])
            }
            Throughput::Elements(n) => rate(n as f64, typical, values, ["elem/s", "Kelem/s", "Melem/s", "Gelem/s"]),
            Throughput::Bits(n) => rate(n as f64, typical, values, ["b/s", "Kb/s", "Mb/s", "Gb/s"]),
            // Throughput is non-exhaustive upstream: show the plain time for anything new.
            #[allow(unreachable_patterns)]
            _ => self.scale_values(typical, values),
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat` (Linux);
/// `None` if the process is gone or the file unreadable. Resolution is one clock tick
/// (usually 10 ms). For another process too, such as a server under load.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields after
    // the last ')'. utime and stime are fields 14 and 15 overall, so 12 and 13 after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: `sysconf` only reads a configuration value.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks))
}
