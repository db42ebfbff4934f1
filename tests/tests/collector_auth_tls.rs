//! Issue 15's bar for the dashboard, roles and TLS: with `api_token`, `viewer_token`,
//! `tls_cert` and `tls_key` in the config file, `GET /` without a session gives the login page
//! (a redirect to it, never a 401); the API without a token is a 401; the viewer token reads
//! (200, `/metrics` too) but cannot write (403); the admin token can; all of it over HTTPS, and
//! plain HTTP on that port is refused with a clear error. Also: the login → cookie → logout
//! round trip, and a certificate reload on a live collector.

mod collector_util;

use collector_util::*;
use nfm_collector::collector::Settings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
fn cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn client(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// One HTTPS request (the collector closes after each answer).
fn https(
    cfg: &Arc<ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return parse(b""); // the handshake failed: status 0
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // the server closes with close_notify
    parse(&out)
}

fn config(dir: &Path) -> Settings {
    let (c, k) = cert();
    std::fs::write(dir.join("cert.pem"), c).unwrap();
    std::fs::write(dir.join("key.pem"), k).unwrap();
    let toml = format!(
        r#"
listen_udp = "127.0.0.1:0"
listen_tcp = "127.0.0.1:0"
http = "127.0.0.1:0"
data_dir = "{d}/data"
topology = "{topo}"
api_token = "admin-t0ken"
viewer_token = "viewer-t0ken"
tls_cert = "{d}/cert.pem"
tls_key = "{d}/key.pem"
"#,
        d = dir.display(),
        topo = TOPOLOGY
    );
    Settings::parse_toml(&toml).expect("config parses")
}

#[test]
fn test_bar_login_page_roles_and_https() {
    let dir = TempDir(tmp_dir("auth-bar"));
    let s = config(&dir.0);
    let c = start(&s);
    let addr = c.http_addr.unwrap();
    let ca = std::fs::read_to_string(dir.0.join("cert.pem")).unwrap();
    let tls = client(&ca);
    let req = |m: &str, p: &str, h: &[(&str, &str)], b: &str| https(&tls, addr, m, p, h, b);
    let admin = [("Authorization", "Bearer admin-t0ken")];
    let viewer = [("Authorization", "Bearer viewer-t0ken")];
    let json = ("Content-Type", "application/json");

    // GET / without a session: the login page (a redirect to it), never a 401.
    let r = req("GET", "/", &[], "");
    assert_eq!(r.status, 303, "{}", r.head);
    assert_eq!(r.header("Location").as_deref(), Some("/login"));
    let r = req("GET", "/login", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<form") && r.body.contains("name=\"token\""));

    // The API without a token: 401.
    for p in ["/api/status", "/api/monitors", "/metrics"] {
        assert_eq!(req("GET", p, &[], "").status, 401, "{p}");
    }
    // The viewer reads everything, /metrics included...
    for p in [
        "/api/status",
        "/api/monitors",
        "/api/agents",
        "/metrics",
        "/",
    ] {
        assert_eq!(req("GET", p, &viewer, "").status, 200, "viewer GET {p}");
    }
    // ...but cannot write.
    let m = r#"{"name":"app","local":["subnet:subnet-app-a"]}"#;
    let r = req("POST", "/api/monitors", &[viewer[0], json], m);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("reads only"), "{}", r.body);
    assert_eq!(
        req("PUT", "/api/monitors/app", &[viewer[0], json], m).status,
        403
    );
    assert_eq!(req("DELETE", "/api/monitors/app", &viewer, "").status, 403);
    // The admin can.
    let r = req("POST", "/api/monitors", &[admin[0], json], m);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(req("GET", "/api/monitors/app", &viewer, "").status, 200);
    assert_eq!(req("DELETE", "/api/monitors/app", &admin, "").status, 200);
    // A wrong token: 401.
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(req("GET", "/api/status", &wrong, "").status, 401);

    // Plain HTTP on the HTTPS port: a clear refusal, not a hang.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    let r = parse(&out);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("https://"), "{}", r.body);

    // A TLS record that is garbage: rustls's alert, the connection closed, counted; the
    // server goes on serving.
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    let mut out = Vec::new();
    let _ = bad.read_to_end(&mut out);
    assert!(out.first() == Some(&0x15) || out.is_empty(), "{out:?}"); // 0x15: an alert
    assert_eq!(req("GET", "/api/status", &viewer, "").status, 200);

    // Everything counted.
    let metrics = req("GET", "/metrics", &admin, "").body;
    for line in [
        "nfm_auth_rejected_total{reason=\"forbidden\"} 3",
        "nfm_auth_rejected_total{reason=\"wrong_token\"} 1",
        "nfm_auth_rejected_total{reason=\"missing\"} 4",
        "nfm_tls_errors_total{listener=\"http\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    c.shutdown();
}

#[test]
fn test_login_cookie_and_logout_over_https() {
    let dir = TempDir(tmp_dir("auth-login"));
    let s = config(&dir.0);
    let c = start(&s);
    let addr = c.http_addr.unwrap();
    let tls = client(&std::fs::read_to_string(dir.0.join("cert.pem")).unwrap());
    let form = ("Content-Type", "application/x-www-form-urlencoded");

    let r = https(&tls, addr, "POST", "/login", &[form], "token=wrong");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("That token is not valid"));
    assert!(r.header("Set-Cookie").is_none());

    let r = https(&tls, addr, "POST", "/login", &[form], "token=viewer-t0ken");
    assert_eq!(r.status, 303);
    let set = r.header("Set-Cookie").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let with = [("Cookie", cookie.as_str())];
    let r = https(&tls, addr, "GET", "/", &with, "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/ui/js/app.js"));
    assert_eq!(
        https(&tls, addr, "GET", "/api/status", &with, "").status,
        200
    );
    // The session carries the viewer's role.
    let r = https(&tls, addr, "DELETE", "/api/monitors/x", &with, "");
    assert_eq!(r.status, 403);

    let r = https(&tls, addr, "POST", "/logout", &with, "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location").as_deref(), Some("/login"));
    assert_eq!(
        https(&tls, addr, "GET", "/api/status", &with, "").status,
        401
    );
    assert_eq!(https(&tls, addr, "GET", "/", &with, "").status, 303);
    c.shutdown();
}

#[test]
fn test_certificate_reload_serves_the_new_cert_and_keeps_the_old_on_error() {
    let dir = TempDir(tmp_dir("auth-reload"));
    let s = config(&dir.0);
    let c = start(&s);
    let addr = c.http_addr.unwrap();
    let old_ca = std::fs::read_to_string(dir.0.join("cert.pem")).unwrap();
    let (new_cert, new_key) = cert();
    std::fs::write(dir.0.join("cert.pem"), &new_cert).unwrap();
    std::fs::write(dir.0.join("key.pem"), &new_key).unwrap();
    c.reload_tls().unwrap();
    // New handshakes use the new certificate: trusted by the new CA only.
    let viewer = [("Authorization", "Bearer viewer-t0ken")];
    let r = https(&client(&new_cert), addr, "GET", "/api/status", &viewer, "");
    assert_eq!(r.status, 200);
    let r = https(&client(&old_ca), addr, "GET", "/api/status", &viewer, "");
    assert_eq!(r.status, 0, "the old certificate is no longer served");
    // A broken file: the reload is refused and counted, the current certificate stays.
    std::fs::write(dir.0.join("cert.pem"), "garbage").unwrap();
    assert!(c.reload_tls().is_err());
    let r = https(&client(&new_cert), addr, "GET", "/metrics", &viewer, "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("nfm_tls_reloads_total{result=\"error\"} 1"));
    assert!(r.body.contains("nfm_tls_reloads_total{result=\"ok\"} 1"));
    c.shutdown();
}

#[test]
fn test_config_errors_are_clear() {
    let dir = TempDir(tmp_dir("auth-cfg"));
    let mut s = config(&dir.0);
    s.api_token = None;
    let e = nfm_collector::collector::Collector::start(&s)
        .err()
        .unwrap();
    assert!(e.contains("viewer_token"), "{e}");
    let mut s = config(&dir.0);
    s.tls_key = None;
    let e = nfm_collector::collector::Collector::start(&s)
        .err()
        .unwrap();
    assert!(e.contains("tls_key"), "{e}");
    let mut s = config(&dir.0);
    s.tls_cert = Some(dir.0.join("missing.pem"));
    let e = nfm_collector::collector::Collector::start(&s)
        .err()
        .unwrap();
    assert!(e.contains("missing.pem"), "{e}");
}
