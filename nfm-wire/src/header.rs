//! The fixed 32-byte frame header and the zero-copy [`Frame`] view over a whole frame.
//!
//! Layout (all integers little-endian, see `docs/wire.md`):
//!
//! ```text
//!  0..2   magic        "NF" (0x4e 0x46)
//!  2      major        protocol major version (1)
//!  3      minor        protocol minor version of the sender (1)
//!  4      msg_type     MsgType
//!  5      flags        bit 0: AUTH (key id + HMAC tag follow the body); bits 1..7 zero
//!  6..8   reserved     zero
//!  8..12  body_len     u32, bytes of body
//! 12..20  agent_id     u64
//! 20..24  epoch        u32, session epoch (changes when the agent restarts)
//! 24..32  seq          u64, per-(agent, epoch) sequence number
//! 32..    body         body_len bytes (bincode, see message.rs)
//!  ..     [key_id u32, tag 32 bytes]   only with AUTH
//!  ..     crc32 u32    CRC-32/ISO-HDLC of every preceding byte of the frame
//! ```
//!
//! [`Frame::new_checked`] validates magic, version, flags and lengths; after it returns `Ok`,
//! no accessor can panic. The CRC and the tag are checked by the codec, not here.

use crate::error::{Error, Result};

pub type Field = core::ops::Range<usize>;

pub mod field {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const MAJOR: usize = 2;
    pub const MINOR: usize = 3;
    pub const MSG_TYPE: usize = 4;
    pub const FLAGS: usize = 5;
    pub const RESERVED: Field = 6..8;
    pub const BODY_LEN: Field = 8..12;
    pub const AGENT_ID: Field = 12..20;
    pub const EPOCH: Field = 20..24;
    pub const SEQ: Field = 24..32;
    pub const BODY: usize = 32;
}

pub const MAGIC: [u8; 2] = *b"NF";
pub const MAJOR: u8 = 1;
/// 1.1 (issue 17): Hello carries where the agent runs (docs/wire.md, Versioning).
pub const MINOR: u8 = 1;
pub const HEADER_LEN: usize = field::BODY;
pub const CRC_LEN: usize = 4;
/// Key id (4) plus HMAC-SHA256 tag (32).
pub const AUTH_LEN: usize = 4 + 32;
pub const FLAG_AUTH: u8 = 0x01;
/// Default limit on a whole frame. A FlowBatch over TCP is split well below this by the sender;
/// the stream decoder refuses any declared length above its limit before buffering it.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Default UDP datagram budget: fits a 1,500-byte Ethernet MTU after IPv6 (40) and UDP (8)
/// headers, with room for tunnel encapsulation.
pub const DEFAULT_DATAGRAM_LEN: usize = 1400;

/// Message types. Values are fixed by the spec; a new type needs a new minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    Hello = 1,
    FlowBatch = 2,
    Ack = 3,
    AgentStats = 4,
    Goodbye = 5,
    Error = 6,
}

impl MsgType {
    pub fn from_u8(v: u8) -> Result<MsgType> {
        Ok(match v {
            1 => MsgType::Hello,
            2 => MsgType::FlowBatch,
            3 => MsgType::Ack,
            4 => MsgType::AgentStats,
            5 => MsgType::Goodbye,
            6 => MsgType::Error,
            other => return Err(Error::UnknownMessageType(other)),
        })
    }
}

/// The identity every frame carries, so that a receiver can dedupe resends and detect loss
/// and restarts without looking at the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    pub agent_id: u64,
    pub epoch: u32,
    pub seq: u64,
}

/// A read (and, with `AsMut`, write) view over the bytes of one frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Validates everything the header alone can tell, in the order the spec gives:
    /// length of the fixed header, magic, major version, flags, declared length against `max_len`,
    /// and finally that the buffer holds the whole declared frame.
    pub fn new_checked(buffer: T, max_len: usize) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len(max_len)?;
        Ok(frame)
    }

    /// Checks the header prefix and returns the total frame length it declares.
    /// Works on a prefix of a frame, which is what a stream decoder has.
    pub fn check_header(bytes: &[u8], max_len: usize) -> Result<usize> {
        if bytes.len() >= 2 && bytes[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic([bytes[0], bytes[1]]));
        }
        if bytes.len() > field::MAJOR && bytes[field::MAJOR] != MAJOR {
            return Err(Error::UnsupportedVersion {
                got: bytes[field::MAJOR],
                supported: MAJOR,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let flags = bytes[field::FLAGS];
        if flags & !FLAG_AUTH != 0 {
            return Err(Error::Malformed { field: "flags" });
        }
        if bytes[field::RESERVED] != [0, 0] {
            return Err(Error::Malformed { field: "reserved" });
        }
        let body_len = u32::from_le_bytes(read4(bytes, field::BODY_LEN.start)) as usize;
        let auth = if flags & FLAG_AUTH != 0 { AUTH_LEN } else { 0 };
        let total = HEADER_LEN
            .saturating_add(body_len)
            .saturating_add(auth)
            .saturating_add(CRC_LEN);
        if total > max_len {
            return Err(Error::TooLarge {
                len: total,
                max: max_len,
            });
        }
        Ok(total)
    }

    pub fn check_len(&self, max_len: usize) -> Result<()> {
        let data = self.buffer.as_ref();
        let total = Self::check_header(data, max_len)?;
        if data.len() < total {
            return Err(Error::Truncated {
                need: total,
                got: data.len(),
            });
        }
        if data.len() > total {
            return Err(Error::TrailingBytes {
                extra: data.len() - total,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn minor(&self) -> u8 {
        self.buffer.as_ref()[field::MINOR]
    }
    pub fn msg_type_raw(&self) -> u8 {
        self.buffer.as_ref()[field::MSG_TYPE]
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    pub fn has_auth(&self) -> bool {
        self.flags() & FLAG_AUTH != 0
    }
    pub fn body_len(&self) -> usize {
        u32::from_le_bytes(read4(self.buffer.as_ref(), field::BODY_LEN.start)) as usize
    }
    pub fn agent_id(&self) -> u64 {
        u64::from_le_bytes(read8(self.buffer.as_ref(), field::AGENT_ID.start))
    }
    pub fn epoch(&self) -> u32 {
        u32::from_le_bytes(read4(self.buffer.as_ref(), field::EPOCH.start))
    }
    pub fn seq(&self) -> u64 {
        u64::from_le_bytes(read8(self.buffer.as_ref(), field::SEQ.start))
    }
    pub fn header(&self) -> Header {
        Header {
            agent_id: self.agent_id(),
            epoch: self.epoch(),
            seq: self.seq(),
        }
    }
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..field::BODY + self.body_len()]
    }
    fn auth_start(&self) -> usize {
        field::BODY + self.body_len()
    }
    /// `(key_id, tag)` when the AUTH flag is set.
    pub fn auth(&self) -> Option<(u32, &[u8])> {
        if !self.has_auth() {
            return None;
        }
        let d = self.buffer.as_ref();
        let s = self.auth_start();
        Some((u32::from_le_bytes(read4(d, s)), &d[s + 4..s + AUTH_LEN]))
    }
    /// The bytes the HMAC tag covers: header, body and key id.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.auth_start() + 4]
    }
    pub fn crc_offset(&self) -> usize {
        self.buffer.as_ref().len() - CRC_LEN
    }
    pub fn crc(&self) -> u32 {
        u32::from_le_bytes(read4(self.buffer.as_ref(), self.crc_offset()))
    }
    /// CRC-32/ISO-HDLC over every byte before the trailer.
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(&self.buffer.as_ref()[..self.crc_offset()])
    }
    pub fn check_crc(&self) -> Result<()> {
        let (expected, actual) = (self.crc(), self.compute_crc());
        if expected != actual {
            return Err(Error::BadCrc { expected, actual });
        }
        Ok(())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the fixed header. The caller has sized the buffer to the whole frame.
    pub fn emit_header(&mut self, msg_type: MsgType, flags: u8, body_len: u32, header: &Header) {
        let d = self.buffer.as_mut();
        d[field::MAGIC].copy_from_slice(&MAGIC);
        d[field::MAJOR] = MAJOR;
        d[field::MINOR] = MINOR;
        d[field::MSG_TYPE] = msg_type as u8;
        d[field::FLAGS] = flags;
        d[field::RESERVED].copy_from_slice(&[0, 0]);
        d[field::BODY_LEN].copy_from_slice(&body_len.to_le_bytes());
        d[field::AGENT_ID].copy_from_slice(&header.agent_id.to_le_bytes());
        d[field::EPOCH].copy_from_slice(&header.epoch.to_le_bytes());
        d[field::SEQ].copy_from_slice(&header.seq.to_le_bytes());
    }
    /// The body, writable (for rewriting fixed-width fields in place; see `batch::BatchView`).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = field::BODY + self.body_len();
        &mut self.buffer.as_mut()[field::BODY..end]
    }
    pub fn fill_crc(&mut self) {
        let crc = self.compute_crc();
        let off = self.crc_offset();
        self.buffer.as_mut()[off..off + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    }
}

fn read4(d: &[u8], at: usize) -> [u8; 4] {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[at..at + 4]);
    b
}
fn read8(d: &[u8], at: usize) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    b
}
