use super::*;
use std::io::Write;

pub(super) fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    Config::load_with_env(Some(f.path()), |k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
}

#[test]
fn file_then_env() {
    let c = load(
        "Ingest:\n  DedupWindow: 50ms\n  Udp: { Bind: 127.0.0.1:1800 }\n",
        &[("INGEST_MQTT_ENABLED", "true")],
    )
    .unwrap();
    assert_eq!(c.ingest.dedup_window, Duration::from_millis(50));
    assert_eq!(c.ingest.udp.bind.port(), 1800);
    assert!(c.ingest.mqtt.enabled);
    assert_eq!(c.ingest.mqtt.port, 1883, "untouched defaults stay");
}

#[test]
fn errors_name_the_key() {
    let e = load("Ingest:\n  Udp: { Bnd: 1 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Ingest.Udp") && e.contains("Bnd"), "{e}");
    let e = load("Ingest:\n  Mqtt: { Qos: 3 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Ingest.Mqtt.Qos"), "{e}");
    let e = load("Ingest: [\n", &[]).unwrap_err().to_string();
    assert!(e.starts_with("config "), "{e}");
    let e = load("", &[("INGEST_UDP_BIND", "nowhere")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Ingest.Udp.Bind"), "{e}");
}

#[test]
fn mac_and_extra_channels_are_checked() {
    let c = load(
        "Region: { ExtraChannels: [{Frequency: 867100000, MinDr: 0, MaxDr: 5}] }\nMac: { Adr: false, DevStatusInterval: 0s }\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.site_region().extra_channels(), [(3, 867_100_000, 0, 5)]);
    assert!(!c.mac.adr && c.mac.dev_status_interval.is_zero());
    let e = load(
        "Region: { Name: US915, ExtraChannels: [{Frequency: 903000000, MinDr: 0, MaxDr: 3}] }\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Region.ExtraChannels") && e.contains("903000000"),
        "{e}"
    );
    let e = load(
        "Ingest: { BasicStation: { Enabled: true, Tls: { Cert: /nonexistent/cert.pem, Key: /nonexistent/key.pem } } }\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Ingest.BasicStation.Tls") && e.contains("/nonexistent/cert.pem"),
        "{e}"
    );
    let e = load(
        "Ingest: { BasicStation: { Enabled: true, AllowedGateways: [nope] } }\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Ingest.BasicStation.AllowedGateways") && e.contains("nope"),
        "{e}"
    );
    let e = load("Mac: { InstallationMargin: -3 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Mac.InstallationMargin"), "{e}");
}

#[test]
fn password_is_redacted() {
    let c = load(
        "Ingest:\n  Mqtt: { Password: hunter2 }\nEdgex:\n  MessageBus: { Password: swordfish }\n",
        &[],
    )
    .unwrap();
    let y = c.redacted_yaml();
    assert!(!y.contains("hunter2") && !y.contains("swordfish"), "{y}");
}

#[test]
fn broker_secret_names_need_secure_mode() {
    let yaml = "Edgex:\n  MessageBus: { SecretName: message-bus }\n";
    let e = load(yaml, &[]).unwrap_err().to_string();
    assert!(
        e.contains("Edgex.MessageBus.SecretName") && e.contains("SecretStore.Enabled"),
        "{e}"
    );
    let c = load(yaml, &[("EDGEX_SECURITY_SECRET_STORE", "true")]).unwrap();
    assert_eq!(c.edgex.message_bus.secret_name, "message-bus");
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let e = load("", &[("INGEST_DEDUPWINDOW", "5")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Ingest.DedupWindow"), "{e}");
    assert!(e.contains("environment variable INGEST_DEDUPWINDOW"), "{e}");
    assert!(e.contains("200ms, 5s"), "the accepted forms: {e}");
    let e = load("", &[("INGEST_MQTT_QOS", "7")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Ingest.Mqtt.Qos") && e.contains("INGEST_MQTT_QOS"),
        "{e}"
    );
    // The same value from the file names no variable.
    let e = load("Ingest: { Mqtt: { Qos: 7 } }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(!e.contains("environment variable"), "{e}");
}

#[test]
fn variables_that_look_like_ours_but_name_no_key_are_found() {
    let cases: [(&str, Option<&str>); 6] = [
        ("INGEST_UDP_BND", Some("INGEST_UDP_BIND")),
        ("SERVICE_DATADIR", None),
        ("EDGEX_SECURITY_SECRET_STORE", None),
        ("PATH", None),
        ("EDGEX_MESSAGEBUS_HOSTT", Some("EDGEX_MESSAGEBUS_HOST")),
        ("LOG_LEVEL", None),
    ];
    for (var, near) in cases {
        let w = Config::unknown_env(std::iter::once(var));
        match near {
            Some(n) => {
                assert_eq!(w.len(), 1, "{var}: {w:?}");
                assert!(w[0].contains(var) && w[0].contains(n), "{var}: {w:?}");
            }
            None => assert!(w.is_empty(), "{var}: {w:?}"),
        }
    }
}

#[test]
fn a_nats_bus_is_edgex_shaped_and_checked() {
    let c = load(
        "Edgex: { Delivery: message-bus, MessageBus: { Type: nats-jetstream } }\n",
        &[("EDGEX_MESSAGEBUS_NATS_REPLICAS", "3")],
    )
    .unwrap();
    assert_eq!(c.edgex.message_bus.port(), 4222, "NATS's own port");
    assert_eq!(c.edgex.message_bus.nats.replicas, 3);
    assert!(c.mqtt_clients().is_empty(), "no MQTT client id to clash");
    assert_eq!(Config::default().edgex.message_bus.port(), 1883);
    for (yaml, key) in [
        ("Nats: { Replicas: 7 }", "Edgex.MessageBus.Nats.Replicas"),
        (
            "Nats: { Servers: [nowhere] }",
            "Edgex.MessageBus.Nats.Servers",
        ),
        ("Tls: { CaFile: /x }", "Edgex.MessageBus.Tls"),
    ] {
        let e = load(
            &format!("Edgex: {{ MessageBus: {{ Type: nats-core, {yaml} }} }}\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

/// A lean build (`--no-default-features`) refuses what it left out, naming
/// the feature (`.ci/run` runs these in a lean build).
#[cfg(not(feature = "container"))]
#[test]
fn lean_build_refuses_the_container_takeover() {
    let e = load(
        "Ingest: { Mqtt: { Enabled: true, Subscriptions: [{ Topic: \"gateway/+/event/up\", Kind: gateway }] } }\nHandover: { Takeover: container }\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Handover.Takeover") && e.contains("`container`"),
        "{e}"
    );
}

#[cfg(not(feature = "js"))]
#[test]
fn lean_build_refuses_a_javascript_codec() {
    let s = crate::codec::js::Script::new(
        "profiles/Vendor.js".into(),
        "function decodeUplink(i) { return {data: {}}; }".into(),
    );
    let e = s.codec().unwrap_err().to_string();
    assert!(
        e.contains("profiles/Vendor.js") && e.contains("`js`"),
        "{e}"
    );
    assert!(crate::codec::js::eval_literal("{a: 1}").is_err());
}

#[cfg(not(feature = "market-server"))]
#[tokio::test]
async fn lean_build_has_no_market_server() {
    let e = crate::market::cli::serve(&Config::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`market-server`"), "{e}");
}
