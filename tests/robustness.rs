//! Bad input gets an error, never a panic: every parser the network can
//! reach, fed random and mutated bytes (a bounded, deterministic run).

use device_lorawan::codec::lpp;
use device_lorawan::ingest::{application, gateway, udp};
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
                tally(lorawan::verify_mic(f, &crypto, &state).is_ok());
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
