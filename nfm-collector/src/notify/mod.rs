//! The notifier (issue 15): for users without Prometheus, one webhook POST when an incident
//! opens and one when it resolves, with its evidence, to every `[[webhook]]` of the config.
//!
//! An actor on its own thread, fed by the health stage through a bounded channel that the
//! health stage never waits on (an event that does not fit is dropped and counted). Each
//! webhook has its own bounded queue, delivered in order: a failed POST (unreachable, timeout,
//! non-2xx) is retried with exponential back-off (`retry_initial` doubling up to `retry_max`)
//! and the events behind it wait, so an `opened` never arrives after its `resolved`. Nothing is
//! dropped while a receiver is down unless its queue is full, and then the oldest goes first
//! (counted). Counters: `nfm_notifications_{sent,failed,retried,dropped,suppressed}_total`,
//! `nfm_notifications_queued` (`metrics::AlertingMetrics`).
//!
//! `body`: the generic JSON body and the Slack (`format = "slack"`) body.

mod body;

pub use body::{json_body, slack_body};

use crate::metrics::Metrics;
use crate::pipeline::{IncidentEvent, NotifyMsg};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"event": "incident.opened", "incident": {...}, "dashboard_url": ...}` (docs/collector.md).
    #[default]
    Json,
    /// A Slack incoming-webhook message: `{"text": ..., "blocks": [...]}`.
    Slack,
}

/// One `[[webhook]]` entry of the collector config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    #[serde(default)]
    pub format: Format,
}

/// A validated webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub token: Option<String>,
    pub format: Format,
    /// `scheme://host:port/…`: what logs show (a Slack URL's path is its secret).
    pub shown: String,
}

impl WebhookConfig {
    /// Checks the URL (http or https, with a host); `n` is the entry's position, for the message.
    pub fn validate(&self, n: usize) -> Result<Webhook, String> {
        let bad = |why: &str| format!("webhook {n}: url `{}` {why}", redact(&self.url));
        let uri: ureq::http::Uri = self
            .url
            .parse()
            .map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            return Err(bad("must start with http:// or https://"));
        }
        let host = uri.host().unwrap_or("");
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if let Some(t) = &self.token {
            if t.is_empty() || t.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "webhook {n}: `token` must be non-empty without control characters"
                ));
            }
        }
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Webhook {
            url: self.url.clone(),
            token: self.token.clone(),
            format: self.format,
            shown: format!("{scheme}://{host}{port}/…"),
        })
    }
}

/// The URL without its path and query (for error messages: the path may be a secret).
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((s, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{s}://{host}/…")
        }
        None => url.chars().take(16).collect::<String>() + "…",
    }
}

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhooks: Vec<Webhook>,
    /// Notifications each webhook may hold while its receiver is down; beyond, the oldest is
    /// dropped (counted).
    pub queue_len: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// One attempt's limit (connect, send, answer).
    pub timeout: Duration,
    /// The dashboard's address for the links in notifications (`http://HOST:PORT/`).
    pub dashboard_url: Option<String>,
}

impl NotifyConfig {
    pub fn new(webhooks: Vec<Webhook>) -> NotifyConfig {
        NotifyConfig {
            webhooks,
            queue_len: 1000,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            dashboard_url: None,
        }
    }
}

struct Pending {
    body: Vec<u8>,
    /// For logs: `opened az-pair:a|b`.
    what: String,
    attempts: u32,
    due: Instant,
}

/// The notifier actor.
pub struct Notifier {
    cfg: NotifyConfig,
    queues: Vec<VecDeque<Pending>>,
    agent: ureq::Agent,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(cfg: NotifyConfig, metrics: Arc<Metrics>) -> Notifier {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("nfm-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Notifier {
            queues: cfg.webhooks.iter().map(|_| VecDeque::new()).collect(),
            cfg,
            agent,
            metrics,
        }
    }

    /// Queues an event on every webhook (the oldest of a full queue is dropped).
    pub fn enqueue(&mut self, e: &IncidentEvent) {
        let a = &self.metrics.alerting;
        let what = format!("{:?} {}", e.state, e.verdict.component).to_lowercase();
        let link = self.cfg.dashboard_url.as_deref();
        for (w, q) in self.cfg.webhooks.iter().zip(&mut self.queues) {
            let body = match w.format {
                Format::Json => json_body(e, link),
                Format::Slack => slack_body(e, link),
            };
            if q.len() >= self.cfg.queue_len.max(1) {
                if let Some(old) = q.pop_front() {
                    a.notify_dropped_queue.fetch_add(1, Ordering::Relaxed);
                    a.notify_queued.fetch_sub(1, Ordering::Relaxed);
                    log::warn!(
                        "notify: {} queue full ({}): dropped the oldest notification ({})",
                        w.shown,
                        self.cfg.queue_len,
                        old.what
                    );
                }
            }
            let due = q.back().map_or_else(Instant::now, |b| b.due);
            q.push_back(Pending {
                body,
                what: what.clone(),
                attempts: 0,
                due,
            });
            a.notify_queued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One POST; Err says why it failed.
    fn post(&self, w: &Webhook, body: &[u8]) -> Result<(), String> {
        let mut req = self
            .agent
            .post(&w.url)
            .header("Content-Type", "application/json");
        if let Some(t) = &w.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.send(body) {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Delivers every notification that is due, in order per webhook; a failure reschedules
    /// its notification with back-off and holds the ones behind it.
    pub fn deliver_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.queues.len() {
            while let Some(head) = self.queues[i].front() {
                if head.due > now {
                    break;
                }
                let w = &self.cfg.webhooks[i];
                let a = &self.metrics.alerting;
                match self.post(w, &head.body) {
                    Ok(()) => {
                        a.notify_sent.fetch_add(1, Ordering::Relaxed);
                        a.notify_queued.fetch_sub(1, Ordering::Relaxed);
                        self.queues[i].pop_front();
                    }
                    Err(why) => {
                        a.notify_failed.fetch_add(1, Ordering::Relaxed);
                        a.notify_retried.fetch_add(1, Ordering::Relaxed);
                        let head = self.queues[i].front_mut().expect("head");
                        head.attempts = head.attempts.saturating_add(1);
                        let back = self
                            .cfg
                            .retry_initial
                            .saturating_mul(1u32 << (head.attempts - 1).min(16))
                            .min(self.cfg.retry_max);
                        head.due = Instant::now() + back;
                        log::warn!(
                            "notify: {} {} (attempt {}): {why}; retrying in {:?}",
                            w.shown,
                            head.what,
                            head.attempts,
                            back
                        );
                        break;
                    }
                }
            }
        }
    }

    /// Time until the next notification is due (None: nothing queued).
    fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|p| p.due.saturating_duration_since(now))
            .min()
    }

    pub fn run(mut self, rx: Receiver<NotifyMsg>) {
        loop {
            let msg = match self.next_due() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => rx.recv_timeout(d),
            };
            match msg {
                Ok(NotifyMsg::Incident(e)) => self.enqueue(&e),
                Ok(NotifyMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take what else is waiting before sending.
            let mut stop = false;
            while let Ok(m) = rx.try_recv() {
                match m {
                    NotifyMsg::Incident(e) => self.enqueue(&e),
                    NotifyMsg::Shutdown => stop = true,
                }
            }
            self.deliver_due();
            if stop {
                break;
            }
        }
        let left: usize = self.queues.iter().map(|q| q.len()).sum();
        if left > 0 {
            log::warn!("notify: stopping with {left} notifications undelivered");
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn hook(url: &str) -> Result<Webhook, String> {
        WebhookConfig {
            url: url.into(),
            token: None,
            format: Format::Json,
        }
        .validate(0)
    }

    #[test]
    fn test_malformed_urls_are_refused_without_their_secret() {
        assert!(hook("https://hooks.example.com/services/T0/B0/x").is_ok());
        assert_eq!(
            hook("http://127.0.0.1:9/x").unwrap().shown,
            "http://127.0.0.1:9/…"
        );
        let e = hook("ftp://example.com/secret-path").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(!e.contains("secret-path"), "{e}");
        let e = hook("not a url").unwrap_err();
        assert!(e.contains("webhook 0"), "{e}");
        assert!(hook("http:///nohost").is_err());
        assert!(hook("").is_err());
        let e = WebhookConfig {
            url: "http://x/".into(),
            token: Some(String::new()),
            format: Format::Slack,
        }
        .validate(3)
        .unwrap_err();
        assert!(e.contains("webhook 3"), "{e}");
    }

    #[test]
    fn test_config_keys() {
        #[derive(Deserialize)]
        struct C {
            webhook: Vec<WebhookConfig>,
        }
        let c: C = toml::from_str(
            "[[webhook]]\nurl = \"http://a/\"\n[[webhook]]\nurl = \"https://b/\"\ntoken = \"t\"\nformat = \"slack\"\n",
        )
        .unwrap();
        assert_eq!(c.webhook[0].format, Format::Json);
        assert_eq!(c.webhook[1].format, Format::Slack);
        assert_eq!(c.webhook[1].token.as_deref(), Some("t"));
        assert!(
            toml::from_str::<C>("[[webhook]]\nurl = \"http://a/\"\nformat = \"teams\"\n").is_err()
        );
    }
}
