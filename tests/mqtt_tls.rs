//! TLS and credentials to the MQTT broker, for the gateway-bridge ingest
//! and the EdgeX message bus: mosquitto with a TLS listener that requires
//! a client certificate and a password (and a plain loopback listener for
//! the simulated gateways and the bus subscriber). With the right material
//! both clients work; a wrong password or a wrong CA is refused with a
//! clear error in the log, and nothing gets through.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use device_lorawan::sim::{self, mote, Target};

/// mosquitto: `plain` anonymous, `tls` with client certificates and a
/// password file (user `edge`, password `s3cret-pass`).
fn broker(dir: &std::path::Path, plain: u16, tls: u16) -> Child {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let pw = dir.join("passwords");
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["edge", "s3cret-pass"])
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = dir.display();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings true\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwords\n\
             cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n"
        ),
    )
    .unwrap();
    common::run_mosquitto(&conf, tls)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with ingest and bus on the TLS listener (`password`, `ca`;
/// no `ca`: plain TCP to that TLS port).
fn service(dir: &std::path::Path, tls: u16, password: &str, ca: Option<&str>) -> common::BinaryEnv {
    let d = dir.display();
    let material = match ca {
        Some(ca) => format!(
            "Tls: {{ Ca: \"{d}/{ca}\", Cert: \"{d}/client.crt\", Key: \"{d}/client.key\" }}, "
        ),
        None => String::new(),
    };
    common::binary_env(
        &mote::devices_yaml(&mote::entries(3, 71)),
        "",
        &format!(
            "DedupWindow: 50ms, Mqtt: {{ Enabled: true, Host: 127.0.0.1, Port: {tls}, \
             Username: edge, Password: \"{password}\", {material}\
             Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }}"
        ),
        &format!(
            "Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {tls}, \
             Username: edge, Password: \"{password}\", {material}MaxInFlight: 64 }}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_bus_over_mutual_tls_with_a_password() {
    if !common::require("mosquitto") || !common::require("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    common::certs::certificates(certs.path()).unwrap();
    // Another CA, for the refused case.
    let other = tempfile::tempdir().unwrap();
    common::certs::certificates(other.path()).unwrap();
    std::fs::copy(
        other.path().join("ca.crt"),
        certs.path().join("other-ca.crt"),
    )
    .unwrap();
    let (plain, tls) = (common::free_port(), common::free_port());
    let _broker = Killed(broker(certs.path(), plain, tls));
    let bus = common::bus::BusCore::start(plain, "device-lorawan").await;
    let target = Target::Mqtt {
        host: "127.0.0.1".into(),
        port: plain,
        format: device_lorawan::ingest::gateway::WireFormat::Protobuf,
        prefix: String::new(),
    };

    // The right material: uplinks through the TLS ingest, events on the TLS bus.
    let env = service(certs.path(), tls, "s3cret-pass", Some("ca.crt"));
    let mut svc = common::start_binary(&env.config);
    // The ingest session must exist before frames are sent to it.
    common::until("the ingest subscription", Duration::from_secs(20), || {
        common::scrape(env.api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 1)
    })
    .await;
    let report = sim::run(
        target.clone(),
        common::sim_opts(71, 9, 0),
        std::future::pending(),
    )
    .await
    .unwrap();
    common::until("9 events on the bus", Duration::from_secs(15), || {
        bus.stored() >= 9
    })
    .await;
    assert_eq!(
        common::published_lines(&env.out).len(),
        report.expected.len()
    );
    svc.kill().unwrap();
    svc.wait().unwrap();

    // A wrong password, a CA that did not sign the broker, plain TCP to the
    // TLS port: refused, said in the log with what to fix, counted by
    // reason, nothing through.
    for (password, ca, said, reasons) in [
        (
            "wrong-password",
            Some("ca.crt"),
            "Username/Password",
            &["refused"][..],
        ),
        (
            "s3cret-pass",
            Some("other-ca.crt"),
            "certificate",
            &["tls"][..],
        ),
        (
            "s3cret-pass",
            None,
            "Ingest.Mqtt.Tls",
            &["network", "protocol"][..],
        ),
    ] {
        let env = service(certs.path(), tls, password, ca);
        let mut svc = common::start_binary(&env.config);
        let log = env.dir.path().join("service.log");
        common::until("the refusal logged", Duration::from_secs(15), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(said)
        })
        .await;
        let failures = |metric: &str| {
            reasons
                .iter()
                .filter_map(|r| common::scrape(env.api, &format!("{metric}{{reason=\"{r}\"}}")))
                .sum::<u64>()
        };
        common::until("the failures counted", Duration::from_secs(15), || {
            failures("lorawan_mqtt_connect_failures_total") >= 1
                && failures("edgex_bus_connect_failures_total") >= 1
        })
        .await;
        sim::run(
            target.clone(),
            common::sim_opts(71, 3, 9),
            std::future::pending(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            common::published_lines(&env.out).is_empty(),
            "{password} {ca:?}"
        );
        assert_eq!(
            common::scrape(env.api, "lorawan_mqtt_subacks_total"),
            Some(0),
            "{password} {ca:?}"
        );
        svc.kill().unwrap();
        svc.wait().unwrap();
    }
}
