//! OTAA end to end: simulated OTAA motes (LMIC-like, random DevNonces)
//! join through simulated gateways, take their JoinAccept only in their
//! join windows, derive their session and send data that the service
//! decodes under it; ABP motes beside them go on as before. Then the
//! faults: a lost JoinAccept (the mote asks again, the old session keeps
//! working), a replayed JoinRequest after a restart, and a US915 mote.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use device_lorawan::ingest::bridge::{GatewayUplink, WireFormat};
use device_lorawan::lorawan::region::{MacVersionName, RegionName};
use device_lorawan::lorawan::Eui64;
use device_lorawan::metrics::Reason;
use device_lorawan::pipeline::uplink::RxMeta;
use device_lorawan::sim::{self, mote, SimOptions, SimReport, Target};

const SEED: u64 = 61;

fn opts(abp: usize, otaa: usize, frames: u64) -> SimOptions {
    SimOptions {
        devices: abp,
        otaa_devices: otaa,
        gateways: 2,
        rate: 20.0,
        frames: Some(frames),
        duration: None,
        seed: SEED,
        linger: Duration::from_secs(2),
        ..Default::default()
    }
}

fn entries(
    abp: usize,
    otaa: usize,
    version: MacVersionName,
) -> Vec<device_lorawan::devices::DeviceEntry> {
    let mut e = mote::entries(abp, SEED);
    e.extend(mote::otaa_entries(otaa, SEED, version));
    e
}

/// Every OTAA mote joined once, in RX1 (5 s after its JoinRequest).
fn assert_joined_in_rx1(report: &SimReport, otaa: usize) {
    assert_eq!(report.joins.len(), otaa, "{:?}", report.joins);
    for j in &report.joins {
        assert_eq!(j.delay_us, 5_000_000, "{j:?}");
    }
    let mut names: Vec<&str> = report.joins.iter().map(|j| j.device.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), otaa, "each mote joined once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaa_motes_join_and_send_data_beside_abp_ones() {
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(
        common::config(data.path()),
        entries(2, 3, MacVersionName::V1_0_3),
    )
    .await;
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts(2, 3, 60),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_joined_in_rx1(&report, 3);
    assert_eq!(report.join_requests, 3);
    let otaa_frames = report
        .expected
        .iter()
        .filter(|e| e.device.starts_with("sim-otaa"))
        .count();
    assert!(otaa_frames >= 15, "{otaa_frames} OTAA data frames");
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    let m = svc.metrics.clone();
    let got = svc.stop().await;
    // Every frame once, OTAA ones in their first joined session (epoch 1).
    common::assert_exactly(&report, &got);
    assert!(got
        .iter()
        .filter(|u| u.device.starts_with("sim-otaa"))
        .all(|u| u.epoch == 1));
    assert_eq!(m.joins_accepted.load(Relaxed), 3);
    assert_eq!(m.sessions_activated.load(Relaxed), 3);
    assert_eq!(m.rejected_count(Reason::DevNonce), 0);
}

/// The API shows an OTAA device's session and join state, never a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_join_state_without_keys() {
    let data = tempfile::tempdir().unwrap();
    let devices = entries(1, 1, MacVersionName::V1_0_3);
    let svc = common::Service::start(common::config(data.path()), devices.clone()).await;
    let api = svc.bound.api;
    let (code, body) = common::http(api, "GET", "/api/v3/lorawan/device/sim-otaa-1", "").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["activation"].as_str(), v["devAddr"].is_null()),
        (Some("otaa"), true)
    );
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts(1, 1, 8),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_joined_in_rx1(&report, 1);
    let (_, body) = common::http(api, "GET", "/api/v3/lorawan/device/sim-otaa-1", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["devAddr"], report.joins[0].dev_addr.to_string(), "{v}");
    assert_eq!(v["join"]["nextJoinNonce"], 1);
    assert_eq!(v["join"]["usedDevNonces"], 1);
    assert!(v["join"]["lastJoin"].as_u64().unwrap() > 1_700_000_000);
    assert!(
        v["join"].get("pendingDevAddr").is_none(),
        "the session is in use: {v}"
    );
    let key = hex::encode(devices[1].app_key.unwrap().expose());
    assert!(!body.to_lowercase().contains(&key), "no AppKey in {body}");
    let (_, abp) = common::http(api, "GET", "/api/v3/lorawan/device/sim-mote-1", "").await;
    assert!(abp.contains("\"activation\":\"abp\""), "{abp}");
    let (code, _) = common::http(api, "GET", "/api/v3/lorawan/device/nobody", "").await;
    assert_eq!(code, 404);
}

/// A JoinRequest of mote `i` with DevNonce `nonce`, as its gateway sends it.
async fn send_join_request(udp: std::net::SocketAddr, i: usize, nonce: u16, valid_key: bool) {
    let e = &mote::otaa_entries(i + 1, SEED, MacVersionName::V1_0_3)[i];
    let key = if valid_key {
        e.app_key.unwrap()
    } else {
        device_lorawan::lorawan::AesKey::new([9; 16])
    };
    let phy = device_lorawan::lorawan::join::build_join_request(
        &key,
        e.join_eui.unwrap(),
        e.dev_eui,
        nonce,
    );
    let up = GatewayUplink {
        phy,
        rx: RxMeta {
            time_ns: None,
            gps_time_ns: None,
            station: None,
            gateway: Eui64::from_u64(0xb827_ebff_fe00_0001),
            rssi: -50,
            snr: 7.0,
            tmst: Some(1_000_000),
            frequency: Some(868_100_000),
            datr: device_lorawan::lorawan::DataRate::parse("SF7BW125"),
        },
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dgram = device_lorawan::ingest::udp::push_data(7, up.rx.gateway, &[up]);
    sock.send_to(&dgram, udp).await.unwrap();
}

/// The join state is durable: after a restart, a JoinRequest replaying a
/// DevNonce already used is refused, while the device's session (joined
/// before the restart) still decodes its data; a bad MIC and an unknown
/// JoinEUI are refused by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_state_survives_a_restart_and_replays_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let devices = entries(0, 1, MacVersionName::V1_0_3);
    let mut svc = common::Service::start(common::config(data.path()), devices.clone()).await;
    let first = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts(0, 1, 6),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_joined_in_rx1(&first, 1);
    svc.wait_published(first.expected.len() as u64, Duration::from_secs(10))
        .await;
    svc.stop().await;

    let mut svc = common::Service::start(common::config(data.path()), devices).await;
    let udp = svc.bound.udp.unwrap();
    // The mote's first DevNonce, used before the restart.
    let used = {
        let e = &mote::otaa_entries(1, SEED, MacVersionName::V1_0_3)[0];
        let mut m = mote::Mote::new(e);
        let phy = m.join_request(std::time::Instant::now());
        u16::from_le_bytes([phy[17], phy[18]])
    };
    send_join_request(udp, 0, used, true).await;
    send_join_request(udp, 0, used.wrapping_add(100), false).await;
    common::until("both refusals", Duration::from_secs(5), || {
        svc.metrics.rejected_count(Reason::DevNonce) == 1
            && svc.metrics.rejected_count(Reason::Mic) == 1
    })
    .await;
    assert_eq!(svc.metrics.joins_accepted.load(Relaxed), 0);
    svc.stop().await;
}

/// Joins through the ChirpStack gateway bridge on mosquitto, in both of its
/// marshalers: the JoinAccept goes back on `command/down`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaa_joins_through_the_gateway_bridge() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    for (i, format) in [WireFormat::Protobuf, WireFormat::JsonV4]
        .into_iter()
        .enumerate()
    {
        let data = tempfile::tempdir().unwrap();
        let mut c = common::config(data.path());
        c.ingest.udp.enabled = false;
        c.ingest.mqtt.enabled = true;
        c.ingest.mqtt.port = broker.port;
        c.ingest.mqtt.client_id = format!("otaa-bridge-{i}");
        let mut svc = common::Service::start(c, entries(0, 2, MacVersionName::V1_0_4)).await;
        common::until("the ingest subscriptions", Duration::from_secs(10), || {
            svc.metrics.mqtt_subacks.load(Relaxed) >= 3
        })
        .await;
        let target = Target::Mqtt {
            host: "127.0.0.1".into(),
            port: broker.port,
            format,
            prefix: String::new(),
        };
        let o = SimOptions {
            mac_version: MacVersionName::V1_0_4,
            ..opts(0, 2, 20)
        };
        let report = sim::run(target, o, std::future::pending()).await.unwrap();
        assert_joined_in_rx1(&report, 2);
        svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
            .await;
        let got = svc.stop().await;
        common::assert_exactly(&report, &got);
        assert!(!got.is_empty(), "{format:?}");
    }
}

/// A US915 mote joins on its sub-band and is answered on the 500 kHz
/// downlink channel of its uplink channel; an AS923 one with the dwell time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaa_joins_in_other_regions() {
    let us915_down: Vec<u32> = (0..8).map(|k| 923_300_000 + 600_000 * k).collect();
    for region in [RegionName::US915, RegionName::AS923] {
        let data = tempfile::tempdir().unwrap();
        let mut devices = entries(0, 2, MacVersionName::V1_0_3);
        for e in &mut devices {
            e.region = Some(region);
        }
        let mut svc = common::Service::start(common::config(data.path()), devices).await;
        let o = SimOptions {
            region,
            ..opts(0, 2, 20)
        };
        let report = sim::run(
            Target::Udp(svc.bound.udp.unwrap()),
            o,
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_joined_in_rx1(&report, 2);
        for j in &report.joins {
            match region {
                RegionName::US915 => {
                    assert!(
                        us915_down.contains(&j.frequency) && j.datr.ends_with("BW500"),
                        "{j:?}"
                    )
                }
                _ => assert!([923_200_000, 923_400_000].contains(&j.frequency), "{j:?}"),
            }
        }
        svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
            .await;
        let got = svc.stop().await;
        common::assert_exactly(&report, &got);
    }
}

/// A JoinAccept that never reaches the mote: it asks again (a new
/// DevNonce), the service answers with a new session, and only the one the
/// mote uses becomes its session (epoch 1: one activation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_join_accept_is_asked_for_again() {
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(
        common::config(data.path()),
        entries(1, 2, MacVersionName::V1_0_3),
    )
    .await;
    let o = SimOptions {
        lost_join_accepts: 1,
        duration: Some(Duration::from_secs(20)),
        ..opts(1, 2, 70)
    };
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        o,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.joins_lost, 2);
    assert_eq!(report.join_requests, 4);
    assert_joined_in_rx1(&report, 2);
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    let m = svc.metrics.clone();
    let got = svc.stop().await;
    common::assert_exactly(&report, &got);
    assert_eq!(m.joins_accepted.load(Relaxed), 4);
    assert_eq!(m.sessions_activated.load(Relaxed), 2);
}

/// A gateway of our own on a UDP socket: PULL_DATA so the service can
/// answer, PUSH_DATA of one frame, and PULL_RESP → TX_ACK.
struct FakeGateway {
    sock: tokio::net::UdpSocket,
    eui: Eui64,
    service: std::net::SocketAddr,
}

impl FakeGateway {
    async fn new(service: std::net::SocketAddr) -> Self {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let g = Self {
            sock,
            eui: Eui64::from_u64(0xb827_ebff_fe00_0099),
            service,
        };
        let mut pull = vec![2, 0, 1, device_lorawan::ingest::udp::PULL_DATA];
        pull.extend_from_slice(&g.eui.0);
        g.sock.send_to(&pull, service).await.unwrap();
        g
    }

    async fn send(&self, phy: Vec<u8>, tmst: u32) {
        let up = GatewayUplink {
            phy,
            rx: RxMeta {
                time_ns: None,
                gps_time_ns: None,
                station: None,
                gateway: self.eui,
                rssi: -50,
                snr: 7.0,
                tmst: Some(tmst),
                frequency: Some(868_100_000),
                datr: device_lorawan::lorawan::DataRate::parse("SF7BW125"),
            },
        };
        let d = device_lorawan::ingest::udp::push_data(3, self.eui, &[up]);
        self.sock.send_to(&d, self.service).await.unwrap();
    }

    /// The next transmission asked of this gateway (acknowledged as sent).
    async fn transmission(&self) -> device_lorawan::downlink::Transmission {
        use device_lorawan::ingest::udp::downlink as wire;
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
                    .await
                    .expect("a PULL_RESP")
                    .unwrap();
            if n > 4 && buf[3] == wire::PULL_RESP {
                let t = wire::decode_pull_resp(&buf[4..n]).unwrap();
                let ack = wire::tx_ack([buf[1], buf[2]], self.eui, "NONE");
                self.sock.send_to(&ack, self.service).await.unwrap();
                return t;
            }
        }
    }
}

/// The real binary killed (SIGKILL) between the JoinAccept and the
/// device's first uplink under it: after the restart the pending session
/// is still there, the device's data decodes under it (a new epoch at
/// FCnt 0), and the JoinRequest it answered stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_join_accept_and_first_uplink_loses_nothing() {
    let devices = mote::otaa_entries(1, SEED, MacVersionName::V1_0_3);
    let env = common::binary_env(&mote::devices_yaml(&devices), "", "DedupWindow: 50ms", "");
    let mut svc = common::start_binary(&env.config);
    let gw = FakeGateway::new(env.udp).await;
    let mut m = mote::Mote::new(&devices[0]);
    let join = m.join_request(std::time::Instant::now());
    gw.send(join.clone(), 1_000_000).await;
    let accept = gw.transmission().await;
    assert_eq!(accept.tmst, 6_000_000, "RX1: 5 s after the JoinRequest");
    let eu868 = device_lorawan::lorawan::region::Region::new(
        device_lorawan::lorawan::region::RegionSettings::new(RegionName::EU868),
    );
    assert!(
        m.accept(&accept.phy, &eu868),
        "the JoinAccept is for this mote"
    );
    svc.kill().unwrap(); // SIGKILL: no shutdown path runs
    svc.wait().unwrap();

    let mut svc = common::start_binary(&env.config);
    let gw = FakeGateway::new(env.udp).await;
    for i in 0..3u32 {
        let (_, frame) = m.next_frame();
        gw.send(frame, 20_000_000 + i * 10_000_000).await;
    }
    common::until(
        "three uplinks under the joined session",
        Duration::from_secs(10),
        || common::published_lines(&env.out).len() == 3,
    )
    .await;
    let lines = common::published_lines(&env.out);
    assert_eq!(
        lines,
        (0..3)
            .map(|f| ("sim-otaa-1".to_string(), f, 1))
            .collect::<Vec<_>>()
    );
    gw.send(join, 90_000_000).await;
    common::until(
        "the replayed JoinRequest refused",
        Duration::from_secs(10),
        || {
            common::scrape(
                env.api,
                "lorawan_inputs_rejected_total{reason=\"dev_nonce\"}",
            ) == Some(1)
        },
    )
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();
}
