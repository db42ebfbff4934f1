//! Ingest: one mio loop with the UDP socket, the TCP listener and its connections, and a waker
//! for the store's durability replies.
//!
//! Guarantees:
//! - Every frame is decoded from untrusted bytes by `nfm_wire::decode` (CRC, version, length and,
//!   with a key file, the HMAC tag checked first). A refused frame is counted per reason and per
//!   agent; a TCP peer that sends one gets an Error frame and is disconnected. Nothing panics.
//! - Sessions: each agent has an epoch and a sequence space. Resends are deduped by
//!   (agent, epoch, seq) within a window; gaps count as lost frames (and are un-counted when a
//!   late datagram fills them); frames of an older epoch or older than the window are dropped as
//!   replays.
//! - A TCP frame is acked only when the store has fsynced it (or it carried no data), in
//!   sequence order, so an Ack{seq} means every frame up to `seq` will never be lost. A batch the
//!   store had to drop is never acked: that agent's connections are closed and it resends.
//!
//! # Layout
//! - `core`: the protocol logic, [`IngestCore`] (sessions, dedupe, decode, per-agent accounting,
//!   acks in order): no sockets, so tests and the benchmark feed it frames directly;
//! - `session`: sessions and the agent table (the restart-or-replay rule, budget, expiry, replay
//!   marks kept across restarts);
//! - `seq_window`: a session's sliding-window dedupe of sequence numbers, kept small;
//! - `stamp`: interval timestamps checked against the collector's clock ([`check_interval`]);
//! - `grid`: where a batch's interval lands (skew, jitter, the collector's interval: [`place`]);
//! - `socket`: [`IngestLoop`], the mio loop that owns the UDP socket, the TCP listener and
//!   connections, and hands every frame to the core;
//! - `tls_io`: TLS on an agent connection (`ingest_tls`): rustls driven by the socket loop.

mod core;
mod grid;
mod seq_window;
mod session;
mod socket;
mod stamp;
mod tls_io;

pub use self::core::{IngestCore, Outcome, Transport, DEDUPE_WINDOW};
pub use self::grid::{align_interval, place, Alignment, LENGTH_JITTER_MS, SKEW_TOLERANCE_MS};
pub use self::socket::{
    connection_cap, nofile_limit, IngestControl, IngestLoop, IngestSockets, Injected,
};
pub use self::stamp::{check_interval, future_allowance_ms, MAX_INTERVAL_MS};

use nfm_wire::Keyring;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub max_frame_len: usize,
    pub keys: Option<Keyring>,
    /// Agent sessions at once; a new agent beyond it takes the place of the oldest session
    /// that never sent a FlowBatch, else is refused (`too_many_agents`).
    pub max_agents: usize,
    /// Sessions that never sent a FlowBatch (only a Hello, AgentStats...) at once; beyond it
    /// the oldest of them is evicted.
    pub max_unproven: usize,
    /// A session that never sent a FlowBatch expires after this silence ...
    pub unproven_ttl: Duration,
    /// ... any session after this one (leaving its replay mark).
    pub session_ttl: Duration,
    /// Where the replay marks are kept across restarts (`DATA_DIR/sessions`); none: memory only.
    pub state_path: Option<PathBuf>,
    /// Agent TCP connections at once; lowered at start to the descriptor limit
    /// (RLIMIT_NOFILE) less [`FD_RESERVE`] for files and the API. At the limit a connection
    /// that has not sent a valid frame yet is evicted for the newcomer, else it is refused.
    pub max_connections: usize,
    /// A TCP connection must deliver a valid frame within this after it is accepted.
    pub tcp_handshake_timeout: Duration,
    /// An agent's TCP connection silent for this long is closed (agents send every interval).
    pub tcp_idle_timeout: Duration,
    /// A frame whose first bytes arrived must be complete within this.
    pub tcp_partial_timeout: Duration,
    /// Bytes all TCP connections may hold in partial frames; over it the connection with the
    /// oldest partial frame is closed (counted) until the total fits.
    pub buffer_budget: usize,
    /// SO_RCVBUF for the UDP socket.
    pub udp_recv_buffer: usize,
    /// The collector's interval: shorter batches are moved into the one holding their midpoint,
    /// longer ones refused (`interval_mismatch`); `None`: every agent's own ([`place`]).
    pub interval_ms: Option<u64>,
    /// Frame bytes that may wait for the store (a stalled disk); beyond it FlowBatch frames are
    /// refused as `store_full` before they are aggregated.
    pub max_store_backlog: usize,
}

/// Descriptors kept free of agent connections: the store's files, the API's connections, the
/// topology and monitors files.
pub const FD_RESERVE: usize = 256;

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_frame_len: nfm_wire::MAX_FRAME_LEN,
            keys: None,
            max_agents: 200_000,
            max_unproven: 1_024,
            unproven_ttl: Duration::from_secs(120),
            session_ttl: Duration::from_secs(3_600),
            state_path: None,
            max_connections: 50_000,
            tcp_handshake_timeout: Duration::from_secs(10),
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_partial_timeout: Duration::from_secs(30),
            buffer_budget: 256 << 20,
            udp_recv_buffer: 8 << 20,
            interval_ms: None,
            max_store_backlog: 256 << 20,
        }
    }
}
