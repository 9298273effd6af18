//! The market service on a loopback port for the market's tests: its
//! OpenAPI document as a checker of every answer, signed calls, and the
//! offers, demands, contracts and receipts the tests post
//! (`tests/market.rs`, `tests/market_deploy.rs`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::handover::contract::{
    Activation, Contract, ImageRef, Party, Resources as GrantedResources, SignedContract,
};
use device_lorawan::handover::identity::Identity;
use device_lorawan::handover::receipt::{Detected, Receipt, Verdict};
use device_lorawan::lorawan::{Eui64, FcntState};
use device_lorawan::market::client::now_ms;
use device_lorawan::market::types::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// The market on a free loopback port, with `url` for its database.
pub async fn market(url: &str) -> (String, Arc<Identity>) {
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
pub struct Spec(pub Value);

impl Spec {
    pub async fn fetch(base: &str) -> Self {
        let (status, body) = raw(base, Method::GET, "/api/v3/market/openapi.yaml", &[], None).await;
        assert_eq!(status, StatusCode::OK);
        Self(serde_yaml_ng::from_slice(&body).unwrap())
    }

    pub fn template_of(&self, path: &str) -> String {
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

    pub fn check(&self, method: &Method, path: &str, status: StatusCode, body: &Value) {
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
        let errors = crate::common::errors_of(&v, body);
        assert!(
            errors.is_empty(),
            "{method} {t} {status}: {errors:?}\n{body}"
        );
    }
}

pub async fn raw(
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
pub async fn call(
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

/// A signed POST of `body` (any serialisable value) by `me`.
pub async fn post<T: serde::Serialize>(
    spec: &Spec,
    base: &str,
    me: &Identity,
    path: &str,
    body: &T,
) -> (StatusCode, Value) {
    let v = serde_json::to_value(body).unwrap();
    call(spec, base, me, Method::POST, path, Some(v)).await
}

pub fn offer(address: &str, price: u64, lat: f64) -> OfferBody {
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

pub fn demand() -> DemandBody {
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

pub fn contract(id: &str, customer: &Identity, provider: &Identity) -> SignedContract {
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
pub fn receipt(
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
