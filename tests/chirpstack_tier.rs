//! The network-server tier as `compose/docker-compose.chirpstack.yml` lays
//! it over the EdgeX deployment: ChirpStack v4 in front, device-lorawan on
//! its application stream (`compose/chirpstack/configuration.yaml`).
//!
//! ChirpStack itself cannot run here in CI (no image registry, and building
//! it takes longer than CI has). What it sends can: messages a real
//! ChirpStack v4.20 published (`tests/peers/recorded/chirpstack-4.20/`),
//! replayed through a real mosquitto into the real binary, started with the
//! environment and the files `docker compose` gives it. The run with
//! ChirpStack itself in front is docs/scaling.md's manual check.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::bus::BusCore;
use common::compose::{self, Site};
use common::metadata::Metadata;
use common::until;
use device_lorawan::config::{Config, Delivery, StreamKind};
use device_lorawan::devices::DeviceEntry;
use device_lorawan::lorawan::Eui64;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value as Json;
use serde_yaml_ng::Value;

const RECORDED: &str = "tests/peers/recorded/chirpstack-4.20/application-up.jsonl";
const RECORDED_PROTOBUF: &str =
    "tests/peers/recorded/chirpstack-4.20/application-up.protobuf.jsonl";
const FILES: [&str; 2] = [
    "compose/docker-compose.yml",
    "compose/docker-compose.chirpstack.yml",
];
const PROFILE: &str = "Dragino-LPP-Mote";

/// (topic, payload) of MQTT messages.
type Messages = Vec<(String, Vec<u8>)>;

/// (topic, payload) of every recorded message, in the order ChirpStack
/// published them.
fn recorded() -> Messages {
    std::fs::read_to_string(common::repo_path(RECORDED))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_string();
            (field("topic"), field("payload").into_bytes())
        })
        .collect()
}

/// (topic, payload) of every recorded protobuf message, and each message as
/// ChirpStack's own definitions (PyPI `chirpstack-api`) read it, in its JSON
/// mapping: what the test expects comes from them, not from our decoder.
/// `None` when the peer is missing (outside CI).
fn recorded_protobuf() -> Option<(Messages, Vec<Json>)> {
    let lines: Vec<Json> = std::fs::read_to_string(common::repo_path(RECORDED_PROTOBUF))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hex: String = lines
        .iter()
        .map(|v| format!("{}\n", v["payload_hex"].as_str().unwrap()))
        .collect();
    let read = common::peer::peer(
        "python3",
        &["chirpstack_peer.py", "integration"],
        &hex,
        &["-c", "import chirpstack_api.integration"],
    )?;
    let payloads: Vec<Json> = read
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(payloads.len(), lines.len());
    let messages = lines
        .iter()
        .map(|v| {
            (
                v["topic"].as_str().unwrap().to_string(),
                hex::decode(v["payload_hex"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    Some((messages, payloads))
}

/// The tier as `docker compose up` would run it.
fn tier() -> Option<Value> {
    compose::merged(&FILES, &[("CHIRPSTACK_API_SECRET", "only-for-this-test")])
}

/// A TOML file of the tier, parsed by Python's `tomllib` (JSON out).
fn toml(path: &std::path::Path) -> Json {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A devices file naming the devices of `payloads`, keys left to ChirpStack.
fn devices_of<'a>(payloads: impl Iterator<Item = &'a Json>) -> String {
    let devices: BTreeMap<String, String> = payloads
        .map(|p| {
            let info = &p["deviceInfo"];
            let field = |k: &str| info[k].as_str().unwrap().to_string();
            (field("devEui"), field("deviceName"))
        })
        .collect();
    let entries: Vec<DeviceEntry> = devices
        .iter()
        .map(|(eui, name)| DeviceEntry::new(name, Eui64::from_hex(eui).unwrap(), PROFILE))
        .collect();
    device_lorawan::devices::to_yaml(&entries)
}

#[test]
fn the_overlay_gives_chirpstack_qos_1_and_device_lorawan_its_stream() {
    let Some(doc) = tier() else {
        return;
    };
    let config = compose::mounted(
        &doc,
        "device-lorawan",
        "/etc/device-lorawan/configuration.yaml",
    )
    .unwrap();
    assert_eq!(
        config,
        common::repo_path("compose/chirpstack/configuration.yaml")
    );
    let env = compose::environment(&doc);
    let c = Config::load_with_env(Some(&config), |k| env.get(k).cloned()).unwrap();
    assert!(c.ingest.mqtt.enabled && !c.ingest.udp.enabled);
    let subs: Vec<_> = c
        .ingest
        .mqtt
        .subscriptions
        .iter()
        .map(|s| (s.topic.as_str(), s.kind))
        .collect();
    assert_eq!(
        subs,
        [("application/+/device/+/event/up", StreamKind::Application)],
        "ChirpStack's stream only: the gateways' frames are ChirpStack's"
    );
    assert_eq!(c.ingest.mqtt.qos, 1);
    assert_eq!(c.edgex.delivery, Delivery::MessageBus);
    assert!(c.edgex.metadata.enabled);

    // Every file and folder the tier mounts is in the repository.
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with('/') {
                assert!(std::path::Path::new(host).exists(), "{name:?}: {host}");
            }
        }
    }

    // The devices file it mounts loads with the bundled profiles.
    let devices =
        compose::mounted(&doc, "device-lorawan", "/etc/device-lorawan/devices.yaml").unwrap();
    let entries = device_lorawan::devices::load(&devices).unwrap();
    device_lorawan::devices::Registry::build(entries, &common::profiles()).unwrap();

    // ChirpStack's files: every `$NAME` they use is set in its environment,
    // the integration publishes JSON at QoS 1, and the region reads the
    // prefix the gateway bridge publishes on.
    let chirpstack = &doc["services"]["chirpstack"];
    let cs_env: BTreeSet<&str> = chirpstack["environment"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut parsed = BTreeMap::new();
    for file in ["chirpstack.toml", "region_eu868.toml"] {
        let host =
            compose::mounted(&doc, "chirpstack", &format!("/etc/chirpstack/{file}")).unwrap();
        let text: String = std::fs::read_to_string(&host)
            .unwrap()
            .lines()
            .map(|l| l.split('#').next().unwrap().to_string() + "\n")
            .collect();
        for name in text.split('$').skip(1).map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap()
        }) {
            assert!(cs_env.contains(name), "{file}: ${name} is not set");
        }
        parsed.insert(file, toml(&host));
    }
    let main = &parsed["chirpstack.toml"];
    assert_eq!(main["integration"]["enabled"], serde_json::json!(["mqtt"]));
    assert_eq!(main["integration"]["mqtt"]["qos"], 1);
    assert_eq!(main["integration"]["mqtt"]["json"], true);
    let region = &parsed["region_eu868.toml"]["regions"][0];
    assert!(main["network"]["enabled_regions"]
        .as_array()
        .unwrap()
        .contains(&region["id"]));
    let prefix = region["gateway"]["backend"]["mqtt"]["topic_prefix"]
        .as_str()
        .unwrap();
    let bridge = doc["services"]["chirpstack-gateway-bridge"]["environment"]
        ["INTEGRATION__MQTT__EVENT_TOPIC_TEMPLATE"]
        .as_str()
        .unwrap();
    assert!(
        bridge.starts_with(&format!("{prefix}/gateway/")),
        "{bridge}"
    );
}

/// The service as the tier starts it, with the peers around it.
async fn site(devices: &str) -> Option<(common::Mosquitto, BusCore, Metadata, Site)> {
    let doc = tier()?;
    let (broker, core, md) = compose::peers().await?;
    let config = compose::mounted(
        &doc,
        "device-lorawan",
        "/etc/device-lorawan/configuration.yaml",
    )
    .unwrap();
    let site = Site::new(
        compose::environment(&doc),
        &config,
        devices,
        broker.port,
        &md.url(),
        &[],
    );
    Some((broker, core, md, site))
}

fn publisher(port: u16, id: &str) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 16, 1 << 16);
    let (client, mut events) = AsyncClient::new(opts, 1024);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    (client, poller)
}

/// (devEui, fCnt) of a stored event.
fn frame_of(event: &Json) -> (String, u64) {
    let tags = &event["tags"];
    (
        tags["devEui"].as_str().unwrap().to_string(),
        tags["fcnt"].as_str().unwrap().parse().unwrap(),
    )
}

/// Every message a real ChirpStack published, then every one again (QoS 1
/// redelivers after a reconnect): one EdgeX event each, with ChirpStack's
/// reception time, the readings its `data` holds, and the frame ChirpStack
/// delivered out of order under its burst taken, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_chirpstack_events_become_edgex_events_once() {
    let messages = recorded();
    let payloads: Vec<Json> = messages
        .iter()
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    // The recording holds a frame ChirpStack published after its successor.
    let mut highest = BTreeMap::new();
    let mut late = 0;
    for p in &payloads {
        let eui = p["deviceInfo"]["devEui"].as_str().unwrap();
        let fcnt = p["fCnt"].as_u64().unwrap();
        let top = highest.entry(eui).or_insert(fcnt);
        late += usize::from(fcnt < *top);
        *top = fcnt.max(*top);
    }
    assert_eq!(late, 1, "the recording's out-of-order frame");
    replay(&messages, &payloads).await;
}

/// The same with ChirpStack's other marshaler (`[integration.mqtt] json =
/// false`): the protobuf events a real ChirpStack published, through the
/// tier's unchanged configuration (the service tells the two apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_chirpstack_protobuf_events_become_edgex_events_once() {
    let Some((messages, payloads)) = recorded_protobuf() else {
        return;
    };
    assert!(messages.iter().all(|(_, p)| p.first() != Some(&b'{')));
    replay(&messages, &payloads).await;
}

/// `messages` published through mosquitto into the service as the tier
/// starts it, twice: one EdgeX event per message, as `payloads` (each
/// message in ChirpStack's JSON form) say.
async fn replay(messages: &[(String, Vec<u8>)], payloads: &[Json]) {
    let Some((broker, core, _md, site)) = site(&devices_of(payloads.iter())).await else {
        return;
    };
    let mut svc = site.start();
    site.ready(1).await;
    let (client, poller) = publisher(broker.port, "chirpstack-recorded");
    for _ in 0..2 {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
        }
    }
    until(
        "every recorded frame stored",
        Duration::from_secs(20),
        || core.stored() >= messages.len(),
    )
    .await;
    until("every redelivery refused", Duration::from_secs(20), || {
        common::metric(
            site.api,
            "lorawan_inputs_rejected_total{reason=\"retransmission\"}",
        ) >= messages.len() as u64
    })
    .await;
    common::kill9(&mut svc);
    poller.abort();

    let events = core.state.events.lock().unwrap();
    assert!(core.state.invalid.lock().unwrap().is_empty());
    assert_eq!(
        core.state.copies.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let by_frame: BTreeMap<(String, u64), &Json> =
        events.values().map(|e| (frame_of(e), e)).collect();
    assert_eq!(by_frame.len(), messages.len(), "one event per frame");
    for p in payloads {
        let key = (
            p["deviceInfo"]["devEui"].as_str().unwrap().to_string(),
            p["fCnt"].as_u64().unwrap(),
        );
        let event = by_frame
            .get(&key)
            .unwrap_or_else(|| panic!("no event for {key:?}"));
        assert_eq!(event["deviceName"], p["deviceInfo"]["deviceName"]);
        // ChirpStack's `time` (RFC 3339, ns) is the event's origin.
        let time = humantime::parse_rfc3339(p["time"].as_str().unwrap()).unwrap();
        let ns = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(event["origin"].as_u64().unwrap() as u128, ns, "{key:?}");
        // The best of the gateways ChirpStack names, with its own RSSI.
        let rx = p["rxInfo"].as_array().unwrap();
        let tags = &event["tags"];
        assert_eq!(tags["gateways"], rx.len().to_string(), "{key:?}");
        let best = rx
            .iter()
            .find(|r| r["gatewayId"] == tags["gateway"])
            .unwrap_or_else(|| panic!("{key:?}: gateway {} not ChirpStack's", tags["gateway"]));
        assert_eq!(tags["rssi"], best["rssi"].to_string(), "{key:?}");
        // Cayenne LPP channel 1 temperature (0x67, 0.1 °C signed) as sent.
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(p["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(&data[..2], [0x01, 0x67]);
        let want = f64::from(i16::from_be_bytes([data[2], data[3]])) / 10.0;
        let temp = event["readings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resourceName"] == "temperature")
            .unwrap();
        let got: f64 = temp["value"].as_str().unwrap().parse().unwrap();
        assert!((got - want).abs() < 1e-3, "{key:?}: {got} != {want}");
    }
    drop(broker);
}

/// 20,000 frames of 100 devices in ChirpStack's message form, as ChirpStack
/// publishes a burst (now and then a device's frame after its successor),
/// and device-lorawan killed (-9) in the middle and started again: every
/// frame stored by core-data exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_through_a_kill_each_once() {
    const DEVICES: u64 = 100;
    const FRAMES: u64 = 200;
    let (topic0, payload0) = recorded().remove(0);
    let template: Json = serde_json::from_slice(&payload0).unwrap();
    let app = topic0.split('/').nth(1).unwrap().to_string();
    fn eui(d: u64) -> String {
        format!("70b3d57ee{d:07x}")
    }
    let mut order = Vec::new();
    for f in 0..FRAMES {
        for d in 0..DEVICES {
            order.push((d, 1_000 + f));
        }
    }
    // Every 97th frame goes out after the same device's next one.
    for i in (0..order.len() - DEVICES as usize).step_by(97) {
        order.swap(i, i + DEVICES as usize);
    }
    let message = move |d: u64, fcnt: u64| {
        let mut p = template.clone();
        p["deduplicationId"] = format!("00000000-0000-4000-8000-{:012x}", d << 20 | fcnt).into();
        p["deviceInfo"]["devEui"] = eui(d).into();
        p["deviceInfo"]["deviceName"] = format!("cs-{d}").into();
        p["fCnt"] = fcnt.into();
        // LPP: temperature fcnt/10 °C, humidity 50 %.
        let t = (fcnt as i16).to_be_bytes();
        use base64::Engine;
        p["data"] = base64::engine::general_purpose::STANDARD
            .encode([0x01, 0x67, t[0], t[1], 0x02, 0x68, 100])
            .into();
        let topic = format!("application/{app}/device/{}/event/up", eui(d));
        (topic, serde_json::to_vec(&p).unwrap())
    };
    let devices: Vec<Json> = (0..DEVICES)
        .map(|d| serde_json::json!({"deviceInfo": {"devEui": eui(d), "deviceName": format!("cs-{d}")}}))
        .collect();
    let Some((broker, core, _md, site)) = site(&devices_of(devices.iter())).await else {
        return;
    };
    let mut svc = site.start();
    site.ready(1).await;
    let (client, poller) = publisher(broker.port, "chirpstack-burst");
    let total = order.len();
    let sender = tokio::spawn(async move {
        for (d, f) in order {
            let (topic, payload) = message(d, f);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    until("a quarter stored", Duration::from_secs(60), || {
        core.stored() >= total / 4
    })
    .await;
    common::kill9(&mut svc);
    let stored_at_kill = core.stored();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut svc = site.start();
    let _client = sender.await.unwrap();
    until("every frame stored", Duration::from_secs(120), || {
        core.stored() >= total
    })
    .await;
    // Nothing more arrives: a second copy would have been counted by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::kill9(&mut svc);
    poller.abort();
    assert!(stored_at_kill < total, "the kill came mid-stream");

    let events = core.state.events.lock().unwrap();
    assert!(core.state.invalid.lock().unwrap().is_empty());
    let frames: BTreeSet<(String, u64)> = events.values().map(frame_of).collect();
    let want: BTreeSet<(String, u64)> = (0..DEVICES)
        .flat_map(|d| (0..FRAMES).map(move |f| (eui(d), 1_000 + f)))
        .collect();
    assert_eq!(events.len(), total, "one event id per frame");
    assert_eq!(frames, want, "every frame, each once");
    drop(broker);
}

/// A late frame whose payload the codec refuses counts as delivered: frame
/// 1008, frame 1010, frame 1009 (an unknown LPP type), frame 1009 and
/// frame 1008 again (redeliveries) — two events, the codec's refusal
/// counted once, both redeliveries refused. (Counters above the reset
/// window: below it a lower counter is a reset.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_frame_the_codec_refuses_counts_as_delivered() {
    let (topic0, payload0) = recorded().remove(0);
    let mut template: Json = serde_json::from_slice(&payload0).unwrap();
    let Some((broker, core, _md, site)) = site(&devices_of([&template].into_iter())).await else {
        return;
    };
    let mut svc = site.start();
    site.ready(1).await;
    let (client, poller) = publisher(broker.port, "chirpstack-codec");
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (fcnt, data) in [
        (1008, b64(&[0x01, 0x67, 0x00, 0xf0])),
        (1010, b64(&[0x01, 0x67, 0x00, 0xf1])),
        (1009, b64(&[0x01, 0xee, 0x00])),
        (1009, b64(&[0x01, 0xee, 0x00])),
        (1008, b64(&[0x01, 0x67, 0x00, 0xf0])),
    ] {
        template["fCnt"] = fcnt.into();
        template["data"] = data.into();
        client
            .publish(&topic0, QoS::AtLeastOnce, false, template.to_string())
            .await
            .unwrap();
    }
    until("the redelivery refused", Duration::from_secs(20), || {
        common::metric(
            site.api,
            "lorawan_inputs_rejected_total{reason=\"retransmission\"}",
        ) >= 1
    })
    .await;
    assert_eq!(
        common::metric(site.api, "lorawan_inputs_rejected_total{reason=\"codec\"}"),
        1
    );
    until("both events", Duration::from_secs(10), || {
        core.stored() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::kill9(&mut svc);
    poller.abort();
    let frames: BTreeSet<u64> = core
        .state
        .events
        .lock()
        .unwrap()
        .values()
        .map(|e| frame_of(e).1)
        .collect();
    assert_eq!(frames, [1008, 1010].into());
    assert_eq!(
        core.state.copies.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(broker);
}

/// EdgeX commands for devices behind ChirpStack go to ChirpStack's device
/// queue (`command/down` of its MQTT integration), in the marshaler the
/// device's uplinks came in, as ChirpStack's own definitions read them: a
/// command given before the device was first heard waits for its first
/// uplink; once the route is known, a command goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_to_chirpstack_device_queue() {
    let Some((protobuf, pb_payloads)) = recorded_protobuf() else {
        return;
    };
    let json = recorded();
    let json_payloads: Vec<Json> = json
        .iter()
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    let Some((broker, _core, _md, site)) =
        site(&devices_of(json_payloads.iter().chain(&pb_payloads))).await
    else {
        return;
    };
    let mut svc = site.start();
    site.ready(1).await;

    // Commands as ChirpStack would receive them.
    let mut opts = MqttOptions::new("chirpstack-commands", "127.0.0.1", broker.port);
    opts.set_max_packet_size(1 << 16, 1 << 16);
    let (sub, mut events) = AsyncClient::new(opts, 64);
    sub.subscribe("application/+/device/+/command/down", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                let _ = got_tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (client, poller) = publisher(broker.port, "chirpstack-recorded");
    let put = |name: &str, seconds: u16| {
        let path = format!("/api/v3/device/name/{name}/reportInterval");
        let body = format!(r#"{{"reportInterval":"{seconds}"}}"#);
        async move {
            let (status, answer) = common::http(site.api, "PUT", &path, &body).await;
            assert_eq!(status, 200, "{answer}");
        }
    };

    // JSON: the first recorded device, commanded before it was heard.
    let (topic, payload) = &json[0];
    let device = &json_payloads[0]["deviceInfo"];
    put(device["deviceName"].as_str().unwrap(), 300).await;
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    let (json_topic, json_cmd) = next_command(&mut got).await;
    assert_eq!(json_topic, topic.replace("/event/up", "/command/down"));

    // Protobuf: a device heard first, then commanded: at once.
    let i = pb_payloads
        .iter()
        .position(|p| p["deviceInfo"]["devEui"] != device["devEui"])
        .unwrap();
    let (topic, payload) = &protobuf[i];
    let pb_device = &pb_payloads[i]["deviceInfo"];
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    until("the protobuf uplink taken", Duration::from_secs(10), || {
        common::metric(site.api, "lorawan_uplinks_published_total") >= 2
    })
    .await;
    put(pb_device["deviceName"].as_str().unwrap(), 3600).await;
    let (pb_topic, pb_cmd) = next_command(&mut got).await;
    assert_eq!(pb_topic, topic.replace("/event/up", "/command/down"));
    common::kill9(&mut svc);
    poller.abort();
    listener.abort();

    // Read by ChirpStack's definitions: JSON strictly, protobuf.
    let lines = [("json", &json_cmd), ("protobuf", &pb_cmd)]
        .iter()
        .map(|(kind, p)| format!(r#"{{"kind":"{kind}","payload":"{}"}}"#, hex::encode(p)))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let read = common::peer::peer(
        "python3",
        &["chirpstack_peer.py", "command"],
        &lines,
        &["-c", "import chirpstack_api.integration"],
    )
    .expect("checked by recorded_protobuf");
    let read: Vec<Json> = read
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    assert_eq!(json_cmd.first(), Some(&b'{'));
    assert_eq!(read[0]["devEui"], device["devEui"]);
    assert_eq!(read[0]["fPort"], 2);
    assert_eq!(read[0]["data"], b64(&300u16.to_be_bytes()));
    assert_ne!(pb_cmd.first(), Some(&b'{'));
    assert_eq!(read[1]["devEui"], pb_device["devEui"]);
    assert_eq!(read[1]["fPort"], 2);
    assert_eq!(read[1]["data"], b64(&3600u16.to_be_bytes()));
    // Unconfirmed, as the profile's command is (protobuf's JSON omits false).
    assert!(read.iter().all(|c| c.get("confirmed").is_none()));
    drop(broker);
}

/// The next command published for ChirpStack (bounded wait).
async fn next_command(
    got: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .expect("a command for ChirpStack")
        .unwrap()
}
