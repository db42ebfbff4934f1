//! One error type for every way a frame can be refused, carrying the numbers an operator needs.
//!
//! Nothing here allocates or boxes: decoding untrusted bytes must stay cheap even when it fails.

use core::fmt;

/// Why a frame was refused. Each variant maps to one `reason` label in the collector's metrics
/// (see [`Error::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the frame needs. For a datagram the frame is cut short; a stream decoder
    /// maps this to "wait for more bytes".
    Truncated { need: usize, got: usize },
    /// The first two bytes are not `NF`: not an nfm frame at all.
    BadMagic([u8; 2]),
    /// A major version this build cannot read.
    UnsupportedVersion { got: u8, supported: u8 },
    /// The frame's declared length is over the receiver's limit.
    TooLarge { len: usize, max: usize },
    /// The CRC-32 trailer does not match the bytes: corruption in transit or in the spool.
    BadCrc { expected: u32, actual: u32 },
    /// The receiver requires signed frames and this one carries no tag.
    Unsigned,
    /// The frame names a key id the receiver does not know.
    UnknownKey(u32),
    /// The HMAC-SHA256 tag does not match: forged, or signed with another secret.
    BadAuthTag { key_id: u32 },
    /// A message type this version does not define.
    UnknownMessageType(u8),
    /// A field that does not decode or holds a value outside its domain.
    Malformed { field: &'static str },
    /// Bytes left over after a message of the receiver's own minor version, or after a datagram's frame.
    TrailingBytes { extra: usize },
    /// The message does not fit the datagram or frame size the sender was asked to respect.
    DoesNotFit { len: usize, max: usize },
}

impl Error {
    /// A short, stable label for metrics (`nfm_frames_rejected_total{reason="bad_crc"}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadMagic(_) => "bad_magic",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::TooLarge { .. } => "too_large",
            Error::BadCrc { .. } => "bad_crc",
            Error::Unsigned => "unsigned",
            Error::UnknownKey(_) => "unknown_key",
            Error::BadAuthTag { .. } => "bad_auth_tag",
            Error::UnknownMessageType(_) => "unknown_message_type",
            Error::Malformed { .. } => "malformed",
            Error::TrailingBytes { .. } => "trailing_bytes",
            Error::DoesNotFit { .. } => "does_not_fit",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { need, got } => {
                write!(f, "truncated frame: need {need} bytes, got {got}")
            }
            Error::BadMagic(m) => write!(
                f,
                "bad magic {:02x} {:02x}: not an nfm frame (expected 4e 46, \"NF\")",
                m[0], m[1]
            ),
            Error::UnsupportedVersion { got, supported } => write!(
                f,
                "unsupported protocol major version {got}: this build speaks major version {supported}; upgrade the older side"
            ),
            Error::TooLarge { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the maximum of {max} bytes; raise max_frame_len or send smaller batches"
            ),
            Error::BadCrc { expected, actual } => write!(
                f,
                "CRC mismatch: frame says {expected:#010x}, bytes give {actual:#010x} (corrupted in transit or on disk)"
            ),
            Error::Unsigned => write!(
                f,
                "unsigned frame refused: this receiver requires an HMAC-SHA256 tag; give the sender a key file"
            ),
            Error::UnknownKey(id) => write!(
                f,
                "frame signed with unknown key id {id}: add the key to the receiver's key file"
            ),
            Error::BadAuthTag { key_id } => write!(
                f,
                "HMAC-SHA256 tag does not verify with key id {key_id}: forged frame or mismatched secret"
            ),
            Error::UnknownMessageType(t) => write!(f, "unknown message type {t:#04x}"),
            Error::Malformed { field } => write!(f, "malformed field `{field}`"),
            Error::TrailingBytes { extra } => {
                write!(f, "{extra} unexpected trailing bytes after the message")
            }
            Error::DoesNotFit { len, max } => {
                write!(f, "message needs {len} bytes but at most {max} are allowed")
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;
