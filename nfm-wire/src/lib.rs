//! nfm-wire: the versioned, CRC-checked, optionally signed binary protocol spoken by the nfm
//! agent, collector and simulator. Pure bytes, no I/O. `docs/wire.md` is the specification;
//! this crate is its reference implementation.
//!
//! # Layout
//! - [`header`]: the fixed 32-byte header and the zero-copy [`Frame`] view.
//! - [`record`]: [`FlowRecord`], one flow's deltas over an interval, and its compact wire form.
//! - [`message`]: message bodies ([`Hello`], [`FlowBatch`], [`Ack`], [`AgentStats`], [`Goodbye`], [`ErrorMsg`]).
//! - [`batch`]: FlowBatch bodies byte for byte: the decoder, the [`BatchView`] over an encoded
//!   frame, per-frame record counts ([`EncodedFrame`]) and the [`Sequencer`].
//! - [`codec`]: whole frames: [`encode`], [`decode`], splitting a batch into datagrams.
//! - [`stream`]: the incremental decoder for TCP.
//! - [`auth`]: HMAC-SHA256 keys and the key file.
//! - [`error`]: the one error type.
//! - [`rendezvous`]: which of several collectors an agent ships to (issue 16 item 3).

pub mod auth;
pub mod batch;
pub mod codec;
pub mod error;
pub mod header;
pub mod message;
pub mod record;
pub mod rendezvous;
pub mod stream;

pub use auth::{Key, KeyFileError, Keyring};
pub use batch::{BatchPrefix, BatchView, EncodedFrame, Sequencer};
pub use codec::{decode, encode, encode_flow_batch, encode_to_vec, DecodeOptions, Packet};
pub use error::{Error, Result};
pub use header::{
    Frame, Header, MsgType, DEFAULT_DATAGRAM_LEN, HEADER_LEN, MAJOR, MAX_FRAME_LEN, MINOR,
};
pub use message::{cap, Ack, AgentStats, ErrorMsg, FlowBatch, Goodbye, Hello, Message};
pub use record::{FlowRecord, PhaseCounts, Role, RttSummary, TimeSummary};
pub use stream::StreamDecoder;
