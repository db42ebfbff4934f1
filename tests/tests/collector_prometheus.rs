//! Debian's `prometheus` (installed by scripts/setup.sh) scrapes a running collector on loopback;
//! a monitor's Retransmissions and DataTransferred are read back through Prometheus's HTTP query
//! API, so the exposition format and names are checked by the real consumer.

mod collector_util;

use collector_util::*;
use std::net::UdpSocket;
use std::process::{Command, Stdio};

struct Prometheus(std::process::Child);
impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query(port: u16, q: &str) -> Option<String> {
    let u = format!("http://127.0.0.1:{port}/api/v1/query");
    let r = ureq::get(&u)
        .query("query", q)
        .timeout(std::time::Duration::from_secs(5))
        .call()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.into_string().ok()?).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(String::from)
}

#[test]
#[ignore = "needs Debian's prometheus (scripts/setup.sh installs it); scripts/test.sh runs it"]
fn collector_prometheus_reads_monitor_metrics() {
    let bin = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: run scripts/setup.sh (it installs Debian's prometheus)"
    );
    let dir = TempDir(tmp_dir("prom"));
    let c = start(&settings(&dir.0));
    let (code, _) = send(
        "POST",
        &url(&c, "/api/monitors"),
        r#"{"name":"app","local":["vpc:vpc-app"]}"#,
    );
    assert_eq!(code, 201);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = c.udp_addr.unwrap();
    udp.send_to(&hello(1, 1, 0, None), to).unwrap();
    udp.send_to(
        &batch(
            1,
            1,
            1,
            0,
            vec![
                record("10.0.1.10", "10.0.2.10", 4000, 5),
                record("10.0.2.11", "10.1.1.20", 2000, 2),
            ],
            None,
        ),
        to,
    )
    .unwrap();
    wait_for("the collector to expose the monitor", 15, || {
        get_text(&url(&c, "/metrics"))
            .contains("nfm_monitor_retransmissions_total{monitor=\"app\"} 7")
            .then_some(())
    });

    let port = free_port();
    let cfg = dir.0.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: nfm\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{}']\n",
            c.http_addr.unwrap()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let _prom = Prometheus(child);
    let retrans = wait_for("prometheus to scrape the retransmissions", 60, || {
        query(port, "nfm_monitor_retransmissions_total{monitor=\"app\"}")
    });
    assert_eq!(retrans, "7");
    let bytes = query(
        port,
        "nfm_monitor_data_transferred_bytes_total{monitor=\"app\"}",
    )
    .expect("data transferred scraped with the same sample");
    assert_eq!(bytes, "6000");
    let up = query(port, "up{job=\"nfm\"}").expect("up");
    assert_eq!(up, "1");
    c.shutdown();
}
