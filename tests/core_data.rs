//! Zero-loss delivery to core-data: a stand-in core-data that validates every
//! request against the official schema goes away mid-run and comes back;
//! the service is killed with SIGKILL while events wait. Afterwards every
//! frame the simulator sent is stored exactly once, by its deterministic id.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::core_data::CoreData;
use device_lorawan::sim::{self, mote, SimOptions, Target};

use common::until;

fn assert_stored_exactly(cd: &CoreData, want: &BTreeSet<String>) {
    common::assert_stored_exactly(
        &cd.state.events.lock().unwrap(),
        &cd.state.invalid.lock().unwrap(),
        want,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_data_outage_loses_nothing() {
    let mut cd = CoreData::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.edgex.delivery = device_lorawan::config::Delivery::Rest;
    config.edgex.core_data.url = cd.url();
    let mut svc = common::Service::start(config, mote::entries(3, 21)).await;
    let udp = svc.bound.udp.unwrap();
    let opts = SimOptions {
        devices: 3,
        gateways: 2,
        rate: 150.0,
        frames: Some(90),
        duration: None,
        seed: 21,
        ..Default::default()
    };
    let sim = tokio::spawn(sim::run(Target::Udp(udp), opts, std::future::pending()));

    until(
        "the first events to be stored",
        Duration::from_secs(10),
        || cd.stored() >= 15,
    )
    .await;
    cd.stop();
    let report = sim.await.unwrap().unwrap();
    until("a failed delivery", Duration::from_secs(10), || {
        svc.metrics.delivery_errors.load(Relaxed) > 0
    })
    .await;
    let stored_during_outage = cd.stored();
    assert!(
        stored_during_outage < report.expected.len(),
        "the outage held events back"
    );
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    assert!(
        svc.metrics.outbox_depth.load(Relaxed) > 0,
        "events wait in the outbox"
    );

    cd.restart().await;
    let want = common::expected_ids(&report, 21, 3);
    until("every event stored", Duration::from_secs(30), || {
        cd.stored() == want.len()
    })
    .await;
    until("the outbox drained", Duration::from_secs(10), || {
        svc.metrics.outbox_depth.load(Relaxed) == 0
    })
    .await;
    svc.stop().await;
    assert_stored_exactly(&cd, &want);
    assert_eq!(svc.metrics.events_dead_lettered.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_events_wait_loses_nothing() {
    let mut cd = CoreData::start().await;
    cd.stop(); // core-data is down from the start
    let edgex = format!(
        "Delivery: rest, CoreData: {{ Url: \"{}\", Timeout: 1s }}",
        cd.url()
    );
    let env = common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 22)),
        "",
        "DedupWindow: 50ms",
        &edgex,
    );
    let (config, out, udp) = (env.config.clone(), env.out.clone(), env.udp);
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let send = |frames: u64, start_fcnt: u32| common::sim_udp(udp, 22, frames, start_fcnt);

    let mut svc = common::start_binary(&config);
    let mut report = send(12, 0).await;
    // The outbox is written before the JSON-lines sink: 12 lines, 12 journaled.
    until("12 uplinks journaled", Duration::from_secs(10), || {
        lines() >= 12
    })
    .await;
    svc.kill().unwrap(); // SIGKILL with 12 events undelivered
    svc.wait().unwrap();
    assert_eq!(cd.stored(), 0);

    cd.restart().await;
    let mut svc = common::start_binary(&config);
    report.expected.extend(send(6, 4).await.expected);
    let want = common::expected_ids(&report, 22, 3);
    until("every event stored", Duration::from_secs(30), || {
        cd.stored() == want.len()
    })
    .await;
    svc.kill().unwrap();
    svc.wait().unwrap();
    assert_eq!(want.len(), 18);
    assert_stored_exactly(&cd, &want);
}

/// A handover receipt is checked against EdgeX's own record: the customer
/// asks core-data for each listed event by id; an event it does not have
/// is named (after a short wait for events still on their way), and a
/// core-data that cannot be asked is an error, not a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipts_frames_are_checked_against_core_datas_events() {
    use device_lorawan::edgex::event::event_id;
    use device_lorawan::handover::receipt::{Delivery, Frame};
    use device_lorawan::handover::records::EdgexRecords;
    use device_lorawan::lorawan::{Eui64, FcntState};

    let cd = CoreData::start().await;
    let eui = Eui64::from_u64(0x70b3d57ed0000001);
    let st = |fcnt| FcntState {
        last: Some(fcnt),
        epoch: 1,
    };
    let after = FcntState {
        last: Some(10),
        epoch: 1,
    };
    let delivery = Delivery::of(eui, after, &[st(11), st(12), st(14)]);
    let hex = eui.to_string();
    // core-data has 11 and 14, not 12.
    for fcnt in [11, 14] {
        let id = event_id(&hex, 1, fcnt).to_string();
        cd.state
            .events
            .lock()
            .unwrap()
            .insert(id.clone(), serde_json::json!({"id": id}));
    }
    let client = device_lorawan::edgex::http::JsonClient::new(&cd.url(), Duration::from_secs(2));
    let records = EdgexRecords::new(client);
    let checked = records
        .check(std::slice::from_ref(&delivery))
        .await
        .unwrap();
    assert_eq!(
        checked.unrecorded,
        vec![(hex.clone(), Frame { epoch: 1, fcnt: 12 })]
    );
    assert_eq!((checked.asked, checked.listed), (3, 3));

    // An event that arrives while it is asked again is recorded.
    let late = event_id(&hex, 1, 12).to_string();
    let state = cd.state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        state
            .events
            .lock()
            .unwrap()
            .insert(late.clone(), serde_json::json!({"id": late}));
    });
    let checked = records
        .check(std::slice::from_ref(&delivery))
        .await
        .unwrap();
    assert!(checked.unrecorded.is_empty(), "{checked:?}");

    // core-data gone: no verdict from it.
    let url = cd.url();
    drop(cd);
    let gone = EdgexRecords::new(device_lorawan::edgex::http::JsonClient::new(
        &url,
        Duration::from_millis(500),
    ));
    let err = gone.check(&[delivery]).await.unwrap_err();
    assert!(err.to_string().contains("asking core-data"), "{err}");
}
