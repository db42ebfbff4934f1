//! nfm-loadgen: the bounded traffic generator used by the agent's kernel tests and benchmark.
//! It reports the kernel's own view of every connection (TCP_INFO) as ground truth, so tests
//! compare the agent against the kernel, not against expectations.
//!
//! Protocol: the client sends an 8-byte little-endian reply size, then its payload, then shuts
//! down its write side; the server reads to EOF, writes the reply and closes. The client reads
//! to EOF: at that point the server's FIN acknowledged our FIN, so no retransmission can follow
//! and TCP_INFO holds the connection's final counters.
//!
//! Modes (every mode is bounded by a count or a duration):
//! - `serve ADDR [--threads N] [--seconds S] [--reset]`: accept and answer (prints one JSON line
//!   per connection with --verbose); with `--reset` the answer ends with a reset instead of a
//!   FIN (SO_LINGER 0).
//! - `client ADDR --send N --reply M [--count K] [--snapshot-ms T] [--expect-reset]`: K
//!   sequential connections, one JSON line each (with `end_ms`, the wall clock at its end);
//!   `--snapshot-ms` adds a line with the socket's TCP_INFO and the wall clock every T ms while
//!   it runs (`{"t_ms":…,"snapshot":{…}}`); `--expect-reset` takes a reset as the end;
//!   `--pause-ms P` waits P ms between connect() and the first write.
//! - `connect ADDR --timeout-ms T`: one connect attempt; prints the outcome and how long
//!   connect() took (`connected US` / `failed KIND US`).
//! - `rate ADDR --seconds S [--threads T]`: short connections (8-byte request, no reply) as fast
//!   as possible; prints `conns N seconds S rate R`.
//! - `hold ADDR_BASE PORT --count N --seconds S`: N connections to N loopback addresses
//!   (127.1.x.y), held open for S seconds (distinct flows for the memory/CPU benchmark).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: nfm-loadgen serve ADDR [--threads N] [--seconds S] [--verbose] [--reset]\n\
         \x20      nfm-loadgen client ADDR --send N --reply M [--count K] [--snapshot-ms T] [--expect-reset] [--pause-ms P]\n\
         \x20      nfm-loadgen connect ADDR --timeout-ms T\n\
         \x20      nfm-loadgen rate ADDR --seconds S [--threads T]\n\
         \x20      nfm-loadgen hold PORT --count N --seconds S"
    );
    std::process::exit(2)
}

struct Args(Vec<String>);

impl Args {
    fn opt<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.0.iter().position(|a| a == name) {
            Some(i) => self
                .0
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage()),
            None => default,
        }
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn pos(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or_else(|| usage())
    }
}

/// The fields of `struct tcp_info` the tests compare against (offsets from linux/tcp.h).
#[derive(serde::Serialize, Default, Debug)]
struct TcpInfo {
    state: u8,
    rto_us: u32,
    /// `tcpi_unacked`: segments in flight.
    unacked: u32,
    rtt_us: u32,
    total_retrans: u32,
    bytes_acked: u64,
    bytes_received: u64,
    data_segs_in: u32,
    data_segs_out: u32,
    total_rto: u16,
}

fn tcp_info(fd: i32) -> TcpInfo {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into buf.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return TcpInfo::default();
    }
    let len = len as usize;
    let u32at = |o: usize| {
        if o + 4 <= len {
            u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]])
        } else {
            0
        }
    };
    let u64at = |o: usize| {
        if o + 8 <= len {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[o..o + 8]);
            u64::from_ne_bytes(b)
        } else {
            0
        }
    };
    TcpInfo {
        state: buf[0],
        rto_us: u32at(8),
        unacked: u32at(24),
        rtt_us: u32at(68),
        total_retrans: u32at(100),
        bytes_acked: u64at(120),
        bytes_received: u64at(128),
        data_segs_in: u32at(152),
        data_segs_out: u32at(156),
        total_rto: if len >= 242 {
            u16::from_ne_bytes([buf[240], buf[241]])
        } else {
            0
        },
    }
}

#[derive(serde::Serialize)]
struct ConnReport {
    local: String,
    remote: String,
    sent: u64,
    received: u64,
    /// Wall clock (Unix ms) when the connection ended (TCP_INFO read).
    end_ms: u64,
    reset: bool,
    info: TcpInfo,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads until EOF; with `reset_ok`, a reset also ends the stream (returns true then).
fn read_to_end_or_reset(s: &mut TcpStream, reset_ok: bool) -> std::io::Result<(u64, bool)> {
    let mut buf = [0u8; 65536];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((n, false)),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if reset_ok && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok((n, true))
            }
            Err(e) => return Err(e),
        }
    }
}

fn read_to_end(s: &mut TcpStream) -> std::io::Result<u64> {
    read_to_end_or_reset(s, false).map(|(n, _)| n)
}

/// Prints the socket's TCP_INFO every `every` until `stop` (a thread of its own: the
/// connection's thread is blocked in read or write).
fn snapshots(fd: i32, every: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let info = tcp_info(fd);
            let t_ms = unix_ms();
            let line = serde_json::json!({ "t_ms": t_ms, "snapshot": info });
            println!("{line}");
            std::thread::sleep(every);
        }
    })
}

fn write_n(s: &mut TcpStream, mut n: u64) -> std::io::Result<()> {
    let buf = [0x5au8; 65536];
    while n > 0 {
        let k = (n as usize).min(buf.len());
        s.write_all(&buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn serve_one(mut s: TcpStream, verbose: bool, reset: bool) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let (local, remote) = (s.local_addr()?.to_string(), s.peer_addr()?.to_string());
    let mut hdr = [0u8; 8];
    s.read_exact(&mut hdr)?;
    let reply = u64::from_le_bytes(hdr);
    let received = 8 + read_to_end(&mut s)?;
    write_n(&mut s, reply)?;
    if verbose {
        let r = ConnReport {
            local,
            remote,
            sent: reply,
            received,
            end_ms: unix_ms(),
            reset,
            info: tcp_info(s.as_raw_fd()),
        };
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    }
    if reset {
        // Let the reply reach the peer first (a reset discards what is still unsent), then
        // close with SO_LINGER 0: a reset instead of a FIN.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tcp_info_unacked(s.as_raw_fd()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads the struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
    Ok(())
}

/// True while the socket has data in flight (TCP_INFO `tcpi_unacked`).
fn tcp_info_unacked(fd: i32) -> bool {
    tcp_info(fd).unacked != 0
}

fn serve(a: &Args) {
    let addr: SocketAddr = a.pos(2).parse().unwrap_or_else(|_| usage());
    let threads: usize = a.opt("--threads", 4);
    let seconds: u64 = a.opt("--seconds", 600);
    let verbose = a.flag("--verbose");
    let reset = a.flag("--reset");
    let l = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("bind {addr}: {e}");
        std::process::exit(1)
    });
    // The parent learns the listener is up from this line.
    println!("listening {}", l.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    let l = Arc::new(l);
    for _ in 0..threads {
        let l = l.clone();
        std::thread::spawn(move || loop {
            match l.accept() {
                Ok((s, _)) => {
                    if let Err(e) = serve_one(s, verbose, reset) {
                        eprintln!("serve: {e}");
                    }
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        });
    }
    std::thread::sleep(Duration::from_secs(seconds));
}

fn client(a: &Args) {
    let addr: SocketAddr = a.pos(2).parse().unwrap_or_else(|_| usage());
    let send: u64 = a.opt("--send", 1000);
    let reply: u64 = a.opt("--reply", 1000);
    let count: u64 = a.opt("--count", 1);
    let quiet = a.flag("--quiet");
    let snapshot_ms: u64 = a.opt("--snapshot-ms", 0);
    let expect_reset = a.flag("--expect-reset");
    let pause_ms: u64 = a.opt("--pause-ms", 0);
    let mut ok = 0;
    for _ in 0..count {
        let r = (|| -> std::io::Result<ConnReport> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
            s.set_nodelay(true)?;
            let stop = Arc::new(AtomicBool::new(false));
            let snap = (snapshot_ms > 0).then(|| {
                snapshots(
                    s.as_raw_fd(),
                    Duration::from_millis(snapshot_ms),
                    stop.clone(),
                )
            });
            // Addresses first: once the peer's FIN is in, the socket is closed (ENOTCONN).
            let (local, remote) = (s.local_addr()?.to_string(), s.peer_addr()?.to_string());
            if pause_ms > 0 {
                // Scenario timing (an idle connected socket), not synchronization.
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
            s.write_all(&reply.to_le_bytes())?;
            write_n(&mut s, send)?;
            s.shutdown(Shutdown::Write)?;
            let (received, reset) = read_to_end_or_reset(&mut s, expect_reset)?;
            stop.store(true, Ordering::Relaxed);
            if let Some(h) = snap {
                let _ = h.join();
            }
            Ok(ConnReport {
                local,
                remote,
                sent: 8 + send,
                received,
                end_ms: unix_ms(),
                reset,
                info: tcp_info(s.as_raw_fd()),
            })
        })();
        match r {
            Ok(r) => {
                ok += 1;
                if !quiet {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                }
            }
            Err(e) => eprintln!("client: {e}"),
        }
    }
    if quiet {
        println!("done {ok}");
    }
    if ok != count {
        std::process::exit(1);
    }
}

fn connect(a: &Args) {
    let addr: SocketAddr = a.pos(2).parse().unwrap_or_else(|_| usage());
    let t: u64 = a.opt("--timeout-ms", 1000);
    let t0 = Instant::now();
    let r = TcpStream::connect_timeout(&addr, Duration::from_millis(t));
    let us = t0.elapsed().as_micros();
    match r {
        Ok(_) => println!("connected {us}"),
        Err(e) => println!("failed {:?} {us}", e.kind()),
    }
}

fn rate(a: &Args) {
    let addr: SocketAddr = a.pos(2).parse().unwrap_or_else(|_| usage());
    let seconds: f64 = a.opt("--seconds", 3.0);
    let threads: usize = a.opt("--threads", 2);
    let stop = Arc::new(AtomicBool::new(false));
    let conns = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, conns, errors) = (stop.clone(), conns.clone(), errors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = (|| -> std::io::Result<()> {
                        let mut s = TcpStream::connect(addr)?;
                        s.set_nodelay(true)?;
                        s.write_all(&0u64.to_le_bytes())?;
                        s.shutdown(Shutdown::Write)?;
                        read_to_end(&mut s)?;
                        Ok(())
                    })();
                    match r {
                        Ok(()) => conns.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
    }
    let el = start.elapsed().as_secs_f64();
    let n = conns.load(Ordering::Relaxed);
    println!(
        "conns {n} errors {} seconds {el:.3} rate {:.1}",
        errors.load(Ordering::Relaxed),
        n as f64 / el
    );
}

fn raise_nofile(n: u64) {
    let r = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads the struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
}

fn hold(a: &Args) {
    let port: u16 = a.pos(2).parse().unwrap_or_else(|_| usage());
    let count: u32 = a.opt("--count", 1000);
    let seconds: u64 = a.opt("--seconds", 10);
    raise_nofile(2 * count as u64 + 100);
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("bind: {e}");
        std::process::exit(1)
    });
    let mut keep = Vec::with_capacity(2 * count as usize);
    for i in 0..count {
        // 127.1.0.1, 127.1.0.2, ...: every connection is its own flow on both ends.
        let n = i + 1;
        let ip = Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8);
        match TcpStream::connect((ip, port)) {
            Ok(mut c) => {
                let _ = c.write_all(b"hold");
                keep.push(c);
                if let Ok((s, _)) = l.accept() {
                    keep.push(s);
                }
            }
            Err(e) => {
                eprintln!("hold connect {ip}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("holding {count}");
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(seconds));
    drop(keep);
}

fn main() {
    let a = Args(std::env::args().collect());
    match a.0.get(1).map(String::as_str) {
        Some("serve") => serve(&a),
        Some("client") => client(&a),
        Some("connect") => connect(&a),
        Some("rate") => rate(&a),
        Some("hold") => hold(&a),
        _ => usage(),
    }
}
