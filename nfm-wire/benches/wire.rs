//! Wire benchmark: bytes per record and encode/decode throughput on a realistic interval's batch.
//! Prints `wire.<metric> <value> <unit>` lines (run through `scripts/bench.sh wire`).
//!
//! The batch models one busy host's 5 s interval: 10,000 service-level flows, of which 65 % carry
//! steady traffic with RTT samples, 20 % are idle keep-alive connections, 15 % are churn (short
//! connections opened and closed in the interval, with handshake times); 3 % saw retransmissions
//! and 0.3 % a timeout. Sizes are log-uniform from 200 B to 20 MB. Deterministic (fixed seed).

use nfm_wire::*;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn log_uniform(&mut self, lo: f64, hi: f64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (lo * (hi / lo).powf(u)) as u64
    }
}

fn realistic_batch(n: usize, v6: bool, seed: u64) -> Vec<FlowRecord> {
    let mut rng = Rng(seed);
    let ports = [443u16, 80, 5432, 6379, 8080, 9092, 3306, 53, 11211, 27017];
    let addr = |rng: &mut Rng, host: u32| -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2600,
                0x1f18,
                0x4a2,
                (host >> 16) as u16,
                0,
                0,
                0,
                (host & 0xffff) as u16 ^ rng.below(2) as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (host & 0xff_ffff)))
        }
    };
    (0..n)
        .map(|_| {
            let kind = rng.below(100);
            let server = rng.below(3) == 0;
            let port = ports[rng.below(ports.len() as u64) as usize];
            let remote_host = rng.below(1 << 20) as u32;
            let mut r = FlowRecord {
                local: addr(&mut rng, 0x01_0117),
                remote: addr(&mut rng, remote_host),
                role: if server { Role::Server } else { Role::Client },
                local_port: if server { port } else { 0 },
                remote_port: if server { 0 } else { port },
                sockets_open: 1 + rng.below(4),
                ..FlowRecord::default()
            };
            let base_rtt = rng.log_uniform(80.0, 3000.0);
            if kind < 80 {
                // Steady (65 %) or churn (15 %): traffic and RTT samples.
                let sent = rng.log_uniform(200.0, 20e6);
                let recv = rng.log_uniform(200.0, 20e6);
                r.bytes_sent = sent;
                r.bytes_received = recv;
                r.segs_out = sent / 1448 + 1;
                r.segs_in = recv / 1448 + 1;
                let count = 1 + rng.below(20);
                r.rtt = RttSummary {
                    count,
                    sum_us: base_rtt * count + rng.below(base_rtt * count / 4 + 1),
                    min_us: base_rtt,
                    max_us: base_rtt + rng.below(base_rtt / 2 + 1),
                    last_srtt_us: base_rtt + rng.below(base_rtt / 4 + 1),
                };
            }
            if (65..80).contains(&kind) {
                let c = 1 + rng.below(30);
                r.conn_attempts = c;
                r.conn_completed = c - rng.below(2).min(c);
                r.handshake = TimeSummary {
                    count: c,
                    sum_us: c * base_rtt * 11 / 10,
                    min_us: base_rtt,
                    max_us: base_rtt * 2,
                };
            }
            if rng.below(100) < 3 {
                r.retrans.established = 1 + rng.below(40);
            }
            if rng.below(1000) < 3 {
                r.rto.established = 1;
            }
            r
        })
        .collect()
}

/// The agent's frame budgets (`nfm-agent/src/agent.rs`): `UDP_FRAME` (the default transport) is
/// `DEFAULT_DATAGRAM_LEN`; `TCP_FRAME` is 256 KiB.
const TCP_FRAME: usize = 256 * 1024;

/// The datagrams the agent sends for `records` (one interval) over UDP.
fn encode_all(records: &[FlowRecord], seq: &mut Sequencer) -> Vec<Vec<u8>> {
    encode_frames(records, seq, DEFAULT_DATAGRAM_LEN)
}

/// The frames the agent builds for `records` with frame budget `max` (`encode_flow_batch`).
fn encode_frames(records: &[FlowRecord], seq: &mut Sequencer, max: usize) -> Vec<Vec<u8>> {
    encode_flow_batch(
        seq,
        (1_764_000_000_000, 1_764_000_005_000),
        records,
        max,
        None,
    )
    .expect("records fit a frame")
    .into_iter()
    .map(|f| f.bytes)
    .collect()
}

/// Runs `f` repeatedly for about `budget`, returns the best per-iteration time of 5 rounds.
fn best_of<F: FnMut()>(budget: Duration, mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut iters = 0u32;
        while start.elapsed() < budget / 5 {
            f();
            iters += 1;
        }
        best = best.min(start.elapsed() / iters);
    }
    best
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let n = 10_000;
    let v4 = realistic_batch(n, false, 7);
    let v6 = realistic_batch(n, true, 7);
    let mut seq = Sequencer::new(0x42, 1);
    let frames4 = encode_all(&v4, &mut seq);
    let frames6 = encode_all(&v6, &mut seq);
    let bytes4: usize = frames4.iter().map(Vec::len).sum();
    let bytes6: usize = frames6.iter().map(Vec::len).sum();
    println!(
        "wire.bytes_per_record_v4 {:.1} bytes",
        bytes4 as f64 / n as f64
    );
    println!(
        "wire.bytes_per_record_v6 {:.1} bytes",
        bytes6 as f64 / n as f64
    );
    println!(
        "wire.records_per_datagram_v4 {:.1} records",
        n as f64 / frames4.len() as f64
    );

    let budget = Duration::from_secs(2);
    let enc = best_of(budget, || {
        let mut s = Sequencer::new(0x42, 1);
        black_box(encode_all(black_box(&v4), &mut s));
    });
    println!(
        "wire.encode_records_per_s {:.0} records/s",
        n as f64 / enc.as_secs_f64()
    );

    // Full decode as the collector's ingest does it (`nfm_wire::decode`: header checks, CRC,
    // every record into a `FlowRecord`), of the datagrams the agent sends by default (UDP).
    let opts = DecodeOptions::default();
    let decode_all = |frames: &[Vec<u8>]| {
        let mut total = 0;
        for f in frames {
            match decode(black_box(f), &opts) {
                Ok(Packet {
                    message: Message::FlowBatch(b),
                    ..
                }) => total += b.records.len(),
                other => panic!("bench frame did not decode: {other:?}"),
            }
        }
        assert_eq!(total, n);
    };
    let dec = best_of(budget, || decode_all(&frames4));
    println!(
        "wire.decode_records_per_s {:.0} records/s",
        n as f64 / dec.as_secs_f64()
    );
    // The same records in the agent's TCP frames (a few large frames per interval).
    let frames_tcp = encode_frames(&v4, &mut Sequencer::new(0x42, 1), TCP_FRAME);
    let dec_tcp = best_of(budget, || decode_all(&frames_tcp));
    println!(
        "wire.decode_tcp_records_per_s {:.0} records/s",
        n as f64 / dec_tcp.as_secs_f64()
    );

    let key = Key::new(1, vec![7u8; 32]);
    let mut ring = Keyring::new();
    ring.insert(key.clone());
    let signed = encode_flow_batch(
        &mut Sequencer::new(1, 1),
        (0, 0),
        &v4,
        DEFAULT_DATAGRAM_LEN,
        Some(&key),
    )
    .unwrap();
    let sopts = DecodeOptions {
        keys: Some(&ring),
        ..opts
    };
    let sdec = best_of(budget, || {
        for f in &signed {
            black_box(decode(black_box(&f.bytes), &sopts).expect("signed bench frame decodes"));
        }
    });
    println!(
        "wire.decode_signed_records_per_s {:.0} records/s",
        n as f64 / sdec.as_secs_f64()
    );
}
