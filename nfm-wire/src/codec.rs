//! Whole frames: encode a message into a checked (and optionally signed) frame, and decode one
//! frame from untrusted bytes in the order the spec demands — magic, version, length, CRC, tag,
//! then the body.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::error::DecodeError;

use crate::auth::{Key, Keyring};
use crate::batch::{varint, EncodedFrame, Sequencer};
use crate::error::{Error, Result};
use crate::header::{
    Frame, Header, MsgType, AUTH_LEN, CRC_LEN, FLAG_AUTH, HEADER_LEN, MAX_FRAME_LEN, MINOR,
};
use crate::message::{AgentStats, ErrorMsg, Goodbye, Hello, Message, WireBatch};
use crate::record::FlowRecord;
use crate::Ack;

/// bincode's `standard()` (little-endian, varint) with a limit: a length prefix inside a body
/// can never make the decoder allocate more than a whole frame may hold.
pub(crate) type Config = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_LEN>>;
pub(crate) const CONFIG: Config = bincode::config::standard().with_limit::<MAX_FRAME_LEN>();

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    /// The sender's minor version.
    pub minor: u8,
    /// The key id that signed the frame, when it was signed and verified.
    pub key_id: Option<u32>,
    pub message: Message,
}

/// What a receiver accepts.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions<'a> {
    pub max_frame_len: usize,
    /// With keys, unsigned or wrongly signed frames are refused. Without, a frame's tag (if any)
    /// is not checked and `Packet::key_id` is `None`.
    pub keys: Option<&'a Keyring>,
}

impl Default for DecodeOptions<'_> {
    fn default() -> Self {
        DecodeOptions {
            max_frame_len: MAX_FRAME_LEN,
            keys: None,
        }
    }
}

/// A bincode error on a message body names the message (FlowBatch bodies have their own
/// decoder, `batch.rs`, which names the field).
fn map_decode(_: DecodeError, message: &'static str) -> Error {
    Error::Malformed { field: message }
}

/// Appends one frame carrying `msg` to `out`; returns its length. With a key the frame is signed.
pub fn encode(header: &Header, msg: &Message, key: Option<&Key>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let w = &mut *out;
    let r = match msg {
        Message::Hello(m) => bincode::serde::encode_into_std_write(m, w, CONFIG),
        Message::FlowBatch(b) => bincode::serde::encode_into_std_write(
            WireBatch {
                interval_start_ms: b.interval_start_ms,
                interval_end_ms: b.interval_end_ms,
                records: &b.records,
            },
            w,
            CONFIG,
        ),
        Message::Ack(m) => bincode::serde::encode_into_std_write(m, w, CONFIG),
        Message::AgentStats(m) => bincode::serde::encode_into_std_write(m, w, CONFIG),
        Message::Goodbye(m) => bincode::serde::encode_into_std_write(m, w, CONFIG),
        Message::Error(m) => bincode::serde::encode_into_std_write(m, w, CONFIG),
    };
    // Writing into a Vec cannot fail, and no serializer here returns an error.
    r.expect("encoding into a Vec cannot fail");
    finish_frame(out, start, msg.msg_type(), header, key)
}

/// Fills the header, auth trailer and CRC of a frame whose body already follows a zeroed header
/// at `out[start..]`. Returns the frame length.
pub(crate) fn finish_frame(
    out: &mut Vec<u8>,
    start: usize,
    msg_type: MsgType,
    header: &Header,
    key: Option<&Key>,
) -> usize {
    let body_len = out.len() - start - HEADER_LEN;
    let flags = if key.is_some() { FLAG_AUTH } else { 0 };
    let total = HEADER_LEN + body_len + if key.is_some() { AUTH_LEN } else { 0 } + CRC_LEN;
    out.resize(start + total, 0);
    let mut frame = Frame::new_unchecked(&mut out[start..]);
    frame.emit_header(msg_type, flags, body_len as u32, header);
    if let Some(k) = key {
        // Layout: key id u32 LE, then HMAC-SHA256 over header, body and key id.
        let at = HEADER_LEN + body_len;
        let buf = frame.into_inner();
        buf[at..at + 4].copy_from_slice(&k.id.to_le_bytes());
        let tag = k.tag(&buf[..at + 4]);
        buf[at + 4..at + AUTH_LEN].copy_from_slice(&tag);
        Frame::new_unchecked(buf).fill_crc();
    } else {
        frame.fill_crc();
    }
    total
}

/// Encodes one message into a fresh buffer.
pub fn encode_to_vec(header: &Header, msg: &Message, key: Option<&Key>) -> Vec<u8> {
    let mut v = Vec::new();
    encode(header, msg, key, &mut v);
    v
}

/// Decodes exactly one frame from `bytes` (a datagram, or a frame a stream decoder cut out).
pub fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<Packet> {
    let frame = Frame::new_checked(bytes, opts.max_frame_len)?;
    frame.check_crc()?;
    let key_id = verify_auth(&frame, opts.keys)?;
    let msg_type = MsgType::from_u8(frame.msg_type_raw())?;
    let lenient = frame.minor() > MINOR;
    let body = frame.body();
    let message = decode_body(msg_type, body, frame.minor(), lenient)?;
    Ok(Packet {
        header: frame.header(),
        minor: frame.minor(),
        key_id,
        message,
    })
}

fn verify_auth(frame: &Frame<&[u8]>, keys: Option<&Keyring>) -> Result<Option<u32>> {
    let Some(keys) = keys else {
        return Ok(None);
    };
    let Some((key_id, tag)) = frame.auth() else {
        return Err(Error::Unsigned);
    };
    let key = keys.get(key_id).ok_or(Error::UnknownKey(key_id))?;
    if !key.verify(frame.signed_bytes(), tag) {
        return Err(Error::BadAuthTag { key_id });
    }
    Ok(Some(key_id))
}

fn decode_body(msg_type: MsgType, body: &[u8], minor: u8, lenient: bool) -> Result<Message> {
    fn plain<T: serde::de::DeserializeOwned>(
        body: &[u8],
        name: &'static str,
    ) -> Result<(T, usize)> {
        bincode::serde::decode_from_slice::<T, _>(body, CONFIG).map_err(|e| map_decode(e, name))
    }
    let (message, used) = match msg_type {
        // A 1.0 Hello ends after started_at_ms; 1.1 appended the placement fields.
        MsgType::Hello if minor == 0 => plain::<crate::message::HelloV10>(body, "hello")
            .map(|(m, n)| (Message::Hello(m.into()), n))?,
        MsgType::Hello => plain::<Hello>(body, "hello").map(|(m, n)| (Message::Hello(m), n))?,
        MsgType::FlowBatch => {
            let (b, n) = crate::batch::decode_body(body, lenient)?;
            (Message::FlowBatch(b), n)
        }
        MsgType::Ack => plain::<Ack>(body, "ack").map(|(m, n)| (Message::Ack(m), n))?,
        MsgType::AgentStats => {
            plain::<AgentStats>(body, "agent_stats").map(|(m, n)| (Message::AgentStats(m), n))?
        }
        MsgType::Goodbye => {
            plain::<Goodbye>(body, "goodbye").map(|(m, n)| (Message::Goodbye(m), n))?
        }
        MsgType::Error => plain::<ErrorMsg>(body, "error").map(|(m, n)| (Message::Error(m), n))?,
    };
    if used < body.len() && !lenient {
        return Err(Error::TrailingBytes {
            extra: body.len() - used,
        });
    }
    Ok(message)
}

/// Splits one interval's records into FlowBatch frames of at most `max_frame_len` bytes each,
/// every frame decodable on its own (one UDP datagram each), numbered by `seq`. Returns the
/// frames in order, each with the number of records it carries.
///
/// Fails with [`Error::DoesNotFit`] only if a single record cannot fit an empty frame.
pub fn encode_flow_batch(
    seq: &mut Sequencer,
    interval: (u64, u64),
    records: &[FlowRecord],
    max_frame_len: usize,
    key: Option<&Key>,
) -> Result<Vec<EncodedFrame>> {
    let mut frames = Vec::new();
    let mut scratch = Vec::with_capacity(256);
    let mut pending: Vec<u8> = Vec::with_capacity(max_frame_len);
    let mut count = 0u64;
    // Fixed cost of a frame: header, auth, CRC, both timestamps and the count varint.
    let prefix = {
        let mut p = Vec::new();
        bincode::serde::encode_into_std_write((interval.0, interval.1), &mut p, CONFIG)
            .expect("encoding into a Vec cannot fail");
        p
    };
    let overhead = HEADER_LEN + if key.is_some() { AUTH_LEN } else { 0 } + CRC_LEN + prefix.len();
    let mut flush = |pending: &mut Vec<u8>, count: &mut u64, frames: &mut Vec<EncodedFrame>| {
        let mut out = Vec::with_capacity(overhead + 5 + pending.len());
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&prefix);
        bincode::serde::encode_into_std_write(*count, &mut out, CONFIG)
            .expect("encoding into a Vec cannot fail");
        out.extend_from_slice(pending);
        finish_frame(&mut out, 0, MsgType::FlowBatch, &seq.next_header(), key);
        frames.push(EncodedFrame {
            bytes: out,
            records: *count,
        });
        pending.clear();
        *count = 0;
    };
    for r in records {
        scratch.clear();
        bincode::serde::encode_into_std_write(crate::record::WireRecord(r), &mut scratch, CONFIG)
            .expect("encoding into a Vec cannot fail");
        let need = |n: u64, len: usize| overhead + varint::len_u64(n) + len;
        if need(1, scratch.len()) > max_frame_len {
            return Err(Error::DoesNotFit {
                len: need(1, scratch.len()),
                max: max_frame_len,
            });
        }
        if count > 0 && need(count + 1, pending.len() + scratch.len()) > max_frame_len {
            flush(&mut pending, &mut count, &mut frames);
        }
        pending.extend_from_slice(&scratch);
        count += 1;
    }
    if count > 0 {
        flush(&mut pending, &mut count, &mut frames);
    }
    Ok(frames)
}
