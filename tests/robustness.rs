//! Bad input gets an error, never a panic: every parser the network can
//! reach, fed random and mutated bytes (a bounded, deterministic run).

use device_lorawan::codec::lpp;
use device_lorawan::ingest::{application, bridge as gateway, udp};
use device_lorawan::lorawan::{self, AesKey, FcntState, SessionCrypto};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// `seed` with a few bytes flipped, dropped or appended.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.next() % 4 {
            match self.next() % 3 {
                0 if !v.is_empty() => {
                    let i = self.next() as usize % v.len();
                    v[i] ^= 1 << (self.next() % 8);
                }
                1 if !v.is_empty() => {
                    v.truncate(self.next() as usize % v.len());
                }
                _ => v.push(self.next() as u8),
            }
        }
        v
    }
}

#[test]
fn parsers_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let crypto = SessionCrypto::new(&AesKey::new([2; 16]), &AesKey::new([1; 16]));
    let frame = hex::decode("80040302010300000673070ae264d4f7e117d2c0").unwrap();
    let gw_json = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayId":"0016c001f153a14c","rssi":-1,"snr":1,"context":"AAAAAQ=="}}"#;
    let app_json = br#"{"deviceInfo":{"devEui":"0004a30b001c0530"},"fCnt":1,"fPort":1,"data":"AWcBEA==","rxInfo":[{"gatewayId":"0016c001f153a14c"}]}"#;
    let push = udp::push_data(
        1,
        device_lorawan::lorawan::Eui64::from_u64(1),
        &[gateway::decode(gw_json).unwrap()],
    );
    let lpp_seed = hex::decode("03670110056700FF018806765ff2960a0003e8").unwrap();
    let (mut ok, mut err) = (0u32, 0u32);
    let mut tally = |r: bool| if r { ok += 1 } else { err += 1 };
    for _ in 0..20_000 {
        let random = rng.bytes(300);
        for input in [random.clone(), rng.mutate(&frame)] {
            if let Ok(f) = lorawan::parse_uplink(&input) {
                let _ = lorawan::uplink::mac_commands(f.fopts());
                let state = FcntState {
                    last: Some(rng.next() as u32),
                    epoch: 0,
                };
                tally(lorawan::verify_mic(f, &crypto, &state, &mut [0; 255]).is_ok());
            } else {
                tally(false);
            }
        }
        tally(gateway::decode(&random).is_ok());
        tally(gateway::decode(&rng.mutate(gw_json)).is_ok());
        tally(application::decode(&rng.mutate(app_json)).is_ok());
        tally(udp::parse(&random).is_ok());
        tally(udp::parse(&rng.mutate(&push)).is_ok());
        tally(lpp::decode(&rng.mutate(&lpp_seed), |_| Ok(())).is_ok());
        tally(lpp::decode(&random, |_| Ok(())).is_ok());
    }
    // Both outcomes occur: the mutations reach past the first check.
    assert!(ok > 1_000 && err > 1_000, "ok {ok}, err {err}");
}

mod common;

/// The device-service API and the bus request handler, fed mutated
/// requests: every answer is an EdgeX JSON body with a status, never a panic.
#[test]
fn api_and_bus_requests_never_panic() {
    use device_lorawan::api::route;
    use device_lorawan::control::plane::Plane;
    use device_lorawan::edgex::bus::BusMessage;
    use device_lorawan::edgex::requests;
    use device_lorawan::pipeline::device_state::DeviceStates;
    use http_body_util::BodyExt;
    use hyper::Method;
    use std::sync::Arc;

    let data = tempfile::tempdir().unwrap();
    let config = common::config(data.path());
    let registry = device_lorawan::devices::Registry::build(
        device_lorawan::sim::mote::entries(2, 9),
        &common::profiles(),
    )
    .unwrap();
    let devices = Arc::new(DeviceStates::new(
        &registry,
        &device_lorawan::config::Config::default().site_region(),
    ));
    let (control, _rx) = tokio::sync::mpsc::unbounded_channel();
    let api = std::sync::Arc::new(Plane::new(
        &config,
        Arc::new(device_lorawan::metrics::Metrics::default()),
        devices,
        device_lorawan::store::secrets::SecretStore::open(data.path()).unwrap(),
        control,
        Arc::new(
            device_lorawan::downlink::queue::DownlinkQueue::open(
                data.path(),
                8,
                Default::default(),
            )
            .unwrap(),
        ),
    ));
    let secret = br#"{"apiVersion":"v3","secretName":"sim-mote-1","secretData":[{"key":"NwkSKey","value":"2b7e151628aed2a6abf7158809cf4f3c"},{"key":"AppSKey","value":"000102030405060708090a0b0c0d0e0f"}]}"#;
    let setting = br#"{"reportInterval":"120"}"#;
    let envelope = br#"{"apiVersion":"v3","requestID":"0b1c2d3e-0000-4000-8000-000000000001","correlationID":"x","payload":{"device":{"name":"sim-mote-1","profileName":"Dragino-LPP-Mote","protocols":{"lorawan":{"DevEUI":"70b3d57ed0000001"}}}}}"#;
    let paths = [
        "/api/v3/device/name/sim-mote-1/climate",
        "/api/v3/device/name/sim-mote-1/reportInterval",
        "/api/v3/device/name/sim%2Dmote%2D1/climate",
        "/api/v3/device/name/%C3%28/%",
        "/api/v3/device/name//",
        "/api/v3/secret",
    ];
    let topics = [
        "edgex/device-lorawan/validate/device",
        "edgex/device/command/request/device-lorawan/sim-mote-1/climate/get",
        "edgex/device/command/request/device-lorawan/sim-mote-1/reportInterval/set",
        "edgex/device/command/request/device-lorawan/%FF/x/get",
        "edgex/system-events/core-metadata/device/update/device-lorawan/p",
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The seeds themselves are accepted: the mutations start from valid input.
    assert_eq!(
        rt.block_on(route(&api, &Method::POST, "/api/v3/secret", None, secret))
            .status(),
        201
    );
    let seed = BusMessage {
        topic: topics[0].to_string(),
        payload: envelope.to_vec(),
    };
    let ok: serde_json::Value =
        serde_json::from_slice(&requests::handle(&api, "edgex", &seed).unwrap().payload).unwrap();
    assert_eq!(ok["errorCode"], 0, "{ok}");
    let (mut good, mut bad, mut replies) = (0u32, 0u32, 0u32);
    for i in 0..3_000 {
        let body = match i % 3 {
            0 => rng.mutate(secret),
            1 => rng.mutate(setting),
            _ => rng.bytes(200),
        };
        let path = paths[i % paths.len()];
        let method = [Method::GET, Method::PUT, Method::POST, Method::DELETE]
            [rng.next() as usize % 4]
            .clone();
        let resp = rt.block_on(route(&api, &method, path, None, &body));
        let status = resp.status().as_u16();
        let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["statusCode"], status, "{method} {path}");
        if status < 300 {
            good += 1
        } else {
            bad += 1
        }
        let m = BusMessage {
            topic: topics[i % topics.len()].to_string(),
            payload: rng.mutate(envelope),
        };
        if let Some(reply) = requests::handle(&api, "edgex", &m) {
            replies += 1;
            let env: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert!(env["payload"]["statusCode"].is_u64());
        }
    }
    assert!(bad > 1_000, "good {good}, bad {bad}");
    // The bus requests were answered, not only survived: the mutations
    // that keep an envelope with its reply topic (97 of this seed's 3,000).
    assert!(replies > 50, "{replies} replies to 3,000 bus requests");
}
