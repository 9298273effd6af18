//! Shared helpers for the end-to-end tests: real peers (mosquitto) on free
//! loopback ports, the service started in-process on port 0, and exact
//! accounting against what the simulator says it sent.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_lorawan::codec::profile;
use device_lorawan::config::Config;
use device_lorawan::devices::{DeviceEntry, Registry};
use device_lorawan::metrics::Metrics;
use device_lorawan::pipeline::sink::ChannelSink;
use device_lorawan::pipeline::uplink::Uplink;
use device_lorawan::service::{self, Bound, Parts};
use device_lorawan::sim::{Expected, SimReport};

/// Whether this run is CI's: `CI` set to anything but `false`/`0`/empty
/// (`CI=true`, `CI=1`, as CI systems spell it). There a missing tool fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        )
    })
}

/// A tool the test needs. In CI ([`in_ci`]) a missing tool fails the test;
/// elsewhere it skips with a loud message.
pub fn require(tool: &str) -> bool {
    let fix = match tool {
        "schemathesis" => "pip install -r tests/peers/requirements.txt",
        "node" | "npm" => "apt-get install nodejs npm; npm ci --prefix tests/peers",
        _ => "apt-get install it",
    };
    let found = require_quiet(tool);
    if !found {
        skip::skip(&format!("{tool} is not installed"), fix);
    }
    found
}

/// The container engine the image and takeover tests use: podman, skopeo,
/// and the OCI runtime they run (runc; Debian puts it in /usr/sbin, which a
/// user's PATH may lack, and podman finds it there).
pub fn require_engine() -> bool {
    if !require("podman") || !require("skopeo") {
        return false;
    }
    let runc = require_quiet("runc") || Path::new("/usr/sbin/runc").is_file();
    if !runc {
        skip::skip(
            "the OCI runtime runc is not installed",
            "apt-get install runc",
        );
    }
    runc
}

fn require_quiet(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// mosquitto with config file `conf`, once it listens on loopback `port`.
pub fn run_mosquitto(conf: &Path, port: u16) -> Child {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A mosquitto broker on a loopback port; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    /// Configuration lines after the listener and persistence ones.
    limits: String,
}

impl Mosquitto {
    /// A broker with no queue limit, so a slow subscriber loses nothing.
    pub fn start() -> Option<Self> {
        Self::start_with("max_queued_messages 0\n")
    }

    /// A broker with mosquitto's own defaults for queues and in-flight
    /// windows (20 in flight, 1,000 queued per client), as a user gets it.
    pub fn start_defaults() -> Option<Self> {
        Self::start_with("")
    }

    /// A broker with `limits` (configuration lines) added.
    pub fn start_with(limits: &str) -> Option<Self> {
        if !require("mosquitto") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to its own user, which must be
        // able to write its persistence file here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let child = Self::spawn(port, dir.path(), limits);
        Some(Self {
            port,
            child,
            dir,
            limits: limits.to_string(),
        })
    }

    fn spawn(port: u16, dir: &Path, limits: &str) -> Child {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            // Persistence (saved at a clean stop) keeps QoS 1 sessions across
            // `restart_clean`.
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\n{limits}",
                dir.display()
            ),
        )
        .unwrap();
        run_mosquitto(&conf, port)
    }

    /// Stop the broker cleanly (SIGTERM: it saves its sessions and queued
    /// messages) and start a new one on the same port.
    pub fn restart_clean(&mut self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM mosquitto");
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port, self.dir.path(), &self.limits);
    }

    /// Kill the broker (-9) and start a new one on the same port.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port, self.dir.path(), &self.limits);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn profiles() -> BTreeMap<String, device_lorawan::codec::DeviceProfile> {
    profile::load_dir(&repo_path("profiles")).unwrap()
}

/// A running in-process service whose uplinks arrive on `uplinks`.
pub struct Service {
    pub bound: Bound,
    pub metrics: Arc<Metrics>,
    pub uplinks: std::sync::mpsc::Receiver<Uplink>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    pub async fn start(config: Config, entries: Vec<DeviceEntry>) -> Self {
        let registry = Registry::build(entries, &profiles()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (tx, uplinks) = std::sync::mpsc::channel();
        let parts = Parts {
            registry,
            sink: Box::new(ChannelSink(tx)),
            metrics: metrics.clone(),
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (bound, handle) = service::start(Arc::new(config), parts, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        Self {
            bound,
            metrics,
            uplinks,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Stop cleanly: everything pending is published first.
    pub async fn stop(&mut self) -> Vec<Uplink> {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap().unwrap();
        self.uplinks.try_iter().collect()
    }

    /// Wait until `n` uplinks were published or `timeout` passed (a bound,
    /// not a synchronisation sleep: the test then checks exact counts).
    pub async fn wait_published(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self
            .metrics
            .published
            .load(std::sync::atomic::Ordering::Relaxed)
            < n
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Service config for tests: UDP on port 0, everything in a temp dir.
pub fn config(data: &Path) -> Config {
    let mut c = Config::default();
    c.service.data_dir = data.to_owned();
    c.ingest.udp.bind = "127.0.0.1:0".parse().unwrap();
    c.service.api_bind = "127.0.0.1:0".parse().unwrap();
    c
}

/// Assert that `got` is exactly the simulator's expected frames, each once,
/// with the values it sent.
pub fn assert_exactly(report: &SimReport, got: &[Uplink]) {
    let key = |d: &str, f: u32, e: u32| (d.to_string(), e, f);
    let mut want: BTreeMap<_, &Expected> = BTreeMap::new();
    for e in &report.expected {
        assert!(
            want.insert(key(&e.device, e.fcnt, e.epoch), e).is_none(),
            "simulator repeated {e:?}"
        );
    }
    let mut seen = BTreeMap::new();
    for u in got {
        let k = key(&u.device, u.fcnt, u.epoch);
        assert!(
            seen.insert(k.clone(), u).is_none(),
            "published twice: {k:?}"
        );
    }
    let missing: Vec<_> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    for (k, e) in want {
        let u = seen[&k];
        let value = |name: &str| {
            let i = u.profile.resource_index(name).unwrap() as u16;
            u.readings
                .iter()
                .find(|r| r.resource == i)
                .and_then(|r| r.value.as_f64())
                .unwrap()
        };
        let s = &e.sample;
        // (resource, sent value, LPP resolution)
        for (name, sent, res) in [
            ("temperature", s.temperature, 0.1),
            ("humidity", s.humidity, 0.5),
            ("latitude", s.latitude, 0.0001),
            ("altitude", s.altitude, 0.01),
            ("battery", s.battery, 0.01),
        ] {
            let got = value(name);
            assert!(
                (got - sent).abs() <= res / 2.0 + 1e-9,
                "{k:?} {name}: got {got}, sent {sent}"
            );
        }
    }
}

/// Where EdgeX's official OpenAPI specs are: `EDGEX_OPENAPI_DIR`, else
/// `../shared/edgex-openapi` beside this repository (where CI has them).
pub fn openapi_dir() -> PathBuf {
    match std::env::var_os("EDGEX_OPENAPI_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_path("../shared/edgex-openapi"),
    }
}

/// The path of EdgeX's OpenAPI spec `spec` (`device-sdk.yaml`, ...), or
/// `None` after a skip notice when it is not there (a failure in CI).
pub fn openapi_spec(spec: &str) -> Option<PathBuf> {
    let path = openapi_dir().join(spec);
    if path.is_file() {
        return Some(path);
    }
    skip::skip(
        &format!("EdgeX's OpenAPI spec {}", path.display()),
        "set EDGEX_OPENAPI_DIR (README, \"The first hour\")",
    );
    None
}

/// A JSON Schema validator for `components.schemas.<schema>` of one of the
/// official EdgeX OpenAPI specs ([`openapi_dir`]), with `$ref`s resolved
/// inside the spec and string formats (uuid, byte) checked; `None` when the
/// spec is missing outside CI (the caller skips what needs it).
pub fn openapi_validator(spec: &str, schema: &str) -> Option<jsonschema::Validator> {
    let path = openapi_spec(spec)?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let root = serde_json::json!({
        "$ref": format!("#/components/schemas/{schema}"),
        "components": spec["components"],
    });
    Some(
        jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap(),
    )
}

/// Every schema error of `doc` under `v`, as readable lines.
pub fn errors_of(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// Every schema error of `doc`, as readable lines; none when the spec was
/// missing ([`openapi_validator`] said so, and CI has it).
pub fn schema_errors(v: &Option<jsonschema::Validator>, doc: &serde_json::Value) -> Vec<String> {
    v.iter()
        .flat_map(|v| v.iter_errors(doc))
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

pub mod bus;
pub mod certs;
pub mod compose;
pub mod core_data;
pub mod engine;
pub mod metadata;
pub mod nats;
pub mod netns;
pub mod peer;
pub mod postgres;
pub mod requester;
pub mod scrape;
pub mod secret_store;
pub mod skip;
pub mod standin;

#[allow(unused_imports)] // not every test binary scrapes
pub use scrape::{get, scrape};

/// The ids of the events the frames in `report` should become (3-mote
/// fleets of `devices` made from `seed`).
pub fn expected_ids(
    report: &device_lorawan::sim::SimReport,
    seed: u64,
    devices: usize,
) -> std::collections::BTreeSet<String> {
    // The ABP motes, and any OTAA motes of the same seed.
    let euis: BTreeMap<String, String> = device_lorawan::sim::mote::entries(devices, seed)
        .into_iter()
        .chain(device_lorawan::sim::mote::otaa_entries(
            8,
            seed,
            Default::default(),
        ))
        .map(|e| (e.name, e.dev_eui.to_string()))
        .collect();
    report
        .expected
        .iter()
        .map(|e| {
            device_lorawan::edgex::event::event_id(&euis[&e.device], e.epoch, e.fcnt).to_string()
        })
        .collect()
}

/// Every stored event passed the schema, and the ids are exactly `want`.
pub fn assert_stored_exactly(
    events: &BTreeMap<String, serde_json::Value>,
    invalid: &[String],
    want: &std::collections::BTreeSet<String>,
) {
    assert!(
        invalid.is_empty(),
        "requests that failed the OpenAPI schema: {invalid:#?}"
    );
    let got: std::collections::BTreeSet<String> = events.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "stored events must be exactly the frames sent: {} missing {missing:?}, {} unexpected {extra:?}",
        missing.len(),
        extra.len()
    );
}

/// A started service, killed when dropped: a test that returns early (a
/// peer missing outside CI, a failed assertion) leaves no process behind.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the real `device-lorawan run --config <config>` and wait until its
/// UDP ingest listens; its stderr keeps being drained into `service.log`
/// beside the config (appended across restarts), to read when a test fails.
/// SIGKILL a child and reap it.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A counter of the service's `/metrics` at `api` (0 while absent).
pub fn metric(api: std::net::SocketAddr, name: &str) -> u64 {
    scrape(api, name).unwrap_or(0)
}

pub fn start_binary(config: &Path) -> Running {
    start_binary_with(config, &[], &config.with_file_name("service.log"))
}

/// [`start_binary`] with `env` added to the service's environment (EdgeX-style
/// overrides, as a compose file sets them), its stderr appended to `log`.
pub fn start_binary_with(config: &Path, env: &[(String, String)], log: &Path) -> Running {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start device-lorawan");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "service did not start");
        let Some(Ok(line)) = lines.next() else {
            panic!("service exited: {}", seen.join("\n"));
        };
        seen.push(line.clone());
        if line.contains("device-lorawan started") {
            break;
        }
    }
    let log = log.to_owned();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let _ = writeln!(f, "{}", seen.join("\n"));
        for l in lines.map_while(Result::ok) {
            let _ = writeln!(f, "{l}");
        }
    });
    Running(child)
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) until `f` holds; a timeout fails the test naming `what`.
pub async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything the real binary needs in a temp dir: a config with UDP and the
/// API on free loopback ports, the bundled profiles, `devices` as the devices
/// file, JSON lines to `out`. `service`, `ingest` and `edgex` are extra
/// flow-mapping entries for those sections (e.g. `"DedupWindow: 5s"`).
pub struct BinaryEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub out: PathBuf,
    pub udp: std::net::SocketAddr,
    pub api: std::net::SocketAddr,
}

pub fn binary_env(devices: &str, service: &str, ingest: &str, edgex: &str) -> BinaryEnv {
    let dir = tempfile::tempdir().unwrap();
    let devices_path = dir.path().join("devices.yaml");
    std::fs::write(&devices_path, devices).unwrap();
    let udp: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = dir.path().join("readings.jsonl");
    let config = dir.path().join("config.yaml");
    let more = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!(", {s}")
        }
    };
    std::fs::write(
        &config,
        format!(
            "Service: {{ DataDir: {data}, ApiBind: \"{api}\"{service} }}\n\
             Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
             Ingest: {{ Udp: {{ Bind: \"{udp}\" }}{ingest} }}\n\
             Readings: {{ JsonLines: {out} }}\n\
             Edgex: {{ {edgex} }}\n",
            data = dir.path().join("data").display(),
            devices = devices_path.display(),
            profiles = repo_path("profiles").display(),
            out = out.display(),
            service = more(service),
            ingest = more(ingest),
        ),
    )
    .unwrap();
    BinaryEnv {
        dir,
        config,
        out,
        udp,
        api,
    }
}

/// (device, fcnt, epoch) of every uplink the binary wrote as a JSON line.
pub fn published_lines(out: &Path) -> Vec<(String, u64, u64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["device"].as_str().unwrap().to_string(),
                v["fcnt"].as_u64().unwrap(),
                v["epoch"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// 3 simulated motes (keys from `seed`) heard by 2 gateways, `frames`
/// frames at 200/s, each mote starting at `start_fcnt`.
pub fn sim_opts(seed: u64, frames: u64, start_fcnt: u32) -> device_lorawan::sim::SimOptions {
    device_lorawan::sim::SimOptions {
        devices: 3,
        gateways: 2,
        rate: 200.0,
        frames: Some(frames),
        duration: None,
        seed,
        start_fcnt,
        ..Default::default()
    }
}

/// `frames` frames of [`sim_opts`] sent over UDP to `udp`.
pub async fn sim_udp(
    udp: std::net::SocketAddr,
    seed: u64,
    frames: u64,
    start_fcnt: u32,
) -> device_lorawan::sim::SimReport {
    device_lorawan::sim::run(
        device_lorawan::sim::Target::Udp(udp),
        sim_opts(seed, frames, start_fcnt),
        std::future::pending(),
    )
    .await
    .unwrap()
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}
