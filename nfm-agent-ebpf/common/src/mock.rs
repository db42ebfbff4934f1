//! The host mock of `bpf_sock_ops` and of the program's environment (maps, ring buffer, clock)
//! that the state machine's unit tests run against.

extern crate std;
use crate::*;
use core::cell::{Cell, RefCell};
use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

pub(crate) struct Ctx {
    pub(crate) op: u32,
    pub(crate) args: [u32; 4],
    pub(crate) state: u32,
    pub(crate) family: u32,
    pub(crate) c: Counters,
    pub(crate) cookie: u64,
    pub(crate) flags_set: Cell<u32>,
    pub(crate) skb_len: u32,
    pub(crate) skb_flags: u32,
    pub(crate) skb_hdr: Option<TcpHeader>,
    pub(crate) rcv_nxt: u32,
}

impl Ctx {
    pub(crate) fn new(op: u32, cookie: u64) -> Ctx {
        Ctx {
            op,
            args: [0; 4],
            state: tcp_state::ESTABLISHED,
            family: AF_INET as u32,
            c: Counters::default(),
            cookie,
            flags_set: Cell::new(0),
            skb_len: 0,
            skb_flags: 0,
            skb_hdr: None,
            rcv_nxt: 0,
        }
    }
}

impl SockOps for Ctx {
    fn op(&self) -> u32 {
        self.op
    }
    fn arg(&self, n: usize) -> u32 {
        self.args[n]
    }
    fn state(&self) -> u32 {
        self.state
    }
    fn family(&self) -> u32 {
        self.family
    }
    fn addrs(&self, family: u8) -> ([u32; 4], [u32; 4]) {
        if family == AF_INET {
            ([0x0100_a8c0, 0, 0, 0], [0x0200_a8c0, 0, 0, 0])
        } else {
            ([1, 2, 3, 4], [5, 6, 7, 8])
        }
    }
    fn ports(&self) -> (u16, u16) {
        (40000, 80)
    }
    fn counters(&self) -> Counters {
        self.c
    }
    fn cookie(&self) -> u64 {
        self.cookie
    }
    fn cb_flags(&self) -> u32 {
        self.flags_set.get()
    }
    fn skb_len(&self) -> u32 {
        self.skb_len
    }
    fn skb_tcp_flags(&self) -> u32 {
        self.skb_flags
    }
    fn skb_header(&self) -> Option<TcpHeader> {
        self.skb_hdr
    }
    fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt
    }
    fn set_cb_flags(&self, flags: u32) -> i64 {
        self.flags_set.set(flags);
        0
    }
}

pub(crate) struct Mock {
    pub(crate) now: Cell<u64>,
    pub(crate) cap: usize,
    pub(crate) map: RefCell<BTreeMap<u64, Box<SockStats>>>,
    pub(crate) ring: RefCell<Vec<SockStats>>,
    pub(crate) ring_cap: usize,
    pub(crate) counters: RefCell<[u64; counter::COUNT as usize]>,
    /// Open events staged as [`OpenEvent4`].
    pub(crate) opens4: Cell<u32>,
    /// `tcp_syn_linear_timeouts` as the loader would set it.
    pub(crate) linear: Cell<u32>,
    pub(crate) epoch: Cell<u32>,
}

impl Mock {
    pub(crate) fn new(cap: usize, ring_cap: usize) -> Mock {
        Mock {
            now: Cell::new(1_000_000),
            cap,
            map: RefCell::new(BTreeMap::new()),
            ring: RefCell::new(Vec::new()),
            ring_cap,
            counters: RefCell::new([0; counter::COUNT as usize]),
            opens4: Cell::new(0),
            linear: Cell::new(4),
            epoch: Cell::new(0),
        }
    }
    pub(crate) fn get(&self, cookie: u64) -> Option<SockStats> {
        self.map.borrow().get(&cookie).map(|b| **b)
    }
    pub(crate) fn n(&self, c: u32) -> u64 {
        self.counters.borrow()[c as usize]
    }
}

impl Env for Mock {
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
    fn cb_flags(&self) -> u32 {
        cb_flag::DEFAULT
    }
    fn syn_linear_timeouts(&self) -> u32 {
        self.linear.get()
    }
    fn epoch(&self) -> u32 {
        self.epoch.get()
    }
    fn lookup(&self, cookie: u64) -> Option<*mut SockStats> {
        self.map
            .borrow_mut()
            .get_mut(&cookie)
            .map(|b| &mut **b as *mut SockStats)
    }
    fn insert(&self, cookie: u64, v: &SockStats) -> i64 {
        let mut m = self.map.borrow_mut();
        if m.contains_key(&cookie) {
            return -17;
        }
        if m.len() >= self.cap {
            return E2BIG;
        }
        m.insert(cookie, Box::new(*v));
        0
    }
    fn remove(&self, cookie: u64) {
        self.map.borrow_mut().remove(&cookie);
    }
    fn emit(&self, v: &SockStats) -> bool {
        let mut r = self.ring.borrow_mut();
        if r.len() >= self.ring_cap {
            return false;
        }
        r.push(*v);
        true
    }
    fn stage_open(&self, v: &OpenEvent) -> bool {
        self.emit(&v.to_stats())
    }
    fn stage_open4(&self, v: &OpenEvent4) -> bool {
        self.opens4.set(self.opens4.get() + 1);
        self.emit(&v.to_open().to_stats())
    }
    fn stage(&self, v: &CloseEvent) -> bool {
        // Staging itself is tested on its own (test_stage_*); here a staged close is
        // delivered at once, with the ring buffer's capacity.
        self.emit(&v.to_stats())
    }
    fn count(&self, c: u32) {
        self.counters.borrow_mut()[c as usize] += 1;
    }
}

pub(crate) fn run(ctx: &Ctx, env: &Mock) {
    assert_eq!(on_sock_ops(ctx, env), RET);
}

pub(crate) fn state_cb(cookie: u64, old: u32, new: u32, c: Counters) -> Ctx {
    let mut ctx = Ctx::new(op::STATE_CB, cookie);
    ctx.state = old;
    ctx.args = [old, new, 0, 0];
    ctx.c = c;
    ctx
}

/// Connect + established for a client socket.
pub(crate) fn established_client(env: &Mock, cookie: u64, srtt: u32, syn_retrans: u32) {
    let connect = Ctx::new(op::TCP_CONNECT_CB, cookie);
    run(&connect, env);
    assert_eq!(connect.flags_set.get(), cb_flag::DEFAULT & !cb_flag::RTT);
    let mut est = Ctx::new(op::ACTIVE_ESTABLISHED_CB, cookie);
    est.c.srtt_us8 = 8 * srtt;
    est.c.bytes_acked = 1;
    est.c.total_retrans = syn_retrans;
    run(&est, env);
    assert_eq!(est.flags_set.get() & !cb_flag::MARK, cb_flag::DEFAULT);
}

/// What user space does with an open event: insert it as the socket's entry.
pub(crate) fn adopt_open(env: &Mock, cookie: u64) {
    let ev = *env
        .ring
        .borrow()
        .iter()
        .find(|e| e.cookie == cookie && e.event == event::OPEN)
        .expect("open event");
    let mut entry = ev;
    entry.event = 0;
    assert_eq!(env.insert(cookie, &entry), 0);
}

pub(crate) fn events(env: &Mock, kind: u8) -> std::vec::Vec<SockStats> {
    env.ring
        .borrow()
        .iter()
        .filter(|e| e.event == kind)
        .copied()
        .collect()
}
