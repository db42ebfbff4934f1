//! Several collectors (issue 16 item 3), end to end without root: the agent's real transport
//! ships to two real collectors (in-process `Collector::start`, TCP on loopback, store on disk).
//! The agent's first choice by rendezvous hash gets its frames; killing it moves the agent to
//! the other (its unacked frames resent there); restarting it on the same port brings the agent
//! back once everything is acked. Every frame is acked, and every acked frame is durable at one
//! of the collectors.

use mio::{Events, Poll};
use nfm_agent::transport::{Kind, Transport, COLLECTOR};
use nfm_collector::collector::{Collector, Settings};
use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Hello, Message};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn start(dir: &Path, tcp: SocketAddr) -> Collector {
    let s = Settings {
        listen_udp: None,
        listen_tcp: Some(tcp),
        http: None,
        data_dir: dir.to_path_buf(),
        health: false,
        ..Default::default()
    };
    // The restarted collector binds the port its first run had: retry while the kernel frees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Collector::start(&s) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("collector start: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("collector start: {e}"),
        }
    }
}

/// Batches durable in a collector's store.
fn stored(c: &Collector) -> u64 {
    c.metrics.store_batches.load(Ordering::Relaxed)
}

struct Agent {
    poll: Poll,
    events: Events,
    t: Transport,
    id: u64,
    seq: u64,
    start_ms: u64,
}

impl Agent {
    /// Drives the transport until `done` holds (bounded).
    fn drive(&mut self, what: &str, mut done: impl FnMut(&Transport) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.t) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.t.on_tick(self.poll.registry(), Instant::now());
            let _ = self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(20)));
            for ev in self.events.iter() {
                if ev.token() == COLLECTOR {
                    self.t.on_event(self.poll.registry(), ev);
                }
            }
            self.t.flush(self.poll.registry());
        }
    }

    /// One FlowBatch frame of one record for the next 5 s interval.
    fn send(&mut self) {
        self.seq += 1;
        let start = self.start_ms + self.seq * 5_000;
        let f = encode_to_vec(
            &Header {
                agent_id: self.id,
                epoch: 7,
                seq: self.seq,
            },
            &Message::FlowBatch(FlowBatch {
                interval_start_ms: start,
                interval_end_ms: start + 5_000,
                records: vec![FlowRecord {
                    local: "10.0.0.1".parse().unwrap(),
                    remote: "10.0.0.2".parse().unwrap(),
                    remote_port: 443,
                    bytes_sent: 100,
                    ..Default::default()
                }],
            }),
            None,
        );
        self.t.send(self.poll.registry(), self.seq, 1, f);
    }
}

#[test]
fn agent_fails_over_to_the_next_collector_and_returns() {
    let dir = std::env::temp_dir().join(format!("nfm-scale-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = start(&dir.join("a"), any);
    let b = start(&dir.join("b"), any);
    let (addr_a, addr_b) = (a.tcp_addr.unwrap(), b.tcp_addr.unwrap());
    let list = vec![addr_a, addr_b];
    // An agent whose first choice is `a`.
    let id = (1..)
        .find(|&i| nfm_wire::rendezvous::pick(i, &list) == Some(0))
        .unwrap();
    let mut t = Transport::new(Kind::Tcp, list, id, 7, 1 << 20, None);
    t.set_return_after(Duration::from_millis(500));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let hello = encode_to_vec(
        &Header {
            agent_id: id,
            epoch: 7,
            seq: 0,
        },
        &Message::Hello(Hello {
            host_name: "failover-test".into(),
            interval_ms: 5_000,
            started_at_ms: now_ms - 600_000,
            ..Default::default()
        }),
        None,
    );
    t.set_hello(hello);
    assert_eq!(t.collector(), Some(addr_a));
    let poll = Poll::new().unwrap();
    let mut ag = Agent {
        poll,
        events: Events::with_capacity(16),
        t,
        id,
        seq: 0,
        // Intervals on the 5 s grid, ten minutes back (never in the collector's future).
        start_ms: (now_ms - 600_000) / 5_000 * 5_000,
    };

    // 1. First choice: `a` stores everything.
    for _ in 0..5 {
        ag.send();
    }
    ag.drive("5 frames acked by a", |t| t.stats.frames_acked == 5);
    assert_eq!(stored(&a), 5);
    assert_eq!(stored(&b), 0);

    // 2. Kill `a`: the agent moves to `b`, which stores what follows.
    a.shutdown();
    for _ in 0..5 {
        ag.send();
    }
    ag.drive("5 more frames acked by b", |t| t.stats.frames_acked == 10);
    assert_eq!(ag.t.collector(), Some(addr_b));
    assert!(ag.t.stats.failovers >= 1, "{:?}", ag.t.stats);
    assert!(stored(&b) >= 5, "b stored {}", stored(&b));

    // While `a` is down, tries to go back fail and land on `b` again; nothing is lost.
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..3 {
        ag.send();
    }
    ag.drive("3 more acked while a is down", |t| {
        t.stats.frames_acked == 13 && t.collector() == Some(addr_b)
    });

    // 3. Restart `a` on its port: the agent comes back (everything is acked) and `a` stores
    // what follows.
    let a2 = start(&dir.join("a"), addr_a);
    let before_a2 = stored(&a2);
    let returns = ag.t.stats.returns;
    ag.drive("the agent to return to a", |t| {
        t.stats.returns > returns && t.collector() == Some(addr_a) && t.connected()
    });
    for _ in 0..4 {
        ag.send();
    }
    ag.drive("4 more frames acked by a", |t| t.stats.frames_acked == 17);
    assert_eq!(ag.t.collector(), Some(addr_a));
    assert_eq!(
        stored(&a2) - before_a2,
        4,
        "the restarted a stores the new frames"
    );
    // Every frame acked somewhere durable: 5 (a) + at least 8 (b) + 4 (a again).
    assert!(5 + stored(&b) + (stored(&a2) - before_a2) >= 17);
    assert_eq!(ag.t.stats.spool_dropped_frames, 0);
    a2.shutdown();
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
