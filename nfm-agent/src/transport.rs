//! Shipping frames to a collector over UDP (fire and forget) or TCP (acked, spooled, resent).
//!
//! Guarantee (TCP): a frame leaves the spool only when the collector acks its sequence number
//! (an [`Ack`] covers every frame with `seq ≤ ack.seq`) or when the spool overflows, and then the
//! exact number of frames and records dropped is counted. After a reconnect the session's Hello
//! and every unacked frame are written again with their original `(epoch, seq)`, so a collector
//! that dedupes on the triple receives every record exactly once.
//!
//! Reconnects back off exponentially (100 ms doubling to 10 s) with ±25 % jitter so a fleet does
//! not reconnect in lockstep after a collector restart. The collector is chosen by a stable hash
//! of the agent id; on failure the next configured one is tried.
//!
//! TLS (`--tls-ca`, issue 15): the same stream inside a rustls client connection
//! (`crate::tls`); the spool counts a frame written once rustls has taken it, so a connection
//! lost mid-handshake or mid-record resends exactly as a plain one does.

use crate::tls::{read_step, write_tls, Step, TlsClient};
use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use nfm_wire::{DecodeOptions, Keyring, Message, StreamDecoder, MAX_FRAME_LEN};
use rustls::ClientConnection;
use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The collector socket's token in the agent's poll.
pub const COLLECTOR: Token = Token(2);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Udp,
    Tcp,
}

/// Counters reported in AgentStats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportStats {
    pub frames_sent: u64,
    pub records_sent: u64,
    pub send_errors: u64,
    pub spool_dropped_frames: u64,
    pub spool_dropped_records: u64,
    pub connects: u64,
    pub frames_acked: u64,
    /// Connections that failed TLS (an untrusted collector certificate, a plain-text port).
    pub tls_errors: u64,
}

/// One spooled frame.
#[derive(Debug)]
struct Spooled {
    seq: u64,
    records: u64,
    bytes: Vec<u8>,
}

/// Frames not yet acked, bounded in bytes, with the write position of the current connection.
#[derive(Debug)]
pub struct Spool {
    frames: VecDeque<Spooled>,
    bytes: usize,
    cap: usize,
    /// Frames fully written on the current connection, and bytes written of the next one.
    written: usize,
    offset: usize,
    /// Highest sequence number the collector acked.
    acked_upto: Option<u64>,
}

impl Spool {
    pub fn new(cap: usize) -> Spool {
        Spool {
            frames: VecDeque::new(),
            bytes: 0,
            cap,
            written: 0,
            offset: 0,
            acked_upto: None,
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a frame; drops the oldest frames (never one half-written on the wire) while over
    /// capacity. Returns (frames, records) dropped.
    pub fn push(&mut self, seq: u64, records: u64, bytes: Vec<u8>) -> (u64, u64) {
        let mut dropped = (0, 0);
        self.bytes += bytes.len();
        self.frames.push_back(Spooled {
            seq,
            records,
            bytes,
        });
        while self.bytes > self.cap && self.frames.len() > 1 {
            // The frame being written (offset > 0) must finish, or the stream is corrupt.
            let victim = if self.written == 0 && self.offset > 0 {
                1
            } else {
                0
            };
            if victim >= self.frames.len() - 1 {
                break; // only the in-flight frame and the new one are left
            }
            let Some(f) = self.frames.remove(victim) else {
                break;
            };
            self.bytes -= f.bytes.len();
            if victim < self.written {
                self.written -= 1;
            }
            dropped.0 += 1;
            dropped.1 += f.records;
        }
        dropped
    }

    /// Retires every frame with `seq ≤ upto`. Returns how many. A frame half-written on the
    /// current connection is retired once its last byte is written (see `advance`).
    pub fn ack(&mut self, upto: u64) -> u64 {
        self.acked_upto = Some(self.acked_upto.map_or(upto, |a| a.max(upto)));
        self.retire()
    }

    fn retire(&mut self) -> u64 {
        let Some(upto) = self.acked_upto else {
            return 0;
        };
        let mut n = 0;
        while let Some(f) = self.frames.front() {
            if f.seq > upto || (self.written == 0 && self.offset > 0) {
                break;
            }
            if let Some(f) = self.frames.pop_front() {
                self.bytes -= f.bytes.len();
            }
            self.written = self.written.saturating_sub(1);
            n += 1;
        }
        n
    }

    /// Starts a new connection: everything is written again.
    pub fn rewind(&mut self) {
        self.written = 0;
        self.offset = 0;
    }

    /// The unwritten remainder of the next frame, if any.
    fn next_chunk(&self) -> Option<&[u8]> {
        self.frames
            .get(self.written)
            .map(|f| &f.bytes[self.offset..])
    }

    /// Returns frames retired by an earlier ack that covered the frame just completed.
    fn advance(&mut self, n: usize) -> u64 {
        self.offset += n;
        if let Some(f) = self.frames.get(self.written) {
            if self.offset >= f.bytes.len() {
                self.written += 1;
                self.offset = 0;
                return self.retire();
            }
        }
        0
    }

    pub fn all_written(&self) -> bool {
        self.written >= self.frames.len()
    }
}

enum Tcp {
    Idle {
        retry_at: Instant,
    },
    Connecting(TcpStream),
    Connected {
        stream: TcpStream,
        dec: StreamDecoder,
        tls: Option<Box<ClientConnection>>,
    },
}

pub struct Transport {
    kind: Kind,
    collectors: Vec<SocketAddr>,
    current: usize,
    epoch: u32,
    keys: Option<Keyring>,
    udp: Option<UdpSocket>,
    tcp: Tcp,
    backoff: Duration,
    rng: u64,
    /// The session's Hello frame, written first on every TCP connection.
    hello: Vec<u8>,
    hello_off: usize,
    pub spool: Spool,
    pub stats: TransportStats,
    tls: Option<TlsClient>,
}

/// FNV-1a, the stable hash used to pick a collector (same on every host and version).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Transport {
    pub fn new(
        kind: Kind,
        collectors: Vec<SocketAddr>,
        agent_id: u64,
        epoch: u32,
        spool_bytes: usize,
        keys: Option<Keyring>,
    ) -> Transport {
        let n = collectors.len().max(1);
        let current = (fnv1a(&agent_id.to_le_bytes()) % n as u64) as usize;
        Transport {
            kind,
            collectors,
            current,
            epoch,
            keys,
            udp: None,
            tcp: Tcp::Idle {
                retry_at: Instant::now(),
            },
            backoff: BACKOFF_MIN,
            rng: agent_id ^ (epoch as u64) << 17 ^ 0x9e3779b97f4a7c15,
            hello: Vec::new(),
            hello_off: 0,
            spool: Spool::new(spool_bytes),
            stats: TransportStats::default(),
            tls: None,
        }
    }

    /// TCP connections over TLS, verifying the collector against this CA (issue 15).
    pub fn with_tls(mut self, tls: Option<TlsClient>) -> Transport {
        self.tls = tls;
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn collector(&self) -> Option<SocketAddr> {
        self.collectors.get(self.current).copied()
    }

    pub fn connected(&self) -> bool {
        matches!(self.tcp, Tcp::Connected { .. })
    }

    /// Sets the Hello written at the start of every TCP connection.
    pub fn set_hello(&mut self, frame: Vec<u8>) {
        self.hello = frame;
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64*: enough to spread reconnects; no need for a crypto RNG.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545F4914F6CDD1D);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        d.mul_f64(0.75 + 0.5 * frac)
    }

    /// When the loop must wake up for this transport (a pending reconnect).
    pub fn next_wakeup(&self) -> Option<Instant> {
        match self.tcp {
            Tcp::Idle { retry_at } if self.kind == Kind::Tcp => Some(retry_at),
            _ => None,
        }
    }

    /// Sends (UDP) or spools and writes (TCP) one frame.
    pub fn send(&mut self, registry: &Registry, seq: u64, records: u64, frame: Vec<u8>) {
        self.stats.frames_sent += 1;
        self.stats.records_sent += records;
        match self.kind {
            Kind::Udp => self.send_udp(&frame),
            Kind::Tcp => {
                let (f, r) = self.spool.push(seq, records, frame);
                if f > 0 {
                    log::warn!("spool full: dropped {f} frames ({r} records)");
                    self.stats.spool_dropped_frames += f;
                    self.stats.spool_dropped_records += r;
                }
                self.flush(registry);
            }
        }
    }

    fn send_udp(&mut self, frame: &[u8]) {
        let Some(addr) = self.collector() else {
            self.stats.send_errors += 1;
            return;
        };
        if self.udp.is_none() {
            let bind: SocketAddr = if addr.is_ipv6() {
                "[::]:0".parse().expect("literal")
            } else {
                "0.0.0.0:0".parse().expect("literal")
            };
            match UdpSocket::bind(bind).and_then(|s| s.connect(addr).map(|_| s)) {
                Ok(s) => self.udp = Some(s),
                Err(e) => {
                    log::warn!("udp socket to {addr}: {e}");
                    self.stats.send_errors += 1;
                    return;
                }
            }
        }
        let Some(s) = self.udp.as_ref() else { return };
        loop {
            match s.send(frame) {
                Ok(_) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNREFUSED: an ICMP port-unreachable from a previous datagram. Fail over.
                    log::warn!("udp send to {addr}: {e}");
                    self.stats.send_errors += 1;
                    if e.kind() == ErrorKind::ConnectionRefused && self.collectors.len() > 1 {
                        self.current = (self.current + 1) % self.collectors.len();
                        self.udp = None;
                    }
                    return;
                }
            }
        }
    }

    /// Starts a connection when one is due.
    pub fn on_tick(&mut self, registry: &Registry, now: Instant) {
        if self.kind != Kind::Tcp {
            return;
        }
        let Tcp::Idle { retry_at } = self.tcp else {
            return;
        };
        if now < retry_at {
            return;
        }
        let Some(addr) = self.collector() else {
            return;
        };
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                if let Err(e) =
                    registry.register(&mut s, COLLECTOR, Interest::READABLE | Interest::WRITABLE)
                {
                    log::warn!("register collector socket: {e}");
                    self.fail(now);
                    return;
                }
                self.tcp = Tcp::Connecting(s);
            }
            Err(e) => {
                log::warn!("connect to collector {addr}: {e}");
                self.fail(now);
            }
        }
    }

    fn fail(&mut self, now: Instant) {
        self.stats.send_errors += 1;
        let wait = self.jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if self.collectors.len() > 1 {
            self.current = (self.current + 1) % self.collectors.len();
        }
        self.tcp = Tcp::Idle {
            retry_at: now + wait,
        };
    }

    fn disconnect(&mut self, registry: &Registry, why: &str) {
        let old = std::mem::replace(
            &mut self.tcp,
            Tcp::Idle {
                retry_at: Instant::now(),
            },
        );
        match old {
            Tcp::Connecting(mut s) | Tcp::Connected { stream: mut s, .. } => {
                let _ = registry.deregister(&mut s);
                log::warn!(
                    "collector {} lost: {why}; {} frames unacked, will resend",
                    self.collector().map(|a| a.to_string()).unwrap_or_default(),
                    self.spool.len()
                );
            }
            Tcp::Idle { .. } => {}
        }
        self.fail(Instant::now());
    }

    /// Readiness on the collector socket.
    pub fn on_event(&mut self, registry: &Registry, ev: &mio::event::Event) {
        if let Tcp::Connecting(s) = &mut self.tcp {
            if ev.is_error() || ev.is_write_closed() {
                let e = s.take_error().ok().flatten();
                self.disconnect(registry, &format!("connect failed: {e:?}"));
                return;
            }
            if !ev.is_writable() {
                return;
            }
            match s.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => {
                    self.disconnect(registry, &format!("connect failed: {e}"));
                    return;
                }
            }
            let old = std::mem::replace(
                &mut self.tcp,
                Tcp::Idle {
                    retry_at: Instant::now(),
                },
            );
            if let Tcp::Connecting(stream) = old {
                let _ = stream.set_nodelay(true);
                let tls = match (&self.tls, self.collector()) {
                    (Some(t), Some(addr)) => match t.connect(addr.ip()) {
                        Ok(c) => Some(Box::new(c)),
                        Err(e) => {
                            self.stats.tls_errors += 1;
                            self.tcp = Tcp::Connecting(stream);
                            self.disconnect(registry, &format!("TLS: {e}"));
                            return;
                        }
                    },
                    _ => None,
                };
                log::info!(
                    "connected to collector {}",
                    self.collector().map(|a| a.to_string()).unwrap_or_default()
                );
                self.stats.connects += 1;
                self.backoff = BACKOFF_MIN;
                self.hello_off = 0;
                self.spool.rewind();
                self.tcp = Tcp::Connected {
                    stream,
                    dec: StreamDecoder::new(MAX_FRAME_LEN),
                    tls,
                };
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read_acks(registry);
        }
        self.flush(registry);
    }

    fn read_acks(&mut self, registry: &Registry) {
        let mut closed: Option<String> = None;
        if let Tcp::Connected {
            stream,
            dec,
            tls: Some(tls),
        } = &mut self.tcp
        {
            let mut buf = [0u8; 4096];
            loop {
                match read_step(tls, stream, &mut buf, &mut |b| dec.push(b)) {
                    Ok(Step::More) => {}
                    Ok(Step::Blocked) => break,
                    Ok(Step::Eof) => {
                        closed = Some("closed by the collector".into());
                        break;
                    }
                    Err(e) => {
                        self.stats.tls_errors += 1;
                        log::error!(
                            "collector {}: {e}",
                            self.collectors
                                .get(self.current)
                                .map(|a| a.to_string())
                                .unwrap_or_default()
                        );
                        closed = Some(e);
                        break;
                    }
                }
            }
        }
        if let Tcp::Connected { stream, dec, tls } = &mut self.tcp {
            while tls.is_none() {
                match dec.read_from(stream) {
                    Ok(0) => {
                        closed = Some("closed by the collector".into());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        closed = Some(e.to_string());
                        break;
                    }
                }
            }
            let opts = DecodeOptions {
                keys: self.keys.as_ref(),
                ..DecodeOptions::default()
            };
            loop {
                match dec.next_packet(&opts) {
                    Ok(Some(p)) => match p.message {
                        Message::Ack(a) if a.epoch == self.epoch => {
                            let n = self.spool.ack(a.seq);
                            self.stats.frames_acked += n;
                        }
                        Message::Ack(a) => {
                            log::debug!("ack for another epoch {} ignored", a.epoch)
                        }
                        Message::Error(e) => {
                            log::error!("collector error: {} ({})", e.message, e.reason)
                        }
                        other => log::debug!("ignoring {:?} from collector", other.msg_type()),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        closed = Some(format!("bad frame from collector: {e}"));
                        break;
                    }
                }
            }
        }
        if let Some(why) = closed {
            self.disconnect(registry, &why);
        }
    }

    /// Writes the Hello and unwritten spool frames until the socket would block.
    pub fn flush(&mut self, registry: &Registry) {
        let mut err: Option<String> = None;
        if let Tcp::Connected {
            stream,
            tls: Some(tls),
            ..
        } = &mut self.tcp
        {
            // Plaintext into rustls while it takes it, ciphertext out until the socket blocks.
            loop {
                let mut took = false;
                loop {
                    let chunk: &[u8] = if self.hello_off < self.hello.len() {
                        &self.hello[self.hello_off..]
                    } else {
                        match self.spool.next_chunk() {
                            Some(c) => c,
                            None => break,
                        }
                    };
                    match tls.writer().write(chunk) {
                        Ok(0) => break, // rustls's buffer is full: send first
                        Ok(n) => {
                            took = true;
                            if self.hello_off < self.hello.len() {
                                self.hello_off += n;
                            } else {
                                self.stats.frames_acked += self.spool.advance(n);
                            }
                        }
                        Err(e) => {
                            err = Some(e.to_string());
                            break;
                        }
                    }
                }
                match write_tls(tls, stream) {
                    Ok(false) if took && err.is_none() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Tcp::Connected {
            stream, tls: None, ..
        } = &mut self.tcp
        {
            loop {
                let chunk: &[u8] = if self.hello_off < self.hello.len() {
                    &self.hello[self.hello_off..]
                } else {
                    match self.spool.next_chunk() {
                        Some(c) => c,
                        None => break,
                    }
                };
                match stream.write(chunk) {
                    Ok(0) => {
                        err = Some("write returned 0".into());
                        break;
                    }
                    Ok(n) => {
                        if self.hello_off < self.hello.len() {
                            self.hello_off += n;
                        } else {
                            self.stats.frames_acked += self.spool.advance(n);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(why) = err {
            self.disconnect(registry, &why);
        }
    }

    /// True when nothing is left to deliver (UDP: always).
    pub fn drained(&self) -> bool {
        self.kind == Kind::Udp || self.spool.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn frame(n: usize) -> Vec<u8> {
        vec![0xa5; n]
    }

    #[test]
    fn test_spool_ack_retires_prefix() {
        let mut s = Spool::new(1000);
        for seq in 1..=4 {
            s.push(seq, 10, frame(10));
        }
        // Acks only cover written frames.
        while let Some(c) = s.next_chunk() {
            let n = c.len();
            s.advance(n);
        }
        assert_eq!(s.ack(2), 2);
        assert_eq!(s.len(), 2);
        assert!(s.all_written());
        assert_eq!(s.ack(10), 2);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn test_spool_rewind_rewrites_unacked_with_same_seqs() {
        let mut s = Spool::new(1000);
        s.push(5, 1, frame(3));
        s.push(6, 1, frame(3));
        s.advance(3);
        s.advance(2);
        s.rewind();
        let mut seqs = Vec::new();
        while s.next_chunk().is_some() {
            seqs.push(s.frames[s.written].seq);
            let n = s.next_chunk().unwrap().len();
            s.advance(n);
        }
        assert_eq!(seqs, vec![5, 6]);
    }

    /// Boundary: over capacity drops the oldest and counts its records exactly.
    #[test]
    fn test_spool_overflow_counts_records() {
        let mut s = Spool::new(25);
        assert_eq!(s.push(1, 7, frame(10)), (0, 0));
        assert_eq!(s.push(2, 8, frame(10)), (0, 0));
        // capacity − 0: 30 > 25 → the oldest goes.
        assert_eq!(s.push(3, 9, frame(10)), (1, 7));
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 20);
    }

    #[test]
    fn test_spool_never_drops_half_written_frame() {
        let mut s = Spool::new(25);
        s.push(1, 1, frame(10));
        s.advance(4); // frame 1 is on the wire, partially
        s.push(2, 2, frame(10));
        assert_eq!(s.push(3, 3, frame(10)), (1, 2));
        assert_eq!(s.frames[0].seq, 1);
        assert_eq!(s.frames[1].seq, 3);
    }

    #[test]
    fn test_collector_choice_is_stable() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        let a = Transport::new(Kind::Tcp, addrs.clone(), 42, 1, 100, None).collector();
        let b = Transport::new(Kind::Tcp, addrs, 42, 2, 100, None).collector();
        assert_eq!(a, b);
    }
}
