//! Which receive window a class A downlink goes in: RX1 from the uplink's
//! channel and rate through the device's region, RX2 from its settings,
//! each only if the region allows the payload at that window's data rate
//! (RP002's maximum payload tables: a payload is never truncated). Pure: the
//! scheduler gives it the region, the device's windows and the uplink.

use std::time::Duration;

use crate::lorawan::radio::{RxSettings, Window};
use crate::lorawan::region::{MacVersionName, Region};
use crate::lorawan::DataRate;

/// The largest FRMPayload any PHYPayload can carry: 255 bytes less MHDR
/// (1), FHDR without FOpts (7), FPort (1) and MIC (4).
pub const MAX_FRM_PAYLOAD: usize = 242;

/// The windows to try, in order: the first one, and RX2 if the first is
/// RX1 and a gateway's refusal can still fall back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub first: Window,
    pub fallback: Option<Window>,
}

/// Why no window can carry a downlink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {len}-byte payload exceeds the {region} limit at {limits}")]
pub struct TooLong {
    pub len: usize,
    pub region: String,
    pub limits: String,
}

/// Delays of a data downlink (`rx.rx1_delay`, one second more for RX2) or
/// of a join accept (the region's JOIN_ACCEPT_DELAY1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    Data,
    JoinAccept,
}

/// Plan a downlink of `len` payload bytes answering an uplink heard on
/// `up` (frequency, rate; `None` when the gateway did not say).
pub fn plan(
    region: &Region,
    version: MacVersionName,
    rx: &RxSettings,
    timing: Timing,
    up: Option<(u32, DataRate)>,
    len: usize,
) -> Result<Plan, TooLong> {
    let (d1, d2, rx1_offset) = match timing {
        Timing::Data => (
            rx.rx1_delay,
            rx.rx1_delay + Duration::from_secs(1),
            rx.rx1_dr_offset,
        ),
        // A joining device listens with the region's defaults: offset 0.
        Timing::JoinAccept => {
            let (d1, d2) = region.join_accept_delays();
            (d1, d2, 0)
        }
    };
    let rx1 = up.and_then(|(f, dr)| region.rx1(f, dr, rx1_offset, d1));
    let rx2 = Window {
        delay: d2,
        frequency: rx.rx2_frequency,
        datr: rx.rx2_datr,
    };
    let limit = |w: &Window| window_limit(region, version, w);
    let fits = |w: &Window| len <= limit(w);
    match rx1 {
        Some(w1) if fits(&w1) => Ok(Plan {
            first: w1,
            fallback: fits(&rx2).then_some(rx2),
        }),
        _ if fits(&rx2) => Ok(Plan {
            first: rx2,
            fallback: None,
        }),
        _ => {
            let mut limits: Vec<String> = Vec::new();
            for (name, w) in [("RX1", rx1), ("RX2", Some(rx2))] {
                if let Some(w) = w {
                    limits.push(format!("{name} {} ({} bytes)", w.datr, limit(&w)));
                }
            }
            Err(TooLong {
                len,
                region: region.name().to_string(),
                limits: limits.join(" and "),
            })
        }
    }
}

/// The most FOpts and FRMPayload together can carry in window `w`. A rate
/// the region has no table for (a custom RX2) gets LoRaWAN's own bound: no
/// PHYPayload over 255 bytes is ever built.
pub fn window_limit(region: &Region, version: MacVersionName, w: &Window) -> usize {
    region
        .max_payload(version, w.datr)
        .unwrap_or(MAX_FRM_PAYLOAD)
}

/// The most a downlink can carry in `region` at any of its downlink rates
/// (a PUT over it can never be sent).
pub fn region_max_payload(region: &Region, version: MacVersionName) -> usize {
    (0u8..16)
        .filter_map(|dr| region.data_rate(dr))
        .filter_map(|datr| region.max_payload(version, datr))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::region::{RegionName, RegionSettings};

    fn dr(s: &str) -> DataRate {
        DataRate::parse(s).unwrap()
    }

    #[test]
    fn rx1_then_rx2_where_the_payload_fits() {
        let eu = Region::new(RegionSettings::new(RegionName::EU868));
        let rx = eu.rx_defaults();
        let v = MacVersionName::V1_0_3;
        let up = Some((868_100_000, dr("SF7BW125")));
        let p = plan(&eu, v, &rx, Timing::Data, up, 2).unwrap();
        assert_eq!(
            (p.first.delay, p.first.datr),
            (Duration::from_secs(1), dr("SF7BW125"))
        );
        assert_eq!(p.fallback.unwrap().datr, dr("SF12BW125"));
        // 100 bytes: RX1 at SF7 (242) carries it, RX2 at SF12 (51) cannot.
        let p = plan(&eu, v, &rx, Timing::Data, up, 100).unwrap();
        assert_eq!(p.fallback, None);
        // Heard at SF12: neither window can take 100 bytes.
        let e = plan(
            &eu,
            v,
            &rx,
            Timing::Data,
            Some((868_100_000, dr("SF12BW125"))),
            100,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "a 100-byte payload exceeds the EU868 limit at RX1 SF12BW125 (51 bytes) and RX2 SF12BW125 (51 bytes)"
        );
        // No uplink channel known: RX2 only.
        let p = plan(&eu, v, &rx, Timing::Data, None, 2).unwrap();
        assert_eq!((p.first.delay, p.fallback), (Duration::from_secs(2), None));
        assert_eq!(region_max_payload(&eu, v), 242);
        // A custom RX2 rate with no table: LoRaWAN's own bound still holds.
        let custom = RxSettings {
            rx2_datr: dr("SF7BW500"),
            ..rx
        };
        assert!(plan(&eu, v, &custom, Timing::Data, None, 242).is_ok());
        assert!(plan(&eu, v, &custom, Timing::Data, None, 243).is_err());
    }

    #[test]
    fn join_accepts_use_the_join_delays_and_no_offset() {
        let us = Region::new(RegionSettings::new(RegionName::US915));
        let mut rx = us.rx_defaults();
        rx.rx1_dr_offset = 3;
        let p = plan(
            &us,
            MacVersionName::V1_0_3,
            &rx,
            Timing::JoinAccept,
            Some((903_900_000, dr("SF10BW125"))),
            17,
        )
        .unwrap();
        assert_eq!(
            (p.first.delay, p.first.frequency, p.first.datr),
            (Duration::from_secs(5), 923_300_000, dr("SF10BW500"))
        );
        let f = p.fallback.unwrap();
        assert_eq!(
            (f.delay, f.frequency, f.datr),
            (Duration::from_secs(6), 923_300_000, dr("SF12BW500"))
        );
    }
}
