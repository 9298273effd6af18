//! A site power cut: every OTAA mote rejoins at once. 1,000 motes each send
//! a JoinRequest within 10 s, heard by 2 gateways (Semtech UDP), to the real
//! `device-lorawan` binary (release); the gateways take the JoinAccepts
//! (PULL_RESP) and acknowledge them.
//!
//! `cargo bench --bench joins` (options: `-- --motes N --seconds S`).
//! Prints joins/s (first JoinRequest sent to last JoinAccept received) and
//! the time from a JoinRequest leaving its gateway to its JoinAccept
//! reaching the gateway (p50/p99/max; it includes the 200 ms de-duplication
//! window). Exits non-zero if a JoinAccept is missing, is not the one for its
//! request, or arrives after the request's RX1 deadline (JOIN_ACCEPT_DELAY1,
//! 5 s: a gateway would transmit it too late).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[path = "../tests/common/scrape.rs"]
mod scrape;
#[path = "support/mod.rs"]
mod support;

use device_lorawan::ingest::bridge::GatewayUplink;
use device_lorawan::ingest::udp::downlink as wire;
use device_lorawan::ingest::udp::{push_data, PULL_DATA};
use device_lorawan::lorawan::region::MacVersionName;
use device_lorawan::lorawan::{DataRate, Eui64};
use device_lorawan::pipeline::uplink::RxMeta;
use device_lorawan::sim::mote;

const RX1_DEADLINE: Duration = Duration::from_secs(5);

fn gateway(i: u64, service: SocketAddr) -> (UdpSocket, Eui64) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(service).unwrap();
    let eui = Eui64::from_u64(0xb827_ebff_fe00_0000 + i);
    let mut pull = vec![2, 0, 1, PULL_DATA];
    pull.extend_from_slice(&eui.0);
    sock.send(&pull).unwrap();
    (sock, eui)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let motes = support::arg("--motes", 1000) as usize;
    let seconds = support::arg("--seconds", 10);
    let dir = tempfile::tempdir().unwrap();
    let entries = mote::otaa_entries(motes, 7, MacVersionName::V1_0_3);
    let (_svc, udp, api) = support::service(dir.path(), &mote::devices_yaml(&entries), "");
    let up = Instant::now() + Duration::from_secs(20);
    while scrape::scrape(api, "lorawan_joins_accepted_total").is_none() {
        assert!(Instant::now() < up, "the service did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gateways: Vec<(UdpSocket, Eui64)> = (0..2).map(|g| gateway(g, udp)).collect();
    std::thread::sleep(Duration::from_millis(100));

    // JoinRequest i goes out at concentrator time tmst(i): its JoinAccept
    // comes back timed at tmst(i) + 5 s, which names it.
    let tmst = |i: usize| 1_000 + i as u32 * 1_000;
    let mut motes_state: Vec<mote::Mote> = entries.iter().map(mote::Mote::new).collect();
    let receiver = gateways[0].0.try_clone().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let eui0 = gateways[0].1;
    let (tx, rx) = std::sync::mpsc::channel::<(u32, Instant, Vec<u8>)>();
    let listen = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        let end = Instant::now() + Duration::from_secs(seconds + 30);
        while Instant::now() < end {
            let Ok(n) = receiver.recv(&mut buf) else {
                continue;
            };
            if n > 4 && buf[3] == wire::PULL_RESP {
                let at = Instant::now();
                let t = wire::decode_pull_resp(&buf[4..n]).unwrap();
                let _ = receiver.send(&wire::tx_ack([buf[1], buf[2]], eui0, "NONE"));
                if tx.send((t.tmst, at, t.phy)).is_err() {
                    return;
                }
            }
        }
    });
    let period = Duration::from_secs_f64(seconds as f64 / motes as f64);
    let start = Instant::now();
    let mut sent_at = Vec::with_capacity(motes);
    for (i, m) in motes_state.iter_mut().enumerate() {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let phy = m.join_request(Instant::now());
        sent_at.push(Instant::now());
        for (g, (sock, eui)) in gateways.iter().enumerate() {
            let frame = GatewayUplink {
                phy: phy.clone(),
                rx: RxMeta {
                    time_ns: None,
                    gps_time_ns: None,
                    station: None,
                    gateway: *eui,
                    rssi: -50 - 10 * g as i32,
                    snr: 8.0 - 4.0 * g as f32,
                    tmst: Some(tmst(i)),
                    frequency: Some([868_100_000, 868_300_000, 868_500_000][i % 3]),
                    datr: DataRate::parse("SF9BW125"),
                },
            };
            sock.send(&push_data(i as u16, *eui, &[frame])).unwrap();
        }
    }
    let mut got: HashMap<usize, (Instant, Vec<u8>)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < motes && Instant::now() < deadline {
        if let Ok((t, at, phy)) = rx.recv_timeout(Duration::from_millis(500)) {
            let i = ((t.wrapping_sub(5_000_000) - 1_000) / 1_000) as usize;
            got.entry(i).or_insert((at, phy));
        }
    }
    drop(rx);
    let _ = listen.join();
    let eu868 = device_lorawan::lorawan::region::Region::new(
        device_lorawan::lorawan::region::RegionSettings::new(Default::default()),
    );
    let mut latencies = Vec::with_capacity(motes);
    let (mut late, mut wrong) = (0, 0);
    for (i, m) in motes_state.iter_mut().enumerate() {
        let Some((at, phy)) = got.get(&i) else {
            continue;
        };
        if !m.accept(phy, &eu868) {
            wrong += 1;
        }
        let l = at.duration_since(sent_at[i]);
        if l > RX1_DEADLINE {
            late += 1;
        }
        latencies.push(l);
    }
    latencies.sort();
    let missing = motes - got.len();
    let last = got.values().map(|(at, _)| *at).max().unwrap_or(start);
    let joins_per_s = got.len() as f64 / last.duration_since(start).as_secs_f64();
    let accepted = scrape::scrape(api, "lorawan_joins_accepted_total").unwrap_or(0);
    println!(
        "joins: {} of {motes} JoinAccepts in {:.2} s ({joins_per_s:.0} joins/s, requests offered over {seconds} s, 2 gateways); \
         JoinRequest → JoinAccept at the gateway p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (RX1 deadline 5 s); \
         service accepted {accepted}; late {late}, missing {missing}, wrong {wrong}",
        got.len(),
        last.duration_since(start).as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if late + missing + wrong > 0 {
        eprintln!("FAIL: every JoinAccept must reach its gateway before RX1 and open on its mote");
        std::process::exit(1);
    }
}
