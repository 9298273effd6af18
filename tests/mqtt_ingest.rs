//! MQTT ingest against a real mosquitto: every gateway-bridge format, the
//! application streams, and a broker restart in the middle of a run.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use device_lorawan::config::{StreamKind, Subscription};
use device_lorawan::devices::DeviceEntry;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::lorawan::Eui64;
use device_lorawan::metrics::{Metrics, Reason};
use device_lorawan::sim::{self, mote, SimOptions, Target};

fn mqtt_config(
    data: &std::path::Path,
    port: u16,
    gateway_topic: &str,
) -> device_lorawan::config::Config {
    let mut c = common::config(data);
    c.ingest.udp.enabled = false;
    c.ingest.mqtt.enabled = true;
    c.ingest.mqtt.port = port;
    c.ingest.mqtt.client_id = format!("device-lorawan-test-{port}");
    c.ingest.mqtt.subscriptions = vec![
        Subscription {
            topic: gateway_topic.into(),
            kind: StreamKind::Gateway,
        },
        Subscription {
            topic: "application/+/device/+/event/up".into(),
            kind: StreamKind::Application,
        },
    ];
    c
}

async fn wait_subscribed(m: &Metrics, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.mqtt_subacks.load(Relaxed) < n {
        assert!(Instant::now() < deadline, "service never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sim_opts(frames: u64, start_fcnt: u32) -> SimOptions {
    SimOptions {
        devices: 3,
        gateways: 2,
        rate: 200.0,
        frames: Some(frames),
        duration: None,
        seed: 11,
        start_fcnt,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_format_end_to_end() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    for (format, prefix) in [
        (WireFormat::Protobuf, ""),
        (WireFormat::JsonV4, "eu868/"),
        (WireFormat::JsonV3, ""),
    ] {
        let data = tempfile::tempdir().unwrap();
        let config = mqtt_config(
            data.path(),
            broker.port,
            &format!("{prefix}gateway/+/event/up"),
        );
        let mut svc = common::Service::start(config, mote::entries(3, 11)).await;
        wait_subscribed(&svc.metrics, 2).await;
        let target = Target::Mqtt {
            host: "127.0.0.1".into(),
            port: broker.port,
            format,
            prefix: prefix.into(),
        };
        let report = sim::run(target, sim_opts(30, 0), std::future::pending())
            .await
            .unwrap();
        svc.wait_published(30, Duration::from_secs(10)).await;
        let got = svc.stop().await;
        common::assert_exactly(&report, &got);
        assert!(
            got.iter().all(|u| u.gateways == 2),
            "{format:?}: both gateways merged"
        );
        assert_eq!(
            svc.metrics
                .received_count(device_lorawan::metrics::Source::GatewayMqtt),
            60,
            "{format:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_sent_after_reconnect() {
    let Some(mut broker) = common::Mosquitto::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut svc = common::Service::start(
        mqtt_config(data.path(), broker.port, "gateway/+/event/up"),
        mote::entries(3, 11),
    )
    .await;
    wait_subscribed(&svc.metrics, 2).await;
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let first = sim::run(target.clone(), sim_opts(15, 0), std::future::pending())
        .await
        .unwrap();
    svc.wait_published(15, Duration::from_secs(10)).await;

    broker.restart();
    // The service notices, reconnects and subscribes again.
    wait_subscribed(&svc.metrics, 4).await;
    assert!(svc.metrics.mqtt_reconnects.load(Relaxed) >= 1);
    let second = sim::run(target, sim_opts(15, 5), std::future::pending())
        .await
        .unwrap();
    svc.wait_published(30, Duration::from_secs(10)).await;
    let got = svc.stop().await;
    let mut all = first.clone();
    all.expected.extend(second.expected);
    common::assert_exactly(&all, &got);
}

fn app_only(name: &str, eui: u64) -> DeviceEntry {
    DeviceEntry::new(name, Eui64::from_u64(eui), mote::PROFILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_streams_v4_and_v3() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let entries = vec![
        app_only("cs-v4", 0x0004a30b001c0530),
        app_only("as-v3", 0x0004a30b001c0531),
    ];
    let mut svc = common::Service::start(
        mqtt_config(data.path(), broker.port, "gateway/+/event/up"),
        entries,
    )
    .await;
    wait_subscribed(&svc.metrics, 2).await;

    let (client, mut events) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("app-pub", "127.0.0.1", broker.port),
        64,
    );
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let qos = rumqttc::QoS::AtLeastOnce;
    // LPP: ch1 temperature 27.2, ch2 humidity 55%.
    let data_b64 = "AWcBEAJobg==";
    // ChirpStack's reception time, an hour ago (a backlog): the events'
    // origin. The v3 messages carry none: theirs is our reception.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let hour_ago_ns = hour_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        * 1_000_000_000;
    let time = humantime::format_rfc3339_seconds(hour_ago).to_string();
    for fcnt in [1, 2, 2, 3] {
        let v4 = format!(
            r#"{{"deduplicationId":"x","time":"{time}","deviceInfo":{{"tenantId":"t","applicationId":"a","deviceName":"cs-v4","devEui":"0004a30b001c0530"}},"devAddr":"26011bda","fCnt":{fcnt},"fPort":1,"confirmed":false,"data":"{data_b64}","rxInfo":[{{"gatewayId":"0016c001f153a14c","rssi":-70,"snr":4.5}}]}}"#
        );
        client
            .publish(
                "application/a/device/0004a30b001c0530/event/up",
                qos,
                false,
                v4,
            )
            .await
            .unwrap();
        let v3 = format!(
            r#"{{"applicationID":"1","applicationName":"app","deviceName":"as-v3","devEUI":"AASjCwAcBTE=","rxInfo":[{{"gatewayID":"ABbAAfFToUw=","rssi":-60,"loRaSNR":7}}],"fCnt":{fcnt},"fPort":1,"data":"{data_b64}"}}"#
        );
        client
            .publish(
                "application/1/device/0004a30b001c0531/event/up",
                qos,
                false,
                v3,
            )
            .await
            .unwrap();
    }
    client
        .publish("application/1/device/x/event/up", qos, false, "{not json")
        .await
        .unwrap();
    client
        .publish(
            "application/1/device/x/event/up",
            qos,
            false,
            r#"{"devEUI":"AASjCwAcBTk=","fCnt":1}"#,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.metrics.rejected_count(Reason::UnknownDevEui) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    svc.wait_published(6, Duration::from_secs(10)).await;
    let got = svc.stop().await;
    drop(client);
    poller.abort();

    let mut seen: Vec<(String, u32)> = got.iter().map(|u| (u.device.to_string(), u.fcnt)).collect();
    seen.sort();
    let want: Vec<(String, u32)> = [
        ("as-v3", 1),
        ("as-v3", 2),
        ("as-v3", 3),
        ("cs-v4", 1),
        ("cs-v4", 2),
        ("cs-v4", 3),
    ]
    .iter()
    .map(|(d, f)| (d.to_string(), *f))
    .collect();
    assert_eq!(seen, want, "redelivered fCnt 2 published once per device");
    let t = got[0].profile.resource_index("temperature").unwrap() as u16;
    for u in &got {
        let temp = u
            .readings
            .iter()
            .find(|r| r.resource == t)
            .unwrap()
            .value
            .as_f64()
            .unwrap();
        assert!((temp - 27.2).abs() < 1e-9);
    }
    for u in &got {
        if &*u.device == "cs-v4" {
            assert_eq!(u.received_ns, hour_ago_ns, "ChirpStack's time");
        } else {
            assert!(u.received_ns > hour_ago_ns + 3_000_000_000_000, "ours");
        }
    }
    assert_eq!(svc.metrics.rejected_count(Reason::MalformedJson), 1);
    assert_eq!(svc.metrics.rejected_count(Reason::UnknownDevEui), 1);
    // The application stream waits in no de-duplication window (its network
    // server de-duplicated it): the redelivered fCnt 2 is refused by its
    // counter, one per device.
    assert_eq!(svc.metrics.duplicates.load(Relaxed), 0);
    assert_eq!(svc.metrics.rejected_count(Reason::Retransmission), 2);
}

/// Read one counter from the service's /metrics endpoint.
/// SIGKILL while uplinks sit in the de-duplication window: they were neither
/// published nor acknowledged, so the broker redelivers them to the
/// restarted service (same client id, persistent session) and every one is
/// published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_the_dedup_window_loses_nothing() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let devices = mote::devices_yaml(&mote::entries(3, 11)); // sim_opts' seed
    let mqtt = format!(
        "DedupWindow: 5s, Mqtt: {{ Enabled: true, Port: {}, ClientId: kill9-test }}",
        broker.port
    );
    let env = common::binary_env(&devices, "", &mqtt, "");
    let (config, out, api) = (env.config.clone(), env.out.clone(), env.api);
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };

    let mut svc = common::start_binary(&config);
    until("subscriptions", &|| {
        common::scrape(api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 2)
    });
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let report = sim::run(target, sim_opts(9, 0), std::future::pending())
        .await
        .unwrap();
    until("all 18 copies received", &|| {
        common::scrape(
            api,
            "lorawan_uplinks_received_total{source=\"gateway-mqtt\"}",
        ) == Some(18)
    });
    assert_eq!(
        lines(),
        0,
        "still inside the 5 s window: nothing published yet"
    );
    svc.kill().unwrap();
    svc.wait().unwrap();

    let mut svc = common::start_binary(&config);
    until("9 uplinks published after redelivery", &|| lines() >= 9);
    // The pipeline is FIFO and the broker redelivered everything at once:
    // nothing more can follow the ninth line.
    svc.kill().unwrap();
    svc.wait().unwrap();
    let got: Vec<(String, u64)> = common::published_lines(&out)
        .into_iter()
        .map(|(d, f, _)| (d, f))
        .collect();
    let mut want: Vec<(String, u64)> = report
        .expected
        .iter()
        .map(|e| (e.device.clone(), u64::from(e.fcnt)))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "each frame once: {got:?}");
}

/// Another client on the broker with our ingest's id (a second instance
/// configured alike): the broker throws each off when the other connects.
/// The service cannot stop that, but it must say so: the conflict is
/// counted and logged, not left as a silent reconnect loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_with_our_id_is_reported() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let config = mqtt_config(data.path(), broker.port, "gateway/+/event/up");
    let id = config.ingest.mqtt.client_id.clone();
    let svc = common::Service::start(config, mote::entries(1, 11)).await;
    wait_subscribed(&svc.metrics, 1).await;
    // The twin reconnects as soon as it is thrown off, as ours does.
    let port = broker.port;
    let twin = tokio::spawn(async move {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(false);
        loop {
            let (_c, mut el) = rumqttc::AsyncClient::new(opts.clone(), 8);
            while el.poll().await.is_ok() {}
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.metrics.mqtt_client_id_conflicts.load(Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no conflict reported after {} reconnects",
            svc.metrics.mqtt_reconnects.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    twin.abort();
}

/// The service restarts to a backlog the broker queued for its persistent
/// session: it takes it at its pipeline's pace, publishes every frame once
/// and acknowledges every message. Proven by a restart after the drain: a
/// sentinel frame sent then arrives after anything the broker would
/// redeliver, and nothing is redelivered (no retransmission refused).
async fn backlog_is_taken_whole(broker: common::Mosquitto, frames: u64) {
    let devices = mote::devices_yaml(&mote::entries(20, 13));
    let mqtt = format!(
        "DedupWindow: 50ms, Mqtt: {{ Enabled: true, Port: {}, ClientId: backlog-test }}",
        broker.port
    );
    let env = common::binary_env(&devices, "", &mqtt, "");
    let (config, out, api) = (env.config.clone(), env.out.clone(), env.api);
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let subscribed = || common::scrape(api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 2);
    let mut svc = common::start_binary(&config);
    common::until("subscriptions", Duration::from_secs(20), subscribed).await;
    svc.kill().unwrap();
    svc.wait().unwrap();

    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let opts = SimOptions {
        devices: 20,
        gateways: 1,
        rate: 4000.0,
        frames: Some(frames),
        duration: None,
        seed: 13,
        ..Default::default()
    };
    let report = sim::run(target.clone(), opts.clone(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.expected.len() as u64, frames);

    let mut svc = common::start_binary(&config);
    common::until(
        "the whole backlog published",
        Duration::from_secs(120),
        || lines() >= frames as usize,
    )
    .await;
    assert_eq!(common::scrape(api, "lorawan_mqtt_acks_lost_total"), Some(0));
    // Acks trail the reading under a flood: all written before the kill.
    common::until("every ack written", Duration::from_secs(20), || {
        common::scrape(api, "lorawan_mqtt_acks_pending") == Some(0)
    })
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();

    // Anything left unacknowledged would come back now, before the sentinel.
    let mut svc = common::start_binary(&config);
    common::until("subscriptions", Duration::from_secs(20), subscribed).await;
    let last = (frames / 20) as u32 + 1;
    let sentinel = SimOptions {
        devices: 1,
        frames: Some(1),
        start_fcnt: last + 1,
        ..opts
    };
    sim::run(target, sentinel, std::future::pending())
        .await
        .unwrap();
    common::until("the sentinel", Duration::from_secs(20), || {
        lines() > frames as usize
    })
    .await;
    let retransmissions = common::scrape(
        api,
        "lorawan_inputs_rejected_total{reason=\"retransmission\"}",
    );
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert_eq!(retransmissions, Some(0), "every message was acknowledged");
    let got: Vec<(String, u64)> = common::published_lines(&out)
        .into_iter()
        .map(|(d, f, _)| (d, f))
        .collect();
    assert_eq!(got.len(), frames as usize + 1);
    let mut sorted = got[..frames as usize].to_vec();
    sorted.sort();
    let mut want: Vec<(String, u64)> = report
        .expected
        .iter()
        .map(|e| (e.device.clone(), u64::from(e.fcnt)))
        .collect();
    want.sort();
    assert_eq!(sorted, want, "each frame of the backlog once");
}

/// mosquitto as installed: 20 messages in flight, 1,000 queued per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_under_mosquittos_defaults() {
    let Some(broker) = common::Mosquitto::start_defaults() else {
        return;
    };
    backlog_is_taken_whole(broker, 900).await;
}

/// A broker that queues everything and pushes it with no in-flight limit:
/// tens of thousands of messages at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_tens_of_thousands_pushed_at_once() {
    let Some(broker) =
        common::Mosquitto::start_with("max_queued_messages 0\nmax_inflight_messages 0\n")
    else {
        return;
    };
    backlog_is_taken_whole(broker, 20_000).await;
}
