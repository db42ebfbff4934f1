//! nfm-agent: measures the TCP health of this host's connections with a sock_ops eBPF program
//! and ships per-flow deltas to an nfm collector. The design (which callbacks, what goes through
//! the ring buffer and what stays in the map) is explained in `README.md`.
//!
//! # Layout
//! - [`config`]: TOML file + flags, validated.
//! - [`bpf`]: load, attach, batch-read the socket map, per-CPU counters (the only kernel I/O).
//! - [`flows`]: per-socket deltas folded into service-level flows (pure, unit-tested).
//! - [`staged`]: dedupes close records read both from the per-CPU stages and the ring buffer.
//! - [`tls`]: TLS to the collector (`--tls-ca`), rustls driven by the mio loop.
//! - [`transport`]: UDP and TCP senders, the bounded spool, acks, reconnect with back-off.
//! - [`agent`]: the mio event loop tying them together.
//! - [`sys`]: agent id, host name, CPU/RSS, dropping capabilities.
//! - [`imds`]: instance id, region, AZ, subnet, VPC and addresses from the metadata service.

pub mod agent;
pub mod bpf;
pub mod config;
pub mod flows;
// issue 17: where the host runs (IMDSv2), sent in Hello
pub mod imds;
pub mod staged;
pub mod sys;
pub mod tls;
pub mod transport;
