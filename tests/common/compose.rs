//! A compose file's `device-lorawan` service outside the compose network:
//! its environment, merged as `docker compose` merges files, and a [`Site`]
//! that starts the real binary with it. Only what a compose network provides
//! and a test cannot is changed: service host names become loopback, fixed
//! ports become free ones, paths inside the container become temporary ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml_ng::Value;

/// A compose file of this repository, parsed.
pub fn load(file: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(super::repo_path(file)).unwrap()).unwrap()
}

/// `files` laid over each other by `docker-compose -f a -f b config`, with
/// `env` set for the files' `${...}` interpolation: what `docker compose up`
/// would run. `None` (a skip; a failure in CI) without docker-compose.
pub fn merged(files: &[&str], env: &[(&str, &str)]) -> Option<Value> {
    if !super::require("docker-compose") {
        return None;
    }
    let mut cmd = Command::new("docker-compose");
    for f in files {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg("config")
        .envs(env.iter().copied())
        .current_dir(super::repo_path(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_yaml_ng::from_slice(&out.stdout).unwrap())
}

/// The `device-lorawan` service's environment in a compose document.
pub fn environment(doc: &Value) -> BTreeMap<String, String> {
    doc["services"]["device-lorawan"]["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
            };
            (k.as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// The host file a compose document mounts at `target` in `service`.
pub fn mounted(doc: &Value, service: &str, target: &str) -> Option<PathBuf> {
    doc["services"][service]["volumes"]
        .as_sequence()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| {
            let mut parts = v.split(':');
            let (host, inside) = (parts.next()?, parts.next()?);
            (inside == target).then(|| {
                let host = Path::new(host);
                if host.is_absolute() {
                    host.to_owned()
                } else {
                    super::repo_path("compose").join(host)
                }
            })
        })
}

/// What a compose file's device-lorawan talks to, on loopback: mosquitto
/// (its ingest and the EdgeX bus), a core-data subscriber on the bus and
/// the stand-in core-metadata. `None` (a skip) without mosquitto.
pub async fn peers() -> Option<(
    super::Mosquitto,
    super::bus::BusCore,
    super::metadata::Metadata,
)> {
    let broker = super::Mosquitto::start()?;
    let core = super::bus::BusCore::start(broker.port, "device-lorawan").await;
    let md = super::metadata::Metadata::start().await;
    Some((broker, core, md))
}

/// One `device-lorawan` as a compose file starts it, on this machine.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub api: std::net::SocketAddr,
    pub udp: std::net::SocketAddr,
    pub env: Vec<(String, String)>,
    config: PathBuf,
}

impl Site {
    /// The service with `env` (a compose file's environment, `changes` set
    /// over it), reading `config` as the image does, `devices` (YAML) as its
    /// devices file, the broker on loopback `broker` and core-metadata at
    /// `metadata`.
    pub fn new(
        mut env: BTreeMap<String, String>,
        config: &Path,
        devices: &str,
        broker: u16,
        metadata: &str,
        changes: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devices_path = dir.path().join("devices.yaml");
        std::fs::write(&devices_path, devices).unwrap();
        let api: std::net::SocketAddr =
            format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let udp: std::net::SocketAddr = format!("127.0.0.1:{}", super::free_udp_port())
            .parse()
            .unwrap();
        for (k, v) in changes {
            env.insert(k.to_string(), v.to_string());
        }
        for (k, v) in env.iter_mut() {
            if k.ends_with("_HOST") && v == "mqtt-broker" {
                *v = "127.0.0.1".into();
            }
            if k == "EDGEX_METADATA_URL" {
                *v = metadata.to_string();
            }
        }
        // The compose network's port 1883 and the image's paths (the
        // devices file's, whether the environment or the file names it).
        let port = broker.to_string();
        for (k, v) in [
            ("INGEST_MQTT_PORT", port.as_str()),
            ("EDGEX_MESSAGEBUS_PORT", &port),
            ("SERVICE_APIBIND", &api.to_string()),
            ("INGEST_UDP_BIND", &udp.to_string()),
            ("DEVICES_FILE", &devices_path.display().to_string()),
            (
                "SERVICE_DATADIR",
                &dir.path().join("data").display().to_string(),
            ),
            (
                "DEVICES_PROFILESDIR",
                &super::repo_path("profiles").display().to_string(),
            ),
        ] {
            env.insert(k.into(), v.into());
        }
        Self {
            dir,
            api,
            udp,
            env: env.into_iter().collect(),
            config: config.to_owned(),
        }
    }

    pub fn start(&self) -> super::Running {
        super::start_binary_with(
            &self.config,
            &self.env,
            &self.dir.path().join("service.log"),
        )
    }

    /// Wait (bounded) until the service has `mqtt_subscriptions` ingest
    /// subscriptions and is registered with core-metadata.
    pub async fn ready(&self, mqtt_subscriptions: u64) {
        if mqtt_subscriptions > 0 {
            super::until("the ingest subscriptions", Duration::from_secs(20), || {
                super::scrape(self.api, "lorawan_mqtt_subacks_total")
                    .is_some_and(|n| n >= mqtt_subscriptions)
            })
            .await;
        }
        super::until("registration", Duration::from_secs(20), || {
            super::scrape(self.api, "edgex_registered") == Some(1)
        })
        .await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }
}
