//! Regional parameters (LoRa Alliance RP002-1.0.x) as data: one [`Region`]
//! value per band plan, asked "what is RX1 for this uplink", "what may a
//! downlink at this data rate carry", "what goes in a join accept's CFList".
//! The scheduler and the join server never match on region names.
//!
//! The tables are ChirpStack's (`lrwn::region`, MIT): eleven band plans,
//! maintained against every RP002 revision, with repeater and dwell-time
//! variants. Typing them again would only add transcription errors; what is
//! ours is this facade, which keeps the rest of the service on LoRa data rates
//! as gateways write them (`SF9BW125`) and checks its answers in the tests
//! below against values typed from RP002-1.0.4 itself, not from lrwn.

use std::sync::Arc;
use std::time::Duration;

use lrwn::region::{self as rp, CommonName, DataRateModulation, MacVersion, Revision};

use super::radio::{DataRate, RxSettings, Window};

/// The band plans the service knows, by the names ChirpStack and The Things
/// Stack use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum RegionName {
    #[default]
    EU868,
    US915,
    AU915,
    AS923,
    #[serde(rename = "AS923-2")]
    AS923_2,
    #[serde(rename = "AS923-3")]
    AS923_3,
    #[serde(rename = "AS923-4")]
    AS923_4,
    IN865,
    KR920,
    EU433,
    CN470,
    RU864,
}

impl RegionName {
    pub const ALL: [RegionName; 12] = [
        Self::EU868,
        Self::US915,
        Self::AU915,
        Self::AS923,
        Self::AS923_2,
        Self::AS923_3,
        Self::AS923_4,
        Self::IN865,
        Self::KR920,
        Self::EU433,
        Self::CN470,
        Self::RU864,
    ];

    fn common_name(self) -> CommonName {
        match self {
            Self::EU868 => CommonName::EU868,
            Self::US915 => CommonName::US915,
            Self::AU915 => CommonName::AU915,
            Self::AS923 => CommonName::AS923,
            Self::AS923_2 => CommonName::AS923_2,
            Self::AS923_3 => CommonName::AS923_3,
            Self::AS923_4 => CommonName::AS923_4,
            Self::IN865 => CommonName::IN865,
            Self::KR920 => CommonName::KR920,
            Self::EU433 => CommonName::EU433,
            Self::CN470 => CommonName::CN470,
            Self::RU864 => CommonName::RU864,
        }
    }

    /// US915 and AU915: 64 + 8 uplink channels, of which a gateway hears one
    /// sub-band of 8 + 1.
    pub fn has_sub_bands(self) -> bool {
        matches!(self, Self::US915 | Self::AU915)
    }

    /// AS923 and AU915 limit uplinks to 400 ms where the law says so.
    pub fn has_dwell_time(self) -> bool {
        matches!(
            self,
            Self::AS923 | Self::AS923_2 | Self::AS923_3 | Self::AS923_4 | Self::AU915
        )
    }
}

impl std::fmt::Display for RegionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_yaml_ng::to_value(self).expect("unit variant");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

/// The LoRaWAN MAC version a device speaks (what changes: join nonces,
/// payload tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum MacVersionName {
    #[serde(rename = "1.0.2")]
    V1_0_2,
    #[default]
    #[serde(rename = "1.0.3")]
    V1_0_3,
    #[serde(rename = "1.0.4")]
    V1_0_4,
}

impl MacVersionName {
    fn lrwn(self) -> MacVersion {
        match self {
            Self::V1_0_2 => MacVersion::LORAWAN_1_0_2,
            Self::V1_0_3 => MacVersion::LORAWAN_1_0_3,
            Self::V1_0_4 => MacVersion::LORAWAN_1_0_4,
        }
    }
}

/// An uplink channel a site adds to its region's default ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExtraChannel {
    /// Hz.
    pub frequency: u32,
    pub min_dr: u8,
    pub max_dr: u8,
}

/// At most this many extra channels (EU-like plans have 16, 3 of them default).
pub const MAX_EXTRA_CHANNELS: usize = 13;

/// How a region is set up at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionSettings {
    pub name: RegionName,
    /// US915/AU915: the 8-channel sub-band (1..=8) the gateways listen to.
    pub sub_band: Option<u8>,
    /// AS923/AU915: the 400 ms uplink dwell time applies.
    pub dwell_time_400ms: bool,
    /// EU-like plans: channels beyond the default ones, in order (the
    /// first five with DR0–5 go in the JoinAccept's CFList).
    pub extra_channels: [Option<ExtraChannel>; MAX_EXTRA_CHANNELS],
}

impl RegionSettings {
    pub fn new(name: RegionName) -> Self {
        Self {
            name,
            // ChirpStack's and TTS's default for US915/AU915: FSB 2.
            sub_band: name.has_sub_bands().then_some(2),
            extra_channels: [None; MAX_EXTRA_CHANNELS],
            // AS923 networks apply it by default (RP002 §2.7.1: UplinkDwellTime = 1).
            dwell_time_400ms: matches!(
                name,
                RegionName::AS923 | RegionName::AS923_2 | RegionName::AS923_3 | RegionName::AS923_4
            ),
        }
    }
}

/// One band plan, built once at start and shared.
#[derive(Clone)]
pub struct Region {
    pub settings: RegionSettings,
    inner: Arc<dyn rp::Region + Send + Sync>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Region({:?})", self.settings)
    }
}

impl PartialEq for Region {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Region {
    /// The region with `settings`; extra channels the plan cannot take
    /// (US-like plans, a frequency outside the band) are an error naming
    /// the channel.
    pub fn try_new(settings: RegionSettings) -> Result<Self, String> {
        let mut r = Self::new(RegionSettings {
            extra_channels: [None; MAX_EXTRA_CHANNELS],
            ..settings
        });
        let inner = Arc::get_mut(&mut r.inner).expect("not shared yet");
        for c in settings.extra_channels.iter().flatten() {
            inner
                .add_channel(c.frequency, c.min_dr, c.max_dr)
                .map_err(|e| format!("extra channel {} Hz: {e}", c.frequency))?;
        }
        r.settings = settings;
        Ok(r)
    }

    pub fn new(settings: RegionSettings) -> Self {
        if settings.extra_channels.iter().any(Option::is_some) {
            return Self::try_new(settings).expect("extra channels validated at load");
        }
        let mut inner = rp::get(
            settings.name.common_name(),
            false,
            settings.dwell_time_400ms,
        );
        if let (true, Some(band)) = (settings.name.has_sub_bands(), settings.sub_band) {
            // Channels 8(b-1)..8b at 125 kHz, and 64 + (b-1) at 500 kHz.
            let band = usize::from(band.clamp(1, 8) - 1);
            for ch in inner.get_uplink_channel_indices() {
                let on = (ch < 64 && ch / 8 == band) || ch == 64 + band;
                if !on {
                    let _ = inner.disable_uplink_channel_index(ch);
                }
            }
        }
        Self {
            settings,
            inner: Arc::from(inner),
        }
    }

    pub fn name(&self) -> RegionName {
        self.settings.name
    }

    /// The LoRa data rate of index `dr`; `None` for FSK, LR-FHSS and RFU
    /// indices (not supported here).
    pub fn data_rate(&self, dr: u8) -> Option<DataRate> {
        match self.inner.get_data_rate(dr).ok()? {
            DataRateModulation::Lora(l) => {
                DataRate::new(u32::from(l.spreading_factor), l.bandwidth / 1000)
            }
            _ => None,
        }
    }

    /// The index of a LoRa data rate, as an uplink (`uplink`) or a downlink
    /// uses it (US915's SF12BW500 is a downlink rate only).
    pub fn dr_index(&self, datr: DataRate, uplink: bool) -> Option<u8> {
        let m = DataRateModulation::Lora(rp::LoraDataRate {
            spreading_factor: datr.sf,
            bandwidth: u32::from(datr.bw_khz) * 1000,
            coding_rate: "4/5".into(),
        });
        self.inner.get_data_rate_index(uplink, &m).ok()
    }

    /// The region's receive windows for a device that sets none of its own.
    pub fn rx_defaults(&self) -> RxSettings {
        let d = self.inner.get_defaults();
        RxSettings {
            rx1_delay: d.rx1_delay,
            rx1_dr_offset: 0,
            rx2_frequency: d.rx2_frequency,
            rx2_datr: self.data_rate(d.rx2_dr).expect("RX2 defaults are LoRa"),
        }
    }

    /// JOIN_ACCEPT_DELAY1 and 2.
    pub fn join_accept_delays(&self) -> (Duration, Duration) {
        let d = self.inner.get_defaults();
        (d.join_accept_delay1, d.join_accept_delay2)
    }

    /// RX1 for an uplink heard on `frequency` at `datr`: the region's
    /// downlink channel for it and the uplink's rate lowered by the offset,
    /// `delay` after the uplink. `None` when the uplink is not on a channel
    /// or at a rate of this region.
    pub fn rx1(
        &self,
        frequency: u32,
        datr: DataRate,
        offset: u8,
        delay: Duration,
    ) -> Option<Window> {
        let up = self.dr_index(datr, true)?;
        let dr = self
            .inner
            .get_rx1_data_rate_index(up, usize::from(offset))
            .ok()?;
        Some(Window {
            delay,
            frequency: self
                .inner
                .get_rx1_frequency_for_uplink_frequency(frequency)
                .ok()?,
            datr: self.data_rate(dr)?,
        })
    }

    /// The largest FRMPayload a downlink at `datr` may carry with no FOpts
    /// (N of RP002's tables), for a device of `version`.
    pub fn max_payload(&self, version: MacVersionName, datr: DataRate) -> Option<usize> {
        let dr = self.dr_index(datr, false)?;
        self.inner
            .get_max_payload_size(version.lrwn(), Revision::Latest, dr)
            .ok()
            .map(|m| m.n)
    }

    /// The join accept's CFList: extra channels (EU-like plans) or the
    /// channel mask of the sub-band (US915/AU915), as its 16 bytes.
    pub fn cf_list(&self, version: MacVersionName) -> Option<[u8; 16]> {
        self.inner.get_cf_list(version.lrwn())?.to_bytes().ok()
    }

    /// Downlink transmit power (EIRP, dBm) for `frequency`.
    pub fn downlink_power(&self, frequency: u32) -> i32 {
        self.inner.get_downlink_tx_power_eirp(frequency) as i32
    }

    /// The highest TX power index of the region (its lowest power).
    pub fn max_tx_power_index(&self) -> u8 {
        (0..16u8)
            .take_while(|i| self.inner.get_tx_power_offset(usize::from(*i)).is_ok())
            .last()
            .unwrap_or(0)
    }

    /// The highest uplink data rate of the enabled channels at 125 kHz:
    /// where ADR stops (faster rates need wider channels, not every
    /// gateway hears them).
    pub fn max_adr_dr(&self) -> u8 {
        self.uplink_channels()
            .iter()
            .flat_map(|&(_, min, max)| min..=max)
            .filter(|dr| self.data_rate(*dr).is_some_and(|d| d.bw_khz == 125))
            .max()
            .unwrap_or(0)
    }

    /// The channel-mask part of a LinkADRReq block that leaves the device
    /// on this site's channels: (ChMaskCntl, ChMask) per command.
    /// EU-like plans: ChMaskCntl 6, every defined channel on (the device
    /// keeps the channels its firmware or CFList gave it). US915/AU915: with
    /// a sub-band, ChMaskCntl 7 (all 125 kHz channels off, the sub-band's
    /// 500 kHz channel on), then the sub-band's eight channels; without,
    /// ChMaskCntl 6 (all on).
    pub fn adr_channel_masks(&self) -> Vec<(u8, u16)> {
        match (self.settings.name.has_sub_bands(), self.settings.sub_band) {
            (true, Some(b)) => {
                let b = b.clamp(1, 8) - 1;
                vec![(7, 1 << b), (b / 2, 0x00ff << (8 * u16::from(b % 2)))]
            }
            (true, None) => vec![(6, 0x00ff)],
            (false, _) => {
                let mask = self
                    .inner
                    .get_enabled_uplink_channel_indices()
                    .into_iter()
                    .filter(|i| *i < 16)
                    .fold(0u16, |m, i| m | 1 << i);
                vec![(6, mask)]
            }
        }
    }

    /// The site's extra channels as a device holds them: (channel index,
    /// frequency, min DR, max DR).
    pub fn extra_channels(&self) -> Vec<(u8, u32, u8, u8)> {
        self.inner
            .get_user_defined_uplink_channel_indices()
            .into_iter()
            .filter_map(|i| {
                let c = self.inner.get_uplink_channel(i).ok()?;
                Some((i as u8, c.frequency, c.min_dr, c.max_dr))
            })
            .collect()
    }

    /// The extra channels a JoinAccept's CFList gives a device of `version`.
    pub fn cf_list_channels(&self, version: MacVersionName) -> Vec<u8> {
        match self.inner.get_cf_list(version.lrwn()) {
            Some(lrwn::CFList::Channels(chans)) => {
                let freqs: Vec<u32> = chans.iter().copied().filter(|f| *f != 0).collect();
                self.extra_channels()
                    .into_iter()
                    .filter(|(_, f, _, _)| freqs.contains(f))
                    .map(|(i, ..)| i)
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The data-rate table as a Basics Station's `router_config` wants it:
    /// (SF, bandwidth kHz, downlink only) per index; SF 0 for FSK, -1 for
    /// an index the region does not define.
    pub fn station_dr_table(&self) -> [(i32, u32, u8); 16] {
        let mut t = [(-1, 0, 0); 16];
        for (i, slot) in t.iter_mut().enumerate() {
            let dr = i as u8;
            *slot = match self.inner.get_data_rate(dr) {
                Ok(DataRateModulation::Lora(l)) => {
                    let up = self
                        .inner
                        .get_data_rate_index(true, &DataRateModulation::Lora(l.clone()))
                        .is_ok_and(|i| i == dr);
                    (
                        i32::from(l.spreading_factor),
                        l.bandwidth / 1000,
                        u8::from(!up),
                    )
                }
                Ok(DataRateModulation::Fsk(_)) => (0, 0, 0),
                // LR-FHSS and undefined indices: nothing a station can use.
                _ => (-1, 0, 0),
            };
        }
        t
    }

    /// The band's frequency range (Hz), for a station's transmitter.
    pub fn frequency_range(&self) -> (u32, u32) {
        match self.settings.name {
            RegionName::EU868 => (863_000_000, 870_000_000),
            RegionName::US915 => (902_000_000, 928_000_000),
            RegionName::AU915 => (915_000_000, 928_000_000),
            RegionName::CN470 => (470_000_000, 510_000_000),
            RegionName::KR920 => (920_900_000, 923_300_000),
            RegionName::IN865 => (865_000_000, 867_000_000),
            RegionName::EU433 => (433_175_000, 434_665_000),
            RegionName::RU864 => (864_000_000, 870_000_000),
            // AS923-1..4 share 915–928 MHz.
            _ => (915_000_000, 928_000_000),
        }
    }

    /// The enabled uplink channels: (frequency, min DR, max DR).
    pub fn uplink_channels(&self) -> Vec<(u32, u8, u8)> {
        self.inner
            .get_enabled_uplink_channel_indices()
            .into_iter()
            .filter_map(|i| self.inner.get_uplink_channel(i).ok())
            .map(|c| (c.frequency, c.min_dr, c.max_dr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Values typed from LoRa Alliance RP002-1.0.4 (Regional Parameters),
    //! §2.4 (EU868), §2.5 (US915), §2.7 (AU915), §2.8 (CN470 not checked),
    //! §2.9 (AS923), §2.10 (KR920), §2.11 (IN865): not from lrwn.
    use super::*;

    fn dr(s: &str) -> DataRate {
        DataRate::parse(s).unwrap()
    }
    fn region(n: RegionName) -> Region {
        Region::new(RegionSettings::new(n))
    }

    #[test]
    fn extra_channels_go_to_the_cflist_five_at_most() {
        let mut s = RegionSettings::new(RegionName::EU868);
        let freqs = [
            867_100_000,
            867_300_000,
            867_500_000,
            867_700_000,
            867_900_000,
            868_800_000,
        ];
        for (slot, frequency) in s.extra_channels.iter_mut().zip(freqs) {
            *slot = Some(ExtraChannel {
                frequency,
                min_dr: 0,
                max_dr: 5,
            });
        }
        let eu = Region::try_new(s).unwrap();
        let extra = eu.extra_channels();
        assert_eq!(extra.len(), 6);
        assert_eq!(extra[0], (3, 867_100_000, 0, 5));
        assert_eq!(extra[5], (8, 868_800_000, 0, 5));
        assert_eq!(eu.cf_list_channels(MacVersionName::V1_0_3), [3, 4, 5, 6, 7]);
        // US-like plans take no extra channels: a clear error.
        let mut us = RegionSettings::new(RegionName::US915);
        us.extra_channels[0] = s.extra_channels[0];
        assert!(Region::try_new(us).unwrap_err().contains("867100000"));
    }

    #[test]
    fn adr_limits_and_channel_masks() {
        // RP002: EU868 TXPower 0..=7; US915 0..=10 (RP002-1.0.3 adds
        // 11..=14, which lrwn does not list: ADR asks no lower than it
        // knows); DR5 (SF7BW125) and DR3.
        let eu = region(RegionName::EU868);
        assert_eq!((eu.max_tx_power_index(), eu.max_adr_dr()), (7, 5));
        assert_eq!(eu.adr_channel_masks(), vec![(6, 0b111)]);
        let us = Region::new(RegionSettings {
            sub_band: Some(2),
            ..RegionSettings::new(RegionName::US915)
        });
        assert_eq!((us.max_tx_power_index(), us.max_adr_dr()), (10, 3));
        // Sub-band 2: channels 8..=15 (block 0, high byte) and 65.
        assert_eq!(us.adr_channel_masks(), vec![(7, 0b10), (0, 0xff00)]);
        let us3 = Region::new(RegionSettings {
            sub_band: Some(3),
            ..RegionSettings::new(RegionName::US915)
        });
        assert_eq!(us3.adr_channel_masks(), vec![(7, 0b100), (1, 0x00ff)]);
    }

    #[test]
    fn data_rate_tables() {
        type Rates<'a> = &'a [(u8, Option<&'a str>)];
        let cases: &[(RegionName, Rates)] = &[
            (
                RegionName::EU868,
                &[
                    (0, Some("SF12BW125")),
                    (3, Some("SF9BW125")),
                    (5, Some("SF7BW125")),
                    (6, Some("SF7BW250")),
                    (7, None),
                ],
            ),
            (
                RegionName::US915,
                &[
                    (0, Some("SF10BW125")),
                    (3, Some("SF7BW125")),
                    (4, Some("SF8BW500")),
                    (5, None),
                    (8, Some("SF12BW500")),
                    (13, Some("SF7BW500")),
                ],
            ),
            (
                RegionName::AU915,
                &[
                    (0, Some("SF12BW125")),
                    (5, Some("SF7BW125")),
                    (6, Some("SF8BW500")),
                    (8, Some("SF12BW500")),
                    (13, Some("SF7BW500")),
                ],
            ),
            (
                RegionName::AS923,
                &[
                    (0, Some("SF12BW125")),
                    (2, Some("SF10BW125")),
                    (6, Some("SF7BW250")),
                    (7, None),
                ],
            ),
            (
                RegionName::KR920,
                &[(0, Some("SF12BW125")), (5, Some("SF7BW125"))],
            ),
            (
                RegionName::IN865,
                &[(0, Some("SF12BW125")), (5, Some("SF7BW125")), (7, None)],
            ),
        ];
        for (name, rows) in cases {
            let r = region(*name);
            for (i, want) in rows.iter() {
                assert_eq!(r.data_rate(*i), want.map(dr), "{name} DR{i}");
            }
        }
        // A 500 kHz SF12 is a US915 downlink rate, not an uplink one.
        let us = region(RegionName::US915);
        assert_eq!(us.dr_index(dr("SF12BW500"), false), Some(8));
        assert_eq!(us.dr_index(dr("SF12BW500"), true), None);
    }

    #[test]
    fn receive_window_defaults() {
        // (region, RX2 frequency, RX2 rate, JOIN_ACCEPT_DELAY1)
        let cases = [
            (RegionName::EU868, 869_525_000, "SF12BW125"),
            (RegionName::US915, 923_300_000, "SF12BW500"),
            (RegionName::AU915, 923_300_000, "SF12BW500"),
            (RegionName::AS923, 923_200_000, "SF10BW125"),
            (RegionName::AS923_2, 921_400_000, "SF10BW125"),
            (RegionName::AS923_3, 916_600_000, "SF10BW125"),
            (RegionName::AS923_4, 917_300_000, "SF10BW125"),
            (RegionName::KR920, 921_900_000, "SF12BW125"),
            (RegionName::IN865, 866_550_000, "SF10BW125"),
        ];
        for (name, freq, datr) in cases {
            let d = region(name).rx_defaults();
            assert_eq!((d.rx2_frequency, d.rx2_datr), (freq, dr(datr)), "{name}");
            assert_eq!(d.rx1_delay, Duration::from_secs(1), "{name} RECEIVE_DELAY1");
            assert_eq!(
                region(name).join_accept_delays(),
                (Duration::from_secs(5), Duration::from_secs(6)),
                "{name}"
            );
        }
    }

    #[test]
    fn rx1_channel_and_rate() {
        let s = Duration::from_secs(1);
        let eu = region(RegionName::EU868);
        let w = eu.rx1(868_300_000, dr("SF7BW125"), 2, s).unwrap();
        assert_eq!((w.frequency, w.datr), (868_300_000, dr("SF9BW125")));
        assert_eq!(
            eu.rx1(868_100_000, dr("SF11BW125"), 5, s).unwrap().datr,
            dr("SF12BW125")
        );
        // US915: uplink channel n → downlink channel n mod 8 (923.3 + 0.6k MHz);
        // DR0..DR3 answer at DR10..DR13, DR4 at DR13 (§2.5.7).
        let us = region(RegionName::US915);
        let w = us.rx1(903_900_000, dr("SF10BW125"), 0, s).unwrap(); // channel 8
        assert_eq!((w.frequency, w.datr), (923_300_000, dr("SF10BW500")));
        let w = us.rx1(904_100_000, dr("SF7BW125"), 0, s).unwrap(); // channel 9
        assert_eq!((w.frequency, w.datr), (923_900_000, dr("SF7BW500")));
        let w = us.rx1(904_600_000, dr("SF8BW500"), 0, s).unwrap(); // channel 65
        assert_eq!((w.frequency, w.datr), (923_900_000, dr("SF7BW500")));
        assert_eq!(
            us.rx1(904_100_000, dr("SF7BW125"), 3, s).unwrap().datr,
            dr("SF10BW500")
        );
        // Not a channel of the region: no RX1.
        assert_eq!(us.rx1(868_100_000, dr("SF7BW125"), 0, s), None);
        // AU915: uplink 915.2 + 0.2n, downlink 923.3 + 0.6(n mod 8); DR5 → DR13.
        let au = region(RegionName::AU915);
        let w = au.rx1(916_800_000, dr("SF7BW125"), 0, s).unwrap(); // channel 8
        assert_eq!((w.frequency, w.datr), (923_300_000, dr("SF7BW500")));
    }

    #[test]
    fn downlink_payload_limits() {
        let v = MacVersionName::V1_0_3;
        // EU868 (not repeater compatible): DR0-2 51, DR3 115, DR4-7 242 bytes.
        let eu = region(RegionName::EU868);
        for (datr, n) in [
            ("SF12BW125", 51),
            ("SF10BW125", 51),
            ("SF9BW125", 115),
            ("SF7BW125", 242),
        ] {
            assert_eq!(eu.max_payload(v, dr(datr)), Some(n), "EU868 {datr}");
        }
        // US915 downlinks: DR8 53, DR9 129, DR10-13 242.
        let us = region(RegionName::US915);
        for (datr, n) in [
            ("SF12BW500", 53),
            ("SF11BW500", 129),
            ("SF10BW500", 242),
            ("SF7BW500", 242),
        ] {
            assert_eq!(us.max_payload(v, dr(datr)), Some(n), "US915 {datr}");
        }
        // AS923 with the 400 ms dwell time: DR2 11, DR3 53, DR4 125, DR5 242.
        let as923 = region(RegionName::AS923);
        assert!(as923.settings.dwell_time_400ms);
        for (datr, n) in [
            ("SF10BW125", 11),
            ("SF9BW125", 53),
            ("SF8BW125", 125),
            ("SF7BW125", 242),
        ] {
            assert_eq!(as923.max_payload(v, dr(datr)), Some(n), "AS923 {datr}");
        }
    }

    #[test]
    fn cflists_and_channels() {
        // EU868 has no channels beyond the three defaults unless configured.
        assert_eq!(
            region(RegionName::EU868).cf_list(MacVersionName::V1_0_3),
            None
        );
        let eu = region(RegionName::EU868).uplink_channels();
        let f: Vec<u32> = eu.iter().map(|c| c.0).collect();
        assert_eq!(f, [868_100_000, 868_300_000, 868_500_000]);
        // US915 FSB 2: channels 8-15 (903.9..905.3 MHz) and 65 (904.6 MHz, 500 kHz).
        let us = region(RegionName::US915).uplink_channels();
        let f: Vec<u32> = us.iter().map(|c| c.0).collect();
        assert_eq!(
            f,
            [
                903_900_000,
                904_100_000,
                904_300_000,
                904_500_000,
                904_700_000,
                904_900_000,
                905_100_000,
                905_300_000,
                904_600_000
            ]
        );
        // KR920 and IN865 defaults (§2.10.2, §2.11.2).
        let f: Vec<u32> = region(RegionName::KR920)
            .uplink_channels()
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(f, [922_100_000, 922_300_000, 922_500_000]);
        let f: Vec<u32> = region(RegionName::IN865)
            .uplink_channels()
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(f, [865_062_500, 865_402_500, 865_985_000]);
    }

    #[test]
    fn names_read_as_users_write_them() {
        let n: RegionName = serde_yaml_ng::from_str("AS923-2").unwrap();
        assert_eq!(n, RegionName::AS923_2);
        assert_eq!(RegionName::AS923_2.to_string(), "AS923-2");
        assert!(serde_yaml_ng::from_str::<RegionName>("EU869").is_err());
        let v: MacVersionName = serde_yaml_ng::from_str("\"1.0.4\"").unwrap();
        assert_eq!(v, MacVersionName::V1_0_4);
    }
}
