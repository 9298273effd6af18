//! Targets for what arrives over the network: gateways' datagrams and
//! messages, frames, the MAC conversation, payloads behind a valid MIC,
//! downlink acknowledgements and the handover peer's messages.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use prost::Message;

use super::bytes::Bytes;
use crate::codec::profile::DeviceProfile;
use crate::codec::{Codec, CodecKind, Reading};
use crate::devices::{DeviceEntry, Registry};
use crate::ingest::station::messages;
use crate::ingest::{application, bridge as gateway, udp};
use crate::lorawan::mac::{self, MacState, RxParams, UplinkMac, Wanted};
use crate::lorawan::region::{Region, RegionName, RegionSettings};
use crate::lorawan::{self, encode, join, AesKey, DevAddr, Eui64, FcntPolicy, FcntState};

pub fn udp_datagram(data: &[u8]) {
    if let Ok(udp::Packet::Push { frames, .. }) = udp::parse(data) {
        for f in frames.into_iter().flatten() {
            phy_payload(&f.phy);
        }
    }
}

pub fn gateway_bridge(data: &[u8]) {
    if let Ok(up) = gateway::decode(data) {
        phy_payload(&up.phy);
    }
}

pub fn application_json(data: &[u8]) {
    let _ = application::decode(data);
}

pub fn station_message(data: &[u8]) {
    static REGIONS: OnceLock<[Region; 2]> = OnceLock::new();
    let regions = REGIONS.get_or_init(|| {
        [RegionName::EU868, RegionName::US915].map(|n| Region::new(RegionSettings::new(n)))
    });
    // A WebSocket text frame is UTF-8 (tungstenite refuses anything else).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for r in regions {
        if let Ok(messages::Upstream::Frame { phy, .. }) =
            messages::parse(text, Eui64::from_u64(1), r)
        {
            phy_payload(&phy);
        }
    }
}

fn crypto() -> &'static lorawan::SessionCrypto {
    static C: OnceLock<lorawan::SessionCrypto> = OnceLock::new();
    C.get_or_init(|| lorawan::SessionCrypto::new(&AesKey::new([2; 16]), &AesKey::new([1; 16])))
}

/// Any PHYPayload: a data frame (framing, FOpts, MIC under every counter
/// candidate, decryption), a JoinRequest, a JoinAccept or a downlink.
pub fn phy_payload(data: &[u8]) {
    let c = crypto();
    let state = FcntState {
        last: Some(0xffff_fff0),
        epoch: 0,
    };
    // As it came (the MIC almost never matches), then with the MIC this
    // session gives it, so the counter check and decryption see every
    // frame the parser takes, not only the seeds'.
    let mut sealed = data.to_vec();
    if let Ok(f) = lorawan::parse_uplink(data) {
        if sealed.len() >= 4 {
            let body = sealed.len() - 4;
            // The counter the MIC covers: the likeliest the check tries.
            let fcnt = crate::lorawan::fcnt::candidates(&state, f.fcnt16).as_slice()[0];
            let mic = c.data_mic(
                crate::lorawan::crypto::Direction::Up,
                f.dev_addr,
                fcnt,
                &sealed[..body],
            );
            sealed[body..].copy_from_slice(&mic);
        }
    }
    for frame in [data, &sealed[..]] {
        let Ok(f) = lorawan::parse_uplink(frame) else {
            continue;
        };
        let _ = lorawan::uplink::mac_commands(f.fopts());
        let mut buf = [0u8; lorawan::crypto::MAX_PHY_PAYLOAD];
        if let Ok(auth) = lorawan::verify_mic(f, c, &state, &mut buf) {
            if let Ok(acc) = lorawan::check_counter(auth, &state, FcntPolicy::ResetTolerant, 16) {
                let _ = lorawan::uplink::mac_commands(acc.payload());
            }
        }
    }
    if let Ok(req) = join::parse_join_request(data) {
        let _ = req.verify(&AesKey::new([3; 16]));
    }
    let _ = join::open_join_accept(&AesKey::new([3; 16]), data);
    let _ = encode::open_downlink(c, DevAddr(0x2601_0001), Some(7), data);
    let _ = mac::commands::read_down(data);
}

/// A device's MAC conversation: a sequence of uplinks (counter step, data
/// rate, SNR, FOpts) and of downlinks sent, through the state machine.
pub fn mac_state(data: &[u8]) {
    let rx = RxParams {
        rx1_delay: 1,
        rx1_dr_offset: 0,
        rx2_dr: 0,
        rx2_frequency: 869_525_000,
    };
    let mut b = Bytes(data);
    let flags = b.u8();
    let want = Wanted {
        adr: flags & 1 == 1,
        installation_margin: f32::from(b.u8() % 32),
        max_dr: b.u8() % 16,
        max_tx_power: b.u8() % 16,
        channel_masks: vec![(6, 0x0007)],
        rx,
        dev_status_every: (flags & 2 == 2).then_some(u64::from(b.u16())),
        extra_channels: if flags & 4 == 4 {
            vec![(3, 867_100_000, 0, 5)]
        } else {
            Vec::new()
        },
    };
    let mut state = MacState::new(0, rx, 0);
    let (mut fcnt, mut now) = (0u32, 0u64);
    while !b.is_empty() {
        fcnt = fcnt.wrapping_add(u32::from(b.u8()));
        now += u64::from(b.u16());
        let dr = b.u8();
        let snr = f32::from(b.u8() as i8) / 4.0;
        let commands = lorawan::uplink::mac_commands(b.take(15));
        let up = UplinkMac {
            fcnt,
            adr: dr & 0x80 == 0,
            adr_ack_req: dr & 0x40 != 0,
            dr: Some((dr % 16, 7 + dr % 6)),
            max_snr: snr,
            gateways: 1 + u32::from(dr >> 6),
            commands: &commands,
            now,
            gps_time_ns: now * 1_000_000_000,
        };
        let d = state.on_uplink(&up, &want);
        if b.u8() & 1 == 1 {
            let sent = mac::state::fit(&d.commands, 15);
            state.on_sent(&sent, fcnt, now);
        }
        assert!(
            state.history.len() <= 20,
            "ADR history of {}",
            state.history.len()
        );
    }
}

fn profile(text: &str) -> DeviceProfile {
    DeviceProfile::from_yaml("fuzz".as_ref(), text).expect("shipped profile")
}

/// An LPP device (the shipped mote's profile) and a layout device.
fn registry() -> &'static (Registry, [lorawan::SessionCrypto; 2]) {
    static R: OnceLock<(Registry, [lorawan::SessionCrypto; 2])> = OnceLock::new();
    R.get_or_init(|| {
        let lpp = profile(include_str!("../../profiles/Dragino-LPP-Mote.yaml"));
        let layout = profile(include_str!("../../profiles/Binary-Layout-Mote.yaml"));
        let key = |k: u8| AesKey::new([k; 16]);
        let entry = |i: u8, p: &DeviceProfile, codec| DeviceEntry {
            dev_addr: Some(DevAddr(0x2601_0001 + u32::from(i))),
            nwk_s_key: Some(key(2 * i + 1)),
            app_s_key: Some(key(2 * i + 2)),
            codec,
            ..DeviceEntry::new(
                format!("fuzz-{i}"),
                Eui64::from_u64(u64::from(i) + 1),
                &p.name,
            )
        };
        let entries = vec![
            entry(0, &lpp, CodecKind::CayenneLpp),
            entry(1, &layout, CodecKind::Layout),
        ];
        let crypto =
            [0u8, 1].map(|i| lorawan::SessionCrypto::new(&key(2 * i + 1), &key(2 * i + 2)));
        let profiles: BTreeMap<String, DeviceProfile> = [lpp, layout]
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        (
            Registry::build(entries, &profiles).expect("fuzz registry"),
            crypto,
        )
    })
}

/// A payload behind a valid MIC, through the whole decode path: counter
/// judgement, decryption, the device's codec (LPP or layout), readings.
pub fn decode_behind_mic(data: &[u8]) {
    let (registry, crypto) = registry();
    let mut b = Bytes(data);
    // Which device; the frame's control bits; a full 32-bit counter and how
    // far the device's last counter is behind it (across the 16-bit wrap
    // too); MAC commands in FOpts; no FPort at all, or one.
    let control = b.u8();
    let device = usize::from(control & 1);
    let fcnt = u32::from(b.u16()) | (u32::from(b.u16()) << 16);
    let behind = u32::from(b.u8());
    let fopts = b.take(15);
    let fport = (control & 0x40 == 0).then(|| b.u8());
    let payload = b.0;
    if payload.len() > 222 - fopts.len() {
        return;
    }
    let spec = encode::FrameSpec {
        dir: crate::lorawan::crypto::Direction::Up,
        confirmed: control & 0x02 != 0,
        dev_addr: DevAddr(0x2601_0001 + device as u32),
        fcnt,
        adr: control & 0x04 != 0,
        ack: control & 0x08 != 0,
        fpending: false,
        adr_ack_req: control & 0x10 != 0,
        fopts,
        fport,
    };
    let payload = if fport.is_some() { payload } else { &[][..] };
    let phy = encode::build_frame(&crypto[device], &spec, payload);
    let states = [FcntState {
        last: (control & 0x20 == 0).then(|| fcnt.wrapping_sub(behind.max(1))),
        epoch: 0,
    }; 2];
    let mut readings: Vec<Reading> = Vec::new();
    if let Ok(d) =
        crate::pipeline::uplink::decode_frame(registry, &states, 16, &phy, 0.0, &mut readings)
    {
        assert_eq!(d.device as usize, device, "decoded for the wrong device");
        assert_eq!(d.fcnt & 0xffff, fcnt & 0xffff, "decoded another counter");
    }
}

/// The output of a vendor's `decodeUplink` (the input is what the script
/// returns, as JSON text) through the JavaScript glue into typed readings.
pub fn js_output(data: &[u8]) {
    thread_local! {
        static CODEC: Codec = {
            let mut p = profile(include_str!("../../tests/codecs/Example-Climate-Sensor.yaml"));
            // One call, not a loop of concatenations: the harness's own
            // cost (QuickJS under AddressSanitizer) set the campaign's pace.
            let source = "function decodeUplink(input) {\n\
                return JSON.parse(String.fromCharCode.apply(null, input.bytes));\n}\n";
            p.script = Some(Arc::new(crate::codec::js::Script::new("fuzz.js".into(), source.into())));
            Codec::compile(Arc::new(p), CodecKind::Javascript).expect("fuzz codec")
        };
    }
    let mut out = Vec::new();
    CODEC.with(|c| {
        let _ = c.decode(data, 1, "{}", 0.0, &mut out);
    });
}

/// What gateways answer about downlinks (Semtech TX_ACK, the bridge's
/// DownlinkTxAck in JSON or protobuf) and the downlinks the simulator reads.
pub fn downlink_ack(data: &[u8]) {
    use crate::ingest::{bridge, udp};
    let _ = udp::downlink::tx_ack_result(data);
    let _ = bridge::downlink::decode_tx_ack(data);
    let _ = udp::downlink::decode_pull_resp(data);
    let _ = bridge::downlink::decode_downlink_frame(data);
}

/// A handover peer's messages: synced sessions as the provider adopts
/// them, counters, and the join and MAC states handed back.
pub fn handover_grpc(data: &[u8]) {
    use crate::handover::{pb, takeover};
    if let Ok(sync) = pb::SyncRequest::decode(data) {
        for s in &sync.devices {
            let _ = takeover::adopted(s);
            if let Some(c) = &s.counter {
                let _ = takeover::counter_of(c);
            }
        }
    }
    if let Ok(reply) = pb::ReleaseReply::decode(data) {
        for j in &reply.joins {
            let _ = serde_json::from_str::<lorawan::otaa::JoinState>(&j.join_state);
        }
        for m in &reply.macs {
            let _ = serde_json::from_str::<MacState>(&m.mac_state);
        }
        for c in &reply.delivered {
            let _ = takeover::counter_of(c);
        }
    }
    let _ = pb::HeartbeatRequest::decode(data);
}
