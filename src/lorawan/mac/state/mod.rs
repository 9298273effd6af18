//! The network's side of the MAC layer for one device, as an I/O-free state
//! machine: an uplink (its MAC commands, ADR bits and radio metadata) goes
//! in, the commands to send in its class A window come out; the scheduler
//! reports which of them a gateway actually sent ([`MacState::on_sent`]),
//! and only those wait for the device's answer.
//!
//! What the device uses is what it acknowledged: a request changes nothing
//! here until its answer says the device took it. A refused request is not
//! repeated as it was: the refused part caps later requests, and ADR backs
//! off for a growing number of frames.

use serde::{Deserialize, Serialize};

use super::adr::{self, Heard, HISTORY};
use super::commands::{DownCommand, MacCommand};

/// Where a device listens after an uplink, as it acknowledged (or as its
/// activation set it): what the downlink scheduler must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RxParams {
    /// RECEIVE_DELAY1 in seconds.
    pub rx1_delay: u8,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    pub rx2_frequency: u32,
}

/// What the network wants of a device (from the configuration and region).
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// ADR on for this device (it must also set the ADR bit).
    pub adr: bool,
    pub installation_margin: f32,
    pub max_dr: u8,
    pub max_tx_power: u8,
    /// The LinkADRReq channel-mask block for the region: (ChMaskCntl, ChMask).
    pub channel_masks: Vec<(u8, u16)>,
    pub rx: RxParams,
    /// Seconds between DevStatusReqs; `None`: never.
    pub dev_status_every: Option<u64>,
    /// The site's extra channels: (index, frequency, min DR, max DR).
    pub extra_channels: Vec<(u8, u32, u8, u8)>,
}

/// A request a gateway sent, waiting for the device's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent<T> {
    pub asked: T,
    /// The uplink whose window carried it.
    pub after_fcnt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdrAsk {
    pub dr: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pending {
    pub adr: Option<Sent<AdrAsk>>,
    pub rx_param: Option<Sent<RxParams>>,
    pub rx_timing: Option<Sent<u8>>,
    pub dev_status: Option<Sent<()>>,
    /// NewChannelReqs, by channel index, in the order sent.
    pub new_channels: Option<Sent<Vec<u8>>>,
}

/// The last DevStatusAns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevStatus {
    /// 0: external power, 1..=254: level, 255: the device cannot tell.
    pub battery: u8,
    /// dB above the demodulation floor at which the device heard us.
    pub margin: i8,
}

/// One device's MAC state: durable with its session, carried by handover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MacState {
    /// The counter epoch (session) this state belongs to.
    pub epoch: u32,
    pub rx: RxParams,
    /// TX power index and NbTrans the device acknowledged (0 and 1 at activation).
    pub tx_power: u8,
    pub nb_trans: u8,
    pub history: Vec<Heard>,
    #[serde(default)]
    pub pending: Pending,
    /// Caps learnt from refusals (`None`: the region's).
    #[serde(default)]
    pub max_dr: Option<u8>,
    #[serde(default)]
    pub max_tx_power: Option<u8>,
    /// LinkADRReqs refused or unanswered in a row, and the frame before
    /// which ADR asks nothing after that.
    #[serde(default)]
    pub adr_failures: u32,
    #[serde(default)]
    pub adr_quiet_until: u32,
    /// RX parameters the device refused: not asked again.
    #[serde(default)]
    pub rx_refused: Option<RxParams>,
    /// Unix seconds: the session started, the last DevStatusReq went out.
    pub started_at: u64,
    #[serde(default)]
    pub dev_status_at: Option<u64>,
    #[serde(default)]
    pub dev_status: Option<DevStatus>,
    /// Extra channels the device holds (its CFList's, or acknowledged),
    /// and those it refused (not asked again).
    #[serde(default)]
    pub channels: Vec<u8>,
    #[serde(default)]
    pub channels_refused: Vec<u8>,
}

/// Where the time of a DeviceTimeAns comes from, and so its accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TimeSource {
    /// The gateway's GPS-disciplined time of the end of the uplink (µs).
    Gateway,
    /// The service's clock when the frame arrived: NTP-level accuracy,
    /// plus the gateway's forwarding latency (milliseconds to tens of them).
    Reception,
}

/// One uplink, as the MAC layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct UplinkMac<'a> {
    pub fcnt: u32,
    /// FCtrl's ADR and ADRACKReq bits.
    pub adr: bool,
    pub adr_ack_req: bool,
    /// The frame's data rate index and spreading factor, when known.
    pub dr: Option<(u8, u8)>,
    pub max_snr: f32,
    pub gateways: u32,
    pub commands: &'a [MacCommand],
    /// Unix seconds now.
    pub now: u64,
    /// Nanoseconds since the GPS epoch at the end of the uplink.
    pub gps_time_ns: u64,
}

/// What to do after an uplink.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Answers first, then requests (answers lose their meaning later).
    pub commands: Vec<DownCommand>,
    /// A downlink must go out even if nothing else is due (ADRACKReq).
    pub must_send: bool,
    /// The DevStatusAns this uplink carried.
    pub status: Option<DevStatus>,
    /// What happened to earlier requests, for logs and counters.
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AdrApplied(AdrAsk),
    AdrRefused {
        asked: AdrAsk,
        power: bool,
        data_rate: bool,
        channel_mask: bool,
    },
    RxParamsApplied(RxParams),
    RxParamsRefused(RxParams),
    ChannelAdded(u8),
    ChannelRefused(u8),
    /// A request the device did not answer in time (lost downlink).
    Unanswered(&'static str),
}

/// Frames after the one a request went out with before it counts as lost:
/// the very next one may have left before the downlink arrived.
const ANSWER_WITHIN: u32 = 2;

/// Seconds between 1970-01-01 and the GPS epoch (1980-01-06), and the
/// leap seconds GPS time is ahead of UTC (since 2017-01-01).
pub const GPS_EPOCH_UNIX: u64 = 315_964_800;
pub const GPS_LEAP_SECONDS: u64 = 18;

/// GPS time (ns since the GPS epoch) of a UTC instant in ns since 1970.
pub fn gps_from_unix_ns(unix_ns: u64) -> u64 {
    unix_ns.saturating_sub((GPS_EPOCH_UNIX - GPS_LEAP_SECONDS) * 1_000_000_000)
}

/// GPS ns of 2020-01-01 and 2100-01-01 (UTC, 18 leap seconds): a gateway
/// time outside them is not GPS time.
const GPS_PLAUSIBLE_NS: std::ops::RangeInclusive<u64> =
    1_261_872_018_000_000_000..=3_786_480_018_000_000_000;

/// The time a DeviceTimeAns carries (GPS ns) and where it came from: the
/// gateway's GPS time of the uplink when it is plausible, else the
/// service's clock at reception. Gateways report other things in the GPS
/// field: a Basics Station with PPS but no fix sends µs since the last PPS
/// pulse (answered as-is, that was 1980-01-06), and some packet forwarders
/// a zero or a free-running counter.
pub fn device_time(gateway_gps_ns: Option<u64>, reception_unix_ns: u64) -> (u64, TimeSource) {
    match gateway_gps_ns.filter(|ns| GPS_PLAUSIBLE_NS.contains(ns)) {
        Some(ns) => (ns, TimeSource::Gateway),
        None => (gps_from_unix_ns(reception_unix_ns), TimeSource::Reception),
    }
}

impl MacState {
    /// The state of a session that just started (activation, join or reboot).
    pub fn new(epoch: u32, rx: RxParams, now: u64) -> Self {
        Self {
            epoch,
            rx,
            tx_power: 0,
            nb_trans: 1,
            history: Vec::new(),
            pending: Pending::default(),
            max_dr: None,
            max_tx_power: None,
            adr_failures: 0,
            adr_quiet_until: 0,
            rx_refused: None,
            started_at: now,
            dev_status_at: None,
            dev_status: None,
            channels: Vec::new(),
            channels_refused: Vec::new(),
        }
    }

    /// An uplink of this device was accepted: read its answers and
    /// questions, and decide what to send in its window.
    pub fn on_uplink(&mut self, up: &UplinkMac<'_>, want: &Wanted) -> Decision {
        let mut d = Decision::default();
        self.read_answers(up, &mut d);
        self.expire(up.fcnt, &mut d);
        for c in up.commands {
            match c {
                MacCommand::LinkCheckReq => {
                    let sf = up.dr.map_or(12, |(_, sf)| sf);
                    let margin = (up.max_snr - adr::required_snr(sf)).clamp(0.0, 254.0);
                    d.commands.push(DownCommand::LinkCheckAns {
                        margin: margin as u8,
                        gateways: up.gateways.min(255) as u8,
                    });
                }
                MacCommand::DeviceTimeReq => {
                    let secs = up.gps_time_ns / 1_000_000_000;
                    let frac = (up.gps_time_ns % 1_000_000_000) * 256 / 1_000_000_000;
                    d.commands.push(DownCommand::DeviceTimeAns {
                        seconds: secs as u32,
                        fraction: frac as u8,
                    });
                }
                _ => {}
            }
        }
        self.history.push(Heard {
            fcnt: up.fcnt,
            max_snr: up.max_snr,
            tx_power: self.tx_power,
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        self.ask(up, want, &mut d);
        d.must_send = up.adr_ack_req || !d.commands.is_empty();
        d
    }

    fn read_answers(&mut self, up: &UplinkMac<'_>, d: &mut Decision) {
        let mut adr_ack: Option<(bool, bool, bool)> = None;
        // NewChannelAns answer the NewChannelReqs in order.
        let channel_answers = up.commands.iter().filter_map(|c| match c {
            MacCommand::NewChannelAns {
                data_rate_range_ok,
                channel_frequency_ok,
            } => Some(*data_rate_range_ok && *channel_frequency_ok),
            _ => None,
        });
        if up
            .commands
            .iter()
            .any(|c| matches!(c, MacCommand::NewChannelAns { .. }))
        {
            if let Some(s) = self.pending.new_channels.take() {
                for (i, ok) in s.asked.into_iter().zip(channel_answers) {
                    if ok {
                        if !self.channels.contains(&i) {
                            self.channels.push(i);
                        }
                        d.outcomes.push(Outcome::ChannelAdded(i));
                    } else {
                        self.channels_refused.push(i);
                        d.outcomes.push(Outcome::ChannelRefused(i));
                    }
                }
            }
        }
        for c in up.commands {
            match *c {
                MacCommand::LinkAdrAns {
                    power_ack,
                    data_rate_ack,
                    channel_mask_ack,
                } => {
                    // One answer per command of a block: all must agree.
                    let (p, r, m) = adr_ack.unwrap_or((true, true, true));
                    adr_ack = Some((p && power_ack, r && data_rate_ack, m && channel_mask_ack));
                }
                MacCommand::RxParamSetupAns {
                    rx1_dr_offset_ack,
                    rx2_data_rate_ack,
                    channel_ack,
                } => {
                    if let Some(s) = self.pending.rx_param.take() {
                        if rx1_dr_offset_ack && rx2_data_rate_ack && channel_ack {
                            self.rx = RxParams {
                                rx1_delay: self.rx.rx1_delay,
                                ..s.asked
                            };
                            d.outcomes.push(Outcome::RxParamsApplied(self.rx));
                        } else {
                            self.rx_refused = Some(s.asked);
                            d.outcomes.push(Outcome::RxParamsRefused(s.asked));
                        }
                    }
                }
                MacCommand::RxTimingSetupAns => {
                    if let Some(s) = self.pending.rx_timing.take() {
                        self.rx.rx1_delay = s.asked;
                        d.outcomes.push(Outcome::RxParamsApplied(self.rx));
                    }
                }
                MacCommand::DevStatusAns { battery, margin } => {
                    self.pending.dev_status = None;
                    let s = DevStatus { battery, margin };
                    self.dev_status = Some(s);
                    d.status = Some(s);
                }
                _ => {}
            }
        }
        let answered = adr_ack.and_then(|a| Some((a, self.pending.adr.take()?)));
        if let Some(((power, data_rate, channel_mask), s)) = answered {
            if power && data_rate && channel_mask {
                self.tx_power = s.asked.tx_power;
                self.nb_trans = s.asked.nb_trans;
                self.adr_failures = 0;
                d.outcomes.push(Outcome::AdrApplied(s.asked));
            } else {
                // Cap what was refused, so the same request is not repeated.
                if !data_rate {
                    self.max_dr = Some(s.asked.dr.saturating_sub(1));
                }
                if !power {
                    self.max_tx_power = Some(s.asked.tx_power.saturating_sub(1));
                }
                self.adr_back_off(up.fcnt);
                d.outcomes.push(Outcome::AdrRefused {
                    asked: s.asked,
                    power,
                    data_rate,
                    channel_mask,
                });
            }
        }
    }

    /// ADR waits HISTORY, 2×, 4×… (at most 32×) frames after each failure.
    fn adr_back_off(&mut self, fcnt: u32) {
        self.adr_failures += 1;
        let wait = (HISTORY as u32) << (self.adr_failures - 1).min(5);
        self.adr_quiet_until = fcnt.saturating_add(wait);
    }

    /// Requests whose answer did not come: the downlink was lost.
    fn expire(&mut self, fcnt: u32, d: &mut Decision) {
        let late = |after: u32| fcnt >= after.saturating_add(ANSWER_WITHIN);
        if self.pending.adr.is_some_and(|s| late(s.after_fcnt)) {
            self.pending.adr = None;
            d.outcomes.push(Outcome::Unanswered("LinkADRReq"));
            // A device that never answers (ADR unsupported, or out of
            // reach of our downlinks) must not be asked at every frame.
            if self.adr_failures < 2 {
                self.adr_failures += 1;
            } else {
                self.adr_back_off(fcnt);
            }
        }
        if self.pending.rx_param.is_some_and(|s| late(s.after_fcnt)) {
            self.pending.rx_param = None;
            d.outcomes.push(Outcome::Unanswered("RXParamSetupReq"));
        }
        if self.pending.rx_timing.is_some_and(|s| late(s.after_fcnt)) {
            self.pending.rx_timing = None;
            d.outcomes.push(Outcome::Unanswered("RXTimingSetupReq"));
        }
        if self
            .pending
            .new_channels
            .as_ref()
            .is_some_and(|s| late(s.after_fcnt))
        {
            self.pending.new_channels = None;
            d.outcomes.push(Outcome::Unanswered("NewChannelReq"));
        }
        if self.pending.dev_status.is_some_and(|s| late(s.after_fcnt)) {
            self.pending.dev_status = None;
            d.outcomes.push(Outcome::Unanswered("DevStatusReq"));
        }
    }

    fn ask(&mut self, up: &UplinkMac<'_>, want: &Wanted, d: &mut Decision) {
        if let (true, true, None, Some((dr, sf))) = (want.adr, up.adr, self.pending.adr, up.dr) {
            if up.fcnt >= self.adr_quiet_until {
                let input = adr::Input {
                    dr,
                    sf,
                    tx_power: self.tx_power,
                    nb_trans: self.nb_trans,
                    max_dr: self.max_dr.map_or(want.max_dr, |m| m.min(want.max_dr)),
                    max_tx_power: self
                        .max_tx_power
                        .map_or(want.max_tx_power, |m| m.min(want.max_tx_power)),
                    installation_margin: want.installation_margin,
                };
                let out = adr::decide(input, &self.history);
                if (out.dr, out.tx_power, out.nb_trans) != (dr, self.tx_power, self.nb_trans) {
                    for &(cntl, mask) in &want.channel_masks {
                        d.commands.push(DownCommand::LinkAdrReq {
                            data_rate: out.dr,
                            tx_power: out.tx_power,
                            channel_mask: mask,
                            channel_mask_control: cntl,
                            nb_trans: out.nb_trans,
                        });
                    }
                }
            }
        }
        let (have, new) = (self.rx, want.rx);
        let params = |r: RxParams| (r.rx1_dr_offset, r.rx2_dr, r.rx2_frequency);
        if params(have) != params(new)
            && self.pending.rx_param.is_none()
            && self.rx_refused.map(params) != Some(params(new))
        {
            d.commands.push(DownCommand::RxParamSetupReq {
                rx1_dr_offset: new.rx1_dr_offset,
                rx2_data_rate: new.rx2_dr,
                frequency: new.rx2_frequency,
            });
        }
        if have.rx1_delay != new.rx1_delay && self.pending.rx_timing.is_none() {
            d.commands.push(DownCommand::RxTimingSetupReq {
                delay: new.rx1_delay,
            });
        }
        if self.pending.new_channels.is_none() {
            for &(index, frequency, min_dr, max_dr) in &want.extra_channels {
                if !self.channels.contains(&index) && !self.channels_refused.contains(&index) {
                    d.commands.push(DownCommand::NewChannelReq {
                        index,
                        frequency,
                        min_dr,
                        max_dr,
                    });
                }
            }
        }
        if let Some(every) = want.dev_status_every {
            let since = self.dev_status_at.unwrap_or(self.started_at);
            if self.pending.dev_status.is_none() && up.now >= since.saturating_add(every) {
                d.commands.push(DownCommand::DevStatusReq);
            }
        }
    }

    /// A gateway sent `commands` in the window of uplink `fcnt`: the
    /// requests among them now wait for their answers.
    pub fn on_sent(&mut self, commands: &[DownCommand], fcnt: u32, now: u64) {
        for c in commands {
            match *c {
                DownCommand::LinkAdrReq {
                    data_rate,
                    tx_power,
                    nb_trans,
                    ..
                } => {
                    self.pending.adr = Some(Sent {
                        asked: AdrAsk {
                            dr: data_rate,
                            tx_power,
                            nb_trans,
                        },
                        after_fcnt: fcnt,
                    })
                }
                DownCommand::RxParamSetupReq {
                    rx1_dr_offset,
                    rx2_data_rate,
                    frequency,
                } => {
                    self.pending.rx_param = Some(Sent {
                        asked: RxParams {
                            rx1_delay: self.rx.rx1_delay,
                            rx1_dr_offset,
                            rx2_dr: rx2_data_rate,
                            rx2_frequency: frequency,
                        },
                        after_fcnt: fcnt,
                    })
                }
                DownCommand::RxTimingSetupReq { delay } => {
                    self.pending.rx_timing = Some(Sent {
                        asked: delay,
                        after_fcnt: fcnt,
                    })
                }
                DownCommand::DevStatusReq => {
                    self.pending.dev_status = Some(Sent {
                        asked: (),
                        after_fcnt: fcnt,
                    });
                    self.dev_status_at = Some(now);
                }
                DownCommand::NewChannelReq { index, .. } => match &mut self.pending.new_channels {
                    Some(s) if s.after_fcnt == fcnt => s.asked.push(index),
                    p => {
                        *p = Some(Sent {
                            asked: vec![index],
                            after_fcnt: fcnt,
                        })
                    }
                },
                DownCommand::LinkCheckAns { .. } | DownCommand::DeviceTimeAns { .. } => {}
            }
        }
    }
}

/// Which commands go in one downlink: all of `commands` in order while
/// they fit in `budget` bytes, answers before requests. A request left out
/// is asked again at the next uplink (it is not pending).
pub fn fit(commands: &[DownCommand], budget: usize) -> Vec<DownCommand> {
    let mut used = 0;
    let mut out = Vec::new();
    for c in commands
        .iter()
        .filter(|c| c.is_answer())
        .chain(commands.iter().filter(|c| !c.is_answer()))
    {
        // A LinkADRReq block is taken whole or not at all.
        if used + c.len() <= budget {
            used += c.len();
            out.push(*c);
        }
    }
    let adr = |c: &&DownCommand| matches!(c, DownCommand::LinkAdrReq { .. });
    let want = commands.iter().filter(adr).count();
    if out.iter().filter(adr).count() != want {
        out.retain(|c| !adr(&c));
    }
    out
}

#[cfg(test)]
mod tests;
