//! `coaps serve --metrics ADDR`: the counters of [`coaps_tower::telemetry`] and of the layers'
//! `stats()`, in the Prometheus text format (0.0.4) at `GET /metrics`, from a minimal
//! [`metrics::Recorder`] and a minimal HTTP/1.1 responder on a tokio `TcpListener` (no HTTP
//! library: one fixed route, one response per connection).

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A series: metric name and its labels (name, value) in the order given.
type SeriesKey = (String, Vec<(String, String)>);

/// Counters and gauges by name and labels; gauges hold an `f64`'s bits.
#[derive(Debug, Default)]
pub struct Registry {
    series: Mutex<BTreeMap<SeriesKey, (Kind, Arc<AtomicU64>)>>,
}

impl Registry {
    fn get(&self, key: &Key, kind: Kind) -> Arc<AtomicU64> {
        let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry((key.name().to_owned(), labels)).or_insert_with(|| (kind, Arc::new(AtomicU64::new(0)))).1.clone()
    }

    /// The current value of a counter (`None` if it was never touched), for the summary and tests.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        series.get(&(name.to_owned(), labels)).map(|(_, v)| v.load(Ordering::Relaxed))
    }

    /// Sum of a counter over all its labels with `label` = `value` (any, when `None`).
    pub fn sum(&self, name: &str, filter: Option<(&str, &str)>) -> u64 {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .filter(|((n, labels), _)| {
                n == name && filter.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, (_, v))| v.load(Ordering::Relaxed))
            .sum()
    }

    /// The text exposition format: `# TYPE` once per name, then one line per series.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), (kind, value)) in series.iter() {
            if name != last {
                let t = if *kind == Kind::Counter { "counter" } else { "gauge" };
                let _ = writeln!(out, "# TYPE {name} {t}");
                last = name;
            }
            out.push_str(name);
            if !labels.is_empty() {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = write!(out, "{{{}}}", l.join(","));
            }
            let v = value.load(Ordering::Relaxed);
            match kind {
                Kind::Counter => {
                    let _ = writeln!(out, " {v}");
                }
                Kind::Gauge => {
                    let _ = writeln!(out, " {}", f64::from_bits(v));
                }
            }
        }
        out
    }
}

/// Label values: backslash, double quote and newline escaped (the text format's rules).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The [`Recorder`] over a shared [`Registry`]; histograms are not kept.
#[derive(Debug, Clone, Default)]
pub struct PromRecorder(pub Arc<Registry>);

impl Recorder for PromRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.get(key, Kind::Counter))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.get(key, Kind::Gauge))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Installs the recorder process-wide. Returns its registry, or `None` if another recorder
/// was installed first.
pub fn install() -> Option<Arc<Registry>> {
    let registry = Arc::new(Registry::default());
    metrics::set_global_recorder(PromRecorder(registry.clone())).ok()?;
    Some(registry)
}

/// Answers `GET /metrics` on `listener` with `refresh()` run first (it copies the layers'
/// counters into the registry) and the registry rendered; anything else gets 404. Each
/// connection has 5 s to send its request line.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>, refresh: impl Fn() + Send + 'static) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let mut buf = [0u8; 1024];
        let mut len = 0;
        // The request line and headers end with an empty line; only the first line matters.
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while len < buf.len() {
                match stream.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].windows(2).any(|w| w == b"\n\n") {
                    break;
                }
            }
        })
        .await;
        if read.is_err() {
            continue;
        }
        let line = buf[..len].split(|b| *b == b'\n').next().unwrap_or_default();
        let (status, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics\r") {
            refresh();
            ("200 OK", registry.render())
        } else {
            ("404 Not Found", "only GET /metrics is served here\n".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(response.as_bytes())).await;
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = PromRecorder::default();
        let key = Key::from_parts("coaps_handshakes_total", vec![metrics::Label::new("outcome", "o\"k")]);
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        r.register_counter(&key, &meta).increment(2);
        r.register_counter(&key, &meta).increment(1);
        r.register_gauge(&Key::from_name("coaps_associations"), &meta).set(4.0);
        let text = r.0.render();
        assert_eq!(
            text,
            "# TYPE coaps_associations gauge\ncoaps_associations 4\n\
             # TYPE coaps_handshakes_total counter\ncoaps_handshakes_total{outcome=\"o\\\"k\"} 3\n"
        );
        assert_eq!(r.0.counter("coaps_handshakes_total", &[("outcome", "o\"k")]), Some(3));
        assert_eq!(r.0.sum("coaps_handshakes_total", None), 3);
    }
}
