//! The kernel↔user records: [`SockStats`] (a socket's cumulative counters, the map value and
//! the record of a close sent whole), the compact open and close events, their flags and the
//! per-CPU counters. `#[repr(C)]`, `Copy`, explicit padding, no `bool`: user space reads the
//! same bytes the program wrote.

use crate::*;

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
    /// Sum of RTT samples, µs (every sample of the socket's life).
    pub rtt_sum_us: u64,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    /// RTT samples (every sample of the socket's life).
    pub rtt_count: u32,
    /// Minimum and maximum of the samples taken while user space's interval was `rtt_epoch`
    /// (see [`add_rtt_sample`]): not the socket's lifetime extremes.
    pub rtt_min_us: u32,
    pub rtt_max_us: u32,
    /// Smoothed RTT at the last callback, µs (the kernel's `srtt_us >> 3`).
    pub srtt_us: u32,
    /// The kernel's `total_retrans` at the last callback.
    pub total_retrans: u32,
    /// Connect → established (client), or the SYN-ACK → ACK round trip (server), µs.
    pub handshake_us: u32,
    /// The interval ([`Env::epoch`]) of `rtt_min_us` / `rtt_max_us`.
    pub rtt_epoch: u32,
    pub _pad32: u32,
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
    /// [`phase`] the socket was in when the program created its entry ([`sflag::ADOPTED`]):
    /// where user space attributes the retransmissions the kernel had counted by then beyond
    /// the handshake's.
    pub adopt_phase: u8,
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
    /// The handshake's round trip, µs (the kernel's srtt at establishment).
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
    /// The socket's cumulative record as of its open (what a map entry starts from). The
    /// handshake's round trip is the handshake time, not an RTT sample: a connection's RTT
    /// samples are those of its data (see [`RTT_GATE_SEGS`]).
    pub fn to_stats(&self) -> SockStats {
        let rtt = self.srtt_us;
        SockStats {
            seq: self.seq,
            seq_end: self.seq_end,
            cookie: self.cookie,
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

#[cfg(feature = "user")]
unsafe impl aya::Pod for SockStats {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OpenEvent4 {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OpenEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CloseEvent {}
