//! The flow record: one service-level flow's deltas over one interval, and its compact wire form.
//!
//! Why a presence bitmap: in a real interval most counters of most flows are zero (no
//! retransmissions, no timeouts, no new connections). Sending only the non-zero groups keeps an
//! IPv4 record near 40 bytes. Why only varint `u64` values behind the bitmap: a decoder that meets
//! a bit from a newer minor version can skip that value without knowing what it means, because a
//! bincode varint says its own length in its first byte.
//!
//! Record layout (bincode standard config; `docs/wire.md` has the byte-level rules):
//!
//! ```text
//! flags     u8       bit0 role=server, bit1 local is IPv6, bit2 remote is IPv6, bits 3..7 zero
//! present   u8 u8    16-bit bitmap, little-endian (bit i = group i follows)
//! local     4 or 16 raw bytes (network order, as the address is written)
//! remote    4 or 16 raw bytes
//! lport     varint u16
//! rport     varint u16
//! groups    for each set bit, in bit order, its varint u64 values (see `bit`)
//! ```

use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// Which end of the connection this host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// This host opened the connection (active open). The local port is ephemeral.
    #[default]
    Client,
    /// This host accepted the connection (passive open). The remote port is ephemeral.
    Server,
}

/// A counter split by the TCP phase in which the event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// SYN / SYN-ACK retransmissions and timeouts before the connection is established.
    pub handshake: u64,
    /// While established.
    pub established: u64,
    /// After a FIN was sent or received (FIN-WAIT, CLOSE-WAIT, LAST-ACK, CLOSING).
    pub closing: u64,
}

impl PhaseCounts {
    /// Sum of the three phases, saturating (values are untrusted wire input).
    pub fn total(&self) -> u64 {
        self.handshake
            .saturating_add(self.established)
            .saturating_add(self.closing)
    }
    pub fn is_zero(&self) -> bool {
        *self == PhaseCounts::default()
    }
}

/// Summary of RTT samples in one interval, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RttSummary {
    pub count: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    /// The kernel's smoothed RTT at the last sample.
    pub last_srtt_us: u64,
}

/// Summary of durations in one interval (handshake times), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeSummary {
    pub count: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
}

/// One flow's deltas over one interval.
///
/// A flow is service-level: the ephemeral port is elided (0), so a client flow keeps the
/// remote (service) port and a server flow keeps its local (listening) port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub role: Role,
    /// Payload bytes sent and acknowledged by the peer.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segs_out: u64,
    pub segs_in: u64,
    pub rtt: RttSummary,
    /// Gauge: sockets of this flow open at the end of the interval.
    pub sockets_open: u64,
    /// Connections this host attempted (client) or accepted (server) in the interval.
    pub conn_attempts: u64,
    /// Connections that closed normally.
    pub conn_completed: u64,
    /// Connections closed from SYN-SENT / SYN-RECV: the handshake never finished.
    pub conn_failed: u64,
    /// Established connections ended by reset or timeout.
    pub conn_severed: u64,
    pub retrans: PhaseCounts,
    /// Retransmission timeouts (RTO expiries).
    pub rto: PhaseCounts,
    pub handshake: TimeSummary,
}

impl Default for FlowRecord {
    fn default() -> Self {
        FlowRecord {
            local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            local_port: 0,
            remote_port: 0,
            role: Role::Client,
            bytes_sent: 0,
            bytes_received: 0,
            segs_out: 0,
            segs_in: 0,
            rtt: RttSummary::default(),
            sockets_open: 0,
            conn_attempts: 0,
            conn_completed: 0,
            conn_failed: 0,
            conn_severed: 0,
            retrans: PhaseCounts::default(),
            rto: PhaseCounts::default(),
            handshake: TimeSummary::default(),
        }
    }
}

impl Role {
    /// The service-port rule: a flow is service-level, so the ephemeral port is elided (0). A
    /// client keeps the remote (service) port, a server its local (listening) port. Returns
    /// `(local_port, remote_port)` as a record carries them. Agent, simulator and collector all
    /// fold sockets into flows by this one rule.
    pub fn service_ports(self, local_port: u16, remote_port: u16) -> (u16, u16) {
        match self {
            Role::Client => (0, remote_port),
            Role::Server => (local_port, 0),
        }
    }

    /// The service port of a socket or record seen from this end.
    pub fn service_port(self, local_port: u16, remote_port: u16) -> u16 {
        match self {
            Role::Client => remote_port,
            Role::Server => local_port,
        }
    }
}

impl FlowRecord {
    /// This flow's service port (the [`Role::service_port`] of its ports).
    pub fn service_port(&self) -> u16 {
        self.role.service_port(self.local_port, self.remote_port)
    }

    /// The record-merge rule: folds `b` (a later or parallel delta of the same flow) into `self`.
    /// Counters add, saturating (values are untrusted wire input); RTT and handshake summaries
    /// combine count, sum, min and max; `last_srtt_us` follows `b` when `b` has samples.
    pub fn merge(&mut self, b: &FlowRecord) {
        let s = |x: &mut u64, y: u64| *x = x.saturating_add(y);
        s(&mut self.bytes_sent, b.bytes_sent);
        s(&mut self.bytes_received, b.bytes_received);
        s(&mut self.segs_out, b.segs_out);
        s(&mut self.segs_in, b.segs_in);
        if b.rtt.count > 0 {
            self.rtt.min_us = if self.rtt.count == 0 {
                b.rtt.min_us
            } else {
                self.rtt.min_us.min(b.rtt.min_us)
            };
            self.rtt.max_us = self.rtt.max_us.max(b.rtt.max_us);
            self.rtt.last_srtt_us = b.rtt.last_srtt_us;
        }
        s(&mut self.rtt.count, b.rtt.count);
        s(&mut self.rtt.sum_us, b.rtt.sum_us);
        s(&mut self.sockets_open, b.sockets_open);
        s(&mut self.conn_attempts, b.conn_attempts);
        s(&mut self.conn_completed, b.conn_completed);
        s(&mut self.conn_failed, b.conn_failed);
        s(&mut self.conn_severed, b.conn_severed);
        for (x, y) in [(&mut self.retrans, &b.retrans), (&mut self.rto, &b.rto)] {
            s(&mut x.handshake, y.handshake);
            s(&mut x.established, y.established);
            s(&mut x.closing, y.closing);
        }
        if b.handshake.count > 0 {
            self.handshake.min_us = if self.handshake.count == 0 {
                b.handshake.min_us
            } else {
                self.handshake.min_us.min(b.handshake.min_us)
            };
            self.handshake.max_us = self.handshake.max_us.max(b.handshake.max_us);
        }
        s(&mut self.handshake.count, b.handshake.count);
        s(&mut self.handshake.sum_us, b.handshake.sum_us);
    }
}

/// Bits of the `flags` byte.
pub mod flag {
    pub const SERVER: u8 = 0x01;
    pub const LOCAL_V6: u8 = 0x02;
    pub const REMOTE_V6: u8 = 0x04;
    pub const KNOWN: u8 = SERVER | LOCAL_V6 | REMOTE_V6;
}

/// Bits of the `present` bitmap, and the varint `u64` values each group carries, in order.
pub mod bit {
    /// bytes_sent
    pub const BYTES_SENT: u16 = 1 << 0;
    /// bytes_received
    pub const BYTES_RECEIVED: u16 = 1 << 1;
    /// segs_out
    pub const SEGS_OUT: u16 = 1 << 2;
    /// segs_in
    pub const SEGS_IN: u16 = 1 << 3;
    /// rtt: count, sum_us, min_us, max_us, last_srtt_us
    pub const RTT: u16 = 1 << 4;
    /// sockets_open
    pub const SOCKETS_OPEN: u16 = 1 << 5;
    /// conn_attempts
    pub const CONN_ATTEMPTS: u16 = 1 << 6;
    /// conn_completed
    pub const CONN_COMPLETED: u16 = 1 << 7;
    /// conn_failed
    pub const CONN_FAILED: u16 = 1 << 8;
    /// conn_severed
    pub const CONN_SEVERED: u16 = 1 << 9;
    /// retrans: handshake, established, closing
    pub const RETRANS: u16 = 1 << 10;
    /// rto: handshake, established, closing
    pub const RTO: u16 = 1 << 11;
    /// handshake: count, sum_us, min_us, max_us
    pub const HANDSHAKE: u16 = 1 << 12;
    /// Bits 13 and 14: reserved for minor versions, one varint u64 each.
    pub const KNOWN: u16 = (1 << 13) - 1;
    /// Bit 15: an extension bitmap (varint u64) follows the groups above; each of its set bits
    /// adds one more varint u64 value, for future minor versions.
    pub const EXTENSION: u16 = 1 << 15;
}

impl FlowRecord {
    /// The presence bitmap this record encodes with.
    pub fn present(&self) -> u16 {
        let mut p = 0;
        let mut set = |b: u16, on: bool| {
            if on {
                p |= b
            }
        };
        set(bit::BYTES_SENT, self.bytes_sent != 0);
        set(bit::BYTES_RECEIVED, self.bytes_received != 0);
        set(bit::SEGS_OUT, self.segs_out != 0);
        set(bit::SEGS_IN, self.segs_in != 0);
        set(bit::RTT, self.rtt != RttSummary::default());
        set(bit::SOCKETS_OPEN, self.sockets_open != 0);
        set(bit::CONN_ATTEMPTS, self.conn_attempts != 0);
        set(bit::CONN_COMPLETED, self.conn_completed != 0);
        set(bit::CONN_FAILED, self.conn_failed != 0);
        set(bit::CONN_SEVERED, self.conn_severed != 0);
        set(bit::RETRANS, !self.retrans.is_zero());
        set(bit::RTO, !self.rto.is_zero());
        set(bit::HANDSHAKE, self.handshake != TimeSummary::default());
        p
    }
}

/// Serializes a record in its wire form (not the same as the derived `Serialize`, which is for JSON).
pub(crate) struct WireRecord<'a>(pub &'a FlowRecord);

enum AddrBytes {
    V4([u8; 4]),
    V6([u8; 16]),
}

fn addr_bytes(a: &IpAddr) -> AddrBytes {
    match a {
        IpAddr::V4(v4) => AddrBytes::V4(v4.octets()),
        IpAddr::V6(v6) => AddrBytes::V6(v6.octets()),
    }
}

impl Serialize for WireRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let present = r.present();
        let mut flags = 0u8;
        if r.role == Role::Server {
            flags |= flag::SERVER;
        }
        let local = addr_bytes(&r.local);
        let remote = addr_bytes(&r.remote);
        if matches!(local, AddrBytes::V6(_)) {
            flags |= flag::LOCAL_V6;
        }
        if matches!(remote, AddrBytes::V6(_)) {
            flags |= flag::REMOTE_V6;
        }
        // bincode writes tuple elements back to back with no length, so the length given here
        // only matters to self-describing formats, which this type is never used with.
        let mut t = s.serialize_tuple(64)?;
        t.serialize_element(&flags)?;
        t.serialize_element(&present.to_le_bytes())?;
        for a in [&local, &remote] {
            match a {
                AddrBytes::V4(b) => t.serialize_element(b)?,
                AddrBytes::V6(b) => t.serialize_element(b)?,
            }
        }
        t.serialize_element(&r.local_port)?;
        t.serialize_element(&r.remote_port)?;
        let mut put = |bitv: u16, vals: &[u64]| -> Result<(), S::Error> {
            if present & bitv != 0 {
                for v in vals {
                    t.serialize_element(v)?;
                }
            }
            Ok(())
        };
        put(bit::BYTES_SENT, &[r.bytes_sent])?;
        put(bit::BYTES_RECEIVED, &[r.bytes_received])?;
        put(bit::SEGS_OUT, &[r.segs_out])?;
        put(bit::SEGS_IN, &[r.segs_in])?;
        let rtt = &r.rtt;
        put(
            bit::RTT,
            &[
                rtt.count,
                rtt.sum_us,
                rtt.min_us,
                rtt.max_us,
                rtt.last_srtt_us,
            ],
        )?;
        put(bit::SOCKETS_OPEN, &[r.sockets_open])?;
        put(bit::CONN_ATTEMPTS, &[r.conn_attempts])?;
        put(bit::CONN_COMPLETED, &[r.conn_completed])?;
        put(bit::CONN_FAILED, &[r.conn_failed])?;
        put(bit::CONN_SEVERED, &[r.conn_severed])?;
        let (x, o) = (&r.retrans, &r.rto);
        put(bit::RETRANS, &[x.handshake, x.established, x.closing])?;
        put(bit::RTO, &[o.handshake, o.established, o.closing])?;
        let h = &r.handshake;
        put(bit::HANDSHAKE, &[h.count, h.sum_us, h.min_us, h.max_us])?;
        t.end()
    }
}
