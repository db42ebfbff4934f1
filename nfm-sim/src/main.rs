//! nfm-sim: the simulator's command line. Every subcommand documents itself in `--help`;
//! docs/sim.md has the file formats and the ground-truth contract.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nfm_collector::model::ComponentKind;
use nfm_sim::clock::ClockModel;
use nfm_sim::duration::parse_ms;
use nfm_sim::fleet::Fleet;
use nfm_sim::run::{self, LoadOptions, Mode, RunOptions};
use nfm_sim::scenario::Scenario;
use nfm_sim::score::{format_markdown, format_table, Thresholds};
use nfm_sim::scorer::{self, ScoreOptions, Target};
use nfm_sim::sink::{Sink, SinkOptions};
use nfm_sim::transport::Kind;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "nfm-sim",
    version,
    about = "Simulated nfm fleets: real wire protocol, injected faults, ground truth, load tests and accuracy scoring.",
    after_help = "File formats, the ground-truth contract and the scoring definitions: docs/sim.md.\n\n\
Examples:\n  \
nfm-sim check --fleet nfm-sim/fleets/small.toml --scenario nfm-sim/scenarios/rolling.toml\n  \
nfm-sim run --fleet nfm-sim/fleets/small.toml --scenario nfm-sim/scenarios/rolling.toml --collector 127.0.0.1:7700 --truth truth.jsonl\n  \
nfm-sim run --fleet nfm-sim/fleets/small.toml --scenario nfm-sim/scenarios/az-pair-loss.toml --virtual --transport tcp --truth t.jsonl\n  \
nfm-sim load --fleet nfm-sim/fleets/large.toml --rate 1000000 --duration 10s --transport udp\n  \
nfm-sim score --fleet nfm-sim/fleets/small.toml --offline --seed 1,2,3 --place random\n  \
nfm-sim score --fleet nfm-sim/fleets/small.toml --collector 127.0.0.1:7700 --api http://127.0.0.1:8080 --interval 60s --json"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Play a fleet (and optionally a scenario) against a collector, in real or virtual time.
    Run(RunArgs),
    /// Load test: healthy traffic at a target rate of flow records per second.
    Load(LoadArgs),
    /// Run scenarios against a collector (or offline) and score its verdicts against ground truth.
    Score(ScoreArgs),
    /// A counting receiver (decodes every frame, acks TCP); prints its counters as JSON on exit.
    Sink(SinkArgs),
    /// Validate a fleet (and scenarios) and print what it contains.
    Check(CheckArgs),
}

fn dur(s: &str) -> Result<u64, String> {
    parse_ms(s).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum Transport {
    Udp,
    Tcp,
}

impl From<Transport> for Kind {
    fn from(t: Transport) -> Kind {
        match t {
            Transport::Udp => Kind::Udp,
            Transport::Tcp => Kind::Tcp,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Place {
    /// Faults where the scenario file puts them.
    File,
    /// Each fault moved to a random component of the same kind (seeded).
    Random,
}

#[derive(Args)]
struct Common {
    /// Fleet file: a topology file with a [traffic] section (nfm-sim/fleets/).
    #[arg(long)]
    fleet: PathBuf,
    /// Seed of every random choice (fleet peers, traffic, placement).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// How the virtual agents' clocks disagree (nfm_sim::clock). Unaligned by default, as a real
/// fleet's are.
#[derive(Args, Clone, Copy)]
struct ClockArgs {
    /// Lock-step agents: every clock exact, every agent up from the first interval to the last.
    #[arg(long)]
    aligned_clocks: bool,
    /// Largest clock offset of a host, ms (each host draws from ±this).
    #[arg(long, value_parser = dur, default_value = "600ms")]
    max_clock_offset: u64,
    /// Share of agents that restart once mid-run (Goodbye, 1-2 intervals away, a new session).
    #[arg(long, default_value_t = 0.1)]
    restart_share: f64,
}

impl ClockArgs {
    fn model(self) -> ClockModel {
        if self.aligned_clocks {
            return ClockModel::aligned();
        }
        ClockModel {
            max_offset_ms: self.max_clock_offset,
            restart_share: self.restart_share.clamp(0.0, 1.0),
            ..ClockModel::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    clocks: ClockArgs,
    /// Scenario file (nfm-sim/scenarios/). Without one, healthy traffic.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Collector ingest address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    collector: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// Interval length (default: the scenario's, else 5s).
    #[arg(long, value_parser = dur)]
    interval: Option<u64>,
    /// Virtual time: stamp intervals from --start-ms and send as fast as --speed allows.
    #[arg(long = "virtual")]
    virtual_time: bool,
    /// Virtual time: replay speed (× real time); 0 = as fast as the transport takes it.
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Virtual time: Unix ms of the first interval (default: so that the run ends at now).
    #[arg(long)]
    start_ms: Option<u64>,
    /// Real time: stop after this long (default: the scenario's duration; forever for a
    /// repeating scenario or no scenario, until Ctrl-C).
    #[arg(long, value_parser = dur)]
    duration: Option<u64>,
    /// Write the ground truth (JSON lines, docs/sim.md) here.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Where the scenario's faults go.
    #[arg(long, value_enum, default_value = "file")]
    place: Place,
    /// UDP sockets shared by the agents.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// How long to wait for TCP Acks at the end.
    #[arg(long, value_parser = dur, default_value = "10s")]
    ack_wait: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value = "127.0.0.1:7700")]
    collector: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// Target flow records per second (0 = as fast as possible).
    #[arg(long, default_value_t = 1_000_000.0)]
    rate: f64,
    #[arg(long, value_parser = dur, default_value = "10s")]
    duration: u64,
    /// Interval the frames are stamped with (wall clock).
    #[arg(long, value_parser = dur, default_value = "5s")]
    interval: u64,
    /// Use only the first N agents of the fleet.
    #[arg(long)]
    agents: Option<usize>,
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    #[arg(long, value_parser = dur, default_value = "10s")]
    ack_wait: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    /// Fleet file.
    #[arg(long)]
    fleet: PathBuf,
    #[command(flatten)]
    clocks: ClockArgs,
    /// Scenario file or directory of *.toml (repeatable; default nfm-sim/scenarios/ beside the fleet).
    /// From a directory a fleet FLEET.toml takes its own FLEET-*.toml when there are any, else
    /// every scenario but the other fleets' own (wide-* for wide.toml, the rest for small.toml).
    #[arg(long)]
    scenario: Vec<PathBuf>,
    /// Seeds to run each scenario with (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seed: Vec<u64>,
    /// Where the faults go: as in the file, or moved to random components of the same kind.
    #[arg(long, value_enum, default_value = "file")]
    place: Place,
    /// Score the collector's health evaluator in-process instead of a running collector.
    #[arg(long)]
    offline: bool,
    /// Offline: the health evaluator's configuration (TOML, the collector's `HealthConfig`
    /// fields; unset fields keep their defaults).
    #[arg(long)]
    health_config: Option<PathBuf>,
    /// Offline: one evaluator for all runs in order (baselines carry over, as in a live
    /// collector) instead of a fresh one per run.
    #[arg(long)]
    shared_evaluator: bool,
    /// Collector ingest address (live scoring).
    #[arg(long, default_value = "127.0.0.1:7700")]
    collector: SocketAddr,
    /// Collector API base URL (live scoring).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Bearer token for the API.
    #[arg(long)]
    token: Option<String>,
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Replay speed (× real time, 0 = unpaced).
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Overrides the scenarios' interval.
    #[arg(long, value_parser = dur)]
    interval: Option<u64>,
    /// Intervals after a fault's end in which naming its component is excused.
    #[arg(long, default_value_t = 1)]
    grace: u64,
    /// Unix ms of the first run (live: default so that the last run ends before now).
    #[arg(long)]
    start_ms: Option<u64>,
    /// Empty intervals between two runs.
    #[arg(long, default_value_t = 2)]
    gap: u64,
    #[arg(long, default_value_t = 0.95)]
    min_detection_recall: f64,
    #[arg(long, default_value_t = 0.9)]
    min_attribution_precision: f64,
    #[arg(long, default_value_t = 0.9)]
    min_attribution_recall: f64,
    /// In intervals.
    #[arg(long, default_value_t = 2)]
    max_time_to_detect: u64,
    #[arg(long, default_value_t = 1.0)]
    max_false_flips_per_day: f64,
    #[arg(long, default_value_t = 0)]
    max_network_blame_slow_host: u64,
    /// Write each run's ground truth into this directory.
    #[arg(long)]
    truth_dir: Option<PathBuf>,
    /// Live: wait at least this long after the last frame before reading verdicts.
    #[arg(long, value_parser = dur, default_value = "12s")]
    close_wait: u64,
    /// Live: verdicts must stay unchanged this long.
    #[arg(long, value_parser = dur, default_value = "3s")]
    settle: u64,
    /// Live: give up waiting after this long.
    #[arg(long, value_parser = dur, default_value = "300s")]
    timeout: u64,
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Print the full result as JSON.
    #[arg(long)]
    json: bool,
    /// Print a Markdown table (docs/accuracy.md).
    #[arg(long)]
    markdown: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// UDP address to receive on.
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// TCP address to listen on.
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Exit after this long without frames (once some arrived).
    #[arg(long, value_parser = dur, default_value = "3s")]
    idle: u64,
    /// Exit after this long in any case.
    #[arg(long, value_parser = dur, default_value = "600s")]
    max: u64,
    /// Check header and CRC and count records without decoding them (benchmarks).
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    scenario: Vec<PathBuf>,
}

fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    stop
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Load(a) => cmd_load(a),
        Cmd::Score(a) => cmd_score(a),
        Cmd::Sink(a) => cmd_sink(a),
        Cmd::Check(a) => cmd_check(a),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("nfm-sim: {e:#}");
            std::process::exit(2);
        }
    }
}

fn cmd_run(a: RunArgs) -> anyhow::Result<i32> {
    let fleet = Fleet::load(&a.common.fleet, a.common.seed)?;
    let mut scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::healthy(a.duration.unwrap_or(3_600_000)),
    };
    if a.place == Place::Random {
        scenario.place_random(&fleet, a.common.seed);
    }
    let interval_ms = a.interval.or(scenario.interval_ms).unwrap_or(5_000);
    let mode = if a.virtual_time {
        if a.scenario.is_none() && a.duration.is_some() {
            scenario.duration_ms = a.duration.unwrap_or(scenario.duration_ms);
        }
        // Default: the run ends at now. The collector refuses intervals stamped ahead of its
        // clock (docs/collector.md §Timestamps), and a replay of the past is what it accepts.
        let span = scenario.duration_ms.div_ceil(interval_ms) * interval_ms;
        let start = a
            .start_ms
            .unwrap_or_else(|| run::now_ms().saturating_sub(span) / interval_ms * interval_ms);
        Mode::Virtual {
            start_ms: start,
            speed: a.speed,
        }
    } else {
        Mode::RealTime {
            duration_ms: a.duration,
        }
    };
    let opts = RunOptions {
        transport: a.transport.into(),
        collector: a.collector,
        udp_sockets: a.sockets,
        interval_ms,
        seed: a.common.seed,
        mode,
        truth: a.truth.clone(),
        fleet_name: a.common.fleet.display().to_string(),
        ack_wait: Duration::from_millis(a.ack_wait),
        stop: stop_flag(),
        clocks: a.clocks.model(),
    };
    log::info!(
        "nfm-sim run: {} agents, {} flows, scenario `{}` ({} faults), interval {} ms, {:?}",
        fleet.agents.len(),
        fleet.flows.len(),
        scenario.name,
        scenario.faults.len(),
        interval_ms,
        mode
    );
    let rep = run::run(&fleet, scenario, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "scenario {}: {} intervals [{} .. {}), {} records in {:.1} s; sent {} frames / {} records, {} send errors, {} records lost, {} frames unacked{}",
            rep.scenario,
            rep.intervals,
            rep.start_ms,
            rep.end_ms,
            rep.records,
            rep.elapsed_s,
            rep.send.frames_sent,
            rep.send.records_sent,
            rep.send.send_errors,
            rep.send.records_lost,
            rep.send.frames_unacked,
            a.truth.as_ref().map(|p| format!("; ground truth in {}", p.display())).unwrap_or_default()
        );
    }
    Ok(0)
}

fn cmd_load(a: LoadArgs) -> anyhow::Result<i32> {
    let fleet = Fleet::load(&a.common.fleet, a.common.seed)?;
    let opts = LoadOptions {
        transport: a.transport.into(),
        collector: a.collector,
        udp_sockets: a.sockets,
        rate: a.rate,
        duration: Duration::from_millis(a.duration),
        interval_ms: a.interval,
        agents: a.agents,
        seed: a.common.seed,
        ack_wait: Duration::from_millis(a.ack_wait),
        stop: stop_flag(),
    };
    let rep = run::load(&fleet, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "load {} ({} agents, target {} rec/s, {:.2} s): offered {:.0} rec/s ({} records), achieved {:.0} rec/s, {:.0} rec per CPU-second, {} send errors, {} records lost, {} acked records, {} frames unacked at the end",
            rep.transport,
            rep.agents,
            rep.target_rate,
            rep.duration_s,
            rep.offered_rate,
            rep.offered_records,
            rep.achieved_rate,
            rep.records_per_cpu_s,
            rep.send_errors,
            rep.records_lost,
            rep.acked_records,
            rep.unacked_frames
        );
    }
    Ok(0)
}

fn scenario_files(paths: &[PathBuf], fleet: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = paths.to_vec();
    if paths.is_empty() {
        let dir = fleet
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("scenarios"));
        match dir {
            Some(d) if d.is_dir() => paths.push(d),
            _ => bail!(
                "no --scenario given and no scenarios/ directory beside the fleet's directory"
            ),
        }
    }
    // Scenarios named `FLEET-*.toml` belong to the fleet file `FLEET.toml` beside this one (the
    // wide fleet's `wide-*`): a directory gives a fleet its own when it has any, else every
    // scenario but the other fleets' own.
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let own = format!("{}-", stem(fleet));
    let others: Vec<String> = fleet
        .parent()
        .and_then(|d| std::fs::read_dir(d).ok())
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .map(|p| format!("{}-", stem(&p)))
                .filter(|s| *s != own)
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("{}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            v.sort();
            if v.iter().any(|f| stem(f).starts_with(&own)) {
                v.retain(|f| stem(f).starts_with(&own));
            } else {
                v.retain(|f| !others.iter().any(|o| stem(f).starts_with(o.as_str())));
            }
            out.extend(v);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

fn cmd_score(a: ScoreArgs) -> anyhow::Result<i32> {
    let scenarios = scenario_files(&a.scenario, &a.fleet)?;
    let target = if a.offline {
        let health = match &a.health_config {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("{}", p.display()))?
            }
            None => nfm_collector::health::HealthConfig::default(),
        };
        Target::Offline {
            health,
            shared: a.shared_evaluator,
        }
    } else {
        Target::Live {
            collector: a.collector,
            transport: a.transport.into(),
            api: a.api.clone(),
            token: a.token.clone(),
            speed: a.speed,
            udp_sockets: a.sockets,
            close_wait: Duration::from_millis(a.close_wait),
            settle: Duration::from_millis(a.settle),
            timeout: Duration::from_millis(a.timeout),
        }
    };
    let start_ms = match (&target, a.start_ms) {
        // Live runs end before now (the collector refuses intervals stamped ahead of its
        // clock): they start as far back as all of them, with their gaps, span.
        (Target::Live { .. }, None) => {
            let mut span = 0u64;
            for p in &scenarios {
                let s = Scenario::load(p)?;
                let t = a.interval.or(s.interval_ms).unwrap_or(60_000).max(1);
                span += (s.duration_ms.div_ceil(t) + a.gap + 1) * t * a.seed.len().max(1) as u64;
            }
            Some(run::now_ms().saturating_sub(span))
        }
        (_, s) => s,
    };
    let opts = ScoreOptions {
        fleet: a.fleet.clone(),
        scenarios,
        seeds: a.seed.clone(),
        place_random: a.place == Place::Random,
        interval_ms: a.interval,
        grace: a.grace,
        thresholds: Thresholds {
            min_detection_recall: a.min_detection_recall,
            min_attribution_precision: a.min_attribution_precision,
            min_attribution_recall: a.min_attribution_recall,
            max_time_to_detect: a.max_time_to_detect,
            max_false_flips_per_day: a.max_false_flips_per_day,
            max_network_blame_slow_host: a.max_network_blame_slow_host,
            ..Thresholds::default()
        },
        start_ms,
        target,
        gap_intervals: a.gap,
        truth_dir: a.truth_dir.clone(),
        clocks: a.clocks.model(),
    };
    if let Some(d) = &opts.truth_dir {
        std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
    }
    let scores = scorer::score(&opts)?;
    if a.json {
        let out = serde_json::json!({ "thresholds": opts.thresholds, "scenarios": scores, "pass": scores.iter().all(|s| s.pass) });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if a.markdown {
        print!("{}", format_markdown(&scores));
    } else {
        print!("{}", format_table(&scores));
    }
    Ok(if scores.iter().all(|s| s.pass) { 0 } else { 1 })
}

fn cmd_sink(a: SinkArgs) -> anyhow::Result<i32> {
    if a.udp.is_none() && a.tcp.is_none() {
        bail!("give --udp and/or --tcp");
    }
    let stop = stop_flag();
    let s2 = stop.clone();
    let max = Duration::from_millis(a.max);
    std::thread::spawn(move || {
        std::thread::sleep(max);
        s2.store(true, Ordering::SeqCst);
    });
    let sink = Sink::bind(SinkOptions {
        udp: a.udp,
        tcp: a.tcp,
        keep: false,
        quick: a.quick,
        idle_exit: Some(Duration::from_millis(a.idle)),
        stop,
    })?;
    eprintln!(
        "nfm-sim sink: udp {:?} tcp {:?}",
        sink.udp_addr(),
        sink.tcp_addr()
    );
    let (st, _) = sink.run();
    println!("{}", serde_json::to_string(&st)?);
    Ok(0)
}

fn cmd_check(a: CheckArgs) -> anyhow::Result<i32> {
    let fleet = Fleet::load(&a.common.fleet, a.common.seed)?;
    let per_agent = |recs: usize| recs as f64 / fleet.agents.len().max(1) as f64;
    let mut cats: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &fleet.flows {
        *cats.entry(f.category.as_str()).or_default() += 1;
    }
    let mut kinds: BTreeMap<ComponentKind, usize> = BTreeMap::new();
    for c in &fleet.components {
        *kinds.entry(c.kind).or_default() += 1;
    }
    let reports: usize = fleet
        .flows
        .iter()
        .map(|f| {
            fleet.hosts[f.client].agent.is_some() as usize
                + matches!(f.server, nfm_sim::fleet::Remote::Host(h) if fleet.hosts[h].agent.is_some()) as usize
        })
        .sum();
    println!(
        "fleet {}: {} hosts, {} agents, {} flows, {} records per interval ({:.1} per agent)",
        a.common.fleet.display(),
        fleet.hosts.len(),
        fleet.agents.len(),
        fleet.flows.len(),
        reports,
        per_agent(reports)
    );
    println!("flows by category: {cats:?}");
    println!(
        "components crossed: {}",
        kinds
            .iter()
            .map(|(k, n)| format!("{}={n}", k.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for p in &a.scenario {
        let s = Scenario::load(p)?;
        s.check(&fleet)?;
        for f in &s.faults {
            let eq = fleet.equivalents(&f.component);
            if !eq.is_empty() {
                println!(
                    "  warning: fault {} at {} is indistinguishable (same flows) from {}",
                    f.id,
                    f.component,
                    eq.iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        println!(
            "scenario {} ({}): {} fault(s), {} at {}",
            s.name,
            p.display(),
            s.faults.len(),
            nfm_sim::duration::format_ms(s.duration_ms),
            s.interval_ms
                .map(nfm_sim::duration::format_ms)
                .unwrap_or_else(|| "the default interval".into())
        );
    }
    Ok(0)
}
