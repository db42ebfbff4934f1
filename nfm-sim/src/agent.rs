//! A virtual agent: the identity a real agent has (agent id, session epoch, sequence numbers)
//! and the frames it sends, built with nfm-wire exactly as the real agent builds them.
//!
//! Agent ids are FNV-1a of the host name, so a host keeps its id across runs; the epoch is the
//! run's start in seconds (a new run is a new session). Every frame, Hello and AgentStats
//! included, takes the next sequence number. Hello announces `cap::SIMULATED` so that a
//! collector never presents these flows as measured.

use crate::fleet::fnv1a;
use nfm_wire::{cap, encode, encode_flow_batch, AgentStats, FlowRecord, Header, Hello, Message};

/// Version string sent in Hello.
pub const SIM_VERSION: &str = concat!("nfm-sim/", env!("CARGO_PKG_VERSION"));

/// One virtual agent's session state.
#[derive(Debug, Clone)]
pub struct VirtualAgent {
    pub host_name: String,
    pub agent_id: u64,
    pub epoch: u32,
    pub next_seq: u64,
    pub started_at_ms: u64,
    pub frames_built: u64,
    pub records_built: u64,
}

impl VirtualAgent {
    pub fn new(host_name: &str, epoch: u32, started_at_ms: u64) -> VirtualAgent {
        let mut id = fnv1a(format!("nfm-sim:{host_name}").as_bytes());
        if id == 0 {
            id = 1;
        }
        VirtualAgent {
            host_name: host_name.to_string(),
            agent_id: id,
            epoch,
            next_seq: 0,
            started_at_ms,
            frames_built: 0,
            records_built: 0,
        }
    }

    fn header(&mut self) -> Header {
        let h = Header {
            agent_id: self.agent_id,
            epoch: self.epoch,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        h
    }

    /// Appends a Hello frame; returns its sequence number.
    pub fn hello(&mut self, interval_ms: u32, out: &mut Vec<u8>) -> u64 {
        let h = self.header();
        let msg = Message::Hello(Hello {
            host_name: self.host_name.clone(),
            agent_version: SIM_VERSION.to_string(),
            interval_ms,
            capabilities: cap::SIMULATED | cap::HANDSHAKE_TIME,
            started_at_ms: self.started_at_ms,
        });
        encode(&h, &msg, None, out);
        self.frames_built += 1;
        h.seq
    }

    /// The FlowBatch frames of one interval, each at most `max_frame_len` bytes, with the
    /// sequence number of the first one. Empty when there are no records.
    pub fn batch(
        &mut self,
        interval: (u64, u64),
        records: &[FlowRecord],
        max_frame_len: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), nfm_wire::Error> {
        let first = self.next_seq;
        if records.is_empty() {
            return Ok((first, Vec::new()));
        }
        let frames = encode_flow_batch(
            self.agent_id,
            self.epoch,
            &mut self.next_seq,
            interval,
            records,
            max_frame_len,
            None,
        )?;
        self.frames_built += frames.len() as u64;
        self.records_built += records.len() as u64;
        Ok((first, frames))
    }

    /// Appends an AgentStats frame (cumulative counters); returns its sequence number.
    pub fn stats(&mut self, now_ms: u64, send_errors: u64, flows: u64, out: &mut Vec<u8>) -> u64 {
        let h = self.header();
        self.frames_built += 1;
        let msg = Message::AgentStats(AgentStats {
            uptime_ms: now_ms.saturating_sub(self.started_at_ms),
            send_errors,
            flows_tracked: flows,
            frames_sent: self.frames_built,
            records_sent: self.records_built,
            ..AgentStats::default()
        });
        encode(&h, &msg, None, out);
        h.seq
    }
}
