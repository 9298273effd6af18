//! The data directory, claimed for one service at a time.
//!
//! Two services on one `Service.DataDir` would each append to the same
//! counter, join and outbox files and break the guarantees the stores give
//! (a counter never going back, nothing acknowledged lost). The first to
//! start holds an exclusive lock on `DataDir/.lock` (released by the kernel
//! when the process ends, however it ends) with its pid written in it; the
//! second refuses to start and names the first.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used. Each names `Service.DataDir`.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("Service.DataDir {path}: cannot create or open it ({error}); set Service.DataDir (SERVICE_DATADIR) to a writable directory")]
    Unusable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("Service.DataDir {path} is in use by another device-lorawan (pid {pid}): two services on one data directory would break each other's counters and outbox; stop it, or give this one its own Service.DataDir")]
    InUse { path: PathBuf, pid: String },
}

/// The claim on a data directory: held while this value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Claim `dir` (created if missing) for this process.
pub fn claim(dir: &Path) -> Result<DataDirLock, DataDirError> {
    let unusable = |error| DataDirError::Unusable {
        path: dir.to_owned(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(unusable)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".lock"))
        .map_err(unusable)?;
    // SAFETY: flock on a file descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(unusable(err));
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = match pid.trim() {
            "" => "unknown".to_string(),
            p => p.to_string(),
        };
        return Err(DataDirError::InUse {
            path: dir.to_owned(),
            pid,
        });
    }
    file.set_len(0).map_err(unusable)?;
    file.rewind().map_err(unusable)?;
    writeln!(file, "{}", std::process::id()).map_err(unusable)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_first_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path()).unwrap();
        // A second open file description conflicts, in this process too.
        let e = claim(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another device-lorawan"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        assert!(e.contains("Service.DataDir"), "{e}");
        drop(first);
        claim(dir.path()).unwrap();
    }

    #[test]
    fn an_unusable_directory_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = claim(&file.join("data")).unwrap_err().to_string();
        assert!(e.starts_with("Service.DataDir "), "{e}");
        assert!(e.contains("SERVICE_DATADIR"), "{e}");
    }
}
