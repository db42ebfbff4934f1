//! nfm-collector: receives flow deltas from nfm agents, resolves them against a topology,
//! aggregates, judges health, stores history and serves the API and /metrics.

use anyhow::{Context, Result};
use clap::Parser;
use nfm_collector::collector::{Collector, Settings};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc: closing an interval allocates and frees ~a million small strings (paths); the
/// system allocator spends a large share of the collector's CPU on that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The nfm collector. Settings come from `--config` (TOML, see nfm-collector/examples/collector.toml);
/// flags override the file.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    // issue 17: `nfm-collector topology import-aws ...`
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Topology file (docs/topology.md); reloaded on SIGHUP or POST /api/topology/reload.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Directory of the embedded store (WAL, history, monitors.json).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// UDP address for agent datagrams ("off" to disable).
    #[arg(long)]
    listen_udp: Option<String>,
    /// TCP address for agent streams ("off" to disable).
    #[arg(long)]
    listen_tcp: Option<String>,
    /// HTTP address of the API, /metrics and dashboard ("off" to disable).
    #[arg(long)]
    http: Option<String>,
    /// Key file (`<id> <hex secret>` per line): turns on frame authentication.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Monitors file (TOML `[[monitor]]` entries).
    #[arg(long)]
    monitors: Option<PathBuf>,
    /// Days of history to keep.
    #[arg(long)]
    retention_days: Option<u64>,
    /// Close an interval after no record arrived for it for this long (ms of wall time).
    #[arg(long)]
    idle_close_ms: Option<u64>,
    /// Close an interval once some agent reported an interval ending this long after it (ms).
    #[arg(long)]
    close_grace_ms: Option<u64>,
    /// Close an interval whose records arrived on time this long after its end by this host's
    /// clock (ms; 0: off).
    #[arg(long)]
    close_after_ms: Option<u64>,
    /// The collector's interval (5s, 60s, 500ms; 0: every agent's own): agents' batches are
    /// placed on its grid, shorter batches are added into the interval holding their midpoint,
    /// longer ones are refused as interval_mismatch.
    #[arg(long, value_parser = interval)]
    interval: Option<u64>,
    /// PEM certificate chain: serve the API and dashboard over HTTPS (with --tls-key);
    /// reloaded on SIGHUP.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Agents' TCP stream over TLS too (same certificate).
    #[arg(long)]
    ingest_tls: bool,
}

// issue 17: subcommands (without one, the collector runs).
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Topology file tools (docs/topology.md).
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TopologyCommand {
    /// Write a topology file from a region's EC2 API (VPCs, subnets, AZ ids, instances,
    /// transit gateways, peerings, the S3 and DynamoDB prefix lists), or diff it against one.
    ImportAws(nfm_collector::discovery::ImportAwsArgs),
}

fn interval(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1_000)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000)
    } else {
        (s, 1)
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("`{s}` is not an interval (e.g. 5s, 60s, 500ms, 0)"))
}

fn addr(s: &str) -> Result<Option<SocketAddr>> {
    if s == "off" {
        return Ok(None);
    }
    Ok(Some(s.parse().with_context(|| {
        format!("`{s}` is not an address like 127.0.0.1:7700")
    })?))
}

fn main() -> Result<()> {
    nfm_collector::alloc::tune();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    // issue 17
    if let Some(Command::Topology {
        command: TopologyCommand::ImportAws(a),
    }) = &cli.command
    {
        std::process::exit(nfm_collector::discovery::run_import_cli(a));
    }
    let mut s = match &cli.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Settings::parse_toml(&text).map_err(anyhow::Error::msg)?
        }
        None => Settings::default(),
    };
    if let Some(v) = cli.topology {
        s.topology = Some(v);
    }
    if let Some(v) = cli.data_dir {
        s.data_dir = v;
    }
    if let Some(v) = cli.listen_udp {
        s.listen_udp = addr(&v)?;
    }
    if let Some(v) = cli.listen_tcp {
        s.listen_tcp = addr(&v)?;
    }
    if let Some(v) = cli.http {
        s.http = addr(&v)?;
    }
    if let Some(v) = cli.key_file {
        s.key_file = Some(v);
    }
    if let Some(v) = cli.monitors {
        s.monitors = Some(v);
    }
    if let Some(v) = cli.retention_days {
        s.retention_days = v;
    }
    if let Some(v) = cli.idle_close_ms {
        s.idle_close_ms = v;
    }
    if let Some(v) = cli.close_grace_ms {
        s.close_grace_ms = v;
    }
    if let Some(v) = cli.close_after_ms {
        s.close_after_ms = v;
    }
    if let Some(v) = cli.interval {
        s.interval_ms = v;
    }
    // issue 15
    if let Some(v) = cli.tls_cert {
        s.tls_cert = Some(v);
    }
    if let Some(v) = cli.tls_key {
        s.tls_key = Some(v);
    }
    s.ingest_tls |= cli.ingest_tls;
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    let c = Collector::start(&s).map_err(anyhow::Error::msg)?;
    if let Some(a) = c.udp_addr {
        println!("nfm-collector: agents: udp://{a}");
    }
    if let Some(a) = c.tcp_addr {
        println!("nfm-collector: agents: tcp://{a}");
    }
    if let Some(a) = c.http_addr {
        let scheme = if c.tls.is_some() { "https" } else { "http" };
        println!(
            "nfm-collector: dashboard and API: {scheme}://{a}/  (metrics: {scheme}://{a}/metrics)"
        );
    }
    println!("nfm-collector: data in {}", s.data_dir.display());
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                log::info!("SIGHUP: reloading the topology");
                c.reload_topology();
                if c.tls.is_some() {
                    log::info!("SIGHUP: reloading the TLS certificate");
                    let _ = c.reload_tls(); // logged and counted; the old one stays on error
                }
            }
            _ => break,
        }
    }
    log::info!("shutting down");
    c.shutdown();
    Ok(())
}
