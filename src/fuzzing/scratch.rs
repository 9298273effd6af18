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
