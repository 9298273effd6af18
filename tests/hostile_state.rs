//! Damaged or hostile state on disk, through the real binary and its
//! restarts: an outbox journal whose header says "nothing waits" must stop
//! the start (naming the file), never drop what waits; a downlink queued
//! larger than any frame (an older version's queue, a hand-edited file)
//! must never crash the service at the device's next uplink.

mod common;

use std::process::Command;
use std::time::Duration;

use device_lorawan::sim::mote;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_header_stops_the_start_and_loses_nothing() {
    let mut cd = common::core_data::CoreData::start().await;
    cd.stop(); // core-data down: events wait in the outbox
    let edgex = format!(
        "Delivery: rest, CoreData: {{ Url: \"{}\", Timeout: 1s }}",
        cd.url()
    );
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 61)),
        "",
        "DedupWindow: 50ms",
        &edgex,
    );
    let mut svc = common::start_binary(&env.config);
    let report = common::sim_udp(env.udp, 61, 9, 0).await;
    common::until("9 journaled", Duration::from_secs(10), || {
        common::published_lines(&env.out).len() >= 9
    })
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();
    // The header's base sequence set to 0 ("every record delivered").
    let log = env.dir.path().join("data/outbox/outbox.log");
    let good = std::fs::read(&log).unwrap();
    let mut bad = good.clone();
    bad[8..16].copy_from_slice(&0u64.to_le_bytes());
    std::fs::write(&log, &bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["run", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a damaged journal");
    assert!(
        err.contains("outbox.log") && err.contains("bad header"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bad,
        "the damaged file is kept as it was, for inspection"
    );
    // Repaired (here: restored), everything that waited is delivered.
    std::fs::write(&log, &good).unwrap();
    cd.restart().await;
    let mut svc = common::start_binary(&env.config);
    let want = common::expected_ids(&report, 61, 3);
    common::until("all 9 stored", Duration::from_secs(20), || {
        cd.stored() == want.len()
    })
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_queued_downlink_never_crashes_the_service() {
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 62)),
        "",
        "DedupWindow: 50ms",
        "",
    );
    // A queue written by hand (or by an older version): 250 bytes on FPort 2.
    std::fs::create_dir_all(env.dir.path().join("data")).unwrap();
    let queued = serde_json::json!({
        "next_seq": 2,
        "devices": { "sim-mote-1": [ { "seq": 1, "fport": 2, "payload": "ab".repeat(250), "attempts": 0 } ] }
    });
    std::fs::write(
        env.dir.path().join("data/downlinks.json"),
        queued.to_string(),
    )
    .unwrap();
    for round in 0..2u32 {
        let mut svc = common::start_binary(&env.config);
        common::sim_udp(env.udp, 62, 12, 4 * round).await;
        common::until("uplinks published", Duration::from_secs(10), || {
            common::published_lines(&env.out).len() >= 12 * (round as usize + 1)
        })
        .await;
        let metrics = common::http(env.api, "GET", "/metrics", "").await.1;
        assert!(svc.try_wait().unwrap().is_none(), "the service died");
        let failed: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("lorawan_downlinks_failed_total ")?
                    .parse()
                    .ok()
            })
            .unwrap();
        // The first run refuses it (too long for any window) at each
        // uplink until MaxAttempts; the restarted one finds it gone.
        assert_eq!(failed, if round == 0 { 3 } else { 0 }, "{metrics}");
        svc.kill().unwrap();
        svc.wait().unwrap();
    }
    // After MaxAttempts (3) refusals the command was dropped, counted.
    let q = std::fs::read_to_string(env.dir.path().join("data/downlinks.json")).unwrap();
    assert!(!q.contains(&"ab".repeat(250)), "{q}");
}
