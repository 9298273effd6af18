//! Two real edges on loopback: simulated motes heard by both edges'
//! gateways (one mosquitto, each edge subscribed), and the EdgeX core-data
//! stand-in both deliver to. The customer hands its devices to the provider
//! (`handover offer`), is killed with SIGKILL mid-stream, the provider takes
//! over, the customer restarts and takes back. Every frame sent is stored
//! exactly once: none missing, none duplicated.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use device_lorawan::handover::identity::Identity;
use device_lorawan::ingest::gateway::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 42;
const DEVICES: usize = 3;

/// An edge's files: config, DataDir, identity.
fn edge(
    name: &str,
    devices: &str,
    mqtt: u16,
    core_data: &str,
    handover: Option<u16>,
) -> common::BinaryEnv {
    let env = common::binary_env(
        devices,
        &format!("Name: {name}, SyncInterval: 1s"),
        &format!("DedupWindow: 200ms, Mqtt: {{ Enabled: true, Port: {mqtt}, ClientId: {name} }}"),
        &format!("Delivery: rest, CoreData: {{ Url: \"{core_data}\" }}"),
    );
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("Log: { Level: \"info,device_lorawan::handover=debug\" }\n");
    if let Some(port) = handover {
        text.push_str(&format!("Handover: {{ Listen: \"127.0.0.1:{port}\" }}\n"));
    }
    std::fs::write(&env.config, text).unwrap();
    Identity::create(&env.dir.path().join("data/identity")).unwrap();
    env
}

fn public_key(env: &common::BinaryEnv) -> String {
    std::fs::read_to_string(env.dir.path().join("data/identity/identity.pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn offer(customer: &common::BinaryEnv, provider_port: u16, provider_key: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["handover", "offer", "--to"])
        .arg(format!("127.0.0.1:{provider_port}"))
        .args(["--provider-key", provider_key, "--id", "bridge-1"])
        .args(["--heartbeat", "300ms", "--missed", "3", "--config"])
        .arg(&customer.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "handover offer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("100%"), "transfer progress shown: {stderr}");
}

fn metric(api: std::net::SocketAddr, name: &str) -> u64 {
    common::scrape(api, name).unwrap_or(0)
}

/// `GET /api/v3/handover` of an edge's API, as JSON.
fn handover_status(api: std::net::SocketAddr) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(b"GET /api/v3/handover HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_takeover_and_hand_back_lose_and_repeat_nothing() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let core = common::core_data::CoreData::start().await;
    let devices = mote::devices_yaml(&mote::entries(DEVICES, SEED));
    let provider_port = common::free_port();
    let b = edge(
        "edge-b",
        "devices: []\n",
        broker.port,
        &core.url(),
        Some(provider_port),
    );
    let a = edge("edge-a", &devices, broker.port, &core.url(), None);

    let mut provider = common::start_binary(&b.config);
    offer(&a, provider_port, &public_key(&b));
    let mut customer = common::start_binary(&a.config);
    let contract = a.dir.path().join("data/handover/customer/bridge-1.json");
    assert!(contract.exists());

    // 3 motes, 6 frames a second, ~12 s: frames before, during and after the outage.
    let opts = SimOptions {
        devices: DEVICES,
        gateways: 2,
        rate: 6.0,
        frames: Some(72),
        duration: None,
        seed: SEED,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    // The customer syncs its sessions before the first frame, so the
    // provider is armed from the start.
    common::until("the provider armed", Duration::from_secs(15), || {
        std::fs::metadata(
            b.dir
                .path()
                .join("data/handover/provider/sessions/bridge-1.pb"),
        )
        .is_ok()
    })
    .await;
    let sim = tokio::spawn(sim::run(target, opts, std::future::pending()));

    // Kill the customer once it has delivered some frames.
    let logs = || {
        for (who, e) in [("customer", &a), ("provider", &b)] {
            let log = std::fs::read_to_string(e.dir.path().join("service.log")).unwrap_or_default();
            eprintln!("--- {who} log ---\n{log}");
        }
    };
    let t = Instant::now();
    while core.stored() < 12 {
        if t.elapsed() > Duration::from_secs(15) {
            logs();
            panic!("the customer is not delivering");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill9(&mut customer);
    let killed = Instant::now();
    common::until("the provider taking over", Duration::from_secs(10), || {
        metric(b.api, "handover_takeovers_total") >= 1
    })
    .await;
    let takeover = killed.elapsed();
    let before_restart = core.stored();

    // The provider publishes while the customer is down.
    common::until("the provider publishing", Duration::from_secs(10), || {
        core.stored() >= before_restart + 6
    })
    .await;
    let mut customer = common::start_binary(&a.config);
    common::until("the hand-back", Duration::from_secs(10), || {
        metric(b.api, "handover_releases_total") >= 1
    })
    .await;
    let report = sim.await.unwrap().unwrap();

    // Everything sent is stored exactly once.
    let want = common::expected_ids(&report, SEED, DEVICES);
    assert_eq!(want.len(), 72);
    common::until("every frame stored", Duration::from_secs(20), || {
        core.stored() >= want.len()
    })
    .await;
    // Delivery settles (late copies would be 409s, never new ids).
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let events = core.state.events.lock().unwrap();
        let invalid = core.state.invalid.lock().unwrap();
        common::assert_stored_exactly(&events, &invalid, &want);
    }
    let provider_published = metric(b.api, "lorawan_uplinks_published_total");
    let replayed = metric(b.api, "handover_uplinks_replayed_total");
    assert!(
        provider_published > 0,
        "the provider published during the outage"
    );
    assert!(
        metric(a.api, "handover_releases_total") >= 1,
        "the customer took back"
    );
    eprintln!(
        "takeover {:?} after kill -9; provider published {provider_published} ({replayed} from its buffer); core-data posts {}, 409s {}",
        takeover,
        core.state.posts.load(std::sync::atomic::Ordering::Relaxed),
        core.state.conflicts.load(std::sync::atomic::Ordering::Relaxed),
    );
    // No uplink the other edge delivered looked like a reboot to either
    // edge (a raised counter against a broker's late redelivery would).
    for e in [&a, &b] {
        assert_eq!(
            metric(e.api, "lorawan_counter_resets_total"),
            0,
            "no false reboots"
        );
    }
    // The REST status of both sides.
    let p = handover_status(b.api);
    let c = &p["provider"][0];
    assert_eq!(
        (c["id"].as_str(), c["holder"].as_str()),
        (Some("bridge-1"), Some("customer")),
        "{p}"
    );
    assert!(
        c["epoch"].as_u64().unwrap() >= 4,
        "taken back after a takeover: {p}"
    );
    assert_eq!(c["imageComplete"], true, "{p}");
    let s = handover_status(a.api);
    assert_eq!(s["customer"][0]["id"], "bridge-1", "{s}");
    assert_eq!(
        s["customer"][0]["devices"].as_array().unwrap().len(),
        DEVICES
    );
    kill9(&mut customer);
    kill9(&mut provider);
}
