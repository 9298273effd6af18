//! The market's matching, measured: `cargo bench --bench market` (options
//! `-- --edges N --offers N --requests N --postgres URL`; 1,000 edges,
//! 10,000 open offers and 1,000 requests by default, on SQLite).
//!
//! 1,000 provider edges post 10 offers each, their gateways spread over a
//! 4° × 4° area (about 445 × 275 km); then a customer asks the market over
//! HTTP, signed as any edge's call is, for the offers matching a demand at
//! a random place in that area (30 km, the usual resources and prices),
//! one request after the other. Prints the median, p99 and worst answer
//! time and how many offers a request matched; fails when p99 is 50 ms or
//! more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use device_lorawan::handover::identity::Identity;
use device_lorawan::market::client::{now_ms, MarketClient};
use device_lorawan::market::dmu::CustomerRules;
use device_lorawan::market::store::Store;
use device_lorawan::market::types::*;

const FLOOR: Duration = Duration::from_millis(50);

fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1).cloned())
}

/// A small deterministic generator (SplitMix64), for places and prices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((x ^ (x >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let edges: usize = arg("--edges").map_or(1000, |v| v.parse().unwrap());
    let offers: usize = arg("--offers").map_or(10_000, |v| v.parse().unwrap());
    let requests: usize = arg("--requests").map_or(1000, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = arg("--postgres")
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("market.db").display()));
    let market_id = Arc::new(Identity::generate().unwrap());
    let store = Store::open(&url, market_id).await.unwrap();
    let mut rng = Rng(7);
    let ids: Vec<String> = (0..edges)
        .map(|_| Identity::generate().unwrap().public().to_hex())
        .collect();
    let t = Instant::now();
    for i in 0..offers {
        let place = Location {
            lat: 50.0 + 4.0 * rng.next(),
            lon: 3.0 + 4.0 * rng.next(),
        };
        let body = OfferBody {
            region: "EU868".into(),
            location: place,
            gateways: vec![Gateway {
                eui: format!("b827ebfffe{i:06x}"),
                location: place,
            }],
            resources: Resources {
                memory_mib: 128 + (rng.next() * 512.0) as u64,
                cpu_millis: 500 + (rng.next() * 1500.0) as u64,
                ..Default::default()
            },
            price: 5 + (rng.next() * 150.0) as u64,
            stake: 100,
            address: format!("10.0.{}.{}:59996", i / 250, i % 250),
            valid_until_ms: now_ms() + 24 * 3_600_000,
        };
        store
            .put_offer(&ids[i % edges], body, now_ms())
            .await
            .unwrap();
    }
    eprintln!(
        "{offers} offers from {edges} edges posted in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(device_lorawan::market::api::serve(
        listener,
        Arc::new(device_lorawan::market::api::Market::new(store)),
    ));
    let client = MarketClient::new(
        &format!("http://{addr}"),
        Arc::new(Identity::generate().unwrap()),
    );
    let rules = CustomerRules {
        max_distance_km: 30.0,
        ..Default::default()
    };
    let mut took = Vec::with_capacity(requests);
    let mut matched = 0usize;
    for _ in 0..requests {
        let d = rules.demand(
            "EU868",
            Location {
                lat: 50.5 + 3.0 * rng.next(),
                lon: 3.5 + 3.0 * rng.next(),
            },
            vec!["26011234".into()],
        );
        let t = Instant::now();
        let got = client.matching(&d).await.unwrap();
        took.push(t.elapsed());
        matched += got.len();
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    let (p50, p99, worst) = (at(0.5), at(0.99), *took.last().unwrap());
    println!(
        "market matching: {edges} edges, {offers} open offers, {requests} signed requests over HTTP: median {:.2} ms, p99 {:.2} ms, worst {:.2} ms; {:.0} offers matched per request ({})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        matched as f64 / requests as f64,
        if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
    );
    if p99 >= FLOOR {
        eprintln!("FAIL: p99 {p99:?} is not under {FLOOR:?}");
        std::process::exit(1);
    }
}
