//! End-to-end collector throughput: an in-process generator feeds 10k agents × 10 flows
//! (100k active flows) into a running collector (`Collector::start`, every actor on its own
//! thread, store on disk with fsync, health evaluator in). Frames go through the real ingest
//! thread (`Collector::injector`, handled like UDP datagrams: CRC, decode, sessions, dedupe),
//! then resolver, aggregator, health stage and store. Each round is one interval of simulated
//! time, so every round closes one interval of 100k flows.
//!
//! Prints `collector.records_per_s`, `collector.rss_mib`, `collector.bytes_per_active_flow`,
//! plus RSS samples over the run to show whether memory stays flat.
//!
//! Usage: `cargo bench -p nfm-collector --bench collector -- [--secs N] [--agents N] [--flows-per-agent N] [--monitors N]`
//! (`NFM_BENCH_SECS` also sets the duration; default 20 s). `--monitors N` (or
//! `NFM_BENCH_MONITORS`) runs with N monitors instead of the default 3 (issue 17 item 3): the
//! topology gains an idle VPC of 1,000 subnets, most monitors watch one of them, every 100th
//! watches the active traffic (so a flow belongs to a handful of monitors, as with real
//! per-team monitors), and every name gets the suffix `_N_monitors`.

use nfm_collector::collector::{Collector, Settings};
use nfm_collector::ingest::Injected;
use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Message};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The same allocator as the nfm-collector binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
[[gateway]]
id = "tgw"
kind = "transit-gateway"
vpcs = ["vpc-app", "vpc-data"]
[[service]]
name = "object-store"
kind = "object-storage"
region = "r1"
prefixes = ["198.18.0.0/20"]
"#;

const MONITORS: &str = r#"
[[monitor]]
name = "az1"
local = ["az:az1"]
[[monitor]]
name = "app-to-store"
local = ["vpc:vpc-app"]
remote = ["service:object-store"]
[[monitor]]
name = "app-to-data"
local = ["vpc:vpc-app"]
remote = ["vpc:vpc-data"]
"#;

/// The extra topology and monitors of a `--monitors N` run (N > 3): 1,000 idle subnets.
fn many_monitors(n: u64) -> (String, String) {
    let mut topo =
        String::from("[[vpc]]\nid = \"vpc-idle\"\nregion = \"r1\"\ncidrs = [\"10.2.0.0/16\"]\n");
    for i in 0..1000u32 {
        topo.push_str(&format!(
            "[[subnet]]\nid = \"idle-{i}\"\nvpc = \"vpc-idle\"\naz = \"az{}\"\ncidr = \"10.2.{}.{}/26\"\n",
            1 + i % 2,
            i / 4,
            (i % 4) * 64
        ));
    }
    let active_local = [
        "az:az1",
        "az:az2",
        "vpc:vpc-app",
        "subnet:app-a",
        "region:r1",
    ];
    let active_remote = [
        "",
        "vpc:vpc-data",
        "service:object-store",
        "region:r1",
        "az:az2",
    ];
    let mut mons = String::from(MONITORS);
    for j in 0..n.saturating_sub(3) {
        let (local, remote) = if j % 100 == 0 {
            let k = (j / 100) as usize;
            (
                active_local[k % 5].to_string(),
                active_remote[(k / 5 + k) % 5].to_string(),
            )
        } else {
            let r = if j % 3 == 0 { "vpc:vpc-app" } else { "" };
            (format!("subnet:idle-{}", j % 1000), r.to_string())
        };
        let remote = if remote.is_empty() {
            String::new()
        } else {
            format!("remote = [\"{remote}\"]\n")
        };
        mons.push_str(&format!(
            "[[monitor]]\nname = \"gen-{j}\"\nlocal = [\"{local}\"]\n{remote}tags = {{ team = \"t{}\" }}\n",
            j % 20
        ));
    }
    (topo, mons)
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// User + system CPU time of the whole process (every thread), seconds.
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Gives a template frame a new sequence number and interval in place (nfm-wire's
/// `BatchView::restamp`: header, both timestamps and the CRC), so the load loop never re-encodes.
fn restamp(frame: &mut [u8], seq: u64, start_ms: u64) {
    let mut v = nfm_wire::BatchView::new_checked(frame, nfm_wire::MAX_FRAME_LEN)
        .expect("a template FlowBatch");
    let h = Header { seq, ..v.header() };
    v.restamp(&h, (start_ms, start_ms + 10_000))
        .expect("template timestamps are 9-byte varints");
}

fn main() {
    let secs = arg("--secs")
        .or_else(|| {
            std::env::var("NFM_BENCH_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(20);
    let agents = arg("--agents").unwrap_or(10_000);
    let per_agent = arg("--flows-per-agent").unwrap_or(10);
    let health = arg("--health").unwrap_or(1) != 0;
    let monitors = arg("--monitors")
        .or_else(|| {
            std::env::var("NFM_BENCH_MONITORS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(3);
    nfm_collector::alloc::tune();
    let flows = agents * per_agent;
    let dir = std::env::temp_dir().join(format!("nfm-bench-collector-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("topology.toml");
    let mons = dir.join("monitors.toml");
    if monitors > 3 {
        let (extra, list) = many_monitors(monitors);
        std::fs::write(&topo, format!("{TOPOLOGY}{extra}")).unwrap();
        std::fs::write(&mons, list).unwrap();
    } else {
        std::fs::write(&topo, TOPOLOGY).unwrap();
        std::fs::write(&mons, MONITORS).unwrap();
    }

    // Templates: one frame per agent with its flows; intra-AZ, inter-AZ, inter-VPC, service and
    // unclassified remotes, some retransmissions and timeouts.
    let t0: u64 = 1_700_000_000_000;
    let mut templates: Vec<Vec<u8>> = Vec::with_capacity(agents as usize);
    for a in 0..agents {
        let local = IpAddr::V4(Ipv4Addr::new(
            10,
            0,
            (a / 250) as u8 % 128,
            (a % 250) as u8 + 1,
        ));
        let records: Vec<FlowRecord> = (0..per_agent)
            .map(|f| {
                let k = a * per_agent + f;
                let remote = match f % 5 {
                    0 => IpAddr::V4(Ipv4Addr::new(
                        10,
                        0,
                        ((k / 200) % 128) as u8,
                        (k % 200) as u8 + 1,
                    )),
                    1 => IpAddr::V4(Ipv4Addr::new(
                        10,
                        0,
                        64 + ((k / 200) % 64) as u8,
                        (k % 200) as u8 + 1,
                    )),
                    2 => IpAddr::V4(Ipv4Addr::new(
                        10,
                        1,
                        ((k / 200) % 128) as u8,
                        (k % 200) as u8 + 1,
                    )),
                    3 => IpAddr::V4(Ipv4Addr::new(
                        198,
                        18,
                        ((k / 200) % 16) as u8,
                        (k % 200) as u8 + 1,
                    )),
                    _ => IpAddr::V4(Ipv4Addr::new(
                        203,
                        0,
                        ((k / 200) % 256) as u8,
                        (k % 200) as u8 + 1,
                    )),
                };
                let mut r = FlowRecord {
                    local,
                    remote,
                    remote_port: 443 + (f as u16 % 3),
                    bytes_sent: 10_000 + k % 5000,
                    bytes_received: 50_000 + k % 7000,
                    segs_out: 20,
                    segs_in: 40,
                    sockets_open: 2,
                    ..Default::default()
                };
                r.rtt.count = 8;
                r.rtt.sum_us = 8 * (300 + k % 200);
                r.rtt.min_us = 250;
                r.rtt.max_us = 900;
                r.rtt.last_srtt_us = 400;
                r.retrans.established = k.is_multiple_of(13) as u64;
                r.rto.established = k.is_multiple_of(97) as u64;
                r
            })
            .collect();
        let f = encode_to_vec(
            &Header {
                agent_id: a + 1,
                epoch: 1,
                seq: 0,
            },
            &Message::FlowBatch(FlowBatch {
                interval_start_ms: t0,
                interval_end_ms: t0 + 10_000,
                records,
            }),
            None,
        );
        templates.push(f);
    }
    // The in-place restamp must produce frames the collector accepts.
    {
        let mut f = templates[0].clone();
        restamp(&mut f, 5, t0 + 20_000);
        let p = nfm_wire::decode(&f, &Default::default()).expect("restamped frame decodes");
        let nfm_wire::Message::FlowBatch(b) = p.message else {
            panic!()
        };
        assert_eq!(
            (p.header.seq, b.interval_start_ms, b.interval_end_ms),
            (5, t0 + 20_000, t0 + 30_000)
        );
    }
    let frame_bytes: usize = templates.iter().map(Vec::len).sum();
    // How many monitors a flow belongs to on average: what a run's monitor cost scales with.
    let monitors_per_flow = {
        let t = nfm_collector::topology::Topology::parse(&std::fs::read_to_string(&topo).unwrap())
            .expect("bench topology");
        let list = nfm_collector::monitor::parse_monitors(&std::fs::read_to_string(&mons).unwrap())
            .expect("bench monitors");
        for m in &list {
            m.validate(&t).expect("bench monitor fits the topology");
        }
        let ix = nfm_collector::monitor_index::MonitorIndex::new(&list);
        let (mut out, mut scratch, mut n) = (Vec::new(), Vec::new(), 0usize);
        for f in &templates {
            let p = nfm_wire::decode(f, &Default::default()).expect("template decodes");
            if let nfm_wire::Message::FlowBatch(b) = p.message {
                for r in &b.records {
                    ix.members(
                        &t.resolve(r.local),
                        &t.resolve(r.remote),
                        &mut out,
                        &mut scratch,
                    );
                    n += out.len();
                }
            }
        }
        n as f64 / flows as f64
    };

    let rss_before = rss_bytes();
    let settings = Settings {
        listen_udp: None,
        listen_tcp: None,
        http: None,
        data_dir: dir.join("data"),
        topology: Some(topo),
        monitors: Some(mons),
        // The whole run is one burst of simulated time: no interval may close for idleness.
        idle_close_ms: 3_600_000,
        // The generator's frames are 10 s intervals.
        interval_ms: 10_000,
        // Summaries kept in memory for queries are capped (default 256 MiB); a small cap here
        // lets a short run reach its steady state, so RSS samples show whether memory is flat.
        max_history_mib: 16,
        health,
        ..Settings::default()
    };
    let c = Collector::start(&settings).expect("collector starts");
    let inj = c.injector();
    let m = c.metrics.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let fed = Arc::new(AtomicU64::new(0));
    let gen = {
        let (stop, fed) = (stop.clone(), fed.clone());
        std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                let mut round = 0u64;
                let mut block = Injected::default();
                while !stop.load(Ordering::Relaxed) {
                    let start = t0 + round * 10_000;
                    for (i, t) in templates.iter_mut().enumerate() {
                        restamp(t, round + 1, start);
                        block.bytes.extend_from_slice(t);
                        block.lens.push(t.len() as u32);
                        if block.lens.len() >= 2_000 || i + 1 == agents as usize {
                            let n = block.lens.len() as u64 * per_agent;
                            if !inj.send(std::mem::take(&mut block)) {
                                return round;
                            }
                            fed.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    round += 1;
                }
                round
            })
            .unwrap()
    };

    eprintln!(
        "collector bench: {agents} agents x {per_agent} flows = {flows} active flows, {} B of frames per round, {secs} s, health evaluator {}, {monitors} monitors",
        frame_bytes,
        if health { "on" } else { "off" }
    );
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut samples = Vec::new();
    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(
            Duration::from_secs(5)
                .min(Duration::from_secs(secs).saturating_sub(started.elapsed()))
                .max(Duration::from_millis(10)),
        );
        let done = m.aggregated_records.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, done);
        let rss = rss_bytes();
        samples.push(rss);
        eprintln!(
            "  t={:>4.0}s aggregated {:>11} records ({:>9.0}/s)  closed intervals {:>4}  summaries durable {:>4}  rss {:>6.1} MiB  history in memory {:>5.1} MiB  store {:>7.1} MiB  backpressure waits {}",
            started.elapsed().as_secs_f64(),
            done,
            rate,
            m.closed_intervals.load(Ordering::Relaxed),
            m.store_summaries.load(Ordering::Relaxed),
            rss as f64 / (1 << 20) as f64,
            m.history_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            m.store_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            m.backpressure_waits.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = gen.join().unwrap();
    let total = fed.load(Ordering::Relaxed);
    // Wait for everything fed to be aggregated and its batches durable.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (m.aggregated_records.load(Ordering::Relaxed) < total
        || m.store_batches.load(Ordering::Relaxed) < total / per_agent)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Summaries of every interval the watermark closed must be durable too.
    let closed = m.closed_intervals.load(Ordering::Relaxed);
    while m.store_summaries.load(Ordering::Relaxed) < closed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let aggregated = m.aggregated_records.load(Ordering::Relaxed);
    let stored = m.store_batches.load(Ordering::Relaxed) * per_agent;
    assert_eq!(aggregated, total, "every record fed was aggregated");
    assert_eq!(stored, total, "every batch fed was stored");
    // Resident memory at rest: once caught up, every actor gives back what it freed at its
    // next idle tick (the health stage `IDLE_RELEASE` after its last interval), each trim
    // counted in `nfm_memory_trims_total{actor}`; the last interval stays open with every flow.
    // At rest = no actor has trimmed for 2 s (they trim within ~1.5 s of going idle).
    let trims_now = || -> Vec<u64> {
        m.memory_trims
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect()
    };
    let at_end = trims_now();
    let (mut seen, mut since) = (at_end.clone(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(10);
    while since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        let now = trims_now();
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
    }
    let trims: Vec<String> = nfm_collector::metrics::Trimmer::ALL
        .iter()
        .map(|a| format!("{} {}", a.as_str(), seen[*a as usize] - at_end[*a as usize]))
        .collect();
    let trims = trims.join(", ");
    let rss = rss_bytes();
    eprintln!(
        "  fed {total} records in {rounds} rounds; {closed} intervals closed (evaluated, summarized, durable); health evaluation {:.1} s total; store {:.1} MiB on disk",
        m.health_eval_us.load(Ordering::Relaxed) as f64 / 1e6,
        m.store_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
    );
    eprintln!(
        "  {elapsed:.1} s wall, {cpu:.1} s CPU (all threads, generator included): {:.2} µs CPU per record; on 2 idle cores that is at most {:.0} records/s",
        cpu * 1e6 / total as f64,
        2.0 * total as f64 / cpu
    );
    if samples.len() >= 2 {
        let first = samples[0] as f64 / (1 << 20) as f64;
        let max = *samples.iter().max().unwrap() as f64 / (1 << 20) as f64;
        eprintln!(
            "  rss first sample {first:.1} MiB, max {max:.1} MiB, last {:.1} MiB (at rest, after idle trims: {trims})",
            rss as f64 / (1 << 20) as f64
        );
    }
    // Without the evaluator every name carries a suffix, so one script can print both runs.
    let mut sfx = if health { "" } else { "_without_health" }.to_string();
    if monitors > 3 {
        sfx.push_str(&format!("_{monitors}_monitors"));
    }
    println!(
        "collector.records_per_s{sfx} {:.0} records/s",
        total as f64 / elapsed
    );
    println!(
        "collector.rss_mib{sfx} {:.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
    println!(
        "collector.bytes_per_active_flow{sfx} {:.0} bytes",
        rss.saturating_sub(rss_before) as f64 / flows as f64
    );
    println!(
        "collector.cpu_us_per_record{sfx} {:.2} us",
        cpu * 1e6 / total as f64
    );
    println!("collector.monitors_per_flow{sfx} {monitors_per_flow:.2} monitors");
    c.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
