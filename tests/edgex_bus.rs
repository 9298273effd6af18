//! Event delivery on the EdgeX message bus (the v4 default path), end to end
//! through a real mosquitto: simulator → gateway MQTT → device-lorawan →
//! bus → the stand-in core's subscriber, which checks every envelope and
//! validates every payload against the official schema. Then the faults:
//! the broker restarted mid-run, and device-lorawan killed with SIGKILL
//! and restarted. Afterwards every frame sent is stored exactly once by id.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::bus::BusCore;
use common::until;
use device_lorawan::config::{Delivery, StreamKind, Subscription};
use device_lorawan::edgex::event::add_event_request;
use device_lorawan::ingest::gateway::WireFormat;
use device_lorawan::sim::{self, mote, SimOptions, Target};

fn gateway_target(port: u16) -> Target {
    Target::Mqtt {
        host: "127.0.0.1".into(),
        port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    }
}

fn opts(seed: u64, frames: u64, start_fcnt: u32) -> SimOptions {
    SimOptions {
        devices: 3,
        gateways: 2,
        rate: 200.0,
        frames: Some(frames),
        duration: None,
        seed,
        start_fcnt,
        ..Default::default()
    }
}

fn assert_stored_exactly(core: &BusCore, want: &std::collections::BTreeSet<String>) {
    common::assert_stored_exactly(
        &core.state.events.lock().unwrap(),
        &core.state.invalid.lock().unwrap(),
        want,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_events_are_the_uplinks_exactly_once() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let core = BusCore::start(broker.port, "device-lorawan").await;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.ingest.udp.enabled = false;
    config.ingest.mqtt.enabled = true;
    config.ingest.mqtt.port = broker.port;
    config.ingest.mqtt.client_id = "ingest-bus-test".into();
    config.ingest.mqtt.subscriptions = vec![Subscription {
        topic: "gateway/+/event/up".into(),
        kind: StreamKind::Gateway,
    }];
    config.edgex.delivery = Delivery::MessageBus;
    config.edgex.message_bus.host = "127.0.0.1".into();
    config.edgex.message_bus.port = broker.port;
    config.edgex.message_bus.client_id = "bus-bus-test".into();
    let mut svc = common::Service::start(config, mote::entries(3, 31)).await;
    until("the ingest subscription", Duration::from_secs(10), || {
        svc.metrics.mqtt_subacks.load(Relaxed) >= 1
    })
    .await;

    let report = sim::run(
        gateway_target(broker.port),
        opts(31, 60, 0),
        std::future::pending(),
    )
    .await
    .unwrap();
    let want = common::expected_ids(&report, 31, 3);
    until("every event on the bus", Duration::from_secs(20), || {
        core.stored() == want.len()
    })
    .await;
    until("the outbox drained", Duration::from_secs(10), || {
        svc.metrics.outbox_depth.load(Relaxed) == 0
    })
    .await;
    let uplinks = svc.stop().await;
    common::assert_exactly(&report, &uplinks);
    assert_stored_exactly(&core, &want);
    // Each stored event is exactly the request made from its uplink: ids,
    // values, units, tags.
    let events = core.state.events.lock().unwrap();
    for up in &uplinks {
        let req = serde_json::to_value(add_event_request(up)).unwrap();
        let id = req["event"]["id"].as_str().unwrap();
        assert_eq!(events[id], req["event"], "event {id}");
    }
    assert_eq!(svc.metrics.events_delivered.load(Relaxed), 60);
    assert_eq!(
        core.state.copies.load(Relaxed),
        0,
        "no copies without faults"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_and_kill_9_lose_nothing_on_the_bus() {
    let Some(mut broker) = common::Mosquitto::start() else {
        return;
    };
    let core = BusCore::start(broker.port, "device-lorawan").await;
    let port = broker.port;
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 32)),
        "",
        &format!(
            "DedupWindow: 50ms, Mqtt: {{ Enabled: true, Host: 127.0.0.1, \
             Port: {port}, ClientId: ingest-kill-test, \
             Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }}"
        ),
        &format!(
            "Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {port}, ClientId: bus-kill-test }}"
        ),
    );
    let send = |frames: u64, start_fcnt: u32| {
        sim::run(
            gateway_target(port),
            opts(32, frames, start_fcnt),
            std::future::pending(),
        )
    };
    let lines = || common::published_lines(&env.out).len();

    let mut svc = common::start_binary(&env.config);
    // The ingest session must exist before frames are sent to it.
    until("the ingest subscription", Duration::from_secs(20), || {
        common::scrape(env.api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 1)
    })
    .await;
    let mut report = send(12, 0).await.unwrap();
    until(
        "the first events on the bus",
        Duration::from_secs(10),
        || core.stored() >= 12,
    )
    .await;

    broker.restart_clean();
    report.expected.extend(send(12, 4).await.unwrap().expected);
    until("24 uplinks journaled", Duration::from_secs(20), || {
        lines() >= 24
    })
    .await;

    svc.kill().unwrap(); // SIGKILL
    svc.wait().unwrap();
    report.expected.extend(send(12, 8).await.unwrap().expected); // queued for the ingest session
    let mut svc = common::start_binary(&env.config);
    let want = common::expected_ids(&report, 32, 3);
    until("every event on the bus", Duration::from_secs(30), || {
        core.stored() == want.len()
    })
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert_eq!(want.len(), 36);
    assert_stored_exactly(&core, &want);
}
