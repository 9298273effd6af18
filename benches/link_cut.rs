//! A lost link, measured: `cargo bench --bench link_cut` (as root; option
//! `-- --rounds N`, 10 by default).
//!
//! The customer and the provider run in network namespaces of their own
//! (`tests/common/netns.rs`); simulated motes send an uplink every 100 ms
//! through the site's broker. Each round takes the customer's link down
//! without a close (`ip link set down`: no FIN, no RST), measures from then
//! to the first event core-data stores from the provider, brings the link
//! back and waits for the customer to take its devices back. Prints the
//! median and the worst; fails when the median is 1.5 s or more, or when a
//! frame sent was not stored exactly once.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::netns::{Edge, Net, Site, CUSTOMER, PROVIDER, SITE};
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const FLOOR: Duration = Duration::from_millis(1500);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let rounds: usize = argv
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| argv.get(i + 1))
        .map_or(10, |v| v.parse().expect("--rounds N"));
    let Some(net) = Net::up() else {
        eprintln!("FAIL: needs root, ip, iptables and mosquitto");
        std::process::exit(1);
    };
    let site = Site::start().await;
    let entries = mote::entries(5, 11);
    let listen: SocketAddr = format!("{PROVIDER}:{}", common::free_port())
        .parse()
        .unwrap();
    let b = Edge::new(
        "edge-b",
        &net.p,
        PROVIDER,
        "devices: []\n",
        site.broker,
        &site.core.url(),
        Some(listen),
    );
    let a = Edge::new(
        "edge-a",
        &net.c,
        CUSTOMER,
        &mote::devices_yaml(&entries),
        site.broker,
        &site.core.url(),
        None,
    );
    let _provider = b.start();
    let _customer = a.start();
    a.offer(listen, &b, "cut");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            if t.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "--- customer ---\n{}\n--- provider ---\n{}",
                    a.log(),
                    b.log()
                );
                panic!("timed out: {what}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait("the contract taken up", &|| {
        a.metric("handover_releases_total") >= 1
    });
    wait("the provider armed", &|| {
        b.dir
            .path()
            .join("data/handover/provider/sessions/cut.pb")
            .exists()
    });
    let opts = SimOptions {
        devices: entries.len(),
        gateways: 2,
        rate: 10.0,
        frames: None,
        duration: Some(Duration::from_secs(8 * rounds as u64 + 20)),
        seed: 11,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: SITE.into(),
        port: site.broker.port(),
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let s = stop.clone();
    let motes = tokio::spawn(sim::run(target, opts, async move { s.notified().await }));
    let mut times = Vec::new();
    for round in 1..=rounds {
        // Cuts land at different points of the heartbeat interval.
        tokio::time::sleep(Duration::from_millis(1500 + (round as u64 * 97) % 250)).await;
        let stored = site.core.stored();
        let taken = b.metric("handover_takeovers_total");
        net.customer_link(false);
        let cut = Instant::now();
        let first = loop {
            if site.core.stored() > stored {
                break cut.elapsed();
            }
            assert!(
                cut.elapsed() < Duration::from_secs(15),
                "no event after the cut"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        wait("the takeover counted", &|| {
            b.metric("handover_takeovers_total") > taken
        });
        println!(
            "cut {round}: first provider event {} ms after the link went down",
            first.as_millis()
        );
        times.push(first);
        let released = a.metric("handover_releases_total");
        tokio::time::sleep(Duration::from_millis(500)).await;
        net.customer_link(true);
        wait("the customer took back", &|| {
            a.metric("handover_releases_total") > released
        });
    }
    stop.notify_one();
    let report = motes.await.unwrap().unwrap();
    let want = common::expected_ids(&report, 11, entries.len());
    let t = Instant::now();
    while !want
        .iter()
        .all(|id| site.core.state.events.lock().unwrap().contains_key(id))
        && t.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = want
        .iter()
        .filter(|id| !site.core.state.events.lock().unwrap().contains_key(*id))
        .count();
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "link cut (netns, ip link set down) to first provider event: median {} ms, worst {} ms over {} cuts (heartbeats 250 ms x 4); floor < {} ms",
        median.as_millis(),
        worst.as_millis(),
        times.len(),
        FLOOR.as_millis()
    );
    println!(
        "frames: {} sent, {lost} not stored; core-data answered {} posts, {} with 409 (stored already)",
        want.len(),
        site.core.state.posts.load(std::sync::atomic::Ordering::Relaxed),
        site.core.state.conflicts.load(std::sync::atomic::Ordering::Relaxed),
    );
    let mut failed = median >= FLOOR;
    if lost > 0 {
        eprintln!("FAIL: {lost} frames never stored");
        failed = true;
    }
    drop(net);
    if failed {
        eprintln!("FAIL: see above");
        std::process::exit(1);
    }
}
