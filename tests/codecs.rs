//! Vendors' JavaScript codecs: the examples of every codec the project
//! ships (and the test codec's), the mote's codec giving the readings its
//! Cayenne LPP profile gives, the type mapping, and a JavaScript device
//! end to end through the real binary: readings stored by the core-data
//! stand-in, and a PUT command turned into a downlink by `encodeDownlink`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::codec::{Codec, CodecError, CodecKind};
use device_lorawan::sim::{self, mote, SimOptions, Target};

fn examples_pass(dir: &std::path::Path, name: &str) {
    let mut out = Vec::new();
    let ok = device_lorawan::cli::codec::test(dir, name, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains(", 0 failed"), "{text}");
}

#[test]
fn every_shipped_codec_passes_its_examples() {
    let dir = common::repo_path("profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) == Some("js") {
            let name = p.file_stem().unwrap().to_str().unwrap();
            assert!(
                dir.join(format!("{name}.examples.yaml")).is_file(),
                "{name} ships without examples"
            );
            examples_pass(&dir, name);
            n += 1;
        }
    }
    assert!(n >= 1);
    examples_pass(&common::repo_path("tests/codecs"), "Example-Climate-Sensor");
}

#[test]
fn the_motes_javascript_codec_reads_what_its_lpp_codec_reads() {
    let profiles =
        device_lorawan::codec::profile::load_dir(&common::repo_path("profiles")).unwrap();
    let p = Arc::new(profiles["Dragino-LPP-Mote"].clone());
    let lpp = Codec::compile(p.clone(), CodecKind::CayenneLpp).unwrap();
    let js = Codec::compile(p.clone(), CodecKind::Javascript).unwrap();
    let m = mote::Mote::new(&mote::entries(1, 3)[0]);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for fcnt in 0..200 {
        let payload = m.payload(&m.sample(fcnt));
        lpp.decode(&payload, 1, "{}", 0.0, &mut a).unwrap();
        js.decode(&payload, 1, "{}", 0.0, &mut b).unwrap();
        let text = |r: &[device_lorawan::codec::Reading]| -> Vec<(u16, String)> {
            r.iter()
                .map(|x| {
                    let vt = p.device_resources[usize::from(x.resource)]
                        .properties
                        .value_type;
                    (x.resource, x.value.to_edgex_string(vt))
                })
                .collect()
        };
        let (mut ta, mut tb) = (text(&a), text(&b));
        ta.sort();
        tb.sort();
        assert_eq!(ta, tb, "frame {fcnt}");
        assert_eq!(a.len(), 6);
    }
}

#[test]
fn data_fields_are_typed_by_their_resources() {
    let profiles =
        device_lorawan::codec::profile::load_dir(&common::repo_path("tests/codecs")).unwrap();
    let p = Arc::new(profiles["Example-Climate-Sensor"].clone());
    let c = Codec::compile(p.clone(), CodecKind::Javascript).unwrap();
    let mut out = Vec::new();
    let stats = c
        .decode(
            &[255, 56, 90, 12, 228, 128, 19],
            1,
            r#"{"model":"X"}"#,
            0.0,
            &mut out,
        )
        .unwrap();
    let got: Vec<(String, String)> = out
        .iter()
        .map(|r| {
            let res = &p.device_resources[usize::from(r.resource)];
            (
                res.name.clone(),
                r.value.to_edgex_string(res.properties.value_type),
            )
        })
        .collect();
    let want = [
        ("temperature", "-2e+01"),
        ("humidity", "4.5e+01"),
        ("batteryVoltage", "3.3e+00"),
        ("batteryLow", "true"),
        ("status", "3"),
        ("firstChannel", "-200"),
        ("model", "X"),
        ("battery", r#"{"low":true,"voltage":3.3}"#),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(
        (stats.unmapped, stats.warnings),
        (1, 1),
        "firmware has no resource; one warning"
    );
    // A codec error refuses the uplink with its message, and never with
    // the device's variables.
    let e = c
        .decode(&[1, 2], 1, r#"{"apiKey":"s3cr3t-value"}"#, 0.0, &mut out)
        .unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    assert!(
        matches!(&e, CodecError::Refused { message, .. } if message == "payload too short: 2 bytes"),
        "{e}"
    );
    // The interval port: a Uint16 resource; out of its range is an error.
    c.decode(&[1, 44], 2, "{}", 0.0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let e = c.decode(&[0xff], 9, "{}", 0.0, &mut out).unwrap_err();
    assert!(e.to_string().contains("unknown fPort 9"), "{e}");
}

#[test]
fn a_codec_that_does_not_compile_stops_the_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo_path("tests/codecs/Example-Climate-Sensor.yaml"),
        dir.path().join("x.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Example-Climate-Sensor.js"),
        "function decodeUplink(i) {\n  return {{;\n}\n",
    )
    .unwrap();
    let profiles = device_lorawan::codec::profile::load_dir(dir.path()).unwrap();
    let mut e = device_lorawan::devices::DeviceEntry::new(
        "ecs-1",
        device_lorawan::lorawan::Eui64::from_u64(1),
        "Example-Climate-Sensor",
    );
    e.codec = CodecKind::Javascript;
    let err = device_lorawan::devices::Registry::build(vec![e], &profiles)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ecs-1")
            && err.contains("Example-Climate-Sensor.js")
            && err.contains("line 2"),
        "{err}"
    );
}

/// A JavaScript device through the real binary: UDP uplinks decoded by the
/// mote's JavaScript codec into EdgeX events (types and units checked by
/// the core-data stand-in's OpenAPI schema and here), and a PUT turned
/// into the downlink `encodeDownlink` built, taken by the simulated mote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_device_end_to_end() {
    let cd = common::core_data::CoreData::start().await;
    let mut entries = mote::entries(1, 51);
    entries[0].codec = CodecKind::Javascript;
    let env = common::binary_env(
        &mote::devices_yaml(&entries),
        "",
        "DedupWindow: 50ms",
        &format!(
            "Delivery: rest, CoreData: {{ Url: \"{}\", Timeout: 1s }}",
            cd.url()
        ),
    );
    let mut child = common::start_binary(&env.config);
    let (status, body) = common::http(
        env.api,
        "PUT",
        "/api/v3/device/name/sim-mote-1/reportInterval",
        r#"{"reportInterval":"300"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let opts = SimOptions {
        devices: 1,
        gateways: 1,
        rate: 10.0,
        frames: Some(4),
        duration: None,
        seed: 51,
        linger: Duration::from_secs(2),
        ..Default::default()
    };
    let report = sim::run(Target::Udp(env.udp), opts, std::future::pending())
        .await
        .unwrap();
    common::until("4 events stored", Duration::from_secs(10), || {
        cd.stored() >= 4
    })
    .await;
    assert!(cd.state.invalid.lock().unwrap().is_empty());
    {
        let events = cd.state.events.lock().unwrap();
        let e = events.values().next().unwrap();
        let readings = e["readings"].as_array().unwrap();
        assert_eq!(readings.len(), 6, "{e}");
        let t = readings
            .iter()
            .find(|r| r["resourceName"] == "temperature")
            .unwrap();
        assert_eq!(
            (t["valueType"].as_str(), t["units"].as_str()),
            (Some("Float32"), Some("degC"))
        );
    }
    // The PUT went out as encodeDownlink built it: fPort 2, 0x012c.
    assert_eq!(report.downlinks.len(), 1, "{:?}", report.downlinks);
    let d = &report.downlinks[0];
    assert_eq!(
        (d.fport, d.payload.clone(), d.interval_s),
        (Some(2), vec![1, 44], 300)
    );
    // A setting the codec refuses is a 400 with its message, nothing queued.
    let (status, body) = common::http(
        env.api,
        "PUT",
        "/api/v3/device/name/sim-mote-1/reportInterval",
        r#"{"reportInterval":"5"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("whole number of seconds in 10..3600"),
        "{body}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The same JavaScript device heard through a ChirpStack gateway bridge
/// on MQTT (protobuf), the real binary decoding it with the codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_device_through_the_gateway_bridge() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let port = broker.port;
    let mut entries = mote::entries(3, 52);
    for e in &mut entries {
        e.codec = CodecKind::Javascript;
    }
    let env = common::binary_env(
        &mote::devices_yaml(&entries),
        "",
        &format!(
            "DedupWindow: 50ms, Mqtt: {{ Enabled: true, Host: 127.0.0.1, Port: {port}, \
             Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }}"
        ),
        "",
    );
    let mut child = common::start_binary(&env.config);
    // The ingest session must exist before frames are sent to it.
    common::until("the ingest subscription", Duration::from_secs(20), || {
        common::scrape(env.api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 1)
    })
    .await;
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port,
        format: device_lorawan::ingest::bridge::WireFormat::Protobuf,
        prefix: String::new(),
    };
    let report = sim::run(target, common::sim_opts(52, 10, 0), std::future::pending())
        .await
        .unwrap();
    common::until("10 uplinks", Duration::from_secs(10), || {
        common::published_lines(&env.out).len() >= 10
    })
    .await;
    let text = std::fs::read_to_string(&env.out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let names: Vec<&str> = first["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{first}");
    assert!(
        names.contains(&"latitude") && names.contains(&"battery"),
        "{names:?}"
    );
    assert_eq!(
        common::published_lines(&env.out).len(),
        report.expected.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `codec test` on vendors' fixtures as they ship them (TTN device
/// repository codec YAML, ChirpStack `test_*.json`), through the real
/// binary: all pass; a broken file elsewhere does not stop the others, and
/// a differing example shows every difference.
#[test]
fn codec_test_reads_vendor_fixtures_as_shipped() {
    let run = |target: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args(["codec", "test"])
            .arg(target)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let vendors = common::repo_path("tests/codecs/vendors");
    let (ok, text) = run(&vendors);
    assert!(ok, "{text}");
    assert_eq!(text.matches("PASS ").count(), 9, "{text}");
    assert!(
        text.contains("3 fixture file(s), 9 examples, 0 failed"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir_all(&acme).unwrap();
    for f in ["thermo.js", "thermo-codec.yaml"] {
        std::fs::copy(vendors.join("ttn/acme").join(f), acme.join(f)).unwrap();
    }
    let yaml = std::fs::read_to_string(acme.join("thermo-codec.yaml")).unwrap();
    std::fs::write(
        acme.join("thermo-codec.yaml"),
        yaml.replacen("humidity: 40\n", "humidity: 41\n", 1)
            .replacen("hour: 12\n", "hour: 13\n", 1),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken-codec.yaml"), "uplinkDecoder: [\n").unwrap();
    let (ok, text) = run(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL") && text.contains("broken-codec.yaml"),
        "{text}"
    );
    assert!(
        text.contains("data.humidity: got 40, want 41")
            && text.contains("data.hour: got 12, want 13"),
        "the whole difference: {text}"
    );
    assert_eq!(text.matches("PASS ").count(), 5, "the others ran: {text}");
}

/// `codec decode --json --variables --recv-time`: the codec's own output.
#[test]
fn codec_decode_shows_the_codecs_output_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let vendors = common::repo_path("tests/codecs/vendors/ttn/acme");
    std::fs::copy(vendors.join("thermo.js"), dir.path().join("Thermo.js")).unwrap();
    std::fs::write(
        dir.path().join("Thermo.yaml"),
        "name: Thermo\ndeviceResources:\n  - { name: temperature, properties: { valueType: Float64, readWrite: R } }\n  - { name: battery, properties: { valueType: Float64, readWrite: R } }\n",
    )
    .unwrap();
    let decode = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args([
                "codec",
                "decode",
                "--profile",
                "Thermo",
                "--fport",
                "1",
                "--profiles-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .arg("0866509808")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&decode(&[
        "--json",
        "--recv-time",
        "2026-12-06T07:15:00Z",
        "--variables",
        r#"{"site":"roof"}"#,
    ]))
    .unwrap();
    assert_eq!(json["data"]["hour"], 7);
    assert_eq!(json["data"]["battery"], 2.2);
    assert_eq!(json["warnings"], serde_json::json!(["battery low"]));
    let text = decode(&[]);
    assert!(text.contains("# warning: battery low"), "{text}");
    assert!(text.contains("\"resourceName\":\"temperature\""), "{text}");
}

/// Onboarding a bought sensor in one command: `profile import` of a TTN
/// device-repository entry and of a ChirpStack device-profiles entry
/// (written for the tests in those formats), through the real binary. Each
/// gives a profile the service loads and compiles, whose `codec test`
/// passes, with resources typed from the vendor's examples.
#[test]
fn profile_import_of_ttn_and_chirpstack_entries() {
    let out = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args(args)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {text}");
        text
    };
    let dir = out.path().to_str().unwrap();
    let vendors = common::repo_path("tests/codecs/vendors");
    let ttn = vendors.join("ttn/acme/thermo.yaml");
    let cs = vendors.join("chirpstack/vendors/acme/devices/valve.toml");
    let text = run(&["profile", "import", ttn.to_str().unwrap(), "--out", dir]);
    assert!(text.contains("acme-Thermo: 6 examples, 0 failed"), "{text}");
    let text = run(&["profile", "import", cs.to_str().unwrap(), "--out", dir]);
    assert!(text.contains("Acme-Valve: 3 examples, 0 failed"), "{text}");
    for name in ["acme-Thermo", "Acme-Valve"] {
        let text = run(&["codec", "test", name, "--profiles-dir", dir]);
        assert!(text.contains(", 0 failed"), "{text}");
    }
    let profiles = device_lorawan::codec::profile::load_dir(out.path()).unwrap();
    let types = |p: &str| -> Vec<(String, String, String)> {
        profiles[p]
            .device_resources
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.properties.value_type.as_str().to_string(),
                    r.attributes.get("jsPath").cloned().unwrap_or_default(),
                )
            })
            .collect()
    };
    let thermo = types("acme-Thermo");
    for (name, vt) in [
        ("temperature", "Float64"),
        ("battery", "Float64"),
        ("hour", "Float64"),
        ("interval", "Float64"),
    ] {
        assert!(
            thermo.iter().any(|(n, t, _)| n == name && t == vt),
            "{name}: {thermo:?}"
        );
    }
    let valve = types("Acme-Valve");
    assert!(
        valve.contains(&("open".into(), "Bool".into(), String::new())),
        "{valve:?}"
    );
    assert!(
        valve.contains(&("site".into(), "String".into(), String::new())),
        "{valve:?}"
    );
    for p in ["acme-Thermo", "Acme-Valve"] {
        Codec::compile(Arc::new(profiles[p].clone()), CodecKind::Javascript).unwrap();
    }
}
