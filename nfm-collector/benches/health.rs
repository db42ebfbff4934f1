//! Cost of the health evaluator per closed interval: 100k flow samples (about 54k flows seen by
//! one or both ends) from a synthetic fleet of 4,500 hosts, on a warm evaluator, healthy and with
//! a fault to attribute. The collector's bar is 1M records/s end to end; an interval of 100k
//! flows must evaluate in well under a second.
//!
//! Two ways of handing over paths: in the samples (`evaluate`), and the collector's way
//! (`evaluate_paths` with `ResolvedPaths`: samples without paths, one shared resolution per
//! address pair, kept across intervals).
//!
//! Besides criterion's wall-clock figures it prints `health.eval_cpu_ms_{healthy,fault}` and
//! `health.eval_cpu_ms_shared_{healthy,fault}`: the evaluating thread's own CPU time per
//! interval (mean of 20), which other jobs on this shared machine disturb far less than wall time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nfm_collector::health::synth::{Fault, Fleet, FleetSpec, SharedPaths};
use nfm_collector::health::{Evaluator, ResolvedPaths};
use nfm_collector::model::ClosedInterval;
use nfm_collector::model::{ComponentId, ComponentKind};
use nfm_collector::resolution::Resolved;
use std::sync::Arc;

fn fleet() -> Fleet {
    Fleet::new(FleetSpec {
        seed: 42,
        hosts_per_subnet: 900,
        flows_per_host: 20,
        ..FleetSpec::default()
    })
}

/// An interval with its paths moved into shared resolutions.
type Shared = (ClosedInterval, Vec<Arc<Resolved>>);

fn eval_shared(ev: &mut Evaluator, (iv, r): &Shared) -> usize {
    let paths = ResolvedPaths::new(iv, r).expect("one resolution per sample");
    ev.evaluate_paths(iv, &paths).degraded_flows.len()
}

fn bench_health(c: &mut Criterion) {
    let mut f = fleet();
    let mut ev = Evaluator::default();
    let mut ev_shared = Evaluator::default();
    let mut pairs = SharedPaths::default();
    let mut share = |mut iv: ClosedInterval| {
        let r = pairs.share(&mut iv);
        (iv, r)
    };
    for i in 0..20 {
        let iv = f.interval(i, &[]);
        ev.evaluate(&iv);
        eval_shared(&mut ev_shared, &share(iv));
    }
    let healthy: Vec<_> = (20..24).map(|i| f.interval(i, &[])).collect();
    let fault = [Fault::Loss {
        component: ComponentId::pair(ComponentKind::AzPair, "az1", "az2"),
        rate: 0.03,
    }];
    let faulty = f.interval(24, &fault);
    let healthy_shared: Vec<Shared> = healthy.iter().map(|iv| share(iv.clone())).collect();
    let faulty_shared = share(faulty.clone());
    let samples = healthy[0].flows.len() as u64;
    eprintln!(
        "health bench: {samples} samples per interval, {} flows",
        f.flow_count()
    );

    const N: usize = 20;
    let cpu_ms = |run: &mut dyn FnMut(usize)| {
        let t = thread_cpu_s();
        for k in 0..N {
            run(k);
        }
        (thread_cpu_s() - t) * 1e3 / N as f64
    };
    let ms = cpu_ms(&mut |k| {
        std::hint::black_box(ev.evaluate(&healthy[k % healthy.len()]));
    });
    println!("health.eval_cpu_ms_healthy {ms:.2} ms");
    let ms = cpu_ms(&mut |_| {
        std::hint::black_box(ev.evaluate(&faulty));
    });
    println!("health.eval_cpu_ms_fault {ms:.2} ms");
    let ms = cpu_ms(&mut |k| {
        std::hint::black_box(eval_shared(
            &mut ev_shared,
            &healthy_shared[k % healthy.len()],
        ));
    });
    println!("health.eval_cpu_ms_shared_healthy {ms:.2} ms");
    let ms = cpu_ms(&mut |_| {
        std::hint::black_box(eval_shared(&mut ev_shared, &faulty_shared));
    });
    println!("health.eval_cpu_ms_shared_fault {ms:.2} ms");

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
    g.bench_function("evaluate_100k_healthy_shared_paths", |b| {
        b.iter(|| {
            k = (k + 1) % healthy_shared.len();
            eval_shared(&mut ev_shared, &healthy_shared[k])
        })
    });
    g.bench_function("evaluate_100k_az_pair_fault_shared_paths", |b| {
        b.iter(|| eval_shared(&mut ev_shared, &faulty_shared))
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
