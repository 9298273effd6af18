//! Where the disk targets write: one directory per thread, emptied per call.

use std::path::PathBuf;

/// An empty scratch directory of this thread (created once, emptied per
/// call), on tmpfs when the machine has one.
pub(super) fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let id = format!("{:?}", std::thread::current().id());
            let id: String = id.chars().filter(char::is_ascii_digit).collect();
            base.join(format!("device-lorawan-fuzz-{}-{id}", std::process::id()))
        };
    }
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep);
    DIR.with(|d| {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("scratch directory");
        d.clone()
    })
}

/// Remove this thread's scratch directory (the replay test's tidy-up).
pub fn remove_scratch() {
    let d = scratch();
    let _ = std::fs::remove_dir_all(d);
}

/// Remove the scratch directories of fuzzing processes that have ended
/// (libFuzzer exits without running thread-local destructors, so each
/// process would otherwise leave its directories behind in `/dev/shm`).
fn sweep() {
    for base in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix("device-lorawan-fuzz-"))
            else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
