//! The fleet file's `[traffic]` section: which hosts run (tiers), who talks to whom (flows), how
//! much and how often. The collector ignores this section; the topology part of the same file is
//! read by the collector's own parser, so simulator and collector agree on every address.
//!
//! Rates are per second of simulated time so that changing the interval does not change the
//! traffic; `docs/sim.md` documents every field.

use serde::Deserialize;

/// `[traffic]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// TCP maximum segment size used to turn bytes into segments.
    #[serde(default = "default_mss")]
    pub mss: u32,
    /// Residual loss of a healthy path (each flow draws its own in `0..2×` this).
    #[serde(default = "default_baseline_loss")]
    pub baseline_loss: f64,
    /// Amplitude of the day/night swing of bytes and connections, 0 (flat) to 0.9.
    #[serde(default)]
    pub diurnal: f64,
    #[serde(default, rename = "tier")]
    pub tiers: Vec<Tier>,
    #[serde(default, rename = "flow")]
    pub flows: Vec<FlowRule>,
}

fn default_mss() -> u32 {
    1448
}
fn default_baseline_loss() -> f64 {
    0.00005
}

/// `[[traffic.tier]]`: a named group of hosts, listed and/or generated in subnets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    /// `[[host]]` names that belong to this tier.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Subnets in which `per_subnet` hosts are generated (addresses from `.10` of the subnet
    /// up, skipping listed hosts' addresses). Generated hosts are named by their address,
    /// exactly as the collector names hosts the topology does not list.
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub per_subnet: u32,
    /// Whether these hosts run an agent (report flows). Default true.
    #[serde(default = "yes")]
    pub agent: bool,
    /// The port this tier serves on (when it is the `to` of a flow rule).
    #[serde(default = "default_port")]
    pub port: u16,
}

fn yes() -> bool {
    true
}
fn default_port() -> u16 {
    443
}

/// `[[traffic.flow]]`: every host of tier `from` opens flows to `fan_out` peers of `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    pub from: String,
    /// A tier name, or `service:NAME` for a `[[service]]` of the topology.
    pub to: String,
    /// Peers per source host (capped by the number of candidates).
    #[serde(default = "one")]
    pub fan_out: u32,
    /// Probability that a peer is chosen in another VPC than the source (when one exists).
    #[serde(default)]
    pub cross_vpc: f64,
    /// Probability that a same-VPC peer is chosen in another AZ than the source.
    #[serde(default)]
    pub cross_az: f64,
    /// Mean client→server bytes per second of one flow.
    #[serde(default = "default_bytes")]
    pub bytes_per_s: f64,
    /// Server→client bytes per client→server byte.
    #[serde(default = "default_response")]
    pub response: f64,
    /// Mean new short-lived connections per second of one flow.
    #[serde(default)]
    pub connections_per_s: f64,
    /// Persistent connections of one flow (pooled, long-lived).
    #[serde(default = "one")]
    pub long_lived: u32,
    /// Overrides the destination port (default: the tier's port or the service's first port).
    #[serde(default)]
    pub port: Option<u16>,
}

fn one() -> u32 {
    1
}
fn default_bytes() -> f64 {
    20_000.0
}
fn default_response() -> f64 {
    4.0
}

impl Traffic {
    /// Reads `[traffic]` from the topology file's extra tables. A missing section is an error:
    /// a fleet without traffic would simulate nothing.
    pub fn from_extra(extra: &toml::Table) -> Result<Traffic, String> {
        let Some(v) = extra.get("traffic") else {
            return Err("the fleet file has no [traffic] section (see docs/sim.md)".into());
        };
        let t: Traffic = v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("[traffic]: {}", e.message()))?;
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<(), String> {
        if self.mss < 64 || self.mss > 65_000 {
            return Err(format!("[traffic] mss = {} is out of 64..=65000", self.mss));
        }
        if !(0.0..0.5).contains(&self.baseline_loss) {
            return Err("[traffic] baseline_loss must be in 0..0.5".into());
        }
        if !(0.0..=0.9).contains(&self.diurnal) {
            return Err("[traffic] diurnal must be in 0..=0.9".into());
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tiers {
            if !names.insert(t.name.as_str()) {
                return Err(format!("[[traffic.tier]] `{}` is declared twice", t.name));
            }
            if t.name.starts_with("service:") {
                return Err(format!(
                    "tier name `{}` may not start with service:",
                    t.name
                ));
            }
        }
        for f in &self.flows {
            let known = names.contains(f.to.as_str()) || f.to.starts_with("service:");
            if !names.contains(f.from.as_str()) {
                return Err(format!("[[traffic.flow]] from unknown tier `{}`", f.from));
            }
            if !known {
                return Err(format!("[[traffic.flow]] to unknown tier `{}`", f.to));
            }
            for (name, p) in [("cross_vpc", f.cross_vpc), ("cross_az", f.cross_az)] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "[[traffic.flow]] {} → {}: {name} must be in 0..=1",
                        f.from, f.to
                    ));
                }
            }
            if !(f.bytes_per_s >= 0.0 && f.response >= 0.0 && f.connections_per_s >= 0.0) {
                return Err(format!(
                    "[[traffic.flow]] {} → {}: rates must be ≥ 0",
                    f.from, f.to
                ));
            }
            if f.bytes_per_s > 1e10 || f.connections_per_s > 1e5 || f.long_lived > 10_000 {
                return Err(format!(
                    "[[traffic.flow]] {} → {}: rate out of range",
                    f.from, f.to
                ));
            }
        }
        Ok(())
    }
}
