//! Collector operations: topology reload (API and the SIGHUP path) without losing data, a broken
//! topology refused with its line number; a disk that refuses writes stops the acks, shows in
//! /metrics, and acking resumes with nothing lost when space returns.

mod collector_util;

use collector_util::*;
use nfm_wire::{DecodeOptions, Message, StreamDecoder};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

#[test]
fn collector_topology_reload_keeps_data_and_refuses_broken_files() {
    let dir = TempDir(tmp_dir("reload"));
    let topo = dir.0.join("topology.toml");
    let original = std::fs::read_to_string(TOPOLOGY).unwrap();
    std::fs::write(&topo, &original).unwrap();
    let mut s = settings(&dir.0);
    s.topology = Some(topo.clone());
    let c = start(&s);
    assert_eq!(
        send(
            "POST",
            &url(&c, "/api/monitors"),
            r#"{"name":"app","local":["vpc:vpc-app"]}"#
        )
        .0,
        201
    );
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    // 10.0.3.5 is in vpc-app but in no subnet yet: unclassified.
    udp.send_to(
        &batch(
            1,
            1,
            1,
            0,
            vec![record("10.0.1.10", "10.0.3.5", 100, 0)],
            None,
        ),
        to,
    )
    .unwrap();
    wait_for("the first interval", 15, || {
        let (_, v) = get(&url(&c, "/api/insights?from=0&to=1000000"));
        (v["totals"]["unclassified"]["records"] == 1).then_some(())
    });

    // A broken file: refused with its line, the old topology stays.
    let broken = original.replacen("az = \"use1-az2\"", "az = \"use1-az9\"", 1);
    std::fs::write(&topo, &broken).unwrap();
    let (code, v) = send("POST", &url(&c, "/api/topology/reload"), "");
    assert_eq!(code, 400);
    let line = broken.lines().position(|l| l.contains("use1-az9")).unwrap() + 1;
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("line {line}")) && msg.contains("unknown az"),
        "{msg}"
    );
    let (_, t) = get(&url(&c, "/api/topology"));
    assert_eq!(t["subnets"].as_array().unwrap().len(), 5);

    // A good file with a new subnet, loaded the SIGHUP way.
    let good = format!(
        "{original}\n[[subnet]]\nid = \"subnet-app-c\"\nvpc = \"vpc-app\"\naz = \"use1-az2\"\ncidr = \"10.0.3.0/24\"\n"
    );
    std::fs::write(&topo, good).unwrap();
    c.reload_topology();
    wait_for("the new subnet", 10, || {
        let (_, t) = get(&url(&c, "/api/topology"));
        (t["subnets"].as_array()?.len() == 6).then_some(())
    });
    let metrics = get_text(&url(&c, "/metrics"));
    assert!(
        metrics.contains("nfm_topology_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    udp.send_to(
        &batch(
            1,
            1,
            2,
            20_000,
            vec![record("10.0.1.10", "10.0.3.5", 50, 0)],
            None,
        ),
        to,
    )
    .unwrap();
    // The old interval is still there, and the new one is classified with the new subnet.
    wait_for("the second interval", 15, || {
        let (_, v) = get(&url(&c, "/api/insights?from=0&to=1000000"));
        (v["intervals"] == 2
            && v["totals"]["unclassified"]["records"] == 1
            && v["totals"]["inter-az"]["records"] == 1)
            .then_some(())
    });
    let (_, ov) = get(&url(&c, "/api/monitors/app/overview?from=0&to=1000000"));
    assert_eq!(ov["totals"]["data_transferred"], 150);
    c.shutdown();
}

/// Child of the disk-full test: runs in its own process because RLIMIT_FSIZE is per process.
#[test]
#[ignore = "child process of another test, run by it with --ignored"]
fn collector_disk_full_child() {
    let Ok(dir) = std::env::var("NFM_DISKFULL_CHILD_DIR") else {
        return; // not the child
    };
    let dir = std::path::PathBuf::from(dir);
    // SAFETY: ignoring SIGXFSZ makes an over-limit write fail with EFBIG instead of killing us.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut s = settings(&dir);
    s.idle_close_ms = 60_000;
    let c = start(&s);
    let mut tcp = TcpStream::connect(c.tcp_addr.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut dec = StreamDecoder::new(1 << 20);
    let mut acked = 0u64;
    let mut pump = |tcp: &mut TcpStream, dec: &mut StreamDecoder| {
        let _ = dec.read_from(tcp);
        while let Ok(Some(p)) = dec.next_packet(&DecodeOptions::default()) {
            if let Message::Ack(a) = p.message {
                acked = acked.max(a.seq);
            }
        }
        acked
    };
    let frame = |seq: u64| {
        batch(
            9,
            1,
            seq,
            0,
            vec![record("10.0.1.10", "10.0.2.10", 1000 + seq, 0)],
            None,
        )
    };
    for seq in 1..=5 {
        tcp.write_all(&frame(seq)).unwrap();
    }
    wait_for("acks while the disk has space", 10, || {
        (pump(&mut tcp, &mut dec) == 5).then_some(())
    });

    // "Fill the disk": no file may grow past its current size plus a few bytes.
    let wal = dir.join("wal");
    let biggest = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut old) };
    let tight = libc::rlimit {
        rlim_cur: biggest + 40,
        rlim_max: old.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &tight) }, 0);
    for seq in 6..=20 {
        tcp.write_all(&frame(seq)).unwrap();
    }
    wait_for("the store to report the stall", 10, || {
        get_text(&url(&c, "/metrics"))
            .contains("nfm_store_stalled 1")
            .then_some(())
    });
    // Stalled: nothing past 5 may be acked. Watch for a while (bounded) to be sure.
    for _ in 0..10 {
        assert_eq!(
            pump(&mut tcp, &mut dec),
            5,
            "no ack while the disk refuses writes"
        );
    }
    // Space returns.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &old) }, 0);
    wait_for("acks to resume", 20, || {
        (pump(&mut tcp, &mut dec) == 20).then_some(())
    });
    assert!(get_text(&url(&c, "/metrics")).contains("nfm_store_stalled 0"));
    c.flush_intervals();
    let v = wait_for("every batch aggregated once", 20, || {
        let (_, v) = get(&url(&c, "/api/insights?from=0&to=1000000"));
        (v["intervals"] == 1).then_some(v)
    });
    assert_eq!(v["totals"]["inter-az"]["records"], 20);
    assert_eq!(
        v["totals"]["inter-az"]["data_transferred"],
        (1..=20u64).map(|s| 1000 + s).sum::<u64>()
    );
    c.shutdown();
    std::fs::write(dir.join("child-ok"), "ok").unwrap();
}

#[test]
fn collector_disk_full_stops_acks_and_resumes() {
    let dir = TempDir(tmp_dir("diskfull"));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "collector_disk_full_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NFM_DISKFULL_CHILD_DIR", &dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success() && dir.0.join("child-ok").exists(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
