//! Crash-safe small files: the whole file is written next to its destination, fsynced, renamed
//! over it and the directory fsynced, so after a crash at any point the file holds either the
//! old content or the new, never a torn mix (the agent registry and maintenance windows).

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically (write `path.tmp`, fsync, rename, fsync the dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_write_atomic_replaces_and_leaves_no_tmp() {
        let dir = std::env::temp_dir().join(format!("nfm-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!dir.join("x.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
