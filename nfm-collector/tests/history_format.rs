//! Stored history stays readable: a newer collector opens the history a previous one wrote.
//!
//! `tests/fixtures/history-v0/` is a history log written by the collector before history records
//! carried a version (record kind 2, a bare bincode `IntervalSummary`). It was made by this
//! file's `write_fixture` (run with `NFM_WRITE_HISTORY_FIXTURE=DIR`) on that code and is never
//! regenerated: changing it would defeat the test. The summary it holds is `sample()` below.

use nfm_collector::model::{Blame, Category, ComponentId, MetricChange, Verdict};
use nfm_collector::store::{Store, StoreConfig};
use nfm_collector::summary::{Counters, IntervalSummary, MonitorPoint, PairStat, TopFlow};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

fn sample() -> IntervalSummary {
    let c = |bytes: u64, retrans: u64| Counters {
        bytes,
        retransmissions: retrans,
        timeouts: retrans / 10,
        rtt_sum_us: 4_200,
        rtt_count: 7,
        records: 3,
    };
    let id = |s: &str| s.parse::<ComponentId>().expect("component id");
    let flow = TopFlow {
        agent_id: 0x00c0_ffee,
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 17)),
        remote: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 9)),
        port: 443,
        server: false,
        category: Category::InterAz,
        counters: c(1_200_000, 40),
        path: vec![
            id("host:web-1"),
            id("subnet:app-a"),
            id("az-pair:use1-az1|use1-az2"),
        ],
        degraded: true,
    };
    IntervalSummary {
        start_ms: 1_764_000_000_000,
        end_ms: 1_764_000_005_000,
        flows: 12,
        records: 30,
        other_records: 1,
        categories: vec![
            (Category::IntraAz, c(50_000, 0)),
            (Category::InterAz, c(1_200_000, 40)),
        ],
        top: vec![flow.clone()],
        monitors: vec![MonitorPoint {
            monitor: "app".into(),
            flows: 4,
            counters: c(1_250_000, 40),
            health_indicator: Some(1),
            pairs: vec![PairStat {
                local: "subnet:app-a".into(),
                remote: "subnet:db-b".into(),
                counters: c(1_200_000, 40),
            }],
            flows_top: vec![flow],
        }],
        verdicts: vec![Verdict {
            interval_start_ms: 1_764_000_000_000,
            component: id("az-pair:use1-az1|use1-az2"),
            blame: Blame::Network,
            confidence: 0.875,
            degraded_flows: 5,
            healthy_flows: 1,
            evidence: vec![MetricChange {
                metric: "retrans_rate".into(),
                baseline: 0.001,
                observed: 0.031,
            }],
            first_seen_ms: 1_763_999_995_000,
        }],
        simulated: false,
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history-v0")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nfm-history-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn open(dir: &Path) -> Vec<IntervalSummary> {
    let cfg = StoreConfig::new(dir.to_path_buf());
    let metrics = std::sync::Arc::new(nfm_collector::metrics::Metrics::default());
    let (_store, recovered) = Store::open(cfg, metrics).expect("store opens");
    recovered.summaries
}

/// Writes the fixture (only when asked): a data dir whose history holds `sample()`.
#[test]
fn write_fixture() {
    let Ok(out) = std::env::var("NFM_WRITE_HISTORY_FIXTURE") else {
        return;
    };
    let dir = PathBuf::from(out);
    let cfg = StoreConfig::new(dir.clone());
    let metrics = std::sync::Arc::new(nfm_collector::metrics::Metrics::default());
    let (mut store, _) = Store::open(cfg, metrics).expect("store opens");
    store.append_summary(&sample()).expect("summary written");
}

#[test]
fn test_reads_history_written_before_versions() {
    let dir = temp_dir("v0");
    copy_dir(&fixture_dir(), &dir);
    let got = open(&dir);
    assert_eq!(
        got,
        vec![sample()],
        "the previous format's summary reads back whole"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_new_history_reads_back_next_to_old() {
    let dir = temp_dir("mixed");
    copy_dir(&fixture_dir(), &dir);
    let mut later = sample();
    later.start_ms += 5_000;
    later.end_ms += 5_000;
    {
        let cfg = StoreConfig::new(dir.clone());
        let metrics = std::sync::Arc::new(nfm_collector::metrics::Metrics::default());
        let (mut store, _) = Store::open(cfg, metrics).expect("store opens");
        store.append_summary(&later).expect("summary written");
    }
    let got = open(&dir);
    assert_eq!(got, vec![sample(), later]);
    let _ = std::fs::remove_dir_all(&dir);
}
