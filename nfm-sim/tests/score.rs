//! The `score` driver end to end: live (frames into a receiver, verdicts from an HTTP API) and
//! offline (the collector's health evaluator in-process) on the shipped scenarios.

use nfm_sim::clock::ClockModel;
use nfm_sim::score::{Thresholds, VerdictLite};
use nfm_sim::scorer::{score, ScoreOptions, Target};
use nfm_sim::sink::{Sink, SinkOptions};
use nfm_sim::transport::Kind;
use nfm_sim::truth::{self, TruthLine};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn scenarios(names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| PathBuf::from(format!("{DIR}/scenarios/{n}.toml")))
        .collect()
}

fn options(scenarios: Vec<PathBuf>, target: Target, truth_dir: Option<PathBuf>) -> ScoreOptions {
    ScoreOptions {
        fleet: PathBuf::from(format!("{DIR}/fleets/small.toml")),
        scenarios,
        seeds: vec![1],
        place_random: false,
        interval_ms: None,
        grace: 1,
        thresholds: Thresholds::default(),
        target,
        start_ms: Some(1_800_000_000_000),
        gap_intervals: 2,
        truth_dir,
        clocks: ClockModel::default(),
    }
}

/// A perfect evaluator behind an HTTP API: for every fault in the ground-truth files it finds
/// in `dir`, one verdict per interval of the fault naming its component with the right blame.
fn perfect_api(dir: PathBuf, stop: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<u64>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut served = 0;
        while !stop.load(Ordering::SeqCst) {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let mut verdicts = Vec::new();
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.to_string_lossy().ends_with(".verdicts.jsonl")
                    || p.extension().is_none_or(|x| x != "jsonl")
                {
                    continue;
                }
                let lines = truth::read(&p).unwrap();
                let t = lines
                    .iter()
                    .find_map(|l| {
                        if let TruthLine::Run(r) = l {
                            Some(r.interval_ms)
                        } else {
                            None
                        }
                    })
                    .unwrap();
                for l in &lines {
                    if let TruthLine::Fault(f) = l {
                        let mut at = f.start_ms / t * t;
                        while at < f.end_ms {
                            verdicts.push(VerdictLite {
                                interval_start_ms: at,
                                component: f.component.clone(),
                                blame: f.blame,
                                confidence: 1.0,
                                first_seen_ms: 0,
                            });
                            at += t;
                        }
                    }
                }
            }
            let body = serde_json::json!({ "verdicts": verdicts }).to_string();
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
            served += 1;
        }
        served
    });
    (url, h)
}

#[test]
fn test_live_scoring_against_a_perfect_evaluator_passes() {
    let dir = std::env::temp_dir().join(format!("nfm-sim-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sink = Sink::bind(SinkOptions {
        udp: None,
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        keep: false,
        quick: false,
        idle_exit: None,
        stop: stop.clone(),
    })
    .unwrap();
    let ingest = sink.tcp_addr().unwrap();
    let sink = std::thread::spawn(move || sink.run());
    let (api, server) = perfect_api(dir.clone(), stop.clone());
    let target = Target::Live {
        collector: ingest,
        transport: Kind::Tcp,
        api,
        token: None,
        speed: 0.0,
        udp_sockets: 1,
        close_wait: Duration::ZERO,
        settle: Duration::from_millis(600),
        timeout: Duration::from_secs(30),
    };
    let scores = score(&options(
        scenarios(&["overlapping-faults", "slow-remote-host"]),
        target,
        Some(dir.clone()),
    ))
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (st, _) = sink.join().unwrap();
    assert!(
        server.join().unwrap() >= 2,
        "the API was polled until stable"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(scores.len(), 2);
    for s in &scores {
        assert!(s.pass, "{}: {:?}", s.scenario, s.failures);
        assert_eq!(s.metrics.detection_recall, Some(1.0));
        assert_eq!(s.metrics.attribution_precision, Some(1.0));
        assert_eq!(s.metrics.attribution_recall, Some(1.0));
        assert_eq!(s.metrics.max_time_to_detect, Some(0));
        assert_eq!(s.metrics.false_positive_intervals, 0);
    }
    assert_eq!(scores[0].overall.faults, 2);
    // Runs are laid back to back, the second after the first plus the gap.
    let (a, b) = (&scores[0].runs[0], &scores[1].runs[0]);
    assert_eq!(a.start_ms, 1_800_000_000_000);
    assert_eq!(b.start_ms, a.end_ms + 2 * 60_000);
    assert_eq!(
        st.records,
        a.records + b.records,
        "every record was delivered"
    );
}

#[test]
fn test_offline_scoring_of_every_shipped_scenario() {
    let dir = std::env::temp_dir().join(format!("nfm-sim-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // wide-* scenarios are the wide fleet's.
    let mut all: Vec<PathBuf> = std::fs::read_dir(format!("{DIR}/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("wide-")
        })
        .collect();
    all.sort();
    let scores = score(&options(
        all.clone(),
        Target::Offline {
            health: Default::default(),
            shared: false,
        },
        Some(dir.clone()),
    ))
    .unwrap();
    assert_eq!(scores.len(), all.len());
    for (s, p) in scores.iter().zip(&all) {
        // Each run left its ground truth and verdicts behind, and the tallies are consistent.
        let name = Path::new(p)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert_eq!(s.scenario, name);
        let lines = truth::read(&dir.join(format!("{name}-seed1.jsonl"))).unwrap();
        // Faults expected to raise no verdict count apart from detection and attribution.
        let faults = lines
            .iter()
            .filter(|l| matches!(l, TruthLine::Fault(f) if f.expects_naming()))
            .count() as u64;
        let silent = lines
            .iter()
            .filter(|l| matches!(l, TruthLine::Fault(f) if !f.expects_naming()))
            .count() as u64;
        assert_eq!(s.overall.faults, faults, "{name}");
        assert_eq!(s.overall.no_verdict_faults, silent, "{name}");
        assert!(dir.join(format!("{name}-seed1.verdicts.jsonl")).exists());
        assert!(s.overall.detected <= s.overall.faults && s.overall.attributed <= s.overall.faults);
        assert_eq!(
            s.runs[0].verdicts,
            std::fs::read_to_string(dir.join(format!("{name}-seed1.verdicts.jsonl")))
                .unwrap()
                .lines()
                .count() as u64
        );
    }
    let healthy = scores.iter().find(|s| s.scenario == "healthy-day").unwrap();
    assert_eq!(healthy.overall.faults, 0);
    assert_eq!(
        healthy.overall.fault_free_intervals, 1440,
        "a whole day of 60 s intervals"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_offline_score_does_not_depend_on_the_runs_before() {
    // Issue 14: offline runs with a fresh evaluator all start at the same time, so a scenario's
    // verdicts are the same alone or after others (they used to follow the wall clock and the
    // runs before them through the time of day).
    let offline = || Target::Offline {
        health: Default::default(),
        shared: false,
    };
    let mut o = options(scenarios(&["rtt-drift"]), offline(), None);
    o.start_ms = None;
    o.seeds = vec![1, 2];
    let alone = score(&o).unwrap();
    o.scenarios = scenarios(&["az-pair-loss", "rtt-drift"]);
    let after = score(&o).unwrap();
    let (a, b) = (&alone[0], &after[1]);
    assert_eq!(b.scenario, "rtt-drift");
    let starts = |s: &nfm_sim::score::ScenarioScore| -> Vec<u64> {
        s.runs.iter().map(|r| r.start_ms).collect()
    };
    assert_eq!(starts(a), vec![nfm_sim::scorer::OFFLINE_START_MS; 2]);
    assert_eq!(starts(a), starts(b));
    let verdicts = |s: &nfm_sim::score::ScenarioScore| -> Vec<u64> {
        s.runs.iter().map(|r| r.verdicts).collect()
    };
    assert_eq!(verdicts(a), verdicts(b));
    assert!(verdicts(a).iter().all(|&v| v > 0), "the ramp is named");
    assert_eq!(a.overall, b.overall);
}
