//! The market service over its REST API, on SQLite and on PostgreSQL
//! (Debian's, started by the test): offers, a demand and its matches,
//! sealed bids, the auction, the contract with both stakes in escrow, the
//! arbitrator's settlement from a receipt, reputations, and the signed,
//! hash-chained log checked offline by `market verify`. Every answer is
//! validated against the OpenAPI document the market serves; every refusal
//! the issue names (unsigned, replayed, stale, sealed, malformed, too
//! large) is met.

mod common;

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::handover::contract::{
    Activation, Contract, ImageRef, Party, Resources as GrantedResources, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::receipt::{Detected, Receipt, Verdict};
use device_lorawan::lorawan::{Eui64, FcntState};
use device_lorawan::market::client::{now_ms, MarketClient};
use device_lorawan::market::types::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// The market on a free loopback port, with `url` for its database.
async fn market(url: &str) -> (String, Arc<Identity>) {
    let me = Arc::new(Identity::generate().unwrap());
    let store = device_lorawan::market::store::Store::open(url, me.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(device_lorawan::market::api::serve(
        listener,
        Arc::new(device_lorawan::market::api::Market::new(store)),
    ));
    (format!("http://{addr}"), me)
}

/// The OpenAPI document the market serves, and a check of one answer
/// against the schema it gives for the route, method and status.
struct Spec(Value);

impl Spec {
    async fn fetch(base: &str) -> Self {
        let (status, body) = raw(base, Method::GET, "/api/v3/market/openapi.yaml", &[], None).await;
        assert_eq!(status, StatusCode::OK);
        Self(serde_yaml_ng::from_slice(&body).unwrap())
    }

    fn template_of(&self, path: &str) -> String {
        let segs: Vec<&str> = path.split('?').next().unwrap().split('/').collect();
        self.0["paths"]
            .as_object()
            .unwrap()
            .keys()
            .find(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
            .unwrap_or_else(|| panic!("{path}: not in the OpenAPI document"))
            .clone()
    }

    fn check(&self, method: &Method, path: &str, status: StatusCode, body: &Value) {
        let t = self.template_of(path);
        let op = &self.0["paths"][&t][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {t}: not in the OpenAPI document");
        let resp = &op["responses"][status.as_str()];
        assert!(
            resp.is_object(),
            "{method} {t}: answer {status} not documented"
        );
        let resp = match resp["$ref"].as_str() {
            Some(r) => &self.0["components"]["responses"][r.rsplit('/').next().unwrap()],
            None => resp,
        };
        let schema = &resp["content"]["application/json"]["schema"];
        let root = serde_json::json!({
            "$ref": "#/x",
            "x": schema,
            "components": self.0["components"],
        });
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap();
        let errors = common::errors_of(&v, body);
        assert!(
            errors.is_empty(),
            "{method} {t} {status}: {errors:?}\n{body}"
        );
    }
}

async fn raw(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Option<Vec<u8>>,
) -> (StatusCode, Vec<u8>) {
    let c = device_lorawan::edgex::http::JsonClient::new(base, Duration::from_secs(5));
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, b) = c.send_with(method, path, &h, body).await.unwrap();
    (s, b.to_vec())
}

/// A signed call by `me`, its answer checked against the spec.
async fn call(
    spec: &Spec,
    base: &str,
    me: &Identity,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let h = device_lorawan::market::auth::sign(
        me,
        method.as_str(),
        path,
        bytes.as_deref().unwrap_or_default(),
        now_ms(),
    );
    let (s, b) = raw(base, method.clone(), path, &h, bytes).await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    spec.check(&method, path, s, &v);
    (s, v)
}

fn offer(address: &str, price: u64, lat: f64) -> OfferBody {
    OfferBody {
        region: "EU868".into(),
        location: Location { lat, lon: 5.0 },
        gateways: vec![Gateway {
            eui: "b827ebfffe000001".into(),
            location: Location { lat, lon: 5.0 },
        }],
        resources: Resources {
            memory_mib: 256,
            cpu_millis: 1000,
            storage_mib: 1024,
            bandwidth_kbps: 1000,
            uptime_permille: 990,
        },
        price,
        stake: 100,
        address: address.into(),
        valid_until_ms: now_ms() + 3_600_000,
    }
}

fn demand() -> DemandBody {
    DemandBody {
        region: "EU868".into(),
        location: Location {
            lat: 52.0,
            lon: 5.0,
        },
        dev_addrs: vec!["26011234".into(), "26015678".into()],
        resources: Resources {
            memory_mib: 128,
            cpu_millis: 500,
            ..Default::default()
        },
        max_price: 50,
        min_reputation: 0.3,
        max_distance_km: 30.0,
        min_coverage: 0.5,
        max_takeover_ms: 2_000,
        weights: Weights::default(),
    }
}

fn contract(id: &str, customer: &Identity, provider: &Identity) -> SignedContract {
    let t = now_ms() / 1000;
    let c = Contract {
        id: id.into(),
        customer: Party {
            id: "customer".into(),
            public_key: customer.public().to_hex(),
            address: String::new(),
        },
        provider: Party {
            id: "provider".into(),
            public_key: provider.public().to_hex(),
            address: "127.0.0.1:1".into(),
        },
        image: ImageRef {
            digest: format!("sha256:{}", "ab".repeat(32)),
            cid: "b".into(),
            size: 1,
        },
        devices: vec!["70b3d57ed0000001".into()],
        activation: Activation::default(),
        resources: GrantedResources {
            memory_bytes: 128 << 20,
            cpu_millis: 500,
        },
        not_before: t - 60,
        not_after: t + 3600,
        at_expiry: Default::default(),
        rank: 0,
    };
    SignedContract::offer(c, customer)
        .unwrap()
        .accept(provider, t)
        .unwrap()
}

/// A holding's receipt: issued by the provider, answered by the customer.
fn receipt(
    id: &str,
    epoch: u64,
    customer: &Identity,
    provider: &Identity,
    verdict: Verdict,
    takeover_ms: u64,
) -> device_lorawan::handover::receipt::SignedReceipt {
    let eui = Eui64::from_u64(0x70b3d57ed0000001);
    let st = |f| FcntState {
        last: Some(f),
        epoch: 0,
    };
    let r = Receipt {
        contract_id: id.into(),
        epoch,
        customer_key: customer.public().to_hex(),
        provider_key: provider.public().to_hex(),
        from_ms: 1_000,
        to_ms: 9_000,
        detected: Detected::Closed,
        takeover_ms,
        complete: true,
        devices: vec![device_lorawan::handover::receipt::Delivery::of(
            eui,
            st(10),
            &[st(11), st(12)],
        )],
    };
    r.sign(provider).answer(customer, verdict, None)
}

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
    let (s, o_near) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        "/api/v3/market/offers",
        Some(serde_json::to_value(offer("127.0.0.1:10", 40, 52.05)).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o_near}");
    let (s, o_cheap) = call(
        &spec,
        &base,
        &far,
        Method::POST,
        "/api/v3/market/offers",
        Some(serde_json::to_value(offer("127.0.0.1:11", 20, 52.1)).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &spec,
        &base,
        &far,
        Method::POST,
        "/api/v3/market/offers",
        Some(serde_json::to_value(offer("127.0.0.1:12", 5, 55.0)).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // The demand: matched with the two near offers, cheapest first.
    let (s, posted) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/demands",
        Some(serde_json::to_value(demand()).unwrap()),
    )
    .await;
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
    let (s, _) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        &award,
        Some(serde_json::to_value(AwardRequest { proven: vec![] }).unwrap()),
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
    let (s, e) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        path,
        Some(serde_json::to_value(&forged).unwrap()),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a changed receipt: {e}"
    );
    let good = receipt("market-1", 3, &customer, &near, Verdict::Accepted, 120);
    let (s, settled) = call(
        &spec,
        &base,
        &near,
        Method::POST,
        path,
        Some(serde_json::to_value(&good).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{settled}");
    assert_eq!(settled["outcome"], "honoured", "{settled}");
    // The customer submits it too: the same settlement.
    let (s, again) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        path,
        Some(serde_json::to_value(&good).unwrap()),
    )
    .await;
    assert_eq!((s, &again), (StatusCode::OK, &settled));
    let p = client.edge(&near.public().to_hex()).await.unwrap();
    assert_eq!((p.balance, p.held, p.honoured), (10_000 + 40, 0, 1));
    assert!(p.reputation > 0.5, "{p:?}");
    let c = client.edge(&customer.public().to_hex()).await.unwrap();
    assert_eq!((c.balance, c.held), (10_000 - 40, 0));

    // A second round with the same provider: a disputed receipt is a breach.
    let (_, posted) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/demands",
        Some(serde_json::to_value(demand()).unwrap()),
    )
    .await;
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
    let (s, settled) = call(
        &spec,
        &base,
        &customer,
        Method::POST,
        "/api/v3/market/contracts/market-2/receipts",
        Some(serde_json::to_value(&bad).unwrap()),
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

/// docs/market.md's configurations, as documented: each loads, and the
/// market's is served by `market serve` (its data directory and port made
/// temporary, as a test must).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_market_configurations_run() {
    let doc = std::fs::read_to_string(common::repo_path("docs/market.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .filter(|b| b.starts_with("Service:") || b.starts_with("Market:"))
        .collect();
    assert_eq!(blocks.len(), 2, "the market's and an edge's");
    let dir = tempfile::tempdir().unwrap();
    for (i, b) in blocks.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&p, b).unwrap();
        device_lorawan::config::Config::load(Some(&p)).unwrap_or_else(|e| panic!("{b}: {e}"));
    }
    let port = common::free_port();
    let served = blocks[0]
        .replace(
            "/var/lib/edge-market",
            dir.path().join("data").to_str().unwrap(),
        )
        .replace("0.0.0.0:59990", &format!("127.0.0.1:{port}"));
    let p = dir.path().join("market.yaml");
    std::fs::write(&p, served).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["market", "serve", "--config"])
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::until(
        "the documented market serving",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
    .await;
    let (s, body) = raw(&base, Method::GET, "/api/v3/market/identity", &[], None).await;
    assert_eq!(s, StatusCode::OK);
    let key = std::fs::read_to_string(dir.path().join("data/identity/identity.pub")).unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains(key.trim()),
        "its identity, made on first start"
    );
    assert!(
        dir.path().join("data/market.db").exists(),
        "SQLite by default"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Two market processes behind one PostgreSQL (a federation's load
/// balancer sends calls to either): awards closed at the same time through
/// both land in one log, chained without a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_market_processes_share_one_postgres_and_one_chain() {
    let Some(pg) = common::postgres::Postgres::start() else {
        return;
    };
    let (one, key) = market(&pg.url).await;
    // The second process: same database, same identity (a federation's
    // market processes share it).
    let store = device_lorawan::market::store::Store::open(&pg.url, key.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let two = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(device_lorawan::market::api::serve(
        listener,
        Arc::new(device_lorawan::market::api::Market::new(store)),
    ));
    let customer = Arc::new(Identity::generate().unwrap());
    let provider = Arc::new(Identity::generate().unwrap());
    let p = MarketClient::new(&one, provider.clone());
    let o = p.offer(&offer("127.0.0.1:10", 20, 52.0)).await.unwrap();
    let mut demands = Vec::new();
    for i in 0..20 {
        let via = if i % 2 == 0 { &one } else { &two };
        let c = MarketClient::new(via, customer.clone());
        let (d, _) = c.demand(&demand()).await.unwrap();
        let b = MarketClient::new(via, provider.clone())
            .bid(
                &d.id,
                &BidBody {
                    offer_id: o.id.clone(),
                    price: 20,
                    heard: vec![],
                },
            )
            .await
            .unwrap();
        demands.push((d.id, b.id));
    }
    let awards = demands.into_iter().enumerate().map(|(i, (d, b))| {
        let c = MarketClient::new(if i % 2 == 0 { &one } else { &two }, customer.clone());
        async move {
            c.award(
                &d,
                &AwardRequest {
                    proven: vec![ProvenBid {
                        bid_id: b,
                        coverage: 1.0,
                        margin_db: 5.0,
                    }],
                },
            )
            .await
            .unwrap()
        }
    });
    futures_util::future::join_all(awards).await;
    let log = MarketClient::new(&two, customer).log().await.unwrap();
    assert_eq!(log.entries.len(), 20);
    device_lorawan::market::ledger::verify(&log).unwrap();
}
