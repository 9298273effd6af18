//! Two real edges on loopback: simulated motes heard by both edges'
//! gateways (one mosquitto, each edge subscribed), and the EdgeX core-data
//! stand-in both deliver to. The customer hands its devices to the provider
//! (`handover offer`), is killed with SIGKILL mid-stream, the provider takes
//! over, the customer restarts and takes back. Every frame sent is stored
//! exactly once: none missing, none duplicated. Run twice: the provider's
//! own pipeline takes over, or the customer's image in podman (through the
//! Docker API of `podman system service`).

mod common;

use common::{kill9, metric};

use std::process::Command;
use std::time::{Duration, Instant};

use device_lorawan::handover::identity::Identity;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 42;
const DEVICES: usize = 3;

/// An edge's files: config, DataDir, identity.
fn edge(
    name: &str,
    devices: &str,
    mqtt: u16,
    core_data: &str,
    handover: Option<(u16, &Mode)>,
    metadata: Option<&str>,
) -> common::BinaryEnv {
    let metadata = metadata
        .map(|url| format!(", Metadata: {{ Enabled: true, Url: \"{url}\" }}"))
        .unwrap_or_default();
    let env = common::binary_env(
        devices,
        &format!("Name: {name}, SyncInterval: 1s"),
        &format!("DedupWindow: 200ms, Mqtt: {{ Enabled: true, Port: {mqtt}, ClientId: {name} }}"),
        &format!("Delivery: rest, CoreData: {{ Url: \"{core_data}\" }}{metadata}"),
    );
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("Log: { Level: \"info,device_lorawan::handover=debug\" }\n");
    match handover {
        Some((port, Mode::InProcess)) => {
            text.push_str(&format!("Handover: {{ Listen: \"127.0.0.1:{port}\" }}\n"))
        }
        Some((port, Mode::Container(engine))) => text.push_str(&format!(
            "Handover: {{ Listen: \"127.0.0.1:{port}\", Takeover: container, Engine: \"{}\" }}\n",
            engine.address()
        )),
        None => {}
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

fn offer(customer: &common::BinaryEnv, provider_port: u16, provider_key: &str, id: &str) {
    offer_ranked(customer, provider_port, provider_key, id, 0)
}

fn offer_ranked(
    customer: &common::BinaryEnv,
    provider_port: u16,
    provider_key: &str,
    id: &str,
    rank: u32,
) {
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["handover", "offer", "--to"])
        .arg(format!("127.0.0.1:{provider_port}"))
        .args(["--provider-key", provider_key, "--id", id, "--rank"])
        .arg(rank.to_string())
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

/// `GET /api/v3/handover` of an edge's API, as JSON.
fn handover_status(api: std::net::SocketAddr) -> serde_json::Value {
    get_json(api, "/api/v3/handover")
}

/// The status code of `GET path` on an edge's API.
fn get_status(api: std::net::SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get_json(api: std::net::SocketAddr, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

/// The binary with `args`, run to its end.
fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// Who runs the devices when the provider takes over.
enum Mode {
    InProcess,
    Container(common::engine::PodmanService),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_takeover_and_hand_back_lose_and_repeat_nothing() {
    scenario(Mode::InProcess, "bridge-1", 72).await;
}

/// The container mode: the customer's packaged image is loaded over
/// the Docker API socket, runs with the contract's limits, and publishes the
/// handed-over devices' events; the hand-back removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_takeover_runs_the_customers_image_and_loses_nothing() {
    if !common::require_engine() {
        return;
    }
    let engine = common::engine::PodmanService::start();
    scenario(Mode::Container(engine), "bridge-c", 150).await;
}

/// Two providers for one customer, ranked: with both alive only the first
/// takes over; with the first lost, the second does. Every frame once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_providers_the_first_reachable_takes_over() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let core = common::core_data::CoreData::start().await;
    let entries = mote::entries(DEVICES, SEED + 1);
    let (port1, port2) = (common::free_port(), common::free_port());
    let p1 = edge(
        "edge-p1",
        "devices: []\n",
        broker.port,
        &core.url(),
        Some((port1, &Mode::InProcess)),
        None,
    );
    let p2 = edge(
        "edge-p2",
        "devices: []\n",
        broker.port,
        &core.url(),
        Some((port2, &Mode::InProcess)),
        None,
    );
    let a = edge(
        "edge-a",
        &mote::devices_yaml(&entries),
        broker.port,
        &core.url(),
        None,
        None,
    );
    let mut first = common::start_binary(&p1.config);
    let mut second = common::start_binary(&p2.config);
    let mut customer = common::start_binary(&a.config);
    offer_ranked(&a, port1, &public_key(&p1), "ranked-1", 0);
    offer_ranked(&a, port2, &public_key(&p2), "ranked-2", 1);
    common::until("both contracts taken up", Duration::from_secs(15), || {
        metric(a.api, "handover_releases_total") >= 2
    })
    .await;
    for (p, id) in [(&p1, "ranked-1"), (&p2, "ranked-2")] {
        common::until("both providers armed", Duration::from_secs(15), || {
            p.dir
                .path()
                .join(format!("data/handover/provider/sessions/{id}.pb"))
                .exists()
        })
        .await;
    }
    let opts = SimOptions {
        devices: DEVICES,
        gateways: 2,
        rate: 6.0,
        frames: Some(120),
        duration: None,
        seed: SEED + 1,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let sim = tokio::spawn(sim::run(target, opts, std::future::pending()));
    common::until("the customer delivering", Duration::from_secs(15), || {
        core.stored() >= 12
    })
    .await;

    // Both providers reachable: the customer's crash is the first one's.
    kill9(&mut customer);
    common::until(
        "the first provider's takeover",
        Duration::from_secs(10),
        || metric(p1.api, "handover_takeovers_total") >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        metric(p2.api, "handover_takeovers_total"),
        0,
        "the second stood by"
    );
    customer = common::start_binary(&a.config);
    common::until(
        "the customer back from the first",
        Duration::from_secs(15),
        || metric(a.api, "handover_releases_total") >= 2,
    )
    .await;

    // The first provider is lost; then the customer: the second takes over.
    kill9(&mut first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut customer);
    common::until(
        "the second provider's takeover",
        Duration::from_secs(10),
        || metric(p2.api, "handover_takeovers_total") >= 1,
    )
    .await;
    let stored = core.stored();
    common::until(
        "the second provider publishing",
        Duration::from_secs(10),
        || core.stored() > stored + 3,
    )
    .await;
    customer = common::start_binary(&a.config);
    common::until(
        "the customer back from the second",
        Duration::from_secs(20),
        || {
            metric(a.api, "handover_releases_total") >= 1
                && metric(p2.api, "handover_releases_total") >= 1
        },
    )
    .await;

    let report = sim.await.unwrap().unwrap();
    let want = common::expected_ids(&report, SEED + 1, DEVICES);
    common::until("every frame stored", Duration::from_secs(30), || {
        let events = core.state.events.lock().unwrap();
        want.iter().all(|id| events.contains_key(id))
    })
    .await;
    {
        let events = core.state.events.lock().unwrap();
        let invalid = core.state.invalid.lock().unwrap();
        common::assert_stored_exactly(&events, &invalid, &want);
    }
    kill9(&mut customer);
    kill9(&mut second);
}

async fn scenario(mode: Mode, id: &str, frames: u64) {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let core = common::core_data::CoreData::start().await;
    // The ABP motes and an OTAA one: it joins at the customer, and its
    // session must reach the provider so that nothing it sends is lost.
    let mut entries = mote::entries(DEVICES, SEED);
    entries.extend(mote::otaa_entries(1, SEED, Default::default()));
    let devices = mote::devices_yaml(&entries);
    let provider_port = common::free_port();
    // The provider's own EdgeX: it lists the devices it holds.
    let metadata = common::metadata::Metadata::start().await;
    let in_process = matches!(mode, Mode::InProcess);
    let b = edge(
        "edge-b",
        "devices: []\n",
        broker.port,
        &core.url(),
        Some((provider_port, &mode)),
        in_process.then(|| metadata.url()).as_deref(),
    );
    let a = edge("edge-a", &devices, broker.port, &core.url(), None, None);
    let container = common::engine::RemoveOnDrop(format!("device-lorawan-handover-{id}"));

    let mut provider = common::start_binary(&b.config);
    // Both services run when the contract is offered: the customer takes
    // it up at once, without a restart.
    let mut customer = common::start_binary(&a.config);
    offer(&a, provider_port, &public_key(&b), id);
    let contract = a
        .dir
        .path()
        .join(format!("data/handover/customer/{id}.json"));
    assert!(contract.exists());
    common::until(
        "the running customer took the contract up",
        Duration::from_secs(10),
        || metric(a.api, "handover_releases_total") >= 1,
    )
    .await;

    // 3 motes, 6 frames a second: frames before, during and after the outage.
    let opts = SimOptions {
        devices: DEVICES,
        otaa_devices: 1,
        // It joins again every 3 frames: the provider (or the container
        // it runs) answers some of its joins while it holds the devices,
        // the customer takes them back.
        otaa_rejoin_every: Some(3),
        gateways: 2,
        rate: 6.0,
        frames: Some(frames),
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
                .join(format!("data/handover/provider/sessions/{id}.pb")),
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
    // A device's command, as core-command would ask it: the customer's
    // holder answers it, the armed provider does not.
    let command = format!("/api/v3/device/name/{}/uplink", entries[0].name);
    assert_eq!(
        get_status(b.api, &command),
        404,
        "the provider does not hold it yet"
    );
    kill9(&mut customer);
    let killed = Instant::now();
    let t = Instant::now();
    while metric(b.api, "handover_takeovers_total") < 1 {
        if t.elapsed() > Duration::from_secs(10) {
            logs();
            panic!("the provider did not take over");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();
    let before_restart = core.stored();

    // The provider publishes while the customer is down.
    common::until("the provider publishing", Duration::from_secs(10), || {
        core.stored() >= before_restart + 6
    })
    .await;
    if matches!(mode, Mode::InProcess) {
        common::until(
            "the provider answering the device's commands",
            Duration::from_secs(10),
            || get_status(b.api, &command) == 200,
        )
        .await;
    }
    let in_container = match &mode {
        Mode::InProcess => None,
        Mode::Container(_) => Some(container_published(&b, id, &container.0, &logs).await),
    };
    if in_container.is_none() {
        common::until(
            "the provider answering a join",
            Duration::from_secs(10),
            || metric(b.api, "lorawan_sessions_activated_total") >= 1,
        )
        .await;
    }
    let mut customer = common::start_binary(&a.config);
    common::until("the hand-back", Duration::from_secs(20), || {
        metric(b.api, "handover_releases_total") >= 1
    })
    .await;
    if in_container.is_some() {
        assert_eq!(
            common::engine::podman(&["container", "exists", &container.0]),
            None,
            "the hand-back removed the container"
        );
        assert!(
            handover_status(b.api)["provider"][0]["container"].is_null(),
            "no container in the status after the hand-back"
        );
    }
    let report = sim.await.unwrap().unwrap();

    // Everything sent is stored exactly once.
    let want = common::expected_ids(&report, SEED, DEVICES);
    assert_eq!(want.len(), report.expected.len());
    assert!(
        report.joins.len() >= 3,
        "the OTAA mote joined: {:?}",
        report.joins
    );
    assert!(
        report
            .expected
            .iter()
            .filter(|e| e.device == "sim-otaa-1")
            .count()
            > 5,
        "the OTAA mote sent data through the outage"
    );
    let t = Instant::now();
    while core.stored() < want.len() {
        if t.elapsed() > Duration::from_secs(20) {
            let events = core.state.events.lock().unwrap();
            let missing: Vec<_> = report
                .expected
                .iter()
                .filter(|e| {
                    let ids = common::expected_ids(
                        &device_lorawan::sim::SimReport {
                            expected: vec![(*e).clone()],
                            ..Default::default()
                        },
                        SEED,
                        DEVICES,
                    );
                    !ids.iter().all(|i| events.contains_key(i))
                })
                .map(|e| (e.device.clone(), e.fcnt, e.epoch))
                .collect();
            drop(events);
            logs();
            panic!("frames never stored: {missing:?}; joins {:?}", report.joins);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Delivery settles: both edges have delivered all they journaled, so
    // no late copy is on its way (it would be a 409, never a new id).
    common::until("both outboxes drained", Duration::from_secs(20), || {
        common::scrape(a.api, "edgex_outbox_depth") == Some(0)
            && common::scrape(b.api, "edgex_outbox_depth") == Some(0)
    })
    .await;
    {
        let events = core.state.events.lock().unwrap();
        let invalid = core.state.invalid.lock().unwrap();
        if events.len() != want.len() || !want.iter().all(|i| events.contains_key(i)) {
            logs();
        }
        common::assert_stored_exactly(&events, &invalid, &want);
    }
    let provider_published = metric(b.api, "lorawan_uplinks_published_total");
    // The customer took the provider's (or the container's) joined
    // session back: the mote went on without joining because of the
    // hand-back, and the customer answered its later joins from where the
    // holder was.
    assert!(metric(a.api, "lorawan_joins_accepted_total") >= 1);
    assert_eq!(
        metric(a.api, "lorawan_inputs_rejected_total{reason=\"dev_nonce\"}"),
        0
    );
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
        "takeover {:?} after kill -9; provider published {provider_published} ({replayed} from its buffer); container published {in_container:?}; core-data posts {}, 409s {}",
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
        (Some(id), Some("customer")),
        "{p}"
    );
    assert!(
        c["epoch"].as_u64().unwrap() >= 4,
        "taken back after a takeover: {p}"
    );
    assert_eq!(c["imageComplete"], true, "{p}");
    let s = handover_status(a.api);
    assert_eq!(s["customer"][0]["id"], id, "{s}");
    assert_eq!(
        s["customer"][0]["devices"].as_array().unwrap().len(),
        DEVICES + 1,
        "the ABP motes and the OTAA one"
    );
    assert_eq!(
        get_status(b.api, &command),
        404,
        "handed back: the customer answers it"
    );
    assert_eq!(get_status(a.api, &command), 200);
    // The settlement receipt: issued by the provider at the hand-back,
    // checked and counter-signed by the customer (accepted: nothing it heard
    // is missing, nothing repeated), kept by both, verified offline.
    let receipts = |api| get_json(api, "/api/v3/handover/receipts")["receipts"].clone();
    common::until(
        "the receipt settled on both edges",
        Duration::from_secs(10),
        || {
            let (c, p) = (receipts(a.api), receipts(b.api));
            c[0]["receipt"]["answer"].is_object() && p[0]["receipt"]["answer"].is_object()
        },
    )
    .await;
    let (mine, theirs) = (receipts(a.api), receipts(b.api));
    assert_eq!(
        (mine[0]["role"].as_str(), theirs[0]["role"].as_str()),
        (Some("customer"), Some("provider"))
    );
    assert_eq!(
        mine[0]["receipt"], theirs[0]["receipt"],
        "one receipt, on both edges"
    );
    assert_eq!(mine[0]["verified"], true);
    let r = &mine[0]["receipt"];
    assert_eq!(r["receipt"]["contractId"], id, "{r}");
    assert_eq!(
        r["receipt"]["detected"], "closed",
        "kill -9 closes the stream: {r}"
    );
    let listed: u64 = r["receipt"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["count"].as_u64().unwrap())
        .sum();
    // Checked against the frames the customer heard, its counters and
    // EdgeX's record: core-data has every event the receipt lists.
    assert_eq!(r["answer"]["verdict"], "accepted", "{r}");
    let log = std::fs::read_to_string(a.dir.path().join("service.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("receipt checked against EdgeX's records")
                && l.contains("unrecorded=0")
                && !l.contains("asked=0")),
        "the customer asked core-data: {log}"
    );
    if in_container.is_none() {
        assert!(
            listed > 0 && listed <= provider_published,
            "{listed} of {provider_published}: {r}"
        );
    }
    let file = a.dir.path().join(format!(
        "data/handover/customer/receipts/{id}-{}.json",
        r["receipt"]["epoch"]
    ));
    let out = run_cli(&["handover", "receipt", "verify", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("customer's signatures hold"));
    // A receipt changed after signing fails the check.
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    forged["receipt"]["devices"][0]["count"] = (listed + 1).into();
    let forged_file = a.dir.path().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let out = run_cli(&[
        "handover",
        "receipt",
        "verify",
        forged_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature does not verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill9(&mut customer);
    kill9(&mut provider);
}

/// Wait for the container the provider started to publish the customer's
/// devices' events; check its limits. Returns what it published.
async fn container_published(
    provider: &common::BinaryEnv,
    id: &str,
    name: &str,
    logs: &dyn Fn(),
) -> u64 {
    let t = Instant::now();
    let api = loop {
        let s = handover_status(provider.api);
        if let Some(api) = s["provider"][0]["container"]["api"].as_str() {
            assert_eq!(s["provider"][0]["container"]["name"], name, "{s}");
            break api.parse::<std::net::SocketAddr>().unwrap();
        }
        if t.elapsed() > Duration::from_secs(60) {
            logs();
            eprintln!(
                "--- podman logs ---\n{}",
                common::engine::podman(&["logs", name]).unwrap_or_default()
            );
            panic!("no container for contract {id}: {s}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let limits = common::engine::podman(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.NetworkMode}}",
        name,
    ])
    .expect("podman inspect");
    assert_eq!(
        limits.trim(),
        format!("{} 500000000 host", 128u64 << 20),
        "the contract's default limits: 128 MiB, half a core"
    );
    common::until("the container publishing", Duration::from_secs(15), || {
        metric(api, "lorawan_uplinks_published_total") > 0
    })
    .await;
    common::until(
        "the container answering a join",
        Duration::from_secs(15),
        || metric(api, "lorawan_sessions_activated_total") > 0,
    )
    .await;
    metric(api, "lorawan_uplinks_published_total")
}
