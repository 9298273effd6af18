//! Handover figures, with the release binary as both edges.
//!
//! `cargo bench --bench handover` (options: `-- --takeovers N --image-mb M
//! --container`).
//!
//! 1. Image transfer: a provider edge (its own process) receives an M MB
//!    image over mutual TLS from this process, acting as the customer.
//!    Prints the throughput and the provider's peak-RSS growth (VmHWM after
//!    minus VmHWM before). Floor: growth under 20 MB.
//! 2. Takeovers: a customer edge (its own process, default activation:
//!    its heartbeat stream, 250 ms heartbeats, 4 missed) publishes simulated
//!    motes' uplinks (one every 100 ms) on the EdgeX message bus; it is
//!    stopped N times (25 by default): every fifth with SIGTERM, the others
//!    (20) with SIGKILL, and restarted (hand-back) after each. Measured: from the
//!    signal to the first event on the bus that the customer had not
//!    published (so the provider's). Prints the median and p99 of the kills
//!    and of the SIGTERMs. Floor: kill -9 median and p99 under 500 ms.
//! 3. With `--container`, the provider takes over with the container mode
//!    (podman's Docker API; the customer's packaged release image): also
//!    measured, from the kill to the container subscribed to the gateway
//!    stream (the first round loads the image), and the container's RSS.
//!
//! Exits non-zero when a floor is missed, when a frame the motes sent never
//! reached the bus, or when an event reached it twice.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use device_lorawan::handover::contract::{
    Activation, Contract, ImageRef, Party, Resources, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::transfer::{now, send_image, MAX_CHUNK};
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[path = "../tests/common/engine.rs"]
mod engine;
#[path = "../tests/common/scrape.rs"]
mod scrape;
#[path = "support/mod.rs"]
mod support;
use support::{free_port, proc_kb, wait_port, Killed};

const TAKEOVER_FLOOR: Duration = Duration::from_millis(500);
const RSS_GROWTH_FLOOR_KB: u64 = 20 * 1024;

struct Args {
    takeovers: usize,
    mb: u64,
    container: bool,
}

fn args() -> Args {
    let (mut takeovers, mut mb, mut container) = (25, 200, false);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--takeovers" => takeovers = val.parse().expect("--takeovers N"),
            "--image-mb" => mb = val.parse().expect("--image-mb M"),
            "--container" => {
                container = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Args {
        takeovers,
        mb,
        container,
    }
}

fn metric(api: u16, name: &str) -> u64 {
    scrape::scrape(([127, 0, 0, 1], api).into(), name).unwrap_or(0)
}

/// One edge's files; `handover` makes it a provider listening there.
fn edge_config(
    dir: &Path,
    name: &str,
    broker: u16,
    api: u16,
    devices: &str,
    handover: Option<(u16, Option<&str>)>,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let devices_path = dir.join("devices.yaml");
    std::fs::write(&devices_path, devices).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&devices_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("config.yaml");
    let mut text = format!(
        "Service: {{ Name: {name}, DataDir: {data}, ApiBind: \"127.0.0.1:{api}\" }}\n\
         Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
         Ingest: {{ Udp: {{ Enabled: false }}, Mqtt: {{ Enabled: true, Host: 127.0.0.1, Port: {broker}, \
           ClientId: {name}-ingest, Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }} }}\n\
         Readings: {{ JsonLines: \"\" }}\n\
         Edgex: {{ Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {broker}, ClientId: {name}-bus }} }}\n\
         Log: {{ Level: warn }}\n",
        data = dir.join("data").display(),
        devices = devices_path.display(),
        profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
    );
    match handover {
        Some((p, None)) => text.push_str(&format!("Handover: {{ Listen: \"127.0.0.1:{p}\" }}\n")),
        Some((p, Some(engine))) => text.push_str(&format!(
            "Handover: {{ Listen: \"127.0.0.1:{p}\", Takeover: container, Engine: \"{engine}\" }}\n"
        )),
        None => {}
    }
    std::fs::write(&config, text).unwrap();
    Identity::create(&dir.join("data/identity")).unwrap();
    config
}

fn start(config: &Path) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .spawn()
            .expect("device-lorawan"),
    )
}

/// The provider's running container (from its `/api/v3/handover`): its
/// name, once subscribed.
fn running_container(api: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).ok()?;
    s.write_all(b"GET /api/v3/handover HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let v: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
    v["provider"][0]["container"]["name"]
        .as_str()
        .map(str::to_owned)
}

/// A container's resident memory, from its main process as the host sees it.
fn container_rss_kb(name: &str) -> u64 {
    let out = Command::new("podman")
        .args(["inspect", "--format", "{{.State.Pid}}", name])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    proc_kb(pid, "VmRSS:")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The 99th percentile (nearest rank).
fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v[((v.len() * 99).div_ceil(100)).max(1) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Event ids on the bus, with when each was first seen.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    newest: Option<Instant>,
    copies: u64,
    /// When each copy arrived, to tell takeovers' copies from hand-backs'.
    copy_times: Vec<Instant>,
}

async fn subscribe(port: u16, seen: Arc<Mutex<Seen>>) {
    let ready = Arc::new(tokio::sync::Notify::new());
    let mut opts = MqttOptions::new("bench-core-data", "127.0.0.1", port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let r = ready.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("edgex/events/device/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => r.notify_one(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let env: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    let id = env["payload"]["event"]["id"].as_str().unwrap().to_string();
                    let mut s = seen.lock().unwrap();
                    if s.ids.insert(id) {
                        s.newest = Some(Instant::now());
                    } else {
                        s.copies += 1;
                        s.copy_times.push(Instant::now());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    ready.notified().await;
}

/// Part 1: an `mb` MB image to the provider at `addr`.
async fn transfer(provider_pid: u32, addr: &str, provider_key: &str, mb: u64, dir: &Path) -> bool {
    let image = dir.join("image.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&image).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mb {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u64 * 31 + i * 7) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let (digest, cid, _) = device_lorawan::image::store::identify(&image).unwrap();
    let me = Identity::generate().unwrap();
    let key = device_lorawan::handover::identity::PublicKey::from_hex(provider_key).unwrap();
    let t0 = now();
    let contract = Contract {
        id: "transfer-bench".into(),
        customer: Party {
            id: "bench".into(),
            public_key: me.public().to_hex(),
            address: String::new(),
        },
        provider: Party {
            id: "provider".into(),
            public_key: provider_key.into(),
            address: addr.into(),
        },
        image: ImageRef {
            digest: digest.to_string(),
            cid,
            size: mb << 20,
        },
        devices: vec!["70b3d57ed0000001".into()],
        activation: Activation::default(),
        resources: Resources {
            memory_bytes: 128 << 20,
            cpu_millis: 500,
        },
        not_before: t0 - 60,
        not_after: t0 + 3600,
        at_expiry: Default::default(),
        rank: 0,
    };
    let offer = SignedContract::offer(contract, &me).unwrap();
    let mut client = device_lorawan::handover::tls::connect(addr, &me, key).unwrap();
    let signed = device_lorawan::handover::transfer::offer(&mut client, &offer)
        .await
        .unwrap();
    let hwm_before = proc_kb(provider_pid, "VmHWM:");
    let rss_before = proc_kb(provider_pid, "VmRSS:");
    let started = Instant::now();
    send_image(&mut client, &signed, &image, MAX_CHUNK, |_, _| {})
        .await
        .unwrap();
    let took = started.elapsed();
    let hwm_after = proc_kb(provider_pid, "VmHWM:");
    let growth = hwm_after.saturating_sub(hwm_before);
    println!(
        "image transfer: {mb} MB in {:.2} s = {:.0} MB/s over mutual TLS; provider RSS {} kB before, peak {} kB after: growth {} kB (floor < {} kB)",
        took.as_secs_f64(),
        mb as f64 / took.as_secs_f64(),
        rss_before,
        hwm_after,
        growth,
        RSS_GROWTH_FLOOR_KB
    );
    growth < RSS_GROWTH_FLOOR_KB
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Args {
        takeovers,
        mb,
        container,
    } = args();
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let (_broker, broker) = support::mosquitto(dir.path(), "");
    let seen = Arc::new(Mutex::new(Seen::default()));
    subscribe(broker, seen.clone()).await;

    let (papi, pport, capi) = (free_port(), free_port(), free_port());
    let engine = container.then(engine::PodmanService::start);
    // Whatever happens, no container outlives the bench.
    let _leftover = container.then(|| engine::RemoveOnDrop("device-lorawan-handover-bench".into()));
    let pconf = edge_config(
        &dir.path().join("b"),
        "edge-b",
        broker,
        papi,
        "devices: []\n",
        Some((pport, engine.as_ref().map(|e| e.address()).as_deref())),
    );
    let provider = start(&pconf);
    wait_port(pport);
    let pkey = std::fs::read_to_string(dir.path().join("b/data/identity/identity.pub")).unwrap();
    let pkey = pkey.trim();
    let transfer_ok = transfer(
        provider.0.id(),
        &format!("127.0.0.1:{pport}"),
        pkey,
        mb,
        dir.path(),
    )
    .await;

    // Part 2: the customer hands its motes over and is killed, again and again.
    let devices = mote::devices_yaml(&mote::entries(5, 9));
    let cconf = edge_config(
        &dir.path().join("a"),
        "edge-a",
        broker,
        capi,
        &devices,
        None,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args([
            "handover",
            "offer",
            "--to",
            &format!("127.0.0.1:{pport}"),
            "--provider-key",
            pkey,
            "--id",
            "bench",
            "--config",
        ])
        .arg(&cconf)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "handover offer failed");
    if container {
        // The first container round measures a real image load.
        let blobs = dir
            .path()
            .join("b/data/handover/provider/images/blobs/sha256");
        for blob in std::fs::read_dir(blobs).unwrap() {
            let blob = blob.unwrap().path();
            if let Ok(id) = device_lorawan::handover::container::image_id(&blob) {
                let _ = Command::new("podman")
                    .args(["rmi", "-f", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let opts = SimOptions {
        devices: 5,
        gateways: 2,
        rate: 10.0,
        frames: None,
        duration: Some(Duration::from_secs(12 * takeovers as u64 + 20)),
        seed: 9,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let s = stop.clone();
    // The motes start once the customer holds them (a frame sent before
    // any edge serves them is not the handover's to lose).
    let mut sim = None;
    let mut motes = Some((target, opts));
    let mut times = Vec::new();
    let mut term_times = Vec::new();
    let (mut ready, mut rss) = (Vec::new(), Vec::new());
    let mut restarts = Vec::new();
    let mut kills = Vec::new();
    for round in 1..=takeovers {
        restarts.push(Instant::now());
        let mut customer = start(&cconf);
        wait_port(capi);
        // It holds the devices once it took them back; let it deliver a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(capi, "handover_releases_total") < 1 {
            assert!(
                Instant::now() < deadline,
                "the customer never took its devices back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some((target, opts)) = motes.take() {
            let s = s.clone();
            sim = Some(tokio::spawn(sim::run(target, opts, async move {
                s.notified().await
            })));
        }
        // Kills land at different points of the heartbeat interval.
        let phase = (round as u64 * 317) % 1000;
        tokio::time::sleep(Duration::from_millis(2000 + phase)).await;
        let taken = metric(papi, "handover_takeovers_total");
        // Every fifth stop is clean (SIGTERM: the customer hands over
        // before it exits); the others a crash: 20 kills in 25 rounds.
        let clean = round % 5 == 0;
        if clean {
            let pid = customer.0.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        } else {
            customer.0.kill().unwrap();
        }
        let killed = Instant::now();
        kills.push(killed);
        let before = seen.lock().unwrap().ids.len();
        let deadline = Instant::now() + Duration::from_secs(15);
        let first = loop {
            {
                let s = seen.lock().unwrap();
                if s.ids.len() > before {
                    break s.newest.unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no event after the kill");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let t = first.duration_since(killed);
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(papi, "handover_takeovers_total") <= taken {
            assert!(Instant::now() < deadline, "no takeover counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "takeover {round}: first provider event {:.0} ms after {}",
            ms(t),
            if clean { "SIGTERM" } else { "kill -9" }
        );
        if clean {
            term_times.push(t);
        } else {
            times.push(t);
        }
        if container {
            let deadline = Instant::now() + Duration::from_secs(90);
            let name = loop {
                if let Some(name) = running_container(papi) {
                    break name;
                }
                assert!(Instant::now() < deadline, "no container subscribed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let r = killed.elapsed();
            let kb = container_rss_kb(&name);
            println!(
                "takeover {round}: container subscribed {:.0} ms after kill -9; its RSS {kb} kB",
                r.as_secs_f64() * 1000.0
            );
            ready.push(r);
            rss.push(kb);
        }
    }
    // A last hand-back (which removes the container), then stop the motes.
    restarts.push(Instant::now());
    let _customer = start(&cconf);
    wait_port(capi);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(capi, "handover_releases_total") < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    let report = sim
        .expect("the motes started")
        .await
        .expect("the simulator task")
        .expect("the simulator ran");
    // Every frame the motes sent must reach the bus: wait (bounded) for the
    // last ones, then count what is missing.
    let euis: std::collections::BTreeMap<String, String> = mote::entries(5, 9)
        .into_iter()
        .map(|e| (e.name, e.dev_eui.to_string()))
        .collect();
    let expected: HashSet<String> = report
        .expected
        .iter()
        .map(|e| {
            device_lorawan::edgex::event::event_id(&euis[&e.device], e.epoch, e.fcnt).to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !expected
            .iter()
            .all(|id| seen.lock().unwrap().ids.contains(id))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<String> = {
        let seen = seen.lock().unwrap();
        report
            .expected
            .iter()
            .filter(|e| {
                let id = device_lorawan::edgex::event::event_id(&euis[&e.device], e.epoch, e.fcnt);
                !seen.ids.contains(&id.to_string())
            })
            .map(|e| format!("{} {}/{}", e.device, e.epoch, e.fcnt))
            .collect()
    };
    let lost = missing.len();
    if lost > 0 {
        println!("lost: {}", missing.join(", "));
    }
    let med = median(&mut times);
    let tail = p99(&mut times);
    println!(
        "takeover (kill -9 to first provider event on the bus; heartbeat stream, 250 ms x 4): median {:.0} ms, p99 {:.0} ms over {} (min {:.0}); floor < {:.0} ms",
        ms(med),
        ms(tail),
        times.len(),
        ms(times[0]),
        ms(TAKEOVER_FLOOR)
    );
    if !term_times.is_empty() {
        println!(
            "takeover (SIGTERM to first provider event on the bus): median {:.0} ms over {} (max {:.0})",
            ms(median(&mut term_times)),
            term_times.len(),
            ms(p99(&mut term_times))
        );
    }
    if container {
        let first = ready.remove(0);
        rss.sort();
        let mut line = format!(
            "container takeover (kill -9 to the customer's image subscribed): first {:.0} ms (image loaded into the engine)",
            first.as_secs_f64() * 1000.0
        );
        if !ready.is_empty() {
            line.push_str(&format!(
                "; then median {:.0} ms over {} (image already loaded)",
                median(&mut ready).as_secs_f64() * 1000.0,
                ready.len()
            ));
        }
        println!("{line}; container RSS median {} kB", rss[rss.len() / 2]);
    }
    let (distinct, copies) = {
        let s = seen.lock().unwrap();
        (s.ids.len(), s.copies)
    };
    // A copy after a kill and before the next start is the takeover's; after
    // a start, the hand-back's.
    let (at_takeover, at_hand_back) = {
        let s = seen.lock().unwrap();
        let mut marks: Vec<(Instant, bool)> = kills.iter().map(|k| (*k, true)).collect();
        marks.extend(restarts.iter().map(|r| (*r, false)));
        marks.sort();
        s.copy_times.iter().fold((0, 0), |(t, h), c| {
            match marks.iter().rev().find(|(m, _)| m <= c) {
                Some((_, true)) => (t + 1, h),
                _ => (t, h + 1),
            }
        })
    };
    println!("repeated events: {at_takeover} at takeovers, {at_hand_back} at hand-backs");
    println!(
        "events on the bus: {distinct} distinct, {} frames sent, {lost} lost, {copies} published more than once",
        expected.len()
    );
    drop(provider);
    drop(_customer);
    drop(engine);
    let mut failed = !transfer_ok || med >= TAKEOVER_FLOOR || tail >= TAKEOVER_FLOOR;
    if lost > 0 {
        eprintln!("FAIL: {lost} frames sent never reached the bus");
        failed = true;
    }
    if copies > 0 {
        eprintln!("FAIL: {copies} events were published more than once (DEVELOPERS.md: the overlap at takeover and hand-back, issue 24)");
        failed = true;
    }
    if failed {
        eprintln!("FAIL: see above");
        std::process::exit(1);
    }
}
