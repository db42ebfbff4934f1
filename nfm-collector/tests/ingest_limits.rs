//! Hostile clients on the ingest TCP port (issue 19 items 5 and 6), against a real ingest loop
//! on loopback with scaled-down limits and a stand-in store that makes every batch durable at
//! once: idle and partial-frame connections are closed on time, partial frames stay within the
//! buffer budget, idle connections cannot keep an agent out, and Hello floods with random agent
//! ids cannot fill the agent table.

use nfm_collector::ingest::{IngestConfig, IngestControl, IngestCore, IngestLoop, IngestSockets};
use nfm_collector::metrics::{Metrics, TcpClose};
use nfm_collector::pipeline::{ApiMsg, ResolverMsg, StoreMsg, StoreReply};
use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Hello, Message, StreamDecoder};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Ingest {
    tcp: SocketAddr,
    metrics: Arc<Metrics>,
    ctl: Sender<IngestControl>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.ctl.send(IngestControl::Shutdown);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An ingest loop on 127.0.0.1; the store acks every batch at once, the resolver and API
/// channels are drained.
fn start(cfg: IngestConfig) -> Ingest {
    let metrics = Arc::new(Metrics::default());
    let sockets = IngestSockets::bind(None, Some("127.0.0.1:0".parse().unwrap()), 1 << 20).unwrap();
    let tcp = sockets.tcp_addr().unwrap();
    let waker = sockets.waker.clone();
    let (to_resolver, resolver_rx) = sync_channel::<ResolverMsg>(64);
    let (to_store, store_rx) = sync_channel::<StoreMsg>(64);
    let (to_api, api_rx) = sync_channel::<ApiMsg>(64);
    let (reply_tx, reply_rx) = channel();
    let (ctl, ctl_rx) = channel();
    std::thread::spawn(move || while resolver_rx.recv().is_ok() {});
    std::thread::spawn(move || while api_rx.recv().is_ok() {});
    let w = waker.clone();
    std::thread::spawn(move || {
        while let Ok(m) = store_rx.recv() {
            if let StoreMsg::Batches(b) = m {
                let ids = b.iter().map(|b| (b.agent_id, b.epoch, b.seq)).collect();
                let _ = reply_tx.send(StoreReply::Durable(ids));
                let _ = w.wake();
            }
        }
    });
    let core = IngestCore::new(cfg, to_resolver, to_store, metrics.clone());
    let ingest = IngestLoop::new(sockets, core, reply_rx, to_api, ctl_rx, metrics.clone());
    let thread = Some(std::thread::spawn(move || ingest.run()));
    Ingest {
        tcp,
        metrics,
        ctl,
        waker,
        thread,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hello(agent: u64) -> Vec<u8> {
    let h = Header {
        agent_id: agent,
        epoch: 1,
        seq: 0,
    };
    let m = Message::Hello(Hello {
        host_name: format!("host-{agent}"),
        interval_ms: 5_000,
        ..Default::default()
    });
    encode_to_vec(&h, &m, None)
}

fn batch(agent: u64, seq: u64, records: usize) -> Vec<u8> {
    let end = now_ms() / 5_000 * 5_000;
    let h = Header {
        agent_id: agent,
        epoch: 1,
        seq,
    };
    let m = Message::FlowBatch(FlowBatch {
        interval_start_ms: end - 5_000,
        interval_end_ms: end,
        records: vec![FlowRecord::default(); records],
    });
    encode_to_vec(&h, &m, None)
}

/// Polls `f` (bounded) until it holds.
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True once the server has closed the connection (bounded by the read timeout).
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an Error frame first, perhaps
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

fn closed(m: &Metrics, why: TcpClose) -> u64 {
    m.tcp_closed[why as usize].load(Ordering::Relaxed)
}

/// Waits for an Ack of `seq` on `s`.
fn acked(s: &mut TcpStream, seq: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut dec = StreamDecoder::new(1 << 20);
    let opts = nfm_wire::DecodeOptions::default();
    loop {
        match dec.next_packet(&opts) {
            Ok(Some(p)) => {
                if matches!(p.message, Message::Ack(a) if a.seq >= seq) {
                    return true;
                }
                continue;
            }
            Ok(None) => {}
            Err(_) => return false,
        }
        match dec.read_from(s) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Regression (issue 19 item 5): connections that never send a frame stayed open forever
/// (20,200 of them used every descriptor). Now they are closed at the handshake timeout.
#[test]
fn silent_connections_are_closed_at_the_handshake_timeout() {
    let ing = start(IngestConfig {
        tcp_handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let mut conns: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(ing.tcp).unwrap())
        .collect();
    for c in &mut conns {
        assert!(closed_by_server(c, Duration::from_secs(5)));
    }
    assert_eq!(closed(&ing.metrics, TcpClose::Handshake), 5);
}

/// Regression (issue 19 item 5): 300 connections each holding a frame 100 bytes short took
/// RSS from 52 to 681 MiB and stayed open. Now partial frames are charged to a buffer budget
/// (the oldest closed beyond it) and closed at the partial-frame timeout.
#[test]
fn partial_frames_stay_within_the_budget_and_time_out() {
    let budget = 3 << 20;
    let ing = start(IngestConfig {
        buffer_budget: budget,
        tcp_partial_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    let big = batch(9, 1, 60_000);
    assert!(big.len() > 700_000, "{}", big.len());
    let short = &big[..big.len() - 100];
    let mut conns = Vec::new();
    for i in 0..8u64 {
        let mut c = TcpStream::connect(ing.tcp).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&hello(100 + i)).unwrap();
        let _ = c.write_all(short); // may fail once the server closed it for the budget
        conns.push(c);
        let held = ing.metrics.ingest_buffered_bytes.load(Ordering::Relaxed);
        assert!(held <= budget as u64, "{held} bytes held, budget {budget}");
    }
    wait_until("budget closes", 10, || {
        closed(&ing.metrics, TcpClose::Budget) >= 4
    });
    // Every connection is closed in the end (budget or partial-frame timeout), and nothing is
    // held any more.
    for c in &mut conns {
        assert!(closed_by_server(c, Duration::from_secs(5)));
    }
    wait_until("buffers released", 5, || {
        ing.metrics.ingest_buffered_bytes.load(Ordering::Relaxed) == 0
    });
    assert!(closed(&ing.metrics, TcpClose::Partial) >= 1);
    assert_eq!(
        closed(&ing.metrics, TcpClose::Budget) + closed(&ing.metrics, TcpClose::Partial),
        8
    );
}

/// Regression (issue 19 item 5): with every connection slot held by idle connections, a new
/// agent got no answer. Now the oldest connection that never sent a valid frame makes room.
#[test]
fn idle_connections_cannot_keep_an_agent_out() {
    let ing = start(IngestConfig {
        max_connections: 4,
        tcp_handshake_timeout: Duration::from_secs(60),
        ..Default::default()
    });
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(ing.tcp).unwrap())
        .collect();
    wait_until("idle connections accepted", 5, || {
        // The loop publishes its connection count every 250 ms.
        ing.metrics.tcp_connections.load(Ordering::Relaxed) == 4
    });
    let mut agent = TcpStream::connect(ing.tcp).unwrap();
    agent.write_all(&hello(7)).unwrap();
    agent.write_all(&batch(7, 1, 3)).unwrap();
    assert!(acked(&mut agent, 1), "the agent got no Ack");
    assert_eq!(closed(&ing.metrics, TcpClose::Evicted), 1);
    drop(idle);
}

#[test]
fn connection_cap_stays_below_the_descriptor_limit() {
    use nfm_collector::ingest::{connection_cap, FD_RESERVE};
    assert_eq!(connection_cap(50_000, Some(20_000)), 20_000 - FD_RESERVE);
    assert_eq!(connection_cap(1_000, Some(20_000)), 1_000);
    assert_eq!(connection_cap(50_000, None), 50_000);
    assert_eq!(connection_cap(50_000, Some(10)), 1);
}
