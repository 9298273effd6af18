//! The handover under real network faults, not killed processes: the
//! customer and the provider each run in a network namespace of their own,
//! joined to this test's namespace (the site: broker, core-data stand-in,
//! the simulated gateway) by veth pairs, routed through it.
//!
//! 1. The customer's link goes down without a close (`ip link set down`:
//!    power lost, cable pulled). Nothing closes the heartbeat stream; the
//!    provider takes over when the heartbeats stop (250 ms × 4). The link
//!    comes back: the customer's next message is refused as stale, and it
//!    takes its devices back under a higher epoch.
//! 2. Only the path between the two edges is cut (iptables drops their
//!    packets both ways where this namespace routes them), while both still reach the broker and core-data: a
//!    partition. The provider cannot tell it from a dead customer and takes
//!    over; the customer keeps publishing its devices (the contract's rule:
//!    the customer keeps them). Both publish the same frames under the same
//!    event ids, so core-data stores each once (409 for the second). Healed,
//!    the customer learns it was fenced and takes back.
//!
//! Every frame sent is stored exactly once, no counter reset is seen, and
//! each holding ends with a receipt both edges keep. Needs root (CI runs as
//! root), `ip` (iproute2), iptables, mosquitto.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::netns::{Edge, Net, Site, CUSTOMER, PROVIDER, SITE};
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 77;
const DEVICES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_and_a_partition_are_taken_over_and_handed_back_losing_and_doubling_nothing() {
    let Some(net) = Net::up() else {
        return;
    };
    let site = Site::start().await;
    let (broker, core) = (site.broker, &site.core);
    let entries = mote::entries(DEVICES, SEED);
    let listen: SocketAddr = format!("{PROVIDER}:{}", common::free_port())
        .parse()
        .unwrap();
    let b = Edge::new(
        "edge-b",
        &net.p,
        PROVIDER,
        "devices: []\n",
        broker,
        &core.url(),
        Some(listen),
    );
    let a = Edge::new(
        "edge-a",
        &net.c,
        CUSTOMER,
        &mote::devices_yaml(&entries),
        broker,
        &core.url(),
        None,
    );
    let _provider = b.start();
    let _customer = a.start();
    let logs = || {
        eprintln!(
            "--- customer ---\n{}\n--- provider ---\n{}",
            a.log(),
            b.log()
        );
    };
    a.offer(listen, &b, "site-1");
    common::until(
        "the customer took the contract up",
        Duration::from_secs(15),
        || a.metric("handover_releases_total") >= 1,
    )
    .await;
    common::until("the provider armed", Duration::from_secs(15), || {
        b.dir
            .path()
            .join("data/handover/provider/sessions/site-1.pb")
            .exists()
    })
    .await;

    // 6 frames a second, heard by both edges through the broker.
    let opts = SimOptions {
        devices: DEVICES,
        gateways: 2,
        rate: 6.0,
        frames: Some(150),
        duration: None,
        seed: SEED,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: SITE.into(),
        port: broker.port(),
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let sim = tokio::spawn(sim::run(target, opts, std::future::pending()));
    common::until("the customer delivering", Duration::from_secs(15), || {
        core.stored() >= 12
    })
    .await;

    // 1. The customer's link is lost without a close.
    let stored = core.stored();
    net.customer_link(false);
    let cut = Instant::now();
    let t = Instant::now();
    while b.metric("handover_takeovers_total") < 1 {
        if t.elapsed() > Duration::from_secs(10) {
            logs();
            panic!("the provider did not take over a lost link");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    common::until(
        "the provider's first event",
        Duration::from_secs(10),
        || core.stored() > stored,
    )
    .await;
    eprintln!(
        "link cut: first provider event after {} ms",
        cut.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.customer_link(true);
    let t = Instant::now();
    while a.metric("handover_releases_total") < 2 {
        if t.elapsed() > Duration::from_secs(20) {
            logs();
            panic!("the customer did not take back after the link returned");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2. A partition: both edges still reach the site, not each other.
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.partition(true);
    let t = Instant::now();
    while b.metric("handover_takeovers_total") < 2 {
        if t.elapsed() > Duration::from_secs(10) {
            logs();
            panic!("the provider did not take over in a partition");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both publish for a while: the customer keeps its devices.
    let customer_before = a.metric("lorawan_uplinks_published_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        a.metric("lorawan_uplinks_published_total") > customer_before,
        "the customer keeps publishing in a partition"
    );
    net.partition(false);
    let t = Instant::now();
    while a.metric("handover_releases_total") < 3 {
        if t.elapsed() > Duration::from_secs(20) {
            logs();
            panic!("the customer did not take back after the partition healed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every frame sent, stored once.
    let report = sim.await.unwrap().unwrap();
    let want = common::expected_ids(&report, SEED, DEVICES);
    let t = Instant::now();
    while !want
        .iter()
        .all(|id| core.state.events.lock().unwrap().contains_key(id))
    {
        if t.elapsed() > Duration::from_secs(30) {
            logs();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let events = core.state.events.lock().unwrap();
        let invalid = core.state.invalid.lock().unwrap();
        common::assert_stored_exactly(&events, &invalid, &want);
    }
    for e in [&a, &b] {
        assert_eq!(
            e.metric("lorawan_counter_resets_total"),
            0,
            "no false reboots"
        );
    }
    eprintln!(
        "core-data: {} posts, {} answered 409 (the partition's frames both edges published)",
        core.state.posts.load(std::sync::atomic::Ordering::Relaxed),
        core.state
            .conflicts
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    // Each holding ended with a receipt, kept and verified on both edges.
    common::until(
        "both holdings' receipts on both edges",
        Duration::from_secs(10),
        || a.receipts().len() == 2 && b.receipts().len() == 2,
    )
    .await;
    for r in a.receipts() {
        let out = a
            .command()
            .args(["handover", "receipt", "verify"])
            .arg(&r)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("customer's signatures hold"), "{text}");
    }
}
