//! A restart to a broker backlog: the release binary's persistent MQTT
//! session has 60,000 uplinks queued (published while it was down), and
//! the broker pushes them with no in-flight limit (the worst case: mosquitto
//! `max_inflight_messages 0`). The service must take them at its pipeline's
//! pace: every uplink delivered to the EdgeX bus exactly once, no ack lost,
//! peak RSS under 40 MB, and the memory given back once the backlog is
//! drained.
//!
//! `cargo bench --bench backlog` (options: `-- --frames N --inflight N`;
//! `BENCH_WRAP="heaptrack -o /tmp/ht"` runs the service under a profiler).
//! Prints the drain rate, peak RSS (VmHWM), RSS 5 s after the drain, acks
//! deferred and lost. Exits non-zero on a lost or repeated uplink, a lost
//! ack, or a peak RSS over 40 MB.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use device_lorawan::ingest::bridge::WireFormat;

#[path = "../tests/common/scrape.rs"]
mod scrape;
#[path = "support/mod.rs"]
mod support;
use device_lorawan::sim::{self, mote, SimOptions, Target};
use support::{arg, free_port, proc_kb, wait_port, Killed};

const PEAK_RSS_MB: f64 = 40.0;

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    copies: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let frames = arg("--frames", 60_000);
    let inflight = arg("--inflight", 0);
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let (_broker, port) =
        support::mosquitto(dir.path(), &format!("max_inflight_messages {inflight}\n"));

    // The stand-in core-data subscriber on the bus.
    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let seen = seen.clone();
        support::bus_subscriber(port, "backlog-core-data", move |id, _| {
            let mut s = seen.lock().unwrap();
            if !s.ids.insert(id) {
                s.copies += 1;
            }
        })
        .await;
    }

    let devices = dir.path().join("devices.yaml");
    std::fs::write(&devices, mote::devices_yaml(&mote::entries(200, 7))).unwrap();
    let api = free_port();
    let config = dir.path().join("config.yaml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        "Service: {{ DataDir: {data}, ApiBind: \"127.0.0.1:{api}\" }}\n\
         Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
         Ingest: {{ DedupWindow: 200ms, Udp: {{ Enabled: false }}, Mqtt: {{ Enabled: true, Host: 127.0.0.1, Port: {port}, \
           ClientId: backlog-ingest, Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }} }}\n\
         Readings: {{ JsonLines: \"\" }}\n\
         Edgex: {{ Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {port}, ClientId: backlog-bus }} }}\n\
         Log: {{ Level: warn }}\n",
        data = dir.path().join("data").display(),
        devices = devices.display(),
        profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
    )
    .unwrap();
    drop(f);
    // `BENCH_WRAP="heaptrack -o /tmp/ht"` runs the restarted service under
    // a profiler (its RSS figures are then the wrapper's).
    let wrap: Vec<String> = std::env::var("BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let start = |wrap: &[String]| {
        let mut cmd = match wrap.split_first() {
            Some((tool, args)) => {
                let mut c = Command::new(tool);
                c.args(args).arg(env!("CARGO_BIN_EXE_device-lorawan"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_device-lorawan")),
        };
        let svc = Killed(
            cmd.args(["run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .spawn()
                .expect("device-lorawan"),
        );
        wait_port(api);
        let deadline = Instant::now() + Duration::from_secs(10);
        while scrape::scrape(([127, 0, 0, 1], api).into(), "lorawan_mqtt_subacks_total")
            .unwrap_or(0)
            < 1
        {
            assert!(Instant::now() < deadline, "the service never subscribed");
            std::thread::sleep(Duration::from_millis(20));
        }
        svc
    };
    // Its persistent session exists; then it is down while the backlog builds.
    drop(start(&[]));

    let opts = SimOptions {
        devices: 200,
        gateways: 1,
        rate: 20_000.0,
        frames: Some(frames),
        duration: None,
        seed: 7,
        ..Default::default()
    };
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let report = sim::run(target, opts, std::future::pending())
        .await
        .unwrap();
    let want = report.expected.len();
    eprintln!("backlog: {want} uplinks queued for the service; restarting it");

    let started = Instant::now();
    let svc = start(&wrap);
    let pid = svc.0.id();
    let mut peak_sampled = 0;
    let mut last_change = Instant::now();
    let mut last_n = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak_sampled = peak_sampled.max(proc_kb(pid, "VmRSS:"));
        let n = seen.lock().unwrap().ids.len();
        if n != last_n {
            (last_n, last_change) = (n, Instant::now());
        }
        if n >= want || last_change.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let drained_in = started.elapsed();
    let peak_kb = proc_kb(pid, "VmHWM:");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_kb = proc_kb(pid, "VmRSS:");
    let metric = |name: &str| scrape::scrape(([127, 0, 0, 1], api).into(), name).unwrap_or(0);
    let (deferred, lost) = (
        metric("lorawan_mqtt_acks_deferred_total"),
        metric("lorawan_mqtt_acks_lost_total"),
    );
    let s = seen.lock().unwrap();
    println!(
        "backlog: {} of {want} uplinks on the bus after a restart to a {want}-message backlog \
         (broker in-flight limit {inflight}) in {:.2} s ({:.0}/s); copies {}; acks deferred {deferred}, \
         lost {lost}; service peak RSS {:.1} MB, {:.1} MB 5 s after the drain",
        s.ids.len(),
        drained_in.as_secs_f64(),
        s.ids.len() as f64 / drained_in.as_secs_f64(),
        s.copies,
        peak_kb as f64 / 1024.0,
        after_kb as f64 / 1024.0,
    );
    let mut failed = false;
    if s.ids.len() != want {
        eprintln!("FAIL: {} uplinks lost", want - s.ids.len());
        failed = true;
    }
    if s.copies > 0 {
        eprintln!("FAIL: {} uplinks repeated on the bus", s.copies);
        failed = true;
    }
    if lost > 0 {
        eprintln!("FAIL: {lost} acks lost");
        failed = true;
    }
    if peak_kb as f64 / 1024.0 > PEAK_RSS_MB {
        eprintln!("FAIL: peak RSS over {PEAK_RSS_MB} MB");
        failed = true;
    }
    drop(s);
    drop(svc);
    if failed {
        std::process::exit(1);
    }
}
