//! Several collectors (issue 16 item 3): a simulated fleet given two real collectors splits by
//! rendezvous hash of the agent ids, exactly as nfm-agent does; every acked record is in one of
//! them, and each gets the agents that pick it.

use nfm_collector::collector::{Collector, Settings};
use nfm_sim::fleet::Fleet;
use nfm_sim::run::{self, LoadOptions};
use nfm_sim::transport::Kind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn collector(dir: &std::path::Path) -> Collector {
    Collector::start(&Settings {
        listen_udp: None,
        listen_tcp: Some("127.0.0.1:0".parse().unwrap()),
        http: None,
        data_dir: dir.to_path_buf(),
        health: false,
        ..Default::default()
    })
    .expect("collector starts")
}

#[test]
fn test_fleet_splits_over_two_collectors_by_rendezvous() {
    let dir = std::env::temp_dir().join(format!("nfm-scale-sim-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (collector(&dir.join("a")), collector(&dir.join("b")));
    let list = vec![a.tcp_addr.unwrap(), b.tcp_addr.unwrap()];
    let fleet = Fleet::load(format!("{DIR}/fleets/small.toml"), 1).unwrap();
    let opts = LoadOptions {
        transport: Kind::Tcp,
        collector: list[0],
        collectors: list.clone(),
        udp_sockets: 1,
        rate: 50_000.0,
        duration: Duration::from_millis(300),
        interval_ms: 5_000,
        agents: None,
        seed: 1,
        ack_wait: Duration::from_secs(10),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let rep = run::load(&fleet, &opts).unwrap();
    assert_eq!(rep.send_errors, 0);
    assert_eq!(rep.acked_records, rep.offered_records);
    // Agents per collector, by the shared rendezvous function.
    let ids: Vec<u64> = fleet
        .agents
        .iter()
        .map(|&h| nfm_sim::agent::VirtualAgent::new(&fleet.hosts[h].name, 1, 0).agent_id())
        .collect();
    let to_a = ids
        .iter()
        .filter(|&&id| nfm_wire::rendezvous::pick(id, &list) == Some(0))
        .count();
    assert!(
        to_a > 0 && to_a < ids.len(),
        "both collectors get agents: {to_a} of {}",
        ids.len()
    );
    let recs = |c: &Collector| c.metrics.aggregated_records.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while recs(&a) + recs(&b) < rep.acked_records && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        recs(&a) + recs(&b),
        rep.acked_records,
        "every acked record in one collector"
    );
    assert!(
        recs(&a) > 0 && recs(&b) > 0,
        "a {} b {}",
        recs(&a),
        recs(&b)
    );
    a.shutdown();
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
