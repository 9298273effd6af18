//! The mote firmware's payload encoder (firmware/lorawan-mote/payload.h),
//! compiled on the host with g++: its bytes must decode, through our codec
//! and the bundled profiles, to the readings that went in; its downlink
//! parser must accept exactly the interval command the profile describes.

mod common;

use std::process::Command;
use std::sync::Arc;

use device_lorawan::codec::{Codec, CodecKind, Value};

/// The readings the harness encodes (firmware/test/payload_host.cpp).
const CASES: [[f64; 8]; 2] = [
    [21.5, 48.5, 51.5072, -0.1276, 35.2, 3.71, 1.0, 5.0],
    [-12.3, 99.0, -33.8688, 151.2093, -5.5, 2.95, 0.0, 0.0],
];

fn harness_output() -> Option<String> {
    if !common::require("g++") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("payload_host");
    let status = Command::new("g++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(common::repo_path("firmware/test/payload_host.cpp"))
        .status()
        .unwrap();
    assert!(status.success(), "payload.h does not compile");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).unwrap())
}

fn decode(profile: &str, kind: CodecKind, hex_payload: &str) -> Vec<(String, f64)> {
    let profiles = common::profiles();
    let codec = Codec::compile(Arc::new(profiles[profile].clone()), kind).unwrap();
    let mut out = Vec::new();
    codec
        .decode(&hex::decode(hex_payload).unwrap(), &mut out)
        .unwrap();
    out.iter()
        .map(|r| {
            let name = codec.profile().device_resources[usize::from(r.resource)]
                .name
                .clone();
            let v = match r.value {
                Value::Float(f) => f,
                Value::Uint(u) => u as f64,
                Value::Int(i) => i as f64,
                ref other => panic!("{name}: unexpected {other:?}"),
            };
            (name, v)
        })
        .collect()
}

fn assert_close(got: &[(String, f64)], name: &str, want: f64, resolution: f64) {
    let v = got
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {got:?}"))
        .1;
    assert!(
        (v - want).abs() <= resolution / 2.0 + 1e-6,
        "{name}: got {v}, want {want}"
    );
}

#[test]
fn firmware_payloads_decode_to_the_readings() {
    let Some(out) = harness_output() else { return };
    let lines: Vec<&str> = out.lines().collect();
    for (i, c) in CASES.iter().enumerate() {
        let lpp = lines[2 * i].strip_prefix("lpp ").unwrap();
        let got = decode("Dragino-LPP-Mote", CodecKind::CayenneLpp, lpp);
        assert_close(&got, "temperature", c[0], 0.1);
        assert_close(&got, "humidity", c[1], 0.5);
        assert_close(&got, "latitude", c[2], 0.0001);
        assert_close(&got, "longitude", c[3], 0.0001);
        assert_close(&got, "altitude", c[4], 0.01);
        assert_close(&got, "battery", c[5], 0.01);

        let layout = lines[2 * i + 1].strip_prefix("layout ").unwrap();
        let got = decode("Binary-Layout-Mote", CodecKind::Layout, layout);
        assert_close(&got, "temperature", c[0], 0.01);
        assert_close(&got, "humidity", c[1], 0.5);
        assert_close(&got, "battery", c[5], 0.001);
        assert_close(&got, "motion", c[6], 0.0);
        assert_close(&got, "errorCode", c[7], 0.0);
    }
}

#[test]
fn firmware_applies_only_valid_interval_downlinks() {
    let Some(out) = harness_output() else { return };
    let downlinks: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("downlink "))
        .collect();
    // 300 s on port 2 applies; 5 s (below the profile minimum of 10) and a
    // wrong port are ignored, keeping 300.
    assert_eq!(downlinks, ["1 300", "0 300", "0 300"]);
    let p = &common::profiles()["Dragino-LPP-Mote"];
    let r = &p.device_resources[p.resource_index("reportInterval").unwrap()];
    assert_eq!(
        (r.properties.minimum, r.properties.maximum),
        (Some(10.0), Some(3600.0))
    );
    assert_eq!(r.attributes["downlinkFPort"], "2");
}
