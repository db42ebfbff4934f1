//! Round trips, corruption, truncation, versioning and stream framing of whole frames.

use nfm_wire::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn sample_record(i: u32) -> FlowRecord {
    FlowRecord {
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 17)),
        remote: IpAddr::V4(Ipv4Addr::from(0x0a00_0200 + i)),
        local_port: 0,
        remote_port: 443,
        role: Role::Client,
        bytes_sent: 48_213 + i as u64,
        bytes_received: 1_201_877,
        segs_out: 61,
        segs_in: 840,
        rtt: RttSummary {
            count: 12,
            sum_us: 5_400,
            min_us: 380,
            max_us: 610,
            last_srtt_us: 450,
        },
        sockets_open: 2,
        ..FlowRecord::default()
    }
}

const HDR: Header = Header {
    agent_id: 0x1122_3344_5566_7788,
    epoch: 7,
    seq: 42,
};

#[test]
fn test_batch_round_trip() {
    let batch = FlowBatch {
        interval_start_ms: 1_764_000_000_000,
        interval_end_ms: 1_764_000_005_000,
        records: (0..50).map(sample_record).collect(),
    };
    let msg = Message::FlowBatch(batch);
    let bytes = encode_to_vec(&HDR, &msg, None);
    let p = decode(&bytes, &DecodeOptions::default()).unwrap();
    assert_eq!(p.header, HDR);
    assert_eq!(p.message, msg);
}
