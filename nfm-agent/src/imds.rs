//! Where this host runs, from the cloud instance metadata service (IMDSv2 at
//! 169.254.169.254): instance id, region, AZ, the primary interface's subnet, VPC and private
//! addresses, sent in Hello so the collector can place the agent's addresses without a topology
//! entry (issue 17).
//!
//! Why hand-rolled: five GETs and a PUT of a few bytes each on a link-local address do not
//! justify an HTTP client in the agent's dependency tree. Every exchange is HTTP/1.1 with
//! `Connection: close` on a fresh `TcpStream`, bounded by one deadline for the whole discovery
//! (default 1 s), so an absent or silent service delays the agent's start by at most that.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The link-local address every major cloud serves instance metadata on.
pub const IMDS_ADDR: &str = "169.254.169.254:80";
/// The whole discovery's budget.
pub const BUDGET: Duration = Duration::from_secs(1);
/// Largest response read (metadata answers are a few bytes).
const MAX_RESPONSE: usize = 64 << 10;

/// What the metadata service said; every field empty when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub instance_id: String,
    pub region: String,
    /// AZ id (`use1-az1`), or the AZ name when the service has no id.
    pub az: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// One request on a fresh connection, within `deadline`.
fn exchange(
    addr: SocketAddr,
    deadline: Instant,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let left = remaining(deadline).ok_or("out of time")?;
    let mut s = TcpStream::connect_timeout(&addr, left).map_err(|e| format!("connect: {e}"))?;
    let left = remaining(deadline).ok_or("out of time")?;
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
        addr.ip()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Each read is bounded by what is left of the deadline.
        let left = remaining(deadline).ok_or("out of time")?;
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_RESPONSE {
                    return Err("response too large".into());
                }
                if let Some(r) = parse(&buf)? {
                    return Ok(r);
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    parse(&buf)?.ok_or_else(|| "connection closed mid-response".into())
}

/// A complete response in `buf`, None while more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let (mut len, mut chunked) = (None, false);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = Some(v.parse::<usize>().map_err(|_| "bad content-length")?);
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let body = &buf[end + 4..];
    let body = if chunked {
        match dechunk(body)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else if let Some(n) = len {
        if body.len() < n {
            return Ok(None);
        }
        body[..n].to_vec()
    } else {
        // Neither: the body ends when the server closes (the caller reads to the end).
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        body: String::from_utf8_lossy(&body).trim().to_string(),
    }))
}

/// A chunked body, None while incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Asks the metadata service at `addr` within `budget`. None when it does not answer (not a
/// cloud instance, IMDS off, a hop limit of 1 inside a container): the agent then sends no
/// placement. A service that answers the token but not some path leaves that field empty.
pub fn discover(addr: SocketAddr, budget: Duration) -> Option<Placement> {
    let deadline = Instant::now() + budget;
    let token = match exchange(
        addr,
        deadline,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    ) {
        Ok(r) if r.status == 200 && !r.body.is_empty() => r.body,
        Ok(r) => {
            log::info!("imds: token request answered {}: no placement", r.status);
            return None;
        }
        Err(e) => {
            log::info!("imds: {addr} does not answer ({e}): no placement");
            return None;
        }
    };
    let get = |path: &str| -> Option<String> {
        let r = exchange(
            addr,
            deadline,
            "GET",
            &format!("/latest/meta-data/{path}"),
            &[("X-aws-ec2-metadata-token", &token)],
        );
        match r {
            Ok(r) if r.status == 200 => Some(r.body),
            Ok(r) => {
                log::debug!("imds: {path}: {}", r.status);
                None
            }
            Err(e) => {
                log::info!("imds: {path}: {e}");
                None
            }
        }
    };
    let mut p = Placement {
        instance_id: get("instance-id").unwrap_or_default(),
        region: get("placement/region").unwrap_or_default(),
        az: get("placement/availability-zone-id")
            .or_else(|| get("placement/availability-zone"))
            .unwrap_or_default(),
        ..Placement::default()
    };
    if let Some(mac) = get("mac").filter(|m| !m.contains('/') && !m.is_empty()) {
        let nic = |what: &str| get(&format!("network/interfaces/macs/{mac}/{what}"));
        p.subnet_id = nic("subnet-id").unwrap_or_default();
        p.vpc_id = nic("vpc-id").unwrap_or_default();
        for list in [nic("local-ipv4s"), nic("ipv6s")].into_iter().flatten() {
            for a in list.lines().filter_map(|l| l.trim().parse::<IpAddr>().ok()) {
                if !p.addresses.contains(&a) {
                    p.addresses.push(a);
                }
            }
        }
    }
    log::info!("imds: {p:?}");
    Some(p)
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn test_parse_responses() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ni-abc")
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "i-abc"));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ni-abc")
            .unwrap()
            .is_none());
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\n\r\n2\r\ncd\r\n0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.body, "ab\ncd");
        assert!(parse(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    /// A service that accepts connections and never answers: discovery gives up within its
    /// budget with no placement (the agent starts without cloud fields).
    #[test]
    fn test_silent_imds_costs_at_most_the_budget() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Instant::now();
        assert_eq!(discover(addr, Duration::from_millis(300)), None);
        let took = t.elapsed();
        assert!(took < Duration::from_millis(800), "{took:?}");
        drop(l);
    }

    /// Nothing listens: refused at once.
    #[test]
    fn test_absent_imds_is_none() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = Instant::now();
        assert_eq!(discover(addr, BUDGET), None);
        assert!(t.elapsed() < BUDGET);
    }

    /// A scripted IMDSv2 on loopback: the token is required, the AZ id is missing (the AZ name
    /// is used), and the interface's addresses are read.
    #[test]
    fn test_discover_against_a_scripted_service() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..10 {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                let authed = req.contains("X-aws-ec2-metadata-token: tok");
                let (status, body) = match (req.starts_with("PUT"), path.as_str()) {
                    (true, "/latest/api/token") => (200, "tok"),
                    (false, _) if !authed => (401, ""),
                    (false, "/latest/meta-data/instance-id") => (200, "i-0web1"),
                    (false, "/latest/meta-data/placement/region") => (200, "eu-west-1"),
                    (false, "/latest/meta-data/placement/availability-zone") => (200, "eu-west-1b"),
                    (false, "/latest/meta-data/mac") => (200, "02:00:00:00:00:01"),
                    (false, p) if p.ends_with("/subnet-id") => (200, "subnet-1"),
                    (false, p) if p.ends_with("/vpc-id") => (200, "vpc-1"),
                    (false, p) if p.ends_with("/local-ipv4s") => (200, "10.0.1.5\n10.0.1.6\n"),
                    _ => (404, "Not Found"),
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let p = discover(addr, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(
            p,
            Placement {
                instance_id: "i-0web1".into(),
                region: "eu-west-1".into(),
                az: "eu-west-1b".into(),
                subnet_id: "subnet-1".into(),
                vpc_id: "vpc-1".into(),
                addresses: vec!["10.0.1.5".parse().unwrap(), "10.0.1.6".parse().unwrap()],
            }
        );
    }
}
