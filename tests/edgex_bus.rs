//! Event delivery on the EdgeX message bus (the v4 default path), end to end
//! through a real mosquitto: simulator → gateway MQTT → device-lorawan →
//! bus → the stand-in core's subscriber, which checks every envelope and
//! validates every payload against the official schema. Then the faults:
//! the broker restarted mid-run, and device-lorawan killed with SIGKILL
//! and restarted. Afterwards every frame sent is stored exactly once by id.

mod common;

use common::requester::Requester;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::bus::BusCore;
use common::until;
use device_lorawan::config::{Delivery, StreamKind, Subscription};
use device_lorawan::edgex::event::add_event_request;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::sim::{self, mote, Target};

fn gateway_target(port: u16) -> Target {
    Target::Mqtt {
        host: "127.0.0.1".into(),
        port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
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
    config.edgex.message_bus.port = Some(broker.port);
    config.edgex.message_bus.client_id = "bus-bus-test".into();
    let mut svc = common::Service::start(config, mote::entries(3, 31)).await;
    until("the ingest subscription", Duration::from_secs(10), || {
        svc.metrics.mqtt_subacks.load(Relaxed) >= 1
    })
    .await;

    let report = sim::run(
        gateway_target(broker.port),
        common::sim_opts(31, 60, 0),
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
            common::sim_opts(32, frames, start_fcnt),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_requests_validation_commands_and_system_events() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let mut entries = mote::entries(3, 33);
    (
        entries[2].dev_addr,
        entries[2].nwk_s_key,
        entries[2].app_s_key,
    ) = (None, None, None);
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.edgex.delivery = Delivery::MessageBus;
    config.edgex.message_bus.host = "127.0.0.1".into();
    config.edgex.message_bus.port = Some(broker.port);
    config.edgex.message_bus.client_id = "bus-requests-test".into();
    let mut svc = common::Service::start(config, entries).await;
    let asker = Requester::start(broker.port).await;
    let sdk = |schema| common::openapi_validator("device-sdk.yaml", schema);
    let validate = "edgex/device-lorawan/validate/device";
    let device = |name: &str, profile: &str| {
        let n: u64 = name.rsplit('-').next().unwrap().parse().unwrap_or(9);
        serde_json::json!({"apiVersion": "v3", "device": {"name": name, "profileName": profile,
            "serviceName": "device-lorawan", "adminState": "UNLOCKED", "operatingState": "UP",
            "protocols": {"lorawan": {"DevEUI": format!("{:016x}", 0x70b3_d57e_d000_0000u64 + n)}}}})
    };
    // The service's bus subscriptions are live once validation answers.
    // (Retried every 100 ms, for at most 20 s: a request sent before the
    // subscription exists is lost, as on any MQTT bus.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ok = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never answered device validation on the bus"
        );
        let id = asker
            .send(validate, device("sim-mote-1", "Dragino-LPP-Mote"))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(a) = asker.responses.lock().unwrap().get(&id).cloned() {
            break a;
        }
    };
    assert_eq!(ok["errorCode"], 0, "{ok}");
    assert!(common::schema_errors(&sdk("BaseResponse"), &ok["payload"]).is_empty());

    // A device the devices file lacks is served from EdgeX if it can be:
    // accepted when it reads, refused with the reason when not.
    let yes = asker
        .ask(validate, device("stranger-7", "Dragino-LPP-Mote"))
        .await;
    assert_eq!(yes["errorCode"], 0, "{yes}");
    let mut bad = device("stranger", "Dragino-LPP-Mote");
    bad["device"]["protocols"]["lorawan"]["DevEUI"] = "not-hex".into();
    let no = asker.ask(validate, bad).await;
    assert_eq!(no["errorCode"], 1);
    assert!(
        no["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("DevEUI"),
        "{no}"
    );
    let no = asker
        .ask(validate, device("stranger-1", "Dragino-LPP-Mote"))
        .await;
    assert!(
        no["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("devices file"),
        "the DevEUI of a devices-file device: {no}"
    );
    let no = asker
        .ask(validate, device("sim-mote-1", "Raw-Payload-Mote"))
        .await;
    assert_eq!(no["errorCode"], 1, "wrong profile: {no}");
    let no = asker
        .ask(validate, device("sim-mote-3", "Dragino-LPP-Mote"))
        .await;
    assert!(
        no["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("secret"),
        "no keys: {no}"
    );
    assert!(common::schema_errors(&sdk("ErrorResponse"), &no["payload"]).is_empty());

    // Commands over the bus, as core-command sends them in v4.
    let climate = "edgex/device/command/request/device-lorawan/sim-mote-1/climate/get";
    let early = asker.ask(climate, serde_json::json!({})).await;
    assert_eq!(
        early["payload"]["statusCode"], 404,
        "nothing reported yet: {early}"
    );
    common::sim_udp(svc.bound.udp.unwrap(), 33, 6, 0).await;
    svc.wait_published(4, Duration::from_secs(10)).await; // sim-mote-3 is refused (no keys)
    let got = asker.ask(climate, serde_json::json!({})).await;
    assert_eq!(got["errorCode"], 0, "{got}");
    let errors = common::schema_errors(&sdk("EventResponse"), &got["payload"]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        got["payload"]["event"]["readings"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A set command becomes a queued downlink, as a PUT does.
    let set = "edgex/device/command/request/device-lorawan/sim-mote-1/reportInterval/set";
    let queued = asker
        .ask(set, serde_json::json!({"reportInterval": "600"}))
        .await;
    assert_eq!(queued["errorCode"], 0, "{queued}");
    assert_eq!(queued["payload"]["statusCode"], 200, "{queued}");
    assert_eq!(svc.metrics.downlinks_queued.load(Relaxed), 1);

    // core-metadata locks the device: commands are refused.
    asker
        .publish(
            "edgex/system-events/core-metadata/device/update/device-lorawan/Dragino-LPP-Mote",
            serde_json::to_vec(
                &serde_json::json!({"apiVersion": "v3", "payload": {"type": "device",
                "action": "update", "source": "core-metadata", "owner": "device-lorawan",
                "details": {"name": "sim-mote-1", "adminState": "LOCKED"}}}),
            )
            .unwrap(),
        )
        .await;
    until("the system event", Duration::from_secs(10), || {
        svc.metrics.system_events.load(Relaxed) >= 1
    })
    .await;
    let locked = asker.ask(climate, serde_json::json!({})).await;
    assert_eq!(locked["errorCode"], 1);
    assert_eq!(locked["payload"]["statusCode"], 423);

    // Garbage on a request topic is counted, not answered.
    asker.publish(validate, b"{not json".to_vec()).await;
    until(
        "the malformed request counted",
        Duration::from_secs(10),
        || svc.metrics.bus_requests_malformed.load(Relaxed) >= 1,
    )
    .await;
    assert_eq!(svc.metrics.bus_commands.load(Relaxed), 4);
    svc.stop().await;
}
