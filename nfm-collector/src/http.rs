//! The API's HTTP/1.1 front: `httparse` parses, a short-lived thread per connection (bounded)
//! reads one request, hands it to the API actor and writes the actor's reply, then closes.
//!
//! Why not keep-alive: an idle keep-alive connection holds a worker. tiny_http 0.12, used
//! before, parks a pool thread on each, and a race in its pool left new connections queued
//! behind them (dashboard loads that never finished in 3 of 8 fresh browsers). One request per
//! connection (`Connection: close`) costs one extra loopback handshake and can never wedge.

use serde::Serialize;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (monitor definitions are a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;
/// Connections served at once; more get a 503 straight from the accept thread.
const MAX_CONNECTIONS: usize = 64;
/// A client that sends nothing, or reads nothing, for this long is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection waits for the API actor's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One parsed request, with the channel its reply goes back on.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    reply: SyncSender<Response>,
}

/// What the API actor answers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Request {
    /// Sends the reply to the connection thread, which writes it; never blocks the caller.
    pub fn respond(self, resp: Response) {
        let _ = self.reply.try_send(resp);
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, v: &impl Serialize) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }
    pub fn text(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: body.into_bytes(),
        }
    }
    pub fn json_value(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The listening socket and its accept thread's stop flag.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Binds `addr` and starts the accept thread; every parsed request goes to `deliver`.
    /// `deliver` returning false means the API actor is gone: the server stops.
    pub fn start<F>(
        addr: SocketAddr,
        deliver: F,
    ) -> io::Result<(Server, std::thread::JoinHandle<()>)>
    where
        F: Fn(Request) -> bool + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let deliver = Arc::new(deliver);
        let stop2 = stop.clone();
        let h = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(mut stream) = conn else { continue };
                    if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                        let _ = write_response(
                            &mut stream,
                            &Response::text(503, "too many API connections; retry"),
                        );
                        continue;
                    }
                    active.fetch_add(1, Ordering::AcqRel);
                    let (active, deliver) = (active.clone(), deliver.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("http-conn".into())
                            .spawn(move || {
                                serve(stream, &*deliver);
                                active.fetch_sub(1, Ordering::AcqRel);
                            });
                    if spawned.is_err() {
                        log::warn!("api: cannot start a connection thread");
                    }
                }
            })?;
        Ok((Server { addr, stop }, h))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the accept thread (wakes it with one connection to itself).
    pub fn unblock(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl Response {
    pub fn text(status: u16, msg: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: msg.as_bytes().to_vec(),
        }
    }
}

fn serve<F: Fn(Request) -> bool>(mut stream: TcpStream, deliver: &F) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let resp = match read_request(&mut stream) {
        Ok(Some((method, url, authorization, body))) => {
            let (tx, rx): (SyncSender<Response>, Receiver<Response>) = sync_channel(1);
            let req = Request {
                method,
                url,
                authorization,
                body,
                reply: tx,
            };
            if !deliver(req) {
                Response::text(503, "collector is shutting down")
            } else {
                rx.recv_timeout(REPLY_TIMEOUT)
                    .unwrap_or_else(|_| Response::text(503, "the API did not answer in time"))
            }
        }
        Ok(None) => return, // closed before a request
        Err(resp) => {
            // Refused mid-request: answer, then drain (bounded) what the client is still
            // sending, so closing does not reset the connection before it reads the answer.
            let _ = write_response(&mut stream, &resp);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = io::copy(&mut (&mut stream).take(MAX_BODY as u64), &mut io::sink());
            return;
        }
    };
    let _ = write_response(&mut stream, &resp);
}

type Parsed = (String, String, Option<String>, Vec<u8>);

/// Reads one request. `Ok(None)`: the peer closed without sending one; `Err`: the reply to send.
fn read_request(stream: &mut TcpStream) -> Result<Option<Parsed>, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(Response::text(400, "request ended before its headers")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("GET").to_string();
                let url = req.path.unwrap_or("/").to_string();
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                let authorization = header("Authorization");
                let len = match header("Content-Length") {
                    None => 0,
                    Some(v) => v
                        .parse::<usize>()
                        .map_err(|_| Response::text(400, "bad Content-Length"))?,
                };
                if header("Transfer-Encoding").is_some() {
                    return Err(Response::text(411, "send a Content-Length, not chunked"));
                }
                if len > MAX_BODY {
                    return Err(Response::text(413, "request body over 1 MiB"));
                }
                let mut body = buf[head_len..].to_vec();
                body.truncate(len);
                while body.len() < len {
                    let n = stream
                        .read(&mut chunk)
                        .map_err(|_| Response::text(400, "cannot read the request body"))?;
                    if n == 0 {
                        return Err(Response::text(
                            400,
                            "request body shorter than Content-Length",
                        ));
                    }
                    let take = n.min(len - body.len());
                    body.extend_from_slice(&chunk[..take]);
                }
                return Ok(Some((method, url, authorization, body)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Response::text(431, "request headers too large"))
            }
            Err(e) => return Err(Response::text(400, &format!("bad request: {e}"))),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_response(stream: &mut TcpStream, r: &Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}

#[cfg(test)]
mod test {
    use super::*;

    fn echo_server() -> (Server, SocketAddr) {
        let (srv, _h) = Server::start("127.0.0.1:0".parse().unwrap(), |req: Request| {
            let body = format!(
                "{} {} {:?} {}",
                req.method,
                req.url,
                req.authorization,
                req.body.len()
            );
            req.respond(Response::text(200, &body));
            true
        })
        .unwrap();
        let addr = srv.local_addr();
        (srv, addr)
    }

    fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn test_one_request_per_connection_with_body() {
        let (srv, addr) = echo_server();
        let out = exchange(
            addr,
            b"POST /api/monitors HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Connection: close"));
        assert!(
            out.ends_with("POST /api/monitors Some(\"Bearer t\") 5"),
            "{out}"
        );
        srv.unblock();
    }

    #[test]
    fn test_bad_requests_get_clear_errors() {
        let (srv, addr) = echo_server();
        assert!(exchange(addr, b"\x01\x02 nonsense\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(exchange(
            addr,
            format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .as_bytes()
        )
        .starts_with("HTTP/1.1 413"));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(exchange(addr, huge.as_bytes()).starts_with("HTTP/1.1 431"));
        srv.unblock();
    }

    /// Regression: idle connections must not hold up new ones (tiny_http's keep-alive race).
    #[test]
    fn test_idle_connections_do_not_block_new_ones() {
        let (srv, addr) = echo_server();
        let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for _ in 0..20 {
            assert!(exchange(addr, b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        }
        drop(idle);
        srv.unblock();
    }
}
