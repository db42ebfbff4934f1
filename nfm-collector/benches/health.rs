//! Cost of the health evaluator per closed interval: 100k flow samples (about 54k flows seen by
//! one or both ends) from a synthetic fleet of 4,500 hosts, on a warm evaluator, healthy and with
//! a fault to attribute. The collector's bar is 1M records/s end to end; an interval of 100k
//! flows must evaluate in well under a second.
//!
//! Besides criterion's wall-clock figures it prints `health.eval_cpu_ms_healthy` and
//! `health.eval_cpu_ms_fault`: the evaluating thread's own CPU time per interval (mean of 20),
//! which other jobs on this shared machine disturb far less than wall time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nfm_collector::health::synth::{Fault, Fleet, FleetSpec};
use nfm_collector::health::Evaluator;
use nfm_collector::model::{ComponentId, ComponentKind};

fn fleet() -> Fleet {
    Fleet::new(FleetSpec {
        seed: 42,
        hosts_per_subnet: 900,
        flows_per_host: 20,
        ..FleetSpec::default()
    })
}

fn bench_health(c: &mut Criterion) {
    let mut f = fleet();
    let mut ev = Evaluator::default();
    for i in 0..20 {
        ev.evaluate(&f.interval(i, &[]));
    }
    let healthy: Vec<_> = (20..24).map(|i| f.interval(i, &[])).collect();
    let fault = [Fault::Loss {
        component: ComponentId::pair(ComponentKind::AzPair, "az1", "az2"),
        rate: 0.03,
    }];
    let faulty = f.interval(24, &fault);
    let samples = healthy[0].flows.len() as u64;
    let per_interval = |ev: &mut Evaluator, ivs: &[&nfm_collector::model::ClosedInterval]| {
        let n = 20;
        let t = thread_cpu_s();
        for k in 0..n {
            std::hint::black_box(ev.evaluate(ivs[k % ivs.len()]));
        }
        (thread_cpu_s() - t) * 1e3 / n as f64
    };
    let ms = per_interval(&mut ev, &healthy.iter().collect::<Vec<_>>());
    println!("health.eval_cpu_ms_healthy {ms:.2} ms");
    let ms = per_interval(&mut ev, &[&faulty]);
    println!("health.eval_cpu_ms_fault {ms:.2} ms");
    eprintln!(
        "health bench: {samples} samples per interval, {} flows",
        f.flow_count()
    );

    let mut g = c.benchmark_group("health");
    g.sample_size(20);
    g.throughput(Throughput::Elements(samples));
    let mut k = 0;
    g.bench_function("evaluate_100k_healthy", |b| {
        b.iter(|| {
            k = (k + 1) % healthy.len();
            ev.evaluate(&healthy[k])
        })
    });
    // A fault in progress: its flows are not learned, so every iteration sees it anew.
    g.bench_function("evaluate_100k_az_pair_fault", |b| {
        b.iter(|| ev.evaluate(&faulty))
    });
    g.finish();
}

/// CPU time of the calling thread, seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

criterion_group!(benches, bench_health);
criterion_main!(benches);
