//! The message-bus half of the stand-in EdgeX core: a subscriber on a real
//! mosquitto that reads events the way core-data does in v4
//! (`edgex/events/device/#`, QoS 1, a persistent session), checks every
//! `MessageEnvelope` and validates its payload against the official
//! core-data `AddEventRequest` schema, and stores events by id, counting
//! copies of an id it already has.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub struct State {
    pub events: Mutex<BTreeMap<String, serde_json::Value>>,
    pub messages: AtomicU64,
    pub copies: AtomicU64,
    pub invalid: Mutex<Vec<String>>,
    pub subscribed: AtomicU64,
    validator: Option<jsonschema::Validator>,
    service: String,
}

pub struct BusCore {
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl BusCore {
    /// Subscribe on the broker at `port`, expecting events of `service`.
    /// Returns once the subscription is live.
    pub async fn start(port: u16, service: &str) -> Self {
        let state = Arc::new(State {
            events: Mutex::new(BTreeMap::new()),
            messages: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            invalid: Mutex::new(Vec::new()),
            subscribed: AtomicU64::new(0),
            validator: super::openapi_validator("core-data.yaml", "AddEventRequest"),
            service: service.to_string(),
        });
        let mut opts = MqttOptions::new(format!("core-data-standin-{port}"), "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(opts, 64);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("edgex/events/device/#", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        st.subscribed.fetch_add(1, Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => st.take(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let core = Self { state, task };
        super::until(
            "the bus stand-in to subscribe",
            Duration::from_secs(10),
            || core.state.subscribed.load(Relaxed) > 0,
        )
        .await;
        core
    }

    pub fn stored(&self) -> usize {
        self.state.events.lock().unwrap().len()
    }
}

impl Drop for BusCore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn take(&self, topic: &str, payload: &[u8]) {
        self.messages.fetch_add(1, Relaxed);
        let bad = |why: String| self.invalid.lock().unwrap().push(format!("{topic}: {why}"));
        let env: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => return bad(format!("envelope is not JSON: {e}")),
        };
        if env["apiVersion"] != "v3" || env["contentType"] != "application/json" {
            return bad(format!("envelope header: {env}"));
        }
        let req = &env["payload"];
        if !req.is_object() {
            return bad("payload is not a JSON object".into());
        }
        if env["requestID"] != req["requestId"] {
            return bad("envelope requestID differs from the request's".into());
        }
        let errors = super::schema_errors(&self.validator, req);
        if !errors.is_empty() {
            return bad(format!("AddEventRequest: {errors:?}"));
        }
        let ev = &req["event"];
        let levels: Vec<String> = topic.split('/').map(|l| l.replace("%20", " ")).collect();
        let want = [
            "edgex",
            "events",
            "device",
            self.service.as_str(),
            ev["profileName"].as_str().unwrap_or(""),
            ev["deviceName"].as_str().unwrap_or(""),
            ev["sourceName"].as_str().unwrap_or(""),
        ];
        if levels != want {
            return bad(format!("topic does not name the event: want {want:?}"));
        }
        let id = ev["id"].as_str().unwrap_or_default().to_string();
        let mut events = self.events.lock().unwrap();
        if events.insert(id, ev.clone()).is_some() {
            self.copies.fetch_add(1, Relaxed);
        }
    }
}
