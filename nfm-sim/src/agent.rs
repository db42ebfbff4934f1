//! A virtual agent: the identity a real agent has (agent id, session epoch, sequence numbers)
//! and the frames it sends, built with nfm-wire exactly as the real agent builds them.
//!
//! Agent ids are FNV-1a of the host name, so a host keeps its id across runs; the epoch is the
//! run's start in seconds (a new run is a new session). Every frame, Hello and AgentStats
//! included, takes the next sequence number. Hello announces `cap::SIMULATED` so that a
//! collector never presents these flows as measured.

use crate::fleet::fnv1a;
use nfm_wire::{
    cap, encode, encode_flow_batch, AgentStats, BatchView, FlowRecord, Header, Hello, Message,
    Sequencer, MAX_FRAME_LEN,
};

/// Version string sent in Hello.
pub const SIM_VERSION: &str = concat!("nfm-sim/", env!("CARGO_PKG_VERSION"));

/// One virtual agent's session state.
#[derive(Debug, Clone)]
pub struct VirtualAgent {
    pub host_name: String,
    /// Agent id, session epoch and the next sequence number.
    pub seq: Sequencer,
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
            seq: Sequencer::new(id, epoch),
            started_at_ms,
            frames_built: 0,
            records_built: 0,
        }
    }

    pub fn agent_id(&self) -> u64 {
        self.seq.agent_id
    }

    pub fn epoch(&self) -> u32 {
        self.seq.epoch
    }

    /// The header of the next frame (its sequence number is taken).
    pub fn header(&mut self) -> Header {
        self.seq.next_header()
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
            // wire 1.1 placement fields (issue 17): a virtual agent runs nowhere.
            ..Hello::default()
        });
        encode(&h, &msg, None, out);
        self.frames_built += 1;
        h.seq
    }

    /// The FlowBatch frames of one interval, each at most `max_frame_len` bytes and with the
    /// number of records it carries, and the sequence number of the first one. Empty when there
    /// are no records.
    pub fn batch(
        &mut self,
        interval: (u64, u64),
        records: &[FlowRecord],
        max_frame_len: usize,
    ) -> Result<(u64, Vec<nfm_wire::EncodedFrame>), nfm_wire::Error> {
        let first = self.seq.next_seq();
        if records.is_empty() {
            return Ok((first, Vec::new()));
        }
        let frames = encode_flow_batch(&mut self.seq, interval, records, max_frame_len, None)?;
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

/// Gives a FlowBatch frame this process encoded (unsigned) a new header and interval, in place,
/// and refreshes its CRC, so a load test can resend the same records without re-encoding them
/// (nfm-wire's [`BatchView::restamp`]; byte-identical to a fresh encoding). Returns false,
/// leaving the frame untouched, when that cannot be done in place (then re-encode).
pub fn restamp(frame: &mut [u8], header: &Header, interval: (u64, u64)) -> bool {
    BatchView::new_checked(frame, MAX_FRAME_LEN)
        .and_then(|mut v| v.restamp(header, interval))
        .is_ok()
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn records(n: usize) -> Vec<FlowRecord> {
        (0..n)
            .map(|i| FlowRecord {
                local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                remote: IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8)),
                remote_port: 443,
                bytes_sent: 1000 * i as u64,
                ..FlowRecord::default()
            })
            .collect()
    }

    #[test]
    fn test_restamp_equals_fresh_encoding() {
        let recs = records(200);
        let mut a = VirtualAgent::new("h", 7, 0);
        let (_, mut old) = a
            .batch((1_700_000_000_000, 1_700_000_005_000), &recs, 1400)
            .unwrap();
        let mut b = VirtualAgent::new("h", 7, 0);
        b.seq = Sequencer::starting_at(b.agent_id(), 7, 1_000);
        let (_, fresh) = b
            .batch((1_800_000_000_000, 1_800_000_060_000), &recs, 1400)
            .unwrap();
        assert!(old.len() > 1);
        for (i, f) in old.iter_mut().enumerate() {
            let h = Header {
                agent_id: a.agent_id(),
                epoch: 7,
                seq: 1_000 + i as u64,
            };
            assert!(restamp(
                &mut f.bytes,
                &h,
                (1_800_000_000_000, 1_800_000_060_000)
            ));
            assert_eq!(
                f.bytes, fresh[i].bytes,
                "byte-identical to a fresh encoding"
            );
        }
    }

    #[test]
    fn test_restamp_refuses_what_it_cannot_patch() {
        let recs = records(2);
        let mut a = VirtualAgent::new("h", 7, 0);
        // Small timestamps are short varints: refused, untouched.
        let (_, mut f) = a.batch((5, 10), &recs, 1400).unwrap();
        let before = f[0].bytes.clone();
        assert!(!restamp(
            &mut f[0].bytes,
            &Header::default(),
            (1_800_000_000_000, 1_800_000_060_000)
        ));
        assert_eq!(f[0].bytes, before);
        // Not a FlowBatch.
        let mut h = Vec::new();
        a.hello(1000, &mut h);
        assert!(!restamp(
            &mut h,
            &Header::default(),
            (1_800_000_000_000, 1_800_000_060_000)
        ));
        // Too short.
        assert!(!restamp(
            &mut [0u8; 10],
            &Header::default(),
            (1_800_000_000_000, 1_800_000_060_000)
        ));
    }
}
