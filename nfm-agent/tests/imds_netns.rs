//! The agent's IMDSv2 discovery against a metadata service at the real link-local address
//! 169.254.169.254, in a network namespace this test creates (issue 17), and the collector
//! placing the agent's address from the Hello that carries the result.
//!
//! The service is moto's instance-metadata emulation (`moto_server`, from scripts/setup.sh)
//! behind a small front that enforces IMDSv2 tokens and answers what moto does not serve
//! (`network/interfaces/macs/MAC/...`: subnet, VPC, addresses). Two namespaces joined by a veth
//! pair: `aws-imds-PID` (the service) and `aws-agt-PID` (the discovery runs on a thread that
//! entered it). Every name starts with `aws`; a guard removes them also when the test panics.
//!
//! Needs root and `ip`: `cargo test -p nfm-agent --test imds_netns -- --include-ignored`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOTO: &str = "/opt/nfm-py/bin/moto_server";
const PY: &str = "/opt/nfm-py/bin/python";

/// The front: IMDSv2 token check, moto for the paths it serves, a fixed interface for the rest.
const FRONT: &str = r#"
import http.server, sys, urllib.request
MOTO = "http://127.0.0.1:%s" % sys.argv[1]
MAC = "00:de:ad:be:ef:00"  # moto's `mac`
NIC = {"subnet-id": "subnet-aws1", "vpc-id": "vpc-aws1", "local-ipv4s": "10.77.1.5\n10.77.1.6"}
TOKEN = None
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_PUT(self):
        global TOKEN
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(400, "")
        req = urllib.request.Request(MOTO + self.path, method="PUT", headers={"Host": "169.254.169.254"})
        TOKEN = urllib.request.urlopen(req).read().decode()
        self.reply(200, TOKEN)
    def do_GET(self):
        if TOKEN is None or self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.reply(401, "")
        prefix = "/latest/meta-data/network/interfaces/macs/%s/" % MAC
        if self.path.startswith(prefix):
            v = NIC.get(self.path[len(prefix):])
            return self.reply(200, v) if v else self.reply(404, "")
        try:
            r = urllib.request.urlopen(urllib.request.Request(MOTO + self.path, headers={"Host": "169.254.169.254"}))
            self.reply(200, r.read().decode())
        except Exception:
            self.reply(404, "")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("169.254.169.254", 80), H).serve_forever()
"#;

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    ns_imds: String,
    ns_agent: String,
    children: Vec<Child>,
    dir: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ns_imds, &self.ns_agent] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new() -> Lab {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (netns, veth)");
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("aws-imds-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            ns_imds: format!("aws-imds-{pid}"),
            ns_agent: format!("aws-agt-{pid}"),
            children: Vec::new(),
            dir,
        };
        let (a, b) = (
            format!("awsm{}", pid % 100_000),
            format!("awsa{}", pid % 100_000),
        );
        run(&["ip", "netns", "add", &lab.ns_imds]);
        run(&["ip", "netns", "add", &lab.ns_agent]);
        run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        run(&["ip", "link", "set", &a, "netns", &lab.ns_imds]);
        run(&["ip", "link", "set", &b, "netns", &lab.ns_agent]);
        for (ns, dev, ip) in [
            (&lab.ns_imds, &a, "169.254.169.254/16"),
            (&lab.ns_agent, &b, "169.254.77.2/16"),
        ] {
            run(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn spawn(&mut self, args: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_imds]).args(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self.children
            .push(cmd.spawn().expect("spawn in the namespace"));
    }

    /// Runs `f` on a thread that entered the agent's namespace.
    fn in_agent_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns_agent);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("netns file");
            // SAFETY: setns on a namespace fd; it moves only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the namespace thread")
    }
}

fn http_get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[test]
#[ignore = "needs root and netns (and moto_server from scripts/setup.sh)"]
fn test_imds_in_a_namespace_places_the_agent() {
    assert!(
        std::path::Path::new(MOTO).exists(),
        "{MOTO} missing: run scripts/setup.sh"
    );
    let mut lab = Lab::new();
    let front = lab.dir.join("front.py");
    std::fs::write(&front, FRONT).unwrap();
    lab.spawn(&[MOTO, "-H", "127.0.0.1", "-p", "5000"]);
    lab.spawn(&[PY, front.to_str().unwrap(), "5000"]);
    let imds: SocketAddr = nfm_agent::imds::IMDS_ADDR.parse().unwrap();

    // Wait (bounded) until the front answers a token through moto.
    let t0 = Instant::now();
    let placement = loop {
        let p = lab.in_agent_ns(move || nfm_agent::imds::discover(imds, Duration::from_secs(2)));
        if p.as_ref().is_some_and(|p| !p.instance_id.is_empty()) {
            break p.unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the metadata service never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(placement.instance_id, "i-fake", "moto's instance id");
    assert_eq!(placement.region, "us-east-1");
    assert_eq!(
        placement.az, "use1-az1",
        "moto's placement/availability-zone-id"
    );
    assert_eq!(
        (placement.subnet_id.as_str(), placement.vpc_id.as_str()),
        ("subnet-aws1", "vpc-aws1")
    );
    let a: IpAddr = "10.77.1.5".parse().unwrap();
    assert_eq!(placement.addresses, vec![a, "10.77.1.6".parse().unwrap()]);

    // From the root namespace nothing answers at the metadata address: no placement, within
    // the budget.
    let t = Instant::now();
    let none = nfm_agent::imds::discover("127.0.0.1:1".parse().unwrap(), nfm_agent::imds::BUDGET);
    assert!(none.is_none() && t.elapsed() <= nfm_agent::imds::BUDGET + Duration::from_millis(200));

    // The collector: a Hello with the placement, then a flow from the placed address to a
    // topology host. The address is in no VPC of the topology file, yet it resolves.
    let dir = lab.dir.join("collector");
    let s = nfm_collector::collector::Settings {
        listen_udp: Some("127.0.0.1:0".parse().unwrap()),
        listen_tcp: None,
        http: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir,
        topology: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../nfm-collector/examples/topology.toml"),
        ),
        close_after_ms: 300,
        ..Default::default()
    };
    let c = nfm_collector::collector::Collector::start(&s).unwrap();
    let (udp, http) = (c.udp_addr.unwrap(), c.http_addr.unwrap());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seq = nfm_wire::Sequencer::new(77, 1);
    let now = nfm_collector::now_ms();
    let hello = nfm_wire::Message::Hello(nfm_wire::Hello {
        host_name: "imds-host".into(),
        agent_version: "nfm-agent/test".into(),
        interval_ms: 5000,
        capabilities: nfm_wire::cap::EBPF,
        started_at_ms: now - 10_000,
        instance_id: placement.instance_id.clone(),
        region: placement.region.clone(),
        az: placement.az.clone(),
        subnet_id: placement.subnet_id.clone(),
        vpc_id: placement.vpc_id.clone(),
        addresses: placement.addresses.clone(),
    });
    sock.send_to(
        &nfm_wire::encode_to_vec(&seq.next_header(), &hello, None),
        udp,
    )
    .unwrap();
    // The API learns the placement from ingest's snapshot (every 250 ms) and, in the same
    // step, sends the resolver the placed topology; so once /api/agents shows it, a batch sent
    // afterwards reaches the resolver's queue after that topology.
    let t0 = Instant::now();
    loop {
        let v = http_get(http, "/api/agents");
        if v["agents"][0]["placement"]["subnet_id"] == "subnet-aws1" {
            assert_eq!(v["agents"][0]["placement"]["instance_id"], "i-fake");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no placement: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = now / 5000 * 5000 - 5000;
    let frames = nfm_wire::encode_flow_batch(
        &mut seq,
        (start, start + 5000),
        &[nfm_wire::FlowRecord {
            local: a,
            remote: "10.0.1.10".parse().unwrap(),
            remote_port: 443,
            bytes_sent: 5000,
            ..Default::default()
        }],
        1400,
        None,
    )
    .unwrap();
    for f in frames {
        sock.send_to(&f.bytes, udp).unwrap();
    }
    let t0 = Instant::now();
    let flow = loop {
        let v = http_get(
            http,
            "/api/insights?metric=data-transferred&from=0&to=99999999999999",
        );
        if let Some(f) = v["contributors"].as_array().and_then(|c| c.first()) {
            break f.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no flow: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    c.shutdown();
    let path: Vec<&str> = flow["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            "host:imds-host",
            "subnet:subnet-aws1",
            "az:use1-az1",
            "vpc:vpc-aws1",
            "vpc:vpc-app",
            "subnet:subnet-app-a",
            "host:web-1"
        ],
        "{flow}"
    );
    assert_eq!(flow["category"], "inter-vpc", "{flow}");
}
