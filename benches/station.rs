//! Basics Station gateways against the real `device-lorawan` binary
//! (release): the memory 100 connected, idle stations cost, and uplinks/s
//! through Station gateways against Semtech UDP gateways in the same run.
//!
//! `cargo bench --bench station` (options: `-- --stations N --frames F --rate R`).
//! Exits non-zero if an uplink is lost or published twice, if a station
//! fails to connect, if an idle station costs more than 64 kB of the
//! service's RSS, or if Station gateways carry under 90 % of the uplinks/s
//! Semtech UDP gateways carry in the same run.

use std::time::{Duration, Instant};

#[path = "../tests/common/scrape.rs"]
mod scrape;
#[path = "support/mod.rs"]
mod support;

use device_lorawan::lorawan::region::{Region, RegionSettings};
use device_lorawan::lorawan::Eui64;
use device_lorawan::sim::{self, mote, SimOptions, Target};

/// The most an idle, connected station may add to the service's RSS.
const PER_STATION_FLOOR_KB: f64 = 64.0;
/// Station gateways carry at least this share of UDP gateways' uplinks/s.
const STATION_VS_UDP: f64 = 0.9;

fn rss_kb(pid: u32) -> u64 {
    support::proc_kb(pid, "VmRSS:")
}

/// `frames` frames of 200 motes at `rate`/s through `target`; uplinks
/// published per second (first frame sent to last published).
fn throughput(
    target: Target,
    api: std::net::SocketAddr,
    frames: u64,
    rate: f64,
    start_fcnt: u32,
    rt: &tokio::runtime::Runtime,
) -> (f64, u64, u64) {
    let before = scrape::scrape(api, "lorawan_uplinks_published_total").unwrap_or(0);
    let opts = SimOptions {
        devices: 200,
        gateways: 2,
        rate,
        frames: Some(frames),
        duration: None,
        seed: 5,
        start_fcnt,
        ..Default::default()
    };
    let t = Instant::now();
    let report = rt
        .block_on(sim::run(target, opts, std::future::pending()))
        .unwrap();
    let want = report.expected.len() as u64;
    let published = || scrape::scrape(api, "lorawan_uplinks_published_total").unwrap_or(0) - before;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && published() < want {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    // Late copies would show as more publications.
    std::thread::sleep(Duration::from_millis(300));
    let got = published();
    (got as f64 / secs, want, got)
}

fn main() {
    let stations = support::arg("--stations", 100) as usize;
    let frames = support::arg("--frames", 20_000);
    let rate = support::arg("--rate", 4_000) as f64;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let devices = mote::devices_yaml(&mote::entries(200, 5));
    let (svc, udp, api) = support::service(
        dir.path(),
        &devices,
        &format!(
            "BasicStation: {{ Enabled: true, Bind: \"127.0.0.1:{port}\", MaxConnections: 1024 }}"
        ),
    );
    let pid = svc.0.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kb(pid);
    let base = format!("ws://127.0.0.1:{port}");
    let region = Region::new(RegionSettings::new(Default::default()));
    let (down, _keep) = tokio::sync::mpsc::channel(16);
    let links: Vec<_> = rt.block_on(async {
        let mut links = Vec::new();
        for i in 0..stations {
            let eui = Eui64::from_u64(0x0016_c001_0000_0000 + i as u64);
            match sim::station_gw::connect(&base, eui, region.clone(), down.clone(), false).await {
                Ok(l) => links.push(l),
                Err(e) => {
                    eprintln!("FAIL: station {i} did not connect: {e}");
                    std::process::exit(1);
                }
            }
        }
        links
    });
    std::thread::sleep(Duration::from_secs(2));
    let connected = rss_kb(pid);
    println!(
        "station: {stations} stations connected and idle: service RSS {:.1} MB → {:.1} MB (+{:.1} kB per station)",
        idle as f64 / 1024.0,
        connected as f64 / 1024.0,
        (connected as f64 - idle as f64) / stations as f64
    );
    drop(links);
    std::thread::sleep(Duration::from_millis(500));

    let mut failed = false;
    let per_station_kb = (connected as f64 - idle as f64) / stations as f64;
    if per_station_kb > PER_STATION_FLOOR_KB {
        eprintln!(
            "FAIL: an idle station costs {per_station_kb:.1} kB (floor {PER_STATION_FLOOR_KB} kB)"
        );
        failed = true;
    }
    let mut rates = Vec::new();
    // The second run's motes go on from the first's counters.
    let runs = [
        ("Semtech UDP", Target::Udp(udp), 0),
        (
            "Basics Station",
            Target::Station(base.clone()),
            (frames / 200 + 1) as u32,
        ),
    ];
    for (name, target, start) in runs {
        let (per_s, want, got) = throughput(target, api, frames, rate, start, &rt);
        println!("station: {name}: {got} of {want} uplinks published, {per_s:.0} uplinks/s (offered {rate}/s by 2 gateways)");
        if got != want {
            eprintln!("FAIL: {name}: {} lost or duplicated", want.abs_diff(got));
            failed = true;
        }
        rates.push(per_s);
    }
    if let [udp_rate, station_rate] = rates[..] {
        if station_rate < STATION_VS_UDP * udp_rate {
            eprintln!("FAIL: Station gateways carried {station_rate:.0} uplinks/s, under {:.0} % of UDP's {udp_rate:.0}", STATION_VS_UDP * 100.0);
            failed = true;
        }
    }
    println!(
        "station: service peak RSS {:.1} MB",
        support::proc_kb(pid, "VmHWM:") as f64 / 1024.0
    );
    if failed {
        std::process::exit(1);
    }
}
