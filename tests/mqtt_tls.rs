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

/// The simulated gateways, on the broker's plain listener.
fn gateways(plain: u16) -> Target {
    Target::Mqtt {
        host: "127.0.0.1".into(),
        port: plain,
        format: device_lorawan::ingest::bridge::WireFormat::Protobuf,
        prefix: String::new(),
    }
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
    let auth = format!("Username: edge, Password: \"{password}\", ");
    service_with(dir, tls, &auth, ca)
}

/// [`service`] with the clients' credentials given by `auth`.
fn service_with(
    dir: &std::path::Path,
    tls: u16,
    auth: &str,
    ca: Option<&str>,
) -> common::BinaryEnv {
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
             {auth}{material}\
             Subscriptions: [{{ Topic: \"gateway/+/event/up\", Kind: gateway }}] }}"
        ),
        &format!(
            "Delivery: message-bus, MessageBus: {{ Host: 127.0.0.1, Port: {tls}, \
             {auth}{material}MaxInFlight: 64 }}"
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
    let target = gateways(plain);

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
        // The service tries again after the frames were sent, and is
        // refused again: it never had a session to receive them on.
        let before = failures("lorawan_mqtt_connect_failures_total");
        common::until(
            "a refused attempt after the frames",
            Duration::from_secs(15),
            || failures("lorawan_mqtt_connect_failures_total") > before,
        )
        .await;
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

/// EdgeX secure mode: the brokers' credentials come from the secret store
/// (`SecretName`, as EdgeX's `message-bus` secret with `AuthMode:
/// usernamepassword`), not the configuration; they work, and never show in
/// `/api/v3/config`. A secret that is not in the store stops the start with
/// an error that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_credentials_from_the_edgex_secret_store() {
    if !common::require("mosquitto") || !common::require("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    common::certs::certificates(certs.path()).unwrap();
    let (plain, tls) = (common::free_port(), common::free_port());
    let _broker = Killed(broker(certs.path(), plain, tls));
    let bus = common::bus::BusCore::start(plain, "device-lorawan").await;
    let store_dir = tempfile::tempdir().unwrap();
    let store = common::secret_store::SecretStore::start(store_dir.path(), "hvs.bus-test").await;
    store.put(
        "edgex/device-lorawan/message-bus",
        &[
            ("username", "edge".into()),
            ("password", "s3cret-pass".into()),
        ],
    );
    let secure = |env: &common::BinaryEnv| {
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text += &format!(
            "SecretStore: {{ Enabled: true, Host: 127.0.0.1, Port: {}, TokenFile: \"{}\", DisableJwtValidation: true }}\n",
            store.server.addr.port(),
            store.token_file.display()
        );
        std::fs::write(&env.config, text).unwrap();
    };

    let env = service_with(
        certs.path(),
        tls,
        "SecretName: message-bus, ",
        Some("ca.crt"),
    );
    secure(&env);
    let mut svc = common::start_binary(&env.config);
    common::until("the ingest subscription", Duration::from_secs(20), || {
        common::scrape(env.api, "lorawan_mqtt_subacks_total").is_some_and(|n| n >= 1)
    })
    .await;
    let target = gateways(plain);
    sim::run(target, common::sim_opts(71, 6, 0), std::future::pending())
        .await
        .unwrap();
    common::until("6 events on the bus", Duration::from_secs(15), || {
        bus.stored() >= 6
    })
    .await;
    let (status, config) = common::http(env.api, "GET", "/api/v3/config", "").await;
    assert_eq!(status, 200);
    assert!(!config.contains("s3cret-pass"), "{config}");
    svc.kill().unwrap();
    svc.wait().unwrap();

    // Not in the store: the start fails, saying which secret.
    let env = service_with(
        certs.path(),
        tls,
        "SecretName: no-such-secret, ",
        Some("ca.crt"),
    );
    secure(&env);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_device-lorawan"))
        .args(["run", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no-such-secret"), "{said}");
}
