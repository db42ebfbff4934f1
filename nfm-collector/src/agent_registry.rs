//! The agent registry (issue 15): what the collector remembers of every agent across restarts —
//! host, version, capabilities, interval, last seen — so that `/api/agents` still names an agent
//! after a restart (ingest's restored sessions carry only replay marks) and shows agents that
//! went silent, and `/metrics` counts them (`nfm_agents_silent`).
//!
//! Owned by the API actor, fed by ingest's snapshots, saved to `DATA_DIR/agents.json` crash-safely
//! (`persist::write_atomic`): soon after a new agent or a changed identity (1 s after it, and
//! at most once per second per thousand agents, up to 30 s, so a large fleet joining does not
//! rewrite a large file many times a second), else at most every 30 s while last-seen times
//! move, and at shutdown. Agents silent longer than the retention
//! period are forgotten; at most [`MAX_AGENTS`] are kept (the longest silent go first).

use crate::pipeline::{AgentView, IngestSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const MAX_AGENTS: usize = 200_000;
/// An agent is silent after this many of its intervals without a frame.
pub const SILENT_INTERVALS: u64 = 3;
const SAVE_IDENTITY_AFTER: Duration = Duration::from_secs(1);
const SAVE_LAST_SEEN_EVERY: Duration = Duration::from_secs(30);

/// What is remembered of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: u64,
    pub host_name: String,
    pub agent_version: String,
    pub capabilities: u64,
    pub simulated: bool,
    pub interval_ms: u32,
    pub transport: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    agents: Vec<AgentRecord>,
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    path: Option<PathBuf>,
    agents: BTreeMap<u64, AgentRecord>,
    /// Unsaved: an identity changed (since), last-seen times moved.
    identity_dirty: Option<Instant>,
    seen_dirty: bool,
    last_save: Instant,
    /// Used when an agent's own interval is unknown (0).
    default_interval_ms: u64,
    retention_ms: u64,
}

impl Registry {
    /// Loads `path` (a missing file is an empty registry; an unreadable one is reported and
    /// set aside as `agents.json.bad`, never fatal).
    pub fn open(path: Option<PathBuf>, default_interval_ms: u64, retention_ms: u64) -> Registry {
        let mut agents = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(b) => match serde_json::from_slice::<Saved>(&b) {
                    Ok(s) => agents = s.agents.into_iter().map(|a| (a.agent_id, a)).collect(),
                    Err(e) => {
                        log::error!(
                            "agent registry {}: {e}; starting empty (kept as .bad)",
                            p.display()
                        );
                        let _ = std::fs::rename(p, p.with_extension("json.bad"));
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::error!("agent registry {}: {e}; starting empty", p.display()),
            }
        }
        Registry {
            path,
            agents,
            identity_dirty: None,
            seen_dirty: false,
            last_save: Instant::now(),
            default_interval_ms: default_interval_ms.max(1),
            retention_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&AgentRecord> {
        self.agents.get(&id)
    }

    /// Takes in ingest's snapshot: new agents, identities (from a Hello), last-seen times.
    pub fn observe(&mut self, snap: &IngestSnapshot, now_ms: u64) {
        for a in &snap.agents {
            let has_identity = !a.host_name.is_empty() || !a.agent_version.is_empty();
            match self.agents.get_mut(&a.agent_id) {
                Some(r) => {
                    if has_identity
                        && (r.host_name != a.host_name
                            || r.agent_version != a.agent_version
                            || r.capabilities != a.capabilities
                            || r.simulated != a.simulated
                            || (a.interval_ms != 0 && r.interval_ms != a.interval_ms))
                    {
                        r.host_name = a.host_name.clone();
                        r.agent_version = a.agent_version.clone();
                        r.capabilities = a.capabilities;
                        r.simulated = a.simulated;
                        if a.interval_ms != 0 {
                            r.interval_ms = a.interval_ms;
                        }
                        r.transport = a.transport.clone();
                        self.identity_dirty.get_or_insert_with(Instant::now);
                    }
                    if a.last_seen_ms > r.last_seen_ms {
                        r.last_seen_ms = a.last_seen_ms;
                        self.seen_dirty = true;
                    }
                }
                None if has_identity || a.last_seen_ms > 0 => {
                    self.agents.insert(
                        a.agent_id,
                        AgentRecord {
                            agent_id: a.agent_id,
                            host_name: a.host_name.clone(),
                            agent_version: a.agent_version.clone(),
                            capabilities: a.capabilities,
                            simulated: a.simulated,
                            interval_ms: a.interval_ms,
                            transport: a.transport.clone(),
                            first_seen_ms: now_ms,
                            last_seen_ms: a.last_seen_ms,
                        },
                    );
                    self.identity_dirty.get_or_insert_with(Instant::now);
                }
                None => {}
            }
        }
        self.forget(now_ms);
    }

    fn forget(&mut self, now_ms: u64) {
        let n = self.agents.len();
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        self.agents
            .retain(|_, a| a.last_seen_ms >= cutoff || a.last_seen_ms == 0);
        if self.agents.len() > MAX_AGENTS {
            let mut by_age: Vec<(u64, u64)> = self
                .agents
                .values()
                .map(|a| (a.last_seen_ms, a.agent_id))
                .collect();
            by_age.sort_unstable();
            for (_, id) in &by_age[..self.agents.len() - MAX_AGENTS] {
                self.agents.remove(id);
            }
        }
        if self.agents.len() != n {
            self.identity_dirty.get_or_insert_with(Instant::now);
        }
    }

    /// Saves when due (see the module doc); `force` at shutdown. Err: the save failed.
    pub fn save_if_due(&mut self, force: bool) -> Result<bool, String> {
        let Some(p) = self.path.clone() else {
            return Ok(false);
        };
        // A large registry is rewritten less often: 1 s per thousand agents, at most 30 s.
        let spacing = Duration::from_millis((self.agents.len() as u64).min(30_000));
        let due = force && (self.identity_dirty.is_some() || self.seen_dirty)
            || self.identity_dirty.is_some_and(|t| {
                t.elapsed() >= SAVE_IDENTITY_AFTER && self.last_save.elapsed() >= spacing
            })
            || (self.seen_dirty && self.last_save.elapsed() >= SAVE_LAST_SEEN_EVERY);
        if !due {
            return Ok(false);
        }
        self.last_save = Instant::now();
        let saved = Saved {
            version: 1,
            agents: self.agents.values().cloned().collect(),
        };
        let body = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
        crate::persist::write_atomic(&p, &body)
            .map_err(|e| format!("agent registry {}: {e}", p.display()))?;
        self.identity_dirty = None;
        self.seen_dirty = false;
        Ok(true)
    }

    /// Is agent `r` silent at `now_ms` (no frame for [`SILENT_INTERVALS`] of its intervals)?
    pub fn is_silent(&self, r: &AgentRecord, now_ms: u64) -> bool {
        let iv = if r.interval_ms > 0 {
            r.interval_ms as u64
        } else {
            self.default_interval_ms
        };
        r.last_seen_ms > 0 && now_ms.saturating_sub(r.last_seen_ms) > SILENT_INTERVALS * iv
    }

    /// Silent agents, longest silent first.
    pub fn silent(&self, now_ms: u64) -> Vec<&AgentRecord> {
        let mut v: Vec<&AgentRecord> = self
            .agents
            .values()
            .filter(|r| self.is_silent(r, now_ms))
            .collect();
        v.sort_by_key(|r| (r.last_seen_ms, r.agent_id));
        v
    }

    /// `/api/agents`: ingest's sessions, with identities the registry remembers filled in where
    /// a session has none yet (restored after a restart, no Hello since), then the remembered
    /// agents without a session; each with `silent` and `session`.
    pub fn view(&self, snap: &IngestSnapshot, now_ms: u64) -> serde_json::Value {
        let mut list = Vec::with_capacity(self.agents.len().max(snap.agents.len()));
        let mut listed = std::collections::HashSet::new();
        for a in &snap.agents {
            listed.insert(a.agent_id);
            let mut a: AgentView = a.clone();
            let r = self.agents.get(&a.agent_id);
            if let Some(r) = r {
                if a.host_name.is_empty() && a.agent_version.is_empty() {
                    a.host_name = r.host_name.clone();
                    a.agent_version = r.agent_version.clone();
                    a.capabilities = r.capabilities;
                    a.simulated = r.simulated;
                    if a.interval_ms == 0 {
                        a.interval_ms = r.interval_ms;
                    }
                }
                a.last_seen_ms = a.last_seen_ms.max(r.last_seen_ms);
            }
            let silent = r.is_some_and(|r| self.is_silent(r, now_ms));
            let mut v = serde_json::to_value(&a).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("silent".into(), silent.into());
                o.insert("session".into(), true.into());
            }
            list.push(v);
        }
        // Remembered agents without a session: the same fields (counters of this run: none).
        for r in self
            .agents
            .values()
            .filter(|r| !listed.contains(&r.agent_id))
        {
            let a = AgentView {
                agent_id: r.agent_id,
                host_name: r.host_name.clone(),
                agent_version: r.agent_version.clone(),
                epoch: 0,
                transport: r.transport.clone(),
                simulated: r.simulated,
                capabilities: r.capabilities,
                interval_ms: r.interval_ms,
                last_seen_ms: r.last_seen_ms,
                frames: 0,
                records: 0,
                lost: 0,
                duplicates: 0,
                skew_aligned: 0,
                misaligned: 0,
                rebucketed: 0,
                rejected: Default::default(),
                stats: None,
                goodbye: None,
                placement: None,
            };
            let mut v = serde_json::to_value(&a).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("first_seen_ms".into(), r.first_seen_ms.into());
                o.insert("silent".into(), self.is_silent(r, now_ms).into());
                o.insert("session".into(), false.into());
            }
            list.push(v);
        }
        serde_json::json!({
            "agents": list,
            "rejected": snap.rejected,
            "silent": self.silent(now_ms).len(),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn agent(id: u64, host: &str, seen: u64) -> AgentView {
        AgentView {
            agent_id: id,
            host_name: host.into(),
            agent_version: if host.is_empty() {
                ""
            } else {
                "nfm-agent/0.1.0"
            }
            .into(),
            epoch: 1,
            transport: "tcp".into(),
            simulated: !host.is_empty(),
            capabilities: if host.is_empty() { 0 } else { 9 },
            interval_ms: 5_000,
            last_seen_ms: seen,
            frames: 1,
            records: 1,
            lost: 0,
            duplicates: 0,
            skew_aligned: 0,
            misaligned: 0,
            rebucketed: 0,
            rejected: Default::default(),
            stats: None,
            goodbye: None,
            placement: None,
        }
    }

    fn snap(agents: Vec<AgentView>) -> IngestSnapshot {
        IngestSnapshot {
            agents,
            rejected: Default::default(),
        }
    }

    /// A restart: the saved registry fills in the identity of a restored session (empty host)
    /// and lists an agent that has no session any more; both silent after three intervals.
    #[test]
    fn test_identity_survives_a_restart_and_silence_shows() {
        let dir = std::env::temp_dir().join(format!("nfm-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("agents.json");
        let _ = std::fs::remove_file(&p);
        let t = 1_000_000;
        let mut r = Registry::open(Some(p.clone()), 5_000, 86_400_000);
        r.observe(&snap(vec![agent(1, "web-1", t), agent(2, "db-1", t)]), t);
        assert!(r.save_if_due(true).unwrap());
        assert!(!r.save_if_due(false).unwrap(), "nothing new to save");

        let r = Registry::open(Some(p.clone()), 5_000, 86_400_000);
        assert_eq!(r.len(), 2);
        // After the restart ingest restores agent 1's session without a Hello: no identity.
        let now = t + 16_000;
        let v = r.view(&snap(vec![agent(1, "", 0)]), now);
        let list = v["agents"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{v}");
        assert_eq!(list[0]["host_name"], "web-1");
        assert_eq!(list[0]["agent_version"], "nfm-agent/0.1.0");
        assert_eq!(list[0]["capabilities"], 9);
        assert_eq!(list[0]["simulated"], true);
        assert_eq!(list[0]["last_seen_ms"], t);
        assert_eq!(list[0]["silent"], true);
        assert_eq!(list[1]["host_name"], "db-1");
        assert_eq!(list[1]["session"], false);
        assert_eq!(list[1]["records"], 0, "the same fields as a session's");
        assert_eq!(v["silent"], 2);
        // Within three intervals: not silent.
        assert!(r.silent(t + 15_000).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_a_corrupt_file_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("nfm-registry-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("agents.json");
        std::fs::write(&p, b"{torn").unwrap();
        let r = Registry::open(Some(p.clone()), 5_000, 86_400_000);
        assert!(r.is_empty());
        assert!(dir.join("agents.json.bad").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
