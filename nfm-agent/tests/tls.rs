//! The agent's TCP stream over TLS (issue 15 item 5), end to end without the kernel: the
//! agent's real `Transport` in a mio loop of its own, shipping a Hello and a FlowBatch to an
//! in-process collector with `ingest_tls`. The right CA delivers (the frame is acked, so the
//! collector received and stored it); a wrong CA is refused and counted on both sides; a
//! plain-text agent on the TLS port is refused and counted; nothing reaches the store then.

use mio::{Events, Poll};
use nfm_agent::tls::TlsClient;
use nfm_agent::transport::{Kind, Transport, COLLECTOR};
use nfm_collector::collector::{Collector, Settings};
use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Hello, Message};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("nfm-agent-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// Writes a self-signed certificate for 127.0.0.1 as `name.crt` / `name.key`.
fn cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (crt, key)
}

fn collector(dir: &Path, tls: bool) -> Collector {
    let (crt, key) = cert(dir, "collector");
    let s = Settings {
        listen_udp: None,
        listen_tcp: Some("127.0.0.1:0".parse().unwrap()),
        http: None,
        data_dir: dir.join("data"),
        tls_cert: tls.then_some(crt),
        tls_key: tls.then_some(key),
        ingest_tls: tls,
        interval_ms: 10_000,
        ..Settings::default()
    };
    Collector::start(&s).expect("collector starts")
}

const AGENT: u64 = 0x7151;
const EPOCH: u32 = 3;

fn frames() -> (Vec<u8>, Vec<u8>) {
    let h = |seq| Header {
        agent_id: AGENT,
        epoch: EPOCH,
        seq,
    };
    let hello = encode_to_vec(
        &h(0),
        &Message::Hello(Hello {
            host_name: "tls-test".into(),
            agent_version: "test".into(),
            interval_ms: 10_000,
            ..Default::default()
        }),
        None,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now / 10_000 * 10_000;
    let rec = |remote: &str| FlowRecord {
        local: "10.0.1.10".parse().unwrap(),
        remote: remote.parse().unwrap(),
        remote_port: 443,
        bytes_sent: 1000,
        ..Default::default()
    };
    let batch = encode_to_vec(
        &h(1),
        &Message::FlowBatch(FlowBatch {
            interval_start_ms: start,
            interval_end_ms: start + 10_000,
            records: vec![rec("10.0.2.10"), rec("10.0.2.11")],
        }),
        None,
    );
    (hello, batch)
}

/// Runs the transport's loop until `done` or `secs` pass; returns whether `done` held.
fn drive(t: &mut Transport, secs: u64, done: impl Fn(&Transport) -> bool) -> bool {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    let (hello, batch) = frames();
    t.set_hello(hello);
    t.send(poll.registry(), 1, 2, batch);
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        t.on_tick(poll.registry(), Instant::now());
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            if ev.token() == COLLECTOR {
                t.on_event(poll.registry(), ev);
            }
        }
        if done(t) {
            return true;
        }
    }
    false
}

fn transport(c: &Collector, tls: Option<TlsClient>) -> Transport {
    Transport::new(
        Kind::Tcp,
        vec![c.tcp_addr.unwrap()],
        AGENT,
        EPOCH,
        1 << 20,
        None,
    )
    .with_tls(tls)
}

#[test]
fn test_right_ca_delivers_and_the_collector_acks() {
    let d = tmp("right");
    let c = collector(&d.0, true);
    let ca = TlsClient::load(&d.0.join("collector.crt"), None).unwrap();
    let mut t = transport(&c, Some(ca));
    let acked = drive(&mut t, 20, |t| t.stats.frames_acked >= 1 && t.drained());
    assert!(acked, "not acked: {:?}", t.stats);
    assert_eq!(t.stats.tls_errors, 0);
    assert_eq!(c.metrics.records_received.load(Ordering::Relaxed), 2);
    assert_eq!(c.metrics.frames_tcp.load(Ordering::Relaxed), 2);
    c.shutdown();
}

#[test]
fn test_wrong_ca_is_refused_and_counted_on_both_sides() {
    let d = tmp("wrong");
    let c = collector(&d.0, true);
    let (other, _) = cert(&d.0, "other");
    let mut t = transport(&c, Some(TlsClient::load(&other, None).unwrap()));
    let tls = c.tls.clone().unwrap();
    let refused = drive(&mut t, 20, |t| {
        t.stats.tls_errors >= 1 && tls.counters.ingest_errors.load(Ordering::Relaxed) >= 1
    });
    assert!(refused, "{:?}", t.stats);
    assert_eq!(t.stats.frames_acked, 0);
    assert!(
        !t.drained(),
        "the frame stays spooled for a later connection"
    );
    assert_eq!(c.metrics.records_received.load(Ordering::Relaxed), 0);
    // The refused agent did not stop ingest: one with the right CA still delivers.
    let ca = TlsClient::load(&d.0.join("collector.crt"), None).unwrap();
    let mut good = transport(&c, Some(ca));
    assert!(drive(&mut good, 20, |t| t.stats.frames_acked >= 1 && t.drained()));
    assert_eq!(c.metrics.records_received.load(Ordering::Relaxed), 2);
    c.shutdown();
}

#[test]
fn test_plain_agent_on_the_tls_port_is_refused_and_counted() {
    let d = tmp("plain");
    let c = collector(&d.0, true);
    let mut t = transport(&c, None);
    let tls = c.tls.clone().unwrap();
    let refused = drive(&mut t, 20, |_| {
        tls.counters.ingest_errors.load(Ordering::Relaxed) >= 1
    });
    assert!(refused);
    assert_eq!(t.stats.frames_acked, 0);
    assert_eq!(c.metrics.records_received.load(Ordering::Relaxed), 0);
    c.shutdown();
}

#[test]
fn test_tls_agent_on_a_plain_port_fails_cleanly() {
    let d = tmp("plainport");
    let c = collector(&d.0, false);
    let ca = TlsClient::load(&d.0.join("collector.crt"), None).unwrap();
    let mut t = transport(&c, Some(ca));
    assert!(
        drive(&mut t, 20, |t| t.stats.tls_errors >= 1),
        "{:?}",
        t.stats
    );
    assert_eq!(t.stats.frames_acked, 0);
    c.shutdown();
}

#[test]
fn test_ca_file_errors_are_clear() {
    let d = tmp("cafile");
    let e = TlsClient::load(&d.0.join("missing.pem"), None).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    std::fs::write(d.0.join("empty.pem"), "nothing here").unwrap();
    let e = TlsClient::load(&d.0.join("empty.pem"), None).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}
