//! Event delivery on EdgeX's NATS message bus, end to end through Debian's
//! `nats-server`, read by NATS's own Python client (nats-py): the real
//! binary, configured as docs/configuration.md shows, receives simulated
//! gateway traffic over UDP.
//!
//! - Core NATS: every event on EdgeX's subject, in EdgeX's `nats` format
//!   (the envelope's fields as headers, the `AddEventRequest` as the body,
//!   valid against core-data's schema), exactly once; a request on the bus
//!   answered on its response subject.
//! - JetStream, a three-server cluster, the stream replicated three times:
//!   the server the service is connected to is killed mid-stream; the
//!   stream holds every event exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::time::{Duration, Instant};

use common::nats::{Nats, Seen};
use device_lorawan::sim::{self, mote, SimOptions, Target};

/// Every message is an EdgeX event as EdgeX's `nats` format carries it;
/// returns them by event id. A JetStream stream provisioned EdgeX's way
/// holds all of `edgex.>`, so it also stores the service's telemetry
/// (`edgex.telemetry.device-lorawan.<metric>`, every `Telemetry.Interval`):
/// those are left out, anything else must be an event.
fn events_of(seen: &[Seen], jetstream: bool) -> BTreeMap<String, usize> {
    let schema = common::openapi_validator("core-data.yaml", "AddEventRequest");
    let mut ids = BTreeMap::new();
    for m in seen {
        if m.subject.starts_with("edgex.telemetry.device-lorawan.") {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&m.data).unwrap();
        let errors = common::schema_errors(&schema, &body);
        assert!(errors.is_empty(), "{errors:?} in {body}");
        let rid = body["requestId"].as_str().unwrap();
        let h = |k: &str| m.headers.get(k).map(String::as_str);
        assert_eq!(h("Content-Type"), Some("application/json"), "{m:?}");
        assert_eq!(h("ApiVersion"), Some("v3"));
        assert_eq!(h("RequestId"), Some(rid));
        assert_eq!(h("X-Correlation-ID"), Some(rid));
        assert_eq!(h("ErrorCode"), Some("0"));
        assert_eq!(h("Nats-Msg-Id"), jetstream.then_some(rid));
        let e = &body["event"];
        let subject = format!(
            "edgex.events.device.device-lorawan.{}.{}.{}",
            e["profileName"].as_str().unwrap(),
            e["deviceName"].as_str().unwrap(),
            e["sourceName"].as_str().unwrap()
        );
        assert_eq!(m.subject, subject);
        *ids.entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    ids
}

fn assert_exactly_once(ids: &BTreeMap<String, usize>, want: &BTreeSet<String>) {
    let copies: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        copies.is_empty(),
        "events stored more than once: {copies:?}"
    );
    let got: BTreeSet<String> = ids.keys().cloned().collect();
    let missing = want.difference(&got).count();
    let extra = got.difference(want).count();
    assert!(
        missing == 0 && extra == 0,
        "{missing} events missing, {extra} unexpected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_nats_carries_every_event_as_edgex_does() {
    let Some(nats) = Nats::start(1, false) else {
        return;
    };
    let port = nats.nodes[0].port;
    let urls = nats.urls();
    // The subscriber is there before the events (core NATS keeps nothing).
    let mut sub = common::nats::peer("subscribe", &[&urls, "edgex.events.device.>"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "ready");

    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 61)),
        "",
        "",
        &format!("Delivery: message-bus, MessageBus: {{ Type: nats-core, Host: 127.0.0.1, Port: {port} }}"),
    );
    let _svc = common::start_binary(&env.config);
    let report = common::sim_udp(env.udp, 61, 90, 0).await;
    let want = common::expected_ids(&report, 61, 3);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < want.len() && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(serde_json::from_str::<Seen>(&l).unwrap());
        }
    }
    assert_exactly_once(&events_of(&seen, false), &want);
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "no copies after the last event"
    );

    // A request on the bus, EdgeX's `nats` format both ways: core-metadata
    // asking whether we serve a device we do not know.
    let out = common::nats::peer(
        "request",
        &[
            &urls,
            "edgex.device-lorawan.validate.device",
            r#"{"apiVersion":"v3","device":{"name":"stranger","profileName":"nope"}}"#,
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["headers"]["RequestId"], reply["requestId"]);
    assert_eq!(reply["headers"]["ErrorCode"], "1", "refused: {reply}");
    assert!(
        reply["data"].as_str().unwrap().contains("stranger"),
        "{reply}"
    );
    let _ = sub.kill();
    let _ = sub.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_server_killed_mid_stream_loses_nothing() {
    let Some(mut nats) = Nats::start(3, true) else {
        return;
    };
    let port = nats.nodes[0].port;
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 62)),
        "",
        "",
        &format!(
            "Delivery: message-bus, MessageBus: {{ Type: nats-jetstream, Host: 127.0.0.1, \
             Port: {port}, Nats: {{ Replicas: 3 }} }}"
        ),
    );
    let mut svc = common::start_binary(&env.config);
    let frames = 3000;
    let opts = SimOptions {
        rate: 500.0,
        ..common::sim_opts(62, frames, 0)
    };
    let udp = env.udp;
    let sending = tokio::spawn(async move {
        sim::run(Target::Udp(udp), opts, std::future::pending())
            .await
            .unwrap()
    });
    // The server the service is connected to dies mid-stream.
    let api = env.api;
    common::until(
        "a third of the events stored",
        Duration::from_secs(30),
        || common::metric(api, "edgex_events_delivered_total") >= frames / 3,
    )
    .await;
    nats.kill(0);
    let report = sending.await.unwrap();
    let want = common::expected_ids(&report, 62, 3);
    let delivered = |n: usize| common::metric(api, "edgex_events_delivered_total") >= n as u64;
    let until = Instant::now() + Duration::from_secs(60);
    while !delivered(want.len()) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(env.dir.path().join("service.log")).unwrap_or_default();
    assert!(
        delivered(want.len()),
        "{} of {} events acknowledged by the stream; service log:\n{log}\nserver 1:\n{}",
        common::metric(api, "edgex_events_delivered_total"),
        want.len(),
        nats.log(1)
    );
    let reconnects = common::metric(api, "edgex_bus_reconnects_total");
    eprintln!(
        "reconnects {reconnects}, sent again and dropped by the stream {}",
        common::metric(api, "edgex_bus_stream_duplicates_total")
    );
    assert!(reconnects >= 1, "the kill was felt");
    assert_eq!(common::metric(api, "edgex_outbox_depth"), 0);
    let seen = common::nats::stream_messages(&nats.urls(), "edgex");
    assert_exactly_once(&events_of(&seen, true), &want);
    common::kill9(&mut svc);
}
