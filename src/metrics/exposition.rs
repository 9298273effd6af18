//! The Prometheus exposition of [`Metrics`], through prometheus-client's
//! OpenMetrics encoder: the counters stay lock-free atomics on the paths
//! that count (a frame must not take a lock to be counted); a collector
//! reads them at scrape time. Metric names are the ones this service has
//! always published (a counter's `_total` is the encoder's).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Metrics, Reason, Source, ACKS_DEFERRED, ACKS_LOST, ACKS_PENDING};

/// The scrape-time view of the counters.
struct View(Arc<Metrics>);

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics view")
    }
}

/// A counter's name without the `_total` the encoder adds.
fn base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn counter(e: &mut DescriptorEncoder, name: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(base(name), "", None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, "", None, MetricType::Gauge)?)
}

/// A counter with one label, a sample per value.
fn labelled(
    e: &mut DescriptorEncoder,
    name: &str,
    label: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(base(name), "", None, MetricType::Counter)?;
    for (value, n) in samples {
        let labels = [(label, value.as_str())];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge with one label, a sample per value (integers as integers).
fn labelled_gauge<
    N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync + 'static,
>(
    e: &mut DescriptorEncoder,
    name: &str,
    label: &str,
    samples: impl IntoIterator<Item = (String, N)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, "", None, MetricType::Gauge)?;
    for (value, v) in samples {
        let labels = [(label, value.as_str())];
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A label value as the exposition format needs it (the encoder writes
/// values as given): quotes, backslashes and line breaks escaped.
fn escape(v: &str) -> String {
    v.escape_default().to_string()
}

impl Collector for View {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &*self.0;
        labelled(
            &mut e,
            "lorawan_uplinks_received_total",
            "source",
            Source::ALL.map(|s| (s.as_str().to_string(), m.received_count(s))),
        )?;
        for (name, counts) in [
            (
                "lorawan_mqtt_connect_failures_total",
                &m.mqtt_connect_failures,
            ),
            ("edgex_bus_connect_failures_total", &m.bus_connect_failures),
        ] {
            labelled(
                &mut e,
                name,
                "reason",
                crate::ingest::mqtt::refusal::ConnectFailure::ALL
                    .iter()
                    .map(|f| (f.as_str().to_string(), counts[f.index()].load(Relaxed))),
            )?;
        }
        labelled(
            &mut e,
            "lorawan_device_time_answers_total",
            "source",
            [
                ("gateway".to_string(), m.device_time_gateway.load(Relaxed)),
                (
                    "reception".to_string(),
                    m.device_time_reception.load(Relaxed),
                ),
            ],
        )?;
        labelled(
            &mut e,
            "lorawan_inputs_rejected_total",
            "reason",
            Reason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), m.rejected_count(*r))),
        )?;
        for (name, v) in [
            ("lorawan_uplinks_decoded_total", &m.decoded),
            ("lorawan_uplinks_duplicate_total", &m.duplicates),
            ("lorawan_counter_resets_total", &m.counter_resets),
            ("lorawan_uplinks_published_total", &m.published),
            ("lorawan_readings_published_total", &m.readings_published),
            ("lorawan_unmapped_values_total", &m.unmapped_values),
            ("lorawan_mqtt_reconnects_total", &m.mqtt_reconnects),
            ("lorawan_mqtt_acks_deferred_total", &ACKS_DEFERRED),
            ("lorawan_mqtt_acks_lost_total", &ACKS_LOST),
            ("lorawan_mqtt_subacks_total", &m.mqtt_subacks),
            ("lorawan_joins_accepted_total", &m.joins_accepted),
            ("lorawan_sessions_activated_total", &m.sessions_activated),
            (
                "lorawan_mqtt_client_id_conflicts_total",
                &m.mqtt_client_id_conflicts,
            ),
            (
                "edgex_bus_client_id_conflicts_total",
                &m.bus_client_id_conflicts,
            ),
            ("edgex_events_delivered_total", &m.events_delivered),
            ("edgex_events_dead_lettered_total", &m.events_dead_lettered),
            ("edgex_delivery_errors_total", &m.delivery_errors),
            ("edgex_bus_reconnects_total", &m.bus_reconnects),
            (
                "edgex_bus_stream_duplicates_total",
                &m.bus_stream_duplicates,
            ),
            ("edgex_registration_errors_total", &m.registration_errors),
            (
                "edgex_registration_refusals_total",
                &m.registration_refusals,
            ),
            ("edgex_bus_commands_total", &m.bus_commands),
            ("edgex_devices_discovered_total", &m.devices_discovered),
            ("edgex_device_conflicts_total", &m.device_conflicts),
            (
                "edgex_operating_state_changes_total",
                &m.operating_state_changes,
            ),
            (
                "edgex_bus_requests_malformed_total",
                &m.bus_requests_malformed,
            ),
            ("edgex_devices_refused_total", &m.devices_refused),
            ("edgex_secret_store_errors_total", &m.secret_store_errors),
            ("edgex_system_events_total", &m.system_events),
            ("edgex_outbox_full_total", &m.outbox_full),
            ("lorawan_downlinks_queued_total", &m.downlinks_queued),
            ("lorawan_downlinks_sent_total", &m.downlinks_sent),
            ("lorawan_downlinks_acked_total", &m.downlinks_acked),
            ("lorawan_downlinks_confirmed_total", &m.downlinks_confirmed),
            ("lorawan_downlinks_failed_total", &m.downlinks_failed),
            ("lorawan_downlinks_dropped_total", &m.downlinks_dropped),
            ("lorawan_codec_warnings_total", &m.codec_warnings),
            ("edgex_api_unauthorized_total", &m.api_unauthorised),
            (
                "edgex_api_connections_refused_total",
                &m.api_connections_refused,
            ),
            ("lorawan_mac_answers_sent_total", &m.mac_answers),
            ("lorawan_mac_requests_sent_total", &m.mac_requests),
            ("lorawan_mac_requests_refused_total", &m.mac_refused),
            ("lorawan_mac_requests_unanswered_total", &m.mac_unanswered),
            ("lorawan_adr_changes_total", &m.adr_changes),
            ("handover_uplinks_buffered_total", &m.handover_buffered),
            ("handover_buffer_dropped_total", &m.handover_buffer_dropped),
            ("handover_uplinks_replayed_total", &m.handover_replayed),
            ("handover_uplinks_covered_total", &m.handover_covered),
            ("handover_takeovers_total", &m.handover_takeovers),
            ("handover_releases_total", &m.handover_releases),
            ("handover_calls_refused_total", &m.handover_refused),
            (
                "handover_container_failures_total",
                &m.handover_container_failures,
            ),
        ] {
            counter(&mut e, name, v.load(Relaxed))?;
        }
        for (name, v) in [
            ("lorawan_mqtt_acks_pending", &ACKS_PENDING),
            ("edgex_outbox_depth", &m.outbox_depth),
            ("edgex_registered", &m.registered),
            ("edgex_registration_refused", &m.registration_refused),
            ("lorawan_downlink_queue_depth", &m.downlink_queue_depth),
            ("edgex_devices_down", &m.devices_down),
        ] {
            gauge(&mut e, name, v.load(Relaxed) as i64)?;
        }
        {
            let stations = m.stations.lock().expect("metrics lock");
            if !stations.is_empty() {
                labelled_gauge(
                    &mut e,
                    "lorawan_station_connected",
                    "gateway",
                    stations
                        .iter()
                        .map(|(g, s)| (g.to_string(), i64::from(s.connected))),
                )?;
                labelled_gauge(
                    &mut e,
                    "lorawan_station_last_seen_seconds",
                    "gateway",
                    stations
                        .iter()
                        .map(|(g, s)| (g.to_string(), s.last_seen as i64)),
                )?;
                labelled(
                    &mut e,
                    "lorawan_station_uplinks_total",
                    "gateway",
                    stations.iter().map(|(g, s)| (g.to_string(), s.uplinks)),
                )?;
                labelled(
                    &mut e,
                    "lorawan_station_downlinks_total",
                    "gateway",
                    stations.iter().map(|(g, s)| (g.to_string(), s.downlinks)),
                )?;
                labelled_gauge(
                    &mut e,
                    "lorawan_station_round_trip_ms",
                    "gateway",
                    stations
                        .iter()
                        .filter_map(|(g, s)| s.round_trip_ms.map(|v| (g.to_string(), v))),
                )?;
            }
        }
        {
            let status = m.dev_status.lock().expect("metrics lock");
            if !status.is_empty() {
                labelled_gauge(
                    &mut e,
                    "lorawan_device_battery",
                    "device",
                    status.iter().map(|(d, (b, _))| (escape(d), i64::from(*b))),
                )?;
                labelled_gauge(
                    &mut e,
                    "lorawan_device_margin_db",
                    "device",
                    status
                        .iter()
                        .map(|(d, (_, mg))| (escape(d), i64::from(*mg))),
                )?;
            }
        }
        Ok(())
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    /// Every counter, gauge and latency histogram, in the OpenMetrics text
    /// format (which Prometheus reads).
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(View(self.clone())));
        for (name, help, h) in self.latency.all() {
            registry.register(name, help, h.clone());
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String does not fail");
        out
    }
}
