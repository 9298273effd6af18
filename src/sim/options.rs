//! What a simulation runs: where its gateways send, how many motes and
//! gateways, at what rate, with which faults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ingest::bridge::WireFormat;
use crate::lorawan::Eui64;

/// Where simulated gateways send.
#[derive(Debug, Clone)]
pub enum Target {
    Udp(SocketAddr),
    /// Basics Station gateways: the service's `ws://host:port`.
    Station(String),
    Mqtt {
        host: String,
        port: u16,
        format: WireFormat,
        prefix: String,
    },
}

/// Probabilities (0..=1) of each fault per frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The frame's MIC is corrupted (the counter is still spent).
    pub bad_mic: f64,
    /// A frame sent earlier by the same mote is sent again.
    pub replay: f64,
    /// A gateway sends bytes that are not a LoRaWAN frame.
    pub garbage: f64,
    /// One gateway forwards the same reception twice.
    pub duplicate: f64,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub devices: usize,
    pub gateways: usize,
    /// Distinct frames per second, all motes together.
    pub rate: f64,
    /// Stop after this many distinct frames...
    pub frames: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub faults: Faults,
    /// A mote reboots (counter back to 0) after this many frames.
    pub reboot_every: Option<u32>,
    /// Counter of each mote's first frame (to continue an earlier run).
    pub start_fcnt: u32,
    /// Every uplink is a confirmed one.
    pub confirmed: bool,
    /// Gateways refuse RX1 transmissions (TOO_LATE), so only RX2 gets through.
    pub refuse_rx1: bool,
    /// After the last uplink, keep taking downlinks this long.
    pub linger: Duration,
    /// Where every mote listens after an uplink (its firmware's settings;
    /// unset ones are its region's defaults). Written into `--write-devices`.
    pub rx_windows: crate::devices::RxWindows,
    /// The motes' band plan: the channels and data rates they send on, and
    /// the windows they listen in.
    pub region: crate::lorawan::region::RegionName,
    /// OTAA motes besides the `devices` ABP ones (`mote::otaa_entries`):
    /// each joins first, and again after a reboot.
    pub otaa_devices: usize,
    /// The LoRaWAN version of the OTAA motes.
    pub mac_version: crate::lorawan::region::MacVersionName,
    /// Each OTAA mote misses this many JoinAccepts before it hears one (as
    /// if out of range): it asks again with a new DevNonce.
    pub lost_join_accepts: u32,
    /// An OTAA mote reboots, and so joins again, after this many frames of
    /// a session (ABP motes follow `reboot_every`).
    pub otaa_rejoin_every: Option<u32>,
    /// The ABP motes are class C: they take downlinks sent at any time on
    /// their RX2 (their entries must say `class: C` to the service).
    pub class_c: bool,
    /// The motes run ADR as LMIC does (ADR bit, ADRACKReq, stepping down,
    /// LinkADRReq taken), each at its own data rate, and a gateway hears a
    /// frame only above its rate's demodulation floor.
    pub adr: bool,
    /// The data rate the motes start at (default: the region's fastest
    /// 125 kHz rate, as the project's sketch sets). Given, the motes keep
    /// their own rate and the link model applies even without ADR.
    pub start_dr: Option<u8>,
    /// Each mote's SNR (dB) at the nearest gateway at full power, by mote
    /// index, cycled (empty: 9.5 dB for all); each further gateway hears it
    /// 4 dB lower, each TX power step 2 dB lower.
    pub link_snr: Vec<f32>,
    /// The motes' firmware refuses data rates above this (LinkADRAns NACK).
    pub refuse_dr_above: Option<u8>,
    /// Every k-th frame of a mote asks LinkCheckReq / DeviceTimeReq.
    pub link_check_every: Option<u32>,
    pub device_time_every: Option<u32>,
    /// Gateways report their GPS time of each uplink (`tmms`, `timeSinceGpsEpoch`).
    pub gateway_time: bool,
    /// A mote sends nothing for this long after an uplink, taking
    /// downlinks meanwhile: its receive windows, compressed (class A: LMIC
    /// never transmits while RX1 or RX2 may still come). Zero: no wait.
    pub class_a_wait: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            devices: 3,
            gateways: 2,
            rate: 5.0,
            frames: None,
            duration: Some(Duration::from_secs(10)),
            seed: 1,
            faults: Faults::default(),
            reboot_every: None,
            start_fcnt: 0,
            confirmed: false,
            refuse_rx1: false,
            rx_windows: Default::default(),
            region: Default::default(),
            otaa_devices: 0,
            mac_version: Default::default(),
            lost_join_accepts: 0,
            otaa_rejoin_every: None,
            class_c: false,
            linger: Duration::ZERO,
            adr: false,
            start_dr: None,
            link_snr: Vec::new(),
            refuse_dr_above: None,
            link_check_every: None,
            device_time_every: None,
            gateway_time: false,
            class_a_wait: Duration::ZERO,
        }
    }
}

/// The EUI of simulated gateway `i`.
pub fn gateway_eui(i: usize) -> Eui64 {
    Eui64::from_u64(0xb827_ebff_fe00_0000 + i as u64 + 1)
}
