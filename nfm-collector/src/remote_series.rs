//! What an interval summary becomes in a TSDB (issue 16): the remote-write 1.0 protobuf
//! messages (hand-written `prost` structs, prometheus/prompb `types.proto` and `remote.proto`;
//! no protoc at build time), the series of one summary and the encoded request body. Shared by
//! the remote-write actor (`remote_write`) and the store (which counts what it could not hand
//! over).

use crate::summary::{Counters, IntervalSummary};
use std::collections::BTreeMap;

/// The remote-write 1.0 protobuf messages (prometheus/prompb `types.proto`, `remote.proto`).
pub mod proto {
    /// `prometheus.WriteRequest` (field 3, metadata, is not sent).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Unix ms.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// One sample of one series (labels sorted, `__name__` included).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: Vec<proto::Label>,
    pub value: f64,
    pub timestamp_ms: i64,
}

fn label(name: &str, value: &str) -> proto::Label {
    proto::Label {
        name: name.into(),
        value: value.into(),
    }
}

/// The samples of one interval, stamped with its end: per monitor the four metrics and its
/// HealthIndicator, per category the four metrics, per blamed component its confidence and
/// degraded flows. The mean RTT is only sent when the interval had RTT samples.
pub fn points_of(s: &IntervalSummary, external: &BTreeMap<String, String>) -> Vec<Point> {
    let ts = s.end_ms as i64;
    let mut out = Vec::new();
    let mut push = |name: &str, extra: &[(&str, &str)], v: f64| {
        let mut labels: Vec<proto::Label> = vec![label("__name__", name)];
        labels.extend(extra.iter().map(|(n, v)| label(n, v)));
        for (n, v) in external {
            if !extra.iter().any(|(e, _)| e == n) {
                labels.push(label(n, v));
            }
        }
        labels.sort();
        out.push(Point {
            labels,
            value: v,
            timestamp_ms: ts,
        });
    };
    let four = |push: &mut dyn FnMut(&str, f64), c: &Counters| {
        push("data_transferred_bytes", c.bytes as f64);
        push("retransmissions", c.retransmissions as f64);
        push("timeouts", c.timeouts as f64);
        if c.rtt_count > 0 {
            push("round_trip_time_us", c.rtt_us() as f64);
        }
    };
    for m in &s.monitors {
        let l = [("monitor", m.monitor.as_str())];
        four(
            &mut |n, v| push(&format!("nfm_monitor_interval_{n}"), &l, v),
            &m.counters,
        );
        if let Some(h) = m.health_indicator {
            push("nfm_monitor_interval_health_indicator", &l, f64::from(h));
        }
    }
    for (cat, c) in &s.categories {
        let l = [("category", cat.as_str())];
        four(
            &mut |n, v| push(&format!("nfm_category_interval_{n}"), &l, v),
            c,
        );
    }
    for v in &s.verdicts {
        let comp = v.component.to_string();
        let blame = match v.blame {
            crate::model::Blame::Network => "network",
            crate::model::Blame::Endpoint => "endpoint",
        };
        let l = [
            ("component", comp.as_str()),
            ("kind", v.component.kind.as_str()),
            ("blame", blame),
        ];
        push("nfm_blamed_component_confidence", &l, v.confidence);
        push(
            "nfm_blamed_component_degraded_flows",
            &l,
            v.degraded_flows as f64,
        );
    }
    out
}

/// Groups points into a `WriteRequest` (one series per label set, samples in order) and encodes
/// it: protobuf, then snappy block compression.
pub fn encode_request(points: &[Point]) -> Vec<u8> {
    use prost::Message;
    let mut by: BTreeMap<&[proto::Label], Vec<proto::Sample>> = BTreeMap::new();
    for p in points {
        by.entry(&p.labels).or_default().push(proto::Sample {
            value: p.value,
            timestamp: p.timestamp_ms,
        });
    }
    let req = proto::WriteRequest {
        timeseries: by
            .into_iter()
            .map(|(labels, samples)| proto::TimeSeries {
                labels: labels.to_vec(),
                samples,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any input")
}
