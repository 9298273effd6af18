//! The real binary, killed with SIGKILL mid-run and restarted: frame
//! counters survive, so replays of everything heard before the crash stay
//! rejected, and new frames still flow.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use device_lorawan::sim::mote;

fn published(path: &Path) -> Vec<(String, u64, u64)> {
    common::published_lines(path)
}

fn wait_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while published(path).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn send(udp: std::net::SocketAddr, frames: u64, start_fcnt: u32) {
    common::sim_udp(udp, 5, frames, start_fcnt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_kill_9() {
    // Strict counters: a replay of the whole pre-crash sequence must be refused.
    let devices = mote::devices_yaml(&mote::entries(3, 5)).replace("reset-tolerant", "strict");
    let env = common::binary_env(&devices, "SyncInterval: 10s", "DedupWindow: 50ms", "");
    let (config, out, udp) = (env.config.clone(), env.out.clone(), env.udp);

    let mut svc = common::start_binary(&config);
    send(udp, 12, 0).await; // fcnt 0..=3 for each of 3 motes
    wait_lines(&out, 12);
    assert_eq!(published(&out).len(), 12);
    svc.kill().unwrap(); // SIGKILL: no shutdown path runs, no fsync
    svc.wait().unwrap();

    let mut svc = common::start_binary(&config);
    send(udp, 12, 0).await; // the same 12 frames again: replays
    send(udp, 6, 4).await; // then fcnt 4..=5: new
                           // The pipeline is FIFO: once the last frame sent (mote 3, fcnt 5) is
                           // published, every replay before it has been judged.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !published(&out).contains(&("sim-mote-3".into(), 5, 0)) {
        assert!(Instant::now() < deadline, "last frame never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    svc.kill().unwrap();
    svc.wait().unwrap();

    let lines = published(&out);
    let distinct: BTreeSet<_> = lines.iter().cloned().collect();
    assert_eq!(
        lines.len(),
        18,
        "12 before the crash, 6 new after; replays refused: {lines:?}"
    );
    assert_eq!(distinct.len(), 18, "nothing published twice");
    for d in 1..=3 {
        for f in 0..=5 {
            assert!(
                distinct.contains(&(format!("sim-mote-{d}"), f, 0)),
                "mote {d} fcnt {f}"
            );
        }
    }
}
