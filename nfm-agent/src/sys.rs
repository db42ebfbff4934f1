//! Small facts about the host and this process: agent id, host name, CPU time, RSS, and dropping
//! capabilities once the program is attached (so a compromised agent holds no privilege).

use anyhow::{bail, Result};

/// FNV-1a of /etc/machine-id (stable per host, survives restarts), else of the host name.
pub fn default_agent_id() -> u64 {
    let id = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(host_name);
    crate::transport::fnv1a(id.as_bytes())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A fresh session epoch: differs at every start (time and pid mixed).
pub fn new_epoch() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let x = (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 32);
    (crate::transport::fnv1a(&x.to_le_bytes()) >> 16) as u32
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// (user + system CPU time in µs, resident set in bytes) of this process.
pub fn self_usage() -> (u64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let cpu = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        us(ru.ru_utime) + us(ru.ru_stime)
    } else {
        0
    };
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0);
    (cpu, rss)
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> Option<(u32, u32)> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = r.trim().split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Drops every capability it can (effective, permitted, inheritable, ambient and the bounding
/// set) and sets no_new_privs. The attached program, its link and the map fds stay usable: since
/// Linux 6.5 operations on a map fd already held are checked against the fd, not the caller's
/// capabilities. Older kernels refuse every bpf() call without CAP_BPF/CAP_SYS_ADMIN when
/// unprivileged BPF is disabled, so there those two are kept. Returns the capabilities kept.
pub fn drop_capabilities() -> Result<&'static str> {
    let keep_bpf = kernel_version().is_none_or(|v| v < (6, 5));
    let keep: u64 = if keep_bpf {
        (1 << CAP_BPF) | (1 << CAP_SYS_ADMIN)
    } else {
        0
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        for cap in 0..64u64 {
            if keep & (1 << cap) != 0 {
                continue;
            }
            // Fails (EINVAL) past the last capability the kernel knows; EPERM without CAP_SETPCAP.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
    }
    let mut h = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    d[0].effective = keep as u32;
    d[0].permitted = keep as u32;
    d[1].effective = (keep >> 32) as u32;
    d[1].permitted = (keep >> 32) as u32;
    // SAFETY: capset reads a v3 header and two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_mut_ptr()) };
    if r != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    Ok(if keep_bpf {
        "CAP_BPF and CAP_SYS_ADMIN (kernel older than 6.5)"
    } else {
        "none"
    })
}

/// The effective capability mask of this process (from /proc/self/status).
pub fn effective_caps() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}
