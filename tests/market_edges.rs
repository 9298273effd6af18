//! The market with three edges on loopback (the "done means"): a
//! market process; a customer whose motes are heard by its gateways (one
//! mosquitto as the gateway bridge); provider A, whose gateways hear the
//! same motes; provider B, which does not hear them and bids with frames it
//! made up (this test plays B through the market API, cheaper than A).
//!
//! The customer's service, with `Market.Url` set and no provider, posts its
//! demand, checks the bids' frames under its own keys, and contracts with A
//! (the one that proved coverage, not the cheaper B); it is killed, A takes
//! over, it returns, the receipt is signed, the market settles it as
//! honoured, releases the stakes and raises A's reputation. In a second
//! round A loses frames (its events vanish from core-data): the receipt is
//! disputed and the market settles a breach.

mod common;

use common::{kill9, metric};

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::handover::identity::Identity;
use device_lorawan::ingest::bridge::WireFormat;
use device_lorawan::market::client::{now_ms, MarketClient};
use device_lorawan::market::types::*;
use device_lorawan::sim::{self, mote, SimOptions, Target};

const SEED: u64 = 77;
const DEVICES: usize = 3;

/// An edge on the market at `market`, its gateways on the broker at `mqtt`.
fn edge(
    name: &str,
    devices: &str,
    mqtt: u16,
    core_data: &str,
    market: &str,
    extra: &str,
) -> common::BinaryEnv {
    let env = common::binary_env(
        devices,
        &format!("Name: {name}, SyncInterval: 1s"),
        &format!("DedupWindow: 200ms, Mqtt: {{ Enabled: true, Port: {mqtt}, ClientId: {name} }}"),
        &format!("Delivery: rest, CoreData: {{ Url: \"{core_data}\" }}"),
    );
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!(
        "Market: {{ Url: \"{market}\", Lat: 52.0, Lon: 5.0, PollEvery: 300ms, BidWindow: 3s{extra} }}\n"
    ));
    std::fs::write(&env.config, text).unwrap();
    Identity::create(&env.dir.path().join("data/identity")).unwrap();
    env
}

/// A data frame under `dev_addr` with a made-up MIC: what a provider that
/// does not hear the device could claim.
fn forged(dev_addr: u32, fcnt: u16) -> String {
    let mut phy = vec![0x40];
    phy.extend_from_slice(&dev_addr.to_le_bytes());
    phy.push(0);
    phy.extend_from_slice(&fcnt.to_le_bytes());
    phy.extend_from_slice(&[1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
    hex::encode(phy)
}

/// Provider B: an offer cheaper than A's, and a bid with forged frames on
/// every open demand, until `stop`.
async fn claimer(
    market: String,
    me: Arc<Identity>,
    addrs: Vec<u32>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let client = MarketClient::new(&market, me);
    let offer = client
        .offer(&OfferBody {
            region: "EU868".into(),
            location: Location {
                lat: 52.01,
                lon: 5.0,
            },
            gateways: vec![],
            resources: Resources {
                memory_mib: 1024,
                cpu_millis: 2000,
                ..Default::default()
            },
            price: 5,
            stake: 100,
            address: "127.0.0.1:9".into(),
            valid_until_ms: now_ms() + 3_600_000,
        })
        .await
        .unwrap();
    let mut bid = std::collections::HashSet::new();
    while !*stop.borrow() {
        for d in client.open_demands().await.unwrap_or_default() {
            if bid.insert(d.id.clone()) {
                let heard = addrs
                    .iter()
                    .map(|a| HeardFrame {
                        phy: forged(*a, 7),
                        rssi: -60,
                        snr: 9.0,
                        datr: Some("SF7BW125".into()),
                        time_ms: now_ms(),
                    })
                    .collect();
                client
                    .bid(
                        &d.id,
                        &BidBody {
                            offer_id: offer.id.clone(),
                            price: 5,
                            heard,
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bid.len()
}

fn contract_state(customer: &common::BinaryEnv) -> Option<serde_json::Value> {
    let p = customer.dir.path().join("data/market/contract.json");
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// The market's settlements so far, from its public log.
async fn settlements(market: &MarketClient) -> Vec<serde_json::Value> {
    market
        .log()
        .await
        .unwrap()
        .entries
        .iter()
        .filter(|e| e.kind == "settlement")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["settlement"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_contracts_with_the_provider_that_proves_it_hears_its_devices() {
    let Some(broker) = common::Mosquitto::start() else {
        return;
    };
    let core = common::core_data::CoreData::start().await;

    // The market process.
    let mdir = tempfile::tempdir().unwrap();
    let mport = common::free_port();
    let mconfig = mdir.path().join("market.yaml");
    std::fs::write(
        &mconfig,
        format!(
            "Service: {{ DataDir: {} }}\nMarket: {{ Listen: \"127.0.0.1:{mport}\" }}\n",
            mdir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut market_proc = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["market", "serve", "--config"])
        .arg(&mconfig)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let market = format!("http://127.0.0.1:{mport}");
    let watcher = MarketClient::new(&market, Arc::new(Identity::generate().unwrap()));
    common::until("the market serving", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok()
    })
    .await;

    let entries = mote::entries(DEVICES, SEED);
    let addrs: Vec<u32> = entries.iter().map(|e| e.dev_addr.unwrap().0).collect();
    let a_port = common::free_port();
    let a = edge(
        "provider-a",
        "devices: []\n",
        broker.port,
        &core.url(),
        &market,
        ", Offer: { Price: 40, Stake: 100, Gateways: [ { Eui: b827ebfffe000001, Lat: 52.01, Lon: 5.02 } ] }",
    );
    {
        let mut t = std::fs::read_to_string(&a.config).unwrap();
        t.push_str(&format!("Handover: {{ Listen: \"127.0.0.1:{a_port}\" }}\n"));
        std::fs::write(&a.config, t).unwrap();
    }
    let c = edge(
        "customer",
        &mote::devices_yaml(&entries),
        broker.port,
        &core.url(),
        &market,
        "",
    );
    let a_key = std::fs::read_to_string(a.dir.path().join("data/identity/identity.pub"))
        .unwrap()
        .trim()
        .to_string();

    // The motes send throughout: A hears them on the same bridge.
    let opts = SimOptions {
        devices: DEVICES,
        gateways: 1,
        rate: 6.0,
        frames: None,
        duration: Some(Duration::from_secs(90)),
        seed: SEED,
        ..SimOptions::default()
    };
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: broker.port,
        format: WireFormat::Protobuf,
        prefix: String::new(),
    };
    let (stop_sim, sim_stop) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(sim::run(target, opts, async move {
        let _ = sim_stop.await;
    }));
    let mut provider = common::start_binary(&a.config);
    // A has heard the motes before the customer asks.
    common::until(
        "A hearing the customer's motes",
        Duration::from_secs(15),
        || {
            metric(
                a.api,
                "lorawan_inputs_rejected_total{reason=\"unknown_devaddr\"}",
            ) >= DEVICES as u64
        },
    )
    .await;
    let b_id = Arc::new(Identity::generate().unwrap());
    let (stop_b, stop_rx) = tokio::sync::watch::channel(false);
    let b = tokio::spawn(claimer(
        market.clone(),
        b_id.clone(),
        addrs.clone(),
        stop_rx,
    ));
    let mut customer = common::start_binary(&c.config);
    let logs = |who: &[(&str, &common::BinaryEnv)]| {
        for (name, e) in who {
            eprintln!(
                "--- {name} ---\n{}",
                std::fs::read_to_string(e.dir.path().join("service.log")).unwrap_or_default()
            );
        }
    };

    // Round 1: the customer contracts with A, not the cheaper B.
    let t = std::time::Instant::now();
    let first = loop {
        if let Some(s) = contract_state(&c) {
            break s;
        }
        if t.elapsed() > Duration::from_secs(40) {
            logs(&[("customer", &c), ("provider A", &a)]);
            panic!("no market contract");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id1 = first["contractId"].as_str().unwrap().to_string();
    // The customer's API shows the contract as bought on the market.
    let api = device_lorawan::edgex::http::JsonClient::new(
        &format!("http://{}", c.api),
        Duration::from_secs(5),
    );
    let (_, body) = api
        .send(hyper::Method::GET, "/api/v3/handover", None)
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed = status["customer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id1.as_str())
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(listed["market"]["demandId"], first["demandId"], "{status}");
    let log = watcher.log().await.unwrap();
    let award: serde_json::Value =
        serde_json::from_str(&log.entries.iter().find(|e| e.kind == "award").unwrap().body)
            .unwrap();
    assert_eq!(
        award["provider"], a_key,
        "A proved coverage; B only claimed it: {award}"
    );
    assert!(
        award["proven"]["coverage"].as_f64().unwrap() >= 0.99,
        "{award}"
    );
    let customer_log = std::fs::read_to_string(c.dir.path().join("service.log")).unwrap();
    assert!(
        customer_log.lines().any(|l| l.contains("bid checked")
            && l.contains(&b_id.public().to_hex())
            && l.contains("coverage=0")),
        "B's made-up frames verified nothing: {customer_log}"
    );
    let a_acc = watcher.edge(&a_key).await.unwrap();
    assert_eq!(a_acc.held, 100, "A's stake in escrow");
    // The handover is armed through the contract the market countersigned.
    common::until("A armed", Duration::from_secs(20), || {
        a.dir
            .path()
            .join(format!("data/handover/provider/sessions/{id1}.pb"))
            .exists()
    })
    .await;

    // The customer dies; A takes over; the customer returns.
    let before = core.stored();
    kill9(&mut customer);
    common::until("A took over", Duration::from_secs(10), || {
        metric(a.api, "handover_takeovers_total") >= 1
    })
    .await;
    common::until("A publishing", Duration::from_secs(10), || {
        core.stored() >= before + 6
    })
    .await;
    let mut customer = common::start_binary(&c.config);
    let t = std::time::Instant::now();
    let s1 = loop {
        if let Some(s) = settlements(&watcher).await.first() {
            break s.clone();
        }
        if t.elapsed() > Duration::from_secs(30) {
            logs(&[("customer", &c), ("provider A", &a)]);
            panic!("round 1 not settled");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (s1["contractId"].as_str(), s1["outcome"].as_str()),
        (Some(id1.as_str()), Some("honoured")),
        "{s1}"
    );
    let a1 = watcher.edge(&a_key).await.unwrap();
    assert_eq!((a1.held, a1.honoured), (0, 1), "stakes released");
    assert_eq!(a1.balance, 10_000 + 40, "paid its price");
    assert!(a1.reputation > 0.5, "{a1:?}");

    // Round 2: cover bought again from A; this time A loses frames.
    let t = std::time::Instant::now();
    let id2 = loop {
        if let Some(s) = contract_state(&c).filter(|s| s["contractId"] != id1.as_str()) {
            break s["contractId"].as_str().unwrap().to_string();
        }
        if t.elapsed() > Duration::from_secs(40) {
            logs(&[("customer", &c), ("provider A", &a)]);
            panic!("no second market contract");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    common::until("A armed again", Duration::from_secs(20), || {
        a.dir
            .path()
            .join(format!("data/handover/provider/sessions/{id2}.pb"))
            .exists()
    })
    .await;
    let kept: std::collections::BTreeSet<String> =
        core.state.events.lock().unwrap().keys().cloned().collect();
    kill9(&mut customer);
    common::until("A took over again", Duration::from_secs(10), || {
        metric(a.api, "handover_takeovers_total") >= 2
    })
    .await;
    let before = core.stored();
    common::until("A publishing again", Duration::from_secs(10), || {
        core.stored() >= before + 6
    })
    .await;
    // What A delivered in this holding vanishes from EdgeX.
    common::until("A's outbox drained", Duration::from_secs(10), || {
        common::scrape(a.api, "edgex_outbox_depth") == Some(0)
    })
    .await;
    core.state
        .events
        .lock()
        .unwrap()
        .retain(|id, _| kept.contains(id));
    let mut customer = common::start_binary(&c.config);
    let t = std::time::Instant::now();
    let s2 = loop {
        if let Some(s) = settlements(&watcher).await.get(1) {
            break s.clone();
        }
        if t.elapsed() > Duration::from_secs(30) {
            logs(&[("customer", &c), ("provider A", &a)]);
            panic!("round 2 not settled");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if s2["outcome"] != "breached" {
        logs(&[("customer", &c), ("provider A", &a)]);
    }
    assert_eq!(
        metric(a.api, "handover_takeovers_total"),
        2,
        "one takeover per kill: the customer checking its receipt stays alive to its provider"
    );
    assert_eq!(
        (s2["contractId"].as_str(), s2["outcome"].as_str()),
        (Some(id2.as_str()), Some("breached")),
        "{s2}"
    );
    assert!(
        s2["reasons"][0].as_str().unwrap().contains("not in EdgeX"),
        "{s2}"
    );
    let a2 = watcher.edge(&a_key).await.unwrap();
    assert_eq!((a2.breached, a2.held), (1, 0));
    assert!(a2.reputation < a1.reputation, "{a2:?}");
    // The whole record checks offline.
    device_lorawan::market::ledger::verify(&watcher.log().await.unwrap()).unwrap();

    let _ = stop_b.send(true);
    assert!(b.await.unwrap() >= 2, "B bid on both rounds");
    let _ = stop_sim.send(());
    let _ = sim.await;
    kill9(&mut customer);
    kill9(&mut provider);
    kill9(&mut market_proc);
}
