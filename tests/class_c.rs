//! Class C devices through the real binary, over each gateway protocol
//! (Semtech UDP, the ChirpStack gateway bridge in protobuf and JSON, LoRa
//! Basics Station): once a device was heard, a PUT reaches it at once on
//! RX2, without waiting for its next uplink. Every simulated mote sends
//! one uplink and then nothing more, so a command that waited for an
//! uplink would never arrive.

mod common;

use std::time::Duration;

use device_lorawan::devices::DeviceClass;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, SimReport, Target};

const SEED: u64 = 31;

/// How a run goes beyond its gateway protocol.
struct Plan {
    /// Uplinks in all (three motes in turn) and their rate.
    frames: u64,
    rate: f64,
    linger: Duration,
    /// The command is a confirmed downlink (the profile says so).
    confirmed: bool,
    /// Top-level configuration added (`Downlink: {...}`).
    top: &'static str,
}

/// One uplink per mote, then quiet: a class A path would never deliver.
const ONE_EACH: Plan = Plan {
    frames: 3,
    rate: 20.0,
    linger: Duration::from_secs(5),
    confirmed: false,
    top: "",
};

/// The real binary with three class C motes and `ingest` (an `Ingest`
/// section's extra keys); the simulated site sends one uplink per mote
/// through `target(env)`, then the test PUTs a command for `sim-mote-1`.
async fn one_put(
    ingest: &str,
    target: impl FnOnce(&common::BinaryEnv) -> Target,
) -> (SimReport, common::BinaryEnv) {
    run_plan(ingest, target, ONE_EACH).await
}

async fn run_plan(
    ingest: &str,
    target: impl FnOnce(&common::BinaryEnv) -> Target,
    plan: Plan,
) -> (SimReport, common::BinaryEnv) {
    let mut entries = mote::entries(3, SEED);
    for e in &mut entries {
        e.class = DeviceClass::C;
    }
    let env = common::binary_env(&mote::devices_yaml(&entries), "", ingest, "");
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    if plan.confirmed {
        // The mote's profile, its interval command made a confirmed downlink.
        let profiles = env.config.with_file_name("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        for f in std::fs::read_dir(common::repo_path("profiles")).unwrap() {
            let f = f.unwrap().path();
            let text = std::fs::read_to_string(&f).unwrap().replace(
                r#"attributes: { downlinkFPort: "2","#,
                r#"attributes: { confirmed: "true", downlinkFPort: "2","#,
            );
            std::fs::write(profiles.join(f.file_name().unwrap()), text).unwrap();
        }
        let shipped = common::repo_path("profiles");
        config = config.replace(
            &shipped.display().to_string(),
            &profiles.display().to_string(),
        );
        assert!(config.contains(&*profiles.display().to_string()));
    }
    config.push_str(plan.top);
    std::fs::write(&env.config, config).unwrap();
    let mut svc = common::start_binary(&env.config);
    if ingest.contains("Mqtt") {
        // Subscribed before the site publishes (gateway and application
        // streams, and the gateways' acks).
        let api = env.api;
        common::until("subscriptions", Duration::from_secs(20), || {
            common::scrape(api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 2)
        })
        .await;
    }
    let target = target(&env);
    let opts = SimOptions {
        devices: 3,
        gateways: 1,
        rate: plan.rate,
        frames: Some(plan.frames),
        duration: None,
        seed: SEED,
        linger: plan.linger,
        class_c: true,
        ..Default::default()
    };
    let site = tokio::spawn(sim::run(target, opts, std::future::pending()));
    let out = env.out.clone();
    common::until(
        "the three uplinks published",
        Duration::from_secs(20),
        || common::published_lines(&out).len() >= 3,
    )
    .await;
    let (status, body) = common::http(
        env.api,
        "PUT",
        "/api/v3/device/name/sim-mote-1/reportInterval",
        r#"{"reportInterval":"300"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let report = site.await.unwrap().unwrap();
    let acked = common::scrape(env.api, "lorawan_downlinks_acked_total");
    let metrics = common::get(env.api, "/metrics").unwrap_or_default();
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert!(acked >= Some(1), "the gateway confirmed the transmission");
    std::fs::write(env.config.with_file_name("metrics.txt"), metrics).unwrap();
    (report, env)
}

/// A counter of the metrics the run ended with.
fn metric(env: &common::BinaryEnv, name: &str) -> u64 {
    std::fs::read_to_string(env.config.with_file_name("metrics.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The command reached the mote at once, on EU868's RX2 (869.525 MHz,
/// SF12), with no uplink after the PUT.
fn took_it_on_rx2(report: &SimReport) {
    assert_eq!(report.expected.len(), 3, "one uplink per mote, no more");
    assert_eq!(
        report.downlinks.len(),
        1,
        "{:?} missed {} dropped {}",
        report.downlinks,
        report.downlinks_missed,
        report.downlinks_dropped
    );
    let d = &report.downlinks[0];
    assert_eq!(d.device, "sim-mote-1");
    assert_eq!(
        (d.fport, d.payload.as_slice()),
        (Some(2), &300u16.to_be_bytes()[..])
    );
    assert_eq!(d.interval_s, 300, "the mote applied it");
    assert_eq!(
        (d.delay_us, d.frequency, d.datr.as_str()),
        (0, 869_525_000, "SF12BW125"),
        "sent at once on RX2: {d:?}"
    );
    assert_eq!(report.downlinks_missed + report.downlinks_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_c_over_semtech_udp() {
    let (report, _env) = one_put("", |env| Target::Udp(env.udp)).await;
    took_it_on_rx2(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_c_over_the_gateway_bridge() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    for format in [WireFormat::Protobuf, WireFormat::JsonV4] {
        let mqtt = format!(
            "Mqtt: {{ Enabled: true, Port: {}, ClientId: class-c-{format:?} }}",
            broker.port
        );
        let (report, _env) = one_put(&mqtt, |_| Target::Mqtt {
            host: "127.0.0.1".into(),
            port: broker.port,
            format,
            prefix: String::new(),
        })
        .await;
        took_it_on_rx2(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_c_over_basics_station() {
    let port = common::free_port();
    let station = format!("BasicStation: {{ Enabled: true, Bind: \"127.0.0.1:{port}\" }}");
    let (report, _env) = one_put(&station, |_| {
        Target::Station(format!("ws://127.0.0.1:{port}"))
    })
    .await;
    took_it_on_rx2(&report);
}

/// A confirmed command (the profile's resource says `confirmed: "true"`):
/// sent at once, and done when the mote's next uplink acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_class_c_command_is_done_when_the_device_acknowledges_it() {
    let plan = Plan {
        // Each mote sends every 3 s: mote 1's next uplink follows the PUT.
        frames: 9,
        rate: 1.0,
        linger: Duration::from_secs(2),
        confirmed: true,
        top: "",
    };
    let (report, env) = run_plan("", |env| Target::Udp(env.udp), plan).await;
    let got: Vec<_> = report
        .downlinks
        .iter()
        .filter(|d| d.device == "sim-mote-1")
        .collect();
    assert_eq!(got.len(), 1, "{:?}", report.downlinks);
    assert!(got[0].confirmed && got[0].interval_s == 300, "{:?}", got[0]);
    assert_eq!(metric(&env, "lorawan_downlinks_confirmed_total"), 1);
    assert_eq!(metric(&env, "lorawan_downlink_queue_depth"), 0);
}

/// A device that never acknowledges a confirmed command gets it again
/// after `Downlink.ConfirmTimeout`, until `Downlink.MaxAttempts` drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_confirmed_command_is_retried_then_dropped() {
    let plan = Plan {
        linger: Duration::from_secs(6),
        confirmed: true,
        top: "Downlink: { ConfirmTimeout: 1s, MaxAttempts: 3 }\n",
        ..ONE_EACH
    };
    let (report, env) = run_plan("", |env| Target::Udp(env.udp), plan).await;
    let got: Vec<_> = report
        .downlinks
        .iter()
        .filter(|d| d.device == "sim-mote-1")
        .map(|d| (d.confirmed, d.fcnt, d.delay_us))
        .collect();
    assert_eq!(
        got,
        [(true, 0, 0), (true, 1, 0), (true, 2, 0)],
        "three tries, at once each"
    );
    assert_eq!(metric(&env, "lorawan_downlinks_confirmed_total"), 0);
    assert_eq!(metric(&env, "lorawan_downlinks_dropped_total"), 1);
    assert_eq!(metric(&env, "lorawan_downlink_queue_depth"), 0);
}
