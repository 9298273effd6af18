//! One uplink through the whole decode path, for the service and the
//! benchmark alike: find the device by DevAddr, then the LoRaWAN steps
//! (MIC → counter → decrypt), then the codec. Pure: the caller commits the
//! new counter state and does any I/O.

use std::sync::Arc;

use serde::Serialize;

use crate::codec::{CodecError, DeviceProfile, Reading};
use crate::devices::Registry;
use crate::lorawan::uplink::{mac_commands, MacCommand};
use crate::lorawan::{
    check_counter, parse_uplink, verify_mic, DataFrame, FcntPolicy, FcntState, PayloadBuf,
    UplinkError,
};
use crate::lorawan::{DevAddr, Eui64, FrameError};
use crate::metrics::{Reason, Source};

/// Radio metadata of one reception by one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RxMeta {
    pub gateway: Eui64,
    pub rssi: i32,
    pub snr: f32,
    /// Concentrator timestamp (µs), for a class A downlink's RX1 timing.
    pub tmst: Option<u32>,
    pub frequency: Option<u32>,
    /// The uplink's data rate: RX1 answers at the same one.
    pub datr: Option<crate::lorawan::DataRate>,
    /// The gateway's GPS time of the end of the uplink (ns since the GPS
    /// epoch), when it reports one: what a DeviceTimeAns is best taken from.
    #[serde(skip)]
    pub gps_time_ns: Option<u64>,
    /// When the gateway (or the network server that relayed the frame)
    /// says it received it, Unix ns: the event's origin when plausible
    /// ([`reception_ns`]), so a frame redelivered from a broker's backlog
    /// keeps its own time.
    #[serde(skip)]
    pub time_ns: Option<i64>,
    /// Basics Station gateways: the reception's context, which a downlink
    /// answering it must carry back.
    #[serde(skip)]
    pub station: Option<StationCtx>,
}

/// A Basics Station reception's `xtime` (the station's µs clock, session
/// and radio in its high bits) and `rctx` (the radio that heard it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationCtx {
    pub xtime: i64,
    pub rctx: i64,
}

/// How far back a reported reception time is believed (a broker's
/// backlog after a long outage), and how far ahead (clock skew; a time
/// ahead by less is taken as now, by more as wrong).
const RECEPTION_PAST_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;
const RECEPTION_AHEAD_NS: i64 = 300 * 1_000_000_000;

/// A frame's reception time (Unix ns): the one its gateway or network
/// server reported when plausible, else `now` (a gateway without a set
/// clock reports 1970, or a time far ahead).
pub fn reception_ns(reported: Option<i64>, now: i64) -> i64 {
    match reported {
        Some(t) if t <= now && t >= now - RECEPTION_PAST_NS => t,
        Some(t) if t > now && t <= now + RECEPTION_AHEAD_NS => now,
        _ => now,
    }
}

impl RxMeta {
    /// Whether `self` is a better reception than `other` (SNR first, as a
    /// network server picks the downlink gateway, then RSSI).
    pub fn better_than(&self, other: &RxMeta) -> bool {
        (self.snr, self.rssi) > (other.snr, other.rssi)
    }
}

/// Why one frame was not accepted, with its counter reason.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("no device with DevAddr {0}")]
    UnknownDevAddr(DevAddr),
    #[error("device {device}: {source}")]
    Uplink {
        device: Arc<str>,
        source: UplinkError,
    },
    #[error("device {device} frame {fcnt}: {source}")]
    Codec {
        device: Arc<str>,
        fcnt: u32,
        source: CodecError,
    },
}

impl Rejection {
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::Frame(_) => Reason::BadFrame,
            Rejection::UnknownDevAddr(_) => Reason::UnknownDevAddr,
            Rejection::Uplink {
                source: UplinkError::Mic,
                ..
            } => Reason::Mic,
            Rejection::Uplink {
                source: UplinkError::Replay { .. },
                ..
            } => Reason::Replay,
            Rejection::Uplink {
                source: UplinkError::Retransmission { .. },
                ..
            } => Reason::Retransmission,
            Rejection::Codec { .. } => Reason::Codec,
        }
    }
}

/// An accepted, decoded frame, before de-duplication across gateways.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub device: u32,
    pub fcnt: u32,
    /// Counter state to commit for the device.
    pub next: FcntState,
    pub counter_reset: bool,
    pub fport: Option<u8>,
    pub confirmed: bool,
    pub mac_commands: Vec<MacCommand>,
    /// FCtrl: the device runs ADR, and asks for a downlink (ADRACKReq).
    pub adr: bool,
    pub adr_ack_req: bool,
    /// FCtrl ACK: the device acknowledges our last confirmed downlink.
    pub ack: bool,
    pub unmapped: u32,
    /// The JavaScript codec's warnings.
    pub warnings: u32,
    /// It verified under the device's pending (joined) session: that
    /// session is the device's now.
    pub activates: bool,
}

/// Decode one data uplink into `readings` (reused across frames).
/// `states` holds each device's counter state, indexed by device id;
/// `recv_ms` is the frame's reception time (Unix ms), a codec's `recvTime`.
///
/// A codec failure is reported with the counter state still to commit: the
/// frame was authentic, so its counter is spent even if its payload is bad.
// The rejection comes back by value: boxing it would allocate for every
// refused frame (a flood of bad MICs is when that matters); the accepted
// frame's path does not pay for its size.
#[allow(clippy::result_large_err)]
pub fn decode_frame(
    registry: &Registry,
    states: &[FcntState],
    reset_window: u32,
    phy: &[u8],
    recv_ms: f64,
    readings: &mut Vec<Reading>,
) -> Result<Decoded, (Rejection, Option<(u32, FcntState)>)> {
    let frame = parse_uplink(phy).map_err(|e| (e.into(), None))?;
    decode_parsed(registry, states, reset_window, frame, recv_ms, readings)
}

#[allow(clippy::result_large_err)] // as decode_frame
pub fn decode_parsed(
    registry: &Registry,
    states: &[FcntState],
    reset_window: u32,
    frame: DataFrame<'_>,
    recv_ms: f64,
    readings: &mut Vec<Reading>,
) -> Result<Decoded, (Rejection, Option<(u32, FcntState)>)> {
    // Devices sharing a DevAddr are told apart by the MIC.
    let mut last_err = None;
    let mut buf: PayloadBuf = [0; 255];
    for id in registry.by_addr(frame.dev_addr) {
        let device = registry.get(id);
        // The device's session, or (OTAA) the one its last JoinAccept
        // offered: that one starts a new counter epoch at 0.
        let (crypto, state, policy, activates) = match (&device.crypto, device.pending.as_deref()) {
            (Some(c), _) if device.dev_addr == Some(frame.dev_addr) => {
                (c, states[id as usize], device.fcnt_policy, false)
            }
            (_, Some((addr, c))) if *addr == frame.dev_addr => {
                let epoch = states[id as usize].epoch.wrapping_add(1);
                (c, FcntState { last: None, epoch }, FcntPolicy::Strict, true)
            }
            _ => continue,
        };
        let accepted = match verify_mic(frame, crypto, &state, &mut buf)
            .and_then(|auth| check_counter(auth, &state, policy, reset_window))
        {
            Ok(a) => a,
            Err(source) => {
                last_err = Some(Rejection::Uplink {
                    device: device.name.clone(),
                    source,
                });
                if source == UplinkError::Mic {
                    continue;
                }
                break;
            }
        };
        let plain = accepted.payload();
        let mut macs = mac_commands(frame.fopts());
        if accepted.frame.fport == Some(0) {
            macs.extend(mac_commands(plain));
        }
        let unmapped = match accepted.frame.fport {
            Some(p) if p > 0 => device
                .codec
                .decode(plain, p, &device.variables, recv_ms, readings)
                .map_err(|source| {
                    let e = Rejection::Codec {
                        device: device.name.clone(),
                        fcnt: accepted.fcnt,
                        source,
                    };
                    (e, Some((id, accepted.next)))
                })?,
            _ => {
                readings.clear();
                Default::default()
            }
        };
        return Ok(Decoded {
            device: id,
            fcnt: accepted.fcnt,
            next: accepted.next,
            counter_reset: accepted.reset,
            fport: accepted.frame.fport,
            confirmed: accepted.frame.confirmed,
            mac_commands: macs,
            adr: frame.fctrl & 0x80 != 0,
            adr_ack_req: frame.fctrl & 0x40 != 0,
            ack: frame.fctrl & 0x20 != 0,
            unmapped: unmapped.unmapped,
            warnings: unmapped.warnings,
            activates,
        });
    }
    Err((
        last_err.unwrap_or(Rejection::UnknownDevAddr(frame.dev_addr)),
        None,
    ))
}

impl Uplink {
    /// This frame's place in its device's counter sequence.
    pub fn counter(&self) -> crate::lorawan::FcntState {
        crate::lorawan::FcntState {
            last: Some(self.fcnt),
            epoch: self.epoch,
        }
    }

    /// Fold in another copy's reception: the best one is kept (the
    /// caller counts distinct gateways).
    pub fn add_reception(&mut self, rx: &RxMeta) {
        if rx.better_than(&self.rx) {
            self.rx = *rx;
        }
    }
}

/// A reading-bearing uplink, once de-duplicated: what sinks publish.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub device: Arc<str>,
    pub dev_eui: Eui64,
    pub profile: Arc<DeviceProfile>,
    pub fcnt: u32,
    /// Counter-reset epoch: with DevEUI and fcnt, names the frame uniquely.
    pub epoch: u32,
    pub counter_reset: bool,
    pub fport: Option<u8>,
    pub confirmed: bool,
    pub readings: Vec<Reading>,
    pub mac_commands: Vec<MacCommand>,
    /// FCtrl's ADR and ADRACKReq bits (false when a network server relayed it).
    pub adr: bool,
    pub adr_ack_req: bool,
    /// FCtrl ACK: it acknowledges our last confirmed downlink.
    pub ack: bool,
    /// The best reception, and how many gateways heard the frame.
    pub rx: RxMeta,
    pub gateways: u32,
    pub source: Source,
    /// When the first copy arrived, ns since the Unix epoch.
    pub received_ns: i64,
}

#[cfg(test)]
mod reception_tests {
    use super::reception_ns;

    #[test]
    fn a_reported_reception_time_is_taken_when_plausible() {
        let now = 1_796_523_247_000_000_000i64;
        let hour = 3_600_000_000_000i64;
        // A backlog's frame keeps its own time, up to 30 days back.
        assert_eq!(reception_ns(Some(now - hour), now), now - hour);
        assert_eq!(
            reception_ns(Some(now - 29 * 24 * hour), now),
            now - 29 * 24 * hour
        );
        // Clock skew ahead: now; a clock far off either way, or none: now.
        assert_eq!(reception_ns(Some(now + 1_000_000_000), now), now);
        for wrong in [Some(0), Some(now - 31 * 24 * hour), Some(now + hour), None] {
            assert_eq!(reception_ns(wrong, now), now, "{wrong:?}");
        }
    }
}
