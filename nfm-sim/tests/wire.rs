//! Virtual agents on the wire: frames decode with nfm-wire, ground truth is written, and runs
//! and load tests over real loopback UDP and TCP deliver every record to a receiver.

use nfm_sim::agent::VirtualAgent;
use nfm_sim::clock::ClockModel;
use nfm_sim::fleet::Fleet;
use nfm_sim::run::{self, LoadOptions, Mode, RunOptions};
use nfm_sim::scenario::Scenario;
use nfm_sim::sim::Engine;
use nfm_sim::sink::{Sink, SinkOptions, SinkStats};
use nfm_sim::transport::Kind;
use nfm_sim::truth::{self, TruthLine};
use nfm_wire::{cap, decode, DecodeOptions, Message, Packet, DEFAULT_DATAGRAM_LEN};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn small() -> Fleet {
    Fleet::load(format!("{DIR}/fleets/small.toml"), 1).unwrap()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nfm-sim-test-{}-{name}", std::process::id()))
}

struct TestSink {
    udp: std::net::SocketAddr,
    tcp: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(SinkStats, Vec<Packet>)>,
}

fn sink(idle: Duration) -> TestSink {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Sink::bind(SinkOptions {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        keep: true,
        quick: false,
        idle_exit: Some(idle),
        stop: stop.clone(),
    })
    .unwrap();
    let (udp, tcp) = (s.udp_addr().unwrap(), s.tcp_addr().unwrap());
    TestSink {
        udp,
        tcp,
        stop,
        handle: std::thread::spawn(move || s.run()),
    }
}

impl TestSink {
    fn finish(self) -> (SinkStats, Vec<Packet>) {
        self.handle.join().unwrap()
    }
    fn stop(self) -> (SinkStats, Vec<Packet>) {
        self.stop.store(true, Ordering::SeqCst);
        self.finish()
    }
}

#[test]
fn test_frames_decode_with_nfm_wire() {
    let fleet = small();
    let mut e = Engine::new(
        &fleet,
        Scenario::healthy(60_000),
        1,
        1_700_000_000_000,
        60_000,
    );
    e.interval(0);
    let (a, recs) = e
        .records
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| r.len())
        .unwrap();
    let mut agent = VirtualAgent::new(&fleet.hosts[fleet.agents[a]].name, 42, 1_700_000_000_000);
    let mut hello = Vec::new();
    agent.hello(60_000, &mut hello);
    let p = decode(&hello, &DecodeOptions::default()).unwrap();
    let Message::Hello(h) = p.message else {
        panic!("not a hello")
    };
    assert!(
        h.capabilities & cap::SIMULATED != 0,
        "simulated flows say so"
    );
    assert_eq!(
        (p.header.agent_id, p.header.epoch, p.header.seq),
        (agent.agent_id(), 42, 0)
    );
    // Many records, small datagrams: several frames, each decodable alone.
    let many: Vec<_> = recs.iter().cycle().take(200).copied().collect();
    let (first, frames) = agent
        .batch(
            (1_700_000_000_000, 1_700_000_060_000),
            &many,
            DEFAULT_DATAGRAM_LEN,
        )
        .unwrap();
    assert_eq!(first, 1);
    assert!(frames.len() > 2);
    let mut back = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        assert!(
            f.bytes.len() <= DEFAULT_DATAGRAM_LEN,
            "frame {i} is {} bytes",
            f.bytes.len()
        );
        let p = decode(&f.bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(
            p.header.seq,
            first + i as u64,
            "consecutive sequence numbers"
        );
        let Message::FlowBatch(b) = p.message else {
            panic!("not a batch")
        };
        assert_eq!(
            (b.interval_start_ms, b.interval_end_ms),
            (1_700_000_000_000, 1_700_000_060_000)
        );
        assert_eq!(f.records, b.records.len() as u64, "the encoder's count");
        assert_eq!(
            run::count_records(&f.bytes),
            b.records.len() as u64,
            "record count read from the body"
        );
        back.extend(b.records);
    }
    assert_eq!(back, many, "every record survives the trip");
    let mut st = Vec::new();
    let seq = agent.stats(1_700_000_060_000, 0, 5, &mut st);
    let p = decode(&st, &DecodeOptions::default()).unwrap();
    assert_eq!(p.header.seq, seq);
    assert!(matches!(p.message, Message::AgentStats(s) if s.records_sent == 200));
}

fn opts(
    kind: Kind,
    addr: std::net::SocketAddr,
    mode: Mode,
    interval_ms: u64,
    truth: Option<PathBuf>,
) -> RunOptions {
    RunOptions {
        transport: kind,
        collector: addr,
        udp_sockets: 2,
        interval_ms,
        seed: 3,
        mode,
        truth,
        fleet_name: "small".into(),
        ack_wait: Duration::from_secs(10),
        stop: Arc::new(AtomicBool::new(false)),
        clocks: ClockModel::default(),
    }
}

#[test]
fn test_virtual_run_writes_truth_and_delivers_every_record_udp() {
    let fleet = small();
    let s = sink(Duration::from_millis(500));
    let path = temp("truth.jsonl");
    let mut sc = Scenario::load(format!("{DIR}/scenarios/overlapping-faults.toml")).unwrap();
    sc.duration_ms = 80 * 60_000; // shorter run, both faults inside
    let start = 1_700_000_040_000;
    let rep = run::run(
        &fleet,
        sc,
        &opts(
            Kind::Udp,
            s.udp,
            Mode::Virtual {
                start_ms: start,
                speed: 0.0,
            },
            60_000,
            Some(path.clone()),
        ),
    )
    .unwrap();
    let (st, packets) = s.finish();
    assert_eq!(rep.intervals, 80);
    assert_eq!(rep.send.send_errors, 0);
    assert_eq!(st.records, rep.records, "every record arrived: {st:?}");
    assert_eq!(st.agents, fleet.agents.len() as u64);
    // Agents join late and some restart (the default clocks): a Hello opens every interval
    // each agent reports.
    let up = ClockModel::default().agents(fleet.agents.len(), 3, Some(80));
    let reported: u64 = up
        .iter()
        .map(|c| (0..80).filter(|&k| c.up(k)).count() as u64)
        .sum();
    assert!(reported < 80 * fleet.agents.len() as u64);
    assert_eq!(st.hellos, reported, "UDP: a Hello opens every interval");
    assert_eq!(st.simulated_hellos, st.hellos);
    assert_eq!(st.bad_frames, 0);
    // Frames carry simulated interval timestamps.
    let starts: std::collections::BTreeSet<u64> = packets
        .iter()
        .filter_map(|p| {
            if let Message::FlowBatch(b) = &p.message {
                Some(b.interval_start_ms)
            } else {
                None
            }
        })
        .collect();
    // Each agent's clock is off by up to 600 ms (and jitters): every stamp lies within 1 s of
    // one of the 80 true interval starts, and every interval is reported.
    let mut covered = std::collections::BTreeSet::new();
    for &s0 in &starts {
        let k = (s0 + 30_000 - start) / 60_000;
        assert!(s0.abs_diff(start + k * 60_000) < 1_000, "{s0}");
        covered.insert(k);
    }
    assert_eq!(covered.len(), 80);
    assert!(starts.len() > 80, "clocks disagree");
    // Ground truth: run, two faults, end.
    let lines = truth::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&lines[0], TruthLine::Run(r) if r.start_ms == start && r.interval_ms == 60_000 && r.scenario == "overlapping-faults")
    );
    let faults: Vec<_> = lines
        .iter()
        .filter_map(|l| {
            if let TruthLine::Fault(f) = l {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0].component.to_string(), "az-pair:use1-az1|use1-az2");
    assert_eq!(
        (faults[0].start_ms, faults[0].end_ms),
        (start + 40 * 60_000, start + 70 * 60_000)
    );
    assert_eq!(faults[1].kind, nfm_sim::scenario::FaultKind::Blackhole);
    assert!(faults.iter().all(|f| f.affected_flows > 0));
    assert!(
        matches!(lines.last(), Some(TruthLine::End(e)) if e.end_ms == start + 80 * 60_000 && e.records == rep.records)
    );
}

#[test]
fn test_real_time_run_over_tcp_is_acked() {
    let fleet = small();
    let s = sink(Duration::from_secs(5));
    let rep = run::run(
        &fleet,
        Scenario::healthy(3_600_000),
        &opts(
            Kind::Tcp,
            s.tcp,
            Mode::RealTime {
                duration_ms: Some(300),
            },
            100,
            None,
        ),
    )
    .unwrap();
    assert_eq!(rep.intervals, 3);
    assert_eq!(rep.send.frames_unacked, 0, "the receiver acked everything");
    assert_eq!(rep.send.send_errors, 0);
    // Aligned to the wall clock.
    assert_eq!(rep.start_ms % 100, 0);
    let (st, packets) = s.stop();
    assert_eq!(st.records, rep.records, "{st:?}");
    assert_eq!(
        st.tcp_connections,
        fleet.agents.len() as u64,
        "one connection per agent"
    );
    assert_eq!(
        st.hellos,
        fleet.agents.len() as u64,
        "TCP: one Hello per session"
    );
    assert_eq!(st.goodbyes, fleet.agents.len() as u64);
    // Per agent, sequence numbers are consecutive from 0.
    let mut by_agent: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    for p in &packets {
        by_agent
            .entry(p.header.agent_id)
            .or_default()
            .push(p.header.seq);
    }
    for seqs in by_agent.values() {
        assert_eq!(*seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn test_real_time_run_over_udp_delivers_every_record() {
    let fleet = small();
    let s = sink(Duration::from_millis(500));
    let path = temp("rt-truth.jsonl");
    let rep = run::run(
        &fleet,
        Scenario::load(format!("{DIR}/scenarios/rolling.toml")).unwrap(),
        &opts(
            Kind::Udp,
            s.udp,
            Mode::RealTime {
                duration_ms: Some(300),
            },
            100,
            Some(path.clone()),
        ),
    )
    .unwrap();
    let (st, _) = s.finish();
    assert_eq!(rep.intervals, 3);
    assert_eq!(rep.send.send_errors, 0);
    assert_eq!(st.records, rep.records, "every record arrived: {st:?}");
    let up = ClockModel::default().agents(fleet.agents.len(), 3, Some(3));
    let reported: u64 = up
        .iter()
        .map(|c| (0..3).filter(|&k| c.up(k)).count() as u64)
        .sum();
    assert_eq!(st.hellos, reported);
    // A repeating scenario writes its first cycle's faults, then the end line.
    let lines = truth::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&lines[0], TruthLine::Run(r) if r.mode == "real-time" && r.interval_ms == 100)
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| matches!(l, TruthLine::Fault(f) if f.cycle == 0))
            .count(),
        3
    );
    assert!(matches!(lines.last(), Some(TruthLine::End(e)) if e.intervals == 3));
}

fn load_opts(kind: Kind, addr: std::net::SocketAddr, rate: f64) -> LoadOptions {
    LoadOptions {
        transport: kind,
        collector: addr,
        collectors: Vec::new(),
        udp_sockets: 2,
        rate,
        duration: Duration::from_millis(300),
        interval_ms: 5_000,
        agents: None,
        seed: 1,
        ack_wait: Duration::from_secs(10),
        stop: Arc::new(AtomicBool::new(false)),
    }
}

#[test]
fn test_load_counts_every_record_tcp_and_udp() {
    let fleet = small();
    let s = sink(Duration::from_secs(5));
    let rep = run::load(&fleet, &load_opts(Kind::Tcp, s.tcp, 100_000.0)).unwrap();
    assert_eq!(rep.unacked_frames, 0);
    assert_eq!(rep.send_errors, 0);
    assert!(
        rep.offered_records > 10_000 && rep.offered_records < 60_000,
        "paced near 100k/s for 0.3 s: {}",
        rep.offered_records
    );
    assert_eq!(rep.acked_records, rep.sent_records);
    let (st, _) = s.stop();
    assert_eq!(st.records, rep.offered_records, "TCP loses nothing");

    let s = sink(Duration::from_millis(500));
    let rep = run::load(&fleet, &load_opts(Kind::Udp, s.udp, 50_000.0)).unwrap();
    let (st, _) = s.finish();
    assert_eq!(rep.send_errors, 0);
    assert_eq!(
        st.records, rep.sent_records,
        "a gentle UDP load arrives whole on loopback"
    );
    assert_eq!(rep.sent_records, rep.offered_records);
}

#[test]
fn test_dead_collector_is_counted_not_fatal() {
    let fleet = small();
    // Nothing listens here: TCP connects fail and are counted.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let mut o = load_opts(Kind::Tcp, addr, 10_000.0);
    o.duration = Duration::from_millis(100);
    o.ack_wait = Duration::from_millis(200);
    let rep = run::load(&fleet, &o).unwrap();
    assert!(rep.send_errors > 0);
    assert!(rep.records_lost > 0);
    assert_eq!(rep.acked_records, 0);
}
