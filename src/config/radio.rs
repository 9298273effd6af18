//! The radio side of the configuration: the site's band plan, this service
//! as join server, and class A downlinks (each receive-window setting over
//! the region's default).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The band plan of this site (RP002). A device may name its own
/// (`region:` in the devices file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
#[derive(Default)]
pub struct RegionConfig {
    /// EU868, US915, AU915, AS923, AS923-2, AS923-3, AS923-4, IN865, KR920,
    /// EU433, CN470, RU864.
    pub name: crate::lorawan::region::RegionName,
    /// US915/AU915: the 8-channel sub-band (1..=8) the gateways listen on;
    /// 0 for the usual 2.
    pub sub_band: u8,
    /// AS923/AU915: whether the 400 ms uplink dwell time applies (it
    /// limits payload sizes); unset for the region's usual (AS923: on).
    pub dwell_time400ms: Option<bool>,
    /// EU-like plans: uplink channels beyond the region's default ones
    /// (`{Frequency: 867100000, MinDr: 0, MaxDr: 5}`, at most 13). OTAA
    /// devices get the first five in their JoinAccept's CFList; the MAC
    /// layer sends the rest, and all of them to ABP devices, in NewChannelReqs.
    pub extra_channels: Vec<crate::lorawan::region::ExtraChannel>,
}

impl RegionConfig {
    pub fn settings(&self) -> crate::lorawan::region::RegionSettings {
        let mut s = crate::lorawan::region::RegionSettings::new(self.name);
        if self.sub_band != 0 && self.name.has_sub_bands() {
            s.sub_band = Some(self.sub_band);
        }
        if let (Some(d), true) = (self.dwell_time400ms, self.name.has_dwell_time()) {
            s.dwell_time_400ms = d;
        }
        for (slot, c) in s.extra_channels.iter_mut().zip(&self.extra_channels) {
            *slot = Some(*c);
        }
        s
    }
}

/// This service as the join server of its OTAA devices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct JoinConfig {
    /// The network's NetID, 6 hex digits (000000: experimental/private;
    /// 000013 is The Things Network's).
    pub net_id: String,
    /// Where DevAddrs are drawn from, `26011b00/24` (hex/bits); empty: the
    /// NetID's whole address space.
    pub dev_addr_prefix: String,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            net_id: "000000".into(),
            dev_addr_prefix: String::new(),
        }
    }
}

impl JoinConfig {
    /// The network part of joins (validated at load).
    pub fn network(&self) -> crate::lorawan::otaa::Network {
        let net_id = u32::from_str_radix(&self.net_id, 16).unwrap_or(0) & 0xff_ffff;
        crate::lorawan::otaa::Network {
            net_id,
            prefix: self
                .dev_addr_prefix
                .parse()
                .unwrap_or_else(|_| crate::lorawan::otaa::AddrPrefix::of_net_id(net_id)),
        }
    }
}

/// Class A downlinks. The receive windows and power default to the
/// region's (RP002); set one here to override it for every device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct DownlinkConfig {
    pub enabled: bool,
    /// RX1 opens this long after the uplink (RECEIVE_DELAY1); RX2 one second later.
    #[serde(with = "humantime_serde")]
    pub rx1_delay: Option<Duration>,
    /// RX1DROffset: RX1 answers this many data rates below the uplink's.
    pub rx1_dr_offset: Option<u8>,
    /// RX2 channel (Hz) and data rate, used when a gateway refuses RX1.
    pub rx2_frequency: Option<u32>,
    pub rx2_data_rate: Option<String>,
    /// Transmit power asked of the gateway (dBm EIRP); the region's default when unset.
    pub tx_power: Option<i32>,
    /// Commands waiting per device; a PUT beyond this is refused.
    pub max_queued: usize,
    /// Gateway refusals (both windows count) before a command is dropped.
    pub max_attempts: u32,
    /// A transmission without a gateway acknowledgement by then is taken as lost.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// A class C device that has not acknowledged a confirmed downlink by
    /// then (in an uplink with the ACK bit) is sent it again.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
}

impl Default for DownlinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rx1_delay: None,
            rx1_dr_offset: None,
            rx2_frequency: None,
            rx2_data_rate: None,
            tx_power: None,
            max_queued: 8,
            max_attempts: 3,
            ack_timeout: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
        }
    }
}
impl DownlinkConfig {
    /// The receive windows of a device of `region` that sets none of its
    /// own: the region's, with what is set here over them.
    pub fn rx_defaults(
        &self,
        region: &crate::lorawan::region::Region,
    ) -> crate::lorawan::radio::RxSettings {
        let r = region.rx_defaults();
        crate::lorawan::radio::RxSettings {
            rx1_delay: self.rx1_delay.unwrap_or(r.rx1_delay),
            rx1_dr_offset: self.rx1_dr_offset.unwrap_or(r.rx1_dr_offset),
            rx2_frequency: self.rx2_frequency.unwrap_or(r.rx2_frequency),
            rx2_datr: self
                .rx2_data_rate
                .as_deref()
                .and_then(crate::lorawan::DataRate::parse)
                .unwrap_or(r.rx2_datr),
        }
    }
}

/// The MAC layer: what the service asks of devices (answers to what they
/// ask — LinkCheckReq, DeviceTimeReq, ADRACKReq — are always given).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MacConfig {
    /// Adaptive data rate for devices that set the ADR bit (a device's
    /// `adr: false` in the devices file turns it off for that device).
    pub adr: bool,
    /// dB of SNR kept in reserve by ADR (ChirpStack's default: 10).
    pub installation_margin: f32,
    /// The highest data rate ADR moves a device to (default: the highest
    /// 125 kHz LoRa rate of the region's channels).
    pub max_data_rate: Option<u8>,
    /// How often a device is asked for its battery and link margin
    /// (DevStatusReq); 0 for never.
    #[serde(with = "humantime_serde")]
    pub dev_status_interval: Duration,
}

impl Default for MacConfig {
    fn default() -> Self {
        Self {
            adr: true,
            installation_margin: 10.0,
            max_data_rate: None,
            dev_status_interval: Duration::from_secs(24 * 3600),
        }
    }
}
