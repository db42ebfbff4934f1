//! Evaluator tests on faults that change over time: a drift that grows a little every interval.

use super::synth::{Fault, Fleet, FleetSpec, GATEWAY};
use super::test::{names, run};
use super::*;
use crate::model::{ComponentId, ComponentKind};

/// An RTT drift through the gateway, 1 % of the flows' RTT per interval up to +60 %: named by
/// the time it has grown 30 % and held to its end (no gap past the incident hold-down). With
/// the window's plain spread, widened by the ramp itself, it is never named.
#[test]
fn test_rtt_drift_named_by_thirty_percent_and_held() {
    const JITTER: f64 = 0.03;
    const RATE: f64 = 0.01;
    let gw = ComponentId::new(ComponentKind::Gateway, GATEWAY);
    let mut f = Fleet::new(FleetSpec {
        seed: 21,
        jitter: JITTER,
        ..FleetSpec::default()
    });
    let mut ev = Evaluator::default();
    run(&mut f, &mut ev, 20, 0, &[]);
    // The gateway paths' RTT, as the evaluator learned it.
    let base_us = 1_600.0;
    let (mut first, mut last) = (None, 0);
    for k in 1..=60u64 {
        let rise = (RATE * k as f64).min(0.6);
        let faults = [Fault::Delay {
            component: gw.clone(),
            extra_us: rise * base_us,
        }];
        let r = ev.evaluate(&f.interval(20 + k, &faults));
        let named = names(&r).contains(&gw.to_string());
        if named && first.is_none() {
            first = Some(k);
        }
        if named {
            last = k;
        } else if first.is_some() {
            // Held: the incident never lapses (no gap past the hold-down's intervals).
            assert!(
                k - last <= crate::model::INCIDENT_HOLD_DOWN_INTERVALS,
                "named at interval {last}, not since {k}"
            );
        }
    }
    let k0 = first.expect("the drift is never named");
    assert!(
        RATE * k0 as f64 <= 0.3,
        "first named at +{:.0}%",
        100.0 * RATE * k0 as f64
    );
}
