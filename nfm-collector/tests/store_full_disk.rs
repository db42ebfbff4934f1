//! A full disk, for real: the store's data directory on a small tmpfs that the test fills. The
//! store stalls without acking, and when only part of the space returns, that part of its
//! backlog becomes durable and acked; the rest follows when the rest of the space returns
//! (issue 19 item 4: freeing less than the whole backlog used to leave it stalled for good).

use nfm_collector::metrics::Metrics;
use nfm_collector::pipeline::{StoreMsg, StoreReply, WalBatch};
use nfm_collector::store::{Store, StoreConfig, StoreOutputs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped (also on failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("nfm-full-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs")
            .success();
        assert!(ok, "mounting a tmpfs needs root");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills `dir` with 64 KiB files until the file system refuses a write; returns them.
fn fill(dir: &Path) -> Vec<PathBuf> {
    use std::io::Write;
    let chunk = vec![0xa5u8; 64 << 10];
    let mut files = Vec::new();
    for i in 0..10_000 {
        let p = dir.join(format!("filler-{i}"));
        let mut f = std::fs::File::create(&p).unwrap();
        files.push(p);
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    files
}

fn durable(rx: &Receiver<StoreReply>, want: usize, secs: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seqs = Vec::new();
    while seqs.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(StoreReply::Durable(ids)) => seqs.extend(ids.iter().map(|&(_, _, s)| s)),
            Err(_) => break,
        }
    }
    seqs
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test.sh runs it"]
fn store_unstalls_piece_by_piece_when_part_of_the_space_returns() {
    let fs = Tmpfs::mount("4m");
    let data = fs.0.join("data");
    let metrics = Arc::new(Metrics::default());
    let cfg = StoreConfig {
        segment_bytes: 8 << 20,
        ..StoreConfig::new(&data)
    };
    let (store, _) = Store::open(cfg, metrics.clone()).unwrap();
    let (tx, rx) = sync_channel(64);
    let (dtx, drx) = channel();
    let (atx, _arx) = sync_channel(64);
    let h = std::thread::spawn(move || {
        store.run(
            rx,
            StoreOutputs {
                durable: dtx,
                waker: None,
                summaries: atx,
            },
        )
    });
    // Nothing left on the file system.
    let mut filler = fill(&fs.0);
    // 12 batches of 100 KiB each, one message each (as ingest sends them): 1.2 MiB of backlog.
    let batch = |seq: u64| WalBatch {
        n: seq,
        agent_id: 7,
        epoch: 1,
        seq,
        interval_start_ms: 1_000 * seq,
        frame: vec![seq as u8; 100 << 10],
    };
    for seq in 1..=12 {
        tx.send(StoreMsg::Batches(vec![batch(seq)])).unwrap();
    }
    tx.send(StoreMsg::Tick(Instant::now())).unwrap();
    // Stalled: nothing acked, the stall visible in the metrics.
    assert!(durable(&drx, 1, 2).is_empty(), "nothing is durable");
    assert_eq!(metrics.store_stalled.load(Ordering::Relaxed), 1);
    // Free about 400 KiB: less than the backlog. Part of it becomes durable on the next tick.
    for p in filler.drain(..6) {
        std::fs::remove_file(p).unwrap();
    }
    tx.send(StoreMsg::Tick(Instant::now())).unwrap();
    let first = durable(&drx, 1, 10);
    assert!(
        !first.is_empty() && first.len() < 12,
        "part of the backlog durable: {first:?}"
    );
    // Drain whatever else that space admits, then check it is still stalled.
    let mut acked = first;
    acked.extend(durable(&drx, 12, 1));
    assert!(acked.len() < 12, "{acked:?}");
    assert_eq!(metrics.store_stalled.load(Ordering::Relaxed), 1);
    // In order, never twice.
    assert_eq!(acked, (1..=acked.len() as u64).collect::<Vec<_>>());
    // All the space back: the rest of the backlog, and the stall ends.
    for p in filler.drain(..) {
        std::fs::remove_file(p).unwrap();
    }
    tx.send(StoreMsg::Tick(Instant::now())).unwrap();
    let n = acked.len();
    acked.extend(durable(&drx, 12 - n, 10));
    assert_eq!(acked, (1..=12).collect::<Vec<_>>());
    assert_eq!(metrics.store_stalled.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.store_pending_bytes.load(Ordering::Relaxed), 0);
    tx.send(StoreMsg::Shutdown).unwrap();
    h.join().unwrap();
    // Every batch is in the WAL after a restart, once.
    let (_, rec) = Store::open(StoreConfig::new(&data), metrics).unwrap();
    assert_eq!(rec.seen.len(), 12);
}
