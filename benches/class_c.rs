//! Class C downlink latency: PUT on the device-service API → the frame at
//! the gateway. The release binary serves 20 class C ABP motes; a Semtech
//! UDP packet forwarder played here (PULL_DATA, one PUSH_DATA uplink per
//! mote, then PULL_RESP answered with TX_ACK) times each command from the
//! moment the PUT is sent to the PULL_RESP's arrival, one command at a
//! time. No uplink follows the first: a class A path would never deliver.
//!
//! `cargo bench --bench class_c` (`-- --commands N`). Prints the median,
//! p99 and max; exits non-zero if a command does not arrive, arrives
//! without `imme` or off RX2, or the median is 1 s or more.

use std::time::{Duration, Instant};

use device_lorawan::devices::DeviceClass;
use device_lorawan::ingest::bridge::GatewayUplink;
use device_lorawan::ingest::udp;
use device_lorawan::ingest::udp::downlink as wire;
use device_lorawan::lorawan::{DataRate, Eui64};
use device_lorawan::pipeline::uplink::RxMeta;
use device_lorawan::sim::mote::{self, Mote};

#[path = "support/mod.rs"]
mod support;
use support::{arg, free_port, wait_port, Killed};

const MOTES: usize = 20;
const GW: u64 = 0x0016_c001_f153_a14c;

fn put(api: u16, device: &str, seconds: u16) {
    use std::io::{Read, Write};
    let body = format!(r#"{{"reportInterval":"{seconds}"}}"#);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        s,
        "PUT /api/v3/device/name/{device}/reportInterval HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn main() {
    let commands = arg("--commands", 100) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut entries = mote::entries(MOTES, 5);
    for e in &mut entries {
        e.class = DeviceClass::C;
    }
    let devices = dir.path().join("devices.yaml");
    std::fs::write(&devices, mote::devices_yaml(&entries)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&devices, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (api, udp_port) = (free_port(), free_port());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "Service: {{ DataDir: {data}, ApiBind: \"127.0.0.1:{api}\" }}\n\
             Devices: {{ File: {devices}, ProfilesDir: {profiles} }}\n\
             Ingest: {{ DedupWindow: 50ms, Udp: {{ Bind: \"127.0.0.1:{udp_port}\" }} }}\n\
             Readings: {{ JsonLines: \"\" }}\n\
             Log: {{ Level: warn }}\n",
            data = dir.path().join("data").display(),
            devices = devices.display(),
            profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
        ),
    )
    .unwrap();
    let _svc = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("device-lorawan"),
    );
    wait_port(api);

    // The packet forwarder: its downlink path first, then one uplink per mote.
    let gw = Eui64::from_u64(GW);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", udp_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pull = vec![2, 0, 1, udp::PULL_DATA];
    pull.extend_from_slice(&gw.0);
    sock.send(&pull).unwrap();
    for (i, e) in entries.iter().enumerate() {
        let (_, phy) = Mote::new(e).next_frame();
        let up = GatewayUplink {
            phy,
            rx: RxMeta {
                gateway: gw,
                rssi: -60,
                snr: 7.0,
                tmst: Some(1_000_000 * i as u32),
                frequency: Some(868_100_000),
                datr: DataRate::parse("SF7BW125"),
                gps_time_ns: None,
                time_ns: None,
                station: None,
            },
        };
        sock.send(&udp::push_data(i as u16, gw, &[up])).unwrap();
    }
    // Every mote heard (published) before the first PUT.
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = |name: &str| -> u64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    while scrape("lorawan_uplinks_published_total") < MOTES as u64 {
        assert!(
            Instant::now() < deadline,
            "the motes' uplinks were not published"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut latencies = Vec::with_capacity(commands);
    let mut buf = [0u8; 2048];
    let mut failed = false;
    for n in 0..commands {
        let device = &entries[n % MOTES].name;
        let seconds = 60 + (n % 3000) as u16;
        let sent = Instant::now();
        put(api, device, seconds);
        let got = loop {
            if sent.elapsed() > Duration::from_secs(10) {
                break None;
            }
            let Ok(len) = sock.recv(&mut buf) else {
                continue;
            };
            if len < 4 || buf[3] != wire::PULL_RESP {
                continue;
            }
            let at = sent.elapsed();
            let body = &buf[4..len];
            let _ = sock.send(&wire::tx_ack([buf[1], buf[2]], gw, "NONE"));
            break Some((at, wire::decode_pull_resp(body).unwrap()));
        };
        match got {
            Some((at, t)) if t.immediately && t.frequency == 869_525_000 => latencies.push(at),
            other => {
                eprintln!("FAIL: command {n} for {device}: {other:?}");
                failed = true;
                break;
            }
        }
    }
    latencies.sort();
    if !latencies.is_empty() {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let median = latencies[latencies.len() / 2];
        let p99 = latencies[(latencies.len() - 1) * 99 / 100];
        println!(
            "class_c: {} of {commands} commands at the gateway, PUT → PULL_RESP median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies.len(),
            ms(median),
            ms(p99),
            ms(*latencies.last().unwrap())
        );
        if median >= Duration::from_secs(1) {
            eprintln!("FAIL: median latency 1 s or more");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
