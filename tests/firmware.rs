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

/// Compile a host harness of firmware/test/ with g++ and run it: its output.
fn host_harness(name: &str) -> Option<String> {
    if !common::require("g++") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(name);
    let status = Command::new("g++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(common::repo_path(&format!("firmware/test/{name}.cpp")))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "firmware/test/{name}.cpp does not compile"
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).unwrap())
}

fn harness_output() -> Option<String> {
    host_harness("payload_host")
}

fn decode(profile: &str, kind: CodecKind, hex_payload: &str) -> Vec<(String, f64)> {
    let profiles = common::profiles();
    let codec = Codec::compile(Arc::new(profiles[profile].clone()), kind).unwrap();
    let mut out = Vec::new();
    codec
        .decode(&hex::decode(hex_payload).unwrap(), 1, "{}", 0.0, &mut out)
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

/// The GPS (NMEA GGA) and DHT22 decoding the sketch uses instead of
/// TinyGPSPlus and the Adafruit DHT library, compiled on the host.
#[test]
fn the_motes_sensor_readers_decode_gps_and_dht22() {
    let Some(out) = host_harness("sensors_host") else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            // The NMEA 0183 example fix: 48°07.038' N 11°31.000' E, 545.4 m.
            "gga 1 48.11730 11.51667 545.40 1",
            "gga 1 -33.86880 151.20930 -5.50 1",
            // No fix, not GGA, a bad checksum, noise: the last fix stays.
            "gga 0 -33.86880 151.20930 -5.50 1",
            "gga 0 -33.86880 151.20930 -5.50 1",
            "gga 0 -33.86880 151.20930 -5.50 1",
            "gga 0 -33.86880 151.20930 -5.50 1",
            // The AM2302 datasheet's example frame; a negative temperature;
            // a bad checksum.
            "dht 1 35.1 65.2",
            "dht 1 -10.1 65.2",
            "dht 0 0.0 0.0",
        ]
    );
}

/// Debian's Arduino AVR core (package arduino-core-avr).
const ARDUINO_AVR: &str = "/usr/share/arduino/hardware/arduino/avr";

/// Our own firmware code, compiled for the UNO's ATmega328P with the Arduino
/// core's headers as the IDE does: the sketch (against declarations of the
/// LMIC API, firmware/test/lmic_stub, with the real LMIC configuration) and
/// the headers it includes, both payload encodings. An AVR-only error in our
/// code fails here; firmware/build-uno.sh builds the whole thing with LMIC.
#[test]
fn our_firmware_code_compiles_for_the_atmega328p() {
    if !common::require("avr-g++") {
        return;
    }
    let core = std::path::Path::new(ARDUINO_AVR);
    if !core.join("cores/arduino/Arduino.h").exists() {
        common::skip::skip(
            &format!("the Arduino AVR core ({ARDUINO_AVR})"),
            "apt-get install arduino-core-avr",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The OTAA build: the sketch beside the settings.h an OTAA entry gives.
    let otaa = dir.path().join("lorawan-mote");
    std::fs::create_dir(&otaa).unwrap();
    for f in std::fs::read_dir(common::repo_path("firmware/lorawan-mote")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, otaa.join(f.file_name().unwrap())).unwrap();
    }
    let entry = device_lorawan::sim::mote::otaa_entries(1, 1, Default::default()).remove(0);
    let settings = device_lorawan::cli::sketch::settings_h(
        &entry,
        device_lorawan::config::Config::default().rx_defaults(),
    )
    .unwrap();
    std::fs::write(otaa.join("settings.h"), settings).unwrap();
    let abp = common::repo_path("firmware/lorawan-mote/lorawan-mote.ino");
    for (sketch, layout) in [
        (abp.clone(), false),
        (abp, true),
        (otaa.join("lorawan-mote.ino"), false),
    ] {
        let mut cmd = Command::new("avr-g++");
        cmd.args([
            "-mmcu=atmega328p",
            "-Os",
            "-std=gnu++11",
            "-fno-exceptions",
            "-fno-threadsafe-statics",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-DF_CPU=16000000L",
            "-DARDUINO=10819",
            "-DARDUINO_AVR_UNO",
            "-DARDUINO_ARCH_AVR",
        ]);
        for inc in [
            "cores/arduino",
            "variants/standard",
            "libraries/SPI/src",
            "libraries/SoftwareSerial/src",
        ] {
            cmd.arg(format!("-I{}", core.join(inc).display()));
        }
        if layout {
            cmd.arg("-DPAYLOAD_LAYOUT");
        }
        let out = cmd
            .arg(format!(
                "-I{}",
                common::repo_path("firmware/test/lmic_stub").display()
            ))
            .args(["-x", "c++", "-include", "Arduino.h", "-c"])
            .arg(&sketch)
            .arg("-o")
            .arg(dir.path().join("mote.o"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} (layout: {layout}) does not compile for the ATmega328P:\n{}",
            sketch.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The sketch's committed settings.h is what `device-lorawan sketch-settings`
/// writes for the example device on the service's defaults: the firmware's
/// defaults are the service's (issue 11: the sketch listened for RX2 at SF9
/// while the service sent at SF12).
#[test]
fn the_sketch_settings_are_the_services_defaults() {
    let entries =
        device_lorawan::devices::load(&common::repo_path("compose/devices.example.yaml")).unwrap();
    let want = device_lorawan::cli::sketch::settings_h(
        &entries[0],
        device_lorawan::config::Config::default().rx_defaults(),
    )
    .unwrap();
    let got =
        std::fs::read_to_string(common::repo_path("firmware/lorawan-mote/settings.h")).unwrap();
    assert_eq!(
        got, want,
        "regenerate: device-lorawan sketch-settings --devices compose/devices.example.yaml --device mote-1"
    );
    assert!(got.contains("#define MOTE_RX2_DR DR_SF12"));
}
