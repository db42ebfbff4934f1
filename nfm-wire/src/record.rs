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

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// Decodes one record in wire form, in place (a record is ~250 bytes: decoding into its final
/// slot instead of returning it by value removed most of the decoder's memmove time).
/// `lenient` is set when the sender's minor version is newer than ours: unknown flag and
/// bitmap bits are then skipped instead of refused.
pub(crate) struct RecordSeed<'a> {
    pub lenient: bool,
    pub out: &'a mut FlowRecord,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // See `serialize`: the length is an upper bound; the visitor reads what the bitmap says.
        d.deserialize_tuple(usize::MAX, self)
    }
}

fn malformed<E: de::Error>(field: &'static str) -> E {
    E::custom(field)
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an nfm flow record")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        macro_rules! next {
            ($t:ty, $name:literal) => {
                seq.next_element::<$t>()?
                    .ok_or_else(|| malformed::<A::Error>($name))?
            };
        }
        let flags = next!(u8, "flow.flags");
        if !self.lenient && flags & !flag::KNOWN != 0 {
            return Err(malformed("flow.flags"));
        }
        let present = u16::from_le_bytes(next!([u8; 2], "flow.present"));
        if !self.lenient && present & !bit::KNOWN != 0 {
            return Err(malformed("flow.present"));
        }
        let r = self.out;
        r.role = if flags & flag::SERVER != 0 {
            Role::Server
        } else {
            Role::Client
        };
        r.local = if flags & flag::LOCAL_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(next!([u8; 16], "flow.local")))
        } else {
            IpAddr::V4(Ipv4Addr::from(next!([u8; 4], "flow.local")))
        };
        r.remote = if flags & flag::REMOTE_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(next!([u8; 16], "flow.remote")))
        } else {
            IpAddr::V4(Ipv4Addr::from(next!([u8; 4], "flow.remote")))
        };
        r.local_port = next!(u16, "flow.local_port");
        r.remote_port = next!(u16, "flow.remote_port");
        let has = |b: u16| present & b != 0;
        if has(bit::BYTES_SENT) {
            r.bytes_sent = next!(u64, "flow.bytes_sent");
        }
        if has(bit::BYTES_RECEIVED) {
            r.bytes_received = next!(u64, "flow.bytes_received");
        }
        if has(bit::SEGS_OUT) {
            r.segs_out = next!(u64, "flow.segs_out");
        }
        if has(bit::SEGS_IN) {
            r.segs_in = next!(u64, "flow.segs_in");
        }
        if has(bit::RTT) {
            r.rtt = RttSummary {
                count: next!(u64, "flow.rtt"),
                sum_us: next!(u64, "flow.rtt"),
                min_us: next!(u64, "flow.rtt"),
                max_us: next!(u64, "flow.rtt"),
                last_srtt_us: next!(u64, "flow.rtt"),
            };
        }
        if has(bit::SOCKETS_OPEN) {
            r.sockets_open = next!(u64, "flow.sockets_open");
        }
        if has(bit::CONN_ATTEMPTS) {
            r.conn_attempts = next!(u64, "flow.conn_attempts");
        }
        if has(bit::CONN_COMPLETED) {
            r.conn_completed = next!(u64, "flow.conn_completed");
        }
        if has(bit::CONN_FAILED) {
            r.conn_failed = next!(u64, "flow.conn_failed");
        }
        if has(bit::CONN_SEVERED) {
            r.conn_severed = next!(u64, "flow.conn_severed");
        }
        if has(bit::RETRANS) {
            r.retrans = PhaseCounts {
                handshake: next!(u64, "flow.retrans"),
                established: next!(u64, "flow.retrans"),
                closing: next!(u64, "flow.retrans"),
            };
        }
        if has(bit::RTO) {
            r.rto = PhaseCounts {
                handshake: next!(u64, "flow.rto"),
                established: next!(u64, "flow.rto"),
                closing: next!(u64, "flow.rto"),
            };
        }
        if has(bit::HANDSHAKE) {
            r.handshake = TimeSummary {
                count: next!(u64, "flow.handshake"),
                sum_us: next!(u64, "flow.handshake"),
                min_us: next!(u64, "flow.handshake"),
                max_us: next!(u64, "flow.handshake"),
            };
        }
        // Only reachable when lenient: values of groups a newer minor version added.
        for b in 13..15 {
            if has(1 << b) {
                let _ = next!(u64, "flow.extension");
            }
        }
        if has(bit::EXTENSION) {
            let ext = next!(u64, "flow.extension");
            for _ in 0..ext.count_ones() {
                let _ = next!(u64, "flow.extension");
            }
        }
        Ok(())
    }
}
