//! The sock_ops state machine: [`on_sock_ops`], generic over a [`SockOps`] context and an
//! [`Env`] (maps, clock, ring buffer), so the code compiled into the BPF object is the code
//! unit-tested on the host with the mock in `mock.rs`.

use crate::*;

/// The fields of a received segment's TCP header the RX callback uses (host order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpHeader {
    pub seq: u32,
    pub ack: u32,
    /// Header length with options, bytes (data offset × 4).
    pub len: u32,
}

/// Counters read from `bpf_sock_ops` in one go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub total_retrans: u32,
    /// Raw `srtt_us` (8 × smoothed RTT).
    pub srtt_us8: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
}

/// The parts of `bpf_sock_ops` the program reads. The BPF implementation reads each field with a
/// volatile load; the mock in tests returns fixed values.
pub trait SockOps {
    fn op(&self) -> u32;
    fn arg(&self, n: usize) -> u32;
    /// `sk_state` now (in STATE_CB: the old state).
    fn state(&self) -> u32;
    fn family(&self) -> u32;
    /// Local and remote address, network order, IPv4 in word 0.
    fn addrs(&self, family: u8) -> ([u32; 4], [u32; 4]);
    /// Local port (host order) and remote port (host order).
    fn ports(&self) -> (u16, u16);
    fn counters(&self) -> Counters;
    /// Raw `srtt_us` alone (the BPF implementation reads just this field).
    fn srtt_us8(&self) -> u32 {
        self.counters().srtt_us8
    }
    /// `total_retrans` alone.
    fn total_retrans(&self) -> u32 {
        self.counters().total_retrans
    }
    /// `bytes_received` alone.
    fn bytes_received(&self) -> u64 {
        self.counters().bytes_received
    }
    /// `data_segs_out` alone.
    fn data_segs_out(&self) -> u32 {
        self.counters().data_segs_out
    }
    /// PARSE_HDR_OPT_CB: length of the received segment (TCP header and payload).
    fn skb_len(&self) -> u32;
    /// PARSE_HDR_OPT_CB: TCP flags of the received segment.
    fn skb_tcp_flags(&self) -> u32;
    /// PARSE_HDR_OPT_CB: the received segment's TCP header, if readable.
    fn skb_header(&self) -> Option<TcpHeader>;
    /// `rcv_nxt` alone.
    fn rcv_nxt(&self) -> u32;
    /// `snd_una` alone.
    fn snd_una(&self) -> u32 {
        self.counters().snd_una
    }
    /// `snd_nxt` alone.
    fn snd_nxt(&self) -> u32 {
        self.counters().snd_nxt
    }
    /// `bytes_acked` alone.
    fn bytes_acked(&self) -> u64 {
        self.counters().bytes_acked
    }
    fn cookie(&self) -> u64;
    /// The socket's callback flags now.
    fn cb_flags(&self) -> u32;
    /// `bpf_sock_ops_cb_flags_set`; 0 on success.
    fn set_cb_flags(&self, flags: u32) -> i64;
}

/// Errors the map insert reports (negative errno).
pub const E2BIG: i64 = -7;
pub const EEXIST: i64 = -17;

/// Maps, clock and ring buffer.
pub trait Env {
    fn now_ns(&self) -> u64;
    /// The callback flags to enable on tracked sockets ([`cb_flag`]).
    fn cb_flags(&self) -> u32;
    /// `net.ipv4.tcp_syn_linear_timeouts` (0 before Linux 6.5: every SYN timeout doubles).
    fn syn_linear_timeouts(&self) -> u32;
    /// The interval user space is in (bumped just before it reads the map): tags the
    /// per-interval RTT minimum and maximum ([`SockStats::rtt_epoch`]).
    fn epoch(&self) -> u32;
    /// A pointer into the map value for `cookie`, valid for the rest of this program run.
    fn lookup(&self, cookie: u64) -> Option<*mut SockStats>;
    /// Inserts a new entry (BPF_NOEXIST); a negative errno on failure.
    fn insert(&self, cookie: u64, v: &SockStats) -> i64;
    fn remove(&self, cookie: u64);
    /// Stages an open event ([`stage`]); false when it could not be staged (the stage is full
    /// of records the ring buffer did not take).
    fn stage_open(&self, v: &OpenEvent) -> bool;
    /// The same for an IPv4 socket.
    fn stage_open4(&self, v: &OpenEvent4) -> bool;
    /// Sends a whole record (a close with samples, or a failed connect) through the ring
    /// buffer; false when the ring buffer is full.
    fn emit(&self, v: &SockStats) -> bool;
    /// Stages a close event ([`stage`]); false when it could not be staged (the stage is full
    /// of records the ring buffer did not take).
    fn stage(&self, v: &CloseEvent) -> bool;
    fn count(&self, counter: u32);
}

/// `sock_ops` return value: the program never changes the kernel's behaviour.
pub const RET: u32 = 1;

/// The sock_ops program body.
#[inline(always)]
pub fn on_sock_ops<C: SockOps, E: Env>(ctx: &C, env: &E) -> u32 {
    match ctx.op() {
        // Fires on every state change once enabled (four times per socket for a short
        // connection); only the close and this end's FIN matter. The common path is two context
        // loads and two compares.
        op::STATE_CB => match ctx.arg(1) {
            tcp_state::CLOSE => on_close(ctx, env),
            tcp_state::FIN_WAIT1 | tcp_state::LAST_ACK => on_fin_sent(ctx),
            _ => {}
        },
        op::PARSE_HDR_OPT_CB => on_rx(ctx, env),
        op::RTT_CB => on_rtt(ctx, env),
        op::RETRANS_CB => on_retrans(ctx, env),
        op::RTO_CB => on_rto(ctx, env),
        op::TCP_CONNECT_CB => on_connect(ctx, env),
        op::ACTIVE_ESTABLISHED_CB => register(ctx, env, role::CLIENT),
        op::PASSIVE_ESTABLISHED_CB => register(ctx, env, role::SERVER),
        _ => {}
    }
    RET
}

/// A fresh entry with the socket's identity.
#[inline(always)]
fn identity<C: SockOps>(ctx: &C, cookie: u64, role: u8) -> SockStats {
    let family = if ctx.family() == AF_INET6 as u32 {
        AF_INET6
    } else {
        AF_INET
    };
    let (local_addr, remote_addr) = ctx.addrs(family);
    let (local_port, remote_port) = ctx.ports();
    SockStats {
        cookie,
        local_addr,
        remote_addr,
        local_port,
        remote_port,
        family,
        role,
        ..SockStats::default()
    }
}

#[inline(always)]
fn refresh(s: &mut SockStats, c: &Counters, state: u32) {
    s.bytes_acked = c.bytes_acked;
    s.bytes_received = c.bytes_received;
    s.data_segs_in = c.data_segs_in;
    s.data_segs_out = c.data_segs_out;
    s.total_retrans = c.total_retrans;
    s.srtt_us = c.srtt_us8 >> 3;
    s.last_state = state as u8;
    s.fin_acked = (fin_sent(state) && c.snd_una == c.snd_nxt) as u8;
}

/// States in which this end has sent its FIN.
#[inline(always)]
fn fin_sent(state: u32) -> bool {
    matches!(
        state,
        tcp_state::FIN_WAIT1
            | tcp_state::FIN_WAIT2
            | tcp_state::CLOSING
            | tcp_state::LAST_ACK
            | tcp_state::TIME_WAIT
    )
}

/// The initial SYN retransmission timeout (`TCP_TIMEOUT_INIT`), µs.
pub const SYN_RTO_US: u32 = 1_000_000;

/// SYN retransmissions counted by [`client_handshake_us`] (the kernel's default
/// `tcp_syn_retries` is 6; more cannot be told apart from an RTO cap anyway).
pub const MAX_SYN_RETRANS: u32 = 12;

/// Client handshake time from what the kernel knows at ACTIVE_ESTABLISHED: the first RTT sample
/// (SYN → SYN-ACK; with timestamps, measured from the SYN that was answered) plus the waits of
/// the SYNs that timed out. Since Linux 6.5 the first `linear` timeouts
/// (`net.ipv4.tcp_syn_linear_timeouts`, default 4) do not back off: the SYN is resent 1 s apart
/// until the timeout that follows the `linear`-th, then the wait doubles (2 s, 4 s …). Before 6.5
/// (`linear` = 0) every wait doubles: 1 s, 2 s, 4 s …. So the waits before resends 1..=n are
/// 1 s × 2^max(0, k − 1 − linear), whose sum is min(n, linear + 1) s plus, past that,
/// (2^(n − linear) − 2) s.
#[inline(always)]
pub fn client_handshake_us(srtt_us: u32, syn_retrans: u32, linear: u32) -> u32 {
    let n = if syn_retrans > MAX_SYN_RETRANS {
        MAX_SYN_RETRANS
    } else {
        syn_retrans
    };
    let flat = if n < linear + 1 { n } else { linear + 1 };
    let backed_off = if n > linear + 1 {
        // n − linear ≤ 12 here (linear ≥ 0, n ≤ 12): no overflow.
        (1u32 << (n - linear)) - 2
    } else {
        0
    };
    srtt_us.saturating_add(SYN_RTO_US.saturating_mul(flat + backed_off))
}

/// A client's connect: only enable the callbacks that matter before the handshake completes
/// (STATE for a failed connect, RETRANS/RTO for SYN timeouts). The socket is registered at
/// ACTIVE_ESTABLISHED, so a connection costs one map insert, and a connect that fails is reported
/// by its close event alone (identity and counters read from the context).
#[inline(always)]
fn on_connect<C: SockOps, E: Env>(ctx: &C, env: &E) {
    if ctx.set_cb_flags(env.cb_flags() & !cb_flag::RTT) != 0 {
        env.count(counter::CB_FLAGS_FAILED);
    }
}

/// Announces an established socket (both roles) through the ring buffer. No map insert: a hash
/// insert costs about 350 ns here, four times the rest of the program's work for a connection,
/// and most connections close before user space would ever read their entry. User space inserts
/// the entry itself for sockets still open when it reads the event. Only when the ring buffer is
/// full does the program insert the entry (so nothing is lost).
#[inline(always)]
fn register<C: SockOps, E: Env>(ctx: &C, env: &E, role: u8) {
    // Enable the callbacks first: even if nothing else works, the close is still seen.
    if ctx.set_cb_flags(env.cb_flags()) != 0 {
        env.count(counter::CB_FLAGS_FAILED);
    }
    let cookie = ctx.cookie();
    let family = if ctx.family() == AF_INET6 as u32 {
        AF_INET6
    } else {
        AF_INET
    };
    let (local_addr, remote_addr) = ctx.addrs(family);
    let (local_port, remote_port) = ctx.ports();
    // No clock read here: the handshake time comes from the kernel's own RTT measurement. The
    // handshake's RTT measurement is the first sample (RTT_CB is enabled only now, so it is
    // never counted twice). SYN (client) or SYN-ACK (server, sent by the request socket)
    // retransmissions are in `total_retrans`; each was a timeout.
    let rtt = ctx.srtt_us8() >> 3;
    let total_retrans = ctx.total_retrans();
    let open = OpenEvent {
        cookie,
        local_addr,
        remote_addr,
        local_port,
        remote_port,
        family,
        role,
        flags: sflag::ESTABLISHED,
        event: event::OPEN,
        handshake_us: if role == role::CLIENT {
            client_handshake_us(rtt, total_retrans, env.syn_linear_timeouts())
        } else {
            // The child socket exists only once the handshake is done: its first RTT sample
            // is the SYN-ACK → ACK round trip.
            rtt
        },
        srtt_us: rtt,
        total_retrans,
        seq: 0,
        seq_end: 0,
    };
    let staged = if family == AF_INET {
        env.stage_open4(&OpenEvent4::of(&open))
    } else {
        env.stage_open(&open)
    };
    if staged {
        return;
    }
    env.count(counter::RINGBUF_FULL);
    let mut s = open.to_stats();
    s.event = 0;
    let r = env.insert(cookie, &s);
    if r == 0 {
        mark(ctx);
        env.count(counter::REGISTERED);
    } else if r == E2BIG {
        env.count(counter::MAP_FULL);
    } else {
        env.count(counter::MAP_UPDATE_FAILED);
    }
}

/// Data segments (in + out) a socket must have carried before its RTT samples are kept.
///
/// Why a gate: RTT_CB fires about once per round trip, also on a connection that lives for two
/// round trips, and keeping a sample needs the socket's map entry: a hash lookup that misses a
/// cold bucket costs ~150 ns, an insert ~350 ns. A connection that closes below the gate is
/// reported with its final smoothed RTT as its one sample (user space, from the close event:
/// [`SockStats::srtt_us`]), which is what the kernel's own estimate converged to over all its
/// samples. Past the gate the program keeps every sample, creating the entry if user space has
/// not inserted it yet, so a socket's samples never depend on when an interval ended.
pub const RTT_GATE_SEGS: u32 = 16;

/// Adds one RTT sample to an entry: sum and count, and the minimum and maximum of the interval
/// `epoch` (the first sample of a new interval restarts them).
#[inline(always)]
pub fn add_rtt_sample(s: &mut SockStats, sample: u32, epoch: u32) {
    s.rtt_sum_us += sample as u64;
    if s.rtt_epoch != epoch || s.rtt_count == 0 {
        s.rtt_epoch = epoch;
        s.rtt_min_us = sample;
        s.rtt_max_us = sample;
    } else {
        if sample < s.rtt_min_us {
            s.rtt_min_us = sample;
        }
        if sample > s.rtt_max_us {
            s.rtt_max_us = sample;
        }
    }
    s.rtt_count += 1;
}

#[inline(always)]
fn on_rtt<C: SockOps, E: Env>(ctx: &C, env: &E) {
    let c = ctx.counters();
    if c.data_segs_in.wrapping_add(c.data_segs_out) < RTT_GATE_SEGS {
        return;
    }
    let cookie = ctx.cookie();
    let state = ctx.state();
    let Some(p) = env
        .lookup(cookie)
        .or_else(|| adopt(ctx, env, cookie, state))
    else {
        return;
    };
    // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
    let s = unsafe { &mut *p };
    // The sample is the kernel's smoothed RTT after this measurement (what `ss` and TCP_INFO
    // show, and what a connection below the gate reports at its close), not the raw
    // measurement: a raw sample is one ACK's view (delayed ACKs, a queue's momentary depth) and
    // a mean of raw samples runs far from the kernel's estimate while a queue builds (156 ms
    // against an srtt of 35 ms in the kernel test). Since Linux 6.10 arg1 is the new srtt
    // (8×); older kernels pass nothing and the context's srtt is already updated.
    let mut srtt8 = ctx.arg(1);
    if srtt8 == 0 {
        srtt8 = c.srtt_us8;
    }
    let sample = srtt8 >> 3;
    add_rtt_sample(s, sample, env.epoch());
    refresh(s, &c, state);
    s.srtt_us = sample;
}

/// Live counters of a receiving socket are refreshed once per this many bytes received
/// (2^14 = 16 KiB): the refresh costs a hash lookup (and, the first time, an insert), the
/// gate two context loads. Between refreshes the entry lags the kernel by less than 16 KiB
/// plus the segment being received.
pub const RX_REFRESH_SHIFT: u32 = 14;

/// A segment arrived ([`cb_flag::RX`]). The only callback a pure receiver gets while it lives
/// (RTT samples come from ACKs of data this end sent), so its live bytes are refreshed here,
/// each time the bytes received cross a multiple of 2^[`RX_REFRESH_SHIFT`]; a sender's too,
/// each time an ACK takes its bytes acknowledged across one (RTT samples alone can be a round
/// trip apart: 100 KB at 8 Mbit/s in the kernel test). The callback runs before the kernel
/// processes the segment, so the entry gets the counters as this segment leaves them: in-order
/// data (sequence = `rcv_nxt`) is added to bytes received, a valid ACK's advance (past
/// `snd_una`, not past `snd_nxt`) to bytes acknowledged, exactly as the kernel is about to
/// (a segment the kernel then drops for want of receive memory is over-reported until the next
/// refresh; a 64 KB segment would otherwise leave the entry 64 KB behind). The peer's FIN ends
/// the callback (nothing more can arrive); that the flag is off then also tells the close that
/// the FIN came (see [`close_kind_at`]).
#[inline(always)]
fn on_rx<C: SockOps, E: Env>(ctx: &C, env: &E) {
    if ctx.skb_tcp_flags() & tcp_flag::FIN != 0 {
        let f = ctx.cb_flags();
        let _ = ctx.set_cb_flags(f & !cb_flag::RX);
        return;
    }
    let Some(h) = ctx.skb_header() else {
        return;
    };
    let received = ctx.bytes_received();
    let payload = ctx.skb_len().saturating_sub(h.len) as u64;
    let rx_after = if payload > 0 && h.seq == ctx.rcv_nxt() {
        received + payload
    } else {
        received
    };
    let acked = ctx.bytes_acked();
    let una = ctx.snd_una();
    let nxt = ctx.snd_nxt();
    let advance = h.ack.wrapping_sub(una);
    let valid_ack = advance as i32 > 0 && advance <= nxt.wrapping_sub(una);
    let tx_after = if valid_ack {
        acked + advance as u64
    } else {
        acked
    };
    if ((received ^ rx_after) | (acked ^ tx_after)) >> RX_REFRESH_SHIFT == 0 {
        return;
    }
    let cookie = ctx.cookie();
    let state = ctx.state();
    let Some(p) = env
        .lookup(cookie)
        .or_else(|| adopt(ctx, env, cookie, state))
    else {
        return;
    };
    // The close must look the entry up (a receiver may be below the RTT gate).
    mark(ctx);
    // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
    let s = unsafe { &mut *p };
    refresh(s, &ctx.counters(), state);
    s.bytes_received = rx_after;
    s.bytes_acked = tx_after;
    if valid_ack {
        s.fin_acked = (fin_sent(state) && h.ack == nxt) as u8;
    }
}

/// This end sent its FIN. A socket below the RTT gate takes no more RTT samples (the ACK of the
/// FIN would cost a callback on every short connection, whose close carries the final smoothed
/// RTT anyway). A socket past the gate keeps them: a sender that shuts its write side down
/// right after its last write has most of its data still in flight, and those round trips are
/// its RTT. Half-closed servers (CLOSE_WAIT) that still send keep their samples too.
#[inline(always)]
fn on_fin_sent<C: SockOps>(ctx: &C) {
    let f = ctx.cb_flags();
    if f & cb_flag::RTT != 0 && ctx.data_segs_out() < RTT_GATE_SEGS {
        let _ = ctx.set_cb_flags(f & !cb_flag::RTT);
    }
}

/// Sets [`cb_flag::MARK`] on the socket (once).
#[inline(always)]
fn mark<C: SockOps>(ctx: &C) {
    let f = ctx.cb_flags();
    if f & cb_flag::MARK == 0 {
        let _ = ctx.set_cb_flags(f | cb_flag::MARK);
    }
}

/// The entry of an established socket user space has not inserted yet: created here (flag
/// ADOPTED) so a retransmission, a timeout, an RTT sample past the gate or a receiver's refresh
/// is never lost. Its per-phase counts start at zero and its `total_retrans` at the kernel's
/// total now, so every later retransmission is counted exactly (see [`on_retrans`]); what the
/// kernel counted before (the handshake's, in the open event, and the retransmission being
/// reported if the entry is created for it) is attributed by user space, to the handshake and
/// to [`SockStats::adopt_phase`].
#[inline(always)]
fn adopt<C: SockOps, E: Env>(ctx: &C, env: &E, cookie: u64, state: u32) -> Option<*mut SockStats> {
    if state == tcp_state::SYN_SENT || state == tcp_state::SYN_RECV {
        // Before the open event: the handshake's retransmissions are read from total_retrans
        // when the socket is established (or closes), so nothing is kept here.
        return None;
    }
    let (lp, rp) = ctx.ports();
    let role = if lp > rp { role::CLIENT } else { role::SERVER };
    let mut s = identity(ctx, cookie, role);
    s.flags = sflag::ADOPTED | sflag::ESTABLISHED;
    s.adopt_phase = phase_of(state) as u8;
    refresh(&mut s, &ctx.counters(), state);
    let r = env.insert(cookie, &s);
    if r == E2BIG {
        env.count(counter::MAP_FULL);
    } else if r != 0 && r != EEXIST {
        env.count(counter::MAP_UPDATE_FAILED);
    }
    env.lookup(cookie)
}

/// The entry an RTO event counts into: the socket's own, or one adopted for a socket the program
/// has no entry for; the socket is marked so its close is looked up. Also returns the TCP state
/// the event happened in. `None`: the socket cannot be tracked (counted by `adopt`).
#[inline(always)]
fn event_entry<C: SockOps, E: Env>(ctx: &C, env: &E) -> Option<(*mut SockStats, u32)> {
    let cookie = ctx.cookie();
    let state = ctx.state();
    let p = env
        .lookup(cookie)
        .or_else(|| adopt(ctx, env, cookie, state))?;
    mark(ctx);
    Some((p, state))
}

/// A retransmission: counted as the kernel counts it in `total_retrans` (what TCP_INFO's
/// `tcpi_total_retrans` and the namespace's `RetransSegs` show). The kernel adds the skb's
/// segments to its total before it transmits, so a retransmission the qdisc then drops (arg2
/// non-zero: a full queue at a bottleneck) is counted, and one it never tried (`-EBUSY`: the
/// original still in the host queue) is not. Rather than decode arg2, the program adds the
/// increase of `total_retrans` since this entry last saw it, in the phase the socket is in.
#[inline(always)]
fn on_retrans<C: SockOps, E: Env>(ctx: &C, env: &E) {
    let cookie = ctx.cookie();
    let state = ctx.state();
    let total = ctx.total_retrans();
    let p = match env.lookup(cookie) {
        Some(p) => {
            // SAFETY: the pointer is a map value, valid for this program run.
            let s = unsafe { &mut *p };
            let new = total.wrapping_sub(s.total_retrans);
            if (new as i32) > 0 {
                if let Some(slot) = s.retrans.get_mut(phase_of(state)) {
                    *slot += new;
                }
            }
            p
        }
        // Created with the total as it is now: user space attributes this one (see `adopt`).
        None => match adopt(ctx, env, cookie, state) {
            Some(p) => p,
            None => return,
        },
    };
    mark(ctx);
    // SAFETY: as above.
    let s = unsafe { &mut *p };
    s.total_retrans = total;
}

#[inline(always)]
fn on_rto<C: SockOps, E: Env>(ctx: &C, env: &E) {
    let Some((p, state)) = event_entry(ctx, env) else {
        return;
    };
    // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
    let s = unsafe { &mut *p };
    if let Some(slot) = s.rto.get_mut(phase_of(state)) {
        *slot += 1;
    }
}

/// The close: final counters into the entry, the entry into the ring buffer. The entry is not
/// deleted here (a hash delete is the costliest step of a close): it is flagged CLOSED and user
/// space deletes it in batches after reading the event (or reads the close from the map when the
/// ring buffer was full). Without an entry (the usual case for a short connection) the event is
/// built from the context.
#[inline(always)]
fn on_close<C: SockOps, E: Env>(ctx: &C, env: &E) {
    let old = ctx.arg(0);
    let cookie = ctx.cookie();
    let c = ctx.counters();
    // Only a socket that passed the RTT gate or is marked can have counts in an entry that its
    // events do not carry; for all others the hash lookup (a cold bucket, ~150 ns) is skipped
    // and the close is built from the context. User space combines it with the open event and
    // deletes the entry it may have inserted.
    let segs = c.data_segs_in.wrapping_add(c.data_segs_out);
    let entry = if segs >= RTT_GATE_SEGS || ctx.cb_flags() & cb_flag::MARK != 0 {
        env.lookup(cookie)
    } else {
        None
    };
    match entry {
        Some(p) => {
            // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
            let s = unsafe { &mut *p };
            finish(s, &c, old, close_kind_at(ctx, env, old));
            s.flags |= sflag::CLOSED;
            if env.emit(s) {
                env.count(counter::CLOSE_EVENTS);
            } else {
                env.count(counter::RINGBUF_FULL);
            }
            s.event = 0;
        }
        None => {
            // User space knows the role from the open event; for a connect that never
            // completed it is the client; otherwise the ephemeral (higher) port is the client's.
            let (lp, rp) = ctx.ports();
            let established = old != tcp_state::SYN_SENT && old != tcp_state::SYN_RECV;
            let role = if !established || lp > rp {
                role::CLIENT
            } else {
                role::SERVER
            };
            if established {
                // The open event carried the addresses: only the final counters are staged.
                let ev = CloseEvent {
                    seq: 0,
                    cookie,
                    bytes_acked: c.bytes_acked,
                    bytes_received: c.bytes_received,
                    data_segs_in: c.data_segs_in,
                    data_segs_out: c.data_segs_out,
                    total_retrans: c.total_retrans,
                    srtt_us: c.srtt_us8 >> 3,
                    role,
                    close_kind: close_kind_at(ctx, env, old),
                    last_state: old as u8,
                    fin_acked: (fin_sent(old) && c.snd_una == c.snd_nxt) as u8,
                    seq_end: 0,
                };
                if env.stage(&ev) {
                    return;
                }
            }
            let mut s = identity(ctx, cookie, role);
            s.flags = sflag::UNTRACKED | sflag::CLOSED;
            finish(&mut s, &c, old, close_kind_at(ctx, env, old));
            if established {
                // Stage full of records the ring buffer did not take: to the map below.
            } else if env.emit(&s) {
                env.count(counter::CLOSE_EVENTS);
                return;
            }
            // Ring buffer full: leave the close in the map for the next interval read.
            s.event = 0;
            if env.insert(cookie, &s) == 0 {
                env.count(counter::RINGBUF_FULL);
            } else {
                env.count(counter::CLOSE_LOST);
            }
        }
    }
}

/// How a socket closed, from the state it left ([`close_kind_of`]) and, for FIN_WAIT2, whether
/// the peer's FIN arrived: FIN_WAIT2 → CLOSE is the normal end after the peer's FIN (the socket
/// becomes a time-wait socket), but also a reset after our half-close, or the orphan timeout of
/// a peer that never sent its FIN. The program turns [`cb_flag::RX`] off when the FIN arrives
/// ([`on_rx`]), so with RX enabled a FIN_WAIT2 socket that still has it was severed.
#[inline(always)]
pub fn close_kind_at<C: SockOps, E: Env>(ctx: &C, env: &E, old: u32) -> u8 {
    if old == tcp_state::FIN_WAIT2
        && env.cb_flags() & cb_flag::RX != 0
        && ctx.cb_flags() & cb_flag::RX != 0
    {
        return close_kind::SEVERED;
    }
    close_kind_of(old)
}

/// Final counters and close kind. Retransmissions are reconciled with the kernel's total in user
/// space (see [`reconcile`]), which also knows the socket's open event.
#[inline(always)]
fn finish(s: &mut SockStats, c: &Counters, old: u32, kind: u8) {
    refresh(s, c, old);
    s.close_kind = kind;
    s.event = event::CLOSE;
    if old != tcp_state::SYN_SENT && old != tcp_state::SYN_RECV {
        s.flags |= sflag::ESTABLISHED;
    }
}

/// Makes a close's per-phase retransmissions add up to the kernel's `total_retrans`: whatever the
/// callbacks did not see (before they were enabled, or before the socket had an entry) is
/// attributed to the phase the socket closed in. A connect that never completed had only SYN
/// retransmissions, each a timeout.
pub fn reconcile(s: &mut SockStats) {
    let seen: u32 = s.retrans.iter().fold(0u32, |a, b| a.wrapping_add(*b));
    let old = s.last_state as u32;
    if s.total_retrans > seen {
        if let Some(slot) = s.retrans.get_mut(phase_of(old)) {
            *slot += s.total_retrans - seen;
        }
    }
    if old == tcp_state::SYN_SENT && s.rto[phase::HANDSHAKE] < s.total_retrans {
        s.rto[phase::HANDSHAKE] = s.total_retrans;
    }
}

/// Payload bytes (sent, received) from the sequence-space counters, as measured on this kernel:
/// - `bytes_acked` counts our SYN on an active open (the SYN-ACK's ack goes through
///   `tcp_snd_una_update`), but not on a passive open (the child starts with `snd_una` past its
///   SYN-ACK); it counts our FIN once acknowledged.
/// - `bytes_received` never counts the peer's SYN (`rcv_nxt` is set, not advanced) and counts
///   its FIN once received.
pub fn payload(s: &SockStats) -> (u64, u64) {
    let established = s.flags & sflag::ESTABLISHED != 0;
    let syn = (established && s.role == role::CLIENT) as u64;
    let fin_out = s.fin_acked as u64;
    let st = s.last_state as u32;
    // The peer's FIN has arrived in these states; FIN_WAIT2 → CLOSE happens on the peer's FIN
    // (then the close is COMPLETED), or on a reset or the orphan timeout (SEVERED: no FIN came;
    // see `close_kind_at`).
    let fin_in = match st {
        tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK | tcp_state::CLOSING | tcp_state::TIME_WAIT => {
            1
        }
        tcp_state::FIN_WAIT2 if s.close_kind == close_kind::COMPLETED => 1,
        _ => 0,
    };
    (
        s.bytes_acked.saturating_sub(syn + fin_out),
        s.bytes_received.saturating_sub(fin_in),
    )
}

#[cfg(test)]
mod test {
    extern crate std;
    use super::*;
    use crate::mock::*;
    use std::vec::Vec;

    /// A client connects, exchanges 100 bytes each way and closes in order, without ever
    /// touching the map.
    #[test]
    fn test_short_client_lifecycle_uses_no_map() {
        let env = Mock::new(16, 16);
        established_client(&env, 7, 240, 0);
        assert!(env.map.borrow().is_empty(), "no map insert");
        let open = events(&env, event::OPEN);
        assert_eq!(open.len(), 1);
        let s = open[0];
        assert_eq!(s.role, role::CLIENT);
        assert_eq!((s.local_port, s.remote_port), (40000, 80));
        assert_eq!(s.local_addr[0], 0x0100_a8c0);
        assert_eq!(s.handshake_us, 240);
        assert_eq!(
            (s.srtt_us, s.rtt_count),
            (240, 0),
            "the handshake is not an RTT sample"
        );
        // RTT samples below the gate are not kept (the close's srtt stands for them).
        let mut r = Ctx::new(op::RTT_CB, 7);
        r.args = [100, 800, 0, 0];
        run(&r, &env);
        let c = Counters {
            bytes_acked: 102,
            bytes_received: 101,
            data_segs_in: 1,
            data_segs_out: 1,
            srtt_us8: 8 * 300,
            snd_una: 500,
            snd_nxt: 500,
            ..Counters::default()
        };
        run(
            &state_cb(7, tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, c),
            &env,
        );
        assert!(
            events(&env, event::CLOSE).is_empty(),
            "intermediate states do nothing"
        );
        run(
            &state_cb(7, tcp_state::FIN_WAIT2, tcp_state::CLOSE, c),
            &env,
        );
        let close = events(&env, event::CLOSE);
        assert_eq!(close.len(), 1);
        let ev = close[0];
        assert_eq!(ev.flags & sflag::UNTRACKED, sflag::UNTRACKED);
        assert_eq!(ev.role, role::CLIENT);
        assert_eq!(ev.close_kind, close_kind::COMPLETED);
        assert_eq!(ev.srtt_us, 300);
        assert_eq!(payload(&ev), (100, 100));
        // Staged events are counted by the stages, not by the counters.
        assert_eq!(env.n(counter::REGISTERED), 0);
        assert_eq!(env.n(counter::CLOSE_EVENTS), 0);
        assert!(env.map.borrow().is_empty());
    }

    /// A long-lived socket: user space inserts its entry; the close comes from the entry.
    #[test]
    fn test_adopted_by_user_space_then_closed_from_entry() {
        let env = Mock::new(16, 16);
        established_client(&env, 7, 240, 0);
        adopt_open(&env, 7);
        let mut r = Ctx::new(op::RTT_CB, 7);
        r.args = [100, 800, 0, 0];
        run(&r, &env);
        assert_eq!(
            env.get(7).unwrap().rtt_count,
            0,
            "gated: too few segments yet"
        );
        r.c.data_segs_out = RTT_GATE_SEGS - 1;
        r.c.data_segs_in = 1;
        run(&r, &env);
        assert_eq!(env.get(7).unwrap().rtt_count, 1);
        run(
            &state_cb(
                7,
                tcp_state::LAST_ACK,
                tcp_state::CLOSE,
                Counters {
                    data_segs_out: RTT_GATE_SEGS,
                    ..Counters::default()
                },
            ),
            &env,
        );
        let close = events(&env, event::CLOSE);
        assert_eq!(close[0].flags & sflag::UNTRACKED, 0);
        assert_eq!(close[0].rtt_count, 1);
        let kept = env.get(7).unwrap();
        assert_eq!(
            kept.flags & sflag::CLOSED,
            sflag::CLOSED,
            "user space deletes it"
        );
        assert_eq!(kept.event, 0);
    }

    /// SYN timeouts: linear for the first `tcp_syn_linear_timeouts` (Linux 6.5+, default 4:
    /// connect() took 3.07 s with three resends, the old exponential formula said 7 s), then
    /// doubling; all doubling with 0 (older kernels).
    #[test]
    fn test_client_handshake_includes_syn_timeouts() {
        let s = 1_000_000;
        for (n, linear4, exponential) in [
            (0, 0, 0),
            (1, 1, 1),
            (2, 2, 3),
            (3, 3, 7),
            (4, 4, 15),
            (5, 5, 31),
            (6, 7, 63),
            (7, 11, 127),
        ] {
            assert_eq!(
                client_handshake_us(500, n, 4),
                500 + linear4 * s,
                "{n} linear"
            );
            assert_eq!(
                client_handshake_us(500, n, 0),
                500 + exponential * s,
                "{n} exp"
            );
        }
        // Boundaries: linear 1 (one flat wait after the first timeout), and no overflow.
        assert_eq!(client_handshake_us(0, 3, 1), (1 + 1 + 2) * s);
        assert_eq!(client_handshake_us(0, 1000, 0), 4_095 * s);
        assert_eq!(client_handshake_us(7, 1000, u32::MAX - 1), 7 + 12 * s);
        let env = Mock::new(16, 16);
        established_client(&env, 1, 700, 3);
        let o = events(&env, event::OPEN)[0];
        assert_eq!(o.handshake_us, 3_000_700);
        assert_eq!((o.retrans, o.rto), ([3, 0, 0], [3, 0, 0]));
    }

    #[test]
    fn test_server_registers_with_handshake_retrans() {
        let env = Mock::new(16, 16);
        let mut ctx = Ctx::new(op::PASSIVE_ESTABLISHED_CB, 9);
        ctx.c.total_retrans = 2;
        ctx.c.srtt_us8 = 8 * 1000;
        run(&ctx, &env);
        let s = events(&env, event::OPEN)[0];
        assert_eq!(s.role, role::SERVER);
        assert_eq!(s.retrans, [2, 0, 0]);
        assert_eq!(s.rto, [2, 0, 0]);
        assert_eq!(s.handshake_us, 1000);
        assert_eq!(ctx.flags_set.get(), cb_flag::DEFAULT);
    }

    /// Retransmissions count as the kernel's total_retrans does: one the qdisc dropped (arg2
    /// non-zero, total increased) counts, one never tried (-EBUSY, total unchanged) does not.
    #[test]
    fn test_retrans_and_rto_split_by_phase() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 100, 1);
        adopt_open(&env, 1);
        let mut total = 1;
        for (state, segs, err) in [
            (tcp_state::ESTABLISHED, 3, 0),
            (tcp_state::ESTABLISHED, 2, 1), // NET_XMIT_DROP: counted by the kernel
            (tcp_state::ESTABLISHED, 4, (-16i32) as u32), // -EBUSY: not counted
            (tcp_state::FIN_WAIT1, 1, 0),
            (tcp_state::LAST_ACK, 1, (-105i32) as u32), // -ENOBUFS after the count
        ] {
            if err != (-16i32) as u32 {
                total += segs;
            }
            let mut r = Ctx::new(op::RETRANS_CB, 1);
            r.state = state;
            r.args = [1234, segs, err, 0];
            r.c.total_retrans = total;
            run(&r, &env);
            let mut t = Ctx::new(op::RTO_CB, 1);
            t.state = state;
            run(&t, &env);
        }
        let s = env.get(1).unwrap();
        assert_eq!(s.retrans, [1, 5, 2]);
        assert_eq!(s.retrans.iter().sum::<u32>(), total);
        assert_eq!(s.total_retrans, total);
        assert_eq!(s.rto, [1, 3, 2]);
    }

    /// A retransmission before user space inserted the entry: the program creates it.
    #[test]
    fn test_retransmission_adopts_the_socket() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 100, 0);
        let mut r = Ctx::new(op::RETRANS_CB, 1);
        r.args = [1234, 2, 0, 0];
        r.c.total_retrans = 2;
        run(&r, &env);
        let s = env.get(1).unwrap();
        assert_eq!(s.flags & sflag::ADOPTED, sflag::ADOPTED);
        // This one is in the total: user space attributes it to the adoption's phase.
        assert_eq!((s.retrans, s.total_retrans), ([0, 0, 0], 2));
        assert_eq!(s.adopt_phase as usize, phase::ESTABLISHED);
        // The next one is counted by the program.
        r.c.total_retrans = 3;
        run(&r, &env);
        assert_eq!(env.get(1).unwrap().retrans, [0, 1, 0]);
        assert_eq!(
            r.flags_set.get() & cb_flag::MARK,
            cb_flag::MARK,
            "close will look it up"
        );
        // In SYN_SENT nothing is adopted: the SYN retransmissions are in total_retrans.
        run(&Ctx::new(op::TCP_CONNECT_CB, 2), &env);
        let mut t = Ctx::new(op::RTO_CB, 2);
        t.state = tcp_state::SYN_SENT;
        run(&t, &env);
        assert!(env.get(2).is_none());
    }

    #[test]
    fn test_rtt_samples_min_max_sum() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 200, 0);
        adopt_open(&env, 1);
        for (mrtt, srtt) in [(100, 100), (300, 125), (50, 115)] {
            let mut r = Ctx::new(op::RTT_CB, 1);
            r.c.data_segs_out = RTT_GATE_SEGS;
            r.args = [mrtt, srtt * 8, 0, 0];
            r.c.srtt_us8 = 8 * 999; // the old value: arg1 wins
            run(&r, &env);
        }
        // The samples are the smoothed RTT after each measurement (arg1), not the raw one.
        let s = env.get(1).unwrap();
        assert_eq!(
            (s.rtt_count, s.rtt_sum_us, s.rtt_min_us, s.rtt_max_us),
            (3, 340, 100, 125)
        );
        assert_eq!(s.srtt_us, 115);
        // Old kernels pass no arguments: the smoothed RTT is the sample. A new interval
        // (epoch) restarts the minimum and maximum; sum and count go on.
        env.epoch.set(1);
        let mut r = Ctx::new(op::RTT_CB, 1);
        r.c.data_segs_in = RTT_GATE_SEGS;
        r.c.srtt_us8 = 8 * 70;
        run(&r, &env);
        let s = env.get(1).unwrap();
        assert_eq!((s.rtt_count, s.rtt_sum_us, s.srtt_us), (4, 410, 70));
        assert_eq!((s.rtt_epoch, s.rtt_min_us, s.rtt_max_us), (1, 70, 70));
    }

    /// Past the gate a socket's samples are kept from the first one, also before user space
    /// inserted its entry (the program creates it).
    #[test]
    fn test_rtt_past_gate_adopts_the_socket() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 200, 0);
        let mut r = Ctx::new(op::RTT_CB, 1);
        r.c.data_segs_out = RTT_GATE_SEGS;
        r.c.bytes_acked = 30_000;
        r.args = [30_000, 8 * 26_000, 0, 0];
        run(&r, &env);
        let s = env.get(1).expect("adopted");
        assert_eq!(s.flags & sflag::ADOPTED, sflag::ADOPTED);
        assert_eq!(
            (s.rtt_count, s.rtt_sum_us, s.bytes_acked),
            (1, 26_000, 30_000)
        );
    }

    /// A pure receiver's counters are refreshed each time in-order data takes its bytes
    /// received across a 16 KiB multiple (the entry is created the first time), with the
    /// segment counted as the kernel is about to; pure ACKs, out-of-order data and segments
    /// within the same 16 KiB do nothing; a sender is refreshed likewise by a valid ACK; the
    /// peer's FIN turns the callback off.
    #[test]
    fn test_receiver_refreshes_every_16k_and_fin_ends_it() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 200, 0);
        // (bytes received, rcv_nxt, segment seq, payload, flags)
        let rx = |received: u64, rcv_nxt: u32, seq: u32, payload: u32, flags: u32| {
            let mut c = Ctx::new(op::PARSE_HDR_OPT_CB, 1);
            c.c.bytes_received = received;
            c.rcv_nxt = rcv_nxt;
            c.skb_len = 32 + payload;
            c.skb_flags = flags;
            c.skb_hdr = Some(TcpHeader {
                seq,
                ack: 0,
                len: 32,
            });
            c.flags_set.set(cb_flag::DEFAULT);
            run(&c, &env);
            c
        };
        rx(1, 1, 1, 1448, 0x10);
        rx(14_000, 900, 900, 1448, 0x10);
        assert!(env.get(1).is_none(), "below the first 16 KiB: nothing");
        // Pure ACKs never pass, even right below a boundary; nor out-of-order data.
        rx(16_380, 7, 7, 0, 0x10);
        rx(16_000, 7, 9_000, 1448, 0x10);
        assert!(env.get(1).is_none());
        let c = rx(16_000, 7, 7, 1448, 0x10);
        let s = env.get(1).expect("crossing 16 KiB creates the entry");
        assert_eq!(s.bytes_received, 17_448, "this segment included");
        assert_eq!(c.flags_set.get() & cb_flag::MARK, cb_flag::MARK);
        rx(20_000, 7, 7, 1448, 0x10);
        assert_eq!(env.get(1).unwrap().bytes_received, 17_448, "same 16 KiB");
        rx(32_000, u32::MAX - 5, u32::MAX - 5, 65_000, 0x10);
        assert_eq!(
            env.get(1).unwrap().bytes_received,
            97_000,
            "a 64 KB segment, seq wrap"
        );
        // A sender: a valid ACK taking its bytes acknowledged across 16 KiB refreshes it; one
        // within the same 16 KiB, a duplicate ACK, or one past snd_nxt does not.
        let ack = |acked: u64, una: u32, nxt: u32, ack: u32| {
            let mut c = Ctx::new(op::PARSE_HDR_OPT_CB, 1);
            c.c.bytes_received = 97_000;
            c.c.bytes_acked = acked;
            c.c.snd_una = una;
            c.c.snd_nxt = nxt;
            c.skb_len = 32;
            c.skb_flags = 0x10;
            c.skb_hdr = Some(TcpHeader {
                seq: 0,
                ack,
                len: 32,
            });
            run(&c, &env);
        };
        ack(40_000, 5_000, 50_000, 5_000 + 2_000);
        assert_eq!(env.get(1).unwrap().bytes_acked, 0, "same 16 KiB");
        ack(40_000, 5_000, 50_000, 5_000);
        assert_eq!(env.get(1).unwrap().bytes_acked, 0, "duplicate ACK");
        ack(40_000, 5_000, 6_000, 5_000 + 9_000);
        assert_eq!(
            env.get(1).unwrap().bytes_acked,
            0,
            "acks what was never sent"
        );
        ack(48_000, u32::MAX - 10, 30_000, 2_000); // across 48 KiB and the sequence wrap
        assert_eq!(env.get(1).unwrap().bytes_acked, 48_000 + 2_011);
        let fin = rx(97_001, 7, 7, 0, 0x11);
        assert_eq!(fin.flags_set.get() & cb_flag::RX, 0, "FIN: RX off");
    }

    /// FIN_WAIT2 → CLOSE: completed if the peer's FIN arrived (RX turned off), severed if RX is
    /// still on (a reset after our half-close, or an orphan timeout): then no FIN is taken off
    /// the bytes received.
    #[test]
    fn test_reset_after_half_close_is_severed() {
        for (rx_on, kind, received) in [
            (false, close_kind::COMPLETED, 100),
            (true, close_kind::SEVERED, 101),
        ] {
            let env = Mock::new(16, 16);
            let c = Counters {
                bytes_acked: 10,
                bytes_received: 101,
                snd_una: 7,
                snd_nxt: 7,
                ..Counters::default()
            };
            let ctx = state_cb(1, tcp_state::FIN_WAIT2, tcp_state::CLOSE, c);
            let f = if rx_on {
                cb_flag::DEFAULT
            } else {
                cb_flag::DEFAULT & !cb_flag::RX
            };
            ctx.flags_set.set(f);
            run(&ctx, &env);
            let ev = env.ring.borrow()[0];
            assert_eq!(ev.close_kind, kind);
            assert_eq!(payload(&ev).1, received);
        }
    }

    /// A connect refused or timed out never touches the map: its close event says it all.
    #[test]
    fn test_failed_connect_is_reported_by_its_close() {
        let env = Mock::new(16, 16);
        run(&Ctx::new(op::TCP_CONNECT_CB, 3), &env);
        let c = Counters {
            total_retrans: 2,
            ..Counters::default()
        };
        run(&state_cb(3, tcp_state::SYN_SENT, tcp_state::CLOSE, c), &env);
        let mut ev = env.ring.borrow()[0];
        assert_eq!(ev.close_kind, close_kind::FAILED);
        assert_eq!(ev.role, role::CLIENT);
        assert_eq!(ev.flags & sflag::ESTABLISHED, 0);
        assert_eq!(payload(&ev), (0, 0));
        reconcile(&mut ev);
        assert_eq!((ev.retrans, ev.rto), ([2, 0, 0], [2, 0, 0]));
        assert_eq!(env.map.borrow().len(), 0);
    }

    #[test]
    fn test_severed_from_established() {
        assert_eq!(close_kind_of(tcp_state::ESTABLISHED), close_kind::SEVERED);
        assert_eq!(close_kind_of(tcp_state::CLOSE_WAIT), close_kind::SEVERED);
        assert_eq!(close_kind_of(tcp_state::LAST_ACK), close_kind::COMPLETED);
        assert_eq!(close_kind_of(tcp_state::SYN_RECV), close_kind::FAILED);
    }

    #[test]
    fn test_reconcile_with_kernel_total() {
        let mut s = SockStats {
            retrans: [1, 2, 0],
            total_retrans: 5,
            last_state: tcp_state::ESTABLISHED as u8,
            ..SockStats::default()
        };
        reconcile(&mut s);
        assert_eq!(s.retrans, [1, 4, 0]);
        // Already equal: unchanged (zero boundary).
        reconcile(&mut s);
        assert_eq!(s.retrans, [1, 4, 0]);
    }

    /// Boundary: ring buffer full. The open goes into the map; a full map is counted.
    #[test]
    fn test_ring_full_falls_back_to_map_then_counts_map_full() {
        let env = Mock::new(1, 0);
        established_client(&env, 1, 100, 0);
        established_client(&env, 2, 100, 0);
        assert!(env.get(1).is_some());
        assert_eq!(env.n(counter::REGISTERED), 1);
        assert_eq!(env.n(counter::RINGBUF_FULL), 2);
        assert_eq!(env.n(counter::MAP_FULL), 1);
        // The close of the inserted one stays in the map; the other has nowhere to go.
        // The inserted socket was marked (in the kernel, on the socket's own flags).
        let close = state_cb(
            1,
            tcp_state::ESTABLISHED,
            tcp_state::CLOSE,
            Counters::default(),
        );
        close.flags_set.set(cb_flag::DEFAULT | cb_flag::MARK);
        run(&close, &env);
        let s = env.get(1).unwrap();
        assert_eq!(s.flags & sflag::CLOSED, sflag::CLOSED);
        assert_eq!(s.close_kind, close_kind::SEVERED);
        run(
            &state_cb(
                2,
                tcp_state::ESTABLISHED,
                tcp_state::CLOSE,
                Counters::default(),
            ),
            &env,
        );
        assert_eq!(env.n(counter::CLOSE_LOST), 1);
    }

    /// Ring buffer full, map has room: a close without an entry is kept in the map.
    #[test]
    fn test_untracked_close_falls_back_to_map() {
        let env = Mock::new(4, 0);
        run(&Ctx::new(op::TCP_CONNECT_CB, 3), &env);
        let c = Counters::default();
        run(&state_cb(3, tcp_state::SYN_SENT, tcp_state::CLOSE, c), &env);
        let s = env.get(3).unwrap();
        let both = sflag::CLOSED | sflag::UNTRACKED;
        assert_eq!(s.flags & both, both);
        assert_eq!(s.close_kind, close_kind::FAILED);
        assert_eq!(env.n(counter::CLOSE_LOST), 0);
        assert_eq!(env.n(counter::RINGBUF_FULL), 1);
    }

    #[test]
    fn test_payload_subtracts_syn_and_fin() {
        let mut s = SockStats {
            flags: sflag::ESTABLISHED,
            bytes_acked: 100_002,
            bytes_received: 10,
            last_state: tcp_state::FIN_WAIT2 as u8,
            fin_acked: 1,
            close_kind: close_kind::COMPLETED,
            ..SockStats::default()
        };
        assert_eq!(payload(&s), (100_000, 9));
        // Live in ESTABLISHED: only the client's SYN.
        s.last_state = tcp_state::ESTABLISHED as u8;
        s.fin_acked = 0;
        s.close_kind = close_kind::OPEN;
        assert_eq!(payload(&s), (100_001, 10));
        // A server (passive open): no SYN in either counter; LAST_ACK → both FINs.
        s.role = role::SERVER;
        s.bytes_acked = 778;
        s.bytes_received = 100_001;
        s.last_state = tcp_state::LAST_ACK as u8;
        s.fin_acked = 1;
        s.close_kind = close_kind::COMPLETED;
        assert_eq!(payload(&s), (777, 100_000));
        // Zero: never established.
        assert_eq!(payload(&SockStats::default()), (0, 0));
    }

    fn rec(cookie: u64) -> CloseEvent {
        CloseEvent {
            cookie,
            ..CloseEvent::default()
        }
    }

    /// Records reach the ring buffer in batches of RECORDS, in order, with consecutive
    /// sequence numbers that carry the CPU.
    #[test]
    fn test_stage_flushes_full_batches_in_order() {
        let mut st = stage::Stage::default();
        let mut sent: Vec<CloseEvent> = Vec::new();
        for c in 1..=(2 * stage::RECORDS as u64 + 3) {
            assert!(stage::push(&mut st, 3, stage::CLOSES, &rec(c), |b| {
                sent.extend_from_slice(b);
                true
            }));
        }
        assert_eq!(sent.len(), 2 * stage::RECORDS);
        for (i, r) in sent.iter().enumerate() {
            assert_eq!(r.cookie, i as u64 + 1);
            assert!(stage::complete(&r.to_stats()));
            assert_eq!(stage::n_of(r.seq), i as u64 + 1);
            assert_eq!(stage::lane_of(r.seq), 4 * 3 + 1);
        }
        // Three more wait in the stage (user space reads them there).
        assert_eq!((st.next, st.flushed), (2 * stage::RECORDS as u64 + 3, 16));
        let waiting: Vec<u64> = st
            .recs
            .iter()
            .filter(|r| stage::n_of(r.seq) > st.flushed)
            .map(|r| r.cookie)
            .collect();
        assert_eq!(waiting, [17, 18, 19]);
    }

    /// Boundary: the ring buffer is full when the stage fills. Nothing is overwritten: the
    /// next record is refused (the caller falls back to the map) until a flush succeeds.
    #[test]
    fn test_stage_full_ring_refuses_instead_of_overwriting() {
        let mut st = stage::Stage::default();
        for c in 1..=stage::RECORDS as u64 {
            assert!(stage::push(&mut st, 0, stage::CLOSES, &rec(c), |_| false));
        }
        assert!(!stage::push(&mut st, 0, stage::CLOSES, &rec(99), |_| false));
        let cookies: Vec<u64> = st.recs.iter().map(|r| r.cookie).collect();
        assert_eq!(cookies, (1..=stage::RECORDS as u64).collect::<Vec<_>>());
        // The ring has room again: the old batch goes first, then the new record is staged.
        let mut sent = Vec::new();
        assert!(stage::push(&mut st, 0, stage::CLOSES, &rec(100), |b| {
            sent.extend_from_slice(b);
            true
        }));
        assert_eq!(sent.len(), stage::RECORDS);
        assert_eq!(st.recs[0].cookie, 100);
        assert_eq!(stage::n_of(st.recs[0].seq), stage::RECORDS as u64 + 1);
    }

    /// A record caught half-written (seq_end already new, seq not yet) is not complete.
    #[test]
    fn test_stage_torn_record_is_incomplete() {
        let mut r = rec(1).to_stats();
        r.seq = stage::seq(5, 1, stage::OPENS);
        r.seq_end = r.seq as u32;
        assert!(stage::complete(&r));
        r.seq_end = stage::seq(13, 1, stage::OPENS) as u32;
        assert!(!stage::complete(&r));
        assert!(!stage::complete(&rec(1).to_stats()), "never staged");
    }

    /// This end's FIN turns RTT samples off; the peer's FIN (CLOSE_WAIT) does not.
    #[test]
    fn test_rtt_callbacks_end_at_own_fin() {
        let env = Mock::new(16, 16);
        for (old, new, rtt_kept) in [
            (tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT, true),
            (tcp_state::CLOSE_WAIT, tcp_state::LAST_ACK, false),
            (tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, false),
        ] {
            let ctx = state_cb(1, old, new, Counters::default());
            ctx.flags_set.set(cb_flag::DEFAULT);
            run(&ctx, &env);
            assert_eq!(
                ctx.flags_set.get() & cb_flag::RTT != 0,
                rtt_kept,
                "{old}->{new}"
            );
            assert_eq!(
                ctx.flags_set.get() | cb_flag::RTT,
                cb_flag::DEFAULT,
                "other callbacks stay"
            );
        }
        assert!(env.ring.borrow().is_empty());
    }

    /// IPv4 sockets send the short open event, IPv6 ones the long one; both carry the
    /// addresses whole.
    #[test]
    fn test_open_event_by_family() {
        let env = Mock::new(16, 16);
        run(&Ctx::new(op::PASSIVE_ESTABLISHED_CB, 1), &env);
        let mut v6 = Ctx::new(op::PASSIVE_ESTABLISHED_CB, 2);
        v6.family = AF_INET6 as u32;
        run(&v6, &env);
        assert_eq!(env.opens4.get(), 1);
        let open = events(&env, event::OPEN);
        assert_eq!(open.len(), 2);
        assert_eq!(
            (open[0].family, open[0].local_addr),
            (AF_INET, [0x0100_a8c0, 0, 0, 0])
        );
        assert_eq!(open[0].remote_addr, [0x0200_a8c0, 0, 0, 0]);
        assert_eq!(
            (open[1].family, open[1].local_addr),
            (AF_INET6, [1, 2, 3, 4])
        );
        assert_eq!(open[1].remote_addr, [5, 6, 7, 8]);
        assert_eq!(open[1].local_port, 40000);
    }

    #[test]
    fn test_layout_is_stable() {
        assert_eq!(SOCK_STATS_LEN, 152);
        assert_eq!(SOCK_STATS_LEN % 8, 0);
        // seq first and seq_end last: the torn-read check depends on it.
        assert_eq!(core::mem::offset_of!(SockStats, seq), 0);
        assert_eq!(
            core::mem::offset_of!(SockStats, seq_end),
            SOCK_STATS_LEN - 4
        );
        assert_eq!(
            core::mem::size_of::<stage::Stage<CloseEvent>>(),
            16 + stage::RECORDS * CLOSE_EVENT_LEN
        );
        // User space tells ring records apart by their length.
        assert_eq!(
            (OPEN_EVENT_LEN, OPEN_EVENT4_LEN, CLOSE_EVENT_LEN),
            (72, 48, 56)
        );
        let lens = [
            SOCK_STATS_LEN,
            stage::OPEN_BATCH_LEN,
            stage::OPEN4_BATCH_LEN,
            stage::CLOSE_BATCH_LEN,
        ];
        assert_eq!(lens, [152, 576, 384, 448]);
        assert_eq!(core::mem::offset_of!(OpenEvent4, seq), 0);
        assert_eq!(
            core::mem::offset_of!(OpenEvent4, seq_end),
            OPEN_EVENT4_LEN - 4
        );
        assert_eq!(core::mem::offset_of!(OpenEvent, seq), 0);
        assert_eq!(
            core::mem::offset_of!(OpenEvent, seq_end),
            OPEN_EVENT_LEN - 4
        );
        assert_eq!(core::mem::offset_of!(CloseEvent, seq), 0);
        assert_eq!(
            core::mem::offset_of!(CloseEvent, seq_end),
            CLOSE_EVENT_LEN - 4
        );
    }
}
