//! History over the whole retention (issue 16): `fill DIR` writes 7 days of 5 s interval
//! summaries (120,960) of a 10k-flow fleet, in virtual time, through the real store actor
//! (`Store::run`: cover and summary records, group fsync, 1-min and 1-h rollups); `query DIR`
//! starts the way a collector does (`Store::open` replay, then an `Api` holding what the default
//! settings hold in memory and reading older history from disk) and times workload insights
//! plus one monitor's overview over the 7 days through the API's router.
//!
//! The fleet: 10k flows (1,000 agents × 10) in four categories with Zipf-like weights and
//! per-interval noise; 4 monitors (one per local subnet). An interval's top contributors are the
//! top `k` (20) by each metric and category among the 600 heaviest flows plus 200 others drawn
//! that interval (with these weights the top 20 of 10k always come from the heaviest few hundred),
//! and the category totals are the fleet's expected totals scaled by the interval's noise, so
//! filling takes minutes, not the hours aggregating 1.2 billion records would.
//!
//! Prints `history.fill_s`, `history.disk_mib`, `history.open_ms`, `history.query_7d_ms`,
//! `history.query_24h_ms` and `history.rss_mib` (peak resident memory of the query process).
//!
//! Usage: `cargo bench -p nfm-collector --bench history -- fill DIR [--days N]` then
//! `... -- query DIR`.

use nfm_collector::api::{Api, ApiConfig};
use nfm_collector::collector::Settings;
use nfm_collector::metrics::Metrics;
use nfm_collector::model::{Category, ComponentId};
use nfm_collector::pipeline::{ApiMsg, StoreMsg};
use nfm_collector::store::{Store, StoreConfig, StoreOutputs};
use nfm_collector::summary::{Counters, IntervalSummary, Metric, MonitorPoint, PairStat, TopFlow};
use nfm_collector::topology::Topology;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IV: u64 = 5_000;
const T0: u64 = 1_764_547_200_000; // 2025-12-01 00:00 UTC
const FLOWS: usize = 10_000;
const K: usize = 20;
const SUBNETS: [&str; 4] = ["app-a", "app-b", "data-a", "data-b"];
const CATS: [Category; 4] = [
    Category::IntraAz,
    Category::InterAz,
    Category::InterVpc,
    Category::Service,
];

const TOPOLOGY: &str = r#"
[[region]]
name = "r1"
[[az]]
name = "az1"
region = "r1"
[[az]]
name = "az2"
region = "r1"
[[vpc]]
id = "vpc-app"
region = "r1"
cidrs = ["10.0.0.0/16"]
[[vpc]]
id = "vpc-data"
region = "r1"
cidrs = ["10.1.0.0/16"]
[[subnet]]
id = "app-a"
vpc = "vpc-app"
az = "az1"
cidr = "10.0.0.0/18"
[[subnet]]
id = "app-b"
vpc = "vpc-app"
az = "az2"
cidr = "10.0.64.0/18"
[[subnet]]
id = "data-a"
vpc = "vpc-data"
az = "az1"
cidr = "10.1.0.0/18"
[[subnet]]
id = "data-b"
vpc = "vpc-data"
az = "az2"
cidr = "10.1.64.0/18"
"#;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// 0.5 ..= 1.5
    fn noise(&mut self) -> f64 {
        0.5 + (self.next() % 1000) as f64 / 1000.0
    }
}

/// One flow of the fleet.
struct Flow {
    agent: u64,
    local: IpAddr,
    remote: IpAddr,
    port: u16,
    category: Category,
    subnet: usize,
    weight: f64,
    path: Vec<ComponentId>,
    pair: (String, String),
}

fn fleet() -> Vec<Flow> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    (0..FLOWS)
        .map(|i| {
            let agent = (i / 10) as u64;
            let subnet = (agent % 4) as usize;
            let cat = CATS[(r.next() % 4) as usize];
            let remote_subnet = (subnet + 1 + (r.next() % 3) as usize) % 4;
            let ip = |s: usize, h: u64| {
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    (s / 2) as u8,
                    (s % 2 * 64) as u8 + (h >> 8) as u8 % 64,
                    h as u8,
                ))
            };
            let id = |s: &str| s.parse::<ComponentId>().expect("component");
            Flow {
                agent,
                local: ip(subnet, agent),
                remote: ip(remote_subnet, r.next() % 4000),
                port: [443, 5432, 6379, 8080][(r.next() % 4) as usize],
                category: cat,
                subnet,
                // Zipf-like: the i-th heaviest carries 1/(i+1) of the heaviest's bytes.
                weight: 50_000_000.0 / (i as f64 + 1.0),
                path: vec![
                    id(&format!("host:h-{agent}")),
                    id(&format!("subnet:{}", SUBNETS[subnet])),
                    id(&format!("subnet:{}", SUBNETS[remote_subnet])),
                ],
                pair: (
                    format!("subnet:{}", SUBNETS[subnet]),
                    format!("subnet:{}", SUBNETS[remote_subnet]),
                ),
            }
        })
        .collect()
}

fn counters(f: &Flow, n: f64, r: &mut Rng) -> Counters {
    let bytes = (f.weight * n) as u64 + 1;
    Counters {
        bytes,
        retransmissions: bytes / 200_000 + r.next() % 3,
        timeouts: u64::from(r.next().is_multiple_of(500)),
        rtt_sum_us: (200 + r.next() % 5_000) * 4,
        rtt_count: 4,
        records: 1,
    }
}

/// The top `K` by each metric of `idx` (union).
fn top(idx: &[usize], c: &[Counters]) -> Vec<usize> {
    let mut keep = Vec::new();
    let mut v: Vec<(u64, usize)> = Vec::with_capacity(idx.len());
    for m in Metric::ALL {
        v.clear();
        v.extend(idx.iter().map(|&i| (c[i].value(m), i)).filter(|x| x.0 > 0));
        let k = K.min(v.len());
        if k > 0 && k < v.len() {
            v.select_nth_unstable_by_key(k - 1, |x| std::cmp::Reverse(x.0));
        }
        keep.extend(v[..k].iter().map(|x| x.1));
    }
    keep.sort_unstable();
    keep.dedup();
    keep
}

fn summary(
    i: u64,
    fleet: &[Flow],
    templates: &[TopFlow],
    totals: &[(Category, Counters)],
    c: &mut [Counters],
    r: &mut Rng,
) -> IntervalSummary {
    let n = r.noise();
    // Candidates: the 600 heaviest and 200 drawn this interval.
    let mut cand: Vec<usize> = (0..600).collect();
    cand.extend((0..200).map(|_| 600 + (r.next() % (FLOWS as u64 - 600)) as usize));
    cand.sort_unstable();
    cand.dedup();
    for &f in &cand {
        c[f] = counters(&fleet[f], n * r.noise(), r);
    }
    let c = &*c;
    let degraded = |f: usize| i % 720 < 24 && fleet[f].subnet == 1 && f.is_multiple_of(3);
    let flow = |f: usize| TopFlow {
        counters: c[f],
        degraded: degraded(f),
        ..templates[f].clone()
    };
    let mut top_idx = Vec::new();
    for cat in CATS {
        let idx: Vec<usize> = cand
            .iter()
            .copied()
            .filter(|&f| fleet[f].category == cat)
            .collect();
        top_idx.extend(top(&idx, c));
    }
    let monitors = (0..4)
        .map(|s| {
            let idx: Vec<usize> = cand
                .iter()
                .copied()
                .filter(|&f| fleet[f].subnet == s)
                .collect();
            let mut pairs: HashMap<(String, String), Counters> = HashMap::new();
            for &f in &idx {
                pairs.entry(fleet[f].pair.clone()).or_default().add(&c[f]);
            }
            // The monitor's totals: its share (a quarter) of the fleet's.
            let mut total = Counters::default();
            for (_, t) in totals {
                total.add(t);
            }
            let share = |x: u64| (x as f64 * n / 4.0) as u64;
            MonitorPoint {
                monitor: SUBNETS[s].to_string(),
                flows: (FLOWS / 4) as u64,
                counters: Counters {
                    bytes: share(total.bytes),
                    retransmissions: share(total.retransmissions),
                    timeouts: share(total.timeouts),
                    rtt_sum_us: share(total.rtt_sum_us),
                    rtt_count: share(total.rtt_count),
                    records: (FLOWS / 4) as u64,
                },
                health_indicator: Some(u8::from(s == 1 && i % 720 < 24)),
                pairs: pairs
                    .into_iter()
                    .map(|((local, remote), counters)| PairStat {
                        local,
                        remote,
                        counters,
                    })
                    .collect(),
                flows_top: top(&idx, c).into_iter().map(flow).collect(),
            }
        })
        .collect();
    IntervalSummary {
        start_ms: T0 + i * IV,
        end_ms: T0 + (i + 1) * IV,
        flows: FLOWS as u64,
        records: FLOWS as u64,
        other_records: 0,
        categories: totals
            .iter()
            .map(|(cat, t)| {
                let s = |x: u64| (x as f64 * n) as u64;
                (
                    *cat,
                    Counters {
                        bytes: s(t.bytes),
                        retransmissions: s(t.retransmissions),
                        timeouts: s(t.timeouts),
                        rtt_sum_us: s(t.rtt_sum_us),
                        rtt_count: t.rtt_count,
                        records: t.records,
                    },
                )
            })
            .collect(),
        top: top_idx.into_iter().map(flow).collect(),
        monitors,
        verdicts: Vec::new(),
        simulated: true,
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let m = e
                .metadata()
                .map(|m| (m.is_dir(), m.len()))
                .unwrap_or((false, 0));
            if m.0 {
                dir_bytes(&e.path())
            } else {
                m.1
            }
        })
        .sum()
}

fn fill(dir: &Path, days: f64) {
    let fleet = fleet();
    // Expected totals per category (every flow, at noise 1).
    let mut r = Rng(7);
    let mut totals: Vec<(Category, Counters)> =
        CATS.iter().map(|c| (*c, Counters::default())).collect();
    for f in &fleet {
        let c = counters(f, 1.0, &mut r);
        totals
            .iter_mut()
            .find(|(c2, _)| *c2 == f.category)
            .unwrap()
            .1
            .add(&c);
    }
    let templates: Vec<TopFlow> = fleet
        .iter()
        .map(|x| TopFlow {
            agent_id: x.agent,
            local: x.local,
            remote: x.remote,
            port: x.port,
            server: false,
            category: x.category,
            counters: Counters::default(),
            path: x.path.clone(),
            degraded: false,
        })
        .collect();
    let mut c = vec![Counters::default(); FLOWS];
    let started = Instant::now();
    let s = Settings::default();
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_bytes = s.segment_mib << 20;
    cfg.top_k = s.top_k;
    let (store, _) = Store::open(cfg, Arc::new(Metrics::default())).expect("open store");
    let (tx, rx) = sync_channel(256);
    let (dtx, _drx) = channel();
    let (atx, arx) = sync_channel(1024);
    let drain = std::thread::spawn(move || while let Ok(ApiMsg::Interval(_)) = arx.recv() {});
    let out = StoreOutputs {
        durable: dtx,
        waker: None,
        summaries: atx,
    };
    let h = std::thread::spawn(move || store.run(rx, out));
    let n = (days * 86_400_000.0) as u64 / IV;
    let mut gen_s = 0.0;
    for i in 0..n {
        let t = Instant::now();
        let s = summary(i, &fleet, &templates, &totals, &mut c, &mut r);
        gen_s += t.elapsed().as_secs_f64();
        tx.send(StoreMsg::Interval {
            summary: Box::new(s),
            closed_before_ms: 0,
            covers_n: 0,
        })
        .expect("store running");
        if i % 10_000 == 0 {
            eprintln!(
                "history: filled {i}/{n} intervals ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    tx.send(StoreMsg::Shutdown).expect("store running");
    h.join().expect("store thread");
    drain.join().expect("drain thread");
    eprintln!("history: {gen_s:.1} s of the fill spent generating summaries");
    println!("history.fill_s {:.1} s", started.elapsed().as_secs_f64());
    println!("history.intervals {n} intervals");
    println!(
        "history.disk_mib {:.0} MiB",
        dir_bytes(dir) as f64 / (1 << 20) as f64
    );
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn query(dir: &Path) {
    // Start the way the collector does, with its default settings (collector.rs).
    let s = Settings::default();
    let started = Instant::now();
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_bytes = s.segment_mib << 20;
    cfg.retention_ms = s.retention_days * 86_400_000;
    cfg.replay_keep = s.max_history_intervals;
    cfg.replay_keep_bytes = s.max_history_mib << 20;
    cfg.top_k = s.top_k;
    let (store, rec) = Store::open(cfg, Arc::new(Metrics::default())).expect("open store");
    drop(store);
    let (rtx, _rrx) = sync_channel(16);
    let (atx, _arx) = sync_channel(16);
    let monitors = SUBNETS
        .iter()
        .map(|s| {
            serde_json::from_str(&format!(r#"{{"name":"{s}","local":["subnet:{s}"]}}"#))
                .expect("monitor")
        })
        .collect();
    let mut api = Api::new(
        ApiConfig {
            topology_path: None,
            monitors_path: None,
            retention_ms: s.retention_days * 86_400_000,
            max_history_intervals: s.max_history_intervals,
            max_history_bytes: s.max_history_mib << 20,
            top_k: s.top_k,
        },
        Arc::new(Topology::parse(TOPOLOGY).expect("topology")),
        monitors,
        Arc::new(Metrics::default()),
        rtx,
        atx,
    )
    .with_history_dir(dir);
    let newest = rec.summaries.iter().map(|s| s.end_ms).max().unwrap_or(0);
    for summary in rec.summaries {
        api.add_interval(Arc::new(summary));
    }
    println!("history.open_ms {} ms", started.elapsed().as_millis());
    let mut run = |span: u64| {
        let from = newest.saturating_sub(span);
        let t = Instant::now();
        let mut res = Vec::new();
        for url in [
            format!("/api/insights?metric=data-transferred&from={from}&to={newest}"),
            format!("/api/monitors/app-b/overview?from={from}&to={newest}"),
        ] {
            let r = api.route("GET", &url, None, b"");
            assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
            let v = r.json_value();
            res.push(format!(
                "{} ({} intervals)",
                v["resolution"],
                v["intervals"]
                    .as_u64()
                    .unwrap_or_else(|| v["points"].as_array().map_or(0, |p| p
                        .iter()
                        .map(|p| p["intervals"].as_u64().unwrap_or(0))
                        .sum()))
            ));
        }
        (t.elapsed().as_millis(), res)
    };
    let (ms7, res7) = run(7 * 86_400_000);
    eprintln!("history: 7-day queries read {}", res7.join(", "));
    let (ms1, res1) = run(86_400_000);
    eprintln!("history: 24-hour queries read {}", res1.join(", "));
    println!("history.query_7d_ms {ms7} ms");
    println!("history.query_24h_ms {ms1} ms");
    println!("history.rss_mib {} MiB", status_kib("VmHWM:") / 1024);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let days = args
        .iter()
        .position(|a| a == "--days")
        .and_then(|i| args.get(i + 1))
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(7.0);
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("fill"), Some(dir)) => fill(Path::new(dir), days),
        (Some("query"), Some(dir)) => query(Path::new(dir)),
        _ => {
            eprintln!("usage: history (fill DIR [--days N] | query DIR)");
            std::process::exit(2);
        }
    }
}
