//! Why an MQTT connection could not be made, in words an operator can act
//! on, for the ingest and the EdgeX message bus alike (counted per reason in
//! `lorawan_mqtt_connect_failures_total` / `edgex_bus_connect_failures_total`).

use rumqttc::{ConnectReturnCode, ConnectionError};

/// What went wrong while connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The broker answered CONNACK with a refusal (credentials, client id).
    Refused,
    /// The TLS handshake failed (CA, certificate, key, server name).
    Tls,
    /// No TCP connection, or it closed before the CONNACK.
    Network,
    /// The broker answered something that is not MQTT as expected.
    Protocol,
}

impl ConnectFailure {
    pub const ALL: [Self; 4] = [Self::Refused, Self::Tls, Self::Network, Self::Protocol];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::Protocol => "protocol",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The failure's kind and a hint at its usual cause (`section` names the
/// configuration, e.g. `Ingest.Mqtt`).
pub fn classify(e: &ConnectionError, section: &str) -> (ConnectFailure, String) {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => format!(
                    "the broker refused the username or password ({section}.Username/Password)"
                ),
                ConnectReturnCode::NotAuthorized => {
                    format!("the broker says this client is not authorised ({section}.Username/Password, its ACL)")
                }
                ConnectReturnCode::BadClientId => {
                    format!("the broker refused the client id ({section}.ClientId)")
                }
                other => format!("the broker refused the connection: {other:?}"),
            };
            (ConnectFailure::Refused, why)
        }
        ConnectionError::Tls(t) => (
            ConnectFailure::Tls,
            format!("TLS handshake failed: {t} (check {section}.Tls.Ca against the broker's certificate, and the client certificate and key)"),
        ),
        // A reset or close before the CONNACK (rumqttc reports it as an I/O
        // error, or as a state error caused by one): often plain TCP to a
        // TLS port.
        e if io_underneath(e) => (
            ConnectFailure::Network,
            format!(
                "{e} (if the broker's port requires TLS, set {section}.Tls; check {section}.Host and Port)"
            ),
        ),
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => (
            ConnectFailure::Network,
            format!("no answer from the broker ({section}.Host and Port)"),
        ),
        other => (
            ConnectFailure::Protocol,
            format!("{other} (is {section}.Port an MQTT listener, with or without TLS as configured?)"),
        ),
    }
}

fn io_underneath(e: &ConnectionError) -> bool {
    let mut at: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = at {
        if err.is::<std::io::Error>() {
            return true;
        }
        at = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_what_to_fix() {
        let (k, why) = classify(
            &ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
            "Ingest.Mqtt",
        );
        assert_eq!(k, ConnectFailure::Refused);
        assert!(why.contains("Ingest.Mqtt.Username"), "{why}");
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        for e in [
            ConnectionError::Io(io()),
            ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                rumqttc::mqttbytes::Error::Io(io()),
            )),
        ] {
            let (k, why) = classify(&e, "Edgex.MessageBus");
            assert_eq!(k, ConnectFailure::Network, "{e}");
            assert!(why.contains("Edgex.MessageBus.Tls"), "{why}");
        }
    }
}
