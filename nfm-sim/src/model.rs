//! The per-flow TCP model: turns one flow's path conditions over one interval into the counters
//! both of its ends would report, believable enough that a health evaluator tuned on it has to
//! solve the real problem.
//!
//! What it models, and why each rule:
//! - RTT: the path's base RTT (by class, chosen per flow by the fleet) with ±10 % jitter per
//!   interval, plus every delay fault on the path, plus the extra time of a slow host at either
//!   end. Samples ≈ one per two data segments (delayed ACKs).
//! - Segments: bytes / MSS, plus pure ACKs (one per two segments received) and 3 (SYN, ACK, FIN)
//!   per connection.
//! - Loss: the loss of every component on the path composes, `1 − Π(1 − pᵢ)`, with the path's
//!   residual loss. Each data segment is lost independently (binomial); every loss is one
//!   retransmission. A loss becomes a retransmission timeout (RTO) rather than a fast retransmit
//!   with probability `min(0.9, 0.03 + 3p)`, higher still (0.3 more) on short connections that
//!   never have enough segments in flight for duplicate ACKs: high or bursty loss gives timeouts.
//! - SYN loss: a lost SYN is retransmitted after 1 s, which lands in the handshake time.
//! - Blackhole (`down` fraction of the interval): nothing gets through while down. Connection
//!   attempts in that time fail (3 SYN retransmissions each inside an interval), long-lived
//!   sockets back off in RTOs (200 ms doubling, each expiry retransmitting one segment), the
//!   application reconnects every ~20 s and fails, bytes shrink by the down fraction, and a
//!   whole interval down severs a third of the long-lived sockets.
//! - Slow host (CPU or application starvation): longer RTT and handshakes for flows touching that
//!   host only, and no loss at all — the signature that must not be blamed on the network.
//! - One direction (issue 14): loss on client→server segments only (`loss_up`) shows in the
//!   client's retransmissions, on server→client segments (`loss_down`) in the server's; a SYN
//!   exchange is lost when either its SYN or its SYN-ACK is.
//! - RTT drift (`rtt_factor`): every RTT (and handshake) × (1 + factor), relative, not additive.
//! - New connections only (`syn_drop`): SYNs dropped with this probability (a firewall or a
//!   refusing server): a connect fails when all 6 are, with 3 SYN retransmissions and timeouts
//!   inside one interval as for a blackhole; established sockets are untouched.
//!
//! Both ends are reported as the real agent would: the client with `Role::Client`, local port 0
//! (ephemeral, elided) and the service port remote; the server with `Role::Server`, the service
//! port local and remote port 0.

use crate::fleet::FlowSpec;
use nfm_wire::{FlowRecord, PhaseCounts, Role, RttSummary, TimeSummary};
use rand::RngExt;
use std::net::IpAddr;

/// What the network (and the end hosts) do to one flow during one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Conditions {
    /// Extra loss composed over the faulty components on the path (0..=1).
    pub loss: f64,
    /// Extra round-trip delay from faults, microseconds (averaged over the interval).
    pub delay_us: f64,
    /// Fraction of the interval during which the path is blackholed (0..=1).
    pub down: f64,
    /// Extra RTT from a slow host at either end, microseconds.
    pub slow_rtt_us: f64,
    /// Extra handshake time from a slow host at either end, microseconds.
    pub slow_handshake_us: f64,
    /// Extra loss on client→server segments only (issue 14: one direction of a pair).
    pub loss_up: f64,
    /// Extra loss on server→client segments only.
    pub loss_down: f64,
    /// Relative extra RTT (0.3 = +30 %; an RTT drift), applied before the additive delays.
    pub rtt_factor: f64,
    /// Probability that a SYN is dropped (new connections fail; established ones do not).
    pub syn_drop: f64,
}

impl Conditions {
    /// Adds another fault's effect on the same flow: losses compose, delays add, blackholes
    /// overlap at most fully.
    pub fn compose(&mut self, o: &Conditions) {
        self.loss = 1.0 - (1.0 - self.loss) * (1.0 - o.loss);
        self.delay_us += o.delay_us;
        self.down = 1.0 - (1.0 - self.down) * (1.0 - o.down);
        self.slow_rtt_us += o.slow_rtt_us;
        self.slow_handshake_us += o.slow_handshake_us;
        self.loss_up = 1.0 - (1.0 - self.loss_up) * (1.0 - o.loss_up);
        self.loss_down = 1.0 - (1.0 - self.loss_down) * (1.0 - o.loss_down);
        self.rtt_factor = (1.0 + self.rtt_factor) * (1.0 + o.rtt_factor) - 1.0;
        self.syn_drop = 1.0 - (1.0 - self.syn_drop) * (1.0 - o.syn_drop);
    }

    pub fn is_healthy(&self) -> bool {
        *self == Conditions::default()
    }
}

/// Poisson sample (Knuth for small means, normal approximation above 30).
pub fn poisson<R: RngExt + ?Sized>(rng: &mut R, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    if mean > 30.0 {
        return normal(rng, mean, mean.sqrt()).round().max(0.0) as u64;
    }
    let l = (-mean).exp();
    let mut k = 0u64;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= l || k > 1_000 {
            return k;
        }
        k += 1;
    }
}

/// Binomial sample: exact for few trials, Poisson for rare events, normal otherwise.
pub fn binomial<R: RngExt + ?Sized>(rng: &mut R, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let mean = n as f64 * p;
    let k = if n <= 32 {
        (0..n).filter(|_| rng.random::<f64>() < p).count() as u64
    } else if mean < 30.0 {
        poisson(rng, mean)
    } else {
        normal(rng, mean, (mean * (1.0 - p)).sqrt())
            .round()
            .max(0.0) as u64
    };
    k.min(n)
}

fn normal<R: RngExt + ?Sized>(rng: &mut R, mean: f64, sd: f64) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Retransmission timeouts a long-lived socket goes through while blackholed for `down_s`
/// seconds: RTO starts at 200 ms and doubles, so about log2(1 + down/0.2) expiries (≤ 15).
fn backoff_rtos(down_s: f64) -> u64 {
    if down_s <= 0.0 {
        return 0;
    }
    ((1.0 + down_s / 0.2).log2().ceil() as u64).clamp(1, 15)
}

/// Both ends' records of one flow over one interval. `server` is `None` when only the client's
/// view would be reported (the server runs no agent, or is a service); the caller decides which
/// of the two to send, this only computes them consistently.
#[allow(clippy::too_many_arguments)]
pub fn simulate<R: RngExt + ?Sized>(
    spec: &FlowSpec,
    client_ip: IpAddr,
    server_ip: IpAddr,
    cond: &Conditions,
    secs: f64,
    load: f64,
    mss: u32,
    rng: &mut R,
) -> (FlowRecord, FlowRecord) {
    let mss = mss.max(1) as f64;
    let down = cond.down.clamp(0.0, 1.0);
    let up_frac = 1.0 - down;
    let p = (1.0 - (1.0 - spec.baseline_loss) * (1.0 - cond.loss)).clamp(0.0, 1.0);
    // `p` itself when nothing is added, bit for bit: the shipped scenarios' draws are unchanged.
    let with = |p: f64, x: f64| {
        if x == 0.0 {
            p
        } else {
            (1.0 - (1.0 - p) * (1.0 - x)).clamp(0.0, 1.0)
        }
    };
    let p_up = with(p, cond.loss_up);
    let p_down = with(p, cond.loss_down);
    // A SYN exchange is retried when the SYN or the SYN-ACK is lost (the symmetric part counted
    // once, as before directions existed), or the SYN is dropped.
    let syn_drop = cond.syn_drop.clamp(0.0, 1.0);
    let p_syn = with(with(p_up, cond.loss_down), syn_drop);
    let p_max = p_up.max(p_down);

    // Volume.
    let up = (spec.bytes_per_s * secs * load * rng.random_range(0.7..1.3) * up_frac).round() as u64;
    let down_bytes = (up as f64 * spec.response * rng.random_range(0.8..1.2)).round() as u64;
    let seg_up = up.div_ceil(mss as u64);
    let seg_down = down_bytes.div_ceil(mss as u64);

    // Connections. While blackholed, long-lived sockets time out and the application
    // reconnects about every 20 s, and those attempts fail too.
    let long = spec.long_lived as u64;
    let reconnects = if down > 0.0 {
        long * (down * secs / 20.0).ceil() as u64
    } else {
        0
    };
    let attempts = poisson(rng, spec.connections_per_s * secs * load) + reconnects;
    let failed_down = reconnects + binomial(rng, attempts - reconnects, down);
    let reached = attempts - failed_down;
    // SYNs dropped outright (new connections refused) fail like a blackhole's: 3 resends each
    // inside the interval. A connect also fails when every one of 6 SYNs is lost.
    let failed_drop = binomial(rng, reached, syn_drop.powi(4));
    let failed_down = failed_down + failed_drop;
    let reached = reached - failed_drop;
    let failed_loss = binomial(rng, reached, p_syn.powi(6));
    let established = reached - failed_loss;
    let syn_retrans = binomial(rng, reached, p_syn) + failed_loss * 5;
    let severed = if down >= 0.999 {
        binomial(rng, long, 0.33)
    } else {
        0
    };

    // Retransmissions and timeouts per direction.
    let short = spec.connections_per_s > 0.0 && long == 0;
    let q_of = |p: f64| ((0.03 + 3.0 * p).min(0.9) + if short { 0.3 } else { 0.0 }).min(0.95);
    let (q_up, q_down) = (q_of(p_up), q_of(p_down));
    let rtx_up = binomial(rng, seg_up, p_up);
    let rtx_down = binomial(rng, seg_down, p_down);
    // Every RTO expiry while blackholed retransmits one segment.
    let blackhole_rtos = if down > 0.0 {
        long * backoff_rtos(down * secs)
    } else {
        0
    };
    let rto_up = binomial(rng, rtx_up, q_up) + blackhole_rtos;
    let rto_down = binomial(rng, rtx_down, q_down) + blackhole_rtos;
    let rtx_up = rtx_up + blackhole_rtos;
    let rtx_down = rtx_down + blackhole_rtos;
    let fin_rtx = binomial(rng, established, p_up);

    // RTT.
    let base = spec.base_rtt_us * rng.random_range(0.9..1.1) * (1.0 + cond.rtt_factor.max(-0.9))
        + cond.delay_us
        + cond.slow_rtt_us;
    let rtt = |rng: &mut R, samples: u64| -> RttSummary {
        if samples == 0 {
            return RttSummary::default();
        }
        let mean = base * rng.random_range(1.0..1.08);
        let min = base * rng.random_range(0.85..0.98);
        // Losses bring spikes (a sample taken across a recovery); delays are steady.
        let spike = if p_max > 0.001 {
            rng.random_range(1.5..3.0)
        } else {
            rng.random_range(1.15..1.6)
        };
        RttSummary {
            count: samples,
            sum_us: (mean * samples as f64) as u64,
            min_us: min as u64,
            max_us: (mean * spike) as u64,
            last_srtt_us: (mean * rng.random_range(0.95..1.05)) as u64,
        }
    };
    let c_samples = seg_up.div_ceil(2) + if seg_up == 0 && seg_down > 0 { 1 } else { 0 };
    let s_samples = seg_down.div_ceil(2) + if seg_down == 0 && seg_up > 0 { 1 } else { 0 };
    let c_rtt = rtt(rng, c_samples);
    let s_rtt = rtt(rng, s_samples);

    // Handshake time: one RTT plus the slow host's extra; each SYN retransmission costs 1 s.
    let hs = |rng: &mut R, n: u64, retrans: u64| -> TimeSummary {
        if n == 0 {
            return TimeSummary::default();
        }
        let one = base * rng.random_range(1.0..1.1) + cond.slow_handshake_us;
        let sum = one * n as f64 + retrans.min(n * 5) as f64 * 1_000_000.0;
        TimeSummary {
            count: n,
            sum_us: sum as u64,
            min_us: (one * 0.9) as u64,
            max_us: if retrans > 0 {
                (one + 1_000_000.0) as u64
            } else {
                (one * 1.3) as u64
            },
        }
    };
    let c_hs = hs(
        rng,
        established,
        syn_retrans.saturating_sub(failed_loss * 5),
    );
    let s_hs = hs(rng, established, 0);

    let client = FlowRecord {
        local: client_ip,
        remote: server_ip,
        local_port: 0,
        remote_port: spec.port,
        role: Role::Client,
        bytes_sent: up,
        bytes_received: down_bytes,
        segs_out: seg_up + rtx_up + seg_down / 2 + 3 * attempts + syn_retrans + failed_down * 3,
        segs_in: seg_down + seg_up / 2 + 2 * established,
        rtt: c_rtt,
        sockets_open: long - severed,
        conn_attempts: attempts,
        conn_completed: established,
        conn_failed: failed_down + failed_loss,
        conn_severed: severed,
        retrans: PhaseCounts {
            handshake: syn_retrans + failed_down * 3,
            established: rtx_up,
            closing: fin_rtx,
        },
        rto: PhaseCounts {
            handshake: failed_down * 3 + binomial(rng, syn_retrans, 0.9),
            established: rto_up,
            closing: 0,
        },
        handshake: c_hs,
    };
    let server = FlowRecord {
        local: server_ip,
        remote: client_ip,
        local_port: spec.port,
        remote_port: 0,
        role: Role::Server,
        bytes_sent: down_bytes,
        bytes_received: up,
        segs_out: seg_down + rtx_down + seg_up / 2 + 2 * established,
        segs_in: seg_up + seg_down / 2 + 3 * established,
        rtt: s_rtt,
        sockets_open: long - severed,
        conn_attempts: established,
        conn_completed: established,
        conn_failed: 0,
        conn_severed: severed,
        retrans: PhaseCounts {
            handshake: 0,
            established: rtx_down,
            closing: 0,
        },
        rto: PhaseCounts {
            handshake: 0,
            established: rto_down,
            closing: 0,
        },
        handshake: s_hs,
    };
    (client, server)
}
