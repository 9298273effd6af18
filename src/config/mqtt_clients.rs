//! The service's MQTT clients and their ids. A broker allows one
//! connection per client id: a second client with an id in use throws the
//! first off, and two such clients take turns losing messages (issue 11:
//! the ingest and the bus, both `device-lorawan` on the compose broker, lost
//! half the readings). So each client's id defaults to `{Service.Name}-{role}`
//! and a configuration giving two of them one id on one broker is refused.

use super::{Config, ConfigError, Delivery};

/// One of this service's MQTT clients, as [`Config::mqtt_clients`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttClient {
    /// The configuration key of its id (for errors).
    pub key: &'static str,
    pub host: String,
    pub port: u16,
    pub id: String,
}

impl Config {
    /// Fill each empty MQTT client id with `{Service.Name}-{role}`, the
    /// role being `ingest` (gateway/application streams) or `bus` (EdgeX
    /// message bus). Idempotent; `service::start` calls it too, so a
    /// configuration built in code gets the same ids as a loaded one.
    pub fn derive_client_ids(&mut self) {
        let name = &self.service.name;
        for (id, role) in [
            (&mut self.ingest.mqtt.client_id, "ingest"),
            (&mut self.edgex.message_bus.client_id, "bus"),
        ] {
            if id.is_empty() {
                *id = format!("{name}-{role}");
            }
        }
    }

    /// The MQTT clients this configuration connects, with their ids (after
    /// [`derive_client_ids`](Self::derive_client_ids)). A client added later
    /// belongs here, so the clash check covers it.
    pub fn mqtt_clients(&self) -> Vec<MqttClient> {
        let mut out = Vec::new();
        let m = &self.ingest.mqtt;
        if m.enabled {
            out.push(MqttClient {
                key: "Ingest.Mqtt.ClientId",
                host: m.host.clone(),
                port: m.port,
                id: m.client_id.clone(),
            });
        }
        let b = &self.edgex.message_bus;
        if self.edgex.delivery == Delivery::MessageBus && b.r#type == super::edgex::BusType::Mqtt {
            out.push(MqttClient {
                key: "Edgex.MessageBus.ClientId",
                host: b.host.clone(),
                port: b.port(),
                id: b.client_id.clone(),
            });
        }
        out
    }

    /// Refuse two of our clients with one id on one broker: MQTT allows one
    /// connection per client id, so the broker would drop each whenever the
    /// other connects (issue 11: half the readings lost).
    pub(super) fn check_client_ids(&self) -> Result<(), ConfigError> {
        let clients = self.mqtt_clients();
        for (i, a) in clients.iter().enumerate() {
            for b in &clients[i + 1..] {
                if a.id == b.id && same_broker((&a.host, a.port), (&b.host, b.port)) {
                    return Err(ConfigError::ClientIdClash {
                        first: a.key,
                        second: b.key,
                        id: a.id.clone(),
                        broker: format!("{}:{}", a.host, a.port),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether two host:port pairs name one broker as far as we can tell without
/// resolving names: host names compare case-insensitively, and every
/// loopback spelling is one host.
fn same_broker(a: (&str, u16), b: (&str, u16)) -> bool {
    let host = |h: &str| {
        let h = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let loopback = h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            "localhost".to_string()
        } else {
            h
        }
    };
    a.1 == b.1 && host(a.0) == host(b.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    #[test]
    fn client_ids_are_derived_per_role() {
        let c = load(
            "Service: { Name: edge-a }\nIngest: { Mqtt: { Enabled: true } }\nEdgex: { Delivery: message-bus }\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.ingest.mqtt.client_id, "edge-a-ingest");
        assert_eq!(c.edgex.message_bus.client_id, "edge-a-bus");
        let c = load("", &[("SERVICE_NAME", "edge-b")]).unwrap();
        assert_eq!(c.edgex.message_bus.client_id, "edge-b-bus");
        let mut d = Config::default();
        d.derive_client_ids();
        assert_eq!(d.ingest.mqtt.client_id, "device-lorawan-ingest");
    }

    #[test]
    fn one_client_id_twice_on_one_broker_is_refused() {
        let both = "Ingest: { Mqtt: { Enabled: true, Host: localhost, ClientId: x } }\n\
                    Edgex: { Delivery: message-bus, MessageBus: { Host: 127.0.0.1, ClientId: x } }\n";
        let e = load(both, &[]).unwrap_err().to_string();
        assert!(
            e.contains("`Ingest.Mqtt.ClientId`")
                && e.contains("`Edgex.MessageBus.ClientId`")
                && e.contains("`x`"),
            "{e}"
        );
        // Through the environment as well, as a compose file would set them.
        let e = load(
            "",
            &[
                ("INGEST_MQTT_ENABLED", "true"),
                ("INGEST_MQTT_CLIENTID", "dl"),
                ("EDGEX_DELIVERY", "message-bus"),
                ("EDGEX_MESSAGEBUS_HOST", "127.0.0.1"),
                ("EDGEX_MESSAGEBUS_CLIENTID", "dl"),
            ],
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::ClientIdClash { .. }), "{e}");
        // One id on two brokers, or one broker with the bus off, is fine.
        load(
            "Ingest: { Mqtt: { Enabled: true, Host: gw-broker, ClientId: x } }\n\
             Edgex: { Delivery: message-bus, MessageBus: { Host: edgex-broker, ClientId: x } }\n",
            &[],
        )
        .unwrap();
        load("Ingest: { Mqtt: { Enabled: true, ClientId: x } }\nEdgex: { MessageBus: { ClientId: x } }\n", &[])
            .unwrap();
        assert!(same_broker(("LOCALHOST", 1883), ("::1", 1883)));
        assert!(!same_broker(("localhost", 1883), ("localhost", 1884)));
    }
}
