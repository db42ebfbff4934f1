//! Intervals close on time for a live fleet (issue 12): agents whose clocks disagree by up to a
//! second report the interval that just ended, and the collector's summary of it is in the API
//! within one interval + 1 s of its end, by the collector's own clock, without waiting for the
//! next interval's records or for idleness.

mod collector_util;

use collector_util::*;
use nfm_wire::{encode_to_vec, FlowBatch, Header, Message};
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn batch_at(agent: u64, seq: u64, (s, e): (u64, u64), bytes: u64) -> Vec<u8> {
    encode_to_vec(
        &Header {
            agent_id: agent,
            epoch: 1,
            seq,
        },
        &Message::FlowBatch(FlowBatch {
            interval_start_ms: s,
            interval_end_ms: e,
            records: vec![record("10.0.1.10", "10.0.2.10", bytes, 0)],
        }),
        None,
    )
}

#[test]
fn collector_closes_a_live_interval_on_time() {
    const T: u64 = 5_000; // the agent's default interval
    let dir = TempDir(tmp_dir("on-time"));
    let s = nfm_collector::collector::Settings {
        // Idleness and the watermark cannot be what closes it.
        idle_close_ms: 60_000,
        interval_ms: T,
        ..settings(&dir.0)
    };
    let c = start(&s);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    for a in [1, 2] {
        udp.send_to(&hello(a, 1, 0, None), to).unwrap();
    }
    // Agents send an interval when it ends: wait for the next boundary of the wall clock (the
    // event under test is tied to it), then report the interval that just ended.
    let now = wall_ms();
    let end = (now / T + 1) * T;
    std::thread::sleep(Duration::from_millis(end + 100 - now));
    // Agent 1's clock is right; agent 2's runs 700 ms ahead (it stamps the same interval 700 ms
    // later and sends it 700 ms earlier than it would with a right clock: now).
    udp.send_to(&batch_at(1, 1, (end - T, end), 1_000), to)
        .unwrap();
    udp.send_to(&batch_at(2, 1, (end - T + 700, end + 700), 234), to)
        .unwrap();
    let q = format!(
        "/api/insights?metric=data-transferred&from={}&to={end}",
        end - T
    );
    let seen_at = wait_for("the interval's summary", 30, || {
        let (_, v) = get(&url(&c, &q));
        let total: u64 = v["contributors"]
            .as_array()?
            .iter()
            .filter_map(|x| x["value"].as_u64())
            .sum();
        (total > 0).then(|| (wall_ms(), total))
    });
    // Both agents' records landed in one interval, and it was served by end + T + 1 s.
    assert_eq!(seen_at.1, 1_234, "both agents in one interval");
    let late_by = seen_at.0 - end;
    eprintln!("summary of the interval ending at {end} visible {late_by} ms after its end");
    assert!(
        late_by <= T + 1_000,
        "summary of the interval ending at {end} appeared {late_by} ms after its end"
    );
    let (_, st) = get(&url(&c, "/api/status"));
    assert_eq!(st["intervals"], 1, "{st}");
    c.shutdown();
}
