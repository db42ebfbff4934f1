//! Agents that say where they run (issue 17): the addresses of an agent's Hello placement
//! (wire 1.1) as topology places, so the collector names and places them without a topology
//! entry. Entries of the topology file win (`Topology::resolve`).

use crate::pipeline::AgentView;
use crate::topology::{AgentPlace, Topology, TopologyError};

/// The file's topology plus the addresses agents placed themselves (the first place of an
/// address wins). The file's entries still win over every place (`Topology::resolve`).
pub fn place(file: &Topology, places: Vec<AgentPlace>) -> Result<Topology, TopologyError> {
    let mut t = Topology::parse(&file.source)?;
    for p in places {
        t.agent_places.entry(p.ip).or_insert(p);
    }
    Ok(t)
}

/// The places the agents announce, in agent id order (an address two agents claim goes to the
/// lower id). Simulated agents place nothing.
pub fn agent_places(agents: &[AgentView]) -> Vec<AgentPlace> {
    let mut sorted: Vec<&AgentView> = agents.iter().filter(|a| !a.simulated).collect();
    sorted.sort_by_key(|a| a.agent_id);
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut out = Vec::new();
    for a in sorted {
        let Some(p) = &a.placement else { continue };
        for ip in &p.addresses {
            out.push(AgentPlace {
                ip: *ip,
                host: a.host_name.clone(),
                subnet: some(&p.subnet_id),
                vpc: some(&p.vpc_id),
                az: some(&p.az),
                region: some(&p.region),
            });
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::Category;
    use crate::pipeline::AgentPlacement;
    use crate::topology::Topology;

    const TOPO: &str = include_str!("../../examples/topology.toml");

    fn agent(id: u64, host: &str, ip: &str, subnet: &str) -> AgentView {
        AgentView {
            agent_id: id,
            host_name: host.into(),
            agent_version: "nfm-agent/0.1.0".into(),
            epoch: 1,
            transport: "udp".into(),
            simulated: false,
            capabilities: 0,
            interval_ms: 5000,
            last_seen_ms: 0,
            frames: 1,
            records: 0,
            lost: 0,
            duplicates: 0,
            skew_aligned: 0,
            misaligned: 0,
            rebucketed: 0,
            rejected: Default::default(),
            stats: None,
            goodbye: None,
            placement: Some(Box::new(AgentPlacement {
                instance_id: format!("i-{id}"),
                region: "us-east-1".into(),
                az: "use1-az1".into(),
                subnet_id: subnet.into(),
                vpc_id: "vpc-new".into(),
                addresses: vec![ip.parse().unwrap()],
            })),
        }
    }

    #[test]
    fn test_agents_place_their_addresses_and_the_file_wins() {
        let base = Topology::parse(TOPO).unwrap();
        // 10.9.0.5 is in no VPC of the file; 10.0.1.10 is (web-1 in subnet-app-a).
        let agents = vec![
            agent(7, "new-1", "10.9.0.5", "subnet-new"),
            agent(3, "impostor", "10.0.1.10", "subnet-new"),
            agent(9, "late", "10.9.0.5", "subnet-other"),
        ];
        let t = place(&base, agent_places(&agents)).unwrap();
        let e = t.resolve("10.9.0.5".parse().unwrap());
        assert_eq!(
            (e.host, e.subnet, e.vpc, e.az, e.region),
            (
                Some("new-1"),
                Some("subnet-new"),
                Some("vpc-new"),
                Some("use1-az1"),
                Some("us-east-1")
            ),
            "the lower agent id wins an address"
        );
        let web = t.resolve("10.0.1.10".parse().unwrap());
        assert_eq!(
            (web.host, web.subnet),
            (Some("web-1"), Some("subnet-app-a"))
        );
        // Unplaced before, a classified flow now.
        let r: std::net::IpAddr = "10.0.1.11".parse().unwrap();
        assert_eq!(
            base.classify("10.9.0.5".parse().unwrap(), r),
            Category::Unclassified
        );
        assert_eq!(
            t.classify("10.9.0.5".parse().unwrap(), r),
            Category::InterVpc
        );
        let mut sim = agent(1, "sim", "10.9.0.6", "subnet-x");
        sim.simulated = true;
        assert!(agent_places(&[sim]).is_empty());
    }
}
