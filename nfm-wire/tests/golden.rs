//! Golden vectors: the exact bytes of docs/wire.md. Changed golden bytes mean a new protocol version.

use nfm_wire::*;
use std::net::{IpAddr, Ipv4Addr};

static HELLO_BYTES: [u8; 61] = [
    0x4e, 0x46, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x05, 0x77, 0x65, 0x62, 0x2d, 0x31, 0x05, 0x30, 0x2e, 0x31, 0x2e, 0x30, 0xfb, 0x88, 0x13, 0x09,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0x5a, 0x9d, 0x98, 0x44,
];

static FLOW_BATCH_BYTES: [u8; 96] = [
    0x4e, 0x46, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0xfd, 0x88, 0xfb, 0x97, 0xb6, 0x9a, 0x01,
    0x00, 0x00, 0x01, 0x00, 0x1f, 0x04, 0x0a, 0x00, 0x01, 0x11, 0x0a, 0x00, 0x02, 0x09, 0x00, 0xfb,
    0xbb, 0x01, 0xfb, 0xb0, 0x04, 0xfc, 0x80, 0x38, 0x01, 0x00, 0x03, 0x3c, 0x02, 0xfb, 0x84, 0x03,
    0xfb, 0xa4, 0x01, 0xfb, 0xe0, 0x01, 0xfb, 0xc2, 0x01, 0x00, 0x01, 0x00, 0x0c, 0x16, 0x79, 0x55,
];

static ACK_SIGNED_BYTES: [u8; 78] = [
    0x4e, 0x46, 0x01, 0x00, 0x03, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfc, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x99, 0xee, 0xa0, 0x76, 0xb4,
    0xe8, 0x41, 0xee, 0x71, 0x54, 0x3e, 0x8d, 0x74, 0xa6, 0xdb, 0xb9, 0xa6, 0xd6, 0xed, 0xc8, 0xa0,
    0x34, 0xa5, 0x6d, 0x4b, 0xf7, 0xec, 0x6a, 0x47, 0xf0, 0xbf, 0x3e, 0x9f, 0x49, 0xa8,
];

const HDR: Header = Header {
    agent_id: 0x0102030405060708,
    epoch: 0x0a0b0c0d,
    seq: 1,
};

fn key() -> Key {
    Key::new(1, *b"0123456789abcdef0123456789abcdef")
}

fn hello() -> Message {
    Message::Hello(Hello {
        host_name: "web-1".into(),
        agent_version: "0.1.0".into(),
        interval_ms: 5000,
        capabilities: cap::EBPF | cap::RESENDS,
        started_at_ms: 1_764_000_000_000,
    })
}

fn flow_batch() -> Message {
    Message::FlowBatch(FlowBatch {
        interval_start_ms: 1_764_000_000_000,
        interval_end_ms: 1_764_000_005_000,
        records: vec![FlowRecord {
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 17)),
            remote: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 9)),
            local_port: 0,
            remote_port: 443,
            role: Role::Client,
            bytes_sent: 1200,
            bytes_received: 80_000,
            segs_out: 3,
            segs_in: 60,
            rtt: RttSummary {
                count: 2,
                sum_us: 900,
                min_us: 420,
                max_us: 480,
                last_srtt_us: 450,
            },
            retrans: PhaseCounts {
                handshake: 0,
                established: 1,
                closing: 0,
            },
            ..FlowRecord::default()
        }],
    })
}

fn ack() -> Message {
    Message::Ack(Ack {
        epoch: 0x0a0b0c0d,
        seq: 2,
    })
}

#[test]
fn test_deconstruct() {
    let f = Frame::new_checked(&FLOW_BATCH_BYTES[..], MAX_FRAME_LEN).unwrap();
    assert_eq!(f.minor(), 0);
    assert_eq!(f.msg_type_raw(), MsgType::FlowBatch as u8);
    assert!(!f.has_auth());
    assert_eq!(f.body_len(), 60);
    assert_eq!(f.agent_id(), 0x0102030405060708);
    assert_eq!(f.epoch(), 0x0a0b0c0d);
    assert_eq!(f.seq(), 2);
    assert_eq!(f.crc(), 0x5579_160c);
    f.check_crc().unwrap();

    let s = Frame::new_checked(&ACK_SIGNED_BYTES[..], MAX_FRAME_LEN).unwrap();
    let (key_id, tag) = s.auth().unwrap();
    assert_eq!(key_id, 1);
    assert_eq!(tag[..4], [0xf0, 0x99, 0xee, 0xa0]);
}

#[test]
fn test_construct() {
    // Every header byte is written: start from a buffer full of 0xa5.
    let mut buf = [0xa5u8; HEADER_LEN];
    let mut f = Frame::new_unchecked(&mut buf[..]);
    f.emit_header(MsgType::FlowBatch, 0, 60, &Header { seq: 2, ..HDR });
    assert_eq!(&buf[..], &FLOW_BATCH_BYTES[..HEADER_LEN]);
}

#[test]
fn test_parse() {
    let opts = DecodeOptions::default();
    assert_eq!(decode(&HELLO_BYTES, &opts).unwrap().message, hello());
    let p = decode(&FLOW_BATCH_BYTES, &opts).unwrap();
    assert_eq!(p.header, Header { seq: 2, ..HDR });
    assert_eq!(p.message, flow_batch());
    let mut ring = Keyring::new();
    ring.insert(key());
    let p = decode(
        &ACK_SIGNED_BYTES,
        &DecodeOptions {
            keys: Some(&ring),
            ..opts
        },
    )
    .unwrap();
    assert_eq!(p.key_id, Some(1));
    assert_eq!(p.message, ack());
}

#[test]
fn test_emit() {
    assert_eq!(encode_to_vec(&HDR, &hello(), None), HELLO_BYTES);
    assert_eq!(
        encode_to_vec(&Header { seq: 2, ..HDR }, &flow_batch(), None),
        FLOW_BATCH_BYTES
    );
    assert_eq!(
        encode_to_vec(&Header { seq: 0, ..HDR }, &ack(), Some(&key())),
        ACK_SIGNED_BYTES
    );
}

/// Regression: `PhaseCounts::is_zero` summed the phases and overflowed on large untrusted values
/// (found by `prop_round_trip`).
#[test]
fn test_regression_phase_counts_overflow() {
    let p = PhaseCounts {
        handshake: u64::MAX,
        established: 1,
        closing: 0,
    };
    assert!(!p.is_zero());
    assert_eq!(p.total(), u64::MAX);
}
