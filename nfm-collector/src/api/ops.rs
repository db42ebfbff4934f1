//! Operations state of the API actor (issue 15): maintenance windows (`/api/maintenance`), the
//! agent registry behind `/api/agents`, and the alerting families of `/metrics` (open incidents,
//! silent agents, maintenance in force).

use super::{Api, ApiError};
use crate::agent_registry::Registry;
use crate::http::Reply;
use crate::maintenance::{NewWindow, Windows};
use crate::metrics::{render_alerting, AlertingView, OpenIncident, SilentAgent};
use crate::now_ms;
use crate::pipeline::HealthMsg;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// The API's operations state.
pub struct Ops {
    pub registry: Registry,
    pub maintenance: Windows,
    /// `DATA_DIR/maintenance.json`.
    pub maintenance_path: Option<PathBuf>,
    /// Where the windows go (the health stage), and whether the latest set is still to be sent
    /// (try_send: the API never waits on the pipeline; retried on the next message).
    pub to_health: Option<SyncSender<HealthMsg>>,
    pub unsent: bool,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            registry: Registry::open(None, 5_000, 7 * 86_400_000),
            maintenance: Windows::default(),
            maintenance_path: None,
            to_health: None,
            unsent: false,
        }
    }
}

impl Api {
    /// Issue 15: the agent registry, the saved maintenance windows and the health stage's
    /// channel (set by `collector.rs`).
    pub fn with_ops(mut self, ops: Ops) -> Api {
        self.ops = ops;
        self.ops.unsent = true;
        self.publish_maintenance();
        self
    }

    /// Sends the windows to the health stage if they changed and it has room.
    pub(super) fn publish_maintenance(&mut self) {
        if !self.ops.unsent {
            return;
        }
        let Some(tx) = &self.ops.to_health else {
            self.ops.unsent = false;
            return;
        };
        let w = Arc::new(self.ops.maintenance.clone());
        self.metrics.sent(crate::metrics::Chan::Health);
        match tx.try_send(HealthMsg::Maintenance(w)) {
            Ok(()) => self.ops.unsent = false,
            Err(_) => self.metrics.received(crate::metrics::Chan::Health),
        }
    }

    /// Err: a 500 reply (the change is in force but not saved).
    fn save_maintenance(&mut self) -> Result<(), Reply> {
        self.ops.unsent = true;
        self.publish_maintenance();
        if let Some(p) = &self.ops.maintenance_path {
            if let Err(e) = self.ops.maintenance.save(p) {
                self.metrics
                    .alerting
                    .state_save_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "api: cannot save maintenance windows to {}: {e}",
                    p.display()
                );
                return Err(Reply::error(
                    500,
                    format!("the change is in force but could not be saved: {e}"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn maintenance_list(&self) -> Reply {
        let now = now_ms();
        let list: Vec<serde_json::Value> = self
            .ops
            .maintenance
            .windows
            .iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "active".into(),
                        (w.start_ms <= now && now < w.end_ms).into(),
                    );
                }
                v
            })
            .collect();
        Reply::json(
            200,
            &json!({"now_ms": now, "active": self.ops.maintenance.active_at(now), "windows": list}),
        )
    }

    pub(super) fn maintenance_create(&mut self, body: &[u8]) -> Result<Reply, ApiError> {
        let new: NewWindow = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("bad maintenance window JSON: {e}")))?;
        let w = self
            .ops
            .maintenance
            .add(new, now_ms())
            .map_err(ApiError::BadRequest)?;
        log::info!(
            "api: maintenance window {} from {} to {} ({})",
            w.id,
            w.start_ms,
            w.end_ms,
            w.reason
        );
        Ok(self
            .save_maintenance()
            .map_or_else(|r| r, |()| Reply::json(201, &w)))
    }

    pub(super) fn maintenance_delete(&mut self, id: &str) -> Result<Reply, ApiError> {
        let n: u64 = id.parse().map_err(|_| {
            ApiError::BadRequest(format!("maintenance window id `{id}` is not a number"))
        })?;
        if !self.ops.maintenance.remove(n) {
            return Err(ApiError::NotFound(format!("no maintenance window {n}")));
        }
        Ok(self
            .save_maintenance()
            .map_or_else(|r| r, |()| Reply::json(200, &json!({"deleted": n}))))
    }

    /// Ingest's snapshot into the registry (saved when due).
    pub(super) fn observe_agents(&mut self, force_save: bool) {
        self.ops.registry.observe(&self.ingest, now_ms());
        if let Err(e) = self.ops.registry.save_if_due(force_save) {
            self.metrics
                .alerting
                .state_save_errors
                .fetch_add(1, Ordering::Relaxed);
            log::error!("api: {e}");
        }
    }

    pub(super) fn agents_json(&self) -> Reply {
        Reply::json(200, &self.ops.registry.view(&self.ingest, now_ms()))
    }

    /// Incidents open at the newest interval: components named within the hold-down of the
    /// newest interval's end (the rule of `/api/incidents`), from the last summaries held.
    fn open_incidents(&self) -> Vec<OpenIncident> {
        let Some(newest_end) = self.history.values().next_back().map(|s| s.end_ms) else {
            return Vec::new();
        };
        let newest_len = self
            .history
            .values()
            .next_back()
            .map_or(0, |s| s.end_ms.saturating_sub(s.start_ms));
        let hold = self.hold_down.intervals_of(newest_len);
        let mut open: BTreeMap<String, OpenIncident> = BTreeMap::new();
        // The hold-down is counted in intervals: the last few summaries are enough.
        for s in self.history.values().rev().take(hold as usize + 2) {
            let len = s.end_ms.saturating_sub(s.start_ms);
            if newest_end > s.end_ms.saturating_add(self.hold_down.ms_of(len)) {
                continue;
            }
            for v in &s.verdicts {
                open.entry(v.component.to_string())
                    .or_insert_with(|| OpenIncident {
                        component: v.component.to_string(),
                        kind: serde_json::to_value(v.component.kind)
                            .ok()
                            .and_then(|k| k.as_str().map(String::from))
                            .unwrap_or_default(),
                        blame: serde_json::to_value(v.blame)
                            .ok()
                            .and_then(|k| k.as_str().map(String::from))
                            .unwrap_or_default(),
                        first_seen_ms: v.first_seen_ms,
                    });
            }
        }
        open.into_values().collect()
    }

    /// The alerting families of `/metrics`.
    pub(super) fn alerting_metrics(&self) -> String {
        let now = now_ms();
        let incidents = self.open_incidents();
        let silent: Vec<SilentAgent> = self
            .ops
            .registry
            .silent(now)
            .into_iter()
            .map(|r| SilentAgent {
                agent_id: r.agent_id,
                host_name: r.host_name.clone(),
                last_seen_ms: r.last_seen_ms,
            })
            .collect();
        render_alerting(
            &self.metrics,
            &AlertingView {
                incidents: &incidents,
                silent: &silent,
                agents_known: self.ops.registry.len().max(self.ingest.agents.len()),
                maintenance_active: self.ops.maintenance.active_at(now),
            },
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::api::ApiConfig;
    use crate::metrics::Metrics;
    use crate::topology::Topology;
    use std::sync::mpsc::{sync_channel, Receiver};

    fn api(dir: &std::path::Path) -> (Api, Receiver<HealthMsg>) {
        let (rtx, _) = sync_channel(16);
        let (atx, _) = sync_channel(16);
        let (htx, hrx) = sync_channel(1);
        let cfg = ApiConfig {
            topology_path: None,
            monitors_path: None,
            retention_ms: 7 * 86_400_000,
            max_history_intervals: 100,
            max_history_bytes: 1 << 30,
            top_k: 20,
        };
        let t = Arc::new(Topology::parse(include_str!("../../examples/topology.toml")).unwrap());
        let a = Api::new(cfg, t, vec![], Arc::new(Metrics::default()), rtx, atx).with_ops(Ops {
            maintenance_path: Some(dir.join("maintenance.json")),
            to_health: Some(htx),
            ..Ops::default()
        });
        (a, hrx)
    }

    /// Create, list, delete; bad bodies get a 400 with a reason (the HTTP front lets only the
    /// admin token write, `crate::auth`); every
    /// change reaches the health stage (retried when its channel was full) and the file.
    #[test]
    fn test_maintenance_crud_persists_and_reaches_the_health_stage() {
        let dir = std::env::temp_dir().join(format!("nfm-ops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut a, hrx) = api(&dir);
        let tok = Some("Bearer admin");
        assert!(matches!(hrx.try_recv(), Ok(HealthMsg::Maintenance(w)) if w.windows.is_empty()));
        let body = br#"{"duration_ms": 60000, "reason": "switch upgrade"}"#;
        let r = a.route("POST", "/api/maintenance", tok, body);
        assert_eq!(r.status, 201);
        let w = r.json_value();
        assert_eq!(w["id"], 1);
        assert_eq!(w["reason"], "switch upgrade");
        let Ok(HealthMsg::Maintenance(sent)) = hrx.try_recv() else {
            panic!("the windows were not sent to the health stage")
        };
        assert_eq!(sent.windows.len(), 1);
        for bad in [
            &b"{"[..],
            br#"{"end_ms": 1}"#,
            br#"{"duration_ms": 0}"#,
            br#"{"duration_ms": 5, "bogus": 1}"#,
        ] {
            let r = a.route("POST", "/api/maintenance", tok, bad);
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
            assert!(r.json_value()["error"].is_string());
        }
        let v = a.route("GET", "/api/maintenance", tok, b"").json_value();
        assert_eq!(v["active"], true);
        assert_eq!(v["windows"][0]["active"], true);
        let text = a.prometheus();
        assert!(text.contains("\nnfm_maintenance_active 1\n"), "{text}");
        // The health stage's channel is full: the next change waits and goes on a later message.
        let r = a.route("POST", "/api/maintenance", tok, body);
        assert_eq!(r.status, 201);
        assert_eq!(
            a.route("DELETE", "/api/maintenance/1", tok, b"").status,
            200
        );
        assert_eq!(
            a.route("DELETE", "/api/maintenance/1", tok, b"").status,
            404
        );
        assert_eq!(
            a.route("DELETE", "/api/maintenance/x", tok, b"").status,
            400
        );
        let Ok(HealthMsg::Maintenance(sent)) = hrx.try_recv() else {
            panic!("expected the second set")
        };
        assert_eq!(sent.windows.len(), 2, "the set sent when there was room");
        a.publish_maintenance();
        let Ok(HealthMsg::Maintenance(sent)) = hrx.try_recv() else {
            panic!("expected the latest set after a retry")
        };
        assert_eq!(sent.windows.len(), 1);
        assert_eq!(sent.windows[0].id, 2);
        let saved = crate::maintenance::Windows::load(&dir.join("maintenance.json")).unwrap();
        assert_eq!(saved.windows.len(), 1);
        assert_eq!(saved.windows[0].id, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
