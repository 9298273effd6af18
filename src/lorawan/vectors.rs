//! The published LoRaWAN 1.0.x vectors of shared/testdata/lorawan-vectors.md,
//! run through the same steps the service uses.

use super::crypto::Direction;
use super::encode::{build_frame, FrameSpec};
use super::uplink::{check_counter, mac_commands, verify_mic, MacCommand, PayloadBuf};
use super::*;

fn session(nwk: &str, app: &str) -> SessionCrypto {
    SessionCrypto::new(
        &AesKey::from_hex(nwk).unwrap(),
        &AesKey::from_hex(app).unwrap(),
    )
}
const K2: &str = "02020202020202020202020202020202";
const K1: &str = "01010101010101010101010101010101";
const K4N: &str = "44024241ed4ce9a68c6a8bc055233fd3";
const K4A: &str = "ec925802ae430ca77fd3dd73cb2cc588";

/// Run an uplink vector through every step; return (payload, fport, fcnt, frame).
fn run(
    frame_hex: &str,
    crypto: &SessionCrypto,
    last: Option<u32>,
) -> (Vec<u8>, Option<u8>, u32, bool) {
    let bytes = hex::decode(frame_hex).unwrap();
    let frame = parse_uplink(&bytes).unwrap();
    let state = FcntState { last, epoch: 0 };
    let mut buf: PayloadBuf = [0; 255];
    let auth = verify_mic(frame, crypto, &state, &mut buf).unwrap();
    let acc = check_counter(auth, &state, FcntPolicy::Strict, 0).unwrap();
    let plain = acc.payload().to_vec();
    (plain, acc.frame.fport, acc.fcnt, acc.frame.confirmed)
}

#[test]
fn vector_1_hello() {
    let s = session(K2, K1);
    let (plain, port, fcnt, confirmed) = run("400403020180010001a694642615d6c3b582", &s, None);
    assert_eq!(
        (plain.as_slice(), port, fcnt, confirmed),
        (&b"hello"[..], Some(1), 1, false)
    );
    let frame = hex::decode("400403020180010001a694642615d6c3b582").unwrap();
    let f = parse_uplink(&frame).unwrap();
    assert_eq!(f.dev_addr, DevAddr::from_hex("01020304").unwrap());
    assert_eq!(f.mic, [0xd6, 0xc3, 0xb5, 0x82]);
}

#[test]
fn vector_2_downlink_with_high_counter() {
    // ConfirmedDataDown: our parser only takes uplinks, so check the crypto
    // directly with the 32-bit counter 76543 (wire 0x2aff).
    let s = session(K2, K1);
    let bytes = hex::decode("a00403020180ff2a2a0af1a36a05d0125f885d881d49e1").unwrap();
    let (msg, mic) = bytes.split_at(bytes.len() - 4);
    let addr = DevAddr::from_hex("01020304").unwrap();
    assert!(s.mic_matches(Direction::Down, addr, 76543, msg, mic.try_into().unwrap()));
    assert!(!s.mic_matches(Direction::Down, addr, 0x2aff, msg, mic.try_into().unwrap()));
    assert_eq!(msg[8], 42, "FPort");
    let mut out = [0u8; 10];
    s.crypt_frm_payload(42, Direction::Down, addr, 76543, &msg[9..], &mut out);
    assert_eq!(&out, b"hello lora");
    // And our encoder produces the same bytes.
    let spec = FrameSpec {
        dir: Direction::Down,
        confirmed: true,
        dev_addr: addr,
        fcnt: 76543,
        adr: true,
        ack: false,
        fpending: false,
        adr_ack_req: false,
        fopts: &[],
        fport: Some(42),
    };
    assert_eq!(build_frame(&s, &spec, b"hello lora"), bytes);
    // And a mote reading it gets the payload back.
    let got = super::encode::open_downlink(&s, addr, Some(76_000), &bytes).unwrap();
    assert_eq!(
        (got.fcnt, got.fport, &got.payload[..]),
        (76543, Some(42), &b"hello lora"[..])
    );
}

#[test]
fn vector_3_confirmed_with_fopts() {
    let s = session(
        "0102030405060708090a0b0c0d0e0f10",
        "100f0e0d0c0b0a090807060504030201",
    );
    let hexf = "80040302010300000673070ae264d4f7e117d2c0";
    let (plain, port, fcnt, confirmed) = run(hexf, &s, None);
    assert_eq!(
        (plain.as_slice(), port, fcnt, confirmed),
        (&[1u8, 2, 3, 4][..], Some(10), 0, true)
    );
    let bytes = hex::decode(hexf).unwrap();
    let frame = parse_uplink(&bytes).unwrap();
    assert_eq!(
        mac_commands(frame.fopts()),
        vec![MacCommand::DevStatusAns {
            battery: 115,
            margin: 7
        }]
    );
}

#[test]
fn vectors_4_to_6_lmic_style_device() {
    let s = session(K4N, K4A);
    let (p, port, fcnt, _) = run("40F17DBE4900020001954378762B11FF0D", &s, Some(1));
    assert_eq!((p.as_slice(), port, fcnt), (&b"test"[..], Some(1), 2));
    let five = "40f17dbe490004000155332de41a11adc072553544429ce7787707d1c316e027e7e5e334263376affb8aa17ad30075293f28dea8a20af3c5e7";
    let (p, _, fcnt, _) = run(five, &s, Some(3));
    assert_eq!(
        (p.as_slice(), fcnt),
        (&b"The quick brown fox jumps over the lazy dog."[..], 4)
    );
    let (p, port, fcnt, _) = run("40F17DBE49000300012A3518AF", &s, Some(2));
    assert_eq!((p.len(), port, fcnt), (0, Some(1), 3));
}

#[test]
fn wrong_key_is_a_mic_error_and_no_payload_is_handed_out() {
    let bytes = hex::decode("400403020180010001a694642615d6c3b582").unwrap();
    let frame = parse_uplink(&bytes).unwrap();
    let wrong = session(K1, K1);
    assert_eq!(
        verify_mic(frame, &wrong, &FcntState::default(), &mut [0; 255]).unwrap_err(),
        UplinkError::Mic
    );
}

#[test]
fn rollover_reset_and_replay_through_the_steps() {
    let s = session(K4N, K4A);
    let addr = DevAddr::from_hex("49be7df1").unwrap();
    let frame_at = |fcnt: u32| encode::uplink(&s, addr, fcnt, 1, b"x");
    let step = |bytes: &[u8], state: FcntState, policy| {
        let f = parse_uplink(bytes).unwrap();
        verify_mic(f, &s, &state, &mut [0; 255])
            .and_then(|a| check_counter(a, &state, policy, 32))
            .map(|a| (a.fcnt, a.reset))
    };
    let at = |last| FcntState {
        last: Some(last),
        epoch: 0,
    };
    // 65535 → 65536: the wire says 0, the MIC says 65536.
    assert_eq!(
        step(&frame_at(65_536), at(65_535), FcntPolicy::Strict),
        Ok((65_536, false))
    );
    // A reboot: counter back to 0 while we were at 70000.
    assert_eq!(
        step(&frame_at(0), at(70_000), FcntPolicy::ResetTolerant),
        Ok((0, true))
    );
    assert_eq!(
        step(&frame_at(0), at(70_000), FcntPolicy::Strict),
        Err(UplinkError::Replay {
            fcnt: 0,
            last: 70_000
        })
    );
    assert_eq!(
        step(&frame_at(70_000), at(70_000), FcntPolicy::ResetTolerant),
        Err(UplinkError::Retransmission { fcnt: 70_000 })
    );
    assert_eq!(
        step(&frame_at(69_000), at(70_000), FcntPolicy::ResetTolerant),
        Err(UplinkError::Replay {
            fcnt: 69_000,
            last: 70_000
        })
    );
}

// Join vectors published with ChirpStack's `lrwn` crate (its PhyPayload
// documentation and its key-derivation tests), LoRaWAN 1.0.x.
mod join_vectors {
    use super::super::join::*;
    use super::super::{AesKey, DevAddr, Eui64};

    fn key(h: &str) -> AesKey {
        AesKey::from_hex(h).unwrap()
    }

    #[test]
    fn join_request_mic() {
        let k = key("0102030405060708090a0b0c0d0e0f10");
        let want = hex::decode("0001010101010101010202020202020202030309b97b32").unwrap();
        let phy = build_join_request(
            &k,
            Eui64::from_u64(0x0101010101010101),
            Eui64::from_u64(0x0202020202020202),
            0x0303,
        );
        assert_eq!(phy, want);
        let r = parse_join_request(&want).unwrap();
        assert_eq!(r.dev_nonce, 0x0303);
        r.verify(&k).unwrap();
    }

    #[test]
    fn join_accept_encrypted() {
        let k = key("0102030405060708090a0b0c0d0e0f10");
        let f = AcceptFields {
            join_nonce: 65793,
            net_id: 0x020202,
            dev_addr: DevAddr(0x01020304),
            rx1_dr_offset: 0,
            rx2_dr: 0,
            rx_delay: 0,
            cf_list: None,
        };
        let want = hex::decode("2023cf335489aae3183c0be0baa8dee5f3").unwrap();
        assert_eq!(build_join_accept(&k, &f), want);
        assert_eq!(open_join_accept(&k, &want), Some(f));
    }

    #[test]
    fn session_keys_1_0() {
        let (nwk, app) = session_keys(
            &key("01020304050607080102030405060708"),
            65536,
            0x010203,
            258,
        );
        assert_eq!(
            hex::encode(nwk.expose()),
            "df53c35f3034ccced0ff354c70de04df"
        );
        assert_eq!(
            hex::encode(app.expose()),
            "927b9c911183cffe4cb2ff4b75545f6d"
        );
    }
}
