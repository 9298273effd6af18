//! The market as it is deployed: docs/market.md's configurations run as
//! documented, and two market processes behind one PostgreSQL.

mod common;
mod market_api;

use std::sync::Arc;
use std::time::Duration;

use device_lorawan::handover::identity::Identity;
use device_lorawan::market::client::MarketClient;
use device_lorawan::market::types::*;
use hyper::{Method, StatusCode};

use market_api::*;

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
