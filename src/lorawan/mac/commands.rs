//! MAC commands on the wire (LoRaWAN 1.0.4 §5): the ones devices send,
//! read from FOpts or a decrypted FPort 0 payload, and the ones the
//! network sends, encoded for FOpts or FPort 0.
//!
//! Our own walk and encoder, bounds-checked at every step: `lorawan` 0.9's
//! iterator panics on a truncated command (it slices one byte past what it
//! checked), and these bytes come from the radio. The tests read our
//! encodings back with `lrwn`'s decoder, an independent implementation.

use serde::{Deserialize, Serialize};

/// An uplink MAC command (never fatal: surfaced for logs and events, and
/// fed to the MAC state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum MacCommand {
    LinkCheckReq,
    /// Which parts of the last LinkADRReq block the device took.
    #[serde(rename_all = "camelCase")]
    LinkAdrAns {
        power_ack: bool,
        data_rate_ack: bool,
        channel_mask_ack: bool,
    },
    DutyCycleAns,
    #[serde(rename_all = "camelCase")]
    RxParamSetupAns {
        rx1_dr_offset_ack: bool,
        rx2_data_rate_ack: bool,
        channel_ack: bool,
    },
    DevStatusAns {
        /// 0: external power, 1..=254: level, 255: cannot tell.
        battery: u8,
        /// SNR of our last DevStatusReq above its demodulation floor, dB.
        margin: i8,
    },
    #[serde(rename_all = "camelCase")]
    NewChannelAns {
        data_rate_range_ok: bool,
        channel_frequency_ok: bool,
    },
    RxTimingSetupAns,
    TxParamSetupAns,
    DlChannelAns {
        status: u8,
    },
    DeviceTimeReq,
    /// Bytes that do not parse as commands (unknown CID or truncated).
    Unparsed {
        bytes: usize,
    },
}

/// CIDs (1.0.4 Table 4).
pub mod cid {
    pub const LINK_CHECK: u8 = 0x02;
    pub const LINK_ADR: u8 = 0x03;
    pub const DUTY_CYCLE: u8 = 0x04;
    pub const RX_PARAM_SETUP: u8 = 0x05;
    pub const DEV_STATUS: u8 = 0x06;
    pub const NEW_CHANNEL: u8 = 0x07;
    pub const RX_TIMING_SETUP: u8 = 0x08;
    pub const TX_PARAM_SETUP: u8 = 0x09;
    pub const DL_CHANNEL: u8 = 0x0a;
    pub const DEVICE_TIME: u8 = 0x0d;
}

/// Payload length of each uplink MAC command, by CID.
fn uplink_payload_len(c: u8) -> Option<usize> {
    use cid::*;
    Some(match c {
        LINK_CHECK | DUTY_CYCLE | RX_TIMING_SETUP | TX_PARAM_SETUP | DEVICE_TIME => 0,
        LINK_ADR | RX_PARAM_SETUP | NEW_CHANNEL | DL_CHANNEL => 1,
        DEV_STATUS => 2,
        _ => return None,
    })
}

/// MAC commands from FOpts, or from a decrypted FPort 0 payload.
pub fn mac_commands(bytes: &[u8]) -> Vec<MacCommand> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        let Some(body) = uplink_payload_len(c).and_then(|n| bytes.get(at + 1..at + 1 + n)) else {
            out.push(MacCommand::Unparsed {
                bytes: bytes.len() - at,
            });
            break;
        };
        let bit = |i: u8| body.first().is_some_and(|b| b & (1 << i) != 0);
        out.push(match c {
            cid::LINK_CHECK => MacCommand::LinkCheckReq,
            cid::LINK_ADR => MacCommand::LinkAdrAns {
                power_ack: bit(2),
                data_rate_ack: bit(1),
                channel_mask_ack: bit(0),
            },
            cid::DUTY_CYCLE => MacCommand::DutyCycleAns,
            cid::RX_PARAM_SETUP => MacCommand::RxParamSetupAns {
                rx1_dr_offset_ack: bit(2),
                rx2_data_rate_ack: bit(1),
                channel_ack: bit(0),
            },
            cid::DEV_STATUS => MacCommand::DevStatusAns {
                battery: body[0],
                // 6-bit signed margin (1.0.4 §5.5).
                margin: ((body[1] << 2) as i8) >> 2,
            },
            cid::NEW_CHANNEL => MacCommand::NewChannelAns {
                data_rate_range_ok: bit(1),
                channel_frequency_ok: bit(0),
            },
            cid::RX_TIMING_SETUP => MacCommand::RxTimingSetupAns,
            cid::TX_PARAM_SETUP => MacCommand::TxParamSetupAns,
            cid::DL_CHANNEL => MacCommand::DlChannelAns { status: body[0] },
            _ => MacCommand::DeviceTimeReq,
        });
        at += 1 + body.len();
    }
    out
}

/// A MAC command the network sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum DownCommand {
    /// `margin`: dB above the demodulation floor (0..=254); `gateways`:
    /// how many heard the request.
    LinkCheckAns {
        margin: u8,
        gateways: u8,
    },
    #[serde(rename_all = "camelCase")]
    LinkAdrReq {
        data_rate: u8,
        tx_power: u8,
        channel_mask: u16,
        channel_mask_control: u8,
        nb_trans: u8,
    },
    DevStatusReq,
    #[serde(rename_all = "camelCase")]
    RxParamSetupReq {
        rx1_dr_offset: u8,
        rx2_data_rate: u8,
        /// Hz, sent in 100 Hz steps.
        frequency: u32,
    },
    /// RECEIVE_DELAY1 in seconds (1..=15; 0 means 1).
    RxTimingSetupReq {
        delay: u8,
    },
    /// Define uplink channel `index` (Hz, data rates `min_dr..=max_dr`).
    #[serde(rename_all = "camelCase")]
    NewChannelReq {
        index: u8,
        frequency: u32,
        min_dr: u8,
        max_dr: u8,
    },
    /// Seconds since the GPS epoch and 1/256 fractions of a second.
    DeviceTimeAns {
        seconds: u32,
        fraction: u8,
    },
}

impl DownCommand {
    /// Bytes on air, CID included.
    pub fn len(&self) -> usize {
        1 + match self {
            Self::LinkCheckAns { .. } => 2,
            Self::LinkAdrReq { .. } => 4,
            Self::DevStatusReq => 0,
            Self::RxParamSetupReq { .. } => 4,
            Self::RxTimingSetupReq { .. } => 1,
            Self::NewChannelReq { .. } => 5,
            Self::DeviceTimeAns { .. } => 5,
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Answers go in the downlink right after the request; requests can wait.
    pub fn is_answer(&self) -> bool {
        matches!(self, Self::LinkCheckAns { .. } | Self::DeviceTimeAns { .. })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::LinkCheckAns { margin, gateways } => {
                out.extend_from_slice(&[cid::LINK_CHECK, margin.min(254), gateways])
            }
            Self::LinkAdrReq {
                data_rate,
                tx_power,
                channel_mask,
                channel_mask_control,
                nb_trans,
            } => {
                out.push(cid::LINK_ADR);
                out.push((data_rate & 0x0f) << 4 | (tx_power & 0x0f));
                out.extend_from_slice(&channel_mask.to_le_bytes());
                out.push((channel_mask_control & 0x07) << 4 | (nb_trans & 0x0f));
            }
            Self::DevStatusReq => out.push(cid::DEV_STATUS),
            Self::RxParamSetupReq {
                rx1_dr_offset,
                rx2_data_rate,
                frequency,
            } => {
                out.push(cid::RX_PARAM_SETUP);
                out.push((rx1_dr_offset & 0x07) << 4 | (rx2_data_rate & 0x0f));
                out.extend_from_slice(&(frequency / 100).to_le_bytes()[..3]);
            }
            Self::RxTimingSetupReq { delay } => {
                out.extend_from_slice(&[cid::RX_TIMING_SETUP, delay & 0x0f])
            }
            Self::NewChannelReq {
                index,
                frequency,
                min_dr,
                max_dr,
            } => {
                out.extend_from_slice(&[cid::NEW_CHANNEL, index]);
                out.extend_from_slice(&(frequency / 100).to_le_bytes()[..3]);
                out.push((max_dr & 0x0f) << 4 | (min_dr & 0x0f));
            }
            Self::DeviceTimeAns { seconds, fraction } => {
                out.push(cid::DEVICE_TIME);
                out.extend_from_slice(&seconds.to_le_bytes());
                out.push(fraction);
            }
        }
    }
}

/// Encode `commands` in order.
pub fn encode_all(commands: &[DownCommand]) -> Vec<u8> {
    let mut out = Vec::with_capacity(commands.iter().map(DownCommand::len).sum());
    for c in commands {
        c.encode(&mut out);
    }
    out
}

/// A network-sent command as a mote reads it (the simulator's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Known(DownCommand),
    /// Another CID: the mote stops reading (it cannot know the length).
    Unknown(u8),
}

/// Read network-sent commands, as a mote does.
pub fn read_down(bytes: &[u8]) -> Vec<Received> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        let n = match c {
            cid::LINK_CHECK => 2,
            cid::LINK_ADR | cid::RX_PARAM_SETUP => 4,
            cid::DEV_STATUS => 0,
            cid::RX_TIMING_SETUP => 1,
            cid::NEW_CHANNEL | cid::DEVICE_TIME => 5,
            _ => {
                out.push(Received::Unknown(c));
                break;
            }
        };
        let Some(b) = bytes.get(at + 1..at + 1 + n) else {
            out.push(Received::Unknown(c));
            break;
        };
        out.push(Received::Known(match c {
            cid::LINK_CHECK => DownCommand::LinkCheckAns {
                margin: b[0],
                gateways: b[1],
            },
            cid::LINK_ADR => DownCommand::LinkAdrReq {
                data_rate: b[0] >> 4,
                tx_power: b[0] & 0x0f,
                channel_mask: u16::from_le_bytes([b[1], b[2]]),
                channel_mask_control: (b[3] >> 4) & 0x07,
                nb_trans: b[3] & 0x0f,
            },
            cid::DEV_STATUS => DownCommand::DevStatusReq,
            cid::RX_PARAM_SETUP => DownCommand::RxParamSetupReq {
                rx1_dr_offset: (b[0] >> 4) & 0x07,
                rx2_data_rate: b[0] & 0x0f,
                frequency: u32::from_le_bytes([b[1], b[2], b[3], 0]) * 100,
            },
            cid::RX_TIMING_SETUP => DownCommand::RxTimingSetupReq { delay: b[0] & 0x0f },
            cid::NEW_CHANNEL => DownCommand::NewChannelReq {
                index: b[0],
                frequency: u32::from_le_bytes([b[1], b[2], b[3], 0]) * 100,
                min_dr: b[4] & 0x0f,
                max_dr: b[4] >> 4,
            },
            _ => DownCommand::DeviceTimeAns {
                seconds: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                fraction: b[4],
            },
        }));
        at += 1 + n;
    }
    out
}

/// Encode uplink answers, as a mote does (the simulator's side).
pub fn encode_up(commands: &[MacCommand]) -> Vec<u8> {
    let mut out = Vec::new();
    let b = |v: bool, i: u8| u8::from(v) << i;
    for c in commands {
        match *c {
            MacCommand::LinkCheckReq => out.push(cid::LINK_CHECK),
            MacCommand::DeviceTimeReq => out.push(cid::DEVICE_TIME),
            MacCommand::LinkAdrAns {
                power_ack,
                data_rate_ack,
                channel_mask_ack,
            } => out.extend_from_slice(&[
                cid::LINK_ADR,
                b(power_ack, 2) | b(data_rate_ack, 1) | b(channel_mask_ack, 0),
            ]),
            MacCommand::RxParamSetupAns {
                rx1_dr_offset_ack,
                rx2_data_rate_ack,
                channel_ack,
            } => out.extend_from_slice(&[
                cid::RX_PARAM_SETUP,
                b(rx1_dr_offset_ack, 2) | b(rx2_data_rate_ack, 1) | b(channel_ack, 0),
            ]),
            MacCommand::DevStatusAns { battery, margin } => {
                out.extend_from_slice(&[cid::DEV_STATUS, battery, (margin as u8) & 0x3f])
            }
            MacCommand::RxTimingSetupAns => out.push(cid::RX_TIMING_SETUP),
            MacCommand::DutyCycleAns => out.push(cid::DUTY_CYCLE),
            MacCommand::TxParamSetupAns => out.push(cid::TX_PARAM_SETUP),
            MacCommand::NewChannelAns {
                data_rate_range_ok,
                channel_frequency_ok,
            } => out.extend_from_slice(&[
                cid::NEW_CHANNEL,
                b(data_rate_range_ok, 1) | b(channel_frequency_ok, 0),
            ]),
            MacCommand::DlChannelAns { status } => {
                out.extend_from_slice(&[cid::DL_CHANNEL, status])
            }
            MacCommand::Unparsed { .. } => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrwn::{MACCommand, MACCommandSet};

    #[test]
    fn uplink_walk() {
        assert_eq!(
            mac_commands(&[0x06, 115, 7]),
            vec![MacCommand::DevStatusAns {
                battery: 115,
                margin: 7
            }]
        );
        assert_eq!(
            mac_commands(&[0x06, 255, 0x3f]),
            vec![MacCommand::DevStatusAns {
                battery: 255,
                margin: -1
            }]
        );
        assert_eq!(
            mac_commands(&[0x02, 0x03, 0x06, 0x0d, 0x05, 0x03]),
            vec![
                MacCommand::LinkCheckReq,
                MacCommand::LinkAdrAns {
                    power_ack: true,
                    data_rate_ack: true,
                    channel_mask_ack: false
                },
                MacCommand::DeviceTimeReq,
                MacCommand::RxParamSetupAns {
                    rx1_dr_offset_ack: false,
                    rx2_data_rate_ack: true,
                    channel_ack: true
                },
            ]
        );
        // Truncated (the input that panics lorawan 0.9) and unknown CIDs.
        assert_eq!(
            mac_commands(&[0x06, 1]),
            vec![MacCommand::Unparsed { bytes: 2 }]
        );
        assert_eq!(
            mac_commands(&[0x02, 0x80, 1]),
            vec![MacCommand::LinkCheckReq, MacCommand::Unparsed { bytes: 2 }]
        );
        assert!(mac_commands(&[]).is_empty());
    }

    #[test]
    fn uplink_answers_round_trip() {
        let all = [
            MacCommand::LinkCheckReq,
            MacCommand::LinkAdrAns {
                power_ack: true,
                data_rate_ack: false,
                channel_mask_ack: true,
            },
            MacCommand::DutyCycleAns,
            MacCommand::RxParamSetupAns {
                rx1_dr_offset_ack: true,
                rx2_data_rate_ack: true,
                channel_ack: false,
            },
            MacCommand::DevStatusAns {
                battery: 0,
                margin: -32,
            },
            MacCommand::NewChannelAns {
                data_rate_range_ok: true,
                channel_frequency_ok: false,
            },
            MacCommand::RxTimingSetupAns,
            MacCommand::TxParamSetupAns,
            MacCommand::DlChannelAns { status: 3 },
            MacCommand::DeviceTimeReq,
        ];
        assert_eq!(mac_commands(&encode_up(&all)), all);
    }

    /// Our encodings, read by lrwn (ChirpStack's LoRaWAN crate) as a
    /// device would: every field where the spec puts it.
    #[test]
    fn downlink_commands_read_by_lrwn() {
        let ours = [
            DownCommand::LinkCheckAns {
                margin: 20,
                gateways: 3,
            },
            DownCommand::LinkAdrReq {
                data_rate: 5,
                tx_power: 2,
                channel_mask: 0x00ff,
                channel_mask_control: 6,
                nb_trans: 2,
            },
            DownCommand::DevStatusReq,
            DownCommand::RxParamSetupReq {
                rx1_dr_offset: 2,
                rx2_data_rate: 3,
                frequency: 869_525_000,
            },
            DownCommand::RxTimingSetupReq { delay: 3 },
            DownCommand::DeviceTimeAns {
                seconds: 1_400_000_000,
                fraction: 128,
            },
            DownCommand::NewChannelReq {
                index: 3,
                frequency: 867_100_000,
                min_dr: 0,
                max_dr: 5,
            },
        ];
        let bytes = encode_all(&ours);
        assert_eq!(
            bytes.len(),
            ours.iter().map(DownCommand::len).sum::<usize>()
        );
        let mut set = MACCommandSet::from_slice(&bytes);
        set.decode_from_raw(false).unwrap();
        let theirs: Vec<MACCommand> = set.iter().cloned().collect();
        assert_eq!(theirs.len(), 7, "{theirs:?}");
        match &theirs[6] {
            MACCommand::NewChannelReq(p) => {
                assert_eq!((p.ch_index, p.freq), (3, 867_100_000));
                assert_eq!((p.min_dr, p.max_dr), (0, 5));
            }
            o => panic!("{o:?}"),
        }
        match &theirs[0] {
            MACCommand::LinkCheckAns(p) => assert_eq!((p.margin, p.gw_cnt), (20, 3)),
            o => panic!("{o:?}"),
        }
        match &theirs[1] {
            MACCommand::LinkADRReq(p) => {
                assert_eq!((p.dr, p.tx_power), (5, 2));
                assert_eq!(p.redundancy.ch_mask_cntl, 6);
                assert_eq!(p.redundancy.nb_rep, 2);
                assert_eq!(p.ch_mask.to_bytes(), [0xff, 0x00]);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(theirs[2], MACCommand::DevStatusReq));
        match &theirs[3] {
            MACCommand::RxParamSetupReq(p) => {
                assert_eq!(p.frequency, 869_525_000);
                assert_eq!((p.dl_settings.rx1_dr_offset, p.dl_settings.rx2_dr), (2, 3));
            }
            o => panic!("{o:?}"),
        }
        match &theirs[4] {
            MACCommand::RxTimingSetupReq(p) => assert_eq!(p.delay, 3),
            o => panic!("{o:?}"),
        }
        match &theirs[5] {
            MACCommand::DeviceTimeAns(p) => {
                let d = p.time_since_gps_epoch;
                assert_eq!(d.as_secs(), 1_400_000_000);
                assert_eq!(d.subsec_millis(), 500);
            }
            o => panic!("{o:?}"),
        }
        // And we read back what we wrote, as the simulated motes do.
        let back: Vec<_> = read_down(&bytes)
            .into_iter()
            .map(|r| match r {
                Received::Known(c) => c,
                u => panic!("{u:?}"),
            })
            .collect();
        assert_eq!(back, ours);
        assert_eq!(read_down(&[0x03, 1]), vec![Received::Unknown(0x03)]);
    }
}
