//! The API's HTTP/1.1 front: `httparse` parses, a short-lived thread per connection (bounded)
//! reads one request, hands it to the API actor and writes the actor's reply, then closes.
//!
//! Why not keep-alive: an idle keep-alive connection holds a worker. tiny_http 0.12, used
//! before, parks a pool thread on each, and a race in its pool left new connections queued
//! behind them (dashboard loads that never finished in 3 of 8 fresh browsers). One request per
//! connection (`Connection: close`) costs one extra loopback handshake and can never wedge.
//!
//! Slow clients ([`Limits`]): a request must arrive whole within a deadline (not per read, so a
//! byte every few seconds does not keep a slot), one peer address holds a bounded share of the
//! slots, and when slots run out the client that has spent longest reading or being written to
//! is evicted for the newcomer.
//!
//! In front of the API actor ([`Front`], issue 15): TLS (rustls, `crate::tls`) when a
//! certificate is configured, and `crate::auth`'s decision for each request (login, logout,
//! tokens, sessions, roles), so only authorized requests reach the actor.

use crate::auth::{Answer, Auth, Decision, Head};
use crate::tls::Tls;
use rustls::{ServerConnection, StreamOwned};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (monitor definitions are a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;
/// How long a connection waits for the API actor's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits that keep slow or greedy clients from holding the API (issue 19 item 7).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once. When all are taken, a new connection evicts the client that
    /// has spent longest (at least `slow_after`) sending its request or reading its answer (a
    /// slow client; never one waiting for the API actor); with none it gets a 503 from the
    /// accept thread.
    pub max_connections: usize,
    /// Connections one peer address may hold at once; over it, that peer's slowest client is
    /// evicted as above, else the new one gets a 503.
    pub max_per_peer: usize,
    /// A client still sending its request (or reading its answer) after this long is slow:
    /// it may be evicted for a newcomer. A normal client takes milliseconds.
    pub slow_after: Duration,
    /// The whole request (head and body) must arrive within this, however it trickles in;
    /// then a 408. The answer gets as long again to be read.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_per_peer: 48,
            slow_after: Duration::from_millis(500),
            request_deadline: Duration::from_secs(10),
        }
    }
}

/// One connection being served, as the accept thread sees it.
struct Slot {
    peer: IpAddr,
    since: Instant,
    /// A clone of the socket, to shut it down on eviction.
    stream: TcpStream,
    phase: Arc<Phase>,
}

/// Where a connection is: reading its request or writing its answer (evictable, since when),
/// or waiting for the API actor (not evictable).
struct Phase {
    evictable: AtomicBool,
    /// Milliseconds since the server started, when the evictable phase began.
    since_ms: AtomicU64,
}

/// The connections being served, by id.
#[derive(Default)]
struct Slots {
    next: u64,
    open: HashMap<u64, Slot>,
    base: Option<Instant>,
}

impl Slots {
    fn now_ms(&mut self) -> u64 {
        self.base
            .get_or_insert_with(Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    /// The connection slow for longest (of `peer` only, if given), if one has been for at least
    /// `slow_after`.
    fn victim(&mut self, peer: Option<IpAddr>, slow_after: Duration) -> Option<u64> {
        let now = self.now_ms();
        let min = slow_after.as_millis() as u64;
        self.open
            .iter()
            .filter(|(_, c)| peer.is_none_or(|p| c.peer == p))
            .filter(|(_, c)| c.phase.evictable.load(Ordering::Acquire))
            .map(|(id, c)| (c.phase.since_ms.load(Ordering::Acquire), c.since, *id))
            .filter(|(t, _, _)| now.saturating_sub(*t) >= min)
            .min()
            .map(|(_, _, id)| id)
    }
    fn evict(&mut self, id: u64) {
        if let Some(c) = self.open.remove(&id) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

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

/// What stands between a connection and the API actor: TLS and authorization (both optional).
#[derive(Clone, Default)]
pub struct Front {
    pub auth: Option<Arc<Auth>>,
    pub tls: Option<Tls>,
}

/// A connection the request is read from and the answer written to: plain TCP or TLS over it.
trait Io: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Io for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Io for StreamOwned<ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// The listening socket and its accept thread's stop flag.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    slots: Arc<Mutex<Slots>>,
    evicted: Arc<AtomicU64>,
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
        Server::start_with(addr, Limits::default(), deliver)
    }

    /// [`Server::start`] with explicit limits.
    pub fn start_with<F>(
        addr: SocketAddr,
        limits: Limits,
        deliver: F,
    ) -> io::Result<(Server, std::thread::JoinHandle<()>)>
    where
        F: Fn(Request) -> bool + Send + Sync + 'static,
    {
        Server::start_front(addr, limits, Front::default(), deliver)
    }

    /// [`Server::start_with`] behind a [`Front`] (TLS, authorization).
    pub fn start_front<F>(
        addr: SocketAddr,
        limits: Limits,
        front: Front,
        deliver: F,
    ) -> io::Result<(Server, std::thread::JoinHandle<()>)>
    where
        F: Fn(Request) -> bool + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let slots = Arc::new(Mutex::new(Slots::default()));
        let evicted = Arc::new(AtomicU64::new(0));
        let deliver = Arc::new(deliver);
        let (stop2, slots2, evicted2) = (stop.clone(), slots.clone(), evicted.clone());
        let h = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(mut stream) = conn else { continue };
                    let Ok(peer) = stream.peer_addr() else {
                        continue;
                    };
                    let Some((id, (phase, base))) =
                        admit(&slots2, &limits, &stream, peer.ip(), &evicted2)
                    else {
                        // Under TLS a plain-text answer would be garbage to the client: close.
                        if front.tls.is_none() {
                            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                            let _ = write_response(
                                &mut stream,
                                &Response::text(503, "too many API connections; retry"),
                                &[],
                            );
                        }
                        continue;
                    };
                    let (slots, deliver, front) = (slots2.clone(), deliver.clone(), front.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("http-conn".into())
                            .spawn(move || {
                                let conn = Conn {
                                    limits: &limits,
                                    phase: &phase,
                                    base,
                                    auth: front.auth.as_deref(),
                                };
                                match &front.tls {
                                    Some(tls) => serve_tls(stream, tls, &*deliver, &conn),
                                    None => {
                                        let deadline = Instant::now() + limits.request_deadline;
                                        serve(&mut stream, &*deliver, &conn, deadline)
                                    }
                                }
                                lock(&slots).open.remove(&id);
                            });
                    if spawned.is_err() {
                        log::warn!("api: cannot start a connection thread");
                        lock(&slots2).open.remove(&id);
                    }
                }
            })?;
        Ok((
            Server {
                addr,
                stop,
                slots,
                evicted,
            },
            h,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        lock(&self.slots).open.len()
    }

    /// Slow clients evicted so far to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Stops the accept thread (wakes it with one connection to itself).
    pub fn unblock(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn lock(m: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives a new connection a slot, evicting the slowest client when the peer's share or all
/// slots are taken; `None`: no room (answer 503).
fn admit(
    slots: &Mutex<Slots>,
    limits: &Limits,
    stream: &TcpStream,
    peer: IpAddr,
    evicted: &AtomicU64,
) -> Option<(u64, (Arc<Phase>, Instant))> {
    let mut g = lock(slots);
    let of_peer = g.open.values().filter(|c| c.peer == peer).count();
    if of_peer >= limits.max_per_peer.max(1) {
        let v = g.victim(Some(peer), limits.slow_after)?;
        g.evict(v);
        evicted.fetch_add(1, Ordering::Relaxed);
    }
    if g.open.len() >= limits.max_connections.max(1) {
        let v = g.victim(None, limits.slow_after)?;
        g.evict(v);
        evicted.fetch_add(1, Ordering::Relaxed);
    }
    let clone = stream.try_clone().ok()?;
    let phase = Arc::new(Phase {
        evictable: AtomicBool::new(true),
        since_ms: AtomicU64::new(g.now_ms()),
    });
    let base = *g.base.get_or_insert_with(Instant::now);
    let id = g.next;
    g.next += 1;
    g.open.insert(
        id,
        Slot {
            peer,
            since: Instant::now(),
            stream: clone,
            phase: phase.clone(),
        },
    );
    Some((id, (phase, base)))
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

/// What a connection thread serves with.
struct Conn<'a> {
    limits: &'a Limits,
    phase: &'a Phase,
    base: Instant,
    auth: Option<&'a Auth>,
}

/// The first byte of every TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// TLS first, then [`serve`] over it, the handshake and the request within one deadline. A client speaking plain
/// HTTP gets a clear plain-text 400; a failed handshake gets rustls's alert; both are counted.
fn serve_tls<F: Fn(Request) -> bool>(mut stream: TcpStream, tls: &Tls, deliver: &F, c: &Conn) {
    let deadline = Instant::now() + c.limits.request_deadline;
    let mut first = [0u8; 1];
    let _ = stream.set_read_timeout(left(deadline));
    match stream.peek(&mut first) {
        Ok(1) if first[0] == TLS_HANDSHAKE => {}
        Ok(1) => {
            tls.counters.http_errors.fetch_add(1, Ordering::Relaxed);
            log::debug!("api: plain HTTP on the HTTPS port refused");
            let r = Response::text(400, "this port speaks HTTPS: use an https:// URL");
            refuse(&mut stream, &r, &[]);
            return;
        }
        _ => return, // closed, or nothing within the deadline
    }
    let mut conn = match ServerConnection::new(tls.config()) {
        Ok(conn) => conn,
        Err(e) => {
            log::error!("api: cannot start a TLS connection: {e}");
            return;
        }
    };
    while conn.is_handshaking() {
        let Some(t) = left(deadline) else {
            tls.counters.http_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let _ = stream.set_read_timeout(Some(t));
        let _ = stream.set_write_timeout(Some(t));
        if let Err(e) = conn.complete_io(&mut stream) {
            tls.counters.http_errors.fetch_add(1, Ordering::Relaxed);
            log::debug!("api: TLS handshake failed: {e}");
            let _ = conn.write_tls(&mut stream); // the alert, if any
            return;
        }
    }
    let mut s = StreamOwned::new(conn, stream);
    serve(&mut s, deliver, c, deadline);
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
}

/// Answers a request refused before it reached the API, then drains (bounded) what the client
/// is still sending, so closing does not reset the connection before it reads the answer.
fn refuse<S: Io>(stream: &mut S, resp: &Response, extra: &[(&'static str, String)]) {
    let _ = stream.tcp().set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_response(stream, resp, extra);
    let _ = stream.tcp().shutdown(std::net::Shutdown::Write);
    let _ = stream.tcp().set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut stream.take(MAX_BODY as u64), &mut io::sink());
}

/// Reads one request (whole before `deadline`), has it decided and answered, writes the answer.
fn serve<S: Io, F: Fn(Request) -> bool>(stream: &mut S, deliver: &F, c: &Conn, deadline: Instant) {
    let mut extra = Vec::new();
    let resp = match read_request(stream, deadline) {
        Ok(Some(p)) => {
            let decision = c.auth.map(|a| {
                a.decide(&Head {
                    method: &p.method,
                    url: &p.url,
                    authorization: p.authorization.as_deref(),
                    cookie: p.cookie.as_deref(),
                    content_type: p.content_type.as_deref(),
                    body: &p.body,
                })
            });
            if let Some(Decision::Answer(Answer {
                status,
                content_type,
                body,
                headers,
            })) = decision
            {
                extra = headers;
                Response {
                    status,
                    content_type: content_type.to_string(),
                    body,
                }
            } else {
                let (tx, rx): (SyncSender<Response>, Receiver<Response>) = sync_channel(1);
                let req = Request {
                    method: p.method,
                    url: p.url,
                    authorization: p.authorization,
                    body: p.body,
                    reply: tx,
                };
                c.phase.evictable.store(false, Ordering::Release);
                let resp = if !deliver(req) {
                    Response::text(503, "collector is shutting down")
                } else {
                    rx.recv_timeout(REPLY_TIMEOUT)
                        .unwrap_or_else(|_| Response::text(503, "the API did not answer in time"))
                };
                c.phase
                    .since_ms
                    .store(c.base.elapsed().as_millis() as u64, Ordering::Release);
                c.phase.evictable.store(true, Ordering::Release);
                resp
            }
        }
        Ok(None) => return, // closed before a request
        Err(resp) => {
            refuse(stream, &resp, &[]);
            return;
        }
    };
    // The answer gets as long as the request had to be read, in total.
    let _ = write_within(
        stream,
        &resp,
        &extra,
        Instant::now() + c.limits.request_deadline,
    );
}

/// The time left before `deadline`, as a socket timeout (never zero, which means "none").
fn left(deadline: Instant) -> Option<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    (!d.is_zero()).then_some(d)
}

/// Writes the response, giving up at `deadline` however slowly the client reads.
fn write_within<S: Io>(
    stream: &mut S,
    r: &Response,
    extra: &[(&'static str, String)],
    deadline: Instant,
) -> io::Result<()> {
    let mut bytes = head(r, extra).into_bytes();
    bytes.extend_from_slice(&r.body);
    let mut at = 0;
    while at < bytes.len() {
        let t = left(deadline).ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        stream.tcp().set_write_timeout(Some(t))?;
        match stream.write(&bytes[at..(at + 64 * 1024).min(bytes.len())]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// One request as read off the wire.
struct Parsed {
    method: String,
    url: String,
    authorization: Option<String>,
    cookie: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Reads one request. `Ok(None)`: the peer closed without sending one; `Err`: the reply to send.
/// The whole request must arrive before `deadline` (then a 408), however it trickles in.
fn read_request<S: Io>(stream: &mut S, deadline: Instant) -> Result<Option<Parsed>, Response> {
    let late = || Response::text(408, "request not received in time");
    // Each read waits at most until the deadline.
    let read = |stream: &mut S, chunk: &mut [u8]| -> Result<io::Result<usize>, Response> {
        let t = left(deadline).ok_or_else(late)?;
        let _ = stream.tcp().set_read_timeout(Some(t));
        match stream.read(chunk) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(late())
            }
            r => Ok(r),
        }
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match read(stream, &mut chunk)? {
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
                    let n = read(stream, &mut chunk)?
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
                return Ok(Some(Parsed {
                    method,
                    url,
                    authorization,
                    cookie: header("Cookie"),
                    content_type: header("Content-Type"),
                    body,
                }));
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
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn head(r: &Response, extra: &[(&'static str, String)]) -> String {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in extra {
        // Values are the front's own (cookie, path); a line break would split the header.
        if !v.contains(['\r', '\n']) {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    h.push_str("\r\n");
    h
}

fn write_response<S: Write>(
    stream: &mut S,
    r: &Response,
    extra: &[(&'static str, String)],
) -> io::Result<()> {
    stream.write_all(head(r, extra).as_bytes())?;
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

    fn limited_server(limits: Limits) -> (Server, SocketAddr) {
        let (srv, _h) =
            Server::start_with("127.0.0.1:0".parse().unwrap(), limits, |req: Request| {
                req.respond(Response::text(200, "ok"));
                true
            })
            .unwrap();
        let addr = srv.local_addr();
        (srv, addr)
    }

    /// Regression (issue 19 item 7): the timeout applied per read, so a client sending a byte
    /// now and then held its slot forever. Now the whole request has a deadline: a client
    /// trickling a byte every 50 ms gets a 408 when it passes.
    #[test]
    fn test_trickling_request_gets_408_at_the_deadline() {
        let (srv, addr) = limited_server(Limits {
            request_deadline: Duration::from_millis(700),
            ..Limits::default()
        });
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let began = Instant::now();
        let mut out = Vec::new();
        let mut sent = 0usize;
        let head = b"GET /api/agents HTTP/1.1\r\nX-Slow: ";
        // Sends one byte per round (the read timeout paces it) until the server answers;
        // bounded at 10 s, well past the per-read timeout the old code applied.
        while began.elapsed() < Duration::from_secs(10) {
            let b = head.get(sent).copied().unwrap_or(b'a');
            if s.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
            if out.ends_with(b"request not received in time") {
                break;
            }
        }
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 408"),
            "after {:?}: {out:?}",
            began.elapsed()
        );
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        srv.unblock();
    }

    /// Regression (issue 19 item 7): slow clients holding every slot locked everyone out (a
    /// normal client got 0 of 300 answers). Now each newcomer evicts the slowest reader: with
    /// 4 slots all held by stalled clients, every normal request is still answered.
    #[test]
    fn test_stalled_clients_cannot_hold_every_slot() {
        let (srv, addr) = limited_server(Limits {
            max_connections: 4,
            max_per_peer: 4,
            request_deadline: Duration::from_secs(60),
            slow_after: Duration::ZERO,
        });
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nX-Slow: a").unwrap();
            stalled.push(s);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while srv.connections() < 4 {
            assert!(Instant::now() < deadline, "stalled clients never admitted");
            std::thread::yield_now();
        }
        for i in 0..20 {
            let out = exchange(addr, b"GET /x HTTP/1.1\r\n\r\n");
            assert!(out.starts_with("HTTP/1.1 200"), "request {i}: {out}");
            // A stalled client comes back at once, as a slowloris does.
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nX-Slow: a").unwrap();
            stalled.push(s);
        }
        assert!(srv.evicted() >= 20, "{}", srv.evicted());
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
