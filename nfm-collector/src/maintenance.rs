//! Maintenance windows (issue 15): periods in which work on the network is planned, so that
//! what the health evaluator sees then is neither announced (no incident notification is sent)
//! nor learned into its baselines (planned disruption must not become the new normal).
//!
//! The API creates, lists and deletes them (`/api/maintenance`, docs/api.md) and saves them in
//! `DATA_DIR/maintenance.json`; the health stage receives the set as a message and asks
//! [`Windows::covers`] for each closed interval. Times are Unix ms in the intervals' clock.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// At most this many windows are kept (creating one more is refused).
pub const MAX_WINDOWS: usize = 256;
/// A window may last at most 30 days.
pub const MAX_WINDOW_MS: u64 = 30 * 86_400_000;
/// Ended windows are kept this long (for the record), then forgotten.
pub const KEEP_ENDED_MS: u64 = 7 * 86_400_000;

/// One maintenance window: `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub id: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub created_ms: u64,
}

/// What a client posts to create a window. `start_ms` defaults to now; give `end_ms` or
/// `duration_ms`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

/// Every window in force or planned, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    pub windows: Vec<Window>,
    /// The next id to hand out (ids are never reused).
    pub next_id: u64,
}

impl Windows {
    /// Does any window overlap `[start_ms, end_ms)`?
    pub fn covers(&self, start_ms: u64, end_ms: u64) -> bool {
        let end_ms = end_ms.max(start_ms.saturating_add(1));
        self.windows
            .iter()
            .any(|w| w.start_ms < end_ms && start_ms < w.end_ms)
    }

    /// Is a window in force at `t_ms`?
    pub fn active_at(&self, t_ms: u64) -> bool {
        self.covers(t_ms, t_ms + 1)
    }

    /// Validates and adds a window; returns it, or why it was refused.
    pub fn add(&mut self, new: NewWindow, now_ms: u64) -> Result<Window, String> {
        let start_ms = new.start_ms.unwrap_or(now_ms);
        let end_ms = match (new.end_ms, new.duration_ms) {
            (Some(_), Some(_)) => return Err("give `end_ms` or `duration_ms`, not both".into()),
            (Some(e), None) => e,
            (None, Some(d)) => start_ms.saturating_add(d),
            (None, None) => return Err("a window needs `end_ms` or `duration_ms`".into()),
        };
        if end_ms <= start_ms {
            return Err(format!(
                "the window ends ({end_ms}) before or when it starts ({start_ms})"
            ));
        }
        if end_ms - start_ms > MAX_WINDOW_MS {
            return Err("a window may last at most 30 days".into());
        }
        if end_ms <= now_ms {
            return Err(format!(
                "the window ended already ({end_ms} ≤ now {now_ms})"
            ));
        }
        if new.reason.chars().count() > 512 {
            return Err("`reason` is longer than 512 characters".into());
        }
        self.prune(now_ms);
        if self.windows.len() >= MAX_WINDOWS {
            return Err(format!("at most {MAX_WINDOWS} maintenance windows"));
        }
        self.next_id = self.next_id.max(1);
        let w = Window {
            id: self.next_id,
            start_ms,
            end_ms,
            reason: new.reason,
            created_ms: now_ms,
        };
        self.next_id += 1;
        self.windows.push(w.clone());
        self.windows.sort_by_key(|w| (w.start_ms, w.id));
        Ok(w)
    }

    /// Removes window `id`; false when there is none.
    pub fn remove(&mut self, id: u64) -> bool {
        let n = self.windows.len();
        self.windows.retain(|w| w.id != id);
        self.windows.len() != n
    }

    /// Forgets windows that ended more than [`KEEP_ENDED_MS`] ago.
    pub fn prune(&mut self, now_ms: u64) {
        self.windows
            .retain(|w| w.end_ms.saturating_add(KEEP_ENDED_MS) > now_ms);
    }

    /// Loads the saved windows (none when the file does not exist).
    pub fn load(path: &Path) -> Result<Windows, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Windows::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Saves the windows crash-safely.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::persist::write_atomic(path, &body)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn new(start: u64, end: u64) -> NewWindow {
        NewWindow {
            start_ms: Some(start),
            end_ms: Some(end),
            ..Default::default()
        }
    }

    #[test]
    fn test_covers_by_overlap() {
        let mut w = Windows::default();
        w.add(new(100, 200), 0).unwrap();
        assert!(w.covers(150, 160));
        assert!(w.covers(50, 101), "an interval ending inside overlaps");
        assert!(w.covers(199, 300), "an interval starting inside overlaps");
        assert!(!w.covers(200, 300), "end is exclusive");
        assert!(!w.covers(0, 100));
        assert!(w.active_at(100) && !w.active_at(200));
    }

    #[test]
    fn test_bad_windows_are_refused_with_a_reason() {
        let mut w = Windows::default();
        assert!(w.add(new(200, 100), 0).unwrap_err().contains("before"));
        assert!(w.add(new(0, 50), 100).unwrap_err().contains("ended"));
        assert!(w
            .add(new(0, MAX_WINDOW_MS + 1), 0)
            .unwrap_err()
            .contains("30 days"));
        let both = NewWindow {
            end_ms: Some(10),
            duration_ms: Some(10),
            ..Default::default()
        };
        assert!(w.add(both, 0).unwrap_err().contains("not both"));
        assert!(w.add(NewWindow::default(), 0).is_err());
        assert!(w.windows.is_empty());
    }

    #[test]
    fn test_ids_are_not_reused_and_survive_a_save() {
        let dir = std::env::temp_dir().join(format!("nfm-maint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("maintenance.json");
        let mut w = Windows::default();
        let a = w.add(new(10, 20), 0).unwrap();
        let b = w
            .add(
                NewWindow {
                    duration_ms: Some(5),
                    ..Default::default()
                },
                30,
            )
            .unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!((b.start_ms, b.end_ms), (30, 35));
        assert!(w.remove(1) && !w.remove(1));
        w.save(&p).unwrap();
        let mut back = Windows::load(&p).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.add(new(40, 50), 0).unwrap().id, 3);
        assert_eq!(
            Windows::load(&dir.join("none.json")).unwrap(),
            Windows::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
