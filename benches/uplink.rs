//! The per-frame path, against the `lorawan` 0.9 crate's own
//! `parse` + `decrypt_if_mic_ok` on the same frames, with the floors
//! checked at the end of the run (the benchmark fails if they are not met):
//! - ours parse → MIC → counter → decrypt ≥ 2.5 × the baseline on both
//!   frames (issue 26; docs/performance.md, "Per frame");
//! - the full path, codec included, ≥ 4 M frames/s on the short frame (the
//!   frame the baseline figure is for); the full mote frame's figure
//!   is reported, not floored.
//!
//! `cargo bench --bench uplink` (CI does not run it: it measures, tests assert).

use std::path::PathBuf;

use criterion::{black_box, Criterion};
use device_lorawan::codec::lpp;
use device_lorawan::codec::profile::DeviceProfile;
use device_lorawan::devices::Registry;
use device_lorawan::lorawan::{self, encode, FcntState};
use device_lorawan::pipeline::uplink::decode_frame;
use device_lorawan::sim::mote;

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    fcnt: u32,
}

fn cases(entry: &device_lorawan::devices::DeviceEntry) -> Vec<Case> {
    let crypto = lorawan::SessionCrypto::new(&entry.nwk_s_key.unwrap(), &entry.app_s_key.unwrap());
    let addr = entry.dev_addr.unwrap();
    // Short: one LPP temperature record (17-byte PHYPayload).
    let mut short = Vec::new();
    lpp::encode(&mut short, 1, 103, &[21.5]);
    // Mote: the full Dragino-LPP-Mote payload (temperature, humidity, GPS, battery).
    let mut m = mote::Mote::new(entry);
    m.fcnt = 70_000;
    let full = m.payload(&m.sample(70_000));
    vec![
        Case {
            name: "short",
            frame: encode::uplink(&crypto, addr, 1234, 1, &short),
            fcnt: 1234,
        },
        Case {
            name: "mote",
            frame: encode::uplink(&crypto, addr, 70_000, 1, &full),
            fcnt: 70_000,
        },
    ]
}

fn main() {
    let entries = mote::entries(1, 42);
    let entry = &entries[0];
    let profile_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/Dragino-LPP-Mote.yaml"
    ))
    .unwrap();
    let profile = DeviceProfile::from_yaml("p".as_ref(), &profile_text).unwrap();
    let registry = Registry::build(
        entries.clone(),
        &[(profile.name.clone(), profile)].into_iter().collect(),
    )
    .unwrap();
    let crypto = &registry.get(0).crypto.clone().unwrap();
    let nwk = lorawan_baseline_key(entry.nwk_s_key.unwrap().expose());
    let app = lorawan_baseline_key(entry.app_s_key.unwrap().expose());

    // Estimates older than this run are another run's: never read them.
    let started = std::time::SystemTime::now();
    let mut c = Criterion::default().configure_from_args().sample_size(50);
    for case in cases(entry) {
        let state = FcntState {
            last: Some(case.fcnt - 1),
            epoch: 0,
        };
        let states = vec![state];
        let mut g = c.benchmark_group(format!("uplink-{}", case.name));
        g.throughput(criterion::Throughput::Elements(1));
        g.bench_function("baseline-lorawan-0.9", |b| {
            let mut buf = [0u8; 255];
            let n = case.frame.len();
            b.iter(|| {
                buf[..n].copy_from_slice(&case.frame);
                let Ok(::lorawan::parser::PhyPayload::Data(
                    ::lorawan::parser::DataPayload::Encrypted(e),
                )) = ::lorawan::parser::parse(&mut buf[..n])
                else {
                    panic!("baseline parse")
                };
                let Ok(d) = e.decrypt_if_mic_ok(&nwk, &app, case.fcnt) else {
                    panic!("baseline MIC")
                };
                black_box(d.to_inner().len())
            })
        });
        g.bench_function("ours-decode", |b| {
            let mut out = [0u8; 255];
            b.iter(|| {
                let f = lorawan::parse_uplink(black_box(&case.frame)).unwrap();
                let auth = lorawan::verify_mic(f, crypto, &state, &mut out).unwrap();
                let acc =
                    lorawan::check_counter(auth, &state, lorawan::FcntPolicy::ResetTolerant, 32)
                        .unwrap();
                black_box(acc.payload().len())
            })
        });
        g.bench_function("ours-full-path", |b| {
            let mut readings = Vec::with_capacity(16);
            b.iter(|| {
                let d = decode_frame(
                    &registry,
                    &states,
                    32,
                    black_box(&case.frame),
                    0.0,
                    &mut readings,
                )
                .ok()
                .unwrap();
                black_box((d.fcnt, readings.len()))
            })
        });
        g.finish();
    }
    c.final_summary();
    check_floors(started);
}

fn lorawan_baseline_key(k: &[u8; 16]) -> ::lorawan::keys::AES128 {
    ::lorawan::keys::AES128(*k)
}

/// Median ns per frame of one benchmark, from criterion's estimates
/// written since `started` (a benchmark filtered out of this run has only
/// an older file, which says nothing of this build).
fn median_ns(group: &str, id: &str, started: std::time::SystemTime) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let path = dir
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < started {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Ours over the baseline, on each frame.
const RATIO_FLOOR: f64 = 2.5;

fn check_floors(started: std::time::SystemTime) {
    let mut failed = Vec::new();
    println!("\n| frame | baseline lorawan 0.9 | ours decode | ratio | ours full path (codec) |");
    println!("|---|---|---|---|---|");
    for case in ["short", "mote"] {
        let g = format!("uplink-{case}");
        let (Some(base), Some(ours), Some(full)) = (
            median_ns(&g, "baseline-lorawan-0.9", started),
            median_ns(&g, "ours-decode", started),
            median_ns(&g, "ours-full-path", started),
        ) else {
            println!("| {case} | (not all three measured in this run: no floor checked) | | | |");
            continue;
        };
        let mfps = |ns: f64| 1e3 / ns;
        let ratio = base / ours;
        println!(
            "| {case} | {:.2} M/s | {:.2} M/s | {ratio:.2}x | {:.2} M/s |",
            mfps(base),
            mfps(ours),
            mfps(full)
        );
        if ratio < RATIO_FLOOR {
            failed.push(format!(
                "{case}: ours/baseline {ratio:.2}x < {RATIO_FLOOR}x"
            ));
        }
        if case == "short" && mfps(full) < 4.0 {
            failed.push(format!(
                "{case}: full path {:.2} M frames/s < 4",
                mfps(full)
            ));
        }
    }
    if !failed.is_empty() {
        eprintln!("floors not met: {failed:?}");
        std::process::exit(1);
    }
}
