//! Counters for everything the uplink path does, and rate-limited logging
//! of rejections: the first of each reason is logged at once, then at most
//! one line per reason every `LOG_EVERY_MS` with the count since.

pub mod exposition;
pub mod latency;

pub use latency::Latency;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// Acks that waited for room in the client's request queue, and acks that
/// could not be sent at all (the ingest task is gone: the broker
/// redelivers those messages to our persistent session). Process-wide,
/// like the MQTT clients they count.
pub static ACKS_DEFERRED: AtomicU64 = AtomicU64::new(0);
pub static ACKS_LOST: AtomicU64 = AtomicU64::new(0);
/// Acks handed back by the pipeline and not yet written to the broker (a
/// gauge: what a kill now would leave for the broker to redeliver).
pub static ACKS_PENDING: AtomicU64 = AtomicU64::new(0);

/// One ack left the client (its PUBACK was written).
pub fn ack_written() {
    let _ = ACKS_PENDING.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
}

const LOG_EVERY_MS: u64 = 10_000;

macro_rules! reasons {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// Why an input was rejected.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason { $($variant),+ }
        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $name),+ }
            }
        }
    };
}

reasons! {
    MalformedJson => "malformed_json",
    MalformedProtobuf => "malformed_protobuf",
    MalformedBase64 => "malformed_base64",
    MalformedUdp => "malformed_udp",
    Oversize => "oversize",
    CrcBad => "crc_bad",
    BadFrame => "bad_frame",
    UnknownDevAddr => "unknown_devaddr",
    UnknownDevEui => "unknown_deveui",
    NoSessionKeys => "no_session_keys",
    Mic => "mic",
    Replay => "replay",
    Retransmission => "retransmission",
    Codec => "codec",
    UnknownTopic => "unknown_topic",
    NotOtaa => "not_otaa",
    JoinEui => "join_eui",
    DevNonce => "dev_nonce",
    JoinRefused => "join_refused",
    StationMessage => "malformed_station",
    GatewayRefused => "gateway_refused",
}

/// One Basics Station gateway, as its metrics show it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StationStats {
    pub connected: bool,
    /// Unix seconds of its last message.
    pub last_seen: u64,
    pub uplinks: u64,
    pub downlinks: u64,
    /// The last WebSocket ping's round trip, ms.
    pub round_trip_ms: Option<f64>,
}

/// Where an uplink came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Udp,
    GatewayMqtt,
    ApplicationMqtt,
    BasicStation,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Udp,
        Source::GatewayMqtt,
        Source::ApplicationMqtt,
        Source::BasicStation,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Udp => "udp",
            Source::GatewayMqtt => "gateway-mqtt",
            Source::ApplicationMqtt => "application-mqtt",
            Source::BasicStation => "basic-station",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    received: [AtomicU64; 4],
    rejected: [AtomicU64; 24],
    last_logged_ms: [AtomicU64; 24],
    logged_count: [AtomicU64; 24],
    pub decoded: AtomicU64,
    pub duplicates: AtomicU64,
    pub counter_resets: AtomicU64,
    pub published: AtomicU64,
    pub unmapped_values: AtomicU64,
    pub mqtt_reconnects: AtomicU64,
    /// Connection attempts that failed before a CONNACK, by reason.
    pub mqtt_connect_failures: [AtomicU64; 4],
    /// JoinRequests answered with a JoinAccept.
    pub joins_accepted: AtomicU64,
    /// Joined sessions the device started using (its first uplink under one).
    pub sessions_activated: AtomicU64,
    /// Streaks of MQTT sessions closed by the broker right after it accepted
    /// them: another client is using our id (see `ingest::mqtt::kicked`).
    pub mqtt_client_id_conflicts: AtomicU64,
    /// The same, for the message-bus client.
    pub bus_client_id_conflicts: AtomicU64,
    /// Registration passes with core-metadata that failed (retried).
    pub registration_errors: AtomicU64,
    /// Items (profiles, devices) core-metadata refused, every pass.
    pub registration_refusals: AtomicU64,
    /// Items refused in the last registration pass (a gauge).
    pub registration_refused: AtomicU64,
    /// 1 once registered with core-metadata (a gauge).
    pub registered: AtomicU64,
    /// Commands that arrived over the message bus.
    pub bus_commands: AtomicU64,
    /// Devices discovery admitted (a provision watcher matched).
    pub devices_discovered: AtomicU64,
    /// Devices EdgeX defines that the devices file defines too (it wins).
    pub device_conflicts: AtomicU64,
    /// Devices whose operating state is DOWN (silent), now.
    pub devices_down: AtomicU64,
    /// Operating-state changes (DOWN and UP).
    pub operating_state_changes: AtomicU64,
    /// Readings of the uplinks published (the `ReadingsSent` telemetry).
    pub readings_published: AtomicU64,
    /// Bus messages we could not read (or answer: no request id).
    pub bus_requests_malformed: AtomicU64,
    /// Reads and writes the EdgeX secret store failed (secure mode).
    pub secret_store_errors: AtomicU64,
    /// Devices refused when core-metadata asked us to validate them.
    pub devices_refused: AtomicU64,
    /// core-metadata device events received.
    pub system_events: AtomicU64,
    /// Message-bus connections lost (or never made).
    pub bus_reconnects: AtomicU64,
    /// Events a NATS JetStream stream already had (`Nats-Msg-Id`): sent
    /// again after a lost connection, stored once.
    pub bus_stream_duplicates: AtomicU64,
    /// Connection attempts that failed before a CONNACK, by reason.
    pub bus_connect_failures: [AtomicU64; 4],
    /// SUBACKs received: how many subscriptions are live (per connection).
    pub mqtt_subacks: AtomicU64,
    /// Events core-data stored (201), or already had (409).
    pub events_delivered: AtomicU64,
    /// Events core-data refused for good (4xx), kept in the dead-letter file.
    pub events_dead_lettered: AtomicU64,
    /// Failed delivery attempts (core-data or the bus down, 5xx, timeouts): retried.
    pub delivery_errors: AtomicU64,
    /// Events refused because the outbox was full (policy `reject`).
    pub outbox_full: AtomicU64,
    /// Undelivered events in the outbox (a gauge).
    pub outbox_depth: AtomicU64,
    /// Commands accepted into the downlink queue.
    pub downlinks_queued: AtomicU64,
    /// Transmissions handed to a gateway (RX1 and RX2 count apart).
    pub downlinks_sent: AtomicU64,
    /// Transmissions a gateway acknowledged as sent.
    pub downlinks_acked: AtomicU64,
    /// Transmissions refused by a gateway, unacknowledged, or impossible
    /// (no gateway address, no timestamp).
    pub downlinks_failed: AtomicU64,
    /// Commands dropped after `Downlink.MaxAttempts` refusals.
    pub downlinks_dropped: AtomicU64,
    /// API requests refused for want of the bearer token.
    pub api_unauthorised: AtomicU64,
    /// API connections closed at accept (`Service.ApiMaxConnections` open).
    pub api_connections_refused: AtomicU64,
    /// Warnings JavaScript codecs returned.
    pub codec_warnings: AtomicU64,
    /// MAC answers sent (LinkCheckAns, DeviceTimeAns) and requests sent
    /// (LinkADRReq, DevStatusReq, RXParamSetupReq, RXTimingSetupReq).
    pub mac_answers: AtomicU64,
    pub mac_requests: AtomicU64,
    /// Requests a device refused, or never answered.
    pub mac_refused: AtomicU64,
    pub mac_unanswered: AtomicU64,
    /// LinkADRReqs a device took.
    pub adr_changes: AtomicU64,
    /// DeviceTimeAns answered from the gateway's GPS time, and from the
    /// service's clock at reception (no plausible gateway time).
    pub device_time_gateway: AtomicU64,
    pub device_time_reception: AtomicU64,
    /// Confirmed downlinks the device acknowledged.
    pub downlinks_confirmed: AtomicU64,
    /// The last DevStatusAns of each device: battery (0..=255) and margin (dB).
    pub dev_status: std::sync::Mutex<std::collections::BTreeMap<std::sync::Arc<str>, (u8, i8)>>,
    /// Basics Station gateways that connected since start, by EUI.
    pub stations: std::sync::Mutex<std::collections::BTreeMap<crate::lorawan::Eui64, StationStats>>,
    /// Commands waiting for their device's next uplink (a gauge).
    pub downlink_queue_depth: AtomicU64,
    /// Uplinks of handed-over devices held while the other edge publishes them.
    pub handover_buffered: AtomicU64,
    /// Held uplinks dropped, oldest first, when a device's buffer was full.
    pub handover_buffer_dropped: AtomicU64,
    /// Held uplinks published when this edge took the devices (over).
    pub handover_replayed: AtomicU64,
    /// Uplinks not published because the other edge had delivered them.
    pub handover_covered: AtomicU64,
    /// Takeovers (provider) and take-backs (customer) done.
    pub handover_takeovers: AtomicU64,
    pub handover_releases: AtomicU64,
    /// Handover calls refused: wrong peer, stale epoch, bad contract.
    pub handover_refused: AtomicU64,
    /// Container takeovers that failed (this edge published instead).
    pub handover_container_failures: AtomicU64,
    /// How long a frame takes from its reception to each step.
    pub latency: Latency,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Metrics {
    pub fn received(&self, source: Source) {
        self.received[source as usize].fetch_add(1, Relaxed);
    }
    pub fn received_count(&self, source: Source) -> u64 {
        self.received[source as usize].load(Relaxed)
    }
    pub fn rejected_count(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }

    /// Count a rejection and log it, rate-limited per reason. `detail` must
    /// never contain key material (callers pass error values whose Display
    /// is key-free by construction).
    pub fn reject(&self, reason: Reason, detail: &dyn std::fmt::Display) {
        let i = reason as usize;
        let total = self.rejected[i].fetch_add(1, Relaxed) + 1;
        let now = now_ms();
        let last = self.last_logged_ms[i].load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= LOG_EVERY_MS)
            && self.last_logged_ms[i]
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            let since = total - self.logged_count[i].swap(total, Relaxed);
            tracing::warn!(
                reason = reason.as_str(),
                total,
                since_last_log = since,
                "rejected input: {detail}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_renders() {
        let m = std::sync::Arc::new(Metrics::default());
        m.reject(Reason::Mic, &"x");
        m.reject(Reason::Mic, &"y");
        m.received(Source::Udp);
        assert_eq!(m.rejected_count(Reason::Mic), 2);
        let text = m.render();
        assert!(
            text.contains("lorawan_inputs_rejected_total{reason=\"mic\"} 2"),
            "{text}"
        );
        assert!(text.contains("lorawan_uplinks_received_total{source=\"udp\"} 1"));
        assert!(Reason::ALL.len() <= 24, "the per-reason arrays hold 24");
    }
}

#[cfg(test)]
mod exposition_tests {
    use super::*;

    #[test]
    fn the_exposition_keeps_the_names_and_adds_the_latencies() {
        let m = std::sync::Arc::new(Metrics::default());
        m.decoded.fetch_add(3, Relaxed);
        m.devices_down.store(2, Relaxed);
        m.dev_status
            .lock()
            .unwrap()
            .insert("mote \"1\"".into(), (200, -3));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        Latency::since(&m.latency.decode, now - 5_000_000);
        Latency::since(&m.latency.decode, now + 1_000_000_000); // ahead: not observed
        let text = m.render();
        for line in [
            "lorawan_uplinks_decoded_total 3",
            "# TYPE lorawan_uplinks_decoded counter",
            "edgex_devices_down 2",
            "lorawan_device_margin_db{device=\"mote \\\"1\\\"\"} -3",
            "lorawan_reception_to_decode_seconds_count 1",
            "edgex_reception_to_acknowledged_seconds_count 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "{line} in:\n{text}"
            );
        }
    }
}
