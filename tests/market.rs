//! The market service over its REST API, on SQLite and on PostgreSQL
//! (Debian's, started by the test): offers, a demand and its matches,
//! sealed bids, the auction, the contract with both stakes in escrow, the
//! arbitrator's settlement from a receipt, reputations, and the signed,
//! hash-chained log checked offline by `market verify`. Every answer is
//! validated against the OpenAPI document the market serves; every refusal
//! the issue names (unsigned, replayed, stale, sealed, malformed, too
//! large) is met.

mod common;
mod market_api;

use std::sync::Arc;

use device_lorawan::handover::contract::SignedContract;
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::receipt::Verdict;
use device_lorawan::market::client::{now_ms, MarketClient};
use device_lorawan::market::types::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

use market_api::*;

async fn the_market_end_to_end(db_url: &str) {
    let (base, market_id) = market(db_url).await;
    let spec = Spec::fetch(&base).await;
    let customer = Arc::new(Identity::generate().unwrap());
    let near = Arc::new(Identity::generate().unwrap());
    let far = Arc::new(Identity::generate().unwrap());

    // Public reads.
    let (s, b) = raw(&base, Method::GET, "/api/v3/market/identity", &[], None).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    spec.check(&Method::GET, "/api/v3/market/identity", s, &v);
    assert_eq!(v["marketKey"], market_id.public().to_hex());

    // Offers: two near enough, one too far.
    let (s, o_near) = post(
        &spec,
        &base,
        &near,
        "/api/v3/market/offers",
        &offer("127.0.0.1:10", 40, 52.05),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o_near}");
    let (s, o_cheap) = post(
        &spec,
        &base,
        &far,
        "/api/v3/market/offers",
        &offer("127.0.0.1:11", 20, 52.1),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = post(
        &spec,
        &base,
        &far,
        "/api/v3/market/offers",
        &offer("127.0.0.1:12", 5, 55.0),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // The demand: matched with the two near offers, cheapest first.
    let (s, posted) = post(&spec, &base, &customer, "/api/v3/market/demands", &demand()).await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    let offers = posted["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 2, "{posted}");
    assert_eq!(offers[0]["id"], o_cheap["id"]);
    let did = posted["demand"]["id"].as_str().unwrap().to_string();

    // Providers see it open and bid, sealed.
    let (s, open) = call(
        &spec,
        &base,
        &near,
        Method::GET,
        "/api/v3/market/demands",
        None,
    )
    .await;
    assert_eq!((s, open.as_array().unwrap().len()), (StatusCode::OK, 1));
    let bids = format!("/api/v3/market/demands/{did}/bids");
    let heard = HeardFrame {
        phy: "40341201268000010001aabbccdd".into(),
        rssi: -90,
        snr: 5.0,
        datr: Some("SF7BW125".into()),
        time_ms: now_ms(),
    };
    let bid = |offer: &Value, price: u64| {
        serde_json::to_value(BidBody {
            offer_id: offer["id"].as_str().unwrap().into(),
            price,
            heard: vec![heard.clone()],
        })
        .unwrap()
    };
    let (s, b_near) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        &bids,
        Some(bid(&o_near, 40)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b_near}");
    let (s, b_far) = call(
        &spec,
        &base,
        &far,
        Method::POST,
        &bids,
        Some(bid(&o_cheap, 20)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    // One sealed bid each; another's offer is not yours to bid with.
    let (s, e) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        &bids,
        Some(bid(&o_near, 30)),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, _) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        &format!("/api/v3/market/demands/{}/bids", uuid::Uuid::new_v4()),
        Some(bid(&o_near, 30)),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Sealed: a provider cannot see the bids.
    let (s, e) = call(&spec, &base, &near, Method::GET, &bids, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, seen) = call(&spec, &base, &customer, Method::GET, &bids, None).await;
    assert_eq!((s, seen.as_array().unwrap().len()), (StatusCode::OK, 2));

    // The auction: the cheap bid proved nothing (its frames did not
    // verify under the customer's keys); the near one proved both devices.
    let award = format!("/api/v3/market/demands/{did}/award");
    let proven = |b: &Value, coverage: f64| ProvenBid {
        bid_id: b["id"].as_str().unwrap().into(),
        coverage,
        margin_db: 12.0,
    };
    let (s, e) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        &award,
        Some(
            serde_json::to_value(AwardRequest {
                proven: vec![proven(&b_near, 1.0)],
            })
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only the customer closes it: {e}"
    );
    let (s, won) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        &award,
        Some(
            serde_json::to_value(AwardRequest {
                proven: vec![proven(&b_near, 1.0), proven(&b_far, 0.0)],
            })
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{won}");
    assert_eq!(won["id"], b_near["id"]);
    let (s, _) = post(
        &spec,
        &base,
        &customer,
        &award,
        &AwardRequest { proven: vec![] },
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "awarded once");

    // The contract: the awarded pair's only; both stakes held.
    let signed = contract("market-1", &customer, &near);
    let wrong = contract("market-x", &customer, &far);
    let req = |s: &SignedContract| serde_json::json!({"demandId": did, "signed": s});
    let (s, e) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/contracts",
        Some(req(&wrong)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, mc) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/contracts",
        Some(req(&signed)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{mc}");
    assert_eq!(mc["state"], "active");
    let client = MarketClient::new(&base, customer.clone());
    let c_acc = client.edge(&customer.public().to_hex()).await.unwrap();
    let p_acc = client.edge(&near.public().to_hex()).await.unwrap();
    assert_eq!((c_acc.balance, c_acc.held), (10_000 - 40, 40));
    assert_eq!((p_acc.balance, p_acc.held), (10_000 - 100, 100));
    let (s, _) = call(
        &spec,
        &base,
        &far,
        Method::GET,
        "/api/v3/market/contracts/market-1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "parties only");

    // Settlement: a receipt the customer accepted, a takeover in time.
    let path = "/api/v3/market/contracts/market-1/receipts";
    let forged = {
        let mut r = receipt("market-1", 3, &customer, &near, Verdict::Accepted, 120);
        r.receipt.takeover_ms = 10;
        r
    };
    let (s, e) = post(&spec, &base, &near, path, &&forged).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a changed receipt: {e}"
    );
    let good = receipt("market-1", 3, &customer, &near, Verdict::Accepted, 120);
    let (s, settled) = post(&spec, &base, &near, path, &&good).await;
    assert_eq!(s, StatusCode::OK, "{settled}");
    assert_eq!(settled["outcome"], "honoured", "{settled}");
    // The customer submits it too: the same settlement.
    let (s, again) = post(&spec, &base, &customer, path, &&good).await;
    assert_eq!((s, &again), (StatusCode::OK, &settled));
    let p = client.edge(&near.public().to_hex()).await.unwrap();
    assert_eq!((p.balance, p.held, p.honoured), (10_000 + 40, 0, 1));
    assert!(p.reputation > 0.5, "{p:?}");
    let c = client.edge(&customer.public().to_hex()).await.unwrap();
    assert_eq!((c.balance, c.held), (10_000 - 40, 0));

    // A second round with the same provider: a disputed receipt is a breach.
    let (_, posted) = post(&spec, &base, &customer, "/api/v3/market/demands", &demand()).await;
    let did2 = posted["demand"]["id"].as_str().unwrap().to_string();
    let (s, b2) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        &format!("/api/v3/market/demands/{did2}/bids"),
        Some(bid(&o_near, 40)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    call(
        &spec,
        &base,
        &customer,
        Method::POST,
        &format!("/api/v3/market/demands/{did2}/award"),
        Some(
            serde_json::to_value(AwardRequest {
                proven: vec![proven(&b2, 1.0)],
            })
            .unwrap(),
        ),
    )
    .await;
    let signed2 = contract("market-2", &customer, &near);
    let (s, _) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/contracts",
        Some(serde_json::json!({"demandId": did2, "signed": signed2})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let disputed = Verdict::Disputed {
        missing: vec![],
        repeated: vec![],
        unrecorded: vec![(
            "70b3d57ed0000001".into(),
            device_lorawan::handover::receipt::Frame { epoch: 0, fcnt: 12 },
        )],
        reasons: vec![],
    };
    let bad = receipt("market-2", 5, &customer, &near, disputed, 120);
    let (s, settled) = post(
        &spec,
        &base,
        &customer,
        "/api/v3/market/contracts/market-2/receipts",
        &&bad,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{settled}");
    assert_eq!(settled["outcome"], "breached", "{settled}");
    let p2 = client.edge(&near.public().to_hex()).await.unwrap();
    assert_eq!((p2.balance, p2.held, p2.breached), (p.balance - 100, 0, 1));
    assert!(p2.reputation < p.reputation);
    let c2 = client.edge(&customer.public().to_hex()).await.unwrap();
    assert_eq!(
        c2.balance,
        c.balance + 100,
        "the provider's stake is the customer's"
    );

    // Refusals, each answered as documented and counted.
    let unsigned = raw(
        &base,
        Method::POST,
        "/api/v3/market/offers",
        &[],
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(unsigned.0, StatusCode::UNAUTHORIZED);
    spec.check(
        &Method::POST,
        "/api/v3/market/offers",
        unsigned.0,
        &serde_json::from_slice(&unsigned.1).unwrap(),
    );
    let body = serde_json::to_vec(&offer("127.0.0.1:13", 9, 52.0)).unwrap();
    let h =
        device_lorawan::market::auth::sign(&near, "POST", "/api/v3/market/offers", &body, now_ms());
    assert_eq!(
        raw(
            &base,
            Method::POST,
            "/api/v3/market/offers",
            &h,
            Some(body.clone())
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let replayed = raw(
        &base,
        Method::POST,
        "/api/v3/market/offers",
        &h,
        Some(body.clone()),
    )
    .await;
    assert_eq!(replayed.0, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&replayed.1).contains("replayed"));
    let stale = device_lorawan::market::auth::sign(
        &near,
        "POST",
        "/api/v3/market/offers",
        &body,
        now_ms() - 120_000,
    );
    assert_eq!(
        raw(
            &base,
            Method::POST,
            "/api/v3/market/offers",
            &stale,
            Some(body)
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, e) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        "/api/v3/market/offers",
        Some(serde_json::json!({"region": "EU868"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["message"].as_str().unwrap().contains("does not read"),
        "{e}"
    );
    let big = vec![b'x'; 2 << 20];
    let h =
        device_lorawan::market::auth::sign(&near, "POST", "/api/v3/market/offers", &big, now_ms());
    assert_eq!(
        raw(&base, Method::POST, "/api/v3/market/offers", &h, Some(big))
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let metrics =
        String::from_utf8(raw(&base, Method::GET, "/metrics", &[], None).await.1).unwrap();
    assert!(
        metrics.contains("market_refused_total{reason=\"unauthorised\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("market_refused_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );

    // The log: awards, contracts, settlements, chained and signed; checked
    // offline, and a changed copy refused.
    let (s, log) = raw(&base, Method::GET, "/api/v3/market/log", &[], None).await;
    let log_v: Value = serde_json::from_slice(&log).unwrap();
    spec.check(&Method::GET, "/api/v3/market/log", s, &log_v);
    let kinds: Vec<&str> = log_v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "award",
            "contract",
            "settlement",
            "award",
            "contract",
            "settlement"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.json");
    std::fs::write(&file, &log).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args([
            "market",
            "verify",
            file.to_str().unwrap(),
            "--key",
            &market_id.public().to_hex(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 entries"));
    let changed = String::from_utf8(log).unwrap().replacen(
        "\\\"outcome\\\":\\\"breached\\\"",
        "\\\"outcome\\\":\\\"honoured\\\"",
        1,
    );
    std::fs::write(&file, changed).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["market", "verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry 6"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    the_market_end_to_end(&format!(
        "sqlite://{}",
        dir.path().join("market.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_on_postgres() {
    let Some(pg) = common::postgres::Postgres::start() else {
        return;
    };
    the_market_end_to_end(&pg.url).await;
}
