//! What a simulation reports: exactly which frames the service should
//! publish, what each mote was told and received, so tests can count.

use std::time::Duration;

use super::lmic_mac;
use super::mote::Sample;

/// A frame the service should publish exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub device: String,
    pub fcnt: u32,
    pub epoch: u32,
    pub sample: Sample,
}

#[derive(Debug, Default, Clone)]
pub struct SimReport {
    pub expected: Vec<Expected>,
    pub bad_mic: u64,
    pub replays: u64,
    pub garbage: u64,
    pub duplicates: u64,
    /// Messages or datagrams sent, all gateways together.
    pub copies: u64,
    /// Downlinks the motes accepted, in arrival order.
    pub downlinks: Vec<ReceivedByMote>,
    /// Transmissions the gateways refused (RX1 under `refuse_rx1`).
    pub refused: u64,
    /// Downlinks a mote dropped (MIC, counter, not addressed to any mote).
    pub downlinks_dropped: u64,
    /// Downlinks sent where or when their mote was not listening (not in
    /// its RX1 or RX2 window: another delay, channel or data rate).
    pub downlinks_missed: u64,
    /// JoinRequests sent (each counts once, whatever the gateways).
    pub join_requests: u64,
    /// JoinAccepts the OTAA motes took, in arrival order.
    pub joins: Vec<JoinedByMote>,
    /// JoinAccepts the motes missed on purpose (`lost_join_accepts`).
    pub joins_lost: u64,
    /// Answers to the motes' LinkCheckReq and DeviceTimeReq.
    pub told: Vec<Told>,
    /// Frames no gateway heard (below every gateway's demodulation floor).
    pub lost_on_air: u64,
    /// Time on air of every uplink sent (NbTrans transmissions each).
    pub airtime: Duration,
    /// Each mote's MAC state at the end.
    pub motes: Vec<MoteSummary>,
}

/// An answer the network gave a mote's question.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    pub device: String,
    pub what: lmic_mac::Told,
    /// The GPS time (ns) of the uplink whose window carried it.
    pub uplink_gps_ns: u64,
}

/// Where a mote's MAC layer ended up.
#[derive(Debug, Clone, PartialEq)]
pub struct MoteSummary {
    pub device: String,
    pub dr: u8,
    pub tx_power: u8,
    pub nb_trans: u8,
    pub adr_taken: u32,
    pub adr_refused: u32,
    pub steps_down: u32,
    /// Extra channels NewChannelReqs defined, by index, in order.
    pub channels: Vec<u8>,
    pub rx: crate::lorawan::radio::RxSettings,
}

/// A JoinAccept one mote took.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedByMote {
    pub device: String,
    pub dev_addr: crate::lorawan::DevAddr,
    /// Transmit time minus the JoinRequest's, in µs (5 s in RX1, 6 s in RX2).
    pub delay_us: u32,
    pub frequency: u32,
    pub datr: String,
}

/// A downlink one mote accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedByMote {
    pub device: String,
    pub fcnt: u32,
    /// Confirmed data down: the mote acknowledges it in its next uplink.
    pub confirmed: bool,
    pub ack: bool,
    pub fpending: bool,
    pub fport: Option<u8>,
    pub payload: Vec<u8>,
    /// MAC commands in FOpts.
    pub fopts: Vec<u8>,
    /// Transmit time minus the uplink's, in µs (1 s for RX1, 2 s for RX2;
    /// 0 for a class C downlink sent at once).
    pub delay_us: u32,
    pub frequency: u32,
    pub datr: String,
    /// The mote's report interval after applying it.
    pub interval_s: u32,
}
