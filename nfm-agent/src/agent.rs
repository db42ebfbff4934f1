//! The agent's one event loop (mio, no async runtime): ring buffer, interval timer, collector
//! socket and shutdown waker, each a fixed token.
//!
//! Guarantee: every close event and every map entry read is folded into exactly one interval,
//! and every interval is either printed (`--stdout`) or handed to the transport, including the
//! last one on SIGINT/SIGTERM, after which the program is detached and the process exits 0.
//! Shutdown waits at most [`SHUTDOWN_GRACE`] for the collector to ack what is left.

use crate::staged::{Held, Seen};
use anyhow::{Context as _, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nfm_agent_common::{
    event, stage, CloseEvent, OpenEvent, OpenEvent4, SockStats, CLOSE_EVENT_LEN, OPEN_EVENT4_LEN,
    OPEN_EVENT_LEN, SOCK_STATS_LEN,
};
use nfm_wire::{
    cap, encode_flow_batch, encode_to_vec, AgentStats, FlowRecord, Goodbye, Header, Hello, Key,
    Keyring, Message, Sequencer,
};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bpf::{BatchScratch, KernelCounters, LoadOptions, Probe};
use crate::config::Config;
use crate::flows::Tracker;
use crate::sys;
use crate::transport::{Kind, Transport, COLLECTOR};

pub const RINGBUF: Token = Token(0);
pub const WAKER: Token = Token(1);

/// How long shutdown waits for the collector to ack the last frames.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(600);
/// UDP datagram size: below a 1500-byte MTU with IPv6 and UDP headers.
pub const UDP_FRAME: usize = nfm_wire::DEFAULT_DATAGRAM_LEN;
/// TCP frames: large enough that one busy interval is a few frames, small enough that a resend
/// after a reconnect is cheap.
pub const TCP_FRAME: usize = 256 * 1024;

/// Everything shown on one `--stdout` line besides the records.
#[derive(serde::Serialize)]
struct StdoutLine<'a> {
    interval_start_ms: u64,
    interval_end_ms: u64,
    /// Wall clock when the socket map was read for this interval (the live counters' moment;
    /// just after `interval_end_ms` unless the agent was descheduled).
    map_read_ms: u64,
    agent_id: u64,
    epoch: u32,
    records: &'a [FlowRecord],
    kernel: KernelCounters,
    /// Entries user space could not insert because the map was full.
    user_map_full: u64,
    flows_tracked: usize,
    sockets_tracked: usize,
    cpu_time_us: u64,
    rss_bytes: u64,
    last: bool,
}

pub struct Agent {
    cfg: Config,
    probe: Probe,
    poll: Poll,
    tracker: Tracker,
    transport: Option<Transport>,
    /// Agent id, session epoch and the next frame's sequence number.
    seq: Sequencer,
    key: Option<Key>,
    host_name: String,
    /// Where this host runs (issue 17; empty off-cloud), sent in every Hello.
    placement: crate::imds::Placement,
    started: Instant,
    started_ms: u64,
    interval_start_ms: u64,
    /// Closed sockets whose map entries are deleted after this read.
    to_delete: Vec<u64>,
    /// Open events whose sockets get a map entry at the end of the interval if still open
    /// (a close removes its socket from here: most short connections never need an entry).
    to_insert: HashMap<u64, SockStats>,
    /// Entries user space could not insert: map full, other errors.
    user_map_full: u64,
    user_map_failed: u64,
    scratch: BatchScratch,
    kernel: KernelCounters,
    ring_events: u64,
    seen: Seen,
    /// Closes waiting for their socket's open event.
    held: Held,
    /// The interval number the program tags RTT minima and maxima with.
    epoch: u32,
}

impl Agent {
    /// Loads and attaches the program and prepares the loop. Returns the agent and a waker that
    /// ends the loop.
    pub fn new(cfg: Config) -> Result<(Agent, Arc<Waker>)> {
        let cgroup: PathBuf = match &cfg.cgroup {
            Some(p) => p.clone(),
            None => crate::bpf::cgroup2_mount()?,
        };
        let keys = match &cfg.key_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading key file {}", p.display()))?;
                Some(Keyring::parse(&text).with_context(|| format!("key file {}", p.display()))?)
            }
            None => None,
        };
        let key = keys.as_ref().and_then(|k| k.newest().cloned());
        let probe = Probe::attach(
            &cgroup,
            &LoadOptions {
                max_sockets: cfg.max_sockets,
                ring_bytes: cfg.ring_bytes,
                cb_flags: cfg.cb_flags,
                // Wake the reader at a quarter full (default); below that the interval drain
                // picks events up (one wakeup per thousands of closes instead of one per close).
                wakeup_bytes: cfg.ring_wakeup_bytes,
                noop: cfg.bpf_noop,
                profile: cfg.bpf_profile,
                syn_linear: crate::bpf::syn_linear_timeouts(),
            },
        )?;
        log::info!("attached sock_ops program to {}", cgroup.display());
        let poll = Poll::new().context("epoll")?;
        let fd = probe.ring.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), RINGBUF, Interest::READABLE)
            .context("registering the ring buffer")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let agent_id = cfg.agent_id.unwrap_or_else(sys::default_agent_id);
        let epoch = sys::new_epoch();
        let transport = (!cfg.stdout).then(|| {
            Transport::new(
                cfg.transport,
                cfg.collectors.clone(),
                agent_id,
                epoch,
                cfg.spool_bytes,
                keys.clone(),
            )
            .with_tls(cfg.tls.clone())
        });
        // At most imds::BUDGET (1 s) when no metadata service answers.
        let placement = cfg
            .imds
            .and_then(|a| crate::imds::discover(a, crate::imds::BUDGET))
            .unwrap_or_default();
        let now_ms = sys::unix_ms();
        let cfg_interval_ms = cfg.interval.as_millis() as u64;
        Ok((
            Agent {
                host_name: cfg.host_name.clone().unwrap_or_else(sys::host_name),
                placement,
                cfg,
                probe,
                poll,
                tracker: Tracker::new(),
                transport,
                seq: Sequencer::new(agent_id, epoch),
                key,
                started: Instant::now(),
                started_ms: now_ms,
                interval_start_ms: aligned_start(now_ms, cfg_interval_ms),
                to_delete: Vec::new(),
                to_insert: HashMap::new(),
                user_map_full: 0,
                user_map_failed: 0,
                scratch: BatchScratch::default(),
                kernel: KernelCounters::default(),
                ring_events: 0,
                seen: Seen::new(),
                held: Held::default(),
                epoch: 0,
            },
            waker,
        ))
    }

    fn header(&mut self) -> Header {
        self.seq.next_header()
    }

    fn hello_frame(&mut self) -> Vec<u8> {
        let mut caps = cap::EBPF | cap::IPV6 | cap::HANDSHAKE_TIME;
        if self.cfg.transport == Kind::Tcp {
            caps |= cap::RESENDS;
        }
        let msg = Message::Hello(Hello {
            host_name: self.host_name.clone(),
            agent_version: concat!("nfm-agent/", env!("CARGO_PKG_VERSION")).into(),
            interval_ms: self.cfg.interval.as_millis() as u32,
            capabilities: caps,
            started_at_ms: self.started_ms,
            instance_id: self.placement.instance_id.clone(),
            region: self.placement.region.clone(),
            az: self.placement.az.clone(),
            subnet_id: self.placement.subnet_id.clone(),
            vpc_id: self.placement.vpc_id.clone(),
            addresses: self.placement.addresses.clone(),
        });
        let h = self.header();
        encode_to_vec(&h, &msg, self.key.as_ref())
    }

    /// One open or close record.
    fn handle(&mut self, s: &SockStats, now: Instant) {
        if s.event == event::OPEN {
            if self.tracker.observe_open(s, now) {
                self.to_insert.insert(s.cookie, *s);
            }
            if let Some(c) = self.held.release(s.cookie) {
                self.close(&c, now);
            }
        } else if Held::must_wait(s, self.tracker.knows(s.cookie)) {
            // See `Held`: the open event of its socket may come later.
            self.held.hold(*s);
        } else {
            self.close(s, now);
        }
    }

    fn close(&mut self, s: &SockStats, now: Instant) {
        // Closed before the interval's inserts: it never gets an entry.
        self.to_insert.remove(&s.cookie);
        if self.tracker.observe_close(s, now) {
            self.to_delete.push(s.cookie);
        }
    }

    /// Reads every pending event: open events one per ring record, closes in batches.
    fn drain_ring(&mut self) {
        let now = Instant::now();
        let mut batch: Vec<SockStats> = Vec::new();
        while let Some(item) = self.probe.ring.next() {
            // The three record kinds have distinct lengths (checked by the common crate's tests).
            // SAFETY (all three): the bytes were written by the program as that Pod type;
            // read_unaligned because the ring only guarantees 8-byte alignment.
            match item.len() {
                SOCK_STATS_LEN => {
                    batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
                }
                stage::OPEN_BATCH_LEN => batch.extend(item.chunks_exact(OPEN_EVENT_LEN).map(|c| {
                    let e: OpenEvent = unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) };
                    e.to_stats()
                })),
                stage::OPEN4_BATCH_LEN => {
                    batch.extend(item.chunks_exact(OPEN_EVENT4_LEN).map(|c| {
                        let e: OpenEvent4 = unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) };
                        e.to_open().to_stats()
                    }))
                }
                stage::CLOSE_BATCH_LEN => {
                    batch.extend(item.chunks_exact(CLOSE_EVENT_LEN).map(|c| {
                        let e: CloseEvent = unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) };
                        e.to_stats()
                    }))
                }
                n => log::warn!("malformed ring buffer record ({n} bytes)"),
            }
        }
        // (Handled after the drain: a ring item borrows the ring. The ring's size bounds this.)
        for s in batch {
            self.ring_events += 1;
            if self.seen.ring(&s) {
                self.handle(&s, now);
            }
        }
        self.finish_drain();
    }

    /// Closes still waiting in the CPUs' stages (a quiet CPU sends its batch late).
    fn read_stages(&mut self) {
        let recs = match self.probe.staged() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{e:#}");
                return;
            }
        };
        // Events staged before the snapshot but sent through the ring buffer since (and
        // overwritten in the stage) are read here.
        self.drain_ring();
        let now = Instant::now();
        for s in self.seen.staged(recs) {
            self.handle(&s, now);
        }
        // Every open event staged before a held close was staged is now read (it was in the
        // snapshot, or sent before it): a close still held has no open event (it was lost to a
        // full ring buffer and map, or the socket was evicted) and is handled as it is.
        for c in self.held.take_all() {
            self.close(&c, now);
        }
        self.finish_drain();
    }

    /// Map entries for sockets still open, so interval reads see their counters. Done once per
    /// interval, after the stages were read: a socket whose close is still staged would
    /// otherwise get an entry only to have it deleted (two syscalls per short connection).
    fn insert_open(&mut self) {
        // Taken, not drained: a burst of opens (10,000 at once) must not keep its table.
        let pending = std::mem::take(&mut self.to_insert);
        for (_, s) in pending {
            if self.tracker.is_closed(s.cookie) {
                continue;
            }
            match self.probe.insert_socket(&s) {
                Ok(()) => self.tracker.mark_inserted(s.cookie),
                Err(libc::EEXIST) => {} // the program adopted it first
                Err(libc::E2BIG) => self.user_map_full += 1,
                Err(e) => {
                    self.user_map_failed += 1;
                    log::debug!("inserting socket {}: errno {e}", s.cookie);
                }
            }
        }
    }

    /// Deletes the map entries of closed sockets.
    fn finish_drain(&mut self) {
        // The program leaves closed entries in the map (a delete is the costliest part of a
        // close); remove them here, a batch per syscall.
        if !self.to_delete.is_empty() {
            self.probe.delete_sockets(&self.to_delete);
            self.to_delete.clear();
        }
    }

    fn read_map(&mut self) {
        let now = Instant::now();
        let tracker = &mut self.tracker;
        let closed = &mut self.to_delete;
        let r = self.probe.read_sockets(&mut self.scratch, |s| {
            if tracker.observe_map(s, now) {
                closed.push(s.cookie);
            }
        });
        if let Err(e) = r {
            log::warn!("{e:#}");
        }
        if !self.to_delete.is_empty() {
            self.probe.delete_sockets(&self.to_delete);
            self.to_delete.clear();
        }
    }

    fn stats(&self, cpu_time_us: u64, rss_bytes: u64) -> AgentStats {
        let t = self.transport.as_ref().map(|t| t.stats).unwrap_or_default();
        AgentStats {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            events_lost: self.kernel.close_lost + self.tracker.stats.closes_unattributed,
            map_full: self.kernel.map_full + self.user_map_full,
            map_update_failed: self.kernel.map_update_failed
                + self.kernel.cb_flags_failed
                + self.user_map_failed,
            spool_dropped_frames: t.spool_dropped_frames,
            spool_dropped_records: t.spool_dropped_records,
            send_errors: t.send_errors,
            cpu_time_us,
            rss_bytes,
            // The interval just finished (its flows have been handed out by now).
            flows_tracked: self.tracker.last.flows as u64,
            sockets_tracked: self.tracker.last.sockets as u64,
            frames_sent: t.frames_sent,
            records_sent: t.records_sent,
        }
    }

    /// Closes the interval: folds everything read so far and ships or prints it.
    fn interval(&mut self, last: bool) {
        self.drain_ring();
        self.read_stages();
        self.insert_open();
        // Samples from now on belong to the next interval: the entries' minimum and maximum
        // read below are this interval's.
        self.epoch = self.epoch.wrapping_add(1);
        if let Err(e) = self.probe.set_epoch(self.epoch) {
            log::warn!("{e:#}");
        }
        let map_read_ms = sys::unix_ms();
        self.read_map();
        // Closes submitted while the map was read (their entries already gone from it).
        self.drain_ring();
        match self.probe.counters() {
            Ok(k) => {
                if k.map_full > self.kernel.map_full || k.close_lost > self.kernel.close_lost {
                    log::warn!(
                        "kernel overflow: map_full {} close_lost {} (raise --max-sockets / --ring-bytes)",
                        k.map_full,
                        k.close_lost
                    );
                }
                self.kernel = k;
            }
            Err(e) => log::warn!("reading counters: {e}"),
        }
        let now = Instant::now();
        // Intervals end on wall-clock multiples of the interval, so every agent of a fleet
        // reports the same bounds whatever its start time (docs/collector.md §Intervals). The
        // last, partial interval ends now.
        let wall = sys::unix_ms();
        let interval_ms = self.cfg.interval.as_millis() as u64;
        let end_ms = if last {
            wall
        } else {
            nearest_boundary(wall, interval_ms)
        };
        let start_ms = self.interval_start_ms;
        self.interval_start_ms = end_ms;
        let mut records = self.tracker.finish_interval(now);
        let (cpu, rss) = sys::self_usage();
        if self.cfg.stdout {
            records.sort_by_key(|r| (r.role as u8, r.local, r.remote, r.local_port, r.remote_port));
            let line = StdoutLine {
                interval_start_ms: start_ms,
                interval_end_ms: end_ms,
                map_read_ms,
                agent_id: self.seq.agent_id,
                epoch: self.seq.epoch,
                records: &records,
                kernel: self.kernel,
                user_map_full: self.user_map_full,
                flows_tracked: self.tracker.last.flows,
                sockets_tracked: self.tracker.last.sockets,
                cpu_time_us: cpu,
                rss_bytes: rss,
                last,
            };
            match serde_json::to_string(&line) {
                Ok(s) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{s}");
                    let _ = out.flush();
                }
                Err(e) => log::error!("json: {e}"),
            }
            return;
        }
        let kind = self.cfg.transport;
        if kind == Kind::Udp {
            // Each UDP interval starts with a Hello so a restarted collector learns who we are.
            let h = self.hello_frame();
            let seq = self.seq.next_seq() - 1;
            self.send(seq, 0, h);
        }
        let max = if kind == Kind::Udp {
            UDP_FRAME
        } else {
            TCP_FRAME
        };
        let first = self.seq.next_seq();
        match encode_flow_batch(
            &mut self.seq,
            (start_ms, end_ms),
            &records,
            max,
            self.key.as_ref(),
        ) {
            Ok(frames) => {
                // Records per frame (from the encoder), for exact spool-drop accounting.
                for (i, f) in frames.into_iter().enumerate() {
                    self.send(first + i as u64, f.records, f.bytes);
                }
            }
            Err(e) => log::error!("encoding flow batch: {e}"),
        }
        let stats = self.stats(cpu, rss);
        let h = self.header();
        let f = encode_to_vec(&h, &Message::AgentStats(stats), self.key.as_ref());
        self.send(h.seq, 0, f);
        drop(records);
        trim_heap();
    }

    fn send(&mut self, seq: u64, records: u64, frame: Vec<u8>) {
        if let Some(t) = self.transport.as_mut() {
            t.send(self.poll.registry(), seq, records, frame);
        }
    }

    /// Runs until the waker fires, then flushes the last interval and returns.
    pub fn run(mut self) -> Result<()> {
        if let Some(t) = self.transport.as_mut() {
            if t.kind() == Kind::Tcp {
                let _ = t;
                let hello = self.hello_frame();
                if let Some(t) = self.transport.as_mut() {
                    t.set_hello(hello);
                }
            }
        }
        let mut events = Events::with_capacity(64);
        let interval_ms = self.cfg.interval.as_millis() as u64;
        let mut next_tick = next_tick_at(sys::unix_ms(), interval_ms);
        let mut shutdown = false;
        while !shutdown {
            let now = Instant::now();
            if let Some(t) = self.transport.as_mut() {
                t.on_tick(self.poll.registry(), now);
            }
            let mut wake = next_tick;
            if let Some(w) = self.transport.as_ref().and_then(|t| t.next_wakeup()) {
                wake = wake.min(w);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("epoll_wait"),
            }
            for ev in events.iter() {
                match ev.token() {
                    RINGBUF => self.drain_ring(),
                    WAKER => shutdown = true,
                    COLLECTOR => {
                        if let Some(t) = self.transport.as_mut() {
                            t.on_event(self.poll.registry(), ev);
                        }
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.interval(false);
                // From the wall clock each time: a clock step or a stall (suspend, overload)
                // skips to the next boundary, never bursts.
                next_tick = next_tick_at(sys::unix_ms(), interval_ms);
            }
        }
        log::info!("shutting down: flushing the last interval");
        self.interval(true);
        self.finish()
    }

    /// Goodbye, a bounded wait for acks, then detach.
    fn finish(mut self) -> Result<()> {
        if self.transport.is_some() {
            let h = self.header();
            let f = encode_to_vec(
                &h,
                &Message::Goodbye(Goodbye {
                    reason: "shutdown".into(),
                }),
                self.key.as_ref(),
            );
            self.send(h.seq, 0, f);
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            let mut events = Events::with_capacity(16);
            while let Some(t) = self.transport.as_mut() {
                if t.drained() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    log::warn!(
                        "exiting with {} unacked frames (collector unreachable or slow)",
                        t.spool.len()
                    );
                    break;
                }
                t.on_tick(self.poll.registry(), now);
                let mut wake = deadline;
                if let Some(w) = t.next_wakeup() {
                    wake = wake.min(w);
                }
                let _ = self
                    .poll
                    .poll(&mut events, Some(wake.saturating_duration_since(now)));
                for ev in events.iter() {
                    if ev.token() == COLLECTOR {
                        t.on_event(self.poll.registry(), ev);
                    }
                }
            }
        }
        if self.cfg.bpf_profile {
            if let Ok(p) = self.probe.profile() {
                for (op, ns, runs) in p {
                    eprintln!(
                        "profile op {op:2}: runs {runs:9} total {ns:12} ns  {:.1} ns/run",
                        ns as f64 / runs as f64
                    );
                }
            }
        }
        log::info!("detaching from {}", self.probe.cgroup.display());
        self.probe.detach();
        Ok(())
    }
}

/// Start of the interval `now_ms` falls in: the wall-clock multiple of `interval_ms` at or
/// before it.
fn aligned_start(now_ms: u64, interval_ms: u64) -> u64 {
    now_ms - now_ms % interval_ms.max(1)
}

/// The interval boundary a tick at `now_ms` closes: ticks fire just after a boundary, so the
/// nearest multiple (a late tick still closes the boundary it was for; an early one, the next).
fn nearest_boundary(now_ms: u64, interval_ms: u64) -> u64 {
    let i = interval_ms.max(1);
    (now_ms + i / 2) / i * i
}

/// When the next interval ends: the next wall-clock multiple of the interval after `now_ms`, as
/// a monotonic instant.
fn next_tick_at(now_ms: u64, interval_ms: u64) -> Instant {
    let next = aligned_start(now_ms, interval_ms) + interval_ms.max(1);
    Instant::now() + Duration::from_millis(next - now_ms)
}

/// Hands the pages freed at the end of an interval (its records and encode buffers) back to the
/// kernel: glibc keeps them otherwise, and RSS would track each interval's peak rather than the
/// steady state. One heap walk per interval; measured RSS with 10,000 sockets before this: 17.0 MiB.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_intervals_align_to_wall_clock_multiples() {
        let i = 5_000;
        assert_eq!(aligned_start(1_764_000_003_217, i), 1_764_000_000_000);
        assert_eq!(aligned_start(1_764_000_005_000, i), 1_764_000_005_000);
        // A tick a little late or early closes the boundary it was set for.
        assert_eq!(nearest_boundary(1_764_000_005_012, i), 1_764_000_005_000);
        assert_eq!(nearest_boundary(1_764_000_004_990, i), 1_764_000_005_000);
        // Two agents started at different times tick on the same boundaries.
        let a = next_tick_at(1_764_000_001_000, i);
        let b = next_tick_at(1_764_000_004_000, i);
        let d = if a > b { a - b } else { b - a };
        assert!(d >= Duration::from_millis(2_990), "{d:?}");
        assert!(d <= Duration::from_millis(3_050), "{d:?}");
        assert_eq!(
            aligned_start(7, 0),
            7,
            "a zero interval never divides by zero"
        );
    }
}
