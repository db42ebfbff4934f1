//! The `score` driver: plays scenarios (over seeds and placements) and scores the verdicts
//! against their ground truth — either against a running collector (frames over UDP/TCP,
//! verdicts from `GET /api/verdicts`) or offline, with the collector's health evaluator run
//! in-process on the same simulated intervals (fast, for tuning; no network, no store).
//!
//! Live runs are laid out back to back in simulated time from `start_ms` (default: now,
//! aligned to the interval), each `gap` intervals after the previous one, because the
//! collector's aggregator closes intervals by watermark and drops records older than what it
//! has closed: use a fresh collector for each score run. Offline, each run gets a fresh
//! evaluator, so a scenario's score does not depend on the order of the others.

use crate::clock::ClockModel;
use crate::fleet::Fleet;
use crate::run::{self, Mode, RunOptions};
use crate::scenario::Scenario;
use crate::score::{self, RunMeta, RunScore, ScenarioScore, Thresholds, VerdictLite};
use crate::sim::Engine;
use crate::transport::Kind;
use crate::truth::{EndInfo, FaultTruth, RunInfo, TruthLine, TruthWriter, TRUTH_VERSION};
use anyhow::Context;
use nfm_collector::health::{Evaluator, HealthConfig};
use nfm_collector::model::{Category, ClosedInterval, ComponentId, FlowSample};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where verdicts come from.
#[derive(Debug, Clone)]
pub enum Target {
    /// The collector's health evaluator, in this process, with this configuration: a fresh one
    /// per run, or with `shared` one for all runs in order (baselines carry over, as in a live
    /// collector that scores many runs).
    Offline { health: HealthConfig, shared: bool },
    /// A running collector.
    Live {
        collector: SocketAddr,
        transport: Kind,
        api: String,
        token: Option<String>,
        /// Replay speed (× real time, 0 = unpaced).
        speed: f64,
        udp_sockets: usize,
        /// Minimum wall time to wait after the last frame before reading verdicts (the
        /// collector closes an idle interval after 10 s by default).
        close_wait: Duration,
        /// Verdict counts must stay unchanged this long before they are read as final.
        settle: Duration,
        /// Give up waiting for the collector after this long.
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub fleet: PathBuf,
    pub scenarios: Vec<PathBuf>,
    pub seeds: Vec<u64>,
    pub place_random: bool,
    /// Overrides each scenario's interval.
    pub interval_ms: Option<u64>,
    pub grace: u64,
    pub thresholds: Thresholds,
    pub target: Target,
    pub start_ms: Option<u64>,
    /// Empty intervals between two live runs.
    pub gap_intervals: u64,
    /// Write each run's ground truth here as `SCENARIO-seedN.jsonl`, and the verdicts it was
    /// scored on as `SCENARIO-seedN.verdicts.jsonl`.
    pub truth_dir: Option<PathBuf>,
    /// The agents' clocks and schedules (live: stamps, joins and restarts; offline: who is up).
    pub clocks: ClockModel,
}

/// Where offline runs with a fresh evaluator start when no `start_ms` is given:
/// 2026-01-01 06:00 UTC, an hour of mean load (the diurnal swing is lowest at midnight).
pub const OFFLINE_START_MS: u64 = 1_767_247_200_000;

/// Components on the paths of the flows a fault affects.
pub fn related(fleet: &Fleet, f: &FaultTruth) -> HashSet<ComponentId> {
    let mut out = HashSet::new();
    if let Some(ci) = fleet.component_index(&f.component) {
        for &fi in &fleet.flows_by_component[ci as usize] {
            for &c in &fleet.flows[fi as usize].comps {
                out.insert(fleet.components[c as usize].clone());
            }
        }
    }
    out.insert(f.component.clone());
    out
}

struct Planned {
    scenario: String,
    seed: u64,
    fleet: Fleet,
    truth: Vec<TruthLine>,
    meta: RunMeta,
    /// Offline runs have their verdicts already.
    verdicts: Option<Vec<VerdictLite>>,
}

/// Runs every scenario × seed and scores it. Returns one score per scenario, in input order.
pub fn score(opts: &ScoreOptions) -> anyhow::Result<Vec<ScenarioScore>> {
    let mut scenarios = Vec::new();
    for p in &opts.scenarios {
        scenarios.push(Scenario::load(p)?);
    }
    let fleet_name = opts.fleet.display().to_string();
    let seeds = if opts.seeds.is_empty() {
        vec![1]
    } else {
        opts.seeds.clone()
    };
    let mut cursor: Option<u64> = opts.start_ms;
    let mut done: Vec<Planned> = Vec::new();
    let mut shared_eval: Option<Evaluator> = None;
    for sc in &scenarios {
        for &seed in &seeds {
            let fleet = Fleet::load(&opts.fleet, seed)?;
            let mut s = sc.clone();
            if opts.place_random {
                s.place_random(&fleet, seed);
            }
            s.check(&fleet)?;
            let t = opts.interval_ms.or(s.interval_ms).unwrap_or(60_000);
            // Offline with a fresh evaluator per run, every run starts at the same fixed time
            // (its traffic follows the time of day): its score depends on fleet, scenario, seed
            // and interval only, not on the wall clock or on the runs scored before it.
            let fixed = matches!(opts.target, Target::Offline { shared: false, .. });
            let start = if fixed {
                opts.start_ms.unwrap_or(OFFLINE_START_MS).div_ceil(t) * t
            } else {
                cursor.unwrap_or_else(|| run::now_ms() / t * t).div_ceil(t) * t
            };
            let truth_path = opts
                .truth_dir
                .as_ref()
                .map(|d| d.join(format!("{}-seed{seed}.jsonl", s.name)));
            let placed = s.faults.iter().map(|f| f.component.to_string()).collect();
            let (truth, records, end_ms, verdicts) = match &opts.target {
                Target::Offline { health, shared } => {
                    let mut fresh = Evaluator::new(health.clone());
                    let eval = if *shared {
                        shared_eval.get_or_insert_with(|| Evaluator::new(health.clone()))
                    } else {
                        &mut fresh
                    };
                    let (truth, records, verdicts) = offline_run(
                        &fleet,
                        s.clone(),
                        seed,
                        start,
                        t,
                        truth_path,
                        &fleet_name,
                        eval,
                        opts.clocks,
                    )?;
                    let end = start + s.duration_ms.div_ceil(t) * t;
                    (truth, records, end, Some(verdicts))
                }
                Target::Live {
                    collector,
                    transport,
                    speed,
                    udp_sockets,
                    ..
                } => {
                    let ro = RunOptions {
                        transport: *transport,
                        collector: *collector,
                        udp_sockets: *udp_sockets,
                        interval_ms: t,
                        seed,
                        mode: Mode::Virtual {
                            start_ms: start,
                            speed: *speed,
                        },
                        truth: truth_path,
                        fleet_name: fleet_name.clone(),
                        ack_wait: Duration::from_secs(30),
                        stop: Arc::new(AtomicBool::new(false)),
                        clocks: opts.clocks,
                    };
                    let rep = run::run(&fleet, s.clone(), &ro)?;
                    eprintln!(
                        "nfm-sim score: {} seed {seed}: {} intervals, {} records sent, {} send errors, {} unacked frames",
                        s.name, rep.intervals, rep.send.records_sent, rep.send.send_errors, rep.send.frames_unacked
                    );
                    (rep.truth, rep.records, rep.end_ms, None)
                }
            };
            cursor = Some(end_ms + opts.gap_intervals * t);
            let meta = RunMeta {
                seed,
                start_ms: start,
                end_ms,
                interval_ms: t,
                placed,
                verdicts: 0,
                records,
            };
            done.push(Planned {
                scenario: s.name.clone(),
                seed,
                fleet,
                truth,
                meta,
                verdicts,
            });
        }
    }
    // Verdicts per run.
    let per_run: Vec<Vec<VerdictLite>> = match &opts.target {
        Target::Offline { .. } => done
            .iter_mut()
            .map(|p| p.verdicts.take().unwrap_or_default())
            .collect(),
        Target::Live {
            api,
            token,
            close_wait,
            settle,
            timeout,
            ..
        } => {
            let windows: Vec<(u64, u64)> = done
                .iter()
                .map(|p| {
                    (
                        p.meta.start_ms,
                        p.meta.end_ms + opts.grace * p.meta.interval_ms,
                    )
                })
                .collect();
            wait_for_verdicts(
                api,
                token.as_deref(),
                &windows,
                *close_wait,
                *settle,
                *timeout,
            )?
        }
    };
    let mut by_scenario: Vec<(String, Vec<(RunMeta, RunScore)>)> = Vec::new();
    for (mut p, verdicts) in done.into_iter().zip(per_run) {
        p.meta.verdicts = verdicts.len() as u64;
        if let Some(d) = &opts.truth_dir {
            let path = d.join(format!("{}-seed{}.verdicts.jsonl", p.scenario, p.seed));
            let mut text = String::new();
            for v in &verdicts {
                text.push_str(&serde_json::to_string(v)?);
                text.push('\n');
            }
            std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
        }
        let fleet = &p.fleet;
        let rs = score::score_run(&p.truth, &verdicts, &|f| related(fleet, f), opts.grace)
            .map_err(|e| anyhow::anyhow!("{} seed {}: {e}", p.scenario, p.seed))?;
        match by_scenario.iter_mut().find(|(n, _)| *n == p.scenario) {
            Some((_, v)) => v.push((p.meta, rs)),
            None => by_scenario.push((p.scenario.clone(), vec![(p.meta, rs)])),
        }
    }
    Ok(by_scenario
        .into_iter()
        .map(|(n, runs)| score::scenario_score(&n, runs, &opts.thresholds))
        .collect())
}

/// Reads every window's verdicts once the collector has closed the intervals: waits at least
/// `close_wait`, then polls until the counts stay unchanged for `settle` (bounded by `timeout`).
fn wait_for_verdicts(
    api: &str,
    token: Option<&str>,
    windows: &[(u64, u64)],
    close_wait: Duration,
    settle: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<VerdictLite>>> {
    let began = Instant::now();
    let from = windows.iter().map(|w| w.0).min().unwrap_or(0);
    let to = windows.iter().map(|w| w.1).max().unwrap_or(0);
    let mut last: Option<Vec<VerdictLite>> = None;
    let mut stable_since = Instant::now();
    loop {
        let now = Instant::now();
        let v = score::fetch_verdicts(api, from, to, token).map_err(anyhow::Error::msg)?;
        if last.as_ref().map(|l| l.len()) != Some(v.len()) {
            stable_since = now;
        }
        last = Some(v);
        let waited = now.duration_since(began);
        if waited >= close_wait && now.duration_since(stable_since) >= settle {
            break;
        }
        if waited >= timeout {
            eprintln!(
                "nfm-sim score: verdicts still changing after {timeout:?}; scoring what is there"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(score::split_by_window(&last.unwrap_or_default(), windows))
}

/// Turns an engine's last generated interval into the `ClosedInterval` the collector's
/// aggregator would hand its health evaluator: every agent's records, resolved with the
/// topology (category and path of each record from its own end), agent ids as on the wire.
/// For tuning the evaluator from Rust without a collector.
pub struct IntervalBuilder<'f> {
    fleet: &'f Fleet,
    ids: Vec<u64>,
    paths: HashMap<(IpAddr, IpAddr), (Category, Vec<ComponentId>)>,
    /// Every component once: paths share their names.
    names: std::collections::HashSet<ComponentId>,
}

impl<'f> IntervalBuilder<'f> {
    pub fn new(fleet: &'f Fleet) -> IntervalBuilder<'f> {
        let ids = fleet
            .agents
            .iter()
            .map(|&h| crate::agent::VirtualAgent::new(&fleet.hosts[h].name, 1, 0).agent_id())
            .collect();
        IntervalBuilder {
            fleet,
            ids,
            paths: HashMap::new(),
            names: Default::default(),
        }
    }

    /// The closed interval `k`; call right after `engine.interval(k)`.
    pub fn closed(&mut self, engine: &Engine, k: u64) -> ClosedInterval {
        let (s, e) = engine.bounds(k);
        let n = engine.records.iter().map(|r| r.len()).sum();
        let mut iv = ClosedInterval {
            start_ms: s,
            end_ms: e,
            flows: Vec::with_capacity(n),
        };
        for (a, recs) in engine.records.iter().enumerate() {
            for r in recs {
                let fleet = self.fleet;
                let names = &mut self.names;
                let (category, path) = self
                    .paths
                    .entry((r.local, r.remote))
                    .or_insert_with(|| {
                        // Equal components share one name, as the collector's resolver interns
                        // them (the evaluator's lookups then hit one allocation).
                        let (category, path) = fleet.topology.flow(r.local, r.remote);
                        let path = path.into_iter().map(|c| c.interned(names)).collect();
                        (category, path)
                    })
                    .clone();
                iv.flows.push(FlowSample {
                    agent_id: self.ids[a],
                    record: *r,
                    category,
                    path,
                });
            }
        }
        iv
    }
}

/// Simulates a run and evaluates it with the in-process health evaluator. Returns the truth,
/// the number of records, and the verdicts.
#[allow(clippy::too_many_arguments)]
fn offline_run(
    fleet: &Fleet,
    scenario: Scenario,
    seed: u64,
    start_ms: u64,
    t: u64,
    truth_path: Option<PathBuf>,
    fleet_name: &str,
    eval: &mut Evaluator,
    clocks: ClockModel,
) -> anyhow::Result<(Vec<TruthLine>, u64, Vec<VerdictLite>)> {
    let n = scenario.duration_ms.div_ceil(t);
    let mut truth = TruthWriter::create(truth_path.as_deref()).context("ground truth")?;
    truth.write(TruthLine::Run(RunInfo {
        version: TRUTH_VERSION,
        scenario: scenario.name.clone(),
        fleet: fleet_name.to_string(),
        seed,
        mode: "offline".into(),
        start_ms,
        end_ms: start_ms + n * t,
        interval_ms: t,
        agents: fleet.agents.len() as u64,
        flows: fleet.flows.len() as u64,
    }))?;
    let mut engine = Engine::new(fleet, scenario, seed, start_ms, t).with_clocks(clocks.agents(
        fleet.agents.len(),
        seed,
        Some(n),
    ));
    for f in engine.fault_truth(0) {
        truth.write(TruthLine::Fault(f))?;
    }
    let mut builder = IntervalBuilder::new(fleet);
    let mut verdicts = Vec::new();
    let mut records = 0u64;
    for k in 0..n {
        records += engine.interval(k) as u64;
        let iv = builder.closed(&engine, k);
        let rep = eval.evaluate(&iv);
        for v in rep.verdicts {
            verdicts.push(VerdictLite {
                interval_start_ms: v.interval_start_ms,
                component: v.component,
                blame: v.blame,
                confidence: v.confidence,
                first_seen_ms: v.first_seen_ms,
            });
        }
    }
    truth.write(TruthLine::End(EndInfo {
        end_ms: start_ms + n * t,
        intervals: n,
        records,
    }))?;
    Ok((truth.lines, records, verdicts))
}
