use super::*;
use crate::lorawan::region::{RegionName, RegionSettings};
use crate::lorawan::{encode, AesKey, DevAddr, SessionCrypto};

fn eu868() -> Region {
    Region::new(RegionSettings::new(RegionName::EU868))
}

const GW: Eui64 = Eui64([0xb8, 0x27, 0xeb, 0xff, 0xfe, 0x00, 0x00, 0x01]);

/// The `updf` Station writes for `phy` (lora.c: DevAddr and MIC as signed
/// 32-bit integers, FPort -1 without a port).
fn updf_of(phy: &[u8]) -> String {
    let n = phy.len();
    let fopts_len = usize::from(phy[5] & 0x0f);
    let port_at = 8 + fopts_len;
    let (port, payload) = if port_at < n - 4 {
        (i32::from(phy[port_at]), &phy[port_at + 1..n - 4])
    } else {
        (-1, &[][..])
    };
    serde_json::json!({
        "msgtype": "updf", "MHdr": phy[0],
        "DevAddr": i32::from_le_bytes(phy[1..5].try_into().unwrap()),
        "FCtrl": phy[5], "FCnt": u16::from_le_bytes([phy[6], phy[7]]),
        "FOpts": hex::encode(&phy[8..port_at]), "FPort": port,
        "FRMPayload": hex::encode(payload),
        "MIC": i32::from_le_bytes(phy[n - 4..].try_into().unwrap()),
        "RefTime": 0.0, "DR": 5, "Freq": 868_100_000,
        "upinfo": {"rctx": 0, "xtime": 0x0012_0000_1234_5678i64, "gpstime": 1_400_000_000_000_000i64,
                   "fts": -1, "rssi": -53, "snr": 9.25, "rxtime": 1_700_000_000.5},
    })
    .to_string()
}

#[test]
fn updf_rebuilds_the_exact_frame() {
    let c = SessionCrypto::new(&AesKey::new([1; 16]), &AesKey::new([2; 16]));
    // An address with the top bit set: Station sends it negative.
    for addr in [DevAddr(0x2601_1bda), DevAddr(0xfc00_ab01)] {
        for payload in [&b"hello"[..], &[]] {
            let phy = encode::uplink(&c, addr, 70_000, 1, payload);
            let Upstream::Frame { phy: got, rx } = parse(&updf_of(&phy), GW, &eu868()).unwrap()
            else {
                panic!("a frame");
            };
            assert_eq!(got, phy, "{addr} {payload:?}");
            assert_eq!(rx.gateway, GW);
            assert_eq!((rx.rssi, rx.snr), (-53, 9.25));
            assert_eq!(rx.datr, crate::lorawan::DataRate::parse("SF7BW125"));
            assert_eq!(rx.frequency, Some(868_100_000));
            assert_eq!(rx.tmst, Some(0x1234_5678), "the low 32 bits of xtime");
            assert_eq!(rx.gps_time_ns, Some(1_400_000_000_000_000_000));
            assert_eq!(rx.station.unwrap().xtime, 0x0012_0000_1234_5678);
        }
    }
    // FOpts and no port (a MAC-only uplink).
    let spec = encode::FrameSpec {
        dir: crate::lorawan::crypto::Direction::Up,
        confirmed: true,
        dev_addr: DevAddr(0x8000_0001),
        fcnt: 3,
        adr: true,
        ack: false,
        fpending: false,
        adr_ack_req: true,
        fopts: &[0x02, 0x0d],
        fport: None,
    };
    let phy = encode::build_frame(&c, &spec, &[]);
    let Upstream::Frame { phy: got, .. } = parse(&updf_of(&phy), GW, &eu868()).unwrap() else {
        panic!()
    };
    assert_eq!(got, phy);
    // The MIC verifies as for any other path (checked, under its session).
    let frame = crate::lorawan::parse_uplink(&got).unwrap();
    let state = crate::lorawan::FcntState {
        last: Some(2),
        epoch: 0,
    };
    assert!(crate::lorawan::verify_mic(frame, &c, &state, &mut [0; 255]).is_ok());
    let mut bad = got.clone();
    *bad.last_mut().unwrap() ^= 1;
    let frame = crate::lorawan::parse_uplink(&bad).unwrap();
    assert!(crate::lorawan::verify_mic(frame, &c, &state, &mut [0; 255]).is_err());
}

#[test]
fn jreq_rebuilds_the_join_request() {
    let key = AesKey::new([7; 16]);
    let (join, dev) = (
        Eui64::from_u64(0x70b3_d57e_d000_0000),
        Eui64::from_u64(0x0004_a30b_001c_0530),
    );
    let phy = crate::lorawan::join::build_join_request(&key, join, dev, 0xbeef);
    let mic = i32::from_le_bytes(phy[19..23].try_into().unwrap());
    let msg = serde_json::json!({
        "msgtype": "jreq", "MHdr": 0, "JoinEui": "70-B3-D5-7E-D0-00-00-00",
        "DevEui": "00-04-A3-0B-00-1C-05-30", "DevNonce": 0xbeef, "MIC": mic,
        "DR": 0, "Freq": 868_300_000, "upinfo": {"rctx": 1, "xtime": 42, "rssi": -90, "snr": -3.5},
    });
    let Upstream::Frame { phy: got, rx } = parse(&msg.to_string(), GW, &eu868()).unwrap() else {
        panic!()
    };
    assert_eq!(got, phy);
    assert_eq!(rx.datr, crate::lorawan::DataRate::parse("SF12BW125"));
    assert_eq!(rx.gps_time_ns, None, "no GPS: gpstime absent");
}

#[test]
fn euis_in_every_spelling() {
    let want = Some(GW);
    for s in [
        "b8-27-eb-ff-fe-00-00-01",
        "B8:27:EB:FF:FE:00:00:01",
        "b827ebfffe000001",
        "b827:ebff:fe00:1",
    ] {
        assert_eq!(eui_of_text(s), want, "{s}");
    }
    assert_eq!(eui_of_text("::1"), Some(Eui64::from_u64(1)));
    assert_eq!(
        eui_of_text("b827:ebff::1"),
        Some(Eui64::from_u64(0xb827_ebff_0000_0001))
    );
    assert_eq!(eui_of_text("::"), Some(Eui64::from_u64(0)));
    assert_eq!(eui_of(&serde_json::json!(0xb827_ebff_fe00_0001u64)), want);
    for bad in ["", "b827", "1:2:3:4:5", "xyz", "12345:0:0:1", "1::2::3"] {
        assert_eq!(eui_of_text(bad), None, "{bad:?}");
    }
    assert_eq!(eui_text(GW), "B8-27-EB-FF-FE-00-00-01");
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let c = SessionCrypto::new(&AesKey::new([1; 16]), &AesKey::new([2; 16]));
    let good: serde_json::Value =
        serde_json::from_str(&updf_of(&encode::uplink(&c, DevAddr(1), 1, 1, b"x"))).unwrap();
    let with = |k: &str, v: serde_json::Value| {
        let mut m = good.clone();
        m[k] = v;
        parse(&m.to_string(), GW, &eu868())
    };
    assert!(matches!(
        with("FOpts", "0201".into()),
        Err(MessageError::Field { field: "FOpts", .. })
    ));
    assert!(matches!(
        with("FCnt", 70_000.into()),
        Err(MessageError::Field { field: "FCnt", .. })
    ));
    assert!(matches!(
        with("FRMPayload", "zz".into()),
        Err(MessageError::Field {
            field: "FRMPayload",
            ..
        })
    ));
    assert!(matches!(
        with("FPort", (-1).into()),
        Err(MessageError::Field { field: "FPort", .. })
    ));
    assert!(matches!(
        with("DevAddr", 0x1_0000_0000i64.into()),
        Err(MessageError::Field {
            field: "DevAddr",
            ..
        })
    ));
    assert!(
        matches!(
            with("DR", 7.into()),
            Err(MessageError::Field { field: "DR", .. })
        ),
        "FSK"
    );
    assert!(matches!(
        with("MHdr", "x".into()),
        Err(MessageError::Json(_))
    ));
    assert!(matches!(
        with("FRMPayload", hex::encode([0u8; 250]).into()),
        Err(MessageError::Field { .. })
    ));
    assert!(matches!(
        parse("{\"msgtype\":\"rmtsh\"}", GW, &eu868()),
        Err(MessageError::UnknownType(_))
    ));
    assert!(matches!(
        parse("[1,2]", GW, &eu868()),
        Err(MessageError::Json(_))
    ));
    assert!(matches!(
        parse("{}", GW, &eu868()),
        Err(MessageError::Json(_))
    ));
    assert_eq!(
        parse(
            "{\"msgtype\":\"dntxed\",\"diid\":7,\"DevEui\":\"00-00-00-00-00-00-00-01\"}",
            GW,
            &eu868()
        ),
        Ok(Upstream::TxConfirmed { diid: 7 })
    );
}

#[test]
fn dnmsg_carries_the_uplinks_context_and_both_windows() {
    let req = crate::downlink::TxRequest {
        id: 9,
        gateway: GW,
        phy: vec![0x60, 1, 2],
        uplink_tmst: 0,
        window: crate::lorawan::radio::Window {
            delay: std::time::Duration::from_secs(1),
            frequency: 868_100_000,
            datr: crate::lorawan::DataRate::parse("SF7BW125").unwrap(),
        },
        power_dbm: 14,
        station: None,
        immediately: false,
    };
    let s = crate::downlink::StationTx {
        dev_eui: Eui64::from_u64(1),
        xtime: 0x0012_0000_1234_5678,
        rctx: 2,
        rx_delay: 1,
        rx1: Some((5, 868_100_000)),
        rx2: (0, 869_525_000),
    };
    let m: serde_json::Value = serde_json::from_str(&dnmsg(&req, &s)).unwrap();
    assert_eq!(m["msgtype"], "dnmsg");
    assert_eq!(m["diid"], 9);
    assert_eq!(m["pdu"], "600102");
    assert_eq!(m["DevEui"], "00-00-00-00-00-00-00-01");
    assert_eq!(
        (m["xtime"].as_i64(), m["rctx"].as_i64()),
        (Some(0x0012_0000_1234_5678), Some(2))
    );
    assert_eq!(
        (m["RX1DR"].as_u64(), m["RX1Freq"].as_u64()),
        (Some(5), Some(868_100_000))
    );
    assert_eq!(
        (m["RX2DR"].as_u64(), m["RX2Freq"].as_u64()),
        (Some(0), Some(869_525_000))
    );
    assert_eq!(
        (m["RxDelay"].as_u64(), m["dC"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn the_simulators_messages_read_back_exactly() {
    let c = SessionCrypto::new(&AesKey::new([1; 16]), &AesKey::new([2; 16]));
    let key = AesKey::new([7; 16]);
    let frames = [
        encode::uplink(&c, DevAddr(0xfc00_0001), 9, 2, b"abc"),
        crate::lorawan::join::build_join_request(&key, Eui64::from_u64(1), Eui64::from_u64(2), 3),
    ];
    let rx = RxMeta {
        gateway: GW,
        rssi: -70,
        snr: 4.5,
        tmst: Some(77),
        frequency: Some(868_300_000),
        datr: crate::lorawan::DataRate::parse("SF9BW125"),
        time_ns: None,
        gps_time_ns: None,
        station: None,
    };
    for phy in frames {
        let text = upstream(&phy, &rx, &eu868()).unwrap();
        let Upstream::Frame { phy: got, rx: back } = parse(&text, GW, &eu868()).unwrap() else {
            panic!()
        };
        assert_eq!(got, phy);
        assert_eq!(
            (back.tmst, back.datr, back.frequency),
            (Some(77), rx.datr, rx.frequency)
        );
    }
    assert_eq!(upstream(&[0xe0, 1, 2], &rx, &eu868()), None, "proprietary");
}

/// What Semtech's station 2.0.6 really sent (tests/peers/recorded/).
const RECORDED: &str =
    include_str!("../../../../tests/peers/recorded/basicstation-2.0.6/station-to-lns.jsonl");

fn recorded(path: &str) -> Vec<String> {
    RECORDED
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a recorded line"))
        .filter(|l| l["path"] == path)
        .map(|l| l["message"].to_string())
        .collect()
}

#[test]
fn every_message_the_real_station_sent_is_read() {
    let traffic = recorded("/traffic/<router>");
    assert_eq!(traffic.len(), 9, "the recording's traffic messages");
    let (mut frames, mut acks, mut syncs, mut versions) = (0, Vec::new(), Vec::new(), 0);
    for m in &traffic {
        match parse(m, GW, &eu868()) {
            Ok(Upstream::Frame { phy, rx }) => {
                frames += 1;
                // MHDR | DevAddr 0x26010001 | FCtrl | FCnt | FPort 1 | 4 bytes | MIC.
                assert_eq!(phy.len(), 17, "{m}");
                assert_eq!(phy[1..5], 0x2601_0001u32.to_le_bytes(), "{m}");
                // Not GPS time: 0 before the PPS sync, then µs since a PPS pulse.
                let gps = rx.gps_time_ns.unwrap_or(0);
                assert!(gps < 10_000_000_000, "{m}");
                let (_, source) = crate::lorawan::mac::state::device_time(rx.gps_time_ns, 1);
                assert_eq!(
                    source,
                    crate::lorawan::mac::state::TimeSource::Reception,
                    "{m}"
                );
            }
            Ok(Upstream::TxConfirmed { diid }) => acks.push(diid),
            Ok(Upstream::Timesync { txtime }) => syncs.push(txtime),
            Ok(Upstream::Version { station, protocol }) => {
                versions += 1;
                assert_eq!((station.as_str(), protocol), ("2.0.6(linux/testsim)", 2));
            }
            other => panic!("{m}: {other:?}"),
        }
    }
    assert_eq!((versions, frames), (1, 3));
    assert_eq!(acks, [1, 2], "dntxed with both seqno and diid");
    assert_eq!(syncs, [1_024_836_300, 1_024_907_409, 1_024_978_538]);
}

#[test]
fn timesync_answers_echo_an_integer_txtime() {
    for m in recorded("/traffic/<router>") {
        let Ok(Upstream::Timesync { txtime }) = parse(&m, GW, &eu868()) else {
            continue;
        };
        let sent: serde_json::Value = serde_json::from_str(&m).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&timesync(txtime)).unwrap();
        // The station's parser: `@.txtime: Expecting an integer value`.
        assert!(answer["txtime"].is_i64(), "{answer}");
        assert_eq!(answer["txtime"], sent["txtime"]);
        assert!(answer["gpstime"].is_u64(), "{answer}");
    }
    // A peer that sends a float still gets an integer back.
    assert_eq!(
        parse(r#"{"msgtype":"timesync","txtime":1234.75}"#, GW, &eu868()),
        Ok(Upstream::Timesync { txtime: 1234 })
    );
    assert!(matches!(
        parse(r#"{"msgtype":"timesync","txtime":"soon"}"#, GW, &eu868()),
        Err(MessageError::Json(_))
    ));
}

#[test]
fn dntxed_takes_diid_then_seqno() {
    let dntxed = |body: &str| parse(&format!(r#"{{"msgtype":"dntxed"{body}}}"#), GW, &eu868());
    assert_eq!(
        dntxed(r#","seqno":3,"diid":4"#),
        Ok(Upstream::TxConfirmed { diid: 4 })
    );
    assert_eq!(
        dntxed(r#","seqno":3"#),
        Ok(Upstream::TxConfirmed { diid: 3 })
    );
    assert_eq!(
        dntxed(r#","diid":5"#),
        Ok(Upstream::TxConfirmed { diid: 5 })
    );
    assert!(matches!(
        dntxed(""),
        Err(MessageError::Field { field: "diid", .. })
    ));
}
