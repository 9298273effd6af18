//! LoRa data rates and the class A receive windows of EU868, the region of
//! the project's gateways (RP002-1.0.x, ABP defaults as LMIC uses them).

use std::time::Duration;

/// A LoRa data rate: spreading factor and bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRate {
    pub sf: u8,
    pub bw_khz: u16,
}

impl DataRate {
    /// From a spreading factor and a bandwidth in kHz, if LoRa has it.
    pub fn new(sf: u32, bw_khz: u32) -> Option<Self> {
        let ok = (5..=12).contains(&sf) && matches!(bw_khz, 125 | 250 | 500);
        ok.then_some(Self {
            sf: sf as u8,
            bw_khz: bw_khz as u16,
        })
    }

    /// From the Semtech packet forwarder's `datr` (`"SF7BW125"`).
    pub fn parse(datr: &str) -> Option<Self> {
        let (sf, bw) = datr.strip_prefix("SF")?.split_once("BW")?;
        Self::new(sf.parse().ok()?, bw.parse().ok()?)
    }
}

impl std::fmt::Display for DataRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SF{}BW{}", self.sf, self.bw_khz)
    }
}

impl serde::Serialize for DataRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// When and how a class A downlink is sent, relative to its uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// After the end of the uplink (the concentrator's `tmst`).
    pub delay: Duration,
    pub frequency: u32,
    pub datr: DataRate,
}

/// EU868 RECEIVE_DELAY1: RX1 opens 1 s after the uplink.
pub const RX1_DELAY: Duration = Duration::from_secs(1);
/// EU868 RX2 defaults: 869.525 MHz at DR0 (SF12BW125), one second after RX1.
pub const RX2_FREQUENCY: u32 = 869_525_000;
pub const RX2_DATR: DataRate = DataRate {
    sf: 12,
    bw_khz: 125,
};

/// Where and when a device listens after an uplink: what the join accept
/// or, for ABP, the firmware sets (LMIC `rxDelay`, `rx1DrOffset`, `dn2Freq`,
/// `dn2Dr`). The scheduler sends only there, and the simulated motes listen
/// only there, so a mismatch between firmware and service shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxSettings {
    /// RECEIVE_DELAY1; RX2 opens one second later.
    pub rx1_delay: Duration,
    pub rx1_dr_offset: u8,
    pub rx2_frequency: u32,
    pub rx2_datr: DataRate,
}

impl RxSettings {
    /// The EU868 defaults (RP002-1.0.x §2.4.7, §2.1.2).
    pub const EU868: RxSettings = RxSettings {
        rx1_delay: RX1_DELAY,
        rx1_dr_offset: 0,
        rx2_frequency: RX2_FREQUENCY,
        rx2_datr: RX2_DATR,
    };

    /// RX2, a second after RX1 (RX1 depends on the region's channels and
    /// rates: [`super::region::Region::rx1`]).
    pub fn rx2(&self) -> Window {
        rx2(self.rx1_delay, self.rx2_frequency, self.rx2_datr)
    }
}

/// RX1 for an uplink heard on `frequency`, sent at `datr` (the uplink's
/// rate with the RX1 offset applied), `delay` after it.
pub fn rx1(frequency: u32, datr: DataRate, delay: Duration) -> Window {
    Window {
        delay,
        frequency,
        datr,
    }
}

/// RX2, one second after RX1.
pub fn rx2(rx1_delay: Duration, frequency: u32, datr: DataRate) -> Window {
    Window {
        delay: rx1_delay + Duration::from_secs(1),
        frequency,
        datr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rates_parse_and_print() {
        let dr = DataRate::parse("SF7BW125").unwrap();
        assert_eq!(dr, DataRate { sf: 7, bw_khz: 125 });
        assert_eq!(dr.to_string(), "SF7BW125");
        assert_eq!(RX2_DATR.to_string(), "SF12BW125");
        for bad in ["SF13BW125", "SF7BW126", "sf7bw125", "SF7", "", "SFxBW125"] {
            assert_eq!(DataRate::parse(bad), None, "{bad}");
        }
        assert_eq!(
            rx2(RX1_DELAY, RX2_FREQUENCY, RX2_DATR).delay,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn rx2_follows_rx1_by_a_second() {
        let s = RxSettings {
            rx1_delay: Duration::from_secs(5),
            ..RxSettings::EU868
        };
        assert_eq!(s.rx2().delay, Duration::from_secs(6));
    }
}
