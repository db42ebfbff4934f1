//! Whole-frame properties: round trips of every message, every single-bit flip and every
//! truncation rejected, versioning rules, datagram splitting, authentication and stream framing.

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
        retrans: PhaseCounts {
            handshake: 0,
            established: i as u64 % 3,
            closing: 0,
        },
        ..FlowRecord::default()
    }
}

const HDR: Header = Header {
    agent_id: 0x1122_3344_5566_7788,
    epoch: 7,
    seq: 42,
};

fn batch(n: u32) -> Message {
    Message::FlowBatch(FlowBatch {
        interval_start_ms: 1_764_000_000_000,
        interval_end_ms: 1_764_000_005_000,
        records: (0..n).map(sample_record).collect(),
    })
}

fn all_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            host_name: "web-1".into(),
            agent_version: "0.1.0".into(),
            interval_ms: 5000,
            capabilities: cap::EBPF | cap::RESENDS,
            started_at_ms: 1_764_000_000_000,
            instance_id: "i-0abc".into(),
            region: "us-east-1".into(),
            az: "use1-az1".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            addresses: vec!["10.0.1.17".parse().unwrap(), "fd00::17".parse().unwrap()],
        }),
        batch(20),
        Message::Ack(Ack { epoch: 7, seq: 41 }),
        Message::AgentStats(AgentStats {
            uptime_ms: 60_000,
            events_lost: 1,
            rss_bytes: 9 << 20,
            ..AgentStats::default()
        }),
        Message::Goodbye(Goodbye {
            reason: "SIGTERM".into(),
        }),
        Message::Error(ErrorMsg {
            reason: "bad_crc".into(),
            message: "CRC mismatch".into(),
        }),
    ]
}

#[test]
fn test_every_message_round_trips() {
    for msg in all_messages() {
        let bytes = encode_to_vec(&HDR, &msg, None);
        let p = decode(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(p.header, HDR);
        assert_eq!(p.minor, MINOR);
        assert_eq!(p.key_id, None);
        assert_eq!(p.message, msg);
    }
}

#[test]
fn test_every_single_bit_flip_is_rejected() {
    for msg in all_messages() {
        let bytes = encode_to_vec(&HDR, &msg, None);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                decode(&b, &DecodeOptions::default()).is_err(),
                "flip of bit {i} in {:?} accepted",
                msg.msg_type()
            );
        }
    }
}

#[test]
fn test_every_truncation_is_rejected() {
    for msg in all_messages() {
        let bytes = encode_to_vec(&HDR, &msg, None);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], &DecodeOptions::default()).is_err());
        }
    }
}

#[test]
fn test_trailing_bytes_after_datagram_rejected() {
    let mut bytes = encode_to_vec(&HDR, &batch(1), None);
    bytes.push(0);
    assert_eq!(
        decode(&bytes, &DecodeOptions::default()),
        Err(Error::TrailingBytes { extra: 1 })
    );
}

#[test]
fn test_other_major_version_rejected_naming_both() {
    let mut bytes = encode_to_vec(&HDR, &batch(1), None);
    bytes[2] = 2;
    let e = decode(&bytes, &DecodeOptions::default()).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedVersion {
            got: 2,
            supported: 1
        }
    );
    let text = e.to_string();
    assert!(text.contains("major version 2") && text.contains("major version 1"));
}

/// Re-frames `body` as if a newer minor version had sent it (fresh CRC).
fn with_minor(msg_type: MsgType, minor: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(body);
    out.extend_from_slice(&[0; 4]);
    let mut f = Frame::new_unchecked(&mut out[..]);
    f.emit_header(msg_type, 0, body.len() as u32, &HDR);
    out[3] = minor;
    let mut f = Frame::new_unchecked(&mut out[..]);
    f.fill_crc();
    out
}

fn body_of(msg: &Message) -> Vec<u8> {
    let bytes = encode_to_vec(&HDR, msg, None);
    Frame::new_checked(&bytes[..], MAX_FRAME_LEN)
        .unwrap()
        .body()
        .to_vec()
}

#[test]
fn test_newer_minor_trailing_fields_skipped() {
    let hello = all_messages().remove(0);
    let mut body = body_of(&hello);
    body.extend_from_slice(&[5, 250, 7]); // fields a minor version 1 might add
    let p = decode(
        &with_minor(MsgType::Hello, MINOR + 1, &body),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(p.message, hello);
    assert_eq!(p.minor, MINOR + 1);
    // The same bytes from our own minor version are an error.
    assert_eq!(
        decode(
            &with_minor(MsgType::Hello, MINOR, &body),
            &DecodeOptions::default()
        ),
        Err(Error::TrailingBytes { extra: 3 })
    );
}

/// Version 1.0 Hellos (no placement fields) still decode, with the fields empty; a 1.1 Hello
/// without them is malformed.
#[test]
fn test_hello_of_minor_0_decodes_without_placement() {
    let Message::Hello(full) = all_messages().remove(0) else {
        panic!("the first message is a Hello")
    };
    let base = Hello {
        host_name: full.host_name.clone(),
        agent_version: full.agent_version.clone(),
        interval_ms: full.interval_ms,
        capabilities: full.capabilities,
        started_at_ms: full.started_at_ms,
        ..Hello::default()
    };
    // The 1.0 body is the 1.1 body without the appended fields.
    let body_11 = body_of(&Message::Hello(full.clone()));
    let body_10 = body_of(&Message::Hello(base.clone()));
    let tail = 6; // five empty strings and an empty address list
    let body_10 = &body_10[..body_10.len() - tail];
    assert_eq!(&body_11[..body_10.len()], body_10);
    let p = decode(
        &with_minor(MsgType::Hello, 0, body_10),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!((p.minor, p.message), (0, Message::Hello(base)));
    // 1.0 with the 1.1 fields appended: trailing bytes from a 1.0 sender.
    assert!(matches!(
        decode(
            &with_minor(MsgType::Hello, 0, &body_11),
            &DecodeOptions::default()
        ),
        Err(Error::TrailingBytes { .. })
    ));
    assert_eq!(
        decode(
            &with_minor(MsgType::Hello, 1, body_10),
            &DecodeOptions::default()
        ),
        Err(Error::Malformed { field: "hello" })
    );
}

#[test]
fn test_newer_minor_record_groups_skipped() {
    // One record whose bitmap sets reserved bit 13 and the extension bit 15 (with two
    // extension values), as a newer minor version may send.
    let r = sample_record(1);
    let plain = body_of(&Message::FlowBatch(FlowBatch {
        interval_start_ms: 1,
        interval_end_ms: 2,
        records: vec![r],
    }));
    // body: start(1) end(1) count(1) flags(1) present(2) ...
    let mut body = plain.clone();
    let present = u16::from_le_bytes([body[4], body[5]]) | (1 << 13) | (1 << 15);
    body[4..6].copy_from_slice(&present.to_le_bytes());
    body.extend_from_slice(&[99]); // bit 13's value
    body.extend_from_slice(&[0b101]); // extension bitmap: two values follow
    body.extend_from_slice(&[251, 0x10, 0x27, 3]); // 10000 and 3
    let newer = decode(
        &with_minor(MsgType::FlowBatch, MINOR + 1, &body),
        &DecodeOptions::default(),
    )
    .unwrap();
    match newer.message {
        Message::FlowBatch(b) => assert_eq!(b.records, vec![r]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        decode(
            &with_minor(MsgType::FlowBatch, MINOR, &body),
            &DecodeOptions::default()
        ),
        Err(Error::Malformed {
            field: "flow.present"
        })
    );
}

#[test]
fn test_oversized_frame_rejected_before_body() {
    let bytes = encode_to_vec(&HDR, &batch(100), None);
    let opts = DecodeOptions {
        max_frame_len: 512,
        keys: None,
    };
    assert!(matches!(
        decode(&bytes, &opts),
        Err(Error::TooLarge { max: 512, .. })
    ));
    // The header alone is enough to refuse it.
    assert!(matches!(
        Frame::<&[u8]>::check_header(&bytes[..HEADER_LEN], 512),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn test_unknown_message_type_rejected() {
    let body = body_of(&Message::Ack(Ack { epoch: 1, seq: 2 }));
    let mut bytes = with_minor(MsgType::Ack, MINOR, &body);
    bytes[4] = 0x7f;
    let n = bytes.len();
    let crc = crc32fast::hash(&bytes[..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode(&bytes, &DecodeOptions::default()),
        Err(Error::UnknownMessageType(0x7f))
    );
}

#[test]
fn test_auth_signed_frames_verify_and_forgeries_fail() {
    let key = Key::new(3, vec![0x5a; 32]);
    let mut ring = Keyring::new();
    ring.insert(key.clone());
    let opts = DecodeOptions {
        keys: Some(&ring),
        ..DecodeOptions::default()
    };
    let signed = encode_to_vec(&HDR, &batch(3), Some(&key));
    assert_eq!(decode(&signed, &opts).unwrap().key_id, Some(3));
    // A receiver without keys still reads it.
    assert!(decode(&signed, &DecodeOptions::default()).is_ok());

    let unsigned = encode_to_vec(&HDR, &batch(3), None);
    assert_eq!(decode(&unsigned, &opts), Err(Error::Unsigned));

    let other = Key::new(3, vec![0x11; 32]);
    let forged = encode_to_vec(&HDR, &batch(3), Some(&other));
    assert_eq!(decode(&forged, &opts), Err(Error::BadAuthTag { key_id: 3 }));

    let unknown = encode_to_vec(&HDR, &batch(3), Some(&Key::new(9, vec![1; 32])));
    assert_eq!(decode(&unknown, &opts), Err(Error::UnknownKey(9)));

    // Changing a record and fixing up the CRC (what a forger can do) still fails the tag.
    let mut tampered = signed.clone();
    tampered[HEADER_LEN + 5] ^= 0x40;
    let n = tampered.len();
    let crc = crc32fast::hash(&tampered[..n - 4]);
    tampered[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode(&tampered, &opts),
        Err(Error::BadAuthTag { key_id: 3 })
    );
}

#[test]
fn test_datagram_split_respects_size_and_decodes_alone() {
    let records: Vec<FlowRecord> = (0..1000).map(sample_record).collect();
    for (max, key) in [
        (DEFAULT_DATAGRAM_LEN, None),
        (512, Some(Key::new(1, vec![7; 32]))),
        (64 * 1024, None),
    ] {
        let mut seq = Sequencer::starting_at(1, 2, 100);
        let frames = encode_flow_batch(&mut seq, (10, 20), &records, max, key.as_ref()).unwrap();
        assert_eq!(seq.next_seq(), 100 + frames.len() as u64);
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.bytes.len() <= max, "frame of {} > {max}", f.bytes.len());
            let p = decode(&f.bytes, &DecodeOptions::default()).unwrap();
            assert_eq!(p.header.seq, 100 + i as u64);
            match p.message {
                Message::FlowBatch(b) => {
                    assert_eq!((b.interval_start_ms, b.interval_end_ms), (10, 20));
                    assert_eq!(f.records, b.records.len() as u64, "the encoder's count");
                    got.extend(b.records);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, records);
    }
}

#[test]
fn test_datagram_split_boundaries() {
    let r = sample_record(0);
    let seq = || Sequencer::new(1, 1);
    let one = encode_flow_batch(&mut seq(), (0, 0), &[r], DEFAULT_DATAGRAM_LEN, None).unwrap();
    let exact = one[0].bytes.len();
    // capacity: exactly one record's frame fits; one byte less does not fit at all.
    assert_eq!(
        encode_flow_batch(&mut seq(), (0, 0), &[r, r], exact, None)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        encode_flow_batch(&mut seq(), (0, 0), &[r], exact - 1, None),
        Err(Error::DoesNotFit { .. })
    ));
    // zero records: zero frames, no sequence numbers used.
    let mut seq = Sequencer::starting_at(1, 1, 5);
    assert!(
        encode_flow_batch(&mut seq, (0, 0), &[], DEFAULT_DATAGRAM_LEN, None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(seq.next_seq(), 5);
}

fn stream_of(n: usize) -> (Vec<u8>, Vec<Message>) {
    let mut bytes = Vec::new();
    let mut msgs = Vec::new();
    for i in 0..n {
        let m = all_messages().remove(i % 6);
        encode(
            &Header {
                seq: i as u64,
                ..HDR
            },
            &m,
            None,
            &mut bytes,
        );
        msgs.push(m);
    }
    (bytes, msgs)
}

#[test]
fn test_stream_byte_by_byte() {
    let (bytes, msgs) = stream_of(12);
    let mut d = StreamDecoder::new(MAX_FRAME_LEN);
    let mut got = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        while let Some(p) = d.next_packet(&DecodeOptions::default()).unwrap() {
            got.push(p.message);
        }
    }
    assert_eq!(got, msgs);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn test_stream_refuses_oversized_declared_length_early() {
    let bytes = encode_to_vec(&HDR, &batch(200), None);
    let mut d = StreamDecoder::new(1024);
    d.push(&bytes[..HEADER_LEN]);
    assert!(matches!(d.next_frame(), Err(Error::TooLarge { .. })));
}

#[test]
fn test_stream_garbage_is_an_error_not_a_wait() {
    let mut d = StreamDecoder::new(MAX_FRAME_LEN);
    d.push(b"GET / HTTP/1.1\r\n");
    assert!(matches!(d.next_frame(), Err(Error::BadMagic(_))));
}

#[test]
fn test_ipv6_and_mixed_records_round_trip() {
    let mut r = sample_record(0);
    r.local = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    r.remote = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    r.role = Role::Server;
    r.handshake = TimeSummary {
        count: 1,
        sum_us: 900,
        min_us: 900,
        max_us: 900,
    };
    let msg = Message::FlowBatch(FlowBatch {
        interval_start_ms: 0,
        interval_end_ms: 0,
        records: vec![r],
    });
    let p = decode(&encode_to_vec(&HDR, &msg, None), &DecodeOptions::default()).unwrap();
    assert_eq!(p.message, msg);
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

fn arb_phase() -> impl Strategy<Value = PhaseCounts> {
    (any::<u64>(), 0..10u64, any::<u64>()).prop_map(|(handshake, established, closing)| {
        PhaseCounts {
            handshake,
            established,
            closing,
        }
    })
}

prop_compose! {
    fn arb_record()(local in arb_ip(), remote in arb_ip(), lp in any::<u16>(), rp in any::<u16>(),
                    server in any::<bool>(), c in prop::array::uniform12(prop_oneof![Just(0u64), 0..300u64, any::<u64>()]),
                    retrans in arb_phase(), rto in arb_phase(), h in prop::array::uniform4(any::<u64>())) -> FlowRecord {
        FlowRecord {
            local, remote, local_port: lp, remote_port: rp,
            role: if server { Role::Server } else { Role::Client },
            bytes_sent: c[0], bytes_received: c[1], segs_out: c[2], segs_in: c[3],
            rtt: RttSummary { count: c[4], sum_us: c[5], min_us: c[6], max_us: c[7], last_srtt_us: c[8] },
            sockets_open: c[9], conn_attempts: c[10], conn_completed: c[11],
            conn_failed: h[0] % 5, conn_severed: h[1] % 3,
            retrans, rto,
            handshake: TimeSummary { count: h[2] % 4, sum_us: h[3], min_us: h[2], max_us: h[3] },
        }
    }
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            ".{0,40}",
            ".{0,10}",
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            (
                ".{0,20}",
                ".{0,12}",
                prop::collection::vec(any::<[u8; 4]>(), 0..3)
            ),
        )
            .prop_map(|(h, v, i, c, s, (inst, az, ips))| Message::Hello(Hello {
                host_name: h,
                agent_version: v,
                interval_ms: i,
                capabilities: c,
                started_at_ms: s,
                instance_id: inst,
                az,
                addresses: ips.into_iter().map(std::net::IpAddr::from).collect(),
                ..Hello::default()
            })),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(arb_record(), 0..40)
        )
            .prop_map(|(s, e, records)| Message::FlowBatch(FlowBatch {
                interval_start_ms: s,
                interval_end_ms: e,
                records
            })),
        (any::<u32>(), any::<u64>()).prop_map(|(epoch, seq)| Message::Ack(Ack { epoch, seq })),
        prop::array::uniform13(any::<u64>()).prop_map(|a| Message::AgentStats(AgentStats {
            uptime_ms: a[0],
            events_lost: a[1],
            map_full: a[2],
            map_update_failed: a[3],
            spool_dropped_frames: a[4],
            spool_dropped_records: a[5],
            send_errors: a[6],
            cpu_time_us: a[7],
            rss_bytes: a[8],
            flows_tracked: a[9],
            sockets_tracked: a[10],
            frames_sent: a[11],
            records_sent: a[12],
        })),
        ".{0,64}".prop_map(|reason| Message::Goodbye(Goodbye { reason })),
        (".{0,20}", ".{0,80}")
            .prop_map(|(reason, message)| Message::Error(ErrorMsg { reason, message })),
    ]
}

proptest! {
    #[test]
    fn prop_round_trip(msg in arb_message(), agent_id in any::<u64>(), epoch in any::<u32>(), seq in any::<u64>(), signed in any::<bool>()) {
        let header = Header { agent_id, epoch, seq };
        let key = Key::new(1, vec![3u8; 32]);
        let mut ring = Keyring::new();
        ring.insert(key.clone());
        let bytes = encode_to_vec(&header, &msg, signed.then_some(&key));
        let opts = DecodeOptions { keys: signed.then_some(&ring), ..DecodeOptions::default() };
        let p = decode(&bytes, &opts).unwrap();
        prop_assert_eq!(p.header, header);
        prop_assert_eq!(p.message, msg);
    }

    #[test]
    fn prop_stream_random_splits(n in 1usize..20, cuts in prop::collection::vec(1usize..200, 0..60)) {
        let (bytes, msgs) = stream_of(n);
        let mut d = StreamDecoder::new(MAX_FRAME_LEN);
        let mut got = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.into_iter();
        while at < bytes.len() {
            let step = cuts.next().unwrap_or(bytes.len());
            let end = (at + step).min(bytes.len());
            d.push(&bytes[at..end]);
            at = end;
            while let Some(p) = d.next_packet(&DecodeOptions::default()).unwrap() {
                got.push(p.message);
            }
        }
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes, &DecodeOptions::default());
        let mut d = StreamDecoder::new(4096);
        d.push(&bytes);
        let _ = d.next_packet(&DecodeOptions::default());
    }
}
