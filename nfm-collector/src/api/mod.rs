//! The API actor: answers HTTP requests (JSON, docs/api.md) and `/metrics` from its own copy of
//! the durable interval summaries, the monitors, the topology and ingest's latest snapshot.
//!
//! Why an actor: it owns every piece of state it serves and receives updates as messages, so a
//! query never takes a lock on the data path. `crate::http` parses HTTP on per-connection threads; each
//! request is handed to this actor as a message and answered here.
//!
//! # Layout
//! - this file: the actor's state, its messages and the router ([`Api::route`]): a thin table
//!   from method and path to a handler; `GET /` and `/ui/...` go to [`crate::ui::route`];
//! - `queries`: insights, verdicts, a monitor's overview, history and topology;
//! - `monitors`: monitor create/replace/delete and loading at start;
//! - `error`: [`ApiError`], each variant an HTTP status;
//! - `/metrics` is rendered by `crate::metrics::render`, next to the counters.

mod error;
mod monitors;
// Issue 15: maintenance windows, the agent registry, alerting metrics.
mod ops;
mod queries;
mod range;

pub use error::ApiError;
pub use monitors::load_monitors;
pub use ops::Ops;

use crate::http::Reply;
use crate::metrics::{render, Chan, Metrics, MonitorTotals};
use crate::monitor::Monitor;
use crate::now_ms;
use crate::pipeline::AggMsg;
use crate::pipeline::ResolverMsg;
use crate::pipeline::{ApiMsg, IngestSnapshot};
use crate::summary::IntervalSummary;
use crate::topology::Topology;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// Who may ask is decided before a request gets here, by the HTTP front (`crate::auth`).
pub struct ApiConfig {
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
    /// Issue 15: maintenance windows and the agent registry.
    ops: Ops,
    /// issue 17: the file's topology (before agent places) and the places applied to
    /// `topology` (the agents' own addresses, from their Hellos).
    file_topology: Arc<Topology>,
    agent_places: Vec<crate::topology::AgentPlace>,
    /// issue 16: the history on disk (older than what is held in memory, and rollups).
    disk: Option<std::cell::RefCell<crate::history_index::HistoryReader>>,
    /// Issue 14: how long an incident stays open after its last naming (the evaluator's).
    hold_down: crate::model::HoldDown,
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

pub(super) fn num(p: &HashMap<String, String>, k: &str) -> Result<Option<u64>, String> {
    match p.get(k) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("parameter `{k}` must be a non-negative integer, got `{v}`")),
    }
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
            file_topology: topology.clone(),
            agent_places: Vec::new(),
            topology,
            ingest: IngestSnapshot::default(),
            metrics,
            to_resolver,
            to_aggregator,
            started_ms: now_ms(),
            ops: Ops::default(),
            disk: None,
            hold_down: Default::default(),
        }
    }

    /// The incident hold-down the evaluator uses (`/api/incidents`, open incidents in `/metrics`).
    pub fn with_hold_down(mut self, hold_down: crate::model::HoldDown) -> Api {
        self.hold_down = hold_down;
        self
    }

    /// Queries read the history under `data_dir` (raw summaries and rollups) for ranges older
    /// than what is held in memory (issue 16).
    pub fn with_history_dir(mut self, data_dir: impl Into<PathBuf>) -> Api {
        let r = crate::history_index::HistoryReader::new(data_dir);
        self.disk = Some(std::cell::RefCell::new(r));
        self
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
        // issue 17: agents' own addresses placed from their Hellos; a change goes to the
        // resolver like a reload.
        let places = crate::discovery::agents::agent_places(&s.agents);
        self.ingest = s;
        self.observe_agents(false);
        if places != self.agent_places {
            self.agent_places = places;
            self.publish_topology();
        }
    }

    /// issue 17: the file's topology plus the agents' places, to the resolver.
    fn publish_topology(&mut self) {
        let t = if self.agent_places.is_empty() {
            self.file_topology.clone()
        } else {
            match crate::discovery::agents::place(&self.file_topology, self.agent_places.clone()) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    log::error!("api: agent places not applied: {e}");
                    return;
                }
            }
        };
        self.topology = t.clone();
        self.metrics.sent(Chan::Resolver);
        let _ = self.to_resolver.send(ResolverMsg::Topology(t));
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
                // issue 17: the new file with the agents' places.
                self.file_topology = Arc::new(t);
                self.publish_topology();
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

    /// The one place requests are routed. `_auth`: the Authorization header, if any (already
    /// checked by the HTTP front, `crate::auth`, with the token's role).
    pub fn route(&mut self, method: &str, url: &str, _auth: Option<&str>, body: &[u8]) -> Reply {
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
            ("GET", ["api", "incidents"]) => self.incidents(&p),
            ("GET", ["api", "agents"]) => Ok(self.agents_json()),
            // Issue 15: maintenance windows.
            ("GET", ["api", "maintenance"]) => Ok(self.maintenance_list()),
            ("POST", ["api", "maintenance"]) => self.maintenance_create(body),
            ("DELETE", ["api", "maintenance", id]) => self.maintenance_delete(id),
            ("GET", ["api", "topology"]) => Ok(self.topology_json()),
            ("POST", ["api", "topology", "reload"]) => self
                .reload_topology()
                .map(|()| Reply::json(200, &json!({"reloaded": true})))
                .map_err(ApiError::BadRequest),
            ("GET", ["api", "monitors"]) => self.list_monitors(&p),
            ("POST", ["api", "monitors"]) => self.create_monitor(body),
            ("GET", ["api", "monitors", name]) => self
                .monitors
                .get(*name)
                .map(|m| Reply::json(200, m))
                .ok_or_else(|| ApiError::unknown_monitor(name)),
            ("PUT", ["api", "monitors", name]) => self.put_monitor(name, body),
            ("DELETE", ["api", "monitors", name]) => {
                if self.monitors.remove(*name).is_some() {
                    self.publish_monitors();
                    Ok(Reply::json(200, &json!({"deleted": name})))
                } else {
                    Err(ApiError::unknown_monitor(name))
                }
            }
            ("GET", ["api", "monitors", name, what]) => {
                if !self.monitors.contains_key(*name) {
                    Err(ApiError::unknown_monitor(name))
                } else {
                    match *what {
                        "overview" => self.overview(name, &p),
                        "history" => self.history_view(name, &p),
                        "topology" => self.monitor_topology(name, &p),
                        _ => Err(ApiError::NotFound(format!("no such endpoint `{path}`"))),
                    }
                }
            }
            _ => match crate::ui::route(method, path) {
                Some(r) => Ok(r),
                None => Err(ApiError::NotFound(format!(
                    "no such endpoint `{method} {path}`"
                ))),
            },
        };
        r.unwrap_or_else(Reply::from)
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

    /// The `/metrics` page.
    pub fn prometheus(&self) -> String {
        let mut names: Vec<&String> = self.monitors.keys().collect();
        names.sort();
        let mut text = render(&self.metrics, &names, &self.totals, &self.ingest);
        text.push_str(&self.alerting_metrics()); // issue 15
        text
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
            self.publish_maintenance(); // issue 15: a change the health stage had no room for
            match m {
                ApiMsg::Interval(s) => self.add_interval(s),
                ApiMsg::Ingest(s) => self.set_ingest(*s),
                ApiMsg::Http(r) => self.handle_http(r),
                ApiMsg::ReloadTopology => {
                    let _ = self.reload_topology();
                }
                ApiMsg::Shutdown => {
                    self.observe_agents(true); // issue 15: save the agent registry
                    break;
                }
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

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::Category;
    use crate::summary::Counters;
    use crate::summary::{MonitorPoint, TopFlow};
    use std::sync::mpsc::sync_channel;

    const TOPO: &str = include_str!("../../examples/topology.toml");

    fn api(token: Option<&str>) -> (Api, Receiver<ResolverMsg>, Receiver<AggMsg>) {
        let (rtx, rrx) = sync_channel(16);
        let (atx, arx) = sync_channel(16);
        let _ = token; // tokens are the HTTP front's (crate::auth)
        let cfg = ApiConfig {
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

    /// Issue 17 item 3: tags on monitors, `?tag=KEY:VALUE` and `?tag=KEY` filters, bad tags
    /// refused with a reason, more than 64 monitors accepted.
    #[test]
    fn test_monitor_tags_and_many_monitors() {
        let (mut a, _r, arx) = api(None);
        for i in 0..100 {
            // Each change is published to the aggregator (a bounded channel): drain it.
            while arx.try_recv().is_ok() {}
            let team = if i % 2 == 0 { "pay" } else { "search" };
            let body = format!(
                r#"{{"name":"m{i}","local":["region:us-east-1"],"tags":{{"team":"{team}"}}}}"#
            );
            let r = a.route("POST", "/api/monitors", None, body.as_bytes());
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        }
        let plain = br#"{"name":"untagged","local":["vpc:vpc-app"]}"#;
        assert_eq!(a.route("POST", "/api/monitors", None, plain).status, 201);
        let last = std::iter::from_fn(|| arx.try_recv().ok()).last();
        assert!(matches!(last, Some(AggMsg::Monitors(m)) if m.len() == 101));
        let list = |a: &mut Api, q: &str| {
            let v = a
                .route("GET", &format!("/api/monitors{q}"), None, b"")
                .json_value();
            v.as_array().map_or(0, |l| l.len())
        };
        assert_eq!(list(&mut a, ""), 101);
        assert_eq!(list(&mut a, "?tag=team:pay"), 50);
        assert_eq!(list(&mut a, "?tag=team%3Asearch"), 50);
        assert_eq!(list(&mut a, "?tag=team"), 100);
        assert_eq!(list(&mut a, "?tag=team:none"), 0);
        assert_eq!(a.route("GET", "/api/monitors?tag=", None, b"").status, 400);
        let v = a.route("GET", "/api/monitors/m0", None, b"").json_value();
        assert_eq!(v["tags"]["team"], "pay");
        let bad = br#"{"name":"b","local":["vpc:vpc-app"],"tags":{"a b":"x"}}"#;
        let r = a.route("POST", "/api/monitors", None, bad);
        assert_eq!(r.status, 400);
        assert!(r.json_value()["error"]
            .as_str()
            .unwrap()
            .contains("tag key"));
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

    /// `/api/incidents`: a flapping component named in intervals 0, 1 and 3 with one
    /// `first_seen_ms` is one incident (1 flap, 3 intervals), ongoing while the newest interval
    /// is within the hold-down of its last naming; a component named once long before is a
    /// separate, resolved incident.
    #[test]
    fn test_incidents_group_a_flap_into_one() {
        use crate::model::{Blame, ComponentId, MetricChange, Verdict};
        let (mut a, _r, _m) = api(None);
        let iv = 10_000;
        let verdict = |start: u64, first: u64, comp: &str, flaps: f64| Verdict {
            interval_start_ms: start,
            component: comp.parse::<ComponentId>().unwrap(),
            blame: Blame::Network,
            confidence: 0.8,
            degraded_flows: 4,
            healthy_flows: 1,
            evidence: (flaps > 0.0)
                .then(|| MetricChange {
                    metric: "flaps".into(),
                    baseline: 0.0,
                    observed: flaps,
                })
                .into_iter()
                .collect(),
            first_seen_ms: first,
        };
        let t0 = 10 * 3_600_000;
        let at = |k: u64, v: Vec<Verdict>| {
            let mut s = (*summary(t0 + k * iv, 1, 0)).clone();
            s.verdicts = v;
            Arc::new(s)
        };
        a.add_interval(at(0, vec![verdict(t0, t0, "az-pair:a|b", 0.0)]));
        a.add_interval(at(1, vec![verdict(t0 + iv, t0, "az-pair:a|b", 0.0)]));
        a.add_interval(at(2, vec![]));
        a.add_interval(at(3, vec![verdict(t0 + 3 * iv, t0, "az-pair:a|b", 1.0)]));
        let old = t0 - 3_000_000;
        let mut s = (*summary(old, 1, 0)).clone();
        s.verdicts = vec![verdict(old, old, "subnet:s1", 0.0)];
        a.add_interval(Arc::new(s));
        let v = a.route("GET", "/api/incidents", None, b"").json_value();
        let list = v["incidents"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{v}");
        assert_eq!(list[0]["component"], "az-pair:a|b");
        assert_eq!(list[0]["intervals_named"], 3);
        assert_eq!(list[0]["flaps"], 1);
        assert_eq!(list[0]["state"], "ongoing");
        assert_eq!(list[0]["first_seen_ms"], t0);
        assert_eq!(list[1]["component"], "subnet:s1");
        assert_eq!(list[1]["state"], "resolved");
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
}
