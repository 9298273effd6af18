//! Discovery the device-sdk way: an OTAA mote no device has sends
//! JoinRequests; `POST /api/v3/discovery` matches it against a provision
//! watcher (a DevEUI prefix, one DevEUI blocked), adds it to core-metadata
//! (the OpenAPI-validating stand-in), and once its AppKey arrives as a
//! secret it joins and its readings flow.

mod common;

use std::time::Duration;

use device_lorawan::lorawan::region::MacVersionName;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 83;

const WATCHER: &str = r#"
name: "sim-otaa-motes"
identifiers: { DevEUI: "^70B3D57ED001", Activation: "OTAA" }
blockingIdentifiers: { DevEUI: ["70b3d57ed0010002"] }
adminState: "UNLOCKED"
discoveredDevice: { profileName: "Dragino-LPP-Mote", adminState: "UNLOCKED" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_otaa_device_is_discovered_added_and_joins() {
    let md = common::metadata::Metadata::start().await;
    let data = tempfile::tempdir().unwrap();
    let watchers = data.path().join("watchers");
    std::fs::create_dir(&watchers).unwrap();
    std::fs::write(watchers.join("sim.yaml"), WATCHER).unwrap();
    let mut config = common::config(data.path());
    config.devices.discovery.enabled = true;
    config.devices.provision_watchers_dir = Some(watchers);
    config.service.host = "127.0.0.1".into();
    config.edgex.metadata.enabled = true;
    config.edgex.metadata.url = md.url();
    let mut svc = common::Service::start(config, mote::entries(1, SEED)).await;
    let api = svc.bound.api;
    let udp = svc.bound.udp.unwrap();

    // The watcher is registered with core-metadata, as device-sdk-go does.
    common::until(
        "the watcher in core-metadata",
        Duration::from_secs(10),
        || {
            md.state
                .watchers
                .lock()
                .unwrap()
                .contains_key("sim-otaa-motes")
        },
    )
    .await;
    assert_eq!(
        md.state.watchers.lock().unwrap()["sim-otaa-motes"]["serviceName"],
        "device-lorawan"
    );

    // Two unknown motes ask to join (nothing answers them yet).
    let motes = mote::otaa_entries(2, SEED, MacVersionName::V1_0_3);
    let opts = |otaa: usize, frames: u64| SimOptions {
        devices: 0,
        otaa_devices: otaa,
        gateways: 1,
        rate: 20.0,
        frames: Some(frames),
        seed: SEED,
        linger: Duration::from_secs(1),
        ..Default::default()
    };
    let unheard = tokio::spawn(sim::run(
        Target::Udp(udp),
        opts(2, 2),
        std::future::pending(),
    ));
    common::until(
        "both JoinRequests refused as unknown",
        Duration::from_secs(10),
        || {
            svc.metrics
                .rejected_count(device_lorawan::metrics::Reason::UnknownDevEui)
                >= 2
        },
    )
    .await;
    unheard.abort();

    // Discovery: the watched one is admitted, the blocked one is not.
    let (status, body) = common::http(api, "POST", "/api/v3/discovery", "").await;
    assert_eq!(status, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        uuid::Uuid::parse_str(v["requestId"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    let name = "lorawan-70b3d57ed0010001";
    common::until(
        "the device in core-metadata",
        Duration::from_secs(10),
        || md.state.devices.lock().unwrap().contains_key(name),
    )
    .await;
    let dev = md.state.devices.lock().unwrap()[name].clone();
    assert_eq!(dev["profileName"], "Dragino-LPP-Mote");
    assert_eq!(dev["protocols"]["lorawan"]["DevEUI"], "70b3d57ed0010001");
    assert_eq!(dev["protocols"]["lorawan"]["Activation"], "OTAA");
    assert!(!md
        .state
        .devices
        .lock()
        .unwrap()
        .contains_key("lorawan-70b3d57ed0010002"));
    assert!(
        md.state.invalid.lock().unwrap().is_empty(),
        "{:?}",
        md.state.invalid.lock().unwrap()
    );
    let key = hex::encode(motes[0].app_key.unwrap().expose());
    assert!(
        md.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| !r.contains(&key)),
        "no key to core-metadata"
    );

    // Its AppKey arrives the EdgeX way: it joins, and its readings flow.
    let secret = format!(
        r#"{{"apiVersion":"v3","secretName":"{name}","secretData":[{{"key":"AppKey","value":"{key}"}}]}}"#
    );
    let (status, body) = common::http(api, "POST", "/api/v3/secret", &secret).await;
    assert_eq!(status, 201, "{body}");
    let report = sim::run(Target::Udp(udp), opts(1, 16), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.joins.len(), 1, "{:?}", report.joins);
    let sent = report.expected.len();
    assert!(sent >= 4, "{sent} data frames");
    svc.wait_published(sent as u64, Duration::from_secs(10))
        .await;
    let got = svc.stop().await;
    assert_eq!(got.iter().filter(|u| &*u.device == name).count(), sent);
    assert_eq!(
        svc.metrics
            .devices_discovered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// Discovery switched off answers 503 (as device-sdk-go does); stopping an
/// unknown request is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_off_and_unknown_requests() {
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(common::config(data.path()), mote::entries(1, SEED)).await;
    let api = svc.bound.api;
    assert_eq!(
        common::http(api, "POST", "/api/v3/discovery", "").await.0,
        503
    );
    assert_eq!(
        common::http(
            api,
            "DELETE",
            "/api/v3/discovery/requestId/0f8fad5b-d9cb-469f-a165-70867728950e",
            ""
        )
        .await
        .0,
        404
    );
    assert_eq!(
        common::http(api, "DELETE", "/api/v3/discovery", "").await.0,
        200
    );
    svc.stop().await;
}
