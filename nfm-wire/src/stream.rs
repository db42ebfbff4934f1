//! Incremental decoding of frames from a byte stream (TCP), at any chunk boundaries.
//!
//! The header's declared length is checked against the limit as soon as the first 12 bytes are
//! in, before waiting for (or buffering) the rest, so a peer can never make this decoder hold
//! more than one maximum-size frame plus one read chunk.

use crate::codec::{decode, DecodeOptions, Packet};
use crate::error::{Error, Result};
use crate::header::{field, Frame};
use std::io::{self, Read};

/// Bytes asked from the socket per `read` call.
pub const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    pos: usize,
    max_frame_len: usize,
}

impl StreamDecoder {
    pub fn new(max_frame_len: usize) -> StreamDecoder {
        StreamDecoder {
            buf: Vec::new(),
            pos: 0,
            max_frame_len,
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.make_room();
        self.buf.extend_from_slice(bytes);
    }

    /// Drops consumed bytes before more arrive: all of them when the buffer is used up (free),
    /// or by moving the rest to the front once a read chunk's worth has been consumed.
    fn make_room(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= READ_CHUNK {
            self.compact();
        }
    }

    /// One `read` from `r` into the buffer. Returns what `read` returned (0 means end of stream).
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        self.make_room();
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let res = r.read(&mut self.buf[old..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        res
    }

    /// The next whole frame's bytes, `Ok(None)` when more bytes are needed. An error means the
    /// stream is unusable (it cannot be resynchronised): close the connection.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>> {
        let avail = &self.buf[self.pos..];
        let total = match Frame::<&[u8]>::check_header(avail, self.max_frame_len) {
            Ok(total) => total,
            Err(Error::Truncated { .. }) if avail.len() < field::BODY => return Ok(None),
            Err(e) => return Err(e),
        };
        if avail.len() < total {
            // Reserve what the declared (and already bounded) frame needs, once.
            self.buf.reserve(total - avail.len());
            return Ok(None);
        }
        let start = self.pos;
        self.pos += total;
        Ok(Some(&self.buf[start..start + total]))
    }

    /// The next decoded frame, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self, opts: &DecodeOptions) -> Result<Option<Packet>> {
        match self.next_frame()? {
            None => Ok(None),
            Some(bytes) => decode(bytes, opts).map(Some),
        }
    }
}
