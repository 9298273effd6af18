//! Events for core-data, from uplinks of a real pipeline run, validate
//! against the official EdgeX core-data OpenAPI schema (AddEventRequest),
//! and carry the ids, values and tags the issue asks for.

mod common;

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::codec::{Codec, CodecKind, DeviceProfile, Reading, Value};
use device_lorawan::edgex::event::{add_event_request, event_id, event_path};
use device_lorawan::lorawan::Eui64;
use device_lorawan::metrics::Source;
use device_lorawan::pipeline::uplink::{RxMeta, Uplink};
use device_lorawan::sim::{self, mote, SimOptions, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_events_validate_against_core_data() {
    let Some(validator) = common::openapi_validator("core-data.yaml", "AddEventRequest") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(common::config(data.path()), mote::entries(2, 9)).await;
    let opts = SimOptions {
        devices: 2,
        gateways: 2,
        rate: 200.0,
        frames: Some(8),
        duration: None,
        seed: 9,
        ..Default::default()
    };
    sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts,
        std::future::pending(),
    )
    .await
    .unwrap();
    svc.wait_published(8, Duration::from_secs(10)).await;
    let ups = svc.stop().await;
    assert_eq!(ups.len(), 8);
    for up in &ups {
        let doc = serde_json::to_value(add_event_request(up)).unwrap();
        let errors = common::errors_of(&validator, &doc);
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        let ev = &doc["event"];
        assert_eq!(
            ev["id"],
            event_id(&up.dev_eui.to_string(), up.epoch, up.fcnt).to_string()
        );
        assert_eq!(ev["sourceName"], "uplink");
        assert_eq!(ev["readings"].as_array().unwrap().len(), 6);
        assert_eq!(ev["tags"]["fcnt"], up.fcnt.to_string());
        assert_eq!(ev["tags"]["gateways"], "2");
        let t = ev["readings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resourceName"] == "temperature")
            .unwrap();
        assert_eq!(
            (t["valueType"].as_str(), t["units"].as_str()),
            (Some("Float32"), Some("degC"))
        );
        let v: f64 = t["value"].as_str().unwrap().parse().unwrap();
        assert!(
            (v - mote::Mote::new(&mote::entries(2, 9)[0])
                .sample(0)
                .temperature)
                .abs()
                < 1.0
        );
        assert!(
            t["value"].as_str().unwrap().contains("e+01"),
            "EdgeX float strings: {}",
            t["value"]
        );
        assert_eq!(
            event_path("device-lorawan", up),
            format!(
                "/api/v3/event/device-lorawan/Dragino-LPP-Mote/{}/uplink",
                up.device
            )
        );
    }
    let ids: std::collections::BTreeSet<_> =
        ups.iter().map(|u| add_event_request(u).event.id).collect();
    assert_eq!(ids.len(), 8, "one id per frame");
}

#[test]
fn binary_readings_carry_base64_and_media_type() {
    let Some(validator) = common::openapi_validator("core-data.yaml", "AddEventRequest") else {
        return;
    };
    let profile = Arc::new(common::profiles()["Raw-Payload-Mote"].clone());
    let codec = Codec::compile(profile.clone(), CodecKind::Raw).unwrap();
    let mut readings: Vec<Reading> = Vec::new();
    codec
        .decode(b"Hello, world!", 1, "{}", 0.0, &mut readings)
        .unwrap();
    let up = Uplink {
        dev_eui: Eui64::from_u64(0x0004a30b001c0530),
        fcnt: 70_000,
        epoch: 2,
        confirmed: true,
        ..uplink_of("ttn-abp mote", profile, readings)
    };
    let doc = serde_json::to_value(add_event_request(&up)).unwrap();
    assert!(common::errors_of(&validator, &doc).is_empty(), "{doc:#}");
    let r = &doc["event"]["readings"][0];
    assert_eq!(r["valueType"], "Binary");
    assert_eq!(r["binaryValue"], "SGVsbG8sIHdvcmxkIQ==");
    assert_eq!(r["mediaType"], "application/octet-stream");
    assert!(r.get("value").is_none());
    assert_eq!(
        doc["event"]["sourceName"], "payload",
        "a single reading names its resource"
    );
    assert_eq!(doc["event"]["tags"]["confirmed"], "true");
    assert_eq!(
        event_path("device-lorawan", &up),
        "/api/v3/event/device-lorawan/Raw-Payload-Mote/ttn-abp%20mote/payload"
    );
    assert!(matches!(up.readings[0].value, Value::Binary(_)));
    // The validator is not vacuous: formats and required fields are checked.
    let mut bad = doc.clone();
    bad["event"]["id"] = "not-a-uuid".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = doc;
    bad["event"]["readings"][0]
        .as_object_mut()
        .unwrap()
        .remove("valueType");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn object_readings_carry_the_codecs_structure() {
    let Some(validator) = common::openapi_validator("core-data.yaml", "AddEventRequest") else {
        return;
    };
    let profiles =
        device_lorawan::codec::profile::load_dir(&common::repo_path("tests/codecs")).unwrap();
    let profile = Arc::new(profiles["Example-Climate-Sensor"].clone());
    let codec = Codec::compile(profile.clone(), CodecKind::Javascript).unwrap();
    let mut readings: Vec<Reading> = Vec::new();
    codec
        .decode(
            &[255, 56, 90, 12, 228, 128, 19],
            1,
            "{}",
            0.0,
            &mut readings,
        )
        .unwrap();
    let up = uplink_of("ecs-1", profile, readings);
    let doc = serde_json::to_value(add_event_request(&up)).unwrap();
    assert!(common::errors_of(&validator, &doc).is_empty(), "{doc:#}");
    let readings = doc["event"]["readings"].as_array().unwrap();
    let b = readings
        .iter()
        .find(|r| r["resourceName"] == "battery")
        .unwrap();
    assert_eq!(b["valueType"], "Object");
    let object: serde_json::Value =
        serde_json::from_str(b["objectValue"].as_str().unwrap()).unwrap();
    assert_eq!(object, serde_json::json!({"voltage": 3.3, "low": true}));
    assert!(b.get("value").is_none());
}

/// An uplink of device `name` carrying `readings`, heard once over UDP.
fn uplink_of(name: &str, profile: Arc<DeviceProfile>, readings: Vec<Reading>) -> Uplink {
    Uplink {
        device: Arc::from(name),
        dev_eui: Eui64::from_u64(7),
        profile,
        fcnt: 1,
        epoch: 0,
        counter_reset: false,
        fport: Some(1),
        confirmed: false,
        readings,
        mac_commands: vec![],
        adr: false,
        adr_ack_req: false,
        ack: false,
        rx: RxMeta {
            time_ns: None,
            gps_time_ns: None,
            station: None,
            gateway: Eui64::from_u64(1),
            rssi: -99,
            snr: -7.5,
            tmst: None,
            frequency: None,
            datr: None,
        },
        gateways: 1,
        source: Source::Udp,
        received_ns: 1_764_000_000_000_000_000,
    }
}
