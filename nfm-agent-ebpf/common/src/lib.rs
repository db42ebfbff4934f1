//! Types shared by the nfm sock_ops program and the agent, and the sock_ops state machine itself.
//!
//! Why the state machine lives here and not in the BPF crate: it is generic over a [`SockOps`]
//! context and an [`Env`] (maps, clock, ring buffer), so the very code that is compiled into the
//! BPF object is also compiled on the host and unit-tested with a mock context. Phases, counting,
//! close handling and overflow accounting are therefore tested without a kernel.
//!
//! # Layout
//! Files: `kernel` (uapi constants), `records` (the kernel↔user types), [`stage`] (per-CPU
//! staging), `sockops` (the state machine) and, for tests only, `mock` (the host mock). Their
//! items are re-exported here, so paths such as `nfm_agent_common::op::RTT_CB` stay as they were.
//! - [`SockStats`]: one socket's cumulative counters; the hash-map value *and* the ring-buffer
//!   record of a close that carries more than final counters (emitted straight from the entry).
//! - [`OpenEvent4`] / [`OpenEvent`] and [`CloseEvent`]: the small open and close events of
//!   every connection, staged per CPU and sent in batches ([`stage`]).
//! - [`counter`]: indexes of the per-CPU overflow / activity counters.
//! - [`on_sock_ops`]: the program body.
//! - [`payload`]: converts the kernel's sequence-space byte counters to payload bytes.
//!
//! # What the program does (and why so little)
//! Every callback costs CPU on the workload's own thread, so the program enables only the
//! callbacks whose events cannot be read later: STATE (to catch the close and snapshot the final
//! counters), RETRANS and RTO (retransmissions and timeouts, split by phase), RTT (RTT samples
//! past a 16-segment gate; turned off at this end's FIN below the gate) and RX (every segment
//! received until the peer's FIN: the only callback a pure receiver gets, so its live counters
//! are refreshed from it once per 16 KiB, and a sender's on ACKs). Every other counter (bytes,
//! segments, smoothed RTT, total retransmissions) is read from `bpf_sock_ops` when one of those
//! callbacks fires anyway.
//!
//! A socket's life in the program: the established callback stages an open event (no map insert:
//! a hash insert costs ~350 ns here); user space inserts the map entry for sockets still open at
//! the end of the interval in which it read the event, unless the program created it first (at a
//! retransmission or timeout, an RTT sample past the gate or a 16 KiB refresh), and from then on
//! the callbacks update the entry in place. The close stages a close event with the final
//! counters from the context or, for a socket with an entry, sends the entry whole; the entry is
//! flagged CLOSED and user space deletes it in batches. Whenever the ring buffer is full the
//! program falls back to the map, so nothing is lost unless the map is full too, and that is
//! counted. See `nfm-agent/README.md`.
#![no_std]

mod kernel;
#[cfg(test)]
mod mock;
mod records;
mod sockops;
pub mod stage;

pub use kernel::*;
pub use records::*;
pub use sockops::*;
