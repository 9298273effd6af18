//! Semtech UDP end to end: simulated LMIC motes and gateways → the service →
//! readings, with every fault the simulator can inject.

mod common;

use std::time::Duration;

use device_lorawan::metrics::Reason;
use device_lorawan::sim::{self, mote, Faults, SimOptions, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_good_frame_once_every_fault_counted() {
    let data = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        devices: 3,
        gateways: 2,
        rate: 300.0,
        // 3 motes × 24 frames: three boots of 7 frames, then 3 frames, so
        // the last reboot is confirmed by a following frame.
        frames: Some(72),
        duration: None,
        seed: 7,
        faults: Faults {
            bad_mic: 0.1,
            replay: 0.15,
            garbage: 0.15,
            duplicate: 0.2,
        },
        reboot_every: Some(7),
        start_fcnt: 0,
        ..Default::default()
    };
    let mut config = common::config(data.path());
    // A simulated boot lasts 7 frames × 10 ms here, and frames after a reboot
    // are byte-identical to the previous boot's (as with LMIC's ttn-abp):
    // the window must be shorter than a boot, as it is by far on real motes.
    config.ingest.dedup_window = Duration::from_millis(30);
    let mut svc = common::Service::start(config, mote::entries(3, 7)).await;
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts,
        std::future::pending(),
    )
    .await
    .unwrap();
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    let got = svc.stop().await;

    assert!(
        report.bad_mic > 0 && report.replays > 0 && report.garbage > 0 && report.duplicates > 0,
        "{report:?}"
    );
    common::assert_exactly(&report, &got);
    let m = &svc.metrics;
    // Each corrupted frame reached both gateways; each is rejected, never merged.
    assert_eq!(m.rejected_count(Reason::Mic), 2 * report.bad_mic);
    assert!(
        m.rejected_count(Reason::Replay) >= 1 && m.rejected_count(Reason::Replay) <= report.replays
    );
    let garbage: u64 = [
        Reason::BadFrame,
        Reason::MalformedUdp,
        Reason::MalformedJson,
        Reason::MalformedBase64,
        Reason::UnknownDevAddr,
    ]
    .iter()
    .map(|r| m.rejected_count(*r))
    .sum();
    assert_eq!(
        garbage, report.garbage,
        "every garbage input is rejected under some reason"
    );
    // Three reboots per mote, each confirmed.
    assert_eq!(
        m.counter_resets.load(std::sync::atomic::Ordering::Relaxed),
        9
    );
    // Every published uplink was heard by both gateways (more with duplicates)
    // and carries the best one's RSSI (gateway 1 is the strongest).
    for u in &got {
        assert!(
            u.gateways >= 2,
            "{} fcnt {} heard by {}",
            u.device,
            u.fcnt,
            u.gateways
        );
        assert!(u.rx.rssi >= -44, "best RSSI kept, got {}", u.rx.rssi);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_devices_and_oversize_datagrams_are_counted() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.ingest.max_message_bytes = 512;
    // The service knows mote 1 only; the simulator sends motes 1 and 2.
    let mut svc = common::Service::start(config, mote::entries(1, 3)).await;
    let udp = svc.bound.udp.unwrap();
    let opts = SimOptions {
        devices: 2,
        gateways: 1,
        rate: 200.0,
        frames: Some(10),
        duration: None,
        seed: 3,
        ..Default::default()
    };
    let report = sim::run(Target::Udp(udp), opts, std::future::pending())
        .await
        .unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&vec![2u8; 600], udp).await.unwrap();
    svc.wait_published(5, Duration::from_secs(10)).await;
    // The oversize datagram was sent after the frames; wait for its count.
    for _ in 0..500 {
        if svc.metrics.rejected_count(Reason::Oversize) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = svc.stop().await;
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|u| u.device.as_ref() == "sim-mote-1"));
    assert_eq!(svc.metrics.rejected_count(Reason::UnknownDevAddr), 5);
    assert_eq!(svc.metrics.rejected_count(Reason::Oversize), 1);
    assert_eq!(report.expected.len(), 10);
}
