//! Devices from EdgeX: a device a third party adds in core-metadata for this
//! service (a system event on the bus, as core-metadata publishes it) waits
//! for its keys, decodes once its secret arrives, changes profile live on
//! an update, and stops on a delete; one that the devices file also defines
//! is reported, and the file wins.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::requester::Requester;
use common::until;
use device_lorawan::config::Delivery;
use device_lorawan::metrics::Reason;
use device_lorawan::sim::mote;

const SEED: u64 = 47;

fn event(action: &str, device: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"apiVersion": "v3", "receivedTopic": "",
        "correlationID": uuid::Uuid::new_v4(), "requestID": uuid::Uuid::new_v4(),
        "errorCode": 0, "contentType": "application/json",
        "payload": {"apiVersion": "v3", "type": "device", "action": action,
            "source": "core-metadata", "owner": "device-lorawan", "details": device}}))
    .unwrap()
}

/// A `SecretRequest` carrying `m`'s ABP session keys under `name`.
fn abp_secret(name: &str, m: &device_lorawan::devices::DeviceEntry) -> String {
    format!(
        r#"{{"apiVersion":"v3","secretName":"{name}","secretData":[
            {{"key":"NwkSKey","value":"{}"}},{{"key":"AppSKey","value":"{}"}}]}}"#,
        hex::encode(m.nwk_s_key.unwrap().expose()),
        hex::encode(m.app_s_key.unwrap().expose())
    )
}

/// Every frame the simulator sent as `sim` (at least two) was published
/// once under `name`.
fn decoded_as(
    report: &device_lorawan::sim::SimReport,
    got: &[device_lorawan::pipeline::uplink::Uplink],
    names: &[(&str, &str)],
) {
    for (name, sim) in names {
        let sent = report.expected.iter().filter(|e| e.device == *sim).count();
        assert!(sent >= 2, "{sim} sent {sent}");
        let published = got.iter().filter(|u| &*u.device == *name).count();
        assert_eq!(published, sent, "{name}");
    }
}

/// Wait until `path` answers 404.
async fn gone(api: std::net::SocketAddr, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = common::http(api, "GET", path, "").await;
        if status == 404 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn topic(action: &str, profile: &str) -> String {
    format!("edgex/system-events/core-metadata/device/{action}/device-lorawan/{profile}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_in_core_metadata_is_served_changed_and_dropped_live() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let motes = mote::entries(2, SEED);
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.edgex.delivery = Delivery::MessageBus;
    config.edgex.message_bus.host = "127.0.0.1".into();
    config.edgex.message_bus.port = Some(broker.port);
    config.edgex.message_bus.client_id = "edgex-devices-test".into();
    // Only the first mote is in the devices file.
    let mut svc = common::Service::start(config, motes[..1].to_vec()).await;
    let api = svc.bound.api;
    let udp = svc.bound.udp.unwrap();
    let metadata = Requester::start(broker.port).await;

    // Added by a third party, named its own way, keys in a secret of its own.
    let second = &motes[1];
    let dto = |profile: &str, codec: &str| {
        serde_json::json!({"name": "field-sensor-2", "serviceName": "device-lorawan",
            "profileName": profile, "adminState": "UNLOCKED", "operatingState": "UP",
            "protocols": {"lorawan": {"DevEUI": second.dev_eui.to_string(),
                "DevAddr": second.dev_addr.unwrap().to_string(), "Activation": "ABP",
                "Codec": codec, "SecretName": "field-sensor-2-keys"}}})
    };
    let add = event("add", dto("Dragino-LPP-Mote", "cayenne-lpp"));
    // The service's subscription may be younger than this test's: repeat
    // the event until it is counted (a duplicate add is an update).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while svc.metrics.system_events.load(Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no system event counted"
        );
        metadata
            .publish(&topic("add", "Dragino-LPP-Mote"), add.clone())
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Waiting for its keys (and shown so): its frames are not decoded.
    let (status, shown) =
        common::http(api, "GET", "/api/v3/lorawan/device/field-sensor-2", "").await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        shown.contains("waiting-for-keys") && shown.contains("field-sensor-2-keys"),
        "{shown}"
    );
    common::sim_udp(udp, SEED, 4, 0).await;
    svc.wait_published(2, Duration::from_secs(10)).await;
    until(
        "the second mote's frames refused",
        Duration::from_secs(10),
        || svc.metrics.rejected_count(Reason::UnknownDevAddr) >= 2,
    )
    .await;

    let secret = abp_secret("field-sensor-2-keys", second);
    let (status, body) = common::http(api, "POST", "/api/v3/secret", &secret).await;
    assert_eq!(status, 201, "{body}");
    let (_, shown) = common::http(api, "GET", "/api/v3/lorawan/device/field-sensor-2", "").await;
    assert!(shown.contains("\"served\""), "{shown}");
    let report = common::sim_udp(udp, SEED, 6, 4).await;
    let from_second = report
        .expected
        .iter()
        .filter(|e| e.device == "sim-mote-2")
        .count();
    assert!(from_second >= 2, "{from_second}");
    let before = svc.metrics.published.load(Relaxed);
    svc.wait_published(
        before.max(2 + report.expected.len() as u64),
        Duration::from_secs(10),
    )
    .await;
    // Commands reach it as they reach a devices-file device (core-command
    // calls these): its last values, a setting queued as a downlink.
    let climate = "/api/v3/device/name/field-sensor-2/climate";
    let (status, body) = common::http(api, "GET", climate, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""deviceName":"field-sensor-2""#), "{body}");
    let interval = "/api/v3/device/name/field-sensor-2/reportInterval";
    let (status, body) = common::http(api, "PUT", interval, r#"{"reportInterval":"300"}"#).await;
    assert_eq!(status, 200, "{body}");

    // An update: another profile and codec, live.
    metadata
        .publish(
            &topic("update", "Raw-Payload-Mote"),
            event("update", dto("Raw-Payload-Mote", "raw")),
        )
        .await;
    until("the update counted", Duration::from_secs(10), || {
        svc.metrics.system_events.load(Relaxed) >= 2
    })
    .await;
    // The new profile has no climate (the pipeline applies it a moment
    // after the event).
    gone(api, climate).await;
    let report2 = common::sim_udp(udp, SEED, 4, 10).await;
    let published = svc.metrics.published.load(Relaxed);
    svc.wait_published(
        published + report2.expected.len() as u64 - 4,
        Duration::from_secs(10),
    )
    .await;

    // A delete: its frames are unknown again.
    metadata
        .publish(
            &topic("delete", "Raw-Payload-Mote"),
            event("delete", dto("Raw-Payload-Mote", "raw")),
        )
        .await;
    until("the delete counted", Duration::from_secs(10), || {
        svc.metrics.system_events.load(Relaxed) >= 3
    })
    .await;
    gone(api, climate).await;
    let refused = svc.metrics.rejected_count(Reason::UnknownDevAddr);
    common::sim_udp(udp, SEED, 4, 14).await;
    until(
        "the deleted device's frames refused",
        Duration::from_secs(10),
        || svc.metrics.rejected_count(Reason::UnknownDevAddr) >= refused + 2,
    )
    .await;

    // A device the devices file defines too: the file wins, reported.
    let mut clash = dto("Dragino-LPP-Mote", "cayenne-lpp");
    clash["name"] = "someone-elses-name".into();
    clash["protocols"]["lorawan"]["DevEUI"] = motes[0].dev_eui.to_string().into();
    metadata
        .publish(&topic("add", "Dragino-LPP-Mote"), event("add", clash))
        .await;
    until("the conflict counted", Duration::from_secs(10), || {
        svc.metrics.device_conflicts.load(Relaxed) >= 1
    })
    .await;

    let got = svc.stop().await;
    let second_lpp: Vec<_> = got
        .iter()
        .filter(|u| &*u.device == "field-sensor-2")
        .collect();
    let lpp = second_lpp
        .iter()
        .filter(|u| u.profile.name == "Dragino-LPP-Mote")
        .count();
    let raw = second_lpp
        .iter()
        .filter(|u| u.profile.name == "Raw-Payload-Mote")
        .count();
    assert_eq!(
        lpp, from_second,
        "decoded under its EdgeX name once its keys arrived"
    );
    assert!(raw >= 1, "decoded with the new profile after the update");
    assert!(
        got.iter().all(|u| &*u.device != "sim-mote-2"),
        "never under the sim's name"
    );
}

/// Devices core-metadata already holds for us at start (added in the UI
/// while the service was away) and devices of a definition file
/// (`Devices.DevicesDir`, the SDK's `deviceList`, registered with
/// core-metadata at start) are served once their secrets arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_files_and_devices_already_in_core_metadata_are_served() {
    let md = common::metadata::Metadata::start().await;
    let motes = mote::entries(3, SEED + 1);
    let lorawan = |m: &device_lorawan::devices::DeviceEntry| serde_json::json!({"DevEUI": m.dev_eui.to_string(), "DevAddr": m.dev_addr.unwrap().to_string()});
    md.state.devices.lock().unwrap().insert(
        "from-the-ui".into(),
        serde_json::json!({"name": "from-the-ui", "serviceName": "device-lorawan",
            "profileName": "Dragino-LPP-Mote", "adminState": "UNLOCKED", "operatingState": "UP",
            "protocols": {"lorawan": lorawan(&motes[1])}}),
    );
    let data = tempfile::tempdir().unwrap();
    let defs = data.path().join("devices.d");
    std::fs::create_dir(&defs).unwrap();
    std::fs::write(
        defs.join("field.yaml"),
        format!(
            "deviceList:\n  - name: from-a-file\n    profileName: Dragino-LPP-Mote\n    labels: [field]\n    protocols:\n      lorawan: {}\n",
            lorawan(&motes[2])
        ),
    )
    .unwrap();
    let mut config = common::config(data.path());
    config.service.host = "127.0.0.1".into();
    config.devices.devices_dir = Some(defs);
    config.edgex.metadata.enabled = true;
    config.edgex.metadata.url = md.url();
    let mut svc = common::Service::start(config, motes[..1].to_vec()).await;
    let api = svc.bound.api;
    until("the definition registered", Duration::from_secs(10), || {
        md.state.devices.lock().unwrap().contains_key("from-a-file")
    })
    .await;
    assert!(
        md.state.invalid.lock().unwrap().is_empty(),
        "{:?}",
        md.state.invalid.lock().unwrap()
    );
    until(
        "core-metadata asked for our devices",
        Duration::from_secs(10),
        || {
            md.state
                .requests
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.starts_with("GET /api/v3/device/service/name/device-lorawan"))
        },
    )
    .await;
    for (name, m) in [("from-the-ui", &motes[1]), ("from-a-file", &motes[2])] {
        let secret = abp_secret(name, m);
        let (status, body) = common::http(api, "POST", "/api/v3/secret", &secret).await;
        assert_eq!(status, 201, "{body}");
    }
    let report = common::sim_udp(svc.bound.udp.unwrap(), SEED + 1, 9, 0).await;
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    let got = svc.stop().await;
    decoded_as(
        &report,
        &got,
        &[("from-the-ui", "sim-mote-2"), ("from-a-file", "sim-mote-3")],
    );
}

/// A device silent for its expected uplinks goes DOWN in core-metadata (an
/// OpenAPI-valid `PATCH /api/v3/device`), and UP at its next uplink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_goes_down_and_comes_back_up() {
    let md = common::metadata::Metadata::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.service.host = "127.0.0.1".into();
    config.edgex.metadata.enabled = true;
    config.edgex.metadata.url = md.url();
    config.devices.operating_state.missed_uplinks = 2;
    config.devices.operating_state.uplink_interval = Some(Duration::from_millis(400));
    let mut svc = common::Service::start(config, mote::entries(1, SEED + 2)).await;
    let state = |md: &common::metadata::Metadata| {
        md.state
            .devices
            .lock()
            .unwrap()
            .get("sim-mote-1")
            .map(|d| d["operatingState"].clone())
    };
    until("the device registered", Duration::from_secs(10), || {
        state(&md).is_some()
    })
    .await;
    common::sim_udp(svc.bound.udp.unwrap(), SEED + 2, 2, 0).await;
    until(
        "DOWN after two silent intervals",
        Duration::from_secs(10),
        || state(&md) == Some("DOWN".into()),
    )
    .await;
    assert_eq!(svc.metrics.devices_down.load(Relaxed), 1);
    common::sim_udp(svc.bound.udp.unwrap(), SEED + 2, 1, 2).await;
    until("UP at its next uplink", Duration::from_secs(10), || {
        state(&md) == Some("UP".into())
    })
    .await;
    assert!(
        md.state.invalid.lock().unwrap().is_empty(),
        "{:?}",
        md.state.invalid.lock().unwrap()
    );
    assert!(svc.metrics.operating_state_changes.load(Relaxed) >= 2);
    svc.stop().await;
}

/// Telemetry as device-sdk-go publishes it: `EventsSent`, `ReadingsSent`
/// and per-device `LastConnected` Metric DTOs on
/// `edgex/telemetry/device-lorawan/<metric>`, each switchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_on_the_bus() {
    use rumqttc::{Event, MqttOptions, Packet, QoS};
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let (client, mut el) = rumqttc::AsyncClient::new(
        MqttOptions::new("telemetry-listener", "127.0.0.1", broker.port),
        64,
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(String, serde_json::Value)>::new(),
    ));
    let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, sub) = (seen.clone(), subscribed.clone());
    let listener = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("edgex/telemetry/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => sub.store(true, Relaxed),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    s.lock().unwrap().push((p.topic.clone(), v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    until(
        "the listener's subscription",
        Duration::from_secs(10),
        || subscribed.load(Relaxed),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.edgex.delivery = Delivery::MessageBus;
    config.edgex.message_bus.host = "127.0.0.1".into();
    config.edgex.message_bus.port = Some(broker.port);
    config.edgex.message_bus.client_id = "telemetry-test".into();
    config.edgex.telemetry.interval = Duration::from_millis(200);
    config
        .edgex
        .telemetry
        .metrics
        .insert("LastConnected".into(), true);
    config
        .edgex
        .telemetry
        .metrics
        .insert("ReadingsSent".into(), false);
    config
        .edgex
        .telemetry
        .tags
        .insert("site".into(), "field-3".into());
    let mut svc = common::Service::start(config, mote::entries(3, SEED + 3)).await;
    let report = common::sim_udp(svc.bound.udp.unwrap(), SEED + 3, 4, 0).await;
    let sent = report.expected.len() as i64;
    svc.wait_published(sent as u64, Duration::from_secs(10))
        .await;
    let payload = |topic: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _)| t == topic)
            .map(|(_, v)| v["payload"].clone())
    };
    until(
        "EventsSent counting every uplink",
        Duration::from_secs(10),
        || {
            payload("edgex/telemetry/device-lorawan/EventsSent")
                .is_some_and(|m| m["fields"][0]["value"].as_i64() == Some(sent))
        },
    )
    .await;
    let m = payload("edgex/telemetry/device-lorawan/EventsSent").unwrap();
    assert_eq!(m["apiVersion"], "v3");
    assert_eq!(m["name"], "EventsSent");
    assert_eq!(m["fields"][0]["name"], "counter-count");
    let tags = m["tags"].as_array().unwrap();
    assert!(
        tags.contains(&serde_json::json!({"name": "service", "value": "device-lorawan"})),
        "{m}"
    );
    assert!(
        tags.contains(&serde_json::json!({"name": "site", "value": "field-3"})),
        "{m}"
    );
    assert!(m["timestamp"].as_i64().unwrap() > 0);
    until(
        "LastConnected for both motes",
        Duration::from_secs(10),
        || {
            let s = seen.lock().unwrap();
            let devices: std::collections::BTreeSet<String> = s
                .iter()
                .filter(|(t, _)| t == "edgex/telemetry/device-lorawan/LastConnected")
                .filter_map(|(_, v)| {
                    v["payload"]["tags"]
                        .as_array()?
                        .iter()
                        .find(|t| t["name"] == "device")
                        .and_then(|t| t["value"].as_str().map(str::to_owned))
                })
                .collect();
            devices.len() == 3
        },
    )
    .await;
    assert!(
        payload("edgex/telemetry/device-lorawan/ReadingsSent").is_none(),
        "switched off"
    );
    svc.stop().await;
    listener.abort();
}

/// EdgeX secure mode: secrets are kept in the EdgeX secret store (KV at
/// `/v1/secret/edgex/<service>/<name>`, the service's own token), never on
/// this service's disk. A devices-file device without keys takes its
/// session from the store at start; a definition-file device starts the
/// moment an operator puts its keys in the store; a secret posted to the
/// API lands in the store; the store down is a 500 and a counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_keeps_keys_in_the_edgex_secret_store() {
    let data = tempfile::tempdir().unwrap();
    let mut store =
        common::secret_store::SecretStore::start(data.path(), "hvs.device-lorawan-token").await;
    let motes = mote::entries(3, SEED + 3);
    let pairs = |m: &device_lorawan::devices::DeviceEntry| {
        vec![
            ("DevAddr", m.dev_addr.unwrap().to_string()),
            ("NwkSKey", hex::encode(m.nwk_s_key.unwrap().expose())),
            ("AppSKey", hex::encode(m.app_s_key.unwrap().expose())),
        ]
    };
    store.put("edgex/device-lorawan/sim-mote-1", &pairs(&motes[0]));
    let defs = data.path().join("devices.d");
    std::fs::create_dir(&defs).unwrap();
    let mut list = String::from("deviceList:\n");
    for (name, m) in [("from-the-store", &motes[1]), ("from-the-api", &motes[2])] {
        list += &format!(
            "  - name: {name}\n    profileName: Dragino-LPP-Mote\n    protocols:\n      lorawan: {{DevEUI: \"{}\", DevAddr: \"{}\"}}\n",
            m.dev_eui,
            m.dev_addr.unwrap()
        );
    }
    std::fs::write(defs.join("field.yaml"), list).unwrap();
    let mut config = common::config(data.path());
    store.configure(&mut config);
    // The API gateway checks JWTs in this deployment (EdgeX's switch).
    config.secret_store.disable_jwt_validation = true;
    config.secret_store.key_poll = Duration::from_secs(1);
    config.devices.devices_dir = Some(defs);
    // The devices file holds the first mote without its keys.
    let keyless = device_lorawan::devices::DeviceEntry {
        dev_addr: None,
        nwk_s_key: None,
        app_s_key: None,
        ..motes[0].clone()
    };
    let mut svc = common::Service::start(config, vec![keyless]).await;
    let api = svc.bound.api;
    let state = |name: &'static str| async move {
        let (_, body) =
            common::http(api, "GET", &format!("/api/v3/lorawan/device/{name}"), "").await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["state"].clone()
    };
    assert_eq!(state("from-the-store").await, "waiting-for-keys");
    store.put("edgex/device-lorawan/from-the-store", &pairs(&motes[1]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state("from-the-store").await != "served" {
        assert!(
            std::time::Instant::now() < deadline,
            "keys in the store never read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = abp_secret("from-the-api", &motes[2]);
    let (status, body) = common::http(api, "POST", "/api/v3/secret", &secret).await;
    assert_eq!(status, 201, "{body}");
    let kept = store
        .get("edgex/device-lorawan/from-the-api")
        .expect("stored in the store");
    assert_eq!(
        kept["NwkSKey"],
        hex::encode(motes[2].nwk_s_key.unwrap().expose())
    );

    let report = common::sim_udp(svc.bound.udp.unwrap(), SEED + 3, 9, 0).await;
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;

    // The store away: a secret cannot be kept, so it is refused.
    store.stop();
    let other = r#"{"apiVersion":"v3","secretName":"broker","secretData":[{"key":"password","value":"s3cr3t-broker-pw"}]}"#;
    let (status, body) = common::http(api, "POST", "/api/v3/secret", other).await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("s3cr3t"), "{body}");
    assert!(svc.metrics.secret_store_errors.load(Relaxed) >= 1);
    let got = svc.stop().await;
    decoded_as(
        &report,
        &got,
        &[
            ("sim-mote-1", "sim-mote-1"),
            ("from-the-store", "sim-mote-2"),
            ("from-the-api", "sim-mote-3"),
        ],
    );
    // No key reached this service's disk.
    let mut files = vec![data.path().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p != store.token_file {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_lowercase();
            for m in &motes {
                let key = hex::encode(m.nwk_s_key.unwrap().expose());
                assert!(!text.contains(&key), "a key in {}", p.display());
            }
        }
    }
}
