//! Downlinks: commands queued by the API ([`queue`]), sent after the
//! device's next uplink (class A), in RX1 or else RX2, or at once on RX2
//! (class C), through the gateway that heard it best ([`scheduler`]), in
//! that gateway's own protocol ([`wire`]: Semtech UDP PULL_RESP / TX_ACK,
//! ChirpStack `command/down` / `event/ack`; Basics Station's `dnmsg` /
//! `dntxed` in `ingest::station`).

pub mod queue;
pub mod scheduler;
pub mod windows;
pub mod wire;

use tokio::sync::mpsc;

use crate::lorawan::radio::Window;
use crate::lorawan::Eui64;

/// One transmission asked of a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRequest {
    /// Names the transmission in the gateway's acknowledgement.
    pub id: u32,
    pub gateway: Eui64,
    pub phy: Vec<u8>,
    /// The uplink's concentrator timestamp (µs): the window counts from it.
    pub uplink_tmst: u32,
    pub window: Window,
    pub power_dbm: i32,
    /// For a Basics Station gateway: what its `dnmsg` needs.
    pub station: Option<StationTx>,
    /// Class C: transmit now, on `window` (the device's RX2); the uplink's
    /// timestamp and the window's delay do not apply.
    pub immediately: bool,
}

/// A Basics Station downlink's windows, in the region's terms: the station
/// itself tries RX1, then RX2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationTx {
    pub dev_eui: Eui64,
    /// The uplink's `xtime` and `rctx`.
    pub xtime: i64,
    pub rctx: i64,
    /// RX1 delay in seconds (JOIN_ACCEPT_DELAY1 for a JoinAccept).
    pub rx_delay: u64,
    /// (DR, Hz); no RX1 when the payload does not fit its rate.
    pub rx1: Option<(u8, u32)>,
    pub rx2: (u8, u32),
}

impl TxRequest {
    /// The concentrator time to transmit at (the counter wraps at 2^32 µs).
    pub fn tmst(&self) -> u32 {
        self.uplink_tmst
            .wrapping_add(self.window.delay.as_micros() as u32)
    }
}

/// A gateway's answer to a [`TxRequest`]: sent, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxAck {
    pub id: u32,
    pub result: Result<(), String>,
}

/// Where transmissions go, by how the uplink came in.
#[derive(Debug, Clone, Default)]
pub struct Transmitters {
    pub udp: Option<mpsc::Sender<TxRequest>>,
    pub mqtt: Option<mpsc::Sender<TxRequest>>,
    pub station: Option<mpsc::Sender<TxRequest>>,
}
