//! The record layout of the store's logs and the codecs of their records, shared by the store
//! (which writes and replays them) and the API's disk reader (`history_index`, read-only), so
//! that a reader never calls into the store actor. The layout is described in `store`'s module
//! doc; rollup records (kind 6) are `rollup`'s.

use crate::summary::IntervalSummary;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub const KIND_BATCH: u8 = 1;
/// A batch with its ingest number (see the module doc).
pub const KIND_BATCH_N: u8 = 4;
/// Interval start, end and the highest batch number a summary holds, written before it.
pub const KIND_COVER: u8 = 5;
/// A summary written before history records carried a version (the version-1 layout).
pub const KIND_SUMMARY_UNVERSIONED: u8 = 2;
/// A summary with its layout version first.
pub const KIND_SUMMARY: u8 = 3;
/// The layout version this build writes.
pub const SUMMARY_VERSION: u16 = 1;
pub const RECORD_HEADER: usize = 9;
/// A record larger than this is corruption, not data (frames are ≤ 1 MiB; summaries far less).
pub const MAX_RECORD: usize = 64 << 20;
/// A rollup of several intervals (`crate::rollup::RollupRecord`), in the rollup logs.
pub const KIND_ROLLUP: u8 = 6;

pub fn segment_paths(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_suffix(".seg") else {
            continue;
        };
        if let Ok(n) = num.parse::<u64>() {
            v.push((n, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Reads records from one segment; returns the byte length of the valid prefix.
pub fn read_segment(
    path: &Path,
    f: &mut dyn FnMut(u8, &[u8]),
    records: &mut u64,
) -> io::Result<(u64, u64)> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut good = 0u64;
    let mut head = [0u8; RECORD_HEADER];
    let mut payload = Vec::new();
    loop {
        if good + RECORD_HEADER as u64 > file_len {
            break;
        }
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD || good + (RECORD_HEADER + len) as u64 > file_len {
            break;
        }
        payload.resize(len, 0);
        if r.read_exact(&mut payload).is_err() {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&head[8..9]);
        h.update(&payload);
        if h.finalize() != crc {
            break;
        }
        f(head[8], &payload);
        *records += 1;
        good += (RECORD_HEADER + len) as u64;
    }
    Ok((good, file_len))
}

/// A history record's payload (kind [`KIND_SUMMARY`]): the version, then the summary.
pub fn encode_summary(s: &IntervalSummary) -> Vec<u8> {
    let mut out = SUMMARY_VERSION.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(s, &mut out, bincode::config::standard())
        .expect("summary encodes");
    out
}

/// Why a history record was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// Not a summary record.
    Kind(u8),
    /// Written by a newer collector: this build does not know the layout.
    Version(u16),
    /// The bytes do not decode as the layout their version names.
    Corrupt,
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::Kind(k) => write!(f, "record kind {k} is not a summary"),
            HistoryError::Version(v) => write!(
                f,
                "summary layout version {v} is newer than this collector's ({SUMMARY_VERSION})"
            ),
            HistoryError::Corrupt => f.write_str("summary does not decode"),
        }
    }
}

/// Reads a history record of any version this build knows.
pub fn decode_history(kind: u8, p: &[u8]) -> Result<IntervalSummary, HistoryError> {
    let v1 = |b: &[u8]| {
        bincode::serde::decode_from_slice::<IntervalSummary, _>(b, bincode::config::standard())
            .map(|(s, _)| s)
            .map_err(|_| HistoryError::Corrupt)
    };
    match kind {
        KIND_SUMMARY_UNVERSIONED => v1(p),
        KIND_SUMMARY => {
            let (v, rest) = p.split_at_checked(2).ok_or(HistoryError::Corrupt)?;
            match u16::from_le_bytes([v[0], v[1]]) {
                1 => v1(rest),
                other => Err(HistoryError::Version(other)),
            }
        }
        other => Err(HistoryError::Kind(other)),
    }
}

/// The interval (start, end) of a summary or rollup record, read from the first bytes of its
/// payload without decoding the rest (both layouts begin with `start_ms`, `end_ms`); `None` for
/// other kinds, versions this build does not know, and bytes that do not decode.
pub fn record_span(kind: u8, p: &[u8]) -> Option<(u64, u64)> {
    let body = match kind {
        KIND_SUMMARY_UNVERSIONED => p,
        KIND_SUMMARY | KIND_ROLLUP => {
            let (v, rest) = p.split_at_checked(2)?;
            if u16::from_le_bytes([v[0], v[1]]) != 1 {
                return None;
            }
            rest
        }
        _ => return None,
    };
    let head = &body[..body.len().min(20)];
    bincode::serde::decode_from_slice::<(u64, u64), _>(head, bincode::config::standard())
        .ok()
        .map(|(span, _)| span)
}

/// A cover record's payload (kind [`KIND_COVER`]): interval start, end, highest batch number.
pub fn encode_cover(start_ms: u64, end_ms: u64, covers_n: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&start_ms.to_le_bytes());
    b[8..16].copy_from_slice(&end_ms.to_le_bytes());
    b[16..].copy_from_slice(&covers_n.to_le_bytes());
    b
}

pub fn decode_cover(p: &[u8]) -> Option<(u64, u64, u64)> {
    let u = |r: std::ops::Range<usize>| Some(u64::from_le_bytes(p.get(r)?.try_into().ok()?));
    Some((u(0..8)?, u(8..16)?, u(16..24)?))
}
