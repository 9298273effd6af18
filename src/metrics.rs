//! Counters for everything the uplink path does, and rate-limited logging
//! of rejections: the first of each reason is logged at once, then at most
//! one line per reason every `LOG_EVERY_MS` with the count since.

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
    /// them: another client is using our id (see `ingest::kicked`).
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

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "# TYPE lorawan_uplinks_received_total counter");
        for src in Source::ALL {
            let _ = writeln!(
                s,
                "lorawan_uplinks_received_total{{source=\"{}\"}} {}",
                src.as_str(),
                self.received_count(src)
            );
        }
        for (name, counts) in [
            (
                "lorawan_mqtt_connect_failures_total",
                &self.mqtt_connect_failures,
            ),
            (
                "edgex_bus_connect_failures_total",
                &self.bus_connect_failures,
            ),
        ] {
            let _ = writeln!(s, "# TYPE {name} counter");
            for f in crate::ingest::mqtt::refusal::ConnectFailure::ALL {
                let _ = writeln!(
                    s,
                    "{name}{{reason=\"{}\"}} {}",
                    f.as_str(),
                    counts[f.index()].load(Relaxed)
                );
            }
        }
        let _ = writeln!(s, "# TYPE lorawan_device_time_answers_total counter");
        for (source, v) in [
            ("gateway", &self.device_time_gateway),
            ("reception", &self.device_time_reception),
        ] {
            let _ = writeln!(
                s,
                "lorawan_device_time_answers_total{{source=\"{source}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(s, "# TYPE lorawan_inputs_rejected_total counter");
        for r in Reason::ALL {
            let _ = writeln!(
                s,
                "lorawan_inputs_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejected_count(*r)
            );
        }
        for (name, v) in [
            ("lorawan_uplinks_decoded_total", &self.decoded),
            ("lorawan_uplinks_duplicate_total", &self.duplicates),
            ("lorawan_counter_resets_total", &self.counter_resets),
            ("lorawan_uplinks_published_total", &self.published),
            ("lorawan_readings_published_total", &self.readings_published),
            ("lorawan_unmapped_values_total", &self.unmapped_values),
            ("lorawan_mqtt_reconnects_total", &self.mqtt_reconnects),
            ("lorawan_mqtt_acks_deferred_total", &ACKS_DEFERRED),
            ("lorawan_mqtt_acks_lost_total", &ACKS_LOST),
            ("lorawan_mqtt_subacks_total", &self.mqtt_subacks),
            ("lorawan_joins_accepted_total", &self.joins_accepted),
            ("lorawan_sessions_activated_total", &self.sessions_activated),
            (
                "lorawan_mqtt_client_id_conflicts_total",
                &self.mqtt_client_id_conflicts,
            ),
            (
                "edgex_bus_client_id_conflicts_total",
                &self.bus_client_id_conflicts,
            ),
            ("edgex_events_delivered_total", &self.events_delivered),
            (
                "edgex_events_dead_lettered_total",
                &self.events_dead_lettered,
            ),
            ("edgex_delivery_errors_total", &self.delivery_errors),
            ("edgex_bus_reconnects_total", &self.bus_reconnects),
            ("edgex_registration_errors_total", &self.registration_errors),
            (
                "edgex_registration_refusals_total",
                &self.registration_refusals,
            ),
            ("edgex_bus_commands_total", &self.bus_commands),
            ("edgex_devices_discovered_total", &self.devices_discovered),
            ("edgex_device_conflicts_total", &self.device_conflicts),
            ("edgex_devices_down", &self.devices_down),
            (
                "edgex_operating_state_changes_total",
                &self.operating_state_changes,
            ),
            (
                "edgex_bus_requests_malformed_total",
                &self.bus_requests_malformed,
            ),
            ("edgex_devices_refused_total", &self.devices_refused),
            ("edgex_secret_store_errors_total", &self.secret_store_errors),
            ("edgex_system_events_total", &self.system_events),
            ("edgex_outbox_full_total", &self.outbox_full),
            ("lorawan_downlinks_queued_total", &self.downlinks_queued),
            ("lorawan_downlinks_sent_total", &self.downlinks_sent),
            ("lorawan_downlinks_acked_total", &self.downlinks_acked),
            (
                "lorawan_downlinks_confirmed_total",
                &self.downlinks_confirmed,
            ),
            ("lorawan_downlinks_failed_total", &self.downlinks_failed),
            ("lorawan_downlinks_dropped_total", &self.downlinks_dropped),
            ("lorawan_codec_warnings_total", &self.codec_warnings),
            ("edgex_api_unauthorized_total", &self.api_unauthorised),
            (
                "edgex_api_connections_refused_total",
                &self.api_connections_refused,
            ),
            ("lorawan_mac_answers_sent_total", &self.mac_answers),
            ("lorawan_mac_requests_sent_total", &self.mac_requests),
            ("lorawan_mac_requests_refused_total", &self.mac_refused),
            (
                "lorawan_mac_requests_unanswered_total",
                &self.mac_unanswered,
            ),
            ("lorawan_adr_changes_total", &self.adr_changes),
            ("handover_uplinks_buffered_total", &self.handover_buffered),
            (
                "handover_buffer_dropped_total",
                &self.handover_buffer_dropped,
            ),
            ("handover_uplinks_replayed_total", &self.handover_replayed),
            ("handover_uplinks_covered_total", &self.handover_covered),
            ("handover_takeovers_total", &self.handover_takeovers),
            ("handover_releases_total", &self.handover_releases),
            ("handover_calls_refused_total", &self.handover_refused),
            (
                "handover_container_failures_total",
                &self.handover_container_failures,
            ),
        ] {
            let _ = writeln!(s, "# TYPE {name} counter\n{name} {}", v.load(Relaxed));
        }
        for (name, v) in [
            ("lorawan_mqtt_acks_pending", &ACKS_PENDING),
            ("edgex_outbox_depth", &self.outbox_depth),
            ("edgex_registered", &self.registered),
            ("edgex_registration_refused", &self.registration_refused),
            ("lorawan_downlink_queue_depth", &self.downlink_queue_depth),
        ] {
            let _ = writeln!(s, "# TYPE {name} gauge\n{name} {}", v.load(Relaxed));
        }
        let stations = self.stations.lock().expect("metrics lock");
        if !stations.is_empty() {
            type Field = fn(&StationStats) -> Option<f64>;
            let fields: [(&str, &str, Field); 5] = [
                ("lorawan_station_connected", "gauge", |s| {
                    Some(f64::from(u8::from(s.connected)))
                }),
                ("lorawan_station_last_seen_seconds", "gauge", |s| {
                    Some(s.last_seen as f64)
                }),
                ("lorawan_station_uplinks_total", "counter", |s| {
                    Some(s.uplinks as f64)
                }),
                ("lorawan_station_downlinks_total", "counter", |s| {
                    Some(s.downlinks as f64)
                }),
                ("lorawan_station_round_trip_ms", "gauge", |s| {
                    s.round_trip_ms
                }),
            ];
            for (name, kind, f) in fields {
                let _ = writeln!(s, "# TYPE {name} {kind}");
                for (g, st) in stations.iter() {
                    if let Some(v) = f(st) {
                        let _ = writeln!(s, "{name}{{gateway=\"{g}\"}} {v}");
                    }
                }
            }
        }
        drop(stations);
        let status = self.dev_status.lock().expect("metrics lock");
        if !status.is_empty() {
            let _ = writeln!(s, "# TYPE lorawan_device_battery gauge");
            for (d, (b, _)) in status.iter() {
                let _ = writeln!(
                    s,
                    "lorawan_device_battery{{device=\"{}\"}} {b}",
                    d.escape_default()
                );
            }
            let _ = writeln!(s, "# TYPE lorawan_device_margin_db gauge");
            for (d, (_, m)) in status.iter() {
                let _ = writeln!(
                    s,
                    "lorawan_device_margin_db{{device=\"{}\"}} {m}",
                    d.escape_default()
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_renders() {
        let m = Metrics::default();
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
