//! A device's receive windows, as its devices-file entry gives them.

use serde::{Deserialize, Deserializer};

use crate::lorawan::radio::RxSettings;
use crate::lorawan::DataRate;

/// A device's receive windows (`rxWindows:` in the devices file): what its
/// firmware sets (for ABP; an OTAA join sets them). Each one left out is the
/// configuration's `Downlink` value, the region's default. The downlink
/// scheduler sends only where these say, so they must match the firmware:
/// `firmware/lorawan-mote/settings.h` is written from the same values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RxWindows {
    /// RECEIVE_DELAY1 in seconds, 1..=15 (RX2 opens a second later).
    #[serde(default, deserialize_with = "rx1_delay")]
    pub rx1_delay: Option<u8>,
    /// RX1DROffset, 0..=5: RX1 answers this many data rates below the uplink.
    #[serde(default, deserialize_with = "rx1_dr_offset")]
    pub rx1_dr_offset: Option<u8>,
    /// RX2 channel in Hz.
    #[serde(default, deserialize_with = "rx2_frequency")]
    pub rx2_frequency: Option<u32>,
    /// RX2 data rate, as the packet forwarder writes it (`SF9BW125`).
    #[serde(default, deserialize_with = "rx2_data_rate")]
    pub rx2_data_rate: Option<DataRate>,
}

impl RxWindows {
    /// These windows over `defaults`.
    pub fn over(&self, defaults: RxSettings) -> RxSettings {
        RxSettings {
            rx1_delay: self.rx1_delay.map_or(defaults.rx1_delay, |s| {
                std::time::Duration::from_secs(s.into())
            }),
            rx1_dr_offset: self.rx1_dr_offset.unwrap_or(defaults.rx1_dr_offset),
            rx2_frequency: self.rx2_frequency.unwrap_or(defaults.rx2_frequency),
            rx2_datr: self.rx2_data_rate.unwrap_or(defaults.rx2_datr),
        }
    }

    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub(super) fn to_json(self) -> serde_json::Value {
        let mut v = serde_json::Map::new();
        if let Some(d) = self.rx1_delay {
            v.insert("rx1Delay".into(), d.into());
        }
        if let Some(o) = self.rx1_dr_offset {
            v.insert("rx1DrOffset".into(), o.into());
        }
        if let Some(f) = self.rx2_frequency {
            v.insert("rx2Frequency".into(), f.into());
        }
        if let Some(dr) = self.rx2_data_rate {
            v.insert("rx2DataRate".into(), dr.to_string().into());
        }
        v.into()
    }
}

fn ranged<'de, D: Deserializer<'de>, T>(
    d: D,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    let v = T::deserialize(d)?;
    if !range.contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{what} must be between {} and {}",
            range.start(),
            range.end()
        )));
    }
    Ok(Some(v))
}
fn rx1_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 1..=15, "rx1Delay (seconds)")
}
fn rx1_dr_offset<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 0..=5, "rx1DrOffset")
}
fn rx2_frequency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 137_000_000..=1_020_000_000, "rx2Frequency (Hz)")
}
fn rx2_data_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataRate>, D::Error> {
    let text = String::deserialize(d)?;
    DataRate::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom("rx2DataRate must be a LoRa data rate like SF9BW125")
    })
}
