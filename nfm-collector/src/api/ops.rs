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
        let hold = crate::model::INCIDENT_HOLD_DOWN_INTERVALS;
        let mut open: BTreeMap<String, OpenIncident> = BTreeMap::new();
        // The hold-down is counted in intervals: the last few summaries are enough.
        for s in self.history.values().rev().take(hold as usize + 2) {
            let len = s.end_ms.saturating_sub(s.start_ms);
            if newest_end > s.end_ms.saturating_add(hold.saturating_mul(len)) {
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
