//! Types shared by the nfm sock_ops program and the agent, and the sock_ops state machine itself.
//!
//! Why the state machine lives here and not in the BPF crate: it is generic over a [`SockOps`]
//! context and an [`Env`] (maps, clock, ring buffer), so the very code that is compiled into the
//! BPF object is also compiled on the host and unit-tested with a mock context. Phases, counting,
//! close handling and overflow accounting are therefore tested without a kernel.
//!
//! # Layout
//! - [`SockStats`]: one socket's cumulative counters; the hash-map value *and* the ring-buffer
//!   record of a close that carries more than final counters (emitted straight from the entry).
//! - [`OpenEvent4`] / [`OpenEvent`] and [`CloseEvent`]: the small open and close events of
//!   every connection, staged per CPU and sent in batches ([`stage`]).
//! - [`counter`]: indexes of the per-CPU overflow / activity counters.
//! - [`on_sock_ops`]: the program body.
//! - [`payload`]: converts the kernel's sequence-space byte counters to payload bytes.
//!
//! # What the program does (and why so little)
//! Every callback costs CPU on the workload's own thread, so the program enables only the
//! callbacks whose events cannot be read later: STATE (to catch the close and snapshot the final
//! counters), RETRANS and RTO (retransmissions and timeouts, split by phase) and RTT (one sample
//! per round trip; since Linux 6.10 the kernel calls it once per RTT window, not per ACK; turned
//! off once this end has sent its FIN). Every
//! other counter (bytes, segments, smoothed RTT, total retransmissions) is read from
//! `bpf_sock_ops` when one of those callbacks fires anyway.
//!
//! A socket's life in the program: the established callback stages an open event (no map insert:
//! a hash insert costs ~350 ns here); user space inserts the map entry for sockets still open at
//! the end of the interval in which it read the event, and from then on RTT/RETRANS/RTO callbacks
//! update the entry in place. The close stages a close event with the final counters from the
//! context or, for a socket with an entry, sends the entry whole; the entry is flagged CLOSED and
//! user space deletes it in batches. Whenever the ring buffer is full the program falls back to
//! the map, so nothing is lost unless the map is full too, and that is counted. See
//! `nfm-agent/README.md`.
#![no_std]

/// `bpf_sock_ops.op` values used by the program (`include/uapi/linux/bpf.h`).
pub mod op {
    pub const TCP_CONNECT_CB: u32 = 3;
    pub const ACTIVE_ESTABLISHED_CB: u32 = 4;
    pub const PASSIVE_ESTABLISHED_CB: u32 = 5;
    pub const RTO_CB: u32 = 8;
    pub const RETRANS_CB: u32 = 9;
    pub const STATE_CB: u32 = 10;
    pub const RTT_CB: u32 = 12;
}

/// `bpf_sock_ops_cb_flags_set` flags.
pub mod cb_flag {
    pub const RTO: u32 = 1 << 0;
    pub const RETRANS: u32 = 1 << 1;
    pub const STATE: u32 = 1 << 2;
    pub const RTT: u32 = 1 << 3;
    /// What the program enables on every tracked socket unless the loader overrides it.
    pub const DEFAULT: u32 = RTO | RETRANS | STATE | RTT;
    /// Marker, not a callback we use: "this socket's map entry holds counts its events do not"
    /// (a retransmission, a timeout, or an entry inserted because the ring buffer was full). Lets
    /// the close skip the hash lookup for the common short connection. The kernel calls the
    /// program for it only on segments carrying TCP options it does not know (rare; ignored).
    /// (BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG.)
    pub const MARK: u32 = 1 << 5;
}

/// TCP states (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;
    pub const NEW_SYN_RECV: u32 = 12;
}

/// Address families as the kernel reports them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Phase indexes into [`SockStats::retrans`] and [`SockStats::rto`].
pub mod phase {
    /// Before the connection is established (SYN / SYN-ACK).
    pub const HANDSHAKE: usize = 0;
    pub const ESTABLISHED: usize = 1;
    /// After a FIN was sent or received.
    pub const CLOSING: usize = 2;
}

/// The phase a TCP state belongs to.
#[inline(always)]
pub fn phase_of(state: u32) -> usize {
    match state {
        tcp_state::ESTABLISHED => phase::ESTABLISHED,
        tcp_state::SYN_SENT | tcp_state::SYN_RECV | tcp_state::NEW_SYN_RECV => phase::HANDSHAKE,
        _ => phase::CLOSING,
    }
}

/// [`SockStats::role`] values.
pub mod role {
    /// Active open: this host connected.
    pub const CLIENT: u8 = 0;
    /// Passive open: this host accepted.
    pub const SERVER: u8 = 1;
}

/// [`SockStats::flags`] bits.
pub mod sflag {
    /// The handshake completed.
    pub const ESTABLISHED: u8 = 1 << 0;
    /// The socket closed; the counters are final. Set in a map entry only when the close event
    /// could not be sent (ring buffer full): user space then reads the close from the map.
    pub const CLOSED: u8 = 1 << 1;
    /// No map entry existed at the close: the event was built from the context alone.
    pub const UNTRACKED: u8 = 1 << 2;
    /// The entry was created by the program (a retransmission or timeout before user space had
    /// inserted it): its RTT samples, retransmissions and timeouts count from that moment, on
    /// top of those in the socket's open event.
    pub const ADOPTED: u8 = 1 << 3;
    /// The record carries no addresses: a [`CloseEvent`](super::CloseEvent), whose socket's addresses came with
    /// its open event.
    pub const ANONYMOUS: u8 = 1 << 4;
}

/// [`SockStats::event`] values (ring-buffer records; 0 in map entries).
pub mod event {
    /// A socket became established: identity, handshake, first RTT sample.
    pub const OPEN: u8 = 1;
    /// A socket closed: final counters.
    pub const CLOSE: u8 = 2;
}

/// [`SockStats::close_kind`] values.
pub mod close_kind {
    pub const OPEN: u8 = 0;
    /// Closed after an orderly FIN exchange.
    pub const COMPLETED: u8 = 1;
    /// Closed from SYN-SENT / SYN-RECV: the handshake never finished.
    pub const FAILED: u8 = 2;
    /// Closed from an established (or half-closed) state by a reset or a timeout.
    pub const SEVERED: u8 = 3;
}

/// Classifies a close by the state the socket left (STATE_CB arg0).
#[inline(always)]
pub fn close_kind_of(old_state: u32) -> u8 {
    match old_state {
        tcp_state::SYN_SENT | tcp_state::SYN_RECV | tcp_state::NEW_SYN_RECV => close_kind::FAILED,
        // Straight from ESTABLISHED to CLOSE only by a reset, an abort or a write timeout. From
        // CLOSE_WAIT (peer sent FIN, we never did) or FIN_WAIT1 (our FIN never acked) likewise.
        tcp_state::ESTABLISHED | tcp_state::CLOSE_WAIT | tcp_state::FIN_WAIT1 => {
            close_kind::SEVERED
        }
        _ => close_kind::COMPLETED,
    }
}

/// Indexes of the per-CPU counters map (`COUNTERS`), summed over CPUs by user space.
pub mod counter {
    /// A socket could not be registered: the map was full (E2BIG).
    pub const MAP_FULL: u32 = 0;
    /// Any other failed map update.
    pub const MAP_UPDATE_FAILED: u32 = 1;
    /// An event did not fit the ring buffer: an open was inserted into the map instead, a close's
    /// counters stay in the map (flag CLOSED). Nothing is lost.
    pub const RINGBUF_FULL: u32 = 2;
    /// Sockets registered through the map (the open event could not be staged). User space
    /// adds the open events staged, which the stages count themselves (`Stage::next`): one
    /// counter update less per socket.
    pub const REGISTERED: u32 = 3;
    /// Close events sent as whole records; user space adds the staged ones (`Stage::next`).
    pub const CLOSE_EVENTS: u32 = 4;
    /// Reserved (closes without a map entry are the common case and are no longer counted: one
    /// counter update less per connection).
    pub const CLOSE_UNTRACKED: u32 = 5;
    /// Close events that could be sent neither through the ring buffer nor kept in the map.
    pub const CLOSE_LOST: u32 = 6;
    /// Setting the per-socket callback flags failed.
    pub const CB_FLAGS_FAILED: u32 = 7;
    pub const COUNT: u32 = 8;
    /// Profiling slots (measurement builds only): ops 0..PROFILE_OPS, two slots each.
    pub const PROFILE_BASE: u32 = COUNT;
    pub const PROFILE_OPS: u32 = 17;
    /// The profiling slot of STATE callbacks that are closes (the other ops use their number).
    pub const PROFILE_CLOSE: u32 = 16;
}

/// One socket's identity and cumulative counters.
///
/// This is the hash-map value (key: socket cookie) and also the ring-buffer close event. Byte
/// order: `local_addr`/`remote_addr` hold the address bytes in network order exactly as the
/// kernel stores them (an IPv4 address in word 0); ports are host order (the program converts
/// `remote_port`). Counters are the kernel's own cumulative values at the last callback:
/// `bytes_acked` and `bytes_received` are sequence-space counts, so they include the SYN and the
/// FIN (see [`payload`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockStats {
    /// A staged close record's sequence number, `(n << STAGE_CPU_BITS) | cpu` for the CPU's
    /// n-th staged record (n ≥ 1); 0 in map entries and open events. See [`stage`].
    pub seq: u64,
    pub cookie: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Sum of RTT samples, µs.
    pub rtt_sum_us: u64,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub rtt_count: u32,
    pub rtt_min_us: u32,
    pub rtt_max_us: u32,
    /// Smoothed RTT at the last callback, µs (the kernel's `srtt_us >> 3`).
    pub srtt_us: u32,
    /// The kernel's `total_retrans` at the last callback.
    pub total_retrans: u32,
    /// Connect → established (client), or the SYN-ACK → ACK round trip (server), µs.
    pub handshake_us: u32,
    /// Retransmitted segments by phase ([`phase`]).
    pub retrans: [u32; 3],
    /// Retransmission timeouts by phase.
    pub rto: [u32; 3],
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// [`role`].
    pub role: u8,
    /// [`sflag`].
    pub flags: u8,
    /// [`close_kind`].
    pub close_kind: u8,
    /// The TCP state at the last callback (for a close: the state it left).
    pub last_state: u8,
    /// 1 when our FIN was sent and acknowledged at the last callback (`snd_una == snd_nxt` in a
    /// FIN-sent state): `bytes_acked` then counts it.
    pub fin_acked: u8,
    /// [`event`] kind of a ring-buffer record; 0 in the map.
    pub event: u8,
    pub _pad: u8,
    /// The low 32 bits of `seq`, written first: a staged record read while it was being
    /// written has `seq_end != seq as u32` (see [`stage`]).
    pub seq_end: u32,
}

/// Size of [`SockStats`] on the wire between kernel and user space.
pub const SOCK_STATS_LEN: usize = core::mem::size_of::<SockStats>();

/// The open event of an established IPv6 socket: identity and handshake, 72 bytes, staged
/// ([`stage`]). IPv4 sockets send the 48-byte [`OpenEvent4`].
///
/// Why not a whole [`SockStats`]: on this machine the cost of a ring-buffer record is mostly its
/// cache lines (each written line has to be fetched back from the reader's core), ~40–50 ns per
/// 64 bytes, so the two events every connection sends are cut to what user space needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenEvent {
    /// Staging sequence (see [`SockStats::seq`]).
    pub seq: u64,
    pub cookie: u64,
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub role: u8,
    pub flags: u8,
    /// Always [`event::OPEN`].
    pub event: u8,
    pub handshake_us: u32,
    /// The handshake's RTT sample, µs (also the socket's first RTT sample).
    pub srtt_us: u32,
    /// SYN (client) or SYN-ACK (server) retransmissions: each was also a timeout.
    pub total_retrans: u32,
    /// The low 32 bits of `seq`, written first (see [`stage`]).
    pub seq_end: u32,
}

/// [`OpenEvent`] of an IPv4 socket (addresses in network order), 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenEvent4 {
    pub seq: u64,
    pub cookie: u64,
    pub local_addr: u32,
    pub remote_addr: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub role: u8,
    pub flags: u8,
    pub event: u8,
    pub handshake_us: u32,
    pub srtt_us: u32,
    pub total_retrans: u32,
    pub seq_end: u32,
}

impl OpenEvent4 {
    #[inline(always)]
    pub fn of(o: &OpenEvent) -> OpenEvent4 {
        OpenEvent4 {
            seq: o.seq,
            cookie: o.cookie,
            local_addr: o.local_addr[0],
            remote_addr: o.remote_addr[0],
            local_port: o.local_port,
            remote_port: o.remote_port,
            family: o.family,
            role: o.role,
            flags: o.flags,
            event: o.event,
            handshake_us: o.handshake_us,
            srtt_us: o.srtt_us,
            total_retrans: o.total_retrans,
            seq_end: o.seq_end,
        }
    }

    pub fn to_open(&self) -> OpenEvent {
        OpenEvent {
            seq: self.seq,
            cookie: self.cookie,
            local_addr: [self.local_addr, 0, 0, 0],
            remote_addr: [self.remote_addr, 0, 0, 0],
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: self.family,
            role: self.role,
            flags: self.flags,
            event: self.event,
            handshake_us: self.handshake_us,
            srtt_us: self.srtt_us,
            total_retrans: self.total_retrans,
            seq_end: self.seq_end,
        }
    }
}

/// The close of a socket whose open event was sent: final counters only, 56 bytes, staged
/// ([`stage`]); always untracked, closed, established and without addresses
/// ([`CloseEvent::to_stats`]). Closes that carry more (a map entry's samples and per-phase
/// counts) or whose socket never sent an open event (a failed connect) are whole [`SockStats`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseEvent {
    /// Staging sequence (see [`SockStats::seq`]).
    pub seq: u64,
    pub cookie: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub total_retrans: u32,
    pub srtt_us: u32,
    /// The role guessed from the ports (user space keeps the open event's).
    pub role: u8,
    pub close_kind: u8,
    pub last_state: u8,
    pub fin_acked: u8,
    /// The low 32 bits of `seq`, written first (see [`stage`]).
    pub seq_end: u32,
}

pub const OPEN_EVENT_LEN: usize = core::mem::size_of::<OpenEvent>();
pub const OPEN_EVENT4_LEN: usize = core::mem::size_of::<OpenEvent4>();
pub const CLOSE_EVENT_LEN: usize = core::mem::size_of::<CloseEvent>();

impl OpenEvent {
    /// The socket's cumulative record as of its open (what a map entry starts from).
    pub fn to_stats(&self) -> SockStats {
        let rtt = self.srtt_us;
        SockStats {
            seq: self.seq,
            seq_end: self.seq_end,
            cookie: self.cookie,
            rtt_sum_us: rtt as u64,
            rtt_count: 1,
            rtt_min_us: rtt,
            rtt_max_us: rtt,
            srtt_us: rtt,
            total_retrans: self.total_retrans,
            handshake_us: self.handshake_us,
            retrans: [self.total_retrans, 0, 0],
            rto: [self.total_retrans, 0, 0],
            local_addr: self.local_addr,
            remote_addr: self.remote_addr,
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: self.family,
            role: self.role,
            flags: self.flags,
            last_state: tcp_state::ESTABLISHED as u8,
            event: event::OPEN,
            ..SockStats::default()
        }
    }
}

impl CloseEvent {
    /// As a close record ([`sflag::ANONYMOUS`]: no addresses, no samples of its own).
    pub fn to_stats(&self) -> SockStats {
        SockStats {
            seq: self.seq,
            cookie: self.cookie,
            bytes_acked: self.bytes_acked,
            bytes_received: self.bytes_received,
            data_segs_in: self.data_segs_in,
            data_segs_out: self.data_segs_out,
            srtt_us: self.srtt_us,
            total_retrans: self.total_retrans,
            role: self.role,
            flags: sflag::UNTRACKED | sflag::CLOSED | sflag::ESTABLISHED | sflag::ANONYMOUS,
            close_kind: self.close_kind,
            last_state: self.last_state,
            fin_acked: self.fin_acked,
            event: event::CLOSE,
            seq_end: self.seq_end,
            ..SockStats::default()
        }
    }
}

/// Open and close events are staged per CPU and reach the ring buffer in batches.
///
/// Why: a ring-buffer write costs a reservation and a commit plus, mostly, its cache lines. So
/// each CPU appends its events to its own [`Stage`](stage::Stage) per kind (a per-CPU array value: no lock,
/// no cache line shared with another CPU) and sends all [`RECORDS`](stage::RECORDS) of them with one ring-buffer
/// write when the array is full. User space reads every CPU's stages at each interval too, so
/// an event on a quiet CPU is still reported within one interval, and it drops records it has
/// already seen by their sequence numbers ([`SockStats::seq`]: per CPU and kind, consecutive).
///
/// Torn reads: [`push`](stage::push) writes `seq_end` first, then the record, then `seq` (volatile stores
/// and compiler fences keep that order in the object; the JIT keeps program order). The kernel copies a
/// per-CPU value to user space one word at a time from low to high addresses, so on a CPU that
/// keeps stores in order and loads in order (x86-64) a copy whose `seq` is non-zero and equal to
/// its `seq_end` ([`complete`](stage::complete)) holds one whole record.
pub mod stage {
    use super::{CloseEvent, OpenEvent, OpenEvent4, SockStats};
    use core::sync::atomic::{compiler_fence, Ordering};

    /// Records per stage (one ring-buffer write per this many events of a kind on a CPU).
    pub const RECORDS: usize = 8;
    /// `seq` = `(n << LANE_BITS) | lane`, lane = `4 × cpu + kind`: each CPU's IPv6 opens,
    /// closes and IPv4 opens are numbered separately.
    pub const LANE_BITS: u32 = 18;
    pub const LANE_MASK: u64 = (1 << LANE_BITS) - 1;
    pub const OPENS: u32 = 0;
    pub const CLOSES: u32 = 1;
    pub const OPENS4: u32 = 2;

    /// A record that can be staged: `seq` first, `seq_end` last.
    pub trait Staged: Copy {
        fn seq_mut(&mut self) -> &mut u64;
        fn seq_end_mut(&mut self) -> &mut u32;
    }

    /// Every staged record names its two sequence fields `seq` and `seq_end`.
    macro_rules! staged {
        ($($t:ty),*) => {$(
            impl Staged for $t {
                #[inline(always)]
                fn seq_mut(&mut self) -> &mut u64 {
                    &mut self.seq
                }
                #[inline(always)]
                fn seq_end_mut(&mut self) -> &mut u32 {
                    &mut self.seq_end
                }
            }
        )*};
    }

    staged!(OpenEvent, OpenEvent4, CloseEvent);

    /// One CPU's staged events of one kind (the value of a per-CPU map).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Stage<T> {
        /// Records staged on this CPU so far.
        pub next: u64,
        /// Records sent through the ring buffer (a multiple of [`RECORDS`]).
        pub flushed: u64,
        /// Record n (1-based) is in slot (n - 1) % RECORDS.
        pub recs: [T; RECORDS],
    }

    /// Bytes of one flushed stage in the ring buffer.
    pub const OPEN_BATCH_LEN: usize = RECORDS * super::OPEN_EVENT_LEN;
    pub const OPEN4_BATCH_LEN: usize = RECORDS * super::OPEN_EVENT4_LEN;
    pub const CLOSE_BATCH_LEN: usize = RECORDS * super::CLOSE_EVENT_LEN;

    #[inline(always)]
    pub fn seq(n: u64, cpu: u32, kind: u32) -> u64 {
        (n << LANE_BITS) | (((cpu as u64) << 2 | kind as u64) & LANE_MASK)
    }

    /// The lane (CPU and kind) a sequence number belongs to.
    pub fn lane_of(seq: u64) -> usize {
        (seq & LANE_MASK) as usize
    }

    pub fn n_of(seq: u64) -> u64 {
        seq >> LANE_BITS
    }

    /// A staged record read whole (see the module docs), after `to_stats`.
    pub fn complete(r: &SockStats) -> bool {
        r.seq != 0 && r.seq_end == r.seq as u32
    }

    /// Appends `rec` to this CPU's stage and hands the whole stage to `flush` (a ring-buffer
    /// write; true when it fit) once it holds [`RECORDS`] unsent records. Returns false when
    /// `rec` could not be staged: the stage is full of records the ring buffer did not take.
    #[inline(always)]
    pub fn push<T: Staged, F: FnMut(&[T; RECORDS]) -> bool>(
        st: &mut Stage<T>,
        cpu: u32,
        kind: u32,
        rec: &T,
        mut flush: F,
    ) -> bool {
        if st.next.wrapping_sub(st.flushed) >= RECORDS as u64 {
            // An earlier flush failed (ring buffer full): retry before overwriting.
            if !flush(&st.recs) {
                return false;
            }
            st.flushed = st.next;
        }
        let n = st.next.wrapping_add(1);
        let seq = seq(n, cpu, kind);
        let i = (st.next % RECORDS as u64) as usize;
        if let Some(slot) = st.recs.get_mut(i) {
            // seq_end first, the record, seq last; the fences keep the compiler from moving the
            // record's stores across the markers (they emit no instruction).
            // SAFETY: a valid, exclusive reference.
            unsafe { core::ptr::write_volatile(slot.seq_end_mut(), seq as u32) };
            compiler_fence(Ordering::SeqCst);
            *slot = *rec;
            *slot.seq_end_mut() = seq as u32;
            compiler_fence(Ordering::SeqCst);
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(slot.seq_mut(), seq) };
        }
        st.next = n;
        if n.wrapping_sub(st.flushed) >= RECORDS as u64 && flush(&st.recs) {
            st.flushed = n;
        }
        true
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SockStats {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for stage::Stage<OpenEvent> {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for stage::Stage<CloseEvent> {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for stage::Stage<OpenEvent4> {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OpenEvent4 {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OpenEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CloseEvent {}

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

/// Client handshake time from what the kernel knows at ACTIVE_ESTABLISHED: the first RTT sample
/// (SYN → SYN-ACK; with timestamps, measured from the SYN that was answered) plus the back-off
/// of the SYNs that timed out: 1 s, 2 s, 4 s … for `syn_retrans` retransmissions.
#[inline(always)]
pub fn client_handshake_us(srtt_us: u32, syn_retrans: u32) -> u32 {
    let n = if syn_retrans > 6 { 6 } else { syn_retrans };
    srtt_us.saturating_add(SYN_RTO_US.saturating_mul((1u32 << n) - 1))
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
            client_handshake_us(rtt, total_retrans)
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
/// round trips; such a socket has no map entry (user space inserts entries only for sockets
/// still open when it reads their open event), and a hash lookup that misses a cold bucket
/// costs ~150 ns. Its handshake RTT is in the open event and its final srtt in the close event,
/// so nothing is lost by not looking. Longer connections pass the gate after a few exchanges.
pub const RTT_GATE_SEGS: u32 = 16;

#[inline(always)]
fn on_rtt<C: SockOps, E: Env>(ctx: &C, env: &E) {
    let c = ctx.counters();
    if c.data_segs_in.wrapping_add(c.data_segs_out) < RTT_GATE_SEGS {
        return;
    }
    let Some(p) = env.lookup(ctx.cookie()) else {
        return;
    };
    // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
    let s = unsafe { &mut *p };
    // Since Linux 6.10, arg0 is the measured RTT (µs) and arg1 the new srtt (8×). Older kernels
    // pass nothing: fall back to the smoothed RTT.
    let mut sample = ctx.arg(0);
    if sample == 0 {
        sample = c.srtt_us8 >> 3;
    }
    s.rtt_sum_us += sample as u64;
    if s.rtt_count == 0 || sample < s.rtt_min_us {
        s.rtt_min_us = sample;
    }
    if sample > s.rtt_max_us {
        s.rtt_max_us = sample;
    }
    s.rtt_count += 1;
    refresh(s, &c, ctx.state());
    let srtt8 = ctx.arg(1);
    if srtt8 != 0 {
        s.srtt_us = srtt8 >> 3;
    }
}

/// This end sent its FIN: no more RTT samples are taken (the ACK of the FIN, or of data still in
/// flight behind it, would cost a callback each on every connection, and a short connection's
/// close carries the final smoothed RTT anyway). Half-closed servers (CLOSE_WAIT) that still
/// send keep their samples: the flag goes at their own FIN (LAST_ACK).
#[inline(always)]
fn on_fin_sent<C: SockOps>(ctx: &C) {
    let f = ctx.cb_flags();
    if f & cb_flag::RTT != 0 {
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
/// ADOPTED) so a retransmission or timeout is never lost. Rare: only sockets that retransmit
/// within their first ring-buffer drain get here.
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
    refresh(&mut s, &ctx.counters(), state);
    let r = env.insert(cookie, &s);
    if r == E2BIG {
        env.count(counter::MAP_FULL);
    } else if r != 0 && r != EEXIST {
        env.count(counter::MAP_UPDATE_FAILED);
    }
    env.lookup(cookie)
}

/// The entry a retransmit or RTO event counts into: the socket's own, or one adopted for a socket
/// the program has no entry for; the socket is marked so its close is looked up. Also returns
/// the TCP state the event happened in. `None`: the socket cannot be tracked (counted by `adopt`).
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

#[inline(always)]
fn on_retrans<C: SockOps, E: Env>(ctx: &C, env: &E) {
    // arg0: sequence number, arg1: segments in the skb, arg2: transmit result (0 = sent; the
    // kernel only counts successful retransmissions in total_retrans).
    if ctx.arg(2) != 0 {
        return;
    }
    let Some((p, state)) = event_entry(ctx, env) else {
        return;
    };
    // SAFETY: the pointer is a map value, valid for this program run (see `Env::lookup`).
    let s = unsafe { &mut *p };
    if let Some(slot) = s.retrans.get_mut(phase_of(state)) {
        *slot += ctx.arg(1);
    }
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
            finish(s, &c, old);
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
                    close_kind: close_kind_of(old),
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
            finish(&mut s, &c, old);
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

/// Final counters and close kind. Retransmissions are reconciled with the kernel's total in user
/// space (see [`reconcile`]), which also knows the socket's open event.
#[inline(always)]
fn finish(s: &mut SockStats, c: &Counters, old: u32) {
    refresh(s, c, old);
    s.close_kind = close_kind_of(old);
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
    // (TIME_WAIT), or after tcp_fin_timeout on an orphan whose peer never sent one (then this
    // under-counts by one byte; rare, and documented).
    let fin_in = match st {
        tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK | tcp_state::CLOSING | tcp_state::TIME_WAIT => {
            1
        }
        tcp_state::FIN_WAIT2 if s.close_kind != close_kind::OPEN => 1,
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
    use core::cell::{Cell, RefCell};
    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    struct Ctx {
        op: u32,
        args: [u32; 4],
        state: u32,
        family: u32,
        c: Counters,
        cookie: u64,
        flags_set: Cell<u32>,
    }

    impl Ctx {
        fn new(op: u32, cookie: u64) -> Ctx {
            Ctx {
                op,
                args: [0; 4],
                state: tcp_state::ESTABLISHED,
                family: AF_INET as u32,
                c: Counters::default(),
                cookie,
                flags_set: Cell::new(0),
            }
        }
    }

    impl SockOps for Ctx {
        fn op(&self) -> u32 {
            self.op
        }
        fn arg(&self, n: usize) -> u32 {
            self.args[n]
        }
        fn state(&self) -> u32 {
            self.state
        }
        fn family(&self) -> u32 {
            self.family
        }
        fn addrs(&self, family: u8) -> ([u32; 4], [u32; 4]) {
            if family == AF_INET {
                ([0x0100_a8c0, 0, 0, 0], [0x0200_a8c0, 0, 0, 0])
            } else {
                ([1, 2, 3, 4], [5, 6, 7, 8])
            }
        }
        fn ports(&self) -> (u16, u16) {
            (40000, 80)
        }
        fn counters(&self) -> Counters {
            self.c
        }
        fn cookie(&self) -> u64 {
            self.cookie
        }
        fn cb_flags(&self) -> u32 {
            self.flags_set.get()
        }
        fn set_cb_flags(&self, flags: u32) -> i64 {
            self.flags_set.set(flags);
            0
        }
    }

    struct Mock {
        now: Cell<u64>,
        cap: usize,
        map: RefCell<BTreeMap<u64, Box<SockStats>>>,
        ring: RefCell<Vec<SockStats>>,
        ring_cap: usize,
        counters: RefCell<[u64; counter::COUNT as usize]>,
        /// Open events staged as [`OpenEvent4`].
        opens4: Cell<u32>,
    }

    impl Mock {
        fn new(cap: usize, ring_cap: usize) -> Mock {
            Mock {
                now: Cell::new(1_000_000),
                cap,
                map: RefCell::new(BTreeMap::new()),
                ring: RefCell::new(Vec::new()),
                ring_cap,
                counters: RefCell::new([0; counter::COUNT as usize]),
                opens4: Cell::new(0),
            }
        }
        fn get(&self, cookie: u64) -> Option<SockStats> {
            self.map.borrow().get(&cookie).map(|b| **b)
        }
        fn n(&self, c: u32) -> u64 {
            self.counters.borrow()[c as usize]
        }
    }

    impl Env for Mock {
        fn now_ns(&self) -> u64 {
            self.now.get()
        }
        fn cb_flags(&self) -> u32 {
            cb_flag::DEFAULT
        }
        fn lookup(&self, cookie: u64) -> Option<*mut SockStats> {
            self.map
                .borrow_mut()
                .get_mut(&cookie)
                .map(|b| &mut **b as *mut SockStats)
        }
        fn insert(&self, cookie: u64, v: &SockStats) -> i64 {
            let mut m = self.map.borrow_mut();
            if m.contains_key(&cookie) {
                return -17;
            }
            if m.len() >= self.cap {
                return E2BIG;
            }
            m.insert(cookie, Box::new(*v));
            0
        }
        fn remove(&self, cookie: u64) {
            self.map.borrow_mut().remove(&cookie);
        }
        fn emit(&self, v: &SockStats) -> bool {
            let mut r = self.ring.borrow_mut();
            if r.len() >= self.ring_cap {
                return false;
            }
            r.push(*v);
            true
        }
        fn stage_open(&self, v: &OpenEvent) -> bool {
            self.emit(&v.to_stats())
        }
        fn stage_open4(&self, v: &OpenEvent4) -> bool {
            self.opens4.set(self.opens4.get() + 1);
            self.emit(&v.to_open().to_stats())
        }
        fn stage(&self, v: &CloseEvent) -> bool {
            // Staging itself is tested on its own (test_stage_*); here a staged close is
            // delivered at once, with the ring buffer's capacity.
            self.emit(&v.to_stats())
        }
        fn count(&self, c: u32) {
            self.counters.borrow_mut()[c as usize] += 1;
        }
    }

    fn run(ctx: &Ctx, env: &Mock) {
        assert_eq!(on_sock_ops(ctx, env), RET);
    }

    fn state_cb(cookie: u64, old: u32, new: u32, c: Counters) -> Ctx {
        let mut ctx = Ctx::new(op::STATE_CB, cookie);
        ctx.state = old;
        ctx.args = [old, new, 0, 0];
        ctx.c = c;
        ctx
    }

    /// Connect + established for a client socket.
    fn established_client(env: &Mock, cookie: u64, srtt: u32, syn_retrans: u32) {
        let connect = Ctx::new(op::TCP_CONNECT_CB, cookie);
        run(&connect, env);
        assert_eq!(connect.flags_set.get(), cb_flag::DEFAULT & !cb_flag::RTT);
        let mut est = Ctx::new(op::ACTIVE_ESTABLISHED_CB, cookie);
        est.c.srtt_us8 = 8 * srtt;
        est.c.bytes_acked = 1;
        est.c.total_retrans = syn_retrans;
        run(&est, env);
        assert_eq!(est.flags_set.get() & !cb_flag::MARK, cb_flag::DEFAULT);
    }

    /// What user space does with an open event: insert it as the socket's entry.
    fn adopt_open(env: &Mock, cookie: u64) {
        let ev = *env
            .ring
            .borrow()
            .iter()
            .find(|e| e.cookie == cookie && e.event == event::OPEN)
            .expect("open event");
        let mut entry = ev;
        entry.event = 0;
        assert_eq!(env.insert(cookie, &entry), 0);
    }

    fn events(env: &Mock, kind: u8) -> std::vec::Vec<SockStats> {
        env.ring
            .borrow()
            .iter()
            .filter(|e| e.event == kind)
            .copied()
            .collect()
    }

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
        assert_eq!((s.srtt_us, s.rtt_count, s.rtt_min_us), (240, 1, 240));
        // RTT samples before user space adopts the socket are not kept.
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
            1,
            "gated: too few segments yet"
        );
        r.c.data_segs_out = RTT_GATE_SEGS - 1;
        r.c.data_segs_in = 1;
        run(&r, &env);
        assert_eq!(env.get(7).unwrap().rtt_count, 2);
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
        assert_eq!(close[0].rtt_count, 2);
        let kept = env.get(7).unwrap();
        assert_eq!(
            kept.flags & sflag::CLOSED,
            sflag::CLOSED,
            "user space deletes it"
        );
        assert_eq!(kept.event, 0);
    }

    #[test]
    fn test_client_handshake_includes_syn_backoff() {
        assert_eq!(client_handshake_us(500, 0), 500);
        assert_eq!(client_handshake_us(500, 1), 1_000_500);
        assert_eq!(client_handshake_us(500, 2), 3_000_500);
        let env = Mock::new(16, 16);
        established_client(&env, 1, 700, 2);
        let s = events(&env, event::OPEN)[0];
        assert_eq!(s.handshake_us, 3_000_700);
        assert_eq!((s.retrans, s.rto), ([2, 0, 0], [2, 0, 0]));
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

    #[test]
    fn test_retrans_and_rto_split_by_phase() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 100, 1);
        adopt_open(&env, 1);
        for (state, segs) in [
            (tcp_state::ESTABLISHED, 3),
            (tcp_state::ESTABLISHED, 2),
            (tcp_state::FIN_WAIT1, 1),
            (tcp_state::LAST_ACK, 1),
        ] {
            let mut r = Ctx::new(op::RETRANS_CB, 1);
            r.state = state;
            r.args = [1234, segs, 0, 0];
            run(&r, &env);
            let mut t = Ctx::new(op::RTO_CB, 1);
            t.state = state;
            run(&t, &env);
        }
        // A failed transmit is not a retransmission (the kernel does not count it either).
        let mut r = Ctx::new(op::RETRANS_CB, 1);
        r.args = [1, 5, (-105i32) as u32, 0];
        run(&r, &env);
        let s = env.get(1).unwrap();
        assert_eq!(s.retrans, [1, 5, 2]);
        assert_eq!(s.rto, [1, 2, 2]);
    }

    /// A retransmission before user space inserted the entry: the program creates it.
    #[test]
    fn test_retransmission_adopts_the_socket() {
        let env = Mock::new(16, 16);
        established_client(&env, 1, 100, 0);
        let mut r = Ctx::new(op::RETRANS_CB, 1);
        r.args = [1234, 2, 0, 0];
        run(&r, &env);
        let s = env.get(1).unwrap();
        assert_eq!(s.flags & sflag::ADOPTED, sflag::ADOPTED);
        assert_eq!(s.retrans, [0, 2, 0]);
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
        let s = env.get(1).unwrap();
        assert_eq!(
            (s.rtt_count, s.rtt_sum_us, s.rtt_min_us, s.rtt_max_us),
            (4, 650, 50, 300)
        );
        assert_eq!(s.srtt_us, 115);
        // Old kernels pass no arguments: the smoothed RTT is the sample.
        let mut r = Ctx::new(op::RTT_CB, 1);
        r.c.data_segs_in = RTT_GATE_SEGS;
        r.c.srtt_us8 = 8 * 40;
        run(&r, &env);
        let s = env.get(1).unwrap();
        assert_eq!((s.rtt_count, s.rtt_min_us, s.srtt_us), (5, 40, 40));
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
        assert_eq!(SOCK_STATS_LEN, 144);
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
        assert_eq!(lens, [144, 576, 384, 448]);
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
