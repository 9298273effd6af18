//! Issue 26's footprint floors, measured on what users run, with the
//! commands the docs give (docs/performance.md, "Footprint" and "Idle
//! memory"):
//! - idle RSS of `device-lorawan run` (the release build: UDP on loopback,
//!   the bundled profiles, N simulated devices, nothing arriving), once
//!   settled: at most 7 MB with 100 devices and 8 MB with 1,000, and at most
//!   1 kB a device between the two (what `scripts/idle-rss.sh N` prints);
//! - the image `device-lorawan package` makes: at most 12 MB;
//! - the smallest build (`cargo build --profile lean --no-default-features`,
//!   built here, a few minutes): at most 10 MB.
//!
//! `cargo bench --bench footprint`. Exits non-zero when a floor is missed.
//! CI does not run it (it measures; tests assert behaviour).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;

const RSS_100_KB: u64 = 7 * 1024;
const RSS_1000_KB: u64 = 8 * 1024;
const PER_DEVICE_BYTES: f64 = 1024.0;
const IMAGE_BYTES: u64 = 12_000_000;
const BINARY_BYTES: u64 = 10_000_000;

const BIN: &str = env!("CARGO_BIN_EXE_device-lorawan");

/// Idle VmRSS (kB) of the service with `n` simulated devices, 5 s after
/// start (past the settling at 2 s, src/service/settle.rs).
fn idle_rss_kb(n: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = Command::new(BIN)
        .args(["simulate", "--write-devices"])
        .arg(d.join("devices.yaml"))
        .args(["--devices", &n.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "simulate --write-devices");
    let config = d.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "Service: {{ DataDir: {data}, ApiBind: \"127.0.0.1:0\" }}\n\
             Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
             Ingest: {{ Udp: {{ Bind: \"127.0.0.1:0\" }} }}\n\
             Readings: {{ JsonLines: {readings} }}\n\
             Log: {{ Level: warn }}\n",
            data = d.join("data").display(),
            devices = d.join("devices.yaml").display(),
            profiles = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("profiles")
                .display(),
            readings = d.join("readings.jsonl").display(),
        ),
    )
    .unwrap();
    let child = support::Killed(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(5));
    support::proc_kb(child.0.id(), "VmRSS:")
}

/// Bytes of the image tar `package` writes.
fn image_bytes() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "Service: {{ DataDir: {} }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("image.tar");
    let ok = Command::new(BIN)
        .args(["package", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "package");
    std::fs::metadata(&out).unwrap().len()
}

/// Bytes of the lean build's binary, built now.
fn lean_binary_bytes() -> u64 {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            "lean",
            "--no-default-features",
        ])
        .args(["--bin", "device-lorawan"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --profile lean --no-default-features");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    std::fs::metadata(target.join("lean/device-lorawan"))
        .unwrap()
        .len()
}

fn main() {
    // A binary written moments ago is dirty in the page cache and cannot be
    // paged out until written back (the settling pages our code out).
    let _ = Command::new("sync").status();
    let rss_100 = idle_rss_kb(100);
    let rss_1000 = idle_rss_kb(1000);
    let per_device = (rss_1000.saturating_sub(rss_100) * 1024) as f64 / 900.0;
    let image = image_bytes();
    let lean = lean_binary_bytes();
    let release = std::fs::metadata(BIN).unwrap().len();

    println!("| figure | measured | floor |");
    println!("|---|---|---|");
    println!(
        "| idle RSS, 100 devices | {:.1} MB | 7 MB |",
        rss_100 as f64 / 1024.0
    );
    println!(
        "| idle RSS, 1,000 devices | {:.1} MB | 8 MB |",
        rss_1000 as f64 / 1024.0
    );
    println!("| per device (1,000 − 100) | {per_device:.0} B | 1,024 B |");
    println!(
        "| image (`package`) | {:.1} MB | 12 MB |",
        image as f64 / 1e6
    );
    println!(
        "| lean binary (`--profile lean --no-default-features`) | {:.1} MB | 10 MB |",
        lean as f64 / 1e6
    );
    println!(
        "| this bench's binary (release settings, default features) | {:.1} MB | (reported) |",
        release as f64 / 1e6
    );

    let mut failed = Vec::new();
    if rss_100 > RSS_100_KB {
        failed.push(format!(
            "idle RSS with 100 devices {rss_100} kB > {RSS_100_KB} kB"
        ));
    }
    if rss_1000 > RSS_1000_KB {
        failed.push(format!(
            "idle RSS with 1,000 devices {rss_1000} kB > {RSS_1000_KB} kB"
        ));
    }
    if per_device > PER_DEVICE_BYTES {
        failed.push(format!(
            "{per_device:.0} bytes a device > {PER_DEVICE_BYTES}"
        ));
    }
    if image > IMAGE_BYTES {
        failed.push(format!("image {image} B > {IMAGE_BYTES} B"));
    }
    if lean > BINARY_BYTES {
        failed.push(format!("lean binary {lean} B > {BINARY_BYTES} B"));
    }
    if !failed.is_empty() {
        eprintln!("floors not met: {failed:?}");
        std::process::exit(1);
    }
}
