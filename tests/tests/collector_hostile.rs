//! Hostile input against a whole in-process collector (issue 19): a batch stamped in the future
//! must not blind the collector, live or after a restart, and a restarted agent whose new
//! epoch is numerically lower must not be locked out, while captured frames of its earlier
//! session stay refused across a collector restart.

mod collector_util;

use collector_util::*;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn rejected(c: &nfm_collector::collector::Collector, reason: &str) -> u64 {
    let (_, v) = get(&url(c, "/api/agents"));
    v["rejected"][reason].as_u64().unwrap_or(0)
}

/// Regression (issue 19 item 1): one FlowBatch stamped 10 years ahead closed every open
/// interval; good agents' records then arrived "late", also after a restart. Now it is refused
/// (`future_interval`) and the good agent's intervals close on time, before and after a restart.
#[test]
fn collector_future_batch_does_not_blind_it_live_or_after_restart() {
    let dir = TempDir(tmp_dir("future"));
    let s = settings(&dir.0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = now_ms() / 10_000 * 10_000 - 120_000;
    for round in 0..2u64 {
        let c = start(&s);
        let to = c.udp_addr.unwrap();
        let decade = 10 * 365 * 86_400_000u64;
        let future = batch(
            66,
            1,
            round,
            now_ms() + decade,
            vec![record("10.0.1.10", "10.0.2.10", 5, 0)],
            None,
        );
        udp.send_to(&future, to).unwrap();
        // Refused (or, as before the fix, aggregated and its interval closed by idleness).
        wait_for("the future batch handled", 10, || {
            let closed = c.metrics.aggregated_records.load(Ordering::Relaxed) >= 1
                && c.metrics.open_intervals.load(Ordering::Relaxed) == 0;
            (rejected(&c, "future_interval") == 1 || closed).then_some(())
        });
        let before = c.metrics.aggregated_records.load(Ordering::Relaxed);
        // The good agent's intervals after it: aggregated on time, none late.
        let start_ms = t0 + round * 20_000;
        for (i, seq) in [(0u64, 2 * round), (1, 2 * round + 1)] {
            let b = batch(
                1,
                1,
                seq,
                start_ms + i * 10_000,
                vec![record("10.0.1.10", "10.0.2.10", 1_000, 0)],
                None,
            );
            udp.send_to(&b, to).unwrap();
        }
        wait_for("both intervals handled", 20, || {
            let m = &c.metrics;
            let handled = m.aggregated_records.load(Ordering::Relaxed)
                + m.too_late_records.load(Ordering::Relaxed)
                - before;
            (handled >= 2 && m.open_intervals.load(Ordering::Relaxed) == 0).then_some(())
        });
        assert_eq!(c.metrics.too_late_records.load(Ordering::Relaxed), 0);
        assert_eq!(c.metrics.late_records.load(Ordering::Relaxed), 0);
        assert_eq!(rejected(&c, "future_interval"), 1);
        let (_, v) = get(&url(
            &c,
            &format!("/api/verdicts?from={start_ms}&to={}", start_ms + 20_000),
        ));
        assert!(v["verdicts"].is_array(), "{v}");
        c.shutdown();
    }
}

/// Regression (issue 19 item 3): a restarted agent whose new epoch was numerically lower had
/// every frame refused as `replayed`; and after a collector restart captured frames were
/// accepted again. Now the restart is recognised by time, and replays stay refused after the
/// collector restarts.
#[test]
fn collector_restarted_agent_with_lower_epoch_is_accepted_and_replays_stay_refused() {
    let dir = TempDir(tmp_dir("epochs"));
    let s = settings(&dir.0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = now_ms() / 10_000 * 10_000 - 300_000;
    let rec = || vec![record("10.0.1.10", "10.0.2.10", 100, 0)];
    let first = batch(3, 4_000_000, 1, t0, rec(), None);
    let c = start(&s);
    let to = c.udp_addr.unwrap();
    udp.send_to(&first, to).unwrap();
    wait_for("first session", 10, || {
        (c.metrics.records_received.load(Ordering::Relaxed) == 1).then_some(())
    });
    // The agent restarts with a lower epoch; its next interval is later.
    let second = batch(3, 17, 1, t0 + 10_000, rec(), None);
    udp.send_to(&second, to).unwrap();
    wait_for("second session accepted", 10, || {
        (c.metrics.records_received.load(Ordering::Relaxed) == 2).then_some(())
    });
    c.shutdown();
    // After a restart: the captured frames of both sessions are refused or deduplicated, and
    // the agent goes on.
    let c = start(&s);
    let to = c.udp_addr.unwrap();
    udp.send_to(&first, to).unwrap();
    udp.send_to(&second, to).unwrap();
    let third = batch(3, 17, 2, t0 + 20_000, rec(), None);
    udp.send_to(&third, to).unwrap();
    wait_for("third batch", 10, || {
        (c.metrics.records_received.load(Ordering::Relaxed) == 1).then_some(())
    });
    wait_for("the replay refused", 10, || {
        (rejected(&c, "replayed") == 1).then_some(())
    });
    assert_eq!(c.metrics.duplicates.load(Ordering::Relaxed), 1);
    c.shutdown();
}
