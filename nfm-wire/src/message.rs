//! The message bodies: what each frame type carries, and their bincode encoding.
//!
//! Every body is encoded with bincode 2's `standard()` configuration (little-endian, varint
//! integers) through serde, with the byte-level rules written down in `docs/wire.md` so that
//! the bytes never depend on a crate version. FlowBatch bodies are decoded by `batch.rs`,
//! which reads the same bytes directly (the hot path); the other bodies through serde. A body decoded from a newer minor version may have
//! trailing fields; they are skipped. From the same minor version, trailing bytes are an error.

use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::header::MsgType;
use crate::record::{FlowRecord, WireRecord};

/// Capability bits announced in [`Hello::capabilities`].
pub mod cap {
    /// The sender keeps unacked frames and resends them after a reconnect (TCP transport).
    pub const RESENDS: u64 = 1 << 0;
    /// The sender reports IPv6 flows.
    pub const IPV6: u64 = 1 << 1;
    /// Records carry handshake-time summaries.
    pub const HANDSHAKE_TIME: u64 = 1 << 2;
    /// Flows are measured from the kernel by the eBPF sock_ops program.
    pub const EBPF: u64 = 1 << 3;
    /// Flows are simulated by nfm-sim, not measured: a collector must never present them as real.
    pub const SIMULATED: u64 = 1 << 4;
}

/// First frame of every session (and first datagram of each UDP interval, so a collector that
/// restarted learns who is talking).
///
/// Version 1.1 appends where the agent runs (issue 17): the instance metadata service's answers,
/// each empty (none) when unknown. A 1.0 Hello decodes with them empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Hello {
    pub host_name: String,
    pub agent_version: String,
    /// The agent's interval, in milliseconds.
    pub interval_ms: u32,
    /// Bits from [`cap`].
    pub capabilities: u64,
    /// When this session (epoch) started, Unix milliseconds.
    pub started_at_ms: u64,
    /// Since 1.1: cloud instance id (`i-0abc...`).
    pub instance_id: String,
    /// Since 1.1: region (`us-east-1`).
    pub region: String,
    /// Since 1.1: availability zone id (`use1-az1`), or its name (`us-east-1a`) when the
    /// metadata service has no id.
    pub az: String,
    /// Since 1.1: subnet and VPC of the primary network interface.
    pub subnet_id: String,
    pub vpc_id: String,
    /// Since 1.1: the primary interface's private addresses (the collector places them).
    pub addresses: Vec<std::net::IpAddr>,
}

/// The Hello body of version 1.0 (no placement fields).
#[derive(Deserialize)]
pub(crate) struct HelloV10 {
    host_name: String,
    agent_version: String,
    interval_ms: u32,
    capabilities: u64,
    started_at_ms: u64,
}

impl From<HelloV10> for Hello {
    fn from(h: HelloV10) -> Hello {
        Hello {
            host_name: h.host_name,
            agent_version: h.agent_version,
            interval_ms: h.interval_ms,
            capabilities: h.capabilities,
            started_at_ms: h.started_at_ms,
            ..Hello::default()
        }
    }
}

/// Flow deltas for one interval (or a part of it: a batch may be split over several frames).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowBatch {
    /// Interval start, Unix milliseconds (simulated time when the sender is nfm-sim in replay mode).
    pub interval_start_ms: u64,
    /// Interval end, Unix milliseconds.
    pub interval_end_ms: u64,
    pub records: Vec<FlowRecord>,
}

/// Collector → agent over TCP: every frame of the connection's agent with this epoch and a
/// sequence number up to and including `seq` is durable and will never be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ack {
    pub epoch: u32,
    pub seq: u64,
}

/// The agent's own health. Counters are cumulative since the session (epoch) started, so a lost
/// datagram loses no information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentStats {
    pub uptime_ms: u64,
    /// Ring-buffer events the kernel could not deliver (buffer full).
    pub events_lost: u64,
    /// Sockets the eBPF program could not track because its map was full.
    pub map_full: u64,
    /// Other failed map updates in the eBPF program.
    pub map_update_failed: u64,
    /// Frames dropped from the spool because it overflowed, and the records they held.
    pub spool_dropped_frames: u64,
    pub spool_dropped_records: u64,
    pub send_errors: u64,
    /// Process CPU time (user + system), microseconds.
    pub cpu_time_us: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Flows and sockets currently tracked.
    pub flows_tracked: u64,
    pub sockets_tracked: u64,
    /// Frames the agent has built and records in them.
    pub frames_sent: u64,
    pub records_sent: u64,
}

/// The sender closes the session on purpose (shutdown, reconfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Goodbye {
    pub reason: String,
}

/// Collector → agent over TCP, just before closing on a fatal protocol error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorMsg {
    /// A stable reason label, as [`crate::Error::reason`] gives.
    pub reason: String,
    /// The full, human-readable message.
    pub message: String,
}

/// One decoded message of any type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    FlowBatch(FlowBatch),
    Ack(Ack),
    AgentStats(AgentStats),
    Goodbye(Goodbye),
    Error(ErrorMsg),
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Hello(_) => MsgType::Hello,
            Message::FlowBatch(_) => MsgType::FlowBatch,
            Message::Ack(_) => MsgType::Ack,
            Message::AgentStats(_) => MsgType::AgentStats,
            Message::Goodbye(_) => MsgType::Goodbye,
            Message::Error(_) => MsgType::Error,
        }
    }
}

/// The wire form of a FlowBatch body: `interval_start_ms varint u64, interval_end_ms varint u64,
/// record count varint u64, records`.
pub(crate) struct WireBatch<'a> {
    pub interval_start_ms: u64,
    pub interval_end_ms: u64,
    pub records: &'a [FlowRecord],
}

impl Serialize for WireBatch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.interval_start_ms)?;
        t.serialize_element(&self.interval_end_ms)?;
        t.serialize_element(&Records(self.records))?;
        t.end()
    }
}

struct Records<'a>(&'a [FlowRecord]);

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(WireRecord))
    }
}

/// The smallest record on the wire: flags, bitmap, two IPv4 addresses, two one-byte ports.
pub const MIN_RECORD_LEN: usize = 1 + 2 + 4 + 4 + 1 + 1;
