//! The device-service API: EdgeX routes whose answers validate against the
//! official device-sdk OpenAPI schemas, and the Prometheus counters.

mod common;

use std::time::Duration;

use device_lorawan::sim::{self, mote, Faults, SimOptions, Target};

async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    common::http(addr, method, path, "").await
}

use common::http as send;

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

/// `body` is a valid `schema` of the device-sdk spec.
fn assert_schema(body: &str, schema: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    let errors = common::schema_errors(&common::openapi_validator("device-sdk.yaml", schema), &doc);
    assert!(errors.is_empty(), "{schema}: {errors:?} in {body}");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_commands_and_secrets() {
    use device_lorawan::devices::AdminState;
    let data = tempfile::tempdir().unwrap();
    let full = mote::entries(3, 5);
    let mut entries = full.clone();
    entries[1].admin_state = AdminState::Locked;
    // sim-mote-3 has no session yet: its keys arrive through the API.
    (
        entries[2].dev_addr,
        entries[2].nwk_s_key,
        entries[2].app_s_key,
    ) = (None, None, None);
    let keys: Vec<String> = full
        .iter()
        .flat_map(|e| [e.nwk_s_key.as_ref().unwrap(), e.app_s_key.as_ref().unwrap()])
        .map(|k| hex::encode(k.expose()))
        .collect();
    let mut svc = common::Service::start(common::config(data.path()), entries.clone()).await;
    let api = svc.bound.api;

    let (status, body) = get(api, "GET", "/api/v3/device/name/sim-mote-1/climate").await;
    assert_eq!(status, 404, "nothing reported yet: {body}");
    assert_schema(&body, "ErrorResponse");
    assert_eq!(
        get(api, "GET", "/api/v3/device/name/nobody/climate")
            .await
            .0,
        404
    );
    assert_eq!(
        get(api, "GET", "/api/v3/device/name/sim-mote-1/nothing")
            .await
            .0,
        404
    );
    assert_eq!(
        send(api, "PUT", "/api/v3/device/name/sim-mote-1/climate", "{}")
            .await
            .0,
        405
    );
    // A setting is checked against the profile before anything is queued.
    let interval = "/api/v3/device/name/sim-mote-1/reportInterval";
    let (status, body) = send(api, "PUT", interval, r#"{"reportInterval":"5"}"#).await;
    assert_eq!(status, 400, "under the profile's minimum: {body}");
    assert_schema(&body, "ErrorResponse");
    assert!(body.contains("outside"), "{body}");
    assert_eq!(
        send(api, "PUT", interval, r#"{"reportInterval":"ten"}"#)
            .await
            .0,
        400
    );
    // A valid setting is queued for the device's next uplink.
    let (status, body) = send(api, "PUT", interval, r#"{"reportInterval":"300"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_schema(&body, "BaseResponse");
    let (status, body) = get(api, "GET", "/api/v3/device/name/sim-mote-2/climate").await;
    assert_eq!(status, 423, "locked: {body}");
    assert_schema(&body, "ErrorResponse");

    // Keys the EdgeX way. A bad one is refused without being echoed.
    let secret = |nwk: &str| {
        format!(
            r#"{{"apiVersion":"v3","secretName":"sim-mote-3","secretData":[
                {{"key":"DevAddr","value":"{}"}},{{"key":"NwkSKey","value":"{nwk}"}},
                {{"key":"AppSKey","value":"{}"}}]}}"#,
            full[2].dev_addr.unwrap(),
            keys[5]
        )
    };
    let (status, body) = send(api, "POST", "/api/v3/secret", &secret("not-a-key-zzzz")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("NwkSKey") && !body.contains("not-a-key"),
        "{body}"
    );
    let (status, body) = send(api, "POST", "/api/v3/secret", &secret(&keys[4])).await;
    assert_eq!(status, 201, "{body}");
    assert_schema(&body, "BaseResponse");
    // Any other name is a secret kept as given (as the device SDK does),
    // never shown again; an empty one too, as the spec allows.
    let other = r#"{"apiVersion":"v3","secretName":"broker-credentials","secretData":[
        {"key":"username","value":"edge"},{"key":"password","value":"hunter2-broker"}]}"#;
    let (status, body) = send(api, "POST", "/api/v3/secret", other).await;
    assert_eq!(status, 201, "{body}");
    assert_schema(&body, "BaseResponse");
    let empty = r#"{"apiVersion":"v3","secretName":"nothing","secretData":[]}"#;
    assert_eq!(send(api, "POST", "/api/v3/secret", empty).await.0, 201);
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(data.path().join("secrets.yaml")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only");
        let store = device_lorawan::store::secrets::SecretStore::open(data.path()).unwrap();
        assert_eq!(
            store
                .other("broker-credentials")
                .and_then(|m| m.get("password"))
                .map(String::as_str),
            Some("hunter2-broker")
        );
        assert_eq!(store.sessions().unwrap().len(), 1, "one device session");
    }

    // All three motes report; sim-mote-3 decodes with the keys just given.
    let report = common::sim_udp(svc.bound.udp.unwrap(), 5, 9, 0).await;
    svc.wait_published(9, Duration::from_secs(10)).await;
    let (status, body) = get(api, "GET", "/api/v3/device/name/sim-mote-1/climate").await;
    assert_eq!(status, 200, "{body}");
    let doc = assert_schema(&body, "EventResponse");
    let got = svc.stop().await;
    common::assert_exactly(&report, &got);
    let last = got
        .iter()
        .rev()
        .find(|u| &*u.device == "sim-mote-1")
        .unwrap();
    let want = serde_json::to_value(device_lorawan::edgex::event::add_event_request(last)).unwrap();
    let value_of = |readings: &serde_json::Value, name: &str| {
        readings
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resourceName"] == name)
            .map(|r| r["value"].clone())
    };
    let readings = &doc["event"]["readings"];
    assert_eq!(readings.as_array().unwrap().len(), 2);
    for name in ["temperature", "humidity"] {
        assert_eq!(
            value_of(readings, name),
            value_of(&want["event"]["readings"], name),
            "{name}"
        );
        assert!(value_of(readings, name).is_some());
    }
    assert_eq!(doc["event"]["sourceName"], "climate");

    // The stored session survives a restart; no answer ever held a key.
    let mut svc = common::Service::start(common::config(data.path()), entries).await;
    let more = common::sim_udp(svc.bound.udp.unwrap(), 5, 3, 3).await;
    svc.wait_published(3, Duration::from_secs(10)).await;
    let (_, config) = get(svc.bound.api, "GET", "/api/v3/config").await;
    let got = svc.stop().await;
    common::assert_exactly(&more, &got);
    for k in &keys {
        assert!(!config.contains(k.as_str()));
    }
}

/// One request with `headers` added: (status, head, body).
async fn request_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_routes_need_the_bearer_token() {
    let token = "k8s-style-token-0123456789abcdef";
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.service.api_token = Some(token.into());
    let mut svc = common::Service::start(config, mote::entries(1, 4)).await;
    let api = svc.bound.api;
    let put = r#"{"reportInterval":"300"}"#;
    let path = "/api/v3/device/name/sim-mote-1/reportInterval";
    let (status, head, body) = request_with(api, "PUT", path, "", put).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["apiVersion"].as_str(), v["statusCode"].as_u64()),
        (Some("v3"), Some(401))
    );
    let (status, _, _) =
        request_with(api, "PUT", path, "Authorization: Bearer wrong\r\n", put).await;
    assert_eq!(status, 401);
    let (status, _, _) = request_with(api, "POST", "/api/v3/secret", "", "{}").await;
    assert_eq!(status, 401, "secrets too");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, _, body) = request_with(api, "PUT", path, &auth, put).await;
    assert_eq!(status, 200, "{body}");
    // Reading routes stay open (Service.ApiTokenForReads is off); the token
    // is never shown, not even in the configuration.
    let (status, _, body) = request_with(api, "GET", "/api/v3/config", "", "").await;
    assert_eq!(status, 200);
    assert!(
        !body.contains(token) && body.contains("<redacted>"),
        "{body}"
    );
    let (_, _, metrics) = request_with(api, "GET", "/metrics", "", "").await;
    assert!(
        metrics.contains("edgex_api_unauthorized_total 3"),
        "{metrics}"
    );
    svc.stop().await;

    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.service.api_token = Some(token.into());
    config.service.api_token_for_reads = true;
    let mut svc = common::Service::start(config, mote::entries(1, 4)).await;
    let api = svc.bound.api;
    assert_eq!(
        request_with(api, "GET", "/api/v3/config", "", "").await.0,
        401
    );
    assert_eq!(request_with(api, "GET", "/metrics", "", "").await.0, 401);
    assert_eq!(
        request_with(api, "GET", "/api/v3/ping", "", "").await.0,
        200,
        "ping stays open"
    );
    assert_eq!(request_with(api, "GET", "/metrics", &auth, "").await.0, 200);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_bounds_its_connections() {
    use tokio::io::AsyncReadExt;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.service.api_max_connections = 4;
    let mut svc = common::Service::start(config, mote::entries(1, 4)).await;
    let api = svc.bound.api;
    // Four kept-alive connections hold every slot (each answered once, so
    // the service has taken it)...
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
        s.write_all(b"GET /api/v3/ping HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        held.push(s);
    }
    // ...so a fifth is closed at once, counted.
    let mut fifth = tokio::net::TcpStream::connect(api).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), fifth.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(held);
    // The slots come back once the service has seen the connections close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut refused_again = 0;
    loop {
        // A refused connection is closed unanswered: no `get` (it expects
        // an answer), a raw request.
        let ping = async {
            let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
            s.write_all(b"GET /api/v3/ping HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.ok()?;
            Some(raw.starts_with(b"HTTP/1.1 200"))
        };
        let ok = tokio::time::timeout(Duration::from_secs(2), ping)
            .await
            .is_ok_and(|r| r == Some(true));
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slots never came back"
        );
        // Refused while the service had yet to see the four close.
        refused_again += 1;
        tokio::task::yield_now().await;
    }
    let (_, metrics) = get(api, "GET", "/metrics").await;
    let refused = format!("edgex_api_connections_refused_total {}", 1 + refused_again);
    assert!(metrics.contains(&refused), "{refused}: {metrics}");
    svc.stop().await;
}

/// EdgeX secure mode: guarded routes need an EdgeX JWT, which the secret
/// store judges (a stand-in of its `/v1/identity/oidc/introspect`, checking
/// the service's own token from `SecretStore.TokenFile`); a verdict is
/// cached, an unreachable store is a 500, a bad JWT a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_checks_edgex_jwts_with_the_secret_store() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let service_token = "hvs.device-lorawan-service-token";
    let good_jwt = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiIvdjEvaWRlbnRpdHkvb2lkYyIsInN1YiI6ImNvcmUtY29tbWFuZCJ9.c2ln";
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = asked.clone();
    let mut store = common::standin::StandIn::start_with_headers(Arc::new(
        move |method, path, headers, body| {
            seen.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                (method.as_str(), path),
                ("POST", "/v1/identity/oidc/introspect")
            );
            if headers.get("x-vault-token").and_then(|v| v.to_str().ok()) != Some(service_token) {
                return (
                    hyper::StatusCode::FORBIDDEN,
                    serde_json::json!({"errors": ["permission denied"]}),
                );
            }
            let req: serde_json::Value = serde_json::from_slice(body).unwrap();
            let active = req["token"] == good_jwt;
            (
                hyper::StatusCode::OK,
                serde_json::json!({ "active": active }),
            )
        },
    ))
    .await;
    let data = tempfile::tempdir().unwrap();
    let token_file = data.path().join("secrets-token.json");
    std::fs::write(
        &token_file,
        format!(r#"{{"auth":{{"client_token":"{service_token}"}}}}"#),
    )
    .unwrap();
    let mut config = common::config(data.path());
    config.secret_store.enabled = true;
    config.secret_store.host = "127.0.0.1".into();
    config.secret_store.port = store.addr.port();
    config.secret_store.token_file = token_file;
    let mut svc = common::Service::start(config, mote::entries(1, 4)).await;
    let api = svc.bound.api;
    let put = r#"{"reportInterval":"300"}"#;
    let path = "/api/v3/device/name/sim-mote-1/reportInterval";
    assert_eq!(request_with(api, "PUT", path, "", put).await.0, 401);
    let (status, _, body) = request_with(
        api,
        "PUT",
        path,
        "Authorization: Bearer eyJ.forged.jwt\r\n",
        put,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("EdgeX JWT") && !body.contains("forged"),
        "{body}"
    );
    let auth = format!("Authorization: Bearer {good_jwt}\r\n");
    let (status, _, body) = request_with(api, "PUT", path, &auth, put).await;
    assert_eq!(status, 200, "{body}");
    let before = asked.load(Ordering::SeqCst);
    let (status, _, _) = request_with(api, "PUT", path, &auth, put).await;
    assert_eq!(status, 200);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        before,
        "a valid JWT is cached, not asked again"
    );
    // Reads stay open; the store is asked nothing for them.
    assert_eq!(
        request_with(api, "GET", "/api/v3/version", "", "").await.0,
        200
    );
    // The store gone: a new JWT cannot be judged (500, as EdgeX answers).
    store.stop();
    let (status, _, body) = request_with(
        api,
        "PUT",
        path,
        "Authorization: Bearer eyJ.other.jwt\r\n",
        put,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    let (_, _, metrics) = request_with(api, "GET", "/metrics", "", "").await;
    assert!(
        metrics.contains("edgex_api_unauthorized_total 2"),
        "{metrics}"
    );
    svc.stop().await;
}

/// What device-sdk-go gives every device service: `X-Correlation-ID` on
/// every answer (the caller's, else a new one; a non-UUID refused), `Allow`
/// on a 405, and GET commands honouring `ds-returnevent=false` (no event)
/// and `ds-pushevent=true` (the event also reaches core-data, here the
/// OpenAPI-validating stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_ids_allow_and_command_options() {
    let cd = common::core_data::CoreData::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.edgex.delivery = device_lorawan::config::Delivery::Rest;
    config.edgex.core_data.url = cd.url();
    let mut svc = common::Service::start(config, mote::entries(3, 6)).await;
    let api = svc.bound.api;
    let report = common::sim_udp(svc.bound.udp.unwrap(), 6, 6, 0).await;
    let sent = report.expected.len();
    svc.wait_published(sent as u64, Duration::from_secs(10))
        .await;
    common::until("the events in core-data", Duration::from_secs(10), || {
        cd.stored() >= sent
    })
    .await;

    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let (status, head, _) = request_with(
        api,
        "GET",
        "/api/v3/ping",
        &format!("X-Correlation-ID: {id}\r\n"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("x-correlation-id: {id}")),
        "{head}"
    );
    let (_, head, _) = request_with(api, "GET", "/api/v3/nowhere", "", "").await;
    let given = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-correlation-id: ")
                .map(str::to_owned)
        })
        .expect("a correlation id on a 404 too");
    assert!(uuid::Uuid::parse_str(&given).is_ok(), "{given}");
    // A malformed one is replaced, or refused where the spec has a 400.
    let (status, head, _) = request_with(
        api,
        "GET",
        "/api/v3/ping",
        "X-Correlation-ID: not-a-uuid\r\n",
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(!head.contains("not-a-uuid"), "{head}");
    let (status, _, _) = request_with(
        api,
        "POST",
        "/api/v3/secret",
        "X-Correlation-ID: not-a-uuid\r\n",
        r#"{"apiVersion":"v3","secretName":"x","secretData":[]}"#,
    )
    .await;
    assert_eq!(status, 400);

    for (method, path, allow) in [
        ("DELETE", "/api/v3/ping", "GET"),
        ("GET", "/api/v3/secret", "POST"),
        ("POST", "/api/v3/device/name/sim-mote-1/climate", "GET, PUT"),
        ("PATCH", "/api/v3/discovery", "POST, DELETE"),
    ] {
        let (status, head, _) = request_with(api, method, path, "", "").await;
        assert_eq!(status, 405, "{method} {path}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{head}"
        );
    }

    let climate = "/api/v3/device/name/sim-mote-1/climate";
    let (status, _, body) = request_with(
        api,
        "GET",
        &format!("{climate}?ds-returnevent=false"),
        "",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let v = assert_schema(&body, "EventResponse");
    assert!(v.get("event").is_none(), "{body}");
    let before = cd.stored();
    let (status, _, body) = request_with(
        api,
        "GET",
        &format!("{climate}?ds-pushevent=true&ds-returnevent=true"),
        "",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let v = assert_schema(&body, "EventResponse");
    let pushed = v["event"]["id"].as_str().unwrap().to_string();
    common::until(
        "the pushed event in core-data",
        Duration::from_secs(10),
        || cd.stored() > before,
    )
    .await;
    assert!(cd.state.events.lock().unwrap().contains_key(&pushed));
    assert!(cd.state.invalid.lock().unwrap().is_empty());
    svc.stop().await;
}
