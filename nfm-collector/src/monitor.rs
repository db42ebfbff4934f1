//! Monitors: a named selection of flows by local resources (subnets, VPCs, AZs, regions) and
//! remote resources (Everywhere, or subnets, VPCs, AZs, regions, services), with optional
//! key/value tags, and the file that declares them. Matching many monitors is
//! `crate::monitor_index`'s job.
//!
//! A monitor is validated against the current topology when it is created or changed, so a typo
//! is a 400 with a message rather than a monitor that silently matches nothing.

use crate::topology::{Endpoint, Topology};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A resource a monitor names, written `subnet:ID`, `vpc:ID`, `az:NAME`, `region:NAME` or
/// `service:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    Subnet(String),
    Vpc(String),
    Az(String),
    Region(String),
    Service(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Subnet(s) => write!(f, "subnet:{s}"),
            Resource::Vpc(s) => write!(f, "vpc:{s}"),
            Resource::Az(s) => write!(f, "az:{s}"),
            Resource::Region(s) => write!(f, "region:{s}"),
            Resource::Service(s) => write!(f, "service:{s}"),
        }
    }
}

impl std::str::FromStr for Resource {
    type Err = String;
    fn from_str(s: &str) -> Result<Resource, String> {
        let (k, n) = s.split_once(':').ok_or_else(|| {
            format!("resource `{s}` is not `kind:name` (subnet:, vpc:, az:, region:, service:)")
        })?;
        if n.is_empty() {
            return Err(format!("resource `{s}` has an empty name"));
        }
        Ok(match k {
            "subnet" => Resource::Subnet(n.into()),
            "vpc" => Resource::Vpc(n.into()),
            "az" => Resource::Az(n.into()),
            "region" => Resource::Region(n.into()),
            "service" => Resource::Service(n.into()),
            _ => {
                return Err(format!(
                    "resource kind `{k}` is not one of subnet, vpc, az, region, service"
                ))
            }
        })
    }
}

impl Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Resource {
    /// The kind's index in [`Resource::KINDS`] and the name.
    pub fn kind_name(&self) -> (usize, &str) {
        match self {
            Resource::Subnet(s) => (0, s),
            Resource::Vpc(s) => (1, s),
            Resource::Az(s) => (2, s),
            Resource::Region(s) => (3, s),
            Resource::Service(s) => (4, s),
        }
    }

    /// Kinds of resource, in the order of [`Resource::kind_name`] and [`endpoint_names`].
    pub const KINDS: usize = 5;

    fn matches(&self, e: &Endpoint<'_>) -> bool {
        let (k, n) = self.kind_name();
        endpoint_names(e)[k] == Some(n)
    }

    fn exists_in(&self, t: &Topology) -> bool {
        match self {
            Resource::Subnet(s) => t.subnet(s).is_some(),
            Resource::Vpc(s) => t.vpc(s).is_some(),
            Resource::Az(s) => t.az(s).is_some(),
            Resource::Region(s) => t.regions().iter().any(|r| r.name == *s),
            Resource::Service(s) => t.service(s).is_some(),
        }
    }
}

/// An endpoint's resource names by kind (subnet, VPC, AZ, region, service).
pub fn endpoint_names<'a>(e: &Endpoint<'a>) -> [Option<&'a str>; Resource::KINDS] {
    [e.subnet, e.vpc, e.az, e.region, e.service]
}

/// A monitor as created through the API or the monitors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub name: String,
    /// One or more subnets, VPCs or AZs the local end must be in.
    pub local: Vec<Resource>,
    /// Empty means Everywhere; else one or more subnets, VPCs, AZs or services.
    #[serde(default)]
    pub remote: Vec<Resource>,
    /// Key/value labels for finding monitors (`GET /api/monitors?tag=team:payments`); they do
    /// not change what a monitor matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Monitors a collector holds at most (API and files). Matching goes through an inverted index
/// (`crate::monitor_index`), so its cost grows with the monitors a flow belongs to, not with
/// this number.
pub const MAX_MONITORS: usize = 10_000;

/// Tags per monitor, and the longest tag key and value.
pub const MAX_TAGS: usize = 32;
const MAX_TAG_KEY: usize = 64;
const MAX_TAG_VALUE: usize = 256;

fn tag_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_TAG_KEY
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Resources a monitor may list on each side. Matching costs a comparison per listed resource
/// for every new flow, so an unbounded list is a way to slow aggregation for everyone (64
/// monitors × 40,000 resources made it 65× slower); 256 is more subnets, VPCs, AZs and services
/// than one monitor's scope needs, and a whole VPC or AZ is one resource.
pub const MAX_RESOURCES_PER_SIDE: usize = 256;

impl Monitor {
    /// Checks the monitor's shape and that each resource exists in `t`.
    pub fn validate(&self, t: &Topology) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "monitor name `{}` must be 1 to 128 characters of A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        if self.local.is_empty() {
            return Err("a monitor needs at least one local resource".into());
        }
        for (side, list) in [("local", &self.local), ("remote", &self.remote)] {
            if list.len() > MAX_RESOURCES_PER_SIDE {
                return Err(format!(
                    "{} {side} resources: at most {MAX_RESOURCES_PER_SIDE} per monitor (name a VPC or AZ instead of its subnets)",
                    list.len()
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = list.iter().find(|r| !seen.insert(r.to_string())) {
                return Err(format!("{side} resource `{dup}` is listed twice"));
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "{} tags: at most {MAX_TAGS} per monitor",
                self.tags.len()
            ));
        }
        for (k, v) in &self.tags {
            if !tag_key_ok(k) {
                return Err(format!(
                    "tag key `{k}` must be 1 to {MAX_TAG_KEY} characters of A-Z a-z 0-9 - _ . /"
                ));
            }
            if v.len() > MAX_TAG_VALUE || v.chars().any(char::is_control) {
                return Err(format!(
                    "tag `{k}`: the value must be at most {MAX_TAG_VALUE} bytes without control characters"
                ));
            }
        }
        for r in &self.local {
            if matches!(r, Resource::Service(_)) {
                return Err(format!("local resource `{r}`: a service cannot be local"));
            }
            if !r.exists_in(t) {
                return Err(format!("local resource `{r}` is not in the topology"));
            }
        }
        for r in &self.remote {
            if !r.exists_in(t) {
                return Err(format!("remote resource `{r}` is not in the topology"));
            }
        }
        Ok(())
    }

    /// Does this monitor carry tag `k:v` (`filter` is `KEY:VALUE`, or `KEY` for any value)?
    pub fn has_tag(&self, filter: &str) -> bool {
        match filter.split_once(':') {
            Some((k, v)) => self.tags.get(k).is_some_and(|x| x == v),
            None => self.tags.contains_key(filter),
        }
    }

    /// Does a flow between these endpoints belong to this monitor?
    pub fn matches(&self, local: &Endpoint<'_>, remote: &Endpoint<'_>) -> bool {
        self.local.iter().any(|r| r.matches(local))
            && (self.remote.is_empty() || self.remote.iter().any(|r| r.matches(remote)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorsFile {
    #[serde(default)]
    monitor: Vec<Monitor>,
}

/// Parses a monitors file:
///
/// ```toml
/// [[monitor]]
/// name = "app-to-data"
/// local = ["subnet:subnet-app-a", "az:use1-az2"]
/// remote = ["vpc:vpc-data", "service:object-store"]   # omit for Everywhere
/// tags = { team = "payments", tier = "1" }             # optional
/// ```
pub fn parse_monitors(text: &str) -> Result<Vec<Monitor>, String> {
    let f: MonitorsFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => format!("monitors line {l}: {}", e.message()),
            None => format!("monitors: {}", e.message()),
        }
    })?;
    if f.monitor.len() > MAX_MONITORS {
        return Err(format!(
            "monitors: {} monitors, at most {MAX_MONITORS}",
            f.monitor.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    for m in &f.monitor {
        if !names.insert(m.name.clone()) {
            return Err(format!("monitors: duplicate monitor `{}`", m.name));
        }
    }
    Ok(f.monitor)
}

#[cfg(test)]
mod test {
    use super::*;

    const TOPO: &str = include_str!("../examples/topology.toml");

    #[test]
    fn test_parse_validate_and_match() {
        let t = Topology::parse(TOPO).unwrap();
        let ms = parse_monitors(
            "[[monitor]]\nname = \"app\"\nlocal = [\"subnet:subnet-app-a\"]\n\n[[monitor]]\nname = \"to-s3\"\nlocal = [\"vpc:vpc-app\"]\nremote = [\"service:object-store\"]\n",
        )
        .unwrap();
        assert_eq!(ms.len(), 2);
        for m in &ms {
            m.validate(&t).unwrap();
        }
        let ip = |s: &str| t.resolve(s.parse().unwrap());
        assert!(ms[0].matches(&ip("10.0.1.10"), &ip("8.8.8.8")));
        assert!(!ms[0].matches(&ip("10.0.2.10"), &ip("8.8.8.8")));
        assert!(ms[1].matches(&ip("10.0.2.10"), &ip("198.18.0.1")));
        assert!(!ms[1].matches(&ip("10.0.2.10"), &ip("10.1.1.1")));
    }

    /// Regression (issue 19 item 10): resource lists were unbounded; 64 monitors × 40,000
    /// resources slowed aggregation 65×. Over the bound, or a duplicate, is refused with a reason.
    #[test]
    fn test_resource_lists_are_bounded() {
        let t = Topology::parse(TOPO).unwrap();
        let one = |n: usize| Monitor {
            name: "m".into(),
            local: vec!["subnet:subnet-app-a".parse().unwrap(); n],
            remote: vec![],
            tags: Default::default(),
        };
        assert!(one(1).validate(&t).is_ok());
        let e = one(MAX_RESOURCES_PER_SIDE + 1).validate(&t).unwrap_err();
        assert!(e.contains("at most 256"), "{e}");
        let e = one(2).validate(&t).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let mut m = one(1);
        m.remote = vec!["az:use1-az1".parse().unwrap(); 40_000];
        assert!(m
            .validate(&t)
            .unwrap_err()
            .contains("40000 remote resources"));
    }

    #[test]
    fn test_invalid_monitors_are_refused_with_reasons() {
        let t = Topology::parse(TOPO).unwrap();
        let m = |name: &str, local: &[&str], remote: &[&str]| Monitor {
            name: name.into(),
            local: local.iter().map(|s| s.parse().unwrap()).collect(),
            remote: remote.iter().map(|s| s.parse().unwrap()).collect(),
            tags: Default::default(),
        };
        assert!(m("a", &[], &[])
            .validate(&t)
            .unwrap_err()
            .contains("at least one"));
        assert!(m("a b", &["vpc:vpc-app"], &[])
            .validate(&t)
            .unwrap_err()
            .contains("name"));
        assert!(m("a", &["vpc:nope"], &[])
            .validate(&t)
            .unwrap_err()
            .contains("not in the topology"));
        assert!(m("a", &["service:kv-db"], &[])
            .validate(&t)
            .unwrap_err()
            .contains("cannot be local"));
        assert!("planet:x".parse::<Resource>().is_err());
        assert!(
            parse_monitors("[[monitor]]\nname = \"a\"\nlocal = [\"x\"]\n")
                .unwrap_err()
                .contains("line 3")
        );
        assert!(parse_monitors("[[monitor]]\nname=\"a\"\nlocal=[\"az:use1-az1\"]\n[[monitor]]\nname=\"a\"\nlocal=[\"az:use1-az1\"]\n")
            .unwrap_err()
            .contains("duplicate"));
    }
}
