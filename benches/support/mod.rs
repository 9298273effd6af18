//! What the process-level benchmarks share (included by `#[path]`): free
//! loopback ports, children killed on drop, and /proc figures.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The number after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed when dropped.
pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (at most 10 s) until something listens on loopback `port`.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kB figure of `/proc/<pid>/status` (`field` like `"VmHWM:"`); 0 if unreadable.
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// mosquitto on a free loopback port, its config in `dir` (`extra` lines
/// added); killed on drop. No queue limit: a slow subscriber loses nothing.
pub fn mosquitto(dir: &Path, extra: &str) -> (Killed, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n{extra}"),
    )
    .unwrap();
    let broker = Killed(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install -y mosquitto)"),
    );
    wait_port(port);
    (broker, port)
}

/// The real `device-lorawan run` on loopback: `devices` (a devices file's
/// text, mode 0600) with the bundled profiles, UDP ingest with `ingest`
/// added (e.g. `"DedupWindow: 50ms"`), no readings written, warnings only.
/// Waits until its API serves metrics. Killed on drop.
pub fn service(
    dir: &Path,
    devices: &str,
    ingest: &str,
) -> (Killed, std::net::SocketAddr, std::net::SocketAddr) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("devices.yaml");
    std::fs::write(&path, devices).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let udp: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("config.yaml");
    let ingest = if ingest.is_empty() {
        String::new()
    } else {
        format!(", {ingest}")
    };
    std::fs::write(
        &config,
        format!(
            "Service: {{ DataDir: {data}, ApiBind: \"{api}\" }}\n\
             Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
             Ingest: {{ Udp: {{ Bind: \"{udp}\" }}{ingest} }}\n\
             Readings: {{ JsonLines: \"\" }}\n\
             Log: {{ Level: warn }}\n",
            data = dir.join("data").display(),
            devices = path.display(),
            profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
        ),
    )
    .unwrap();
    let svc = Killed(
        Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(api.port());
    (svc, udp, api)
}

/// The stand-in core-data subscriber on the EdgeX bus at loopback `port`:
/// `on_event(id, origin)` for every event published under
/// `edgex/events/device/#`. Returns once it is subscribed.
pub async fn bus_subscriber(
    port: u16,
    client_id: &str,
    mut on_event: impl FnMut(String, i64) + Send + 'static,
) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(1000);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let subscribed = std::sync::Arc::new(tokio::sync::Notify::new());
    let ready = subscribed.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("edgex/events/device/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => ready.notify_one(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let env: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    let ev = &env["payload"]["event"];
                    on_event(
                        ev["id"].as_str().unwrap().to_string(),
                        ev["origin"].as_i64().unwrap_or(0),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bench subscriber: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    subscribed.notified().await;
}

/// Pin every thread of `pid` to `cpus` (taskset's list form, e.g. `"1"`).
pub fn pin(pid: u32, cpus: &str) {
    let ok = Command::new("taskset")
        .args(["-apc", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -apc {cpus} {pid} (util-linux)");
}

/// Put `pid` in a memory cgroup of its own limited to `mb` MB (cgroup v2
/// when mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified with the memory
/// controller, else v1's). Returns the cgroup's directory.
pub fn memory_limit(pid: u32, mb: u64) -> Option<String> {
    let name = format!("device-lorawan-bench-{pid}");
    let bytes = (mb << 20).to_string();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let controllers = std::fs::read_to_string(format!("{root}/cgroup.controllers"));
        if controllers.is_ok_and(|c| c.split_whitespace().any(|x| x == "memory")) {
            let dir = format!("{root}/{name}");
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::write(format!("{dir}/memory.max"), &bytes).ok()?;
            std::fs::write(format!("{dir}/cgroup.procs"), pid.to_string()).ok()?;
            return Some(dir);
        }
    }
    let dir = format!("/sys/fs/cgroup/memory/{name}");
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(format!("{dir}/memory.limit_in_bytes"), &bytes).ok()?;
    std::fs::write(format!("{dir}/cgroup.procs"), pid.to_string()).ok()?;
    Some(dir)
}
