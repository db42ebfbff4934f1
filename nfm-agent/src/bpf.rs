//! Loading, attaching and reading the sock_ops program: the only module that talks to the kernel.
//!
//! Guarantee: the program is attached through a BPF link owned by [`Probe`]; dropping the probe
//! (normal exit, error, or panic unwinding) closes the link and the program is detached. Every
//! precondition (root / CAP_BPF, cgroup v2, BPF support) is checked up front so a failure is one
//! line that says what is missing and how to fix it.
//!
//! The socket map is read with `BPF_MAP_LOOKUP_BATCH` (one syscall per few hundred entries)
//! rather than aya's per-key iterator (two syscalls per entry), which at 10,000 sockets and a
//! 1 s interval is the difference between ~0.1 % and ~2 % of a core.

use anyhow::{anyhow, bail, Context as _, Result};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, SockOps};
use aya::{include_bytes_aligned, Ebpf, EbpfLoader};
use nfm_agent_common::{
    counter, stage, CloseEvent, OpenEvent, OpenEvent4, SockStats, SOCK_STATS_LEN,
};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

/// The BPF object built by build.rs (aya-build).
static OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nfm"));

/// Map sizes and program settings chosen at load time.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Socket map entries (live sockets, plus closes the ring buffer could not take).
    pub max_sockets: u32,
    /// Ring buffer bytes (a power of two, at least one page).
    pub ring_bytes: u32,
    /// Callback flags (0 = the program's default set).
    pub cb_flags: u32,
    /// Wake the reader when this many bytes are waiting (0 = every event).
    pub wakeup_bytes: u64,
    /// Measurement only: the program returns at once (see the program's `NOOP`).
    pub noop: bool,
    /// Measurement only: the program times itself per op (see the program's `PROFILE`).
    pub profile: bool,
    /// `net.ipv4.tcp_syn_linear_timeouts` ([`syn_linear_timeouts`]).
    pub syn_linear: u32,
}

/// The kernel's `net.ipv4.tcp_syn_linear_timeouts` as this process's network namespace has it
/// (Linux 6.5+, default 4): how many SYN timeouts are not backed off, which the client's
/// handshake time depends on. Older kernels have no such setting and back off every time (0).
/// Clamped to 255: past the retransmissions the program counts it changes nothing.
pub fn syn_linear_timeouts() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .map_or(0, |n| n.min(255))
}

/// Summed per-CPU counters ([`counter`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub map_full: u64,
    pub map_update_failed: u64,
    pub ringbuf_full: u64,
    pub registered: u64,
    pub close_events: u64,
    pub close_untracked: u64,
    pub close_lost: u64,
    pub cb_flags_failed: u64,
}

/// The loaded and attached program with its maps.
pub struct Probe {
    // Field order matters for Drop: the link (inside `ebpf`) goes with `ebpf`.
    pub ring: RingBuf<MapData>,
    socks: MapData,
    counters: PerCpuArray<MapData, u64>,
    open_stage: PerCpuArray<MapData, stage::Stage<OpenEvent>>,
    open4_stage: PerCpuArray<MapData, stage::Stage<OpenEvent4>>,
    close_stage: PerCpuArray<MapData, stage::Stage<CloseEvent>>,
    epoch: Array<MapData, u32>,
    ebpf: Ebpf,
    pub cgroup: PathBuf,
}

/// Events staged so far on all CPUs (each stage counts its own).
fn staged_total<T: aya::Pod>(m: &PerCpuArray<MapData, stage::Stage<T>>) -> Result<u64>
where
    stage::Stage<T>: aya::Pod,
{
    Ok(m.get(&0, 0)?.iter().map(|st| st.next).sum())
}

/// Finds the cgroup v2 mount in /proc/mounts (hybrid layouts put it at e.g. /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, path, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(path))
        })
        .next()
        .ok_or_else(|| {
            anyhow!("no cgroup v2 mount in /proc/mounts; mount one: `mount -t cgroup2 none /sys/fs/cgroup`")
        })
}

fn check_cgroup(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cgroup {} does not exist", path.display()))?;
    if !meta.is_dir() {
        bail!("cgroup {} is not a directory", path.display());
    }
    // A cgroup v2 directory has cgroup.controllers; a v1 hierarchy does not.
    if !path.join("cgroup.controllers").exists() {
        bail!(
            "{} is not a cgroup v2 directory; pass --cgroup with a path under the cgroup2 mount ({})",
            path.display(),
            cgroup2_mount()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "none found".into())
        );
    }
    Ok(())
}

impl Probe {
    /// Loads the program with the given map sizes and attaches it to `cgroup`.
    pub fn attach(cgroup: &Path, opts: &LoadOptions) -> Result<Probe> {
        check_cgroup(cgroup)?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let noop = opts.noop as u32;
        let profile = opts.profile as u32;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("SOCKS", opts.max_sockets)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .override_global("CB_FLAGS", &opts.cb_flags, true)
            .override_global("SYN_LINEAR", &opts.syn_linear, true)
            .override_global("WAKEUP_BYTES", &opts.wakeup_bytes, true)
            .override_global("NOOP", &noop, true)
            .override_global("PROFILE", &profile, true);
        let mut ebpf = loader.load(OBJ).map_err(|e| {
            let hint = if euid != 0 {
                "run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
            } else {
                "the kernel needs CONFIG_BPF_SYSCALL, cgroup sock_ops and ring buffers (Linux 5.8+)"
            };
            anyhow!("cannot load the eBPF program ({e}); {hint}")
        })?;
        let prog: &mut SockOps = ebpf
            .program_mut("nfm")
            .ok_or_else(|| anyhow!("program `nfm` missing from the object"))?
            .try_into()?;
        prog.load().map_err(|e| {
            anyhow!(
                "the kernel refused the sock_ops program ({e}); Linux 5.10+ with BTF is required"
            )
        })?;
        let cg = File::open(cgroup).with_context(|| format!("opening {}", cgroup.display()))?;
        prog.attach(cg.as_fd(), CgroupAttachMode::Single)
            .map_err(|e| {
                anyhow!(
                    "cannot attach to cgroup {} ({e}); another exclusive program may be attached, or CAP_NET_ADMIN is missing",
                    cgroup.display()
                )
            })?;
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| anyhow!("no EVENTS map"))?,
        )?;
        let socks = match ebpf
            .take_map("SOCKS")
            .ok_or_else(|| anyhow!("no SOCKS map"))?
        {
            aya::maps::Map::HashMap(m) => m,
            _ => bail!("SOCKS is not a hash map"),
        };
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or_else(|| anyhow!("no COUNTERS map"))?,
        )?;
        let open_stage = PerCpuArray::try_from(
            ebpf.take_map("OPEN_STAGE")
                .ok_or_else(|| anyhow!("no OPEN_STAGE map"))?,
        )?;
        let open4_stage = PerCpuArray::try_from(
            ebpf.take_map("OPEN4_STAGE")
                .ok_or_else(|| anyhow!("no OPEN4_STAGE map"))?,
        )?;
        let close_stage = PerCpuArray::try_from(
            ebpf.take_map("CLOSE_STAGE")
                .ok_or_else(|| anyhow!("no CLOSE_STAGE map"))?,
        )?;
        let epoch = Array::try_from(
            ebpf.take_map("EPOCH")
                .ok_or_else(|| anyhow!("no EPOCH map"))?,
        )?;
        Ok(Probe {
            epoch,
            ring,
            socks,
            counters,
            open_stage,
            open4_stage,
            close_stage,
            ebpf,
            cgroup: cgroup.to_path_buf(),
        })
    }

    /// Tells the program which interval samples belong to from now on (the per-interval RTT
    /// minimum and maximum restart at the first sample of each).
    pub fn set_epoch(&mut self, epoch: u32) -> Result<()> {
        self.epoch
            .set(0, epoch, 0)
            .context("writing the interval epoch")
    }

    /// Detaches the program (also done by Drop).
    pub fn detach(self) {
        drop(self.ebpf);
    }

    pub fn counters(&self) -> Result<KernelCounters> {
        let mut v = [0u64; counter::COUNT as usize];
        for (i, slot) in v.iter_mut().enumerate() {
            let per_cpu = self.counters.get(&(i as u32), 0)?;
            *slot = per_cpu.iter().sum();
        }
        Ok(KernelCounters {
            map_full: v[counter::MAP_FULL as usize],
            map_update_failed: v[counter::MAP_UPDATE_FAILED as usize],
            ringbuf_full: v[counter::RINGBUF_FULL as usize],
            registered: v[counter::REGISTERED as usize]
                + staged_total(&self.open_stage)?
                + staged_total(&self.open4_stage)?,
            close_events: v[counter::CLOSE_EVENTS as usize] + staged_total(&self.close_stage)?,
            close_untracked: v[counter::CLOSE_UNTRACKED as usize],
            close_lost: v[counter::CLOSE_LOST as usize],
            cb_flags_failed: v[counter::CB_FLAGS_FAILED as usize],
        })
    }

    /// Every CPU's staged open and close events (torn and already-sent ones included: see
    /// [`crate::staged`]).
    pub fn staged(&self) -> Result<Vec<SockStats>> {
        let opens = self
            .open_stage
            .get(&0, 0)
            .context("reading the open stages")?;
        let opens4 = self
            .open4_stage
            .get(&0, 0)
            .context("reading the open stages")?;
        let closes = self
            .close_stage
            .get(&0, 0)
            .context("reading the close stages")?;
        let mut out: Vec<SockStats> = opens
            .iter()
            .flat_map(|st| st.recs.iter().map(|r| r.to_stats()))
            .collect();
        out.extend(
            opens4
                .iter()
                .flat_map(|st| st.recs.iter().map(|r| r.to_open().to_stats())),
        );
        out.extend(
            closes
                .iter()
                .flat_map(|st| st.recs.iter().map(|r| r.to_stats())),
        );
        out.retain(|r| r.seq != 0);
        Ok(out)
    }

    /// Per-op (ns, runs) measured by a profiling program, summed over CPUs.
    pub fn profile(&self) -> Result<Vec<(u32, u64, u64)>> {
        let mut out = Vec::new();
        for op in 0..counter::PROFILE_OPS {
            let i = counter::PROFILE_BASE + 2 * op;
            let ns: u64 = self.counters.get(&i, 0)?.iter().sum();
            let runs: u64 = self.counters.get(&(i + 1), 0)?.iter().sum();
            if runs > 0 {
                out.push((op, ns, runs));
            }
        }
        Ok(out)
    }

    /// Calls `f` on every entry of the socket map, a batch at a time (no copy of the whole map).
    pub fn read_sockets(
        &self,
        scratch: &mut BatchScratch,
        f: impl FnMut(&SockStats),
    ) -> Result<()> {
        let fd = self.socks.fd().as_fd().as_raw_fd();
        lookup_batch(fd, scratch, f).context("reading the socket map")
    }

    /// Inserts a socket's entry (BPF_NOEXIST: an entry the program created first is kept).
    /// Returns the errno on failure (EEXIST: already there; E2BIG: map full).
    pub fn insert_socket(&self, s: &SockStats) -> Result<(), i32> {
        let fd = self.socks.fd().as_fd().as_raw_fd();
        let key = s.cookie;
        let mut value = *s;
        value.event = 0;
        let mut attr = [0u64; 4];
        attr[0] = fd as u64;
        attr[1] = &key as *const u64 as u64;
        attr[2] = &value as *const SockStats as u64;
        attr[3] = 1; // BPF_NOEXIST
                     // SAFETY: BPF_MAP_UPDATE_ELEM reads map_fd, key and value pointers and flags.
        let r = unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, attr.as_mut_ptr().cast(), 32) };
        if r < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(())
    }

    /// Deletes the entries of closed sockets, a batch per syscall. Keys already gone are
    /// skipped. Returns how many were deleted.
    pub fn delete_sockets(&self, cookies: &[u64]) -> u64 {
        let fd = self.socks.fd().as_fd().as_raw_fd();
        let mut deleted = 0u64;
        let mut rest = cookies;
        while !rest.is_empty() {
            let n = rest.len().min(BATCH * 16);
            let mut attr = BatchAttr {
                keys: rest.as_ptr() as u64,
                count: n as u32,
                map_fd: fd as u32,
                ..BatchAttr::default()
            };
            // SAFETY: keys points at `count` u64 keys; the kernel only reads them.
            let r = unsafe {
                sys_bpf(
                    BPF_MAP_DELETE_BATCH,
                    (&mut attr as *mut BatchAttr).cast(),
                    std::mem::size_of::<BatchAttr>() as u32,
                )
            };
            let done = (attr.count as usize).min(n);
            deleted += done as u64;
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOENT) {
                    log::warn!("deleting closed sockets from the map: {e}");
                    return deleted;
                }
                // Key `done` was already gone: skip it.
                rest = &rest[(done + 1).min(rest.len())..];
            } else {
                rest = &rest[n..];
            }
        }
        deleted
    }
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Buffers reused across reads.
#[derive(Default)]
pub struct BatchScratch {
    keys: Vec<u64>,
    values: Vec<SockStats>,
}

/// Entries per batch syscall: large enough that a 10,000-socket map takes ~40 syscalls, small
/// enough that the buffers stay ~40 KiB.
const BATCH: usize = 256;

unsafe fn sys_bpf(cmd: libc::c_long, attr: *mut libc::c_void, size: u32) -> libc::c_long {
    // SAFETY: the caller passes a valid bpf_attr of `size` bytes for `cmd`.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}

fn lookup_batch(
    fd: i32,
    s: &mut BatchScratch,
    mut f: impl FnMut(&SockStats),
) -> std::io::Result<()> {
    let mut count_hint = BATCH;
    let mut token: u64 = 0;
    let mut first = true;
    loop {
        s.keys.resize(count_hint, 0);
        s.values.resize(count_hint, SockStats::default());
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token as *const u64 as u64
            },
            out_batch: &mut next as *mut u64 as u64,
            keys: s.keys.as_mut_ptr() as u64,
            values: s.values.as_mut_ptr() as u64,
            count: count_hint as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        debug_assert_eq!(std::mem::size_of::<SockStats>(), SOCK_STATS_LEN);
        // SAFETY: keys/values have room for `count` elements of the map's key and value sizes.
        let r = unsafe {
            sys_bpf(
                BPF_MAP_LOOKUP_BATCH,
                (&mut attr as *mut BatchAttr).cast(),
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let err = if r < 0 {
            Some(std::io::Error::last_os_error())
        } else {
            None
        };
        let n = (attr.count as usize).min(count_hint);
        s.values[..n].iter().for_each(&mut f);
        match err {
            None => {
                token = next;
                first = false;
            }
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            // A hash bucket holds more entries than fit: retry this batch with more room.
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                count_hint *= 2;
                if count_hint > 1 << 20 {
                    return Err(e);
                }
            }
            Some(e) => return Err(e),
        }
    }
}
