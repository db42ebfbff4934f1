//! Per-socket deltas folded into service-level flows: the agent's accounting, kernel-free.
//!
//! Guarantee: every socket the kernel reported is counted exactly once as an attempt and at most
//! once as a close, and every counter is reported as a delta exactly once, whether the socket
//! was seen live in the map, only through its close event, or both, in any order. That holds
//! because the kernel values are cumulative per socket (cookie) and this module remembers, per
//! cookie, what it already reported; closed cookies are kept as tombstones for a while so a map
//! read that races with the close (the program emits the close before it deletes the entry) does
//! not resurrect the socket.
//!
//! Folding: the ephemeral port is elided, so a client socket joins the flow
//! (local, remote, 0, remote_port) and a server socket (local, remote, local_port, 0).
//! IPv4-mapped IPv6 addresses are reported as IPv4.

use nfm_agent_common::{close_kind, payload, role, sflag, SockStats, AF_INET6};
use nfm_wire::{FlowRecord, PhaseCounts, Role, RttSummary, TimeSummary};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// A socket absent from the map (and never closed) for this long is forgotten. Longer than the
/// SYN back-off (1+2+4+8+16+32 s = 63 s with 6 retries), so a slow connect is never evicted.
pub const IDLE_EVICT: Duration = Duration::from_secs(65);
/// Closed cookies are remembered this long to ignore a racing map read.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

/// A service-level flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub server: bool,
}

/// What was already reported for one socket (cumulative values).
#[derive(Debug, Clone, Copy, Default)]
struct Reported {
    sent: u64,
    received: u64,
    segs_in: u32,
    segs_out: u32,
    rtt_count: u32,
    rtt_sum: u64,
    retrans: [u32; 3],
    rto: [u32; 3],
    handshake: bool,
}

#[derive(Debug)]
struct Sock {
    key: FlowKey,
    role: u8,
    rep: Reported,
    last_seen: Instant,
    /// The open event's samples and counts, for entries the program created itself (ADOPTED)
    /// and closes built from the context (UNTRACKED), whose counts start from zero.
    base: Option<Base>,
    /// User space inserted this socket's map entry.
    inserted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Base {
    rtt_count: u32,
    rtt_sum_us: u64,
    rtt_min_us: u32,
    rtt_max_us: u32,
    handshake_us: u32,
    retrans: [u32; 3],
    rto: [u32; 3],
}

impl Base {
    fn of(s: &SockStats) -> Base {
        Base {
            rtt_count: s.rtt_count,
            rtt_sum_us: s.rtt_sum_us,
            rtt_min_us: s.rtt_min_us,
            rtt_max_us: s.rtt_max_us,
            handshake_us: s.handshake_us,
            retrans: s.retrans,
            rto: s.rto,
        }
    }
}

/// The socket's cumulative counters as if one entry had seen everything: an ADOPTED entry or an
/// UNTRACKED close is combined with the open event (an adopted entry's retransmissions that the
/// kernel had counted when it was created go to its adoption phase), and a close is reconciled
/// with the kernel's total retransmissions. A connection that closes without a kept RTT sample
/// (below the program's RTT gate) gets its final smoothed RTT as its one sample.
fn effective(s: &SockStats, base: Option<&Base>, role: Option<u8>) -> SockStats {
    let mut e = *s;
    if let Some(r) = role {
        e.role = r;
    }
    if let Some(b) = base {
        if s.flags & (sflag::ADOPTED | sflag::UNTRACKED) != 0 {
            let (own_min, own_max) = (s.rtt_min_us, s.rtt_max_us);
            e.rtt_count = b.rtt_count + s.rtt_count;
            e.rtt_sum_us = b.rtt_sum_us + s.rtt_sum_us;
            e.rtt_min_us = if s.rtt_count > 0 {
                b.rtt_min_us.min(own_min)
            } else {
                b.rtt_min_us
            };
            e.rtt_max_us = b.rtt_max_us.max(own_max);
            e.handshake_us = b.handshake_us;
            for i in 0..3 {
                e.retrans[i] = b.retrans[i] + s.retrans[i];
                e.rto[i] = b.rto[i] + s.rto[i];
            }
            if s.flags & sflag::ADOPTED != 0 {
                let seen: u32 = e.retrans.iter().sum();
                if let Some(slot) = e.retrans.get_mut(s.adopt_phase as usize) {
                    *slot += s.total_retrans.saturating_sub(seen);
                }
            }
            e.flags |= sflag::ESTABLISHED;
        }
    }
    if s.flags & sflag::CLOSED != 0 {
        nfm_agent_common::reconcile(&mut e);
        if e.rtt_count == 0 && e.srtt_us != 0 && e.flags & sflag::ESTABLISHED != 0 {
            e.rtt_count = 1;
            e.rtt_sum_us = e.srtt_us as u64;
            e.rtt_min_us = e.srtt_us;
            e.rtt_max_us = e.srtt_us;
        }
    }
    e
}

/// Converts the kernel's address words (network order bytes) into an address, unmapping
/// IPv4-mapped IPv6.
pub fn addr(family: u8, words: &[u32; 4]) -> IpAddr {
    if family == AF_INET6 {
        let mut b = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let v6 = Ipv6Addr::from(b);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    }
}

pub fn flow_key(s: &SockStats) -> FlowKey {
    let server = s.role == role::SERVER;
    let r = if server { Role::Server } else { Role::Client };
    let (local_port, remote_port) = r.service_ports(s.local_port, s.remote_port);
    FlowKey {
        local: addr(s.family, &s.local_addr),
        remote: addr(s.family, &s.remote_addr),
        local_port,
        remote_port,
        server,
    }
}

/// Counts kept by the tracker (reported in AgentStats and `--stdout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub sockets_seen: u64,
    pub closes: u64,
    pub evicted_idle: u64,
    pub stale_map_reads: u64,
    /// Closes without addresses ([`sflag::ANONYMOUS`]) of sockets whose open event was never
    /// seen (lost to a full ring buffer and map, or evicted): they cannot be attributed to a
    /// flow, so they are counted here (and in AgentStats `events_lost`).
    pub closes_unattributed: u64,
}

/// What the last finished interval covered (AgentStats `flows_tracked` / `sockets_tracked`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalSummary {
    /// Flows in the interval's records.
    pub flows: usize,
    /// Sockets tracked during the interval: open at its end, or closed during it.
    pub sockets: usize,
}

/// A hasher for socket cookies: the kernel hands them out from a counter, so a multiply-shift
/// spreads them well, at a fraction of SipHash's cost (10,000 lookups per interval).
#[derive(Default, Clone, Copy)]
pub struct CookieHasher(u64);

impl std::hash::Hasher for CookieHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type CookieMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<CookieHasher>>;

/// The per-socket state and the current interval's flows.
///
/// Memory: flows live in a `Vec` indexed by a small map, so ending an interval hands the `Vec`
/// out without a copy (10,000 flows ≈ 2.5 MiB, allocated once per interval).
#[derive(Debug, Default)]
pub struct Tracker {
    socks: CookieMap<Sock>,
    tombstones: CookieMap<Instant>,
    index: HashMap<FlowKey, u32>,
    flows: Vec<FlowRecord>,
    pub stats: TrackerStats,
    /// Closes handled in the current interval.
    closes_in_interval: usize,
    /// The last finished interval.
    pub last: IntervalSummary,
}

fn add_time(t: &mut TimeSummary, us: u64) {
    if t.count == 0 || us < t.min_us {
        t.min_us = us;
    }
    if us > t.max_us {
        t.max_us = us;
    }
    t.count += 1;
    t.sum_us += us;
}

fn add_phases(p: &mut PhaseCounts, now: &[u32; 3], before: &[u32; 3]) {
    p.handshake += now[0].saturating_sub(before[0]) as u64;
    p.established += now[1].saturating_sub(before[1]) as u64;
    p.closing += now[2].saturating_sub(before[2]) as u64;
}

fn record<'a>(
    index: &mut HashMap<FlowKey, u32>,
    flows: &'a mut Vec<FlowRecord>,
    key: FlowKey,
) -> &'a mut FlowRecord {
    let i = *index.entry(key).or_insert_with(|| {
        flows.push(FlowRecord {
            local: key.local,
            remote: key.remote,
            local_port: key.local_port,
            remote_port: key.remote_port,
            role: if key.server {
                Role::Server
            } else {
                Role::Client
            },
            ..FlowRecord::default()
        });
        (flows.len() - 1) as u32
    });
    &mut flows[i as usize]
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Sockets tracked (open, or closed and not yet forgotten).
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Flows with activity in the current interval.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// An open event. Returns true when user space should insert the socket's map entry (the
    /// caller inserts it after the drain, unless the socket has closed by then).
    pub fn observe_open(&mut self, s: &SockStats, now: Instant) -> bool {
        if self.tombstones.contains_key(&s.cookie) || self.socks.contains_key(&s.cookie) {
            return false;
        }
        self.apply(s, now, false);
        if let Some(k) = self.socks.get_mut(&s.cookie) {
            k.base = Some(Base::of(s));
        }
        true
    }

    /// The entry for `cookie` was inserted by user space.
    pub fn mark_inserted(&mut self, cookie: u64) {
        if let Some(k) = self.socks.get_mut(&cookie) {
            k.inserted = true;
        }
    }

    /// The socket was seen (open, or closed not long ago).
    pub fn knows(&self, cookie: u64) -> bool {
        self.socks.contains_key(&cookie) || self.tombstones.contains_key(&cookie)
    }

    /// The socket's close has been processed.
    pub fn is_closed(&self, cookie: u64) -> bool {
        self.tombstones.contains_key(&cookie)
    }

    /// A live map entry (or a close the kernel had to leave in the map: flag CLOSED). Also marks
    /// the socket as seen. Returns true when the socket is closed and its map entry should be
    /// deleted.
    pub fn observe_map(&mut self, s: &SockStats, now: Instant) -> bool {
        let closed = s.flags & sflag::CLOSED != 0;
        if !self.socks.contains_key(&s.cookie) && self.tombstones.contains_key(&s.cookie) {
            self.stats.stale_map_reads += 1;
            return true;
        }
        if closed {
            self.observe_close(s, now);
            return true;
        }
        self.apply(s, now, false);
        false
    }

    /// A close event from the ring buffer: the socket's final counters. Returns true when a map
    /// entry may exist for it (to be deleted).
    pub fn observe_close(&mut self, s: &SockStats, now: Instant) -> bool {
        if self.tombstones.contains_key(&s.cookie) {
            return s.flags & sflag::UNTRACKED == 0;
        }
        if s.flags & sflag::ANONYMOUS != 0 && !self.socks.contains_key(&s.cookie) {
            self.stats.closes_unattributed += 1;
            self.tombstones.insert(s.cookie, now);
            return false;
        }
        let inserted = self.socks.get(&s.cookie).is_some_and(|k| k.inserted);
        self.apply(s, now, true);
        self.socks.remove(&s.cookie);
        self.tombstones.insert(s.cookie, now);
        self.stats.closes += 1;
        self.closes_in_interval += 1;
        inserted || s.flags & sflag::UNTRACKED == 0
    }

    fn apply(&mut self, raw: &SockStats, now: Instant, closing: bool) {
        let sock = match self.socks.entry(raw.cookie) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                self.stats.sockets_seen += 1;
                let key = flow_key(raw);
                record(&mut self.index, &mut self.flows, key).conn_attempts += 1;
                v.insert(Sock {
                    key,
                    role: raw.role,
                    rep: Reported::default(),
                    last_seen: now,
                    base: None,
                    inserted: false,
                })
            }
        };
        sock.last_seen = now;
        let eff = effective(raw, sock.base.as_ref(), Some(sock.role));
        let s = &eff;
        let rep = sock.rep;
        let (sent, received) = payload(s);
        let established = s.flags & sflag::ESTABLISHED != 0;
        let changed = sent != rep.sent
            || received != rep.received
            || s.data_segs_in != rep.segs_in
            || s.data_segs_out != rep.segs_out
            || s.rtt_count != rep.rtt_count
            || s.retrans != rep.retrans
            || s.rto != rep.rto
            || (established && !rep.handshake);
        if !changed && !closing {
            // The common case for an idle flow: nothing to add.
            return;
        }
        let r = record(&mut self.index, &mut self.flows, sock.key);
        r.bytes_sent += sent.saturating_sub(rep.sent);
        r.bytes_received += received.saturating_sub(rep.received);
        r.segs_in += s.data_segs_in.saturating_sub(rep.segs_in) as u64;
        r.segs_out += s.data_segs_out.saturating_sub(rep.segs_out) as u64;
        let dcount = s.rtt_count.saturating_sub(rep.rtt_count) as u64;
        if dcount > 0 {
            let dsum = s.rtt_sum_us.saturating_sub(rep.rtt_sum);
            // The program keeps min/max of the interval (its epoch) in the entry; with one new
            // sample they are that sample.
            let (lo, hi) = if dcount == 1 {
                (dsum, dsum)
            } else {
                (s.rtt_min_us as u64, s.rtt_max_us as u64)
            };
            let t = &mut r.rtt;
            if t.count == 0 || lo < t.min_us {
                t.min_us = lo;
            }
            t.max_us = t.max_us.max(hi);
            t.count += dcount;
            t.sum_us += dsum;
        }
        if s.srtt_us != 0 {
            r.rtt.last_srtt_us = s.srtt_us as u64;
        }
        add_phases(&mut r.retrans, &s.retrans, &rep.retrans);
        add_phases(&mut r.rto, &s.rto, &rep.rto);
        let mut handshake = rep.handshake;
        if established && !handshake {
            add_time(&mut r.handshake, s.handshake_us as u64);
            handshake = true;
        }
        if closing {
            match s.close_kind {
                close_kind::FAILED => r.conn_failed += 1,
                close_kind::SEVERED => r.conn_severed += 1,
                _ => r.conn_completed += 1,
            }
        }
        sock.rep = Reported {
            sent: sent.max(rep.sent),
            received: received.max(rep.received),
            segs_in: s.data_segs_in.max(rep.segs_in),
            segs_out: s.data_segs_out.max(rep.segs_out),
            rtt_count: s.rtt_count.max(rep.rtt_count),
            rtt_sum: s.rtt_sum_us.max(rep.rtt_sum),
            retrans: max3(&s.retrans, &rep.retrans),
            rto: max3(&s.rto, &rep.rto),
            handshake,
        };
    }

    /// Ends the interval: sets the open-socket gauge, returns the records (in first-seen order)
    /// and evicts sockets not seen for [`IDLE_EVICT`] and old tombstones.
    pub fn finish_interval(&mut self, now: Instant) -> Vec<FlowRecord> {
        let before = self.socks.len();
        self.socks
            .retain(|_, s| now.duration_since(s.last_seen) < IDLE_EVICT);
        self.stats.evicted_idle += (before - self.socks.len()) as u64;
        self.tombstones
            .retain(|_, t| now.duration_since(*t) < TOMBSTONE_TTL);
        for s in self.socks.values() {
            record(&mut self.index, &mut self.flows, s.key).sockets_open += 1;
        }
        self.index.clear();
        self.last = IntervalSummary {
            flows: self.flows.len(),
            sockets: self.socks.len() + std::mem::take(&mut self.closes_in_interval),
        };
        std::mem::take(&mut self.flows)
    }
}

fn max3(a: &[u32; 3], b: &[u32; 3]) -> [u32; 3] {
    [a[0].max(b[0]), a[1].max(b[1]), a[2].max(b[2])]
}

/// RTT summary of a record as JSON-friendly numbers (used by `--stdout`).
pub fn rtt_mean_us(r: &RttSummary) -> Option<u64> {
    r.sum_us.checked_div(r.count)
}

#[cfg(test)]
mod test {
    use super::*;
    use nfm_agent_common::{tcp_state, AF_INET};

    fn sock(cookie: u64, role_: u8) -> SockStats {
        SockStats {
            cookie,
            family: AF_INET,
            role: role_,
            local_addr: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            local_port: 40000 + cookie as u16,
            remote_port: 443,
            ..SockStats::default()
        }
    }

    fn established(mut s: SockStats, acked: u64, recv: u64) -> SockStats {
        s.flags |= sflag::ESTABLISHED;
        s.last_state = tcp_state::ESTABLISHED as u8;
        s.bytes_acked = acked + 1;
        s.bytes_received = recv;
        s.handshake_us = 300;
        s
    }

    fn closed(mut s: SockStats) -> SockStats {
        s.close_kind = close_kind::COMPLETED;
        s.last_state = tcp_state::FIN_WAIT2 as u8;
        s.fin_acked = 1;
        s.bytes_acked += 1;
        s.bytes_received += 1;
        s
    }

    #[test]
    fn test_client_flows_fold_ephemeral_ports() {
        let mut t = Tracker::new();
        let now = Instant::now();
        t.observe_map(&established(sock(1, role::CLIENT), 10, 20), now);
        t.observe_map(&established(sock(2, role::CLIENT), 5, 0), now);
        let recs = t.finish_interval(now);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(
            (r.local_port, r.remote_port, r.role),
            (0, 443, Role::Client)
        );
        assert_eq!((r.bytes_sent, r.bytes_received), (15, 20));
        assert_eq!((r.conn_attempts, r.sockets_open), (2, 2));
        assert_eq!(r.handshake.count, 2);
    }

    #[test]
    fn test_server_keeps_local_port() {
        let s = sock(1, role::SERVER);
        assert_eq!(flow_key(&s).local_port, 40001);
        assert_eq!(flow_key(&s).remote_port, 0);
    }

    /// Live read, then close: the deltas add up to the final counters exactly once.
    #[test]
    fn test_deltas_across_intervals_and_close() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let s = established(sock(1, role::CLIENT), 100, 50);
        t.observe_map(&s, now);
        let r1 = t.finish_interval(now);
        let mut s2 = established(sock(1, role::CLIENT), 250, 80);
        s2.retrans = [0, 3, 0];
        t.observe_map(&s2, now);
        let r2 = t.finish_interval(now);
        t.observe_close(&closed(s2), now);
        // The racing map read after the close is ignored (and its entry deleted).
        assert!(t.observe_map(&s2, now));
        let r3 = t.finish_interval(now);
        assert_eq!(r1[0].bytes_sent + r2[0].bytes_sent + r3[0].bytes_sent, 250);
        assert_eq!(r2[0].bytes_received, 30);
        assert_eq!(r2[0].retrans.established, 3);
        assert_eq!(r3[0].conn_completed, 1);
        assert_eq!(r3[0].bytes_sent, 0);
        assert_eq!(r3[0].sockets_open, 0);
        assert_eq!(
            r1[0].conn_attempts + r2[0].conn_attempts + r3[0].conn_attempts,
            1
        );
        assert_eq!(t.sockets(), 0);
        assert_eq!(t.stats.stale_map_reads, 1);
    }

    /// Boundary: a socket that opens and closes inside one interval is seen only by its close.
    #[test]
    fn test_close_only_socket_counts_attempt_and_close() {
        let mut t = Tracker::new();
        let now = Instant::now();
        t.observe_close(&closed(established(sock(9, role::CLIENT), 7, 9)), now);
        let r = t.finish_interval(now);
        assert_eq!(
            (
                r[0].conn_attempts,
                r[0].conn_completed,
                r[0].bytes_sent,
                r[0].bytes_received
            ),
            (1, 1, 7, 9)
        );
        // A duplicate close is ignored.
        t.observe_close(&closed(established(sock(9, role::CLIENT), 7, 9)), now);
        assert!(t.finish_interval(now).is_empty());
    }

    #[test]
    fn test_failed_connect_and_closed_in_map() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut s = sock(3, role::CLIENT);
        s.close_kind = close_kind::FAILED;
        s.flags = sflag::CLOSED;
        s.retrans = [2, 0, 0];
        s.rto = [2, 0, 0];
        assert!(t.observe_map(&s, now), "closed map entries are deleted");
        let r = t.finish_interval(now);
        assert_eq!(
            (r[0].conn_failed, r[0].retrans.handshake, r[0].rto.handshake),
            (1, 2, 2)
        );
        assert_eq!(r[0].handshake.count, 0);
    }

    #[test]
    fn test_rtt_single_sample_is_exact() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut s = established(sock(1, role::CLIENT), 0, 0);
        s.rtt_count = 1;
        s.rtt_sum_us = 500;
        s.rtt_min_us = 500;
        s.rtt_max_us = 500;
        s.srtt_us = 500;
        t.observe_map(&s, now);
        t.finish_interval(now);
        s.rtt_count = 2;
        s.rtt_sum_us = 1700;
        s.rtt_max_us = 1200;
        t.observe_map(&s, now);
        let r = t.finish_interval(now);
        assert_eq!(
            (
                r[0].rtt.count,
                r[0].rtt.sum_us,
                r[0].rtt.min_us,
                r[0].rtt.max_us
            ),
            (1, 1200, 1200, 1200)
        );
    }

    /// The usual short connection: an open event, then a close built from the context (no map
    /// entry), whose counts start from zero and are combined with the open event.
    #[test]
    fn test_open_then_untracked_close_combines_exactly() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut open = established(sock(5, role::CLIENT), 0, 0);
        open.rtt_count = 1;
        open.rtt_sum_us = 400;
        open.rtt_min_us = 400;
        open.rtt_max_us = 400;
        open.retrans = [1, 0, 0];
        open.rto = [1, 0, 0];
        assert!(t.observe_open(&open, now), "still open: insert its entry");
        let mut close = closed(established(sock(5, role::CLIENT), 1000, 30));
        close.flags = sflag::UNTRACKED | sflag::CLOSED | sflag::ESTABLISHED;
        close.handshake_us = 0;
        close.total_retrans = 4;
        close.last_state = tcp_state::FIN_WAIT2 as u8;
        assert!(!t.observe_close(&close, now), "no entry to delete");
        assert!(t.is_closed(5));
        let r = t.finish_interval(now);
        assert_eq!((r[0].conn_attempts, r[0].conn_completed), (1, 1));
        assert_eq!((r[0].bytes_sent, r[0].bytes_received), (1000, 30));
        assert_eq!(r[0].retrans.handshake, 1);
        assert_eq!(
            r[0].retrans.closing, 3,
            "the rest of total_retrans, in the close's phase"
        );
        assert_eq!(r[0].rto.handshake, 1);
        assert_eq!((r[0].rtt.count, r[0].rtt.sum_us), (1, 400));
        assert_eq!(r[0].handshake.count, 1);
        // The open event arriving after its close (same drain) is not inserted.
        assert!(!t.observe_open(&open, now));
    }

    /// An entry the program adopted counts on top of the open event.
    #[test]
    fn test_adopted_entry_adds_to_open_event() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut open = established(sock(6, role::SERVER), 0, 0);
        open.rtt_count = 1;
        open.rtt_sum_us = 100;
        open.retrans = [2, 0, 0];
        t.observe_open(&open, now);
        let mut adopted = established(sock(6, role::CLIENT), 50, 60);
        adopted.flags = sflag::ADOPTED | sflag::ESTABLISHED;
        adopted.retrans = [0, 3, 0];
        adopted.rtt_count = 2;
        adopted.rtt_sum_us = 300;
        assert!(!t.observe_map(&adopted, now));
        let r = t.finish_interval(now);
        assert_eq!(r.len(), 1, "the role comes from the open event");
        assert_eq!(r[0].role, Role::Server);
        assert_eq!((r[0].retrans.handshake, r[0].retrans.established), (2, 3));
        assert_eq!((r[0].rtt.count, r[0].rtt.sum_us), (3, 400));
        assert_eq!(r[0].bytes_received, 60);
    }

    /// A close without addresses joins its socket's open event; without one it is counted,
    /// never folded into a made-up flow.
    #[test]
    fn test_anonymous_close_needs_its_open() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        let open = nfm_agent_common::OpenEvent {
            cookie: 5,
            local_addr: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            local_port: 40000,
            remote_port: 443,
            family: nfm_agent_common::AF_INET,
            role: role::CLIENT,
            flags: sflag::ESTABLISHED,
            event: nfm_agent_common::event::OPEN,
            handshake_us: 300,
            srtt_us: 300,
            total_retrans: 0,
            seq: 0,
            seq_end: 0,
        };
        assert!(t.observe_open(&open.to_stats(), t0));
        let close = nfm_agent_common::CloseEvent {
            cookie: 5,
            bytes_acked: 1 + 8 + 1,
            bytes_received: 1,
            data_segs_out: 1,
            srtt_us: 250,
            role: role::CLIENT,
            close_kind: close_kind::COMPLETED,
            last_state: nfm_agent_common::tcp_state::FIN_WAIT2 as u8,
            fin_acked: 1,
            ..Default::default()
        };
        assert!(
            !t.observe_close(&close.to_stats(), t0),
            "no entry to delete"
        );
        let mut other = close;
        other.cookie = 6;
        assert!(!t.observe_close(&other.to_stats(), t0));
        assert_eq!(t.stats.closes_unattributed, 1);
        let recs = t.finish_interval(t0);
        assert_eq!(recs.len(), 1, "only the attributed flow");
        let r = &recs[0];
        assert_eq!(r.remote, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((r.remote_port, r.local_port), (443, 0));
        assert_eq!((r.conn_attempts, r.conn_completed), (1, 1));
        assert_eq!((r.bytes_sent, r.bytes_received), (8, 0));
        assert_eq!((r.handshake.count, r.handshake.sum_us), (1, 300));
        assert_eq!((r.rtt.count, r.rtt.last_srtt_us), (1, 250));
    }

    /// The interval summary counts what the interval covered, also a socket that opened and
    /// closed inside it (the gap: AgentStats read 0 in the demo, which was read after the
    /// interval's flows had been handed out).
    #[test]
    fn test_interval_summary_counts_flows_and_sockets() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        let long = established(sock(1, role::CLIENT), 10, 0);
        t.observe_map(&long, t0);
        t.observe_close(&closed(established(sock(2, role::CLIENT), 10, 0)), t0);
        let mut srv = established(sock(3, role::SERVER), 0, 10);
        srv.local_port = 8080;
        t.observe_map(&srv, t0);
        let recs = t.finish_interval(t0);
        assert_eq!(
            t.last,
            IntervalSummary {
                flows: recs.len(),
                sockets: 3
            }
        );
        assert_eq!(t.last.flows, 2, "client sockets 1 and 2 share a flow");
        // Next interval: the two open sockets are still tracked (gauge), nothing else.
        let recs = t.finish_interval(t0 + Duration::from_secs(1));
        assert_eq!(recs.len(), 2);
        assert_eq!(
            t.last,
            IntervalSummary {
                flows: 2,
                sockets: 2
            }
        );
        // Boundary: nothing tracked at all.
        let mut empty = Tracker::new();
        empty.finish_interval(t0);
        assert_eq!(empty.last, IntervalSummary::default());
    }

    /// An entry the program created at a retransmission holds the kernel's total as of then:
    /// what its own per-phase counts and the open event's do not explain goes to the phase it
    /// was adopted in, once (later reads do not move it).
    #[test]
    fn test_adopted_retransmission_attributed_once() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut open = established(sock(6, role::CLIENT), 0, 0);
        open.retrans = [1, 0, 0];
        open.rto = [1, 0, 0];
        open.total_retrans = 1;
        t.observe_open(&open, now);
        let mut a = established(sock(6, role::CLIENT), 50, 0);
        a.flags = sflag::ADOPTED | sflag::ESTABLISHED;
        a.adopt_phase = 1;
        a.total_retrans = 3; // the handshake's one and this retransmission of 2 segments
        t.observe_map(&a, now);
        let r = t.finish_interval(now);
        assert_eq!((r[0].retrans.handshake, r[0].retrans.established), (1, 2));
        a.retrans = [0, 4, 0];
        a.total_retrans = 7;
        t.observe_map(&a, now);
        let r = t.finish_interval(now);
        assert_eq!(r[0].retrans.established, 4);
        let mut c = closed(a);
        c.flags |= sflag::CLOSED;
        c.last_state = tcp_state::FIN_WAIT2 as u8;
        t.observe_close(&c, now);
        let r = t.finish_interval(now);
        assert_eq!(
            (
                r[0].retrans.handshake,
                r[0].retrans.established,
                r[0].retrans.closing
            ),
            (0, 0, 0)
        );
    }

    /// A connection closing without a kept RTT sample reports its final srtt as its one
    /// sample; one with samples does not get another; min/max come from the entry's interval
    /// extremes.
    #[test]
    fn test_close_srtt_is_the_sample_of_a_short_connection() {
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut c = closed(established(sock(1, role::CLIENT), 10, 10));
        c.flags |= sflag::CLOSED;
        c.srtt_us = 26_000;
        t.observe_close(&c, now);
        let mut long = established(sock(2, role::CLIENT), 10, 10);
        long.rtt_count = 3;
        long.rtt_sum_us = 90_000;
        long.rtt_min_us = 20_000;
        long.rtt_max_us = 40_000;
        long.srtt_us = 33_000;
        t.observe_map(&long, now);
        let r = t.finish_interval(now);
        assert_eq!((r[0].rtt.count, r[0].rtt.sum_us), (4, 116_000));
        assert_eq!((r[0].rtt.min_us, r[0].rtt.max_us), (20_000, 40_000));
        let mut lc = closed(long);
        lc.flags |= sflag::CLOSED;
        t.observe_close(&lc, now);
        let r = t.finish_interval(now);
        assert_eq!(r[0].rtt.count, 0, "no new sample, none made up");
    }

    #[test]
    fn test_idle_eviction_after_65s() {
        let mut t = Tracker::new();
        let now = Instant::now();
        t.observe_map(&established(sock(1, role::CLIENT), 0, 0), now);
        t.finish_interval(now + Duration::from_secs(64));
        assert_eq!(t.sockets(), 1);
        t.finish_interval(now + Duration::from_secs(65));
        assert_eq!(t.sockets(), 0);
        assert_eq!(t.stats.evicted_idle, 1);
    }

    #[test]
    fn test_ipv4_mapped_reported_as_ipv4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[169, 254, 1, 2]);
        let mut w = [0u32; 4];
        for i in 0..4 {
            w[i] = u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        }
        assert_eq!(
            addr(AF_INET6, &w),
            IpAddr::V4(Ipv4Addr::new(169, 254, 1, 2))
        );
        w[2] = 0;
        assert!(addr(AF_INET6, &w).is_ipv6());
    }
}
