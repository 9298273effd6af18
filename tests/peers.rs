//! Independent implementations as peers: pycayennelpp (PyPI) for Cayenne
//! LPP, lora-packet (npm) for frames, MICs and encryption, chirpstack-api
//! (PyPI, ChirpStack's own protobuf definitions) for gateway messages,
//! ipfs-unixfs-importer (npm, the IPFS reference importer) for image CIDs.
//! `.ci/run` installs them; outside CI a missing peer skips loudly.

mod common;

use std::sync::Arc;

use device_lorawan::codec::{lpp, Codec, CodecKind};
use device_lorawan::ingest::bridge;
use device_lorawan::lorawan::{self, encode, AesKey, DevAddr, Eui64, FcntState, SessionCrypto};

use common::peer::peer;

#[test]
fn lpp_agrees_with_pycayennelpp_on_every_type() {
    let Some(out) = peer(
        "python3",
        &["lpp_peer.py"],
        "",
        &["-c", "import cayennelpp"],
    ) else {
        return;
    };
    let mut types = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let want: Vec<f64> = v["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let mut got = Vec::new();
        lpp::decode(&bytes, |x| {
            assert_eq!(
                (u64::from(x.channel), u64::from(x.type_id)),
                (v["channel"].as_u64().unwrap(), v["type"].as_u64().unwrap())
            );
            got.push(x.value);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(got, want, "{}", v["name"]);
        // And our encoder writes the bytes pycayennelpp wrote.
        let mut ours = Vec::new();
        lpp::encode(
            &mut ours,
            v["channel"].as_u64().unwrap() as u8,
            v["type"].as_u64().unwrap() as u8,
            &want,
        );
        assert_eq!(ours, bytes, "{}", v["name"]);
        types += 1;
    }
    assert_eq!(
        types,
        lpp::TYPES.len(),
        "pycayennelpp and we know the same set of types"
    );
}

#[test]
fn frames_agree_with_lora_packet_both_ways() {
    let probe = ["-e", "require('lora-packet')"];
    let Some(out) = peer("node", &["lora_packet_peer.js", "encode"], "", &probe) else {
        return;
    };
    // lora-packet's frames through our steps: all four it builds.
    assert_eq!(out.lines().count(), 4, "lora-packet's frames: {out}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let crypto = SessionCrypto::new(
            &AesKey::from_hex(v["nwk"].as_str().unwrap()).unwrap(),
            &AesKey::from_hex(v["app"].as_str().unwrap()).unwrap(),
        );
        let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let frame = lorawan::parse_uplink(&bytes).unwrap();
        let fcnt = v["fcnt"].as_u64().unwrap() as u32;
        let state = FcntState {
            last: fcnt.checked_sub(1),
            epoch: 0,
        };
        let mut buf = [0u8; 255];
        let auth = lorawan::verify_mic(frame, &crypto, &state, &mut buf).unwrap();
        let acc = lorawan::check_counter(auth, &state, lorawan::FcntPolicy::Strict, 0).unwrap();
        assert_eq!(hex::encode(acc.payload()), v["payload"].as_str().unwrap());
        assert_eq!(acc.frame.confirmed, v["confirmed"].as_bool().unwrap());
        assert_eq!(
            u64::from(acc.frame.fport.unwrap()),
            v["fport"].as_u64().unwrap()
        );
    }
    // Our frames, uplinks and the downlinks the service sends, including
    // 32-bit counters past a rollover, through lora-packet.
    let (nwk, app) = (
        "44024241ed4ce9a68c6a8bc055233fd3",
        "ec925802ae430ca77fd3dd73cb2cc588",
    );
    let crypto = SessionCrypto::new(
        &AesKey::from_hex(nwk).unwrap(),
        &AesKey::from_hex(app).unwrap(),
    );
    let cases: Vec<(u32, Vec<u8>, bool)> = vec![
        (0, b"x".to_vec(), false),
        (65_536, b"rollover".to_vec(), false),
        (0x0123_4567, (0..100).collect(), false),
        (3, vec![0x01, 0x2c], true),
        (70_000, vec![0x0e, 0x10], true),
    ];
    let input: String = cases
        .iter()
        .map(|(fcnt, payload, down)| {
            let f = if *down {
                let spec = encode::FrameSpec {
                    dir: lorawan::crypto::Direction::Down,
                    confirmed: false,
                    dev_addr: DevAddr(0x49be7df1),
                    fcnt: *fcnt,
                    adr: false,
                    ack: true,
                    fpending: true,
                    adr_ack_req: false,
                    fopts: &[],
                    fport: Some(2),
                };
                encode::build_frame(&crypto, &spec, payload)
            } else {
                encode::uplink(&crypto, DevAddr(0x49be7df1), *fcnt, 7, payload)
            };
            format!(
                "{}\n",
                serde_json::json!({"hex": hex::encode(f), "nwk": nwk, "app": app, "fcnt32": fcnt})
            )
        })
        .collect();
    let out = peer("node", &["lora_packet_peer.js", "verify"], &input, &probe).unwrap();
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), cases.len());
    for ((fcnt, payload, _), r) in cases.iter().zip(results) {
        assert_eq!(r["micOk"], true, "MIC at fcnt {fcnt}");
        assert_eq!(
            r["payload"].as_str().unwrap(),
            hex::encode(payload),
            "payload at fcnt {fcnt}"
        );
    }
}

#[test]
fn gateway_messages_from_chirpstack_api() {
    let phy = "400403020180010001a694642615d6c3b582";
    let Some(out) = peer(
        "python3",
        &["chirpstack_peer.py", phy],
        "",
        &["-c", "import chirpstack_api.gw"],
    ) else {
        return;
    };
    let mut kinds = Vec::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let msg = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        let up = bridge::decode(&msg).unwrap_or_else(|e| panic!("{}: {e}", v["kind"]));
        assert_eq!(hex::encode(&up.phy), phy);
        assert_eq!(
            up.rx.gateway,
            Eui64::from_hex(v["gateway"].as_str().unwrap()).unwrap()
        );
        assert_eq!(i64::from(up.rx.rssi), v["rssi"].as_i64().unwrap());
        assert_eq!(f64::from(up.rx.snr), v["snr"].as_f64().unwrap());
        assert_eq!(up.rx.tmst.map(u64::from), v["tmst"].as_u64());
        kinds.push(v["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["protobuf-v4", "json-v4", "protobuf-v3"]);
}

/// Our `command/down` frames as ChirpStack's definitions read them, and
/// ChirpStack's `event/ack` messages as we read them.
#[test]
fn downlinks_agree_with_chirpstack_api() {
    use device_lorawan::downlink::TxRequest;
    use device_lorawan::ingest::bridge::downlink::{decode_tx_ack, downlink_frame, Marshaler};
    use device_lorawan::lorawan::radio::{rx1, rx2, RX1_DELAY, RX2_DATR, RX2_FREQUENCY};
    let reqs = [
        TxRequest {
            id: 77,
            gateway: Eui64::from_u64(0x0016_c001_f153_a14c),
            phy: vec![0x60, 1, 2, 3, 4, 0x20, 5, 0, 2, 9, 9, 1, 2, 3, 4],
            uplink_tmst: 123_456,
            window: rx1(
                868_300_000,
                lorawan::DataRate::parse("SF9BW125").unwrap(),
                RX1_DELAY,
            ),
            power_dbm: 14,
            station: None,
            immediately: false,
        },
        TxRequest {
            id: 78,
            gateway: Eui64::from_u64(0x0016_c001_f153_a14d),
            phy: vec![0x60, 1, 2, 3, 4, 0x20, 6, 0, 1, 2, 3, 4],
            uplink_tmst: u32::MAX,
            window: rx2(RX1_DELAY, RX2_FREQUENCY, RX2_DATR),
            power_dbm: 27,
            station: None,
            immediately: false,
        },
        // Class C: at once, on RX2.
        TxRequest {
            id: 79,
            gateway: Eui64::from_u64(0x0016_c001_f153_a14e),
            phy: vec![0x60, 1, 2, 3, 4, 0x20, 7, 0, 1, 2, 3, 4],
            uplink_tmst: 42,
            window: rx2(std::time::Duration::ZERO, RX2_FREQUENCY, RX2_DATR),
            power_dbm: 27,
            station: None,
            immediately: true,
        },
    ];
    let input: String = reqs
        .iter()
        .flat_map(|r| {
            [(Marshaler::Protobuf, "protobuf"), (Marshaler::Json, "json")].map(|(m, kind)| {
                format!(
                    "{}\n",
                    serde_json::json!({"kind": kind, "payload": hex::encode(downlink_frame(r, m))})
                )
            })
        })
        .collect();
    let Some(out) = peer(
        "python3",
        &["chirpstack_peer.py", "downlink"],
        &input,
        &["-c", "import chirpstack_api.gw"],
    ) else {
        return;
    };
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (frames, acks) = lines.split_at(6);
    for (i, f) in frames.iter().enumerate() {
        let r = &reqs[i / 2];
        let w = &r.window;
        assert_eq!(f["downlinkId"], r.id);
        assert_eq!(f["gatewayId"], r.gateway.to_string());
        assert_eq!(f["phy"], hex::encode(&r.phy));
        assert_eq!(
            (f["frequency"].as_u64(), f["power"].as_i64()),
            (Some(u64::from(w.frequency)), Some(i64::from(r.power_dbm)))
        );
        assert_eq!(
            (f["sf"].as_u64(), f["bw"].as_u64()),
            (
                Some(u64::from(w.datr.sf)),
                Some(u64::from(w.datr.bw_khz) * 1000)
            )
        );
        assert_eq!(
            (&f["ipol"], &f["codeRate"]),
            (&serde_json::json!(true), &serde_json::json!("CR_4_5"))
        );
        if r.immediately {
            assert_eq!(f["timing"], "immediately", "{f}");
            continue;
        }
        assert_eq!(f["timing"], "delay", "{f}");
        assert_eq!(f["delayUs"].as_u64(), Some(w.delay.as_micros() as u64));
        assert_eq!(
            f["context"],
            hex::encode(r.uplink_tmst.to_be_bytes()),
            "the delay counts from the uplink"
        );
    }
    assert_eq!(acks.len(), 4);
    for a in acks {
        let ack = decode_tx_ack(&hex::decode(a["payload"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(ack.id, 4242);
        let status = a["status"].as_str().unwrap();
        assert_eq!(
            ack.result,
            if status == "OK" {
                Ok(())
            } else {
                Err(status.to_string())
            },
            "{a}"
        );
    }
}

/// Our streaming CIDv1 against the IPFS reference importer with kubo's
/// settings, at every shape of tree: empty, one raw leaf, exactly one
/// chunk, two chunks, a full 174-link node, and one leaf past it.
#[test]
fn image_cids_agree_with_the_ipfs_importer() {
    use device_lorawan::image::cid::{CidBuilder, CHUNK, MAX_LINKS};
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        12,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 17,
        MAX_LINKS * CHUNK,
        MAX_LINKS * CHUNK + 1,
    ];
    let mut ours = Vec::new();
    let mut paths = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        // Varied bytes, so equal chunks at different places cannot hide a mistake.
        let data: Vec<u8> = (0..*size)
            .map(|j| (j as u64).wrapping_mul(2_654_435_761).rotate_left(i as u32) as u8)
            .collect();
        let path = dir.path().join(format!("f{i}"));
        std::fs::write(&path, &data).unwrap();
        let mut b = CidBuilder::new();
        b.update(&data);
        ours.push(b.finish().to_string());
        paths.push(path.to_string_lossy().into_owned());
    }
    let mut args = vec!["unixfs_peer.mjs"];
    args.extend(paths.iter().map(String::as_str));
    let probe = ["-e", "import('ipfs-unixfs-importer')"];
    let Some(out) = peer("node", &args, "", &probe) else {
        return;
    };
    let theirs: Vec<&str> = out.lines().collect();
    assert_eq!(theirs, ours, "sizes {sizes:?}");
}

/// The bundled profiles, as a core-metadata DeviceProfile, validate against
/// the official EdgeX OpenAPI schema.
#[test]
fn profiles_validate_against_edgex_openapi() {
    let Some(validator) = common::openapi_validator("core-metadata.yaml", "DeviceProfile") else {
        return;
    };
    let profiles = common::profiles();
    assert!(profiles.len() >= 3);
    for (name, p) in profiles {
        let doc = serde_json::to_value(&p).unwrap();
        let errors = common::errors_of(&validator, &doc);
        assert!(errors.is_empty(), "profile {name}: {errors:#?}");
        // ...and every profile compiles for the codec it is meant for.
        let kind = match name.as_str() {
            "Binary-Layout-Mote" => CodecKind::Layout,
            "Raw-Payload-Mote" => CodecKind::Raw,
            _ => CodecKind::CayenneLpp,
        };
        Codec::compile(Arc::new(p), kind).unwrap();
    }
    // The validator is not vacuous: a profile with a bad valueType fails.
    let bad = serde_json::json!({"name": "x", "deviceResources": [{"name": "r", "properties": {"valueType": "Float99", "readWrite": "R"}}]});
    assert!(!validator.is_valid(&bad));
}

/// OTAA against lora-packet, both ways: its JoinRequests verify with our
/// MIC check and parse to the EUIs and nonce it was given; our JoinAccepts
/// (with and without a CFList) decrypt, verify and read back in
/// lora-packet, and the session keys it derives from them are ours.
#[test]
fn joins_agree_with_lora_packet_both_ways() {
    use device_lorawan::lorawan::join::*;
    use device_lorawan::lorawan::{AesKey, DevAddr, Eui64};
    let probe = ["-e", "require('lora-packet')"];
    let Some(out) = peer("node", &["lora_packet_peer.js", "joinreq"], "", &probe) else {
        return;
    };
    let mut input = String::new();
    let mut ours = Vec::new();
    for (i, line) in out.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let key = AesKey::from_hex(&s("appKey")).unwrap();
        let r = parse_join_request(&hex::decode(s("hex")).unwrap()).unwrap();
        r.verify(&key).unwrap();
        assert_eq!(r.join_eui, Eui64::from_hex(&s("joinEui")).unwrap());
        assert_eq!(r.dev_eui, Eui64::from_hex(&s("devEui")).unwrap());
        assert_eq!(
            r.dev_nonce,
            u16::from_str_radix(&s("devNonce"), 16).unwrap()
        );
        // Our answer to it.
        let f = AcceptFields {
            join_nonce: 0x0a0b0c + i as u32,
            net_id: 0x000013,
            dev_addr: DevAddr(0x26011bda + i as u32),
            rx1_dr_offset: 1,
            rx2_dr: 3,
            rx_delay: 1,
            cf_list: (i == 1).then_some([
                0x18, 0x4f, 0x84, 0xe8, 0x56, 0x84, 0xb8, 0x5e, 0x84, 0x88, 0x66, 0x84, 0x58, 0x6e,
                0x84, 0x00,
            ]),
        };
        let phy = build_join_accept(&key, &f);
        input.push_str(&format!(
            "{}\n",
            serde_json::json!({"hex": hex::encode(&phy), "appKey": s("appKey"), "devNonce": s("devNonce")})
        ));
        ours.push((f, session_keys(&key, f.join_nonce, f.net_id, r.dev_nonce)));
    }
    assert_eq!(ours.len(), 2);
    let out = peer("node", &["lora_packet_peer.js", "accept"], &input, &probe).unwrap();
    // One answer per JoinAccept: a missing one must not pass unnoticed.
    assert_eq!(
        out.lines().count(),
        ours.len(),
        "lora-packet's answers: {out}"
    );
    for (line, (f, (nwk, app))) in out.lines().zip(&ours) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["micOk"], true, "{v}");
        assert_eq!(v["joinNonce"], format!("{:06x}", f.join_nonce));
        assert_eq!(v["netId"], format!("{:06x}", f.net_id));
        assert_eq!(v["devAddr"], f.dev_addr.to_string());
        assert_eq!(v["dlSettings"], (f.rx1_dr_offset << 4) | f.rx2_dr);
        assert_eq!(v["rxDelay"], f.rx_delay);
        assert_eq!(v["cfList"], f.cf_list.map(hex::encode).unwrap_or_default());
        assert_eq!(v["nwkSKey"], hex::encode(nwk.expose()));
        assert_eq!(v["appSKey"], hex::encode(app.expose()));
    }
}

/// Our downlinks' MAC commands as a device finds them: lora-packet (npm)
/// checks the MIC, hands over FOpts and decrypts an FPort 0 payload with
/// the NwkSKey; lrwn (ChirpStack's crate) parses the commands it found.
#[test]
fn downlink_mac_commands_read_by_lora_packet_and_lrwn() {
    use lorawan::mac::commands::encode_all;
    use lorawan::mac::DownCommand;
    let probe = ["-e", "require('lora-packet')"];
    let (nwk, app) = (
        "2b7e151628aed2a6abf7158809cf4f3c",
        "000102030405060708090a0b0c0d0e0f",
    );
    let crypto = SessionCrypto::new(
        &AesKey::from_hex(nwk).unwrap(),
        &AesKey::from_hex(app).unwrap(),
    );
    let time = DownCommand::DeviceTimeAns {
        seconds: 1_451_260_818,
        fraction: 64,
    };
    let check = DownCommand::LinkCheckAns {
        margin: 17,
        gateways: 2,
    };
    let adr = DownCommand::LinkAdrReq {
        data_rate: 5,
        tx_power: 2,
        channel_mask: 0x0007,
        channel_mask_control: 6,
        nb_trans: 1,
    };
    let rx = DownCommand::RxParamSetupReq {
        rx1_dr_offset: 1,
        rx2_data_rate: 3,
        frequency: 869_525_000,
    };
    // (FOpts beside an application payload on port 2; all on port 0).
    let cases = [
        (
            70_001u32,
            encode_all(&[check, time]),
            Some((2u8, vec![0x01, 0x2c])),
        ),
        (70_002, Vec::new(), None),
    ];
    let port0 = encode_all(&[adr, rx, DownCommand::DevStatusReq, time]);
    let input: String = cases
        .iter()
        .map(|(fcnt, fopts, app_payload)| {
            let (fport, payload) = match app_payload {
                Some((p, d)) => (Some(*p), d.clone()),
                None => (Some(0), port0.clone()),
            };
            let spec = encode::FrameSpec {
                dir: lorawan::crypto::Direction::Down,
                confirmed: false,
                dev_addr: DevAddr(0x49be7df1),
                fcnt: *fcnt,
                adr: true,
                ack: false,
                fpending: false,
                adr_ack_req: false,
                fopts,
                fport,
            };
            let f = encode::build_frame(&crypto, &spec, &payload);
            format!(
                "{}\n",
                serde_json::json!({"hex": hex::encode(f), "nwk": nwk, "app": app, "fcnt32": fcnt})
            )
        })
        .collect();
    let Some(out) = peer("node", &["lora_packet_peer.js", "downmac"], &input, &probe) else {
        return;
    };
    let r: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(r.len(), 2, "{out}");
    let parse = |hex_text: &str| {
        let mut set = lrwn::MACCommandSet::from_slice(&hex::decode(hex_text).unwrap());
        set.decode_from_raw(false).unwrap();
        set.iter().cloned().collect::<Vec<lrwn::MACCommand>>()
    };
    assert_eq!(r[0]["micOk"], true);
    assert_eq!(
        (r[0]["fport"].as_u64(), r[0]["payload"].as_str()),
        (Some(2), Some("012c"))
    );
    let fopts = parse(r[0]["fopts"].as_str().unwrap());
    assert!(
        matches!(fopts[..], [lrwn::MACCommand::LinkCheckAns(ref a), lrwn::MACCommand::DeviceTimeAns(ref t)]
        if a.margin == 17 && a.gw_cnt == 2 && t.time_since_gps_epoch.as_millis() == 1_451_260_818_250)
    );
    assert_eq!(r[1]["micOk"], true);
    assert_eq!(
        (r[1]["fport"].as_u64(), r[1]["fopts"].as_str()),
        (Some(0), Some(""))
    );
    assert_eq!(
        r[1]["payload"].as_str().unwrap(),
        hex::encode(&port0),
        "decrypted with the NwkSKey"
    );
    let cmds = parse(r[1]["payload"].as_str().unwrap());
    assert!(
        matches!(cmds[..], [
        lrwn::MACCommand::LinkADRReq(ref l),
        lrwn::MACCommand::RxParamSetupReq(ref p),
        lrwn::MACCommand::DevStatusReq,
        lrwn::MACCommand::DeviceTimeAns(_),
    ] if l.dr == 5 && l.tx_power == 2 && p.frequency == 869_525_000),
        "{cmds:?}"
    );
}
