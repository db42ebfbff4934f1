//! The TCP model produces believable numbers, and faults reach exactly the flows they should.

use nfm_collector::model::{Category, ComponentId};
use nfm_sim::fleet::{Fleet, FlowSpec, Remote};
use nfm_sim::model::{simulate, Conditions};
use nfm_sim::scenario::Scenario;
use nfm_sim::sim::Engine;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use std::collections::HashSet;
use std::net::IpAddr;

fn small() -> Fleet {
    Fleet::load(concat!(env!("CARGO_MANIFEST_DIR"), "/fleets/small.toml"), 1).expect("small fleet")
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(format!(
        "{}/scenarios/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("scenario")
}

fn mean_rtt(r: &nfm_wire::FlowRecord) -> Option<f64> {
    (r.rtt.count > 0).then(|| r.rtt.sum_us as f64 / r.rtt.count as f64)
}

#[test]
fn test_rtt_ranges_by_path_class() {
    let fleet = small();
    let mut engine = Engine::new(
        &fleet,
        Scenario::healthy(3_600_000),
        7,
        1_700_000_000_000,
        60_000,
    );
    engine.interval(0);
    let mut seen = HashSet::new();
    for (a, recs) in engine.records.iter().enumerate() {
        let host = &fleet.hosts[fleet.agents[a]];
        for r in recs.iter().filter(|r| r.role == nfm_wire::Role::Client) {
            assert_eq!(r.local, host.ip);
            let cat = fleet.topology.classify(r.local, r.remote);
            let Some(rtt) = mean_rtt(r) else { continue };
            let (lo, hi) = match cat {
                Category::IntraAz => (80.0, 650.0),
                Category::InterAz => (850.0, 2_500.0),
                Category::InterVpc => (100.0, 3_000.0),
                Category::InterRegion => (17_000.0, 100_000.0),
                Category::Service => (400.0, 100_000.0),
                Category::Unclassified => (0.0, f64::MAX),
            };
            assert!(
                rtt >= lo && rtt <= hi,
                "{cat:?} flow {} → {}: mean RTT {rtt} µs outside {lo}..{hi}",
                r.local,
                r.remote
            );
            assert!(
                r.rtt.min_us as f64 <= rtt && rtt <= r.rtt.max_us as f64,
                "min ≤ mean ≤ max"
            );
            seen.insert(cat);
        }
    }
    for c in [
        Category::IntraAz,
        Category::InterAz,
        Category::InterVpc,
        Category::InterRegion,
        Category::Service,
    ] {
        assert!(seen.contains(&c), "the small fleet has {c:?} flows");
    }
}

fn bulk_spec() -> FlowSpec {
    FlowSpec {
        client: 0,
        server: Remote::Host(1),
        port: 443,
        category: Category::InterAz,
        comps: Vec::new(),
        base_rtt_us: 1_500.0,
        baseline_loss: 0.0,
        bytes_per_s: 2_000_000.0,
        response: 1.0,
        connections_per_s: 1.0,
        long_lived: 4,
    }
}

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 10));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 10));

#[test]
fn test_retransmissions_follow_composed_loss() {
    let spec = bulk_spec();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut c = Conditions {
        loss: 0.02,
        ..Conditions::default()
    };
    c.compose(&Conditions {
        loss: 0.03,
        ..Conditions::default()
    });
    let want = 1.0 - 0.98 * 0.97;
    assert!(
        (c.loss - want).abs() < 1e-12,
        "losses compose as 1 − Π(1 − p)"
    );
    let (mut segs, mut rtx, mut rto) = (0u64, 0u64, 0u64);
    for _ in 0..50 {
        let (cl, _) = simulate(&spec, A, B, &c, 60.0, 1.0, 1448, &mut rng);
        segs += cl.bytes_sent.div_ceil(1448);
        rtx += cl.retrans.established;
        rto += cl.rto.established;
    }
    let rate = rtx as f64 / segs as f64;
    assert!(
        (rate - want).abs() < want * 0.1,
        "retransmission rate {rate} vs composed loss {want}"
    );
    assert!(
        rto > 0 && rto < rtx,
        "some losses end in timeouts, most are fast retransmits: {rto} of {rtx}"
    );
    // Healthy: no loss, no retransmissions.
    let (cl, sv) = simulate(
        &spec,
        A,
        B,
        &Conditions::default(),
        60.0,
        1.0,
        1448,
        &mut rng,
    );
    assert_eq!(cl.retrans.established + sv.retrans.established, 0);
    assert_eq!(cl.conn_failed, 0);
    // Both ends agree on what crossed.
    assert_eq!(cl.bytes_sent, sv.bytes_received);
    assert_eq!(cl.bytes_received, sv.bytes_sent);
    assert_eq!(
        (cl.local_port, cl.remote_port, cl.role),
        (0, 443, nfm_wire::Role::Client)
    );
    assert_eq!(
        (sv.local_port, sv.remote_port, sv.role),
        (443, 0, nfm_wire::Role::Server)
    );
}

#[test]
fn test_blackhole_fails_connects_and_times_out() {
    let spec = bulk_spec();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    let (cl, sv) = simulate(
        &spec,
        A,
        B,
        &Conditions {
            down: 1.0,
            ..Conditions::default()
        },
        60.0,
        1.0,
        1448,
        &mut rng,
    );
    assert_eq!(cl.bytes_sent, 0, "nothing gets through");
    assert_eq!(cl.rtt.count, 0, "no RTT samples without ACKs");
    assert!(
        cl.conn_attempts > 0 && cl.conn_failed == cl.conn_attempts,
        "every connect fails: {cl:?}"
    );
    assert!(
        cl.rto.established > 0 && cl.retrans.established >= cl.rto.established,
        "established sockets time out"
    );
    assert!(
        cl.retrans.handshake > 0 && cl.rto.handshake > 0,
        "SYNs are retransmitted"
    );
    assert_eq!(sv.conn_attempts, 0, "the server never sees the SYNs");
    // Half an interval down: some get through, some fail.
    let (half, _) = simulate(
        &spec,
        A,
        B,
        &Conditions {
            down: 0.5,
            ..Conditions::default()
        },
        60.0,
        1.0,
        1448,
        &mut rng,
    );
    assert!(half.bytes_sent > 0 && half.conn_failed > 0);
}

#[test]
fn test_slow_host_is_not_network_loss() {
    let spec = bulk_spec();
    let slow = Conditions {
        slow_rtt_us: 30_000.0,
        slow_handshake_us: 300_000.0,
        ..Conditions::default()
    };
    let mut r1 = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut r2 = Xoshiro256PlusPlus::seed_from_u64(5);
    let (h, _) = simulate(
        &spec,
        A,
        B,
        &Conditions::default(),
        60.0,
        1.0,
        1448,
        &mut r1,
    );
    let (s, _) = simulate(&spec, A, B, &slow, 60.0, 1.0, 1448, &mut r2);
    assert!(mean_rtt(&s).unwrap() > mean_rtt(&h).unwrap() + 25_000.0);
    assert!(s.handshake.sum_us / s.handshake.count.max(1) > 300_000);
    assert_eq!(
        (s.retrans, s.rto, s.conn_failed),
        (h.retrans, h.rto, h.conn_failed),
        "no loss at all"
    );
    assert_eq!(s.bytes_sent, h.bytes_sent);
}

#[test]
fn test_slow_host_touches_only_its_flows() {
    let fleet = small();
    let healthy = Scenario {
        faults: Vec::new(),
        ..scenario("slow-local-host")
    };
    let slow = scenario("slow-local-host");
    let at = slow.faults[0].at_ms / 60_000 + 1;
    let web3 = fleet.hosts.iter().find(|h| h.name == "web-3").unwrap().ip;
    let mut e1 = Engine::new(&fleet, healthy, 9, 1_700_000_000_000, 60_000);
    let mut e2 = Engine::new(&fleet, slow, 9, 1_700_000_000_000, 60_000);
    e1.interval(at);
    e2.interval(at);
    let (mut touched, mut untouched) = (0, 0);
    for (a, b) in e1.records.iter().flatten().zip(e2.records.iter().flatten()) {
        if a.local == web3 || a.remote == web3 {
            touched += 1;
            assert!(
                mean_rtt(b).unwrap() > mean_rtt(a).unwrap() + 20_000.0,
                "web-3's flows are slower"
            );
            assert_eq!(a.retrans, b.retrans);
        } else {
            untouched += 1;
            assert_eq!(a, b, "flows not touching web-3 are unchanged");
        }
    }
    assert!(touched >= 4 && untouched > 100, "{touched} / {untouched}");
}

#[test]
fn test_fault_reaches_exactly_the_flows_whose_path_holds_it() {
    let fleet = small();
    for (name, comp) in [
        ("az-pair-loss", "az-pair:use1-az1|use1-az2"),
        ("gateway-latency", "gateway:tgw-main"),
        ("subnet-blackhole", "subnet:subnet-db-b"),
        ("service-degradation", "service:kv-store"),
        ("inter-region-loss", "region-pair:us-east-1|us-west-2"),
    ] {
        let s = scenario(name);
        let at = s.faults[0].at_ms / 60_000 + 1;
        let mut e = Engine::new(&fleet, s, 1, 1_700_000_000_000, 60_000);
        let touched: HashSet<u32> = e.apply_faults(at).iter().copied().collect();
        let c: ComponentId = comp.parse().unwrap();
        // Independently: every flow whose path (either direction, the topology's own function)
        // holds the component.
        let mut want = HashSet::new();
        for (i, f) in fleet.flows.iter().enumerate() {
            let (cip, sip) = (fleet.hosts[f.client].ip, fleet.server_ip(f));
            let mut p = fleet.topology.path(cip, sip);
            if matches!(f.server, Remote::Host(_)) {
                p.extend(fleet.topology.path(sip, cip));
            }
            if p.contains(&c) {
                want.insert(i as u32);
            }
        }
        assert!(!want.is_empty(), "{name}: the component is on some path");
        assert_eq!(
            touched, want,
            "{name}: fault reaches exactly the flows through {comp}"
        );
        assert!(touched
            .iter()
            .all(|&i| !e.conditions(i as usize).is_healthy()));
        // Before the fault nothing is touched.
        assert!(
            e.apply_faults(0).is_empty(),
            "{name}: healthy before the fault"
        );
    }
}

#[test]
fn test_same_seed_same_records() {
    let fleet = small();
    let mut a = Engine::new(
        &fleet,
        scenario("az-pair-loss"),
        11,
        1_700_000_000_000,
        60_000,
    );
    let mut b = Engine::new(
        &fleet,
        scenario("az-pair-loss"),
        11,
        1_700_000_000_000,
        60_000,
    );
    let mut c = Engine::new(
        &fleet,
        scenario("az-pair-loss"),
        12,
        1_700_000_000_000,
        60_000,
    );
    for k in [0, 45] {
        a.interval(k);
        b.interval(k);
        c.interval(k);
        assert_eq!(a.records, b.records, "reproducible");
        assert_ne!(a.records, c.records, "another seed, other numbers");
    }
}
