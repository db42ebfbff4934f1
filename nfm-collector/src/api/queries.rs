//! Query handlers: workload insights, verdicts, a monitor's overview, historical explorer and
//! topology, and the topology itself, answered from the API actor's copy of the summaries.

use super::{num, Api, ApiError};
use crate::http::Reply;
use crate::model::{Category, ComponentId, Verdict};
use crate::summary::{Counters, Metric};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

fn counters_json(c: &Counters) -> Value {
    json!({
        "data_transferred": c.bytes,
        "retransmissions": c.retransmissions,
        "timeouts": c.timeouts,
        "round_trip_time_us": if c.rtt_count > 0 { Value::from(c.rtt_us()) } else { Value::Null },
        "rtt_samples": c.rtt_count,
        "records": c.records,
        // A counter pinned at 2^64 − 1: the value is a floor, not a sum.
        "overflowed": c.overflowed(),
    })
}

impl Api {
    pub(super) fn insights(&self, p: &HashMap<String, String>) -> Result<Reply, ApiError> {
        let metric = Metric::parse(
            p.get("metric")
                .map(String::as_str)
                .unwrap_or("data-transferred"),
        )?;
        let category = match p.get("category").filter(|c| !c.is_empty() && *c != "all") {
            Some(c) => Some(c.parse::<Category>()?),
            None => None,
        };
        let limit = num(p, "limit")?.unwrap_or(10).clamp(1, 1000) as usize;
        let plan = self.plan(p)?;
        let (from, to) = (plan.from, plan.to);
        type Key = (IpAddr, IpAddr, u16, bool);
        let mut flows: HashMap<Key, (Counters, crate::summary::TopFlow, u64, u64)> = HashMap::new();
        let mut totals: BTreeMap<Category, Counters> = BTreeMap::new();
        // Intervals (distinct raw starts; a rollup counts the intervals it holds) and the raw
        // interval length seen.
        let mut starts = std::collections::HashSet::new();
        let mut rolled = 0;
        let mut raw_ms = None;
        self.visit_range(plan.level, from, to, &mut |it| {
            let s = it.summary;
            if it.level == crate::rollup::Level::Raw {
                starts.insert(s.start_ms);
                raw_ms.get_or_insert(s.end_ms - s.start_ms);
            } else {
                rolled += it.intervals;
            }
            for (c, v) in &s.categories {
                if category.is_none_or(|x| x == *c) {
                    totals.entry(*c).or_default().add(v);
                }
            }
            for f in &s.top {
                if category.is_some_and(|c| c != f.category) {
                    continue;
                }
                let e = flows
                    .entry((f.local, f.remote, f.port, f.server))
                    .or_insert_with(|| (Counters::default(), f.clone(), 0, 0));
                e.0.add(&f.counters);
                if e.1.path != f.path {
                    e.1 = f.clone();
                }
                // Intervals it was among the top contributors (a rollup's: at least one).
                e.2 += 1;
                e.3 += f.degraded as u64;
            }
        })?;
        let intervals = starts.len() as u64 + rolled;
        let mut list: Vec<_> = flows.into_values().collect();
        list.sort_by_key(|x| std::cmp::Reverse(x.0.value(metric)));
        list.retain(|x| x.0.value(metric) > 0);
        list.truncate(limit);
        let contributors: Vec<Value> = list
            .iter()
            .map(|(c, f, n, d)| {
                json!({
                    "local": f.local, "remote": f.remote, "port": f.port, "server": f.server,
                    "agent_id": f.agent_id, "category": f.category, "value": c.value(metric),
                    "counters": counters_json(c), "path": f.path, "intervals": n,
                    "degraded_intervals": d,
                })
            })
            .collect();
        let totals: BTreeMap<&str, Value> = totals
            .iter()
            .map(|(c, v)| (c.as_str(), counters_json(v)))
            .collect();
        let mut v = json!({
            "metric": metric, "category": category, "from": from, "to": to,
            "intervals": intervals, "contributors": contributors, "totals": totals,
        });
        plan.describe(v.as_object_mut().expect("object"), raw_ms);
        Ok(Reply::json(200, &v))
    }

    pub(super) fn verdicts(&self, p: &HashMap<String, String>) -> Result<Reply, ApiError> {
        let (from, to) = self.window(p)?;
        let v: Vec<&Verdict> = self
            .in_window(from, to)
            .flat_map(|s| s.verdicts.iter())
            .collect();
        Ok(Reply::json(
            200,
            &json!({"from": from, "to": to, "verdicts": v}),
        ))
    }

    /// Incidents in the window: verdicts grouped by component and `first_seen_ms` (the
    /// evaluator keeps one `first_seen_ms` per incident through its flaps). An incident is
    /// `ongoing` while the newest interval is within the hold-down of its last naming, else
    /// `resolved`; newest first.
    pub(super) fn incidents(&self, p: &HashMap<String, String>) -> Result<Reply, ApiError> {
        let (from, to) = self.window(p)?;
        let newest_end = self.history.values().next_back().map_or(0, |s| s.end_ms);
        // (component, first seen) -> (verdicts, last interval start, its end, flaps, confidence)
        let mut by: BTreeMap<(String, u64), IncidentAcc> = BTreeMap::new();
        for s in self.in_window(from, to) {
            for v in &s.verdicts {
                let a = by
                    .entry((v.component.to_string(), v.first_seen_ms))
                    .or_insert_with(|| IncidentAcc {
                        kind: v.component.kind,
                        blame: v.blame,
                        ..IncidentAcc::default()
                    });
                a.intervals += 1;
                if v.interval_start_ms >= a.last_start_ms {
                    a.last_start_ms = v.interval_start_ms;
                    a.last_end_ms = s.end_ms;
                }
                a.confidence = a.confidence.max(v.confidence);
                a.degraded_flows = a.degraded_flows.max(v.degraded_flows);
                let f = v.evidence.iter().find(|e| e.metric == "flaps");
                a.flaps = a.flaps.max(f.map_or(0, |e| e.observed as u64));
            }
        }
        let mut list: Vec<serde_json::Value> = by
            .into_iter()
            .map(|((component, first_seen_ms), a)| {
                let len = a.last_end_ms.saturating_sub(a.last_start_ms);
                let hold = self.hold_down.ms_of(len);
                let ongoing = newest_end <= a.last_end_ms.saturating_add(hold);
                json!({
                    "component": component,
                    "kind": a.kind,
                    "blame": a.blame,
                    "first_seen_ms": first_seen_ms,
                    "last_named_ms": a.last_start_ms,
                    "intervals_named": a.intervals,
                    "flaps": a.flaps,
                    "max_confidence": a.confidence,
                    "max_degraded_flows": a.degraded_flows,
                    "state": if ongoing { "ongoing" } else { "resolved" },
                })
            })
            .collect();
        list.sort_by_key(|i| std::cmp::Reverse(i["first_seen_ms"].as_u64().unwrap_or(0)));
        Ok(Reply::json(
            200,
            &json!({"from": from, "to": to, "hold_down_min_ms": self.hold_down.min_ms, "hold_down_intervals": self.hold_down.intervals, "incidents": list}),
        ))
    }

    pub(super) fn overview(
        &self,
        name: &str,
        p: &HashMap<String, String>,
    ) -> Result<Reply, ApiError> {
        let plan = self.plan(p)?;
        let (from, to) = (plan.from, plan.to);
        let mut total = Counters::default();
        // One point per start (a late amendment read from disk adds to its interval's point).
        let mut points: BTreeMap<u64, OverviewPoint> = BTreeMap::new();
        let mut raw_ms = None;
        self.visit_range(plan.level, from, to, &mut |it| {
            let s = it.summary;
            let Some(m) = s.monitors.iter().find(|m| m.monitor == name) else {
                return;
            };
            if it.level == crate::rollup::Level::Raw {
                raw_ms.get_or_insert(s.end_ms - s.start_ms);
            }
            total.add(&m.counters);
            let (evaluated, degraded) = it.health_of(name);
            let pt = points.entry(s.start_ms).or_default();
            pt.end_ms = pt.end_ms.max(s.end_ms);
            pt.counters.add(&m.counters);
            pt.flows = pt.flows.max(m.flows);
            pt.indicator = pt.indicator.max(m.health_indicator);
            pt.simulated |= s.simulated;
            pt.intervals += it.intervals;
            pt.evaluated += evaluated;
            pt.degraded += degraded;
        })?;
        let points: Vec<Value> = points
            .into_iter()
            .map(|(start, p)| {
                let mut pt = counters_json(&p.counters);
                let o = pt.as_object_mut().expect("object");
                o.insert("start_ms".into(), start.into());
                o.insert("end_ms".into(), p.end_ms.into());
                o.insert("flows".into(), p.flows.into());
                // The maximum over the point's intervals (1 when any was degraded).
                o.insert("health_indicator".into(), json!(p.indicator));
                o.insert("intervals".into(), p.intervals.into());
                o.insert("degraded_intervals".into(), p.degraded.into());
                o.insert("evaluated_intervals".into(), p.evaluated.into());
                o.insert("simulated".into(), p.simulated.into());
                pt
            })
            .collect();
        let mut v = json!({"monitor": name, "from": from, "to": to, "points": points, "totals": counters_json(&total)});
        plan.describe(v.as_object_mut().expect("object"), raw_ms);
        Ok(Reply::json(200, &v))
    }

    pub(super) fn history_view(
        &self,
        name: &str,
        p: &HashMap<String, String>,
    ) -> Result<Reply, ApiError> {
        let metric = Metric::parse(
            p.get("metric")
                .map(String::as_str)
                .unwrap_or("data-transferred"),
        )?;
        let plan = self.plan(p)?;
        let (from, to) = (plan.from, plan.to);
        let bucket = num(p, "bucket")?.unwrap_or(60_000);
        if bucket == 0 {
            return Err(ApiError::BadRequest(
                "`bucket` must be at least 1 (milliseconds)".into(),
            ));
        }
        let limit = num(p, "limit")?.unwrap_or(10).clamp(1, 1000) as usize;
        let mut buckets: BTreeMap<u64, HashMap<(String, String), Counters>> = BTreeMap::new();
        let mut raw_ms = None;
        self.visit_range(plan.level, from, to, &mut |it| {
            let s = it.summary;
            let Some(m) = s.monitors.iter().find(|m| m.monitor == name) else {
                return;
            };
            if it.level == crate::rollup::Level::Raw {
                raw_ms.get_or_insert(s.end_ms - s.start_ms);
            }
            let b = from + (s.start_ms.max(from) - from) / bucket * bucket;
            let e = buckets.entry(b).or_default();
            for pair in &m.pairs {
                e.entry((pair.local.clone(), pair.remote.clone()))
                    .or_default()
                    .add(&pair.counters);
            }
        })?;
        let out: Vec<Value> = buckets
            .into_iter()
            .map(|(b, pairs)| {
                let mut v: Vec<_> = pairs.into_iter().collect();
                v.sort_by_key(|x| std::cmp::Reverse(x.1.value(metric)));
                v.truncate(limit);
                json!({
                    "start_ms": b,
                    "pairs": v.iter().map(|((l, r), c)| json!({
                        "local": l, "remote": r, "value": c.value(metric), "counters": counters_json(c)
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut v = json!({"monitor": name, "metric": metric, "from": from, "to": to, "bucket_ms": bucket, "buckets": out});
        plan.describe(v.as_object_mut().expect("object"), raw_ms);
        Ok(Reply::json(200, &v))
    }

    pub(super) fn monitor_topology(
        &self,
        name: &str,
        p: &HashMap<String, String>,
    ) -> Result<Reply, ApiError> {
        let (from, to) = self.window(p)?;
        type Key = (IpAddr, IpAddr, u16, bool);
        let mut flows: BTreeMap<Key, (Counters, &crate::summary::TopFlow, u64)> = BTreeMap::new();
        let mut verdicts: Vec<&Verdict> = Vec::new();
        for s in self.in_window(from, to) {
            let Some(m) = s.monitors.iter().find(|m| m.monitor == name) else {
                continue;
            };
            let mut on_paths: std::collections::HashSet<&ComponentId> = Default::default();
            for f in &m.flows_top {
                let e = flows
                    .entry((f.local, f.remote, f.port, f.server))
                    .or_insert((Counters::default(), f, 0));
                e.0.add(&f.counters);
                e.1 = f;
                e.2 += f.degraded as u64;
                on_paths.extend(f.path.iter());
            }
            verdicts.extend(
                s.verdicts
                    .iter()
                    .filter(|v| on_paths.contains(&v.component)),
            );
        }
        let mut comps: BTreeMap<&ComponentId, (u64, u64)> = BTreeMap::new();
        for (_, f, d) in flows.values() {
            for c in &f.path {
                let e = comps.entry(c).or_default();
                e.0 += 1;
                e.1 += (*d > 0) as u64;
            }
        }
        let flows: Vec<Value> = flows
            .values()
            .map(|(c, f, d)| {
                json!({
                    "local": f.local, "remote": f.remote, "port": f.port, "server": f.server,
                    "category": f.category, "path": f.path, "counters": counters_json(c),
                    "degraded_intervals": d,
                })
            })
            .collect();
        let components: Vec<Value> = comps
            .iter()
            .map(|(id, (n, d))| {
                json!({
                    "id": id, "kind": id.kind, "flows": n, "degraded_flows": d,
                    "verdicts": verdicts.iter().filter(|v| &&v.component == id).count(),
                })
            })
            .collect();
        Ok(Reply::json(
            200,
            &json!({"monitor": name, "from": from, "to": to, "flows": flows, "components": components, "verdicts": verdicts}),
        ))
    }

    pub(super) fn topology_json(&self) -> Reply {
        let t = &self.topology;
        let latest_verdicts: Vec<&Verdict> = self
            .history
            .values()
            .next_back()
            .map(|s| s.verdicts.iter().collect())
            .unwrap_or_default();
        Reply::json(
            200,
            &json!({
                "regions": t.regions().iter().map(|r| &r.name).collect::<Vec<_>>(),
                "azs": t.azs().iter().map(|a| json!({"name": a.name, "region": a.region})).collect::<Vec<_>>(),
                "vpcs": t.vpcs().iter().map(|v| json!({"id": v.id, "region": v.region, "cidrs": v.cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "subnets": t.subnets().iter().map(|s| json!({"id": s.id, "vpc": s.vpc, "az": s.az, "cidr": s.cidr.to_string()})).collect::<Vec<_>>(),
                "gateways": t.gateways().iter().map(|g| json!({"id": g.id, "kind": g.kind, "vpcs": g.vpcs})).collect::<Vec<_>>(),
                "services": t.services().iter().map(|s| json!({"name": s.name, "kind": s.kind, "region": s.region, "prefixes": s.prefixes.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "ports": s.ports})).collect::<Vec<_>>(),
                "hosts": t.hosts().iter().map(|h| json!({"name": h.name, "ip": h.ip, "instance_id": h.instance_id})).collect::<Vec<_>>(),
                "verdicts": latest_verdicts,
            }),
        )
    }
}

/// One overview point: a raw interval or a rollup, with late amendments added in.
#[derive(Debug, Default)]
struct OverviewPoint {
    end_ms: u64,
    counters: Counters,
    flows: u64,
    indicator: Option<u8>,
    simulated: bool,
    intervals: u64,
    evaluated: u64,
    degraded: u64,
}

/// One incident's sums over its verdicts (`/api/incidents`).
#[derive(Debug)]
struct IncidentAcc {
    kind: crate::model::ComponentKind,
    blame: crate::model::Blame,
    intervals: u64,
    last_start_ms: u64,
    last_end_ms: u64,
    flaps: u64,
    confidence: f64,
    degraded_flows: u64,
}

impl Default for IncidentAcc {
    fn default() -> Self {
        IncidentAcc {
            kind: crate::model::ComponentKind::Host,
            blame: crate::model::Blame::Endpoint,
            intervals: 0,
            last_start_ms: 0,
            last_end_ms: 0,
            flaps: 0,
            confidence: 0.0,
            degraded_flows: 0,
        }
    }
}
