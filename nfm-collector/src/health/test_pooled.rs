//! Evaluator tests of the pooled stage on quiet synthetic fleets: low-grade loss no flow shows
//! alone, and loss that a few flows each show, with what contains them left unblamed.

use super::synth::{Fault, Fleet, FleetSpec};
use super::test::run;
use super::*;
use crate::model::{Blame, ComponentId, ComponentKind};

/// Low-grade loss (1 %) on an AZ pair crossed by quiet flows (a few to a few hundred segments
/// per interval: no flow shows it alone) is named by the pooled evidence within 12 intervals,
/// stays named to its end without being learned, and is no longer named 3 intervals after it
/// ends. Without the pooled stage it is never named.
#[test]
fn test_low_grade_loss_named_by_pooled_evidence_and_held() {
    let pair = ComponentId::pair(ComponentKind::AzPair, "az1", "az2");
    let faults = [Fault::Loss {
        component: pair.clone(),
        rate: 0.01,
    }];
    let quiet = |seed| {
        Fleet::new(FleetSpec {
            seed,
            segs_scale: 0.01,
            ..FleetSpec::default()
        })
    };
    for seed in [3, 4] {
        let mut f = quiet(seed);
        let mut ev = Evaluator::default();
        let reps = run(&mut f, &mut ev, 30, 60, &faults);
        let named = |r: &HealthReport| r.verdicts.iter().any(|v| v.component == pair);
        let first = reps.iter().position(named).expect("never named");
        assert!(
            first < 12,
            "seed {seed}: first named in faulty interval {first}"
        );
        let held = reps[first..].iter().filter(|r| named(r)).count();
        assert!(
            held * 10 >= (reps.len() - first) * 9,
            "seed {seed}: named in {held} of {} intervals after the first",
            reps.len() - first
        );
        // Attribution precision ≥ 0.9 over the fault's verdicts.
        let all: Vec<&Verdict> = reps.iter().flat_map(|r| &r.verdicts).collect();
        let wrong = all.iter().filter(|v| v.component != pair).count();
        assert!(
            wrong * 10 <= all.len(),
            "seed {seed}: {wrong} of {} verdicts elsewhere",
            all.len()
        );
        let v = reps
            .last()
            .unwrap()
            .verdicts
            .iter()
            .find(|v| v.component == pair);
        let v = v.expect("named at the end");
        assert_eq!(v.blame, Blame::Network);
        assert!(v.degraded_flows >= 1 && v.evidence[0].observed > v.evidence[0].baseline);
        // Healed: not named from the third interval on.
        let after: Vec<bool> = (90..100)
            .map(|i| named(&ev.evaluate(&f.interval(i, &[]))))
            .collect();
        assert!(after[2..].iter().all(|n| !n), "seed {seed}: {after:?}");

        // The per-flow stage alone does not see it.
        let mut f = quiet(seed);
        let mut ev = Evaluator::new(HealthConfig {
            pooled_threshold: f64::INFINITY,
            ..HealthConfig::default()
        });
        let reps = run(&mut f, &mut ev, 30, 60, &faults);
        assert!(
            !reps.iter().any(named),
            "seed {seed}: per-flow stage named it"
        );
    }
}

/// 3 % loss on an AZ pair crossed by few, quiet flows (the synthetic fleet at 4 hosts per
/// subnet and 3 flows per host, a twentieth of its segments): the flows that show it are
/// degraded on their own, fewer than a per-flow verdict needs, and count as pooled evidence, so
/// the pair is named within 3 intervals in 7 of 8 fleets, and 90 % of the network verdicts name
/// it. An AZ pair crossed by two lossy flows is not named on their evidence, and neither is
/// what contains it (an AZ, the gateway, a VPC): no network verdict at all.
#[test]
fn test_loss_on_few_flows_named_and_not_blamed_on_containers() {
    let pair = ComponentId::pair(ComponentKind::AzPair, "az1", "az2");
    let faults = |rate| {
        [Fault::Loss {
            component: pair.clone(),
            rate,
        }]
    };
    let quiet = |seed, hosts, segs_scale| {
        Fleet::new(FleetSpec {
            seed,
            hosts_per_subnet: hosts,
            flows_per_host: 3,
            segs_scale,
            ..FleetSpec::default()
        })
    };
    let network = |reps: &[HealthReport]| -> Vec<ComponentId> {
        reps.iter()
            .flat_map(|r| &r.verdicts)
            .filter(|v| v.blame == Blame::Network)
            .map(|v| v.component.clone())
            .collect()
    };
    let (mut prompt, mut right, mut all) = (0, 0, 0);
    for seed in 1..=8 {
        let mut f = quiet(seed, 4, 0.05);
        let mut ev = Evaluator::default();
        let reps = run(&mut f, &mut ev, 30, 20, &faults(0.03));
        let first = reps
            .iter()
            .position(|r| r.verdicts.iter().any(|v| v.component == pair));
        prompt += usize::from(first.is_some_and(|k| k <= 3));
        let named = network(&reps);
        right += named.iter().filter(|c| **c == pair).count();
        all += named.len();
    }
    assert!(
        prompt >= 7,
        "named within 3 intervals in {prompt} of 8 fleets"
    );
    assert!(
        right * 10 >= all * 9,
        "{right} of {all} network verdicts name the pair"
    );

    // Seed 3 at 3 hosts per subnet: two flows cross the pair.
    let mut f = quiet(3, 3, 0.2);
    let mut ev = Evaluator::default();
    let reps = run(&mut f, &mut ev, 30, 20, &faults(0.01));
    assert_eq!(network(&reps), Vec::<ComponentId>::new());
}
