//! The ingest socket loop: one mio poll over the UDP socket, the TCP listener, its connections
//! and a waker for the store's durability replies; every frame goes to the protocol core.
//! With `ingest_tls` each connection is a rustls server connection (`tls_io`).

use super::core::{IngestCore, Outcome, Transport};
use super::tls_io::{read_step, write_out, Step};
use super::FD_RESERVE;
use crate::metrics::{Metrics, TcpClose};
use crate::pipeline::ApiMsg;
use crate::pipeline::StoreReply;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use nfm_wire::stream::READ_CHUNK;
use nfm_wire::{encode, Ack, ErrorMsg, Header, Message, StreamDecoder};
use rustc_hash::FxHashMap as HashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UDP: Token = Token(0);
const LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONN: usize = 16;

/// Datagrams read per poll round before store replies are handled again.
const UDP_BUDGET: usize = 4_096;
/// Injected blocks (benchmarks, tests) handled per poll round.
const INJECT_BUDGET: usize = 2;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    decoder: StreamDecoder,
    agent: Option<(u64, u32)>,
    /// Sequence numbers received, in order, not yet acked.
    unacked: VecDeque<u64>,
    acked: Option<u64>,
    out: Vec<u8>,
    closing: bool,
    accepted: Instant,
    /// Last time bytes arrived.
    last_rx: Instant,
    /// Since when bytes of an incomplete frame have been buffered.
    partial_since: Option<Instant>,
    /// Bytes charged to the buffer budget for this connection.
    charge: usize,
    /// TLS over this connection (`ingest_tls`).
    tls: Option<Box<rustls::ServerConnection>>,
}

/// The socket side: owns the poll, sockets and connections.
pub struct IngestLoop {
    poll: Poll,
    udp: Option<UdpSocket>,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    by_agent: HashMap<u64, Vec<usize>>,
    core: IngestCore,
    replies: Receiver<StoreReply>,
    to_api: SyncSender<ApiMsg>,
    control: Receiver<IngestControl>,
    inject: Option<Receiver<Injected>>,
    metrics: Arc<Metrics>,
    /// `max_connections` lowered to the descriptor limit.
    max_conns: usize,
    /// Bytes all connections hold in partial frames (see `IngestConfig::buffer_budget`).
    buffered: usize,
    /// The one buffer every connection is read through.
    rbuf: Vec<u8>,
    /// Agents' connections over TLS (`ingest_tls`), with the API's certificate.
    tls: Option<crate::tls::Tls>,
}

/// The soft limit on open descriptors (RLIMIT_NOFILE), from /proc/self/limits.
pub fn nofile_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `max_connections` kept below the descriptor limit, less [`FD_RESERVE`].
pub fn connection_cap(configured: usize, nofile: Option<usize>) -> usize {
    match nofile {
        Some(n) => configured.min(n.saturating_sub(FD_RESERVE)).max(1),
        None => configured.max(1),
    }
}

/// Messages to a running ingest loop (with the waker).
pub enum IngestControl {
    Shutdown,
}

/// Frames handed to a running ingest loop in-process (benchmarks, embedding), handled exactly
/// like UDP datagrams: `bytes` holds the frames back to back, `lens` their lengths.
#[derive(Debug, Default, Clone)]
pub struct Injected {
    pub bytes: Vec<u8>,
    pub lens: Vec<u32>,
}

fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if let Err(e) = s.set_recv_buffer_size(rcvbuf) {
        log::warn!("ingest: cannot set UDP receive buffer to {rcvbuf}: {e}");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(TcpListener::from_std(s.into()))
}

/// Sockets bound before the threads start, so the addresses are known (port 0 allowed).
pub struct IngestSockets {
    pub poll: Poll,
    pub waker: Arc<Waker>,
    pub udp: Option<UdpSocket>,
    pub listener: Option<TcpListener>,
}

impl IngestSockets {
    pub fn bind(
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
        udp_recv_buffer: usize,
    ) -> io::Result<IngestSockets> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut udp = udp.map(|a| bind_udp(a, udp_recv_buffer)).transpose()?;
        let mut listener = tcp.map(bind_tcp).transpose()?;
        if let Some(u) = udp.as_mut() {
            poll.registry().register(u, UDP, Interest::READABLE)?;
        }
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        Ok(IngestSockets {
            poll,
            waker,
            udp,
            listener,
        })
    }
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|u| u.local_addr().ok())
    }
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }
}

enum ConnVerdict {
    Keep,
    Close,
}

impl IngestLoop {
    pub fn new(
        sockets: IngestSockets,
        core: IngestCore,
        replies: Receiver<StoreReply>,
        to_api: SyncSender<ApiMsg>,
        control: Receiver<IngestControl>,
        metrics: Arc<Metrics>,
    ) -> IngestLoop {
        let max_conns = connection_cap(core.cfg.max_connections, nofile_limit());
        if max_conns < core.cfg.max_connections {
            log::info!(
                "ingest: at most {max_conns} agent TCP connections (descriptor limit {:?} less {FD_RESERVE})",
                nofile_limit()
            );
        }
        IngestLoop {
            poll: sockets.poll,
            udp: sockets.udp,
            listener: sockets.listener,
            conns: Slab::new(),
            by_agent: HashMap::default(),
            core,
            replies,
            to_api,
            control,
            inject: None,
            metrics,
            max_conns,
            buffered: 0,
            rbuf: vec![0; READ_CHUNK],
            tls: None,
        }
    }

    /// Agents' TCP connections over TLS with this certificate (issue 15).
    pub fn with_tls(mut self, tls: Option<crate::tls::Tls>) -> IngestLoop {
        self.tls = tls;
        self
    }

    /// Also takes frames from this channel (wake the loop's waker after each send).
    pub fn with_injector(mut self, rx: Receiver<Injected>) -> IngestLoop {
        self.inject = Some(rx);
        self
    }

    /// Handles at most [`INJECT_BUDGET`] injected blocks; true when more may be waiting.
    fn drain_injected(&mut self) -> bool {
        let Some(rx) = self.inject.as_ref() else {
            return false;
        };
        for _ in 0..INJECT_BUDGET {
            let Ok(inj) = rx.try_recv() else {
                return false;
            };
            let mut at = 0usize;
            for &l in &inj.lens {
                let end = at + l as usize;
                let Some(frame) = inj.bytes.get(at..end) else {
                    break;
                };
                let _ = self.core.on_frame(frame, Transport::Udp, None);
                at = end;
            }
        }
        true
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 65536];
        let mut last_snapshot = Instant::now();
        // Input left unread by a budget: the next round polls without waiting and reads on.
        let (mut udp_pending, mut inject_pending) = (false, false);
        let mut trims = crate::alloc::IdleTrims::new(crate::alloc::Trimmer::Ingest);
        let mut seen = self.metrics.bytes_received.load(Ordering::Relaxed);
        log::info!("ingest: running");
        loop {
            let wait = if udp_pending || inject_pending {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("ingest: poll failed: {e}");
                break;
            }
            let mut udp_ready = std::mem::take(&mut udp_pending);
            for ev in events.iter() {
                match ev.token() {
                    UDP => udp_ready = true,
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let key = t - FIRST_CONN;
                        if !self.conns.contains(key) {
                            continue;
                        }
                        let mut verdict = ConnVerdict::Keep;
                        if ev.is_readable() || ev.is_read_closed() {
                            verdict = self.read_conn(key);
                            if matches!(verdict, ConnVerdict::Keep) {
                                self.account(key);
                                if !self.conns.contains(key) {
                                    continue; // closed to keep within the buffer budget
                                }
                            }
                        }
                        if matches!(verdict, ConnVerdict::Keep) && ev.is_writable() {
                            verdict = self.write_conn(key);
                        }
                        if matches!(verdict, ConnVerdict::Close) {
                            self.close(key);
                        }
                    }
                }
            }
            if udp_ready {
                udp_pending = self.read_udp(&mut buf);
            }
            inject_pending = self.drain_injected();
            self.core.flush();
            // Replies from the store (also after a waker event), every round: input is read in
            // budgets so that a flood can never keep acks and durability bookkeeping waiting.
            while let Ok(r) = self.replies.try_recv() {
                for a in self.core.on_store_reply(r) {
                    for key in self.by_agent.get(&a).cloned().unwrap_or_default() {
                        self.advance_acks(key);
                    }
                }
            }
            if let Ok(IngestControl::Shutdown) = self.control.try_recv() {
                break;
            }
            if last_snapshot.elapsed() >= Duration::from_millis(250) {
                last_snapshot = Instant::now();
                self.sweep(last_snapshot);
                self.core.housekeeping(false);
                // This thread's freed memory (frames, batches, expired connections and
                // sessions) goes back at a snapshot that saw no frame since the last one.
                let now_seen = self.metrics.bytes_received.load(Ordering::Relaxed);
                trims.after_group(false, now_seen != seen, true, true, &self.metrics);
                seen = now_seen;
                self.metrics
                    .tcp_connections
                    .store(self.conns.len() as u64, Ordering::Relaxed);
                let _ = self
                    .to_api
                    .try_send(ApiMsg::Ingest(Box::new(self.core.snapshot())));
            }
        }
        self.core.flush();
        self.core.housekeeping(true);
        let _ = self
            .to_api
            .send(ApiMsg::Ingest(Box::new(self.core.snapshot())));
        log::info!("ingest: stopped");
    }

    /// Reads datagrams until the socket is drained or [`UDP_BUDGET`] were handled; true in
    /// the second case (more may be waiting, and the edge-triggered poll will not say so).
    fn read_udp(&mut self, buf: &mut [u8]) -> bool {
        let Some(udp) = self.udp.as_ref() else {
            return false;
        };
        for _ in 0..UDP_BUDGET {
            match udp.recv_from(buf) {
                Ok((n, _peer)) => {
                    let _ = self.core.on_frame(&buf[..n], Transport::Udp, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("ingest: UDP receive error: {e}");
                    return false;
                }
            }
        }
        true
    }

    fn accept(&mut self) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.max_conns && !self.evict_one() {
                        log::warn!(
                            "ingest: refusing {peer}: {} connections open",
                            self.conns.len()
                        );
                        self.count(TcpClose::Refused);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let tls = match &self.tls {
                        Some(t) => match rustls::ServerConnection::new(t.config()) {
                            Ok(c) => Some(Box::new(c)),
                            Err(e) => {
                                log::error!("ingest: cannot start TLS for {peer}: {e}");
                                continue;
                            }
                        },
                        None => None,
                    };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(key + FIRST_CONN),
                        Interest::READABLE,
                    ) {
                        log::warn!("ingest: register {peer}: {e}");
                        continue;
                    }
                    log::debug!("ingest: TCP connection from {peer}");
                    entry.insert(Conn {
                        stream,
                        peer,
                        decoder: StreamDecoder::new(self.core.cfg.max_frame_len),
                        agent: None,
                        unacked: VecDeque::new(),
                        acked: None,
                        out: Vec::new(),
                        closing: false,
                        accepted: Instant::now(),
                        last_rx: Instant::now(),
                        partial_since: None,
                        charge: 0,
                        tls,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("ingest: accept: {e}");
                    break;
                }
            }
        }
    }

    /// Reads through the loop's one read buffer and appends only what arrived to the
    /// connection's decoder: a connection holds exactly its unread bytes (a decoder reading
    /// from the socket itself keeps a read chunk per connection and doubles its buffer at the
    /// end of a large frame).
    fn read_conn(&mut self, key: usize) -> ConnVerdict {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        rbuf.resize(READ_CHUNK, 0);
        let v = self.read_conn_into(key, &mut rbuf);
        self.rbuf = rbuf;
        v
    }

    fn read_conn_into(&mut self, key: usize, rbuf: &mut [u8]) -> ConnVerdict {
        if self.conns[key].tls.is_some() {
            return self.read_tls_into(key, rbuf);
        }
        loop {
            let conn = &mut self.conns[key];
            let n = conn.stream.read(rbuf);
            if let Ok(m) = n {
                if m > 0 {
                    conn.decoder.push(&rbuf[..m]);
                    conn.last_rx = Instant::now();
                }
            }
            match n {
                Ok(0) => {
                    // Peer closed; handle what it sent first.
                    let v = self.drain_frames(key);
                    let _ = v;
                    return ConnVerdict::Close;
                }
                Ok(_) => {
                    if let ConnVerdict::Close = self.drain_frames(key) {
                        return ConnVerdict::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ConnVerdict::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("ingest: read from {}: {e}", conn.peer);
                    return ConnVerdict::Close;
                }
            }
        }
    }

    /// [`Self::read_conn_into`] through TLS: each step's plaintext is decoded before the next
    /// read, as on a plain connection. A TLS failure is logged, counted and closes.
    fn read_tls_into(&mut self, key: usize, rbuf: &mut [u8]) -> ConnVerdict {
        loop {
            let conn = &mut self.conns[key];
            let Some(tls) = conn.tls.as_mut() else {
                return ConnVerdict::Close;
            };
            let (decoder, last_rx) = (&mut conn.decoder, &mut conn.last_rx);
            let step = read_step(tls, &mut conn.stream, rbuf, &mut |b| {
                decoder.push(b);
                *last_rx = Instant::now();
            });
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    if let Some(t) = &self.tls {
                        t.counters.ingest_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    log::warn!("ingest: closing {}: {e}", conn.peer);
                    return ConnVerdict::Close;
                }
            };
            if let ConnVerdict::Close = self.drain_frames(key) {
                return ConnVerdict::Close;
            }
            // Handshake messages and acks rustls has to send.
            if let ConnVerdict::Close = self.write_conn(key) {
                return ConnVerdict::Close;
            }
            match step {
                Step::More => {}
                Step::Blocked => return ConnVerdict::Keep,
                Step::Eof => return ConnVerdict::Close,
            }
        }
    }

    fn drain_frames(&mut self, key: usize) -> ConnVerdict {
        loop {
            let conn = &mut self.conns[key];
            let tcp_agent = conn.agent.map(|(a, _)| a);
            let frame = match conn.decoder.next_frame() {
                Ok(Some(f)) => f.to_vec(),
                Ok(None) => return ConnVerdict::Keep,
                Err(e) => {
                    let outcome = self.core.reject(tcp_agent, e.reason(), e.to_string());
                    return self.fatal(key, outcome);
                }
            };
            let outcome = self.core.on_frame(&frame, Transport::Tcp, tcp_agent);
            match outcome {
                Outcome::Accepted {
                    agent_id,
                    epoch,
                    seq,
                    ..
                }
                | Outcome::Duplicate {
                    agent_id,
                    epoch,
                    seq,
                } => {
                    let conn = &mut self.conns[key];
                    if conn.agent.map(|(_, e)| e) != Some(epoch) {
                        if conn.agent.is_none() {
                            self.by_agent.entry(agent_id).or_default().push(key);
                        }
                        conn.agent = Some((agent_id, epoch));
                        conn.unacked.clear();
                        conn.acked = None;
                    }
                    conn.unacked.push_back(seq);
                    self.advance_acks(key);
                }
                Outcome::Rejected { .. } if !outcome.is_fatal() => {}
                Outcome::Rejected { .. } => return self.fatal(key, outcome),
            }
            if self.conns.get(key).is_none_or(|c| c.closing) {
                return ConnVerdict::Close;
            }
        }
    }

    /// Sends an Error frame (best effort, non-blocking) and closes.
    fn fatal(&mut self, key: usize, outcome: Outcome) -> ConnVerdict {
        let Outcome::Rejected {
            agent_id,
            reason,
            message,
        } = outcome
        else {
            return ConnVerdict::Close;
        };
        let conn = &mut self.conns[key];
        log::warn!("ingest: closing {} ({reason}): {message}", conn.peer);
        let header = Header {
            agent_id: agent_id.unwrap_or(0),
            epoch: conn.agent.map(|(_, e)| e).unwrap_or(0),
            seq: 0,
        };
        let msg = Message::Error(ErrorMsg {
            reason: reason.into(),
            message,
        });
        let key_ = self.core.signing_key();
        encode(&header, &msg, key_.as_ref(), &mut conn.out);
        match conn.tls.as_mut() {
            Some(tls) => {
                let _ = write_out(tls, &mut conn.stream, &mut conn.out);
            }
            None => {
                let _ = conn.stream.write(&conn.out);
            }
        }
        conn.out.clear();
        ConnVerdict::Close
    }

    /// Acks the longest prefix of this connection's frames that is durable.
    fn advance_acks(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some((agent, epoch)) = conn.agent else {
            return;
        };
        let mut last = None;
        while let Some(&seq) = conn.unacked.front() {
            if self.core.in_store(agent, epoch, seq) {
                break;
            }
            conn.unacked.pop_front();
            last = Some(seq);
        }
        let Some(seq) = last else { return };
        if conn.acked.is_some_and(|a| a >= seq) {
            return;
        }
        conn.acked = Some(seq);
        let header = Header {
            agent_id: agent,
            epoch,
            seq: 0,
        };
        let k = self.core.signing_key();
        encode(
            &header,
            &Message::Ack(Ack { epoch, seq }),
            k.as_ref(),
            &mut conn.out,
        );
        if let ConnVerdict::Close = self.write_conn(key) {
            if let Some(c) = self.conns.get_mut(key) {
                c.closing = true;
            }
        }
    }

    fn write_conn(&mut self, key: usize) -> ConnVerdict {
        let conn = &mut self.conns[key];
        let mut pending = false;
        if let Some(tls) = conn.tls.as_mut() {
            match write_out(tls, &mut conn.stream, &mut conn.out) {
                Ok(p) => pending = p,
                Err(_) => return ConnVerdict::Close,
            }
        }
        while !conn.out.is_empty() && conn.tls.is_none() {
            match conn.stream.write(&conn.out) {
                Ok(0) => return ConnVerdict::Close,
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ConnVerdict::Close,
            }
        }
        let interest = if conn.out.is_empty() && !pending {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if self
            .poll
            .registry()
            .reregister(&mut conn.stream, Token(key + FIRST_CONN), interest)
            .is_err()
        {
            return ConnVerdict::Close;
        }
        ConnVerdict::Keep
    }

    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        self.buffered -= conn.charge;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some((a, _)) = conn.agent {
            if let Some(v) = self.by_agent.get_mut(&a) {
                v.retain(|k| *k != key);
                if v.is_empty() {
                    self.by_agent.remove(&a);
                }
            }
        }
        log::debug!("ingest: closed {}", conn.peer);
    }

    fn count(&self, why: TcpClose) {
        self.metrics.tcp_closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// After a read: frees a drained connection's buffer, charges a partial frame's bytes to
    /// the budget and keeps the total within the budget by closing the connections with the
    /// oldest partial frames.
    fn account(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let held = conn.decoder.buffered();
        let charge = if held == 0 {
            // Nothing pending: drop the buffer (a read chunk, or a large frame's room).
            conn.decoder = StreamDecoder::new(self.core.cfg.max_frame_len);
            conn.partial_since = None;
            0
        } else {
            conn.partial_since.get_or_insert_with(Instant::now);
            held
        };
        self.buffered = self.buffered - conn.charge + charge;
        conn.charge = charge;
        while self.buffered > self.core.cfg.buffer_budget {
            let oldest = self
                .conns
                .iter()
                .filter_map(|(k, c)| c.partial_since.map(|t| (t, k)))
                .min();
            let Some((_, k)) = oldest else { break };
            log::warn!(
                "ingest: closing {}: partial frames over the buffer budget ({} bytes)",
                self.conns[k].peer,
                self.core.cfg.buffer_budget
            );
            self.count(TcpClose::Budget);
            self.close(k);
        }
        self.metrics
            .ingest_buffered_bytes
            .store(self.buffered as u64, Ordering::Relaxed);
    }

    /// Closes connections past their handshake, idle or partial-frame timeout.
    fn sweep(&mut self, now: Instant) {
        let cfg = &self.core.cfg;
        let due: Vec<(usize, TcpClose)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| {
                let why = if c
                    .partial_since
                    .is_some_and(|t| now.duration_since(t) >= cfg.tcp_partial_timeout)
                {
                    TcpClose::Partial
                } else if c.agent.is_none()
                    && now.duration_since(c.accepted) >= cfg.tcp_handshake_timeout
                {
                    TcpClose::Handshake
                } else if now.duration_since(c.last_rx) >= cfg.tcp_idle_timeout {
                    TcpClose::Idle
                } else {
                    return None;
                };
                Some((k, why))
            })
            .collect();
        for (k, why) in due {
            log::debug!("ingest: closing {} ({})", self.conns[k].peer, why.as_str());
            self.count(why);
            self.close(k);
        }
        self.metrics
            .ingest_buffered_bytes
            .store(self.buffered as u64, Ordering::Relaxed);
    }

    /// At `max_connections`: closes the oldest connection that has not sent a valid frame yet.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.agent.is_none())
            .min_by_key(|(_, c)| c.accepted)
            .map(|(k, _)| k);
        match victim {
            Some(k) => {
                self.count(TcpClose::Evicted);
                self.close(k);
                true
            }
            None => false,
        }
    }
}
