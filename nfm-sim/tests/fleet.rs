//! Fleet files: the shipped fleets load and have the promised size; broken ones are refused
//! with a reason.

use nfm_sim::fleet::Fleet;
use nfm_sim::scenario::Scenario;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn test_large_fleet_has_ten_thousand_hosts() {
    let f = Fleet::load(format!("{DIR}/fleets/large.toml"), 1).unwrap();
    assert!(f.hosts.len() >= 10_000, "{} hosts", f.hosts.len());
    assert!(f.agents.len() >= 10_000);
    // Generated hosts are named by their address, as the collector names unlisted hosts.
    let h = &f.hosts[0];
    assert_eq!(h.name, h.ip.to_string());
    assert_eq!(
        f.topology.resolve(h.ip).host_component().to_string(),
        format!("host:{}", h.ip)
    );
}

#[test]
fn test_every_shipped_scenario_fits_the_small_fleet() {
    let fleet = Fleet::load(format!("{DIR}/fleets/small.toml"), 1).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(format!("{DIR}/scenarios")).unwrap() {
        let p = e.unwrap().path();
        // wide-*: the wide fleet's (tests/issue14.rs checks them against it).
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("wide-")
        {
            continue;
        }
        let s = Scenario::load(&p).unwrap();
        s.check(&fleet)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for f in &s.faults {
            assert!(
                fleet.equivalents(&f.component).is_empty(),
                "{}: {} is ambiguous",
                p.display(),
                f.component
            );
        }
        n += 1;
    }
    assert!(n >= 9, "at least nine scenarios ship, {n} found");
}

#[test]
fn test_random_placement_keeps_kind_and_is_seeded() {
    let fleet = Fleet::load(format!("{DIR}/fleets/small.toml"), 1).unwrap();
    let s = Scenario::load(format!("{DIR}/scenarios/overlapping-faults.toml")).unwrap();
    let mut moved = Vec::new();
    for seed in 0..20 {
        let mut p = s.clone();
        p.place_random(&fleet, seed);
        for (a, b) in s.faults.iter().zip(&p.faults) {
            assert_eq!(a.component.kind, b.component.kind);
            assert!(fleet.equivalents(&b.component).is_empty());
        }
        assert_ne!(p.faults[0].component, p.faults[1].component);
        p.check(&fleet).unwrap();
        let mut again = s.clone();
        again.place_random(&fleet, seed);
        assert_eq!(again, p, "same seed, same placement");
        moved.push(p.faults[1].component.clone());
    }
    moved.sort();
    moved.dedup();
    assert!(moved.len() >= 3, "placements vary with the seed: {moved:?}");
}

#[test]
fn test_broken_fleets_are_refused() {
    let topo = std::fs::read_to_string(format!("{DIR}/fleets/small.toml")).unwrap();
    let no_traffic = topo.split("[traffic]").next().unwrap().to_string();
    for (text, why) in [
        (no_traffic.clone(), "no [traffic]"),
        (format!("{no_traffic}[traffic]\n[[traffic.tier]]\nname = \"w\"\nhosts = [\"nobody\"]\n"), "unknown host"),
        (format!("{no_traffic}[traffic]\n[[traffic.tier]]\nname = \"w\"\nhosts = [\"web-1\"]\n[[traffic.flow]]\nfrom = \"w\"\nto = \"x\"\n"), "unknown tier"),
        (format!("{no_traffic}[traffic]\n[[traffic.tier]]\nname = \"w\"\nhosts = [\"web-1\"]\n[[traffic.flow]]\nfrom = \"w\"\nto = \"service:nope\"\n"), "unknown service"),
        (format!("{no_traffic}[traffic]\nmss = 1\n"), "silly mss"),
        (format!("{no_traffic}[traffic]\nwhat = 1\n"), "unknown key"),
        (format!("{no_traffic}[traffic]\n[[traffic.tier]]\nname = \"w\"\nsubnets = [\"subnet-dr-a\"]\nper_subnet = 300\n[[traffic.flow]]\nfrom = \"w\"\nto = \"w\"\n"), "subnet too small"),
        ("[[az]]\nname = 3\n".to_string(), "bad topology"),
    ] {
        let e = Fleet::parse(&text, 1).expect_err(why);
        assert!(!e.0.is_empty(), "{why}: has a message");
    }
}
