//! A counting receiver: accepts nfm-wire frames over UDP and TCP, decodes every one, counts
//! frames and records, and acknowledges TCP frames. Used by the tests (to check that a run
//! delivers every record) and by the benchmark (to drain the sockets).
//!
//! It is not a collector: it stores nothing but counters (and, when asked, the decoded packets).

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use nfm_wire::{encode, Ack, DecodeOptions, Header, Message, Packet, StreamDecoder, MAX_FRAME_LEN};
use serde::Serialize;
use slab::Slab;
use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UDP: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// What the sink saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkStats {
    pub datagrams: u64,
    pub frames: u64,
    pub bytes: u64,
    pub records: u64,
    pub hellos: u64,
    pub agent_stats: u64,
    pub goodbyes: u64,
    pub bad_frames: u64,
    pub tcp_connections: u64,
    pub acks_sent: u64,
    /// Distinct agent ids (full decoding only; 0 with `quick`).
    pub agents: u64,
    /// Hellos that carried `cap::SIMULATED` (full decoding only).
    pub simulated_hellos: u64,
    /// Seconds from the first to the last frame.
    pub active_s: f64,
}

/// Options of a sink.
#[derive(Clone)]
pub struct SinkOptions {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Keep every decoded packet (tests only: memory grows with traffic).
    pub keep: bool,
    /// Check each frame's header and CRC and read its record count instead of decoding every
    /// record (the benchmark's sink must not be slower than the generator it measures).
    pub quick: bool,
    /// Stop after this long without a frame, once at least one arrived.
    pub idle_exit: Option<Duration>,
    pub stop: Arc<AtomicBool>,
}

struct Conn {
    stream: TcpStream,
    dec: StreamDecoder,
    out: Vec<u8>,
}

/// A bound sink; `run` consumes it.
pub struct Sink {
    poll: Poll,
    udp: Option<UdpSocket>,
    listener: Option<TcpListener>,
    opts: SinkOptions,
}

impl Sink {
    pub fn bind(opts: SinkOptions) -> std::io::Result<Sink> {
        let poll = Poll::new()?;
        let mut udp = None;
        let mut listener = None;
        if let Some(a) = opts.udp {
            let s =
                socket2::Socket::new(socket2::Domain::for_address(a), socket2::Type::DGRAM, None)?;
            // Big receive buffer: the sink must not be the reason datagrams drop (the kernel
            // caps this at rmem_max).
            let _ = s.set_recv_buffer_size(16 << 20);
            s.set_nonblocking(true)?;
            s.bind(&a.into())?;
            let mut u = UdpSocket::from_std(s.into());
            poll.registry().register(&mut u, UDP, Interest::READABLE)?;
            udp = Some(u);
        }
        if let Some(a) = opts.tcp {
            let mut l = TcpListener::bind(a)?;
            poll.registry()
                .register(&mut l, LISTENER, Interest::READABLE)?;
            listener = Some(l);
        }
        Ok(Sink {
            poll,
            udp,
            listener,
            opts,
        })
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|u| u.local_addr().ok())
    }
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Receives until stopped (or idle); returns the counters and, with `keep`, the packets.
    pub fn run(mut self) -> (SinkStats, Vec<Packet>) {
        let mut st = SinkStats::default();
        let mut kept = Vec::new();
        let mut agents = HashSet::new();
        let mut conns: Slab<Conn> = Slab::new();
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 65_536];
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let opts = DecodeOptions::default();
        let count =
            |st: &mut SinkStats, kept: &mut Vec<Packet>, agents: &mut HashSet<u64>, p: Packet| {
                st.frames += 1;
                agents.insert(p.header.agent_id);
                match &p.message {
                    Message::FlowBatch(b) => st.records += b.records.len() as u64,
                    Message::Hello(h) => {
                        st.hellos += 1;
                        if h.capabilities & nfm_wire::cap::SIMULATED != 0 {
                            st.simulated_hellos += 1;
                        }
                    }
                    Message::AgentStats(_) => st.agent_stats += 1,
                    Message::Goodbye(_) => st.goodbyes += 1,
                    _ => {}
                }
                if self.opts.keep {
                    kept.push(p);
                }
            };
        loop {
            if self.opts.stop.load(Ordering::Relaxed) {
                break;
            }
            if let (Some(idle), Some(_)) = (self.opts.idle_exit, first) {
                if last.elapsed() >= idle {
                    break;
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(50))) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("sink poll: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    UDP => {
                        let Some(u) = self.udp.as_ref() else { continue };
                        loop {
                            match u.recv(&mut buf) {
                                Ok(n) => {
                                    let now = Instant::now();
                                    first.get_or_insert(now);
                                    last = now;
                                    st.datagrams += 1;
                                    st.bytes += n as u64;
                                    if self.opts.quick {
                                        quick_count(&mut st, &buf[..n]);
                                    } else {
                                        match nfm_wire::decode(&buf[..n], &opts) {
                                            Ok(p) => count(&mut st, &mut kept, &mut agents, p),
                                            Err(_) => st.bad_frames += 1,
                                        }
                                    }
                                }
                                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                                Err(_) => break,
                            }
                        }
                    }
                    LISTENER => {
                        let Some(l) = self.listener.as_ref() else {
                            continue;
                        };
                        while let Ok((mut s, _)) = l.accept() {
                            let entry = conns.vacant_entry();
                            let tok = Token(entry.key() + FIRST_CONN);
                            if self
                                .poll
                                .registry()
                                .register(&mut s, tok, Interest::READABLE)
                                .is_ok()
                            {
                                st.tcp_connections += 1;
                                entry.insert(Conn {
                                    stream: s,
                                    dec: StreamDecoder::new(MAX_FRAME_LEN),
                                    out: Vec::new(),
                                });
                            }
                        }
                    }
                    Token(t) => {
                        let key = t - FIRST_CONN;
                        let Some(c) = conns.get_mut(key) else {
                            continue;
                        };
                        let mut close = false;
                        let mut ack: Option<Header> = None;
                        loop {
                            match c.dec.read_from(&mut c.stream) {
                                Ok(0) => {
                                    close = true;
                                    break;
                                }
                                Ok(n) => {
                                    st.bytes += n as u64;
                                    let now = Instant::now();
                                    first.get_or_insert(now);
                                    last = now;
                                }
                                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                            loop {
                                if self.opts.quick {
                                    match c.dec.next_frame() {
                                        Ok(Some(f)) => {
                                            ack = Some(nfm_wire::Frame::new_unchecked(f).header());
                                            quick_count(&mut st, f);
                                        }
                                        Ok(None) => break,
                                        Err(_) => {
                                            st.bad_frames += 1;
                                            close = true;
                                            break;
                                        }
                                    }
                                    continue;
                                }
                                match c.dec.next_packet(&opts) {
                                    Ok(Some(p)) => {
                                        ack = Some(p.header);
                                        count(&mut st, &mut kept, &mut agents, p);
                                    }
                                    Ok(None) => break,
                                    Err(_) => {
                                        st.bad_frames += 1;
                                        close = true;
                                        break;
                                    }
                                }
                            }
                            if close {
                                break;
                            }
                        }
                        // One Ack per read burst covers every frame so far.
                        if let Some(h) = ack {
                            let mut frame = Vec::with_capacity(64);
                            encode(
                                &Header {
                                    agent_id: h.agent_id,
                                    epoch: h.epoch,
                                    seq: h.seq,
                                },
                                &Message::Ack(Ack {
                                    epoch: h.epoch,
                                    seq: h.seq,
                                }),
                                None,
                                &mut frame,
                            );
                            c.out.extend_from_slice(&frame);
                            st.acks_sent += 1;
                        }
                        // Acks are tiny; if the socket will not take them now, keep them for the
                        // next burst (bounded: the sender stops sending when unacked).
                        while !c.out.is_empty() {
                            match c.stream.write(&c.out) {
                                Ok(n) => {
                                    c.out.drain(..n);
                                }
                                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                                Err(_) => break,
                            }
                        }
                        if close {
                            let mut c = conns.remove(key);
                            let _ = self.poll.registry().deregister(&mut c.stream);
                        }
                    }
                }
            }
        }
        if !self.opts.quick {
            st.agents = agents.len() as u64;
        }
        if let Some(f) = first {
            st.active_s = last.duration_since(f).as_secs_f64();
        }
        (st, kept)
    }
}

/// The quick path: header and CRC checked, records counted from the body's count varint.
fn quick_count(st: &mut SinkStats, bytes: &[u8]) {
    let ok =
        nfm_wire::Frame::new_checked(bytes, MAX_FRAME_LEN).and_then(|f| f.check_crc().map(|_| f));
    match ok {
        Ok(f) => {
            st.frames += 1;
            match f.msg_type_raw() {
                t if t == nfm_wire::MsgType::FlowBatch as u8 => {
                    st.records += crate::run::count_records(bytes)
                }
                t if t == nfm_wire::MsgType::Hello as u8 => st.hellos += 1,
                t if t == nfm_wire::MsgType::AgentStats as u8 => st.agent_stats += 1,
                t if t == nfm_wire::MsgType::Goodbye as u8 => st.goodbyes += 1,
                _ => {}
            }
        }
        Err(_) => st.bad_frames += 1,
    }
}
