//! The notifier against a real HTTP receiver on loopback (issue 15): a receiver that is down
//! for a while and then comes up gets every notification queued meanwhile, in order, within
//! the queue bound (the oldest beyond it are dropped and counted); the Slack format's body;
//! the bearer token.

use nfm_collector::metrics::Metrics;
use nfm_collector::model::{Blame, MetricChange, Verdict};
use nfm_collector::notify::{Format, Notifier, NotifyConfig, WebhookConfig};
use nfm_collector::pipeline::{IncidentEvent, IncidentState, NotifyMsg};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One received POST: path, Authorization header, body.
type Post = (String, Option<String>, serde_json::Value);

/// A minimal HTTP receiver on `port`: records every POST, answers 200.
fn receiver(port: u16) -> Arc<Mutex<Vec<Post>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut len, mut auth) = (0usize, None);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            g.lock().unwrap().push((path, auth, v));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    got
}

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(k: u64) -> IncidentEvent {
    IncidentEvent {
        state: if k.is_multiple_of(2) {
            IncidentState::Opened
        } else {
            IncidentState::Resolved
        },
        first_seen_ms: 1_764_000_000_000 + k * 5_000,
        last_named_ms: 1_764_000_000_000 + k * 5_000,
        at_ms: 1_764_000_005_000 + k * 5_000,
        intervals_named: 1,
        verdict: Verdict {
            interval_start_ms: 1_764_000_000_000,
            component: format!("subnet:s{k}").parse().unwrap(),
            blame: Blame::Network,
            confidence: 0.9,
            degraded_flows: 4,
            healthy_flows: 1,
            evidence: vec![MetricChange {
                metric: "retrans_rate".into(),
                baseline: 0.001,
                observed: 0.05,
            }],
            first_seen_ms: 1_764_000_000_000 + k * 5_000,
        },
        simulated: false,
    }
}

fn config(port: u16, queue_len: usize) -> NotifyConfig {
    let hook = |path: &str, token: Option<&str>, format| {
        WebhookConfig {
            url: format!("http://127.0.0.1:{port}{path}"),
            token: token.map(String::from),
            format,
        }
        .validate(0)
        .unwrap()
    };
    let mut c = NotifyConfig::new(vec![
        hook("/json", Some("s3cret"), Format::Json),
        hook("/slack", None, Format::Slack),
    ]);
    c.queue_len = queue_len;
    c.retry_initial = Duration::from_millis(50);
    c.retry_max = Duration::from_millis(200);
    c.timeout = Duration::from_secs(2);
    c.dashboard_url = Some("http://nfm.example:8080/".into());
    c
}

fn wait_until(what: &str, secs: u64, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Six events while the receiver is down: attempts fail and are retried with back-off; once
/// it is up, all six arrive at each webhook, in order, nothing dropped.
#[test]
fn test_receiver_down_then_up_loses_nothing_within_the_bound() {
    let port = free_port();
    let m = Arc::new(Metrics::default());
    let (tx, rx) = sync_channel(64);
    let n = Notifier::new(config(port, 8), m.clone());
    let h = std::thread::spawn(move || n.run(rx));
    for k in 0..6 {
        tx.send(NotifyMsg::Incident(Box::new(event(k)))).unwrap();
    }
    let a = &m.alerting;
    wait_until("failed attempts while the receiver is down", 10, || {
        a.notify_failed.load(Ordering::Relaxed) >= 6
    });
    assert_eq!(a.notify_sent.load(Ordering::Relaxed), 0);
    assert_eq!(a.notify_queued.load(Ordering::Relaxed), 12);
    let got = receiver(port);
    wait_until("12 deliveries after the receiver came up", 10, || {
        got.lock().unwrap().len() >= 12
    });
    tx.send(NotifyMsg::Shutdown).unwrap();
    h.join().unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 12);
    let json: Vec<&Post> = got.iter().filter(|p| p.0 == "/json").collect();
    let comps: Vec<&str> = json
        .iter()
        .map(|p| p.2["incident"]["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        comps,
        [
            "subnet:s0",
            "subnet:s1",
            "subnet:s2",
            "subnet:s3",
            "subnet:s4",
            "subnet:s5"
        ],
        "in order"
    );
    assert_eq!(json[0].2["event"], "incident.opened");
    assert_eq!(json[1].2["event"], "incident.resolved");
    assert!(json.iter().all(|p| p.1.as_deref() == Some("Bearer s3cret")));
    let slack: Vec<&Post> = got.iter().filter(|p| p.0 == "/slack").collect();
    assert_eq!(slack.len(), 6);
    assert!(slack.iter().all(|p| p.1.is_none()), "no token configured");
    let t = slack[0].2["text"].as_str().unwrap();
    assert!(
        t.contains("*nfm incident opened*") && t.contains("`subnet:s0`"),
        "{t}"
    );
    assert!(t.contains("4 degraded vs 1 healthy flows"), "{t}");
    assert!(
        t.contains("retrans_rate: baseline 0.10 % → observed 5.00 %"),
        "{t}"
    );
    assert!(t.contains("<http://nfm.example:8080/#/?from="), "{t}");
    assert!(slack[1].2["text"]
        .as_str()
        .unwrap()
        .contains("*nfm incident resolved*"));
    assert_eq!(a.notify_sent.load(Ordering::Relaxed), 12);
    assert_eq!(a.notify_queued.load(Ordering::Relaxed), 0);
    assert_eq!(a.notify_dropped_queue.load(Ordering::Relaxed), 0);
    assert!(a.notify_retried.load(Ordering::Relaxed) >= 6);
}

/// Beyond the queue bound the oldest notifications go (counted); the newest arrive.
#[test]
fn test_queue_bound_drops_the_oldest_and_counts_them() {
    let port = free_port();
    let m = Arc::new(Metrics::default());
    let (tx, rx) = sync_channel(64);
    let mut c = config(port, 3);
    c.webhooks.truncate(1);
    let n = Notifier::new(c, m.clone());
    let h = std::thread::spawn(move || n.run(rx));
    for k in 0..5 {
        tx.send(NotifyMsg::Incident(Box::new(event(k)))).unwrap();
    }
    let a = &m.alerting;
    wait_until("the queue overflowing", 10, || {
        a.notify_dropped_queue.load(Ordering::Relaxed) == 2
    });
    let got = receiver(port);
    wait_until("3 deliveries", 10, || got.lock().unwrap().len() >= 3);
    tx.send(NotifyMsg::Shutdown).unwrap();
    h.join().unwrap();
    let comps: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.2["incident"]["component"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(comps, ["subnet:s2", "subnet:s3", "subnet:s4"]);
    assert_eq!(a.notify_sent.load(Ordering::Relaxed), 3);
    assert_eq!(a.notify_dropped_queue.load(Ordering::Relaxed), 2);
}

/// A malformed webhook URL in the config stops the collector at start with a clear error that
/// does not print the URL's path (a Slack URL's path is its secret).
#[test]
fn test_malformed_webhook_url_is_a_config_error_at_start() {
    let dir = std::env::temp_dir().join(format!("nfm-notify-cfg-{}", std::process::id()));
    for (url, why) in [
        ("ftp://hooks.example.com/T0/secret", "http:// or https://"),
        ("https:///secret", "not a valid URL"),
        ("hooks.example.com/secret", "not a valid URL"),
    ] {
        let text = format!(
            "data_dir = \"{}\"\n[[webhook]]\nurl = \"http://127.0.0.1:9/ok\"\n[[webhook]]\nurl = \"{url}\"\n",
            dir.display()
        );
        let s = nfm_collector::collector::Settings::parse_toml(&text).unwrap();
        let e = match nfm_collector::collector::Collector::start(&s) {
            Ok(c) => {
                c.shutdown();
                panic!("{url} was accepted")
            }
            Err(e) => e,
        };
        assert!(e.contains("webhook 1"), "{e}");
        assert!(e.contains(why) || e.contains("has no host"), "{url}: {e}");
        assert!(!e.contains("secret"), "{e}");
    }
    let e = nfm_collector::collector::Settings::parse_toml(
        "[[webhook]]\nurl = \"http://x/\"\nformat = \"teams\"\n",
    )
    .unwrap_err();
    assert!(e.contains("config line"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example config (with its notification keys and commented webhooks) parses.
#[test]
fn test_example_config_parses() {
    let s =
        nfm_collector::collector::Settings::parse_toml(include_str!("../examples/collector.toml"))
            .unwrap();
    assert_eq!(s.notify_queue_len, 1000);
    assert!(s.webhooks.is_empty());
}
