//! Issue 14's simulator additions: one-direction loss, RTT drift, SYN drops, slow handshakes,
//! an elephant flow's retransmissions, the wide fleet, and the scorer's per-fault measures.

use nfm_collector::model::{Blame, Category, ComponentId, ComponentKind};
use nfm_collector::topology::Topology;
use nfm_sim::fleet::{Fleet, FlowSpec, Remote};
use nfm_sim::model::{simulate, Conditions};
use nfm_sim::scenario::{Direction, FaultKind, Scenario};
use nfm_sim::score::{score_run, Thresholds, VerdictLite};
use nfm_sim::sim::Engine;
use nfm_sim::truth::{EndInfo, FaultTruth, RunInfo, TruthLine, EXPECT_NO_NETWORK_VERDICT};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use std::collections::HashSet;
use std::net::IpAddr;

const DIR: &str = env!("CARGO_MANIFEST_DIR");
const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 10));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 10));

fn fleet(name: &str, seed: u64) -> Fleet {
    Fleet::load(format!("{DIR}/fleets/{name}.toml"), seed).expect("fleet")
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(format!("{DIR}/scenarios/{name}.toml")).expect("scenario")
}

fn spec() -> FlowSpec {
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
        connections_per_s: 2.0,
        long_lived: 4,
    }
}

#[test]
fn test_one_direction_loss_shows_only_at_its_sender() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let up = Conditions {
        loss_up: 0.03,
        ..Conditions::default()
    };
    let (c, s) = simulate(&spec(), A, B, &up, 60.0, 1.0, 1448, &mut rng);
    let rate = c.retrans.established as f64 / c.bytes_sent.div_ceil(1448) as f64;
    assert!(
        (0.02..0.04).contains(&rate),
        "client→server loss 3 %: {rate}"
    );
    assert_eq!(
        s.retrans.established, 0,
        "the server's segments are not lost"
    );
    let down = Conditions {
        loss_down: 0.03,
        ..Conditions::default()
    };
    let (c, s) = simulate(&spec(), A, B, &down, 60.0, 1.0, 1448, &mut rng);
    assert_eq!(
        c.retrans.established, 0,
        "the client's segments are not lost"
    );
    let rate = s.retrans.established as f64 / s.bytes_sent.div_ceil(1448) as f64;
    assert!(
        (0.02..0.04).contains(&rate),
        "server→client loss 3 %: {rate}"
    );
}

#[test]
fn test_syn_drop_fails_new_connections_only() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let c = Conditions {
        syn_drop: 1.0,
        ..Conditions::default()
    };
    let (cl, sv) = simulate(&spec(), A, B, &c, 60.0, 1.0, 1448, &mut rng);
    assert!(
        cl.conn_attempts > 50 && cl.conn_failed == cl.conn_attempts,
        "{cl:?}"
    );
    assert!(cl.retrans.handshake >= 3 * cl.conn_failed, "SYNs resent");
    assert_eq!(
        cl.retrans.established, 0,
        "established sockets are untouched"
    );
    assert_eq!(cl.sockets_open, 4);
    assert!(cl.bytes_sent > 0 && sv.retrans.established == 0);
    assert_eq!(sv.conn_attempts, 0, "the server never sees the SYNs");
}

#[test]
fn test_rtt_factor_scales_rtt_and_handshakes() {
    let base = Conditions::default();
    let drift = Conditions {
        rtt_factor: 0.3,
        ..Conditions::default()
    };
    let (mut r1, mut r2) = (
        Xoshiro256PlusPlus::seed_from_u64(3),
        Xoshiro256PlusPlus::seed_from_u64(3),
    );
    let (h, _) = simulate(&spec(), A, B, &base, 60.0, 1.0, 1448, &mut r1);
    let (d, _) = simulate(&spec(), A, B, &drift, 60.0, 1.0, 1448, &mut r2);
    let m = |r: &nfm_wire::FlowRecord| r.rtt.sum_us as f64 / r.rtt.count as f64;
    let ratio = m(&d) / m(&h);
    assert!((1.29..1.31).contains(&ratio), "+30 %: {ratio}");
    assert!(d.handshake.sum_us > h.handshake.sum_us);
    assert_eq!(d.retrans.established, h.retrans.established, "no loss");
}

#[test]
fn test_ramp_rises_per_interval_and_stops_at_its_cap() {
    let s = scenario("rtt-drift");
    let f = &s.faults[0];
    assert_eq!(f.kind, FaultKind::DelayRamp);
    let t = 60_000;
    let at = f.at_ms;
    assert!(f.conditions(at - t, at).is_none(), "not before it starts");
    let c0 = f.conditions(at, at + t).unwrap();
    assert!((c0.rtt_factor - 0.03).abs() < 1e-9, "{c0:?}");
    let c9 = f.conditions(at + 9 * t, at + 10 * t).unwrap();
    assert!((c9.rtt_factor - 0.30).abs() < 1e-9, "{c9:?}");
    let late = f.conditions(at + 25 * t, at + 26 * t).unwrap();
    assert!((late.rtt_factor - 0.60).abs() < 1e-9, "capped: {late:?}");
    // At 5 s intervals the rise is per 5 s interval.
    let c = f.conditions(at + 5_000, at + 10_000).unwrap();
    assert!((c.rtt_factor - 0.06).abs() < 1e-9, "{c:?}");
}

#[test]
fn test_engine_shapes_issue14_faults_per_flow() {
    let fl = fleet("small", 1);
    // One direction: use1-az1 → use1-az2 loss lands on the client's segments exactly when
    // the client is in use1-az1.
    let s = scenario("directional-loss");
    assert_eq!(s.faults[0].direction, Direction::AToB);
    let k = s.faults[0].at_ms / 60_000 + 1;
    let mut e = Engine::new(&fl, s, 1, 1_700_000_000_000, 60_000);
    let touched: Vec<u32> = e.apply_faults(k).to_vec();
    assert!(touched.len() >= 3);
    let (mut ups, mut downs) = (0, 0);
    for &i in &touched {
        let c = e.conditions(i as usize);
        let client_az = &fl.hosts[fl.flows[i as usize].client].az;
        assert_eq!(c.loss, 0.0, "nothing symmetric");
        if client_az == "use1-az1" {
            assert!(c.loss_up > 0.0 && c.loss_down == 0.0);
            ups += 1;
        } else {
            assert!(c.loss_down > 0.0 && c.loss_up == 0.0);
            downs += 1;
        }
    }
    assert!(
        ups > 0 && downs > 0,
        "both orientations occur: {ups} {downs}"
    );

    // A slow handshake touches connections to the host only.
    let s = scenario("slow-handshake");
    let host = s.faults[0].component.name.clone();
    let k = s.faults[0].at_ms / 60_000 + 1;
    let mut e = Engine::new(&fl, s, 1, 1_700_000_000_000, 60_000);
    let touched: Vec<u32> = e.apply_faults(k).to_vec();
    assert!(!touched.is_empty());
    for &i in &touched {
        let f = &fl.flows[i as usize];
        assert!(matches!(f.server, Remote::Host(h) if *fl.hosts[h].name == *host));
        let c = e.conditions(i as usize);
        assert!(c.slow_handshake_us > 0.0 && c.slow_rtt_us == 0.0 && c.loss == 0.0);
    }
    let from_host = fl
        .flows
        .iter()
        .filter(|f| *fl.hosts[f.client].name == *host)
        .count();
    assert!(from_host > 0, "the host also opens flows, which are spared");

    // An elephant: exactly one flow, the host's largest, loss on its bulk direction.
    let s = scenario("elephant-retrans");
    let c: ComponentId = s.faults[0].component.clone();
    let k = s.faults[0].at_ms / 60_000 + 1;
    let mut e = Engine::new(&fl, s, 1, 1_700_000_000_000, 60_000);
    let touched: Vec<u32> = e.apply_faults(k).to_vec();
    assert_eq!(touched.len(), 1);
    let i = touched[0] as usize;
    let ci = fl.component_index(&c).unwrap() as usize;
    let vol = |j: usize| fl.flows[j].bytes_per_s * (1.0 + fl.flows[j].response);
    assert!(fl.flows_by_component[ci]
        .iter()
        .all(|&j| vol(j as usize) <= vol(i)));
    let cond = e.conditions(i);
    assert!(cond.loss == 0.0 && (cond.loss_up > 0.0) != (cond.loss_down > 0.0));
}

#[test]
fn test_new_fault_kinds_refuse_bad_fields() {
    let base = "name = \"t\"\nduration = \"1h\"\n[[fault]]\nat = \"0s\"\nduration = \"1m\"\n";
    for (extra, why) in [
        (
            "component = \"subnet:s\"\nkind = \"loss\"\nloss = 0.1\ndirection = \"a_to_b\"\n",
            "direction on a subnet",
        ),
        (
            "component = \"az-pair:a|b\"\nkind = \"blackhole\"\ndirection = \"a_to_b\"\n",
            "direction on a blackhole",
        ),
        (
            "component = \"az-pair:a|b\"\nkind = \"loss\"\nloss = 0.1\ndirection = \"up\"\n",
            "unknown direction",
        ),
        (
            "component = \"az:a\"\nkind = \"delay-ramp\"\n",
            "ramp without percent",
        ),
        (
            "component = \"az:a\"\nkind = \"delay\"\ndelay = \"5ms\"\npercent_per_interval = 3\n",
            "percent on a delay",
        ),
        (
            "component = \"host:h\"\nkind = \"slow-handshake\"\nextra_rtt = \"5ms\"\nextra_handshake = \"5ms\"\n",
            "slow handshake with extra RTT",
        ),
        (
            "component = \"subnet:s\"\nkind = \"elephant-retrans\"\n",
            "elephant not at a host",
        ),
        (
            "component = \"subnet:s\"\nkind = \"connect-fail\"\nloss = 0\n",
            "connect-fail dropping nothing",
        ),
    ] {
        assert!(
            Scenario::parse(&format!("{base}{extra}")).is_err(),
            "{why}"
        );
    }
    let s = Scenario::parse(&format!(
        "{base}component = \"subnet:s\"\nkind = \"connect-fail\"\n"
    ))
    .unwrap();
    assert_eq!(
        s.faults[0].loss, 1.0,
        "connect-fail drops every SYN by default"
    );
    assert_eq!(s.faults[0].blame(), Blame::Network);
    let s = Scenario::parse(&format!(
        "{base}component = \"host:h\"\nkind = \"elephant-retrans\"\n"
    ))
    .unwrap();
    assert_eq!(s.faults[0].blame(), Blame::Endpoint);
}

#[test]
fn test_wide_fleet_is_a_valid_topology_unlike_small() {
    let text = std::fs::read_to_string(format!("{DIR}/fleets/wide.toml")).unwrap();
    let topo = Topology::parse(&text).expect("the collector accepts it");
    assert_eq!(topo.regions().len(), 2);
    assert!(topo.azs().len() >= 6);
    assert!(topo.vpcs().len() >= 5);
    assert!(topo
        .gateways()
        .iter()
        .any(|g| g.kind == "transit-gateway" && g.vpcs.len() >= 4));
    let fl = fleet("wide", 1);
    // The transit gateway is crossed between at least four VPCs' worth of flows.
    let tgw: ComponentId = "gateway:tgw-core".parse().unwrap();
    let ci = fl.component_index(&tgw).unwrap() as usize;
    let vpcs: HashSet<&str> = fl.flows_by_component[ci]
        .iter()
        .flat_map(|&i| {
            fl.flows[i as usize].comps.iter().filter_map(|&c| {
                let c = &fl.components[c as usize];
                (c.kind == ComponentKind::Vpc).then_some(&*c.name)
            })
        })
        .collect();
    assert!(vpcs.len() >= 4, "{vpcs:?}");
    // Agent-less clients: flows whose client has no agent but whose server does.
    assert!(fl.flows.iter().any(|f| fl.hosts[f.client].agent.is_none()
        && matches!(f.server, Remote::Host(h) if fl.hosts[h].agent.is_some())));
    // A tier reached only by short connections.
    let auth = fl.tier("auth").unwrap();
    let to_auth: Vec<&FlowSpec> = fl
        .flows
        .iter()
        .filter(|f| matches!(f.server, Remote::Host(h) if fl.hosts[h].tier == auth))
        .collect();
    assert!(!to_auth.is_empty());
    assert!(to_auth
        .iter()
        .all(|f| f.long_lived == 0 && f.connections_per_s > 0.0));
    // Every wide scenario names components of this fleet.
    for e in std::fs::read_dir(format!("{DIR}/scenarios")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("wide-")
        {
            let s = Scenario::load(&p).unwrap();
            s.check(&fl)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}

const T: u64 = 60_000;
const S: u64 = 1_000_000_000;

fn truth(n: u64, faults: Vec<FaultTruth>) -> Vec<TruthLine> {
    let mut v = vec![TruthLine::Run(RunInfo {
        version: 1,
        scenario: "t".into(),
        fleet: "f".into(),
        seed: 1,
        mode: "offline".into(),
        start_ms: S,
        end_ms: S + n * T,
        interval_ms: T,
        agents: 1,
        flows: 1,
    })];
    v.extend(faults.into_iter().map(TruthLine::Fault));
    v.push(TruthLine::End(EndInfo {
        end_ms: S + n * T,
        intervals: n,
        records: 0,
    }));
    v
}

fn fault(c: &str, kind: FaultKind, from: u64, to: u64) -> FaultTruth {
    let component: ComponentId = c.parse().unwrap();
    FaultTruth {
        scenario: "t".into(),
        fault: 0,
        cycle: 0,
        blame: if kind.host_only() || !component.kind.is_network() {
            Blame::Endpoint
        } else {
            Blame::Network
        },
        component,
        kind,
        start_ms: S + from * T,
        end_ms: S + to * T,
        loss: 0.0,
        delay_ms: 0.0,
        period_ms: 0,
        down_ms: 0,
        extra_rtt_ms: 0.0,
        extra_handshake_ms: 0.0,
        affected_flows: 3,
        equivalent: Vec::new(),
        direction: Direction::Both,
        percent_per_interval: 0.0,
        max_percent: 0.0,
        expect: String::new(),
    }
}

fn v(i: u64, c: &str, blame: Blame) -> VerdictLite {
    VerdictLite {
        interval_start_ms: S + i * T,
        component: c.parse().unwrap(),
        blame,
        confidence: 1.0,
        first_seen_ms: 0,
    }
}

fn none(_: &FaultTruth) -> HashSet<ComponentId> {
    HashSet::new()
}

#[test]
fn test_flap_incidents_count_runs_beyond_the_hold_down() {
    let t = truth(40, vec![fault("az:a", FaultKind::Flap, 5, 30)]);
    // Named every 3rd interval: gaps of 2 ≤ hold-down 3 → one incident.
    let bridged: Vec<_> = (5..30)
        .step_by(3)
        .map(|i| v(i, "az:a", Blame::Network))
        .collect();
    let s = score_run(&t, &bridged, &none, 1).unwrap();
    assert_eq!(s.overall.flap_incidents_max, 1);
    assert!(s.overall.failures(&Thresholds::default()).is_empty());
    // Named every 6th interval: gaps of 5 → a new incident each time.
    let thrash: Vec<_> = (5..30)
        .step_by(6)
        .map(|i| v(i, "az:a", Blame::Network))
        .collect();
    let s = score_run(&t, &thrash, &none, 1).unwrap();
    assert_eq!(s.overall.flap_incidents_max, 5);
    let f = s.overall.failures(&Thresholds::default());
    assert!(f.iter().any(|x| x.contains("incidents")), "{f:?}");
}

#[test]
fn test_ramp_rise_at_first_naming_and_held() {
    let mut r = fault("gateway:g", FaultKind::DelayRamp, 10, 30);
    r.percent_per_interval = 3.0;
    r.max_percent = 60.0;
    let t = truth(40, vec![r]);
    // First named in the 8th interval of the ramp (k = 7): +24 %, then every interval.
    let vs: Vec<_> = (17..30)
        .map(|i| v(i, "gateway:g", Blame::Network))
        .collect();
    let s = score_run(&t, &vs, &none, 1).unwrap();
    assert_eq!(s.overall.ramp_rise_max, Some(24.0));
    assert_eq!((s.overall.ramp_unnamed, s.overall.ramp_not_held), (0, 0));
    assert!(s.overall.failures(&Thresholds::default()).is_empty());
    // Named late (+36 %) and dropped 5 intervals before the end: two failures.
    let vs: Vec<_> = (21..25)
        .map(|i| v(i, "gateway:g", Blame::Network))
        .collect();
    let s = score_run(&t, &vs, &none, 1).unwrap();
    assert_eq!(s.overall.ramp_rise_max, Some(36.0));
    assert_eq!(s.overall.ramp_not_held, 1);
    let f = s.overall.failures(&Thresholds::default());
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(
        s.overall.prompt_time_to_detect_max, None,
        "a ramp is not held to the 2-interval bar"
    );
}

#[test]
fn test_low_grade_loss_deadline_depends_on_the_interval() {
    let mut f = fault("gateway:g", FaultKind::Loss, 10, 30);
    f.loss = 0.005;
    let t = truth(40, vec![f]);
    // Named from the 3rd interval (k = 2): within 2 intervals at 60 s.
    let vs: Vec<_> = (12..30)
        .map(|i| v(i, "gateway:g", Blame::Network))
        .collect();
    let s = score_run(&t, &vs, &none, 1).unwrap();
    assert_eq!(
        (s.overall.low_grade_faults, s.overall.low_grade_late),
        (1, 0)
    );
    assert_eq!(s.overall.held, 1);
    // k = 3: late.
    let vs: Vec<_> = (13..30)
        .map(|i| v(i, "gateway:g", Blame::Network))
        .collect();
    let s = score_run(&t, &vs, &none, 1).unwrap();
    assert_eq!(s.overall.low_grade_late, 1);
    assert_eq!(
        s.overall.prompt_time_to_detect_max, None,
        "held to its own bar, not the 2-interval one"
    );
}

#[test]
fn test_no_verdict_fault_scores_only_network_blame() {
    let mut e = fault("host:h", FaultKind::ElephantRetrans, 10, 20);
    e.expect = EXPECT_NO_NETWORK_VERDICT.into();
    let t = truth(30, vec![e]);
    let s = score_run(&t, &[], &none, 1).unwrap();
    assert_eq!(s.overall.faults, 0, "not in detection or attribution");
    assert_eq!(s.overall.no_verdict_faults, 1);
    assert!(s.overall.failures(&Thresholds::default()).is_empty());
    let vs = vec![v(12, "subnet:s", Blame::Network)];
    let s = score_run(&t, &vs, &none, 1).unwrap();
    assert_eq!(s.overall.network_blame_host_only, 1);
    assert!(!s.overall.failures(&Thresholds::default()).is_empty());
}

#[test]
fn test_random_placement_only_where_some_agent_would_see_it() {
    // A blackholed subnet of agent-less clients (users, short connections only) or a refusing
    // lb host (whose only clients run no agent) shows to no agent: placement never goes there.
    let text = "name = \"t\"\nduration = \"1h\"\n[[fault]]\ncomponent = \"subnet:subnet-db-3\"\nkind = \"blackhole\"\nat = \"10m\"\nduration = \"10m\"\n[[fault]]\ncomponent = \"host:10.20.1.10\"\nkind = \"connect-fail\"\nat = \"30m\"\nduration = \"10m\"\n";
    let mut subnets = HashSet::new();
    for seed in 1..=40 {
        let fl = fleet("wide", seed);
        let mut s = Scenario::parse(text).unwrap();
        s.place_random(&fl, seed);
        let sub = &s.faults[0].component;
        assert!(!sub.name.starts_with("subnet-users"), "seed {seed}: {sub}");
        subnets.insert(sub.name.clone());
        let host = &s.faults[1].component;
        assert!(
            host.name.starts_with("10.20."),
            "seed {seed}: an api host, {host}"
        );
        for f in &s.faults {
            assert!(
                nfm_sim::sim::observable_flows(&fl, f) >= 3,
                "seed {seed}: {}",
                f.component
            );
        }
    }
    assert!(subnets.len() >= 5, "placement still varies: {subnets:?}");
    // The rule itself: the users subnets are crossed by flows, but none would show a blackhole.
    let fl = fleet("wide", 1);
    let mut s = Scenario::parse(text).unwrap();
    s.faults[0].component = "subnet:subnet-users-1".parse().unwrap();
    assert!(fl.component_index(&s.faults[0].component).is_some());
    assert_eq!(nfm_sim::sim::observable_flows(&fl, &s.faults[0]), 0);
}
