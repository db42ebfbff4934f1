//! Golden vectors: the exact bytes of docs/wire.md. Changed golden bytes mean a new protocol version.

use nfm_wire::*;
use std::net::{IpAddr, Ipv4Addr};

/// Version 1.0 frames (minor 0): what 1.0 senders still send; decoded, no longer emitted.
static HELLO_1_0_BYTES: [u8; 61] = [
    0x4e, 0x46, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x05, 0x77, 0x65, 0x62, 0x2d, 0x31, 0x05, 0x30, 0x2e, 0x31, 0x2e, 0x30, 0xfb, 0x88, 0x13, 0x09,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0x5a, 0x9d, 0x98, 0x44,
];

static FLOW_BATCH_1_0_BYTES: [u8; 96] = [
    0x4e, 0x46, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0xfd, 0x88, 0xfb, 0x97, 0xb6, 0x9a, 0x01,
    0x00, 0x00, 0x01, 0x00, 0x1f, 0x04, 0x0a, 0x00, 0x01, 0x11, 0x0a, 0x00, 0x02, 0x09, 0x00, 0xfb,
    0xbb, 0x01, 0xfb, 0xb0, 0x04, 0xfc, 0x80, 0x38, 0x01, 0x00, 0x03, 0x3c, 0x02, 0xfb, 0x84, 0x03,
    0xfb, 0xa4, 0x01, 0xfb, 0xe0, 0x01, 0xfb, 0xc2, 0x01, 0x00, 0x01, 0x00, 0x0c, 0x16, 0x79, 0x55,
];

static ACK_SIGNED_1_0_BYTES: [u8; 78] = [
    0x4e, 0x46, 0x01, 0x00, 0x03, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfc, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x99, 0xee, 0xa0, 0x76, 0xb4,
    0xe8, 0x41, 0xee, 0x71, 0x54, 0x3e, 0x8d, 0x74, 0xa6, 0xdb, 0xb9, 0xa6, 0xd6, 0xed, 0xc8, 0xa0,
    0x34, 0xa5, 0x6d, 0x4b, 0xf7, 0xec, 0x6a, 0x47, 0xf0, 0xbf, 0x3e, 0x9f, 0x49, 0xa8,
];

/// Version 1.1 (minor 1): Hello with where the agent runs (docs/wire.md, golden vectors).
static HELLO_BYTES: [u8; 115] = [
    0x4e, 0x46, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x4f, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x05, 0x77, 0x65, 0x62, 0x2d, 0x31, 0x05, 0x30, 0x2e, 0x31, 0x2e, 0x30, 0xfb, 0x88, 0x13, 0x09,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0x07, 0x69, 0x2d, 0x30, 0x77, 0x65, 0x62,
    0x31, 0x09, 0x75, 0x73, 0x2d, 0x65, 0x61, 0x73, 0x74, 0x2d, 0x31, 0x08, 0x75, 0x73, 0x65, 0x31,
    0x2d, 0x61, 0x7a, 0x31, 0x0c, 0x73, 0x75, 0x62, 0x6e, 0x65, 0x74, 0x2d, 0x61, 0x70, 0x70, 0x2d,
    0x61, 0x07, 0x76, 0x70, 0x63, 0x2d, 0x61, 0x70, 0x70, 0x01, 0x00, 0x0a, 0x00, 0x01, 0x0a, 0x90,
    0x2b, 0xda, 0x29,
];

static FLOW_BATCH_BYTES: [u8; 96] = [
    0x4e, 0x46, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfd, 0x00, 0xe8, 0x97, 0xb6, 0x9a, 0x01, 0x00, 0x00, 0xfd, 0x88, 0xfb, 0x97, 0xb6, 0x9a, 0x01,
    0x00, 0x00, 0x01, 0x00, 0x1f, 0x04, 0x0a, 0x00, 0x01, 0x11, 0x0a, 0x00, 0x02, 0x09, 0x00, 0xfb,
    0xbb, 0x01, 0xfb, 0xb0, 0x04, 0xfc, 0x80, 0x38, 0x01, 0x00, 0x03, 0x3c, 0x02, 0xfb, 0x84, 0x03,
    0xfb, 0xa4, 0x01, 0xfb, 0xe0, 0x01, 0xfb, 0xc2, 0x01, 0x00, 0x01, 0x00, 0x84, 0x7b, 0x45, 0x31,
];

static ACK_SIGNED_BYTES: [u8; 78] = [
    0x4e, 0x46, 0x01, 0x01, 0x03, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
    0x04, 0x03, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xfc, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x01, 0x00, 0x00, 0x00, 0x4b, 0x3f, 0xbf, 0xdb, 0x80, 0xff,
    0x24, 0x16, 0x3c, 0x54, 0x63, 0xb7, 0x07, 0x4c, 0x3c, 0xb1, 0x5e, 0xe4, 0xa3, 0x7e, 0xf1, 0x7d,
    0x01, 0xf2, 0x75, 0x56, 0xa4, 0x45, 0xab, 0xe8, 0xe7, 0xe7, 0x9a, 0x40, 0xa8, 0xda,
];

const HDR: Header = Header {
    agent_id: 0x0102030405060708,
    epoch: 0x0a0b0c0d,
    seq: 1,
};

fn key() -> Key {
    Key::new(1, *b"0123456789abcdef0123456789abcdef")
}

/// The 1.0 Hello: no placement.
fn hello_1_0() -> Message {
    Message::Hello(Hello {
        host_name: "web-1".into(),
        agent_version: "0.1.0".into(),
        interval_ms: 5000,
        capabilities: cap::EBPF | cap::RESENDS,
        started_at_ms: 1_764_000_000_000,
        ..Hello::default()
    })
}

fn hello() -> Message {
    Message::Hello(Hello {
        host_name: "web-1".into(),
        agent_version: "0.1.0".into(),
        interval_ms: 5000,
        capabilities: cap::EBPF | cap::RESENDS,
        started_at_ms: 1_764_000_000_000,
        instance_id: "i-0web1".into(),
        region: "us-east-1".into(),
        az: "use1-az1".into(),
        subnet_id: "subnet-app-a".into(),
        vpc_id: "vpc-app".into(),
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, 10))],
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
    assert_eq!(f.minor(), 1);
    assert_eq!(f.msg_type_raw(), MsgType::FlowBatch as u8);
    assert!(!f.has_auth());
    assert_eq!(f.body_len(), 60);
    assert_eq!(f.agent_id(), 0x0102030405060708);
    assert_eq!(f.epoch(), 0x0a0b0c0d);
    assert_eq!(f.seq(), 2);
    assert_eq!(f.crc(), 0x3145_7b84);
    f.check_crc().unwrap();

    let s = Frame::new_checked(&ACK_SIGNED_BYTES[..], MAX_FRAME_LEN).unwrap();
    let (key_id, tag) = s.auth().unwrap();
    assert_eq!(key_id, 1);
    assert_eq!(tag[..4], [0x4b, 0x3f, 0xbf, 0xdb]);
    let old = Frame::new_checked(&ACK_SIGNED_1_0_BYTES[..], MAX_FRAME_LEN).unwrap();
    assert_eq!(old.auth().unwrap().1[..4], [0xf0, 0x99, 0xee, 0xa0]);
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
    // Version 1.0 frames still decode: the Hello without placement, the others unchanged.
    let p = decode(&HELLO_1_0_BYTES, &opts).unwrap();
    assert_eq!((p.minor, p.message), (0, hello_1_0()));
    assert_eq!(
        decode(&FLOW_BATCH_1_0_BYTES, &opts).unwrap().message,
        flow_batch()
    );
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
    let p = decode(
        &ACK_SIGNED_1_0_BYTES,
        &DecodeOptions {
            keys: Some(&ring),
            ..opts
        },
    )
    .unwrap();
    assert_eq!((p.minor, p.message), (0, ack()));
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

// ---- nfm-wire owns every byte of a FlowBatch: view, restamp, encoder counts, sequencer, rules.

#[test]
fn test_batch_view_deconstruct() {
    let v = BatchView::new_checked(&FLOW_BATCH_BYTES[..], MAX_FRAME_LEN).unwrap();
    assert_eq!(v.header(), Header { seq: 2, ..HDR });
    assert_eq!(v.seq(), 2);
    assert_eq!(v.interval(), (1_764_000_000_000, 1_764_000_005_000));
    assert_eq!(v.record_count(), 1);
    // Only FlowBatch frames have a batch view.
    assert!(matches!(
        BatchView::new_checked(&HELLO_BYTES[..], MAX_FRAME_LEN),
        Err(Error::Malformed {
            field: "flow_batch"
        })
    ));
}

/// Restamping the golden frame gives exactly the bytes of a fresh encoding with the new header
/// and interval (itself pinned by `test_emit`), CRC included.
#[test]
fn test_batch_view_restamp() {
    let mut buf = FLOW_BATCH_BYTES;
    let h = Header { seq: 9, ..HDR };
    let iv = (1_764_000_005_000, 1_764_000_010_000);
    BatchView::new_checked(&mut buf[..], MAX_FRAME_LEN)
        .unwrap()
        .restamp(&h, iv)
        .unwrap();
    let Message::FlowBatch(mut b) = flow_batch() else {
        unreachable!()
    };
    (b.interval_start_ms, b.interval_end_ms) = iv;
    assert_eq!(buf[..], encode_to_vec(&h, &Message::FlowBatch(b), None)[..]);
    decode(&buf, &DecodeOptions::default()).unwrap();
    // The changed bytes: seq (24), both timestamps' 8 bytes (33.., 42..) and the CRC.
    let changed: Vec<usize> = (0..buf.len())
        .filter(|&i| buf[i] != FLOW_BATCH_BYTES[i])
        .collect();
    assert!(changed
        .iter()
        .all(|&i| i == 24 || (33..41).contains(&i) || (42..50).contains(&i) || i >= 92));
}

#[test]
fn test_batch_view_restamp_refuses_what_it_cannot_patch() {
    let h = Header { seq: 9, ..HDR };
    let wide = (1_764_000_005_000, 1_764_000_010_000);
    // A small new bound would need a shorter varint: refused, untouched.
    let mut buf = FLOW_BATCH_BYTES;
    let mut v = BatchView::new_checked(&mut buf[..], MAX_FRAME_LEN).unwrap();
    assert!(v.restamp(&h, (5, 1_764_000_010_000)).is_err());
    assert_eq!(buf, FLOW_BATCH_BYTES);
    // A signed frame: its tag covers the header.
    let Message::FlowBatch(b) = flow_batch() else {
        unreachable!()
    };
    let mut signed = encode_to_vec(&HDR, &Message::FlowBatch(b.clone()), Some(&key()));
    let before = signed.clone();
    let mut v = BatchView::new_checked(&mut signed[..], MAX_FRAME_LEN).unwrap();
    assert!(v.restamp(&h, wide).is_err());
    assert_eq!(signed, before);
    // Small old bounds are short varints.
    let small = FlowBatch {
        interval_start_ms: 5,
        interval_end_ms: 10,
        ..b
    };
    let mut f = encode_to_vec(&HDR, &Message::FlowBatch(small), None);
    let mut v = BatchView::new_checked(&mut f[..], MAX_FRAME_LEN).unwrap();
    assert!(v.restamp(&h, wide).is_err());
}

/// The encoder reports each frame's record count; it equals what the frame declares and what
/// decodes; the sequencer numbers frames consecutively and is untouched by an empty batch.
#[test]
fn test_encoder_counts_and_sequencer() {
    let Message::FlowBatch(b) = flow_batch() else {
        unreachable!()
    };
    let recs = vec![b.records[0]; 300];
    let mut seq = Sequencer::starting_at(HDR.agent_id, HDR.epoch, 40);
    let frames = encode_flow_batch(
        &mut seq,
        (1_764_000_000_000, 1_764_000_005_000),
        &recs,
        DEFAULT_DATAGRAM_LEN,
        None,
    )
    .unwrap();
    assert!(frames.len() > 1);
    assert_eq!(seq.next_seq(), 40 + frames.len() as u64);
    let mut total = 0;
    for (i, f) in frames.iter().enumerate() {
        let v = BatchView::new_checked(&f.bytes[..], MAX_FRAME_LEN).unwrap();
        assert_eq!(v.record_count(), f.records);
        assert_eq!(v.seq(), 40 + i as u64);
        let Message::FlowBatch(d) = decode(&f.bytes, &DecodeOptions::default()).unwrap().message
        else {
            panic!("not a batch")
        };
        assert_eq!(d.records.len() as u64, f.records);
        total += f.records;
    }
    assert_eq!(total, 300);
    let mut s = Sequencer::new(1, 2);
    assert_eq!(s.peek().seq, 0);
    assert_eq!(
        s.next_header(),
        Header {
            agent_id: 1,
            epoch: 2,
            seq: 0
        }
    );
    assert_eq!(s.next_header().seq, 1);
    assert_eq!(s.next_seq(), 2);
}

/// The record-merge rule, field by field.
#[test]
fn test_merge_rule() {
    let Message::FlowBatch(b) = flow_batch() else {
        unreachable!()
    };
    let mut a = b.records[0];
    let later = FlowRecord {
        bytes_sent: u64::MAX,
        rtt: RttSummary {
            count: 1,
            sum_us: 300,
            min_us: 300,
            max_us: 300,
            last_srtt_us: 350,
        },
        handshake: TimeSummary {
            count: 1,
            sum_us: 700,
            min_us: 700,
            max_us: 700,
        },
        retrans: PhaseCounts {
            handshake: 1,
            established: 2,
            closing: 3,
        },
        conn_attempts: 1,
        ..a
    };
    a.merge(&later);
    assert_eq!(a.bytes_sent, u64::MAX, "saturating");
    assert_eq!(a.bytes_received, 160_000);
    assert_eq!(
        a.rtt,
        RttSummary {
            count: 3,
            sum_us: 1200,
            min_us: 300,
            max_us: 480,
            last_srtt_us: 350
        }
    );
    assert_eq!(
        a.handshake,
        TimeSummary {
            count: 1,
            sum_us: 700,
            min_us: 700,
            max_us: 700
        },
        "an empty summary takes the other's min"
    );
    assert_eq!(
        a.retrans,
        PhaseCounts {
            handshake: 1,
            established: 3,
            closing: 3
        }
    );
    assert_eq!(a.conn_attempts, 1);
    // A delta without RTT samples keeps the last smoothed RTT.
    let before = a.rtt;
    a.merge(&FlowRecord::default());
    assert_eq!(a.rtt, before);
}

/// The service-port rule: the ephemeral port is elided.
#[test]
fn test_service_port_rule() {
    assert_eq!(Role::Client.service_ports(40_000, 443), (0, 443));
    assert_eq!(Role::Server.service_ports(443, 40_000), (443, 0));
    assert_eq!(Role::Client.service_port(40_000, 443), 443);
    assert_eq!(Role::Server.service_port(443, 40_000), 443);
    let Message::FlowBatch(b) = flow_batch() else {
        unreachable!()
    };
    assert_eq!(b.records[0].service_port(), 443);
}

/// Regression: valid frames up to the documented 1 MiB limit were refused as malformed from
/// about 387 KB on (bincode's allocation limit counted each decoded record at its in-memory
/// size against MAX_FRAME_LEN). The decoder is now bounded by the body's own length.
#[test]
fn test_regression_frame_near_the_size_limit_decodes() {
    let Message::FlowBatch(b) = flow_batch() else {
        unreachable!()
    };
    let recs = vec![b.records[0]; 25_000];
    let frames = encode_flow_batch(
        &mut Sequencer::new(1, 1),
        (1_764_000_000_000, 1_764_000_005_000),
        &recs,
        MAX_FRAME_LEN,
        None,
    )
    .unwrap();
    assert_eq!(frames.len(), 1);
    assert!(frames[0].bytes.len() > 900_000, "{}", frames[0].bytes.len());
    let Message::FlowBatch(d) = decode(&frames[0].bytes, &DecodeOptions::default())
        .unwrap()
        .message
    else {
        panic!("not a batch")
    };
    assert_eq!(d.records.len(), 25_000);
}

/// Varint forms follow bincode: a u16 field refuses the u32 form; 254 and 255 are refused; a
/// record count the body cannot hold is refused before anything is reserved.
#[test]
fn test_varint_forms() {
    let mut at = 0;
    assert_eq!(
        batch::varint::read_u64(&[0xfb, 0x01, 0x00], &mut at, "x"),
        Ok(1)
    );
    assert_eq!(at, 3, "non-canonical forms decode, as bincode's do");
    for bad in [[0xfeu8; 9], [0xffu8; 9]] {
        assert!(batch::varint::read_u64(&bad, &mut 0, "x").is_err());
    }
    assert!(batch::varint::read_u16(&[0xfc, 1, 0, 0, 0], &mut 0, "x").is_err());
    let mut buf = FLOW_BATCH_BYTES;
    assert_eq!(buf[HEADER_LEN + 18], 1, "the record count");
    buf[HEADER_LEN + 18] = 200;
    Frame::new_unchecked(&mut buf[..]).fill_crc();
    assert_eq!(
        BatchPrefix::parse(&buf[HEADER_LEN..HEADER_LEN + 60])
            .unwrap()
            .count,
        200
    );
    assert_eq!(
        decode(&buf, &DecodeOptions::default()),
        Err(Error::Malformed {
            field: "flow_batch.records"
        })
    );
}
