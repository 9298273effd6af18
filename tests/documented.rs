//! Every configuration the README, `docs/` and `compose/` document, run as
//! documented: the real binary, started the way the image starts it
//! (`run --config compose/configuration.yaml`) with the environment the
//! compose file gives it, against a real mosquitto, the stand-in
//! core-metadata and a core-data subscriber on the bus. Only what a compose
//! network provides and a test cannot is changed: service host names become
//! loopback, fixed ports become free ones, and paths inside the container
//! become temporary ones. Every frame sent must be stored exactly once.
//!
//! A change of defaults that breaks a documented deployment fails here
//! (issue 11: the ingest and the bus sharing one client id on one broker
//! lost half of all readings, and no test used the defaults).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::bus::BusCore;
use common::compose::{self, Site};
use common::metadata::Metadata;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, Target};

const SEED: u64 = 41;
const FRAMES: u64 = 41;

/// The service as compose file `file` starts it with
/// `compose/configuration.yaml`, `changes` set over its environment, on
/// the simulator's 3 motes of [`SEED`].
fn site_of(file: &str, broker: u16, md: &Metadata, changes: &[(&str, &str)]) -> Site {
    Site::new(
        compose::environment(&compose::load(file)),
        &common::repo_path("compose/configuration.yaml"),
        &mote::devices_yaml(&mote::entries(3, SEED)),
        broker,
        &md.url(),
        changes,
    )
}

/// Send the frames, then wait (bounded) until core-data has all of them, and
/// check that it has exactly them, each once, and that registration ran.
async fn run_site(
    site: &Site,
    target: Target,
    mqtt_subscriptions: u64,
    core: &BusCore,
    md: &Metadata,
) {
    let mut svc = site.start();
    site.ready(mqtt_subscriptions).await;
    let opts = sim::SimOptions {
        rate: 40.0,
        ..common::sim_opts(SEED, FRAMES, 0)
    };
    let report = sim::run(target, opts, std::future::pending())
        .await
        .unwrap();
    let want = common::expected_ids(&report, SEED, 3);
    assert_eq!(want.len() as u64, FRAMES);
    // Every frame, or a timeout: then the assertion below names what is missing.
    let deadline = Instant::now() + Duration::from_secs(15);
    while core.stored() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conflicts = [
        "lorawan_mqtt_client_id_conflicts_total",
        "edgex_bus_client_id_conflicts_total",
    ]
    .map(|m| common::scrape(site.api, m));
    svc.kill().unwrap();
    svc.wait().unwrap();
    let log = site.log();
    common::assert_stored_exactly(
        &core.state.events.lock().unwrap(),
        &core.state.invalid.lock().unwrap(),
        &want,
    );
    assert_eq!(conflicts, [Some(0), Some(0)], "client id conflicts\n{log}");
    assert!(
        !log.contains("connection lost") && !log.contains("message bus unavailable"),
        "no MQTT client may lose its connection on a healthy broker:\n{log}"
    );
    let devices = md.state.devices.lock().unwrap();
    assert_eq!(devices.len(), 3, "the motes registered with core-metadata");
}

fn mqtt_gateways(port: u16) -> Target {
    Target::Mqtt {
        host: "127.0.0.1".into(),
        port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    }
}

/// `docker compose --profile chirpstack up`: the gateway bridge's stream
/// and the EdgeX bus on one mosquitto, as the compose file's comment says
/// to enable it (`INGEST_MQTT_ENABLED: "true"`), defaults otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_with_the_chirpstack_bridge_stores_every_frame_once() {
    let Some((broker, core, md)) = compose::peers().await else {
        return;
    };
    let file = "compose/docker-compose.yml";
    let env = compose::environment(&compose::load(file));
    assert_eq!(env["INGEST_MQTT_ENABLED"], "false", "the profile's switch");
    let site = site_of(file, broker.port, &md, &[("INGEST_MQTT_ENABLED", "true")]);
    // The default subscriptions (bridge and application streams) and the
    // bridge's downlink acknowledgements.
    run_site(&site, mqtt_gateways(broker.port), 3, &core, &md).await;
}

/// `docker compose up`: Semtech UDP from the packet forwarder, events on
/// the bus, registration on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_with_the_packet_forwarder_stores_every_frame_once() {
    let Some((broker, core, md)) = compose::peers().await else {
        return;
    };
    let site = site_of("compose/docker-compose.yml", broker.port, &md, &[]);
    run_site(&site, Target::Udp(site.udp), 0, &core, &md).await;
}

/// The balenaOS variant: UDP, the bus, registration, the devices file in
/// the data volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balena_compose_stores_every_frame_once() {
    let Some((broker, core, md)) = compose::peers().await else {
        return;
    };
    let site = site_of("compose/docker-compose.balena.yml", broker.port, &md, &[]);
    run_site(&site, Target::Udp(site.udp), 0, &core, &md).await;
}

/// The README's first command: the demo on embedded defaults, nothing
/// installed. It prints readings and a summary, and counts gateways as
/// gateways (a repeated datagram is not another one).
#[test]
fn the_readme_demo_runs_on_embedded_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["demo", "--duration", "3s", "--rate", "10"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readings: Vec<&str> = stdout.lines().filter(|l| l.contains(" fcnt ")).collect();
    assert!(readings.len() >= 10, "{stdout}");
    for l in &readings {
        let n: usize = l
            .split("via ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no gateway count in {l:?}"));
        assert!((1..=2).contains(&n), "two gateways, not {n}: {l}");
    }
    assert!(
        stdout.contains("\nsent ") && stdout.contains("published "),
        "{stdout}"
    );
}

/// The README's "Running it for real": a devices file from the simulator,
/// the service on a UDP port and the bundled profiles, the simulator
/// sending to it; readings on standard output as JSON lines.
#[test]
fn the_readme_run_for_real_steps_work() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_device-lorawan");
    let ok = std::process::Command::new(bin)
        .args([
            "simulate",
            "--write-devices",
            "devices.yaml",
            "--devices",
            "3",
        ])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let udp = format!("127.0.0.1:{}", common::free_udp_port());
    let api = format!("127.0.0.1:{}", common::free_port());
    let mut svc = std::process::Command::new(bin)
        .arg("run")
        .env("INGEST_UDP_BIND", &udp)
        .env("SERVICE_APIBIND", &api)
        .env("DEVICES_PROFILESDIR", common::repo_path("profiles"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api: std::net::SocketAddr = api.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::scrape(api, "lorawan_uplinks_published_total").is_none() {
        assert!(Instant::now() < deadline, "the service did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sim = std::process::Command::new(bin)
        .args(["simulate", "--udp", &udp, "--devices", "3", "--frames", "9"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    while common::scrape(api, "lorawan_uplinks_published_total") < Some(9) {
        assert!(Instant::now() < deadline, "not every frame was published");
        std::thread::sleep(Duration::from_millis(20));
    }
    svc.kill().unwrap();
    let out = svc.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9);
    assert!(lines.iter().all(|v| v["readings"].is_array()));
    assert!(
        Path::new(&dir.path().join("data")).is_dir(),
        "state in ./data"
    );
}
