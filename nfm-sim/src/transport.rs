//! Sending frames to a collector over UDP or TCP, for many virtual agents at once, on one mio
//! `Poll` in the caller's thread.
//!
//! - UDP: a few sockets (default 4) shared by all agents, agent `i` on socket `i % n`; one
//!   datagram per frame. A full send buffer waits for writability (bounded); any other send
//!   error is counted and the datagram is lost, as it would be for a real agent.
//! - TCP: one connection per agent (an Ack names only epoch and seq, so it belongs to the
//!   connection's agent), all on the same `Poll`. Frames queue in a per-connection buffer that
//!   is written on writability; Acks are read and retire the frames they cover. Above
//!   `HIGH_WATER` buffered bytes `send` drives the loop until the peer catches up: backpressure
//!   instead of unbounded memory. A broken connection is counted, its queued frames are lost,
//!   and it reconnects (at most once a second) re-sending the agent's Hello first.
//! - Several collectors ([`Sender::set_collectors`], issue 16 item 3): each agent ships to its
//!   first choice by rendezvous hash of its id (`nfm_wire::rendezvous`, the same split as
//!   nfm-agent); a TCP agent whose connection fails reconnects to the next of its ranking.

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use nfm_wire::{DecodeOptions, Message, StreamDecoder, MAX_FRAME_LEN};
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Buffered bytes per TCP connection above which `send` waits for the socket to drain.
/// 1 MiB: a few intervals of one large agent; keeps 10,000 connections under ~10 GiB worst case
/// only if all stall at once, which backpressure prevents (we drain before queueing more).
pub const HIGH_WATER: usize = 1 << 20;
/// How long one `send` may wait for a UDP socket to become writable before counting an error.
const UDP_WAIT: Duration = Duration::from_millis(200);
/// How long one `send` may wait for a TCP connection to drain below `HIGH_WATER`.
const TCP_WAIT: Duration = Duration::from_secs(5);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Connections allowed in progress at once: opening 10,000 agents' connections in one burst
/// would overflow the collector's listen backlog (typically 1,024) and get them reset.
const MAX_CONNECTING: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Udp,
    Tcp,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "udp" => Ok(Kind::Udp),
            "tcp" => Ok(Kind::Tcp),
            _ => Err(format!("transport `{s}` is not udp or tcp")),
        }
    }
}

/// What a sender did, for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendStats {
    /// Frames fully handed to the kernel (TCP: completely written to the socket).
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Flow records in frames handed to the kernel.
    pub records_sent: u64,
    /// Failed sends (each loses its frame) and broken connections.
    pub send_errors: u64,
    /// Records in frames lost to errors.
    pub records_lost: u64,
    /// TCP: frames and records the collector acknowledged.
    pub frames_acked: u64,
    pub records_acked: u64,
    /// TCP: frames sent (or queued) and not yet acknowledged.
    pub frames_unacked: u64,
    pub connects: u64,
}

struct Conn {
    stream: Option<TcpStream>,
    connected: bool,
    writable: bool,
    out: Vec<u8>,
    out_pos: usize,
    /// Frames in `out` or on the wire and not yet acked: (epoch, seq, records, end offset in the
    /// cumulative byte count of this connection).
    unacked: VecDeque<(u32, u64, u64)>,
    dec: StreamDecoder,
    /// Frames queued and not completely written: (cumulative end offset, length, records).
    unwritten: VecDeque<(u64, u64, u64)>,
    /// Bytes queued and bytes written on this connection since it opened.
    queued_total: u64,
    written_total: u64,
    hello: Vec<u8>,
    last_attempt: Option<Instant>,
    /// Several collectors: indices into `Sender::collectors` in this agent's rendezvous order,
    /// and the position in use.
    order: Box<[u16]>,
    pos: usize,
}

/// A sender for one transport.
pub struct Sender {
    kind: Kind,
    addr: SocketAddr,
    /// Every collector (just `addr` unless `set_collectors` gave several).
    collectors: Vec<SocketAddr>,
    /// UDP: sockets per collector (agent `i` of collector `c` on `udp[c * per + i % per]`), and
    /// each agent's collector.
    udp_per: usize,
    udp_choice: Vec<u16>,
    poll: Poll,
    events: Events,
    udp: Vec<UdpSocket>,
    conns: Vec<Conn>,
    stats: SendStats,
    buffered: usize,
    connecting: usize,
    /// Connection losses so far (warnings are rate-limited on it).
    losses: u64,
    /// TCP: write a connection's queue only once it holds this many bytes (or on `flush_all`,
    /// `drive` backpressure and `finish`). 0 writes every frame at once.
    coalesce: usize,
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A large send buffer absorbs an interval's burst (4 MiB; the kernel caps it at wmem_max).
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    s.bind(&local.into())?;
    s.connect(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

impl Sender {
    /// `agents` connections (TCP) are opened lazily on first use; `udp_sockets` sockets (UDP).
    pub fn new(
        kind: Kind,
        addr: SocketAddr,
        agents: usize,
        udp_sockets: usize,
    ) -> io::Result<Sender> {
        let poll = Poll::new()?;
        let mut udp = Vec::new();
        let mut conns = Vec::new();
        match kind {
            Kind::Udp => {
                for i in 0..udp_sockets.max(1) {
                    let mut s = udp_socket(addr)?;
                    poll.registry()
                        .register(&mut s, Token(i), Interest::WRITABLE)?;
                    udp.push(s);
                }
            }
            Kind::Tcp => {
                for _ in 0..agents {
                    conns.push(Conn {
                        stream: None,
                        connected: false,
                        writable: false,
                        out: Vec::new(),
                        out_pos: 0,
                        unacked: VecDeque::new(),
                        dec: StreamDecoder::new(MAX_FRAME_LEN),
                        unwritten: VecDeque::new(),
                        queued_total: 0,
                        written_total: 0,
                        hello: Vec::new(),
                        last_attempt: None,
                        order: Box::new([]),
                        pos: 0,
                    });
                }
            }
        }
        let udp_per = udp.len();
        Ok(Sender {
            kind,
            addr,
            collectors: vec![addr],
            udp_per,
            udp_choice: Vec::new(),
            poll,
            events: Events::with_capacity(1024),
            udp,
            conns,
            stats: SendStats::default(),
            buffered: 0,
            connecting: 0,
            losses: 0,
            coalesce: 0,
        })
    }

    /// Ships to several collectors: agent `i` (id `agent_ids[i]`) to its first choice by
    /// rendezvous hash, TCP failing over along its ranking. An empty or repeated list is an error.
    pub fn set_collectors(&mut self, addrs: &[SocketAddr], agent_ids: &[u64]) -> io::Result<()> {
        let bad = |m: String| io::Error::new(ErrorKind::InvalidInput, m);
        if addrs.is_empty() || addrs.len() > u16::MAX as usize {
            return Err(bad(format!("{} collectors: 1 to 65535", addrs.len())));
        }
        for (i, a) in addrs.iter().enumerate() {
            if addrs[..i].contains(a) {
                return Err(bad(format!("collector {a} is listed twice")));
            }
        }
        self.collectors = addrs.to_vec();
        self.addr = addrs[0];
        match self.kind {
            Kind::Tcp => {
                for (c, &id) in self.conns.iter_mut().zip(agent_ids) {
                    c.order = nfm_wire::rendezvous::rank(id, addrs)
                        .into_iter()
                        .map(|i| i as u16)
                        .collect();
                    c.pos = 0;
                }
            }
            Kind::Udp => {
                let per = self.udp_per.max(1);
                let mut udp = Vec::new();
                for (c, &a) in addrs.iter().enumerate() {
                    for k in 0..per {
                        let mut s = udp_socket(a)?;
                        self.poll.registry().register(
                            &mut s,
                            Token(c * per + k),
                            Interest::WRITABLE,
                        )?;
                        udp.push(s);
                    }
                }
                for mut s in std::mem::replace(&mut self.udp, udp) {
                    let _ = self.poll.registry().deregister(&mut s);
                }
                self.udp_per = per;
                self.udp_choice = agent_ids
                    .iter()
                    .map(|&id| nfm_wire::rendezvous::pick(id, addrs).unwrap_or(0) as u16)
                    .collect();
            }
        }
        Ok(())
    }

    /// TCP: batch frames per connection into writes of at least `bytes` (a load test's many
    /// small frames per agent then cost one system call per batch instead of one each).
    pub fn set_coalesce(&mut self, bytes: usize) {
        self.coalesce = bytes.min(16 * 1024);
    }

    /// TCP: writes every connection's queued bytes that its socket will take now.
    pub fn flush_all(&mut self) {
        for a in 0..self.conns.len() {
            let c = &self.conns[a];
            if c.connected && c.writable && c.out_pos < c.out.len() {
                self.flush_conn(a);
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn stats(&self) -> SendStats {
        let mut s = self.stats;
        s.frames_unacked = self.conns.iter().map(|c| c.unacked.len() as u64).sum();
        s
    }

    /// Sends one frame of agent `agent` (sequence `seq`, carrying `records` flow records).
    /// `hello` marks the agent's Hello, which TCP re-sends first after a reconnect.
    pub fn send(
        &mut self,
        agent: usize,
        epoch: u32,
        seq: u64,
        records: u64,
        frame: &[u8],
        hello: bool,
    ) {
        match self.kind {
            Kind::Udp => self.send_udp(agent, records, frame),
            Kind::Tcp => self.send_tcp(agent, epoch, seq, records, frame, hello),
        }
    }

    fn send_udp(&mut self, agent: usize, records: u64, frame: &[u8]) {
        let i = match self.udp_choice.get(agent) {
            Some(&c) => c as usize * self.udp_per + agent % self.udp_per,
            None => agent % self.udp.len(),
        };
        let deadline = Instant::now() + UDP_WAIT;
        loop {
            match self.udp[i].send(frame) {
                Ok(_) => {
                    self.stats.frames_sent += 1;
                    self.stats.bytes_sent += frame.len() as u64;
                    self.stats.records_sent += records;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    // Writability is edge-triggered and shared by every socket: wait a little
                    // and retry whatever came back.
                    let _ = self.poll.poll(
                        &mut self.events,
                        Some((deadline - now).min(Duration::from_millis(5))),
                    );
                }
                Err(e) => {
                    log::debug!("udp send: {e}");
                    break;
                }
            }
        }
        self.stats.send_errors += 1;
        self.stats.records_lost += records;
    }

    /// Opens the agent's connection if it has none (at most once a second). Returns true when
    /// a new connection was opened, with the agent's Hello already queued on it.
    fn connect(&mut self, agent: usize) -> bool {
        let c = &mut self.conns[agent];
        let addr = match c.order.get(c.pos % c.order.len().max(1)) {
            Some(&i) => self.collectors[i as usize],
            None => self.addr,
        };
        if c.stream.is_some() {
            return false;
        }
        if let Some(t) = c.last_attempt {
            if t.elapsed() < RECONNECT_EVERY {
                return false;
            }
        }
        c.last_attempt = Some(Instant::now());
        self.connecting += 1;
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(agent),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    log::warn!("register: {e}");
                    self.stats.send_errors += 1;
                    self.connecting -= 1;
                    return false;
                }
                self.stats.connects += 1;
                c.stream = Some(s);
                c.connected = false;
                c.writable = false;
                let hello = std::mem::take(&mut c.hello);
                c.out.extend_from_slice(&hello);
                c.queued_total = hello.len() as u64;
                c.written_total = 0;
                c.hello = hello;
                true
            }
            Err(e) => {
                log::debug!("connect {addr}: {e}");
                c.pos += 1;
                self.stats.send_errors += 1;
                self.connecting -= 1;
                false
            }
        }
    }

    fn send_tcp(
        &mut self,
        agent: usize,
        epoch: u32,
        seq: u64,
        records: u64,
        frame: &[u8],
        hello: bool,
    ) {
        if hello {
            self.conns[agent].hello = frame.to_vec();
        }
        if self.conns[agent].stream.is_none() {
            // Pace connection setup: wait (bounded) for some in-progress connects to finish.
            let deadline = Instant::now() + TCP_WAIT;
            while self.connecting >= MAX_CONNECTING && Instant::now() < deadline {
                self.drive(Duration::from_millis(10));
            }
        }
        let fresh = self.connect(agent);
        if self.conns[agent].stream.is_none() {
            self.stats.send_errors += 1;
            self.stats.records_lost += records;
            return;
        }
        let deadline = Instant::now() + TCP_WAIT;
        while self.conns[agent].out.len() - self.conns[agent].out_pos > HIGH_WATER
            && Instant::now() < deadline
        {
            if self.conns[agent].connected && self.conns[agent].writable {
                self.flush_conn(agent);
            }
            self.drive(Duration::from_millis(10));
            if self.conns[agent].stream.is_none() {
                self.stats.records_lost += records;
                return;
            }
        }
        {
            let c = &mut self.conns[agent];
            // A fresh connection already starts with this Hello.
            if !(hello && fresh) {
                c.out.extend_from_slice(frame);
                c.queued_total += frame.len() as u64;
            }
            c.unacked.push_back((epoch, seq, records));
            c.unwritten
                .push_back((c.queued_total, frame.len() as u64, records));
        }
        self.buffered += frame.len();
        let c = &self.conns[agent];
        if c.connected && c.writable && c.out.len() - c.out_pos >= self.coalesce {
            self.flush_conn(agent);
        }
        // Opportunistic: handle Acks and writability without blocking.
        if self.buffered > HIGH_WATER {
            self.drive(Duration::ZERO);
        }
    }

    fn close(&mut self, agent: usize, why: &str) {
        let c = &mut self.conns[agent];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            // Several collectors: the next connection goes to the next of this agent's ranking.
            c.pos += 1;
            if !c.connected {
                self.connecting -= 1;
            }
            self.losses += 1;
            // Rate-limited: a dead collector would otherwise log once per agent.
            if self.losses <= 5 || self.losses.is_power_of_two() {
                log::warn!(
                    "agent {agent}: connection to {} lost: {why} ({} connections lost so far)",
                    self.addr,
                    self.losses
                );
            }
            self.stats.send_errors += 1;
        }
        let lost: u64 = c.unacked.iter().map(|u| u.2).sum();
        self.stats.records_lost += lost;
        c.unacked.clear();
        c.unwritten.clear();
        self.buffered -= (c.out.len() - c.out_pos).min(self.buffered);
        c.out.clear();
        c.out_pos = 0;
        c.connected = false;
        c.writable = false;
        c.dec = StreamDecoder::new(MAX_FRAME_LEN);
    }

    fn flush_conn(&mut self, agent: usize) {
        let c = &mut self.conns[agent];
        let Some(s) = c.stream.as_mut() else { return };
        while c.out_pos < c.out.len() {
            match s.write(&c.out[c.out_pos..]) {
                Ok(0) => {
                    self.close(agent, "write returned 0");
                    return;
                }
                Ok(n) => {
                    c.out_pos += n;
                    c.written_total += n as u64;
                    self.buffered -= n.min(self.buffered);
                    while let Some(&(end, len, recs)) = c.unwritten.front() {
                        if end > c.written_total {
                            break;
                        }
                        c.unwritten.pop_front();
                        self.stats.frames_sent += 1;
                        self.stats.bytes_sent += len;
                        self.stats.records_sent += recs;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.writable = false;
                    break;
                }
                Err(e) => {
                    self.close(agent, &e.to_string());
                    return;
                }
            }
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        } else if c.out_pos > (1 << 20) {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
    }

    fn read_conn(&mut self, agent: usize) {
        // Acks are small: read them through a small buffer rather than the stream decoder's
        // 64 KiB chunk, which would be zero-filled on every read of every connection.
        let mut chunk = [0u8; 4096];
        loop {
            let c = &mut self.conns[agent];
            let Some(s) = c.stream.as_mut() else { return };
            match s.read(&mut chunk) {
                Ok(0) => {
                    self.close(agent, "closed by the collector");
                    return;
                }
                Ok(n) => c.dec.push(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.close(agent, &e.to_string());
                    return;
                }
            }
            loop {
                let c = &mut self.conns[agent];
                match c.dec.next_packet(&DecodeOptions::default()) {
                    Ok(None) => break,
                    Ok(Some(p)) => match p.message {
                        Message::Ack(a) => {
                            while let Some(&(e, seq, recs)) = c.unacked.front() {
                                if e != a.epoch || seq > a.seq {
                                    break;
                                }
                                c.unacked.pop_front();
                                self.stats.frames_acked += 1;
                                self.stats.records_acked += recs;
                            }
                        }
                        Message::Error(m) => {
                            let why = format!("collector error {}: {}", m.reason, m.message);
                            self.close(agent, &why);
                            return;
                        }
                        _ => {}
                    },
                    Err(e) => {
                        self.close(agent, &format!("bad frame from collector: {e}"));
                        return;
                    }
                }
            }
        }
    }

    /// Handles readiness (Acks, writability, connect completion) for up to `timeout`.
    pub fn drive(&mut self, timeout: Duration) {
        if self.kind == Kind::Udp {
            return;
        }
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                log::warn!("poll: {e}");
            }
            return;
        }
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable(),
                    e.is_error(),
                )
            })
            .collect();
        for (agent, readable, writable, error) in ready {
            if agent >= self.conns.len() || self.conns[agent].stream.is_none() {
                continue;
            }
            if error {
                let why = self.conns[agent]
                    .stream
                    .as_ref()
                    .and_then(|s| s.take_error().ok().flatten())
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "socket error".into());
                self.close(agent, &why);
                continue;
            }
            if writable {
                let c = &mut self.conns[agent];
                if !c.connected {
                    let s = c.stream.as_ref().expect("checked");
                    match s.take_error() {
                        Ok(Some(e)) | Err(e) => {
                            self.close(agent, &e.to_string());
                            continue;
                        }
                        Ok(None) => {}
                    }
                    if s.peer_addr().is_err() {
                        continue;
                    }
                    c.connected = true;
                    self.connecting -= 1;
                }
                self.conns[agent].writable = true;
                self.flush_conn(agent);
            }
            if readable {
                self.read_conn(agent);
            }
        }
    }

    /// Writes everything queued and, when `wait_acks`, waits for the Acks, until `deadline`.
    /// Returns whether everything was written (and acknowledged).
    pub fn finish(&mut self, deadline: Instant, wait_acks: bool) -> bool {
        if self.kind == Kind::Udp {
            return true;
        }
        loop {
            self.flush_all();
            let pending_out = self
                .conns
                .iter()
                .any(|c| c.stream.is_some() && c.out_pos < c.out.len());
            let pending_ack = wait_acks
                && self
                    .conns
                    .iter()
                    .any(|c| c.stream.is_some() && !c.unacked.is_empty());
            if !pending_out && !pending_ack {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.drive((deadline - now).min(Duration::from_millis(20)));
        }
    }
}
