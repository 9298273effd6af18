//! LoRa Basics Station gateways through the real binary, driven by an
//! independent client written from Semtech's LNS protocol specification
//! in Python (`tests/peers/station_peer.py`, PyPI `websockets`): discovery,
//! `router_config`, uplinks, join accepts and downlinks with the uplink's
//! context, de-duplication across protocols, allow-list and tokens, TLS
//! and mutual TLS, malformed input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use device_lorawan::lorawan::region::{Region, RegionName, RegionSettings};
use device_lorawan::lorawan::Eui64;
use device_lorawan::sim::mote::{self, Mote};
use serde_json::Value;

const SEED: u64 = 41;
const GW: u64 = 0xb827_ebff_fe00_0001;

/// The real binary with ABP mote 1 and OTAA mote 1 of `SEED`, Semtech UDP
/// and Basics Station (`station` added to its section) on free ports.
fn service(station: &str, top: &str) -> (common::BinaryEnv, common::Running, u16) {
    service_with("50ms", station, top)
}

/// [`service`] with de-duplication window `window`.
fn service_with(
    window: &str,
    station: &str,
    top: &str,
) -> (common::BinaryEnv, common::Running, u16) {
    let mut entries = mote::entries(1, SEED);
    entries.extend(mote::otaa_entries(1, SEED, Default::default()));
    let port = common::free_port();
    let more = if station.is_empty() {
        String::new()
    } else {
        format!(", {station}")
    };
    let env = common::binary_env(
        &mote::devices_yaml(&entries),
        "",
        &format!("DedupWindow: {window}, BasicStation: {{ Enabled: true, Bind: \"127.0.0.1:{port}\"{more} }}"),
        "",
    );
    if !top.is_empty() {
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text.push_str(top);
        std::fs::write(&env.config, text).unwrap();
    }
    let child = common::start_binary(&env.config);
    (env, child, port)
}

/// Run the Python station as gateway `gw` against `base`, sending `lines`;
/// its events. `None` (skip) without python3 and websockets, outside CI.
fn station(base: &str, gw: u64, extra: &[&str], lines: &[String]) -> Option<Vec<Value>> {
    if !common::require("python3") {
        return None;
    }
    let probe = Command::new("python3")
        .args(["-c", "import websockets"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        common::skip::skip(
            "PyPI websockets is not installed",
            "pip install -r tests/peers/requirements.txt",
        );
        return None;
    }
    let mut child = Command::new("python3")
        .arg(common::repo_path("tests/peers/station_peer.py"))
        .args([base, &format!("{gw:016x}")])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Some(events)
}

fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

/// An uplink line for the station: `phy` heard at `dr` on `freq`, at `xtime`.
fn up(phy: &[u8], dr: u8, freq: u32, xtime: i64) -> String {
    serde_json::json!({"phy": hex::encode(phy), "DR": dr, "Freq": freq, "xtime": xtime}).to_string()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Gateways refused so far, from the metrics text.
fn refused(m: &str) -> u64 {
    metric(
        m,
        "lorawan_inputs_rejected_total{reason=\"gateway_refused\"}",
    )
}

async fn metrics(api: std::net::SocketAddr) -> String {
    common::http(api, "GET", "/metrics", "").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abp_and_otaa_motes_through_a_station() {
    let (env, mut child, port) = service("", "");
    let base = format!("ws://127.0.0.1:{port}");
    let region = Region::new(RegionSettings::new(RegionName::EU868));
    let entries = {
        let mut e = mote::entries(1, SEED);
        e.extend(mote::otaa_entries(1, SEED, Default::default()));
        e
    };
    let mut abp = Mote::new(&entries[0]);
    let mut otaa = Mote::new(&entries[1]);
    // ABP frames (the last one confirmed) and a JoinRequest.
    let mut lines: Vec<String> = (0..3)
        .map(|i| up(&abp.next_frame().1, 5, 868_100_000, 1_000_000 * (i + 1)))
        .collect();
    abp.confirmed = true;
    lines.push(up(
        &abp.next_frame().1,
        4,
        868_300_000,
        0x0001_0000_0400_0000,
    ));
    let jreq_xtime = 0x0001_0000_0500_0000i64;
    lines.push(up(
        &otaa.join_request(std::time::Instant::now()),
        0,
        868_500_000,
        jreq_xtime,
    ));
    let Some(ev) = station(&base, GW, &["--linger", "6"], &lines) else {
        return;
    };
    let info = events(&ev, "router-info");
    assert_eq!(
        info[0]["uri"],
        format!("ws://127.0.0.1:{port}/traffic/B8-27-EB-FF-FE-00-00-01"),
        "{ev:?}"
    );
    let rc = events(&ev, "router_config");
    assert_eq!(rc[0]["region"], "EU868");
    assert_eq!(rc[0]["DRs"][5], serde_json::json!([7, 125, 0]));
    assert_eq!(rc[0]["upchannels"].as_array().unwrap().len(), 3);
    let ts = events(&ev, "timesync");
    let sent = events(&ev, "timesync-sent");
    assert_eq!((ts.len(), sent.len()), (1, 1), "{ev:?}");
    // Echoed as the integer the station sent: station 2.0.6 refuses a float.
    assert!(ts[0]["txtime"].is_i64(), "{:?}", ts[0]);
    assert_eq!(ts[0]["txtime"], sent[0]["txtime"]);
    assert!(ts[0]["gpstime"].as_i64().unwrap() > 1_400_000_000_000_000);

    let dn = events(&ev, "dnmsg");
    assert_eq!(dn.len(), 2, "the JoinAccept and the ACK: {dn:?}");
    let accept = dn.iter().find(|d| d["RxDelay"] == 5).expect("a JoinAccept");
    // JOIN_ACCEPT_DELAY1 after the JoinRequest, on its channel and rate;
    // RX2 on EU868's 869.525 MHz at DR0.
    assert_eq!(accept["xtime"].as_i64(), Some(jreq_xtime));
    assert_eq!(
        (accept["RX1DR"].as_u64(), accept["RX1Freq"].as_u64()),
        (Some(0), Some(868_500_000))
    );
    assert_eq!(
        (accept["RX2DR"].as_u64(), accept["RX2Freq"].as_u64()),
        (Some(0), Some(869_525_000))
    );
    assert_eq!(accept["DevEui"], "70-B3-D5-7E-D0-01-00-01");
    let pdu = hex::decode(accept["pdu"].as_str().unwrap()).unwrap();
    assert!(otaa.accept(&pdu, &region), "the mote opens its JoinAccept");
    let ack = dn.iter().find(|d| d["RxDelay"] == 1).expect("the ACK");
    assert_eq!(ack["xtime"].as_i64(), Some(0x0001_0000_0400_0000));
    assert_eq!(
        (ack["RX1DR"].as_u64(), ack["RX1Freq"].as_u64()),
        (Some(4), Some(868_300_000))
    );
    let got = abp
        .receive(&hex::decode(ack["pdu"].as_str().unwrap()).unwrap(), &region)
        .unwrap()
        .0;
    assert!(got.ack);

    // The joined mote's data, through a new connection of the same gateway.
    let lines: Vec<String> = (0..2)
        .map(|i| up(&otaa.next_frame().1, 5, 868_100_000, 2_000_000 * (i + 1)))
        .collect();
    let ev = station(&base, GW, &["--linger", "1"], &lines).unwrap();
    assert_eq!(events(&ev, "router_config").len(), 1);
    common::until("6 uplinks published", Duration::from_secs(10), || {
        common::published_lines(&env.out).len() >= 6
    })
    .await;
    let published = common::published_lines(&env.out);
    assert_eq!(published.iter().filter(|p| p.0 == "sim-mote-1").count(), 4);
    assert_eq!(published.iter().filter(|p| p.0 == "sim-otaa-1").count(), 2);
    let m = metrics(env.api).await;
    assert_eq!(
        metric(&m, "lorawan_downlinks_acked_total"),
        2,
        "dntxed acknowledged both"
    );
    assert_eq!(
        metric(
            &m,
            "lorawan_uplinks_received_total{source=\"basic-station\"}"
        ),
        7
    );
    assert!(
        m.contains(&format!(
            "lorawan_station_uplinks_total{{gateway=\"{}\"}} 7",
            Eui64::from_u64(GW)
        )),
        "{m}"
    );
    let (status, body) = common::http(env.api, "GET", "/api/v3/lorawan/gateways", "").await;
    assert_eq!(status, 200);
    let g: Value = serde_json::from_str(&body).unwrap();
    let g = &g["gateways"][0];
    assert_eq!(
        (
            g["gateway"].as_str(),
            g["uplinks"].as_u64(),
            g["downlinks"].as_u64()
        ),
        (Some("b827ebfffe000001"), Some(7), Some(2)),
        "{g}"
    );
    assert_eq!(g["connected"], false, "both connections closed");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_frame_heard_by_a_station_and_a_udp_gateway_is_one_reading() {
    // A window long enough for the Python station to start and connect.
    let (env, mut child, port) = service_with("4s", "", "");
    let entries = mote::entries(1, SEED);
    let mut abp = Mote::new(&entries[0]);
    let (_, phy) = abp.next_frame();
    // The UDP gateway's copy...
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx = device_lorawan::pipeline::uplink::RxMeta {
        gateway: Eui64::from_u64(0xb827_ebff_fe00_0002),
        rssi: -80,
        snr: 2.0,
        tmst: Some(5),
        frequency: Some(868_100_000),
        datr: device_lorawan::lorawan::DataRate::parse("SF7BW125"),
        time_ns: None,
        gps_time_ns: None,
        station: None,
    };
    let gwu = device_lorawan::ingest::bridge::GatewayUplink {
        phy: phy.clone(),
        rx,
    };
    sock.send_to(
        &device_lorawan::ingest::udp::push_data(1, rx.gateway, &[gwu]),
        env.udp,
    )
    .unwrap();
    // ...and the station's, within the de-duplication window.
    let Some(_) = station(
        &format!("ws://127.0.0.1:{port}"),
        GW,
        &["--linger", "1"],
        &[up(&phy, 5, 868_100_000, 7)],
    ) else {
        return;
    };
    common::until("the uplink published", Duration::from_secs(10), || {
        !common::published_lines(&env.out).is_empty()
    })
    .await;
    // Published with both gateways counted means both copies were merged
    // in the window: no third copy exists to arrive later.
    let lines = std::fs::read_to_string(&env.out).unwrap();
    let published: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["gateways"], 2, "both gateways counted");
    let m = metrics(env.api).await;
    assert_eq!(metric(&m, "lorawan_uplinks_duplicate_total"), 1, "{m}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_gateways_with_their_token_get_in() {
    let (env, mut child, port) = service(
        &format!("AllowedGateways: [\"{GW:016x}\"], Tokens: {{ \"{GW:016x}\": \"s3cret\" }}"),
        "",
    );
    let base = format!("ws://127.0.0.1:{port}");
    let Some(ev) = station(&base, 0xb827_ebff_fe00_0009, &[], &[]) else {
        return;
    };
    let info = events(&ev, "router-info");
    assert!(
        info[0]["error"].as_str().unwrap().contains("not allowed"),
        "{ev:?}"
    );
    assert!(events(&ev, "router_config").is_empty());
    let ev = station(&base, GW, &[], &[]).unwrap();
    assert_eq!(events(&ev, "refused")[0]["status"], 401, "no token: {ev:?}");
    let ev = station(&base, GW, &["--token", "wrong"], &[]).unwrap();
    assert_eq!(events(&ev, "refused")[0]["status"], 401);
    let ev = station(&base, GW, &["--token", "s3cret", "--linger", "0.2"], &[]).unwrap();
    assert_eq!(events(&ev, "router_config").len(), 1, "{ev:?}");
    // Straight to the traffic endpoint, skipping discovery: refused too.
    let err = tokio_tungstenite::connect_async(format!("{base}/traffic/B8-27-EB-FF-FE-00-00-09"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 403),
        e => panic!("{e}"),
    }
    let m = metrics(env.api).await;
    assert_eq!(refused(&m), 4, "{m}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_the_connection_kept() {
    let (env, mut child, port) = service("", "");
    let entries = mote::entries(1, SEED);
    let mut abp = Mote::new(&entries[0]);
    let raw = |t: &str| serde_json::json!({ "raw": t }).to_string();
    let lines = vec![
        raw("not json"),
        raw(r#"{"msgtype":"updf","DevAddr":"x"}"#),
        raw(
            r#"{"msgtype":"updf","MHdr":64,"DevAddr":1,"FCtrl":2,"FCnt":1,"FOpts":"","FPort":1,"FRMPayload":"","MIC":0,"DR":5,"Freq":868100000,"upinfo":{"xtime":1}}"#,
        ),
        raw(r#"{"msgtype":"rmtsh"}"#),
        up(&abp.next_frame().1, 5, 868_100_000, 9),
        raw(&"x".repeat(9000)),
        up(&abp.next_frame().1, 5, 868_100_000, 10),
    ];
    let Some(ev) = station(
        &format!("ws://127.0.0.1:{port}"),
        GW,
        &["--linger", "1"],
        &lines,
    ) else {
        return;
    };
    let closed = events(&ev, "closed");
    assert_eq!(closed.len(), 1, "the oversize message closes it: {ev:?}");
    assert_eq!(closed[0]["code"], 1009, "close frame: message too big");
    common::until("the good frame", Duration::from_secs(10), || {
        common::published_lines(&env.out).len() == 1
    })
    .await;
    let m = metrics(env.api).await;
    assert_eq!(
        metric(
            &m,
            "lorawan_inputs_rejected_total{reason=\"malformed_station\"}"
        ),
        4,
        "{m}"
    );
    assert_eq!(
        metric(&m, "lorawan_inputs_rejected_total{reason=\"oversize\"}"),
        1,
        "{m}"
    );
    // The service and other gateways go on.
    let ev = station(
        &format!("ws://127.0.0.1:{port}"),
        GW + 1,
        &["--linger", "0.2"],
        &[],
    )
    .unwrap();
    assert_eq!(events(&ev, "router_config").len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    let Some(()) = common::certs::certificates(certs.path()) else {
        return;
    };
    let p = |f: &str| certs.path().join(f).display().to_string();
    let ca = p("ca.crt");
    // Server certificate only.
    let (env, mut child, port) = service(
        &format!(
            "Tls: {{ Cert: \"{}\", Key: \"{}\" }}",
            p("server.crt"),
            p("server.key")
        ),
        "",
    );
    let base = format!("wss://127.0.0.1:{port}");
    let Some(ev) = station(&base, GW, &["--ca", &ca, "--linger", "0.2"], &[]) else {
        return;
    };
    assert!(
        events(&ev, "router-info")[0]["uri"]
            .as_str()
            .unwrap()
            .starts_with("wss://127.0.0.1:"),
        "{ev:?}"
    );
    assert_eq!(events(&ev, "router_config").len(), 1, "{ev:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(env);
    // Mutual TLS: a station without a certificate the client CA signed is refused.
    let (env, mut child, port) = service(
        &format!(
            "Tls: {{ Cert: \"{}\", Key: \"{}\", ClientCa: \"{ca}\" }}",
            p("server.crt"),
            p("server.key")
        ),
        "",
    );
    let base = format!("wss://127.0.0.1:{port}");
    let ev = station(&base, GW, &["--ca", &ca], &[]).unwrap();
    assert_eq!(
        events(&ev, "refused").len(),
        1,
        "no client certificate: {ev:?}"
    );
    let client = [
        "--ca",
        &ca,
        "--cert",
        &p("client.crt"),
        "--key",
        &p("client.key"),
        "--linger",
        "0.2",
    ];
    let ev = station(&base, GW, &client, &[]).unwrap();
    assert_eq!(events(&ev, "router_config").len(), 1, "{ev:?}");
    let m = metrics(env.api).await;
    assert!(refused(&m) >= 1, "{m}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us915_join_accept_windows() {
    // US915 sub-band 2: a JoinRequest at DR0 on 903.9 MHz (channel 8) is
    // answered in RX1 at DR10 on 923.3 MHz (channel 8 mod 8 = 0), RX2 at
    // DR8 on 923.3 MHz (RP002 §2.5).
    let (_env, mut child, port) = service("", "Region: { Name: US915, SubBand: 2 }\n");
    let region = Region::new(RegionSettings::new(RegionName::US915));
    let mut otaa = Mote::in_region(&mote::otaa_entries(1, SEED, Default::default())[0], &region);
    let jreq = otaa.join_request(std::time::Instant::now());
    let Some(ev) = station(
        &format!("ws://127.0.0.1:{port}"),
        GW,
        &["--linger", "1.5"],
        &[up(&jreq, 0, 903_900_000, 77)],
    ) else {
        return;
    };
    let rc = events(&ev, "router_config");
    assert_eq!(rc[0]["region"], "US915");
    assert_eq!(
        rc[0]["upchannels"].as_array().unwrap().len(),
        9,
        "sub-band 2: 8 + 1"
    );
    let dn = events(&ev, "dnmsg");
    assert_eq!(dn.len(), 1, "{ev:?}");
    let d = dn[0];
    assert_eq!(
        (d["RxDelay"].as_u64(), d["xtime"].as_i64()),
        (Some(5), Some(77))
    );
    assert_eq!(
        (d["RX1DR"].as_u64(), d["RX1Freq"].as_u64()),
        (Some(10), Some(923_300_000))
    );
    assert_eq!(
        (d["RX2DR"].as_u64(), d["RX2Freq"].as_u64()),
        (Some(8), Some(923_300_000))
    );
    assert!(otaa.accept(&hex::decode(d["pdu"].as_str().unwrap()).unwrap(), &region));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The simulator's Station gateways against the service in process: ABP
/// and OTAA motes heard by two stations, with faults; every good frame
/// published exactly once, a queued command and the joins delivered in
/// RX1 (or RX2 when the stations cannot do RX1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_site_over_station_gateways() {
    use device_lorawan::sim::{self, SimOptions, Target};
    for refuse_rx1 in [false, true] {
        let data = tempfile::tempdir().unwrap();
        let mut cfg = common::config(data.path());
        cfg.ingest.basic_station.enabled = true;
        cfg.ingest.basic_station.bind = "127.0.0.1:0".parse().unwrap();
        let mut entries = mote::entries(3, SEED);
        entries.extend(mote::otaa_entries(1, SEED, Default::default()));
        let mut svc = common::Service::start(cfg, entries).await;
        let base = format!("ws://{}", svc.bound.station.unwrap());
        let body = r#"{"reportInterval":"300"}"#;
        let (status, _) = common::http(
            svc.bound.api,
            "PUT",
            "/api/v3/device/name/sim-mote-1/reportInterval",
            body,
        )
        .await;
        assert_eq!(status, 200);
        let opts = SimOptions {
            devices: 3,
            otaa_devices: 1,
            gateways: 2,
            rate: 20.0,
            frames: Some(40),
            duration: None,
            seed: SEED,
            refuse_rx1,
            linger: Duration::from_secs(2),
            faults: sim::Faults {
                bad_mic: 0.05,
                duplicate: 0.1,
                ..Default::default()
            },
            ..Default::default()
        };
        let report = sim::run(Target::Station(base), opts, std::future::pending())
            .await
            .unwrap();
        let got = svc.stop().await;
        common::assert_exactly(&report, &got);
        assert_eq!(report.joins.len(), 1, "{:?}", report.joins);
        let d: Vec<_> = report
            .downlinks
            .iter()
            .filter(|d| d.device == "sim-mote-1")
            .collect();
        assert_eq!(d.len(), 1, "{:?}", report.downlinks);
        assert_eq!(d[0].interval_s, 300);
        let delay = if refuse_rx1 { 2_000_000 } else { 1_000_000 };
        assert_eq!(d[0].delay_us, delay, "{refuse_rx1}: {:?}", d[0]);
        let join_delay = if refuse_rx1 { 6_000_000 } else { 5_000_000 };
        assert_eq!(report.joins[0].delay_us, join_delay);
        assert_eq!(report.downlinks_missed + report.downlinks_dropped, 0);
        assert!(report.bad_mic > 0 && report.duplicates > 0);
    }
}

#[test]
fn the_demo_runs_with_station_gateways() {
    let out = Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["demo", "--station", "--duration", "3s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-> LoRa Basics Station ws://127.0.0.1:"),
        "{text}"
    );
    let published: u64 = text
        .split("published ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(published >= 5, "{text}");
    assert!(text.contains("answered 1 joins"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_bounded_and_the_service_goes_on() {
    let (env, mut child, port) = service("MaxConnections: 4", "");
    // Ten connections that never finish a handshake: four are held (until
    // they close or their handshake times out), six are refused at once.
    let flood: Vec<_> = (0..10)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let refusals = || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(env.api).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        metric(
            &text,
            "lorawan_inputs_rejected_total{reason=\"gateway_refused\"}",
        )
    };
    common::until("six refusals", Duration::from_secs(10), || refusals() >= 6).await;
    drop(flood);
    // The slots come back: a station connects and is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Some(ev) = station(
        &format!("ws://127.0.0.1:{port}"),
        GW,
        &["--linger", "0.2"],
        &[],
    ) else {
        return;
    };
    assert_eq!(events(&ev, "router_config").len(), 1, "{ev:?}");
    let m = metrics(env.api).await;
    assert_eq!(refused(&m), 6, "{m}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The traffic a real Semtech station 2.0.6 sent (tests/peers/recorded/),
/// replayed over a WebSocket as recorded: nothing is malformed, every
/// `timesync` is answered with the station's integer `txtime`, the
/// `dntxed` with both `seqno` and `diid` is read as an acknowledgement,
/// and the recorded frames are rebuilt and refused by their MIC (the
/// simulator's mote 1 has their DevAddr, 26010001, with other keys), not
/// as malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_stations_recorded_traffic_is_read() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (env, mut child, port) = service("", "");
    let recorded = std::fs::read_to_string(common::repo_path(
        "tests/peers/recorded/basicstation-2.0.6/station-to-lns.jsonl",
    ))
    .unwrap();
    let traffic: Vec<Value> = recorded
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["path"] == "/traffic/<router>")
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(traffic.len(), 9);
    let uri = format!("ws://127.0.0.1:{port}/traffic/B8-27-EB-FF-FE-00-00-01");
    let (mut ws, _) = tokio_tungstenite::connect_async(&uri).await.unwrap();
    let mut syncs_sent = Vec::new();
    for m in &traffic {
        if m["msgtype"] == "timesync" {
            syncs_sent.push(m["txtime"].clone());
        }
        ws.send(Message::text(m.to_string())).await.unwrap();
    }
    // Answers: router_config for `version`, then one per timesync.
    let mut answers = Vec::new();
    while answers.len() < 1 + syncs_sent.len() {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = next else {
            panic!("{} answers, then {next:?}", answers.len());
        };
        answers.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
    }
    assert_eq!(answers[0]["msgtype"], "router_config");
    let echoed: Vec<Value> = answers[1..]
        .iter()
        .map(|a| {
            assert_eq!(a["msgtype"], "timesync", "{a}");
            assert!(
                a["txtime"].is_i64(),
                "an integer, as the station parses it: {a}"
            );
            a["txtime"].clone()
        })
        .collect();
    assert_eq!(echoed, syncs_sent);
    common::until("three frames refused", Duration::from_secs(10), || {
        let m = common::get(env.api, "/metrics").unwrap_or_default();
        metric(&m, "lorawan_inputs_rejected_total{reason=\"mic\"}") == 3
    })
    .await;
    let m = metrics(env.api).await;
    assert_eq!(
        metric(
            &m,
            "lorawan_inputs_rejected_total{reason=\"malformed_station\"}"
        ),
        0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "lorawan_uplinks_received_total{source=\"basic-station\"}"
        ),
        3
    );
    // The station drops its TCP connection without a closing handshake:
    // a disconnection, not a malformed message.
    drop(ws);
    common::until("the gateway disconnected", Duration::from_secs(10), || {
        let body = common::get(env.api, "/api/v3/lorawan/gateways").unwrap_or_default();
        serde_json::from_str::<Value>(&body).is_ok_and(|g| g["gateways"][0]["connected"] == false)
    })
    .await;
    let m = metrics(env.api).await;
    assert_eq!(
        metric(
            &m,
            "lorawan_inputs_rejected_total{reason=\"malformed_station\"}"
        ),
        0,
        "{m}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
