//! FlowBatch bodies, byte for byte: the decoder, a zero-copy view over an encoded frame, and
//! the sequencer that numbers an agent's frames.
//!
//! Why here and nowhere else: the agent counts the records of each frame it spools, the
//! simulator re-stamps frames to resend them without re-encoding, and benches rewrite sequence
//! numbers. Each used to read bincode varints by hand; a change to the body layout would have
//! silently broken four copies. Every byte of a FlowBatch is now read and written by this crate.
//!
//! Body layout (bincode `standard()` varints, `docs/wire.md` §FlowBatch):
//!
//! ```text
//! interval_start_ms  varint u64
//! interval_end_ms    varint u64
//! count              varint u64   records that follow
//! records            count × record (see `record.rs`)
//! ```
//!
//! The decoder is written against the bytes rather than through serde: it reads each record's
//! bitmap once and writes the values straight into their slot, which took decoding from about
//! 12 M to about 19.5 M records per second on one core (`scripts/bench.sh wire`); zeroing each
//! slot just before its record and cheaper varint reads (see `varint::read_u64_fast`) took it to
//! about 22 M. bincode 2's native `Decode`, hand-implemented over the same layout, measured
//! 13.8 M against this decoder's 21.7 M (best iterations, same run; issue 18), so it is not
//! used. The rules are exactly bincode's (the golden and round-trip tests check both directions
//! against the serde encoder): a varint's first byte below 251 is its value, 251/252/253 announce
//! a u16/u32/u64 little-endian, 254 and 255 are refused; a `u16` field refuses the u32 and u64
//! forms.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};
use crate::header::{Frame, Header, MsgType};
use crate::message::{FlowBatch, MIN_RECORD_LEN};
use crate::record::{bit, flag, FlowRecord, PhaseCounts, Role, RttSummary, TimeSummary};

/// bincode varints (`standard()` configuration, little-endian).
pub mod varint {
    use crate::error::{Error, Result};

    /// Single-byte values go up to this; the next three bytes announce wider forms.
    pub const SINGLE_BYTE_MAX: u8 = 250;
    pub const U16_BYTE: u8 = 251;
    pub const U32_BYTE: u8 = 252;
    pub const U64_BYTE: u8 = 253;

    /// Reads a varint `u64` at `*at`, advancing it. `field` names the value in the error.
    #[inline(always)]
    pub fn read_u64(b: &[u8], at: &mut usize, field: &'static str) -> Result<u64> {
        let bad = Error::Malformed { field };
        let first = *b.get(*at).ok_or(bad)?;
        if first <= SINGLE_BYTE_MAX {
            *at += 1;
            return Ok(first as u64);
        }
        let n = match first {
            U16_BYTE => 2,
            U32_BYTE => 4,
            U64_BYTE => 8,
            _ => return Err(bad),
        };
        let bytes = b.get(*at + 1..*at + 1 + n).ok_or(bad)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(bytes);
        *at += 1 + n;
        Ok(u64::from_le_bytes(v))
    }

    /// Reads a varint `u16` at `*at`: the single-byte and u16 forms only, as bincode does.
    #[inline(always)]
    pub fn read_u16(b: &[u8], at: &mut usize, field: &'static str) -> Result<u16> {
        let bad = Error::Malformed { field };
        let first = *b.get(*at).ok_or(bad)?;
        if first <= SINGLE_BYTE_MAX {
            *at += 1;
            return Ok(first as u16);
        }
        if first != U16_BYTE {
            return Err(bad);
        }
        let bytes = b.get(*at + 1..*at + 3).ok_or(bad)?;
        *at += 3;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    /// [`read_u64`] for the common case where 9 bytes are left. A single-byte value (counts and
    /// gauges mostly are) costs one branch, well predicted per field, and nothing on the position
    /// the next value waits for. A wide value costs no branch on its form: its length and mask
    /// are computed from the first byte, so byte counts and times of random sizes cost no
    /// mispredicted branches (computing beat looking up in 256-entry tables: the next value's
    /// position waits on this one's length). Same results and errors as [`read_u64`].
    #[inline(always)]
    pub fn read_u64_fast(b: &[u8], at: &mut usize, field: &'static str) -> Result<u64> {
        let Some(w) = b.get(*at..*at + 9) else {
            return read_u64(b, at, field);
        };
        let first = w[0];
        if first <= SINGLE_BYTE_MAX {
            *at += 1;
            return Ok(first as u64);
        }
        if first > U64_BYTE {
            return Err(Error::Malformed { field });
        }
        // U16_BYTE, U32_BYTE, U64_BYTE: 2, 4, 8 little-endian bytes follow.
        let extra = 1usize << (first - SINGLE_BYTE_MAX);
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&w[1..9]);
        // 8 × extra set bits. Written as two shifts by 4 × extra (never 64 or more): measured
        // faster than `u64::MAX >> (64 - 8 * extra)`, which left the decoder a register short.
        let half = 4 * extra as u32;
        let mask = ((1u64 << half) << half).wrapping_sub(1);
        *at += 1 + extra;
        Ok(u64::from_le_bytes(raw) & mask)
    }

    /// [`read_u16`] without a branch on the form where 3 bytes are left. Same results and errors.
    #[inline(always)]
    pub fn read_u16_fast(b: &[u8], at: &mut usize, field: &'static str) -> Result<u16> {
        let Some(w) = b.get(*at..*at + 3) else {
            return read_u16(b, at, field);
        };
        let first = w[0];
        if first > U16_BYTE {
            return Err(Error::Malformed { field });
        }
        let wide = first == U16_BYTE;
        let v = if wide {
            u16::from_le_bytes([w[1], w[2]])
        } else {
            first as u16
        };
        *at += 1 + 2 * wide as usize;
        Ok(v)
    }

    /// Bytes the canonical (shortest) encoding of `v` takes, as bincode writes it.
    pub fn len_u64(v: u64) -> usize {
        if v <= SINGLE_BYTE_MAX as u64 {
            1
        } else if v <= u16::MAX as u64 {
            3
        } else if v <= u32::MAX as u64 {
            5
        } else {
            9
        }
    }
}

/// The body prefix of a FlowBatch: interval bounds, record count, and where the records start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPrefix {
    pub interval_start_ms: u64,
    pub interval_end_ms: u64,
    /// Records the body declares (untrusted until the records are decoded).
    pub count: u64,
    /// Offset of the first record in the body.
    pub records_at: usize,
}

impl BatchPrefix {
    pub fn parse(body: &[u8]) -> Result<BatchPrefix> {
        let mut at = 0;
        let interval_start_ms = varint::read_u64(body, &mut at, "flow_batch.interval_start_ms")?;
        let interval_end_ms = varint::read_u64(body, &mut at, "flow_batch.interval_end_ms")?;
        let count = varint::read_u64(body, &mut at, "flow_batch.records")?;
        Ok(BatchPrefix {
            interval_start_ms,
            interval_end_ms,
            count,
            records_at: at,
        })
    }
}

/// Decodes a FlowBatch body. Returns the batch and the bytes it used (the caller refuses
/// trailing bytes unless the sender's minor version is newer). `lenient`: unknown flag and
/// bitmap bits of a newer minor version are skipped instead of refused.
pub(crate) fn decode_body(body: &[u8], lenient: bool) -> Result<(FlowBatch, usize)> {
    let p = BatchPrefix::parse(body)?;
    // The count is untrusted: a record takes at least MIN_RECORD_LEN bytes, so a count the body
    // cannot hold is refused before anything is reserved for it.
    let room = (body.len() - p.records_at) / MIN_RECORD_LEN;
    if p.count > room as u64 {
        return Err(Error::Malformed {
            field: "flow_batch.records",
        });
    }
    let n = p.count as usize;
    // Decoded into final slots: returning a record (232 bytes) by value and moving it into the
    // vector cost a memmove per record. Each slot is zeroed just before its record is decoded,
    // not all of them up front: the zeroing stores then overlap the varint reads (each waits on
    // the previous one's length) instead of being a separate pass (about 7 % faster).
    let mut records = Vec::with_capacity(n);
    let mut at = p.records_at;
    for _ in 0..n {
        records.push(FlowRecord::default());
        let slot = records.last_mut().expect("a record was just pushed");
        decode_record(body, &mut at, lenient, slot)?;
    }
    Ok((
        FlowBatch {
            interval_start_ms: p.interval_start_ms,
            interval_end_ms: p.interval_end_ms,
            records,
        },
        at,
    ))
}

/// Reads `N` raw bytes at `*at`.
#[inline(always)]
fn raw<const N: usize>(b: &[u8], at: &mut usize, field: &'static str) -> Result<[u8; N]> {
    let s = b.get(*at..*at + N).ok_or(Error::Malformed { field })?;
    *at += N;
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    Ok(out)
}

/// Decodes one record in wire form (layout in `record.rs`) into `r`, a zeroed record.
/// Position is kept in a local (`pos`) so it stays in a register.
#[inline(always)]
fn decode_record(b: &[u8], at: &mut usize, lenient: bool, r: &mut FlowRecord) -> Result<()> {
    let mut pos = *at;
    let [flags] = raw::<1>(b, &mut pos, "flow.flags")?;
    if !lenient && flags & !flag::KNOWN != 0 {
        return Err(Error::Malformed {
            field: "flow.flags",
        });
    }
    let present = u16::from_le_bytes(raw::<2>(b, &mut pos, "flow.present")?);
    if !lenient && present & !bit::KNOWN != 0 {
        return Err(Error::Malformed {
            field: "flow.present",
        });
    }
    r.local = if flags & flag::LOCAL_V6 != 0 {
        IpAddr::V6(Ipv6Addr::from(raw::<16>(b, &mut pos, "flow.local")?))
    } else {
        IpAddr::V4(Ipv4Addr::from(raw::<4>(b, &mut pos, "flow.local")?))
    };
    r.remote = if flags & flag::REMOTE_V6 != 0 {
        IpAddr::V6(Ipv6Addr::from(raw::<16>(b, &mut pos, "flow.remote")?))
    } else {
        IpAddr::V4(Ipv4Addr::from(raw::<4>(b, &mut pos, "flow.remote")?))
    };
    r.local_port = varint::read_u16_fast(b, &mut pos, "flow.local_port")?;
    r.remote_port = varint::read_u16_fast(b, &mut pos, "flow.remote_port")?;
    if flags & flag::SERVER != 0 {
        r.role = Role::Server;
    }
    macro_rules! v {
        ($field:literal) => {
            varint::read_u64_fast(b, &mut pos, $field)?
        };
    }
    let has = |bit: u16| present & bit != 0;
    if present != 0 {
        if has(bit::BYTES_SENT) {
            r.bytes_sent = v!("flow.bytes_sent");
        }
        if has(bit::BYTES_RECEIVED) {
            r.bytes_received = v!("flow.bytes_received");
        }
        if has(bit::SEGS_OUT) {
            r.segs_out = v!("flow.segs_out");
        }
        if has(bit::SEGS_IN) {
            r.segs_in = v!("flow.segs_in");
        }
        if has(bit::RTT) {
            r.rtt = RttSummary {
                count: v!("flow.rtt"),
                sum_us: v!("flow.rtt"),
                min_us: v!("flow.rtt"),
                max_us: v!("flow.rtt"),
                last_srtt_us: v!("flow.rtt"),
            };
        }
        if has(bit::SOCKETS_OPEN) {
            r.sockets_open = v!("flow.sockets_open");
        }
        if has(bit::CONN_ATTEMPTS) {
            r.conn_attempts = v!("flow.conn_attempts");
        }
        if has(bit::CONN_COMPLETED) {
            r.conn_completed = v!("flow.conn_completed");
        }
        if has(bit::CONN_FAILED) {
            r.conn_failed = v!("flow.conn_failed");
        }
        if has(bit::CONN_SEVERED) {
            r.conn_severed = v!("flow.conn_severed");
        }
        if has(bit::RETRANS) {
            r.retrans = PhaseCounts {
                handshake: v!("flow.retrans"),
                established: v!("flow.retrans"),
                closing: v!("flow.retrans"),
            };
        }
        if has(bit::RTO) {
            r.rto = PhaseCounts {
                handshake: v!("flow.rto"),
                established: v!("flow.rto"),
                closing: v!("flow.rto"),
            };
        }
        if has(bit::HANDSHAKE) {
            r.handshake = TimeSummary {
                count: v!("flow.handshake"),
                sum_us: v!("flow.handshake"),
                min_us: v!("flow.handshake"),
                max_us: v!("flow.handshake"),
            };
        }
        // Only reachable when lenient: values of groups a newer minor version added.
        if present & !bit::KNOWN != 0 {
            for b in 13..15 {
                if has(1 << b) {
                    v!("flow.extension");
                }
            }
            if has(bit::EXTENSION) {
                let ext = v!("flow.extension");
                for _ in 0..ext.count_ones() {
                    v!("flow.extension");
                }
            }
        }
    }
    *at = pos;
    Ok(())
}

/// A view over one encoded FlowBatch frame (signed or not): its header, interval and record
/// count without decoding the records, and — over a mutable buffer — re-stamping it with a new
/// header and interval in place.
#[derive(Debug, Clone)]
pub struct BatchView<T: AsRef<[u8]>> {
    frame: Frame<T>,
    prefix: BatchPrefix,
}

impl<T: AsRef<[u8]>> BatchView<T> {
    /// Checks the header (as [`Frame::new_checked`]), that the frame is a FlowBatch and that its
    /// body prefix decodes. The CRC is not checked: this is for frames the caller built or
    /// already accepted. After `Ok`, no accessor can panic.
    pub fn new_checked(buffer: T, max_len: usize) -> Result<BatchView<T>> {
        let frame = Frame::new_checked(buffer, max_len)?;
        let t = MsgType::from_u8(frame.msg_type_raw())?;
        if t != MsgType::FlowBatch {
            return Err(Error::Malformed {
                field: "flow_batch",
            });
        }
        let prefix = BatchPrefix::parse(frame.body())?;
        Ok(BatchView { frame, prefix })
    }

    pub fn header(&self) -> Header {
        self.frame.header()
    }
    pub fn seq(&self) -> u64 {
        self.frame.seq()
    }
    pub fn interval(&self) -> (u64, u64) {
        (self.prefix.interval_start_ms, self.prefix.interval_end_ms)
    }
    /// Records the frame declares (exact for frames this crate encoded).
    pub fn record_count(&self) -> u64 {
        self.prefix.count
    }
    pub fn into_inner(self) -> T {
        self.frame.into_inner()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BatchView<T> {
    /// Gives the frame a new header and interval in place and refreshes its CRC, so the same
    /// records can be sent again without re-encoding them. The result is byte-identical to a
    /// fresh encoding. Refused (frame untouched) when that cannot hold: a signed frame (its tag
    /// covers the header), or an old or new bound whose canonical varint is not the 9-byte form
    /// (true of every Unix-millisecond time after February 1970).
    pub fn restamp(&mut self, header: &Header, interval: (u64, u64)) -> Result<()> {
        let wide = |v: u64| varint::len_u64(v) == 9;
        let (s, e) = self.interval();
        if self.frame.has_auth() || !wide(s) || !wide(e) || !wide(interval.0) || !wide(interval.1) {
            return Err(Error::Malformed {
                field: "flow_batch.restamp",
            });
        }
        let body_len = self.frame.body_len() as u32;
        self.frame
            .emit_header(MsgType::FlowBatch, 0, body_len, header);
        // Both bounds are `U64_BYTE` + 8 bytes, at body offsets 0 and 9 (checked above).
        let body = self.frame.body_mut();
        body[1..9].copy_from_slice(&interval.0.to_le_bytes());
        body[10..18].copy_from_slice(&interval.1.to_le_bytes());
        self.frame.fill_crc();
        self.prefix.interval_start_ms = interval.0;
        self.prefix.interval_end_ms = interval.1;
        Ok(())
    }
}

/// One FlowBatch frame from the encoder, with the number of records it carries (so a sender can
/// account for spooled or dropped records without reading the frame back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub bytes: Vec<u8>,
    pub records: u64,
}

/// Numbers a sender's frames: its agent id, its session epoch and the next sequence number.
/// Every frame of a session, of any type, takes the next number (docs/wire.md §Header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequencer {
    pub agent_id: u64,
    pub epoch: u32,
    next: u64,
}

impl Sequencer {
    pub fn new(agent_id: u64, epoch: u32) -> Sequencer {
        Sequencer {
            agent_id,
            epoch,
            next: 0,
        }
    }

    /// Continues a session whose next sequence number is `next`.
    pub fn starting_at(agent_id: u64, epoch: u32, next: u64) -> Sequencer {
        Sequencer {
            agent_id,
            epoch,
            next,
        }
    }

    /// The header of the next frame; the number is taken.
    pub fn next_header(&mut self) -> Header {
        let h = self.peek();
        self.next += 1;
        h
    }

    /// The header the next frame would get, without taking its number.
    pub fn peek(&self) -> Header {
        Header {
            agent_id: self.agent_id,
            epoch: self.epoch,
            seq: self.next,
        }
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next
    }
}
