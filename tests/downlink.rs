//! Class A downlinks end to end: a PUT on the device-service API, the
//! device's next uplink through a simulated gateway, the frame back through
//! the same gateway protocol (Semtech UDP, or ChirpStack MQTT in protobuf
//! and JSON), and the simulated mote applying the interval command exactly
//! as the firmware does. Counters, timing windows and acknowledgements are
//! checked from both ends.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use device_lorawan::config::{Config, StreamKind, Subscription};
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::lorawan::region::RegionName;
use device_lorawan::metrics::Metrics;
use device_lorawan::sim::{self, mote, ReceivedByMote, SimOptions, SimReport, Target};

const SEED: u64 = 21;
const INTERVAL: &str = "/api/v3/device/name/sim-mote-1/reportInterval";

fn opts(frames: u64, start_fcnt: u32) -> SimOptions {
    SimOptions {
        devices: 3,
        gateways: 2,
        rate: 20.0,
        frames: Some(frames),
        duration: None,
        seed: SEED,
        start_fcnt,
        linger: Duration::from_secs(3),
        ..Default::default()
    }
}

async fn put_interval(api: std::net::SocketAddr, seconds: u16) {
    let body = format!(r#"{{"reportInterval":"{seconds}"}}"#);
    let (status, answer) = common::http(api, "PUT", INTERVAL, &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Wait (bounded) until no downlink is waiting for a gateway's answer.
async fn settled(m: &Metrics) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.downlinks_sent.load(Relaxed)
        > m.downlinks_acked.load(Relaxed) + m.downlinks_failed.load(Relaxed)
    {
        assert!(Instant::now() < deadline, "a downlink was never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn interval_command(d: &ReceivedByMote, seconds: u16) {
    assert_eq!(d.device, "sim-mote-1");
    assert_eq!(d.fport, Some(2));
    assert_eq!(d.payload, seconds.to_be_bytes());
    assert_eq!(d.interval_s, u32::from(seconds), "the mote applied it");
    assert!(!d.ack, "the uplinks were unconfirmed");
}

/// RX1: one second after the uplink, on its channel and data rate (the
/// simulator sends on 868.1/868.3/868.5 MHz at SF7/8/9 in turn).
fn in_rx1(d: &ReceivedByMote) {
    assert_eq!(d.delay_us, 1_000_000, "{d:?}");
    assert!(
        [868_100_000, 868_300_000, 868_500_000].contains(&d.frequency),
        "{d:?}"
    );
    assert!(
        ["SF7BW125", "SF8BW125", "SF9BW125"].contains(&d.datr.as_str()),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_round_trip_in_rx1_with_a_persisted_downlink_counter() {
    let data = tempfile::tempdir().unwrap();
    let entries = mote::entries(3, SEED);
    let mut svc = common::Service::start(common::config(data.path()), entries.clone()).await;
    let udp = svc.bound.udp.unwrap();
    put_interval(svc.bound.api, 300).await;
    assert_eq!(svc.metrics.downlink_queue_depth.load(Relaxed), 1);

    let report = sim::run(Target::Udp(udp), opts(6, 0), std::future::pending())
        .await
        .unwrap();
    settled(&svc.metrics).await;
    assert_eq!(report.downlinks.len(), 1, "{:?}", report.downlinks);
    let d = &report.downlinks[0];
    interval_command(d, 300);
    in_rx1(d);
    assert_eq!((d.fcnt, d.fpending), (0, false));
    let m = &svc.metrics;
    assert_eq!(
        [
            &m.downlinks_queued,
            &m.downlinks_sent,
            &m.downlinks_acked,
            &m.downlinks_failed
        ]
        .map(|c| c.load(Relaxed)),
        [1, 1, 1, 0]
    );
    assert_eq!(m.downlink_queue_depth.load(Relaxed), 0);
    assert_eq!(svc.stop().await.len(), report.expected.len());

    // After a restart the downlink counter goes on from where it was, and
    // two queued commands go out in order, the first flagged FPending.
    let mut svc = common::Service::start(common::config(data.path()), entries).await;
    put_interval(svc.bound.api, 600).await;
    put_interval(svc.bound.api, 120).await;
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts(6, 6),
        std::future::pending(),
    )
    .await
    .unwrap();
    settled(&svc.metrics).await;
    let got: Vec<_> = report
        .downlinks
        .iter()
        .map(|d| (d.fcnt, d.fpending))
        .collect();
    assert_eq!(got, [(1, true), (2, false)], "{:?}", report.downlinks);
    interval_command(&report.downlinks[0], 600);
    interval_command(&report.downlinks[1], 120);
    assert_eq!(report.downlinks_dropped, 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_uplinks_are_acked_in_rx2_when_gateways_refuse_rx1() {
    let none = device_lorawan::devices::RxWindows::default();
    let (report, m) = region_run(none, none, true, RegionName::EU868).await;
    // Every confirmed uplink is acknowledged, in RX2 with the EU868 defaults.
    assert_eq!(report.refused, 6, "each RX1 was refused once");
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    for d in &report.downlinks {
        assert!(d.ack && d.fport.is_none() && d.payload.is_empty(), "{d:?}");
        assert_eq!(
            (d.delay_us, d.frequency, d.datr.as_str()),
            (2_000_000, 869_525_000, "SF12BW125")
        );
    }
    for device in ["sim-mote-1", "sim-mote-2"] {
        let fcnts: Vec<u32> = report
            .downlinks
            .iter()
            .filter(|d| d.device == device)
            .map(|d| d.fcnt)
            .collect();
        assert_eq!(
            fcnts,
            [0, 1, 2],
            "{device}: a refused RX1 does not spend a counter"
        );
    }
    assert_eq!(
        [&m.downlinks_sent, &m.downlinks_acked, &m.downlinks_failed].map(|c| c.load(Relaxed)),
        [12, 6, 6]
    );
}

/// Confirmed uplinks of two motes whose firmware sets `motes`, sent to a
/// service whose devices file says `service`; gateways refuse RX1 when
/// `refuse_rx1`.
async fn windows_run(
    service: device_lorawan::devices::RxWindows,
    motes: device_lorawan::devices::RxWindows,
    refuse_rx1: bool,
) -> SimReport {
    region_run(service, motes, refuse_rx1, RegionName::EU868)
        .await
        .0
}

/// [`windows_run`] with motes of `region` (named by their devices-file entries).
async fn region_run(
    service: device_lorawan::devices::RxWindows,
    motes: device_lorawan::devices::RxWindows,
    refuse_rx1: bool,
    region: RegionName,
) -> (SimReport, std::sync::Arc<Metrics>) {
    let data = tempfile::tempdir().unwrap();
    let mut entries = mote::entries(2, SEED);
    for e in &mut entries {
        e.rx_windows = service;
        e.region = Some(region);
    }
    let mut svc = common::Service::start(common::config(data.path()), entries).await;
    let o = SimOptions {
        devices: 2,
        frames: Some(6),
        confirmed: true,
        refuse_rx1,
        rx_windows: motes,
        region,
        ..opts(6, 0)
    };
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        o,
        std::future::pending(),
    )
    .await
    .unwrap();
    settled(&svc.metrics).await;
    let metrics = svc.metrics.clone();
    svc.stop().await;
    (report, metrics)
}

/// The receive windows are the device's own (devices file `rxWindows`),
/// as its firmware sets them; the simulated motes listen only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_follow_each_devices_receive_windows() {
    use device_lorawan::devices::RxWindows;
    // The network The Things Network's sketches assume: RX2 at SF9.
    let sf9 = RxWindows {
        rx2_data_rate: device_lorawan::lorawan::DataRate::parse("SF9BW125"),
        ..Default::default()
    };
    let report = windows_run(sf9, sf9, true).await;
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    assert_eq!(report.downlinks_missed, 0);
    for d in &report.downlinks {
        assert_eq!(
            (d.delay_us, d.frequency, d.datr.as_str()),
            (2_000_000, 869_525_000, "SF9BW125")
        );
    }

    // A mote whose firmware listens for RX2 at SF9 while the service sends
    // the EU868 default (SF12) never hears it: every ACK is missed.
    let report = windows_run(RxWindows::default(), sf9, true).await;
    assert!(report.downlinks.is_empty(), "{:?}", report.downlinks);
    assert_eq!(report.downlinks_missed, 6);

    // RX1 with a longer delay and a data-rate offset, on both sides.
    let slow = RxWindows {
        rx1_delay: Some(3),
        rx1_dr_offset: Some(2),
        ..Default::default()
    };
    let report = windows_run(slow, slow, false).await;
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    for d in &report.downlinks {
        assert_eq!(d.delay_us, 3_000_000);
        // The simulator's uplinks go at SF7..SF9: RX1 answers two rates lower.
        assert!(
            ["SF9BW125", "SF10BW125", "SF11BW125"].contains(&d.datr.as_str()),
            "{d:?}"
        );
    }
    // The service on the defaults, the mote on RX1 at 3 s: missed.
    let report = windows_run(RxWindows::default(), slow, false).await;
    assert!(report.downlinks.is_empty());
    assert_eq!(report.downlinks_missed, 6);
}

/// Devices of other regions, on an EU868 site: a US915 mote sends on its
/// sub-band's 125 kHz channels and is answered in RX1 on the 500 kHz
/// downlink channel of its uplink channel (RP002 §2.5.7), and in RX2 at
/// 923.3 MHz SF12BW500; an AS923 mote's RX2 is 923.2 MHz at SF10 (DR2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_follow_each_devices_region() {
    use device_lorawan::devices::RxWindows;
    let none = RxWindows::default();
    let (report, _) = region_run(none, none, false, RegionName::US915).await;
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    let us915_down: Vec<u32> = (0..8).map(|k| 923_300_000 + 600_000 * k).collect();
    for d in &report.downlinks {
        assert!(us915_down.contains(&d.frequency), "{d:?}");
        assert!(d.datr.ends_with("BW500"), "{d:?}");
        assert_eq!(d.delay_us, 1_000_000);
    }
    let (report, _) = region_run(none, none, true, RegionName::US915).await;
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    for d in &report.downlinks {
        assert_eq!(
            (d.frequency, d.datr.as_str(), d.delay_us),
            (923_300_000, "SF12BW500", 2_000_000)
        );
    }
    let (report, _) = region_run(none, none, true, RegionName::AS923).await;
    assert_eq!(report.downlinks.len(), 6, "{:?}", report.downlinks);
    for d in &report.downlinks {
        assert_eq!((d.frequency, d.datr.as_str()), (923_200_000, "SF10BW125"));
    }
    assert_eq!(report.downlinks_missed, 0);
}

fn mqtt_config(data: &std::path::Path, port: u16) -> Config {
    let mut c = common::config(data);
    c.ingest.udp.enabled = false;
    c.ingest.mqtt.enabled = true;
    c.ingest.mqtt.port = port;
    c.ingest.mqtt.client_id = format!("device-lorawan-downlink-{port}");
    c.ingest.mqtt.subscriptions = vec![Subscription {
        topic: "eu868/gateway/+/event/up".into(),
        kind: StreamKind::Gateway,
    }];
    c
}

async fn mqtt_round_trip(format: WireFormat) -> SimReport {
    let Some(broker) = common::Mosquitto::start() else {
        return SimReport::default();
    };
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(
        mqtt_config(data.path(), broker.port),
        mote::entries(3, SEED),
    )
    .await;
    // Subscribed to the uplinks and to the acknowledgements.
    common::until("service subscribed", Duration::from_secs(20), || {
        svc.metrics.mqtt_subacks.load(Relaxed) >= 2
    })
    .await;
    put_interval(svc.bound.api, 900).await;
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format,
        prefix: "eu868/".into(),
    };
    let report = sim::run(target, opts(6, 0), std::future::pending())
        .await
        .unwrap();
    settled(&svc.metrics).await;
    assert_eq!(
        report.downlinks.len(),
        1,
        "{format:?}: {:?}",
        report.downlinks
    );
    interval_command(&report.downlinks[0], 900);
    in_rx1(&report.downlinks[0]);
    assert_eq!(
        svc.metrics.downlinks_acked.load(Relaxed),
        1,
        "{format:?}: event/ack read"
    );
    assert_eq!(svc.stop().await.len(), report.expected.len());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpstack_bridge_round_trip_protobuf() {
    mqtt_round_trip(WireFormat::Protobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpstack_bridge_round_trip_json() {
    mqtt_round_trip(WireFormat::JsonV4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_silent_gateway_is_refused_and_kept() {
    // The uplink arrives by UDP from a gateway that never sent PULL_DATA:
    // nothing can be sent, the failure is counted, the command stays queued.
    let data = tempfile::tempdir().unwrap();
    let entries = mote::entries(1, SEED);
    let mut svc = common::Service::start(common::config(data.path()), entries.clone()).await;
    put_interval(svc.bound.api, 300).await;
    let mut m = mote::Mote::new(&entries[0]);
    let (_, phy) = m.next_frame();
    let up = device_lorawan::ingest::bridge::GatewayUplink {
        phy,
        rx: device_lorawan::pipeline::uplink::RxMeta {
            time_ns: None,
            gps_time_ns: None,
            station: None,
            gateway: device_lorawan::lorawan::Eui64::from_u64(99),
            rssi: -50,
            snr: 5.0,
            tmst: Some(1_000),
            frequency: Some(868_100_000),
            datr: device_lorawan::lorawan::DataRate::parse("SF7BW125"),
        },
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dgram = device_lorawan::ingest::udp::push_data(1, up.rx.gateway, std::slice::from_ref(&up));
    sock.send_to(&dgram, svc.bound.udp.unwrap()).unwrap();
    // Refused in RX1, then in RX2.
    common::until("downlink failures counted", Duration::from_secs(10), || {
        svc.metrics.downlinks_failed.load(Relaxed) >= 2
    })
    .await;
    assert_eq!(svc.metrics.downlinks_failed.load(Relaxed), 2);
    assert_eq!(svc.metrics.downlinks_acked.load(Relaxed), 0);
    assert_eq!(
        svc.metrics.downlink_queue_depth.load(Relaxed),
        1,
        "kept for the next uplink"
    );
    svc.stop().await;
}

/// Semtech UDP has no authentication: a PULL_DATA in a gateway's name from
/// another address must not take its downlinks (address pinning), unless
/// the site follows moving gateways (`FollowAddress`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_pull_data_does_not_redirect_downlinks() {
    use device_lorawan::ingest::udp::{push_data, PULL_DATA};
    use device_lorawan::lorawan::Eui64;
    for follow in [false, true] {
        let data = tempfile::tempdir().unwrap();
        let mut cfg = common::config(data.path());
        cfg.ingest.udp.follow_address = follow;
        let entries = mote::entries(1, SEED);
        let mut svc = common::Service::start(cfg, entries.clone()).await;
        let udp = svc.bound.udp.unwrap();
        let gw = Eui64::from_u64(0xb827_ebff_fe00_0001);
        let pull = |s: &std::net::UdpSocket| {
            let mut p = vec![2, 0, 1, PULL_DATA];
            p.extend_from_slice(&gw.0);
            s.send_to(&p, udp).unwrap();
        };
        let real = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let spoof = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        for s in [&real, &spoof] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        pull(&real);
        let mut buf = [0u8; 2048];
        assert_eq!(real.recv(&mut buf).unwrap(), 4, "PULL_ACK");
        pull(&spoof);
        put_interval(svc.bound.api, 300).await;
        let mut m = mote::Mote::new(&entries[0]);
        let (_, phy) = m.next_frame();
        let up = device_lorawan::ingest::bridge::GatewayUplink {
            phy,
            rx: device_lorawan::pipeline::uplink::RxMeta {
                gateway: gw,
                rssi: -50,
                snr: 9.0,
                tmst: Some(1_000_000),
                frequency: Some(868_100_000),
                datr: device_lorawan::lorawan::DataRate::parse("SF7BW125"),
                time_ns: None,
                gps_time_ns: None,
                station: None,
            },
        };
        real.send_to(&push_data(1, gw, &[up]), udp).unwrap();
        // The PULL_RESP (type 3) goes to one of the two sockets.
        let got = |s: &std::net::UdpSocket| {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut b = [0u8; 2048];
            while Instant::now() < deadline {
                if let Ok(n) = s.recv(&mut b) {
                    if n > 4 && b[3] == 3 {
                        return true;
                    }
                }
            }
            false
        };
        if follow {
            assert!(got(&spoof), "followed to the new address");
        } else {
            assert!(got(&real), "the downlink reached the real gateway");
            assert!(!got(&spoof), "the spoofer got nothing");
            assert_eq!(
                svc.metrics
                    .rejected_count(device_lorawan::metrics::Reason::GatewayRefused),
                1
            );
        }
        svc.stop().await;
    }
}
