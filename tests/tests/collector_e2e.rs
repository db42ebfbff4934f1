//! Collector end to end: frames from nfm-wire over real UDP and TCP into a running collector,
//! answers checked through the HTTP API; dedupe of resends; bad frames refused and counted while
//! good traffic flows; SIGKILL during ingest loses no acked record and duplicates none.

mod collector_util;

use collector_util::*;
use nfm_wire::{DecodeOptions, Key, Message, StreamDecoder};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

/// Reads frames from a collector connection until `f` says stop or the timeout passes.
fn read_until(
    stream: &mut TcpStream,
    dec: &mut StreamDecoder,
    secs: u64,
    mut f: impl FnMut(Message) -> bool,
) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        while let Ok(Some(p)) = dec.next_packet(&DecodeOptions::default()) {
            if f(p.message) {
                return true;
            }
        }
        match dec.read_from(stream) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return false,
        }
    }
    false
}

/// Records that arrive after their interval closed (an agent's spool resent after an outage)
/// are added to that interval as a late amendment, counted, never judged, and still there after
/// a restart.
#[test]
fn collector_late_records_amend_their_interval() {
    let dir = TempDir(tmp_dir("late"));
    let s = settings(&dir.0);
    let c = start(&s);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    udp.send_to(&hello(7, 1, 0, None), to).unwrap();
    let on_time = record("10.0.1.10", "10.0.2.10", 1000, 1);
    udp.send_to(&batch(7, 1, 1, 0, vec![on_time], None), to)
        .unwrap();
    let bytes_of_interval_0 = |c: &nfm_collector::collector::Collector| {
        let (_, v) = get(&url(
            c,
            "/api/insights?metric=data-transferred&from=0&to=10000",
        ));
        v["contributors"][0]["value"].as_u64()
    };
    // Closed for idleness (300 ms), summarized.
    wait_for("interval 0", 15, || {
        (bytes_of_interval_0(&c)? == 1000).then_some(())
    });
    // The same flow again for interval 0, and another flow: both late.
    let late = vec![
        record("10.0.1.10", "10.0.2.10", 500, 2),
        record("10.0.1.10", "198.18.0.5", 70, 0),
    ];
    udp.send_to(&batch(7, 1, 2, 0, late, None), to).unwrap();
    wait_for("the late amendment", 15, || {
        (bytes_of_interval_0(&c)? == 1500).then_some(())
    });
    let metrics = get_text(&url(&c, "/metrics"));
    assert!(
        metrics.lines().any(|l| l == "nfm_records_late_total 2"),
        "{metrics}"
    );
    let (_, st) = get(&url(&c, "/api/status"));
    assert_eq!(st["intervals"], 1, "one interval, amended: {st}");
    let (_, ins) = get(&url(
        &c,
        "/api/insights?metric=retransmissions&from=0&to=10000",
    ));
    assert_eq!(ins["contributors"][0]["value"], 3);
    c.shutdown();

    // The history log holds the summary and its amendment; a restart folds them again.
    let c = start(&s);
    wait_for("replayed history", 15, || {
        (bytes_of_interval_0(&c)? == 1500).then_some(())
    });
    let (_, ins) = get(&url(
        &c,
        "/api/insights?metric=data-transferred&category=service&from=0&to=10000",
    ));
    assert_eq!(ins["contributors"][0]["value"], 70);
    c.shutdown();
}

fn agent(agents: &Value, id: u64) -> Option<&Value> {
    agents["agents"]
        .as_array()?
        .iter()
        .find(|a| a["agent_id"] == id)
}

#[test]
fn collector_udp_tcp_api_and_dedupe() {
    let dir = TempDir(tmp_dir("e2e"));
    let c = start(&settings(&dir.0));
    let (code, _) = send(
        "POST",
        &url(&c, "/api/monitors"),
        r#"{"name":"app","local":["subnet:subnet-app-a"],"remote":[]}"#,
    );
    assert_eq!(code, 201);

    // Agent 1 over UDP: inter-AZ flow 1000 bytes / 3 retrans, and a service flow.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    udp.send_to(&hello(1, 1, 0, None), to).unwrap();
    let b1 = batch(
        1,
        1,
        1,
        0,
        vec![
            record("10.0.1.10", "10.0.2.10", 1000, 3),
            record("10.0.1.10", "198.18.0.5", 70, 0),
        ],
        None,
    );
    udp.send_to(&b1, to).unwrap();

    // Agent 2 over TCP: intra-AZ flow 500 bytes / 1 retrans; acks come back after fsync.
    let mut tcp = TcpStream::connect(c.tcp_addr.unwrap()).unwrap();
    let b2 = batch(
        2,
        7,
        1,
        0,
        vec![record("10.0.1.20", "10.0.1.30", 500, 1)],
        None,
    );
    tcp.write_all(&hello(2, 7, 0, None)).unwrap();
    tcp.write_all(&b2).unwrap();
    let mut dec = StreamDecoder::new(1 << 20);
    let acked = read_until(
        &mut tcp,
        &mut dec,
        10,
        |m| matches!(m, Message::Ack(a) if a.epoch == 7 && a.seq == 1),
    );
    assert!(acked, "TCP batch acked");

    // Resends: the same frames again, over both transports.
    udp.send_to(&b1, to).unwrap();
    tcp.write_all(&b2).unwrap();
    let acked = read_until(
        &mut tcp,
        &mut dec,
        10,
        |m| matches!(m, Message::Ack(a) if a.seq == 1),
    );
    // The resend's ack is already given (ack only advances), so none is expected; what matters is
    // that the resends are counted as duplicates and not aggregated.
    let _ = acked;
    let agents = wait_for("both resends deduped", 10, || {
        let (_, v) = get(&url(&c, "/api/agents"));
        let d1 = agent(&v, 1)?["duplicates"].as_u64()?;
        let d2 = agent(&v, 2)?["duplicates"].as_u64()?;
        (d1 == 1 && d2 == 1).then_some(v)
    });
    let a1 = agent(&agents, 1).unwrap();
    assert_eq!(a1["frames"], 2);
    assert_eq!(a1["records"], 2);
    assert_eq!(a1["transport"], "udp");
    assert_eq!(a1["host_name"], "host-1");
    assert_eq!(agent(&agents, 2).unwrap()["transport"], "tcp");

    // The interval closes (idle) and the API answers.
    let ov = wait_for("the monitor's interval", 15, || {
        let (code, v) = get(&url(&c, "/api/monitors/app/overview?from=0&to=100000"));
        assert_eq!(code, 200);
        (!v["points"].as_array()?.is_empty()).then_some(v)
    });
    assert_eq!(ov["totals"]["data_transferred"], 1000 + 70 + 500);
    assert_eq!(ov["totals"]["retransmissions"], 4);
    assert_eq!(ov["totals"]["round_trip_time_us"], 500);
    assert_eq!(ov["points"][0]["health_indicator"], 0);

    let (_, ins) = get(&url(
        &c,
        "/api/insights?metric=retransmissions&from=0&to=100000&limit=5",
    ));
    assert_eq!(ins["contributors"][0]["remote"], "10.0.2.10");
    assert_eq!(ins["contributors"][0]["category"], "inter-az");
    assert_eq!(ins["contributors"][0]["value"], 3);
    assert_eq!(ins["contributors"][0]["path"][0], "host:web-1");
    let (_, ins) = get(&url(
        &c,
        "/api/insights?metric=data-transferred&category=service&from=0&to=100000",
    ));
    assert_eq!(ins["contributors"].as_array().unwrap().len(), 1);
    assert_eq!(
        ins["contributors"][0]["path"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "service:object-store"
    );
    let (_, topo) = get(&url(&c, "/api/monitors/app/topology?from=0&to=100000"));
    assert_eq!(topo["flows"].as_array().unwrap().len(), 3);
    let (_, hist) = get(&url(
        &c,
        "/api/monitors/app/history?metric=data-transferred&from=0&to=100000&bucket=60000",
    ));
    assert_eq!(
        hist["buckets"][0]["pairs"][0]["remote"],
        "subnet:subnet-app-b"
    );
    assert_eq!(get(&url(&c, "/api/monitors/nope/overview")).0, 404);
    assert_eq!(get(&url(&c, "/api/insights?metric=speed")).0, 400);
    let (_, v) = get(&url(&c, "/api/verdicts?from=0&to=100000"));
    assert!(v["verdicts"].is_array());

    let metrics = get_text(&url(&c, "/metrics"));
    assert!(
        metrics.contains("nfm_monitor_retransmissions_total{monitor=\"app\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("nfm_monitor_data_transferred_bytes_total{monitor=\"app\"} 1570"));
    assert!(metrics.contains("nfm_frames_duplicate_total 2"));
    // Idle now: every actor that allocated for these frames hands its freed memory back
    // (issue 16 item 4; mimalloc frees a thread's empty pages only from that thread).
    for actor in ["ingest", "resolver", "aggregator", "health", "store"] {
        let line = format!("nfm_memory_trims_total{{actor=\"{actor}\"}} ");
        wait_for(&format!("{actor} trims when idle"), 10, || {
            let m = get_text(&url(&c, "/metrics"));
            let n: u64 = m
                .lines()
                .find_map(|l| l.strip_prefix(&line))?
                .parse()
                .ok()?;
            (n > 0).then_some(())
        });
    }
    c.shutdown();
}

#[test]
fn collector_bad_frames_rejected_and_counted_while_good_traffic_flows() {
    let dir = TempDir(tmp_dir("bad"));
    let keyfile = dir.0.join("keys");
    std::fs::write(
        &keyfile,
        "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .unwrap();
    let key = Key::new(1, (0u8..32).collect::<Vec<u8>>());
    let forger = Key::new(1, vec![0xeeu8; 32]);
    let mut s = settings(&dir.0);
    s.key_file = Some(keyfile);
    s.max_frame_len = 64 * 1024;
    let c = start(&s);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    let good = |seq| {
        batch(
            5,
            1,
            seq,
            0,
            vec![record("10.0.1.10", "10.0.2.10", 100, 0)],
            Some(&key),
        )
    };
    udp.send_to(&hello(5, 1, 0, Some(&key)), to).unwrap();
    let mut corrupted = good(100);
    let n = corrupted.len();
    corrupted[n / 2] ^= 0x40;
    let truncated = good(101)[..n - 9].to_vec();
    let forged = batch(
        5,
        1,
        102,
        0,
        vec![record("10.0.1.10", "10.0.2.10", 1, 0)],
        Some(&forger),
    );
    let unsigned = batch(
        5,
        1,
        103,
        0,
        vec![record("10.0.1.10", "10.0.2.10", 1, 0)],
        None,
    );
    // Oversized: a valid header declaring a 1 MiB body (over the 64 KiB limit).
    let mut oversized = good(104);
    oversized[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let bad: [(&[u8], &str); 5] = [
        (&corrupted, "bad_crc"),
        (&truncated, "truncated"),
        (&forged, "bad_auth_tag"),
        (&unsigned, "unsigned"),
        (&oversized, "too_large"),
    ];
    for (i, (bytes, _)) in bad.iter().enumerate() {
        udp.send_to(&good(1 + i as u64), to).unwrap();
        udp.send_to(bytes, to).unwrap();
    }
    udp.send_to(&good(6), to).unwrap();
    // A replay of an accepted frame is dropped (deduped), not counted as new data.
    udp.send_to(&good(1), to).unwrap();

    // TCP garbage: an Error frame comes back, then the connection closes.
    let mut tcp = TcpStream::connect(c.tcp_addr.unwrap()).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef0123456789abcdef")
        .unwrap();
    let mut dec = StreamDecoder::new(1 << 20);
    let mut reason = String::new();
    let got_error = read_until(&mut tcp, &mut dec, 10, |m| match m {
        Message::Error(e) => {
            reason = e.reason;
            true
        }
        _ => false,
    });
    assert!(got_error, "an Error frame before the close");
    assert_eq!(reason, "bad_magic");
    let mut rest = Vec::new();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        tcp.read_to_end(&mut rest).map(|_| ()).ok(),
        Some(()),
        "connection closed by the collector"
    );

    let v = wait_for("rejects counted", 10, || {
        let (_, v) = get(&url(&c, "/api/agents"));
        let total: u64 = v["rejected"]
            .as_object()?
            .values()
            .filter_map(Value::as_u64)
            .sum();
        let frames = agent(&v, 5)?["frames"].as_u64()?;
        (total == 6 && frames == 7).then_some(v)
    });
    for (_, reason) in bad {
        assert_eq!(v["rejected"][reason], 1, "{reason}: {v}");
    }
    assert_eq!(v["rejected"]["bad_magic"], 1);
    let a = agent(&v, 5).unwrap();
    assert_eq!(a["duplicates"], 1);
    // Per agent: the frames whose header names agent 5 and could be read.
    assert!(
        a["rejected"]["bad_crc"] == 1 && a["rejected"]["bad_auth_tag"] == 1,
        "{a}"
    );
    // The six good batches made it through to the API.
    let ins = wait_for("good traffic aggregated", 15, || {
        let (_, v) = get(&url(&c, "/api/insights?from=0&to=100000"));
        (v["intervals"].as_u64()? >= 1).then_some(v)
    });
    assert_eq!(ins["contributors"][0]["value"], 600);
    let metrics = get_text(&url(&c, "/metrics"));
    assert!(
        metrics.contains("nfm_frames_rejected_total{reason=\"bad_auth_tag\"} 1"),
        "{metrics}"
    );
    c.shutdown();
}

/// Child side of the SIGKILL test: runs a collector on the data dir named by the environment,
/// writes its addresses to a file, and waits to be killed (at most 300 s).
#[test]
#[ignore = "child process of another test, run by it with --ignored"]
fn collector_sigkill_child() {
    let Ok(dir) = std::env::var("NFM_SIGKILL_CHILD_DIR") else {
        return; // not the child
    };
    let mut s = settings(std::path::Path::new(&dir));
    // Long enough that the interval cannot close between the replay of the WAL at start and
    // the agent's resend on a loaded machine (a record arriving after its interval closed is
    // durable but late: summarized as a late amendment, never judged).
    s.idle_close_ms = std::env::var("NFM_SIGKILL_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000);
    s.top_k = 10_000;
    s.max_flows_per_agent = 1_000_000;
    // This test is about the store; 200k flows in one interval would also make it wait on the
    // health evaluator's speed.
    s.health = false;
    let c = start(&s);
    let addrs = format!("{} {}\n", c.tcp_addr.unwrap(), c.http_addr.unwrap());
    let tmp = std::path::Path::new(&dir).join("addrs.tmp");
    std::fs::write(&tmp, addrs).unwrap();
    std::fs::rename(&tmp, std::path::Path::new(&dir).join("addrs")).unwrap();
    std::thread::sleep(Duration::from_secs(300));
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &std::path::Path) -> (Child, String, String) {
    spawn_child_idle(dir, 15_000)
}

fn spawn_child_idle(dir: &std::path::Path, idle_ms: u64) -> (Child, String, String) {
    let _ = std::fs::remove_file(dir.join("addrs"));
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "collector_sigkill_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NFM_SIGKILL_CHILD_DIR", dir)
        .env("NFM_SIGKILL_IDLE_MS", idle_ms.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    let text = wait_for("the child collector's addresses", 30, || {
        std::fs::read_to_string(dir.join("addrs")).ok()
    });
    let mut it = text.split_whitespace();
    let (tcp, http) = (
        it.next().unwrap().to_string(),
        it.next().unwrap().to_string(),
    );
    (child, tcp, http)
}

const FLOWS: u64 = 200_000;
/// Each sequence number its own flow: (local, remote, port) unique per frame.
fn flow_record(seq: u64) -> nfm_wire::FlowRecord {
    let mut r = record(
        &format!("10.0.1.{}", seq % 250 + 1),
        &format!("10.0.2.{}", (seq / 250) % 250 + 1),
        flow_bytes(seq),
        1,
    );
    r.remote_port = 443 + (seq / 62_500) as u16;
    r
}
fn flow_bytes(seq: u64) -> u64 {
    1_000_000 + seq
}

#[test]
fn collector_sigkill_during_ingest_keeps_every_acked_record_once() {
    let dir = TempDir(tmp_dir("sigkill"));
    let (child, tcp_addr, _) = spawn_child(&dir.0);
    let mut tcp = TcpStream::connect(&tcp_addr).unwrap();
    tcp.write_all(&hello(42, 3, 0, None)).unwrap();
    // One record per frame, each its own flow, all in one interval.
    let frame = |seq: u64| batch(42, 3, seq, 0, vec![flow_record(seq)], None);
    // Write everything, then kill once some acks have come back.
    let mut writer = tcp.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        for seq in 1..=FLOWS {
            if writer.write_all(&frame(seq)).is_err() {
                break;
            }
        }
    });
    let mut dec = StreamDecoder::new(1 << 20);
    let mut acked = 0u64;
    read_until(&mut tcp, &mut dec, 30, |m| {
        if let Message::Ack(a) = m {
            acked = acked.max(a.seq);
        }
        acked >= FLOWS / 50
    });
    assert!(
        acked >= FLOWS / 50,
        "acks arrive before the kill (got {acked})"
    );
    // SIGKILL: no shutdown, no flush.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    drop(child);
    let _ = w.join();
    // Acks that were already in the socket buffer count too.
    read_until(&mut tcp, &mut dec, 1, |m| {
        if let Message::Ack(a) = m {
            acked = acked.max(a.seq);
        }
        false
    });
    drop(tcp);

    // Restart on the same data dir; the agent resends everything after its last ack, as an
    // agent with a spool does (frames the store had made durable but not acked are deduped).
    let (_child2, tcp_addr, http) = spawn_child(&dir.0);
    let mut tcp = TcpStream::connect(&tcp_addr).unwrap();
    tcp.write_all(&hello(42, 3, 0, None)).unwrap();
    for seq in acked + 1..=FLOWS {
        tcp.write_all(&frame(seq)).unwrap();
    }
    let mut dec = StreamDecoder::new(1 << 20);
    let mut last = 0;
    let all = acked == FLOWS
        || read_until(&mut tcp, &mut dec, 30, |m| {
            if let Message::Ack(a) = m {
                last = a.seq;
            }
            last == FLOWS
        });
    assert!(
        acked < FLOWS,
        "the kill came before the last ack (else the test proves nothing)"
    );
    assert!(
        all,
        "all acked after restart (acked {acked} before the kill, {last} after)"
    );

    // Every record is there exactly once: FLOWS flows, each with its own bytes.
    let ins = wait_for("the interval to close with every record", 120, || {
        let (_, v) = get(&format!(
            "http://{http}/api/insights?from=0&to=100000&limit=1000"
        ));
        if std::env::var("NFM_DEBUG").is_ok() {
            eprintln!("totals {} intervals {}", v["totals"], v["intervals"]);
        }
        let total = v["totals"]["inter-az"]["records"].as_u64()?;
        (total >= FLOWS).then_some(v)
    });
    assert_eq!(
        ins["totals"]["inter-az"]["records"], FLOWS,
        "no record twice: {}",
        ins["totals"]
    );
    let expected_bytes: u64 = (1..=FLOWS).map(flow_bytes).sum();
    assert_eq!(
        ins["totals"]["inter-az"]["data_transferred"],
        expected_bytes
    );
    for c in ins["contributors"].as_array().unwrap() {
        let b = c["value"].as_u64().unwrap();
        assert!(
            (flow_bytes(1)..=flow_bytes(FLOWS)).contains(&b),
            "a flow holds exactly one record: {c}"
        );
    }
    let (_, agents) = get(&format!("http://{http}/api/agents"));
    eprintln!(
        "acked before kill: {acked}; duplicates after restart: {}",
        agent(&agents, 42).unwrap()["duplicates"]
    );
}

/// Acked late records survive SIGKILL (issue 19 item 2): an interval's summary is durable, then
/// late records for it arrive and are acked (durable in the WAL) while their amendment is still
/// open; the collector is killed. After the restart they are in the interval exactly once —
/// replay re-aggregates the WAL batches its summary does not hold (they used to be skipped
/// because the interval had a summary, and the agent's resend was deduplicated) — and resending
/// them changes nothing.
#[test]
fn collector_sigkill_keeps_acked_late_records_once() {
    let dir = TempDir(tmp_dir("sigkill-late"));
    // Idle close far off: only the watermark closes the on-time interval, and the amendment
    // is still open when the kill comes.
    let (child, tcp_addr, http) = spawn_child_idle(&dir.0, 5_000);
    let mut tcp = TcpStream::connect(&tcp_addr).unwrap();
    tcp.write_all(&hello(9, 1, 0, None)).unwrap();
    let rec = |i: u64| flow_record(i);
    // Interval 0, on time; then interval 20 s, whose end moves the watermark past 0's close.
    tcp.write_all(&batch(9, 1, 1, 0, vec![rec(1)], None))
        .unwrap();
    tcp.write_all(&batch(9, 1, 2, 20_000, vec![rec(2)], None))
        .unwrap();
    let records_of_0 = |http: &str| {
        let (_, v) = get(&format!(
            "http://{http}/api/insights?from=0&to=10000&limit=1000"
        ));
        v["totals"]["inter-az"]["records"].as_u64()
    };
    wait_for("interval 0's summary", 30, || {
        (records_of_0(&http)? == 1).then_some(())
    });
    // 40 late frames for interval 0, each its own flow; wait for every ack (durable).
    const LATE: u64 = 40;
    for seq in 3..3 + LATE {
        tcp.write_all(&batch(9, 1, seq, 0, vec![rec(seq)], None))
            .unwrap();
    }
    let mut dec = StreamDecoder::new(1 << 20);
    let mut acked = 0;
    assert!(
        read_until(&mut tcp, &mut dec, 30, |m| {
            if let Message::Ack(a) = m {
                acked = acked.max(a.seq);
            }
            acked == 2 + LATE
        }),
        "every late frame acked (last ack {acked})"
    );
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    drop(child);
    drop(tcp);

    let (_child2, tcp_addr, http) = spawn_child_idle(&dir.0, 5_000);
    let want: u64 = 1 + LATE;
    let bytes: u64 = std::iter::once(1).chain(3..3 + LATE).map(flow_bytes).sum();
    let check = |http: &str| {
        let (_, v) = get(&format!(
            "http://{http}/api/insights?from=0&to=10000&limit=1000"
        ));
        let t = &v["totals"]["inter-az"];
        Some((t["records"].as_u64()?, t["data_transferred"].as_u64()?))
    };
    let got = wait_for("the late records after the restart", 60, || {
        check(&http).filter(|&(r, _)| r >= want)
    });
    assert_eq!(got, (want, bytes), "every acked late record, once");
    // The agent resends them (as one that lost the acks would): duplicates, nothing counted.
    let mut tcp = TcpStream::connect(&tcp_addr).unwrap();
    tcp.write_all(&hello(9, 1, 0, None)).unwrap();
    for seq in 3..3 + LATE {
        tcp.write_all(&batch(9, 1, seq, 0, vec![rec(seq)], None))
            .unwrap();
    }
    let mut dec = StreamDecoder::new(1 << 20);
    let mut last = 0;
    assert!(read_until(&mut tcp, &mut dec, 30, |m| {
        if let Message::Ack(a) = m {
            last = last.max(a.seq);
        }
        last == 2 + LATE
    }));
    // The agent table is published periodically: wait for it to show the resends.
    wait_for("the resends counted as duplicates", 30, || {
        let (_, agents) = get(&format!("http://{http}/api/agents"));
        (agent(&agents, 9)?["duplicates"].as_u64()? == LATE).then_some(())
    });
    // Still once, also after an amendment of the resends would have closed.
    std::thread::sleep(Duration::from_millis(5_500));
    assert_eq!(check(&http), Some((want, bytes)));
}
