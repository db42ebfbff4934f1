//! Helpers for the collector integration tests: an in-process collector on free loopback ports,
//! frame builders, an HTTP client and bounded polling.
#![allow(dead_code)]

use nfm_collector::collector::{Collector, Settings};
use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Hello, Key, Message};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const TOPOLOGY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../nfm-collector/examples/topology.toml"
);

pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "nfm-ct-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes a directory when dropped (also when the test fails).
pub struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn settings(dir: &Path) -> Settings {
    Settings {
        listen_udp: Some("127.0.0.1:0".parse().unwrap()),
        listen_tcp: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.to_path_buf(),
        topology: Some(PathBuf::from(TOPOLOGY)),
        idle_close_ms: 300,
        tick_ms: 50,
        // The frames these tests build are 10 s intervals.
        interval_ms: 10_000,
        ..Settings::default()
    }
}

pub fn start(s: &Settings) -> Collector {
    Collector::start(s).expect("collector starts")
}

pub fn url(c: &Collector, path: &str) -> String {
    format!("http://{}{}", c.http_addr.unwrap(), path)
}

/// (status, JSON body).
pub fn get(u: &str) -> (u16, Value) {
    match ureq::get(u).timeout(Duration::from_secs(10)).call() {
        Ok(r) => (
            r.status(),
            serde_json::from_str(&r.into_string().unwrap()).unwrap_or(Value::Null),
        ),
        Err(ureq::Error::Status(code, r)) => (
            code,
            serde_json::from_str(&r.into_string().unwrap()).unwrap_or(Value::Null),
        ),
        Err(e) => panic!("GET {u}: {e}"),
    }
}

pub fn get_text(u: &str) -> String {
    ureq::get(u)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

pub fn send(method: &str, u: &str, body: &str) -> (u16, Value) {
    match ureq::request(method, u)
        .timeout(Duration::from_secs(10))
        .set("Content-Type", "application/json")
        .send_string(body)
    {
        Ok(r) => (
            r.status(),
            serde_json::from_str(&r.into_string().unwrap()).unwrap_or(Value::Null),
        ),
        Err(ureq::Error::Status(code, r)) => (
            code,
            serde_json::from_str(&r.into_string().unwrap()).unwrap_or(Value::Null),
        ),
        Err(e) => panic!("{method} {u}: {e}"),
    }
}

/// Polls `f` until it returns `Some`, at most `secs` seconds.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn hello(agent: u64, epoch: u32, seq: u64, key: Option<&Key>) -> Vec<u8> {
    encode_to_vec(
        &Header {
            agent_id: agent,
            epoch,
            seq,
        },
        &Message::Hello(Hello {
            host_name: format!("host-{agent}"),
            agent_version: "test".into(),
            interval_ms: 10_000,
            ..Default::default()
        }),
        key,
    )
}

pub fn record(local: &str, remote: &str, bytes: u64, retrans: u64) -> FlowRecord {
    let mut r = FlowRecord {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        remote_port: 443,
        bytes_sent: bytes,
        ..Default::default()
    };
    r.retrans.established = retrans;
    r.rtt.count = 1;
    r.rtt.sum_us = 500;
    r.rtt.min_us = 500;
    r.rtt.max_us = 500;
    r
}

pub fn batch(
    agent: u64,
    epoch: u32,
    seq: u64,
    start_ms: u64,
    records: Vec<FlowRecord>,
    key: Option<&Key>,
) -> Vec<u8> {
    encode_to_vec(
        &Header {
            agent_id: agent,
            epoch,
            seq,
        },
        &Message::FlowBatch(FlowBatch {
            interval_start_ms: start_ms,
            interval_end_ms: start_ms + 10_000,
            records,
        }),
        key,
    )
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
