//! The API actor: answers HTTP requests (JSON, docs/api.md) and `/metrics` from its own copy of
//! the durable interval summaries, the monitors, the topology and ingest's latest snapshot.
//!
//! Why an actor: it owns every piece of state it serves and receives updates as messages, so a
//! query never takes a lock on the data path. `crate::http` parses HTTP on per-connection threads; each
//! request is handed to this actor as a message and answered here. All routing is in
//! [`Api::route`]; `GET /` and `/ui/...` are delegated to [`crate::ui::route`] (the dashboard).

use crate::http::Reply;
use crate::metrics::{Chan, Metrics};
use crate::model::{Category, ComponentId, Verdict};
use crate::monitor::{parse_monitors, Monitor};
use crate::pipeline::AggMsg;
use crate::pipeline::ResolverMsg;
use crate::pipeline::{ApiMsg, IngestSnapshot};
use crate::summary::{Counters, IntervalSummary, Metric};
use crate::topology::Topology;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

pub struct ApiConfig {
    /// Required as `Authorization: Bearer TOKEN` on every request when set.
    pub token: Option<String>,
    pub topology_path: Option<PathBuf>,
    /// `monitors.json` in the data directory: monitors created through the API.
    pub monitors_path: Option<PathBuf>,
    pub retention_ms: u64,
    /// Intervals kept in memory for queries (older ones stay on disk until retention).
    pub max_history_intervals: usize,
    /// Estimated bytes of summaries kept in memory; the oldest are evicted beyond it (they
    /// stay on disk until retention and come back on restart).
    pub max_history_bytes: usize,
    /// Top contributors kept per metric when a late amendment is folded into a summary.
    pub top_k: usize,
}

/// Running totals per monitor for `/metrics` counters.
#[derive(Debug, Default, Clone)]
struct MonitorTotals {
    counters: Counters,
    last_rtt_us: Option<u64>,
    last_indicator: Option<u8>,
}

pub struct Api {
    cfg: ApiConfig,
    history: BTreeMap<u64, Arc<IntervalSummary>>,
    history_bytes: usize,
    monitors: BTreeMap<String, Monitor>,
    totals: HashMap<String, MonitorTotals>,
    topology: Arc<Topology>,
    ingest: IngestSnapshot,
    metrics: Arc<Metrics>,
    to_resolver: SyncSender<ResolverMsg>,
    to_aggregator: SyncSender<AggMsg>,
    started_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Query string parameters (percent-decoded).
fn params(query: &str) -> Result<HashMap<String, String>, String> {
    let mut m = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("parameter `{s}` is not valid UTF-8"))
        };
        m.insert(dec(k)?, dec(v)?);
    }
    Ok(m)
}

fn num(p: &HashMap<String, String>, k: &str) -> Result<Option<u64>, String> {
    match p.get(k) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("parameter `{k}` must be a non-negative integer, got `{v}`")),
    }
}

fn counters_json(c: &Counters) -> Value {
    json!({
        "data_transferred": c.bytes,
        "retransmissions": c.retransmissions,
        "timeouts": c.timeouts,
        "round_trip_time_us": if c.rtt_count > 0 { Value::from(c.rtt_us()) } else { Value::Null },
        "rtt_samples": c.rtt_count,
        "records": c.records,
    })
}

impl Api {
    pub fn new(
        cfg: ApiConfig,
        topology: Arc<Topology>,
        monitors: Vec<Monitor>,
        metrics: Arc<Metrics>,
        to_resolver: SyncSender<ResolverMsg>,
        to_aggregator: SyncSender<AggMsg>,
    ) -> Api {
        Api {
            cfg,
            history: BTreeMap::new(),
            history_bytes: 0,
            monitors: monitors.into_iter().map(|m| (m.name.clone(), m)).collect(),
            totals: HashMap::new(),
            topology,
            ingest: IngestSnapshot::default(),
            metrics,
            to_resolver,
            to_aggregator,
            started_ms: now_ms(),
        }
    }

    pub fn monitors(&self) -> Vec<Monitor> {
        self.monitors.values().cloned().collect()
    }

    /// A summary for an interval already held is a late amendment (the aggregator closes an
    /// interval once; records arriving after that come as a second summary): it is folded
    /// into the one held, live and when the history is replayed alike.
    pub fn add_interval(&mut self, mut s: Arc<IntervalSummary>) {
        let amends = self.history.get(&s.start_ms).cloned();
        // The "latest" gauges follow the newest interval only: not an amendment, not an older
        // interval arriving after newer ones (a late amendment whose original is no longer held).
        let newest = self
            .history
            .keys()
            .next_back()
            .is_none_or(|&n| s.start_ms >= n);
        for m in &s.monitors {
            let t = self.totals.entry(m.monitor.clone()).or_default();
            t.counters.add(&m.counters);
            if amends.is_none() && newest {
                t.last_rtt_us = (m.counters.rtt_count > 0).then(|| m.counters.rtt_us());
                t.last_indicator = m.health_indicator;
            }
        }
        if let Some(old) = amends {
            let mut merged = (*old).clone();
            merged.absorb(&s, self.cfg.top_k);
            s = Arc::new(merged);
        }
        self.history_bytes += summary_bytes(&s);
        if let Some(old) = self.history.insert(s.start_ms, s) {
            self.history_bytes = self.history_bytes.saturating_sub(summary_bytes(&old));
        }
        let newest = self.history.keys().next_back().copied().unwrap_or(0);
        let cutoff = newest.saturating_sub(self.cfg.retention_ms);
        while let Some((&k, _)) = self.history.iter().next() {
            if k >= cutoff
                && self.history.len() <= self.cfg.max_history_intervals
                && (self.history_bytes <= self.cfg.max_history_bytes || self.history.len() == 1)
            {
                break;
            }
            if let Some(old) = self.history.remove(&k) {
                self.history_bytes = self.history_bytes.saturating_sub(summary_bytes(&old));
            }
        }
        self.metrics
            .history_bytes
            .store(self.history_bytes as u64, Ordering::Relaxed);
        self.metrics
            .history_intervals
            .store(self.history.len() as u64, Ordering::Relaxed);
    }

    pub fn set_ingest(&mut self, s: IngestSnapshot) {
        self.ingest = s;
    }

    fn publish_monitors(&mut self) {
        let list = Arc::new(self.monitors());
        self.metrics.sent(Chan::Aggregator);
        let _ = self.to_aggregator.send(AggMsg::Monitors(list));
        if let Some(p) = &self.cfg.monitors_path {
            let tmp = p.with_extension("json.tmp");
            let body = serde_json::to_vec_pretty(&self.monitors()).unwrap_or_default();
            let r = std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, p));
            if let Err(e) = r {
                log::warn!("api: cannot save monitors to {}: {e}", p.display());
            }
        }
    }

    /// Reloads the topology file; on error the old topology stays and the error is returned.
    pub fn reload_topology(&mut self) -> Result<(), String> {
        let Some(path) = self.cfg.topology_path.clone() else {
            return Err("no topology file was given (--topology)".into());
        };
        match Topology::load(&path) {
            Ok(t) => {
                let t = Arc::new(t);
                self.topology = t.clone();
                self.metrics.sent(Chan::Resolver);
                let _ = self.to_resolver.send(ResolverMsg::Topology(t));
                self.metrics
                    .topology_reloads
                    .fetch_add(1, Ordering::Relaxed);
                log::info!("api: topology reloaded from {}", path.display());
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .topology_reload_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("api: topology reload refused, keeping the old one: {e}");
                Err(e.to_string())
            }
        }
    }

    /// Default window: the last hour up to the newest interval.
    fn window(&self, p: &HashMap<String, String>) -> Result<(u64, u64), String> {
        let newest = self
            .history
            .values()
            .next_back()
            .map(|s| s.end_ms)
            .unwrap_or_else(now_ms);
        let to = num(p, "to")?.unwrap_or(newest.saturating_add(1));
        let from = num(p, "from")?.unwrap_or(to.saturating_sub(3_600_000));
        if from > to {
            return Err(format!("`from` ({from}) is after `to` ({to})"));
        }
        Ok((from, to))
    }

    fn in_window(&self, from: u64, to: u64) -> impl Iterator<Item = &Arc<IntervalSummary>> {
        self.history.range(from..to).map(|(_, s)| s)
    }

    /// The one place requests are routed. `auth`: the Authorization header, if any.
    pub fn route(&mut self, method: &str, url: &str, auth: Option<&str>, body: &[u8]) -> Reply {
        if let Some(tok) = &self.cfg.token {
            let ok = auth
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), tok.as_bytes()));
            if !ok {
                return Reply::error(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                );
            }
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let p = match params(query) {
            Ok(p) => p,
            Err(e) => return Reply::error(400, e),
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let r = match (method, segs.as_slice()) {
            ("GET", ["metrics"]) => Ok(Reply::text(200, self.prometheus())),
            ("GET", ["api", "status"]) => Ok(self.status()),
            ("GET", ["api", "insights"]) => self.insights(&p),
            ("GET", ["api", "verdicts"]) => self.verdicts(&p),
            ("GET", ["api", "agents"]) => Ok(Reply::json(200, &self.ingest)),
            ("GET", ["api", "topology"]) => Ok(self.topology_json()),
            ("POST", ["api", "topology", "reload"]) => match self.reload_topology() {
                Ok(()) => Ok(Reply::json(200, &json!({"reloaded": true}))),
                Err(e) => Err((400, e)),
            }
            .map_or_else(|(s, e)| Ok(Reply::error(s, e)), Ok),
            ("GET", ["api", "monitors"]) => Ok(Reply::json(200, &self.monitors())),
            ("POST", ["api", "monitors"]) => self.create_monitor(body),
            ("GET", ["api", "monitors", name]) => self
                .monitors
                .get(*name)
                .map(|m| Reply::json(200, m))
                .ok_or_else(|| format!("404:unknown monitor `{name}`")),
            ("PUT", ["api", "monitors", name]) => self.put_monitor(name, body),
            ("DELETE", ["api", "monitors", name]) => {
                if self.monitors.remove(*name).is_some() {
                    self.publish_monitors();
                    Ok(Reply::json(200, &json!({"deleted": name})))
                } else {
                    Err(format!("404:unknown monitor `{name}`"))
                }
            }
            ("GET", ["api", "monitors", name, what]) => {
                if !self.monitors.contains_key(*name) {
                    Err(format!("404:unknown monitor `{name}`"))
                } else {
                    match *what {
                        "overview" => self.overview(name, &p),
                        "history" => self.history_view(name, &p),
                        "topology" => self.monitor_topology(name, &p),
                        _ => Err(format!("404:no such endpoint `{path}`")),
                    }
                }
            }
            _ => match crate::ui::route(method, path) {
                Some(r) => Ok(r),
                None => Err(format!("404:no such endpoint `{method} {path}`")),
            },
        };
        match r {
            Ok(r) => r,
            Err(e) => match e.strip_prefix("404:") {
                Some(m) => Reply::error(404, m),
                None => match e.strip_prefix("409:") {
                    Some(m) => Reply::error(409, m),
                    None => Reply::error(400, e),
                },
            },
        }
    }

    fn status(&self) -> Reply {
        Reply::json(
            200,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "started_ms": self.started_ms,
                "intervals": self.history.len(),
                "newest_interval_ms": self.history.keys().next_back(),
                "monitors": self.monitors.len(),
                "agents": self.ingest.agents.len(),
            }),
        )
    }

    fn parse_monitor(body: &[u8]) -> Result<Monitor, String> {
        serde_json::from_slice::<Monitor>(body).map_err(|e| format!("bad monitor JSON: {e}"))
    }

    fn create_monitor(&mut self, body: &[u8]) -> Result<Reply, String> {
        let m = Api::parse_monitor(body)?;
        m.validate(&self.topology)?;
        if self.monitors.contains_key(&m.name) {
            return Err(format!(
                "409:monitor `{}` exists; use PUT to change it",
                m.name
            ));
        }
        if self.monitors.len() >= 64 {
            return Err("at most 64 monitors".into());
        }
        self.monitors.insert(m.name.clone(), m.clone());
        self.publish_monitors();
        Ok(Reply::json(201, &m))
    }

    fn put_monitor(&mut self, name: &str, body: &[u8]) -> Result<Reply, String> {
        let mut v: Value =
            serde_json::from_slice(body).map_err(|e| format!("bad monitor JSON: {e}"))?;
        if let Some(o) = v.as_object_mut() {
            o.entry("name").or_insert_with(|| Value::from(name));
        }
        let m: Monitor = serde_json::from_value(v).map_err(|e| format!("bad monitor JSON: {e}"))?;
        if m.name != name {
            return Err(format!(
                "the body names monitor `{}` but the URL `{name}`",
                m.name
            ));
        }
        if !self.monitors.contains_key(name) {
            return Err(format!("404:unknown monitor `{name}`"));
        }
        m.validate(&self.topology)?;
        self.monitors.insert(m.name.clone(), m.clone());
        self.publish_monitors();
        Ok(Reply::json(200, &m))
    }

    fn insights(&self, p: &HashMap<String, String>) -> Result<Reply, String> {
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
        let (from, to) = self.window(p)?;
        type Key = (IpAddr, IpAddr, u16, bool);
        let mut flows: HashMap<Key, (Counters, &crate::summary::TopFlow, u64, u64)> =
            HashMap::new();
        let mut totals: BTreeMap<Category, Counters> = BTreeMap::new();
        let mut intervals = 0;
        for s in self.in_window(from, to) {
            intervals += 1;
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
                    .or_insert((Counters::default(), f, 0, 0));
                e.0.add(&f.counters);
                e.1 = f;
                e.2 += 1;
                e.3 += f.degraded as u64;
            }
        }
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
        Ok(Reply::json(
            200,
            &json!({
                "metric": metric, "category": category, "from": from, "to": to,
                "intervals": intervals, "contributors": contributors, "totals": totals,
            }),
        ))
    }

    fn verdicts(&self, p: &HashMap<String, String>) -> Result<Reply, String> {
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

    fn overview(&self, name: &str, p: &HashMap<String, String>) -> Result<Reply, String> {
        let (from, to) = self.window(p)?;
        let mut total = Counters::default();
        let mut points = Vec::new();
        for s in self.in_window(from, to) {
            let Some(m) = s.monitors.iter().find(|m| m.monitor == name) else {
                continue;
            };
            total.add(&m.counters);
            let mut pt = counters_json(&m.counters);
            let o = pt.as_object_mut().expect("object");
            o.insert("start_ms".into(), s.start_ms.into());
            o.insert("end_ms".into(), s.end_ms.into());
            o.insert("flows".into(), m.flows.into());
            o.insert("health_indicator".into(), json!(m.health_indicator));
            o.insert("simulated".into(), s.simulated.into());
            points.push(pt);
        }
        Ok(Reply::json(
            200,
            &json!({"monitor": name, "from": from, "to": to, "points": points, "totals": counters_json(&total)}),
        ))
    }

    fn history_view(&self, name: &str, p: &HashMap<String, String>) -> Result<Reply, String> {
        let metric = Metric::parse(
            p.get("metric")
                .map(String::as_str)
                .unwrap_or("data-transferred"),
        )?;
        let (from, to) = self.window(p)?;
        let bucket = num(p, "bucket")?.unwrap_or(60_000);
        if bucket == 0 {
            return Err("`bucket` must be at least 1 (milliseconds)".into());
        }
        let limit = num(p, "limit")?.unwrap_or(10).clamp(1, 1000) as usize;
        let mut buckets: BTreeMap<u64, HashMap<(String, String), Counters>> = BTreeMap::new();
        for s in self.in_window(from, to) {
            let Some(m) = s.monitors.iter().find(|m| m.monitor == name) else {
                continue;
            };
            let b = from + (s.start_ms - from) / bucket * bucket;
            let e = buckets.entry(b).or_default();
            for pair in &m.pairs {
                e.entry((pair.local.clone(), pair.remote.clone()))
                    .or_default()
                    .add(&pair.counters);
            }
        }
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
        Ok(Reply::json(
            200,
            &json!({"monitor": name, "metric": metric, "from": from, "to": to, "bucket_ms": bucket, "buckets": out}),
        ))
    }

    fn monitor_topology(&self, name: &str, p: &HashMap<String, String>) -> Result<Reply, String> {
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

    fn topology_json(&self) -> Reply {
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

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        let mut o = String::new();
        let m = &self.metrics;
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let family =
            |o: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
                let _ = writeln!(o, "# HELP {name} {help}");
                let _ = writeln!(o, "# TYPE {name} {kind}");
                for (labels, v) in rows {
                    if labels.is_empty() {
                        let _ = writeln!(o, "{name} {v}");
                    } else {
                        let _ = writeln!(o, "{name}{{{labels}}} {v}");
                    }
                }
            };
        let mut names: Vec<&String> = self.monitors.keys().collect();
        names.sort();
        let per_mon = |f: &dyn Fn(&MonitorTotals) -> Option<String>| -> Vec<(String, String)> {
            names
                .iter()
                .filter_map(|n| {
                    let t = self.totals.get(*n).cloned().unwrap_or_default();
                    f(&t).map(|v| (format!("monitor=\"{}\"", esc(n)), v))
                })
                .collect()
        };
        family(
            &mut o,
            "nfm_monitor_data_transferred_bytes_total",
            "counter",
            "Bytes sent and received by the monitor's flows, over closed intervals.",
            per_mon(&|t| Some(t.counters.bytes.to_string())),
        );
        family(
            &mut o,
            "nfm_monitor_retransmissions_total",
            "counter",
            "TCP retransmissions of the monitor's flows.",
            per_mon(&|t| Some(t.counters.retransmissions.to_string())),
        );
        family(
            &mut o,
            "nfm_monitor_timeouts_total",
            "counter",
            "TCP retransmission timeouts of the monitor's flows.",
            per_mon(&|t| Some(t.counters.timeouts.to_string())),
        );
        family(
            &mut o,
            "nfm_monitor_round_trip_time_seconds",
            "gauge",
            "Mean RTT of the monitor's flows in the latest closed interval with samples.",
            per_mon(&|t| t.last_rtt_us.map(|v| format!("{:.6}", v as f64 / 1e6))),
        );
        family(&mut o, "nfm_monitor_health_indicator", "gauge",
            "Network Health Indicator of the latest closed interval (1 = a network component is degraded), as the health evaluator reported it.",
            per_mon(&|t| t.last_indicator.map(|v| v.to_string())));
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
        family(
            &mut o,
            "nfm_frames_received_total",
            "counter",
            "Frames received, by transport.",
            vec![
                ("transport=\"udp\"".into(), c(&m.frames_udp)),
                ("transport=\"tcp\"".into(), c(&m.frames_tcp)),
            ],
        );
        family(
            &mut o,
            "nfm_frames_rejected_total",
            "counter",
            "Frames refused, by reason.",
            self.ingest
                .rejected
                .iter()
                .map(|(r, v)| (format!("reason=\"{}\"", esc(r)), v.to_string()))
                .collect(),
        );
        family(
            &mut o,
            "nfm_frames_duplicate_total",
            "counter",
            "Resent frames dropped by dedupe.",
            vec![(String::new(), c(&m.duplicates))],
        );
        family(
            &mut o,
            "nfm_frames_lost_total",
            "counter",
            "Sequence gaps: frames never received.",
            vec![(String::new(), c(&m.lost_frames))],
        );
        family(
            &mut o,
            "nfm_received_bytes_total",
            "counter",
            "Frame bytes received.",
            vec![(String::new(), c(&m.bytes_received))],
        );
        family(
            &mut o,
            "nfm_records_received_total",
            "counter",
            "Flow records accepted.",
            vec![(String::new(), c(&m.records_received))],
        );
        family(
            &mut o,
            "nfm_records_aggregated_total",
            "counter",
            "Flow records aggregated.",
            vec![(String::new(), c(&m.aggregated_records))],
        );
        family(
            &mut o,
            "nfm_records_late_total",
            "counter",
            "Records for already closed intervals, added to them as late amendments.",
            vec![(String::new(), c(&m.late_records))],
        );
        family(
            &mut o,
            "nfm_records_too_late_total",
            "counter",
            "Records too far behind the closed intervals to amend them, dropped.",
            vec![(String::new(), c(&m.too_late_records))],
        );
        family(
            &mut o,
            "nfm_records_capped_total",
            "counter",
            "Records folded into the other bucket by cardinality caps.",
            vec![(String::new(), c(&m.capped_records))],
        );
        family(
            &mut o,
            "nfm_backpressure_waits_total",
            "counter",
            "Times ingest waited on a full channel.",
            vec![(String::new(), c(&m.backpressure_waits))],
        );
        family(
            &mut o,
            "nfm_channel_depth",
            "gauge",
            "Messages queued between actors.",
            Chan::ALL
                .iter()
                .map(|ch| {
                    (
                        format!("channel=\"{}\"", ch.as_str()),
                        m.depth(*ch).to_string(),
                    )
                })
                .collect(),
        );
        family(
            &mut o,
            "nfm_ingest_lag_seconds",
            "gauge",
            "Wall clock minus the interval end of the latest batch.",
            vec![(
                String::new(),
                format!(
                    "{:.3}",
                    m.ingest_lag_ms.load(Ordering::Relaxed) as f64 / 1e3
                ),
            )],
        );
        family(
            &mut o,
            "nfm_tcp_connections",
            "gauge",
            "Open agent TCP connections.",
            vec![(String::new(), c(&m.tcp_connections))],
        );
        family(
            &mut o,
            "nfm_agents",
            "gauge",
            "Agents with a session.",
            vec![(String::new(), self.ingest.agents.len().to_string())],
        );
        family(
            &mut o,
            "nfm_intervals_open",
            "gauge",
            "Intervals being aggregated.",
            vec![(String::new(), c(&m.open_intervals))],
        );
        family(
            &mut o,
            "nfm_intervals_closed_total",
            "counter",
            "Intervals closed.",
            vec![(String::new(), c(&m.closed_intervals))],
        );
        family(
            &mut o,
            "nfm_health_verdicts_total",
            "counter",
            "Verdicts returned by the health evaluator.",
            vec![(String::new(), c(&m.verdicts))],
        );
        family(
            &mut o,
            "nfm_health_evaluation_seconds_total",
            "counter",
            "Time spent in the health evaluator.",
            vec![(
                String::new(),
                format!(
                    "{:.6}",
                    m.health_eval_us.load(Ordering::Relaxed) as f64 / 1e6
                ),
            )],
        );
        family(
            &mut o,
            "nfm_history_memory_bytes",
            "gauge",
            "Estimated bytes of interval summaries held in memory for queries.",
            vec![(String::new(), c(&m.history_bytes))],
        );
        family(
            &mut o,
            "nfm_history_intervals",
            "gauge",
            "Interval summaries held in memory for queries.",
            vec![(String::new(), c(&m.history_intervals))],
        );
        family(
            &mut o,
            "nfm_store_bytes",
            "gauge",
            "Bytes in the store's segment files.",
            vec![(String::new(), c(&m.store_bytes))],
        );
        family(
            &mut o,
            "nfm_store_segments",
            "gauge",
            "Segment files in the store.",
            vec![(String::new(), c(&m.store_segments))],
        );
        family(
            &mut o,
            "nfm_store_batches_total",
            "counter",
            "Batches made durable.",
            vec![(String::new(), c(&m.store_batches))],
        );
        family(
            &mut o,
            "nfm_store_summaries_total",
            "counter",
            "Interval summaries made durable.",
            vec![(String::new(), c(&m.store_summaries))],
        );
        family(
            &mut o,
            "nfm_store_dropped_batches_total",
            "counter",
            "Batches dropped unacked while the disk refused writes.",
            vec![(String::new(), c(&m.store_dropped_batches))],
        );
        family(
            &mut o,
            "nfm_store_errors_total",
            "counter",
            "Failed store writes or fsyncs.",
            vec![(String::new(), c(&m.store_errors))],
        );
        family(
            &mut o,
            "nfm_store_stalled",
            "gauge",
            "1 while the store cannot write (disk full): no acks.",
            vec![(String::new(), c(&m.store_stalled))],
        );
        family(
            &mut o,
            "nfm_topology_reloads_total",
            "counter",
            "Topology reloads, by result.",
            vec![
                ("result=\"ok\"".into(), c(&m.topology_reloads)),
                ("result=\"error\"".into(), c(&m.topology_reload_errors)),
            ],
        );
        o
    }

    fn handle_http(&mut self, req: crate::http::Request) {
        let reply = self.route(
            &req.method,
            &req.url,
            req.authorization.as_deref(),
            &req.body,
        );
        req.respond(crate::http::Response {
            status: reply.status,
            content_type: reply.content_type.to_string(),
            body: reply.body,
        });
    }

    pub fn run(mut self, rx: Receiver<ApiMsg>) {
        while let Ok(m) = rx.recv() {
            match m {
                ApiMsg::Interval(s) => self.add_interval(s),
                ApiMsg::Ingest(s) => self.set_ingest(*s),
                ApiMsg::Http(r) => self.handle_http(r),
                ApiMsg::ReloadTopology => {
                    let _ = self.reload_topology();
                }
                ApiMsg::Shutdown => break,
            }
        }
    }
}

/// Rough heap size of a summary (what the history cap counts).
fn summary_bytes(s: &IntervalSummary) -> usize {
    fn flow(f: &crate::summary::TopFlow) -> usize {
        160 + f.path.iter().map(|c| 48 + c.name.len()).sum::<usize>()
    }
    let monitors: usize = s
        .monitors
        .iter()
        .map(|m| {
            200 + m.monitor.len()
                + m.pairs
                    .iter()
                    .map(|p| 120 + p.local.len() + p.remote.len())
                    .sum::<usize>()
                + m.flows_top.iter().map(flow).sum::<usize>()
        })
        .sum();
    256 + s.top.iter().map(flow).sum::<usize>() + monitors + s.verdicts.len() * 256
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Loads monitors: the saved `monitors.json` first, then the monitors file on top (same name
/// wins from the file). Every monitor is validated against `t`.
pub fn load_monitors(
    saved: Option<&std::path::Path>,
    file: Option<&std::path::Path>,
    t: &Topology,
) -> Result<Vec<Monitor>, String> {
    let mut all: BTreeMap<String, Monitor> = BTreeMap::new();
    if let Some(p) = saved.filter(|p| p.exists()) {
        let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let list: Vec<Monitor> =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        for m in list {
            if let Err(e) = m.validate(t) {
                log::warn!(
                    "saved monitor `{}` no longer fits the topology: {e}",
                    m.name
                );
            }
            all.insert(m.name.clone(), m);
        }
    }
    if let Some(p) = file {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        for m in parse_monitors(&text)? {
            m.validate(t)
                .map_err(|e| format!("{}: monitor `{}`: {e}", p.display(), m.name))?;
            all.insert(m.name.clone(), m);
        }
    }
    Ok(all.into_values().collect())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::summary::{MonitorPoint, TopFlow};
    use std::sync::mpsc::sync_channel;

    const TOPO: &str = include_str!("../examples/topology.toml");

    fn api(token: Option<&str>) -> (Api, Receiver<ResolverMsg>, Receiver<AggMsg>) {
        let (rtx, rrx) = sync_channel(16);
        let (atx, arx) = sync_channel(16);
        let cfg = ApiConfig {
            token: token.map(String::from),
            topology_path: None,
            monitors_path: None,
            retention_ms: 7 * 86_400_000,
            max_history_intervals: 100,
            max_history_bytes: 1 << 30,
            top_k: 20,
        };
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        (
            Api::new(cfg, t, vec![], Arc::new(Metrics::default()), rtx, atx),
            rrx,
            arx,
        )
    }

    /// [`api`] with monitor `app` (local subnet-app-a) created.
    fn api_with_app_monitor() -> (Api, Receiver<ResolverMsg>, Receiver<AggMsg>) {
        let (mut a, r, m) = api(None);
        let reply = a.route(
            "POST",
            "/api/monitors",
            None,
            br#"{"name":"app","local":["subnet:subnet-app-a"]}"#,
        );
        assert_eq!(reply.status, 201);
        (a, r, m)
    }

    fn summary(start: u64, bytes: u64, retrans: u64) -> Arc<IntervalSummary> {
        let c = Counters {
            bytes,
            retransmissions: retrans,
            records: 1,
            ..Default::default()
        };
        let f = TopFlow {
            agent_id: 1,
            local: "10.0.1.10".parse().unwrap(),
            remote: "10.0.2.10".parse().unwrap(),
            port: 443,
            server: false,
            category: Category::InterAz,
            counters: c,
            path: vec!["host:web-1".parse().unwrap()],
            degraded: false,
        };
        Arc::new(IntervalSummary {
            start_ms: start,
            end_ms: start + 10_000,
            flows: 1,
            records: 1,
            categories: vec![(Category::InterAz, c)],
            top: vec![f.clone()],
            monitors: vec![MonitorPoint {
                monitor: "app".into(),
                flows: 1,
                counters: c,
                health_indicator: Some(0),
                pairs: vec![crate::summary::PairStat {
                    local: "subnet:subnet-app-a".into(),
                    remote: "subnet:subnet-app-b".into(),
                    counters: c,
                }],
                flows_top: vec![f],
            }],
            ..Default::default()
        })
    }

    #[test]
    fn test_monitor_crud_and_errors() {
        let (mut a, _r, arx) = api(None);
        let body = br#"{"name":"app","local":["subnet:subnet-app-a"],"remote":[]}"#;
        assert_eq!(a.route("POST", "/api/monitors", None, body).status, 201);
        assert!(matches!(arx.try_recv(), Ok(AggMsg::Monitors(m)) if m.len() == 1));
        assert_eq!(a.route("POST", "/api/monitors", None, body).status, 409);
        let bad = br#"{"name":"x","local":["subnet:nope"]}"#;
        let r = a.route("POST", "/api/monitors", None, bad);
        assert_eq!(r.status, 400);
        assert!(r.json_value()["error"]
            .as_str()
            .unwrap()
            .contains("not in the topology"));
        assert_eq!(a.route("GET", "/api/monitors/app", None, b"").status, 200);
        assert_eq!(a.route("GET", "/api/monitors/nope", None, b"").status, 404);
        assert_eq!(
            a.route("GET", "/api/monitors/nope/overview", None, b"")
                .status,
            404
        );
        let put = br#"{"local":["vpc:vpc-app"],"remote":["service:object-store"]}"#;
        assert_eq!(a.route("PUT", "/api/monitors/app", None, put).status, 200);
        assert_eq!(a.monitors()[0].remote.len(), 1);
        assert_eq!(
            a.route("DELETE", "/api/monitors/app", None, b"").status,
            200
        );
        assert_eq!(
            a.route("DELETE", "/api/monitors/app", None, b"").status,
            404
        );
    }

    /// A second summary for an interval held is a late amendment: folded in, not a replacement;
    /// the monitor's latest indicator stays the evaluator's.
    #[test]
    fn test_late_amendment_is_folded_in() {
        let (mut a, _r, _m) = api_with_app_monitor();
        a.add_interval(summary(0, 100, 1));
        let mut late = (*summary(0, 30, 2)).clone();
        late.monitors[0].health_indicator = None;
        a.add_interval(Arc::new(late));
        let v = a
            .route(
                "GET",
                "/api/monitors/app/overview?from=0&to=10000",
                None,
                b"",
            )
            .json_value();
        let points = v["points"].as_array().unwrap();
        assert_eq!(points.len(), 1, "{v}");
        let r = a.route(
            "GET",
            "/api/insights?metric=data-transferred&from=0&to=10000",
            None,
            b"",
        );
        let v = r.json_value();
        assert_eq!(v["contributors"][0]["value"], 130, "{v}");
        assert_eq!(v["intervals"], 1);
        let held = a.history.get(&0).unwrap();
        assert_eq!(held.records, 2);
        assert_eq!(held.monitors[0].counters.retransmissions, 3);
        assert_eq!(held.monitors[0].health_indicator, Some(0));
        assert_eq!(a.totals["app"].last_indicator, Some(0));
        assert_eq!(a.totals["app"].counters.bytes, 130);
        // An older interval arriving after a newer one (an amendment whose original is no
        // longer held) adds to the totals but does not become the latest indicator.
        a.add_interval(summary(20_000, 1, 0));
        let mut older = (*summary(10_000, 1, 0)).clone();
        older.monitors[0].health_indicator = Some(1);
        a.add_interval(Arc::new(older));
        assert_eq!(a.totals["app"].last_indicator, Some(0));
        assert_eq!(a.totals["app"].counters.bytes, 132);
    }

    #[test]
    fn test_queries_and_bad_params() {
        let (mut a, _r, _m) = api_with_app_monitor();
        a.add_interval(summary(0, 100, 1));
        a.add_interval(summary(10_000, 50, 2));
        let r = a.route(
            "GET",
            "/api/insights?metric=data-transferred&from=0&to=20000&limit=5",
            None,
            b"",
        );
        assert_eq!(r.status, 200);
        let v = r.json_value();
        assert_eq!(v["contributors"][0]["value"], 150);
        assert_eq!(v["intervals"], 2);
        let r = a.route(
            "GET",
            "/api/insights?metric=retransmissions&category=intra-az&from=0&to=20000",
            None,
            b"",
        );
        assert_eq!(r.json_value()["contributors"].as_array().unwrap().len(), 0);
        let v = a
            .route(
                "GET",
                "/api/monitors/app/overview?from=0&to=20000",
                None,
                b"",
            )
            .json_value();
        assert_eq!(v["points"].as_array().unwrap().len(), 2);
        assert_eq!(v["totals"]["retransmissions"], 3);
        assert_eq!(v["points"][0]["health_indicator"], 0);
        let v = a
            .route(
                "GET",
                "/api/monitors/app/history?metric=retransmissions&from=0&to=20000&bucket=20000",
                None,
                b"",
            )
            .json_value();
        assert_eq!(v["buckets"][0]["pairs"][0]["value"], 3);
        let v = a
            .route(
                "GET",
                "/api/monitors/app/topology?from=0&to=20000",
                None,
                b"",
            )
            .json_value();
        assert_eq!(v["flows"][0]["path"][0], "host:web-1");
        for bad in [
            "/api/insights?metric=nope",
            "/api/insights?category=mars",
            "/api/insights?from=x",
            "/api/insights?from=10&to=5",
            "/api/monitors/app/history?bucket=0",
            "/api/verdicts?to=-1",
        ] {
            let r = a.route("GET", bad, None, b"");
            assert_eq!(r.status, 400, "{bad}");
            assert!(r.json_value()["error"].is_string());
        }
        let text = a.prometheus();
        assert!(
            text.contains("nfm_monitor_retransmissions_total{monitor=\"app\"} 3"),
            "{text}"
        );
        assert!(text.contains("nfm_monitor_data_transferred_bytes_total{monitor=\"app\"} 150"));
        assert!(text.contains("nfm_monitor_health_indicator{monitor=\"app\"} 0"));
    }

    #[test]
    fn test_bearer_token_required() {
        let (mut a, _r, _m) = api(Some("s3cret"));
        assert_eq!(a.route("GET", "/api/monitors", None, b"").status, 401);
        assert_eq!(
            a.route("GET", "/api/monitors", Some("Bearer nope"), b"")
                .status,
            401
        );
        assert_eq!(
            a.route("GET", "/api/monitors", Some("Bearer s3cret"), b"")
                .status,
            200
        );
        assert_eq!(
            a.route("GET", "/metrics", Some("Bearer s3cret"), b"")
                .status,
            200
        );
    }
}
