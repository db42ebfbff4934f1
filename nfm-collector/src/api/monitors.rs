//! Monitors through the API: create, replace and validate them against the topology, and load
//! the saved and configured monitors at start.

use super::{Api, ApiError};
use crate::http::Reply;
use crate::monitor::{parse_monitors, Monitor, MAX_MONITORS};
use crate::topology::Topology;
use serde_json::Value;
use std::collections::BTreeMap;

impl Api {
    pub(super) fn parse_monitor(body: &[u8]) -> Result<Monitor, String> {
        serde_json::from_slice::<Monitor>(body).map_err(|e| format!("bad monitor JSON: {e}"))
    }

    pub(super) fn create_monitor(&mut self, body: &[u8]) -> Result<Reply, ApiError> {
        let m = Api::parse_monitor(body)?;
        m.validate(&self.topology)?;
        if self.monitors.contains_key(&m.name) {
            return Err(ApiError::Conflict(format!(
                "monitor `{}` exists; use PUT to change it",
                m.name
            )));
        }
        if self.monitors.len() >= MAX_MONITORS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_MONITORS} monitors"
            )));
        }
        self.monitors.insert(m.name.clone(), m.clone());
        self.publish_monitors();
        Ok(Reply::json(201, &m))
    }

    /// `GET /api/monitors[?tag=KEY:VALUE | ?tag=KEY]`: every monitor, or those with the tag.
    pub(super) fn list_monitors(
        &self,
        p: &std::collections::HashMap<String, String>,
    ) -> Result<Reply, ApiError> {
        match p.get("tag") {
            None => Ok(Reply::json(200, &self.monitors())),
            Some(t) if t.is_empty() || t.starts_with(':') => Err(ApiError::BadRequest(format!(
                "tag filter `{t}` is not KEY:VALUE or KEY"
            ))),
            Some(t) => {
                let list: Vec<&Monitor> = self.monitors.values().filter(|m| m.has_tag(t)).collect();
                Ok(Reply::json(200, &list))
            }
        }
    }

    pub(super) fn put_monitor(&mut self, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let mut v: Value =
            serde_json::from_slice(body).map_err(|e| format!("bad monitor JSON: {e}"))?;
        if let Some(o) = v.as_object_mut() {
            o.entry("name").or_insert_with(|| Value::from(name));
        }
        let m: Monitor = serde_json::from_value(v).map_err(|e| format!("bad monitor JSON: {e}"))?;
        if m.name != name {
            return Err(ApiError::BadRequest(format!(
                "the body names monitor `{}` but the URL `{name}`",
                m.name
            )));
        }
        if !self.monitors.contains_key(name) {
            return Err(ApiError::unknown_monitor(name));
        }
        m.validate(&self.topology)?;
        self.monitors.insert(m.name.clone(), m.clone());
        self.publish_monitors();
        Ok(Reply::json(200, &m))
    }
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
    if all.len() > MAX_MONITORS {
        return Err(format!(
            "{} monitors (saved and from the file): at most {MAX_MONITORS}",
            all.len()
        ));
    }
    Ok(all.into_values().collect())
}
