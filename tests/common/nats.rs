//! Debian's `nats-server` on loopback ports: one server, or a JetStream
//! cluster of several (routes between all of them), each killable; and
//! nats-py (tests/peers/nats_peer.py), NATS's own Python client, reading
//! what reached the bus.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub port: u16,
    pub monitor: u16,
    child: Option<Child>,
}

pub struct Nats {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// `n` servers (1: standalone), JetStream on when `jetstream`; returns
    /// once each answers its health check (with JetStream: a cluster that
    /// has elected its meta leader).
    pub fn start(n: usize, jetstream: bool) -> Option<Self> {
        if !super::require("nats-server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (super::free_port(), super::free_port(), super::free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, monitor, cluster)) in ports.iter().enumerate() {
            let mut cmd = Command::new("nats-server");
            cmd.args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ])
            .args(["-n", &format!("n{i}")]);
            if jetstream {
                let sd: PathBuf = dir.path().join(format!("n{i}"));
                cmd.args(["-js", "-sd", sd.to_str().unwrap()]);
            }
            if n > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, _, c))| format!("nats://127.0.0.1:{c}"))
                    .collect();
                cmd.args(["--cluster_name", "edgex"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")])
                    .args(["--routes", &routes.join(",")]);
            }
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).unwrap();
            let child = cmd
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server");
            nodes.push(Node {
                port: *port,
                monitor: *monitor,
                child: Some(child),
            });
        }
        let me = Self { nodes, _dir: dir };
        for node in &me.nodes {
            let path = if jetstream {
                "/healthz?js-enabled-only=true"
            } else {
                "/healthz"
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while !healthy(node.monitor, path) {
                assert!(
                    Instant::now() < deadline,
                    "nats-server on {} not healthy",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Some(me)
    }

    /// Every server's address, comma-separated (for nats-py).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            super::kill9(&mut c);
        }
    }

    /// The server log of node `i` (for a failure's message).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self._dir.path().join(format!("n{i}.log"))).unwrap_or_default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Whether the monitoring endpoint answers `path` with 200.
fn healthy(monitor: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", monitor)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
}

/// One message as nats-py printed it.
#[derive(Debug, serde::Deserialize)]
pub struct Seen {
    pub subject: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub data: String,
}

/// nats-py's peer in `mode` with `args`.
pub fn peer(mode: &str, args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(super::repo_path("tests/peers/nats_peer.py"))
        .arg(mode)
        .args(args);
    c
}

/// Every message stored in `stream`, read by nats-py.
pub fn stream_messages(urls: &str, stream: &str) -> Vec<Seen> {
    let out = peer("stream", &[urls, stream]).output().expect("python3");
    assert!(
        out.status.success(),
        "nats-py reading the stream: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen = Vec::new();
    let mut done = None;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v.get("done").is_some() {
            done = Some((v["done"].as_u64().unwrap(), v["messages"].as_u64().unwrap()));
        } else {
            seen.push(serde_json::from_value(v).unwrap());
        }
    }
    let (read, total) = done.expect("the peer finished");
    assert_eq!(read, total, "nats-py read every stored message");
    seen
}
