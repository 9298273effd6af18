//! Seed inputs for every target, made by the encoders the service and the
//! simulator use (so a seed is a well-formed message of today's format).
//! `fuzz/campaign.sh` writes them into `fuzz/corpus/<target>/`; the replay
//! test runs them too.

use std::sync::Arc;

use crate::codec::profile::DeviceProfile;
use crate::downlink::queue::DownlinkQueue;
use crate::ingest::{bridge as gateway, udp};
use crate::lorawan::region::{Region, RegionName, RegionSettings};
use crate::lorawan::{encode, join, AesKey, DevAddr, Eui64, FcntState, SessionCrypto};
use crate::store::counters::CounterStore;
use crate::store::outbox::{FullPolicy, Journal};
use crate::store::state_log::StateLog;

const GW_JSON: &[u8] = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayId":"0016c001f153a14c","rssi":-57,"snr":9.5,"context":"AAAAAQ==","frequency":868100000},"txInfo":{"frequency":868100000,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5"}}}}"#;
const APP_JSON: &[u8] = br#"{"deviceInfo":{"devEui":"0004a30b001c0530","deviceName":"mote-1"},"fCnt":1,"fPort":1,"data":"AWcBEA==","rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-60,"snr":7.25}]}"#;
const LPP: &[u8] = &[
    0x01, 0x67, 0x01, 0x10, 0x02, 0x68, 0x50, 0x03, 0x88, 0x06, 0x76, 0x5f, 0xf2, 0x96, 0x0a, 0x00,
    0x03, 0xe8,
];

fn read_back(dir: &std::path::Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).expect("seed file")
}

/// `(target, seed)` pairs.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut s: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let crypto = SessionCrypto::new(&AesKey::new([2; 16]), &AesKey::new([1; 16]));
    let frame = encode::uplink(&crypto, DevAddr(0x2601_0001), 0xffff_fff1, 1, LPP);
    let join_req = join::build_join_request(
        &AesKey::new([3; 16]),
        Eui64::from_u64(7),
        Eui64::from_u64(8),
        258,
    );
    let accept = join::build_join_accept(
        &AesKey::new([3; 16]),
        &join::AcceptFields {
            join_nonce: 1,
            net_id: 0,
            dev_addr: DevAddr(0x2601_0001),
            rx1_dr_offset: 0,
            rx2_dr: 0,
            rx_delay: 1,
            cf_list: Some([0; 16]),
        },
    );
    let up = gateway::decode(GW_JSON).expect("seed uplink");
    let up_frame = gateway::GatewayUplink {
        phy: frame.clone(),
        rx: up.rx,
    };

    // Network.
    s.push((
        "udp_datagram",
        udp::push_data(
            1,
            Eui64::from_u64(0x16c001f153a14c),
            std::slice::from_ref(&up_frame),
        ),
    ));
    let mut pull = vec![2, 0, 1, 2];
    pull.extend_from_slice(&[0, 0x16, 0xc0, 0x01, 0xf1, 0x53, 0xa1, 0x4c]);
    s.push(("udp_datagram", pull.clone()));
    let mut tx_ack = pull.clone();
    tx_ack[3] = 5;
    tx_ack.extend_from_slice(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#);
    s.push(("udp_datagram", tx_ack));
    s.push(("gateway_bridge", GW_JSON.to_vec()));
    for f in [
        gateway::WireFormat::Protobuf,
        gateway::WireFormat::JsonV4,
        gateway::WireFormat::JsonV3,
    ] {
        s.push(("gateway_bridge", gateway::encode(&up_frame, f)));
    }
    s.push(("application_json", APP_JSON.to_vec()));
    let eu = Region::new(RegionSettings::new(RegionName::EU868));
    for phy in [&frame, &join_req] {
        if let Some(text) = crate::ingest::station::messages::upstream(phy, &up.rx, &eu) {
            s.push(("station_message", text.into_bytes()));
        }
    }
    for text in [
        r#"{"msgtype":"version","station":"2.0.6(rpi/std)","firmware":null,"package":null,"model":"rpi","protocol":2,"features":"rmtsh"}"#,
        r#"{"msgtype":"dntxed","diid":7,"DevEui":"00-00-00-00-00-00-00-01","rctx":0,"xtime":1234567,"txtime":12.5,"gpstime":0}"#,
        r#"{"msgtype":"dntxed","seqno":1,"diid":1,"DR":5,"Freq":868300000,"DevEui":"70-B3-D5-7E-D0-00-00-01","rctx":0,"xtime":41658296828618877,"txtime":1029.742439,"gpstime":0}"#,
        r#"{"msgtype":"timesync","txtime":1234.5}"#,
        r#"{"msgtype":"timesync","txtime":1024836300}"#,
        r#"{"msgtype":"propdf","FRMPayload":"00","upinfo":{"rctx":0,"xtime":1,"gpstime":0,"rssi":-50,"snr":9}}"#,
    ] {
        s.push(("station_message", text.as_bytes().to_vec()));
    }
    for phy in [&frame, &join_req, &accept] {
        s.push(("phy_payload", phy.clone()));
    }
    // Flags, margin, max DR/power; then uplinks: fcnt step, time, DR, SNR, FOpts, sent.
    s.push((
        "mac_state",
        vec![
            7, 10, 5, 7, 60, 0, 1, 10, 0, 0, 40, 2, 0x02, 0x06, 1, 1, 10, 0, 5, 20, 4, 0x03, 0x07,
            0x05, 0x07, 1,
        ],
    ));
    let mut lpp_seed = vec![0, 1, 5, 0];
    lpp_seed.extend_from_slice(LPP);
    s.push(("decode_behind_mic", lpp_seed));
    s.push((
        "decode_behind_mic",
        vec![1, 1, 9, 0, 0x08, 0x34, 0x64, 0x10, 0x0e, 0x05],
    ));
    s.push((
        "js_output",
        br#"{"data":{"temperature":21.5,"humidity":40,"battery":{"voltage":3.61,"low":false},"status":3,"channels":[-5,2],"model":"ECS-1"},"warnings":["low signal"]}"#.to_vec(),
    ));
    s.push(("js_output", br#"{"errors":["unknown fPort"]}"#.to_vec()));
    for text in [
        r#"{"txpk_ack":{"error":"NONE"}}"#,
        r#"{"gatewayId":"0016c001f153a14c","downlinkId":7,"items":[{"status":"OK"}]}"#,
        r#"{"txpk":{"imme":false,"tmst":1000000,"freq":869.525,"rfch":0,"powe":14,"modu":"LORA","datr":"SF9BW125","codr":"4/5","ipol":true,"size":4,"data":"AAAAAA=="}}"#,
        r#"{"downlinkId":7,"gatewayId":"0016c001f153a14c","items":[{"phyPayload":"YAEAASaAAQABAgM=","txInfo":{"frequency":868100000,"power":14,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5","polarizationInversion":true}},"timing":{"delay":{"delay":"1s"}},"context":"AAAAAQ=="}}]}"#,
    ] {
        s.push(("downlink_ack", text.as_bytes().to_vec()));
    }
    s.push(("handover_grpc", handover_sync()));

    // Text.
    s.push(("api_body", br#"{"apiVersion":"v3","requestId":"e6e8a2f4-eb14-4649-9e2b-175247911369","secretName":"mote-1","secretData":[{"key":"DevAddr","value":"26011234"},{"key":"NwkSKey","value":"2b7e151628aed2a6abf7158809cf4f3c"},{"key":"AppSKey","value":"2b7e151628aed2a6abf7158809cf4f3d"}]}"#.to_vec()));
    s.push(("api_body", br#"{"reportInterval":"60"}"#.to_vec()));
    s.push(("api_body", br#"{"interval":"600"}"#.to_vec()));
    for block in yaml_blocks(include_str!("../../docs/configuration.md")) {
        s.push(("config_yaml", block.into_bytes()));
    }
    s.push((
        "config_yaml",
        include_bytes!("../../compose/configuration.yaml").to_vec(),
    ));
    s.push((
        "devices_yaml",
        include_bytes!("../../compose/devices.example.yaml").to_vec(),
    ));
    let mut devices = crate::sim::mote::entries(2, 1);
    devices.extend(crate::sim::mote::otaa_entries(1, 1, Default::default()));
    s.push((
        "devices_yaml",
        crate::devices::to_yaml(&devices).into_bytes(),
    ));
    for p in [
        include_str!("../../profiles/Dragino-LPP-Mote.yaml"),
        include_str!("../../profiles/Binary-Layout-Mote.yaml"),
        include_str!("../../profiles/Raw-Payload-Mote.yaml"),
        include_str!("../../tests/codecs/Example-Climate-Sensor.yaml"),
    ] {
        s.push(("profile_yaml", p.as_bytes().to_vec()));
    }

    // Disk.
    let dir = super::scratch::scratch();
    {
        let mut c = CounterStore::open(&dir).expect("seed counters");
        for i in 1..4u32 {
            let state = FcntState {
                last: Some(i * 100),
                epoch: i,
            };
            c.record(Eui64::from_u64(u64::from(i)), state)
                .expect("seed counters");
            c.record_down(Eui64::from_u64(u64::from(i)), i)
                .expect("seed counters");
        }
    }
    // Resealed (control 1) and as written (control 0).
    for control in [1u8, 0] {
        let mut log = vec![control];
        log.extend_from_slice(&read_back(&dir, "fcnt.log"));
        s.push(("counter_log", log));
    }
    let dir = super::scratch::scratch();
    {
        let mut j = Journal::open(&dir, 1 << 20, FullPolicy::Reject).expect("seed journal");
        for i in 0..3 {
            j.append(format!("{{\"event\":{i}}}").as_bytes())
                .expect("seed journal");
        }
        j.ack(1).expect("seed journal");
    }
    // A cursor and a resealed log (control 3); no cursor, as written (0).
    let mut journal = vec![3];
    journal.extend_from_slice(&read_back(&dir, "outbox.cursor")[..8]);
    journal.extend_from_slice(&read_back(&dir, "outbox.log"));
    s.push(("outbox_journal", journal));
    let mut journal = vec![0];
    journal.extend_from_slice(&read_back(&dir, "outbox.log"));
    s.push(("outbox_journal", journal));
    let dir = super::scratch::scratch();
    {
        let q = DownlinkQueue::open(&dir, 8, Arc::new(crate::metrics::Metrics::default()))
            .expect("seed queue");
        q.push(
            "mote-1",
            crate::codec::setting::Downlink {
                fport: 2,
                payload: vec![0, 60],
                confirmed: false,
            },
        )
        .expect("seed queue");
        q.push(
            "mote-2",
            crate::codec::setting::Downlink {
                fport: 3,
                payload: vec![1],
                confirmed: false,
            },
        )
        .expect("seed queue");
    }
    s.push(("downlink_queue", read_back(&dir, "downlinks.json")));
    let dir = super::scratch::scratch();
    {
        let rx = crate::lorawan::mac::RxParams {
            rx1_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            rx2_frequency: 869_525_000,
        };
        let mut macs = StateLog::<crate::lorawan::mac::MacState>::open(&dir).expect("seed mac log");
        macs.record(
            Eui64::from_u64(1),
            crate::lorawan::mac::MacState::new(0, rx, 5),
        )
        .expect("seed mac log");
        let mut joins =
            StateLog::<crate::lorawan::otaa::JoinState>::open(&dir).expect("seed join log");
        joins
            .record(Eui64::from_u64(1), Default::default())
            .expect("seed join log");
    }
    // Joins resealed (control 2), MAC states as written (1).
    let mut joins = vec![2];
    joins.extend_from_slice(&read_back(&dir, "joins.log"));
    s.push(("state_log", joins));
    let mut macs = vec![1];
    macs.extend_from_slice(&read_back(&dir, "mac.log"));
    s.push(("state_log", macs));
    let dir = super::scratch::scratch();
    {
        let mut store = crate::store::secrets::SecretStore::open(&dir).expect("seed secrets");
        let session = crate::store::secrets::Session {
            dev_addr: DevAddr(0x2601_1234),
            nwk_s_key: AesKey::new([5; 16]),
            app_s_key: AesKey::new([6; 16]),
        };
        store.put("mote-1", &session).expect("seed secrets");
    }
    s.push(("secrets_file", read_back(&dir, "secrets.yaml")));
    s.push(("contract", contract()));
    let blob = b"an image layer".to_vec();
    let mut store_seed = format!("{}\n", crate::image::store::Digest::of(&blob)).into_bytes();
    store_seed.extend_from_slice(&blob);
    s.push(("image_store", store_seed));
    s.push(("image_tar", image_tar()));
    if let Ok(exe) = std::fs::read("/bin/true") {
        s.push(("elf", exe));
    }
    super::scratch::remove_scratch();
    s
}

/// The fenced YAML blocks of a Markdown text.
fn yaml_blocks(md: &str) -> Vec<String> {
    md.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(y, _)| y.to_owned()))
        .collect()
}

fn handover_sync() -> Vec<u8> {
    use crate::handover::{pb, takeover};
    use prost::Message;
    let profile = DeviceProfile::from_yaml(
        "p".as_ref(),
        include_str!("../../profiles/Dragino-LPP-Mote.yaml"),
    )
    .expect("profile");
    let session = pb::DeviceSession {
        name: "mote-1".into(),
        dev_eui: 1,
        dev_addr: 0x2601_0001,
        nwk_s_key: vec![1; 16],
        app_s_key: vec![2; 16],
        profile_json: serde_json::to_string(&profile).expect("profile"),
        codec: takeover::enum_to_str(&crate::codec::CodecKind::CayenneLpp),
        fcnt_policy: takeover::enum_to_str(&crate::lorawan::FcntPolicy::Strict),
        counter: Some(takeover::counter_msg(
            Eui64::from_u64(1),
            FcntState {
                last: Some(9),
                epoch: 0,
            },
            3,
        )),
        region: "EU868".into(),
        ..Default::default()
    };
    pb::SyncRequest {
        contract_id: "c-1".into(),
        epoch: 2,
        devices: vec![session],
    }
    .encode_to_vec()
}

fn contract() -> Vec<u8> {
    use crate::handover::contract::*;
    use crate::handover::identity::Identity;
    let (a, b) = (
        Identity::generate().expect("id"),
        Identity::generate().expect("id"),
    );
    let party = |id: &str, who: &Identity| Party {
        id: id.into(),
        public_key: who.public().to_hex(),
        address: "127.0.0.1:59990".into(),
    };
    let c = Contract {
        id: "c-1".into(),
        customer: party("edge-a", &a),
        provider: party("edge-b", &b),
        image: ImageRef {
            digest: format!("sha256:{}", "a".repeat(64)),
            cid: "bafybei".into(),
            size: 1,
        },
        devices: vec!["70b3d57ed0000001".into()],
        activation: Activation::default(),
        resources: Resources {
            memory_bytes: 64 << 20,
            cpu_millis: 500,
        },
        not_before: 100,
        not_after: 2_000_000_000,
        at_expiry: Default::default(),
        rank: 0,
    };
    let signed = SignedContract::offer(c, &a)
        .and_then(|o| o.accept(&b, 1_800_000_000))
        .expect("contract");
    serde_json::to_vec(&signed).expect("contract")
}

fn image_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{}","RepoTags":["device-lorawan:0.1.0"],"Layers":[]}}]"#,
        "b".repeat(64)
    );
    let mut h = tar::Header::new_ustar();
    h.set_path("manifest.json").expect("tar path");
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, manifest.as_bytes()).expect("tar");
    b.into_inner().expect("tar")
}
