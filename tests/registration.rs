//! Registration through core-metadata against a stand-in that answers as
//! the real one does (207 multi-status, item by item) and validates every
//! request item against the official OpenAPI schemas: the device service
//! created and later updated, every bundled profile added or replaced,
//! devices added with their LoRaWAN addresses and never their keys, one
//! refused device that does not stop the others; and core-metadata down at
//! start, with ingest going on and registration retried.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::metadata::Metadata;
use common::until;
use device_lorawan::devices::DeviceEntry;
use device_lorawan::sim::mote;
use serde_json::json;

fn config_for(data: &std::path::Path, metadata: &Metadata) -> device_lorawan::config::Config {
    let mut c = common::config(data);
    c.service.host = "127.0.0.1".into();
    c.edgex.metadata.enabled = true;
    c.edgex.metadata.url = metadata.url();
    c.edgex.metadata.timeout = Duration::from_secs(1);
    c
}

fn keys_hex(entries: &[DeviceEntry]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| [&e.nwk_s_key, &e.app_s_key])
        .flatten()
        .map(|k| hex::encode(k.expose()))
        .collect()
}

fn assert_no_keys_sent(md: &Metadata, entries: &[DeviceEntry]) {
    let requests = md.state.requests.lock().unwrap();
    assert!(!requests.is_empty());
    for key in keys_hex(entries) {
        for r in requests.iter() {
            assert!(
                !r.to_lowercase().contains(&key),
                "a session key was sent to core-metadata"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_service_profiles_and_devices() {
    let md = Metadata::start().await;
    let entries = mote::entries(4, 41);
    // Already there: one profile (replaced with PUT) and one device (left).
    md.state.profiles.lock().unwrap().insert(
        "Dragino-LPP-Mote".into(),
        json!({"name": "Dragino-LPP-Mote", "deviceResources": []}),
    );
    md.state.devices.lock().unwrap().insert(
        entries[0].name.clone(),
        json!({"name": entries[0].name, "profileName": "Dragino-LPP-Mote"}),
    );
    md.state
        .refuse_devices
        .lock()
        .unwrap()
        .insert(entries[3].name.clone());

    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(config_for(data.path(), &md), entries.clone()).await;
    until("registration", Duration::from_secs(10), || {
        svc.metrics.registered.load(Relaxed) == 1
    })
    .await;
    let port = svc.bound.api.port();
    svc.stop().await;

    let invalid = md.state.invalid.lock().unwrap().clone();
    assert!(invalid.is_empty(), "schema failures: {invalid:#?}");
    let service = md.state.services.lock().unwrap()["device-lorawan"].clone();
    assert_eq!(service["baseAddress"], format!("http://127.0.0.1:{port}"));
    assert_eq!(service["adminState"], "UNLOCKED");

    let profiles = md.state.profiles.lock().unwrap().clone();
    for name in common::profiles().keys() {
        assert!(profiles.contains_key(name), "profile {name} uploaded");
    }
    assert!(
        !profiles["Dragino-LPP-Mote"]["deviceResources"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the existing profile was replaced (PUT after 409)"
    );

    let devices = md.state.devices.lock().unwrap().clone();
    assert_eq!(
        devices.len(),
        3,
        "three of four: the refused one is missing"
    );
    assert!(!devices.contains_key(&entries[3].name));
    assert!(
        devices[&entries[0].name].get("protocols").is_none(),
        "an existing device is left as it was"
    );
    for e in &entries[1..3] {
        let d = &devices[&e.name];
        assert_eq!(d["serviceName"], "device-lorawan");
        assert_eq!(d["profileName"], e.profile);
        let lw = &d["protocols"]["lorawan"];
        assert_eq!(lw["DevEUI"], e.dev_eui.to_string());
        assert_eq!(lw["DevAddr"], e.dev_addr.unwrap().to_string());
        assert_eq!(lw["Class"], "A");
    }
    assert_no_keys_sent(&md, &entries);

    // A second start finds the service and updates its address (PATCH).
    let data2 = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(config_for(data2.path(), &md), entries.clone()).await;
    until("registration again", Duration::from_secs(10), || {
        svc.metrics.registered.load(Relaxed) == 1
    })
    .await;
    let port2 = svc.bound.api.port();
    svc.stop().await;
    let requests = md.state.requests.lock().unwrap().clone();
    assert!(requests
        .iter()
        .any(|r| r.starts_with("PATCH /api/v3/deviceservice ")));
    assert_eq!(
        md.state.services.lock().unwrap()["device-lorawan"]["baseAddress"],
        format!("http://127.0.0.1:{port2}")
    );
    assert!(md.state.invalid.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_down_at_start_ingest_goes_on_and_registration_retries() {
    let mut md = Metadata::start().await;
    md.stop();
    let entries = mote::entries(3, 42);
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(config_for(data.path(), &md), entries.clone()).await;
    let report = common::sim_udp(svc.bound.udp.unwrap(), 42, 9, 0).await;
    svc.wait_published(9, Duration::from_secs(10)).await;
    until("a failed registration", Duration::from_secs(10), || {
        svc.metrics.registration_errors.load(Relaxed) > 0
    })
    .await;
    assert_eq!(svc.metrics.registered.load(Relaxed), 0);

    md.restart().await;
    until(
        "registration after the outage",
        Duration::from_secs(15),
        || svc.metrics.registered.load(Relaxed) == 1,
    )
    .await;
    let got = svc.stop().await;
    common::assert_exactly(&report, &got);
    assert_eq!(md.state.devices.lock().unwrap().len(), 3);
    assert_no_keys_sent(&md, &entries);
}

/// core-metadata finds one profile invalid: the rest is registered, the
/// devices of that profile are refused with its reason (not sent), the API
/// shows each item's state, and `POST /api/v3/registration` tries again
/// once core-metadata would take it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_profile_leaves_the_rest_registered() {
    let md = Metadata::start().await;
    md.state
        .refuse_profiles
        .lock()
        .unwrap()
        .insert("Raw-Payload-Mote".into());
    let mut entries = mote::entries(3, 43);
    entries[2].profile = "Raw-Payload-Mote".into();
    entries[2].codec = device_lorawan::codec::CodecKind::Raw;
    let data = tempfile::tempdir().unwrap();
    let svc = common::Service::start(config_for(data.path(), &md), entries.clone()).await;
    let api = svc.bound.api;
    let status = || async move {
        let (code, body) = common::http(api, "GET", "/api/v3/registration", "").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let mut report = status().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while report["passes"] != 1 {
        assert!(std::time::Instant::now() < deadline, "no pass: {report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        report = status().await;
    }
    let state_of = |r: &serde_json::Value, kind: &str, name: &str| {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind && i["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {r}"))
            .clone()
    };
    let raw = state_of(&report, "profile", "Raw-Payload-Mote");
    assert_eq!(raw["state"], "refused");
    assert_eq!(raw["statusCode"], 400);
    assert!(
        raw["message"].as_str().unwrap().contains("ValueType"),
        "{raw}"
    );
    assert_eq!(
        state_of(&report, "profile", "Dragino-LPP-Mote")["state"],
        "added"
    );
    assert_eq!(
        state_of(&report, "profile", "Binary-Layout-Mote")["state"],
        "added"
    );
    let dev = state_of(&report, "device", &entries[2].name);
    assert_eq!(dev["state"], "refused");
    assert!(
        dev["message"]
            .as_str()
            .unwrap()
            .contains("Raw-Payload-Mote was refused"),
        "{dev}"
    );
    for e in &entries[..2] {
        assert_eq!(state_of(&report, "device", &e.name)["state"], "added");
    }
    {
        let devices = md.state.devices.lock().unwrap();
        assert_eq!(devices.len(), 2);
        assert!(
            !devices.contains_key(&entries[2].name),
            "never half-registered"
        );
        let requests = md.state.requests.lock().unwrap();
        assert!(
            !requests
                .iter()
                .any(|r| r.contains(&format!("\"{}\"", entries[2].name))),
            "a device of a refused profile is not sent"
        );
    }
    assert_eq!(common::scrape(api, "edgex_registration_refused"), Some(2));
    assert_eq!(svc.metrics.registered.load(Relaxed), 1);

    // core-metadata is fixed; a new pass is asked for over the API.
    md.state.refuse_profiles.lock().unwrap().clear();
    let (code, body) = common::http(api, "POST", "/api/v3/registration", "").await;
    assert_eq!(code, 202, "{body}");
    until("a second pass", Duration::from_secs(10), || {
        md.state.devices.lock().unwrap().len() == 3
    })
    .await;
    until("the second report", Duration::from_secs(10), || {
        common::scrape(api, "edgex_registration_refused") == Some(0)
    })
    .await;
    let report = status().await;
    assert_eq!(report["passes"], 2);
    assert_eq!(
        state_of(&report, "profile", "Raw-Payload-Mote")["state"],
        "added"
    );
    assert_eq!(
        state_of(&report, "device", &entries[2].name)["state"],
        "added"
    );
    assert_eq!(
        state_of(&report, "device", &entries[0].name)["state"],
        "existing"
    );
    assert!(md.state.invalid.lock().unwrap().is_empty());
    assert_no_keys_sent(&md, &entries);
}

/// core-keeper (EdgeX v4's registry): the service registers itself with a
/// health check on `/api/v3/ping` (an OpenAPI-valid request), updates the
/// registration when it is there already, and deregisters when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_keeper_registration_and_deregistration() {
    use std::sync::{Arc, Mutex};
    let add = common::openapi_validator("core-keeper.yaml", "AddRegistrationRequest");
    let update = common::openapi_validator("core-keeper.yaml", "UpdateRegistrationRequest");
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let registered: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let (l, r) = (log.clone(), registered.clone());
    let keeper = common::standin::StandIn::start(Arc::new(move |m, p, b| {
        l.lock().unwrap().push(format!("{m} {p}"));
        let ok = |code: u16| {
            (
                hyper::StatusCode::from_u16(code).unwrap(),
                serde_json::json!({"apiVersion": "v3", "statusCode": code}),
            )
        };
        match (m.as_str(), p) {
            ("POST", "/api/v3/registry") => {
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                let errors = common::schema_errors(&add, &v);
                assert!(errors.is_empty(), "{errors:?}");
                let mut reg = r.lock().unwrap();
                if reg.is_some() {
                    return ok(409);
                }
                *reg = Some(v["registration"].clone());
                ok(201)
            }
            ("PUT", "/api/v3/registry") => {
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                let errors = common::schema_errors(&update, &v);
                assert!(errors.is_empty(), "{errors:?}");
                *r.lock().unwrap() = Some(v["registration"].clone());
                ok(204)
            }
            ("DELETE", "/api/v3/registry/serviceId/device-lorawan") => {
                *r.lock().unwrap() = None;
                ok(204)
            }
            _ => ok(404),
        }
    }))
    .await;
    for round in 0..2 {
        let data = tempfile::tempdir().unwrap();
        let mut c = common::config(data.path());
        c.service.host = "127.0.0.1".into();
        c.edgex.registry.enabled = true;
        c.edgex.registry.url = keeper.url();
        if round == 1 {
            // Registered already (a crash left it): the second start updates.
            *registered.lock().unwrap() = Some(serde_json::json!({"serviceId": "device-lorawan"}));
        }
        let mut svc = common::Service::start(c, mote::entries(1, 5)).await;
        until("registered", Duration::from_secs(10), || {
            registered
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|r| r["port"].is_u64())
        })
        .await;
        let reg = registered.lock().unwrap().clone().unwrap();
        assert_eq!(reg["serviceId"], "device-lorawan");
        assert_eq!(reg["port"], svc.bound.api.port());
        assert_eq!(reg["healthCheck"]["path"], "/api/v3/ping");
        svc.stop().await;
        assert!(
            registered.lock().unwrap().is_none(),
            "deregistered at a clean stop"
        );
    }
    let log = log.lock().unwrap();
    assert!(log.iter().any(|l| l == "PUT /api/v3/registry"), "{log:?}");
}
