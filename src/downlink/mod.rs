//! Downlinks: commands queued by the API ([`queue`]), sent after the
//! device's next uplink (class A), in RX1 or else RX2 ([`windows`]), or at
//! once on RX2 (class C), through the gateway that heard it best
//! ([`scheduler`]). Each gateway protocol writes and reads its own
//! downlinks beside its uplinks: `ingest::udp::downlink` (PULL_RESP /
//! TX_ACK), `ingest::bridge::downlink` (`command/down` / `event/ack`),
//! `ingest::station` (`dnmsg` / `dntxed`). A device heard only through a
//! network server's application stream gets its commands through that
//! server's queue instead (`scheduler::network_server`).

pub mod queue;
pub mod scheduler;
pub mod windows;

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
    /// Commands for devices heard on a network server's application stream:
    /// to that server's queue, through the MQTT ingest.
    pub app: Option<mpsc::Sender<AppCommand>>,
}

/// A command handed to the network server in front of its device (ChirpStack
/// v4 queues it and sends it in one of the device's receive windows). The
/// MQTT ingest answers with a [`TxAck`] of the same `id`: `Ok` once the
/// client holds it for the broker (QoS 1), an error if it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCommand {
    pub id: u32,
    pub route: std::sync::Arc<crate::ingest::application::AppRoute>,
    pub dev_eui: Eui64,
    pub fport: u8,
    pub confirmed: bool,
    pub payload: Vec<u8>,
}

/// What a gateway is asked to transmit, as it reads the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmission {
    pub phy: Vec<u8>,
    /// Concentrator time to transmit at (µs).
    pub tmst: u32,
    pub frequency: u32,
    pub datr: crate::lorawan::DataRate,
    /// Sent at once (class C), not at `tmst`.
    pub immediately: bool,
}

#[cfg(test)]
pub(crate) mod testing {
    use super::TxRequest;
    use crate::lorawan::radio::{rx1, RX1_DELAY};
    use crate::lorawan::{DataRate, Eui64};

    /// A class A downlink in RX1, as the tests of each protocol send it.
    pub fn req() -> TxRequest {
        TxRequest {
            id: 7,
            gateway: Eui64::from_u64(0x0016_c001_f153_a14c),
            phy: vec![0x60, 1, 2, 3, 4, 0x20, 0, 0, 1, 2, 3, 4],
            uplink_tmst: u32::MAX - 10,
            window: rx1(868_300_000, DataRate::parse("SF9BW125").unwrap(), RX1_DELAY),
            power_dbm: 14,
            station: None,
            immediately: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ingest::bridge::downlink::{decode_downlink_frame, downlink_frame, Marshaler};
    use crate::ingest::bridge::pb;
    use crate::ingest::udp::downlink::{decode_pull_resp, pull_resp, tx_ack, tx_ack_result};
    use prost::Message;

    use super::testing::req;

    #[test]
    fn gateways_read_what_we_send() {
        let r = req();
        let t = decode_pull_resp(&pull_resp(1, &r)[4..]).unwrap();
        assert_eq!(
            (t.tmst, t.frequency, t.datr, &t.phy),
            (r.tmst(), 868_300_000, r.window.datr, &r.phy)
        );
        for m in [Marshaler::Protobuf, Marshaler::Json] {
            let (id, t2) = decode_downlink_frame(&downlink_frame(&r, m)).unwrap();
            assert_eq!((id, &t2), (7, &t), "{m:?}");
        }
        assert!(decode_pull_resp(b"{\"txpk\":{}}").is_err());
        assert!(decode_downlink_frame(b"{\"items\":[]}").is_err());
        // A negative delay (issue 17: an overflow in debug builds, a wrap
        // in release) is refused.
        let mut pbf =
            pb::DownlinkFrame::decode(&downlink_frame(&r, Marshaler::Protobuf)[..]).unwrap();
        if let Some(pb::timing::Parameters::Delay(pb::DelayTimingInfo { delay: Some(d) })) = pbf
            .items[0]
            .tx_info
            .as_mut()
            .and_then(|t| t.timing.as_mut())
            .and_then(|t| t.parameters.as_mut())
        {
            d.seconds = -1;
        }
        assert!(decode_downlink_frame(&pbf.encode_to_vec()).is_err());
        let d = tx_ack(*b"\x12\x34", r.gateway, "TOO_LATE");
        assert_eq!(tx_ack_result(&d[12..]), Ok(Err("TOO_LATE".into())));
    }
}
