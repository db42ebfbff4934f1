//! Prometheus remote write (issue 16): sends each durable interval's numbers to a TSDB operators
//! already run (Prometheus with `--web.enable-remote-write-receiver`, VictoriaMetrics, Mimir,
//! Thanos receive, ...), with external labels (collector name, replica) so that an HA pair
//! deduplicates downstream. The standard remote-write 1.0 protocol: a protobuf `WriteRequest`
//! (hand-written `prost` messages below, no protoc at build time), snappy block compression,
//! headers `Content-Encoding: snappy` and `X-Prometheus-Remote-Write-Version: 0.1.0`.
//!
//! The writer is an actor of its own, fed by the store through a bounded channel with every
//! durable summary (`pipeline::RemoteWriteMsg`); it never blocks the pipeline. Its samples wait
//! in a bounded buffer until the TSDB acknowledges them (2xx): a 5xx, a 429 or a connection
//! error is retried with exponential back-off (0.5 s doubling to 30 s), a 4xx drops the request
//! (the TSDB will never take it), and when the buffer is full the oldest samples are dropped;
//! every case is counted in `/metrics` (`nfm_remote_write_*`). Series, labels and units are in
//! docs/collector.md, "Remote write".

use crate::metrics::Metrics;
use crate::pipeline::RemoteWriteMsg;
pub use crate::remote_series::{encode_request, points_of, proto, Point};
use crate::summary::IntervalSummary;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[remote_write]` in the collector's TOML file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// E.g. `http://prometheus:9090/api/v1/write` or `http://victoria:8428/api/v1/write`.
    pub url: String,
    /// How often buffered samples are sent: `500ms`, `15s`, `1m` (default `10s`).
    #[serde(default = "default_every")]
    pub every: String,
    /// Added to every series, e.g. `{ collector = "nfm-1", replica = "a" }`.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Samples kept while the TSDB does not acknowledge them (oldest dropped beyond, counted).
    #[serde(default = "default_max_buffer")]
    pub max_buffer_samples: usize,
    /// Samples per request at most.
    #[serde(default = "default_max_per_request")]
    pub max_samples_per_request: usize,
    /// Per request.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

/// `[remote_write]` (one TSDB) or `[[remote_write]]` (several, e.g. both TSDBs of an HA setup).
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<RemoteWriteConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(RemoteWriteConfig),
        Many(Vec<RemoteWriteConfig>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(c) => vec![c],
        OneOrMany::Many(v) => v,
    })
}

fn default_every() -> String {
    "10s".into()
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_max_buffer() -> usize {
    500_000
}
fn default_max_per_request() -> usize {
    2_000
}

/// `500ms`, `15s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 15s, 1m)"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1_000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m or h)")),
    };
    Ok(Duration::from_millis(ms))
}

const LABEL_NAME_OK: fn(&str) -> bool = |n| {
    !n.is_empty()
        && !n.starts_with("__")
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
};

impl RemoteWriteConfig {
    /// Checks the settings; the error says which one is wrong.
    pub fn validate(&self) -> Result<(Duration, Duration), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "remote_write.url `{}` must start with http:// or https://",
                self.url
            ));
        }
        let every = parse_duration(&self.every).map_err(|e| format!("remote_write.every: {e}"))?;
        let timeout =
            parse_duration(&self.timeout).map_err(|e| format!("remote_write.timeout: {e}"))?;
        if every.is_zero() || timeout.is_zero() {
            return Err("remote_write.every and remote_write.timeout must be above 0".into());
        }
        if let Some(bad) = self.external_labels.keys().find(|n| !LABEL_NAME_OK(n)) {
            return Err(format!(
                "remote_write.external_labels: `{bad}` is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            ));
        }
        if self.max_buffer_samples == 0 || self.max_samples_per_request == 0 {
            return Err(
                "remote_write.max_buffer_samples and max_samples_per_request must be above 0"
                    .into(),
            );
        }
        Ok((every, timeout))
    }
}

/// What one send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: acknowledged.
    Acked,
    /// 4xx other than 429: the TSDB will never take it.
    Rejected(String),
    /// 5xx, 429 or no answer: try again later.
    Retry(String),
}

/// The remote-write actor.
pub struct RemoteWriter {
    cfg: RemoteWriteConfig,
    every: Duration,
    agent: ureq::Agent,
    metrics: Arc<Metrics>,
    buffer: VecDeque<Point>,
    /// Start of the newest interval taken: an older one (a late amendment) is not sent again,
    /// since a TSDB keeps one sample per series and timestamp.
    newest_start: Option<u64>,
    backoff: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl RemoteWriter {
    pub fn new(cfg: RemoteWriteConfig, metrics: Arc<Metrics>) -> Result<RemoteWriter, String> {
        let (every, timeout) = cfg.validate()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("nfm-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(RemoteWriter {
            cfg,
            every,
            agent,
            metrics,
            buffer: VecDeque::new(),
            newest_start: None,
            backoff: Duration::ZERO,
        })
    }

    /// Takes one durable summary's samples into the buffer (dropping the oldest beyond it).
    pub fn take(&mut self, s: &IntervalSummary) {
        if self.newest_start.is_some_and(|n| s.start_ms <= n) {
            self.metrics
                .remote_write_skipped_late
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.newest_start = Some(s.start_ms);
        self.buffer.extend(points_of(s, &self.cfg.external_labels));
        let over = self
            .buffer
            .len()
            .saturating_sub(self.cfg.max_buffer_samples);
        if over > 0 {
            self.buffer.drain(..over);
            self.metrics
                .remote_write_dropped_full
                .fetch_add(over as u64, Ordering::Relaxed);
            log::warn!("remote write: buffer full, {over} oldest samples dropped");
        }
        self.publish();
    }

    fn publish(&self) {
        self.metrics
            .remote_write_pending
            .store(self.buffer.len() as u64, Ordering::Relaxed);
    }

    /// Sends one request of the oldest buffered samples.
    fn post(&self, body: Vec<u8>) -> Outcome {
        let mut req = self
            .agent
            .post(&self.cfg.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(t) = &self.cfg.bearer_token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.send(&body[..]) {
            Ok(r) if r.status().is_success() => Outcome::Acked,
            Ok(mut r) => {
                let code = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                let msg = format!("HTTP {code}: {}", text.trim());
                if code == 429 || code >= 500 {
                    Outcome::Retry(msg)
                } else {
                    Outcome::Rejected(msg)
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Sends buffered samples, a request at a time, until the buffer is empty or the TSDB asks
    /// to retry; returns when to try next (`None`: the buffer is empty).
    pub fn send_buffered(&mut self) -> Option<Duration> {
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(self.cfg.max_samples_per_request);
            let points: Vec<Point> = self.buffer.range(..n).cloned().collect();
            self.metrics
                .remote_write_requests
                .fetch_add(1, Ordering::Relaxed);
            match self.post(encode_request(&points)) {
                Outcome::Acked => {
                    self.buffer.drain(..n);
                    self.backoff = Duration::ZERO;
                    self.metrics
                        .remote_write_samples
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Outcome::Rejected(e) => {
                    self.buffer.drain(..n);
                    self.metrics
                        .remote_write_dropped_rejected
                        .fetch_add(n as u64, Ordering::Relaxed);
                    log::error!(
                        "remote write: {} refused {n} samples ({e}); dropped",
                        self.cfg.url
                    );
                }
                Outcome::Retry(e) => {
                    self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    self.metrics
                        .remote_write_retries
                        .fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "remote write: {} failed ({e}); {} samples kept, retrying in {:?}",
                        self.cfg.url,
                        self.buffer.len(),
                        self.backoff
                    );
                    self.publish();
                    return Some(self.backoff);
                }
            }
        }
        self.publish();
        None
    }

    /// Samples waiting for an acknowledgement.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The actor loop: takes summaries as they come, sends every `every` (or after the back-off).
    /// On shutdown, one last attempt; what is still unacknowledged then is logged.
    pub fn run(mut self, rx: Receiver<RemoteWriteMsg>) {
        log::info!("remote write: to {} every {:?}", self.cfg.url, self.every);
        let mut next = Instant::now() + self.every;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(RemoteWriteMsg::Interval(s)) => self.take(&s),
                Ok(RemoteWriteMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Due (also while summaries keep coming): send, or wait out the back-off.
            if Instant::now() >= next {
                let retry = self.send_buffered();
                next = Instant::now() + retry.unwrap_or(self.every);
            }
        }
        if self.send_buffered().is_some() {
            log::warn!(
                "remote write: stopping with {} samples not acknowledged by {}",
                self.buffer.len(),
                self.cfg.url
            );
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::Category;
    use crate::summary::{Counters, MonitorPoint};
    use prost::Message;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    fn summary(start: u64, bytes: u64) -> IntervalSummary {
        let c = Counters {
            bytes,
            retransmissions: 3,
            timeouts: 1,
            rtt_sum_us: 3_000,
            rtt_count: 2,
            records: 1,
        };
        IntervalSummary {
            start_ms: start,
            end_ms: start + 5_000,
            categories: vec![(Category::InterAz, c)],
            monitors: vec![MonitorPoint {
                monitor: "app".into(),
                flows: 1,
                counters: c,
                health_indicator: Some(1),
                pairs: vec![],
                flows_top: vec![],
            }],
            ..Default::default()
        }
    }

    /// A TSDB stand-in: answers each request with the next status of `script`, and hands back
    /// each request's headers and decoded body.
    fn tsdb(
        script: Vec<u16>,
    ) -> (
        String,
        std::thread::JoinHandle<Vec<(String, proto::WriteRequest)>>,
    ) {
        tsdb_on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn tsdb_on(
        l: TcpListener,
        script: Vec<u16>,
    ) -> (
        String,
        std::thread::JoinHandle<Vec<(String, proto::WriteRequest)>>,
    ) {
        let url = format!("http://{}/api/v1/write", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut got = Vec::new();
            for status in script {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                got.push((head, proto::WriteRequest::decode(raw.as_slice()).unwrap()));
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
                )
                .unwrap();
            }
            got
        });
        (url, h)
    }

    fn writer(url: &str, max_buffer: usize) -> (RemoteWriter, Arc<Metrics>) {
        let m = Arc::new(Metrics::default());
        let cfg = RemoteWriteConfig {
            url: url.into(),
            every: "10ms".into(),
            external_labels: [
                ("collector".into(), "c1".into()),
                ("replica".into(), "a".into()),
            ]
            .into(),
            bearer_token: Some("tok".into()),
            max_buffer_samples: max_buffer,
            max_samples_per_request: 1_000,
            timeout: "2s".into(),
        };
        (RemoteWriter::new(cfg, m.clone()).unwrap(), m)
    }

    fn value(req: &proto::WriteRequest, name: &str) -> Option<(f64, i64)> {
        req.timeseries
            .iter()
            .find(|t| {
                t.labels
                    .iter()
                    .any(|l| l.name == "__name__" && l.value == name)
            })
            .map(|t| (t.samples[0].value, t.samples[0].timestamp))
    }

    /// 5xx: kept and retried (nothing lost); 2xx: acknowledged; 4xx: dropped and counted; a late
    /// amendment is not re-sent; a TSDB that is down is retried; a full buffer drops the oldest.
    #[test]
    fn test_retry_ack_reject_and_down() {
        let (url, h) = tsdb(vec![503, 204, 400]);
        let (mut w, m) = writer(&url, 1_000);
        w.take(&summary(0, 1_000));
        let n = w.pending();
        assert_eq!(
            n, 9,
            "the monitor's 4 metrics and HealthIndicator, the category's 4"
        );
        assert!(w.send_buffered().is_some(), "503 asks to retry");
        assert_eq!(w.pending(), n, "nothing dropped on a 5xx");
        assert_eq!(m.remote_write_retries.load(Ordering::Relaxed), 1);
        assert_eq!(w.send_buffered(), None);
        assert_eq!(w.pending(), 0);
        assert_eq!(m.remote_write_samples.load(Ordering::Relaxed), n as u64);
        w.take(&summary(5_000, 7));
        w.take(&summary(0, 1)); // a late amendment
        assert_eq!(m.remote_write_skipped_late.load(Ordering::Relaxed), 1);
        assert_eq!(w.send_buffered(), None);
        assert_eq!(
            m.remote_write_dropped_rejected.load(Ordering::Relaxed),
            n as u64
        );
        let got = h.join().unwrap();
        assert_eq!(got.len(), 3);
        let (head, req) = &got[1];
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-encoding: snappy"), "{head}");
        assert!(head.contains("x-prometheus-remote-write-version: 0.1.0"));
        assert!(head.contains("authorization: bearer tok"));
        assert_eq!(
            value(req, "nfm_monitor_interval_data_transferred_bytes"),
            Some((1_000.0, 5_000))
        );
        assert_eq!(
            value(req, "nfm_monitor_interval_round_trip_time_us"),
            Some((1_500.0, 5_000))
        );
        assert_eq!(
            value(req, "nfm_monitor_interval_health_indicator"),
            Some((1.0, 5_000))
        );
        assert_eq!(
            value(req, "nfm_category_interval_retransmissions"),
            Some((3.0, 5_000))
        );
        let labels: Vec<(&str, &str)> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert!(labels.contains(&("collector", "c1")) && labels.contains(&("replica", "a")));
        // Down: nothing listens there; kept and retried.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (mut w, m) = writer(&format!("http://{port}/api/v1/write"), 15);
        w.take(&summary(0, 1));
        assert!(w.send_buffered().is_some());
        assert!(w.send_buffered().is_some());
        assert_eq!(w.pending(), 9);
        assert_eq!(m.remote_write_retries.load(Ordering::Relaxed), 2);
        // A full buffer drops the oldest, counted.
        w.take(&summary(5_000, 1));
        assert_eq!(w.pending(), 15);
        assert_eq!(m.remote_write_dropped_full.load(Ordering::Relaxed), 3);
        // The TSDB comes back: everything kept is delivered and acknowledged.
        let (_, h) = tsdb_on(TcpListener::bind(port).unwrap(), vec![200]);
        assert_eq!(w.send_buffered(), None);
        assert_eq!(m.remote_write_samples.load(Ordering::Relaxed), 15);
        let got = h.join().unwrap();
        let n: usize = got[0].1.timeseries.iter().map(|t| t.samples.len()).sum();
        assert_eq!(n, 15);
    }

    #[test]
    fn test_config_is_checked() {
        let ok = |toml: &str| {
            toml::from_str::<RemoteWriteConfig>(toml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|_| ()))
        };
        assert!(ok(r#"url = "http://x:9090/api/v1/write""#).is_ok());
        assert!(ok(r#"url = "x:9090""#).unwrap_err().contains("http://"));
        assert!(ok("url = \"http://x\"\nevery = \"5y\"")
            .unwrap_err()
            .contains("unit"));
        assert!(
            ok("url = \"http://x\"\nexternal_labels = { \"a-b\" = \"1\" }")
                .unwrap_err()
                .contains("label name")
        );
        assert!(ok("url = \"http://x\"\nfoo = 1").is_err());
        // In the collector's config: one table or an array of tables.
        let one = crate::collector::Settings::parse_toml(
            "[remote_write]\nurl = \"http://a/api/v1/write\"\nexternal_labels = { collector = \"c\", replica = \"b\" }",
        )
        .unwrap();
        assert_eq!(one.remote_write.len(), 1);
        assert_eq!(one.remote_write[0].external_labels["replica"], "b");
        let two = crate::collector::Settings::parse_toml(
            "[[remote_write]]\nurl = \"http://a\"\n[[remote_write]]\nurl = \"http://b\"\nevery = \"1s\"",
        )
        .unwrap();
        assert_eq!(two.remote_write[1].every, "1s");
        assert!(crate::collector::Settings::parse_toml("")
            .unwrap()
            .remote_write
            .is_empty());
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    }
}
