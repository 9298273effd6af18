//! What an LMIC (MCCI arduino-lmic 6.0.1) mote does with the MAC layer,
//! for the simulator: ADR on by default; ADR_ACK_CNT counts uplinks without
//! a downlink, ADRACKReq is set from ADR_ACK_LIMIT (64) on, and each
//! ADR_ACK_DELAY (32) more the mote steps its data rate down one notch at
//! full power; any downlink resets the count. LinkADRReq blocks are
//! checked, applied and answered; RXParamSetupReq, RXTimingSetupReq and
//! DevStatusReq applied and answered in the next uplink.

use crate::lorawan::mac::commands::{encode_up, DownCommand, MacCommand, Received};
use crate::lorawan::radio::RxSettings;
use crate::lorawan::region::Region;

pub const ADR_ACK_LIMIT: u32 = 64;
pub const ADR_ACK_DELAY: u32 = 32;

/// An answer from the network the mote asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    LinkCheck { margin: u8, gateways: u8 },
    DeviceTime { seconds: u32, fraction: u8 },
}

#[derive(Debug, Clone)]
pub struct MoteMac {
    /// The mote runs ADR (sets the ADR bit, takes LinkADRReq).
    pub adr: bool,
    pub dr: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
    pub adr_ack_cnt: u32,
    /// Answers waiting for the next uplink's FOpts.
    answers: Vec<MacCommand>,
    /// Firmware limit: data rates above this are refused (DataRate NACK).
    pub refuse_dr_above: Option<u8>,
    /// LinkADRReqs taken, and refused.
    pub adr_taken: u32,
    pub adr_refused: u32,
    /// Times the mote stepped its data rate down for want of a downlink.
    pub steps_down: u32,
    /// Channels a NewChannelReq defined, by index, in order.
    pub channels: Vec<u8>,
}

impl MoteMac {
    pub fn new(adr: bool, dr: u8) -> Self {
        Self {
            adr,
            dr,
            tx_power: 0,
            nb_trans: 1,
            adr_ack_cnt: 0,
            answers: Vec::new(),
            refuse_dr_above: None,
            adr_taken: 0,
            adr_refused: 0,
            steps_down: 0,
            channels: Vec::new(),
        }
    }

    /// FCtrl's ADR and ADRACKReq bits and the FOpts of the next uplink,
    /// with `asks` (LinkCheckReq, DeviceTimeReq) after the answers.
    pub fn uplink(&mut self, asks: &[MacCommand]) -> (bool, bool, Vec<u8>) {
        let adr_ack_req = self.adr && self.adr_ack_cnt >= ADR_ACK_LIMIT && self.dr > 0;
        let mut cmds = std::mem::take(&mut self.answers);
        cmds.extend_from_slice(asks);
        let mut fopts = encode_up(&cmds);
        fopts.truncate(15);
        (self.adr, adr_ack_req, fopts)
    }

    /// The uplink went out: no downlink came for it (yet).
    pub fn sent(&mut self) {
        if !self.adr {
            return;
        }
        self.adr_ack_cnt += 1;
        if self.adr_ack_cnt >= ADR_ACK_LIMIT + ADR_ACK_DELAY {
            // LMIC: one notch down, full power, and again after ADR_ACK_DELAY more.
            if self.dr > 0 {
                self.dr -= 1;
                self.steps_down += 1;
            }
            self.tx_power = 0;
            self.adr_ack_cnt = ADR_ACK_LIMIT;
        }
    }

    /// A downlink arrived carrying `commands`: apply and answer them.
    pub fn on_downlink(
        &mut self,
        commands: &[Received],
        region: &Region,
        rx: &mut RxSettings,
        battery: u8,
    ) -> Vec<Told> {
        self.adr_ack_cnt = 0;
        let mut told = Vec::new();
        let block: Vec<(u8, u8, u8)> = commands
            .iter()
            .filter_map(|c| match c {
                Received::Known(DownCommand::LinkAdrReq {
                    data_rate,
                    tx_power,
                    nb_trans,
                    ..
                }) => Some((*data_rate, *tx_power, *nb_trans)),
                _ => None,
            })
            .collect();
        if let Some(&(dr, power, nb)) = block.last() {
            let dr_ok = dr == 0x0f
                || (region.data_rate(dr).is_some() && self.refuse_dr_above.is_none_or(|m| dr <= m));
            let power_ok = power == 0x0f || power <= region.max_tx_power_index();
            if dr_ok && power_ok && self.adr {
                if dr != 0x0f {
                    self.dr = dr;
                }
                if power != 0x0f {
                    self.tx_power = power;
                }
                self.nb_trans = nb.max(1);
                self.adr_taken += 1;
            } else {
                self.adr_refused += 1;
            }
            for _ in &block {
                self.answers.push(MacCommand::LinkAdrAns {
                    power_ack: power_ok,
                    data_rate_ack: dr_ok,
                    channel_mask_ack: true,
                });
            }
        }
        for c in commands {
            let Received::Known(c) = c else { break };
            match *c {
                DownCommand::RxParamSetupReq {
                    rx1_dr_offset,
                    rx2_data_rate,
                    frequency,
                } => {
                    let dr = region.data_rate(rx2_data_rate);
                    if let Some(d) = dr {
                        rx.rx1_dr_offset = rx1_dr_offset;
                        rx.rx2_datr = d;
                        rx.rx2_frequency = frequency;
                    }
                    self.answers.push(MacCommand::RxParamSetupAns {
                        rx1_dr_offset_ack: dr.is_some(),
                        rx2_data_rate_ack: dr.is_some(),
                        channel_ack: dr.is_some(),
                    });
                }
                DownCommand::RxTimingSetupReq { delay } => {
                    rx.rx1_delay = std::time::Duration::from_secs(u64::from(delay.max(1)));
                    self.answers.push(MacCommand::RxTimingSetupAns);
                }
                DownCommand::DevStatusReq => self.answers.push(MacCommand::DevStatusAns {
                    battery,
                    margin: 10,
                }),
                DownCommand::LinkCheckAns { margin, gateways } => {
                    told.push(Told::LinkCheck { margin, gateways })
                }
                DownCommand::DeviceTimeAns { seconds, fraction } => {
                    told.push(Told::DeviceTime { seconds, fraction })
                }
                DownCommand::NewChannelReq { index, .. } => {
                    self.channels.push(index);
                    self.answers.push(MacCommand::NewChannelAns {
                        data_rate_range_ok: true,
                        channel_frequency_ok: true,
                    });
                }
                DownCommand::LinkAdrReq { .. } => {}
            }
        }
        told
    }
}

/// Time on air of a LoRa frame of `len` PHYPayload bytes (Semtech AN1200.13:
/// 8-symbol preamble, explicit header, CRC, coding rate 4/5, low data rate
/// optimisation at SF11 and SF12 on 125 kHz).
pub fn time_on_air(datr: crate::lorawan::DataRate, len: usize) -> std::time::Duration {
    let sf = f64::from(datr.sf);
    let bw = f64::from(datr.bw_khz) * 1000.0;
    let t_sym = 2f64.powf(sf) / bw;
    let de = if datr.sf >= 11 && datr.bw_khz == 125 {
        1.0
    } else {
        0.0
    };
    let bits = 8.0 * len as f64 - 4.0 * sf + 28.0 + 16.0;
    let n = (bits / (4.0 * (sf - 2.0 * de))).ceil().max(0.0) * 5.0;
    std::time::Duration::from_secs_f64((8.0 + 4.25) * t_sym + (8.0 + n) * t_sym)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::DataRate;

    #[test]
    fn time_on_air_matches_the_calculators() {
        // 13 bytes: 46.3 ms at SF7BW125, 1155.1 ms at SF12BW125 (AN1200.13).
        let ms = |sf, bw, len| time_on_air(DataRate::new(sf, bw).unwrap(), len).as_secs_f64() * 1e3;
        assert!((ms(7, 125, 13) - 46.336).abs() < 0.01, "{}", ms(7, 125, 13));
        assert!(
            (ms(12, 125, 13) - 1155.072).abs() < 0.01,
            "{}",
            ms(12, 125, 13)
        );
        assert!(
            (ms(9, 125, 30) - 226.304).abs() < 0.01,
            "{}",
            ms(9, 125, 30)
        );
    }

    #[test]
    fn without_downlinks_the_mote_asks_then_steps_down() {
        let mut m = MoteMac::new(true, 5);
        for _ in 0..ADR_ACK_LIMIT {
            assert!(!m.uplink(&[]).1);
            m.sent();
        }
        assert!(m.uplink(&[]).1, "ADRACKReq from the 65th uplink");
        for _ in 0..ADR_ACK_DELAY {
            m.sent();
        }
        assert_eq!((m.dr, m.steps_down), (4, 1));
        let region = Region::new(crate::lorawan::region::RegionSettings::new(
            Default::default(),
        ));
        let mut rx = region.rx_defaults();
        m.on_downlink(&[], &region, &mut rx, 200);
        assert!(!m.uplink(&[]).1, "a downlink resets the count");
    }
}
