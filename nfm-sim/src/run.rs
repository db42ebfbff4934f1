//! Runs: a fleet (and optionally a scenario) played against a collector in real time or in
//! virtual time, and the load test.
//!
//! - Real time: interval `k` covers wall-clock `[start + kT, start + (k+1)T)` and is sent when it
//!   ends, as real agents do. Runs for `duration`, the scenario's length, or until stopped.
//! - Virtual time: intervals are stamped with simulated timestamps from `start_ms` and sent as
//!   fast as `speed` allows (`speed` × real time; 0 = as fast as the transport takes them). The
//!   collector buckets by the frames' own timestamps, so a day replays in seconds. Over TCP,
//!   interval k+1 is only sent once every frame of interval k is acknowledged (a barrier), so
//!   the collector never sees one agent's future before another agent's present. Over UDP on
//!   loopback, datagrams reach the collector's one socket in send order; elsewhere use `speed`.
//! - Load: one healthy interval per agent is generated up front (a few variants) and re-encoded
//!   with fresh sequence numbers and the current interval's timestamps, at a target rate of
//!   records per second, for a bounded duration.

use crate::agent::VirtualAgent;
use crate::clock::{AgentClock, ClockModel};
use crate::fleet::Fleet;
use crate::scenario::Scenario;
use crate::sim::Engine;
use crate::transport::{Kind, SendStats, Sender};
use crate::truth::{EndInfo, RunInfo, TruthLine, TruthWriter, TRUTH_VERSION};
use anyhow::Context;
use nfm_wire::{encode, FlowRecord, Goodbye, Message, DEFAULT_DATAGRAM_LEN};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest FlowBatch frame over TCP (many records per frame, still far below MAX_FRAME_LEN).
pub const TCP_FRAME_LEN: usize = 64 * 1024;

/// CPU time (user + system) this process has used, seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass; a zeroed rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A new session epoch: the wall clock in seconds, but always above the last one this process
/// handed out, so two runs in the same second (the scorer's back-to-back runs) are two sessions
/// and the collector does not drop the second one's frames as replays of the first.
pub fn next_epoch(wall_ms: u64) -> u32 {
    use std::sync::atomic::AtomicU32;
    static LAST: AtomicU32 = AtomicU32::new(0);
    let want = ((wall_ms / 1000) as u32).max(1);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let e = want.max(last.saturating_add(1));
        match LAST.compare_exchange(last, e, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return e,
            Err(now) => last = now,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Replay from `start_ms` at `speed` × real time (0 = unpaced).
    Virtual { start_ms: u64, speed: f64 },
    /// Wall-clock intervals; `None` runs until stopped (or the scenario's end).
    RealTime { duration_ms: Option<u64> },
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub transport: Kind,
    pub collector: SocketAddr,
    pub udp_sockets: usize,
    pub interval_ms: u64,
    pub seed: u64,
    pub mode: Mode,
    pub truth: Option<PathBuf>,
    /// Name recorded in the ground truth's `run` line.
    pub fleet_name: String,
    /// How long to wait at the end for TCP Acks.
    pub ack_wait: Duration,
    pub stop: Arc<AtomicBool>,
    /// The agents' clocks and schedules ([`ClockModel::aligned`]: lock-step agents).
    pub clocks: ClockModel,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub interval_ms: u64,
    pub intervals: u64,
    pub records: u64,
    pub elapsed_s: f64,
    pub send: SendStats,
    #[serde(skip)]
    pub truth: Vec<TruthLine>,
}

fn agents_for(fleet: &Fleet, epoch: u32, started: u64) -> Vec<VirtualAgent> {
    fleet
        .agents
        .iter()
        .map(|&h| VirtualAgent::new(&fleet.hosts[h].name, epoch, started))
        .collect()
}

/// Sends one interval of every agent.
/// What each agent does with one interval: whether it reports it, whether it first says Hello
/// (a new session), and the stamps its clock puts on it.
struct AgentPlan {
    up: bool,
    hello: bool,
    bounds: (u64, u64),
}

fn send_interval(
    sender: &mut Sender,
    agents: &mut [VirtualAgent],
    records: &[Vec<FlowRecord>],
    plans: &[AgentPlan],
    interval_ms: u64,
    buf: &mut Vec<u8>,
) {
    let udp = sender.kind() == Kind::Udp;
    let max = if udp {
        DEFAULT_DATAGRAM_LEN
    } else {
        TCP_FRAME_LEN
    };
    for (a, agent) in agents.iter_mut().enumerate() {
        let plan = &plans[a];
        if !plan.up {
            continue;
        }
        if udp || plan.hello {
            buf.clear();
            let seq = agent.hello(interval_ms as u32, buf);
            sender.send(a, agent.epoch(), seq, 0, buf, true);
        }
        match agent.batch(plan.bounds, &records[a], max) {
            Ok((first_seq, frames)) => {
                for (i, f) in frames.iter().enumerate() {
                    let seq = first_seq + i as u64;
                    sender.send(a, agent.epoch(), seq, f.records, &f.bytes, false);
                }
            }
            Err(e) => log::warn!("agent {}: cannot encode its batch: {e}", agent.host_name),
        }
        buf.clear();
        let errs = sender.stats().send_errors;
        let seq = agent.stats(plan.bounds.1, errs, records[a].len() as u64, buf);
        sender.send(a, agent.epoch(), seq, 0, buf, false);
    }
    sender.drive(Duration::ZERO);
}

/// Each agent's plan for interval `k` (true bounds `se`); agents that come back from a restart
/// get a new session (a new epoch) first, as a restarted agent process does.
fn plan_interval(
    clocks: &[AgentClock],
    agents: &mut [VirtualAgent],
    k: u64,
    se: (u64, u64),
    run_start_ms: u64,
) -> Vec<AgentPlan> {
    clocks
        .iter()
        .zip(agents.iter_mut())
        .map(|(c, agent)| {
            let hello = c.starts_session(k);
            if hello && k > 0 {
                // Started strictly after the session it replaces (the collector tells a
                // restart from a replay by the Hello's start time).
                let wall = now_ms().max(agent.started_at_ms + 1);
                *agent = VirtualAgent::new(&agent.host_name, next_epoch(wall), wall);
            }
            AgentPlan {
                up: c.up(k),
                hello,
                bounds: c.stamp(k, se, run_start_ms),
            }
        })
        .collect()
}

pub fn count_records(frame: &[u8]) -> u64 {
    nfm_wire::BatchView::new_checked(frame, nfm_wire::MAX_FRAME_LEN)
        .map(|v| v.record_count())
        .unwrap_or(0)
}

/// A Goodbye from each agent `who` marks, with `reason`.
fn goodbye(
    sender: &mut Sender,
    agents: &mut [VirtualAgent],
    who: &[bool],
    reason: &str,
    buf: &mut Vec<u8>,
) {
    for (a, agent) in agents.iter_mut().enumerate() {
        if !who[a] {
            continue;
        }
        buf.clear();
        let h = agent.header();
        encode(
            &h,
            &Message::Goodbye(Goodbye {
                reason: reason.into(),
            }),
            None,
            buf,
        );
        sender.send(a, agent.epoch(), h.seq, 0, buf, false);
    }
}

fn sleep_until(deadline: Instant, stop: &AtomicBool, sender: &mut Sender) {
    // Waiting for a point in wall-clock time (the pacing itself), in slices so Ctrl-C and
    // TCP Acks are handled meanwhile.
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        let slice = (deadline - now).min(Duration::from_millis(50));
        if sender.kind() == Kind::Tcp {
            sender.flush_all();
            sender.drive(slice);
        } else {
            std::thread::sleep(slice);
        }
    }
}

/// Plays `scenario` on `fleet` against the collector.
pub fn run(fleet: &Fleet, scenario: Scenario, opts: &RunOptions) -> anyhow::Result<RunReport> {
    scenario.check(fleet)?;
    let t = opts.interval_ms.max(1);
    let wall = now_ms();
    let (start_ms, intervals): (u64, Option<u64>) = match opts.mode {
        Mode::Virtual { start_ms, .. } => (start_ms, Some(scenario.duration_ms.div_ceil(t))),
        Mode::RealTime { duration_ms } => {
            let d = duration_ms.or(
                if scenario.repeat || scenario.faults.is_empty() && scenario.name == "none" {
                    None
                } else {
                    Some(scenario.duration_ms)
                },
            );
            (wall / t * t, d.map(|d| d.div_ceil(t)))
        }
    };
    let mode_name = if matches!(opts.mode, Mode::Virtual { .. }) {
        "virtual"
    } else {
        "real-time"
    };
    let mut truth = TruthWriter::create(opts.truth.as_deref())
        .with_context(|| format!("cannot write ground truth to {:?}", opts.truth))?;
    let planned_end = start_ms + intervals.unwrap_or(0) * t;
    truth.write(TruthLine::Run(RunInfo {
        version: TRUTH_VERSION,
        scenario: scenario.name.clone(),
        fleet: opts.fleet_name.clone(),
        seed: opts.seed,
        mode: mode_name.into(),
        start_ms,
        end_ms: planned_end,
        interval_ms: t,
        agents: fleet.agents.len() as u64,
        flows: fleet.flows.len() as u64,
    }))?;
    let mut engine = Engine::new(fleet, scenario, opts.seed, start_ms, t);
    let mut sender = Sender::new(
        opts.transport,
        opts.collector,
        fleet.agents.len(),
        opts.udp_sockets,
    )?;
    let mut agents = agents_for(fleet, next_epoch(wall), wall);
    let clocks = opts.clocks.agents(fleet.agents.len(), opts.seed, intervals);
    engine = engine.with_clocks(clocks.clone());
    let mut buf = Vec::with_capacity(2048);
    let began = Instant::now();
    let mut k = 0u64;
    let mut records = 0u64;
    let mut cycle_written: Option<u64> = None;
    loop {
        if opts.stop.load(Ordering::Relaxed) || intervals.is_some_and(|n| k >= n) {
            break;
        }
        let (s, e) = engine.bounds(k);
        let cycle = if engine.scenario.repeat {
            (s - start_ms) / engine.scenario.duration_ms.max(1)
        } else {
            0
        };
        if cycle_written != Some(cycle) && (engine.scenario.repeat || cycle_written.is_none()) {
            for f in engine.fault_truth(cycle) {
                truth.write(TruthLine::Fault(f))?;
            }
            cycle_written = Some(cycle);
        }
        // Pace.
        match opts.mode {
            Mode::Virtual { speed, .. } if speed > 0.0 => {
                let at =
                    began + Duration::from_secs_f64((k + 1) as f64 * t as f64 / 1000.0 / speed);
                sleep_until(at, &opts.stop, &mut sender);
            }
            Mode::RealTime { .. } => {
                let wait = e.saturating_sub(now_ms());
                sleep_until(
                    Instant::now() + Duration::from_millis(wait),
                    &opts.stop,
                    &mut sender,
                );
            }
            _ => {}
        }
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        // Agents going down for a restart say Goodbye first, as a stopped agent does.
        let leaving: Vec<bool> = clocks.iter().map(|c| c.leaves_before(k)).collect();
        if leaving.contains(&true) {
            goodbye(
                &mut sender,
                &mut agents,
                &leaving,
                "nfm-sim agent restarting",
                &mut buf,
            );
        }
        records += engine.interval(k) as u64;
        let plans = plan_interval(&clocks, &mut agents, k, (s, e), start_ms);
        send_interval(
            &mut sender,
            &mut agents,
            &engine.records,
            &plans,
            t,
            &mut buf,
        );
        if matches!(opts.mode, Mode::Virtual { .. }) && sender.kind() == Kind::Tcp {
            // Barrier: every agent's interval k is acknowledged before any agent sends k + 1.
            // Each agent has its own connection, so without it a fast agent's k + 1 can reach
            // the collector before a slow agent's k, advance its watermark and close k early
            // (the slow agent's records then count as late). Real agents are a whole interval
            // apart; a replay must not be less ordered than they are.
            if !sender.finish(Instant::now() + opts.ack_wait, true) {
                log::warn!(
                    "interval {k}: not every frame acknowledged within {:?}",
                    opts.ack_wait
                );
            }
        }
        log::debug!("interval {k} sent ({} records so far)", records);
        k += 1;
    }
    let up: Vec<bool> = clocks.iter().map(|c| c.up(k.saturating_sub(1))).collect();
    goodbye(
        &mut sender,
        &mut agents,
        &up,
        "nfm-sim run finished",
        &mut buf,
    );
    let complete = sender.finish(Instant::now() + opts.ack_wait, true);
    if !complete {
        log::warn!(
            "not every frame was acknowledged within {:?}",
            opts.ack_wait
        );
    }
    let end_ms = start_ms + k * t;
    truth.write(TruthLine::End(EndInfo {
        end_ms,
        intervals: k,
        records,
    }))?;
    Ok(RunReport {
        scenario: engine.scenario.name.clone(),
        start_ms,
        end_ms,
        interval_ms: t,
        intervals: k,
        records,
        elapsed_s: began.elapsed().as_secs_f64(),
        send: sender.stats(),
        truth: truth.lines,
    })
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub transport: Kind,
    pub collector: SocketAddr,
    /// Several collectors (issue 16 item 3): each agent ships to its rendezvous choice; empty
    /// means `collector` alone.
    pub collectors: Vec<SocketAddr>,
    pub udp_sockets: usize,
    /// Target records per second; 0 = as fast as possible.
    pub rate: f64,
    pub duration: Duration,
    pub interval_ms: u64,
    /// Use only the first N agents of the fleet.
    pub agents: Option<usize>,
    pub seed: u64,
    pub ack_wait: Duration,
    pub stop: Arc<AtomicBool>,
}

/// What a load test did. Rates are per second of the sending phase.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub transport: String,
    pub agents: u64,
    pub target_rate: f64,
    pub duration_s: f64,
    /// Records the generator produced and handed to the transport.
    pub offered_records: u64,
    pub offered_rate: f64,
    /// Records in frames the kernel accepted (UDP) or that were completely written (TCP), by
    /// the end (including the final flush).
    pub sent_records: u64,
    /// Records written during the timed phase, per second of it.
    pub achieved_rate: f64,
    /// CPU time (user + system, including loopback delivery work the kernel charges to the
    /// sender) the generator used in the timed phase, and offered records per CPU second:
    /// its capacity per core, whatever the receiver or the machine's other load allow.
    pub cpu_s: f64,
    pub records_per_cpu_s: f64,
    pub send_errors: u64,
    pub records_lost: u64,
    /// TCP: frames still unacknowledged after the final wait.
    pub unacked_frames: u64,
    pub acked_records: u64,
    pub frames: u64,
    pub bytes: u64,
}

/// One agent's encoded frames of one interval, each with the records it carries.
type AgentFrames = Vec<(Vec<u8>, u64)>;

/// Load test: healthy traffic of `fleet` at `opts.rate` records/s for `opts.duration`.
///
/// Each agent's records are generated and encoded once per variant (4 healthy intervals); each
/// send re-stamps the frame with the agent's next sequence number and the current interval
/// ([`crate::agent::restamp`], byte-identical to a fresh encoding) so the measured loop costs
/// what a sender costs, not what the model costs. Over TCP every agent's connection is opened
/// (and its Hello sent) before the clock starts.
pub fn load(fleet: &Fleet, opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    let t = opts.interval_ms.max(1);
    let n_agents = opts
        .agents
        .unwrap_or(fleet.agents.len())
        .min(fleet.agents.len())
        .max(1);
    const VARIANTS: u64 = 4;
    let udp = opts.transport == Kind::Udp;
    let max = if udp {
        DEFAULT_DATAGRAM_LEN
    } else {
        TCP_FRAME_LEN
    };
    let wall = now_ms();
    let epoch = next_epoch(wall);
    let mut agents: Vec<VirtualAgent> = fleet.agents[..n_agents]
        .iter()
        .map(|&h| VirtualAgent::new(&fleet.hosts[h].name, epoch, wall))
        .collect();
    // frames[variant][agent] = that agent's frames of that variant.
    let mut engine = Engine::new(
        fleet,
        Scenario::healthy(VARIANTS * t),
        opts.seed,
        wall / t * t,
        t,
    );
    let mut frames: Vec<Vec<AgentFrames>> = Vec::new();
    let mut total = 0u64;
    for k in 0..VARIANTS {
        engine.interval(k);
        let (s, e) = engine.bounds(k);
        let mut per_agent = Vec::with_capacity(n_agents);
        for (a, agent) in agents.iter_mut().enumerate() {
            let mut scratch = agent.clone();
            let (_, fs) = scratch.batch((s, e), &engine.records[a], max)?;
            per_agent.push(
                fs.into_iter()
                    .map(|f| {
                        total += f.records;
                        (f.bytes, f.records)
                    })
                    .collect::<Vec<_>>(),
            );
        }
        frames.push(per_agent);
    }
    if total == 0 {
        anyhow::bail!("the chosen agents report no records");
    }
    let mut sender = Sender::new(opts.transport, opts.collector, n_agents, opts.udp_sockets)?;
    if opts.collectors.len() > 1 {
        let ids: Vec<u64> = agents.iter().map(|a| a.agent_id()).collect();
        sender.set_collectors(&opts.collectors, &ids)?;
    }
    // Up to 16 KiB per write (several rounds of one agent's frames per system call), within
    // 32 MiB of queued bytes over all connections.
    sender.set_coalesce((32 << 20) / n_agents);
    let mut buf = Vec::with_capacity(2048);
    let mut hello_interval = vec![u64::MAX; n_agents];
    if !udp {
        // Open every connection before the clock starts.
        for (a, agent) in agents.iter_mut().enumerate() {
            buf.clear();
            let seq = agent.hello(t as u32, &mut buf);
            sender.send(a, agent.epoch(), seq, 0, &buf, true);
            hello_interval[a] = 0;
        }
        if !sender.finish(Instant::now() + Duration::from_secs(60), false) {
            log::warn!("not every connection was open after 60 s; starting anyway");
        }
    }
    let began = Instant::now();
    let cpu_began = cpu_seconds();
    let mut offered = 0u64;
    let mut round = 0u64;
    'outer: loop {
        let variant = &mut frames[(round % VARIANTS) as usize];
        for a in 0..n_agents {
            let elapsed = began.elapsed();
            if elapsed >= opts.duration || opts.stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            if opts.rate > 0.0 {
                let due = Duration::from_secs_f64(offered as f64 / opts.rate);
                if due > elapsed {
                    sleep_until(began + due.min(opts.duration), &opts.stop, &mut sender);
                }
            }
            if variant[a].is_empty() {
                continue;
            }
            let now = now_ms();
            let iv = now / t * t;
            let agent = &mut agents[a];
            if udp && hello_interval[a] != iv {
                buf.clear();
                let seq = agent.hello(t as u32, &mut buf);
                sender.send(a, agent.epoch(), seq, 0, &buf, true);
                hello_interval[a] = iv;
            }
            for (f, n) in variant[a].iter_mut() {
                let h = agent.seq.peek();
                if !crate::agent::restamp(f, &h, (iv, iv + t)) {
                    anyhow::bail!("cannot re-stamp a frame (interval {iv})");
                }
                agent.header();
                agent.frames_built += 1;
                agent.records_built += *n;
                sender.send(a, agent.epoch(), h.seq, *n, f, false);
                offered += *n;
            }
        }
        round += 1;
    }
    let elapsed = began.elapsed().as_secs_f64().max(1e-9);
    // Achieved = what left the generator during the timed phase, not what the final flush adds.
    let sent_in_time = sender.stats().records_sent;
    let cpu_s = (cpu_seconds() - cpu_began).max(1e-9);
    goodbye(
        &mut sender,
        &mut agents,
        &vec![true; n_agents],
        "nfm-sim run finished",
        &mut buf,
    );
    sender.finish(Instant::now() + opts.ack_wait, true);
    let s = sender.stats();
    Ok(LoadReport {
        transport: if udp { "udp".into() } else { "tcp".into() },
        agents: n_agents as u64,
        target_rate: opts.rate,
        duration_s: elapsed,
        offered_records: offered,
        offered_rate: offered as f64 / elapsed,
        sent_records: s.records_sent,
        achieved_rate: sent_in_time as f64 / elapsed,
        cpu_s,
        records_per_cpu_s: offered as f64 / cpu_s,
        send_errors: s.send_errors,
        records_lost: s.records_lost,
        unacked_frames: s.frames_unacked,
        acked_records: s.records_acked,
        frames: s.frames_sent,
        bytes: s.bytes_sent,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_epochs_never_repeat_within_a_second() {
        let a = next_epoch(1_800_000_000_000);
        let b = next_epoch(1_800_000_000_500);
        let c = next_epoch(1_700_000_000_000);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
