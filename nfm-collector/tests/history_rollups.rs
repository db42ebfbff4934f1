//! History from disk with rollups (issue 16): summaries written through the store actor are
//! rolled up into 1-minute and 1-hour records; the API answers a range far older than what it
//! holds in memory from disk, at the resolution picked from the range, and the sums agree at
//! every resolution (rollups plus the finer levels filling their gaps); rollups survive a
//! restart (the open minute and hour are rebuilt) and a range beyond the retention is clipped
//! and says so.

use nfm_collector::api::{Api, ApiConfig};
use nfm_collector::metrics::Metrics;
use nfm_collector::model::Category;
use nfm_collector::pipeline::{ApiMsg, StoreMsg};
use nfm_collector::store::{Store, StoreConfig, StoreOutputs};
use nfm_collector::summary::{Counters, IntervalSummary, MonitorPoint, PairStat, TopFlow};
use nfm_collector::topology::Topology;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Arc;
use std::time::Duration;

const IV: u64 = 5_000;
const T0: u64 = 1_765_000_800_000; // a whole hour

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nfm-rollups-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Interval `i`: 2 flows whose bytes and RTT vary with `i`; monitor `app` degraded when i % 7 == 0.
fn summary(i: u64) -> IntervalSummary {
    let c = |bytes: u64, rtt: u64| Counters {
        bytes,
        retransmissions: i % 3,
        timeouts: i % 5 / 4,
        rtt_sum_us: rtt * 2,
        rtt_count: 2,
        records: 1,
    };
    let flow = |remote: u8, bytes| TopFlow {
        agent_id: 1,
        local: "10.0.1.10".parse().unwrap(),
        remote: std::net::IpAddr::from([10, 0, 2, remote]),
        port: 443,
        server: false,
        category: Category::InterAz,
        counters: c(bytes, 1_000 + i % 10),
        path: vec!["host:web-1".parse().unwrap()],
        degraded: i.is_multiple_of(7) && remote == 1,
    };
    let (a, b) = (100 + i % 13, 50 + i % 29);
    let mut total = c(a, 1_000 + i % 10);
    total.add(&c(b, 1_000 + i % 10));
    IntervalSummary {
        start_ms: T0 + i * IV,
        end_ms: T0 + (i + 1) * IV,
        flows: 2,
        records: 2,
        categories: vec![(Category::InterAz, total)],
        top: vec![flow(1, a), flow(2, b)],
        monitors: vec![MonitorPoint {
            monitor: "app".into(),
            flows: 2,
            counters: total,
            health_indicator: Some(u8::from(i.is_multiple_of(7))),
            pairs: vec![PairStat {
                local: "subnet:subnet-app-a".into(),
                remote: "subnet:subnet-app-b".into(),
                counters: total,
            }],
            flows_top: vec![flow(1, a), flow(2, b)],
        }],
        ..Default::default()
    }
}

/// Writes intervals `range` through the store actor; returns what a restart recovers.
fn write(dir: &Path, range: std::ops::Range<u64>) -> Vec<IntervalSummary> {
    let metrics = Arc::new(Metrics::default());
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_bytes = 256 << 10; // several segments, so the index matters
    cfg.replay_keep = 10;
    let (store, _) = Store::open(cfg.clone(), metrics.clone()).unwrap();
    let (tx, rx) = sync_channel(64);
    let (dtx, _drx) = channel();
    let (atx, arx) = sync_channel(1 << 16);
    let out = StoreOutputs {
        durable: dtx,
        waker: None,
        summaries: atx,
    };
    let h = std::thread::spawn(move || store.run(rx, out));
    let n = range.end - range.start;
    for i in range {
        tx.send(StoreMsg::Interval {
            summary: Box::new(summary(i)),
            closed_before_ms: 0,
            covers_n: 0,
        })
        .unwrap();
    }
    for _ in 0..n {
        match arx.recv_timeout(Duration::from_secs(30)).unwrap() {
            ApiMsg::Interval(_) => {}
            _ => panic!("expected a summary"),
        }
    }
    tx.send(StoreMsg::Shutdown).unwrap();
    h.join().unwrap();
    let (_, rec) = Store::open(cfg, metrics).unwrap();
    rec.summaries
}

fn api(dir: &Path, recovered: Vec<IntervalSummary>) -> Api {
    let topo = include_str!("../examples/topology.toml");
    let (rtx, _rrx) = sync_channel(16);
    let (atx, _arx) = sync_channel(16);
    std::mem::forget((_rrx, _arx));
    let mut a = Api::new(
        ApiConfig {
            topology_path: None,
            monitors_path: None,
            retention_ms: 7 * 86_400_000,
            max_history_intervals: 10,
            max_history_bytes: 1 << 30,
            top_k: 20,
        },
        Arc::new(Topology::parse(topo).unwrap()),
        vec![],
        Arc::new(Metrics::default()),
        rtx,
        atx,
    )
    .with_history_dir(dir);
    let r = a.route(
        "POST",
        "/api/monitors",
        None,
        br#"{"name":"app","local":["subnet:subnet-app-a"]}"#,
    );
    assert_eq!(r.status, 201);
    for s in recovered {
        a.add_interval(Arc::new(s));
    }
    a
}

fn get(a: &mut Api, url: &str) -> Value {
    let r = a.route("GET", url, None, b"");
    assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    r.json_value()
}

#[test]
fn test_rollups_answer_old_ranges_at_every_resolution() {
    let dir = tmp("resolutions");
    // 3 h 7 min 5 s of intervals, in two runs (a restart in the middle of a minute and an hour).
    let n = (3 * 3600 + 7 * 60 + 5) / 5;
    write(&dir, 0..1_000);
    let recovered = write(&dir, 1_000..n);
    assert_eq!(recovered.len(), 10, "replay hands back only the newest");
    let want_bytes: u64 = (0..n).map(|i| summary(i).monitors[0].counters.bytes).sum();
    let want_retrans: u64 = (0..n)
        .map(|i| summary(i).monitors[0].counters.retransmissions)
        .sum();
    let want_degraded = (0..n).filter(|i| i % 7 == 0).count() as u64;
    let mut a = api(&dir, recovered);
    let (from, to) = (T0, T0 + n * IV);
    for (res, ms) in [
        ("raw", Value::from(IV)),
        ("1m", 60_000.into()),
        ("1h", 3_600_000.into()),
    ] {
        let v = get(
            &mut a,
            &format!("/api/monitors/app/overview?from={from}&to={to}&resolution={res}"),
        );
        assert_eq!(v["resolution"], res, "{v}");
        assert_eq!(v["resolution_ms"], ms);
        assert_eq!(v["totals"]["data_transferred"], want_bytes, "{res}");
        assert_eq!(v["totals"]["retransmissions"], want_retrans, "{res}");
        let points = v["points"].as_array().unwrap();
        let intervals: u64 = points
            .iter()
            .map(|p| p["intervals"].as_u64().unwrap())
            .sum();
        let degraded: u64 = points
            .iter()
            .map(|p| p["degraded_intervals"].as_u64().unwrap())
            .sum();
        assert_eq!((intervals, degraded), (n, want_degraded), "{res}");
        let v = get(
            &mut a,
            &format!("/api/insights?from={from}&to={to}&resolution={res}&limit=5"),
        );
        assert_eq!(
            v["totals"]["inter-az"]["data_transferred"], want_bytes,
            "{res}"
        );
        assert_eq!(v["intervals"], n, "{res}");
        let top: u64 = v["contributors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_u64().unwrap())
            .sum();
        assert_eq!(top, want_bytes, "both flows are always top: {res}");
    }
    // 1 h: three closed hours, then minutes, then raw for the open minute.
    let v = get(
        &mut a,
        &format!("/api/monitors/app/overview?from={from}&to={to}&resolution=1h"),
    );
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 3 + 7 + 1, "{}", points.len());
    assert_eq!(points[0]["intervals"], 720);
    assert_eq!(points[0]["health_indicator"], 1, "max over the hour");
    // The mean RTT of an hour is over all its samples.
    let rtt: u64 = (0..720).map(|i| 1_000 + i % 10).sum::<u64>() * 4 / (720 * 4);
    assert_eq!(points[0]["round_trip_time_us"], rtt);
    // The range's length picks the level: 3 h → raw; 1 day → 1m; 2 and 7 days → 1h.
    let v = get(
        &mut a,
        &format!("/api/monitors/app/overview?from={from}&to={to}"),
    );
    assert_eq!(v["resolution"], "raw");
    let v = get(
        &mut a,
        &format!(
            "/api/monitors/app/overview?from={}&to={to}",
            to - 86_400_000
        ),
    );
    assert_eq!(v["resolution"], "1m");
    assert_eq!(v["totals"]["data_transferred"], want_bytes);
    let v = get(
        &mut a,
        &format!(
            "/api/monitors/app/overview?from={}&to={to}",
            to - 2 * 86_400_000
        ),
    );
    assert_eq!(v["resolution"], "1h");
    assert_eq!(v["clipped_from"], Value::Null);
    assert_eq!(v["totals"]["data_transferred"], want_bytes);
    let v = get(
        &mut a,
        &format!("/api/insights?from={}&to={to}", to - 7 * 86_400_000),
    );
    assert_eq!(v["resolution"], "1h");
    assert_eq!(v["totals"]["inter-az"]["data_transferred"], want_bytes);
    // Beyond the retention: clipped, and said so.
    let v = get(&mut a, &format!("/api/insights?from=0&to={to}"));
    assert_eq!(v["clipped_from"], 0);
    assert_eq!(v["from"], to - 7 * 86_400_000);
    assert!(v["note"].as_str().unwrap().contains("retention"), "{v}");
    let v = get(
        &mut a,
        &format!("/api/monitors/app/history?from={from}&to={to}&resolution=1h&bucket=86400000"),
    );
    assert_eq!(v["buckets"][0]["pairs"][0]["value"], want_bytes);
    let r = a.route("GET", "/api/insights?resolution=2h", None, b"");
    assert_eq!(r.status, 400);
    // A history written before rollups (no rollup logs) is rolled up at the next start.
    std::fs::remove_dir_all(dir.join("rollup-1m")).unwrap();
    std::fs::remove_dir_all(dir.join("rollup-1h")).unwrap();
    let mut cfg = StoreConfig::new(&dir);
    cfg.replay_keep = 10;
    let (_, rec) = Store::open(cfg, Arc::new(Metrics::default())).unwrap();
    let mut a = api(&dir, rec.summaries);
    for res in ["1m", "1h"] {
        let v = get(
            &mut a,
            &format!("/api/monitors/app/overview?from={from}&to={to}&resolution={res}"),
        );
        assert_eq!(
            v["totals"]["data_transferred"], want_bytes,
            "backfilled {res}"
        );
        let points = v["points"].as_array().unwrap();
        assert_eq!(points[0]["intervals"], if res == "1h" { 720 } else { 12 });
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
