//! Class C devices through the real binary, over each gateway protocol
//! (Semtech UDP, the ChirpStack gateway bridge in protobuf and JSON, LoRa
//! Basics Station): once a device was heard, a PUT reaches it at once on
//! RX2, without waiting for its next uplink. Every simulated mote sends
//! one uplink and then nothing more, so a command that waited for an
//! uplink would never arrive.

mod common;

use std::time::Duration;

use device_lorawan::devices::DeviceClass;
use device_lorawan::ingest::gateway::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, SimReport, Target};

const SEED: u64 = 31;

/// The real binary with three class C motes and `ingest` (an `Ingest`
/// section's extra keys); the simulated site sends one uplink per mote
/// through `target(env)`, then the test PUTs a command for `sim-mote-1`.
async fn one_put(
    ingest: &str,
    target: impl FnOnce(&common::BinaryEnv) -> Target,
) -> (SimReport, common::BinaryEnv) {
    let mut entries = mote::entries(3, SEED);
    for e in &mut entries {
        e.class = DeviceClass::C;
    }
    let env = common::binary_env(&mote::devices_yaml(&entries), "", ingest, "");
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
        rate: 20.0,
        frames: Some(3),
        duration: None,
        seed: SEED,
        // Long enough for the command; the motes send nothing meanwhile.
        linger: Duration::from_secs(5),
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
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert_eq!(acked, Some(1), "the gateway confirmed the transmission");
    (report, env)
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
