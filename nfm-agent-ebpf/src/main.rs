//! The nfm sock_ops program: binds the shared state machine (`nfm_agent_common::on_sock_ops`)
//! to the real `bpf_sock_ops` context, the socket map, the close-event ring buffer and the
//! per-CPU counters. All logic is in the common crate so it is unit-tested on the host.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
        helpers::{bpf_get_smp_processor_id, bpf_get_socket_cookie, bpf_ktime_get_ns},
        macros::{map, sock_ops},
        maps::{Array, HashMap, PerCpuArray, RingBuf},
        programs::SockOpsContext,
        EbpfContext,
    };
    use core::ptr::{addr_of, read_volatile};
    use nfm_agent_common::{
        counter, on_sock_ops, stage, CloseEvent, Counters, Env, OpenEvent, OpenEvent4, SockOps,
        SockStats, TcpHeader, AF_INET,
    };

    /// Live sockets by cookie. The size here is a placeholder: the agent sets it at load time.
    #[map]
    static SOCKS: HashMap<u64, SockStats> = HashMap::with_max_entries(65536, 0);

    /// Close events (a `SockStats` each). Size set at load time.
    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

    /// Open and close events waiting for a batched ring-buffer write, per CPU ([`stage`]).
    #[map]
    static OPEN_STAGE: PerCpuArray<stage::Stage<OpenEvent>> = PerCpuArray::with_max_entries(1, 0);
    #[map]
    static OPEN4_STAGE: PerCpuArray<stage::Stage<OpenEvent4>> = PerCpuArray::with_max_entries(1, 0);
    #[map]
    static CLOSE_STAGE: PerCpuArray<stage::Stage<CloseEvent>> = PerCpuArray::with_max_entries(1, 0);

    /// Overflow and activity counters, per CPU ([`counter`]).
    #[map]
    static COUNTERS: PerCpuArray<u64> =
        PerCpuArray::with_max_entries(counter::COUNT + 2 * counter::PROFILE_OPS, 0);

    /// Callback flags enabled on tracked sockets; set by the loader (0 = the default set).
    #[no_mangle]
    static CB_FLAGS: u32 = 0;

    /// `net.ipv4.tcp_syn_linear_timeouts` as the loader read it (0: every SYN timeout doubles).
    #[no_mangle]
    static SYN_LINEAR: u32 = 0;

    /// The agent's current interval number (written by user space before each map read): tags
    /// the per-interval RTT minimum and maximum.
    #[map]
    static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

    /// Wake the reader only when this many bytes are waiting (0 = on every event). Events are
    /// otherwise picked up by the agent's interval drain, which saves a wakeup (an irq_work and
    /// an epoll round trip) per close at high connection rates.
    #[no_mangle]
    static WAKEUP_BYTES: u64 = 0;

    /// Measurement only: when non-zero the program returns at once, so a benchmark can tell the
    /// kernel's cost of invoking a sock_ops program from the cost of this program's work.
    #[no_mangle]
    static NOOP: u32 = 0;

    /// Measurement only: when non-zero the program times itself per op into `COUNTERS`
    /// (`counter::PROFILE_BASE + 2 * op` = ns, `+ 1` = runs). Adds two clock reads per run.
    #[no_mangle]
    static PROFILE: u32 = 0;

    struct Ctx<'a>(&'a SockOpsContext);

    macro_rules! field {
        ($ctx:expr, $f:ident) => {
            // Every context field is read with its own volatile load: otherwise LLVM may merge
            // two adjacent u32 loads into one u64 load, which the verifier rejects
            // ("invalid bpf_context access off=136 size=8").
            unsafe { read_volatile(addr_of!((*$ctx.0.ops).$f)) }
        };
    }

    impl SockOps for Ctx<'_> {
        #[inline(always)]
        fn op(&self) -> u32 {
            field!(self, op)
        }
        #[inline(always)]
        fn arg(&self, n: usize) -> u32 {
            let args = unsafe { addr_of!((*self.0.ops).__bindgen_anon_1.args) };
            match n {
                0 => unsafe { read_volatile(addr_of!((*args)[0])) },
                1 => unsafe { read_volatile(addr_of!((*args)[1])) },
                2 => unsafe { read_volatile(addr_of!((*args)[2])) },
                _ => unsafe { read_volatile(addr_of!((*args)[3])) },
            }
        }
        #[inline(always)]
        fn state(&self) -> u32 {
            field!(self, state)
        }
        #[inline(always)]
        fn family(&self) -> u32 {
            field!(self, family)
        }
        #[inline(always)]
        fn addrs(&self, family: u8) -> ([u32; 4], [u32; 4]) {
            if family == AF_INET {
                (
                    [field!(self, local_ip4), 0, 0, 0],
                    [field!(self, remote_ip4), 0, 0, 0],
                )
            } else {
                let l = unsafe { addr_of!((*self.0.ops).local_ip6) };
                let r = unsafe { addr_of!((*self.0.ops).remote_ip6) };
                unsafe {
                    (
                        [
                            read_volatile(addr_of!((*l)[0])),
                            read_volatile(addr_of!((*l)[1])),
                            read_volatile(addr_of!((*l)[2])),
                            read_volatile(addr_of!((*l)[3])),
                        ],
                        [
                            read_volatile(addr_of!((*r)[0])),
                            read_volatile(addr_of!((*r)[1])),
                            read_volatile(addr_of!((*r)[2])),
                            read_volatile(addr_of!((*r)[3])),
                        ],
                    )
                }
            }
        }
        #[inline(always)]
        fn ports(&self) -> (u16, u16) {
            // local_port is host order. remote_port is network order, and on little-endian
            // hosts the kernel's context rewrite leaves it in the upper 16 bits of the u32.
            let lp = field!(self, local_port) as u16;
            let raw = field!(self, remote_port);
            let rp = if raw > 0xffff {
                u16::from_be((raw >> 16) as u16)
            } else {
                u16::from_be(raw as u16)
            };
            (lp, rp)
        }
        #[inline(always)]
        fn counters(&self) -> Counters {
            Counters {
                bytes_acked: field!(self, bytes_acked),
                bytes_received: field!(self, bytes_received),
                data_segs_in: field!(self, data_segs_in),
                data_segs_out: field!(self, data_segs_out),
                total_retrans: field!(self, total_retrans),
                srtt_us8: field!(self, srtt_us),
                snd_una: field!(self, snd_una),
                snd_nxt: field!(self, snd_nxt),
            }
        }
        #[inline(always)]
        fn srtt_us8(&self) -> u32 {
            field!(self, srtt_us)
        }
        #[inline(always)]
        fn total_retrans(&self) -> u32 {
            field!(self, total_retrans)
        }
        #[inline(always)]
        fn bytes_received(&self) -> u64 {
            field!(self, bytes_received)
        }
        #[inline(always)]
        fn data_segs_out(&self) -> u32 {
            field!(self, data_segs_out)
        }
        #[inline(always)]
        fn skb_len(&self) -> u32 {
            field!(self, skb_len)
        }
        #[inline(always)]
        fn skb_tcp_flags(&self) -> u32 {
            field!(self, skb_tcp_flags)
        }
        #[inline(always)]
        fn skb_header(&self) -> Option<TcpHeader> {
            // The received segment's TCP header (PARSE_HDR_OPT_CB): a packet pointer the
            // verifier lets the program read after a bounds check against skb_data_end.
            let data = unsafe { read_volatile(addr_of!((*self.0.ops).__bindgen_anon_3.skb_data)) };
            let end =
                unsafe { read_volatile(addr_of!((*self.0.ops).__bindgen_anon_4.skb_data_end)) };
            let data = data as *const u8;
            if unsafe { data.add(13) } > end as *const u8 {
                return None;
            }
            // SAFETY: bytes 4..13 of the TCP header (seq, ack_seq in network order, data
            // offset in the high nibble of byte 12), bounds-checked above.
            unsafe {
                let seq = core::ptr::read_unaligned(data.add(4) as *const u32);
                let ack = core::ptr::read_unaligned(data.add(8) as *const u32);
                let doff = core::ptr::read_volatile(data.add(12)) >> 4;
                Some(TcpHeader {
                    seq: u32::from_be(seq),
                    ack: u32::from_be(ack),
                    len: (doff as u32) * 4,
                })
            }
        }
        #[inline(always)]
        fn rcv_nxt(&self) -> u32 {
            field!(self, rcv_nxt)
        }
        #[inline(always)]
        fn cookie(&self) -> u64 {
            unsafe { bpf_get_socket_cookie(self.0.as_ptr()) }
        }
        #[inline(always)]
        fn cb_flags(&self) -> u32 {
            field!(self, bpf_sock_ops_cb_flags)
        }
        #[inline(always)]
        fn set_cb_flags(&self, flags: u32) -> i64 {
            match self.0.set_cb_flags(flags as i32) {
                Ok(()) => 0,
                Err(e) => e as i64,
            }
        }
    }

    /// Ring footprints (record + the kernel's 8-byte header) of a whole record and of batches of
    /// staged events.
    const RECORD_BYTES: u64 = nfm_agent_common::SOCK_STATS_LEN as u64 + 8;
    const OPEN_BATCH_BYTES: u64 = stage::OPEN_BATCH_LEN as u64 + 8;
    const OPEN4_BATCH_BYTES: u64 = stage::OPEN4_BATCH_LEN as u64 + 8;
    const CLOSE_BATCH_BYTES: u64 = stage::CLOSE_BATCH_LEN as u64 + 8;

    /// Ring-buffer write flags: wake the reader once, when this write takes the backlog across
    /// the threshold. A wakeup is an irq_work (a self-IPI, a VM exit under a hypervisor), about
    /// 1 µs, so waking on every record while the reader is busy would cost more than the rest
    /// of the program together.
    #[inline(always)]
    fn wakeup_flags(bytes: u64) -> u64 {
        let threshold = unsafe { read_volatile(&WAKEUP_BYTES) };
        let flags = if threshold == 0 {
            BPF_RB_FORCE_WAKEUP
        } else {
            let before = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
            if before < threshold && before + bytes >= threshold {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            }
        };
        flags as u64
    }

    struct Kernel;

    impl Env for Kernel {
        #[inline(always)]
        fn now_ns(&self) -> u64 {
            unsafe { bpf_ktime_get_ns() }
        }
        #[inline(always)]
        fn cb_flags(&self) -> u32 {
            let f = unsafe { read_volatile(&CB_FLAGS) };
            if f == 0 {
                nfm_agent_common::cb_flag::DEFAULT
            } else {
                f
            }
        }
        #[inline(always)]
        fn syn_linear_timeouts(&self) -> u32 {
            unsafe { read_volatile(&SYN_LINEAR) }
        }
        #[inline(always)]
        fn epoch(&self) -> u32 {
            EPOCH.get(0).copied().unwrap_or(0)
        }
        #[inline(always)]
        fn lookup(&self, cookie: u64) -> Option<*mut SockStats> {
            SOCKS.get_ptr_mut(cookie)
        }
        #[inline(always)]
        fn insert(&self, cookie: u64, v: &SockStats) -> i64 {
            match SOCKS.insert(cookie, v, BPF_NOEXIST as u64) {
                Ok(()) => 0,
                Err(e) => e as i64,
            }
        }
        #[inline(always)]
        fn remove(&self, cookie: u64) {
            let _ = SOCKS.remove(cookie);
        }
        #[inline(always)]
        fn emit(&self, v: &SockStats) -> bool {
            EVENTS
                .output::<SockStats>(v, wakeup_flags(RECORD_BYTES))
                .is_ok()
        }
        #[inline(always)]
        fn stage_open(&self, v: &OpenEvent) -> bool {
            let Some(st) = OPEN_STAGE.get_ptr_mut(0) else {
                return false;
            };
            let cpu = unsafe { bpf_get_smp_processor_id() };
            // SAFETY: this CPU's value of a per-CPU map; the program runs with migration
            // disabled, so nothing else writes it during this run.
            stage::push(unsafe { &mut *st }, cpu, stage::OPENS, v, |recs| {
                let ok = EVENTS
                    .output::<[OpenEvent; stage::RECORDS]>(recs, wakeup_flags(OPEN_BATCH_BYTES))
                    .is_ok();
                if !ok {
                    self.count(counter::RINGBUF_FULL);
                }
                ok
            })
        }
        #[inline(always)]
        fn stage_open4(&self, v: &OpenEvent4) -> bool {
            let Some(st) = OPEN4_STAGE.get_ptr_mut(0) else {
                return false;
            };
            let cpu = unsafe { bpf_get_smp_processor_id() };
            // SAFETY: as in `stage_open`.
            stage::push(unsafe { &mut *st }, cpu, stage::OPENS4, v, |recs| {
                let ok = EVENTS
                    .output::<[OpenEvent4; stage::RECORDS]>(recs, wakeup_flags(OPEN4_BATCH_BYTES))
                    .is_ok();
                if !ok {
                    self.count(counter::RINGBUF_FULL);
                }
                ok
            })
        }
        #[inline(always)]
        fn stage(&self, v: &CloseEvent) -> bool {
            let Some(st) = CLOSE_STAGE.get_ptr_mut(0) else {
                return false;
            };
            let cpu = unsafe { bpf_get_smp_processor_id() };
            // SAFETY: as in `stage_open`.
            stage::push(unsafe { &mut *st }, cpu, stage::CLOSES, v, |recs| {
                let ok = EVENTS
                    .output::<[CloseEvent; stage::RECORDS]>(recs, wakeup_flags(CLOSE_BATCH_BYTES))
                    .is_ok();
                if !ok {
                    self.count(counter::RINGBUF_FULL);
                }
                ok
            })
        }
        #[inline(always)]
        fn count(&self, c: u32) {
            if let Some(p) = COUNTERS.get_ptr_mut(c) {
                unsafe { *p += 1 };
            }
        }
    }

    #[sock_ops]
    pub fn nfm(ctx: SockOpsContext) -> u32 {
        if unsafe { read_volatile(&NOOP) } != 0 {
            return nfm_agent_common::RET;
        }
        if unsafe { read_volatile(&PROFILE) } == 0 {
            return on_sock_ops(&Ctx(&ctx), &Kernel);
        }
        let t0 = unsafe { bpf_ktime_get_ns() };
        let mut op = Ctx(&ctx).op();
        if op == nfm_agent_common::op::STATE_CB
            && Ctx(&ctx).arg(1) == nfm_agent_common::tcp_state::CLOSE
        {
            // Closes get their own slot: they cost more than the other state changes.
            op = counter::PROFILE_CLOSE;
        }
        let r = on_sock_ops(&Ctx(&ctx), &Kernel);
        let dt = unsafe { bpf_ktime_get_ns() } - t0;
        if op < counter::PROFILE_OPS {
            let i = counter::PROFILE_BASE + 2 * op;
            if let Some(p) = COUNTERS.get_ptr_mut(i) {
                unsafe { *p += dt };
            }
            if let Some(p) = COUNTERS.get_ptr_mut(i + 1) {
                unsafe { *p += 1 };
            }
        }
        r
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[link_section = "license"]
    #[no_mangle]
    static LICENSE: [u8; 4] = *b"GPL\0";
}
