//! The agent's configuration: a TOML file overlaid by command-line flags, validated in one place
//! so that every bad value is one clear error before anything is loaded into the kernel.

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::transport::Kind;

/// Defaults, each with its reason.
pub mod default {
    /// 5 s: seconds-level freshness at a small, steady cost.
    pub const INTERVAL_MS: u64 = 5000;
    /// 65,536 sockets ≈ 13 MiB of preallocated kernel memory; enough for a busy host, and
    /// overflow is counted (map_full), never silent.
    pub const MAX_SOCKETS: u32 = 65536;
    /// 1 MiB of close events ≈ 6,900 closes (144-byte events + 8-byte headers); the reader is
    /// woken at a quarter full, so at 30,000 closes/s it wakes every ~60 ms. The ring is mapped
    /// twice into the agent (aya's consumer view), so it counts 2× in RSS: keep it small. A full
    /// ring loses nothing (closes stay in the map, counted as ringbuf_full).
    pub const RING_BYTES: u32 = 1 << 20;
    /// 16 MiB of unacked frames: several minutes of a busy host's records during an outage.
    pub const SPOOL_BYTES: usize = 16 << 20;
    pub const COLLECTOR_PORT: u16 = 7700;
}

/// The shortest interval allowed.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Parser, Debug, Default)]
#[command(
    name = "nfm-agent",
    version,
    about = "nfm host agent: measures TCP health of this host's connections with a sock_ops eBPF program and ships per-flow deltas to an nfm collector."
)]
pub struct Cli {
    /// TOML config file; flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Collector address HOST:PORT (repeatable; one is picked by a stable hash of the agent id,
    /// the next on failure).
    #[arg(long = "collector", value_name = "ADDR")]
    pub collectors: Vec<String>,
    /// udp (fire and forget) or tcp (acked, spooled, resent).
    #[arg(long, value_name = "udp|tcp")]
    pub transport: Option<String>,
    /// Reporting interval, e.g. 5s, 500ms, 1m (minimum 500ms).
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// cgroup v2 directory to attach to (default: the root of the cgroup2 mount).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Print each interval's flow deltas as one JSON line on stdout instead of sending them.
    #[arg(long)]
    pub stdout: bool,
    /// Agent id (u64, decimal or 0x-hex; default: FNV-1a of /etc/machine-id).
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// HMAC key file (`<key id> <hex secret>` lines); frames are signed with the newest key.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Socket map capacity (entries).
    #[arg(long, value_name = "N")]
    pub max_sockets: Option<u32>,
    /// Close-event ring buffer size in bytes (power of two, at least 4096).
    #[arg(long, value_name = "BYTES")]
    pub ring_bytes: Option<u32>,
    /// TCP spool capacity in bytes (unacked frames).
    #[arg(long, value_name = "BYTES")]
    pub spool_bytes: Option<usize>,
    /// Log level: error, warn, info, debug, trace (also RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// sock_ops callbacks to enable, comma-separated from rto,retrans,state,rtt,rx (default: all).
    /// For measurements only: without `state` closes are never seen.
    #[arg(long, value_name = "LIST", hide = true)]
    pub callbacks: Option<String>,
    /// Host name announced in Hello (default: the system host name).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,
    /// Wake the ring-buffer reader when this many bytes wait (default: a quarter of the ring;
    /// 0: on every event). For tests and measurements.
    #[arg(long, value_name = "BYTES", hide = true)]
    pub ring_wakeup_bytes: Option<u64>,
    /// Instance metadata service asked at start for where the host runs (issue 17): HOST:PORT,
    /// or `off` (default 169.254.169.254:80; at most 1 s when nothing answers).
    #[arg(long, value_name = "ADDR|off")]
    pub imds: Option<String>,
    /// Measurement only: attach a program that returns at once (the kernel's invocation cost).
    #[arg(long, hide = true)]
    pub bpf_noop: bool,
    /// Measurement only: the program times itself per op; printed on stderr at exit.
    #[arg(long, hide = true)]
    pub bpf_profile: bool,
    /// CA certificate(s) (PEM) to verify the collector with: the TCP stream runs over TLS
    /// (the collector's `ingest_tls`). Needs --transport tcp.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Name the collector's certificate must carry (default: the collector's IP address).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// The TOML file: the same settings as the flags, snake_case.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub collectors: Option<Vec<String>>,
    pub transport: Option<String>,
    pub interval: Option<String>,
    pub cgroup: Option<PathBuf>,
    pub stdout: Option<bool>,
    pub agent_id: Option<String>,
    pub key_file: Option<PathBuf>,
    pub max_sockets: Option<u32>,
    pub ring_bytes: Option<u32>,
    pub spool_bytes: Option<usize>,
    pub log_level: Option<String>,
    pub host_name: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub imds: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub collectors: Vec<SocketAddr>,
    pub transport: Kind,
    pub interval: Duration,
    /// None: the cgroup2 mount root, resolved at start.
    pub cgroup: Option<PathBuf>,
    pub stdout: bool,
    pub agent_id: Option<u64>,
    pub key_file: Option<PathBuf>,
    pub max_sockets: u32,
    pub ring_bytes: u32,
    pub spool_bytes: usize,
    pub log_level: String,
    pub cb_flags: u32,
    pub host_name: Option<String>,
    /// issue 17: the metadata service's address; None: off.
    pub imds: Option<SocketAddr>,
    pub ring_wakeup_bytes: u64,
    pub bpf_noop: bool,
    pub bpf_profile: bool,
    /// TLS to the collector (`--tls-ca`).
    pub tls: Option<crate::tls::TlsClient>,
}

/// Parses `5s`, `500ms`, `1m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration (use e.g. 5s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => bail!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)"),
    };
    if !secs.is_finite() || !(0.0..=86400.0).contains(&secs) {
        bail!("`{s}` is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_u64(s: &str) -> Result<u64> {
    let t = s.trim();
    let r = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| anyhow!("agent id `{s}` is not a u64 (decimal or 0x-hex)"))
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default::COLLECTOR_PORT));
    }
    let with_port = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:{}", default::COLLECTOR_PORT)
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("collector address `{addr}`"))?
        .next()
        .ok_or_else(|| anyhow!("collector address `{addr}` resolves to nothing"))
}

fn parse_callbacks(s: &str) -> Result<u32> {
    use nfm_agent_common::cb_flag;
    let mut f = 0;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        f |= match part {
            "rto" => cb_flag::RTO,
            "retrans" => cb_flag::RETRANS,
            "state" => cb_flag::STATE,
            "rtt" => cb_flag::RTT,
            "rx" => cb_flag::RX,
            "none" => 0,
            _ => bail!("unknown callback `{part}` (rto, retrans, state, rtt, rx)"),
        };
    }
    // 0 means "default" to the program; a real empty set is expressed with an unused bit.
    Ok(if f == 0 { 1 << 31 } else { f })
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config> {
        let file = match &cli.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let collectors_raw = if !cli.collectors.is_empty() {
            cli.collectors
        } else {
            file.collectors.unwrap_or_default()
        };
        let stdout = cli.stdout || file.stdout.unwrap_or(false);
        let collectors = collectors_raw
            .iter()
            .map(|a| resolve(a))
            .collect::<Result<Vec<_>>>()?;
        if collectors.is_empty() && !stdout {
            bail!(
                "no collector configured: pass --collector HOST:PORT (or --stdout to print flows)"
            );
        }
        let transport = match cli.transport.or(file.transport).as_deref().unwrap_or("udp") {
            "udp" => Kind::Udp,
            "tcp" => Kind::Tcp,
            other => bail!("--transport `{other}`: use udp or tcp"),
        };
        let interval = match cli.interval.or(file.interval) {
            Some(s) => parse_duration(&s)?,
            None => Duration::from_millis(default::INTERVAL_MS),
        };
        if interval < MIN_INTERVAL {
            bail!("--interval {interval:?} is below the minimum of 500ms");
        }
        let agent_id = cli
            .agent_id
            .or(file.agent_id)
            .map(|s| parse_u64(&s))
            .transpose()?;
        let max_sockets = cli
            .max_sockets
            .or(file.max_sockets)
            .unwrap_or(default::MAX_SOCKETS);
        if max_sockets == 0 {
            bail!("--max-sockets must be at least 1");
        }
        let ring_bytes = cli
            .ring_bytes
            .or(file.ring_bytes)
            .unwrap_or(default::RING_BYTES);
        if ring_bytes < 4096 || !ring_bytes.is_power_of_two() {
            bail!("--ring-bytes {ring_bytes}: must be a power of two of at least 4096");
        }
        let spool_bytes = cli
            .spool_bytes
            .or(file.spool_bytes)
            .unwrap_or(default::SPOOL_BYTES);
        if spool_bytes < 64 * 1024 {
            bail!("--spool-bytes {spool_bytes}: use at least 65536");
        }
        let tls = match cli.tls_ca.or(file.tls_ca) {
            Some(ca) => {
                if transport != Kind::Tcp {
                    bail!("--tls-ca needs --transport tcp (TLS runs over the TCP stream)");
                }
                let name = cli.tls_server_name.or(file.tls_server_name);
                Some(crate::tls::TlsClient::load(&ca, name.as_deref())?)
            }
            None => None,
        };
        let imds = match cli.imds.or(file.imds).as_deref() {
            Some("off") => None,
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| anyhow!("--imds `{a}` is not HOST:PORT (an IP address) or off"))?,
            ),
            None => crate::imds::IMDS_ADDR.parse().ok(),
        };
        let cb_flags = match cli.callbacks {
            Some(s) => parse_callbacks(&s)?,
            None => 0,
        };
        Ok(Config {
            collectors,
            transport,
            interval,
            cgroup: cli.cgroup.or(file.cgroup),
            stdout,
            agent_id,
            key_file: cli.key_file.or(file.key_file),
            max_sockets,
            ring_bytes,
            spool_bytes,
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            cb_flags,
            host_name: cli.host_name.or(file.host_name),
            imds,
            ring_wakeup_bytes: cli.ring_wakeup_bytes.unwrap_or(ring_bytes as u64 / 4),
            bpf_noop: cli.bpf_noop,
            bpf_profile: cli.bpf_profile,
            tls,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_duration() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn test_cli_overrides_file() {
        let dir = std::env::temp_dir().join(format!("nfm-agent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.toml");
        std::fs::write(
            &p,
            "collectors = [\"127.0.0.1:9000\"]\ntransport = \"tcp\"\ninterval = \"2s\"\nmax_sockets = 100\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "nfm-agent",
            "--config",
            p.to_str().unwrap(),
            "--interval",
            "1s",
        ]);
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.transport, Kind::Tcp);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.max_sockets, 100);
        assert_eq!(c.collectors, vec!["127.0.0.1:9000".parse().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_bad_values_are_errors() {
        let e = |args: &[&str]| {
            let mut v = vec!["nfm-agent"];
            v.extend_from_slice(args);
            Config::from_cli(Cli::parse_from(v))
                .unwrap_err()
                .to_string()
        };
        assert!(e(&[]).contains("no collector"));
        assert!(e(&["--stdout", "--interval", "100ms"]).contains("minimum"));
        assert!(e(&["--stdout", "--transport", "quic"]).contains("udp or tcp"));
        assert!(e(&["--stdout", "--ring-bytes", "5000"]).contains("power of two"));
        assert!(e(&["--stdout", "--agent-id", "xyz"]).contains("u64"));
        // TLS runs over the TCP stream only; a CA file that is not there is named.
        assert!(e(&["--stdout", "--tls-ca", "/nonexistent.pem"]).contains("--transport tcp"));
        let msg = e(&[
            "--stdout",
            "--transport",
            "tcp",
            "--tls-ca",
            "/nonexistent.pem",
        ]);
        assert!(msg.contains("/nonexistent.pem"), "{msg}");
        assert!(e(&["--stdout", "--imds", "metadata"]).contains("--imds"));
    }

    /// issue 17: the metadata service is asked at 169.254.169.254:80 unless turned off.
    #[test]
    fn test_imds_address() {
        let c = |args: &[&str]| {
            let mut v = vec!["nfm-agent", "--stdout"];
            v.extend_from_slice(args);
            Config::from_cli(Cli::parse_from(v)).unwrap().imds
        };
        assert_eq!(c(&[]), Some("169.254.169.254:80".parse().unwrap()));
        assert_eq!(c(&["--imds", "off"]), None);
        assert_eq!(
            c(&["--imds", "127.0.0.1:8111"]),
            Some("127.0.0.1:8111".parse().unwrap())
        );
    }

    /// The example shipped in deploy/ stays valid.
    #[test]
    fn test_deploy_example_parses() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.toml");
        let c = Config::from_cli(Cli::parse_from(["nfm-agent", "--config", p])).unwrap();
        assert_eq!(c.transport, Kind::Tcp);
        assert_eq!(c.interval, Duration::from_secs(5));
    }

    #[test]
    fn test_collector_default_port() {
        assert_eq!(
            resolve("127.0.0.1").unwrap().port(),
            default::COLLECTOR_PORT
        );
        assert_eq!(resolve("127.0.0.1:9").unwrap().port(), 9);
        assert_eq!(resolve("[::1]:9").unwrap().port(), 9);
    }
}
