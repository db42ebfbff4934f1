//! Wiring: settings (TOML file + CLI), and starting and stopping the actors in order.
//!
//! ```text
//!            ┌──────────── WalBatch ────────────┐
//! sockets → ingest ─ DecodedBatch → resolver → aggregator → health → store → api
//!            ▲                                                 │
//!            └──────── StoreReply (durable) + mio Waker ───────┘
//! ```
//!
//! Channel capacities are in messages; a data message carries up to ~16k records (ingest
//! flushes at that size, ~4 MiB decoded), so 8 messages bound an edge to ~130k records in
//! flight; the health edge carries whole closed intervals, so it holds two. A ticker
//! thread sends `Tick` to the resolver (forwarded to the aggregator) and the store.
//! Shutdown stops ingest first and then each actor in pipeline order, so every accepted batch
//! reaches the store before it stops.

use crate::aggregator::{Aggregator, AggregatorConfig};
use crate::api::{load_monitors, Api, ApiConfig};
use crate::health::{Evaluator, HealthConfig};
use crate::health_stage::HealthStage;
use crate::ingest::{IngestConfig, IngestControl, IngestCore, IngestLoop, IngestSockets, Injected};
use crate::metrics::{Chan, Metrics};
use crate::notify::{Notifier, NotifyConfig};
use crate::pipeline::AggMsg;
use crate::pipeline::ApiMsg;
use crate::pipeline::HealthMsg;
use crate::pipeline::NotifyMsg;
use crate::pipeline::ResolverMsg;
use crate::pipeline::StoreMsg;
use crate::resolution::DecodedBatch;
use crate::resolver::Resolver;
use crate::store::{Store, StoreConfig, StoreOutputs};
use crate::topology::Topology;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Everything the collector can be told. The TOML config file has these keys; CLI flags win.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen_udp: Option<SocketAddr>,
    pub listen_tcp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub topology: Option<PathBuf>,
    pub monitors: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Bearer token for the API; required when `http` is not a loopback address.
    pub api_token: Option<String>,
    pub retention_days: u64,
    pub segment_mib: u64,
    pub top_k: usize,
    pub max_flows_per_agent: usize,
    pub max_flows: usize,
    pub close_grace_ms: u64,
    /// On-time intervals close this long after their end by the collector's clock (0: off).
    pub close_after_ms: u64,
    pub idle_close_ms: u64,
    pub max_history_intervals: usize,
    /// Memory for interval summaries served by the API (older ones stay on disk).
    pub max_history_mib: usize,
    pub max_frame_len: usize,
    /// Agent TCP connections at once (lowered to the descriptor limit at start).
    pub max_connections: usize,
    /// Memory agent TCP connections may hold in partial frames (docs/collector.md).
    pub ingest_buffer_mib: usize,
    /// Frame bytes that may wait for a stalled store before ingest refuses batches
    /// (`store_full`: the agent resends them later; a refused batch is never aggregated).
    pub max_store_backlog_mib: usize,
    /// Resident memory the collector keeps under: above 90 % of it ingest refuses new batches
    /// (`overloaded`; agents resend them later) until it is below 75 % (`memory::Governor`).
    /// 0: no budget.
    pub memory_budget_mib: usize,
    /// The collector's interval (ms): agents' batches are placed on its grid; a shorter batch is
    /// added into the interval holding its midpoint, a longer one is refused
    /// (`interval_mismatch`). 0: every agent's own interval.
    pub interval_ms: u64,
    pub tick_ms: u64,
    /// Run the health evaluator (default). Off: intervals are summarized unjudged and no
    /// HealthIndicator is stored (a benchmark baseline).
    pub health: bool,
    // ---- issue 15: notifications
    /// `[[webhook]]` entries: one POST per incident opened and resolved (`crate::notify`).
    #[serde(rename = "webhook")]
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// The dashboard's address in notifications' links (default: `http://` + the API address).
    pub dashboard_url: Option<String>,
    /// Notifications each webhook holds while its receiver is down (the oldest go beyond).
    pub notify_queue_len: usize,
    /// Longest wait between two attempts of a failing notification (back-off doubles from 1 s).
    pub notify_retry_max_ms: u64,
    // issue 15 (auth, roles, TLS)
    /// Read-only bearer token (GET, including /metrics); needs `api_token`.
    pub viewer_token: Option<String>,
    /// How long a dashboard session lasts after login (seconds).
    pub session_ttl_s: u64,
    /// PEM certificate chain and private key: the API and dashboard are served over HTTPS;
    /// both reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The agents' TCP stream over TLS too, with the same certificate (docs/wire.md).
    pub ingest_tls: bool,
    /// issue 17: re-import the topology from the EC2 API on a schedule (`[aws_import]`); the
    /// result is written to `topology` and reloaded when it changed.
    pub aws_import: Option<crate::discovery::AwsImportSettings>,
    /// issue 16: `[remote_write]` (or `[[remote_write]]` for several): send each interval's
    /// numbers to a TSDB (docs/collector.md).
    #[serde(deserialize_with = "crate::remote_write::one_or_many")]
    pub remote_write: Vec<crate::remote_write::RemoteWriteConfig>,
    /// issue 14: an incident stays open at least this long (seconds) after the last interval
    /// that named its component, and at least three intervals (docs/health.md §5): a link
    /// flapping within it is one incident and HealthIndicator stays raised through the flap.
    pub incident_hold_down_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let a = AggregatorConfig::default();
        Settings {
            listen_udp: Some("127.0.0.1:7700".parse().expect("addr")),
            listen_tcp: Some("127.0.0.1:7700".parse().expect("addr")),
            http: Some("127.0.0.1:8080".parse().expect("addr")),
            data_dir: PathBuf::from("nfm-data"),
            topology: None,
            monitors: None,
            key_file: None,
            api_token: None,
            retention_days: 7,
            segment_mib: 64,
            top_k: a.top_k,
            max_flows_per_agent: a.max_flows_per_agent,
            max_flows: a.max_flows,
            close_grace_ms: a.close_grace_ms,
            close_after_ms: a.close_after_ms,
            idle_close_ms: a.idle_close.as_millis() as u64,
            max_history_intervals: 20_160,
            max_history_mib: 256,
            max_frame_len: nfm_wire::MAX_FRAME_LEN,
            max_connections: IngestConfig::default().max_connections,
            ingest_buffer_mib: IngestConfig::default().buffer_budget >> 20,
            max_store_backlog_mib: 256,
            memory_budget_mib: 1024,
            interval_ms: 5_000,
            tick_ms: 250,
            health: true,
            webhooks: Vec::new(),
            dashboard_url: None,
            notify_queue_len: 1000,
            notify_retry_max_ms: 60_000,
            // issue 15
            viewer_token: None,
            session_ttl_s: 12 * 3600,
            tls_cert: None,
            tls_key: None,
            ingest_tls: false,
            aws_import: None,
            remote_write: Vec::new(),
            incident_hold_down_s: crate::model::INCIDENT_HOLD_DOWN_MIN_MS / 1000,
        }
    }
}

impl Settings {
    /// The incident hold-down of `incident_hold_down_s` (issue 14).
    pub fn hold_down(&self) -> crate::model::HoldDown {
        crate::model::HoldDown {
            min_ms: self.incident_hold_down_s.saturating_mul(1000),
            ..Default::default()
        }
    }

    pub fn parse_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => format!("config line {l}: {}", e.message()),
                None => format!("config: {}", e.message()),
            }
        })
    }
}

/// A running collector.
pub struct Collector {
    pub udp_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    to_api: SyncSender<ApiMsg>,
    ingest_ctl: std::sync::mpsc::Sender<IngestControl>,
    waker: Arc<mio::Waker>,
    to_resolver: SyncSender<ResolverMsg>,
    to_agg: SyncSender<AggMsg>,
    to_health: SyncSender<HealthMsg>,
    to_store: SyncSender<StoreMsg>,
    /// Issue 15: the notifier, when webhooks are configured.
    to_notify: Option<SyncSender<NotifyMsg>>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    http: Option<crate::http::Server>,
    stop_ticker: Arc<AtomicBool>,
    inject: SyncSender<Injected>,
    /// The certificate of the API (and of ingest with `ingest_tls`), when configured.
    pub tls: Option<crate::tls::Tls>,
}

/// Feeds frames to a running collector in-process (see [`Collector::injector`]).
#[derive(Clone)]
pub struct Injector {
    tx: SyncSender<Injected>,
    waker: Arc<mio::Waker>,
}

impl Injector {
    /// Blocks while ingest is behind (back-pressure). Returns false once the collector stopped.
    pub fn send(&self, frames: Injected) -> bool {
        let ok = self.tx.send(frames).is_ok();
        let _ = self.waker.wake();
        ok
    }
}

fn spawn<F: FnOnce() + Send + 'static>(
    name: &'static str,
    f: F,
) -> std::io::Result<(&'static str, JoinHandle<()>)> {
    Ok((
        name,
        std::thread::Builder::new()
            .name(format!("nfm-{name}"))
            .spawn(f)?,
    ))
}

impl Collector {
    /// Opens the store (replaying it), binds the sockets and starts every actor.
    pub fn start(s: &Settings) -> Result<Collector, String> {
        let metrics = Arc::new(Metrics::default());
        let topology = match &s.topology {
            Some(p) => Topology::load(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => Topology::empty(),
        };
        let topology = Arc::new(topology);
        let keys = match &s.key_file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let ring =
                    nfm_wire::Keyring::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
                if ring.is_empty() {
                    return Err(format!("{}: no keys", p.display()));
                }
                Some(ring)
            }
            None => None,
        };
        if let Some(h) = s.http {
            if !h.ip().is_loopback() && s.api_token.is_none() {
                return Err(format!(
                    "the API is bound to {h}, not a loopback address: set `api_token` in the config file so requests need a bearer token"
                ));
            }
        }
        // Issue 15: webhooks are checked before anything starts.
        let webhooks = s
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| w.validate(i))
            .collect::<Result<Vec<_>, String>>()?;
        let (tls, auth) = security(s, &metrics)?; // issue 15
        for rw in &s.remote_write {
            rw.validate()?; // issue 16
        }
        std::fs::create_dir_all(&s.data_dir)
            .map_err(|e| format!("data dir {}: {e}", s.data_dir.display()))?;
        let maintenance_path = s.data_dir.join("maintenance.json");
        let maintenance = crate::maintenance::Windows::load(&maintenance_path)?;
        let monitors_path = s.data_dir.join("monitors.json");
        let monitors = load_monitors(Some(&monitors_path), s.monitors.as_deref(), &topology)?;

        let mut scfg = StoreConfig::new(&s.data_dir);
        scfg.segment_bytes = s.segment_mib.max(1) << 20;
        scfg.retention_ms = s.retention_days * 86_400_000;
        // issue 16: replay hands back only what the API holds (older history is read from disk
        // by queries), and rollups keep the aggregator's top K.
        scfg.replay_keep = s.max_history_intervals;
        scfg.replay_keep_bytes = s.max_history_mib << 20;
        scfg.top_k = s.top_k;
        let (store, recovered) = Store::open(scfg, metrics.clone())
            .map_err(|e| format!("store {}: {e}", s.data_dir.display()))?;
        log::info!(
            "store: recovered {} interval summaries, {} batches to re-aggregate ({} WAL records, {} torn bytes cut)",
            recovered.summaries.len(),
            recovered.batches.len(),
            recovered.wal.records,
            recovered.wal.truncated_bytes + recovered.history.truncated_bytes
        );

        // issue 16 item 4: queue depths from `pipeline` (each queued message is memory held
        // per active flow: see the constants).
        let (to_resolver, resolver_rx) =
            sync_channel::<ResolverMsg>(crate::pipeline::RESOLVER_QUEUE);
        let (to_agg, agg_rx) = sync_channel::<AggMsg>(crate::pipeline::AGG_QUEUE);
        let (to_health, health_rx) = sync_channel::<HealthMsg>(crate::pipeline::HEALTH_QUEUE);
        let (to_store, store_rx) = sync_channel::<StoreMsg>(16);
        let (to_api, api_rx) = sync_channel::<ApiMsg>(1024);
        let (reply_tx, reply_rx) = channel();
        let (ctl_tx, ctl_rx) = channel();

        let sockets = IngestSockets::bind(s.listen_udp, s.listen_tcp, 8 << 20)
            .map_err(|e| format!("binding {:?}/{:?}: {e}", s.listen_udp, s.listen_tcp))?;
        let udp_addr = sockets.udp_addr();
        let tcp_addr = sockets.tcp_addr();
        let waker = sockets.waker.clone();

        // Intervals with a summary are closed; but the WAL batches to re-aggregate belong to
        // intervals that never closed (one may start before a later one's summary ended, when
        // it was still open as that one closed): they must aggregate on time, not as late.
        let summarized_to = recovered
            .summaries
            .iter()
            .map(|x| x.end_ms)
            .max()
            .unwrap_or(0);
        let unsummarized_from = recovered
            .batches
            .iter()
            .map(|b| b.interval_start_ms)
            .min()
            .unwrap_or(u64::MAX);
        let closed_before = summarized_to.min(unsummarized_from);
        let mut threads = Vec::new();
        let io = |e: std::io::Error| format!("spawning a thread: {e}");

        // API first, so replayed summaries have somewhere to go.
        let mut api = Api::new(
            ApiConfig {
                topology_path: s.topology.clone(),
                monitors_path: Some(monitors_path),
                retention_ms: s.retention_days * 86_400_000,
                max_history_intervals: s.max_history_intervals,
                max_history_bytes: s.max_history_mib << 20,
                top_k: s.top_k,
            },
            topology.clone(),
            monitors.clone(),
            metrics.clone(),
            to_resolver.clone(),
            to_agg.clone(),
        )
        .with_history_dir(&s.data_dir) // issue 16: queries read older history from disk
        .with_hold_down(s.hold_down()); // issue 14
        for summary in recovered.summaries {
            api.add_interval(Arc::new(summary));
        }
        // Issue 15: agent registry and maintenance windows.
        let api = api.with_ops(crate::api::Ops {
            registry: crate::agent_registry::Registry::open(
                Some(s.data_dir.join("agents.json")),
                if s.interval_ms > 0 {
                    s.interval_ms
                } else {
                    5_000
                },
                s.retention_days * 86_400_000,
            ),
            maintenance: maintenance.clone(),
            maintenance_path: Some(maintenance_path),
            to_health: Some(to_health.clone()),
            unsent: true,
        });
        // Issue 15: the notifier, fed by the health stage.
        let to_notify = if webhooks.is_empty() {
            None
        } else {
            let (tx, rx) = sync_channel::<NotifyMsg>(256);
            let mut ncfg = NotifyConfig::new(webhooks);
            ncfg.queue_len = s.notify_queue_len.max(1);
            ncfg.retry_max = Duration::from_millis(s.notify_retry_max_ms.max(1));
            ncfg.retry_initial = ncfg.retry_initial.min(ncfg.retry_max);
            ncfg.dashboard_url = s
                .dashboard_url
                .clone()
                .or_else(|| s.http.map(|h| format!("http://{h}/")));
            let n = Notifier::new(ncfg, metrics.clone());
            threads.push(spawn("notify", move || n.run(rx)).map_err(io)?);
            Some(tx)
        };
        threads.push(spawn("api", move || api.run(api_rx)).map_err(io)?);

        let m = metrics.clone();
        let store_out = StoreOutputs {
            durable: reply_tx,
            waker: Some(waker.clone()),
            summaries: to_api.clone(),
        };
        // issue 16: remote write, fed by the store through a bounded channel; it stops when the
        // store (its only sender) has stopped.
        let mut store = store;
        for rw in &s.remote_write {
            let writer = crate::remote_write::RemoteWriter::new(rw.clone(), metrics.clone())?;
            let (tx, rx) = sync_channel(1024);
            threads.push(spawn("remote-write", move || writer.run(rx)).map_err(io)?);
            store = store.with_remote_write(tx);
        }
        threads.push(spawn("store", move || store.run(store_rx, store_out)).map_err(io)?);
        let (recycle_tx, recycle_rx) = sync_channel(crate::pipeline::RECYCLE_QUEUE);
        let health = HealthStage::new(
            s.health.then(|| {
                Evaluator::new(HealthConfig {
                    incident_hold_down: s.hold_down(),
                    ..HealthConfig::default()
                })
            }),
            m.clone(),
        )
        .with_recycling(recycle_tx)
        .with_maintenance(Arc::new(maintenance));
        let health = match &to_notify {
            Some(tx) => health.with_notify(tx.clone(), Some(s.data_dir.join("incidents.json"))),
            None => health,
        };
        let tx = to_store.clone();
        threads.push(spawn("health", move || health.run(health_rx, tx)).map_err(io)?);
        let agg = Aggregator::new(
            AggregatorConfig {
                top_k: s.top_k,
                max_flows_per_agent: s.max_flows_per_agent,
                max_flows: s.max_flows,
                close_grace_ms: s.close_grace_ms,
                close_after_ms: s.close_after_ms,
                idle_close: Duration::from_millis(s.idle_close_ms),
                // Late records are amended in while their summaries are still served.
                max_late_ms: s.retention_days * 86_400_000,
            },
            Arc::new(monitors),
            closed_before,
            m.clone(),
        )
        .with_recycling(recycle_rx);
        let tx = to_health.clone();
        threads.push(spawn("aggregator", move || agg.run(agg_rx, tx)).map_err(io)?);
        let resolver = Resolver::new(topology, 1 << 20, m.clone());
        let tx = to_agg.clone();
        threads.push(spawn("resolver", move || resolver.run(resolver_rx, tx)).map_err(io)?);

        // Re-aggregate the WAL batches no durable summary holds.
        let grid = (s.interval_ms > 0).then_some(s.interval_ms);
        let mut core = IngestCore::new(
            IngestConfig {
                max_frame_len: s.max_frame_len,
                keys: keys.clone(),
                max_connections: s.max_connections,
                state_path: Some(s.data_dir.join("sessions")),
                buffer_budget: s.ingest_buffer_mib << 20,
                max_store_backlog: s.max_store_backlog_mib.max(1) << 20,
                interval_ms: grid,
                ..Default::default()
            },
            to_resolver.clone(),
            to_store.clone(),
            metrics.clone(),
        );
        core.restore_seen(&recovered.seen);
        core.number_from(recovered.max_n);
        // Counted in flight like ingest's batches (the aggregator counts them off).
        let send_replay = |batches: Vec<DecodedBatch>| {
            let records: usize = batches.iter().map(|b| b.records.len()).sum();
            metrics
                .records_in_flight
                .fetch_add(records as u64, Ordering::Relaxed);
            metrics.sent(Chan::Resolver);
            let _ = to_resolver.send(ResolverMsg::Batches(batches));
        };
        let mut replay = Vec::new();
        for b in recovered.batches {
            match nfm_wire::decode(&b.frame, &nfm_wire::DecodeOptions::default()) {
                Ok(p) => {
                    if let nfm_wire::Message::FlowBatch(fb) = p.message {
                        // The same interval as when it arrived live (it was accepted, so a grid
                        // changed since then places it on its own rather than losing it).
                        let (start, end, _) =
                            crate::ingest::place(fb.interval_start_ms, fb.interval_end_ms, grid)
                                .unwrap_or_else(|_| {
                                    crate::ingest::align_interval(
                                        fb.interval_start_ms,
                                        fb.interval_end_ms,
                                    )
                                });
                        replay.push(DecodedBatch {
                            n: b.n,
                            agent_id: b.agent_id,
                            interval_start_ms: start,
                            interval_end_ms: end,
                            simulated: false,
                            records: fb.records,
                        });
                    }
                }
                Err(e) => log::warn!("store: WAL batch does not decode ({e}); skipped"),
            }
            if replay.len() >= 256 {
                send_replay(std::mem::take(&mut replay));
            }
        }
        if !replay.is_empty() {
            send_replay(replay);
        }

        // In-process frames: at most 8 blocks of a few thousand frames each in flight.
        let (inject_tx, inject_rx) = sync_channel::<Injected>(4);
        let ingest = IngestLoop::new(
            sockets,
            core,
            reply_rx,
            to_api.clone(),
            ctl_rx,
            metrics.clone(),
        )
        .with_injector(inject_rx)
        .with_tls(tls.clone().filter(|_| s.ingest_tls)); // issue 15
        threads.push(spawn("ingest", move || ingest.run()).map_err(io)?);

        // Ticker.
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let stop = stop_ticker.clone();
            let (rtx, stx, m) = (to_resolver.clone(), to_store.clone(), metrics.clone());
            let period = Duration::from_millis(s.tick_ms.max(10));
            let mut governor = crate::memory::Governor::new((s.memory_budget_mib as u64) << 20);
            threads.push(
                spawn("ticker", move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(period); // a clock, not synchronization
                        governor.update(&m);
                        let now = Instant::now();
                        m.sent(Chan::Resolver);
                        if rtx.try_send(ResolverMsg::Tick(now)).is_err() {
                            m.received(Chan::Resolver);
                        }
                        n += 1;
                        if n.is_multiple_of(4) {
                            m.sent(Chan::Store);
                            if stx.try_send(StoreMsg::Tick(now)).is_err() {
                                m.received(Chan::Store);
                            }
                        }
                    }
                })
                .map_err(io)?,
            );
        }

        // issue 17: the scheduled AWS import writes the topology file and reloads it (the
        // SIGHUP path) when it changed; errors keep the previous topology.
        if let Some(a) = &s.aws_import {
            let Some(path) = s.topology.clone() else {
                return Err("[aws_import] needs `topology`: the file the import writes".into());
            };
            crate::discovery::parse_every(&a.every)
                .map_err(|e| format!("[aws_import] every: {e}"))?;
            let (a, stop, tx, m) = (
                a.clone(),
                stop_ticker.clone(),
                to_api.clone(),
                metrics.clone(),
            );
            threads.push(
                spawn("aws-import", move || {
                    crate::discovery::run_schedule(
                        &a,
                        path,
                        || drop(tx.send(ApiMsg::ReloadTopology)),
                        stop,
                        &m,
                    )
                })
                .map_err(io)?,
            );
        }

        // HTTP accept thread: parses requests, hands them to the API actor.
        let (http, http_addr) = match s.http {
            Some(addr) => {
                let tx = to_api.clone();
                let front = crate::http::Front {
                    auth: Some(auth),
                    tls: tls.clone(),
                };
                let (server, h) = crate::http::Server::start_front(
                    addr,
                    crate::http::Limits::default(),
                    front,
                    move |req| tx.send(ApiMsg::Http(req)).is_ok(),
                )
                .map_err(|e| format!("binding the API on {addr}: {e}"))?;
                let bound = Some(server.local_addr());
                threads.push(("http", h));
                (Some(server), bound)
            }
            None => (None, None),
        };

        Ok(Collector {
            udp_addr,
            tcp_addr,
            http_addr,
            metrics,
            to_api,
            ingest_ctl: ctl_tx,
            waker,
            to_resolver,
            to_agg,
            to_health,
            to_store,
            to_notify,
            threads,
            http,
            stop_ticker,
            inject: inject_tx,
            tls,
        })
    }

    /// Frames handed to ingest in-process, decoded and accounted exactly like UDP datagrams.
    pub fn injector(&self) -> Injector {
        Injector {
            tx: self.inject.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Closes every open interval now (benchmarks and tests; normally the watermark does).
    pub fn flush_intervals(&self) {
        self.metrics.sent(Chan::Aggregator);
        let _ = self.to_agg.send(AggMsg::Flush);
    }

    /// Asks the API actor to reload the topology file (what SIGHUP does).
    pub fn reload_topology(&self) {
        let _ = self.to_api.send(ApiMsg::ReloadTopology);
    }

    /// Re-reads `tls_cert` and `tls_key` (what SIGHUP does): new handshakes use the new
    /// certificate; on error the old one stays (logged and counted in `nfm_tls_reloads_total`).
    pub fn reload_tls(&self) -> Result<(), String> {
        match &self.tls {
            Some(t) => t.reload(),
            None => Ok(()),
        }
    }

    /// Stops every actor in pipeline order and waits for them.
    pub fn shutdown(mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        let _ = self.ingest_ctl.send(IngestControl::Shutdown);
        let _ = self.waker.wake();
        type Stop<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let order: [Stop; 5] = [
            ("ingest", Box::new(|| {})),
            (
                "resolver",
                Box::new(|| drop(self.to_resolver.send(ResolverMsg::Shutdown))),
            ),
            (
                "aggregator",
                Box::new(|| drop(self.to_agg.send(AggMsg::Shutdown))),
            ),
            (
                "health",
                Box::new(|| drop(self.to_health.send(HealthMsg::Shutdown))),
            ),
            (
                "store",
                Box::new(|| drop(self.to_store.send(StoreMsg::Shutdown))),
            ),
        ];
        let mut threads = std::mem::take(&mut self.threads);
        for (name, stop) in order.iter() {
            stop();
            if let Some(i) = threads.iter().position(|(n, _)| n == name) {
                let (_, h) = threads.remove(i);
                let _ = h.join();
            }
        }
        // Issue 15: the notifier after the health stage (its last events are queued).
        if let Some(tx) = self.to_notify.take() {
            let _ = tx.send(NotifyMsg::Shutdown);
            if let Some(i) = threads.iter().position(|(n, _)| *n == "notify") {
                let _ = threads.remove(i).1.join();
            }
        }
        if let Some(h) = &self.http {
            h.unblock();
        }
        let _ = self.to_api.send(ApiMsg::Shutdown);
        for (_, h) in threads {
            let _ = h.join();
        }
    }
}

/// Checks the token and TLS settings, loads the certificate and builds the HTTP front's
/// authorization (issue 15); both register their counters for `/metrics`.
fn security(
    s: &Settings,
    metrics: &Metrics,
) -> Result<(Option<crate::tls::Tls>, Arc<crate::auth::Auth>), String> {
    if s.viewer_token.is_some() && s.api_token.is_none() {
        return Err("`viewer_token` needs `api_token` (the admin's) to be set too".into());
    }
    if s.viewer_token.is_some() && s.viewer_token == s.api_token {
        return Err("`viewer_token` must differ from `api_token`".into());
    }
    for (k, t) in [
        ("api_token", &s.api_token),
        ("viewer_token", &s.viewer_token),
    ] {
        if t.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(format!("`{k}` is empty"));
        }
    }
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::Tls::load(c, k)?),
        (None, None) => None,
        _ => return Err("set both `tls_cert` and `tls_key` (PEM files), or neither".into()),
    };
    if s.ingest_tls && tls.is_none() {
        return Err("`ingest_tls` needs `tls_cert` and `tls_key`".into());
    }
    let auth = Arc::new(crate::auth::Auth::new(crate::auth::AuthConfig {
        admin_token: s.api_token.clone(),
        viewer_token: s.viewer_token.clone(),
        session_ttl: Duration::from_secs(s.session_ttl_s.max(1)),
        secure_cookie: tls.is_some(),
        ..Default::default()
    }));
    let _ = metrics.auth.set(auth.counters.clone());
    if let Some(t) = &tls {
        let _ = metrics.tls.set(t.counters.clone());
    }
    Ok((tls, auth))
}
