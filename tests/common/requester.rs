//! A client on the EdgeX bus standing in for core-command and core-metadata:
//! publishes requests and system events, collects the answers.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::until;

/// A client on the bus: publishes requests in envelopes and collects the
/// responses on `edgex/response/device-lorawan/#` by request id.
pub struct Requester {
    client: rumqttc::AsyncClient,
    pub responses:
        std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Requester {
    pub async fn start(port: u16) -> Self {
        use rumqttc::{Event, MqttOptions, Packet, QoS};
        let (client, mut el) = rumqttc::AsyncClient::new(
            MqttOptions::new("core-command-standin", "127.0.0.1", port),
            64,
        );
        let responses =
            std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, sub, c) = (responses.clone(), subscribed.clone(), client.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ =
                            c.try_subscribe("edgex/response/device-lorawan/#", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => sub.store(true, Relaxed),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                        let id = p.topic.rsplit('/').next().unwrap().to_string();
                        r.lock().unwrap().insert(id, v);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        until(
            "the requester's subscription",
            Duration::from_secs(10),
            || subscribed.load(Relaxed),
        )
        .await;
        Self {
            client,
            responses,
            task,
        }
    }

    pub async fn publish(&self, topic: &str, bytes: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }

    /// Publish `payload` on `topic` in an envelope; returns its request id.
    pub async fn send(&self, topic: &str, payload: serde_json::Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let env = serde_json::json!({"apiVersion": "v3", "receivedTopic": "", "correlationID": id,
            "requestID": id, "errorCode": 0, "payload": payload, "contentType": "application/json"});
        self.publish(topic, serde_json::to_vec(&env).unwrap()).await;
        id
    }

    /// [`send`](Self::send), then wait for the answer.
    pub async fn ask(&self, topic: &str, payload: serde_json::Value) -> serde_json::Value {
        let id = self.send(topic, payload).await;
        until(
            &format!("an answer on {topic}"),
            Duration::from_secs(10),
            || self.responses.lock().unwrap().contains_key(&id),
        )
        .await;
        let answer = self.responses.lock().unwrap()[&id].clone();
        assert_eq!(answer["requestID"], id.as_str());
        assert_eq!(answer["apiVersion"], "v3");
        answer
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        self.task.abort();
    }
}
