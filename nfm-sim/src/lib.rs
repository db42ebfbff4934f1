//! nfm-sim: plays a fleet of virtual hosts that speak the real nfm wire protocol, breaks chosen
//! parts of a virtual network on a schedule, and remembers what it broke, so that the collector's
//! verdicts can be scored against that ground truth. It also drives load tests.
//!
//! # Layout
//! - [`duration`]: `250ms`, `5s`, `10m`, `24h` as used by every file and flag.
//! - [`traffic`]: the fleet file's `[traffic]` section (tiers and who talks to whom).
//! - [`fleet`]: a fleet = topology (the collector's own parser) + traffic → hosts, agents, flows.
//! - [`model`]: the per-flow TCP model that turns path conditions into believable counters.
//! - [`scenario`]: the scenario file (faults on a timeline) and what it does to each component.
//! - [`truth`]: the ground-truth JSON-lines format (a documented contract, see docs/sim.md).
//! - [`agent`]: a virtual agent's identity (agent id, epoch, seq) and its frames.
//! - [`clock`]: agents' clock offsets, drift, tick jitter, late joins and restarts.
//! - [`transport`]: UDP and TCP senders over mio, many agents on few sockets, Ack handling.
//! - [`sim`]: the interval engine (records for every agent for one interval).
//! - [`run`]: real-time and virtual-time runs, and the load test.
//! - [`sink`]: a counting receiver (tests and the benchmark).
//! - [`score`]: scoring verdicts against ground truth; fetching verdicts from the API.
//! - [`score_fault`]: per-fault measures (time to name, held, ramp rise, incidents per fault).
//! - [`score_table`]: the score tables (text and Markdown).
//! - [`scorer`]: the `score` driver: scenarios × seeds, live against a collector or offline.
//!
//! Errors: parsers (`duration`, `traffic`/`fleet`, `scenario`, `truth`) return small
//! hand-written error types carrying the reason (and line where there is one); the drivers
//! (`run`, `scorer`) are orchestration shared by the CLI and tests and return `anyhow` errors,
//! as binaries do, because their failures (a socket, a file, a collector) are only ever reported.

pub mod agent;
pub mod clock;
pub mod duration;
pub mod fleet;
pub mod model;
pub mod run;
pub mod scenario;
pub mod score;
pub mod score_fault;
pub mod score_table;
pub mod scorer;
pub mod sim;
pub mod sink;
pub mod traffic;
pub mod transport;
pub mod truth;
