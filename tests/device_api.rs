//! The device-service API: EdgeX routes whose answers validate against the
//! official device-sdk OpenAPI schemas, and the Prometheus counters.

mod common;

use std::time::Duration;

use device_lorawan::sim::{self, mote, Faults, SimOptions, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request over a fresh connection: (status, body).
async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgex_routes_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.ingest.mqtt.password = Some("hunter2".into());
    let mut svc = common::Service::start(config, mote::entries(2, 4)).await;
    let api = svc.bound.api;
    assert!(api.ip().is_loopback());

    for (path, schema) in [
        ("/api/v3/ping", "PingResponse"),
        ("/api/v3/version", "VersionResponse"),
        ("/api/v3/config", "ConfigResponse"),
    ] {
        let (status, body) = get(api, "GET", path).await;
        assert_eq!(status, 200, "{path}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let errors =
            common::schema_errors(&common::openapi_validator("device-sdk.yaml", schema), &doc);
        assert!(errors.is_empty(), "{path}: {errors:?}");
        assert_eq!(doc["apiVersion"], "v3");
        assert_eq!(doc["serviceName"], "device-lorawan");
    }
    let (_, ping) = get(api, "GET", "/api/v3/ping").await;
    let ts: serde_json::Value = serde_json::from_str(&ping).unwrap();
    assert!(
        httpdate::parse_http_date(ts["timestamp"].as_str().unwrap()).is_ok(),
        "RFC 1123 timestamp"
    );
    let (_, config) = get(api, "GET", "/api/v3/config").await;
    assert!(!config.contains("hunter2"), "secrets blanked: {config}");
    assert!(config.contains("\"DedupWindow\""));
    assert_eq!(get(api, "GET", "/api/v3/nope").await.0, 404);
    assert_eq!(get(api, "POST", "/api/v3/ping").await.0, 405);

    // Counters move with traffic and are exposed for Prometheus.
    let opts = SimOptions {
        devices: 2,
        gateways: 2,
        rate: 200.0,
        frames: Some(10),
        duration: None,
        seed: 4,
        faults: Faults {
            bad_mic: 0.5,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = sim::run(
        Target::Udp(svc.bound.udp.unwrap()),
        opts,
        std::future::pending(),
    )
    .await
    .unwrap();
    svc.wait_published(report.expected.len() as u64, Duration::from_secs(10))
        .await;
    let (status, text) = get(api, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let metric = |line: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line} missing:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(metric("lorawan_uplinks_received_total{source=\"udp\"}"), 20);
    assert_eq!(
        metric("lorawan_uplinks_published_total"),
        report.expected.len() as u64
    );
    assert_eq!(
        metric("lorawan_inputs_rejected_total{reason=\"mic\"}"),
        2 * report.bad_mic
    );
    assert!(report.bad_mic > 0);
    svc.stop().await;
}
