//! A Docker-API engine for the container takeover: `podman system service`
//! on a unix socket of its own (root podman's default storage), with the
//! runtime flags DEVELOPERS.md gives for this machine. Killed on drop.
//! Shared with `benches/handover.rs` (by `#[path]`), so it stands alone.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PodmanService {
    pub socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PodmanService {
    /// Start it (the caller checked that podman and runc are installed).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let child = Command::new("podman")
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman (apt-get install -y podman runc)");
        let t = Instant::now();
        while !socket.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "podman system service made no socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            socket,
            child,
            _dir: dir,
        }
    }

    /// The socket as `Handover.Engine` (and `DOCKER_HOST`) names it.
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `podman <args>`: its stdout, or None if it failed.
pub fn podman(args: &[&str]) -> Option<String> {
    let o = Command::new("podman").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Removes a container when dropped, so a failed test leaves none running.
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "1", &self.0]);
    }
}
