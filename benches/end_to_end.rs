//! End-to-end load: simulated gateways publish on a real mosquitto, the real
//! `device-lorawan` binary (release) decodes and journals every uplink in its
//! outbox and publishes EdgeX events on the message bus, and a subscriber
//! standing in for core-data counts them by id.
//!
//! `cargo bench --bench end_to_end` (options: `-- --frames N --rate R
//! --gateways G --devices D --dedup-window 200ms --rest`). With `--rest` the
//! service delivers to core-data's REST API instead, and the stand-in is an
//! HTTP server on loopback answering as core-data does (201 with the id, 409
//! for an id it has); the floors are then 7,000 events/s and a 32 MB peak
//! RSS. Prints sustained
//! throughput (distinct uplinks per second, first send to last event), the
//! latency from the service's reception (the event's origin) to the event on
//! the bus (p50/p99), the service's peak RSS (VmHWM) and losses. Exits
//! non-zero when an uplink is lost or duplicated on the bus, or when the
//! throughput is under the 5,000 uplinks/s floor.
//!
//! `--pi`: a Raspberry-Pi-class run. The service gets one core (`taskset -c
//! 0`) and a memory limit (`--memory-mb`, default 128: a cgroup, v2 or v1's
//! memory controller), while mosquitto, the simulator and the stand-in run
//! on the other core; reports uplinks/s per core and the peak RSS. Its
//! floor is nothing lost (the rate is what one core does).

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use device_lorawan::ingest::bridge::WireFormat;

#[path = "../tests/common/scrape.rs"]
mod scrape;
#[path = "support/mod.rs"]
mod support;
use device_lorawan::sim::{self, mote, SimOptions, Target};
use support::{free_port, proc_kb, wait_port, Killed};

const FLOOR_PER_S: f64 = 5000.0;
/// With `--rest`: events/s and peak RSS (MB).
const REST_FLOOR_PER_S: f64 = 7000.0;
const REST_CEILING_MB: f64 = 32.0;

struct Args {
    frames: u64,
    rate: f64,
    gateways: usize,
    devices: usize,
    dedup_window: String,
    rest: bool,
    pi: bool,
    memory_mb: u64,
}

fn args() -> Args {
    let mut a = Args {
        frames: 60_000,
        rate: 8000.0,
        gateways: 2,
        devices: 200,
        dedup_window: "200ms".into(),
        rest: false,
        pi: false,
        memory_mb: 128,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--frames" => a.frames = val.parse().expect("--frames N"),
            "--rate" => a.rate = val.parse().expect("--rate R"),
            "--gateways" => a.gateways = val.parse().expect("--gateways G"),
            "--devices" => a.devices = val.parse().expect("--devices D"),
            "--dedup-window" => a.dedup_window = val,
            "--memory-mb" => a.memory_mb = val.parse().expect("--memory-mb MB"),
            "--rest" | "--pi" => {
                a.rest |= argv[i] == "--rest";
                a.pi |= argv[i] == "--pi";
                i += 1;
                continue;
            }
            _ => {
                i += 1; // cargo's own flags (--bench)
                continue;
            }
        }
        i += 2;
    }
    a
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    copies: u64,
    latencies_ms: Vec<f64>,
    last: Option<Instant>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let (_broker, port) = support::mosquitto(dir.path(), "max_inflight_messages 4000\n");
    if a.pi {
        // Everything but the service on the second core.
        support::pin(_broker.0.id(), "1");
        support::pin(std::process::id(), "1");
    }

    // The stand-in core-data: a subscriber on the bus, or a REST server.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let on_event = {
        let seen = seen.clone();
        move |id: String, origin: i64| {
            let arrived = now_ns();
            let mut s = seen.lock().unwrap();
            let new = s.ids.insert(id);
            if new {
                s.latencies_ms.push((arrived - origin) as f64 / 1e6);
            } else {
                s.copies += 1;
            }
            s.last = Some(Instant::now());
            new
        }
    };
    let delivery = if a.rest {
        let url = rest_core_data(on_event).await;
        format!("Delivery: rest, CoreData: {{ Url: \"{url}\" }}")
    } else {
        support::bus_subscriber(port, "bench-core-data", move |id, origin| {
            on_event(id, origin);
        })
        .await;
        format!("Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {port}, ClientId: bench-bus }}")
    };

    // The service: gateway MQTT in, outbox, message bus out.
    let devices = dir.path().join("devices.yaml");
    std::fs::write(&devices, mote::devices_yaml(&mote::entries(a.devices, 7))).unwrap();
    let api = free_port();
    let config = dir.path().join("config.yaml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        "Service: {{ DataDir: {data}, ApiBind: \"127.0.0.1:{api}\" }}\n\
         Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
         Ingest: {{ DedupWindow: {window}, Udp: {{ Enabled: false }}, Mqtt: {{ Enabled: true, Host: 127.0.0.1, Port: {port}, \
           ClientId: bench-ingest, Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }} }}\n\
         Readings: {{ JsonLines: \"\" }}\n\
         Edgex: {{ {delivery} }}\n\
         Log: {{ Level: warn }}\n",
        data = dir.path().join("data").display(),
        devices = devices.display(),
        profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
        window = a.dedup_window,
    )
    .unwrap();
    drop(f);
    let mut cmd = if a.pi {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", env!("CARGO_BIN_EXE_device-lorawan")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
    };
    let svc = Killed(
        cmd.args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("device-lorawan"),
    );
    let limit = a.pi.then(|| {
        support::memory_limit(svc.0.id(), a.memory_mb)
            .expect("a memory cgroup (run as root, cgroup v1 or v2)")
    });
    wait_port(api);
    // Wait for the ingest subscription (its SUBACK is counted in /metrics).
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape::scrape(([127, 0, 0, 1], api).into(), "lorawan_mqtt_subacks_total").unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "the service never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let opts = SimOptions {
        devices: a.devices,
        gateways: a.gateways,
        rate: a.rate,
        frames: Some(a.frames),
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
    eprintln!(
        "offering {} uplinks at {}/s from {} motes, each heard by {} gateway(s), dedup window {}",
        a.frames, a.rate, a.devices, a.gateways, a.dedup_window
    );
    let started = Instant::now();
    let report = sim::run(target, opts, std::future::pending())
        .await
        .unwrap();
    let sent_in = started.elapsed();
    let want = report.expected.len();
    // Bounded wait for the tail: stop once all arrived, nothing came for
    // 10 s, or two minutes passed.
    let tail = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = seen.lock().unwrap();
        let quiet = s.last.map_or(tail.elapsed(), |l| l.elapsed()) > Duration::from_secs(10);
        if s.ids.len() >= want || quiet || tail.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    if seen.lock().unwrap().last.is_none() {
        eprintln!("FAIL: no event reached the bus");
        drop(svc);
        drop(_broker);
        std::process::exit(1);
    }
    let rss_kb = proc_kb(svc.0.id(), "VmHWM:");
    let s = seen.lock().unwrap();
    let elapsed = s.last.unwrap().duration_since(started).as_secs_f64();
    let rate = s.ids.len() as f64 / elapsed;
    let mut lat = s.latencies_ms.clone();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "end_to_end{}: {} of {} uplinks delivered in {:.2} s (offered in {:.2} s): {:.0} uplinks/s sustained; \
         latency reception→EdgeX p50 {:.1} ms, p99 {:.1} ms; copies {}; service peak RSS {:.1} MB",
        if a.rest { " (REST)" } else { "" },
        s.ids.len(),
        want,
        elapsed,
        sent_in.as_secs_f64(),
        rate,
        pct(0.5),
        pct(0.99),
        s.copies,
        rss_kb as f64 / 1024.0
    );
    if let Some(cgroup) = &limit {
        println!(
            "Pi-class: the service on one core under a {} MB memory limit ({cgroup}): \
             {rate:.0} uplinks/s per core, peak RSS {:.1} MB",
            a.memory_mb,
            rss_kb as f64 / 1024.0
        );
    }
    let mut failed = false;
    if s.ids.len() != want {
        eprintln!("FAIL: {} uplinks lost", want - s.ids.len());
        failed = true;
    }
    if s.copies > 0 && !a.rest {
        eprintln!("FAIL: {} events reached the bus more than once", s.copies);
        failed = true;
    }
    let floor = if a.rest {
        REST_FLOOR_PER_S
    } else {
        FLOOR_PER_S
    };
    if rate < floor && !a.pi {
        eprintln!("FAIL: {rate:.0} uplinks/s is under the {floor} floor");
        failed = true;
    }
    let peak_mb = rss_kb as f64 / 1024.0;
    if a.rest && peak_mb > REST_CEILING_MB {
        eprintln!("FAIL: peak RSS {peak_mb:.1} MB is over {REST_CEILING_MB} MB");
        failed = true;
    }
    drop(s);
    drop(svc);
    drop(_broker);
    if let Some(cgroup) = &limit {
        // Empty once the service is gone.
        let _ = std::fs::remove_dir(cgroup);
    }
    if failed {
        std::process::exit(1);
    }
}

/// A stand-in core-data REST server on loopback: `on_event(id, origin)` for
/// every event posted (201 for a new id, 409 for one it has, as core-data
/// answers). Returns its URL.
async fn rest_core_data(on_event: impl Fn(String, i64) -> bool + Send + Sync + 'static) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let on_event = Arc::new(on_event);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let on_event = on_event.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let on_event = on_event.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let ev = &doc["event"];
                            let id = ev["id"].as_str().unwrap().to_string();
                            let new = on_event(id.clone(), ev["origin"].as_i64().unwrap_or(0));
                            let status = if new { 201 } else { 409 };
                            let answer = format!(
                                "{{\"apiVersion\":\"v3\",\"statusCode\":{status},\"id\":\"{id}\"}}"
                            );
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}
