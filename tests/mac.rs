//! The MAC layer end to end, through the real binary: simulated LMIC motes
//! (ADR, ADRACKReq, LinkCheckReq, DeviceTimeReq, DevStatusReq answers) over
//! a Semtech UDP gateway, the service as their network server.

mod common;

use std::time::Duration;

use device_lorawan::sim::lmic_mac::Told;
use device_lorawan::sim::{self, mote, SimOptions, SimReport, Target};

const SEED: u64 = 31;

fn opts(devices: usize, frames: u64) -> SimOptions {
    SimOptions {
        devices,
        gateways: 1,
        rate: 10.0,
        frames: Some(frames),
        duration: None,
        seed: SEED,
        linger: Duration::from_secs(2),
        // Each mote waits out its (compressed) receive windows, as class A does.
        class_a_wait: Duration::from_millis(150),
        ..Default::default()
    }
}

/// The real binary with `n` simulated ABP motes, `mac` as its `Mac`
/// section and `downlink` as its `Downlink` section; runs `o` against it.
async fn run(
    n: usize,
    mac: &str,
    downlink: &str,
    edgex: &str,
    o: SimOptions,
) -> (SimReport, common::BinaryEnv, String) {
    run_in(n, "", mac, downlink, edgex, o).await
}

/// [`run`] with `region` as the `Region` section, and `o.otaa_devices`
/// OTAA motes in the devices file too.
async fn run_in(
    n: usize,
    region: &str,
    mac: &str,
    downlink: &str,
    edgex: &str,
    o: SimOptions,
) -> (SimReport, common::BinaryEnv, String) {
    let mut entries = mote::entries(n, SEED);
    entries.extend(mote::otaa_entries(o.otaa_devices, SEED, o.mac_version));
    let devices = mote::devices_yaml(&entries);
    let env = common::binary_env(&devices, "", "DedupWindow: 50ms", edgex);
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!(
        "Region: {{ {region} }}\nMac: {{ {mac} }}\nDownlink: {{ {downlink} }}\n"
    ));
    std::fs::write(&env.config, text).unwrap();
    let mut child = common::start_binary(&env.config);
    let report = sim::run(Target::Udp(env.udp), o, std::future::pending())
        .await
        .unwrap();
    let metrics = common::http(env.api, "GET", "/metrics", "").await.1;
    child.kill().unwrap();
    child.wait().unwrap();
    (report, env, metrics)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adr_moves_a_near_mote_up_and_leaves_a_far_one() {
    let o = SimOptions {
        adr: true,
        start_dr: Some(0),
        // Mote 1 near (9.5 dB at SF12), mote 2 far (-12 dB: 8 dB above SF12's floor).
        link_snr: vec![9.5, -12.0],
        ..opts(2, 60)
    };
    let (report, _env, metrics) = run(2, "", "", "", o).await;
    let near = &report.motes[0];
    let far = &report.motes[1];
    // SF12 heard at 9.5 dB: 19.5 dB over the 10 dB margin, six 3 dB steps:
    // DR0 → DR5 (five), then one power step; at DR5 the margin left
    // (9.5 + 7.5 - 10 - 2) moves power once more.
    assert_eq!(near.dr, 5, "{near:?}");
    assert!(near.tx_power >= 1, "{near:?}");
    assert!(near.adr_taken >= 1 && near.adr_refused == 0, "{near:?}");
    assert_eq!((far.dr, far.tx_power, far.adr_taken), (0, 0, 0), "{far:?}");
    assert!(
        report.downlinks.iter().all(|d| d.device == near.device),
        "the far mote has nothing to be told: {:?}",
        report.downlinks
    );
    // Each LinkADRReq rode alone on FPort 0 (no application payload).
    assert!(report
        .downlinks
        .iter()
        .all(|d| d.fport == Some(0) && d.payload[0] == 0x03));
    assert_eq!(
        metric(&metrics, "lorawan_adr_changes_total"),
        u64::from(near.adr_taken)
    );
    assert_eq!(report.downlinks_missed + report.downlinks_dropped, 0);
    assert_eq!(report.lost_on_air, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_asking_adrackreq_gets_its_downlink_and_keeps_its_rate() {
    // DR2 (SF10, floor -15 dB) heard at -12 dB: no headroom, so ADR never
    // speaks; after 64 silent uplinks the mote sets ADRACKReq.
    let o = SimOptions {
        adr: true,
        start_dr: Some(2),
        link_snr: vec![-12.0],
        rate: 40.0,
        // An empty downlink needs no answer: no need to wait for it.
        class_a_wait: Duration::ZERO,
        ..opts(1, 160)
    };
    let (report, _env, _) = run(1, "", "", "", o.clone()).await;
    let m = &report.motes[0];
    assert_eq!((m.dr, m.steps_down), (2, 0), "{m:?}");
    assert!(!report.downlinks.is_empty());
    assert!(
        report
            .downlinks
            .iter()
            .all(|d| d.fport.is_none() && d.fopts.is_empty()),
        "empty downlinks: {:?}",
        report.downlinks
    );
    // Without downlinks the same mote steps down, as LMIC does.
    let (report, _env, _) = run(1, "", "Enabled: false", "", o).await;
    let m = &report.motes[0];
    assert!(m.steps_down >= 1 && m.dr < 2, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_check_and_device_time_are_answered() {
    let o = SimOptions {
        gateways: 2,
        link_check_every: Some(3),
        device_time_every: Some(4),
        gateway_time: true,
        ..opts(1, 12)
    };
    let (report, _env, metrics) = run(1, "", "", "", o.clone()).await;
    let checks: Vec<_> = report
        .told
        .iter()
        .filter_map(|t| match t.what {
            Told::LinkCheck { margin, gateways } => Some((margin, gateways)),
            _ => None,
        })
        .collect();
    assert_eq!(checks.len(), 4, "{:?}", report.told);
    for (margin, gateways) in &checks {
        assert_eq!(*gateways, 2);
        // Best SNR 9.5 dB at SF7..SF9 (floors -7.5..-12.5): 17 to 22 dB.
        assert!((17..=22).contains(margin), "{margin}");
    }
    let times: Vec<_> = report
        .told
        .iter()
        .filter_map(|t| match t.what {
            Told::DeviceTime { seconds, fraction } => Some((seconds, fraction, t.uplink_gps_ns)),
            _ => None,
        })
        .collect();
    assert_eq!(times.len(), 3, "{:?}", report.told);
    for (s, f, gps) in times {
        // From the gateway's GPS time: to the 1/256 s the answer can carry.
        let told = u64::from(s) * 1_000_000_000 + u64::from(f) * 1_000_000_000 / 256;
        assert!(gps.abs_diff(told) < 1_000_000_000 / 256, "{told} vs {gps}");
    }
    assert_eq!(metric(&metrics, "lorawan_mac_answers_sent_total"), 7);
    assert_eq!(
        metric(
            &metrics,
            "lorawan_device_time_answers_total{source=\"gateway\"}"
        ),
        3
    );
    // A gateway without GPS: the service's reception clock, close enough.
    let (report, _env, metrics) = run(
        1,
        "",
        "",
        "",
        SimOptions {
            gateway_time: false,
            ..o
        },
    )
    .await;
    let mut answered = 0;
    for t in &report.told {
        if let Told::DeviceTime { seconds, .. } = t.what {
            answered += 1;
            let ours = u64::from(seconds) * 1_000_000_000;
            assert!(t.uplink_gps_ns.abs_diff(ours) < 2_000_000_000, "{t:?}");
        }
    }
    assert_eq!(answered, 3, "{:?}", report.told);
    assert_eq!(
        metric(
            &metrics,
            "lorawan_device_time_answers_total{source=\"reception\"}"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_link_adr_req_is_capped_not_retried_in_a_loop() {
    let o = SimOptions {
        adr: true,
        start_dr: Some(0),
        refuse_dr_above: Some(3),
        rate: 40.0,
        ..opts(1, 120)
    };
    let (report, _env, metrics) = run(1, "", "", "", o).await;
    let m = &report.motes[0];
    // DR5 refused, DR4 refused (each after a longer wait), DR3 taken.
    assert_eq!(m.dr, 3, "{m:?}");
    assert_eq!((m.adr_refused, m.adr_taken >= 1), (2, true), "{m:?}");
    let asked = report
        .downlinks
        .iter()
        .filter(|d| d.payload.first() == Some(&0x03))
        .count();
    assert!(asked <= 4, "{asked} LinkADRReqs: {:?}", report.downlinks);
    assert_eq!(metric(&metrics, "lorawan_mac_requests_refused_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_status_answers_reach_core_data_as_readings() {
    let cd = common::core_data::CoreData::start().await;
    let edgex = format!(
        "Delivery: rest, CoreData: {{ Url: \"{}\", Timeout: 1s }}",
        cd.url()
    );
    let o = SimOptions {
        rate: 10.0,
        ..opts(1, 24)
    };
    let (report, _env, metrics) = run(1, "DevStatusInterval: 1s", "", &edgex, o).await;
    common::until("events stored", Duration::from_secs(10), || {
        cd.stored() >= report.expected.len()
    })
    .await;
    assert!(cd.state.invalid.lock().unwrap().is_empty());
    // The simulated mote reports battery 1 + DevEUI mod 250, margin 10.
    let battery = 1 + (0x70b3_d57e_d000_0001u64 % 250);
    let events = cd.state.events.lock().unwrap();
    let status: Vec<(String, String)> = events
        .values()
        .flat_map(|e| e["readings"].as_array().unwrap().clone())
        .filter(|r| r["resourceName"].as_str().unwrap().starts_with("DevStatus"))
        .map(|r| {
            (
                r["resourceName"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        status.contains(&("DevStatusBattery".into(), battery.to_string()))
            && status.contains(&("DevStatusMargin".into(), "10".into())),
        "{status:?}"
    );
    assert!(
        metrics.contains(&format!(
            "lorawan_device_battery{{device=\"sim-mote-1\"}} {battery}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("lorawan_device_margin_db{device=\"sim-mote-1\"} 10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_channels_reach_devices_the_cflist_did_not_give_them() {
    // Six extra channels: an OTAA mote gets the first five in its
    // JoinAccept's CFList and the sixth by NewChannelReq; an ABP mote all six.
    let region = "ExtraChannels: [\
        {Frequency: 867100000, MinDr: 0, MaxDr: 5}, {Frequency: 867300000, MinDr: 0, MaxDr: 5}, \
        {Frequency: 867500000, MinDr: 0, MaxDr: 5}, {Frequency: 867700000, MinDr: 0, MaxDr: 5}, \
        {Frequency: 867900000, MinDr: 0, MaxDr: 5}, {Frequency: 868800000, MinDr: 0, MaxDr: 5}]";
    let o = SimOptions {
        otaa_devices: 1,
        ..opts(1, 16)
    };
    let (report, _env, metrics) = run_in(1, region, "", "", "", o).await;
    let abp = &report.motes[0];
    let otaa = &report.motes[1];
    assert_eq!(abp.channels, [3, 4, 5, 6, 7, 8], "{abp:?}");
    assert_eq!(otaa.channels, [8], "the CFList gave it 3..=7: {otaa:?}");
    assert_eq!(report.joins.len(), 1);
    // Asked once each, all taken: 6 + 1 requests.
    assert_eq!(metric(&metrics, "lorawan_mac_requests_sent_total"), 7);
    assert_eq!(metric(&metrics, "lorawan_mac_requests_refused_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_windows_move_when_the_device_acknowledges() {
    // The site's RX2 channel is 869.1 MHz; an OTAA mote's JoinAccept cannot
    // say so (it listens on the region's 869.525 MHz), an RXParamSetupReq
    // does. Gateways refuse RX1, so every downlink goes in RX2: the first
    // (with the request) on 869.525, the later ones on 869.1, once the mote
    // answered. None is missed.
    let o = SimOptions {
        devices: 0,
        otaa_devices: 1,
        confirmed: true,
        refuse_rx1: true,
        ..opts(0, 10)
    };
    let (report, _env, _) = run_in(0, "", "", "Rx2Frequency: 869100000", "", o).await;
    let m = &report.motes[0];
    assert_eq!(m.rx.rx2_frequency, 869_100_000, "{m:?}");
    assert_eq!(report.downlinks_missed + report.downlinks_dropped, 0);
    let freqs: Vec<u32> = report.downlinks.iter().map(|d| d.frequency).collect();
    assert_eq!(freqs.first(), Some(&869_525_000), "{freqs:?}");
    assert!(freqs[1..].iter().all(|f| *f == 869_100_000), "{freqs:?}");
    assert!(freqs.len() >= 3, "{freqs:?}");
}
